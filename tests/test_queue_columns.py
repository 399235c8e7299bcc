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

import hashlib

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.queue import QueuedMessage, Taken, TierConfig, make_map, make_reduce, output_id
from actors.queue._builtins import many_of, sums_of
from actors.queue._functions import BadFunctionResult, TierStep
from actors.queue._keycache import KeyCache
from actors.queue._ledger import Ledger, original_id, output_ids_of_each
from actors.queue._tiers import MapClient

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
