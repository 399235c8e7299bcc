"""The ``[log]`` scenario system: serve a log to reader actors through sessions,
inject faults, check the invariants against the store and the journal."""

from __future__ import annotations

import asyncio

import msgspec

from actors.logdelivery import _checks as checks
from actors.logdelivery import _keys as keys
from actors.logdelivery._client import LogClient, LogService
from actors.logdelivery._config import LogConfig, LogExpect
from actors.logdelivery._entity import LogRecipe, LogServerEntity, served_reads, write_recipe
from actors.logdelivery._errors import LogUnavailable, SessionExpired, SessionNotFound
from actors.logdelivery._limits import SessionSettings
from actors.logdelivery._observation import LogProbe
from actors.logdelivery._state import SessionState
from actors.logdelivery._workload import Journal, Workload
from runtime import ActorStatistics, Runtime
from runtime.scenario import (
    Audit,
    FileAudit,
    InvariantResult,
    MetricValue,
    ScenarioContext,
    ScenarioSystem,
    SystemOutcome,
    exercised_floors,
    percentile,
)
from runtime.store import Put, Store, without_faults

_POLL = 0.05


class ScenarioSessions(msgspec.Struct, frozen=True):
    """The sessions a scenario run created, kept in the store so a later run resumes them."""

    sessions: list[str]
    idle: list[str]


def _sessions_key(log: str) -> str:
    return f"logdelivery/scenario-runs/{log}/sessions"


async def _resumed_sessions(store: Store, log: str) -> ScenarioSessions | None:
    found = await store.get(_sessions_key(log))
    return None if found is None else msgspec.msgpack.decode(found.value, type=ScenarioSessions)


async def _next_record(store: Store, log: str) -> int:
    """The index of the first workload record not yet in the log (records name their index)."""
    high_water = await store.high_water(keys.records_log(log))
    if high_water == 0:
        return 0
    last = await store.read(keys.records_log(log), high_water - 1, 1)
    return int.from_bytes(last[0].payload[:8], "big") + 1


async def _states(store: Store, log: str, sessions: list[str]) -> dict[str, SessionState]:
    found: dict[str, SessionState] = {}
    for session in sessions:
        stored = await store.get(keys.session_key(log, session))
        if stored is not None:
            found[session] = checks.decode_state(stored.value)
    return found


async def _open_log(rt: Runtime, service: LogService, name: str,
                    config: LogConfig) -> LogClient:
    """The log's client; its server's first start may meet store faults like any call."""
    while True:
        try:
            return await service.log(name)
        except LogUnavailable:
            await rt.sleep(float(config.retry_delay))


async def _journal_served(store: Store, log: str, sessions: list[str],
                          before: dict[str, SessionState], journal: Journal) -> None:
    """What the servers on the nodes served (their durable journal) into ``journal``, as
    the observer does in one process; a resumed run takes only its own first deliveries."""
    for session in sessions:
        earlier = before.get(session)
        start = earlier.next_seq if earlier is not None else 0
        for read in await served_reads(store, log, session):
            if read.first <= read.last and read.first >= start:
                journal.new_ranges.setdefault(session, []).append((read.first, read.last))
            if read.redelivered:
                journal.server_redelivered[session] = (
                    journal.server_redelivered.get(session, 0) + read.redelivered)


def _restarts(stats: list[ActorStatistics], prefix: str) -> int:
    return sum(s.restarted for s in stats if s.name.startswith(prefix))


