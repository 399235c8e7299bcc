"""Per-actor counters, exposed as frozen statistics records (trio's style)."""

from __future__ import annotations

import msgspec


class ActorStatistics(msgspec.Struct, frozen=True):
    """A snapshot of one actor's counters; the ref stays valid, the snapshot does not change."""

    name: str
    received: int
    processed: int
    crashed: int
    restarted: int
    dropped: int
    mailbox_depth: int
    mailbox_high_water: int
    mailbox_capacity: int
