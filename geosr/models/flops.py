"""Arithmetic cost of a model, for the benchmarks: FLOPs per LR pixel per band."""

from __future__ import annotations

import torch
from torch import nn

from geosr.models.base import check_frames

_PROBE = 4
"""Side of the probe input: every convolution runs at LR size, so any size gives the same ratio."""


def flops_per_lr_pixel(model: nn.Module, frames: int = 1) -> int:
    """Floating-point operations (2 x multiply-adds) of all convolutions, per LR pixel per band.

    Counted by running the model once on a tiny probe input and summing, over
    every :class:`torch.nn.Conv2d` call, ``2 * output elements * kernel area *
    input channels / groups``; so recurrent steps are counted as often as they
    run and the count follows ``frames``.  Bias additions, activations, the
    bicubic skip and the projection (a few dozen operations per output pixel)
    are left out: they are negligible beside the convolutions.

    Parameters
    ----------
    model : torch.nn.Module
        A geosr model taking ``(B, T, C, h, w)``.
    frames : int
        ``T``, the number of input frames.

    Returns
    -------
    int
        FLOPs per input pixel and band; ``0`` for a model without convolutions
        (``bicubic``).
    """
    frames = check_frames(frames)
    config = getattr(model, "config", None)
    bands = max(1, getattr(config, "in_channels", 1))
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None else torch.float32
    total = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Conv2d)  # the hook is only registered on Conv2d
        kh, kw = module.kernel_size
        total += 2 * output.numel() * kh * kw * (module.in_channels // module.groups)

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        probe = torch.zeros(1, frames, bands, _PROBE, _PROBE, device=device, dtype=dtype)
        with torch.no_grad():
            model(probe)
    finally:
        for hook in hooks:
            hook.remove()
    return total // (bands * _PROBE * _PROBE)
