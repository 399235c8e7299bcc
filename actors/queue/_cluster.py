"""``QueueCluster``: N queue servers on a runtime, and the calls clients make.

```python
async with Runtime(store="sqlite:///queue.db") as rt:
    cluster = QueueCluster(rt, servers=4, visibility_timeout=30.0)
    await cluster.start()
    await cluster.send("orders", [("customer-7", b"paid")])
    for d in await cluster.receive("orders", per_server=10):
        ...                                    # process d.message.body
        await cluster.ack([d.receipt])
```

``receive`` hands out one message per key; ``receive_batches`` hands out
up to ``per_key`` consecutive messages of each key (a whole window on a
queue with a ``WindowPolicy``), settled as a unit with ``settle``. Every
call is one request per server carrying all of that server's part.

Keys are placed by rendezvous hashing over the server ids ``server-0`` ...
A store remembers how many servers its queues were spread over; starting
a cluster with another count on the same store is refused (the keys whose
owner changed would strand their messages on the old owner).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import msgspec

from actors.queue._journal import DeadLetter, dead_letter_log, decode_dead_letter
from actors.queue._ledger import Ledger, output_id
from actors.queue._messages import (
    AckResult,
    Batch,
    Delivery,
    Depth,
    Enqueue,
    EnqueueResult,
    HolderRestarted,
    QueueDepth,
    QueuedMessage,
    QueueServerMsg,
    Receipt,
    Seal,
    Settle,
    Settlement,
    Take,
    Taken,
    WindowPolicy,
    settle_taken,
)
from actors.queue._metrics import QueueMetrics
from actors.queue._placement import shared_placement
from actors.queue._server import QueueServer
from actors.queue._settings import ServerSettings, ServerSpec
from runtime import (
    ActorRef,
    AskTimeout,
    Backoff,
    InjectedFault,
    Message,
    Runtime,
    ScenarioError,
    StoreError,
    Supervisor,
)
from runtime.scenario import Audit
from runtime.store import Put, without_faults

M = TypeVar("M", bound=Message)
T = TypeVar("T")

TRANSIENT = (StoreError, InjectedFault, AskTimeout)
"""What a server call may fail with and succeed on retry: the server journals a
request before it answers, and every request is safe to repeat."""


@dataclass(frozen=True)
class Retry:
    """Retry a failed server call ``attempts`` more times, waiting ``backoff``."""

    attempts: int
    backoff: Backoff
    rng: random.Random
    on_retry: Callable[[str, BaseException], None] | None = None


def _summed(results: Sequence[object]) -> AckResult:
    """One ``AckResult`` from each server's: acks added up, refusals listed together."""
    acked = 0
    refused: list[Receipt] = []
    for result in results:
        assert isinstance(result, AckResult)
        acked += result.acked
        refused.extend(result.refused)
    return AckResult(acked, refused)


_START_BACKOFF = Backoff(min=0.001, max=0.1, jitter=0.2)
_START_ATTEMPTS = 1000


async def gather_all(calls: list[Awaitable[T]]) -> list[T]:
    """Every call's result, or the first failure, raised once every call has ended (so
    no call is left to fail later with an error nobody reads)."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


class ClusterLayout(msgspec.Struct, frozen=True):
    """What a store's queues were created with (kept in ``q/<name>/layout``)."""

    servers: int


