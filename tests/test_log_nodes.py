"""Log delivery across nodes: the log server is a cluster entity, one owner per log.

Simulated: ``scenarios/log_node_kill.toml`` (node-3, which owns log ``events``,
killed twice and restarted) and random node kills by seed, every log invariant
checked. In process: the HTTP API of two nodes answers alike whichever holds the
log. Real: three ``shardline serve`` processes on one PostgreSQL store, a client
going through different ones, the owner SIGKILLed; and ``shardline run --nodes 3``
with node processes. Bad input: cluster options need a postgresql store and a secret.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from actors.logdelivery import LogService, create_app
from actors.logdelivery._entity import LogServerEntity
from runtime import run
from runtime.cli import main
from runtime.cluster import SimulatedNetwork
from runtime.cluster._membership import owner_node, rendezvous
from runtime.store import Store
from tests.cluster_helpers import SimCluster, shared_memory_store
from tests.scenario_helpers import shardline_command

ROOT = Path(__file__).resolve().parents[1]
LEASE = "entity/LogServerEntity/"


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    code = main(["run", *argv, "--json"])
    captured = capsys.readouterr()
    assert captured.out, captured.err
    report: dict[str, object] = json.loads(captured.out)
    failed = {i["name"]: i["detail"] for i in report["invariants"]  # type: ignore[attr-defined]
              if not i["held"]}
    assert code == 0 and not failed, failed
    return report


def test_the_log_sits_on_the_node_the_scenarios_kill() -> None:
    assert rendezvous("LogServerEntity", "events", ["node-1", "node-2", "node-3"]) == "node-3"


def test_killing_the_logs_simulated_node_moves_it_and_loses_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    file = str(ROOT / "scenarios" / "log_node_kill.toml")
    report = _run(capsys, file, "--out", str(tmp_path / "a"))
    held = {i["name"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert {"no_gaps", "at_least_once_in_order", "in_flight_bounded",
            "exercised_node_kills"} <= held
    nodes: dict[str, dict[str, int]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-3"]["kills"] == 2 and nodes["node-3"]["node_restarts"] == 2
    # each kill moved the log to a survivor; back, node-3 won it again
    assert sum(nodes[n]["activations"] for n in ("node-1", "node-2")) == 2
    assert nodes["node-3"]["activations"] == 1
    assert report["metrics"]["records_appended"] == 18000  # type: ignore[index]
    again = _run(capsys, file, "--out", str(tmp_path / "b"))
    assert again["trace_digest"] == report["trace_digest"]


RANDOM_KILLS = """[[faults]]
kind = "kill_node"
target = "node-*"
probability = 0.1
count = 4
restart_after = "2s"

