"""Leaving ``async with Runtime()``: children first, current messages finish, no task left."""

from __future__ import annotations

import asyncio

import pytest
from _helpers import SEEDS, Crash, Journal, Ping, Sleep, Worker, events, sim
from structlog.testing import capture_logs

from runtime import (
    Actor,
    ActorRef,
    ActorStopped,
    Backoff,
    Fault,
    Message,
    RestartIntensityExceeded,
    Runtime,
)


def test_actors_stop_children_first_newest_first() -> None:
    journal: Journal = []

    async def main() -> Runtime:
        async with Runtime() as rt:
            await rt.spawn(Worker, journal, name="a")
            sup = await rt.spawn_supervisor("sup")
            await sup.spawn(Worker, journal, name="b")
            inner = await sup.spawn_supervisor("inner")
            await inner.spawn(Worker, journal, name="c")
            await rt.spawn(Worker, journal, name="d")
        return rt

    rt = sim(main)
    assert [name for name, _ in events(journal, "stopped")] == ["d", "c", "b", "a"]
    assert [e.actor for e in rt.trace.events("stopped")] == ["d", "c", "inner", "b", "sup",
                                                            "a", "root"]
    assert rt.trace.events()[-1].kind == "runtime_stopped"


def test_each_actor_may_finish_its_current_message_within_the_shutdown_timeout() -> None:
    journal: Journal = []

    async def main() -> None:
        async with Runtime(shutdown_timeout=5) as rt:
            w = await rt.spawn(Worker, journal, name="w")
            await w.tell(Sleep(3))
            await w.tell(Ping(1))  # queued behind Sleep: never handled
            await asyncio.sleep(1)
        assert rt.now() == 3.0
        assert w.statistics().dropped == 1

    sim(main)
    assert [e for e, _, _ in journal] == ["started", "recover", "Sleep", "slept", "stopped"]
    assert events(journal, "stopped") == [("w", 3.0)]


def test_an_actor_still_busy_at_the_shutdown_timeout_is_cancelled() -> None:
    journal: Journal = []

    async def main() -> None:
        with capture_logs() as logs:
            async with Runtime(shutdown_timeout=5) as rt:
                slow = await rt.spawn(Worker, journal, name="slow", shutdown_timeout=2)
                await slow.tell(Sleep(100))
                await asyncio.sleep(1)
            assert rt.now() == 3.0
        timeouts = [e for e in logs if e["event"] == "actor.shutdown_timeout"]
        assert [(e["actor"], e["timeout"]) for e in timeouts] == [("slow", 2)]

    sim(main)
    assert "slept" not in [e for e, _, _ in journal]
    assert events(journal, "stopped") == [("slow", 3.0)]  # stopped still runs after cancel


class Relay(Message, frozen=True):
    n: int


class Forwarder(Actor[Relay]):
    """Asks its peer on every message, so asks are in flight at shutdown."""

    def __init__(self, peer: ActorRef[Ping] | None) -> None:
        self.peer = peer

    async def started(self) -> None:
        self.send_every(0.3, Relay(0))

    async def receive(self, msg: Relay) -> object:
        if self.peer is not None:
            return await self.peer.ask(Ping(msg.n), timeout=1)
        return None


@pytest.mark.parametrize("seed", SEEDS)
def test_no_task_is_left_running_after_exit(seed: int) -> None:
    async def main() -> None:
        plan = [Fault("crash", target="*", every=0.7), Fault("delay", target="w*", every=0.5,
                                                                 delay=2)]
        async with Runtime(faults=plan, backoff=Backoff(min=0.5, max=4, jitter=0.3),
                           max_restarts=1000, within=1) as rt:
            sup = await rt.spawn_supervisor("sup", strategy="one_for_all", max_restarts=1000,
                                            within=1, backoff=Backoff(min=1))
            inner = await sup.spawn_supervisor("inner", strategy="rest_for_one")
            workers = [await inner.spawn(Worker, name=f"w{n}") for n in range(3)]
            for n, w in enumerate(workers):
                await rt.spawn(Forwarder, w, name=f"f{n}")
                await w.tell(Sleep(0.25 * n))
            rt.send_after(100, workers[0], Ping(1))
            await asyncio.sleep(3.3 + seed * 0.1)
            assert rt.trace.counts["fault"] > 0
            assert rt.trace.counts["restarted"] > 0
        assert asyncio.all_tasks() == {asyncio.current_task()}

    sim(main, seed)


def test_an_escalation_to_the_root_is_raised_when_the_block_exits() -> None:
    async def main() -> None:
        rt = Runtime(max_restarts=0)
        with pytest.raises(RestartIntensityExceeded, match="supervisor 'root'"):
            async with rt:
                w = await rt.spawn(Worker, name="w")
                await w.tell(Crash())
                await asyncio.sleep(1)
                assert rt.failure is not None
                with pytest.raises(RuntimeError, match="'root' is not running"):
                    await rt.spawn(Worker)
        assert asyncio.all_tasks() == {asyncio.current_task()}

    sim(main)


def test_an_error_in_the_block_wins_over_the_runtime_failure() -> None:
    async def main() -> None:
        rt = Runtime(max_restarts=0)
        with pytest.raises(KeyError):
            async with rt:
                w = await rt.spawn(Worker, name="w")
                await w.tell(Crash())
                await asyncio.sleep(1)
                raise KeyError("mine")
        assert isinstance(rt.failure, RestartIntensityExceeded)

    sim(main)


def test_asks_pending_at_shutdown_fail_with_actor_stopped() -> None:
    async def main() -> None:
        async with Runtime(shutdown_timeout=1) as rt:
            w = await rt.spawn(Worker, name="w")
            await w.tell(Sleep(0.5))
            pending = asyncio.create_task(w.ask(Ping(1), timeout=60))
            await asyncio.sleep(0.1)
        with pytest.raises(ActorStopped, match="Ping not handled"):
            await pending

    sim(main)


def test_shutdown_is_idempotent_and_stops_everything() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            w = await rt.spawn(Worker, name="w")
            await rt.shutdown()
            assert not w.alive
            assert rt.actors() == []
            await rt.shutdown()
        assert rt.trace.counts["runtime_stopped"] == 1

    sim(main)


class SlowRestart(Actor[Crash | Ping]):
    """Starts at once the first time and takes 10 s to start after that."""

    starts = 0

    async def started(self) -> None:
        SlowRestart.starts += 1
        if SlowRestart.starts > 1:
            await asyncio.sleep(10)

    async def receive(self, msg: Crash | Ping) -> object:
        if isinstance(msg, Crash):
            raise RuntimeError("crash")
        return msg.n


@pytest.mark.parametrize("seed", SEEDS)
def test_exit_while_a_supervisor_waits_for_a_slow_restart(seed: int) -> None:
    async def main() -> None:
        SlowRestart.starts = 0
        async with Runtime(shutdown_timeout=0.5) as rt:
            sup = await rt.spawn_supervisor("sup")
            ref = await sup.spawn(SlowRestart, name="slow")
            await ref.tell(Crash())
            await asyncio.sleep(1)
            assert SlowRestart.starts == 2
        assert rt.now() == 1.5
        assert not ref.alive
        assert asyncio.all_tasks() == {asyncio.current_task()}

    sim(main, seed)
