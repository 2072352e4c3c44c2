"""``geosr run --stac``: a STAC Item describing the output, validated offline.

The Item (pystac) carries the output's footprint in WGS 84 (``geometry``,
``bbox``), the projection extension on the asset's own grid (``proj:code``,
``proj:wkt2``, ``proj:shape``, ``proj:transform``, ``proj:bbox``,
``proj:geometry``), one ``data`` asset with its media type (COG or Zarr) and its
``bands`` (name, ``data_type``, ``nodata``, ``unit``: STAC 1.1 common metadata; and
``raster:scale``/``raster:offset`` of the raster extension v2, declared where a band has them), and
the provenance: a ``derived_from`` link to the input (file or STAC Item) and to each ``--frame``, and
``geosr:model``, ``geosr:scale``, ``geosr:version`` properties.  It is written
as ``<output stem>.stac.json`` beside the output.

pystac's default validator downloads extension schemas; there is no network
here (nor on many clusters), so :func:`validate_item` feeds it the projection
schema and a raster v2 schema of geosr's own (of the fields it writes) from
``geosr/schemas`` (the core and GeoJSON schemas ship with pystac).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pyproj
import pystac
import shapely
import shapely.affinity
import shapely.geometry.polygon
from odc.geo.geobox import GeoBox
from pystac.extensions.projection import ProjectionExtension

from geosr import __version__
from geosr.aoi import poles_within
from geosr.areas import projected
from geosr.grid import epsg_code, scaled
from geosr.io.atomic import write_small_file
from geosr.io.names import utf8_name
from geosr.io.remote import is_remote, unsigned
from geosr.io.scene import SOURCE_DATETIME_TAG, Scene, open_scene
from geosr.io.sink import SUPPORTED_SUFFIXES

# The raster extension v2 (STAC 1.1 bands); pystac knows v1 only (raster:bands).
RASTER_V2 = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
SCHEMAS = {ProjectionExtension.get_schema_uri(): "projection-v2.0.0.json", RASTER_V2: "raster-v2.0.0.json"}


def item_path(output: str | Path) -> Path:
    """``scene_x4.tif`` -> ``scene_x4.stac.json`` beside it."""
    out = Path(output)
    return out.with_name(f"{out.stem}.stac.json")


def media_type(output: Path) -> str:
    """The asset's media type, by the output's suffix as the sink chose its format: an
    ``OUT.ZARR`` store (a suffix the sink takes in any case) was announced as a COG."""
    zarr = SUPPORTED_SUFFIXES.get(output.suffix.lower()) == "Zarr"
    return str(pystac.MediaType.ZARR) if zarr else str(pystac.MediaType.COG)


def acquisition_time(scene: Scene) -> dt.datetime | None:
    """The input's own date (a STAC input's ``datetime``, or the TIFF date tag, which an earlier
    geosr output keeps as ``GEOSR_SOURCE_DATETIME``), if any; None for a STAC input of a range of
    dates (:func:`acquisition_span`)."""
    for key in ("STAC_DATETIME", "TIFFTAG_DATETIME", SOURCE_DATETIME_TAG):
        if key != "STAC_DATETIME" and "STAC_START_DATETIME" in scene.tags:
            return None  # the Item's range, not the file's own date
        parsed = _parsed(scene.tags.get(key))
        if parsed is not None:
            return parsed
    return None


def _parsed(value: str | None) -> dt.datetime | None:
    """An ISO 8601 or TIFF (``2022:03:01 10:00:00``) date, UTC unless it says otherwise."""
    for parse in (dt.datetime.fromisoformat, lambda v: dt.datetime.strptime(v, "%Y:%m:%d %H:%M:%S")):
        try:
            parsed = parse(value or "")
        except ValueError:
            continue
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def acquisition_span(scene: Scene) -> tuple[dt.datetime, dt.datetime] | None:
    """The first and last date of a STAC input's range (its ``start_datetime`` and
    ``end_datetime``) or of a time series (a Zarr cube's leading axis of dates), if any."""
    start, end = (_parsed(scene.tags.get(f"STAC_{key}_DATETIME")) for key in ("START", "END"))
    if start is not None and end is not None:
        return start, end
    labels = scene.band_labels
    if not labels or not all(isinstance(v, np.datetime64) for v in labels):
        return None
    dates = sorted(v.astype("datetime64[us]").item().replace(tzinfo=dt.UTC) for v in labels)
    return dates[0], dates[-1]


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def build_item(
    output: Path, *, source: str | Path, scene: Scene, model: str, scale: int, frames: tuple[str, ...] = ()
) -> pystac.Item:
    """The Item for ``output`` (not written); see the module docstring.  ``frames``: the
    ``--frame`` files the model fused, each also a ``derived_from`` link."""
    grid: GeoBox = scaled(scene.grid, scale)
    geometry, bbox = wgs84_footprint(grid)
    when = acquisition_time(scene)
    now = dt.datetime.now(dt.UTC)  # one clock reading: a dateless input's datetime is its created
    properties: dict[str, Any] = {
        "geosr:model": model,
        "geosr:scale": scale,
        "geosr:version": __version__,
        "created": _rfc3339(now),
    }
    # A time series covers its dates, not the moment it was processed (STAC: a range is
    # start/end_datetime with a null datetime); one date is its datetime.
    span = None if when else acquisition_span(scene)
    if span is not None and span[0] == span[1]:
        when = span[0]
    elif span is not None:
        properties.update(start_datetime=_rfc3339(span[0]), end_datetime=_rfc3339(span[1]))
    item = pystac.Item(
        id=utf8_name(output.stem),
        geometry=geometry,
        bbox=bbox,
        datetime=None if span is not None and when is None else (when or now),
        properties=properties,
    )
    asset = pystac.Asset(
        # A URI reference: a '#' in the name began a fragment, so the Item named the file 'a' for
        # 'a#1_x4.tif' (geosr and pystac read it so); a space or '%' is escaped as well.
        href=f"./{quote(os.fsencode(output.name))}",
        media_type=media_type(output),
        roles=["data"],
        title=f"{utf8_name(scene.name)} super-resolved x{scale} by geosr ({model})",
    )
    bands = output_bands(output)
    asset.extra_fields["bands"] = bands
    item.add_asset("data", asset)
    if any(key.startswith("raster:") for band in bands for key in band):
        item.stac_extensions.append(RASTER_V2)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    epsg = epsg_code(grid.crs)
    proj.apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=None if epsg else grid.crs.to_wkt(),
        shape=[int(v) for v in grid.shape.yx],
        transform=[float(v) for v in tuple(grid.transform)[:6]],
        bbox=[float(v) for v in grid.extent.boundingbox],
        geometry=shapely.geometry.mapping(grid.extent.geom),
    )
    # The output is derived from every date fused into it, not the reference alone.
    for path, title in ((source, "geosr input"), *((frame, "geosr frame") for frame in frames)):
        # A local path as a URI reference, as the asset's: '#' in 'a#1.tif' began a fragment,
        # so the link named the file 'a'.  Its bytes, quoted: a name Python holds with surrogates
        # (an ASCII locale's) is UTF-8 there.  A remote one without its signature, a credential.
        href = unsigned(path) if is_remote(path) else quote(os.fsencode(Path(path).resolve()))
        media = pystac.MediaType.JSON if str(path).endswith(".json") else None
        item.add_link(pystac.Link("derived_from", href, media_type=media, title=title))
    return item


