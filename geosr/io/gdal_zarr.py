"""Zarr stores that GDAL wrote (``gdal_translate -of Zarr``, rasterio's ``driver="Zarr"``).

GDAL's Zarr driver writes a raster as one array on dimensions named ``Y``/``X`` (and
``Band``, first or last as the source was interleaved), beside ``Y``/``X`` arrays of pixel
centres, and keeps the CRS in its own ``_CRS`` attribute, or, for several bands, only in a
``pam.aux.xml`` beside the arrays (GDAL 3.10).  Its Zarr v3 form has no ``codecs`` and a
null ``fill_value``, which zarr-python refuses.  None of that is xarray's or rioxarray's
convention: read through xarray, such a store was refused as holding "no raster variable
of measurements with y/x or lat/lon dimensions", and a v3 one as "not a readable Zarr
store".  GDAL reads what it wrote, with its transform, nodata and band colours, as it reads the
GeoTIFF the store was made from: :func:`written_by_gdal` sends such a store there.  Only the
CRS of a store of several bands it does not read back (it looks for ``_CRS``, and the
sidecar holds the CRS of each band's "sliced view" of the array): :func:`sidecar_crs`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from rasterio.crs import CRS
from rasterio.errors import CRSError

GDAL_DIMENSIONS = frozenset({"Y", "X"})
"""The dimension names GDAL's Zarr driver gives a raster's rows and columns; xarray and
rioxarray write ``y``/``x``, which the Zarr reader takes."""


def written_by_gdal(path: str) -> bool:
    """Whether the local Zarr store at ``path`` holds a raster array on GDAL's ``Y``/``X``
    dimensions at its root, so that GDAL, not xarray, is to read it (:func:`gdal_arrays`)."""
    return bool(gdal_arrays(path))


def gdal_arrays(path: str) -> list[str]:
    """The names of the arrays on GDAL's ``Y``/``X`` dimensions at the root of the local Zarr
    store at ``path`` (the one raster of a store GDAL wrote, named as the file it was made of).

    Only the stores' metadata files are read (zarr-python cannot open GDAL's Zarr v3 form);
    a remote or zipped store, or one whose metadata cannot be read, has none: it is left to
    the Zarr reader.
    """
    root = Path(path)
    try:
        members = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    except OSError:
        return []
    return [member.name for member in members if set(_dimension_names(member)) >= GDAL_DIMENSIONS]


def _dimension_names(array: Path) -> list[Any]:
    """The dimension names of the Zarr array in the folder ``array`` (v3 ``dimension_names``,
    v2 ``_ARRAY_DIMENSIONS``), or none for a group, another folder or unreadable metadata."""
    for name, key in (("zarr.json", "dimension_names"), (".zattrs", "_ARRAY_DIMENSIONS")):
        try:
            meta = json.loads((array / name).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        dims = meta.get(key) if isinstance(meta, dict) else None
        if isinstance(meta, dict) and meta.get("node_type", "array") == "array" and isinstance(dims, list):
            return dims
    return []


PAM_NAME = "pam.aux.xml"
"""GDAL's sidecar of a Zarr store (its Persistent Auxiliary Metadata), in the store's folder."""


def sidecar_crs(src: Any) -> CRS | None:
    """The CRS that GDAL wrote into the sidecar of the Zarr store open as ``src``, for a
    store of several bands, whose CRS GDAL 3.10 does not read back, or None.

    The sidecar holds it once per band (``<Array name="Sliced view of /scene ([::,::,0])">``);
    the bands of one raster share it, and a sidecar of differing ones gives none.
    """
    if src.driver != "Zarr":
        return None
    try:
        root = ET.parse(Path(src.name) / PAM_NAME).getroot()
    except (OSError, ET.ParseError):
        return None  # no sidecar (a store of one band keeps _CRS), or a remote store
    texts = {(srs.text or "").strip() for srs in root.iter("SRS")}
    if len(texts) != 1:
        return None
    try:
        return CRS.from_wkt(texts.pop())
    except CRSError:
        return None
