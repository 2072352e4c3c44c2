"""Training: self-supervised degradation, paired co-registration, losses, the resumable loop.

This package never imports dask (the parallel training-store builder lives in
``geosr.orchestrate.training_store``).
"""

from geosr.train.config import DataConfig, OptimConfig, SceneSource, TrainConfig, load_config
from geosr.train.degrade import DegradationConfig
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
