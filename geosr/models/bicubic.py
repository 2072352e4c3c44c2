"""Bicubic interpolation of the reference frame: the non-learned baseline.

It is also the global skip path of :class:`geosr.models.cnnrnn.CNNRNN`, so the
two share :func:`bicubic_upsample`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812  (the torch convention)

from geosr.models.base import SRModel, check_frames, check_input, output_dtype
from geosr.models.card import ModelCard

BICUBIC_RADIUS = 2
"""LR pixels on each side a bicubic output pixel reads (4-tap kernel, align_corners=False)."""


def bicubic_upsample(x: torch.Tensor, scale: int, dtype: torch.dtype) -> torch.Tensor:
    """Bicubic ``(N, C, h, w) -> (N, C, s*h, s*w)`` in ``dtype``, with autocast disabled.

    Autocast is switched off so that, when the caller runs the model in bf16,
    the interpolated image (most of the output's magnitude) keeps full precision
    and only the learned residual carries bf16 rounding.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        return F.interpolate(x.to(dtype), scale_factor=scale, mode="bicubic", align_corners=False)


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
