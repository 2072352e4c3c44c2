"""The COG's tiles compressed by geosr (:mod:`geosr.io.cog_tiles`): the COG GDAL's build makes.

The reference is the same run store finalised by GDAL's COG driver alone (the path
geosr takes for layouts its writer leaves to GDAL): every level's pixels, the
georeferencing, every tag and the COG layout must match.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import rasterio
import rasterio.shutil
from affine import Affine
from odc.geo.geobox import GeoBox
from rio_cogeo.cogeo import cog_validate

from geosr.io import cog_tiles
from geosr.io.run_store import StoreWriter, create_run_store, finalise
from geosr.io.sink import OutputSpec

GRID = GeoBox((1100, 1300), Affine(2.5, 0.0, 499_980.0, 0.0, -2.5, 5_300_040.0), "EPSG:32633")


def _data(dtype: str, count: int, nodata: float | None, shape: tuple[int, int]) -> np.ndarray:
    """Smooth imagery with noise, the extremes of the type, and holes of nodata."""
    rng = np.random.default_rng(7)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = np.sin(rows / 37.0) + np.cos(cols / 53.0)
    kind = np.dtype(dtype)
    if kind.kind == "f":
        data = (base * 1e3 + rng.normal(0, 5, (count, *shape))).astype(dtype)
        data[:, 0, :3] = [np.finfo(dtype).max, np.finfo(dtype).tiny, -0.0]
    else:
        info = np.iinfo(dtype)
        span = (info.max - info.min) / 5
        mid = (int(info.max) + int(info.min)) / 2
        data = np.clip(mid + base * span + rng.normal(0, span / 50, (count, *shape)), info.min, info.max)
        data = data.astype(dtype)
        data[:, 0, :2] = [info.min, info.max]
    if nodata is not None:
        data[:, 100:300, 200:700] = nodata
    return data


def _finalised(
    tmp_path: Path, name: str, spec: OutputSpec, data: np.ndarray, chunks: tuple[int, int]
) -> tuple[Path, list[bool]]:
    """``data`` through a run store of ``chunks`` into a COG, as a run does; and what write_cog said."""
    said: list[bool] = []
    real = cog_tiles.write_cog

    def told(*args: Any, **kwargs: Any) -> bool:
        said.append(real(*args, **kwargs))
        return said[-1]

    store, dst = tmp_path / f"{name}.store", tmp_path / f"{name}.tif"
    create_run_store(store, spec, chunks, for_zarr_output=False, destination=dst)
    writer = StoreWriter(store, dst)
    height, width = data.shape[1:]
    for r in range(0, height, chunks[0]):
        for c in range(0, width, chunks[1]):
            rows, cols = slice(r, min(r + chunks[0], height)), slice(c, min(c + chunks[1], width))
            writer.write(rows, cols, data[:, rows, cols])
    cog_tiles.write_cog = told
    try:
        finalise(store, dst, spec, overwrite=False)
    finally:
        cog_tiles.write_cog = real
    return dst, said


def _gdals(tmp_path: Path, spec: OutputSpec, data: np.ndarray, chunks: tuple[int, int]) -> Path:
    """The same, built by GDAL's COG driver alone."""
    real = cog_tiles.write_cog
    cog_tiles.write_cog = lambda *args, **kwargs: False
    try:
        return _finalised(tmp_path, "gdal", spec, data, chunks)[0]
    finally:
        cog_tiles.write_cog = real


def _described(path: Path) -> dict[str, Any]:
    """Everything a reader sees of a COG but its compressed bytes."""
    with rasterio.open(path) as ds:
        levels = [ds.read()]
        for k in range(len(ds.overviews(1))):
            with rasterio.open(path, overview_level=k) as level:
                levels.append(level.read())
                assert level.block_shapes == ds.block_shapes
        return {
            "profile": {**ds.profile, "nodata": repr(ds.nodata)},  # NaN equals no NaN
            "tags": [ds.tags(), *(ds.tags(b) for b in ds.indexes)],
            "structure": ds.tags(ns="IMAGE_STRUCTURE"),
            "descriptions": ds.descriptions,
            "colorinterp": ds.colorinterp,
            "scales": (ds.scales, ds.offsets, ds.units),
            "overviews": ds.overviews(1),
            "levels": levels,
            "validate": cog_validate(str(path), quiet=True),
        }


