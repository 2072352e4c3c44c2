"""Quicklooks: bicubic vs geosr (vs a reference) side by side, one stretch for every panel.

All panels show the same window on the super-resolved grid: the bicubic panel
is the LR input resampled onto it (GDAL's cubic), the reference is read onto it
with nearest neighbour, so any misplacement would show.  The contrast stretch
is the 2nd-98th percentile of the geosr panel's valid pixels, per band, and is
applied unchanged to every panel: differences between panels are real, not an
artefact of each panel being stretched on its own.  Nodata and NaN pixels are
transparent: the white page shows through, not black data; where the geosr panel shows
nothing (outside an ``--aoi`` polygon), neither do the others.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling

from geosr.aoi import pixel_box
from geosr.errors import InputError, OptionError, OutputError, warn
from geosr.figure_bands import (
    check_bands,
    display_bands,
    eight_bit_rgb,
    read_positions,
    reference_bands,
    shown_bands,
    source_bands,
)
from geosr.grid import warp_onto, window_grid, zoomed_out
from geosr.io.atomic import already_exists, refuse_kernel_file_system, refuse_overlong_name, unwritable_folder
from geosr.io.names import shell_quoted
from geosr.io.remote import home_expanded, local_file_text
from geosr.io.scene import (
    Scene,
    datasets_closed,
    is_zarr_path,
    open_scene,
    read_decimated,
    read_window,
    with_nodata,
)
from geosr.io.stac_input import (
    Resolved,
    is_stac_item,
    not_an_item,
    stacks_removed,
    with_declared_nodata,
    with_declared_scaling,
)
from geosr.io.stac_input import resolve as resolve_stac
from geosr.normalise import valid_mask
from geosr.panels import PANEL_PIXELS, draw_figure, stretch_limits
from geosr.run_outputs import overwritten_input
from geosr.tiling import Window

COMPARE_PNG = "compare.png"
"""The PNG geosr compare writes where no -o names one, or into the folder -o names."""
DEFAULT_WINDOW = 128
"""LR pixels per side of the default (centred) window."""

_MARGIN = 3
"""Source pixels read around a panel's footprint: the cubic kernel's reach, and one for rounding."""


def quicklook_path(output: str | Path) -> Path:
    """``scene_x4.tif`` -> ``scene_x4.quicklook.png`` beside it."""
    out = Path(output)
    return out.with_name(f"{out.stem}.quicklook.png")


def parse_window(
    text: str | None, lr_shape: tuple[int, int], size: int = DEFAULT_WINDOW, source: str | None = None
) -> Window:
    """``col,row,width,height`` (LR pixels), or the centred default of ``size`` a side, clipped
    to the scene; ``source`` names the LR input in the line of a window outside it."""
    h, w = lr_shape
    if text is None:
        size_h, size_w = min(size, h), min(size, w)
        return Window((h - size_h) // 2, (w - size_w) // 2, size_h, size_w)
    try:
        col, row, width, height = (int(v) for v in text.split(","))
    except ValueError:
        raise OptionError(
            f"--window {text!r} is not col,row,width,height in LR pixels, e.g. 0,0,128,128"
        ) from None
    if width < 1 or height < 1:
        raise OptionError(f"--window {text!r} is empty; its width and height must be at least 1 LR pixel")
    if not (0 <= col < w and 0 <= row < h):
        # Naming the input, as geosr's other lines do: "the 791 x 718 px input" said of which file?
        where = f"{source}: " if source is not None else ""
        raise OptionError(
            f"{where}--window {text!r} is outside the {w} x {h} px input; give col,row,width,height inside it"
        )
    return Window(row, col, min(height, h - row), min(width, w - col))


def _footprint_window(scene: Scene, target: GeoBox) -> Window | None:
    """The pixels of ``scene`` under ``target`` plus :data:`_MARGIN`, clipped to the
    scene; None when ``target`` lies wholly outside it."""
    height, width = scene.grid.shape.yx
    box = pixel_box(scene.grid, target)
    if not all(np.isfinite(box)):
        return None  # the window cannot even be expressed in the scene's CRS
    c0, r0, c1, r1 = box
    col0 = max(int(np.floor(c0)) - _MARGIN, 0)
    row0 = max(int(np.floor(r0)) - _MARGIN, 0)
    col1 = min(int(np.ceil(c1)) + _MARGIN, width)
    row1 = min(int(np.ceil(r1)) + _MARGIN, height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(row0, col0, row1 - row0, col1 - col0)


def _scale(lr_scene: Scene, sr_scene: Scene) -> int:
    """How many SR pixels make one LR pixel (along an edge), rounded.

    In one CRS, the ratio of the pixel sizes; across CRSs (an LR in degrees, an SR
    in metres) pixel sizes do not compare, so the SR's extent is measured in LR
    pixels instead: the ratio of the sizes gave 0 or 321763 there.
    """
    lr_crs, sr_crs = lr_scene.grid.crs, sr_scene.grid.crs
    if lr_crs is None or sr_crs is None or lr_crs == sr_crs:
        return round(abs(lr_scene.grid.resolution.x) / abs(sr_scene.grid.resolution.x))
    col0, row0, col1, row1 = pixel_box(lr_scene.grid, sr_scene.grid)
    sh, sw = sr_scene.grid.shape.yx
    return round(float(np.sqrt(sh * sw / max((col1 - col0) * (row1 - row0), 1e-12))))


def _sr_window(lr_scene: Scene, sr_scene: Scene, lr_window: Window, text: str, sr: str) -> Window:
    """``lr_window`` (pixels of the LR file, as ``--window`` gives them) as the window of
    the SR grid it covers, clipped to the SR raster.

    The SR of an AOI run covers only part of its input: its pixel 0 is not the
    input's, so the window is placed through map coordinates, not by scaling.

    Raises
    ------
    OptionError
        The window lies wholly outside the SR raster; the message gives the LR
        pixels it covers.
    """
    lr_box = window_grid(lr_scene.grid, lr_window.row, lr_window.col, lr_window.height, lr_window.width)
    covered = _covered(sr_scene.grid, lr_box)
    if covered is None:
        c0, r0, c1, r1 = (round(v) for v in pixel_box(lr_scene.grid, sr_scene.grid))
        # The last column and row included, and the size, as geosr info's area of interest:
        # 'cols 151-201' here was 'cols 151-200 (50 ...)' there, and col 201 lay outside.
        raise OptionError(
            f"--window {text!r} lies outside {sr}, which covers cols {c0}-{max(c1 - 1, c0)}, "
            f"rows {r0}-{max(r1 - 1, r0)} ({max(c1 - c0, 1)} x {max(r1 - r0, 1)} px) of the "
            f"{lr_scene.grid.shape.x} x {lr_scene.grid.shape.y} px input; "
            "give col,row,width,height inside them"
        )
    return covered


def _default_window(lr_scene: Scene, sr_scene: Scene, scale: int) -> Window:
    """Up to :data:`DEFAULT_WINDOW` LR pixels of the SR grid, centred on the part of it that
    the LR covers (all of it for the input and output of one run): centred on the SR
    alone, the window missed an LR that covers a corner of it, which was then called
    'does not overlap'.  No more than a panel shows 1:1 (:data:`PANEL_PIXELS`): the 1024
    output px of an x8 run's were shown 1:2, from overviews, the model's detail averaged away."""
    sh, sw = sr_scene.grid.shape.yx
    part = _covered(sr_scene.grid, lr_scene.grid) or Window(0, 0, sh, sw)
    side = max(min(DEFAULT_WINDOW, PANEL_PIXELS // scale), 1)
    covered = (max(part.height // scale, 1), max(part.width // scale, 1))
    inner = parse_window(None, covered, side).scaled(scale)
    row, col = part.row + inner.row, part.col + inner.col
    return Window(row, col, min(inner.height, sh - row), min(inner.width, sw - col))


def _panel_grid(sr_scene: Scene, win: Window) -> GeoBox:
    """The grid the panels of ``win`` (output pixels) are read onto: no more pixels than a
    panel shows (:data:`PANEL_PIXELS`), a large window decimated (it was read whole)."""
    target = window_grid(sr_scene.grid, win.row, win.col, win.height, win.width)
    decimation = -(-max(win.height, win.width) // PANEL_PIXELS)
    return zoomed_out(target, decimation) if decimation > 1 else target


_SEARCH_PIXELS = 256
"""Pixels a side of the decimated read of the output in which :func:`_onto_data` looks for data."""


def _onto_data(sr_scene: Scene, show: Sequence[int], win: Window, scale: int, part: Window) -> Window:
    """The default window ``win``, which holds no valid pixel of ``show`` in the output, moved to
    where the window holds the most valid pixels of ``part`` (the output's pixels the input covers,
    read decimated to :data:`_SEARCH_PIXELS` a side), the place nearest ``win`` of those, on the
    input's pixels; ``win`` where ``part`` has none.

    Centred on a swath's nodata, a bay masked out or a cloud, the quicklook of a scene mostly
    nodata was blank, its data elsewhere, and ``--quicklook`` takes no ``--window`` to move it.
    """
    step = max(1, -(-max(part.height, part.width) // _SEARCH_PIXELS))
    coarse = read_decimated(sr_scene, part, step)[list(show)]
    valid = valid_mask(coarse, sr_scene.nodata).all(axis=0)
    if not valid.any():
        return win
    # The valid pixels under the window at each place (a summed-area table), in coarse pixels.
    kh = min(max(round(win.height / step), 1), valid.shape[0])
    kw = min(max(round(win.width / step), 1), valid.shape[1])
    table = np.pad(valid.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    counts = table[kh:, kw:] - table[:-kh, kw:] - table[kh:, :-kw] + table[:-kh, :-kw]
    rows, cols = np.nonzero(counts == counts.max())
    near = ((rows - (win.row - part.row) / step) ** 2 + (cols - (win.col - part.col) / step) ** 2).argmin()

    def placed(start: int, size: int, first: int, extent: int, origin: int) -> int:
        # On the input's pixels, as the default window is: whole steps of scale from its start.
        offset = round((first + start - origin) / scale) * scale + origin
        return int(min(max(offset, first), first + extent - size))

    row = placed(int(rows[near]) * step, win.height, part.row, part.height, win.row % scale)
    col = placed(int(cols[near]) * step, win.width, part.col, part.width, win.col % scale)
    return Window(row, col, win.height, win.width)


def _covered(grid: GeoBox, target: GeoBox) -> Window | None:
    """The pixels of ``grid`` under ``target``, clipped to ``grid``; None when there are none."""
    height, width = grid.shape.yx
    c0, r0, c1, r1 = pixel_box(grid, target)
    if not all(np.isfinite((c0, r0, c1, r1))):
        return None
    eps = 1e-6  # aligned grids give whole numbers up to floating-point noise
    col0, row0 = max(int(np.floor(c0 + eps)), 0), max(int(np.floor(r0 + eps)), 0)
    col1, row1 = min(int(np.ceil(c1 - eps)), width), min(int(np.ceil(r1 - eps)), height)
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(row0, col0, row1 - row0, col1 - col0)


def _no_overlap(path: str, other: str) -> InputError:
    return InputError(
        f"{path} does not overlap {other}: no pixel of it lies in the area compared; "
        "give rasters of the same area (the input and output of one run)"
    )


def _on_grid(
    scene: Scene, bands: list[int], target: GeoBox, resampling: Resampling, *, other: str = ""
) -> np.ndarray:
    """``bands`` (0-based) of ``scene`` resampled onto ``target``, float32 with NaN, in the
    units the scene's scale and offset give (``pixel * scale + offset``): a reference in
    reflectance against an output of integers declared as reflectance was stretched as
    integers (black), and the panels of one stretch must hold one quantity.

    Only the scene's pixels under ``target`` (and a margin for the kernel) are
    read, through the scene's own reader: GeoTIFF, JPEG 2000, Zarr alike.

    Raises
    ------
    InputError
        ``scene`` has no pixel under ``target``, the window of ``other`` (the
        super-resolved file) shown: the two rasters do not overlap.
    """
    window = _footprint_window(scene, target)
    if window is None:
        raise _no_overlap(scene.path, other or "the window shown")
    # A target coarser than the scene (a large window, decimated) needs one pixel in step x step.
    c0, r0, c1, r1 = pixel_box(scene.grid, target)
    step = max(1, int(min((c1 - c0) / target.shape.x, (r1 - r0) / target.shape.y) + 1e-6))
    step = min(step, window.height, window.width)  # a sliver under the target: a block of it
    grid = window_grid(scene.grid, window.row, window.col, window.height, window.width)
    # A float64 pixel beyond float32's range becomes an infinity, invalid below as the run's
    # output has it (nodata), not numpy's bare 'overflow encountered in cast'.
    with np.errstate(over="ignore"):
        if step == 1:
            source = read_window(scene, window)[bands].astype(np.float32)
        else:
            source = read_decimated(scene, window, step)[bands].astype(np.float32)
        # The last block may be partial: the pixels, not the step, span the window.
        (height, width) = source.shape[1:]
        pixel = Affine.scale(window.width / width, window.height / height)
        grid = GeoBox((height, width), grid.transform @ pixel, grid.crs)
    source[~valid_mask(source, scene.nodata)] = np.nan
    warped = _warped(source, grid, target, resampling)
    scales = np.array([scene.scales[b] if scene.scales else 1.0 for b in bands], np.float32)
    offsets = np.array([scene.offsets[b] if scene.offsets else 0.0 for b in bands], np.float32)
    return warped * scales[:, None, None] + offsets[:, None, None]


def _warped(source: np.ndarray, grid: GeoBox, target: GeoBox, resampling: Resampling) -> np.ndarray:
    """``source`` ``(C, h, w)`` on ``grid`` warped onto ``target`` (:func:`~geosr.grid.warp_onto`).

    GDAL's warper resamples a source one pixel high (or wide) by nearest neighbour, whatever
    the kernel asked: the bicubic panel of a 1 x N strip was blocky.  Such a side is repeated
    on both sides of it, so that the pixel interpolates to itself across the strip and cubic
    along it; what then falls outside the strip's own footprint is NaN again.
    """
    rows = _MARGIN if source.shape[1] == 1 else 0
    cols = _MARGIN if source.shape[2] == 1 else 0
    if resampling == Resampling.nearest or not (rows or cols):
        return warp_onto(source, grid, target, resampling)
    padded = np.pad(source, ((0, 0), (rows, rows), (cols, cols)), mode="edge")
    warped = warp_onto(padded, window_grid(grid, -rows, -cols, *padded.shape[1:]), target, resampling)
    footprint = warp_onto(np.ones((1, *source.shape[1:]), np.float32), grid, target, Resampling.nearest)
    warped[:, np.isnan(footprint[0])] = np.nan
    return warped


def stac_raster(lr: str, sr_scene: Scene) -> Resolved:
    """The raster a STAC Item ``lr`` stands for (``lr`` itself for any other input): its
    data asset, or the stack of the single-band assets the output's bands are named
    after, as ``geosr run item.json --bands B04,B03,B02`` stacked them."""
    problem = not_an_item(lr)  # a Collection, or JSON that is not an Item: not "a corrupt raster"
    if problem is not None:
        raise problem
    if not is_stac_item(lr):
        return Resolved(lr, {})
    names = [d for d in sr_scene.descriptions if d]
    bands = ",".join(names) if len(names) == sr_scene.count else None
    try:
        return resolve_stac(lr, asset=None, bands=bands)
    except InputError as exc:
        if "--asset" not in str(exc):
            raise
        # compare has no --asset: an Item of several rasters is given as the one that was run.
        raise InputError(
            f"{lr}: the output's band names do not say which of the Item's raster assets it was made "
            "from; give that asset's raster file as LR"
        ) from None


def _open_lr(href: str, variable: str | None, recorded: str | None) -> Scene:
    """The LR input's scene: its ``variable``, else the one its run ``recorded`` where the file
    holds several (it asked for --variable again, which the output says); the file's own refusal
    where it holds no such variable (another store)."""
    try:
        return open_scene(href, variable=variable)
    except InputError as exc:
        if variable is not None or recorded is None or "--variable" not in str(exc):
            raise
        try:
            return open_scene(href, variable=recorded)
        except InputError:
            raise exc from None


def _open_reference(hr: str, variable: str | None) -> Scene:
    """The ``--hr`` reference's scene; a store of several variables asks for ``--hr-variable``:
    it asked for ``--variable``, which picks the LR input's, and was then refused there."""
    try:
        return _raster_scene(hr, "--hr", variable)
    except InputError as exc:
        if variable is not None or "--variable" not in str(exc):
            raise
        raise InputError(str(exc).replace("--variable", "--hr-variable")) from None


