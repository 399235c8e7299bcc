"""Fault plans and the injector.

A fault names a *kind*, a *target* (an actor name or glob) and *when*:
``at`` a runtime time (once), ``every`` interval, or with a ``probability``
per opportunity, drawn from the runtime's seeded generator so that a seed
replays the same faults.

Actor kinds are built in:

- ``crash``: the target's next handling raises ``InjectedFault``;
- ``pause``: the target handles nothing for ``duration`` seconds;
- ``delay`` / ``drop`` / ``duplicate``: the next message sent to the target
  is delivered ``delay`` seconds late, discarded, or delivered twice.

Time-triggered actor faults pick one live matching actor with the seeded
generator (every matching actor with ``all=true``); probability faults apply
to each message of every matching actor.

Across cluster nodes (``remote``, set by a scenario run on nodes): a time
trigger picks among the matching actors of this runtime *and* of every live
node (asked through their agents), and strikes the chosen one where it
runs. On a node a target also matches the names a scenario topology gives
its actors (``strikes``): an entity ``Kind/key`` by its ``key``, an actor
named ``<name>.<node>`` by ``<name>``.

Systems add kinds of their own (``store_error``, ``lease_expiry`` ...) with
:meth:`FaultInjector.register_kind`: either *active* (a callback runs at each
time trigger) or *passive* (a trigger arms the fault; the system's next
:meth:`FaultInjector.fire` check for that kind and a matching name consumes
it). Every injected fault is a trace event and a structlog event.

Triggers are fire-and-forget: they never accumulate.

- A trigger that finds its fault still armed (not yet consumed) is
  absorbed: a passive fault is armed at most once, an actor holds at most
  one pending ``crash``, ``pause``, ``delay``, ``drop`` or ``duplicate`` of
  each plan entry. So ``destination_error`` with ``every = "250ms"`` fails
  at most one delivery per 250 ms, however rarely deliveries happen; it
  does not become "every delivery fails" after a quiet spell.
- A ``crash`` or ``pause`` trigger that chooses an actor which is down,
  waiting out its restart backoff, is absorbed: the actor is already down,
  and nothing is saved up for its next incarnation.
- An absorbed trigger did not take effect: it spends none of ``count``.

The interaction with restart backoff: after a crash an actor is down for
its supervisor's backoff delay, then runs until the next trigger that
chooses it. With ``every`` shorter than the backoff, the actor is up for
less than ``every`` out of each ``backoff + every`` (triggers meanwhile
pass it by), so it progresses slowly, never not at all. A passive fault
meets the system's own retry backoff the same way: if a destination is
retried less often than ``every``, each retry finds a fresh trigger and
fails, so choose ``every`` longer than the retry backoff to see recovery.
"""

from __future__ import annotations

import asyncio
import fnmatch
import random
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Protocol

import msgspec
import structlog

from runtime._background import BackgroundTasks

if TYPE_CHECKING:
    from runtime._cell import _ActorCell
    from runtime._system import Runtime

ACTOR_FAULT_KINDS = ("crash", "pause", "delay", "drop", "duplicate")
TELL_KINDS = frozenset({"delay", "drop", "duplicate"})
HANDLE_KINDS = frozenset({"crash", "pause"})

_log = structlog.get_logger("shardline")


