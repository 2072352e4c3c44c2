"""A COG's tiles compressed by geosr on every core, into the file GDAL's COG driver lays out.

GDAL's COG driver reads its source in one thread and compresses in ``NUM_THREADS``, and
on many cores it uses few of them: on the 16-core benchmark machine the COG of a 2048^2
x4 job (179 MB of pixels with its overviews) took 0.47 s, about two cores' worth of ZSTD
(``benchmarks/RESULTS.md``, figure 2), and on the H200 machine a 10980^2 x 4-band x4 COG
took 29.7 s of the 67.7 s run, 0.69 GB/s, with 7-8 of its 16 CPUs busy
(``benchmarks/gpu/RESULTS.md``).  So geosr splits the build:

1. GDAL writes the COG's *skeleton*: from a VRT with the output's georeferencing and
   metadata but no pixels (no band or overview level has a source, so GDAL reads
   nothing), with ``SPARSE_OK``: its header, the ghost structural metadata, and every
   IFD (full resolution, then each overview), all tags as GDAL writes them, with every
   tile's offset and size 0.  A few milliseconds at any size.
2. geosr compresses the run store's chunks tile by tile on all cores, as libtiff
   would (the IFD's predictor, then ZSTD at the level asked for, or nothing), appends them
   in the COG's order (the smallest overview first, each level's tiles row by row),
   each between the 4-byte size leader and the repeated last 4 bytes the ghost
   header announces, and writes their offsets and sizes into the IFDs.

The COG is then checked as any other (every tile in the file, the grid, ``cog_validate``:
:class:`geosr.io.cog.CogBuild`).  Layouts this does not know (LZW; a store whose chunks
straddle the COG's tiles, as odd ``--tile`` sizes make; a skeleton other than expected)
go back to GDAL's own build (:func:`write_cog` returns False).  So does DEFLATE: Python's
zlib at GDAL's level 3 wrote 5 % more bytes than GDAL's libdeflate, 1.6x slower (a NAIP
output at x4; zlib 5 matched the size at 2.6x the time), so GDAL's build stays the better
one there on few cores.  ZSTD here is numcodecs' zstd, not GDAL's libzstd: the same pixels,
and bytes that may differ.
"""

from __future__ import annotations

import collections
import os
import struct
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio.shutil
import zarr
from numcodecs import Zstd

from geosr.io.names import utf8_name
from geosr.io.sink import OutputSpec
from geosr.io.vrt import write_vrt
from geosr.resources import usable_cpus

ZSTD, NONE = 50000, 1
"""TIFF compression codes (tag 259) this writer makes."""

_CODES = {"ZSTD": ZSTD, "NONE": NONE}

_TYPES = {3: "H", 4: "I", 16: "Q"}
"""Struct formats of the TIFF integer types (SHORT, LONG, LONG8) a tile array can have."""

_SIZES = dict.fromkeys((1, 2, 6, 7), 1) | {3: 2, 8: 2} | dict.fromkeys((4, 9, 11, 13), 4)
_SIZES |= dict.fromkeys((5, 10, 12, 16, 17, 18), 8)
"""Bytes per value of every TIFF field type."""

_AHEAD = 2
"""Tiles in flight per thread: one being compressed (its pixels, their predicted copy and the
codec's output: 3 tiles) and one done, waiting its turn to be written: 4 tiles a thread, within
what :data:`geosr.resources.COG_TILES_PER_THREAD` counts for GDAL's build."""


_GHOST = (
    "LAYOUT=IFDS_BEFORE_DATA",
    "BLOCK_ORDER=ROW_MAJOR",
    "BLOCK_LEADER=SIZE_AS_UINT4",
    "BLOCK_TRAILER=LAST_4_BYTES_REPEATED",
    "KNOWN_INCOMPATIBLE_EDITION=NO",
)
"""The lines of GDAL's ghost header that promise the layout this writer makes."""


class UnknownLayoutError(Exception):
    """The skeleton GDAL wrote is not the layout this writer fills in."""


@dataclass(frozen=True)
class _Ifd:
    """One image of the skeleton: its size, tiling, encoding, and where its tile arrays are."""

    tags: Mapping[int, tuple[int, int, int]]  # tag -> (type, count, file position of the values)
    values: Mapping[int, int]  # first value of each integer tag (one per band for bits, format)

    def value(self, tag: int, default: int) -> int:
        return self.values.get(tag, default)


