"""Masked inputs: an internal mask or an alpha band hides pixels exactly as nodata does.

Aerial and web imagery often marks its no-data area with a per-dataset mask
(JPEG-compressed RGB COGs) or an alpha band instead of a nodata value.  Those
pixels must not enter the model as data, and the output must mark them: geosr
reads them as invalid and writes them as the output's nodata (0 for integers,
NaN for floats), so a masked scene gives the very pixels of the same scene with
the masked area set to a nodata value.  Bands with nodata values of their own (a
VRT stacking separate files) are the same case: each band's nodata pixels are
invalid in that band only.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

import geosr
from geosr.io.scene import open_scene
from tests.conftest import UTM_TRANSFORM, coordinate_pattern
from tests.test_bad_input import assert_one_clear_line, run_cli

PROFILE = {"driver": "GTiff", "crs": "EPSG:32633", "transform": UTM_TRANSFORM, "tiled": True}


def hidden_area(height: int, width: int) -> np.ndarray:
    """True where the mask hides pixels: a corner and a hole, as a clipped mosaic has."""
    rows, cols = np.mgrid[0:height, 0:width]
    return (rows + cols < 40) | ((rows - 45) ** 2 + (cols - 60) ** 2 < 64)


def write(path: Path, data: np.ndarray, **extra: object) -> Path:
    count, height, width = data.shape
    profile = {**PROFILE, "count": count, "height": height, "width": width, "dtype": str(data.dtype)}
    with rasterio.open(path, "w", **{**profile, **extra}) as dst:
        dst.write(data)
    return path


def with_internal_mask(path: Path, data: np.ndarray, hidden: np.ndarray) -> Path:
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True):
        count, height, width = data.shape
        profile = {**PROFILE, "count": count, "height": height, "width": width, "dtype": str(data.dtype)}
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
            dst.write_mask(np.where(hidden, 0, 255).astype(np.uint8))
    return path


def read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile, tuple[ColorInterp, ...]]:
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.colorinterp


@pytest.mark.parametrize(("model", "tile"), [("bicubic", None), (None, None), (None, 32)])
def test_internal_mask_gives_the_pixels_of_the_same_scene_with_nodata(
    tmp_path: Path, model: str | None, tile: int | None
) -> None:
    # tile 32: 12 tiles, the hidden corner and hole cross their borders and halos.
    data = coordinate_pattern(2, 96, 112, "uint16")  # every value >= 1: 0 is free to mean nodata
    hidden = hidden_area(96, 112)
    masked = with_internal_mask(tmp_path / "masked.tif", data, hidden)
    assert open_scene(masked).masked
    reference = write(tmp_path / "nodata.tif", np.where(hidden, 0, data).astype(data.dtype), nodata=0)

    a = geosr.upscale_file(masked, tmp_path / "masked_x2.tif", scale=2, model=model, tile=tile)
    b = geosr.upscale_file(reference, tmp_path / "nodata_x2.tif", scale=2, model=model, tile=tile)
    (pixels, profile, _), (expected, expected_profile, _) = read(a), read(b)
    assert profile["nodata"] == 0 == expected_profile["nodata"]
    np.testing.assert_array_equal(pixels, expected)
    hidden_hr = hidden.repeat(2, 0).repeat(2, 1)
    assert (pixels[:, hidden_hr] == 0).all() and (pixels[:, ~hidden_hr] != 0).all()


def test_alpha_band_is_the_mask_not_a_band(tmp_path: Path) -> None:
    rgb = coordinate_pattern(3, 80, 90, "uint8")
    hidden = hidden_area(80, 90)
    alpha = np.where(hidden, 0, 255).astype(np.uint8)[None]
    rgba = write(tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES")
    scene = open_scene(rgba)
    assert scene.masked and scene.count == 3 and scene.bands == (1, 2, 3)
    reference = write(
        tmp_path / "rgb.tif", np.where(hidden, 0, rgb).astype(np.uint8), nodata=0, photometric="RGB"
    )

    a = geosr.upscale_file(rgba, tmp_path / "rgba_x2.tif", scale=2, model="bicubic")
    b = geosr.upscale_file(reference, tmp_path / "rgb_x2.tif", scale=2, model="bicubic")
    (pixels, profile, colours), (expected, _, _) = read(a), read(b)
    assert profile["count"] == 3 and profile["nodata"] == 0
    assert colours == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    np.testing.assert_array_equal(pixels, expected)


@pytest.mark.parametrize("alpha_first", [False, True])
def test_alpha_band_that_gdal_does_not_take_as_the_mask_still_hides(
    tmp_path: Path, alpha_first: bool
) -> None:
    # GDAL takes an alpha band as the mask only as the last of 2 or 4 bands: an RGBN
    # orthomosaic's 5th band alpha (or ARGB's 1st) was left out as data, yet its transparent
    # pixels were super-resolved as data and the output had no nodata.
    rgbn = coordinate_pattern(4, 80, 90, "uint8")
    hidden = hidden_area(80, 90)
    alpha = np.where(hidden, 0, 255).astype(np.uint8)[None]
    stack = np.concatenate([alpha, rgbn] if alpha_first else [rgbn, alpha])
    src = write(tmp_path / "rgbna.tif", stack)
    colours = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined]
    with rasterio.open(src, "r+") as f:
        f.colorinterp = [ColorInterp.alpha, *colours] if alpha_first else [*colours, ColorInterp.alpha]
    reference = write(tmp_path / "rgbn.tif", np.where(hidden, 0, rgbn).astype(np.uint8), nodata=0)
    with rasterio.open(reference, "r+") as f:
        f.colorinterp = colours  # 4 bytes a pixel are RGBA to GDAL otherwise

    a = geosr.upscale_file(src, tmp_path / "rgbna_x2.tif", scale=2, model="bicubic")
    b = geosr.upscale_file(reference, tmp_path / "rgbn_x2.tif", scale=2, model="bicubic")
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["count"] == 4 and profile["nodata"] == 0
    np.testing.assert_array_equal(pixels, expected)


def test_masked_signed_scene_keeps_its_zeros(tmp_path: Path) -> None:
    # For signed integers 0 is mid-range (sea level, 0 degrees): marking the hidden pixels
    # with it moved every valid 0 to 1. The type's minimum marks them instead.
    cols = np.arange(112)[None, :].repeat(96, axis=0)
    data = np.clip(cols - 56, -40, 40).astype(np.int16)[None].repeat(2, axis=0)  # wide plateaus of 0..
    data[:, :, 50:62] = 0  # .. and a flat band of valid zeros
    hidden = hidden_area(96, 112)
    masked = with_internal_mask(tmp_path / "dem.tif", data, hidden)
    reference = write(tmp_path / "ref.tif", np.where(hidden, -32768, data).astype(np.int16), nodata=-32768)
    a = geosr.upscale_file(masked, tmp_path / "dem_x2.tif", scale=2, model="bicubic")
    b = geosr.upscale_file(reference, tmp_path / "ref_x2.tif", scale=2, model="bicubic")
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["nodata"] == -32768
    np.testing.assert_array_equal(pixels, expected)
    assert (pixels[:, 10:60, 104:120] == 0).all()  # the valid zeros, away from the hidden area


def test_masked_float_scene_writes_nan(tmp_path: Path) -> None:
    data = coordinate_pattern(1, 64, 64, "float32") / 1000
    hidden = hidden_area(64, 64)
    out = geosr.upscale_file(
        with_internal_mask(tmp_path / "f.tif", data, hidden), tmp_path / "f_x2.zarr", scale=2, model="bicubic"
    )
    import xarray as xr

    values = xr.open_zarr(out).to_array().values.squeeze()
    hidden_hr = hidden.repeat(2, 0).repeat(2, 1)
    assert np.isnan(values[hidden_hr]).all() and np.isfinite(values[~hidden_hr]).all()


def test_float_pixels_that_gdal_takes_for_nodata_are_nodata(tmp_path: Path) -> None:
    """ArcGIS writes float32 rasters whose nodata tag is -3.40282306073709653e+38 and whose nodata
    pixels hold float32's lowest, -3.4028234663852886e+38: two float32 steps apart, which GDAL's
    nodata mask (QGIS, rasterio's masked reads) takes as equal.  Compared exactly, they were data:
    the scene's normalisation spanned 3.4e+38, and the valid pixels of 0.25..1 came out 0."""
    declared = -3.4028230607370965e38
    data = coordinate_pattern(1, 64, 64, "float32") / 4000
    hidden = hidden_area(64, 64)
    esri = write(tmp_path / "esri.tif", np.where(hidden, np.finfo(np.float32).min, data), nodata=declared)
    with rasterio.open(esri) as src:
        assert ((src.read_masks(1) == 0) == hidden).all()  # what GDAL calls nodata
    exact = write(tmp_path / "exact.tif", np.where(hidden, np.float32(declared), data), nodata=declared)
    a = geosr.upscale_file(esri, tmp_path / "esri_x2.tif", scale=2, model="bicubic")
    b = geosr.upscale_file(exact, tmp_path / "exact_x2.tif", scale=2, model="bicubic")
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["nodata"] == declared
    np.testing.assert_array_equal(pixels, expected)


def test_fully_masked_scene_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    data = coordinate_pattern(1, 40, 40)
    path = with_internal_mask(tmp_path / "empty.tif", data, np.ones((40, 40), bool))
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "empty.tif", "masked")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.tif"]


