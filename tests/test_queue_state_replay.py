"""Property, on a server's state alone (random requests, seeded): a recovery from any
checkpoint ends in the live state, and nothing stays out past its timeout.

Requests are planned and applied as the server does (staged, their receives
confirmed some time later), with hot keys long enough that the columns are
cut, failing members anywhere in a batch, timeouts, holder restarts and a
seal, on a plain and a windowed queue. At random points:

- a replay of the journal from the checkpoint's ``from_seq`` holds the same
  messages (offset, receives, enqueue entry), the same batches out, and the
  same counts as the live state: no held message's entry lies below it;
- at the end, once every receive is handed out and the visibility timeout
  has passed, no batch is out (none is left without its own expiry).
"""

from __future__ import annotations

import random

import pytest

from actors.queue import QueuedMessage
from actors.queue._journal import JournalEntry, JournalEvent, MessagesEnqueued, decode_entry, encode
from actors.queue._ledger import Ledger
from actors.queue._messages import Receipt, Settlement, WindowPolicy
from actors.queue._settings import ServerSettings
from actors.queue._state import ServerState

_View = list[tuple[object, ...]]


def _view(state: ServerState, offsets: list[tuple[int, str]]) -> _View:
    out: _View = []
    for name, q in sorted(state.queues.items()):
        held: dict[str, list[tuple[int, int, int]]] = {}
        for offset, key in offsets:
            found = state.held(name, key, offset)
            if found is not None:
                held.setdefault(key, []).append((offset, found.receives, found.journal_seq))
        for key in sorted(set(held) | set(q.keys)):
            k = q.keys.get(key)
            out_now = (k.flight, k.attempt if k.flight else 0, k.pinned) if k else (0, 0, 0)
            if held.get(key) or out_now != (0, 0, 0):
                out.append((name, key, held.get(key, []), out_now))
        if q.held or q.in_flight:
            out.append((name, q.held, q.in_flight))
    return out


class _Run:
    def __init__(self, seed: int, windowed: bool, hot: bool) -> None:
        self.rng = rng = random.Random(seed)
        self.hot = hot
        self.at = 100.0
        windows = {"q": WindowPolicy(3, rng.choice([None, 1.0]))} if windowed else {}
        self.settings = ServerSettings(visibility_timeout=2.0,
                                       max_receives=rng.choice([1, 2, 3]),
                                       dedup_window=3.0, windows=windows)
        self.state = self._fresh()
        self.journal: list[bytes] = []
        self.offsets: list[tuple[int, str]] = []
        self.out: list[Receipt] = []
        self.ids = 0

    def _fresh(self) -> ServerState:
        return ServerState(0, self.settings, lambda: self.at, lambda: self.at)

    def commit(self, events: list[JournalEvent]) -> None:
        if events:
            self.journal.append(encode(JournalEntry(events)))
            self.state.apply(events, len(self.journal) - 1, staged=True)
        if self.rng.random() < 0.7:  # the write is durable: its receives are out
            self.state.confirm_receives(self.state.unconfirmed_receives)

    def enqueue(self) -> None:
        rng = self.rng
        messages = []
        for _ in range(rng.randint(1, 30 if self.hot else 6)):
            self.ids += 1
            ident = f"m{self.ids}" if rng.random() < 0.9 else f"m{rng.randint(1, self.ids)}"
            key = rng.choice("aaaaaaab" if self.hot else "abc")
            messages.append(QueuedMessage(ident, key, b"", Ledger()))
        events, _, _ = self.state.plan_enqueue("q", messages)
        for e in events:
            assert isinstance(e, MessagesEnqueued)
            self.offsets.extend((e.first_offset + i, m.key)
                                for i, m in enumerate(e.messages))
        self.commit(events)

    def step(self) -> None:
        rng, state = self.rng, self.state
        r = rng.random()
        if r < (0.15 if self.hot else 0.3):
            self.enqueue()
        elif r < 0.55:
            events, taken = state.plan_receive("q", rng.randint(1, 8), rng.randint(1, 4),
                                               rng.choice(["h1", "h2"]))
            self.commit(events)
            if taken is not None:
                self.out.extend(taken.receipt(i) for i in range(len(taken.keys)))
        elif r < 0.8 and self.out:
            receipt = self.out.pop(rng.randrange(len(self.out)))
            acked = rng.randint(0, receipt.count)
            failed = -1
            if acked < receipt.count and rng.random() < 0.7:
                failed = rng.randint(acked, receipt.count - 1)
            settlement = Settlement(receipt, acked, failed, "bad")
            self.commit(state.plan_settle([settlement])[0])
        elif r < 0.88:
            self.at += rng.choice([0.5, 1.0, 2.5])
            self.commit(state.plan_expire())
        elif r < 0.9:
            self.commit(state.plan_holder_restarted(rng.choice(["h1", "h2"])))
        elif r < 0.91:
            self.commit(state.plan_seal("q"))
        else:
            self.check_replay()

    def check_replay(self) -> None:
        checkpoint = self.state.checkpoint(len(self.journal))
        replayed = self._fresh()
        replayed.restore(checkpoint)
        for seq in range(checkpoint.from_seq, len(self.journal)):
            replayed.apply(decode_entry(self.journal[seq]).events, seq, live=False)
        assert _view(replayed, self.offsets) == _view(self.state, self.offsets)


@pytest.mark.parametrize(("windowed", "hot"), [(False, False), (True, False), (False, True),
                                               (True, True)])
def test_a_replay_from_any_checkpoint_is_the_live_state_and_nothing_stays_out(
        windowed: bool, hot: bool) -> None:
    for seed in range(40):
        run = _Run(seed, windowed, hot)
        for _ in range(run.rng.randint(20, 400 if hot else 200)):
            run.step()
        run.check_replay()
        run.state.confirm_receives(run.state.unconfirmed_receives)
        run.at += run.settings.visibility_timeout + 1.0
        run.commit(run.state.plan_expire())
        assert run.state.depth("q").in_flight == 0, seed
