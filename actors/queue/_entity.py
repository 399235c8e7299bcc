"""A queue server as a cluster entity (a pipeline run across nodes).

Contract:

- Server ``i`` of pipeline ``name`` is the entity ``QueueServerEntity/<name>.server-<i>``:
  the first request that reaches a node hosting the kind activates it on the node
  rendezvous hashing picks, under a store lease. It is handed no Python object: its
  ``recover`` reads the pipeline's :class:`NodeRecipe` (written by the driver before any
  request) and then recovers exactly as the in-process server does, from its checkpoint
  and journal, so when its node dies a survivor takes it over with every message, every
  dedup id and every in-flight batch (which stays out under a fresh visibility timeout:
  a delivered, unsettled message is handed out again only after its timeout). Each
  activation appends its node's name to ``activations_log`` (fenced), so the driver
  can tell where every server ran and how often it moved.
- It journals under its lease's fence: an activation whose node was paused past its lease
  cannot append after the server moved; the write is refused and the activation ends.
- Requests arrive at least once (the sender's node re-sends until the entity has them).
  Each carries a request id (:class:`ServerRequest`); a repeat of a request this
  activation answered gets the same answer, not a second effect (a second ``Receive``
  would hand out more batches, a second ``HolderRestarted`` would take back what the
  client received since). A repeat that reaches the next activation is harmless by the
  queue's own rules: an enqueue repeats under the same ids (dropped as duplicates), a
  settlement of a batch already settled is refused as stale, and batches a lost
  ``Receive`` handed out come back at their visibility timeout.
- Replies cross the wire as plain data; :class:`ServerEntityRef` turns them back into
  the types ``QueueCluster`` expects.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import msgspec

from actors.queue._messages import (
    AckResult,
    Batch,
    Depth,
    Enqueue,
    EnqueueResult,
    QueueDepth,
    QueueServerMsg,
    Receive,
    Settle,
    SettleTaken,
    Take,
    Taken,
)
from actors.queue._metrics import QueueMetrics
from actors.queue._recipe import NodeRecipe, activations_log, read_recipe, server_spec
from actors.queue._server import QueueServer
from runtime import ActorRef, Message, Runtime, ShardlineError
from runtime.scenario import FileAudit
from runtime.store import Append, Fence

_REMEMBERED = 1024
"""Answers an activation keeps for repeated requests (a repeat comes within seconds)."""


class ServerRequest(Message, frozen=True):
    """A request to a server entity under an id unique to its sender, for deduplication."""

    request_id: str
    body: QueueServerMsg


def server_key(pipeline: str, index: int) -> str:
    return f"{pipeline}.server-{index}"


def parse_server_key(key: str) -> tuple[str, int]:
    pipeline, sep, index = key.rpartition(".server-")
    if not sep or not index.isdigit():
        raise ShardlineError(f"queue server entity key {key!r} is not '<pipeline>.server-<i>'")
    return pipeline, int(index)


class QueueServerEntity(QueueServer):
    """``QueueServer`` activated by key on any node; see the module docstring."""

    def __init__(self) -> None:  # built from the stored recipe in recover
        self._answers: OrderedDict[str, object] = OrderedDict()

    async def recover(self) -> None:
        pipeline, index = parse_server_key(self.entity_key)
        recipe: NodeRecipe = await read_recipe(self.runtime.store, pipeline)
        audit = FileAudit(recipe.audit_file(index)) if recipe.audit_dir else None
        QueueServer.__init__(self, server_spec(self.runtime, recipe, index), QueueMetrics(),
                             audit)
        await super().recover()
        await self.runtime.store.write([Append(activations_log(pipeline, index), [
            ("", (self.runtime.node_name or "").encode())])], fence=self.fence)

    async def receive(self, msg: QueueServerMsg | ServerRequest) -> object:
        if not isinstance(msg, ServerRequest):
            return await super().receive(msg)
        answers = self._answers
        if msg.request_id in answers:
            self.runtime.trace.record(self.now(), "queue_request_repeated", self.name,
                                      type(msg.body).__name__)
            return answers[msg.request_id]
        answer = await super().receive(msg.body)
        answers[msg.request_id] = answer
        if len(answers) > _REMEMBERED:
            answers.popitem(last=False)
        return answer

    def _fence(self) -> Fence | None:
        return self.fence


# set after the class: ``Actor.__init_subclass__`` would put back the inherited union
QueueServerEntity.accepts = (*QueueServer.accepts, ServerRequest)
QueueServerEntity.accepts_exact = frozenset(QueueServerEntity.accepts)

_REPLY_TYPES: dict[type, type] = {Receive: list[Batch], Take: Taken, Settle: AckResult,
                                  SettleTaken: AckResult, Enqueue: EnqueueResult,
                                  Depth: QueueDepth}


class ServerEntityRef(ActorRef[QueueServerMsg]):
    """What ``QueueCluster`` holds for a server entity: ``ask`` wraps the request with a
    fresh id and types the reply. Only ``ask`` is offered (clients only ask servers)."""

    __slots__ = ("_entity", "_next", "sender")

    def __init__(self, rt: Runtime, pipeline: str, index: int) -> None:
        self.name = server_key(pipeline, index)
        # the entity's class declares the in-process union; it also takes ServerRequest
        self._entity: ActorRef[Any] = rt.entity(QueueServerEntity, self.name)
        self.sender = ""
        """Unique to this client of the servers (``NodeServers.claim_sender``)."""
        self._next = 0

    def __repr__(self) -> str:
        return f"ServerEntityRef({self.name!r})"

    async def ask(self, msg: QueueServerMsg, timeout: float = 5.0) -> object:
        if not self.sender:
            raise ShardlineError(f"{self!r}: no sender claimed; ask NodeServers.claim_sender")
        self._next += 1
        reply = await self._entity.ask(ServerRequest(f"{self.sender}:{self._next}", msg),
                                       timeout=timeout)
        kind = _REPLY_TYPES.get(type(msg))
        if kind is None or reply is None:
            return reply
        return msgspec.convert(reply, kind)

    @property
    def alive(self) -> bool:
        return True
