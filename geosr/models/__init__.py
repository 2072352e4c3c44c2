"""Super-resolution models: pure torch, no geography, no I/O in constructors.

Every model maps ``(B, T, C, h, w)`` (``T`` frames, reference first, ``C``
bands, normalised to about ``[0, 1]``) to ``(B, C, s*h, s*w)`` float32 and
reports ``scale``, ``receptive_field`` (the tile halo, in LR pixels), ``name``
and ``card``.  The pipeline gets its model from :func:`load_model`.

This package must never import rasterio, xarray, dask or odc.
"""

from geosr.models.base import MAX_SCALE, MIN_SCALE, SRModel
from geosr.models.bicubic import Bicubic
from geosr.models.card import ModelCard
from geosr.models.cnnrnn import CNNRNN, CNNRNNConfig, radiometric_projection
from geosr.models.flops import flops_per_lr_pixel
from geosr.models.registry import (
    DEFAULT_MODEL,
    MODEL_NAMES,
    ModelInfo,
    ModelSpec,
    build_model,
    bundled_weights,
    list_models,
    load_model,
    model_from_card,
)
from geosr.models.weights import apply_state, load_weights, save_weights

__all__ = [
    "CNNRNN",
    "DEFAULT_MODEL",
    "MAX_SCALE",
    "MIN_SCALE",
    "MODEL_NAMES",
    "Bicubic",
    "CNNRNNConfig",
    "ModelCard",
    "ModelInfo",
    "ModelSpec",
    "SRModel",
    "apply_state",
    "build_model",
    "bundled_weights",
    "flops_per_lr_pixel",
    "list_models",
    "load_model",
    "load_weights",
    "model_from_card",
    "radiometric_projection",
    "save_weights",
]
