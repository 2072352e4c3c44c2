"""Training: self-supervised degradation, paired co-registration, losses, the resumable loop.

This package never imports dask (the parallel training-store builder lives in
``geosr.orchestrate.training_store``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from geosr.train.config import DataConfig, OptimConfig, SceneSource, TrainConfig, load_config
from geosr.train.degrade import DegradationConfig

if TYPE_CHECKING:
    from geosr.train.trainer import TrainResult, train

__all__ = [
    "DataConfig",
    "DegradationConfig",
    "OptimConfig",
    "SceneSource",
    "TrainConfig",
    "TrainResult",
    "load_config",
    "train",
]


def __getattr__(name: str) -> Any:
    # Lazy, so that the `geosr` command (which registers `geosr train`) starts without torch.
    if name in ("TrainResult", "train"):
        from geosr.train import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module 'geosr.train' has no attribute {name!r}")
