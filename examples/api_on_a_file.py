"""Super-resolve a GeoTIFF with the Python API: COG and Zarr out, georeferencing checked.

Run: python examples/api_on_a_file.py [WORKDIR]
"""

from __future__ import annotations

import rasterio
import xarray as xr
from _scene import example_scene, workdir

import geosr

folder = workdir()
scene = example_scene(folder)

# The same job as `geosr run scene.tif --scale 4`: a COG beside the input.
cog = geosr.upscale_file(scene, folder / "scene_x4.tif", scale=4, overwrite=True)
# The same pixels as Zarr v3, with the CRS and transform rioxarray reads back.
store = geosr.upscale_file(scene, folder / "scene_x4.zarr", scale=4, overwrite=True)

with rasterio.open(scene) as lr, rasterio.open(cog) as sr:
    print(f"{lr.width}x{lr.height} @ {lr.res[0]} m -> {sr.width}x{sr.height} @ {sr.res[0]} m")
    assert sr.bounds == lr.bounds and sr.crs == lr.crs
zarr = xr.open_zarr(store, decode_coords="all")["band_data"]
print("zarr CRS:", zarr.rio.crs, "transform:", tuple(zarr.rio.transform())[:6])
