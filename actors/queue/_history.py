"""Reading back what the servers journaled: every message, and every decision.

The checks and the lineage report are computed from this durable record,
not from what the actors believed while running. A server's journal is
compacted as it runs: the entries below its floor are in the pipeline's
audit (``runtime.scenario.Audit``) when it has one, the rest in the store.
A journal the two do not hold whole is listed in ``History.gaps`` (the
strict-order check fails on it): a compacted store is checked whole or not
at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.queue import _journal as journal
from actors.queue._journal import JournalEvent, MessagesEnqueued
from actors.queue._messages import QueuedMessage
from runtime import StoreError
from runtime.scenario import Audit, read_whole_log
from runtime.store import Store


@dataclass(frozen=True, slots=True)
class Stored:
    """A message as first enqueued: on which queue and server, at which offset."""

    queue: str
    server: int
    offset: int
    message: QueuedMessage


@dataclass
class History:
    events: list[list[JournalEvent]] = field(default_factory=list)
    """Per server, every journaled event in journal order."""
    messages: dict[str, Stored] = field(default_factory=dict)
    children: dict[str, list[str]] = field(default_factory=dict)
    """Parent id -> ids of the messages made from it."""
    gaps: list[str] = field(default_factory=list)
    """Journals that were compacted and are not whole in the audit (what is missing)."""

    def path_from(self, ident: str) -> list[Stored]:
        """The messages ``ident`` flowed into, tier by tier (first child at each step)."""
        path: list[Stored] = []
        while True:
            kids = self.children.get(ident)
            if not kids:
                return path
            ident = kids[0]
            path.append(self.messages[ident])


async def read_history(store: Store, cluster: str, servers: int,
                       audit: Audit | None = None) -> History:
    """Every server's journal: the audit's entries (if any) below the store's floor,
    the store's from there."""
    history = History()
    for server in range(servers):
        events: list[JournalEvent] = []
        try:
            entries = await read_whole_log(store, audit, journal.journal_log(cluster, server))
        except StoreError as incomplete:
            history.gaps.append(f"server {server}: {incomplete}")
            entries = []
        for entry in entries:
            events.extend(journal.decode_entry(entry.payload).events)
        history.events.append(events)
        messages = history.messages
        children = history.children
        for e in events:
            if not isinstance(e, MessagesEnqueued):
                continue
            for offset, message in enumerate(e.messages, e.first_offset):
                if message.id in messages:
                    continue
                messages[message.id] = Stored(e.queue, server, offset, message)
                for parent in message.parents:
                    children.setdefault(parent, []).append(message.id)
    return history

