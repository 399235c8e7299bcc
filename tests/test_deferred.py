"""``Deferred``: an actor answers an ask later and handles other messages meanwhile."""

from __future__ import annotations

import asyncio

import pytest

import runtime
from runtime import Actor, ActorStopped, Deferred, Message, Runtime
from runtime.cluster import SimulatedNetwork
from tests.cluster_helpers import SimCluster, shared_memory_store


class Wait(Message, frozen=True):
    pass


class Release(Message, frozen=True):
    how: str = "value"


class Count(Message, frozen=True):
    pass


class Gate(Actor[Wait | Release | Count]):
    """Answers every ``Wait`` when a ``Release`` comes; counts what it handled."""

    def __init__(self) -> None:
        self.waiting: list[asyncio.Future[str]] = []
        self.handled = 0

    async def receive(self, msg: Wait | Release | Count) -> object:
        self.handled += 1
        match msg:
            case Wait():
                future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
                self.waiting.append(future)
                return Deferred(future)
            case Release(how=how):
                for future in self.waiting:
                    if how == "value":
                        future.set_result(f"released at {self.now():g}")
                    elif how == "error":
                        future.set_exception(ValueError("refused"))
                    else:
                        future.cancel()
                self.waiting.clear()
                return len(self.waiting)
            case Count():
                return self.handled
        return None


def test_the_asker_gets_the_answer_when_it_is_given_and_the_actor_carries_on() -> None:
    async def main() -> None:
        async with Runtime() as rt:
            gate = await rt.spawn(Gate, name="gate")
            first = asyncio.ensure_future(gate.ask(Wait(), timeout=10))
            second = asyncio.ensure_future(gate.ask(Wait(), timeout=10))
            await rt.sleep(2.0)
            assert await gate.ask(Count()) == 3  # not blocked by the pending answers
            assert not first.done() and not second.done()
            await gate.ask(Release())
            assert await first == await second == "released at 2"
            failing = asyncio.ensure_future(gate.ask(Wait(), timeout=10))
            await rt.sleep(0.1)
            await gate.ask(Release("error"))
            with pytest.raises(ValueError, match="refused"):
                await failing
            dropped = asyncio.ensure_future(gate.ask(Wait(), timeout=10))
            await rt.sleep(0.1)
            await gate.ask(Release("cancel"))
            with pytest.raises(ActorStopped, match="Wait not handled"):
                await dropped
            gate.tell_nowait(Wait())  # a tell has no asker: nothing to answer
            assert await gate.ask(Count()) == 10

    runtime.run(main, simulated=True)


def test_a_deferred_answer_crosses_the_cluster() -> None:
    async def main() -> None:
        cluster = SimCluster(SimulatedNetwork(), await shared_memory_store(), lease_ttl=1.0)
        n1 = await cluster.start("n1", hosts=False)
        n2 = await cluster.start("n2", hosts=False)
        await n1.spawn(Gate, name="gate")
        await asyncio.sleep(1.0)  # both in each other's view of the membership
        remote = n2.remote("n1", "gate", Gate)
        waiting = asyncio.ensure_future(remote.ask(Wait(), timeout=10))
        await asyncio.sleep(3.0)
        assert not waiting.done()
        await remote.ask(Release())
        assert str(await waiting).startswith("released at")
        await cluster.stop()

    runtime.run(main, simulated=True, seed=1)
