"""One ``geosr.upscale_file`` job in a fresh process, for memory and scaling figures.

``python -m benchmarks.child SRC DST --scale 4 --model bicubic`` runs the job
and prints one JSON line ``{"seconds": ..., "vm_hwm": ...}``: the job alone
(imports excluded) and the process's peak resident set in bytes.  The parent
also polls the memory of the whole process tree around it.
"""

from __future__ import annotations

import argparse
import json
import time
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
    upscale_file(args.src, args.dst, scale=args.scale, model=args.model, overwrite=True, **extra)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "vm_hwm": vm_hwm()}), flush=True)


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


if __name__ == "__main__":
    main()
