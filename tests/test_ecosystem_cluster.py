"""An AOI polygon and extra frames on a local Dask cluster give the local run's pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

import geosr

pytestmark = pytest.mark.slow


def test_aoi_and_frames_on_a_cluster_equal_the_local_run(make_raster, tmp_path: Path) -> None:
    scene = make_raster(count=1, height=64, width=64)
    frame = make_raster("d2.tif", count=1, height=64, width=64)
    with rasterio.open(scene) as src:
        b = src.bounds
    ring = [(b.left, b.top), (b.right, b.top), (b.left, b.bottom), (b.left, b.top)]
    aoi = tmp_path / "tri.geojson"
    doc = {
        "type": "Feature",
        "crs": {"type": "name", "properties": {"name": "EPSG:32633"}},
        "properties": {},
        "geometry": {"type": "Polygon", "coordinates": [ring]},
    }
    aoi.write_text(json.dumps(doc))
    options = {"scale": 2, "aoi": str(aoi), "frames": (str(frame),), "tile": 16}
    local = geosr.upscale_file(scene, tmp_path / "local.tif", **options)
    cluster = geosr.upscale_file(scene, tmp_path / "cluster.tif", workers=2, **options)
    with rasterio.open(local) as a, rasterio.open(cluster) as c:
        x, y = a.read(), c.read()
        assert np.array_equal(x, y)
        assert 0.4 < (x == a.nodata).mean() < 0.6  # half of the window is outside the triangle
