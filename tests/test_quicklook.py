"""geosr compare and --quicklook: PNGs of a window, one stretch across panels."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from affine import Affine
from matplotlib.image import imread
from typer.testing import CliRunner

import geosr
from geosr.cli import app
from geosr.panels import stretch
from geosr.quicklook import compare_panels, quicklook_path
from geosr.tiling import Window
from tests.conftest import (
    UTM_TRANSFORM,
    coordinate_pattern,
    in_lonlat,
    open_in_this_process,
    upscale_in_utm_bbox,
)


def test_stretch_is_shared_across_panels() -> None:
    a = np.linspace(0, 100, 200, dtype=np.float32).reshape(1, 10, 20)
    b = a * 2
    sa, sb = stretch([a, b])
    assert sa.max() == 1 and sa.min() == 0
    # The same value maps to the same grey in both panels.
    assert np.allclose(sb[0, 0, :5], np.clip((b[0, 0, :5] - 2) / 96, 0, 1), atol=0.01)


def test_compare_cli_writes_png_with_three_panels(make_raster, tmp_path: Path) -> None:
    lr = make_raster(count=3, descriptions=("B02", "B03", "B04"), height=60, width=60)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    args = ["compare", str(lr), str(sr), "--hr", str(sr), "-o", str(png), "--window", "10,10,32,32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    image = imread(png)
    assert image.shape[1] > 2.2 * image.shape[0]  # three panels side by side (two would be < 1.8)
    assert image[..., :3].std() > 0.05
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in str(again.exception)


def test_a_large_compare_window_tells_of_no_deprecated_affine_product(make_raster, tmp_path: Path) -> None:
    """A window of more output pixels than a panel shows was zoomed out with odc-geo's GeoBox,
    which composes transforms with ``*``: under `python -W default` (or pytest) geosr compare
    said "warning: Use `@` matmul instead of `*` mul operator for matrix multiplication"."""
    lr = make_raster(height=320, width=320)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        panels, *_ = compare_panels(str(lr), str(sr), window="0,0,320,320")
    assert not [str(w.message) for w in caught if "matmul" in str(w.message)]
    assert panels[0].shape[-2:] == (320, 320)  # 640 output pixels a side, decimated by 2


def test_compare_without_output_writes_the_default_png(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --help says [default: compare.png]: left out, -o raised AttributeError ('PosixPath'
    # object has no attribute 'strip') from its parser, a traceback and exit status 1.
    lr = make_raster(count=1, height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["compare", str(lr), str(sr)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "compare.png" and (tmp_path / "compare.png").exists()


def test_run_quicklook_beside_output(make_raster, tmp_path: Path) -> None:
    lr = make_raster(count=1, height=40, width=40)
    out = geosr.upscale_file(lr, tmp_path / "q.tif", scale=2, model="bicubic", quicklook=True)
    png = out.with_name("q.quicklook.png")
    assert png.exists() and imread(png).shape[1] > imread(png).shape[0]


def test_bad_window(make_raster, tmp_path: Path) -> None:
    from geosr.errors import OptionError
    from geosr.quicklook import compare_files

    lr = make_raster(count=1, height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with pytest.raises(OptionError, match="outside"):
        compare_files(str(lr), str(sr), tmp_path / "x.png", window="100,0,10,10")
    # Before, "is outside the 40 x 40 px input" for a window inside it, of width 0.
    with pytest.raises(OptionError, match="'0,0,0,5' is empty; its width and height must be at least 1"):
        compare_files(str(lr), str(sr), tmp_path / "x.png", window="0,0,0,5")


def test_a_window_outside_the_input_names_it(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """ "--window '100,0,10,10' is outside the 40 x 40 px input" named no file, where geosr's
    other lines begin with the one they are about."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(count=1, height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    args = ["compare", str(lr), str(sr), "-o", str(tmp_path / "x.png"), "--window", "100,0,10,10"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, f"error: {lr}: --window '100,0,10,10' is outside the 40 x 40 px input")
    assert not (tmp_path / "x.png").exists()


def test_compare_and_quicklook_read_zarr_like_geotiff(make_raster, tmp_path: Path) -> None:
    """A Zarr cube (its variable picked with --variable) and a Zarr output are read through
    the scenes' own readers: their panels equal the GeoTIFF's, and --quicklook works for a
    Zarr output.  Before, compare read through GDAL, which cannot open Zarr v3, and told
    the user to pass a --variable option it did not have."""
    import xarray as xr
    from rasterio.enums import Resampling

    from geosr.grid import window_grid
    from geosr.io.scene import open_scene
    from geosr.quicklook import _on_grid

    tif = make_raster(count=2, height=40, width=48, dtype="float32", nodata=float("nan"))
    cube = xr.open_dataarray(tif, engine="rasterio").rename("refl").to_dataset()
    cube["other"] = cube["refl"] * 2  # two variables: --variable must choose
    store = tmp_path / "in.zarr"
    cube.to_zarr(store, zarr_format=3, consolidated=False)
    sr = geosr.upscale_file(
        store, tmp_path / "sr.zarr", scale=2, model="bicubic", variable="refl", quicklook=True
    )
    assert sr.with_name("sr.quicklook.png").exists()

    sr_scene = open_scene(sr)
    target = window_grid(sr_scene.grid, 10, 12, 40, 44)
    for resampling in (Resampling.nearest, Resampling.cubic):
        from_zarr = _on_grid(open_scene(store, variable="refl"), [0, 1], target, resampling)
        from_tif = _on_grid(open_scene(tif), [0, 1], target, resampling)
        np.testing.assert_allclose(from_zarr, from_tif, rtol=0, atol=1e-6)

    png = tmp_path / "z.png"
    result = CliRunner().invoke(app, ["compare", str(store), str(sr), "--variable", "refl", "-o", str(png)])
    assert result.exit_code == 0, result.output
    assert imread(png).shape[1] > 1.5 * imread(png).shape[0]
    # The run records the variable it read: without --variable, compare reads it, where it
    # said "the store holds 2 raster variables ... (refl, other); choose one with --variable NAME".
    assert open_scene(sr).tags["GEOSR_VARIABLE"] == "refl"
    recorded = tmp_path / "recorded.png"
    result = CliRunner().invoke(app, ["compare", str(store), str(sr), "-o", str(recorded)])
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(imread(recorded), imread(png))
    # A store without that variable is refused as before, by its own variables.
    other = tmp_path / "other.zarr"
    cube.rename({"refl": "b", "other": "c"}).to_zarr(other, zarr_format=3, consolidated=False)
    result = CliRunner().invoke(app, ["compare", str(other), str(sr), "-o", str(tmp_path / "o.png")])
    assert "(b, c); choose one with --variable NAME" in str(result.exception), result.output
    assert not (tmp_path / "o.png").exists()


