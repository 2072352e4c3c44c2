"""A hand-written peer loop: how super-resolution scripts in the wild (Real-ESRGAN's
``tile_process``) run a model over a large image.

Whole scene read into memory, normalised as the model card says (its
percentiles of the whole scene), tiles of 128 LR pixels with a 10-pixel pad
(clamped at the scene edges, so edge tiles are smaller), batch 1, fp32,
contiguous memory format, crop the pad off each output tile and paste it into a
full-size output array, then one GeoTIFF write (the input's profile, resized).
Same model, weights and normalisation as geosr, so the same pixels away from
the tiles' seams and the scene's edges; no mirroring, no nodata filling, no COG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.transform import Affine

from geosr.normalise import DTYPE_SCALES

PEER_TILE = 128
PEER_PAD = 10


def load_peer_model(name: str, bands: int, scale: int) -> torch.nn.Module:
    """The same registered model, fp32, contiguous, eval mode."""
    import geosr

    model = geosr.load_model(name, bands=bands, scale=scale)
    return model.eval().float().to(memory_format=torch.contiguous_format)


def peer_normalisation(img: np.ndarray, nodata: float | None, card: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per-band offset and scale, ``(C, 1, 1)``, of the model card's normalisation over the
    whole scene: the ``low`` and ``high`` percentiles of each band's valid pixels, or the
    dtype's divisor (the card's, else geosr's default) for ``dtype-range``."""
    bands = img.shape[0]
    if card.get("method", "percentile") == "dtype-range":
        divisor = card.get(img.dtype.name, DTYPE_SCALES.get(img.dtype.name, 1.0))
        return np.zeros((bands, 1, 1)), np.full((bands, 1, 1), divisor)
    offset, scale = np.zeros((bands, 1, 1)), np.ones((bands, 1, 1))
    for b, band in enumerate(img):
        values = band[band != nodata] if nodata is not None else band.ravel()
        lo, hi = np.percentile(values, [card.get("low", 0.1), card.get("high", 99.9)])
        offset[b], scale[b] = lo, hi - lo if hi > lo else max(abs(hi), 1.0)
    return offset, scale


def peer_upscale(
    src: Path,
    dst: Path,
    *,
    model_name: str,
    scale: int,
    tile: int = PEER_TILE,
    pad: int = PEER_PAD,
) -> None:
    """Super-resolve ``src`` into ``dst`` the Real-ESRGAN way (see the module docstring)."""
    with rasterio.open(src) as ds:
        img = ds.read()  # (C, H, W), the whole scene
        profile = ds.profile
    bands, height, width = img.shape
    model = load_peer_model(model_name, bands, scale)
    offset, spread = peer_normalisation(img, profile.get("nodata"), dict(model.card.normalisation))
    x = torch.from_numpy(((img - offset) / spread).astype(np.float32))
    output = torch.zeros(bands, height * scale, width * scale, dtype=torch.float32)
    tiles_y = (height + tile - 1) // tile
    tiles_x = (width + tile - 1) // tile
    with torch.no_grad():
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                y0, x0 = ty * tile, tx * tile
                y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
                y0p, x0p = max(y0 - pad, 0), max(x0 - pad, 0)
                y1p, x1p = min(y1 + pad, height), min(x1 + pad, width)
                inp = x[:, y0p:y1p, x0p:x1p][None, None]  # (B=1, T=1, C, h, w)
                out = model(inp)[0]
                oy, ox = (y0 - y0p) * scale, (x0 - x0p) * scale
                oh, ow = (y1 - y0) * scale, (x1 - x0) * scale
                tile_out = out[:, oy : oy + oh, ox : ox + ow]
                output[:, y0 * scale : y1 * scale, x0 * scale : x1 * scale] = tile_out
    values = np.rint(output.numpy() * spread + offset)
    result = np.clip(values, 0, np.iinfo(img.dtype).max).astype(img.dtype)
    profile.update(
        width=width * scale,
        height=height * scale,
        transform=profile["transform"] @ Affine.scale(1 / scale),
        bigtiff="IF_SAFER",
    )
    with rasterio.open(dst, "w", **profile) as out_ds:
        out_ds.write(result)


def peer_lr_pixels(height: int, width: int, tile: int = PEER_TILE, pad: int = PEER_PAD) -> int:
    """LR pixels the peer loop feeds the model (tiles plus their clamped pads)."""
    total = 0
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            h = min(y0 + tile + pad, height) - max(y0 - pad, 0)
            w = min(x0 + tile + pad, width) - max(x0 - pad, 0)
            total += h * w
    return total
