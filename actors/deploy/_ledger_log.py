"""The fleet ledger across nodes: hosts on nodes journal it, the driver replays it.

When hosts run on cluster nodes (``actors.deploy._entity``) the driver,
which checks the invariants, cannot see their memory. Each node's hosts
record into a :class:`LedgerJournal` (same calls as :class:`FleetLedger`)
instead, and a host writes what the journal holds to the store log
``keys.ledger_log(deployment)`` at every report (and when it stops). The
driver follows that log with a :class:`LedgerFollower`, replaying every
entry into its own :class:`FleetLedger`, so the checks read the same ledger
as in one process.

What a host served since its last write dies with its node if the node is
SIGKILLed (as its unpublished metrics do): at most one ``report_interval``
of its traffic is missing from the ledger, never invented.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._ledger import Applied, FleetLedger
from runtime.store import Append, Store

_PAGE = 1000


class Served(msgspec.Struct, frozen=True, tag=True):
    step: str
    variant: str
    configs: dict[str, str]
    requests: int
    errors: int
    time: float


class Noted(msgspec.Struct, frozen=True, tag=True):
    time: float
    kind: str
    target: str


class Started(msgspec.Struct, frozen=True, tag=True):
    time: float
    actor: str


class Lost(msgspec.Struct, frozen=True, tag=True):
    """Requests served but never reported (a crash, a silenced host)."""

    requests: int
    silenced_report: bool = False


LedgerEntry = Served | Noted | Started | Lost | Applied
_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(list[LedgerEntry]).decode


class LedgerJournal(FleetLedger):
    """A :class:`FleetLedger` that keeps what it is told as entries to write."""

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[LedgerEntry] = []

    def note(self, time: float, kind: str, target: str) -> None:
        self.entries.append(Noted(time, kind, target))

    def started(self, time: float, actor: str) -> None:
        self.entries.append(Started(time, actor))

    def served(self, step: str, variant: str, configs: Mapping[str, str], requests: int,
               errors: int, time: float) -> None:
        if requests > 0:
            self.entries.append(Served(step, variant, dict(configs), requests, errors, time))

    def measured(self, latencies: Iterable[float]) -> None:
        """Not journaled: one value per request would cost a store write per request's
        worth of bytes; the driver's probe reports counts only across nodes."""

    def applied_revision(self, time: float, host: str, revision: int, step: str,
                         how: str) -> None:
        self.entries.append(Applied(time, host, revision, step, how))

    def lost(self, requests: int, *, silenced_report: bool = False) -> None:
        self.entries.append(Lost(requests, silenced_report))

    async def write(self, store: Store, deployment: str) -> None:
        """Append what is journaled to the ledger log (kept for the next try if the
        write fails: ``StoreError`` propagates)."""
        if not self.entries:
            return
        entries = self.entries
        self.entries = []
        try:
            await store.write([Append(keys.ledger_log(deployment),
                                      [("ledger", _encode(entries))])])
        except BaseException:
            self.entries[:0] = entries
            raise


def replay(ledger: FleetLedger, entry: LedgerEntry) -> None:
    """Apply one journaled entry to the driver's ledger."""
    match entry:
        case Served():
            ledger.served(entry.step, entry.variant, entry.configs, entry.requests,
                          entry.errors, entry.time)
        case Noted():
            ledger.note(entry.time, entry.kind, entry.target)
        case Started():
            ledger.started(entry.time, entry.actor)
        case Lost():
            ledger.lost(entry.requests, silenced_report=entry.silenced_report)
        case Applied():
            ledger.applied.append(entry)


class LedgerFollower:
    """Reads the ledger log of one deployment from where it stopped, into ``ledger``."""

    def __init__(self, store: Store, deployment: str, ledger: FleetLedger) -> None:
        self.store = store
        self.log = keys.ledger_log(deployment)
        self.ledger = ledger
        self.next_seq = 0

    async def skip_past(self) -> None:
        """Follow only what is written from now on (a resumed deployment's earlier runs
        served traffic this run does not check)."""
        self.next_seq = await self.store.high_water(self.log)

    async def catch_up(self) -> None:
        while True:
            page = await self.store.read(self.log, self.next_seq, _PAGE)
            for item in page:
                for entry in _decode(item.payload):
                    replay(self.ledger, entry)
            if page:
                self.next_seq = page[-1].seq + 1
            if len(page) < _PAGE:
                return
