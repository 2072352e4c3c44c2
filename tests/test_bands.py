"""--bands by description or index; Sentinel-2 BOA_ADD_OFFSET."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from rasterio.enums import ColorInterp

import geosr
from geosr.errors import InputError, OptionError
from geosr.inspect import plan_run
from geosr.io.bands import reflectance_offset
from geosr.options import RunOptions
from geosr.run_inputs import normalisation_for, scene_for
from tests.conftest import real_file


def test_select_and_order_by_name_or_index(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=4, descriptions=("B02", "B03", "B04", "B08"))
    out = geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic", bands="B4,b03,1")
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.count == 3
        assert b.descriptions == ("B04", "B03", "B02")
        # Band order follows the selection: output band 1 is input band 3, area-averaged back.
        lr = a.read(3).astype(float)
        sr = b.read(1).astype(float).reshape(a.height, 2, a.width, 2).mean(axis=(1, 3))
        assert np.abs(sr - lr).max() < 5
        assert np.abs(sr - a.read(1).astype(float)).min() > 100  # not band 1 (bands differ by 300)
        assert b.tags()["GEOSR_BANDS"] == "3,2,1"
    # A Zarr output's band coordinate numbers the bands as the input did (before: 1, 2, 3).
    store = geosr.upscale_file(src, tmp_path / "o.zarr", scale=2, model="bicubic", bands="B4,b03,1")
    assert xr.open_zarr(store)["band"].values.tolist() == [3, 2, 1]


def test_bands_reordered_leave_no_sidecar_beside_the_cog(make_raster, tmp_path: Path) -> None:
    """``--bands B04,B03,B02,B08`` of a grey GeoTIFF (band 1 grey, the others undefined) left
    ``S2_x4.tif.aux.xml`` beside the output, holding band 3's 'Gray', which a TIFF cannot hold."""
    src = make_raster(count=4, height=24, width=24, descriptions=("B02", "B03", "B04", "B08"))
    out = geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic", bands="B04,B03,B02,B08")
    assert sorted(p.name for p in tmp_path.glob("o.tif*")) == ["o.tif"]
    with rasterio.open(out) as b:
        assert b.descriptions == ("B04", "B03", "B02", "B08")
        assert b.colorinterp[1:] == (ColorInterp.undefined,) * 3


def test_a_band_selected_twice_is_refused(make_raster, tmp_path: Path) -> None:
    """``--bands 2,2`` (or ``B03,3``, one band by name and number) ran the band twice: a Zarr
    output had a band coordinate of [2, 2], so ``.sel(band=2)`` gave two bands, and the STAC
    Item two bands named B03."""
    src = make_raster(count=3, descriptions=("B02", "B03", "B04"))
    with pytest.raises(InputError, match=r"scene\.tif: --bands selects band 2 2 times \(B03, 2\); give each"):
        scene_for(src, RunOptions(bands="B03,2,1"))
    with pytest.raises(InputError, match=r"band 1 3 times \(1, B2, b02\)"):
        geosr.upscale_file(src, tmp_path / "o.zarr", scale=2, model="bicubic", bands="1,B2,b02")
    assert not (tmp_path / "o.zarr").exists()


def test_unknown_band_name_lists_the_known_ones(make_raster) -> None:
    src = make_raster(count=2, descriptions=("B02", "B03"))
    with pytest.raises(InputError, match="its band descriptions are 1 'B02', 2 'B03' "):
        scene_for(src, RunOptions(bands="B09"))
    with pytest.raises(InputError, match="bands 1-2"):
        scene_for(src, RunOptions(bands="3"))
    # The example index is one the file has: "e.g. --bands 3,2,1" for a 2-band file before.
    with pytest.raises(InputError, match=r"select by 1-based index instead, e\.g\. --bands 2,1\)"):
        scene_for(src, RunOptions(bands="B09"))


def test_a_band_name_in_a_file_without_descriptions_says_it_has_none(make_raster) -> None:
    """It said 'its band descriptions are: #1, #2', positions read as descriptions."""
    src = make_raster(count=2)
    with pytest.raises(InputError, match=r"as 'red'; it has no band descriptions \(select by 1-based"):
        scene_for(src, RunOptions(bands="red"))
    partly = make_raster("partly.tif", count=3, descriptions=("", "nir", ""))
    with pytest.raises(InputError, match="its band descriptions are 2 'nir' "):
        scene_for(partly, RunOptions(bands="red"))


