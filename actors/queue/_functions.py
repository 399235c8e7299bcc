"""A tier's processing step: the user's (or built-in) function, plus poison.

``TierStep`` turns one delivered message into an output (map) or checks
that it may join a window (reduce: the function must accept it alone); the
reduce function over the whole window runs when the window closes.
Anything a function raises, or a result of the wrong shape, is a
processing failure of that message: the client releases it, and after
``max_receives`` failures it is dead-lettered while its key moves on.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass

from actors.queue._builtins import is_builtin, make_map, make_reduce
from actors.queue._config import PoisonSpec, TierConfig
from runtime import ShardlineError
from runtime._callables import resolve_callable


class PoisonMessage(ShardlineError):
    """Raised by the ``poison`` option for every matching message, every time."""


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
        self.checks_combinations = config.kind == "reduce" and not is_builtin(fn)
        """A user's reduce function may refuse a combination of bodies it takes alone,
        so each joining member is tried with the open window (the built-ins cannot)."""
        self.poison = PoisonMatcher(poison.key, poison.body) if poison is not None else None

    def admit(self, key: str, body: bytes) -> None:
        """Raise if processing this message must fail.

        Besides the poison option, a reduce tier tries its function on the
        message alone: a body the function cannot take would otherwise join
        a window and make whichever message closes that window fail instead,
        dead-lettering innocent messages and leaving a window nobody can close.
        """
        if self.poison is not None:
            self.poison.check(self.name, key, body)
        if self.config.kind == "reduce":
            check_result(self.name, self.fn(key, [body]))

    def map(self, key: str, body: bytes) -> tuple[str, bytes]:
        self.admit(key, body)
        return check_result(self.name, self.fn(key, body))

    def reduce(self, key: str, bodies: list[bytes]) -> tuple[str, bytes]:
        return check_result(self.name, self.fn(key, bodies))
