"""Typed messages: frozen, tagged msgspec structs.

Every protocol is a tagged union of ``Message`` subclasses, so any message
encodes to MessagePack for the store and the wire and decodes back to the
same type. The tag is the class name unless a subclass sets ``tag=...``.
"""

from __future__ import annotations

from typing import Any, TypeVar, dataclass_transform

import msgspec

M = TypeVar("M")


@dataclass_transform(frozen_default=True)
class Message(msgspec.Struct, frozen=True, tag=True):
    """Base of every message an actor can receive.

    Subclasses are frozen whether or not they say ``frozen=True`` (msgspec
    inherits the option), and ``dataclass_transform(frozen_default=True)``
    tells type checkers so: ``class Add(Message): n: int`` passes
    ``mypy --strict``, and assigning to ``Add(n=1).n`` is an error there too.
    """


class Terminated(Message, frozen=True):
    """Sent to every watcher when a watched actor stops for good (not on restart)."""

    actor: str
    reason: str


_encoder = msgspec.msgpack.Encoder()


def encode(msg: msgspec.Struct) -> bytes:
    """MessagePack bytes for a message (or any msgspec struct)."""
    return _encoder.encode(msg)


def decode(data: bytes, type: type[M] | Any) -> M:
    """Decode MessagePack bytes into ``type`` (a message class or a union of them)."""
    result: M = msgspec.msgpack.decode(data, type=type)
    return result
