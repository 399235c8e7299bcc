"""The runtime clock.

All waiting goes through the event loop's clock, which the simulated loop
makes virtual; so the same code waits for real seconds or for virtual ones.
``wall()`` is the time leases are stamped with in the store: the real epoch
time when running for real (so several processes and later runs agree), and
a fixed epoch plus virtual time under simulation (so a seed replays). A
simulated run that resumes a store stamped by earlier simulated runs starts
its wall clock after theirs (``continue_wall_from``), so a lease, deadline or
bake end they stamped lies behind it, as it would on the real clock.
"""

from __future__ import annotations

import asyncio
import time

SIMULATED_EPOCH = 1_700_000_000.0


class Clock:
    """Seconds since the runtime started, and sleeping on the same clock."""

    __slots__ = ("_epoch", "_loop", "_wall_shift", "simulated")

    def __init__(self, loop: asyncio.AbstractEventLoop, simulated: bool) -> None:
        self._loop = loop
        self._epoch = loop.time()
        self._wall_shift = 0.0
        self.simulated = simulated

    def now(self) -> float:
        return self._loop.time() - self._epoch

    def wall(self) -> float:
        if self.simulated:
            return SIMULATED_EPOCH + self._wall_shift + self._loop.time()
        return time.time()

    def continue_wall_from(self, wall: float) -> None:
        """Simulated clocks only: make ``wall()`` read at least ``wall`` from now on.

        Call it before anything is stamped (the scenario runner does, from the
        store's record of earlier runs); the real clock is left alone.
        """
        if self.simulated:
            self._wall_shift = max(self._wall_shift, wall - SIMULATED_EPOCH - self._loop.time())

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
