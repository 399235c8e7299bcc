"""The ``[queue]`` scenario section, also the embedding configuration."""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from runtime import Backoff
from runtime.scenario import Duration, bound_problems

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
FINAL_QUEUE = "final"
"""The queue the last tier writes to; the final step folds it into the result."""


class GeneratedSource(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Built-in source: ``records`` originals over ``keys`` keys, bodies ASCII integers.

    Values are drawn in ``[0, max_value)``; with ``hot_share`` > 0 that share
    of the originals goes to key ``key-000000`` (a hot key).
    """

    records: Annotated[int, Meta(ge=0, le=100_000_000)]
    keys: Annotated[int, Meta(ge=1, le=10_000_000)] = 100
    max_value: Annotated[int, Meta(ge=1, le=10**12)] = 1000
    hot_share: Annotated[float, Meta(ge=0.0, lt=1.0)] = 0.0

    def __post_init__(self) -> None:
        for field, problem in bound_problems(self):
            raise ValueError(f"{field}: {problem}")


class TierConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One tier of queue clients.

    ``map`` calls ``fn(order_key, body) -> (order_key, body)`` per message;
    ``reduce`` calls ``fn(order_key, bodies) -> (order_key, body)`` per
    window of ``window`` messages sharing a key (closed earlier once it has
    been open ``window_time``, and flushed when the input ends). Without
    ``fn`` the built-in sums are used, mapping keys onto ``out_keys`` coarser
    keys (or keeping them).
    """

    name: str
    kind: Literal["map", "reduce"]
    clients: Annotated[int, Meta(ge=1, le=1024)] = 2
    fn: str | None = None
    window: Annotated[int, Meta(ge=0, le=100_000)] = 0
    window_time: Duration | None = None
    out_keys: Annotated[int, Meta(ge=1, le=10_000_000)] | None = None
    process_cost: Duration = Duration(0.0)


class PoisonSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Messages whose processing always raises: key and body match these globs.

    Applies in tier ``tier`` (default: the first). The body is matched as
    text (UTF-8, undecodable bytes replaced).
    """

    key: str = "*"
    body: str = "*"
    tier: str | None = None


class QueueConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a queue pipeline is laid out and paced. Durations are seconds."""

    tiers: Annotated[list[TierConfig], Meta(max_length=16)]
    source: GeneratedSource | str | None = None
    """Required in a scenario; when embedding, ``QueuePipeline(source=...)`` may give it."""
    name: str = "queue"
    servers: Annotated[int, Meta(ge=1, le=256)] = 4
    visibility_timeout: Duration = Duration(30.0)
    max_receives: Annotated[int, Meta(ge=1, le=1000)] = 5
    dedup_window: Duration = Duration(300.0)
    lineage: Literal["digest", "full"] = "digest"
    final: str | None = None
    poison: PoisonSpec | None = None
    rate: Annotated[float, Meta(ge=0)] = 0.0
    produce_chunk: Annotated[int, Meta(ge=1, le=100_000)] = 500
    receive_batch: Annotated[int, Meta(ge=1, le=10_000)] = 100
    idle_poll: Duration = Duration(0.01)
    drain_poll: Duration = Duration(0.05)
    ask_timeout: Duration = Duration(30.0)
    retry_backoff: Backoff = Backoff(min=0.01, max=1.0, jitter=0.2)
    max_restarts: Annotated[int, Meta(ge=0, le=1_000_000)] = 1000
    within: Duration = Duration(10.0)
    restart_backoff: Backoff = Backoff(min=0.001, max=0.1, jitter=0.2)
    lineage_samples: Annotated[int, Meta(ge=0, le=1000)] = 3
    checkpoint_every: Annotated[int, Meta(ge=1, le=1_000_000)] = 256
    """Journal entries between a server's checkpoints; each compacts the journal."""

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for every value out of range or inconsistent."""
        found = bound_problems(self)
        for name in ("visibility_timeout", "dedup_window", "idle_poll", "drain_poll",
                     "ask_timeout", "within"):
            if getattr(self, name) <= 0:
                found.append((name, "expected a positive duration"))
        if 0 < self.dedup_window <= self.visibility_timeout:
            found.append(("dedup_window", f"expected more than visibility_timeout "
                          f"({self.visibility_timeout:g} s), got {self.dedup_window:g} s: an "
                          "input handed out again after its timeout re-sends its outputs, "
                          "and only the dedup window drops them"))
        if not _NAME.match(self.name):
            found.append(("name", f"expected a name like 'queue' ([a-z][a-z0-9_]*), "
                                  f"got {self.name!r}"))
        if not self.tiers:
            found.append(("tiers", "expected at least one [[queue.tiers]] table"))
        seen: set[str] = set()
        for i, tier in enumerate(self.tiers):
            found += [(f"tiers[{i}].{field}", message) for field, message in _tier_problems(tier)]
            if tier.name in seen:
                found.append((f"tiers[{i}].name", f"duplicate tier name {tier.name!r}"))
            seen.add(tier.name)
        if self.poison is not None and self.poison.tier is not None \
                and self.poison.tier not in seen:
            found.append(("poison.tier", f"no tier named {self.poison.tier!r}; tiers: "
                                         f"{', '.join(t.name for t in self.tiers)}"))
        return found


def _tier_problems(tier: TierConfig) -> list[tuple[str, str]]:
    found = bound_problems(tier)
    if not _NAME.match(tier.name) or tier.name == FINAL_QUEUE:
        found.append(("name", f"expected a name like 'summarize' ([a-z][a-z0-9_]*, not "
                              f"{FINAL_QUEUE!r}), got {tier.name!r}"))
    if tier.kind == "reduce" and tier.window < 1:
        found.append(("window", f"a reduce tier needs window >= 1, got {tier.window}"))
    if tier.kind == "map" and (tier.window or tier.window_time is not None):
        found.append(("window", "a map tier takes no window (one output per message)"))
    if tier.window_time is not None and tier.window_time <= 0:
        found.append(("window_time", "expected a positive duration"))
    if tier.out_keys is not None and tier.fn is not None:
        found.append(("out_keys", "out_keys configures the built-in functions; a custom fn "
                                  "chooses its own output keys"))
    if tier.process_cost < 0:
        found.append(("process_cost", "expected a duration >= 0"))
    return found


class QueueExpect(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The ``[expect]`` table of a queue scenario.

    The ``min_*`` floors make a scenario that claims to exercise a fault show
    that the fault happened (checked on fresh runs, not resumed ones).
    """

    strict_order: bool = True
    exactly_once_contribution: bool = True
    result_matches_oracle: bool = True
    min_dead_letters: int = 0
    max_dead_letters: int | None = None
    min_late_acks_refused: int = 0
    min_duplicates_dropped: int = 0
    min_redeliveries: int = 0
    min_restarts: int = 0
    min_server_recoveries: int = 0
    max_other_keys_p99: Duration | None = None
