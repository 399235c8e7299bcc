"""The HTTP API, driven through a real ``shardline serve`` process with httpx.

These tests use the real clock (a real server is a real process); waits are
short and bounded.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SHARDLINE = str(Path(sys.executable).parent / "shardline")
TOKEN = "s3cret-token"


class Server:
    """A ``shardline serve`` subprocess and the address it printed."""

    def __init__(self, store: str, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [SHARDLINE, "serve", "--store", store, "--port", "0", *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        if found is None:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.proc.stderr.read()!r}")
        self.url = found.group(1)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30.0)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.proc.wait(timeout=20)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    path = tmp_path_factory.mktemp("serve") / "state.db"
    srv = Server(f"sqlite:///{path}", "--token", TOKEN, "--max-body", "65536")
    yield srv
    assert srv.stop() == 0


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with server.client() as client:
        yield client


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def append(http: httpx.Client, log: str, count: int, start: int = 0) -> dict[str, int]:
    body = [{"key": f"k{i}", "payload_b64": b64(f"p{i}".encode())}
            for i in range(start, start + count)]
    r = http.post(f"/logs/{log}/records", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


def session(http: httpx.Client, log: str, **body: object) -> str:
    r = http.post(f"/logs/{log}/sessions", json=body or {"start": "earliest"})
    assert r.status_code == 201, r.text
    sid = r.json()["session"]
    assert re.fullmatch(r"[0-9a-f]{32}", sid)
    return sid  # type: ignore[no-any-return]


def read(http: httpx.Client, log: str, sid: str, **params: object) -> list[tuple[int, int]]:
    r = http.get(f"/logs/{log}/sessions/{sid}/records", params=params)
    assert r.status_code == 200, r.text
    return [(rec["seq"], rec["delivery"]) for rec in r.json()["records"]]


def error(r: httpx.Response, status: int, code: str) -> str:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "detail"} and body["error"] == code
    return body["detail"]  # type: ignore[no-any-return]


def test_append_session_read_ack_round_trip(http: httpx.Client) -> None:
    assert append(http, "orders", 5) == {"first_seq": 0, "count": 5}
    sid = session(http, "orders", start="earliest", ack_wait=30)
    r = http.get(f"/logs/orders/sessions/{sid}/records", params={"max": 3})
    body = r.json()
    assert body["records"] == [
        {"seq": i, "key": f"k{i}", "payload_b64": b64(f"p{i}".encode()), "delivery": 1}
        for i in range(3)]
    assert body["ack_deadline"] > time.time()
    assert read(http, "orders", sid, max=10) == [(3, 1), (4, 1)]
    r = http.post(f"/logs/orders/sessions/{sid}/ack", json={"seqs": [0, 2]})
    assert r.json() == {"acked": 2, "floor": 1, "in_flight": 3}
    r = http.post(f"/logs/orders/sessions/{sid}/ack", json={"through": 4})
    assert r.json() == {"acked": 3, "floor": 5, "in_flight": 0}
    info = http.get(f"/logs/orders/sessions/{sid}").json()
    assert (info["delivered"], info["acked"], info["high_water"]) == (5, 5, 5)
    created = http.post("/logs/orders/sessions", json={"start": 3}).json()
    assert created["start_seq"] == 3 and read(http, "orders", created["session"]) == [
        (3, 1), (4, 1)]
    assert http.get("/logs/orders/sessions", params={}).status_code == 405


def test_unacked_records_are_redelivered_and_dead_lettered(http: httpx.Client) -> None:
    append(http, "poison", 2)
    sid = session(http, "poison", start=0, ack_wait=0.2, max_deliveries=2)
    assert read(http, "poison", sid, max=10) == [(0, 1), (1, 1)]
    assert read(http, "poison", sid, max=10, wait=2) == [(0, 2), (1, 2)]
    http.post(f"/logs/poison/sessions/{sid}/ack", json={"seqs": [1]}).raise_for_status()
    assert read(http, "poison", sid, max=10, wait=0.5) == []
    dead = http.get(f"/logs/poison/sessions/{sid}/dead_letters").json()["dead_letters"]
    assert [(d["first"], d["last"], d["deliveries"]) for d in dead] == [(0, 0, 2)]


def test_a_long_poll_returns_as_soon_as_a_record_is_appended(server: Server,
                                                             http: httpx.Client) -> None:
    sid = session(http, "live", start="latest")
    info = f"/logs/live/sessions/{sid}"
    created = http.get(info).json()["last_active"]
    got: list[object] = []

    def poll() -> None:
        with server.client() as other:
            got.append(read(other, "live", sid, wait=10))
            got.append(time.monotonic())

    thread = threading.Thread(target=poll)
    thread.start()
    while http.get(info).json()["last_active"] == created:  # the read reached the server
        time.sleep(0.01)
    time.sleep(0.05)
    appended_at = time.monotonic()
    append(http, "live", 1)
    thread.join(timeout=10)
    assert got[0] == [(0, 1)]
    assert 0 < got[1] - appended_at < 2.0  # type: ignore[operator]  # not the full 10 s


def test_readers_sharing_a_session_get_disjoint_records(server: Server,
                                                        http: httpx.Client) -> None:
    append(http, "shared", 400)
    sid = session(http, "shared", start="earliest", ack_wait=60)
    seen: list[list[int]] = [[], [], []]

    def reader(index: int) -> None:
        with server.client() as mine:
            while True:
                seqs = [s for s, _ in read(mine, "shared", sid, max=13)]
                if not seqs:
                    return
                seen[index] += seqs
                mine.post(f"/logs/shared/sessions/{sid}/ack", json={"seqs": seqs})

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(s for part in seen for s in part) == list(range(400))


def test_malformed_requests_get_json_4xx_and_disturb_no_session(server: Server,
                                                               http: httpx.Client) -> None:
    append(http, "steady", 20)
    sid = session(http, "steady", start="earliest", ack_wait=60)
    assert read(http, "steady", sid, max=5) == [(i, 1) for i in range(5)]
    base = f"/logs/steady/sessions/{sid}"
    assert "malformed" in error(http.post("/logs/steady/records", content=b"[nope"),
                           400, "bad_request")
    error(http.post("/logs/steady/records", content=b""), 400, "bad_request")
    error(http.post("/logs/steady/records", json=[]), 400, "bad_request")
    error(http.post("/logs/steady/records", json=[{"key": 1, "payload_b64": ""}]),
          400, "bad_request")
    assert "base64" in error(http.post("/logs/steady/records",
                                       json=[{"key": "k", "payload_b64": "!!"}]),
                             400, "bad_request")
    assert "extra" in error(http.post("/logs/steady/records", json=[
        {"key": "k", "payload_b64": "", "extra": 1}]), 400, "bad_request")
    error(http.post("/logs/steady/sessions", json={"start": "newest"}), 400, "bad_request")
    error(http.post("/logs/steady/sessions", json={"start": 0, "ack_wait": -1}),
          400, "bad_request")
    error(http.post("/logs/bad name!/sessions", json={}), 400, "bad_request")
    for params in ({"max": "0"}, {"max": "abc"}, {"max": "20000"}, {"wait": "99"},
                   {"wait": "-1"}, {"offset": "1"}, {"max": ["1", "2"]}):
        error(http.get(f"{base}/records", params=params), 400, "bad_request")
    error(http.post(f"{base}/ack", json={"seqs": [1], "through": 2}), 400, "bad_request")
    error(http.post(f"{base}/ack", json={"seqs": ["x"]}), 400, "bad_request")
    assert "never delivered seq 7" in error(http.post(f"{base}/ack", json={"seqs": [7]}),
                                            409, "conflict")
    error(http.get(f"/logs/steady/sessions/{'0' * 32}/records"), 404, "not_found")
    error(http.get("/logs/steady/sessions/xyz/records"), 404, "not_found")
    error(http.get("/nowhere"), 404, "not_found")
    error(http.post("/logs/steady/records", content=b"x" * 70_000), 413, "too_large")
    error(http.post("/logs/steady/records", json=[{"key": "k", "payload_b64": ""}] * 10_001),
          413, "too_large")
    error(http.post(f"{base}/ack", json={"seqs": list(range(10_001))}), 413, "too_large")
    # the session carries on exactly where it was: nothing redelivered, nothing skipped
    assert read(http, "steady", sid, max=100) == [(i, 1) for i in range(5, 20)]
    info = http.get(base).json()
    assert (info["redelivered"], info["acked"], info["in_flight"]) == (0, 0, 20)


def test_the_bearer_token_is_required(server: Server) -> None:
    with server.client(token=None) as anonymous:
        r = anonymous.post("/logs/orders/sessions", json={})
        assert error(r, 401, "unauthorized") == "missing bearer token"
        assert r.headers["www-authenticate"] == "Bearer"
        assert anonymous.get("/healthz").json() == {"status": "ok"}
    with server.client(token="wrong") as wrong:
        assert error(wrong.get("/logs/orders/sessions/" + "0" * 32), 401,
                     "unauthorized") == "wrong bearer token"


def test_an_expired_session_answers_410(http: httpx.Client) -> None:
    sid = session(http, "ttl", start="earliest", ttl=0.3)
    assert read(http, "ttl", sid) == []
    time.sleep(0.4)
    assert "expired" in error(http.get(f"/logs/ttl/sessions/{sid}/records"), 410, "expired")
    error(http.post(f"/logs/ttl/sessions/{sid}/ack", json={"through": 0}), 410, "expired")


def test_sigterm_answers_waiting_reads_and_exits_cleanly(tmp_path: Path) -> None:
    srv = Server(f"sqlite:///{tmp_path}/state.db")
    with srv.client(token=None) as http:
        sid = session(http, "orders", start="latest")
        got: list[object] = []

        def poll() -> None:
            with srv.client(token=None) as other:
                got.append(other.get(f"/logs/orders/sessions/{sid}/records",
                                     params={"wait": 30}).json())

        thread = threading.Thread(target=poll)
        thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        assert srv.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 5.0
        thread.join(timeout=5)
        assert got == [{"records": [], "ack_deadline": None}]


def test_sigkill_loses_nothing_that_was_acknowledged(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path}/state.db"
    srv = Server(store)
    with srv.client(token=None) as http:
        for start in range(0, 300, 100):
            append(http, "orders", 100, start)
        sid = session(http, "orders", start="earliest", ack_wait=0.5)
        assert read(http, "orders", sid, max=120) == [(i, 1) for i in range(120)]
        acked = http.post(f"/logs/orders/sessions/{sid}/ack",
                          json={"seqs": list(range(0, 120, 2))})
        assert acked.json()["acked"] == 60
    assert srv.stop(signal.SIGKILL) == -signal.SIGKILL
    again = Server(store)
    try:
        with again.client(token=None) as http:
            info = http.get(f"/logs/orders/sessions/{sid}").json()
            assert (info["high_water"], info["acked"], info["next_seq"]) == (300, 60, 120)
            time.sleep(0.5)
            got = read(http, "orders", sid, max=1000)
            assert got == [(i, 2) for i in range(1, 120, 2)] + [(i, 1) for i in range(120, 300)]
    finally:
        assert again.stop() == 0


def test_bad_command_lines_exit_2_with_a_message(server: Server) -> None:
    bad = subprocess.run([SHARDLINE, "serve", "--store", "mysql://x"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "unknown scheme" in bad.stderr
    port = server.url.rsplit(":", 1)[1]
    busy = subprocess.run([SHARDLINE, "serve", "--store", "memory://", "--port", port],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "SHARDLINE_TOKEN": ""})
    assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
