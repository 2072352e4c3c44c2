"""The EDSR-style calibration baseline: shapes, exact receptive field, bicubic at init, cards."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from geosr.errors import ModelError
from geosr.models import build_model, load_model
from geosr.models.bicubic import bicubic_upsample
from geosr.models.edsr import EDSR, EDSRConfig
from geosr.models.flops import flops_per_lr_pixel
from geosr.models.weights import save_weights
from tests.test_models_cnnrnn import farthest_change


def test_registered_baseline_is_the_issue_calibration_network() -> None:
    model = build_model("edsr-baseline", scale=4)
    assert isinstance(model, EDSR)
    params = sum(p.numel() for p in model.parameters())
    # Issue 3: 32 channels, 16 residual blocks, PixelShuffle x4 tail: 0.31 M parameters,
    # 0.62 MFLOP per low-resolution pixel.
    assert 0.30e6 < params < 0.32e6
    assert 0.60e6 < flops_per_lr_pixel(model) < 0.64e6


@pytest.mark.parametrize(("scale", "frames", "bands"), [(2, 1, 1), (3, 2, 3), (4, 3, 2)])
def test_shapes_and_untrained_equals_bicubic(scale: int, frames: int, bands: int) -> None:
    model = EDSR(EDSRConfig(scale=scale, features=4, blocks=2)).eval()
    x = torch.rand(2, frames, bands, 9, 7)
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, bands, 9 * scale, 7 * scale) and out.dtype == torch.float32
    expected = bicubic_upsample(x[:, 0].reshape(2 * bands, 1, 9, 7), scale, torch.float32)
    torch.testing.assert_close(out, expected.reshape(out.shape), rtol=0, atol=0)


def test_the_untrained_warning_says_bicubic_alone() -> None:
    """An untrained EDSR is bicubic exactly (it has no radiometric projection), but its warning
    said "equals bicubic + radiometric projection", the CNN-RNN's words."""
    from geosr.errors import GeosrWarning

    untrained = r"edsr-baseline x4; it runs untrained, which equals bicubic \("
    with pytest.warns(GeosrWarning, match=untrained) as got:
        load_model("edsr-baseline", bands=1, scale=4)
    assert "projection" not in str(got[0].message)
    with pytest.warns(GeosrWarning, match=r"equals bicubic \+ radiometric projection \(bundled: x2, x4"):
        load_model("cnnrnn-fast", bands=1, scale=3)


def test_receptive_field_is_exact() -> None:
    torch.manual_seed(3)
    model = EDSR(EDSRConfig(scale=2, features=4, blocks=2)).double().eval()
    with torch.no_grad():
        model.tail[0].weight.normal_(0, 0.5)
    radius = model.receptive_field
    assert radius == 7
    size = 2 * radius + 7
    x = torch.rand(1, 1, 1, size, size, dtype=torch.float64)
    assert farthest_change(model, x, 0, size // 2, size // 2) == radius


def test_config_validation() -> None:
    with pytest.raises(ModelError, match="blocks"):
        EDSRConfig(scale=2, blocks=-1)
    # The keys it takes, as CNN-RNN's line lists them: 'unknown EDSR config keys depth' left them to guess.
    with pytest.raises(
        ModelError, match=r"^unknown EDSR config keys depth; expected some of blocks, features, scale$"
    ):
        EDSRConfig.from_dict({"scale": 2, "depth": 3})
    # A TypeError traceback ("missing 1 required positional argument: 'scale'").
    with pytest.raises(ModelError, match=r"^EDSR config has no 'scale'$"):
        EDSRConfig.from_dict({"features": 4})


def test_trained_weights_round_trip(tmp_path: Path) -> None:
    model = build_model("edsr-baseline", scale=2, features=4, blocks=1)
    with torch.no_grad():
        model.tail[0].weight.normal_(0, 0.1)
    card = model.card
    weights, _ = save_weights(model, card, tmp_path / "edsr_x2")
    loaded = load_model(weights, bands=3, scale=2)
    assert isinstance(loaded, EDSR) and loaded.card.architecture == "edsr"
    x = torch.rand(1, 1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model.eval()(x))
