"""Typed messages: frozen tagged structs, accepted unions, MessagePack round trips."""

from __future__ import annotations

import msgspec
import pytest
from _helpers import sim
from hypothesis import given
from hypothesis import strategies as st

import runtime
from runtime import Actor, Message, Runtime, Terminated


class Add(Message, frozen=True):
    n: int


class Total(Message, frozen=True):
    pass


class Reset(Message, frozen=True, tag="counter.reset"):
    to: int = 0


class Unrelated(Message, frozen=True):
    text: str


class Batch(Message, frozen=True):
    ids: list[int]
    payload: bytes
    label: str | None = None
    weights: dict[str, float] = {}


CounterMsg = Add | Total | Reset


class Counter(Actor[CounterMsg]):
    def __init__(self) -> None:
        self.total = 0

    async def receive(self, msg: CounterMsg) -> object:
        match msg:
            case Add(n=n):
                self.total += n
            case Reset(to=to):
                self.total = to
            case Total():
                return self.total
        return None


class LoudCounter(Counter):
    """A subclass without its own type parameter keeps its base's union."""


class Untyped(Actor[Message]):
    async def receive(self, msg: Message) -> object:
        return type(msg).__name__


def test_message_is_frozen_and_tagged() -> None:
    add = Add(3)
    with pytest.raises(AttributeError):
        add.n = 4  # type: ignore[misc]
    assert msgspec.structs.fields(Add)[0].name == "n"
    assert msgspec.json.decode(msgspec.json.encode(add)) == {"type": "Add", "n": 3}
    assert msgspec.json.decode(msgspec.json.encode(Reset(1)))["type"] == "counter.reset"


def test_accepted_union_is_read_from_type_parameter() -> None:
    assert Counter.accepts == (Add, Total, Reset)
    assert LoudCounter.accepts == (Add, Total, Reset)
    assert Untyped.accepts == (Message,)


def test_non_message_type_parameter_is_rejected_at_class_definition() -> None:
    with pytest.raises(TypeError, match="not a Message"):

        class Bad(Actor[int]):  # type: ignore[type-var]
            pass


def test_wrong_message_type_raises_type_error_at_the_sender() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Counter, name="counter")
            bad = Unrelated("x")
            with pytest.raises(TypeError, match=r"'counter' does not accept Unrelated"):
                await ref.tell(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError, match=r"accepts Add \| Total \| Reset"):
                ref.tell_nowait(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await ref.ask(bad)  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                await ref.tell("not even a message")  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                rt.send_after(1.0, ref, bad)  # type: ignore[misc]
            # the receiver never saw any of it and did not crash
            stats = ref.statistics()
            assert (stats.received, stats.crashed) == (0, 0)
            await ref.tell(Add(2))
            assert await ref.ask(Total()) == 2

    sim(main)


def test_actor_timer_to_self_checks_the_message_type() -> None:
    class Ticking(Actor[Add | Total]):
        async def started(self) -> None:
            with pytest.raises(TypeError):
                self.send_after(1.0, Unrelated("tick"))  # type: ignore[arg-type]
            with pytest.raises(TypeError):
                self.send_every(1.0, Unrelated("tick"))  # type: ignore[arg-type]
            self.ok = True

        async def receive(self, msg: Add | Total) -> object:
            return self.ok

    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Ticking)
            assert await ref.ask(Total()) is True

    sim(main)


def test_untyped_actor_accepts_any_message_including_subclasses() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            ref = await rt.spawn(Untyped)
            assert await ref.ask(Add(1)) == "Add"
            assert await ref.ask(Unrelated("u")) == "Unrelated"

    sim(main)


@pytest.mark.parametrize(
    "msg",
    [Add(1), Total(), Reset(7), Unrelated("é"), Terminated(actor="a", reason="crash: X"),
     Batch([1, 2], b"\x00\xff", "l", {"w": 0.5})],
)
def test_every_message_round_trips_through_messagepack(msg: Message) -> None:
    data = runtime.encode(msg)
    assert isinstance(data, bytes)
    assert runtime.decode(data, type(msg)) == msg


def test_decoding_a_union_picks_the_type_by_tag() -> None:
    for msg in (Add(5), Total(), Reset(2)):
        decoded: Message = runtime.decode(runtime.encode(msg), CounterMsg)
        assert type(decoded) is type(msg)
        assert decoded == msg
    with pytest.raises(msgspec.ValidationError):
        runtime.decode(runtime.encode(Unrelated("x")), CounterMsg)


@given(
    ids=st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    payload=st.binary(),
    label=st.none() | st.text(),
    weights=st.dictionaries(st.text(), st.floats(allow_nan=False)),
)
def test_any_batch_round_trips(
    ids: list[int], payload: bytes, label: str | None, weights: dict[str, float]
) -> None:
    msg = Batch(ids, payload, label, weights)
    assert runtime.decode(runtime.encode(msg), Batch | Add) == msg
