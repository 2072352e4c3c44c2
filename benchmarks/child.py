"""One ``geosr.upscale_file`` job in a fresh process, for memory and scaling figures.

``python -m benchmarks.child SRC DST --scale 4 --model bicubic`` runs the job
and prints one JSON line ``{"seconds": ..., "vm_hwm": ..., "heap": ...}``: the
job alone (imports excluded), the process's peak resident set in bytes, and
where glibc's allocator reports it (``mallinfo2``), the peak of its heap and of
the bytes live in it, sampled every 10 ms: the difference is freed memory the
allocator keeps (``geosr.allocator`` tells it never to return any).  The parent
also polls the memory of the whole process tree around it.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import threading
import time
from collections.abc import Callable
from typing import Any


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.child")
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--model", default=None)
    parser.add_argument("--tile", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--option", action="append", default=[], help="extra KEY=VALUE (int if it parses)")
    args = parser.parse_args(argv)

    # Resolve the lazy attribute (it imports torch and the pipeline) before the clock starts.
    from rio_cogeo.cogeo import cog_validate  # geosr imports its COG validator lazily

    from geosr.api import upscale_file
    from geosr.models import load_model

    extra: dict[str, Any] = {}
    for item in args.option:
        key, _, value = item.partition("=")
        extra[key] = int(value) if value.lstrip("-").isdigit() else value
    if args.tile is not None:
        extra["tile"] = args.tile
    if args.batch_size is not None:
        extra["batch_size"] = args.batch_size
    start = time.perf_counter()
    del load_model, cog_validate  # imported only so that import time is not counted
    with HeapPeaks() as heap:
        upscale_file(args.src, args.dst, scale=args.scale, model=args.model, overwrite=True, **extra)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "vm_hwm": vm_hwm(), "heap": heap.report()}), flush=True)


def vm_hwm() -> int:
    """This process's peak resident set (bytes), from ``/proc/self/status`` (0 where absent).

    Unlike ``ru_maxrss`` seen by the parent, it starts afresh at ``exec`` and
    so does not include the parent's footprint at ``fork``.
    """
    try:
        with open("/proc/self/status") as status:  # noqa: PTH123
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mallinfo2() -> Callable[[], _MallInfo2] | None:
    """glibc's ``mallinfo2`` (2.33+), or None elsewhere."""
    from geosr.allocator import libc_function

    func = libc_function("mallinfo2")
    if func is not None:
        func.restype = _MallInfo2
    return func


class HeapPeaks:
    """Peak size of glibc's heap (main arena + mmapped chunks) and of the bytes live in it."""

    def __init__(self, every_s: float = 0.01) -> None:
        self._info = _mallinfo2()
        self._every = every_s
        self._stop = threading.Event()
        self.heap = self.live = 0

    def _sample(self) -> None:
        assert self._info is not None
        info = self._info()
        self.heap = max(self.heap, info.arena + info.hblkhd)
        self.live = max(self.live, info.uordblks + info.hblkhd)

    def _poll(self) -> None:
        while not self._stop.wait(self._every):
            self._sample()

    def __enter__(self) -> HeapPeaks:
        if self._info is not None:
            self._sample()
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._info is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def report(self) -> dict[str, int] | None:
        return None if self._info is None else {"peak_heap": self.heap, "peak_live": self.live}


if __name__ == "__main__":
    main()
