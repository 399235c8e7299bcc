"""Resolving user functions named ``package.module:function``.

Scenario files name user code this way (a source, a processing step, a
destination, a service model). Errors name the spec and what went wrong, so
a typo in a scenario file is a clear message, not a traceback.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from runtime._errors import ScenarioError


def resolve_callable(spec: str, *, what: str = "function") -> Callable[..., object]:
    """Import ``package.module:function`` (dotted attribute paths allowed after the colon)."""
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ScenarioError(f"{what} {spec!r}: expected 'package.module:function'")
    try:
        target: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise ScenarioError(
            f"{what} {spec!r}: cannot import module {module_name!r}: {exc}") from exc
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ScenarioError(
                f"{what} {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    if not callable(target):
        raise ScenarioError(f"{what} {spec!r} is not callable")
    return target
