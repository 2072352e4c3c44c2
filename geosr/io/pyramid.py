"""Overview levels of an output, built tile by tile while the model runs.

A COG carries overviews: the full-resolution image averaged down by 2, 4, 8...
until it fits in one block.  GDAL's COG driver computes them at the end by
reading the whole image back, single-threaded, which was the largest part of a
run's non-model time (1.7 s of the 2.5 s COG build of a 8192^2 output on the
2-core benchmark machine).  But a tile's share of level ``k`` depends on its own
pixels only, as long as its output window starts and ends on multiples of
``2**k`` (or at the image's edge): so the run store keeps the levels as extra
arrays, written with each tile by the process that computed it, and the COG
driver only copies them.  Levels too coarse for the tiles' alignment are built
at the end from the deepest aligned one, which by then is small.

The rule is GDAL's ``AVERAGE``: an overview pixel is the mean of the valid
pixels of its 2 x 2 block (nodata skipped; a block with none is nodata; a mean equal
to the nodata value moved to the next value up),
integers rounded half away from zero, each level computed from the one above, as GDAL does:
the result is bit-identical to GDAL's own overviews (``tests/test_pyramid.py``
compares them), except where GDAL 3.10 leaves a mean that rounds to the nodata value
as nodata (it moves exact ones only): here it is moved too, to the side of the exact
mean, not a hole in valid data.
A level of odd sides does not halve exactly (GDAL rounds its
size down and weighs the pixels its blocks cut): those levels, and any below
them, are left to GDAL (:func:`coarser_levels`).
"""

from __future__ import annotations

import numpy as np


