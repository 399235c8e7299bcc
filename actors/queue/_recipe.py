"""``NodeRecipe``: what every node needs to take part in a pipeline run across nodes.

The driver writes it under ``queue-nodes/<pipeline>`` before it sends any request, and
again with ``running = False`` when the run ends. Server entities build themselves from
it (``_entity``); every node's :class:`~actors.queue._nodes.NodeClients` starts the
pipeline's clients while it says ``running`` and stops them when it no longer does.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from actors.queue._config import QueueConfig
from actors.queue._pipeline import queue_cluster
from actors.queue._settings import ServerSpec
from runtime import Runtime, ShardlineError
from runtime._durations import seconds_dec_hook, seconds_enc_hook
from runtime.store import Store

RECIPES = "queue-nodes/"
"""Key prefix of the recipes (one per pipeline name)."""


class NodeRecipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The pipeline's configuration and seed, where its servers keep their audits, and
    whether the run is on. ``run`` tells one run's recipe from the next on the same store."""

    config: QueueConfig
    seed: int
    run: int
    running: bool = True
    audit_dir: str = ""
    """Directory of the servers' audit files (one per server), "" for none. Nodes on one
    machine share it; nodes elsewhere would need ``checkpoint_every`` high enough that no
    journal is compacted during the run."""

    def audit_file(self, index: int) -> Path:
        return Path(self.audit_dir) / f"queue-{self.config.name}-server-{index}.msgpack"


encode_recipe = msgspec.msgpack.Encoder(enc_hook=seconds_enc_hook).encode
decode_recipe = msgspec.msgpack.Decoder(NodeRecipe, dec_hook=seconds_dec_hook).decode


def recipe_key(pipeline: str) -> str:
    return RECIPES + pipeline


def activations_log(pipeline: str, index: int) -> str:
    """Where server ``index`` notes each activation: the node's name, under its fence."""
    return f"q/{pipeline}/server-{index}/activations"


async def read_recipe(store: Store, pipeline: str) -> NodeRecipe:
    """The pipeline's recipe; ``ShardlineError`` if the driver has not written one."""
    found = await store.get(recipe_key(pipeline))
    if found is None:
        raise ShardlineError(f"queue pipeline {pipeline!r}: no recipe in the store; the "
                             "driver writes it before the first request")
    return decode_recipe(found.value)


def server_spec(rt: Runtime, recipe: NodeRecipe, index: int) -> ServerSpec:
    """Server ``index``'s spec, exactly as the pipeline's ``QueueCluster`` builds it."""
    cluster = queue_cluster(rt, recipe.config)
    if not 0 <= index < len(cluster.server_ids):
        raise ShardlineError(f"queue pipeline {recipe.config.name!r} has "
                             f"{len(cluster.server_ids)} servers, not a server {index}")
    return ServerSpec(recipe.config.name, index, cluster.server_ids, cluster.settings)
