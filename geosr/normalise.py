"""Scene-global radiometric normalisation and mask-aware nodata filling.

Normalisation is an affine map per band, ``(x - offset) / scale``, computed once
per scene (never per tile: per-tile statistics make seams).  Two methods:

``percentile`` (the bundled models' choice)
    ``offset`` = the 0.1st and ``offset + scale`` = the 99.9th percentile of the
    band's valid pixels, so that any sensor and dtype (uint8 aerial, uint16
    reflectance or DN, float) lands on roughly ``[0, 1]``.  A band-agnostic model
    trained this way sees the same value range everywhere.
``dtype-range``
    ``offset = 0`` and a fixed ``scale`` per dtype (uint8: 255, uint16: 10000 for
    Sentinel-2 reflectance, floats: 1, physical units already), for models trained on
    physical units.  Other integer dtypes have no such convention: the model's card
    gives their divisor, or their scenes are refused (:func:`dtype_divisor`).

Nodata pixels are replaced before the model sees them by a *local* fill
(normalised convolution over a fixed radius, then a constant), so that the
value used as nodata (0, -9999, NaN) never enters the network and the fill of a
pixel depends only on pixels within ``FILL_RADIUS``: tiles with a halo of
``receptive_field + FILL_RADIUS`` reproduce whole-image inference exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from geosr.errors import InputError, warn

FILL_RADIUS = 3
"""LR pixels a filled nodata value may draw on (adds to the tile halo)."""

DTYPE_SCALES: Mapping[str, float] = {
    "uint8": 255.0,
    "uint16": 10000.0,
    "int16": 10000.0,
    # A float raster holds physical values (reflectance 0..1, what DN / 10000 gives); one that
    # holds integer DN names their dtype in UNITS_DTYPE_TAG, or the card gives its divisor.
    "float32": 1.0,
    "float64": 1.0,
}
"""``dtype-range`` divisors of the dtypes that have a convention; a card's own take precedence."""

DIVISOR_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
"""The dtypes a card's ``dtype-range`` normalisation may give a divisor for: those geosr reads
(:data:`geosr.io.scene.SUPPORTED_DTYPES`)."""

UNITS_DTYPE_TAG = "GEOSR_UNITS_DTYPE"
"""A float raster's tag naming the dtype whose units its values are in: ``geosr evaluate``'s Wald
LR holds exact means of the HR's pixels (uint16 DN, say) as float32, and a ``dtype-range``
model divided them by a float32's 1, not by 10000 (:func:`units_dtype`)."""


def units_dtype(dtype: str, tags: Mapping[str, str]) -> str:
    """The dtype whose units a raster of ``dtype`` with ``tags`` holds: the one
    :data:`UNITS_DTYPE_TAG` names, when it is one that ``dtype-range`` knows, else ``dtype``."""
    named = tags.get(UNITS_DTYPE_TAG, dtype)
    return named if named in DIVISOR_DTYPES else dtype


