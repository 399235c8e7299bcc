"""Fault plans: kinds, targets, triggers, and that every injection is traced and logged."""

from __future__ import annotations

import asyncio

import pytest
from _helpers import Journal, Ping, Probe, Sleep, Worker, events, sim
from structlog.testing import capture_logs

from runtime import ActorRef, Backoff, Fault, InjectedFault, Runtime


def faults_traced(rt: Runtime) -> list[tuple[float, str, str]]:
    return [(e.time, e.actor, e.detail) for e in rt.trace.events("fault")]


async def ping_at(rt: Runtime, ref: ActorRef[Probe], times: list[float]) -> None:
    for n, t in enumerate(times):
        await asyncio.sleep(t - rt.now())
        await ref.tell(Ping(n))


# -- actor kinds -------------------------------------------------------------------------


def test_crash_makes_the_next_handling_raise_injected_fault() -> None:
    async def main() -> None:
        async with Runtime(faults=[Fault("crash", target="w", at=5)]) as rt:
            ref = await rt.spawn(Worker, name="w")
            await asyncio.sleep(6)
            with pytest.raises(InjectedFault, match="injected crash of 'w' while handling Ping"):
                await ref.ask(Ping(1))
            assert faults_traced(rt) == [(6.0, "w", "crash")]
            assert await ref.ask(Ping(2)) == 2
            stats = ref.statistics()
            assert (stats.crashed, stats.restarted, stats.processed) == (1, 1, 1)
            assert rt.faults.injected == 1

    sim(main)


def test_crash_triggers_on_an_idle_actor_crash_it_once_not_once_each() -> None:
    """Five triggers while ``w`` handles nothing are one pending crash: its next
    handling fails and the ones after it succeed, so an actor restarting slower
    than the trigger period still makes progress."""
    async def main() -> None:
        async with Runtime(faults=[Fault("crash", target="w", every=1, start=1)]) as rt:
            ref = await rt.spawn(Worker, name="w")
            await asyncio.sleep(5.5)
            with pytest.raises(InjectedFault):
                await ref.ask(Ping(1))
            assert await ref.ask(Ping(2)) == 2
            assert await ref.ask(Ping(3)) == 3
            assert ref.statistics().crashed == 1
            assert faults_traced(rt) == [(5.5, "w", "crash")]

    sim(main)


def test_a_crash_every_shorter_than_the_restart_backoff_does_not_starve_the_actor() -> None:
    """Crash every 0.3 s, restart backoff 0.5 s: triggers while ``w`` is down pass it by
    (it is already down), so each incarnation runs until the next trigger (issue #10:
    before, each trigger armed a crash for the next incarnation, which died at its
    first message, forever)."""
    async def main() -> tuple[int, int]:
        plan = [Fault("crash", target="w", every=0.3)]
        async with Runtime(faults=plan, backoff=Backoff(min=0.5, max=0.5),
                           max_restarts=10_000, within=1.0) as rt:
            ref = await rt.spawn(Worker, name="w")
            for n in range(400):  # a message every 50 ms for 20 s
                await ref.tell(Ping(n))
                await asyncio.sleep(0.05)
            stats = ref.statistics()
            return stats.processed, stats.crashed

    processed, crashed = sim(main)
    assert crashed >= 20  # ~one crash per 0.5 s backoff + up to 0.3 s up
    assert processed >= 200  # most messages: an incarnation runs until the next trigger


def test_pause_of_an_idle_actor_starts_at_the_trigger() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime(faults=[Fault("pause", target="w", at=5, duration=10)]) as rt:
            ref = await rt.spawn(Worker, journal, name="w")
            await ping_at(rt, ref, [4.0, 6.0, 16.0])
            await asyncio.sleep(1)
            assert faults_traced(rt) == [(5.0, "w", "pause 10s")]

    sim(main)
    assert [t for _, t in events(journal, "Ping")] == [4.0, 15.0, 16.0]


def test_pause_of_a_busy_actor_starts_when_its_current_message_is_done() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime(faults=[Fault("pause", target="w", at=5, duration=10)]) as rt:
            ref = await rt.spawn(Worker, journal, name="w")
            await asyncio.sleep(4)
            await ref.tell(Sleep(3))  # busy from 4 to 7
            await ping_at(rt, ref, [8.0])
            await asyncio.sleep(20)
            assert faults_traced(rt) == [(7.0, "w", "pause 10s")]

    sim(main)
    assert events(journal, "Ping") == [("w", 17.0)]


