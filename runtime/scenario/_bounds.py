"""Bounds on numbers, written once as msgspec ``Meta`` on the field.

A scenario file is decoded with ``msgspec.convert``, which enforces every
``Meta(ge=..., le=...)`` and names the field (``stream.partitions: Expected
`int` <= 1024``). A config built in Python is not decoded, so systems call
:func:`bound_problems` from their ``problems()`` to apply the same bounds to
it, with the same words. Every size a scenario can set has an upper bound: a
value past it would not fail fast, it would run for minutes or exhaust memory.
"""

from __future__ import annotations

import msgspec
from msgspec import inspect


def _kind(t: inspect.IntType | inspect.FloatType) -> str:
    return "int" if isinstance(t, inspect.IntType) else "float"


def _violation(t: inspect.IntType | inspect.FloatType, value: float) -> str | None:
    checks: tuple[tuple[float | None, str, bool], ...] = (
        (t.ge, ">=", t.ge is None or value >= t.ge), (t.gt, ">", t.gt is None or value > t.gt),
        (t.le, "<=", t.le is None or value <= t.le), (t.lt, "<", t.lt is None or value < t.lt))
    for bound, sign, holds in checks:
        if not holds:
            return f"Expected `{_kind(t)}` {sign} {bound}, got {value}"
    return None


def _numeric(t: inspect.Type) -> inspect.IntType | inspect.FloatType | None:
    if isinstance(t, inspect.IntType | inspect.FloatType):
        return t
    if isinstance(t, inspect.UnionType):  # ``int | None``: the bounds of the number
        found = [m for m in t.types if isinstance(m, inspect.IntType | inspect.FloatType)]
        return found[0] if len(found) == 1 else None
    return None


def bound_problems(obj: msgspec.Struct) -> list[tuple[str, str]]:
    """(field, message) for each number of ``obj`` outside its field's ``Meta`` bounds,
    and for each list longer (or shorter) than its ``max_length`` (``min_length``)."""
    found: list[tuple[str, str]] = []
    info = inspect.type_info(type(obj))
    assert isinstance(info, inspect.StructType)
    for field in info.fields:
        value = getattr(obj, field.name)
        numeric = _numeric(field.type)
        if numeric is not None and isinstance(value, int | float) \
                and not isinstance(value, bool):
            problem = _violation(numeric, value)
            if problem is not None:
                found.append((field.name, problem))
        elif isinstance(field.type, inspect.ListType) and isinstance(value, list):
            low, high = field.type.min_length, field.type.max_length
            if low is not None and len(value) < low:
                found.append((field.name, f"Expected `array` of length >= {low}"))
            if high is not None and len(value) > high:
                found.append((field.name, f"Expected `array` of length <= {high}"))
    return found
