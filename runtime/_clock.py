"""The runtime clock.

All waiting goes through the event loop's clock, which the simulated loop
makes virtual; so the same code waits for real seconds or for virtual ones.
``wall()`` is the time leases are stamped with in the store: the real epoch
time when running for real (so several processes and later runs agree), and
a fixed epoch plus virtual time under simulation (so a seed replays).
"""

from __future__ import annotations

import asyncio
import time

SIMULATED_EPOCH = 1_700_000_000.0


class Clock:
    """Seconds since the runtime started, and sleeping on the same clock."""

    __slots__ = ("_epoch", "_loop", "simulated")

    def __init__(self, loop: asyncio.AbstractEventLoop, simulated: bool) -> None:
        self._loop = loop
        self._epoch = loop.time()
        self.simulated = simulated

    def now(self) -> float:
        return self._loop.time() - self._epoch

    def wall(self) -> float:
        if self.simulated:
            return SIMULATED_EPOCH + self._loop.time()
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
