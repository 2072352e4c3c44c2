"""Training losses on ``(B, C, H, W)`` tensors in normalised units.

- :func:`l1_loss`, :func:`mse_loss`;
- :func:`ssim` / :func:`ssim_loss`: differentiable SSIM (Gaussian window 11,
  sigma 1.5, ``data_range`` 1 by default: the percentile normalisation maps a
  scene's 0.1-99.9 percentile span to 1);
- :func:`shift_tolerant_l1`: the smallest L1 over small sub-pixel translations
  of the prediction (bilinear resampling, border cropped), for cross-sensor
  pairs whose residual misregistration the co-registration cannot remove;
- :class:`PerceptualLoss`: L1 between features of a user-supplied network, see
  :func:`load_feature_extractor` for the accepted files.

:func:`build_loss` assembles a weighted sum from a mapping of names to weights.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812  (the torch convention)
from torch import nn

from geosr.errors import ModelError, OptionError, catch_warnings_serialised, counted, in_words

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return F.l1_loss(pred, target)


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(pred, target)


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).to(dtype=like.dtype, device=like.device)
    return window.expand(channels, 1, size, size).contiguous()


def ssim(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
    reduction: str = "mean",
) -> torch.Tensor:
    """Structural similarity of ``(B, C, H, W)`` images (Wang et al. 2004).

    Valid-mode Gaussian filtering (no padding), constants ``K1 = 0.01``,
    ``K2 = 0.03``.  ``reduction="none"`` returns one value per image and band
    ``(B, C)``.  Identical images give exactly 1.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise OptionError(
            f"ssim needs two (B, C, H, W) tensors of one shape, got {pred.shape} and {target.shape}"
        )
    if min(pred.shape[-2:]) < window:
        raise OptionError(
            f"ssim needs images of at least {window} x {window} pixels, got {tuple(pred.shape[-2:])}"
        )
    pred = pred.float()
    target = target.float()
    c = pred.shape[1]
    w = _gaussian_window(window, sigma, c, pred)
    c1 = (0.01 * data_range) ** 2
    c2 = (0.03 * data_range) ** 2

    def filt(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, groups=c)

    mu_x, mu_y = filt(pred), filt(target)
    sxx = filt(pred * pred) - mu_x * mu_x
    syy = filt(target * target) - mu_y * mu_y
    sxy = filt(pred * target) - mu_x * mu_y
    num = (2 * mu_x * mu_y + c1) * (2 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    smap = num / den
    if reduction == "none":
        return smap.mean(dim=(-2, -1))
    return smap.mean()


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - SSIM``."""
    return 1.0 - ssim(pred, target)


def _translate(x: torch.Tensor, dy: float, dx: float) -> torch.Tensor:
    """Translate ``(B, C, H, W)`` by ``(dy, dx)`` pixels, bilinear, borders replicated."""
    if dy == 0 and dx == 0:
        return x
    b, _, h, w = x.shape
    theta = torch.tensor(
        [[1.0, 0.0, -2.0 * dx / w], [0.0, 1.0, -2.0 * dy / h]], dtype=x.dtype, device=x.device
    ).expand(b, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def shift_tolerant_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    max_shift: float = 1.0,
    steps: int = 5,
) -> torch.Tensor:
    """L1 minimised, per image, over translations of ``pred`` on a grid.

    The candidate shifts are ``steps x steps`` points on ``[-max_shift,
    max_shift]^2`` HR pixels (0 included when ``steps`` is odd); a border of
    ``ceil(max_shift)`` pixels is excluded so that no shift reads outside the
    image.  The minimum is taken per image, then averaged over the batch.
    """
    if steps < 1:
        raise OptionError(f"shift_tolerant_l1 steps must be >= 1, got {steps}")
    offsets = torch.linspace(-max_shift, max_shift, steps).tolist() if steps > 1 else [0.0]
    crop = math.ceil(max_shift)
    tgt = target[..., crop : target.shape[-2] - crop, crop : target.shape[-1] - crop]
    losses = []
    for dy in offsets:
        for dx in offsets:
            moved = _translate(pred, dy, dx)
            moved = moved[..., crop : moved.shape[-2] - crop, crop : moved.shape[-1] - crop]
            losses.append((moved - tgt).abs().mean(dim=(1, 2, 3)))
    return torch.stack(losses, dim=0).min(dim=0).values.mean()


class _VGGFeatures(nn.Module):
    """VGG-style feature stack rebuilt from a torchvision ``features.*`` state dict."""

    def __init__(self, state: Mapping[str, torch.Tensor], layers: Sequence[int]):
        super().__init__()
        conv_idx = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.")})
        if not conv_idx:
            raise ModelError("it has no 'features.<i>.weight' tensors (those of a torchvision VGG)")
        missing = [
            f"features.{i}.{part}"
            for i in conv_idx
            for part in ("weight", "bias")
            if f"features.{i}.{part}" not in state
        ]
        if missing:
            # Else a KeyError traceback at the start of training.
            raise ModelError(f"it lacks {missing[0]}: save every 'features.' tensor of the VGG state dict")
        modules: dict[str, nn.Module] = {}
        for n, i in enumerate(conv_idx):
            weight = state[f"features.{i}.weight"]
            conv = nn.Conv2d(
                weight.shape[1], weight.shape[0], weight.shape[-1], padding=weight.shape[-1] // 2
            )
            with torch.no_grad():
                conv.weight.copy_(weight)
                conv.bias.copy_(state[f"features.{i}.bias"])  # type: ignore[union-attr]
            modules[str(i)] = conv
            modules[str(i + 1)] = nn.ReLU()
            nxt = conv_idx[n + 1] if n + 1 < len(conv_idx) else None
            if nxt is not None and nxt - i == 3:
                modules[str(i + 2)] = nn.MaxPool2d(2)
        self.body = nn.ModuleDict(modules)
        self.order = sorted(int(k) for k in modules)
        self.layers = set(layers) & set(self.order)
        if not self.layers:
            # Else no feature to compare: torch.stack's traceback at the first step.
            raise ModelError(
                f"its {counted(len(conv_idx), 'convolution')} {'ends' if len(conv_idx) == 1 else 'end'} "
                f"at layer {self.order[-1]}, before the compared "
                f"layers {in_words([str(n) for n in sorted(layers)])}: give the features of a deeper VGG "
                "(e.g. VGG16's)"
            )
        self.in_channels = int(state[f"features.{conv_idx[0]}.weight"].shape[1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = []
        last = max(self.layers)
        for i in self.order:
            x = self.body[str(i)](x)
            if i in self.layers:
                feats.append(x)
            if i >= last:
                break
        return feats


def load_feature_extractor(path: str | Path, *, layers: Sequence[int] = (3, 8, 15)) -> nn.Module:
    """Load a frozen feature network for :class:`PerceptualLoss` from a user file.

    Accepted files:

    ``*.safetensors``
        The ``features.*`` tensors of a torchvision VGG (e.g.
        ``safetensors.torch.save_file({k: v for k, v in vgg16().state_dict().items()
        if k.startswith("features.")}, "vgg16.safetensors")``).  The layer stack is
        rebuilt from the indices (conv, ReLU, and max-pool where an index is
        skipped); ``layers`` are the module indices whose outputs are compared
        (3, 8, 15 = relu1_2, relu2_2, relu3_3 of VGG16).  Nothing is unpickled.
    ``*.pt2``
        A :func:`torch.export.save` archive of a module mapping ``(B, 3 or 1, H, W)`` to a
        tensor or a list of tensors, exported in eval mode with dynamic batch, height and
        width (``torch.export.Dim``).
    ``*.pt``, ``*.ts``, ``*.torchscript``
        A TorchScript module, likewise.  torch deprecates TorchScript for ``torch.export``;
        TorchScript runs code from the file: use only files you trust.

    Single-band inputs are repeated to the extractor's channel count.
    """
    p = Path(path)
    if not p.is_file():
        raise ModelError(
            f"feature extractor {p} does not exist: give a .safetensors, .pt2 or TorchScript file"
        )
    if p.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            net: nn.Module = _VGGFeatures(load_file(str(p)), layers)
        except ModelError as exc:  # a ValueError too: before the file's own errors
            raise ModelError(f"feature extractor {p}: {exc}") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"feature extractor {p} is not a valid safetensors file: {exc}") from None
        net.eval()
    elif p.suffix == ".pt2":
        net = _exported(p)  # in the mode it was exported in: eval() raises for it
    elif p.suffix in {".pt", ".ts", ".torchscript"}:
        net = _torchscript(p).eval()
    else:
        raise ModelError(
            f"feature extractor {p}: unknown format {p.suffix!r}; use .safetensors, .pt2 (torch.export) "
            "or .pt (TorchScript)"
        )
    for param in net.parameters():
        param.requires_grad_(False)
    return net


def _exported(path: Path) -> nn.Module:
    """The module of the :func:`torch.export.save` archive at ``path``, on the CPU."""
    try:
        return torch.export.load(str(path)).module()
    except Exception as exc:
        raise ModelError(
            f"{path} is not a torch.export archive ({exc}); save it with torch.export.save"
        ) from exc


def _torchscript(path: Path) -> nn.Module:
    """The TorchScript module at ``path``, on the CPU, without torch's deprecation of the loader.

    torch 2.13 deprecates ``torch.jit.load`` for ``torch.export``: its warning was about
    geosr's call, not the user's, and under ``-W error`` it refused a valid file as "not a
    TorchScript archive".  The file is read all the same while torch can; ``.pt2`` is the way on.
    """
    with catch_warnings_serialised():
        warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", DeprecationWarning)
        try:
            return torch.jit.load(str(path), map_location="cpu")
        except Exception as exc:
            raise ModelError(
                f"{path} is not a TorchScript archive ({exc}); save it with torch.jit.save, or export "
                "the network with torch.export.save to a .pt2 file"
            ) from exc


class PerceptualLoss(nn.Module):
    """L1 distance between the features of a frozen network.

    Inputs in normalised units are fed as they are (``[0, 1]``-like), repeated
    to the network's channel count (``in_channels``, read from a VGG state dict
    or 3 for ``.pt2`` and TorchScript).
    """

    def __init__(self, extractor: nn.Module, in_channels: int | None = None):
        super().__init__()
        self.extractor = extractor
        self.in_channels = in_channels or int(getattr(extractor, "in_channels", 3))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        b, c, h, w = x.shape
        x = x.reshape(b * c, 1, h, w).expand(b * c, self.in_channels, h, w)
        out = self.extractor(x)
        return list(out) if isinstance(out, (list, tuple)) else [out]

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The mean over the network's feature maps of the L1 distance between ``pred``'s and
        ``target``'s (``(B, C, H, W)``); no gradient flows through ``target``."""
        with torch.no_grad():
            ft = self._features(target.float())
        fp = self._features(pred.float())
        return torch.stack([F.l1_loss(a, b) for a, b in zip(fp, ft, strict=True)]).mean()


