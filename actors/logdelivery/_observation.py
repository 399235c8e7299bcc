"""The log system's probe for runtime sampling, read off the scenario journal.

Counts each record the first time a session hands it to a reader (so a
redelivery after a reader crash is not counted twice) and measures, per
read batch, the time from the producer's append being acknowledged to the
reader receiving the batch's first record (wall clock, as the journal
stamps both).
"""

from __future__ import annotations

import bisect

from actors.logdelivery._workload import Journal
from runtime.scenario import Observation


class LogProbe:
    """Incremental reader of a :class:`Journal` (its lists are append-only)."""

    def __init__(self, journal: Journal, sessions: list[str]) -> None:
        self._journal = journal
        self._sessions = sessions
        self._cursor = dict.fromkeys(sessions, 0)
        self._delivered = 0
        self._latencies: list[float] = []

    def __call__(self) -> Observation:
        journal = self._journal
        appended = journal.appended
        first_seqs = [a[0] for a in appended]
        for session in self._sessions:
            batches = journal.batches.get(session, [])
            start = self._cursor[session]
            for batch in batches[start:]:
                self._delivered += sum(1 for d in batch.deliveries if d == 1)
                if batch.seqs:
                    at = bisect.bisect_right(first_seqs, batch.seqs[0]) - 1
                    if at >= 0:
                        self._latencies.append(max(0.0, batch.at - appended[at][3]))
            self._cursor[session] = len(batches)
        produced = sum(a[2] for a in appended) * len(self._sessions)
        return Observation(completed=self._delivered, latencies=self._latencies,
                           in_flight=max(0, produced - self._delivered),
                           unit="records delivered")
