"""Overview levels written with the tiles: the same pixels as GDAL's own, and the COG built from them.

The reference is GDAL's COG driver computing the overviews itself (``AVERAGE``)
from the same full-resolution pixels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.shutil
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox
from rio_cogeo.cogeo import cog_validate

from geosr.io.pyramid import coarser_levels, halve, level_shapes, tile_levels
from geosr.io.run_store import StoreWriter, create_run_store, finalise, tiles_on_disk
from geosr.io.sink import OutputSpec


def gdal_overviews(data: np.ndarray, nodata: float | None, block: int, tmp: Path) -> list[np.ndarray]:
    """GDAL's AVERAGE overviews of ``data``, as its COG driver computes them."""
    count, height, width = data.shape
    src, cog = tmp / "plain.tif", tmp / "gdal_cog.tif"
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count, "dtype": data.dtype.name}
    with rasterio.open(
        src, "w", **profile, nodata=nodata, crs="EPSG:32633", transform=Affine(1, 0, 0, 0, -1, 1000)
    ) as ds:
        ds.write(data)
    rasterio.shutil.copy(
        src, cog, driver="COG", BLOCKSIZE=block, OVERVIEW_RESAMPLING="AVERAGE", COMPRESS="NONE"
    )
    with rasterio.open(cog) as ds:
        levels = len(ds.overviews(1))
    out = []
    for k in range(levels):
        with rasterio.open(cog, overview_level=k) as ds:
            out.append(ds.read())
    return out


