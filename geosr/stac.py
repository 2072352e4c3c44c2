"""``geosr run --stac``: a STAC Item describing the output, validated offline.

The Item (pystac) carries the output's footprint in WGS 84 (``geometry``,
``bbox``), the projection extension on the asset's own grid (``proj:code``,
``proj:wkt2``, ``proj:shape``, ``proj:transform``, ``proj:bbox``,
``proj:geometry``), one ``data`` asset with its media type (COG or Zarr), and the
provenance: a ``derived_from`` link to the input (file or STAC Item), and
``geosr:model``, ``geosr:scale``, ``geosr:version`` properties.  It is written
as ``<output stem>.stac.json`` beside the output.

pystac's default validator downloads extension schemas; there is no network
here (nor on many clusters), so :func:`validate_item` feeds it the projection
schema from ``geosr/schemas`` (the core and GeoJSON schemas ship with pystac).
"""

from __future__ import annotations

import datetime as dt
import json
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import shapely
from odc.geo.geobox import GeoBox
from pystac.extensions.projection import ProjectionExtension

from geosr import __version__
from geosr.grid import scaled
from geosr.io.atomic import write_small_file
from geosr.io.remote import is_remote
from geosr.io.scene import Scene

SCHEMAS = {ProjectionExtension.get_schema_uri(): "projection-v2.0.0.json"}


def item_path(output: str | Path) -> Path:
    """``scene_x4.tif`` -> ``scene_x4.stac.json`` beside it."""
    out = Path(output)
    return out.with_name(f"{out.stem}.stac.json")


def media_type(output: Path) -> str:
    return str(pystac.MediaType.ZARR) if output.suffix == ".zarr" else str(pystac.MediaType.COG)


def acquisition_time(scene: Scene) -> dt.datetime | None:
    """The input's own date (a STAC input's ``datetime``, or the TIFF date tag), if any."""
    for key in ("STAC_DATETIME", "TIFFTAG_DATETIME"):
        value = scene.tags.get(key)
        if not value:
            continue
        for parse in (dt.datetime.fromisoformat, lambda v: dt.datetime.strptime(v, "%Y:%m:%d %H:%M:%S")):
            try:
                parsed = parse(value)
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
    return None


def acquisition_span(scene: Scene) -> tuple[dt.datetime, dt.datetime] | None:
    """The first and last date of a time series (a Zarr cube's leading axis of dates), if any."""
    labels = scene.band_labels
    if not labels or not all(isinstance(v, np.datetime64) for v in labels):
        return None
    dates = sorted(v.astype("datetime64[us]").item().replace(tzinfo=dt.UTC) for v in labels)
    return dates[0], dates[-1]


def _rfc3339(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def build_item(output: Path, *, source: str | Path, scene: Scene, model: str, scale: int) -> pystac.Item:
    """The Item for ``output`` (not written); see the module docstring."""
    grid: GeoBox = scaled(scene.grid, scale)
    footprint = grid.extent.to_crs("EPSG:4326", resolution=None)
    when = acquisition_time(scene)
    properties: dict[str, Any] = {
        "geosr:model": model,
        "geosr:scale": scale,
        "geosr:version": __version__,
        "created": _rfc3339(dt.datetime.now(dt.UTC)),
    }
    # A time series covers its dates, not the moment it was processed (STAC: a range is
    # start/end_datetime with a null datetime); one date is its datetime.
    span = None if when else acquisition_span(scene)
    if span is not None and span[0] == span[1]:
        when = span[0]
    elif span is not None:
        properties.update(start_datetime=_rfc3339(span[0]), end_datetime=_rfc3339(span[1]))
    item = pystac.Item(
        id=output.stem,
        geometry=shapely.geometry.mapping(footprint.geom),
        bbox=list(footprint.boundingbox),
        datetime=None if span is not None and when is None else (when or dt.datetime.now(dt.UTC)),
        properties=properties,
    )
    asset = pystac.Asset(
        href=f"./{output.name}",
        media_type=media_type(output),
        roles=["data"],
        title=f"{scene.name} super-resolved x{scale} by geosr ({model})",
    )
    item.add_asset("data", asset)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    assert grid.crs is not None  # scenes without a CRS are refused when opened
    epsg = grid.crs.epsg
    proj.apply(
        code=f"EPSG:{epsg}" if epsg else None,
        wkt2=None if epsg else grid.crs.to_wkt(),
        shape=[int(v) for v in grid.shape.yx],
        transform=[float(v) for v in tuple(grid.transform)[:6]],
        bbox=[float(v) for v in grid.extent.boundingbox],
        geometry=shapely.geometry.mapping(grid.extent.geom),
    )
    source_href = str(source) if is_remote(source) else str(Path(source).resolve())
    rel = "derived_from"
    media = pystac.MediaType.JSON if str(source).endswith(".json") else None
    item.add_link(pystac.Link(rel, source_href, media_type=media, title="geosr input"))
    return item


def validate_item(item: pystac.Item) -> list[str]:
    """Validate ``item`` against the STAC core and projection schemas, without network access."""
    from pystac.validation import JsonSchemaSTACValidator

    validator = JsonSchemaSTACValidator()
    package = resources.files("geosr.schemas")
    for uri, name in SCHEMAS.items():
        validator.schema_cache[uri] = json.loads(package.joinpath(name).read_text())
    return list(item.validate(validator=validator))


def write_item(output: Path, *, source: str | Path, scene: Scene, model: str, scale: int) -> Path:
    """Build, validate and write the Item beside ``output``; returns its path."""
    item = build_item(output, source=source, scene=scene, model=model, scale=scale)
    validate_item(item)
    text = json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False), indent=2)
    return write_small_file(item_path(output), lambda tmp: tmp.write_text(text), "STAC Item")
