"""What a queue server is built from: serializable specs, the same on every node."""

from __future__ import annotations

import msgspec

from actors.queue._messages import WindowPolicy


class ServerSettings(msgspec.Struct, frozen=True):
    """How every server of a cluster behaves (a serializable spec)."""

    visibility_timeout: float = 30.0
    max_receives: int = 5
    dedup_window: float = 300.0
    windows: dict[str, WindowPolicy] = msgspec.field(default_factory=dict)
    """Queue name -> its window policy (the reduce tiers' input queues)."""
    checkpoint_every: int = 256
    """Journal entries between checkpoints; each compacts the journal behind it."""


class ServerSpec(msgspec.Struct, frozen=True):
    """What a queue server is built from: its cluster, its place, the settings."""

    cluster: str
    index: int
    server_ids: list[str]
    """Every server of the cluster, in order (rendezvous placement is over these)."""
    settings: ServerSettings
