"""``ActorRef``: an actor's address, wherever the actor runs.

``ActorRef`` is the interface every ref keeps: ``tell``, ``tell_nowait``,
``ask``, ``alive``, and what ``watch`` and timers need. ``_LocalRef`` is the
ref of an actor in this process; the cluster adds refs to actors on other
nodes and to entities (``runtime.cluster``), with the same contract.

A local ref points at the actor's cell, not at an instance, so it stays
valid across restarts, and the mailbox behind it survives them. ``tell``
waits while the mailbox is full (backpressure) but takes a no-suspend fast
path when there is room; ``tell_nowait`` raises ``MailboxFull`` instead.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Generic, TypeVar

from runtime._errors import ActorStopped, AskTimeout, MailboxFull
from runtime._message import Message
from runtime._stats import ActorStatistics

if TYPE_CHECKING:
    from runtime._cell import _ActorCell

M = TypeVar("M", bound=Message)


def _expire(future: asyncio.Future[object], actor: str, msg_type: str, timeout: float) -> None:
    if not future.done():
        future.set_exception(AskTimeout(actor, msg_type, timeout))


def check_accepts(name: str, accepts: tuple[type, ...], exact: frozenset[type],
                  msg: object) -> None:
    """``TypeError`` at the sender for a message actor ``name`` does not accept."""
    if type(msg) not in exact and not isinstance(msg, accepts):
        accepted = " | ".join(t.__name__ for t in accepts)
        raise TypeError(
            f"actor {name!r} does not accept {type(msg).__name__}; it accepts {accepted}")


class ActorRef(Generic[M]):
    """The address of an actor; cheap to copy and safe to keep.

    Every implementation raises ``TypeError`` at the sender for a message the
    actor does not accept, and ``AskTimeout`` naming actor, message type and
    timeout (and node, for a remote actor) when an ask gets no reply in time.
    """

    __slots__ = ("name",)

    name: str
    node: str | None = None
    """The cluster node the actor runs on; ``None`` for this process's own actors."""

    def __repr__(self) -> str:
        return f"ActorRef({self.name!r})"

    def _check(self, msg: object) -> None:
        raise NotImplementedError

    async def tell(self, msg: M) -> None:
        """Send ``msg``; waits while the way to the actor is full (backpressure)."""
        raise NotImplementedError

    def tell_nowait(self, msg: M) -> None:
        """Send ``msg`` or raise ``MailboxFull`` at once."""
        raise NotImplementedError

    async def ask(self, msg: M, timeout: float = 5.0) -> object:
        """Send ``msg`` and await the value ``receive`` returns."""
        raise NotImplementedError

    @property
    def alive(self) -> bool:
        raise NotImplementedError

    def statistics(self) -> ActorStatistics:
        raise NotImplementedError

    def _add_watcher(self, watcher: _ActorCell) -> None:
        """``watcher`` gets ``Terminated`` when this actor stops for good."""
        raise NotImplementedError

    def _remove_watcher(self, watcher: _ActorCell) -> None:
        raise NotImplementedError

    def _system_deliver(self, msg: object) -> None:
        """Deliver a checked message from a runtime timer (``send_after``)."""
        raise NotImplementedError


class _LocalRef(ActorRef[M]):
    """The ref of an actor in this process: a pointer to its cell."""

    __slots__ = ("_cell",)

    def __init__(self, cell: _ActorCell) -> None:
        self._cell = cell
        self.name = cell.name

    def _check(self, msg: object) -> None:
        check_accepts(self.name, self._cell.accepts, self._cell.accepts_exact, msg)

    async def tell(self, msg: M) -> None:
        """Enqueue ``msg``; waits while the mailbox is full. Messages to a stopped actor
        are dead letters (logged and counted), as in Erlang and Akka."""
        cell = self._cell
        if type(msg) not in cell.accepts_exact:
            self._check(msg)
        mailbox = cell.mailbox
        if len(mailbox.items) >= mailbox.capacity:
            await mailbox.wait_for_room()
        if cell.tell_hooks:
            cell.deliver_with_faults(msg, None)
        elif cell.dead:
            cell.dead_letter(msg)
        else:
            cell.received += 1
            mailbox.put_nowait((msg, None))

    def tell_nowait(self, msg: M) -> None:
        """Enqueue ``msg`` or raise ``MailboxFull`` at once."""
        cell = self._cell
        if type(msg) not in cell.accepts_exact:
            self._check(msg)
        mailbox = cell.mailbox
        if len(mailbox.items) >= mailbox.capacity:
            raise MailboxFull(self.name, type(msg).__name__, mailbox.capacity)
        if cell.tell_hooks:
            cell.deliver_with_faults(msg, None)
        elif cell.dead:
            cell.dead_letter(msg)
        else:
            cell.received += 1
            mailbox.put_nowait((msg, None))

    async def ask(self, msg: M, timeout: float = 5.0) -> object:
        """Send ``msg`` and await the value ``receive`` returns.

        Raises ``AskTimeout`` (naming actor, message type and timeout) if no
        reply comes in time, ``ActorStopped`` if the actor is or goes down
        before handling it, and re-raises whatever the handler raised.
        """
        cell = self._cell
        if type(msg) not in cell.accepts_exact:
            self._check(msg)
        if cell.dead:
            raise ActorStopped(self.name, type(msg).__name__)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        mailbox = cell.mailbox
        if len(mailbox.items) >= mailbox.capacity:
            try:
                await asyncio.wait_for(mailbox.wait_for_room(), timeout)
            except TimeoutError:
                raise AskTimeout(self.name, type(msg).__name__, timeout) from None
        reply: asyncio.Future[object] = loop.create_future()
        self._post(msg, reply)
        # Only this timer turns into AskTimeout: a TimeoutError the handler raised
        # reaches the asker unchanged, like any other handler error.
        timer = loop.call_at(deadline, _expire, reply, self.name, type(msg).__name__, timeout)
        try:
            return await reply
        finally:
            timer.cancel()
            if not reply.done():
                reply.cancel()  # the asker gave up: a late reply has nobody to go to

    def _post(self, msg: object, reply: asyncio.Future[object] | None) -> None:
        """Enqueue a checked message now, past the mailbox bound (the caller bounds what
        it has in flight); ``reply`` gets the result. ``ActorStopped`` if the actor is."""
        cell = self._cell
        if cell.tell_hooks:
            cell.deliver_with_faults(msg, reply)
        elif cell.dead:
            raise ActorStopped(self.name, type(msg).__name__)
        else:
            cell.received += 1
            cell.mailbox.put_nowait((msg, reply))

    @property
    def alive(self) -> bool:
        """False once the actor has stopped for good (it will not be restarted)."""
        return not self._cell.dead

    def statistics(self) -> ActorStatistics:
        return self._cell.statistics()

    def _add_watcher(self, watcher: _ActorCell) -> None:
        self._cell.add_watcher(watcher)

    def _remove_watcher(self, watcher: _ActorCell) -> None:
        self._cell.remove_watcher(watcher)

    def _system_deliver(self, msg: object) -> None:
        self._cell.system_deliver(msg)
