"""Idempotent appends: an append that names a key is applied once per key.

A client that retries an append after a timeout or a 503 cannot know
whether the first attempt was stored (the server may have committed it and
died before answering, or a forwarding node lost the owner's reply). With
an idempotency key the retry is answered with what the first attempt did,
the same ``Appended``, and the log holds the records once (Kafka's
idempotent producer, SQS FIFO's deduplication id, an HTTP
``Idempotency-Key``).

The key's record (``_keys.append_key``) is written in the same atomic store
write as the records, under the server's fence, so "stored" and "the key is
taken" are one fact: it survives a crash, a ``kill -9`` and a move of the
log to another node. It holds the ``Appended`` and a digest of the entries:
the same key with other entries is refused (``IdempotencyKeyReused``,
HTTP 422) rather than answered with a position that does not hold them.

Keys are kept for ``window`` seconds of wall time after their append, then
deleted by the server's retention pass (``expired``): the store stays
bounded, and a retry later than the window appends again.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import msgspec

from actors.logdelivery import _keys as keys
from actors.logdelivery._errors import BadRequest, IdempotencyKeyReused
from actors.logdelivery._messages import Appended
from runtime.store import Delete, Put, Store


class AppendRecord(msgspec.Struct, frozen=True, array_like=True):
    """What an append under an idempotency key did, and when (wall seconds)."""

    first_seq: int
    count: int
    digest: bytes
    at: float


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(AppendRecord).decode


def entries_digest(entries: list[tuple[str, bytes]]) -> bytes:
    """16 bytes that differ, in practice, for any two different entry lists."""
    return hashlib.blake2b(_encode(entries), digest_size=16).digest()


def check_key(log: str, key: str) -> None:
    if not keys.valid_idempotency_key(key):
        raise BadRequest(f"append to log {log!r}: idempotency key {key!r} must match "
                         f"{keys.IDEMPOTENCY_KEY.pattern}")


class AppendKeys:
    """The idempotency keys of one log still inside their window, oldest first."""

    def __init__(self, log: str, window: float) -> None:
        if not window > 0:
            raise ValueError(f"idempotency window must be > 0 seconds, got {window!r}")
        self.log = log
        self.window = window
        self._at: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._at)

    async def recover(self, store: Store) -> None:
        """Load the keys the store holds (a new incarnation trusts nothing else)."""
        prefix = keys.append_prefix(self.log)
        found = sorted((_decode(v.value).at, key[len(prefix):])
                       for key, v in await store.scan(prefix))
        self._at = OrderedDict((key, at) for at, key in found)

    def put(self, key: str, appended: Appended, digest: bytes, now: float, *,
            expect_version: int | None = 0) -> Put:
        """The write that takes ``key`` for ``appended`` (by default it fails if the key
        is taken)."""
        record = AppendRecord(appended.first_seq, appended.count, digest, now)
        return Put(keys.append_key(self.log, key), _encode(record), expect_version)

    def taken(self, key: str, now: float) -> None:
        """``key``'s write was committed at ``now``."""
        self._at[key] = now
        self._at.move_to_end(key)

    def known(self, key: str) -> bool:
        return key in self._at

    async def earlier(self, store: Store, key: str, digest: bytes) -> Appended | None:
        """What the append that took ``key`` did; ``None`` if the key is free.
        Raises ``IdempotencyKeyReused`` if it took it for other entries."""
        found = await store.get(keys.append_key(self.log, key))
        if found is None:
            self._at.pop(key, None)
            return None
        record = _decode(found.value)
        self._at.setdefault(key, record.at)
        if record.digest != digest:
            raise IdempotencyKeyReused(
                f"append to log {self.log!r}: idempotency key {key!r} was used for other "
                f"records (at seq {record.first_seq}, {record.count} records)")
        return Appended(record.first_seq, record.count)

    def expired(self, now: float) -> list[Delete]:
        """The deletes of every key older than the window (written by retention)."""
        doomed: list[Delete] = []
        for key, at in self._at.items():
            if now - at <= self.window:
                break
            doomed.append(Delete(keys.append_key(self.log, key)))
        return doomed

    def deleted(self, ops: list[Delete]) -> None:
        """``ops`` (from ``expired``) were committed."""
        prefix = len(keys.append_prefix(self.log))
        for op in ops:
            self._at.pop(op.key[prefix:], None)