def sample(dtype: str, nodata: float | None, shape: tuple[int, int], holes: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lo, hi = (-3000, 3000) if dtype == "int16" else (0, 255 if dtype == "uint8" else 60000)
    if np.dtype(dtype).kind == "f":
        data = rng.uniform(lo, hi, (2, *shape)).astype(dtype)
    else:
        data = rng.integers(lo, hi, (2, *shape)).astype(dtype)
    if holes and nodata is not None:
        mask = rng.random(data.shape) < holes
        mask[:, :9, :9] = True  # whole blocks of nodata too
        data[mask] = nodata
    return data


def our_levels(data: np.ndarray, nodata: float | None, block: int) -> list[np.ndarray]:
    """Exact halvings while the sides allow, then GDAL's warper, as the run store does."""
    full = data.shape[1:]
    shapes = level_shapes(*full, block)
    levels = []
    for _ in range(tile_levels(full, full, len(shapes))):
        data = halve(data, nodata)
        levels.append(data)
    return levels + coarser_levels(data, full, shapes[len(levels) :], nodata)


CASES = [
    ("uint16", 0, (512, 512), 0.0),
    ("uint16", 0, (512, 512), 0.2),
    ("uint16", None, (384, 640), 0.0),
    ("uint8", 255, (336, 200), 0.3),
    ("int16", -9999, (256, 256), 0.2),  # negative halves round away from zero, as GDAL's
    ("float32", float("nan"), (256, 320), 0.2),
    ("float32", -1.0, (256, 320), 0.2),
]


@pytest.mark.parametrize(("dtype", "nodata", "shape", "holes"), CASES)
def test_exact_levels_equal_gdal_average(
    tmp_path: Path, dtype: str, nodata: float | None, shape, holes
) -> None:
    data = sample(dtype, nodata, shape, holes, seed=len(tmp_path.name))
    ours, theirs = our_levels(data, nodata, 64), gdal_overviews(data, nodata, 64, tmp_path)
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    for mine, gdal in zip(ours, theirs, strict=True):
        if data.dtype.kind == "f":  # GDAL sums floats in another order: last-bit differences
            np.testing.assert_allclose(mine, gdal, rtol=1e-6, equal_nan=True)
        else:
            np.testing.assert_array_equal(mine, gdal)


@pytest.mark.parametrize(("dtype", "nodata", "shape", "holes"), CASES)
def test_levels_halved_a_few_rows_at_a_time_equal_gdal_average(
    tmp_path: Path, monkeypatch, dtype: str, nodata: float | None, shape, holes
) -> None:
    """halve averages a band's rows a block at a time, for the cache (HALVE_CHUNK): in blocks
    of 8 rows here, the lower half of each band without holes, so that blocks with nodata and
    blocks without (its fast path) meet, its pixels are still GDAL's."""
    import geosr.io.pyramid

    monkeypatch.setattr(geosr.io.pyramid, "HALVE_CHUNK", 4 * shape[1])
    data = sample(dtype, nodata, shape, holes, seed=len(tmp_path.name))
    if nodata is not None:
        clean = sample(dtype, None, shape, 0.0, seed=1)
        clean[clean == nodata] = data.dtype.type(1)
        data[:, shape[0] // 2 :] = clean[:, shape[0] // 2 :]
    ours, theirs = our_levels(data, nodata, 64), gdal_overviews(data, nodata, 64, tmp_path)
    assert [o.shape for o in ours] == [t.shape for t in theirs]
    for mine, gdal in zip(ours, theirs, strict=True):
        if data.dtype.kind == "f":
            np.testing.assert_allclose(mine, gdal, rtol=1e-6, equal_nan=True)
        else:
            np.testing.assert_array_equal(mine, gdal)


@pytest.mark.parametrize(("dtype", "nodata"), [("uint16", 0), ("int16", -9999), ("float32", float("nan"))])
def test_exact_levels_built_at_the_end_equal_gdal_average(tmp_path: Path, dtype: str, nodata: float) -> None:
    """Levels below the tiles' own (tiles of --tile 65 at x6: one level) that still halve
    exactly are GDAL's 2 x 2 average to the bit; the warper they went through rounded
    some means ending in .5 down (7706.5 gave 7706, GDAL 7707)."""
    data = sample(dtype, nodata, (512, 512), 0.2, seed=7)
    shapes = level_shapes(512, 512, 64)
    ours = coarser_levels(data, (512, 512), shapes, nodata)
    theirs = gdal_overviews(data, nodata, 64, tmp_path)
    assert [o.shape[1:] for o in ours] == shapes == [t.shape[1:] for t in theirs]
    for mine, gdal in zip(ours, theirs, strict=True):
        if data.dtype.kind == "f":  # GDAL sums floats in another order: last-bit differences
            np.testing.assert_allclose(mine, gdal, rtol=1e-6, equal_nan=True)
        else:
            np.testing.assert_array_equal(mine, gdal)


@pytest.mark.parametrize(("shape", "nodata"), [((300, 517), None), ((301, 517), 0), ((257, 255), 0)])
def test_levels_of_odd_sides_follow_gdal(tmp_path: Path, shape, nodata) -> None:
    """Odd sides do not halve: GDAL rounds the size down and weighs cut pixels; so do we (by GDAL)."""
    data = sample("uint16", nodata, shape, 0.2, seed=1)
    ours, theirs = our_levels(data, nodata, 64), gdal_overviews(data, nodata, 64, tmp_path)
    assert level_shapes(*shape, 64) == [t.shape[1:] for t in theirs]
    for mine, gdal in zip(ours, theirs, strict=True):
        assert np.abs(mine.astype(int) - gdal.astype(int)).max() <= 1  # warper vs overview rounding


@pytest.mark.parametrize(
    ("dtype", "nodata", "values"),
    [
        ("int16", 0, (-1, 1, -3, 3)),  # signed data around a nodata of 0: every block averages 0
        ("int16", -9999, (-10000, -9998, -9999, -9999)),  # two valid pixels, two nodata
        ("uint8", 10, (9, 10, 11, 10)),
        ("float32", 0.0, (-1.5, 1.5, -2.0, 2.0)),
    ],
)
def test_valid_pixels_averaging_to_nodata_stay_valid(tmp_path: Path, dtype: str, nodata: float, values):
    """Valid pixels can average to a nodata value inside their range: the overview pixel
    then takes the next value up, as in GDAL, and is not a hole in valid data (it was
    nodata: a 256^2 image of such blocks had overviews all nodata)."""
    data = np.zeros((1, 256, 256), dtype)
    for k, value in enumerate(values):
        data[0, k % 2 :: 2, k // 2 :: 2] = value
    ours, theirs = our_levels(data, nodata, 64), gdal_overviews(data, nodata, 64, tmp_path)
    assert len(ours) == len(theirs) == 2
    for mine, gdal in zip(ours, theirs, strict=True):
        assert not (mine == np.asarray(nodata, dtype)).any()
        np.testing.assert_array_equal(mine, gdal)


def test_a_mean_rounding_to_nodata_stays_valid() -> None:
    """A mean that only rounds to the nodata value (-9998.75 with nodata -9999) is moved off
    it too; GDAL 3.10 replaces exact means only, and leaves this pixel a hole."""
    block = np.array([[[-13092, -3926], [-15938, -7039]]], np.int16)
    assert halve(block, -9999).item() == -9998


@pytest.mark.parametrize(
    ("dtype", "nodata", "block", "expected"),
    [
        ("int16", -9999, (-10000, -9999, -9998, -10000), -10000),  # -9999.33 of three valid pixels
        ("int16", 0, (-1, 1, -1, 0), -1),  # -0.33
        ("int16", 0, (1, -1, 1, 0), 1),
        ("int16", 0, (-1, 1, -3, 3), 1),  # exactly 0: no side, the next value up as GDAL
        ("uint8", 10, (8, 11, 11, 9), 9),  # every pixel valid (the unsigned fast path): 9.75
        ("uint8", 10, (12, 9, 9, 11), 11),  # 10.25
        # float32's neighbours of 1, 1 - 2**-24 three times and 1 + 2**-23: 1 - 2**-26 rounds to 1
        ("float32", 1.0, (0.99999994, 0.99999994, 0.99999994, 1.0000001), 0.99999994),
    ],
)
def test_a_mean_rounding_to_nodata_goes_to_its_own_side(
    dtype: str, nodata: float, block: tuple[float, ...], expected: float
) -> None:
    """A mean that rounds to a nodata value inside the range goes to the valid value next to it
    on its own side: every such mean went up (-9999.33 with nodata -9999 gave -9998, -0.25 with
    nodata 0 gave 1), biasing them upwards."""
    data = np.array(block, dtype).reshape(1, 2, 2)
    assert halve(data, nodata).item() == np.asarray(expected, dtype).item()


def test_level_shapes_and_tile_alignment() -> None:
    assert level_shapes(8192, 8192, 512) == [(4096, 4096), (2048, 2048), (1024, 1024), (512, 512)]
    assert level_shapes(43920, 43920, 512)[-1] == (343, 343)  # a Sentinel-2 tile x4
    assert level_shapes(512, 100, 512) == []
    # 1024-pixel tile chunks on a 43920 output: 43920 = 2**4 * 2745
    assert tile_levels((43920, 43920), (1024, 1024), 7) == 4
    assert tile_levels((8192, 8192), (1024, 1024), 4) == 4
    assert tile_levels((8192, 8192), (1000, 1000), 4) == 3  # 1000 = 2**3 * 125
    assert tile_levels((8191, 8192), (1024, 1024), 4) == 0


GRID = GeoBox((1536, 2560), Affine(2.5, 0.0, 499_980.0, 0.0, -2.5, 5_300_040.0), "EPSG:32633")


@pytest.mark.parametrize(
    ("grid", "chunks"),
    [
        (GRID, (512, 512)),  # every level written by the tiles
        (GRID, (256, 384)),  # 384 = 2**7 * 3: all levels exact too, chunk not square
        (GRID, (1024, 1280)),  # tiles of several chunks (512 x 320), a short last row of tiles
        (
            GeoBox((1548, 2560), GRID.affine, GRID.crs),
            (512, 512),
        ),  # 1548 = 4 * 387: 2 levels by tiles, rest at the end
        (GeoBox((1549, 2561), GRID.affine, GRID.crs), (512, 512)),  # odd: GDAL builds every level
        # A strip (a 1 x 700 px input at x4): its last level is 1 x 350, GDAL's one-row
        # minimum; it was 0 x 350, and a ZeroDivisionError traceback ended the run.
        (GeoBox((4, 2800), GRID.affine, GRID.crs), (4, 512)),
    ],
)
def test_cog_from_the_run_store_has_gdals_overviews(tmp_path: Path, grid: GeoBox, chunks) -> None:
    spec = OutputSpec(
        grid=grid, count=2, dtype="uint16", nodata=0, tags={"K": "v"}, descriptions=("B1", "B2")
    )
    data = sample("uint16", 0, grid.shape.yx, 0.1, seed=3)
    store, dst = tmp_path / "store", tmp_path / "out.tif"
    create_run_store(store, spec, chunks, for_zarr_output=False, destination=dst)
    writer = StoreWriter(store, dst)
    height, width = grid.shape.yx
    for r in range(0, height, chunks[0]):  # tile cores, in a scrambled order
        for c in reversed(range(0, width, chunks[1])):
            rows, cols = slice(r, min(r + chunks[0], height)), slice(c, min(c + chunks[1], width))
            writer.write(rows, cols, data[:, rows, cols])
    by_tiles = zarr.open_group(str(store), mode="r").attrs["tile_levels"]
    finalise(store, dst, spec, overwrite=False)

    assert cog_validate(str(dst), quiet=True)[:2] == (True, [])
    with rasterio.open(dst) as cog:
        np.testing.assert_array_equal(cog.read(), data)
        assert cog.tags()["K"] == "v" and cog.descriptions == ("B1", "B2") and cog.nodata == 0
        assert cog.transform == grid.affine and cog.crs == grid.crs
        count = len(cog.overviews(1))
    theirs = gdal_overviews(data, 0, spec.block, tmp_path)
    assert count == len(theirs) == len(level_shapes(height, width, spec.block))
    for k, gdal in enumerate(theirs):
        with rasterio.open(dst, overview_level=k) as level:
            mine = level.read()
        if k < by_tiles or height % 2 == 1:  # exact levels, or GDAL built them all
            np.testing.assert_array_equal(mine, gdal)
        else:
            assert np.abs(mine.astype(int) - gdal.astype(int)).max() <= 1
    if chunks == (512, 512) and height == 1536:
        assert by_tiles == len(theirs)  # nothing left for the end


def _cog_of(tmp_path: Path, spec: OutputSpec, data: np.ndarray, chunks: tuple[int, int]) -> Path:
    """The COG of ``data`` written whole into a run store of ``chunks`` and finalised, as a run does."""
    store, dst = tmp_path / "store", tmp_path / "out.tif"
    create_run_store(store, spec, chunks, for_zarr_output=False, destination=dst)
    StoreWriter(store, dst).write(slice(0, data.shape[1]), slice(0, data.shape[2]), data)
    finalise(store, dst, spec, overwrite=False)
    return dst


def test_cog_from_the_run_store_keeps_geographic_grid_and_metadata(tmp_path: Path) -> None:
    """EPSG:4326 (whose WKT puts latitude first) keeps its geotransform exactly; colour
    interpretation and tags with XML's special characters survive the VRT."""
    grid = GeoBox((1024, 1024), Affine(1 / 11120, 0.0, 14.9, 0.0, -1 / 11120, 46.1), "EPSG:4326")
    spec = OutputSpec(
        grid=grid,
        count=3,
        dtype="uint8",
        nodata=None,
        colorinterp=("red", "green", "blue"),
        band_tags=({"a": "1"}, {}, {"c": 'x<y & "z"'}),
        tags={"T": "<tags> & 'quotes'"},
    )
    data = np.random.default_rng(0).integers(0, 255, (3, 1024, 1024)).astype(np.uint8)
    with rasterio.open(_cog_of(tmp_path, spec, data, (512, 512))) as cog:
        assert cog.transform == grid.affine and cog.crs == grid.crs and cog.nodata is None
        assert [c.name for c in cog.colorinterp] == ["red", "green", "blue"]
        assert (
            cog.tags()["T"] == "<tags> & 'quotes'"
            and cog.tags(3)["c"] == 'x<y & "z"'
            and cog.tags(1)["a"] == "1"
        )
        np.testing.assert_array_equal(cog.read(), data)


@pytest.mark.parametrize("colorinterp", [("nir", "other_ir", "sar_c"), ("Y", "Cb", "Cr")])
def test_every_colour_interpretation_survives_the_vrt(tmp_path: Path, colorinterp) -> None:
    """rasterio names four colour interpretations otherwise than GDAL (``other_ir`` is
    GDAL's ``OtherIR``, ``Y`` its ``YCbCr_Y``...): the COG had them as ``undefined``."""
    grid = GeoBox((256, 256), GRID.affine, GRID.crs)
    spec = OutputSpec(grid=grid, count=3, dtype="uint8", nodata=None, colorinterp=colorinterp)
    data = np.random.default_rng(0).integers(0, 255, (3, 256, 256)).astype(np.uint8)
    with rasterio.open(_cog_of(tmp_path, spec, data, (256, 256))) as cog:
        assert tuple(c.name for c in cog.colorinterp) == colorinterp


@pytest.mark.parametrize("for_zarr_output", [False, True])
def test_all_nodata_tiles_are_stored_for_a_cog_and_left_out_of_a_zarr_output(
    tmp_path: Path, for_zarr_output: bool
) -> None:
    """The COG's store writes every chunk (no fill-value scan on the writer's hot path);
    a Zarr output leaves chunks of pure nodata out, as Zarr users expect."""
    grid = GeoBox((1024, 1024), GRID.affine, GRID.crs)
    spec = OutputSpec(grid=grid, count=1, dtype="uint16", nodata=0)
    store, dst = tmp_path / "store", tmp_path / ("out.zarr" if for_zarr_output else "out.tif")
    create_run_store(store, spec, (512, 512), for_zarr_output=for_zarr_output, destination=dst)
    writer = StoreWriter(store, dst)
    writer.write(slice(0, 512), slice(0, 512), np.zeros((1, 512, 512), np.uint16))  # all nodata
    writer.write(slice(0, 512), slice(512, 1024), np.ones((1, 512, 512), np.uint16))
    array = zarr.open_group(str(store), mode="r")["band_data"]
    assert array.nchunks_initialized == (1 if for_zarr_output else 2)


def test_the_store_is_raw_unless_asked_to_compress_and_both_give_the_same_cog(tmp_path: Path) -> None:
    """A raw store reads several times faster through GDAL (the COG build reads it in
    one thread); on a short disk it is LZ4-compressed, with the same COG out."""
    grid = GeoBox((1024, 1536), GRID.affine, GRID.crs)
    spec = OutputSpec(grid=grid, count=1, dtype="uint16", nodata=0)
    data = sample("uint16", 0, grid.shape.yx, 0.1, seed=5)[:1]
    pixels = {}
    for compressed in (False, True):
        store, dst = tmp_path / f"store{compressed}", tmp_path / f"out{compressed}.tif"
        create_run_store(
            store, spec, (512, 512), for_zarr_output=False, destination=dst, compressed=compressed
        )
        for name, array in zarr.open_group(str(store), mode="r").arrays():
            assert bool(array.compressors) == compressed, name  # pixels and every level
        writer = StoreWriter(store, dst)
        for r in range(0, 1024, 512):
            for c in range(0, 1536, 512):
                writer.write(slice(r, r + 512), slice(c, c + 512), data[:, r : r + 512, c : c + 512])
        finalise(store, dst, spec, overwrite=False)
        with rasterio.open(dst) as cog:
            pixels[compressed] = [
                cog.read(),
                *(cog.read(out_shape=(1, *s)) for s in level_shapes(1024, 1536, 512)),
            ]
    for raw, packed in zip(pixels[False], pixels[True], strict=True):
        np.testing.assert_array_equal(raw, packed)


@pytest.mark.parametrize("store_kind", ["raw", "lz4", "zarr output"])
def test_tiles_on_disk_finds_chunks_a_power_cut_lost_at_any_level(tmp_path: Path, store_kind: str) -> None:
    """After a machine restart a resume trusts only tiles whose every chunk (each band, each
    overview level the tiles write) is there and whole: empty, cut short, missing or garbled
    chunks each cost their tile, and no other."""
    grid = GeoBox((1024, 1536), GRID.affine, GRID.crs)
    spec = OutputSpec(grid=grid, count=2, dtype="uint16", nodata=0)
    data = sample("uint16", 0, grid.shape.yx, 0.1, seed=3)[:2] | 1  # no pure-nodata chunk
    store, dst = tmp_path / "store", tmp_path / ("out.zarr" if store_kind == "zarr output" else "out.tif")
    create_run_store(
        store,
        spec,
        (512, 512),
        for_zarr_output=store_kind == "zarr output",
        destination=dst,
        compressed=store_kind == "lz4",
    )
    writer = StoreWriter(store, dst)
    windows = {}
    for index, (r, c) in enumerate((r, c) for r in range(0, 1024, 512) for c in range(0, 1536, 512)):
        windows[index] = (slice(r, r + 512), slice(c, c + 512))
        writer.write(*windows[index], data[:, r : r + 512, c : c + 512])
    assert tiles_on_disk(store, windows, dst) == set(windows)

    group = zarr.open_group(str(store), mode="r")
    levels = int(group.attrs.get("tile_levels", 0))
    assert levels == (0 if store_kind == "zarr output" else 2)  # the COG stores' tiles write 2 levels

    def chunk(name: str, coords: tuple[int, int, int]) -> Path:
        return store / name / group[name].metadata.encode_chunk_key(coords)

    chunk("band_data", (0, 0, 0)).write_bytes(b"")  # tile 0: renamed in, data never written
    chunk("band_data", (1, 1, 2)).unlink()  # tile 5, second band: the rename was lost
    third = chunk("overview_2" if levels else "band_data", (0, 0, 1))  # tile 1: cut short
    third.write_bytes(third.read_bytes()[: third.stat().st_size // 2])
    assert tiles_on_disk(store, windows, dst) == {2, 3, 4}


def test_nan_of_a_float_scene_without_nodata_does_not_spread_through_the_overviews(make_raster) -> None:
    """A float scene marks invalid pixels with NaN and declares no nodata: its output
    declared none either, so GDAL's and geosr's overviews averaged each NaN into the pixel
    above it (0.3 % of scattered NaN at x4 covered 1.1 % of the third level, 4x more at
    each level below).  At x3 a NaN pixel's 3 x 3 block straddles the first level's 2 x 2
    blocks: a level pixel is NaN now only where its four are."""
    from geosr.api import upscale_file

    rng = np.random.default_rng(5)
    data = (rng.random((1, 256, 256)) + 1).astype("float32")
    data[0, rng.integers(0, 256, 400), rng.integers(0, 256, 400)] = np.nan
    src = make_raster("dem.tif", dtype="float32", data=data)
    out = upscale_file(src, src.with_name("dem_x3.tif"), scale=3, model="bicubic")
    with rasterio.open(out) as ds:
        assert ds.nodata is not None and np.isnan(ds.nodata)
        assert ds.overviews(1) == [2]
        full = ds.read(1)
        level = ds.read(1, out_shape=(full.shape[0] // 2, full.shape[1] // 2))
    all_four = np.isnan(full).reshape(level.shape[0], 2, level.shape[1], 2).all(axis=(1, 3))
    np.testing.assert_array_equal(np.isnan(level), all_four)
    assert cog_validate(str(out))[0]
