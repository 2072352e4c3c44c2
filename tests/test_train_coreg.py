"""Co-registration: phase correlation, shift recovery, histogram matching, real Landsat pair."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from geosr.errors import InputError
from geosr.train.coreg import check_pair, coregister, read_raster, reproject_onto_lr_grid
from geosr.train.degrade import area_downsample
from geosr.train.registration import apply_shift, estimate_shift, histogram_match, phase_correlation
from tests.conftest import UTM_TRANSFORM, in_lonlat, real_file, write_geotiff


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random((h, w)), 2.0) * 1000


@pytest.mark.parametrize("shift", [(0.0, 0.0), (0.3, -0.7), (-2.25, 1.4)])
def test_phase_correlation_recovers_known_shifts(shift: tuple[float, float]) -> None:
    ref = _texture(96, 112)
    moving = apply_shift(ref, shift)
    dy, dx = phase_correlation(ref, moving, iterations=3)
    assert abs(dy - shift[0]) <= 0.05 and abs(dx - shift[1]) <= 0.05


def test_estimate_shift_works_across_resolutions() -> None:
    hr = _texture(128, 160, seed=1)
    lr = area_downsample(hr, 4)
    moved = apply_shift(hr, (1.3, -0.6))
    dy, dx = estimate_shift(lr, moved, 4)
    assert abs(dy - 1.3) <= 0.1 and abs(dx + 0.6) <= 0.1


def test_histogram_match_maps_quantiles_onto_the_reference() -> None:
    hr = _texture(64, 64, seed=2)
    lr = area_downsample(hr, 2)
    target = np.sqrt(lr) * 3 + 100  # a monotone radiometric difference
    matched = histogram_match(hr, target, 2)
    down = area_downsample(matched.astype(np.float64), 2)
    qs = [0.05, 0.25, 0.5, 0.75, 0.95]
    np.testing.assert_allclose(np.quantile(down, qs), np.quantile(target, qs), rtol=2e-3)
    assert np.corrcoef(matched.ravel(), np.sqrt(np.clip(hr, 0, None)).ravel())[0, 1] > 0.99


def test_coregister_synthetic_pair_with_offset_georeferencing(tmp_path: Path) -> None:
    hr = _texture(240, 240, seed=3).astype(np.float32)
    lr = area_downsample(hr, 4)[None]
    t_lr = Affine(40.0, 0, 1000.0, 0, -40.0, 9000.0)
    lr_path = write_geotiff(tmp_path / "lr.tif", lr, t_lr, "EPSG:32633")
    shifted = apply_shift(hr, (0.4, -0.8))[None] * 1.5 + 20
    hr_path = write_geotiff(
        tmp_path / "hr.tif", shifted, Affine(10.0, 0, 1000.0, 0, -10.0, 9000.0), "EPSG:32633"
    )
    pair = coregister(lr_path, hr_path, 4)
    assert abs(pair.shift[0] - 0.4) <= 0.1 and abs(pair.shift[1] + 0.8) <= 0.1
    inner = (slice(None), slice(8, -8), slice(8, -8))
    err = np.nanmean(np.abs(pair.hr[inner] - hr[None][inner]))
    assert err < 0.02 * float(hr.std())


ELKTON = "landsat/l8_pan_ms_elkton_va"


@pytest.mark.realdata
def test_landsat_pan_vs_wald_lr_has_zero_shift_and_recovers_a_known_one(
    data_dir: Path, tmp_path: Path
) -> None:
    """The pan band against its own area average on the MS grid: shift 0 by construction."""
    pan_path = real_file(data_dir, f"{ELKTON}/L8-B8-Elkton-VA.tiff")
    ms = read_raster(real_file(data_dir, f"{ELKTON}/L8-B4-Elkton-VA.tiff"))
    pan_on_grid = reproject_onto_lr_grid(pan_path, ms.grid, 2)[0]
    wald_lr = area_downsample(pan_on_grid.astype(np.float64), 2)
    dy, dx = estimate_shift(wald_lr, pan_on_grid, 2)
    assert abs(dy) <= 0.1 and abs(dx) <= 0.1
    pan = read_raster(pan_path)
    for known in [(0.3, -0.7), (-1.25, 0.45)]:
        copy = write_geotiff(
            tmp_path / "pan_shifted.tif",
            apply_shift(pan.data[0], known)[None],
            pan.grid.transform,
            str(pan.grid.crs),
        )
        moved = reproject_onto_lr_grid(copy, ms.grid, 2)[0]
        dy, dx = estimate_shift(wald_lr, moved, 2)
        assert abs(dy - known[0]) <= 0.1 and abs(dx - known[1]) <= 0.1


@pytest.mark.realdata
def test_landsat_pan_vs_ms_real_pair(data_dir: Path, tmp_path: Path) -> None:
    """Pan (15 m) against the visible MS bands (30 m), a real cross-spectral pair.

    The measured residual shift is about (0.0, +1.1) pan pixels, the same for
    B2, B3 and B4 (these crops are not exactly co-registered: the local shift
    drifts across the scene), so the test asks for consistency across bands, a
    shift below one MS pixel, and recovery of an added known shift to 0.1 px.
    """
    pan_path = real_file(data_dir, f"{ELKTON}/L8-B8-Elkton-VA.tiff")
    shifts = []
    for band in ("B2", "B3", "B4"):
        ms = read_raster(real_file(data_dir, f"{ELKTON}/L8-{band}-Elkton-VA.tiff"))
        shifts.append(estimate_shift(ms.data, reproject_onto_lr_grid(pan_path, ms.grid, 2), 2))
    arr = np.array(shifts)
    assert np.ptp(arr, axis=0).max() <= 0.2
    assert np.abs(arr).max() < 2.0
    base = arr[2]
    pan = read_raster(pan_path)
    known = (0.3, -0.7)
    copy = write_geotiff(
        tmp_path / "pan_shifted.tif",
        apply_shift(pan.data[0], known)[None],
        pan.grid.transform,
        str(pan.grid.crs),
    )
    ms = read_raster(real_file(data_dir, f"{ELKTON}/L8-B4-Elkton-VA.tiff"))
    dy, dx = estimate_shift(ms.data, reproject_onto_lr_grid(copy, ms.grid, 2), 2)
    assert abs(dy - base[0] - known[0]) <= 0.1 and abs(dx - base[1] - known[1]) <= 0.1
    pair = coregister(ms.path, copy, 2)
    assert abs(pair.shift[0] - dy) < 1e-9 and abs(pair.shift[1] - dx) < 1e-9
    assert np.isfinite(pair.hr).mean() > 0.95


def test_a_truncated_raster_is_named_as_such(tmp_path: Path) -> None:
    from geosr.errors import InputError

    path = write_geotiff(
        tmp_path / "cut.tif",
        _texture(300, 300)[None].astype(np.float32),
        Affine(10.0, 0, 0, 0, -10.0, 0),
        "EPSG:32633",
    )
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=r"cut\.tif: reading pixels failed .*truncated or corrupt"):
        read_raster(path)


def test_an_hr_pixel_coarser_than_the_lr_pixel_over_the_scale_is_refused(tmp_path: Path) -> None:
    """Swapped files, the same file twice or a wrong scale would otherwise train nonsense silently."""
    from geosr.errors import InputError

    hr = _texture(120, 120, seed=1).astype(np.float32)
    lr_path = write_geotiff(
        tmp_path / "lr.tif",
        area_downsample(hr, 2)[None],
        Affine(20.0, 0, 1000.0, 0, -20.0, 9000.0),
        "EPSG:32633",
    )
    hr_path = write_geotiff(
        tmp_path / "hr.tif", hr[None], Affine(10.0, 0, 1000.0, 0, -10.0, 9000.0), "EPSG:32633"
    )
    for lr, hr_file, scale in ((hr_path, lr_path, 2), (lr_path, lr_path, 2), (lr_path, hr_path, 4)):
        with pytest.raises(InputError, match=r"its pixel \(\d+ m\) is coarser than .*check --scale.*swapped"):
            coregister(lr, hr_file, scale)
    assert coregister(lr_path, hr_path, 2).hr.shape == (1, 120, 120)
    # Pixel sizes are compared in one CRS (degrees are not metres): the 10 m HR in
    # lon/lat passes, the 20 m LR in lon/lat as the HR of x2 does not.
    lr_grid = read_raster(lr_path).grid
    hr_deg = _in_lonlat(hr_path, tmp_path / "hr_deg.tif")
    assert reproject_onto_lr_grid(hr_deg, lr_grid, 2).shape == (1, 120, 120)
    with pytest.raises(InputError, match=r"lr_deg\.tif: its pixel \(\d+ m\) is coarser"):
        reproject_onto_lr_grid(_in_lonlat(lr_path, tmp_path / "lr_deg.tif"), lr_grid, 2)


def _in_lonlat(path: Path, out: Path) -> Path:
    moved, t = in_lonlat(path)
    return write_geotiff(out, moved, t, "EPSG:4326")


def test_a_band_count_mismatch_says_how_to_fix_it_on_the_command_line(tmp_path: Path) -> None:
    """lr_bands/hr_bands are Python arguments: geosr train/evaluate --lr/--hr have no such option,
    so the message says how to pick bands with GDAL."""
    from geosr.errors import InputError

    hr = _texture(64, 64, seed=2).astype(np.float32)
    lr_path = write_geotiff(
        tmp_path / "lr.tif", area_downsample(hr, 2)[None], Affine(20.0, 0, 0, 0, -20.0, 0), "EPSG:32633"
    )
    hr3 = write_geotiff(
        tmp_path / "hr3.tif", np.stack([hr] * 3), Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:32633"
    )
    with pytest.raises(InputError, match=r"lr\.tif gives 1 band and .*hr3\.tif 3: .*gdal_translate -b"):
        coregister(lr_path, hr3, 2)


def test_bands_a_pair_raster_lacks_are_told_as_band_numbers_with_the_keyword_to_give(make_raster) -> None:
    """coregister(lr_bands=(0,)) said "lr.tif has 1 band; bands [0] do not exist" (a Python list,
    no numbers to give instead), and a raster whose one band is alpha "bands [] do not exist"."""
    lr = make_raster("lr.tif", height=32, width=32, transform=UTM_TRANSFORM @ Affine.scale(2))
    hr = make_raster("hr.tif", count=3, height=64, width=64)
    with pytest.raises(InputError) as info:
        coregister(lr, hr, 2, lr_bands=(0,))
    assert str(info.value) == f"{lr}: band 0 does not exist: its one band is band 1 (give e.g. lr_bands=(1,))"
    with pytest.raises(InputError) as info:
        coregister(lr, hr, 2, hr_bands=(4, 0, 4))
    assert str(info.value) == (
        f"{hr}: bands 4 and 0 do not exist: its bands are numbered 1 to 3 (give e.g. hr_bands=(1, 2, 3))"
    )
    with rasterio.open(lr, "r+") as f:
        f.colorinterp = [rasterio.enums.ColorInterp.alpha]
    for call in (check_pair, coregister):
        with pytest.raises(
            InputError,
            match=rf"^{re.escape(str(lr))}: every band is an alpha band .*"
            r"gdal_edit\.py -colorinterp_1 gray FILE$",
        ):
            call(lr, hr, 2)


def test_reading_the_hr_under_the_lr_cuts_its_grid_with_no_deprecated_affine_product(make_raster) -> None:
    """The HR's grid was cut to the part under the LR, and padded for the coverage of averaged
    pixels, with odc-geo's GeoBox slicing and pad, which compose transforms with ``*`` ("Use `@`
    matmul instead of `*` mul operator", under `python -W default` or pytest).  odc-geo's own
    search for that part still multiplies so: not geosr's call."""
    hr = make_raster("hr.tif", height=64, width=64)
    target = GeoBox((16, 16), UTM_TRANSFORM @ Affine.translation(20, 20), "EPSG:32633")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        part = read_raster(hr, within=target)
        # 20 m LR pixels at x1 from 10 m HR ones: averaged, with the coverage of its padded grid.
        averaged = reproject_onto_lr_grid(
            hr, GeoBox((8, 8), target.transform @ Affine.scale(2), target.crs), 1
        )
    ours = [w for w in caught if "matmul" in str(w.message) and w.filename.endswith("geobox.py")]
    assert not ours, [f"{w.filename}:{w.lineno}" for w in ours]
    assert part.grid.transform == UTM_TRANSFORM @ Affine.translation(16, 16)  # READ_PADDING of 4
    assert part.data.shape == (1, 24, 24)
    assert averaged.shape == (1, 8, 8) and np.isfinite(averaged).all()


