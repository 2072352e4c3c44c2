"""A COG's run store in chunks of the COG's blocks, written as files (geosr.io.chunk_files)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox

from geosr.io.chunk_files import ChunkFiles
from geosr.io.run_store import StoreWriter, block_chunk, create_run_store, tiles_on_disk
from geosr.io.sink import OutputSpec

GRID = GeoBox((1000, 1250), Affine(2.5, 0.0, 499_980.0, 0.0, -2.5, 5_300_040.0), "EPSG:32633")


def _spec(count: int = 2) -> OutputSpec:
    return OutputSpec(grid=GRID, count=count, dtype="uint16", nodata=0)


def test_block_chunk_divides_the_tile_and_fits_in_a_block() -> None:
    assert block_chunk(2048, 512) == 512
    assert block_chunk(2000, 512) == 500  # a --tile 500 at x4: a tile owns 4 x 4 chunks
    assert block_chunk(1928, 512) == 482
    assert block_chunk(256, 512) == 256  # a tile smaller than a block is one chunk
    assert block_chunk(2084, 512) == 2084  # 4 x 521: no divisor near a block, one chunk (not 4^2 px)
    assert block_chunk(1031, 512) == 1031  # a prime side (a 1031-pixel scene at x1)
    assert block_chunk(1200, 512) == 400


@pytest.mark.parametrize(("tile", "chunk"), [((2048, 2048), (512, 512)), ((1024, 1280), (512, 320))])
def test_a_cogs_store_is_chunked_in_blocks_its_tiles_own_whole(tmp_path: Path, tile, chunk) -> None:
    """GDAL's Zarr driver reads a whole chunk for every COG block it is asked for: a tile's
    chunk of 2048^2 was read 16 times.  Chunks are blocks of the COG now, at every level the
    tiles write; a Zarr output keeps one chunk per tile (its readers' chunks)."""
    grid = GeoBox((4096, 5120), GRID.affine, GRID.crs)
    spec = OutputSpec(grid=grid, count=1, dtype="uint16", nodata=0)
    create_run_store(tmp_path / "cog", spec, tile, for_zarr_output=False, destination=tmp_path / "out.tif")
    group = zarr.open_group(str(tmp_path / "cog"), mode="r")
    assert group["band_data"].chunks == (1, *chunk)
    assert group["overview_1"].chunks == (1, *(block_chunk(t // 2, 512) for t in tile))
    create_run_store(tmp_path / "zarr", spec, tile, for_zarr_output=True, destination=tmp_path / "out.zarr")
    assert zarr.open_group(str(tmp_path / "zarr"), mode="r")["band_data"].chunks == (1, *tile)


@pytest.mark.parametrize("compressed", [False, True])
def test_chunk_files_are_the_chunks_zarr_writes(tmp_path: Path, compressed: bool) -> None:
    """Written as files, the same chunks as zarr's: the pixels read back through zarr, edge
    chunks padded with the fill value, LZ4 where the store is compressed; a window that cuts
    chunks goes through zarr, which keeps the pixels around it."""
    rng = np.random.default_rng(1)
    data = rng.integers(1, 60000, (2, *GRID.shape.yx), dtype=np.uint16)
    stores = {}
    for way in ("files", "zarr"):
        store = tmp_path / way
        create_run_store(
            store,
            _spec(),
            (500, 650),
            for_zarr_output=False,
            destination=tmp_path / "o.tif",
            compressed=compressed,
        )
        array = zarr.open_group(str(store), mode="r+")["band_data"]
        assert array.chunks == (1, 500, 325)
        for r in range(0, 1000, 500):
            for c in range(0, 1250, 650):  # the last column of tiles 600 wide: its last chunk padded
                window = data[:, r : r + 500, c : c + 650]
                if way == "files":
                    ChunkFiles(store, array).write(slice(r, r + 500), slice(c, c + 650), window)
                else:
                    array[:, r : r + 500, c : c + 650] = window
        stores[way] = store
    for name in sorted(p.name for p in (stores["zarr"] / "band_data").iterdir()):
        assert (stores["files"] / "band_data" / name).read_bytes() == (
            stores["zarr"] / "band_data" / name
        ).read_bytes(), name
    array = zarr.open_group(str(stores["files"]), mode="r+")["band_data"]
    np.testing.assert_array_equal(array[:], data)
    ChunkFiles(stores["files"], array).write(
        slice(100, 200), slice(300, 400), data[:, :100, :100]
    )  # cuts chunks
    expected = data.copy()
    expected[:, 100:200, 300:400] = data[:, :100, :100]
    np.testing.assert_array_equal(array[:], expected)
    assert not [p for p in (stores["files"] / "band_data").iterdir() if p.name.endswith(".partial")]


def test_a_resume_trusts_a_tile_only_with_every_chunk_it_owns(tmp_path: Path) -> None:
    """A tile of 2 x 2 chunks (and its overview level's) with one chunk lost to a power cut is
    computed again, whichever chunk it is: the check looked at a tile's first chunk only."""
    rng = np.random.default_rng(2)
    data = rng.integers(1, 60000, (1, 1024, 1024), dtype=np.uint16)
    grid = GeoBox((1024, 1024), GRID.affine, GRID.crs)
    spec = OutputSpec(grid=grid, count=1, dtype="uint16", nodata=0)
    store, dst = tmp_path / "store", tmp_path / "out.tif"
    create_run_store(store, spec, (1024, 512), for_zarr_output=False, destination=dst)
    writer = StoreWriter(store, dst)
    windows = {0: (slice(0, 1024), slice(0, 512)), 1: (slice(0, 1024), slice(512, 1024))}
    for rows, cols in windows.values():
        writer.write(rows, cols, data[:, rows, cols])
    assert tiles_on_disk(store, windows, dst) == {0, 1}
    (store / "band_data" / "0.1.1").unlink()  # tile 1's lower chunk, not its first
    assert tiles_on_disk(store, windows, dst) == {0}


def test_chunk_files_refuse_nested_chunk_keys(tmp_path: Path) -> None:
    """Keys with "/" need a folder per chunk row, which a write could make again under a
    store just removed: such arrays are refused, not half written."""
    array = zarr.create_array(
        tmp_path / "nested.zarr",
        shape=(1, 8, 8),
        chunks=(1, 4, 4),
        dtype="uint16",
        zarr_format=2,
        chunk_key_encoding={"name": "v2", "separator": "/"},
        compressors=None,
    )
    with pytest.raises(ValueError, match="flat chunk keys"):
        ChunkFiles(tmp_path / "nested.zarr", array)
