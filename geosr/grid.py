"""The output grid of a super-resolution run, from the input grid.

Georeferencing is one frozen value, odc-geo's :class:`~odc.geo.geobox.GeoBox`
(shape, affine transform, CRS), passed whole.  This module is the only place
that does arithmetic on transforms: the output grid has the same CRS, the
transform ``input.transform @ Affine.scale(1/s)`` (each pixel term divided by
``s``, the same origin) and exactly ``s`` times the pixels.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping

import numpy as np
import pyproj
from affine import Affine
from numpy.typing import DTypeLike
from odc.geo import CRS
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from odc.geo.roi import roi_normalise
from odc.geo.types import NormalizedROI, NormalizedSlice
from pyproj.exceptions import CRSError
from rasterio.enums import Resampling
from rasterio.warp import reproject

from geosr.errors import OptionError, catch_warnings_serialised


def scaled(grid: GeoBox, scale: int) -> GeoBox:
    """Return the grid with ``scale`` times the pixels on the same footprint.

    Parameters
    ----------
    grid : GeoBox
        The input grid.
    scale : int
        Integer zoom factor, >= 1.

    Returns
    -------
    GeoBox
        Shape ``(h * scale, w * scale)``, transform ``grid.transform @ scale(1/s)``,
        the same CRS.  Works for rotated/sheared transforms too.
    """
    if not isinstance(scale, int) or scale < 1:
        raise OptionError(f"scale must be a positive integer, got {scale!r}")
    h, w = grid.shape.yx
    t = grid.transform
    # Divided, not multiplied by 1 / s: 1/3 is rounded before the product, and a 10 m pixel
    # at x3 came out 3.333333333333333, not 10 / 3 = 3.3333333333333335 (0.6000000000000001
    # for 3 m at x5), one unit in the last place off the grid another tool makes of the same
    # pixel size, which xarray's alignment and GDAL's equal-grid checks compare exactly.
    transform = Affine(t.a / scale, t.b / scale, t.c, t.d / scale, t.e / scale, t.f)
    return GeoBox((h * scale, w * scale), transform, grid.crs)


def scaled_rpcs(rpcs: Mapping[str, str], scale: int, origin: tuple[int, int]) -> dict[str, str]:
    """RPCs (GDAL's ``RPC`` metadata domain) of :func:`scaled`'s grid of the window at ``origin``
    (row, col) of the file ``rpcs`` describe: the same ground point for each output pixel.

    RPC pixel coordinates count from the first pixel's centre, so a coordinate ``r`` of the file
    is ``scale * (r + 0.5 - row) - 0.5`` of the output: ``LINE_OFF`` and ``SAMP_OFF`` move so, and
    ``LINE_SCALE`` and ``SAMP_SCALE`` are multiplied by ``scale``.  Empty for no RPCs.
    """
    if not rpcs:
        return {}
    out = dict(rpcs)
    for axis, start in (("LINE", origin[0]), ("SAMP", origin[1])):
        offset, size = float(rpcs[f"{axis}_OFF"].split()[0]), float(rpcs[f"{axis}_SCALE"].split()[0])
        out[f"{axis}_OFF"] = repr(scale * (offset + 0.5 - start) - 0.5)
        out[f"{axis}_SCALE"] = repr(scale * size)
    return out


def describe(grid: GeoBox) -> str:
    """One-line human description: size, CRS and pixel size (and a rotation or shear)."""
    h, w = grid.shape.yx
    t = grid.transform
    crs = crs_label(grid.crs)
    if grid.axis_aligned:
        res = grid.resolution
        return f"{w} x {h} px, CRS {crs}, pixel {abs(res.x):g} x {abs(res.y):g}"
    # A pixel's sides are the transform's columns: their lengths, and say that they are
    # not along the axes (the output keeps the rotation; only its pixels are smaller).
    return (
        f"{w} x {h} px, CRS {crs}, pixel {math.hypot(t.a, t.d):g} x {math.hypot(t.b, t.e):g}, "
        "rotated or sheared"
    )


def crs_label(crs: CRS | None) -> str:
    """The CRS as a person reads it: ``EPSG:32633`` (or another authority's code, or the
    EPSG codes of a compound CRS's parts, ``EPSG:32633+5773``), else its name (a CRS given
    only as WKT, whose text would fill the screen), else its PROJ string (a CRS given as one
    has no name), else ``none``.

    A compound CRS of two EPSG codes was said to have none, and a PROJ string's CRS was
    ``'unknown' (WKT, no EPSG code)``, which read as no CRS at all.
    """
    if crs is None:
        return "none"
    code = crs_code(crs)
    if code is not None:
        # Another authority's code says what it names: ESRI:54009 (World_Mollweide).
        return code if code.startswith("EPSG:") else f"{code} ({crs.proj.name})"
    proj4 = _proj_string(crs) if crs.proj.name == "unknown" else None
    if proj4:
        return f"{proj4} (PROJ string, no EPSG code)"
    return f"{crs.proj.name!r} (WKT, no EPSG code)"


def crs_wkt(crs: CRS) -> str:
    """``crs`` as WKT that GDAL reads back as the same CRS: the WKT it was read from, if any.

    Not odc-geo's ``crs.wkt`` (pyproj's WKT2) alone: WKT2 restates a TOWGS84 scale of 6.7 ppm
    as the factor 1.0000067, which GDAL turned back into 6.69999999992 ppm in every output.
    A CRS named by a code (``EPSG:32633``) or a PROJ string has no WKT of its own; pyproj's
    is then exact.
    """
    text = str(crs)
    return text if _WKT_START.match(text) else crs.wkt


_WKT_START = re.compile(r"\s*[A-Za-z][A-Za-z0-9_]*\s*\[")


def parse_crs(text: str) -> CRS:
    """The CRS a person names: a code (``EPSG:32633``, ``ESRI:54009``), WKT, a PROJ string...

    Also a compound CRS by its parts' codes (``EPSG:32633+5773``, as PROJ and GDAL take it and
    :func:`crs_code` gives it), which odc-geo reads as one EPSG number and refused ('invalid
    literal for int()').

    Raises
    ------
    pyproj.exceptions.CRSError
        ``text`` names no CRS.
    """
    try:
        return CRS(text)
    except ValueError:
        return CRS(pyproj.CRS.from_user_input(text).to_wkt())


def crs_code(crs: CRS) -> str | None:
    """The code that names ``crs`` exactly, as ``--bbox-crs`` and ``gdalwarp -t_srs`` take it:
    its EPSG code, another authority's (``ESRI:54009``), or the EPSG codes of a compound CRS's
    parts (``EPSG:32633+5773``); None for a CRS given only as WKT or as a PROJ string."""
    code = epsg_code(crs)
    if code is not None:
        return f"EPSG:{code}"
    authority = crs.proj.to_authority(min_confidence=100)  # ESRI:54009 and the like
    if authority is not None:
        return f"{authority[0]}:{authority[1]}"
    parts = [part.to_epsg(min_confidence=100) for part in crs.proj.sub_crs_list]
    if parts and None not in parts:
        return "EPSG:" + "+".join(str(part) for part in parts)
    return None


def _proj_string(crs: CRS) -> str | None:
    """``crs`` as a PROJ string, or None for one that has none (a local or engineering CRS)."""
    with catch_warnings_serialised():
        # "You will likely lose important projection information": it is a label, not the CRS.
        warnings.simplefilter("ignore", UserWarning)
        try:
            text = crs.proj.to_proj4()
        except CRSError:
            return None
    return text.replace(" +type=crs", "") if text else None


def epsg_code(crs: CRS) -> int | None:
    """The EPSG code that *is* ``crs``, or None.

    Not odc-geo's ``crs.epsg`` (pyproj's ``to_epsg()``), which takes a 70 % match: a
    UTM zone on the International 1924 ellipsoid with no named datum, as older
    software writes user-defined GeoTIFF CRSs, came out as ED50's EPSG:23033 (one of
    three codes that match it as well), and ``--stac`` wrote that ``proj:code`` in
    place of the CRS's WKT, so a reader shifted the scene by ED50's datum (~100 m).
    """
    return crs.proj.to_epsg(min_confidence=100)


def window_grid(grid: GeoBox, row: int, col: int, height: int, width: int) -> GeoBox:
    """The grid of a ``height x width`` pixel window at ``(row, col)`` of ``grid``.

    Unlike slicing a GeoBox, the window may lie partly or wholly outside
    ``grid`` (negative offsets, past the far edge): its transform is the same
    whole-pixel translation either way.
    """
    transform: Affine = grid.transform @ Affine.translation(col, row)
    return GeoBox((height, width), transform, grid.crs)


def cropped(grid: GeoBox, rows: slice | NormalizedSlice, cols: slice | NormalizedSlice) -> GeoBox:
    """``grid[rows, cols]``: the grid of those rows and columns (open or negative bounds as numpy
    takes them, clipped to ``grid``).

    Not odc-geo's slicing, which composes the transforms with ``*``: affine deprecates it
    (PendingDeprecationWarning "Use `@` matmul instead of `*` mul operator"), and every
    ``--bbox`` or ``--aoi`` run, ``geosr info`` and ``geosr evaluate`` of a user who shows
    such warnings (``python -W default``, pytest) printed that line, naming nothing of theirs.
    """
    rows, cols = roi_normalise((rows, cols), grid.shape.yx)
    return window_grid(grid, rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)


def zoomed_out(grid: GeoBox, factor: int) -> GeoBox:
    """``grid.zoom_out(factor)``: pixels ``factor`` times larger from the same origin, as many as
    cover the grid; composed with ``@``, not odc-geo's ``*`` (:func:`cropped`)."""
    h, w = grid.shape.yx
    transform: Affine = grid.transform @ Affine.scale(factor)
    return GeoBox((max(1, math.ceil(h / factor)), max(1, math.ceil(w / factor))), transform, grid.crs)


