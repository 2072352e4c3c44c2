"""CNN-RNN: shapes, receptive field (proved by perturbation), projection, precision, validation."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F  # noqa: N812  (the torch convention)
from torch import nn

from geosr.errors import ModelError
from geosr.models import (
    CNNRNN,
    Bicubic,
    CNNRNNConfig,
    SRModel,
    build_model,
    flops_per_lr_pixel,
    radiometric_projection,
)
from geosr.models.base import pixel_shuffle
from geosr.models.bicubic import bicubic_upsample
from geosr.models.cnnrnn import ConvGRUCell, tanh

TINY: dict[str, Any] = {"features": 4, "encoder_blocks": 1, "refine_steps": 1}


def tiny(scale: int = 2, **overrides: object) -> CNNRNN:
    """A tiny model whose last layer is random, so the learned path actually contributes."""
    torch.manual_seed(0)
    model = CNNRNN(CNNRNNConfig(scale=scale, **{**TINY, **overrides}))
    randomise_tail(model)
    return model.eval()


def randomise_tail(model: CNNRNN, std: float = 0.1) -> None:
    tail = model.decoder[2]
    assert isinstance(tail, nn.Conv2d)
    with torch.no_grad():
        tail.weight.normal_(0.0, std)
        if tail.bias is not None:
            tail.bias.normal_(0.0, std)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("frames", [1, 3])
@pytest.mark.parametrize("bands", [1, 3, 4])
def test_shapes(scale: int, frames: int, bands: int) -> None:
    model = tiny(scale)
    x = torch.rand(2, frames, bands, 6, 7)
    with torch.no_grad():
        y = model(x)
    assert y.shape == (2, bands, scale * 6, scale * 7)
    assert y.dtype == torch.float32


def test_bands_are_processed_independently() -> None:
    """Band-agnostic: band 1 of a 3-band input equals that band alone."""
    model = tiny(2)
    x = torch.rand(1, 2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[:, 1:2], model(x[:, :, 1:2]))


def test_multiband_model_requires_its_band_count() -> None:
    model = tiny(2, in_channels=4)
    with torch.no_grad():
        assert model(torch.rand(1, 1, 4, 5, 5)).shape == (1, 4, 10, 10)
    with pytest.raises(ModelError, match=r"built for 4 bands, the input has 3"):
        model(torch.rand(1, 1, 3, 5, 5))


def test_feed_forward_variant_runs() -> None:
    model = tiny(3, recurrent=False)
    assert model.cell is None and len(model.blocks) == 1 + TINY["refine_steps"]
    with torch.no_grad():
        assert model(torch.rand(1, 2, 2, 5, 6)).shape == (1, 2, 15, 18)


# --- receptive field -------------------------------------------------------------


def farthest_change(model: SRModel, x: torch.Tensor, frame: int, py: int, px: int) -> int:
    """Largest LR (Chebyshev) distance from ``(py, px)`` of an output block that changes
    when that one LR pixel of ``frame`` is perturbed; -1 if nothing changes."""
    s = model.scale
    bumped = x.clone()
    bumped[0, frame, 0, py, px] += 1.0
    with torch.no_grad():
        diff = (model(bumped) - model(x)).abs()[0, 0]
    # Any change counts: far pixels are computed from identical inputs, so they are
    # bit-identical unless they truly depend on the perturbed pixel.
    rows, cols = torch.nonzero(diff > 0, as_tuple=True)
    if rows.numel() == 0:
        return -1
    dist = torch.maximum((rows // s - py).abs(), (cols // s - px).abs())
    return int(dist.max())


CASES = [
    # (scale, frames, config overrides)
    (2, 1, {"features": 4, "encoder_blocks": 2, "refine_steps": 2}),  # cnnrnn-fast depth
    (3, 3, {"features": 4, "encoder_blocks": 1, "refine_steps": 1}),
    (4, 2, {"features": 4, "encoder_blocks": 0, "refine_steps": 0}),
    (2, 1, {"features": 4, "encoder_blocks": 1, "refine_steps": 2, "recurrent": False}),
    (3, 1, {"features": 4, "encoder_blocks": 1, "refine_steps": 1, "radiometric_projection": False}),
]


@pytest.mark.parametrize(("scale", "frames", "overrides"), CASES)
def test_receptive_field_is_exact(scale: int, frames: int, overrides: dict[str, object]) -> None:
    """No output farther than the reported radius changes, and the radius is reached."""
    torch.manual_seed(1)
    model = CNNRNN(CNNRNNConfig(scale=scale, **overrides)).double().eval()  # type: ignore[arg-type]
    randomise_tail(model, std=0.5)
    radius = model.receptive_radius(frames)
    assert model.receptive_field == model.receptive_radius(1)
    size = 2 * radius + 7
    x = torch.rand(1, frames, 1, size, size, dtype=torch.float64)
    centre = size // 2
    far = farthest_change(model, x, 0, centre, centre)
    assert far <= radius, f"output changed {far} LR pixels away, reported radius {radius}"
    assert far >= radius - 2, f"radius {radius} overestimated: farthest change at {far}"
    # Later frames sit on shorter paths: they stay inside the same bound.
    assert farthest_change(model, x, frames - 1, centre - 1, centre + 2) <= radius


def test_tile_with_receptive_field_halo_matches_whole_image() -> None:
    """What the tile planner relies on: a core cropped with a halo = receptive field is exact."""
    torch.manual_seed(2)
    model = CNNRNN(CNNRNNConfig(scale=2, **TINY)).double().eval()
    randomise_tail(model, std=0.5)
    r, s = model.receptive_field, model.scale
    x = torch.rand(1, 1, 2, 2 * r + 12, 2 * r + 12, dtype=torch.float64)
    with torch.no_grad():
        whole = model(x)
        core = slice(r + 3, r + 7)
        tile = model(x[..., r + 3 - r : r + 7 + r, r + 3 - r : r + 7 + r])
    hr = slice(core.start * s, core.stop * s)
    torch.testing.assert_close(tile[..., r * s : -r * s, r * s : -r * s], whole[..., hr, hr])


def test_receptive_radius_validates_frames() -> None:
    with pytest.raises(ModelError, match="frames"):
        tiny().receptive_radius(0)


def test_registered_receptive_fields() -> None:
    assert build_model("cnnrnn-fast", scale=4).receptive_field == 12
    assert build_model("cnnrnn-best", scale=4).receptive_field == 20
    assert build_model("bicubic", scale=4).receptive_field == 2


# --- skip path, projection, precision --------------------------------------------


def bicubic(x: torch.Tensor, s: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=s, mode="bicubic", align_corners=False)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_projection_reproduces_input_exactly(scale: int) -> None:
    model = tiny(scale)
    x = torch.rand(2, 3, 3, 6, 5)
    with torch.no_grad():
        y = model(x)
    torch.testing.assert_close(F.avg_pool2d(y, scale), x[:, 0], rtol=0, atol=2e-6)


def test_without_projection_the_means_drift() -> None:
    model = tiny(2, radiometric_projection=False)
    x = torch.rand(1, 1, 1, 6, 6)
    with torch.no_grad():
        y = model(x)
    assert (F.avg_pool2d(y, 2) - x[:, 0]).abs().max() > 1e-3


def test_radiometric_projection_function() -> None:
    torch.manual_seed(3)
    out, ref = torch.rand(2, 3, 12, 9), torch.rand(2, 3, 4, 3)
    projected = radiometric_projection(out, ref, 3)
    torch.testing.assert_close(F.avg_pool2d(projected, 3), ref)
    # Only the block means move: the detail inside each block is kept.
    detail = out - F.avg_pool2d(out, 3).repeat_interleave(3, -2).repeat_interleave(3, -1)
    detail_p = projected - ref.repeat_interleave(3, -2).repeat_interleave(3, -1)
    torch.testing.assert_close(detail, detail_p)


@pytest.mark.parametrize("name", ["cnnrnn-fast", "cnnrnn-best"])
def test_untrained_model_is_bicubic_plus_projection(name: str) -> None:
    model = build_model(name, scale=3).eval()
    x = torch.rand(1, 2, 2, 5, 6)
    ref = x[:, 0]
    # Bands as the model sees them, folded into the batch: on AVX2, oneDNN's kernel for a
    # 2-group convolution rounds differently in the last bit from the 1-channel one.
    bands = ref.reshape(2, 1, 5, 6)
    with torch.no_grad():
        expected = radiometric_projection(bicubic_upsample(bands, 3, torch.float32), bands, 3)
        torch.testing.assert_close(model(x), expected.reshape(1, 2, 15, 18), rtol=0, atol=0)
        # ... which is torch's own bicubic within float rounding
        torch.testing.assert_close(
            model(x), radiometric_projection(bicubic(ref, 3), ref, 3), rtol=0, atol=1e-5
        )


def test_bf16_autocast_output_is_fp32_and_close() -> None:
    model = tiny(2)
    randomise_tail(model, std=0.3)
    x = torch.rand(2, 2, 3, 8, 8)
    with torch.inference_mode():
        exact = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.float32
    residual = exact - radiometric_projection(bicubic(x[:, 0], 2), x[:, 0], 2)
    assert residual.norm() > 0.05 * exact.norm(), "the learned path must matter for this test"
    assert (low - exact).norm() / exact.norm() < 2e-2
    # The projection runs in fp32 even under autocast.
    torch.testing.assert_close(F.avg_pool2d(low, 2), x[:, 0], rtol=0, atol=2e-6)


def test_channels_last_model_gives_same_output() -> None:
    """The predictor converts models to channels_last; results must not change."""
    model = tiny(2)
    x = torch.rand(1, 2, 2, 7, 6)
    with torch.no_grad():
        expected = model(x)
        got = model.to(memory_format=torch.channels_last)(x)  # type: ignore[call-overload]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
def test_pixel_shuffle_is_torchs_bit_for_bit(
    scale: int, dtype: torch.dtype, memory_format: torch.memory_format
) -> None:
    """geosr's faster shuffle moves the same values to the same places as F.pixel_shuffle."""
    x = torch.randn(2, 3 * scale * scale, 5, 7).to(dtype).contiguous(memory_format=memory_format)
    assert torch.equal(pixel_shuffle(x, scale), F.pixel_shuffle(x, scale))


