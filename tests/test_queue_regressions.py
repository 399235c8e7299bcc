"""Correctness bugs a review found in ``actors.queue``, each pinned by a test.

Each drives the public pipeline in simulated time and asserts what the
issue promises: a reduce function that rejects one body dead-letters that
message only; a window output is never left pending after its inputs were
acked; downtime does not age dedup ids. Each failed before its fix.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.queue import QueueConfig, QueuePipeline, TierConfig
from actors.queue._tiers import MapClient, ReduceClient
from runtime import InjectedFault, Runtime
from tests.queue_helpers import direct_sums, quiet_logs, sim


@pytest.fixture(autouse=True)
def _quiet() -> None:
    quiet_logs()


def test_a_reduce_function_that_raises_on_one_body_dead_letters_only_that_message() -> None:
    """"A poison message that always raises (ends in the dead-letter queue, others flow
    on)" with a user reduce function: the function only runs when a window closes, so
    the poison body is absorbed, and every later message of its key (the one that would
    close the window) fails instead; the flush at the end of the input then raises in
    the conductor for ever."""
    items = [("a", b"1"), ("a", b"bad"), ("a", b"2"), ("a", b"3"), ("a", b"4"),
             ("b", b"10"), ("b", b"20")]

    def source(seed: int) -> Iterator[tuple[str, bytes]]:
        return iter(items)

    def ident(key: str, body: bytes) -> tuple[str, bytes]:
        return key, body

    def summarize(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
        if b"bad" in bodies:
            raise ValueError("cannot summarize 'bad'")
        return key, json.dumps({key: sum(int(b) for b in bodies)}).encode()

    async def main() -> tuple[bool, list[bytes]]:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(
                rt, QueueConfig(tiers=[TierConfig("transform", "map"),
                                       TierConfig("summarize", "reduce", window=3)],
                                servers=1, visibility_timeout=1.0, max_receives=2),
                source=source, functions={"transform": ident, "summarize": summarize})
            await pipeline.start()
            done = await pipeline.wait_done(deadline=rt.now() + 60.0)
            dead = [d.message.body for d in await pipeline.cluster.dead_letters()]
            await pipeline.stop()
            return done, dead

    done, dead = sim(main)
    assert dead == [b"bad"], f"dead-lettered: {dead}"
    assert done, "the pipeline never finished"



def test_a_reduce_function_that_refuses_a_combination_dead_letters_only_its_culprit() -> None:
    """Issue #10, liveness 2: the function takes every body alone but refuses any window
    holding both ``x`` and ``y``. Only the member that makes the combination fail (the
    later of the two, ``y``) is dead-lettered; every other message of the key reaches
    the result and the run finishes (it used to dead-letter innocent bystanders and
    leave a window the conductor could never close)."""
    items = [("a", b"1"), ("a", b"x"), ("a", b"y"), ("a", b"2"), ("a", b"3"), ("a", b"4"),
             ("a", b"5"), ("b", b"10"), ("b", b"20")]

    def source(seed: int) -> Iterator[tuple[str, bytes]]:
        return iter(items)

    def ident(key: str, body: bytes) -> tuple[str, bytes]:
        return key, body

    def value(body: bytes) -> int:
        return {b"x": 100, b"y": 1000}.get(body) or int(body)

    def summarize(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
        if b"x" in bodies and b"y" in bodies:
            raise ValueError("x and y cannot meet")
        return key, str(sum(value(b) for b in bodies)).encode()

    async def main() -> tuple[bool, list[bytes], object]:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(
                rt, QueueConfig(tiers=[TierConfig("transform", "map"),
                                       TierConfig("summarize", "reduce", window=4)],
                                servers=1, visibility_timeout=1.0, max_receives=2),
                source=source, functions={"transform": ident, "summarize": summarize},
                final=lambda bodies: sum(int(b) for b in bodies))
            await pipeline.start()
            done = await pipeline.wait_done(deadline=rt.now() + 60.0)
            dead = [d.message.body for d in await pipeline.cluster.dead_letters()]
            result = await pipeline.read_result()
            await pipeline.stop()
            return done, dead, result

    done, dead, result = sim(main)
    assert dead == [b"y"], f"dead-lettered: {dead}"
    assert done, "the pipeline never finished"
    assert result == 1 + 100 + 2 + 3 + 4 + 5 + 10 + 20


def test_a_window_whose_output_was_enqueued_comes_back_whole_and_counts_once() -> None:
    """A reduce client crashes after enqueueing a partial (time-closed) window's output
    and before acking it. More of the key's messages arrive before the window's
    visibility timeout; the window must come back with the same members (so its
    output has the same id and is dropped as a duplicate), not grown by the newcomers
    (a new id: the first window's originals counted twice)."""
    items = [("a", b"%d" % i) for i in range(1, 31)]
    original_point = ReduceClient.fault_point
    crashed: list[str] = []

    async def point(self: ReduceClient, where: str = "") -> None:
        if where.startswith("after enqueueing outputs") and not crashed:
            crashed.append(where)
            raise InjectedFault("crashed between enqueueing the output and acking the window")
        await original_point(self, where)

    async def main() -> tuple[object, int, int]:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(
                rt, QueueConfig(tiers=[TierConfig("transform", "map"),
                                       TierConfig("summarize", "reduce", window=1000,
                                                  window_time=0.2)],
                                servers=1, visibility_timeout=1.0, dedup_window=30.0,
                                rate=20.0, produce_chunk=1),
                source=lambda seed: iter(items))
            await pipeline.start()
            assert await pipeline.wait_done(deadline=rt.now() + 60.0)
            summary = await pipeline.read_summary()
            assert summary is not None
            result = await pipeline.read_result()
            await pipeline.stop()
            return result, summary.count, pipeline.metrics.duplicates_dropped

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ReduceClient, "fault_point", point)
        result, count, duplicates = sim(main)
    assert crashed
    assert duplicates >= 1  # the window's second output was the same message
    assert count == len(items)
    assert result == direct_sums(items)


