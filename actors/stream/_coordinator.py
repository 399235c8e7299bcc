"""The coordinator: grants partition leases and spreads them evenly.

Every ``rebalance_interval`` it looks at the leases in the store (the
source of truth, so a restarted coordinator needs no state of its own):

- a partition with no live lease (never granted, expired, released, or
  held by a worker that has stopped for good) is granted to the live worker
  holding the fewest, with a fencing token larger than every earlier one;
- a worker holding more than its share (``ceil(partitions / workers)``) is
  asked to hand one back, which the next round grants elsewhere.

A lease held by a worker that has stopped for good is revoked at once:
the dead cannot write, so waiting out the TTL would only delay recovery. A
lease that *expired* is not granted back to the worker that let it expire
while another worker is live: a worker that stops renewing is paused or
partitioned, and handing it the partition again would stall it further.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from actors.stream import _keys as keys
from actors.stream._messages import Assign, CoordinatorMsg, Rebalance, Revoke
from runtime import Actor, ActorRef, Terminated

if TYPE_CHECKING:
    from actors.stream._job import StreamJob


class Coordinator(Actor[CoordinatorMsg]):
    def __init__(self, job: StreamJob) -> None:
        self.job = job
        self.seen_owner: dict[int, str] = {}

    async def started(self) -> None:
        for worker in self.job.workers:
            self.watch(worker)
        self.send_after(0.0, Rebalance())
        self.send_every(self.job.config.rebalance_interval, Rebalance())

    async def receive(self, msg: CoordinatorMsg) -> object:
        match msg:
            case Rebalance():
                await self._rebalance()
            case Terminated():
                await self._rebalance()
        return None

    async def _rebalance(self) -> None:
        job = self.job
        config = job.config
        store = self.runtime.store
        live: dict[str, ActorRef[Any]] = {w.name: w for w in job.workers if w.alive}
        load: dict[str, list[int]] = {name: [] for name in live}
        owner_of: dict[int, str] = {}
        for lease in await store.leases(keys.lease_prefix(config.name)):
            partition = keys.partition_from_lease(lease.key)
            if lease.owner in live:
                owner_of[partition] = lease.owner
                load[lease.owner].append(partition)
            else:
                await store.revoke(lease.key)
        if not live:
            return
        share = math.ceil(config.partitions / len(live))
        lapsed = {p: owner for p, owner in self.seen_owner.items() if p not in owner_of}
        self.seen_owner = dict(owner_of)
        for partition in range(config.partitions):
            if partition in owner_of:
                continue
            candidates = [n for n in live if n != lapsed.get(partition)] or list(live)
            name = min(candidates, key=lambda n: (len(load[n]), n))
            granted = await store.acquire(keys.lease_key(config.name, partition), name,
                                          config.lease_ttl)
            if granted is None:
                continue
            previous = job.metrics.last_owner.get(partition)
            if previous is not None and previous != name:
                job.metrics.lease_moves += 1
            job.metrics.last_owner[partition] = name
            load[name].append(partition)
            self.seen_owner[partition] = name
            self.runtime.trace.record(self.runtime.now(), "lease_acquired", name,
                                      f"p{partition} token {granted.token}")
            self.log.info("lease.acquired", partition=partition, worker=name, token=granted.token)
            await live[name].tell(Assign(partition, granted.token))
        for name, held in load.items():
            if len(held) > share:
                await live[name].tell(Revoke(max(held)))
