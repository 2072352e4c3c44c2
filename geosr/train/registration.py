"""Sub-pixel shift and radiometric matching of two images of the same place, on grids that
differ by an integer scale: pure numpy and scipy, no files.

:func:`estimate_shift` measures the residual sub-pixel shift by phase correlation at LR
resolution (the HR is area-averaged by ``s`` first so that both images hold the same
frequencies), refined by an upsampled DFT around the peak (Guizar-Sicairos et al. 2008,
precision ``1 / upsample`` LR pixels).  :func:`undo_shift` resamples the HR by the opposite
shift (cubic spline); the pixels that this would take from beyond the HR's edge or from its
nodata are invalid (NaN).  :func:`histogram_match` maps the HR radiometry onto the LR's, per
band, by quantile mapping estimated between the *area-averaged* HR and the LR (both at LR
resolution, so detail that the LR cannot see does not distort the mapping) and applied to the
full-resolution HR.

Shift convention: ``(dy, dx)`` such that ``moving(y, x) ~ reference(y - dy, x - dx)``;
``moving`` is ``reference`` displaced by ``(dy, dx)`` pixels (down, right).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from geosr.errors import InputError, OptionError
from geosr.train.degrade import area_downsample


def _fill(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if valid is None:
        valid = np.isfinite(x)
    if valid.all():
        return x
    if not valid.any():
        raise InputError("co-registration: an image has no valid pixel")
    return np.where(valid, x, x[valid].mean())


def _fill_nearest(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` with each invalid pixel set to its band's nearest valid value (0 in a band
    with none), for a cubic spline to run through.

    A cubic spline rings at a step: filled with the mean of all bands (3000 beside a band of
    100), a nodata hole threw the valid pixels around it 180 standard deviations off.
    """
    out = np.where(valid, x, 0.0)
    for c in range(x.shape[0]):
        if valid[c].any() and not valid[c].all():
            nearest = ndimage.distance_transform_edt(~valid[c], return_distances=False, return_indices=True)
            out[c] = x[c][tuple(nearest)]
    return out


def _window(shape: tuple[int, int]) -> np.ndarray:
    """Separable Tukey window (alpha 0.25): flat middle, cosine edges, kills FFT edge leakage."""

    def tukey(n: int, alpha: float = 0.25) -> np.ndarray:
        w = np.ones(n)
        edge = max(int(alpha * (n - 1) / 2), 1)
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(edge) / edge))
        w[:edge] = ramp
        w[n - edge :] = ramp[::-1]
        return w

    return np.outer(tukey(shape[0]), tukey(shape[1]))


