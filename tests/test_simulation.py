"""Virtual time, the seeded scheduler, and replay: the same seed gives the same trace."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _helpers import Ping, Worker, sim

import runtime
from runtime import Actor, Message, Runtime, TraceLevel
from runtime.testing import SimulatedEventLoop, current_seed, is_simulated

PROGRAM = Path(__file__).with_name("_sim_program.py")


class Tick(Message, frozen=True):
    pass


class Ticker(Actor[Tick]):
    def __init__(self) -> None:
        self.ticks = 0

    async def started(self) -> None:
        self.send_every(1.0, Tick())

    async def receive(self, msg: Tick) -> object:
        self.ticks += 1
        return self.ticks


def test_run_returns_the_result_of_main_on_either_clock() -> None:
    async def main(x: int) -> tuple[int, bool]:
        await asyncio.sleep(0)
        return x * 2, is_simulated()

    assert runtime.run(main, 21, simulated=True, seed=3) == (42, True)
    assert runtime.run(main, 21) == (42, False)


def test_a_simulated_hour_of_ten_tickers_takes_well_under_a_few_seconds() -> None:
    async def main() -> tuple[float, list[int]]:
        async with Runtime() as rt:
            refs = [await rt.spawn(Ticker) for _ in range(10)]
            await asyncio.sleep(3600.5)
            counts = [r.statistics().processed for r in refs]
            return rt.now(), counts

    wall = time.perf_counter()
    now, counts = sim(main, seed=5)
    elapsed = time.perf_counter() - wall
    assert now == 3600.5
    assert counts == [3600] * 10
    assert elapsed < 5.0, f"a simulated hour took {elapsed:.2f} s of wall time"


def test_real_clock_runs_record_lifecycle_only_and_are_not_simulated() -> None:
    async def main() -> tuple[bool, TraceLevel, int, bool]:
        async with Runtime() as rt:
            ref = await rt.spawn(Worker)
            assert await ref.ask(Ping(2)) == 2
            return rt.simulated, rt.trace.level, rt.seed, rt.clock.simulated

    assert runtime.run(main) == (False, TraceLevel.LIFECYCLE, 0, False)


def test_simulated_runs_trace_every_delivery_by_default() -> None:
    async def main() -> tuple[list[str], list[tuple[str, str]]]:
        async with Runtime() as full:
            ref = await full.spawn(Worker, name="w")
            await ref.ask(Ping(1))
        async with Runtime(trace="lifecycle") as lean:
            ref = await lean.spawn(Worker, name="w")
            await ref.ask(Ping(1))
        return ([e.kind for e in full.trace.events()],
                [(e.kind, e.actor) for e in lean.trace.events()])

    full, lean = sim(main)
    assert "deliver" in full
    assert lean == [("runtime_started", "root"), ("started", "w"), ("stopped", "w"),
                    ("stopped", "root"), ("runtime_stopped", "root")]


def test_virtual_time_jumps_to_the_next_timer_exactly() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, SimulatedEventLoop)
        seen = [loop.time()]
        await asyncio.sleep(0.25)
        seen.append(loop.time())
        async with Runtime() as rt:
            assert rt.now() == 0.0
            await rt.sleep(1e6)
            seen.append(rt.now())
            assert rt.clock.now() == rt.now()
            assert rt.clock.wall() == 1_700_000_000.0 + 0.25 + 1e6
        return seen

    assert sim(main) == [0.0, 0.25, 1e6]


def test_time_does_not_move_while_work_is_out_on_a_thread() -> None:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        asyncio.get_running_loop().call_later(1000, lambda: None)
        await loop.run_in_executor(None, sum, range(200_000))
        return loop.time()

    assert sim(main) == 0.0


def test_the_seed_is_the_runtimes_seed_and_rt_random_is_seeded_by_it() -> None:
    async def main() -> tuple[int, int, float, int, float]:
        seed = current_seed()
        async with Runtime() as rt:
            default = (rt.seed, rt.random.random())
        async with Runtime(seed=99) as rt:
            chosen = (rt.seed, rt.random.random())
        return seed, default[0], default[1], chosen[0], chosen[1]

    assert sim(main, seed=7) == (7, 7, random.Random(7).random(), 99, random.Random(99).random())

    async def real() -> int:
        return current_seed(default=-1)

    assert runtime.run(real) == -1


def test_the_ready_queue_is_shuffled_by_the_seed() -> None:
    async def main() -> list[int]:
        order: list[int] = []

        async def append(n: int) -> None:
            await asyncio.sleep(1)  # all wake at the same virtual instant
            order.append(n)

        await asyncio.gather(*(append(n) for n in range(8)))
        return order

    orders = {seed: tuple(sim(main, seed)) for seed in range(6)}
    assert len(set(orders.values())) > 1  # different seeds, different interleavings
    for seed, order in orders.items():
        assert tuple(sim(main, seed)) == order  # the same seed, the same interleaving


def _run_program(*seeds: int, hash_seed: str) -> dict[int, tuple[str, str]]:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, str(PROGRAM), *map(str, seeds)],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    result = {}
    for line in out.splitlines():
        seed, digest, order = line.split(" ")
        result[int(seed)] = (digest, order)
    return result


def test_the_same_seed_gives_the_same_digest_in_separate_processes() -> None:
    first = _run_program(1, 2, 3, hash_seed="1")
    second = _run_program(1, 2, 3, hash_seed="12345")
    assert first == second
    digests = {digest for digest, _ in first.values()}
    orders = {order for _, order in first.values()}
    assert len(digests) == 3  # different seeds, different traces
    assert len(orders) == 3  # ... because the interleavings differ


def test_the_same_seed_gives_the_same_digest_in_one_process() -> None:
    sys.path.insert(0, str(PROGRAM.parent))
    try:
        import _sim_program
    finally:
        sys.path.remove(str(PROGRAM.parent))
    first = sim(_sim_program.program, seed=4)
    again = sim(_sim_program.program, seed=4)
    other = sim(_sim_program.program, seed=5)
    assert first == again
    assert first[0] != other[0]


def test_trace_keeps_events_counts_and_a_digest_over_all_of_them() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            start = rt.trace.digest
            ref = await rt.spawn(Worker, name="w")
            assert rt.trace.digest != start
            await ref.ask(Ping(1))
            assert rt.trace.counts["started"] == 1
            assert rt.trace.counts["deliver"] == 1
            assert [(e.kind, e.actor, e.detail) for e in rt.trace.events("deliver")] == [
                ("deliver", "w", "Ping")]
            assert rt.trace.events()[0].kind == "runtime_started"
            assert rt.trace.events()[0].detail == "seed 0"

    sim(main)


def test_wait_until_polls_on_the_runtime_clock_until_true_or_the_deadline() -> None:
    """Plain and async conditions; True as soon as a poll sees it, False at the first
    poll at or past the deadline (polls from 0.3 every 0.25: 0.55, 0.8, 1.05)."""
    async def main() -> tuple[bool, float, bool, float]:
        async with runtime.Runtime() as rt:
            flips_at = 0.3

            async def flipped() -> bool:
                return rt.now() >= flips_at

            held = await rt.wait_until(flipped, poll=0.1)
            held_at = rt.now()
            missed = await rt.wait_until(lambda: False, deadline=1.0, poll=0.25)
            return held, held_at, missed, rt.now()

    held, held_at, missed, missed_at = runtime.run(main, simulated=True, seed=0)
    assert held and held_at == pytest.approx(0.3)
    assert not missed and missed_at == pytest.approx(1.05)
