"""Image-quality metrics on numpy arrays, in physical units, with validity masks.

Conventions (the ones ``geosr evaluate`` reports):

- **PSNR range** = 99.9th - 0.1st percentile of the valid reference pixels of
  the band (robust to outliers and meaningful for any dtype or unit);
- **PSNR** = ``10 log10(range^2 / MSE)`` over valid pixels outside a border;
- **SSIM** = Wang et al. 2004 with a Gaussian window (sigma 1.5, 11 taps),
  ``K1 = 0.01``, ``K2 = 0.03``, ``L`` = the PSNR range; the SSIM map is averaged
  over pixels whose whole window is valid and outside the border;
- **LR consistency** = RMSE between the SR image averaged back over ``s x s``
  blocks and the LR input, over the blocks wholly outside the border, as a
  fraction of the PSNR range;
- **scored fraction** = the share of the reference's pixels that PSNR compared
  (valid and outside the border): how much of the image the figures describe.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from geosr.errors import InputError, OptionError

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # radius int(3.5 * 1.5 + 0.5) = 5: an 11-tap window
SSIM_RADIUS = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)


def check_border_count(border: object) -> None:
    """Refuse a ``border`` that is no whole number of pixels, 0 or more.

    ``geosr evaluate --border`` takes no other, but a Python caller's ``border=-1`` was
    taken: the slice ``[-1 : h + 1]`` kept the last row and column alone, and the figures
    of 1 pixel of 4096 were reported as the image's (15.9 dB for 11.8).

    Raises
    ------
    OptionError
        ``border`` is negative, a bool or no integer.
    """
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        # Said in Python's words: the command's --border refuses these values itself.
        raise OptionError(
            f"border={border!r} is not supported: give the HR pixels to leave out at each edge, "
            "a whole number, 0 or more"
        )


def check_border(shape: tuple[int, ...], border: int, source: str = "") -> None:
    """Refuse a ``border`` that is no count of pixels (:func:`check_border_count`) or that
    leaves nothing of an image of ``shape`` (``source`` names it)."""
    check_border_count(border)
    h, w = shape[-2:]
    if 2 * border >= min(h, w):
        where = f"{source}: " if source else ""
        raise InputError(
            # Width x height, as gdalinfo and geosr info give a size: 'its 718 x 790 pixels' was h x w.
            f"{where}a border of {border} px leaves nothing of its {w} x {h} px; "
            "use a smaller --border or a larger image"
        )


def check_scorable(shape: tuple[int, ...], border: int, source: str = "") -> None:
    """:func:`check_border`, and refuse an image of ``shape`` too small for one whole SSIM window.

    Below 11 pixels a side (with a border under the window's radius) no window fits: the
    evaluation ran the model, scored no band and exited 0, with a note that blamed nodata
    spread over the band, of an image without any.
    """
    check_border(shape, border, source)
    h, w = shape[-2:]
    if 2 * max(border, SSIM_RADIUS) >= min(h, w):
        side = 2 * SSIM_RADIUS + 1
        where = f"{source}: " if source else ""
        raise InputError(
            f"{where}its {w} x {h} px hold no whole {side} x {side} SSIM window; "
            f"give a larger image ({side} x {side} pixels at least, cropped to a multiple of --scale)"
        )


def _border_mask(shape: tuple[int, ...], border: int) -> np.ndarray:
    check_border(shape, border)
    mask = np.zeros(shape[-2:], bool)
    h, w = shape[-2:]
    mask[border : h - border, border : w - border] = True
    return mask


def _compared(shape: tuple[int, ...], valid: np.ndarray | None, border: int) -> np.ndarray:
    """Where PSNR compares the images: the valid pixels outside ``border``."""
    mask = _border_mask(shape, border)
    return mask if valid is None else mask & valid


def _span(reference: np.ndarray, valid: np.ndarray | None = None) -> tuple[float, float]:
    """0.1st and 99.9th percentile of the valid pixels of one band."""
    values = reference[valid] if valid is not None else reference.ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise InputError("the reference band has no valid pixel")
    lo, hi = np.percentile(values.astype(np.float64), [0.1, 99.9])
    return float(lo), float(hi)


def psnr_range(reference: np.ndarray, valid: np.ndarray | None = None) -> float:
    """99.9th minus 0.1st percentile of the valid pixels of one band (1 where they are equal)."""
    lo, hi = _span(reference, valid)
    return hi - lo if hi > lo else 1.0


def psnr(
    pred: np.ndarray,
    reference: np.ndarray,
    *,
    data_range: float,
    valid: np.ndarray | None = None,
    border: int = 0,
) -> float:
    """PSNR in dB of one band over valid pixels outside ``border``."""
    mask = _compared(reference.shape, valid, border)
    diff = pred.astype(np.float64)[mask] - reference.astype(np.float64)[mask]
    if diff.size == 0:
        raise InputError("no valid pixel to compare outside the border")
    # 10 log10(range^2 / MSE) with the errors in units of the largest one: range^2 overflowed
    # float64 (an OverflowError traceback) for values of 1e154 and more, as an undeclared
    # float64 fill of 1e300 has, and errors in units of such a range underflow to 0.
    peak = float(np.max(np.abs(diff)))
    if peak == 0:
        return float("inf")
    relative = float(np.mean((diff / peak) ** 2))
    return float(-10.0 * np.log10(relative) - 20.0 * (np.log10(peak) - np.log10(data_range)))


def ssim(
    pred: np.ndarray,
    reference: np.ndarray,
    *,
    data_range: float,
    valid: np.ndarray | None = None,
    border: int = 0,
) -> float:
    """Mean SSIM of one band (see the module docstring)."""
    # In units of the range (SSIM does not change with the units: K1 and K2 are fractions of
    # it), so that squares of values of 1e154 and more do not overflow, as in :func:`psnr`.
    x = pred.astype(np.float64) / data_range
    y = reference.astype(np.float64) / data_range
    ok = np.ones(y.shape, bool) if valid is None else valid.copy()
    ok &= np.isfinite(x) & np.isfinite(y)
    x = np.where(ok, x, 0.0)
    y = np.where(ok, y, 0.0)

    def filt(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(a, SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    c1 = 0.01**2
    c2 = 0.03**2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    smap = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    # Only windows that lie wholly inside the image and on valid pixels count.
    whole = ndimage.minimum_filter(ok, size=2 * SSIM_RADIUS + 1, mode="constant", cval=False)
    mask = whole & _border_mask(y.shape, max(border, SSIM_RADIUS))
    if not mask.any():
        raise InputError("no valid SSIM window outside the border")
    return float(smap[mask].mean())


def lr_consistency(
    sr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    *,
    valid_lr: np.ndarray | None = None,
    border: int = 0,
) -> float:
    """RMSE between ``sr`` block-averaged by ``scale`` and ``lr`` (one band, physical units),
    over the LR pixels whose block lies wholly outside a ``border`` of HR pixels.

    The border was not left out here, as it is from PSNR and SSIM (and as the README says
    of all the metrics): a model's edge effects counted in this figure alone.
    """
    h, w = lr.shape
    down = sr[: h * scale, : w * scale].astype(np.float64).reshape(h, scale, w, scale).mean(axis=(1, 3))
    ok = np.isfinite(down) & np.isfinite(lr)
    edge = -(-border // scale)  # LR pixels a block of which the border touches
    inside = np.zeros((h, w), bool)
    inside[edge : h - edge, edge : w - edge] = True
    ok &= inside
    if valid_lr is not None:
        ok &= valid_lr
    if not ok.any():
        return float("nan")
    return float(np.sqrt(np.mean((down[ok] - lr.astype(np.float64)[ok]) ** 2)))


@dataclass(frozen=True)
class BandMetrics:
    """Metrics of one band of one image."""

    band: int
    psnr: float
    ssim: float
    psnr_bicubic: float
    ssim_bicubic: float
    gain_db: float
    lr_consistency: float
    psnr_range: float
    scored_fraction: float = 0.0
    """Share of the reference's pixels that PSNR compared: the others are nodata, NaN, beyond
    the HR's footprint (a pair) or in the border."""
    note: str = ""
    """Why some metric is not a finite number (and the band left out of the means); empty otherwise."""

    @property
    def scored(self) -> bool:
        """Whether every PSNR/SSIM figure is a finite number, so that the band enters the means."""
        values = (self.psnr, self.ssim, self.psnr_bicubic, self.ssim_bicubic, self.gain_db)
        return all(np.isfinite(values))


def _unscored(band: int, note: str, data_range: float = 0.0) -> BandMetrics:
    """The metrics of a band none of which could be computed: NaN, and ``note`` saying why."""
    nan = float("nan")
    return BandMetrics(band, nan, nan, nan, nan, nan, nan, data_range, note=note)


def _constant_band(band: int, value: float) -> BandMetrics:
    return _unscored(
        band,
        f"the reference band is constant ({value:g} from its 0.1st to its 99.9th percentile): "
        "PSNR and SSIM are undefined without a range of values; not scored, left out of the means",
    )


def _empty_band(band: int) -> BandMetrics:
    return _unscored(
        band,
        "the reference band has no valid pixel (all nodata, NaN or masked, as a cloudy date's): "
        "not scored, left out of the means",
    )


def _nothing_compared(band: int, border: int, data_range: float) -> BandMetrics:
    return _unscored(
        band,
        f"none of the band's valid HR pixels could be compared: they lie within the {border} px border "
        "or where the SR is nodata (beside the LR's nodata, or in the Wald protocol in blocks holding "
        "a nodata HR pixel); not scored, left out of the means (a smaller --border may score it)",
        data_range,
    )


def _infinity_note(psnr_sr: float, psnr_bicubic: float) -> str:
    # MSE 0: the PSNR is rightly infinite, but a mean over it says nothing.
    exact = [name for name, p in (("geosr", psnr_sr), ("bicubic", psnr_bicubic)) if np.isinf(p)]
    if not exact:
        return ""
    return (
        f"{' and '.join(exact)} equal{'s' if len(exact) == 1 else ''} the reference exactly (MSE 0): "
        "PSNR is infinite; left out of the means"
    )


def band_metrics(
    band: int,
    sr: np.ndarray,
    bicubic: np.ndarray,
    hr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    *,
    valid: np.ndarray | None = None,
    border: int = 16,
    hr_valid: np.ndarray | None = None,
) -> BandMetrics:
    """All metrics of one band; ``lr_consistency`` is a fraction of the PSNR range.

    ``valid`` is where the pixels are compared (valid in HR, SR and bicubic alike);
    ``hr_valid`` (``valid`` when None) where the HR is valid, over which the PSNR range
    is taken, as the README says: an HR pixel in a block with a nodata pixel, whose SR
    is nodata, narrowed it (0.63 dB on a Landsat-7 SLC-off band).

    A constant reference band has no PSNR range, and one without a valid pixel, or
    without one to compare, no metric at all: their metrics are NaN and their ``note`` says why
    (:attr:`BandMetrics.scored` is false for them), as ``geosr run`` writes such a
    band as nodata and super-resolves the others.
    """
    hr_valid = valid if hr_valid is None else hr_valid
    reference = hr[hr_valid] if hr_valid is not None else hr
    if not np.isfinite(reference).any():
        # It failed the whole evaluation, naming neither the band nor what to do.
        return _empty_band(band)
    lo, hi = _span(hr, hr_valid)
    if hi <= lo:
        return _constant_band(band, lo)
    rng = hi - lo
    if not _compared(hr.shape, valid, border).any():
        # Valid pixels all in the border failed the whole evaluation ("no valid pixel to compare
        # outside the border", naming no band), and all in nodata blocks read "no valid pixel".
        return _nothing_compared(band, border, rng)
    p = psnr(sr, hr, data_range=rng, valid=valid, border=border)
    pb = psnr(bicubic, hr, data_range=rng, valid=valid, border=border)
    try:
        s, sb = (ssim(x, hr, data_range=rng, valid=valid, border=border) for x in (sr, bicubic))
    except InputError:
        # Nodata speckled over the band leaves no whole window: that failed the whole
        # evaluation, other bands and images too, naming no band.
        s = sb = float("nan")
    return BandMetrics(
        band=band,
        psnr=p,
        ssim=s,
        psnr_bicubic=pb,
        ssim_bicubic=sb,
        # Infinite minus infinite is NaN, not 0: both exact is no gain we can measure.
        gain_db=p - pb,
        lr_consistency=lr_consistency(sr, lr, scale, border=border) / rng,
        psnr_range=rng,
        # PSNR over a corner of the image said nothing of it: a pair whose HR covered a fifth
        # of the LR, or an image mostly nodata or border, read like a whole one.
        scored_fraction=float(_compared(hr.shape, valid, border).mean()),
        note=_infinity_note(p, pb) or (_NO_SSIM_WINDOW if np.isnan(s) else ""),
    )


_NO_SSIM_WINDOW = (
    "no SSIM window (11 x 11 px) of valid pixels lies outside the border, so SSIM is undefined "
    "(nodata spread over the band); not scored, left out of the means"
)
