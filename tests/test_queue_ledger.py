"""Message ids, the contribution ledger and rendezvous placement.

The ledger's digest must not depend on the order windows close in, must
change when an original counts twice (unlike XOR), and in full lineage
must carry the exact ids. Ids are deterministic from their inputs, so a
repeated step makes a duplicate the queue drops. Rendezvous placement moves
only the keys a new server wins.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.queue import Ledger, Placement, merge_ledgers, original_id, output_id, owner

IDS = st.lists(st.integers(0, 10_000).map(lambda i: original_id("q", i)), min_size=1,
               max_size=40)


def ledger_of(ident: str, full: bool) -> Ledger:
    """An original's ledger, built here from the documented form (count 1, its id)."""
    return Ledger(1, bytes.fromhex(ident), [ident] if full else None)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(ids=IDS, cut=st.integers(0, 40), seed=st.integers(0, 1000))
def test_the_digest_is_order_and_grouping_independent(ids: list[str], cut: int,
                                                       seed: int) -> None:
    flat = merge_ledgers([ledger_of(i, False) for i in ids], full=False)
    shuffled = list(ids)
    random.Random(seed).shuffle(shuffled)
    # two windows, closed in either order, then merged again (a second tier)
    left = merge_ledgers([ledger_of(i, False) for i in shuffled[:cut]], full=False)
    right = merge_ledgers([ledger_of(i, False) for i in shuffled[cut:]], full=False)
    assert merge_ledgers([right, left], full=False) == flat
    assert flat.count == len(ids)


@settings(max_examples=50, deadline=None, derandomize=True)
@given(ids=IDS, twice=st.integers(0, 39))
def test_an_original_counted_twice_changes_count_and_digest(ids: list[str], twice: int) -> None:
    once = merge_ledgers([ledger_of(i, False) for i in ids], full=False)
    doubled = merge_ledgers([ledger_of(i, False) for i in [*ids, ids[twice % len(ids)]]],
                            full=False)
    assert doubled.count == once.count + 1
    assert doubled.digest != once.digest
    # a dropped original and a doubled one together keep the count but not the digest
    others = [i for i in ids if i != ids[0]]
    if len(others) == len(ids) - 1 and others:
        swapped = merge_ledgers([ledger_of(i, False) for i in [*others, others[0]]],
                                full=False)
        assert swapped.count == once.count and swapped.digest != once.digest


def test_merge_counts_and_full_lineage_keeps_every_id() -> None:
    ids = [original_id("q", i) for i in range(7)]
    a = merge_ledgers([ledger_of(i, True) for i in ids[:3]], full=True)
    b = merge_ledgers([ledger_of(i, True) for i in ids[3:]], full=True)
    top = merge_ledgers([a, b], full=True)
    assert (a.count, b.count, top.count) == (3, 4, 7)
    assert top.originals == ids
    assert top.digest == merge_ledgers([ledger_of(i, False) for i in ids], full=False).digest
    assert merge_ledgers([a, b], full=False).originals is None
    assert merge_ledgers([], full=False) == Ledger()


def test_ids_are_deterministic_from_their_inputs_and_differ_otherwise() -> None:
    assert original_id("q", 5) == original_id("q", 5)
    assert len({original_id("q", 5), original_id("q", 6), original_id("p", 5)}) == 3
    inputs = [original_id("q", i) for i in range(3)]
    out = output_id("summarize", inputs)
    assert out == output_id("summarize", list(inputs))
    assert out != output_id("aggregate", inputs)
    assert out != output_id("summarize", inputs[:2])
    assert out != output_id("summarize", [*inputs, inputs[0]])
    assert len(out) == 32 and int(out, 16) >= 0


def test_ids_are_the_same_in_another_process() -> None:
    """No salted ``hash``: a restarted process must derive the same dedup ids."""
    code = ("from actors.queue import original_id, output_id, owner; "
            "print(original_id('q', 3), output_id('t', ['a', 'b']), "
            "owner('key-7', ['server-0', 'server-1', 'server-2']))")
    here = f"{original_id('q', 3)} {output_id('t', ['a', 'b'])} " \
           f"{owner('key-7', ['server-0', 'server-1', 'server-2'])}"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "123"}, check=True)
    assert result.stdout.strip() == here


SERVER_IDS = [f"server-{i}" for i in range(12)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(servers=st.integers(1, 10),
       keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=200, unique=True))
def test_adding_a_server_moves_only_the_keys_it_wins(servers: int, keys: list[str]) -> None:
    before = Placement(SERVER_IDS[:servers])
    after = Placement(SERVER_IDS[:servers + 1])
    for key in keys:
        old, new = before(key), after(key)
        assert new in (old, servers), (key, old, new)
        assert before(key) == owner(key, SERVER_IDS[:servers])  # the cache agrees


@settings(max_examples=40, deadline=None, derandomize=True)
@given(servers=st.integers(2, 10), removed=st.integers(0, 9),
       keys=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=200, unique=True))
def test_removing_a_server_moves_only_the_keys_it_held(servers: int, removed: int,
                                                       keys: list[str]) -> None:
    ids = SERVER_IDS[:servers]
    gone = ids[removed % servers]
    rest = [s for s in ids if s != gone]
    for key in keys:
        was = ids[owner(key, ids)]
        now = rest[owner(key, rest)]
        assert was == gone or now == was


def test_placement_spreads_keys_over_every_server() -> None:
    placement = Placement(SERVER_IDS[:4])
    counts = [0] * 4
    for i in range(4000):
        counts[placement(f"key-{i:06d}")] += 1
    assert all(800 < c < 1200 for c in counts), counts