def _class_map(tmp_path: Path) -> Path:
    """A 40 x 40 class map with a palette (classes 0-3)."""
    classes = (np.arange(40 * 40).reshape(1, 40, 40) % 4).astype(np.uint8)
    path = write(tmp_path / "classes.tif", classes)
    with rasterio.open(path, "r+") as dst:
        dst.write_colormap(
            1, {0: (0, 0, 0, 255), 1: (255, 0, 0, 255), 2: (0, 255, 0, 255), 3: (0, 0, 255, 255)}
        )
    return path


def test_palette_raster_is_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    path = _class_map(tmp_path)
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "classes.tif", "palette", "-expand rgb", "-r near")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classes.tif"]


def test_bands_may_leave_out_a_palette_band(tmp_path: Path) -> None:
    """A VRT stacking an image's bands with a class map (a Sentinel-2 SCL layer and its colour
    table) was refused even with --bands leaving the class map out; the class map itself still is,
    with the --bands that leaves it out."""
    from rasterio.shutil import copy

    from geosr.errors import InputError

    stack = tmp_path / "stack.vrt"
    copy(write(tmp_path / "stack.tif", coordinate_pattern(3, 40, 40, "uint8")), stack, driver="VRT")
    text = stack.read_text()
    opening = re.search(r'<VRTRasterBand [^>]*band="3"[^>]*>', text)
    assert opening is not None, text
    colours = "".join(f'<Entry c1="{v}" c2="{v}" c3="{v}" c4="255"/>' for v in range(256))
    palette = f"<ColorInterp>Palette</ColorInterp><ColorTable>{colours}</ColorTable>"
    stack.write_text(text[: opening.end()] + palette + text[opening.end() :])
    out = geosr.upscale_file(stack, tmp_path / "rg.tif", scale=2, model="bicubic", bands="2,1")
    with rasterio.open(out) as f:
        assert f.count == 2 and ColorInterp.palette not in f.colorinterp
    with pytest.raises(InputError, match=r"stack\.vrt: band 3 holds .* leave it out with bands='1,2'$"):
        geosr.upscale_file(stack, tmp_path / "all.tif", scale=2, model="bicubic")
    with pytest.raises(InputError, match=r"stack\.vrt: band 3 holds palette"):
        geosr.upscale_file(stack, tmp_path / "b3.tif", scale=2, model="bicubic", bands="1,3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rg.tif", "stack.tif", "stack.vrt"]


