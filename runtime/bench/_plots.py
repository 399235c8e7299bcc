"""The five figures of a sweep, per system, as PNG and SVG (matplotlib, Agg).

1. ``<system>-throughput``: throughput over time, one panel per (rate, fault
   kind), the first seed's run, each fault shaded (Jepsen's style), the
   no-fault run in grey behind it, the last fault and the recovery marked.
2. ``<system>-latency``: latency p50/p99/max over time, same panels and shading.
3. ``<system>-recovery``: recovery time after each fault, an ECDF per fault kind.
4. ``<system>-goodput``: goodput vs fault rate, median with the spread over
   seeds, beside the no-fault baseline (median line, min-max band).
5. ``<system>-p99``: run p99 latency vs fault rate, same layout.

A system whose probe reports no latencies (deploy across nodes) gets no latency figures.

Runs whose invariants failed are never drawn into a curve (figures 3-5 say
how many were left out); they are listed first in the report.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.bench._analysis import smoothed
from runtime.bench._kinds import fault_rate_label
from runtime.bench._records import RunRecord, SampleRow

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2"]
_SHADE = "#d62728"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "figure.dpi": 100,
                         "svg.fonttype": "none", "axes.spines.top": False,
                         "axes.spines.right": False})
    return plt


def _save(fig: Any, out: Path, name: str) -> list[Path]:
    paths = [out / f"{name}.png", out / f"{name}.svg"]
    fig.savefig(paths[0], dpi=90, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    fig.clf()
    _shrink(paths[0])
    _shrink_svg(paths[1])
    return paths


_DIGITS = re.compile(r"(\d\.\d)\d{2,}")
_PATH_BREAK = re.compile(r" ?\n(?=[LMCz])")
_INDENT = re.compile(r"\n +")


def _shrink_svg(svg: Path) -> None:
    """Coordinates to 0.1 pt (numbers with 3+ decimals), path commands on one line, no
    indentation: well under half the bytes matplotlib writes."""
    text = svg.read_text(encoding="utf-8")
    text = _PATH_BREAK.sub(" ", _DIGITS.sub(r"\1", text))
    svg.write_text(_INDENT.sub("\n", text), encoding="utf-8")


def _shrink(png: Path) -> None:
    """A 128-colour palette: a third of the bytes, no visible change for line plots."""
    from PIL import Image

    with Image.open(png) as image:
        small = image.convert("RGB").quantize(colors=128)
    small.save(png, optimize=True)


def _series(rows: Sequence[SampleRow], run: str) -> list[SampleRow]:
    return [r for r in rows if r.run == run]


def _throughput(ax: Any, series: Sequence[SampleRow], color: str, label: str,
                width: float) -> None:
    """Raw buckets faint, the three-bucket average (what recovery is judged on) solid."""
    t = [r.t for r in series]
    ax.plot(t, [r.throughput for r in series], color=color, linewidth=0.5, alpha=0.35)
    ax.plot(t, smoothed(series), color=color, linewidth=width, label=label)


def _plain_ticks(ax: Any) -> None:
    """Tick labels as plain numbers (1,000 rather than 10^3)."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _figure_legend(fig: Any, axes: Any) -> None:
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label.split(" at ")[0], handle)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="lower center",
                   ncol=len(handles), frameon=False, fontsize=7, bbox_to_anchor=(0.5, -0.02))


def _shade(ax: Any, record: RunRecord, bucket: float) -> None:
    for event in record.fault_events:
        ax.axvspan(event.t, event.t + max(record.fault_lasts, bucket / 2), color=_SHADE,
                   alpha=0.22, linewidth=0)
    verdict = record.metastability
    if verdict is not None:
        ax.axvline(verdict.last_fault_at, color=_SHADE, linestyle=":", linewidth=0.8)
        if verdict.recovered_after is not None:
            ax.axvline(verdict.last_fault_at + verdict.recovered_after, color="#2ca02c",
                       linestyle="--", linewidth=0.8)


