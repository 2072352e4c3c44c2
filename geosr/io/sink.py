"""Where super-resolved pixels go: an output description and the sink protocol.

The pipeline knows only :class:`OutputSpec`, :class:`RasterSink` and
:func:`open_sink`; the format follows the destination's suffix::

    spec = OutputSpec(grid=scene.grid.zoom_out(1 / 4), count=4, dtype="uint16", nodata=0)
    with open_sink("scene_x4.tif", spec) as sink:      # checks run here, before compute
        for rows, cols, block in results:
            sink.write(rows, cols, block)               # (count, h, w) of spec.dtype
    # leaving the block commits (atomic rename); an exception aborts (no trace left)

Writing is single-process for COG (GDAL handles are not shareable); a Zarr sink's
store can also be written from other processes, chunk by chunk (see
:mod:`geosr.io.zarr_store`).
"""

from __future__ import annotations

import math
import numbers
import os
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self, runtime_checkable

import numpy as np
from odc.geo.geobox import GeoBox
from rasterio.enums import ColorInterp

from geosr import __version__
from geosr.errors import OptionError, OutputError, in_words, number_text
from geosr.io.atomic import check_writable, remove_with_sidecars

SUPPORTED_SUFFIXES = {".tif": "COG", ".tiff": "COG", ".zarr": "Zarr"}
"""Destination suffixes (case-insensitive) and the format each one selects."""

OUTPUT_DTYPES = (
    "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64",
)  # fmt: skip
"""Pixel types both GeoTIFF and Zarr store natively."""

BLOCK_BYTES = 8 * 2**20
"""Largest COG tile :func:`max_cog_block` allows, all bands together: a COG is pixel-interleaved
(GDAL 3.10's COG driver knows no other), so one tile holds every band, and GDAL's COG build
holds several tiles per compression thread (:func:`geosr.resources.gdal_bytes`).  In tiles
of 512, 150 float32 bands are 150 MiB a tile: the build of a 512^2 output grew by 609 MiB on
2 cores, where the memory bound allowed 256 MiB for everything GDAL holds."""

MIN_BLOCK = 128
"""The smallest tile GDAL's COG driver accepts (its BLOCKSIZE minimum)."""


def max_cog_block(count: int, itemsize: int) -> int:
    """Edge of the COG tiles of ``count`` bands of ``itemsize`` bytes: 512, halved down to
    :data:`MIN_BLOCK` while one tile of all bands exceeds :data:`BLOCK_BYTES`.

    By band count and data type only, never by the machine, so that every machine writes
    the same bytes: 512 up to 16 bands of uint16 or 8 of float32, 128 from 33 of float32.
    """
    block = 512
    while block > MIN_BLOCK and count * block * block * itemsize > BLOCK_BYTES:
        block //= 2
    return block


ZARR_FORMATS = (2, 3)
"""The Zarr formats a ``.zarr`` output is written in: v3 by default (DESIGN), v2 for
readers that have no v3 yet (GDAL before 3.11, which rasterio 1.4's wheels bundle)."""

DEFAULT_ZARR_FORMAT = 3
"""The format of a ``.zarr`` output unless ``--zarr-format`` says otherwise."""

COMPRESSIONS = ("zstd", "deflate", "lzw", "none")
"""The lossless compressions of an output (``--compress``): zstd by default (fast, read by
GDAL 2.3 and later); deflate for readers whose libtiff has no zstd (older desktop GIS), and in
Zarr gzip, for readers without Blosc; lzw like deflate, for a COG only; none, the fastest
to write, where disk space does not matter (every COG tile or Zarr chunk whole, edge padding too)."""

DEFAULT_COMPRESS = "zstd"
"""An output's compression unless ``--compress`` says otherwise."""

TIFF_ONLY_COMPRESSIONS = ("lzw",)
"""Compressions with no Zarr codec: a ``.zarr`` output refuses them."""


