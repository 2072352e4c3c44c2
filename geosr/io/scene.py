"""Open a georeferenced scene and read windows of it, mirrored past its edges.

A :class:`Scene` is a small frozen description (path, grid, bands, dtype,
nodata, metadata): it can be shipped to another process, which re-opens the
file itself (tasks get paths, never open handles).  Open datasets are cached per
thread so that reading many tiles does not pay GDAL's open cost each time.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import warnings
import weakref
import zipfile
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.windows import Window as RioWindow

from geosr.errors import InputError, catch_warnings_serialised, in_words, number_text
from geosr.io import leave_archives_alone, settle_block_cache
from geosr.io.atomic import ZARR_MARKERS, overlong_name
from geosr.io.coordinates import refuse_uneven_coordinates
from geosr.io.gdal_zarr import gdal_arrays, sidecar_crs, written_by_gdal
from geosr.io.names import open_raster, os_name, shell_quoted
from geosr.io.remote import (
    URL_SCHEMES,
    archive_member_problem,
    file_url_path,
    forget_remote_files,
    is_remote,
    is_stdin,
    is_virtual,
    local_archive,
    local_stamp,
    remote_open_problem,
    stdin_example,
    stdin_problem,
    web_page_problem,
    whole_archive_problem,
)
from geosr.tiling import Window

settle_block_cache()  # before any scene is read: GDAL takes geosr's bound, the environment is left clean
leave_archives_alone()  # before any archive is read

SUPPORTED_DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
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
    band_tags : tuple of mappings
        Per band: its tags (a GDAL band's metadata, a Zarr variable's ``band_tags``
        attribute), carried to the output; may be empty.
    variable : str or None
        Data variable of a Zarr store; None for GDAL rasters.
    subdataset, subdataset_key : str
        The GDAL name of the variable read from a multi-variable GDAL file
        (netCDF, HDF5), e.g. ``NETCDF:"chl.nc":tsm``, and the short name
        ``--variable`` gave for it (``tsm``, :func:`subdataset_keys`); empty
        otherwise.  ``path`` stays the file, which messages and the run's
        fingerprint name.
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
    block_rows : int
        Rows per strip of a strip-organized file (its blocks span its whole
        width), 0 otherwise: windows of such a file are cut from bands of whole
        strips, each decoded once (:func:`read_window`).
    scales, offsets, units : tuple
        Per band: the file's ``value = DN * scale + offset`` and unit (GDAL band
        metadata, e.g. Landsat Collection 2 surface reflectance), carried to the
        output, whose pixels are DNs too; may be empty (scale 1, offset 0).
    band_axis, band_labels : str, tuple
        A Zarr variable's leading dimension (``time`` of a cube) and its
        coordinate's value per band, which a Zarr output keeps; ``"band"`` and
        empty otherwise.
    rpcs : mapping of str to str
        The file's RPCs (GDAL's ``RPC`` metadata domain) beside its geotransform, or empty.
    band_imagery : tuple of mappings
        Per band: GDAL's ``IMAGERY`` metadata domain (``CENTRAL_WAVELENGTH_UM``, ``FWHM_UM``: the
        band's wavelength and width), carried to the output; may be empty.
    masked : bool
        The file hides pixels with a mask shared by its bands (an internal or
        ``.msk`` mask, or an alpha band, which is then not one of the scene's
        bands), or with masks of the bands' own (:func:`has_band_masks`), each
        hiding its band's pixels only.  Reads give such pixels as NaN
        (:func:`read_window`), so they are invalid like nodata, and the output
        marks them with :attr:`output_nodata`.
    band_nodata : tuple of float or None
        Each band's own nodata value (None for none) when the bands' values
        differ, as in a VRT of separate files; empty otherwise.  Reads then give
        every band's nodata pixels as NaN, :attr:`nodata` is None (a value shared
        by all bands would hide another band's valid pixels), and the output,
        which has one nodata value, takes the first band's that has one.
    missing_values : tuple of float
        Further values that mark missing data in every band besides :attr:`nodata`: a CF
        variable's ``_FillValue`` and ``missing_value`` (one value or several) that
        differ, which xarray masks all.  Reads give them as NaN; the output marks them
        with :attr:`nodata`.
    stamp : tuple of int or None
        Size and mtime (ns) of the local file at ``path``, taken before it was opened
        (:func:`~geosr.io.remote.local_stamp`): what a run's fingerprint holds, so that a
        file replaced after this description was taken is told from it.  None elsewhere.
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
    subdataset: str = ""
    subdataset_key: str = ""
    bands: tuple[int, ...] = ()
    origin: tuple[int, int] = (0, 0)
    file_shape: tuple[int, int] | None = None
    block_rows: int = 0
    scales: tuple[float, ...] = ()
    offsets: tuple[float, ...] = ()
    units: tuple[str | None, ...] = ()
    band_axis: str = "band"
    band_labels: tuple[Any, ...] = ()
    masked: bool = False
    band_nodata: tuple[float | None, ...] = ()
    missing_values: tuple[float, ...] = ()
    stamp: tuple[int, int] | None = None
    rpcs: Mapping[str, str] = field(default_factory=dict)
    band_imagery: tuple[Mapping[str, str], ...] = ()

    @property
    def output_nodata(self) -> float | None:
        """The output's nodata value: the scene's own; with per-band values, the first
        band's that is a value; for a masked scene without one, :func:`fill_value`
        (0, a signed type's minimum, or NaN), which then marks the masked pixels.
        A float scene without one gets NaN too, which its output already writes where
        the input is NaN or infinite: declared, it is skipped in the COG's overviews;
        undeclared, it spread (GDAL averages NaN into every 2 x 2 block that holds one),
        and a 0.3 % of scattered NaN, at x4, covered 1.1 % of the third level, 4x more
        at each level below, until a whole scene's coarsest levels were blank.

        The output is a raster of predictions, so the valid predictions that
        round to that value are moved one unit off (:func:`geosr.kernel.cast_to_dtype`).
        """
        if self.band_nodata:
            return next(v for v in self.band_nodata if v is not None)
        if self.masked or self.missing_values or np.dtype(self.dtype).kind == "f":
            return fill_value(self.dtype, self.nodata)
        return self.nodata

    @property
    def nan_marks_invalid(self) -> bool:
        """Whether reads mark invalid pixels as NaN in floats (a mask, per-band nodata, further
        missing values)."""
        return self.masked or bool(self.band_nodata) or bool(self.missing_values)

    @property
    def read_dtype(self) -> np.dtype:
        """The dtype reads return: the file's, or for a masked scene (or one with per-band
        nodata) floats that hold it exactly, with NaN where pixels are invalid."""
        if not self.nan_marks_invalid:
            return np.dtype(self.dtype)
        return np.dtype(np.float32 if np.dtype(self.dtype).itemsize <= 2 else np.float64)

    @property
    def name(self) -> str:
        """The file (or store) name of :attr:`path`, without its folder."""
        return Path(self.path).name

    @property
    def is_zarr(self) -> bool:
        """Whether the scene is a Zarr store's variable (not a GDAL raster)."""
        return self.variable is not None

    @property
    def variable_name(self) -> str | None:
        """The variable read (``--variable``): a Zarr store's, or a multi-variable GDAL file's."""
        return self.variable or self.subdataset_key or None


def fill_value(dtype: str, nodata: float | None) -> float:
    """Nodata to write where a scene has no data (outside an area of interest, under
    its mask): the scene's nodata, else NaN (floats), 0 (unsigned integers) or the
    type's minimum (signed integers: -32768 for int16).

    A valid pixel that rounds onto it is moved one unit off (:func:`geosr.kernel.cast_to_dtype`):
    at the end of an unsigned range that is the darkest value, but 0 is mid-range for
    signed data (a DEM's sea level, temperatures), whose every valid 0 became 1.
    """
    if nodata is not None:
        return float(nodata)
    kind = np.dtype(dtype)
    if np.issubdtype(kind, np.floating):
        return float("nan")
    return float(np.iinfo(kind).min) if np.issubdtype(kind, np.signedinteger) else 0.0


STALE_TAG_PREFIXES = ("STATISTICS_", "TIFFTAG_MINSAMPLEVALUE", "TIFFTAG_MAXSAMPLEVALUE")
"""Tags that describe the input's pixel values, which super-resolution changes: GDAL's
cached band statistics (``gdalinfo -stats``, QGIS), which readers take as the file's own,
and the TIFF tags of the smallest and largest sample value, which GDAL writes as the output's
own TIFF tags (``gdal_translate`` drops them too wherever the values may change)."""

