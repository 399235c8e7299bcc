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
hosts and controller recover their state from the store. With ``on_nodes``
(a runtime that is a cluster node) the controller and the hosts are
entities instead (``actors.deploy._entity``, ``_host_entity``), spread over
the nodes that host those kinds; this runtime writes the deployment's
recipe, pokes every one of them every ``tick`` (so one whose node died is
activated on a survivor) until the deployment finished, and follows the
ledger the hosts journal to the store, so ``context.ledger`` holds what the
fleet served, as in one process. The service model then travels as data:
``model`` must be the ``LatencyModel`` table or a ``"module:function"``
name, and there is no application handler (``serve`` needs hosts here).
"""

from __future__ import annotations

import asyncio
import contextlib

import msgspec

from actors.deploy import _keys as keys
from actors.deploy._context import DeploymentContext, DeploymentError
from actors.deploy._controller import DeploymentController, ReadDeployment
from actors.deploy._entity import DeploymentControllerEntity
from actors.deploy._host import (
    DeploymentHost,
    HostMsg,
    HostStatus,
    ReadHostStatus,
    Retire,
    Serve,
    Served,
    Tick,
)
from actors.deploy._host_entity import DeploymentHostEntity, host_entity_key, status_of
from actors.deploy._ledger_log import LedgerFollower
from actors.deploy._model import AppHandler, LatencyModel, ServiceModel
from actors.deploy._recipe import DeploymentRecipe, encode_recipe
from actors.deploy._records import DeploymentState
from actors.deploy._spec import DeploymentSpec
from runtime import ActorRef, Backoff, Runtime, ShardlineError, Supervisor
from runtime._callables import resolve_callable
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
        model: ServiceModel | LatencyModel | str | None = None,
        handler: AppHandler | None = None,
        request_rate: float = 0.0,
        tick: float = 0.5,
        name: str = "deploy",
        max_restarts: int = 1000,
        within: float = 10.0,
        restart_backoff: Backoff | None = None,
        on_nodes: bool = False,
    ) -> None:
        self.rt = rt
        self.spec = spec
        self.name = name
        if on_nodes and (handler is not None
                         or not isinstance(model, LatencyModel | str | None)):
            raise DeploymentError(
                f"deployment {spec.deployment!r}: hosts on nodes rebuild the service model "
                "from data: give the LatencyModel table or a 'module:function' name, "
                "and no application handler")
        self.recipe = DeploymentRecipe(
            spec, name, model if isinstance(model, LatencyModel | str) else None,
            request_rate, tick)
        local_model: ServiceModel | None = (
            resolve_callable(model, what="service model")  # type: ignore[assignment]
            if isinstance(model, str) else model)
        self.context = DeploymentContext(rt, spec, model=local_model, handler=handler,
                                         request_rate=request_rate, tick=tick,
                                         metrics_name=f"{name}.metrics")
        self._max_restarts = max_restarts
        self._within = within
        self._backoff = restart_backoff or Backoff(min=0.01, max=1.0, jitter=0.2)
        self.hosts: dict[str, ActorRef[HostMsg]] = {}
        self.supervisor: Supervisor | None = None
        self.on_nodes = on_nodes
        self._pokers: list[asyncio.Task[None]] = []
        self._ledger = LedgerFollower(without_faults(rt.store), spec.deployment,
                                      self.context.ledger)

    @property
    def controller_name(self) -> str:
        return f"{self.name}.controller"

    async def start(self) -> None:
        self.context.stopping = False
        sup = await self.rt.spawn_supervisor(
            self.name, max_restarts=self._max_restarts, within=self._within,
            backoff=self._backoff)
        self.supervisor = sup
        if self.on_nodes:
            await self._start_on_nodes()
            return
        for host in self.spec.hosts:
            self.hosts[host] = await sup.spawn_retrying(
                DeploymentHost, self.context, name=host, backoff=self._backoff,
                attempts=_START_ATTEMPTS)
        await sup.spawn_retrying(DeploymentController, self.context,
                                 name=self.controller_name, backoff=self._backoff,
                                 attempts=_START_ATTEMPTS)

    async def _start_on_nodes(self) -> None:
        await self._ledger.skip_past()
        await without_faults(self.rt.store).write(
            [Put(keys.recipe_key(self.spec.deployment), encode_recipe(self.recipe))])
        for host in self.spec.hosts:
            self.hosts[host] = self.rt.entity(
                DeploymentHostEntity, host_entity_key(self.spec.deployment, host))
        loop = asyncio.get_running_loop()
        self._pokers = [loop.create_task(self._poke_controller()),
                        loop.create_task(self._poke_hosts())]

    async def _poke_controller(self) -> None:
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
                    await self._follow_ledger()
                    self.context.finished.set()
                    return
            await asyncio.sleep(self.context.tick)

    async def _poke_hosts(self) -> None:
        """Keep every host entity active and follow the ledger their nodes journal."""
        while True:
            for ref in self.hosts.values():
                try:
                    ref.tell_nowait(Tick())
                except ShardlineError as exc:  # the router is full: poke it next time
                    self.rt.trace.record(self.rt.now(), "host_unreachable", ref.name,
                                         type(exc).__name__)
            await self._follow_ledger()
            await asyncio.sleep(self.context.tick)

    async def _follow_ledger(self) -> None:
        try:
            await self._ledger.catch_up()
        except ShardlineError as exc:  # read again at the next poke
            self.rt.trace.record(self.rt.now(), "ledger_unread", self.name, str(exc))

    async def _retire(self, ref: ActorRef[HostMsg]) -> None:
        with contextlib.suppress(ShardlineError):  # its node is gone: so is its journal tail
            await ref.ask(Retire(), timeout=5.0)

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
        return [status_of(await ref.ask(ReadHostStatus(), timeout=timeout))
                for ref in self.hosts.values()]

    async def stop(self) -> None:
        """Stop every actor of the deployment (its durable state stays in the store)."""
        self.context.stopping = True
        for task in self._pokers:
            task.cancel()
        self._pokers = []
        if self.on_nodes:  # hosts stop on their nodes once they journaled what they did
            await asyncio.gather(*(self._retire(ref) for ref in self.hosts.values()))
            await self._follow_ledger()
        if self.supervisor is not None:
            await self.rt.root.stop(self.supervisor)
            self.supervisor = None
