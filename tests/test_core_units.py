"""Grid scaling, mirrored reads, normalisation and dtype casting."""

from __future__ import annotations

import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from geosr.errors import GeosrWarning, InputError, OptionError
from geosr.grid import scaled
from geosr.io.scene import _mirror, open_scene, read_window
from geosr.kernel import cast_to_dtype, finish_tile, prepare_tiles
from geosr.normalise import FILL_RADIUS, Normalisation, fill_invalid, scene_normalisation, valid_mask
from geosr.tiling import Window
from tests.conftest import coordinate_pattern


@pytest.mark.parametrize("crs", ["EPSG:32633", "EPSG:4326"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_scaled_grid_keeps_footprint(crs: str, scale: int) -> None:
    g = GeoBox(
        (67, 91),
        Affine(0.3, 0.0, 12.5, 0.0, -0.3, 50.0)
        if crs == "EPSG:4326"
        else Affine(10, 0, 335440, 0, -10, 5866490),
        crs,
    )
    s = scaled(g, scale)
    assert s.shape.yx == (67 * scale, 91 * scale)
    assert s.crs == g.crs
    t = g.transform
    assert s.transform == Affine(t.a / scale, t.b / scale, t.c, t.d / scale, t.e / scale, t.f)
    assert np.allclose(s.extent.boundingbox.bbox, g.extent.boundingbox.bbox, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("pixel", "scale"), [(10.0, 3), (3.0, 5), (0.1, 5), (20.0, 6), (10 / 3, 3)])
def test_scaled_pixel_is_the_double_nearest_to_the_pixel_over_the_scale(pixel: float, scale: int) -> None:
    """A 10 m pixel at x3 came out 3.333333333333333 (10 times 1/3, rounded first), not the
    double nearest to 10/3, 3.3333333333333335, which a grid of that pixel made by another tool
    has; 3 m at x5 was 0.6000000000000001, and 0.1 degree at x5 0.020000000000000004."""
    g = GeoBox((7, 9), Affine(pixel, 0.0, 335440.0, 0.0, -pixel, 5866490.0), "EPSG:32633")
    t = scaled(g, scale).transform
    nearest = float(Fraction(pixel) / scale)  # exact rational, rounded once
    assert (t.a, t.e, t.b, t.d) == (nearest, -nearest, 0.0, 0.0)
    assert (t.c, t.f) == (335440.0, 5866490.0)


def test_scaled_refuses_bad_scale() -> None:
    g = GeoBox((4, 4), Affine(1, 0, 0, 0, -1, 4), "EPSG:32633")
    with pytest.raises(OptionError):
        scaled(g, 0)


def test_mirror_matches_numpy_symmetric() -> None:
    for n in (1, 2, 5, 13):
        idx = np.arange(-3 * n - 2, 4 * n + 3)
        expected = np.pad(np.arange(n), (3 * n + 2, 3 * n + 3), mode="symmetric")
        assert (_mirror(idx, n) == expected).all()


def test_read_window_mirrors_past_edges(make_raster) -> None:
    path = make_raster(count=2, height=20, width=30)
    scene = open_scene(path)
    import rasterio

    with rasterio.open(path) as src:
        full = src.read()
    got = read_window(scene, Window(-4, -5, 30, 42))
    expected = np.pad(full, ((0, 0), (4, 6), (5, 7)), mode="symmetric")[:, :30, :42]
    assert (got == expected).all()


def test_percentile_normalisation_ignores_nodata() -> None:
    x = np.arange(1000, dtype=np.float32).reshape(1, 10, 100)
    x[0, :5] = 0
    valid = valid_mask(x, 0)
    norm = scene_normalisation(x, valid)
    assert norm.offset[0] > 400
    y = norm.apply(x)
    assert np.allclose(norm.invert(y), x, atol=1e-3)


def test_all_nodata_band_is_refused_alone_and_passed_over_among_others() -> None:
    x = np.zeros((1, 4, 4), np.uint16)
    with pytest.raises(InputError, match="no band has a valid pixel"):
        scene_normalisation(x, valid_mask(x, 0), source="s.tif")
    two = np.stack([x[0], np.arange(16, dtype=np.uint16).reshape(4, 4)])
    # One band is 'its', not 'their': 'band 1 has no valid pixel ...; their output is nodata'.
    one = r"s.tif: band 1 has no valid pixel \(.*\); its output is nodata wherever its input is$"
    with pytest.warns(GeosrWarning, match=one):
        norm = scene_normalisation(two, valid_mask(two, 0), dtype="uint16", source="s.tif")
    assert norm.offset[0] == 0.0 and norm.scale[0] == 10000.0  # the dtype's fixed range
    assert norm.offset[1] == pytest.approx(1.014)  # the 0.1st percentile of 1..15


def test_fill_is_local_and_never_uses_the_nodata_value() -> None:
    x = np.full((1, 1, 20, 20), 0.8, np.float32)
    valid = np.ones_like(x, bool)
    valid[..., 5:15, 5:15] = False
    x[~valid] = -9999
    filled = fill_invalid(x, valid)
    assert filled.min() > 0.4  # deep holes get mid-range, the rim its neighbours
    assert np.allclose(filled[..., 5, 5], 0.8)
    assert np.isclose(filled[..., 10, 10], 0.5)
    assert FILL_RADIUS >= 1


def test_cast_rounds_clips_and_keeps_valid_off_nodata() -> None:
    def v() -> np.ndarray:  # a fresh one per call: cast_to_dtype overwrites its input
        return np.array([-5.0, 0.2, 0.6, 254.6, 300.0])

    assert cast_to_dtype(v(), "uint8", None).tolist() == [0, 0, 1, 255, 255]
    assert cast_to_dtype(v(), "uint8", 0).tolist() == [1, 1, 1, 255, 255]
    assert cast_to_dtype(v(), "uint8", 255).tolist() == [0, 0, 1, 254, 254]
    assert cast_to_dtype(v(), "uint8", 7).tolist() == [0, 0, 1, 255, 255]
    # A nodata inside the range: a value rounding onto it goes to its own side (all went up: 6.6 gave 8)
    assert cast_to_dtype(np.array([6.6, 7.4, 7.0, 8.0]), "uint8", 7).tolist() == [6, 8, 8, 8]
    assert cast_to_dtype(v(), "float32", None).dtype == np.float32


def test_a_valid_value_rounding_onto_a_mid_range_nodata_keeps_its_side() -> None:
    """Signed data around a nodata of 0 (a DEM's sea level): -0.4 became +1, so every
    valid value near 0 was biased upwards; it goes to the nearest valid integer on its side."""
    values = np.array([-0.4, 0.3, -0.5, 0.5, 0.0, -1.2, 1.2, -32767.6, 32767.6])
    assert cast_to_dtype(values, "int16", 0).tolist() == [-1, 1, -1, 1, 1, -1, 1, -32768, 32767]
    assert cast_to_dtype(np.array([-10000.0, -9999.4, -9998.6]), "int16", -9999).tolist() == [
        -10000,
        -10000,
        -9998,
    ]


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "int32"])
def test_cast_equals_rounding_then_moving_nodata_aside(dtype: str) -> None:
    """The clip that keeps valid pixels off an end-of-range nodata equals the plain rule:
    round, clip to the dtype, then move pixels equal to nodata one unit inwards (at an end of
    the range) or towards the value they were rounded from (inside it)."""
    info = np.iinfo(dtype)
    rng = np.random.default_rng(7)
    for nodata in (None, info.min, info.max, 0, 7, -9999):
        if nodata is not None and not info.min <= nodata <= info.max:
            continue
        centre = 0.0 if nodata is None else float(nodata)
        near, anywhere = rng.normal(centre, 3, 500), rng.uniform(info.min - 10.0, info.max + 10.0, 500)
        values = np.concatenate([near, anywhere])
        expected = np.clip(np.rint(values), info.min, info.max).astype(dtype)
        if nodata is not None:
            hit = expected == nodata
            inside = info.min < nodata < info.max  # a value rounding onto it keeps its own side
            below = values < nodata if inside else np.full(values.shape, nodata == info.max)
            expected[hit] = np.where(below[hit], nodata - 1, nodata + 1)
        assert np.array_equal(cast_to_dtype(values.copy(), dtype, nodata), expected), nodata


