"""Fine-tuning starts from existing weights (TrainConfig.init / geosr train --init)."""

from __future__ import annotations

import pytest
import torch

from geosr.errors import OptionError
from geosr.models import load_model
from geosr.train.config import load_config
from geosr.train.trainer import build_model


def test_init_loads_the_bundled_weights() -> None:
    model = build_model(load_config(None, {"name": "cnnrnn-fast", "scale": 4, "init": "cnnrnn-fast"}))
    bundled = load_model("cnnrnn-fast", bands=1, scale=4).state_dict()
    fresh = build_model(load_config(None, {"name": "cnnrnn-fast", "scale": 4})).state_dict()
    assert all(torch.equal(v, bundled[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, bundled[k]) for k, v in fresh.items())


def test_init_with_another_architecture_is_refused() -> None:
    # The weights bring their architecture (their card); overriding it is a contradiction.
    with pytest.raises(OptionError, match="own architecture"):
        load_config(
            None, {"name": "cnnrnn-fast", "scale": 4, "init": "cnnrnn-fast", "model": {"features": 16}}
        )
