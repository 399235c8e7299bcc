"""The driver's count of a queue run across nodes, read from the servers' journals.

Across nodes the servers (entities) keep their counters on the nodes they run on, and
an activation's counters start at zero wherever it lands. The journals are the one
record every activation continues: :class:`JournalTail` replays each server's journal
through a :class:`ServerState` of its own, with the driver's ``QueueMetrics`` attached,
so the driver counts exactly what an in-process server counts (enqueued, deliveries,
redeliveries, acked, returned, dead-lettered, and every acked message's enqueue-to-ack
latency per queue), whichever node wrote each entry and however often a server moved:
every entry is replayed once, in journal order.

Contract:

- ``poll`` reads what each journal gained since the last poll (one store read per
  server and page; entries compacted before the driver read them come from the run's
  audit files, which the servers write before truncating). The run polls it each
  sample interval, so the samples move while the run does.
- ``finish(history)`` replays the rest from the history the checks read (journal order,
  audit and store joined), so the final counts are whole even if a poll was missed.
- A poll that cannot read a journal (a store error, or a truncated entry no audit
  holds yet) leaves that journal for the next poll; ``finish`` replays whatever is
  left, and a journal the history cannot read whole is in ``History.gaps``, which
  fails the checks.
- Event stamps are wall-clock (``ServerState.wall``), so latencies compare stamps
  written on different nodes.
"""

from __future__ import annotations

from actors.queue._cluster import QueueCluster
from actors.queue._history import History
from actors.queue._journal import JournalEvent, decode_entry, journal_log
from actors.queue._metrics import QueueMetrics
from actors.queue._recipe import NodeRecipe
from actors.queue._state import ServerState
from runtime import LogTruncated, StoreError
from runtime.scenario import FileAudit
from runtime.store import LogEntry, Store

_PAGE = 1000


class _Server:
    __slots__ = ("events", "seq", "state")

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.seq = 0
        """The next journal entry to read."""
        self.events = 0
        """Events replayed so far (the index into ``History.events[server]``)."""


class JournalTail:
    """See the module docstring: counts into ``metrics`` from ``cluster``'s journals."""

    def __init__(self, store: Store, cluster: QueueCluster, recipe: NodeRecipe,
                 metrics: QueueMetrics) -> None:
        self.store = store
        self.recipe = recipe
        self.metrics = metrics
        rt = cluster.rt
        self._servers = [_Server(ServerState(i, cluster.settings, rt.now, rt.clock.wall,
                                             metrics))
                         for i in range(len(cluster.server_ids))]

    async def poll(self) -> None:
        """Replay what every journal gained since the last poll."""
        for index, server in enumerate(self._servers):
            log = journal_log(self.recipe.config.name, index)
            while True:
                try:
                    page = await self.store.read(log, server.seq, _PAGE)
                except LogTruncated:
                    page = self._audited(index, log, server.seq)
                    if not page:
                        break
                except StoreError:
                    break  # the next poll tries again
                for entry in page:
                    self._replay(server, decode_entry(entry.payload).events, entry.seq)
                if len(page) < _PAGE:
                    break

    def finish(self, history: History) -> None:
        """Replay what the polls did not reach, from the run's whole history."""
        for server, events in zip(self._servers, history.events, strict=True):
            self._replay(server, events[server.events:], server.seq)

    def _audited(self, index: int, log: str, seq: int) -> list[LogEntry]:
        """Entries of server ``index``'s journal ``log`` from ``seq`` that it handed to
        its audit file before truncating them."""
        if not self.recipe.audit_dir:
            return []
        found = [e for e in FileAudit(self.recipe.audit_file(index)).entries(log)
                 if e.seq >= seq]
        return found if found and found[0].seq == seq else []

    @staticmethod
    def _replay(server: _Server, events: list[JournalEvent], seq: int) -> None:
        server.state.apply(events, seq)
        server.events += len(events)
        server.seq = seq + 1