def _raster_scene(path: str, what: str, variable: str | None = None) -> Scene:
    """The scene of the output or reference ``path``: a raster, or a STAC Item's one raster
    asset (the output's own ``--stac`` Item), with the nodata and scaling the Item declares.

    GDAL opened an Item itself and resolved its relative hrefs against the working folder:
    'not a readable raster (Cannot open ./out.tif ...)' from anywhere but the Item's folder.
    """
    problem = not_an_item(path)
    if problem is not None:
        raise problem
    if not is_stac_item(path):
        return open_scene(path, variable=variable)
    try:
        raster = resolve_stac(path, asset=None, bands=None)
    except InputError as exc:
        if "--asset" not in str(exc):
            raise
        raise InputError(
            f"{path}: the Item has several raster assets; give the raster file of the one to compare "
            f"as {what}"
        ) from None
    scene = open_scene(raster.href, variable=variable)
    return with_declared_scaling(with_declared_nodata(scene, raster.nodata), raster.scaling)


def compare_panels(
    lr: str,
    sr: str,
    *,
    hr: str | None = None,
    window: str | None = None,
    bands: Sequence[int] | None = None,
    lr_bands: Sequence[int] | None = None,
    variable: str | None = None,
    lr_nodata: float | None = None,
    hr_variable: str | None = None,
    lr_scaling: Mapping[int, tuple[float, float]] | None = None,
    lr_missing: Sequence[float] = (),
) -> tuple[list[np.ndarray], list[str], Window, int, str]:
    """The panels of :func:`render_compare` on the output grid, unstretched (geosr, bicubic,
    then the reference), their titles, the window (output pixels), the scale and the bands
    shown (:func:`shown_bands`).

    ``lr_nodata`` overrides ``lr``'s own nodata, each band's own and its further missing values
    (a CF ``missing_value``), as ``--nodata`` did for the run (:func:`~geosr.io.scene.with_nodata`);
    ``lr_missing``: those the run kept beside it (:attr:`~geosr.io.scene.Scene.missing_values`).
    ``hr_variable`` is the variable of a Zarr (netCDF, HDF5) ``hr``, as ``variable`` is ``lr``'s;
    ``lr_scaling`` the (scale, offset) of bands of ``lr`` (by 1-based number) for a file that
    declares none, as the run's STAC Item gave them."""
    sr_scene = _raster_scene(sr, "SR")
    raster = stac_raster(lr, sr_scene)
    recorded = sr_scene.tags.get("GEOSR_VARIABLE")
    lr_scene = _lr_scene(lr, raster, variable, lr_nodata, lr_scaling, lr_missing, recorded=recorded)
    scale = _checked_scale(lr, sr, lr_scene, sr_scene)
    # The dates of a cube input are the output's bands (named by their dates): not colours, as
    # its --quicklook shows them; dates 1, 2, 3 were drawn as red, green, blue (nodata where any was).
    show = display_bands(sr_scene, bands) if bands or lr_scene.band_axis == "band" else [0]
    win, target, output = _output_panel(lr_scene, sr_scene, sr, window, show, scale, lr=lr)
    from_lr = read_positions(lr_scene, lr_bands) if lr_bands else None
    if from_lr is None:
        from_lr = source_bands(sr_scene, lr_scene, show)
    check_bands(lr_scene, from_lr, sr)
    bicubic = _on_grid(lr_scene, from_lr, target, Resampling.cubic, other=sr)
    panels = [output, _shown_where(output, bicubic)]
    titles = [" ".join(filter(None, ("geosr", sr_scene.tags.get("GEOSR_MODEL"), f"x{scale}"))), "bicubic"]
    if hr is not None:
        reference = _reference_panel(hr, sr, hr_variable, sr_scene, show, target, output, (lr_scene, from_lr))
        panels.append(reference)
        titles.append("reference")
    return panels, titles, win, scale, shown_bands(sr_scene, show)


