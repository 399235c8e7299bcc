"""The deployment controller as a cluster entity (a run across nodes).

Contract:

- The driver (the node that checks the invariants) writes the deployment's
  recipe (``_recipe``) and then pokes the entity
  ``DeploymentControllerEntity/<deployment>`` with ``ReadDeployment`` every
  ``tick``; the first poke activates it on the node rendezvous hashing
  picks among the nodes hosting the kind.
- The entity builds itself from the recipe in ``recover`` (an entity is
  handed no Python object) and then recovers exactly as the in-process
  controller does: the whole deployment state is in the store, so after
  its node dies the next poke activates it on a survivor, which replays a
  pending step or continues a bake to its stored deadline, and judges the
  same samples (the metrics are store logs).
- It writes the state under its lease's fence: a paused node that wakes
  up after the entity moved cannot overwrite a later decision.
- The hosts are entities too (``_host_entity``), spread over the nodes; it
  tells them their assignments through entity refs, which re-send until
  the host has it. A host that missed one still reads its record, when it
  starts and at every report, and a replayed step tells every host again.
"""

from __future__ import annotations

from actors.deploy._controller import DeploymentController
from actors.deploy._host import Assign
from actors.deploy._host_entity import DeploymentHostEntity, host_entity_key
from actors.deploy._recipe import actor_prefix, node_context
from runtime import ShardlineError
from runtime.store import Fence


class DeploymentControllerEntity(DeploymentController):
    """``DeploymentController`` activated by key (the deployment id) on any node."""

    def __init__(self) -> None:  # built from the stored recipe in recover
        pass

    async def started(self) -> None:
        """The fleet ledger is the driver's; nothing to note here."""

    async def recover(self) -> None:
        DeploymentController.__init__(self, await node_context(self.runtime, self.entity_key))
        await super().recover()

    @property
    def fault_names(self) -> tuple[str, ...]:
        """A fault plan strikes it by the name the controller has in one process."""
        prefix = actor_prefix(self.runtime, self.entity_key)
        return () if prefix is None else (f"{prefix}.controller",)

    def _tell_host(self, host: str, msg: Assign) -> None:
        key = host_entity_key(self.spec.deployment, host)
        try:
            self.runtime.entity(DeploymentHostEntity, key).tell_nowait(msg)
        except ShardlineError as exc:  # the host reads its record at its next report
            self.log.warning("deploy.assign_unsent", host=host, error=str(exc))

    def _fence(self) -> Fence | None:
        return self.fence
