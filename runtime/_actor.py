"""The ``Actor`` base class: what a user subclasses.

An actor declares the messages it accepts through its type parameter,
``class Counter(Actor[Add | Total])``; the runtime reads that union once per
class, and a ``tell``/``ask`` of anything else raises ``TypeError`` at the
sender. The return value of ``receive`` answers an ``ask``.

Lifecycle, as the supervisor drives it: a fresh instance per (re)start, then
``started``, then ``recover`` (before any new message: replay pending
checkpoints here), then messages one at a time, then ``stopped`` (also after
a crash, so resources are released before the restart). State kept on the
instance is lost on restart; state that must survive goes to the store.
"""

from __future__ import annotations

import asyncio
import random
import types
import typing
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import structlog

from runtime._message import Message

if TYPE_CHECKING:
    from runtime._cell import _ActorCell
    from runtime._ref import ActorRef
    from runtime._system import Runtime
    from runtime.store import Fence

M = TypeVar("M", bound=Message)


def _accepted_types(param: object) -> tuple[type, ...] | None:
    """The classes named by an actor's type parameter, or None for a TypeVar."""
    if isinstance(param, TypeVar):
        return None
    origin = typing.get_origin(param)
    if isinstance(param, types.UnionType) or origin is typing.Union:
        found: list[type] = []
        for arg in typing.get_args(param):
            found.extend(_accepted_types(arg) or ())
        return tuple(found)
    if isinstance(param, type):
        return (param,)
    raise TypeError(f"actor message parameter must be Message classes, got {param!r}")


class Timer:
    """A cancellable send-after or periodic timer on the runtime clock.

    Its owner (an actor incarnation or the runtime) holds it only while it can
    still fire: a fired one-shot or a cancelled timer is released, so an actor
    that re-arms a timer on every message does not accumulate them.
    """

    __slots__ = ("_handle", "_owner", "cancelled")

    def __init__(self, owner: dict[Timer, None] | None = None) -> None:
        self._handle: asyncio.TimerHandle | None = None
        self.cancelled = False
        self._owner = owner
        if owner is not None:
            owner[self] = None

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._release()

    def _release(self) -> None:
        if self._owner is not None:
            self._owner.pop(self, None)
            self._owner = None


class Actor(Generic[M]):
    """Base class of every actor. Subclass as ``Actor[MsgA | MsgB]``."""

    accepts: ClassVar[tuple[type, ...]] = (Message,)
    accepts_exact: ClassVar[frozenset[type]] = frozenset()
    mailbox_capacity: ClassVar[int] = 1000

    _cell: _ActorCell

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, Actor):
                args = typing.get_args(base)
                found = _accepted_types(args[0]) if args else None
                if found is not None:
                    for t in found:
                        if not (isinstance(t, type) and issubclass(t, Message)):
                            raise TypeError(f"{cls.__name__} accepts {t!r}, not a Message")
                    cls.accepts = found
                    cls.accepts_exact = frozenset(found)

    # -- identity ------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._cell.name

    @property
    def ref(self) -> ActorRef[M]:
        """This actor's address; valid across restarts."""
        ref: ActorRef[M] = self._cell.ref
        return ref

    @property
    def runtime(self) -> Runtime:
        return self._cell.rt

    @property
    def random(self) -> random.Random:
        """The runtime's seeded generator: the only source of randomness to use."""
        return self._cell.rt.random

    @property
    def log(self) -> structlog.typing.FilteringBoundLogger:
        log: structlog.typing.FilteringBoundLogger = self._cell.log
        return log

    def now(self) -> float:
        """Seconds since the runtime started, on the runtime clock."""
        return self._cell.rt.now()

    @property
    def entity_key(self) -> str:
        """The key of this entity activation (``rt.entity(cls, key)``)."""
        from runtime.cluster._entities import entity_of

        return entity_of(self._cell.rt._cluster, self._cell.name).key

    @property
    def fence(self) -> Fence:
        """The ``Fence`` of this activation's lease: write with it, and a write after
        the entity moved to another node is refused."""
        from runtime.cluster._entities import entity_of

        fence = entity_of(self._cell.rt._cluster, self._cell.name).fence
        assert fence is not None
        return fence

    @property
    def fault_names(self) -> tuple[str, ...]:
        """Other names a fault plan may strike this actor by (besides its own): an
        entity's name in a scenario's one-process topology, say ``logserver.<log>``
        for ``LogServerEntity/<log>`` (``runtime._faults``). Default: none."""
        return ()

    # -- lifecycle hooks ---------------------------------------------------
    async def started(self) -> None:
        """Called on every (re)start of a fresh instance, before ``recover``."""

    async def recover(self) -> None:
        """Called after ``started`` and before any new message: replay pending work here."""

    async def receive(self, msg: M) -> object:
        """Handle one message; the return value answers an ``ask``."""
        raise NotImplementedError(f"{type(self).__name__}.receive")

    async def stopped(self) -> None:
        """Called when this incarnation ends (stop, shutdown or crash)."""

    # -- actions -------------------------------------------------------------
    def stop(self) -> None:
        """Stop after the current message: a normal exit (transient children stay down)."""
        self._cell.request_stop()

    async def fault_point(self, where: str = "") -> None:
        """A place inside a handling where an armed ``crash`` or ``pause`` may strike.

        Call it between the steps of a multi-step protocol so fault plans can
        crash or stall the actor *between* them (e.g. after recording a
        pending checkpoint and before committing it). Nothing happens without
        an armed fault.
        """
        await self._cell.fault_point(where)

    def watch(self, other: ActorRef[Any]) -> None:
        """Receive ``Terminated`` when ``other`` stops for good (at once if it already has)."""
        other._add_watcher(self._cell)

    def unwatch(self, other: ActorRef[Any]) -> None:
        other._remove_watcher(self._cell)

    def send_after(self, delay: float, msg: M) -> Timer:
        """Send ``msg`` to this actor after ``delay`` seconds; cancelled on restart.
        A message this actor does not accept is a ``TypeError`` here, as for ``tell``."""
        self._cell.ref._check(msg)
        return self._cell.start_timer(delay, msg, None)

    def send_every(self, interval: float, msg: M, initial_delay: float | None = None) -> Timer:
        """Send ``msg`` to this actor every ``interval`` seconds; cancelled on restart."""
        if interval <= 0:
            raise ValueError(f"timer interval must be > 0, got {interval}")
        self._cell.ref._check(msg)
        first = interval if initial_delay is None else initial_delay
        return self._cell.start_timer(first, msg, interval)
