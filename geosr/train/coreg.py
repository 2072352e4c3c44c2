"""Co-registration of a low/high-resolution pair of rasters: grid, sub-pixel shift, radiometry.

1. :func:`reproject_onto_lr_grid` puts the HR raster on the LR grid refined by ``s`` (the grid a
   super-resolved LR would have), with rasterio's warper: ``average`` resampling when the HR
   pixels are at least 1.5 times finer than that grid (a pixel that valid HR pixels do not
   wholly cover is invalid), ``cubic`` otherwise.  This removes everything the georeferencing
   knows (CRS, pixel size, origin).
2. :mod:`geosr.train.registration` measures and undoes what the georeferencing does not know,
   the residual sub-pixel shift, and matches the HR's radiometry to the LR's, on arrays.

This module reads the rasters (bands, nodata, masks), checks that the two make a pair (bands,
pixel sizes, footprints, CRSs) and chains the steps in :func:`coregister`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.enums import Resampling
from rasterio.windows import Window

from geosr.aoi import footprints_overlap
from geosr.areas import projected
from geosr.errors import InputError, counted
from geosr.grid import cropped, crs_code, crs_label, scaled, source_roi, warp_onto, window_grid
from geosr.io.coordinates import refuse_uneven_coordinates
from geosr.io.names import open_raster
from geosr.io.scene import (
    check_georeferenced,
    check_input_exists,
    chosen_bands,
    data_bands,
    declared_invalid,
    file_mask,
    geolocated,
    raster_crs,
    raster_grid,
    refuse_palette,
    unreadable,
)
from geosr.normalise import valid_mask
from geosr.run_inputs import warn_float_fill_of
from geosr.train.degrade import area_downsample
from geosr.train.registration import estimate_shift, histogram_match, undo_shift

HR_PIXEL_TOLERANCE = 0.15
"""How much coarser than LR pixel / scale an HR pixel may be.  Reprojection
between CRSs changes pixel sizes by a few per cent (UTM scale factor, a
neighbouring zone); a wrong scale or a swapped pair is off by 25 % (x3 for
x4) or more."""


@dataclass(frozen=True)
class RasterBands:
    """Bands of a raster read as float32 with NaN for nodata, plus its grid."""

    data: np.ndarray
    grid: GeoBox
    dtype: str
    path: str


PAIR_FILL_REMEDY = "declare it in the file (gdal_edit.py -a_nodata {value} FILE)"
"""How a paired training raster's float fill value is declared: a pair takes each file's own nodata."""


def read_failed(path: str | Path, exc: BaseException) -> InputError:
    """The one-line error for a raster that opens but whose pixels cannot be read.

    rasterio's own message is only "Read failed. See previous exception"; GDAL's
    reason (e.g. "TIFFReadEncodedTile() failed") is in the chained exception.
    """
    reason = exc.__cause__ or exc.__context__ or exc
    lines = str(reason).strip().splitlines() or [type(reason).__name__]
    return InputError(
        f"{path}: reading pixels failed ({lines[0]}); the file is probably truncated or corrupt"
    )


def _open_pair_raster(path: str | Path) -> rasterio.DatasetReader:
    """Open a raster of a pair, refusing what co-registration cannot use (the caller closes it)."""
    check_input_exists(str(path))
    try:
        src = open_raster(path)
    except rasterio.errors.RasterioIOError as exc:
        # geosr run's line: 'cannot open URL: CURL error ...' named no fix.
        raise unreadable(str(path), exc) from None
    try:
        refuse_palette(path, src)
        located = bool(src.gcps[0]) or src.rpcs is not None or geolocated(src)
        crs = raster_crs(src)
        if crs is None and not located:  # else rasterio's 'Missing src_crs.' traceback in the warp
            raise InputError(
                f"{path}: the raster has no CRS, which a pair needs (the HR is reprojected onto the "
                "LR grid); assign one first, e.g. gdal_edit.py -a_srs EPSG:32633 FILE"
            )
        # GCPs or RPCs alone were told to assign a CRS (to a grid of pixel numbers), and a
        # CRS without a geotransform was warped as pixel numbers read as metres.
        check_georeferenced(str(path), src, crs)
        # A netCDF on unevenly spaced coordinates, which GDAL spreads evenly: refused as a run refuses it.
        refuse_uneven_coordinates(str(path), src)
    except BaseException:
        src.close()
        raise
    return src


def read_raster(
    path: str | Path,
    bands: tuple[int, ...] | None = None,
    *,
    within: GeoBox | None = None,
    key: str = "bands",
) -> RasterBands:
    """Read ``bands`` (1-based; all but alpha bands when None) as float32 with NaN where invalid.

    ``key``: the keyword that gave ``bands``, which the line refusing them names
    (:func:`~geosr.io.scene.chosen_bands`).

    With ``within``, only the part of the raster that a warp onto ``within`` reads, plus
    :data:`READ_PADDING` pixels (possibly none): an aerial tile paired with a small LR
    scene was read whole, gigabytes of float32 for a few megabytes used.
    """
    with _open_pair_raster(path) as src:
        idx = chosen_bands(path, src, bands, key=key)
        grid = raster_grid(src)
        window = None
        if within is not None:
            check_transformable(path, grid, within)
            rows, cols = source_roi(grid, within, padding=READ_PADDING)
            grid = cropped(grid, rows, cols)
            window = Window.from_slices(rows, cols)
        try:
            raw = src.read(idx, masked=True, window=window)
            # A float fill value (1e+39 beyond float32) is invalid, as geosr run has it, said in
            # the run's line: cast as it was, numpy's bare 'overflow encountered in cast' said it.
            fill = ~valid_mask(raw.data, None) & ~np.ma.getmaskarray(raw)
            if raw.dtype.kind == "f" and fill.any():
                warn_float_fill_of(
                    str(path),
                    raw.filled(np.nan),
                    None,
                    "left out of the pairs",
                    PAIR_FILL_REMEDY,
                    sampled=False,
                )
            with np.errstate(over="ignore"):
                arr = raw.astype(np.float32).filled(np.nan)
            arr[fill] = np.nan
            # A netCDF variable's missing_value other than its _FillValue (GDAL's nodata), as a run
            # reads it: it was paired as data.
            arr[np.isin(raw.data, declared_invalid(src, idx)["missing_values"])] = np.nan
            if len(data_bands(src)) < src.count:  # an alpha band GDAL may not take as the mask
                arr[:, file_mask(src, window) == 0] = np.nan
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise read_failed(path, exc) from None
        return RasterBands(arr, grid, src.dtypes[0], str(path))


READ_PADDING = 4
"""HR pixels read around the part a warp onto the LR grid x s needs: cubic resampling reads
2 beyond a pixel, and the coverage of an averaged pixel must not reach the window's edge."""