def test_delay_drop_and_duplicate_act_on_the_next_message_to_the_target() -> None:
    journal: Journal = []

    async def main() -> None:
        plan = [Fault("delay", target="delayed", at=5, delay=3),
                Fault("drop", target="dropped", at=5),
                Fault("duplicate", target="doubled", at=5)]
        with capture_logs() as logs:
            async with Runtime(faults=plan) as rt:
                refs = [await rt.spawn(Worker, journal, name=n)
                        for n in ("delayed", "dropped", "doubled")]
                await asyncio.sleep(6)
                for ref in refs:
                    await ref.tell(Ping(1))
                    await ref.tell(Ping(2))
                await asyncio.sleep(5)
                assert sorted(faults_traced(rt)) == [
                    (6.0, "delayed", "delay 3s"), (6.0, "doubled", "duplicate"),
                    (6.0, "dropped", "drop")]
                dropped, doubled = refs[1].statistics(), refs[2].statistics()
                assert (dropped.received, dropped.dropped, dropped.processed) == (1, 1, 1)
                assert (doubled.received, doubled.processed) == (3, 3)
        drops = [e for e in logs if e["event"] == "message.dropped"]
        assert [(e["actor"], e["message"]) for e in drops] == [("dropped", "Ping")]

    sim(main)
    pings = [(name, t) for event, name, t in journal if event == "Ping"]
    assert [t for name, t in pings if name == "delayed"] == [6.0, 9.0]  # Ping(1) is late
    assert [t for name, t in pings if name == "dropped"] == [6.0]
    assert [t for name, t in pings if name == "doubled"] == [6.0, 6.0, 6.0]


def test_a_glob_target_hits_one_matching_actor_or_all_of_them() -> None:
    async def main(all_: bool) -> list[str]:
        plan = [Fault("crash", target="worker-*", at=1, all=all_)]
        async with Runtime(faults=plan) as rt:
            refs = [await rt.spawn(Worker, name=n) for n in ("worker-1", "worker-2", "other")]
            await asyncio.sleep(2)
            for ref in refs:
                await ref.tell(Ping())
            await asyncio.sleep(1)
            return [r.name for r in refs if r.statistics().crashed]

    for seed in range(4):
        assert sim(lambda: main(True), seed) == ["worker-1", "worker-2"]
    chosen = [sim(lambda: main(False), seed) for seed in range(8)]
    assert all(len(c) == 1 and c[0].startswith("worker-") for c in chosen)
    assert len({c[0] for c in chosen}) == 2  # the seeded generator picks either
    assert chosen == [sim(lambda: main(False), seed) for seed in range(8)]


def test_every_with_count_and_start() -> None:
    async def main() -> list[float]:
        plan = [Fault("crash", target="w", every=10, count=2, start=5)]
        async with Runtime(faults=plan) as rt:
            ref = await rt.spawn(Worker, name="w")
            await ping_at(rt, ref, [float(t) for t in range(1, 60)])
            return [t for t, _, _ in faults_traced(rt)]

    assert sim(main) == [15.0, 25.0]


def test_probability_faults_are_seeded() -> None:
    async def main(probability: float, count: int | None = None) -> tuple[list[int], str]:
        plan = [Fault("drop", target="w", probability=probability, count=count)]
        async with Runtime(faults=plan) as rt:
            ref = await rt.spawn(Worker, name="w")
            for n in range(100):
                await ref.tell(Ping(n))
            await asyncio.sleep(1)
            dropped = ref.statistics().dropped
            assert ref.statistics().processed == 100 - dropped
            return [dropped], rt.trace.digest

    first = sim(lambda: main(0.3), seed=1)
    assert first == sim(lambda: main(0.3), seed=1)
    assert 10 < first[0][0] < 50
    assert first != sim(lambda: main(0.3), seed=2)
    assert sim(lambda: main(0.0))[0] == [0]
    assert sim(lambda: main(1.0))[0] == [100]
    assert sim(lambda: main(1.0, count=3))[0] == [3]


