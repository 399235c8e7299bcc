"""Receiving: one task per inbound connection, handling its frames in order.

The first frame must be ``Hello`` (who sends, and where it listens). Each
later frame is decoded in one call and its items handled one by one: a tell
to a full mailbox waits, which holds back the whole connection, so
backpressure reaches the sender's outbox. A frame that is too large or
cannot be decoded closes this connection only, is logged and counted; the
node goes on serving the others. A message for an actor that does not exist
here, or with a tag its actor does not know, is answered with a clear error
(``Failure`` for an ask, ``Rejected`` for a tell), never dropped silently.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from runtime._errors import ActorStopped
from runtime.cluster import _frames as f
from runtime.cluster._errors import FrameError, LinkClosed
from runtime.cluster._transport import Link

if TYPE_CHECKING:
    from runtime._cell import _ActorCell
    from runtime.cluster._node import ClusterNode

_log = structlog.get_logger("shardline")
NO_SUCH_ACTOR = ("runtime._system", "NoSuchActor")
UNKNOWN_TAG = ("runtime.cluster._errors", "UnknownMessageTag")


async def serve(self: ClusterNode, link: Link) -> None:
    peer = link.peer
    try:
        hello = f.decode_frame(await link.receive())
        if not hello or not isinstance(hello[0], f.Hello):
            raise FrameError(f"first frame from {link.peer} is not a Hello")
        peer = hello[0].node
        self.hints[peer] = hello[0].address
        self.event("connection.up", peer, "inbound")
        while True:
            if self.cuts.is_cut(peer):
                raise LinkClosed(f"partitioned from {peer} (cluster network cut)")
            frame = await link.receive()
            if self.cuts.is_cut(peer):
                self.cuts.dropped += 1
                raise LinkClosed(f"partitioned from {peer} (cluster network cut)")
            self.frames_in += 1
            self.bytes_in += len(frame)
            items = f.decode_frame(frame)
            self.messages_in += len(items)
            await self.unpaused()
            await _handle_all(self, peer, items)
    except (FrameError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        self.malformed += 1
        _log.warning("connection.bad_frame", node=self.name, peer=peer, error=str(exc))
        self.event("connection.down", peer, f"bad frame: {exc}")
    except LinkClosed as exc:
        self.event("connection.down", peer, str(exc))
    except Exception as exc:  # a bug here must cost this connection, not the listener
        _log.error("connection.handler_failed", node=self.name, peer=peer, exc_info=exc)
        self.event("connection.down", peer, f"handler failed: {type(exc).__name__}")

async def _handle_all(self: ClusterNode, peer: str, items: list[Any]) -> None:
    """Handle a frame's items in order; tells take a fast path (the common case)."""
    registry = self.rt._registry
    tell_in = f.TellIn
    last_actor = ""
    cell: _ActorCell | None = None
    decoder: msgspec.msgpack.Decoder[Any] | None = None
    for item in items:
        if type(item) is not tell_in:
            await _handle(self, peer, item)
            continue
        if item.actor != last_actor or cell is None or cell.dead:
            last_actor = item.actor
            cell = registry.get(item.actor)
            decoder = f.message_decoder(cell.accepts) if cell is not None else None
        if cell is None or decoder is None:
            _decoded(self, peer, None, item.actor, item.msg, None)
            continue
        try:
            msg = decoder.decode(item.msg)
        except (msgspec.ValidationError, msgspec.DecodeError):
            _decoded(self, peer, cell, item.actor, item.msg, None)
            continue
        await cell.ref.tell(msg)


async def _handle(self: ClusterNode, peer: str, item: Any) -> None:
    kind = type(item)
    if kind is f.TellIn:
        cell = self.rt._registry.get(item.actor)
        msg = _decoded(self, peer, cell, item.actor, item.msg, None)
        if msg is not None and cell is not None:
            await cell.ref.tell(msg)
    elif kind is f.AskIn:
        cell = self.rt._registry.get(item.actor)
        msg = _decoded(self, peer, cell, item.actor, item.msg, item.id)
        if msg is not None and cell is not None:
            reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            try:
                cell.ref._post(msg, reply)
            except ActorStopped as exc:
                self.post(peer, f.failure_of(item.id, exc))
                return
            reply.add_done_callback(functools.partial(self.answer, peer, item.id))
    elif kind is f.CallIn:
        cls = self.host.kinds.get(item.kind)
        if cls is None:
            self.post(peer, f.NotHere(item.id, ""))
            return
        try:
            msg = f.message_decoder(cls.accepts).decode(item.msg)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            why = f.describe_undecodable(item.msg, cls.accepts, exc)
            self.post(peer, f.Failure(item.id, *UNKNOWN_TAG,
                                      f"entity {item.kind}/{item.key} on node "
                                      f"{self.name!r}: {why}"))
            return
        self.host.accept(peer, item.id, item.kind, item.key, msg, item.ask)
    elif kind is f.Ack:
        self.router.on_ack(item.id)
    elif kind is f.ReplyIn:
        value = f.decode_value(item.value)
        if self.has_reply(item.id):
            self.resolve(item.id, value, None)
        else:
            self.router.on_result(item.id, value, None)
    elif kind is f.Failure:
        error = f.rebuild_error(item, peer)
        if self.has_reply(item.id):
            self.resolve(item.id, None, error)
        else:
            self.router.on_result(item.id, None, error)
    elif kind is f.NotHere:
        self.router.on_not_here(item.id, item.owner)
    elif kind is f.Rejected:
        self.rt._dead_letter(f"{item.actor}@{peer}", item)
        _log.warning("message.rejected", node=self.name, peer=peer, actor=item.actor,
                     error=item.text)
    elif kind is f.Watch:
        self.watches.watched(peer, item.actor)
    elif kind is f.Unwatch:
        self.watches.unwatched(peer, item.actor)
    elif kind is f.Down:
        self.watches.remote_down(peer, item.actor, item.reason)
    else:  # a second Hello
        raise FrameError(f"unexpected {kind.__name__} from {peer}")


def _decoded(self: ClusterNode, peer: str, cell: _ActorCell | None, actor: str, raw: msgspec.Raw,
             call_id: int | None) -> object | None:
    """The message for a local actor, or None after answering why it is refused."""
    if cell is None:
        why, error = f"no actor {actor!r} on node {self.name!r}", NO_SUCH_ACTOR
    else:
        try:
            msg: object = f.message_decoder(cell.accepts).decode(raw)
            return msg
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            detail = f.describe_undecodable(raw, cell.accepts, exc)
            why, error = f"actor {actor!r} on node {self.name!r}: {detail}", UNKNOWN_TAG
    if call_id is None:
        self.post(peer, f.Rejected(actor, why))
        self.rt._dead_letter(actor, raw)
    else:
        self.post(peer, f.Failure(call_id, *error, why))
    return None