GDAL_COLOR_NAMES = {"other_ir": "OtherIR", "Y": "YCbCr_Y", "Cb": "YCbCr_Cb", "Cr": "YCbCr_Cr"}
"""rasterio's ColorInterp names that GDAL does not parse (it reads them as Undefined), and GDAL's
own names for them.  The others match GDAL's, case aside (GDAL parses ``red`` as ``Red``)."""


COLOR_ATTRIBUTE = "COLOR_INTERPRETATION"
"""A Zarr array's attribute of its bands' colours (GDAL's names, one per band): GDAL's Zarr driver
writes and reads it, so a Zarr output holds them there (:mod:`geosr.io.zarr_store`) and a Zarr
input's are read from it (:func:`geosr.io.zarr_scene.band_metadata`)."""


def gdal_color_name(name: str) -> str:
    """The name GDAL parses for the rasterio ``ColorInterp`` name ``name`` (a VRT's, a Zarr array's)."""
    return GDAL_COLOR_NAMES.get(name, name)


def colorinterp_name(text: object) -> str | None:
    """The rasterio ``ColorInterp`` name of a colour interpretation as GDAL or rasterio names it, in
    any case (``Red``, ``OtherIR``, ``YCbCr_Y``, ``red``), or None for none of them."""
    wanted = str(text).lower()
    names = {gdal.lower(): name for name, gdal in GDAL_COLOR_NAMES.items()}
    names.update({name.lower(): name for name in ColorInterp.__members__})
    return names.get(wanted)


