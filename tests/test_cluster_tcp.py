"""Two nodes over real TCP in one process: remote refs, errors, security, reconnects.

These use real sockets on 127.0.0.1, so they run on the real clock, with
short timeouts and no sleeps longer than a few hundred milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import msgspec
import pytest
from structlog.testing import capture_logs

import runtime
from runtime import Actor, ActorRef, AskTimeout, Cluster, Message, NoSuchActor, Runtime, Terminated
from runtime.cluster import (
    ClusterError,
    ClusterStatistics,
    RemoteError,
    UnknownMessageTag,
    _auth,
)
from runtime.cluster._frames import Failure, rebuild_error
from runtime.store import Store, open_store

SECRET = "tcp-test-secret"


class Add(Message, frozen=True):
    n: int


class Fail(Message, frozen=True):
    why: str


class Hang(Message, frozen=True):
    pass


class Stop(Message, frozen=True):
    pass


class Stranger(Message, frozen=True):
    pass


class Ledger(Exception):
    """A handler error of the test's own: the asker gets this class back."""


class Counter(Actor[Add | Fail | Hang | Stop]):
    def __init__(self) -> None:
        self.seen: list[int] = []

    async def receive(self, msg: Add | Fail | Hang | Stop) -> object:
        if isinstance(msg, Add):
            self.seen.append(msg.n)
            return list(self.seen)
        if isinstance(msg, Fail):
            raise (Ledger(msg.why) if msg.why == "ledger" else ValueError(msg.why))
        if isinstance(msg, Hang):
            await asyncio.Event().wait()
        self.stop()
        return None


class Impostor(Actor[Add | Stranger]):
    """What an out-of-date sender believes the remote ``Counter`` accepts."""


class Watcher(Actor[Terminated | Add]):
    def __init__(self, target: ActorRef[Add], seen: list[Terminated]) -> None:
        self.target = target
        self.seen = seen

    async def started(self) -> None:
        self.watch(self.target)

    async def receive(self, msg: Terminated | Add) -> None:
        if isinstance(msg, Terminated):
            self.seen.append(msg)


@contextlib.asynccontextmanager
async def two_nodes(secret_b: str = SECRET) -> AsyncIterator[tuple[Runtime, Runtime, Store]]:
    store = await open_store("memory://", clock=time.time)
    async with Runtime(store=store, shutdown_timeout=0.2, cluster=Cluster(
                listen="127.0.0.1:0", secret=SECRET, name="a")) as a, \
            Runtime(store=store, shutdown_timeout=0.2, cluster=Cluster(
                listen="127.0.0.1:0", secret=secret_b, name="b")) as b:
        await b.spawn(Counter, name="counter", restart="transient")
        yield a, b, store


def run(main: Callable[[], Awaitable[object]]) -> object:
    with capture_logs():
        return runtime.run(main)


def test_remote_tells_keep_per_sender_order_and_asks_get_the_reply() -> None:
    async def main() -> tuple[object, ClusterStatistics, ClusterStatistics]:
        async with two_nodes() as (a, b, _):
            counter = a.remote("b", "counter", Counter)
            for i in range(2000):
                await counter.tell(Add(i))
            counter.tell_nowait(Add(2000))
            seen = await counter.ask(Add(2001), timeout=5.0)
            return seen, a.cluster_statistics(), b.cluster_statistics()

    seen, sent, received = run(main)  # type: ignore[misc]
    assert seen == list(range(2002))
    assert sent.frames_out < 2002 // 4  # queued messages travel batched in frames
    assert sent.messages_out >= 2002 and received.messages_in >= 2002
    assert received.bytes_in >= sent.messages_out * 4  # every message costs some bytes
    assert received.frames_in >= sent.frames_out - 1  # the Hello is not counted
    assert sent.live_nodes == received.live_nodes == 2