@pytest.mark.parametrize("without", ["lr", "hr"])
def test_a_pair_raster_without_a_crs_is_named(make_raster, without: str) -> None:
    """Was rasterio's 'CRSError: Missing src_crs.' (or dst_crs) traceback from the warp."""
    from geosr.errors import InputError

    lr_grid = UTM_TRANSFORM @ Affine.scale(2)
    lr = make_raster(
        "lr.tif", height=32, width=32, transform=lr_grid, crs=None if without == "lr" else "EPSG:32633"
    )
    hr = make_raster("hr.tif", height=64, width=64, crs=None if without == "hr" else "EPSG:32633")
    with pytest.raises(InputError, match=rf"{without}\.tif: the raster has no CRS.*gdal_edit\.py -a_srs"):
        coregister(lr, hr, 2)


def test_an_hr_raster_all_nan_over_the_lr_is_not_said_to_miss_it(make_raster) -> None:
    """An HR raster on the LR's footprint but NaN all over it was told it 'does not overlap'."""
    from geosr.errors import InputError

    lr = make_raster("lr.tif", height=32, width=32, transform=UTM_TRANSFORM @ Affine.scale(2))
    nan = np.full((1, 64, 64), np.nan, np.float32)
    hr = make_raster("hr.tif", height=64, width=64, dtype="float32", data=nan)
    with pytest.raises(InputError, match=r"hr\.tif is nodata or NaN wherever it overlaps .*lr\.tif"):
        coregister(lr, hr, 2)
    far = make_raster("far.tif", height=64, width=64, transform=UTM_TRANSFORM @ Affine.translation(9000, 0))
    with pytest.raises(InputError, match=r"far\.tif does not overlap .*lr\.tif"):
        coregister(lr, far, 2)


