"""The embedding API: ``StreamJob`` with a user source, a process function that filters
and transforms, and callable destinations (sync and async), on both stores.

This is what code outside the repository relies on: ``deliver(batch)`` may
see a batch id again after a crash, always with the same records, and never
sees one sequence number under two batch ids; filtered records never arrive.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import runtime
from actors.stream import (
    CallableDestination,
    GeneratedSource,
    StreamConfig,
    StreamJob,
)
from runtime import Fault, Runtime
from tests.stream_helpers import assert_each_once, quiet_logs, user

SEED = 11
CRASHES = [Fault(kind="crash", target="stream.worker-*", every=0.12),
           Fault(kind="crash", target="stream.partition-*", every=0.5)]


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()
    user.reset()


@pytest.fixture(params=["memory", "sqlite"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'state.db'}"


def _config(**overrides: Any) -> StreamConfig:
    fields: dict[str, Any] = {
        "source": "tests.stream_helpers.user:items", "partitions": 3, "workers": 2,
        "batch_size": 40, "produce_chunk": 60, "rate": 3000.0, "batch_cost": 0.01,
        "ask_timeout": 0.5, "lease_ttl": 1.0, "rebalance_interval": 0.2,
        "process": "tests.stream_helpers.user:shout_most",
    }
    return StreamConfig(**{**fields, **overrides})


def _run_job(store: str, config: StreamConfig, deliver: Callable[..., object],
             faults: list[Fault], **job_args: Any) -> StreamJob:
    async def main() -> StreamJob:
        async with Runtime(store=store, seed=SEED, faults=faults) as rt:
            job = StreamJob(rt, config, destination=CallableDestination(deliver), seed=SEED,
                            **job_args)
            await job.start()
            finished = await job.wait_done(deadline=600.0)
            await job.close()
            assert finished, "the job did not finish within 600 simulated seconds"
            return job

    job: StreamJob = runtime.run(main, simulated=True, seed=SEED)
    return job


def _check_delivered() -> None:
    delivered = user.unique_batches(user.CALLS)  # a repeated id carries the same records
    assert_each_once(delivered, user.expected_user_items(SEED))
    payloads = [r.payload for b in delivered for r in b.records]
    assert payloads and all(p == p.upper() for p in payloads)  # transformed


def test_sync_destination_user_source_and_filtering_process(store_url: str) -> None:
    job = _run_job(store_url, _config(), user.deliver, CRASHES)
    _check_delivered()
    kept = len(user.expected_user_items(SEED))
    assert 0 < kept < user.USER_RECORDS  # some records really were filtered out
    assert job.metrics.committed_records == user.USER_RECORDS  # filtered ones commit too
    assert job.metrics.redelivered_batches >= 1  # crashes made it replay


def test_async_destination_with_functions_passed_directly(store_url: str) -> None:
    """Source and process given as Python callables (not names); the process returns
    ``Record`` objects; the destination is a coroutine function."""
    config = _config(source=GeneratedSource(records=0), process=None)
    deliver: Callable[[Any], Awaitable[None]] = user.deliver_async
    job = _run_job(store_url, config, deliver, CRASHES, source=user.items,
                   process=user.shout_most_as_record)
    _check_delivered()
    assert job.metrics.produced == user.USER_RECORDS


def test_a_failing_destination_is_retried_and_nothing_is_skipped(store_url: str) -> None:
    """A destination that raises (every 4th call) keeps its batch pending; the batch is
    retried with backoff until it lands, and the stream goes on only after that."""
    user.reset(fail_every=4)
    job = _run_job(store_url, _config(), user.flaky, [])
    _check_delivered()
    assert job.metrics.destination_failures >= 5
    assert job.metrics.committed_records == user.USER_RECORDS
