"""What ``shardline list`` shows: the installed systems and the shipped scenario files."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import msgspec

from runtime._errors import ScenarioError
from runtime.scenario._loader import load_scenario
from runtime.scenario._registry import GROUP, load_system, system_names


class SystemRow(msgspec.Struct, frozen=True):
    """One installed system: its section, where it comes from, its docstring's first line."""

    section: str
    source: str
    summary: str


class ScenarioRow(msgspec.Struct, frozen=True):
    """One scenario file: its name, its system's section and its description (or error)."""

    file: str
    section: str
    summary: str


def shipped_dir(name: str) -> Path | None:
    """``./<name>`` if it exists, else ``<name>`` beside the installed package."""
    beside_package = Path(__file__).resolve().parents[2] / name
    for candidate in (Path.cwd() / name, beside_package):
        if candidate.is_dir():
            return candidate
    return None


def _first_line(text: str | None) -> str:
    return (text or "").strip().split("\n", 1)[0]


def _leading_comment(path: Path) -> str:
    """The first line of a file's opening ``#`` comment, which the shipped files all have."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def system_catalog() -> list[SystemRow]:
    """Every known system; one that fails to load says why instead of hiding."""
    sources = {ep.name: ep.value for ep in entry_points(group=GROUP)}
    rows: list[SystemRow] = []
    for section in system_names():
        try:
            summary = _first_line(type(load_system(section)).__doc__)
        except ScenarioError as exc:
            summary = f"failed to load: {exc}"
        rows.append(SystemRow(section, sources.get(section, "(registered in code)"), summary))
    return rows


def shipped_scenarios(folder: Path) -> list[ScenarioRow]:
    """Each ``*.toml`` in ``folder``, validated; an invalid one shows its error."""
    rows: list[ScenarioRow] = []
    for path in sorted(folder.glob("*.toml")):
        try:
            loaded = load_scenario(path)
        except ScenarioError as exc:
            rows.append(ScenarioRow(path.name, "?", f"invalid: {exc}"))
            continue
        summary = _first_line(loaded.header.description) or _leading_comment(path)
        rows.append(ScenarioRow(path.name, loaded.system.section, summary))
    return rows
