"""Scenario files: schema, loading, the system registry and the runner."""

from runtime._durations import Duration, parse_duration
from runtime.scenario._audit import Audit, FileAudit, audit_before_truncating, read_whole_log
from runtime.scenario._bounds import bound_problems
from runtime.scenario._loader import (
    FaultSpec,
    LoadedScenario,
    ScenarioHeader,
    load_scenario,
    parse_scenario,
)
from runtime.scenario._percentile import percentile
from runtime.scenario._registry import load_system, register_system, system_names, systems
from runtime.scenario._report import Report, print_report
from runtime.scenario._runner import default_out_dir, run_scenario
from runtime.scenario._sampler import (
    FaultEvent,
    Observation,
    Probe,
    Refresh,
    Sample,
    Sampler,
)
from runtime.scenario._system_api import (
    InvariantResult,
    MetricValue,
    ScenarioContext,
    ScenarioSystem,
    SystemOutcome,
    exercised_floors,
)

__all__ = [
    "Audit",
    "Duration",
    "FaultEvent",
    "FaultSpec",
    "FileAudit",
    "InvariantResult",
    "LoadedScenario",
    "MetricValue",
    "Observation",
    "Probe",
    "Refresh",
    "Report",
    "Sample",
    "Sampler",
    "ScenarioContext",
    "ScenarioHeader",
    "ScenarioSystem",
    "SystemOutcome",
    "audit_before_truncating",
    "bound_problems",
    "default_out_dir",
    "exercised_floors",
    "load_scenario",
    "load_system",
    "parse_duration",
    "parse_scenario",
    "percentile",
    "print_report",
    "read_whole_log",
    "register_system",
    "run_scenario",
    "system_names",
    "systems",
]