def _lr_scene(
    lr: str,
    raster: Resolved,
    variable: str | None,
    lr_nodata: float | None,
    lr_scaling: Mapping[int, tuple[float, float]] | None,
    lr_missing: Sequence[float],
    *,
    recorded: str | None = None,
) -> Scene:
    """The LR input ``lr`` (the raster of its STAC Item, ``raster``) with the nodata, missing values,
    scale and offset its run read it with (:func:`compare_panels`).  ``recorded``: the variable
    the run read (``GEOSR_VARIABLE``), read from a store or file of several variables where no
    ``variable`` is given.

    Raises
    ------
    GeosrError
        ``lr`` cannot be read, or ``lr_nodata`` does not fit its dtype.
    """
    lr_scene = _open_lr(raster.href, variable, recorded)
    if lr_nodata is not None:
        from geosr.io.sink import check_nodata_of

        check_nodata_of(lr, lr_nodata, lr_scene.dtype)  # NaN in a uint16 LR would hide nothing
        # A run's --nodata made the missing values data: the bicubic panel hid them still.
        lr_scene = dataclasses.replace(with_nodata(lr_scene, lr_nodata), missing_values=tuple(lr_missing))
    else:
        lr_scene = with_declared_nodata(lr_scene, raster.nodata)  # the Item's raster:bands, as the run
    # The output declares the Item's scale and offset (the run gave them to it): the LR, read
    # in the same units, must too.
    if lr_scaling:
        declared = tuple(lr_scaling.get(number) for number in range(1, lr_scene.count + 1))
        lr_scene = with_declared_scaling(lr_scene, declared)
    return with_declared_scaling(lr_scene, raster.scaling)


