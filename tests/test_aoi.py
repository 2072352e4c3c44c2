"""--aoi / --bbox: only the AOI's window is computed and written, nodata outside the polygon."""

from __future__ import annotations

import contextlib
import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

import geosr
from geosr.aoi import aoi_window
from geosr.areas import parse_bbox, read_vector
from geosr.errors import InputError, OptionError
from tests.conftest import UTM_TRANSFORM, upscale_in_utm_bbox


def lonlat(x: float, y: float) -> tuple[float, float]:
    return Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(x, y)


def utm_of_pixel(col: float, row: float) -> tuple[float, float]:
    return UTM_TRANSFORM @ (col, row)


def write_geojson(path: Path, ring: list[tuple[float, float]], crs: str | None = None) -> Path:
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [ring]}}
    doc: dict = {"type": "FeatureCollection", "features": [feature]}
    if crs is not None:  # the pre-RFC 7946 "crs" member, still written by many tools
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    path.write_text(json.dumps(doc))
    return path


def triangle_run(src: Path, tmp_path: Path) -> Path:
    """``src`` x2 within a right triangle given in lon/lat, corners at pixels (10, 10),
    (70, 10) and (10, 70) of an 80^2 scene: nodata outside it, in its window."""
    corners = [utm_of_pixel(10, 10), utm_of_pixel(70, 10), utm_of_pixel(10, 70)]
    ring = [lonlat(*c) for c in corners]
    aoi = write_geojson(tmp_path / "area.geojson", [*ring, ring[0]])
    return geosr.upscale_file(src, tmp_path / "tri.tif", scale=2, model="bicubic", aoi=str(aoi))


def test_bbox_in_utm_crops_exactly_and_matches_the_full_run(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=2, height=67, width=91, descriptions=("B04", "B03"))
    full = geosr.upscale_file(src, tmp_path / "full.tif", scale=2, model="bicubic")
    x0, y1 = utm_of_pixel(20.5, 10.2)  # inside pixels: the window snaps outward to 20..61, 10..41
    x1, y0 = utm_of_pixel(60.3, 40.9)
    out = upscale_in_utm_bbox(src, tmp_path / "aoi.tif", f"{x0},{y0},{x1},{y1}")
    with rasterio.open(out) as a, rasterio.open(full) as f:
        assert (a.width, a.height) == (2 * 41, 2 * 31)
        assert a.transform == UTM_TRANSFORM @ Affine.translation(20, 10) @ Affine.scale(0.5)
        assert a.descriptions == ("B04", "B03")
        window = rasterio.windows.Window(40, 20, 82, 62)
        assert np.abs(a.read().astype(int) - f.read(window=window).astype(int)).max() <= 1


def test_the_aoi_is_normalised_as_its_whole_scene(make_raster, tmp_path: Path) -> None:
    """Before, the AOI's own percentiles normalised it: with the default model its output
    differed from the same window of a full run by up to 650 units on real data, and
    neighbouring AOIs did not match.  Bicubic is linear and cannot show it."""
    src = make_raster(count=1, height=96, width=96)
    full = geosr.upscale_file(src, tmp_path / "full.tif", scale=2)
    x0, y1 = utm_of_pixel(8, 8)
    x1, y0 = utm_of_pixel(40, 40)
    out = geosr.upscale_file(
        src, tmp_path / "aoi.tif", scale=2, bbox=f"{x0},{y0},{x1},{y1}", bbox_crs="EPSG:32633"
    )
    with rasterio.open(out) as a, rasterio.open(full) as f:
        assert a.tags()["GEOSR_NORM_SCALE"] == f.tags()["GEOSR_NORM_SCALE"]
        window = rasterio.windows.Window(16, 16, 64, 64)
        assert np.abs(a.read().astype(int) - f.read(window=window).astype(int)).max() <= 1


def test_an_aoi_in_another_crs_tells_of_no_deprecated_library_call(make_raster, tmp_path: Path) -> None:
    # odc-geo's Geometry.to_crs calls shapely.ops.transform: under `python -W default` (or pytest)
    # every run with an AOI said "The 'shapely.ops.transform()' function is deprecated".
    src = make_raster(count=1, height=80, width=80)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        triangle_run(src, tmp_path)
    assert not [str(w.message) for w in caught if "shapely" in str(w.message)]


