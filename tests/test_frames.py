"""--frame: multi-temporal input, frames reprojected onto the reference grid block by block."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

import geosr
from geosr.errors import GeosrWarning, InputError, OptionError
from geosr.io.frames import check_frame, read_frame_window
from geosr.io.scene import open_scene, read_window
from geosr.normalise import Normalisation
from geosr.temporal import stack_frames
from geosr.tiling import Window
from tests.conftest import UTM_TRANSFORM, coordinate_pattern, in_lonlat, warnings_said


def test_frame_on_another_grid_is_reprojected_per_window(make_raster, tmp_path: Path) -> None:
    ref = make_raster("ref.tif", count=1, height=60, width=60)
    # The same values on a grid shifted by exactly 3 pixels and with twice the pixel size.
    data = coordinate_pattern(1, 60, 60)
    shifted = make_raster(
        "frame.tif", data=data[:, ::2, ::2].copy(), transform=UTM_TRANSFORM @ Affine.scale(2)
    )
    reference = open_scene(ref)
    frame = open_scene(shifted)
    window = Window(10, 12, 16, 16)
    got = read_frame_window(frame, reference, window)
    assert got.shape == (1, 16, 16) and got.dtype == np.float32
    want = read_window(reference, window).astype(float)
    assert np.nanmax(np.abs(got - want)) < 60  # bilinear of a 2x decimation of a smooth ramp


def test_frame_on_another_grid_keeps_each_bands_nodata(tmp_path: Path) -> None:
    """Before, all bands were warped at once and band 1's nodata pixels (value 1)
    came through as data, and were blended into their neighbours, where band 2 had data."""
    from tests.test_masks import PROFILE, with_band_nodata, write

    reference = open_scene(write(tmp_path / "ref.tif", coordinate_pattern(2, 60, 60, "uint16") + 10))
    data = (coordinate_pattern(2, 60, 60, "uint16") + 10)[:, ::2, ::2].copy()  # valid pixels are >= 10
    data[0, :, :10] = 1  # band 1: no data in the west
    data[1, 15:, :] = 2  # band 2: no data in the south
    vrt = with_band_nodata(tmp_path / "frame.vrt", data, (1, 2))
    with rasterio.open(vrt, "r+") as dst:  # twice the pixel size of the reference
        dst.transform = PROFILE["transform"] @ Affine.scale(2)
    frame = open_scene(vrt)
    assert frame.band_nodata == (1, 2) and frame.grid.shape.yx == (30, 30)
    got = read_frame_window(frame, reference, Window(0, 0, 60, 60))
    assert np.nanmin(got) >= 10  # no nodata value read as data, nor blended into a neighbour
    assert np.isnan(got[0, :, :19]).all() and not np.isnan(got[0, :30, 21:]).any()
    assert np.isnan(got[1, 31:]).all() and not np.isnan(got[1, :29, 21:]).any()


def test_a_frame_on_the_same_grid_keeps_its_own_nodata(make_raster, tmp_path: Path) -> None:
    """Before, only the reference's nodata was applied to a frame on its grid: a frame whose
    every pixel is its nodata (0) went into the model as data and changed every tile."""
    ref = make_raster("ref.tif", height=64, width=64)
    nearly_empty = np.zeros((1, 64, 64), np.uint16)
    nearly_empty[0, 0, 0] = 1000  # one valid pixel: a frame of none is left out of the job altogether
    empty = make_raster("empty.tif", data=nearly_empty, nodata=0)
    alone = geosr.upscale_file(ref, tmp_path / "alone.tif", scale=2, tile=32)
    with_empty = geosr.upscale_file(ref, tmp_path / "with.tif", scale=2, tile=32, frames=(str(empty),))
    with rasterio.open(alone) as a, rasterio.open(with_empty) as b:
        np.testing.assert_array_equal(a.read(), b.read())  # a nodata frame is never used


def test_uncovered_frame_is_skipped_for_that_tile() -> None:
    norm = Normalisation((0.0,), (100.0,))
    raw = np.full((2, 3, 1, 8, 8), 50, np.float32)
    raw[0, 1] = np.nan  # tile 0: frame 1 does not cover it
    raw[1, 2, :, :2] = np.nan  # tile 1: frame 2 covers 75 %, its gap takes the reference
    raw[1, 2, :, 2:] = 70
    inputs, valid = stack_frames(raw, None, norm)
    assert [x.shape[0] for x in inputs] == [2, 3]
    assert valid.all()
    assert np.allclose(inputs[1][2, :, :2], 0.5) and np.allclose(inputs[1][2, :, 2:], 0.7)


@pytest.mark.realdata
def test_three_date_run_on_the_eolearn_stack(data_dir: Path, tmp_path: Path) -> None:
    folder = data_dir / "sentinel2" / "eolearn_slovenia_2015"
    dates = sorted(folder.glob("derived_*.tif"))
    if len(dates) < 3:
        pytest.skip("eo-learn stack missing")
    ref, d2, d3 = dates[:3]
    out = geosr.upscale_file(
        ref, tmp_path / "t3.tif", scale=4, bands="2,3,4", frames=(str(d2), str(d3)), tile=64
    )
    single = geosr.upscale_file(ref, tmp_path / "t1.tif", scale=4, bands="2,3,4", tile=64)
    with rasterio.open(out) as f, rasterio.open(single) as s, rasterio.open(ref) as r:
        assert f.crs == r.crs and f.transform == r.transform @ Affine.scale(0.25)
        a, b = f.read().astype(float), s.read().astype(float)
        assert np.isfinite(a).all()
        assert not np.array_equal(a, b)  # the frames were used
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95  # and did not poison the result
        assert f.tags()["GEOSR_FRAMES"] == f"{d2.name},{d3.name}"


def test_frame_with_other_bands_is_refused(make_raster) -> None:
    ref = make_raster("ref.tif", count=2)
    other = make_raster("other.tif", count=3)
    with pytest.raises(InputError, match="same bands"):
        geosr.upscale_file(ref, ref.with_name("o.tif"), model="bicubic", frames=(str(other),))


def test_the_input_or_a_repeated_frame_is_refused(make_raster, tmp_path: Path, monkeypatch) -> None:
    """Before, the reference given again as --frame (by another spelling too), or one frame
    twice, was fused as another acquisition: a run of T=2 that had one."""
    ref = make_raster("ref.tif", height=16, width=16)
    other = make_raster("d2.tif", data=coordinate_pattern(1, 16, 16)[:, ::-1].copy())
    monkeypatch.chdir(tmp_path)
    for frames, says in [(("./ref.tif",), "is the input itself"), ((str(other), "d2.tif"), "given twice")]:
        with pytest.raises(OptionError, match=f"^frames .* {says}"):
            geosr.upscale_file(ref, tmp_path / "o.tif", scale=2, frames=frames)
    assert not (tmp_path / "o.tif").exists()


def test_a_frame_that_cannot_be_read_is_named_as_a_frame(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`geosr run ref.tif --frame d2.tif` with no d2.tif said 'error: d2.tif: no such file or
    directory; check the path', as if it were an input."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    ref = make_raster("ref.tif", height=16, width=16)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["run", str(ref), "--frame", "d2.tif", "-o", "o.tif"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "error: --frame d2.tif: no such file or directory")
    (tmp_path / "notes.txt").write_text("not a raster")
    code, err = run_cli(["info", str(ref), "--frame", "notes.txt"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "error: --frame notes.txt")
    with pytest.raises(InputError, match=r"^frames d2\.tif: no such file"):
        geosr.upscale_file(ref, tmp_path / "o.tif", scale=2, frames=("d2.tif",))
    assert not (tmp_path / "o.tif").exists()


def test_a_frame_of_another_boa_add_offset_is_read_in_the_references_convention(
    make_raster, tmp_path: Path
) -> None:
    # The same ground stored with and without Sentinel-2's BOA_ADD_OFFSET (baseline 04.00 and
    # before): 1000 DN apart. Before, the frames went in as stored and the outputs differed
    # by up to 115 units; in the reference's convention they are one frame.
    base = coordinate_pattern(1, 48, 56)
    ripple = np.random.default_rng(0).integers(-300, 300, base.shape)
    other = (base.astype(int) + ripple).clip(1, 60000).astype("uint16")
    offset = {"BOA_ADD_OFFSET": "-1000"}
    ref = make_raster("ref.tif", data=base + 1000, nodata=0, tags=offset)
    older = make_raster("older.tif", data=other, nodata=0)
    newer = make_raster("newer.tif", data=other + 1000, nodata=0, tags=offset)
    options = {"scale": 2, "device": "cpu", "precision": "fp32"}
    a = geosr.upscale_file(ref, tmp_path / "a.tif", frames=(str(older),), **options)
    b = geosr.upscale_file(ref, tmp_path / "b.tif", frames=(str(newer),), **options)
    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        np.testing.assert_array_equal(fa.read(), fb.read())


def test_a_model_reading_the_reference_alone_says_the_frames_are_unused(make_raster, tmp_path: Path) -> None:
    # --frame with bicubic (or the single-frame EDSR baseline) ran silently as if the
    # frames were fused; they were read and dropped by the model.
    from geosr.errors import GeosrWarning

    model = "bicubic"
    src = make_raster(height=40, width=30)
    frame = make_raster("frame.tif", data=coordinate_pattern(1, 40, 30)[::-1].copy())
    unused = r"reads the reference alone, so the frame file given \(frames\) is not used; a CNN-RNN"
    with pytest.warns(GeosrWarning, match=unused) as caught:
        with_frame = geosr.upscale_file(src, tmp_path / "f.tif", scale=2, model=model, frames=[str(frame)])
    # At the caller's line, where a notebook shows it (not inside geosr/api.py).
    assert {w.filename for w in caught if issubclass(w.category, GeosrWarning)} == {__file__}
    alone = geosr.upscale_file(src, tmp_path / "a.tif", scale=2, model=model)
    with rasterio.open(with_frame) as a, rasterio.open(alone) as b:
        assert np.array_equal(a.read(), b.read())
        assert a.tags()["GEOSR_JOB"] == b.tags()["GEOSR_JOB"]  # the same job: the frame is not in it
    # Counted in words: it said 'the 1 frame file(s) given ... are not used'.
    with pytest.warns(GeosrWarning, match=r"so the 2 frame files given \(frames\) are not used; a CNN-RNN"):
        other = make_raster("other.tif", data=coordinate_pattern(1, 40, 30)[:, ::-1].copy())
        geosr.upscale_file(src, tmp_path / "f2.tif", scale=2, model=model, frames=[str(frame), str(other)])


def test_a_frame_on_another_grid_keeps_its_alpha_bands_transparency(make_raster) -> None:
    """Before, GDAL's warper took the alpha band of an RGBA frame on another grid for no
    mask at all: its transparent pixels (60000 here) were warped in as data."""
    from rasterio.enums import ColorInterp

    reference = open_scene(make_raster("ref.tif", count=3, height=64, width=64))
    data = coordinate_pattern(3, 32, 32)
    data[:, :, :20] = 60000
    alpha = np.where(np.arange(32) < 20, 0, 65535).astype("uint16")[None, None].repeat(32, 1)
    path = make_raster(
        "rgba.tif", data=np.concatenate([data, alpha]), transform=UTM_TRANSFORM @ Affine.scale(2)
    )
    with rasterio.open(path, "r+") as dst:
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.alpha]
    frame = open_scene(path)
    assert frame.count == 3 and frame.masked
    got = read_frame_window(frame, reference, Window(0, 0, 64, 64))
    assert np.nanmax(got) < 60000  # no transparent pixel read as data
    assert np.isnan(got[:, :, :39]).all() and not np.isnan(got[:, :, 41:]).any()


def test_a_frame_on_another_grid_hides_only_the_pixels_of_its_nodata_colour(tmp_path: Path) -> None:
    """A PNG's transparent colour (GDAL's NODATA_VALUES) hides a pixel where all its bands hold it,
    as the same frame on the reference's grid reads; warped, each band took its part of the colour
    for its own nodata: a valid pixel whose red alone was the colour's was NaN in red."""
    from rasterio.shutil import copy

    from tests.test_masks import PROFILE, with_band_nodata, write

    reference = open_scene(write(tmp_path / "ref.tif", coordinate_pattern(3, 64, 64, "uint8")))
    data = (coordinate_pattern(3, 32, 32, "uint8") % 200 + 10).astype(np.uint8)
    data[:, :, :8] = np.array([1, 2, 3], np.uint8)[:, None, None]  # the colour: no data in the west
    data[0, 16:, 16:] = 1  # red as the colour's, green and blue not: valid
    vrt = with_band_nodata(tmp_path / "colour.vrt", data, (1, 2, 3))
    with rasterio.open(vrt, "r+") as dst:  # twice the pixel size of the reference
        dst.transform = PROFILE["transform"] @ Affine.scale(2)
    copy(vrt, tmp_path / "colour.png", driver="PNG")
    got = read_frame_window(open_scene(tmp_path / "colour.png"), reference, Window(0, 0, 64, 64))
    assert np.isnan(got[:, :, :15]).all() and not np.isnan(got[:, :, 17:]).any()


