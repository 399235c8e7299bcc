"""The embedding API: ``LogService`` (many logs) and ``LogClient`` (one log).

```python
async with Runtime(store="sqlite:///state.db") as rt:
    orders = await open_log(rt, "orders")
    await orders.append([("k1", b"hello")])
    session = await orders.create_session(start="earliest")
    batch = await orders.read(session, max_records=100, wait=5.0)
    ...  # process batch.records
    await orders.ack(session, batch.records)  # each record's receipt: (seq, delivery)
```

A client object is stateless: it holds the server's address, never a
position. Any number of readers (tasks, processes behind HTTP) may share a
session id; a reader that restarts with nothing but the id carries on
where the session left off. Errors are ``LogDeliveryError`` subclasses; a
server restart or store failure is ``LogUnavailable`` (retry later).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar, get_origin

import msgspec

from actors.logdelivery import _keys as keys
from actors.logdelivery._appends import check_key
from actors.logdelivery._entity import LogRecipe, LogServerEntity, offer_recipe
from actors.logdelivery._errors import (
    ERRORS,
    BadRequest,
    LogDeliveryError,
    LogUnavailable,
    TooLarge,
)
from actors.logdelivery._limits import (
    MAX_APPEND_RECORDS,
    MAX_KEY_BYTES,
    MAX_PAYLOAD_BYTES,
    SessionSettings,
    check_read,
)
from actors.logdelivery._messages import (
    Acked,
    AckRecords,
    Appended,
    AppendRecords,
    CreateSession,
    Delivery,
    DescribeSession,
    LogServerMsg,
    Parked,
    ReadDeadLetters,
    ReadRecords,
    ReadResult,
    Refusal,
    SessionCreated,
    SessionInfo,
)
from actors.logdelivery._retention import LogRetention
from actors.logdelivery._server import LogServer, ReadObserver
from actors.logdelivery._state import DeadLetter
from runtime import ActorRef, Backoff, Runtime, ShardlineError, Supervisor
from runtime.scenario import Audit

T = TypeVar("T")


class LogClient:
    """Operations on one log; safe to share between tasks."""

    def __init__(self, rt: Runtime, ref: ActorRef[LogServerMsg], log: str, *,
                 defaults: SessionSettings, ask_timeout: float,
                 closing: asyncio.Future[None] | None = None, remote: bool = False) -> None:
        self.rt = rt
        self.remote = remote
        """The server may be on another node (an entity): replies arrive as plain data
        and a read that would wait is held by the server (``ReadRecords.hold``) instead
        of handed a ``Parked`` future, which cannot cross nodes."""
        self.ref = ref
        self.log = log
        self.defaults = defaults
        self.ask_timeout = ask_timeout
        self._closing = closing

    async def _ask_any(self, msg: LogServerMsg) -> object:
        try:
            reply = await self.ref.ask(msg, timeout=self.ask_timeout)
        except LogDeliveryError:
            raise
        except ShardlineError as exc:  # stopped, restarting, moving, timed out, store down
            raise LogUnavailable(f"log {self.log!r}: {exc}") from exc
        if isinstance(reply, Refusal):
            raise ERRORS.get(reply.code, LogUnavailable)(reply.detail, **reply.fields)
        return reply

    async def _ask(self, msg: LogServerMsg, kind: type[T]) -> T:
        """The server's answer to ``msg`` as ``kind``: the object itself from a server in
        this process, converted from plain data when it crossed the cluster's wire."""
        return _typed(self.log, await self._ask_any(msg), kind)

    async def append(self, entries: Sequence[tuple[str, bytes]], *,
                     idempotency_key: str | None = None) -> Appended:
        """Store ``(key, payload)`` entries durably, in order; returns where they went.

        With ``idempotency_key``, retrying after ``LogUnavailable`` (or any lost
        answer) is safe: an append naming a key an earlier one took (within the
        log's ``retention.idempotency_window``) stores nothing and returns what
        that one did; naming it with other entries raises ``IdempotencyKeyReused``."""
        if idempotency_key is not None:
            check_key(self.log, idempotency_key)
        batch = list(entries)
        if len(batch) > MAX_APPEND_RECORDS:
            raise TooLarge(f"an append carries at most {MAX_APPEND_RECORDS} records, "
                           f"got {len(batch)}")
        for index, entry in enumerate(batch):
            _check_entry(index, entry)
        return await self._ask(AppendRecords(batch, idempotency_key), Appended)

    async def create_session(
        self, start: str | int = "earliest", *, ack_wait: float | None = None,
        max_in_flight: int | None = None, max_deliveries: int | None = None,
        ttl: float | None = None,
    ) -> str:
        """A new session id (128 random bits) reading from ``start``:
        ``"earliest"``, ``"latest"`` (only records appended from now on) or a seq.
        Settings left out take the service's defaults."""
        created = await self.open_session(start, ack_wait=ack_wait, max_in_flight=max_in_flight,
                                          max_deliveries=max_deliveries, ttl=ttl)
        return created.session

    async def open_session(
        self, start: str | int = "earliest", *, ack_wait: float | None = None,
        max_in_flight: int | None = None, max_deliveries: int | None = None,
        ttl: float | None = None,
    ) -> SessionCreated:
        """As :meth:`create_session`, also saying which seq the session starts at."""
        d = self.defaults
        msg = CreateSession(
            start=start,
            ack_wait=_plain(d.ack_wait if ack_wait is None else ack_wait),
            max_in_flight=d.max_in_flight if max_in_flight is None else max_in_flight,
            max_deliveries=d.max_deliveries if max_deliveries is None else max_deliveries,
            ttl=_plain(d.ttl if ttl is None else ttl))
        return await self._ask(msg, SessionCreated)

    async def read(self, session: str, max_records: int = 100, wait: float = 0.0) -> ReadResult:
        """Up to ``max_records``: due redeliveries first, then new records, in seq order.

        With nothing to hand out, waits up to ``wait`` seconds (runtime clock)
        for records to be appended or to fall due; returns empty records then.
        ``SessionExpired`` if the session idled past its TTL.
        """
        check_read(max_records, wait)
        loop = asyncio.get_running_loop()
        until = loop.time() + wait
        while True:
            closing = self._closing is not None and self._closing.done()
            park = not closing and loop.time() < until
            hold = min(until - loop.time(), self.ask_timeout / 2) if park and self.remote else 0.0
            reply = await self._ask_any(ReadRecords(session, max_records,
                                                    park and not self.remote, hold))
            if reply is None:  # held on another node until something changed: ask again
                continue
            if isinstance(reply, Parked):
                timeout = until - loop.time()
                if reply.retry_after is not None:
                    timeout = min(timeout, reply.retry_after)
                try:
                    await self._wait(reply.wake, timeout)
                finally:
                    reply.wake.cancel()  # no-op if it fired; otherwise the server forgets it
                # Ask again: woken (something changed), a deadline fell due, or time is up
                # (the last ask does not park, so it answers with whatever is there).
                continue
            return _typed(self.log, reply, ReadResult)

    async def _wait(self, wake: asyncio.Future[None] | None, timeout: float) -> None:
        """Until ``wake`` fires, the service begins to shut down, or ``timeout`` passes."""
        waits: set[asyncio.Future[None]] = {wake} if wake is not None else set()
        if self._closing is not None:
            waits.add(self._closing)
        if waits:
            await asyncio.wait(waits, timeout=max(0.0, timeout),
                               return_when=asyncio.FIRST_COMPLETED)
        else:
            await asyncio.sleep(max(0.0, timeout))

    async def ack(self, session: str,
                  receipts: Iterable[Delivery | tuple[int, int]]) -> Acked:
        """Acknowledge records by receipt: the ``Delivery`` a read returned, or its
        ``(seq, delivery)``.

        A receipt of a delivery that was superseded (the record's deadline
        passed and it was handed out again, perhaps to another reader) is
        not acknowledged: its seq is listed in ``Acked.superseded``, and the
        newer copy stays in flight. ``NotDelivered`` (nothing acknowledged)
        if a seq was never delivered in this session, or not that many times.
        """
        listed = receipts if isinstance(receipts, list) else list(receipts)
        try:  # the common case: the records a read returned
            pairs = [(r.seq, r.delivery) for r in listed]  # type: ignore[union-attr]
        except AttributeError:
            pairs = [r.receipt if isinstance(r, Delivery) else r for r in listed]
        return await self._ask(AckRecords(session, pairs), Acked)  # the server checks them

    async def describe(self, session: str) -> SessionInfo:
        return await self._ask(DescribeSession(session), SessionInfo)

    async def dead_letters(self, session: str, offset: int = 0,
                           limit: int = 1000) -> list[DeadLetter]:
        """The session's dead-letter ranges, oldest first."""
        reply = await self._ask_any(ReadDeadLetters(session, offset, limit))
        if isinstance(reply, list) and all(isinstance(d, DeadLetter) for d in reply):
            return reply
        return _typed(self.log, reply, list[DeadLetter])


