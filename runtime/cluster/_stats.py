"""Per-node statistics (a frozen record, as ``ActorStatistics`` is)."""

from __future__ import annotations

import msgspec


class ClusterStatistics(msgspec.Struct, frozen=True):
    """Counters of one node since it started.

    ``messages_*`` count protocol items (messages, replies, acknowledgements),
    ``bytes_*`` and ``frames_*`` what crossed the transport; ``reconnects``
    counts connections re-established after one was lost.
    """

    node: str
    address: str
    live_nodes: int
    messages_in: int
    messages_out: int
    bytes_in: int
    bytes_out: int
    frames_in: int
    frames_out: int
    reconnects: int
    connections_refused: int
    malformed_frames: int
    activations: int
    passivations: int
    entities_active: int