class LogSystem(ScenarioSystem[LogConfig, LogExpect]):
    """Log delivery to stateless readers through server-side receiver sessions."""

    section = "log"
    config_type = LogConfig
    expect_type = LogExpect
    fault_kinds = ("poison", "slow")
    bench_fault_targets = {"actors": "reader.*", "poison": "reader.*", "slow": "reader.*"}

    def register_node(self, rt: Runtime) -> None:
        """A node may serve logs (one ``LogServerEntity`` per log, ``_entity``)."""
        rt.register_entity(LogServerEntity)

    def check(self, config: LogConfig, expect: LogExpect) -> list[tuple[str, str]]:
        return config.problems()

    def placement(self, config: LogConfig) -> dict[str, object]:
        """The log, its records and the sessions reading it."""
        return {"log": config.log, "records": config.records, "keys": config.keys,
                "payload_bytes": config.payload_bytes, "sessions": config.sessions,
                "idle_sessions": config.idle_sessions}

    def fault_targets(self, config: LogConfig) -> dict[str, list[str]]:
        """Readers ``reader.s<i>.c<j>`` and the log's server; poison and slow hit readers."""
        readers = [f"reader.s{s}.c{c}" for s in range(config.sessions)
                   for c in range(config.clients_per_session)]
        return {"actor": [*readers, LogService.server_name(config.log)],
                "poison": readers, "slow": readers}

    async def run(self, ctx: ScenarioContext, config: LogConfig,
                  expect: LogExpect) -> SystemOutcome:
        rt = ctx.rt
        store = without_faults(rt.store)
        log_name = config.log
        journal = Journal()
        defaults = SessionSettings(config.ack_wait, config.max_in_flight, config.max_deliveries,
                                   config.session_ttl)
        audit = FileAudit(ctx.out_dir / "audit" / f"log-{log_name}.msgpack")
        on_nodes = rt.node_name is not None
        if on_nodes:  # the server is an entity on node-1..N: it journals what it serves
            await write_recipe(store, log_name, LogRecipe.of(config.retention, served=True))
        service = LogService(rt, defaults=defaults, ask_timeout=config.ask_timeout,
                             observer=journal.observe, retention=config.retention, audit=audit,
                             on_nodes=on_nodes)
        workload = Workload(rt, config, await _open_log(rt, service, log_name, config),
                            journal)
        resumed = await _resumed_sessions(store, log_name)
        if resumed is None:
            sessions = await workload.create_sessions(config.sessions)
            idle = await workload.create_sessions(config.idle_sessions)
            await store.write([Put(_sessions_key(log_name), msgspec.msgpack.encode(
                ScenarioSessions(sessions, idle)), expect_version=0)])
        else:
            sessions, idle = resumed.sessions, resumed.idle
        before = await _states(store, log_name, sessions) if resumed else {}
        readers = await workload.start_readers(sessions)
        ctx.observe(LogProbe(journal, sessions))
        started = rt.now()
        producer = asyncio.get_running_loop().create_task(
            workload.produce(await _next_record(store, log_name)))
        for session in idle:
            await workload.touch_once(session)
        idle_touched = rt.now()
        settled = False
        while not settled:
            settled = producer.done() and await self._settled(store, log_name, sessions)
            if settled or rt.now() >= ctx.deadline:
                break
            ctx.progress(sum(len(b.seqs) for bs in journal.batches.values() for b in bs),
                         config.records * config.sessions, "records delivered")
            await rt.sleep(_POLL)
        elapsed = rt.now() - started
        await ctx.end_observation()
        stats = rt.statistics()
        workload.stopping = True
        await rt.root.stop(readers)
        if not producer.done():
            producer.cancel()
        elif (failure := producer.exception()) is not None:
            raise failure
        expired = await self._expire_idle(workload, idle, idle_touched, config, ctx, audit)
        await service.close()
        if on_nodes:
            await _journal_served(store, log_name, sessions, before, journal)
        durable = await checks.load_durable(store, log_name, sessions, audit)
        client_restarts = _restarts(stats, "reader.")
        invariants = [InvariantResult(
            "finished", settled, f"every session settled in {elapsed:.3f} s" if settled
            else f"sessions not settled by the deadline ({ctx.deadline:g} s)")]
        wanted = {"no_gaps": expect.no_gaps,
                  "at_least_once_in_order": expect.at_least_once_in_order,
                  "no_client_offsets": expect.no_client_offsets,
                  "in_flight_bounded": expect.in_flight_bounded}
        found = [
            checks.check_no_gaps(config, journal, durable, sessions, before),
            checks.check_order(journal, durable, sessions, before),
            checks.check_no_client_offsets(journal, durable, sessions, client_restarts,
                                           settled),
            checks.check_in_flight(config, journal, durable, sessions),
        ]
        invariants += [i for i in found if wanted[i.name]]
        if idle:
            invariants.append(InvariantResult(
                "idle_sessions_expired", expired == len(idle),
                f"{expired} of {len(idle)} abandoned sessions answered 'expired' after their "
                f"ttl of {config.session_ttl:g} s"))
        dead_total = sum(s.dead_lettered for s in durable.states.values())
        counts = {
            "client_restarts": client_restarts,
            "server_restarts": _restarts(stats, "logserver."),
            "redeliveries": sum(s.redelivered for s in durable.states.values()),
            "dead_letters": dead_total,
            "expired_sessions": expired,
            "unavailable": journal.unavailable,
        }
        if resumed is not None:
            invariants.append(InvariantResult(
                "resumed", True, f"resumed log {log_name!r} and its {len(sessions)} sessions "
                "from the store; records settled by earlier runs count as delivered, and "
                "fault-exercise floors apply to fresh runs only"))
        else:
            invariants += self._exercised(expect, counts)
        if expect.max_dead_letters is not None:
            invariants.append(InvariantResult(
                "dead_letters_at_most", dead_total <= expect.max_dead_letters,
                f"{dead_total} (expected at most {expect.max_dead_letters})"))
        metrics = self._metrics(journal, durable, counts, elapsed, rt, ctx.previous_runs)
        return SystemOutcome(invariants=invariants, metrics=metrics,
                             extra=self._extra(durable, log_name))

    @staticmethod
    async def _settled(store: Store, log: str, sessions: list[str]) -> bool:
        high_water = await store.high_water(keys.records_log(log))
        for session in sessions:
            found = await store.get(keys.session_key(log, session))
            if found is None:
                return False
            state = checks.decode_state(found.value)
            if state.next_seq != high_water or state.in_flight:
                return False
        return True

    @staticmethod
    async def _expire_idle(workload: Workload, idle: list[str], touched: float,
                           config: LogConfig, ctx: ScenarioContext, audit: Audit) -> int:
        """Wait out the abandoned sessions' TTL, then each must answer 'expired' (or be
        gone, deleted by retention, with its expired state in the audit)."""
        if not idle:
            return 0
        rt = ctx.rt
        await rt.sleep(max(0.0, touched + config.session_ttl + 0.01 - rt.now()))
        expired = 0
        for session in idle:
            while True:
                try:
                    await workload.log.read(session, 1, 0.0)
                except SessionExpired:
                    expired += 1
                except SessionNotFound:  # only an expired session is ever deleted
                    if audit.value(keys.session_key(config.log, session)) is not None:
                        expired += 1
                except LogUnavailable:
                    await workload.retry_pause()
                    continue
                break
        return expired

    @staticmethod
    def _exercised(expect: LogExpect, counts: dict[str, int]) -> list[InvariantResult]:
        """A scenario that claims to test a fault must show the fault happened."""
        return exercised_floors(
            (name, floor, counts[name])
            for name, floor in (("client_restarts", expect.min_client_restarts),
                                ("server_restarts", expect.min_server_restarts),
                                ("redeliveries", expect.min_redeliveries),
                                ("dead_letters", expect.min_dead_letters),
                                ("expired_sessions", expect.min_expired_sessions),
                                ("unavailable", expect.min_unavailable)))

    @staticmethod
    def _metrics(journal: Journal, durable: checks.Durable, counts: dict[str, int],
                 elapsed: float, rt: Runtime, previous_runs: int) -> dict[str, MetricValue]:
        appended_at: dict[int, float] = {}
        for first_seq, _, count, at in journal.appended:
            for seq in range(first_seq, first_seq + count):
                appended_at[seq] = at
        latencies = [max(0.0, b.at - appended_at[seq])
                     for batches in journal.batches.values() for b in batches
                     for seq, n in zip(b.seqs, b.deliveries, strict=True)
                     if n == 1 and seq in appended_at]
        states = list(durable.states.values())
        delivered = sum(s.delivered for s in states)
        metrics: dict[str, MetricValue] = {
            "records_appended": durable.high_water,
            "sessions": len(states),
            "deliveries": delivered,
            "first_deliveries": delivered - counts["redeliveries"],
            "acked": sum(s.acked for s in states),
            "deliveries_per_s": round(delivered / elapsed, 1) if elapsed else 0.0,
            "in_flight_peak": max((s.in_flight_peak for s in states), default=0),
            "poisoned_batches": journal.poisoned,
            "slow_batches": journal.slowed,
            "superseded_acks": journal.superseded,
            "faults_injected": rt.faults.injected,
            "append_to_delivery_p50_s": round(percentile(latencies, 0.5), 6),
            "append_to_delivery_p99_s": round(percentile(latencies, 0.99), 6),
            "elapsed_s": round(elapsed, 6),
        }
        metrics.update(counts)
        if previous_runs:
            metrics["previous_runs_in_store"] = previous_runs
        return metrics

    @staticmethod
    def _extra(durable: checks.Durable, log: str) -> dict[str, object]:
        return {
            "log": log,
            "sessions": {sid: msgspec.to_builtins(msgspec.structs.replace(s, in_flight=[]))
                         for sid, s in durable.states.items()},
            "dead_letters": {sid: [[d.first, d.last, d.deliveries] for d in found[:100]]
                             for sid, found in durable.dead.items() if found},
        }


SYSTEM = LogSystem()
