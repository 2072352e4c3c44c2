"""Convolutions with their activation or residual sum fused in, for inference on a CPU.

A small network spends most of its CPU time outside its convolutions: cnnrnn-fast's
eager bf16 forward on two 542 x 542 tiles (2 threads) spent 35 % of it in oneDNN's
convolutions and the rest in element-wise passes (adds, sigmoid, tanh, leaky ReLU,
products), each a trip of the whole activation through memory.  oneDNN can apply an
activation, or add another tensor, to a convolution's output while it is still in the
cache: torch exposes these kernels as ``torch.ops.mkldnn._convolution_pointwise``,
the operator inductor's freezing emits for the same patterns.  They have no autograd,
so training never takes them, and only a CPU build with oneDNN has them.

Fused and eager calls compute the same function; in bf16 they round differently (the
fused activation or sum is applied to the fp32 accumulator before the one rounding).
"""

from __future__ import annotations

import torch
from torch import nn

_POINTWISE = getattr(torch.ops.mkldnn, "_convolution_pointwise", None)  # absent without oneDNN


def compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a convolution of ``x`` runs in: autocast's CPU dtype when autocast is on, else ``x``'s."""
    if x.device.type == "cpu" and torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu")
    return x.dtype


def available(x: torch.Tensor) -> bool:
    """Whether fused convolutions can take ``x``: a CPU tensor outside autograd and compilation.

    The dtype it would run in must be float32, or bfloat16 on a CPU whose oneDNN has
    bf16 kernels; anything else (a GPU, float64, gradients wanted, ``torch.compile``
    tracing, which fuses by itself) takes the eager path.
    """
    if _POINTWISE is None or x.device.type != "cpu" or torch.is_grad_enabled():
        return False
    if torch.compiler.is_compiling() or not torch.backends.mkldnn.is_available():
        return False
    dtype = compute_dtype(x)
    if dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return dtype == torch.float32


def conv(
    layer: nn.Conv2d,
    x: torch.Tensor,
    *,
    activation: nn.Module | None = None,
    add: torch.Tensor | None = None,
    channels: slice | None = None,
) -> torch.Tensor:
    """``activation(layer(x))`` or ``layer(x) + add`` in one oneDNN call.

    Parameters
    ----------
    layer : nn.Conv2d
        A stride-1, ungrouped, undilated convolution (every geosr network's).
    x : torch.Tensor
        ``(N, C, h, w)`` in the dtype the call runs in (:func:`compute_dtype`);
        channels_last, so that every fused output is too.
    activation : nn.Module, optional
        An ``nn.ReLU`` or ``nn.LeakyReLU`` to apply to the output.
    add : torch.Tensor, optional
        A tensor of the output's shape to add to it; not with an activation
        (oneDNN fuses a sum only with a ReLU after it).
    channels : slice, optional
        The output channels to compute (a slice of the layer's): two halves of
        one layer computed apart give two contiguous tensors, where slicing one
        output gives strided views that element-wise kernels run slowly on.
    """
    if _POINTWISE is None:
        raise RuntimeError("this torch has no oneDNN pointwise convolutions; check fused.available first")
    if activation is not None and add is not None:
        raise ValueError("a fused convolution takes an activation or a sum, not both")
    weight, bias = layer.weight, layer.bias
    if channels is not None:
        weight = weight[channels]
        bias = None if bias is None else bias[channels]
    weight = weight.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    geometry = (list(layer.padding), list(layer.stride), list(layer.dilation), layer.groups)
    if add is not None:
        return _POINTWISE.binary(x, add.to(x.dtype), weight, bias, *geometry, "add", None, None, [], None)
    return _POINTWISE(x, weight, bias, *geometry, *_post_op(activation), None)


def _post_op(activation: nn.Module | None) -> tuple[str, list[float]]:
    """oneDNN's name and scalars for ``activation``."""
    if activation is None:
        return "none", []
    if isinstance(activation, nn.LeakyReLU):
        return "leaky_relu", [activation.negative_slope]
    if isinstance(activation, nn.ReLU):
        return "relu", []
    raise ValueError(f"no fused form of {type(activation).__name__}")