def _panels(runs: Sequence[RunRecord]) -> tuple[list[float], list[str],
                                                dict[tuple[float, str], RunRecord]]:
    """The first seed's run of each (rate > 0, fault) pair, for the time-series grids."""
    first_seed = min(r.seed for r in runs)
    chosen = {(r.rate, r.fault): r for r in runs if r.seed == first_seed and r.rate > 0}
    rates = sorted({rate for rate, _ in chosen})
    faults = sorted({fault for _, fault in chosen})
    return rates, faults, chosen


def _grid(plt: Any, rows: int, cols: int) -> tuple[Any, Any]:
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols + 0.6, 1.9 * rows + 0.6),
                             squeeze=False, sharex=True)
    return fig, axes


def throughput_over_time(plt: Any, system: str, runs: Sequence[RunRecord],
                         rows: Sequence[SampleRow], out: Path, bucket: float) -> list[Path]:
    rates, faults, chosen = _panels(runs)
    baseline = next((r for r in runs if r.rate == 0 and r.seed == min(x.seed for x in runs)),
                    None)
    fig, axes = _grid(plt, max(1, len(rates)), max(1, len(faults)))
    for i, rate in enumerate(rates or [0.0]):
        for j, fault in enumerate(faults or ["none"]):
            ax = axes[i][j]
            if baseline is not None:
                _throughput(ax, _series(rows, baseline.run), "#888888", "no faults", 0.9)
            record = chosen.get((rate, fault))
            if record is not None:
                failed = "" if record.correct else " (INVARIANT FAILED)"
                _throughput(ax, _series(rows, record.run),
                            _COLORS[0] if record.correct else _SHADE, "with faults" + failed,
                            1.2)
                _shade(ax, record, bucket)
            ax.set_title(f"{fault} at {fault_rate_label(rate)}")
            ax.set_ylim(bottom=0)
            _plain_ticks(ax)
            if j == 0:
                ax.set_ylabel(f"{_unit(runs)}/s")
            if i == len(rates) - 1 or not rates:
                ax.set_xlabel("time (s)")
    _figure_legend(fig, axes)
    fig.suptitle(f"{system}: throughput over time (solid: 3-bucket average; red: faults; "
                 "dotted: last fault; green dashed: back at 90 % of no-fault)", fontsize=9)
    return _save(fig, out, f"{system}-throughput")


def latency_over_time(plt: Any, system: str, runs: Sequence[RunRecord],
                      rows: Sequence[SampleRow], out: Path, bucket: float) -> list[Path]:
    from matplotlib.ticker import NullLocator

    rates, faults, chosen = _panels(runs)
    fig, axes = _grid(plt, max(1, len(rates)), max(1, len(faults)))
    for i, rate in enumerate(rates or [0.0]):
        for j, fault in enumerate(faults or ["none"]):
            ax = axes[i][j]
            record = chosen.get((rate, fault))
            if record is not None:
                series = [r for r in _series(rows, record.run) if r.p50 is not None]
                t = [r.t for r in series]
                for key, color, label in (("max", "#bbbbbb", "max"), ("p99", _COLORS[1], "p99"),
                                          ("p50", _COLORS[0], "p50")):
                    ax.plot(t, [1000 * getattr(r, key) for r in series], color=color,
                            linewidth=0.9, label=label)
                _shade(ax, record, bucket)
                if series:
                    ax.set_yscale("log")
                    _plain_ticks(ax)
                    ax.yaxis.set_minor_locator(NullLocator())
            ax.set_title(f"{fault} at {fault_rate_label(rate)}")
            if j == 0:
                ax.set_ylabel("latency (ms)")
            if i == len(rates) - 1 or not rates:
                ax.set_xlabel("time (s)")
    _figure_legend(fig, axes)
    fig.suptitle(f"{system}: latency per {bucket * 1000:.0f} ms bucket (red: faults)", fontsize=9)
    return _save(fig, out, f"{system}-latency")


