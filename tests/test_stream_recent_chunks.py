"""Chunks appended in this process reach the worker from memory (``RecentChunks``).

A worker reading ahead takes a chunk its process just appended instead of
reading it back from the store and decoding it again; what it delivers is the
same, and a chunk that is not there (evicted, or appended elsewhere) is read
from the store as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import runtime
from actors.stream import Batch, CallableDestination, GeneratedSource, StreamConfig, StreamJob
from actors.stream import _keys as keys
from actors.stream._buffer import RecentChunks
from actors.stream._checks import check_stream, recorder
from actors.stream._records import Chunk
from runtime import Runtime
from runtime.store import Store
from tests.stream_helpers import quiet_logs


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def _chunk(first: int) -> Chunk:
    return Chunk(first, ["k"], [b"v"])


def test_recent_chunks_are_taken_once_and_the_oldest_evicted_past_the_bound() -> None:
    recent = RecentChunks(max_bytes=200)
    for seq in range(3):
        recent.put("log-a", seq, _chunk(seq), 100)
    assert recent.held_bytes == 200
    assert recent.take("log-a", 0) is None  # evicted: the oldest past 200 bytes
    assert recent.take("log-a", 1) == (_chunk(1), 100)
    assert recent.take("log-a", 1) is None  # once
    assert recent.take("log-b", 2) is None  # another log's chunk 2 is not this one
    assert recent.take("log-a", 2) == (_chunk(2), 100)
    assert recent.held_bytes == 0


@pytest.mark.parametrize(("max_bytes", "reads_chunks"), [(64 << 20, False), (0, True)])
def test_a_worker_takes_the_chunks_its_process_appended_from_memory(
        max_bytes: int, reads_chunks: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for them, the workers read no chunk back from the store; with none
    (everything evicted at once), they read every chunk from the store. Either way each
    record reaches the destination once."""
    read_chunks: list[int] = []
    counting = [True]  # not the checker's reads after the run
    read = Store.read
    logs = {keys.log_name("stream", p) for p in range(3)}

    async def counting_read(self: Store, log: str, from_seq: int, limit: int) -> Any:
        entries = await read(self, log, from_seq, limit)
        if log in logs and counting[0]:
            read_chunks.extend(e.seq for e in entries)
        return entries

    monkeypatch.setattr(Store, "read", counting_read)
    config = StreamConfig(source=GeneratedSource(records=2000, keys=50, payload_bytes=16),
                          partitions=3, workers=2, batch_size=40, produce_chunk=150,
                          rate=4000.0, batch_cost=0.005)
    _run(config, max_bytes, lambda: counting.__setitem__(0, False))
    assert bool(read_chunks) == reads_chunks


def _run(config: StreamConfig, max_bytes: int, done: Callable[[], None] = lambda: None
         ) -> list[Batch]:
    """Run ``config`` to the end, simulated, with ``RecentChunks(max_bytes)``; calls
    ``done`` before the checks read the store. Every invariant holds; the batches, in
    delivery order."""
    delivered: list[Batch] = []

    async def main() -> dict[str, bool]:
        async with Runtime(store="memory://", seed=3) as rt:
            destination = CallableDestination(delivered.append)
            recorded = recorder(destination)
            job = StreamJob(rt, config, destination=destination, seed=3)
            job.recent_chunks = RecentChunks(max_bytes)
            await job.start()
            assert await job.wait_done(deadline=120.0)
            done()
            results = {r.name: r.held for r in await check_stream(job, recorded)}
            await job.close()
            return results

    results = runtime.run(main, simulated=True, seed=3)
    assert results == {"exactly_once": True, "order": True, "no_stale_commit": True}
    return delivered


@pytest.mark.parametrize("max_bytes", [64 << 20, 0], ids=["appended-here", "appended-elsewhere"])
def test_a_backlogged_partition_grows_its_batches_whoever_appended_its_chunks(
        max_bytes: int) -> None:
    """A backlog (rate 0, 10 ms per batch) in chunks of 10 records per partition, read one
    chunk per store read, 2 batches of 10 in flight and a budget of 3,000 bytes (about 100
    records of 16-byte payloads and their keys): batches grow past 60 records whether the
    chunks come from memory or, as for chunks another process appended (a cluster node's
    worker, or a restarted process), from the store. Before, read from the store, the
    read-ahead stopped at batch_size x batches_in_flight records (and the chunk that
    passed it), and no batch held more than 32. Each record reaches the destination
    once."""
    config = StreamConfig(source=GeneratedSource(records=3000, keys=50, payload_bytes=16),
                          partitions=2, workers=1, batch_size=10, batches_in_flight=2,
                          produce_chunk=20, chunks_per_read=1, rate=0.0, batch_cost=0.01,
                          max_batch_bytes=3000)
    sizes = [len(batch.seqs) for batch in _run(config, max_bytes)]
    assert 60 < max(sizes) <= 3000 // 16, sizes
