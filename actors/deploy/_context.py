"""``DeploymentContext``: what the hosts and the controller of one deployment share.

It holds nothing that must survive a crash (that is in the store): the
spec, the service model or application handler, the metrics backend, the
fleet ledger the checks read, and which hosts a ``stop_reporting`` fault
has silenced (kept here, not on the host instance, so a restart does not
cure a broken metrics agent).
"""

from __future__ import annotations

import asyncio

from actors.deploy._ledger import FleetLedger
from actors.deploy._metrics import MetricsStore
from actors.deploy._model import AppHandler, ServiceModel
from actors.deploy._spec import DeploymentSpec
from runtime import Runtime, ShardlineError


class DeploymentError(ShardlineError):
    """A deployment cannot run as specified (bad spec, bad service model result)."""


class DeploymentContext:
    """Shared by every actor of one deployment; build it once per runtime.

    Give either ``model`` (hosts generate ``request_rate`` requests per
    second across the fleet and ask the model what each cost) or ``handler``
    (the application sends ``Serve`` to hosts and its handler does the work).
    """

    def __init__(
        self,
        rt: Runtime,
        spec: DeploymentSpec,
        *,
        model: ServiceModel | None = None,
        handler: AppHandler | None = None,
        request_rate: float = 0.0,
        tick: float = 0.5,
        metrics_name: str = "deploy.metrics",
        ledger: FleetLedger | None = None,
    ) -> None:
        problems = spec.problems()
        if problems:
            field, message = problems[0]
            raise DeploymentError(f"deployment {spec.deployment!r}: {field}: {message}")
        if request_rate < 0 or tick <= 0:
            raise DeploymentError(
                f"deployment {spec.deployment!r}: request_rate must be >= 0 and tick > 0")
        if request_rate > 0 and model is None:
            raise DeploymentError(
                f"deployment {spec.deployment!r}: generated traffic needs a service model")
        self.rt = rt
        self.spec = spec
        self.model = model
        self.handler = handler
        self.host_rate = request_rate / len(spec.hosts)
        self.tick = tick
        self.ledger = ledger if ledger is not None else FleetLedger()
        self.metrics = MetricsStore(rt, spec.deployment, name=metrics_name, ledger=self.ledger)
        self.silent_until: dict[str, float] = {}
        self.finished = asyncio.Event()
        self.controller_recoveries = 0
        self.stopping = False

    def wall(self) -> float:
        """The store clock: durable timestamps and deadlines use it."""
        return self.rt.clock.wall()

    def initial_controls(self) -> dict[str, str]:
        return {c.name: c.control for c in self.spec.configs}
