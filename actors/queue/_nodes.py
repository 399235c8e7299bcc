"""A queue pipeline across nodes (``shardline run --nodes N`` / ``[scenario] nodes``).

Who runs what:

- **Servers** are cluster entities (``_entity``): placed on the nodes by rendezvous
  hashing, each under a fenced lease, recovered from its journal where it lands.
- **Clients** of every tier and the final step run on *every* node: each node's
  :class:`NodeClients` (spawned when the node declares the queue's entities) reads the
  pipelines' recipes from the store every ``SCAN`` seconds and starts the clients of
  each running one under a supervisor, receiving under holder names that carry the
  node's name. A killed node's clients die with it; what they held comes back at its
  visibility timeout (or at once when the node's clients start again).
- The **producer**, the **conductor** and the **checks** run in the driver (the run's
  own runtime), which reaches the servers through the same entity refs.

:class:`NodeServers` is the ``QueueCluster`` of both sides: refs to the server entities
instead of spawned servers. Its ``start`` (the driver's) checks the layout only.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from actors.queue._cluster import QueueCluster
from actors.queue._entity import QueueServerEntity, ServerEntityRef
from actors.queue._journal import journal_log
from actors.queue._pipeline import QueuePipeline
from actors.queue._recipe import (
    RECIPES,
    NodeRecipe,
    activations_log,
    decode_recipe,
    encode_recipe,
    recipe_key,
)
from runtime import (
    Actor,
    BackgroundTasks,
    ConflictError,
    Message,
    Runtime,
    ShardlineError,
    StoreError,
    Supervisor,
)
from runtime.scenario import Audit, FileAudit
from runtime.store import Put, Store, without_faults

NODE_CLIENTS = "queue.node-clients"
SCAN = 0.5
"""Seconds between a node's reads of the recipes."""


class NodeServers(QueueCluster):
    """A ``QueueCluster`` whose servers are entities; see the module docstring."""

    def __init__(self, rt: Runtime, **options: object) -> None:
        super().__init__(rt, **options)  # type: ignore[arg-type]
        self.refs = [ServerEntityRef(rt, self.name, i) for i in range(len(self.server_ids))]
        self.servers = list(self.refs)

    async def claim_sender(self) -> str:
        """Number this client of the servers in the store, once: its request ids carry
        the number, so no two clients' ids meet in a server's memory of answers, even
        a node's clients before and after it restarted (a seeded generator, or a node
        process, would draw the same ids again)."""
        store = without_faults(self.rt.store)
        key = f"q/{self.name}/senders"
        while True:
            found = await store.get(key)
            number = int(found.value) + 1 if found is not None else 1
            try:
                await store.write([Put(key, b"%d" % number, found.version if found else 0)])
            except ConflictError:
                continue
            sender = f"{self.rt.node_name}#{number}"
            for ref in self.refs:
                ref.sender = sender
            return sender

    async def start(self, supervisor: Supervisor | None = None) -> None:
        """The servers activate on demand: check the store's layout, claim a sender."""
        await self._check_layout()
        await self.claim_sender()

    async def stop(self) -> None:
        """Nothing to stop here: the server entities live on the nodes."""


def host_node_clients(rt: Runtime) -> None:
    """Declare the server entity and start this node's :class:`NodeClients` (called
    on every node before it serves, with its loop running)."""
    rt.register_entity(QueueServerEntity)
    _starting.spawn(rt.spawn(NodeClients, name=NODE_CLIENTS))


_starting = BackgroundTasks()
"""The spawns of nodes' ``NodeClients`` under way (held until done)."""


class Scan(Message, frozen=True):
    """Timer: read the recipes; start and stop pipelines' clients accordingly."""


class NodeClients(Actor[Scan]):
    """The clients of every running pipeline on this node."""

    mailbox_capacity = 4

    def __init__(self) -> None:
        self.running: dict[str, tuple[int, QueuePipeline]] = {}
        self.failed: set[tuple[str, int]] = set()

    async def started(self) -> None:
        self.send_every(SCAN, Scan())
        self.send_after(0.0, Scan())

    async def receive(self, msg: Scan) -> None:
        try:
            found = await self.runtime.store.scan(RECIPES)
        except StoreError as exc:
            self.log.warning("queue.recipes_unread", error=str(exc))
            return
        wanted = {}
        for _key, stored in found:
            recipe = decode_recipe(stored.value)
            if recipe.running:
                wanted[recipe.config.name] = recipe
        for name, (run, pipeline) in list(self.running.items()):
            if name not in wanted or wanted[name].run != run:
                del self.running[name]
                await pipeline.stop()
                self.log.info("queue.node_clients_stopped", pipeline=name, run=run)
        for name, recipe in wanted.items():
            if name not in self.running and (name, recipe.run) not in self.failed:
                await self._start(recipe)

    async def _start(self, recipe: NodeRecipe) -> None:
        """Start the clients of ``recipe``; a pipeline this node cannot build (a tier
        function it cannot import, say) is logged once and left to the other nodes."""
        rt = self.runtime
        name = recipe.config.name
        try:
            pipeline = QueuePipeline(rt, recipe.config, seed=recipe.seed,
                                     cluster_type=NodeServers)
        except (ShardlineError, ValueError) as exc:
            self.failed.add((name, recipe.run))
            self.log.error("queue.node_clients_failed", pipeline=name, run=recipe.run,
                           error=str(exc))
            return
        pipeline.context.node = rt.node_name or ""
        assert isinstance(pipeline.cluster, NodeServers)
        await pipeline.cluster.claim_sender()
        await pipeline.start(driver=False)
        self.running[name] = (recipe.run, pipeline)
        self.log.info("queue.node_clients_started", pipeline=name, run=recipe.run)

    async def stopped(self) -> None:
        for _run, pipeline in self.running.values():
            with contextlib.suppress(ShardlineError):  # the node may be stopping them too
                await pipeline.stop()
        self.running.clear()


# -- the driver's side -------------------------------------------------------------------

async def announce(store: Store, recipe: NodeRecipe) -> None:
    """Write ``recipe`` (every node's clients start or stop by it)."""
    key = recipe_key(recipe.config.name)
    found = await store.get(key)
    await store.write([Put(key, encode_recipe(recipe), found.version if found else 0)])


async def next_run(store: Store, pipeline: str) -> int:
    """The number of the next run of ``pipeline`` on this store (1 for the first)."""
    found = await store.get(recipe_key(pipeline))
    return decode_recipe(found.value).run + 1 if found is not None else 1


def servers_audit(recipe: NodeRecipe) -> Audit:
    """What every server of the run handed to its audit file, as one ``Audit``."""
    merged = Audit()
    for index in range(recipe.config.servers):
        path: Path = recipe.audit_file(index)
        if path.exists():
            log = journal_log(recipe.config.name, index)
            merged.record_entries(log, FileAudit(path).entries(log))
    return merged


async def server_activations(store: Store, recipe: NodeRecipe) -> dict[str, list[str]]:
    """Per server, the nodes it was activated on, in order (every run on this store)."""
    name = recipe.config.name
    found: dict[str, list[str]] = {}
    for index in range(recipe.config.servers):
        entries = await store.read(activations_log(name, index), 0, 100_000)
        found[f"server-{index}"] = [e.payload.decode() for e in entries]
    return found

