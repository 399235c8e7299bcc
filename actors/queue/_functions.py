"""A tier's processing step: the user's (or built-in) function, plus poison.

``TierStep`` turns one delivered message into an output (map), or a whole
window into one (reduce). Anything a function raises, or a result of the
wrong shape, is a processing failure of one message: for a map the message
itself; for a window the member that makes it fail (a poison member, or
the first member whose joining makes the function refuse the window: the
shortest failing prefix, found by bisection). The client names that member
when it settles the batch, and after ``max_receives`` failures it is
dead-lettered while its key moves on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from actors.queue._builtins import make_map, make_reduce, many_of
from actors.queue._config import PoisonSpec, TierConfig
from runtime import ShardlineError
from runtime._callables import resolve_callable


class PoisonMessage(ShardlineError):
    """Raised by the ``poison`` option for every matching message, every time."""


class MemberFailed(ShardlineError):
    """Member ``index`` of a window makes it fail (``__cause__`` says how)."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.index = index


class BadFunctionResult(ShardlineError, TypeError):
    """A tier function returned something other than ``(order_key: str, body: bytes)``."""


def check_result(tier: str, result: object) -> tuple[str, bytes]:
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[0], str)
            and isinstance(result[1], bytes)):
        raise BadFunctionResult(
            f"tier {tier!r}: function returned {result!r}; expected (order_key: str, body: bytes)")
    return result


@dataclass(frozen=True)
class PoisonMatcher:
    key: str
    body: str

    def check(self, tier: str, key: str, body: bytes) -> None:
        if fnmatch.fnmatchcase(key, self.key) and fnmatch.fnmatchcase(
                body.decode("utf-8", "replace"), self.body):
            raise PoisonMessage(f"tier {tier!r}: poison message on key {key!r}")


class TierStep:
    """What one tier does to its messages; see the module docstring."""

    def __init__(self, config: TierConfig, fn: Callable[..., object] | None = None,
                 poison: PoisonSpec | None = None) -> None:
        self.config = config
        self.name = config.name
        if fn is None and config.fn is not None:
            fn = resolve_callable(config.fn, what=f"tier {config.name!r} function")
        if fn is None:
            fn = (make_map(config.name, config.out_keys) if config.kind == "map"
                  else make_reduce(config.name, config.out_keys))
        self.fn: Callable[..., object] = fn
        self.poison = PoisonMatcher(poison.key, poison.body) if poison is not None else None
        self._many = many_of(fn) if self.poison is None else None

    def map(self, key: str, body: bytes) -> tuple[str, bytes]:
        if self.poison is not None:
            self.poison.check(self.name, key, body)
        result = self.fn(key, body)
        # the exact shape passes at the cost of four type checks (this runs per message)
        if (type(result) is tuple and len(result) == 2 and type(result[0]) is str
                and type(result[1]) is bytes):
            return cast(tuple[str, bytes], result)
        return check_result(self.name, result)

    def map_many(self, keys: list[str], bodies: list[bytes],
                 ) -> tuple[list[str], list[bytes], Exception | None]:
        """Map messages in order until one fails: the output keys and bodies of those
        before it, and what the failing one raised (None: all of them mapped). The
        failing message is the one at index ``len(out_keys)``."""
        if self._many is not None:
            try:
                out_keys, out_bodies = self._many(keys, bodies)
                return out_keys, out_bodies, None
            except Exception:
                pass  # which one fails is found one by one (the built-in is pure)
        out_keys = []
        out_bodies = []
        for key, body in zip(keys, bodies, strict=True):
            try:
                out_key, out_body = self.map(key, body)
            except Exception as exc:
                return out_keys, out_bodies, exc
            out_keys.append(out_key)
            out_bodies.append(out_body)
        return out_keys, out_bodies, None

    def reduce(self, key: str, bodies: list[bytes]) -> tuple[str, bytes]:
        """The window's output; raises ``MemberFailed`` naming the member to blame."""
        poison = self.poison
        if poison is not None:
            for index, body in enumerate(bodies):
                try:
                    poison.check(self.name, key, body)
                except PoisonMessage as exc:
                    raise MemberFailed(index, exc) from exc
        try:
            return check_result(self.name, self.fn(key, bodies))
        except Exception as exc:
            raise MemberFailed(self._culprit(key, bodies), exc) from exc

    def _culprit(self, key: str, bodies: list[bytes]) -> int:
        """The last member of the shortest prefix of ``bodies`` the function refuses."""
        ok, failing = 0, len(bodies)  # the empty prefix is taken as fine; all of it fails
        while failing - ok > 1:
            middle = (ok + failing) // 2
            try:
                check_result(self.name, self.fn(key, bodies[:middle]))
                ok = middle
            except Exception:
                failing = middle
        return failing - 1