def source_roi(source: GeoBox, target: GeoBox, padding: int) -> NormalizedROI:
    """The rows and columns of ``source`` that a warp onto ``target`` reads, with ``padding``
    pixels around them (clipped to ``source``; empty slices where nothing maps).

    odc-geo's ``compute_reproject_roi``, also where either grid is in lon/lat on longitudes past
    180 (179.8 to 180.3, or a grid from 0 to 360): the other's footprint comes to it at -179.9,
    not 180.1, and the region was empty, so a paired HR raster so placed was 'nodata or NaN
    wherever it overlaps' its LR, and such a ``--frame`` was never fused, without a word.  Such
    a grid's pixels placed a turn of longitude west and east are tried too (GDAL's warper,
    which the pixels go through next, puts the two on one turn itself).

    Around a pole (within either grid, in other CRSs) odc-geo's fit of the reprojection failed
    ('Matrix is not positive definite'): a lon/lat ``--frame`` of a polar stereographic input was
    refused ('reprojecting the frame failed'), and of a polar frame of a lon/lat input up to the
    pole (a disc in the frame) only the middle was read, the rest left empty.  There the
    footprint of ``target``'s densified edges is taken (:func:`~geosr.aoi.pixel_box`): in lon/lat,
    every longitude from its farthest latitude to the pole.
    """
    from geosr.aoi import pixel_box, poles_within  # geosr.aoi imports this module

    if (
        None not in (source.crs, target.crs)
        and source.crs != target.crs
        and (poles_within(target) or poles_within(source))
    ):
        return _box_roi(source, pixel_box(source, target), padding)
    # The first of the largest: the grids as they are, unless a turn of one maps more pixels.
    rois = (
        compute_reproject_roi(s, t, padding=padding).roi_src for s in _turns(source) for t in _turns(target)
    )
    return max(rois, key=_pixels)