def test_compare_of_rasters_that_do_not_overlap_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """An LR, or an --hr reference, of another area: GDAL died on a 0 x 0 window, numpy on
    an empty read; now one line naming both files, exit 2 and no PNG."""
    from tests.conftest import UTM_TRANSFORM
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster("here.tif", height=40, width=40)
    far = make_raster(
        "far.tif", height=40, width=40, transform=UTM_TRANSFORM @ UTM_TRANSFORM.translation(1000, 0)
    )
    sr = geosr.upscale_file(lr, tmp_path / "here_sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    code, err = run_cli(["compare", str(far), str(sr), "-o", str(png)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "far.tif does not overlap", "here_sr.tif")
    code, err = run_cli(["compare", str(lr), str(sr), "--hr", str(far), "-o", str(png)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "far.tif does not overlap", "here_sr.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["far.tif", "here.tif", "here_sr.tif"]


def test_compare_shows_the_input_bands_a_bands_run_used(make_raster, tmp_path: Path) -> None:
    # Four flat bands far apart: a panel of the wrong bands is off by thousands.
    levels = np.array([1000, 5000, 20000, 40000], "uint16")[:, None, None]
    ripple = (np.arange(40 * 48).reshape(1, 40, 48) % 97).astype("uint16")
    lr = make_raster(data=levels + ripple, descriptions=("B02", "B03", "B04", "B08"))
    sr = geosr.upscale_file(lr, tmp_path / "rgb.tif", scale=2, model="bicubic", bands="B04,B03,B02")
    geosr_panel, bicubic_panel = compare_panels(str(lr), str(sr))[0]
    # Before, the bicubic panel was the input's bands 1, 2, 3 (B02, B03, B04): off by 19000.
    assert np.nanmax(np.abs(geosr_panel - bicubic_panel)) < 200


def test_compare_with_fewer_bands_is_one_line(make_raster, tmp_path: Path) -> None:
    from geosr.errors import InputError, OptionError
    from geosr.quicklook import compare_files
    from tests.conftest import UTM_TRANSFORM

    rgb = make_raster("rgb.tif", count=3, height=40, width=40)
    sr = geosr.upscale_file(rgb, tmp_path / "sr.tif", scale=2, model="bicubic")
    pan = make_raster("pan.tif", count=1, height=40, width=40)
    with pytest.raises(InputError, match=r"pan.tif has 1 band, fewer than the bands 1,2,3 .*--bands"):
        compare_files(str(pan), str(sr), tmp_path / "a.png")  # an IndexError before
    # A one-band reference on the output's grid (one on the input's is said to be coarse).
    fine = make_raster(
        "fine.tif", count=1, height=80, width=80, transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5)
    )
    with pytest.raises(InputError, match=r"fine.tif has 1 band"):
        compare_files(str(rgb), str(sr), tmp_path / "b.png", hr=str(fine))
    assert compare_files(str(rgb), str(sr), tmp_path / "c.png", hr=str(fine), bands="1").exists()
    # Two bands showed the first alone, in grey, without a word.
    with pytest.raises(OptionError, match=r"--bands 1,2: give 1 band .* or 3 .*, not 2"):
        compare_files(str(rgb), str(sr), tmp_path / "d.png", bands="1,2")
    assert not (tmp_path / "d.png").exists()


def test_a_window_of_nodata_only_is_said_not_shown_black_silently(make_raster, tmp_path: Path) -> None:
    from geosr.errors import GeosrWarning
    from geosr.quicklook import compare_files

    data = np.full((1, 40, 40), 500, np.uint16)
    data[:, :20, :20] = 0
    lr = make_raster(data=data, nodata=0)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with pytest.warns(GeosrWarning, match="no pixel of .*sr.tif in the window shown is valid"):
        compare_files(str(lr), str(sr), tmp_path / "a.png", window="0,0,10,10")
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)  # a window with data: no warning
        compare_files(str(lr), str(sr), tmp_path / "b.png", window="10,10,20,20")


def test_nodata_is_transparent_not_black_in_every_panel(make_raster, tmp_path: Path) -> None:
    # Nodata and NaN were stretched to 0 and shown black, as the darkest data (water in the NIR) is.
    from geosr.panels import panel_rgba

    data = coordinate_pattern(3, 40, 40)
    data[:, :10] = 0
    lr = make_raster(data=data, nodata=0)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    panels = compare_panels(str(lr), str(sr), window="0,0,40,40")[0]
    for panel, image in zip(panels, stretch(panels), strict=True):
        rgba = panel_rgba(image, panel)
        assert rgba.shape == (80, 80, 4)
        assert (rgba[:16, :, 3] == 0).all() and (rgba[24:, :, 3] == 1).all()
        assert (rgba[24:, :, :3] == np.moveaxis(image, 0, -1)[24:]).all()
    grey = panel_rgba(stretch(panels)[0][:1], panels[0][:1])
    assert (grey[..., 0] == grey[..., 2]).all() and (grey[:16, :, 3] == 0).all()


def test_a_quicklook_that_cannot_be_written_says_the_output_is_and_resume_adds_it(
    make_raster, tmp_path
) -> None:
    # A folder where the PNG goes ended the run in an IsADirectoryError traceback after the
    # output was written, with the PNG's temporary left beside it; the STAC Item's
    # failure did not say that the output was complete.  (One there before the run is
    # refused up front: it is made here while the run computes.)
    from geosr.errors import OutputError

    src = make_raster(height=40, width=30)
    dst, png = tmp_path / "sr.tif", tmp_path / "sr.quicklook.png"
    options = {"scale": 2, "model": "bicubic", "quicklook": True}
    with pytest.raises(
        OutputError, match=r"sr.tif is written, but sr.quicklook.png is not: .* a folder"
    ) as err:
        geosr.upscale_file(
            src,
            dst,
            overwrite=True,
            progress=lambda *_: (png / "kept").mkdir(parents=True, exist_ok=True),
            **options,
        )
    assert "rerun the same command with resume=True" in str(err.value)
    assert dst.exists() and (png / "kept").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "sr.quicklook.png", "sr.tif"]
    written = dst.stat().st_mtime_ns
    (png / "kept").rmdir(), png.rmdir()
    geosr.upscale_file(src, dst, resume=True, **options)
    assert png.is_file() and dst.stat().st_mtime_ns == written  # the output was kept as it was


def test_the_bicubic_panel_takes_the_runs_nodata(make_raster, tmp_path) -> None:
    # --quicklook reopened the input with its own (undeclared) nodata, so after a
    # `--nodata 0` run of a JP2 the bicubic panel showed the 0 fill as black data and
    # rang into the valid pixels beside it, while the geosr panel showed it as nodata.
    data = np.full((1, 40, 30), 1000, "uint16")
    data[:, :, :12] = 0  # fill the file does not declare
    src = make_raster(data=data)
    out = geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", nodata=0)
    as_file = compare_panels(str(src), str(out))[0][1]
    as_run = compare_panels(str(src), str(out), lr_nodata=0)[0][1]
    # The fill is hidden in both, as in the output; beside it the file's reading rings, the run's not.
    assert np.isnan(as_file[:, :, :24]).all() and np.isnan(as_run[:, :, :24]).all()
    assert np.abs(as_file[:, :, 24:27] - 1000).max() > 100
    assert np.nanmax(np.abs(as_run - 1000)) < 1  # no ringing from the fill


def keys_cubic(values: np.ndarray, position: float) -> float:
    """GDAL's cubic (Keys, a = -0.5) of 1-D ``values`` at pixel coordinate ``position``."""

    def weight(x: float, a: float = -0.5) -> float:
        x = abs(x)
        return (a + 2) * x**3 - (a + 3) * x**2 + 1 if x <= 1 else a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a

    i = int(np.floor(position))
    return sum(values[i + j] * weight(position - i - j) for j in (-1, 0, 1, 2))


@pytest.mark.parametrize("shape", [(1, 12), (12, 1)], ids=["one row", "one column"])
def test_the_bicubic_panel_of_a_one_pixel_strip_is_cubic(make_raster, tmp_path, shape) -> None:
    """GDAL warps a source one pixel high by nearest neighbour: the panel was blocks of 2 x 2
    equal pixels.  It is now cubic along the strip, and the same across it."""
    from tests.conftest import coordinate_pattern

    strip = coordinate_pattern(1, *shape)
    src = make_raster("strip.tif", data=strip)
    out = geosr.upscale_file(src, tmp_path / "x2.tif", scale=2, model="bicubic")
    bicubic = compare_panels(str(src), str(out))[0][1][0]
    assert bicubic.shape == (2 * shape[0], 2 * shape[1])
    if shape[1] == 1:
        bicubic = bicubic.T
    assert (bicubic[0] == bicubic[1]).all()
    values = strip.ravel().astype(np.float64)
    # Output pixels whose four taps lie inside the strip (GDAL's edges are its own).
    expected = [keys_cubic(values, (o + 0.5) / 2 - 0.5) for o in range(3, 2 * len(values) - 3)]
    np.testing.assert_allclose(bicubic[0, 3:-3], expected, atol=1e-3)


def drawn_panels(monkeypatch: pytest.MonkeyPatch) -> list[list[np.ndarray]]:
    """The panels of each figure a run's --quicklook draws, in order; the figures are drawn as ever."""
    import geosr.quicklook

    shown: list[list[np.ndarray]] = []
    draw = geosr.quicklook.draw_figure

    def recorded(panels: list[np.ndarray], *args: Any, **kwargs: Any) -> Path:
        shown.append(list(panels))
        return draw(panels, *args, **kwargs)

    monkeypatch.setattr(geosr.quicklook, "draw_figure", recorded)
    return shown


def test_the_bicubic_panel_hides_the_missing_values_the_run_hid(tmp_path: Path, monkeypatch) -> None:
    """A netCDF's CF missing_value (-32767 beside its _FillValue) is missing in a run, and data after
    --nodata -32768, which replaces the file's values as the run's does; the bicubic panel of compare
    --nodata, and of that run's --quicklook, still hid those pixels."""
    from tests.test_masks import cf_netcdf

    data = (coordinate_pattern(1, 24, 28, "uint16") % 3000 + 100).astype(np.int16)[0]
    data[:, :6] = -32767
    nc = cf_netcdf(tmp_path / "v.nc", data, (-32767,))
    shown = drawn_panels(monkeypatch)
    for name, nodata in (("kept", None), ("data", -32768)):
        out = geosr.upscale_file(
            nc, tmp_path / f"{name}.tif", scale=2, model="bicubic", nodata=nodata, quicklook=True
        )
        assert quicklook_path(out).is_file()
    hidden, as_data = (panels[1] for panels in shown)
    assert np.isnan(hidden[:, :, :10]).all() and np.isfinite(hidden[:, :, 14:]).all()
    assert np.isfinite(as_data).all()
    assert np.isfinite(compare_panels(str(nc), str(out), lr_nodata=-32768)[0][1]).all()  # geosr compare


def test_the_bicubic_panel_of_an_input_whose_alpha_band_comes_first_shows_the_same_bands(
    tmp_path: Path, monkeypatch
) -> None:
    """An input's alpha band is no band of its reads: with it first (ARGBN), the bicubic panel took
    band number - 1 as its position in the read and showed each band's neighbour, in a run's
    --quicklook and in geosr compare of a --bands run alike."""
    import rasterio
    from rasterio.enums import ColorInterp

    from tests.test_masks import hidden_area, write

    bands = (coordinate_pattern(4, 40, 44, "uint8") % 200 + 20).astype(np.uint8)
    bands[1:] = bands[1:] // 2 + 40 * np.arange(1, 4, dtype=np.uint8)[:, None, None]  # each band its own
    alpha = np.where(hidden_area(40, 44), 0, 255).astype(np.uint8)[None]
    src = write(tmp_path / "argbn.tif", np.concatenate([alpha, bands]))
    with rasterio.open(src, "r+") as f:
        f.colorinterp = [
            ColorInterp.alpha,
            ColorInterp.red,
            ColorInterp.green,
            ColorInterp.blue,
            ColorInterp.undefined,
        ]
    shown = drawn_panels(monkeypatch)
    assert quicklook_path(
        geosr.upscale_file(src, tmp_path / "all.tif", scale=2, model="bicubic", quicklook=True)
    ).is_file()
    picked = geosr.upscale_file(src, tmp_path / "picked.tif", scale=2, model="bicubic", bands="4,3,2")
    for geosr_panel, bicubic_panel in (shown[0], compare_panels(str(src), str(picked))[0]):
        assert np.nanmedian(np.abs(geosr_panel - bicubic_panel)) < 5  # a neighbour band is 40 off


