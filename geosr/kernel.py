"""Per-tile kernels: arrays in, arrays out, no I/O and no torch.

``prepare_tiles`` turns raw pixels into model input (normalised, nodata filled);
``finish_tile`` turns model output back into pixels of the output dtype with
nodata exactly where the source pixel was nodata.  Both the single-process loop
and Dask tasks call these same functions, so every path writes the same bytes.
"""

from __future__ import annotations

import numpy as np

from geosr.normalise import Normalisation, fill_invalid, valid_mask


def prepare_tiles(
    raw: np.ndarray, nodata: float | None, norm: Normalisation
) -> tuple[np.ndarray, np.ndarray]:
    """Normalise raw tiles and fill their nodata.

    Parameters
    ----------
    raw : ndarray, shape (B, C, h, w)
        Pixels as read, any dtype.
    nodata : float or None
    norm : Normalisation

    Returns
    -------
    x : ndarray, float32, shape (B, 1, C, h, w)
        Model input (one frame).
    valid : ndarray of bool, shape (B, C, h, w)
    """
    valid = valid_mask(raw, nodata)
    x = norm.apply(np.where(valid, raw, 0) if not valid.all() else raw)
    x = fill_invalid(x, valid)
    return x[:, None], valid


def cast_to_dtype(values: np.ndarray, dtype: str, nodata: float | None) -> np.ndarray:
    """Round and clip ``values`` into ``dtype``, keeping valid pixels off the nodata value.

    A valid pixel that happens to round to the nodata value (0 is a common
    nodata for imagery) would silently disappear; it is moved one unit into the
    valid range instead.
    """
    target = np.dtype(dtype)
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
        # In place: ``values`` is a temporary of the caller's (finish_tile's).
        out = np.clip(np.rint(values, out=values), low, high, out=values).astype(target)
        if kept_off is not None:
            out[out == kept_off] = target.type(kept_off + 1)
        return out
    info_f = np.finfo(target)
    return np.clip(values, info_f.min, info_f.max).astype(target)


def finish_tile(
    sr: np.ndarray,
    valid: np.ndarray,
    *,
    scale: int,
    norm: Normalisation,
    dtype: str,
    nodata: float | None,
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
    """
    # float32 holds 8- and 16-bit values and their halves exactly; wider types need float64.
    working = np.float32 if np.dtype(dtype).itemsize <= 2 else np.float64
    out = cast_to_dtype(norm.invert(sr, working), dtype, nodata)
    if not valid.all():
        invalid_hr = ~valid.repeat(scale, axis=-2).repeat(scale, axis=-1)
        fill = nodata if nodata is not None else np.nan
        out[invalid_hr] = fill
    return out
