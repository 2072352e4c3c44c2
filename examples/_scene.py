"""Shared by the examples: a small georeferenced scene and a working folder."""

from __future__ import annotations

import sys
from pathlib import Path

from geosr.demo import make_demo_scene


def example_scene(folder: Path, size: int = 96) -> Path:
    """A ``size`` x ``size`` uint16 scene (real Sentinel-2 pixels when available), as in ``make demo``."""
    return make_demo_scene(folder, size)


def workdir() -> Path:
    return Path(sys.argv[1]) if len(sys.argv) > 1 else Path("out/examples")
