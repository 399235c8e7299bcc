"""Blocking destination I/O: in threads of the destination's own on the real clock,
inline under simulation (so a seed replays exactly)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from actors.stream._records import Batch
from runtime._errors import ScenarioError

_IO_THREADS = 32
"""Threads a destination may block in at once: more than partitions usually are."""


class Offloaded:
    """Runs blocking I/O in a thread on the real clock, inline under simulation.

    The threads are the destination's own: the loop's default executor has
    ``cpu_count + 4`` threads, so on a small machine some partitions' fsyncs
    would queue for a thread behind the others'.
    """

    def __init__(self, threaded: bool) -> None:
        self._executor = (ThreadPoolExecutor(_IO_THREADS, thread_name_prefix="destination")
                          if threaded else None)

    async def deliver(self, batch: Batch) -> None:
        await self._run(self._write, batch)

    def _write(self, batch: Batch) -> None:
        """Write ``batch`` durably (blocking; in a thread on the real clock)."""
        raise NotImplementedError

    async def _run(self, fn: Callable[[Batch], None], batch: Batch) -> None:
        if self._executor is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, fn, batch)
        else:
            fn(batch)

    def _shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)




def make_directory(path: Path, url: str) -> None:
    """Create a destination's directory; ``ScenarioError`` names the URL and the cause."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ScenarioError(f"destination {url}: cannot create directory: {exc}") from exc
