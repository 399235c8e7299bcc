"""Supervisors, with Erlang/OTP semantics and Akka-style restart backoff.

Policy (read this before the mechanism):

- **Strategy**: ``one_for_one`` restarts only the failed child;
  ``one_for_all`` terminates every other child (in reverse start order) and
  restarts them all (in start order); ``rest_for_one`` does the same for the
  failed child and the children started after it.
- **Restart type** of a child: ``permanent`` is always restarted;
  ``transient`` only after an abnormal exit (a crash); ``temporary`` never
  (and is dropped when a sibling's failure would have restarted it).
- **Intensity**: each restart is timestamped; if more than ``max_restarts``
  restarts fall within the sliding window of ``within`` seconds (a restart
  exactly ``within`` seconds old still counts, as in OTP), the supervisor
  terminates all its children in reverse start order and escalates: it
  exits abnormally to its own parent, which applies *its* strategy. So
  ``max_restarts=3`` allows 3 restarts and the 4th escalates, and
  ``max_restarts=0`` escalates on the first failure. Escalation past the
  root supervisor fails the runtime.
- **Readiness**: under ``one_for_one`` a restarted child runs ``started``
  and ``recover`` while the supervisor goes on (a child's recovery may need
  a sibling the supervisor has yet to restart); the ordered strategies wait
  for each child's ``recover`` before starting the next, as OTP does.
- **Backoff** (Akka's ``restartWithBackoff``): the n-th consecutive restart
  of a child waits ``min(max, min * 2**n) * (1 + U[0,1) * jitter)`` seconds
  on the runtime clock, U drawn from the runtime's seeded generator; the
  count resets once a child has run ``reset_after`` seconds (default:
  ``within``) without failing. Messages sent meanwhile wait in its mailbox.

A supervisor's decisions are taken one at a time by its own task, in the
order exits arrive, like an OTP supervisor process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
import structlog

from runtime._actor import Actor
from runtime._cell import ExitKind, ExitReason, _ActorCell
from runtime._durations import Duration
from runtime._errors import RestartIntensityExceeded, ScenarioError, ShardlineError
from runtime._message import Message
from runtime._ref import ActorRef, _LocalRef

if TYPE_CHECKING:
    from runtime._system import Runtime

M = TypeVar("M", bound=Message)
_log = structlog.get_logger("shardline")


class Strategy(StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class Backoff(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Restart delay policy; the default (all zero) restarts at once, as OTP does."""

    min: Duration = 0.0
    max: Duration = 30.0
    jitter: float = 0.0
    reset_after: Duration | None = None

    def __post_init__(self) -> None:
        if self.min < 0:
            raise ValueError(f"backoff min must be >= 0, got {self.min}")
        if self.max < self.min:
            raise ValueError(f"backoff max ({self.max}) must be >= min ({self.min})")
        if self.jitter < 0:
            raise ValueError(f"backoff jitter must be >= 0, got {self.jitter}")
        if self.reset_after is not None and self.reset_after <= 0:
            raise ValueError(f"backoff reset_after must be > 0, got {self.reset_after}")

    def delay(self, attempt: int, u: float) -> float:
        """Delay before restart number ``attempt`` (0-based), given ``u`` in [0, 1).

        Any attempt number is valid: past the float range ``2**attempt`` is taken
        as infinite, so the delay is ``max`` (as Akka's ``calculateDelay`` does).
        """
        if self.min <= 0:
            return 0.0
        try:
            base = min(self.max, self.min * (2.0**attempt))
        except OverflowError:
            base = self.max
        return base * (1.0 + u * self.jitter)


class SupervisorSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Supervisor flags: strategy, restart intensity and backoff."""

    strategy: Strategy = Strategy.ONE_FOR_ONE
    max_restarts: int = 3
    within: Duration = 5.0
    backoff: Backoff = Backoff()

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts}")
        if self.within <= 0:
            raise ValueError(f"within must be > 0 seconds, got {self.within}")




def _retrieve(future: asyncio.Future[None]) -> None:
    """Mark a start failure as seen; the child's exit event already reports it."""
    if not future.cancelled():
        future.exception()


