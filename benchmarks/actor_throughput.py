"""Actor throughput: Shardline's tell and ask paths against plain-asyncio baselines.

Why the baselines are here: "N tells/s" means little on its own, since it
mostly measures the machine and the interpreter. The *minimal asyncio actor*
(one task, a bounded ``asyncio.Queue(maxsize=1000)``, a future per ask, tells
via ``await queue.put``) is about the least an actor with a bounded mailbox
can cost on asyncio, so it is the lower bound Shardline is judged against:
``tell_ratio`` = Shardline tells/s / minimal tells/s, goal >= 0.60. The third
system is the same actor with a ``put_nowait`` fast path when the queue has
room, to test the claim in ``runtime/_mailbox.py`` that suspending only when
full is what makes a mailbox cheap. (``asyncio.Queue.put`` itself does not
yield when there is room, so on a plain queue the fast path saves only a
coroutine frame per message.)

Measured in one process, on the real clock, with one runtime
(``async with Runtime()``; the actor sits under the root supervisor, fault
hooks installed, no faults active, lifecycle-only trace):

- tells: one sender, one actor, N messages (default 1,000,000) of ``Add(n=1)``,
  then an ``ask`` for the total; the time covers every message being
  *processed*, and the total must equal N. One message instance is sent N
  times in every system, so message construction is not counted anywhere.
- asks: M (default 10,000) sequential round trips, each timed alone;
  p50/p99 latency in microseconds (nearest rank).

Every system uses mailbox capacity 1000 and the same ``async def receive``.
Each measurement runs 3 times, the systems interleaved round-robin, each
time on a freshly started actor; each figure reported is the best of the 3
(highest tells/s, lowest p50, lowest p99; every repeat is in the JSON).
Prints a table, then one JSON line (the last line of stdout).

    .venv/bin/python benchmarks/actor_throughput.py
    .venv/bin/python benchmarks/actor_throughput.py --messages 200000 --asks 2000 --json-only
    .venv/bin/python benchmarks/actor_throughput.py --profile      # cProfile Shardline only
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import platform
import pstats
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Protocol

import runtime
from runtime import Actor, ActorRef, Message, Runtime
from runtime.scenario import percentile

CAPACITY = 1000
REPEATS = 3
GOAL_TELL_RATIO = 0.60
GOAL_ASK_P50_US = 15.0
WARMUP_TELLS = 20_000
WARMUP_ASKS = 1_000


class Add(Message, frozen=True):
    n: int


class Total(Message, frozen=True):
    pass


CounterMsg = Add | Total


# -- the systems under test -----------------------------------------------------------


class Counter(Actor[CounterMsg]):
    """The Shardline actor: sums ``Add``, answers ``Total``."""

    def __init__(self) -> None:
        self.count = 0

    async def receive(self, msg: CounterMsg) -> object:
        if type(msg) is Add:
            self.count += msg.n
            return None
        return self.count


class MinimalActor:
    """The lower bound: a task draining a bounded ``asyncio.Queue``; a future per ask."""

    label = "minimal asyncio"

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[Message, asyncio.Future[object] | None]] = (
            asyncio.Queue(maxsize=CAPACITY))
        self.count = 0
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        get = self.queue.get
        receive = self.receive
        while True:
            msg, reply = await get()
            result = await receive(msg)
            if reply is not None and not reply.done():
                reply.set_result(result)

    async def receive(self, msg: Message) -> object:
        if type(msg) is Add:
            self.count += msg.n
            return None
        return self.count

    async def tell(self, msg: Message) -> None:
        await self.queue.put((msg, None))

    async def ask(self, msg: Message) -> object:
        reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        await self.queue.put((msg, reply))
        return await reply

    async def close(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class FastPathActor(MinimalActor):
    """The minimal actor, but enqueueing with ``put_nowait`` whenever there is room."""

    label = "minimal + put_nowait"

    async def tell(self, msg: Message) -> None:
        queue = self.queue
        if queue.full():
            await queue.put((msg, None))
        else:
            queue.put_nowait((msg, None))

    async def ask(self, msg: Message) -> object:
        reply: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        queue = self.queue
        if queue.full():
            await queue.put((msg, reply))
        else:
            queue.put_nowait((msg, reply))
        return await reply


class Target(Protocol):
    async def tell(self, msg: Add) -> None: ...
    async def ask(self, msg: Total) -> object: ...


@dataclass
class System:
    """One system under test: how to start a fresh actor, and its results."""

    key: str
    label: str
    start: Callable[[], Awaitable[tuple[Target, Callable[[], Awaitable[None]]]]]
    tell_rates: list[float] = field(default_factory=list)
    ask_p50: list[float] = field(default_factory=list)
    ask_p99: list[float] = field(default_factory=list)
    ask_mean: list[float] = field(default_factory=list)

    def figures(self) -> dict[str, object]:
        return {
            "tells_per_s": round(max(self.tell_rates)),
            "tell_ns_per_msg": round(1e9 / max(self.tell_rates), 1),
            "ask_p50_us": round(min(self.ask_p50), 2),
            "ask_p99_us": round(min(self.ask_p99), 2),
            "ask_mean_us": round(min(self.ask_mean), 2),
            "repeats": {
                "tells_per_s": [round(r) for r in self.tell_rates],
                "ask_p50_us": [round(v, 2) for v in self.ask_p50],
                "ask_p99_us": [round(v, 2) for v in self.ask_p99],
            },
        }


def systems(rt: Runtime) -> list[System]:
    spawned = 0

    async def shardline() -> tuple[Target, Callable[[], Awaitable[None]]]:
        nonlocal spawned
        spawned += 1
        ref: ActorRef[CounterMsg] = await rt.spawn(
            Counter, name=f"counter-{spawned}", mailbox_capacity=CAPACITY)

        async def stop() -> None:
            await rt.stop(ref)

        return ref, stop

    def plain(cls: type[MinimalActor]) -> Callable[
            [], Awaitable[tuple[Target, Callable[[], Awaitable[None]]]]]:
        async def start() -> tuple[Target, Callable[[], Awaitable[None]]]:
            actor = cls()
            return actor, actor.close
        return start

    return [
        System("shardline", "Shardline", shardline),
        System("minimal_asyncio", MinimalActor.label, plain(MinimalActor)),
        System("minimal_asyncio_fast_path", FastPathActor.label, plain(FastPathActor)),
    ]


# -- measurements ---------------------------------------------------------------------


async def time_tells(target: Target, n: int) -> int:
    """Nanoseconds to tell ``n`` messages and have them all processed."""
    msg, total = Add(n=1), Total()
    tell = target.tell
    gc.collect()
    started = perf_counter_ns()
    for _ in range(n):
        await tell(msg)
    count = await target.ask(total)
    elapsed = perf_counter_ns() - started
    if count != n:
        raise RuntimeError(f"actor counted {count} of {n} messages")
    return elapsed


async def time_asks(target: Target, n: int) -> list[int]:
    """Nanoseconds of each of ``n`` sequential ask round trips."""
    msg = Total()
    ask = target.ask
    samples = [0] * n
    gc.collect()
    for i in range(n):
        started = perf_counter_ns()
        await ask(msg)
        samples[i] = perf_counter_ns() - started
    return samples


async def measure(args: argparse.Namespace) -> list[System]:
    async with Runtime() as rt:
        under_test = systems(rt)
        for system in under_test:  # warm up every code path once
            target, stop = await system.start()
            await time_tells(target, WARMUP_TELLS)
            await time_asks(target, WARMUP_ASKS)
            await stop()
        for _ in range(args.repeats):
            for system in under_test:
                target, stop = await system.start()
                ns = await time_tells(target, args.messages)
                system.tell_rates.append(args.messages / (ns / 1e9))
                await stop()
        for _ in range(args.repeats):
            for system in under_test:
                target, stop = await system.start()
                samples = await time_asks(target, args.asks)
                system.ask_p50.append(percentile(samples, 0.50) / 1000)
                system.ask_p99.append(percentile(samples, 0.99) / 1000)
                system.ask_mean.append(sum(samples) / len(samples) / 1000)
                await stop()
    return under_test


# -- report ---------------------------------------------------------------------------


def report(args: argparse.Namespace, under_test: list[System]) -> dict[str, object]:
    by_key = {s.key: s for s in under_test}
    shard, minimal, fast = (by_key["shardline"], by_key["minimal_asyncio"],
                            by_key["minimal_asyncio_fast_path"])
    tell_ratio = max(shard.tell_rates) / max(minimal.tell_rates)
    ask_p50 = min(shard.ask_p50)
    goals = {
        "tell_ratio_ge_0.60": tell_ratio >= GOAL_TELL_RATIO,
        "shardline_ask_p50_lt_15us": ask_p50 < GOAL_ASK_P50_US,
    }
    return {
        "benchmark": "actor_throughput",
        "python": platform.python_version(),
        "messages": args.messages,
        "asks": args.asks,
        "mailbox_capacity": CAPACITY,
        "repeats": args.repeats,
        "reported": "best of repeats per figure (max tells/s, min p50, min p99)",
        "clock": "real (perf_counter_ns)",
        **{s.key: s.figures() for s in under_test},
        "tell_ratio": round(tell_ratio, 3),
        "tell_ratio_vs_fast_path": round(max(shard.tell_rates) / max(fast.tell_rates), 3),
        "ask_p50_ratio": round(ask_p50 / min(minimal.ask_p50), 3),
        "goals": {**goals, "all": all(goals.values())},
    }


def print_table(args: argparse.Namespace, under_test: list[System],
                figures: dict[str, object]) -> None:
    title = (f"actor throughput: {args.messages:,} tells, {args.asks:,} asks, "
             f"mailbox {CAPACITY}, best of {args.repeats}")
    columns = ("system", "tells/s", "ns/tell", "vs minimal", "ask p50 µs", "ask p99 µs",
               "tells/s, each repeat")
    base = max(under_test[1].tell_rates)
    rows = [
        (s.label, f"{max(s.tell_rates):,.0f}", f"{1e9 / max(s.tell_rates):.0f}",
         f"{max(s.tell_rates) / base:.2f}", f"{min(s.ask_p50):.1f}", f"{min(s.ask_p99):.1f}",
         " ".join(f"{r / 1000:.0f}k" for r in s.tell_rates))
        for s in under_test
    ]
    goals = figures["goals"]
    assert isinstance(goals, dict)
    verdict = (f"goals: tell_ratio {figures['tell_ratio']} >= {GOAL_TELL_RATIO}: "
               f"{'held' if goals['tell_ratio_ge_0.60'] else 'MISSED'}; "
               f"Shardline ask p50 {min(under_test[0].ask_p50):.1f} µs < "
               f"{GOAL_ASK_P50_US:g} µs: "
               f"{'held' if goals['shardline_ask_p50_lt_15us'] else 'MISSED'}")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
        print(title)
        for line in (columns, *rows):
            print("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                            for i, (cell, w) in enumerate(zip(line, widths, strict=True))))
        print(verdict)
        return
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == "system" else "right")
    for row in rows:
        table.add_row(*row)
    console = Console(width=120)
    console.print(table)
    console.print(verdict)


# -- profile --------------------------------------------------------------------------


async def profile_shardline(args: argparse.Namespace) -> None:
    """cProfile Shardline's tell path, then its ask path (no baselines)."""
    async with Runtime() as rt:
        shard = systems(rt)[0]
        for what in ("tell", "ask"):
            target, stop = await shard.start()
            profiler = cProfile.Profile()
            profiler.enable()
            if what == "tell":
                await time_tells(target, args.messages)
            else:
                await time_asks(target, args.asks)
            profiler.disable()
            await stop()
            print(f"\n=== Shardline {what} path, by tottime ===")
            pstats.Stats(profiler, stream=sys.stdout).sort_stats("tottime").print_stats(18)


# -- main -----------------------------------------------------------------------------


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000,
                        help="tells per measurement (default 1,000,000)")
    parser.add_argument("--asks", type=int, default=10_000,
                        help="sequential asks per measurement (default 10,000)")
    parser.add_argument("--repeats", type=int, default=REPEATS,
                        help=f"repeats per measurement; the best is reported (default {REPEATS})")
    parser.add_argument("--json-only", action="store_true",
                        help="print only the JSON line")
    parser.add_argument("--profile", action="store_true",
                        help="only cProfile Shardline's tell and ask paths")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.asks < 1 or args.repeats < 1:
        parser.error("--messages, --asks and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    runtime.configure_logging(level="warning")  # lifecycle events at info stay quiet
    if args.profile:
        runtime.run(profile_shardline, args)
        return 0
    under_test = runtime.run(measure, args)
    figures = report(args, under_test)
    if not args.json_only:
        print_table(args, under_test, figures)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
