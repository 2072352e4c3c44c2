"""CNN-RNN: a shared conv encoder, a ConvGRU over frames then over itself, a sub-pixel decoder.

Shapes (``s`` = scale, ``F`` = features)::

    x (B, T, C, h, w) --fold bands--> (N, T, Cin, h, w)
      encoder, per frame, shared:  conv3x3 + act, ``encoder_blocks`` x residual block
      ConvGRU, h0 = 0:             one step per frame in time order (t = 0 first),
                                   then ``refine_steps`` steps fed the t = 0 features
      decoder:                     conv3x3 + act, conv3x3 -> Cin*s^2, PixelShuffle(s)
      + bicubic(x[:, 0])           global skip, fp32
      radiometric projection       avg_pool(out, s) == x[:, 0] exactly, fp32
    --unfold bands--> (B, C, s*h, s*w) float32

The last decoder convolution starts at zero, so an untrained network is exactly
its skip path (bicubic + projection): ``geosr run`` is usable before any weights
exist, and training starts from bicubic rather than from noise.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F  # noqa: N812  (the torch convention)
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
    pixel_shuffle,
)
from geosr.models.bicubic import BICUBIC_RADIUS, bicubic_phases
from geosr.models.card import ModelCard

_NEGATIVE_SLOPE = 0.2


@dataclass(frozen=True)
class CNNRNNConfig:
    """Architecture of a :class:`CNNRNN`; stored verbatim in the model card.

    Parameters
    ----------
    scale : int
        Upscaling factor, 2..8.
    features : int
        Channels of every hidden layer.
    encoder_blocks : int
        Residual blocks (two 3x3 convolutions each) after the encoder's first conv.
    refine_steps : int
        ``K``: extra ConvGRU steps on the fused state, weights shared with the
        temporal steps (depth without parameters).
    recurrent : bool
        ``False`` replaces the ConvGRU by plain conv blocks (for ablations):
        frames are averaged after the encoder, then ``1 + refine_steps``
        unshared blocks of two 3x3 convolutions refine the state.
    radiometric_projection : bool
        Correct the output so that its ``s x s`` block means equal the input.
    in_channels : int
        Bands the network sees at once.  ``1`` makes it band-agnostic: any band
        count is processed band by band.
    """

    scale: int
    features: int = 32
    encoder_blocks: int = 2
    refine_steps: int = 2
    recurrent: bool = True
    radiometric_projection: bool = True
    in_channels: int = 1

    def __post_init__(self) -> None:
        check_scale(self.scale, model="cnnrnn")
        check_int_at_least(self.features, "CNNRNNConfig.features", 1)
        check_int_at_least(self.encoder_blocks, "CNNRNNConfig.encoder_blocks", 0)
        check_int_at_least(self.refine_steps, "CNNRNNConfig.refine_steps", 0)
        check_int_at_least(self.in_channels, "CNNRNNConfig.in_channels", 1)
        for flag in ("recurrent", "radiometric_projection"):
            if not isinstance(getattr(self, flag), bool):
                raise ModelError(f"CNNRNNConfig.{flag} must be true or false, got {getattr(self, flag)!r}")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CNNRNNConfig:
        """Build from a card's ``config``; unknown keys are refused, not ignored."""
        return config_from_dict(cls, data, "CNNRNN")


def _conv(cin: int, cout: int, *, bias: bool = True) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=bias)


def _act() -> nn.Module:
    return nn.LeakyReLU(_NEGATIVE_SLOPE)


