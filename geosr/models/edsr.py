"""EDSR-style plain residual CNN: the calibration baseline of the model ablations.

Shapes (``s`` = scale, ``F`` = features)::

    x (B, T, C, h, w) --frame 0, fold bands--> (N, 1, h, w)
      conv3x3 -> F, ``blocks`` x (conv3x3, ReLU, conv3x3, + skip), conv3x3, + long skip
      conv3x3 -> s^2, PixelShuffle(s)
      + bicubic(x[:, 0])           global skip, fp32
    --unfold bands--> (B, C, s*h, s*w) float32

Single-frame and band-agnostic, no recurrence and no radiometric projection:
the "plain EDSR-style CNN" of issue 3's calibration (32 features, 16 blocks,
0.62 MFLOP per LR pixel), trained by the same ``geosr train`` as the CNN-RNN so
that the two differ only in architecture.  As in :mod:`geosr.models.cnnrnn`, the
last convolution starts at zero, so the untrained network is exactly bicubic.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn

from geosr.errors import ModelError
from geosr.models import fused
from geosr.models.base import (
    SRModel,
    check_frames,
    check_input,
    check_int_at_least,
    check_scale,
    config_from_dict,
    output_dtype,
)
from geosr.models.bicubic import BICUBIC_RADIUS, bicubic_upsample
from geosr.models.card import ModelCard


@dataclass(frozen=True)
class EDSRConfig:
    """Architecture of an :class:`EDSR`; stored verbatim in the model card.

    Parameters
    ----------
    scale : int
        Upscaling factor, 2..8.
    features : int
        Channels of every hidden layer.
    blocks : int
        Residual blocks (two 3x3 convolutions each).
    """

    scale: int
    features: int = 32
    blocks: int = 16

    def __post_init__(self) -> None:
        check_scale(self.scale, model="edsr")
        for name, minimum in (("features", 1), ("blocks", 0)):
            check_int_at_least(getattr(self, name), f"EDSRConfig.{name}", minimum)

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EDSRConfig:
        """Build from a card's ``config``; unknown keys are refused, not ignored."""
        return config_from_dict(cls, data, "EDSR")


class _Block(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.act = nn.ReLU()
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.act(self.conv1(x)))

    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in two fused convolutions (:mod:`geosr.models.fused`)."""
        return fused.conv(self.conv2, fused.conv(self.conv1, x, activation=self.act), add=x)


class EDSR(SRModel):
    """Plain residual super-resolution CNN; see the module docstring."""

    fuses_frames = False

    def __init__(self, config: EDSRConfig, *, name: str = "edsr-baseline") -> None:
        if not isinstance(config, EDSRConfig):
            raise ModelError(f"EDSR expects an EDSRConfig, got {type(config).__name__}")
        super().__init__(config.scale, name=name)
        self.config = config
        f, s = config.features, config.scale
        self.head = nn.Conv2d(1, f, 3, padding=1)
        self.body = nn.Sequential(*(_Block(f) for _ in range(config.blocks)), nn.Conv2d(f, f, 3, padding=1))
        tail = nn.Conv2d(f, s * s, 3, padding=1)
        nn.init.zeros_(tail.weight)
        if tail.bias is not None:
            nn.init.zeros_(tail.bias)
        self.tail = nn.Sequential(tail, nn.PixelShuffle(s))
        self.receptive_field = self.receptive_radius(1)
        self.card = ModelCard.untrained(name, "edsr", config.to_dict(), s, "untrained: equals bicubic")

    def receptive_radius(self, frames: int) -> int:
        """Head, two per block, body end, tail: one LR pixel per 3x3 convolution; frames are ignored."""
        check_frames(frames)
        return max(3 + 2 * self.config.blocks, BICUBIC_RADIUS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve ``(B, T, C, h, w)`` (frame 0 only) to ``(B, C, s*h, s*w)`` float32."""
        check_input(x, model=self.name)
        b, _, c, h, w = x.shape
        ref = x[:, 0].reshape(b * c, 1, h, w)
        dtype = output_dtype(self)
        if self.fuse_convolutions and fused.available(ref):
            residual = self._fused_residual(ref).to(dtype)
        else:
            feats = self.head(ref.to(self.head.weight.dtype))
            residual = self.tail(feats + self.body(feats)).to(dtype)
        out = residual + bicubic_upsample(ref, self.scale, dtype)
        return out.reshape(b, c, *out.shape[-2:])

    def _fused_residual(self, ref: torch.Tensor) -> torch.Tensor:
        """``tail(feats + body(feats))`` in fused convolutions, as the CNN-RNN runs on a CPU."""
        frames = ref.to(fused.compute_dtype(ref)).contiguous(memory_format=torch.channels_last)
        feats = fused.conv(self.head, frames)
        state = feats
        *blocks, body_end = self.body
        for block in blocks:
            state = cast(_Block, block).fused_forward(state)
        state = fused.conv(cast(nn.Conv2d, body_end), state, add=feats)
        return cast(torch.Tensor, self.tail(state))
