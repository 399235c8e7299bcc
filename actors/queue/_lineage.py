"""Where each original went: its intermediates and final aggregate, from the journals.

With ``lineage = "full"`` every message carries the exact original ids it
stands for, so the path can be both followed (parent links in the
servers' journals) and verified (the final aggregate's ledger names the
original). The whole table goes to ``<out>/lineage.jsonl``, one original
per line, so a question about any original is a ``grep`` away; the report
carries the first few as samples.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import msgspec

from actors.queue._history import History
from actors.queue._ledger import original_id

if TYPE_CHECKING:
    from actors.queue._pipeline import QueuePipeline


def made_by(pipeline: QueuePipeline) -> dict[str, str]:
    """Queue name -> the tier whose outputs go there."""
    return {pipeline.output_queue(i): t.name for i, t in enumerate(pipeline.config.tiers)}


def lineage_of(pipeline: QueuePipeline, history: History, index: int,
               makers: dict[str, str]) -> dict[str, object] | None:
    """The path of original number ``index`` (None past the last original)."""
    ident = original_id(pipeline.config.name, index)
    stored = history.messages.get(ident)
    if stored is None:
        return None
    path = history.path_from(ident)
    final = path[-1] if path and path[-1].queue == "final" else None
    return {
        "original": ident, "index": index, "key": stored.message.key,
        "through": [{"made_by": makers[s.queue], "queue": s.queue, "id": s.message.id,
                     "key": s.message.key} for s in path],
        "final_aggregate": final.message.id if final else None,
        "verified": bool(final and ident in (final.message.ledger.originals or [])),
    }


def write_lineage(pipeline: QueuePipeline, history: History, path: Path,
                  samples: int) -> list[dict[str, object]]:
    """Write every original's path to ``path``; return the first ``samples`` of them."""
    encode = msgspec.json.Encoder().encode
    makers = made_by(pipeline)
    first: list[dict[str, object]] = []
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as out:
        index = 0
        while (entry := lineage_of(pipeline, history, index, makers)) is not None:
            out.write(encode(entry) + b"\n")
            if index < samples:
                first.append(entry)
            index += 1
    return first