def reproject_onto_lr_grid(
    hr_path: str | Path,
    lr_grid: GeoBox,
    scale: int,
    *,
    bands: tuple[int, ...] | None = None,
    lr_name: str = "the LR raster",
    key: str = "bands",
) -> np.ndarray:
    """The HR raster on ``lr_grid`` refined by ``scale``: (C, H, W) float32, NaN where invalid.

    An HR pixel coarser than the LR pixel / ``scale`` (beyond
    :data:`HR_PIXEL_TOLERANCE`) is refused: the pair is swapped, the same file
    twice, or ``scale`` is wrong.  A finer one is area-averaged onto the grid.
    """
    target = scaled(lr_grid, scale)
    hr = read_raster(hr_path, bands, within=target, key=key)
    if 0 in hr.data.shape:  # beside the LR grid: nothing maps
        return np.full((hr.data.shape[0], *target.shape.yx), np.nan, np.float32)
    ratio = _hr_pixel_ratio(hr_path, hr.grid, lr_grid, scale, lr_name)
    if ratio < 1.5:
        return warp_onto(hr.data, hr.grid, target, Resampling.cubic)
    out = warp_onto(hr.data, hr.grid, target, Resampling.average)
    out[~(_coverage(hr, target) > 0.999)] = np.nan
    return out


def _coverage(hr: RasterBands, target: GeoBox) -> np.ndarray:
    """The fraction of each ``target`` pixel that valid HR pixels cover, per band.

    GDAL's ``average`` gives the mean of whatever valid HR pixels a target pixel holds:
    one that is 60 % nodata, or beyond the HR's edge, held the mean of the other 40 %,
    as valid as any.  The valid mask, with a ring of invalid pixels around it (GDAL
    leaves what lies beyond the source out of the mean), averages to that fraction.
    """
    valid = np.pad(np.isfinite(hr.data), ((0, 0), (1, 1), (1, 1))).astype(np.float32)
    ring = window_grid(hr.grid, -1, -1, *valid.shape[1:])  # GeoBox.pad(1), composed with @ (cropped)
    return warp_onto(valid, ring, target, Resampling.average)


