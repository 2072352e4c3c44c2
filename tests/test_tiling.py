"""The tile plan is pure integer math: prove its promises for any scene and tile size."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from geosr.errors import OptionError
from geosr.tiling import Window, plan_tiles

sizes = st.integers(min_value=1, max_value=300)
tiles = st.integers(8, 128)  # a run's tiles: --tile is at least 8 (tiles of 1 made 90 000-tile plans)


@settings(max_examples=200, deadline=None)
@given(height=sizes, width=sizes, tile=tiles, halo=st.integers(0, 40))
@example(height=37, width=5, tile=1, halo=3)  # the smallest tiles still plan (on small scenes)
def test_cores_cover_the_scene_exactly_once(height: int, width: int, tile: int, halo: int) -> None:
    plan = plan_tiles(height, width, tile=tile, halo=halo)
    written = np.zeros((height, width), np.int32)
    for t in plan:
        written[t.core.rows, t.core.cols] += 1
    assert (written == 1).all()


@settings(max_examples=200, deadline=None)
@given(height=sizes, width=sizes, tile=tiles, halo=st.integers(0, 40), scale=st.integers(1, 8))
@example(height=37, width=5, tile=1, halo=3, scale=3)
def test_windows_nest_and_scale(height: int, width: int, tile: int, halo: int, scale: int) -> None:
    plan = plan_tiles(height, width, tile=tile, halo=halo)
    out = np.zeros((height * scale, width * scale), np.int32)
    for t in plan:
        c, k = t.core, t.compute
        # every compute window has the plan's shape and lies inside the scene
        assert (k.height, k.width) == (plan.tile_height, plan.tile_width)
        assert k.row >= 0 and k.row + k.height <= height and k.col >= 0 and k.col + k.width <= width
        # the core lies inside the compute window
        assert k.row <= c.row and c.row + c.height <= k.row + k.height
        assert k.col <= c.col and c.col + c.width <= k.col + k.width
        # the read window is the compute window grown by exactly the halo
        assert t.read == Window(k.row - halo, k.col - halo, k.height + 2 * halo, k.width + 2 * halo)
        assert (t.read.height, t.read.width) == plan.read_shape
        # output window = input window x scale
        o = c.scaled(scale)
        assert (o.row, o.col, o.height, o.width) == (
            c.row * scale,
            c.col * scale,
            c.height * scale,
            c.width * scale,
        )
        out[o.rows, o.cols] += 1
        # the core's place in the read window (the model input) lies inside its halo-free part
        inner = t.core_in_read
        assert inner.row >= halo and inner.col >= halo
        assert inner.row + inner.height <= plan.read_shape[0] - halo
        assert inner.col + inner.width <= plan.read_shape[1] - halo
        assert (inner.height, inner.width) == (c.height, c.width)
    assert (out == 1).all()


def test_small_scene_is_one_tile() -> None:
    plan = plan_tiles(5, 7, tile=256, halo=10)
    assert len(plan) == 1 and plan.read_shape == (25, 27)


@pytest.mark.parametrize(
    ("args", "message"), [((0, 5, 8, 1), "empty"), ((5, 5, 0, 1), "--tile"), ((5, 5, 8, -1), "halo")]
)
def test_bad_plans_are_refused(args: tuple[int, int, int, int], message: str) -> None:
    h, w, tile, halo = args
    with pytest.raises(OptionError, match=message):
        plan_tiles(h, w, tile=tile, halo=halo)