def test_a_long_file_name_is_wrapped_in_the_title_not_cut_off() -> None:
    # A Sentinel-2 product name (90 characters) ran past both edges of a 2-panel quicklook.
    from geosr.panels import _fitted

    name = "S2B_MSIL2A_20230715T102559_N0509_R108_T32UNE_20230715T134410_product_x2.tif: window of 100 x 120"
    lines = _fitted(name, 5.52, 9).split("\n")
    assert len(lines) > 1 and max(map(len, lines)) <= 5.52 * 72 / (0.75 * 9)
    assert "".join(lines).replace(" ", "") == name.replace(" ", "")
    assert _fitted("bicubic", 2.76, 10) == "bicubic"


def test_window_is_in_the_input_pixels_for_an_aoi_output(make_raster, tmp_path: Path) -> None:
    """--window gives pixels of the LR file, also when the output is an AOI run's (which covers
    only part of it).  Before, they were counted from the AOI's corner: a window inside the
    40 x 40 input was refused as "outside the 20 x 40 px input", and others showed the wrong place."""
    from geosr.errors import OptionError
    from tests.conftest import UTM_TRANSFORM

    lr = make_raster(height=40, width=40)
    full = geosr.upscale_file(lr, tmp_path / "full.tif", scale=2, model="bicubic")
    left, top = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    east = f"{left + 200},{top - 400},{left + 400},{top}"  # the eastern half: cols 20-40
    aoi = upscale_in_utm_bbox(lr, tmp_path / "aoi.tif", east)
    panels, _, win, *_ = compare_panels(str(lr), str(aoi), window="25,5,10,10")
    expected = compare_panels(str(lr), str(full), window="25,5,10,10")[0]
    assert (win.width, win.height) == (20, 20)
    np.testing.assert_array_equal(panels[0], expected[0])
    np.testing.assert_allclose(panels[1], expected[1], atol=1e-3)
    # The last column and row included, as geosr info gives an AOI's (it said 'cols 20-40, rows 0-40').
    covers = (
        r"'2,5,10,10' lies outside .*aoi.tif, which covers cols 20-39, rows 0-39 \(20 x 40 px\) of the 40 x"
    )
    with pytest.raises(OptionError, match=covers):
        compare_panels(str(lr), str(aoi), window="2,5,10,10")


def test_the_panels_hide_what_an_aoi_polygon_left_out_of_the_output(make_raster, tmp_path: Path) -> None:
    """Outside an --aoi polygon the output is nodata: the bicubic and reference panels showed the
    input there, the whole square beside the output's triangle."""
    from tests.test_aoi import write_geojson

    lr = make_raster(count=3, height=40, width=40)
    left, top = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    ring = [(left, top), (left + 400, top), (left, top - 400), (left, top)]  # the upper-left half
    aoi = write_geojson(tmp_path / "tri.geojson", ring, crs="EPSG:32633")
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic", aoi=str(aoi), quicklook=True)
    with pytest.warns(geosr.GeosrWarning, match="reference panel shows them enlarged"):
        panels = compare_panels(str(lr), str(sr), hr=str(lr))[0]
    shown = [np.isfinite(panel).all(axis=0) for panel in panels]
    assert 0.4 < shown[0].mean() < 0.6 and not shown[0][-1, -1]
    for each in shown[1:]:
        np.testing.assert_array_equal(each, shown[0])
    # The quicklook's two panels (below their titles), bicubic and geosr, are as much white page.
    white = (imread(tmp_path / "sr.quicklook.png")[60:, :, :3] == 1).all(axis=-1)
    half = white.shape[1] // 2
    assert abs(white[:, :half].mean() - white[:, half:].mean()) < 0.02


def test_compare_with_an_input_in_another_crs(make_raster, tmp_path: Path) -> None:
    """An LR in lon/lat against an SR in UTM: the scale comes from their footprints, not from
    pixel sizes in degrees and metres.  Before: 'its pixels are not smaller than those of
    lr_4326.tif' (scale 0), and the other way round 'less than one pixel (x321763)'."""
    import rasterio
    from rasterio.warp import calculate_default_transform, reproject

    lr = make_raster(height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with rasterio.open(lr) as src:
        transform, width, height = calculate_default_transform(
            src.crs, "EPSG:4326", src.width, src.height, *src.bounds
        )
        profile = dict(src.profile, crs="EPSG:4326", transform=transform, width=width, height=height)
        data = np.zeros((1, height, width), src.dtypes[0])
        reproject(
            src.read(),
            data,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs="EPSG:4326",
        )
    geographic = tmp_path / "lr_4326.tif"
    with rasterio.open(geographic, "w", **profile) as dst:
        dst.write(data)
    panels, titles, _, scale, _ = compare_panels(str(geographic), str(sr))
    assert scale == 2 and titles[0].endswith("x2")
    assert np.isfinite(panels[1]).mean() > 0.9  # the bicubic panel is the LR, reprojected


def test_default_window_is_centred_where_the_input_covers_the_output(make_raster, tmp_path: Path) -> None:
    """An LR that covers a corner of the SR: the default window is centred on that corner.
    Before, it was centred on the SR, missed the LR, and compare said the LR 'does not
    overlap' the SR that it does overlap."""
    import rasterio

    big = make_raster("big.tif", height=200, width=200)
    sr = geosr.upscale_file(big, tmp_path / "big_x2.tif", scale=2, model="bicubic")
    with rasterio.open(big) as src:
        corner = make_raster("corner.tif", data=src.read(window=((0, 30), (0, 30))))
    panels, _, win, *_ = compare_panels(str(corner), str(sr))
    assert (win.row, win.col, win.height, win.width) == (0, 0, 60, 60)
    assert np.isfinite(panels[1]).all()
    # The input and output of one run: the centred 128 LR px, as before.
    assert compare_panels(str(big), str(sr))[2] == type(win)(72, 72, 256, 256)


@pytest.mark.parametrize(("flag", "needle"), [("--bands", "empty entry"), ("--hr", "--hr is empty")])
def test_compare_refuses_an_empty_option_value(
    make_raster, tmp_path: Path, capsys, monkeypatch, flag: str, needle: str
) -> None:
    """``--bands ''`` drew the default bands (geosr run refuses it), ``--hr ''`` said ': a folder,
    not a raster GDAL reads'."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster("here.tif", height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "here_sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    code, err = run_cli(["compare", str(lr), str(sr), "-o", str(png), flag, ""], capsys, monkeypatch)
    assert_one_clear_line(code, err, flag, needle)
    assert not png.exists()


def test_compare_writes_the_file_a_file_url_names(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """`geosr compare ... -o file:///data/c%201.png` was taken for the path 'file:/data/c%201.png':
    "no such directory for the quicklook", where geosr run -o takes the URL; another host's is refused."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c 1.png"
    code, err = run_cli(["compare", lr.as_uri(), str(sr), "-o", png.as_uri()], capsys, monkeypatch)
    assert code == 0, err
    assert imread(png).shape[0] > 0
    elsewhere = f"file://host{tmp_path / 'c2.png'}"
    code, err = run_cli(["compare", str(lr), str(sr), "-o", elsewhere], capsys, monkeypatch)
    assert_one_clear_line(code, err, elsewhere, "a file URL of the host 'host'")
    assert not (tmp_path / "c2.png").exists()


def test_compare_into_a_missing_folder_says_to_create_it(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`geosr compare ... -o new/c.png` said 'new: no such directory for the quicklook', no more."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "new folder" / "c.png"
    code, err = run_cli(["compare", str(lr), str(sr), "-o", str(png)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "no such directory for the quicklook", f"mkdir -p '{png.parent}'")
    assert not png.parent.exists()


def test_compare_to_a_name_with_a_stray_slash_is_refused(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """``-o c.png/ --overwrite`` replaced the file c.png (a Path drops the '/'), and ``-o new/``
    was told that 'new' is no PNG, where no folder 'new' is."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    kept = tmp_path / "c.png"
    kept.write_bytes(b"an earlier figure")
    args = ["compare", str(lr), str(sr), "--overwrite", "-o"]
    code, err = run_cli([*args, f"{kept}/"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{kept}/", "is a file, not a folder", "drop the '/'")
    assert kept.read_bytes() == b"an earlier figure"
    code, err = run_cli([*args, f"{tmp_path / 'new'}/"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "new/: no such folder", "mkdir -p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.png", "scene.tif", "sr.tif"]


def test_compare_takes_the_runs_nodata_as_the_quicklook_does(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A swath edge of 0s that the file does not declare (a Sentinel-2 JP2's): compare had no
    --nodata, so its bicubic panel took the 0s for data and rang along the edge, unlike the
    run's own --quicklook of the same files."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    data = np.full((1, 40, 40), 0, "uint16")
    data[:, :, 12:] = 1000 + 30 * np.arange(40, dtype="uint16")[:, None]
    lr = make_raster("swath.tif", data=data)
    sr = geosr.upscale_file(lr, tmp_path / "swath_x2.tif", scale=2, model="bicubic", nodata=0, quicklook=True)
    png = tmp_path / "c.png"
    code, err = run_cli(["compare", str(lr), str(sr), "-o", str(png), "--nodata", "0"], capsys, monkeypatch)
    assert code == 0, err
    assert np.array_equal(imread(png), imread(tmp_path / "swath_x2.quicklook.png"))
    code, err = run_cli(
        ["compare", str(lr), str(sr), "-o", str(tmp_path / "n.png"), "--nodata", "nan"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "swath.tif: nodata nan is not a valid uint16 value")
    assert not (tmp_path / "n.png").exists()


def test_compare_of_a_raster_with_itself_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The input given twice (or two rasters of one resolution) made a PNG titled 'geosr x1' of two
    identical panels: only pixels larger than the LR's were refused."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster("here.tif", height=24, width=24)
    png = tmp_path / "c.png"
    code, err = run_cli(["compare", str(lr), str(lr), "-o", str(png)], capsys, monkeypatch)
    assert_one_clear_line(code, err, "here.tif: its pixels are not smaller than those of")
    assert not png.exists()


def test_compare_never_overwrites_a_raster_it_compares(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """A georeferenced PNG is a raster GDAL reads: ``--hr ref.png -o ref.png --overwrite`` replaced
    the reference with the comparison of it."""
    import rasterio

    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster("here.tif", height=24, width=24)
    sr = geosr.upscale_file(lr, tmp_path / "here_x2.tif", scale=2, model="bicubic")
    ref = tmp_path / "ref.png"
    with rasterio.open(sr) as src:
        profile = {k: src.profile[k] for k in ("height", "width", "count", "crs", "transform")}
        with rasterio.open(ref, "w", driver="PNG", dtype="uint8", **profile) as dst:
            dst.write(np.clip(src.read(), 0, 255).astype("uint8"))
    before = ref.read_bytes()
    args = ["compare", str(lr), str(sr), "--hr", str(ref), "-o", str(ref), "--overwrite"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "ref.png: the PNG would overwrite the --hr reference it compares")
    assert ref.read_bytes() == before


def test_the_reference_is_shown_from_its_bands_of_the_same_names(make_raster, tmp_path: Path) -> None:
    """A reference stacked B04,B03,B02 against an output of B02,B03,B04 was shown from the
    output's positions (3,2,1), its blue as red and its red as blue."""
    from tests.conftest import UTM_TRANSFORM

    levels = np.array([1000, 3000, 6000], "uint16")[:, None, None]
    lr = make_raster(data=np.broadcast_to(levels, (3, 32, 32)).copy(), descriptions=("B02", "B03", "B04"))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    hr = make_raster(
        "hr.tif",
        data=np.broadcast_to(levels[::-1], (3, 64, 64)).copy(),
        descriptions=("B04", "B03", "B02"),
        transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5),
    )
    panels = compare_panels(str(lr), str(sr), hr=str(hr))[0]
    for panel in panels:  # red, green, blue: B04, B03, B02 in every panel
        np.testing.assert_allclose(np.nanmean(panel, axis=(1, 2)), [6000, 3000, 1000], atol=1)


@pytest.mark.parametrize(
    "names",
    [
        ("B08", "B04", "B03", "B02"),
        ("SR_B8", "SR_B4", "SR_B3", "SR_B2"),
        tuple(f"B{b}, central wavelength {w} nm" for b, w in ((8, 842), (4, 665), (3, 560), (2, 490))),
    ],
)
def test_the_reference_bands_match_by_sensor_band_names(make_raster, tmp_path: Path, names) -> None:
    """A reference's bands were matched to the output's by the old rule: 'SR_B8' or 'B8, central
    wavelength 842 nm' was no 'B08', so the output's near infrared (its 4th band) was shown from
    the reference's 4th, its blue; a figure's colours already read those names (colour_name)."""
    from tests.conftest import UTM_TRANSFORM

    levels = np.array([1000, 3000, 6000, 8000], "uint16")[:, None, None]
    lr = make_raster(
        data=np.broadcast_to(levels, (4, 32, 32)).copy(), descriptions=("B02", "B03", "B04", "B08")
    )
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    hr = make_raster(
        "hr.tif",
        data=np.broadcast_to(levels[::-1], (4, 64, 64)).copy(),
        descriptions=names,
        transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5),
    )
    for shown, means in (([3], [8000]), ([2, 1, 0], [6000, 3000, 1000])):
        reference = compare_panels(str(lr), str(sr), hr=str(hr), bands=shown)[0][-1]
        np.testing.assert_allclose(np.nanmean(reference, axis=(1, 2)), means, atol=1)


def test_panels_hold_the_values_the_scale_and_offset_give(make_raster, tmp_path: Path) -> None:
    """An output of integers declared as reflectance (scale 0.0001, offset -0.1) against a
    reference in reflectance: the reference was stretched as integers, so it showed black."""
    import rasterio

    from tests.conftest import UTM_TRANSFORM

    lr = make_raster(count=1, height=32, width=32)
    with rasterio.open(lr, "r+") as f:
        f.scales, f.offsets = (0.0001,), (-0.1,)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with rasterio.open(sr) as f:
        reflectance = f.read().astype("float32") * 0.0001 - 0.1
    hr = make_raster("hr.tif", data=reflectance, transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5))
    geosr_panel, bicubic_panel, reference = compare_panels(str(lr), str(sr), hr=str(hr))[0]
    np.testing.assert_allclose(reference, geosr_panel, atol=1e-6)
    np.testing.assert_allclose(bicubic_panel, geosr_panel, atol=0.002)
    assert np.nanmin(geosr_panel) >= -0.1 and np.nanmax(geosr_panel) < 0.3  # reflectance, not integers


def _pixel_doubled(make_raster, tmp_path: Path, data: np.ndarray) -> tuple[Path, tuple[Path, Path]]:
    """An LR of ``data`` and its x2 output of each LR pixel as 2 x 2 (any pixel of a block is the
    LR's), as a GeoTIFF and as a Zarr store."""
    import xarray as xr

    from tests.conftest import UTM_TRANSFORM

    lr = make_raster(data=data)
    sr = make_raster(
        "sr.tif",
        data=np.kron(data, np.ones((2, 2), data.dtype)),
        transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5),
    )
    store = tmp_path / "sr.zarr"
    xr.open_dataarray(sr, engine="rasterio").rename("v").to_dataset().to_zarr(
        store, zarr_format=3, consolidated=False
    )
    return lr, (sr, store)