class _SupervisorNode:
    """Runtime-private supervisor state; the public handle is :class:`Supervisor`."""

    def __init__(
        self, rt: Runtime, name: str, spec: SupervisorSpec,
        parent: _SupervisorNode | None, restart: Restart,
    ) -> None:
        self.rt = rt
        self.name = name
        self.spec = spec
        self.parent = parent
        self.restart_type = restart
        self.children: list[_ActorCell | _SupervisorNode] = []
        self.incarnation = 1
        self.started_at = rt.now()
        self.backoff_attempt = 0
        self.restarted = 0
        self.crashed = 0
        self.active = True
        self.dead = False
        self._restarts: deque[float] = deque()
        self._events: deque[tuple[Any, ...]] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._pending: list[asyncio.TimerHandle] = []
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sup:{name}")
        self.handle = Supervisor(self)

    @property
    def running(self) -> bool:
        return self.active

    # -- events --------------------------------------------------------------
    def child_exited(self, child: _ActorCell | _SupervisorNode, reason: ExitReason,
                     incarnation: int) -> None:
        self._post(("exit", child, reason, incarnation))

    def _post(self, event: tuple[Any, ...]) -> None:
        self._events.append(event)
        if self._wakeup is not None and not self._wakeup.done():
            self._wakeup.set_result(None)

    async def _run(self) -> None:
        while True:
            while not self._events:
                self._wakeup = asyncio.get_running_loop().create_future()
                await self._wakeup
            event = self._events.popleft()
            if not self.active:
                continue
            if event[0] == "exit":
                _, child, reason, incarnation = event
                if child in self.children and incarnation == child.incarnation:
                    await self._handle_exit(child, reason)
            else:
                _, targets, delay = event
                await self._restart(targets, delay)

    # -- policy ----------------------------------------------------------------
    async def _handle_exit(self, child: _ActorCell | _SupervisorNode, reason: ExitReason) -> None:
        if child.restart_type is Restart.TEMPORARY or (
            child.restart_type is Restart.TRANSIENT and not reason.abnormal
        ):
            self.children.remove(child)
            child.mark_dead(reason)
            return
        now = self.rt.now()
        self._restarts.append(now)
        while self._restarts and now - self._restarts[0] > self.spec.within:
            self._restarts.popleft()
        if len(self._restarts) > self.spec.max_restarts:
            await self._escalate(child)
            return
        affected = self._affected_by(child)
        for sibling in reversed(affected):
            if sibling is not child:
                await sibling.terminate()
        for sibling in affected:
            if sibling is not child and sibling.restart_type is Restart.TEMPORARY:
                self.children.remove(sibling)
                sibling.mark_dead(ExitReason(ExitKind.SHUTDOWN))
        affected = [c for c in affected if c in self.children]
        delay = self._backoff_delay(child, now)
        if delay > 0:
            self.rt._lifecycle("restart_scheduled", child.name, f"delay {delay:.6f}")
            handle = asyncio.get_running_loop().call_later(
                delay, self._post, ("restart", affected, delay))
            self._pending.append(handle)
        else:
            await self._restart(affected, delay)

    def _affected_by(
        self, child: _ActorCell | _SupervisorNode
    ) -> list[_ActorCell | _SupervisorNode]:
        if self.spec.strategy is Strategy.ONE_FOR_ALL:
            return list(self.children)
        if self.spec.strategy is Strategy.REST_FOR_ONE:
            return self.children[self.children.index(child):]
        return [child]

    def _backoff_delay(self, child: _ActorCell | _SupervisorNode, now: float) -> float:
        backoff = self.spec.backoff
        reset_after = backoff.reset_after if backoff.reset_after is not None else self.spec.within
        if now - child.started_at >= reset_after:
            child.backoff_attempt = 0
        u = self.rt.random.random() if backoff.jitter > 0 and backoff.min > 0 else 0.0
        delay = backoff.delay(child.backoff_attempt, u)
        child.backoff_attempt += 1
        return delay

    async def _restart(self, targets: list[_ActorCell | _SupervisorNode], delay: float) -> None:
        for child in targets:
            if child not in self.children or child.running:
                continue
            child.restarted += 1
            self.rt._lifecycle("restarted", child.name,
                               f"attempt {child.backoff_attempt} delay {delay:.6f}")
            _log.info("actor.restarted", actor=child.name, attempt=child.backoff_attempt,
                      delay=round(delay, 6), supervisor=self.name)
            ready = child.start()
            if self.spec.strategy is Strategy.ONE_FOR_ONE:
                # Do not wait for started/recover: a recovering child may need a
                # sibling that this supervisor has yet to restart (a deadlock if
                # we waited). A failing start posts its own exit event.
                ready.add_done_callback(_retrieve)
            else:
                # Ordered strategies start children in order, as OTP does.
                with contextlib.suppress(Exception):
                    await ready

    async def _escalate(self, child: _ActorCell | _SupervisorNode) -> None:
        error = RestartIntensityExceeded(self.name, self.spec.max_restarts,
                                         self.spec.within, child.name)
        self.rt._lifecycle("escalated", self.name, str(error))
        _log.error("supervisor.escalated", supervisor=self.name, child=child.name,
                   max_restarts=self.spec.max_restarts, within=self.spec.within)
        await self.terminate()
        self.crashed += 1
        if self.parent is None:
            self.rt._fatal(error)
        else:
            self.parent.child_exited(self, ExitReason(ExitKind.CRASH, error), self.incarnation)

    # -- the child interface (a supervisor is a child of its parent) ---------
    def start(self) -> asyncio.Future[None]:
        """Restart after an escalation: fresh intensity history, children in start order."""
        self.incarnation += 1
        self.started_at = self.rt.now()
        self._restarts.clear()
        self.active = True
        return asyncio.ensure_future(self._start_children())

    async def _start_children(self) -> None:
        for child in list(self.children):
            if child.restart_type is Restart.TEMPORARY:
                self.children.remove(child)
                child.mark_dead(ExitReason(ExitKind.SHUTDOWN))
                continue
            if not child.running:
                with contextlib.suppress(Exception):  # as above
                    await child.start()

    async def terminate(self) -> None:
        """Stop every child, newest first; the supervisor stays, inactive, until restarted."""
        self.active = False
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._events.clear()
        for child in reversed(self.children):
            await child.terminate()

    def mark_dead(self, reason: ExitReason) -> None:
        if self.dead:
            return
        self.dead = True
        self.active = False
        for child in reversed(self.children):
            child.mark_dead(ExitReason(ExitKind.SHUTDOWN))
        self.children.clear()
        self._task.cancel()
        self.rt._unregister_supervisor(self)
        self.rt._lifecycle("stopped", self.name, str(reason))

    async def shutdown(self) -> None:
        await self.terminate()
        self.mark_dead(ExitReason(ExitKind.SHUTDOWN))
        await asyncio.wait({self._task})

    # -- spawning ------------------------------------------------------------
    async def add_actor(
        self, cls: type[Actor[Any]], args: tuple[object, ...], kwargs: dict[str, object],
        name: str | None, restart: Restart, capacity: int | None, shutdown_timeout: float | None,
    ) -> _ActorCell:
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(f"spawn needs an Actor subclass, got {cls!r}")
        if not self.active:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        final_name = self.rt._claim_name(name, cls.__name__)
        factory: Callable[[], Actor[Any]] = lambda: cls(*args, **kwargs)  # noqa: E731
        cell = _ActorCell(
            self.rt, self, factory, cls, final_name,
            capacity if capacity is not None else cls.mailbox_capacity,
            Restart(restart),
            shutdown_timeout if shutdown_timeout is not None else self.rt.shutdown_timeout,
        )
        self.rt._register(cell)
        self.children.append(cell)
        try:
            await cell.start()
        except BaseException as exc:
            if cell in self.children:
                self.children.remove(cell)
            cell.mark_dead(ExitReason(ExitKind.CRASH, exc))
            raise
        return cell

    def add_supervisor(
        self, name: str | None, spec: SupervisorSpec, restart: Restart
    ) -> _SupervisorNode:
        if not self.active:
            raise RuntimeError(f"supervisor {self.name!r} is not running")
        final_name = self.rt._claim_name(name, "supervisor")
        node = _SupervisorNode(self.rt, final_name, spec, self, Restart(restart))
        self.rt._register_supervisor(node)
        self.children.append(node)
        self.rt._lifecycle("started", final_name, "supervisor")
        return node

    async def stop_child(self, child: _ActorCell | _SupervisorNode) -> None:
        if child not in self.children:
            return
        self.children.remove(child)
        await child.terminate()
        child.mark_dead(ExitReason(ExitKind.SHUTDOWN))