def _box_roi(source: GeoBox, box: tuple[float, float, float, float], padding: int) -> NormalizedROI:
    """The rows and columns of ``source`` under ``box`` (col0, row0, col1, row1 in its pixels), with
    ``padding`` pixels around them, clipped to ``source``."""
    c0, r0, c1, r1 = box
    if not all(math.isfinite(v) for v in box):
        return slice(0, 0), slice(0, 0)
    height, width = source.shape.yx
    rows = slice(max(math.floor(r0) - padding, 0), min(math.ceil(r1) + padding, height))
    cols = slice(max(math.floor(c0) - padding, 0), min(math.ceil(c1) + padding, width))
    return rows, cols


def _turns(grid: GeoBox) -> list[GeoBox]:
    """``grid``, and where it is in lon/lat past -180 or 180, the same pixels a turn west and east."""
    left, _, right, _ = grid.extent.boundingbox
    if grid.crs is None or not grid.crs.geographic or -180 <= min(left, right) <= max(left, right) <= 180:
        return [grid]
    return [grid] + [
        GeoBox(grid.shape, Affine.translation(turn, 0) @ grid.transform, grid.crs) for turn in (-360.0, 360.0)
    ]


def _pixels(roi: NormalizedROI) -> int:
    rows, cols = roi
    return max(rows.stop - rows.start, 0) * max(cols.stop - cols.start, 0)


def warp_onto(
    source: np.ndarray,
    source_grid: GeoBox,
    target: GeoBox,
    resampling: Resampling,
    dtype: DTypeLike = np.float32,
) -> np.ndarray:
    """``source`` ``(C, h, w)`` on ``source_grid``, NaN where it has no data, resampled
    band by band onto ``target``: ``(C, H, W)`` of ``dtype`` (floats), NaN where nothing maps."""
    out = np.full((source.shape[0], *target.shape.yx), np.nan, dtype)
    for band in range(source.shape[0]):
        reproject(
            source=source[band],
            destination=out[band],
            src_transform=source_grid.transform,
            src_crs=source_grid.crs,
            src_nodata=np.nan,
            dst_transform=target.transform,
            dst_crs=target.crs,
            dst_nodata=np.nan,
            resampling=resampling,
        )
    return out