def level_shapes(height: int, width: int, block: int) -> list[tuple[int, int]]:
    """Shapes of the overview levels GDAL's COG driver makes.

    GDAL adds a level while the image divided by the factor is larger than a
    block, and a level is the image divided by its factor, both rounded down,
    but never under one pixel: a strip (4 x 2800 px) has levels 2 x 1400,
    1 x 700, then 1 x 350, not 0 x 350.
    """
    shapes = []
    factor = 1
    while height // factor > block or width // factor > block:
        factor *= 2
        shapes.append((max(height // factor, 1), max(width // factor, 1)))
    return shapes


def tile_levels(shape: tuple[int, int], chunk: tuple[int, int], levels: int) -> int:
    """How many of the first ``levels`` a tile can write on its own.

    Level ``k`` is an exact 2 x 2 average of level ``k - 1`` when that level's
    sides are even, and a tile's share of it is its own when every tile edge
    falls on a multiple of ``2**k``; tiles start on multiples of their output
    ``chunk`` (rows, cols), so the chunk's factors of two decide.
    """
    k = 0
    while k < levels and all(n % 2 ** (k + 1) == 0 for n in (*shape, *chunk)):
        k += 1
    return k


HALVE_CHUNK = 2**18
"""Pixels :func:`halve` averages at once, a band's rows at a time: 512 KiB of uint16, whose
temporaries stay in a core's cache.  A 2048^2 tile's first level took 16.2 ms for 4 bands and
4.9 ms for one, against 41.1 and 8.1 ms in whole-tile passes (the 2-core EPYC, median of 7);
a 4-band tile's passes are 32 MiB each, which the cache does not hold."""


def halve(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """The next overview level of ``data`` ``(C, h, w)``, ``h`` and ``w`` even: ``(C, h/2, w/2)``.

    Parameters
    ----------
    data : ndarray
        Pixels of one level, any output dtype.
    nodata : float or None
        Pixels equal to it are skipped (NaN too, when it is NaN).
    """
    bands, height, width = data.shape
    out = np.empty((bands, height // 2, width // 2), data.dtype)
    # An even number of rows at a time: every 2 x 2 block is whole in one of them.
    rows = 2 * max(1, HALVE_CHUNK // (2 * max(width, 1)))
    for band in range(bands):
        for start in range(0, height, rows):
            out[band : band + 1, start // 2 : (start + rows) // 2] = _halve_block(
                data[band : band + 1, start : start + rows], nodata
            )
    return out


def _halve_block(data: np.ndarray, nodata: float | None) -> np.ndarray:
    """:func:`halve` of a block of rows."""
    wide = _accumulator(data.dtype)
    valid = _valid(data, nodata)
    count: np.ndarray | int = 4  # every pixel valid: the common case, without masks
    if valid is None:
        total = _sum4(data, wide)
    else:
        count = _sum4(valid, np.uint8)
        total = _sum4(np.where(valid, data, 0), wide)
    # _mean shifts an unsigned total in place, which _off_nodata reads after it where
    # the nodata value is one a mean can round to.
    kept = total.copy() if data.dtype.kind == "u" and _inside(nodata, data.dtype) else total
    # A plain 4 where every pixel counts: _mean's fast path for it takes an int.
    divisor = count if valid is None else np.maximum(count, 1)
    out = _off_nodata(_mean(total, divisor, data.dtype), nodata, kept, divisor)
    if isinstance(count, np.ndarray):
        empty = count == 0
        if empty.any():
            out[empty] = nodata
    return out


def _inside(nodata: float | None, dtype: np.dtype) -> bool:
    """Whether a mean of valid pixels of ``dtype`` can equal ``nodata``: a value strictly inside
    an integer range (at an end of it, 0 for unsigned imagery, none can), any float but NaN."""
    if nodata is None or np.isnan(nodata):
        return False
    if dtype.kind == "f":
        return True
    info = np.iinfo(dtype)
    return bool(info.min < nodata < info.max)


def _off_nodata(
    out: np.ndarray, nodata: float | None, total: np.ndarray, count: np.ndarray | int
) -> np.ndarray:
    """``out``, the means ``total / count`` of valid pixels, with those equal to ``nodata`` moved
    off it, in place, to the side of their exact mean.

    Valid pixels on both sides of a nodata value inside the range (0 in a signed
    scene) can average to it, and would show as a hole in the overview.  GDAL's
    ``AVERAGE`` replaces an exact one by the next value up (nodata + 1, or the
    next float), and so does this.  A mean that only rounds to it, which GDAL 3.10
    leaves a hole, is moved too, towards its exact value: -9999.25 with nodata -9999
    becomes -10000 (the next value up biased such pixels upwards, as a prediction
    rounding onto it was, :func:`geosr.kernel.cast_to_dtype`).
    """
    if nodata is None or not _inside(nodata, out.dtype):
        # At an end of an integer range (0 for unsigned imagery, the usual case) or outside
        # it, no average of valid pixels can equal it: no comparison pass.
        return out
    target = out.dtype.type(nodata)
    hits = np.flatnonzero(out == target)
    if not hits.size:
        return out
    counts = np.broadcast_to(count, out.shape).reshape(-1)[hits]
    if out.dtype.kind == "f":
        below = total.reshape(-1)[hits] / counts < nodata
        down, up = (np.nextafter(target, out.dtype.type(t)) for t in (-np.inf, np.inf))
    else:
        below = total.reshape(-1)[hits] < int(nodata) * counts.astype(np.int64)
        down, up = out.dtype.type(nodata - 1), out.dtype.type(nodata + 1)
    out.reshape(-1)[hits] = np.where(below, down, up)
    return out


def _accumulator(dtype: np.dtype) -> type[np.generic]:
    """A type that holds the sum of four values of ``dtype`` exactly (floats: double)."""
    if dtype.kind == "f":
        return np.float64
    return np.int32 if dtype.itemsize <= 2 else np.int64


def _sum4(a: np.ndarray, dtype: type[np.generic]) -> np.ndarray:
    """Sum of each 2 x 2 block, in ``dtype``: the pairs of rows, whole rows at a time, then the
    pairs of columns of that (4.9 ms against 6.0 ms from four strided views, a band's 2048^2)."""
    rows = a[:, ::2].astype(dtype)
    rows += a[:, 1::2]
    total = rows[:, :, ::2].copy()
    total += rows[:, :, 1::2]
    return total


def _valid(data: np.ndarray, nodata: float | None) -> np.ndarray | None:
    """Mask of the pixels that count, or None when all do.

    As in GDAL, NaN is skipped only when it is the nodata value; otherwise it
    propagates, as any NaN in a sum does.
    """
    if nodata is None:
        return None
    valid = ~np.isnan(data) if np.isnan(nodata) else data != np.asarray(nodata).astype(data.dtype)
    return None if valid.all() else valid


def _mean(total: np.ndarray, count: np.ndarray | int, dtype: np.dtype) -> np.ndarray:
    if dtype.kind == "f":
        return (total / count).astype(dtype)
    # Integers: rounded half away from zero, as GDAL does.
    if dtype.kind == "u":
        if isinstance(count, int) and count == 4:
            # Every pixel valid, the common case: (2t + 4) // 8 is (t + 2) >> 2 for t >= 0,
            # a shift instead of numpy's slow integer division (a 2048^2 tile's two levels: 5.7 -> 2.5 ms).
            total += 2
            total >>= 2
            return total.astype(dtype)
        return ((2 * total + count) // (2 * count)).astype(dtype)
    magnitude = (2 * np.abs(total) + count) // (2 * count)
    return np.where(total < 0, -magnitude, magnitude).astype(dtype)


def coarser_levels(
    level: np.ndarray, full: tuple[int, int], shapes: list[tuple[int, int]], nodata: float | None
) -> list[np.ndarray]:
    """The levels of ``shapes`` below ``level`` ``(C, h, w)``, each from the one above, by GDAL.

    A level half the size of the one above is its exact 2 x 2 average (:func:`halve`).
    For sizes that do not halve, GDAL's warper does the ``average`` over its fractional
    blocks (the part of each source pixel a destination pixel covers), as GDAL's
    overview builder does.  Geometry: every level covers the image's
    ``full`` (rows, cols) extent, as overviews do.
    """
    from rasterio.crs import CRS
    from rasterio.transform import Affine
    from rasterio.warp import Resampling, reproject

    height, width = full
    crs = CRS.from_epsg(3857)  # any: source and destination share it, so only the pixel grid changes

    def transform(shape: tuple[int, int]) -> Affine:
        # Not at the origin: GDAL takes a plain scale there for "no transform".
        return Affine(width / shape[1], 0, 0, 0, -height / shape[0], height)

    out = []
    for shape in shapes:
        finer = level
        if finer.shape[1:] == (2 * shape[0], 2 * shape[1]):
            # An exact halving (tiles whose size has fewer factors of two than the
            # image's): GDAL's own 2 x 2 rule, which the warper's fractional weights
            # miss by one unit where a mean ends in .5 (7706.5 gave 7706, GDAL 7707).
            level = halve(finer, nodata)
            out.append(level)
            continue
        level = np.zeros((finer.shape[0], *shape), dtype=finer.dtype)
        # Band by band: with several bands, the warper counts a pixel as nodata only
        # where every band is nodata.
        for band in range(finer.shape[0]):
            reproject(
                finer[band],
                level[band],
                src_transform=transform(finer.shape[1:]),
                dst_transform=transform(shape),
                src_crs=crs,
                dst_crs=crs,
                src_nodata=nodata,
                dst_nodata=nodata,
                resampling=Resampling.average,
            )
        out.append(level)
    return out