class Supervisor:
    """Handle to a supervisor: spawn children under it, nest supervisors, stop children."""

    __slots__ = ("_node",)

    def __init__(self, node: _SupervisorNode) -> None:
        self._node = node

    @property
    def name(self) -> str:
        return self._node.name

    @property
    def spec(self) -> SupervisorSpec:
        return self._node.spec

    def children(self) -> list[str]:
        """Names of the current children, in start order."""
        return [c.name for c in self._node.children]

    async def spawn(
        self,
        cls: type[Actor[M]],
        *args: object,
        name: str | None = None,
        restart: Restart | str = Restart.PERMANENT,
        mailbox_capacity: int | None = None,
        shutdown_timeout: float | None = None,
        **kwargs: object,
    ) -> ActorRef[M]:
        """Start ``cls(*args, **kwargs)`` as a child; returns once ``recover`` has run.

        If the first start raises, the child is not added and the error
        propagates (as OTP's ``start_child`` returns an error).
        """
        cell = await self._node.add_actor(cls, args, kwargs, name, Restart(restart),
                                          mailbox_capacity, shutdown_timeout)
        ref: ActorRef[M] = cell.ref
        return ref

    async def spawn_retrying(
        self,
        cls: type[Actor[M]],
        *args: object,
        name: str,
        backoff: Backoff,
        attempts: int,
        **kwargs: object,
    ) -> ActorRef[M]:
        """``spawn`` of ``cls(*args, **kwargs)``, retrying a first start that failed transiently.

        A failed first ``recover`` is the spawner's error, not the
        supervisor's, so a store error or an injected fault while an actor
        first loads its state would otherwise abort the whole application
        start. It is retried like a restart, with ``backoff``, at most
        ``attempts`` times in all; a ``ScenarioError`` (bad input) is not.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        rt = self._node.rt
        attempt = 0
        while True:
            try:
                cell = await self._node.add_actor(cls, args, kwargs, name, Restart.PERMANENT,
                                                  None, None)
                ref: ActorRef[M] = cell.ref
                return ref
            except ScenarioError:
                raise
            except ShardlineError:
                attempt += 1
                if attempt >= attempts:
                    raise
                await rt.sleep(backoff.delay(attempt - 1, rt.random.random()))

    async def spawn_supervisor(
        self,
        name: str | None = None,
        *,
        strategy: Strategy | str = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        restart: Restart | str = Restart.PERMANENT,
    ) -> Supervisor:
        """Start a nested supervisor as a child of this one."""
        spec = SupervisorSpec(Strategy(strategy), max_restarts, within, backoff or Backoff())
        return self._node.add_supervisor(name, spec, Restart(restart)).handle

    async def stop(self, child: ActorRef[Any] | Supervisor) -> None:
        """Stop a child for good: it finishes its current message, watchers get Terminated."""
        if isinstance(child, ActorRef) and not isinstance(child, _LocalRef):
            raise TypeError(f"{child!r} is not an actor of this runtime; stop it on its node")
        target = child._cell if isinstance(child, _LocalRef) else child._node
        await self._node.stop_child(target)
