"""Errors of the cluster layer (all ``ShardlineError``)."""

from __future__ import annotations

from runtime._errors import ShardlineError


class ClusterError(ShardlineError):
    """A cluster node cannot do what was asked (no store, name taken, not joined...)."""


class RemoteError(ShardlineError):
    """A remote handler raised an exception whose class this process cannot rebuild.

    ``error_type`` is the remote class's qualified name, ``node`` where it was raised.
    """

    def __init__(self, text: str, error_type: str, node: str) -> None:
        super().__init__(f"{error_type} on node {node!r}: {text}")
        self.error_type = error_type
        self.node = node


class UnknownMessageTag(ShardlineError, TypeError):
    """The receiving node does not know a message's tag for that actor (different code)."""


class FrameError(ShardlineError):
    """A peer sent a frame that is too large or cannot be decoded; its connection is closed."""


class LinkClosed(ShardlineError):
    """The connection to a peer is closed (or never authenticated)."""