def test_a_frame_on_another_grid_hides_its_missing_values(tmp_path: Path) -> None:
    """A netCDF frame's CF missing_value, other than its _FillValue (GDAL's nodata), is missing as
    it is on the reference's grid; warped, its pixels (-32767) were data, blended into their
    neighbours."""
    from tests.test_masks import cf_netcdf

    data = (coordinate_pattern(1, 24, 28, "uint16") % 3000 + 100).astype(np.int16)[0]
    data[:, :6] = -32767
    frame = open_scene(cf_netcdf(tmp_path / "v.nc", data, (-32767, -1), step=0.02))
    assert frame.nodata == -32768 and frame.missing_values == (-32767, -1)
    profile = {"crs": "EPSG:4326", "transform": Affine(0.01, 0, 3.99, 0, -0.01, 52.51)}
    with rasterio.open(tmp_path / "ref.tif", "w", driver="GTiff", width=48, height=40, count=1,
                       dtype="int16", **profile) as dst:  # fmt: skip
        dst.write(np.full((1, 40, 48), 500, np.int16))
    got = read_frame_window(frame, open_scene(tmp_path / "ref.tif"), Window(0, 0, 40, 48))
    assert np.nanmin(got) >= 100  # no missing value read as data, nor blended into a neighbour
    assert np.isnan(got[:, :, :11]).all() and not np.isnan(got[:, :, 13:]).any()