def test_values_float32_cannot_hold_once_normalised_are_nodata_with_one_line() -> None:
    """1e+39 in a float64 tile became an infinity in the model's float32 input, with numpy's
    bare 'overflow encountered in cast' (and NaN over the output around it): it is nodata,
    filled as nodata is, as any float of FLOAT_FILL or more (the scene's sample says so, not each
    tile), also in a frame of a stack; a smaller value that only overflows once normalised is
    nodata too, in geosr's line."""
    from geosr.temporal import stack_frames

    raw = np.full((1, 1, 8, 8), 0.5)
    raw[0, 0, 3, 4] = 1e39
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither numpy's bare line nor a line per tile
        x, valid = prepare_tiles(raw, None, Normalisation((0.0,), (1.0,)))
        assert np.isfinite(x).all() and x[0, 0, 0, 3, 4] == 0.5
        assert not valid[0, 0, 3, 4] and valid.sum() == 63
        frames = np.stack([np.full((1, 1, 8, 8), 0.25), raw], axis=1)  # (B, T, C, h, w)
        inputs, _ = stack_frames(frames, None, Normalisation((0.0,), (1.0,)))
        assert inputs[0][1, 0, 3, 4] == 0.25 and inputs[0][1, 0, 0, 0] == 0.5  # the reference's pixel
    said = r"the input holds 5e\+37, beyond float32's range once normalised .* pass it as --nodata"
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # numpy's bare line is not given
        with pytest.warns(GeosrWarning, match=said):
            big = np.full((1, 1, 4, 4), 5e37, np.float32)
            _, valid = prepare_tiles(big, None, Normalisation((0.0,), (0.1,)))
    assert not valid.any()