def _checked_scale(lr: str, sr: str, lr_scene: Scene, sr_scene: Scene) -> int:
    """The scale of ``sr`` over ``lr``, once they are known to overlap and ``sr`` to be finer.

    Raises
    ------
    InputError
        The rasters do not overlap, or ``sr``'s pixels are not smaller than ``lr``'s, or it
        has less than one of them.
    """
    # First: the pixel sizes of rasters far apart (or in other units) give no scale.
    if _footprint_window(lr_scene, sr_scene.grid) is None:
        raise _no_overlap(lr, sr)
    scale = _scale(lr_scene, sr_scene)
    if scale <= 1:  # a raster compared with itself, or with another of its resolution
        raise InputError(
            f"{sr}: its pixels are not smaller than those of {lr}; is it the super-resolved output?"
        )
    sh, sw = sr_scene.grid.shape.yx
    if sh < scale or sw < scale:
        raise InputError(
            f"{sr}: its {sw} x {sh} px are less than one pixel of {lr} (x{scale}); "
            "is it the super-resolved output of that input?"
        )
    return scale


def _output_panel(
    lr_scene: Scene, sr_scene: Scene, sr: str, window: str | None, show: list[int], scale: int, *, lr: str
) -> tuple[Window, GeoBox, np.ndarray]:
    """The window shown (output pixels), its grid and the output's panel on it; ``lr`` and ``sr``
    name the inputs as given.

    The default window is moved onto the output's data where the centred one shows none.

    Raises
    ------
    GeosrError
        ``window`` is malformed or outside the rasters, or the output cannot be read.
    """
    if window is None:
        win = _default_window(lr_scene, sr_scene, scale)
    else:
        # The LR file's own pixels: an AOI output covers only part of it.
        lr_window = parse_window(window, lr_scene.grid.shape.yx, source=lr)
        win = _sr_window(lr_scene, sr_scene, lr_window, window, sr)
    target = _panel_grid(sr_scene, win)
    output = _on_grid(sr_scene, show, target, Resampling.nearest, other=sr)
    if window is None and not np.isfinite(output).all(axis=0).any():
        sh, sw = sr_scene.grid.shape.yx
        part = _covered(sr_scene.grid, lr_scene.grid) or Window(0, 0, sh, sw)
        moved = _onto_data(sr_scene, show, win, scale, part)
        if moved != win:
            win, target = moved, _panel_grid(sr_scene, moved)
            output = _on_grid(sr_scene, show, target, Resampling.nearest, other=sr)
    return win, target, output