def test_a_wrong_type_is_a_type_error_at_the_sender_and_nothing_is_sent() -> None:
    async def main() -> int:
        async with two_nodes() as (a, _b, _):
            counter = a.remote("b", "counter", Counter)
            with pytest.raises(TypeError, match="does not accept Stranger"):
                await counter.tell(Stranger())  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="does not accept Stranger"):
                await counter.ask(Stranger())  # type: ignore[arg-type]
            with pytest.raises(TypeError, match="does not accept Stranger"):
                await a.entity(Counter, "k").ask(Stranger())  # type: ignore[arg-type]
            return a.cluster_statistics().messages_out

    assert run(main) == 0


def test_an_ask_timeout_names_actor_message_type_timeout_and_node() -> None:
    async def main() -> str:
        async with two_nodes() as (a, _b, _):
            with pytest.raises(AskTimeout) as caught:
                await a.remote("b", "counter", Counter).ask(Hang(), timeout=0.2)
            assert caught.value.node == "b"
            return str(caught.value)

    assert run(main) == "ask to actor 'counter' on node 'b' with Hang got no reply within 0.2 s"


def test_the_handlers_exception_is_raised_at_the_asker() -> None:
    async def main() -> None:
        async with two_nodes() as (a, _b, _):
            counter = a.remote("b", "counter", Counter)
            with pytest.raises(ValueError, match="bad amount") as caught:
                await counter.ask(Fail("bad amount"))
            assert "raised on node 'b'" in caught.value.__notes__
            with pytest.raises(Ledger, match="ledger"):
                await counter.ask(Fail("ledger"))
            assert await counter.ask(Add(1)) == [1]  # the actor goes on

    run(main)


def test_an_exception_class_unknown_here_arrives_as_a_remote_error() -> None:
    error = rebuild_error(Failure(1, "elsewhere.module", "Oops", "it broke"), "b")
    assert isinstance(error, RemoteError)
    assert str(error) == "elsewhere.module.Oops on node 'b': it broke"


def test_an_unknown_tag_or_actor_is_a_clear_error_back_at_the_sender() -> None:
    async def main() -> list[dict[str, object]]:
        async with two_nodes() as (a, _b, _):
            stale = a.remote("b", "counter", Impostor)
            with pytest.raises(UnknownMessageTag, match="unknown message tag 'Stranger'"):
                await stale.ask(Stranger())
            with pytest.raises(NoSuchActor, match="no actor 'ghost' on node 'b'"):
                await a.remote("b", "ghost", Counter).ask(Add(1))
            with capture_logs() as logs:
                await stale.tell(Stranger())
                await a.wait_until(lambda: a.dead_letters > 0, deadline=a.now() + 5)
            return logs

    logs = run(main)
    rejected = [e for e in logs if e["event"] == "message.rejected"]  # type: ignore[union-attr]
    assert rejected and "unknown message tag 'Stranger'" in str(rejected[0]["error"])


def test_a_node_with_the_wrong_secret_is_refused_and_never_sees_the_secret() -> None:
    async def main() -> tuple[int, list[dict[str, object]]]:
        with capture_logs() as logs:
            async with two_nodes(secret_b="another-secret") as (a, b, _):
                with pytest.raises(AskTimeout):
                    await a.remote("b", "counter", Counter).ask(Add(1), timeout=0.5)
                refused = b.cluster_statistics().connections_refused
        return refused, logs

    refused, logs = run(main)  # type: ignore[misc]
    assert refused >= 1
    assert any(e["event"] == "connection.refused" for e in logs)
    assert SECRET not in repr(logs) and "another-secret" not in repr(logs)
    assert "tcp-test-secret" not in repr(Cluster(listen="127.0.0.1:0", secret=SECRET))