IMAGERY_DOMAIN = "IMAGERY"
"""GDAL's metadata domain of what a sensor saw; a band's holds its central wavelength and width
(``CENTRAL_WAVELENGTH_UM``, ``FWHM_UM``, GDAL 3.10: ENVI, Sentinel-2, and GeoTIFFs made from
them), which super-resolution does not change."""

WRITER_TAGS = ("TIFFTAG_SOFTWARE", "TIFFTAG_DATETIME", "TIFFTAG_HOSTCOMPUTER")
"""The TIFF tags of a file's making: the program, the time and the computer that wrote the input,
none of which wrote the output.  Carried over, an output of a Sen2Cor product said that Sen2Cor
made it, on the day the product was made.  An output's provenance keeps the first two
(:func:`geosr.api.provenance_tags`), and a COG names geosr as its software
(:attr:`geosr.io.sink.OutputSpec.tiff_tags`)."""

SOURCE_DATETIME_TAG = "GEOSR_SOURCE_DATETIME"
"""An output's record of its input's TIFF date (``TIFFTAG_DATETIME``), or of the date an earlier
run recorded: the scene's date for a STAC Item (:func:`geosr.stac.acquisition_time`)."""

PROVENANCE_PREFIX = "GEOSR_"
"""geosr's own tags of the run that wrote a file (``GEOSR_BANDS``, ``GEOSR_FRAMES``...): an input
that is an earlier output describes that run, not the one reading it, which writes its own."""

RASTER_TYPE_TAG = "AREA_OR_POINT"
"""How a GeoTIFF stores its georeferencing: ``Point`` (PixelIsPoint, as Landsat's) puts its tie
point at the first pixel's centre, which GDAL moves by half a pixel to the geotransform's corner
on reading and back on writing.  An output is written as ``Area``, the same georeferencing: a
Point output's half-pixel move was not exact in doubles, and a scene whose output's transform
came back one unit in the last place off failed the run's check after all its tiles, as a bug."""

OVERVIEW_TAGS = ("OVR_RESAMPLING_ALG", "OVERVIEW_RESAMPLING")
"""Tags that say how the input's overviews were computed (rio-cogeo's, before and since its
6.0): an output's own are averages (:mod:`geosr.io.pyramid`), and a Zarr output has none."""


CF_MISSING_ATTRIBUTES = ("_FillValue", "missing_value")
"""A CF variable's attributes of missing values (:func:`missing_values`), which GDAL gives as band
metadata (``v#missing_value`` in the dataset's): an output marks its missing pixels with its own nodata."""


INPUT_GRID_ATTRIBUTES = (
    *("GeoTransform", "transform", "res", "resolution", "spec"),
    *("geospatial_lat_resolution", "geospatial_lon_resolution"),
)
"""Attributes that describe the input's pixel grid, which is not the output's: a grid mapping's
``GeoTransform`` (``crs#GeoTransform`` as GDAL gives a netCDF's), xarray's old open_rasterio
``transform`` and ``res``, stackstac's ``spec`` and ``resolution``, ACDD's resolutions."""


PRINT_RESOLUTION_TAGS = ("TIFFTAG_XRESOLUTION", "TIFFTAG_YRESOLUTION")
"""The TIFF tags of pixels per inch (or centimetre: ``TIFFTAG_RESOLUTIONUNIT``) on paper: a scan's
300 dpi, which :func:`scaled_print_resolution` multiplies by the scale."""


def scaled_print_resolution(tags: Mapping[str, Any], scale: int) -> dict[str, Any]:
    """``tags`` with their print resolution (:data:`PRINT_RESOLUTION_TAGS`) ``scale`` times finer.

    An output of ``scale`` times the pixels covers the same ground, and so the same paper: kept as
    they were, an x4 output of a 300-dpi scan claimed 300 dpi and printed four times the size of
    its input (Photoshop, GIMP, LibreOffice and QGIS's print layout size an image by them).
    Dropping them would have printed it at the reader's default (72 dpi) instead.  A value that is
    no number is dropped, as a resolution of the input's pixels would be wrong for the output's.
    """
    out = dict(tags)
    for key in PRINT_RESOLUTION_TAGS:
        if key not in out:
            continue
        try:
            per_unit = float(out.pop(key))
        except (TypeError, ValueError):
            continue
        if math.isfinite(per_unit) and per_unit > 0:
            finer = per_unit * scale
            # As given: GDAL's tags are text, a DataArray's attributes (open_rasterio's) numbers.
            number = int(finer) if finer.is_integer() else finer
            out[key] = number_text(finer) if isinstance(tags[key], str) else number
    return out


def carried_tags(tags: Mapping[str, Any]) -> dict[str, Any]:
    """``tags`` an output keeps: all but those that describe the input's pixel values
    (:data:`STALE_TAG_PREFIXES`, :data:`CF_MISSING_ATTRIBUTES`), its grid
    (:data:`INPUT_GRID_ATTRIBUTES`) and how its file stores it (:data:`RASTER_TYPE_TAG`), its
    overviews (:data:`OVERVIEW_TAGS`), the making of its file (:data:`WRITER_TAGS`) or the run
    that wrote it (:data:`PROVENANCE_PREFIX`).

    Kept, an output's STATISTICS_MAXIMUM of its input's 254 would stand beside its pixels of
    255: ``gdalinfo -stats`` reports it and QGIS stretches by it without reading a pixel; a
    netCDF input's ``missing_value`` hid the output's valid pixels of that value from every
    geosr read of it (after ``--nodata``, which made them data, those of the missing area
    itself); an input COG's ``OVR_RESAMPLING_ALG=NEAREST`` named the output's average
    overviews nearest-neighbour ones; an earlier output's ``GEOSR_BANDS=3,2,1``, run again
    without ``--bands``, said the new run had reordered its bands, and ``geosr compare`` of the
    two showed them reversed; a 5 m output of a Zarr store said ``resolution=10.0``, and of a
    netCDF its input's GeoTransform."""
    return {
        k: v
        for k, v in tags.items()
        if not str(k).startswith((*STALE_TAG_PREFIXES, PROVENANCE_PREFIX))
        and str(k) not in (*OVERVIEW_TAGS, RASTER_TYPE_TAG, *WRITER_TAGS)
        # A netCDF variable's attribute comes as ``variable#name`` (GDAL's metadata).
        and str(k).rsplit("#", 1)[-1] not in (*CF_MISSING_ATTRIBUTES, *INPUT_GRID_ATTRIBUTES)
    }


def exact_float(dtype: np.dtype) -> np.dtype:
    """The narrowest float that holds every value of ``dtype`` exactly: float32 for 8- and
    16-bit pixels and float32, float64 for 32-bit integers and float64 (float32 keeps 24
    bits: uint32 pixels near 4e9 would come in steps of 256)."""
    return np.result_type(dtype, np.float32)


def is_zarr_path(path: str | Path) -> bool:
    """True for paths that look like a Zarr store (``*.zarr``, a folder with zarr metadata,
    or a zipped store: a ``.zip`` with zarr metadata at its root, as EOPF products come)."""
    p = Path(path)
    # ZARR_MARKERS has .zarray too: an array of a v2 store, which the Zarr reader refuses as one.
    return p.suffix == ".zarr" or any((p / name).exists() for name in ZARR_MARKERS) or is_zipped_zarr(p)


ZARR_ROOT_METADATA = frozenset({"zarr.json", ".zgroup", ".zmetadata"})


