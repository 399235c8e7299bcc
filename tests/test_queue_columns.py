"""Tier clients work a whole ``Taken`` in columns, with the results of message by message.

A map tier maps a batch at once (``TierStep.map_many``; the built-in map
over a whole batch with its ``many``), and must give exactly what
mapping each message alone gives: the same output keys and bodies, the
same ids (derived from the inputs' ids as ``output_id`` documents), and on
a failure the outputs of the messages before it, the failing message named
and the rest of its batch given back while later batches go on.
``KeyCache`` remembers a function of a key, bounded.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
from types import SimpleNamespace

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.queue import (
    PoisonSpec,
    QueuedMessage,
    Settlement,
    Taken,
    TierConfig,
    _placement,
    make_map,
    make_reduce,
    output_id,
)
from actors.queue._builtins import many_of, sums_of
from actors.queue._functions import BadFunctionResult, TierStep
from actors.queue._ledger import (
    Ledger,
    merge_ledgers,
    original_digests,
    original_id,
    output_ids_of_each,
)
from actors.queue._tiers import MapClient, ReduceClient, reason_of
from runtime import KeyCache

INTS = st.integers(-(10 ** 20), 10 ** 20).map(lambda n: b"%d" % n)  # past int64 too
ODD = st.sampled_from([b"-0", b"007", b"+5", b" 6", b"7 ", b"1_000", b"\n3", b'{"a": 1}',
                       b'{"a":1,"b":-2}', b'{"a":18446744073709551616}'])
BAD = st.one_of(st.sampled_from([b"", b"x", b"1.5", b'{"a":"1"}', b"{"]), st.binary(max_size=6))
BODIES = st.one_of(INTS, INTS, INTS, ODD, BAD)


def outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except Exception as exc:
        return type(exc)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(items=st.lists(st.tuples(st.text(max_size=8), BODIES), max_size=12),
       out_keys=st.sampled_from([None, 1, 7, 2000]))
def test_the_builtin_map_over_a_batch_gives_what_it_gives_message_by_message(
        items: list[tuple[str, bytes]], out_keys: int | None) -> None:
    fn = make_map("transform", out_keys)
    many = many_of(fn)
    assert many is not None
    keys = [k for k, _ in items]
    bodies = [b for _, b in items]
    one_by_one = [outcome(lambda k=k, b=b: fn(k, b)) for k, b in items]
    failed = [r for r in one_by_one if isinstance(r, type)]
    batch = outcome(lambda: many(keys, bodies))
    if failed:
        assert isinstance(batch, type) and issubclass(batch, Exception)
    else:
        assert batch == ([k for k, _ in one_by_one], [b for _, b in one_by_one])


@settings(max_examples=300, deadline=None, derandomize=True)
@given(key=st.text(max_size=8), body=BODIES)
def test_the_builtin_map_of_one_message_is_the_json_of_its_sums(key: str, body: bytes) -> None:
    """The in-memory baseline maps message by message: its built-in writes an original
    around its body too (so the benchmark's two sides run the same function), and
    gives exactly the JSON encoding of the body's sums, or raises where that raises."""
    fn = make_map("transform", None)
    expected = outcome(lambda: (key, msgspec.json.encode(sums_of(key, body))))
    assert outcome(lambda: fn(key, body)) == expected


def test_the_builtin_map_writes_an_original_as_json_would() -> None:
    many = many_of(make_map("transform", None))
    assert many is not None and many_of(make_reduce("summarize", None)) is None
    keys = ["k", 'q"uote', "é", "back\\slash"]
    out_keys, bodies = many(keys, [b"417", b"-3", b"0", b"999999999999999999"])
    assert out_keys == keys
    assert bodies == [b'{"k":417}', b'{"q\\"uote":-3}', '{"é":0}'.encode(),
                      b'{"back\\\\slash":999999999999999999}']


def test_the_builtin_reduce_adds_json_sums_and_plain_originals_alike() -> None:
    fn = make_reduce("summarize", None)
    assert fn("k", [b'{"a":1,"b":2}', b'{"a":3}']) == ("k", b'{"a":4,"b":2}')
    assert fn("k", [b'{"a":1}', b"5", b"-2"]) == ("k", b'{"a":1,"k":3}')
    with pytest.raises(ValueError):
        fn("k", [b'{"a":1}', b"five"])


def step_of(fn: object = None) -> TierStep:
    return TierStep(TierConfig("transform", "map"), fn)  # type: ignore[arg-type]


def test_map_many_maps_up_to_the_first_failure_and_says_what_it_raised() -> None:
    keys, out_bodies, exc = step_of().map_many(["a", "b", "c", "d"], [b"1", b"2", b"x", b"3"])
    assert keys == ["a", "b"] and out_bodies == [b'{"a":1}', b'{"b":2}']
    assert isinstance(exc, ValueError)

    def bad_at_two(key: str, body: bytes) -> object:
        return (key, body) if body != b"2" else (key, "not bytes")

    keys, out_bodies, exc = step_of(bad_at_two).map_many(["a", "b", "c"], [b"1", b"2", b"3"])
    assert keys == ["a"] and out_bodies == [b"1"] and isinstance(exc, BadFunctionResult)
    assert step_of().map_many([], []) == ([], [], None)


def test_output_ids_are_the_documented_hash_of_the_tier_and_the_input_ids() -> None:
    ids = [original_id("q", i) for i in range(3)]

    def documented(tier: str, inputs: list[str]) -> str:
        data = b"output\x00" + tier.encode() + b"".join(b"\x00" + i.encode() for i in inputs)
        return hashlib.blake2b(data, digest_size=16).hexdigest()

    for inputs in ([], [""], ids[:1], ids, ["a\x00b", "c"]):
        assert output_id("t", inputs) == documented("t", inputs)
        assert output_id("t", iter(inputs)) == documented("t", inputs)
    assert output_ids_of_each("t", ids) == [documented("t", [i]) for i in ids]


def message(key: str, body: bytes, i: int) -> QueuedMessage:
    ident = original_id("q", i)
    return QueuedMessage(ident, key, body, Ledger(1, bytes.fromhex(ident)))


def test_a_failure_gives_back_the_rest_of_its_batch_and_later_batches_go_on() -> None:
    messages = [message("a", b"1", 0), message("a", b"x", 1), message("a", b"2", 2),
                message("b", b"3", 3), message("c", b"y", 4), message("d", b"4", 5)]
    taken = Taken(0, "transform", ["a", "b", "c", "d"], [10, 20, 30, 40], [1, 2, 1, 1],
                  [3, 1, 1, 1], messages, list(range(6)))
    client = MapClient.__new__(MapClient)
    client.step = step_of()
    outputs: list[QueuedMessage] = []
    failed = client._map_taken(taken, outputs)
    assert [(s.receipt, s.acked, s.failed) for s in failed] == [
        (taken.receipt(0), 1, 1), (taken.receipt(2), 0, 0)]
    assert all(s.reason.startswith("ValueError: ") for s in failed)
    made = [m for m in messages if m.body in (b"1", b"3", b"4")]
    assert outputs == [QueuedMessage(output_id("transform", [m.id]), m.key,
                                     b'{"%s":%s}' % (m.key.encode(), m.body), m.ledger, (m.id,))
                       for m in made]


def test_a_key_cache_computes_a_key_once_while_it_holds_it_and_holds_at_most_its_limit(
) -> None:
    calls: list[str] = []

    def upper(key: str) -> str:
        calls.append(key)
        return key.upper()

    cache = KeyCache(upper, limit=2)
    assert cache.many(["a", "b", "a"]) == ["A", "B", "A"] and calls == ["a", "b"]
    assert cache["c"] == "C" and len(cache) == 1  # full: it started again
    assert cache.many(["c", "a"]) == ["C", "A"] and calls == ["a", "b", "c", "a"]
    with pytest.raises(ValueError, match="at least 1 key"):
        KeyCache(upper, limit=0)


# -- review (issue #14): the column path against the formulas and the loop it replaced ---

LINES = st.lists(st.sampled_from([b"0", b"1", b"-2", b"10", b"\n", b"-", b" ", b"+", b"00"]),
                 max_size=5).map(b"".join)
"""Bodies near the plain integers: digits, signs, blanks and newlines of their own."""


@settings(max_examples=400, deadline=None, derandomize=True)
@given(bodies=st.lists(st.one_of(INTS, LINES), min_size=1, max_size=6))
def test_the_builtin_map_over_a_batch_raises_where_any_of_its_messages_does(
        bodies: list[bytes]) -> None:
    """A body with a newline between two plain integers (``b"1\\n2"``) is no integer:
    the batch form must not take the batch for plain lines and write it into JSON."""
    keys = [f"k{i}" for i in range(len(bodies))]
    fn = make_map("transform", None)
    expected = [outcome(lambda k=k, b=b: (k, msgspec.json.encode(sums_of(k, b))))
                for k, b in zip(keys, bodies, strict=True)]
    assert [outcome(lambda k=k, b=b: fn(k, b)) for k, b in zip(keys, bodies, strict=True)
            ] == expected
    many = many_of(fn)
    assert many is not None
    batch = outcome(lambda: many(keys, bodies))
    if any(isinstance(r, type) for r in expected):
        assert isinstance(batch, type)
    else:
        assert batch == ([k for k, _ in expected], [b for _, b in expected])  # type: ignore[misc]


def test_a_body_with_a_newline_of_its_own_fails_in_a_batch_of_plain_integers() -> None:
    keys, out_bodies, exc = step_of().map_many(["a", "b", "c"], [b"1", b"2\n3", b"4"])
    assert keys == ["a"] and out_bodies == [b'{"a":1}'] and isinstance(exc, ValueError)


def _old_output_id(tier: str, input_ids: list[str]) -> str:
    """``output_id`` as 5869521 computed it (persisted dedup ids must not move)."""
    h = hashlib.blake2b(f"output\x00{tier}".encode(), digest_size=16)
    for item in input_ids:
        h.update(b"\x00" + item.encode())
    return h.hexdigest()


@settings(max_examples=200, deadline=None, derandomize=True)
@given(tier=st.text(max_size=6), ids=st.lists(st.text(max_size=6), max_size=5),
       queue=st.text(max_size=6), first=st.integers(0, 10 ** 12))
def test_ids_are_those_of_before_the_column_path(tier: str, ids: list[str], queue: str,
                                                  first: int) -> None:
    assert output_id(tier, ids) == _old_output_id(tier, ids)
    assert output_id(tier, tuple(ids)) == _old_output_id(tier, ids)
    assert output_ids_of_each(tier, ids) == [_old_output_id(tier, [i]) for i in ids]
    assert original_digests(queue, first, 3) == [
        hashlib.blake2b(f"original\x00{queue}\x00{i}".encode(), digest_size=16).digest()
        for i in range(first, first + 3)]
    assert [d.hex() for d in original_digests(queue, first, 2)] == [
        original_id(queue, first), original_id(queue, first + 1)]


def test_placement_through_its_key_cache_is_rendezvous_even_as_the_cache_starts_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_placement, "_KEYS_CACHED", 3)
    servers = ["s0", "s1", "s2", "s3"]
    placement = _placement.Placement(servers)
    keys = [f"k{i % 7}é\x00{i}" for i in range(40)]
    expected = [_placement.owner(k, servers) for k in keys]
    assert placement.owners(keys) == expected
    assert [placement(k) for k in keys] == expected
    for server in range(len(servers)):
        wrong = [k for k, o in zip(keys, expected, strict=True) if o != server]
        assert placement.misplaced(keys, server) == (wrong[0] if wrong else None)
        assert placement.misplaced([k for k in keys if k not in wrong], server) is None
    assert placement.misplaced([], 0) is None