[[faults]]
kind = "crash"
target = "reader.*"
every = "700ms"
"""


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_random_node_kills_by_seed_keep_every_log_invariant(
        seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Any node may die at any second (a draw per node per second), up to four times,
    while readers crash holding records: nothing acknowledged is lost, no gap."""
    text = (ROOT / "scenarios" / "log_node_kill.toml").read_text()
    text = text[:text.index("[[faults]]")] + RANDOM_KILLS + "\n" + text[text.index("[expect]"):]
    file = tmp_path / "random.toml"
    file.write_text(text.replace("node_kills = 2", "node_kills = 1"))
    report = _run(capsys, str(file), "--seed", str(seed), "--out", str(tmp_path / "out"))
    held = {i["name"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert {"no_gaps", "at_least_once_in_order", "no_client_offsets",
            "in_flight_bounded"} <= held
    nodes: dict[str, dict[str, int]] = report["nodes"]  # type: ignore[assignment]
    assert 1 <= sum(n["kills"] for n in nodes.values()) <= 4


PAUSES = """[[faults]]
kind = "pause_node"
target = "node-3"
every = "4s"
count = 2
duration = "5s"

[expect]
node_pauses = 2
max_dead_letters = 0
"""


@pytest.mark.parametrize("seed", [1, 2])
def test_pausing_the_logs_node_moves_it_and_the_zombie_changes_nothing(
        seed: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """node-3 sleeps past its leases twice: a survivor takes the log over; waking up, the
    old activation's writes would be refused (fenced), so it stops, and no invariant fails."""
    text = (ROOT / "scenarios" / "log_node_kill.toml").read_text()
    file = tmp_path / "pause.toml"
    file.write_text(text[:text.index("[[faults]]")] + PAUSES)
    report = _run(capsys, str(file), "--seed", str(seed), "--out", str(tmp_path / "out"))
    held = {i["name"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert {"no_gaps", "at_least_once_in_order", "exercised_node_pauses"} <= held
    nodes: dict[str, dict[str, int]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-3"]["pauses"] == 2 and nodes["node-3"]["kills"] == 0
    assert sum(nodes[n]["activations"] for n in ("node-1", "node-2")) >= 1


# -- HTTP forwarding, in process ------------------------------------------------------

async def _owner(store: Store, log: str) -> str:
    lease = await store.lease(LEASE + log)
    assert lease is not None
    return owner_node(lease.owner)


async def _forwarding() -> dict[str, list[tuple[int, object]]]:
    store = await shared_memory_store()
    cluster = SimCluster(SimulatedNetwork(), store, lease_ttl=1.0)
    clients: dict[str, httpx.AsyncClient] = {}
    for name in ("n1", "n2"):
        rt = await cluster.start(name, hosts=False)
        rt.register_entity(LogServerEntity)
        app = create_app(LogService(rt, on_nodes=True))
        clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://test")
    await asyncio.sleep(1.0)  # both in each other's view of the membership
    n1 = clients["n1"]
    payload = base64.b64encode(b"hello").decode()
    r = await n1.post("/logs/orders/records", json=[{"key": "k", "payload_b64": payload}] * 3)
    assert r.status_code == 201, r.text
    owner = await _owner(store, "orders")
    other = "n2" if owner == "n1" else "n1"
    r = await clients[other].post("/logs/orders/sessions", json={"ack_wait": 5})
    session = r.json()["session"]
    read = await clients[other].get(f"/logs/orders/sessions/{session}/records?max=2")
    answers: dict[str, list[tuple[int, object]]] = {}
    for name in (owner, other):  # the same questions through the owner and the other
        c = clients[name]
        answers[name] = [(r.status_code, r.json()) for r in [
            await c.get(f"/logs/orders/sessions/{session}"),
            await c.post(f"/logs/orders/sessions/{session}/ack",
                         json={"receipts": [[2, 1]]}),  # never delivered: 409
            await c.get(f"/logs/orders/sessions/{'0' * 32}"),  # unknown session: 404
            await c.post("/logs/orders/sessions", json={"start": -4}),  # bad start: 400
        ]]
    answers["read"] = [(read.status_code, read.json())]
    acked = await clients[other].post(f"/logs/orders/sessions/{session}/ack",
                                      json={"receipts": [[0, 1], [1, 1]]})
    answers["acked"] = [(acked.status_code, acked.json())]
    answers["owner"] = [(0, owner)]
    for c in clients.values():
        await c.aclose()
    await cluster.stop()
    return answers


def test_a_request_through_a_non_owner_gets_the_owners_answer() -> None:
    answers = run(_forwarding, simulated=True, seed=3)
    owner = str(answers["owner"][0][1])
    other = "n2" if owner == "n1" else "n1"
    assert answers[owner] == answers[other]
    statuses = [status for status, _ in answers[owner]]
    assert statuses == [200, 409, 404, 400]
    described = answers[owner][0][1]
    assert isinstance(described, dict)
    assert (described["next_seq"], described["in_flight"], described["high_water"]) == (2, 2, 3)
    assert [r["seq"] for r in answers["read"][0][1]["records"]] == [0, 1]  # type: ignore[index]
    assert answers["acked"] == [(200, {"acked": 2, "floor": 2, "in_flight": 0,
                                       "superseded": []})]


async def _waiting_through_a_non_owner() -> tuple[list[int], float, int]:
    """A read with ``wait`` through the node that does not own the log, a record
    appended 0.7 s later: what it got, when, and how many messages the owner's server
    handled for it."""
    store = await shared_memory_store()
    cluster = SimCluster(SimulatedNetwork(), store, lease_ttl=1.0)
    services: dict[str, LogService] = {}
    for name in ("n1", "n2"):
        rt = await cluster.start(name, hosts=False)
        rt.register_entity(LogServerEntity)
        services[name] = LogService(rt, on_nodes=True)
    await asyncio.sleep(1.0)  # both in each other's view of the membership
    await (await services["n1"].log("orders")).append([("k", b"first")])
    owner = await _owner(store, "orders")
    other = "n2" if owner == "n1" else "n1"
    log = await services[other].log("orders")
    session = await log.create_session("latest")

    def handled() -> int:
        return sum(s.received for s in services[owner].rt.statistics()
                   if s.name == "LogServerEntity/orders")

    before, started = handled(), services[other].rt.now()
    reading = asyncio.ensure_future(log.read(session, 10, wait=5.0))
    await asyncio.sleep(0.7)
    await (await services[owner].log("orders")).append([("k", b"second")])
    result = await reading
    took = services[other].rt.now() - started
    messages = handled() - before - 1  # the append
    await cluster.stop()
    return [r.seq for r in result.records], took, messages


def test_a_waiting_read_through_a_non_owner_is_woken_not_polling() -> None:
    """The owner holds the read's answer until the append (a ``Deferred`` reply), so
    the reader gets the record as soon as it is appended, with two reads in all (the
    held one and the one after it); it used to look again every 50 ms (14 reads)."""
    seqs, took, messages = run(_waiting_through_a_non_owner, simulated=True, seed=3)
    assert seqs == [1]
    assert 0.7 <= took < 0.75, took
    assert messages == 2, messages


async def _moving() -> list[tuple[int, str, object]]:
    store = await shared_memory_store()
    net = SimulatedNetwork()
    cluster = SimCluster(net, store, lease_ttl=1.0)
    clients: dict[str, httpx.AsyncClient] = {}
    for name in ("n1", "n2"):
        rt = await cluster.start(name, hosts=False)
        rt.register_entity(LogServerEntity)
        app = create_app(LogService(rt, on_nodes=True, ask_timeout=0.5))
        clients[name] = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                          base_url="http://test")
    await asyncio.sleep(1.0)
    record = [{"key": "k", "payload_b64": base64.b64encode(b"x").decode()}]
    seen = []
    r = await clients["n1"].post("/logs/orders/records", json=record * 2)
    owner = await _owner(store, "orders")
    survivor = "n2" if owner == "n1" else "n1"
    seen.append((r.status_code, r.headers.get("Retry-After", ""), r.json()))
    cluster.kill(owner)  # its leases are still held: the log cannot move yet
    r = await clients[survivor].post("/logs/orders/records", json=record)
    seen.append((r.status_code, r.headers.get("Retry-After", ""), r.json()["error"]))
    await asyncio.sleep(3.0)  # its leases expired: the next request moves the log
    r = await clients[survivor].post("/logs/orders/records", json=record)
    seen.append((r.status_code, r.headers.get("Retry-After", ""), r.json()))
    seen.append((0, "", await _owner(store, "orders") == survivor))
    for c in clients.values():
        await c.aclose()
    await cluster.stop()
    return seen


def test_while_a_log_moves_a_request_is_503_with_retry_after_then_served() -> None:
    seen = run(_moving, simulated=True, seed=5)
    assert seen == [(201, "", {"first_seq": 0, "count": 2}),
                    (503, "1", "unavailable"),
                    (201, "", {"first_seq": 2, "count": 1}),  # nothing acknowledged lost
                    (0, "", True)]


# -- real processes ---------------------------------------------------------------------

class _Serve:
    """One ``shardline serve`` process of a cluster, and the HTTP address it printed."""

    def __init__(self, store: str, secret_file: Path, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [*shardline_command(), "serve", "--store", store, "--port", "0",
             "--cluster-listen", "127.0.0.1:0", "--secret-file", str(secret_file),
             "--node-name", name, "--lease-ttl", "2s"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def ready(self) -> httpx.Client:
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        found = re.search(rf"listening on (http://127\.0\.0\.1:\d+) as node {self.name} ", line)
        if found is None:
            self.proc.kill()
            raise AssertionError(f"{self.name} did not start: {line!r} "
                                 f"{self.proc.stderr.read()!r}")
        return httpx.Client(base_url=found.group(1), timeout=30.0)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def three_serves(postgres_url: Callable[..., str],
                 tmp_path: Path) -> Iterator[tuple[str, dict[str, _Serve]]]:
    store = postgres_url()
    secret = tmp_path / "secret"
    secret.write_text("log-nodes-test-secret\n")
    serves = {name: _Serve(store, secret, name) for name in ("serve-1", "serve-2", "serve-3")}
    try:
        yield store, serves
    finally:
        for s in serves.values():
            s.stop()


def _lease_owner(store_url: str, log: str) -> str:
    from runtime.store import open_store

    async def ask() -> str:
        store = await open_store(store_url, clock=time.time)
        try:
            return await _owner(store, log)
        finally:
            await store.close()

    return asyncio.run(ask())


def _retrying(send: Callable[[], httpx.Response], deadline: float) -> httpx.Response:
    """``send`` again while the answer is 503 (the log is moving), as Retry-After says."""
    while True:
        r = send()
        if r.status_code != 503 or time.monotonic() > deadline:
            return r
        assert r.headers["Retry-After"] == "1"
        time.sleep(0.2)  # a client of the real service; shorter than it asks, to keep it brief


def _records(start: int, count: int) -> list[dict[str, str]]:
    return [{"key": f"k{i}", "payload_b64": base64.b64encode(f"r{i}".encode()).decode()}
            for i in range(start, start + count)]


@pytest.mark.real_processes
def test_three_serve_processes_are_one_service_and_survive_the_owners_sigkill(
        three_serves: tuple[str, dict[str, _Serve]]) -> None:
    store, serves = three_serves
    http = {name: s.ready() for name, s in serves.items()}
    a, b, c = (http[n] for n in ("serve-1", "serve-2", "serve-3"))
    assert a.post("/logs/orders/records", json=_records(0, 100)).json() == {
        "first_seq": 0, "count": 100}
    session = b.post("/logs/orders/sessions", json={"ack_wait": 1}).json()["session"]
    got = c.get(f"/logs/orders/sessions/{session}/records?max=40").json()["records"]
    assert [r["seq"] for r in got] == list(range(40))
    assert a.post(f"/logs/orders/sessions/{session}/ack",
                  json={"receipts": [[r["seq"], r["delivery"]] for r in got]}).json()[
        "acked"] == 40
    owner = _lease_owner(store, "orders")
    described = [http[n].get(f"/logs/orders/sessions/{session}").json() for n in http]
    assert described[0] == described[1] == described[2]  # every process: the owner's answer
    survivors = [n for n in http if n != owner]
    held = http[survivors[0]].get(f"/logs/orders/sessions/{session}/records?max=30").json()
    assert [r["seq"] for r in held["records"]] == list(range(40, 70))  # never acked
    serves[owner].proc.send_signal(signal.SIGKILL)
    serves[owner].proc.wait()
    deadline = time.monotonic() + 20
    appended = _retrying(lambda: http[survivors[1]].post("/logs/orders/records",
                                                         json=_records(100, 50)), deadline)
    assert appended.status_code == 201 and appended.json() == {"first_seq": 100, "count": 50}
    acked = set(range(40))
    deliveries: dict[int, list[int]] = {}
    payloads: dict[int, str] = {}
    turn = 0
    while acked != set(range(150)) and time.monotonic() < deadline:
        client = http[survivors[turn % 2]]
        turn += 1
        r = _retrying(lambda client=client: client.get(  # type: ignore[misc]
            f"/logs/orders/sessions/{session}/records?max=50&wait=1.5"), deadline)
        assert r.status_code == 200, r.text
        records = r.json()["records"]
        for rec in records:
            deliveries.setdefault(rec["seq"], []).append(rec["delivery"])
            payloads[rec["seq"]] = rec["payload_b64"]
        if records:
            ack = _retrying(lambda client=client, records=records: client.post(  # type: ignore[misc]
                f"/logs/orders/sessions/{session}/ack",
                json={"receipts": [[x["seq"], x["delivery"]] for x in records]}), deadline)
            assert ack.status_code == 200, ack.text
            acked.update(x["seq"] for x in records)
    assert acked == set(range(150))  # no gap: every record reached the session
    assert not set(deliveries) & set(range(40))  # nothing acknowledged came back
    assert {s: base64.b64decode(p).decode() for s, p in payloads.items()} == {
        s: f"r{s}" for s in range(40, 150)}  # every acknowledged append where it was told
    assert all(d == [2] for s, d in deliveries.items() if s < 70)  # the held ones, again
    assert _lease_owner(store, "orders") in survivors  # the log moved


@pytest.mark.real_processes
def test_a_run_across_node_processes_survives_the_log_owners_sigkill(
        tmp_path: Path, postgres_url: Callable[..., str],
        capsys: pytest.CaptureFixture[str]) -> None:
    report = _run(capsys, str(ROOT / "tests" / "log_real_nodes.toml"), "--nodes", "3",
                  "--store", postgres_url(), "--out", str(tmp_path / "out"))
    held = {i["name"] for i in report["invariants"]}  # type: ignore[attr-defined]
    assert {"no_gaps", "at_least_once_in_order", "exercised_node_kills"} <= held
    nodes: dict[str, dict[str, object]] = report["nodes"]  # type: ignore[assignment]
    assert nodes["node-3"]["state"] == "killed"
    assert sum(nodes[n]["activations"] for n in ("node-1", "node-2")) >= 1  # type: ignore[misc]


# -- bad input --------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "words"), [
    (["--store", "sqlite:///{tmp}/one.db", "--cluster-listen", "127.0.0.1:0",
      "--secret-env", "LOG_NODES_SECRET"],
     ["--store sqlite:///", "several nodes need a shared store: postgresql://"]),
    (["--store", "memory://", "--secret-env", "LOG_NODES_SECRET"],
     ["--store memory://", "several nodes need a shared store"]),
    (["--store", "postgresql://u:hunter2@127.0.0.1:1/db", "--cluster-listen", "127.0.0.1:0"],
     ["the cluster options need the cluster secret", "--secret-file FILE or --secret-env"]),
    (["--store", "postgresql://u:hunter2@127.0.0.1:1/db", "--secret-env", "LOG_NODES_UNSET"],
     ["--secret-env LOG_NODES_UNSET: the environment variable is unset"]),
    (["--store", "postgresql://u:hunter2@127.0.0.1:1/db", "--cluster-listen", "nowhere",
      "--secret-env", "LOG_NODES_SECRET"],
     ["--cluster-listen: Cluster listen address 'nowhere' is not host:port"]),
])
def test_cluster_options_that_cannot_work_exit_2_naming_the_option(
        extra: list[str], words: list[str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_NODES_SECRET", "s3cret")
    monkeypatch.delenv("LOG_NODES_UNSET", raising=False)
    argv = ["serve", "--port", "0", *[a.replace("{tmp}", str(tmp_path)) for a in extra]]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("shardline serve: error: ") and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    assert "hunter2" not in err and "s3cret" not in err and "Traceback" not in err
