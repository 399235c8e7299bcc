"""The queue's enqueue-to-ack samples: one copy, read per tier and by the sampler."""

from __future__ import annotations

from actors.queue import QueueConfig, QueueMetrics, QueuePipeline, TierConfig
from runtime import Runtime
from runtime.scenario import percentile
from tests.queue_helpers import sim
from tests.queue_helpers import user as user_code

TIERS = [TierConfig("transform", "map", clients=2),
         TierConfig("summarize", "reduce", clients=2, window=6),
         TierConfig("aggregate", "reduce", window=4)]


def test_every_acked_message_has_one_sample_tagged_with_its_queue() -> None:
    async def main() -> tuple[QueueMetrics, list[str]]:
        async with Runtime(store="memory://") as rt:
            pipeline = QueuePipeline(
                rt, QueueConfig(tiers=TIERS, servers=3), seed=5, source=user_code.originals,
                functions={"transform": user_code.transform,
                           "summarize": user_code.summarize,
                           "aggregate": user_code.aggregate},
                final=user_code.finish)
            await pipeline.start()
            assert await pipeline.wait_done(deadline=rt.now() + 60.0)
            await pipeline.stop()
            return pipeline.metrics, [pipeline.input_queue(i) for i in range(len(TIERS))]

    metrics, queues = sim(main)
    seen = metrics.observation().latencies
    assert metrics.acked > user_code.ORIGINALS
    assert len(seen) == metrics.acked  # the sampler's column: every ack once
    assert set(queues) <= set(metrics.acks.queue_names)  # and the final output queue
    assert sum(len(metrics.acks.of(q)) for q in metrics.acks.queue_names) == len(seen)
    per_queue = [metrics.acks.of(q) for q in queues]
    assert per_queue[0] == [lat for q, lat in zip(metrics.acks.queues, seen, strict=True)
                            if metrics.acks.queue_names[q] == queues[0]]
    for queue, samples in zip(queues, per_queue, strict=True):
        assert metrics.latency(queue, 0.99) == percentile(samples, 0.99) > 0
    assert metrics.acks.of("no-such-queue") == []
