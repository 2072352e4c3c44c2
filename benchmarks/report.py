"""``results.json`` -> ``RESULTS.md``."""

from __future__ import annotations

import json
from typing import Any

VERDICT = {True: "met", False: "**missed**", None: "-"}
FAILED = "**failed**"


def verdict(figure: dict[str, Any]) -> str:
    """A figure's verdict cell: met, missed, no target, or failed (its measurement raised)."""
    return FAILED if figure.get("error") else VERDICT[figure["met"]]


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | dict):
        return "`" + json.dumps(v) + "`"
    return str(v)


def measured_with(results: dict[str, Any]) -> dict[str, str]:
    """The commit, CPU and GPU of a run, which a figure keeps when a later run refreshes others."""
    return {
        "git": results["versions"].get("git", "?"),
        "cpu": results["machine"]["cpu"],
        "gpu": results.get("gpu", "-"),
    }


def _measured(figure: dict[str, Any], results: dict[str, Any]) -> str | None:
    """When, in which mode and with what a figure was measured, where that is not the header's run."""
    with_ = figure.get("measured_with")
    elsewhere = bool(with_) and with_ != measured_with(results)
    if not figure.get("measured_at") or (figure["measured_at"] == results["date"] and not elsewhere):
        return None
    line = f"(measured {figure['measured_at']}, {figure.get('mode', '?')} mode"
    if elsewhere:
        line += f", git {with_['git']}, CPU {with_['cpu']}, GPU {with_['gpu']}"
    return line + ")"


def render(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        "# geosr benchmarks",
        "",
        f"Written by `make bench` (`python -m benchmarks.run`); last run {results['date']} "
        f"({results['mode']} mode, median of {results['runs']} run(s) per figure"
        + (
            "; it refreshed only some figures, the others carry the date and mode they were measured in"
            if results.get("merged")
            else ""
        )
        + ").",
        "Regenerate with `make bench`; `python -m benchmarks.run --quick --output-dir DIR` for a smoke run, "
        "`--only NAME` for one figure.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']} ({', '.join(m['cpu_flags']) or 'no AVX-512'}); "
        f"{m['logical_cores']} logical cores ({m['affinity_cores']} usable), {m['ram_gib']} GiB RAM",
        f"- OS: {m['os']}, Python {m['python']}",
        f"- GPU: {results.get('gpu', '-')}",
        f"- Load average (1/5/15 min) before: {results['load_before']['loadavg_1_5_15']}, "
        f"after: {results['load_after']['loadavg_1_5_15']}",
    ]
    busy = results.get("busy_before") or []
    if busy:
        lines.append(
            "- Other busy processes when the run started (noise: the machine is shared): " + "; ".join(busy)
        )
    else:
        lines.append("- No other busy process when the run started")
    for when in ("before", "after"):
        c = results.get(f"contention_{when}")
        if c:
            lines.append(
                f"- Contention probe {when} the run (3x3 conv 32->32 on 64x64, ms per call): "
                f"{c['ms_default_threads']:.2f} ms at {c['threads']} torch threads vs "
                f"{c['ms_one_thread']:.2f} ms at 1 thread (ratio {c['ratio']:.1f}; near or below 1 on an "
                "idle machine, far above 1 when other jobs hold the cores and OpenMP threads wait on them)"
            )
    lines.append(f"- Run time of the whole benchmark: {results['duration_s']:.0f} s")
    lines += ["", "## Versions", ""]
    lines += [f"- {k}: {v}" for k, v in results["versions"].items()]
    lines += [
        "",
        "## Summary",
        "",
        "| # | Figure | Result | Target | Verdict |",
        "|---|---|---|---|---|",
    ]
    figures = sorted(results["figures"].values(), key=lambda f: f["number"])
    for f in figures:
        result = f["result"]
        if f.get("mode") and (f.get("mode") != results["mode"] or f.get("measured_at") != results["date"]):
            result += f" ({f['mode']} mode, {f.get('measured_at', '?')})"
        lines.append(
            f"| {f['number']} | {_cell(f['title'])} | {_cell(result)} | {_cell(f['target'])} | {verdict(f)} |"
        )
    lines += ["", "## Details", ""]
    for f in figures:
        lines += [f"### {f['number']}. {f['title']}", ""]
        lines.append(f"**{f['result']}** - target {f['target']}: {verdict(f)}.")
        measured = _measured(f, results)
        if measured:
            lines.append(measured)
        lines.append("")
        for note in f["notes"]:
            lines.append(f"- {note}")
        if f["details"]:
            if f["notes"]:
                lines.append("")
            lines += ["| measurement | value |", "|---|---|"]
            lines += [f"| {_cell(k)} | {_cell(_value(v))} |" for k, v in f["details"].items()]
        lines.append("")
    profile = results.get("profile")
    if profile:
        lines += ["## Where the end-to-end time goes (cProfile, one run)", "", profile["note"], "", "```"]
        lines += profile["top"]
        lines += ["```", ""]
    lines += [
        "## Method",
        "",
        "- Every figure is the median of the runs listed in its details; ratios compare medians of "
        "runs taken in interleaved rounds (end-to-end, model compute, peer loop and cluster run one "
        "after another in each round; geosr bicubic and GDAL likewise), so load from other jobs on "
        "this shared machine lands on both sides.",
        "- Inputs are written to a temporary directory as tiled (512), DEFLATE-compressed uint16 "
        "GeoTIFFs with nodata 0; outputs are COGs (geosr's defaults: ZSTD, predictor, overviews).",
        "- Memory and scaling cases each run in a fresh process (`python -m benchmarks.child`).",
        "",
    ]
    return "\n".join(lines)
