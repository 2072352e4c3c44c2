"""Losses: SSIM sanity, shift tolerance, perceptual loss from a safetensors VGG stack."""

from __future__ import annotations

import warnings

import pytest
import torch
from safetensors.torch import save_file

from geosr.errors import ModelError, OptionError
from geosr.train.losses import (
    PerceptualLoss,
    _translate,
    build_loss,
    load_feature_extractor,
    shift_tolerant_l1,
    ssim,
)


def test_ssim_of_identical_images_is_one() -> None:
    x = torch.rand(2, 3, 32, 32)
    assert float(ssim(x, x)) == pytest.approx(1.0, abs=1e-6)


def test_ssim_drops_with_noise_and_is_differentiable() -> None:
    torch.manual_seed(0)
    x = torch.rand(1, 1, 32, 32)
    y = (x + 0.2 * torch.randn_like(x)).requires_grad_(True)
    value = ssim(y, x)
    assert float(value.detach()) < 0.9
    value.backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()


def test_shift_tolerant_l1_forgives_a_subpixel_shift() -> None:
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    base = (torch.sin(yy / 3.0) * torch.cos(xx / 4.0)).expand(2, 1, 48, 48)
    moved = _translate(base, 0.5, -0.5)
    plain = torch.nn.functional.l1_loss(moved[..., 2:-2, 2:-2], base[..., 2:-2, 2:-2])
    tolerant = shift_tolerant_l1(moved, base, max_shift=1.0, steps=5)
    assert float(tolerant) < 0.2 * float(plain)


def test_build_loss_weights_and_unknown_names() -> None:
    x, y = torch.zeros(1, 1, 16, 16), torch.ones(1, 1, 16, 16)
    fn = build_loss({"l1": 2.0, "mse": 1.0})
    assert float(fn(x, y)) == pytest.approx(3.0)
    with pytest.raises(OptionError, match="unknown loss"):
        build_loss({"l3": 1.0})
    with pytest.raises(OptionError, match=r"give --perceptual-net FILE \(perceptual_net in a recipe\)"):
        build_loss({"perceptual": 1.0})


def test_perceptual_loss_from_vgg_like_safetensors(tmp_path) -> None:
    torch.manual_seed(0)
    state = {
        "features.0.weight": torch.randn(4, 3, 3, 3),
        "features.0.bias": torch.zeros(4),
        "features.2.weight": torch.randn(4, 4, 3, 3),
        "features.2.bias": torch.zeros(4),
        "features.5.weight": torch.randn(8, 4, 3, 3),
        "features.5.bias": torch.zeros(8),
    }
    path = tmp_path / "vgg.safetensors"
    save_file(state, str(path))
    net = load_feature_extractor(path, layers=(3, 6))
    loss = PerceptualLoss(net)
    x = torch.rand(2, 1, 16, 16)
    assert float(loss(x, x)) == 0.0
    y = x.clone().requires_grad_(True)
    value = loss(y + 0.1 * torch.randn_like(x), x)
    value.backward()
    assert float(value.detach()) > 0 and y.grad is not None
    fn = build_loss({"l1": 1.0, "perceptual": 0.1}, perceptual_net=str(path))
    assert float(fn(x, x)) == 0.0


def test_feature_extractor_refuses_unknown_files(tmp_path) -> None:
    bad = tmp_path / "net.pkl"
    bad.write_bytes(b"x")
    with pytest.raises(ModelError, match="unknown format"):
        load_feature_extractor(bad)
    with pytest.raises(ModelError, match="does not exist"):
        load_feature_extractor(tmp_path / "missing.safetensors")


def test_feature_extractor_refuses_bad_safetensors_naming_the_file(tmp_path) -> None:
    """Not safetensors, a missing bias, too shallow a stack: one ModelError naming the file each
    (they were SafetensorError, KeyError and torch.stack tracebacks at the start of training)."""
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors")
    no_bias = tmp_path / "no_bias.safetensors"
    save_file({"features.0.weight": torch.randn(4, 3, 3, 3)}, str(no_bias))
    shallow = tmp_path / "shallow.safetensors"
    save_file({"features.0.weight": torch.randn(4, 3, 3, 3), "features.0.bias": torch.zeros(4)}, str(shallow))
    for path, what in [(junk, "not a valid safetensors"), (no_bias, "features.0.bias"), (shallow, "deeper")]:
        with pytest.raises(ModelError, match=what) as info:
            load_feature_extractor(path)
        assert str(path) in str(info.value)


class _TwoFeatures(torch.nn.Module):
    """A user's feature network: two feature maps of a ``(B, 3, H, W)`` batch."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        y = self.conv(x)
        return [y, torch.relu(y)]


def _loss_of_a_batch(net: torch.nn.Module) -> None:
    """The perceptual loss of ``net`` on two single-band chips of another size than the export's
    is finite and reaches the prediction, and ``net`` itself stays frozen."""
    pred = torch.rand(2, 1, 24, 40, requires_grad=True)
    loss = PerceptualLoss(net)(pred, torch.rand(2, 1, 24, 40))
    loss.backward()
    assert torch.isfinite(loss) and pred.grad is not None and pred.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in net.parameters())


def test_a_torchscript_feature_net_loads_without_torchs_deprecation_of_the_loader(tmp_path) -> None:
    """torch 2.13 deprecates torch.jit.load: its DeprecationWarning, about geosr's call, reached
    the user, and under -W error a valid file was refused as "not a TorchScript archive"."""
    path = tmp_path / "features.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the test's own torch.jit.script
        torch.jit.script(_TwoFeatures()).save(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = load_feature_extractor(path)
    _loss_of_a_batch(net)


def test_a_torch_export_feature_net_is_read(tmp_path) -> None:
    """torch.export, which torch names in place of TorchScript, gives .pt2 archives: they were
    refused as of an unknown format, leaving only the deprecated TorchScript."""
    size = {0: torch.export.Dim("batch"), 2: torch.export.Dim("height"), 3: torch.export.Dim("width")}
    exported = torch.export.export(_TwoFeatures().eval(), (torch.rand(2, 3, 32, 32),), dynamic_shapes=(size,))
    path = tmp_path / "features.pt2"
    torch.export.save(exported, str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net = load_feature_extractor(path)
    _loss_of_a_batch(net)


def test_a_broken_pt2_is_refused_naming_the_file(tmp_path) -> None:
    path = tmp_path / "features.pt2"
    path.write_bytes(b"not an archive")
    with pytest.raises(
        ModelError, match=r"features\.pt2 is not a torch\.export archive .*torch\.export\.save"
    ):
        load_feature_extractor(path)