class QueueCluster:
    """Strict-order queues over ``servers`` queue-server actors.

    Every call may raise what the servers raise (``StoreError`` when the
    store failed the request, ``InjectedFault``, ``AskTimeout``); nothing
    of a failed call took effect except, possibly, its durable part, so
    retrying an enqueue (same ids) or an ack is always safe.
    """

    def __init__(
        self,
        rt: Runtime,
        *,
        name: str = "queue",
        servers: int = 4,
        visibility_timeout: float = 30.0,
        max_receives: int = 5,
        dedup_window: float = 300.0,
        ask_timeout: float = 30.0,
        windows: Mapping[str, WindowPolicy] | None = None,
        metrics: QueueMetrics | None = None,
        checkpoint_every: int = 256,
        audit: Audit | None = None,
    ) -> None:
        """``checkpoint_every``: journal entries between a server's checkpoints, each
        of which compacts its journal; ``audit``: where the servers hand the entries
        they compact away first, so the checks still read every journal whole."""
        if servers < 1:
            raise ValueError(f"servers must be >= 1, got {servers}")
        if visibility_timeout <= 0 or dedup_window <= 0 or ask_timeout <= 0:
            raise ValueError("visibility_timeout, dedup_window and ask_timeout must be > 0")
        if dedup_window <= visibility_timeout:
            raise ValueError(f"dedup_window ({dedup_window:g} s) must exceed visibility_timeout "
                             f"({visibility_timeout:g} s): redelivered work re-sends its outputs "
                             "at least that late")
        if max_receives < 1:
            raise ValueError(f"max_receives must be >= 1, got {max_receives}")
        if checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
        if not name or "/" in name:
            raise ValueError(f"cluster name must be non-empty and without '/', got {name!r}")
        self.rt = rt
        self.name = name
        for queue, policy in (windows or {}).items():
            if policy.size < 1 or (policy.max_age is not None and policy.max_age <= 0):
                raise ValueError(f"window of queue {queue!r}: size must be >= 1 and "
                                 f"max_age > 0, got {policy}")
        self.settings = ServerSettings(float(visibility_timeout), max_receives,
                                       float(dedup_window), dict(windows or {}),
                                       checkpoint_every)
        self.audit = audit
        self.ask_timeout = ask_timeout
        self.metrics = metrics or QueueMetrics()
        self.server_ids = [f"server-{i}" for i in range(servers)]
        self.placement = shared_placement(tuple(self.server_ids))
        self.servers: list[ActorRef[QueueServerMsg]] = []
        self.supervisor: Supervisor | None = None
        self._owns_supervisor = False

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """Check the layout and spawn the servers (under ``supervisor`` or a new one)."""
        await self._check_layout()
        if supervisor is None:
            supervisor = await self.rt.spawn_supervisor(
                f"{self.name}.servers", max_restarts=1000, within=10.0,
                backoff=Backoff(min=0.001, max=0.1, jitter=0.2))
            self._owns_supervisor = True
        self.supervisor = supervisor
        for i in range(len(self.server_ids)):
            self.servers.append(await supervisor.spawn_retrying(
                QueueServer, ServerSpec(self.name, i, self.server_ids, self.settings),
                self.metrics, self.audit, name=f"{self.name}.server-{i}",
                backoff=_START_BACKOFF, attempts=_START_ATTEMPTS))

    async def _check_layout(self) -> None:
        store = without_faults(self.rt.store)
        key = f"q/{self.name}/layout"
        found = await store.get(key)
        mine = ClusterLayout(len(self.server_ids))
        if found is None:
            await store.write([Put(key, msgspec.json.encode(mine), 0)])
            return
        theirs = msgspec.json.decode(found.value, type=ClusterLayout)
        if theirs != mine:
            raise ScenarioError(
                f"queue cluster {self.name!r}: the store holds queues spread over "
                f"{theirs.servers} servers; starting with {mine.servers} would strand the "
                "messages of every key whose owner changed (use a fresh store)")

    async def stop(self) -> None:
        if self.supervisor is not None and self._owns_supervisor:
            await self.rt.root.stop(self.supervisor)
        self.supervisor = None

    # -- client calls --------------------------------------------------------

    def server_of(self, key: str) -> int:
        return self.placement(key)

    async def _ask(self, server: int, msg: QueueServerMsg, retry: Retry | None) -> object:
        attempt = 0
        while True:
            try:
                return await self.servers[server].ask(msg, timeout=self.ask_timeout)
            except TRANSIENT as exc:
                if retry is None or attempt >= retry.attempts:
                    raise
                if retry.on_retry is not None:
                    retry.on_retry(f"{type(msg).__name__} to server {server}", exc)
                await asyncio.sleep(retry.backoff.delay(attempt, retry.rng.random()))
                attempt += 1

    async def enqueue(self, queue: str, messages: Sequence[QueuedMessage],
                      retry: Retry | None = None) -> EnqueueResult:
        """Store ``messages`` on their keys' servers (one request per server, concurrently).

        With ``retry``, each server's part is retried on its own; a repeat of a
        part that was stored is dropped as a duplicate.
        """
        owners = self.placement.owners([m.key for m in messages])
        order = list(dict.fromkeys(owners))
        """The servers in the order their first message came (the order of the asks)."""
        if len(order) == 1:
            parts = {order[0]: list(messages)}
        else:
            parts = {s: [] for s in order}
            adds = {s: part.append for s, part in parts.items()}
            for m, s in zip(messages, owners, strict=True):
                adds[s](m)
        results = await gather_all([
            self._ask(s, Enqueue(queue, parts[s]), retry) for s in order])
        accepted = duplicates = 0
        for r in results:
            assert isinstance(r, EnqueueResult)
            accepted += r.accepted
            duplicates += r.duplicates
        return EnqueueResult(accepted, duplicates)

    async def send(self, queue: str, items: Iterable[tuple[str, bytes]],
                   dedup_ids: Sequence[str] | None = None) -> EnqueueResult:
        """Enqueue ``(key, body)`` pairs; ids default to a hash of queue, key and body."""
        messages = []
        for index, (key, body) in enumerate(items):
            ident = (dedup_ids[index] if dedup_ids is not None
                     else output_id(f"send:{queue}", [key, body.hex()]))
            messages.append(QueuedMessage(ident, key, body, Ledger()))
        return await self.enqueue(queue, messages)

    async def receive(self, queue: str, per_server: int = 10,
                      on_error: Callable[[int, BaseException], None] | None = None,
                      ) -> list[Delivery]:
        """Up to ``per_server`` messages from each server, each the head of a distinct key.

        With ``on_error``, a server whose call failed is reported there and
        skipped (whatever it journaled as delivered comes back after the
        visibility timeout); without it the first failure is raised. On a
        windowed queue use ``receive_batches``: its windows go out whole.
        """
        if queue in self.settings.windows:
            raise ValueError(f"queue {queue!r} hands out whole windows: use receive_batches")
        batches = await self.receive_batches(queue, per_server, 1, on_error)
        return [Delivery(b.receipt, b.messages[0]) for b in batches]

    async def receive_batches(self, queue: str, per_server: int = 100, per_key: int = 10,
                              on_error: Callable[[int, BaseException], None] | None = None,
                              holder: str = "") -> list[Batch]:
        """Batches of up to ``per_key`` consecutive messages of a key (a whole window on
        a windowed queue), about ``per_server`` messages from each server; never two
        batches of one key. ``on_error`` as for ``receive``. A ``holder`` names the
        receiving client for ``holder_restarted``."""
        return [batch for taken in await self.take(queue, per_server, per_key, on_error, holder)
                for batch in taken.batches()]

    async def take(self, queue: str, per_server: int = 100, per_key: int = 10,
                   on_error: Callable[[int, BaseException], None] | None = None,
                   holder: str = "") -> list[Taken]:
        """``receive_batches`` in columns: one ``Taken`` per server that handed anything
        out (no object per batch; settle with ``settle_taken``)."""
        replies = await asyncio.gather(*[
            ref.ask(Take(queue, per_server, per_key, holder), timeout=self.ask_timeout)
            for ref in self.servers], return_exceptions=True)
        out: list[Taken] = []
        for server, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                if on_error is None or not isinstance(reply, TRANSIENT):
                    raise reply
                on_error(server, reply)
                continue
            if reply is not None:
                assert isinstance(reply, Taken)
                out.append(reply)
        return out

    async def ack(self, receipts: Iterable[Receipt], retry: Retry | None = None) -> AckResult:
        """Acknowledge deliveries (whole batches); stale ones (after their visibility
        timeout) are refused."""
        return await self.settle([Settlement(r, r.count) for r in receipts], retry)

    async def release(self, receipts: Iterable[Receipt], reason: str = "",
                      retry: Retry | None = None) -> AckResult:
        """Give deliveries back at once (processing of the first message failed); the
        last receive dead-letters it."""
        return await self.settle([Settlement(r, 0, 0, reason) for r in receipts], retry)

    async def settle(self, settlements: Iterable[Settlement],
                     retry: Retry | None = None) -> AckResult:
        """Settle batches (see ``Settlement``), one request per server."""
        by_server: dict[int, list[Settlement]] = {}
        for s in settlements:
            part = by_server.get(s.receipt.server)
            if part is None:
                part = by_server[s.receipt.server] = []
            part.append(s)
        results = await gather_all([
            self._ask(server, Settle(batch), retry) for server, batch in by_server.items()])
        return _summed(results)

    async def settle_taken(self, settled: Sequence[tuple[Taken, Sequence[Settlement]]],
                           retry: Retry | None = None) -> AckResult:
        """Settle what ``take`` handed out: each ``Taken``'s batches are acked whole
        except those its settlements (of the same server) name, which are settled as
        ``settle`` does. One request per ``Taken``."""
        results = await gather_all([
            self._ask(taken.server, settle_taken(taken, others), retry)
            for taken, others in settled])
        return _summed(results)

    async def holder_restarted(self, holder: str, retry: Retry | None = None) -> None:
        """The client named ``holder`` (re)started: every batch an earlier run of it
        still holds comes back now, as if its visibility had timed out (counting as a
        receive, so a message that crashes its client still ends in the dead-letter
        queue). Without this they come back at their visibility timeout."""
        await gather_all([self._ask(s, HolderRestarted(holder), retry)
                               for s in range(len(self.servers))])

    async def seal(self, queue: str, retry: Retry | None = None) -> None:
        """The input of ``queue`` has ended: its partial windows may go out."""
        await gather_all([self._ask(s, Seal(queue), retry)
                               for s in range(len(self.servers))])

    async def depth(self, queue: str) -> QueueDepth:
        """The queue's depth summed over the servers."""
        replies = await gather_all([
            self._ask(s, Depth(queue), None) for s in range(len(self.servers))])
        pending = in_flight = dead = 0
        for d in replies:
            assert isinstance(d, QueueDepth)
            pending += d.pending
            in_flight += d.in_flight
            dead += d.dead
        return QueueDepth(pending, in_flight, dead)

    async def dead_letters(self, queue: str | None = None) -> list[DeadLetter]:
        """Every dead letter in the store (of ``queue``, or of all queues), by server."""
        store = without_faults(self.rt.store)
        found: list[DeadLetter] = []
        for i in range(len(self.server_ids)):
            log = dead_letter_log(self.name, i)
            seq = 0
            while True:
                page = await store.read(log, seq, 1000)
                for entry in page:
                    if queue is None or entry.key == queue:
                        found.append(decode_dead_letter(entry.payload))
                seq += len(page)
                if len(page) < 1000:
                    break
        return found
