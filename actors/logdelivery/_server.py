"""``LogServer``: the single writer of one log and of its sessions' state.

Every change a request makes is durable before it is answered: an append
returns after its records are committed, a read after the session state
naming what it hands out is committed (the records are fetched first, so a
failed read changes nothing), an ack after the shrunk state is committed.
So a crash of the actor, of the process, or a ``kill -9`` loses nothing a
client was told; a read whose answer was lost only delays those records
until their ack deadline passes, then they are redelivered (at least once).

A client error never crashes the server: it is answered with a
``Refusal`` that the client raises as the matching ``LogDeliveryError``. A
failing store call is answered the same way (``unavailable``) and leaves
the cached state untouched, because cached state changes only after the
write that records it succeeded.

Retention (``_retention``, ``_retainer``): after appends, acks and session
creation (at most every ``RETAIN_EVERY`` seconds) the server truncates the log below
what its ``LogRetention`` lets go and deletes sessions expired for one more
TTL, handing both to its audit first. A read of a session whose next record
is gone is refused with ``RecordsTruncated`` (the new floor); ``earliest``
is the log's floor. A failed retention write changes nothing and is retried
next time; it never fails the request that triggered it.

Waiting readers do not poll: a read with nothing to hand out is answered
with ``Parked``, one future per reader, resolved when records are appended
or the session's records are acknowledged (or the server stops), and a hint
of when the earliest in-flight deadline passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Callable

import msgspec

from actors.logdelivery import _keys as keys
from actors.logdelivery._appends import AppendKeys, check_key, entries_digest
from actors.logdelivery._cache import EntryCache
from actors.logdelivery._errors import (
    BadRequest,
    LogDeliveryError,
    SessionExpired,
    SessionNotFound,
)
from actors.logdelivery._limits import check_receipts, check_session_settings
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
from actors.logdelivery._retainer import Retainer, SessionView
from actors.logdelivery._retention import LogRetention, truncated
from actors.logdelivery._state import (
    DeadLetter,
    ReadPlan,
    SessionState,
    ack_receipts,
    next_due,
    plan_read,
)
from runtime import Actor, ConflictError, Deferred, StoreError
from runtime.scenario import Audit
from runtime.store import Append, Fence, LogEntry, Put, Store

ReadObserver = Callable[[str, ReadPlan], None]
"""Called after a read's new session state is durable, in the order reads were served."""

_encode = msgspec.msgpack.Encoder().encode
_decode_state = msgspec.msgpack.Decoder(SessionState).decode
_decode_dead = msgspec.msgpack.Decoder(DeadLetter).decode


class _Session:
    """A cached session: its durable state and version, and when it was last used."""

    __slots__ = ("state", "touched", "version")

    def __init__(self, state: SessionState, version: int) -> None:
        self.state = state
        self.version = version
        self.touched = state.last_active


