"""Rendezvous (highest-random-weight) placement of strict-order keys on servers.

Each server scores each key with a stable hash of (server id, key); the key
lives on the highest score. Adding a server moves exactly the keys the new
server wins, and removing one moves only the keys it held, which is why
this is used instead of ``hash(key) % servers`` (that moves almost every
key when the count changes).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

from runtime import KeyCache

_KEYS_CACHED = 1 << 20
"""Keys whose owner a process remembers (then it starts again: scoring is cheap)."""


def score(server_id: str, key: str) -> int:
    """The weight of ``key`` on ``server_id``: 64 bits of BLAKE2b, the same everywhere."""
    digest = hashlib.blake2b(f"{server_id}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(key: str, server_ids: Sequence[str]) -> int:
    """Index in ``server_ids`` of the server that holds ``key``."""
    if not server_ids:
        raise ValueError("rendezvous placement needs at least one server")
    best = 0
    best_score = -1
    for index, server_id in enumerate(server_ids):
        s = score(server_id, key)
        if s > best_score:
            best, best_score = index, s
    return best


class Placement:
    """Rendezvous placement over a fixed list of server ids, with a per-key cache."""

    __slots__ = ("_owners", "server_ids")

    def __init__(self, server_ids: Sequence[str]) -> None:
        if not server_ids:
            raise ValueError("rendezvous placement needs at least one server")
        if len(set(server_ids)) != len(server_ids):
            raise ValueError(f"server ids must be distinct, got {list(server_ids)}")
        self.server_ids = tuple(server_ids)
        self._owners: KeyCache[int] = KeyCache(self._owner, limit=_KEYS_CACHED)

    def _owner(self, key: str) -> int:
        return owner(key, self.server_ids)

    def __call__(self, key: str) -> int:
        return self._owners[key]

    def owners(self, keys: list[str]) -> list[int]:
        """The server of each of ``keys`` (read in C while the keys are known)."""
        return self._owners.many(keys)

    def misplaced(self, keys: Iterable[str], server: int) -> str | None:
        """The first of ``keys`` not held by ``server`` (None: all are); a server checks
        every message it is sent, so the common case (all here) is one pass in C."""
        keys = list(keys)
        owners = self._owners.many(keys)
        if set(owners) <= {server}:
            return None
        return keys[[found != server for found in owners].index(True)]


@functools.lru_cache(maxsize=64)
def shared_placement(server_ids: tuple[str, ...]) -> Placement:
    """The one ``Placement`` of ``server_ids`` in this process: the clients and every
    server place the same keys, so they share one cache (each key is scored once per
    process, not once by the clients and again by its server)."""
    return Placement(server_ids)
