"""benchmarks/stream_exactly_once.py: the defaults its title and JSON state, values
outside the bounds a scenario file has exit 2 naming the flag, and the crash cost is
measured on a run a crash struck."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from _helpers import Ping, Worker, sim

from runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from stream_exactly_once import Run, best, crash_plan, parse, report  # noqa: E402


def test_the_defaults_are_batches_growing_to_1_mib_and_producer_chunks_of_20000() -> None:
    config = parse([]).config
    assert (config.batch_size, config.max_batch_bytes, config.produce_chunk) == (
        500, 1 << 20, 20_000)
    assert config.source.records == 1_000_000


@pytest.mark.parametrize(("argv", "named"), [
    (["--produce-chunk", "200000"], "--produce-chunk: Expected `int` <= 100000, got 200000"),
    (["--batch-bytes", str(1 << 30)], "--batch-bytes: Expected `int` <= 268435456"),
    (["--batch", "200000"], "--batch: Expected `int` <= 100000"),
    (["--records", str(10**9)], "--records: Expected `int` <= 100000000"),
])
def test_a_value_out_of_bounds_exits_2_naming_the_flag(
        argv: list[str], named: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert named in err, err
    assert "Traceback" not in err


def test_the_crash_cost_comes_from_a_run_a_crash_struck(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The fastest crash run may be fast because it ended before the first crash: the
    crash cost is taken from the fastest run a crash struck, and none is claimed (goal
    not met nor missed) when no crash struck any run."""
    args = parse(["--no-bytewax", "--repeat", "2"])
    no_fault = Run("no faults", 1000, 1.0, True)
    unstruck = Run("crash", 1000, 0.9, True, crashes=0)
    struck = Run("crash", 1000, 1.25, True, crashes=1, recovery=[0.05])
    chosen = best([unstruck, struck], struck=True)
    assert chosen.wall_s == 1.25
    out = report(args, [best([no_fault]), chosen], None, "skipped")
    assert out["crash_loss"] == 0.2 and out["crashes"] == 1
    assert out["goals"] == {"ratio_ge_1": None, "crash_loss_lt_10pct": False}
    none = report(args, [best([no_fault]), best([Run("crash", 1000, 0.9, True)], struck=True)],
                  None, "skipped")
    assert none["crash_loss"] is None and none["crashes"] == 0
    assert none["goals"] == {"ratio_ge_1": None, "crash_loss_lt_10pct": None}
    assert "no crash struck" in capsys.readouterr().out


def test_the_crash_plan_strikes_once_per_interval_from_half_an_interval_in() -> None:
    """A plain ``every=1`` plan strikes first at 1 s, so a run of 0.9 s (a 1 M record run
    on a quiet machine) measured no crash; the plan strikes at 0.5 s, 1.5 s, 2.5 s."""
    async def main() -> list[float]:
        async with Runtime(faults=crash_plan("stream", 1.0)) as rt:
            ref = await rt.spawn(Worker, name="stream.worker-0")
            for n in range(30):  # a message every 0.1 s for 3 s: each trigger lands
                await asyncio.sleep(0.1)
                try:
                    await ref.ask(Ping(n))
                except Exception:
                    pass
            return [e.time for e in rt.trace.events("fault")]

    struck = sim(main)
    assert [round(t, 1) for t in struck] == [0.5, 1.5, 2.5]
