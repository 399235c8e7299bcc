"""``QueuePipeline`` embedded in a Python program: callables instead of names, simulated time.

The program passes its source, tier functions and final step as Python
callables (closures included), runs the pipeline on a runtime it owns and
reads the result back, as the module docstring of ``QueuePipeline`` shows.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.queue import (
    GeneratedSource,
    QueueConfig,
    QueuePipeline,
    TierConfig,
    final_sums,
    make_map,
)
from runtime import Runtime
from tests.queue_helpers import direct_sums, sim
from tests.queue_helpers import user as user_code

TIERS = [TierConfig("transform", "map", clients=2),
         TierConfig("summarize", "reduce", clients=2, window=6),
         TierConfig("aggregate", "reduce", window=4)]


def test_a_pipeline_of_python_callables_runs_end_to_end() -> None:
    seen: list[str] = []

    def transform(key: str, body: bytes) -> tuple[str, bytes]:
        seen.append(key)  # a closure: state the program can inspect
        return user_code.transform(key, body)

    async def main() -> tuple[object, int, int]:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(
                rt, QueueConfig(tiers=TIERS, servers=3, lineage="full"),
                seed=7, source=user_code.originals,
                functions={"transform": transform, "summarize": user_code.summarize,
                           "aggregate": user_code.aggregate},
                final=user_code.finish)
            await pipeline.start()
            assert await pipeline.wait_done(deadline=rt.now() + 60.0)
            summary = await pipeline.read_summary()
            assert summary is not None
            result = await pipeline.read_result()
            await pipeline.stop()
            return result, summary.count, int(rt.now())

    result, count, elapsed = sim(main)
    assert result == user_code.expected_total(7)
    assert count == user_code.ORIGINALS
    assert len(seen) == user_code.ORIGINALS  # each original transformed once (no faults)
    assert elapsed < 60


def test_built_in_functions_and_a_generated_source_give_the_direct_sums() -> None:
    spec = GeneratedSource(records=500, keys=30)

    async def main() -> object:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(rt, QueueConfig(
                source=spec, tiers=[TierConfig("transform", "map", out_keys=10),
                                    TierConfig("summarize", "reduce", window=5, out_keys=3),
                                    TierConfig("aggregate", "reduce", window=3)]), seed=2)
            await pipeline.start()
            assert await pipeline.wait_done(deadline=60.0)
            return await pipeline.read_result()

    from actors.queue._source import generated_items

    assert sim(main) == direct_sums(list(generated_items(spec, 2)))


def test_a_python_source_with_a_custom_map_and_the_built_in_final() -> None:
    """Mixing: a generator source, a map closure that doubles, built-in reduce and final."""
    items = [(f"k{i % 4}", b"%d" % i) for i in range(40)]
    double_then_sum = make_map("transform", None)

    def source(seed: int) -> Iterator[tuple[str, bytes]]:
        return iter(items)

    def double(key: str, body: bytes) -> tuple[str, bytes]:
        return double_then_sum(key, b"%d" % (2 * int(body)))

    async def main() -> object:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(rt, QueueConfig(tiers=TIERS[:2]),
                                     source=source, functions={"transform": double},
                                     final=final_sums)
            await pipeline.start()
            assert await pipeline.wait_done(deadline=60.0)
            return await pipeline.read_result()

    assert sim(main) == direct_sums([(k, b"%d" % (2 * int(b))) for k, b in items])


def test_the_contribution_is_the_same_whatever_the_schedule(tmp_path: Path) -> None:
    """Different seeds interleave the clients differently (windows may close over other
    members), yet the ledger of the result and the result itself are the same."""

    def run(seed: int) -> tuple[object, int, str]:
        async def main() -> tuple[object, int, str]:
            async with Runtime(store=f"sqlite:///{tmp_path}/run-{seed}.db") as rt:
                pipeline = QueuePipeline(
                    rt, QueueConfig(tiers=TIERS, receive_batch=7),
                    seed=1, source=user_code.originals,
                    functions={"transform": user_code.transform,
                               "summarize": user_code.summarize,
                               "aggregate": user_code.aggregate},
                    final=user_code.finish)
                await pipeline.start()
                assert await pipeline.wait_done(deadline=60.0)
                summary = await pipeline.read_summary()
                assert summary is not None
                return json.loads(summary.result), summary.count, summary.digest
        return sim(main, seed=seed)

    first, second = run(1), run(2)
    assert first == second
    assert first[0] == user_code.expected_total(1)


def test_a_bad_embedding_is_refused_with_a_named_value() -> None:
    async def main() -> None:
        async with Runtime(store="memory://") as rt:
            with pytest.raises(ValueError, match=r"unknown tiers: \[.nope.\]"):
                QueuePipeline(rt, QueueConfig(tiers=TIERS), source=user_code.originals,
                              functions={"nope": user_code.transform})
            with pytest.raises(ValueError, match=r"needs a source"):
                QueuePipeline(rt, QueueConfig(tiers=TIERS))
            with pytest.raises(ValueError, match=r"tiers\[1\]\.window"):
                QueuePipeline(rt, QueueConfig(
                    tiers=[TIERS[0], TierConfig("summarize", "reduce")]),
                    source=user_code.originals)

    sim(main)


def test_custom_functions_with_the_built_in_final_keep_each_aggregate_key() -> None:
    """Issue #10: user functions whose bodies are plain integers, folded by the built-in
    final step, gave ``{'sums': {'': total}}``: the key of every aggregate was lost."""
    items = [(f"k{i % 3}", b"%d" % i) for i in range(30)]

    def ident(key: str, body: bytes) -> tuple[str, bytes]:
        return key, body

    def add(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
        return key, b"%d" % sum(int(b) for b in bodies)

    async def main() -> object:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(
                rt, QueueConfig(tiers=[TierConfig("transform", "map"),
                                       TierConfig("summarize", "reduce", window=4)]),
                source=lambda seed: iter(items),
                functions={"transform": ident, "summarize": add})
            await pipeline.start()
            assert await pipeline.wait_done(deadline=60.0)
            return await pipeline.read_result()

    assert sim(main) == direct_sums(items)


def test_an_original_whose_body_has_a_newline_is_dead_lettered_at_the_map_tier() -> None:
    """b"1\\n2" is not an integer: the built-in map raises on it, alone or in a batch of
    plain integers (whose batch form once read it as two lines of digits and wrote the
    invalid JSON {"k":1\\n2}, acked), so it is dead-lettered at the map tier with its
    reason after max_receives, and the others reach the result."""
    good = [(f"k{i % 5}", b"%d" % i) for i in range(60)]
    bad = ("k2", b"1\n2")
    items = [*good[:30], bad, *good[30:]]

    def source(seed: int) -> Iterator[tuple[str, bytes]]:
        return iter(items)

    async def main() -> tuple[object, list[tuple[str, str, bytes]]]:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(rt, QueueConfig(tiers=TIERS[:2], max_receives=2),
                                     source=source, final=final_sums)
            await pipeline.start()
            assert await pipeline.wait_done(deadline=120.0)
            dead = await pipeline.cluster.dead_letters()
            return await pipeline.read_result(), [
                (d.queue, d.reason, d.message.body) for d in dead]

    result, dead = sim(main)
    assert len(dead) == 1
    queue, reason, body = dead[0]
    assert body == b"1\n2" and queue.endswith("transform") and "ValueError" in reason
    assert result == direct_sums(good)
