"""The bicubic baseline model."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F  # noqa: N812  (the torch convention)

from geosr.errors import ModelError
from geosr.models import Bicubic
from geosr.models.bicubic import bicubic_upsample


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("bands", [1, 3, 4])
def test_bicubic_equals_interpolate_of_frame_zero(scale: int, bands: int) -> None:
    model = Bicubic(scale)
    x = torch.rand(2, 3, bands, 5, 7)
    expected = F.interpolate(x[:, 0], scale_factor=scale, mode="bicubic", align_corners=False)
    y = model(x)
    assert y.shape == (2, bands, 5 * scale, 7 * scale)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)  # float32 rounding, see below


def test_bicubic_attributes_and_radius() -> None:
    model = Bicubic(4)
    assert model.scale == 4
    assert model.receptive_field == 2
    assert model.receptive_radius(5) == 2
    assert model.card.architecture == "bicubic"
    assert not list(model.parameters())


def test_bicubic_receptive_field_is_exact() -> None:
    model = Bicubic(3)
    x = torch.rand(1, 1, 1, 11, 11, dtype=torch.float64)
    bumped = x.clone()
    bumped[0, 0, 0, 5, 5] += 1.0
    diff = (model(bumped) - model(x)).abs()[0, 0] > 0
    rows, cols = torch.nonzero(diff, as_tuple=True)
    dist = torch.maximum((rows // 3 - 5).abs(), (cols // 3 - 5).abs())
    assert int(dist.max()) == model.receptive_field


def test_bicubic_under_bf16_autocast_stays_fp32() -> None:
    x = torch.rand(1, 1, 2, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = Bicubic(2)(x)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, Bicubic(2)(x), rtol=0, atol=0)


@pytest.mark.parametrize("scale", [0, 1, 9, 2.5])
def test_bicubic_validates_scale(scale: object) -> None:
    with pytest.raises(ModelError, match=r"scale .* is not supported by model bicubic"):
        Bicubic(scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [2, 3, 4, 5, 8])
def test_phase_convolution_equals_torch_bicubic(scale: int) -> None:
    """bicubic_upsample is one low-resolution convolution per phase, not torch's gather;
    the same interpolation (a = -0.75, half-pixel centres, replicated edges) within rounding."""
    torch.manual_seed(scale)
    x = torch.rand(2, 3, 13, 9) * 100
    expected = F.interpolate(x.double(), scale_factor=scale, mode="bicubic", align_corners=False)
    torch.testing.assert_close(
        bicubic_upsample(x.double(), scale, torch.float64), expected, rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("draw", [1, 2])
def test_each_test_draws_torch_random_numbers_from_seed_0(draw: int) -> None:
    """torch.rand in a test drew from wherever the tests before it had left torch's global
    generator: a failure of a model test could not be reproduced.  Each test starts at seed 0
    (tests/conftest.py), the second draw here as the first, whatever ran before."""
    expected = torch.rand(3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)
