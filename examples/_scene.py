"""A small georeferenced scene for the examples: real Sentinel-2 pixels when available."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine


def example_scene(folder: Path, size: int = 96) -> Path:
    """Write ``folder/scene.tif`` (uint16, EPSG:32633, nodata 0) and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "scene.tif"
    jp2 = (
        Path(os.environ.get("GEOSR_DATA_DIR", "../shared/data"))
        / "sentinel2/tgt_S2A_20160529T153631_T33UUU_sub.jp2"
    )
    if jp2.exists():
        with rasterio.open(jp2) as src:
            window = rasterio.windows.Window(1000, 1500, size, size)
            data, transform, crs = src.read(window=window), src.window_transform(window), src.crs
    else:
        yy, xx = np.mgrid[0:size, 0:size]
        data = (2000 + 800 * np.sin(xx / 6) * np.cos(yy / 9)).astype("uint16")[None]
        transform, crs = Affine(10, 0, 335440, 0, -10, 5866490), "EPSG:32633"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        count=1,
        dtype="uint16",
        width=size,
        height=size,
        crs=crs,
        transform=transform,
        nodata=0,
    ) as dst:
        dst.write(data)
    return path


def workdir() -> Path:
    return Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/examples")
