"""Reading back what the servers journaled: every message, and every decision.

The checks and the lineage report are computed from this durable record,
not from what the actors believed while running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from actors.queue import _journal as journal
from actors.queue._journal import JournalEvent, MessagesEnqueued
from actors.queue._messages import QueuedMessage
from runtime.store import Store

_PAGE = 2000


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

    def path_from(self, ident: str) -> list[Stored]:
        """The messages ``ident`` flowed into, tier by tier (first child at each step)."""
        path: list[Stored] = []
        while True:
            kids = self.children.get(ident)
            if not kids:
                return path
            ident = kids[0]
            path.append(self.messages[ident])


async def read_history(store: Store, cluster: str, servers: int) -> History:
    history = History()
    for server in range(servers):
        log = journal.journal_log(cluster, server)
        events: list[JournalEvent] = []
        seq = 0
        while True:
            page = await store.read(log, seq, _PAGE)
            for entry in page:
                events.extend(journal.decode_entry(entry.payload).events)
            seq += len(page)
            if len(page) < _PAGE:
                break
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
