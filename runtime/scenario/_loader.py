"""Loading a scenario file: TOML -> typed structs, or a ``ScenarioError``.

Every error names the file, the path of the bad field and what was
expected: ``scenarios/x.toml: stream.lease_ttl: expected a duration such as
'250ms' ...``. Unknown keys are errors (a typo must not silently fall back
to a default).
"""

from __future__ import annotations

import fnmatch
import re
import sys
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from runtime._durations import Duration, decode_hook
from runtime._errors import ScenarioError
from runtime._faults import ACTOR_FAULT_KINDS, Fault
from runtime.scenario._node_faults import NODE_FAULT_KINDS, check_node_faults, shown
from runtime.scenario._registry import load_system, system_names
from runtime.scenario._system_api import ScenarioSystem
from runtime.store._faulty import STORE_OPERATIONS

STORE_FAULT_KINDS = ("store_error",)


DEFAULT_TIMEOUT = 600.0
SCENARIO_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}")
"""A scenario's name is an identifier: it names its output directory, ``out/<name>``."""


class ScenarioHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[scenario]`` table."""

    name: str
    seed: int = 0
    clock: Literal["simulated", "real"] = "simulated"
    store: str = "sqlite:///{out}/state.db"
    timeout: Duration = Duration(DEFAULT_TIMEOUT)
    """The run's deadline on the runtime clock. Left out, it is the larger of 10 min
    and three times the system's planned run (a deployment's bakes, see
    ``ScenarioSystem.planned_run``)."""
    description: str = ""
    samples: Duration | None = None
    """Bucket width of the runtime samples written to ``<out>/samples.jsonl`` (off if unset)."""
    nodes: int | None = None
    """Run across this many nodes (``shardline run --nodes`` overrides it); see
    ``runtime.scenario._nodes``."""


class FaultSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One ``[[faults]]`` entry, durations as strings with units."""

    kind: str
    target: str = "*"
    at: Duration | None = None
    every: Duration | None = None
    probability: float | None = None
    duration: Duration = Duration(0.0)
    delay: Duration = Duration(0.0)
    count: int | None = None
    start: Duration = Duration(0.0)
    all: bool = False
    restart_after: Duration | None = None

    def to_fault(self) -> Fault:
        """The plan entry, its times plain floats (a ``Fault`` crosses the cluster's
        wire to strike actors on nodes)."""

        def plain(value: float | None) -> float | None:
            return None if value is None else float(value)

        return Fault(
            kind=self.kind, target=self.target, at=plain(self.at), every=plain(self.every),
            probability=self.probability, duration=float(self.duration),
            delay=float(self.delay), count=self.count, start=float(self.start), all=self.all,
            restart_after=plain(self.restart_after),
        )


