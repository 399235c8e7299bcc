"""Idempotent appends: a retry under the same key stores nothing new (``_appends``)."""

from __future__ import annotations

import base64
import contextlib
from pathlib import Path

import pytest

from actors.logdelivery import (
    Appended,
    BadRequest,
    IdempotencyKeyReused,
    LogRetention,
    LogServer,
    LogService,
    LogUnavailable,
    SessionNotFound,
    open_log,
)
from actors.logdelivery import _keys as keys
from runtime import InjectedFault, Runtime, StoreError
from runtime.scenario import Duration
from runtime.store import Append, Delete, Fence, Put, WriteResult
from runtime.store._types import WriteOp
from tests.test_log_http import TOKEN, Server
from tests.test_log_server import entries, sim, store_url

__all__ = ["store_url"]  # the fixture, imported

async def whole_log(rt: Runtime, log: str) -> list[bytes]:
    return [e.payload for e in await rt.store.read(keys.records_log(log), 0, 10_000)]


def test_a_repeated_key_is_answered_with_the_first_append(store_url: str) -> None:
    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await open_log(rt, "orders")
            await log.append(entries(0, 3))
            first = await log.append(entries(3, 4), idempotency_key="batch-3")
            assert first == Appended(3, 4)
            assert await log.append(entries(3, 4), idempotency_key="batch-3") == first
            assert await log.append(entries(7, 1), idempotency_key="batch-7") == Appended(7, 1)
            with pytest.raises(IdempotencyKeyReused, match=r"batch-3.*at seq 3, 4 records"):
                await log.append(entries(8, 4), idempotency_key="batch-3")
            with pytest.raises(BadRequest, match="idempotency key 'a b'"):
                await log.append(entries(8, 1), idempotency_key="a b")
            assert await whole_log(rt, "orders") == [p for _, p in entries(0, 8)]
    sim(main)


