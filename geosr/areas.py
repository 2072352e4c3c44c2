"""The area of interest as given: ``--aoi FILE`` (a GeoJSON, read with the standard library
and shapely; any other vector format through pyogrio when it is installed) or ``--bbox
minx,miny,maxx,maxy [--bbox-crs EPSG:4326]``, as one odc-geo geometry with its CRS, polygons
only.  :mod:`geosr.aoi` places it on a scene's grid.
"""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from odc.geo.crs import SomeCRS, norm_crs_or_error
from odc.geo.geom import Geometry

from geosr.errors import InputError, OptionError, catch_warnings_serialised
from geosr.grid import parse_crs

GEOJSON_CRS = "EPSG:4326"
"""RFC 7946: GeoJSON coordinates are longitude/latitude on WGS 84."""


def is_geojson(path: str | Path) -> bool:
    """Whether the ``--aoi`` file at ``path`` is read as GeoJSON (by its suffix), else through
    pyogrio: what a line about the file's CRS or coordinates may name (a crs member, RFC 7946)."""
    return Path(path).suffix.lower() in (".geojson", ".json")


def read_vector(path: str | Path) -> Geometry:
    """The union of every geometry in the vector file at ``path``, with its CRS.

    Read once per version of the file: a run asks for it twice (the window to read, then the
    mask on the output grid), and a batch once more per input; a 5000-field AOI took 1.7 s
    each time.  The file's identity (device, inode), modification time and size are in the
    key, so an edited or replaced AOI is read again.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such AOI file; give a GeoJSON (or any vector file pyogrio reads)")
    stamp = path.stat()
    return _read_vector(path, (stamp.st_dev, stamp.st_ino, stamp.st_mtime_ns, stamp.st_size))


@functools.lru_cache(maxsize=4)
def _read_vector(path: Path, _version: tuple[int, ...]) -> Geometry:
    if is_geojson(path):
        return _read_geojson(path)
    _refuse_non_vector(path)
    try:
        import pyogrio
    except ImportError:
        if path.is_dir():  # it said "reading  vector files needs pyogrio", of no suffix
            raise InputError(
                f"{path}: a folder, not a vector file; give a GeoJSON (a folder of shapefiles needs "
                "pyogrio: pip install pyogrio)"
            ) from None
        kind = f"{path.suffix} vector files" if path.suffix else "vector files other than GeoJSON"
        raise InputError(
            f"{path}: reading {kind} needs pyogrio (pip install pyogrio); "
            "or convert the AOI to GeoJSON (ogr2ogr -f GeoJSON area.geojson FILE)"
        ) from None
    try:
        meta, _, geometries, _ = pyogrio.raw.read(path)
    except Exception as exc:
        raise InputError(f"{path}: not a readable vector file ({exc})") from None
    shapes = [shapely.from_wkb(g) for g in geometries if g is not None]
    area = _union(path, shapes, meta.get("crs") or GEOJSON_CRS)
    if not meta.get("crs") and not in_degrees(area.boundingbox):
        # A shapefile without its .prj in UTM was taken for lon/lat, then said not to meet the
        # scene and to check --bbox-crs, which an --aoi file cannot take.
        bounds = tuple(round(v, 6) for v in area.boundingbox)
        raise InputError(
            f"{path}: the file names no CRS (a shapefile without its .prj) and its bounds {bounds} "
            f"are not lon/lat, which it would be taken for; give it its CRS, e.g. "
            f"ogr2ogr -a_srs EPSG:32633 area.gpkg {path.name}"
        )
    return area


_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".png", ".zarr")  # not .vrt: OGR has VRTs too


def _refuse_non_vector(path: Path) -> None:
    """A raster given as the AOI: without pyogrio it was said to need it ("reading .tif
    vector files needs pyogrio"), with it to be unreadable."""
    if path.suffix.lower() in _RASTER_SUFFIXES:
        raise InputError(
            f"{path}: --aoi takes a vector file of polygons (GeoJSON), not a raster; to use a mask "
            f"raster, polygonise it first (gdal_polygonize.py {path.name} aoi.geojson)"
        )


GEOJSON_TYPES = frozenset(
    {"FeatureCollection", "Feature", "GeometryCollection", "Point", "MultiPoint", "LineString"}
    | {"MultiLineString", "Polygon", "MultiPolygon"}
)
"""The values of a GeoJSON object's ``type`` (RFC 7946, 1.4)."""


def _read_geojson(path: Path) -> Geometry:
    try:
        # RFC 7946 GeoJSON is UTF-8, whatever the locale; Windows tools may lead with a BOM,
        # which GDAL skips and json refused ("Unexpected UTF-8 BOM").
        doc = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not valid GeoJSON ({exc}); check the file") from None
    if not isinstance(doc, dict):
        raise InputError(f"{path}: not a GeoJSON object")
    kind = doc.get("type")
    if kind not in GEOJSON_TYPES:
        # An Esri JSON (no "type") or a TopoJSON ("Topology") was "a geometry cannot be read
        # ('NoneType' object has no attribute 'lower')".
        raise InputError(
            f"{path}: not GeoJSON (its type is {kind!r}; Esri JSON and TopoJSON are other formats); "
            f"convert it: ogr2ogr -f GeoJSON area.geojson {path.name}"
        )
    if kind == "FeatureCollection":
        features = doc.get("features", [])
        if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
            raise InputError(
                f"{path}: its 'features' must be a list of GeoJSON Feature objects; check the file"
            )
        raw = [f.get("geometry") for f in features]
    elif kind == "Feature":
        raw = [doc.get("geometry")]
    else:
        raw = [doc]
    untyped = [g.get("type") for g in raw if g and isinstance(g, dict) and g.get("type") not in GEOJSON_TYPES]
    if untyped:
        raise InputError(f"{path}: a geometry's type is {untyped[0]!r}, not a GeoJSON one; check the file")
    try:
        with catch_warnings_serialised():
            # shapely's "invalid value encountered in linearrings", of a NaN coordinate, came
            # out as a warning line before the one line that _union gives of it.
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            shapes = [shapely.geometry.shape(g) for g in raw if g]
    except (shapely.errors.ShapelyError, AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        # AttributeError: a geometry that is no object ("geometry": "POLYGON"); GEOSException:
        # a ring that does not close (a NaN coordinate).
        raise InputError(f"{path}: a geometry cannot be read ({exc})") from None
    return _union(path, shapes, _named_crs(path, doc))


def _named_crs(path: Path, doc: dict[str, Any]) -> Any:
    """The CRS a pre-RFC 7946 file names in its ``crs`` member (honoured rather than guessed),
    else lon/lat; a name that is no CRS (EPSG:99999) ended in pyproj's CRSError traceback."""
    member = doc.get("crs")
    properties = member.get("properties") if isinstance(member, dict) else None
    name = properties.get("name") if isinstance(properties, dict) else member
    if not name or isinstance(name, dict):  # none, or a "link" CRS (a file beside it)
        return GEOJSON_CRS
    try:
        return parse_crs(name)
    except Exception as exc:
        raise InputError(
            f"{path}: its crs member names {name!r}, which is not a CRS ({exc}); correct it "
            "(e.g. EPSG:32633), or remove it if the coordinates are lon/lat (RFC 7946)"
        ) from None


def _union(path: Path, shapes: list[Any], crs: Any) -> Geometry:
    shapes = [s for s in shapes if not s.is_empty]
    if not shapes:
        raise InputError(f"{path}: the file holds no geometry")
    if not np.isfinite(shapely.get_coordinates(shapes)).all():
        # NaN made "no area", an infinity a GEOSException traceback in make_valid.
        raise InputError(f"{path}: a coordinate is NaN or infinite; every coordinate must be a finite number")
    # Heights (GPS tracks, KML turned into GeoJSON) are dropped: odc-geo reprojects x and y
    # alone, and a polygon with z ended in a traceback ("takes 2 positional arguments").
    # Points and lines beside the polygons (a marker dropped in geojson.io, a label point)
    # are left out: they stretched the window to reach them and burnt their pixels into the mask.
    merged = areas([shapely.make_valid(shapely.force_2d(s)) for s in shapes])
    if merged.area == 0:
        raise InputError(f"{path}: the AOI has no area (points or lines); give a polygon")
    area = Geometry(merged, crs)
    if area.crs is not None and area.crs.geographic and in_degrees(area.boundingbox):  # else refused later
        _refuse_an_edge_round_the_world(path, shapes)
    return area


def _refuse_an_edge_round_the_world(path: Path, shapes: list[Any]) -> None:
    """Refuse a lon/lat polygon with an edge over 180 degrees of longitude: one drawn across the
    antimeridian (179.95 to -179.95), which GeoJSON reads the long way round (RFC 7946 asks for it
    to be split there), gave a full-width output of a scene there, most of it valid.  An edge of
    a whole turn is a whole-world box's side (-180 to 180, or 0 to 360).

    A shapefile or GeoPackage (read by pyogrio) is told so in its own terms: it was told of
    GeoJSON and RFC 7946, neither of which it is held to."""
    parts = shapely.get_parts(shapes)
    for ring in shapely.get_rings(parts[shapely.get_type_id(parts) == 3]):
        x = shapely.get_coordinates(ring)[:, 0]
        west, east = x[:-1], x[1:]
        span = np.abs(east - west)
        long_way = (span > 180) & (span != 360)
        if long_way.any():
            i = int(np.flatnonzero(long_way)[0])
            if is_geojson(path):
                edge = f"which GeoJSON reads as {span[i]:g} degrees the long way round"
                split = "(RFC 7946, 3.1.9)"
            else:
                edge = f"{span[i]:g} degrees the long way round as the file's coordinates read"
                split = f"(ogr2ogr -wrapdateline -t_srs EPSG:4326 split.gpkg {path.name})"
            raise InputError(
                f"{path}: a polygon edge runs from longitude {west[i]:g} to {east[i]:g}, {edge}; if the "
                f"area crosses the antimeridian, split it there into a polygon on each side {split}, and "
                "if it is that wide, add vertices so that no edge spans over 180 degrees"
            )


def parse_bbox(text: str, crs: str = GEOJSON_CRS) -> Geometry:
    """``"minx,miny,maxx,maxy"`` in ``crs`` as a rectangle geometry."""
    try:
        minx, miny, maxx, maxy = (float(v) for v in text.split(","))
    except ValueError:
        raise OptionError(
            f"--bbox {text!r} is not four numbers; give minx,miny,maxx,maxy, e.g. 13.38,52.50,13.42,52.53"
        ) from None
    if not all(math.isfinite(v) for v in (minx, miny, maxx, maxy)):
        # inf ended in a traceback (NaN to integer) and nan read as "need minx < maxx".
        raise OptionError(
            f"--bbox {text!r}: every bound must be a finite number; give minx,miny,maxx,maxy, "
            "e.g. 13.38,52.50,13.42,52.53"
        )
    try:
        box_crs = parse_crs(crs)
    except Exception as exc:
        raise OptionError(f"--bbox-crs {crs!r} is not a CRS ({exc}); give e.g. EPSG:4326") from None
    geographic = box_crs is not None and box_crs.geographic
    if geographic and minx > maxx and -180 <= maxx < minx <= 180 and miny < maxy:
        # West past east: a box across the antimeridian, as GeoJSON (RFC 7946) and STAC
        # write one (170,-20,-170,-10); it was refused as "need minx < maxx".
        maxx += 360
    if not (minx < maxx and miny < maxy):
        across = ", or, in degrees, a west bound past the east one across the antimeridian"
        raise OptionError(f"--bbox {text!r}: need minx < maxx and miny < maxy{across if geographic else ''}")
    return Geometry(shapely.box(minx, miny, maxx, maxy), box_crs)


def projected(geometry: Geometry, crs: SomeCRS) -> Geometry:
    """``geometry.to_crs(crs)``, point by point, through ``shapely.transform``.

    odc-geo's ``to_crs`` goes through ``shapely.ops.transform``, which shapely 2.1 deprecates: a
    run with an AOI told a user who shows warnings (``python -W default``, pytest, the CLI's
    "warning:" lines under them) "The 'shapely.ops.transform()' function is deprecated", of
    code that was neither theirs nor geosr's to change.  The same transformer
    (``transformer_to_crs``: lon/lat order, unprojectable points NaN), so the same coordinates.
    """
    crs = norm_crs_or_error(crs, geometry)
    if geometry.crs == crs:
        return geometry
    if geometry.crs is None:
        raise ValueError("Cannot project geometries without CRS")  # odc-geo's own line
    to_crs = geometry.crs.transformer_to_crs(crs)

    def moved(xy: np.ndarray) -> np.ndarray:
        return np.column_stack(to_crs(xy[:, 0], xy[:, 1]))

    return Geometry(shapely.transform(geometry.geom, moved), crs)


def areas(geoms: list[Any]) -> Any:
    """The union of the parts of ``geoms`` that have an area (no lines, no points)."""
    return shapely.union_all([p for geom in geoms for p in shapely.get_parts(geom) if p.area > 0])


def in_degrees(bounds: Sequence[float]) -> bool:
    """Whether ``bounds`` can be degrees of longitude and latitude: only those that no
    degrees reach are not (metres), so longitudes up to 540 pass (a grid may run from 0 to
    360, a box cross the antimeridian), and latitudes up to 180 (a box drawn past a pole
    still covers the scene below it)."""
    minx, miny, maxx, maxy = bounds
    return max(abs(miny), abs(maxy)) <= 180 and max(abs(minx), abs(maxx)) <= 540