def output_bands(output: Path) -> list[dict[str, Any]]:
    """STAC 1.1 ``bands`` of the written ``output``: each band's name (its description),
    ``data_type``, ``nodata`` (``"nan"`` for NaN), ``unit`` and, where not 1 and 0,
    ``raster:scale``/``raster:offset`` (the raster extension v2), as the file itself has them.

    Without them a STAC client (odc-stac, stackstac) took the fill of an AOI's corners or a
    swath edge for data, and could not tell the bands apart by name; geosr reads them back
    from an input Item the same way.  A bare ``scale``/``offset`` is no STAC 1.1 field, so a
    client did not apply it: an L2A output's integers were not read as reflectance.
    """
    written = open_scene(output)
    nodata = written.band_nodata or (written.nodata,) * written.count
    bands = []
    for index in range(written.count):
        band: dict[str, Any] = {"data_type": written.dtype}
        description = written.descriptions[index] if written.descriptions else None
        if description:
            band["name"] = description
        value = nodata[index]
        if value is not None and np.isnan(value):
            band["nodata"] = "nan"  # JSON has no NaN: STAC 1.1 spells it so
        elif value is not None:
            band["nodata"] = int(value) if float(value).is_integer() else value
        # value = pixel * scale + offset (reflectance of an L2A scene's integers), and its unit.
        scale, offset = (
            written.scales[index] if written.scales else 1.0,
            written.offsets[index] if written.offsets else 0.0,
        )
        if (scale, offset) != (1.0, 0.0):
            band.update({"raster:scale": scale, "raster:offset": offset})
        if written.units and written.units[index]:
            band["unit"] = written.units[index]
        bands.append(band)
    return bands


