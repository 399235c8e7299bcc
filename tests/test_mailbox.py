"""Bounded mailboxes: backpressure, tell_nowait, ask, and what survives a restart."""

from __future__ import annotations

import asyncio
from typing import ClassVar

import pytest
from _helpers import Boom, Crash, Ping, Probe, Sleep, Stop, Worker, events, sim
from structlog.testing import capture_logs

from runtime import (
    Actor,
    ActorStopped,
    AskTimeout,
    Backoff,
    MailboxFull,
    Message,
    Runtime,
    ShardlineError,
)


class SmallWorker(Worker):
    mailbox_capacity: ClassVar[int] = 3


def test_capacity_comes_from_the_class_or_from_spawn() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            default = await rt.spawn(Worker)
            small = await rt.spawn(SmallWorker)
            override = await rt.spawn(SmallWorker, mailbox_capacity=7)
            assert default.statistics().mailbox_capacity == 1000
            assert small.statistics().mailbox_capacity == 3
            assert override.statistics().mailbox_capacity == 7
            with pytest.raises(ValueError, match="at least 1"):
                await rt.spawn(Worker, mailbox_capacity=0)

    sim(main)


def test_tell_waits_while_the_mailbox_is_full() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="w", mailbox_capacity=2)
            await ref.tell(Sleep(10))  # taken at once; the worker is busy until t=10
            await asyncio.sleep(1)
            await ref.tell(Ping(1))
            await ref.tell(Ping(2))
            with pytest.raises(MailboxFull) as info:
                ref.tell_nowait(Ping(3))
            assert (info.value.actor, info.value.message_type, info.value.capacity) == (
                "w", "Ping", 2)
            assert "'w'" in str(info.value) and "Ping" in str(info.value)
            assert isinstance(info.value, ShardlineError)

            sent_at: list[float] = []

            async def send() -> None:
                await ref.tell(Ping(3))
                sent_at.append(rt.now())

            sender = asyncio.create_task(send())
            await asyncio.sleep(5)
            assert not sender.done()
            assert ref.statistics().mailbox_depth == 2
            await sender
            assert sent_at == [10.0]  # room appeared when the worker took Ping(1)
            assert ref.statistics().mailbox_high_water == 2

    sim(main)


def test_waiting_senders_get_room_in_arrival_order() -> None:
    journal: list[tuple[str, str, float]] = []

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, journal, name="w", mailbox_capacity=1)
            await ref.tell(Sleep(10))
            await asyncio.sleep(1)
            await ref.tell(Ping(0))
            senders = []
            for n in range(1, 5):
                senders.append(asyncio.create_task(ref.tell(Ping(n))))
                await asyncio.sleep(1)
            await asyncio.gather(*senders)
            await asyncio.sleep(1)

    for seed in range(4):
        journal.clear()
        sim(main, seed)
        assert [t for e, _, t in journal if e == "Ping"] == [10.0] * 5
        assert len(events(journal, "Ping")) == 5


class PingNumbers(Actor[Ping | Sleep]):
    """Records the Ping numbers it handles; handling Ping(0) cancels ``victim``."""

    victim: ClassVar[list[asyncio.Task[None]]] = []
    seen: ClassVar[list[int]] = []

    async def receive(self, msg: Ping | Sleep) -> object:
        if isinstance(msg, Sleep):
            await asyncio.sleep(msg.seconds)
            return None
        if msg.n == 0:
            for task in self.victim:
                task.cancel()
        self.seen.append(msg.n)
        return None


def test_a_sender_cancelled_just_after_it_was_given_room_passes_the_room_on() -> None:
    async def main() -> None:
        PingNumbers.victim.clear()
        PingNumbers.seen.clear()
        async with Runtime() as rt:
            ref = await rt.spawn(PingNumbers, mailbox_capacity=1)
            await ref.tell(Sleep(10))
            await asyncio.sleep(1)
            await ref.tell(Ping(0))  # mailbox full until the worker takes Ping(0) at t=10
            first = asyncio.create_task(ref.tell(Ping(1)))
            await asyncio.sleep(1)
            second = asyncio.create_task(ref.tell(Ping(2)))
            await asyncio.sleep(1)
            # Taking Ping(0) wakes ``first``, and handling it cancels ``first`` before
            # it runs: the room must go to ``second`` instead of being lost.
            PingNumbers.victim.append(first)
            await asyncio.sleep(20)
            assert first.cancelled()
            assert second.done()
            assert PingNumbers.seen == [0, 2]

    sim(main)


def test_ask_returns_the_value_receive_returns() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker)
            assert await ref.ask(Ping(41)) == 41
            assert await ref.ask(Stop()) is None

    sim(main)


def test_ask_timeout_names_actor_message_type_and_timeout() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="slow")
            await ref.tell(Sleep(100))
            with pytest.raises(AskTimeout) as info:
                await ref.ask(Ping(1), timeout=2.5)
            assert rt.now() == 2.5
            err = info.value
            assert (err.actor, err.message_type, err.timeout) == ("slow", "Ping", 2.5)
            assert str(err) == "ask to actor 'slow' with Ping got no reply within 2.5 s"
            assert isinstance(err, TimeoutError)

    sim(main)


