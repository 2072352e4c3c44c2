"""Every user mistake: one clear line naming the file, exit status 2, no traceback, no output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from geosr.cli import main
from tests.conftest import UTM_TRANSFORM, upscale_in_utm_bbox


def run_cli(
    args: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    code = exit_info.value.code
    return (code if isinstance(code, int) else 0), captured.err


def assert_one_clear_line(code: int, err: str, *needles: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    text = " ".join(err.split())
    assert text.startswith("error:"), err
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"


def outputs_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if "_x" in p.name or p.name.startswith("."))


def test_missing_file(tmp_path: Path, capsys, monkeypatch) -> None:
    code, err = run_cli(["run", str(tmp_path / "nope.tif")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "nope.tif", "no such file")
    assert outputs_in(tmp_path) == []


def test_not_a_raster(tmp_path: Path, capsys, monkeypatch) -> None:
    path = tmp_path / "notes.tif"
    path.write_text("these are my field notes, not an image\n")
    code, err = run_cli(["run", str(path)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "notes.tif", "not a readable raster")
    assert outputs_in(tmp_path) == []


def test_truncated_geotiff(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster(height=300, width=300, dtype="uint16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif")
    assert "truncated" in err or "corrupt" in err or "not a readable raster" in err
    assert "See previous exception" not in err
    assert outputs_in(tmp_path) == []


def test_a_vrt_whose_source_is_gone(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """GDAL opens a VRT's sources only to read them, so the VRT opened and its read failed with
    "(Read failed. See previous exception for details.); the file is probably truncated or
    corrupt": not the missing file's name, and the wrong fix.  GDAL's own reason, for a
    truncated file too ("See previous exception" said nothing), now stands in the line."""
    from rasterio.shutil import copy as rio_copy

    source = make_raster("part.tif", height=40, width=40)
    rio_copy(source, tmp_path / "mosaic.vrt", driver="VRT")
    source.unlink()
    code, err = run_cli(["run", str(tmp_path / "mosaic.vrt"), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "mosaic.vrt", "part.tif: No such file", "a file it refers to", "VRT")
    assert "truncated" not in err and "See previous exception" not in err
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize("scale", ["0", "-2", "1"])
def test_bad_scale(make_raster, tmp_path: Path, capsys, monkeypatch, scale: str) -> None:
    path = make_raster()
    code, err = run_cli(["run", str(path), "--scale", scale], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "scale")
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "scene.tif", "--scale", "x"], "--scale"),
        (["run", "scene.tif", "--overwite"], "--overwrite"),
        (["rn", "scene.tif"], "Did you mean 'run'"),
        (["run"], "Missing argument"),
    ],
)
def test_a_usage_error_is_one_line_too(tmp_path: Path, capsys, monkeypatch, args, needle) -> None:
    """``--scale x`` or a mistyped option printed the usage and a six-line box (typer's), where the
    README promises one line on stderr for any bad option."""
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, needle)
    assert len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "scene.tif", "--scale", "4x"], "'--scale' / '-s': '4x' is not a whole number"),
        (["run", "scene.tif", "--nodata", "none"], "'--nodata': 'none' is not a number"),
        (["train", "--steps", "0"], "'--steps': '0' is refused: input should be greater than or equal to 1"),
    ],
)
def test_a_value_the_option_cannot_take_is_named(capsys, monkeypatch, args, needle) -> None:
    """``--scale 4x`` was answered 'Invalid value for '--scale' / '-s': Input should be a valid
    integer, unable to parse string as an integer', and ``--steps 0`` 'Input should be greater than
    or equal to 1': the words of typer's parser, without the value given."""
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, needle)
    assert "Input should" not in err and "parse string" not in err, err


LONG = "e" * 256
"""A name one byte over the 255-byte limit of a file name (and longer with its suffix)."""


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", f"{LONG}.tif"], f"{LONG}.tif:"),
        (["run", "{src}", "-o", f"{LONG}.tif"], f"--output {LONG}.tif:"),
        (["run", "{src}", "-o", f"{LONG}/x.tif"], f"--output {LONG}/x.tif:"),
        (["info", f"{LONG}.tif"], f"{LONG}.tif:"),
        (["compare", "{src}", "{src}", "-o", f"{LONG}.png"], f"--output {LONG}.png:"),
        (["evaluate", "{src}", "--json", f"{LONG}.json"], f"--json {LONG}.json:"),
        (["evaluate", "{src}", "--workdir", LONG], f"--workdir {LONG}:"),
        (["train", "--val", "{src}", "--recipe", f"{LONG}.toml"], f"{LONG}.toml:"),
    ],
)
def test_a_name_over_the_file_name_limit_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch, args: list[str], needle: str
) -> None:
    """A path with a name over 255 bytes raised OSError 'File name too long' in a traceback
    (from Path.exists or is_dir, before any check could say what was wrong)."""
    src = str(make_raster())
    monkeypatch.chdir(tmp_path)
    args = [src if a == "{src}" else a for a in args]
    model = ["--model", "bicubic"] if args[0] in ("run", "evaluate") else []
    code, err = run_cli([*args, *model], capsys, monkeypatch)
    assert_one_clear_line(code, err, needle, "over the 255-byte limit of a file name")
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_the_api_refuses_an_input_name_over_the_file_name_limit(tmp_path: Path) -> None:
    """The Python API raised OSError (errno 36) from Path.exists, not geosr's InputError."""
    import geosr
    from geosr.errors import InputError

    with pytest.raises(InputError, match=r"over the 255-byte limit.*no such file can exist"):
        geosr.upscale_file(tmp_path / f"{LONG}.tif", tmp_path / "out.tif", scale=2, model="bicubic")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["run", "-scene.tif", "--model", "bicubic"], "Invalid value for '--scale'"),
        (["run", "--model", "bicubic", "-scene.tif"], "Invalid value for '--scale'"),
        (["run", "-scene.tif", "--scale", "2"], "Missing argument"),
        (["info", "-x y.tif"], "No such option: -x"),
    ],
)
def test_a_file_whose_name_starts_with_a_dash_is_told_how_to_give(
    make_raster, tmp_path: Path, capsys, monkeypatch, args: list[str], needle: str
) -> None:
    """click reads ``-scene.tif`` as ``-s cene.tif``: the line said "Invalid value for '--scale'"
    (or "Missing argument 'inputs'", "No such option: -x"), never the file nor how to pass it."""
    make_raster(args[-1] if args[0] == "info" else "-scene.tif")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(args, capsys, monkeypatch)
    name = args[-1] if args[0] == "info" else "-scene.tif"
    shown = "'./-x y.tif'" if args[0] == "info" else "./-scene.tif"
    assert_one_clear_line(code, err, needle, f"{name} is a file, read as options: give it as {shown}")
    assert "after the options and '--'" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_a_usage_error_without_a_dashed_file_has_no_hint(tmp_path: Path, capsys, monkeypatch) -> None:
    """The hint is for a file that is there, not for every mistyped option."""
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", "-scene.tif"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "Invalid value for '--scale'")
    assert "is a file" not in err


@pytest.mark.parametrize("path", ["C:\\data\\scene.tif", "D:/scene.tif"])
def test_a_windows_input_path_is_told_as_one(tmp_path: Path, capsys, monkeypatch, path: str) -> None:
    """'C:' was read as a GDAL subdataset's driver: the hint was to give a netCDF's --variable."""
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["info", path], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{path}: no such file", "a Windows path", "its path on this system")
    assert "--variable" not in err


@pytest.mark.parametrize("output", ["C:\\data\\out.tif", "C:/data/out.tif"])
def test_a_windows_output_path_is_refused(make_raster, tmp_path: Path, capsys, monkeypatch, output) -> None:
    """'C:\\data\\out.tif' was written as a file of that name in the working folder (and
    'C:/data/out.tif' refused as a missing folder 'C:/data', to be created)."""
    src = make_raster()
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", str(src), "-o", output, "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"--output {output}: a Windows path", "path on this system")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize("name", ["s3:scene.tif", "zip:scene.tif"])
def test_a_file_named_like_a_url_is_told_how_to_give(
    make_raster, tmp_path: Path, capsys, monkeypatch, name: str
) -> None:
    """A file 's3:scene.tif' was read as an S3 URL ('no credentials to read it with'), and
    'zip:scene.tif' as an archive's member ('/vsizip/scene.tif' does not exist)."""
    make_raster(name)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", name, "--model", "bicubic"], capsys, monkeypatch)
    scheme = name.partition(":")[0]
    assert_one_clear_line(code, err, f"{name}: read as a {scheme}: URL", f"give it as ./{name}")
    assert outputs_in(tmp_path) == []
    code, err = run_cli(["run", f"./{name}", "--model", "bicubic", "--scale", "2"], capsys, monkeypatch)
    assert code == 0, err


@pytest.mark.parametrize("bands", ["", " , "])
def test_empty_bands_are_refused_not_read_as_every_band(
    make_raster, tmp_path: Path, capsys, monkeypatch, bands: str
) -> None:
    """``--bands ''`` (an unset shell variable: ``--bands "$BANDS"``) ran on every band."""
    path = make_raster(count=2)
    code, err = run_cli(["run", str(path), "--model", "bicubic", "--bands", bands], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "--bands", "empty entry")
    assert outputs_in(tmp_path) == []


