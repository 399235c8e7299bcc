"""The scenario workload: a producer, reader actors, and the journal of what they saw.

A ``Reader`` is built from its session id and the shared workload plumbing
(the log client, the journal it writes to) and nothing else; it reads,
"processes", acknowledges, and reads again. It keeps no position, so a
restart (a ``crash`` fault) loses the batch it held and the new incarnation
simply reads the session again. The journal is the harness's record for
the checks; readers only ever append to it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from actors.logdelivery._client import LogClient
from actors.logdelivery._config import LogConfig
from actors.logdelivery._errors import LogDeliveryError, LogUnavailable, SessionExpired
from actors.logdelivery._messages import ReadResult
from actors.logdelivery._state import ReadPlan
from runtime import Actor, Backoff, Message, Runtime, Supervisor


@dataclass(slots=True)
class Batch:
    """One read answer as a reader saw it; wall-clock times."""

    reader: str
    at: float
    deadline: float
    seqs: list[int]
    deliveries: list[int]
    incarnation: int
    ack_sent: float | None = None
    ack_done: float | None = None
    ack_failed: bool = False
    superseded: list[int] = field(default_factory=list)
    """Seqs the ack named with a delivery handed out again since (not acknowledged)."""

    def acked_seqs(self) -> list[int]:
        """The seqs this batch's completed ack settled."""
        if self.ack_done is None:
            return []
        if not self.superseded:
            return self.seqs
        stale = set(self.superseded)
        return [seq for seq in self.seqs if seq not in stale]


@dataclass(slots=True)
class Journal:
    """What readers and the server were seen to do (for the checks, never for the readers)."""

    batches: dict[str, list[Batch]] = field(default_factory=dict)
    new_ranges: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Per session, every range the server sent for the first time, in the order sent."""
    server_redelivered: dict[str, int] = field(default_factory=dict)
    incarnations: dict[str, int] = field(default_factory=dict)
    appended: list[tuple[int, int, int, float]] = field(default_factory=list)
    """(first seq, first record index, count, wall time acknowledged) per producer append."""
    unavailable: int = 0
    poisoned: int = 0
    slowed: int = 0
    superseded: int = 0
    """Receipts readers acked after their delivery was superseded (not acknowledged)."""
    expired: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def observe(self, session: str, plan: ReadPlan) -> None:
        """The server's observer: called in the order reads were served."""
        if plan.new is not None:
            self.new_ranges.setdefault(session, []).append((plan.new.first, plan.new.last))
        resent = sum(r.size for r in plan.redelivered)
        if resent:
            self.server_redelivered[session] = self.server_redelivered.get(session, 0) + resent


class Poll(Message, frozen=True):
    """A reader's next read; ``chain`` tells this incarnation's loop from a dead one's."""

    chain: int