def test_a_stac_item_is_a_frame_as_it_is_an_input(make_raster, tmp_path: Path) -> None:
    """Before, a frame went straight to GDAL: an Item of single-band assets stacked with
    --bands, which the input takes, was 'not a readable raster' as a frame."""
    import json

    from geosr.options import RunOptions
    from geosr.run_inputs import frames_for, scene_for

    def item(date: str, shift: int) -> Path:
        assets = {}
        for i, name in enumerate(("B02", "B03", "B04")):
            make_raster(f"{date}_{name}.tif", data=coordinate_pattern(1, 32, 32) + 100 * i + shift)
            assets[name] = {"href": f"./{date}_{name}.tif", "type": "image/tiff; application=geotiff"}
        doc = {"type": "Feature", "stac_version": "1.1.0", "id": date, "geometry": None, "links": []}
        doc |= {"properties": {"datetime": "2022-03-01T10:00:00Z"}, "assets": assets}
        path = tmp_path / f"{date}.json"
        path.write_text(json.dumps(doc))
        return path

    ref, later = item("d1", 0), item("d2", 50)
    opts = RunOptions(scale=2, bands="B04,B03,B02", frames=(str(later),))
    scene = scene_for(ref, opts)
    (frame,) = frames_for(scene, opts)
    got = read_frame_window(frame, scene, Window(0, 0, 32, 32))
    want = read_window(scene, Window(0, 0, 32, 32)).astype(np.float32) + 50
    np.testing.assert_array_equal(got, want)  # B04, B03, B02 of the later date


