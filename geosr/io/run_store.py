"""The run's pixel store, and the final output built from it.

Every run (local or on a cluster) writes tile outputs into a Zarr store in
its run-state folder (:mod:`geosr.io.runstate`), in chunks that tile cores own whole (one
per core in a Zarr output, blocks of the COG's size in a COG's: :func:`block_chunk`): no two
tiles share a chunk, so a tile rewritten after a crash never touches a
neighbour's pixels, and Dask workers can write concurrently.  At the end:

* ``.zarr`` output: the store *is* the output; its metadata is consolidated
  and the folder renamed into place;
* ``.tif`` output: the store also holds the COG's overview levels, written
  with each tile (:mod:`geosr.io.pyramid`); geosr compresses the store's chunks on
  every core into the COG GDAL's COG driver lays out (:mod:`geosr.io.cog_tiles`), or,
  for layouts that writer leaves alone, a VRT presents the store to GDAL as the
  finished raster (:mod:`geosr.io.vrt`) and GDAL's COG driver copies it into the COG
  (:func:`~geosr.io.cog.cog_from_source`): no intermediate GeoTIFF, no overview pass
  at the end.

A store that will become a COG is Zarr v2 (GDAL 3.10 reads v2 with Blosc, not
v3's codecs), uncompressed when the disk has room for it
(:func:`raw_store_fits`), else LZ4 at level 1; a Zarr output is in its own
format (v3 or v2, ``spec.zarr_format``) with the output's codec (``--compress``).  Uncompressed
because GDAL's COG driver reads its source in one thread while its NUM_THREADS
compress: through GDAL, a raw store reads at 3.2 GB/s and an LZ4 one at
0.56 GB/s here (an 8192^2 uint16 output in 512^2 blocks: 0.04 s against
0.23 s), so on a many-core or GPU machine the LZ4
decode alone would cap the COG build (a 4-band Sentinel-2 tile at x4 is 20 GB
with its overviews: about 35 s of decoding).  On the 2-core benchmark machine a
bicubic x4 run is 10-11 % faster end to end (2048^2 and 8192^2 inputs), and a
CNN-RNN run unchanged: its COG build gains what writing 1.6x the bytes costs.
"""

from __future__ import annotations

import errno
import functools
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr
from numcodecs import Blosc
from zarr.core.group import GroupMetadata
from zarr.core.metadata import ArrayMetadata, ArrayV2Metadata
from zarr.dtype import parse_dtype
from zarr.errors import GroupNotFoundError
from zarr.storage import LocalStore

from geosr.errors import GeosrError, OutputError, catch_warnings_serialised
from geosr.faults import checkpoint
from geosr.io.atomic import (
    check_writable,
    describe_write_failure,
    free_bytes,
    remove_stale_sidecars,
    replace_atomically,
    write_failure,
)
from geosr.io.chunk_files import ChunkFiles
from geosr.io.names import open_raster
from geosr.io.pyramid import coarser_levels, halve, level_shapes, tile_levels
from geosr.io.sink import OutputSpec
from geosr.io.zarr_store import VARIABLE, _create_store, _write_chunkwise

if TYPE_CHECKING:
    from geosr.io.runstate import RunState

_LZ4 = Blosc(cname="lz4", clevel=1, shuffle=Blosc.SHUFFLE)

# Levels below the tiles' own are computed at the end from the deepest tile
# level, read whole; above this size GDAL computes every level instead.
_MAX_FINAL_LEVEL_BYTES = 256 * 2**20


_BLOSC_HEADER = 16
"""Bytes of a Blosc chunk's header; bytes 12-15 hold the chunk's compressed size."""


_Shape = tuple[int, int]


def _level_name(level: int) -> str:
    return f"overview_{level}"


def level_names(levels: int) -> list[str]:
    """The arrays of a COG's run store that hold ``levels`` overview levels: full resolution first."""
    return [VARIABLE, *(_level_name(k) for k in range(1, levels + 1))]


