"""Lazy super-resolution of a dask-backed DataArray, written with rioxarray.

Run: python examples/xarray_dask.py [WORKDIR]
"""

from __future__ import annotations

import rioxarray
from _scene import example_scene, workdir

import geosr

folder = workdir()
scene = example_scene(folder)

lr = rioxarray.open_rasterio(scene, chunks={"x": 64, "y": 64})
# No tile runs yet: a dask graph of output blocks (the call reads a strided sample of the
# input once, for the scene's normalisation, as geosr run does).
sr = geosr.upscale(lr, scale=2)
print("lazy:", sr.shape, "chunks:", sr.chunks, "transform:", tuple(sr.rio.transform())[:6])
sr.rio.to_raster(folder / "lazy_x2.tif")  # computes block by block
print("written", folder / "lazy_x2.tif")
