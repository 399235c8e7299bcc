"""The actor cell: one actor's identity, mailbox and lifecycle across restarts.

A cell outlives the instances it runs. Each (re)start builds a fresh
instance, runs ``started`` and ``recover``, then takes messages one at a
time. When an incarnation ends, the cell reports *why* to its supervisor
(unless the supervisor itself asked it to stop) and the supervisor decides
whether it runs again. A message whose handling raised is not redelivered;
the crash log names it.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

from runtime._actor import Actor, Timer
from runtime._deferred import Deferred
from runtime._errors import ActorStopped, InjectedFault
from runtime._faults import HANDLE_KINDS, TELL_KINDS, Fault
from runtime._mailbox import INTERRUPT, Envelope, Mailbox
from runtime._message import Terminated
from runtime._ref import _LocalRef
from runtime._stats import ActorStatistics

if TYPE_CHECKING:
    from runtime._supervisor import Restart, _SupervisorNode
    from runtime._system import Runtime

_log = structlog.get_logger("shardline")


class ExitKind(enum.Enum):
    NORMAL = "normal"
    CRASH = "crash"
    SHUTDOWN = "shutdown"


class ExitReason:
    """Why an incarnation (or a supervisor) ended."""

    __slots__ = ("error", "kind")

    def __init__(self, kind: ExitKind, error: BaseException | None = None) -> None:
        self.kind = kind
        self.error = error

    @property
    def abnormal(self) -> bool:
        return self.kind is ExitKind.CRASH

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.kind.value}: {type(self.error).__name__}: {self.error}"
        return self.kind.value


class _ActorCell:
    """Runtime-private state of one actor; see the module docstring."""

    def __init__(
        self,
        rt: Runtime,
        parent: _SupervisorNode,
        factory: Callable[[], Actor[Any]],
        cls: type[Actor[Any]],
        name: str,
        capacity: int,
        restart: Restart,
        shutdown_timeout: float,
    ) -> None:
        self.rt = rt
        self.parent = parent
        self.factory = factory
        self.name = name
        self.restart_type = restart
        self.shutdown_timeout = shutdown_timeout
        self.accepts = cls.accepts
        self.accepts_exact = cls.accepts_exact
        self.mailbox = Mailbox(capacity)
        self.ref: _LocalRef[Any] = _LocalRef(self)
        self.log = _log.bind(actor=name)
        self.instance: Actor[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.incarnation = 0
        self.dead = False
        self.started_at = 0.0
        self.backoff_attempt = 0
        self._stop_requested = False
        self._terminating = False
        self._timers: dict[Timer, None] = {}  # live timers of this incarnation
        self._watchers: dict[_ActorCell, None] = {}
        self._armed_tell: list[Fault] = []
        self._armed_handle: list[Fault] = []
        self._prob_tell: list[Fault] = []
        self._prob_handle: list[Fault] = []
        self.tell_hooks = False
        self.handle_hooks = False
        self.received = 0
        self.processed = 0
        self.crashed = 0
        self.restarted = 0
        self.dropped = 0

    # -- lifecycle -----------------------------------------------------------
    def start(self) -> asyncio.Future[None]:
        """Begin a new incarnation; the future resolves once ``recover`` returned."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        self.incarnation += 1
        self._stop_requested = False
        self._terminating = False
        self.started_at = self.rt.now()
        self.task = loop.create_task(self._run(ready, self.incarnation), name=self.name)
        return ready

    async def _run(self, ready: asyncio.Future[None], incarnation: int) -> None:
        reason = ExitReason(ExitKind.NORMAL)
        instance: Actor[Any] | None = None
        try:
            instance = self.factory()
            instance._cell = self
            self.instance = instance
            await instance.started()
            await instance.recover()
            self.rt._lifecycle("started", self.name, f"incarnation {incarnation}")
            self.log.info("actor.started", incarnation=incarnation)
            if not ready.done():
                ready.set_result(None)
            await self._take_messages(instance)
            if self._terminating:
                reason = ExitReason(ExitKind.SHUTDOWN)
        except asyncio.CancelledError:
            reason = ExitReason(ExitKind.SHUTDOWN)
        except Exception as exc:
            reason = ExitReason(ExitKind.CRASH, exc)
            self.crashed += 1
            self.rt._lifecycle("crashed", self.name, f"{type(exc).__name__}: {exc}")
            self.log.error("actor.crashed", incarnation=incarnation, exc_info=exc)
        finally:
            self._cancel_timers()
            if instance is not None:
                await self._call_stopped(instance)
            self.instance = None
            self.task = None
            first_start_failed = incarnation == 1 and not ready.done()
            if not ready.done():
                if reason.error is not None:
                    ready.set_exception(reason.error)
                else:
                    ready.set_exception(ActorStopped(self.name))
            # A failed first start is the spawner's error (spawn raises it, as OTP's
            # start_child returns one): the supervisor never sees it, so it cannot
            # restart a child that spawn is about to discard.
            if not self._terminating and not first_start_failed:
                self.parent.child_exited(self, reason, incarnation)

    async def _call_stopped(self, instance: Actor[Any]) -> None:
        try:
            await instance.stopped()
        except Exception as exc:
            self.log.error("actor.stopped_hook_failed", exc_info=exc)

    async def _take_messages(self, instance: Actor[Any]) -> None:
        mailbox = self.mailbox
        items = mailbox.items
        receive = instance.receive
        trace = self.rt.trace
        while not self._stop_requested:
            if items:
                envelope = mailbox.pop()
            elif self._armed_handle and self._armed_handle[0].kind == "pause":
                # an armed pause starts once the actor is idle, not at the next message
                await self._before_handling((INTERRUPT, None))
                continue
            else:
                envelope = await mailbox.get()
            msg, reply = envelope
            if msg is INTERRUPT:  # a stop request or an armed pause woke us
                continue
            if self.handle_hooks:
                await self._before_handling(envelope)
            if trace.full:
                trace.record(self.rt.now(), "deliver", self.name, type(msg).__name__)
            try:
                result = await receive(msg)
            except Exception as exc:
                self._lost(envelope, exc)
                raise
            self.processed += 1
            if reply is not None and not reply.done():
                if type(result) is Deferred:
                    result.answer(reply, self.name, type(msg).__name__)
                else:
                    reply.set_result(result)

    def _lost(self, envelope: Envelope, exc: BaseException) -> None:
        msg, reply = envelope
        if reply is not None and not reply.done():
            reply.set_exception(exc)
        self.log.warning("message.not_redelivered", message=type(msg).__name__,
                         error=f"{type(exc).__name__}: {exc}")

    async def _before_handling(self, envelope: Envelope) -> None:
        fault = self._next_fault(self._armed_handle, self._prob_handle)
        self._refresh_hooks()
        if fault is None:
            return
        self.rt.faults.record(fault, self.name)
        if fault.kind == "pause":
            await asyncio.sleep(fault.duration)
        else:
            exc = InjectedFault(
                f"injected crash of {self.name!r} while handling {type(envelope[0]).__name__}"
            )
            self._lost(envelope, exc)
            raise exc

    async def fault_point(self, where: str) -> None:
        """Apply an armed crash or pause fault here, inside a handling.

        Armed faults otherwise strike at the next message; actors call this
        between the steps of a long handling so faults can land mid-protocol
        (after a pending checkpoint, before its commit).
        """
        if not self._armed_handle:
            return
        fault = self._armed_handle.pop(0)
        self._refresh_hooks()
        self.rt.faults.record(fault, self.name)
        if fault.kind == "pause":
            await asyncio.sleep(fault.duration)
            return
        raise InjectedFault(f"injected crash of {self.name!r} {where}")

    def _next_fault(self, armed: list[Fault], probabilistic: list[Fault]) -> Fault | None:
        if armed:
            return armed.pop(0)
        for fault in probabilistic:
            if self.rt.faults.roll(fault):
                return fault
        return None

    # -- stopping ------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop after the current message; nothing is enqueued, so the mailbox keeps
        exactly the messages senders put there."""
        self._stop_requested = True
        self.mailbox.interrupt()

    async def terminate(self) -> None:
        """Stop the running incarnation on the supervisor's behalf: the current
        message may finish within ``shutdown_timeout``, then the task is cancelled.
        The supervisor is not notified (it asked)."""
        task = self.task
        if task is None:
            return
        self._terminating = True
        self.request_stop()
        if task is asyncio.current_task():
            return  # the actor stops itself: its loop ends when this message is done
        done, _ = await asyncio.wait({task}, timeout=self.shutdown_timeout)
        if not done:
            self.log.warning("actor.shutdown_timeout", timeout=self.shutdown_timeout)
            task.cancel()
            await asyncio.wait({task})

    def mark_dead(self, reason: ExitReason) -> None:
        """This actor will not run again: free its name, fail pending asks, tell watchers."""
        if self.dead:
            return
        self.dead = True
        self.rt._unregister(self)
        for msg, reply in self.mailbox.drain():
            self.dropped += 1
            if reply is not None and not reply.done():
                reply.set_exception(ActorStopped(self.name, type(msg).__name__))
        self.rt._lifecycle("stopped", self.name, str(reason))
        self.log.info("actor.stopped", reason=str(reason))
        note = Terminated(actor=self.name, reason=str(reason))
        for watcher in self._watchers:
            watcher.system_deliver(note)
        self._watchers.clear()

    # -- delivery with faults ------------------------------------------------
    def system_deliver(self, msg: object) -> None:
        """Deliver a runtime message (Terminated, timer tick), bypassing type and bound."""
        if not self.dead:
            self.received += 1
            self.mailbox.put_nowait((msg, None))

    def dead_letter(self, msg: object) -> None:
        self.dropped += 1
        self.rt._dead_letter(self.name, msg)

    def deliver_with_faults(self, msg: object, reply: asyncio.Future[object] | None) -> None:
        if self.dead:
            if reply is not None:
                raise ActorStopped(self.name, type(msg).__name__)
            self.dead_letter(msg)
            return
        fault = self._next_fault(self._armed_tell, self._prob_tell)
        self._refresh_hooks()
        if fault is None:
            self.received += 1
            self.mailbox.put_nowait((msg, reply))
            return
        self.rt.faults.record(fault, self.name)
        if fault.kind == "drop":
            self.dropped += 1
            self.log.warning("message.dropped", message=type(msg).__name__, cause="fault")
        elif fault.kind == "duplicate":
            self.received += 2
            self.mailbox.put_nowait((msg, reply))
            self.mailbox.put_nowait((msg, None))
        else:
            loop = asyncio.get_running_loop()
            loop.call_later(fault.delay, self._deliver_late, msg, reply)

    def _deliver_late(self, msg: object, reply: asyncio.Future[object] | None) -> None:
        if self.dead:
            if reply is not None and not reply.done():
                reply.set_exception(ActorStopped(self.name, type(msg).__name__))
            return
        self.received += 1
        self.mailbox.put_nowait((msg, reply))

    def arm(self, fault: Fault) -> bool:
        """A time-triggered fault chose this actor: it applies at the next opportunity.

        The same fault already armed and not yet applied absorbs the new
        trigger (returns False): an actor that was idle through several
        triggers crashes (or drops a message ...) once, instead of once per
        trigger on each of its next handlings, which starved it of progress.
        """
        armed = self._armed_tell if fault.kind in TELL_KINDS else self._armed_handle
        if any(f is fault for f in armed):
            return False
        armed.append(fault)
        if fault.kind == "pause":
            self.mailbox.interrupt()  # wake an idle actor: the pause starts now
        self._refresh_hooks()
        return True

    def add_probabilistic(self, fault: Fault) -> None:
        (self._prob_handle if fault.kind in HANDLE_KINDS else self._prob_tell).append(fault)
        self._refresh_hooks()

    def _refresh_hooks(self) -> None:
        self.tell_hooks = bool(self._armed_tell or self._prob_tell)
        self.handle_hooks = bool(self._armed_handle or self._prob_handle)

    # -- watch and timers ----------------------------------------------------
    @property
    def running(self) -> bool:
        return self.task is not None

    def add_watcher(self, watcher: _ActorCell) -> None:
        if self.dead:
            watcher.system_deliver(Terminated(actor=self.name, reason="already stopped"))
        else:
            self._watchers[watcher] = None

    def remove_watcher(self, watcher: _ActorCell) -> None:
        self._watchers.pop(watcher, None)

    def start_timer(self, delay: float, msg: object, interval: float | None) -> Timer:
        timer = Timer(self._timers)
        loop = asyncio.get_running_loop()

        def fire() -> None:
            if timer.cancelled:
                return
            if interval is None:
                timer._handle = None
                timer._release()
            else:
                timer._handle = loop.call_later(interval, fire)
            self.system_deliver(msg)

        timer._handle = loop.call_later(delay, fire)
        return timer

    def _cancel_timers(self) -> None:
        for timer in list(self._timers):
            timer.cancel()

    def statistics(self) -> ActorStatistics:
        return ActorStatistics(
            name=self.name,
            received=self.received,
            processed=self.processed,
            crashed=self.crashed,
            restarted=self.restarted,
            dropped=self.dropped,
            mailbox_depth=len(self.mailbox),
            mailbox_high_water=self.mailbox.high_water,
            mailbox_capacity=self.mailbox.capacity,
        )
