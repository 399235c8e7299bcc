"""User code a stream names as ``tests.stream_helpers.user:NAME``: a source, process
functions and callable destinations, as a user's package would provide them.

Destinations record every call in ``CALLS`` (reset it with ``reset()``), so a
test sees exactly what the stream handed over, repeats included.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Iterator

from actors.stream import Batch, Record

USER_RECORDS = 900
CALLS: list[Batch] = []
_FAIL_EVERY = 0
_calls_seen = itertools.count(1)
_nondeterministic = itertools.count()


def reset(*, fail_every: int = 0) -> None:
    """Forget recorded calls; ``fail_every=n`` makes every n-th call of ``flaky`` raise."""
    global _FAIL_EVERY, _calls_seen
    CALLS.clear()
    _FAIL_EVERY = fail_every
    _calls_seen = itertools.count(1)


def items(seed: int) -> Iterator[tuple[str, bytes]]:
    """A user source ``fn(seed)``: the same (key, payload) pairs for the same seed."""
    rng = random.Random(f"user-source:{seed}")
    for index in range(USER_RECORDS):
        key = f"user-{rng.randrange(40):02d}"
        yield key, f"item {index:05d} of {key}".encode()


def expected_user_items(seed: int) -> list[tuple[str, bytes]]:
    """What ``items`` yields after ``shout_most``: the ground truth for a sink."""
    out = []
    for key, payload in items(seed):
        kept = shout_most(Record(0, key, payload))
        if kept is not None:
            out.append((key, kept))
    return out


def shout_most(record: Record) -> bytes | None:
    """Filters every third item out (returns None), upper-cases the rest's payload."""
    index = int(record.payload.split()[1])
    if index % 3 == 0:
        return None
    return record.payload.upper()


def shout_most_as_record(record: Record) -> Record | None:
    """The same transformation, returning a ``Record`` (the other accepted form)."""
    kept = shout_most(record)
    return None if kept is None else Record(record.seq, record.key, kept)


def nondeterministic(record: Record) -> bytes:
    """A broken process function: its output differs on every call, so a replayed
    batch cannot equal the first delivery. The exactly-once check must notice."""
    return record.payload + b"#" + str(next(_nondeterministic)).encode()


def deliver(batch: Batch) -> None:
    """A synchronous callable destination."""
    CALLS.append(batch)


async def deliver_async(batch: Batch) -> None:
    """An asynchronous callable destination that takes (simulated) time."""
    await asyncio.sleep(0.002)
    CALLS.append(batch)


def flaky(batch: Batch) -> None:
    """A destination that really fails (raises) on every ``fail_every``-th call."""
    if _FAIL_EVERY and next(_calls_seen) % _FAIL_EVERY == 0:
        raise ConnectionError(f"sink unavailable for {batch.batch_id}")
    CALLS.append(batch)


def unique_batches(calls: list[Batch]) -> list[Batch]:
    """One batch per id; a repeated id must carry exactly the same records."""
    by_id: dict[str, Batch] = {}
    for batch in calls:
        first = by_id.setdefault(batch.batch_id, batch)
        assert first == batch, f"batch {batch.batch_id} delivered with different contents"
    return list(by_id.values())
