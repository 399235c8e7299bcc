"""A simulated link delivers its frames in the order they were sent, Hello first.

Frames due at the same instant used to arrive in the order the event loop's
timer heap gave back (not stable for equal times): a frame sent right after
the Hello with a shorter random delay could come first, the receiver closed
the connection ("first frame ... is not a Hello") and the sender lost what it
had queued (an ask to that node went unanswered).
"""

from __future__ import annotations

import asyncio

import pytest
from _helpers import sim

from runtime.cluster import SimulatedNetwork
from runtime.cluster._simnet import _Channel


@pytest.mark.parametrize("delay", [(0.001, 0.001), (0.0005, 0.002)])
def test_frames_sent_together_arrive_in_order(delay: tuple[float, float]) -> None:
    async def main() -> list[bytes]:
        channel = _Channel(SimulatedNetwork(delay=delay), "a", "b", 1 << 20)
        for i in range(64):
            channel.push(b"%d" % i)
        got = [await channel.pop() for _ in range(64)]
        await asyncio.sleep(0.01)
        assert not channel.inbox
        return got

    assert sim(main, seed=3) == [b"%d" % i for i in range(64)]


def test_a_paused_receiver_gets_every_frame_in_order_after_the_pause() -> None:
    async def main() -> list[bytes]:
        net = SimulatedNetwork(delay=(0.001, 0.003))
        channel = _Channel(net, "a", "b", 1 << 20)
        net.paused_until["b"] = 0.5
        for i in range(16):
            channel.push(b"%d" % i)
            await asyncio.sleep(0.0001)
        return [await channel.pop() for _ in range(16)]

    assert sim(main, seed=4) == [b"%d" % i for i in range(16)]
