"""Supervisors with OTP semantics, checked at exact virtual-time boundaries.

Crashes are sent at chosen virtual times; restarts without backoff happen at
the same instant, so restart timestamps equal crash times exactly, and
``rt.trace`` events ("restarted", "restart_scheduled", "escalated") carry the
exact times decisions were taken.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import ClassVar

import pytest
from _helpers import Boom, Crash, Ping, Probe, Stop, Worker, sim
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import (
    Actor,
    ActorRef,
    AskTimeout,
    Backoff,
    Restart,
    RestartIntensityExceeded,
    Runtime,
    StoreError,
    Strategy,
    SupervisorSpec,
)

Journal = list[tuple[str, str, float]]


async def crash_at(rt: Runtime, ref: ActorRef[Probe], times: Sequence[float]) -> None:
    """Make ``ref`` crash at each of ``times`` (virtual seconds since the runtime started)."""
    for t in times:
        await asyncio.sleep(t - rt.now())
        await ref.tell(Crash())
    await asyncio.sleep(0.001)


def trace(rt: Runtime, kind: str) -> list[tuple[str, float]]:
    return [(e.actor, e.time) for e in rt.trace.events(kind)]


def journal_of(journal: Journal, kind: str) -> list[str]:
    return [name for event, name, _ in journal if event == kind]


# -- intensity ----------------------------------------------------------------------


@pytest.mark.parametrize("max_restarts", [1, 3, 5])
def test_max_restarts_restarts_are_allowed_and_the_next_one_escalates(max_restarts: int) -> None:
    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup", max_restarts=max_restarts, within=100)
            w = await sup.spawn(Worker, name="w")
            await crash_at(rt, w, [float(t) for t in range(max_restarts)])
            assert trace(rt, "escalated") == []
            assert w.statistics().restarted == max_restarts
            await crash_at(rt, w, [float(max_restarts)])
            assert trace(rt, "escalated") == [("sup", float(max_restarts))]
            # the root restarted the supervisor, which started a fresh worker
            assert ("sup", float(max_restarts)) in trace(rt, "restarted")
            assert await w.ask(Ping(1)) == 1

    sim(main)


def test_max_restarts_zero_escalates_on_the_first_failure() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup", max_restarts=0, within=100)
            w = await sup.spawn(Worker, name="w")
            await crash_at(rt, w, [3.0])
            assert trace(rt, "escalated") == [("sup", 3.0)]
            assert ("w", 3.0) not in trace(rt, "restarted")  # not restarted by sup itself

    sim(main)


@pytest.mark.parametrize(
    ("times", "escalates_at"),
    [
        ([0.0, 10.0], 10.0),  # exactly `within` apart: the earlier restart still counts
        ([0.0, 10.5], None),  # just outside the window
        ([0.0, 10.5, 21.0], None),  # every pair is more than 10 s apart
        ([0.0, 10.5, 20.5], 20.5),  # 0.0 has left the window, 10.5 has not
    ],
)
def test_the_window_is_sliding_and_closed(times: list[float], escalates_at: float | None) -> None:
    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup", max_restarts=1, within=10)
            w = await sup.spawn(Worker, name="w")
            await crash_at(rt, w, times)
            expected = [] if escalates_at is None else [("sup", escalates_at)]
            assert trace(rt, "escalated") == expected

    sim(main)


def test_escalation_past_the_root_fails_the_runtime_and_stops_children_newest_first() -> None:
    journal: Journal = []

    async def main() -> None:
        rt = Runtime(max_restarts=1, within=10)
        with pytest.raises(RestartIntensityExceeded) as info:
            async with rt:
                await rt.spawn(Worker, journal, name="a")
                await rt.spawn(Worker, journal, name="b")
                c = await rt.spawn(Worker, journal, name="c")
                journal.clear()
                await crash_at(rt, c, [1.0, 2.0])
                failure = await rt.wait_failed()
                assert failure is rt.failure
                # c crashed; b and a were terminated in reverse start order
                assert [(e, n) for e, n, _ in journal if e == "stopped"] == [
                    ("stopped", "c"), ("stopped", "c"), ("stopped", "b"), ("stopped", "a")]
        assert info.value is rt.failure
        assert "supervisor 'root': more than 1 restarts within 10 s" in str(info.value)
        assert info.value.child == "c"
        assert trace(rt, "escalated") == [("root", 2.0)]

    sim(main)


@settings(max_examples=120, deadline=None)
@given(
    gaps=st.lists(st.integers(min_value=0, max_value=4), min_size=1, max_size=12),
    max_restarts=st.integers(min_value=0, max_value=3),
    within=st.integers(min_value=1, max_value=6),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_escalation_happens_iff_some_window_holds_more_than_max_restarts(
    gaps: list[int], max_restarts: int, within: int, seed: int
) -> None:
    times: list[float] = []
    for gap in gaps:
        times.append((times[-1] if times else 0.0) + gap)

    def oracle() -> int | None:
        """OTP: the restart at t escalates if more than max_restarts restarts lie in [t-W, t].
        Returns the index of the crash that escalates."""
        for i, t in enumerate(times):
            if sum(1 for s in times[: i + 1] if t - s <= within) > max_restarts:
                return i
        return None

    async def main() -> tuple[list[tuple[str, float]], int]:
        rt = Runtime(max_restarts=max_restarts, within=within)
        try:
            async with rt:
                w = await rt.spawn(Worker, name="w")
                for t in times:
                    await asyncio.sleep(t - rt.now())
                    if rt.failure is not None:
                        break
                    with pytest.raises((Boom, AskTimeout)):
                        await w.ask(Crash(), timeout=0.5)
                await asyncio.sleep(1)
        except RestartIntensityExceeded:
            pass
        return trace(rt, "escalated"), w.statistics().restarted

    escalated, restarted = sim(main, seed)
    expected = oracle()
    if expected is None:
        assert escalated == []
        assert restarted == len(times)
    else:
        assert escalated == [("root", times[expected])]
        assert restarted == expected


# -- strategies ---------------------------------------------------------------------


async def three_children(
    rt: Runtime, journal: Journal, strategy: str, names: str = "abc"
) -> list[ActorRef[Probe]]:
    sup = await rt.spawn_supervisor("sup", strategy=strategy, max_restarts=10, within=10)
    refs: list[ActorRef[Probe]] = [await sup.spawn(Worker, journal, name=n) for n in names]
    await asyncio.sleep(1)
    journal.clear()
    return refs


def test_one_for_one_restarts_only_the_failed_child() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            _, b, _ = await three_children(rt, journal, "one_for_one")
            await crash_at(rt, b, [2.0])

    sim(main)
    assert journal_of(journal, "stopped")[:1] == ["b"]
    assert journal_of(journal, "started") == ["b"]


def test_one_for_all_stops_the_others_newest_first_and_restarts_all_in_start_order() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            a, b, c = await three_children(rt, journal, "one_for_all")
            await crash_at(rt, b, [2.0])
            assert [r.statistics().restarted for r in (a, b, c)] == [1, 1, 1]
            assert trace(rt, "restarted") == [("a", 2.0), ("b", 2.0), ("c", 2.0)]
            journal.clear()

    sim(main)


def test_one_for_all_order_of_stops_and_starts() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            _, b, _ = await three_children(rt, journal, "one_for_all")
            await crash_at(rt, b, [2.0])
            assert [(e, n) for e, n, _ in journal if e in ("stopped", "started")] == [
                ("stopped", "b"), ("stopped", "c"), ("stopped", "a"),
                ("started", "a"), ("started", "b"), ("started", "c"),
            ]

    sim(main)


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            a, b, c, d = await three_children(rt, journal, "rest_for_one", names="abcd")
            await crash_at(rt, b, [2.0])
            assert [(e, n) for e, n, _ in journal if e in ("stopped", "started")] == [
                ("stopped", "b"), ("stopped", "d"), ("stopped", "c"),
                ("started", "b"), ("started", "c"), ("started", "d"),
            ]
            assert [r.statistics().restarted for r in (a, b, c, d)] == [0, 1, 1, 1]

    sim(main)


def test_restart_types_permanent_transient_temporary() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup", max_restarts=10, within=10)
            perm = await sup.spawn(Worker, name="perm", restart="permanent")
            trans_ok = await sup.spawn(Worker, name="trans_ok", restart=Restart.TRANSIENT)
            trans_bad = await sup.spawn(Worker, name="trans_bad", restart="transient")
            temp = await sup.spawn(Worker, name="temp", restart="temporary")
            await perm.tell(Stop())  # a normal exit: permanent children come back anyway
            await trans_ok.tell(Stop())  # normal exit: transient stays down
            await trans_bad.tell(Crash())  # abnormal exit: transient comes back
            await temp.tell(Crash())  # temporary never comes back
            await asyncio.sleep(1)
            assert sup.children() == ["perm", "trans_bad"]
            assert (perm.alive, trans_ok.alive, trans_bad.alive, temp.alive) == (
                True, False, True, False)
            assert sorted(rt.actors()) == ["perm", "trans_bad"]
            assert await perm.ask(Ping(1)) == 1
            assert await trans_bad.ask(Ping(2)) == 2

    sim(main)


def test_temporary_children_are_dropped_when_a_sibling_failure_would_restart_them() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup", strategy="one_for_all")
            a = await sup.spawn(Worker, name="a")
            temp = await sup.spawn(Worker, name="temp", restart="temporary")
            await crash_at(rt, a, [1.0])
            assert sup.children() == ["a"]
            assert not temp.alive
            assert [(e.actor, e.detail) for e in rt.trace.events("stopped")] == [
                ("temp", "shutdown")]

    sim(main)


# -- escalation and trees -------------------------------------------------------------


def test_escalation_stops_the_children_newest_first_then_the_parent_restarts_the_subtree() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            _, _, c = await three_children(rt, journal, "one_for_one")
            await crash_at(rt, c, [float(t) for t in range(2, 13)])  # the 11th escalates
            assert trace(rt, "escalated") == [("sup", 12.0)]
            tail = [(e, n) for e, n, _ in journal if e in ("stopped", "started")][-6:]
            assert tail == [("stopped", "c"), ("stopped", "b"), ("stopped", "a"),
                            ("started", "a"), ("started", "b"), ("started", "c")]

    sim(main)


def test_a_tree_of_supervisors_escalates_level_by_level() -> None:
    async def main() -> None:
        async with Runtime(max_restarts=5, within=100) as rt:
            mid = await rt.spawn_supervisor("mid", max_restarts=1, within=100)
            leaf = await mid.spawn_supervisor("leaf", max_restarts=0, within=100)
            w = await leaf.spawn(Worker, name="w")
            await crash_at(rt, w, [1.0])
            assert trace(rt, "escalated") == [("leaf", 1.0)]
            await crash_at(rt, w, [2.0])
            assert trace(rt, "escalated") == [("leaf", 1.0), ("leaf", 2.0), ("mid", 2.0)]
            assert trace(rt, "restarted") == [("leaf", 1.0), ("mid", 2.0)]
            assert mid.children() == ["leaf"] and leaf.children() == ["w"]
            assert await w.ask(Ping(7)) == 7
            assert rt.failure is None

    sim(main)


def test_an_escalating_child_supervisor_is_handled_by_the_parents_strategy() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            parent = await rt.spawn_supervisor("parent", strategy="one_for_all")
            child = await parent.spawn_supervisor("child", max_restarts=0)
            w = await child.spawn(Worker, journal, name="w")
            await parent.spawn(Worker, journal, name="sibling")
            journal.clear()
            await crash_at(rt, w, [1.0])
            assert trace(rt, "escalated") == [("child", 1.0)]
            assert [(e, n) for e, n, _ in journal if e in ("stopped", "started")] == [
                ("stopped", "w"), ("stopped", "sibling"), ("started", "w"), ("started", "sibling")]

    sim(main)


def test_a_temporary_supervisor_that_escalates_is_removed_with_its_children() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup", max_restarts=0, restart="temporary")
            w = await sup.spawn(Worker, name="w")
            await crash_at(rt, w, [1.0])
            assert rt.root.children() == []
            assert not w.alive
            assert rt.actors() == []
            assert rt.failure is None

    sim(main)


def test_supervisor_flags_are_validated_at_the_edge() -> None:
    with pytest.raises(ValueError, match="max_restarts must be >= 0"):
        SupervisorSpec(max_restarts=-1)
    with pytest.raises(ValueError, match="within must be > 0"):
        SupervisorSpec(within=0)
    with pytest.raises(ValueError, match="min must be >= 0"):
        Backoff(min=-1)
    with pytest.raises(ValueError, match=r"max .* must be >= min"):
        Backoff(min=2, max=1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=-0.1)
    with pytest.raises(ValueError, match="reset_after"):
        Backoff(reset_after=0)

    async def main() -> None:
        async with Runtime() as rt:
            with pytest.raises(ValueError):
                await rt.spawn_supervisor("bad", strategy="no_such_strategy")
            with pytest.raises(ValueError):
                await rt.spawn(Worker, restart="forever")
            with pytest.raises(TypeError, match="Actor subclass"):
                await rt.spawn(int)  # type: ignore[arg-type]
            assert rt.root.spec.strategy is Strategy.ONE_FOR_ONE

    sim(main)


# -- backoff -------------------------------------------------------------------------


class FlakyStart(Actor[Crash | Ping]):
    """Crashes on ``Crash``; each restart fails in ``started`` while ``failures`` > 0."""

    failures: ClassVar[int] = 0

    async def started(self) -> None:
        if FlakyStart.failures > 0:
            FlakyStart.failures -= 1
            raise Boom("still broken")

    async def receive(self, msg: Crash | Ping) -> object:
        if isinstance(msg, Crash):
            raise Boom("crash")
        return msg.n


def scheduled_delays(rt: Runtime) -> list[tuple[float, float]]:
    return [(e.time, float(e.detail.removeprefix("delay "))) for e in
            rt.trace.events("restart_scheduled")]


def test_backoff_doubles_from_min_to_max() -> None:
    async def main() -> None:
        backoff = Backoff(min=1, max=8)
        async with Runtime(max_restarts=10, within=100, backoff=backoff) as rt:
            ref = await rt.spawn(FlakyStart, name="f")
            FlakyStart.failures = 4
            await ref.tell(Crash())
            assert await ref.ask(Ping(1), timeout=60) == 1
            assert rt.now() == 23.0
            assert scheduled_delays(rt) == [(0.0, 1.0), (1.0, 2.0), (3.0, 4.0), (7.0, 8.0),
                                            (15.0, 8.0)]
            assert trace(rt, "restarted") == [("f", 1.0), ("f", 3.0), ("f", 7.0), ("f", 15.0),
                                              ("f", 23.0)]

    sim(main)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_backoff_jitter_draws_from_the_runtime_generator(seed: int) -> None:
    async def main() -> list[float]:
        backoff = Backoff(min=1, max=8, jitter=0.5)
        async with Runtime(max_restarts=10, within=100, backoff=backoff) as rt:
            ref = await rt.spawn(FlakyStart, name="f")
            FlakyStart.failures = 4
            await ref.tell(Crash())
            await ref.ask(Ping(1), timeout=100)
            return [t for _, t in trace(rt, "restarted")]

    times = sim(main, seed)
    rng = random.Random(seed)  # what rt.random is, and nothing else draws from it here
    expected, t = [], 0.0
    for n in range(5):
        t = t + min(8.0, 1.0 * 2**n) * (1 + rng.random() * 0.5)
        expected.append(t)
    assert times == expected


def test_different_seeds_give_different_jitter() -> None:
    async def main() -> float:
        async with Runtime(backoff=Backoff(min=1, max=8, jitter=1.0)) as rt:
            ref = await rt.spawn(Worker)
            await crash_at(rt, ref, [0.0])
            await asyncio.sleep(5)
            return rt.trace.events("restarted")[0].time

    delays = {sim(main, seed) for seed in range(5)}
    assert len(delays) == 5
    assert all(1.0 <= d < 2.0 for d in delays)


@pytest.mark.parametrize(
    ("third_crash", "third_delay"),
    [(9.0, 1.0),  # ran exactly reset_after (5 s) since its restart at 4: counter reset
     (8.75, 4.0)],  # ran 4.75 s: still the third consecutive restart
)
def test_backoff_resets_after_a_quiet_period(third_crash: float, third_delay: float) -> None:
    async def main() -> None:
        async with Runtime(max_restarts=100, within=1000,
                           backoff=Backoff(min=1, max=8, reset_after=5)) as rt:
            ref = await rt.spawn(Worker, name="w")
            await crash_at(rt, ref, [0.0, 2.0, third_crash])
            await asyncio.sleep(10)
            assert scheduled_delays(rt) == [(0.0, 1.0), (2.0, 2.0), (third_crash, third_delay)]
            assert trace(rt, "restarted")[-1] == ("w", third_crash + third_delay)

    sim(main)


def test_backoff_reset_period_defaults_to_within() -> None:
    async def main() -> None:
        async with Runtime(max_restarts=100, within=5, backoff=Backoff(min=1, max=8)) as rt:
            ref = await rt.spawn(Worker, name="w")
            await crash_at(rt, ref, [0.0, 2.0, 9.0])
            await asyncio.sleep(10)
            assert [d for _, d in scheduled_delays(rt)] == [1.0, 2.0, 1.0]

    sim(main)


def test_messages_sent_during_backoff_wait_in_the_mailbox() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime(backoff=Backoff(min=3)) as rt:
            ref = await rt.spawn(Worker, journal, name="w")
            await crash_at(rt, ref, [1.0])
            await ref.tell(Ping(1))
            assert await ref.ask(Ping(2)) == 2
            assert rt.now() == 4.0

    sim(main)
    assert [(e, t) for e, _, t in journal if e == "Ping"] == [("Ping", 4.0), ("Ping", 4.0)]


@given(
    minimum=st.floats(min_value=0.001, max_value=100),
    maximum=st.floats(min_value=0.001, max_value=1000),
    jitter=st.floats(min_value=0, max_value=2),
    attempt=st.integers(min_value=0, max_value=5000),
    u=st.floats(min_value=0, max_value=1, exclude_max=True),
)
def test_backoff_delay_is_akkas_formula(
    minimum: float, maximum: float, jitter: float, attempt: int, u: float
) -> None:
    maximum = max(minimum, maximum)
    backoff = Backoff(min=minimum, max=maximum, jitter=jitter)
    base = maximum if attempt > 1000 else min(maximum, minimum * 2.0**attempt)
    assert backoff.delay(attempt, u) == pytest.approx(base * (1 + u * jitter))


def test_no_backoff_restarts_at_once() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="w")
            await crash_at(rt, ref, [2.0])
            assert trace(rt, "restarted") == [("w", 2.0)]
            assert rt.trace.events("restart_scheduled") == []

    sim(main)


# -- spawn_retrying -------------------------------------------------------------------


class _FlakyStart(Actor[Ping]):
    """Fails its first ``recover`` calls (a store that is briefly down)."""

    failures_left: ClassVar[int] = 0
    attempts: ClassVar[list[float]] = []

    async def recover(self) -> None:
        _FlakyStart.attempts.append(self.runtime.now())
        if _FlakyStart.failures_left > 0:
            _FlakyStart.failures_left -= 1
            raise StoreError("store unavailable")

    async def receive(self, msg: Ping) -> str:
        return "pong"


@pytest.mark.parametrize(("failures", "attempts", "starts"), [(2, 3, True), (3, 3, False)])
def test_spawn_retrying_retries_a_failed_first_start_with_backoff(
    failures: int, attempts: int, starts: bool
) -> None:
    """A first ``recover`` that fails is retried after the backoff delays, up to
    ``attempts`` starts in all; past that the error reaches the spawner."""
    _FlakyStart.failures_left = failures
    _FlakyStart.attempts = []
    backoff = Backoff(min=0.5, max=10.0, jitter=0.0)

    async def main() -> None:
        async with Runtime() as rt:
            sup = await rt.spawn_supervisor("sup")
            if starts:
                ref = await sup.spawn_retrying(_FlakyStart, name="flaky", backoff=backoff,
                                               attempts=attempts)
                assert await ref.ask(Ping()) == "pong"
            else:
                with pytest.raises(StoreError):
                    await sup.spawn_retrying(_FlakyStart, name="flaky", backoff=backoff,
                                             attempts=attempts)
                assert sup.children() == []

    sim(main)
    assert _FlakyStart.attempts == pytest.approx([0.0, 0.5, 1.5])