async def _authenticated_socket(address: str) -> tuple[asyncio.StreamReader,
                                                       asyncio.StreamWriter]:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    nonce = await reader.readexactly(_auth.NONCE_SIZE)
    mine = b"x" * _auth.NONCE_SIZE
    writer.write(_auth.proof(SECRET.encode(), _auth.CLIENT, nonce) + mine)
    await writer.drain()
    assert _auth.verify(SECRET.encode(), _auth.SERVER, mine,
                        await reader.readexactly(_auth.PROOF_SIZE))
    return reader, writer


@pytest.mark.parametrize("junk", [
    (9 * 1024 * 1024).to_bytes(4, "big"),              # longer than the maximum frame
    (5).to_bytes(4, "big") + b"\xc1\xc1\xc1\xc1\xc1",   # not MessagePack at all
    (3).to_bytes(4, "big") + msgspec.msgpack.encode([[99]]),  # an unknown item tag
])
def test_a_bad_frame_closes_only_its_connection_and_is_logged(junk: bytes) -> None:
    async def main() -> tuple[int, object, list[dict[str, object]]]:
        with capture_logs() as logs:
            async with two_nodes() as (a, b, _):
                reader, writer = await _authenticated_socket(b.cluster_statistics().address)
                hello = msgspec.msgpack.encode([[0, "intruder", "nowhere"]])
                writer.write(len(hello).to_bytes(4, "big") + hello + junk)
                await writer.drain()
                closed = await reader.read()  # the node closes this connection
                writer.close()
                answer = await a.remote("b", "counter", Counter).ask(Add(1))
                return b.cluster_statistics().malformed_frames + len(closed), answer, logs

    malformed, answer, logs = run(main)  # type: ignore[misc]
    assert malformed == 1
    assert answer == [1]  # the node goes on serving
    assert any(e["event"] == "connection.bad_frame" for e in logs)


def test_an_unauthenticated_connection_is_closed_before_any_frame_is_read() -> None:
    async def main() -> tuple[bytes, int]:
        async with two_nodes() as (_a, b, _):
            host, port = b.cluster_statistics().address.rsplit(":", 1)
            reader, writer = await asyncio.open_connection(host, int(port))
            await reader.readexactly(_auth.NONCE_SIZE)
            writer.write(b"\0" * 64 + (1).to_bytes(4, "big") + b"\x90")
            await writer.drain()
            rest = await reader.read()
            writer.close()
            return rest, b.cluster_statistics().connections_refused

    assert run(main) == (b"", 1)


def test_a_failed_connection_is_re_established_and_counted() -> None:
    async def main() -> tuple[object, int, list[tuple[str, str]]]:
        with capture_logs() as logs:
            result = await exchange()
        return (*result, [(e["event"], e["subject"]) for e in logs
                          if e.get("node") == "a" and (e["event"] == "connection.down" or (
                              e["event"] == "connection.up" and e["detail"] == "outbound"))])

    async def exchange() -> tuple[object, int]:
        async with two_nodes() as (a, b, _):
            counter = a.remote("b", "counter", Counter)
            await counter.ask(Add(1))
            for link in list(b._cluster.transport._links):  # type: ignore[union-attr]
                await link.close()  # the network drops a's connection to b
            for _ in range(50):
                await asyncio.sleep(0.02)
                try:
                    answer = await counter.ask(Add(2), timeout=0.5)
                    break
                except AskTimeout:
                    continue
            return answer, a.cluster_statistics().reconnects

    answer, reconnects, events = run(main)  # type: ignore[misc]
    assert answer[-1] == 2  # type: ignore[index]
    assert reconnects == 1
    assert events[:3] == [("connection.up", "b"), ("connection.down", "b"),
                          ("connection.up", "b")]


def test_a_watcher_gets_terminated_when_a_remote_actor_stops() -> None:
    async def main() -> list[Terminated]:
        seen: list[Terminated] = []
        async with two_nodes() as (a, _b, _):
            counter = a.remote("b", "counter", Counter)
            await a.spawn(Watcher, counter, seen)
            await asyncio.sleep(0.1)
            await counter.tell(Stop())
            await a.wait_until(lambda: bool(seen), deadline=a.now() + 5)
            assert not counter.alive
        return seen

    seen = run(main)
    assert seen == [Terminated(actor="counter", reason="normal")]  # type: ignore[comparison-overlap]