def test_a_retry_after_a_crash_between_commit_and_reply_appends_once(
        store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server dies after committing, the client hears 'unavailable' and retries:
    without a key the records would be in the log twice."""
    original = LogServer.fault_point
    crashed: list[str] = []

    async def point(self: LogServer, where: str = "") -> None:
        if where.startswith("after an append was committed") and not crashed:
            crashed.append(where)
            raise InjectedFault("crash after the commit, before the reply")
        await original(self, where)

    monkeypatch.setattr(LogServer, "fault_point", point)

    async def main() -> None:
        async with Runtime(store=store_url) as rt:
            log = await LogService(rt).log("orders")
            with pytest.raises(LogUnavailable, match="crash after the commit"):
                await log.append(entries(0, 5), idempotency_key="batch-0")
            await rt.sleep(0.1)  # the supervisor restarts the server from the store
            assert await log.append(entries(0, 5), idempotency_key="batch-0") == Appended(0, 5)
            assert await log.append(entries(5, 2), idempotency_key="batch-5") == Appended(5, 2)
            assert await whole_log(rt, "orders") == [p for _, p in entries(0, 7)]
    sim(main)
    assert crashed


def test_keys_survive_a_restart_and_expire_after_their_window(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/log.db"
    retention = LogRetention(idempotency_window=Duration(60.0))

    async def first() -> None:
        async with Runtime(store=url) as rt:
            log = await LogService(rt, retention=retention).log("orders")
            assert await log.append(entries(0, 2), idempotency_key="a") == Appended(0, 2)

    async def second() -> None:
        async with Runtime(store=url) as rt:
            log = await LogService(rt, retention=retention).log("orders")
            assert await log.append(entries(0, 2), idempotency_key="a") == Appended(0, 2)
            await rt.sleep(30.0)
            await log.append(entries(2, 1), idempotency_key="b")
            await rt.sleep(31.0)  # "a" is 61 s old, "b" 31 s
            await log.append(entries(3, 1))  # a retention pass deletes what expired
            assert await rt.store.get(keys.append_key("orders", "a")) is None
            assert await rt.store.get(keys.append_key("orders", "b")) is not None
            assert await log.append(entries(2, 1), idempotency_key="b") == Appended(2, 1)
            # past its window a key is free again: this is a new append
            assert await log.append(entries(0, 2), idempotency_key="a") == Appended(4, 2)

    sim(first)
    sim(second)


def test_the_idempotency_window_must_be_positive() -> None:
    assert LogRetention(idempotency_window=Duration(0.0)).problems() == [
        ("retention.idempotency_window", "expected a duration > 0")]


def test_over_http_the_idempotency_key_header_makes_a_retry_safe(tmp_path: Path) -> None:
    srv = Server(f"sqlite:///{tmp_path}/state.db", "--token", TOKEN)
    try:
        with srv.client() as http:
            body = [{"key": f"k{i}", "payload_b64": base64.b64encode(b"p%d" % i).decode()}
                    for i in range(3)]
            headers = {"Idempotency-Key": "order-42"}
            r1 = http.post("/logs/orders/records", json=body, headers=headers)
            r2 = http.post("/logs/orders/records", json=body, headers=headers)
            assert (r1.status_code, r2.status_code) == (201, 201)
            assert r1.json() == r2.json() == {"first_seq": 0, "count": 3}
            r3 = http.post("/logs/orders/records", json=body[:1], headers=headers)
            assert r3.status_code == 422 and r3.json()["error"] == "idempotency_key_reused"
            r4 = http.post("/logs/orders/records", json=body,
                           headers={"Idempotency-Key": "no spaces"})
            assert r4.status_code == 400 and "idempotency key" in r4.json()["detail"]
            assert http.post("/logs/orders/records", json=body).json()["first_seq"] == 3
    finally:
        assert srv.stop() == 0


def test_a_scenario_with_a_bad_idempotency_window_exits_2_naming_the_field(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from runtime.cli import main as shardline

    text = (Path(__file__).resolve().parent.parent / "scenarios" / "log_quickstart.toml"
            ).read_text()
    path = tmp_path / "bad.toml"
    path.write_text(text.replace("[log]\n", '[log]\nretention = { idempotency_window = "0s" }\n'))
    assert shardline(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: log.retention.idempotency_window: expected a duration > 0" in err
    assert "Traceback" not in err


def test_a_failed_key_expiry_still_forgets_the_sessions_the_pass_deleted() -> None:
    """Retention deletes an expired session, then the keys past their window; when
    that second write fails, the server must still forget the deleted session (else
    it serves it from its cache: 'unavailable' instead of 'no such session')."""
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            retention = LogRetention(idempotency_window=Duration(1.0))
            log = await LogService(rt, retention=retention).log("orders")
            session = await log.create_session(ttl=5.0)
            await log.append(entries(0, 1), idempotency_key="a")
            real = rt.store.write

            async def write(ops: list[WriteOp], *, fence: Fence | None = None) -> WriteResult:
                if any(isinstance(op, Delete) and "/appends/" in op.key for op in ops):
                    raise StoreError("disk full")
                return await real(ops, fence=fence)

            rt.store.write = write  # type: ignore[method-assign]
            await rt.sleep(11.0)  # the session idled past twice its ttl, "a" its window
            await log.append(entries(1, 1))  # a retention pass
            assert await rt.store.get(keys.session_key("orders", session)) is None
            with pytest.raises(SessionNotFound):
                await log.read(session)
    sim(main)


def test_after_an_append_of_unknown_outcome_a_key_still_records_where_its_records_went(
) -> None:
    """A store error may leave a write's outcome unknown (a connection lost during
    COMMIT). After such an append did apply, the server's high water was stale: a keyed
    append recorded the seq it expected, then corrected it in a second write; when that
    write failed too (the log moved, say), the key kept the wrong seq for good and a
    retry was answered with other records' position."""
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            log = await open_log(rt, "orders")
            real = rt.store.write
            lost: list[str] = []

            async def write(ops: list[WriteOp], *, fence: Fence | None = None) -> WriteResult:
                first = ops[0]
                if isinstance(first, Append) and len(ops) == 1 and not lost:
                    lost.append("applied, the answer lost")
                    await real(ops, fence=fence)
                    raise StoreError("connection lost during COMMIT: outcome unknown")
                if isinstance(first, Put) and "/appends/" in first.key \
                        and first.expect_version is None:
                    raise StoreError("the correction lost")
                return await real(ops, fence=fence)

            rt.store.write = write  # type: ignore[method-assign]
            with pytest.raises(LogUnavailable, match="outcome unknown"):
                await log.append(entries(0, 2))
            with contextlib.suppress(LogUnavailable):
                await log.append(entries(2, 1), idempotency_key="k")
            assert await log.append(entries(2, 1), idempotency_key="k") == Appended(2, 1)
            assert await whole_log(rt, "orders") == [p for _, p in entries(0, 3)]
    sim(main)
