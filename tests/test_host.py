"""The Python API inside a user's process: it leaves the host's settings as they were, and
they do not change what it computes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
import torch

import geosr


def test_a_float64_torch_default_changes_no_pixel(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    src = make_raster(count=1, height=64, width=96)
    expected = geosr.upscale_file(src, tmp_path / "default.tif", scale=2, precision="fp32")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = geosr.upscale_file(src, tmp_path / "float64.tif", scale=2, precision="fp32")
        assert torch.get_default_dtype() == torch.float64  # the host's own setting is kept
    finally:
        torch.set_default_dtype(previous)
    with rasterio.open(expected) as a, rasterio.open(got) as b:
        np.testing.assert_array_equal(b.read(), a.read())
