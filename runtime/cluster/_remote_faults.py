"""Actor faults of a run's plan that strike actors on cluster nodes.

``NodeActors`` is the driver's ``FaultInjector.remote``: a time-triggered
``crash``, ``pause``, ``delay``, ``drop`` or ``duplicate`` asks every live
node's agent which of its actors the fault strikes, chooses among them and
the driver's own with the run's seeded generator, and arms it on the chosen
actor's node (``StrikeActor``), where it applies at that actor's next
handling or message as it would in one process. A node that does not answer
within ``timeout`` (down, paused, cut off) offers no candidate. Probability
faults are installed in every node's own injector (``install_on``), again
when a node starts anew.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import msgspec

from runtime._faults import Fault
from runtime._system import Runtime
from runtime.cluster._agent import ActorsStruck, InstallFaults, StrikeActor, ask_agent


class NodeActors:
    """The actors of the live nodes ``nodes()`` names, as fault targets of ``rt``'s plan."""

    def __init__(self, rt: Runtime, nodes: Callable[[], Sequence[str]],
                 timeout: float = 2.0) -> None:
        self.rt = rt
        self.nodes = nodes
        self.timeout = timeout

    async def candidates(self, fault: Fault) -> list[tuple[str, str]]:
        async def struck(node: str) -> list[tuple[str, str]]:
            names = await ask_agent(self.rt, node, ActorsStruck(fault), self.timeout,
                                    failed="fault.node_silent")
            return [] if names is None else [
                (node, name) for name in msgspec.convert(names, list[str])]

        found = await asyncio.gather(*(struck(node) for node in self.nodes()))
        return [pair for pairs in found for pair in pairs]

    async def strike(self, node: str, name: str, fault: Fault) -> bool:
        armed = await ask_agent(
            self.rt, node, StrikeActor(name, fault, self.rt.faults.plan_entry(fault)),
            self.timeout, failed="fault.strike_failed", actor=name)
        return armed is True


async def install_on(rt: Runtime, node: str, faults: list[Fault],
                     timeout: float = 2.0) -> bool:
    """Install probability actor ``faults`` in ``node``'s injector; False if it did not
    confirm."""
    return await ask_agent(rt, node, InstallFaults(faults), timeout,
                           failed="fault.install_failed", warn=True) is not None