def test_band_indexes_are_the_files_band_numbers_around_an_alpha_band(make_raster, tmp_path: Path) -> None:
    # An alpha band is the mask, not data: before, indexes counted the data bands only, so
    # with the alpha band first --bands 4,3,2 (gdalinfo's numbers) was refused ("the raster
    # has bands 1-3") and --bands 1 silently read band 2; geosr info numbered them 1-3 too.
    rgb = np.stack([np.full((20, 30), v, np.uint8) for v in (50, 120, 200)])
    alpha = np.full((1, 20, 30), 255, np.uint8)
    src = make_raster("argb.tif", data=np.concatenate([alpha, rgb]))
    with rasterio.open(src, "r+") as f:
        f.colorinterp = [ColorInterp.alpha, ColorInterp.red, ColorInterp.green, ColorInterp.blue]
    out = geosr.upscale_file(src, tmp_path / "bgr.tif", scale=2, model="bicubic", bands="4,3,2")
    with rasterio.open(out) as f:
        assert [int(f.read(b).mean()) for b in (1, 2, 3)] == [200, 120, 50]
    with pytest.raises(InputError, match="band 1 is not a data band: those are 2, 3, 4, and the alpha band"):
        scene_for(src, RunOptions(bands="1"))
    rows = dict(plan_run(src, RunOptions(model="bicubic"), calibrate=False).lines())
    assert rows["bands"] == "3 x uint8: band 2, band 3, band 4"
    picked = dict(plan_run(src, RunOptions(model="bicubic", bands="4,2"), calibrate=False).lines())
    assert picked["bands"] == "2 x uint8: band 4, band 2"


def test_boa_add_offset_from_metadata_and_override(make_raster) -> None:
    src = make_raster(count=2, descriptions=("B04", "B08"), tags={"BOA_ADD_OFFSET_B4": "-1000"})
    scene = scene_for(src, RunOptions())
    offsets = reflectance_offset(scene)
    assert offsets == (-1000.0, 0.0)
    norm = normalisation_for(scene, {"method": "dtype-range"}, offsets)
    # reflectance = (DN + BOA_ADD_OFFSET) / 10000: DN 3000 is reflectance 0.2 in band 1.
    x = norm.apply(np.full((2, 1, 1), 3000, np.uint16))
    assert x[0, 0, 0] == pytest.approx(0.2) and x[1, 0, 0] == pytest.approx(0.3)
    assert reflectance_offset(scene, -500) == (-500.0, -500.0)
    plain = make_raster("plain.tif", count=1)
    assert reflectance_offset(scene_for(plain, RunOptions())) is None


@pytest.mark.parametrize("offset", [math.nan, math.inf])
def test_an_offset_that_is_no_number_is_refused(make_raster, tmp_path: Path, offset: float) -> None:
    """--offset nan (or a BOA_ADD_OFFSET tag "nan") is refused, not run with: float() takes
    "nan" and "inf", and NaN reflectances were then normalised and written as pixels."""
    src = make_raster(count=1, tags={"BOA_ADD_OFFSET": "-1000"})
    with pytest.raises(OptionError, match=r"^offset (nan|inf) is not a finite number"):
        geosr.upscale_file(src, tmp_path / "o.tif", scale=2, offset=offset)
    tagged = make_raster("tagged.tif", count=1, tags={"BOA_ADD_OFFSET": str(offset)})
    with pytest.raises(InputError, match=r"tagged.tif: BOA_ADD_OFFSET '(nan|inf)' is not a number"):
        geosr.upscale_file(tagged, tmp_path / "o.tif", scale=2)
    assert not (tmp_path / "o.tif").exists()


@pytest.mark.realdata
def test_band_names_on_bigearthnet(data_dir: Path, tmp_path: Path) -> None:
    """Stack the 10 m bands of a real BigEarthNet patch, then select B04,B03,B02 by name."""
    patch = "S2A_MSIL2A_20170613T101031_87_48"
    names = ("B02", "B03", "B04", "B08")
    arrays = []
    for name in names:
        with rasterio.open(real_file(data_dir, f"sentinel2/bigearthnet/{patch}/{patch}_{name}.tif")) as f:
            arrays.append(f.read(1))
            profile = f.profile
    profile.update(count=4, driver="GTiff")
    stack = tmp_path / "patch.tif"
    with rasterio.open(stack, "w", **profile) as dst:
        dst.write(np.stack(arrays))
        dst.descriptions = names
    out = geosr.upscale_file(stack, tmp_path / "rgb.tif", scale=2, model="bicubic", bands="B04,B03,B02")
    with rasterio.open(out) as f:
        assert f.descriptions == ("B04", "B03", "B02")
        assert (f.width, f.height) == (240, 240)
        red = f.read(1).astype(float).reshape(120, 2, 120, 2).mean(axis=(1, 3))
        assert np.corrcoef(red.ravel(), arrays[2].astype(float).ravel())[0, 1] > 0.99
