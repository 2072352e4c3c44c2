"""Area of interest: run on the part of a scene that a polygon or a bounding box covers.

``--aoi area.geojson`` or ``--bbox minx,miny,maxx,maxy [--bbox-crs EPSG:4326]``:

1. the geometry is read (GeoJSON with the standard library and shapely; any
   other vector format through pyogrio when it is installed) and reprojected
   into the scene's CRS (odc-geo, densified so that straight edges in one CRS
   stay covered in the other);
2. its bounding box is snapped *outward* to the input pixel grid and clipped to
   the scene: that window becomes the scene (:func:`geosr.io.scene.Scene`
   ``origin``), so only the tiles inside it are read and computed, and the
   output grid is that window times the scale (georeferencing stays exact:
   the window's transform is a whole-pixel translation of the input's);
3. with ``--aoi``, output pixels whose centre lies outside the polygon are
   written as nodata (rasterised per output block with rasterio, at the output
   resolution), and tiles wholly outside it are neither read nor computed;
   ``--bbox`` asks for the whole window that covers the box.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import shapely
import shapely.affinity
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from rasterio.features import geometry_mask

from geosr.errors import InputError, OptionError
from geosr.grid import crs_label, window_grid
from geosr.io.scene import Scene
from geosr.tiling import TilePlan, Window

GEOJSON_CRS = "EPSG:4326"
"""RFC 7946: GeoJSON coordinates are longitude/latitude on WGS 84."""


EDGE_TOLERANCE = 1e-3
"""How near (in pixels) a bound must be to a pixel edge to be taken as on it.

A fixed 1e-9 pixel was finer than a double resolves a UTM northing (5.9e6 m in steps of
9.3e-10 m, 3e-9 of a 0.3 m pixel), and the coordinates' rounding in doubles, which
replaced it, was not enough either: bounds are typed in decimals, and ``gdalinfo`` prints
lon/lat corners to 7 of them, 4e-5 of a one arc-second pixel (SRTM, Copernicus DEM); a box
on the edges of a neighbouring tile gained a row or column on about half of its sides.  A
thousandth of a pixel still tells a bound a millimetre off a 1 m pixel's edge from one on it."""


