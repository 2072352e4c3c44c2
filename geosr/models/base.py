"""What every geosr super-resolution model exposes, and the checks they share.

A model maps ``(B, T, C, h, w)`` -- ``T >= 1`` co-registered frames, the
reference frame first, ``C`` bands, values already normalised to roughly
``[0, 1]`` -- to ``(B, C, s*h, s*w)`` in float32.  Besides ``forward`` it reports
what the tile planner and the provenance tags need: its ``scale``, its
``receptive_field`` (the halo a tile needs, in low-resolution pixels), its
``name`` and its model ``card``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, fields
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from geosr.errors import ModelError, in_words

if TYPE_CHECKING:
    from geosr.models.card import ModelCard

MIN_SCALE = 2
MAX_SCALE = 8


def check_scale(scale: object, *, model: str) -> int:
    """Return ``scale`` if it is an integer in ``[MIN_SCALE, MAX_SCALE]``, else raise.

    Raises
    ------
    ModelError
        Naming the value given and the accepted range.
    """
    # bool is an int subclass: ``scale=True`` is a bug, not a scale of 1.
    if isinstance(scale, bool) or not isinstance(scale, int):
        raise ModelError(
            f"scale {scale!r} ({type(scale).__name__}) is not supported by model {model}: "
            f"use an integer {MIN_SCALE}..{MAX_SCALE}"
        )
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise ModelError(
            f"scale {scale} is not supported by model {model}: use an integer {MIN_SCALE}..{MAX_SCALE}"
        )
    return scale


def check_input(x: torch.Tensor, *, model: str) -> None:
    """Refuse anything but a non-empty floating ``(B, T, C, h, w)`` tensor."""
    if not isinstance(x, torch.Tensor):
        raise ModelError(f"model {model} expects a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 5:
        raise ModelError(
            f"model {model} expects a 5-D input (B, T, C, h, w), got shape {tuple(x.shape)} "
            f"({x.ndim}-D); add a time axis with x.unsqueeze(1) for a single frame"
        )
    if not x.is_floating_point():
        raise ModelError(
            f"model {model} expects a floating-point input normalised to about [0, 1], got dtype {x.dtype}"
        )
    if 0 in x.shape:
        raise ModelError(f"model {model} got an empty input of shape {tuple(x.shape)}")


def output_dtype(module: nn.Module) -> torch.dtype:
    """float32, or float64 for a model converted with ``.double()`` (exactness tests)."""
    for p in module.parameters():
        if p.dtype == torch.float64:
            return torch.float64
        break
    return torch.float32


def pixel_shuffle(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``F.pixel_shuffle``: ``(N, C*s*s, h, w)`` -> ``(N, C, s*h, s*w)``, the same values.

    Written as a view, a permute and one copy because torch's CPU kernel is
    slower than that copy: 1.5-2x for the fp32 and bf16 phases of a 542 x 542
    tile on the AVX-512 test machine, 6 % of cnnrnn-fast's single-thread forward
    time.  Pure data movement, so the output is bit-identical (tested).
    """
    n, channels, h, w = x.shape
    bands = channels // (scale * scale)
    blocks = x.view(n, bands, scale, scale, h, w).permute(0, 1, 4, 2, 5, 3)
    return blocks.reshape(n, bands, h * scale, w * scale)


class SRModel(nn.Module):
    """Base class of geosr models: a plain module plus the attributes callers read.

    Attributes
    ----------
    scale : int
        Upscaling factor ``s``.
    receptive_field : int
        Low-resolution pixels on each side that one output pixel may depend on
        for a single frame: the minimum tile halo for seam-free tiling.
    name : str
        Registry name (``"cnnrnn-fast"``, ``"bicubic"``...) or the card's name.
    card : ModelCard
        What the weights are and expect.  A freshly built model carries an
        "untrained" card; :func:`geosr.models.load_model` replaces it with the
        card of the weights it loads.
    """

    scale: int
    receptive_field: int
    name: str
    card: ModelCard
    fuses_frames: bool = True
    """Whether frames after the first change the output (False: frame 0 alone is read)."""
    fuse_convolutions: bool = False
    """Whether CPU inference may run convolutions with their activation or sum fused in
    (:mod:`geosr.models.fused`): set by :class:`geosr.predictor.Predictor`, which owns the
    model's inference; a model called directly runs its plain layers."""

    def __init__(self, scale: int, *, name: str) -> None:
        super().__init__()
        self.scale = check_scale(scale, model=name)
        self.name = name

    def receptive_radius(self, frames: int) -> int:
        """Receptive field, in low-resolution pixels on each side, for ``frames`` frames."""
        raise NotImplementedError

    @property
    def per_band(self) -> bool:
        """True when every band is super-resolved on its own (the band-agnostic models fold
        the bands into the batch): a caller may then split a call's bands into several calls
        without changing any output.  False for a model trained on a band layout."""
        return True

    @property
    def projects(self) -> bool:
        """True when every ``s x s`` block of the output averages to its frame-0 input pixel
        (CNN-RNN's radiometric projection): :func:`geosr.kernel.finish_tile` then redoes the
        projection in float64 for the pixels of dtypes float32 does not hold."""
        return False


_Config = TypeVar("_Config")


def config_from_dict(config: type[_Config], data: Mapping[str, Any], architecture: str) -> _Config:
    """The ``config`` dataclass (an architecture's) built from a card's or a recipe's ``config``.

    Keys it has no field for are refused, not ignored, naming those it takes (EDSR's line
    named the unknown key alone, where CNN-RNN's listed the keys), and so is a field without a
    default left out (EDSR's ``scale`` was a TypeError traceback).

    Raises
    ------
    ModelError
        ``unknown EDSR config keys depth; expected some of blocks, features, scale``, or
        ``EDSR config has no 'scale'``.
    """
    known = fields(config)  # type: ignore[arg-type]  # an architecture's config is a dataclass
    unknown = sorted(set(data) - {f.name for f in known})
    if unknown:
        raise ModelError(
            f"unknown {architecture} config keys {in_words(unknown)}; "
            f"expected some of {', '.join(sorted(f.name for f in known))}"
        )
    required = (f.name for f in known if f.default is MISSING and f.default_factory is MISSING)
    missing = [repr(name) for name in required if name not in data]
    if missing:
        raise ModelError(f"{architecture} config has no {in_words(missing)}")
    return config(**data)


def check_int_at_least(value: object, name: str, minimum: int) -> int:
    """Return ``value`` if it is an integer of at least ``minimum``, else raise.

    Parameters
    ----------
    value : object
        What was given.
    name : str
        What it is, as the message names it (``frames``, ``EDSRConfig.blocks``).
    minimum : int
        The smallest value accepted.

    Raises
    ------
    ModelError
        ``value`` is a bool (an int subclass, but a bug, not a count), not an int, or too small.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_frames(frames: object) -> int:
    """Return ``frames`` if it is a positive integer, else raise :class:`ModelError`."""
    return check_int_at_least(frames, "frames", 1)
