"""The log server as a cluster entity: one owner per log, wherever the cluster puts it.

Contract:

- ``LogServerEntity/<log>`` is activated by the first request for ``<log>``
  that reaches a node hosting the kind (``shardline serve`` with cluster
  options, or ``node-1`` ... ``node-N`` of a scenario run); every other
  node forwards the request to it (``rt.entity(...).ask``) and hands its
  answer back unchanged. It holds the lease ``entity/LogServerEntity/<log>``.
- It is built in ``recover`` from the log's :class:`LogRecipe` in the store
  (absent: the defaults ``shardline serve`` uses), then recovers as a
  ``LogServer`` does: the high water, the floor and every session are in the
  store, so after its node dies the next request activates it on a survivor
  and nothing a client was told is lost.
- Every write goes under the activation's fence: a server that lost its log
  to another node (paused, or its lease lapsed) has every write refused, so
  two owners never both change a log; session writes are compare-and-set
  anyway.
- With ``LogRecipe.served``, each read's first deliveries and redeliveries
  are appended to ``served_log(log, session)`` in the same write as the
  session state: the scenario checks read them there (an observer callback
  cannot cross nodes, and a reply lost with its node would lose it).
"""

from __future__ import annotations

import msgspec

from actors.logdelivery import _keys as keys
from actors.logdelivery._retention import DEFAULT_TIME, LogRetention
from actors.logdelivery._server import LogServer
from actors.logdelivery._state import ReadPlan
from runtime import ConflictError
from runtime.scenario import read_whole_log
from runtime.store import Append, Fence, Put, Store, without_faults


class LogRecipe(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """How a node builds the server of one log (retention in seconds and bytes)."""

    retention_time: float | None = DEFAULT_TIME
    retention_bytes: int | None = None
    retention_acked: bool = False
    cache_records: int = 262_144
    served: bool = False
    """Journal each read's deliveries to the store (scenario runs check them)."""

    @classmethod
    def of(cls, retention: LogRetention, *, served: bool,
           cache_records: int = 262_144) -> LogRecipe:
        time = None if retention.time is None else float(retention.time)
        return cls(time, retention.bytes, retention.acked, cache_records, served)

    def retention(self) -> LogRetention:
        return LogRetention(self.retention_time, self.retention_bytes, self.retention_acked)


class ServedRead(msgspec.Struct, frozen=True, array_like=True):
    """One read as the server served it: the range sent for the first time
    (``first > last``: none) and how many records it sent again."""

    first: int
    last: int
    redelivered: int


_encode = msgspec.msgpack.Encoder().encode
_decode_recipe = msgspec.msgpack.Decoder(LogRecipe).decode
_decode_served = msgspec.msgpack.Decoder(ServedRead).decode


async def write_recipe(store: Store, log: str, recipe: LogRecipe) -> None:
    """Store ``log``'s recipe before its first request (a later activation reads it)."""
    key = keys.recipe_key(log)
    found = await store.get(key)
    await store.write([Put(key, _encode(recipe), 0 if found is None else found.version)])


async def offer_recipe(store: Store, log: str, recipe: LogRecipe) -> bool:
    """Store ``log``'s recipe unless it has one, so the first ``shardline serve`` to
    serve a log sets what it keeps; whether this one was stored."""
    try:
        await store.write([Put(keys.recipe_key(log), _encode(recipe), 0)])
    except ConflictError:
        return False
    return True


async def served_reads(store: Store, log: str, session: str) -> list[ServedRead]:
    """Every read of ``session`` its servers journaled, in the order they were served."""
    entries = await read_whole_log(without_faults(store), None, keys.served_log(log, session))
    return [_decode_served(e.payload) for e in entries]


class LogServerEntity(LogServer):
    """``LogServer`` activated by key (the log name) on any node; see the module."""

    def __init__(self) -> None:  # built from the stored recipe in recover
        self.recipe = LogRecipe()
        self.waiters = {}  # what ``stopped`` wakes, should recover fail before building

    async def recover(self) -> None:
        log = self.entity_key
        stored = await self.runtime.store.get(keys.recipe_key(log))
        recipe = LogRecipe() if stored is None else _decode_recipe(stored.value)
        LogServer.__init__(self, log, cache_records=recipe.cache_records,
                           retention=recipe.retention())
        self.recipe = recipe
        await super().recover()

    @property
    def fault_names(self) -> tuple[str, ...]:
        """A fault plan strikes it by the name a log's server has in one process."""
        return (keys.server_name(self.entity_key),)

    def _fence(self) -> Fence | None:
        return self.fence

    def _served(self, session: str, plan: ReadPlan, now: float) -> list[Append]:
        if not self.recipe.served:
            return []
        first, last = (plan.new.first, plan.new.last) if plan.new is not None else (0, -1)
        read = ServedRead(first, last, sum(r.size for r in plan.redelivered))
        return [Append(keys.served_log(self.log_name, session), [(session, _encode(read))])]
