"""Measured: with retention, a long run at a steady rate keeps the store's size bounded.

Each system runs in simulated time on a sqlite store at a constant rate with
a short retention. After a warm-up of twice the retention, the store's size
(the database file plus its WAL, ``Store.size``) is taken when 1x records
have been appended, and again at 4x: it must be at most 1.5x the first. An
unbounded store would be about 4x (the second test shows what the same run
keeps without retention, so the bound is not met by accident). The WAL is
bounded by ``wal_pages`` whatever retention does (16 MiB by default); the
runs use 256 pages (1 MiB) so that a short run's retained data, not the
WAL's fixed allowance, is what is measured.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import runtime
from actors.logdelivery import LogRetention, LogService, SessionSettings
from actors.stream import CallableDestination, GeneratedSource, StreamConfig, StreamJob
from runtime import Runtime
from tests.stream_helpers import quiet_logs

RETENTION = 2.0
FIRST, SECOND = 2 * RETENTION, 8 * RETENTION
WAL = "?wal_pages=256"
"""Simulated seconds at which 1x and 4x the records have been appended."""


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def stream_sizes(db: Path, retention: float) -> tuple[int, int]:
    rate = 4000.0
    config = StreamConfig(
        source=GeneratedSource(records=int(rate * (SECOND + 1)), payload_bytes=200),
        partitions=4, workers=2, batch_size=500, produce_chunk=200, rate=rate,
        retention=retention)

    async def main() -> tuple[int, int]:
        async with Runtime(store=f"sqlite:///{db}{WAL}", seed=1) as rt:
            job = StreamJob(rt, config, destination=CallableDestination(lambda batch: None))
            await job.start()
            await rt.sleep(FIRST)
            first = (await rt.store.size()).bytes
            await rt.sleep(SECOND - FIRST)
            second = (await rt.store.size()).bytes
            assert job.metrics.committed_records >= 0.9 * rate * SECOND
            await job.close()
            return first, second

    return runtime.run(main, simulated=True, seed=1)


def log_sizes(db: Path, retention: float) -> tuple[int, int]:
    rate, batch = 4000, 200
    settings = SessionSettings(ack_wait=1.0, max_in_flight=5000, max_deliveries=0, ttl=60.0)

    async def main() -> tuple[int, int]:
        async with Runtime(store=f"sqlite:///{db}{WAL}", seed=1) as rt:
            service = LogService(rt, defaults=settings,
                                 retention=LogRetention(time=retention))
            log = await service.log("events")
            session = await log.create_session("earliest")
            payload = bytes(200)

            async def produce() -> None:
                index = 0
                while True:
                    await log.append([(f"k{index + i}", payload) for i in range(batch)])
                    index += batch
                    await rt.sleep(batch / rate)

            async def consume() -> None:
                while True:
                    got = await log.read(session, 1000, 0.1)
                    if got.records:
                        await log.ack(session, [(r.seq, r.delivery) for r in got.records])

            tasks = [asyncio.ensure_future(produce()), asyncio.ensure_future(consume())]
            await rt.sleep(FIRST)
            first = (await rt.store.size()).bytes
            await rt.sleep(SECOND - FIRST)
            second = (await rt.store.size()).bytes
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await service.close()
            return first, second

    return runtime.run(main, simulated=True, seed=1)


@pytest.mark.parametrize("system", [stream_sizes, log_sizes], ids=["stream", "log"])
def test_the_store_stays_bounded_at_a_steady_rate(
        system: object, tmp_path: Path) -> None:
    first, second = system(tmp_path / "state.db", RETENTION)  # type: ignore[operator]
    assert second <= 1.5 * first, (first, second)


@pytest.mark.parametrize("system", [stream_sizes, log_sizes], ids=["stream", "log"])
def test_without_retention_the_same_run_grows(system: object, tmp_path: Path) -> None:
    first, second = system(tmp_path / "state.db", 24 * 3600.0)  # type: ignore[operator]
    assert second > 2.5 * first, (first, second)
