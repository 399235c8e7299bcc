"""The contract between the scenario runner and a system (stream, queue, ...).

A system is found through the entry-point group ``shardline.systems``; the
entry point's name is the scenario section it owns (``[stream]``) and its
object is a :class:`ScenarioSystem` instance. A user's package adds a system
the same way the built-in four do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

import msgspec

from runtime._system import Runtime
from runtime.scenario._sampler import Probe, Refresh, Sampler

C = TypeVar("C")
E = TypeVar("E")


class InvariantResult(msgspec.Struct, frozen=True):
    """One checked invariant: its name, whether it held, and the evidence."""

    name: str
    held: bool
    detail: str = ""


MetricValue = int | float | str


def exercised_floors(floors: Iterable[tuple[str, int, int]]) -> list[InvariantResult]:
    """``exercised_<name>`` for each ``(name, floor, seen)`` whose floor is set (> 0).

    A scenario that claims to test a fault sets a floor in ``[expect]`` and
    must show the fault happened; a floor of 0 checks nothing and reports
    nothing.
    """
    return [InvariantResult(f"exercised_{name}", seen >= floor,
                            f"{seen} (expected at least {floor})")
            for name, floor, seen in floors if floor > 0]


class SystemOutcome(msgspec.Struct):
    """What a system's run produced: invariants, metrics and report extras."""

    invariants: list[InvariantResult]
    metrics: dict[str, MetricValue] = msgspec.field(default_factory=dict)
    extra: dict[str, object] = msgspec.field(default_factory=dict)


ProgressFn = Callable[[int, int | None, str], None]


class ScenarioContext:
    """What a system needs from the runner besides its own config."""

    def __init__(
        self, *, rt: Runtime, name: str, seed: int, clock: str, out_dir: Path,
        scenario_dir: Path, deadline: float, progress: ProgressFn | None = None,
        previous_runs: int = 0,
        sampler: Sampler | None = None,
    ) -> None:
        self.rt = rt
        self.name = name
        self.seed = seed
        self.clock = clock
        self.out_dir = out_dir
        self.scenario_dir = scenario_dir
        self.deadline = deadline
        self._progress = progress
        self.previous_runs = previous_runs
        """How many runs of this same scenario used the store before (0: a fresh store)."""
        self._sampler = sampler

    def expand(self, template: str) -> str:
        """Substitute ``{out}`` (the run's output directory) in a URL or path."""
        return template.replace("{out}", str(self.out_dir))

    def progress(self, done: int, total: int | None, note: str = "") -> None:
        if self._progress is not None:
            self._progress(done, total, note)

    def observe(self, probe: Probe, refresh: Refresh | None = None) -> None:
        """Hand the runner the probe of this run's counters (call once, when work starts).

        When the scenario asks for ``samples``, the runner reads the probe
        every bucket on the runtime clock, after awaiting ``refresh`` (if given:
        it brings counters kept elsewhere up to date); otherwise this does nothing.
        """
        if self._sampler is not None:
            self._sampler.start(self.rt, probe, refresh)

    async def end_observation(self) -> None:
        """The workload is done: close the last sample bucket before the checks run.

        Checks can hold the event loop for seconds; sampling them would stretch
        the run's last bucket over time in which no work was left.
        """
        if self._sampler is not None:
            await self._sampler.stop()

    async def wait_until(self, condition: Callable[[], bool], poll: float = 0.01) -> bool:
        """Poll ``condition`` on the runtime clock until it holds or the deadline passes."""
        return await self.rt.wait_until(condition, deadline=self.deadline, poll=poll)


class ScenarioSystem(ABC, Generic[C, E]):
    """A system that can run from a scenario file section."""

    section: ClassVar[str]
    config_type: ClassVar[type]
    expect_type: ClassVar[type]
    fault_kinds: ClassVar[tuple[str, ...]] = ()
    bench_fault_targets: ClassVar[dict[str, str]] = {}
    """Where a fault kind lands by default in this system (``shardline bench faults``
    aims a kind here unless the scenario names a target); the key ``"actors"`` is the
    default for every actor kind (crash, pause, delay, ...)."""

    def check(self, config: C, expect: E) -> list[tuple[str, str]]:
        """Cross-field checks msgspec cannot express: (field path, message) pairs."""
        return []

    def placement(self, config: C) -> dict[str, object]:
        """The settings that decide where data lives and what it means (partitions,
        servers, keys, the source...): a store made under other values is refused
        rather than resumed. Values must be msgspec-encodable."""
        return {}

    def planned_run(self, config: C) -> float:
        """Seconds the workload's plan takes when every step of it runs in full, faults
        aside (a deployment's bakes): a ``timeout`` shorter than this is refused, and
        when a file gives none the deadline is derived from it. Default 0."""
        return 0.0

    def fault_targets(self, config: C) -> Mapping[str, Sequence[str]] | None:
        """The names each fault kind can strike in this topology, so that a fault whose
        target matches none is refused before the run: key ``"actor"`` for the actor
        kinds (crash, pause, delay, drop, duplicate), and each of ``fault_kinds``.
        ``None`` (the default) leaves targets unchecked."""
        return None

    def register_node(self, rt: Runtime) -> None:
        """Declare on node ``rt`` the entity classes this system's actors run as
        (``rt.register_entity(cls)`` for each), so that the node may host them.

        Called on every node before it serves: each ``shardline node`` process
        calls it for every installed system. Default: the system has no entities.
        """

    async def start_node(self, rt: Runtime) -> None:
        """Spawn on node ``rt`` the node-local actors this system runs on every node (a
        stream's worker host, for instance), after ``register_node``.

        Called on every node before it serves, as ``register_node`` is. Default:
        nothing runs on a node until an entity is activated there.
        """

    def register_faults(self, rt: Runtime) -> None:
        """Register this system's passive fault kinds; active ones are registered in run()."""
        for kind in self.fault_kinds:
            if kind not in rt.faults.known_kinds():
                rt.faults.register_kind(kind)

    @abstractmethod
    async def run(self, ctx: ScenarioContext, config: C, expect: E) -> SystemOutcome:
        """Build the topology, drive the workload, check the invariants."""
