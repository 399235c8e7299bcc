"""The postgresql store across real OS processes, and under a database restart.

Each child is a Python process with a store of its own on the session's
throwaway server, driven over stdin/stdout one JSON command per line, so
the test decides the interleaving. Children use ``time.time``: leases are
judged by the database's clock. Real time, a few seconds per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime._errors import StoreError
from runtime.store import Append, open_store
from tests._postgres import ThrowawayPostgres
from tests.scenario_helpers import rerun_to_completion, shardline_command
from tests.test_log_http import Server, b64

pytestmark = pytest.mark.real_processes

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

CHILD = r"""
import asyncio, json, random, sys, time
from runtime._errors import StaleFencingToken
from runtime.store import Append, Fence, Put, open_store

async def contend(store, me, seconds):
    grants = writes = stale = 0
    rng = random.Random(me)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        lease = await store.acquire("lease/contended", me, 0.15)
        if lease is None:
            await asyncio.sleep(0.005)
            continue
        grants += 1
        for _ in range(rng.randint(1, 5)):
            try:
                await store.write([Append("contended", [(me, b"%d" % lease.token)])],
                                  fence=Fence("lease/contended", lease.token))
                writes += 1
            except StaleFencingToken:
                stale += 1
                break
            await asyncio.sleep(rng.choice([0.0, 0.01, 0.2]))  # 0.2 > ttl: may be ousted
    return {"grants": grants, "writes": writes, "stale": stale}

async def main():
    store = await open_store(sys.argv[1], clock=time.time)
    me = sys.argv[2]
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        command, *args = json.loads(line)
        if command == "acquire":
            lease = await store.acquire(args[0], me, args[1])
            answer = None if lease is None else lease.token
        elif command == "put":
            try:
                result = await store.write([Put(args[0], args[1].encode())],
                                           fence=Fence(args[2], args[3]))
                answer = result.versions[args[0]]
            except StaleFencingToken as refused:
                answer = f"stale: {refused}"
        elif command == "get":
            found = await store.get(args[0])
            answer = None if found is None else found.value.decode()
        elif command == "contend":
            answer = await contend(store, me, args[0])
        else:
            break
        print(json.dumps(answer), flush=True)
    await store.close()

asyncio.run(main())
"""


class Child:
    """One store-holding process; ``ask`` sends a command and returns its answer."""

    def __init__(self, url: str, name: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, url, name], env=ENV,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        assert self.read() == "ready"

    def read(self) -> Any:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            assert self.proc.stderr is not None
            raise AssertionError(f"child died: {self.proc.stderr.read()}")
        return json.loads(line)

    def send(self, *command: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def ask(self, *command: object) -> Any:
        self.send(*command)
        return self.read()

    def close(self) -> None:
        self.send("exit")
        self.proc.wait(timeout=30)


def test_processes_see_each_other_exclude_on_leases_and_fence_the_ousted(
    postgres_url: Callable[..., str]
) -> None:
    url = postgres_url()
    alice, bob = Child(url, "alice"), Child(url, "bob")
    try:
        token = alice.ask("acquire", "lease/p0", 30)
        assert token == 1
        assert bob.ask("acquire", "lease/p0", 30) is None  # excluded
        assert alice.ask("put", "checkpoint", "from alice", "lease/p0", token) == 1
        assert bob.ask("get", "checkpoint") == "from alice"  # sees the committed write

        async def revoke() -> None:  # a third process's view: expire alice's lease now
            async with await open_store(url, clock=time.time) as admin:
                assert await admin.revoke("lease/p0")

        asyncio.run(revoke())
        taken = bob.ask("acquire", "lease/p0", 30)
        assert taken == 2
        refused = alice.ask("put", "checkpoint", "late alice", "lease/p0", token)
        assert refused.startswith("stale: ") and "newest token granted for that lease is 2" \
            in refused
        assert bob.ask("put", "checkpoint", "from bob", "lease/p0", taken) == 2
        assert alice.ask("get", "checkpoint") == "from bob"
    finally:
        alice.close()
        bob.close()


def test_contending_processes_never_interleave_fenced_writes(
    postgres_url: Callable[..., str]
) -> None:
    """Three processes grab a 150 ms lease, write under it, and sometimes stall past
    its expiry. Every accepted write is in the log; read in seq order, the tokens
    never go down and each token belongs to one owner: no two holders overlapped."""
    url = postgres_url()
    children = [Child(url, name) for name in ("p1", "p2", "p3")]
    try:
        for child in children:
            child.send("contend", 2.5)
        stats = [child.read() for child in children]
    finally:
        for child in children:
            child.close()

    async def history() -> list[tuple[str, int]]:
        async with await open_store(url, clock=time.time) as store:
            return [(e.key, int(e.payload)) for e in await store.read("contended", 0, 10**6)]

    entries = asyncio.run(history())
    assert len(entries) == sum(s["writes"] for s in stats)
    tokens = [token for _, token in entries]
    assert tokens == sorted(tokens)
    owners: dict[int, set[str]] = {}
    for owner, token in entries:
        owners.setdefault(token, set()).add(owner)
    assert all(len(names) == 1 for names in owners.values()), owners
    assert sum(1 for s in stats if s["grants"]) >= 2, stats  # the lease really changed hands
    assert sum(s["stale"] for s in stats) >= 1, stats  # and an ousted holder was refused


KILLED = """
import asyncio, sys, time
from runtime.store import Append, open_store

