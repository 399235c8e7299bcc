"""Lifecycle hooks, death watch, timers and the name registry."""

from __future__ import annotations

import asyncio
import gc
from typing import ClassVar

import pytest
from _helpers import SEEDS, Boom, Crash, Ping, Sleep, Stop, Worker, events, sim

from runtime import (
    Actor,
    ActorRef,
    Message,
    NameTaken,
    NoSuchActor,
    Runtime,
    Terminated,
    Timer,
)

Journal = list[tuple[str, str, float]]


# -- started / recover / stopped ------------------------------------------------


def test_hooks_run_in_order_and_recover_runs_before_any_queued_message() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, journal, name="w")
            await ref.tell(Sleep(2))
            await ref.tell(Crash())
            await ref.tell(Ping(1))  # waits in the mailbox across the restart
            await asyncio.sleep(5)

    sim(main)
    assert [e for e, _, _ in journal] == [
        "started", "recover", "Sleep", "slept", "Crash", "stopped",
        "started", "recover", "Ping", "stopped",
    ]
    assert events(journal, "recover") == [("w", 0.0), ("w", 2.0)]


class SlowRecovery(Actor[Ping]):
    async def recover(self) -> None:
        await asyncio.sleep(5)  # e.g. replaying pending checkpoints

    async def receive(self, msg: Ping) -> object:
        return msg.n


def test_spawn_returns_once_recover_has_returned() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(SlowRecovery)
            assert rt.now() == 5.0
            assert await ref.ask(Ping(3)) == 3

    sim(main)


class FailsFirstStart(Actor[Ping]):
    starts: ClassVar[int] = 0

    async def started(self) -> None:
        FailsFirstStart.starts += 1
        if FailsFirstStart.starts == 1:
            raise Boom("cannot start")

    async def receive(self, msg: Ping) -> object:
        return msg.n


@pytest.mark.parametrize("seed", SEEDS)
def test_a_failing_first_start_is_an_error_of_spawn_and_is_not_restarted(seed: int) -> None:
    async def main() -> None:
        FailsFirstStart.starts = 0
        async with Runtime() as rt:
            with pytest.raises(Boom, match="cannot start"):
                await rt.spawn(FailsFirstStart, name="f")
            await asyncio.sleep(1)
            assert FailsFirstStart.starts == 1
            assert rt.actors() == []
            assert rt.root.children() == []
            assert rt.trace.events("restarted") == []
            ref = await rt.spawn(FailsFirstStart, name="f")  # the name is free again
            assert await ref.ask(Ping(2)) == 2
        assert asyncio.all_tasks() == {asyncio.current_task()}

    sim(main, seed)


class FailingRecover(Actor[Ping]):
    recovers: ClassVar[int] = 0

    async def recover(self) -> None:
        FailingRecover.recovers += 1
        if FailingRecover.recovers == 2:
            raise Boom("replay failed")

    async def receive(self, msg: Ping) -> object:
        if msg.n < 0:
            raise Boom("negative")
        return msg.n


def test_a_failing_recover_after_a_restart_is_a_crash_and_is_retried() -> None:
    async def main() -> None:
        FailingRecover.recovers = 0
        async with Runtime() as rt:
            ref = await rt.spawn(FailingRecover)
            with pytest.raises(Boom):
                await ref.ask(Ping(-1))
            assert await ref.ask(Ping(4)) == 4
            stats = ref.statistics()
            assert FailingRecover.recovers == 3
            assert (stats.crashed, stats.restarted) == (2, 2)

    sim(main)


def test_stopped_runs_after_a_crash_a_stop_and_at_shutdown() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            a = await rt.spawn(Worker, journal, name="a")
            b = await rt.spawn(Worker, journal, name="b", restart="transient")
            await a.tell(Crash())
            await b.tell(Stop())
            await asyncio.sleep(1)
            assert not b.alive
            assert a.alive

    sim(main)
    assert sorted(events(journal, "stopped")) == [("a", 0.0), ("a", 1.0), ("b", 0.0)]


# -- death watch ----------------------------------------------------------------


