"""Lease balancing among the node workers of a stream, as Kinesis' KCL does it.

Policy (read this before the mechanism):

- There is no coordinator. Each node's :class:`Balancer` holds a *worker
  lease* (``keys.worker_lease_key``) while it lives, renewed every
  ``rebalance_interval``; the live workers are the holders of worker leases
  and of partition leases (a worker holding a partition is live until that
  lease expires), itself included.
- A worker's share is ``ceil(partitions / live workers)``. Every round, a
  worker holding fewer partition leases than its share first takes leases
  that nobody holds (never granted, released, or expired), as many as it
  lacks; if there are none, it steals **one** lease from the most loaded
  worker, when that worker holds more than the share, or exactly the share
  while this worker lacks more than one (so ``8`` partitions over ``3``
  workers settle at 3, 3, 2 and stay there).
- A steal is a fresh grant: the lease is expired and acquired at once, so
  it carries a fencing token larger than the victim's, and the victim's
  next fenced write (its pending record or its commit) is refused by the
  store. The victim finds out at its next renewal and lets the partition go;
  the thief replays the pending batch, which the destination overwrites by
  batch id.
- The partition's single-writer role moves with the lease: on every fresh
  grant the balancer starts a new partition actor on its node (reading the
  checkpoint from the store, never a cache from an earlier epoch) before it
  tells its worker ``Assign``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING

import msgspec

from actors.stream import _keys as keys
from actors.stream._messages import Assign, PartitionMsg, WorkerMsg
from actors.stream._partition import Partition
from runtime import Actor, ActorRef, Message, Supervisor

if TYPE_CHECKING:
    from actors.stream._job import StreamJob


class Take(msgspec.Struct, frozen=True):
    """Acquire ``partition``'s lease; ``victim`` names the holder a steal ousts."""

    partition: int
    victim: str = ""


def share_of(partitions: int, workers: int) -> int:
    """The leases a worker should hold: ``ceil(partitions / workers)``."""
    return math.ceil(partitions / max(1, workers))


def plan_takes(me: str, partitions: int, owners: Mapping[int, str], workers: Set[str],
               pick: Callable[[list[int]], int]) -> list[Take]:
    """The leases ``me`` should take this round (see the module policy).

    ``owners`` maps each partition with an unexpired lease to its holder;
    ``workers`` are the holders of worker leases. ``pick`` chooses one of a
    list (the caller's seeded generator), so workers do not all reach for
    the same free partition or victim.
    """
    live = set(workers) | set(owners.values()) | {me}
    share = share_of(partitions, len(live))
    load: dict[str, list[int]] = {worker: [] for worker in live}
    for partition, owner in sorted(owners.items()):
        load[owner].append(partition)
    lacking = share - len(load[me])
    if lacking <= 0:
        return []
    free = [p for p in range(partitions) if p not in owners]
    if free:
        takes: list[Take] = []
        while free and len(takes) < lacking:
            chosen = pick(free)
            free.remove(chosen)
            takes.append(Take(chosen))
        return takes
    victim = max((w for w in load if w != me), key=lambda w: (len(load[w]), w), default=None)
    if victim is None:
        return []
    held = len(load[victim])
    if held > share or (held == share and lacking > 1):
        return [Take(pick(load[victim]), victim)]
    return []


@dataclass
class LeaseTally:
    """What one node's balancing did (kept outside the actor, so restarts keep it)."""

    taken: int = 0
    stolen: int = 0


class Balance(Message, frozen=True):
    """Balancer -> itself: renew the worker lease, take what this worker lacks."""


class Balancer(Actor[Balance]):
    """One node's lease balancing for one stream; its worker does the processing.

    ``partitions`` is the node's list of partition-actor refs (the worker
    reads the same list): a fresh grant replaces the entry for its partition.
    """

    def __init__(self, job: StreamJob, worker: ActorRef[WorkerMsg], worker_name: str,
                 supervisor: Supervisor, tally: LeaseTally) -> None:
        self.job = job
        self.worker = worker
        self.worker_name = worker_name
        self.supervisor = supervisor
        self.tally = tally

    async def started(self) -> None:
        self.send_after(0.0, Balance())
        self.send_every(self.job.config.rebalance_interval, Balance())

    async def receive(self, msg: Balance) -> None:
        config = self.job.config
        store = self.runtime.store
        me = self.worker_name
        await store.acquire(keys.worker_lease_key(config.name, me), me, config.lease_ttl)
        workers = {lease.owner for lease in
                   await store.leases(keys.worker_lease_prefix(config.name))}
        owners = {keys.partition_from_lease(lease.key): lease.owner
                  for lease in await store.leases(keys.lease_prefix(config.name))}
        for take in plan_takes(me, config.partitions, owners, workers, self.random.choice):
            await self._take(take)

    async def _take(self, take: Take) -> None:
        config = self.job.config
        store = self.runtime.store
        key = keys.lease_key(config.name, take.partition)
        if take.victim:
            await store.revoke(key)
        lease = await store.acquire(key, self.worker_name, config.lease_ttl)
        if lease is None:  # another worker was quicker; the next round looks again
            return
        partition = take.partition
        await self._fresh_writer(partition)
        metrics = self.job.metrics
        self.tally.taken += 1
        self.tally.stolen += bool(take.victim)
        metrics.lease_moves += 1
        metrics.last_owner[partition] = self.worker_name
        how = f"stolen from {take.victim}" if take.victim else "free"
        self.runtime.trace.record(self.runtime.now(), "lease_acquired", self.worker_name,
                                  f"p{partition} token {lease.token} ({how})")
        self.log.info("lease.acquired", partition=partition, worker=self.worker_name,
                      token=lease.token, victim=take.victim)
        await self.worker.tell(Assign(partition, lease.token))

    async def _fresh_writer(self, partition: int) -> None:
        """Start a new partition actor for ``partition`` (its checkpoint read afresh)."""
        refs = self.job.partitions
        old = refs[partition]
        if old.alive:
            await self.runtime.stop(old)
        refs[partition] = await spawn_writer(self.job, self.supervisor, partition, old.name)


async def spawn_writer(job: StreamJob, supervisor: Supervisor, partition: int,
                       name: str) -> ActorRef[PartitionMsg]:
    """A partition actor (the single writer of the checkpoint) on this node."""
    config = job.config
    return await supervisor.spawn_retrying(Partition, job, partition, name=name,
                                           backoff=config.restart_backoff,
                                           attempts=config.max_restarts)