class NodeExpect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Floors on node faults, read from ``[expect]`` whatever the system: a scenario
    that claims to kill nodes must show it did (``exercised_node_kills``)."""

    node_kills: int = msgspec.field(default=0)
    node_pauses: int = msgspec.field(default=0)
    node_partitions: int = msgspec.field(default=0)


NODE_FLOORS = tuple(NodeExpect.__struct_fields__)


class LoadedScenario(msgspec.Struct, frozen=True):
    """A validated scenario: header, the system that runs it, its config, faults."""

    path: str
    header: ScenarioHeader
    system: ScenarioSystem[Any, Any]
    config: Any
    expect: Any
    faults: list[Fault]
    node_expect: NodeExpect = NodeExpect()


_AT = re.compile(r"^(?P<msg>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)


def _field_path(path: str) -> str:
    return path.lstrip(".") or "(top level)"


def _fail(file: str, path: str, message: str) -> ScenarioError:
    return ScenarioError(f"{file}: {path}: {message}")


def load_scenario(path: str | Path) -> LoadedScenario:
    """Read and validate a scenario file; ``ScenarioError`` on any bad input."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"{file}: cannot read scenario file: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ScenarioError(f"{file}: not UTF-8 text (TOML files are UTF-8): byte "
                            f"0x{exc.object[exc.start]:02x} at offset {exc.start}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"{file}: not valid TOML: {exc}") from exc
    # User functions a file names ("mymod:fn") may live beside it, and systems
    # import them while validating (as the runner does before running).
    scenario_dir = str(Path(path).resolve().parent)
    if scenario_dir not in sys.path:
        sys.path.insert(0, scenario_dir)
    return parse_scenario(raw, file)


def parse_scenario(raw: dict[str, Any], file: str = "<scenario>") -> LoadedScenario:
    """Validate an already-parsed TOML document (``file`` is used in messages)."""
    known = system_names()
    if "scenario" not in raw:
        raise _fail(file, "scenario", "missing required table [scenario]")
    sections = [key for key in raw if key in known]
    fixed = ("scenario", "faults", "expect")
    unknown = [key for key in raw if key not in known and key not in fixed]
    if unknown:
        expected = ", ".join(["scenario", "faults", "expect", *sorted(known)])
        raise _fail(file, unknown[0], f"unknown table; expected one of: {expected}")
    if len(sections) != 1:
        names = ", ".join(f"[{s}]" for s in sorted(known))
        found = ", ".join(sections) or "none"
        raise _fail(file, "(top level)",
                    f"expected exactly one system table ({names}); found {found}")
    section = sections[0]
    system = load_system(section)
    raw, node_expect = _node_floors(file, raw)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [
        ("scenario", ScenarioHeader),
        (section, system.config_type),
        ("faults", list[FaultSpec], []),
        ("expect", system.expect_type, msgspec.field(default_factory=system.expect_type)),
    ]
    document_type = msgspec.defstruct("ScenarioDocument", fields, forbid_unknown_fields=True)
    try:
        document = msgspec.convert(raw, document_type, dec_hook=decode_hook)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        raise _fail(file, _field_path(match["path"] or ""), match["msg"]) from None
    config = getattr(document, section)
    expect = getattr(document, "expect")  # noqa: B009 - a dynamically defined struct
    faults = _faults(file, getattr(document, "faults"), system, config)  # noqa: B009
    for field_path, message in system.check(config, expect):
        # paths into [expect] are returned as "expect.<field>"; the rest are in [section]
        where = field_path if field_path.startswith("expect.") else f"{section}.{field_path}"
        raise _fail(file, where, message)
    header: ScenarioHeader = getattr(document, "scenario")  # noqa: B009
    if not SCENARIO_NAME.fullmatch(header.name):
        raise _fail(file, "scenario.name", "expected an identifier of up to 100 letters, "
                    f"digits, '-', '_' and '.', not starting with '.', got {header.name!r}")
    if header.timeout <= 0:
        raise _fail(file, "scenario.timeout", "expected a positive duration")
    planned = system.planned_run(config)
    if "timeout" not in raw["scenario"]:
        header = msgspec.structs.replace(
            header, timeout=Duration(max(DEFAULT_TIMEOUT, 3.0 * planned)))
    elif header.timeout < planned:
        raise _fail(file, "scenario.timeout", f"{header.timeout:g} s is shorter than this "
                    f"{section} scenario's plan ({planned:g} s when every step runs in full); "
                    f"expected at least {planned:g} s, or leave timeout out to derive it")
    if header.samples is not None and header.samples <= 0:
        raise _fail(file, "scenario.samples", "expected a positive duration")
    from runtime.store import check_store_url

    try:
        check_store_url(header.store.replace("{out}", "out"))
    except Exception as exc:
        raise _fail(file, "scenario.store", str(exc)) from None
    if header.nodes is not None and header.nodes < 1:
        raise _fail(file, "scenario.nodes", f"expected at least 1 node, got {header.nodes}")
    # without [scenario] nodes, `run --nodes N` may still supply them: checked at run
    check_node_faults(file, faults, header.nodes, header.clock, require_nodes=False)
    return LoadedScenario(file, header, system, config, expect, faults, node_expect)


def _node_floors(file: str, raw: dict[str, Any]) -> tuple[dict[str, Any], NodeExpect]:
    """``raw`` without the node floors of ``[expect]``, and those floors."""
    expect = raw.get("expect")
    if not isinstance(expect, dict) or not any(key in expect for key in NODE_FLOORS):
        return raw, NodeExpect()
    floors = {key: expect[key] for key in NODE_FLOORS if key in expect}
    rest = {key: value for key, value in expect.items() if key not in NODE_FLOORS}
    try:
        node_expect = msgspec.convert(floors, NodeExpect)
    except msgspec.ValidationError as exc:
        match = _AT.match(str(exc))
        assert match is not None
        raise _fail(file, "expect" + (match["path"] or "").lstrip("$"), match["msg"]) from None
    return {**raw, "expect": rest}, node_expect


def _strikable(kind: str, targets: Mapping[str, Sequence[str]]) -> Sequence[str] | None:
    """The names a fault of ``kind`` can strike, or ``None`` if the system does not say."""
    if kind in STORE_FAULT_KINDS:
        return [f"store.{op}" for op in STORE_OPERATIONS]
    return targets.get("actor" if kind in ACTOR_FAULT_KINDS else kind)


def _faults(file: str, specs: list[FaultSpec], system: ScenarioSystem[Any, Any],
            config: Any) -> list[Fault]:
    kinds = [*ACTOR_FAULT_KINDS, *STORE_FAULT_KINDS, *NODE_FAULT_KINDS, *system.fault_kinds]
    targets = system.fault_targets(config) or {}
    faults: list[Fault] = []
    for index, spec in enumerate(specs):
        if spec.kind not in kinds:
            raise _fail(file, f"faults[{index}].kind",
                        f"unknown fault kind {spec.kind!r}; expected one of: {', '.join(kinds)}")
        names = _strikable(spec.kind, targets)
        if names is not None and not any(fnmatch.fnmatchcase(n, spec.target) for n in names):
            raise _fail(file, f"faults[{index}].target",
                        f"{spec.target!r} matches nothing a {spec.kind!r} fault can strike "
                        f"in this topology; expected a name or glob matching one of: "
                        f"{shown(names)}")
        try:
            faults.append(spec.to_fault())
        except ValueError as exc:
            raise _fail(file, f"faults[{index}]", str(exc)) from None
    return faults