class Watcher(Actor[Terminated | Ping]):
    def __init__(self, targets: list[ActorRef[Ping]], seen: list[tuple[str, str, float]]) -> None:
        self.targets = targets
        self.seen = seen

    async def started(self) -> None:
        for target in self.targets:
            self.watch(target)

    async def receive(self, msg: Terminated | Ping) -> object:
        if isinstance(msg, Terminated):
            self.seen.append((msg.actor, msg.reason, self.now()))
        elif msg.n < 0:
            for target in self.targets:
                self.unwatch(target)
        return None


def test_watchers_get_terminated_naming_the_actor_and_the_reason() -> None:
    seen: list[tuple[str, str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            stopped = await rt.spawn(Worker, name="stopped")
            finished = await rt.spawn(Worker, name="finished", restart="transient")
            failed = await rt.spawn(Worker, name="failed", restart="temporary")
            restarted = await rt.spawn(Worker, name="restarted")
            await rt.spawn(Watcher, [stopped, finished, failed, restarted], seen)
            await asyncio.sleep(1)
            await rt.stop(stopped)
            await asyncio.sleep(1)
            await finished.tell(Stop())
            await asyncio.sleep(1)
            await failed.tell(Crash("disk on fire"))
            await asyncio.sleep(1)
            await restarted.tell(Crash())  # a restart is not a termination
            await asyncio.sleep(1)

    sim(main)
    assert seen == [
        ("stopped", "shutdown", 1.0),
        ("finished", "normal", 2.0),
        ("failed", "crash: Boom: disk on fire", 3.0),
    ]


def test_watching_a_dead_actor_delivers_terminated_at_once_and_unwatch_stops_it() -> None:
    seen: list[tuple[str, str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            gone = await rt.spawn(Worker, name="gone")
            later = await rt.spawn(Worker, name="later")
            await rt.stop(gone)
            watcher = await rt.spawn(Watcher, [gone, later], seen)
            await asyncio.sleep(1)
            await watcher.tell(Ping(-1))  # unwatch both
            await asyncio.sleep(1)
            await rt.stop(later)
            await asyncio.sleep(1)

    sim(main)
    assert seen == [("gone", "already stopped", 0.0)]


# -- timers -----------------------------------------------------------------------


class Tick(Message, frozen=True):
    label: str


class CancelTicks(Message, frozen=True):
    pass


class Ticker(Actor[Tick | CancelTicks | Ping]):
    def __init__(self, seen: list[tuple[str, float]], interval: float = 1.0,
                 initial_delay: float | None = None) -> None:
        self.seen = seen
        self.interval = interval
        self.initial_delay = initial_delay
        self.timers: list[Timer] = []

    async def started(self) -> None:
        self.timers.append(self.send_every(self.interval, Tick("every"), self.initial_delay))
        self.timers.append(self.send_after(2.5, Tick("after")))

    async def receive(self, msg: Tick | CancelTicks | Ping) -> object:
        if isinstance(msg, Tick):
            self.seen.append((msg.label, self.now()))
        elif isinstance(msg, CancelTicks):
            for timer in self.timers:
                timer.cancel()
        elif msg.n < 0:
            raise Boom("restart me")
        return None


def test_send_every_and_send_after_fire_at_exact_virtual_times() -> None:
    seen: list[tuple[str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            await rt.spawn(Ticker, seen, 2.0, 0.5)
            await asyncio.sleep(7)

    sim(main)
    assert seen == [("every", 0.5), ("every", 2.5), ("after", 2.5), ("every", 4.5),
                    ("every", 6.5)] or seen == [("every", 0.5), ("after", 2.5),
                                                ("every", 2.5), ("every", 4.5), ("every", 6.5)]


def test_timers_are_cancellable() -> None:
    seen: list[tuple[str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Ticker, seen)
            await asyncio.sleep(2.1)
            await ref.tell(CancelTicks())
            await asyncio.sleep(10)

    sim(main)
    assert seen == [("every", 1.0), ("every", 2.0)]


def test_timers_are_cancelled_on_restart() -> None:
    seen: list[tuple[str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Ticker, seen)
            await asyncio.sleep(1.5)
            await ref.tell(Ping(-1))  # crash at 1.5: the new incarnation starts its own
            await asyncio.sleep(2.6)

    sim(main)
    assert seen == [("every", 1.0), ("every", 2.5), ("every", 3.5), ("after", 4.0)]


def test_send_every_rejects_a_non_positive_interval() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            with pytest.raises(ValueError, match="interval must be > 0"):
                await rt.spawn(Ticker, [], 0.0)

    sim(main)


def test_runtime_send_after_delivers_on_the_runtime_clock_and_can_be_cancelled() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, journal, name="w")
            rt.send_after(3.0, ref, Ping(1))
            cancelled = rt.send_after(4.0, ref, Ping(2))
            await asyncio.sleep(3.5)
            cancelled.cancel()
            assert cancelled.cancelled
            await asyncio.sleep(5)

    sim(main)
    assert events(journal, "Ping") == [("w", 3.0)]


# -- name registry ------------------------------------------------------------------


def test_lookup_finds_live_actors_by_name() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="orders")
            assert rt.lookup("orders") is ref
            assert await rt.lookup("orders").ask(Ping(9)) == 9
            with pytest.raises(NameTaken, match="'orders'"):
                await rt.spawn(Worker, name="orders")
            with pytest.raises(NoSuchActor, match="'nobody'"):
                rt.lookup("nobody")
            with pytest.raises(LookupError):
                rt.lookup("nobody")
            await rt.stop(ref)
            with pytest.raises(NoSuchActor):
                rt.lookup("orders")
            again = await rt.spawn(Worker, name="orders")
            assert again is not ref
            assert rt.lookup("orders") is again

    sim(main)


def test_unnamed_actors_get_numbered_names() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            first = await rt.spawn(Worker)
            second = await rt.spawn(Worker)
            sup = await rt.spawn_supervisor()
            assert (first.name, second.name, sup.name) == ("Worker-1", "Worker-2", "supervisor-1")
            assert rt.actors() == ["Worker-1", "Worker-2"]
            with pytest.raises(NameTaken):
                await rt.spawn(Worker, name="supervisor-1")
            with pytest.raises(ValueError, match="empty"):
                await rt.spawn(Worker, name="")

    sim(main)


class Rearming(Actor[Tick]):
    """Re-arms a one-shot timer on every tick, cancelling the previous one first."""

    async def started(self) -> None:
        self.idle = self.send_after(0.5, Tick("idle"))
        self.next = self.send_after(0.01, Tick("tick"))

    async def receive(self, msg: Tick) -> object:
        self.idle.cancel()
        self.idle = self.send_after(0.5, Tick("idle"))
        self.next = self.send_after(0.01, Tick("tick"))
        return None


class Sink(Actor[Tick]):
    async def receive(self, msg: Tick) -> object:
        return None


def test_fired_and_cancelled_timers_are_released() -> None:
    def live_timers() -> int:
        gc.collect()
        return sum(isinstance(o, Timer) for o in gc.get_objects())

    async def main() -> None:
        before = live_timers()
        async with Runtime() as rt:
            ref = await rt.spawn(Rearming)
            await asyncio.sleep(50.005)
            assert ref.statistics().processed == 5000
            assert live_timers() - before <= 2
            sink = await rt.spawn(Sink)
            for _ in range(1000):
                rt.send_after(0.001, sink, Tick("from outside")).cancel()
                rt.send_after(0.001, sink, Tick("from outside"))
            await asyncio.sleep(1)
            assert sink.statistics().processed == 1000
            assert live_timers() - before <= 2

    sim(main)


class Quit(Message, frozen=True):
    pass


class Quitter(Actor[Quit | Ping]):
    async def receive(self, msg: Quit | Ping) -> object:
        if isinstance(msg, Quit):
            await self.runtime.stop(self.ref)
            return "bye"
        return msg.n


def test_an_actor_can_stop_itself_for_good_through_the_runtime() -> None:
    seen: list[tuple[str, str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Quitter, name="q")
            await rt.spawn(Watcher, [ref], seen)
            await ref.tell(Ping(1))
            assert await ref.ask(Quit()) == "bye"  # it finishes the message it is handling
            assert rt.now() == 0.0
            await asyncio.sleep(0.1)
            assert not ref.alive
            assert "q" not in rt.actors()
            assert ref.statistics().processed == 2

    sim(main)
    assert seen == [("q", "shutdown", 0.0)]
