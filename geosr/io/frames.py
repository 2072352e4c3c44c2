"""Extra acquisitions (``--frame``) read on the reference scene's grid, block by block.

A frame on the reference's exact grid is read like the reference itself.  A
frame on another grid or CRS is reprojected on the fly: for each read window,
only the part of the frame under that window's footprint is read (with the
validity of any read: masks, nodata, missing values) and warped, never the whole
scene.  Pixels the frame does not cover come back as NaN, so the temporal
stacking treats them as invalid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.errors import RasterioError

from geosr.aoi import file_grid, footprints_overlap
from geosr.errors import InputError
from geosr.grid import source_roi, warp_onto, window_grid
from geosr.io.bands import canonical_band_name, select_bands
from geosr.io.scene import Scene, _mirror, _read_inside, exact_float, is_zarr_path, read_window
from geosr.tiling import Window


def check_frame(frame: Scene, reference: Scene) -> Scene:
    """Validate ``frame`` against ``reference``; on the same grid it shares the AOI window."""
    if frame.count != reference.count:
        raise InputError(
            f"{frame.path}: the frame has {frame.count} bands, the reference {reference.path} has "
            f"{reference.count}; frames must have the same bands (select them with --bands)"
        )
    if frame.is_zarr and is_zarr_path(frame.path):
        raise InputError(f"{frame.path}: frames must be GDAL rasters (GeoTIFF, JP2, ...), not Zarr")
    frame = in_reference_order(frame, reference)
    ref_file = file_grid(reference)
    if frame.grid == ref_file:
        return dataclasses.replace(
            frame, grid=reference.grid, origin=reference.origin, file_shape=reference.file_shape
        )
    if not footprints_overlap(frame.grid, reference.grid):
        raise InputError(
            f"{frame.path}: the frame does not overlap the reference scene {reference.path}; "
            "frames must be acquisitions of the same place"
        )
    return frame


def in_reference_order(frame: Scene, reference: Scene) -> Scene:
    """``frame`` with its bands in the reference's order, where both name the same bands
    in another order (B04,B03,B02 against B02,B03,B04).

    Frames are fused band by band, by position: before, such a frame went in with its
    blue band beside the reference's red one, and nothing said so.
    """
    ours, theirs = reference.descriptions, frame.descriptions
    if not ours or not theirs or not all(ours) or not all(theirs):
        return frame
    names = [canonical_band_name(str(d)) for d in ours]
    if (
        names == [canonical_band_name(str(d)) for d in theirs]
        or sorted(names) != sorted(canonical_band_name(str(d)) for d in theirs)
        or len(set(names)) != len(names)
    ):
        return frame
    return select_bands(frame, [str(d) for d in ours])


def read_frame_window(frame: Scene, reference: Scene, window: Window) -> np.ndarray:
    """``frame``'s pixels on ``reference``'s ``window`` (mirrored past the file), ``(C, h, w)``.

    Same grid: the frame's own pixels, as floats that hold them exactly
    (:func:`~geosr.io.scene.exact_float`) with NaN for its own nodata (the
    temporal stacking knows only the reference's).  Another grid: the same
    floats, bilinear, NaN where the frame has no data.
    """
    if (
        frame.origin == reference.origin
        and frame.file_shape == reference.file_shape
        and (frame.grid == reference.grid)
    ):
        return _valid_floats(frame, read_window(frame, window))
    h, w = reference.file_shape or reference.grid.shape.yx
    r_off, c_off = reference.origin
    rows = _mirror(np.arange(window.row, window.row + window.height) + r_off, h)
    cols = _mirror(np.arange(window.col, window.col + window.width) + c_off, w)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    target = window_grid(file_grid(reference), r0, c0, r1 - r0, c1 - c0)
    try:
        out = _warped(frame, target)
    except (RasterioError, OSError, ValueError) as exc:
        raise InputError(f"{frame.path}: reprojecting the frame failed ({exc})") from None
    return out[:, (rows - r0)[:, None], (cols - c0)[None, :]]


def _valid_floats(frame: Scene, pixels: np.ndarray) -> np.ndarray:
    """A read of ``frame`` as floats that hold its pixels exactly (:func:`~geosr.io.scene.exact_float`),
    NaN where they are invalid: reads mark masked pixels, each band's own nodata and further
    missing values so; its nodata is added (the temporal stacking knows only the reference's)."""
    pixels = pixels.astype(exact_float(pixels.dtype))
    if frame.nodata is not None:
        pixels[pixels == pixels.dtype.type(frame.nodata)] = np.nan
    return pixels


READ_PADDING = 2
"""Frame pixels read around the part a warp onto a window needs (bilinear reads 1 beyond a pixel)."""


def _warped(frame: Scene, target: GeoBox) -> np.ndarray:
    """``frame``'s pixels bilinear on ``target``, NaN where it has no valid pixel.

    The part of the frame's file under ``target`` is read as the reference is, invalid pixels
    NaN (:func:`_valid_floats`), then warped.  The warper, reading the file itself, took each
    band's own nodata value alone: a nodata colour (GDAL's ``NODATA_VALUES``) hid a valid pixel
    whose red alone was the colour's in red, and a netCDF's ``missing_value`` pixels were data.
    """
    source = file_grid(frame)
    rows, cols = source_roi(source, target, padding=READ_PADDING)
    dtype = exact_float(np.dtype(frame.dtype))
    if rows.stop <= rows.start or cols.stop <= cols.start:  # the frame does not reach this window
        return np.full((frame.count, *target.shape.yx), np.nan, dtype)
    read = Window(rows.start, cols.start, rows.stop - rows.start, cols.stop - cols.start)
    pixels = _valid_floats(frame, _read_inside(frame, read))
    # warp_onto goes band by band: GDAL's warper, given all bands at once, let band 1's nodata
    # pixels through as data where band 2 had data.
    read_grid = window_grid(source, read.row, read.col, read.height, read.width)
    return warp_onto(pixels, read_grid, target, Resampling.bilinear, dtype)
