"""Area of interest: run on the part of a scene that a polygon or a bounding box covers.

``--aoi area.geojson`` or ``--bbox minx,miny,maxx,maxy [--bbox-crs EPSG:4326]``:

1. the geometry is read (:mod:`geosr.areas`) and reprojected into the scene's
   CRS (odc-geo, densified so that straight edges in one CRS stay covered in
   the other);
2. its bounding box is snapped *outward* to the input pixel grid and clipped to
   the scene (with a warning): that window becomes the scene (:func:`geosr.io.scene.Scene`
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

from geosr.areas import GEOJSON_CRS, areas, in_degrees, is_geojson, projected
from geosr.errors import InputError, warn
from geosr.grid import cropped, crs_code, crs_label, describe, window_grid
from geosr.io.names import shell_quoted
from geosr.io.scene import Scene
from geosr.tiling import TilePlan, Window

EDGE_TOLERANCE = 1e-3
"""How near (in pixels) a bound must be to a pixel edge to be taken as on it.

A fixed 1e-9 pixel was finer than a double resolves a UTM northing (5.9e6 m in steps of
9.3e-10 m, 3e-9 of a 0.3 m pixel), and the coordinates' rounding in doubles, which
replaced it, was not enough either: bounds are typed in decimals, and ``gdalinfo`` prints
lon/lat corners to 7 of them, 4e-5 of a one arc-second pixel (SRTM, Copernicus DEM); a box
on the edges of a neighbouring tile gained a row or column on about half of its sides.  A
thousandth of a pixel still tells a bound a millimetre off a 1 m pixel's edge from one on it."""


def in_scene_crs(geometry: Geometry, grid: GeoBox) -> Geometry:
    """``geometry`` in ``grid``'s CRS, densified to about a pixel so its bounds stay covered.

    Where part of ``geometry`` lies outside the domain of ``grid``'s projection (a
    lon/lat box reaching far from a UTM zone maps to infinity), only its part over
    the grid's footprint is kept, which may be empty.  On a geographic grid, each part
    of the geometry is taken at the turn of longitude that puts it within 180 degrees of
    the grid's centre (:func:`on_the_grids_turn`).
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


def footprints_overlap(grid: GeoBox, other: GeoBox) -> bool:
    """Whether ``grid``'s footprint meets ``other``'s, in ``other``'s CRS and on its turn of
    longitude (:func:`on_the_grids_turn`): a UTM raster east of the antimeridian (-179.9) was
    said not to overlap the same place on a lon/lat grid past 180 (180.1)."""
    assert other.crs is not None  # rasters without a CRS are refused when opened
    return bool(
        on_the_grids_turn(projected(grid.extent, other.crs), other).geom.intersects(other.extent.geom)
    )


def within_a_turn(geom: Any, centre: float) -> Any:
    """Lon/lat ``geom``'s area within 180 degrees of longitude ``centre``, each part taken
    at the turn of longitude that puts it there (an area may cover both ends of the span)."""
    _, south, _, north = geom.bounds
    span = shapely.box(centre - 180, south - 1, centre + 180, north + 1)
    pieces = [shapely.affinity.translate(geom, xoff=turn) & span for turn in (0.0, 360.0, -360.0)]
    # Parts that only touch the span are lines: they would stretch the window to its edge.
    return areas(pieces)


def _in_grid_crs(geometry: Geometry, grid: GeoBox) -> Geometry:
    """:func:`in_scene_crs` but for the turn of longitude."""
    if geometry.crs == grid.crs:
        return geometry
    # Segments of ~1/200 of the AOI's extent: a straight edge in lon/lat bends in UTM.
    minx, miny, maxx, maxy = geometry.boundingbox
    step = max(maxx - minx, maxy - miny) / 200
    dense = Geometry(shapely.segmentize(geometry.geom, step), geometry.crs)
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    local = projected(dense, grid.crs)
    # Far from the zone, points may also project to finite but folded coordinates: a
    # whole-world lon/lat box became a self-intersecting ring beside a UTM scene, which
    # it was then said not to intersect.
    finite = all(math.isfinite(v) for v in local.boundingbox)
    if (finite and local.geom.is_valid) or geometry.crs is None:
        return local
    if finite and poles_within(grid):
        # Around a pole the scene's footprint in lon/lat is no polygon (a line at its lowest
        # latitude), so its intersection below was empty: a lon/lat cap (-180,85,180,90) over
        # a polar stereographic scene was said not to intersect it.  The cap's own outline
        # there is valid but for its edges on the 180th meridian, which meet along a slit.
        return Geometry(areas([shapely.make_valid(local.geom)]), local.crs)
    over_grid = geometry & projected(grid.extent, geometry.crs)
    return projected(over_grid, grid.crs) if not over_grid.is_empty else over_grid


def poles_within(grid: GeoBox) -> list[float]:
    """The latitudes of the poles (90, -90) that lie within ``grid``'s footprint."""
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    poles = projected(Geometry(shapely.MultiPoint([(0, 90), (0, -90)]), GEOJSON_CRS), grid.crs)
    return [
        lat
        for lat, pole in zip((90.0, -90.0), shapely.get_parts(poles.geom), strict=True)
        if grid.extent.geom.contains(pole)
    ]