@dataclass(frozen=True)
class _Level:
    """One level of the run store: its chunk files and how they read."""

    folder: Path
    shape: tuple[int, int]
    chunk: tuple[int, int]
    codec: Any  # a numcodecs codec, or None: raw chunks

    def tiles(self, block: int) -> Iterator[tuple[int, int]]:
        for row in range(-(-self.shape[0] // block)):
            for col in range(-(-self.shape[1] // block)):
                yield row, col


def write_cog(
    store: Path, spec: OutputSpec, cog: Path, options: Mapping[str, Any], *, names: list[str]
) -> bool:
    """Write the COG of the complete run ``store`` at ``cog``; False where this layout is GDAL's to build.

    Parameters
    ----------
    store : Path
        The run store, every level complete: ``names`` are its arrays, full resolution first.
    spec : OutputSpec
        The output's grid, bands, dtype and metadata.
    cog : Path
        The file to write (a temporary the caller checks and renames).
    options : mapping
        GDAL COG driver creation options (compression, level, block size, BigTIFF).
    names : list of str
        The store's arrays, full resolution then each overview level.

    Returns
    -------
    bool
        True when the COG is written; False when nothing is (and ``cog`` is absent).
    """
    code = _CODES.get(str(options.get("COMPRESS", "NONE")).upper())
    levels = _store_levels(store, names)
    block = int(options["BLOCKSIZE"])
    if code is None or levels is None or not all(_aligned(level, block) for level in levels):
        return False
    encode = _encoder(code, options)
    with tempfile.TemporaryDirectory(prefix=".skeleton-", dir=store.parent) as folder:
        _write_skeleton(Path(folder), spec, [level.shape for level in levels], cog, options)
    try:
        ifds = _read_ifds(cog, len(levels))
        for ifd, level in zip(ifds, levels, strict=True):
            _check_ifd(ifd, level, block, spec, code)
        dtype = np.dtype(spec.dtype)
        predictor = ifds[0].value(317, 1)
        fill = spec.nodata if spec.nodata is not None else 0

        def encoded(job: tuple[int, tuple[int, int]]) -> bytes:
            level, tile = levels[job[0]], job[1]
            return encode(_predicted(_tile(level, tile, block, spec.count, dtype, fill), predictor))

        # Smallest level first: the COG's order, overviews before the full resolution.
        jobs = ((k, tile) for k in reversed(range(len(levels))) for tile in levels[k].tiles(block))
        with cog.open("r+b") as f:
            f.seek(0, os.SEEK_END)
            placed = _append_tiles(f, jobs, encoded, len(levels))
            for ifd, tiles in zip(ifds, placed, strict=True):
                _write_array(f, ifd.tags[324], [offset for offset, _ in tiles])
                _write_array(f, ifd.tags[325], [size for _, size in tiles])
    except UnknownLayoutError:
        cog.unlink(missing_ok=True)
        return False
    return True


def _store_levels(store: Path, names: list[str]) -> list[_Level] | None:
    group: Any = zarr.open_group(str(store), mode="r")
    levels = []
    for name in names:
        meta = group[name].metadata
        dtype = np.dtype(meta.dtype.to_native_dtype())
        if meta.filters or meta.order != "C" or meta.dimension_separator != "." or dtype.byteorder == ">":
            return None
        levels.append(_Level(store / name, tuple(meta.shape[1:]), tuple(meta.chunks[1:]), meta.compressor))
    return levels


def _aligned(level: _Level, block: int) -> bool:
    """Whether every chunk of ``level`` lies in one COG tile: chunks divide the block, or span a
    side no longer than one."""
    return all(
        block % chunk == 0 or (chunk == side and side <= block)
        for side, chunk in zip(level.shape, level.chunk, strict=True)
    )


def _encoder(code: int, options: Mapping[str, Any]) -> Callable[[np.ndarray], bytes]:
    """The codec of ``code`` at the level GDAL's options ask (zstd releases the GIL), for
    C-contiguous tiles (:func:`_predicted`'s)."""
    if code == ZSTD:
        zstd = Zstd(level=int(options.get("LEVEL", 9)))
        return lambda tile: bytes(zstd.encode(tile))
    return lambda tile: tile.tobytes()


def _write_skeleton(
    folder: Path, spec: OutputSpec, shapes: list[tuple[int, int]], cog: Path, options: Mapping[str, Any]
) -> None:
    """GDAL's COG of ``spec`` with no pixels: every IFD and tag, every tile's offset and size 0."""
    overviews = []
    for k, (height, width) in enumerate(shapes[1:], start=1):
        path = folder / f"level_{k}.vrt"
        write_vrt(path, spec, None, size=(height, width))
        overviews.append(utf8_name(path))
    write_vrt(folder / "empty.vrt", spec, None, overviews)
    rasterio.shutil.copy(
        utf8_name(folder / "empty.vrt"), utf8_name(cog), driver="COG", **options, SPARSE_OK="TRUE"
    )


def _read_ifds(path: Path, expected: int) -> list[_Ifd]:
    """The IFDs of the (little-endian) TIFF at ``path``; ``expected`` of them, or UnknownLayoutError."""
    with path.open("rb") as f:
        head = f.read(16)
        if head[:2] != b"II":
            raise UnknownLayoutError("not little-endian")
        big = struct.unpack_from("<H", head, 2)[0] == 43
        word, count_format, entry_size = ("Q", "Q", 20) if big else ("I", "H", 12)
        (offset,) = struct.unpack_from("<" + word, head, 8 if big else 4)
        # The ghost header GDAL writes after the TIFF header: the tiles' order and framing.
        ghost = f.read(max(0, offset - f.tell())).decode("ascii", "replace")
        if not all(line in ghost.splitlines() for line in _GHOST):
            raise UnknownLayoutError("ghost header: " + ghost)
        size = struct.calcsize(word)
        ifds = []
        while offset:
            f.seek(offset)
            (entries,) = struct.unpack("<" + count_format, f.read(struct.calcsize(count_format)))
            first = offset + struct.calcsize(count_format)
            raw = f.read(entries * entry_size + size)
            tags = {}
            for i in range(entries):
                tag, kind, count = struct.unpack_from("<HH" + word, raw, i * entry_size)
                field = i * entry_size + 4 + size  # the value, or where the values are
                inline = _SIZES.get(kind, 0) * count <= size
                position = first + field if inline else struct.unpack_from("<" + word, raw, field)[0]
                tags[tag] = (kind, count, position)
            (offset,) = struct.unpack_from("<" + word, raw, entries * entry_size)
            values = {}
            for tag, (kind, _count, position) in tags.items():
                if kind in _TYPES:
                    f.seek(position)
                    values[tag] = struct.unpack("<" + _TYPES[kind], f.read(struct.calcsize(_TYPES[kind])))[0]
            ifds.append(_Ifd(tags, values))
    if len(ifds) != expected:
        raise UnknownLayoutError(f"{len(ifds)} images, not {expected}")
    return ifds


def _check_ifd(ifd: _Ifd, level: _Level, block: int, spec: OutputSpec, code: int) -> None:
    """Raise UnknownLayoutError unless ``ifd`` is ``level``'s image as this writer fills it in."""
    dtype = np.dtype(spec.dtype)
    tiles = -(-level.shape[0] // block) * -(-level.shape[1] // block)
    expected = {
        "size": ((level.shape[1], level.shape[0]), (ifd.value(256, 0), ifd.value(257, 0))),
        "tiles": ((block, block), (ifd.value(322, 0), ifd.value(323, 0))),
        "bands": (spec.count, ifd.value(277, 1)),
        "bits": (8 * dtype.itemsize, ifd.value(258, 1)),
        "interleave": (1, ifd.value(284, 1)),
        "compression": (code, ifd.value(259, 1)),
        "subfile": (True, ifd.value(254, 0) in (0, 1)),  # no mask image
        "offsets": ((tiles, tiles), (ifd.tags.get(324, (0, 0, 0))[1], ifd.tags.get(325, (0, 0, 0))[1])),
        "types": (True, ifd.tags.get(324, (0,))[0] in _TYPES and ifd.tags.get(325, (0,))[0] in _TYPES),
        "predictor": (
            True,
            (ifd.value(317, 1), dtype.kind) in {(1, "u"), (1, "i"), (1, "f"), (2, "u"), (2, "i"), (3, "f")},
        ),
    }
    wrong = [name for name, (want, found) in expected.items() if want != found]
    if wrong:
        raise UnknownLayoutError(", ".join(wrong))


def _tile(
    level: _Level, tile: tuple[int, int], block: int, count: int, dtype: np.dtype, fill: float
) -> np.ndarray:
    """The pixels of COG tile ``tile`` of ``level``, ``(block, block, count)``, padded with ``fill``."""
    if count == 1 and level.chunk == (block, block):  # the chunk is the tile: no copy
        chunk = _chunk(level, (0, *tile), dtype)
        return np.full((block, block, 1), fill, dtype) if chunk is None else chunk[:, :, np.newaxis]
    out = np.full((block, block, count), fill, dtype)
    rows = range(tile[0] * block, min((tile[0] + 1) * block, level.shape[0]), level.chunk[0])
    cols = range(tile[1] * block, min((tile[1] + 1) * block, level.shape[1]), level.chunk[1])
    for band in range(count):
        for row in rows:
            for col in cols:
                chunk = _chunk(level, (band, row // level.chunk[0], col // level.chunk[1]), dtype)
                if chunk is not None:
                    r, c = row - tile[0] * block, col - tile[1] * block
                    height, width = min(level.chunk[0], block - r), min(level.chunk[1], block - c)
                    out[r : r + height, c : c + width, band] = chunk[:height, :width]
    return out


def _chunk(level: _Level, index: tuple[int, int, int], dtype: np.dtype) -> np.ndarray | None:
    """One chunk's pixels; None for a chunk never written (all fill, as zarr reads it)."""
    path = level.folder / ".".join(map(str, index))
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    if level.codec is not None:
        payload = level.codec.decode(payload)
    pixels = np.frombuffer(payload, dtype)
    if pixels.size != level.chunk[0] * level.chunk[1]:
        raise OSError(f"{path}: {len(payload)} bytes, not a whole chunk of {level.chunk}")
    return pixels.reshape(level.chunk)


def _predicted(tile: np.ndarray, predictor: int) -> np.ndarray:
    """``tile`` ``(h, w, bands)`` as libtiff's predictor leaves it, ready for the codec.

    2 (horizontal): each sample less the same band's sample to its left, wrapping.
    3 (floating point): each row's values split into byte planes, most significant
    first, then each byte less the byte ``bands`` before it in that row, wrapping.
    """
    if predictor == 2:
        out = np.empty_like(tile)
        out[:, :1] = tile[:, :1]
        np.subtract(tile[:, 1:], tile[:, :-1], out=out[:, 1:])
        return out
    if predictor == 3:
        height, width, bands = tile.shape
        size = tile.dtype.itemsize
        little = tile.astype(tile.dtype.newbyteorder("<"), copy=False)
        planes = little.view(np.uint8).reshape(height, width * bands, size)[:, :, ::-1]
        rows = np.ascontiguousarray(planes.transpose(0, 2, 1)).reshape(height, -1)
        out = rows.copy()
        np.subtract(rows[:, bands:], rows[:, :-bands], out=out[:, bands:])
        return out
    return tile


def _append_tiles(
    f: Any,
    jobs: Iterator[tuple[int, tuple[int, int]]],
    encoded: Callable[[tuple[int, tuple[int, int]]], bytes],
    levels: int,
) -> list[list[tuple[int, int]]]:
    """Compress ``jobs`` (level, tile) on every core and append them to ``f`` in their order, each
    framed as the ghost header says; every level's (offset, size) of its tiles, in order."""
    placed: list[list[tuple[int, int]]] = [[] for _ in range(levels)]
    workers = usable_cpus()
    pending: collections.deque[tuple[int, Future[bytes]]] = collections.deque()

    def write_one() -> None:
        level, future = pending.popleft()
        data = future.result()
        f.write(struct.pack("<I", len(data)))  # the leader: the tile's size
        placed[level].append((f.tell(), len(data)))
        f.write(data)
        f.write(data[-4:])  # the trailer: its last 4 bytes again

    with ThreadPoolExecutor(workers, thread_name_prefix="geosr-cog") as pool:
        for job in jobs:
            pending.append((job[0], pool.submit(encoded, job)))
            if len(pending) >= _AHEAD * workers:
                write_one()
        while pending:
            write_one()
    return placed


def _write_array(f: Any, entry: tuple[int, int, int], values: list[int]) -> None:
    """Write ``values`` over the tile array of IFD ``entry`` (its type, count and position)."""
    kind, count, position = entry
    fmt = _TYPES[kind]
    if len(values) != count or (values and max(values) >= 1 << (8 * struct.calcsize(fmt))):
        raise UnknownLayoutError(f"{len(values)} values for an array of {count} {fmt}")
    f.seek(position)
    f.write(struct.pack(f"<{count}{fmt}", *values))
