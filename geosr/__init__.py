"""geosr: seam-free super-resolution of georeferenced imagery, to COG or Zarr.

>>> import geosr
>>> geosr.upscale_file("scene.tif", scale=4)            # doctest: +SKIP
PosixPath('scene_x4.tif')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "GeosrError",
    "GeosrWarning",
    "__version__",
    "forget_models",
    "load_model",
    "upscale",
    "upscale_file",
]

from geosr.errors import GeosrError, GeosrWarning

if TYPE_CHECKING:
    from geosr.api import upscale_file
    from geosr.models import load_model
    from geosr.orchestrate.lazy import forget_models, upscale


def __getattr__(name: str) -> Any:
    # Lazy so that `import geosr` stays fast and torch loads only when a model is used.
    if name == "upscale_file":
        from geosr.api import upscale_file

        return upscale_file
    if name == "load_model":
        from geosr.models import load_model

        return load_model
    if name == "upscale":
        from geosr.orchestrate.lazy import upscale

        return upscale
    if name == "forget_models":
        from geosr.orchestrate.lazy import forget_models

        return forget_models
    raise AttributeError(f"module 'geosr' has no attribute {name!r}")
