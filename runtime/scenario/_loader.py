"""Loading a scenario file: TOML -> typed structs, or a ``ScenarioError``.

Every error names the file, the path of the bad field and what was
expected: ``scenarios/x.toml: stream.lease_ttl: expected a duration such as
'250ms' ...``. Unknown keys are errors (a typo must not silently fall back
to a default).
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path
from typing import Any, Literal

import msgspec

from runtime._errors import ScenarioError
from runtime._faults import ACTOR_FAULT_KINDS, Fault
from runtime.scenario._durations import Duration, decode_hook
from runtime.scenario._registry import load_system, system_names
from runtime.scenario._system_api import ScenarioSystem

STORE_FAULT_KINDS = ("store_error",)


class ScenarioHeader(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[scenario]`` table."""

    name: str
    seed: int = 0
    clock: Literal["simulated", "real"] = "simulated"
    store: str = "sqlite:///{out}/state.db"
    timeout: Duration = Duration(600.0)
    description: str = ""
    samples: Duration | None = None
    """Bucket width of the runtime samples written to ``<out>/samples.jsonl`` (off if unset)."""


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

    def to_fault(self) -> Fault:
        return Fault(
            kind=self.kind, target=self.target, at=self.at, every=self.every,
            probability=self.probability, duration=self.duration, delay=self.delay,
            count=self.count, start=self.start, all=self.all,
        )


class LoadedScenario(msgspec.Struct, frozen=True):
    """A validated scenario: header, the system that runs it, its config, faults."""

    path: str
    header: ScenarioHeader
    system: ScenarioSystem[Any, Any]
    config: Any
    expect: Any
    faults: list[Fault]


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
    faults = _faults(file, getattr(document, "faults"), system)  # noqa: B009
    for field_path, message in system.check(config, expect):
        # paths into [expect] are returned as "expect.<field>"; the rest are in [section]
        where = field_path if field_path.startswith("expect.") else f"{section}.{field_path}"
        raise _fail(file, where, message)
    header: ScenarioHeader = getattr(document, "scenario")  # noqa: B009
    if header.timeout <= 0:
        raise _fail(file, "scenario.timeout", "expected a positive duration")
    if header.samples is not None and header.samples <= 0:
        raise _fail(file, "scenario.samples", "expected a positive duration")
    from runtime.store import check_store_url

    try:
        check_store_url(header.store.replace("{out}", "out"))
    except Exception as exc:
        raise _fail(file, "scenario.store", str(exc)) from None
    return LoadedScenario(file, header, system, config, expect, faults)


def _faults(file: str, specs: list[FaultSpec], system: ScenarioSystem[Any, Any]) -> list[Fault]:
    kinds = [*ACTOR_FAULT_KINDS, *STORE_FAULT_KINDS, *system.fault_kinds]
    faults: list[Fault] = []
    for index, spec in enumerate(specs):
        if spec.kind not in kinds:
            raise _fail(file, f"faults[{index}].kind",
                        f"unknown fault kind {spec.kind!r}; expected one of: {', '.join(kinds)}")
        try:
            faults.append(spec.to_fault())
        except ValueError as exc:
            raise _fail(file, f"faults[{index}]", str(exc)) from None
    return faults
