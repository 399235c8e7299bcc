"""A queue server's state (``ServerState``, internal) on a hand-set clock, with its
journal kept in a list: for the tests that pin the state's own rules."""

from __future__ import annotations

from actors.queue._journal import JournalEntry, JournalEvent, decode_entry, encode
from actors.queue._settings import ServerSettings
from actors.queue._state import ServerState


class JournaledState:
    """``state`` changes only through ``commit`` (journaled first, then applied), so
    ``replayed`` rebuilds it as a recovery would."""

    def __init__(self, settings: ServerSettings, at: float = 100.0) -> None:
        self.settings = settings
        self.at = at
        self.journal: list[tuple[int, bytes]] = []
        self.state = self._fresh()

    def _fresh(self) -> ServerState:
        return ServerState(0, self.settings, lambda: self.at, lambda: self.at)

    def commit(self, events: list[JournalEvent]) -> None:
        if events:
            seq = len(self.journal)
            self.journal.append((seq, encode(JournalEntry(events))))
            self.state.apply(events, seq)

    def replayed(self, from_seq: int = 0, read: float = 0.0) -> ServerState:
        """A fresh state from the journal from ``from_seq``; each entry's read takes
        ``read`` s of the clock."""
        state = self._fresh()
        for seq, payload in self.journal:
            if seq >= from_seq:
                state.apply(decode_entry(payload).events, seq, live=False)
                self.at += read
        return state

    def recover(self, from_seq: int = 0, read: float = 0.0) -> None:
        """Replace the state by its replay (see ``replayed``)."""
        self.state = self.replayed(from_seq, read)
