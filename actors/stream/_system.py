"""The ``[stream]`` scenario system: run a stream job, inject faults, check invariants."""

from __future__ import annotations

import statistics

from actors.stream import _keys as keys
from actors.stream._checks import check_stream, recorder
from actors.stream._config import StreamConfig, StreamExpect
from actors.stream._destinations import (
    CallableDestination,
    destination_problem,
    open_destination,
)
from actors.stream._job import StreamJob
from actors.stream._node_driver import StreamOnNodes
from actors.stream._node_host import HOST_NAME, StreamNodeHost
from runtime import BackgroundTasks, Fault, Runtime, ScenarioError
from runtime._callables import resolve_callable
from runtime.scenario import (
    FileAudit,
    InvariantResult,
    MetricValue,
    ScenarioContext,
    ScenarioSystem,
    SystemOutcome,
    exercised_floors,
    percentile,
)
from runtime.store import without_faults


class StreamSystem(ScenarioSystem[StreamConfig, StreamExpect]):
    """Idempotent stream processing: partitions, leased workers, pending-checkpoint replay."""

    section = "stream"
    config_type = StreamConfig
    expect_type = StreamExpect
    fault_kinds = ("destination_error", "lease_expiry")
    bench_fault_targets = {"actors": "stream.worker-*", "lease_expiry": "stream.partition-*",
                     "destination_error": "stream.worker-*.destination"}

    async def start_node(self, rt: Runtime) -> None:
        """A node runs the stream's workers a driver asks it for (one host per node)."""
        await rt.spawn(StreamNodeHost, name=HOST_NAME)

    def check(self, config: StreamConfig, expect: StreamExpect) -> list[tuple[str, str]]:
        """Ranges, the destination URL, and the user functions the file names.

        User functions are imported here, so ``shardline validate`` reports a
        typo in ``process`` or ``source`` with its field, not the run.
        """
        found = config.problems()
        problem = destination_problem(config.destination)
        if problem is not None:
            found.append(("destination", problem))
        for field, spec, what in (("source", config.source, "stream source"),
                                  ("process", config.process, "stream process")):
            if isinstance(spec, str):
                try:
                    resolve_callable(spec, what=what)
                except ScenarioError as exc:
                    found.append((field, str(exc)))
        return found

    def placement(self, config: StreamConfig) -> dict[str, object]:
        """Records are hashed onto partitions by key, so the partition count, the stream's
        name and the source decide where every record lives; the process function and
        the destination decide what was delivered and where (a resumed run checks the
        earlier runs' batches there)."""
        return {"name": config.name, "partitions": config.partitions, "source": config.source,
                "process": config.process, "destination": config.destination}

    def fault_targets(self, config: StreamConfig) -> dict[str, list[str]]:
        """The job's actors (as ``StreamJob.start`` names them); destination errors strike
        ``<worker>.destination``, lease expiries a ``<name>.partition-N``."""
        n = config.name
        partitions = [f"{n}.partition-{p}" for p in range(config.partitions)]
        workers = [f"{n}.worker-{w}" for w in range(config.workers)]
        return {"actor": [*partitions, *workers, f"{n}.coordinator", f"{n}.producer"],
                "destination_error": [f"{w}.destination" for w in workers],
                "lease_expiry": partitions}

    def register_faults(self, rt: Runtime) -> None:
        rt.faults.register_kind("destination_error")
        tasks = BackgroundTasks()

        async def expire(fault: Fault) -> None:
            store = without_faults(rt.store)
            leases = [lease for lease in await store.leases("stream/")
                      if fault.matches(lease_actor(lease.key))]
            if not leases:
                return
            chosen = rt.random.choice(leases)
            await store.revoke(chosen.key)
            rt.faults.record(fault, lease_actor(chosen.key))

        def on_trigger(fault: Fault) -> None:
            tasks.spawn(expire(fault))

        rt.faults.register_kind("lease_expiry", on_trigger)

    async def run(self, ctx: ScenarioContext, config: StreamConfig,
                  expect: StreamExpect) -> SystemOutcome:
        rt = ctx.rt
        try:
            destination = open_destination(ctx.expand(config.destination),
                                           threaded=not rt.simulated)
        except ScenarioError as exc:
            raise ScenarioError(f"{self.section}.destination: {exc}") from exc
        recorded = recorder(destination) if isinstance(destination, CallableDestination) else None
        audit = FileAudit(ctx.out_dir / "audit" / f"stream-{config.name}.msgpack")
        on_nodes = rt.node_name is not None
        if on_nodes and recorded is not None:
            raise ScenarioError(f"{self.section}.destination: a run across nodes needs a "
                                "destination every node can open (dir://, append://, "
                                "sqlite:///), not a callable")
        job = StreamJob(rt, config, destination=destination, seed=ctx.seed, audit=audit,
                        workers_on_nodes=on_nodes)
        nodes = StreamOnNodes(job, ctx.expand(config.destination)) if on_nodes else None
        started = rt.now()
        await job.start()
        if nodes is not None:
            await nodes.start()
        ctx.observe(job.metrics.observation)
        total = config.source.records if not isinstance(config.source, str) else None
        finished = False
        while not finished:
            finished = await job.done()
            if rt.now() >= ctx.deadline:
                break
            ctx.progress(job.metrics.committed_records, total, "records committed")
            if not finished:
                await rt.sleep(0.05)
        elapsed = rt.now() - started
        await ctx.end_observation()
        restarts = sum(s.restarted for s in rt.statistics())
        if nodes is not None:
            await nodes.stop()
        await job.stop()
        invariants = [InvariantResult("finished", finished,
                                      f"in {elapsed:.3f} s" if finished else
                                      f"not finished within {ctx.deadline:g} s")]
        checked = await check_stream(job, recorded)
        await job.close()
        wanted = {"exactly_once": expect.exactly_once, "order": expect.order != "none",
                  "no_stale_commit": expect.no_stale_commit}
        invariants += [i for i in checked if wanted[i.name]]
        if job.resumed:
            invariants.append(InvariantResult(
                "resumed", True, f"resumed from committed sequences {job.start_seqs}; "
                "fault-exercise floors apply to fresh runs only"))
        else:
            invariants += self._exercised(job, expect, restarts)
        extra: dict[str, object] = {} if nodes is None else {"stream_nodes": nodes.per_node()}
        return SystemOutcome(invariants=invariants,
                             metrics=self._metrics(job, elapsed, restarts, rt), extra=extra)

    @staticmethod
    def _exercised(job: StreamJob, expect: StreamExpect, restarts: int) -> list[InvariantResult]:
        """A scenario that claims to test a fault must show the fault happened."""
        m = job.metrics
        return exercised_floors((
            ("late_commits_refused", expect.min_late_commits_refused,
             m.late_commits_refused),
            ("redelivered_batches", expect.min_redelivered_batches, m.redelivered_batches),
            ("restarts", expect.min_restarts, restarts),
            ("destination_failures", expect.min_destination_failures, m.destination_failures),
        ))

    @staticmethod
    def _metrics(job: StreamJob, elapsed: float, restarts: int,
                 rt: Runtime) -> dict[str, MetricValue]:
        m = job.metrics
        span = m.last_commit_at - (m.first_commit_at or 0.0)
        return {
            "records_produced": m.produced,
            "records_committed": m.committed_records,
            "records_delivered": m.delivered_records,
            "throughput_records_per_s": round(m.committed_records / elapsed, 1) if elapsed else 0.0,
            "batches_committed": m.committed_batches,
            "redelivered_batches": m.redelivered_batches,
            "destination_failures": m.destination_failures,
            "late_commits_refused": m.late_commits_refused,
            "stale_fence_refusals": m.stale_refused,
            "leases_lost": m.leases_lost,
            "lease_moves": m.lease_moves,
            "restarts": restarts,
            "faults_injected": rt.faults.injected,
            "recovery_p50_s": round(percentile(m.recovery_times, 0.50), 6),
            "recovery_p99_s": round(percentile(m.recovery_times, 0.99), 6),
            "recovery_mean_s": round(statistics.fmean(m.recovery_times), 6)
            if m.recovery_times else 0.0,
            "commit_span_s": round(span, 6),
            "elapsed_s": round(elapsed, 6),
        }


def lease_actor(lease_key: str) -> str:
    """``stream/<name>/lease/p3`` -> ``<name>.partition-3`` (what fault targets name)."""
    stream = lease_key.split("/")[1]
    return f"{stream}.partition-{keys.partition_from_lease(lease_key)}"


SYSTEM = StreamSystem()