def _reference_panel(
    hr: str,
    sr: str,
    hr_variable: str | None,
    sr_scene: Scene,
    show: list[int],
    target: GeoBox,
    output: np.ndarray,
    source: tuple[Scene, Sequence[int]],
) -> np.ndarray:
    """The reference ``hr``'s panel on ``target``, hidden where the ``output`` panel shows nothing;
    with a warning where it is in other units than the output, or coarser.  ``source``: the LR
    input and the positions of the bands ``show`` in it (:func:`reference_bands`).

    Raises
    ------
    GeosrError
        ``hr`` cannot be read, or lacks the bands shown.
    """
    hr_scene = _open_reference(hr, hr_variable)
    from_hr = reference_bands(sr_scene, hr_scene, show, *source)
    check_bands(hr_scene, from_hr, sr)
    reference = _shown_where(output, _on_grid(hr_scene, from_hr, target, Resampling.nearest, other=sr))
    _warn_out_of_stretch(hr, sr, output, reference, together=eight_bit_rgb(sr_scene))
    coarser = _scale(hr_scene, sr_scene)
    if coarser > 1:  # the LR given as --hr, say: its blocks look like a poor model's
        warn(
            f"{hr}: its pixels are {coarser} times as large as those of {sr}, so the reference "
            "panel shows them enlarged; give a reference of the output's resolution or finer as --hr"
        )
    return reference