def _old_map_taken(step: TierStep, taken: Taken) -> tuple[list[QueuedMessage], list[object]]:
    """``MapClient.handle``'s loop over one ``Taken`` as 5869521 ran it."""
    outputs: list[QueuedMessage] = []
    failed: list[object] = []
    skip_to = 0
    for j, m in enumerate(taken.messages):
        if j < skip_to:
            continue
        try:
            key, body = step.map(m.key, m.body)
        except Exception as exc:
            starts = taken.starts()
            batch = bisect.bisect_right(starts, j) - 1
            done = j - starts[batch]
            failed.append(Settlement(taken.receipt(batch), done, done, reason_of(exc)))
            skip_to = starts[batch] + taken.counts[batch]
            continue
        outputs.append(QueuedMessage(_old_output_id(step.name, [m.id]), key, body, m.ledger,
                                     (m.id,)))
    return outputs, failed


def _user_map(key: str, body: bytes) -> object:
    if body == b"bad-shape":
        return [key, body]
    if body == b"raise":
        raise RuntimeError("user says no")
    return key.upper(), body + b"!"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(counts=st.lists(st.integers(1, 4), min_size=1, max_size=5), data=st.data(),
       kind=st.sampled_from(["builtin", "poison", "user"]))
def test_map_taken_settles_exactly_as_the_loop_it_replaced(
        counts: list[int], data: st.DataObject, kind: str) -> None:
    """Failures anywhere (first message, last, several per Taken), poison, bad shapes."""
    total = sum(counts)
    bodies = data.draw(st.lists(st.sampled_from(
        [b"1", b"-7", b"x", b"2\n3", b"poison", b"raise", b"bad-shape", b'{"a":1}']),
        min_size=total, max_size=total))
    keys = [f"key-{i}" for i in range(len(counts))]
    messages = []
    for i, body in enumerate(bodies):
        batch = next(b for b in range(len(counts)) if i < sum(counts[:b + 1]))
        messages.append(message(keys[batch], body, i))
    taken = Taken(1, "transform", keys, [10 * i for i in range(len(counts))],
                  [1] * len(counts), counts, messages, list(range(total)))
    config = TierConfig("transform", "map", out_keys=7 if kind == "builtin" else None)
    step = TierStep(config, _user_map if kind == "user" else None,
                    PoisonSpec(body="poison") if kind == "poison" else None)
    client = MapClient.__new__(MapClient)
    client.step = step
    outputs: list[QueuedMessage] = []
    failed = client._map_taken(taken, outputs)
    old_outputs, old_failed = _old_map_taken(step, taken)
    assert (outputs, failed) == (old_outputs, old_failed)