async def main() -> None:
    store = await open_store(sys.argv[1], clock=time.time)
    for batch in range(10**9):
        entries = [(f"b{batch}", b"%d" % i) for i in range(10)]
        results = await asyncio.gather(*[store.write([Append("events", entries)])
                                         for _ in range(3)])
        print(max(r.first_seqs["events"] for r in results) + 9, flush=True)

asyncio.run(main())
"""


def test_sigkill_loses_nothing_acknowledged(postgres_url: Callable[..., str]) -> None:
    import signal

    url = postgres_url()
    child = subprocess.Popen([sys.executable, "-c", KILLED, url], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, env=ENV, text=True)
    assert child.stdout is not None and child.stderr is not None
    acknowledged: list[int] = []
    while len(acknowledged) < 100:
        line = child.stdout.readline()
        if not line:
            child.wait()
            raise AssertionError(f"child exited early: {child.stderr.read()}")
        acknowledged.append(int(line))
    os.kill(child.pid, signal.SIGKILL)
    rest, _ = child.communicate()
    acknowledged += [int(line) for line in rest.split("\n")[:-1]]

    async def check() -> None:
        async with await open_store(url, clock=time.time) as store:
            high_water = await store.high_water("events")
            assert high_water > max(acknowledged)
            assert high_water % 10 == 0  # a write is all there or not at all
            entries = await store.read("events", 0, high_water + 1)
            assert [e.seq for e in entries] == list(range(high_water))
            batches = [entries[i:i + 10] for i in range(0, high_water, 10)]
            assert all(len({e.key for e in batch}) == 1 for batch in batches)

    asyncio.run(check())


# -- a database restart mid-run ---------------------------------------------------------

SCENARIO = """
[scenario]
name = "stream-pg-restart"
seed = 11
clock = "real"
timeout = "60s"

[stream]
partitions = 4
workers = 2
batch_size = 100
lease_ttl = "1s"
rate = 2500.0
produce_chunk = 100
source = { records = 8000, keys = 100, payload_bytes = 32 }
destination = "dir://{out}/sink"
"""


@pytest.fixture(scope="module")
def restartable() -> Iterator[ThrowawayPostgres]:
    """A server of this module's own, so restarting it disturbs no other test."""
    with ThrowawayPostgres() as server:
        yield server


def test_a_database_restart_fails_calls_then_the_pool_reconnects_and_a_rerun_resumes(
    restartable: ThrowawayPostgres, tmp_path: Path,
) -> None:
    """``pg_ctl restart -m immediate`` (a crash: no shutdown checkpoint) while a store
    writes and while ``shardline run`` runs. Calls fail with ``StoreError`` while the
    server is down; the same store works again afterwards; every acknowledged write
    is there; rerunning the interrupted scenario resumes it to exactly-once."""
    server = restartable
    url = server.url("restarted")
    acknowledged: list[str] = []
    failures: list[Exception] = []

    async def write_through_restart() -> list[str]:
        store = await open_store(url, clock=time.time)
        restarted = threading.Event()

        def restart() -> None:
            server.pg_ctl("restart", "-m", "immediate")
            restarted.set()

        i = 0
        while not restarted.is_set() or len(acknowledged) < 20 + len(failures):
            try:
                await store.write([Append("events", [(f"e{i}", b"x")])])
                acknowledged.append(f"e{i}")
            except Exception as exc:  # every failure must be a StoreError
                failures.append(exc)
                await asyncio.sleep(0.02)
            i += 1
            if i == 50:
                threading.Thread(target=restart).start()
        keys = [e.key for e in await store.read("events", 0, 10**6)]
        await store.close()
        return keys

    stored = asyncio.run(write_through_restart())
    assert failures, "no call failed: the restart did not land while writing"
    assert all(isinstance(f, StoreError) for f in failures), failures
    assert all(f"port {server.port}" in str(f) for f in failures)
    assert set(acknowledged) <= set(stored)

    scenario = tmp_path / "restart.toml"
    scenario.write_text(SCENARIO)
    out = tmp_path / "out"
    command = [*shardline_command(), "run", str(scenario), "--out", str(out),
               "--store", server.url("scenario"), "--json"]
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=ENV, cwd=tmp_path, text=True)
    deadline = time.monotonic() + 60
    while not (out / "sink").exists() or not any((out / "sink").iterdir()):
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    server.pg_ctl("restart", "-m", "immediate")
    first.communicate(timeout=120)
    report = rerun_to_completion(command, ENV, tmp_path)
    held = {i["name"]: i["held"] for i in report["invariants"]}
    assert held["exactly_once"] and held["order"] and held["no_stale_commit"]


def test_log_delivery_over_http_answers_503_while_the_database_is_down(
    restartable: ThrowawayPostgres,
) -> None:
    server = Server(restartable.url("served"), "--token", "t0k")
    body = [{"key": "k", "payload_b64": b64(b"p")}]
    try:
        with server.client("t0k") as http:
            assert http.post("/logs/orders/records", json=body).status_code == 201
            restartable.pg_ctl("stop", "-m", "immediate")
            down = http.post("/logs/orders/records", json=body)
            assert down.status_code == 503, down.text
            assert down.json()["error"] and restartable.password not in down.text
            restartable.pg_ctl("start")
            statuses = []
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                statuses.append(http.post("/logs/orders/records", json=body).status_code)
                if statuses[-1] == 201:
                    break
                time.sleep(0.1)
            assert statuses[-1] == 201 and set(statuses) <= {201, 503}, statuses
    finally:
        if not (restartable.data / "postmaster.pid").exists():
            restartable.pg_ctl("start")
        assert server.stop() == 0
