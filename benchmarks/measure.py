"""Timing, peak memory of child processes, and a description of the machine."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parent.parent


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def timed(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """``with stopwatch() as t: ...``; ``t[0]`` is the elapsed seconds afterwards."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


@dataclass
class ChildResult:
    """One child process: its own job time, wall time and peak memory."""

    seconds: float  # as reported by the child (the job alone)
    wall: float  # process start to exit, imports included
    peak_rss_sum: int  # bytes: max over polls of the RSS summed over the process tree
    vm_hwm: int  # bytes: the child's own VmHWM (kernel high-water mark, exact, one process)
    samples: int
    stdout: str = field(repr=False, default="")
    heap: dict[str, int] | None = None  # glibc heap peaks, see benchmarks.child.HeapPeaks

    @property
    def peak(self) -> int:
        return max(self.peak_rss_sum, self.vm_hwm)


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total


def run_child(
    args: Sequence[str],
    *,
    poll_s: float = 0.02,
    timeout_s: float = 1800,
    env: Mapping[str, str] | None = None,
) -> ChildResult:
    """Run ``python -m benchmarks.child ARGS`` in a fresh process and measure it.

    Peak memory is taken two ways: psutil polling of the RSS summed over the
    child and all its descendants (every ``poll_s``; may miss a short spike),
    and the child's own ``VmHWM`` (the kernel's exact high-water mark, but for
    that one process).  :attr:`ChildResult.peak` is the larger.  (``ru_maxrss``
    from ``wait4`` is not used: after ``fork`` it includes the parent's own
    footprint, which for this harness is the size of a loaded torch.)
    """
    cmd = [sys.executable, "-m", "benchmarks.child", *args]
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), child_env.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=child_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    ps = psutil.Process(proc.pid)
    peak = 0
    samples = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak, samples
        while not stop.is_set():
            peak = max(peak, _tree_rss(ps))
            samples += 1
            stop.wait(poll_s)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out_chunks: list[str] = []
    err_chunks: list[str] = []
    readers = [
        threading.Thread(target=lambda: out_chunks.append(proc.stdout.read() if proc.stdout else "")),
        threading.Thread(target=lambda: err_chunks.append(proc.stderr.read() if proc.stderr else "")),
    ]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status = os.waitpid(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            pid, status = os.waitpid(proc.pid, 0)
            break
        time.sleep(0.01)
    wall = time.perf_counter() - start
    stop.set()
    poller.join()
    for t in readers:
        t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    stdout, stderr = "".join(out_chunks), "".join(err_chunks)
    if proc.returncode != 0:
        raise RuntimeError(f"child {' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    last = [line for line in stdout.splitlines() if line.startswith("{")][-1]
    report = json.loads(last)
    return ChildResult(
        float(report["seconds"]),
        wall,
        peak,
        int(report.get("vm_hwm", 0)),
        samples,
        stdout,
        report.get("heap"),
    )


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def cpu_flags() -> list[str]:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni"]
                return [f for f in wanted if f in flags]
    return []


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, and the load when asked (other jobs make noise)."""
    vm = psutil.virtual_memory()
    return {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cores": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "affinity_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "ram_gib": round(vm.total / 2**30, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def load() -> dict[str, Any]:
    one, five, fifteen = os.getloadavg()
    return {
        "loadavg_1_5_15": [round(one, 2), round(five, 2), round(fifteen, 2)],
        "ram_available_gib": round(psutil.virtual_memory().available / 2**30, 1),
    }


def busy_processes(threshold: float = 20.0, interval: float = 1.0) -> list[str]:
    """Other processes using more than ``threshold`` % of a core right now (noise sources)."""
    me = os.getpid()
    procs = [p for p in psutil.process_iter(["pid", "name"]) if p.info["pid"] != me]
    for p in procs:
        with contextlib.suppress(psutil.Error):
            p.cpu_percent(None)
    time.sleep(interval)
    busy = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pct = p.cpu_percent(None)
            if pct >= threshold:
                busy.append(f"{p.info['name']} (pid {p.info['pid']}): {pct:.0f} % CPU")
    return busy


def versions() -> dict[str, str]:
    import numpy
    import rasterio
    import torch

    import geosr

    out = {
        "geosr": geosr.__version__,
        "torch": torch.__version__,
        "torch_threads": str(torch.get_num_threads()),
        "numpy": numpy.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
    }
    with contextlib.suppress(ImportError):
        import rio_cogeo

        out["rio-cogeo"] = rio_cogeo.__version__
    with contextlib.suppress(subprocess.SubprocessError, OSError):
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        out["git"] = rev + (" (with uncommitted changes)" if dirty else "")
    return out