def read_vector(path: str | Path) -> Geometry:
    """The union of every geometry in the vector file at ``path``, with its CRS."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such AOI file; give a GeoJSON (or any vector file pyogrio reads)")
    if path.suffix.lower() in (".geojson", ".json"):
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
    try:
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
        return Geometry(shapely.Point(0, 0), name).crs
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
    merged = _areas([shapely.make_valid(shapely.force_2d(s)) for s in shapes])
    if merged.area == 0:
        raise InputError(f"{path}: the AOI has no area (points or lines); give a polygon")
    return Geometry(merged, crs)


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
        box_crs = Geometry(shapely.Point(0, 0), crs).crs
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
    return Geometry(shapely.box(minx, miny, maxx, maxy), crs)


def in_scene_crs(geometry: Geometry, grid: GeoBox) -> Geometry:
    """``geometry`` in ``grid``'s CRS, densified to about a pixel so its bounds stay covered.

    Where part of ``geometry`` lies outside the domain of ``grid``'s projection (a
    lon/lat box reaching far from a UTM zone maps to infinity), only its part over
    the grid's footprint is kept, which may be empty.  On a geographic grid, the
    geometry is taken a turn of longitude east or west where only that puts it on the
    grid (:func:`on_the_grids_turn`).
    """
    return on_the_grids_turn(_in_grid_crs(geometry, grid), grid)


def on_the_grids_turn(local: Geometry, grid: GeoBox) -> Geometry:
    """``local`` (in ``grid``'s CRS) on a geographic ``grid``'s turn of longitude: each part
    of it taken at the turn (-360, 0 or +360 degrees) that puts it within 180 degrees of the
    grid's centre (:func:`within_a_turn`).

    A scene across the antimeridian has longitudes past 180 (179.7 to 180.3) or
    before -180; an area given the usual way (-179.95 to -179.8, the same place as
    180.05 to 180.2) was said not to intersect it.  A box across the antimeridian over a
    grid that holds both sides of it (a global grid from -180 to 180) lost the side a turn
    away: 170 to -170 gave the columns from 170 to 180 alone.
    """
    if grid.crs is None or not grid.crs.geographic or local.is_empty:
        return local
    minx, _, maxx, _ = grid.extent.boundingbox
    return Geometry(within_a_turn(local.geom, (minx + maxx) / 2), local.crs)


def within_a_turn(geom: Any, centre: float) -> Any:
    """Lon/lat ``geom``'s area within 180 degrees of longitude ``centre``, each part taken
    at the turn of longitude that puts it there (an area may cover both ends of the span)."""
    _, south, _, north = geom.bounds
    span = shapely.box(centre - 180, south - 1, centre + 180, north + 1)
    pieces = [shapely.affinity.translate(geom, xoff=turn) & span for turn in (0.0, 360.0, -360.0)]
    # Parts that only touch the span are lines: they would stretch the window to its edge.
    return _areas(pieces)


def _areas(geoms: list[Any]) -> Any:
    """The union of the parts of ``geoms`` that have an area (no lines, no points)."""
    return shapely.union_all([p for geom in geoms for p in shapely.get_parts(geom) if p.area > 0])


def _in_grid_crs(geometry: Geometry, grid: GeoBox) -> Geometry:
    """:func:`in_scene_crs` but for the turn of longitude."""
    if geometry.crs == grid.crs:
        return geometry
    # Segments of ~1/200 of the AOI's extent: a straight edge in lon/lat bends in UTM.
    minx, miny, maxx, maxy = geometry.boundingbox
    step = max(maxx - minx, maxy - miny) / 200
    dense = Geometry(shapely.segmentize(geometry.geom, step), geometry.crs)
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    local = dense.to_crs(grid.crs)
    # Far from the zone, points may also project to finite but folded coordinates: a
    # whole-world lon/lat box became a self-intersecting ring beside a UTM scene, which
    # it was then said not to intersect.
    finite = all(math.isfinite(v) for v in local.boundingbox)
    if (finite and local.geom.is_valid) or geometry.crs is None:
        return local
    if finite and _holds_a_pole(grid):
        # Around a pole the scene's footprint in lon/lat is no polygon (a line at its lowest
        # latitude), so its intersection below was empty: a lon/lat cap (-180,85,180,90) over
        # a polar stereographic scene was said not to intersect it.  The cap's own outline
        # there is valid but for its edges on the 180th meridian, which meet along a slit.
        return Geometry(_areas([shapely.make_valid(local.geom)]), local.crs)
    over_grid = geometry & grid.extent.to_crs(geometry.crs)
    return over_grid.to_crs(grid.crs) if not over_grid.is_empty else over_grid


def _holds_a_pole(grid: GeoBox) -> bool:
    """Whether the North or the South Pole lies within ``grid``'s footprint."""
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    poles = Geometry(shapely.MultiPoint([(0, 90), (0, -90)]), GEOJSON_CRS).to_crs(grid.crs)
    return any(grid.extent.geom.contains(pole) for pole in shapely.get_parts(poles.geom))


def aoi_window(grid: GeoBox, geometry: Geometry, source: str) -> Window:
    """The pixel window of ``grid`` that covers ``geometry`` (snapped outward, clipped)."""
    _refuse_metres_as_degrees(geometry, grid, source)
    try:
        local = in_scene_crs(geometry, grid)
    except pyproj.exceptions.ProjError:
        # No transformation between the two: a local (site-grid) CRS, another planet's.
        raise InputError(
            f"{source}: the area of interest's CRS ({crs_label(geometry.crs)}) cannot be transformed "
            f"into the scene's CRS ({crs_label(grid.crs)}); give the area in the scene's own CRS "
            "(--bbox-crs, or the AOI file's crs)"
        ) from None
    if local.is_empty:
        raise _no_overlap(grid, geometry, source)
    h, w = grid.shape.yx
    inverse = ~grid.transform
    minx, miny, maxx, maxy = local.boundingbox
    corners = [inverse @ (x, y) for x in (minx, maxx) for y in (miny, maxy)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    # A bound that lies on a pixel edge must not pull in the next pixel.
    eps = EDGE_TOLERANCE
    c0, c1 = math.floor(min(cols) + eps), math.ceil(max(cols) - eps)
    r0, r1 = math.floor(min(rows) + eps), math.ceil(max(rows) - eps)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, w), min(r1, h)
    if c0 >= c1 or r0 >= r1 or not local.geom.intersects(grid.extent.geom):
        raise _no_overlap(grid, geometry, source)
    return Window(r0, c0, r1 - r0, c1 - c0)


def _refuse_metres_as_degrees(geometry: Geometry, grid: GeoBox, source: str) -> None:
    """Refuse a lon/lat area whose coordinates are no degrees: a box in the scene's metres
    without ``--bbox-crs``, a GeoJSON in UTM without a ``crs`` member.

    It was said not to intersect the scene and to check ``--bbox-crs``, which an ``--aoi``
    file cannot take.
    """
    if geometry.crs is None or not geometry.crs.geographic or in_degrees(geometry.boundingbox):
        return
    bounds = tuple(round(v, 6) for v in geometry.boundingbox)
    raise InputError(
        f"{source}: the area of interest's bounds {bounds} are not degrees, which its CRS "
        f"({crs_label(geometry.crs)}) takes; if they are in the scene's CRS, give --bbox-crs "
        f"{crs_label(grid.crs)} with --bbox, or name the CRS in the GeoJSON's crs member "
        "(RFC 7946 GeoJSON is lon/lat)"
    )


def in_degrees(bounds: Sequence[float]) -> bool:
    """Whether ``bounds`` can be degrees of longitude and latitude: only those that no
    degrees reach are not (metres), so longitudes up to 540 pass (a grid may run from 0 to
    360, a box cross the antimeridian), and latitudes up to 180 (a box drawn past a pole
    still covers the scene below it)."""
    minx, miny, maxx, maxy = bounds
    return max(abs(miny), abs(maxy)) <= 180 and max(abs(minx), abs(maxx)) <= 540


def _no_overlap(grid: GeoBox, geometry: Geometry, source: str) -> InputError:
    crs = geometry.crs
    name = crs_label(crs)
    scene_bounds = _scene_bounds(grid, crs)
    hint = "check the AOI and its CRS (--bbox-crs for a --bbox, the crs member of an --aoi GeoJSON)"
    if _meets_the_scene_swapped(grid, geometry):
        hint = (
            "read as latitude, longitude, it meets the scene: give the longitude first (x, y), "
            "as --bbox and GeoJSON take them"
        )
    return InputError(
        f"{source}: the area of interest does not intersect the scene "
        f"(AOI bounds {tuple(round(v, 6) for v in geometry.boundingbox)}, "
        f"scene bounds {tuple(round(v, 6) for v in scene_bounds)}, both in {name}); {hint}"
    )


def _meets_the_scene_swapped(grid: GeoBox, geometry: Geometry) -> bool:
    """Whether lon/lat ``geometry`` would meet the scene with its axes swapped: a box copied as
    latitude, longitude (as map sites give a place, 52.80, 12.70) was said not to meet it, and
    to check its CRS, which is right."""
    if geometry.crs is None or not geometry.crs.geographic:
        return False
    swapped = Geometry(shapely.transform(geometry.geom, lambda xy: xy[:, ::-1]), geometry.crs)
    try:
        local = in_scene_crs(swapped, grid)
    except (pyproj.exceptions.ProjError, shapely.errors.ShapelyError, ValueError):
        return False  # a hint, on the way to the error: no hint rather than another error
    return not local.is_empty and bool(local.geom.intersects(grid.extent.geom))


def _scene_bounds(grid: GeoBox, crs: Any) -> Sequence[float]:
    """``grid``'s bounds in ``crs``; in lon/lat, west past east across the antimeridian, as
    STAC writes them.  A UTM scene from 179.9 to -179.82 was given as (-179.82, ..., 179.9, ...),
    the globe the other way round, beside an AOI at -170 that then seemed to fall within it."""
    if crs is None:
        return grid.extent.boundingbox
    if crs == GEOJSON_CRS and grid.crs is not None and not grid.crs.geographic:
        from geosr.stac import wgs84_footprint  # pystac: loaded on this error path alone

        _, bbox = wgs84_footprint(grid)
        if bbox is not None:
            return bbox
    return grid.extent.to_crs(crs).boundingbox


def file_grid(scene: Scene) -> GeoBox:
    """The grid of the whole file behind ``scene`` (a scene may be a window of it)."""
    r_off, c_off = scene.origin
    h, w = scene.file_shape or scene.grid.shape.yx
    return window_grid(scene.grid, -r_off, -c_off, h, w)


def whole_file(scene: Scene) -> Scene:
    """``scene`` before :func:`crop_scene`: its whole file (the same scene when not cropped)."""
    if scene.file_shape is None:
        return scene
    return dataclasses.replace(scene, grid=file_grid(scene), origin=(0, 0), file_shape=None)


def crop_scene(scene: Scene, window: Window) -> Scene:
    """``scene`` restricted to ``window`` (of the scene), reading the file's pixels around it."""
    r_off, c_off = scene.origin
    return dataclasses.replace(
        scene,
        grid=scene.grid[window.rows, window.cols],
        origin=(r_off + window.row, c_off + window.col),
        file_shape=scene.file_shape or (int(scene.grid.shape.y), int(scene.grid.shape.x)),
    )


_RASTERIZE = threading.Lock()
"""One rasterisation at a time: rasterio's, run in several threads at once (a --workers
run's tiles), now and then warns "Dataset has no geotransform" (about 1 call in 3000
here), which the CLI printed to the user.  A mask takes 5 ms for 2048^2 output pixels."""


@dataclass(frozen=True)
class AoiMask:
    """Which output pixels fall outside the AOI polygon (picklable: shipped to Dask workers).

    Attributes
    ----------
    geometry : dict
        The polygon as GeoJSON, in the output grid's CRS.
    grid : GeoBox
        The output grid.
    nodata : float
        Written outside the polygon.
    """

    geometry: dict[str, Any]
    grid: GeoBox
    nodata: float

    @functools.cached_property
    def shape(self) -> Any:
        """The polygon as a shapely geometry (built once)."""
        return shapely.geometry.shape(self.geometry)

    def touches(self, window: Window) -> bool:
        """True when output ``window`` has any part inside the polygon (else it is all nodata)."""
        box = self.grid[window.rows, window.cols].extent.geom
        # Sharing only an edge or a corner is not overlapping: no pixel centre can be inside.
        return bool(self.shape.intersects(box) and not self.shape.touches(box))

    def keep(self, plan: TilePlan, scale: int) -> TilePlan:
        """``plan`` without the tiles that lie wholly outside the polygon: they are never read.

        Their output pixels stay unwritten, which every sink reads back as nodata.
        """
        return dataclasses.replace(plan, tiles=tuple(t for t in plan if self.touches(t.core.scaled(scale))))

    def outside(self, window: Window) -> np.ndarray:
        """Boolean ``(h, w)``: True where the output pixel's centre is outside the polygon."""
        sub = self.grid[window.rows, window.cols]
        with _RASTERIZE:
            return geometry_mask([self.geometry], out_shape=sub.shape.yx, transform=sub.transform)

    def apply(self, block: np.ndarray, window: Window) -> np.ndarray:
        """``block`` ``(C, h, w)`` of output ``window`` with nodata outside the polygon."""
        outside = self.outside(window)
        if outside.any():
            block = block.copy()
            block[:, outside] = self.nodata
        return block


def aoi_mask(geometry: Geometry, output_grid: GeoBox, nodata: float) -> AoiMask | None:
    """The mask for ``geometry`` on ``output_grid``, or None when it covers the whole grid."""
    local = in_scene_crs(geometry, output_grid)
    if local.geom.covers(output_grid.extent.geom):
        return None
    return AoiMask(shapely.geometry.mapping(local.geom), output_grid, float(nodata))
