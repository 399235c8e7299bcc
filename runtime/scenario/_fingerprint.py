"""What a store was created for, so a run never resumes a store made for another one.

The first run of a scenario against a store records, under
:data:`RECORD_KEY`, the system, the scenario's name, the seed and the
system's *placement* fields (``ScenarioSystem.placement``: the settings that
decide where data lives and what it means — partitions, servers, tiers, keys,
the source). Every later run compares its own values with that record:

- equal: the run resumes the store (after a finished run, a crash or a
  ``kill -9`` alike);
- different: the run is refused with a ``ScenarioError`` naming the store,
  each field that differs (``old → new``) and the way out (``--fresh`` or
  another ``--out``). Resuming would mix two workloads, and the checks would
  then report duplicates or losses that no run caused.

Simulated runs also keep a *wall mark* under :data:`WALL_KEY`: every
:data:`WALL_MARK_INTERVAL` of virtual time (and at the end) a run writes its
wall clock plus that interval, and a later simulated run starts its wall
clock there (``Clock.continue_wall_from``). So a resumed run finds the
leases, deadlines and session activity of earlier runs in its past, as a
process restarted on the real clock would, and still replays by seed.
"""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from runtime._clock import Clock
from runtime._errors import ScenarioError
from runtime.store import Put, Store

RECORD_KEY = "shardline/scenario-store"
WALL_KEY = "shardline/scenario-store/wall"
WALL_MARK_INTERVAL = 1.0


class StoreRecord(msgspec.Struct, frozen=True):
    """What a store was created for, and how many runs used it."""

    system: str
    scenario: str
    seed: int
    placement: dict[str, str]
    runs: int = 1


def _plain(value: object) -> object:
    if isinstance(value, float):  # a Duration: seconds
        return float(value)
    raise NotImplementedError(f"cannot record {type(value).__name__} in a store record")


def describe(value: object) -> str:
    """A placement value as the comparison and the message show it (JSON text)."""
    return msgspec.json.encode(msgspec.to_builtins(value, enc_hook=_plain)).decode()


def _differences(old: StoreRecord, new: StoreRecord) -> list[str]:
    found = []
    for field, before, after in (("system", old.system, new.system),
                                 ("scenario.name", old.scenario, new.scenario),
                                 ("seed", str(old.seed), str(new.seed))):
        if before != after:
            found.append(f"{field}: {before} → {after}")
    if old.system != new.system:  # another system's fields say nothing about this one
        return found
    for name in sorted(set(old.placement) | set(new.placement)):
        before, after = old.placement.get(name, "(unset)"), new.placement.get(name, "(unset)")
        if before != after:
            found.append(f"{new.system}.{name}: {before} → {after}")
    return found


async def claim_store(store: Store, url: str, *, system: str, scenario: str, seed: int,
                      placement: Mapping[str, object], clock: Clock) -> StoreRecord | None:
    """Record this run in the store; return the record of earlier runs (``None`` if first).

    ``ScenarioError`` if the store was created for other values (nothing is
    written then). A simulated ``clock`` continues from the earlier runs' wall mark.
    """
    wanted = StoreRecord(system, scenario, seed,
                         {name: describe(value) for name, value in placement.items()})
    stored = await store.get(RECORD_KEY)
    earlier = None if stored is None else msgspec.msgpack.decode(stored.value, type=StoreRecord)
    if earlier is not None:
        differ = _differences(earlier, wanted)
        if differ:
            raise ScenarioError(
                f"store {url} was created for another run ({'; '.join(differ)}); resuming it "
                "would mix the two. Add --fresh to delete it and its output and start over, "
                "or pass another --out (or --store)")
        wanted = msgspec.structs.replace(wanted, runs=earlier.runs + 1)
        mark = await store.get(WALL_KEY)
        if mark is not None:
            clock.continue_wall_from(msgspec.msgpack.decode(mark.value, type=float))
    await store.write([Put(RECORD_KEY, msgspec.msgpack.encode(wanted),
                           expect_version=stored.version if stored is not None else 0)])
    return earlier


async def mark_wall(store: Store, clock: Clock) -> None:
    """Write the wall mark a later simulated run of this store starts from."""
    await store.write([Put(WALL_KEY, msgspec.msgpack.encode(clock.wall() + WALL_MARK_INTERVAL))])


async def keep_wall_mark(store: Store, clock: Clock) -> None:
    """Write the wall mark every :data:`WALL_MARK_INTERVAL` until cancelled (simulated runs)."""
    while True:
        await mark_wall(store, clock)
        await clock.sleep(WALL_MARK_INTERVAL)