def test_a_window_larger_than_a_panel_is_read_decimated(make_raster, tmp_path: Path) -> None:
    """A panel shows at most PANEL_PIXELS a side; a larger --window was read whole at the
    output's resolution (3.4 GiB of memory for 4096^2 output pixels, so an 8192^2 LR at x4
    could not be shown). It is read decimated, from a GeoTIFF's overviews or a Zarr's strides."""
    side = 320  # LR pixels: 640 output pixels, more than a panel's 600, so decimated by 2
    data = coordinate_pattern(1, side, side)
    from tests.conftest import UTM_TRANSFORM

    lr, outputs = _pixel_doubled(make_raster, tmp_path, data)
    sr = outputs[0]
    for output in outputs:
        geosr_panel, bicubic_panel = compare_panels(str(lr), str(output), window=f"0,0,{side},{side}")[0]
        assert geosr_panel.shape == bicubic_panel.shape == (1, side, side)
        np.testing.assert_array_equal(geosr_panel, data.astype("float32"))
        np.testing.assert_allclose(bicubic_panel, data, atol=1)
    # A reference of one column at the window's edge, narrower than a block: GDAL's 'Invalid
    # dataset dimensions : 0 x 320' traceback.
    edge = UTM_TRANSFORM @ UTM_TRANSFORM.translation(side - 0.5, 0) @ UTM_TRANSFORM.scale(0.5)
    sliver = make_raster("sliver.tif", data=data[:, :, :1].repeat(2, axis=1), transform=edge)
    reference = compare_panels(str(lr), str(sr), hr=str(sliver), window=f"0,0,{side},{side}")[0][2]
    assert np.isfinite(reference[:, :, -1]).all() and not np.isfinite(reference[:, :, :-1]).any()