def test_a_frame_named_by_another_path_is_the_same_job(make_raster, tmp_path: Path, monkeypatch) -> None:
    """Before, the input was resolved in the job's fingerprint but a frame was not: a --resume
    naming the frame by its absolute path refused the finished output as another job's."""
    ref = make_raster("ref.tif", height=16, width=16)
    make_raster("d2.tif", data=coordinate_pattern(1, 16, 16)[:, ::-1].copy())
    monkeypatch.chdir(tmp_path)
    out = geosr.upscale_file(ref, tmp_path / "out.tif", scale=2, tile=16, frames=("d2.tif",))
    finished = out.stat().st_mtime_ns
    again = geosr.upscale_file(ref, out, scale=2, tile=16, frames=(str(tmp_path / "d2.tif"),), resume=True)
    assert again == out and out.stat().st_mtime_ns == finished  # kept, not computed again


def test_the_stac_item_of_a_multi_date_run_links_its_frames(make_raster, tmp_path: Path) -> None:
    """Before, the Item's only derived_from link was the reference: the dates fused into the
    output were in no provenance but the COG's GEOSR_FRAMES file names."""
    import pystac

    ref = make_raster("ref.tif", height=16, width=16)
    d2 = make_raster("d2.tif", data=coordinate_pattern(1, 16, 16)[:, ::-1].copy())
    out = geosr.upscale_file(ref, tmp_path / "out.tif", scale=2, tile=16, frames=(str(d2),), stac=True)
    item = pystac.Item.from_file(str(tmp_path / "out.stac.json"))
    links = [(link.href, link.title) for link in item.links if link.rel == "derived_from"]
    assert links == [(str(ref), "geosr input"), (str(d2), "geosr frame")]
    assert out.exists()


