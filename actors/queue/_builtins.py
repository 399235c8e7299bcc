"""The built-in tier functions: numeric sums per original key.

They let a scenario run without user code and give the report an oracle:
the final result must equal the sums computed directly over the originals
(minus the dead letters counted out). Originals are ASCII integers
(``b"417"``); every later body is JSON ``{"<original key>": sum, ...}``.
``out_keys`` maps each key onto that many coarser keys (a stable CRC-32),
so the range of strict-order keys narrows tier by tier.
"""

from __future__ import annotations

import itertools
import re
import zlib
from collections.abc import Callable, Iterable

import msgspec

from runtime import KeyCache

MapFn = Callable[[str, bytes], tuple[str, bytes]]
MapManyFn = Callable[[list[str], list[bytes]], tuple[list[str], list[bytes]]]
ReduceFn = Callable[[str, list[bytes]], tuple[str, bytes]]
FinalFn = Callable[[list[bytes]], object]

_encode = msgspec.json.Encoder().encode
_decode_sums = msgspec.json.Decoder(dict[str, int]).decode


def sums_of(key: str, body: bytes) -> dict[str, int]:
    """The sums a body stands for: an original's value under its key, or the JSON sums."""
    if body[:1] == b"{":
        return _decode_sums(body)
    return {key: int(body)}


def add_into(total: dict[str, int], sums: dict[str, int], sign: int = 1) -> None:
    for k, v in sums.items():
        total[k] = total.get(k, 0) + sign * v


def regroup(tier: str, out_keys: int | None) -> Callable[[str], str]:
    """The coarser key of ``key`` (the key itself when ``out_keys`` is None); the
    built-ins remember it per key (``KeyCache``)."""
    if out_keys is None:
        return lambda key: key
    width = len(str(out_keys - 1))

    def coarser(key: str) -> str:
        return f"{tier}-{zlib.crc32(key.encode()) % out_keys:0{width}d}"

    return coarser


_INT = rb"0|-?[1-9][0-9]{0,17}"
_PLAIN_INT = re.compile(_INT)
"""A body that is an integer exactly as JSON writes it (within int64)."""
_PLAIN_INTS = re.compile(rb"(?:(?:" + _INT + rb")\n)*")
"""Bodies joined by newlines, each such an integer (given no body has a newline)."""
_ONE_SUM = b"{%b:%b}".__mod__
"""(JSON key, JSON integer) -> the JSON object of that one sum."""


def make_map(tier: str, out_keys: int | None) -> MapFn:
    """Built-in map: the body's sums, under the coarser key.

    ``fn(key, body)`` maps one message (what the benchmark's in-memory
    baseline calls); ``fn.many(keys, bodies)`` a whole batch (what a tier
    client does; see ``many_of``), with the same results. An original
    already in JSON's form of its integer has its output written around it
    without parsing it (most of a map's cost per message), by both: the
    batch form when every body of the batch is one, else message by
    message. Either raises on a bad body.
    """
    coarser = KeyCache(regroup(tier, out_keys))
    quoted: KeyCache[bytes] = KeyCache(_encode)

    def transform(key: str, body: bytes) -> tuple[str, bytes]:
        if _PLAIN_INT.fullmatch(body):
            return coarser[key], _ONE_SUM((quoted[key], body))
        return coarser[key], _encode(sums_of(key, body))

    def many(keys: list[str], bodies: list[bytes]) -> tuple[list[str], list[bytes]]:
        out_keys = coarser.many(keys)
        joined = b"\n".join(bodies)
        # a body with a newline of its own would split into lines that all look plain
        if joined.count(b"\n") == len(bodies) - 1 and _PLAIN_INTS.fullmatch(joined + b"\n"):
            return out_keys, list(map(_ONE_SUM, zip(quoted.many(keys), bodies, strict=True)))
        pairs = zip(keys, bodies, strict=True)
        return out_keys, [_encode(sums_of(key, body)) for key, body in pairs]

    transform.builtin = True  # type: ignore[attr-defined]
    transform.many = many  # type: ignore[attr-defined]
    return transform


def many_of(fn: Callable[..., object]) -> MapManyFn | None:
    """The batch form of a built-in map (``keys, bodies -> (out_keys, out_bodies)``),
    or None for any other function."""
    return getattr(fn, "many", None) if is_builtin(fn) else None


def make_reduce(tier: str, out_keys: int | None) -> ReduceFn:
    """Built-in reduce: the window's sums added up, under the coarser key."""
    coarser = KeyCache(regroup(tier, out_keys))

    def summarize(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
        total: dict[str, int] = {}
        get = total.get
        if all(map(bytes.startswith, bodies, itertools.repeat(b"{"))):
            parts: Iterable[dict[str, int]] = map(_decode_sums, bodies)
        else:
            parts = [sums_of(key, body) for body in bodies]
        for sums in parts:
            for k, v in sums.items():
                total[k] = get(k, 0) + v
        return coarser[key], _encode(total)

    summarize.builtin = True  # type: ignore[attr-defined]
    return summarize


def final_sums(bodies: list[bytes]) -> object:
    """Built-in final step: the sum per original key, their grand total and key count."""
    total: dict[str, int] = {}
    for body in bodies:
        add_into(total, sums_of("", body))
    return result_of(total)


final_sums.builtin = True  # type: ignore[attr-defined]


def final_sums_keyed(messages: Iterable[tuple[str, bytes]]) -> object:
    """The built-in final step as a pipeline runs it, given each message's key too:
    a last tier of the user's whose bodies are plain integers keeps their keys."""
    total: dict[str, int] = {}
    for key, body in messages:
        add_into(total, sums_of(key, body))
    return result_of(total)


def result_of(total: dict[str, int]) -> dict[str, object]:
    sums = {k: total[k] for k in sorted(total) if total[k] != 0}
    return {"total": sum(sums.values()), "keys": len(sums), "sums": sums}


def oracle(originals: Iterable[tuple[str, bytes]]) -> dict[str, int]:
    """Sums per key computed directly over the originals."""
    total: dict[str, int] = {}
    for key, body in originals:
        total[key] = total.get(key, 0) + int(body)
    return total


def is_builtin(fn: object) -> bool:
    return bool(getattr(fn, "builtin", False))