def _hr_pixel_ratio(hr_path: str | Path, hr_grid: GeoBox, lr_grid: GeoBox, scale: int, lr_name: str) -> float:
    """LR pixel / ``scale`` over the HR pixel, refused below 1 - :data:`HR_PIXEL_TOLERANCE`."""
    hr_pixel = pixel_size_in(hr_grid, lr_grid)
    ratio = _pixel(scaled(lr_grid, scale)) / hr_pixel if hr_pixel else 1.0
    if ratio < 1.0 - HR_PIXEL_TOLERANCE:
        raise InputError(
            f"{hr_path}: its pixel ({_length(hr_pixel, lr_grid)}) is coarser than {lr_name}'s pixel "
            f"({_length(_pixel(lr_grid), lr_grid)}) / {scale}; check --scale, or whether --lr and "
            "--hr are swapped"
        )
    return ratio


def _pixel(grid: GeoBox) -> float:
    """Edge of a square pixel of the same area as ``grid``'s (rotation-proof)."""
    a = grid.transform
    return float(abs(a.a * a.e - a.b * a.d) ** 0.5)


def pixel_size_in(grid: GeoBox, reference: GeoBox) -> float | None:
    """``grid``'s pixel size in ``reference``'s CRS units (None when it cannot be said).

    Pixel sizes in two CRSs (degrees and metres, two UTM zones) cannot be
    compared as numbers, so the size is the one GDAL would give the raster
    reprojected into ``reference``'s CRS, at the same number of pixels.
    """
    if grid.crs is None or reference.crs is None:
        return None
    if grid.crs == reference.crs:
        return _pixel(grid)
    from rasterio.crs import CRS
    from rasterio.warp import calculate_default_transform

    try:
        left, bottom, right, top = grid.extent.boundingbox
        transform, _, _ = calculate_default_transform(
            CRS.from_wkt(grid.crs.to_wkt()),
            CRS.from_wkt(reference.crs.to_wkt()),
            grid.width,
            grid.height,
            left,
            bottom,
            right,
            top,
        )
    except (rasterio.errors.RasterioError, ValueError):
        return None  # no usable transformation: the warp itself will say so
    return float(abs(transform.a * transform.e - transform.b * transform.d) ** 0.5)


def _length(value: float | None, grid: GeoBox) -> str:
    """``30 m``, ``0.0003°`` ... in ``grid``'s CRS units, for messages."""
    if value is None:
        return "?"
    crs = grid.crs
    if crs is not None and crs.geographic:
        return f"{value:.3g}°"
    try:
        unit = crs.units[1] if crs is not None else ""
    except ValueError:  # neither projected nor geographic
        unit = ""
    unit = "m" if unit in ("metre", "meter") else unit
    return f"{value:.3g} {unit}".strip()


@dataclass(frozen=True)
class AlignedPair:
    """A co-registered pair on the LR grid and the LR grid x scale.

    ``lr`` ``(C, h, w)`` and ``hr`` ``(C, H, W)`` float32 with NaN where
    invalid; ``hr`` is shift-corrected and histogram-matched to ``lr``;
    ``shift`` is the residual shift that was removed, in HR pixels.
    """

    lr: np.ndarray
    hr: np.ndarray
    lr_grid: GeoBox
    lr_dtype: str
    shift: tuple[float, float]


def check_transformable(path: str | Path, grid: GeoBox, onto: GeoBox) -> None:
    """Refuse a raster whose CRS PROJ cannot transform into ``onto``'s (a local CRS, say).

    It was pyproj's 'ProjError: Error creating Transformer from CRS.' traceback.
    """
    from pyproj.exceptions import ProjError

    assert onto.crs is not None  # a pair raster without a CRS is refused when opened
    try:
        projected(grid.extent, onto.crs)
    except ProjError:
        # The LR's own code, never one it resembles: odc-geo's crs.epsg took a UTM zone on the
        # International ellipsoid without a datum for ED50's EPSG:23033, ~100 m off once warped.
        srs = crs_code(onto.crs) or "CRS"
        raise InputError(
            f"{path}: its CRS ({crs_label(grid.crs)}) cannot be transformed into the LR's "
            f"({crs_label(onto.crs)}); put both rasters in one CRS first, e.g. gdalwarp -t_srs {srs} "
            "FILE warped.tif"
        ) from None


def _no_overlap(hr_path: str | Path, lr_path: str | Path) -> str:
    return f"{hr_path} does not overlap {lr_path} (no valid HR pixel on the LR grid)"