def is_zipped_zarr(path: Path) -> bool:
    """Whether ``path`` is a zip file whose root holds a Zarr group's metadata (zarr's ZipStore)."""
    if path.suffix.lower() != ".zip" or not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return not ZARR_ROOT_METADATA.isdisjoint(archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False  # GDAL says what is wrong with it


def zipped_store_named(path: str) -> str:
    """The zip file of a zipped Zarr store where ``path`` is GDAL's name of that zip file
    (``/vsizip//data/scene.zarr.zip``, as ``zip:///data/scene.zarr.zip`` is mapped), else ``path``.

    GDAL's Zarr driver read the zipped store as a file of several variables, its coordinates
    among them ('pick one with --variable'), and decodes no Zarr v3 store (GDAL 3.10): the
    store is read by the Zarr reader, as the zip file's own path is.
    """
    if not path.startswith("/vsizip/"):
        return path
    archive = local_archive(path)
    if archive is None or archive != Path(path.split("/", 2)[2]) or not is_zipped_zarr(archive):
        return path  # a member of the zip, or another archive
    return str(archive)


def check_input_named(path: str) -> None:
    """Refuse an empty input path, as an unset shell variable gives (``geosr run "$SCENE"``):
    it was the working folder, which `geosr run` failed on with a ValueError traceback.

    Raises
    ------
    InputError
        The path is empty or blank, not UTF-8, or has a name too long to exist.
    """
    if not path.strip():
        raise InputError(f"the input path {path!r} is empty; give the path or URL of a raster")
    shown = not_utf8(path)
    if shown is not None:
        raise InputError(
            f"{shown}: the name is not UTF-8 (bytes of another encoding), and GDAL opens UTF-8 names "
            "only; rename it to UTF-8 (e.g. convmv -f latin1 -t utf8 --notest FILE)"
        )
    overlong = overlong_name(path)
    if overlong is not None:
        raise InputError(f"{path}: {overlong}, so no such file can exist; check the path")


def not_utf8(path: str) -> str | None:
    """``path`` shown with its undecodable bytes as ``\\xff``, if it has any (a Latin-1 name
    off an old archive): Python keeps them as surrogates, which GDAL cannot take (rasterio
    raised UnicodeEncodeError, a traceback); None for a UTF-8 path, which Python holds with
    surrogates too under an ASCII locale (GDAL opens it: :func:`geosr.io.names.utf8_name`)."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeEncodeError:  # text, not bytes decoded: UTF-8 whatever the locale
        return None
    except UnicodeDecodeError:
        return os.fsencode(path).decode("utf-8", "backslashreplace")
    return None


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
"""A Windows path's start: a drive letter, a colon, a slash or backslash (``C:\\data``)."""


def windows_path(path: str) -> bool:
    """Whether ``path`` is a Windows one (``C:\\data\\a.tif``) on a system that has no drives:
    pasted from a Windows machine or a recipe written there, it names no file here."""
    return os.sep == "/" and _WINDOWS_DRIVE.match(path) is not None


_SUBDATASET = re.compile(r'^[A-Za-z0-9_]+:(?P<file>"[^"]+"|[^:]+):(?P<name>.+)$')
"""GDAL's subdataset names: ``DRIVER:"file":variable`` (NETCDF, HDF5, ZARR, ...)."""


def check_input_exists(path: str) -> None:
    """Refuse a local input path that names nothing (a remote or ``/vsi`` path is GDAL's to find).

    Raises
    ------
    InputError
        The path is empty or does not exist.
    """
    check_input_named(path)
    path = str(file_url_path(path))
    problem = stdin_problem() if is_stdin(path) else None
    if problem is not None:
        raise InputError(f"{path}: {problem}")
    if path == "-" and not Path(path).exists():
        # The shell's usual name of standard input; GDAL's is another, and "-: no such file" hid it.
        raise InputError(
            "-: no such file; geosr reads standard input as /vsistdin/ (GDAL's name), not '-': "
            + stdin_example()
        )
    scheme = path.partition(":")[0]
    if ":" in path and "://" not in path and scheme.lower() in URL_SCHEMES and Path(path).exists():
        # A file named 's3:x.tif' was read as an S3 URL ('no credentials to read it with'),
        # 'zip:x.tif' as an archive's member: the file itself was never read.
        raise InputError(
            f"{path}: read as a {scheme}: URL, though a file of this name is here; give it as "
            f"{shell_quoted('./' + path)} to read the file"
        )
    if "://" not in path and not path.startswith("/vsi") and not Path(path).exists():
        named = _SUBDATASET.match(path)
        if named is not None and Path(named["file"].strip('"')).exists():
            # GDAL's name of a variable (ZARR:"out.zarr":/band_data, as rasterio opens a Zarr
            # v2 output; NETCDF:"f.nc":tsm): the file is there, and "no such file" misled.
            file, variable = named["file"].strip('"'), named["name"].strip('"/')
            raise InputError(
                f"{path}: a GDAL subdataset name, which geosr does not take; give the file and "
                f"the variable: {file} --variable {variable}"
            )
        hint = ""
        if windows_path(path):  # 'C:' is no subdataset's driver: the hint below misled
            hint = "; it is a Windows path (a drive letter), no file here: give its path on this system"
        elif re.match(r"^[A-Za-z0-9_]+:", path):  # NETCDF:"f.nc":var, HDF5:...: GDAL's subdataset names
            hint = "; for a variable of a netCDF, HDF5 or Zarr file, give the file and --variable NAME"
        raise InputError(f"{path}: no such file or directory; check the path{hint}")


def open_scene(
    path: str | Path, *, variable: str | None = None, bands: str | Sequence[str | int] | None = None
) -> Scene:
    """Describe the raster at ``path``, checking everything a run relies on.

    ``bands`` (``--bands``, which the caller selects) are the bands that must hold
    measurements; None: all of them.

    Raises
    ------
    InputError
        Missing file, not a raster, unsupported dtype, no CRS or transform, a palette band.
    """
    scene = _describe(str(path), variable)
    refuse_palette_bands(scene, bands)
    return scene


def _describe(path: str, variable: str | None) -> Scene:
    path = os_name(path)  # a STAC Item's href, a caller's text: Python's spelling of its name
    check_input_exists(path)
    path = zipped_store_named(str(file_url_path(path)))  # rasterio misreads a URL's escapes
    if is_zarr_path(path) and not written_by_gdal(path):
        from geosr.io.zarr_scene import open_zarr_scene

        return open_zarr_scene(path, variable=variable)
    stamp = local_stamp(path)  # before the open: a file replaced after it differs from it
    if Path(path).is_dir():
        # A store GDAL wrote (written_by_gdal): the folder's own stat does not change with its
        # chunks, and the run's fingerprint stamps the files in it, as of the Zarr reader's stores.
        stamp = None
    try:
        with catch_warnings_serialised():
            # A file of several variables is no raster itself (no geotransform), and a raster
            # without one is refused below in one line of geosr's: rasterio's warning is noise.
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with open_raster(path) as src:
                key, subdataset = _pick_subdataset(path, src, variable)
                others = [name for name in subdataset_keys(src.subdatasets) if name != key]
                if not subdataset:
                    refuse_flags(path, src, others)
                    refuse_uneven_coordinates(path, src)
                    if placed_by_coordinates(path, src):
                        return replace(_by_xarray(path, src.tags(1).get("NETCDF_VARNAME")), stamp=stamp)
                    return replace(_describe_gdal(path, src), stamp=stamp)
            # The variable's own raster too: one without a geotransform printed rasterio's
            # warning before geosr's error line.
            with open_raster(subdataset) as src:
                refuse_flags(path, src, others)
                refuse_uneven_coordinates(path, src)
                if placed_by_coordinates(path, src):
                    return replace(_by_xarray(path, key), stamp=stamp)
                described = _describe_gdal(path, src)
                return replace(described, subdataset=subdataset, subdataset_key=key, stamp=stamp)
    except RasterioIOError as exc:
        raise unreadable(path, exc) from None


def placed_by_coordinates(path: str, src: Any) -> bool:
    """Whether an open netCDF variable is one GDAL finds no georeferencing for, but whose 1-D x/y
    coordinate variables may place it: xarray and rioxarray write them without the CF attributes
    (``standard_name``, ``axis``) by which GDAL's netCDF driver knows them, and GDAL then reads
    the rows bottom-up on a pixel grid.  Such a file was refused ('the raster has no
    geotransform'), though rioxarray reads its grid from the coordinates."""
    return (
        src.driver == "netCDF"
        and src.transform.is_identity
        and not src.gcps[0]
        and src.rpcs is None
        and not geolocated(src)
        and Path(path).is_file()  # xarray opens local files only
    )


def _by_xarray(path: str, variable: str | None) -> Scene:
    """The scene of a netCDF ``variable`` read through xarray, on the grid of its coordinates
    (:func:`placed_by_coordinates`), as a Zarr store's is."""
    from geosr.io.zarr_scene import open_zarr_scene

    return open_zarr_scene(path, variable=variable)


def unreadable(path: str, exc: RasterioIOError) -> InputError:
    """The one line for a raster GDAL cannot open: a remote file's network problem
    (not found, access denied, no HTTP Range support) needs another fix than a bad file.
    Every command's (run, compare, evaluate, train) raster says it so."""
    problem = remote_open_problem(_first_line(exc)) if is_remote(path) else None
    if problem is None and is_remote(path):
        problem = web_page_problem(path)
    if problem is None and "*" not in path:  # a pattern's line is below: no glob is expanded in an archive
        problem = archive_member_problem(path) or whole_archive_problem(path)
    if problem is None and is_stdin(path):
        problem = _stdin_unread(_first_line(exc))
    if problem is not None:
        return InputError(f"{path}: {problem}")
    if Path(path).is_dir():
        # Some GDAL rasters are folders (an ArcInfo grid), so only now: a folder of scenes.
        pattern = shell_quoted(str(Path(path) / "*.tif"))
        return InputError(
            f"{path}: a folder, not a raster GDAL reads; to run the rasters in it, give a quoted "
            f"glob such as {pattern}"
        )
    if "*" in path and is_virtual(path):
        # A URL or /vsi path is no glob ('?' and '[' may be a member's own), so a pattern of one
        # failed as an unreadable raster, and its fix was not the file's format.
        return InputError(
            f"{path}: no such raster ({_first_line(exc)}); geosr expands patterns on the local disk "
            "only, not inside an archive or at a URL: name each file"
        )
    return InputError(
        f"{path}: not a readable raster ({_first_line(exc)}); "
        "check that the file is complete and in a format GDAL reads"
    )


def _stdin_unread(said: str) -> str:
    """Why GDAL read no raster from standard input, by what it ``said``."""
    if "streamed TIFF" in said:
        # GDAL reads a pipe's TIFF as a stream unless it may keep it, and a stream must begin
        # with its first directory ('IFD start should be at offset 8'): a COG (geosr's own output)
        # has its layout metadata there, a TIFF whose tags were edited in place its directory at
        # the end; a plain GeoTIFF as GDAL writes it streams.
        return (
            "standard input holds a TIFF whose first directory is not at its start (a COG, as geosr "
            "writes, or a TIFF edited in place), which GDAL reads from a pipe only if it may keep it: "
            "give /vsistdin?buffer_limit=1GB (at least the file's size) in place of /vsistdin/, or the "
            "file's path"
        )
    # GDAL has read a pipe's bytes by now, so which of the two it was cannot be told.
    return f"standard input holds no raster GDAL reads (it was empty, or not a raster); {stdin_example()}"


def _pick_subdataset(path: str, src: Any, variable: str | None) -> tuple[str, str]:
    """``variable`` and its GDAL name in a multi-variable file (netCDF, HDF5), or ("", "")
    for a file that is one raster (whose variable, if named, must be ``variable``)."""
    names = subdataset_keys(src.subdatasets)
    if src.count == 0 and names:
        if variable is None:
            raise InputError(
                f"{path}: the file holds {len(names)} variables ({', '.join(names)}); "
                "pick one with --variable NAME"
            )
        if variable not in names:
            raise InputError(
                f"{path}: no variable {variable!r}; the file holds {', '.join(names)} (--variable NAME)"
            )
        return variable, names[variable]
    own = src.tags(1).get("NETCDF_VARNAME") if src.count else None
    if src.driver == "Zarr" and len(arrays := gdal_arrays(path)) == 1:
        # The one array of a store GDAL wrote, which geosr names as the variable of
        # ZARR:"out.zarr":/out: refused as no variable of 'one raster', the two lines looped.
        if variable not in (None, arrays[0]):
            raise InputError(
                f"{path}: no variable {variable!r}; the store holds {arrays[0]} (--variable NAME)"
            )
        return "", ""
    if variable is not None and variable != own:
        raise InputError(
            f"{path}: --variable {variable} is for Zarr stores and files of several variables "
            f"(netCDF, HDF5); this file is one raster{f' (variable {own})' if own else ''}"
        )
    return "", ""


def subdataset_keys(names: Sequence[str]) -> dict[str, str]:
    """The short names ``--variable`` takes for a file's GDAL subdatasets, each to its GDAL name.

    What follows the names' common prefix, from a colon on: ``chl`` and ``tsm`` of
    ``NETCDF:"f.nc":chl`` and ``NETCDF:"f.nc":tsm``, ``B1`` of ``HDF5:"f.h5"://B1``, and
    ``10m:EPSG_32633`` of ``SENTINEL2_L1C:MTD.xml:10m:EPSG_32633`` beside
    ``20m:EPSG_32633`` (whose last parts are alike).  A single name keeps its last part.
    """
    # Character by character on purpose: these are GDAL names, not paths.
    cut = os.path.commonprefix(list(names)).rfind(":") + 1  # noqa: RUF071
    return {name[cut:].strip('"/'): name for name in names}


def refuse_palette(path: str | Path, src: Any) -> None:
    """Refuse a raster with a palette band: its values are indexes, not measurements.

    For runs and for training alike: trained on, a class map taught the model to
    interpolate class numbers.

    Raises
    ------
    InputError
        Naming the file and the band, and how to convert it.
    """
    if ColorInterp.palette in src.colorinterp:
        raise _palette_refused(path, src.colorinterp.index(ColorInterp.palette) + 1)


def refuse_palette_bands(scene: Scene, wanted: str | Sequence[str | int] | None = None) -> None:
    """Refuse a scene whose ``wanted`` bands (``--bands``; None: all) include a palette band.

    Only those: a VRT stacking an image's bands with a class map (a Sentinel-2 SCL layer
    and its colour table) was refused even with ``--bands`` leaving the class map out.

    Raises
    ------
    InputError
        Naming the file and the band, how to convert it, and the ``--bands`` that leaves it out.
    """
    numbers = scene.bands or tuple(range(1, scene.count + 1))
    palette = [n for n, ci in zip(numbers, scene.colorinterp, strict=False) if ci == ColorInterp.palette.name]
    if palette and wanted is not None:
        from geosr.io.bands import band_indexes, parse_bands  # it imports this module

        palette = [n for n in band_indexes(scene, parse_bands(wanted)) if n in palette]
    if palette:
        others = [
            n for n, ci in zip(numbers, scene.colorinterp, strict=False) if ci != ColorInterp.palette.name
        ]
        raise _palette_refused(scene.path, palette[0], others)


def _palette_refused(path: str | Path, band: int, others: Sequence[int] = ()) -> InputError:
    """The line refusing palette ``band`` of ``path``; ``others``: its bands of measurements."""
    leave_out = f"; or leave it out with --bands {','.join(map(str, others))}" if others else ""
    return InputError(
        f"{path}: band {band} holds palette indexes, not "
        "measurements, and super-resolving indexes would invent colours or classes that do not exist; "
        "expand a palette picture to RGB first (gdal_translate -expand rgb), and upsample class maps "
        f"with nearest-neighbour resampling (gdalwarp -r near) instead{leave_out}"
    )


CF_FLAG_ATTRIBUTES = ("flag_masks", "flag_values")
"""Attributes of a CF variable of flags (bit masks or class codes), not measurements."""


def flags_refused(path: str, variable: str, meanings: str, measured: Sequence[str]) -> InputError:
    """The line refusing ``variable`` of ``path``, CF flags named by ``meanings`` (the
    ``flag_meanings`` attribute), with the file's ``measured`` variables to pick instead."""
    words = meanings.split()
    listed = " ".join(words[:4]) + (" ..." if len(words) > 4 else "")
    return InputError(
        f"{path}: variable {variable!r} holds CF flags ({listed or 'flag_masks'}), not measurements, "
        "and super-resolving flag values would invent flags that no pixel has; choose a measured "
        f"variable ({', '.join(measured) or 'none in this file'}), and upsample flags "
        "with nearest-neighbour resampling instead"
    )


def refuse_flags(path: str, src: Any, measured: Sequence[str]) -> None:
    """Refuse a netCDF/HDF5 variable of CF flags read through GDAL, which gives its attributes
    as band metadata: a Zarr store's is refused, but the same OLCI ``quality_flags`` in a
    netCDF was super-resolved into flag combinations that no pixel had (and -1)."""
    tags = src.tags(1) if src.count else {}  # an empty container: refused as such later
    if any(name in tags for name in CF_FLAG_ATTRIBUTES):
        name = tags.get("NETCDF_VARNAME") or src.name
        raise flags_refused(path, name, tags.get("flag_meanings", ""), measured)


def _describe_gdal(path: str, src: Any) -> Scene:
    dtypes = set(src.dtypes)
    if len(dtypes) != 1:
        raise InputError(
            f"{path}: bands have different data types {in_words(sorted(dtypes))}; "
            "convert to one type first (gdal_translate -ot)"
        )
    dtype = src.dtypes[0]
    if dtype not in SUPPORTED_DTYPES:
        raise InputError(
            f"{path}: data type {dtype} is not supported; "
            f"use one of {', '.join(SUPPORTED_DTYPES)} (gdal_translate -ot)"
        )
    grid = raster_grid(src)
    check_georeferenced(path, src, grid.crs)
    if src.width < 1 or src.height < 1 or src.count < 1:
        raise InputError(f"{path}: the raster is empty ({src.width} x {src.height}, {src.count} bands)")
    data = data_bands(src)
    if not data:
        raise InputError(f"{path}: every band is an alpha band; there is no image to super-resolve")
    return Scene(
        path=path,
        grid=grid,
        count=len(data),
        dtype=dtype,
        **declared_invalid(src, data),
        descriptions=netcdf_dates(src, data)
        or netcdf_long_name(src, data)
        or tuple(src.descriptions[b - 1] for b in data),
        colorinterp=tuple(src.colorinterp[b - 1].name for b in data),
        tags=dict(src.tags()),
        band_tags=tuple(dict(src.tags(b)) for b in data),
        bands=tuple(data) if len(data) < src.count else (),
        block_rows=int(src.block_shapes[0][0]) if src.block_shapes[0][1] == src.width else 0,
        scales=tuple(float(src.scales[b - 1]) for b in data),
        offsets=tuple(float(src.offsets[b - 1]) for b in data),
        units=tuple(src.units[b - 1] or None for b in data),
        masked=any(hides_pixels(src, band) for band in data),
        rpcs=dict(src.tags(ns="RPC")) if src.rpcs is not None else {},
        band_imagery=tuple(dict(src.tags(b, ns=IMAGERY_DOMAIN)) for b in data),
    )


def netcdf_long_name(src: Any, bands: Sequence[int]) -> tuple[str] | None:
    """The CF ``long_name`` of an open netCDF variable of one band, as its band's name, or None.

    A Zarr store's variable of one band (and the netCDF xarray reads) is named by it; GDAL gave
    the same file's band no name, so the output's band of a CF file was unnamed.
    """
    if src.driver != "netCDF" or len(bands) != 1 or src.descriptions[bands[0] - 1]:
        return None
    name = src.tags(bands[0]).get("long_name")
    return (name,) if name else None


def netcdf_dates(src: Any, bands: Sequence[int]) -> tuple[str, ...] | None:
    """The dates of the 1-based ``bands`` of an open netCDF variable whose one dimension besides
    y/x is CF time (``units`` of ``days since ...``), as text, or None.

    A Zarr store's ``(time, y, x)`` variable (and the netCDF that xarray reads) names its bands by
    their dates; GDAL gave the same file's bands no name, only ``NETCDF_DIM_time=31`` in their
    metadata, so the output's bands of a file told nothing of when they were taken.
    """
    tags = src.tags() if src.driver == "netCDF" else {}
    extra = tags.get("NETCDF_DIM_EXTRA", "").strip("{}").split(",")
    units = tags.get(f"{extra[0]}#units", "") if len(extra) == 1 else ""
    if " since " not in units or any(src.descriptions[b - 1] for b in bands):
        return None
    import xarray as xr  # only for netCDF time series

    dim = extra[0]
    try:
        numbers = [float(src.tags(b)[f"NETCDF_DIM_{dim}"]) for b in bands]
        attrs = {"units": units, "calendar": tags.get(f"{dim}#calendar", "standard")}
        with catch_warnings_serialised():
            warnings.simplefilter("ignore")  # xarray's about unusual calendars: the dates stay unnamed
            dates = xr.decode_cf(xr.Dataset(coords={dim: (dim, numbers, attrs)}))[dim].values
    except (KeyError, ValueError, TypeError, OverflowError, ImportError):
        return None  # not numbers, or a calendar xarray cannot decode without cftime
    # As a Zarr store's labels are written (str of numpy's datetime64).
    return tuple(str(date) for date in dates)


def declared_invalid(src: Any, bands: Sequence[int]) -> dict[str, Any]:
    """``nodata``, ``band_nodata`` and ``missing_values`` (:class:`Scene`) of the 1-based ``bands``
    of an open GDAL dataset: the values that mark its pixels invalid, as a run reads them.

    Training reads its rasters with these too: it took each band's GDAL nodata, so a nodata
    colour hid a pixel in every band that held the colour's value of it, and a netCDF
    variable's missing_value was trained on as data.
    """
    nodata = nodata_fields([None if pixel_nodata(src) else src.nodatavals[b - 1] for b in bands])
    # GDAL takes a netCDF variable's _FillValue as its nodata and leaves a missing_value that differs.
    missing = () if nodata["band_nodata"] else missing_values(src.tags(bands[0]), nodata["nodata"])
    return {**nodata, "missing_values": missing}


def nodata_fields(values: Sequence[float | None]) -> dict[str, Any]:
    """``nodata`` and ``band_nodata`` of a scene whose bands have the nodata ``values`` (None:
    none): the shared value when they agree, else each band's (:attr:`Scene.band_nodata`).

    GDAL keeps a nodata value per band; a GeoTIFF has one for all, but a VRT that
    stacks separate files, or a netCDF, may not (``src.nodata`` is band 1's).  A
    selection of bands (:func:`geosr.io.bands.select_bands`) may agree again.
    """
    if len({repr(v) for v in values}) > 1:
        return {"nodata": None, "band_nodata": tuple(None if v is None else float(v) for v in values)}
    return {"nodata": values[0] if values else None, "band_nodata": ()}


def with_nodata(scene: Scene, nodata: float | None) -> Scene:
    """``scene`` with ``nodata`` (``--nodata``) for all its bands in place of the file's own
    values, each band's own (:attr:`Scene.band_nodata`) and further missing values
    (:attr:`Scene.missing_values`) too; ``scene`` itself for None.

    ``geosr run`` and ``geosr evaluate`` both take ``--nodata`` so: evaluate kept a VRT's
    per-band values beside it, and left out of the scores the pixels the run took as data.
    """
    if nodata is None:
        return scene
    return replace(scene, nodata=float(nodata), band_nodata=(), missing_values=())


def missing_values(attrs: Mapping[str, Any], nodata: float | None) -> tuple[float, ...]:
    """The values other than ``nodata`` that a variable's CF ``_FillValue`` and ``missing_value``
    (one value or several) mark as missing, which xarray masks all as it decodes.  ``attrs``:
    a Zarr variable's attributes, or the band metadata GDAL gives a netCDF variable, as text
    (``-32767``, ``{-32767,-1}``).

    Only one was the nodata: a variable whose ``_FillValue`` is -32768 and ``missing_value``
    -32767 had its -32767 pixels super-resolved as data, ringing into their neighbours.
    NaN is left out: a float scene's NaN pixels are invalid anyway.
    """
    found: list[float] = []
    for key in CF_MISSING_ATTRIBUTES:
        given = attrs.get(key, [])
        if isinstance(given, str):
            given = given.strip("{}").split(",")  # GDAL's text of a netCDF attribute
        try:
            values = np.atleast_1d(np.asarray(given, dtype=np.float64)).ravel()
        except (TypeError, ValueError):  # not numbers ("N/A"): nothing a pixel can equal
            continue
        for value in values:
            number = float(value)
            if not np.isnan(number) and number != nodata and number not in found:
                found.append(number)
    return tuple(found)


def data_bands(src: Any) -> list[int]:
    """1-based indexes of the bands of an open dataset that hold data: all but alpha bands.

    An alpha band is the file's mask, not data: it is read as the mask
    (:func:`hides_pixels`), like an internal or external per-dataset mask.
    """
    return [b for b, ci in enumerate(src.colorinterp, start=1) if ci != ColorInterp.alpha]


def hides_pixels(src: Any, band: int) -> bool:
    """Whether ``band`` of an open dataset is masked by a per-dataset mask, an alpha band
    (:func:`file_mask` is 0 where pixels are hidden) or a mask of its own (:func:`has_band_masks`)."""
    flags = src.mask_flag_enums[band - 1]
    return MaskFlags.per_dataset in flags or ColorInterp.alpha in src.colorinterp or not flags


def chosen_bands(path: str | Path, src: Any, bands: Sequence[int] | None, *, key: str = "bands") -> list[int]:
    """The 1-based ``bands`` of an open dataset, checked to exist, or its data bands (all but
    alpha bands) for None: the bands training and co-registration read.

    An alpha band is the file's mask, not a band of the data: read, it was trained on as an
    image and made evaluate's RGBA pairs a broadcasting traceback (4 bands vs 3).  ``key``
    names the setting that gave ``bands`` in the line that refuses them: ``bands``, a
    recipe's key (given as TOML), or a Python keyword (``lr_bands``, given as a tuple).
    """
    data = data_bands(src)
    if not bands and not data:
        raise InputError(
            f"{path}: every band is an alpha band (the file's mask), so there is no image to read; "
            "set the colour interpretation of the image bands, e.g. gdal_edit.py -colorinterp_1 gray FILE"
        )
    chosen = list(bands) if bands else data
    bad = [b for b in dict.fromkeys(chosen) if not 1 <= b <= src.count]
    if bad:
        # Not "has 1 band; bands [0] do not exist": a Python list, and no numbers to give instead.
        missing = (
            f"band {bad[0]} does not exist"
            if len(bad) == 1
            else f"bands {in_words([str(b) for b in bad])} do not exist"
        )
        numbered = "its one band is band 1" if src.count == 1 else f"its bands are numbered 1 to {src.count}"
        raise InputError(f"{path}: {missing}: {numbered} (give e.g. {_bands_setting(key, data)})")
    return chosen


def _bands_setting(key: str, bands: Sequence[int]) -> str:
    """``key`` set to ``bands`` as its user writes it: a recipe's ``bands = [1, 2]`` (TOML),
    else a Python keyword's ``lr_bands=(1, 2)``."""
    if key == "bands":
        return f"bands = [{', '.join(map(str, bands))}]"
    return f"{key}=({', '.join(map(str, bands))}{',' if len(bands) == 1 else ''})"


def pixel_nodata(src: Any) -> bool:
    """Whether the nodata values of an open dataset are one per pixel, not per band: GDAL's
    ``NODATA_VALUES`` (an RGB PNG's tRNS colour), whose per-dataset mask hides a pixel only
    where every band holds its value (GDAL RFC 15).

    Its bands report those values as their own too; taken band by band, a valid pixel
    whose red alone was the nodata colour's was nodata in its red band.  The mask says it
    all (:attr:`Scene.masked`), so the bands' values are left out.
    """
    both = {MaskFlags.per_dataset, MaskFlags.nodata}
    return all(both <= set(src.mask_flag_enums[band - 1]) for band in data_bands(src))


def has_band_masks(src: Any) -> bool:
    """Whether a data band of an open dataset has a mask of its own (a VRT band's
    ``<MaskBand>``, a per-band ``.msk``), which GDAL reports with no mask flag at all.

    Such a mask hides pixels of its band only, so it is read band by band
    (:func:`_read_inside`); a scene took it for no mask, and super-resolved the
    hidden pixels as data.
    """
    return any(not src.mask_flag_enums[band - 1] for band in data_bands(src))


def file_mask(
    src: Any, window: RioWindow | None = None, out_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """``(h, w)``, 0 where an open dataset hides pixels: its per-dataset mask (internal,
    ``.msk``, or the alpha band GDAL takes as one), else its alpha band.

    GDAL takes an alpha band as the mask only as the last band of 2 or 4 (grey or
    RGB with alpha); an alpha band elsewhere (the 5th of an RGBN orthomosaic, the
    1st of ARGB) it leaves out of the mask, so ``src.dataset_mask()`` showed every
    pixel and the transparent ones were super-resolved as data.  ``out_shape``: read
    decimated (:func:`read_decimated`).
    """
    data = data_bands(src)
    alpha = [b for b, ci in enumerate(src.colorinterp, start=1) if ci == ColorInterp.alpha]
    if alpha and data and MaskFlags.per_dataset not in src.mask_flag_enums[data[0] - 1]:
        return src.read(alpha[0], window=window, out_shape=out_shape)
    return src.dataset_mask(window=window, out_shape=out_shape)


def _cf_geographic(src: Any) -> CRS | None:
    """EPSG:4326 for a netCDF/HDF5 variable on CF latitude/longitude coordinates without a
    grid mapping, which GDAL leaves without a CRS (the Zarr reader reads them the same way:
    by the CF conventions they are geographic degrees); else None.

    Coordinates named so without ``units`` (as xarray writes them when given none), which GDAL
    places the variable by, are degrees too where its bounds are within the globe's: a Zarr
    store's lat/lon dimensions are, and the netCDF of the same Dataset was refused ('no CRS').
    """
    if src.driver not in ("netCDF", "HDF5") or src.transform.is_identity:
        return None
    tags = src.tags()
    units = {key.split("#")[0]: value for key, value in tags.items() if key.endswith("#units")}
    lat = any(units.get(name) == "degrees_north" for name in ("lat", "latitude"))
    lon = any(units.get(name) == "degrees_east" for name in ("lon", "longitude"))
    if lat and lon:
        return CRS.from_epsg(4326)
    variables = {key.split("#")[0] for key in tags if "#" in key}
    named = any({y, x} <= variables and not units.get(y) and not units.get(x) for y, x in GEOGRAPHIC_COORDS)
    left, bottom, right, top = src.bounds
    on_the_globe = (
        min(left, right) >= -180
        and max(left, right) <= 360
        and -90 <= min(bottom, top) <= max(bottom, top) <= 90
    )
    return CRS.from_epsg(4326) if named and on_the_globe else None


def raster_crs(src: Any) -> CRS | None:
    """The CRS of an open GDAL dataset as a run takes it: its own, else the CF geographic one
    (:func:`_cf_geographic`); co-registration of a pair took GDAL's alone, and refused a
    netCDF on latitude/longitude that ``geosr run`` reads, as 'the raster has no CRS'.  A Zarr
    store of several bands that GDAL wrote holds its CRS in its sidecar alone (:func:`sidecar_crs`)."""
    return src.crs or _cf_geographic(src) or sidecar_crs(src)


def raster_grid(src: Any) -> GeoBox:
    """The grid of an open GDAL dataset: its shape, geotransform and :func:`raster_crs`."""
    return GeoBox((src.height, src.width), src.transform, raster_crs(src))


def geolocated(src: Any) -> bool:
    """Whether GDAL places the pixels of an open dataset by geolocation arrays (its GEOLOCATION
    metadata: a swath's longitude and latitude per pixel, as netCDF and HDF products of
    Sentinel-3, MODIS or VIIRS come), which no geotransform describes.

    Such a swath has no CRS of its own (the arrays have one), and was told to assign one with
    ``gdal_edit.py -a_srs``, which would have placed it by its pixel numbers.
    """
    return bool(src.tags(ns="GEOLOCATION"))


def check_georeferenced(path: str, src: Any, crs: CRS | None) -> None:
    """Refuse rasters whose output geosr could not georeference exactly."""
    if crs is None or src.transform.is_identity:
        gcps = src.gcps[0]
        if gcps:
            raise InputError(
                f"{path}: the raster is georeferenced by {len(gcps)} ground control points only, "
                "not by a geotransform, which geosr needs to scale its grid exactly; warp it onto "
                "a map grid first at its own resolution (gdalwarp -r cubic FILE warped.tif)"
            )
        if src.rpcs is not None:
            raise InputError(
                f"{path}: the raster is georeferenced by RPCs only, not by a geotransform, which "
                "geosr needs to scale its grid exactly; orthorectify it first (gdalwarp -rpc -r cubic "
                "FILE ortho.tif)"
            )
        if geolocated(src):
            raise InputError(
                f"{path}: the raster is a swath georeferenced by geolocation arrays only (a longitude "
                "and latitude per pixel), not by a geotransform, which geosr needs to scale its grid "
                "exactly; warp it onto a map grid first (gdalwarp -geoloc -r cubic FILE warped.tif)"
            )
    if crs is None and src.transform.is_identity:
        # Both in one line: told of the CRS alone, a user who assigned one was then refused
        # for the geotransform (a plain TIFF has neither).
        raise InputError(
            f"{path}: the raster has no CRS and no geotransform (pixel grid only), so its output "
            "could not be georeferenced; assign both first, e.g. gdal_edit.py -a_srs EPSG:32633 "
            "-a_ullr ULX ULY LRX LRY FILE"
        )
    if crs is None:
        raise InputError(
            f"{path}: the raster has no CRS, so its output could not be georeferenced; "
            "assign one first, e.g. gdal_edit.py -a_srs EPSG:32633 FILE"
        )
    if src.transform.is_identity:
        raise InputError(
            f"{path}: the raster has no geotransform (pixel grid only); "
            "assign one first, e.g. gdal_edit.py -a_ullr ULX ULY LRX LRY FILE"
        )


def _read_failure(path: str, exc: BaseException) -> str:
    """Why reading pixels of ``path`` failed, and what to check: a remote file's server may
    have stopped serving it mid-run, which GDAL reports as a short read, as it does a
    truncated file; its outermost line ("Read failed. See previous exception") says nothing.

    A local file that opens but refers to one that does not (a VRT whose source was moved
    or deleted: GDAL opens sources only to read their pixels) was called truncated or corrupt.
    """
    root = exc
    while (root.__cause__ or root.__context__) is not None:
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
    if path.startswith("/vsistdin"):
        # A pipe is read once: GDAL keeps its start for reads that go back, and a run's reads
        # (the strided sample, then tiles) go back further; it was told "the server stopped".
        return (
            f"({_first_line(root)}); standard input is read once, and GDAL keeps only its first "
            "MiB for reads that go back: save it to a file and run on that, or set "
            "CPL_VSISTDIN_BUFFER_LIMIT to more bytes than it holds"
        )
    if is_remote(path):
        return (
            f"({_first_line(root)}); the server stopped serving it (an outage, a signed URL that expired) "
            "or the file is truncated: check the URL and run again"
        )
    reason = root if isinstance(exc, RasterioError) else exc  # a Zarr chunk's own line says it
    # By name: rasterio exports GDAL's error classes from a private module only.
    if type(reason).__name__ == "CPLE_OpenFailedError":
        return (
            f"({_first_line(reason)}); a file it refers to cannot be opened (a VRT's source that was moved "
            "or deleted): restore that file, or rebuild the VRT (gdalbuildvrt)"
        )
    return f"({_first_line(reason)}); the file is probably truncated or corrupt"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --- reading -----------------------------------------------------------------


class _Reads:
    """One thread's open datasets (:func:`_dataset`) and kept bands of strips (:func:`_from_row_band`).

    ``lock`` is held while the thread reads through them, so that another thread may close
    them (:func:`release`) between two of its reads, never during one.
    """

    __slots__ = ("__weakref__", "datasets", "lock", "row_bands")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.datasets: dict[tuple[str, str | None], tuple[Any, Any]] = {}
        self.row_bands: dict[tuple[str, str | None, tuple[int, ...]], tuple[int, int, int, np.ndarray]] = {}

    def drop(self, paths: Collection[str] | None = None) -> None:
        """Close the handles of ``paths`` (None: all) and forget their bands of strips."""
        for key in [k for k in self.row_bands if paths is None or k[0] in paths]:
            del self.row_bands[key]
        for name in [k for k in self.datasets if paths is None or k[0] in paths]:
            _close(self.datasets.pop(name)[1])


_local = threading.local()
_every_thread: weakref.WeakSet[_Reads] = weakref.WeakSet()  # gone with their threads
_EVERY_THREAD = threading.Lock()


def _reads() -> _Reads:
    """The calling thread's :class:`_Reads`."""
    reads: _Reads | None = getattr(_local, "reads", None)
    if reads is None:
        reads = _local.reads = _Reads()
        with _EVERY_THREAD:
            _every_thread.add(reads)
    return reads


def _dataset(scene: Scene) -> Any:
    """An open handle for ``scene`` owned by the calling thread (opened once per thread).

    Opened again when the file was replaced since (its :attr:`Scene.stamp` differs): a
    Dask worker's threads outlive a run, and the next run on a scene rewritten at the same
    path read the old file's pixels through the handle and the strips kept from it.
    """
    reads = _reads()
    key = (scene.path, scene.variable_name)  # a file's variables are different arrays
    stamp, handle = reads.datasets.get(key, (None, None))
    if handle is not None and stamp != scene.stamp:
        reads.drop([scene.path])
        handle = None
    if handle is None:
        if scene.is_zarr:
            from geosr.io.zarr_scene import open_zarr_array

            handle = open_zarr_array(scene)
        else:
            handle = open_raster(scene.subdataset or scene.path)
        reads.datasets[key] = (scene.stamp, handle)
    return handle


def close_datasets() -> None:
    """Close the calling thread's cached handles (and drop its row band)."""
    reads: _Reads | None = getattr(_local, "reads", None)
    if reads is not None:
        with reads.lock:
            reads.drop()


@contextlib.contextmanager
def datasets_closed() -> Iterator[None]:
    """Within: reads keep their files open in the calling thread's cache, closed as it ends
    (:func:`close_datasets`), however it ends: for calls of the Python API, which a notebook
    makes many times in one thread."""
    try:
        yield
    finally:
        close_datasets()


RELEASE_WAIT_S = 1.0
"""Longest :func:`release` waits for a thread's read to end, in seconds."""


def release(paths: Collection[str]) -> None:
    """Close every thread's cached handles of ``paths`` and drop their bands of strips.

    For the end of a run on a Dask worker, whose task threads outlive it: each kept the
    input open (a deleted input's space stayed taken until the worker restarted) and up to
    :data:`BAND_BUDGET` of its decoded rows.  A thread reading meanwhile (another run's
    task) is waited for, a second at most: Dask runs this in the worker's event loop, whose
    heartbeats a read of a stalled remote file would hold back; that thread keeps its files.
    A thread whose files are closed opens them again on its next read.
    """
    with _EVERY_THREAD:
        everyone = list(_every_thread)
    for reads in everyone:
        if reads.lock.acquire(timeout=RELEASE_WAIT_S):
            try:
                reads.drop(set(paths))
            finally:
                reads.lock.release()
    forget_remote_files(paths)  # and what GDAL fetched of a remote input, replaced there before the next run


def _close(handle: Any) -> None:
    close = getattr(handle, "close", None)  # a Zarr array has none
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
            f"{_read_failure(scene.path, exc)}"
        ) from None
    return inside[:, (rows - r0)[:, None], (cols - c0)[None, :]]


def _read_inside(scene: Scene, window: Window, *, keep_band: bool = True, step: int = 1) -> np.ndarray:
    """Read ``window`` in *file* pixel coordinates, only the scene's bands.

    ``keep_band``: cut it from the thread's band of strips (:func:`_from_row_band`),
    for reads that move down the scene row of tiles by row of tiles.  ``step``: one
    pixel of each ``step`` x ``step`` block (:func:`read_decimated`).
    """
    with _reads().lock:  # not closed by release() while it reads
        return _read_held(scene, window, keep_band=keep_band, step=step)


def _read_held(scene: Scene, window: Window, *, keep_band: bool, step: int) -> np.ndarray:
    """:func:`_read_inside`, with the thread's lock held."""
    handle = _dataset(scene)
    if scene.is_zarr:
        # About the middle pixel of each block, as GDAL's decimated read takes it, and one pixel
        # of a last, partial block too.
        r0, c0 = (min(step // 2, (side - 1) % step) for side in (window.height, window.width))
        rows = slice(window.row + r0, window.row + window.height, step)
        cols = slice(window.col + c0, window.col + window.width, step)
        return _zarr_block(scene, handle[:, rows, cols])
    indexes = list(scene.bands) if scene.bands else None
    rio_window = RioWindow(window.col, window.row, window.width, window.height)
    # GDAL reads a smaller out_shape from the file's overviews where it has them.
    out = {} if step == 1 else {"out_shape": (-(-window.height // step), -(-window.width // step))}
    if keep_band and step == 1 and keeps_band(scene, window.height):
        block = _from_row_band(scene, handle, indexes, window)
    else:
        block = handle.read(indexes, window=rio_window, **out)
    block = nodata_as_gdal_masks_it(block, scene.nodata)
    if not scene.nan_marks_invalid:
        return block
    mask = read_masks(handle, indexes, rio_window, **out) if scene.masked else None
    return hide_invalid(scene, block, mask)


def nodata_as_gdal_masks_it(block: np.ndarray, nodata: float | None) -> np.ndarray:
    """``block``, with the float pixels that GDAL's nodata mask hides set to ``nodata`` exactly.

    GDAL takes a float pixel for the nodata value within two float32 steps of it (``ARE_REAL_EQUAL``,
    ``|a - b| < 2 FLT_EPSILON |a + b|``, in the band's type), and so do QGIS, rasterio's masked
    reads and gdalwarp: ArcGIS writes float32 rasters that declare -3.40282306073709653e+38 and
    hold float32's lowest, -3.4028234663852886e+38, two steps off.  Compared exactly, they were
    data (:func:`geosr.normalise.valid_mask`), and the scene's normalisation spanned 3.4e+38.
    Integer pixels, a NaN or infinite nodata, and blocks without such pixels come back as they are.
    """
    if block.dtype.kind != "f" or nodata is None or not np.isfinite(nodata):
        return block
    with np.errstate(over="ignore", invalid="ignore"):
        target = block.dtype.type(nodata)
        near = np.abs(block - target) < np.finfo(np.float32).eps * np.abs(block + target) * 2
    near &= block != target
    return np.where(near, target, block) if near.any() else block


def read_masks(src: Any, indexes: list[int] | None, window: RioWindow | None, **out: Any) -> np.ndarray:
    """0 where an open dataset hides pixels of the bands ``indexes`` (None: all) in ``window``:
    ``(C, h, w)``, each band's own mask where the bands have masks of their own
    (:func:`has_band_masks`), else ``(h, w)``, the file's mask (:func:`file_mask`).

    Training read the file's mask of all bands for such a file: a pixel one band hides and
    another shows was trained on as data.
    """
    if has_band_masks(src):
        return src.read_masks(indexes, window=window, **out)
    return file_mask(src, window, **out)


def read_decimated(scene: Scene, window: Window, step: int) -> np.ndarray:
    """``window`` (scene pixels, inside the scene) read at about ``1 / step`` of its resolution:
    ``(count, ceil(height / step), ceil(width / step))``, from a GeoTIFF's overviews where it
    has them, a Zarr store's middle pixel of each block.

    A quicklook of a large window shows a few hundred pixels a side: reading all of them
    took the whole window into memory (3.4 GiB for 4096^2 output pixels).
    """
    r_off, c_off = scene.origin
    inside = Window(window.row + r_off, window.col + c_off, window.height, window.width)
    try:
        return _read_inside(scene, inside, keep_band=False, step=step)
    except (RasterioError, OSError, ValueError) as exc:
        raise InputError(
            f"{scene.path}: reading pixels failed at rows {inside.row}-{inside.row + inside.height}, "
            f"cols {inside.col}-{inside.col + inside.width} {_read_failure(scene.path, exc)}"
        ) from None


def _zarr_block(scene: Scene, block: Any) -> np.ndarray:
    """A block read of a Zarr variable's every band: the scene's bands, with NaN where
    they are invalid (:func:`hide_invalid`)."""
    block = np.asarray(block)
    block = block[[b - 1 for b in scene.bands]] if scene.bands else block
    return hide_invalid(scene, block, None) if scene.nan_marks_invalid else block


def hide_invalid(scene: Scene, block: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``block`` as floats (exact for its dtype) with NaN where the file's ``mask`` (``(h, w)``,
    or ``(C, h, w)``: each band's own) hides pixels and where a band holds its own nodata value
    (:attr:`Scene.band_nodata`) or a further missing value (:attr:`Scene.missing_values`): from
    here on they are invalid, like nodata (:func:`geosr.normalise.valid_mask`)."""
    if scene.band_nodata and block.dtype.kind == "f":  # each band's own, as GDAL's mask of it takes it
        block = np.stack(
            [nodata_as_gdal_masks_it(b, v) for b, v in zip(block, scene.band_nodata, strict=True)]
        )
    out = block.astype(scene.read_dtype)
    if mask is not None and mask.ndim == 3:
        out[mask == 0] = np.nan
    elif mask is not None:
        out[:, mask == 0] = np.nan
    for band, nodata in zip(out, scene.band_nodata, strict=False):
        if nodata is not None:
            band[band == nodata] = np.nan
    for value in scene.missing_values:
        out[out == value] = np.nan
    return out


BAND_BUDGET = 512 * 2**20
"""Largest band of strips a reading thread keeps (bytes); wider files read window by window."""


def keeps_band(scene: Scene, rows: int) -> bool:
    """Whether windows of ``rows`` rows are cut from a kept band (:func:`_from_row_band`):
    when GDAL's block cache cannot hold the band, and the band fits :data:`BAND_BUDGET`."""
    return bool(scene.block_rows) and gdal_cache_bytes() < band_bytes(scene, rows) <= BAND_BUDGET


def gdal_cache_bytes() -> int:
    """GDAL's block cache size in bytes, as GDAL has it (geosr.io sets the default)."""
    from rasterio.env import get_gdal_config

    return int(get_gdal_config("GDAL_CACHEMAX") or 0)


def band_bytes(scene: Scene, rows: int) -> int:
    """Bytes of the band :func:`read_window` keeps for windows of ``rows`` rows: those rows
    and a strip more above and below, across the file (the most a band can span)."""
    width = (scene.file_shape or scene.grid.shape.yx)[1]
    return (rows + 2 * scene.block_rows) * width * scene.count * np.dtype(scene.dtype).itemsize


def _from_row_band(scene: Scene, handle: Any, indexes: list[int] | None, window: Window) -> np.ndarray:
    """``window`` cut from a band of whole strips across the scene, each decoded once.

    Any read from a strip-organized file decodes whole strips, across the file,
    and a row of tiles needs the strips under all its read windows; the next row
    of tiles needs the last of them again (the halo).  Left to GDAL's block cache
    (:mod:`geosr.io` bounds it), the strips of a wide multi-band scene were
    evicted before their reuse: reading the 88 tiles of a 4-band 2048 x 10980
    strip file took 8.8 s instead of 0.8 s with a 32 MiB cache.  So each reading
    thread keeps, per file, the band of strips under the current row of tiles,
    across the scene's columns (with the row's halo overshoot on both sides);
    moving down, it keeps the strips it still needs and decodes only the new
    ones.  Used only where the cache cannot hold the band (:func:`keeps_band`).
    A strip file's band grows with its width, as its strips do: that is the
    format's, and :data:`BAND_BUDGET` bounds it (wider files read window by window).

    Tiled files are left to the cache, which a row of tiles fills at most with
    the block rows it shares with the next one: a wide multi-band tiled scene
    re-decodes some of them (8 bands, 2048 x 10980: 88 tiles read in 4.5 s with
    the 32 MiB cache, 2.4 s with 64 MiB, 1.3 s with one that holds them all).
    That keeps memory bounded by configuration; reading is about 1 % of a
    CNN-RNN run on a CPU.
    """
    _, c_off = scene.origin
    file_height, file_width = scene.file_shape or scene.grid.shape.yx
    scene_width = scene.grid.shape.yx[1]
    r0, r1, c0, c1 = window.row, window.row + window.height, window.col, window.col + window.width
    bands = _reads().row_bands
    # The variable too: two variables of one netCDF share the path and band 1, and the
    # second read in a thread got the first one's pixels.
    key = (scene.path, scene.variable_name, tuple(indexes or ()))
    top, b0, b1, band = bands.get(key, (0, 0, 0, None))
    if band is None or not (top <= r0 and r1 <= top + band.shape[1] and b0 <= c0 and c1 <= b1):
        step = scene.block_rows
        new_top, bottom = r0 // step * step, min(file_height, -(-r1 // step) * step)
        over = max(0, c_off - c0, c1 - (c_off + scene_width))
        n0, n1 = max(0, min(c0, c_off - over)), min(file_width, max(c1, c_off + scene_width + over))
        kept = None
        if band is not None and (n0, n1) == (b0, b1) and top <= new_top < top + band.shape[1]:
            kept = band[:, new_top - top :]  # strips still needed: not decoded again
        bands.pop(key, None)  # free the rest before reading
        start = new_top + (0 if kept is None else kept.shape[1])
        fresh = handle.read(indexes, window=RioWindow(n0, start, n1 - n0, bottom - start))
        band = fresh if kept is None else np.concatenate([kept, fresh], axis=1)
        top, b0, b1 = new_top, n0, n1
        bands[key] = (top, b0, b1, band)
    return band[:, r0 - top : r1 - top, c0 - b0 : c1 - b0]


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
            with _reads().lock:
                block = _dataset(scene)[:, r_off : r_off + h : step, c_off : c_off + w : step]
                return _zarr_block(scene, block)
        strip = max(step, rows_per_read // step * step)
        parts = []
        for r0 in range(0, h, strip):
            block = _read_inside(scene, Window(r_off + r0, c_off, min(strip, h - r0), w), keep_band=False)
            # A copy, not a view: a view would keep every strip alive, the whole scene.
            parts.append(block[:, ::step, ::step].copy())
        return np.concatenate(parts, axis=1)
    except (RasterioError, OSError, ValueError) as exc:
        raise InputError(
            f"{scene.path}: reading the raster failed {_read_failure(scene.path, exc)}"
        ) from None