@dataclass(frozen=True)
class OutputSpec:
    """Everything a sink needs to know before the first pixel arrives.

    Attributes
    ----------
    grid : GeoBox
        The output grid (already scaled): shape, transform and CRS, written as is.
    count : int
        Number of bands.
    dtype : str
        Numpy dtype name of the pixels, one of :data:`OUTPUT_DTYPES`.
    nodata : float or None
        The nodata value (NaN allowed for float dtypes); None for no nodata.
    descriptions : tuple of (str or None)
        Per-band descriptions, or empty.
    colorinterp : tuple of str
        Per-band rasterio ``ColorInterp`` names (``"red"``, ``"gray"``, ...), or empty.
    tags : mapping of str to str
        Dataset tags: the input's, plus provenance.
    band_tags : tuple of mappings
        Per-band tags, or empty.
    scales, offsets, units : tuple
        Per band: ``value = pixel * scale + offset`` and the value's unit, or
        empty (scale 1, offset 0, no unit).
    block : int
        Edge of the chunks (Zarr) or internal tiles (COG: at most :func:`max_cog_block`,
        which :attr:`cog_block` gives), a multiple of 16.
    band_axis, band_labels : str, tuple
        A Zarr output's first dimension and its coordinate values, one per band
        (a cube's ``time`` and dates); ``"band"`` and 1..count when empty.
    zarr_format : int
        A Zarr output's format, one of :data:`ZARR_FORMATS` (a COG ignores it).
    compress : str
        The output's lossless compression, one of :data:`COMPRESSIONS` (a Zarr output
        takes all but :data:`TIFF_ONLY_COMPRESSIONS`).
    rpcs : mapping of str to str
        RPCs of the output's pixels (GDAL's ``RPC`` metadata domain, :func:`geosr.grid.scaled_rpcs`),
        or empty; a COG carries them, a Zarr store cannot.
    band_imagery : tuple of mappings
        Per band: GDAL's ``IMAGERY`` metadata domain (``CENTRAL_WAVELENGTH_UM``, ``FWHM_UM``), or
        empty; a COG's bands hold it in that domain, a Zarr output among its ``band_tags``.
    """

    grid: GeoBox
    count: int
    dtype: str
    nodata: float | None
    descriptions: tuple[str | None, ...] = ()
    colorinterp: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    band_tags: tuple[Mapping[str, str], ...] = ()
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    units: tuple[str | None, ...] = ()
    block: int = 512
    band_axis: str = "band"
    band_labels: tuple[Any, ...] = ()
    zarr_format: int = DEFAULT_ZARR_FORMAT
    compress: str = DEFAULT_COMPRESS
    rpcs: Mapping[str, str] = field(default_factory=dict)
    band_imagery: tuple[Mapping[str, str], ...] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.grid, GeoBox) or self.grid.crs is None:
            raise OptionError(f"output grid must be a GeoBox with a CRS, got {self.grid!r}")
        if int(self.count) != self.count or self.count < 1:
            raise OptionError(f"output band count must be a positive integer, got {self.count!r}")
        try:
            dtype = np.dtype(self.dtype).name
        except TypeError:
            dtype = str(self.dtype)
        if dtype not in OUTPUT_DTYPES:
            raise OptionError(
                f"output dtype {self.dtype!r} is not supported; use one of {', '.join(OUTPUT_DTYPES)}"
            )
        object.__setattr__(self, "dtype", dtype)  # normalise np.uint16 / "u2" to "uint16"
        check_nodata(self.nodata, dtype)
        per_band = ("descriptions", "colorinterp", "band_tags", "band_imagery", "scales", "offsets", "units")
        for name in (*per_band, "band_labels"):
            value = tuple(getattr(self, name))
            if len(value) not in (0, self.count):
                raise OptionError(
                    f"output {name} has {len(value)} entries for {self.count} bands; "
                    f"give one per band or none"
                )
            object.__setattr__(self, name, value)
        unknown = [c for c in self.colorinterp if c not in ColorInterp.__members__]
        if unknown:
            raise OptionError(
                f"unknown colour interpretation{'s' if len(unknown) > 1 else ''} "
                f"{in_words([repr(c) for c in unknown])}; use rasterio ColorInterp names "
                f"such as {', '.join(list(ColorInterp.__members__)[:8])}"
            )
        if self.band_axis in ("y", "x"):
            raise OptionError(f"output band axis {self.band_axis!r} would clash with a spatial dimension")
        if self.block < 16 or self.block % 16:
            raise OptionError(f"output block size must be a multiple of 16, got {self.block}")
        check_zarr_format(self.zarr_format)
        object.__setattr__(self, "zarr_format", int(self.zarr_format))  # numpy integers too
        object.__setattr__(self, "compress", checked_compress(self.compress))
        # A private copy: the caller's dict may change while the job runs.
        object.__setattr__(self, "tags", {str(k): str(v) for k, v in self.tags.items()})

    @property
    def tiff_colorinterp(self) -> tuple[str, ...]:
        """:attr:`colorinterp` as a GeoTIFF holds it: a grey band after the first is undefined, as
        GDAL reads a grey image's further bands.

        A TIFF has one photometric interpretation, band 1's: the COG driver, copying the run's VRT,
        wrote a later band's grey into an ``.aux.xml``, which ``--bands 4,3,2,1`` of any grey
        GeoTIFF (band 1 grey, the others undefined) left beside every output for no reader's use.
        """
        return self.colorinterp[:1] + tuple("undefined" if c == "gray" else c for c in self.colorinterp[1:])

    @property
    def tiff_tags(self) -> dict[str, str]:
        """:attr:`tags` as a GeoTIFF holds them: its TIFF ``Software`` tag names geosr, which wrote it.

        The input's own (the program that made the input's file) is no tag of the output's
        (:data:`geosr.io.scene.WRITER_TAGS`); the run's provenance keeps it.
        """
        return {**self.tags, "TIFFTAG_SOFTWARE": f"geosr {__version__}"}

    @property
    def zarr_version(self) -> Literal[2, 3]:
        """:attr:`zarr_format` as the literal that zarr-python's calls take."""
        return 2 if self.zarr_format == 2 else 3

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(count, height, width)`` of the whole output."""
        height, width = self.grid.shape.yx
        return self.count, height, width

    def scaling(self, band: int) -> tuple[float, float, str | None]:
        """``(scale, offset, unit)`` of 1-based ``band``: ``value = pixel * scale + offset``."""
        scale = self.scales[band - 1] if self.scales else 1.0
        offset = self.offsets[band - 1] if self.offsets else 0.0
        return scale, offset, self.units[band - 1] if self.units else None

    @property
    def cog_block(self) -> int:
        """Edge of a COG's tiles: :attr:`block`, or smaller for many bands (:func:`max_cog_block`)."""
        return min(self.block, max_cog_block(self.count, np.dtype(self.dtype).itemsize))

    @property
    def nbytes(self) -> int:
        """Uncompressed size of the full-resolution pixels."""
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize


