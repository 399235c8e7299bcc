"""The run report: a frozen record, printed as JSON or as a readable table."""

from __future__ import annotations

import sys
from typing import TextIO

import msgspec
from rich.console import Console
from rich.table import Table

from runtime.scenario._system_api import InvariantResult, MetricValue


class Report(msgspec.Struct):
    """The outcome of one scenario run (the JSON object of ``shardline run --json``)."""

    scenario: str
    seed: int
    clock: str
    passed: bool
    invariants: list[InvariantResult]
    metrics: dict[str, MetricValue]
    trace_digest: str
    system: str
    store: str
    out: str
    extra: dict[str, object] = msgspec.field(default_factory=dict)
    store_bytes: int | None = None
    """The store's size at the end of the run (``Store.size``); ``None`` if unreadable."""
    store_size_basis: str = ""

    def to_json_object(self) -> dict[str, object]:
        """The report as one JSON object; system extras (``result``, ``stages``) at top level."""
        obj: dict[str, object] = {
            "scenario": self.scenario,
            "seed": self.seed,
            "clock": self.clock,
            "passed": self.passed,
            "invariants": [msgspec.to_builtins(i) for i in self.invariants],
            "metrics": self.metrics,
            "trace_digest": self.trace_digest,
            "system": self.system,
            "store": self.store,
            "store_bytes": self.store_bytes,
            "store_size_basis": self.store_size_basis,
            "out": self.out,
        }
        for key, value in self.extra.items():
            obj.setdefault(key, value)
        return obj

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.to_json_object())


def _format(value: MetricValue) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _metric_label(key: str, clock: str) -> str:
    """A rate under simulated time is per *simulated* second: say so, lest it be read
    as the machine's throughput (the JSON keeps the key and carries ``clock``)."""
    if clock == "simulated" and key.endswith("_per_s"):
        return key.removesuffix("_per_s") + "_per_simulated_s"
    return key


def print_report(report: Report, stream: TextIO | None = None) -> None:
    """A human-readable report: invariants, then metrics, then the digest."""
    console = Console(file=stream or sys.stdout, highlight=False)
    verdict = "[bold green]PASSED[/]" if report.passed else "[bold red]FAILED[/]"
    console.print(
        f"scenario [bold]{report.scenario}[/] ({report.system}) seed {report.seed} "
        f"clock {report.clock}: {verdict}"
    )
    inv = Table(title="invariants", title_justify="left")
    inv.add_column("invariant")
    inv.add_column("held")
    inv.add_column("detail", overflow="fold")
    for item in report.invariants:
        inv.add_row(item.name, "[green]yes[/]" if item.held else "[red]NO[/]", item.detail)
    console.print(inv)
    met = Table(title="metrics", title_justify="left")
    met.add_column("metric")
    met.add_column("value", justify="right")
    for key, value in report.metrics.items():
        met.add_row(_metric_label(key, report.clock), _format(value))
    console.print(met)
    console.print(f"trace digest {report.trace_digest}   store {report.store}   out {report.out}")
    if report.store_bytes is not None:
        console.print(f"store size {report.store_bytes:,} bytes ({report.store_size_basis})")
