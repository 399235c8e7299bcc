"""Shardline's actor runtime: what an embedding application needs.

Internals live in private modules (``_x.py``); ``runtime.testing`` holds what
tests need to drive simulated time and faults; ``runtime.store`` the durable
state layer.
"""

from runtime._actor import Actor, Timer
from runtime._background import BackgroundTasks
from runtime._clock import Clock
from runtime._deferred import Deferred
from runtime._errors import (
    ActorStopped,
    AskTimeout,
    ConflictError,
    InjectedFault,
    LeaseLost,
    LogTruncated,
    MailboxFull,
    NameTaken,
    RestartIntensityExceeded,
    ScenarioError,
    ShardlineError,
    StaleFencingToken,
    StoreError,
    StoreURLError,
)
from runtime._faults import Fault, FaultInjector
from runtime._keycache import KeyCache
from runtime._logging import configure_logging, install_default_logging
from runtime._message import Message, Terminated, decode, encode
from runtime._ref import ActorRef
from runtime._simloop import run
from runtime._stats import ActorStatistics
from runtime._supervisor import Backoff, Restart, Strategy, Supervisor, SupervisorSpec
from runtime._system import NoSuchActor, Runtime
from runtime._trace import Trace, TraceEvent, TraceLevel
from runtime.cluster._config import Cluster

__all__ = [
    "Actor",
    "ActorRef",
    "ActorStatistics",
    "ActorStopped",
    "AskTimeout",
    "BackgroundTasks",
    "Backoff",
    "Clock",
    "Cluster",
    "ConflictError",
    "Deferred",
    "Fault",
    "FaultInjector",
    "InjectedFault",
    "KeyCache",
    "LeaseLost",
    "LogTruncated",
    "MailboxFull",
    "Message",
    "NameTaken",
    "NoSuchActor",
    "Restart",
    "RestartIntensityExceeded",
    "Runtime",
    "ScenarioError",
    "ShardlineError",
    "StaleFencingToken",
    "StoreError",
    "StoreURLError",
    "Strategy",
    "Supervisor",
    "SupervisorSpec",
    "Terminated",
    "Timer",
    "Trace",
    "TraceEvent",
    "TraceLevel",
    "configure_logging",
    "decode",
    "encode",
    "run",
]

install_default_logging()  # quiet, one line per event, stderr; see runtime._logging
