"""Structured log events, logging configuration, and per-actor statistics."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import pytest
import structlog
from _helpers import Boom, Crash, Ping, Sleep, Worker, sim
from structlog.testing import capture_logs

import runtime
from runtime import Backoff, Fault, Runtime, configure_logging


def of(logs: Sequence[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [e for e in logs if e["event"] == event]


def test_lifecycle_events_are_structlog_events() -> None:
    async def main() -> None:
        with capture_logs() as logs:
            async with Runtime(backoff=Backoff(min=2)) as rt:
                sup = await rt.spawn_supervisor("sup", max_restarts=1, within=100,
                                                backoff=Backoff(min=2))
                w = await sup.spawn(Worker, name="w")
                await w.tell(Crash("first"))
                await asyncio.sleep(3)
                await w.tell(Crash("second"))
                await asyncio.sleep(3)

        started = of(logs, "actor.started")
        assert [(e["actor"], e["incarnation"]) for e in started] == [("w", 1), ("w", 2), ("w", 3)]
        assert all(e["log_level"] == "info" for e in started)

        crashed = of(logs, "actor.crashed")
        assert [e["actor"] for e in crashed] == ["w", "w"]
        assert crashed[0]["log_level"] == "error"
        assert isinstance(crashed[0]["exc_info"], Boom)
        assert str(crashed[0]["exc_info"]) == "first"

        restarted = of(logs, "actor.restarted")
        assert [(e["actor"], e["supervisor"], e["delay"]) for e in restarted] == [
            ("w", "sup", 2.0), ("sup", "root", 2.0)]
        assert restarted[0]["attempt"] == 1

        escalated = of(logs, "supervisor.escalated")
        assert len(escalated) == 1
        assert escalated[0]["supervisor"] == "sup"
        assert escalated[0]["child"] == "w"
        assert (escalated[0]["max_restarts"], escalated[0]["within"]) == (1, 100)
        assert escalated[0]["log_level"] == "error"

        stopped = of(logs, "actor.stopped")
        assert [(e["actor"], e["reason"]) for e in stopped] == [("w", "shutdown")]

    sim(main)


def test_fault_and_drop_events_are_structlog_events() -> None:
    async def main() -> None:
        with capture_logs() as logs:
            async with Runtime(faults=[Fault("drop", target="w", at=1)]) as rt:
                w = await rt.spawn(Worker, name="w")
                await asyncio.sleep(2)
                await w.tell(Ping())
                await asyncio.sleep(1)
        assert [(e["kind"], e["target"]) for e in of(logs, "fault.injected")] == [("drop", "w")]
        assert [(e["actor"], e["message"], e["cause"]) for e in of(logs, "message.dropped")] == [
            ("w", "Ping", "fault")]

    sim(main)


@pytest.fixture
def restore_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


async def crash_once() -> None:
    async with Runtime() as rt:
        w = await rt.spawn(Worker, name="w")
        with pytest.raises(Boom):
            await w.ask(Crash("kaboom"))


def test_configure_logging_json_renders_one_json_object_per_line(
    restore_structlog: None,
) -> None:
    out = io.StringIO()
    configure_logging(json=True, stream=out)
    runtime.run(crash_once, simulated=True)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_event = {line["event"]: line for line in lines}
    assert {"actor.started", "actor.crashed", "actor.restarted", "actor.stopped"} <= set(by_event)
    crashed = by_event["actor.crashed"]
    assert crashed["actor"] == "w"
    assert crashed["level"] == "error"
    assert "Boom: kaboom" in crashed["exception"]
    assert "timestamp" in crashed


def test_configure_logging_console_and_level(restore_structlog: None) -> None:
    out = io.StringIO()
    configure_logging(json=False, level="warning", stream=out)
    runtime.run(crash_once, simulated=True)
    text = out.getvalue()
    assert "actor.crashed" in text
    assert "actor=w" in text
    assert "[error    ] actor.crashed" in text
    assert "[info" not in text  # info is below the chosen level


def test_statistics_count_what_happened_to_each_actor() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            w = await rt.spawn(Worker, name="w", mailbox_capacity=8)
            await w.tell(Sleep(1))
            await asyncio.sleep(0.5)
            for n in range(3):
                await w.tell(Ping(n))
            await w.tell(Crash())
            await w.tell(Ping(9))
            await asyncio.sleep(2)
            await w.tell(Crash())
            await asyncio.sleep(1)
            stats = w.statistics()
            assert stats.received == 7
            assert stats.processed == 5
            assert stats.crashed == 2
            assert stats.restarted == 2
            assert stats.dropped == 0
            assert stats.mailbox_depth == 0
            assert stats.mailbox_high_water == 5
            assert stats.mailbox_capacity == 8
            assert rt.statistics() == [stats]

    sim(main)


_CRASHING_APP = """
from runtime import Actor, Message, Runtime, run


class Boom(Message):
    pass


class Fragile(Actor[Boom]):
    async def receive(self, msg: Boom) -> None:
        raise RuntimeError("kaboom")


async def main() -> str:
    async with Runtime() as rt:
        ref = await rt.spawn(Fragile, name="fragile")
        for _ in range(4):
            await ref.tell(Boom())
            await rt.sleep(2.0)  # within the default restart intensity
    return "done"


print(run(main, simulated=True, seed=1))
"""


def test_without_configure_logging_events_are_one_line_each_on_stderr() -> None:
    """An embedding application that configures nothing: its standard output is its
    own, and four crashes are a few lines on stderr, not rich tracebacks (issue #10:
    282 lines on stdout for 4 crashes)."""
    result = subprocess.run([sys.executable, "-c", _CRASHING_APP], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    lines = result.stderr.splitlines()
    crashed = [line for line in lines if "actor.crashed" in line]
    assert len(crashed) == 4
    assert all("error='RuntimeError: kaboom'" in line for line in crashed), crashed
    assert len(lines) <= 4 * 3, result.stderr
    assert "Traceback" not in result.stderr and "actor.started" not in result.stderr


def test_console_logging_can_still_show_tracebacks(restore_structlog: None) -> None:
    out = io.StringIO()
    configure_logging(level="error", stream=out, tracebacks=True)
    runtime.run(crash_once, simulated=True)
    assert "Traceback (most recent call last)" in out.getvalue()
    assert "Boom: kaboom" in out.getvalue()
