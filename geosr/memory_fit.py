"""The tile and batch a run takes so that its memory bound fits the machine, and the
numbers that bound depends on (:mod:`geosr.resources` holds the formula).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from geosr import resources
from geosr.errors import warn
from geosr.io.atomic import format_bytes
from geosr.io.scene import Scene, band_bytes, keeps_band
from geosr.options import DEFAULT_TILE, RunOptions

if TYPE_CHECKING:  # they import torch, which loads with the model
    from geosr.models import SRModel
    from geosr.predictor import Predictor


def resource_plan(
    scene: Scene,
    net: SRModel,
    predictor: Predictor,
    *,
    tile: int,
    halo: int,
    batch: int,
    scale: int,
    frames: int = 1,
    workers: int = 1,
) -> resources.Plan:
    """The numbers a run's memory bound depends on (``geosr run``'s guard and ``geosr info``)."""
    height, width = scene.grid.shape.yx
    shape = (min(tile, height), min(tile, width))  # the plan's, before it exists
    # The band of strips each reading thread keeps for a strip-organized file
    # (geosr.io.scene), and its next one while that is assembled, per frame.
    rows = shape[0] + 2 * halo
    row_band = 2 * frames * band_bytes(scene, rows) if keeps_band(scene, rows) else 0
    return resources.Plan(
        tile=min(tile, max(height, width)),
        tile_shape=shape,
        halo=halo,
        batch=batch,
        bands=scene.count,
        scale=scale,
        in_itemsize=scene.read_dtype.itemsize,
        out_itemsize=np.dtype(scene.dtype).itemsize,
        features=int(net.card.config.get("features", 1)),
        model_bytes=predictor.model_bytes(),
        frames=frames,
        workers=workers,
        row_band_bytes=row_band,
        images_per_call=predictor.images_per_call(batch, scene.count),
        lanes=predictor.lanes() if workers <= 1 else 1,
        activations_in_ram=predictor.torch_device.type == "cpu",
    )


FITTING_TILES = (DEFAULT_TILE, DEFAULT_TILE // 2, DEFAULT_TILE // 4, DEFAULT_TILE // 8)
"""Tiles tried, in order, when the default one would not fit in memory (more halo, less memory)."""


def fit_to_memory(
    scene: Scene,
    net: SRModel,
    predictor: Predictor,
    opts: RunOptions,
    *,
    halo: int,
    frames: int = 1,
) -> tuple[int, int, resources.Plan]:
    """The run's tile and batch, and the memory plan they make.

    The user's ``--tile`` and ``--batch-size`` are kept as given, and so is
    the default tile with ``--no-check-resources``.  Otherwise the default
    tile is halved (down to :data:`FITTING_TILES`' last) until the run's
    memory bound fits in the memory available, with a warning that says so:
    a many-band scene on a small machine then runs instead of being refused,
    a little slower for the larger share of halo.  Nothing is refused here;
    :func:`geosr.resources.check` does that with the plan returned.
    """
    height, width = scene.grid.shape.yx
    given = opts.tile is not None or not opts.check_resources
    tiles = (opts.tile or DEFAULT_TILE,) if given else FITTING_TILES
    available = None if given else resources.available_memory()
    for tile in tiles:
        read_shape = (
            min(tile, height) + 2 * halo,
            min(tile, width) + 2 * halo,
        )  # the plan's, before it exists
        batch = opts.batch_size or predictor.batch_size_for(read_shape, scene.count, frames)
        # A batch never holds more tiles than the scene has: --batch-size 1000
        # on a small scene must not be refused for memory it will never use.
        batch = min(batch, -(-height // tile) * -(-width // tile))
        bounds = resource_plan(
            scene,
            net,
            predictor,
            tile=tile,
            halo=halo,
            batch=batch,
            scale=opts.scale,
            frames=frames,
            workers=opts.workers or 1,
        )
        needed = resources.memory_needed(bounds)
        if available is None or needed <= available:
            break
    else:
        return tile, batch, bounds  # nothing fits: the guard refuses the smallest plan, with its numbers
    if tile != tiles[0]:
        warn(
            f"{scene.name}: tiles of {tile} px instead of {tiles[0]}, so that the run fits in "
            f"the {format_bytes(available or 0)} of memory available (it needs about "
            f"{format_bytes(needed)}); --tile sets the tile"
        )
    return tile, batch, bounds
