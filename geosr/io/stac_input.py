"""A STAC Item as input: pick its raster asset(s), stack single-band assets by name.

``geosr run item.json`` (or ``https://host/item.json``) reads the Item with pystac and
resolves asset hrefs against the Item's location (local paths and anything GDAL opens remotely):

* ``--asset KEY`` reads that asset;
* ``--bands B04,B03,B02`` whose names are asset keys (or the assets' ``eo:bands``
  / ``bands`` names) stacks those single-band assets (or those bands of a
  multi-band asset), in that order, into a GDAL VRT (they must share one grid);
  the VRT's bands are described by those names, so the output keeps them;
* otherwise the one asset with the ``data`` role (or the only raster asset).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple
from urllib.parse import urlparse
from xml.sax.saxutils import escape

import numpy as np
import rasterio
from odc.geo import CRS
from rasterio.dtypes import dtype_rev, typename_fwd

from geosr.errors import InputError
from geosr.grid import crs_label
from geosr.io.atomic import ZARR_MARKERS
from geosr.io.bands import canonical_band_name, parse_bands
from geosr.io.names import open_raster
from geosr.io.remote import file_url_path, fsspec_url, is_remote
from geosr.io.scene import SUPPORTED_DTYPES, Scene, nodata_fields

RASTER_TYPES = (
    "image/tiff",
    "image/jp2",
    "application/x-hdf",
    "image/vnd.stac.geotiff",
    "application/vnd+zarr",
)
"""Media types of assets geosr reads; ``application/vnd+zarr`` is what ``--stac`` gives a Zarr output."""


def _json_document(path: str | Path) -> Any:
    """The JSON in a ``.json`` file, local or remote (``https://host/item.json``), or None."""
    if is_remote(path):
        return _remote_json(str(path))
    p = Path(str(path))
    if p.suffix.lower() != ".json" or not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _remote_json(url: str) -> Any:
    """The JSON at a remote ``.json`` URL, or at an ``https://`` URL without a suffix (a STAC
    API's Item, ``.../collections/C/items/ID``), fetched once per run (an Item is looked at
    several times), or None: GDAL then says what is wrong with the URL, as for any remote input.

    A fetch that failed (a timeout, an Item not uploaded yet) is not kept: it was, for the
    process, and every later call of a notebook took the Item for a raster.
    """
    try:
        return _fetched(url)
    except (OSError, ImportError):
        return None


@functools.lru_cache(maxsize=8)
def _fetched(url: str) -> Any:
    """:func:`_remote_json`, raising OSError where the fetch failed (lru_cache keeps no error).
    Forgotten as each run ends (:func:`forget_fetched`)."""
    parsed = urlparse(url)
    web = parsed.scheme.lower() in ("http", "https")
    api_item = web and not PurePosixPath(parsed.path).suffix  # a raster's URL names its format
    if not parsed.path.lower().endswith(".json") and not api_item:
        return None
    if web:
        import urllib.request

        accept = {"Accept": "application/geo+json, application/json;q=0.9, */*;q=0.1"}
        with urllib.request.urlopen(urllib.request.Request(url, headers=accept), timeout=30) as response:
            first = response.read(1)
            # Only a JSON answer is read whole (a suffixless raster's download stops here).
            json_answer = first == b"{" or "json" in response.headers.get("Content-Type", "")
            if api_item and not json_answer:
                return None
            text = first + response.read()
    else:
        import fsspec

        with fsspec.open(fsspec_url(url), "rb") as file:
            text = file.read()
    try:
        return json.loads(text)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None


def forget_fetched() -> None:
    """Forget the remote documents fetched: an Item published again since is read again by the
    next run (a notebook's next call), not taken as it was."""
    _fetched.cache_clear()


def is_stac_item(path: str | Path) -> bool:
    """True for a ``.json`` file (local or remote) holding a GeoJSON Feature with ``assets``."""
    doc = _json_document(path)
    return isinstance(doc, dict) and doc.get("type") == "Feature" and "assets" in doc


def not_an_item(path: str | Path) -> InputError | None:
    """The error for a local STAC document that is not one Item with assets (a search's
    ItemCollection, a Collection, a Catalog), which GDAL would call a corrupt raster; else None."""
    unreadable = _not_json(path)
    if unreadable is not None:
        return unreadable
    doc = _json_document(path)
    if doc is None or is_stac_item(path):
        return None
    kind = doc.get("type") if isinstance(doc, dict) else None
    if kind == "FeatureCollection" and isinstance(doc.get("features"), list):
        what = f"a collection of {len(doc['features'])} features (a STAC search result?), not one Item"
        fix = "save each Item as its own .json file and give those"
    elif kind in ("Collection", "Catalog") and "stac_version" in doc:
        what, fix = f"a STAC {kind}, not an Item", "give the .json of one of its Items"
    elif kind == "Feature" and "stac_version" in doc:
        what, fix = "a STAC Item without assets", "give an Item whose assets include the raster"
    elif Path(str(path)).name in ZARR_MARKERS:
        return None  # a Zarr store's metadata: GDAL's Zarr driver says what it makes of it
    else:
        what, fix = (
            "a JSON document but not a STAC Item (a GeoJSON Feature with assets)",
            ("give a STAC Item's .json, or the raster itself"),
        )
    return InputError(f"{path}: {what}; {fix}")


def _not_json(path: str | Path) -> InputError | None:
    """The error for a local ``.json`` file that is not JSON (a truncated download, a typo),
    which GDAL called a raster in a format it does not read; else None."""
    p = Path(str(path))
    if is_remote(path) or p.suffix.lower() != ".json" or p.name in ZARR_MARKERS or not p.is_file():
        return None
    try:
        json.loads(p.read_bytes())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return InputError(
            f"{path}: not valid JSON ({exc}); check that the file is complete, or fix its syntax"
        )
    except OSError:
        return None  # unreadable: the open says why, as for any input
    return None


def _item(path: str | Path) -> Any:
    import pystac

    try:
        if is_remote(path):  # relative asset hrefs resolve against the Item's URL
            return pystac.Item.from_dict(_json_document(path), href=str(path))
        # Read here, not by pystac.Item.from_file, which takes a path for a URL: the '#' of
        # 'a#1_x4.stac.json' began a fragment there ("no such file: .../a").
        local = Path(str(path)).absolute()
        return pystac.Item.from_dict(json.loads(local.read_bytes()), href=str(local), migrate=True)
    except Exception as exc:
        raise InputError(f"{path}: not a readable STAC Item ({exc})") from None


def _names(asset: Any, key: str = "name") -> list[str]:
    """The asset's band names (``eo:bands``, or STAC 1.1 ``bands``) or, by ``key``, their
    ``common_name`` (``red``, ``nir``; STAC 1.1 ``eo:common_name``), as far as they go."""
    bands = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    names = []
    for band in bands:
        fields = band if isinstance(band, dict) else {}
        value = fields.get(key, fields.get(f"eo:{key}"))
        if value is None:
            break
        names.append(str(value))
    return names


ASSET_BAND_FIELDS = ("nodata", "raster:scale", "raster:offset")
"""STAC 1.1 fields an asset may hold for all its bands (common metadata, raster extension v2)."""


def _declared_bands(asset: Any) -> list[dict[str, Any]]:
    """The asset's band objects, ``raster:bands`` or STAC 1.1 ``bands`` ({} for a non-object),
    each under the :data:`ASSET_BAND_FIELDS` the asset itself holds (one band object of them
    for an asset without bands): STAC 1.1 puts a single-band asset's nodata and scale there."""
    shared = {key: asset.extra_fields[key] for key in ASSET_BAND_FIELDS if key in asset.extra_fields}
    bands = asset.extra_fields.get("raster:bands") or asset.extra_fields.get("bands") or []
    if not bands and shared:
        return [shared]
    return [{**shared, **band} if isinstance(band, dict) else shared for band in bands]


def declared_nodata(asset: Any) -> tuple[float | None, ...]:
    """Each band's nodata value as the asset declares it (``raster:bands``, or STAC 1.1
    ``bands``; ``"nan"`` is NaN), None for a band that declares none; () without bands."""
    values: list[float | None] = []
    for band in _declared_bands(asset):
        value = band.get("nodata")
        try:
            values.append(None if value is None else float(value))
        except (TypeError, ValueError):
            values.append(None)
    return tuple(values)


def _scaling_field(band: dict[str, Any], key: str, default: float) -> Any:
    """A band object's ``scale`` or ``offset``: bare in ``raster:bands`` (raster extension v1),
    ``raster:scale``/``raster:offset`` in STAC 1.1 ``bands`` (v2)."""
    return band.get(key, band.get(f"raster:{key}", default))


def declared_scaling(asset: Any) -> tuple[tuple[float, float] | None, ...]:
    """Each band's ``(scale, offset)`` as the asset declares it (``value = pixel * scale +
    offset``; Sentinel-2 L2A Items: 0.0001 and -0.1), None for a band that declares neither
    or a value that is no finite number (or a scale of 0); () without bands."""
    values: list[tuple[float, float] | None] = []
    for band in _declared_bands(asset):
        try:
            pair = (float(_scaling_field(band, "scale", 1.0)), float(_scaling_field(band, "offset", 0.0)))
        except (TypeError, ValueError):
            pair = (1.0, 0.0)
        usable = all(math.isfinite(v) for v in pair) and pair[0] != 0
        values.append(pair if usable and pair != (1.0, 0.0) else None)
    return tuple(values)


def fitting(values: tuple[float | None, ...], dtype: str) -> tuple[float | None, ...]:
    """``values`` (:func:`declared_nodata`) with None for those ``dtype`` cannot hold (an
    Item's -9999 for a uint16 file): no pixel equals them, and the run refused them as "the
    file's nodata", a file that had none."""
    from geosr.errors import OptionError
    from geosr.io.sink import check_nodata

    def fits(value: float | None) -> bool:
        try:
            check_nodata(value, dtype)
        except OptionError:
            return False
        return True

    return tuple(v if fits(v) else None for v in values)


def with_declared_nodata(scene: Scene, declared: tuple[float | None, ...]) -> Scene:
    """``scene`` with the nodata its STAC asset declares (``declared``: :func:`declared_nodata`),
    for a file that declares none, whose fill was read as data; a value its type cannot hold
    is left out (:func:`fitting`).  ``geosr run`` and ``geosr compare`` both take it from here."""
    values = fitting(declared, scene.dtype)
    undeclared = scene.nodata is None and not scene.band_nodata
    if undeclared and len(values) == scene.count and any(v is not None for v in values):
        return dataclasses.replace(scene, **nodata_fields(values))
    return scene


def with_declared_scaling(scene: Scene, declared: tuple[tuple[float, float] | None, ...]) -> Scene:
    """``scene`` with the scale and offset its STAC asset declares (:func:`declared_scaling`),
    for a file that declares none: its output carries them, as it carries a file's own, so
    that a reader still turns its pixels into reflectance (they were lost before)."""
    unscaled = all(v == 1.0 for v in scene.scales) and all(v == 0.0 for v in scene.offsets)
    if unscaled and len(declared) == scene.count and any(d is not None for d in declared):
        pairs = [d or (1.0, 0.0) for d in declared]
        return dataclasses.replace(
            scene, scales=tuple(s for s, _ in pairs), offsets=tuple(o for _, o in pairs)
        )
    return scene


def _is_raster(asset: Any) -> bool:
    media = (asset.media_type or "").lower()
    return any(media.startswith(t) for t in RASTER_TYPES) or asset.href.lower().endswith(
        (".tif", ".tiff", ".jp2", ".vrt", ".zarr")
    )


class Resolved(NamedTuple):
    """The raster to open for an Item, the tags that carry its acquisition time to the
    output (:func:`date_tags`), whether the raster is a VRT that geosr made to stack
    assets (:func:`stack_assets`), and the nodata values and scaling the asset declares
    for its bands (:func:`declared_nodata`, :func:`declared_scaling`; a stack has them in
    the VRT), for a file that declares none."""

    href: str
    when: dict[str, str]
    stacked: bool = False
    nodata: tuple[float | None, ...] = ()
    scaling: tuple[tuple[float, float] | None, ...] = ()

    @classmethod
    def of_asset(cls, path: str | Path, asset: Any, when: dict[str, str]) -> Resolved:
        """The raster of one ``asset`` of the Item at ``path``, with what it declares of its bands."""
        return cls(_href(path, asset), when, nodata=declared_nodata(asset), scaling=declared_scaling(asset))


def date_tags(item: Any) -> dict[str, str]:
    """The Item's ``datetime`` (ISO) as ``STAC_DATETIME``, or, for an Item of a range (a
    null ``datetime``), its ``start_datetime`` and ``end_datetime`` as ``STAC_START_DATETIME``
    and ``STAC_END_DATETIME``; the output's ``--stac`` Item takes them (:mod:`geosr.stac`)."""
    if item.datetime is not None:
        return {"STAC_DATETIME": item.datetime.isoformat()}
    start, end = item.common_metadata.start_datetime, item.common_metadata.end_datetime
    if start is None or end is None:
        return {}
    return {"STAC_START_DATETIME": start.isoformat(), "STAC_END_DATETIME": end.isoformat()}


def resolve(path: str | Path, *, asset: str | None, bands: str | None) -> Resolved:
    """The raster to open for the Item at ``path`` (see :class:`Resolved`)."""
    item = _item(path)
    when = date_tags(item)
    keys = ", ".join(item.assets) or "none"
    if asset is not None:
        if asset not in item.assets:
            raise InputError(f"{path}: the Item has no asset {asset!r}; its assets are: {keys}")
        return Resolved.of_asset(path, item.assets[asset], when)
    if bands:
        wanted = [b for b in parse_bands(bands) if isinstance(b, str)]
        # A name: (the asset, the band its eo:bands name is, or None for the asset's key).
        by_name: dict[str, tuple[Any, int | None]] = {}
        for key, candidate in item.assets.items():
            if _is_raster(candidate):
                by_name.setdefault(canonical_band_name(key), (candidate, None))
                for band, name in enumerate(_names(candidate), start=1):
                    by_name.setdefault(canonical_band_name(name), (candidate, band))
        for candidate in item.assets.values():  # then common names: --bands red,green,blue
            if _is_raster(candidate):
                common = _names(candidate, "common_name")
                if len(common) == 1 and len(_names(candidate)) <= 1:
                    by_name.setdefault(canonical_band_name(common[0]), (candidate, None))
                elif len(common) > 1:
                    for band, name in enumerate(common, start=1):
                        by_name.setdefault(canonical_band_name(name), (candidate, band))
        if wanted and all(canonical_band_name(b) in by_name for b in wanted):
            # Stacked even when all are bands of one asset (or one single-band asset): the
            # names are the Item's, not the file's band descriptions, which --bands then
            # would not find ("no band is described as 'B03'").
            chosen = [(b, *by_name[canonical_band_name(b)]) for b in wanted]
            return Resolved(stack_assets(path, chosen), when, stacked=True)
    data = [a for a in item.assets.values() if "data" in (a.roles or []) and _is_raster(a)]
    rasters = data or [a for a in item.assets.values() if _is_raster(a)]
    missing = [b for b in wanted if canonical_band_name(b) not in by_name] if bands else []
    if len(rasters) != 1 and missing:  # not "choose ... with --bands", which was given
        raise InputError(
            f"{path}: --bands {bands}: no raster asset of the Item is named {', '.join(map(repr, missing))} "
            f"(by its key, or an eo:bands name or common name); its assets are: {keys}"
        )
    if len(rasters) != 1:
        raise InputError(
            f"{path}: the Item has {len(rasters)} raster assets ({keys}); "
            "choose one with --asset KEY, or stack single-band assets with --bands KEY1,KEY2,..."
        )
    return Resolved.of_asset(path, rasters[0], when)


def _href(item_path: str | Path, asset: Any) -> str:
    """The asset's raster as GDAL opens it: a ``file://`` URL, or a relative href, as its local
    path, decoded (``%20`` is a space), and a local archive's URL (``zip:///a%20b.zip!/B04.tif``) as
    its ``/vsi`` path, decoded.  rasterio took the URL but not its escapes, and a VRT's source
    neither (the stack's read failed as if the file were corrupt).

    Raises
    ------
    InputError
        The href is a file URL of another host (``file://server/...``), which was read as this
        machine's file of that path, or of a query or fragment (:func:`file_url_path`).
    """
    from urllib.request import url2pathname

    href = str(asset.get_absolute_href())
    parsed = urlparse(href)
    try:
        local = str(file_url_path(href))
    except InputError as exc:
        raise InputError(f"{item_path}: the asset href {exc}") from None
    if local != href:
        return local
    # A relative href is a URI reference too: '../B%2004.tif' names 'B 04.tif' (pystac joins
    # it to the Item's folder undecoded, "no such file"); a file named so literally wins.
    if not parsed.scheme and "%" in href and not Path(href).exists():
        return url2pathname(href)
    return href


def _grid_difference(grid: tuple[Any, ...], other: tuple[Any, ...]) -> str:
    """How ``grid`` (width, height, transform, CRS) differs from ``other``: a shifted or
    reprojected asset of the same size was said to be "36 x 30 px vs 36 x 30"."""
    (width, height, transform, crs), (width0, height0, transform0, crs0) = grid, other
    if crs != crs0:
        labels = (crs_label(CRS(c.to_wkt())) for c in (crs, crs0))
        return "CRS {} vs {}".format(*labels)
    a, _, c, _, e, f = transform[:6]
    a0, _, c0, _, e0, f0 = transform0[:6]
    if (a, e) != (a0, e0):
        return f"pixels of {abs(a):g} x {abs(e):g} vs {abs(a0):g} x {abs(e0):g}"
    if (c, f) != (c0, f0):
        return f"upper left corner ({c:.10g}, {f:.10g}) vs ({c0:.10g}, {f0:.10g})"
    return f"{width} x {height} px vs {width0} x {height0}"


class _StackedBand(NamedTuple):
    """One band of a stack of assets: what the VRT says of it, and the grid of its file."""

    name: str
    source: str
    """GDAL's own name of the asset's file (``/vsis3/...``, ``/vsizip/...``)."""
    number: int
    """The band's 1-based number in its file."""
    nodata: float | None
    scaling: tuple[float, float]
    """Its scale and offset."""
    dtype: str
    grid: tuple[Any, ...]
    """``(width, height, transform, crs)`` of its file."""
    crs_wkt: str
    colour: str | None
    """Its colour interpretation (``red``, ``green``, ``blue``), or None for none of them."""


PRIMARY_COLOURS = ("red", "green", "blue")
"""The colour interpretations a stacked band takes from its ``common_name``: a stack of
``red,green,blue`` was written as grey and undefined bands, which viewers (QGIS, a
``gdal_translate`` to PNG) do not draw in colour, where the Item says which band is which."""


def _colour(asset: Any, index: int, file_colour: str) -> str | None:
    """The colour of band ``index`` of ``asset``: its Item common name where that is red,
    green or blue, else its file's own colour interpretation where that is one of them (a
    visual asset's band)."""
    common = _names(asset, "common_name")
    named = common[index - 1].lower() if len(common) >= index else None
    for colour in (named, file_colour):
        if colour in PRIMARY_COLOURS:
            return colour
    return None


def stack_assets(item_path: str | Path, assets: list[tuple[str, Any, int | None]]) -> str:
    """A VRT stacking ``assets`` (name, asset, band) in order: the band of the asset that
    its ``eo:bands`` name is, or (None) a single-band asset by its key; one grid for all."""
    bands: list[_StackedBand] = []
    for name, asset, band in assets:
        first = (bands[0].grid, assets[0][0]) if bands else None
        bands.append(_stacked_band(item_path, name, asset, band, first))
    dtype = _stack_dtype(item_path, [name for name, _, _ in assets], [b.dtype for b in bands])
    return _written_vrt(item_path, _vrt_xml(bands, typename_fwd[dtype_rev[dtype]]))


def _stacked_band(
    item_path: str | Path, name: str, asset: Any, band: int | None, first: tuple[tuple[Any, ...], str] | None
) -> _StackedBand:
    """The band ``band`` of ``asset`` (band 1 of a single-band asset for None), checked for a stack.

    Parameters
    ----------
    item_path : str or Path
        The STAC Item, as the messages name it.
    name, asset, band
        The band's name in the stack, its asset and its 1-based number there (None: a
        single-band asset).
    first : tuple, optional
        The grid of the stack's first asset and that asset's name; None for the first.

    Raises
    ------
    InputError
        The asset cannot be read, has other bands than its ``eo:bands`` say or than a stack
        takes, has no CRS, or lies on another grid than the first.
    """
    href = _href(item_path, asset)
    try:
        with open_raster(href) as src:
            if band is None and src.count != 1:  # a stack takes band 1: the others would be lost unseen
                raise InputError(
                    f"{item_path}: asset {name!r} has {src.count} bands, and --bands stacks "
                    f"single-band assets; read it with --asset {name} (and --bands by its own bands)"
                )
            if band is not None and src.count != len(_names(asset)):  # which band is which?
                raise InputError(
                    f"{item_path}: the asset with band {name!r} names {len(_names(asset))} bands in its "
                    f"eo:bands, but its raster ({href}) has {src.count}; correct the Item, or read the "
                    "asset with --asset KEY and pick bands by 1-based index"
                )
            if src.crs is None:  # as open_scene says of a file; the stack raised AttributeError
                raise InputError(
                    f"{item_path}: asset {name!r} ({href}) has no CRS, so its output could not be "
                    "georeferenced; assign one first, e.g. gdal_edit.py -a_srs EPSG:32633 FILE"
                )
            here = (src.width, src.height, tuple(src.transform), src.crs)
            if first is not None and here != first[0]:
                raise InputError(
                    f"{item_path}: asset {name!r} is on another grid than {first[1]!r} "
                    f"({_grid_difference(here, first[0])}); stack assets of one grid (resolution, "
                    "CRS and extent), or run each grid separately"
                )
            # GDAL's own name of the file (/vsis3/..., /vsizip/...): a VRT's source takes no s3://
            # or zip:// URL, which rasterio maps for a file it opens ("No such file" in the read).
            source = src.files[0] if src.files else href
            crs_wkt = src.crs.to_wkt()
            file_scaling = tuple(zip(src.scales, src.offsets, strict=True))
            file_colours = [c.name for c in src.colorinterp]
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"{item_path}: asset {name!r} ({href}) cannot be read ({exc})") from None
    index = band or 1
    nodata = src.nodatavals[index - 1]  # each asset's own (Scene.band_nodata), else the Item's
    declared = fitting(declared_nodata(asset), src.dtypes[index - 1])
    if nodata is None and len(declared) == src.count:
        nodata = declared[index - 1]
    scaling = file_scaling[index - 1]  # the file's own, else the Item's
    if scaling == (1.0, 0.0) and len(scales := declared_scaling(asset)) == src.count:
        scaling = scales[index - 1] or scaling
    colour = _colour(asset, index, file_colours[index - 1])
    return _StackedBand(name, source, index, nodata, scaling, src.dtypes[index - 1], here, crs_wkt, colour)


