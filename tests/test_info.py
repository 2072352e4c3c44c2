"""`geosr info`: the scene and the plan of a run, before running it."""

from __future__ import annotations

import dataclasses
import json
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geosr.api import upscale_file
from geosr.cli import main
from geosr.errors import InputError
from geosr.inspect import Timing, plan_run
from geosr.io.atomic import format_bytes
from geosr.options import RunOptions
from geosr.resources import writer_threads
from tests.conftest import UTM_TRANSFORM, coordinate_pattern, sparse_giant


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
    assert small["output size"] == "196.9 KiB uncompressed"  # was '0.2 MiB' (and 100 x 80 px '0.0 MiB')
    assert plan.output_bytes == 3 * 1200 * 800
    assert plan.estimated_seconds is not None and plan.estimated_seconds > 0
    # The disk a COG run needs: its store with overviews, and as much again for the COG build.
    assert "disk about 7.3 MiB for a ZSTD COG" in " ".join(rows["resources"].split())


def test_info_says_a_float_output_declares_nan(make_raster) -> None:
    """A float scene without nodata gets NaN declared on its output (Scene.output_nodata);
    info's nodata line said only 'none'."""
    src = make_raster(dtype="float32")
    rows = dict(plan_run(src, RunOptions(model="bicubic"), calibrate=False).lines())
    assert rows["nodata"] == "none; the output declares nan, which it writes where the input is NaN"
    ints = dict(plan_run(make_raster("ints.tif"), RunOptions(model="bicubic"), calibrate=False).lines())
    assert ints["nodata"] == "none"


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


def test_info_takes_a_glob_of_one_input_and_refuses_one_of_several(make_raster, capsys, monkeypatch) -> None:
    """geosr info 'archive/*.tif' (a glob, as geosr run takes) said 'no such file'."""
    a = make_raster("a.tif", height=20, width=20)
    make_raster("b.tif", height=20, width=20)
    monkeypatch.chdir(a.parent)  # short names: a long path is folded over two lines

    def info(*patterns: str) -> tuple[int, str, str]:
        code, captured = _geosr(
            monkeypatch, capsys, "info", *patterns, "--model", "bicubic", "--no-calibrate"
        )
        return code, captured.out, captured.err

    code, out, _ = info("a*.tif")
    assert code == 0 and out.split()[:2] == ["input", "a.tif"]
    code, out, err = info("*.tif")
    assert code and not out
    assert (
        err.strip()
        == "error: *.tif: matches 2 inputs (a.tif, b.tif); geosr info describes one: give one of them"
    )
    # Two of them, or the glob unquoted (the shell's): click's 'Got unexpected extra argument(s) (b.tif)'.
    code, out, err = info("a.tif", "b.tif")
    assert code and not out
    assert err.strip() == "error: given 2 inputs (a.tif, b.tif); geosr info describes one: give one of them"


def test_info_piped_prints_each_value_whole_on_its_line(make_raster, tmp_path: Path) -> None:
    """``geosr info scene.tif | cat`` folded the values at 80 columns, a path mid-name
    ('.../2020.ti' over 'f'), which a log could not give back: piped (a real pipe, and
    CliRunner's stdout), each value is now on its line, whole, as gdalinfo prints it; on a
    terminal (a pseudo-terminal of 80 columns) it is folded to the terminal's width as before."""
    import os
    import pty
    import subprocess

    from typer.testing import CliRunner

    from geosr.cli import app

    src = make_raster("LC08_L2SP_006066_20200712_20200912_02_T1_SR_B4_a_name_as_long_as_an_archive_has.tif")
    args = ["info", str(src), "--model", "bicubic", "--no-calibrate"]
    command = [sys.executable, "-m", "geosr", *args]
    leader, follower = pty.openpty()
    try:
        terminal = subprocess.Popen(
            command, stdout=follower, stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"}
        )
    finally:
        os.close(follower)
    piped = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    shown = b""
    while chunk := _read_or_none(leader):
        shown += chunk
    os.close(leader)
    assert terminal.wait(timeout=120) == 0, terminal.stderr
    assert piped.returncode == 0, piped.stderr
    lines = dict(line.split(maxsplit=1) for line in piped.stdout.splitlines() if line.startswith(" input"))
    assert lines == {"input": str(src)}
    assert "resources" in piped.stdout and len(piped.stdout.splitlines()) == len(dict(plan_lines(src)))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    # The memory figures (Python's own) vary between the processes.
    assert re.sub(r"[\d.]+ [KMG]iB", "", result.output) == re.sub(r"[\d.]+ [KMG]iB", "", piped.stdout)
    on_terminal = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode()).splitlines()
    assert max(len(line) for line in on_terminal) <= 80
    assert str(src) not in "".join(on_terminal) and str(src) in "".join(line.strip() for line in on_terminal)


def _read_or_none(fd: int) -> bytes | None:
    """What a pseudo-terminal's leader reads, or None once its follower has closed (EIO)."""
    import os

    try:
        return os.read(fd, 1 << 16) or None
    except OSError:
        return None


def plan_lines(src: Path) -> list[tuple[str, str]]:
    """The lines geosr info prints of ``src`` with bicubic, uncalibrated."""
    return list(plan_run(src, RunOptions(model="bicubic"), calibrate=False).lines())