def test_finish_marks_exactly_the_nodata_footprint() -> None:
    norm = Normalisation((0.0,), (1.0,))
    valid = np.ones((1, 3, 3), bool)
    valid[0, 1, 2] = False
    out = finish_tile(
        np.full((1, 6, 6), 7.0, np.float32), valid, scale=2, norm=norm, dtype="int16", nodata=-1
    )
    assert (out[0, 2:4, 4:6] == -1).all()
    assert (out[0][out[0] != -1] == 7).all() and (out == -1).sum() == 4


@pytest.mark.parametrize(
    ("dtype", "nodata"),
    [("uint8", 0), ("uint16", None), ("uint16", 1000), ("int16", -9999), ("int32", 0), ("float32", np.nan)],
)
def test_finish_in_chunks_of_rows_gives_the_pixels_of_the_whole_tile(
    monkeypatch: pytest.MonkeyPatch, dtype: str, nodata: float | None
) -> None:
    """finish_tile works a few rows of a band at a time (FINISH_CHUNK pixels), the temporaries
    in the cache: the same pixels as the whole tile at once, with several bands, nodata at an
    end of the range, inside it and NaN, the projection of int32 (per s x s block), a model
    output seen through the core's view, and one normalisation broadcast over the bands."""
    import geosr.kernel

    rng = np.random.default_rng(3)
    scale, bands, h, w = 4, 3, 24, 10
    padded = rng.normal(0.0, 1.5, (bands, (h + 2) * scale, (w + 2) * scale)).astype(np.float32)
    sr = padded[:, scale:-scale, scale:-scale]  # a view, as process_batch passes the core
    valid = (rng.random((bands, h, w)) > 0.2) | (nodata is None)  # no nodata: every pixel valid
    ref = rng.integers(-5000, 5000, (bands, h, w)).astype(dtype)  # projected onto for int32
    per_band = Normalisation((10.0, -20.0, 30.0), (900.0, 1100.0, 2000.0))
    for norm in (per_band, Normalisation((5.0,), (3000.0,))):
        outputs = []
        for chunk in (10**9, 1, 3 * scale * w * scale):  # the whole tile, s rows, 3 s rows
            monkeypatch.setattr(geosr.kernel, "FINISH_CHUNK", chunk)
            tile = finish_tile(sr, valid, scale=scale, norm=norm, dtype=dtype, nodata=nodata, reference=ref)
            outputs.append(tile)
        assert outputs[0].dtype == np.dtype(dtype)
        assert np.isnan(outputs[0].astype(np.float64)).any() == (dtype == "float32")
        for out in outputs[1:]:
            assert out.tobytes() == outputs[0].tobytes()