def test_probability_faults_apply_to_actors_spawned_later() -> None:
    async def main() -> int:
        async with Runtime() as rt:
            rt.faults.install([Fault("crash", target="late-*", probability=1.0, count=1)])
            ref = await rt.spawn(Worker, name="late-1")
            with pytest.raises(InjectedFault):
                await ref.ask(Ping())
            return ref.statistics().crashed

    assert sim(main) == 1


def test_install_at_runtime_schedules_on_the_runtime_clock() -> None:
    async def main() -> list[tuple[float, str, str]]:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="w")
            await asyncio.sleep(10)
            rt.faults.install([Fault("drop", target="w", at=12)])
            await ping_at(rt, ref, [11.0, 13.0])
            return faults_traced(rt)

    assert sim(main) == [(13.0, "w", "drop")]


def test_a_trigger_with_no_matching_actor_does_nothing() -> None:
    async def main() -> int:
        async with Runtime(faults=[Fault("crash", target="ghost", at=1)]) as rt:
            ref = await rt.spawn(Worker, name="w")
            await ping_at(rt, ref, [2.0])
            return rt.faults.injected + ref.statistics().crashed

    assert sim(main) == 0


def test_injected_faults_are_trace_and_structlog_events() -> None:
    async def main() -> None:
        with capture_logs() as logs:
            async with Runtime(faults=[Fault("crash", target="w", at=1)]) as rt:
                ref = await rt.spawn(Worker, name="w")
                await ping_at(rt, ref, [2.0])
                await asyncio.sleep(1)
                assert rt.trace.counts["fault"] == 1
        injected = [e for e in logs if e["event"] == "fault.injected"]
        assert [(e["kind"], e["target"], e["at"], e["log_level"]) for e in injected] == [
            ("crash", "w", 2.0, "warning")]

    sim(main)


# -- plans ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one of at, every, probability"),
        ({"at": 1, "every": 2}, "exactly one of"),
        ({"at": -1}, "at must be >= 0"),
        ({"every": 0}, "every must be > 0"),
        ({"probability": 1.5}, r"probability must be in \[0, 1\]"),
        ({"at": 1, "count": 0}, "count must be >= 1"),
        ({"at": 1, "duration": -1}, "must be >= 0"),
    ],
)
def test_fault_fields_are_validated(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Fault("crash", **kwargs)  # type: ignore[arg-type]


def test_unknown_kinds_are_rejected_naming_the_known_ones() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match=r"unknown fault kind 'explode'; known: crash, "):
            async with Runtime(faults=[Fault("explode", at=1)]):
                pass
        async with Runtime() as rt:
            with pytest.raises(ValueError, match="built in"):
                rt.faults.register_kind("crash")
            rt.faults.register_kind("store_error")
            assert "store_error" in rt.faults.known_kinds()
            with pytest.raises(ValueError, match="'explode'"):
                rt.faults.install([Fault("explode", at=1)])

    sim(main)


# -- system kinds ------------------------------------------------------------------------


def test_passive_kinds_are_armed_by_triggers_and_consumed_by_fire() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            rt.faults.register_kind("store_error")
            rt.faults.install([Fault("store_error", target="store*", at=5)])
            await asyncio.sleep(4)
            assert rt.faults.fire("store_error", "store") is None
            await asyncio.sleep(2)
            assert rt.faults.fire("store_error", "elsewhere") is None
            assert rt.faults.fire("lease_expiry", "store") is None
            fault = rt.faults.fire("store_error", "store")
            assert fault is not None and fault.kind == "store_error"
            assert rt.faults.fire("store_error", "store") is None
            assert faults_traced(rt) == [(6.0, "store", "store_error")]

    sim(main)


def test_passive_every_respects_count() -> None:
    async def main() -> list[float]:
        async with Runtime() as rt:
            rt.faults.register_kind("store_error")
            rt.faults.install([Fault("store_error", target="db", every=1, count=2)])
            fired = []
            for _ in range(10):
                await asyncio.sleep(1.5)
                while rt.faults.fire("store_error", "db") is not None:
                    fired.append(rt.now())
            return fired

    assert sim(main) == [1.5, 3.0]


