"""The driver's half of a stream run across nodes (``shardline run --nodes N``).

The driver runs the producer (and the partition actors it appends
through) and the checks; the workers run on the nodes
(``actors.stream._node_host``). :class:`StreamOnNodes` writes the recipe,
asks every live node to run the stream each ``rebalance_interval`` (a node
started or restarted meanwhile joins within one interval), and keeps the
last report of every node incarnation, so a killed node's counters still
count. Records committed are read from the store's checkpoints, which
every node writes: the driver's own counters would not see them.
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from actors.stream import _keys as keys
from actors.stream._job import StreamJob
from actors.stream._node_host import (
    HOST_NAME,
    NodeStreamReport,
    RunStream,
    StopStream,
    StreamNodeHost,
    StreamRecipe,
    encode_recipe,
)
from runtime import ShardlineError
from runtime.store import Put, without_faults

PER_NODE = ("leases_taken", "leases_stolen", "leases_lost", "committed_batches",
            "redelivered_batches", "late_commits_refused", "stale_refused")
"""The counters the report shows per node."""
ASK_TIMEOUT = 1.0
"""Seconds a node's host may take to answer a poke (a paused node does not)."""


class StreamOnNodes:
    """Drive ``job``'s workers on the cluster's nodes; see the module docstring."""

    def __init__(self, job: StreamJob, destination: str) -> None:
        self.job = job
        self.destination = destination
        self.reports: dict[tuple[str, float], NodeStreamReport] = {}
        self.latest: dict[str, NodeStreamReport] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Coroutine: write the recipe, then poke the nodes until ``stop``."""
        job = self.job
        recipe = StreamRecipe(job.config, self.destination, job.seed)
        await without_faults(job.rt.store).write(
            [Put(keys.recipe_key(job.config.name), encode_recipe(recipe))])
        await self.poke()
        self._task = asyncio.get_running_loop().create_task(self._poking())

    async def _poking(self) -> None:
        interval = self.job.config.rebalance_interval
        while True:
            await self.job.rt.sleep(interval)
            await self.poke()

    def _nodes(self) -> list[str]:
        rt = self.job.rt
        return [node for node in rt.nodes() if node != rt.node_name]

    async def poke(self) -> None:
        """Ask every live node to run the stream; tally what they answer."""
        rt = self.job.rt
        stream = self.job.config.name

        async def ask(node: str) -> None:
            try:
                reply = await rt.remote(node, HOST_NAME, StreamNodeHost).ask(
                    RunStream(stream), timeout=ASK_TIMEOUT)
            except ShardlineError:  # down, paused or starting: the next poke asks again
                return
            report = msgspec.convert(reply, NodeStreamReport)
            self.reports[(report.node, report.started_at)] = report
            self.latest[report.node] = report

        await asyncio.gather(*(ask(node) for node in self._nodes()))
        await self._tally()

    async def _tally(self) -> None:
        """The job's counters: summed over node incarnations; commits from the store.

        ``lease_moves`` counts every grant the nodes' balancers made (a partition's
        first grant included; the in-process coordinator counts changes of owner).
        """
        job = self.job
        m = job.metrics
        reports = list(self.reports.values())
        for field in ("committed_batches", "delivered_records", "delivered_batches",
                      "redelivered_batches", "destination_failures",
                      "late_commits_refused", "stale_refused", "leases_lost"):
            setattr(m, field, sum(getattr(r, field) for r in reports))
        m.lease_moves = sum(r.leases_taken for r in reports)
        found = await job.checkpoints()
        m.committed_records = sum(c.next_seq for c, _ in found) - sum(job.start_seqs)
        now = job.rt.now()
        if m.committed_records and m.first_commit_at is None:
            m.first_commit_at = now
        if m.committed_records:
            m.last_commit_at = now

    def per_node(self) -> dict[str, dict[str, object]]:
        """Per node: the partitions its worker held at its latest report, how many
        incarnations reported, and the counters of :data:`PER_NODE` summed over
        them (a killed incarnation's last report counts)."""
        found: dict[str, dict[str, object]] = {}
        for node, latest in sorted(self.latest.items()):
            mine = [r for (n, _), r in self.reports.items() if n == node]
            found[node] = {"held": latest.held, "incarnations": len(mine),
                           **{f: sum(getattr(r, f) for r in mine) for f in PER_NODE}}
        return found

    async def stop(self) -> None:
        """Coroutine: stop poking and stop the stream on every live node."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.poke()
        rt = self.job.rt
        stream = self.job.config.name

        async def stop(node: str) -> None:
            with contextlib.suppress(ShardlineError):
                await rt.remote(node, HOST_NAME, StreamNodeHost).ask(
                    StopStream(stream), timeout=ASK_TIMEOUT)

        await asyncio.gather(*(stop(node) for node in self._nodes()))
