"""``report.md`` and ``report.html`` (the same text, images inline) of a sweep.

Correctness failures come first, each with the command that replays it;
then the metastability verdicts, the summary per (system, fault, rate), the
figures, and every run with its verdict.
"""

from __future__ import annotations

import base64
import re
import statistics
from collections.abc import Sequence
from pathlib import Path

from runtime.bench._analysis import THRESHOLD
from runtime.bench._kinds import fault_rate_label
from runtime.bench._records import RunRecord
from runtime.scenario import percentile


def _failures(runs: Sequence[RunRecord]) -> list[str]:
    bad = [r for r in runs if not r.correct]
    if not bad:
        return ["## Correctness", "",
                f"None: every run held every invariant ({len(runs)} runs).", ""]
    lines = ["## Correctness failures", "",
             f"**{len(bad)} of {len(runs)} runs broke an invariant.** They are left out of "
             "every curve; replay one with its command.", ""]
    for r in bad:
        broken = "; ".join(f"`{i.name}`: {i.detail}" for i in r.invariants
                           if not i.held and not i.name.startswith("exercised_"))
        lines += [f"- **{r.run}** ({r.fault} at {fault_rate_label(r.rate)}, seed {r.seed}): "
                  f"{broken}", f"  - trace digest `{r.trace_digest}`",
                  f"  - replay: `{r.replay}`"]
    return [*lines, ""]


def _metastability(runs: Sequence[RunRecord]) -> list[str]:
    checked = [r for r in runs if r.metastability is not None and r.correct]
    lines = ["## Metastability", "",
             f"After the last fault, throughput must return to {THRESHOLD:.0%} of the same "
             "seed's no-fault rate within the stated time.", ""]
    if not checked:
        return [*lines, "No run with faults to check.", ""]
    lines += ["| run | last fault at (s) | back after (s) | within (s) | verdict |",
              "|---|---|---|---|---|"]
    for r in checked:
        m = r.metastability
        assert m is not None
        after = f"{m.recovered_after:.2f}" if m.recovered_after is not None else "—"
        lines.append(f"| {r.run} | {m.last_fault_at:.2f} | {after} | {m.within:g} | "
                     f"**{m.verdict}**: {m.detail} |")
    return [*lines, ""]


def _summary(runs: Sequence[RunRecord]) -> list[str]:
    lines = ["## Summary", "",
             "Medians over seeds of the runs that held their invariants, [min to max] beside; "
             "goodput is work completed per second of the run's active span.", "",
             "| system | fault | rate | runs | goodput | of no-fault | p99 (ms) | "
             "recovery p50 / p90 (s) | unrecovered | metastability |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str, float], list[RunRecord]] = {}
    for r in runs:
        groups.setdefault((r.system, r.fault, r.rate), []).append(r)
    for (system, fault, rate), group in groups.items():
        good = [r for r in group if r.correct]
        base = [r.goodput for r in runs if r.system == system and r.rate == 0 and r.correct]
        if not good:
            lines.append(f"| {system} | {fault} | {fault_rate_label(rate)} | 0 of {len(group)} "
                         "| — | — | — | — | — | all failed |")
            continue
        gp = [r.goodput for r in good]
        p99 = [1000 * float(r.latency["p99"]) for r in good if "p99" in r.latency]
        rec = [t for r in good for t in r.recovery_times]
        ratio = f"{statistics.median(gp) / statistics.median(base):.0%}" if base and \
            statistics.median(base) > 0 else "—"
        verdicts = [r.metastability.verdict for r in good if r.metastability is not None]
        lines.append(
            f"| {system} | {fault} | {fault_rate_label(rate)} | {len(good)} of {len(group)} | "
            f"{statistics.median(gp):,.0f} [{min(gp):,.0f} to {max(gp):,.0f}] | {ratio} | "
            + (f"{statistics.median(p99):.1f} [{min(p99):.1f} to {max(p99):.1f}]" if p99 else "—")
            + " | " + (f"{percentile(rec, 0.5):.2f} / {percentile(rec, 0.9):.2f}" if rec else "—")
            + f" | {sum(r.unrecovered for r in good)} | "
            + (", ".join(f"{verdicts.count(v)} {v}" for v in sorted(set(verdicts))) or "—")
            + " |")
    return [*lines, ""]


def _figures(images: dict[str, list[Path]], root: Path) -> list[str]:
    lines = ["## Figures", ""]
    captions = {"throughput": "Throughput over time (first seed), faults shaded",
                "latency": "Latency p50/p99/max over time (first seed)",
                "recovery": "Recovery time after each fault (ECDF per fault kind)",
                "goodput": "Goodput vs fault rate (spread over seeds) beside no faults",
                "p99": "p99 latency vs fault rate"}
    for system, paths in images.items():
        lines += [f"### {system}", ""]
        if not any(p.stem.endswith("-latency") for p in paths):
            lines += [f"{system} reports no latencies, so it has no latency figures.", ""]
        for path in paths:
            if path.suffix != ".png":
                continue
            kind = path.stem.rsplit("-", 1)[-1]
            lines += [f"![{system}: {captions.get(kind, kind)}]({path.relative_to(root)})", ""]
    return lines


def _runs(runs: Sequence[RunRecord]) -> list[str]:
    lines = ["## Every run", "",
             "| run | verdict | goodput | faults fired / planned | p99 (ms) | digest |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        verdict = "ok" if r.correct else "**CORRECTNESS FAILURE**"
        p99 = f"{1000 * float(r.latency['p99']):.1f}" if "p99" in r.latency else "—"
        lines.append(f"| {r.run} | {verdict} | {r.goodput:,.0f} {r.unit}/s | "
                     f"{r.faults_fired} / {r.faults_planned} | {p99} | `{r.trace_digest[:12]}` |")
    return [*lines, ""]


def write_report(runs: Sequence[RunRecord], images: dict[str, list[Path]], root: Path,
                 header: list[str]) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` under ``root``; returns both paths."""
    text = "\n".join([*header, "", *_failures(runs), *_metastability(runs), *_summary(runs),
                      *_figures(images, root), *_runs(runs)])
    md = root / "report.md"
    md.write_text(text, encoding="utf-8")
    html = root / "report.html"
    html.write_text(_html(text, root), encoding="utf-8")
    return md, html


_IMAGE = re.compile(r'src="([^"]+\.png)"')


def _html(text: str, root: Path) -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)

    def inline(match: re.Match[str]) -> str:
        data = base64.b64encode((root / match[1]).read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = _IMAGE.sub(inline, body)
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
             "padding:2px 6px}img{max-width:100%}code{font-size:12px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Shardline fault sweep"
            f"</title><style>{style}</style></head><body>{body}</body></html>\n")