def _stack_dtype(item_path: str | Path, names: list[str], dtypes: list[str]) -> str:
    """One type holding every asset's values: the first asset's cut the others' (a float
    reflectance band stacked after a uint16 one became 0, an int16 one's negatives 0).

    Raises
    ------
    InputError
        That type is not supported (64-bit integers, complex: a KeyError before).
    """
    dtype = np.result_type(*dtypes).name
    if dtype not in SUPPORTED_DTYPES:
        stacked = ", ".join(f"{n!r} {t}" for n, t in zip(names, dtypes, strict=True))
        raise InputError(
            f"{item_path}: the assets stacked ({stacked}) need {dtype}, which is not supported; "
            f"use assets of {', '.join(SUPPORTED_DTYPES)} (gdal_translate -ot)"
        )
    return str(dtype)


def _vrt_xml(bands: list[_StackedBand], gdal_type: str) -> str:
    """The VRT of ``bands`` (on the first one's grid), each of GDAL data type ``gdal_type``."""
    width, height, transform, _ = bands[0].grid
    srs = escape(bands[0].crs_wkt)
    geotransform = ", ".join(repr(v) for v in (transform[2], transform[0], transform[1],
                                                transform[5], transform[3], transform[4]))  # fmt: skip
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
             f"<SRS>{srs}</SRS>", f"<GeoTransform>{geotransform}</GeoTransform>"]  # fmt: skip
    for i, band in enumerate(bands, start=1):
        scale, offset = band.scaling
        band_xml = f"<Description>{escape(band.name)}</Description>"
        band_xml += f"<ColorInterp>{band.colour.title()}</ColorInterp>" if band.colour else ""
        band_xml += f"<NoDataValue>{band.nodata!r}</NoDataValue>" if band.nodata is not None else ""
        if (scale, offset) != (1.0, 0.0):
            band_xml += f"<Offset>{offset!r}</Offset><Scale>{scale!r}</Scale>"
        parts.append(
            f'<VRTRasterBand dataType="{gdal_type}" band="{i}">{band_xml}'
            f'<SimpleSource><SourceFilename relativeToVRT="0">{escape(band.source)}</SourceFilename>'
            f"<SourceBand>{band.number}</SourceBand></SimpleSource></VRTRasterBand>"
        )
    parts.append("</VRTDataset>")
    return "\n".join(parts)