class LogServer(Actor[LogServerMsg]):
    """Appends to one log and serves its receiver sessions (see the module docstring)."""

    mailbox_capacity = 4096

    def __init__(self, log: str, *, cache_records: int = 262_144,
                 observer: ReadObserver | None = None, retention: LogRetention | None = None,
                 audit: Audit | None = None) -> None:
        if not keys.valid_log_name(log):
            raise ValueError(f"log name {log!r} must match {keys.LOG_NAME.pattern}")
        self.log_name = log
        self.records_log = keys.records_log(log)
        self.cache = EntryCache(self.records_log, cache_records)
        self.observer = observer
        self.sessions: dict[str, _Session] = {}
        self.waiters: dict[str, dict[asyncio.Future[None], None]] = {}
        self.high_water = 0
        self.high_water_sure = True
        """False after an append whose write raised: its outcome may be unknown (a
        connection lost during COMMIT), so the next append reads the high water again."""
        self.retainer = Retainer(log, retention or LogRetention(), audit)
        self.append_keys = AppendKeys(log, float(self.retainer.retention.idempotency_window))

    @property
    def store(self) -> Store:
        return self.runtime.store

    def _fence(self) -> Fence | None:
        """The fence every write goes under: none here; the lease of the activation when
        the server is a cluster entity (``_entity``), so a server that lost its log to
        another node can change nothing."""
        return None

    def _served(self, session: str, plan: ReadPlan, now: float) -> list[Append]:
        """What to write with a read's new session state besides it (nothing here)."""
        return []

    def wall(self) -> float:
        return self.runtime.clock.wall()

    async def recover(self) -> None:
        """Nothing is trusted from before a restart: the high water and floor come from
        the store, sessions are reloaded from it when first used (their ids now)."""
        store = self.store
        self.high_water = await store.high_water(self.records_log)
        await self.retainer.recover(store, self.high_water, self.wall())
        await self.append_keys.recover(store)

    async def stopped(self) -> None:
        """Wake every parked reader: it asks again and reaches the next incarnation."""
        for session in list(self.waiters):
            self._wake(session)

    async def receive(self, msg: LogServerMsg) -> object:
        try:
            match msg:
                case ReadRecords():
                    return await self._read(msg)
                case AckRecords():
                    return await self._ack(msg)
                case AppendRecords():
                    return await self._append(msg)
                case CreateSession():
                    return await self._create(msg)
                case DescribeSession():
                    return await self._describe(msg)
                case ReadDeadLetters():
                    return await self._dead_letters(msg)
        except LogDeliveryError as exc:
            return Refusal(exc.code, exc.detail, exc.fields)
        except ConflictError as exc:
            # Another writer changed a session behind our back: trust the store again.
            self.sessions.pop(getattr(msg, "session", ""), None)
            return Refusal("unavailable", f"log {self.log_name!r}: {exc}")
        except StoreError as exc:
            return Refusal("unavailable", f"log {self.log_name!r}: store failure: {exc}")
        raise TypeError(f"unexpected message {type(msg).__name__}")

    # -- appends ----------------------------------------------------------------

    async def _append(self, msg: AppendRecords) -> Appended:
        if not self.high_water_sure:
            self.high_water = await self.store.high_water(self.records_log)
            self.high_water_sure = True
        try:
            return await self._append_sure(msg)
        except StoreError:
            self.high_water_sure = False
            raise

    async def _append_sure(self, msg: AppendRecords) -> Appended:
        """``_append`` with ``high_water`` as the store has it (unless another writer
        appends, or a write of an earlier incarnation commits late)."""
        entries = msg.entries
        key = msg.idempotency_key
        if key is None:
            if not entries:
                return Appended(self.high_water, 0)
            try:
                first = await self.store.append(self.records_log, entries, fence=self._fence())
            except TypeError as exc:
                raise BadRequest(f"append to log {self.log_name!r}: {exc}") from None
        else:
            check_key(self.log_name, key)
            digest = entries_digest(entries)
            if self.append_keys.known(key):
                earlier = await self.append_keys.earlier(self.store, key, digest)
                if earlier is not None:
                    return earlier
            taken = await self._append_once(entries, key, digest)
            if isinstance(taken, Appended):
                return taken
            first = taken
        self.cache.appended(first, [LogEntry(first + i, key, payload)
                                    for i, (key, payload) in enumerate(entries)])
        self.high_water = first + len(entries)
        self.retainer.appended(self.high_water, self.wall(), entries)
        for session in list(self.waiters):
            self._wake(session)
        await self._retain()
        await self.fault_point("after an append was committed, before replying")
        return Appended(first, len(entries))

    async def _append_once(self, entries: list[tuple[str, bytes]], key: str,
                           digest: bytes) -> int | Appended:
        """Append ``entries`` and take ``key`` in one write: the first seq; or, if an
        earlier append took ``key`` meanwhile, what that one did."""
        now = self.wall()
        planned = Appended(self.high_water, len(entries))
        ops: list[Append | Put] = [Append(self.records_log, entries),
                              self.append_keys.put(key, planned, digest, now)]
        try:
            result = await self.store.write(ops, fence=self._fence())
        except TypeError as exc:
            raise BadRequest(f"append to log {self.log_name!r}: {exc}") from None
        except ConflictError:
            earlier = await self.append_keys.earlier(self.store, key, digest)
            if earlier is None:
                raise
            return earlier
        first = result.first_seqs[self.records_log]
        if first != planned.first_seq:  # another writer appended: record where they went
            await self.store.write([self.append_keys.put(
                key, Appended(first, len(entries)), digest, now, expect_version=None)],
                fence=self._fence())
        self.append_keys.taken(key, now)
        return first

    # -- sessions ---------------------------------------------------------------

    def _new_session_id(self) -> str:
        """128 random bits: from the seeded generator under simulation (so a seed replays),
        from the operating system's CSPRNG otherwise (so ids cannot be guessed)."""
        rt = self.runtime
        if rt.simulated:
            return f"{rt.random.getrandbits(128):032x}"
        return secrets.token_hex(16)

    async def _create(self, msg: CreateSession) -> SessionCreated:
        check_session_settings(msg.ack_wait, msg.max_in_flight, msg.max_deliveries, msg.ttl)
        start = msg.start
        floor = self.retainer.floor
        if start == "earliest":
            start_seq = floor
        elif start == "latest":
            start_seq = self.high_water
        elif isinstance(start, int) and not isinstance(start, bool) and start >= 0:
            start_seq = start
            if start < floor:
                raise truncated(self.log_name, f"a session from seq {start}", floor)
        else:
            raise BadRequest(
                f"start must be 'earliest', 'latest' or a sequence number >= 0, got {start!r}")
        now = self.wall()
        session = self._new_session_id()
        state = SessionState(
            session=session, log=self.log_name, start_seq=start_seq, next_seq=start_seq,
            ack_wait=float(msg.ack_wait), max_in_flight=msg.max_in_flight,
            max_deliveries=msg.max_deliveries, ttl=float(msg.ttl), created_at=now,
            last_active=now)
        key = keys.session_key(self.log_name, session)
        result = await self.store.write([Put(key, _encode(state), expect_version=0)],
                                        fence=self._fence())
        self.sessions[session] = _Session(state, result.versions[key])
        self.retainer.session_ids.add(session)
        self.runtime.trace.record(self.runtime.now(), "session_created", self.name,
                                  f"{session} at {start_seq}")
        await self._retain()
        return SessionCreated(session, start_seq)

    async def _load(self, session: str) -> _Session:
        cached = self.sessions.get(session)
        if cached is not None:
            return cached
        if not keys.valid_session_id(session):
            raise SessionNotFound(f"log {self.log_name!r} has no session {session!r} "
                                  "(a session id is 32 lowercase hex digits)")
        found = await self.store.get(keys.session_key(self.log_name, session))
        if found is None:
            raise SessionNotFound(f"log {self.log_name!r} has no session {session!r} (an "
                                  "expired session is deleted one ttl after it expired)")
        loaded = _Session(_decode_state(found.value), found.version)
        self.sessions[session] = loaded
        return loaded

    async def _live(self, session: str, now: float) -> _Session:
        """The session, or ``SessionExpired`` (recorded durably the first time)."""
        s = await self._load(session)
        state = s.state
        last = max(state.last_active, s.touched)
        if state.expired or now > last + state.ttl:
            if not state.expired:
                expired = msgspec.structs.replace(state, expired=True, last_active=last)
                key = keys.session_key(self.log_name, session)
                result = await self.store.write([Put(key, _encode(expired), s.version)],
                                                fence=self._fence())
                s.state, s.version = expired, result.versions[key]
                del self.sessions[session]  # reloaded (as expired) if it is ever asked for
                self.runtime.trace.record(self.runtime.now(), "session_expired", self.name,
                                          session)
            raise SessionExpired(
                f"session {session} of log {self.log_name!r} expired: idle for more than its "
                f"ttl of {state.ttl:g} s; create a new session")
        return s

    async def _save(self, session: str, s: _Session, state: SessionState,
                    extra: list[Append] | None = None) -> None:
        key = keys.session_key(self.log_name, session)
        result = await self.store.write([Put(key, _encode(state), s.version), *(extra or ())],
                                        fence=self._fence())
        s.state, s.version = state, result.versions[key]
        s.touched = max(s.touched, state.last_active)

    async def _touch(self, session: str, s: _Session, now: float) -> None:
        """Note activity that changed nothing. Persisted at most about four times per TTL,
        so after a crash a session has at least three quarters of its TTL to come back."""
        s.touched = max(s.touched, now)
        if now - s.state.last_active > s.state.ttl / 4:
            with contextlib.suppress(StoreError):  # only a hint; the next activity retries
                await self._save(session, s, msgspec.structs.replace(s.state, last_active=now))

    # -- reads ------------------------------------------------------------------

    async def _read(self, msg: ReadRecords) -> ReadResult | Parked | Deferred[None]:
        now = self.wall()
        s = await self._live(msg.session, now)
        if not isinstance(msg.max_records, int) or msg.max_records < 1:
            raise BadRequest(f"max_records must be an integer >= 1, got {msg.max_records!r}")
        if s.state.floor < self.retainer.floor:
            raise truncated(self.log_name, f"session {msg.session}'s next record, seq "
                            f"{s.state.floor},", self.retainer.floor)
        plan = plan_read(s.state, high_water=self.high_water, max_records=msg.max_records,
                         now=now)
        if not plan.changed:
            await self._touch(msg.session, s, now)
            return self._nothing_yet(msg, s.state, now)
        records = await self._fetch(plan)
        extra = self._served(msg.session, plan, now)
        if plan.dead:
            extra.append(Append(keys.dead_letter_log(self.log_name, msg.session), [
                (msg.session, _encode(DeadLetter(r.first, r.last, r.deliveries, now)))
                for r in plan.dead]))
        await self._save(msg.session, s, plan.state, extra)
        if self.observer is not None:
            self.observer(msg.session, plan)
        for r in plan.dead:
            self.runtime.trace.record(self.runtime.now(), "dead_lettered", self.name,
                                      f"{msg.session} {r.first}..{r.last} after {r.deliveries}")
        await self.fault_point("after recording a delivery, before replying")
        if not records:
            return self._nothing_yet(msg, s.state, now)
        return ReadResult(records, now + s.state.ack_wait)

    async def _fetch(self, plan: ReadPlan) -> list[Delivery]:
        out: list[Delivery] = []
        for r in [*plan.redelivered, *([plan.new] if plan.new else [])]:
            entries = await self.cache.read(self.store, r.first, r.size)
            n = r.deliveries
            out.extend([Delivery(e.seq, e.key, e.payload, n) for e in entries])
        return out

    def _nothing_yet(self, msg: ReadRecords, state: SessionState,
                     now: float) -> ReadResult | Parked | Deferred[None]:
        """The answer of a read that found nothing to hand out (``ReadRecords``)."""
        if msg.hold > 0:
            return self._hold(msg.session, state, now, msg.hold)
        return self._park(msg.session, state, now) if msg.park else ReadResult([])

    def _hold(self, session: str, state: SessionState, now: float,
              hold: float) -> Deferred[None]:
        """Answer ``None`` when the session's parked future fires, or when ``hold`` (or
        the earliest in-flight deadline) passes, whichever is first."""
        parked = self._park(session, state, now)
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[None] = loop.create_future()
        delay = hold if parked.retry_after is None else min(hold, parked.retry_after)
        timer = loop.call_later(delay, parked.wake.cancel)  # cancelling forgets it

        def woken(_: asyncio.Future[None]) -> None:
            timer.cancel()
            if not answer.done():
                answer.set_result(None)

        parked.wake.add_done_callback(woken)
        return Deferred(answer)

    def _park(self, session: str, state: SessionState, now: float) -> Parked:
        waiting = self.waiters.setdefault(session, {})
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting[wake] = None
        wake.add_done_callback(lambda done: waiting.pop(done, None))
        due = next_due(state)
        return Parked(wake, None if due is None else max(0.0, due - now))

    def _wake(self, session: str) -> None:
        for wake in list(self.waiters.get(session, ())):
            if not wake.done():
                wake.set_result(None)

    # -- acks -------------------------------------------------------------------

    async def _ack(self, msg: AckRecords) -> Acked:
        now = self.wall()
        s = await self._live(msg.session, now)
        receipts = check_receipts(msg.receipts)
        state, acked, superseded = ack_receipts(s.state, receipts, now)
        if acked:
            await self._save(msg.session, s, state)
            self._wake(msg.session)  # room under max_in_flight for a waiting reader
            await self._retain()
        else:
            await self._touch(msg.session, s, now)
        if superseded:
            self.runtime.trace.record(self.runtime.now(), "ack_superseded", self.name,
                                      f"{msg.session} {len(superseded)} records")
        return Acked(acked, state.floor, state.in_flight_count, superseded)

    # -- retention -------------------------------------------------------------

    async def _retain(self) -> None:
        """A retention pass, if one is due (``_retainer``); a failed one is retried later."""
        with contextlib.suppress(StoreError):
            deleted = await self.retainer.run(self.store, self.wall(), self.high_water,
                                              self._view, self._fence())
            for session in deleted:
                self.sessions.pop(session, None)
                self.runtime.trace.record(self.runtime.now(), "session_deleted", self.name,
                                          session)
            expired = self.append_keys.expired(self.wall())
            if expired:
                await self.store.write(expired, fence=self._fence())
                self.append_keys.deleted(expired)

    async def _view(self, session: str) -> SessionView | None:
        try:
            s = await self._load(session)
        except SessionNotFound:
            return None
        return s.state, s.version, max(s.state.last_active, s.touched)

    # -- inspection ---------------------------------------------------------------

    async def _describe(self, msg: DescribeSession) -> SessionInfo:
        s = await self._load(msg.session)
        st = s.state
        last = max(st.last_active, s.touched)
        return SessionInfo(
            session=st.session, log=st.log, start_seq=st.start_seq, next_seq=st.next_seq,
            floor=st.floor, in_flight=st.in_flight_count, in_flight_peak=st.in_flight_peak,
            delivered=st.delivered, redelivered=st.redelivered, acked=st.acked,
            dead_lettered=st.dead_lettered, ack_wait=st.ack_wait,
            max_in_flight=st.max_in_flight, max_deliveries=st.max_deliveries, ttl=st.ttl,
            created_at=st.created_at, last_active=last,
            expires_at=last + st.ttl, expired=st.is_expired(self.wall()),
            high_water=self.high_water)

    async def _dead_letters(self, msg: ReadDeadLetters) -> list[DeadLetter]:
        await self._load(msg.session)
        if msg.offset < 0 or msg.limit < 1:
            raise BadRequest("offset must be >= 0 and limit >= 1")
        entries = await self.store.read(keys.dead_letter_log(self.log_name, msg.session),
                                        msg.offset, msg.limit)
        return [_decode_dead(e.payload) for e in entries]
