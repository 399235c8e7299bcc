"""Safe deployment of configurations to a fleet: experiment, statistical approval,
staged promotion, automatic rollback.

Public API for embedding: :class:`Fleet` runs a :class:`DeploymentSpec`
(configuration changes and the :class:`Analysis` policy) on a runtime with
:class:`DeploymentHost` actors and a :class:`DeploymentController`, serving
either a service model (``fn(configs, request, rng) -> (latency_s, ok)``,
e.g. the built-in :class:`LatencyModel`) or the application's own async
handler (``Fleet.serve``). The analysis is usable on its own:
:func:`compare_latency` (Mann-Whitney U), :func:`compare_errors` (two
proportions, Fisher's exact test) and :func:`judge`. ``SYSTEM`` is the ``[deploy]``
scenario system registered under the ``shardline.systems`` entry point.
"""

from actors.deploy._analysis import Judgement, compare_errors, compare_latency, judge
from actors.deploy._config import DeployConfig, DeployExpect
from actors.deploy._context import DeploymentContext, DeploymentError
from actors.deploy._controller import ControllerMsg, DeploymentController, ReadDeployment
from actors.deploy._fleet import Fleet
from actors.deploy._host import (
    Assign,
    DeploymentHost,
    HostMsg,
    HostStatus,
    ReadHostStatus,
    Serve,
    Served,
)
from actors.deploy._metrics import MetricsStore, MetricsUnavailable
from actors.deploy._model import (
    AppHandler,
    LatencyModel,
    Request,
    ServiceModel,
    Truth,
    VersionModel,
)
from actors.deploy._records import (
    Assignment,
    DeploymentState,
    Evidence,
    MetricEvidence,
    MetricsReport,
    StageResult,
    VariantOutcomes,
    Verdict,
)
from actors.deploy._spec import Analysis, ConfigChange, DeploymentSpec, wave_sizes
from actors.deploy._system import SYSTEM, DeploySystem
from actors.deploy._variant import bucket, variant_for

__all__ = [
    "SYSTEM",
    "Analysis",
    "AppHandler",
    "Assign",
    "Assignment",
    "ConfigChange",
    "ControllerMsg",
    "DeployConfig",
    "DeployExpect",
    "DeploySystem",
    "DeploymentContext",
    "DeploymentController",
    "DeploymentError",
    "DeploymentHost",
    "DeploymentSpec",
    "DeploymentState",
    "Evidence",
    "Fleet",
    "HostMsg",
    "HostStatus",
    "Judgement",
    "LatencyModel",
    "MetricEvidence",
    "MetricsReport",
    "MetricsStore",
    "MetricsUnavailable",
    "ReadDeployment",
    "ReadHostStatus",
    "Request",
    "Serve",
    "Served",
    "ServiceModel",
    "StageResult",
    "Truth",
    "VariantOutcomes",
    "Verdict",
    "VersionModel",
    "bucket",
    "compare_errors",
    "compare_latency",
    "judge",
    "variant_for",
    "wave_sizes",
]