def pixel_box(grid: GeoBox, target: GeoBox) -> tuple[float, float, float, float]:
    """``target``'s footprint in (fractional) pixels of ``grid``: col0, row0, col1, row1."""
    footprint = target.extent.geom
    if grid.crs is not None and target.crs is not None and grid.crs != target.crs:
        # The corners must be in the grid's CRS before its inverse transform applies, and on a
        # lon/lat grid's turn of longitude: a reference on longitudes past 180 (180.1) under a
        # UTM output across the antimeridian was said not to overlap it (-179.9).
        # Its edges densified: a lon/lat window from -180 to 180 at 89.5° N is a disc in polar
        # stereographic, which its four corners (two points on its rim, and the pole) do not span.
        left, bottom, right, top = target.extent.boundingbox
        dense = shapely.segmentize(target.extent.geom, max(right - left, top - bottom) / 64)
        moved = projected(Geometry(dense, target.crs), grid.crs)
        pole = poles_within(target) if grid.crs.geographic else []
        if pole:
            # Around a pole a footprint is no polygon in lon/lat (its corners a ring at one
            # latitude), so a lon/lat reference was said not to overlap a polar stereographic
            # output: it spans every longitude of the grid's turn, from its lowest latitude to the pole.
            minx, _, maxx, _ = grid.extent.boundingbox
            centre = (minx + maxx) / 2
            lats = shapely.get_coordinates(moved.geom)[:, 1]
            farthest = float(lats.min() if pole[0] > 0 else lats.max())
            footprint = shapely.MultiPoint([(centre - 180, farthest), (centre + 180, pole[0])])
        else:
            footprint = on_the_grids_turn(moved, grid).geom
    # The footprint's own corners, not its bounding box's: on a grid turned 30°, the box of a
    # window spans 1.87 times its side in the grid's pixels, and --window 0,0,10,10 of an x2
    # run showed 29 x 29 output px, not 20 x 20.
    x, y = shapely.get_coordinates(footprint).T
    if not x.size:  # nothing of it on the grid's turn
        return (np.nan,) * 4
    inverse = ~grid.transform
    cols = inverse.a * x + inverse.b * y + inverse.c
    rows = inverse.d * x + inverse.e * y + inverse.f
    return float(cols.min()), float(rows.min()), float(cols.max()), float(rows.max())


def aoi_window(grid: GeoBox, geometry: Geometry, source: str, aoi: str | Path | None = None) -> Window:
    """The pixel window of ``grid`` that covers ``geometry`` (snapped outward, clipped).

    ``aoi`` is the ``--aoi`` file ``geometry`` was read from, None for a ``--bbox``: a line
    about its CRS names the fix in the terms of what was given.
    """
    _refuse_metres_as_degrees(geometry, grid, source, aoi)
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
        raise _no_overlap(grid, geometry, source, aoi)
    h, w = grid.shape.yx
    inverse = ~grid.transform
    minx, miny, maxx, maxy = local.boundingbox
    corners = [inverse @ (x, y) for x in (minx, maxx) for y in (miny, maxy)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    c0, c1 = _snapped(min(cols), max(cols))
    r0, r1 = _snapped(min(rows), max(rows))
    past = c0 < 0 or r0 < 0 or c1 > w or r1 > h
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, w), min(r1, h)
    if c0 >= c1 or r0 >= r1 or not local.geom.intersects(grid.extent.geom):
        raise _no_overlap(grid, geometry, source, aoi)
    if past:
        # Clipped without a word, the output covered less than the area asked for, as if the
        # scene had data there; gdal_translate -projwin says so too.
        warn(
            f"{source}: the area of interest reaches past the scene's edge; the output covers only "
            f"its part inside the scene (cols {c0}-{c1 - 1}, rows {r0}-{r1 - 1} of the {w} x {h} px file)"
        )
    return Window(r0, c0, r1 - r0, c1 - c0)


