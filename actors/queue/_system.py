"""The ``[queue]`` scenario system: run a pipeline, inject faults, check invariants."""

from __future__ import annotations

import msgspec

from actors.queue._checks import Checked, check_pipeline
from actors.queue._config import GeneratedSource, QueueConfig, QueueExpect
from actors.queue._history import History, read_history
from actors.queue._lineage import write_lineage
from actors.queue._nodes import (
    NodeServers,
    announce,
    host_node_clients,
    next_run,
    server_activations,
    servers_audit,
)
from actors.queue._pipeline import QueuePipeline
from actors.queue._recipe import NodeRecipe
from actors.queue._source import HOT_KEY
from actors.queue._tail import JournalTail
from runtime import Runtime, ScenarioError
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


class QueueSystem(ScenarioSystem[QueueConfig, QueueExpect]):
    """Distributed strict queue: per-key order, tiers of map/reduce clients, a ledger."""

    section = "queue"
    config_type = QueueConfig
    expect_type = QueueExpect
    bench_fault_targets = {"actors": "queue.transform-*"}

    def check(self, config: QueueConfig, expect: QueueExpect) -> list[tuple[str, str]]:
        """Ranges, and the user functions the file names.

        User functions are imported here, so ``shardline validate`` reports a
        typo in a tier's ``fn``, ``source`` or ``final`` with its field, not the run.
        """
        found = config.problems()
        if config.source is None:
            found.append(("source", "expected a table like { records = 10000, keys = 100 } "
                                    "or a function name 'pkg.mod:fn'"))
        if expect.max_other_keys_p99 is not None and not (
                isinstance(config.source, GeneratedSource) and config.source.hot_share > 0):
            found.append(("source", "expect.max_other_keys_p99 needs a generated source "
                                    "with hot_share > 0"))
        specs: list[tuple[str, object, str]] = [
            (f"tiers[{i}].fn", t.fn, f"tier {t.name!r} function")
            for i, t in enumerate(config.tiers)]
        specs += [("source", config.source, "queue source"),
                  ("final", config.final, "queue final function")]
        for field, spec, what in specs:
            if isinstance(spec, str):
                try:
                    resolve_callable(spec, what=what)
                except ScenarioError as exc:
                    found.append((field, str(exc)))
        return found

    def placement(self, config: QueueConfig) -> dict[str, object]:
        """Keys are placed on servers by rendezvous hashing, and each tier's queue,
        windows and keys follow from the tiers: all of it must match to resume."""
        tiers = [{"name": t.name, "kind": t.kind, "window": t.window, "out_keys": t.out_keys,
                  "fn": t.fn} for t in config.tiers]
        return {"name": config.name, "servers": config.servers, "tiers": tiers,
                "source": config.source, "lineage": config.lineage, "poison": config.poison}

    def register_node(self, rt: Runtime) -> None:
        """A node hosts queue servers (entities) and runs the clients of every pipeline
        run across nodes (``actors.queue._nodes``)."""
        host_node_clients(rt)

    def fault_targets(self, config: QueueConfig) -> dict[str, list[str]]:
        """The pipeline's actors, as ``QueuePipeline.start`` and its cluster name them."""
        n = config.name
        names = [f"{n}.server-{i}" for i in range(config.servers)]
        names += [f"{n}.{t.name}-{j}" for t in config.tiers for j in range(t.clients)]
        return {"actor": [*names, f"{n}.final", f"{n}.conductor", f"{n}.producer"]}

    async def run(self, ctx: ScenarioContext, config: QueueConfig,
                  expect: QueueExpect) -> SystemOutcome:
        rt = ctx.rt
        recipe = tail = None
        if rt.node_name is None:
            audit = FileAudit(ctx.out_dir / "audit" / f"queue-{config.name}.msgpack")
            pipeline = QueuePipeline(rt, config, seed=ctx.seed, audit=audit)
        else:  # across nodes: servers are entities, every node runs the clients
            store = without_faults(rt.store)
            recipe = NodeRecipe(config, ctx.seed, await next_run(store, config.name),
                                audit_dir=str((ctx.out_dir / "audit").resolve()))
            await announce(store, recipe)
            pipeline = QueuePipeline(rt, config, seed=ctx.seed, cluster_type=NodeServers)
            # the servers' counters stay on their nodes: count from their journals
            tail = JournalTail(store, pipeline.cluster, recipe, pipeline.metrics)
        started = rt.now()
        await pipeline.start(clients=recipe is None)
        ctx.observe(pipeline.metrics.observation, tail.poll if tail is not None else None)
        total = config.source.records if isinstance(config.source, GeneratedSource) else None
        finished = False
        while not finished:
            finished = await pipeline.done()
            if finished or rt.now() >= ctx.deadline:
                break
            ctx.progress(pipeline.metrics_produced, total, "originals enqueued")
            await rt.sleep(0.05)
        elapsed = rt.now() - started
        await ctx.end_observation()
        restarts = sum(s.restarted for s in rt.statistics())
        if recipe is not None:
            await announce(without_faults(rt.store),
                           msgspec.structs.replace(recipe, running=False))
        await pipeline.stop()
        history = await read_history(without_faults(rt.store), config.name, config.servers,
                                     pipeline.audit if recipe is None else servers_audit(recipe))
        moves: dict[str, list[str]] = {}
        if recipe is not None:
            assert tail is not None
            tail.finish(history)
            moves = await server_activations(without_faults(rt.store), recipe)
            pipeline.metrics.server_recoveries = sum(len(n) - 1 for n in moves.values() if n)
        checked = await check_pipeline(pipeline, history)
        invariants = [InvariantResult(
            "finished", finished, f"in {elapsed:.3f} s" if finished else
            f"not finished within {ctx.deadline:g} s")]
        wanted = {"strict_order": expect.strict_order,
                  "exactly_once_contribution": expect.exactly_once_contribution,
                  "result_matches_oracle": expect.result_matches_oracle,
                  "dead_letters": True}
        invariants += [i for i in checked.invariants if wanted[i.name]]
        invariants += self._bounds(pipeline, checked, expect)
        if pipeline.resumed:
            invariants.append(InvariantResult(
                "resumed", True, "resumed from a store that already held this pipeline; "
                "fault-exercise floors apply to fresh runs only"))
        else:
            invariants += self._exercised(pipeline, expect, restarts)
        extra: dict[str, object] = {
            "result": await pipeline.read_result(),
            "dead_letters": checked.dead_letters,
            "ledger": checked.ledger,
            "tiers": self._tiers(pipeline, history),
        }
        if recipe is not None:
            extra["server_nodes"] = moves
        if pipeline.full:
            path = ctx.out_dir / "lineage.jsonl"
            extra["lineage"] = write_lineage(pipeline, history, path, config.lineage_samples)
            extra["lineage_file"] = str(path)
        return SystemOutcome(invariants=invariants,
                             metrics=self._metrics(pipeline, elapsed, restarts, rt),
                             extra=extra)

    @staticmethod
    def _bounds(pipeline: QueuePipeline, checked: Checked,
                expect: QueueExpect) -> list[InvariantResult]:
        found: list[InvariantResult] = []
        dead = len(checked.dead_letters)
        if expect.max_dead_letters is not None:
            found.append(InvariantResult("max_dead_letters", dead <= expect.max_dead_letters,
                                         f"{dead} (at most {expect.max_dead_letters})"))
        if expect.max_other_keys_p99 is not None:
            queue = pipeline.input_queue(0)
            hot = pipeline.metrics.latency(queue, 0.99, keys={HOT_KEY})
            other = pipeline.metrics.latency(queue, 0.99, exclude={HOT_KEY})
            found.append(InvariantResult(
                "hot_key_isolation", other <= expect.max_other_keys_p99,
                f"{queue}: other keys' p99 {other:.3f} s (bound "
                f"{expect.max_other_keys_p99:g} s), hot key {HOT_KEY!r} p99 {hot:.3f} s"))
        return found

    @staticmethod
    def _exercised(pipeline: QueuePipeline, expect: QueueExpect,
                   restarts: int) -> list[InvariantResult]:
        """A scenario that claims to test a fault must show the fault happened."""
        m = pipeline.metrics
        return exercised_floors((
            ("dead_letters", expect.min_dead_letters, m.dead_lettered),
            ("late_acks_refused", expect.min_late_acks_refused, len(pipeline.late_acks)),
            ("duplicates_dropped", expect.min_duplicates_dropped, m.duplicates_dropped),
            ("redeliveries", expect.min_redeliveries, m.redeliveries),
            ("restarts", expect.min_restarts, restarts),
            ("server_recoveries", expect.min_server_recoveries, m.server_recoveries),
        ))

    @staticmethod
    def _tiers(pipeline: QueuePipeline, history: History) -> list[dict[str, object]]:
        counts: dict[str, int] = {}
        for stored in history.messages.values():
            counts[stored.queue] = counts.get(stored.queue, 0) + 1
        m = pipeline.metrics
        rows: list[dict[str, object]] = []
        for i, tier in enumerate(pipeline.config.tiers):
            queue = pipeline.input_queue(i)
            samples = m.acks.of(queue)
            rows.append({
                "name": tier.name, "kind": tier.kind, "clients": tier.clients,
                "messages_in": counts.get(queue, 0),
                "messages_out": counts.get(pipeline.output_queue(i), 0),
                "distinct_keys_in": len({s.message.key for s in history.messages.values()
                                         if s.queue == queue}),
                "latency_p50_s": round(percentile(samples, 0.50), 6),
                "latency_p99_s": round(percentile(samples, 0.99), 6),
            })
        return rows

    @staticmethod
    def _metrics(pipeline: QueuePipeline, elapsed: float, restarts: int,
                 rt: Runtime) -> dict[str, MetricValue]:
        m = pipeline.metrics
        found: dict[str, MetricValue] = {
            "originals": pipeline.metrics_produced,
            "throughput_originals_per_s": round(pipeline.metrics_produced / elapsed, 1)
            if elapsed else 0.0,
            "enqueued": m.enqueued,
            "duplicates_dropped": m.duplicates_dropped,
            "deliveries": m.deliveries,
            "redeliveries": m.redeliveries,
            "acked": m.acked,
            "acks_refused": m.acks_refused,
            "late_acks_refused": len(pipeline.late_acks),
            "released": m.released,
            "visibility_expired": m.visibility_expired,
            "dead_lettered": m.dead_lettered,
            "processing_errors": m.processing_errors,
            "windows_closed": m.windows_closed,
            "request_retries": m.request_retries,
            "server_recoveries": m.server_recoveries,
            "restarts": restarts,
            "faults_injected": rt.faults.injected,
        }
        for i, tier in enumerate(pipeline.config.tiers):
            queue = pipeline.input_queue(i)
            found[f"{tier.name}_latency_p50_s"] = round(m.latency(queue, 0.50), 6)
            found[f"{tier.name}_latency_p99_s"] = round(m.latency(queue, 0.99), 6)
        config = pipeline.config
        if isinstance(config.source, GeneratedSource) and config.source.hot_share > 0:
            queue = pipeline.input_queue(0)
            found["hot_key_latency_p99_s"] = round(m.latency(queue, 0.99, keys={HOT_KEY}), 6)
            found["other_keys_latency_p99_s"] = round(
                m.latency(queue, 0.99, exclude={HOT_KEY}), 6)
        found["elapsed_s"] = round(elapsed, 6)
        return found


SYSTEM = QueueSystem()