def check_zarr_format(zarr_format: object) -> None:
    """Refuse a Zarr format other than those of :data:`ZARR_FORMATS` (:class:`OptionError`)."""
    whole = isinstance(zarr_format, numbers.Integral) and not isinstance(zarr_format, bool)
    if not whole or int(zarr_format) not in ZARR_FORMATS:  # type: ignore[call-overload]
        number = "" if whole else " the number"  # zarr_format="2" from a config file, say
        raise OptionError(
            f"--zarr-format {zarr_format!r} is not supported; use{number} 2 (Zarr v2, which GDAL 3.10 "
            "reads) or 3 (Zarr v3, the default)"
        )


def checked_compress(compress: object) -> str:
    """``compress`` as one of :data:`COMPRESSIONS` (any case: ``ZSTD`` as GDAL spells it), or
    :class:`OptionError`."""
    name = compress.strip().lower() if isinstance(compress, str) else None
    if name not in COMPRESSIONS:
        raise OptionError(
            f"--compress {compress!r} is not supported; use {', '.join(COMPRESSIONS[:-1])} or "
            f"{COMPRESSIONS[-1]} (all lossless)"
        )
    return name


NODATA_GIVEN = "give --nodata {values} or leave it out"
"""How to fix a ``--nodata`` (or ``nodata=``) the dtype cannot hold: :func:`check_nodata_of`'s ``remedy``."""


def check_nodata(nodata: float | None, dtype: str, remedy: str = "use {values} or no nodata") -> None:
    """Refuse a nodata value that ``dtype`` cannot hold (:class:`OptionError`).

    ``remedy`` says how to fix it, ``{values}`` standing for the values ``dtype`` holds.
    """
    if nodata is None:
        return
    kind = np.dtype(dtype).kind
    if kind == "f":
        # NaN and +-inf are float values like any other (GDAL writes and masks them; a
        # float32 scene may use -inf): only finite values beyond the type's range do not fit.
        top = float(np.finfo(dtype).max)
        if math.isfinite(nodata) and abs(nodata) > top:
            values = f"a value in [{-top:.4g}, {top:.4g}]"
            raise OptionError(
                f"nodata {number_text(nodata)} does not fit in {dtype}; {remedy.format(values=values)}"
            )
        return
    info = np.iinfo(dtype)
    if not math.isfinite(nodata) or nodata != int(nodata) or not info.min <= nodata <= info.max:
        values = f"an integer in [{info.min}, {info.max}]"
        raise OptionError(
            f"nodata {number_text(nodata)} is not a valid {dtype} value; {remedy.format(values=values)}"
        )


def check_nodata_of(
    source: str | Path | None, nodata: float | None, dtype: str, remedy: str = NODATA_GIVEN
) -> None:
    """:func:`check_nodata`, its line naming ``source`` (the raster, if any) and saying how to fix
    the value where it came from (``remedy``: the ``--nodata`` given, the file's own...), which the
    bare check cannot know.

    A remedy in parentheses at the end ("or no nodata (--nodata)") read "(nodata)" to a Python
    caller, a word without a sentence.

    Raises
    ------
    OptionError
        ``dtype`` cannot hold ``nodata``.
    """
    try:
        check_nodata(nodata, dtype, remedy)
    except OptionError as exc:
        raise OptionError(f"{source}: {exc}" if source is not None else str(exc)) from None