def test_training_refuses_a_palette_raster_as_geosr_run_does(tmp_path: Path) -> None:
    """Self-supervised and paired reads both: they trained on the class numbers as measurements."""
    from geosr.errors import InputError
    from geosr.train.config import SceneSource
    from geosr.train.coreg import read_raster
    from geosr.train.data import load_scene

    path = _class_map(tmp_path)
    with pytest.raises(InputError, match=r"classes\.tif: band 1 holds palette indexes"):
        load_scene(path, SceneSource(str(path)))
    with pytest.raises(InputError, match=r"classes\.tif: band 1 holds palette indexes"):
        read_raster(path)


def test_gcp_georeferencing_is_named(tmp_path: Path, capsys, monkeypatch) -> None:
    from rasterio.control import GroundControlPoint
    from rasterio.crs import CRS

    path = tmp_path / "l1.tif"
    profile = {"driver": "GTiff", "count": 1, "height": 40, "width": 50, "dtype": "uint16"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(coordinate_pattern(1, 40, 50))
        corners = [(0, 0), (0, 50), (40, 0), (40, 50)]
        dst.gcps = (
            [GroundControlPoint(r, c, 500000 + 10 * c, 5000000 - 10 * r) for r, c in corners],
            CRS.from_epsg(32633),
        )
    code, err = run_cli(["run", str(path), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "l1.tif", "4 ground control points", "gdalwarp")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["l1.tif"]


def test_evaluate_scores_only_the_unmasked_pixels(tmp_path: Path) -> None:
    from geosr.evaluation import evaluate_wald

    data = coordinate_pattern(1, 96, 96, "uint16")
    hidden = hidden_area(96, 96)
    masked = with_internal_mask(tmp_path / "masked.tif", data, hidden)
    reference = write(tmp_path / "nodata.tif", np.where(hidden, 0, data).astype(data.dtype), nodata=0)
    a, b = (evaluate_wald([p], scale=2, model="bicubic", border=2).summary() for p in (masked, reference))
    assert a == pytest.approx(b, abs=1e-9)


def test_training_reads_the_mask_and_leaves_the_alpha_band_out(tmp_path: Path) -> None:
    from geosr.train.config import SceneSource
    from geosr.train.data import load_scene

    rgb = coordinate_pattern(3, 80, 90, "uint8")
    hidden = hidden_area(80, 90)
    alpha = np.where(hidden, 0, 255).astype(np.uint8)[None]
    rgba = write(tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES")
    scene = load_scene(rgba, SceneSource(str(rgba)))
    assert scene.data.shape == (3, 80, 90)
    invalid = np.diff(np.diff(scene.invalid_sat, axis=1), axis=2)  # back from the summed-area table
    np.testing.assert_array_equal(invalid, np.broadcast_to(hidden, (3, 80, 90)).astype(np.int32))
    assert (scene.data[:, hidden] == 0).all()


def test_masked_reads_are_counted_as_floats_in_the_memory_bound(tmp_path: Path) -> None:
    from geosr.io.scene import read_window
    from geosr.memory_fit import resource_plan
    from geosr.models import load_model
    from geosr.predictor import Predictor
    from geosr.tiling import Window

    data = coordinate_pattern(3, 64, 64, "uint8")
    scene = open_scene(with_internal_mask(tmp_path / "m.tif", data, hidden_area(64, 64)))
    assert scene.read_dtype == np.float32  # uint8 read as float32, to carry NaN
    assert read_window(scene, Window(0, 0, 8, 8)).dtype == scene.read_dtype
    net = load_model("bicubic", bands=3, scale=2)
    plan = resource_plan(scene, net, Predictor(net, device="cpu"), tile=32, halo=4, batch=2, scale=2)
    assert (plan.in_itemsize, plan.out_itemsize) == (4, 1)


def with_band_nodata(path: Path, data: np.ndarray, nodata: tuple[float, ...]) -> Path:
    """A VRT over a GeoTIFF of ``data`` that gives each band its own nodata value, as
    ``gdalbuildvrt -separate`` does for files with different nodata."""
    from rasterio.shutil import copy

    copy(write(path.with_suffix(".tif"), data), path, driver="VRT")
    text = path.read_text()
    for band, value in enumerate(nodata, start=1):
        opening = re.search(f'<VRTRasterBand [^>]*band="{band}"[^>]*>', text)
        assert opening is not None, text
        end = opening.end()
        text = text[:end] + f"<NoDataValue>{value}</NoDataValue>" + text[end:]
    path.write_text(text)
    return path


@pytest.mark.parametrize("model", ["bicubic", None])
def test_each_band_has_its_own_nodata(tmp_path: Path, model: str | None) -> None:
    """Before, band 1's nodata stood for every band: band 2's nodata pixels (another value)
    went into the model as data and rang into their neighbours, under the wrong label."""
    from geosr.inspect import plan_run
    from geosr.options import RunOptions

    data = coordinate_pattern(2, 96, 112, "uint16") + 10  # no valid pixel is 1 or 2
    hidden = hidden_area(96, 112)
    other = np.zeros_like(hidden)
    other[60:, :30] = True  # band 2 has no data in another place
    data[0, hidden], data[1, other] = 1, 2
    vrt = with_band_nodata(tmp_path / "stack.vrt", data, (1, 2))
    scene = open_scene(vrt)
    assert scene.band_nodata == (1, 2) and scene.nodata is None and scene.output_nodata == 1
    assert dict(plan_run(vrt, RunOptions(scale=2, model="bicubic")).lines())["nodata"] == (
        "1 (band 1), 2 (band 2); the output marks them all 1"
    )
    # The same valid pixels under one nodata value, the output's.
    reference = write(tmp_path / "one.tif", np.where([hidden, other], 1, data).astype(data.dtype), nodata=1)

    assert_runs_as(vrt, reference, model, nodata=1, hidden=(hidden, other))

    # One band picked: its own value is the scene's and the output's.
    picked = geosr.upscale_file(vrt, tmp_path / "b2_x2.tif", scale=2, model="bicubic", bands="2")
    second, second_profile, _ = read(picked)
    assert second_profile["nodata"] == 2
    assert (second[0] == 2).sum() == 4 * other.sum()


def test_a_bands_own_float_nodata_hides_the_pixels_gdal_takes_for_it(tmp_path: Path) -> None:
    """A band's own nodata value in a stack of float files (an ArcGIS one's -3.40282306073709653e+38
    over pixels of float32's lowest, two float32 steps off) hides the pixels GDAL's mask of that
    band hides, as the scene's nodata does: they were data, and blanked the band's output."""
    declared = -3.4028230607370965e38
    data = coordinate_pattern(2, 96, 112, "float32") / 4000
    hidden = hidden_area(96, 112)
    other = np.zeros_like(hidden)
    other[60:, :30] = True
    data[0, hidden], data[1, other] = np.finfo(np.float32).min, -9999
    vrt = with_band_nodata(tmp_path / "stack.vrt", data, (declared, -9999))
    with rasterio.open(vrt) as src:
        assert ((src.read_masks(1) == 0) == hidden).all()  # what GDAL calls nodata in band 1
    marked = np.where([hidden, other], np.float32(declared), data).astype(np.float32)
    reference = write(tmp_path / "one.tif", marked, nodata=declared)
    assert_runs_as(vrt, reference, "bicubic", nodata=declared, hidden=(hidden, other))


def assert_runs_as(
    src: Path, reference: Path, model: str, *, nodata: float, hidden: tuple[np.ndarray, ...]
) -> None:
    """``src``'s x2 output has the pixels of ``reference``'s (the same valid pixels under one
    ``nodata`` value), that value as its nodata, and nodata exactly where each band's
    ``hidden`` area is."""
    a = geosr.upscale_file(src, src.with_name(f"{src.stem}_x2.tif"), scale=2, model=model, tile=32)
    b = geosr.upscale_file(
        reference, reference.with_name(f"{reference.stem}_x2.tif"), scale=2, model=model, tile=32
    )
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["nodata"] == nodata
    np.testing.assert_array_equal(pixels, expected)
    for band, invalid in enumerate(hidden):
        invalid_hr = invalid.repeat(2, 0).repeat(2, 1)
        assert (pixels[band, invalid_hr] == nodata).all() and (pixels[band, ~invalid_hr] != nodata).all()


def with_band_masks(path: Path, data: np.ndarray, hidden: tuple[np.ndarray, ...]) -> Path:
    """A VRT over a GeoTIFF of ``data`` whose bands each have a mask of their own (a band's
    ``<MaskBand>``: 0 where ``hidden``), which GDAL reports with no mask flag."""
    from rasterio.shutil import copy

    copy(write(path.with_suffix(".tif"), data), path, driver="VRT")
    text = path.read_text()
    for band, area in reversed(list(enumerate(hidden, start=1))):  # the last first, so earlier tags stay put
        mask = write(path.with_name(f"mask{band}.tif"), np.where(area, 0, 255).astype(np.uint8)[None])
        source = f"<SimpleSource><SourceFilename>{mask}</SourceFilename></SimpleSource>"
        closing = [m.start() for m in re.finditer("</VRTRasterBand>", text)][band - 1]
        element = f'<MaskBand><VRTRasterBand dataType="Byte">{source}</VRTRasterBand></MaskBand>'
        text = text[:closing] + element + text[closing:]
    path.write_text(text)
    return path


def test_each_band_has_its_own_mask(tmp_path: Path) -> None:
    """A band's own mask (a VRT band's <MaskBand>, a per-band .msk) hides its pixels as nodata
    does.  Before, GDAL's empty mask flags read as no mask: the hidden pixels were
    super-resolved as data and the output had no nodata."""
    data = coordinate_pattern(2, 96, 112, "uint16")  # every value >= 1: 0 is free to mean nodata
    hidden = hidden_area(96, 112)
    other = np.zeros_like(hidden)
    other[60:, :30] = True  # band 2 hides another place
    vrt = with_band_masks(tmp_path / "masks.vrt", data, (hidden, other))
    with rasterio.open(vrt) as src:
        assert src.mask_flag_enums == ([], [])  # a mask of each band's own
    assert open_scene(vrt).masked
    reference = write(tmp_path / "one.tif", np.where([hidden, other], 0, data).astype(data.dtype), nodata=0)

    assert_runs_as(vrt, reference, "bicubic", nodata=0, hidden=(hidden, other))


def colour_png(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """An RGB PNG whose transparent colour (1, 2, 3) covers ``hidden_area``, and a valid block
    whose red alone holds the colour's red: the PNG, its pixels and the hidden area."""
    from rasterio.shutil import copy

    data = (coordinate_pattern(3, 96, 112, "uint8") % 200 + 10).astype(np.uint8)
    hidden = hidden_area(96, 112)
    data[:, hidden] = np.array([1, 2, 3], np.uint8)[:, None]
    data[0, 60:80, 80:100] = 1  # red as the colour's, green and blue not: valid
    png = tmp_path / "colour.png"
    copy(with_band_nodata(tmp_path / "colour.vrt", data, (1, 2, 3)), png, driver="PNG")
    return png, data, hidden


def test_a_nodata_colour_hides_only_the_pixels_of_that_colour(tmp_path: Path) -> None:
    """An RGB PNG's transparent colour (GDAL's NODATA_VALUES) hides a pixel only where all its
    bands hold it, as GDAL's mask does; its bands also report the colour's values as their own,
    and a valid pixel whose red alone was the colour's was nodata in its red band."""
    png, data, hidden = colour_png(tmp_path)
    reference = write(tmp_path / "one.tif", np.where(hidden, 0, data).astype(data.dtype), nodata=0)
    assert_runs_as(png, reference, "bicubic", nodata=0, hidden=(hidden,) * 3)


def test_evaluate_nodata_replaces_each_bands_own_as_the_run_does(tmp_path: Path) -> None:
    """``geosr evaluate --nodata`` overrides every band's own value, as ``geosr run --nodata``
    does: it kept a VRT's per-band values beside it, and left out of the scores the pixels
    that the run took as data."""
    from geosr.evaluation import evaluate_wald
    from tests.test_evaluate import _fake_upscaler

    data = coordinate_pattern(2, 64, 64, "uint16") + 10
    data[0, hidden_area(64, 64)], data[1, 40:] = 1, 2
    data[:, 20:30, 50:60] = 5  # the --nodata value: hidden in both
    vrt = with_band_nodata(tmp_path / "stack.vrt", data, (1, 2))
    same = write(tmp_path / "plain.tif", data)
    a, b = (
        evaluate_wald([p], scale=2, model="fake", border=2, nodata=5, upscaler=_fake_upscaler).summary()
        for p in (vrt, same)
    )
    assert a == pytest.approx(b, abs=1e-9)


def cf_store(path: Path, data: np.ndarray, **attrs: object) -> Path:
    """A Zarr store of one ``(band, y, x)`` int16 variable ``v`` with the CF ``attrs`` as written."""
    import rioxarray  # noqa: F401  (the .rio accessor)
    import xarray as xr

    _, height, width = data.shape
    coords = {"y": 5e6 - 10 * (np.arange(height) + 0.5), "x": 4e5 + 10 * (np.arange(width) + 0.5)}
    var = xr.DataArray(data, dims=("band", "y", "x"), coords=coords, name="v")
    dataset = var.to_dataset().rio.write_crs("EPSG:32633")
    fill = attrs.pop("_FillValue")
    dataset["v"].attrs.update(attrs)
    dataset["v"].encoding["_FillValue"] = fill
    dataset.to_zarr(path, zarr_format=3, consolidated=False)
    return path


def test_a_zarr_variables_missing_value_is_nodata_as_its_fill_value_is(tmp_path: Path) -> None:
    """CF's ``missing_value`` marks missing pixels as ``_FillValue`` does, and xarray masks both;
    where they differed, the missing_value pixels were super-resolved as data and rang into
    their neighbours.  They now give the pixels of the same store with the _FillValue there."""
    data = (coordinate_pattern(1, 48, 56, "uint16") % 3000 + 100).astype(np.int16)
    hidden = hidden_area(48, 56)
    data[:, hidden] = -32767
    data[:, 40:, 40:] = -32768
    both = cf_store(tmp_path / "both.zarr", data, _FillValue=np.int16(-32768), missing_value=np.int16(-32767))
    one = cf_store(
        tmp_path / "one.zarr",
        np.where(data == -32767, -32768, data).astype(np.int16),
        _FillValue=np.int16(-32768),
    )
    a, b = (geosr.upscale_file(p, p.with_suffix(".tif"), scale=2, model="bicubic") for p in (both, one))
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["nodata"] == -32768
    np.testing.assert_array_equal(pixels, expected)
    assert (pixels[0, hidden.repeat(2, 0).repeat(2, 1)] == -32768).all()


def test_a_zarr_variables_missing_value_of_several_values_is_nodata(tmp_path: Path) -> None:
    """CF allows a ``missing_value`` of several values, which xarray masks all; rioxarray took
    the list whole for the nodata: a TypeError traceback.  The first is now the nodata, the
    others are missing too."""
    data = (coordinate_pattern(1, 48, 56, "uint16") % 3000 + 100).astype(np.int16)
    data[:, hidden_area(48, 56)] = -2
    data[:, 40:, 40:] = -1
    several = cf_store(
        tmp_path / "several.zarr", data, _FillValue=None, missing_value=np.array([-1, -2], np.int16)
    )
    one = cf_store(
        tmp_path / "one.zarr", np.where(data < 0, -1, data).astype(np.int16), _FillValue=np.int16(-1)
    )
    a, b = (geosr.upscale_file(p, p.with_suffix(".tif"), scale=2, model="bicubic") for p in (several, one))
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["nodata"] == -1
    np.testing.assert_array_equal(pixels, expected)


def cf_netcdf(path: Path, data: np.ndarray, missing: tuple[int, ...], step: float = 0.01) -> Path:
    """A netCDF of one int16 ``(lat, lon)`` variable ``v`` of ``data`` whose ``_FillValue`` is -32768
    and whose CF ``missing_value`` is ``missing``, on a grid of ``step`` degrees from 52.5 N, 4 E."""
    import xarray as xr

    height, width = data.shape
    coords = {"lat": ("lat", 52.5 - step * np.arange(height), {"units": "degrees_north"}),
              "lon": ("lon", 4.0 + step * np.arange(width), {"units": "degrees_east"})}  # fmt: skip
    variable = xr.Variable(("lat", "lon"), data, {"missing_value": np.array(missing, np.int16)})
    variable.encoding["_FillValue"] = np.int16(-32768)
    xr.Dataset({"v": variable}, coords=coords).to_netcdf(path, engine="scipy")
    return path


def test_a_netcdf_variables_missing_value_is_nodata_as_in_a_zarr_store(tmp_path: Path) -> None:
    """GDAL takes a netCDF variable's _FillValue for its nodata and leaves its missing_value
    (here of two values) unread; those pixels were super-resolved as data, where the same
    variable in a Zarr store, or read by xarray, has them missing."""
    data = (coordinate_pattern(1, 48, 56, "uint16") % 3000 + 100).astype(np.int16)
    data[:, hidden_area(48, 56)] = -32767
    data[:, 40:, 40:] = -1
    data[:, :4, :4] = -32768
    cf_netcdf(tmp_path / "v.nc", data[0], (-32767, -1))
    store = cf_store(
        tmp_path / "w.zarr", np.where(data < 0, -32768, data).astype(np.int16), _FillValue=np.int16(-32768)
    )
    a, b = (
        geosr.upscale_file(p, p.with_suffix(".tif"), scale=2, model="bicubic")
        for p in (tmp_path / "v.nc", store)
    )
    (pixels, profile, _), (expected, _, _) = read(a), read(b)
    assert profile["nodata"] == -32768
    np.testing.assert_array_equal(pixels, expected)


def test_an_output_does_not_carry_its_netcdf_inputs_missing_value(tmp_path: Path) -> None:
    """The output marks missing pixels with its nodata; it kept the input's missing_value band tag,
    so every geosr read of it (compare, evaluate, a further run) hid its pixels of that value: after
    --nodata -32768, which made the missing area data, the whole area."""
    data = (coordinate_pattern(1, 24, 28, "uint16") % 3000 + 100).astype(np.int16)
    data[:, :, :6] = -32767
    nc = cf_netcdf(tmp_path / "v.nc", data[0], (-32767,))
    out = geosr.upscale_file(nc, tmp_path / "v_x2.tif", scale=2, model="bicubic", nodata=-32768)
    scene = open_scene(out)
    assert scene.nodata == -32768 and scene.missing_values == ()
    with rasterio.open(out) as src:
        assert "missing_value" not in src.tags(1) and "v#missing_value" not in src.tags()
        assert (src.read(1)[:, :10] == -32767).all()  # data, as the run took it


def test_training_reads_each_bands_own_nodata(tmp_path: Path) -> None:
    from geosr.train.config import SceneSource
    from geosr.train.data import load_scene

    data = coordinate_pattern(2, 80, 90, "uint16") + 10
    hidden = hidden_area(80, 90)
    data[0, hidden], data[1, :20] = 1, 2
    vrt = with_band_nodata(tmp_path / "stack.vrt", data, (1, 2))
    scene = load_scene(vrt, SceneSource(str(vrt)))
    invalid = np.diff(np.diff(scene.invalid_sat, axis=1), axis=2)  # back from the summed-area table
    np.testing.assert_array_equal(invalid[0], hidden.astype(np.int32))
    assert invalid[1, :20].all() and not invalid[1, 20:].any()


def test_a_picked_band_keeps_its_declared_nan_nodata(tmp_path: Path) -> None:
    """Bands picked out of a per-band stack take their shared value: a declared NaN stays NaN
    (the float output then marks nodata with NaN), a band without one has none."""
    from geosr.io.bands import select_bands

    data = coordinate_pattern(3, 20, 20, "float32")
    vrt = with_band_nodata(tmp_path / "stack.vrt", data, ("nan", -9999, -9999))
    scene = open_scene(vrt)
    assert scene.nodata is None and scene.band_nodata[1:] == (-9999, -9999) and np.isnan(scene.band_nodata[0])
    first = select_bands(scene, "1")
    assert first.band_nodata == () and first.nodata is not None and np.isnan(first.nodata)
    rest = select_bands(scene, "2,3")
    assert rest.band_nodata == () and rest.nodata == -9999


def test_paired_reads_leave_the_alpha_band_out_and_hide_its_pixels(tmp_path: Path) -> None:
    """--lr/--hr pairs read as training does: the alpha band is the mask, not a band of the pair
    (it was trained on as a fourth image band, and geosr evaluate --lr/--hr of RGBA files was a
    broadcasting traceback: 4 bands against the run's 3)."""
    from geosr.train.coreg import read_raster

    rgb = coordinate_pattern(3, 80, 90, "uint8")
    hidden = hidden_area(80, 90)
    alpha = np.where(hidden, 0, 255).astype(np.uint8)[None]
    rgba = write(tmp_path / "rgba.tif", np.concatenate([rgb, alpha]), photometric="RGB", alpha="YES")
    data = read_raster(rgba).data
    assert data.shape == (3, 80, 90)
    np.testing.assert_array_equal(np.isnan(data), np.broadcast_to(hidden, (3, 80, 90)))
    np.testing.assert_array_equal(data[:, ~hidden], rgb[:, ~hidden])


def _training_invalid(path: Path, **source: object) -> np.ndarray:
    """``(C, H, W)`` bool: the pixels that training takes as invalid in ``path``."""
    from geosr.train.config import SceneSource
    from geosr.train.data import load_scene

    scene = load_scene(path, SceneSource(str(path), **source))
    return np.diff(np.diff(scene.invalid_sat, axis=1), axis=2) > 0  # back from the summed-area table


def test_training_takes_a_nodata_colour_as_the_run_does(tmp_path: Path) -> None:
    """An RGB PNG's transparent colour hides a pixel only where all its bands hold it; training
    took it band by band (a valid pixel whose red alone was the colour's was nodata in red),
    where ``geosr run`` masks that pixel in no band."""
    png, data, hidden = colour_png(tmp_path)
    np.testing.assert_array_equal(_training_invalid(png), np.broadcast_to(hidden, data.shape))


def test_training_takes_a_netcdf_missing_value_as_the_run_does(tmp_path: Path) -> None:
    """GDAL takes a netCDF variable's _FillValue for its nodata and leaves its missing_value;
    ``geosr run`` has those pixels missing too (Scene.missing_values), training took them as data."""
    import xarray as xr

    data = (coordinate_pattern(1, 48, 56, "uint16") % 3000 + 100).astype(np.int16)
    data[:, hidden_area(48, 56)] = -32767
    data[:, 40:, 40:] = -1
    data[:, :4, :4] = -32768
    coords = {"lat": ("lat", 52.5 - 0.01 * np.arange(48), {"units": "degrees_north"}),
              "lon": ("lon", 4.0 + 0.01 * np.arange(56), {"units": "degrees_east"})}  # fmt: skip
    variable = xr.Variable(("lat", "lon"), data[0], {"missing_value": np.array([-32767, -1], np.int16)})
    variable.encoding["_FillValue"] = np.int16(-32768)
    xr.Dataset({"v": variable}, coords=coords).to_netcdf(tmp_path / "v.nc", engine="scipy")
    np.testing.assert_array_equal(_training_invalid(tmp_path / "v.nc"), data < 0)


def test_training_takes_each_bands_own_mask_as_the_run_does(tmp_path: Path) -> None:
    """A band's own mask hides its band's pixels only; training read the file's mask of all
    bands, where the pixels one band hides are visible in another: trained on as data."""
    data = coordinate_pattern(2, 96, 112, "uint16")
    hidden = hidden_area(96, 112)
    other = np.zeros_like(hidden)
    other[60:, :30] = True  # band 2 hides another place
    vrt = with_band_masks(tmp_path / "masks.vrt", data, (hidden, other))
    np.testing.assert_array_equal(_training_invalid(vrt), np.stack([hidden, other]))


def test_training_takes_the_float_pixels_gdal_takes_for_nodata_as_the_run_does(tmp_path: Path) -> None:
    """An ArcGIS float32 raster declares -3.40282306073709653e+38 and holds float32's lowest in its
    nodata pixels, which GDAL's mask hides and ``geosr run`` reads as nodata: training took them as
    data, and its scene's normalisation spanned 3.4e+38."""
    data = coordinate_pattern(1, 48, 56, "float32") / 4000
    hidden = hidden_area(48, 56)
    esri = write(
        tmp_path / "esri.tif", np.where(hidden, np.finfo(np.float32).min, data), nodata=-3.4028230607370965e38
    )
    np.testing.assert_array_equal(_training_invalid(esri), hidden[None])
