"""A deployment host as a cluster entity: the hosts of a run across nodes.

Contract:

- Host ``h`` of deployment ``d`` is the entity
  ``DeploymentHostEntity/<d>/<h>`` (:func:`host_entity_key`), placed by
  rendezvous hashing over the nodes hosting the kind, so a fleet's hosts
  spread over the nodes. The driver pokes every host every ``tick``; the
  first poke activates it, and after its node dies (or is paused past its
  lease) the next poke activates it on a survivor.
- It builds itself from the deployment's recipe (``_recipe``) and then
  recovers as the in-process host does: it reads its assignment record,
  so a host that moved serves exactly the versions assigned to it.
- Push for speed, pull for safety: the controller tells it each new
  assignment, and at every report it also re-reads its record from the
  store, so a host cut off from the controller's node by a partition
  (the store still reachable) converges within one ``report_interval``.
- At every report, and when its activation stops, it writes the node's
  ledger journal to the store for the driver's checks (``_ledger_log``).
- ``Retire`` (the driver, when the run is over): publish, journal, stop.
"""

from __future__ import annotations

import contextlib

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._host import DeploymentHost, HostStatus
from actors.deploy._ledger_log import LedgerJournal
from actors.deploy._recipe import node_context
from actors.deploy._records import Assignment
from runtime import ShardlineError

_decode_assignment = msgspec.msgpack.Decoder(Assignment).decode


def host_entity_key(deployment: str, host: str) -> str:
    return f"{deployment}/{host}"


def status_of(reply: object) -> HostStatus:
    """A ``ReadHostStatus`` reply (remote replies arrive as plain data)."""
    return reply if isinstance(reply, HostStatus) else msgspec.convert(reply, HostStatus)


class DeploymentHostEntity(DeploymentHost):
    """``DeploymentHost`` activated by key (``<deployment>/<host>``) on any node."""

    def __init__(self) -> None:  # built from the stored recipe in recover
        self.deployment, _, self.host = "", "", ""

    @property
    def host_name(self) -> str:
        return self.host

    async def started(self) -> None:
        """Building waits for the recipe (``recover``)."""

    async def recover(self) -> None:
        self.deployment, _, self.host = self.entity_key.rpartition("/")
        DeploymentHost.__init__(self, await node_context(self.runtime, self.deployment))
        await DeploymentHost.started(self)
        await super().recover()

    async def stopped(self) -> None:
        if not hasattr(self, "ctx"):  # recover never built it
            return
        await super().stopped()
        with contextlib.suppress(ShardlineError):  # best effort: the store may be gone too
            await self._journal()

    async def _flush(self) -> None:
        await self._pull_assignment()
        await super()._flush()
        try:
            await self._journal()
        except ShardlineError as exc:  # kept for the next report
            self.log.warning("host.ledger_unsent", error=str(exc))

    async def _pull_assignment(self) -> None:
        try:
            stored = await self.runtime.store.get(
                keys.host_key(self.ctx.spec.deployment, self.host))
        except ShardlineError as exc:
            self.log.warning("host.assignment_unread", error=str(exc))
            return
        if stored is not None:
            assignment = _decode_assignment(stored.value)
            if assignment.revision > self.assignment.revision:
                self._apply(assignment, "pull")

    async def _journal(self) -> None:
        journal = self.ctx.ledger
        assert isinstance(journal, LedgerJournal)
        await journal.write(self.runtime.store, self.ctx.spec.deployment)