def create_run_store(
    path: Path,
    spec: OutputSpec,
    chunks: tuple[int, int],
    *,
    for_zarr_output: bool,
    destination: Path,
    compressed: bool = False,
) -> None:
    """Create the empty store at ``path`` with ``chunks`` = (rows, cols) of one tile core.

    A COG's store is raw where the disk has room for it (:func:`raw_store_fits`), else
    LZ4; ``compressed`` asks for LZ4 regardless.
    """
    try:
        if for_zarr_output:
            _create_store(path, spec, chunks=chunks)
        else:
            raw = not compressed and raw_store_fits(spec, chunks, destination)
            _create_cog_store(path, spec, chunks, None if raw else _LZ4)
    except OSError as exc:
        raise write_failure(destination, exc, spec.nbytes) from None


def _cog_store_levels(spec: OutputSpec, chunks: tuple[int, int]) -> tuple[int, list[tuple[_Shape, _Shape]]]:
    """How many levels the tiles write, and every level's (shape, chunk shape) in a COG's store."""
    _, height, width = spec.shape
    shapes = level_shapes(height, width, spec.cog_block)
    by_tiles = tile_levels((height, width), chunks, len(shapes))
    levels: list[tuple[_Shape, _Shape]] = []
    for level, shape in enumerate([(height, width), *shapes]):
        if level <= by_tiles:  # a tile owns whole chunks at every tile level
            chunk = (
                block_chunk(chunks[0] >> level, spec.cog_block),
                block_chunk(chunks[1] >> level, spec.cog_block),
            )
        else:
            chunk = (min(spec.cog_block, shape[0]), min(spec.cog_block, shape[1]))
        levels.append((shape, chunk))
    return by_tiles, levels


