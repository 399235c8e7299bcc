"""A small simulated program whose trace digest must depend only on the seed.

``python tests/_sim_program.py SEED...`` prints, per seed, the trace digest
and the order in which a collector saw its messages. test_simulation.py runs
it in separate processes (with different hash seeds) and compares.
"""

from __future__ import annotations

import asyncio
import sys

import runtime
from runtime import Actor, ActorRef, Backoff, Fault, Message, Runtime


class Hit(Message, frozen=True):
    source: str
    n: int


class Go(Message, frozen=True):
    pass


class Collector(Actor[Hit]):
    def __init__(self, order: list[str]) -> None:
        self.order = order

    async def receive(self, msg: Hit) -> object:
        self.order.append(f"{msg.source}:{msg.n}")
        return None


class Source(Actor[Go]):
    def __init__(self, sink: ActorRef[Hit]) -> None:
        self.sink = sink

    async def receive(self, msg: Go) -> object:
        for n in range(3):
            await self.sink.tell(Hit(self.name, n))
            await asyncio.sleep(self.random.random())
        if self.random.random() < 0.3:
            raise RuntimeError(f"{self.name} is flaky")
        return None


async def program() -> tuple[str, list[str]]:
    order: list[str] = []
    faults = [
        Fault("delay", target="sink", probability=0.2, delay=0.05),
        Fault("crash", target="source-*", every=2.0),
    ]
    rt = Runtime(max_restarts=1000, within=1, backoff=Backoff(min=0.1, max=1, jitter=0.5),
                 faults=faults)
    async with rt:
        sink = await rt.spawn(Collector, order, name="sink")
        sources = [await rt.spawn(Source, sink, name=f"source-{i}") for i in range(5)]
        for _ in range(5):
            for source in sources:
                await source.tell(Go())
            await asyncio.sleep(3)
    return rt.trace.digest, order


def main(seeds: list[int]) -> None:
    for seed in seeds:
        digest, order = runtime.run(program, simulated=True, seed=seed)
        print(seed, digest, ",".join(order))


if __name__ == "__main__":
    import structlog

    structlog.configure(processors=[], logger_factory=structlog.ReturnLoggerFactory())
    main([int(arg) for arg in sys.argv[1:]])
