"""Message ids and the contribution ledger.

Every id is a 128-bit BLAKE2b digest in hex, so it is the same in every
process (never Python's salted ``hash``). An original's id comes from the
queue name and its position in the source; an output's id from the tier
and the ids of the inputs it was made from, so a client that repeats a
step after a crash or a late ack produces the same id and the queue drops
the repeat as a duplicate.

The ledger says which originals a message stands for. The compact form is
a count and a digest: the sum, modulo 2**128, of the originals' ids read as
integers. The sum is order-independent (windows may close in any order)
and, unlike XOR, an original counted twice changes it. ``lineage = "full"``
also carries the exact original ids.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

import msgspec

DIGEST_BYTES = 16
_MOD = 1 << 128


def original_id(queue: str, index: int) -> str:
    """The id of the ``index``-th original of pipeline ``queue``."""
    return original_digests(queue, index, 1)[0].hex()


@functools.lru_cache(maxsize=256)
def _tier_hash(tier: str) -> hashlib.blake2b:
    """The hash state after a tier's prefix: the id of an output made from no input."""
    return hashlib.blake2b(f"output\x00{tier}".encode(), digest_size=DIGEST_BYTES)


@functools.lru_cache(maxsize=256)
def _output_hash(tier: str) -> hashlib.blake2b:
    """The hash state after a tier's prefix and the separator of its first input (copied
    per output: one per message)."""
    h = _tier_hash(tier).copy()
    h.update(b"\x00")
    return h


def output_id(tier: str, input_ids: Iterable[str]) -> str:
    """The id (and dedup id) of what ``tier`` made from ``input_ids``, in their order:
    the hash of ``output``, the tier and the ids, each after a NUL."""
    ids = input_ids if isinstance(input_ids, (list, tuple)) else list(input_ids)
    if not ids:
        return _tier_hash(tier).hexdigest()
    h = _output_hash(tier).copy()
    h.update("\x00".join(ids).encode())  # one update: the hash of the same bytes
    return h.hexdigest()


def output_ids_of_each(tier: str, input_ids: Iterable[str]) -> list[str]:
    """``[output_id(tier, [ident]) for ident in input_ids]``, for a map tier (one input
    per output), in one pass."""
    copy = _output_hash(tier).copy
    found: list[str] = []
    add = found.append
    for ident in input_ids:
        h = copy()
        h.update(ident.encode())
        add(h.hexdigest())
    return found


class Ledger(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """Which originals a message stands for: count, digest and, in full mode, the ids."""

    count: int = 0
    digest: bytes = bytes(DIGEST_BYTES)
    originals: list[str] | None = None

    @property
    def digest_int(self) -> int:
        return int.from_bytes(self.digest, "big")

    @property
    def digest_hex(self) -> str:
        return self.digest.hex()


def ledger_of_original(ident: str, full: bool) -> Ledger:
    """The ledger of one original: count 1, its own id as the digest."""
    return Ledger(1, bytes.fromhex(ident), [ident] if full else None)


def original_digests(queue: str, first: int, count: int) -> list[bytes]:
    """The digests of originals ``first .. first + count - 1`` of ``queue``: each one's
    id is its hex, and its ledger digest the bytes themselves (no parse back)."""
    copy = hashlib.blake2b(f"original\x00{queue}\x00".encode(), digest_size=DIGEST_BYTES).copy
    found: list[bytes] = []
    add = found.append
    for index in range(first, first + count):
        h = copy()  # the prefix hashed once, not once per original
        h.update(b"%d" % index)
        add(h.digest())
    return found


def merge_ledgers(ledgers: Iterable[Ledger], full: bool) -> Ledger:
    """The ledger of a message made from messages with ``ledgers`` (N -> 1)."""
    ledgers = list(ledgers)
    count = sum([ledger.count for ledger in ledgers])
    total = sum(map(int.from_bytes, [ledger.digest for ledger in ledgers]))  # big-endian
    ids: list[str] | None = None
    if full:
        ids = []
        for ledger in ledgers:
            ids.extend(ledger.originals or ())
    return Ledger(count, (total % _MOD).to_bytes(DIGEST_BYTES, "big"), ids)


def digest_of_ids(ids: Iterable[str]) -> tuple[int, bytes]:
    """(count, digest) of a collection of original ids, as the source would give."""
    count = 0
    total = 0
    for ident in ids:
        count += 1
        total += int(ident, 16)
    return count, (total % _MOD).to_bytes(DIGEST_BYTES, "big")


def subtract(total: tuple[int, bytes], part: Ledger) -> tuple[int, bytes]:
    """``total`` minus ``part`` (to count dead letters out of a source ledger)."""
    count, digest = total
    value = (int.from_bytes(digest, "big") - part.digest_int) % _MOD
    return count - part.count, value.to_bytes(DIGEST_BYTES, "big")