def _assert_same_cog(mine: Path, theirs: Path) -> None:
    ours, gdal = _described(mine), _described(theirs)
    for k, (a, b) in enumerate(zip(ours.pop("levels"), gdal.pop("levels"), strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"level {k}")
    assert ours == gdal
    assert ours["validate"][:2] == (True, [])


@pytest.mark.parametrize(
    ("dtype", "count", "nodata", "compress"),
    [
        ("uint16", 1, 0, "zstd"),
        ("uint16", 4, None, "zstd"),
        ("uint8", 3, None, "zstd"),
        ("uint8", 1, 255, "zstd"),
        ("int16", 2, -32768, "zstd"),
        ("int32", 1, None, "zstd"),
        ("float32", 1, math.nan, "zstd"),
        ("float32", 3, -9999.0, "zstd"),
        ("float64", 2, None, "zstd"),
        ("uint16", 2, 0, "none"),
        ("float32", 1, None, "none"),
    ],
)
def test_geosrs_tiles_make_the_cog_gdal_makes(tmp_path: Path, dtype, count, nodata, compress) -> None:
    """Every dtype's predictor (2 for integers, 3 for floats), ZSTD and no compression, one band and
    several (pixel-interleaved), nodata or not: the same COG as GDAL's build, and written by
    geosr, not handed back to GDAL."""
    spec = OutputSpec(
        grid=GRID,
        count=count,
        dtype=dtype,
        nodata=nodata,
        compress=compress,
        tags={"K": "v & <w>"},
        descriptions=tuple(f"B{b}" for b in range(1, count + 1)),
    )
    data = _data(dtype, count, nodata, GRID.shape.yx)
    mine, said = _finalised(tmp_path, "geosr", spec, data, (512, 512))
    assert said == [True]
    _assert_same_cog(mine, _gdals(tmp_path, spec, data, (512, 512)))


@pytest.mark.parametrize(
    ("chunks", "by_geosr"),
    [
        # Tiles of 256 x 1024: chunks of 256 x 512, then 128 x 256 and 64 x 128 in the levels,
        # several to a COG tile.
        ((256, 1024), True),
        # One tile of 1100 x 1300: chunks of 275 x 325 (the largest divisors under the block)
        # straddle the COG's tiles: GDAL's build.
        ((1100, 1300), False),
    ],
)
def test_chunks_of_other_shapes_fill_the_same_tiles(tmp_path: Path, chunks, by_geosr: bool) -> None:
    spec = OutputSpec(grid=GRID, count=2, dtype="uint16", nodata=0)
    data = _data("uint16", 2, 0, GRID.shape.yx)
    mine, said = _finalised(tmp_path, "geosr", spec, data, chunks)
    assert said == [by_geosr]
    _assert_same_cog(mine, _gdals(tmp_path, spec, data, chunks))


def test_layouts_it_does_not_write_are_left_to_gdal(tmp_path: Path) -> None:
    """LZW and DEFLATE (GDAL's codecs do better), and a store whose chunks straddle the COG's
    blocks (an odd --tile)."""
    data = _data("uint16", 1, 0, GRID.shape.yx)
    for compress in ("lzw", "deflate"):
        spec = OutputSpec(grid=GRID, count=1, dtype="uint16", nodata=0, compress=compress)
        out, said = _finalised(tmp_path, compress, spec, data, (512, 512))
        assert said == [False] and cog_validate(str(out), quiet=True)[:2] == (True, [])
    spec = OutputSpec(grid=GRID, count=1, dtype="uint16", nodata=0)
    out, said = _finalised(tmp_path, "odd", spec, data, (400, 400))
    assert said == [False]
    with rasterio.open(out) as cog:
        np.testing.assert_array_equal(cog.read(), data)


def test_a_bigtiff_skeleton_is_filled_in_too(tmp_path: Path) -> None:
    """BigTIFF's 8-byte offsets and IFD entries: forced on a small output."""
    spec = OutputSpec(grid=GRID, count=1, dtype="uint16", nodata=0)
    data = _data("uint16", 1, 0, GRID.shape.yx)
    store, big, ref = tmp_path / "s.store", tmp_path / "big.tif", tmp_path / "ref.tif"
    create_run_store(store, spec, (512, 512), for_zarr_output=False, destination=ref)
    StoreWriter(store, ref).write(slice(0, 1100), slice(0, 1300), data)
    options = {"BLOCKSIZE": 512, "COMPRESS": "ZSTD", "LEVEL": 2, "PREDICTOR": "YES", "BIGTIFF": "YES"}
    finalise(store, ref, spec, overwrite=False)  # which completes the store's levels
    names = ["band_data", "overview_1", "overview_2"]
    assert cog_tiles.write_cog(store, spec, big, options, names=names)
    assert big.read_bytes()[2:4] == b"+\x00"  # version 43: BigTIFF
    big_one, ref_one = _described(big), _described(ref)
    for a, b in zip(big_one.pop("levels"), ref_one.pop("levels"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert big_one["validate"][:2] == (True, []) and big_one["overviews"] == ref_one["overviews"] == [2, 4]
    assert big_one["profile"]["transform"] == GRID.affine and big_one["profile"]["crs"] == GRID.crs


@pytest.mark.parametrize(
    ("dtype", "bands"), [("uint8", 3), ("uint16", 1), ("int16", 2), ("float32", 3), ("float64", 1)]
)
def test_the_predictor_leaves_the_bytes_libtiff_leaves(tmp_path: Path, dtype: str, bands: int) -> None:
    """A tile GDAL wrote (ZSTD, PREDICTOR=YES), decompressed: the bytes _predicted makes of its pixels."""
    rng = np.random.default_rng(1)
    pixels = (rng.normal(0, 1, (bands, 256, 256)) * 90 + 100).astype(dtype)
    path = tmp_path / "t.tif"
    profile = {"driver": "GTiff", "width": 256, "height": 256, "count": bands, "dtype": dtype}
    with rasterio.open(
        path,
        "w",
        **profile,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="zstd",
        predictor=3 if dtype.startswith("float") else 2,
        interleave="pixel",
    ) as ds:
        ds.write(pixels)
    with rasterio.open(path) as ds:
        offset = int(ds.get_tag_item("BLOCK_OFFSET_0_0", "TIFF", 1))
        size = int(ds.get_tag_item("BLOCK_SIZE_0_0", "TIFF", 1))
    with path.open("rb") as f:
        f.seek(offset)
        libtiffs = numcodecs.Zstd().decode(f.read(size))
    predictor = 3 if dtype.startswith("float") else 2
    mine = cog_tiles._predicted(np.ascontiguousarray(pixels.transpose(1, 2, 0)), predictor)
    assert mine.tobytes() == bytes(libtiffs)


@pytest.mark.parametrize("grid", [GeoBox((600, 600), GRID.affine, GRID.crs), GRID])
def test_an_uncompressed_cog_fits_the_space_its_build_is_given(tmp_path: Path, grid: GeoBox) -> None:
    """The space checked before an uncompressed COG's build (its every tile at full size) left out
    each tile's framing and the header: a disk with just that room filled during the build."""
    from geosr.io.cog import uncompressed_cog_bytes

    spec = OutputSpec(grid=grid, count=3, dtype="uint8", nodata=None, compress="none", tags={"K": "v" * 2000})
    mine, said = _finalised(tmp_path, "geosr", spec, _data("uint8", 3, None, grid.shape.yx), (512, 512))
    assert said == [True]
    assert mine.stat().st_size <= uncompressed_cog_bytes(spec)
