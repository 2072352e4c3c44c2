"""Feed several acquisitions of the same place to the recurrent model (--frame).

Run: python examples/multi_temporal.py [WORKDIR]

Same as: geosr run scene.tif --frame d2.tif --frame d3.tif --tile 48 -o t3_x4.tif

The second date is on another grid (shifted, 20 m): it is reprojected onto the
reference grid block by block.  The third covers only the western half: tiles
it does not cover are computed without it.
"""

from __future__ import annotations

import numpy as np
import rasterio
from _scene import example_scene, workdir
from rasterio.enums import Resampling
from rasterio.warp import reproject

import geosr

folder = workdir()
ref = example_scene(folder)

with rasterio.open(ref) as src:
    data, profile = src.read(), src.profile
rng = np.random.default_rng(0)
# Date 2: the same place on a coarser grid (a different sensor or product), brighter.
d2 = folder / "d2.tif"
coarse = dict(profile, width=profile["width"] // 2, height=profile["height"] // 2)
coarse["transform"] = profile["transform"] @ rasterio.Affine.translation(0.5, 0.5) @ rasterio.Affine.scale(2)
with rasterio.open(d2, "w", **coarse) as dst:
    out = np.zeros((1, coarse["height"], coarse["width"]), "uint16")
    reproject(
        data,
        out,
        src_transform=profile["transform"],
        src_crs=profile["crs"],
        dst_transform=coarse["transform"],
        dst_crs=profile["crs"],
        resampling=Resampling.average,
    )
    dst.write((out * 1.05).astype("uint16"))
# Date 3: the reference grid, with noise, and nodata over the eastern half.
d3 = folder / "d3.tif"
with rasterio.open(d3, "w", **profile) as dst:
    noisy = np.clip(data + rng.normal(0, 30, data.shape), 1, 65535).astype("uint16")
    noisy[..., data.shape[-1] // 2 :] = 0
    dst.write(noisy)

out = geosr.upscale_file(
    ref, folder / "t3_x4.tif", scale=4, frames=(str(d2), str(d3)), tile=48, overwrite=True
)
one = geosr.upscale_file(ref, folder / "t1_x4.tif", scale=4, tile=48, overwrite=True)
with rasterio.open(out) as a, rasterio.open(one) as b:
    diff = np.abs(a.read().astype(float) - b.read().astype(float))
    print(f"3 dates vs 1 date: mean |difference| {diff.mean():.1f} DN, frames {a.tags()['GEOSR_FRAMES']}")