def test_band_count_the_model_cannot_take(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    import torch

    from geosr.models import CNNRNN, CNNRNNConfig, ModelCard, save_weights

    config = CNNRNNConfig(scale=2, features=8, encoder_blocks=1, refine_steps=1, in_channels=4)
    card = ModelCard(
        name="rgbn",
        architecture="cnnrnn",
        config=vars(config) if not hasattr(config, "to_dict") else config.to_dict(),
        scale=2,
        bands=["B2", "B3", "B4", "B8"],
    )
    torch.manual_seed(0)
    weights, _ = save_weights(CNNRNN(config), card, tmp_path / "weights" / "rgbn_x2")
    path = make_raster(count=3)
    code, err = run_cli(["run", str(path), "--scale", "2", "--model", str(weights)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "4 bands", "3")
    assert outputs_in(tmp_path) == []


def test_existing_output_is_kept_byte_identical(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster()
    existing = tmp_path / "scene_x4.tif"
    existing.write_bytes(b"precious results from last week")
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene_x4.tif", "--overwrite")
    assert existing.read_bytes() == b"precious results from last week"
    code, _ = run_cli(["run", str(path), "--model", "bicubic", "--overwrite"], capsys, monkeypatch)
    assert code == 0 and existing.read_bytes()[:2] in (b"II", b"MM")


def test_overwrite_never_replaces_a_folder_that_is_not_a_zarr_store(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Before, --overwrite deleted whatever folder bore the output's .zarr name."""
    path = make_raster()
    folder = tmp_path / "scene_x2.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    args = ["run", str(path), "--model", "bicubic", "--scale", "2", "-o", str(folder), "--overwrite"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene_x2.zarr", "not a Zarr store", "choose another output path")
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    (folder / "notes.txt").unlink()  # an empty folder, or an earlier store, is replaced
    code, _ = run_cli(args, capsys, monkeypatch)
    assert code == 0 and (folder / "zarr.json").exists()
    code, _ = run_cli(args, capsys, monkeypatch)
    assert code == 0 and (folder / "zarr.json").exists()


@pytest.mark.parametrize("address", ["nonsense", "tcp://127.0.0.1:abc", "inproc://x"])
def test_a_scheduler_address_that_is_not_one_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch, address: str
) -> None:
    """Before, Dask's ValueError came as a traceback, after a run state had been made that
    then held up the next run ("an unfinished run of this job")."""
    path = make_raster()
    code, err = run_cli(["run", str(path), "--model", "bicubic", "--scheduler", address], capsys, monkeypatch)
    assert_one_clear_line(code, err, address, "not a Dask scheduler address", "tcp://HOST:8786")
    assert outputs_in(tmp_path) == []


def test_rerun_of_a_finished_job_points_to_resume(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """Rerunning a finished batch: an output this same job wrote is kept, and the line
    says that --resume keeps it without computing it again (which it then does)."""
    path = make_raster()
    code, _ = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    out = tmp_path / "scene_x4.tif"
    assert code == 0
    before = (out.read_bytes(), out.stat().st_mtime_ns)
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene_x4.tif", "written by this same job", "--resume", "--overwrite")
    code, _ = run_cli(["run", str(path), "--model", "bicubic", "--resume"], capsys, monkeypatch)
    assert code == 0 and (out.read_bytes(), out.stat().st_mtime_ns) == before
    code, err = run_cli(
        ["run", str(path), "--model", "bicubic", "--scale", "2", "-o", str(out)], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "scene_x4.tif", "already exists; pass --overwrite")  # another job


def test_unwritable_output_directory(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster()
    code, err = run_cli(
        ["run", str(path), "-o", str(tmp_path / "missing" / "dir" / "o.tif")], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "o.tif")
    assert not (tmp_path / "missing").exists()


def test_unsupported_output_format(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster()
    code, err = run_cli(["run", str(path), "-o", str(tmp_path / "o.png")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "o.png")
    assert not (tmp_path / "o.png").exists()


def test_all_nodata_scene_is_refused(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster(data=np.zeros((1, 20, 20), np.uint16), nodata=0)
    code, err = run_cli(["run", str(path)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "nodata")
    assert outputs_in(tmp_path) == []


def test_an_area_of_interest_holding_only_nodata_is_refused(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A --bbox over the nodata half of a scene wrote an all-nodata output, exit 0, where a
    file without a valid pixel is refused: the area is now refused as well, with nothing
    written, and an existing output kept even with --overwrite; geosr info says the run refuses it."""
    from geosr.errors import InputError
    from geosr.inspect import plan_run
    from geosr.options import RunOptions

    data = np.zeros((1, 60, 60), np.uint16)
    data[:, :, 30:] = 500  # the east half alone holds data
    path = make_raster(data=data, nodata=0)
    (x0, y0), (x1, y1) = UTM_TRANSFORM @ (2, 40), UTM_TRANSFORM @ (20, 10)
    box = f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}"
    args = ["run", str(path), "--model", "bicubic", "--scale", "2", "--bbox", box, "--bbox-crs", "EPSG:32633"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(
        code, err, f"error: {path}: the area of interest (--bbox '{box}') holds no valid pixel"
    )
    assert err.rstrip().endswith("; give an area where the scene has data, or check the nodata value and "
                                 "mask (gdalinfo), or pass --nodata"), err  # fmt: skip
    assert outputs_in(tmp_path) == []
    kept = tmp_path / "kept.tif"
    kept.write_bytes(b"an earlier output")
    code, err = run_cli([*args, "-o", str(kept), "--overwrite"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "holds no valid pixel")
    assert kept.read_bytes() == b"an earlier output"
    with pytest.raises(
        InputError, match=rf"\(bbox='{re.escape(box)}'\) holds no valid pixel.* or pass nodata"
    ):
        upscale_in_utm_bbox(path, tmp_path / "api.tif", box)
    plan = plan_run(path, RunOptions(scale=2, model="bicubic", bbox=box, bbox_crs="EPSG:32633"))
    assert plan.refused
    assert dict(plan.lines())["valid pixels"] == (
        "none in the area of interest: geosr run refuses it; give an area where the scene has data, "
        "or check the nodata value and mask (gdalinfo), or pass --nodata"
    )
    (x1, y1) = UTM_TRANSFORM @ (32, 10)  # two columns of data: a run
    out = upscale_in_utm_bbox(path, tmp_path / "edge.tif", f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}")
    assert out.exists()


def test_an_area_with_data_the_files_sample_steps_over_is_run(make_raster, tmp_path: Path) -> None:
    """The whole file's strided sample (every 2nd pixel of a 1200 x 1000 file) sees no valid
    pixel in a small area whose one valid pixel lies between its pixels: the area's own sample
    does, and the run goes ahead as geosr info says."""
    from geosr.inspect import plan_run
    from geosr.options import RunOptions

    data = np.zeros((1, 1000, 1200), np.uint16)
    data[:, 501, 501] = 500
    data[:, :, 1100:] = 500  # the file's own data, far from the area
    path = make_raster(data=data, nodata=0)
    (x0, y0), (x1, y1) = UTM_TRANSFORM @ (496, 506), UTM_TRANSFORM @ (506, 496)
    box = f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}"
    options = RunOptions(scale=2, model="bicubic", bbox=box, bbox_crs="EPSG:32633")
    plan = plan_run(path, options, calibrate=True)
    assert not plan.refused
    out = upscale_in_utm_bbox(path, tmp_path / "out.tif", box)
    with rasterio.open(out) as f:
        assert (f.read() > 0).any()


def test_raster_without_crs_is_refused(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster(crs=None)
    code, err = run_cli(["run", str(path)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "no CRS", "gdal_edit")
    assert outputs_in(tmp_path) == []


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the file
def test_raster_without_any_georeferencing_gets_geosrs_line_only(tmp_path: Path) -> None:
    # Before, rasterio's "Dataset has no geotransform ..." warning came first, as a second line.
    import rasterio

    path = tmp_path / "plain.tif"
    with rasterio.open(path, "w", driver="GTiff", width=8, height=8, count=1, dtype="uint8") as dst:
        dst.write(np.ones((1, 8, 8), np.uint8))
    cli = subprocess.run(
        [sys.executable, "-m", "geosr", "run", str(path)], capture_output=True, text=True, check=False
    )
    assert_one_clear_line(cli.returncode, cli.stderr, "plain.tif", "no CRS and no geotransform", "gdal_edit")
    assert len(cli.stderr.strip().splitlines()) == 1, cli.stderr
    # The fix it gives is the whole fix: it told of the CRS alone, and once that was
    # assigned, refused the file again for its geotransform.  Applied as gdal_edit.py would
    # (not installed here: Debian's gdal-bin does not ship it).
    fix = " ".join(cli.stderr.split()).split("e.g. ")[1]
    assert fix == "gdal_edit.py -a_srs EPSG:32633 -a_ullr ULX ULY LRX LRY FILE", fix
    with rasterio.open(path, "r+") as edited:
        edited.crs = "EPSG:32633"
        edited.transform = rasterio.transform.from_bounds(500000, 0, 500080, 80, 8, 8)
    cli = subprocess.run(
        [sys.executable, "-m", "geosr", "info", str(path), "--model", "bicubic"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr


def swath_vrt(folder: Path) -> Path:
    """A 30 x 20 px swath placed by geolocation arrays (GDAL's GEOLOCATION metadata: a longitude
    and a latitude raster), as GDAL presents Sentinel-3, MODIS or VIIRS swaths: no geotransform,
    no CRS of its own."""
    import rasterio

    rows, cols = np.mgrid[0:20, 0:30]
    arrays = {"lon.tif": 10 + 0.01 * cols + 0.002 * rows, "lat.tif": 50 - 0.01 * rows + 0.001 * cols}
    arrays["data.tif"] = (100 + rows + cols).astype("uint16")
    for name, array in arrays.items():
        profile = {"driver": "GTiff", "width": 30, "height": 20, "count": 1, "dtype": array.dtype}
        with rasterio.open(folder / name, "w", **profile) as dst:
            dst.write(array[None])
    geolocation = {
        "SRS": "EPSG:4326",
        "X_DATASET": "lon.tif",
        "X_BAND": 1,
        "Y_DATASET": "lat.tif",
        "Y_BAND": 1,
    }
    geolocation.update(PIXEL_OFFSET=0, LINE_OFFSET=0, PIXEL_STEP=1, LINE_STEP=1)
    items = "".join(f'<MDI key="{key}">{value}</MDI>' for key, value in geolocation.items())
    path = folder / "swath.vrt"
    path.write_text(
        f'<VRTDataset rasterXSize="30" rasterYSize="20"><Metadata domain="GEOLOCATION">{items}</Metadata>'
        '<VRTRasterBand dataType="UInt16" band="1"><SimpleSource>'
        '<SourceFilename relativeToVRT="1">data.tif</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    return path


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")  # writing the files
@pytest.mark.parametrize("command", ["run", "info"])
def test_a_swath_placed_by_geolocation_arrays_is_told_to_warp_it(
    tmp_path: Path, capsys, monkeypatch, command: str
) -> None:
    """A swath (geolocation arrays, no geotransform) was told 'the raster has no CRS; assign one
    with gdal_edit.py -a_srs', which would have placed it by its pixel numbers."""
    path = swath_vrt(tmp_path)
    code, err = run_cli([command, str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "swath.vrt", "geolocation arrays", "gdalwarp -geoloc")
    assert "gdal_edit" not in err
    assert outputs_in(tmp_path) == []


def test_rotated_input_to_zarr_is_refused_before_any_compute(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A rotated grid has no 1-D x/y coordinates: a Zarr output is refused (a COG takes it).
    Before, the run's own store took it and wrote pixel indices as coordinates."""
    from affine import Affine

    path = make_raster(transform=Affine(9.8, 1.7, 500000.0, 1.7, -9.8, 4000000.0))
    code, err = run_cli(
        ["run", str(path), "-o", str(tmp_path / "out_x2.zarr"), "--scale", "2"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "out_x2.zarr", "rotated", "write a .tif instead")
    assert outputs_in(tmp_path) == []


def test_local_crs_input_to_zarr_is_refused_before_any_compute(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A local (engineering) CRS, a site grid, has no CF axes: a Zarr output is refused in
    one line (a COG takes it).  Before, odc-geo's "Neither projected nor geographic" came
    out as a traceback, and the run's hidden folder was left behind."""
    site = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    path = make_raster(crs=site)
    code, err = run_cli(
        ["run", str(path), "-o", str(tmp_path / "out_x2.zarr"), "--scale", "2", "--model", "bicubic"],
        capsys,
        monkeypatch,
    )
    assert_one_clear_line(code, err, "out_x2.zarr", "site grid", "neither projected nor geographic", ".tif")
    assert outputs_in(tmp_path) == []


def test_output_over_input_is_refused(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    path = make_raster()
    before = path.read_bytes()
    code, err = run_cli(["run", str(path), "-o", str(path), "--overwrite"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "input")
    assert path.read_bytes() == before


def test_cuda_without_gpu_is_a_clear_error(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present; the refusal cannot happen")
    path = make_raster()
    code, err = run_cli(["run", str(path), "--device", "cuda"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "CUDA")
    assert outputs_in(tmp_path) == []


def test_console_script_reports_without_traceback(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("geosr")
    result = subprocess.run(
        [str(exe), "run", str(tmp_path / "absent.jp2")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert "absent.jp2" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_evaluate_keeps_an_existing_report_unless_told_to_overwrite(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    # `geosr evaluate --json/--plot` replaced a file the user had, silently.
    import json

    hr = make_raster("field.tif", height=64, width=64)
    report = tmp_path / "mine.json"
    report.write_text("my own notes")
    args = ["evaluate", str(hr), "--scale", "2", "--model", "bicubic", "--json", str(report)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "mine.json already exists", "--overwrite")
    assert report.read_text() == "my own notes"
    code, err = run_cli([*args[:-2], "--plot", str(tmp_path / "no" / "gain.png")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "directory", "does not exist")
    assert not (tmp_path / "no").exists()
    code, err = run_cli([*args, "--overwrite"], capsys, monkeypatch)
    assert code == 0, err
    assert json.loads(report.read_text())["scale"] == 2


@pytest.mark.parametrize("value", ["inf", "-inf"])
def test_infinite_nodata_for_an_integer_scene_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch, value: str
) -> None:
    # int(inf) raised OverflowError: a traceback.
    path = make_raster(dtype="uint16")
    code, err = run_cli(["run", str(path), "--model", "bicubic", f"--nodata={value}"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"nodata {value}", "uint16")
    assert outputs_in(tmp_path) == []


def test_nodata_the_dtype_cannot_hold_says_how_to_fix_it_in_the_callers_words(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """It ended "... or no nodata (--nodata)", which read "... or no nodata (nodata)" to a
    Python caller: a setting in parentheses after the sentence."""
    import geosr

    path = make_raster(dtype="uint16")
    code, err = run_cli(["run", str(path), "--model", "bicubic", "--nodata", "-1"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "nodata -1 is not a valid uint16 value")
    assert err.rstrip().endswith("; give --nodata an integer in [0, 65535] or leave it out"), err
    with pytest.raises(geosr.GeosrError) as api:
        geosr.upscale_file(path, tmp_path / "out.tif", scale=2, model="bicubic", nodata=-1)
    assert str(api.value).endswith("; give nodata an integer in [0, 65535] or leave it out"), api.value
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize("given", ["300", "1e-3", "nan", "-inf"])
def test_nodata_the_dtype_cannot_hold_is_said_as_it_was_typed(
    make_raster, tmp_path: Path, capsys, monkeypatch, given: str
) -> None:
    """--nodata 300 of a uint8 raster was said back as "nodata 300.0", --nodata 1e-3 as 0.001:
    numbers the user never typed.  geosr run, info and compare (and the API, given text or a
    number) now say it as given, with the values to give instead."""
    import geosr

    path = make_raster(dtype="uint8")
    said = f"{path}: nodata {given} is not a valid uint8 value; give --nodata an integer in [0, 255]"
    raster = str(path)
    for command in (["run", raster, "--model", "bicubic"], ["info", raster], ["compare", raster, raster]):
        code, err = run_cli([*command, "--nodata", given], capsys, monkeypatch)
        assert_one_clear_line(code, err, said)
    with pytest.raises(geosr.GeosrError, match=f"nodata {given} is not"):
        geosr.upscale_file(path, tmp_path / "out.tif", scale=2, model="bicubic", nodata=given)
    shown = {"1e-3": "0.001"}.get(given, given)  # a Python float, in Python's shortest form
    with pytest.raises(geosr.GeosrError, match=f"nodata {shown} is not"):
        geosr.upscale_file(path, tmp_path / "out.tif", scale=2, model="bicubic", nodata=float(given))
    assert outputs_in(tmp_path) == []


def test_nodata_the_dtype_cannot_hold_names_the_file(make_raster, tmp_path: Path, capfd, monkeypatch) -> None:
    # Among several inputs the line did not say which one (and geosr info accepted it).
    from tests.test_batch import run_cli as run_capturing_fds  # per-input lines go to fd 2

    small = make_raster("small.tif", dtype="uint8")
    wide = make_raster("wide.tif", dtype="float32")
    args = ["run", str(small), str(wide), "--model", "bicubic", "--nodata", "300"]
    code, _, err = run_capturing_fds(args, capfd, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert err.startswith(f"error: {small}: nodata 300 is not a valid uint8 value"), err
    assert (tmp_path / "wide_x4.tif").exists() and not (tmp_path / "small_x4.tif").exists()
    code, _, err = run_capturing_fds(
        ["info", str(small), "--model", "bicubic", "--nodata", "300"], capfd, monkeypatch
    )
    assert_one_clear_line(code, err, "small.tif", "not a valid uint8 value")


@pytest.mark.parametrize(
    ("option", "says"),
    [
        ({"tile": "64"}, "tile='64' is not supported: use a whole number"),
        ({"tile": 64.5}, "tile=64.5 is not supported"),
        ({"batch_size": "2"}, "batch_size='2'"),
        ({"workers": "2"}, "workers='2'"),
        ({"nodata": "none"}, "nodata='none' is not supported: use a number"),
        ({"offset": [1]}, "offset [1]"),
        ({"device": 0}, "device=0 is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:N'"),
        ({"compile": True}, "compile=True is not supported: use 'auto', 'on' or 'off'"),
        ({"bands": 3}, "bands=3 is not supported: give names or 1-based indexes as text"),
        ({"bbox": {"minx": 1}}, "bbox {'minx': 1} is not supported"),
        ({"aoi": {"type": "Polygon"}}, "aoi= takes the path of a vector file, not a dict: write the area"),
        ({"scheduler": 8786}, "scheduler=8786 is not supported: give the scheduler's address as text"),
    ],
)
def test_python_api_options_of_the_wrong_type_are_one_error(
    make_raster, tmp_path: Path, option: dict, says: str
) -> None:
    """What typer converts on the command line reaches RunOptions as given from Python:
    tile="64" failed with "'<' not supported between instances of 'str' and 'int'",
    tile=64.5 and nodata="none" with a bare TypeError or ValueError."""
    import geosr

    scene = make_raster()
    with pytest.raises(geosr.GeosrError, match=f"^{scene}: {re.escape(says)}"):
        geosr.upscale_file(scene, tmp_path / "out.tif", scale=2, model="bicubic", **option)
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


def test_python_api_switch_given_as_text_does_not_replace_the_output(make_raster, tmp_path: Path) -> None:
    """overwrite="no" (or "false", as a config file gives it) is truthy: it replaced the
    user's existing file without a word."""
    import geosr

    scene = make_raster()
    dst = tmp_path / "out.tif"
    dst.write_bytes(b"the user's file")
    says = "overwrite='no' is not supported: use True or False"
    with pytest.raises(geosr.GeosrError, match=re.escape(says)):
        geosr.upscale_file(scene, dst, scale=2, model="bicubic", overwrite="no")
    assert dst.read_bytes() == b"the user's file"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([scene.name, dst.name])


def test_python_api_refuses_an_output_or_progress_of_the_wrong_type(make_raster, tmp_path: Path) -> None:
    """dst=5 was a TypeError from pathlib; progress=5 one once the first tiles had run,
    which left the run's hidden state beside the output."""
    import geosr

    scene = make_raster()
    with pytest.raises(geosr.GeosrError, match=r"^the output 5 is not supported: give a path or URL"):
        geosr.upscale_file(scene, 5, scale=2, model="bicubic")
    with pytest.raises(geosr.GeosrError, match=r"^progress=5 is not supported: give a function"):
        geosr.upscale_file(scene, tmp_path / "out.tif", scale=2, model="bicubic", progress=5)
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


def test_python_api_takes_an_offset_as_text_and_a_bbox_as_four_numbers() -> None:
    """offset="-1000" passed the type check (text, as --offset reads it) and then failed
    with TypeError 'must be real number, not str'; bbox=(minx, miny, maxx, maxy) with
    AttributeError "'tuple' object has no attribute 'split'"."""
    from geosr.options import RunOptions

    options = RunOptions(offset="-1000", nodata="0", bbox=(13.38, 52.5, 13.42, 52.53))
    assert (options.offset, options.nodata, options.bbox) == (-1000.0, 0.0, "13.38,52.5,13.42,52.53")


def test_python_api_takes_a_torch_device(make_raster, tmp_path: Path) -> None:
    """geosr.load_model takes device=torch.device('cpu'); upscale_file and geosr.upscale
    refused it (before, AttributeError "'torch.device' object has no attribute 'startswith'")."""
    import rioxarray
    import torch

    import geosr

    scene = make_raster(height=20, width=20)
    cpu = torch.device("cpu")
    assert geosr.upscale_file(scene, tmp_path / "out.tif", scale=2, model="bicubic", device=cpu).exists()
    lazy = geosr.upscale(rioxarray.open_rasterio(scene), scale=2, model="bicubic", device=cpu)
    assert lazy.shape == (1, 40, 40)


def test_python_api_takes_one_frame_path_and_numpy_integers(make_raster, tmp_path: Path) -> None:
    """frames="d2.tif" was read as the frames 'd', '2', '.', ... ("d: no such file");
    a numpy integer scale (from an array's shape, say) was refused as "--scale 2"."""
    import geosr
    from geosr.options import RunOptions

    assert RunOptions(frames="d2.tif").frames == ("d2.tif",)
    assert RunOptions(frames=tmp_path / "d2.tif").frames == (str(tmp_path / "d2.tif"),)
    scene = make_raster()
    dst = tmp_path / "out.tif"
    out = geosr.upscale_file(scene, dst, scale=np.int64(2), tile=np.int32(32), model="bicubic")
    assert out.exists()


def test_python_api_writes_into_an_existing_folder(make_raster, tmp_path: Path) -> None:
    """upscale_file(src, FOLDER) writes FOLDER/<stem>_x<scale>.tif, as `geosr run -o FOLDER`
    does: it was refused with "unsupported output suffix '(none)'; use one of .tif, .tiff,
    .zarr, or an existing folder to write it into", about an existing folder."""
    import geosr

    scene = make_raster()
    folder = tmp_path / "out"
    folder.mkdir()
    out = geosr.upscale_file(scene, folder, scale=2, model="bicubic")
    assert out == folder / "scene_x2.tif" and out.is_file()


@pytest.mark.parametrize("name", [".tif", ".ZARR"])
def test_an_output_named_by_its_suffix_alone_asks_for_a_name(make_raster, tmp_path: Path, name: str) -> None:
    """-o out/.tif: Python reads '.tif' as a hidden name without a suffix, so the line said
    "unsupported output suffix '(none)'" of a .tif."""
    import geosr

    scene = make_raster()
    with pytest.raises(geosr.GeosrError) as refused:
        geosr.upscale_file(scene, tmp_path / name, scale=2, model="bicubic")
    assert str(refused.value) == (
        f"cannot write {tmp_path / name}: the file name {name!r} is a suffix alone; give a name, "
        f"e.g. {tmp_path / ('scene_x2' + name)}"
    )
    assert list(tmp_path.iterdir()) == [scene]


def test_python_api_names_an_unknown_option_and_the_one_meant(make_raster, tmp_path: Path) -> None:
    """A misspelt keyword was "RunOptions.__init__() got an unexpected keyword argument
    'batchsize'", naming a class the caller never used."""
    import geosr

    scene = make_raster()
    with pytest.raises(
        geosr.GeosrError,
        match=r"^upscale_file\(\) got unknown option 'batchsize' "
        r"\(did you mean 'batch_size'\?\); it takes: tile, batch_size, ",
    ):
        geosr.upscale_file(scene, tmp_path / "out.tif", scale=2, batchsize=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


def test_python_api_given_a_dataarray_points_to_upscale(make_raster, tmp_path: Path) -> None:
    """upscale_file(da, ...) (geosr.upscale meant) failed with OSError 'File name too long',
    the DataArray's repr taken for a path."""
    import rioxarray

    import geosr

    data = rioxarray.open_rasterio(make_raster(height=16, width=16))
    with pytest.raises(geosr.GeosrError, match=r"not a DataArray; geosr\.upscale\(data, scale=\.\.\.\)"):
        geosr.upscale_file(data, tmp_path / "out.tif", scale=2, model="bicubic")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_damaged_zarr_chunk_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """A Zarr chunk that its codec cannot decode is a corrupt file, reported in one line.
    Before, zstd's RuntimeError ('Zstd decompression error') ended the run in a traceback."""
    import xarray as xr

    from geosr.errors import InputError
    from geosr.io.scene import close_datasets, open_scene, read_window
    from geosr.tiling import Window

    y = 5866490.0 - 10.0 * (np.arange(64) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(64) + 0.5)
    values = np.random.default_rng(6).integers(1, 1000, (1, 64, 64)).astype(np.uint16)
    coords = {"band": [1], "y": y, "x": x}
    da = xr.DataArray(values, dims=("band", "y", "x"), coords=coords, attrs={"proj:epsg": 32633})
    store = tmp_path / "damaged.zarr"
    da.chunk({"y": 32, "x": 32}).to_dataset(name="dn").to_zarr(store, zarr_format=3)
    (store / "dn" / "c" / "0" / "1" / "1").write_bytes(b"not a zstd frame")
    code, err = run_cli(["run", str(store), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "damaged.zarr", "corrupt")
    assert outputs_in(tmp_path) == []
    try:
        with pytest.raises(InputError, match="cannot be decoded"):
            read_window(open_scene(store), Window(40, 40, 8, 8))
    finally:
        close_datasets()


def _small_raster(dims: tuple[str, ...], shape: tuple[int, ...]) -> object:
    import xarray as xr

    y = 5866490.0 - 10.0 * (np.arange(shape[-2]) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(shape[-1]) + 0.5)
    values = np.random.default_rng(7).integers(1, 1000, shape).astype(np.uint16)
    return xr.DataArray(values, dims=dims, coords={"y": y, "x": x}, attrs={"proj:epsg": 32633})


@pytest.mark.parametrize("chosen", [False, True])
def test_zarr_variable_of_four_dimensions_is_one_line(tmp_path: Path, capsys, monkeypatch, chosen) -> None:
    """A (time, band, y, x) variable is refused in one line that says how to select a slice.
    Before, named with --variable it ended in an IndexError traceback, and otherwise the store
    was said to hold '0 raster variables of measurements ()'."""
    store = tmp_path / "cube.zarr"
    _small_raster(("time", "band", "y", "x"), (2, 3, 16, 16)).to_dataset(name="refl").to_zarr(store)
    args = ["run", str(store), "--model", "bicubic", *(["--variable", "refl"] if chosen else [])]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "cube.zarr", "'refl' has 4 dimensions", "ds.isel(time=0)")
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize("empty", ["band", "y"])
def test_a_zarr_variable_without_pixels_is_one_line(tmp_path: Path, capsys, monkeypatch, empty: str) -> None:
    """No band failed on the model's 'bands must be an integer >= 1, got 0', naming no file
    (geosr info too); no row was said to have coordinates no transform could be derived from."""
    store = tmp_path / "empty.zarr"
    _small_raster(("band", "y", "x"), (2, 16, 16)).isel({empty: slice(0, 0)}).to_dataset(name="dn").to_zarr(
        store
    )
    for command in ("run", "info"):
        code, err = run_cli([command, str(store), "--model", "bicubic"], capsys, monkeypatch)
        assert_one_clear_line(code, err, "empty.zarr", f"'dn' holds no pixels ({empty} = 0")
    assert outputs_in(tmp_path) == []


def test_zarr_store_with_its_raster_in_a_group_names_the_group(tmp_path: Path, capsys, monkeypatch) -> None:
    """A store whose raster is in a group (as an EOPF or multiscale store has them) points to
    the group to give.  Before: 'the store holds 0 raster variables of measurements ();
    choose one with --variable NAME', which no --variable could satisfy."""
    store = tmp_path / "product.zarr"
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="b04").to_zarr(store, group="r10m")
    code, err = run_cli(["run", str(store), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "product.zarr", "groups r10m", f"{store}/r10m")
    assert outputs_in(tmp_path) == []
    code, _ = run_cli(["run", f"{store}/r10m", "-o", str(tmp_path / "b04_x2.tif")], capsys, monkeypatch)
    assert code == 0 and (tmp_path / "b04_x2.tif").exists()


def test_zarr_coordinates_not_evenly_spaced_are_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """x coordinates with a jump (tiles concatenated with a gap, a Gaussian grid) have no
    geotransform: refused in one line.  Before, rioxarray's transform spread them evenly
    (10.06 m pixels instead of 10 m) and the output was silently misplaced by up to 2.5 m."""
    da = _small_raster(("y", "x"), (16, 24))
    x = da["x"].values.copy()
    x[12:] += 5.0
    store = tmp_path / "gap.zarr"
    da.assign_coords(x=x).to_dataset(name="dn").to_zarr(store)
    code, err = run_cli(["run", str(store), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "gap.zarr", "x coordinates", "not evenly spaced", "from 10 to 15")
    assert outputs_in(tmp_path) == []
    # Coordinates stored as float32 (rounded to 0.5 m at UTM northings) are not a jump.
    single = _small_raster(("y", "x"), (16, 24))
    single = single.assign_coords(y=single["y"].astype(np.float32), x=single["x"].astype(np.float32))
    single.to_dataset(name="dn").to_zarr(tmp_path / "single.zarr")
    code, _ = run_cli(["run", str(tmp_path / "single.zarr"), "--model", "bicubic"], capsys, monkeypatch)
    assert code == 0


def test_overwrite_never_replaces_the_store_of_an_input_group(tmp_path: Path, capsys, monkeypatch) -> None:
    """--overwrite replaces an earlier output, never what the run reads: an output over the
    store of an input group (product.zarr/r10m -o product.zarr) is refused.  Before, the run
    replaced the store, and its other groups (r20m) were gone."""
    store = tmp_path / "product.zarr"
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="b04").to_zarr(store, group="r10m")
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="b05").to_zarr(store, group="r20m")
    args = ["run", f"{store}/r10m", "-o", str(store), "--overwrite", "--model", "bicubic"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "product.zarr", "would overwrite the input", "r10m")
    assert (store / "r20m" / "b05").is_dir() and (store / "r10m" / "b04").is_dir()


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]], ids=["plain", "overwrite"])
def test_a_folder_of_other_files_at_a_zarr_destination_is_told_at_once(
    make_raster, tmp_path: Path, capsys, monkeypatch, overwrite: list[str]
) -> None:
    """Without --overwrite the line said "already exists; pass --overwrite to replace it", and
    with it: "--overwrite replaces an earlier output, never a folder it did not write"."""
    folder = tmp_path / "notes.zarr"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    args = ["run", str(make_raster()), "-o", str(folder), "--model", "bicubic", *overwrite]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "notes.zarr is a directory of other files", "move it or choose another")
    assert "pass --overwrite" not in err and (folder / "notes.txt").read_text() == "mine"


def test_a_gdal_subdataset_name_of_a_store_says_what_to_give(tmp_path: Path, capsys, monkeypatch) -> None:
    """ZARR:"out.zarr":/band_data (how rasterio opens a Zarr v2 output, and gdalinfo lists a
    store's arrays) was refused as "no such file or directory", though the store is there."""
    store = tmp_path / "scene.zarr"
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="dn").to_zarr(store, zarr_format=2)
    code, err = run_cli(["run", f'ZARR:"{store}":/dn', "--model", "bicubic"], capsys, monkeypatch)
    fix = f"give the file and the variable: {store} --variable dn"
    assert_one_clear_line(code, err, "a GDAL subdataset name", fix)
    assert "no such file" not in err and outputs_in(tmp_path) == []
    missing = f'NETCDF:"{tmp_path / "typo.nc"}":tsm'
    code, err = run_cli(["run", missing, "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, 'typo.nc":tsm: no such file or directory', "--variable NAME")


@pytest.mark.parametrize("output", ["x2.zarr", "x2.tif"])
def test_an_output_inside_the_input_store_is_refused_before_the_run(
    tmp_path: Path, capsys, monkeypatch, output: str
) -> None:
    """in.zarr -o in.zarr/x2.zarr: the output and the run's hidden state, written into the
    store being read, changed it, and the whole run ended in "the file changed while it was
    read (another program wrote to it during the run)", blaming no one there was."""
    scene, product = tmp_path / "scene.zarr", tmp_path / "product.zarr"
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="b04").to_zarr(scene)
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="b04").to_zarr(product, group="r10m")
    for source in (scene, product / "r10m"):
        args = ["run", str(source), "-o", str(source / output), "--model", "bicubic", "--scale", "2"]
        code, err = run_cli(args, capsys, monkeypatch)
        needle = f"{output}: the output would be written inside the input {source},"
        assert_one_clear_line(code, err, needle, "choose an -o path outside it")
        assert sorted(p.name for p in source.iterdir() if "x2" in p.name) == []


def test_zarr_data_type_not_supported_says_which_are(tmp_path: Path, capsys, monkeypatch) -> None:
    """A float16 variable is refused with the types geosr reads and how to convert, as a
    GeoTIFF's is.  Before, the line said only 'data type float16 of 'v' is not supported'."""
    store = tmp_path / "half.zarr"
    _small_raster(("y", "x"), (16, 16)).astype(np.float16).to_dataset(name="v").to_zarr(store)
    code, err = run_cli(["run", str(store), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "half.zarr", "float16", "float32, float64", ".astype('float32')")
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_path_to_a_zarr_array_names_the_store_and_variable(
    tmp_path: Path, capsys, monkeypatch, zarr_format: int
) -> None:
    """scene.zarr/dn (one array of a store) is refused with what to give instead.  Before:
    'An array already exists in store' (v3), or GDAL read a v2 array as a raster without
    CRS and the line said to assign one with gdal_edit.py."""
    store = tmp_path / "scene.zarr"
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="dn").to_zarr(store, zarr_format=zarr_format)
    code, err = run_cli(["run", str(store / "dn"), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "a Zarr array, not a store", f"{store} --variable dn")
    assert outputs_in(tmp_path) == []


def test_zarr_variable_without_coordinates_or_geotransform_is_one_line(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """A variable with a CRS but neither x/y coordinates nor a GeoTransform has no place: it
    is refused, as a GeoTIFF without a geotransform is.  Before, rioxarray's identity
    transform was taken and the run wrote a 'georeferenced' output of 1 m pixels at 0, 0."""
    import xarray as xr

    import geosr
    from geosr.errors import InputError

    values = np.random.default_rng(11).random((16, 16)).astype(np.float32)
    da = xr.DataArray(values, dims=("y", "x"), name="v", attrs={"proj:epsg": 32633})
    store = tmp_path / "nowhere.zarr"
    da.to_dataset().to_zarr(store)
    code, err = run_cli(["run", str(store), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "nowhere.zarr", "neither x/y coordinates nor a GeoTransform")
    assert outputs_in(tmp_path) == []
    with pytest.raises(InputError, match="neither x/y coordinates"):
        geosr.upscale(da.rio.write_crs(32633), scale=2, model="bicubic")


@pytest.mark.parametrize("flag", ["--aoi", "--variable", "--asset", "--frame", "--bbox-crs"])
def test_an_empty_option_value_is_named(make_raster, tmp_path: Path, capsys, monkeypatch, flag: str) -> None:
    """An unset shell variable (``--aoi "$AOI"``): ``--aoi ''`` said that reading '.' needed
    pyogrio, ``--frame ''`` that '' was a folder, ``--bbox-crs ''`` was taken silently."""
    path = make_raster()
    code, err = run_cli(["run", str(path), "--model", "bicubic", flag, ""], capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", f"{flag} is empty")
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize("inputs", [[""], ["scene.tif", " "]])
def test_an_empty_input_is_one_line_not_a_traceback(
    make_raster, tmp_path: Path, capsys, monkeypatch, inputs: list[str]
) -> None:
    """``geosr run "$SCENE"`` with SCENE unset: '' was Path('.'), whose output name raised
    "ValueError: PosixPath('.') has an empty name" as a traceback."""
    make_raster()
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", *inputs, "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"input path {inputs[-1]!r} is empty")
    assert outputs_in(tmp_path) == []


def test_an_empty_output_is_refused_not_read_as_the_working_folder(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """``-o "$OUT"`` with OUT unset: '' was Path('.'), so the output went into the working folder."""
    path = make_raster()
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, err = run_cli(["run", str(path), "--model", "bicubic", "-o", ""], capsys, monkeypatch)
    assert_one_clear_line(code, err, "--output is empty")
    assert list(elsewhere.iterdir()) == [] and outputs_in(tmp_path) == []


def test_an_output_ending_in_a_slash_names_a_folder_never_a_file(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The slash was dropped: ``-o a.tif/ --overwrite`` replaced the file ``a.tif``, and
    ``-o new/`` read as an output 'without a suffix'."""
    path = make_raster()
    kept = tmp_path / "kept.tif"
    kept.write_bytes(b"not to be replaced through a folder's name")
    args = ["run", str(path), "--model", "bicubic", "--overwrite", "-o", f"{kept}/"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "kept.tif/", "is a file, not a folder")
    assert kept.read_bytes() == b"not to be replaced through a folder's name"
    args = ["run", str(path), "--model", "bicubic", "-o", f"{tmp_path / 'new'}/"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "new/", "no such folder", "mkdir -p")
    assert not (tmp_path / "new").exists() and outputs_in(tmp_path) == []


@pytest.mark.parametrize("name", ["new.tif", "new.TIFF"])
def test_a_raster_name_with_a_stray_slash_is_told_to_drop_it(
    make_raster, tmp_path: Path, capsys, monkeypatch, name: str
) -> None:
    """``-o new.tif/`` was told to create a folder 'new.tif' (mkdir -p new.tif) or 'give a .tif'."""
    path = make_raster()
    args = ["run", str(path), "--model", "bicubic", "-o", f"{tmp_path / name}/"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{name}/: no such folder", f"drop the '/' to write {tmp_path / name}")
    assert outputs_in(tmp_path) == []


def _archives(folder: Path, member: Path) -> dict[str, str]:
    """Archives of ``member`` (as 'scene.tif') in ``folder``, broken in each way a member is
    not found by GDAL: the path of each, and what its line says."""
    import tarfile
    import zipfile

    with zipfile.ZipFile(folder / "good.zip", "w") as zipped:
        zipped.write(member, "scene.tif")
    with tarfile.open(folder / "good.tar.gz", "w:gz") as tarred:
        tarred.add(member, "scene.tif")
    (folder / "garbage.zip").write_bytes(b"not a zip at all")
    (folder / "cut.zip").write_bytes((folder / "good.zip").read_bytes()[:900])
    # Info-ZIP's zip writes a UTF-8 name without the UTF-8 flag: an ASCII name of as many bytes,
    # which zipfile writes without it, replaced.
    name, stand_in = "sc é ne.tif", b"sc XX ne.tif"
    with zipfile.ZipFile(folder / "unflagged.zip", "w") as zipped:
        zipped.write(member, stand_in.decode())
    raw = (folder / "unflagged.zip").read_bytes()
    (folder / "unflagged.zip").write_bytes(raw.replace(stand_in, name.encode()))
    not_zip, corrupt = "File is not a zip file", "it is truncated or corrupt"
    return {
        f"/vsizip/{folder}/garbage.zip/scene.tif": f"garbage.zip cannot be read ({not_zip}): {corrupt}",
        f"/vsizip/{folder}/cut.zip/scene.tif": f"cut.zip cannot be read ({not_zip}): {corrupt}",
        f"/vsizip/{folder}/good.zip/Scene.tif": "good.zip holds no 'Scene.tif'; it holds scene.tif",
        f"zip://{folder}/good.zip!/Scene.tif": "good.zip holds no 'Scene.tif'; it holds scene.tif",
        f"/vsitar/{folder}/good.tar.gz/B04.tif": "good.tar.gz holds no 'B04.tif'; it holds scene.tif",
        f"/vsizip/{folder}/unflagged.zip/{name}": "set CPL_ZIP_ENCODING=UTF-8",
    }


def test_an_archive_member_gdal_cannot_find_is_told_why(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A member that a local archive does not hold, a corrupt or truncated archive, and a
    non-ASCII name that Info-ZIP's zip wrote without its UTF-8 flag (which GDAL then reads as
    CP437) were each "not a readable raster ('...' does not exist in the file system, ...);
    check that the file is complete and in a format GDAL reads"."""
    for path, says in _archives(tmp_path, make_raster(height=16, width=16)).items():
        code, err = run_cli(["run", path, "--model", "bicubic"], capsys, monkeypatch)
        assert_one_clear_line(code, err, says)
        assert "does not exist" not in err and outputs_in(tmp_path) == [], err


def test_an_archive_given_whole_is_told_to_name_the_raster_in_it(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`geosr run S2.zip` (a .tar.gz, a .tif.gz) was "not a readable raster ('S2.zip' not recognized
    as being in a supported file format.); check that the file is complete", of a complete file."""
    import gzip

    folder = tmp_path / "archives"
    folder.mkdir()
    _archives(folder, make_raster(height=16, width=16))
    (folder / "scene.tif.gz").write_bytes(gzip.compress((tmp_path / "scene.tif").read_bytes()))
    for name, says in [
        (
            "good.zip",
            f"an archive, not a raster; name the raster in it, e.g. /vsizip/{folder}/good.zip/scene.tif",
        ),
        ("good.tar.gz", f"e.g. /vsitar/{folder}/good.tar.gz/scene.tif (it holds scene.tif)"),
        ("scene.tif.gz", f"a gzip-compressed file, not a raster; give /vsigzip/{folder}/scene.tif.gz"),
    ]:
        code, err = run_cli(["run", str(folder / name), "--model", "bicubic"], capsys, monkeypatch)
        assert_one_clear_line(code, err, says)
        assert "check that the file is complete" not in err and outputs_in(folder) == [], err


def test_an_archives_names_outside_utf8_are_listed_readably(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A zip's names without its UTF-8 flag were listed as zipfile reads them, as CP437: Info-ZIP's
    UTF-8 'sc é ne.tif' as 'sc ├⌐ ne.tif', with no word of why; and a name in Windows' CP1252
    asked for as written was 'holds no ...'."""
    import zipfile

    _archives(tmp_path, make_raster(height=16, width=16))
    name, stand_in = "sc é ne.tif", b"sc X ne.tif"  # é is one byte in CP1252
    with zipfile.ZipFile(tmp_path / "windows.zip", "w") as zipped:
        zipped.write(tmp_path / "scene.tif", stand_in.decode())
    raw = (tmp_path / "windows.zip").read_bytes()
    (tmp_path / "windows.zip").write_bytes(raw.replace(stand_in, name.encode("cp1252")))
    for path, says in [
        (
            f"/vsizip/{tmp_path}/unflagged.zip/B04.tif",
            f"it holds {name}: name one of them; its names are UTF-8",
        ),
        (str(tmp_path / "unflagged.zip"), f"unflagged.zip/{name} (it holds {name}); its names are UTF-8"),
        (f"/vsizip/{tmp_path}/windows.zip/B04.tif", "its names are in a legacy encoding"),
        (f"/vsizip/{tmp_path}/windows.zip/{name}", "names it in CP1252 without saying so"),
    ]:
        code, err = run_cli(["run", path, "--model", "bicubic"], capsys, monkeypatch)
        assert_one_clear_line(code, err, says)
        assert "├" not in err, err


def test_a_tars_names_outside_utf8_are_listed_with_their_bytes(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A tar's Latin-1 name was listed as tarfile keeps it, 'B\\udce4nd.tif', a name no one can
    type, and the fix given (name it) cannot work: geosr passes GDAL UTF-8 names only."""
    import io
    import tarfile

    data = make_raster(height=16, width=16).read_bytes()
    with tarfile.open(tmp_path / "latin.tar", "w", format=tarfile.USTAR_FORMAT, encoding="latin-1") as tarred:
        member = tarfile.TarInfo("B\xe4nd.tif")
        member.size = len(data)
        tarred.addfile(member, io.BytesIO(data))
    for path in (str(tmp_path / "latin.tar"), f"/vsitar/{tmp_path}/latin.tar/B04.tif"):
        code, err = run_cli(["run", path, "--model", "bicubic"], capsys, monkeypatch)
        assert_one_clear_line(code, err, "it holds B\\xe4nd.tif", "extract the raster from the archive")
        assert "udce4" not in err, err


def test_standard_output_as_the_output_is_refused_as_such(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`-o -` (the shell's name of standard output) was "unsupported output suffix '(none)'"."""
    path = make_raster(height=16, width=16)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", str(path), "--model", "bicubic", "-o", "-"], capsys, monkeypatch)
    assert_one_clear_line(
        code, err, "cannot write -: geosr writes its output to a file, not to standard output"
    )
    assert "suffix" not in err and outputs_in(tmp_path) == []


@pytest.mark.parametrize("where", ["/vsimem/out_x2.tif", "/vsizip/{tmp}/outs.zip/out_x2.tif"])
def test_a_local_vsi_output_is_refused_as_such(
    make_raster, tmp_path: Path, capsys, monkeypatch, where: str
) -> None:
    """GDAL's in-memory files and archive members were taken for local paths: "directory
    /vsimem does not exist; create it first", and once created, the output went to disk."""
    path = make_raster(height=16, width=16)
    dst = where.format(tmp=tmp_path)
    code, err = run_cli(["run", str(path), "--model", "bicubic", "-o", dst], capsys, monkeypatch)
    assert_one_clear_line(code, err, dst, "this /vsi path cannot be written to", "local path")
    assert "create it" not in err and outputs_in(tmp_path) == []


@pytest.mark.parametrize(
    ("where", "what"),
    [("zip://{tmp}/outs.zip!/out_x2.tif", "zip:// URL"), ("ftp://host/o.tif", "ftp:// URL")],
)
def test_a_url_of_no_store_as_output_is_refused_as_such(
    make_raster, tmp_path: Path, capsys, monkeypatch, where: str, what: str
) -> None:
    """An archive's URL or an ftp:// one was taken for a local path, 'zip:/.../outs.zip!/out_x2.tif':
    "directory zip:/.../outs.zip! does not exist; create it first", a folder named 'zip:'."""
    path = make_raster(height=16, width=16)
    dst = where.format(tmp=tmp_path)
    code, err = run_cli(["run", str(path), "--model", "bicubic", "-o", dst], capsys, monkeypatch)
    assert_one_clear_line(code, err, dst, f"this {what} cannot be written to", "local path")
    assert "create it" not in err and outputs_in(tmp_path) == []


@pytest.mark.parametrize(("spec", "says"), [("read:x", "'x' is not a count"), ("bogus:1", "unknown phase")])
def test_a_malformed_fault_injection_variable_is_one_line_before_the_run(
    make_raster, tmp_path: Path, capsys, monkeypatch, spec: str, says: str
) -> None:
    # It raised a ValueError traceback at the first tile, leaving the run folder behind.
    import geosr.faults

    monkeypatch.setattr(geosr.faults, "_target", False)  # read again from the environment
    monkeypatch.setenv("GEOSR_FAULT_AT", spec)
    path = make_raster(height=16, width=16)
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"GEOSR_FAULT_AT={spec!r}", says)
    assert outputs_in(tmp_path) == []


def test_a_fault_marker_in_a_missing_folder_is_one_line_before_the_run(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """GEOSR_FAULT_ONCE in a folder that does not exist: a FileNotFoundError traceback at the
    fault, the run folder left behind."""
    import geosr.faults

    monkeypatch.setattr(geosr.faults, "_target", False)  # read again from the environment
    monkeypatch.setenv("GEOSR_FAULT_AT", "write:1")
    marker = str(tmp_path / "missing" / "fired")
    monkeypatch.setenv("GEOSR_FAULT_ONCE", marker)
    path = make_raster(height=16, width=16)
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"GEOSR_FAULT_ONCE={marker!r}", "folder does not exist")
    assert outputs_in(tmp_path) == []


def test_a_zarr_variable_that_is_no_raster_is_told_in_words_with_the_variable_to_give(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """--variable time_bnds of a store was "variable 'time_bnds' has no spatial dimensions (y/x or
    lat/lon): ('time', 'nv')": a Python tuple, and not which variable to give instead."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr

    import geosr
    from geosr.errors import InputError

    y = 5866490.0 - 10.0 * (np.arange(8) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(8) + 0.5)
    raster = xr.DataArray(np.ones((8, 8), "float32"), dims=("y", "x"), coords={"y": y, "x": x})
    ds = raster.rio.write_crs("EPSG:32633").to_dataset(name="red")
    ds["time_bnds"] = xr.DataArray(np.zeros((3, 2)), dims=("time", "nv"))
    ds["crs_code"] = xr.DataArray(32633)
    store = tmp_path / "cube.zarr"
    ds.to_zarr(store, consolidated=False)
    says = "has no spatial dimensions (y/x or lat/lon), only time and nv; give --variable red"
    code, err = run_cli(["run", str(store), "--variable", "time_bnds", "-m", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{store}: variable 'time_bnds' {says}")
    assert "('time'" not in err and len(err.strip().splitlines()) == 1, err
    code, err = run_cli(["info", str(store), "--variable", "crs_code", "--no-calibrate"], capsys, monkeypatch)
    assert_one_clear_line(
        code, err, "variable 'crs_code' has no spatial dimensions (y/x or lat/lon), no dimensions"
    )
    with pytest.raises(InputError, match=r"only time and nv; give variable='red'$"):
        geosr.upscale_file(store, tmp_path / "out.tif", model="bicubic", variable="time_bnds")
    ds["nir"] = raster.rio.write_crs("EPSG:32633")
    ds.to_zarr(tmp_path / "two.zarr", consolidated=False)
    code, err = run_cli(["run", str(tmp_path / "two.zarr"), "--variable", "time_bnds"], capsys, monkeypatch)
    # By name, whatever order the filesystem lists the store's arrays in (it said "red, nir" in
    # one folder and "nir, red" in another).
    assert_one_clear_line(code, err, "only time and nv; give one of nir, red with --variable")
    assert outputs_in(tmp_path) == []


def test_a_zarr_variable_not_linked_to_its_grid_mapping_says_how_to_link_it(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """to_zarr(encoding=...) drops rioxarray's grid_mapping: the store has its spatial_ref, but
    nothing points at it.  Before: 'no CRS (no spatial_ref / grid_mapping / proj:code)' of a store
    with a spatial_ref; now the command that links it, which the test runs to read the store."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)
    import xarray as xr
    import zarr

    from geosr.io.scene import open_scene

    y = 5866490.0 - 10.0 * (np.arange(8) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(8) + 0.5)
    da = xr.DataArray(np.ones((8, 8), np.float32), dims=("y", "x"), coords={"y": y, "x": x})
    store = tmp_path / "enc.zarr"
    encoding = {"band_data": {"chunks": (4, 4)}}
    da.rio.write_crs("EPSG:32633").to_dataset(name="band_data").to_zarr(store, encoding=encoding)
    code, err = run_cli(["run", str(store), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "enc.zarr", "no grid_mapping attribute", "'spatial_ref'")
    fix = " ".join(err.split()).split("metadata again: ")[1]
    exec(fix, {"zarr": zarr})
    assert open_scene(store).grid.crs.epsg == 32633


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "typo.tif: no such file or directory; check the path"),
        ("corrupt", "bad.tif: not a readable raster"),
        ("no CRS", "plain.tif: the raster has no CRS"),
        ("output suffix", "unsupported output suffix '.png'"),
        ("bands", "band 7 does not exist"),
        ("existing output", "mine.tif already exists; pass --overwrite to replace it"),
    ],
)
def test_what_the_header_tells_is_told_before_torch_loads(
    case: str, needle: str, tmp_path: Path, make_raster
) -> None:
    """A mistyped path, a corrupt file, a scene without a CRS, an output path that holds the
    user's own raster: each waited for torch to import (3 s, 17 s on a busy machine: 18.7 s
    against 6.4 s for a corrupt TIFF here) to be told, though the headers alone say it."""
    import subprocess

    args = {
        "missing": [str(tmp_path / "typo.tif")],
        "corrupt": [str(tmp_path / "bad.tif")],
        "no CRS": [str(make_raster("plain.tif", crs=None))],
        "output suffix": [str(make_raster()), "-o", str(tmp_path / "out.png")],
        "bands": [str(make_raster()), "--bands", "7"],
        "existing output": [str(make_raster()), "-o", str(make_raster("mine.tif"))],  # no geosr job's
    }[case]
    (tmp_path / "bad.tif").write_bytes(b"II*\0 not a TIFF after all")
    probe = (
        "import sys\nfrom geosr.cli import main\n"
        f"sys.argv = ['geosr', 'run', *{args!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    print(exc.code, 'torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.stdout.split() == ["2", "False"], (done.stdout, done.stderr)
    assert needle in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_bbox_crs_without_a_bbox_is_refused_not_ignored(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """``--bbox-crs EPSG:32633`` without ``--bbox`` (a box lost from a script, or taken for the CRS
    of --aoi) was ignored: the whole scene ran, as if it were the area asked for."""
    path = make_raster()
    args = ["run", str(path), "--model", "bicubic", "--scale", "2", "--bbox-crs", "EPSG:32633"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "--bbox-crs EPSG:32633", "--bbox")
    assert outputs_in(tmp_path) == []


@pytest.mark.parametrize("flag", ["--output", "--weights"])
def test_an_empty_training_path_is_refused_not_read_as_the_working_folder(
    make_raster, tmp_path: Path, capsys, monkeypatch, flag: str
) -> None:
    """``geosr train ... -o "$RUN"`` with RUN unset: '' was Path('.'), so the run's config.json,
    checkpoints/ and weights went into the working folder."""
    path = make_raster(height=192, width=192)
    monkeypatch.chdir(tmp_path)
    args = ["train", str(path), flag, "", "--steps", "1", "--batch-size", "1"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, flag, "is empty; give a path")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize(
    ("command", "flag"),
    [
        ("evaluate", "--json"),
        ("evaluate", "--plot"),
        ("evaluate", "--workdir"),
        ("compare", "-o"),
        ("train", "--recipe"),
        ("train", "--lr"),
        ("train", "--store"),
    ],
)
def test_an_empty_path_option_is_refused_not_read_as_the_working_folder(
    command: str, flag: str, make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """typer made '' (an unset shell variable, ``--workdir "$WORK"``) the working folder:
    evaluate's GeoTIFFs went there, and ``--json ''`` was told that '.' is a directory."""
    src = str(make_raster())
    monkeypatch.chdir(tmp_path)
    args = {
        "evaluate": ["evaluate", src, "-s", "2", "-m", "bicubic", flag, ""],
        "compare": ["compare", src, src, flag, ""],
        "train": ["train", src, flag, ""],
    }[command]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, flag.lstrip("-")[:4], "is empty; give a path or leave the option out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_scheduler_without_pairs_to_build_is_refused_not_ignored(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """``geosr train hr.tif --scheduler tcp://...`` trained in this process without a word: the
    scheduler builds a paired store only (found by hunt/train)."""
    path = make_raster(height=192, width=192)
    monkeypatch.chdir(tmp_path)
    args = ["train", str(path), "--scheduler", "tcp://127.0.0.1:8786", "--steps", "1", "-o", "run"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "--scheduler tcp://127.0.0.1:8786", "--lr/--hr pairs", "drop --sched")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_brackets_in_a_message_are_printed_as_given(make_raster, tmp_path: Path, capfd, monkeypatch) -> None:
    """The error and warning lines are rich markup: a value in brackets was read as a tag, so
    ``--bands '[/]'`` ended in a MarkupError traceback, ``--device '[red]x'`` was told of as 'x',
    and a warning about ``scene [v2].tif`` named ``scene .tif``."""
    from tests.test_batch import run_cli as run_fd_cli

    path = make_raster(height=16, width=16)
    code, _, err = run_fd_cli(["run", str(path), "--model", "bicubic", "--bands", "[/]"], capfd, monkeypatch)
    assert_one_clear_line(code, err, "no band is described as '[/]'")
    code, _, err = run_fd_cli(["run", str(path), "--device", "[red]x"], capfd, monkeypatch)
    assert_one_clear_line(code, err, "--device '[red]x' is not known")
    data = np.full((1, 16, 16), 500, np.uint16)
    data[:, :, :6] = 0  # an undeclared nodata area: warned about, naming the file
    src = make_raster("scene [v2].tif", data=data)
    args = ["run", str(src), "--model", "bicubic", "-o", str(tmp_path / "out.tif")]
    code, _, err = run_fd_cli(args, capfd, monkeypatch)
    assert code == 0 and "scene [v2].tif: 37.5 % of its pixels are 0" in err, err


def test_a_name_that_is_not_utf8_is_one_line(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """A Latin-1 name off an old archive ('b\\xe4r.tif') reached rasterio as surrogates: a
    UnicodeEncodeError traceback, for an output only after the whole run (at the COG's copy)."""
    import os

    latin1 = tmp_path / os.fsdecode(b"b\xe4r.tif")
    make_raster(height=16, width=16).rename(latin1)
    code, err = run_cli(["run", str(latin1), "--model", "bicubic", "-s", "2"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "b\\xe4r.tif: the name is not UTF-8", "rename it")
    latin1.rename(tmp_path / "scene.tif")
    out = tmp_path / os.fsdecode(b"b\xe4r_x2.tif")
    args = ["run", str(tmp_path / "scene.tif"), "--model", "bicubic", "-s", "2", "-o", str(out)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "b\\xe4r_x2.tif: the name is not UTF-8")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_a_utf8_name_is_read_and_written_in_an_ascii_locale(make_raster, tmp_path: Path) -> None:
    """In a C locale (UTF-8 mode off) Python holds 'scène.tif' with surrogates: it was refused as
    'the name is not UTF-8 ... convmv', and an output in a folder so named was a traceback at the
    COG's build; its STAC Item names both by their UTF-8 bytes."""
    from tests.conftest import in_an_ascii_locale

    src = make_raster(height=16, width=16).rename(tmp_path / "scène.tif")
    (tmp_path / "sortié").mkdir()
    out = tmp_path / "sortié" / "oùt.tif"
    done = in_an_ascii_locale("run", str(src), "-m", "bicubic", "-s", "2", "-o", str(out), "--stac")
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    item = json.loads((tmp_path / "sortié" / "oùt.stac.json").read_text(encoding="utf-8"))
    assert item["assets"]["data"]["href"] == "./o%C3%B9t.tif"
    assert [link["href"] for link in item["links"]] == [f"{tmp_path}/sc%C3%A8ne.tif"]


def test_a_utf8_name_in_a_line_is_shown_by_its_characters_in_an_ascii_locale(
    make_raster, tmp_path: Path
) -> None:
    """In a C locale a line naming 'oùt.tif' showed the surrogates Python holds it with,
    'o\\udcc3\\udcb9t.tif already exists'; now its character, as Python escapes it there."""
    from tests.conftest import in_an_ascii_locale

    src = make_raster(height=16, width=16)
    taken = make_raster("oùt.tif", height=16, width=16)
    done = in_an_ascii_locale("run", str(src), "-m", "bicubic", "-s", "2", "-o", str(taken))
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path}/o\\xf9t.tif already exists"), done.stderr


def test_a_utf8_name_in_geosr_info_is_shown_as_in_an_error_line_in_an_ascii_locale(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale geosr info's table showed 'scène.tif' as 'sc??ne.tif' (each of its UTF-8
    bytes replaced); now as an error line shows it, 'sc\\xe8ne.tif'."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=16, width=16)
    monkeypatch.chdir(tmp_path)  # a name short enough for one line of the table
    done = in_an_ascii_locale("info", "scène.tif", "-m", "bicubic", "-s", "2")
    assert done.returncode == 0, done.stderr
    assert "input           sc\\xe8ne.tif\n" in done.stdout, done.stdout


def _interrupted_in_an_ascii_locale(make_raster, tmp_path: Path, monkeypatch) -> list[str]:
    """The arguments of a run of 'scène.tif' (in ``tmp_path``, the working folder now) that was
    interrupted after its third journaled batch in a C locale."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=200, width=200)
    monkeypatch.chdir(tmp_path)
    args = ["run", "scène.tif", "-m", "bicubic", "-s", "2", "--tile", "64"]
    monkeypatch.setenv("GEOSR_FAULT_AT", "journal:3")
    assert in_an_ascii_locale(*args).returncode != 0
    monkeypatch.delenv("GEOSR_FAULT_AT")
    return args


def test_the_command_to_resume_a_utf8_name_can_be_pasted_in_an_ascii_locale(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale the command to resume named 'scène.tif' 'sc\\xe8ne.tif', which no shell
    reads back as the file; it is $'sc\\xc3\\xa8ne.tif' there, and a C-locale bash runs it."""
    from geosr.io.names import shell_quoted
    from tests.conftest import in_an_ascii_locale

    args = _interrupted_in_an_ascii_locale(make_raster, tmp_path, monkeypatch)
    stale = in_an_ascii_locale(*args)
    assert stale.returncode == 2, stale.stderr
    command = stale.stderr.split("(to resume: ")[-1].rstrip().removesuffix(")")
    assert command == "geosr run $'sc\\xc3\\xa8ne.tif' -m bicubic -s 2 --tile 64 --resume", stale.stderr
    geosr = f"{sys.executable} -m geosr"
    pasted = subprocess.run(
        ["bash", "-c", command.replace("geosr", geosr, 1)],
        env={k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))}
        | {"LC_ALL": "C", "PYTHONUTF8": "0"},
        capture_output=True,
        check=False,
    )
    assert pasted.returncode == 0, pasted.stderr
    assert (tmp_path / "scène_x2.tif").exists()
    # A UTF-8 terminal shows the name, quoted as before.
    assert shell_quoted("scène.tif", "utf-8") == "'scène.tif'"


def test_the_commands_a_line_suggests_can_be_pasted_in_an_ascii_locale(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale the commands a line suggests named 'dossé' as the terminal escapes it,
    'doss\\xe9' (mkdir -p 'doss\\xe9/neuf' made a folder of that name); now by its bytes in
    bash's ANSI-C quoting, which a C-locale bash reads back as the folder."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=16, width=16)
    (tmp_path / "dossé").mkdir()
    monkeypatch.chdir(tmp_path)
    done = in_an_ascii_locale("run", "dossé")
    assert done.stderr.rstrip().endswith("give a quoted glob such as $'doss\\xc3\\xa9/*.tif'"), done.stderr
    done = in_an_ascii_locale("compare", "scène.tif", "scène.tif", "-o", "dossé/neuf/")
    assert "(mkdir -p $'doss\\xc3\\xa9/neuf')" in done.stderr, done.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))} | {"LC_ALL": "C"}
    subprocess.run(["bash", "-c", "mkdir -p $'doss\\xc3\\xa9/neuf'"], env=env, check=True)
    assert (tmp_path / "dossé" / "neuf").is_dir()


def test_the_output_path_on_stdout_is_its_bytes_in_an_ascii_locale(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale geosr run and compare printed 'dossé/oùt.tif' on stdout as 'doss??/o??t.tif'
    (each byte of its UTF-8 replaced), which a script (out=$(geosr run ...)) could not open; it
    is the name's bytes."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=16, width=16)
    (tmp_path / "dossé").mkdir()
    monkeypatch.chdir(tmp_path)
    done = in_an_ascii_locale("run", "scène.tif", "-m", "bicubic", "-s", "2", "-o", "dossé/oùt.tif")
    assert done.returncode == 0 and done.stdout == "dossé/oùt.tif\n", done.stderr
    done = in_an_ascii_locale("compare", "scène.tif", "dossé/oùt.tif", "-o", "dossé/côte.png")
    assert done.returncode == 0 and done.stdout == "dossé/côte.png\n", done.stderr


def test_a_run_of_a_utf8_name_started_in_an_ascii_locale_resumes_in_a_utf8_one(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """A run of 'scène.tif' interrupted in a C locale, which holds the name with surrogates,
    was 'an unfinished run of a different job (... it differs in the input's path)' to the
    same command in a UTF-8 locale; it resumes there."""
    args = _interrupted_in_an_ascii_locale(make_raster, tmp_path, monkeypatch)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG"))} | {"PYTHONUTF8": "1"}
    resumed = subprocess.run(
        [sys.executable, "-m", "geosr", *args, "--resume"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert (tmp_path / "scène_x2.tif").exists()


def test_a_utf8_name_in_the_progress_bar_is_shown_by_its_characters_in_an_ascii_locale(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale the progress bar named 'scène.tif' by the surrogates Python holds it with,
    'sc\\udcc3\\udca8ne.tif'; now as an error line does, 'sc\\xe8ne.tif'."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=16, width=16)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich draws its bar as on a terminal
    done = in_an_ascii_locale("run", "scène.tif", "-m", "bicubic", "-s", "2")
    assert done.returncode == 0, done.stderr
    assert "sc\\xe8ne.tif" in done.stderr and "\\udc" not in done.stderr, done.stderr


class _FullStdout:
    """A stdout redirected to a full disk (``> list.txt``, ``/dev/full``): every write fails."""

    encoding = "utf-8"

    def write(self, _text: str) -> int:
        import errno

        raise OSError(errno.ENOSPC, "No space left on device")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError("no descriptor")


@pytest.mark.parametrize("command", ["run", "models", "info"])
def test_a_stdout_that_cannot_be_written_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch, command: str
) -> None:
    """The path of a written output, or the models' JSON, printed on a full disk: an OSError
    traceback and exit status 1, which did not say that the output was written."""
    src = make_raster(height=16, width=16)
    out = tmp_path / "out.tif"
    args = {
        "run": ["run", str(src), "-m", "bicubic", "-s", "2", "-o", str(out)],
        "models": ["models", "--json"],
        "info": ["info", str(src), "-m", "bicubic", "--no-calibrate"],
    }[command]
    monkeypatch.setattr(sys, "stdout", _FullStdout())
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "cannot write on stdout (No space left on device)")
    if command == "run":
        assert f"error: {out} is written, but cannot write on stdout" in err and out.exists()


def test_without_a_writable_temporary_folder_a_run_works_and_info_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A container with a read-only root, where Python finds no writable TMPDIR, /tmp, /var/tmp
    or working folder: every command died at its start in a FileNotFoundError traceback, a run
    with -o on a writable volume too, which needs no temporary folder; ``info``, which times
    a COG build in one, now says so in one line."""
    import tempfile

    src = make_raster()
    monkeypatch.setattr(tempfile, "tempdir", None)  # as Python looks at its first use
    monkeypatch.setattr(tempfile, "_candidate_tempdir_list", lambda: [str(tmp_path / "none")])
    code, err = run_cli(["run", str(src), "--model", "bicubic", "--scale", "2"], capsys, monkeypatch)
    assert code == 0 and "Traceback" not in err, err
    assert (tmp_path / "scene_x2.tif").is_file()
    # --overwrite: the plan of a rerun over the output just written, which it refuses without.
    info = ["info", str(src), "--model", "bicubic", "--scale", "2", "--overwrite"]
    code, err = run_cli(info, capsys, monkeypatch)
    assert_one_clear_line(code, err, "No usable temporary directory", "set TMPDIR to a writable directory")


def test_a_file_where_the_run_state_goes_is_named_with_its_remedy(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A plain file named like the run-state folder (``.o.tif.geosr-run``) made mkdir say 'File
    exists', and the line advised checking permissions and free space."""
    from geosr.io.runstate import run_dir

    src = make_raster(count=1, height=16, width=16)
    out = tmp_path / "o.tif"
    run_dir(out).write_text("not geosr's")
    code, err = run_cli(["run", str(src), "-o", str(out), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, str(run_dir(out)), "is a file", "move or remove that file")
    assert not out.exists()


def test_a_raster_gdal_cannot_open_is_told_alike_by_run_evaluate_and_train(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A pair's raster (evaluate and train --lr/--hr) and a training raster said 'cannot open
    X: <GDAL's words>', and a URL of a server that cannot be reached 'cannot open URL: CURL
    error ...', where geosr run names the problem and its fix."""
    junk = tmp_path / "junk.tif"
    junk.write_text("not a raster")
    hr = make_raster("hr.tif", height=64, width=64)
    fast = ["-s", "2", "--steps", "1", "--chip", "8", "--device", "cpu", "-o", str(tmp_path / "run")]
    lines = []
    for args in (
        ["run", str(junk), "-m", "bicubic"],
        ["evaluate", "--lr", str(junk), "--hr", str(hr), "-s", "2", "-m", "bicubic"],
        ["train", str(junk), *fast],  # (train --lr reads a pair as evaluate --lr does)
    ):
        code, err = run_cli(args, capsys, monkeypatch)
        assert_one_clear_line(code, err, "junk.tif: not a readable raster", "format GDAL reads")
        lines.append(err)
    assert len(set(lines)) == 1, lines
    unreachable = "https://127.0.0.1:9/lr.tif"
    args = ["evaluate", "--lr", unreachable, "--hr", str(hr), "-s", "2", "-m", "bicubic"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{unreachable}: the server could not be reached", "check the URL")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc file system here")
@pytest.mark.parametrize(
    "args",
    [
        ["run", "{src}", "-s", "2", "-m", "bicubic", "-o", "/proc/out.tif"],
        ["run", "{src}", "-s", "2", "-m", "bicubic", "-o", "/proc/"],
        ["evaluate", "{src}", "-s", "2", "--border", "2", "-m", "bicubic", "--json", "/proc/m.json"],
        ["evaluate", "{src}", "-s", "2", "--border", "2", "-m", "bicubic", "--workdir", "/proc/wd"],
        ["compare", "{src}", "{sr}", "-o", "/proc/c.png"],
        ["train", "{src}", "-s", "2", "--steps", "1", "--device", "cpu", "-o", "/proc/run"],
        ["train", "{src}", "-s", "2", "--steps", "1", "-o", "{tmp}/run", "--weights", "/proc/w"],
    ],
)
def test_an_output_on_the_kernels_proc_file_system_is_no_place_for_files(
    make_raster, tmp_path: Path, capsys, monkeypatch, args: list[str]
) -> None:
    """Root may write in /proc as os.access sees it: `-o /proc/out.tif` was told '0 B are free in
    /proc; free some space', and a report or a PNG 'No such file or directory: /proc/.m.json.tmp'.
    One remedy: train -o /proc/run (and evaluate --workdir) read '... no place for files; choose a
    folder on a disk); choose another --output'."""
    src = make_raster(height=32, width=32)
    sr = make_raster("sr.tif", height=64, width=64, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    code, err = run_cli([a.format(src=src, sr=sr, tmp=tmp_path) for a in args], capsys, monkeypatch)
    assert_one_clear_line(code, err, "/proc is on the kernel's proc file system", "no place for files")
    assert "free" not in err and "No such file" not in err
    assert err.count("choose") == 1, err


def test_a_zarr_array_of_non_ascii_attributes_is_named_in_an_ascii_locale(tmp_path: Path) -> None:
    """Its zarr.json, UTF-8 with an attribute "Réflectance", was read in the locale's encoding: in
    a C locale the refusal of an array for its store was zarr's 'An array already exists in store'."""
    from tests.conftest import in_an_ascii_locale

    store = tmp_path / "scene.zarr"
    _small_raster(("y", "x"), (16, 16)).to_dataset(name="dn").to_zarr(store, zarr_format=3)
    meta = store / "dn" / "zarr.json"
    doc = json.loads(meta.read_text(encoding="utf-8"))
    doc["attributes"]["long_name"] = "Réflectance"
    meta.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    done = in_an_ascii_locale("run", str(store / "dn"), "--model", "bicubic")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "a Zarr array, not a store" in done.stderr and f"{store} --variable dn" in done.stderr, done.stderr


def test_a_non_ascii_warning_during_a_command_in_an_ascii_locale_is_printed() -> None:
    """While a command runs, Python's stderr is the terminal reopened: in the locale's encoding
    with strict errors, where Python's own stderr escapes what it cannot encode, so a warning
    naming "Réflectance" in a C locale was a UnicodeEncodeError traceback."""
    from tests.conftest import in_an_ascii_locale

    probe = (
        "import warnings\n"
        "from geosr.cli import _native_stderr_captured, _warning_lines\n"
        "warnings.showwarning = _warning_lines()\n"
        "with _native_stderr_captured():\n"
        "    warnings.warn('R\\u00e9flectance: a band of that name')\n"
    )
    done = in_an_ascii_locale("-c", probe)
    assert done.returncode == 0, done.stderr
    assert "warning: R\\xe9flectance: a band of that name" in done.stderr, done.stderr