class Workload:
    """Shared plumbing of one scenario run."""

    def __init__(self, rt: Runtime, config: LogConfig, log: LogClient, journal: Journal) -> None:
        self.rt = rt
        self.config = config
        self.log = log
        self.journal = journal
        self.stopping = False
        self._chains = 0
        self._payload_rng = random.Random(rt.random.getrandbits(64))

    def next_chain(self) -> int:
        self._chains += 1
        return self._chains

    def wall(self) -> float:
        return self.rt.clock.wall()

    def entry(self, index: int) -> tuple[str, bytes]:
        """Record ``index`` of the workload: its key, and a payload that names it."""
        c = self.config
        filler = self._payload_rng.randbytes(c.payload_bytes - 8)
        return f"k{index % c.keys}", index.to_bytes(8, "big") + filler

    async def retry_pause(self) -> None:
        self.journal.unavailable += 1
        await self.rt.sleep(self.config.retry_delay * (1.0 + self.rt.random.random()))

    async def create_sessions(self, count: int) -> list[str]:
        c = self.config
        found: list[str] = []
        while len(found) < count:
            try:
                found.append(await self.log.create_session(
                    "earliest", ack_wait=c.ack_wait, max_in_flight=c.max_in_flight,
                    max_deliveries=c.max_deliveries, ttl=c.session_ttl))
            except LogUnavailable:
                await self.retry_pause()
        return found

    async def produce(self, index: int = 0) -> None:
        """Append every record from ``index`` on (earlier ones are in the log already,
        from a run this one resumes), retrying while the server is unavailable. Each
        append names its first record as its idempotency key, so a retry of an append
        whose answer was lost (the server died after committing it) stores nothing."""
        c = self.config
        while index < c.records:
            n = min(c.append_batch, c.records - index)
            entries = [self.entry(index + i) for i in range(n)]
            while True:
                try:
                    appended = await self.log.append(
                        entries, idempotency_key=f"records-{index}")
                    break
                except LogUnavailable:
                    await self.retry_pause()
            self.journal.appended.append((appended.first_seq, index, n, self.wall()))
            index += n
            if c.append_rate > 0:
                await self.rt.sleep(n / c.append_rate)

    async def touch_once(self, session: str) -> None:
        """One read of an idle session, then it is left alone to expire (a resumed run
        may find it expired already)."""
        while True:
            try:
                await self.log.read(session, self.config.read_batch, 0.0)
                return
            except SessionExpired:
                return
            except LogUnavailable:
                await self.retry_pause()

    async def start_readers(self, sessions: list[str]) -> Supervisor:
        sup = await self.rt.spawn_supervisor(
            "readers", max_restarts=100_000, within=1.0,
            backoff=Backoff(min=0.01, max=0.2, jitter=0.2))
        for s, session in enumerate(sessions):
            for c in range(self.config.clients_per_session):
                await sup.spawn(Reader, self, session, name=f"reader.s{s}.c{c}")
        return sup


class Reader(Actor[Poll]):
    """Reads one session, processes, acknowledges; knows only the session id."""

    mailbox_capacity = 16

    def __init__(self, workload: Workload, session: str) -> None:
        self.workload = workload
        self.session = session
        self.chain = 0

    async def started(self) -> None:
        w = self.workload
        w.journal.incarnations[self.name] = w.journal.incarnations.get(self.name, 0) + 1
        self.chain = w.next_chain()
        self.send_after(0.0, Poll(self.chain))

    async def receive(self, msg: Poll) -> object:
        w = self.workload
        if msg.chain != self.chain or w.stopping or self.session in w.journal.expired:
            return None
        c = w.config
        try:
            result = await w.log.read(self.session, c.read_batch, c.read_wait)
        except SessionExpired:
            w.journal.expired[self.session] = w.wall()
            return None
        except LogUnavailable:
            await w.retry_pause()
            self.send_after(0.0, Poll(self.chain))
            return None
        if result.records:
            await self._handle(result)
        self.send_after(0.0, Poll(self.chain))
        return None

    async def _handle(self, result: ReadResult) -> None:
        w = self.workload
        assert result.ack_deadline is not None
        batch = Batch(self.name, w.wall(), result.ack_deadline,
                      [r.seq for r in result.records], [r.delivery for r in result.records],
                      w.journal.incarnations[self.name])
        w.journal.batches.setdefault(self.session, []).append(batch)
        await self.fault_point("holding unacknowledged records")
        delay = float(w.config.process_time)
        slow = w.rt.faults.fire("slow", self.name)
        if slow is not None:
            w.journal.slowed += 1
            delay += slow.delay
        if delay > 0:
            await w.rt.sleep(delay)
        if w.rt.faults.fire("poison", self.name) is not None:
            w.journal.poisoned += 1
            return
        batch.ack_sent = w.wall()
        try:
            acked = await w.log.ack(self.session, zip(batch.seqs, batch.deliveries,
                                                      strict=True))
        except LogUnavailable:
            batch.ack_failed = True
            w.journal.unavailable += 1
            return
        except LogDeliveryError as exc:  # SessionExpired, or a server bug (NotDelivered)
            batch.ack_failed = True
            if not isinstance(exc, SessionExpired):
                w.journal.problems.append(f"{self.name}: ack refused: {exc}")
            return
        batch.ack_done = w.wall()
        batch.superseded = acked.superseded
        w.journal.superseded += len(acked.superseded)
