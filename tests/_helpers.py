"""Shared pieces of the runtime core tests: simulated runs and small protocols.

Every test runs in simulated time (``sim``): virtual seconds, a seeded
scheduler, and no real sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from structlog.testing import capture_logs

import runtime
from runtime import Actor, Message

T = TypeVar("T")

SEEDS = range(8)

Journal = list[tuple[str, str, float]]


def sim(main: Callable[[], Awaitable[T]], seed: int = 0) -> T:
    """Run ``main`` on a simulated loop seeded with ``seed`` and return its result.

    Log events are captured, not rendered: structlog's default console renderer
    formats each crash traceback with rich (tens of ms each), which would make
    crash-heavy tests slow. Tests that check events nest their own ``capture_logs``.
    """
    with capture_logs():
        return runtime.run(main, simulated=True, seed=seed)


class Boom(Exception):
    """The error a test actor raises on purpose."""


class Ping(Message, frozen=True):
    n: int = 0


class Crash(Message, frozen=True):
    why: str = "boom"


class Stop(Message, frozen=True):
    pass


class Sleep(Message, frozen=True):
    seconds: float


Probe = Ping | Crash | Stop | Sleep


class Worker(Actor[Probe]):
    """Answers ``Ping`` with its number, raises on ``Crash``, stops normally on ``Stop``,
    and takes ``Sleep.seconds`` (virtual) to handle ``Sleep``. Appends what it sees to
    ``log`` as ``(event, name, time)`` tuples."""

    def __init__(self, log: list[tuple[str, str, float]] | None = None) -> None:
        self.journal = log if log is not None else []

    async def started(self) -> None:
        self.journal.append(("started", self.name, self.now()))

    async def recover(self) -> None:
        self.journal.append(("recover", self.name, self.now()))

    async def receive(self, msg: Probe) -> object:
        self.journal.append((type(msg).__name__, self.name, self.now()))
        if isinstance(msg, Crash):
            raise Boom(msg.why)
        if isinstance(msg, Stop):
            self.stop()
        if isinstance(msg, Sleep):
            await asyncio.sleep(msg.seconds)
            self.journal.append(("slept", self.name, self.now()))
        if isinstance(msg, Ping):
            return msg.n
        return None

    async def stopped(self) -> None:
        self.journal.append(("stopped", self.name, self.now()))


def events(journal: list[tuple[str, str, float]], kind: str) -> list[tuple[str, float]]:
    """``(name, time)`` of every journal entry of ``kind``."""
    return [(name, t) for event, name, t in journal if event == kind]