def _nothing_valid(hr_path: str | Path, lr_path: str | Path, lr_grid: GeoBox) -> str:
    """Why the HR raster gives no valid pixel on the LR grid: it lies elsewhere, or it is
    nodata or NaN all over the LR raster, which was told as 'does not overlap' too."""
    with open_raster(hr_path) as src:
        hr_grid = raster_grid(src)
    if footprints_overlap(hr_grid, lr_grid):
        return (
            f"{hr_path} is nodata or NaN wherever it overlaps {lr_path}: no valid HR pixel to pair; "
            "check its nodata value and mask (gdalinfo)"
        )
    return _no_overlap(hr_path, lr_path)


def _check_band_counts(lr_path: str | Path, lr_count: int, hr_path: str | Path, hr_count: int) -> None:
    if hr_count != lr_count:
        raise InputError(
            f"{lr_path} gives {counted(lr_count, 'band')} and {hr_path} {hr_count}: a pair needs the "
            "same bands in the same order; write them out with gdal_translate -b N ... (or pass "
            "lr_bands/hr_bands in Python)"
        )


def _pairs_anywhere(lr: np.ndarray, hr: np.ndarray, scale: int) -> bool:
    """Whether some LR pixel is valid in every band and wholly covered by HR pixels valid in
    every band: the pixels that the shift is measured on and the histograms matched over."""
    hr_blocks = area_downsample(np.isfinite(hr).all(axis=0).astype(np.float64), scale) > 0.999
    return bool((np.isfinite(lr).all(axis=0) & hr_blocks).any())


def check_pair(lr_path: str | Path, hr_path: str | Path, scale: int) -> None:
    """Refuse, from the files' metadata alone, a pair that :func:`coregister` would refuse.

    For a check of every pair before the first is co-registered: a bad pair was found
    only once the pairs before it had been (minutes each on real scenes).

    Raises
    ------
    InputError
        A file is missing or not a raster with a CRS, the HR pixel is too coarse for
        ``scale``, the band counts differ, or the HR lies beside the LR.
    """
    with _open_pair_raster(lr_path) as lr, _open_pair_raster(hr_path) as hr:
        lr_grid = raster_grid(lr)
        hr_grid = raster_grid(hr)
        check_transformable(hr_path, hr_grid, lr_grid)
        _hr_pixel_ratio(hr_path, hr_grid, lr_grid, scale, str(lr_path))
        _check_band_counts(
            lr_path, len(chosen_bands(lr_path, lr, None)), hr_path, len(chosen_bands(hr_path, hr, None))
        )
    if not footprints_overlap(hr_grid, lr_grid):
        raise InputError(_no_overlap(hr_path, lr_path))


def coregister(
    lr_path: str | Path,
    hr_path: str | Path,
    scale: int,
    *,
    lr_bands: tuple[int, ...] | None = None,
    hr_bands: tuple[int, ...] | None = None,
    match_histograms: bool = True,
    correct_shift: bool = True,
) -> AlignedPair:
    """Co-register an HR raster onto an LR raster (grid, residual shift, radiometry)."""
    lr = read_raster(lr_path, lr_bands, key="lr_bands")
    hr = reproject_onto_lr_grid(hr_path, lr.grid, scale, bands=hr_bands, lr_name=str(lr_path), key="hr_bands")
    _check_band_counts(lr_path, lr.data.shape[0], hr_path, hr.shape[0])
    hr_valid = np.isfinite(hr)
    if not hr_valid.any():
        raise InputError(_nothing_valid(hr_path, lr_path, lr.grid))
    if not _pairs_anywhere(lr.data, hr, scale):
        # Else 'co-registration: an image has no valid pixel', which named neither file.
        raise InputError(
            f"{hr_path} has no valid pixel (in every band) where {lr_path} has data: it covers only "
            "the LR's nodata, or a band of either is nodata all over; no pixel to pair, check both "
            "files' nodata and footprints (gdalinfo)"
        )
    shift = (0.0, 0.0)
    if correct_shift:
        shift = estimate_shift(lr.data, hr, scale, lr_valid=np.isfinite(lr.data), hr_valid=hr_valid)
        hr = undo_shift(hr, shift)
    if match_histograms:
        hr = histogram_match(hr, lr.data, scale, hr_valid=np.isfinite(hr), lr_valid=np.isfinite(lr.data))
    return AlignedPair(lr.data, hr, lr.grid, lr.dtype, shift)