def test_pixel_shuffle_passes_gradients_as_torchs_does() -> None:
    x = torch.randn(1, 8, 3, 4, requires_grad=True)
    weight = torch.randn(1, 2, 6, 8)
    (grad,) = torch.autograd.grad((pixel_shuffle(x, 2) * weight).sum(), x)
    (expected,) = torch.autograd.grad((F.pixel_shuffle(x, 2) * weight).sum(), x)
    assert torch.equal(grad, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gru_first_step_is_the_textbook_update_gate_times_candidate(dtype: torch.dtype) -> None:
    """The first step (h = 0) gives sigmoid(z gates) * tanh(candidate) exactly, also on the
    channels_last tensors the predictor runs, where z is a strided slice of the gates (tanh:
    the module's, which equals torch's within 4e-7, next test)."""
    torch.manual_seed(0)
    cell = ConvGRUCell(4).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    x = torch.randn(2, 4, 9, 8).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
        gates, candidate = cell.project(x)
        got = cell.first((gates, candidate))
    expected = torch.sigmoid(gates[:, :4].contiguous()) * tanh(candidate.contiguous())
    assert got.dtype == dtype
    assert torch.equal(got, expected)


def test_the_grus_tanh_is_torchs_within_4e7_in_fp32_and_torchs_own_in_bf16() -> None:
    """fp32 on a CPU goes through 2 sigmoid(2x) - 1, which is faster there (see tanh); bf16,
    in which the bundled weights were trained and run, keeps torch.tanh bit for bit."""
    x = torch.cat([torch.linspace(-12, 12, 200_001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 40.0, -40.0])])
    assert (tanh(x) - torch.tanh(x)).abs().max().item() <= 4e-7
    assert torch.equal(tanh(x[-2:]), torch.tensor([1.0, -1.0]))
    half = x.to(torch.bfloat16)
    assert torch.equal(tanh(half), torch.tanh(half))


