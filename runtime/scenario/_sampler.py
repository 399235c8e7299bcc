"""Time-bucketed samples of a running system, read from the runtime itself.

A system hands the runner a *probe* (``ctx.observe(probe)``): a cheap
callable returning an :class:`Observation` of counters the system already
keeps (units completed so far, every latency measured so far, work in
flight). While the scenario has ``[scenario] samples = "100ms"``, a sampler
task wakes every bucket on the runtime clock, reads the probe and the
runtime's own counters (faults injected, actor restarts), and emits one
:class:`Sample` per bucket: throughput, latency p50/p99/max of the
latencies measured in that bucket, in-flight work and the faults fired.
A system whose counters are kept elsewhere (a queue's servers on other
nodes) also hands a *refresh* (``ctx.observe(probe, refresh)``), awaited
before every reading to bring them up to date.

Contract:

- ``Observation.latencies`` is append-only (the sampler remembers how far it
  read); ``completed`` never decreases.
- Nothing is parsed from logs; a sample costs one probe call, one sort of
  the bucket's new latencies and a scan of the trace's newest events when a
  fault fired.
- The sampler is part of the program: under simulated time a run with
  sampling replays exactly (same digest) only with the same ``samples``
  setting, which is why it is a scenario-file field and not a CLI flag.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import msgspec

from runtime.scenario._percentile import percentile

if TYPE_CHECKING:
    from runtime._system import Runtime


class Observation(msgspec.Struct, frozen=True):
    """What a system's probe reports: cumulative counters it keeps anyway."""

    completed: int
    """Units of work done so far (records committed, messages acked, ...)."""
    latencies: Sequence[float] = ()
    """Every latency measured so far, in seconds; append-only."""
    in_flight: int = 0
    """Work accepted but not completed."""
    unit: str = "units"
    """What ``completed`` counts, e.g. "records committed"."""


Probe = Callable[[], Observation]
Refresh = Callable[[], Awaitable[None]]
"""Brings a probe's counters up to date (a system whose counters live elsewhere, such
as on other nodes, reads them here); awaited before every reading of the probe."""


class FaultEvent(msgspec.Struct, frozen=True):
    """One injected fault as the trace recorded it (runtime-clock seconds)."""

    t: float
    kind: str
    target: str


class Sample(msgspec.Struct, frozen=True):
    """One bucket ``[t - width, t)`` of one run."""

    t: float
    width: float
    completed: int
    throughput: float
    p50: float | None
    p99: float | None
    max: float | None
    latency_count: int
    in_flight: int
    faults: int
    restarts: int
    fault_events: list[FaultEvent] = msgspec.field(default_factory=list)


class Sampler:
    """Reads one probe every ``interval`` seconds of the runtime clock."""

    def __init__(self, interval: float, on_sample: Callable[[Sample], None]) -> None:
        if not interval > 0:
            raise ValueError(f"sampling interval must be > 0, got {interval}")
        self.interval = interval
        self._emit = on_sample
        self._task: asyncio.Task[None] | None = None
        self._rt: Runtime | None = None
        self._probe: Probe | None = None
        self._refresh: Refresh | None = None
        self._reading = False
        """Inside a refresh and reading: ``stop`` lets it end rather than cancel it
        (a refresh cut mid-way could leave what it updates half done)."""
        self._stopping = False
        self._last_t = 0.0
        self._last_completed = 0
        self._latency_index = 0
        self._faults_seen = 0
        self._restarts_seen = 0
        self._run_latencies: list[float] = []
        self.unit = ""
        """What the probe counts (``Observation.unit``), once sampling started."""

    def start(self, rt: Runtime, probe: Probe, refresh: Refresh | None = None) -> None:
        """Begin sampling ``probe``, awaiting ``refresh`` (if any) before each later
        reading (a second call is refused: one probe per run)."""
        if self._task is not None:
            raise RuntimeError("this run is already sampled; a system observes one probe")
        self._rt, self._probe, self._refresh = rt, probe, refresh
        self._last_t = rt.now()
        first = probe()
        self.unit = first.unit
        self._last_completed = first.completed
        self._latency_index = len(first.latencies)
        self._faults_seen = rt.trace.counts["fault"]
        self._restarts_seen = _restarts(rt)
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Emit the last partial bucket and stop."""
        if self._task is None:
            return
        self._stopping = True
        if not self._reading:
            self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        assert self._rt is not None
        if self._rt.now() > self._last_t:
            if self._refresh is not None:
                await self._refresh()
            self._take()

    def latency_summary(self) -> dict[str, float | int]:
        """p50/p99/max over every latency the run's samples saw (empty if none)."""
        if not self._run_latencies:
            return {}
        seen = self._run_latencies
        return {"count": len(seen), "p50": percentile(seen, 0.50),
                "p99": percentile(seen, 0.99), "max": max(seen)}

    async def _loop(self) -> None:
        assert self._rt is not None
        while not self._stopping:
            await self._rt.sleep(self.interval)
            self._reading = True
            try:
                if self._refresh is not None:
                    await self._refresh()
                self._take()
            finally:
                self._reading = False

    def _take(self) -> None:
        rt, probe = self._rt, self._probe
        assert rt is not None and probe is not None
        now = rt.now()
        seen = probe()
        width = max(now - self._last_t, 1e-9)
        new = sorted(seen.latencies[self._latency_index:])
        self._run_latencies.extend(new)
        self._latency_index = len(seen.latencies)
        done = seen.completed - self._last_completed
        faults = rt.trace.counts["fault"] - self._faults_seen
        restarts = _restarts(rt)
        sample = Sample(
            t=now, width=width, completed=seen.completed, throughput=done / width,
            p50=percentile(new, 0.50) if new else None,
            p99=percentile(new, 0.99) if new else None,
            max=new[-1] if new else None, latency_count=len(new), in_flight=seen.in_flight,
            faults=faults, restarts=max(0, restarts - self._restarts_seen),
            fault_events=_newest_faults(rt, faults, self._last_t),
        )
        self._last_t, self._last_completed = now, seen.completed
        self._faults_seen += faults
        self._restarts_seen = restarts
        self._emit(sample)


def _restarts(rt: Runtime) -> int:
    return sum(s.restarted for s in rt.statistics())


def _newest_faults(rt: Runtime, count: int, since: float) -> list[FaultEvent]:
    """The ``count`` newest fault events (fewer if the trace's window dropped some)."""
    if count <= 0:
        return []
    found = [FaultEvent(e.time, e.detail.split(" ", 1)[0], e.actor)
             for e in rt.trace.newest("fault", count) if e.time >= since]
    return sorted(found, key=lambda e: e.t)
