"""Bicubic interpolation of the reference frame: the non-learned baseline.

It is also the global skip path of :class:`geosr.models.cnnrnn.CNNRNN`, so the
two share :func:`bicubic_upsample`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812  (the torch convention)

from geosr.models.base import SRModel, check_frames, check_input, output_dtype, pixel_shuffle
from geosr.models.card import ModelCard

BICUBIC_RADIUS = 2
"""LR pixels on each side a bicubic output pixel reads (4-tap kernel, align_corners=False)."""


_CUBIC_A = -0.75
"""The cubic convolution parameter of torch's (and OpenCV's) bicubic; GDAL's cubic uses -0.5."""


def bicubic_upsample(x: torch.Tensor, scale: int, dtype: torch.dtype) -> torch.Tensor:
    """Bicubic ``(N, C, h, w) -> (N, C, s*h, s*w)`` in ``dtype``, with autocast disabled.

    Autocast is switched off so that, when the caller runs the model in bf16,
    the interpolated image (most of the output's magnitude) keeps full precision
    and only the learned residual carries bf16 rounding.
    """
    return pixel_shuffle(bicubic_phases(x, scale, dtype), scale)


def bicubic_phases(x: torch.Tensor, scale: int, dtype: torch.dtype) -> torch.Tensor:
    """The same bicubic, before the pixel shuffle: ``(N, C*s*s, h, w)``, phase ``p*s + q`` of band ``c``
    in channel ``c*s*s + p*s + q`` (output pixel ``(s*i + p, s*j + q)``).

    ``F.interpolate(mode="bicubic", align_corners=False)`` in one small
    convolution: output row ``s*i + p`` reads LR rows ``i-2 .. i+2`` with fixed
    weights per phase ``p``, and edges replicate, as torch's clamped indices do.
    Equal to ``F.interpolate`` within float rounding (tested), and ten times
    faster on a CPU: one 5 x 5 convolution at low resolution instead of a
    gather at high resolution.  Models add their residual and project in this
    layout, then shuffle once.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        n, bands, h, w = x.shape
        # Bands folded into the batch, not convolved as groups: a call then holds as many
        # images as the model sees bands, which is what the predictor counts to keep fp32
        # rounding the same in every batch (geosr.predictor.CPU_CALL_IMAGES).
        x = x.to(dtype).reshape(n * bands, 1, h, w)
        weight = _phase_kernel(scale).to(device=x.device, dtype=dtype)
        phases = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), weight)
        return phases.reshape(n, bands * scale * scale, h, w)


def _phase_kernel(scale: int) -> torch.Tensor:
    """``(s*s, 1, 5, 5)`` float64: the separable bicubic weights of every output phase."""
    # Looked up in a table made at import, not cached on first use: torch.compile
    # traces the models through here, and it warns of (and traces into) a cache
    # wrapper, which --compile printed as a multi-line warning.
    kernel = _PHASE_KERNELS.get(scale)
    return _make_phase_kernel(scale) if kernel is None else kernel


def _make_phase_kernel(scale: int) -> torch.Tensor:
    """The kernel of :func:`_phase_kernel`, computed."""
    taps = torch.zeros(scale, 5, dtype=torch.float64)
    for phase in range(scale):
        # Source coordinate of output pixel s*i + phase, relative to LR pixel i.
        offset = (phase + 0.5) / scale - 0.5
        left = -1 if offset < 0 else 0  # floor of the coordinate, relative to i
        t = offset - left
        for k, distance in enumerate((t + 1, t, 1 - t, 2 - t)):
            taps[phase, left - 1 + k + 2] = _cubic(distance)
    return (taps[:, None, :, None] * taps[None, :, None, :]).reshape(scale * scale, 1, 5, 5)


def _cubic(distance: float) -> float:
    """Keys' cubic convolution kernel at ``distance`` (0..2) with ``a = _CUBIC_A``."""
    a, d = _CUBIC_A, abs(distance)
    if d <= 1:
        return ((a + 2) * d - (a + 3)) * d * d + 1
    return ((a * d - 5 * a) * d + 8 * a) * d - 4 * a


_PHASE_KERNELS = {scale: _make_phase_kernel(scale) for scale in range(1, 9)}
"""The phase kernels of the scales the models take (2..8; 1 for tests of the identity)."""


class Bicubic(SRModel):
    """Bicubic upsampling of frame 0; any number of bands, no parameters.

    Parameters
    ----------
    scale : int
        Upscaling factor, 2..8.

    Notes
    -----
    ``forward`` maps ``(B, T, C, h, w)`` to ``(B, C, s*h, s*w)`` float32; frames
    after the first are ignored.  Borders replicate the edge pixels (torch's
    bicubic), hence ``receptive_field = 2``.
    """

    fuses_frames = False

    def __init__(self, scale: int) -> None:
        super().__init__(scale, name="bicubic")
        self.receptive_field = BICUBIC_RADIUS
        self.card = ModelCard.untrained(
            "bicubic", "bicubic", {"scale": scale}, scale, "not learned: bicubic interpolation"
        )

    def receptive_radius(self, frames: int) -> int:
        """Always 2: only the reference frame is read."""
        check_frames(frames)
        return BICUBIC_RADIUS

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x[:, 0]``; see the class docstring for shapes."""
        check_input(x, model=self.name)
        return bicubic_upsample(x[:, 0], self.scale, output_dtype(self))
