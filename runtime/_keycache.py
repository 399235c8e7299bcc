"""``KeyCache``: a function of a key, computed once per key, in bounded memory.

Keys recur (once per message or record they carry), so what a data path
derives from a key (its queue server or stream partition, a coarser key,
its JSON form) is remembered.
The cache is a ``dict`` whose ``__missing__`` computes, so a known key is
read in C: ``cache[key]`` for one, ``cache.many(keys)`` for a whole batch
(``map`` over ``dict.__getitem__``; a miss calls back into Python only for
that key). It holds at most ``limit`` keys, then starts again empty: a
bound on memory whatever the key space, at the cost of recomputing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

V = TypeVar("V")


class KeyCache(dict[str, V], Generic[V]):
    """``fn(key)`` per key, remembered (at most ``limit`` keys at a time)."""

    __slots__ = ("_fn", "_limit")

    def __init__(self, fn: Callable[[str], V], limit: int = 1 << 16) -> None:
        super().__init__()
        if limit < 1:
            raise ValueError(f"a key cache must hold at least 1 key, got {limit}")
        self._fn = fn
        self._limit = limit

    def __missing__(self, key: str) -> V:
        if len(self) >= self._limit:
            self.clear()
        value = self[key] = self._fn(key)
        return value

    def many(self, keys: list[str]) -> list[V]:
        """``[self[key] for key in keys]``, read in C."""
        return list(map(self.__getitem__, keys))
