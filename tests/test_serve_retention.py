"""``shardline serve --retention-time/--retention-bytes/--retention-acked``: what the logs
a server creates keep, alone (a real process) and as one of a cluster (simulated)."""

from __future__ import annotations

import asyncio
import base64
import subprocess
import time

import httpx
import msgspec
import pytest

from actors.logdelivery import LogRetention, LogService, create_app
from actors.logdelivery._entity import LogRecipe, LogServerEntity
from actors.logdelivery._keys import recipe_key
from runtime import run
from runtime.cluster import SimulatedNetwork
from tests.cluster_helpers import SimCluster, shared_memory_store
from tests.test_log_http import SHARDLINE, Server, append, session

RECORDS = [{"key": f"k{i}", "payload_b64": base64.b64encode(f"p{i}".encode()).decode()}
           for i in range(10)]  # 4 bytes of key and payload each


def _earliest(http: httpx.Client, log: str) -> int:
    r = http.post(f"/logs/{log}/sessions", json={"start": "earliest"})
    assert r.status_code == 201, r.text
    return int(r.json()["start_seq"])


@pytest.mark.real_processes
def test_retention_bytes_drops_the_oldest_appends_of_a_new_log() -> None:
    srv = Server("memory://", "--retention-bytes", "20")
    try:
        with srv.client(token=None) as http:
            append(http, "orders", 10)  # one append of 40 bytes: over the limit, all of it
            assert _earliest(http, "orders") == 10
    finally:
        assert srv.stop() == 0


@pytest.mark.real_processes
def test_retention_acked_drops_what_every_session_acknowledged() -> None:
    srv = Server("memory://", "--retention-time", "none", "--retention-acked")
    try:
        with srv.client(token=None) as http:
            sid = session(http, "orders", start="earliest", ack_wait=30)
            append(http, "orders", 5)
            r = http.get(f"/logs/orders/sessions/{sid}/records", params={"max": 5})
            receipts = [[rec["seq"], rec["delivery"]] for rec in r.json()["records"]]
            assert http.post(f"/logs/orders/sessions/{sid}/ack",
                             json={"receipts": receipts}).json()["floor"] == 5
            time.sleep(0.3)  # a retention pass runs at most every 0.25 s (wall clock)
            append(http, "orders", 1, start=5)  # its pass drops what the session settled
            assert _earliest(http, "orders") == 5
    finally:
        assert srv.stop() == 0


@pytest.mark.parametrize(("flags", "expected"), [
    (["--retention-time", "5x"], "--retention-time: expected a duration such as"),
    (["--retention-time=-1s"], "--retention-time: expected a duration such as"),
    (["--retention-bytes", "0"], "--retention-bytes: expected a whole number of bytes >= 1"),
    (["--retention-bytes", "lots"], "--retention-bytes: expected a whole number of bytes"),
    (["--idempotency-window", "0s"], "--idempotency-window: expected a duration > 0"),
    (["--idempotency-window", "soon"], "--idempotency-window: expected a duration such as"),
])
def test_a_bad_retention_flag_exits_2_naming_it(flags: list[str], expected: str) -> None:
    bad = subprocess.run([SHARDLINE, "serve", "--store", "memory://", "--port", "0", *flags],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2, bad.stderr
    assert expected in bad.stderr and "Traceback" not in bad.stderr


async def _cluster_logs() -> dict[str, object]:
    store = await shared_memory_store()
    cluster = SimCluster(SimulatedNetwork(), store, lease_ttl=1.0)
    clients: dict[str, httpx.AsyncClient] = {}
    kept = {"n1": LogRetention(bytes=20), "n2": LogRetention()}
    for name in ("n1", "n2"):
        rt = await cluster.start(name, hosts=False)
        rt.register_entity(LogServerEntity)
        service = LogService(rt, on_nodes=True, retention=kept[name], offer_recipes=True)
        clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(service)),
                                          base_url="http://test")
    await asyncio.sleep(1.0)  # both in each other's view of the membership
    found: dict[str, object] = {}
    for creator, other, log in (("n1", "n2", "small"), ("n2", "n1", "large")):
        r = await clients[creator].post(f"/logs/{log}/records", json=RECORDS)
        assert r.status_code == 201, r.text
        r = await clients[other].post(f"/logs/{log}/sessions", json={"start": "earliest"})
        stored = await store.get(recipe_key(log))
        assert stored is not None
        recipe = msgspec.msgpack.decode(stored.value, type=LogRecipe)
        found[log] = (recipe.retention(), r.json()["start_seq"])
    for c in clients.values():
        await c.aclose()
    await cluster.stop()
    return found


def test_on_a_cluster_the_server_that_creates_a_log_sets_what_it_keeps() -> None:
    found = run(_cluster_logs, simulated=True, seed=4)
    small_retention, small_start = found["small"]  # type: ignore[misc]
    assert small_retention == LogRetention(bytes=20)
    assert small_start == 10  # its one append of 40 bytes dropped
    assert found["large"] == (LogRetention(), 0)  # n2's defaults: 24 h, no byte limit