def test_info_on_a_scene_whose_first_tiles_are_all_nan_says_no_numpy_warning(make_raster) -> None:
    """The calibration batch (from the middle of the plan) may be all NaN: that must not leak
    numpy's "All-NaN slice encountered" to the user (the CLI prints every warning)."""
    data = np.random.default_rng(0).random((1, 200, 200)).astype("float32")
    data[:, :160] = data[:, :, :160] = np.nan  # valid in the bottom-right corner only
    src = make_raster(data=data, nodata=float("nan"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        plan = plan_run(src, RunOptions(scale=2, model="bicubic", tile=64, batch_size=1))
    assert plan.estimated_seconds is not None


def test_info_warns_of_a_band_without_a_valid_pixel_as_the_run_does(make_raster) -> None:
    """An OLCI crop whose second date is all NaN: geosr run warned 'band 2 has no valid pixel',
    geosr info said only 'valid pixels 100 %' (a pixel valid in some band)."""
    data = np.random.default_rng(1).random((2, 48, 40)).astype("float32")
    data[1] = np.nan
    src = make_raster(data=data, nodata=float("nan"))
    line = "band 2 has no valid pixel (everything is nodata or NaN); its output is nodata"
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        plan = plan_run(src, RunOptions(scale=2, model="bicubic"))
    assert [str(w.message) for w in said if line in str(w.message)] == [
        f"{src}: {line} wherever its input is"
    ], [str(w.message) for w in said]
    assert dict(plan.lines())["valid pixels"] == "100 % (a strided sample)"
    with pytest.warns(Warning, match=re.escape(line)):  # the run's own line, word for word
        upscale_file(src, src.with_name("x2.tif"), scale=2, model="bicubic")


def test_grid_line_names_a_compound_crs_and_a_proj_string(make_raster) -> None:
    """A compound CRS of two EPSG codes was 'WGS 84 / UTM zone 33N + EGM96 height' (WKT, no EPSG
    code), and a CRS given as a PROJ string 'unknown' (WKT, no EPSG code), as if it had none."""
    laea = "+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"
    for name, crs, label in (
        ("compound.tif", "EPSG:32633+5773", "EPSG:32633+5773"),
        ("laea.tif", laea, f"{laea} (PROJ string, no EPSG code)"),
        # A local CRS of no name has no PROJ string either: its name (crs_label raised CRSError).
        ("site.tif", 'LOCAL_CS["unknown",UNIT["metre",1]]', "'unknown' (WKT, no EPSG code)"),
    ):
        rows = dict(
            plan_run(make_raster(name, crs=crs), RunOptions(model="bicubic"), calibrate=False).lines()
        )
        assert rows["grid"] == f"91 x 67 px, CRS {label}, pixel 10 x 10"


def test_grid_line_names_a_wkt_crs_and_says_when_the_grid_is_rotated(make_raster) -> None:
    # A CRS without an EPSG code was printed as its WKT, cut off over three lines; a
    # rotated grid was given pixel sizes as if it were north-up.
    wkt = (
        'PROJCS["custom tm",GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",6378137,298.257223563]],'
        'PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]],PROJECTION["Transverse_Mercator"],'
        'PARAMETER["latitude_of_origin",0],PARAMETER["central_meridian",14.1],PARAMETER["scale_factor",0.9996],'
        'PARAMETER["false_easting",500000],PARAMETER["false_northing",0],UNIT["metre",1]]'
    )
    custom = dict(
        plan_run(make_raster("wkt.tif", crs=wkt), RunOptions(model="bicubic"), calibrate=False).lines()
    )
    assert custom["grid"] == "91 x 67 px, CRS 'custom tm' (WKT, no EPSG code), pixel 10 x 10"
    esri = dict(
        plan_run(
            make_raster("esri.tif", crs="ESRI:54009"), RunOptions(model="bicubic"), calibrate=False
        ).lines()
    )
    assert esri["grid"] == "91 x 67 px, CRS ESRI:54009 (World_Mollweide), pixel 10 x 10"
    rotated = make_raster("rot.tif", transform=Affine(6.0, 8.0, 500000.0, 8.0, -6.0, 5800000.0))
    rows = dict(plan_run(rotated, RunOptions(model="bicubic", scale=2), calibrate=False).lines())
    assert rows["grid"] == "91 x 67 px, CRS EPSG:32633, pixel 10 x 10, rotated or sheared"
    assert rows["output grid"] == "182 x 134 px, CRS EPSG:32633, pixel 5 x 5, rotated or sheared"


def test_info_gives_the_valid_share_and_says_when_a_run_would_refuse(make_raster) -> None:
    # An all-nodata scene got a full plan and a time estimate from geosr info, while
    # geosr run refused it ("every pixel is nodata; nothing to super-resolve").
    data = np.zeros((1, 40, 60), "uint16")
    data[:, :, :15] = 7  # a quarter of the pixels valid
    quarter = dict(plan_run(make_raster(data=data, nodata=0), RunOptions(model="bicubic")).lines())
    assert quarter["valid pixels"] == "25 % (a strided sample)"
    empty = make_raster("empty.tif", data=np.zeros((1, 40, 60), "uint16"), nodata=0)
    rows = dict(plan_run(empty, RunOptions(model="bicubic")).lines())
    assert rows["valid pixels"].startswith("none: geosr run refuses this scene; check the nodata value")
    assert "valid pixels" not in dict(plan_run(empty, RunOptions(model="bicubic"), calibrate=False).lines())


def test_info_says_a_few_valid_pixels_where_only_the_whole_files_sample_sees_them(
    make_raster, tmp_path: Path, monkeypatch, capsys
) -> None:
    """A --bbox window of 1100 x 1100 px (a sample of every 2nd pixel) from row 1, of a file whose
    only valid pixels are its row 500: the window's sample (rows 1, 3, ...) sees none, the whole
    file's (rows 0, 2, ...) sees them, so geosr run goes ahead, and geosr info says so in words
    ("a few"), not "none" nor "0 %"."""
    data = np.zeros((1, 1500, 1500), "uint16")
    data[:, 500, :] = 900
    src = make_raster("line.tif", data=data, nodata=0)
    (x0, y1), (x1, y0) = UTM_TRANSFORM @ (1, 1), UTM_TRANSFORM @ (1101, 1101)
    box = ["--bbox", f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}", "--bbox-crs", "EPSG:32633"]
    args = ["info", str(src), "-s", "2", "-m", "bicubic", *box]
    code, captured = _geosr(monkeypatch, capsys, *args)
    assert code == 0, captured.err
    lines = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in captured.out.splitlines())
    assert lines["valid pixels"] == "a few, too few for a strided sample to count"
    assert lines["area of interest"].startswith("cols 1-1100, rows 1-1100 (1100 x 1100 px)")
    assert captured.err == ""
    code, captured = _geosr(monkeypatch, capsys, *args, "--json")
    assert json.loads(captured.out)["refused"] is False
    out = upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic", bbox=box[1], bbox_crs=box[3])
    with rasterio.open(out) as f:
        assert (f.read(1)[998:1000] == 900).all()  # row 500 of the file, 499 of the window, x2


def test_info_says_bigtiff_exactly_when_the_cog_is_one(tmp_path: Path) -> None:
    """Before, info said '(BigTIFF)' only above 4 GiB of output, while the writer makes a
    BigTIFF from 2.625 GiB (3.5 GiB with overviews; and GDAL's IF_SAFER below that from
    about 2 GiB): a 2-band uint16 8192^2 scene at x4 (4.00 GiB) gave a BigTIFF COG that info
    called a plain one."""

    src = tmp_path / "sparse.tif"
    profile = {"driver": "GTiff", "width": 8192, "height": 6144, "count": 2, "dtype": "uint16", "tiled": True}
    grid = {"crs": "EPSG:32633", "transform": Affine(10, 0, 0, 0, -10, 0)}
    with rasterio.open(src, "w", **profile, **grid, sparse_ok=True) as dst:
        dst.write(np.ones((2, 512, 512), "uint16"), window=((0, 512), (0, 512)))
    plan = plan_run(src, RunOptions(scale=4, model="bicubic"), calibrate=False)
    assert plan.output_bytes == 2 * 8192 * 6144 * 16 * 2  # 3 GiB: 4 GiB with its overviews
    assert "(BigTIFF)" in dict(plan.lines())["output size"]
    # 2 GiB: a classic TIFF, as GDAL is told (BIGTIFF=NO), unless LZW can take it past 4 GiB.
    single = tmp_path / "single.tif"
    with rasterio.open(single, "w", **{**profile, "count": 1, "height": 8192}, **grid, sparse_ok=True) as dst:
        dst.write(np.ones((1, 512, 512), "uint16"), window=((0, 512), (0, 512)))
    for compress, bigtiff in [("zstd", False), ("deflate", False), ("lzw", True), ("none", False)]:
        options = RunOptions(scale=4, model="bicubic", compress=compress)
        line = dict(plan_run(single, options, calibrate=False).lines())["output size"]
        assert line == "2.00 GiB uncompressed" + " (BigTIFF)" * bigtiff, compress


def test_estimated_time_is_the_runs_not_the_models_alone(make_raster, monkeypatch) -> None:
    """The estimate was one model batch times the batches: the reading, the run store and the
    COG build (compression and overviews) were left out, and with the bicubic model a run
    took 7-8x the estimate.  Now a batch and a sample of the output go through the run's own
    code, each part timed, and the estimate adds them up as a run on a CPU spends them.  Not
    compared with a timed run: on a busy machine that failed 2 runs in 5 (speed is the
    benchmarks' to measure)."""
    import geosr.inspect

    built = []  # the output shapes info's COG builds were timed on
    finalise = geosr.inspect.finalise

    def building(store, cog, spec, **kwargs):  # type: ignore[no-untyped-def]
        built.append(spec.grid.shape.yx)
        return finalise(store, cog, spec, **kwargs)

    monkeypatch.setattr(geosr.inspect, "finalise", building)
    # One tile of 512 at x4: a 2048^2 output, which the COG build is timed on whole.
    src = make_raster(height=512, width=512, dtype="float32")
    plan = plan_run(src, RunOptions(scale=4, model="bicubic", device="cpu"))
    t = plan.timing
    assert t is not None and not t.overlapped  # on a CPU the model's threads add to the I/O
    assert min(t.sample, t.read, t.model, t.store, t.cog) > 0, t  # each part measured
    assert (2048, 2048) in built, built
    # The model alone was the old estimate; the writes overlap the reading, not the model.
    assert plan.estimated_seconds >= t.sample + t.model_seconds + t.store / writer_threads() + t.cog, t
    line = dict(plan.lines())["estimated time"]
    parts = ("for a ZSTD COG", "model", "reading", "run store", "COG build")
    assert all(part in line for part in parts), line


def test_info_says_when_the_run_would_not_fit_on_disk(make_raster, tmp_path: Path) -> None:
    """geosr info planned a 1,000,000^2 scene (a sparse file: its tile index alone) as
    fine, 'disk about 29 TiB for a COG', though geosr run refuses it for lack of disk."""
    src = tmp_path / "huge.tif"
    sparse_giant(src)
    lines = dict(plan_run(src, RunOptions(model="bicubic", tile=8192), calibrate=False).lines())
    assert f"free in {tmp_path} (write elsewhere with -o): geosr run would refuse it" in lines["resources"]
    small = dict(plan_run(make_raster(), RunOptions(model="bicubic"), calibrate=False).lines())
    assert "refuse" not in small["resources"]


def test_estimate_times_the_model_on_tiles_with_data(make_raster, tmp_path: Path, monkeypatch) -> None:
    """The timed batch was the plan's middle one: where that held no valid pixel, the model
    skipped it, and the estimate counted the model at nothing for every batch of the run."""
    from geosr.predictor import Predictor
    from tests.test_run import random_model_file

    # The tiles each model call gets (not its time, which on a busy machine is another's to judge).
    tiles: list[int] = []
    call = Predictor.__call__

    def counting(self, batch):  # type: ignore[no-untyped-def]
        tiles.append(len(batch))
        return call(self, batch)

    monkeypatch.setattr(Predictor, "__call__", counting)
    weights = random_model_file(tmp_path, scale=2)
    data = np.random.default_rng(0).random((1, 384, 384)).astype("float32")
    full = make_raster("full.tif", data=data, nodata=float("nan"))
    data[:, 128:256] = np.nan  # the middle row of tiles is nodata
    banded = make_raster("banded.tif", data=data, nodata=float("nan"))
    options = RunOptions(scale=2, model=str(weights), tile=128, batch_size=3, device="cpu", precision="fp32")
    half = plan_run(banded, options).timing
    assert half is not None and (half.batches, half.model_batches) == (3, 2)  # 6 tiles hold data, in 2 of 3
    # The batch as warm-up (the timed calls' shapes: oneDNN picks kernels per shape), then timed.
    assert tiles == [3, 3], tiles
    whole = plan_run(full, options).timing
    assert whole is not None and (whole.batches, whole.model_batches) == (3, 3)


def test_estimate_times_a_batch_on_a_lanes_share_of_the_threads(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """A run on a CPU computes 2 lanes at once, each on half of torch's threads; info timed a batch
    on all of them and counted every batch after another: 22 s for a 7.7 s run of cnnrnn-fast
    on 2 cores.  The batch is timed on the share a lane gets, and the lanes' batches side by side."""
    import torch

    from geosr.predictor import Predictor
    from tests.test_run import random_model_file

    threads = []
    call = Predictor.__call__

    def counting(self, batch):  # type: ignore[no-untyped-def]
        threads.append(torch.get_num_threads())
        return call(self, batch)

    monkeypatch.setattr(Predictor, "__call__", counting)
    weights = random_model_file(tmp_path, scale=2)
    options = RunOptions(scale=2, model=str(weights), tile=64, batch_size=1, device="cpu", precision="fp32")
    plan = plan_run(make_raster(height=128, width=128, dtype="float32"), options)
    assert plan.timing is not None and plan.timing.lanes == plan.lanes
    assert threads and set(threads) == {max(1, torch.get_num_threads() // plan.lanes)}, threads
    timing = dataclasses.replace(plan.timing, model=1.0, model_batches=3, lanes=2)
    assert timing.model_seconds == 2.0  # 3 batches on 2 lanes: 2 batches' time
    assert dataclasses.replace(timing, lanes=1).model_seconds == 3.0
    assert "model 2.0 s" in timing.describe()


def test_estimate_times_the_whole_files_sample_an_aoi_run_reads(make_raster, monkeypatch) -> None:
    """A run normalises an --aoi window with its whole file's percentiles, so it first reads a
    strided sample of the whole file; info timed the window's sample instead.  On the
    Sentinel-2 JP2, a 348 x 345 px --bbox was estimated at 0.9 s for a 3.8 s run (bicubic):
    the whole file's sample, 2.0 s, was left out."""
    import geosr.inspect
    import geosr.run_inputs
    from geosr.io.scene import read_sample

    def slow_whole_file(scene, *args, **kwargs):  # type: ignore[no-untyped-def]
        if scene.file_shape is None:  # the whole file, not a window of it
            time.sleep(0.5)
        return read_sample(scene, *args, **kwargs)

    for module in (geosr.inspect, geosr.run_inputs):
        monkeypatch.setattr(module, "read_sample", slow_whole_file)
    src = make_raster(height=200, width=300)
    box = "336000,5865000,337000,5866000"  # 100 x 100 px of the 300 x 200 px scene
    timing = plan_run(src, RunOptions(scale=2, model="bicubic", bbox=box, bbox_crs="EPSG:32633")).timing
    assert timing is not None and timing.sample >= 0.5, timing


def test_estimate_times_the_frames_samples_the_run_reads(make_raster, monkeypatch) -> None:
    """Before its first tile a run reads a strided sample of each --frame's whole file too (their
    units are checked against the input's); info read them untimed.  On the Sentinel-2 JP2 with
    two --frame copies of it, a 348 x 345 px --bbox was estimated at 5.7 s for an 11.8 s run."""
    import geosr.run_inputs
    from geosr.io.scene import read_sample

    def slow_frame(scene, *args, **kwargs):  # type: ignore[no-untyped-def]
        if Path(scene.path).name.startswith("d"):
            time.sleep(0.5)
        return read_sample(scene, *args, **kwargs)

    monkeypatch.setattr(geosr.run_inputs, "read_sample", slow_frame)
    src = make_raster(height=64, width=64)
    frames = (
        str(make_raster("d2.tif", height=64, width=64)),
        str(make_raster("d3.tif", height=64, width=64)),
    )
    timing = plan_run(src, RunOptions(scale=2, tile=64, frames=frames)).timing
    assert timing is not None and timing.sample >= 1.0, timing


def test_info_on_an_aoi_of_an_all_nodata_file_says_the_run_refuses(make_raster, tmp_path: Path) -> None:
    """The run refuses a file without a valid pixel also for an --aoi window of it (its
    normalisation is the whole file's); info said 'its output would be all nodata'."""
    src = make_raster(data=np.zeros((1, 200, 200), "uint16"), nodata=0)
    box = "336000,5865000,337000,5866000"  # 100 x 100 px of it, in its CRS
    options = RunOptions(scale=2, model="bicubic", bbox=box, bbox_crs="EPSG:32633")
    assert dict(plan_run(src, options).lines())["valid pixels"].startswith(
        "none: geosr run refuses this scene"
    )
    with pytest.raises(InputError, match="every pixel is nodata"):
        upscale_file(src, tmp_path / "out.tif", **dataclasses.asdict(options))


def test_info_checks_the_disk_where_the_run_writes_an_items_asset(make_raster, tmp_path, monkeypatch) -> None:
    """geosr run ITEM --asset KEY writes ITEM's stem beside the Item; info checked the free space
    beside the asset's file (sub/), another folder, or another disk, and named that file alone
    as its input."""
    import geosr.inspect
    from tests.test_stac import item_of

    (tmp_path / "sub").mkdir()
    make_raster("sub/b03.tif", height=40, width=40)
    item = item_of(tmp_path, {"B03": "./sub/b03.tif"})
    monkeypatch.setattr(geosr.inspect, "free_bytes", lambda folder: 0 if folder == tmp_path else 2**50)
    plan = plan_run(item, RunOptions(model="bicubic", asset="B03"), calibrate=False)
    assert f"only 0 B free in {tmp_path} (write elsewhere with -o)" in dict(plan.lines())["resources"]
    # The Item given, and the asset's file read for it (the line named the file alone).
    assert dict(plan.lines())["input"] == f"{item} (reads {tmp_path / 'sub' / 'b03.tif'})"


def test_info_counts_the_space_an_unfinished_run_holds_as_the_run_does(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """geosr run counts the space an unfinished run of its output holds (its run state, which it
    resumes into) as free; info did not, and said 'geosr run would refuse it' of a run that then
    resumed on the same free space."""
    import geosr.inspect
    import geosr.resources
    from geosr.io.runstate import reclaimable_bytes

    src, dst = make_raster(height=64, width=64), tmp_path / "out.tif"
    options = RunOptions(scale=2, model="bicubic", tile=32, batch_size=1)

    _stop_after_the_first_batch(src, dst, options)
    held = reclaimable_bytes(dst)
    assert held > 0 and not dst.exists()
    needed = plan_run(src, options, calibrate=False, output=dst).disk_bytes
    assert needed is not None and needed > held
    for module in (geosr.inspect, geosr.resources):  # room for what the run still needs, no more
        monkeypatch.setattr(module, "free_bytes", lambda folder: needed - held)
    lines = dict(plan_run(src, options, calibrate=False, output=dst).lines())
    assert "refuse" not in lines["resources"], lines["resources"]
    upscale_file(
        src, dst, **dataclasses.asdict(dataclasses.replace(options, resume=True))
    )  # as the run agrees
    assert dst.exists()


def test_info_says_what_resume_finishes_of_an_unfinished_run(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """After a geosr run -o OUT stopped part-way (Ctrl-C), geosr info -o OUT planned every tile
    as if none were done, exit 0 and no word of it, where geosr run refused to start ('an
    unfinished run of this job (2 of 4 tiles done) ...; rerun with --resume').  info now says
    how many tiles are done, that --resume computes the rest, and estimates that; of another
    job's unfinished run there, it says what geosr run says."""
    src = make_raster("in.tif", height=64, width=64)
    monkeypatch.chdir(tmp_path)
    options = RunOptions(scale=2, model="bicubic", tile=32, batch_size=1)

    _stop_after_the_first_batch(src.name, "part.tif", options)
    args = [src.name, "-o", "part.tif", "-m", "bicubic", "--tile", "32", "--batch-size", "1"]
    code, captured = _geosr(monkeypatch, capsys, "run", *args, "-s", "2")
    found = re.search(r"an unfinished run of this job \((\d+) of 4 tiles done\)", captured.err)
    assert code == 2 and found, captured
    done = int(found[1])
    code, captured = _geosr(monkeypatch, capsys, "info", *args, "-s", "2", "--no-calibrate")
    assert code == 0 and "unfinished run" in captured.out and not captured.err, captured
    plan = plan_run(src.name, options, output="part.tif")
    assert (plan.tiles_done, len(plan.plan)) == (done, 4)
    rows = dict(plan.lines())
    assert rows["unfinished run"] == (
        f"{done} of 4 tiles done, kept in .part.tif.geosr-run; geosr run --resume computes the "
        f"{4 - done} left, --restart all 4 again"
    )
    # Fewer tiles to read, compute and store, the same output to build: by construction, not timing.
    assert plan.resume_seconds is not None and plan.estimated_seconds is not None
    assert plan.resume_seconds < plan.estimated_seconds
    assert rows["estimated time"].startswith(
        f"{plan.resume_seconds:.1f} s with --resume ({4 - done} of 4 tiles left), "
        f"with --restart {plan.estimated_seconds:.1f} s for a ZSTD COG: model"
    )
    # Another job's (here another scale): geosr run's line, which refuses to start without --restart.
    code, captured = _geosr(monkeypatch, capsys, "run", *args, "-s", "3")
    assert code == 2 and "an unfinished run of a different job" in captured.err, captured
    other = plan_run(src.name, dataclasses.replace(options, scale=3), calibrate=False, output="part.tif")
    assert other.tiles_done is None and other.resume_seconds is None
    assert dict(other.lines())["unfinished run"] == f"geosr run refuses to start: {captured.err[7:-1]}"


def test_info_counts_the_tiles_an_aoi_polygon_keeps(make_raster, tmp_path: Path) -> None:
    """The run skips the tiles wholly outside an --aoi polygon; info counted every tile of the
    polygon's window: an L along two edges of a 300 x 200 scene, tiles of 64, was '20 of 64 x 64'
    in info and 8 tiles in the run."""
    from geosr.api import upscale_file
    from tests.test_aoi import utm_of_pixel, write_geojson

    src = make_raster(height=200, width=300)
    ring = [utm_of_pixel(c, r) for c, r in ((0, 0), (300, 0), (300, 30), (30, 30), (30, 200), (0, 200))]
    aoi = write_geojson(tmp_path / "l.geojson", [*ring, ring[0]], crs="EPSG:32633")
    options = RunOptions(scale=2, model="bicubic", tile=64, batch_size=3, aoi=str(aoi))
    plan = plan_run(src, options, calibrate=False)
    ran: list[int] = []
    upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic", tile=64, batch_size=3, aoi=str(aoi),
                 progress=lambda done, total: ran.append(total))  # fmt: skip
    assert len(plan.plan) == ran[-1] == 8
    assert dict(plan.lines())["tiles"].startswith("8 of 64 x 64 px")


def test_info_gives_the_nodata_an_aoi_polygon_declares(make_raster, tmp_path: Path) -> None:
    """A scene without nodata gets one on its output under --aoi (0 for unsigned integers, the
    type's minimum for signed ones), which marks the pixels outside the polygon; info said 'none'."""
    from tests.test_aoi import utm_of_pixel, write_geojson

    ring = [utm_of_pixel(c, r) for c, r in ((0, 0), (60, 0), (0, 50))]
    aoi = str(write_geojson(tmp_path / "tri.geojson", [*ring, ring[0]], crs="EPSG:32633"))
    for dtype, value in (("uint16", "0"), ("int16", "-32768")):
        src = make_raster(f"{dtype}.tif", dtype=dtype)
        rows = dict(plan_run(src, RunOptions(model="bicubic", aoi=aoi), calibrate=False).lines())
        assert (
            rows["nodata"]
            == f"none; the output declares {value}, which it writes outside the area of interest"
        )
        with rasterio.open(upscale_file(src, tmp_path / f"{dtype}_x4.tif", model="bicubic", aoi=aoi)) as out:
            assert out.nodata == float(value)
    declared = make_raster("declared.tif", nodata=7)
    assert (
        dict(plan_run(declared, RunOptions(model="bicubic", aoi=aoi), calibrate=False).lines())["nodata"]
        == "7"
    )


def test_info_says_a_float_output_declares_nan_outside_an_aoi_polygon_too(
    make_raster, tmp_path: Path
) -> None:
    """A float scene without nodata declares NaN on its output, which an --aoi polygon's outside
    takes too (half the output of this triangle); info's line said it wrote NaN only 'where the
    input is NaN', of an input that held none."""
    from tests.test_aoi import utm_of_pixel, write_geojson

    ring = [utm_of_pixel(c, r) for c, r in ((0, 0), (60, 0), (0, 50))]
    aoi = str(write_geojson(tmp_path / "tri.geojson", [*ring, ring[0]], crs="EPSG:32633"))
    src = make_raster(dtype="float32")
    rows = dict(plan_run(src, RunOptions(model="bicubic", aoi=aoi), calibrate=False).lines())
    assert rows["nodata"] == (
        "none; the output declares nan, which it writes where the input is NaN and outside the area "
        "of interest"
    )
    with rasterio.open(upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic", aoi=aoi)) as out:
        assert np.isnan(out.nodata) and np.isnan(out.read(1)).any()


def test_info_plans_a_run_with_frames(make_raster, capsys, monkeypatch) -> None:
    """geosr info took no --frame, and planned a 3-date run as a single-date one: halo 15 px
    instead of 19, and 2.1 GiB of memory for the 5.6 GiB the run needs (3 x 512^2 uint16)."""
    src = make_raster(count=3, height=64, width=64)
    frames = (
        str(make_raster("d2.tif", count=3, height=64, width=64)),
        str(make_raster("d3.tif", count=3)),
    )  # any grid
    # fp32, as on a CPU without native bf16: there a model call holds two images, whose
    # activations the frames multiply; in bf16 it holds one, and the fixed 256 MiB of the
    # bound leaves 64 px tiles' 3 dates at 1.16x a single one's.
    cpu = {"device": "cpu", "precision": "fp32"}
    single = plan_run(src, RunOptions(tile=64, **cpu), calibrate=False)
    fused = plan_run(src, RunOptions(tile=64, frames=frames, **cpu), calibrate=False)
    assert (single.plan.halo, fused.plan.halo) == (15, 19)  # cnnrnn-fast: 2 px more per frame
    assert fused.memory_bytes is not None and single.memory_bytes is not None
    assert fused.memory_bytes > 1.3 * single.memory_bytes  # the same before
    assert dict(fused.lines())["model"] == "cnnrnn-fast x4, fusing the input and 2 --frame files"
    args = ["geosr", "info", str(src), "--frame", frames[0], "--no-calibrate"]
    monkeypatch.setattr(sys, "argv", args)
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    assert "halo 17 px" in capsys.readouterr().out


def test_info_names_each_bands_nodata_by_the_files_band_number(tmp_path: Path) -> None:
    """With per-band nodata and --bands 2,1, info said '2 (band 1), 1 (band 2)': the file's
    band 2 (nodata 2) called band 1, under a bands line that says 'band 2, band 1'."""
    from tests.conftest import coordinate_pattern
    from tests.test_masks import with_band_nodata

    vrt = with_band_nodata(tmp_path / "bands.vrt", coordinate_pattern(3, 20, 30), (1, 2, 3))
    rows = dict(plan_run(vrt, RunOptions(model="bicubic", bands="2,1"), calibrate=False).lines())
    assert rows["bands"] == "2 x uint16: band 2, band 1"
    assert rows["nodata"] == "2 (band 2), 1 (band 1); the output marks them all 2"


def test_info_names_the_model_as_the_output_will(make_raster, tmp_path: Path) -> None:
    """Info said 'cnnrnn-fast x3' for an untrained model and '<card name> x2' for a weights file,
    where the output's GEOSR_MODEL says 'cnnrnn-fast (untrained)' and names the file."""
    from tests.test_run import random_model_file

    weights = random_model_file(tmp_path, scale=2)
    src = make_raster()
    for model, scale in ((str(weights), 2), (None, 3)):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "no bundled weights for cnnrnn-fast x3")
            line = dict(plan_run(src, RunOptions(scale=scale, model=model), calibrate=False).lines())["model"]
            out = upscale_file(src, tmp_path / f"x{scale}.tif", scale=scale, model=model)
        with rasterio.open(out) as f:
            assert line == f"{f.tags()['GEOSR_MODEL']} x{scale}"
    assert line == "cnnrnn-fast (untrained) x3"


def test_info_counts_the_valid_pixels_inside_an_aoi_polygon(make_raster, tmp_path: Path) -> None:
    """The valid share was the polygon's window's: a triangle whose window holds the only data,
    in a corner the triangle leaves out, was '0.444 %' in info, and the run's output all nodata
    (which the run now refuses, as info says)."""
    from tests.test_aoi import utm_of_pixel, write_geojson

    data = np.zeros((1, 300, 300), "uint16")
    data[:, :20, :20] = 500
    src = make_raster(data=data, nodata=0)
    ring = [utm_of_pixel(c, r) for c, r in ((0, 300), (300, 300), (300, 0))]
    aoi = str(write_geojson(tmp_path / "tri.geojson", [*ring, ring[0]], crs="EPSG:32633"))
    rows = dict(plan_run(src, RunOptions(model="bicubic", scale=2, aoi=aoi)).lines())
    assert rows["valid pixels"].startswith("none in the area of interest: geosr run refuses it; give an area")
    with pytest.raises(InputError, match=r"tri\.geojson'\) holds no valid pixel"):
        upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic", aoi=aoi)
    ring = [utm_of_pixel(c, r) for c, r in ((0, 0), (40, 0), (0, 40))]  # the data square and as much again
    aoi = str(write_geojson(tmp_path / "corner.geojson", [*ring, ring[0]], crs="EPSG:32633"))
    share = dict(plan_run(src, RunOptions(model="bicubic", aoi=aoi)).lines())["valid pixels"]
    assert 45 < float(share.split()[0]) < 52  # 400 of about 820 px, by pixel centres


def test_info_on_an_aoi_polygon_uses_no_deprecated_affine_product(make_raster, tmp_path: Path) -> None:
    """Counting the valid pixels inside an --aoi polygon composed its transform with ``*``, which
    affine 3 deprecates (``@`` instead; PendingDeprecationWarning now, an error once removed)."""
    from tests.test_aoi import utm_of_pixel, write_geojson

    src = make_raster(height=40, width=40, nodata=0)
    ring = [utm_of_pixel(c, r) for c, r in ((0, 0), (30, 0), (0, 30))]
    aoi = str(write_geojson(tmp_path / "tri.geojson", [*ring, ring[0]], crs="EPSG:32633"))
    with warnings.catch_warnings():
        # Only geosr's own call sites: the libraries it calls have such products of their own.
        warnings.filterwarnings("error", category=PendingDeprecationWarning, module=r"geosr\.")
        rows = dict(plan_run(src, RunOptions(model="bicubic", scale=2, aoi=aoi)).lines())
    assert float(rows["valid pixels"].split()[0]) > 0


def test_info_piped_has_no_trailing_spaces_and_the_whole_path(make_raster, capsys, monkeypatch) -> None:
    """Piped into grep, diff or a file, each line ended in the spaces rich pads a table with (up
    to 60), and a path longer than the 80 columns rich then assumes was cut: 'input /tmp/…'."""
    path = make_raster("a_scene_named_at_length_by_its_tile_date_and_processing_baseline.tif")
    monkeypatch.setattr(sys, "argv", ["geosr", "info", str(path), "--model", "bicubic", "--no-calibrate"])
    try:
        main()
    except SystemExit as exc:
        assert exc.code in (0, None)
    lines = capsys.readouterr().out.splitlines()
    assert [line for line in lines if line != line.rstrip()] == []
    assert str(path) in "".join(line.strip().removeprefix("input").strip() for line in lines[:4])


def test_info_prints_a_name_in_brackets_as_it_is(make_raster, capsys, monkeypatch) -> None:
    """The table's cells are rich markup: the input line of ``scene [v2].tif`` read ``scene .tif``."""
    src = make_raster("scene [v2].tif", height=16, width=16)
    monkeypatch.chdir(src.parent)  # a name short enough not to be folded
    monkeypatch.setattr(sys, "argv", ["geosr", "info", src.name, "--model", "bicubic", "--no-calibrate"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code in (0, None)
    assert " input        scene [v2].tif\n" in out, out


def test_info_plans_the_cog_of_the_compression_asked_for(make_raster, tmp_path, capsys, monkeypatch) -> None:
    """geosr info took no --compress ('No such option: --compress'): its disk figure and COG build
    time were a ZSTD COG's, while an uncompressed COG stores every tile at full size (a 600 x 400
    output's two tiles and its overview's one) and LZW builds about 4.5x slower.  Now its lines
    name the COG's compression, the disk counts the uncompressed COG's tiles, and the build is
    timed with the compression asked for."""
    from geosr.inspect import _store_and_build

    src = make_raster(height=100, width=150)  # uint16, x4: 600 x 400
    store = 600 * 400 * 2 * 4 // 3  # the run store with its overviews
    disks = {}
    for compress, kind in [
        ("zstd", "a ZSTD"),
        ("deflate", "a DEFLATE"),
        ("lzw", "an LZW"),
        ("none", "an uncompressed"),
    ]:
        plan = plan_run(src, RunOptions(model="bicubic", compress=compress), calibrate=False)
        disks[compress] = plan.disk_bytes
        assert f"for {kind} COG" in " ".join(dict(plan.lines())["resources"].split()), compress
    assert disks["zstd"] == disks["deflate"] == disks["lzw"] == 2 * store
    # The COG's tiles, full size, edges too, each framed, and its header.
    assert disks["none"] == store + 3 * (512 * 512 * 2 + 24) + 256 * 2**10

    timing = Timing(1, model=1.0, model_batches=1, read=0, store=0, cog=0.5, sample=0, overlapped=False)
    assert (
        dataclasses.replace(timing, compress="none").describe().startswith("1.5 s for an uncompressed COG:")
    )
    # The sample the estimate times is built with the compression asked for.
    out = np.arange(2 * 64 * 64, dtype="uint16").reshape(2, 64, 64)
    scene_grid = plan_run(src, RunOptions(model="bicubic"), calibrate=False).scene.grid
    _store_and_build(tmp_path / "lzw", scene_grid, None, out, (1, 2), "lzw")
    with rasterio.open(tmp_path / "lzw" / "sample.tif") as cog:
        assert cog.compression is not None and cog.compression.name == "lzw" and cog.shape == (64, 128)

    monkeypatch.chdir(src.parent)
    for args, expected in [(["--compress", "LZW"], 0), (["--compress", "jpeg"], 2)]:
        code, captured = _geosr(
            monkeypatch, capsys, "info", src.name, "--model", "bicubic", "--no-calibrate", *args
        )
        assert code == expected, captured.err
        if code:
            assert not captured.out
            assert captured.err.strip() == (
                "error: --compress 'jpeg' is not supported; use zstd, deflate, lzw or none (all lossless)"
            )
        else:
            assert "an LZW COG" in " ".join(captured.out.split())


def test_info_json_gives_the_plan_the_lines_show_as_numbers(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info had no --json ('No such option: --json'): a script over an archive parsed its
    lines, whose numbers are rounded text ('192.0 KiB', '0.0 s').  Now --json prints one JSON
    object of the same plan, the numbers as numbers, an unfinished run's tiles done too."""
    src = make_raster("in.tif", count=2, height=64, width=48, nodata=0, descriptions=("R", "G"))
    monkeypatch.chdir(tmp_path)
    options = RunOptions(scale=2, model="bicubic", tile=32, batch_size=1)

    _stop_after_the_first_batch(src.name, "part.tif", options)
    args = [src.name, "-o", "part.tif", "-m", "bicubic", "--tile", "32", "--batch-size", "1", "-s", "2"]
    code, captured = _geosr(monkeypatch, capsys, "info", *args, "--json")
    assert code == 0 and not captured.err, captured
    plan = json.loads(captured.out)
    code, captured = _geosr(monkeypatch, capsys, "info", *args)
    assert code == 0, captured
    rows: dict[str, str] = {}
    key = ""
    for line in captured.out.splitlines():  # a key's value goes on over the lines without one
        key = line[:16].strip() or key
        rows[key] = f"{rows.get(key, '')} {line[16:].strip()}".strip()
    grid, out = plan["grid"], plan["output_grid"]
    assert rows["grid"].startswith(f"{grid['width']} x {grid['height']} px, CRS {grid['crs']}, pixel 10 x 10")
    assert rows["output grid"].startswith(f"{out['width']} x {out['height']} px, CRS {out['crs']}")
    with rasterio.open(src) as dataset:
        assert grid["transform"] == list(dataset.transform)[:6]
        assert grid["bounds"] == list(dataset.bounds) == out["bounds"]
    assert rows["bands"] == f"{plan['bands']['count']} x {plan['bands']['dtype']}: R, G"
    assert plan["bands"]["names"] == ["R", "G"] and plan["nodata"]["value"] == 0
    assert rows["output size"] == f"{format_bytes(plan['output']['bytes'])} uncompressed"
    assert plan["output"]["bytes"] == 2 * 128 * 96 * 2 and plan["output"]["format"] == "cog"
    tiles, batch = plan["tiles"], plan["batch"]
    assert rows["model"] == f"{plan['model']['name']} x{plan['model']['scale']}" == "bicubic x2"
    assert (
        rows["tiles"]
        == f"{tiles['count']} of {tiles['width']} x {tiles['height']} px, halo {tiles['halo']} px"
    )
    assert rows["batch"].startswith(f"{batch['size']} tile on {batch['device']}, {batch['precision']}")
    memory = plan["resources"]
    assert memory["peak_memory_bytes"] == memory["process_bytes"] + memory["memory_bytes"]
    assert f"disk about {format_bytes(memory['disk_bytes'])} for a ZSTD COG" in " ".join(
        rows["resources"].split()
    )
    done = plan["unfinished_run"]["tiles_done"]
    assert plan["unfinished_run"] == {
        "same_job": True,
        "tiles_done": done,
        "tiles": 4,
        "run_state": str(Path(".part.tif.geosr-run")),
    }
    assert rows["unfinished run"].startswith(f"{done} of 4 tiles done")
    estimate = plan["estimate"]
    assert isinstance(estimate["seconds"], float) and estimate["resume_seconds"] < estimate["seconds"]
    assert estimate["batches"] == 4 and plan["valid_fraction"] == 1.0
    # Each call times a batch of its own: the lines of one and the JSON of another differed by
    # the machine's load (0.0 s against 0.1 s), so the lines give the form and one plan the numbers.
    seconds = r"\d+(\.\d)? s"
    assert re.match(
        f"{seconds} with --resume \\({4 - done} of 4 tiles left\\), with --restart {seconds} for a ZSTD COG: "
        f"model {seconds}",
        rows["estimated time"],
    ), rows["estimated time"]
    one = plan_run(src, options, output=tmp_path / "part.tif")
    timed = one.to_dict()["estimate"]
    assert dict(one.lines())["estimated time"].startswith(
        f"{timed['resume_seconds']:.1f} s with --resume ({4 - done} of 4 tiles left), "
        f"with --restart {timed['seconds']:.1f} s for a ZSTD COG: model {timed['model_seconds']:.1f} s"
    )
    # A float scene's NaN, which JSON has no token for; no estimate without --calibrate.
    floats = make_raster("floats.tif", dtype="float32")
    code, captured = _geosr(
        monkeypatch, capsys, "info", floats.name, "-m", "bicubic", "--no-calibrate", "--json"
    )
    assert code == 0, captured
    plan = json.loads(captured.out)
    assert plan["nodata"] == {
        "value": None,
        "bands": None,
        "missing_values": [],
        "output": "nan",
        "masked": False,
    }
    assert (
        plan["estimate"] is None
        and plan["valid_fraction"] is None
        and plan["output"]["path"] == "floats_x4.tif"
    )
    # An error is its one line, as evaluate's: no JSON on stdout.
    code, captured = _geosr(monkeypatch, capsys, "info", "missing.tif", "--json")
    assert code == 2 and captured.out == "" and captured.err.count("\n") == 1, captured


def _stop_after_the_first_batch(src: str | Path, dst: str | Path, options: RunOptions) -> None:
    """Run ``src`` to ``dst`` as ``geosr run`` would and stop it, as Ctrl-C does, after its first batch."""

    def interrupt(done: int, total: int) -> None:
        if done:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        upscale_file(src, dst, progress=interrupt, **dataclasses.asdict(options))


def _geosr(monkeypatch, capsys, *args: str) -> tuple[int, pytest.CaptureResult[str]]:
    """The exit status and output of ``geosr ARGS``, run in this process."""
    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    with pytest.raises(SystemExit) as stopped:
        main()
    return int(stopped.value.code or 0), capsys.readouterr()


def _size_on_disk(store: Path) -> int:
    return sum(p.stat().st_size for p in store.rglob("*") if p.is_file())


@pytest.mark.parametrize(
    ("compress", "kind"), [("zstd", "a Zarr store (Blosc zstd)"), ("none", "an uncompressed Zarr store")]
)
def test_info_plans_the_zarr_store_the_output_names(
    make_raster, tmp_path: Path, capsys, monkeypatch, compress: str, kind: str
) -> None:
    """geosr info took no --output and planned a COG whatever the run would write: a Zarr
    store's disk figure was a ZSTD COG's (its run store and the COG build beside it), its size
    line spoke of a BigTIFF and its time of a COG build.  An uncompressed store holds its edge
    chunks whole: 300 x 200 px at x2 in tiles of 128 is six 256^2 chunks of a 600 x 400
    output.  Now -o out.zarr plans the store: its chunks, the disk geosr run's check counts
    for it, which bounds the store a real run writes (noise, which no codec compresses), and
    its writing without a COG build."""
    noise = np.random.default_rng(0).integers(1, 60000, size=(1, 300, 200), dtype="uint16")
    src = make_raster(data=noise)
    options = RunOptions(scale=2, model="bicubic", tile=128, compress=compress)
    plan = plan_run(src, options, output=tmp_path / "planned.zarr")
    rows = {key: " ".join(value.split()) for key, value in plan.lines()}
    assert rows["output size"] == "468.8 KiB uncompressed, in 6 chunks of 256 x 256 px"
    assert f"disk about {format_bytes(plan.disk_bytes)} for {kind}" in rows["resources"]
    assert f"for {kind}: model" in rows["estimated time"] and "writing the store" in rows["estimated time"]
    assert "COG" not in " ".join(rows.values())
    assert not (tmp_path / "planned.zarr").exists()
    store = upscale_file(src, tmp_path / "out.zarr", scale=2, model="bicubic", tile=128, compress=compress)
    written = _size_on_disk(Path(store))
    assert written <= plan.disk_bytes < written + 128 * 2**10, (written, plan.disk_bytes)

    # A COG (the default, or -o of a .tif) is planned as before; LZW has no Zarr codec.
    monkeypatch.chdir(tmp_path)
    for args, expected, said in [
        (["-o", "cli.zarr", "--compress", compress], 0, kind),
        (["--compress", compress], 0, "COG"),
        (["-o", "cli.zarr", "--compress", "lzw"], 2, "--compress 'lzw' is a TIFF compression"),
    ]:
        code, captured = _geosr(
            monkeypatch, capsys, "info", src.name, "--model", "bicubic", "--no-calibrate", *args
        )
        assert code == expected, captured.err
        assert said in " ".join((captured.out + captured.err).split()), (args, captured)
    assert not (tmp_path / "cli.zarr").exists()


def test_info_refuses_an_output_the_run_cannot_write(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info -o planned an output in a missing folder, or under a file, which geosr run
    refuses before reading a pixel: info now refuses it with the run's line, writing nothing."""
    src = make_raster()
    monkeypatch.chdir(tmp_path)
    for output, said in [
        (
            "missing/out.zarr",
            "cannot write missing/out.zarr: directory missing does not exist; create it first",
        ),
        (f"{src.name}/out.tif", f"cannot write {src.name}/out.tif: {src.name} is not a directory"),
    ]:
        code, captured = _geosr(
            monkeypatch, capsys, "info", src.name, "--model", "bicubic", "--no-calibrate", "-o", output
        )
        assert code == 2 and not captured.out, captured
        assert captured.err.startswith(f"error: {said}") and len(captured.err.splitlines()) == 1, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_info_refuses_an_output_inside_a_zarr_store_as_the_run_does(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info -o product.zarr/out.tif (a path inside an existing Zarr store) planned the COG,
    where geosr run refuses it before reading a pixel: info now refuses it with the run's line."""
    import zarr

    src = make_raster()
    monkeypatch.chdir(tmp_path)
    zarr.open_group("product.zarr", mode="w")
    written = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    said = []
    for command in ("info", "run"):
        code, captured = _geosr(
            monkeypatch, capsys, command, src.name, "--model", "bicubic", "-o", "product.zarr/out.tif"
        )
        assert code == 2 and not captured.out and len(captured.err.splitlines()) == 1, captured
        said.append(captured.err)
    assert said[0] == said[1]
    assert said[0].startswith("error: cannot write product.zarr/out.tif: it is inside the Zarr store ")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == written


def test_info_refuses_an_output_over_a_frame_or_the_input_as_the_run_does(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info ref.tif --frame d2.tif -o d2.tif (or -o ref.tif) planned the run, where geosr
    run refuses to write over what it reads: info now refuses it with the run's line."""
    src = make_raster("ref.tif", height=32, width=32)
    # The same place a third of a pixel east and south: another acquisition, on another grid.
    make_raster(
        "d2.tif", data=coordinate_pattern(1, 32, 32), transform=UTM_TRANSFORM @ Affine.translation(0.3, 0.3)
    )
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for output, said in [
        ("d2.tif", "the output would overwrite the frame d2.tif"),
        ("ref.tif", "the output would overwrite the input;"),
    ]:
        lines = []
        for command in ("info", "run"):
            code, captured = _geosr(
                monkeypatch, capsys, command, src.name, "--frame", "d2.tif", "--scale", "2", "-o", output
            )
            assert code == 2 and not captured.out and len(captured.err.splitlines()) == 1, captured
            lines.append(captured.err)
        assert lines[0] == lines[1] and lines[0].startswith(f"error: {output}: {said}"), lines
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_info_refuses_an_existing_output_as_the_run_does_and_plans_it_with_overwrite(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info -o OUT planned the run as though OUT were absent, where geosr run refuses it
    without --overwrite, and info took no --overwrite: info now refuses it with the run's line,
    and with --overwrite plans what geosr run --overwrite does.  Without -o, an existing default
    output does not stop info describing the scene (the run still refuses it)."""
    src = make_raster("in.tif", height=32, width=32)
    make_raster("other.tif", height=8, width=8)
    (tmp_path / "in_x2.tif").write_bytes((tmp_path / "other.tif").read_bytes())  # the default output
    monkeypatch.chdir(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.iterdir()}
    for output in (["-o", "other.tif"], []):
        lines = []
        for command in ("info", "run") if output else ("run",):
            code, captured = _geosr(
                monkeypatch, capsys, command, src.name, "-s", "2", "-m", "bicubic", *output
            )
            assert code == 2 and not captured.out, captured
            lines.append(captured.err)
        name = output[-1] if output else "in_x2.tif"
        assert set(lines) == {f"error: {name} already exists; pass --overwrite to replace it\n"}, lines
        if not output:
            code, captured = _geosr(monkeypatch, capsys, "info", src.name, "-s", "2", "-m", "bicubic")
            assert code == 0 and re.search("output grid +64 x 64 px", captured.out), captured
        code, captured = _geosr(
            monkeypatch,
            capsys,
            "info",
            src.name,
            "-s",
            "2",
            "-m",
            "bicubic",
            "--no-calibrate",
            *output,
            "--overwrite",
        )
        assert code == 0 and "output grid  64 x 64 px" in captured.out, captured
    assert {p: p.read_bytes() for p in tmp_path.iterdir()} == before  # info writes nothing
    code, captured = _geosr(monkeypatch, capsys, "run", src.name, "-s", "2", "-m", "bicubic", "--overwrite")
    assert code == 0, captured
    with rasterio.open(tmp_path / "in_x2.tif") as out:
        assert out.shape == (64, 64)


def test_info_refuses_an_existing_remote_output_as_the_run_does(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info -o s3://bucket/out.tif planned the run over an existing remote output, which
    geosr run refuses without --overwrite: info checked its local staging copy, never there.
    It now refuses the URL with the run's line, a folder URL's default output too, and plans it
    with --overwrite.  fsspec's in-memory filesystem stands in for s3:// (the same code path)."""
    import fsspec

    src = make_raster("in.tif", height=32, width=32)
    monkeypatch.chdir(tmp_path)
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/info-taken/out.tif", b"older")
    fs.pipe_file("/info-taken/in_x2.tif", b"older")
    try:
        for output, name in [
            ("memory://info-taken/out.tif", "memory://info-taken/out.tif"),
            ("memory://info-taken/", "memory://info-taken/in_x2.tif"),
        ]:
            lines = []
            for command in ("info", "run"):
                args = [command, src.name, "-s", "2", "-m", "bicubic", "-o", output]
                code, captured = _geosr(monkeypatch, capsys, *args)
                assert code == 2 and not captured.out, captured
                lines.append(captured.err)
            assert set(lines) == {f"error: {name} already exists; pass --overwrite to replace it\n"}, lines
            code, captured = _geosr(
                monkeypatch,
                capsys,
                "info",
                src.name,
                "-s",
                "2",
                "-m",
                "bicubic",
                "--no-calibrate",
                "-o",
                output,
                "--overwrite",
            )
            assert code == 0 and "output grid  64 x 64 px" in captured.out, captured
        assert fs.cat_file("/info-taken/out.tif") == fs.cat_file("/info-taken/in_x2.tif") == b"older"
    finally:
        fs.rm("/info-taken", recursive=True)


@pytest.mark.parametrize("name", ["done.tif", "done.zarr"])
def test_info_says_an_output_of_the_same_job_is_one_geosr_run_resume_keeps(
    make_raster, tmp_path: Path, capsys, monkeypatch, name: str
) -> None:
    """geosr info -o OUT, OUT the finished output of this same job, said "OUT already exists;
    pass --overwrite to replace it", where geosr run says it was written by this same job and
    --resume keeps it (nothing computed again).  info now says so too; the output of another
    job (here another scale) is still refused as any existing output."""
    src = make_raster("in.tif", height=32, width=32)
    monkeypatch.chdir(tmp_path)
    upscale_file(src.name, name, scale=2, model="bicubic")
    args = [src.name, "-m", "bicubic", "-o", name]
    code, captured = _geosr(monkeypatch, capsys, "run", *args, "-s", "2")
    assert code == 2 and "written by this same job; pass --resume to keep it" in captured.err, captured
    for calibrate in ([], ["--no-calibrate"]):
        code, captured = _geosr(monkeypatch, capsys, "info", *args, "-s", "2", *calibrate)
        assert code == 2 and not captured.out, captured
        assert captured.err == (
            f"error: {name} already exists, written by this same job; geosr run --resume keeps it "
            "(nothing is computed again), or pass --overwrite to plan replacing it\n"
        )
    code, captured = _geosr(monkeypatch, capsys, "info", *args, "-s", "3", "--no-calibrate")
    assert code == 2 and captured.err == f"error: {name} already exists; pass --overwrite to replace it\n"


def test_info_refuses_an_output_name_too_long_for_the_runs_temporaries(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """geosr info -o NAME.tif, NAME of 220 bytes, planned the run, which geosr run refuses (the
    temporaries it writes beside the output would have names over the file system's limit):
    info now refuses it with the run's line."""
    src = make_raster()
    monkeypatch.chdir(tmp_path)
    output = "a" * 220 + ".tif"
    lines = []
    for command in ("info", "run"):
        code, captured = _geosr(monkeypatch, capsys, command, src.name, "--model", "bicubic", "-o", output)
        assert code == 2 and not captured.out, captured
        lines.append(" ".join(captured.err.split()))
    assert lines[0] == lines[1] and lines[0].startswith(
        f"error: cannot write {output}: its name is 224 bytes"
    )
    assert [p.name for p in tmp_path.iterdir()] == [src.name]


def test_info_takes_the_zarr_format_the_run_takes(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """geosr run -o out.zarr --zarr-format 2 could not be planned: info took no --zarr-format
    ('No such option'). It takes it now, and refuses it for a COG output as the run does."""
    src = make_raster()
    monkeypatch.chdir(tmp_path)
    for args, expected, said in [
        (["-o", "out.zarr", "--zarr-format", "2"], 0, "for a Zarr store (Blosc zstd)"),
        (
            ["--zarr-format", "2"],
            2,
            "error: --zarr-format 2 is for a .zarr output, and scene_x4.tif is a COG",
        ),
    ]:
        code, captured = _geosr(
            monkeypatch, capsys, "info", src.name, "--model", "bicubic", "--no-calibrate", *args
        )
        assert code == expected, captured
        assert said in " ".join((captured.out + captured.err).split()), captured
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


def test_info_names_the_output_as_the_run_prints_it(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """geosr info printed no output line, and with -o FOLDER never said which file the run writes
    in it (FOLDER/in_x2.tif, as geosr run prints it); for a remote output its JSON gave the local
    copy the run uploads (/tmp/.geosr-upload-0-.../in_x2.tif) for the URL the run names."""
    src = make_raster("in.tif", height=32, width=32)
    monkeypatch.chdir(tmp_path)
    for folder in ("a", "b", "c"):
        (tmp_path / folder).mkdir()
    common = [src.name, "-s", "2", "-m", "bicubic"]
    for output in ("a", "b/", "c/named.tif", None):
        given = [] if output is None else ["-o", output]
        code, text = _geosr(monkeypatch, capsys, "info", *common, "--no-calibrate", *given)
        assert code == 0, text
        code, json_text = _geosr(monkeypatch, capsys, "info", *common, "--no-calibrate", "--json", *given)
        assert code == 0, json_text
        code, run = _geosr(monkeypatch, capsys, "run", *common, *given)
        assert code == 0, run
        printed = run.out.strip()
        assert f"\n output       {printed}\n" in f"\n{text.out}", text.out
        assert json.loads(json_text.out)["output"]["path"] == printed
    assert printed == "in_x2.tif"
    assert [(tmp_path / f).exists() for f in ("a/in_x2.tif", "b/in_x2.tif", "c/named.tif")] == [True] * 3
    for output, url in [
        ("memory://info-named/", "memory://info-named/in_x2.tif"),
        ("memory://info-named/out.tif", "memory://info-named/out.tif"),
    ]:
        plan = plan_run(src.name, RunOptions(scale=2, model="bicubic"), calibrate=False, output=output)
        assert dict(plan.lines())["output"] == plan.to_dict()["output"]["path"] == url
