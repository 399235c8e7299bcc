"""The runtime clock.

All waiting goes through the event loop's clock, which the simulated loop
makes virtual; so the same code waits for real seconds or for virtual ones.
``wall()`` is the time leases are stamped with in the store: the real epoch
time when running for real (so several processes and later runs agree), and
a fixed epoch plus virtual time under simulation (so a seed replays).

``reads_real_time(clock)`` tells a store whether the clock it was handed is
real time (a process clock, or ``wall`` of a runtime on a real loop); a
store shared by several machines then judges leases by its server's clock
instead, since no process's clock is to be trusted for ownership.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

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


_PROCESS_CLOCKS: tuple[Callable[[], float], ...] = (time.time, time.monotonic, time.perf_counter)


def reads_real_time(clock: Callable[[], float]) -> bool:
    """Whether ``clock`` is this process's real time rather than simulated or test time."""
    if clock in _PROCESS_CLOCKS:
        return True
    owner = getattr(clock, "__self__", None)
    return isinstance(owner, Clock) and not owner.simulated