def _snapped(low: float, high: float) -> tuple[int, int]:
    """The pixels from ``low`` to ``high`` (in pixels), snapped outward; a bound within
    :data:`EDGE_TOLERANCE` of a pixel edge is on it, so it does not pull in the next pixel.

    A span thinner than the tolerance near an edge (5.9995 to 5.9999) would snap to no
    pixel at all, and the area be said not to meet the scene: it is the pixel it lies in.
    """
    start, stop = math.floor(low + EDGE_TOLERANCE), math.ceil(high - EDGE_TOLERANCE)
    if stop <= start:
        start = math.floor(low)
        stop = start + 1
    return start, stop


def _refuse_metres_as_degrees(geometry: Geometry, grid: GeoBox, source: str, aoi: str | Path | None) -> None:
    """Refuse a lon/lat area whose coordinates are no degrees: a box in the scene's metres
    without ``--bbox-crs``, a GeoJSON in UTM without a ``crs`` member, a shapefile in UTM whose
    .prj says WGS 84.

    It was said not to intersect the scene and to check ``--bbox-crs``, which an ``--aoi``
    file cannot take.
    """
    if geometry.crs is None or not geometry.crs.geographic or in_degrees(geometry.boundingbox):
        return
    bounds = tuple(round(v, 6) for v in geometry.boundingbox)
    fix = _worded_for(
        aoi,
        bbox=f"give {_bbox_crs_option(grid, source)} with --bbox",
        geojson="name the CRS in the GeoJSON's crs member (RFC 7946 GeoJSON is lon/lat)",
        vector=f"give the file that CRS in place of the lon/lat one it names: ogr2ogr -a_srs "
        f"{_typed_crs(grid, source)} {_with_the_crs(aoi)} {shell_quoted(str(aoi))}",
    )
    raise InputError(
        f"{source}: the area of interest's bounds {bounds} are not degrees, which its CRS "
        f"({crs_label(geometry.crs)}) takes; if they are in the scene's CRS, {fix}"
    )


def _worded_for(aoi: str | Path | None, *, bbox: str, geojson: str, vector: str) -> str:
    """The wording for the area as it was given: ``bbox`` for a ``--bbox`` (``aoi`` None),
    ``geojson`` for a GeoJSON ``--aoi``, ``vector`` for any other vector file (pyogrio's).

    A shapefile or GeoPackage was told of a GeoJSON's crs member, and a --bbox of both.
    """
    if aoi is None:
        return bbox
    return geojson if is_geojson(aoi) else vector


def _with_the_crs(aoi: str | Path | None) -> str:
    """The copy of ``aoi`` for ``ogr2ogr -a_srs`` to write, in the working folder: a name
    other than the file's own (``area.gpkg`` of an ``area.gpkg`` would overwrite what it reads)."""
    return shell_quoted(f"{Path(str(aoi)).stem}_crs.gpkg")


def _bbox_crs_option(grid: GeoBox, source: str) -> str:
    """``--bbox-crs`` with the scene's CRS as it can be typed (:func:`_typed_crs`), saying so
    where that is its WKT."""
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    wkt = "" if crs_code(grid.crs) is not None else " (its CRS has no code: its WKT)"
    return f"--bbox-crs {_typed_crs(grid, source)}{wkt}"


def _typed_crs(grid: GeoBox, source: str) -> str:
    """The scene's CRS as it can be typed: its code, else its WKT as GDAL prints it (a label
    such as ``'Site grid' (WKT, no EPSG code)`` was offered, which is no CRS)."""
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    code = crs_code(grid.crs)
    if code is not None:
        return code
    return f'"$(gdalsrsinfo -o wkt2 {shell_quoted(source)})"'