@runtime_checkable
class RasterSink(Protocol):
    """An output being written: windows in, one atomic commit (or abort) at the end.

    ``write`` may be called in any order; each output pixel should be written
    once.  After ``commit`` or ``abort`` the sink is closed.  Used as a context
    manager, it commits on success and aborts on any exception.
    """

    spec: OutputSpec

    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Write ``data`` of shape ``(count, h, w)`` and ``spec.dtype`` at a window.

        ``rows`` and ``cols`` are in output pixels, steps of 1, inside the grid.
        """
        ...

    def commit(self) -> Path:
        """Finish the output and move it atomically to its destination, returned."""
        ...

    def abort(self) -> None:
        """Remove every temporary; leave the destination untouched."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class SinkBase:
    """What both sinks share: the up-front checks, window checks and life cycle.

    Subclasses register their temporaries with :meth:`_track` and implement
    ``write``, ``commit`` and ``abort``.
    """

    def __init__(self, destination: str | os.PathLike[str], spec: OutputSpec, overwrite: bool):
        self.spec = spec
        self.destination = Path(destination).absolute()
        self.overwrite = overwrite
        self._closed = False
        self._finalizers: list[weakref.finalize[[Path], SinkBase]] = []
        check_writable(self.destination, overwrite)

    def _track(self, tmp: Path) -> None:
        # A sink dropped without commit/abort (a crash in the caller, or the
        # interpreter exiting) still removes its temporaries.
        self._finalizers.append(weakref.finalize(self, remove_with_sidecars, tmp))

    def _cleanup(self) -> None:
        """Remove all tracked temporaries (idempotent) and close the sink."""
        self._closed = True
        for finalizer in self._finalizers:
            finalizer()

    def _check_open(self) -> None:
        if self._closed:
            raise OutputError(f"the output {self.destination} was already committed or aborted")

    def _check_window(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Reject windows and arrays that do not match the spec (programming errors)."""
        self._check_open()
        count, height, width = self.spec.shape
        for name, window, size in (("rows", rows, height), ("cols", cols, width)):
            if (
                not isinstance(window, slice)
                or window.step not in (None, 1)
                or not isinstance(window.start, int | np.integer)
                or not isinstance(window.stop, int | np.integer)
                or not 0 <= window.start < window.stop <= size
            ):
                raise ValueError(
                    f"{name} {window!r} is not a window inside the output's {size} pixels; "
                    "expected slice(start, stop) with 0 <= start < stop"
                )
        expected = (count, rows.stop - rows.start, cols.stop - cols.start)
        if data.shape != expected:
            raise ValueError(f"data of shape {data.shape} does not fill the window {expected}")
        if data.dtype != np.dtype(self.spec.dtype):
            raise ValueError(f"data of dtype {data.dtype}, expected {self.spec.dtype}; cast it first")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._closed:  # committed or aborted explicitly inside the block
            return
        if exc_type is None:
            self.commit()  # type: ignore[attr-defined]
        else:
            self.abort()  # type: ignore[attr-defined]


def open_sink(
    destination: str | os.PathLike[str], spec: OutputSpec, *, overwrite: bool = False
) -> RasterSink:
    """Open the writer for ``destination``, chosen by its suffix.

    Parameters
    ----------
    destination : str or PathLike
        ``.tif``/``.tiff`` for a Cloud-Optimized GeoTIFF, ``.zarr`` for a Zarr store
        (v3, or v2: ``spec.zarr_format``).
    spec : OutputSpec
        Grid, bands, dtype, nodata and metadata of the output.
    overwrite : bool
        Replace an existing destination; the old one stays until commit.

    Returns
    -------
    RasterSink
        Also a context manager: commits on success, aborts on an exception.

    Raises
    ------
    OptionError
        Unsupported suffix.
    OutputError
        The destination exists (without ``overwrite``), or its directory is
        missing or not writable.
    """
    path = Path(destination)
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    # Imported here: a COG run need not load zarr, nor a Zarr run rasterio's COG code.
    if kind == "COG":
        from geosr.io.cog import CogSink

        return CogSink(path, spec, overwrite=overwrite)
    if kind == "Zarr":
        from geosr.io.zarr_store import ZarrSink

        return ZarrSink(path, spec, overwrite=overwrite)
    raise OptionError(
        f"cannot write {path}: unsupported output suffix {path.suffix or '(none)'!r}; "
        f"use one of {', '.join(SUPPORTED_SUFFIXES)}"
    )