@dataclass(frozen=True)
class Normalisation:
    """Per-band affine normalisation ``(x - offset) / scale``.

    Attributes
    ----------
    offset, scale : tuple of float
        One value per band; ``scale`` is strictly positive.
    method : str
        How the values were obtained (recorded in provenance tags).
    """

    offset: tuple[float, ...]
    scale: tuple[float, ...]
    method: str = "percentile"

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Normalise ``x`` of shape ``(..., C, h, w)`` to float32."""
        off, sc = self._broadcast(x.ndim)
        # In float64 (as ``off`` makes it), from ``x`` as it is: a cast to float32 first
        # kept 24 bits of 32-bit integers and float64, so uint32 pixels near 4e9 spanning
        # 1000 units reached the model in steps of 256.  8-, 16-bit and float32 pixels
        # give the same bits as before.
        return ((x - off) / sc).astype(np.float32, copy=False)

    def invert(self, y: np.ndarray, dtype: type[np.floating] = np.float64) -> np.ndarray:
        """Map normalised ``y`` of shape ``(..., C, h, w)`` back to physical units, a new ``dtype`` array."""
        off, sc = self._broadcast(y.ndim)
        out = y.astype(dtype)
        out *= sc.astype(dtype)
        out += off.astype(dtype)
        return out

    def _broadcast(self, ndim: int) -> tuple[np.ndarray, np.ndarray]:
        shape = (len(self.offset), 1, 1)
        off = np.asarray(self.offset, np.float64).reshape(shape)
        sc = np.asarray(self.scale, np.float64).reshape(shape)
        return off, sc

    def with_add_offset(self, add_offset: tuple[float, ...] | None) -> Normalisation:
        """This normalisation for stored numbers that ``add_offset`` (Sentinel-2 ``BOA_ADD_OFFSET``,
        per band) turns into physical units, as ``dtype-range`` models expect them:
        ``(DN + offset) / 10000``.  Percentile normalisation is unaffected by an additive offset
        by construction, and returned as it is, as is any for ``add_offset`` None."""
        if add_offset is None or self.method != "dtype-range":
            return self
        return replace(self, offset=tuple(-float(o) for o in add_offset))

    def to_tags(self) -> dict[str, str]:
        """Provenance tags describing this normalisation."""
        return {
            "GEOSR_NORMALISATION": self.method,
            "GEOSR_NORM_OFFSET": ",".join(f"{v:.6g}" for v in self.offset),
            "GEOSR_NORM_SCALE": ",".join(f"{v:.6g}" for v in self.scale),
        }


FLOAT_FILL = 1e38
"""Magnitude from which a float pixel is a fill value, never a measurement: float32's lowest
(-3.4028234663852886e+38, ESRI's and many a converter's), -3.4e+38, Surfer's 1.70141e+38.
Taken as data, such a pixel overflowed the model's float32 input (or its sums) and blanked the
output around it: NaN over about 100 x 100 output pixels per pixel with the default model at x4."""


def valid_mask(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """Return a boolean mask of valid pixels: not equal to ``nodata`` and, for floats, finite and
    under :data:`FLOAT_FILL` in magnitude."""
    valid = np.ones(block.shape, bool)
    if np.issubdtype(block.dtype, np.floating):
        with np.errstate(invalid="ignore"):
            valid &= np.abs(block) < FLOAT_FILL  # NaN and infinities fail it too
    if nodata is not None and not np.isnan(nodata):
        valid &= block != nodata
    return valid


def scene_normalisation(
    sample: np.ndarray,
    valid: np.ndarray,
    *,
    method: str = "percentile",
    dtype: str | None = None,
    low: float = 0.1,
    high: float = 99.9,
    divisors: Mapping[str, float] | None = None,
    source: str = "input",
    band_axis: str = "band",
    band_labels: Sequence[Any] = (),
) -> Normalisation:
    """Compute the scene-global normalisation from a sample of the scene.

    Parameters
    ----------
    sample : ndarray, shape (C, h, w)
        The whole scene or a decimated read of it (overviews are fine: the
        percentiles of a 1/8 decimation differ negligibly).
    valid : ndarray of bool, same shape
        Valid-pixel mask of ``sample``.
    method : {"percentile", "dtype-range"}
    dtype : str, optional
        The scene's dtype, needed by ``dtype-range``.
    low, high : float
        Percentiles for ``percentile``.
    divisors : mapping of str to float, optional
        Divisors per dtype for ``dtype-range`` (a model card's), over :data:`DTYPE_SCALES`.
    source : str
        Name of the scene, for error messages.
    band_axis, band_labels : str, sequence
        The name and values of the scene's leading axis (``time`` and a cube's dates), which
        the warning of bands without a valid pixel names them by.

    Raises
    ------
    InputError
        When no band has a valid pixel, or ``dtype-range`` has no divisor for ``dtype``.

    Warns
    -----
    GeosrWarning
        Once, naming the bands without a valid pixel in ``sample`` (cloudy
        dates of a cube, a band outside the swath): they get the dtype's fixed
        range and their output is nodata wherever their input is; the other
        bands go on.
    """
    if method == "dtype-range":
        scale = dtype_divisor(str(dtype), divisors or {}, source)
        return Normalisation((0.0,) * sample.shape[0], (scale,) * sample.shape[0], method)
    if method != "percentile":
        raise InputError(f"unknown normalisation method {method!r}: use 'percentile' or 'dtype-range'")
    if not valid.any():
        raise InputError(
            f"{source}: no band has a valid pixel (everything is nodata or NaN); "
            "check the nodata value (gdalinfo) or choose other bands"
        )
    offsets, scales, empty = [], [], []
    for band in range(sample.shape[0]):
        values = sample[band][valid[band]]
        if values.size == 0:
            empty.append(band + 1)
            offsets.append(0.0)
            scales.append(DTYPE_SCALES.get(str(dtype), 1.0))
            continue
        lo, hi = percentiles(values, (low, high))
        # A constant band still needs a usable scale: fall back to the value's magnitude.
        span = hi - lo if hi > lo else max(abs(float(hi)), 1.0)
        offsets.append(float(lo))
        scales.append(float(span))
    warn_empty_bands(valid, source, band_axis, band_labels)
    return Normalisation(tuple(offsets), tuple(scales), method)


def warn_empty_bands(
    valid: np.ndarray, source: str, band_axis: str = "band", band_labels: Sequence[Any] = ()
) -> None:
    """Warn once, naming the bands of ``valid`` (a sample's ``(C, h, w)`` valid-pixel mask) that
    hold no valid pixel, where another holds one (with none anywhere the run refuses the scene).

    ``band_axis``, ``band_labels``: the name and values of the scene's leading axis (``time``
    and a cube's dates), which the line names those bands by.
    """
    empty = [band + 1 for band in range(valid.shape[0]) if not valid[band].any()]
    if not empty or len(empty) == valid.shape[0]:
        return
    # One line for them all: a cube can have many cloudy dates.
    subject = f"band{'s' if len(empty) > 1 else ''} {', '.join(map(str, empty))}"
    if band_axis != "band" and len(band_labels) == valid.shape[0]:
        # A cube's dates by their dates: 'bands 2, 3, 5' left them to be counted along its axis.
        named = ", ".join(_label_text(band_labels[band - 1]) for band in empty)
        subject = f"{band_axis} {named} ({subject})"
    # 'band 2 has no valid pixel ...; their output' spoke of one band as of several.
    has, its = ("has", "its") if len(empty) == 1 else ("have", "their")
    warn(
        f"{source}: {subject} {has} no valid pixel (everything is nodata or NaN); "
        f"{its} output is nodata wherever {its} input is"
    )


def dtype_divisor(dtype: str, divisors: Mapping[str, float], source: str = "input") -> float:
    """``dtype-range``'s divisor for pixels of ``dtype``: the card's (``divisors``), else
    :data:`DTYPE_SCALES`'.

    Raises
    ------
    InputError
        For a dtype that neither gives (int8, uint32, int32 but for a card's divisor): they were
        divided by 1, and an int32 scene of values in the millions went into a model trained
        on values near 0..1, with no word of it.
    """
    known = {**DTYPE_SCALES, **divisors}
    if dtype in known:
        return known[dtype]
    given = ", ".join(f"{name} by {value:g}" for name, value in known.items())
    raise InputError(
        f"{source} is {dtype}, for which the model's dtype-range normalisation has no divisor (it "
        f'divides {given}): add "{dtype}": <divisor> to its card\'s normalisation, or convert the '
        "input to one of those (gdal_translate -ot)"
    )


def _label_text(label: Any) -> str:
    """A label of a cube's axis as a line shows it: a date without its midnight or nanoseconds."""
    if isinstance(label, np.datetime64):
        text = str(np.datetime_as_string(label, unit="s"))
        return text.removesuffix("T00:00:00")
    return str(label)


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> tuple[float, ...]:
    """``np.percentile(values, qs)`` (linear), bit for bit, in O(n) for 8- and 16-bit integers.

    Sorting a 1-Mpx sample took 19 ms per band; counting its values 2 ms.  The
    order statistics come from the cumulative counts, and the interpolation
    repeats numpy's own arithmetic (index ``(n - 1) q``, its ``_lerp``), so the
    normalisation, and every output pixel, is what ``np.percentile`` gives.
    """
    if values.dtype.kind not in "iu" or values.dtype.itemsize > 2:
        return tuple(float(v) for v in np.percentile(values.astype(np.float64), qs))
    base = int(values.min())
    cumulative = np.cumsum(np.bincount((values.astype(np.int64) - base).ravel()))
    last = values.size - 1

    def order_statistic(k: int) -> float:
        return float(np.searchsorted(cumulative, k, side="right") + base)

    out = []
    for q in np.asarray(qs, dtype=np.float64) / 100:
        index = last * q
        below = np.floor(index)
        t = index - below
        a = order_statistic(int(min(max(below, 0), last)))
        b = order_statistic(int(min(below + 1, last)))
        # numpy's _lerp: from the nearer end, so that t = 1 gives b exactly.
        out.append(float(b - (b - a) * (1 - t)) if t >= 0.5 else float(a + (b - a) * t))
    return tuple(out)


def normalisation_from_card(card_normalisation: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments for :func:`scene_normalisation` from a model card's ``normalisation``."""
    method = str(card_normalisation.get("method", "percentile"))
    kwargs: dict[str, Any] = {"method": method}
    if method == "percentile":
        kwargs["low"] = float(card_normalisation.get("low", 0.1))
        kwargs["high"] = float(card_normalisation.get("high", 99.9))
    elif method == "dtype-range":
        # The card's divisors are what its weights were trained with (DN / 10000 for
        # reflectance, say): the defaults stand only for the dtypes it leaves out.
        kwargs["divisors"] = {k: float(v) for k, v in card_normalisation.items() if k in DIVISOR_DTYPES}
    return kwargs


def fill_invalid(x: np.ndarray, valid: np.ndarray, *, radius: int = FILL_RADIUS) -> np.ndarray:
    """Replace invalid pixels by the mean of valid neighbours within ``radius``.

    Pixels with no valid neighbour within ``radius`` get 0.5 (mid-range of a
    normalised scene).  Works on ``(..., h, w)`` arrays band by band; the result
    at a pixel depends only on pixels within ``radius``, which is what keeps
    tiled inference identical to whole-image inference.
    """
    if valid.all():
        return x
    # Imported here: scipy.ndimage takes 0.14 s to import, which a scene without
    # nodata (and every `geosr` command) need not pay.
    from scipy import ndimage

    out = np.array(x, dtype=np.float32, copy=True)
    size = (1,) * (x.ndim - 2) + (2 * radius + 1, 2 * radius + 1)
    weight = valid.astype(np.float32)
    # Box sums of valid values and of valid counts; "constant" keeps it local at borders.
    sums = ndimage.uniform_filter(np.where(valid, out, 0.0), size=size, mode="constant")
    counts = ndimage.uniform_filter(weight, size=size, mode="constant")
    filled = np.where(counts > 1e-6, sums / np.maximum(counts, 1e-6), 0.5)
    out[~valid] = filled[~valid]
    return out