def _shown_where(output: np.ndarray, panel: np.ndarray) -> np.ndarray:
    """``panel`` (bicubic, reference) hidden (NaN) where the ``output`` panel shows nothing (nodata
    in a band shown): outside an ``--aoi`` polygon the output is nodata, and the bicubic and
    reference panels showed the input there, beside an output cut to the polygon."""
    return np.where(np.isfinite(output).all(axis=0), panel, np.float32(np.nan))


def _warn_out_of_stretch(
    hr: str, sr: str, output: np.ndarray, reference: np.ndarray, *, together: bool = False
) -> None:
    """Say so when the reference panel is all but black (or white) in the output's stretch,
    which every panel shares: a reference of other units (another sensor's bytes against
    reflectance x 10000, a file without the scale and offset it needs) was drawn black
    without a word, as though it were a failed read."""
    lo, hi = stretch_limits(output, together=together)
    valid = [b for b in range(len(reference)) if np.isfinite(reference[b]).any()]
    if not valid:
        return
    medians = {b: float(np.nanmedian(reference[b])) for b in valid}
    # Units differ by a factor (40 from bytes to reflectance x 10000): half the darkest value
    # shown, or twice the brightest; a brighter date of the same units is no other unit.
    for below, colour in ((True, "black"), (False, "white")):
        if all((0 < 2 * medians[b] < lo[b]) if below else (medians[b] > 2 * hi[b] > 0) for b in valid):
            b = valid[0]
            warn(
                f"{hr}: most of its values lie {'below' if below else 'above'} the stretch of {sr} "
                f"(median {medians[b]:.4g} against {lo[b]:.4g} to {hi[b]:.4g}), so the reference panel "
                f"is all but {colour}: is it in other units than the output (another sensor's "
                "values, or a file without the scale and offset it needs)? Give --hr a reference in "
                "the output's units"
            )


