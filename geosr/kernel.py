"""Per-tile kernels: arrays in, arrays out, no I/O and no torch.

``prepare_tiles`` turns raw pixels into model input (normalised, nodata filled);
``finish_tile`` turns model output back into pixels of the output dtype with
nodata exactly where the source pixel was nodata.  Both the single-process loop
and Dask tasks call these same functions, so every path writes the same bytes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from geosr.errors import warn
from geosr.normalise import Normalisation, fill_invalid, valid_mask


def prepare_tiles(
    raw: np.ndarray, nodata: float | None, norm: Normalisation, source: str = "the input"
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise raw tiles and fill their nodata.

    Parameters
    ----------
    raw : ndarray, shape (B, C, h, w)
        Pixels as read, any dtype.
    nodata : float or None
    norm : Normalisation
    source : str
        What the line on a value beyond float32 (:func:`normalise_valid`) names: the file's path
        where the caller knows it.

    Returns
    -------
    x : ndarray, float32, shape (B, 1, C, h, w)
        Model input (one frame).
    valid : ndarray of bool, shape (B, C, h, w)
    """
    x, valid = normalise_valid(raw, valid_mask(raw, nodata), norm, source)
    x = fill_invalid(x, valid)
    return x[:, None], valid


def normalise_valid(
    raw: np.ndarray,
    valid: np.ndarray,
    norm: Normalisation,
    source: str = "the input",
    fate: str = "written as nodata, not super-resolved",
) -> tuple[np.ndarray, np.ndarray]:
    """``raw`` normalised to float32 (its invalid pixels as 0), and ``valid`` less the pixels
    whose normalised value float32 cannot hold.  ``source`` is what ``raw`` is read from, which
    the line below names (the file's path; it said 'the input' of every file and frame), and
    ``fate`` what the caller does with such pixels (a frame's are not fused).

    A float scene's value beyond float32's range once normalised (1e+39 in a float64 raster,
    which the scene's sample missed) became an infinity, with numpy's bare 'overflow encountered
    in cast', and the model's sums made NaN of the output around it.  Such pixels are nodata
    instead, filled as nodata is, and said so in one line.
    """
    with np.errstate(over="ignore"):  # told in geosr's own line below
        x = norm.apply(np.where(valid, raw, 0) if not valid.all() else raw)
    # Only floats can overflow: an integer's normalised value is far inside float32's range.
    if raw.dtype.kind == "f" and not np.isfinite(x).all():
        beyond = ~np.isfinite(x)  # invalid pixels went in as 0: these are valid ones
        value = str(raw[beyond][0])  # as its dtype writes it: 3e+38 of a float32, not 3.0000000054977558e+38
        warn(
            f"{source} holds {value}, beyond float32's range once normalised for the model, which "
            f"computes in float32: such pixels are {fate}; if it is its fill value, pass it as --nodata"
        )
        valid = valid & ~beyond
    return x, valid


def needs_exact_projection(dtype: str) -> bool:
    """Whether the model's float32 projection leaves ``dtype``'s output off its input: for 32- and
    64-bit integers and float64, whose pixels float32 does not hold (8- and 16-bit integers it holds
    exactly, and a float32 output is only as precise as the model)."""
    target = np.dtype(dtype)
    return target.itemsize > 2 and target != np.float32


def project_exactly(values: np.ndarray, reference: np.ndarray, valid: np.ndarray, scale: int) -> None:
    """Shift each ``s x s`` block of ``values`` (output units, float64) so that its mean is the
    ``reference`` pixel under it, in float64 and in place, where that pixel is ``valid``.

    The model projects in float32 onto its float32 input, normalised: an int32 scene spanning 1e7
    came out with block means up to 1.4 DN off its input, a float64 one 1.2 units (a relative
    1e-7).  Redone here from the source pixels, they are exact before the rounding to the dtype
    (a mean within 0.5 DN of the input for integers).  Invalid pixels' blocks become nodata and
    are left as they are.
    """
    bands, height, width = reference.shape
    blocks = values.reshape(bands, height, scale, width, scale)
    means = blocks.mean(axis=(2, 4))
    error = means - np.where(valid, reference, means)
    blocks -= error[:, :, None, :, None]


def cast_to_dtype(
    values: np.ndarray, dtype: str, nodata: float | None, out: np.ndarray | None = None
) -> np.ndarray:
    """Round and clip ``values`` into ``dtype``, keeping valid pixels off the nodata value.

    A valid pixel that happens to round to the nodata value (0 is a common
    nodata for imagery) would silently disappear; it is moved one unit off it instead,
    to the side of its own value: with a nodata inside the range (0 in a signed scene),
    -0.4 becomes -1 and 0.3 becomes 1, where moving every one up biased a DEM's sea level
    upwards.  A value exactly on it has no side and goes up, as GDAL's overviews move theirs.

    ``values`` is overwritten; the result goes into ``out`` where given (a contiguous ``dtype``
    array of ``values``' shape), else into a new array.
    """
    target = np.dtype(dtype)
    if out is None:
        out = np.empty(values.shape, target)
    if np.issubdtype(target, np.integer):
        info = np.iinfo(target)
        low, high = int(info.min), int(info.max)
        # Nodata the dtype cannot hold (or NaN) cannot collide with a valid pixel.
        kept_off = nodata if nodata is not None and low <= nodata <= high else None
        # Nodata at an end of the range (0 for unsigned imagery, the usual case) is
        # kept off by the clip itself: no comparison pass and no mask per tile.
        if kept_off == low:
            low, kept_off = low + 1, None
        elif kept_off == high:
            high, kept_off = high - 1, None
        # Rounded in place (``values`` is a temporary of the caller's), clipped straight into the
        # output: the bounds are integers, so clipping before or after rounding is the same.
        if kept_off is None:
            return np.clip(np.rint(values, out=values), low, high, out=out, casting="unsafe")
        # Clipped in place (a clipped value stays on its side of nodata), rounded straight
        # into the output: ``values`` then still say on which side each pixel was.
        np.rint(np.clip(values, low, high, out=values), out=out, casting="unsafe")
        _off_mid_range_nodata(out, values, target.type(kept_off))
        return out
    info_f = np.finfo(target)
    return np.clip(values, info_f.min, info_f.max, out=out, casting="unsafe")


