"""Co-registration of a low/high-resolution pair: grid, sub-pixel shift, radiometry.

Three steps, each a pure function over arrays except the first:

1. :func:`reproject_onto_lr_grid` puts the HR raster on the LR grid refined by
   ``s`` (the grid a super-resolved LR would have), with rasterio's warper:
   ``average`` resampling when the HR pixels are at least 1.5 times finer than
   that grid (a pixel that valid HR pixels do not wholly cover is invalid),
   ``cubic`` otherwise.  This removes everything the
   georeferencing knows (CRS, pixel size, origin).
2. :func:`estimate_shift` measures what the georeferencing does not know, the
   residual sub-pixel shift, by phase correlation at LR resolution (the HR is
   area-averaged by ``s`` first so that both images hold the same
   frequencies), refined by an upsampled DFT around the peak (Guizar-Sicairos
   et al. 2008, precision ``1 / upsample`` LR pixels).  :func:`apply_shift`
   resamples the HR by the opposite shift (cubic spline); the pixels that this
   would take from beyond the HR's edge are invalid (NaN).
3. :func:`histogram_match` maps the HR radiometry onto the LR's, per band, by
   quantile mapping estimated between the *area-averaged* HR and the LR (both
   at LR resolution, so detail that the LR cannot see does not distort the
   mapping) and applied to the full-resolution HR.

Shift convention: ``(dy, dx)`` such that ``moving(y, x) ~ reference(y - dy, x - dx)``;
``moving`` is ``reference`` displaced by ``(dy, dx)`` pixels (down, right).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from rasterio.enums import Resampling
from rasterio.windows import Window
from scipy import ndimage

from geosr.errors import InputError, OptionError
from geosr.grid import scaled, warp_onto
from geosr.io.scene import (
    check_georeferenced,
    check_input_exists,
    chosen_bands,
    data_bands,
    declared_invalid,
    file_mask,
    raster_crs,
    raster_grid,
    refuse_palette,
)
from geosr.train.degrade import area_downsample


def _fill(x: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if valid is None:
        valid = np.isfinite(x)
    if valid.all():
        return x
    if not valid.any():
        raise InputError("co-registration: an image has no valid pixel")
    return np.where(valid, x, x[valid].mean())


def _fill_nearest(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``(C, H, W)`` with each invalid pixel set to its band's nearest valid value (0 in a band
    with none), for a cubic spline to run through.

    A cubic spline rings at a step: filled with the mean of all bands (3000 beside a band of
    100), a nodata hole threw the valid pixels around it 180 standard deviations off.
    """
    out = np.where(valid, x, 0.0)
    for c in range(x.shape[0]):
        if valid[c].any() and not valid[c].all():
            nearest = ndimage.distance_transform_edt(~valid[c], return_distances=False, return_indices=True)
            out[c] = x[c][tuple(nearest)]
    return out


def _window(shape: tuple[int, int]) -> np.ndarray:
    """Separable Tukey window (alpha 0.25): flat middle, cosine edges, kills FFT edge leakage."""

    def tukey(n: int, alpha: float = 0.25) -> np.ndarray:
        w = np.ones(n)
        edge = max(int(alpha * (n - 1) / 2), 1)
        ramp = 0.5 * (1 - np.cos(np.pi * np.arange(edge) / edge))
        w[:edge] = ramp
        w[n - edge :] = ramp[::-1]
        return w

    return np.outer(tukey(shape[0]), tukey(shape[1]))