def _old_summarize(key: str, bodies: list[bytes]) -> tuple[str, bytes]:
    """The built-in reduce as 5869521 computed it (out_keys None)."""
    total: dict[str, int] = {}
    for body in bodies:
        for k, v in sums_of(key, body).items():
            total[k] = total.get(k, 0) + v
    return key, msgspec.json.encode(total)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(bodies=st.lists(st.one_of(INTS, ODD, BAD, st.sampled_from([b'{"k":3,"z":-1}'])),
                       max_size=5))
def test_the_builtin_reduce_gives_what_it_gave_or_raises_where_it_raised(
        bodies: list[bytes]) -> None:
    assert outcome(lambda: make_reduce("summarize", None)("k", bodies)) == outcome(
        lambda: _old_summarize("k", bodies))


@settings(max_examples=150, deadline=None, derandomize=True)
@given(counts=st.lists(st.integers(1, 4), min_size=1, max_size=4), data=st.data(),
       full=st.booleans())
def test_reduce_client_settles_and_outputs_as_the_loop_it_replaced(
        counts: list[int], data: st.DataObject, full: bool) -> None:
    total = sum(counts)
    bodies = data.draw(st.lists(st.sampled_from([b"1", b"-7", b"x", b'{"a":1}']),
                                min_size=total, max_size=total))
    keys = [f"key-{i}" for i in range(len(counts))]
    messages = []
    at = 0
    for batch, count in enumerate(counts):
        for i in range(at, at + count):
            ident = original_id("q", i)
            messages.append(QueuedMessage(ident, keys[batch], bodies[i],
                                          Ledger(1, bytes.fromhex(ident),
                                                 [ident] if full else None)))
        at += count
    taken = Taken(1, "summarize", keys, [10 * i for i in range(len(counts))],
                  [1] * len(counts), counts, messages, list(range(total)))
    step = TierStep(TierConfig("summarize", "reduce"))
    client = ReduceClient.__new__(ReduceClient)
    client.step, client.full = step, full
    client.metrics = SimpleNamespace(windows_closed=0)  # type: ignore[assignment]
    passed: list[object] = []

    async def pass_on(outputs: list[QueuedMessage], settled: list[object]) -> None:
        passed.extend([outputs, settled])

    client.pass_on = pass_on  # type: ignore[method-assign]
    asyncio.run(client.handle([taken]))
    old_outputs: list[QueuedMessage] = []
    old_failed: list[Settlement] = []
    start = 0
    for batch, (key, count) in enumerate(zip(keys, counts, strict=True)):  # 5869521's loop
        members = messages[start:start + count]
        start += count
        try:
            out_key, body = step.reduce(key, [m.body for m in members])
        except Exception as exc:
            old_failed.append(Settlement(taken.receipt(batch), 0, exc.index, str(exc)))  # type: ignore[attr-defined]
            continue
        ids = tuple([m.id for m in members])
        old_outputs.append(QueuedMessage(_old_output_id("summarize", list(ids)), out_key, body,
                                         merge_ledgers((m.ledger for m in members), full), ids))
    assert passed == [old_outputs, [(taken, old_failed)]]
    assert client.metrics.windows_closed == len(old_outputs)
