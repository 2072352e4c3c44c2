"""Super-resolve only an area of interest given in another CRS (lon/lat over a UTM scene).

Run: python examples/aoi_run.py [WORKDIR]

Same as: geosr run scene.tif --aoi area.geojson -o aoi_x4.tif
"""

from __future__ import annotations

import json

import rasterio
from _scene import example_scene, workdir
from odc.geo.geom import polygon

import geosr

folder = workdir()
scene = example_scene(folder)

# A triangle over the scene's centre, written as GeoJSON in longitude/latitude (RFC 7946).
with rasterio.open(scene) as src:
    b = src.bounds
    w, h = b.right - b.left, b.top - b.bottom
    utm = [
        (b.left + 0.2 * w, b.top - 0.2 * h),
        (b.left + 0.8 * w, b.top - 0.2 * h),
        (b.left + 0.2 * w, b.top - 0.8 * h),
    ]
    triangle = polygon([*utm, utm[0]], crs=src.crs).to_crs("EPSG:4326")
aoi = folder / "area.geojson"
aoi.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": triangle.json}))

# Only the tiles that touch the triangle are read and computed; pixels of its
# bounding window outside the triangle are nodata in the output.
out = geosr.upscale_file(scene, folder / "aoi_x4.tif", scale=4, aoi=str(aoi), overwrite=True)
with rasterio.open(scene) as lr, rasterio.open(out) as sr:
    print(f"scene {lr.width}x{lr.height} px -> AOI output {sr.width}x{sr.height} px at {sr.res[0]} m")
    data = sr.read(1)
    print(f"inside the triangle: {(data != sr.nodata).mean():.0%} of the window (a right triangle: ~50 %)")
    # The window is snapped to the input grid: its corner is a whole input pixel.
    col, row = ~lr.transform @ (sr.bounds.left, sr.bounds.top)
    assert abs(col - round(col)) < 1e-6 and abs(row - round(row)) < 1e-6