def _upsampled_correlation(spectrum: np.ndarray, centre: np.ndarray, size: int, factor: int) -> np.ndarray:
    """Inverse DFT of ``spectrum`` on a square grid of step ``1/factor`` around ``centre``."""
    m, n = spectrum.shape
    offs = (np.arange(size) - size // 2) / factor
    ys, xs = centre[0] + offs, centre[1] + offs
    ey = np.exp(2j * np.pi * np.outer(ys, np.fft.fftfreq(m)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(n), xs))
    return np.real(ey @ spectrum @ ex)


def phase_correlation(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    upsample: int = 100,
    valid: np.ndarray | None = None,
    whitening: float = 0.5,
    iterations: int = 1,
) -> tuple[float, float]:
    """Sub-pixel displacement ``(dy, dx)`` of ``moving`` relative to ``reference``.

    Parameters
    ----------
    reference, moving : ndarray, shape (h, w)
        Same shape; NaN or ``valid == False`` pixels are filled with the mean.
    upsample : int
        Refinement factor of the upsampled DFT (precision ``1/upsample`` px).
    valid : ndarray of bool, optional
        Common valid mask.
    whitening : float
        The cross-power spectrum is divided by its magnitude to this power: 1 is
        classical phase correlation, 0 plain cross-correlation.  Full whitening
        lets the noisy high frequencies of smooth images pull the peak towards
        integer shifts (0.3 px read as 0.12 px in the tests); 0.5 keeps the
        peak sharp and insensitive to contrast differences between sensors
        while staying accurate to a few hundredths of a pixel.
    iterations : int
        Re-measure after undoing the estimate (cubic-spline shift of
        ``moving``) this many times in all; removes the pull towards whole
        pixels that the window and aliasing cause.

    Returns
    -------
    (dy, dx) : float
        ``moving(y, x) ~ reference(y - dy, x - dx)``.
    """
    if reference.shape != moving.shape or reference.ndim != 2:
        raise OptionError(
            f"phase_correlation needs two 2-D arrays of one shape, got {reference.shape}, {moving.shape}"
        )
    total = np.zeros(2)
    b0 = _fill(moving, valid)
    for _ in range(max(1, iterations)):
        b = apply_shift(b0, (-total[0], -total[1])).astype(np.float64) if total.any() else b0
        step = np.array(_correlate(reference, b, upsample, valid, whitening))
        total += step
        if np.abs(step).max() < 0.5 / upsample:
            break
    return float(total[0]), float(total[1])


def _correlate(
    reference: np.ndarray, b: np.ndarray, upsample: int, valid: np.ndarray | None, whitening: float
) -> tuple[float, float]:
    win = _window(reference.shape)
    a = _fill(reference, valid)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        # A flat image (water, a saturated or filled band) has nothing to align: its cross-power
        # spectrum is 0, whose whitening divided 0 by 0, and the NaNs read as a shift of -0.75 px,
        # applied and summed over the iterations (-12 HR px at x4). The georeferencing stands.
        return 0.0, 0.0
    a = (a - a.mean()) * win
    b = (b - b.mean()) * win
    cross = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    if whitening > 0:
        cross /= np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max()) ** whitening
    corr = np.real(np.fft.ifft2(cross))
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), np.float64)
    dims = np.array(corr.shape)
    peak = np.where(peak > dims // 2, peak - dims, peak)
    if upsample > 1:
        size = int(np.ceil(upsample * 1.5)) | 1
        fine = _upsampled_correlation(cross, peak, size, upsample)
        iy, ix = np.unravel_index(np.argmax(fine), fine.shape)
        peak = peak + (np.array([iy, ix]) - size // 2) / upsample
    return float(peak[0]), float(peak[1])


def apply_shift(image: np.ndarray, shift: tuple[float, float], *, order: int = 3) -> np.ndarray:
    """Translate ``(..., h, w)`` by ``shift`` pixels (cubic spline, edges replicated)."""
    full = (0.0,) * (image.ndim - 2) + (float(shift[0]), float(shift[1]))
    out = ndimage.shift(np.asarray(image, np.float64), full, order=order, mode="nearest")
    return out.astype(np.float32)


def _inside_after_shift(shape: tuple[int, ...], shift: tuple[float, float]) -> np.ndarray:
    """Pixels of a ``(H, W)`` image shifted by ``-shift`` whose source lies inside the image.

    Undoing ``shift`` reads pixel ``(y, x)`` from ``(y + dy, x + dx)``; where that
    falls beyond the image's outer pixel edge, :func:`apply_shift` replicates the
    edge pixel, which is no HR data: those rows and columns are invalid, not chips.
    """

    def axis(n: int, d: float) -> np.ndarray:
        source = np.arange(n) + d
        return (source >= -0.5) & (source <= n - 0.5)

    return np.outer(axis(shape[0], shift[0]), axis(shape[1], shift[1]))


def undo_shift(hr: np.ndarray, shift: tuple[float, float]) -> np.ndarray:
    """``(C, H, W)`` float ``hr`` (NaN invalid) moved back by ``shift`` (as
    :func:`estimate_shift` measured it), NaN wherever the result draws on invalid pixels or on
    pixels beyond the edge.

    The invalid pixels are filled from their nearest valid neighbour before the cubic spline
    runs (:func:`_fill_nearest`); validity itself moves by linear interpolation, and a pixel
    stays valid only where all of its sources were.
    """
    valid = np.isfinite(hr)
    back = (-shift[0], -shift[1])
    moved = apply_shift(_fill_nearest(hr, valid), back)
    moved_valid = apply_shift(valid.astype(np.float32), back, order=1) > 0.999
    moved_valid &= _inside_after_shift(hr.shape[-2:], shift)
    return np.where(moved_valid, moved, np.nan).astype(np.float32)


def estimate_shift(
    lr: np.ndarray,
    hr: np.ndarray,
    scale: int,
    *,
    lr_valid: np.ndarray | None = None,
    hr_valid: np.ndarray | None = None,
    upsample: int = 100,
    iterations: int = 4,
) -> tuple[float, float]:
    """Residual shift of ``hr`` (on the LR grid x ``scale``) relative to ``lr``, in HR pixels.

    ``lr`` is ``(h, w)`` or ``(C, h, w)`` and ``hr`` ``(H, W)`` or ``(C, H, W)``
    with ``H = h * scale``; several bands are averaged into one image first (the
    displacement is geometric, common to all bands).
    """
    lr2 = np.asarray(lr, np.float64)
    hr2 = np.asarray(hr, np.float64)
    if lr2.ndim == 3:
        lr_valid = None if lr_valid is None else np.asarray(lr_valid.all(axis=0))
        hr_valid = None if hr_valid is None else np.asarray(hr_valid.all(axis=0))
        lr2 = _standardise(lr2).mean(axis=0)
        hr2 = _standardise(hr2).mean(axis=0)
    h, w = lr2.shape
    if hr2.shape != (h * scale, w * scale):
        raise OptionError(f"HR shape {hr2.shape} is not the LR shape {lr2.shape} times {scale}")
    hr_filled = _fill(hr2, hr_valid)
    valid = np.isfinite(lr2) if lr_valid is None else lr_valid & np.isfinite(lr2)
    if hr_valid is not None:
        valid &= area_downsample(hr_valid.astype(np.float64), scale) > 0.999
    # Aliasing and the window bias a single estimate towards whole pixels; re-measuring
    # after undoing the estimate converges on the shift (the residual of a perfectly
    # aligned pair is 0 by symmetry).
    total = np.zeros(2)
    for _ in range(iterations):
        moved = apply_shift(hr_filled, (-total[0], -total[1])) if total.any() else hr_filled
        down = area_downsample(np.asarray(moved, np.float64), scale)
        step = np.array(phase_correlation(lr2, down, upsample=upsample, valid=valid)) * scale
        total += step
        if np.abs(step).max() < 0.5 / upsample * scale:
            break
    return float(total[0]), float(total[1])


def _standardise(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i, band in enumerate(x):
        finite = band[np.isfinite(band)]
        mu, sd = (finite.mean(), finite.std()) if finite.size else (0.0, 1.0)
        out[i] = (band - mu) / (sd if sd > 0 else 1.0)
    return out


def histogram_match(
    hr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    *,
    hr_valid: np.ndarray | None = None,
    lr_valid: np.ndarray | None = None,
    quantiles: int = 1024,
) -> np.ndarray:
    """Map the HR radiometry onto the LR's, per band (``(C, H, W)`` and ``(C, h, w)``).

    The monotone mapping sends quantile ``q`` of the area-averaged HR to
    quantile ``q`` of the LR, both over the pixels where both are valid
    (``quantiles`` levels, linear in between, linear extrapolation beyond the
    extremes with the end slopes), and is applied to every HR pixel.  Returns
    float32.
    """
    hr = np.asarray(hr, np.float64)
    lr = np.asarray(lr, np.float64)
    if hr.ndim == 2:
        return histogram_match(
            hr[None],
            lr[None],
            scale,
            hr_valid=None if hr_valid is None else hr_valid[None],
            lr_valid=None if lr_valid is None else lr_valid[None],
            quantiles=quantiles,
        )[0]
    out = np.empty(hr.shape, np.float32)
    qs = np.linspace(0.0, 1.0, quantiles)
    for c in range(hr.shape[0]):
        hv = np.isfinite(hr[c]) if hr_valid is None else hr_valid[c] & np.isfinite(hr[c])
        lv = np.isfinite(lr[c]) if lr_valid is None else lr_valid[c] & np.isfinite(lr[c])
        down = area_downsample(np.where(hv, hr[c], 0.0), scale)
        # The same pixels on both sides: an HR covering the top half of the LR was mapped onto
        # the whole LR's histogram, 3.5x too bright where the bottom half was brighter.
        common = lv & (area_downsample(hv.astype(np.float64), scale) > 0.999)
        if not common.any():
            raise InputError(f"histogram matching: band {c + 1} has no pixel valid in both the LR and the HR")
        src = np.quantile(down[common], qs)
        ref = np.quantile(lr[c][common], qs)
        # Ties in the source quantiles (flat histograms) would make np.interp ambiguous.
        src, keep = np.unique(src, return_index=True)
        ref = ref[keep]
        mapped = np.interp(hr[c], src, ref)
        if src.size > 1:
            lo_slope = (ref[1] - ref[0]) / (src[1] - src[0])
            hi_slope = (ref[-1] - ref[-2]) / (src[-1] - src[-2])
            mapped = np.where(hr[c] < src[0], ref[0] + (hr[c] - src[0]) * lo_slope, mapped)
            mapped = np.where(hr[c] > src[-1], ref[-1] + (hr[c] - src[-1]) * hi_slope, mapped)
        out[c] = np.where(hv, mapped, np.nan)
    return out
