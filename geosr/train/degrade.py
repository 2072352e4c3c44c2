"""Sensor-like degradation of high-resolution chips into low-resolution frames.

One low-resolution pixel ``i`` (along one axis) integrates the high-resolution
signal over ``[i s, (i + 1) s)`` (exact area averaging, the Wald protocol's
definition of the LR image) convolved with an optional Gaussian optical PSF and
displaced by a sub-pixel shift ``d``.  The weight of high-resolution pixel ``j``
is therefore the integral over ``[j, j + 1)`` of the density of
``box(s) * gauss(sigma)`` centred on ``i s + s / 2 + d``; it has a closed form
(the CDF of a uniform convolved with a Gaussian), so blur, shift and area
downsampling are one separable matrix product per axis, exact for any sub-pixel
shift and with ``sigma = 0`` reducing to the plain block mean.

Choices (all in :class:`DegradationConfig`, documented there):

- the Gaussian PSF is applied to a fraction of the samples only, so that the
  models also learn the pure area-average case that ``geosr evaluate`` (Wald)
  measures; its ``sigma`` is drawn in *LR pixels*: 0.2-0.6 LR px means a
  system MTF at Nyquist of about 0.1-0.5 together with the detector's box,
  the range of Sentinel-2, Landsat and aerial cameras;
- noise is additive Gaussian, drawn per sample, independent per frame;
- quantisation rounds to the scene's own digital-number step (``1 / scale`` of
  the normalisation for integer rasters), which is what an integer LR raster
  has at inference;
- frame 0 of a stack is the reference: it is not shifted, so the target is
  aligned with it; further frames get uniform shifts in ``[-max_shift,
  max_shift]`` LR pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geosr.errors import OptionError

_SQRT_2PI = math.sqrt(2.0 * math.pi)

MAX_FRAMES = 64
"""The most frames a training stack may have.  Each frame is one more sequential ConvGRU step,
whose activations the backward pass holds, and one more degraded copy of every chip: memory
and time grow with it, without end (``frames = [2, 100000]`` took 5 GB in 15 min and had not
finished a step).  Multi-frame data has tens of frames at most (PROBA-V's scenes hold 9 to 35),
and a model trained on 64 already fuses any longer stack ``geosr run`` is given."""


@dataclass(frozen=True)
class DegradationConfig:
    """How self-supervised LR inputs are made from HR chips.

    Attributes
    ----------
    blur_probability : float
        Fraction of samples that get a Gaussian PSF on top of the area average.
    blur_sigma : (float, float)
        Range of the Gaussian PSF's sigma, in LR pixels (uniform).
    noise_sigma : (float, float)
        Range of the additive Gaussian noise sigma, in normalised units (the
        scene's 0.1-99.9 percentile span is 1).
    quantise : bool
        Round to the scene's digital-number step (integer rasters only).
    multi_frame_probability : float
        Fraction of batches that are multi-frame stacks.
    frames : (int, int)
        Range of the frame count ``T`` of a multi-frame batch (inclusive).
    max_shift : float
        Largest sub-pixel shift of a non-reference frame, in LR pixels.
    """

    blur_probability: float = 0.5
    blur_sigma: tuple[float, float] = (0.2, 0.6)
    noise_sigma: tuple[float, float] = (0.0, 0.01)
    quantise: bool = True
    multi_frame_probability: float = 0.0
    frames: tuple[int, int] = (2, 4)
    max_shift: float = 0.5

    def __post_init__(self) -> None:
        for name in ("blur_probability", "multi_frame_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise OptionError(f"degradation.{name} must be in [0, 1], got {value}")
        for name in ("blur_sigma", "noise_sigma"):
            lo, hi = getattr(self, name)
            # nan passed 'lo < 0 or hi < lo', and nan or inf was numpy's traceback as chips were drawn.
            if not (0 <= lo <= hi and math.isfinite(hi)):
                raise OptionError(
                    f"degradation.{name} must be a range of finite numbers 0 <= low <= high, got {[lo, hi]}"
                )
        if not 1 <= self.frames[0] <= self.frames[1] <= MAX_FRAMES:
            raise OptionError(
                f"degradation.frames must be a range 1 <= low <= high <= {MAX_FRAMES}, "
                f"got {list(self.frames)}"
            )
        if not (math.isfinite(self.max_shift) and self.max_shift >= 0):
            raise OptionError(f"degradation.max_shift must be a finite number >= 0, got {self.max_shift}")


WALD = DegradationConfig(blur_probability=0.0, noise_sigma=(0.0, 0.0), quantise=True)
"""Plain area averaging (the Wald protocol), used for validation chips."""


def _g(u: np.ndarray, sigma: float) -> np.ndarray:
    """Antiderivative of the Gaussian CDF ``Phi(u / sigma)`` (``max(u, 0)`` for sigma 0)."""
    if sigma <= 0:
        return np.maximum(u, 0.0)
    # Imported here: scipy.special takes 0.13 s to import, and every `geosr`
    # command loads this module (through geosr.train, when it registers `train`).
    from scipy.special import ndtr

    z = u / sigma
    return u * ndtr(z) + sigma * np.exp(-0.5 * z * z) / _SQRT_2PI


def axis_weights(n_lr: int, scale: int, margin: int, sigma_hr: float, shift_hr: float) -> np.ndarray:
    """Weights ``(n_lr, n_lr * scale + 2 * margin)`` mapping an HR axis onto an LR axis.

    The HR axis carries ``margin`` extra pixels on both sides; LR pixel ``i``
    covers HR pixels ``[margin + i s, margin + (i + 1) s)`` before blur and
    shift.  ``sigma_hr`` and ``shift_hr`` are in HR pixels.  Rows sum to 1.
    """
    n_hr = n_lr * scale + 2 * margin
    centres = margin + scale * (np.arange(n_lr) + 0.5) + shift_hr
    edges = np.arange(n_hr + 1, dtype=np.float64)
    u = edges[None, :] - centres[:, None]
    half = scale / 2.0
    cdf = (_g(u + half, sigma_hr) - _g(u - half, sigma_hr)) / scale
    weights = np.diff(cdf, axis=1)
    return weights / weights.sum(axis=1, keepdims=True)


def margin_for(scale: int, config: DegradationConfig) -> int:
    """HR margin a chip needs around it so that the PSF and shifts stay inside it."""
    blur = config.blur_sigma[1] if config.blur_probability > 0 else 0.0
    shift = config.max_shift if config.multi_frame_probability > 0 else 0.0
    reach = 4.0 * blur * scale + shift * scale + 1.0
    return math.ceil(reach)


def area_downsample(hr: np.ndarray, scale: int) -> np.ndarray:
    """Exact mean over ``scale x scale`` blocks of ``(..., H, W)``; H, W multiples of scale."""
    *lead, h, w = hr.shape
    if h % scale or w % scale:
        raise OptionError(f"shape {(h, w)} is not a multiple of the scale {scale}")
    blocks = hr.reshape(*lead, h // scale, scale, w // scale, scale)
    return blocks.mean(axis=(-3, -1), dtype=np.float64).astype(hr.dtype, copy=False)


def degrade_batch(
    hr: np.ndarray,
    scale: int,
    margin: int,
    rng: np.random.Generator,
    config: DegradationConfig,
    *,
    frames: int = 1,
    quant_step: np.ndarray | None = None,
) -> np.ndarray:
    """Make low-resolution stacks from padded HR chips.

    Parameters
    ----------
    hr : ndarray, shape (B, C, H + 2 margin, W + 2 margin), float32
        Normalised HR chips with ``margin`` context pixels on every side; the
        target is ``hr[..., margin:-margin, margin:-margin]``.
    scale : int
    margin : int
    rng : numpy Generator
        All randomness comes from it (the caller seeds it per step).
    config : DegradationConfig
    frames : int
        ``T``; frame 0 is unshifted (the reference).
    quant_step : ndarray, shape (B,), optional
        Quantisation step per sample in normalised units (0: none).

    Returns
    -------
    ndarray, shape (B, T, C, H / scale, W / scale), float32
    """
    b, c, hp, wp = hr.shape
    h_lr, w_lr = (hp - 2 * margin) // scale, (wp - 2 * margin) // scale
    out = np.empty((b, frames, c, h_lr, w_lr), np.float32)
    hr64 = hr.astype(np.float64, copy=False)
    for i in range(b):
        blur = rng.random() < config.blur_probability
        sigma = rng.uniform(*config.blur_sigma) * scale if blur else 0.0
        noise = rng.uniform(*config.noise_sigma)
        for t in range(frames):
            if t == 0:
                dy = dx = 0.0
            else:
                dy, dx = rng.uniform(-config.max_shift, config.max_shift, 2) * scale
            wy = axis_weights(h_lr, scale, margin, sigma, dy)
            wx = axis_weights(w_lr, scale, margin, sigma, dx)
            lr = np.einsum("ih,chw,jw->cij", wy, hr64[i], wx, optimize=True)
            if noise > 0:
                lr = lr + rng.normal(0.0, noise, lr.shape)
            if config.quantise and quant_step is not None and quant_step[i] > 0:
                lr = np.round(lr / quant_step[i]) * quant_step[i]
            out[i, t] = lr
    return out