def test_prepare_hides_nodata_from_the_model() -> None:
    raw = np.full((1, 1, 8, 8), 500, np.uint16)
    raw[0, 0, :, :3] = 0
    norm = Normalisation((0.0,), (1000.0,))
    x, valid = prepare_tiles(raw, 0, norm)
    assert x.shape == (1, 1, 1, 8, 8) and not valid[0, 0, 0, 0]
    assert np.allclose(x[0, 0, 0, :, 3:], 0.5) and np.allclose(x[0, 0, 0, :, 0], 0.5)


def test_cluster_tasks_shrink_below_a_batch_only_when_workers_would_run_dry() -> None:
    from geosr.orchestrate.cluster import TASKS_PER_WORKER, task_size

    assert task_size(462, 2, 2) == 2  # a Sentinel-2 tile: plenty of batches per worker
    assert task_size(16, 2, 2) == 1  # 16 tiles, 2 workers: one tile per task
    assert task_size(3, 4, 8) == 1
    assert task_size(TASKS_PER_WORKER * 4 * 3, 16, 4) == 3
    # An fp32 CPU call holds 2 images: tasks of one single-band tile would compute each twice.
    assert task_size(16, 2, 2, least=2) == 2
    assert task_size(462, 2, 2, least=2) == 2
    assert task_size(3, 1, 8, least=2) == 1  # a batch of one tile (many bands) caps it


def test_gdal_cache_size_is_gdals_own() -> None:
    import rasterio

    from geosr.io.scene import gdal_cache_bytes

    with rasterio.Env(GDAL_CACHEMAX=64 * 2**20):
        assert gdal_cache_bytes() == 64 * 2**20


def test_strip_files_are_read_through_bands_each_strip_decoded_once(
    make_raster, tmp_path, monkeypatch
) -> None:
    """When GDAL's cache cannot hold the strips under a row of tiles (here: the decision is
    told the cache holds nothing), a strip-organized file gives the same windows as direct
    reads (mirrored edges; an area of interest reading the file's pixels around it), and,
    row of tiles by row of tiles, each row of the file is read from GDAL once.  A tiled
    copy is read window by window, with the same pixels."""
    import rasterio
    import rasterio.shutil

    from geosr.aoi import crop_scene
    from geosr.io import scene as scene_io
    from geosr.tiling import plan_tiles

    monkeypatch.setattr(scene_io, "gdal_cache_bytes", lambda: 0)  # a cache smaller than any band

    strips = make_raster("strips.tif", count=3, height=150, width=200)
    tiled = tmp_path / "tiled.tif"
    rasterio.shutil.copy(strips, tiled, driver="GTiff", TILED="YES", BLOCKXSIZE=16, BLOCKYSIZE=16)
    with rasterio.open(strips) as src:
        truth = src.read()
    aoi = Window(11, 23, 120, 150)
    for path in (strips, tiled):
        whole = open_scene(path)
        assert (whole.block_rows >= 1) == (path == strips)
        for scene in (whole, crop_scene(whole, aoi)):
            plan = plan_tiles(*scene.grid.shape.yx, tile=24, halo=5)
            scene_io.close_datasets()
            handle = scene_io._dataset(scene)
            rows_read: list[int] = []

            def counted(*args, _read=handle.read, _rows=rows_read, **kw):  # the real read, counted
                _rows.append(kw["window"].height)
                return _read(*args, **kw)

            handle.read = counted
            r_off, c_off = scene.origin
            for tile in plan.tiles:  # row by row, as the pipeline reads them
                got = read_window(scene, tile.read)
                rows = scene_io._mirror(
                    np.arange(tile.read.row, tile.read.row + tile.read.height) + r_off, 150
                )
                cols = scene_io._mirror(
                    np.arange(tile.read.col, tile.read.col + tile.read.width) + c_off, 200
                )
                np.testing.assert_array_equal(got, truth[:, rows[:, None], cols[None, :]])
            if path == strips:
                assert sum(rows_read) <= 150 and len(rows_read) < len(plan.tiles) / 2
            else:
                assert len(rows_read) == len(plan.tiles)
            scene_io.close_datasets()


