"""Fused CPU convolutions (geosr.models.fused): the eager network's function, taken only where it can be."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from geosr.models import CNNRNN, CNNRNNConfig, SRModel
from geosr.models.edsr import EDSR, EDSRConfig
from geosr.predictor import Predictor, cpu_has_bf16
from tests.test_models_cnnrnn import randomise_tail

FUSED_OP = "mkldnn::_convolution_pointwise"

CONFIGS: list[dict[str, Any]] = [
    {"scale": 4, "features": 8, "encoder_blocks": 2, "refine_steps": 2},
    {"scale": 2, "features": 6, "encoder_blocks": 0, "refine_steps": 0},
    {"scale": 3, "features": 5, "encoder_blocks": 1, "refine_steps": 1, "radiometric_projection": False},
]


def network(frames_seed: int = 0, **config: Any) -> CNNRNN:
    """A small recurrent network with every weight random (its zero-initialised tail too)."""
    torch.manual_seed(frames_seed)
    model = CNNRNN(CNNRNNConfig(**config))
    randomise_tail(model)
    return model.eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]


def frames(shape: tuple[int, ...]) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(1))


def forward(model: SRModel, x: torch.Tensor, *, fuse: bool, dtype: torch.dtype | None = None) -> torch.Tensor:
    model.fuse_convolutions = fuse
    autocast = torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None)
    with torch.inference_mode(), autocast:
        return model(x)


def ops_run(call: Any) -> set[str]:
    """Names of the operators ``call()`` ran, read by torch's profiler."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        call()
    return {event.name for event in prof.events()}


@pytest.mark.parametrize("config", CONFIGS)
@pytest.mark.parametrize("t", [1, 3])
def test_fused_convolutions_compute_the_eager_function_in_fp32(config: dict[str, Any], t: int) -> None:
    model = network(**config)
    x = frames((2, t, 2, 13, 11))
    eager = forward(model, x, fuse=False)
    fused = forward(model, x, fuse=True)
    assert ops_run(lambda: forward(model, x, fuse=True)) >= {FUSED_OP}
    torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_the_edsr_baseline_fuses_as_well(dtype: torch.dtype | None) -> None:
    """The baseline the default model is compared with gets the same CPU path (a fair speed ratio)."""
    if dtype is not None and not cpu_has_bf16():
        pytest.skip("needs a CPU with bf16 kernels")
    torch.manual_seed(0)
    model = EDSR(EDSRConfig(scale=2, features=6, blocks=2)).eval()
    with torch.no_grad():
        model.tail[0].weight.normal_(0.0, 0.1)
    x = frames((2, 1, 3, 12, 10))
    exact = forward(model, x, fuse=False)
    eager = forward(model, x, fuse=False, dtype=dtype)
    fused = forward(model, x, fuse=True, dtype=dtype)
    assert FUSED_OP in ops_run(lambda: forward(model, x, fuse=True, dtype=dtype))
    if dtype is None:
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-5)
    else:
        assert float((fused - exact).abs().mean()) <= 1.1 * float((eager - exact).abs().mean())


@pytest.mark.skipif(not cpu_has_bf16(), reason="needs a CPU with bf16 kernels")
@pytest.mark.parametrize("t", [1, 3])
def test_fused_bf16_is_as_close_to_fp32_as_eager_bf16(t: int) -> None:
    """The fused sums and activations round once, not twice: no further from fp32 than eager bf16."""
    model = network(**CONFIGS[0])
    x = frames((2, t, 1, 40, 40))
    exact = forward(model, x, fuse=False)
    eager_error = (forward(model, x, fuse=False, dtype=torch.bfloat16) - exact).abs()
    fused_error = (forward(model, x, fuse=True, dtype=torch.bfloat16) - exact).abs()
    assert float(fused_error.mean()) <= 1.1 * float(eager_error.mean())
    assert float(fused_error.max()) <= 1.5 * float(eager_error.max())


def test_the_predictor_fuses_and_a_direct_call_does_not() -> None:
    """Fusion belongs to geosr's inference (the Predictor); a model called by hand runs its layers."""
    model = network(**CONFIGS[0])
    x = frames((1, 1, 1, 16, 16))
    with torch.inference_mode():
        assert FUSED_OP not in ops_run(lambda: model(x))
    predictor = Predictor(model, device="cpu", precision="fp32")
    batch = x.numpy()
    ran = ops_run(lambda: predictor(batch))
    assert FUSED_OP in ran
    assert "aten::leaky_relu" not in ran
    model.fuse_convolutions = False
    np.testing.assert_allclose(predictor(batch)[0], model(x).detach().numpy()[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "case",
    ["gradients", "float64", "feed-forward"],
)
def test_fusion_steps_aside_where_it_cannot_run(case: str) -> None:
    """Training (autograd), another dtype and the non-recurrent ablation take the eager layers."""
    model = network(**CONFIGS[1], recurrent=case != "feed-forward")
    model.fuse_convolutions = True
    x = frames((2, 1, 1, 12, 12))
    if case == "gradients":
        ran = ops_run(lambda: model(x).sum().backward())
        assert model.head.weight.grad is not None
    elif case == "float64":
        model = model.double()
        with torch.inference_mode():
            ran = ops_run(lambda: model(x.double()))
    else:
        with torch.inference_mode():
            ran = ops_run(lambda: model(x))
    assert FUSED_OP not in ran
    assert "aten::mkldnn_convolution" in ran or "aten::convolution" in ran
