"""Tile plans: pure integer math, no I/O, no arrays.

A scene of ``height x width`` low-resolution (LR) pixels is cut into tiles.
Each tile has

* a **core**: the LR pixels whose output it writes.  Cores partition the scene:
  every LR pixel (hence every output pixel) is written exactly once;
* a **compute window**: what the model runs on, the same shape for every tile so
  tiles batch together.  It contains the core; at the right and bottom edges it
  is shifted back inside the scene instead of shrinking;
* a **read window**: the compute window grown by ``halo`` on every side.  It may
  reach outside the scene; the reader fills that part by mirroring the scene
  (symmetric padding), exactly as whole-image inference pads the whole scene.

With ``halo`` >= the model's receptive field, the core of every tile therefore
sees the same input as in whole-image inference: tiled output is seam-free by
construction.  Output windows are input windows times the scale.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from geosr.errors import OptionError


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: ``rows [row, row + height)``, ``cols [col, col + width)``."""

    row: int
    col: int
    height: int
    width: int

    @property
    def rows(self) -> slice:
        """The window's rows, as a slice."""
        return slice(self.row, self.row + self.height)

    @property
    def cols(self) -> slice:
        """The window's columns, as a slice."""
        return slice(self.col, self.col + self.width)

    def scaled(self, scale: int) -> Window:
        """The same rectangle on a grid with ``scale`` times the pixels."""
        return Window(self.row * scale, self.col * scale, self.height * scale, self.width * scale)

    def grown(self, margin: int) -> Window:
        """This window with ``margin`` pixels added on every side (may go negative)."""
        return Window(self.row - margin, self.col - margin, self.height + 2 * margin, self.width + 2 * margin)

    def relative_to(self, outer: Window) -> Window:
        """This window in the coordinates of ``outer``'s top-left corner."""
        return Window(self.row - outer.row, self.col - outer.col, self.height, self.width)


@dataclass(frozen=True)
class Tile:
    """One unit of model work; see the module docstring for the three windows."""

    core: Window
    compute: Window
    halo: int

    @property
    def read(self) -> Window:
        """The read window: the compute window grown by ``halo`` on every side."""
        return self.compute.grown(self.halo)

    @property
    def core_in_read(self) -> Window:
        """Where the core lies inside the read window (the model's input).

        Scaled by ``s``, the same window crops the core out of the model's output.
        """
        return self.core.relative_to(self.read)


@dataclass(frozen=True)
class TilePlan:
    """All tiles of a scene, in row-major order."""

    height: int
    width: int
    tile_height: int
    tile_width: int
    halo: int
    tiles: tuple[Tile, ...]

    def __iter__(self) -> Iterator[Tile]:
        return iter(self.tiles)

    def __len__(self) -> int:
        return len(self.tiles)

    @property
    def read_shape(self) -> tuple[int, int]:
        """Shape of every read window (the model input), LR pixels."""
        return self.tile_height + 2 * self.halo, self.tile_width + 2 * self.halo


def _starts(length: int, tile: int) -> list[int]:
    return list(range(0, length, tile))


def plan_tiles(height: int, width: int, *, tile: int, halo: int) -> TilePlan:
    """Cut a ``height x width`` scene into tiles of at most ``tile`` LR pixels.

    Parameters
    ----------
    height, width : int
        Scene size in LR pixels, >= 1.
    tile : int
        Edge of a core in LR pixels, >= 1.  Clamped to the scene size, so a
        small scene is one tile.
    halo : int
        LR pixels of context on every side, >= 0.

    Returns
    -------
    TilePlan
    """
    if height < 1 or width < 1:
        raise OptionError(f"cannot tile an empty scene ({width} x {height} pixels)")
    if tile < 1:
        raise OptionError(f"--tile must be a positive number of pixels, got {tile}")
    if halo < 0:
        raise OptionError(f"halo must be >= 0, got {halo}")
    th, tw = min(tile, height), min(tile, width)
    tiles = []
    for r in _starts(height, th):
        for c in _starts(width, tw):
            core = Window(r, c, min(th, height - r), min(tw, width - c))
            # Shift the last row/column of compute windows back inside the scene
            # so every tile has the same shape and sees real pixels, not padding.
            compute = Window(min(r, height - th), min(c, width - tw), th, tw)
            tiles.append(Tile(core=core, compute=compute, halo=halo))
    return TilePlan(height, width, th, tw, halo, tuple(tiles))