def test_a_restart_after_more_than_the_dedup_window_does_not_count_a_message_twice(
    tmp_path: Path,
) -> None:
    """The process is killed (kill -9) while a transform client has enqueued its
    outputs and not yet acked its inputs, and restarted six minutes later (default
    5-minute dedup window). The inputs come back after their visibility timeout and
    their outputs are enqueued again: the dedup ids are older than the window (the
    window is wall time, downtime included), so they are accepted a second time."""
    url = f"sqlite:///{tmp_path}/state.db"
    items = [(f"k{i % 5}", b"%d" % i) for i in range(50)]
    config = QueueConfig(tiers=[TierConfig("transform", "map"),
                                TierConfig("summarize", "reduce", window=4)],
                         servers=2, produce_chunk=10, receive_batch=5)
    original_point = MapClient.fault_point
    killed = asyncio.Event()

    async def point(self: MapClient, where: str = "") -> None:
        if where.startswith("after enqueueing outputs") and not killed.is_set():
            killed.set()
            await asyncio.Future()  # the process dies here: nothing after this happens
        await original_point(self, where)

    async def main() -> tuple[object, int]:
        async with Runtime(store=url) as rt:
            pipeline = QueuePipeline(rt, config, source=lambda seed: iter(items))
            await pipeline.start()
            await killed.wait()
        await asyncio.sleep(360.0)  # down for six minutes
        async with Runtime(store=url) as rt:
            pipeline = QueuePipeline(rt, config, source=lambda seed: iter(items))
            await pipeline.start()
            assert await pipeline.wait_done(deadline=rt.now() + 300.0)
            summary = await pipeline.read_summary()
            assert summary is not None
            result = await pipeline.read_result()
            await pipeline.stop()
            return result, summary.count

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(MapClient, "fault_point", point)
        result, count = sim(main)
    assert count == len(items)
    assert result == direct_sums(items)