def test_a_panel_of_pixels_that_are_not_square_keeps_their_shape(make_raster, tmp_path: Path) -> None:
    """Pixels 10 m wide and 20 m tall: a 40 x 40 px window is twice as tall as it is wide on the
    ground, and was drawn square (squashed to half its height)."""
    from affine import Affine

    lr = make_raster(count=1, height=40, width=40, transform=Affine(10, 0, 335440, 0, -20, 5866490))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(png), "--window", "10,10,20,20"])
    drawn = (imread(png)[..., :3] < 0.99).any(axis=-1)
    columns = np.flatnonzero(drawn.sum(axis=0) > 0.3 * drawn.shape[0])
    rows = np.flatnonzero(drawn[:, columns[0] : columns[0] + 20].all(axis=1))  # the first panel
    first = columns[columns < drawn.shape[1] // 2]
    height, width = rows[-1] - rows[0] + 1, first[-1] - first[0] + 1
    assert height == pytest.approx(2 * width, rel=0.05)


def test_a_window_without_a_pixel_valid_in_every_band_is_said(make_raster, tmp_path: Path) -> None:
    """A panel shows a pixel only where every band shown is valid; one band of nodata in the
    window left every panel empty, without the warning an all-nodata window gives."""
    from geosr.errors import GeosrWarning
    from geosr.quicklook import compare_files

    data = coordinate_pattern(3, 40, 40, "float32")
    data[2, :20] = np.nan  # blue is missing in the top half
    lr = make_raster(data=data, nodata=float("nan"))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with pytest.warns(GeosrWarning, match="no pixel of .*sr.tif in the window shown is valid"):
        compare_files(str(lr), str(sr), tmp_path / "a.png", window="0,0,40,10")


def test_compare_help_says_what_bands_it_takes() -> None:
    """compare's --bands help was run's, whose example of 4 bands compare refuses."""
    result = CliRunner().invoke(app, ["compare", "--help"])
    text = " ".join(result.output.split())  # as wrapped to the terminal
    assert result.exit_code == 0
    assert "B04,B03,B02,B08" not in text
    assert "1 in grey or 3 as red, green, blue" in text


def test_an_interrupted_png_leaves_nothing_behind(make_raster, tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C while matplotlib wrote the PNG left its half-written temporary (.c.png.tmp)."""
    from matplotlib.figure import Figure

    from geosr.quicklook import compare_files

    lr = make_raster(count=1, height=20, width=20)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    before = sorted(tmp_path.iterdir())

    def interrupted(self: Figure, fname: Path, **kwargs: object) -> None:
        Path(fname).write_bytes(b"\\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(Figure, "savefig", interrupted)
    with pytest.raises(KeyboardInterrupt):
        compare_files(str(lr), str(sr), tmp_path / "c.png")
    assert sorted(tmp_path.iterdir()) == before


def test_a_reference_store_of_several_variables_takes_hr_variable(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """An --hr Zarr store of several variables said 'choose one with --variable NAME', which
    picks the LR's variable and was then refused for the LR GeoTIFF: no way to compare."""
    import xarray as xr

    from tests.conftest import UTM_TRANSFORM
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(count=1, height=20, width=20)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    hr = make_raster(
        "hr.tif", count=1, height=40, width=40, transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5)
    )
    cube = xr.open_dataarray(hr, engine="rasterio").rename("a").to_dataset()
    cube["b"] = cube["a"] * 2
    store = tmp_path / "hr.zarr"
    cube.to_zarr(store, zarr_format=3, consolidated=False)
    png = tmp_path / "c.png"
    code, err = run_cli(
        ["compare", str(lr), str(sr), "--hr", str(store), "-o", str(png)], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "hr.zarr", "--hr-variable NAME")
    code, err = run_cli(
        ["compare", str(lr), str(sr), "--hr-variable", "b", "-o", str(png)], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "--hr-variable b", "give --hr too")
    with pytest.warns(geosr.GeosrWarning, match="all but white"):  # b is twice the output's values
        panels = compare_panels(str(lr), str(sr), hr=str(store), hr_variable="b", window="5,5,10,10")
    np.testing.assert_allclose(panels[0][2], 2 * coordinate_pattern(1, 40, 40)[:, 10:30, 10:30])


def test_a_constant_band_is_mid_grey_not_black() -> None:
    """A window of one value in the geosr panel (a lake, a saturated field) was stretched to 0,
    black, as a failed run looks; values above and below it must still show so."""
    flat = np.full((1, 4, 4), 300, np.float32)
    other = flat + np.array([-1, 0, 1, 2], np.float32)[None, None, :]
    shown, compared = stretch([flat, other])
    assert (shown == 0.5).all()
    np.testing.assert_allclose(compared[0, 0], [0, 0.5, 1, 1])


def test_a_decimated_window_shows_its_last_partial_block(make_raster, tmp_path: Path) -> None:
    """A window of 1220 x 80 output pixels is shown 1:3, 407 x 27: its 80 rows are 26 blocks of
    3 and a partial one, which the read left out, so the panel's last row was transparent."""
    data = coordinate_pattern(1, 40, 610)
    lr, outputs = _pixel_doubled(make_raster, tmp_path, data)
    for output in outputs:
        geosr_panel = compare_panels(str(lr), str(output), window="0,0,610,40")[0][0]
        assert geosr_panel.shape == (1, 27, 407)
        assert np.isfinite(geosr_panel[:, :, :-1]).all(), output  # the last column is 2/3 past the edge


def test_the_stretch_is_of_the_pixels_shown() -> None:
    """Pixels hidden by another band's nodata set a band's stretch: bright ones there (red over
    a blue band's nodata) made the red of every pixel shown dark."""
    panel = np.zeros((3, 10, 10), np.float32)
    panel[:, :, :5] = np.linspace(0, 100, 50, dtype=np.float32).reshape(10, 5)
    panel[0, :, 5:] = 10000  # red, where blue is nodata
    panel[2, :, 5:] = np.nan
    red = stretch([panel])[0][0, :, :5]
    assert red.max() == 1 and red.min() == 0


def test_a_south_up_scene_is_drawn_north_up(make_raster, tmp_path: Path) -> None:
    """A south-up grid (a Zarr store's ascending latitudes, a GeoTIFF with a positive y pixel
    size) was drawn row 0 at the top: its south, upside down against any map."""
    from affine import Affine

    data = np.repeat(np.linspace(100, 4000, 40, dtype=np.float32), 40).reshape(1, 40, 40).astype("uint16")
    lr = make_raster(data=data, transform=Affine(10, 0, 335440, 0, 10, 5866490))  # row 0 south, dark
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    assert CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(png)]).exit_code == 0
    image = imread(png)[..., :3].mean(axis=-1)
    drawn = np.flatnonzero((image < 0.99).mean(axis=1) > 0.3)  # the panels' rows
    top, bottom = image[drawn[2]].mean(), image[drawn[-3]].mean()
    assert top > bottom + 0.5  # the bright north on top


@pytest.mark.parametrize(
    ("turn", "says"),
    [
        (Affine.rotation(30), "the grid is turned 30° counter-clockwise from north up"),
        # Said 'sheared', and '-30° counter-clockwise'; a mirror image was said to be turned only.
        (Affine.rotation(-135), "the grid is turned 135° clockwise from north up"),
        (Affine.rotation(-30), "the grid is turned 30° clockwise from north up"),
        (
            Affine.rotation(30) @ Affine.scale(1, -1),
            "turned 30° counter-clockwise from north up and mirrored",
        ),
        (Affine.shear(20, 0), "the grid is sheared, not north up"),
        (Affine.identity(), None),
    ],
)
def test_a_rotated_or_sheared_grids_figure_says_it_is_not_north_up(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, turn: Affine, says: str | None
) -> None:
    """The panels of a rotated or sheared grid are drawn in stored pixel order (turning them would
    resample them again), and nothing said so: north was anywhere on a figure read as a map."""
    from geosr import panels

    lr = make_raster(
        height=24, width=24, transform=Affine.translation(335440, 5866490) @ turn @ Affine.scale(10, -10)
    )
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    figures, drawn = [], panels.detached_figure
    monkeypatch.setattr(panels, "detached_figure", lambda size: figures.append(drawn(size)) or figures[-1])
    png = tmp_path / "c.png"
    assert CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(png)]).exit_code == 0
    title = " ".join(figures[0].get_suptitle().split())
    assert (says in title) if says else "north up" not in title, title


def test_a_reference_coarser_than_the_output_is_said(make_raster, tmp_path: Path) -> None:
    """The LR given as --hr by mistake was shown as the 'reference', its blocks enlarged,
    without a word."""
    from geosr.errors import GeosrWarning

    lr = make_raster(count=1, height=20, width=20)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    with pytest.warns(GeosrWarning, match=r"scene.tif: its pixels are 2 times as large as those of .*sr.tif"):
        compare_panels(str(lr), str(sr), hr=str(lr))
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)  # a reference on the output's grid: no warning
        compare_panels(str(lr), str(sr), hr=str(sr))


def test_a_name_in_a_script_the_font_lacks_draws_without_warnings(make_raster, tmp_path: Path) -> None:
    """A quicklook of '北京_x2.tif' printed 'warning: Glyph 21271 (...) missing from font(s) DejaVu
    Sans.' once per character: lines about a font amid geosr's own, for a figure still written."""
    lr = make_raster(count=1, height=40, width=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = geosr.upscale_file(lr, tmp_path / "北京_x2.tif", scale=2, model="bicubic", quicklook=True)
    assert out.with_name("北京_x2.quicklook.png").exists()
    assert not [w for w in caught if "missing from font" in str(w.message)], [str(w.message) for w in caught]


def test_compare_writes_into_a_folder_given_as_output(make_raster, tmp_path: Path) -> None:
    """-o FOLDER was refused as 'the quicklook is a PNG', where geosr run -o takes a folder; a
    Zarr store (a folder too) is still refused, never written into."""
    lr = make_raster(count=1, height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    folder = tmp_path / "figures"
    folder.mkdir()
    result = CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(folder / "compare.png") and (folder / "compare.png").exists()
    store = geosr.upscale_file(lr, tmp_path / "sr.zarr", scale=2, model="bicubic")
    result = CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(store)])
    assert result.exit_code != 0 and not (store / "compare.png").exists()


def test_a_reference_in_lonlat_past_180_is_shown_as_it_is_a_turn_west(make_raster, tmp_path: Path) -> None:
    """A reference on longitudes past 180 (180.11) under a UTM zone 60S output east of the
    antimeridian (-179.89): 'does not overlap', though it is the same place."""
    from affine import Affine

    lr = make_raster(height=40, width=40, crs="EPSG:32760", transform=Affine(20, 0, 833000, 0, -20, 8230000))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    moved, t = in_lonlat(sr)
    assert t.c < -179
    west, east = (
        make_raster(name, data=moved, crs="EPSG:4326", transform=Affine.translation(turn, 0) @ t)
        for name, turn in (("west.tif", 0), ("east.tif", 360))
    )
    want = compare_panels(str(lr), str(sr), hr=str(west))[0][2]
    assert np.isfinite(want).mean() > 0.9
    np.testing.assert_array_equal(compare_panels(str(lr), str(sr), hr=str(east))[0][2], want)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files by /proc/self/fd (Linux)")
def test_compare_files_leaves_the_files_it_compares_closed(make_raster, tmp_path: Path) -> None:
    """Its reads left the input, the output and the reference open in the calling thread's cache:
    more descriptors for each comparison of a notebook, and a deleted output's space kept."""
    from geosr.quicklook import compare_files

    lr = make_raster(height=32, width=32)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    compare_files(str(lr), str(sr), tmp_path / "c.png", hr=str(sr))
    assert not [p for p in (lr, sr) if open_in_this_process(p)]