def test_the_grus_fp32_tanh_passes_gradients_as_torchs_does() -> None:
    x = torch.linspace(-5, 5, 101, requires_grad=True)
    (grad,) = torch.autograd.grad(tanh(x).sum(), x)
    (expected,) = torch.autograd.grad(torch.tanh(x).sum(), x)
    assert torch.allclose(grad, expected, atol=1e-6)


# --- validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"scale": 1}, r"scale 1 is not supported.*2\.\.8"),
        ({"scale": 9}, r"scale 9 is not supported"),
        ({"scale": 2.0}, r"scale 2\.0 \(float\)"),
        ({"scale": True}, r"scale True"),
        ({"scale": 2, "features": 0}, r"features must be an integer >= 1, got 0"),
        ({"scale": 2, "encoder_blocks": -1}, r"encoder_blocks .* got -1"),
        ({"scale": 2, "refine_steps": 1.5}, r"refine_steps .* got 1\.5"),
        ({"scale": 2, "in_channels": 0}, r"in_channels"),
        ({"scale": 2, "recurrent": "yes"}, r"recurrent must be true or false"),
    ],
)
def test_config_validation(kwargs: dict[str, object], pattern: str) -> None:
    with pytest.raises(ModelError, match=pattern):
        CNNRNNConfig(**kwargs)  # type: ignore[arg-type]