_STACK_FOLDERS: ContextVar[list[Path] | None] = ContextVar("geosr_stack_folders", default=None)
"""The folders of the stacks written within the innermost :func:`stacks_removed`, or None outside one."""


@contextlib.contextmanager
def stacks_removed() -> Iterator[None]:
    """Remove the folders of the stacks (:func:`stack_assets`) written within, when it ends,
    also on an error: removed when the process exited, a notebook's or a service's every call
    of ``upscale_file`` on an Item kept one (two with its quicklook's).

    Only those of this context: a call in another thread keeps its own until its end.
    """
    folders: list[Path] = []
    token = _STACK_FOLDERS.set(folders)
    try:
        yield
    finally:
        _STACK_FOLDERS.reset(token)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _written_vrt(item_path: str | Path, xml: str) -> str:
    """``xml`` written as ``<Item stem>.vrt`` in a temporary folder, removed when the innermost
    :func:`stacks_removed` ends, or, outside one, when the process exits."""
    folder = Path(tempfile.mkdtemp(prefix="geosr-stac-"))
    scope = _STACK_FOLDERS.get()
    if scope is None:
        atexit.register(shutil.rmtree, folder, True)
    else:
        scope.append(folder)
    vrt = folder / f"{Path(item_path).stem}.vrt"
    vrt.write_text(xml, encoding="utf-8")
    return str(vrt)