def test_compare_files_expands_a_home_folder_in_every_path(make_raster, tmp_path: Path, monkeypatch) -> None:
    """geosr.quicklook.compare_files(..., "~/c.png") was '~: no such directory for the quicklook;
    create it first (mkdir -p '~')', where its rasters' '~' was the home folder."""
    from geosr.quicklook import compare_files

    make_raster("lr.tif", height=16, width=16)
    make_raster("sr.tif", height=32, width=32, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the home folder: '~' is no relative path
    assert compare_files("~/lr.tif", "~/sr.tif", "~/c.png", hr="~/sr.tif") == tmp_path / "c.png"
    assert compare_files("~/lr.tif", "~/sr.tif", Path("~/d.png")) == tmp_path / "d.png"
    assert imread(tmp_path / "c.png").shape[-1] in (3, 4) and (tmp_path / "d.png").is_file()
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_compare_into_a_folder_that_takes_no_files_is_one_line(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """-o into a folder on a read-only file system: the panels were read and drawn, then 'cannot
    write the PNG ([Errno 30] Read-only file system: '.../.c.png.tmp')', a temporary's name and no fix."""
    import os

    from geosr.io import atomic
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    closed = tmp_path / "closed"
    closed.mkdir()
    real_access, real_statvfs = os.access, os.statvfs

    def statvfs(path):  # as a read-only mount: root, too, is refused there
        found = real_statvfs(path)
        if Path(path) != closed:
            return found
        return os.statvfs_result((*found[:8], found.f_flag | os.ST_RDONLY, found.f_namemax))

    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != closed and real_access(path, mode))
    monkeypatch.setattr(atomic.os, "statvfs", statvfs)
    png = closed / "c.png"
    code, err = run_cli(["compare", str(lr), str(sr), "-o", str(png)], capsys, monkeypatch)
    said = (f"cannot write {png}: {closed} is on a read-only file system", "choose another -o path")
    assert_one_clear_line(code, err, *said)
    assert list(closed.iterdir()) == []


def test_a_folder_where_the_quicklook_goes_is_refused_before_the_run(make_raster, tmp_path) -> None:
    """A folder named as the quicklook: with --overwrite (which replaces files only) the whole
    run was computed, then failed on the PNG ('Is a directory'); --resume of the finished output
    took the folder for its written PNG and wrote nothing, without a word."""
    from geosr.errors import OutputError

    src = make_raster(height=40, width=30)
    dst, png = tmp_path / "sr.tif", tmp_path / "sr.quicklook.png"
    png.mkdir()
    options = {"scale": 2, "model": "bicubic", "quicklook": True}
    with pytest.raises(
        OutputError, match=r"sr.quicklook.png is a folder, where the quicklook of sr.tif goes"
    ):
        geosr.upscale_file(src, dst, overwrite=True, **options)
    assert not dst.exists()
    geosr.upscale_file(src, dst, scale=2, model="bicubic")
    with pytest.raises(OutputError, match=r"sr.tif is written, but sr.quicklook.png is not: .* is a folder"):
        geosr.upscale_file(src, dst, resume=True, **options)
    assert png.is_dir() and list(png.iterdir()) == []


@pytest.mark.parametrize(("flag", "name"), [("quicklook", "sr.quicklook.png"), ("stac", "sr.stac.json")])
def test_resume_replaces_a_dangling_link_where_an_extra_goes_only_with_overwrite(
    make_raster, tmp_path: Path, flag: str, name: str
) -> None:
    """--resume of a finished output took a link to nothing where its --quicklook PNG or --stac
    Item goes for a missing file and wrote over it without a word, which a fresh run refuses
    without --overwrite."""
    from geosr.errors import OutputError

    src = make_raster(height=40, width=30)
    dst, extra = tmp_path / "sr.tif", tmp_path / name
    geosr.upscale_file(src, dst, scale=2, model="bicubic")
    extra.symlink_to(tmp_path / "nowhere" / "x")
    options = {"scale": 2, "model": "bicubic", flag: True, "resume": True}
    with pytest.raises(
        OutputError,
        match="^"
        + re.escape(
            f"{dst} is written, but {name} is not: {extra} is a link to nothing; remove it, or pass "
            "overwrite=True to replace it, and rerun the same command with resume=True"
        )
        + "$",
    ):
        geosr.upscale_file(src, dst, **options)
    assert extra.is_symlink() and not extra.exists()
    geosr.upscale_file(src, dst, overwrite=True, **options)
    assert not extra.is_symlink() and extra.stat().st_size > 0


def test_a_grid_turned_a_quarter_is_drawn_north_up(make_raster, tmp_path: Path) -> None:
    """Pixel rows running south (a quarter turn, which a transpose undoes exactly, no resampling)
    were drawn as stored, the title saying 'turned -90° counter-clockwise': west on top, and the
    wide scene drawn tall."""
    data = np.repeat(np.linspace(4000, 100, 40, dtype=np.float32), 20).reshape(1, 40, 20).astype("uint16")
    # Row r, col c at x = x0 + 10 r, y = y0 - 10 c: row 0 (bright) is the west edge, 400 x 200 m.
    lr = make_raster(data=data, transform=Affine(0, 10, 335440, -10, 0, 5866490))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    assert CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(png)]).exit_code == 0
    image = imread(png)[..., :3].mean(axis=-1)
    first = image[:, : image.shape[1] // 2]  # the bicubic panel
    cols = np.flatnonzero((first < 0.99).mean(axis=0) > 0.2)
    rows = np.flatnonzero((first[:, cols] < 0.99).mean(axis=1) > 0.9)  # not the titles' lines
    assert len(cols) > 1.8 * len(rows)  # twice as wide as tall
    panel = first[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert panel[:, :5].mean() > panel[:, -5:].mean() + 0.5  # the bright west on the left


def test_a_window_of_a_turned_grid_is_the_window_asked_for(make_raster, tmp_path: Path) -> None:
    """--window 0,0,10,10 of a grid turned 30° showed 29 x 29 output px of an x2 run, not 20 x 20:
    the window was placed by its bounding box in the CRS, 1.87 times its side in the turned pixels."""
    turned = Affine.translation(335440, 5866490) @ Affine.rotation(30) @ Affine.scale(10, -10)
    lr = make_raster(height=30, width=30, transform=turned)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    panels, _, window, *_ = compare_panels(str(lr), str(sr), window="4,6,10,10")
    assert window == Window(row=12, col=8, height=20, width=20)
    assert panels[0].shape == (1, 20, 20)


def test_the_figure_says_which_bands_it_shows(make_raster, tmp_path: Path, monkeypatch) -> None:
    """Nothing in the figure said which bands it drew: bands 1, 2, 3 of an unnamed multispectral
    file, or the near infrared of a false-colour run, were shown as red, green, blue without a word."""
    from geosr import panels

    figures, drawn = [], panels.detached_figure
    monkeypatch.setattr(panels, "detached_figure", lambda size: figures.append(drawn(size)) or figures[-1])
    named = make_raster("named.tif", count=4, height=24, width=24, descriptions=("B2", "B3", "B4", "B8"))
    unnamed = make_raster("unnamed.tif", count=4, height=24, width=24)
    for lr in (named, unnamed):
        sr = geosr.upscale_file(lr, tmp_path / f"{lr.stem}_x2.tif", scale=2, model="bicubic")
        for extra in ([], ["--bands", "B8" if lr == named else "2"]):
            args = ["compare", str(lr), str(sr), "-o", str(tmp_path / "c.png"), "--overwrite", *extra]
            assert CliRunner().invoke(app, args).exit_code == 0
    said = [" ".join(figure.get_suptitle().split()) for figure in figures]
    assert said[0].startswith("named_x2.tif: bands B4,B3,B2 as red, green, blue, window of 48 x 48"), said
    assert said[1].startswith("named_x2.tif: band B8 in grey, window of"), said
    assert said[2].startswith("unnamed_x2.tif: bands 1,2,3 as red, green, blue, window of"), said
    assert said[3].startswith("unnamed_x2.tif: band 2 in grey, window of"), said


def test_the_bands_of_a_bands_run_are_said_by_the_inputs_numbers(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """The output of a --bands 4,1,2 run holds the input's bands 4, 1, 2 as its 1, 2, 3: the
    figure said "bands 1,2,3 as red, green, blue", numbers the user never picked."""
    from geosr import panels

    figures, drawn = [], panels.detached_figure
    monkeypatch.setattr(panels, "detached_figure", lambda size: figures.append(drawn(size)) or figures[-1])
    lr = make_raster(count=4, height=24, width=24)
    sr = geosr.upscale_file(lr, tmp_path / "cir.tif", scale=2, model="bicubic", bands="4,1,2")
    plain = geosr.upscale_file(lr, tmp_path / "plain.tif", scale=2, model="bicubic")
    for out, extra in ((sr, []), (sr, ["--bands", "3"]), (plain, [])):
        args = ["compare", str(lr), str(out), "-o", str(tmp_path / "c.png"), "--overwrite", *extra]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
    said = [" ".join(figure.get_suptitle().split()) for figure in figures]
    cir = "cir.tif: bands 4,1,2 of the input (the output's 1,2,3) as red, green, blue,"
    assert said[0].startswith(cir), said
    assert said[1].startswith("cir.tif: band 2 of the input (the output's 3) in grey,"), said
    assert said[2].startswith("plain.tif: bands 1,2,3 as red, green, blue,"), said


@pytest.mark.parametrize(
    ("name", "descriptions", "rgb"),
    [
        ("stack.tif", ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7"), [3, 2, 1]),
        ("LC09_L2SP_044034_20220101_20220103_02_T1_SR.tif", ("SR_B2", "SR_B3", "SR_B4", "SR_B5"), [2, 1, 0]),
        ("l8.tif", ("B1", "B2", "B3", "B4", "B5"), [3, 2, 1]),
        ("s2.tif", ("B02", "B03", "B04", "B08"), [2, 1, 0]),
        (
            "S2_gdal.tif",
            tuple(f"B{b}, central wavelength {w} nm" for b, w in ((8, 842), (4, 665), (3, 560), (2, 490))),
            [1, 2, 3],
        ),
        (
            "LE07_L2SP_044034_20200101_20200127_02_T1_SR.tif",
            ("SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B7"),
            [2, 1, 0],
        ),
        ("LT50440342011001PAC01.tif", ("B1", "B2", "B3", "B4"), [2, 1, 0]),
    ],
)
def test_sensor_band_names_are_shown_as_red_green_blue(
    make_raster, tmp_path, name, descriptions, rgb
) -> None:
    """Landsat Collection 2's SR_B4, SR_B3, SR_B2 and GDAL's Sentinel-2 'B4, central wavelength
    665 nm' were no colours to a figure, which showed the first three bands (SR_B1, coastal aerosol,
    as red); Landsat 4-7's red, green, blue are B3, B2, B1, its B4 the near infrared, where its file
    says it is of Landsat 4-7 (a product or scene ID), also in geosr compare of its output."""
    lr = make_raster(name, count=len(descriptions), height=12, width=12, descriptions=descriptions)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    shown = compare_panels(str(lr), str(sr))[4]
    assert shown == f"bands {','.join(descriptions[p] for p in rgb)} as red, green, blue"


@pytest.mark.parametrize(
    ("wavelengths", "units", "rgb"),
    [
        (("0.485", "0.56", "0.66", "0.835", "1.65", "2.215"), "Micrometers", [2, 1, 0]),  # TM, ETM+
        (("485", "560", "660", "835", "1650", "2215"), None, [2, 1, 0]),
        (("0.443", "0.482", "0.561", "0.655", "0.865", "1.609"), "Micrometers", [3, 2, 1]),  # OLI
    ],
)
def test_a_landsat_stack_whose_b4_is_near_infrared_by_its_wavelength_shows_b3_b2_b1(
    make_raster, tmp_path, wavelengths: tuple[str, ...], units: str | None, rgb: list[int]
) -> None:
    """A Landsat 4-7 stack whose name does not say its mission (stack.tif) was shown as B4, B3, B2,
    Landsat 8/9's numbers, its near infrared as red, where its bands' wavelengths (as GDAL gives an
    ENVI file's: a ``wavelength`` band tag, with ``wavelength_units``) put its B4 there."""
    names = ("B1", "B2", "B3", "B4", "B5", "B7")
    lr = make_raster("stack.tif", count=6, height=12, width=12, descriptions=names)
    with rasterio.open(lr, "r+") as f:
        for band, wavelength in enumerate(wavelengths, start=1):
            f.update_tags(band, wavelength=wavelength, **({"wavelength_units": units} if units else {}))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    shown = compare_panels(str(lr), str(sr))[4]  # the output's bands carry the tags
    assert shown == f"bands {','.join(names[p] for p in rgb)} as red, green, blue"


@pytest.mark.parametrize(
    ("top", "said"), [(196, "one 2-98 % stretch of all bands alike"), (255, "8-bit RGB as stored")]
)
def test_a_grey_of_8bit_rgb_is_drawn_grey(tmp_path: Path, monkeypatch, top: int, said: str) -> None:
    """Each band of 8-bit RGB (a photograph, a display composite) was stretched on its own: beside
    a red roof, red's stretch reached 250 and green's and blue's 196, so the grey road was drawn
    cyan.  All three take one stretch, and none where they span 0 to 255 already."""
    from geosr import panels

    grey = np.linspace(40, top, 40).round().astype(np.uint8)[None, :].repeat(40, axis=0)
    data = np.stack([grey, grey, grey])
    data[:, :10, :10] = np.array([250, 20, 20], np.uint8)[:, None, None]  # a red roof
    if top == 255:
        data[:, -1, :2] = 0  # and a black pixel
    lr = tmp_path / "rgb.tif"
    profile = {"driver": "GTiff", "count": 3, "height": 40, "width": 40, "dtype": "uint8"}
    with rasterio.open(
        lr, "w", **profile, crs="EPSG:32633", transform=UTM_TRANSFORM, photometric="RGB"
    ) as dst:
        dst.write(data)
    given, drawn, titles, stretch = [], [], [], panels.stretch

    def kept(shown: list[np.ndarray], **kw: bool) -> list[np.ndarray]:
        given.append(shown)
        drawn.append(stretch(shown, **kw))
        return drawn[-1]

    monkeypatch.setattr(panels, "stretch", kept)
    figure = panels.detached_figure
    monkeypatch.setattr(panels, "detached_figure", lambda size: titles.append(figure(size)) or titles[-1])
    geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic", quicklook=True)
    road = drawn[0][1][:, 30:70, 30:]  # the bicubic panel's grey, away from the roof
    assert np.ptp(road, axis=0).max() < 1e-6 and np.ptp(road) > 0.3
    assert said in " ".join(titles[0].get_suptitle().split())
    if top == 255:
        np.testing.assert_allclose(drawn[0][0], given[0][0] / 255, atol=1e-6)


def test_compare_of_a_cube_shows_its_first_date_as_its_quicklook_does(tmp_path: Path) -> None:
    """The output of a (time, lat, lon) cube names its bands by their dates: geosr compare drew
    dates 1, 2, 3 as red, green, blue, where --quicklook showed date 1 in grey, and a cloud on
    date 2 (NaN) blanked the panels there ('no pixel ... is valid') though date 1 had data."""
    import xarray as xr

    times = np.array(["2017-01-16", "2017-01-25", "2017-01-26"], dtype="datetime64[ns]")
    values = np.stack([coordinate_pattern(1, 32, 32, "float32")[0]] * 3)
    values[1, 8:24, 8:24] = np.nan  # a cloud over the centre on date 2
    cube = xr.DataArray(
        values,
        dims=("time", "lat", "lon"),
        coords={
            "time": times,
            "lat": 52.5 - 0.0025 * (np.arange(32) + 0.5),
            "lon": 0.0025 * (np.arange(32) + 0.5),
        },
        name="conc_chl",
    )
    store = tmp_path / "cube.zarr"
    cube.to_dataset().to_zarr(store, zarr_format=3, consolidated=False)
    sr = geosr.upscale_file(store, tmp_path / "sr.tif", scale=2, model="bicubic")
    panels, *_, shown = compare_panels(str(store), str(sr))
    assert [p.shape[0] for p in panels] == [1, 1] and np.isfinite(panels[0]).all()
    assert shown.startswith("band 2017-01-16") and shown.endswith("in grey")


def test_the_default_window_of_a_large_scale_is_shown_one_to_one(make_raster, tmp_path: Path) -> None:
    """The default window of 128 LR px was 640 output px at x5 (1024 at x8), more than a panel's
    600: the quicklook showed it 1:2, read from overviews, the very detail it is for averaged away."""
    lr = make_raster(height=130, width=130)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=5, model="bicubic")
    panels, _, window, scale, _ = compare_panels(str(lr), str(sr))
    assert scale == 5 and window == Window(row=25, col=25, height=600, width=600)
    assert panels[0].shape == (1, 600, 600)


def test_a_reference_without_band_names_is_shown_by_its_colour_interpretation(
    make_raster, tmp_path: Path
) -> None:
    """An RGB orthophoto as --hr (red, green, blue by colour interpretation, no band names) against
    an output of B02,B03,B04 shown as B04,B03,B02 (positions 2,1,0) was read from its own positions
    2,1,0: its blue drawn as red and its red as blue."""
    import rasterio
    from rasterio.enums import ColorInterp

    from tests.conftest import UTM_TRANSFORM

    levels = np.array([1000, 3000, 6000], np.uint16)[:, None, None]  # B02, B03, B04
    lr = make_raster(data=np.broadcast_to(levels, (3, 32, 32)).copy(), descriptions=("B02", "B03", "B04"))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    hr = make_raster(
        "hr.tif",
        data=np.broadcast_to(levels[::-1], (3, 64, 64)).copy(),  # red, green, blue
        transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5),
    )
    with rasterio.open(hr, "r+") as f:
        f.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
    panels = compare_panels(str(lr), str(sr), hr=str(hr))[0]
    for panel in panels:  # red, green, blue in every panel
        np.testing.assert_allclose(np.nanmean(panel, axis=(1, 2)), [6000, 3000, 1000], atol=1)


def test_a_reference_laid_out_as_the_input_shows_the_bands_of_a_false_colour_run(
    make_raster, tmp_path: Path
) -> None:
    """A NAIP-like input (red, green, blue, near infrared by colour interpretation, no band names)
    run with --bands 4,1,2 (near infrared, red, green) against the same product at a finer pixel
    as --hr: the reference was drawn from its bands 1, 2, 3 (red, green, blue) beside the other
    panels' 4, 1, 2."""
    import rasterio
    from rasterio.enums import ColorInterp

    from tests.conftest import UTM_TRANSFORM

    levels = np.array([10, 60, 110, 200], np.uint8)[:, None, None]  # red, green, blue, near infrared
    colours = (ColorInterp.red, ColorInterp.green, ColorInterp.blue, ColorInterp.undefined)
    lr = make_raster(data=np.broadcast_to(levels, (4, 32, 32)).copy())
    hr = make_raster("hr.tif", data=np.broadcast_to(levels, (4, 64, 64)).copy(),
                     transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5))  # fmt: skip
    for path in (lr, hr):
        with rasterio.open(path, "r+") as f:
            f.colorinterp = colours
    sr = geosr.upscale_file(lr, tmp_path / "cir.tif", scale=2, model="bicubic", bands="4,1,2")
    panels, titles = compare_panels(str(lr), str(sr), hr=str(hr))[:2]
    assert titles[-1] == "reference"
    for panel in panels:  # near infrared, red, green in every panel
        np.testing.assert_allclose(np.nanmean(panel, axis=(1, 2)), [200, 10, 60], atol=1)


def test_a_reference_in_other_units_is_said_not_drawn_black_silently(make_raster, tmp_path: Path) -> None:
    """A reference in other units than the output (another sensor's bytes against integers of
    reflectance x 10000) was drawn black in the output's stretch, which every panel shares,
    without a word: it looked like a failed read."""
    from geosr.errors import GeosrWarning
    from tests.conftest import UTM_TRANSFORM

    lr = make_raster(height=32, width=32)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    compare_panels(str(lr), str(sr), hr=str(sr))  # the same units: no warning (one fails the test)
    with rasterio.open(sr) as f:
        data = (f.read() // 40).astype("uint8")
    other = make_raster("bytes.tif", data=data, transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(0.5))
    with pytest.warns(GeosrWarning, match=r"bytes.tif: most of its values lie below the stretch of .*sr.tif"):
        compare_panels(str(lr), str(sr), hr=str(other))


def reprojected_reference(
    make_raster, sr: Path, shape: tuple[int, int], transform: Affine, crs: str, *, fill: float
) -> Path:
    """``hr.tif``: the output ``sr`` reprojected onto a ``shape`` grid of ``transform`` in ``crs``
    that starts as ``fill`` (nodata NaN), a reference in another CRS."""
    from rasterio.warp import reproject

    moved = np.full((1, *shape), fill, np.float32)
    with rasterio.open(sr) as f:
        reproject(f.read().astype(np.float32), moved, src_transform=f.transform, src_crs=f.crs,
                  dst_transform=transform, dst_crs=crs, dst_nodata=np.nan)  # fmt: skip
    return make_raster("hr.tif", data=moved, crs=crs, transform=transform, nodata=float("nan"))


def test_a_lonlat_reference_of_an_output_around_a_pole_is_shown(make_raster, tmp_path: Path) -> None:
    """Around a pole an output's footprint is no polygon in lon/lat (its corners a ring at one
    latitude): a lon/lat reference of a polar stereographic output was said not to overlap it
    ('does not overlap ...: no pixel of it lies in the area compared')."""
    lr = make_raster(height=30, width=30, crs="EPSG:3413", transform=Affine(2000, 0, -30000, 0, -2000, 30000))
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    lonlat = Affine(1.0, 0, -180, 0, -0.002, 90.0)  # 1° x 0.002° down to 89.6° N
    hr = reprojected_reference(make_raster, sr, (200, 360), lonlat, "EPSG:4326", fill=0.0)
    geosr_panel, _, reference = compare_panels(str(lr), str(sr), hr=str(hr))[0]
    assert np.isfinite(reference).mean() > 0.9
    assert np.nanmedian(np.abs(reference - geosr_panel) / geosr_panel) < 0.02


def test_a_polar_reference_of_a_lonlat_output_up_to_a_pole_is_read_whole(make_raster, tmp_path: Path) -> None:
    """A lon/lat output from -180 to 180 up to the pole is a disc in polar stereographic, which its
    window's four corners (two points on its rim and the pole) do not span: of a polar
    stereographic reference only the pixels around one meridian were read, the rest left empty."""
    lonlat = Affine(10, 0, -180, 0, -0.025, 90)  # 36 x 20 px down to 89.5° N
    lr = make_raster(height=20, width=36, crs="EPSG:4326", transform=lonlat)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    polar = Affine(1000, 0, -60000, 0, -1000, 60000)
    hr = reprojected_reference(make_raster, sr, (120, 120), polar, "EPSG:3413", fill=np.nan)
    geosr_panel, _, reference = compare_panels(str(lr), str(sr), hr=str(hr))[0]
    assert np.isfinite(reference).mean() > 0.95
    assert np.nanmedian(np.abs(reference - geosr_panel) / geosr_panel) < 0.02


def test_a_lonlat_panel_keeps_the_shape_of_the_ground(make_raster, tmp_path: Path) -> None:
    """Lon/lat pixels were drawn in degrees: at 60° N a degree of longitude spans half the ground of
    one of latitude, so a window of square-degree pixels (twice as tall as wide there) was drawn
    square; near a pole, a polar grid's 5 x 0.01° pixels (2.4 x 1.1 km) made each panel a line."""
    lr = make_raster(
        count=1, height=40, width=40, crs="EPSG:4326", transform=Affine(0.001, 0, 10, 0, -0.001, 60.02)
    )
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    png = tmp_path / "c.png"
    CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(png), "--window", "10,10,20,20"])
    drawn = (imread(png)[..., :3] < 0.99).any(axis=-1)
    columns = np.flatnonzero(drawn.sum(axis=0) > 0.3 * drawn.shape[0])
    first = columns[columns < drawn.shape[1] // 2]  # the first panel
    rows = np.flatnonzero(drawn[:, first[0] : first[0] + 10].all(axis=1))
    height, width = rows[-1] - rows[0] + 1, first[-1] - first[0] + 1
    assert height == pytest.approx(2 * width, rel=0.05)


def test_compare_keeps_a_dangling_link_where_the_png_goes(make_raster, tmp_path: Path) -> None:
    """-o onto a symbolic link to a missing file (a link to shared storage not mounted yet): the
    link 'did not exist', so it was replaced by the PNG without --overwrite."""
    from geosr.errors import OutputError
    from geosr.quicklook import compare_files

    lr = make_raster(height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    link = tmp_path / "c.png"
    link.symlink_to(tmp_path / "elsewhere" / "c.png")
    with pytest.raises(OutputError, match=r"c\.png already exists; pass --overwrite to replace it"):
        compare_files(str(lr), str(sr), link)
    assert link.is_symlink()
    assert compare_files(str(lr), str(sr), link, overwrite=True).is_file()


def test_the_default_window_of_a_scene_mostly_nodata_is_moved_onto_its_data(
    make_raster, tmp_path: Path
) -> None:
    """A swath covering the west of a scene: the centred default window held no valid pixel, so
    the --quicklook was blank ('no pixel ... is valid'), and it takes no --window to move it."""
    data = coordinate_pattern(1, 200, 200)
    data[:, :, 30:] = 0  # nodata east of the swath's edge
    lr = make_raster(data=data, nodata=0)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    panels, _, window, *_ = compare_panels(str(lr), str(sr))
    assert window == Window(row=72, col=0, height=256, width=256)  # the centre's rows, the west
    assert np.isfinite(panels[0]).mean() > 0.2 and np.isfinite(panels[1]).mean() > 0.2
    # A window given is shown as given.
    assert compare_panels(str(lr), str(sr), window="36,36,128,128")[2] == Window(72, 72, 256, 256)


def test_a_dollar_in_a_name_is_drawn_as_written(make_raster, tmp_path: Path, monkeypatch) -> None:
    """A '$' in a file name began TeX (matplotlib's mathtext): 'cost$_x2$.tif' was drawn as 'cost'
    with a subscript 'x2', and 'a$\\frac$_x2.tif' ended compare in a ParseSyntaxException traceback."""
    import shutil

    from geosr import panels

    figures, drawn = [], panels.detached_figure
    monkeypatch.setattr(panels, "detached_figure", lambda size: figures.append(drawn(size)) or figures[-1])
    lr = make_raster(height=24, width=24)
    sr = shutil.copy(
        geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic"), tmp_path / "a$\\frac$_x2.tif"
    )
    result = CliRunner().invoke(app, ["compare", str(lr), str(sr), "-o", str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    (title,) = figures[0].texts  # the suptitle
    assert title.get_text().startswith("a$\\frac$_x2.tif: ") and not title.get_parse_math()
    assert not any(ax.title.get_parse_math() for ax in figures[0].axes)


def test_the_default_window_moved_onto_data_stays_where_the_input_covers(make_raster, tmp_path: Path) -> None:
    """An input covering the east of the output, whose centre there holds no data: the window was
    moved onto the output's most data, in the west, where the input has no pixel (its bicubic panel
    empty), not onto the data the input covers."""
    data = coordinate_pattern(1, 100, 300)
    data[:, :, 60:290] = 0  # data in a wide strip west and a narrow one east
    full = make_raster(data=data, nodata=0)
    sr = geosr.upscale_file(full, tmp_path / "sr.tif", scale=2, model="bicubic")
    east = make_raster(
        "east.tif",
        data=data[:, :, 100:],
        nodata=0,
        transform=UTM_TRANSFORM @ UTM_TRANSFORM.translation(100, 0),
    )
    panels, _, window, *_ = compare_panels(str(east), str(sr))
    assert window.col + window.width == 600  # the east strip, which the input covers
    assert np.isfinite(panels[1]).mean() > 0.05  # the bicubic panel shows the input


def test_compare_to_standard_output_says_the_quicklook_is_a_file(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """`geosr compare lr.tif sr.tif -o -` said 'error: -: the quicklook is a PNG; give an -o path
    ending in .png', as if '-' were a file name lacking .png, where geosr run -o - says that the
    output goes to a file."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster(count=1, height=40, width=40)
    sr = geosr.upscale_file(lr, tmp_path / "sr.tif", scale=2, model="bicubic")
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["compare", str(lr), str(sr), "-o", "-"], capsys, monkeypatch)
    assert_one_clear_line(
        code, err, "error: -o -: the quicklook is written to a file, not to standard output"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", "sr.tif"]