def _upsampled_correlation(spectrum: np.ndarray, centre: np.ndarray, size: int, factor: int) -> np.ndarray:
    """Inverse DFT of ``spectrum`` on a square grid of step ``1/factor`` around ``centre``."""
    m, n = spectrum.shape
    offs = (np.arange(size) - size // 2) / factor
    ys, xs = centre[0] + offs, centre[1] + offs
    ey = np.exp(2j * np.pi * np.outer(ys, np.fft.fftfreq(m)))
    ex = np.exp(2j * np.pi * np.outer(np.fft.fftfreq(n), xs))
    return np.real(ey @ spectrum @ ex)


def phase_correlation(
    reference: np.ndarray,
    moving: np.ndarray,
    *,
    upsample: int = 100,
    valid: np.ndarray | None = None,
    whitening: float = 0.5,
    iterations: int = 1,
) -> tuple[float, float]:
    """Sub-pixel displacement ``(dy, dx)`` of ``moving`` relative to ``reference``.

    Parameters
    ----------
    reference, moving : ndarray, shape (h, w)
        Same shape; NaN or ``valid == False`` pixels are filled with the mean.
    upsample : int
        Refinement factor of the upsampled DFT (precision ``1/upsample`` px).
    valid : ndarray of bool, optional
        Common valid mask.
    whitening : float
        The cross-power spectrum is divided by its magnitude to this power: 1 is
        classical phase correlation, 0 plain cross-correlation.  Full whitening
        lets the noisy high frequencies of smooth images pull the peak towards
        integer shifts (0.3 px read as 0.12 px in the tests); 0.5 keeps the
        peak sharp and insensitive to contrast differences between sensors
        while staying accurate to a few hundredths of a pixel.
    iterations : int
        Re-measure after undoing the estimate (cubic-spline shift of
        ``moving``) this many times in all; removes the pull towards whole
        pixels that the window and aliasing cause.

    Returns
    -------
    (dy, dx) : float
        ``moving(y, x) ~ reference(y - dy, x - dx)``.
    """
    if reference.shape != moving.shape or reference.ndim != 2:
        raise OptionError(
            f"phase_correlation needs two 2-D arrays of one shape, got {reference.shape}, {moving.shape}"
        )
    total = np.zeros(2)
    b0 = _fill(moving, valid)
    for _ in range(max(1, iterations)):
        b = apply_shift(b0, (-total[0], -total[1])).astype(np.float64) if total.any() else b0
        step = np.array(_correlate(reference, b, upsample, valid, whitening))
        total += step
        if np.abs(step).max() < 0.5 / upsample:
            break
    return float(total[0]), float(total[1])


def _correlate(
    reference: np.ndarray, b: np.ndarray, upsample: int, valid: np.ndarray | None, whitening: float
) -> tuple[float, float]:
    win = _window(reference.shape)
    a = _fill(reference, valid)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        # A flat image (water, a saturated or filled band) has nothing to align: its cross-power
        # spectrum is 0, whose whitening divided 0 by 0, and the NaNs read as a shift of -0.75 px,
        # applied and summed over the iterations (-12 HR px at x4). The georeferencing stands.
        return 0.0, 0.0
    a = (a - a.mean()) * win
    b = (b - b.mean()) * win
    cross = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    if whitening > 0:
        cross /= np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max()) ** whitening
    corr = np.real(np.fft.ifft2(cross))
    peak = np.array(np.unravel_index(np.argmax(corr), corr.shape), np.float64)
    dims = np.array(corr.shape)
    peak = np.where(peak > dims // 2, peak - dims, peak)
    if upsample > 1:
        size = int(np.ceil(upsample * 1.5)) | 1
        fine = _upsampled_correlation(cross, peak, size, upsample)
        iy, ix = np.unravel_index(np.argmax(fine), fine.shape)
        peak = peak + (np.array([iy, ix]) - size // 2) / upsample
    return float(peak[0]), float(peak[1])


def apply_shift(image: np.ndarray, shift: tuple[float, float], *, order: int = 3) -> np.ndarray:
    """Translate ``(..., h, w)`` by ``shift`` pixels (cubic spline, edges replicated)."""
    full = (0.0,) * (image.ndim - 2) + (float(shift[0]), float(shift[1]))
    out = ndimage.shift(np.asarray(image, np.float64), full, order=order, mode="nearest")
    return out.astype(np.float32)


def _inside_after_shift(shape: tuple[int, ...], shift: tuple[float, float]) -> np.ndarray:
    """Pixels of a ``(H, W)`` image shifted by ``-shift`` whose source lies inside the image.

    Undoing ``shift`` reads pixel ``(y, x)`` from ``(y + dy, x + dx)``; where that
    falls beyond the image's outer pixel edge, :func:`apply_shift` replicates the
    edge pixel, which is no HR data: those rows and columns are invalid, not chips.
    """

    def axis(n: int, d: float) -> np.ndarray:
        source = np.arange(n) + d
        return (source >= -0.5) & (source <= n - 0.5)

    return np.outer(axis(shape[0], shift[0]), axis(shape[1], shift[1]))


def estimate_shift(
    lr: np.ndarray,
    hr: np.ndarray,
    scale: int,
    *,
    lr_valid: np.ndarray | None = None,
    hr_valid: np.ndarray | None = None,
    upsample: int = 100,
    iterations: int = 4,
) -> tuple[float, float]:
    """Residual shift of ``hr`` (on the LR grid x ``scale``) relative to ``lr``, in HR pixels.

    ``lr`` is ``(h, w)`` or ``(C, h, w)`` and ``hr`` ``(H, W)`` or ``(C, H, W)``
    with ``H = h * scale``; several bands are averaged into one image first (the
    displacement is geometric, common to all bands).
    """
    lr2 = np.asarray(lr, np.float64)
    hr2 = np.asarray(hr, np.float64)
    if lr2.ndim == 3:
        lr_valid = None if lr_valid is None else np.asarray(lr_valid.all(axis=0))
        hr_valid = None if hr_valid is None else np.asarray(hr_valid.all(axis=0))
        lr2 = _standardise(lr2).mean(axis=0)
        hr2 = _standardise(hr2).mean(axis=0)
    h, w = lr2.shape
    if hr2.shape != (h * scale, w * scale):
        raise OptionError(f"HR shape {hr2.shape} is not the LR shape {lr2.shape} times {scale}")
    hr_filled = _fill(hr2, hr_valid)
    valid = np.isfinite(lr2) if lr_valid is None else lr_valid & np.isfinite(lr2)
    if hr_valid is not None:
        valid &= area_downsample(hr_valid.astype(np.float64), scale) > 0.999
    # Aliasing and the window bias a single estimate towards whole pixels; re-measuring
    # after undoing the estimate converges on the shift (the residual of a perfectly
    # aligned pair is 0 by symmetry).
    total = np.zeros(2)
    for _ in range(iterations):
        moved = apply_shift(hr_filled, (-total[0], -total[1])) if total.any() else hr_filled
        down = area_downsample(np.asarray(moved, np.float64), scale)
        step = np.array(phase_correlation(lr2, down, upsample=upsample, valid=valid)) * scale
        total += step
        if np.abs(step).max() < 0.5 / upsample * scale:
            break
    return float(total[0]), float(total[1])


def _standardise(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for i, band in enumerate(x):
        finite = band[np.isfinite(band)]
        mu, sd = (finite.mean(), finite.std()) if finite.size else (0.0, 1.0)
        out[i] = (band - mu) / (sd if sd > 0 else 1.0)
    return out


def histogram_match(
    hr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    *,
    hr_valid: np.ndarray | None = None,
    lr_valid: np.ndarray | None = None,
    quantiles: int = 1024,
) -> np.ndarray:
    """Map the HR radiometry onto the LR's, per band (``(C, H, W)`` and ``(C, h, w)``).

    The monotone mapping sends quantile ``q`` of the area-averaged HR to
    quantile ``q`` of the LR, both over the pixels where both are valid
    (``quantiles`` levels, linear in between, linear extrapolation beyond the
    extremes with the end slopes), and is applied to every HR pixel.  Returns
    float32.
    """
    hr = np.asarray(hr, np.float64)
    lr = np.asarray(lr, np.float64)
    if hr.ndim == 2:
        return histogram_match(
            hr[None],
            lr[None],
            scale,
            hr_valid=None if hr_valid is None else hr_valid[None],
            lr_valid=None if lr_valid is None else lr_valid[None],
            quantiles=quantiles,
        )[0]
    out = np.empty(hr.shape, np.float32)
    qs = np.linspace(0.0, 1.0, quantiles)
    for c in range(hr.shape[0]):
        hv = np.isfinite(hr[c]) if hr_valid is None else hr_valid[c] & np.isfinite(hr[c])
        lv = np.isfinite(lr[c]) if lr_valid is None else lr_valid[c] & np.isfinite(lr[c])
        down = area_downsample(np.where(hv, hr[c], 0.0), scale)
        # The same pixels on both sides: an HR covering the top half of the LR was mapped onto
        # the whole LR's histogram, 3.5x too bright where the bottom half was brighter.
        common = lv & (area_downsample(hv.astype(np.float64), scale) > 0.999)
        if not common.any():
            raise InputError(f"histogram matching: band {c + 1} has no pixel valid in both the LR and the HR")
        src = np.quantile(down[common], qs)
        ref = np.quantile(lr[c][common], qs)
        # Ties in the source quantiles (flat histograms) would make np.interp ambiguous.
        src, keep = np.unique(src, return_index=True)
        ref = ref[keep]
        mapped = np.interp(hr[c], src, ref)
        if src.size > 1:
            lo_slope = (ref[1] - ref[0]) / (src[1] - src[0])
            hi_slope = (ref[-1] - ref[-2]) / (src[-1] - src[-2])
            mapped = np.where(hr[c] < src[0], ref[0] + (hr[c] - src[0]) * lo_slope, mapped)
            mapped = np.where(hr[c] > src[-1], ref[-1] + (hr[c] - src[-1]) * hi_slope, mapped)
        out[c] = np.where(hv, mapped, np.nan)
    return out


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
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"cannot open {path}: {exc}") from exc
    try:
        refuse_palette(path, src)
        located = bool(src.gcps[0]) or src.rpcs is not None
        crs = raster_crs(src)
        if crs is None and not located:  # else rasterio's 'Missing src_crs.' traceback in the warp
            raise InputError(
                f"{path}: the raster has no CRS, which a pair needs (the HR is reprojected onto the "
                "LR grid); assign one first, e.g. gdal_edit.py -a_srs EPSG:32633 FILE"
            )
        # GCPs or RPCs alone were told to assign a CRS (to a grid of pixel numbers), and a
        # CRS without a geotransform was warped as pixel numbers read as metres.
        check_georeferenced(str(path), src, crs)
    except BaseException:
        src.close()
        raise
    return src


def read_raster(
    path: str | Path, bands: tuple[int, ...] | None = None, *, within: GeoBox | None = None
) -> RasterBands:
    """Read ``bands`` (1-based; all but alpha bands when None) as float32 with NaN where invalid.

    With ``within``, only the part of the raster that a warp onto ``within`` reads, plus
    :data:`READ_PADDING` pixels (possibly none): an aerial tile paired with a small LR
    scene was read whole, gigabytes of float32 for a few megabytes used.
    """
    with _open_pair_raster(path) as src:
        idx = chosen_bands(path, src, bands)
        grid = raster_grid(src)
        window = None
        if within is not None:
            check_transformable(path, grid, within)
            rows, cols = compute_reproject_roi(grid, within, padding=READ_PADDING).roi_src
            grid = grid[rows, cols]
            window = Window.from_slices(rows, cols)
        try:
            raw = src.read(idx, masked=True, window=window)
            arr = raw.astype(np.float32).filled(np.nan)
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
) -> np.ndarray:
    """The HR raster on ``lr_grid`` refined by ``scale``: (C, H, W) float32, NaN where invalid.

    An HR pixel coarser than the LR pixel / ``scale`` (beyond
    :data:`HR_PIXEL_TOLERANCE`) is refused: the pair is swapped, the same file
    twice, or ``scale`` is wrong.  A finer one is area-averaged onto the grid.
    """
    target = scaled(lr_grid, scale)
    hr = read_raster(hr_path, bands, within=target)
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
    return warp_onto(valid, hr.grid.pad(1), target, Resampling.average)


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


def _crs_name(grid: GeoBox) -> str:
    crs = grid.crs
    if crs is None:
        return "none"
    return f"EPSG:{crs.epsg}" if crs.epsg is not None else str(crs.proj.name)


def check_transformable(path: str | Path, grid: GeoBox, onto: GeoBox) -> None:
    """Refuse a raster whose CRS PROJ cannot transform into ``onto``'s (a local CRS, say).

    It was pyproj's 'ProjError: Error creating Transformer from CRS.' traceback.
    """
    from pyproj.exceptions import ProjError

    assert onto.crs is not None  # a pair raster without a CRS is refused when opened
    try:
        grid.extent.to_crs(onto.crs)
    except ProjError:
        target = _crs_name(onto)
        srs = target if onto.crs.epsg is not None else "CRS"
        raise InputError(
            f"{path}: its CRS ({_crs_name(grid)}) cannot be transformed into the LR's ({target}); "
            f"put both rasters in one CRS first, e.g. gdalwarp -t_srs {srs} FILE warped.tif"
        ) from None


def _overlaps(hr_grid: GeoBox, lr_grid: GeoBox) -> bool:
    assert lr_grid.crs is not None  # a pair raster without a CRS is refused when opened
    return bool(hr_grid.extent.to_crs(lr_grid.crs).intersects(lr_grid.extent))


def _no_overlap(hr_path: str | Path, lr_path: str | Path) -> str:
    return f"{hr_path} does not overlap {lr_path} (no valid HR pixel on the LR grid)"


def _nothing_valid(hr_path: str | Path, lr_path: str | Path, lr_grid: GeoBox) -> str:
    """Why the HR raster gives no valid pixel on the LR grid: it lies elsewhere, or it is
    nodata or NaN all over the LR raster, which was told as 'does not overlap' too."""
    with rasterio.open(hr_path) as src:
        hr_grid = raster_grid(src)
    if _overlaps(hr_grid, lr_grid):
        return (
            f"{hr_path} is nodata or NaN wherever it overlaps {lr_path}: no valid HR pixel to pair; "
            "check its nodata value and mask (gdalinfo)"
        )
    return _no_overlap(hr_path, lr_path)


def _check_band_counts(lr_path: str | Path, lr_count: int, hr_path: str | Path, hr_count: int) -> None:
    if hr_count != lr_count:
        raise InputError(
            f"{lr_path} gives {lr_count} band(s) and {hr_path} {hr_count}: a pair needs the "
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
    if not _overlaps(hr_grid, lr_grid):
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
    lr = read_raster(lr_path, lr_bands)
    hr = reproject_onto_lr_grid(hr_path, lr.grid, scale, bands=hr_bands, lr_name=str(lr_path))
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
        moved = apply_shift(_fill_nearest(hr, hr_valid), (-shift[0], -shift[1]))
        moved_valid = apply_shift(hr_valid.astype(np.float32), (-shift[0], -shift[1]), order=1) > 0.999
        moved_valid &= _inside_after_shift(hr.shape[-2:], shift)
        hr = np.where(moved_valid, moved, np.nan).astype(np.float32)
    if match_histograms:
        hr = histogram_match(hr, lr.data, scale, hr_valid=np.isfinite(hr), lr_valid=np.isfinite(lr.data))
    return AlignedPair(lr.data, hr, lr.grid, lr.dtype, shift)
