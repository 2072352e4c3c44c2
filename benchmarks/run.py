"""Run the geosr benchmarks and write ``benchmarks/RESULTS.md`` and ``benchmarks/results.json``.

Usage::

    python -m benchmarks.run                 # all figures, median of 3 runs (make bench)
    python -m benchmarks.run --quick --output-dir /tmp/bench  # median of 1 run, smaller scenes (~3 minutes)
    python -m benchmarks.run --only peer     # one figure (repeatable), merged into the results
    python -m benchmarks.run --profile       # also profile one end-to-end run (cProfile)

Figures: throughput, overhead, peak, peer, memory, scaling, cluster, gdal, gpu, compile, archive, bands,
nodata, neighbour, estimate.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime as dt
import io
import json
import logging
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import figures
from benchmarks.measure import busy_processes, load, machine, versions
from benchmarks.report import measured_with, render
from benchmarks.scenes import data_dir

HERE = Path(__file__).resolve().parent


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run per figure and smaller scenes")
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only this figure (repeatable or comma-separated): {', '.join(figures.FIGURES)}",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per figure (default 3, --quick 1)")
    parser.add_argument("--output-dir", type=Path, default=HERE, help="where RESULTS.md and results.json go")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch directory (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--profile", action="store_true", help="also cProfile one end-to-end run")
    args = parser.parse_args(argv)
    only = [name for item in args.only for name in item.split(",") if name]
    unknown = [n for n in only if n not in figures.FIGURES]
    if unknown:
        parser.error(f"unknown figure(s) {', '.join(unknown)}; known: {', '.join(figures.FIGURES)}")
    args.only = only
    if args.quick and not only and _holds_full_results(args.output_dir):
        parser.error(
            f"--quick would replace the full-mode results in {args.output_dir / 'results.json'}; "
            "give a smoke run its own --output-dir"
        )
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    return args


def _holds_full_results(output_dir: Path) -> bool:
    """Whether ``output_dir`` holds a full run's results (the committed ones, by default)."""
    try:
        return json.loads((output_dir / "results.json").read_text()).get("mode") == "full"
    except (OSError, ValueError):
        return False


def _profile(ctx: figures.Context) -> dict[str, Any]:
    """One end-to-end run of the default model under cProfile (main thread only)."""
    import geosr

    scene = ctx.s2()
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    geosr.upscale_file(scene.path, ctx.out("profile_x4.tif"), scale=figures.SCALE, overwrite=True)
    profiler.disable()
    seconds = time.perf_counter() - start
    top: list[str] = []
    for key, title in (("cumulative", "by cumulative time"), ("tottime", "by own time")):
        buf = io.StringIO()
        stats = pstats.Stats(profiler, stream=buf).strip_dirs().sort_stats(key)
        stats.print_stats(18)
        body = [line for line in buf.getvalue().splitlines() if line.strip()]
        start_at = next((i for i, line in enumerate(body) if line.lstrip().startswith("ncalls")), 0)
        top += [f"-- {title} --", *body[start_at:]]
    return {
        "seconds": round(seconds, 2),
        "note": (
            f"`geosr.upscale_file` on the {scene.size}^2 scene, default model, x{figures.SCALE}: "
            f"{seconds:.1f} s under the profiler. cProfile sees the main thread only; reads run in the "
            "pipeline's read-ahead thread and show up here only as waits."
        ),
        "top": top,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    # Said once in figure 1's notes rather than on every model load.
    logging.getLogger("geosr.models.registry").setLevel(logging.ERROR)
    names = args.only or list(figures.FIGURES)
    sizes = figures.QUICK if args.quick else figures.FULL
    started = time.perf_counter()
    date = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="geosr-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    _log(f"geosr benchmarks ({'quick' if args.quick else 'full'}, {args.runs} run(s)) in {workdir}")
    _log(f"data: {data_dir()}")
    busy = busy_processes()
    if busy:
        _log("other busy processes (expect noise): " + "; ".join(busy))
    load_before = load()
    from benchmarks.baselines import contention

    contention_before = contention()
    _log(f"contention probe: {contention_before}")
    ctx = figures.Context(
        workdir,
        args.runs,
        sizes,
        args.quick,
        _log,
        want=set(names),
        peer_budget_s=90.0 if args.quick else 240.0,
    )
    results: dict[str, figures.Figure] = {}
    profile = None
    try:
        for name in names:
            _log(f"figure: {name}")
            number = list(figures.FIGURES).index(name) + 1
            try:
                fig = figures.FIGURES[name](ctx)
            except Exception as exc:  # a broken figure must not hide the others
                fig = figures.failed(name, number, exc)
            results[name] = fig
            verdict = "FAILED" if fig.error else {True: "met", False: "MISSED", None: "-"}[fig.met]
            _log(f"  -> {fig.result} [target {fig.target}: {verdict}]")
        if args.profile:
            _log("profiling one end-to-end run")
            profile = _profile(ctx)
    finally:
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    import torch

    out = {
        "date": date,
        "mode": "quick" if args.quick else "full",
        "runs": args.runs,
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks.run", *(argv or sys.argv[1:])]),
        "duration_s": round(time.perf_counter() - started, 1),
        "machine": machine(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none",
        "versions": versions(),
        "data_dir": str(data_dir()),
        "load_before": load_before,
        "load_after": load(),
        "busy_before": busy,
        "contention_before": contention_before,
        "contention_after": contention(),
        "figures": {},
    }
    json_path = args.output_dir / "results.json"
    if args.only and json_path.exists():
        previous = json.loads(json_path.read_text())
        out["figures"] = previous.get("figures", {})
        out["merged"] = True
        if profile is None and "profile" in previous:
            out["profile"] = previous["profile"]
    for name, fig in results.items():
        # A later --only run rewrites the machine and versions above: each figure keeps its own.
        out["figures"][name] = {
            **fig.to_json(),
            "measured_at": date,
            "mode": out["mode"],
            "measured_with": measured_with(out),
        }
    if profile is not None:
        out["profile"] = profile
    args.output_dir.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    (args.output_dir / "RESULTS.md").write_text(render(out))
    _log(f"wrote {args.output_dir / 'RESULTS.md'} and {json_path} in {out['duration_s']:.0f} s")
    failures = [name for name, fig in results.items() if fig.error]
    if failures:
        # The other figures are kept, but a run with a broken figure is not a result
        # (make bench, a CI job or a script must see it).
        _log(f"failed figure(s): {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
