"""The real imagery in ../shared/data (GEOSR_DATA_DIR): skipped with a reason when absent."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine
from rio_cogeo.cogeo import cog_validate

import geosr
from tests.conftest import real_file

pytestmark = pytest.mark.realdata

S2_JP2 = "sentinel2/tgt_S2A_20160529T153631_T33UUU_sub.jp2"


def crop(src: Path, dst: Path, row: int, col: int, size: int, nodata: float | None = None) -> Path:
    with rasterio.open(src) as f:
        window = rasterio.windows.Window(col, row, size, size)
        data = f.read(window=window)
        profile = {
            "driver": "GTiff",
            "count": f.count,
            "dtype": f.dtypes[0],
            "width": data.shape[2],
            "height": data.shape[1],
            "crs": f.crs,
            "transform": f.window_transform(window),
            "nodata": f.nodata if nodata is None else nodata,
        }
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data)
    return dst


def test_console_script_on_the_sentinel2_jp2(data_dir: Path, tmp_path: Path) -> None:
    """The installed `geosr` on the whole real JP2 (x4, 104 Mpx out), nodata 0 outside the swath."""
    jp2 = real_file(data_dir, S2_JP2)
    exe = Path(sys.executable).with_name("geosr")
    out = tmp_path / "s2_x4.tif"
    result = subprocess.run(
        [str(exe), "run", str(jp2), "-o", str(out), "--nodata", "0", "--scale", "4", "--model", "bicubic"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("s2_x4.tif")
    valid, errors, _ = cog_validate(str(out))
    assert valid and not errors
    with rasterio.open(jp2) as a, rasterio.open(out) as b:
        assert b.crs == a.crs and b.transform == a.transform @ Affine.scale(0.25)
        assert (b.width, b.height) == (a.width * 4, a.height * 4) and b.dtypes[0] == "uint16"
        assert b.nodata == 0 and b.tags()["GEOSR_SCALE"] == "4"
        lr = a.read(1, window=rasterio.windows.Window(400, 0, 200, 200))
        hr = b.read(1, window=rasterio.windows.Window(1600, 0, 800, 800))
    lr_invalid = np.kron(lr == 0, np.ones((4, 4), bool))
    assert lr_invalid.any() and not lr_invalid.all()
    assert (hr[lr_invalid] == 0).all() and (hr[~lr_invalid] > 0).all()


def test_default_model_at_the_swath_edge(data_dir: Path, tmp_path: Path) -> None:
    src = crop(real_file(data_dir, S2_JP2), tmp_path / "edge.tif", 0, 400, 200, nodata=0)
    out = geosr.upscale_file(src, scale=4, tile=64)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        lr, hr = a.read(1), b.read(1)
    invalid = np.kron(lr == 0, np.ones((4, 4), bool))
    assert invalid.any() and not invalid.all()
    assert (hr[invalid] == 0).all() and (hr[~invalid] > 0).all()
    # reflectance stays reflectance: block means of the output reproduce the input
    means = hr.reshape(200, 4, 200, 4).mean(axis=(1, 3))
    core = np.zeros_like(lr, bool)
    core[20:-20, 20:-20] = lr[20:-20, 20:-20] > 0
    assert np.abs(means[core] - lr[core]).max() <= 1.0


def test_landsat7_nodata_stripes(data_dir: Path, tmp_path: Path) -> None:
    src = crop(real_file(data_dir, "landsat/l7_sfbay_rgb_epsg3857.tif"), tmp_path / "l7.tif", 700, 700, 160)
    with rasterio.open(src) as f:
        lr = f.read()
        nodata = f.nodata
    if nodata is None:
        pytest.skip("the Landsat-7 file declares no nodata")
    out = geosr.upscale_file(src, scale=2, tile=64)
    with rasterio.open(out) as f:
        hr = f.read()
        assert f.crs.to_epsg() == 3857 and f.nodata == nodata
    invalid = np.kron(lr == nodata, np.ones((2, 2), bool))
    assert invalid.any(), "the crop should contain SLC-off stripes"
    assert (hr[invalid] == nodata).all() and (hr[~invalid] != nodata).all()


def test_sentinel2_epsg4326_float(data_dir: Path, tmp_path: Path) -> None:
    src = real_file(data_dir, "sentinel2/s2_4band_emden_epsg4326.tif")
    out = geosr.upscale_file(src, tmp_path / "emden_x2.tif", scale=2)
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.crs.to_epsg() == 4326 and b.count == 4 and b.dtypes[0] == "float64"
        assert np.allclose(b.bounds, a.bounds, rtol=0, atol=1e-12)
    valid, errors, _ = cog_validate(str(out))
    assert valid and not errors


def test_real_zarr_store_with_nan(data_dir: Path, tmp_path: Path) -> None:
    store = real_file(data_dir, "zarr/olci_north_sea_2017.zarr")
    out = geosr.upscale_file(store, tmp_path / "chl_x2.zarr", scale=2, variable="conc_chl", model="bicubic")
    ds = xr.open_zarr(out, decode_coords="all")["band_data"]
    src = xr.open_zarr(store)["conc_chl"]
    assert ds.rio.crs.to_epsg() == 4326
    assert ds.shape == (5, 2000, 4000)
    np.testing.assert_array_equal(ds["time"].values, src["time"].values)  # the cube's dates carry over
    lr = src.isel(time=0).values
    hr = ds.isel(time=0).values
    assert np.isnan(hr[np.kron(np.isnan(lr), np.ones((2, 2), bool))]).all()
    assert np.isfinite(hr[np.kron(np.isfinite(lr), np.ones((2, 2), bool))]).all()


def test_bigearthnet_20m_and_60m_bands_land_on_the_10m_grid(data_dir: Path, tmp_path: Path) -> None:
    """Sentinel-2's 20 m bands x2 (default model) and 60 m bands x6 (bicubic) of a real
    BigEarthNet patch come out on exactly the grid of its 10 m bands: same transform,
    shape and CRS, pixel for pixel, so they stack with B02-B04 and B08 as they are."""
    patch = real_file(data_dir, "sentinel2/bigearthnet/S2A_MSIL2A_20170613T101031_87_48")
    with rasterio.open(next(patch.glob("*_B04.tif"))) as ten:
        grid = (ten.transform, ten.shape, ten.crs)
    for band, scale, model in (("B05", 2, None), ("B8A", 2, None), ("B11", 2, None), ("B01", 6, "bicubic")):
        src = next(patch.glob(f"*_{band}.tif"))
        out = geosr.upscale_file(src, tmp_path / f"{band}.tif", scale=scale, model=model)
        with rasterio.open(out) as sr:
            assert (sr.transform, sr.shape, sr.crs) == grid, band