def test_a_frame_naming_its_bands_in_another_order_is_read_in_the_references(make_raster) -> None:
    """Before, frames were fused band by position: a frame of B04,B03,B02 went in with its
    blue band beside the reference's red one, 600 DN off here, silently."""
    from geosr.options import RunOptions
    from geosr.run_inputs import frames_for, scene_for

    data = coordinate_pattern(3, 32, 32)
    ref = make_raster("ref.tif", data=data, descriptions=("B02", "B03", "B04"))
    frame = make_raster("d2.tif", data=data[::-1].copy(), descriptions=("B04", "B03", "B02"))
    opts = RunOptions(scale=2, frames=(str(frame),))
    scene = scene_for(ref, opts)
    (read,) = frames_for(scene, opts)
    assert read.descriptions == ("B02", "B03", "B04")
    np.testing.assert_array_equal(read_frame_window(read, scene, Window(0, 0, 32, 32)), data)


def test_a_frame_in_other_units_is_refused(make_raster, tmp_path: Path) -> None:
    """Before, a frame of the reference's pixels x100 (16-bit against 8-bit DN) or /255
    (reflectance against DN) was normalised with the reference's normalisation and fused
    silently: the output moved by 17 DN on average (198 at most) on a real 8-bit scene."""
    data = coordinate_pattern(2, 24, 24, "uint8")
    ref = make_raster("ref.tif", data=data, dtype="uint8")
    cloudy = make_raster("cloudy.tif", data=np.minimum(data.astype("uint16") * 4, 255).astype("uint8"))
    wide = make_raster("wide.tif", data=data.astype("uint16") * 100)
    unit = make_raster("unit.tif", data=data.astype("float32") / 255, dtype="float32")
    for frame in (wide, unit):
        with pytest.raises(InputError, match=f"{frame.name}: the frame's values are .* units"):
            geosr.upscale_file(ref, tmp_path / "o.tif", scale=2, frames=(str(frame),))
        assert not (tmp_path / "o.tif").exists()
    with pytest.warns(GeosrWarning, match="not used"):  # checked, then left out by bicubic
        geosr.upscale_file(ref, tmp_path / "o.tif", scale=2, model="bicubic", frames=(str(cloudy),))


def test_a_frame_without_a_valid_pixel_is_left_out_with_a_warning(make_raster, tmp_path: Path) -> None:
    """Before, a frame of nodata only (all clouds masked, the wrong nodata) was fused nowhere, yet
    the output's GEOSR_FRAMES tag named it and nothing said so."""
    data = coordinate_pattern(1, 24, 24)
    ref = make_raster("ref.tif", data=data, nodata=0)
    empty = make_raster("empty.tif", data=np.zeros_like(data), nodata=0)
    d3 = make_raster("d3.tif", data=data[:, ::-1].copy(), nodata=0)
    with pytest.warns(GeosrWarning, match="empty.tif: the frame has no valid pixel .* left out"):
        out = geosr.upscale_file(ref, tmp_path / "o.tif", frames=(str(empty), str(d3)))
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_FRAMES"] == "d3.tif"


@pytest.mark.parametrize("past_180", ["frame", "reference"])
def test_a_scene_in_lonlat_past_180_is_read_as_it_is_a_turn_west(make_raster, past_180: str) -> None:
    """A frame on longitudes past 180 over a reference in UTM zone 60S, east of the antimeridian,
    was never fused (its region of the file was empty), and nothing said so; the other way round,
    the frame was said not to overlap the reference."""
    utm = make_raster("utm.tif", crs="EPSG:32760", transform=Affine(20, 0, 833000, 0, -20, 8230000))
    moved, t = in_lonlat(utm)
    assert t.c < -179

    def frame_read(turn: float) -> np.ndarray:
        lonlat = open_scene(
            make_raster(f"{turn}.tif", data=moved, crs="EPSG:4326", transform=Affine.translation(turn, 0) @ t)
        )
        frame, reference = (lonlat, open_scene(utm)) if past_180 == "frame" else (open_scene(utm), lonlat)
        return read_frame_window(check_frame(frame, reference), reference, Window(10, 12, 16, 16))

    want = frame_read(0)
    assert np.isfinite(want).mean() > 0.9
    np.testing.assert_allclose(frame_read(360), want, rtol=1e-6, equal_nan=True)


