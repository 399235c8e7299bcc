"""The public surface, listed on purpose: changing it means changing this file."""

from __future__ import annotations

import importlib

import pytest

import runtime
import runtime.testing

RUNTIME_API = [
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

TESTING_API = ["SimulatedEventLoop", "SimulatedNetwork", "current_seed", "is_simulated"]


@pytest.mark.parametrize(
    ("module", "expected"), [(runtime, RUNTIME_API), (runtime.testing, TESTING_API)]
)
def test_all_lists_exactly_the_expected_names(module: object, expected: list[str]) -> None:
    assert sorted(module.__all__) == sorted(expected)  # type: ignore[attr-defined]
    assert len(set(module.__all__)) == len(module.__all__)  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", RUNTIME_API)
def test_each_runtime_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from runtime import {name}", namespace)  # the way users import it
    assert namespace[name] is getattr(importlib.import_module("runtime"), name)


@pytest.mark.parametrize("name", TESTING_API)
def test_each_testing_name_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from runtime.testing import {name}", namespace)
    assert namespace[name] is getattr(runtime.testing, name)


def test_exported_names_live_in_private_modules_or_are_public_on_purpose() -> None:
    for name in RUNTIME_API:
        obj = getattr(runtime, name)
        module = getattr(obj, "__module__", "runtime")
        assert module.startswith(("runtime._", "runtime.cluster._")), \
            f"{name} is defined in {module}"


def test_every_error_is_a_shardline_error() -> None:
    errors = [getattr(runtime, n) for n in RUNTIME_API
              if isinstance(getattr(runtime, n), type)
              and issubclass(getattr(runtime, n), BaseException)]
    assert len(errors) == 15
    assert all(issubclass(e, runtime.ShardlineError) for e in errors)


def test_the_spawn_tell_ask_names_are_unchanged() -> None:
    assert callable(runtime.Runtime.spawn)
    assert callable(runtime.ActorRef.tell)
    assert callable(runtime.ActorRef.tell_nowait)
    assert callable(runtime.ActorRef.ask)
    assert callable(runtime.run)


BENCH_API = ["KINDS", "FaultKind", "Metastability", "Point", "RunRecord", "SampleRow",
             "SweepResult", "SweepSpec", "Target", "main", "run_sweep"]


def test_the_bench_api_is_deliberate() -> None:
    import runtime.bench

    assert sorted(runtime.bench.__all__) == sorted(BENCH_API)
    assert all(hasattr(runtime.bench, name) for name in BENCH_API)
