"""The log delivery embedding API, end to end, in simulated time, on each store backend."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

import runtime
from actors import logdelivery
from actors.logdelivery import (
    BadRequest,
    LogClient,
    LogService,
    LogUnavailable,
    NotDelivered,
    SessionExpired,
    SessionNotFound,
    SessionSettings,
    TooLarge,
    open_log,
)
from runtime import Fault, Runtime

T = TypeVar("T")


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path}/log.db"


def sim(main: Callable[[], Awaitable[T]], seed: int = 0) -> T:
    return runtime.run(main, simulated=True, seed=seed)


def entries(start: int, count: int) -> list[tuple[str, bytes]]:
    return [(f"k{i}", f"payload-{i}".encode()) for i in range(start, start + count)]


def seqs_of(result: object) -> list[tuple[int, int]]:
    return [(r.seq, r.delivery) for r in result.records]  # type: ignore[attr-defined]


def firsts(*seqs: int) -> list[tuple[int, int]]:
    """Receipts of the first delivery of ``seqs``."""
    return [(seq, 1) for seq in seqs]


def test_the_public_api_is_deliberate() -> None:
    assert sorted(logdelivery.__all__) == [
        "Acked", "Appended", "BadRequest", "DeadLetter", "Delivery", "IdempotencyKeyReused",
        "LogClient", "LogConfig",
        "LogDeliveryError", "LogExpect", "LogRetention", "LogServer", "LogServerEntity", "LogService",
        "LogSystem", "LogUnavailable", "NotDelivered", "ReadResult", "RecordsTruncated", "SYSTEM", "SessionCreated",
        "SessionExpired", "SessionInfo", "SessionNotFound", "SessionSettings", "TooLarge",
        "Unauthorized", "create_app", "open_log", "serve_command"]
    assert all(hasattr(logdelivery, name) for name in logdelivery.__all__)
    assert logdelivery.SYSTEM.section == "log"


def test_records_reach_a_session_in_order_and_acks_settle_them(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            appended = await log.append(entries(0, 10))
            assert (appended.first_seq, appended.count) == (0, 10)
            session = await log.create_session("earliest")
            assert re.fullmatch(r"[0-9a-f]{32}", session)
            first = await log.read(session, 4)
            assert [(r.seq, r.key, r.payload, r.delivery) for r in first.records] == [
                (i, f"k{i}", f"payload-{i}".encode(), 1) for i in range(4)]
            assert first.ack_deadline == rt.clock.wall() + SessionSettings().ack_wait
            assert seqs_of(await log.read(session, 100)) == [(i, 1) for i in range(4, 10)]
            assert seqs_of(await log.read(session, 100)) == []
            acked = await log.ack(session, firsts(0, 1, 2, 3, 5))
            assert (acked.acked, acked.floor, acked.in_flight) == (5, 4, 5)
            acked = await log.ack(session, firsts(4, *range(6, 10)))
            assert (acked.acked, acked.floor, acked.in_flight, acked.superseded) == (
                5, 10, 0, [])
            info = await log.describe(session)
            assert (info.delivered, info.acked, info.redelivered, info.high_water) == (
                10, 10, 0, 10)
    sim(main)


def test_unacked_records_come_back_after_ack_wait_and_not_before(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 6))
            session = await log.create_session(ack_wait=5.0)
            await log.read(session, 3)
            await log.ack(session, firsts(1))
            await rt.sleep(4.9)
            assert seqs_of(await log.read(session, 10)) == [(3, 1), (4, 1), (5, 1)]
            await rt.sleep(0.1)
            # 0 and 2 are due (redelivered first), 3..5 are not yet.
            assert seqs_of(await log.read(session, 10)) == [(0, 2), (2, 2)]
            assert (await log.describe(session)).redelivered == 2
    sim(main)


def test_a_waiting_read_wakes_when_a_record_is_appended(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            session = await log.create_session("latest")

            async def append_later() -> None:
                await rt.sleep(2.5)
                await log.append(entries(0, 1))

            task = asyncio.get_running_loop().create_task(append_later())
            started = rt.now()
            result = await log.read(session, 10, wait=30.0)
            assert seqs_of(result) == [(0, 1)]
            assert rt.now() - started == pytest.approx(2.5)
            await task
            started = rt.now()
            assert seqs_of(await log.read(session, 10, wait=3.0)) == []
            assert rt.now() - started == pytest.approx(3.0)
    sim(main)


def test_a_waiting_read_gets_a_redelivery_when_its_deadline_passes(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 2))
            session = await log.create_session(ack_wait=4.0)
            await log.read(session, 2)
            started = rt.now()
            assert seqs_of(await log.read(session, 10, wait=30.0)) == [(0, 2), (1, 2)]
            assert rt.now() - started == pytest.approx(4.0)
    sim(main)


def test_max_in_flight_holds_back_new_records_until_an_ack(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 10))
            session = await log.create_session(max_in_flight=3, ack_wait=60.0)
            assert seqs_of(await log.read(session, 10)) == [(0, 1), (1, 1), (2, 1)]

            async def ack_later() -> None:
                await rt.sleep(1.0)
                await log.ack(session, firsts(0, 1))

            task = asyncio.get_running_loop().create_task(ack_later())
            started = rt.now()
            assert seqs_of(await log.read(session, 10, wait=30.0)) == [(3, 1), (4, 1)]
            assert rt.now() - started == pytest.approx(1.0)  # woken by the ack, not polling
            await task
            assert (await log.describe(session)).in_flight_peak == 3
    sim(main)


def test_a_record_delivered_max_deliveries_times_is_dead_lettered(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 4))
            session = await log.create_session(max_deliveries=2, ack_wait=1.0, max_in_flight=2)
            got = []
            for _ in range(4):
                result = await log.read(session, 10, wait=5.0)
                got.append(seqs_of(result))
                await log.ack(session, [r for r in result.records if r.seq >= 2])
            assert got == [[(0, 1), (1, 1)], [(0, 2), (1, 2)], [(2, 1), (3, 1)], []]
            dead = await log.dead_letters(session)
            assert [(d.first, d.last, d.deliveries) for d in dead] == [(0, 1, 2)]
            info = await log.describe(session)
            assert (info.dead_lettered, info.floor, info.acked) == (2, 4, 2)
    sim(main)


def test_readers_sharing_a_session_never_hold_the_same_record(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            session = await log.create_session("earliest", ack_wait=60.0)
            seen: list[list[int]] = []

            async def reader() -> None:
                while sum(len(s) for s in seen) < 300:
                    result = await log.read(session, 7, wait=1.0)
                    seen.append([r.seq for r in result.records])
                    await log.ack(session, result.records)

            readers = [asyncio.get_running_loop().create_task(reader()) for _ in range(3)]
            for start in range(0, 300, 50):
                await log.append(entries(start, 50))
                await rt.sleep(0.01)
            await asyncio.gather(*readers)
            flat = [seq for batch in seen for seq in batch]
            assert sorted(flat) == list(range(300))  # each record to exactly one reader
            assert (await log.describe(session)).redelivered == 0
    sim(main, seed=3)


def test_sessions_start_where_asked(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 5))
            latest = await log.create_session("latest")
            at_three = await log.create_session(3)
            await log.append(entries(5, 2))
            assert seqs_of(await log.read(latest, 10)) == [(5, 1), (6, 1)]
            assert seqs_of(await log.read(at_three, 10)) == [(i, 1) for i in range(3, 7)]
            with pytest.raises(NotDelivered):
                await log.ack(at_three, firsts(2))
            for bad in ("newest", -1, True, 2.5):
                with pytest.raises(BadRequest, match="start must be"):
                    await log.create_session(bad)  # type: ignore[arg-type]
    sim(main)


def test_an_idle_session_expires_with_a_clear_error(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 3))
            kept = await log.create_session(ttl=10.0)
            idle = await log.create_session(ttl=10.0)
            got = []
            for _ in range(5):
                await rt.sleep(4.0)
                got += seqs_of(await log.read(kept, 1))  # activity keeps it alive
            assert got == [(0, 1), (1, 1), (2, 1)]
            with pytest.raises(SessionExpired, match="idle for more than its ttl of 10 s"):
                await log.read(idle, 1)
            with pytest.raises(SessionExpired):
                await log.ack(idle, firsts(0))
            assert (await log.describe(idle)).expired
            assert not (await log.describe(kept)).expired
    sim(main)


def test_state_survives_a_process_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"

    async def first() -> str:
        async with Runtime(store=url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 10))
            session = await log.create_session(ack_wait=2.0)
            await log.read(session, 6)
            await log.ack(session, firsts(0, 1, 2))
            return session

    async def second(session: str) -> None:
        async with Runtime(store=url) as rt:
            log = await open_log(rt, "orders")
            # 3..5 are still in flight (not due yet); new records carry on at 6.
            assert seqs_of(await log.read(session, 3)) == [(6, 1), (7, 1), (8, 1)]
            await log.ack(session, firsts(6, 7, 8))
            await rt.sleep(2.0)
            assert seqs_of(await log.read(session, 10)) == [(3, 2), (4, 2), (5, 2), (9, 1)]
            assert (await log.describe(session)).acked == 6

    session = sim(first)
    sim(lambda: second(session))


def test_a_server_crash_loses_nothing_it_answered(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            service = LogService(rt)
            log = await service.log("orders")
            await log.append(entries(0, 20))
            session = await log.create_session(ack_wait=1.0)
            batch = await log.read(session, 5)
            rt.faults.install([Fault("crash", target="logserver.orders", at=rt.now())])
            await rt.sleep(0.001)
            with pytest.raises(LogUnavailable, match="injected crash"):
                await log.ack(session, batch.records)
            await rt.sleep(0.1)  # the supervisor restarts it; state comes from the store
            assert seqs_of(await log.read(session, 3)) == [(5, 1), (6, 1), (7, 1)]
            await log.ack(session, firsts(0, 1, 2, 3, 4))
            assert (await log.describe(session)).floor == 5
            assert rt.statistics()[0].restarted == 1
    sim(main)


def test_store_failures_are_unavailable_and_change_nothing(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 50))
            session = await log.create_session()
            rt.faults.install([Fault("store_error", target="store.*", probability=0.3)])
            delivered: list[int] = []
            failures = 0
            while len(delivered) < 50:
                try:
                    result = await log.read(session, 7)
                    delivered += [r.seq for r in result.records]
                    await log.ack(session, result.records)
                except LogUnavailable:
                    failures += 1
            assert failures > 0
            # a failed ack leaves its records in flight: they come back, nothing is lost
            assert sorted(set(delivered)) == list(range(50))
    sim(main, seed=4)


def test_bad_requests_are_refused_and_name_the_problem(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 3))
            session = await log.create_session()
            with pytest.raises(SessionNotFound, match="32 lowercase hex"):
                await log.read("not-a-session", 1)
            with pytest.raises(SessionNotFound, match="has no session"):
                await log.read("0" * 32, 1)
            for max_records, wait in ((0, 0.0), (10_001, 0.0), (1, -1.0), (1, 61.0)):
                with pytest.raises(BadRequest):
                    await log.read(session, max_records, wait)
            with pytest.raises(BadRequest, match=r"\[seq, delivery\] pairs .* at `\$\[0\]`"):
                await log.ack(session, [1])  # type: ignore[list-item]
            with pytest.raises(BadRequest, match=r"at `\$\[1\]\[0\]`"):
                await log.ack(session, [(0, 1), ("1", 1)])  # type: ignore[list-item]
            with pytest.raises(BadRequest, match=r"Expected `int` >= 1 - at `\$\[0\]\[1\]`"):
                await log.ack(session, [(0, 0)])
            with pytest.raises(BadRequest, match="Expected `int`, got `bool`"):
                await log.ack(session, [(0, True)])
            with pytest.raises(TooLarge, match="at most 10000 receipts"):
                await log.ack(session, firsts(*range(10_001)))
            with pytest.raises(NotDelivered, match="never delivered seq 0"):
                await log.ack(session, firsts(0))
            with pytest.raises(TooLarge):
                await log.append(entries(0, 10_001))
            with pytest.raises(BadRequest, match="pair"):
                await log.append([("k", "not bytes")])  # type: ignore[list-item]
            with pytest.raises(BadRequest, match="max_in_flight"):
                await log.create_session(max_in_flight=0)
            with pytest.raises(BadRequest, match="log name"):
                await LogService(rt).log("../etc")
            few = LogService(rt, max_logs=1, name="few")
            await few.log("one")
            with pytest.raises(TooLarge, match="at most 1 logs"):
                await few.log("two")
            assert seqs_of(await log.read(session, 5)) == [(0, 1), (1, 1), (2, 1)]
    sim(main)


def test_session_ids_replay_under_simulation_and_are_random_for_real() -> None:
    async def ids() -> list[str]:
        async with Runtime(store="memory://") as rt:
            log = await open_log(rt, "orders")
            return [await log.create_session() for _ in range(3)]

    simulated = [sim(ids, seed=7), sim(ids, seed=7), sim(ids, seed=8)]
    assert simulated[0] == simulated[1] != simulated[2]
    assert len(set(simulated[0])) == 3
    real = [runtime.run(ids), runtime.run(ids)]  # same (default) seed, real clock
    assert not set(real[0]) & set(real[1])


def test_waiting_readers_leave_nothing_behind(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            service = LogService(rt)
            log: LogClient = await service.log("orders")
            session = await log.create_session("latest")
            for _ in range(50):
                await log.read(session, 1, wait=0.2)
            cell = rt.lookup("logserver.orders")._cell
            server = cell.instance
            assert server is not None
            assert sum(len(w) for w in server.waiters.values()) == 0  # type: ignore[attr-defined]
    sim(main)


def test_a_late_ack_of_a_superseded_delivery_changes_nothing(store_url: str) -> None:
    """A slow reader's ack arrives after its records were handed to another reader:
    it must not free ``max_in_flight`` while the other reader holds them (issue #10)."""
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 10))
            session = await log.create_session(max_in_flight=4, ack_wait=1.0)
            slow = await log.read(session, 4)
            await rt.sleep(1.0)
            fresh = await log.read(session, 4)  # the other reader gets the redelivery
            assert seqs_of(fresh) == [(0, 2), (1, 2), (2, 2), (3, 2)]
            late = await log.ack(session, slow.records)
            assert (late.acked, late.in_flight, late.superseded) == (0, 4, [0, 1, 2, 3])
            assert seqs_of(await log.read(session, 4)) == []  # still 4 held: no room
            with pytest.raises(NotDelivered, match="seq 0 2 time"):
                await log.ack(session, [(0, 3)])
            done = await log.ack(session, fresh.records)
            assert (done.acked, done.floor, done.superseded) == (4, 4, [])
            assert seqs_of(await log.read(session, 4)) == [(i, 1) for i in range(4, 8)]
            info = await log.describe(session)
            assert (info.acked, info.in_flight_peak) == (4, 4)
    sim(main)
