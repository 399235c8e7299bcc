"""A bounded mailbox with a fast path.

Why not ``asyncio.Queue`` or an anyio memory stream: awaiting a stream's
``send`` on every message yields to the scheduler each time (about 7x the
cost of ``send_nowait``). Here ``put`` only suspends when the mailbox is
full, so backpressure is kept and the common case costs a deque append.

System messages (``Terminated``, timer ticks) bypass the bound: they must
never be lost or block the runtime. A stop request or an armed pause is not
a message: ``interrupt`` wakes the idle consumer without enqueuing anything,
so nothing stale is left to take a slot or show in the depth.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

Envelope = tuple[Any, "asyncio.Future[object] | None"]


class _Interrupt:
    """What ``get`` returns when ``interrupt`` woke it with nothing queued."""


INTERRUPT = _Interrupt()
_INTERRUPTED: Envelope = (INTERRUPT, None)


class Mailbox:
    """FIFO of (message, reply future) pairs with one consumer and a capacity."""

    __slots__ = ("_getter", "_putters", "capacity", "high_water", "items")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self.items: deque[Envelope] = deque()
        self.high_water = 0
        self._getter: asyncio.Future[_Interrupt | None] | None = None
        self._putters: deque[asyncio.Future[None]] = deque()

    def __len__(self) -> int:
        return len(self.items)

    def full(self) -> bool:
        return len(self.items) >= self.capacity

    def put_nowait(self, envelope: Envelope) -> None:
        """Enqueue without checking capacity (callers check ``full`` first)."""
        items = self.items
        items.append(envelope)
        depth = len(items)
        if depth > self.high_water:
            self.high_water = depth
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(None)

    async def wait_for_room(self) -> None:
        """Suspend until the mailbox has room (FIFO among waiting senders)."""
        while len(self.items) >= self.capacity:
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                if waiter in self._putters:
                    self._putters.remove(waiter)
                elif len(self.items) < self.capacity:
                    # We were given room but cannot use it: pass it on, or the
                    # next waiting sender sleeps while the mailbox has room.
                    self._wake_putter()
                raise

    def pop(self) -> Envelope:
        """Take the oldest envelope; the caller has checked the mailbox is not empty."""
        envelope = self.items.popleft()
        if self._putters:
            self._wake_putter()
        return envelope

    async def get(self) -> Envelope:
        """The oldest envelope, waiting for one; ``(INTERRUPT, None)`` if interrupted."""
        while not self.items:
            getter = asyncio.get_running_loop().create_future()
            self._getter = getter
            try:
                await getter
            finally:
                self._getter = None
            if getter.result() is INTERRUPT and not self.items:
                return _INTERRUPTED
        envelope = self.items.popleft()
        if self._putters:
            self._wake_putter()
        return envelope

    def interrupt(self) -> None:
        """Wake a consumer waiting in ``get`` without enqueuing (no-op if it is busy)."""
        getter = self._getter
        if getter is not None:
            self._getter = None
            if not getter.done():
                getter.set_result(INTERRUPT)

    def _wake_putter(self) -> None:
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
                return

    def drain(self) -> list[Envelope]:
        """Remove and return everything queued (used when an actor stops for good)."""
        drained = list(self.items)
        self.items.clear()
        while self._putters:
            putter = self._putters.popleft()
            if not putter.done():
                putter.set_result(None)
        return drained