class ResidualBlock(nn.Module):
    """``x + conv(act(conv(x)))``, 3x3 convolutions, no normalisation.

    Batch norm is left out on purpose: its statistics depend on the batch, which
    would make a tile's output depend on the other tiles it is batched with.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = _conv(features, features)
        self.act = _act()
        self.conv2 = _conv(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``(N, F, h, w)`` plus its residual, the same shape."""
        return x + self.conv2(self.act(self.conv1(x)))

    def fused_forward(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`forward` in two fused convolutions (:mod:`geosr.models.fused`)."""
        return fused.conv(self.conv2, fused.conv(self.conv1, x, activation=self.act), add=x)


def tanh(x: torch.Tensor) -> torch.Tensor:
    """``torch.tanh(x)``, computed as ``2 sigmoid(2x) - 1`` for fp32 tensors on a CPU.

    torch's fp32 tanh on a CPU (Sleef's 1-ULP kernel) took 9x as long as its sigmoid here
    (23.4 against 2.5 ms over 32 x 542^2 values, one AVX-512 thread), and the GRU's three
    tanh were a fifth of cnnrnn-fast's fp32 forward on one thread (1.23 -> 0.99 s for two
    542^2 images; on two threads 0.54 -> 0.49 s, and 5 % on batches of 128^2 tiles); the two
    agree within 4e-7.  Other
    tensors keep ``torch.tanh``: in bf16 the subtraction cancels near 0 (the sigmoid is
    rounded to 8 bits first), and bf16 is what the bundled weights were trained in, so
    their recipes still reproduce them; on a GPU tanh is one memory pass against four.
    """
    if x.dtype != torch.float32 or x.device.type != "cpu":
        return torch.tanh(x)
    return torch.sigmoid(x * 2) * 2 - 1


def inference_tanh(x: torch.Tensor) -> torch.Tensor:
    """:func:`tanh` for the fused CPU path, which never trains: bf16 widened to fp32 in place.

    torch's bf16 tanh on a CPU took 22 ms over 2 x 32 x 542^2 values (2 threads) where
    widening to fp32, an in-place fp32 tanh and narrowing back took 16 ms, with values
    identical to it.  Other dtypes take :func:`tanh`, as the eager path does.
    """
    if x.dtype != torch.bfloat16 or x.device.type != "cpu":
        return tanh(x)
    return x.float().tanh_().to(torch.bfloat16)


class ConvGRUCell(nn.Module):
    """Convolutional GRU: ``h' = (1 - z) * h + z * tanh(Wx * x + Uh * (r * h))``.

    ``z, r = sigmoid(Wg * x + Ug * h)``; all four convolutions are 3x3.  The
    input half (``Wg * x``, ``Wx * x``) is split from the hidden half on purpose:
    the ``K`` refinement steps feed the same input every time, so its half is
    computed once (:meth:`project`) and reused, which halves the cost of a
    refinement step.  This is the textbook ConvGRU, where one convolution over
    ``cat(x, h)`` is the sum of the two halves.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.input_gates = _conv(features, 2 * features)
        self.input_candidate = _conv(features, features)
        self.hidden_gates = _conv(features, 2 * features, bias=False)
        self.hidden_candidate = _conv(features, features, bias=False)

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The input's share of the gates and of the candidate, ``(N, 2F, h, w)`` and ``(N, F, h, w)``."""
        return self.input_gates(x), self.input_candidate(x)

    def first(self, projected: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """The step from ``h = 0``: the hidden convolutions vanish (they have no bias)."""
        gates, candidate = projected
        # Only z is used: with h = 0 the reset gate has nothing to reset.  Yet the
        # sigmoid runs over both gates and z is sliced after: in channels_last a
        # channel slice is strided, and torch's strided sigmoid took 4x as long as
        # the contiguous one over twice the elements (4.5 % of the single-thread
        # forward time of cnnrnn-fast; the values are the same).
        z = torch.sigmoid(gates)[:, : candidate.shape[1]]
        return z * tanh(candidate)

    def forward(self, projected: tuple[torch.Tensor, torch.Tensor], h: torch.Tensor) -> torch.Tensor:
        """The next hidden state from the input's :meth:`project` and ``h`` ``(N, F, h, w)``."""
        gates, candidate = projected
        z, r = torch.sigmoid(gates + self.hidden_gates(h)).chunk(2, dim=1)
        n = tanh(candidate + self.hidden_candidate(r * h))
        # lerp(h, n, z) == (1 - z) * h + z * n in one fused op instead of four:
        # element-wise work is a large share of this model's CPU time.
        return torch.lerp(h, n, z)

    def fused_project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`project` in fused convolutions, the gates as two tensors: ``z``'s and ``r``'s shares."""
        f = x.shape[1]
        return (
            fused.conv(self.input_gates, x, channels=slice(0, f)),
            fused.conv(self.input_gates, x, channels=slice(f, 2 * f)),
            fused.conv(self.input_candidate, x),
        )

    def fused_first(self, projected: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """:meth:`first` from :meth:`fused_project`'s shares."""
        z, _, candidate = projected
        return torch.sigmoid(z) * inference_tanh(candidate)

    def fused_step(
        self, projected: tuple[torch.Tensor, torch.Tensor, torch.Tensor], h: torch.Tensor
    ) -> torch.Tensor:
        """:meth:`forward` from :meth:`fused_project`'s shares, each sum fused into its convolution.

        ``z`` and ``r`` come from two convolutions over halves of the hidden gates' weights:
        two contiguous tensors, where one convolution's output split in two gave strided
        halves that the sigmoid, the product and the lerp ran slowly on.
        """
        z_in, r_in, candidate = projected
        f = h.shape[1]
        z = torch.sigmoid(fused.conv(self.hidden_gates, h, add=z_in, channels=slice(0, f)))
        r = torch.sigmoid(fused.conv(self.hidden_gates, h, add=r_in, channels=slice(f, 2 * f)))
        n = inference_tanh(fused.conv(self.hidden_candidate, r * h, add=candidate))
        return torch.lerp(h, n, z)


class FeedForwardBlock(nn.Module):
    """Non-recurrent stand-in for a GRU step: ``h + conv(act(conv(cat(x, h))))``."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = _conv(2 * features, features)
        self.act = _act()
        self.conv2 = _conv(features, features)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The next state from ``x`` and ``h``, both ``(N, F, h, w)``."""
        return h + self.conv2(self.act(self.conv1(torch.cat([x, h], dim=1))))


def radiometric_projection(out: torch.Tensor, ref: torch.Tensor, scale: int) -> torch.Tensor:
    """Shift each ``s x s`` block of ``out`` so that its mean equals the matching ``ref`` pixel.

    ``out`` is ``(N, C, s*h, s*w)``, ``ref`` is ``(N, C, h, w)``.  This is the
    orthogonal projection onto the images that area-downsample to ``ref``: the
    output stays physically consistent with the measured reflectance.
    """
    phases = F.pixel_unshuffle(out, scale)
    return pixel_shuffle(project_phases(phases, ref, scale), scale)


def project_phases(phases: torch.Tensor, ref: torch.Tensor, scale: int) -> torch.Tensor:
    """:func:`radiometric_projection` before the pixel shuffle, ``phases`` ``(N, C*s*s, h, w)``.

    An output block's ``s*s`` pixels are the ``s*s`` phase channels of one LR
    pixel, so the block mean is a mean over channels: no full-resolution pooling
    and no repeated error image.
    """
    n, _, h, w = phases.shape
    grouped = phases.reshape(n, ref.shape[1], scale * scale, h, w)
    error = grouped.mean(dim=2, keepdim=True) - ref.unsqueeze(2)
    return (grouped - error).reshape(phases.shape)


class CNNRNN(SRModel):
    """Multi-frame super-resolution network; see the module docstring.

    Parameters
    ----------
    config : CNNRNNConfig
        Architecture.
    name : str
        Registry name, for messages and provenance.

    Attributes
    ----------
    receptive_field : int
        LR pixels on each side that an output pixel depends on, for one frame;
        :meth:`receptive_radius` gives it for ``T`` frames.
    """

    def __init__(self, config: CNNRNNConfig, *, name: str = "cnnrnn") -> None:
        if not isinstance(config, CNNRNNConfig):
            raise ModelError(f"CNNRNN expects a CNNRNNConfig, got {type(config).__name__}")
        super().__init__(config.scale, name=name)
        self.config = config
        f, s, cin = config.features, config.scale, config.in_channels
        self.head = _conv(cin, f)
        self.head_act = _act()
        self.encoder = nn.Sequential(*(ResidualBlock(f) for _ in range(config.encoder_blocks)))
        self.cell: ConvGRUCell | None = ConvGRUCell(f) if config.recurrent else None
        blocks = 0 if config.recurrent else 1 + config.refine_steps
        self.blocks = nn.ModuleList(FeedForwardBlock(f) for _ in range(blocks))
        tail = _conv(f, cin * s * s)
        # Zero, not small: the untrained model must equal bicubic + projection exactly.
        nn.init.zeros_(tail.weight)
        if tail.bias is not None:
            nn.init.zeros_(tail.bias)
        self.decoder = nn.Sequential(_conv(f, f), _act(), tail, nn.PixelShuffle(s))
        self.receptive_field = self.receptive_radius(1)
        self.card = ModelCard.untrained(
            name,
            "cnnrnn",
            config.to_dict(),
            config.scale,
            "untrained: the zero-initialised last layer makes the output bicubic + radiometric projection",
        )

    @property
    def per_band(self) -> bool:
        """Bands fold into the batch unless the network was built for a band layout."""
        return self.config.in_channels == 1

    @property
    def projects(self) -> bool:
        """Whether the output is projected onto the input (``radiometric_projection``)."""
        return self.config.radiometric_projection

    def receptive_radius(self, frames: int) -> int:
        """LR pixels on each side an output pixel depends on, for ``frames`` frames.

        Counted from the architecture: every 3x3 convolution on the longest path
        adds one.  The first GRU step reads ``h0 = 0``, so only its input path
        counts (gate conv, + 1); every later step adds its two sequential convs
        (gates, then candidate on ``r * h``).  Frame 0 sits on the longest path:
        it is the first step and feeds every refinement step.  Pixel shuffle and
        the projection stay inside the output pixel's own ``s x s`` block, which
        depends on exactly one LR pixel's neighbourhood; the bicubic skip reads 2.
        """
        frames = check_frames(frames)
        cfg = self.config
        encoder = 1 + 2 * cfg.encoder_blocks
        if cfg.recurrent:
            steps = frames + cfg.refine_steps
            fusion = 1 + 2 * (steps - 1)
        else:
            fusion = 2 * (1 + cfg.refine_steps)
        decoder = 2
        return max(encoder + fusion + decoder, BICUBIC_RADIUS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Super-resolve ``(B, T, C, h, w)`` to ``(B, C, s*h, s*w)`` float32.

        The network body follows the caller's autocast (bf16 on CPUs/GPUs that
        have it); the skip path and the projection always run in fp32, so low
        precision only touches the learned residual.
        """
        check_input(x, model=self.name)
        b, _, c, _, _ = x.shape
        folded = self._fold(x)
        dtype = output_dtype(self)
        residual = self._body(folded).to(dtype)
        with torch.autocast(device_type=x.device.type, enabled=False):
            # Skip and projection in the pixel-shuffle layout (phases at low
            # resolution), then one shuffle: a third of this model's non-conv time.
            ref = folded[:, 0].to(dtype)
            phases = residual + bicubic_phases(ref, self.scale, dtype)
            if self.config.radiometric_projection:
                phases = project_phases(phases, ref, self.scale)
            out = pixel_shuffle(phases, self.scale)
        return out.reshape(b, c, *out.shape[-2:])

    def _fold(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, T, C, h, w)`` -> ``(N, T, in_channels, h, w)``; folds bands into the batch."""
        b, t, c, h, w = x.shape
        cin = self.config.in_channels
        if cin == 1:
            return x.transpose(1, 2).reshape(b * c, t, 1, h, w)
        if c != cin:
            raise ModelError(
                f"model {self.name} was built for {cin} bands, the input has {c} (shape {tuple(x.shape)})"
            )
        return x

    def _body(self, x: torch.Tensor) -> torch.Tensor:
        """The learned residual before the pixel shuffle, ``(N, T, Cin, h, w)`` -> ``(N, Cin*s*s, h, w)``."""
        if self.fuse_convolutions and self.cell is not None and fused.available(x):
            return self._fused_body(x)
        n, t, cin, h, w = x.shape
        frames = x.reshape(n * t, cin, h, w).to(self.head.weight.dtype)
        feats = self.encoder(self.head_act(self.head(frames)))
        feats = feats.reshape(n, t, -1, h, w)
        ref = feats[:, 0]
        if self.cell is not None:
            # All frames' input projections in one batched call (one conv per layer, not T).
            gates, candidate = self.cell.project(feats.reshape(n * t, -1, h, w))
            gates = gates.reshape(n, t, -1, h, w)
            candidate = candidate.reshape(n, t, -1, h, w)
            ref_projection = (gates[:, 0], candidate[:, 0])
            state = self.cell.first(ref_projection)
            for i in range(1, t):
                state = self.cell((gates[:, i], candidate[:, i]), state)
            for _ in range(self.config.refine_steps):
                state = self.cell(ref_projection, state)
        else:
            state = feats.mean(dim=1)
            for block in self.blocks:
                state = block(ref, state)
        out: torch.Tensor = self.decoder[:-1](state)  # the last module is the PixelShuffle
        return out

    def _fused_body(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`_body` of a recurrent network in fused convolutions (:mod:`geosr.models.fused`)."""
        n, t, cin, h, w = x.shape
        frames = x.reshape(n * t, cin, h, w).to(fused.compute_dtype(x))
        # channels_last from the first layer on: every fused output keeps its input's layout.
        frames = frames.contiguous(memory_format=torch.channels_last)
        feats = fused.conv(self.head, frames, activation=self.head_act)
        for block in self.encoder:
            feats = cast(ResidualBlock, block).fused_forward(feats)
        assert self.cell is not None  # _body sends only recurrent networks here
        shares = [share.reshape(n, t, -1, h, w) for share in self.cell.fused_project(feats)]
        ref_projection = (shares[0][:, 0], shares[1][:, 0], shares[2][:, 0])
        state = self.cell.fused_first(ref_projection)
        for i in range(1, t):
            state = self.cell.fused_step((shares[0][:, i], shares[1][:, i], shares[2][:, i]), state)
        for _ in range(self.config.refine_steps):
            state = self.cell.fused_step(ref_projection, state)
        hidden = fused.conv(cast(nn.Conv2d, self.decoder[0]), state, activation=self.decoder[1])
        return fused.conv(cast(nn.Conv2d, self.decoder[2]), hidden)
