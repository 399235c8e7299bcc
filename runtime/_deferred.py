"""Answers an actor gives later: ``receive`` returns a :class:`Deferred`.

An actor that must not hold its mailbox while an answer is pending (a read
that waits for records to be appended, a request that waits for a
quorum) returns ``Deferred(future)`` from ``receive`` and goes on with its
next message; whoever asked gets the future's result, or its exception,
when it completes (Akka's ``pipeTo``, Orleans' ``TaskCompletionSource``).
This works the same for an ask from another node: the answer crosses the
cluster when the future completes. The actor completes the future from its
own handlings or timers, and in ``stopped`` (an incarnation that ends
leaving one pending lets its asker wait for the ask's timeout); a future
that is cancelled answers the asker ``ActorStopped`` (the actor gave the
request up, as when it stops). A ``tell`` has no asker: its ``Deferred`` is
ignored.
"""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar

from runtime._errors import ActorStopped

T = TypeVar("T")


class Deferred(Generic[T]):
    """The answer to an ask, given when ``future`` completes (see the module)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[T]) -> None:
        self.future = future

    def answer(self, reply: asyncio.Future[object], actor: str, message: str) -> None:
        """Complete ``reply`` with the future's outcome once there is one."""

        def settle(done: asyncio.Future[T]) -> None:
            if reply.done():
                return
            if done.cancelled():
                reply.set_exception(ActorStopped(actor, message))
            elif (error := done.exception()) is not None:
                reply.set_exception(error)
            else:
                reply.set_result(done.result())

        self.future.add_done_callback(settle)
