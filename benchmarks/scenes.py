"""Input rasters for the benchmarks: a real Sentinel-2 band brought to size, and synthetic scenes.

Both are written as internally tiled, DEFLATE-compressed GeoTIFFs (512 x 512
blocks, horizontal predictor), the way a user would hand geosr a band, with
nodata 0 declared (as Sentinel-2 L1C uses it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine

S2_NAME = "sentinel2/tgt_S2A_20160529T153631_T33UUU_sub.jp2"
BLOCK = 512
STRIP_ROWS = 1024


@dataclass(frozen=True)
class BenchScene:
    """A benchmark input: where it is and what it is made of."""

    path: Path
    size: int
    source: str  # "sentinel2" or "synthetic"
    note: str


def data_dir() -> Path:
    """``$GEOSR_DATA_DIR`` or ``../shared/data`` relative to the repository root."""
    env = os.environ.get("GEOSR_DATA_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _profile(size: int, transform: Affine, crs: CRS, bands: int = 1) -> dict[str, object]:
    return {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": bands,
        "dtype": "uint16",
        "nodata": 0,
        "crs": crs,
        "transform": transform,
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "deflate",
        "predictor": 2,
    }


def _clean_block(band: np.ndarray, width: int) -> tuple[np.ndarray, int]:
    """The rows below the swath's nodata wedge, first ``width`` columns, and their first row."""
    has_nodata = (band[:, :width] == 0).any(axis=1)
    bad = np.nonzero(has_nodata)[0]
    first = int(bad.max()) + 1 if bad.size else 0
    return band[first:, :width], first


def sentinel2_scene(size: int, directory: Path) -> BenchScene:
    """A ``size x size`` window of the real T33UUU band, mirrored up to size where needed.

    The scene is 2074 x 3152 with a nodata wedge (outside the swath) in its
    upper-left part.  The rows below the wedge (about 2074 x 1050) are taken
    and, where ``size`` exceeds them, extended by symmetric mirroring (no
    discontinuity at the fold).  Falls back to :func:`synthetic_scene` when
    the data directory lacks the file.
    """
    src = data_dir() / S2_NAME
    if not src.exists():
        scene = synthetic_scene(size, directory)
        return BenchScene(
            scene.path, size, "synthetic", f"{src} not found: synthetic scene used instead of Sentinel-2"
        )
    with rasterio.open(src) as ds:
        band = ds.read(1)
        transform, crs = ds.transform, ds.crs
    width = min(size, band.shape[1])
    block, first = _clean_block(band, width)
    pad_rows, pad_cols = max(0, size - block.shape[0]), max(0, size - block.shape[1])
    data = np.pad(block, ((0, pad_rows), (0, pad_cols)), mode="symmetric")[:size, :size]
    data = np.ascontiguousarray(data)
    if (data == 0).any():  # keep nodata out of the benchmark input
        data[data == 0] = 1
    path = directory / f"s2_T33UUU_{size}.tif"
    window_transform = transform @ Affine.translation(0, first)
    with rasterio.open(path, "w", **_profile(size, window_transform, crs)) as dst:
        dst.write(data, 1)
        dst.update_tags(SOURCE=Path(S2_NAME).name)
    note = (
        f"real Sentinel-2 L1C band ({Path(S2_NAME).name}), rows {first}-{first + block.shape[0]} x "
        f"cols 0-{width} (below the nodata wedge)"
    )
    if pad_rows or pad_cols:
        note += f", mirrored up to {size} x {size}"
    return BenchScene(path, size, "sentinel2", note)


def _synthetic_strip(rows: np.ndarray, cols: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth, field-like reflectance (uint16, 300..6000) with sensor-like noise."""
    y = rows[:, None].astype(np.float32)
    x = cols[None, :].astype(np.float32)
    field = (
        2500.0
        + 900.0 * np.sin(x / 97.0 + 0.3) * np.cos(y / 131.0)
        + 500.0 * np.sin((x + y) / 23.0)
        + 300.0 * np.cos((x - 2 * y) / 11.0)
    )
    field += rng.normal(0.0, 40.0, size=field.shape).astype(np.float32)
    return np.clip(field, 300, 6000).astype(np.uint16)


def synthetic_scene(size: int, directory: Path, seed: int = 0, bands: int = 1) -> BenchScene:
    """A ``size x size`` synthetic uint16 scene of ``bands`` bands (UTM 33N, 10 m), tiled,
    written strip by strip (each band its own noise)."""
    stem = f"synthetic_{size}" if bands == 1 else f"synthetic_{size}x{bands}"
    path = directory / f"{stem}.tif"
    note = "synthetic uint16 scene (smooth fields + noise)" + (f", {bands} bands" if bands > 1 else "")
    if path.exists():
        return BenchScene(path, size, "synthetic", note)
    rng = np.random.default_rng(seed)
    transform = Affine(10.0, 0.0, 300000.0, 0.0, -10.0, 5900000.0)
    cols = np.arange(size)
    with rasterio.open(path, "w", **_profile(size, transform, CRS.from_epsg(32633), bands)) as dst:
        for r0 in range(0, size, STRIP_ROWS):
            rows = np.arange(r0, min(size, r0 + STRIP_ROWS))
            window = rasterio.windows.Window(0, r0, size, len(rows))
            for band in range(1, bands + 1):
                dst.write(_synthetic_strip(rows, cols, rng), band, window=window)
    return BenchScene(path, size, "synthetic", note)
