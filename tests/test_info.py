"""`geosr info`: the scene and the plan of a run, before running it."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

from geosr.cli import main
from geosr.inspect import plan_run
from geosr.options import RunOptions


def test_plan_describes_scene_and_run(make_raster) -> None:
    src = make_raster(count=3, height=300, width=200, dtype="uint8", nodata=0, descriptions=("R", "G", "B"))
    plan = plan_run(src, RunOptions(scale=4, model="bicubic", tile=128, batch_size=2))
    rows = dict(plan.lines())
    assert rows["bands"].startswith("3 x uint8") and "R, G, B" in rows["bands"]
    assert rows["nodata"] == "0"
    assert "800 x 1200 px" in rows["output grid"]
    assert len(plan.plan) == 6 and "halo" in rows["tiles"]
    # Width x height everywhere, as the grid lines (the tiles line had height x width).
    small = dict(plan_run(make_raster("small.tif", height=90, width=70), RunOptions(model="bicubic")).lines())
    assert small["grid"].startswith("70 x 90 px") and small["tiles"].startswith("1 of 70 x 90 px")
    assert plan.output_bytes == 3 * 1200 * 800
    assert plan.estimated_seconds is not None and plan.estimated_seconds > 0
    # The disk a COG run needs: its store with overviews, and as much again for the COG build.
    assert "disk about 7.3 MiB for a COG" in " ".join(rows["resources"].split())


def test_info_cli(make_raster, capsys, monkeypatch) -> None:
    src = make_raster()
    monkeypatch.setattr(sys, "argv", ["geosr", "info", str(src), "--model", "bicubic", "--no-calibrate"])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    out = capsys.readouterr().out
    assert "EPSG" in out or "32633" in out
    assert not list(Path(src).parent.glob("*_x*"))


def test_info_on_a_scene_whose_first_tiles_are_all_nan_says_no_numpy_warning(make_raster) -> None:
    """The calibration batch is the scene's first tiles; all NaN there must not leak
    numpy's "All-NaN slice encountered" to the user (the CLI prints every warning)."""
    data = np.random.default_rng(0).random((1, 200, 200)).astype("float32")
    data[:, :120, :120] = np.nan
    src = make_raster(data=data, nodata=float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        plan = plan_run(src, RunOptions(scale=2, model="bicubic", tile=64, batch_size=1))
    assert plan.estimated_seconds is not None
