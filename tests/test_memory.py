"""Peak memory is set by tile and batch, not by scene size (measured in child processes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from tests.conftest import REPO, UTM_TRANSFORM

pytestmark = pytest.mark.slow

# Runs one job and prints the process's own peak resident set (VmHWM: exact, and
# reset at exec, so the parent's memory does not count).  Tile and batch are fixed:
# they set the bound, and with the default 512 px tiles a 2048^2 scene is only 16
# tiles, too few for the read-ahead and write queues to fill as they do on a large one.
CHILD = """
import json, sys
import geosr
geosr.upscale_file(sys.argv[1], sys.argv[2], scale=2, model="bicubic", tile=256, batch_size=4)
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"vm_hwm_kib": hwm}))
"""


def synthetic(path: Path, size: int) -> Path:
    """A ``size``^2 uint16 scene with texture (so compression does not make it trivial)."""
    rng = np.random.default_rng(size)
    data = rng.integers(200, 4000, (1, size, size), dtype=np.uint16)
    profile = {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint16",
        "crs": "EPSG:32633",
        "transform": UTM_TRANSFORM,
        "nodata": 0,
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def peak_mib(src: Path, dst: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # The block cache is a fixed, configured bound (GDAL_CACHEMAX, 64 MB by
    # default); smaller than either input here, so that what grows is geosr's own.
    env["GDAL_CACHEMAX"] = "8"
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(dst)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])["vm_hwm_kib"] / 1024


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc for VmHWM")
def test_peak_memory_does_not_grow_with_scene_size(tmp_path: Path) -> None:
    # Zarr out: the pipeline alone.  A COG adds GDAL's own COG build, whose working
    # set (overviews, threaded compression) is bounded too (~130 MiB measured for
    # both 8192^2 and 16384^2 outputs) but grows with the width of small scenes.
    # One run's peak varies by up to ~20 MiB with how the reader and writer threads'
    # allocator arenas happen to fill: beyond the bound, the lower of two runs each decides
    # (a second pair every time cost the suite a minute).
    small_src, large_src = synthetic(tmp_path / "small.tif", 2048), synthetic(tmp_path / "large.tif", 6144)
    grown_mib = ((6144 * 2) ** 2 - (2048 * 2) ** 2) * 2 / 2**20  # 256 MiB more output pixels
    small = peak_mib(small_src, tmp_path / "small_x2_0.zarr")
    large = peak_mib(large_src, tmp_path / "large_x2_0.zarr")
    if large - small >= grown_mib / 8:
        small = min(small, peak_mib(small_src, tmp_path / "small_x2_1.zarr"))
        large = min(large, peak_mib(large_src, tmp_path / "large_x2_1.zarr"))
    # 9x the pixels; were the output (or the input) held whole, or any buffer
    # sized by the scene, the large run would peak that much higher.  Measured in
    # single runs: -6 to +22 MiB apart; 50 MiB when the statistics sample kept every
    # strip it was cut from alive (64 MiB of input more), which this bound catches.
    assert large - small < grown_mib / 8, f"peak {large:.0f} MiB vs {small:.0f} MiB"