def wgs84_footprint(grid: GeoBox) -> tuple[dict[str, Any] | None, list[float] | None]:
    """``grid``'s footprint in lon/lat on WGS 84 as RFC 7946 GeoJSON, and its bbox.

    * A footprint across the antimeridian is cut there (a MultiPolygon), and its bbox
      runs from its west edge to its east edge, west > east (RFC 7946 5.2, STAC).  As
      it was, the corners' longitudes (179.98 and -179.97) made a polygon and a bbox
      spanning the globe the other way round.
    * A footprint around a pole reaches it: bbox from -180 to 180 and up to +-90 (a polar
      stereographic scene's Item had the pole outside its polygon, and a bbox of zero height).
    * A CRS with no transformation to WGS 84 (a local or engineering CRS, another
      planet's) gives ``(None, None)``: STAC's null geometry, and the ``proj:*``
      fields still place the asset.  Before, the Item's transformation raised.
    """
    box = grid.extent.boundingbox
    try:
        # Eight segments an edge, so that none spans 180 degrees of longitude (a global
        # grid's edges span 360), which the unwrapping below relies on.
        extent = projected(grid.extent.segmented(max(box.span_x, box.span_y) / 8), "EPSG:4326")
    except pyproj.exceptions.ProjError:
        return None, None
    lon, lat = np.asarray(extent.geom.exterior.coords, dtype=float).T
    # Continuous longitudes: no segment goes the long way round.
    lon = np.unwrap(lon, period=360.0)
    around_pole = abs(lon[-1] - lon[0]) > 180  # the ring goes once round a pole: close it there
    if around_pole:
        # The pole within the grid: a hemispheric grid's edges run south of the equator at its
        # corners (EASE-Grid 2.0 North, +-9,000 km), and the South Pole closed its footprint.
        held = poles_within(grid)
        pole = held[0] if len(held) == 1 else (90.0 if lat.mean() > 0 else -90.0)
        lon, lat = np.append(lon, [lon[-1], lon[0]]), np.append(lat, [pole, pole])
    shape = shapely.Polygon(np.column_stack([lon, lat]))
    # Cut where it leaves [-180, 180], and bring the pieces back by a turn.
    pieces = [shape] if lon.min() >= -180 and lon.max() <= 180 else _cut_at_antimeridian(shape)
    # RFC 7946's right-hand rule: exterior rings counterclockwise (a south-up grid's are not).
    # Points within 1e-7 degrees (1 cm) of a straight line go: a small scene keeps its corners.
    # Within a thousandth of the footprint for one smaller than that: a scene of 48 x 40 pixels
    # of 1e-9 degrees (0.1 mm: a lab target, a core scan) lost a corner, a triangle for a footprint.
    tolerance = min(1e-7, 1e-3 * min(np.ptp(lon), np.ptp(lat)))
    pieces = [shapely.geometry.polygon.orient(p.simplify(tolerance)) for p in pieces]
    footprint = pieces[0] if len(pieces) == 1 else shapely.MultiPolygon(pieces)
    west, south, east, north = footprint.bounds
    if len(pieces) > 1 and not around_pole and lon.max() - lon.min() < 360:  # across the antimeridian
        west, east = ((v + 180) % 360 - 180 for v in (lon.min(), lon.max()))
    return shapely.geometry.mapping(footprint), [float(west), float(south), float(east), float(north)]


def _cut_at_antimeridian(shape: shapely.Polygon) -> list[shapely.Polygon]:
    """The parts of ``shape`` (longitudes in [-540, 540]) in each turn of the globe, moved
    into [-180, 180]."""
    pieces = []
    for turn in (-360.0, 0.0, 360.0):
        part = shape & shapely.box(turn - 180, -90, turn + 180, 90)
        parts = getattr(part, "geoms", [part])
        pieces += [shapely.affinity.translate(p, -turn) for p in parts if p.area > 0]
    return pieces


def validate_item(item: pystac.Item) -> list[str]:
    """Validate ``item`` against the STAC core schema and those of the extensions it declares
    (projection, raster v2: :data:`SCHEMAS`), without network access."""
    from pystac.validation import JsonSchemaSTACValidator

    validator = JsonSchemaSTACValidator()
    package = resources.files("geosr.schemas")
    for uri, name in SCHEMAS.items():
        validator.schema_cache[uri] = json.loads(package.joinpath(name).read_text(encoding="utf-8"))
    return list(item.validate(validator=validator))


def write_item(
    output: Path, *, source: str | Path, scene: Scene, model: str, scale: int, frames: tuple[str, ...] = ()
) -> Path:
    """Build, validate and write the Item beside ``output``; returns its path."""
    item = build_item(output, source=source, scene=scene, model=model, scale=scale, frames=frames)
    validate_item(item)
    text = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2)
    return write_small_file(
        item_path(output), lambda tmp: tmp.write_text(text, encoding="utf-8"), "STAC Item"
    )
