"""Simulated time: an asyncio event loop whose clock is virtual and whose
ready queue is shuffled by a seed.

Why a loop subclass rather than a fake clock object: every wait in asyncio
(``sleep``, ``call_later``, ``timeout``) already reads ``loop.time()``, so
making that virtual makes *all* waits virtual, including those in libraries
the runtime does not control. When nothing is runnable the loop jumps to the
next timer, so a simulated hour of timers takes well under a second.

Determinism: runnable callbacks are taken in an order shuffled by the seed
(as madsim and FoundationDB's simulator do), so ordering bugs show up under
some seeds and every seed replays exactly. Time never advances while work
handed to an executor (a thread) is outstanding, nor while a call to a real
server (a PostgreSQL store's query) awaits its reply (``real_io``), so such
a result is never overtaken by a virtual timer: seen from the simulation,
real work takes no time at all. (Real I/O makes a run's interleaving depend
on the server's timing; such runs are not replayed by seed.) trio cannot do this (it breaks deadline
ties by object address), so simulation is an asyncio-backend feature.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import heapq
import os
import random
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class SimulatedEventLoop(asyncio.SelectorEventLoop):
    """A selector loop with a virtual clock starting at 0 and a seeded scheduler."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed
        self._virtual_now = 0.0
        self._schedule_rng = random.Random(f"shardline-scheduler:{seed}")
        self._outstanding_real_work = 0
        self._sockets_in_flight = 0

    def time(self) -> float:
        return self._virtual_now

    def run_in_executor(  # type: ignore[override]
        self, executor: concurrent.futures.Executor | None, func: Callable[..., T], *args: Any
    ) -> asyncio.Future[T]:
        self._outstanding_real_work += 1
        future = super().run_in_executor(executor, func, *args)
        future.add_done_callback(self._real_work_done)
        return future

    def _real_work_done(self, _future: object = None) -> None:
        self._outstanding_real_work -= 1

    def _run_once(self) -> None:
        scheduled: list[asyncio.TimerHandle] = self._scheduled  # type: ignore[attr-defined]
        ready: Any = self._ready  # type: ignore[attr-defined]
        while scheduled and scheduled[0].cancelled():
            handle = heapq.heappop(scheduled)
            handle._scheduled = False  # type: ignore[attr-defined]
            self._timer_cancelled_count -= 1  # type: ignore[attr-defined]
        if not ready and scheduled and self._outstanding_real_work == 0:
            self._virtual_now = max(self._virtual_now, scheduled[0].when())
        if len(ready) > 1 and not self._sockets_in_flight:
            items = list(ready)
            self._schedule_rng.shuffle(items)
            ready.clear()
            ready.extend(items)
        super()._run_once()  # type: ignore[misc]


def run(
    main: Callable[..., Awaitable[T]],
    *args: object,
    simulated: bool = False,
    seed: int = 0,
) -> T:
    """Run ``main(*args)`` to completion and return its result.

    ``simulated=True`` runs it on a :class:`SimulatedEventLoop` seeded with
    ``seed``: virtual time, seeded scheduling, and a ``Runtime`` created inside
    picks the same seed for ``rt.random``. ``simulated=False`` runs it on the
    real clock, like ``anyio.run`` on the asyncio backend, on uvloop's event loop
    (libuv: the same asyncio API, its scheduling and I/O in C) unless the
    environment says ``SHARDLINE_LOOP=asyncio`` (the standard library's loop),
    with the collector's thresholds at ``THROUGHPUT_GC`` until it returns.
    """

    async def _main() -> T:
        return await main(*args)

    def _coroutine() -> Coroutine[Any, Any, T]:
        return _main()

    if not simulated:
        with asyncio.Runner(loop_factory=real_loop_factory()) as runner, \
                collector_thresholds(THROUGHPUT_GC):
            return runner.run(_coroutine())
    with asyncio.Runner(loop_factory=lambda: SimulatedEventLoop(seed)) as runner:
        return runner.run(_coroutine())


THROUGHPUT_GC = (10_000, 10, 1_000)
"""The collector's thresholds while ``run`` runs the real clock (Python's are
(700, 10, 10)): a young pass every 10,000 net allocations instead of 700, and a
full pass at most every 1,000 middle ones, not every 10 (a run's heap is hundreds
of MB of live messages that a full pass walks for nothing). Measured on the strict
queue's benchmark: 216-231 ms of a 2.3 s run in 384-388 passes with Python's,
124-127 ms in 25 with these."""


@contextmanager
def collector_thresholds(thresholds: tuple[int, int, int]) -> Iterator[None]:
    """The collector's thresholds set to ``thresholds`` for the block, then put back."""
    before = gc.get_threshold()
    gc.set_threshold(*thresholds)
    try:
        yield
    finally:
        gc.set_threshold(*before)


LOOPS = ("uvloop", "asyncio")
"""What ``SHARDLINE_LOOP`` may name: the event loop the real clock runs on."""


def loop_choice() -> str:
    """``SHARDLINE_LOOP`` (default ``uvloop``); ``ValueError`` naming it if unknown."""
    choice = os.environ.get("SHARDLINE_LOOP", "uvloop")
    if choice not in LOOPS:
        raise ValueError(f"environment variable SHARDLINE_LOOP: expected one of "
                         f"{', '.join(LOOPS)}, got {choice!r}")
    return choice


def real_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The event loop the real clock runs on: uvloop's, or the standard library's
    when ``SHARDLINE_LOOP=asyncio`` (``None``: asyncio's default)."""
    if loop_choice() == "asyncio":
        return None
    import uvloop

    return uvloop.new_event_loop


@contextmanager
def real_io() -> Iterator[None]:
    """Hold virtual time still while the block awaits a real server's reply.

    On a real loop this does nothing. Every await on a socket to the outside
    world made under simulated time belongs in such a block; otherwise the
    loop, seeing nothing runnable, jumps to the next timer (a lease expiry,
    an ask timeout) while the reply is still on its way. Meanwhile runnable
    callbacks run in FIFO order, not shuffled: asyncio's socket plumbing
    relies on that order (``sock_connect`` must unregister its writer before
    the transport that follows registers one).
    """
    loop = asyncio.get_running_loop()
    if not isinstance(loop, SimulatedEventLoop):
        yield
        return
    loop._outstanding_real_work += 1
    loop._sockets_in_flight += 1
    try:
        yield
    finally:
        loop._sockets_in_flight -= 1
        loop._real_work_done()


def current_seed(default: int = 0) -> int:
    """The seed of the running simulated loop, or ``default`` on a real loop."""
    loop = asyncio.get_running_loop()
    return loop.seed if isinstance(loop, SimulatedEventLoop) else default


def is_simulated() -> bool:
    """Whether the running loop keeps virtual time."""
    return isinstance(asyncio.get_running_loop(), SimulatedEventLoop)