def test_an_area_of_interest_tells_of_no_deprecated_affine_product(make_raster, tmp_path: Path) -> None:
    """geosr cut the grid of an --aoi or --bbox window with odc-geo's GeoBox slicing, which composes
    transforms with ``*``: under `python -W default` (or pytest) geosr info --bbox said "warning: Use
    `@` matmul instead of `*` mul operator for matrix multiplication", and so did the Python API."""
    import subprocess

    from geosr.inspect import plan_run
    from geosr.options import RunOptions

    src = make_raster(count=1, height=80, width=80)
    (x0, y1), (x1, y0) = utm_of_pixel(10, 10), utm_of_pixel(50, 40)
    box = f"{x0:.0f},{y0:.0f},{x1:.0f},{y1:.0f}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        triangle_run(src, tmp_path)
        geosr.upscale_file(
            src, tmp_path / "box.tif", scale=2, model="bicubic", bbox=box, bbox_crs="EPSG:32633"
        )
        plan_run(src, RunOptions(scale=2, model="bicubic", aoi=str(tmp_path / "area.geojson")))
    assert not [str(w.message) for w in caught if "matmul" in str(w.message)]
    command = [sys.executable, "-W", "default", "-m", "geosr", "info", str(src), "-s", "2", "-m", "bicubic"]
    done = subprocess.run(
        [*command, "--bbox", box, "--bbox-crs", "EPSG:32633"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "matmul" not in done.stderr and "area of interest" in done.stdout, done.stderr


def test_polygon_in_epsg4326_over_a_utm_scene(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=1, height=80, width=80, dtype="uint16", nodata=None)
    # A triangle given in lon/lat: the run covers its window, nodata outside the triangle.
    out = triangle_run(src, tmp_path)
    with rasterio.open(out) as f:
        data = f.read(1)
        assert f.nodata == 0  # the scene had none: outside-polygon pixels need one
        # The reprojected bbox of the triangle snaps to about pixels 10..70 (+-1 for curvature).
        assert abs(f.width - 120) <= 4 and abs(f.height - 120) <= 4
        col, row = ~f.transform @ utm_of_pixel(20, 20)
        assert data[int(row), int(col)] != 0  # inside the triangle
        col, row = ~f.transform @ utm_of_pixel(65, 65)
        assert data[int(row), int(col)] == 0  # outside it, inside the window
        inside = (data != 0).mean()
        assert 0.4 < inside < 0.6  # a right triangle fills half of its box


def test_signed_scene_outside_the_polygon_is_the_types_minimum(make_raster, tmp_path: Path) -> None:
    # 0 marked it before, and a valid 0 inside the polygon (mid-range for int16) became 1.
    data = np.zeros((1, 80, 80), np.int16)
    data[:, :, 40:] = -300
    out = triangle_run(make_raster(data=data), tmp_path)
    with rasterio.open(out) as f:
        values = f.read(1)
        assert f.nodata == -32768
        col, row = ~f.transform @ utm_of_pixel(20, 20)
        assert values[int(row), int(col)] == 0  # inside the triangle: a valid 0 stays 0
        col, row = ~f.transform @ utm_of_pixel(65, 65)
        assert values[int(row), int(col)] == -32768  # outside it


def test_tiles_outside_the_polygon_are_not_computed(make_raster, tmp_path: Path) -> None:
    from geosr.aoi import aoi_mask
    from geosr.grid import scaled
    from geosr.io.scene import open_scene
    from geosr.tiling import plan_tiles

    src = make_raster(count=1, height=64, width=64)
    ring = [utm_of_pixel(0, 0), utm_of_pixel(64, 0), utm_of_pixel(0, 64)]
    aoi = write_geojson(tmp_path / "tri.geojson", [*ring, ring[0]], crs="EPSG:32633")
    grid = scaled(open_scene(src).grid, 2)
    mask = aoi_mask(read_vector(aoi), grid, 0, str(src))
    assert mask is not None
    plan = plan_tiles(64, 64, tile=16, halo=4)
    kept = mask.keep(plan, 2)
    # A 4 x 4 tile grid cut by the anti-diagonal: the 6 tiles below it are dropped.
    assert len(plan) == 16 and len(kept) == 10
    assert all(t.core.row + t.core.col <= 48 for t in kept)
    # End to end: the skipped tiles read back as nodata, the kept ones hold data.
    out = geosr.upscale_file(src, tmp_path / "t.tif", scale=2, model="bicubic", aoi=str(aoi), tile=16)
    with rasterio.open(out) as f:
        data = f.read(1)
        assert f.nodata == 0 and (f.width, f.height) == (128, 128)
        assert (data[96:, 96:] == 0).all() and (data[:32, :32] != 0).all()


def test_an_aoi_given_as_a_file_url_is_read(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """`--aoi file:///data/my%20field.geojson` was 'no such AOI file' of 'file:/data/my%20field.geojson',
    where geosr run takes a file URL for its input and output."""
    from tests.test_bad_input import run_cli

    src = make_raster(count=1, height=64, width=64)
    ring = [utm_of_pixel(0, 0), utm_of_pixel(32, 0), utm_of_pixel(32, 32), utm_of_pixel(0, 32)]
    aoi = write_geojson(tmp_path / "my field.geojson", [*ring, ring[0]], crs="EPSG:32633")
    out = tmp_path / "o.tif"
    args = ["run", str(src), "--model", "bicubic", "--scale", "2", "--aoi", aoi.as_uri(), "-o", str(out)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    with rasterio.open(out) as f:
        assert (f.width, f.height) == (64, 64)


def test_aoi_outside_the_scene_is_a_clear_error(make_raster, tmp_path: Path) -> None:
    src = make_raster()
    with pytest.raises(InputError, match="does not intersect the scene"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", bbox="100,10,101,11")
    assert not (tmp_path / "o.tif").exists()
    # The fix named for a --bbox alone, --bbox-crs, is refused beside --aoi: a file names its own.
    aoi = write_geojson(tmp_path / "far.geojson", [(100, 10), (101, 10), (101, 11), (100, 10)])
    with pytest.raises(InputError, match=r"check the AOI and its CRS \(the crs member of the aoi GeoJSON\)$"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", aoi=str(aoi))


@pytest.mark.parametrize(
    "cols, rows",
    [((2.05, 2.2), (3.1, 3.4)), ((-1.0, 0.2), (0.0, 5.0))],
    ids=["inside one output pixel", "a sliver over the scene's edge"],
)
def test_an_aoi_that_holds_no_output_pixels_centre_is_refused(
    make_raster, tmp_path: Path, cols: tuple[float, float], rows: tuple[float, float]
) -> None:
    """Before, the output was nodata alone, and the run exited 0.  A --bbox of the same
    bounds still gives the input pixel(s) around it (the sliver's said to be clipped)."""
    from geosr.errors import GeosrWarning

    def clipped() -> contextlib.AbstractContextManager[object]:
        past = cols[0] < 0
        return pytest.warns(GeosrWarning, match="reaches past") if past else contextlib.nullcontext()

    src = make_raster(height=9, width=13)
    ring = [utm_of_pixel(c, r) for c, r in ((cols[0], rows[0]), (cols[1], rows[0]), (cols[1], rows[1]))]
    aoi = write_geojson(tmp_path / "small.geojson", [*ring, ring[0]], crs="EPSG:32633")
    refused = r"scene\.tif: the area of interest holds no output pixel's centre"
    with pytest.raises(InputError, match=refused), clipped():
        geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic", aoi=str(aoi))
    assert not (tmp_path / "o.tif").exists()
    (x0, y1), (x1, y0) = utm_of_pixel(cols[0], rows[0]), utm_of_pixel(cols[1], rows[1])
    with clipped():
        out = upscale_in_utm_bbox(src, tmp_path / "b.tif", f"{x0},{y0},{x1},{y1}")
    with rasterio.open(out) as f:
        assert (f.read() != 0).all()


def test_aoi_reaching_where_the_scene_projection_is_undefined(make_raster, tmp_path: Path) -> None:
    # 90 degrees of longitude from the UTM zone's meridian (15 E) projects to infinity:
    # such an AOI was a traceback (OverflowError); only its part over the scene counts.
    src = make_raster(height=40, width=40)
    with pytest.raises(InputError, match="does not intersect the scene"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", bbox="100,-5,110,5")
    assert not (tmp_path / "o.tif").exists()
    whole = geosr.upscale_file(src, tmp_path / "whole.tif", scale=2, model="bicubic")
    # A box from south-west of the scene to beyond the zone covers all of the scene.
    west, south = lonlat(*utm_of_pixel(-5, 45))
    out = geosr.upscale_file(
        src, tmp_path / "box.tif", scale=2, model="bicubic", bbox=f"{west},{south - 60},105,{south + 60}"
    )
    with rasterio.open(whole) as a, rasterio.open(out) as b:
        assert (b.transform, b.shape) == (a.transform, a.shape)
        np.testing.assert_array_equal(b.read(), a.read())
    # A polygon with a vertex there masks the scene as its part over the scene says.
    corner = lonlat(*utm_of_pixel(20, 20))
    ring = [corner, (105.0, corner[1]), (105.0, 0.0), (corner[0], 0.0), corner]
    aoi = write_geojson(tmp_path / "far.geojson", ring)
    masked = geosr.upscale_file(src, tmp_path / "far.tif", scale=2, model="bicubic", aoi=str(aoi))
    with rasterio.open(masked) as f:
        data = f.read(1)
        # The AOI is the scene's south-east quarter, from pixel (20, 20): curvature +-1.
        assert abs(f.width - 40) <= 2 and abs(f.height - 40) <= 2
        assert (data[4:-4, 4:-4] != 0).all()


@pytest.mark.parametrize("box", ["-180,-90,180,90", "-179,-89,179,89"])
def test_a_whole_world_lonlat_box_covers_a_utm_scene(make_raster, tmp_path: Path, box: str) -> None:
    """Its far corners project to a folded, self-intersecting ring beside the UTM zone:
    before, the box was refused as 'does not intersect the scene'."""
    src = make_raster(height=40, width=40)
    whole = geosr.upscale_file(src, tmp_path / "whole.tif", scale=2, model="bicubic")
    out = geosr.upscale_file(src, tmp_path / "world.tif", scale=2, model="bicubic", bbox=box)
    with rasterio.open(whole) as a, rasterio.open(out) as b:
        assert (b.transform, b.shape) == (a.transform, a.shape)
        np.testing.assert_array_equal(b.read(), a.read())


@pytest.mark.parametrize("box", ["-1e309,-1e309,1e309,1e309", "nan,52.5,12.6,52.6"])
def test_a_bbox_of_infinite_or_nan_bounds_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch, box: str
) -> None:
    """An infinite bound was a traceback (ValueError: cannot convert float NaN to integer, exit 1)."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    src = make_raster()
    code, err = run_cli(
        ["run", str(src), "--model", "bicubic", f"--bbox={box}", "-o", str(tmp_path / "o.tif")],
        capsys,
        monkeypatch,
    )
    assert_one_clear_line(code, err, "--bbox", "finite number")
    assert not (tmp_path / "o.tif").exists()


def test_aoi_in_a_crs_with_no_way_to_the_scenes_is_a_clear_error(make_raster, tmp_path: Path) -> None:
    """A scene in a local (site-grid) CRS and a lon/lat box: no transformation exists.  Before,
    pyproj's ProjError came out as a traceback; the box in the scene's own CRS still works."""
    site = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    src = make_raster(crs=site, height=40, width=40)
    with pytest.raises(InputError, match=r"CRS \(EPSG:4326\) cannot be transformed into the scene's CRS"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", bbox="12.5,52.5,12.6,52.6")
    assert not (tmp_path / "o.tif").exists()
    x, y = utm_of_pixel(10, 20)
    box = f"{x},{y},{x + 100},{y + 50}"
    out = geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic", bbox=box, bbox_crs=site)
    with rasterio.open(out) as f:
        assert f.shape == (5 * 2, 10 * 2)  # rows 15-20, cols 10-20
        assert f.transform == UTM_TRANSFORM @ Affine.translation(10, 15) @ Affine.scale(0.5)


def test_bad_bbox_and_both_aoi_options(make_raster, tmp_path: Path) -> None:
    src = make_raster()
    with pytest.raises(OptionError, match="four numbers"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", bbox="1,2,3")
    with pytest.raises(OptionError, match="not both"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", bbox="1,2,3,4", aoi="x.geojson")


@pytest.mark.realdata
def test_cli_bbox_on_a_real_scene(data_dir: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from geosr.cli import app

    jp2 = data_dir / "sentinel2" / "tgt_S2A_20160529T153631_T33UUU_sub.jp2"
    if not jp2.exists():
        pytest.skip("Sentinel-2 JP2 missing")
    with rasterio.open(jp2) as f:
        left, top = f.transform @ (1000, 1500)
    bbox = f"{left},{top - 400},{left + 600},{top}"
    out = tmp_path / "b.tif"
    result = CliRunner().invoke(
        app,
        ["run", str(jp2), "-o", str(out), "--nodata", "0", "--bbox", bbox, "--bbox-crs", "EPSG:32633"],
    )
    assert result.exit_code == 0, result.output
    with rasterio.open(out) as f:
        assert (f.width, f.height) == (240, 160)
        assert f.bounds.left == pytest.approx(left) and f.bounds.top == pytest.approx(top)


def test_info_shows_the_aoi_window(make_raster) -> None:
    from geosr.inspect import plan_run
    from geosr.options import RunOptions

    src = make_raster(count=1, height=67, width=91)
    x0, y1 = utm_of_pixel(20, 10)
    x1, y0 = utm_of_pixel(60, 40)
    options = RunOptions(model="bicubic", bbox=f"{x0},{y0},{x1},{y1}", bbox_crs="EPSG:32633")
    lines = dict(plan_run(src, options, calibrate=False).lines())
    # The last column and row included, as a GDAL user reads a range: 40 x 30 px.
    assert lines["area of interest"] == "cols 20-59, rows 10-39 (40 x 30 px) of the 91 x 67 px file"
    assert lines["grid"].startswith("40 x 30 px")


@pytest.mark.realdata
def test_lonlat_bbox_over_the_real_utm_scene(data_dir: Path, tmp_path: Path) -> None:
    jp2 = data_dir / "sentinel2" / "tgt_S2A_20160529T153631_T33UUU_sub.jp2"
    if not jp2.exists():
        pytest.skip("Sentinel-2 JP2 missing")
    box = (12.70, 52.80, 12.75, 52.83)
    out = geosr.upscale_file(
        jp2, tmp_path / "ll.tif", scale=2, model="bicubic", nodata=0, bbox=",".join(map(str, box))
    )
    to_utm = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
    corners = [to_utm.transform(x, y) for x in box[::2] for y in box[1::2]]
    with rasterio.open(jp2) as src, rasterio.open(out) as f:
        # The window covers the box's four corners and is snapped to whole input pixels.
        assert all(
            f.bounds.left <= x <= f.bounds.right and f.bounds.bottom <= y <= f.bounds.top for x, y in corners
        )
        col, row = ~src.transform @ (f.bounds.left, f.bounds.top)
        assert col == round(col) and row == round(row)
        assert f.width <= 2 * (348 + 2) and f.height <= 2 * (345 + 2)


def test_masks_made_in_many_threads_at_once_warn_of_nothing() -> None:
    # A --workers run masks its tiles in several threads; rasterio's rasterisation, run
    # concurrently, warned "Dataset has no geotransform" about once in 3000 calls (seen
    # as a "warning:" line of `geosr run --aoi ... --workers 2`).
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from odc.geo.geobox import GeoBox
    from rasterio.errors import NotGeoreferencedWarning

    from geosr.aoi import AoiMask
    from geosr.tiling import Window

    grid = GeoBox((256, 256), UTM_TRANSFORM, "EPSG:32633")
    x0, y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    ring = [(x0 + 100, y0 - 100), (x0 + 2000, y0 - 150), (x0 + 1800, y0 - 2400), (x0 + 100, y0 - 100)]
    aoi = AoiMask({"type": "Polygon", "coordinates": [ring]}, grid, 0)
    windows = [Window(r, c, 64, 64) for r in range(0, 256, 64) for c in range(0, 256, 64)] * 1250
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with ThreadPoolExecutor(4) as pool:
            masks = list(pool.map(aoi.outside, windows))
    assert not [str(w.message) for w in caught if issubclass(w.category, NotGeoreferencedWarning)]
    assert {m.sum() for m in masks[:16]} != {0} and all(
        np.array_equal(a, b) for a, b in zip(masks[:16], masks[16:32], strict=True)
    )


def test_an_aoi_that_is_a_raster_or_a_folder_is_said_to_be_one(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Both were said to need pyogrio ('reading .tif vector files needs pyogrio', 'reading  vector
    files ...'); a raster mask is no vector file with pyogrio either."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    src = make_raster()
    mask = make_raster("mask.tif", dtype="uint8")
    out = tmp_path / "o.tif"
    args = ["run", str(src), "--model", "bicubic", "-o", str(out), "--aoi"]
    code, err = run_cli([*args, str(mask)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "mask.tif", "not a raster", "gdal_polygonize.py mask.tif")
    folder = tmp_path / "areas"
    folder.mkdir()
    code, err = run_cli([*args, str(folder)], capsys, monkeypatch)
    # With pyogrio, which reads folders of shapefiles, it says the folder is not a readable one.
    assert_one_clear_line(code, err, "areas")
    assert "a folder, not a vector file" in err or "not a readable vector file" in err
    # A file without a suffix (/dev/null, 'area'): "reading  vector files needs pyogrio".
    (tmp_path / "area").write_text("not GeoJSON either")
    code, err = run_cli([*args, str(tmp_path / "area")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "area")
    assert "reading vector files other than GeoJSON needs pyogrio" in err or "not a readable" in err
    assert not out.exists()


@pytest.mark.parametrize("west", [179.7, -180.3])
def test_an_area_across_the_antimeridian_finds_the_scene_a_turn_away(
    make_raster, tmp_path: Path, west: float
) -> None:
    """A lon/lat scene across the antimeridian has longitudes past 180 (or before -180); a
    box or polygon given a turn of longitude away, as areas usually are, is the same place.
    Before, it was refused: "the area of interest does not intersect the scene"."""
    grid = Affine(0.01, 0, west, 0, -0.01, -16.0)
    src = make_raster(crs="EPSG:4326", transform=grid, height=40, width=56)
    box = "-179.95,-16.3,-179.8,-16.1" if west > 0 else "179.8,-16.3,179.95,-16.1"
    out = geosr.upscale_file(src, tmp_path / "box.tif", scale=2, model="bicubic", bbox=box)
    col = 35 if west > 0 else 10  # the box's west edge on the scene's side: 180.05, or -180.2
    with rasterio.open(out) as f:
        assert f.transform == grid @ Affine.translation(col, 10) @ Affine.scale(0.5)
        assert (f.width, f.height) == (30, 40)
    x0, y0, x1, y1 = (float(v) for v in box.split(","))
    ring = [(x0, y1), (x1, y0), (x1, y1), (x0, y1)]
    aoi = write_geojson(tmp_path / "area.geojson", ring)
    out = geosr.upscale_file(src, tmp_path / "tri.tif", scale=2, model="bicubic", aoi=str(aoi))
    with rasterio.open(out) as f:
        pixels = f.read(1)
        assert f.transform == grid @ Affine.translation(col, 10) @ Affine.scale(0.5)
        # The triangle's north-east half is data, its south-west corner nodata (the mask moved too).
        assert pixels[1, -2] != 0 and pixels[-2, 1] == 0


def test_a_box_whose_west_is_past_its_east_crosses_the_antimeridian(make_raster, tmp_path: Path) -> None:
    """GeoJSON and STAC write a box across the antimeridian west past east (179.9 to
    -179.85): it was refused, "need minx < maxx"."""
    grid = Affine(0.01, 0, 179.7, 0, -0.01, -16.0)
    src = make_raster(crs="EPSG:4326", transform=grid, height=40, width=56)
    out = geosr.upscale_file(
        src, tmp_path / "box.tif", scale=2, model="bicubic", bbox="179.9,-16.3,-179.85,-16.1"
    )
    with rasterio.open(out) as f:
        assert f.transform == grid @ Affine.translation(20, 10) @ Affine.scale(0.5)
        assert (f.width, f.height) == (50, 40)
    with pytest.raises(OptionError, match="need minx < maxx"):
        parse_bbox("500000,6000000,400000,6100000", "EPSG:32633")  # metres: no antimeridian


def test_a_box_on_pixel_edges_gives_exactly_their_window() -> None:
    """A box whose sides are pixel edges (a neighbouring output's bounds, gdalinfo's corners)
    is those pixels, however large the coordinates.  Before, a 1e-9 pixel tolerance was
    finer than a double resolves a UTM northing: with 0.3 m and 0.03 m pixels, rows 7-251
    and 203-313 came out as 6-251 and 202-313."""
    for pixel in (0.3, 0.03, 0.1, 10.0):
        transform = Affine(pixel, 0, UTM_TRANSFORM.c, 0, -pixel, UTM_TRANSFORM.f)
        grid = GeoBox((400, 400), transform, "EPSG:32633")
        for c0, r0, c1, r1 in [(3, 7, 123, 251), (101, 203, 311, 313), (0, 0, 400, 400), (5, 9, 6, 10)]:
            (x0, y1), (x1, y0) = transform @ (c0, r0), transform @ (c1, r1)
            window = aoi_window(grid, parse_bbox(f"{x0!r},{y0!r},{x1!r},{y1!r}", "EPSG:32633"), "scene.tif")
            assert (window.col, window.row, window.width, window.height) == (c0, r0, c1 - c0, r1 - r0)


def test_a_polygon_with_heights_is_its_outline(make_raster, tmp_path: Path) -> None:
    """A GeoJSON with z coordinates (a GPS survey, a KML turned into GeoJSON) ended in a
    traceback: "result() takes 2 positional arguments but 3 were given"."""
    src = make_raster(height=80, width=80)
    flat = triangle_run(src, tmp_path)
    ring = [(*lonlat(*utm_of_pixel(c, r)), 212.5) for c, r in [(10, 10), (70, 10), (10, 70), (10, 10)]]
    aoi = write_geojson(tmp_path / "high.geojson", ring)
    high = geosr.upscale_file(src, tmp_path / "high.tif", scale=2, model="bicubic", aoi=str(aoi))
    with rasterio.open(flat) as f, rasterio.open(high) as h:
        assert h.transform == f.transform and np.array_equal(h.read(), f.read())


RING = [[12.55, 52.92], [12.56, 52.92], [12.56, 52.91], [12.55, 52.92]]
NONFINITE = (
    '{"type": "Polygon", "coordinates": [[[12.55, 52.92], [%s, 52.93], [12.56, 52.92], [12.55, 52.92]]]}'
)
UNKNOWN_CRS = {"type": "name", "properties": {"name": "EPSG:99999"}}


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ({"type": "FeatureCollection", "features": ["area"]}, "list of GeoJSON Feature objects"),
        ({"type": "FeatureCollection", "features": {"a": 1}}, "list of GeoJSON Feature objects"),
        ({"type": "Feature", "geometry": "POLYGON"}, "a geometry cannot be read"),
        (
            {"type": "Polygon", "coordinates": [RING], "crs": UNKNOWN_CRS},
            "names 'EPSG:99999', which is not a CRS",
        ),
        (NONFINITE % "Infinity", "NaN or infinite"),
        (NONFINITE % "NaN", "NaN or infinite"),
        (
            {"geometryType": "esriGeometryPolygon", "features": [{"geometry": {"rings": [RING]}}]},
            "not GeoJSON",
        ),
        ({"type": "Topology", "objects": {}, "arcs": []}, "ogr2ogr -f GeoJSON area.geojson area.geojson"),
        ({"type": "Feature", "geometry": {"coordinates": [RING]}}, "a geometry's type is None"),
    ],
)
@pytest.mark.filterwarnings("error::RuntimeWarning")  # a line on the user's terminal, which capsys misses
def test_a_malformed_geojson_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch, doc, needle
) -> None:
    """Each ended in a traceback (AttributeError, pyproj's CRSError, a GEOSException), or, for a
    NaN coordinate, said the AOI had no area; an Esri JSON, a TopoJSON or a geometry without a
    type 'cannot be read ('NoneType' object has no attribute 'lower')'.  A NaN coordinate had
    shapely's 'warning: invalid value encountered in linearrings' before its line."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    aoi = tmp_path / "area.geojson"
    aoi.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    out = tmp_path / "o.tif"
    args = ["run", str(make_raster()), "--model", "bicubic", "-o", str(out), "--aoi", str(aoi)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "area.geojson", needle)
    assert not out.exists()


def test_a_crs_member_named_as_text_is_honoured(tmp_path: Path) -> None:
    """``"crs": "EPSG:32633"``, a name without the 2008 specification's object around it, ended
    in a traceback ("'str' object has no attribute 'get'")."""
    ring = [utm_of_pixel(c, r) for c, r in [(10, 10), (70, 10), (10, 70), (10, 10)]]
    path = tmp_path / "area.geojson"
    path.write_text(json.dumps({"type": "Polygon", "coordinates": [ring], "crs": "EPSG:32633"}))
    area = read_vector(path)
    assert area.crs == "EPSG:32633" and area.boundingbox == (*utm_of_pixel(10, 70), *utm_of_pixel(70, 10))


def test_a_geojson_with_a_byte_order_mark_is_read(make_raster, tmp_path: Path) -> None:
    """A UTF-8 BOM (Windows tools write one), which GDAL and QGIS read past, was refused:
    "not valid GeoJSON (Unexpected UTF-8 BOM ...)"."""
    src = make_raster(height=80, width=80)
    plain = triangle_run(src, tmp_path)
    aoi = tmp_path / "area.geojson"
    aoi.write_bytes(b"\xef\xbb\xbf" + aoi.read_text().replace("{}", '{"name": "Zürich"}').encode())
    marked = geosr.upscale_file(src, tmp_path / "bom.tif", scale=2, model="bicubic", aoi=str(aoi))
    with rasterio.open(plain) as p, rasterio.open(marked) as m:
        assert m.transform == p.transform and np.array_equal(m.read(), p.read())


def test_an_area_in_metres_taken_for_degrees_is_said_to_be(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A box in the scene's metres without --bbox-crs, or a GeoJSON in UTM without a crs member,
    is read as lon/lat: it was said not to intersect the scene, and to check --bbox-crs, which an
    --aoi file cannot take."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (x0, y1), (x1, y0) = utm_of_pixel(10, 10), utm_of_pixel(70, 70)
    aoi = write_geojson(tmp_path / "area.geojson", [(x0, y0), (x1, y0), (x1, y1), (x0, y0)])
    out = tmp_path / "o.tif"
    args = ["run", str(make_raster()), "--model", "bicubic", "-o", str(out)]
    # Each is told the fix of what it is: a --bbox was told of a GeoJSON's crs member, and a
    # GeoJSON of --bbox-crs, which is refused beside --aoi.
    for area, fix, other in (
        (["--bbox", f"{x0},{y0},{x1},{y1}"], "give --bbox-crs EPSG:32633 with --bbox", "crs member"),
        (["--aoi", str(aoi)], "name the CRS in the GeoJSON's crs member", "--bbox-crs"),
    ):
        code, err = run_cli([*args, *area], capsys, monkeypatch)
        assert_one_clear_line(code, err, "scene.tif", "are not degrees", fix)
        assert other not in err
        assert not out.exists()


def test_a_box_in_the_metres_of_a_crs_without_a_code_is_told_a_bbox_crs_that_is_one(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A scene in a CRS given only as WKT (a local transverse Mercator): the line offered
    "--bbox-crs 'local TM' (WKT, no EPSG code)", which is no CRS; now the WKT, as GDAL prints
    it, which --bbox-crs takes."""
    from pyproj import CRS

    from tests.test_bad_input import assert_one_clear_line, run_cli

    local = CRS("+proj=tmerc +lat_0=47 +lon_0=13.8 +k=0.9999 +x_0=500000 +y_0=-5000000 +ellps=GRS80")
    scene = make_raster(crs=CRS(local.to_wkt().replace('"unknown"', '"local TM"', 1)).to_wkt())
    (x0, y1), (x1, y0) = utm_of_pixel(10, 10), utm_of_pixel(70, 40)
    args = ["run", str(scene), "--model", "bicubic", "-o", str(tmp_path / "o.tif")]
    code, err = run_cli([*args, "--bbox", f"{x0},{y0},{x1},{y1}"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "are not degrees", f'--bbox-crs "$(gdalsrsinfo -o wkt2 {scene})"')
    assert "local TM" not in err
    with rasterio.open(scene) as src:
        grid = GeoBox((src.height, src.width), src.transform, src.crs)
        wkt = CRS(src.crs.to_wkt()).to_wkt(pretty=True)  # gdalsrsinfo -o wkt2's lines
    window = aoi_window(grid, parse_bbox(f"{x0},{y0},{x1},{y1}", wkt), str(scene))
    assert (window.col, window.row, window.width, window.height) == (10, 10, 60, 30)


@pytest.mark.parametrize("name", ["area.shp", "area.gpkg"])
def test_a_vector_file_with_a_wrong_crs_is_told_the_fix_for_its_format(
    name: str, make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A shapefile or GeoPackage in UTM whose CRS says lon/lat, or that lies elsewhere, was told
    to name its CRS in 'the GeoJSON's crs member' (and of --bbox-crs), which it has not.
    pyogrio is stood in for as in test_a_vector_file_without_a_crs_in_metres_is_refused."""
    from tests.test_bad_input import run_cli

    (x0, y1), (x1, y0) = utm_of_pixel(10, 10), utm_of_pixel(70, 70)
    scene, aoi, out = make_raster(), tmp_path / name, tmp_path / "o.tif"
    said = []
    for size, polygon in enumerate((shapely.box(x0, y0, x1, y1), shapely.box(100, 10, 101, 11))):
        aoi.write_bytes(b"." * size)  # another version of the file: read_vector reads it again
        read = lambda path, polygon=polygon: ({"crs": "EPSG:4326"}, None, [shapely.to_wkb(polygon)], None)  # noqa: E731
        monkeypatch.setitem(sys.modules, "pyogrio", SimpleNamespace(raw=SimpleNamespace(read=read)))
        args = ["run", str(scene), "--model", "bicubic", "--aoi", str(aoi), "-o", str(out)]
        code, err = run_cli(args, capsys, monkeypatch)
        assert code == 2 and not out.exists()
        said.append(err.splitlines()[-1])
    assert said[0].startswith(f"error: {scene}: the area of interest's bounds (335540.0, 5865790.0, ")
    assert said[0].endswith(
        "are not degrees, which its CRS (EPSG:4326) takes; if they are in the scene's CRS, give the file "
        f"that CRS in place of the lon/lat one it names: ogr2ogr -a_srs EPSG:32633 area_crs.gpkg {aoi}"
    )
    assert said[1].startswith(f"error: {scene}: the area of interest does not intersect the scene ")
    assert said[1].endswith(
        f"check the AOI and its CRS (the one the file names, as ogrinfo -so -al {aoi} shows it)"
    )
    assert not any("GeoJSON" in line or "--bbox-crs" in line for line in said)


def test_a_bbox_crs_of_a_compound_crs_by_its_parts_codes_is_taken(make_raster, tmp_path: Path) -> None:
    """--bbox-crs EPSG:32633+5773 (UTM with EGM96 heights, as PROJ and GDAL name it, and as
    geosr's own line offers it for such a scene) was 'not a CRS (invalid literal for int())'."""
    scene = make_raster(crs="EPSG:32633+5773", height=40, width=40)
    (x0, y1), (x1, y0) = utm_of_pixel(10, 10), utm_of_pixel(30, 20)
    out = geosr.upscale_file(
        scene,
        tmp_path / "o.tif",
        scale=2,
        model="bicubic",
        bbox=f"{x0},{y0},{x1},{y1}",
        bbox_crs="EPSG:32633+5773",
    )
    with rasterio.open(out) as dst:
        assert dst.shape == (20, 40) and dst.transform == UTM_TRANSFORM @ Affine.translation(
            10, 10
        ) @ Affine.scale(0.5)


def test_an_area_across_the_antimeridian_keeps_both_sides_of_a_global_grid(
    make_raster, tmp_path: Path
) -> None:
    """A global lon/lat grid (-180 to 180) holds both sides of a box across the antimeridian:
    170 to -170 gave the columns from 170 to 180 alone, and a box from 12.75 east round the
    globe to 12.5 only its columns east of 12.75."""
    src = make_raster(crs="EPSG:4326", transform=Affine(1, 0, -180, 0, -1, 90), height=180, width=360)
    out = geosr.upscale_file(src, tmp_path / "box.tif", scale=2, model="bicubic", bbox="170,-20,-170,-10")
    with rasterio.open(out) as f:
        assert (f.width, f.height) == (720, 20) and f.bounds == (-180, -20, 180, -10)
    ring = [(170, -20), (190, -20), (190, -10), (170, -10), (170, -20)]
    aoi = write_geojson(tmp_path / "area.geojson", ring)
    out = geosr.upscale_file(src, tmp_path / "aoi.tif", scale=2, model="bicubic", aoi=str(aoi))
    with rasterio.open(out) as f:
        inside = f.read(1) != f.nodata
        assert f.bounds == (-180, -20, 180, -10)
        # Valid within 10 degrees of the antimeridian on both sides, nodata between.
        assert inside[:, :20].all() and inside[:, -20:].all() and not inside[:, 20:-20].any()
    out = geosr.upscale_file(src, tmp_path / "typo.tif", scale=2, model="bicubic", bbox="12.75,-20,12.5,-10")
    with rasterio.open(out) as f:
        assert f.bounds == (-180, -20, 180, -10)


def test_a_vector_file_without_a_crs_in_metres_is_refused(tmp_path: Path, monkeypatch) -> None:
    """A shapefile without its .prj is taken for lon/lat; in UTM it was then said not to meet the
    scene and to check --bbox-crs, which an --aoi file cannot take.  pyogrio is stood in for:
    geosr takes its meta, fids, WKB geometries and fields (``pyogrio.raw.read``)."""
    (x0, y1), (x1, y0) = utm_of_pixel(10, 10), utm_of_pixel(70, 70)
    shp = tmp_path / "area.shp"
    shp.write_bytes(b"")

    def without_a_crs(polygon: shapely.Geometry) -> Path:
        read = lambda path: ({"crs": None}, None, [shapely.to_wkb(polygon)], None)  # noqa: E731
        monkeypatch.setitem(sys.modules, "pyogrio", SimpleNamespace(raw=SimpleNamespace(read=read)))
        return shp

    with pytest.raises(InputError, match=r"area.shp: the file names no CRS .* ogr2ogr -a_srs EPSG:32633"):
        read_vector(without_a_crs(shapely.box(x0, y0, x1, y1)))
    # In degrees, it is lon/lat as before.
    assert read_vector(without_a_crs(shapely.box(*lonlat(x0, y0), *lonlat(x1, y1)))).crs == "EPSG:4326"


@pytest.mark.parametrize("name", ["area.shp", "area.gpkg"])
def test_a_vector_file_drawn_across_the_antimeridian_is_refused_in_its_own_terms(
    name: str, tmp_path: Path, monkeypatch
) -> None:
    """A shapefile or GeoPackage polygon written across the antimeridian was refused as one that
    'GeoJSON reads' the long way round, to be split 'as RFC 7946, 3.1.9' says: neither applies to
    the file given.  pyogrio is stood in for as in the test above."""
    across = shapely.Polygon([(179.9, -16.3), (-179.85, -16.3), (-179.85, -16.1), (179.9, -16.1)])
    read = lambda path: ({"crs": "EPSG:4326"}, None, [shapely.to_wkb(across)], None)  # noqa: E731
    monkeypatch.setitem(sys.modules, "pyogrio", SimpleNamespace(raw=SimpleNamespace(read=read)))
    path = tmp_path / name
    path.write_bytes(b"")
    with pytest.raises(InputError) as refused:
        read_vector(path)
    assert str(refused.value) == (
        f"{path}: a polygon edge runs from longitude 179.9 to -179.85, 359.75 degrees the long way round "
        "as the file's coordinates read; if the area crosses the antimeridian, split it there into a "
        f"polygon on each side (ogr2ogr -wrapdateline -t_srs EPSG:4326 split.gpkg {name}), and if it is "
        "that wide, add vertices so that no edge spans over 180 degrees"
    )


def test_a_scene_across_the_antimeridian_is_said_to_run_west_past_east(make_raster, tmp_path: Path) -> None:
    """A UTM zone 1 scene from 179.9 E to 179.82 W missed by an area at 170 W: its bounds were
    given as (-179.82, ..., 179.9, ...), the globe the other way round, in which -170 lies."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32701", always_xy=True).transform(179.9, -16.0)
    src = make_raster(crs="EPSG:32701", transform=Affine(100, 0, x, 0, -100, y), height=60, width=300)
    with pytest.raises(InputError, match=r"scene bounds \(179\.899162, -16\.058\d*, -179\.819\d*, -16\.0\)"):
        geosr.upscale_file(src, tmp_path / "o.tif", model="bicubic", bbox="-170,-16.3,-169,-16.1")


def test_a_box_on_pixel_edges_typed_in_decimals_gives_exactly_their_window() -> None:
    """Bounds are typed in decimals: gdalinfo prints lon/lat corners to 7 of them, 4e-5 of a
    one arc-second pixel off its edge.  Such a box on a neighbouring tile's edges gained a row
    or a column on about half of its sides (the tolerance was the doubles' rounding, 1e-9)."""
    pixel = 1 / 3600
    transform = Affine(pixel, 0, 10.0, 0, -pixel, 47.0)
    grid = GeoBox((3600, 3600), transform, "EPSG:4326")
    for c0, r0, c1, r1 in [
        (1544, 2056, 3137, 2732),
        (433, 1042, 3383, 2878),
        (7, 11, 8, 12),
        (1, 2, 3599, 3600),
    ]:
        (x0, y1), (x1, y0) = transform @ (c0, r0), transform @ (c1, r1)
        window = aoi_window(grid, parse_bbox(f"{x0:.7f},{y0:.7f},{x1:.7f},{y1:.7f}"), "dem.tif")
        assert (window.col, window.row, window.width, window.height) == (c0, r0, c1 - c0, r1 - r0)


def test_a_lonlat_cap_over_a_polar_scene_around_the_pole(make_raster, tmp_path: Path) -> None:
    """A polar stereographic scene around the North Pole and a lon/lat box up to it: the box
    was said not to intersect the scene (its footprint in lon/lat is no polygon there)."""
    src = make_raster(
        crs="EPSG:3413", transform=Affine(1000, 0, -100000, 0, -1000, 100000), height=200, width=200
    )
    out = geosr.upscale_file(src, tmp_path / "cap.tif", scale=2, model="bicubic", bbox="-180,89.5,180,90")
    with rasterio.open(out) as f:  # 89.5 N is 55 km from the pole in EPSG:3413: 55 pixels each way
        assert f.transform == Affine(500, 0, -55000, 0, -500, 55000) and f.shape == (220, 220)
    ring = [(lon, 89.5) for lon in range(-180, 181, 10)] + [(180, 90), (-180, 90), (-180, 89.5)]
    aoi = write_geojson(tmp_path / "cap.geojson", ring)
    out = geosr.upscale_file(src, tmp_path / "aoi.tif", scale=2, model="bicubic", aoi=str(aoi))
    with rasterio.open(out) as f:  # the cap's disc is data, the corners of its window are not
        pixels = f.read(1)
        assert pixels[110, 110] != 0 and pixels[0, 0] == pixels[-1, -1] == 0


def test_points_and_lines_beside_the_polygon_are_left_out(make_raster, tmp_path: Path) -> None:
    """A FeatureCollection with a marker and a line beside the polygon (as geojson.io draws them):
    they stretched the window to reach them and burnt their pixels into the mask as valid."""
    src = make_raster(height=80, width=80)
    polygon = triangle_run(src, tmp_path)
    doc = json.loads((tmp_path / "area.geojson").read_text())
    marker = {"type": "Point", "coordinates": lonlat(*utm_of_pixel(70.5, 70.5))}
    line = {"type": "LineString", "coordinates": [lonlat(*utm_of_pixel(c, 5.5)) for c in (50.5, 75.5)]}
    doc["features"] += [{"type": "Feature", "properties": {}, "geometry": g} for g in (marker, line)]
    (tmp_path / "mixed.geojson").write_text(json.dumps(doc))
    mixed = geosr.upscale_file(
        src, tmp_path / "mixed.tif", scale=2, model="bicubic", aoi=str(tmp_path / "mixed.geojson")
    )
    with rasterio.open(polygon) as p, rasterio.open(mixed) as m:
        assert (m.transform, m.shape) == (p.transform, p.shape) and np.array_equal(m.read(), p.read())


def test_an_area_given_latitude_first_is_said_to_be(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """A box copied as latitude, longitude (as map sites give a place) was said not to meet the
    scene and to check its CRS, which is right; the swap was left to be found."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (x0, y0), (x1, y1) = lonlat(*utm_of_pixel(10, 50)), lonlat(*utm_of_pixel(50, 10))
    out = tmp_path / "o.tif"
    args = ["run", str(make_raster()), "--model", "bicubic", "-o", str(out), "--bbox", f"{y0},{x0},{y1},{x1}"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "does not intersect", "read as latitude, longitude, it meets the scene")
    assert not out.exists()
    # One that misses the scene either way keeps the usual advice.
    code, err = run_cli([*args[:-1], "100,10,101,11"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "does not intersect", "check the AOI and its CRS")


def test_a_box_thinner_than_the_edge_tolerance_is_the_pixel_it_lies_in() -> None:
    """A box within a thousandth of a pixel of an edge snapped to no pixel at all, and was said
    not to meet the scene."""
    grid = GeoBox((400, 400), UTM_TRANSFORM, "EPSG:32633")
    (x0, y1), (x1, y0) = UTM_TRANSFORM @ (5.9995, 7.0002), UTM_TRANSFORM @ (5.9999, 7.0006)
    window = aoi_window(grid, parse_bbox(f"{x0!r},{y0!r},{x1!r},{y1!r}", "EPSG:32633"), "scene.tif")
    assert (window.col, window.row, window.width, window.height) == (5, 7, 1, 1)


def test_the_same_area_named_another_way_is_the_same_job(tmp_path: Path, monkeypatch) -> None:
    """A run resumed with --aoi ./field.geojson for its absolute path, or with --bbox 12.5550,...
    for 12.555,..., was refused: 'an unfinished run of a different job (it differs in --bbox)'."""
    from geosr.fingerprint import area_of_interest
    from geosr.options import RunOptions

    monkeypatch.chdir(tmp_path)
    write_geojson(
        tmp_path / "field.geojson", [(12.55, 52.91), (12.56, 52.91), (12.56, 52.92), (12.55, 52.91)]
    )
    relative, absolute = RunOptions(aoi="./field.geojson"), RunOptions(aoi=str(tmp_path / "field.geojson"))
    assert area_of_interest(relative) == area_of_interest(absolute)
    typed = [
        RunOptions(bbox=text) for text in ("12.555,52.905,12.565,52.915", "12.5550, 52.9050, 12.565, 52.915")
    ]
    assert area_of_interest(typed[0]) == area_of_interest(typed[1])
    assert area_of_interest(typed[0]) != area_of_interest(RunOptions(bbox="12.555,52.905,12.565,52.916"))
    spelt = [RunOptions(bbox=typed[0].bbox, bbox_crs=crs) for crs in ("epsg:4326", "EPSG:4326", "OGC:CRS84")]
    assert area_of_interest(spelt[0]) == area_of_interest(spelt[1]) == area_of_interest(typed[0])
    assert area_of_interest(spelt[2]) != area_of_interest(spelt[1])  # lon/lat too, yet another CRS


def test_an_aoi_file_is_read_once_per_version(make_raster, tmp_path: Path) -> None:
    """A run asked for the file twice (its window, then its mask), and a batch twice per input:
    1.7 s each for a 5000-field AOI.  Now once; an edited AOI is read again."""
    from geosr.areas import _read_vector

    src = make_raster(count=1, height=80, width=80)
    _read_vector.cache_clear()
    first = triangle_run(src, tmp_path)
    assert (_read_vector.cache_info().misses, _read_vector.cache_info().hits) == (1, 1)
    with rasterio.open(first) as ds:
        assert (ds.width, ds.height) == (120, 120)
    corners = [utm_of_pixel(10, 10), utm_of_pixel(40, 10), utm_of_pixel(10, 40)]
    ring = [lonlat(*c) for c in corners]
    write_geojson(tmp_path / "area.geojson", [*ring, ring[0]])  # the same file, edited
    smaller = geosr.upscale_file(
        src, tmp_path / "small.tif", scale=2, model="bicubic", aoi=str(tmp_path / "area.geojson")
    )
    with rasterio.open(smaller) as ds:
        assert (ds.width, ds.height) == (60, 60)
    assert _read_vector.cache_info().misses == 2


def test_a_polygon_drawn_across_the_antimeridian_is_refused_until_split(make_raster, tmp_path: Path) -> None:
    """A polygon written across the antimeridian (179.9 to -179.85), which GeoJSON reads the long
    way round (RFC 7946 asks for it to be split there), gave the scene's full width, most of it
    valid; it is refused, and split as RFC 7946 says, it gives its own columns."""
    grid = Affine(0.01, 0, 179.7, 0, -0.01, -16.0)
    src = make_raster(crs="EPSG:4326", transform=grid, height=40, width=56)
    across = [(179.9, -16.3), (-179.85, -16.3), (-179.85, -16.1), (179.9, -16.1), (179.9, -16.3)]
    aoi = write_geojson(tmp_path / "across.geojson", across)
    out = tmp_path / "out.tif"
    with pytest.raises(InputError) as refused:
        geosr.upscale_file(src, out, scale=2, model="bicubic", aoi=str(aoi))
    assert str(refused.value) == (
        f"{aoi}: a polygon edge runs from longitude 179.9 to -179.85, which GeoJSON reads as 359.75 "
        "degrees the long way round; if the area crosses the antimeridian, split it there into a polygon "
        "on each side (RFC 7946, 3.1.9), and if it is that wide, add vertices so that no edge spans over "
        "180 degrees"
    )
    assert not out.exists()
    halves = [[(179.9, -16.3), (180, -16.3), (180, -16.1), (179.9, -16.1), (179.9, -16.3)]]
    halves += [[(-180, -16.3), (-179.85, -16.3), (-179.85, -16.1), (-180, -16.1), (-180, -16.3)]]
    split = {"type": "MultiPolygon", "coordinates": [[ring] for ring in halves]}
    (tmp_path / "split.geojson").write_text(json.dumps(split))
    geosr.upscale_file(src, out, scale=2, model="bicubic", aoi=str(tmp_path / "split.geojson"))
    with rasterio.open(out) as f:
        assert f.transform == grid @ Affine.translation(20, 10) @ Affine.scale(0.5)
        assert (f.width, f.height) == (50, 40) and (f.read(1) != 0).all()


def test_a_box_reaching_past_the_scene_is_said_to_be_clipped(make_raster, tmp_path: Path) -> None:
    """A box over the scene's west edge was clipped to the scene without a word: the output
    covered less than the area asked for. It is said, with the window the output covers; a
    box inside the scene, or on its very edges, is not."""
    from geosr.errors import GeosrWarning

    src = make_raster(height=67, width=91)
    x0, y1 = utm_of_pixel(-10, 5)
    x1, y0 = utm_of_pixel(30, 25)
    past = (
        f"{src}: the area of interest reaches past the scene's edge; the output covers only its part "
        "inside the scene (cols 0-29, rows 5-24 of the 91 x 67 px file)"
    )
    with pytest.warns(GeosrWarning) as caught:
        out = upscale_in_utm_bbox(src, tmp_path / "past.tif", f"{x0},{y0},{x1},{y1}")
    assert [str(w.message) for w in caught if issubclass(w.category, GeosrWarning)] == [past]
    with rasterio.open(out) as o:
        assert o.transform == UTM_TRANSFORM @ Affine.translation(0, 5) @ Affine.scale(0.5)
    grid = GeoBox((67, 91), UTM_TRANSFORM, "EPSG:32633")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)
        for c0, r0, c1, r1 in [(0, 0, 91, 67), (3, 4, 50, 60)]:
            (x0, y1), (x1, y0) = utm_of_pixel(c0, r0), utm_of_pixel(c1, r1)
            window = aoi_window(grid, parse_bbox(f"{x0!r},{y0!r},{x1!r},{y1!r}", "EPSG:32633"), "scene.tif")
            assert (window.col, window.row, window.width, window.height) == (c0, r0, c1 - c0, r1 - r0)
