"""Records a pipeline keeps in the store besides the servers' journals."""

from __future__ import annotations

import msgspec

from actors.queue._messages import QueuedMessage


class ProducerCursor(msgspec.Struct, frozen=True):
    """How many originals are durably enqueued; ``done`` once the source is exhausted."""

    position: int = 0
    done: bool = False


class Progress(msgspec.Struct, frozen=True):
    """Tiers whose input ended and was fully processed (partial windows included), in order."""

    finished_tiers: int = 0
    done: bool = False


class FinalEntry(msgspec.Struct, frozen=True, array_like=True):
    """One message of the last tier, folded into the final result."""

    server: int
    offset: int
    message: QueuedMessage


class FinalSummary(msgspec.Struct, frozen=True):
    """The final result (JSON) and the ledger of what it was folded from."""

    result: bytes
    """The final function's return value, JSON-encoded."""
    count: int
    digest: str
    aggregates: int


encode = msgspec.msgpack.Encoder().encode
decode_cursor = msgspec.msgpack.Decoder(ProducerCursor).decode
decode_progress = msgspec.msgpack.Decoder(Progress).decode
decode_final_entry = msgspec.msgpack.Decoder(FinalEntry).decode


def cursor_key(name: str) -> str:
    return f"q/{name}/producer"


def progress_key(name: str) -> str:
    return f"q/{name}/progress"


def final_prefix(name: str) -> str:
    return f"q/{name}/final/"


def result_key(name: str) -> str:
    return f"q/{name}/result"
decode_summary = msgspec.msgpack.Decoder(FinalSummary).decode
