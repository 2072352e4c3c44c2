"""Reference points measured in the same run: conv peaks and GDAL's cubic resampling."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject

from geosr.io.cog import COMPRESSION

CONV_SHAPE = (8, 64, 128, 128)
CONV_OUT = 64
CONV_KERNEL = 3


def conv_flops(channels: int = CONV_SHAPE[1], shape: tuple[int, int, int, int] = CONV_SHAPE) -> int:
    """FLOPs of one 3x3 conv ``channels -> channels`` on an input of ``shape`` (N, C, H, W)."""
    n, _, h, w = shape
    return 2 * n * channels * h * w * channels * CONV_KERNEL * CONV_KERNEL


def conv_peak(precision: str, iterations: int, channels: int = CONV_SHAPE[1]) -> float:
    """GFLOP/s of a 3x3 conv ``channels -> channels`` (64 by default) on (8, C, 128, 128)
    channels_last, one timed run.

    ``precision`` is ``fp32`` or ``bf16`` (bf16 autocast, as the predictor runs).
    Two untimed calls first (oneDNN builds its primitives on the first).
    """
    n, _, h, w = CONV_SHAPE
    conv = torch.nn.Conv2d(channels, channels, CONV_KERNEL, padding=1)
    conv = conv.eval().to(memory_format=torch.channels_last)
    x = torch.rand(n, channels, h, w).contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
    with torch.inference_mode(), autocast:
        for _ in range(2):
            conv(x)
        start = time.perf_counter()
        for _ in range(iterations):
            conv(x)
        seconds = time.perf_counter() - start
    return conv_flops(channels) * iterations / seconds / 1e9


def gpu_conv_peak(iterations: int = 50) -> float:
    """GFLOP/s of a 3x3 conv 64 -> 64 on (32, 64, 256, 256) channels_last, bf16 autocast, on CUDA."""
    shape = (32, 64, 256, 256)
    c = shape[1]
    conv = torch.nn.Conv2d(c, c, CONV_KERNEL, padding=1).cuda().eval().to(memory_format=torch.channels_last)
    x = torch.rand(*shape, device="cuda").contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        for _ in range(5):
            conv(x)
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(iterations):
            conv(x)
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return conv_flops(c, shape) * iterations / seconds / 1e9


# The options geosr's COG sink uses (geosr/io/cog.py), so both sides write the same kind of file.
COG_OPTIONS: dict[str, Any] = {
    "BLOCKSIZE": 512,
    **COMPRESSION,
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}


def gdalwarp_cli() -> str | None:
    return shutil.which("gdalwarp")


def gdal_cubic(src: Path, dst: Path, scale: int, threads: int) -> str:
    """GDAL's cubic resampling of ``src`` onto the x``scale`` grid, written as a COG.

    With the ``gdalwarp`` CLI when installed (``-r cubic -tr``, ``-of COG``);
    otherwise the same warp through ``rasterio.warp.reproject`` into memory and
    one COG ``CreateCopy`` with the options geosr uses.  Returns how it ran.
    """
    cli = gdalwarp_cli()
    with rasterio.open(src) as ds:
        res_x, res_y = ds.res
        profile = ds.profile
        src_data = None if cli else ds.read()
    if cli:
        cmd = [
            cli,
            "-q",
            "-overwrite",
            "-r",
            "cubic",
            "-tr",
            str(res_x / scale),
            str(res_y / scale),
            "-multi",
            "-wo",
            f"NUM_THREADS={threads}",
            "-of",
            "COG",
            *[arg for k, v in COG_OPTIONS.items() for arg in ("-co", f"{k}={v}")],
            str(src),
            str(dst),
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        return f"gdalwarp CLI ({cli}), -r cubic -tr, -multi NUM_THREADS={threads}, -of COG"
    assert src_data is not None
    count, height, width = src_data.shape
    transform = profile["transform"] @ Affine.scale(1 / scale)
    out = np.zeros((count, height * scale, width * scale), dtype=src_data.dtype)
    nodata = profile.get("nodata")
    reproject(
        src_data,
        out,
        src_transform=profile["transform"],
        src_crs=profile["crs"],
        src_nodata=nodata,
        dst_transform=transform,
        dst_crs=profile["crs"],
        dst_nodata=nodata,
        resampling=Resampling.cubic,
        num_threads=threads,
    )
    mem_profile = {
        "driver": "MEM",
        "width": width * scale,
        "height": height * scale,
        "count": count,
        "dtype": out.dtype.name,
        "crs": profile["crs"],
        "transform": transform,
        "nodata": nodata,
    }
    with rasterio.MemoryFile() as memfile, memfile.open(**mem_profile) as mem:
        mem.write(out)
        rasterio.shutil.copy(mem, dst, driver="COG", **COG_OPTIONS)
    return (
        f"rasterio.warp.reproject(Resampling.cubic, num_threads={threads}) into memory, then one "
        "GDAL COG CreateCopy with geosr's COG options (no gdalwarp CLI on this machine)"
    )


def latency_probe(threads: int | None = None, iterations: int = 30) -> float:
    """Milliseconds per call of a small 3x3 conv (32 -> 32 on 1 x 32 x 64 x 64, fp32).

    With ``threads`` torch threads (default: torch's own choice).  On an idle
    machine more threads are faster; when other jobs hold the cores, OpenMP
    threads wait for each other at every operation and the default-thread
    figure grows many times over the 1-thread one.  The ratio is how contended
    the machine was, which matters most for code that makes many small calls
    (the peer loop) and least for big batches.
    """
    conv = torch.nn.Conv2d(32, 32, 3, padding=1).eval()
    x = torch.rand(1, 32, 64, 64)
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for _ in range(3):
                conv(x)
            start = time.perf_counter()
            for _ in range(iterations):
                conv(x)
            return (time.perf_counter() - start) / iterations * 1e3
    finally:
        torch.set_num_threads(previous)


def contention() -> dict[str, float]:
    """:func:`latency_probe` at torch's default threads and at 1 thread, and their ratio."""
    default = latency_probe()
    single = latency_probe(threads=1)
    return {
        "threads": torch.get_num_threads(),
        "ms_default_threads": round(default, 3),
        "ms_one_thread": round(single, 3),
        "ratio": round(default / single, 2),
    }