LOSSES: dict[str, LossFn] = {
    "l1": l1_loss,
    "mse": mse_loss,
    "ssim": ssim_loss,
    "shift_l1": shift_tolerant_l1,
}


def check_loss(weights: Mapping[str, float]) -> None:
    """Refuse (:class:`OptionError`) an unknown term of non-zero weight, or weights that leave no term."""
    known = [*LOSSES, "perceptual"]
    for name, weight in weights.items():
        if weight != 0 and name not in known:
            raise OptionError(f"unknown loss {name!r}; known losses: {', '.join(known)}")
    if all(weight == 0 for weight in weights.values()):
        # Not the weights as a Python dict ("{'l1': 0}"), which is neither a recipe's nor --loss's spelling.
        verb = "is" if len(weights) == 1 else "are"
        zeros = f"{in_words(list(weights))} {verb} 0" if weights else "none given"
        raise OptionError(
            f"the loss has no term with a non-zero weight ({zeros}): give a term a weight above 0"
        )


def build_loss(
    weights: Mapping[str, float],
    *,
    perceptual_net: str | None = None,
    device: str | torch.device = "cpu",
) -> LossFn:
    """A weighted sum of the named losses, e.g. ``{"l1": 1.0, "ssim": 0.1}``.

    Names: ``l1``, ``mse``, ``ssim``, ``shift_l1`` and ``perceptual`` (which
    needs ``perceptual_net``, a file for :func:`load_feature_extractor`).
    """
    check_loss(weights)
    terms: list[tuple[float, LossFn]] = []
    for name, weight in weights.items():
        if weight == 0:
            continue
        if name == "perceptual":
            if not perceptual_net:
                # The command line's name too: "set perceptual_net" left a CLI user to guess.
                raise OptionError(
                    "the perceptual loss needs a feature network: give --perceptual-net FILE "
                    "(perceptual_net in a recipe), a .safetensors VGG, a .pt2 (torch.export) "
                    "or a TorchScript file"
                )
            net = PerceptualLoss(load_feature_extractor(perceptual_net)).to(device)
            terms.append((float(weight), net))
        else:
            terms.append((float(weight), LOSSES[name]))

    def total(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pred = pred.float()
        target = target.float()
        return sum((w * fn(pred, target) for w, fn in terms), torch.zeros((), device=pred.device))

    return total
