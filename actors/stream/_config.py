"""The ``[stream]`` scenario section, also the embedding configuration."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from actors.stream._source import GeneratedSource
from runtime import Backoff
from runtime.scenario import Duration, bound_problems

MAX_CHUNK_BYTES = 256 << 20
"""Largest produced chunk (``produce_chunk`` records of ``source.payload_bytes``)."""


class StreamConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a stream job is laid out and paced. Durations are seconds.

    ``batch_size`` caps the records of one batch (a batch may take part of a
    producer chunk of ``produce_chunk`` source items); a worker delivers less
    when less is there. ``batches_in_flight`` batches of a partition may be
    pending at once: recorded before processing, delivered one after the
    other, each committed after its delivery while the next is delivered.
    ``max_batch_bytes`` (default 0: off) lets a backlogged partition (more
    than ``batch_size`` records read ahead) cut larger batches, up to about
    this many bytes of stored records each: fewer, larger batches when the
    stream falls behind, ``batch_size`` records when it keeps up (to see the
    backlog, a worker reads ahead up to this budget per batch in flight).
    ``lease_ttl`` may be shorter than a batch takes: the
    lease is renewed every ``lease_ttl / 3`` while the batch runs.
    ``retention`` (default 24 h): a partition's chunks and commit records
    older than this and behind the committed checkpoint are truncated from
    the store by the next commit (never a pending batch's).
    """

    source: GeneratedSource | str
    name: str = "stream"
    partitions: Annotated[int, Meta(ge=1, le=1024)] = 4
    workers: Annotated[int, Meta(ge=1, le=1024)] = 2
    batch_size: Annotated[int, Meta(ge=1, le=100_000)] = 100
    batches_in_flight: Annotated[int, Meta(ge=1, le=64)] = 4
    max_batch_bytes: Annotated[int, Meta(ge=0, le=MAX_CHUNK_BYTES)] = 0
    lease_ttl: Duration = Duration(2.0)
    process: str | None = None
    destination: str = "dir://{out}/sink"
    rate: Annotated[float, Meta(ge=0)] = 0.0
    batch_cost: Duration = Duration(0.0)
    produce_chunk: Annotated[int, Meta(ge=1, le=100_000)] = 4000
    chunks_per_read: Annotated[int, Meta(ge=1, le=1000)] = 8
    idle_poll: Duration = Duration(0.02)
    rebalance_interval: Duration = Duration(0.5)
    ask_timeout: Duration = Duration(30.0)
    retry_backoff: Backoff = Backoff(min=0.01, max=1.0, jitter=0.2)
    max_restarts: Annotated[int, Meta(ge=0, le=1_000_000)] = 1000
    within: Duration = Duration(10.0)
    restart_backoff: Backoff = Backoff(min=0.001, max=0.1, jitter=0.2)
    retention: Duration = Duration(24 * 3600.0)

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every value out of range."""
        found = bound_problems(self)
        if isinstance(self.source, GeneratedSource) \
                and self.source.payload_bytes * self.produce_chunk > MAX_CHUNK_BYTES:
            found.append(("produce_chunk", f"a produced chunk of {self.produce_chunk} records "
                          f"of {self.source.payload_bytes} bytes exceeds {MAX_CHUNK_BYTES} "
                          "bytes; lower produce_chunk or source.payload_bytes"))
        if self.retention < 0:
            found.append(("retention", "expected a duration >= 0"))
        for name in ("lease_ttl", "idle_poll", "rebalance_interval", "ask_timeout", "within"):
            if getattr(self, name) <= 0:
                found.append((name, "expected a positive duration"))
        if not self.name or "/" in self.name:
            found.append(("name", "expected a non-empty name without '/'"))
        return found


class StreamExpect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[expect]`` table of a stream scenario."""

    exactly_once: bool = True
    order: Literal["per-partition", "none"] = "per-partition"
    no_stale_commit: bool = True
    min_late_commits_refused: int = 0
    min_redelivered_batches: int = 0
    min_restarts: int = 0
    min_destination_failures: int = 0