def _plain(seconds: float) -> float:
    """A ``Duration`` as a plain float: a float subclass does not cross the wire (the
    server checks the value, so anything else goes as it is)."""
    return float(seconds) if isinstance(seconds, float) else seconds


def _typed(log: str, reply: object, kind: type[T]) -> T:
    """``reply`` as ``kind``: as it is if it is one (a server in this process), else
    converted from the plain data a reply from another node decodes to."""
    if get_origin(kind) is None and isinstance(reply, kind):
        return reply
    try:
        converted: T = msgspec.convert(reply, kind)
    except msgspec.ValidationError as exc:
        raise LogUnavailable(f"log {log!r}: unexpected answer from its server: {exc}") from None
    return converted


def _check_entry(index: int, entry: object) -> None:
    if not (isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], str)
            and isinstance(entry[1], bytes)):
        raise BadRequest(f"record {index} must be a (key: str, payload: bytes) pair")
    key, payload = entry
    if len(key.encode()) > MAX_KEY_BYTES:
        raise TooLarge(f"record {index}: key longer than {MAX_KEY_BYTES} bytes")
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise TooLarge(f"record {index}: payload of {len(payload)} bytes exceeds "
                       f"{MAX_PAYLOAD_BYTES}")


_RESTART_BACKOFF = Backoff(min=0.005, max=0.05, jitter=0.2, reset_after=1.0)
"""A crashed log server is back within 50 ms: its state is in the store, and every
moment it is down, readers wait."""


