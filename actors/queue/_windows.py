"""Reduce windows: per (tier, key) state in the store, changed only by compare-and-set.

A reduce client may hold one message of a key at a time (strict order), so
a window of N messages is built up across N deliveries, possibly by
different clients. Each absorbed message is appended to the key's window
log, and a small state record says where the open window starts in that
log and how many members it has, the offset of the last message absorbed
(so a redelivered message is recognised and only acked), and the outputs
of closed windows not yet confirmed enqueued (``pending``). The member and
the state are written in one atomic write, so cost per message does not
grow with the window.

Protocol, for any writer (client, flush, time sweep):

1. read the state; if it has ``pending``, enqueue those outputs first
   (their ids are deterministic, so a repeat is dropped as a duplicate);
2. compute the next state: absorb the message, and if the window is full
   (or old) close it into a new ``pending`` output;
3. compare-and-set it (with the member's append); on a conflict somebody
   else moved first: start over;
4. enqueue the new ``pending`` outputs, then compare-and-set them away.

Only the winner of step 3 ever enqueues an output for a version, so an
output is never made from members that another writer also emits, and a
client that stalls past its visibility timeout loses the race cleanly.
"""

from __future__ import annotations

import msgspec

from actors.queue._functions import TierStep
from actors.queue._ledger import Ledger, merge_ledgers, output_id
from actors.queue._messages import QueuedMessage
from runtime.store import Store


class Member(msgspec.Struct, frozen=True, array_like=True):
    id: str
    body: bytes
    ledger: Ledger


class WindowState(msgspec.Struct, frozen=True, array_like=True):
    last_offset: int = -1
    opened_at: float = 0.0
    first_seq: int = 0
    """Window-log seq of the open window's first member."""
    count: int = 0
    """Members of the open window: log entries ``first_seq .. first_seq + count - 1``."""
    pending: list[QueuedMessage] = msgspec.field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.count and not self.pending


EMPTY = WindowState()
encode = msgspec.msgpack.Encoder().encode
decode = msgspec.msgpack.Decoder(WindowState).decode
decode_member = msgspec.msgpack.Decoder(Member).decode


def window_prefix(cluster: str, tier: str) -> str:
    return f"q/{cluster}/w/{tier}/"


def window_key(cluster: str, tier: str, key: str) -> str:
    return window_prefix(cluster, tier) + key


def window_log(cluster: str, tier: str, key: str) -> str:
    return f"q/{cluster}/wl/{tier}/{key}"


async def members(store: Store, log: str, state: WindowState) -> list[Member]:
    """The open window's members, read from its log."""
    if not state.count:
        return []
    entries = await store.read(log, state.first_seq, state.count)
    if len(entries) != state.count:
        raise RuntimeError(f"window log {log!r} holds {len(entries)} of the "
                           f"{state.count} members from seq {state.first_seq}")
    return [decode_member(e.payload) for e in entries]


def close(state: WindowState, window: list[Member], key: str, step: TierStep,
          full: bool) -> WindowState:
    """Turn ``window`` (the open window's members, plus any joining now) into a pending
    output; the next window starts after the members in the log."""
    out_key, body = step.reduce(key, [m.body for m in window])
    ids = [m.id for m in window]
    out = QueuedMessage(output_id(step.name, ids), out_key, body,
                        merge_ledgers((m.ledger for m in window), full), ids)
    return WindowState(state.last_offset, 0.0, state.first_seq + state.count, 0,
                       [*state.pending, out])


def should_close(state: WindowState, now: float, step: TierStep) -> bool:
    """Would the window be complete with one more member (by count or by age)?"""
    config = step.config
    if state.count + 1 >= config.window:
        return True
    return config.window_time is not None and bool(state.count) \
        and now - state.opened_at >= config.window_time


def without_pending(state: WindowState) -> WindowState:
    if not state.pending:
        return state  # frozen, so sharing it is safe (and saves a copy per message)
    return WindowState(state.last_offset, state.opened_at, state.first_seq, state.count, [])
