"""Log delivery retention: by time, bytes or acknowledgement; expired sessions deleted;
a session behind the floor told so (410 with the floor); the checks still see it all.

Everything runs in simulated time through the public API (``LogService``, the
ASGI app, ``shardline run``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

import runtime
from actors.logdelivery import (
    LogRetention,
    LogService,
    RecordsTruncated,
    SessionExpired,
    SessionNotFound,
    SessionSettings,
    create_app,
)
from actors.logdelivery import _keys as keys
from runtime import Runtime
from runtime.cli import main as shardline
from runtime.store import without_faults

SETTINGS = SessionSettings(ack_wait=5.0, max_in_flight=1000, max_deliveries=0, ttl=60.0)


def sim(main: Callable[[], Awaitable[None]]) -> None:
    runtime.run(main, simulated=True, seed=1)


def entries(start: int, count: int) -> list[tuple[str, bytes]]:
    return [(f"k{i}", f"payload-{i}".encode()) for i in range(start, start + count)]


async def read_and_ack(log: object, session: str, count: int) -> list[int]:
    got = await log.read(session, count)  # type: ignore[attr-defined]
    seqs = [r.seq for r in got.records]
    await log.ack(session, [(seq, 1) for seq in seqs])  # type: ignore[attr-defined]
    return seqs


def test_time_retention_truncates_and_a_lagging_session_is_told_the_floor() -> None:
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            service = LogService(rt, defaults=SETTINGS, retention=LogRetention(time=10.0))
            log = await service.log("orders")
            ahead, behind = await log.create_session("earliest"), \
                await log.create_session("earliest")
            await log.append(entries(0, 10))
            assert await read_and_ack(log, ahead, 100) == list(range(10))
            await rt.sleep(11)
            await log.append(entries(10, 5))  # the first ten are now older than 10 s
            assert await rt.store.floor(keys.records_log("orders")) == 10
            with pytest.raises(RecordsTruncated) as gone:
                await log.read(behind, 100)
            assert gone.value.floor == 10
            assert "seq 0" in str(gone.value) and "'earliest' (seq 10)" in str(gone.value)
            assert await read_and_ack(log, ahead, 100) == list(range(10, 15))
            fresh = await log.create_session("earliest")
            assert [r.seq for r in (await log.read(fresh, 100)).records] == list(range(10, 15))
            with pytest.raises(RecordsTruncated):
                await log.create_session(3)
            await service.close()

    sim(main)


def test_acked_retention_drops_what_every_live_session_settled() -> None:
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            service = LogService(rt, defaults=SETTINGS,
                                 retention={"orders": LogRetention(acked=True)})
            log = await service.log("orders")
            first, second = await log.create_session("earliest"), \
                await log.create_session("earliest")
            await log.append(entries(0, 10))
            await read_and_ack(log, first, 100)
            await rt.sleep(1)
            await log.append(entries(10, 2))
            floor = keys.records_log("orders")
            assert await rt.store.floor(floor) == 0  # the second session still needs them
            assert await read_and_ack(log, second, 6) == list(range(6))
            await rt.sleep(1)
            await read_and_ack(log, first, 100)
            assert await rt.store.floor(floor) == 6
            assert service.retention_of("other") == LogRetention()  # only orders is acked
            await service.close()

    sim(main)


def test_bytes_retention_keeps_the_newest_appends_within_the_limit(tmp_path: Path) -> None:
    async def main() -> None:
        async with Runtime(store=f"sqlite:///{tmp_path / 'log.db'}") as rt:
            service = LogService(rt, defaults=SETTINGS, retention=LogRetention(bytes=300))
            log = await service.log("orders")
            size = sum(len(k) + len(p) for k, p in entries(0, 10))
            assert 100 < size < 300  # so the limit holds two appends of ten, not three
            for start in range(0, 50, 10):
                await log.append(entries(start, 10))
                await rt.sleep(1)
            await log.append(entries(50, 10))
            assert await rt.store.floor(keys.records_log("orders")) == 40
            await service.close()

    sim(main)


def test_expired_sessions_answer_expired_then_are_deleted_with_their_dead_letters() -> None:
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            short = SessionSettings(ack_wait=0.5, max_in_flight=100, max_deliveries=1, ttl=2.0)
            service = LogService(rt, defaults=short)
            log = await service.log("orders")
            await log.append(entries(0, 5))
            session = await log.create_session("earliest")
            await log.read(session, 5)
            await rt.sleep(1)
            await log.read(session, 5)  # deadline passed after the only delivery: dead
            dead = keys.dead_letter_log("orders", session)
            assert await rt.store.high_water(dead) == 1
            await rt.sleep(2.5)
            with pytest.raises(SessionExpired):
                await log.read(session, 5)
            await rt.sleep(2.5)  # expired for more than one more ttl
            await log.append(entries(5, 1))  # a retention pass runs after an append
            with pytest.raises(SessionNotFound, match="deleted one ttl after"):
                await log.read(session, 5)
            store = without_faults(rt.store)
            assert await store.get(keys.session_key("orders", session)) is None
            assert await store.floor(dead) == 1
            await service.close()

    sim(main)


def test_http_answers_410_truncated_with_the_floor() -> None:
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            service = LogService(rt, defaults=SETTINGS, retention=LogRetention(time=5.0))
            transport = httpx.ASGITransport(app=create_app(service))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                r = await client.post("/logs/web/sessions", json={"start": "earliest"})
                session = r.json()["session"]
                r = await client.post("/logs/web/records",
                                      json=[{"key": "k", "payload_b64": "cA=="}] * 4)
                assert r.status_code == 201, r.text
                await rt.sleep(6)
                r = await client.post("/logs/web/records",
                                      json=[{"key": "k", "payload_b64": "cA=="}])
                r = await client.get(f"/logs/web/sessions/{session}/records")
                assert r.status_code == 410, r.text
                body = r.json()
                assert (body["error"], body["floor"]) == ("truncated", 4)
                assert "seq 4" in body["detail"]
            await service.close()

    sim(main)


SCENARIO = """
[scenario]
name = "log-retention"
seed = 5
clock = "simulated"
store = "sqlite:///{{out}}/state.db"

[log]
records = 8000
sessions = 2
clients_per_session = 2
read_batch = 100
ack_wait = "500ms"
max_in_flight = 300
max_deliveries = 0
session_ttl = "2s"
append_batch = 100
append_rate = 2000.0
read_wait = "250ms"
process_time = "10ms"
idle_sessions = 2
retention = {{ acked = true }}

[[faults]]
kind = "crash"
target = "reader.*"
every = "400ms"

[[faults]]
kind = "crash"
target = "logserver.*"
every = "900ms"

[expect]
min_expired_sessions = 2
"""


def test_a_scenario_with_acked_retention_passes_every_check(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "retention.toml"
    path.write_text(SCENARIO.format())
    out = tmp_path / "out"
    code = shardline(["run", str(path), "--out", str(out), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["invariants"]
    assert all(i["held"] for i in report["invariants"])

    async def floor() -> int:
        async with Runtime(store=f"sqlite:///{out}/state.db") as rt:
            return await rt.store.floor(keys.records_log("events"))

    assert runtime.run(floor, simulated=True, seed=0) > 0
    assert (out / "audit" / "log-events.msgpack").stat().st_size > 0
