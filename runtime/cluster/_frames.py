"""The wire protocol: frames of tagged MessagePack items (msgspec; never pickle).

A frame is one MessagePack array of items, so a sender encodes whatever is
queued for a peer in one call and a receiver decodes it in one call. Each
item is an array-like tagged struct. Items that carry a user value (a
message or a reply) are written from the Python object (``*Out``) and read
back as raw bytes (``*In``), so the receiver decodes the message with the
target actor's own message union: a tag that union does not know is an
error for that message, not for the connection.

The first frame on every connection is ``Hello``, naming the sending node
and the address it listens on (replies go back over its own connection).
"""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

import msgspec

from runtime._message import Message
from runtime.cluster._errors import RemoteError


class _Item(msgspec.Struct, frozen=True, array_like=True, tag=True, gc=False):
    """Base of every wire item. ``gc=False``: an item never takes part in a reference
    cycle, and leaving the million items of a burst of tells untracked keeps the
    collector's full passes short (they stalled round trips by milliseconds)."""


class Hello(_Item, frozen=True, tag=0):
    node: str
    address: str


class TellOut(_Item, frozen=True, tag=1):
    actor: str
    msg: object


class TellIn(_Item, frozen=True, tag=1):
    actor: str
    msg: msgspec.Raw


class AskOut(_Item, frozen=True, tag=2):
    id: int
    actor: str
    msg: object


class AskIn(_Item, frozen=True, tag=2):
    id: int
    actor: str
    msg: msgspec.Raw


class CallOut(_Item, frozen=True, tag=3):
    """A message to an entity; acknowledged by ``Ack`` once its activation has it."""

    id: int
    kind: str
    key: str
    msg: object
    ask: bool


class CallIn(_Item, frozen=True, tag=3):
    id: int
    kind: str
    key: str
    msg: msgspec.Raw
    ask: bool


class Ack(_Item, frozen=True, tag=4):
    id: int


class ReplyOut(_Item, frozen=True, tag=5):
    id: int
    value: object


class ReplyIn(_Item, frozen=True, tag=5):
    id: int
    value: msgspec.Raw


class Failure(_Item, frozen=True, tag=6):
    """An ask failed at the receiver: the handler raised, or the message was refused."""

    id: int
    error_module: str
    error_type: str
    text: str


class NotHere(_Item, frozen=True, tag=7):
    """The entity is active elsewhere (``owner``, if known) or cannot be activated now."""

    id: int
    owner: str


class Rejected(_Item, frozen=True, tag=8):
    """A ``tell`` the receiver refused (no such actor, unknown tag)."""

    actor: str
    text: str


class Watch(_Item, frozen=True, tag=9):
    actor: str


class Unwatch(_Item, frozen=True, tag=10):
    actor: str


class Down(_Item, frozen=True, tag=11):
    actor: str
    reason: str


Incoming = (Hello | TellIn | AskIn | CallIn | Ack | ReplyIn | Failure | NotHere | Rejected
            | Watch | Unwatch | Down)

_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(list[Incoming])
_untyped = msgspec.msgpack.Decoder()


def encode_frame(items: list[Any]) -> bytes:
    return _encoder.encode(items)


def decode_frame(frame: bytes) -> list[Any]:
    """The items of a frame; ``msgspec.DecodeError``/``ValidationError`` if malformed."""
    items: list[Any] = _frame_decoder.decode(frame)
    return items


@cache
def message_decoder(accepts: tuple[type, ...]) -> msgspec.msgpack.Decoder[Any]:
    """A decoder for an actor's message union (cached per union)."""
    union: Any = accepts[0]
    for t in accepts[1:]:
        union = union | t
    return msgspec.msgpack.Decoder(union)


def describe_undecodable(raw: msgspec.Raw, accepts: tuple[type, ...], error: Exception) -> str:
    """Why a message could not be decoded for an actor: an unknown tag, or a bad field."""
    try:
        body = _untyped.decode(raw)
    except msgspec.DecodeError:
        return f"undecodable message: {error}"
    tag = body.get("type") if isinstance(body, dict) else None
    tags = [t.__struct_config__.tag for t in accepts if issubclass(t, msgspec.Struct)]
    known = " | ".join(sorted(str(t) for t in tags))
    if tag is None or tag not in tags:
        return f"unknown message tag {tag!r} (it accepts {known})"
    return f"malformed {tag}: {error}"


def _message_classes() -> dict[object, type[Message]]:
    found: dict[object, type[Message]] = {}
    todo: list[type[Message]] = [Message]
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        tag = cls.__struct_config__.tag
        found.setdefault(tag, cls)
    return found


_known: dict[object, type[Message]] = {}


def decode_value(raw: msgspec.Raw) -> object:
    """A reply value: plain MessagePack data, or a ``Message`` if its tag is known here."""
    value = _untyped.decode(raw)
    if isinstance(value, dict) and "type" in value:
        tag = value["type"]
        cls = _known.get(tag)
        if cls is None:
            _known.update(_message_classes())
            cls = _known.get(tag)
        if cls is not None:
            return msgspec.msgpack.decode(raw, type=cls)
    return value


def failure_of(request_id: int, error: BaseException) -> Failure:
    cls = type(error)
    return Failure(request_id, cls.__module__, cls.__qualname__, str(error))


def rebuild_error(failure: Failure, node: str) -> BaseException:
    """The asker's copy of a remote handler's exception.

    The class is looked up among modules this process has already imported
    (never imported on a peer's say-so); if it is not an ``Exception`` here or
    cannot be built from its message, a ``RemoteError`` carries its name.
    """
    module = sys.modules.get(failure.error_module)
    cls: object = module
    for part in failure.error_type.split("."):
        cls = getattr(cls, part, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            error = cls(failure.text)
        except Exception:
            pass
        else:
            error.add_note(f"raised on node {node!r}")
            return error
    return RemoteError(failure.text, f"{failure.error_module}.{failure.error_type}", node)
