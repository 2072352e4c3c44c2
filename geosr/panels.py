"""Drawing a compare figure: its panels stretched alike, oriented as a map, side by side.

The panels come from :func:`geosr.quicklook.compare_panels`, on the output's grid and in
physical units; this module only draws them (matplotlib, Agg) and writes the PNG.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from odc.geo.geobox import GeoBox

from geosr.errors import catch_warnings_serialised
from geosr.io.atomic import write_small_file
from geosr.io.names import utf8_name
from geosr.tiling import Window

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANEL_PIXELS = 600
"""Most pixels a side a panel shows; a larger window is shown (and read) decimated."""


def draw_figure(
    panels: Sequence[np.ndarray],
    titles: Sequence[str],
    win: Window,
    grid: GeoBox,
    png: Path,
    name: str,
    bands: str = "",
    *,
    together: bool = False,
) -> Path:
    """Write ``panels`` (geosr, bicubic, reference: ``(bands, rows, cols)`` of ``win`` on
    ``grid``) as one PNG, shown bicubic, geosr, reference, with ``titles``, ``name`` and what
    ``bands`` are shown (:func:`geosr.figure_bands.shown_bands`); ``together``: one stretch for
    all bands (:func:`stretch_limits`)."""
    images = stretch(panels, together=together)
    order = [1, 0, *range(2, len(images))]  # bicubic, geosr, reference
    # One screen pixel per output pixel up to 600 px a panel, so the detail is not resampled away.
    side = min(max(win.width, win.height, 256), PANEL_PIXELS) / 100 + 0.2
    aspect = pixel_aspect(grid, win)
    fig = detached_figure((side * len(images), side + 0.5))
    axes = fig.subplots(1, len(images), squeeze=False)
    for ax, index in zip(axes[0], order, strict=True):
        ax.imshow(
            map_oriented(panel_rgba(images[index], panels[index]), grid),
            interpolation="nearest",
            aspect=aspect,
        )
        # parse_math off: a '$' in a file name, model or band name began TeX (mathtext), which
        # drew 'cost$_x2$.tif' as cost with a subscript x2, and failed on 'a$\frac$.tif' in a traceback.
        ax.set_title(_fitted(titles[index], side, 10), parse_math=False)
        ax.set_axis_off()
    fig.suptitle(
        _fitted(
            f"{utf8_name(name)}: {bands + ', ' if bands else ''}"
            f"window of {win.width} x {win.height} output px"
            f"{_decimated(win, panels[0])}, {_stretch_said(panels[0], together)}{_not_north_up(grid)}",
            side * len(images),
            9,
        ),
        fontsize=9,
        parse_math=False,
    )
    with catch_warnings_serialised():
        # A name in a script the font lacks (中文) is drawn with boxes for those characters:
        # matplotlib warned once per character, lines about a font amid geosr's own.
        warnings.filterwarnings("ignore", r"Glyph \d+ .* missing from font", UserWarning)
        fig.tight_layout()
        write_small_file(png, lambda tmp: fig.savefig(tmp, dpi=100, format="png"), "PNG")
    return png


def detached_figure(size: tuple[float, float]) -> Figure:
    """A matplotlib figure of ``size`` inches drawn by Agg, unknown to pyplot.

    The host's pyplot is left alone: ``matplotlib.use("Agg")``, as the figures were made
    before, switched the backend of the process that called ``upscale_file(...,
    quicklook=True)`` (a notebook's, a Qt session's) and closed the figures it had open.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size)
    FigureCanvasAgg(fig)
    return fig


def stretch(
    panels: Sequence[np.ndarray], low: float = 2, high: float = 98, *, together: bool = False
) -> list[np.ndarray]:
    """Scale every panel to [0, 1] with the percentiles of the first panel, band by band (or of
    all bands ``together``, :func:`stretch_limits`), of the pixels it shows (valid in every band,
    :func:`panel_rgba`): a band's pixels hidden by another band's nodata (stacked assets each with
    their own) set its stretch unseen."""
    lo, hi = stretch_limits(panels[0], low, high, together=together)
    out = []
    for panel in panels:
        scaled = (panel - lo[:, None, None]) / (hi - lo)[:, None, None]
        out.append(np.clip(np.nan_to_num(scaled, nan=0.0), 0, 1))
    return out