def test_ask_timeout_while_waiting_for_room() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="w", mailbox_capacity=1)
            await ref.tell(Sleep(100))
            await asyncio.sleep(1)
            await ref.tell(Ping(0))
            with pytest.raises(AskTimeout, match=r"'w' with Ping .* 3 s"):
                await ref.ask(Ping(1), timeout=3)
            assert rt.now() == 4.0
            assert ref.statistics().mailbox_depth == 1  # the timed-out ask was not enqueued

    sim(main)


def test_exception_while_handling_an_ask_is_reraised_at_the_asker_and_is_a_crash() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker)
            with pytest.raises(Boom, match="bad input"):
                await ref.ask(Crash("bad input"))
            await asyncio.sleep(0.1)
            stats = ref.statistics()
            assert (stats.crashed, stats.restarted) == (1, 1)
            assert await ref.ask(Ping(5)) == 5

    sim(main)


class TimesOutInside(Actor[Ping]):
    async def receive(self, msg: Ping) -> object:
        raise TimeoutError("database did not answer")


def test_a_timeout_raised_by_the_handler_is_not_mistaken_for_an_ask_timeout() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(TimesOutInside)
            with pytest.raises(TimeoutError) as info:
                await ref.ask(Ping(), timeout=10)
            assert not isinstance(info.value, AskTimeout)
            assert str(info.value) == "database did not answer"
            assert rt.now() == 0.0

    sim(main)


def test_mailbox_and_ref_survive_a_restart_and_the_failed_message_is_not_redelivered() -> None:
    journal: list[tuple[str, str, float]] = []

    async def main() -> None:
        with capture_logs() as logs:
            async with Runtime() as rt:
                ref = await rt.spawn(Worker, journal, name="w")
                await ref.tell(Sleep(5))
                await ref.tell(Crash("first"))
                await ref.tell(Ping(1))
                await ref.tell(Ping(2))
                await asyncio.sleep(10)
                assert rt.lookup("w") is ref
                assert ref.alive
                assert await ref.ask(Ping(3)) == 3
        lost = [e for e in logs if e["event"] == "message.not_redelivered"]
        assert len(lost) == 1
        assert lost[0]["actor"] == "w"
        assert lost[0]["message"] == "Crash"
        assert "Boom: first" in lost[0]["error"]

    sim(main)
    seen = [e for e, _, _ in journal if e not in ("slept",)]
    assert seen == [
        "started", "recover", "Sleep", "Crash", "stopped",
        "started", "recover", "Ping", "Ping", "Ping", "stopped",
    ]


def test_a_stop_request_leaves_nothing_behind_in_the_mailbox() -> None:
    async def main() -> None:
        async with Runtime(backoff=Backoff(min=10)) as rt:
            ref = await rt.spawn(Worker, name="w", mailbox_capacity=1)
            await ref.ask(Stop())  # normal exit of a permanent child: restarted after 10 s
            await asyncio.sleep(1)
            assert ref.statistics().mailbox_depth == 0
            ref.tell_nowait(Ping(1))  # the one slot is free during the backoff
            assert ref.statistics().mailbox_high_water <= 1
            await asyncio.sleep(10)
            assert ref.statistics().processed == 2

    sim(main)


def test_messages_to_a_stopped_actor_are_dead_letters() -> None:
    async def main() -> None:
        with capture_logs() as logs:
            async with Runtime() as rt:
                ref = await rt.spawn(Worker, name="gone", mailbox_capacity=2)
                await rt.stop(ref)
                assert not ref.alive
                await ref.tell(Ping(1))
                ref.tell_nowait(Ping(2))
                with pytest.raises(ActorStopped, match="'gone'"):
                    await ref.ask(Ping(3))
                assert rt.dead_letters == 2
                assert ref.statistics().dropped == 2
                assert [e.detail for e in rt.trace.events("dead_letter")] == ["Ping", "Ping"]
        assert [e["actor"] for e in logs if e["event"] == "message.dead_letter"] == [
            "gone", "gone"]

    sim(main)


def test_queued_asks_fail_with_actor_stopped_when_the_actor_stops_for_good() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="w")
            await ref.tell(Sleep(5))
            pending = asyncio.create_task(ref.ask(Ping(1), timeout=60))
            await asyncio.sleep(1)
            await rt.stop(ref)  # Sleep finishes at t=5, Ping(1) is never handled
            with pytest.raises(ActorStopped, match=r"'w' is stopped \(Ping not handled\)"):
                await pending
            assert rt.now() == 5.0

    sim(main)


def test_statistics_count_received_processed_and_high_water() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker, name="w", mailbox_capacity=10)
            await ref.tell(Sleep(1))
            await asyncio.sleep(0.5)  # Sleep taken: the next five wait in the mailbox
            for n in range(4):
                await ref.tell(Ping(n))
            await ref.tell(Crash())
            await asyncio.sleep(2)
            stats = ref.statistics()
            assert stats.name == "w"
            assert stats.received == 6
            assert stats.processed == 5
            assert stats.crashed == 1
            assert stats.restarted == 1
            assert stats.mailbox_depth == 0
            assert stats.mailbox_high_water == 5
            assert [s.name for s in rt.statistics()] == ["w"]

    sim(main)


class Echo(Actor[Message]):
    async def receive(self, msg: Message) -> object:
        return msg


def test_statistics_are_a_snapshot() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Echo)
            before = ref.statistics()
            await ref.ask(Ping())
            assert before.processed == 0
            assert ref.statistics().processed == 1
            with pytest.raises(AttributeError):
                before.processed = 3  # type: ignore[misc]

    sim(main)


_ = Probe
