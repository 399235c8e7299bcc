"""Finding systems through the ``shardline.systems`` entry-point group.

Systems load lazily, one section at a time, so a system that fails to
import breaks only the scenarios that use it, with a message naming it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from runtime._errors import ScenarioError
from runtime.scenario._system_api import ScenarioSystem

GROUP = "shardline.systems"
_extra: dict[str, ScenarioSystem[object, object]] = {}


def register_system(system: ScenarioSystem[object, object]) -> None:
    """Add a system without packaging it (for tests and notebooks)."""
    _extra[system.section] = system


def system_names() -> list[str]:
    """Section names of every known system, without importing them."""
    names = {ep.name for ep in entry_points(group=GROUP)} | set(_extra)
    return sorted(names)


def load_system(section: str) -> ScenarioSystem[object, object]:
    """The system owning ``[section]``; ``ScenarioError`` if it is unknown or broken."""
    if section in _extra:
        return _extra[section]
    for ep in entry_points(group=GROUP, name=section):
        try:
            system = ep.load()
        except Exception as exc:
            raise ScenarioError(f"system {section!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(system, ScenarioSystem):
            raise ScenarioError(f"entry point {section!r} ({ep.value}) is not a ScenarioSystem")
        return system
    raise ScenarioError(f"no system named {section!r}; known: {', '.join(system_names())}")


def systems() -> dict[str, ScenarioSystem[object, object]]:
    """Every known system, loaded (fails on the first broken one)."""
    return {name: load_system(name) for name in system_names()}
