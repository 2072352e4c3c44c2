"""Hostile and malformed input: every case of a generated corpus (>= 30 files) ends in one
clear error line naming the file, or in a correct output; never a hang, an interpreter
crash, or memory beyond the documented bound.

The cases run one after another in a child process whose address space is capped
(``RLIMIT_AS``: what it holds after importing geosr and torch, plus
:data:`MEMORY_BOUND`), with a per-case watchdog (``faulthandler``) that kills the
child if a case hangs, and a SIGSEGV/abort is seen as the child dying mid-case.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.malformed import build_corpus

pytestmark = pytest.mark.slow

MEMORY_BOUND = 2 * 2**30
"""Address space a case may add to the child (bytes): far above a run's formula, far below a giant read."""

CASE_SECONDS = 60

CHILD = r"""
import faulthandler, json, resource, sys
from pathlib import Path
import geosr, geosr.api, geosr.io.cog, geosr.io.zarr_store, geosr.io.zarr_scene, rasterio
from rio_cogeo.cogeo import cog_validate
from geosr.errors import GeosrError
from geosr.resources import _address_space

bound, seconds, out_dir = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
resource.setrlimit(resource.RLIMIT_AS, (_address_space() + bound, resource.RLIM_INFINITY))
for name, path in json.loads(sys.stdin.read()):
    print(json.dumps({"start": name}), flush=True)
    faulthandler.dump_traceback_later(seconds, exit=True)  # a hang kills the child, the parent sees it
    dst = out_dir / (name.replace(".", "_") + "_x2.tif")
    try:
        out = geosr.upscale_file(path, dst, scale=2, model="bicubic")
        with rasterio.open(path) as src, rasterio.open(out) as result:
            shape = (result.count, result.height, result.width)
            shape_ok = shape == (src.count, 2 * src.height, 2 * src.width)
        valid, errors, _ = cog_validate(str(out), quiet=True)
        outcome = {"ok": bool(shape_ok and valid and not errors), "detail": errors}
    except GeosrError as exc:
        outcome = {"error": str(exc)}
    except BaseException as exc:  # a bug: anything not a GeosrError
        outcome = {"bug": f"{type(exc).__name__}: {exc}"}
    faulthandler.cancel_dump_traceback_later()
    leftovers = sorted(p.name for p in out_dir.iterdir() if p.name.startswith("."))
    print(json.dumps({"name": name, "leftovers": leftovers, **outcome}), flush=True)
"""


def test_malformed_corpus_gives_clear_errors_or_correct_outputs(tmp_path: Path) -> None:
    cases = build_corpus(tmp_path / "corpus")
    assert len(cases) >= 30
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    child = subprocess.run(
        [sys.executable, "-c", CHILD, str(MEMORY_BOUND), str(CASE_SECONDS), str(out_dir)],
        input=json.dumps([[name, str(path)] for name, path in cases.items()]),
        capture_output=True,
        text=True,
        timeout=CASE_SECONDS * len(cases),
        check=False,
    )
    records = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    started = [r["start"] for r in records if "start" in r]
    results = {r["name"]: r for r in records if "name" in r}
    if len(results) < len(cases):
        dying = started[-1] if started else "before the first case"
        pytest.fail(
            f"the child died (status {child.returncode}) on {dying}: hang, crash or memory; "
            f"stderr: {child.stderr[-2000:]}"
        )
    problems = []
    for name, result in results.items():
        if "bug" in result:
            problems.append(f"{name}: not a GeosrError: {result['bug']}")
        elif "error" in result:
            message = result["error"]
            if "\n" in message or name not in message:
                problems.append(f"{name}: message is not one line naming the file: {message!r}")
        elif not result["ok"]:
            problems.append(f"{name}: output is not a correct COG: {result['detail']}")
        if result["leftovers"]:
            problems.append(f"{name}: left {result['leftovers']}")
    assert not problems, "\n".join(problems)
    # The corpus does exercise both ends: most cases are refused, a few are usable.
    outcomes = {name: "error" if "error" in r else "ok" for name, r in results.items()}
    assert sum(o == "error" for o in outcomes.values()) >= 25, outcomes
    assert outcomes["rotated.tif"] == "ok" and outcomes["nan_and_inf.tif"] == "ok", outcomes
