"""Extra acquisitions (``--frame``) read on the reference scene's grid, block by block.

A frame on the reference's exact grid is read like the reference itself.  A
frame on another grid or CRS is reprojected on the fly: for each read window,
only that window's footprint is warped (rasterio's ``reproject`` reads the
frame's overlapping blocks), never the whole scene.  Pixels the frame does not
cover come back as NaN, so the temporal stacking treats them as invalid.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.warp import reproject

from geosr.aoi import file_grid
from geosr.errors import InputError
from geosr.grid import window_grid
from geosr.io.bands import canonical_band_name, select_bands
from geosr.io.scene import Scene, _dataset, _mirror, exact_float, read_window
from geosr.tiling import Window


def check_frame(frame: Scene, reference: Scene) -> Scene:
    """Validate ``frame`` against ``reference``; on the same grid it shares the AOI window."""
    if frame.count != reference.count:
        raise InputError(
            f"{frame.path}: the frame has {frame.count} bands, the reference {reference.path} has "
            f"{reference.count}; frames must have the same bands (select them with --bands)"
        )
    if frame.is_zarr:
        raise InputError(f"{frame.path}: frames must be GDAL rasters (GeoTIFF, JP2, ...), not Zarr")
    frame = in_reference_order(frame, reference)
    ref_file = file_grid(reference)
    if frame.grid == ref_file:
        return dataclasses.replace(
            frame, grid=reference.grid, origin=reference.origin, file_shape=reference.file_shape
        )
    assert reference.grid.crs is not None  # open_scene refuses rasters without a CRS
    overlap = frame.grid.extent.to_crs(reference.grid.crs).geom.intersects(reference.grid.extent.geom)
    if not overlap:
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
        pixels = read_window(frame, window)
        pixels = pixels.astype(exact_float(pixels.dtype))
        if frame.nodata is not None:
            pixels[pixels == pixels.dtype.type(frame.nodata)] = np.nan
        return pixels
    h, w = reference.file_shape or reference.grid.shape.yx
    r_off, c_off = reference.origin
    rows = _mirror(np.arange(window.row, window.row + window.height) + r_off, h)
    cols = _mirror(np.arange(window.col, window.col + window.width) + c_off, w)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    target = window_grid(file_grid(reference), r0, c0, r1 - r0, c1 - c0)
    out = np.full((frame.count, r1 - r0, c1 - c0), np.nan, exact_float(np.dtype(frame.dtype)))
    indexes = list(frame.bands) if frame.bands else list(range(1, frame.count + 1))
    # One band at a time, each with its own nodata value: GDAL's warper, given all
    # bands at once, let band 1's nodata pixels through as data where band 2 had data.
    nodata = frame.band_nodata or (frame.nodata,) * frame.count
    try:
        src = _dataset(frame)
        for band, (index, value) in enumerate(zip(indexes, nodata, strict=True)):
            reproject(
                rasterio.band(src, index),
                out[band],
                src_nodata=value,
                dst_transform=target.transform,
                dst_crs=target.crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
                **alpha_options(src),
            )
    except (RasterioError, OSError, ValueError) as exc:
        raise InputError(f"{frame.path}: reprojecting the frame failed ({exc})") from None
    return out[:, (rows - r0)[:, None], (cols - c0)[None, :]]


def alpha_options(src: rasterio.DatasetReader) -> dict[str, int]:
    """Warp options that make GDAL's warper honour an open frame's alpha band, as reads do.

    The warper takes a per-dataset mask (internal, ``.msk``) on its own, but not an
    alpha band: a frame's transparent pixels were warped in as data.  ``SRC_ALPHA_MAX``
    1 makes any non-zero alpha opaque, as :func:`~geosr.io.scene.file_mask` reads it
    (the warper would otherwise take a 16-bit alpha of 255 as nearly transparent).
    """
    alpha = [b for b, ci in enumerate(src.colorinterp, start=1) if ci == ColorInterp.alpha]
    return {"src_alpha": alpha[0], "SRC_ALPHA_MAX": 1} if alpha else {}
