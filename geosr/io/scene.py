"""Open a georeferenced scene and read windows of it, mirrored past its edges.

A :class:`Scene` is a small frozen description (path, grid, bands, dtype,
nodata, metadata): it can be shipped to another process, which re-opens the
file itself (tasks get paths, never open handles).  Open datasets are cached per
thread so that reading many tiles does not pay GDAL's open cost each time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.windows import Window as RioWindow

from geosr.errors import InputError
from geosr.tiling import Window

SUPPORTED_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")
GEOGRAPHIC_COORDS = (("lat", "lon"), ("latitude", "longitude"))


@dataclass(frozen=True)
class Scene:
    """What geosr needs to know about an input raster.

    Attributes
    ----------
    path : str
        The file or store, as given.
    grid : GeoBox
        Shape, transform and CRS.
    count : int
        Number of bands.
    dtype : str
        Numpy dtype name of the pixels.
    nodata : float or None
        The nodata value; NaN pixels of float scenes are always invalid too.
    descriptions, colorinterp : tuple of str
        Per band (may hold None / be empty).
    tags : mapping
        Dataset tags, carried to the output.
    variable : str or None
        Data variable of a Zarr store; None for GDAL rasters.
    bands : tuple of int
        1-based band indexes of the file that this scene reads, in order; empty
        means all of them (see :mod:`geosr.io.bands`).
    origin : tuple of int
        ``(row, col)`` of this scene's top-left pixel in the file: a scene may be
        a window of its file (an area of interest, :mod:`geosr.aoi`).
    file_shape : tuple of int or None
        ``(height, width)`` of the whole file when the scene is a window of it.
        Reads past the window's edges see the file's real pixels; only reads
        past the file's edges are mirrored.
    strips : bool
        The file's blocks span its whole width (a strip-organized GeoTIFF):
        windows are then cut from one read of their rows (:func:`read_window`).
    """

    path: str
    grid: GeoBox
    count: int
    dtype: str
    nodata: float | None
    descriptions: tuple[str | None, ...] = ()
    colorinterp: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    band_tags: tuple[Mapping[str, str], ...] = ()
    variable: str | None = None
    bands: tuple[int, ...] = ()
    origin: tuple[int, int] = (0, 0)
    file_shape: tuple[int, int] | None = None
    strips: bool = False

    @property
    def name(self) -> str:
        return Path(self.path).name

    @property
    def is_zarr(self) -> bool:
        return self.variable is not None


def is_zarr_path(path: str | Path) -> bool:
    """True for paths that look like a Zarr store (``*.zarr`` or a folder with zarr metadata)."""
    p = Path(path)
    return p.suffix == ".zarr" or (p / "zarr.json").exists() or (p / ".zgroup").exists()


def open_scene(path: str | Path, *, variable: str | None = None) -> Scene:
    """Describe the raster at ``path``, checking everything a run relies on.

    Raises
    ------
    InputError
        Missing file, not a raster, unsupported dtype, no CRS or transform.
    """
    path = str(path)
    if "://" not in path and not path.startswith("/vsi") and not Path(path).exists():
        raise InputError(f"{path}: no such file or directory; check the path")
    if is_zarr_path(path):
        from geosr.io.zarr_scene import open_zarr_scene

        return open_zarr_scene(path, variable=variable)
    try:
        with rasterio.open(path) as src:
            return _describe_gdal(path, src)
    except RasterioIOError as exc:
        raise InputError(
            f"{path}: not a readable raster ({_first_line(exc)}); "
            "check that the file is complete and in a format GDAL reads"
        ) from None


def _describe_gdal(path: str, src: Any) -> Scene:
    dtypes = set(src.dtypes)
    if len(dtypes) != 1:
        raise InputError(
            f"{path}: bands have different data types {sorted(dtypes)}; "
            "convert to one type first (gdal_translate -ot)"
        )
    dtype = src.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise InputError(
            f"{path}: data type {dtype} is not supported; "
            f"use one of {', '.join(SUPPORTED_DTYPES)} (gdal_translate -ot)"
        )
    if src.crs is None:
        raise InputError(
            f"{path}: the raster has no CRS, so its output could not be georeferenced; "
            "assign one first, e.g. gdal_edit.py -a_srs EPSG:32633 FILE"
        )
    if src.transform.is_identity:
        raise InputError(
            f"{path}: the raster has no geotransform (pixel grid only); "
            "assign one first, e.g. gdal_edit.py -a_ullr ULX ULY LRX LRY FILE"
        )
    if src.width < 1 or src.height < 1 or src.count < 1:
        raise InputError(f"{path}: the raster is empty ({src.width} x {src.height}, {src.count} bands)")
    return Scene(
        path=path,
        grid=GeoBox((src.height, src.width), src.transform, src.crs),
        count=src.count,
        dtype=dtype,
        nodata=src.nodata,
        descriptions=tuple(src.descriptions),
        colorinterp=tuple(ci.name for ci in src.colorinterp),
        tags=dict(src.tags()),
        band_tags=tuple(dict(src.tags(b)) for b in range(1, src.count + 1)),
        strips=src.block_shapes[0][1] == src.width and src.height > 1,
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- reading -----------------------------------------------------------------

_local = threading.local()


def _dataset(scene: Scene) -> Any:
    """An open handle for ``scene`` owned by the calling thread (opened once per thread)."""
    cache: dict[str, Any] = _local.__dict__.setdefault("datasets", {})
    handle = cache.get(scene.path)
    if handle is None:
        if scene.is_zarr:
            from geosr.io.zarr_scene import open_zarr_array

            handle = open_zarr_array(scene)
        else:
            handle = rasterio.open(scene.path)
        cache[scene.path] = handle
    return handle


def close_datasets() -> None:
    """Close the calling thread's cached handles (and drop its row band)."""
    _local.__dict__.pop("row_bands", None)
    cache: dict[str, Any] = _local.__dict__.pop("datasets", {})
    for handle in cache.values():
        close = getattr(handle, "close", None)
        if close is not None:
            close()


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Map any integer index onto ``[0, n)`` by symmetric mirroring (edge pixel repeated).

    Matches numpy's ``pad(mode="symmetric")`` and dask's ``boundary="reflect"``,
    for any distance past the edge.
    """
    period = 2 * n
    m = np.mod(index, period)
    return np.where(m < n, m, period - 1 - m)


def read_window(scene: Scene, window: Window) -> np.ndarray:
    """Read ``window`` (LR pixels, may extend past the scene) as ``(count, h, w)``.

    Pixels outside the file are mirrored from inside it, so a tile at the edge
    sees exactly what whole-image inference on a mirrored scene sees.  For a
    scene that is a window of its file, the pixels around it are the file's own.
    """
    h, w = scene.file_shape or scene.grid.shape.yx
    r_off, c_off = scene.origin
    rows = _mirror(np.arange(window.row, window.row + window.height) + r_off, h)
    cols = _mirror(np.arange(window.col, window.col + window.width) + c_off, w)
    r0, r1, c0, c1 = int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1
    try:
        inside = _read_inside(scene, Window(r0, c0, r1 - r0, c1 - c0))
    except (RasterioError, OSError, ValueError) as exc:
        raise InputError(
            f"{scene.path}: reading pixels failed at rows {r0}-{r1}, cols {c0}-{c1} "
            f"({_first_line(exc)}); the file is probably truncated or corrupt"
        ) from None
    return inside[:, (rows - r0)[:, None], (cols - c0)[None, :]]


def _read_inside(scene: Scene, window: Window) -> np.ndarray:
    """Read ``window`` in *file* pixel coordinates, only the scene's bands."""
    handle = _dataset(scene)
    if scene.is_zarr:
        block = np.asarray(handle[:, window.rows, window.cols])
        return block[[b - 1 for b in scene.bands]] if scene.bands else block
    indexes = list(scene.bands) if scene.bands else None
    if scene.strips:
        return _from_row_band(scene, handle, indexes, window)
    return handle.read(indexes, window=RioWindow(window.col, window.row, window.width, window.height))