def test_a_passive_every_fault_is_armed_once_however_many_triggers_pass() -> None:
    """``every = 250ms`` with nothing to consume it for 10 s is one armed fault, not 40:
    the next check fails, the ones after it do not (issue #10: they all failed)."""
    async def main() -> tuple[int, list[bool]]:
        async with Runtime() as rt:
            rt.faults.register_kind("destination_error")
            rt.faults.install([Fault("destination_error", target="sink", every=0.25)])
            await asyncio.sleep(10.1)
            backlog = 0
            while rt.faults.fire("destination_error", "sink") is not None and backlog < 100:
                backlog += 1
            checks = []
            for _ in range(10):  # then deliveries every 100 ms: one in 2.5 fails
                await asyncio.sleep(0.1)
                checks.append(rt.faults.fire("destination_error", "sink") is not None)
            return backlog, checks

    backlog, checks = sim(main)
    assert backlog == 1
    assert 3 <= sum(checks) <= 5


def test_passive_probability_is_rolled_at_each_fire() -> None:
    async def main() -> tuple[int, int]:
        async with Runtime() as rt:
            rt.faults.register_kind("lease_expiry")
            rt.faults.install([Fault("lease_expiry", probability=1.0, count=2),
                               Fault("lease_expiry", probability=0.5, start=100)])
            early = sum(rt.faults.fire("lease_expiry", "any") is not None for _ in range(10))
            await asyncio.sleep(100)
            late = sum(rt.faults.fire("lease_expiry", "any") is not None for _ in range(100))
            return early, late

    early, late = sim(main)
    assert early == 2
    assert 30 < late < 70


def test_active_kinds_call_their_handler_at_each_trigger() -> None:
    async def main() -> list[tuple[float, str]]:
        calls: list[tuple[float, str]] = []
        async with Runtime() as rt:
            rt.faults.register_kind("kill_process", lambda f: calls.append((rt.now(), f.target)))
            rt.faults.install([Fault("kill_process", target="host-1", every=2, count=3)])
            await asyncio.sleep(20)
        return calls

    assert sim(main) == [(2.0, "host-1"), (4.0, "host-1"), (6.0, "host-1")]


def test_active_kinds_are_traced_like_any_other_fault() -> None:
    async def main() -> list[tuple[float, str, str]]:
        async with Runtime() as rt:
            rt.faults.register_kind("kill_process", lambda f: None)
            rt.faults.install([Fault("kill_process", target="host-1", at=3)])
            await asyncio.sleep(5)
            return faults_traced(rt)

    assert sim(main) == [(3.0, "host-1", "kill_process")]


def test_faults_are_cancelled_when_the_runtime_stops() -> None:
    async def main() -> None:
        async with Runtime(faults=[Fault("crash", every=1)]) as rt:
            await rt.spawn(Worker)
        assert asyncio.all_tasks() == {asyncio.current_task()}
        loop = asyncio.get_running_loop()
        await asyncio.sleep(10)
        assert loop.time() == 10.0

    sim(main)


def test_a_plan_installed_with_an_origin_counts_its_times_from_there() -> None:
    """A run across node processes installs its plan once the nodes are up: ``at`` and
    ``every`` (and a probability fault's ``start``) count from that origin."""
    fired: list[float] = []

    async def main() -> None:
        async with Runtime() as rt:
            rt.faults.register_kind("mark", lambda fault: fired.append(rt.now()))
            await asyncio.sleep(5)
            rt.faults.install([Fault("mark", target="x", at=1),
                               Fault("mark", target="y", every=2, count=2)], origin=rt.now())
            starting = Fault("mark", target="z", probability=1.0, start=3)
            rt.faults.install([starting], origin=rt.now())
            assert not rt.faults.roll(starting)  # 5 s in, but 0 s after the origin
            await asyncio.sleep(10)
            assert rt.faults.roll(starting)

    sim(main)
    assert fired == [6.0, 7.0, 9.0]


def test_two_equal_plan_entries_are_two_faults() -> None:
    """Each plan entry arms its own fault, even when two entries are equal by value
    (a plan that lists one drop twice drops two messages, as it did before faults
    from other nodes were matched by value)."""
    async def main() -> tuple[int, int]:
        plan = [Fault("drop", target="w", at=5), Fault("drop", target="w", at=5)]
        async with Runtime(faults=plan) as rt:
            ref = await rt.spawn(Worker, name="w")
            await asyncio.sleep(6)
            for n in range(3):
                await ref.tell(Ping(n))
            await asyncio.sleep(1)
            stats = ref.statistics()
            return stats.dropped, stats.processed

    assert sim(main) == (2, 1)