def test_cluster_settings_are_checked_at_the_edge() -> None:
    with pytest.raises(ValueError, match="'localhost' is not host:port"):
        Cluster(listen="localhost", secret=SECRET)
    with pytest.raises(ValueError, match="secret must be a non-empty str"):
        Cluster(listen="127.0.0.1:0", secret="")
    with pytest.raises(ValueError, match="lease_ttl must be"):
        Cluster(listen="127.0.0.1:0", secret=SECRET, lease_ttl=0)

    async def main() -> None:
        with pytest.raises(ClusterError, match="needs the shared store"):
            async with Runtime(cluster=Cluster(listen="127.0.0.1:0", secret=SECRET)):
                pass
        async with Runtime() as rt:
            with pytest.raises(ClusterError, match="not a cluster node"):
                rt.nodes()

    run(main)


def test_a_second_node_under_a_live_name_is_refused() -> None:
    async def main() -> None:
        async with two_nodes() as (_a, _b, store):
            with pytest.raises(ClusterError, match="node name 'a' is taken"):
                async with Runtime(store=store, cluster=Cluster(
                        listen="127.0.0.1:0", secret=SECRET, name="a")):
                    pass

    run(main)


def test_a_failure_while_handling_closes_that_connection_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cluster import _inbound

    handle = _inbound._handle

    async def buggy(node: object, peer: str, item: object) -> None:
        if getattr(item, "actor", "") == "trap":
            raise KeyError("a bug in the node")
        await handle(node, peer, item)  # type: ignore[arg-type]

    monkeypatch.setattr(_inbound, "_handle", buggy)

    async def main() -> tuple[object, list[str]]:
        with capture_logs() as logs:
            async with two_nodes() as (a, _b, _):
                with pytest.raises(AskTimeout):
                    await a.remote("b", "trap", Counter).ask(Add(1), timeout=0.3)
                for _ in range(50):
                    try:
                        answer = await a.remote("b", "counter", Counter).ask(Add(1), timeout=0.3)
                        break
                    except AskTimeout:
                        continue
        return answer, [e["event"] for e in logs if e.get("node") == "b"]

    answer, events = run(main)  # type: ignore[misc]
    assert answer == [1]
    assert "connection.handler_failed" in events


def test_a_failure_while_sending_costs_those_messages_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.cluster._frames import TellOut
    from runtime.cluster._node import ClusterNode

    frames_of = ClusterNode.frames_of

    def buggy(self: ClusterNode, items: list[object]) -> object:
        if any(isinstance(i, TellOut) and i.actor == "trap" for i in items):
            raise RuntimeError("a bug in the sender")
        return frames_of(self, items)  # type: ignore[arg-type]

    monkeypatch.setattr(ClusterNode, "frames_of", buggy)

    async def main() -> tuple[object, list[str]]:
        with capture_logs() as logs:
            async with two_nodes() as (a, _b, _):
                await a.remote("b", "trap", Counter).tell(Add(1))
                await asyncio.sleep(0.05)
                answer = await a.remote("b", "counter", Counter).ask(Add(1), timeout=5.0)
        return answer, [e["event"] for e in logs if e.get("node") == "a"]

    answer, events = run(main)  # type: ignore[misc]
    assert answer == [1]
    assert "connection.sender_failed" in events


def test_a_node_listens_on_loopback_unless_told_otherwise() -> None:
    async def main() -> str:
        store = await open_store("memory://", clock=time.time)
        async with Runtime(store=store, cluster=Cluster(secret=SECRET)) as rt:
            return rt.cluster_statistics().address

    assert str(run(main)).startswith("127.0.0.1:")