def recovery_ecdf(plt: Any, system: str, runs: Sequence[RunRecord], out: Path) -> list[Path]:
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    faults = sorted({r.fault for r in runs if r.rate > 0})
    for k, fault in enumerate(faults):
        mine = [r for r in runs if r.fault == fault and r.rate > 0 and r.correct]
        times = sorted(t for r in mine for t in r.recovery_times)
        missing = sum(r.unrecovered for r in mine)
        total = len(times) + missing
        if not total:
            continue
        # the ECDF over every fault, so unrecovered ones keep the curve below 1
        ys = [(n + 1) / total for n in range(len(times))]
        ax.step([0.0, *times], [0.0, *ys], where="post", color=_COLORS[k % len(_COLORS)],
                label=f"{fault}: {len(times)} of {total} recovered")
    ax.set_xlabel("seconds from fault to throughput back at 90 % of no-fault")
    ax.set_ylabel("fraction of faults")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{system}: recovery time after each fault (ECDF)")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _save(fig, out, f"{system}-recovery")


def _versus_rate(plt: Any, system: str, runs: Sequence[RunRecord], out: Path, name: str,
                 value: Any, ylabel: str, title: str) -> list[Path]:
    fig, ax = plt.subplots(figsize=(4.6, 3.0))
    good = [r for r in runs if r.correct]
    rates = sorted({r.rate for r in runs if r.rate > 0})
    positions = {rate: i for i, rate in enumerate(rates)}
    base = [v for r in good if r.rate == 0 and (v := value(r)) is not None]
    if base:
        ax.axhspan(min(base), max(base), color="#999999", alpha=0.2, linewidth=0)
        ax.axhline(statistics.median(base), color="#666666", linestyle="--", linewidth=0.9,
                   label=f"no faults (median of {len(base)})")
    faults = sorted({r.fault for r in runs if r.rate > 0})
    for k, fault in enumerate(faults):
        color = _COLORS[k % len(_COLORS)]
        xs, med, lo, hi = [], [], [], []
        for rate in rates:
            values = [v for r in good if r.fault == fault and r.rate == rate
                      and (v := value(r)) is not None]
            if not values:
                continue
            x = positions[rate] + (k - (len(faults) - 1) / 2) * 0.08
            ax.scatter([x] * len(values), values, color=color, s=8, alpha=0.5)
            xs.append(x)
            med.append(statistics.median(values))
            lo.append(med[-1] - min(values))
            hi.append(max(values) - med[-1])
        if xs:
            ax.errorbar(xs, med, yerr=[lo, hi], color=color, marker="o", markersize=3,
                        capsize=3, linewidth=1.0, label=fault)
    left_out = len(runs) - len(good)
    ax.set_xticks(range(len(rates)), [f"{r:g}" for r in rates])
    ax.set_xlabel("fault rate (faults per second)")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    ax.set_title(title + (f" ({left_out} failed runs left out)" if left_out else ""))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, frameon=True, framealpha=0.8, loc="best")
    return _save(fig, out, f"{system}-{name}")


def _unit(runs: Sequence[RunRecord]) -> str:
    return runs[0].unit if runs else "units"


def draw_system(system: str, runs: Sequence[RunRecord], rows: Sequence[SampleRow], out: Path,
                bucket: float) -> list[Path]:
    """Every figure of ``system``; returns the files written (PNG then SVG of each)."""
    plt = _pyplot()
    out.mkdir(parents=True, exist_ok=True)
    timed = any(r.p50 is not None for r in rows)  # False for a probe without latencies
    paths = throughput_over_time(plt, system, runs, rows, out, bucket)
    if timed:
        paths += latency_over_time(plt, system, runs, rows, out, bucket)
    paths += recovery_ecdf(plt, system, runs, out)
    paths += _versus_rate(plt, system, runs, out, "goodput", lambda r: r.goodput,
                          f"goodput ({_unit(runs)}/s)", f"{system}: goodput vs fault rate")
    if timed:
        paths += _versus_rate(plt, system, runs, out, "p99",
                              lambda r: 1000 * r.latency["p99"] if "p99" in r.latency else None,
                              "run p99 latency (ms)", f"{system}: p99 latency vs fault rate")
    plt.close("all")
    return paths