def block_chunk(side: int, block: int) -> int:
    """The chunk side, in a COG's store, for a tile side of ``side`` pixels: the largest
    divisor of ``side`` no larger than the COG's ``block``.

    A tile then owns whole chunks (no two tiles write one), and GDAL reads each chunk
    once.  Its Zarr driver reads a whole chunk for every block the COG driver asks of it,
    and a multi-band COG asks for each block of every band in turn: in one 2048^2 chunk
    per tile, each of the 16 blocks of 512^2 in it read all of it.  Copying a 4-band
    8192^2 uint16 store into an uncompressed COG (tmpfs, 2 cores) took 1.62-1.91 s in
    chunks of 2048^2, 0.84-0.93 s in 1024^2 and 0.59-0.65 s in 512^2, as fast as from a
    tiled GeoTIFF (0.56 s); through 2048^2 chunks GDAL read about 270 MB/s, the rate of
    figure 9's COG build on the GPU machine (benchmarks/gpu/RESULTS.md).  The chunks are
    written as files (:mod:`geosr.io.chunk_files`), not one zarr call each.

    A side with no divisor of at least a quarter block (a 521-pixel tile at x4: 2084 = 4 x 521)
    stays one chunk, as in a Zarr output: chunks of 4 pixels would be a million files a tile.
    """
    chunk = max(d for d in range(1, min(side, block) + 1) if side % d == 0)
    return chunk if chunk >= min(side, block // 4) else side


def raw_store_fits(spec: OutputSpec, chunks: tuple[int, int], destination: Path) -> bool:
    """Whether the disk has room for a raw store twice: the store, then as much free for
    the COG build (:meth:`geosr.io.cog.CogBuild._check_space`).

    Counted chunk by chunk, as the store holds its edge chunks whole: an 800^2 scene at
    x4 in tiles of 128 makes 3584^2 chunks of a 3200^2 output, 25 % more than its
    pixels.  LZ4 squeezes that padding.
    """
    free = free_bytes(destination.parent)
    if free is None:
        return True
    itemsize = np.dtype(spec.dtype).itemsize
    _, levels = _cog_store_levels(spec, chunks)
    stored = sum(
        -(-shape[0] // chunk[0]) * chunk[0] * -(-shape[1] // chunk[1]) * chunk[1] for shape, chunk in levels
    )
    return 2 * stored * spec.count * itemsize <= free


def _create_cog_store(path: Path, spec: OutputSpec, chunks: tuple[int, int], codec: Blosc | None) -> None:
    """Pixels and overview levels only: the VRT gives the COG its georeferencing
    and metadata from the spec, so the store needs no coordinates (nor a CRS that
    CF can describe).

    Written in one :func:`zarr.create_hierarchy` call, the same files as a group and its arrays
    created one by one, where each ``create_array`` wrote the group's metadata again and waited
    for zarr's event loop: 10-14 ms against 3-5 ms for a COG's four levels here, a tenth of the
    fixed cost of a 1024^2 bicubic job.  ``overwrite`` empties the folder, as ``mode="w"`` did.
    Its nodes are ``zarr.core``'s metadata objects, which zarr (3.1) exports nowhere public:
    ``zarr.metadata`` holds ``migrate_v3`` alone, and ``create_hierarchy`` takes no dicts.
    """
    count = spec.count
    by_tiles, levels = _cog_store_levels(spec, chunks)
    fill = spec.nodata if spec.nodata is not None else 0
    dtype = parse_dtype(np.dtype(spec.dtype), zarr_format=2)
    # The nodata value as text: JSON has no NaN.
    attrs = {"tile_levels": by_tiles, "nodata": None if spec.nodata is None else repr(spec.nodata)}
    nodes: dict[str, GroupMetadata | ArrayMetadata] = {"": GroupMetadata(attributes=attrs, zarr_format=2)}
    for level, (shape, chunk) in enumerate(levels):
        nodes[_level_name(level) if level else VARIABLE] = ArrayV2Metadata(
            shape=(count, *shape),
            chunks=(1, *chunk),
            dtype=dtype,
            fill_value=fill,
            order="C",
            compressor=codec,
            filters=None,
            dimension_separator=".",
        )
    for _ in zarr.create_hierarchy(store=LocalStore(str(path)), nodes=nodes, overwrite=True):
        pass  # a generator: the nodes are written as it is consumed


class StoreWriter:
    """Writes windows into a run store (one per process or thread), with their overview levels."""

    def __init__(self, store: Path, destination: Path, needed: int | None = None) -> None:
        self.destination = destination
        self.needed = needed
        try:
            group: Any = zarr.open_group(str(store), mode="r+")
        except (OSError, GroupNotFoundError) as exc:
            # The store removed after it was made (its output's folder deleted before the
            # first tile): a FileNotFoundError traceback, where the run says so in one line
            # (RunState.check_kept) as it does of a store removed under its tiles.
            raise write_failure(destination, _as_os_error(exc, store), needed) from None
        # A COG's store (the one with overview levels) is read once, by GDAL, so every
        # chunk is written, as files (ChunkFiles: its chunks are many, blocks of the COG):
        # zarr's test for chunks equal to the fill value took 16 of 27 ms per 2048^2 uint16
        # chunk.  A Zarr output keeps the test, so that its all-nodata chunks are left out,
        # as Zarr users expect.
        cog = _is_cog(destination)
        arrays = [
            group[VARIABLE],
            *(group[_level_name(k)] for k in range(1, _tile_levels(group, destination) + 1)),
        ]
        self._writes: list[Callable[[slice, slice, np.ndarray], None]] = [
            ChunkFiles(store, a).write
            if cog
            else functools.partial(_write_chunkwise, a.with_config({"write_empty_chunks": False}))
            for a in arrays
        ]
        self._nodata = _stored_nodata(group) if cog else None  # only the levels use it

    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Write ``data`` ``(count, h, w)`` at output pixels ``rows`` x ``cols``.

        Raises
        ------
        OutputError
            Disk full or any other write failure, with the path and the sizes.
        """
        try:
            for k, write in enumerate(self._writes):
                if k:
                    # Tile windows start and end on multiples of 2**k (tile_levels), so
                    # every halving is exact and lands on the level's own chunks.
                    data = halve(data, self._nodata)
                    rows, cols = _halved(rows), _halved(cols)
                write(rows, cols, data)
        except OSError as exc:
            raise write_failure(self.destination, exc, self.needed) from None


def _halved(window: slice) -> slice:
    return slice(window.start // 2, window.stop // 2)


def _as_os_error(exc: Exception, store: Path) -> OSError:
    """``exc``, or for zarr's GroupNotFoundError (the store's folder there, its metadata not) the
    FileNotFoundError of the missing store."""
    return (
        exc
        if isinstance(exc, OSError)
        else FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(store))
    )


def finalise(store: Path, destination: Path, spec: OutputSpec, *, overwrite: bool) -> Path:
    """Turn the complete run store into the output at ``destination``, atomically."""
    if destination.suffix.lower() == ".zarr":
        return _finalise_zarr(store, destination, spec, overwrite)
    return _finalise_cog(store, destination, spec, overwrite)


def unfinished_error(state: RunState, failure: OutputError) -> GeosrError:
    """What to raise when :func:`finalise` failed with ``failure`` on a whole store.

    A failure the user can fix (a full disk, permissions, a file in the way)
    keeps the run state for ``--resume``, which then only builds the output: a
    large scene's compute is hours.  A COG that came out wrong is a bug no
    rerun fixes; its ``failure`` stands, and the state goes.
    """
    from geosr.io.cog import WriterBugError

    return failure if isinstance(failure, WriterBugError) else state.unfinished(failure)


def _finalise_zarr(store: Path, destination: Path, spec: OutputSpec, overwrite: bool) -> Path:
    try:
        with catch_warnings_serialised():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            zarr.consolidate_metadata(str(store), zarr_format=spec.zarr_version)
    except OSError as exc:
        raise OutputError(describe_write_failure(destination, exc, spec.nbytes)) from None
    checkpoint("cog")
    # As the COG's build checks it: a store another program put at the destination while
    # the tiles ran was replaced without --overwrite (the run's check came before them).
    check_writable(destination, overwrite)
    replace_atomically(store, destination)
    remove_stale_sidecars(destination)
    return destination


def _finalise_cog(store: Path, destination: Path, spec: OutputSpec, overwrite: bool) -> Path:
    from geosr.io.cog import cog_from_source
    from geosr.io.cog_tiles import write_cog
    from geosr.io.vrt import write_vrt, zarr_array

    _, height, width = spec.shape
    shapes = level_shapes(height, width, spec.cog_block)
    levels = _complete_levels(store, destination, spec, shapes)
    checkpoint("finalise")
    vrt = store.parent / "cog.vrt"
    names = level_names(levels)
    try:
        write_vrt(vrt, spec, zarr_array(store, names[0]), [zarr_array(store, name) for name in names[1:]])
    except OSError as exc:
        raise OutputError(describe_write_failure(destination, exc, None)) from None
    checkpoint("finalise")
    # geosr compresses the COG's tiles itself when the store holds every level (cog_tiles).
    tiles = functools.partial(write_cog, store, spec, names=names) if levels == len(shapes) else None
    return cog_from_source(
        vrt, destination, spec, source_bytes=_size_on_disk(store), overwrite=overwrite, tiles=tiles
    )


def _complete_levels(store: Path, destination: Path, spec: OutputSpec, shapes: list[tuple[int, int]]) -> int:
    """Compute the levels the tiles could not write; return how many levels the store holds.

    Zero means the COG driver computes the overviews itself: no level was
    written with the tiles (odd output sides), or the deepest one is too large
    to hold in memory.
    """
    group: Any = zarr.open_group(str(store), mode="r+")
    by_tiles = int(group.attrs.get("tile_levels", 0))
    if by_tiles == len(shapes):
        return by_tiles
    if by_tiles == 0:
        return 0
    deepest = group[_level_name(by_tiles)]
    if deepest.nbytes > _MAX_FINAL_LEVEL_BYTES:
        return 0
    finer = np.asarray(deepest[:])
    coarser = coarser_levels(finer, spec.shape[1:], shapes[by_tiles:], spec.nodata)
    for k, level in enumerate(coarser, start=by_tiles + 1):
        try:
            group[_level_name(k)][:] = level
        except OSError as exc:
            raise OutputError(describe_write_failure(destination, exc, spec.nbytes)) from None
    return len(shapes)


def tiles_on_disk(store: Path, windows: Mapping[int, tuple[slice, slice]], destination: Path) -> set[int]:
    """The tiles among ``windows`` (tile index -> its output rows and columns) whose
    chunks, at every level the tiles write, are all in ``store`` (the run store of
    ``destination``) and whole.

    For a resume after the machine restarted (:meth:`~geosr.io.runstate.RunState.restarted`):
    chunks are renamed into place once written, but not synced, so a power cut
    can lose a chunk the journal lists, or leave it empty.  A raw chunk is whole
    when it has its full size (ext4 and XFS grow a file's size on disk only once
    its data is written); a compressed one when it decodes.  A Zarr output leaves
    out chunks that are all nodata, so their tiles are computed again.
    """
    group: Any = zarr.open_group(str(store), mode="r")
    levels = _tile_levels(group, destination)
    arrays = [group[VARIABLE], *(group[_level_name(k)] for k in range(1, levels + 1))]
    whole = set()
    for index, (rows, cols) in windows.items():
        # A tile owns whole chunks at every level: those under its window, halved per level.
        chunks = [
            (array, (band, row, col))
            for k, array in enumerate(arrays)
            for band in range(array.shape[0])
            for row in _chunks_under(rows, k, array.chunks[1])
            for col in _chunks_under(cols, k, array.chunks[2])
        ]
        if all(_chunk_whole(store, array, coords) for array, coords in chunks):
            whole.add(index)
    return whole


def _chunks_under(window: slice, level: int, chunk: int) -> range:
    """Indices of the chunks of side ``chunk`` under ``window`` (level 0 pixels) at ``level``."""
    return range((window.start >> level) // chunk, -(-(window.stop >> level) // chunk))


def _chunk_whole(store: Path, array: Any, coords: tuple[int, int, int]) -> bool:
    path = store / array.path / array.metadata.encode_chunk_key(coords)
    try:
        size = path.stat().st_size
        if not array.compressors and not array.filters:
            return size == np.dtype(array.dtype).itemsize * int(np.prod(array.chunks))
        if all("blosc" in type(codec).__name__.lower() for codec in array.compressors):
            # Blosc's header gives the compressed size.  Decoding cannot tell: a chunk
            # Blosc stored uncompressed (noise) "decodes" from half its bytes.
            with path.open("rb") as f:
                header = f.read(_BLOSC_HEADER)
            return len(header) == _BLOSC_HEADER and int.from_bytes(header[12:16], "little") == size
        array.get_block_selection(coords)
    except Exception:  # missing or unreadable, or any decoding failure (codecs raise many kinds)
        return False
    return True


def _is_cog(destination: Path) -> bool:
    """Whether ``destination``'s run store is a COG's (the other kind: a Zarr output's)."""
    return destination.suffix.lower() != ".zarr"


def _tile_levels(group: Any, destination: Path) -> int:
    """How many overview levels the tiles write into the run store of ``destination``.

    A COG's store says so in its attributes; a Zarr output's has none, and its group's
    attributes are the input's tags: a GeoTIFF tag named ``tile_levels`` or ``nodata``
    (GDAL metadata any file may have) was read as the store's own, and a run whose input
    had ``nodata=none`` ended in a ValueError traceback.
    """
    return int(group.attrs.get("tile_levels", 0)) if _is_cog(destination) else 0


def _stored_nodata(group: Any) -> float | None:
    value = group.attrs.get("nodata")
    return None if value is None else float(value)


def _size_on_disk(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def output_job(destination: Path) -> str | None:
    """The ``GEOSR_JOB`` tag of an existing output (None if absent or unreadable)."""
    try:
        if destination.suffix.lower() == ".zarr":
            value = zarr.open_group(str(destination), mode="r").attrs.get("GEOSR_JOB")
            return str(value) if value is not None else None
        with open_raster(destination) as src:
            return src.tags().get("GEOSR_JOB")
    except Exception:  # any unreadable file simply is not a finished output of this job
        return None