def render_compare(
    lr: str,
    sr: str,
    png: Path,
    *,
    hr: str | None = None,
    window: str | None = None,
    bands: Sequence[int] | None = None,
    lr_bands: Sequence[int] | None = None,
    variable: str | None = None,
    lr_nodata: float | None = None,
    hr_variable: str | None = None,
    lr_scaling: Mapping[int, tuple[float, float]] | None = None,
    lr_missing: Sequence[float] = (),
) -> Path:
    """Write the comparison PNG; see the module docstring.

    ``bands`` are 0-based positions in ``sr`` (and ``hr``); ``lr_bands`` the
    numbers (1-based) of the matching bands of ``lr``'s file (default: from ``sr``'s
    record of a ``--bands`` run, :func:`source_bands`); ``variable`` the data
    variable of a Zarr ``lr`` (``hr_variable`` of ``hr``); ``lr_nodata`` overrides ``lr``'s nodata
    (``lr_missing`` kept beside it) and ``lr_scaling`` its missing scale and offset (:func:`compare_panels`).
    """
    panels, titles, win, _, shown = compare_panels(
        lr,
        sr,
        hr=hr,
        window=window,
        bands=bands,
        lr_bands=lr_bands,
        variable=variable,
        lr_nodata=lr_nodata,
        hr_variable=hr_variable,
        lr_scaling=lr_scaling,
        lr_missing=lr_missing,
    )
    if not np.isfinite(panels[0]).all(axis=0).any():  # as panel_rgba: nodata in any band is not shown
        # A black PNG reads as a failed run; the centre of a swath edge or of a cloudy date is nodata.
        warn(
            f"{png}: no pixel of {sr} in the window shown is valid (nodata in a band shown), so "
            "every panel is empty; choose a window with data: `geosr compare --window "
            "col,row,width,height` (or other bands: `--bands`)"
        )
    sr_scene = _raster_scene(sr, "SR")
    # 8-bit RGB is balanced as stored: each band stretched on its own tinted a grey road cyan.
    together = eight_bit_rgb(sr_scene)
    draw_figure(panels, titles, win, sr_scene.grid, png, Path(sr).name, shown, together=together)
    return png


def _check_folder_given(text: str) -> None:
    """Refuse an empty ``-o``, and one ending in '/' that is no existing folder: as a Path the
    slash is dropped, so ``-o c.png/ --overwrite`` replaced the file c.png, and ``-o new/`` was
    told that 'new' is no PNG, as ``geosr run -o`` was before it said so
    (:func:`~geosr.run_outputs.check_output_given`)."""
    if not text.strip():  # an unset shell variable (-o "$OUT"): as a Path, the working folder
        raise OptionError("--output is empty; give a path or leave the option out")
    folder = Path(text)
    if not text.endswith("/") or folder.is_dir():
        return
    if folder.exists():
        raise OptionError(
            f"--output {text}: {folder} is a file, not a folder; drop the '/' to write that file "
            "(with --overwrite), or give a folder"
        )
    made = f"mkdir -p {shell_quoted(str(folder))}"
    raise OptionError(f"--output {text}: no such folder; create it first ({made}) or give a .png")


def compare_files(
    lr: str,
    sr: str,
    png: str | Path,
    *,
    hr: str | None = None,
    window: str | None = None,
    bands: str | None = None,
    overwrite: bool = False,
    variable: str | None = None,
    nodata: float | None = None,
    hr_variable: str | None = None,
) -> Path:
    """``geosr compare``: check the destination, pick the bands, render.

    ``nodata`` overrides ``lr``'s nodata value, as ``geosr run --nodata`` did for the run
    (and as its ``--quicklook`` does): a JP2's undeclared 0 is not data in the bicubic panel.
    """
    png = _compare_png(png)
    _check_png_writable(png, lr, sr, hr, overwrite)
    for flag, value in (("--hr", hr), ("--variable", variable), ("--hr-variable", hr_variable)):
        if value is not None and not value.strip():  # --hr '' was read as the folder '.'
            raise OptionError(f"{flag} is empty; give a value or leave the option out")
    if hr_variable is not None and hr is None:
        raise OptionError(
            f"--hr-variable {hr_variable} names a variable of the --hr reference; give --hr too"
        )
    positions = _band_positions(sr, bands)
    # Its reads left the files open in the thread's cache: a notebook's every comparison
    # kept two or three more descriptors, and a deleted output's disk space, for good; and
    # the folder of an Item's stack of assets until the process exited.
    with stacks_removed(), datasets_closed():
        return render_compare(
            lr,
            sr,
            png,
            hr=hr,
            window=window,
            bands=positions,
            variable=variable,
            lr_nodata=nodata,
            hr_variable=hr_variable,
        )


