"""The stream invariants, checked against what is durable, not what actors believe.

- ``exactly_once``: the partition logs hold exactly the source items (as a
  multiset), every partition is committed through its high water with no
  pending batch, and the destination holds every processed record once: no
  sequence number in two different batches, none missing, none altered.
  Repeats of a pending batch overwrite the same batch id and are counted as
  ``redelivered_batches``, not as duplicates.
- ``order``: each partition's commit log is a contiguous run of batches in
  sequence order from 0 to its high water, and within this run first
  deliveries came in sequence order.
- ``no_stale_commit``: fencing tokens in each partition's commit log never
  go down (a write under a stale token was refused, never applied).

Logs are read from seq 0: below a log's floor (what retention truncated)
from the job's audit, from the floor up from the store. A truncated log
without an audit of what it dropped fails the checks, naming the log.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

import msgspec

from actors.stream import _keys as keys
from actors.stream._destinations import CallableDestination
from actors.stream._job import StreamJob
from actors.stream._records import Batch, Chunk, CommitRecord, Record
from runtime import StoreError
from runtime.scenario import InvariantResult, read_whole_log
from runtime.store import without_faults

_decode_commit = msgspec.msgpack.Decoder(CommitRecord).decode
_decode_chunk = msgspec.msgpack.Decoder(Chunk).decode


async def _read_all(job: StreamJob, log: str) -> list[tuple[int, str, bytes]]:
    try:
        entries = await read_whole_log(without_faults(job.rt.store), job.audit, log)
    except StoreError as unreadable:
        raise AssertionError(str(unreadable)) from None
    return [(e.seq, e.key, e.payload) for e in entries]


async def _read_records(job: StreamJob, log: str) -> list[tuple[int, str, bytes]]:
    """The records of a partition log, unpacked from its chunks, in sequence order."""
    records: list[tuple[int, str, bytes]] = []
    for _, _, payload in await _read_all(job, log):
        chunk = _decode_chunk(payload)
        if chunk.first_seq != len(records):
            raise AssertionError(f"{log}: chunk starts at {chunk.first_seq}, "
                                 f"expected {len(records)}")
        records.extend((r.seq, r.key, r.payload) for r in chunk.records())
    return records


def _show(items: Iterable[object], limit: int = 3) -> str:
    listed = list(items)
    more = f" (+{len(listed) - limit} more)" if len(listed) > limit else ""
    return ", ".join(str(i) for i in listed[:limit]) + more


async def check_stream(job: StreamJob, recorded: dict[str, Batch] | None) -> list[InvariantResult]:
    """All three invariants; ``recorded`` holds this run's batches for callable destinations.

    A log that cannot be read whole from seq 0 (a chunk out of place, entries
    truncated and not audited) fails all three, naming the log.
    """
    try:
        return await _check(job, recorded)
    except AssertionError as unreadable:
        return [InvariantResult(name, False, f"cannot check: {unreadable}")
                for name in ("exactly_once", "order", "no_stale_commit")]


async def _check(job: StreamJob, recorded: dict[str, Batch] | None) -> list[InvariantResult]:
    config = job.config
    logs = [await _read_records(job, keys.log_name(config.name, p))
            for p in range(config.partitions)]
    source = Counter(job.source_items(job.seed))
    logged = Counter((key, payload) for log in logs for _, key, payload in log)
    problems: list[str] = []
    if source != logged:
        missing = source - logged
        extra = logged - source
        problems.append(f"logs differ from source: {sum(missing.values())} missing, "
                        f"{sum(extra.values())} extra")
    checkpoints = await job.checkpoints()
    unfinished = [p for p, (c, hw) in enumerate(checkpoints) if c.pending or c.next_chunk < hw]
    if unfinished:
        problems.append(f"partitions not fully committed: {_show(unfinished)}")
    expected: dict[tuple[int, int], Record] = {}
    for p, log in enumerate(logs):
        for record in job.process_records([Record(s, k, v) for s, k, v in log]):
            expected[(p, record.seq)] = record
    batches = (list(recorded.values()) if recorded is not None
               else list(job.destination.batches()))  # type: ignore[attr-defined]
    if recorded is not None:
        expected = {k: v for k, v in expected.items() if k[1] >= job.start_seqs[k[0]]}
    holders: dict[tuple[int, int], list[str]] = {}
    altered: list[str] = []
    for batch in batches:
        for record in batch.records:
            at = (batch.partition, record.seq)
            holders.setdefault(at, []).append(batch.batch_id)
            want = expected.get(at)
            if want is not None and want != record:
                altered.append(f"p{at[0]}#{at[1]}")
    duplicated = [f"p{p}#{s} in {ids}" for (p, s), ids in holders.items() if len(ids) > 1]
    missing_at = [f"p{p}#{s}" for (p, s) in expected if (p, s) not in holders]
    unexpected = [f"p{p}#{s}" for (p, s) in holders if (p, s) not in expected]
    for label, found in (("duplicated", duplicated), ("missing", missing_at),
                         ("unexpected", unexpected), ("altered", altered)):
        if found:
            problems.append(f"{len(found)} {label} at destination: {_show(found)}")
    exactly_once = InvariantResult(
        "exactly_once", not problems,
        "; ".join(problems) or f"{len(expected)} records delivered once each "
        f"({sum(source.values())} source items, {job.metrics.redelivered_batches} "
        "redelivered batches overwritten by id)")
    return [exactly_once, *await _order_and_fencing(job, [len(log) for log in logs])]


async def _order_and_fencing(
    job: StreamJob, record_counts: list[int]
) -> list[InvariantResult]:
    config = job.config
    order_problems: list[str] = []
    token_problems: list[str] = []
    commits_seen = 0
    for p in range(config.partitions):
        commits = [_decode_commit(payload) for _, _, payload in
                   await _read_all(job, keys.commits_log(config.name, p))]
        commits_seen += len(commits)
        expected_first = 0
        last_token = 0
        for commit in commits:
            if commit.first_seq != expected_first or commit.last_seq < commit.first_seq:
                order_problems.append(f"p{p}: commit {commit.batch_id} after seq "
                                      f"{expected_first - 1}")
            expected_first = commit.last_seq + 1
            if commit.token < last_token:
                token_problems.append(f"p{p}: {commit.batch_id} under token {commit.token} "
                                      f"after token {last_token}")
            last_token = max(last_token, commit.token)
        high_water = record_counts[p]
        if expected_first != high_water:
            order_problems.append(f"p{p}: commits end at {expected_first}, log at {high_water}")
    firsts: dict[int, int] = {}
    seen_batches: set[tuple[int, int]] = set()
    for partition, first, _last in job.metrics.deliveries:
        if (partition, first) in seen_batches:
            continue
        seen_batches.add((partition, first))
        if first < firsts.get(partition, -1):
            order_problems.append(f"p{partition}: first delivery of seq {first} after "
                                  f"{firsts[partition]}")
        firsts[partition] = first
    return [
        InvariantResult("order", not order_problems, "; ".join(order_problems[:3]) or
                        f"{commits_seen} commits contiguous and in sequence order"),
        InvariantResult("no_stale_commit", not token_problems, "; ".join(token_problems[:3]) or
                        f"fencing tokens monotone; {job.metrics.late_commits_refused} late "
                        f"commits and {job.metrics.stale_refused} stale-token writes refused"),
    ]


def recorder(dest: CallableDestination) -> dict[str, Batch]:
    """Wrap a callable destination so this run's batches can be checked."""
    seen: dict[str, Batch] = {}
    inner = dest.deliver

    async def deliver(batch: Batch) -> None:
        await inner(batch)
        seen[batch.batch_id] = batch

    dest.deliver = deliver  # type: ignore[method-assign]
    return seen