class Fault(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One entry of a fault plan. Times and durations are seconds on the runtime clock."""

    kind: str
    target: str = "*"
    at: float | None = None
    every: float | None = None
    probability: float | None = None
    duration: float = 0.0
    delay: float = 0.0
    count: int | None = None
    start: float = 0.0
    all: bool = False
    restart_after: float | None = None
    """``kill_node`` only: start the killed node again after this many seconds."""

    def __post_init__(self) -> None:
        triggers = [t for t in (self.at, self.every, self.probability) if t is not None]
        if len(triggers) != 1:
            raise ValueError(
                f"fault {self.kind!r} on {self.target!r}: "
                "give exactly one of at, every, probability"
            )
        if self.at is not None and self.at < 0:
            raise ValueError(f"fault {self.kind!r}: at must be >= 0, got {self.at}")
        if self.every is not None and self.every <= 0:
            raise ValueError(f"fault {self.kind!r}: every must be > 0, got {self.every}")
        if self.probability is not None and not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                f"fault {self.kind!r}: probability must be in [0, 1], got {self.probability}"
            )
        if self.duration < 0 or self.delay < 0 or self.start < 0:
            raise ValueError(f"fault {self.kind!r}: duration, delay and start must be >= 0")
        if self.count is not None and self.count < 1:
            raise ValueError(f"fault {self.kind!r}: count must be >= 1, got {self.count}")
        if self.restart_after is not None and (self.kind != "kill_node"
                                               or self.restart_after < 0):
            raise ValueError(f"fault {self.kind!r}: restart_after belongs to kill_node "
                             "faults and must be >= 0")

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.target)


ActiveHandler = Callable[[Fault], None]


class RemoteActors(Protocol):
    """The actors of other runtimes a time-triggered actor fault may choose from."""

    async def candidates(self, fault: Fault) -> list[tuple[str, str]]:
        """``(node, actor name)`` of every running actor elsewhere that ``fault`` strikes."""

    async def strike(self, node: str, name: str, fault: Fault) -> bool:
        """Arm ``fault`` on actor ``name`` of ``node``; False if it was absorbed or gone."""


class _Armed:
    """A passive fault armed by a time trigger, waiting for a matching check."""

    __slots__ = ("fault",)

    def __init__(self, fault: Fault) -> None:
        self.fault = fault


class FaultInjector:
    """Schedules a fault plan on the runtime clock and answers fault checks."""

    def __init__(self, rt: Runtime, rng: random.Random) -> None:
        self._rt = rt
        self._rng = rng
        self._active: dict[str, ActiveHandler] = {}
        self._passive: set[str] = set()
        self._armed: list[_Armed] = []
        self._probabilistic: list[Fault] = []
        self._fired: dict[int, int] = {}
        self._timers: list[asyncio.TimerHandle] = []
        self._origins: dict[int, float] = {}
        self._interned: dict[tuple[int, Fault], Fault] = {}
        """Faults armed from another runtime, by (plan entry, value): ``arm``."""
        self._striking: dict[int, int] = {}
        self._tasks = BackgroundTasks()
        self.remote: RemoteActors | None = None
        """Where time-triggered actor faults also look for targets (module docstring)."""
        self.injected = 0

    # -- kinds -------------------------------------------------------------
    def register_kind(self, kind: str, handler: ActiveHandler | None = None) -> None:
        """Add a system-specific fault kind (active with a handler, passive without)."""
        if kind in ACTOR_FAULT_KINDS:
            raise ValueError(f"fault kind {kind!r} is built in")
        if handler is None:
            self._passive.add(kind)
        else:
            self._active[kind] = handler

    def known_kinds(self) -> list[str]:
        return [*ACTOR_FAULT_KINDS, *sorted(self._passive), *sorted(self._active)]

    # -- plan --------------------------------------------------------------
    def install(self, plan: Sequence[Fault], origin: float = 0.0) -> None:
        """Validate and schedule a plan. Unknown kinds are a ``ValueError`` naming them.

        The plan's times (``at``, ``start``) count from ``origin`` on the runtime clock:
        a run across node processes installs its plan once the nodes are up, so a
        fault ``at = "2s"`` strikes 2 s into the workload, not into node start-up."""
        for fault in plan:
            if fault.kind not in ACTOR_FAULT_KINDS and fault.kind not in self._passive \
                    and fault.kind not in self._active:
                raise ValueError(
                    f"unknown fault kind {fault.kind!r}; known: {', '.join(self.known_kinds())}"
                )
        for fault in plan:
            self._origins[id(fault)] = origin
            if fault.probability is not None:
                self._probabilistic.append(fault)
                if fault.kind in ACTOR_FAULT_KINDS:
                    for cell in self._rt._registry.values():
                        self._attach_probabilistic(cell, fault)
            elif fault.at is not None:
                self._schedule(fault, fault.at)
            elif fault.every is not None:
                self._schedule(fault, fault.start + fault.every)

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._tasks.cancel()

    def _schedule(self, fault: Fault, at: float) -> None:
        loop = asyncio.get_running_loop()
        self._timers.append(loop.call_at(self._rt._epoch + self._origin(fault) + at,
                                         self._trigger, fault))

    def _origin(self, fault: Fault) -> float:
        return self._origins.get(id(fault), 0.0)

    def _started(self, fault: Fault) -> bool:
        return self._rt.now() >= self._origin(fault) + fault.start

    def _budget_left(self, fault: Fault, *, striking: bool = True) -> bool:
        """Triggers still under way across nodes count as spent until they are done
        (``striking``); they may yet be absorbed, so the next trigger of an ``every``
        is scheduled while only the budget they spend is out (``striking=False``)."""
        spent = self._fired.get(id(fault), 0)
        if striking:
            spent += self._striking.get(id(fault), 0)
        return fault.count is None or spent < fault.count

    def _trigger(self, fault: Fault) -> None:
        if fault.every is not None and self._budget_left(fault, striking=False):
            self._schedule(fault, self._rt.now() - self._origin(fault) + fault.every)
        if not self._budget_left(fault):
            return
        # Each trigger that takes effect spends one of ``count``, whatever the kind.
        if fault.kind in ACTOR_FAULT_KINDS:
            self._trigger_actor_fault(fault)
        elif fault.kind in self._active:
            self._count(fault)
            self.record(fault, fault.target)
            self._active[fault.kind](fault)
        elif not any(armed.fault is fault for armed in self._armed):  # else absorbed
            self._count(fault)
            self._armed.append(_Armed(fault))

    def _trigger_actor_fault(self, fault: Fault) -> None:
        if self.remote is not None:
            self._striking[id(fault)] = self._striking.get(id(fault), 0) + 1
            self._tasks.spawn(self._trigger_across(fault, self.remote))
            return
        names = self.candidates(fault)
        if not names:
            return
        chosen = names if fault.all else [self._rng.choice(names)]
        if any([self.arm(name, fault) for name in chosen]):
            self._count(fault)

    async def _trigger_across(self, fault: Fault, remote: RemoteActors) -> None:
        try:
            await self._strike_across(fault, remote)
        finally:
            self._striking[id(fault)] -= 1

    async def _strike_across(self, fault: Fault, remote: RemoteActors) -> None:
        found = sorted([("", name) for name in self.candidates(fault)]
                       + await remote.candidates(fault))
        if not found:
            _log.info("fault.no_target", kind=fault.kind, target=fault.target)
            return
        chosen = found if fault.all else [self._rng.choice(found)]
        struck = False
        for node, name in chosen:
            if not node:
                struck = self.arm(name, fault) or struck
            elif await remote.strike(node, name, fault):
                self.record(fault, f"{node}:{name}")
                struck = True
        if struck:
            self._count(fault)

    def strikes(self, fault: Fault, name: str) -> bool:
        """Does ``fault`` target actor ``name`` of this runtime: by its name, by one of
        its ``Actor.fault_names``, or on a cluster node by the names a scenario
        topology gives node actors (an entity ``Kind/key`` by ``key`` and by what
        follows its last ``/``, an actor ``<name>.<node>`` by ``<name>``)?"""
        if fault.matches(name):
            return True
        cell = self._rt._registry.get(name)
        instance = cell.instance if cell is not None else None
        if instance is not None and any(fault.matches(n) for n in instance.fault_names):
            return True
        node = self._rt.node_name
        if node is None:
            return False
        _kind, slash, key = name.partition("/")
        if slash and (fault.matches(key) or fault.matches(key.rpartition("/")[2])):
            return True
        suffix = f".{node}"
        return name.endswith(suffix) and fault.matches(name[:-len(suffix)])

    def candidates(self, fault: Fault) -> list[str]:
        """The actors of this runtime a trigger of ``fault`` chooses from."""
        return sorted(name for name in self._rt._registry if self.strikes(fault, name))

    def arm(self, name: str, fault: Fault, entry: int | None = None) -> bool:
        """Arm ``fault`` on actor ``name``; False if it was absorbed: the actor is gone,
        or (a crash or pause) down, waiting out its restart backoff (it is down already,
        and its next incarnation owes nothing), or holds this fault armed already.

        A fault of this runtime's plan is the plan entry itself (two entries equal by
        value are two faults). One that arrived from another runtime (``entry``: the
        number that runtime gives the plan entry, ``plan_entry``) is a new object
        each time: it is matched by plan entry and value, so a second trigger of the
        same entry is absorbed as a local one is."""
        cell = self._rt._registry.get(name)
        if cell is None or not (fault.kind in TELL_KINDS or cell.running):
            return False
        if entry is not None:
            fault = self._interned.setdefault((entry, fault), fault)
        return cell.arm(fault)

    @staticmethod
    def plan_entry(fault: Fault) -> int:
        """The number that names plan entry ``fault`` to other runtimes (``arm``): the
        same for every trigger of it, different for two entries equal by value."""
        return id(fault)

    def _count(self, fault: Fault) -> None:
        self._fired[id(fault)] = self._fired.get(id(fault), 0) + 1

    # -- checks ------------------------------------------------------------
    def fire(self, kind: str, name: str) -> Fault | None:
        """Should a fault of ``kind`` hit ``name`` now? Consumes an armed fault or rolls.

        Systems call this at their injection points (a store call, a
        destination write). A returned fault has been recorded as injected.
        """
        for index, armed in enumerate(self._armed):
            if armed.fault.kind == kind and armed.fault.matches(name):
                del self._armed[index]
                self.record(armed.fault, name)
                return armed.fault
        for fault in self._probabilistic:
            if fault.kind == kind and fault.matches(name) and self._budget_left(fault) \
                    and self._started(fault) and self._rng.random() < fault.probability:  # type: ignore[operator]
                self._count(fault)
                self.record(fault, name)
                return fault
        return None

    def roll(self, fault: Fault) -> bool:
        """One probability draw for ``fault`` (used per message by actor cells)."""
        if not self._budget_left(fault) or not self._started(fault):
            return False
        assert fault.probability is not None
        if self._rng.random() < fault.probability:
            self._count(fault)
            return True
        return False

    def _attach_probabilistic(self, cell: _ActorCell, fault: Fault) -> None:
        if self.strikes(fault, cell.name):
            cell.add_probabilistic(fault)

    def on_register(self, cell: _ActorCell) -> None:
        """Give a newly registered actor the probability faults that target it."""
        for fault in self._probabilistic:
            if fault.kind in ACTOR_FAULT_KINDS:
                self._attach_probabilistic(cell, fault)

    def record(self, fault: Fault, name: str) -> None:
        """Trace and log one injected fault."""
        self.injected += 1
        detail = f"{fault.kind}"
        if fault.kind == "pause":
            detail += f" {fault.duration:g}s"
        elif fault.kind == "delay":
            detail += f" {fault.delay:g}s"
        self._rt.trace.record(self._rt.now(), "fault", name, detail)
        _log.warning("fault.injected", kind=fault.kind, target=name, at=round(self._rt.now(), 6))