def _no_overlap(grid: GeoBox, geometry: Geometry, source: str, aoi: str | Path | None) -> InputError:
    crs = geometry.crs
    name = crs_label(crs)
    scene_bounds = _scene_bounds(grid, crs)
    hint = "check the AOI and its CRS " + _worded_for(
        aoi,
        bbox="(--bbox-crs)",
        geojson="(the crs member of the --aoi GeoJSON)",
        vector=f"(the one the file names, as ogrinfo -so -al {shell_quoted(str(aoi))} shows it)",
    )
    if _meets_the_scene_swapped(grid, geometry):
        hint = "read as latitude, longitude, it meets the scene: give the longitude first (x, y), as " + (
            _worded_for(aoi, bbox="--bbox takes them", geojson="GeoJSON takes them", vector="GDAL reads them")
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
    return projected(grid.extent, crs).boundingbox


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
        grid=cropped(scene.grid, window.rows, window.cols),
        origin=(r_off + window.row, c_off + window.col),
        file_shape=scene.file_shape or (int(scene.grid.shape.y), int(scene.grid.shape.x)),
    )


_RASTERIZE = threading.Lock()
"""One rasterisation at a time: rasterio's, run in several threads at once (a --workers
run's tiles), now and then warns "Dataset has no geotransform" (about 1 call in 3000
here), which the CLI printed to the user.  A mask takes 5 ms for 2048^2 output pixels."""


_MASK_BLOCK = 2048
"""Output pixels per side of the blocks :meth:`AoiMask.holds_a_centre` rasterises at once."""


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
        box = cropped(self.grid, window.rows, window.cols).extent.geom
        # Sharing only an edge or a corner is not overlapping: no pixel centre can be inside.
        return bool(self.shape.intersects(box) and not self.shape.touches(box))

    def keep(self, plan: TilePlan, scale: int) -> TilePlan:
        """``plan`` without the tiles that lie wholly outside the polygon: they are never read.

        Their output pixels stay unwritten, which every sink reads back as nodata.
        """
        return dataclasses.replace(plan, tiles=tuple(t for t in plan if self.touches(t.core.scaled(scale))))

    def outside(self, window: Window) -> np.ndarray:
        """Boolean ``(h, w)``: True where the output pixel's centre is outside the polygon."""
        sub = cropped(self.grid, window.rows, window.cols)
        with _RASTERIZE:
            return geometry_mask([self.geometry], out_shape=sub.shape.yx, transform=sub.transform)

    def holds_a_centre(self) -> bool:
        """Whether any output pixel has its centre inside the polygon (else all would be nodata).

        Block by block, the block that holds a point of the polygon first: a usual area answers
        in that one block, and a whole output grid's mask (1.9 GB for a Sentinel-2 tile x4) is
        never held at once.
        """
        h, w = self.grid.shape.yx
        point = self.shape.point_on_surface()
        col, row = ~self.grid.transform @ (point.x, point.y)
        first = (min(max(int(row), 0), h - 1) // _MASK_BLOCK, min(max(int(col), 0), w - 1) // _MASK_BLOCK)
        starts = sorted(
            ((r, c) for r in range(0, h, _MASK_BLOCK) for c in range(0, w, _MASK_BLOCK)),
            key=lambda rc: (rc[0] // _MASK_BLOCK, rc[1] // _MASK_BLOCK) != first,
        )
        for r, c in starts:
            block = Window(r, c, min(_MASK_BLOCK, h - r), min(_MASK_BLOCK, w - c))
            if self.touches(block) and not self.outside(block).all():
                return True
        return False

    def apply(self, block: np.ndarray, window: Window) -> np.ndarray:
        """``block`` ``(C, h, w)`` of output ``window`` with nodata outside the polygon."""
        outside = self.outside(window)
        if outside.any():
            block = block.copy()
            block[:, outside] = self.nodata
        return block


def aoi_mask(geometry: Geometry, output_grid: GeoBox, nodata: float, source: str) -> AoiMask | None:
    """The mask for ``geometry`` on ``output_grid``, or None when it covers the whole grid.

    Raises
    ------
    InputError
        When the polygon holds no output pixel's centre: ``source`` (the input) names it.
    """
    local = in_scene_crs(geometry, output_grid)
    if local.geom.covers(output_grid.extent.geom):
        return None
    mask = AoiMask(shapely.geometry.mapping(local.geom), output_grid, float(nodata))
    if not mask.holds_a_centre():
        # A polygon within one output pixel (a field plot, a sample point buffered by a metre)
        # gave an output of nodata alone, and exit status 0.
        raise InputError(
            f"{source}: the area of interest holds no output pixel's centre (output grid: "
            f"{describe(output_grid)}), so every pixel of the output would be nodata; "
            "give a larger area, or its bounds as --bbox for the whole input pixels around it"
        )
    return mask