def _off_mid_range_nodata(out: np.ndarray, values: np.ndarray, nodata: np.integer) -> None:
    """Move the pixels of ``out`` equal to ``nodata``, strictly inside its dtype's range, one
    unit towards the ``values`` they were rounded from (up for a value equal to it), in place."""
    hits = np.flatnonzero(out == nodata)
    if hits.size:
        below = values.reshape(-1)[hits] < nodata
        out.reshape(-1)[hits] = np.where(below, out.dtype.type(nodata - 1), out.dtype.type(nodata + 1))


def finish_tile(
    sr: np.ndarray,
    valid: np.ndarray,
    *,
    scale: int,
    norm: Normalisation,
    dtype: str,
    nodata: float | None,
    reference: np.ndarray | None = None,
) -> np.ndarray:
    """Turn normalised model output into output pixels.

    Parameters
    ----------
    sr : ndarray, float32, shape (C, s*h, s*w)
        Model output for one tile core.
    valid : ndarray of bool, shape (C, h, w)
        Validity of the core's source pixels.
    scale : int
    norm : Normalisation
    dtype : str
        Output dtype (the input's).
    nodata : float or None
        Written where the source pixel was invalid; NaN for float scenes
        without a nodata value.
    reference : ndarray, shape (C, h, w), optional
        The core's source pixels (frame 0), given where the model projects its output onto
        its input (:attr:`geosr.models.base.SRModel.projects`): see :func:`project_exactly`.
    """
    out = np.empty(sr.shape, dtype)
    if reference is None or not needs_exact_projection(dtype):
        reference = None
    # A few output rows at a time, band by band: every step is per pixel (the projection per
    # s x s block, whole in a slice of rows that starts and ends on a multiple of s), so the
    # pixels are those of the whole tile at once, and the float temporaries stay in the cache
    # instead of being a tile's size each (16 MiB per pass of float32 for a 2048^2 core).
    rows = scale * max(1, FINISH_CHUNK // (scale * sr.shape[-1]))
    for band in range(sr.shape[0]):
        band_norm = _band_normalisation(norm, band, sr.shape[0])
        for start in range(0, sr.shape[-2], rows):
            hr, lr = slice(start, start + rows), slice(start // scale, (start + rows) // scale)
            _finish_rows(
                sr[band : band + 1, hr],
                valid[band : band + 1, lr],
                out[band : band + 1, hr],
                scale=scale,
                norm=band_norm,
                nodata=nodata,
                reference=None if reference is None else reference[band : band + 1, lr],
            )
    return out


FINISH_CHUNK = 2**17
"""Pixels :func:`finish_tile` turns into output pixels at once: 512 KiB of float32, which stay
in a core's L2 cache from one step to the next.  A 2048^2 core (a 512 px tile at x4) of uint16
took 5.5 ms in whole-tile passes (six over 16 MiB of float32), 3.8 ms in chunks of 2**17
pixels (2**16: 3.9-4.6 ms, 2**20: 5.2-8.8 ms); with glibc's default allocator, which maps
each whole-tile temporary afresh and page-faults it, 12.7 ms against 7.7 ms."""


def _band_normalisation(norm: Normalisation, band: int, bands: int) -> Normalisation:
    """``norm`` of ``band`` alone, broadcast over ``bands`` as :meth:`Normalisation.invert` does."""
    offset = np.broadcast_to(np.asarray(norm.offset, np.float64), (bands,))[band]
    scale = np.broadcast_to(np.asarray(norm.scale, np.float64), (bands,))[band]
    return replace(norm, offset=(float(offset),), scale=(float(scale),))


def _finish_rows(
    sr: np.ndarray,
    valid: np.ndarray,
    out: np.ndarray,
    *,
    scale: int,
    norm: Normalisation,
    nodata: float | None,
    reference: np.ndarray | None,
) -> None:
    """:func:`finish_tile` on rows of one band (``reference`` None: no projection), into ``out``."""
    # float32 holds 8- and 16-bit values and their halves exactly; wider types need float64.
    working = np.float32 if out.dtype.itemsize <= 2 else np.float64
    values = norm.invert(sr, working)
    if reference is not None:
        project_exactly(values, reference, valid, scale)
    cast_to_dtype(values, out.dtype.name, nodata, out=out)
    if not valid.all():
        invalid_hr = ~valid.repeat(scale, axis=-2).repeat(scale, axis=-1)
        out[invalid_hr] = nodata if nodata is not None else np.nan
