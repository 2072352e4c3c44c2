"""The training loop on tiny synthetic data: learning, resume, outputs, recipes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from geosr.errors import OptionError
from geosr.models import load_weights
from geosr.train.config import load_config
from geosr.train.trainer import Validator, train

TINY = {"features": 8, "encoder_blocks": 1, "refine_steps": 1}


def _scene(make_raster, name: str, seed: int) -> Path:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((96, 96)), 1.5)
    img = (img - img.min()) / np.ptp(img) * 200 + 20
    return make_raster(name, data=img[None].astype("uint8"))


def _config(tmp_path: Path, train_path: Path, val_path: Path, **over):
    values = {
        "name": "cnnrnn-fast",
        "scale": 2,
        "model": TINY,
        "seed": 3,
        "steps": 6,
        "batch_size": 4,
        "threads": 1,
        "device": "cpu",
        "precision": "fp32",
        "val_every": 3,
        "checkpoint_every": 100,
        "output": str(tmp_path / "run"),
        "optim": {"lr": 3e-3, "warmup": 2},
        "degradation": {"multi_frame_probability": 0.5, "frames": [2, 3]},
        "data": {
            "train": [{"path": str(train_path)}],
            "val": [{"path": str(val_path)}],
            "lr_chip": 8,
            "val_chips": 4,
            "val_lr_chip": 16,
            "val_border": 2,
        },
    }
    values.update(over)
    return load_config(None, values)


@pytest.fixture
def scenes(make_raster) -> tuple[Path, Path]:
    return _scene(make_raster, "train.tif", 0), _scene(make_raster, "val.tif", 1)


def test_a_few_steps_lower_the_loss(tmp_path, scenes) -> None:
    cfg = _config(
        tmp_path,
        *scenes,
        steps=30,
        val_every=30,
        loss={"l1": 1.0, "ssim": 0.1},
        optim={"lr": 5e-3, "warmup": 1, "schedule": "constant"},
    )
    seen: list[float] = []
    result = train(cfg, progress=lambda step, total, logs: seen.append(logs["loss"]))
    assert result.step == 30 and result.weights is not None
    assert seen[-1] < seen[0]
    assert result.metrics["val_psnr"] > result.metrics["val_psnr_bicubic"] - 1.0


def test_resume_gives_bit_identical_weights(tmp_path, scenes) -> None:
    full = train(_config(tmp_path / "a", *scenes))
    stopped = train(_config(tmp_path / "b", *scenes), stop_after=3)
    assert stopped.weights is None and stopped.step == 3
    resumed = train(_config(tmp_path / "b", *scenes), resume=True)
    assert resumed.step == 6
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_outputs_card_and_config(tmp_path, scenes) -> None:
    cfg = _config(tmp_path, *scenes, steps=2, val_every=1)
    result = train(cfg, recipe="pipelines/x.toml")
    run = tmp_path / "run"
    stored = json.loads((run / "config.json").read_text())
    assert stored["scale"] == 2 and stored["model"] == TINY
    assert (run / "checkpoints" / "last.safetensors").is_file()
    _state, card = load_weights(result.weights)
    assert card.normalisation == {"method": "percentile", "low": 0.1, "high": 99.9}
    assert card.bands is None and card.scale == 2
    assert {"val_psnr", "val_psnr_bicubic", "val_gain_db"} <= set(card.metrics)
    assert card.training["recipe"] == "pipelines/x.toml"
    assert card.training["params"] > 0 and card.training["kflop_per_lr_pixel"] > 0


def test_resume_refuses_a_different_config(tmp_path, scenes) -> None:
    train(_config(tmp_path, *scenes), stop_after=2)
    with pytest.raises(OptionError, match="differs"):
        train(_config(tmp_path, *scenes, seed=4), resume=True)


def test_fine_tuning_starts_from_the_given_weights(tmp_path, scenes) -> None:
    first = train(_config(tmp_path / "a", *scenes, steps=3))
    before = load_file(str(first.weights))
    tuned = _config(tmp_path / "b", *scenes, model={}, init=str(first.weights), steps=1)
    from geosr.train.trainer import build_model

    start = build_model(tuned).state_dict()
    assert before.keys() == start.keys()
    assert all(torch.equal(before[k], start[k]) for k in before)
    after = load_file(str(train(tuned).weights))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on


def test_fine_tuning_refuses_a_scale_or_architecture_mismatch(tmp_path, scenes) -> None:
    first = train(_config(tmp_path / "a", *scenes, steps=1))
    with pytest.raises(OptionError, match="x2, the run is x4"):
        train(_config(tmp_path / "b", *scenes, model={}, init=str(first.weights), scale=4))
    with pytest.raises(OptionError, match="no bundled x3 weights"):
        train(_config(tmp_path / "d", *scenes, model={}, init="cnnrnn-best", scale=3))


def test_command_line_overrides_need_no_recipe() -> None:
    # Nested "not given" values must fall back to the defaults, not reach the dataclasses.
    cfg = load_config(None, {"optim": {"lr": None}, "data": {"train": None, "lr_chip": None}})
    assert cfg.optim.lr == load_config().optim.lr
    assert cfg.data.train == () and cfg.data.lr_chip == 32


def test_validator_leaves_out_chips_constant_inside_the_border() -> None:
    """A chip that is flat where PSNR is measured has an unbounded PSNR: it is not validated on."""
    hr = np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)
    hr[1, :, 2:-2, 2:-2] = 0.5  # constant inside the 2-px border, textured on it
    lr = hr.reshape(3, 1, 8, 2, 8, 2).mean(axis=(3, 5))[:, None]  # (N, T=1, C, h, w)
    validator = Validator(lr, hr, scale=2, border=2, device=torch.device("cpu"))
    assert validator.lr.shape == (2, 1, 1, 8, 8)
    np.testing.assert_array_equal(validator.hr.numpy(), hr[[0, 2]])


def test_a_zarr_store_as_training_data_is_named_as_such(tmp_path) -> None:
    """A Zarr store given as training data is refused saying what it is and how to export it,
    not as a folder that "matches no raster"."""
    import xarray as xr

    from geosr.train.config import SceneSource, resolve_sources

    store = tmp_path / "hr.zarr"
    xr.Dataset({"refl": (("y", "x"), np.zeros((8, 8), np.float32))}).to_zarr(store, zarr_format=3)
    with pytest.raises(OptionError, match=r"is a Zarr store, which training does not read.*to_raster"):
        resolve_sources((SceneSource(str(store)),), "training")