def test_a_file_replaced_at_the_same_path_is_read_afresh_by_a_thread_that_read_it(
    make_raster, tmp_path, monkeypatch
) -> None:
    """A thread's cached handle and band of strips outlived the file: a Dask worker's threads
    outlive a run, and the next run on a scene rewritten at the same path read the old pixels."""
    import os

    from geosr.io import scene as scene_io

    monkeypatch.setattr(scene_io, "gdal_cache_bytes", lambda: 0)  # read through a band of strips
    path = make_raster("strips.tif", height=40, width=30)
    window = Window(0, 0, 24, 30)
    scene_io.close_datasets()
    try:
        old = read_window(open_scene(path), window)
        new = make_raster("new.tif", data=np.flip(coordinate_pattern(1, 40, 30), axis=2))
        # A later mtime than the old file's, as a file written later has (a coarse clock
        # could give two files written at once the same).
        stat = path.stat()
        os.utime(new, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        new.replace(path)
        got = read_window(open_scene(path), window)
    finally:
        scene_io.close_datasets()
    np.testing.assert_array_equal(got, np.flip(old, axis=2))


def test_integer_percentiles_equal_numpys_bit_for_bit() -> None:
    # Counting instead of sorting must not move the normalisation by one ulp: every
    # output pixel depends on it.
    from geosr.normalise import percentiles

    rng = np.random.default_rng(7)
    for trial in range(600):
        dtype = ("uint8", "uint16", "int16")[trial % 3]
        info = np.iinfo(dtype)
        lo = int(rng.integers(info.min, info.max))
        hi = int(rng.integers(lo, info.max + 1))
        size = int(rng.integers(1, 20)) if trial % 5 == 0 else int(rng.integers(20, 50_000))
        values = rng.integers(lo, hi + 1, size).astype(dtype)
        for qs in ((0.1, 99.9), (0.0, 100.0), (2.0, 98.0)):
            expected = tuple(np.percentile(values.astype(np.float64), qs))
            assert percentiles(values, qs) == expected, (dtype, size, qs)
    floats = rng.normal(size=1000).astype(np.float32)
    assert percentiles(floats, (0.1, 99.9)) == tuple(np.percentile(floats.astype(np.float64), (0.1, 99.9)))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files by /proc/self/fd (Linux)")
def test_release_closes_every_threads_files_and_waits_for_a_busy_one_a_second_at_most(make_raster) -> None:
    """At the end of a cluster run, each worker closes the run's files in all its threads
    (:func:`geosr.io.scene.release`, in the worker's event loop): a thread held in a read of
    another run (a stalled remote file) held it back, heartbeats and all, until the read ended."""
    import threading

    from geosr.io import scene as scene_io
    from tests.conftest import open_in_this_process

    mine, busy = make_raster("mine.tif"), make_raster("busy.tif")
    read_window(open_scene(str(mine)), Window(0, 0, 8, 8))  # this thread keeps it open
    opened, finish = threading.Event(), threading.Event()

    def reading() -> None:
        read_window(open_scene(str(busy)), Window(0, 0, 8, 8))
        with scene_io._reads().lock:  # as while a long read lasts
            opened.set()
            finish.wait(30)
        scene_io.close_datasets()

    other = threading.Thread(target=reading)
    other.start()
    try:
        assert opened.wait(10)
        released = threading.Thread(target=scene_io.release, args=([str(mine), str(busy)],))
        released.start()
        released.join(6)
        assert not released.is_alive()
        assert not open_in_this_process(mine) and open_in_this_process(busy)  # the busy thread keeps its own
    finally:
        finish.set()
        other.join(10)
        scene_io.close_datasets()