def _from_row_band(scene: Scene, handle: Any, indexes: list[int] | None, window: Window) -> np.ndarray:
    """``window`` cut from the band of its rows across the scene, read once per thread.

    Any read from a strip-organized file decodes whole strips.  When the strips
    under one row of tiles exceed GDAL's block cache (64 MiB, :mod:`geosr.io`;
    a 4-band 10980-wide scene needs 47 MB per 542 rows), every tile of the row
    decoded them again: reading 88 tiles took 8.8 s instead of 1.0 s with a
    32 MiB cache.  So the rows ``window`` needs are read once across the
    scene's columns (plus the same overshoot on the far side, for the halo of
    the row's last tile), and the row's tiles are cut from that band.  Each
    thread keeps one band per file (per frame, for multi-temporal input).
    """
    _, c_off = scene.origin
    file_width = (scene.file_shape or scene.grid.shape.yx)[1]
    scene_width = scene.grid.shape.yx[1]
    c0, c1 = window.col, window.col + window.width
    if c0 <= c_off and c1 >= c_off + scene_width:  # the whole width already (statistics sample)
        return handle.read(indexes, window=RioWindow(c0, window.row, c1 - c0, window.height))
    bands: dict[tuple[str, str], tuple[int, int, int, int, np.ndarray]] = _local.__dict__.setdefault(
        "row_bands", {}
    )
    key = (scene.path, repr(indexes))
    cached = bands.get(key)
    if cached is None or cached[:2] != (window.row, window.height) or not cached[2] <= c0 < c1 <= cached[3]:
        bands.pop(key, None)  # free the previous band before reading the next
        over = max(0, c_off - c0, c1 - (c_off + scene_width))
        b0 = max(0, min(c0, c_off - over))
        b1 = min(file_width, max(c1, c_off + scene_width + over))
        band = handle.read(indexes, window=RioWindow(b0, window.row, b1 - b0, window.height))
        cached = bands[key] = (window.row, window.height, b0, b1, band)
    b0, band = cached[2], cached[4]
    return band[:, :, c0 - b0 : c1 - b0]


