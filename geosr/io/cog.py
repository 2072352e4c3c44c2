"""Cloud-Optimized GeoTIFF output: built in one GDAL pass, validated, renamed into place.

A COG puts its overviews *before* the full-resolution tiles, so it cannot be
streamed window by window.  Two ways in:

* :class:`CogSink`, the streaming sink: windows go into a hidden, tiled,
  lightly compressed GeoTIFF beside the destination (``.<name>.geosr-tmp-*.tif``),
  and :meth:`CogSink.commit` turns that into the COG;
* :func:`cog_from_source`, for a complete GDAL dataset that already has its
  overviews (the run store behind a VRT, :mod:`geosr.io.run_store`): GDAL's COG
  driver then only compresses and lays out, with no intermediate to write; or,
  from the run store itself, geosr compresses the tiles on every core into the
  layout GDAL writes (:mod:`geosr.io.cog_tiles`).

Both end in :class:`CogBuild`: GDAL's COG driver, the checks, and the rename.

Why GDAL's COG driver rather than ``rio_cogeo.cogeo.cog_translate``: both end in
GDAL, but the COG driver does it in one native ``CreateCopy`` (overviews computed
multi-threaded from the source, then tiles copied in COG order), carries
metadata, descriptions, colour interpretation and nodata as GTiff does, and is
faster (3.0 s against 4.0 s for a 4-band uint16 4096 x 4096 scene here), whereas
``cog_translate`` goes through a VRT and a temporary GTiff of its own, and
rewrites tags through rasterio.  rio-cogeo stays as the *validator*
(``cog_validate``), which checks the layout independently of the writer.

Compression is ZSTD with a predictor by default: lossless, fast, and read by GDAL >= 2.3
(QGIS, rasterio, GDAL-based web tilers); only readers on an old libtiff without
ZSTD cannot open it (rio-cogeo's profiles warn about that), and ``--compress deflate``
(or ``lzw``) writes for those.

GDAL does not always report a failed write: errors in a dataset's final flush
and in compression threads reach only stderr.  So commit checks every tile of
the intermediate and of the COG (:func:`_check_tiles`), and checks free space
before the copy, which GDAL 3.10 can survive badly (:meth:`CogSink._check_space`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.enums import ColorInterp, Interleaving
from rasterio.errors import RasterioError
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from geosr.errors import GeosrError, OutputError, counted
from geosr.faults import checkpoint
from geosr.grid import crs_wkt
from geosr.io.atomic import (
    PAM_SUFFIX,
    check_writable,
    describe_write_failure,
    format_bytes,
    free_bytes,
    remove_stale_sidecars,
    replace_atomically,
    space_report,
    temporary_sibling,
    written_back_meanwhile,
)
from geosr.io.names import open_raster, utf8_name
from geosr.io.pyramid import level_shapes
from geosr.io.sink import OutputSpec, SinkBase

COMPRESSION: dict[str, Any] = {
    "COMPRESS": "ZSTD",
    # Explicit, so that the same pixels give the same bytes whatever GDAL's default.
    # Level 2 compresses with 20-38 % less CPU than 3 for 0-3.5 % more bytes (x4
    # outputs of NAIP, Landsat-8, NEON, Sentinel-2 and synthetic scenes; level 1
    # costs 8.5 %, level 9 builds 2.2x slower than 3 for 5 % fewer): compression is
    # most of a run's non-model time, and on a busy CPU it takes time from the model.
    "LEVEL": 2,
    # YES = horizontal differencing (2) for integers, floating point (3) for floats.
    "PREDICTOR": "YES",
}
"""The default compression of a COG (GDAL COG driver creation options)."""

COG_OPTIONS: dict[str, dict[str, Any]] = {
    "zstd": COMPRESSION,
    # Level 3: zstd's size at zstd's speed.  A COG of a 2048^2 Sentinel-2 band x4 (GDAL's
    # build from its uncompressed pixels and overviews, 2 cores): zstd 2 0.81 s, 67.0 MB;
    # deflate 1 0.46 s, 72.8 MB; 3 0.89 s, 68.6 MB; 6 (GDAL's default) 6.98 s, 67.3 MB;
    # LZW 3.67 s, 78.7 MB.
    "deflate": {"COMPRESS": "DEFLATE", "LEVEL": 3, "PREDICTOR": "YES"},
    "lzw": {"COMPRESS": "LZW", "PREDICTOR": "YES"},
    "none": {"COMPRESS": "NONE"},
}
"""GDAL COG driver options of each ``--compress`` (:data:`geosr.io.sink.COMPRESSIONS`)."""

# Above this bound on its size (full resolution + overviews, :func:`cog_size_bound`) the COG
# must be BigTIFF: classic TIFF offsets are 32-bit.  The margin covers tile headers and
# the bound's own error, so below it a classic TIFF always fits.
_BIGTIFF_BYTES = int(3.5 * 2**30)

_GROWTH = {"lzw": 1.4}
"""How much larger than its pixels a COG of each compression can be, where it can be larger:
LZW grows incompressible data (its codes, up to 12 bits, can stand for a byte each): COGs of
2048^2 uniformly random uint8, uint16 and float32 were 1.33-1.37x their uncompressed size here,
one of a Landsat-8 band at its own resolution 1.12x its pixels and overviews
(LC08_B7_Memphis_COG.tiff; x4 cubic upsamples of the real data 0.72-0.89x), and 1.5x is the
worst, which 1.4 still keeps under 4 GiB below :data:`_BIGTIFF_BYTES`.  ZSTD and DEFLATE store
a block they cannot compress as it is (random data: 0.97-0.98x)."""


def is_bigtiff(spec: OutputSpec) -> bool:
    """Whether the COG of ``spec`` is written as a BigTIFF: when its size can pass classic TIFF's
    4 GiB, by its compression's bound (:func:`cog_size_bound`).

    Decided here, not by GDAL's IF_SAFER heuristic, which made BigTIFFs of outputs
    from about 2 GiB (a 2 GiB mostly-nodata output, 6 MB on disk), so that
    ``geosr info`` can say which a run writes: readers on an old libtiff open
    only classic TIFF.
    """
    return cog_size_bound(spec) > _BIGTIFF_BYTES


def cog_size_bound(spec: OutputSpec) -> int:
    """The most the COG of ``spec`` can take, tile headers aside: without compression its every
    tile at full size (:func:`uncompressed_cog_bytes`, 16x the pixels of a 32-pixel-wide output
    in 512-pixel tiles); with one, its pixels and overviews times what the compression can grow
    them by (:data:`_GROWTH`)."""
    if spec.compress == "none":
        return uncompressed_cog_bytes(spec)
    return int(cog_bytes(spec.nbytes) * _GROWTH.get(spec.compress, 1.0))


def cog_bytes(output_bytes: int) -> int:
    """The uncompressed bytes of a COG of ``output_bytes`` pixels: full resolution + overviews
    (1/4 + 1/16 + ...)."""
    return output_bytes * 4 // 3


_TIFF_HEADER_BYTES = 256 * 2**10
"""Room for a COG's header, ghost metadata, IFDs and tags (GDAL's metadata XML, GeoTIFF keys):
a few KiB for geosr's outputs, more with long tags."""