def test_a_frames_value_beyond_float32_once_normalised_is_said_of_that_frame(make_raster, tmp_path) -> None:
    """A frame's 7e+37, beyond float32 once normalised by the reference's statistics, was said as
    'the input holds 7e+37', which named neither the frame nor told it from the reference."""
    data = np.random.default_rng(0).random((1, 40, 40), np.float32) / 1000
    ref = make_raster("ref.tif", data=data)
    data[0, 3, 3] = 7e37
    frame = make_raster("frame.tif", data=data)
    _, said = warnings_said(
        lambda: geosr.upscale_file(ref, tmp_path / "sr.tif", scale=2, frames=[str(frame)])
    )
    assert (lines := set(said)) == {
        f"frames {frame} holds 7e+37, beyond float32's range once normalised for the model, which "
        "computes in float32: such pixels are not fused, the reference's taken there; if it is its fill "
        "value, pass it as nodata"
    }, lines


def test_a_lonlat_frame_of_a_polar_input_is_read_around_the_pole(make_raster) -> None:
    """Around a pole odc-geo's fit of the reprojection failed: a lon/lat frame of a polar
    stereographic input was refused ('frame.tif: reprojecting the frame failed (Matrix is not
    positive definite)') for every window that holds the pole."""
    from rasterio.warp import reproject

    polar = Affine(2000, 0, -30000, 0, -2000, 30000)  # 60 km a side, the North Pole at its centre
    ref = make_raster("ref.tif", height=30, width=30, crs="EPSG:3413", transform=polar)
    lonlat = Affine(1.0, 0, -180, 0, -0.002, 90.0)  # 1° x 0.002° down to 89.6° N
    moved = np.zeros((1, 200, 360), np.float32)
    reproject(coordinate_pattern(1, 30, 30).astype(np.float32), moved, src_transform=polar,
              src_crs="EPSG:3413", dst_transform=lonlat, dst_crs="EPSG:4326")  # fmt: skip
    frame = make_raster("frame.tif", data=moved, crs="EPSG:4326", transform=lonlat, nodata=0)
    for window in (Window(0, 0, 30, 30), Window(12, 12, 6, 6)):
        got = read_frame_window(open_scene(frame), open_scene(ref), window)
        want = read_window(open_scene(ref), window).astype(np.float32)
        assert np.isfinite(got).all() and np.median(np.abs(got - want) / want) < 0.01


def test_a_polar_frame_of_a_lonlat_input_up_to_the_pole_is_read_whole(make_raster) -> None:
    """A lon/lat input from -180 to 180 up to the pole is a disc in polar stereographic, which
    odc-geo's region of a polar frame fell short of: its rim was left empty (nodata)."""
    from rasterio.warp import reproject

    lonlat = Affine(10, 0, -180, 0, -0.025, 90)  # 36 x 20 px down to 89.5° N
    ref = make_raster(
        "ref.tif", data=coordinate_pattern(1, 20, 36, "float32"), crs="EPSG:4326", transform=lonlat
    )
    polar = Affine(1000, 0, -60000, 0, -1000, 60000)
    moved = np.full((1, 120, 120), np.nan, np.float32)
    reproject(coordinate_pattern(1, 20, 36, "float32"), moved, src_transform=lonlat, src_crs="EPSG:4326",
              dst_transform=polar, dst_crs="EPSG:3413", dst_nodata=np.nan)  # fmt: skip
    frame = make_raster("frame.tif", data=moved, crs="EPSG:3413", transform=polar, nodata=float("nan"))
    got = read_frame_window(open_scene(frame), open_scene(ref), Window(0, 0, 20, 36))
    want = read_window(open_scene(ref), Window(0, 0, 20, 36))
    assert np.isfinite(got).all() and np.median(np.abs(got - want) / want) < 0.01