def sample_step(height: int, width: int, max_pixels: int = 1 << 20) -> int:
    """Stride that keeps a strided sample of the scene under ``max_pixels`` per band."""
    return max(1, int(np.ceil(np.sqrt(height * width / max_pixels))))


def read_sample(scene: Scene, max_pixels: int = 1 << 20, rows_per_read: int = 512) -> np.ndarray:
    """Every ``step``-th pixel of every ``step``-th row: ``scene[:, ::step, ::step]``.

    Used for scene-global statistics.  An exact stride (rather than GDAL's
    decimated read) means any other path (Dask, xarray) can take the very same
    sample.  It is read in strips of ``rows_per_read`` rows, so memory stays
    bounded, and it touches every block of the file, so a truncated file fails
    here, before any output is created.
    """
    h, w = scene.grid.shape.yx
    r_off, c_off = scene.origin
    step = sample_step(h, w, max_pixels)
    try:
        if scene.is_zarr:
            block = np.asarray(_dataset(scene)[:, r_off : r_off + h : step, c_off : c_off + w : step])
            return block[[b - 1 for b in scene.bands]] if scene.bands else block
        strip = max(step, rows_per_read // step * step)
        parts = []
        for r0 in range(0, h, strip):
            block = _read_inside(scene, Window(r_off + r0, c_off, min(strip, h - r0), w))
            # A copy, not a view: a view would keep every strip alive, the whole scene.
            parts.append(block[:, ::step, ::step].copy())
        return np.concatenate(parts, axis=1)
    except (RasterioError, OSError, ValueError) as exc:
        raise InputError(
            f"{scene.path}: reading the raster failed ({_first_line(exc)}); "
            "the file is probably truncated or corrupt"
        ) from None