def _compare_png(png: str | Path) -> Path:
    """The PNG ``-o`` names: ``png``, or :data:`COMPARE_PNG` in the folder it names.

    Raises
    ------
    OptionError
        ``png`` is empty, too long, a folder that is not one, or no ``.png``.
    """
    # As the command's shell gives it (and as the rasters are read): '~/c.png' was '~: no such
    # directory for the quicklook'.  Text, which keeps the '/' that says a folder.
    given = str(png)
    if given == "-":
        # As geosr run -o - says: '-: the quicklook is a PNG' read '-' as a file name lacking .png.
        raise OptionError(
            "-o -: the quicklook is written to a file, not to standard output; give a path ending in .png"
        )
    given = local_file_text(given) or home_expanded(given)
    refuse_overlong_name("--output", given)
    _check_folder_given(given)
    path = Path(given)
    if path.is_dir() and not is_zarr_path(path):
        # As geosr run -o takes a folder (a Zarr store is an output, no folder for it): it was
        # refused as 'the quicklook is a PNG'.
        path = path / COMPARE_PNG
    if path.suffix.lower() != ".png":
        raise OptionError(f"{path}: the quicklook is a PNG; give an -o path ending in .png")
    return path


def _check_png_writable(png: Path, lr: str, sr: str, hr: str | None, overwrite: bool) -> None:
    """Refuse a ``png`` that would replace a raster compared, or an earlier PNG without
    ``overwrite``, or that cannot be written where it is.

    Raises
    ------
    OptionError
        ``png`` is one of the rasters ``lr``, ``sr`` and ``hr``.
    OutputError
        ``png`` exists and ``overwrite`` is not given, or its folder is missing or unwritable.
    """
    # --overwrite replaces an earlier PNG, never a raster the comparison reads: a PNG with a
    # world file is one GDAL reads, and ``-o ref.png --overwrite`` replaced it.
    named = [
        (what, path) for what, path in (("LR input", lr), ("output", sr), ("--hr reference", hr)) if path
    ]
    found = overwritten_input(png, named)
    if found is not None:
        raise OptionError(
            f"{png}: the PNG would overwrite the {found[0]} it compares; choose another -o path"
        )
    # is_symlink too: a dangling link "does not exist", and was replaced without a word.
    if (png.exists() or png.is_symlink()) and not overwrite:
        raise already_exists(png)
    if not png.parent.is_dir():
        # It said no more: the fix is the folder, as geosr run's line for a missing one says.
        raise OutputError(
            f"{png.parent}: no such directory for the quicklook; create it first "
            f"(mkdir -p {shell_quoted(str(png.parent))}) or choose another -o path"
        )
    refuse_kernel_file_system(png)  # its temporary was 'No such file or directory', in /proc
    why = unwritable_folder(png.parent)
    if why is not None:
        # Found out by the PNG's temporary once the panels were read and drawn: 'cannot write
        # the PNG ([Errno 30] Read-only file system: 'out/.c.png.tmp')', and no fix.
        raise OutputError(f"cannot write {png}: {why}; choose another -o path")


def _band_positions(sr: str, bands: str | None) -> list[int] | None:
    """The positions (0-based) in ``sr`` of the ``--bands`` shown, or None for the default ones.

    Raises
    ------
    GeosrError
        ``bands`` is malformed, names bands ``sr`` lacks, or is neither 1 nor 3 bands.
    """
    if bands is None:
        return None
    # '' is refused (parse_bands), as geosr run does: it showed the default bands.
    from geosr.io.bands import band_indexes, parse_bands

    positions = [i - 1 for i in band_indexes(_raster_scene(sr, "SR"), parse_bands(bands))]
    if len(positions) not in (1, 3):  # a panel is grey or red, green, blue
        raise OptionError(
            f"--bands {bands}: give 1 band (shown in grey) or 3 (shown as red, green, blue), "
            f"not {len(positions)}"
        )
    return positions


def write_compare(scene: Scene, output: Path, png: Path) -> Path | None:
    """The ``--quicklook`` of a run: its input (only its selected bands) against its output."""
    positions = display_bands(scene)
    lr_bands = [scene.bands[p] if scene.bands else p + 1 for p in positions]
    # A STAC Item's stacked assets: the run's own VRT (scene.path is the Item, not a raster).
    lr = scene.subdataset if is_stac_item(scene.path) and scene.subdataset else scene.path
    # The run's scale and offset, which an Item's asset (--asset) may declare and its file not:
    # the output declares them, so the bicubic panel was integers beside its reflectance.
    numbers = scene.bands or range(1, scene.count + 1)
    offsets = scene.offsets or (0.0,) * len(scene.scales)
    scaling = {n: (a, b) for n, a, b in zip(numbers, scene.scales, offsets, strict=False)}
    # The run's nodata (--nodata over the file's): a JP2's undeclared 0 is not data in the panel either;
    # and the missing values it kept (none after --nodata).
    return render_compare(
        lr,
        str(output),
        png,
        bands=positions,
        lr_bands=lr_bands,
        variable=scene.variable_name,
        lr_nodata=scene.nodata,
        lr_scaling=scaling,
        lr_missing=scene.missing_values,
    )