_START_ATTEMPTS = 5
"""First-start attempts of a log server (within the restart backoff, ~0.1 s in all)
before a caller is answered ``LogUnavailable``."""


class LogService:
    """Log servers for up to ``max_logs`` logs, spawned on first use under one supervisor."""

    def __init__(self, rt: Runtime, *, defaults: SessionSettings | None = None,
                 cache_records: int = 262_144, ask_timeout: float = 30.0,
                 observer: ReadObserver | None = None, name: str = "logdelivery",
                 restart_backoff: Backoff | None = None, max_logs: int = 1000,
                 retention: LogRetention | Mapping[str, LogRetention] | None = None,
                 audit: Audit | None = None, on_nodes: bool = False,
                 offer_recipes: bool = False) -> None:
        self.rt = rt
        self.on_nodes = on_nodes
        """Each log's server is the cluster entity ``LogServerEntity/<log>`` on whichever
        node holds its lease (``_entity``), not an actor of this service; ``retention``,
        ``audit``, ``observer`` and ``cache_records`` are then the entity's (its recipe)."""
        self.offer_recipes = offer_recipes
        """On nodes: before its first request here, a log with no recipe yet gets one with
        this service's ``retention`` (``shardline serve``: the first server to serve a
        log sets what it keeps; a scenario writes its recipe itself)."""
        self.retention = retention
        """One ``LogRetention`` for every log, or one per log name (others: the default)."""
        self.audit = audit
        self.defaults = defaults or SessionSettings()
        self.cache_records = cache_records
        self.ask_timeout = ask_timeout
        self.observer = observer
        self.name = name
        self.restart_backoff = restart_backoff or _RESTART_BACKOFF
        self.max_logs = max_logs
        self._clients: dict[str, LogClient] = {}
        self._lock = asyncio.Lock()
        self._supervisor: Supervisor | None = None
        self._closing: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    @staticmethod
    def server_name(log: str) -> str:
        """The actor name of a log's server (what fault plans target)."""
        return keys.server_name(log)

    def retention_of(self, log: str) -> LogRetention:
        """What log ``log`` keeps (``_retention``)."""
        if isinstance(self.retention, LogRetention):
            return self.retention
        return (self.retention or {}).get(log, LogRetention())

    def serves(self, name: str) -> bool:
        """Whether log ``name``'s server was started here (it counts against ``max_logs``)."""
        return name in self._clients

    async def log(self, name: str) -> LogClient:
        """The client for log ``name``, starting its server if needed."""
        client = self._clients.get(name)
        if client is not None:
            return client
        if not keys.valid_log_name(name):
            raise BadRequest(f"log name {name!r} must match {keys.LOG_NAME.pattern}")
        async with self._lock:
            client = self._clients.get(name)
            if client is None:
                if len(self._clients) >= self.max_logs:
                    raise TooLarge(f"this service serves at most {self.max_logs} logs; "
                                   f"log {name!r} would be one more")
                ref: ActorRef[LogServerMsg]
                if self.on_nodes:
                    if self.offer_recipes:
                        await self._offer_recipe(name)
                    ref = self.rt.entity(LogServerEntity, name)
                else:
                    if self._supervisor is None:
                        self._supervisor = await self.rt.spawn_supervisor(
                            self.name, max_restarts=1000, within=10.0,
                            backoff=self.restart_backoff)
                    ref = await self._start(name)
                client = LogClient(self.rt, ref, name, defaults=self.defaults,
                                   ask_timeout=self.ask_timeout, closing=self._closing,
                                   remote=self.on_nodes)
                self._clients[name] = client
        return client

    async def _offer_recipe(self, log: str) -> None:
        recipe = LogRecipe.of(self.retention_of(log), served=False,
                              cache_records=self.cache_records)
        try:
            await offer_recipe(self.rt.store, log, recipe)
        except ShardlineError as exc:
            raise LogUnavailable(f"log {log!r}: its recipe could not be stored: {exc}") from exc

    async def _start(self, log: str) -> ActorRef[LogServerMsg]:
        """Start ``log``'s server, retrying a first start the store failed (its ``recover``
        reads the store); ``LogUnavailable`` if it still fails, so a caller may retry later
        (HTTP: 503) and nothing of this log is remembered meanwhile."""
        assert self._supervisor is not None
        try:
            return await self._supervisor.spawn_retrying(
                LogServer, log, cache_records=self.cache_records, observer=self.observer,
                retention=self.retention_of(log), audit=self.audit,
                name=self.server_name(log), backoff=self.restart_backoff,
                attempts=_START_ATTEMPTS)
        except ShardlineError as exc:
            raise LogUnavailable(f"log {log!r}: its server could not start: {exc}") from exc

    def begin_shutdown(self) -> None:
        """Answer waiting reads now and let no new read wait (a server is stopping)."""
        if not self._closing.done():
            self._closing.set_result(None)

    async def close(self) -> None:
        """Stop the log servers (their state is durable)."""
        self.begin_shutdown()
        if self._supervisor is not None:
            await self.rt.root.stop(self._supervisor)
            self._supervisor = None
            self._clients.clear()


async def open_log(rt: Runtime, name: str, *, defaults: SessionSettings | None = None,
                   ask_timeout: float = 30.0) -> LogClient:
    """Start a server for log ``name`` on ``rt`` (its store holds the log) and return a client."""
    return await LogService(rt, defaults=defaults, ask_timeout=ask_timeout,
                            name=f"logdelivery.{name}").log(name)