def test_pixels_the_shift_takes_from_beyond_the_edge_are_invalid(tmp_path: Path) -> None:
    """Undoing a shift of 2 rows and -5 columns replicated the HR's edge pixels into the rows and
    columns it had no data for, which stayed valid: chips of invented texture along those edges."""
    hr = _texture(160, 160, seed=4).astype(np.float32)
    lr_path = write_geotiff(
        tmp_path / "lr.tif", area_downsample(hr, 4)[None], Affine(40.0, 0, 0, 0, -40.0, 0), "EPSG:32633"
    )
    moved = apply_shift(hr, (2.0, -5.0))[None]
    hr_path = write_geotiff(tmp_path / "hr.tif", moved, Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:32633")
    pair = coregister(lr_path, hr_path, 4, match_histograms=False)
    assert abs(pair.shift[0] - 2.0) <= 0.1 and abs(pair.shift[1] + 5.0) <= 0.1
    valid = np.isfinite(pair.hr[0])
    assert not valid[-2:].any() and not valid[:, :5].any()
    assert valid[:-2, 5:].all()
    error = np.abs(pair.hr[0][:-2, 5:] - hr[:-2, 5:]).max()
    assert error < 0.1 * float(hr.std())


@pytest.mark.parametrize("flat", ["hr", "lr"])
def test_a_flat_image_has_no_shift_to_remove(tmp_path: Path, flat: str) -> None:
    """A featureless HR or LR (water, a saturated band) read as a shift of -12 HR px at x4 from
    the NaNs of 0 / 0 in the whitening, which was removed from the HR (with a RuntimeWarning)."""
    hr = _texture(128, 128, seed=5).astype(np.float32) + 100
    if flat == "hr":
        hr[:] = 500
    lr = area_downsample(hr, 4)[None] if flat == "hr" else np.full((1, 32, 32), 480, np.float32)
    lr_path = write_geotiff(tmp_path / "lr.tif", lr, Affine(40.0, 0, 0, 0, -40.0, 0), "EPSG:32633")
    hr_path = write_geotiff(tmp_path / "hr.tif", hr[None], Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:32633")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        pair = coregister(lr_path, hr_path, 4)
    assert pair.shift == (0.0, 0.0)
    assert np.isfinite(pair.hr).all()


@pytest.mark.parametrize("edge", ["nodata", "footprint"])
def test_an_averaged_hr_pixel_that_nodata_or_the_edge_cuts_is_invalid(tmp_path: Path, edge: str) -> None:
    """GDAL's average of a 2.5 m pixel over 1 m HR pixels of which only some are valid (a nodata
    hole, the HR's footprint ending inside it) was the mean of those, kept as valid data."""
    hr = _texture(200, 200, seed=6).astype(np.float32)
    hr_transform = Affine(1.0, 0, 0, 0, -1.0, 200.0)
    if edge == "nodata":
        hr[51:] = np.nan  # the 2.5 m row 20 spans HR rows 50-52.5: 60 % of it is nodata
    else:
        hr = hr[:51]  # ... or beyond the HR's edge
    lr = np.full((1, 20, 20), 100, np.float32)
    lr_path = write_geotiff(tmp_path / "lr.tif", lr, Affine(10.0, 0, 0, 0, -10.0, 200.0), "EPSG:32633")
    hr_path = write_geotiff(tmp_path / "hr.tif", hr[None], hr_transform, "EPSG:32633")
    on_grid = reproject_onto_lr_grid(hr_path, read_raster(lr_path).grid, 4)[0]
    assert np.isfinite(on_grid[:20]).all()
    assert not np.isfinite(on_grid[20:]).any()


def test_histograms_are_matched_where_both_rasters_have_data() -> None:
    """An HR covering the top half of the LR was mapped onto the whole LR's histogram: with a
    brighter bottom half, an HR of the LR's own radiometry came out 3.5 times too bright."""
    hr = _texture(128, 128, seed=7) + 100
    hr[64:] += 3000
    lr = area_downsample(hr, 4)
    top = np.where(np.arange(128)[:, None] < 64, hr, np.nan)
    matched = histogram_match(top, lr, 4)
    assert np.isnan(matched[64:]).all()
    assert np.abs(matched[:64] - hr[:64]).max() < 0.02 * float(hr[:64].std())


def test_valid_pixels_beside_a_nodata_hole_keep_their_values_when_the_shift_is_removed(
    tmp_path: Path,
) -> None:
    """The hole was filled with the mean of all bands (about 3000 beside a band of 100) before the
    cubic spline, whose ringing threw the valid pixels around it 180 standard deviations off."""
    bands = np.stack([_texture(192, 192, seed=8 + k) * k + 2000 * k**2 for k in (1, 2, 3)])
    lr = np.stack([area_downsample(b, 4) for b in bands]).astype(np.float32)
    lr_path = write_geotiff(tmp_path / "lr.tif", lr, Affine(40.0, 0, 0, 0, -40.0, 0), "EPSG:32633")
    moved = np.stack([apply_shift(b, (0.5, -0.5)) for b in bands])
    moved[:, 80:120, 80:120] = np.nan
    hr_path = write_geotiff(tmp_path / "hr.tif", moved, Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:32633")
    pair = coregister(lr_path, hr_path, 4, match_histograms=False)
    inner = (slice(8, -8), slice(8, -8))
    for got, want in zip(pair.hr, bands, strict=True):
        error = np.abs(got[inner] - want[inner])
        assert np.isfinite(error).mean() > 0.9
        assert np.nanmax(error) < 0.2 * float(want.std())


@pytest.mark.parametrize(
    ("georeferencing", "says"),
    [("gcps", "ground control points only.*gdalwarp"), ("pixels", "no geotransform.*gdal_edit\\.py -a_ullr")],
)
def test_an_hr_raster_without_a_geotransform_is_named(make_raster, georeferencing: str, says: str) -> None:
    """GCPs alone were told 'no CRS: assign one' (to a grid of pixel numbers); a CRS without a
    geotransform was warped as pixel numbers read as metres ('does not overlap')."""
    from rasterio.control import GroundControlPoint

    from geosr.errors import InputError

    lr = make_raster("lr.tif", height=32, width=32, transform=UTM_TRANSFORM @ Affine.scale(2))
    hr = make_raster("hr.tif", height=64, width=64, transform=Affine.identity(), crs=None)
    with rasterio.open(hr, "r+") as dst:
        if georeferencing == "gcps":
            x0, y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f
            corners = [(0, 0), (0, 64), (64, 0), (64, 64)]
            points = [GroundControlPoint(r, c, x0 + c * 10, y0 - r * 10) for r, c in corners]
            dst.gcps = (points, rasterio.crs.CRS.from_epsg(32633))
        else:
            dst.crs = rasterio.crs.CRS.from_epsg(32633)
    with pytest.raises(InputError, match=rf"hr\.tif: .*{says}"):
        coregister(lr, hr, 2)


def test_only_the_part_of_the_hr_over_the_lr_is_read(tmp_path: Path) -> None:
    """The HR was read whole: 100,000^2 px here (a declared 37 GiB of float32), of which the LR
    covers 64^2. Run in a child limited to 3 GiB of address space, so that reading it whole
    fails at once (MemoryError) instead of filling the machine's memory."""
    import subprocess
    import sys

    from tests.conftest import REPO, sparse_giant

    hr = sparse_giant(tmp_path / "giant.tif", size=100_000)
    lr = write_geotiff(
        tmp_path / "lr.tif",
        np.ones((1, 16, 16), np.float32),
        UTM_TRANSFORM @ Affine.translation(5000, 7000) @ Affine.scale(4),
        "EPSG:32633",
    )
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "from geosr.train.coreg import read_raster, reproject_onto_lr_grid\n"
        f"out = reproject_onto_lr_grid({str(hr)!r}, read_raster({str(lr)!r}).grid, 4)\n"
        "print(out.shape, int(out.sum()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, check=False, capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(1, 64, 64) 0"


@pytest.mark.parametrize("local", ["lr", "hr"])
def test_a_crs_that_cannot_be_transformed_is_one_line(make_raster, local: str) -> None:
    """A local (engineering) CRS on either raster was pyproj's 'ProjError: Error creating
    Transformer from CRS.' traceback."""
    from geosr.errors import InputError
    from geosr.train.coreg import check_pair

    wkt = 'LOCAL_CS["Site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    lr = make_raster(
        "lr.tif",
        height=32,
        width=32,
        transform=UTM_TRANSFORM @ Affine.scale(2),
        crs=wkt if local == "lr" else "EPSG:32633",
    )
    hr = make_raster("hr.tif", height=64, width=64, crs=wkt if local == "hr" else "EPSG:32633")
    site = "'Site grid' (WKT, no EPSG code)"
    names = (site, "EPSG:32633") if local == "hr" else ("EPSG:32633", site)
    says = re.escape(
        f"hr.tif: its CRS ({names[0]}) cannot be transformed into the LR's ({names[1]}); put both"
    )
    with pytest.raises(InputError, match=says):
        check_pair(lr, hr, 2)
    with pytest.raises(InputError, match=says):
        coregister(lr, hr, 2)


def test_a_crs_that_cannot_be_transformed_is_not_named_by_a_code_it_only_resembles(make_raster) -> None:
    """An LR in a UTM zone on the International ellipsoid with no datum, which EPSG:23033 (ED50)
    resembles, beside an HR in a site grid: the line told to warp the HR into EPSG:23033, which
    is not the LR's CRS (ED50's datum moves it by about 100 m)."""
    from geosr.train.coreg import check_pair

    wkt = 'LOCAL_CS["Site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    intl = "+proj=utm +zone=33 +ellps=intl +units=m +no_defs"
    lr = make_raster("lr.tif", height=32, width=32, transform=UTM_TRANSFORM @ Affine.scale(2), crs=intl)
    hr = make_raster("hr.tif", height=64, width=64, crs=wkt)
    with pytest.raises(InputError, match="cannot be transformed into the LR's") as raised:
        check_pair(lr, hr, 2)
    assert "23033" not in str(raised.value) and "-t_srs CRS FILE" in str(raised.value)


def test_an_hr_over_the_lrs_nodata_alone_names_both_files(tmp_path: Path) -> None:
    """An HR covering only the part of the LR that is nodata was 'co-registration: an image has
    no valid pixel', which named neither file (nor said which of a run's pairs it was)."""
    from geosr.errors import InputError

    hr = _texture(128, 128, seed=9).astype(np.float32)
    lr = area_downsample(hr, 4)[None].astype(np.float32)
    lr[:, :16] = np.nan
    lr_path = write_geotiff(tmp_path / "lr.tif", lr, Affine(40.0, 0, 0, 0, -40.0, 0), "EPSG:32633")
    hr_path = write_geotiff(tmp_path / "hr.tif", hr[None, :64], Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:32633")
    for correct_shift in (True, False):
        with pytest.raises(InputError, match=r"hr\.tif has no valid pixel .*where .*lr\.tif has data"):
            coregister(lr_path, hr_path, 4, correct_shift=correct_shift)


def test_a_netcdf_missing_value_is_invalid_in_a_pair_as_in_a_run(tmp_path) -> None:
    """GDAL takes a netCDF variable's _FillValue for its nodata and leaves its missing_value, which
    ``geosr run`` reads as missing (Scene.missing_values): a pair raster had those pixels as data."""
    import rioxarray  # noqa: F401  (the .rio accessor)
    import xarray as xr

    data = (np.arange(48 * 56).reshape(48, 56) % 3000 + 100).astype(np.int16)
    data[10:20, 10:20] = -32767
    data[:2, :2] = -32768
    coords = {
        axis: (
            axis,
            start + step * (np.arange(n) + 0.5),
            {"units": "m", "standard_name": f"projection_{axis}_coordinate"},
        )
        for axis, start, step, n in (("y", 5e6, -20, 48), ("x", 4e5, 20, 56))
    }
    variable = xr.DataArray(
        data, dims=("y", "x"), coords=coords, name="v", attrs={"missing_value": np.int16(-32767)}
    )
    dataset = variable.to_dataset().rio.write_crs("EPSG:32633")
    dataset["v"].encoding["_FillValue"] = np.int16(-32768)
    dataset.to_netcdf(tmp_path / "lr.nc", engine="scipy")
    np.testing.assert_array_equal(np.isnan(read_raster(tmp_path / "lr.nc").data[0]), data < 0)


def test_a_netcdf_on_latitude_longitude_pairs_as_geosr_run_reads_it(tmp_path, make_raster) -> None:
    """A netCDF variable on CF latitude/longitude without a grid mapping, which GDAL leaves
    without a CRS, is geographic to ``geosr run`` (and the Zarr reader); a pair refused it as
    'the raster has no CRS'."""
    import xarray as xr
    from affine import Affine

    from tests.conftest import coordinate_pattern

    lr = (coordinate_pattern(1, 48, 56, "uint16")[0] % 3000 + 100).astype(np.int16)
    coords = {"lat": ("lat", 52.5 - 0.01 * np.arange(48), {"units": "degrees_north"}),
              "lon": ("lon", 4.0 + 0.01 * np.arange(56), {"units": "degrees_east"})}  # fmt: skip
    xr.Dataset({"v": xr.Variable(("lat", "lon"), lr)}, coords=coords).to_netcdf(
        tmp_path / "lr.nc", engine="scipy"
    )
    hr = make_raster(
        "hr.tif", data=lr.repeat(2, 0).repeat(2, 1)[None], crs="EPSG:4326",
        transform=Affine(0.005, 0, 3.995, 0, -0.005, 52.505),
    )  # fmt: skip
    pair = coregister(tmp_path / "lr.nc", hr, 2, match_histograms=False, correct_shift=False)
    assert np.isfinite(pair.hr[:, 2:-2, 2:-2]).all()


@pytest.mark.parametrize("past_180", ["hr", "lr"])
def test_a_raster_in_lonlat_past_180_pairs_as_it_does_a_turn_west(tmp_path: Path, past_180: str) -> None:
    """One raster of a pair on longitudes 180.11 to 180.13 (a grid from 0 to 360, cut), the
    other in UTM zone 60S east of the antimeridian: the HR was 'nodata or NaN wherever it
    overlaps' the LR, and 'does not overlap' it the other way round."""
    utm_grid = Affine(20.0, 0.0, 833000.0, 0.0, -20.0, 8230000.0)
    utm = write_geotiff(tmp_path / "utm.tif", _texture(32, 32)[None], utm_grid, "EPSG:32760")
    west = _in_lonlat(utm, tmp_path / "west.tif")  # longitudes from -179.89
    with rasterio.open(west) as src:
        assert src.bounds.right < -179
        east = write_geotiff(
            tmp_path / "east.tif", src.read(), Affine.translation(360, 0) @ src.transform, "EPSG:4326"
        )

    def paired(lonlat: Path) -> np.ndarray:
        lr, hr = (utm, lonlat) if past_180 == "hr" else (lonlat, utm)
        check_pair(lr, hr, 1)
        return reproject_onto_lr_grid(hr, read_raster(lr).grid, 1)

    want = paired(west)
    assert np.isfinite(want).mean() > 0.9
    np.testing.assert_allclose(paired(east), want, rtol=1e-6, equal_nan=True)


def test_a_netcdf_on_unevenly_spaced_coordinates_is_refused_in_a_pair_as_in_a_run(tmp_path) -> None:
    """GDAL spreads a netCDF's 1-D coordinates evenly from the first to the last, looking at three
    steps only: a pair raster with a 5 m jump in its 10 m grid was warped 10.1 m pixels, up to
    half a pixel off, where ``geosr run`` refuses it."""
    import rioxarray  # noqa: F401  (the .rio accessor)
    import xarray as xr

    x = 4e5 + 10 * (np.arange(56) + 0.5)
    x[20:] += 5
    coords = {
        "y": ("y", 5e6 - 10 * (np.arange(48) + 0.5), {"standard_name": "projection_y_coordinate"}),
        "x": ("x", x, {"standard_name": "projection_x_coordinate"}),
    }
    variable = xr.DataArray(np.ones((48, 56), np.float32), dims=("y", "x"), coords=coords, name="v")
    variable.to_dataset().rio.write_crs("EPSG:32633").to_netcdf(tmp_path / "lr.nc", engine="scipy")
    with pytest.raises(
        InputError, match=r"lr\.nc: the x coordinates are not evenly spaced \(steps from 10 to 15\)"
    ):
        read_raster(tmp_path / "lr.nc")
