"""``Fleet``: a deployment's hosts and controller on a runtime (the embedding API).

```python
async with Runtime(store="sqlite:///state.db") as rt:
    spec = DeploymentSpec("checkout-2024-06", hosts=[f"web-{i}" for i in range(8)],
                          configs=[ConfigChange("pool", "v1", "v2")])
    fleet = Fleet(rt, spec, handler=my_handler)      # or model=fn, request_rate=...
    await fleet.start()
    reply = await fleet.serve("web-3", request_id="r-17", payload=b"...")
    state = await fleet.wait()                        # stages, verdicts, evidence
```

Everything runs under one supervisor named ``name`` (hosts first, then the
controller ``<name>.controller``), restarting crashed actors with backoff;
hosts and controller recover their state from the store. With
``controller_on_nodes`` (a runtime that is a cluster node) the controller is
the entity ``DeploymentControllerEntity/<deployment>`` instead, run by
whichever node hosts it (``actors.deploy._entity``); this runtime keeps the
hosts and pokes the entity every ``tick`` until the deployment finished.
"""

from __future__ import annotations

import asyncio

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._context import DeploymentContext
from actors.deploy._controller import DeploymentController, ReadDeployment
from actors.deploy._entity import DeploymentControllerEntity, DeploymentRecipe, encode_recipe
from actors.deploy._host import DeploymentHost, HostMsg, HostStatus, ReadHostStatus, Serve, Served
from actors.deploy._model import AppHandler, ServiceModel
from actors.deploy._records import DeploymentState
from actors.deploy._spec import DeploymentSpec
from runtime import ActorRef, Backoff, Runtime, ShardlineError, Supervisor
from runtime.store import Put, without_faults

_decode_state = msgspec.msgpack.Decoder(DeploymentState).decode
_START_ATTEMPTS = 100
"""First-start attempts per actor: a host or the controller reads the store in ``recover``,
and a store fault there is retried like a restart, not the end of the deployment."""


class Fleet:
    """Spawn, drive and inspect one deployment; see the module docstring."""

    def __init__(
        self,
        rt: Runtime,
        spec: DeploymentSpec,
        *,
        model: ServiceModel | None = None,
        handler: AppHandler | None = None,
        request_rate: float = 0.0,
        tick: float = 0.5,
        name: str = "deploy",
        max_restarts: int = 1000,
        within: float = 10.0,
        restart_backoff: Backoff | None = None,
        controller_on_nodes: bool = False,
    ) -> None:
        self.rt = rt
        self.spec = spec
        self.name = name
        self.context = DeploymentContext(rt, spec, model=model, handler=handler,
                                         request_rate=request_rate, tick=tick,
                                         metrics_name=f"{name}.metrics")
        self._max_restarts = max_restarts
        self._within = within
        self._backoff = restart_backoff or Backoff(min=0.01, max=1.0, jitter=0.2)
        self.hosts: dict[str, ActorRef[HostMsg]] = {}
        self.supervisor: Supervisor | None = None
        self.controller_on_nodes = controller_on_nodes
        self._poker: asyncio.Task[None] | None = None

    @property
    def controller_name(self) -> str:
        return f"{self.name}.controller"

    async def start(self) -> None:
        self.context.stopping = False
        sup = await self.rt.spawn_supervisor(
            self.name, max_restarts=self._max_restarts, within=self._within,
            backoff=self._backoff)
        self.supervisor = sup
        for host in self.spec.hosts:
            self.hosts[host] = await sup.spawn_retrying(
                DeploymentHost, self.context, name=host, backoff=self._backoff,
                attempts=_START_ATTEMPTS)
        if not self.controller_on_nodes:
            await sup.spawn_retrying(DeploymentController, self.context,
                                     name=self.controller_name, backoff=self._backoff,
                                     attempts=_START_ATTEMPTS)
            return
        recipe = DeploymentRecipe(self.spec, self.name, self.rt.node_name or "")
        await without_faults(self.rt.store).write(
            [Put(keys.recipe_key(self.spec.deployment), encode_recipe(recipe))])
        self._poker = asyncio.get_running_loop().create_task(self._poke())

    async def _poke(self) -> None:
        """Keep the controller entity active (wherever it runs) until it finished."""
        ref = self.rt.entity(DeploymentControllerEntity, self.spec.deployment)
        while True:
            try:
                reply = await ref.ask(ReadDeployment(), timeout=5.0)
            except ShardlineError as exc:  # moving, or its node just died: poke again
                self.rt.trace.record(self.rt.now(), "controller_unreachable",
                                     self.controller_name, type(exc).__name__)
            else:
                state = reply if isinstance(reply, DeploymentState) \
                    else msgspec.convert(reply, DeploymentState)
                if state.phase == "finished":
                    self.context.finished.set()
                    return
            await asyncio.sleep(self.context.tick)

    async def state(self) -> DeploymentState | None:
        """The durable state (readable while the controller is restarting).

        An observer's read: it goes to the store without injected faults, so
        a ``store_error`` plan aimed at the deployment cannot fail its checks.
        """
        store = without_faults(self.rt.store)
        stored = await store.get(keys.state_key(self.spec.deployment))
        return _decode_state(stored.value) if stored is not None else None

    async def wait(self, timeout: float | None = None) -> DeploymentState:
        """Wait (runtime clock) until the deployment finished; ``TimeoutError`` otherwise."""
        async with asyncio.timeout(timeout):
            await self.context.finished.wait()
        state = await self.state()
        assert state is not None
        return state

    async def serve(self, host: str, request_id: str, payload: bytes = b"",
                    timeout: float = 30.0) -> Served:
        """Serve one application request on ``host`` through the embedding handler."""
        reply = await self.hosts[host].ask(Serve(request_id, payload), timeout=timeout)
        assert isinstance(reply, Served)
        return reply

    async def host_status(self, timeout: float = 30.0) -> list[HostStatus]:
        """What every host runs now, asked of the hosts themselves."""
        found: list[HostStatus] = []
        for ref in self.hosts.values():
            status = await ref.ask(ReadHostStatus(), timeout=timeout)
            assert isinstance(status, HostStatus)
            found.append(status)
        return found

    async def stop(self) -> None:
        """Stop every actor of the deployment (its durable state stays in the store)."""
        self.context.stopping = True
        if self._poker is not None:
            self._poker.cancel()
            self._poker = None
        if self.supervisor is not None:
            await self.rt.root.stop(self.supervisor)
            self.supervisor = None