def stretch_limits(
    ref: np.ndarray, low: float = 2, high: float = 98, *, together: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The values :func:`stretch` draws black and white, band by band of the panel ``ref``; or
    ``together``, the same for every band, of their pixels pooled, and 0 and 255 where those
    span 0 to 255 already: 8-bit RGB (:func:`geosr.figure_bands.eight_bit_rgb`) is balanced as
    stored, and each band stretched on its own tinted it (a grey road cyan beside a red roof)."""
    shown = np.isfinite(ref).all(axis=0)
    if together:
        black, white = _pooled_limits(ref[:, shown] if shown.any() else ref[np.isfinite(ref)], low, high)
        return np.full(ref.shape[0], black), np.full(ref.shape[0], white)
    lo = np.zeros(ref.shape[0])
    hi = np.ones(ref.shape[0])
    for b in range(ref.shape[0]):
        values = ref[b][shown if shown.any() else np.isfinite(ref[b])]
        if values.size:
            lo[b], hi[b] = np.percentile(values, [low, high])
        if hi[b] <= lo[b]:
            # A constant band (a lake, a saturated field) mid-grey, not black as a failed run
            # (the darkest of the stretch); a unit either side of it still tells values apart.
            lo[b], hi[b] = lo[b] - 1, lo[b] + 1
    return lo, hi


def _pooled_limits(values: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """:func:`stretch_limits` of every band ``together``: of their ``values`` pooled."""
    if not values.size:
        return 0.0, 255.0
    if values.min() <= 0 and values.max() >= 255:  # the full 8 bits: shown as stored
        return 0.0, 255.0
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    return (lo, hi) if hi > lo else (lo - 1, lo + 1)  # a constant panel mid-grey, as a band's


def _stretch_said(ref: np.ndarray, together: bool) -> str:
    """What a figure's title says of its stretch (:func:`stretch_limits`)."""
    if not together:
        return "one 2-98 % stretch"
    lo, hi = stretch_limits(ref, together=True)
    if (lo[0], hi[0]) == (0, 255):
        return "8-bit RGB as stored"
    return "one 2-98 % stretch of all bands alike"


def pixel_aspect(grid: GeoBox, win: Window | None = None) -> float:
    """Height over width of a pixel of ``grid`` on the ground as :func:`map_oriented` draws it, for
    ``imshow``: a panel of 10 x 20 m pixels was drawn with square ones, the scene squashed to half
    its height.  A degree of longitude spans the cosine of the latitude (at the centre of ``win``)
    of one of latitude: a polar lon/lat grid of 5 x 0.01° pixels, 2.4 x 1.1 km there, was drawn
    500 times as wide as tall, each panel a line."""
    a, b, _, d, e, _ = tuple(grid.transform)[:6]
    if grid.crs is not None and grid.crs.geographic:
        rows, cols = grid.shape.yx
        row, col = (win.row + win.height / 2, win.col + win.width / 2) if win else (rows / 2, cols / 2)
        _, latitude = grid.transform @ (col, row)
        east = max(float(np.cos(np.radians(min(abs(latitude), 90.0)))), 1e-6)
        a, b = a * east, b * east
    if _quarter_turned(grid):  # drawn with its rows as columns
        return float(np.hypot(a, d) / np.hypot(b, e))
    return float(np.hypot(b, e) / np.hypot(a, d))


def _quarter_turned(grid: GeoBox) -> bool:
    """Whether ``grid``'s pixel rows run north or south and its columns east or west: a turn by
    a quarter (and perhaps a flip), which a transpose undoes exactly."""
    a, b, _, d, e, _ = tuple(grid.transform)[:6]
    return a == 0 and e == 0 and b != 0 and d != 0


def map_oriented(image: np.ndarray, grid: GeoBox) -> np.ndarray:
    """``image`` ``(rows, cols, ...)`` on ``grid`` turned north up and east right, as on a map: a
    south-up grid (a Zarr store's ascending latitudes) was drawn upside down, a grid turned by a
    quarter on its side.  Any other rotated or sheared grid is drawn as stored, and the figure's
    title says so (:func:`_not_north_up`): turning it would resample every panel a second time."""
    a, b, _, d, e, _ = tuple(grid.transform)[:6]
    if _quarter_turned(grid):  # the stored columns run north-south: the transpose's rows do
        image, a, e = np.swapaxes(image, 0, 1), b, d
    elif b != 0 or d != 0:
        return image
    return image[:: -1 if e > 0 else 1, :: -1 if a < 0 else 1]


def _not_north_up(grid: GeoBox) -> str:
    """What a figure of a rotated or sheared ``grid`` says of its orientation, which
    :func:`map_oriented` leaves as stored: it was drawn so without a word, north anywhere."""
    a, b, _, d, e, _ = tuple(grid.transform)[:6]
    if (b == 0 and d == 0) or _quarter_turned(grid):
        return ""
    # The directions of a pixel row (x) and column (y) on the map, counter-clockwise from east:
    # a column runs a quarter turn clockwise of its row on a map, counter-clockwise on its mirror
    # image (a turn past 90° clockwise was said to be sheared: -135 - 135 is -270).
    row, column = np.degrees(np.arctan2(d, a)), np.degrees(np.arctan2(e, b))
    between = (row - column) % 360
    if not (np.isclose(between, 90) or np.isclose(between, 270)):
        return ", in stored pixel order: the grid is sheared, not north up"
    # '-30° counter-clockwise' said a clockwise turn backwards.
    turn = f"{abs(row):.3g}° {'clockwise' if row < 0 else 'counter-clockwise'}"
    mirrored = "" if np.isclose(between, 90) else " and mirrored"
    return f", in stored pixel order: the grid is turned {turn} from north up{mirrored}"


def _decimated(win: Window, panel: np.ndarray) -> str:
    """How a window larger than a panel is shown: ' shown 1:N' (one pixel in N x N)."""
    factor = round(max(win.height, win.width) / max(panel.shape[1:]))
    return f" shown 1:{factor}" if factor > 1 else ""


def panel_rgba(image: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """``image`` (1 or 3 stretched bands of ``panel``) as RGBA, transparent where ``panel`` is
    nodata or NaN in any band: :func:`stretch` makes those 0, which showed as the darkest
    data does (black, like water in the near infrared); they show the page behind instead."""
    rgb = np.moveaxis(image, 0, -1) if image.shape[0] == 3 else np.repeat(image[0][..., None], 3, axis=-1)
    alpha = np.isfinite(panel).all(axis=0).astype(rgb.dtype)
    return np.concatenate([rgb, alpha[..., None]], axis=-1)


def _fitted(text: str, inches: float, points: float) -> str:
    """``text`` wrapped to lines that fit ``inches`` at a font of ``points`` (a character of
    a file name is up to 0.75 em wide): a long file name ran past the figure's edge and
    was cut off."""
    import textwrap

    width = max(10, int(inches * 72 / (0.75 * points)))
    return "\n".join(textwrap.wrap(text, width, break_long_words=True, break_on_hyphens=False)) or text
