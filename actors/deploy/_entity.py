"""The deployment controller as a cluster entity (a run across nodes).

Contract:

- The driver (the node that runs the hosts and checks the invariants)
  writes a :class:`DeploymentRecipe` under ``keys.recipe_key(deployment)``
  and then pokes the entity ``DeploymentControllerEntity/<deployment>``
  with ``ReadDeployment`` every ``tick``; the first poke activates it on the
  node rendezvous hashing picks among the nodes hosting the kind.
- The entity builds itself from the recipe in ``recover`` (an entity is
  handed no Python object) and then recovers exactly as the in-process
  controller does: the whole deployment state is in the store, so after
  its node dies the next poke activates it on a survivor, which replays a
  pending step or continues a bake to its stored deadline, and judges the
  same samples (the metrics are store logs).
- It writes the state under its lease's fence: a paused node that wakes
  up after the entity moved cannot overwrite a later decision.
- It tells hosts their assignments through remote refs to the driver.
  The transport is at most once; a host that missed one still has its
  record, which it reads when it restarts, and a replayed step tells
  every host again.
"""

from __future__ import annotations

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._context import DeploymentContext, DeploymentError
from actors.deploy._controller import DeploymentController
from actors.deploy._host import Assign, DeploymentHost
from actors.deploy._spec import DeploymentSpec
from runtime import ShardlineError
from runtime._durations import decode_seconds, encode_seconds
from runtime.store import Fence


class DeploymentRecipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """What a node needs to run a deployment's controller: the spec, the name its
    actors carry, and the node whose hosts it drives."""

    spec: DeploymentSpec
    name: str
    driver: str


encode_recipe = msgspec.msgpack.Encoder(enc_hook=encode_seconds).encode
_decode_recipe = msgspec.msgpack.Decoder(DeploymentRecipe, dec_hook=decode_seconds).decode


class DeploymentControllerEntity(DeploymentController):
    """``DeploymentController`` activated by key (the deployment id) on any node."""

    def __init__(self) -> None:  # built from the stored recipe in recover
        self.driver = ""

    async def started(self) -> None:
        """The fleet ledger lives with the hosts on the driver; nothing to note here."""

    async def recover(self) -> None:
        deployment = self.entity_key
        stored = await self.runtime.store.get(keys.recipe_key(deployment))
        if stored is None:
            raise DeploymentError(f"deployment {deployment!r}: no recipe in the store; "
                                  "the driver writes it before the first message")
        recipe = _decode_recipe(stored.value)
        DeploymentController.__init__(self, DeploymentContext(
            self.runtime, recipe.spec, metrics_name=f"{recipe.name}.metrics"))
        self.driver = recipe.driver
        await super().recover()

    def _tell_host(self, host: str, msg: Assign) -> None:
        try:
            self.runtime.remote(self.driver, host, DeploymentHost).tell_nowait(msg)
        except ShardlineError as exc:  # the host reads its record when it restarts
            self.log.warning("deploy.assign_unsent", host=host, error=str(exc))

    def _fence(self) -> Fence | None:
        return self.fence