def test_config_dict_round_trip_and_unknown_keys() -> None:
    config = CNNRNNConfig(scale=3, features=8, recurrent=False)
    assert CNNRNNConfig.from_dict(config.to_dict()) == config
    with pytest.raises(
        ModelError, match=r"unknown CNNRNN config keys width; expected some of encoder_blocks, features, "
    ):
        CNNRNNConfig.from_dict({"scale": 2, "width": 8})


@pytest.mark.parametrize("model", [tiny(2), Bicubic(2)], ids=["cnnrnn", "bicubic"])
def test_forward_validates_input(model: nn.Module) -> None:
    with pytest.raises(ModelError, match=r"5-D input \(B, T, C, h, w\), got shape \(1, 1, 4, 4\)"):
        model(torch.rand(1, 1, 4, 4))
    with pytest.raises(ModelError, match="floating-point"):
        model(torch.ones(1, 1, 1, 4, 4, dtype=torch.int64))
    with pytest.raises(ModelError, match="empty"):
        model(torch.rand(1, 0, 1, 4, 4))


# --- cost -------------------------------------------------------------------------


def test_flops_match_the_architecture() -> None:
    f, e, k, s = 32, 2, 2, 4
    model = build_model("cnnrnn-fast", scale=s)
    encoder = 9 * f + e * 2 * 9 * f * f
    # Each frame's input projection once; the hidden half on every step but the first (h = 0).
    gru_half = 9 * f * (2 * f) + 9 * f * f
    decoder = 9 * f * f + 9 * f * s * s

    def expected(frames: int) -> int:
        return 2 * (frames * (encoder + gru_half) + (frames - 1 + k) * gru_half + decoder)

    assert flops_per_lr_pixel(model) == expected(1)
    assert flops_per_lr_pixel(model, frames=3) == expected(3)
    best = build_model("cnnrnn-best", scale=s)
    assert flops_per_lr_pixel(best) > 3 * flops_per_lr_pixel(model)
    assert flops_per_lr_pixel(Bicubic(s)) == 0
    # Per band: a 4-band model costs the same per band as its convolutions imply.
    multi = CNNRNN(CNNRNNConfig(scale=2, features=4, encoder_blocks=0, refine_steps=0, in_channels=4))
    total = 2 * (9 * 4 * 4 + (9 * 4 * 8 + 9 * 4 * 4) + 9 * 4 * 4 + 9 * 4 * 16)
    assert flops_per_lr_pixel(multi) == total // 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_autocast_matches_cpu_fp32(dtype: torch.dtype) -> None:
    model = tiny(4)
    x = torch.rand(2, 2, 3, 16, 16)
    with torch.inference_mode():
        exact = model(x)
        gpu = model.to("cuda", memory_format=torch.channels_last)  # type: ignore[call-overload]
        with torch.autocast("cuda", dtype=dtype):
            low = gpu(x.cuda())
    assert low.dtype == torch.float32
    assert float((low.cpu() - exact).norm() / exact.norm()) < 2e-2
    torch.testing.assert_close(F.avg_pool2d(low, 4).cpu(), x[:, 0], rtol=0, atol=2e-6)