_TILE_FRAMING_BYTES = 4 + 4 + 8 + 8
"""A COG's bytes per tile besides its pixels: the size before it and its last 4 bytes repeated
after it (the ghost header's leader and trailer), and its offset and size in the IFD (BigTIFF)."""


def uncompressed_cog_bytes(spec: OutputSpec) -> int:
    """The size of the COG of ``spec`` without compression, at most: every tile of every level at
    its full size, the edge tiles' padding too (a 600^2 output's four 512^2 tiles and its
    overview's one, 2.6 MB for 0.9 MB of uint16 pixels), each tile's framing, and the header.

    The tiles alone fell short: a disk that had room for them filled while the COG was written
    (21 tiles of 512^2 x 3 bytes are 16,515,072 bytes; the COG was 16,516,790)."""
    height, width = spec.grid.shape.yx
    block = spec.cog_block
    levels = [(height, width), *level_shapes(height, width, block)]
    tiles = sum(-(-rows // block) * -(-cols // block) for rows, cols in levels)
    tile_bytes = block * block * spec.count * np.dtype(spec.dtype).itemsize
    return tiles * (tile_bytes + _TILE_FRAMING_BYTES) + _TIFF_HEADER_BYTES


def cog_build_bound(spec: OutputSpec) -> int:
    """The disk the COG build of ``spec`` needs where its run store's size does not bound it
    (:func:`geosr.resources.disk_needed`'s ``cog_bytes``, and :meth:`CogBuild._build`'s check):
    an uncompressed COG's every tile (:func:`uncompressed_cog_bytes`); 0 for a compressed one."""
    return uncompressed_cog_bytes(spec) if spec.compress == "none" else 0


def cog_options(spec: OutputSpec) -> dict[str, Any]:
    """GDAL COG driver creation options of the COG of ``spec``."""
    return {
        "BLOCKSIZE": spec.cog_block,
        **COG_OPTIONS[spec.compress],
        # Average is the right summary of continuous imagery and skips nodata
        # pixels (integer or NaN), so overviews do not bleed nodata into edges.
        "OVERVIEW_RESAMPLING": "AVERAGE",
        "BIGTIFF": "YES" if is_bigtiff(spec) else "NO",
        "NUM_THREADS": "ALL_CPUS",
    }


# GDAL signals failures as rasterio exceptions (RasterioError, some also OSError)
# and, from some calls, as CPLE_* errors which derive from neither.
try:
    from rasterio._err import CPLE_BaseError

    _GDAL_ERRORS: tuple[type[BaseException], ...] = (OSError, RasterioError, CPLE_BaseError)
except ImportError:  # pragma: no cover - private module moved
    _GDAL_ERRORS = (OSError, RasterioError)


class WriterBugError(OutputError):
    """The COG written is not the one asked for: a geosr or GDAL bug, which no rerun fixes."""


class CogBuild(SinkBase):
    """GDAL's COG driver from a complete source, the checks, and the atomic rename.

    Subclasses provide the source (:meth:`_source`); :meth:`commit` builds the
    COG from it, validates it, and renames it to the destination.
    """

    def _needed(self) -> int:
        # Uncompressed, the COG is its padded tiles: more than its pixels (cog_build_bound).
        return max(cog_bytes(self.spec.nbytes), cog_build_bound(self.spec))

    def _source(self) -> tuple[str | Path, int]:
        """The finished source as GDAL opens it, and the disk space the copy needs."""
        raise NotImplementedError

    def commit(self) -> Path:
        """Build the COG, validate it and rename it to the destination.

        Returns
        -------
        Path
            The destination.

        Raises
        ------
        OutputError
            Writing, validation or the rename failed; no temporaries are left
            and an existing destination is untouched.
        """
        self._check_open()
        try:
            self._build()
        except _GDAL_ERRORS as exc:
            # The temporaries go first, so that the message gives the space the
            # user has now, not what a half-written COG left (20 KiB for 8 MiB).
            self._cleanup()
            if isinstance(exc, GeosrError):
                raise
            raise OutputError(describe_write_failure(self.destination, exc, self._needed())) from None
        finally:
            self._cleanup()
        return self.destination

    def _build(self) -> None:
        """Copy the source into a temporary COG, check it, and rename it into place."""
        source, needed = self._source()
        # Uncompressed, the COG is its tiles, their edge padding too, whatever the source's size
        # on disk: an LZ4 run store (a tight disk's) is a fraction of its pixels, and a raw one
        # has none of that padding.
        self._check_space(max(needed, cog_build_bound(self.spec)))
        cog = temporary_sibling(self.destination, ".tif")
        self._track(cog)
        with written_back_meanwhile(cog):
            self._copy(source, cog)
        _check_tiles(cog, self.destination, self._needed())
        self._verify(cog)
        checkpoint("cog")
        # Checked again: another program may have written the destination during the build.
        check_writable(self.destination, self.overwrite)
        _replace_with_sidecar(cog, self.destination)

    def _copy(self, source: str | Path, cog: Path) -> None:
        """Write the COG at ``cog`` from ``source``: GDAL's COG driver."""
        rasterio.shutil.copy(utf8_name(source), utf8_name(cog), driver="COG", **self._cog_options())

    def abort(self) -> None:
        """Remove the temporaries; the destination is not touched."""
        self._cleanup()

    def _check_space(self, needed: int) -> None:
        """Refuse to start the COG copy when it cannot fit: GDAL 3.10's COG driver
        can crash the process (not raise) when its overview file hits a full disk.
        """
        free = free_bytes(self.destination.parent)
        if free is not None and free < needed:
            raise OutputError(
                f"cannot write {self.destination}: not enough disk space to build the COG; "
                f"it needs about {format_bytes(needed)} and {format_bytes(free)} are "
                f"available in {self.destination.parent}; free some space or write to "
                "another directory"
            )

    def _cog_options(self) -> dict[str, Any]:
        return cog_options(self.spec)

    def _verify(self, cog: Path) -> None:
        """Check the COG against the spec and the COG rules before it replaces anything."""
        spec = self.spec
        with open_raster(cog) as src:
            found_grid = (src.height, src.width, src.count, src.dtypes[0])
            transform, crs = src.transform, src.crs
        height, width = spec.grid.shape.yx
        problems = []
        if found_grid != (height, width, spec.count, spec.dtype):
            problems.append(f"shape/dtype {found_grid} instead of {(height, width, spec.count, spec.dtype)}")
        # Exact comparison on purpose: the output must sit on the input's footprint
        # to the last bit, and GeoTIFF stores the transform as doubles.
        if tuple(transform) != tuple(spec.grid.transform):
            problems.append(f"transform {tuple(transform)} instead of {tuple(spec.grid.transform)}")
        if crs is None or spec.grid.crs != crs:
            problems.append(f"CRS {crs} instead of {spec.grid.crs}")
        if not problems:
            is_valid, errors, _warnings = cog_validate(utf8_name(cog), quiet=True)
            if not is_valid or errors:
                problems.append("not a valid COG: " + "; ".join(errors))
        if problems:
            raise WriterBugError(
                f"cannot write {self.destination}: the produced file has "
                + "; ".join(problems)
                + " (a geosr/GDAL bug: please report it with `geosr --version`)"
            )


class CogSink(CogBuild):
    """Write a Cloud-Optimized GeoTIFF atomically.

    Parameters
    ----------
    destination : str or PathLike
        The ``.tif`` to produce.
    spec : OutputSpec
        Grid, bands, dtype, nodata and metadata.
    overwrite : bool
        Replace an existing destination at commit.

    Notes
    -----
    Single writer: all ``write`` calls must come from the process (and thread)
    that opened the sink.  Windows need not be aligned to ``spec.cog_block``, but
    aligned windows avoid rewriting compressed tiles in the intermediate.
    """

    def __init__(self, destination: str | os.PathLike[str], spec: OutputSpec, *, overwrite: bool = False):
        super().__init__(destination, spec, overwrite)
        self._tmp = temporary_sibling(self.destination, ".tif")
        self._track(self._tmp)
        try:
            self._ds = open_raster(self._tmp, "w", **self._intermediate_profile())
            self._write_metadata(self._ds)
        except _GDAL_ERRORS as exc:
            self._cleanup()
            raise OutputError(describe_write_failure(self.destination, exc, self._needed())) from None
        except BaseException:
            self._cleanup()
            raise

    def _intermediate_profile(self) -> dict[str, Any]:
        spec = self.spec
        height, width = spec.grid.shape.yx
        return {
            "driver": "GTiff",
            "width": width,
            "height": height,
            "count": spec.count,
            "dtype": spec.dtype,
            "nodata": spec.nodata,
            "crs": crs_wkt(spec.grid.crs) if spec.grid.crs is not None else None,
            "transform": spec.grid.transform,
            "tiled": True,
            "blockxsize": spec.cog_block,
            "blockysize": spec.cog_block,
            "interleave": "pixel",  # as the COG will be: the copy reads whole pixels
            # Fast, lossless: the intermediate is read once, but on a 10980 x 10980
            # x4 Sentinel-2 tile it would be ~15 GiB uncompressed.
            "compress": "zstd",
            "zstd_level": 1,
            "bigtiff": "IF_SAFER",
            # Not SPARSE_OK and not NUM_THREADS, on purpose: GDAL then writes every
            # tile (unwritten ones as nodata, at close), so that _check_tiles can
            # tell a tile lost to a full disk from an empty one; and single-threaded
            # compression makes write() raise on a full disk instead of only
            # printing the error from a worker thread (seen with GDAL 3.10).
        }

    def _write_metadata(self, ds: Any) -> None:
        spec = self.spec
        ds.update_tags(**spec.tiff_tags)
        if spec.rpcs:
            ds.update_tags(ns="RPC", **spec.rpcs)
        for band, description in enumerate(spec.descriptions, start=1):
            if description:
                ds.set_band_description(band, description)
        for band, tags in enumerate(spec.band_tags, start=1):
            if tags:
                ds.update_tags(band, **{str(k): str(v) for k, v in tags.items()})
        for band, tags in enumerate(spec.band_imagery, start=1):
            if tags:
                ds.update_tags(band, ns="IMAGERY", **tags)
        if spec.colorinterp:
            ds.colorinterp = [ColorInterp[name] for name in spec.colorinterp]
        scaling = [spec.scaling(band) for band in range(1, spec.count + 1)]
        if any((scale, offset) != (1.0, 0.0) for scale, offset, _ in scaling):
            ds.scales = [scale for scale, _, _ in scaling]
            ds.offsets = [offset for _, offset, _ in scaling]
        if any(unit for _, _, unit in scaling):
            ds.units = [unit or "" for _, _, unit in scaling]

    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Write ``data`` ``(count, h, w)`` at output pixels ``rows`` x ``cols``.

        Raises
        ------
        ValueError
            The window or the array does not match the spec.
        OutputError
            GDAL could not write (disk full, I/O error); temporaries are removed.
        """
        self._check_window(rows, cols, data)
        window = Window(cols.start, rows.start, cols.stop - cols.start, rows.stop - rows.start)
        try:
            self._ds.write(data, window=window)
        except _GDAL_ERRORS as exc:
            self.abort()
            raise OutputError(describe_write_failure(self.destination, exc, self._needed())) from None

    def _source(self) -> tuple[str | Path, int]:
        # Closing flushes the block cache, and rasterio does not report GDAL
        # errors from that flush: _check_tiles finds what a full disk lost.
        self._ds.close()
        _check_tiles(self._tmp, self.destination, self._needed())
        # The COG is at most about the intermediate's size plus a third for the
        # overviews, and the COG driver holds another third in a temporary
        # overview file while it works.
        return self._tmp, self._tmp.stat().st_size * 5 // 3

    def abort(self) -> None:
        """Close and remove the temporaries; the destination is not touched."""
        if self._closed:
            return
        try:
            self._ds.close()
        except _GDAL_ERRORS:
            pass  # it is being thrown away; a failing flush (full disk) is expected here
        finally:
            self._cleanup()


TileWriter = Callable[[Path, dict[str, Any]], bool]
"""Writes the COG at a path with GDAL's COG options, or returns False for GDAL to build it."""


def cog_from_source(
    source: str | Path,
    destination: Path,
    spec: OutputSpec,
    *,
    source_bytes: int,
    overwrite: bool,
    tiles: TileWriter | None = None,
) -> Path:
    """Build the COG at ``destination`` from a complete GDAL ``source`` that has its overviews.

    ``source_bytes`` is the source's size on disk, from which the free space the
    copy needs is estimated (the COG is smaller than the lightly compressed source).
    ``tiles`` writes the same COG faster where it can (:func:`geosr.io.cog_tiles.write_cog`,
    from the run store behind ``source``); GDAL builds it from ``source`` where it cannot.
    """
    return _FromSource(destination, spec, source, source_bytes, overwrite, tiles).commit()


class _FromSource(CogBuild):
    def __init__(
        self,
        destination: Path,
        spec: OutputSpec,
        source: str | Path,
        source_bytes: int,
        overwrite: bool,
        tiles: TileWriter | None,
    ) -> None:
        super().__init__(destination, spec, overwrite)
        self._given = (source, source_bytes)
        self._tiles = tiles

    def _source(self) -> tuple[str | Path, int]:
        return self._given

    def _copy(self, source: str | Path, cog: Path) -> None:
        if self._tiles is None or not self._tiles(cog, self._cog_options()):
            super()._copy(source, cog)


def _replace_with_sidecar(cog: Path, destination: Path) -> None:
    """Move the finished ``cog`` to ``destination``, with the ``.aux.xml`` GDAL wrote beside it.

    GDAL writes a CRS that no GeoTIFF key describes (a rotated pole, a projection
    known to PROJ only) into that sidecar, not into the TIFF: removed with the
    temporaries, it left an output without a CRS, which ``_verify`` (reading the
    temporary with its sidecar) could not see.  The sidecar goes first: should the
    run stop between the two renames, the output is not there yet and a rerun
    writes both.  The sidecars of an output replaced go last, so that a failed
    rename leaves that output whole.
    """
    sidecar = cog.with_name(cog.name + PAM_SUFFIX)
    kept = sidecar.exists()
    if kept:
        replace_atomically(sidecar, destination.with_name(destination.name + PAM_SUFFIX))
    replace_atomically(cog, destination)
    remove_stale_sidecars(destination, keep=(PAM_SUFFIX,) if kept else ())


def _check_tiles(path: Path, destination: Path, needed: int | None = None) -> None:
    """Fail if any tile of the GeoTIFF at ``path`` (overviews included) is missing or cut.

    GDAL reports write errors from a dataset's final flush, and from its
    compression threads, only on stderr (rasterio raises nothing), and a tile
    whose write failed is left with offset 0, which reads back silently as
    nodata.  Every tile is written (no SPARSE_OK), so a zero offset, or data past
    the end of the file, means data was lost.
    """
    size = path.stat().st_size
    lost, reason = 0, ""
    try:
        with open_raster(path) as src:
            # Pixel-interleaved: band 1's tile holds every band's pixels.
            pixel = src.interleaving in (None, Interleaving.pixel)
            bands = [1] if pixel else list(src.indexes)
            # Overviews have their own sizes and (in GDAL's COG driver) tile sizes.
            levels: list[tuple[int | None, Any, Any]] = [(None, src.shape, src.block_shapes[0])]
            for index in range(len(src.overviews(1))):
                with open_raster(path, overview_level=index) as overview:
                    levels.append((index, overview.shape, overview.block_shapes[0]))
            for band in bands:
                for ovr, (height, width), (block_height, block_width) in levels:
                    for row in range(math.ceil(height / block_height)):
                        for col in range(math.ceil(width / block_width)):
                            key = f"{col}_{row}"
                            offset = src.get_tag_item(f"BLOCK_OFFSET_{key}", "TIFF", band, ovr)
                            nbytes = src.get_tag_item(f"BLOCK_SIZE_{key}", "TIFF", band, ovr)
                            lost += not _intact(offset, nbytes, size)
    except _GDAL_ERRORS as exc:
        lost, reason = -1, (str(exc).strip() or type(exc).__name__).splitlines()[0]
    if lost:
        what = (
            "the file was left unreadable"
            if lost < 0
            else f"{counted(lost, 'tile')} {'was' if lost == 1 else 'were'} not written"
        )
        raise OutputError(
            f"cannot write {destination}: {what}, most likely because the disk is full"
            + (f" (GDAL: {reason})" if lost < 0 else "")
            + space_report(destination.parent, needed)
            + "; free some space or write to another directory"
        )


def _intact(offset: str | None, nbytes: str | None, size: int) -> bool:
    # Offset 0: never written; past the end of the file: written, then cut off.
    return bool(offset and nbytes) and 0 < int(offset or 0) <= size - int(nbytes or 0)
