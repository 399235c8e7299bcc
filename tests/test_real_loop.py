"""The real clock's event loop: uvloop by default, the standard library's on request,
and an unknown choice is a clear error (exit 2 from the CLI, no traceback)."""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

import pytest
import uvloop

import runtime
from runtime.cli import main as shardline


async def loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_the_real_clock_runs_on_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARDLINE_LOOP", raising=False)
    assert runtime.run(loop_type) is uvloop.Loop


def test_shardline_loop_asyncio_runs_the_standard_librarys_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHARDLINE_LOOP", "asyncio")
    found = runtime.run(loop_type)
    assert issubclass(found, asyncio.BaseEventLoop) and found is not uvloop.Loop


def test_simulated_time_keeps_its_own_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SHARDLINE_LOOP", raising=False)
    assert runtime.run(loop_type, simulated=True).__name__ == "SimulatedEventLoop"


def test_an_unknown_loop_is_a_clear_error(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SHARDLINE_LOOP", "trio")
    with pytest.raises(ValueError, match="SHARDLINE_LOOP: expected one of uvloop, asyncio"):
        runtime.run(loop_type)
    scenario = Path(__file__).parent.parent / "scenarios" / "stream_quickstart.toml"
    assert shardline(["validate", str(scenario)]) == 2
    err = capsys.readouterr().err
    assert "SHARDLINE_LOOP: expected one of uvloop, asyncio, got 'trio'" in err
    assert "Traceback" not in err


async def thresholds() -> tuple[int, int, int]:
    return gc.get_threshold()


def test_the_real_clock_tunes_the_collector_for_throughput_and_puts_it_back() -> None:
    before = gc.get_threshold()
    assert runtime.run(thresholds) == (10_000, 10, 1_000)
    assert gc.get_threshold() == before
    assert runtime.run(thresholds, simulated=True) == before  # simulation: untouched
