"""geosr.upscale on rioxarray/dask DataArrays: lazy, output-block chunks, same values as geosr run."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import numpy as np
import rasterio
import rioxarray
import xarray as xr

import geosr


def test_open_rasterio_chunks_default_model_to_raster_equals_run(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=1, height=48, width=40, nodata=0)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=4, tile=24)
    lazy = geosr.upscale(rioxarray.open_rasterio(src, chunks={"x": 24, "y": 24}), scale=4, tile=24)
    assert isinstance(lazy.data, da.Array)
    assert lazy.chunks[1][0] == 96 and lazy.chunks[2][0] == 96  # output blocks = tile x scale
    lazy.rio.to_raster(tmp_path / "lazy.tif")
    with rasterio.open(ran) as a, rasterio.open(tmp_path / "lazy.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1


def test_open_zarr_in_to_zarr_out(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=2, height=40, width=40, nodata=0)
    store = tmp_path / "in.zarr"
    rioxarray.open_rasterio(src).to_dataset(name="band_data").to_zarr(store, zarr_format=3)
    ran = geosr.upscale_file(store, tmp_path / "run.zarr", scale=2, model="bicubic", tile=32)
    data = xr.open_zarr(store, decode_coords="all")["band_data"]
    assert isinstance(data.data, da.Array)
    lazy = geosr.upscale(data, scale=2, model="bicubic", tile=32)
    lazy.to_dataset(name="band_data").to_zarr(tmp_path / "lazy.zarr", zarr_format=3)
    a = xr.open_zarr(ran, decode_coords="all")["band_data"]
    b = xr.open_zarr(tmp_path / "lazy.zarr", decode_coords="all")["band_data"]
    assert a.rio.transform() == b.rio.transform() and a.rio.crs == b.rio.crs
    assert np.abs(a.values.astype(int) - b.values.astype(int)).max() <= 1
