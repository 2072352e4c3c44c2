"""A GDAL VRT that presents the run store as the finished raster, overviews included.

GDAL's COG driver copies from any GDAL dataset, and uses the source's overviews
when it has some.  GDAL reads Zarr v2 arrays (``ZARR:"store":/array``) but
knows nothing there of georeferencing, band metadata or overviews; a VRT adds
them in a few lines of XML: the grid (SRS, geotransform), the tags, per-band
nodata, descriptions, colour interpretation and tags, and per band an
``<Overview>`` element for each precomputed level (:mod:`geosr.io.pyramid`).
The COG built from it then needs no intermediate GeoTIFF and no overview pass.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from rasterio.dtypes import dtype_rev, typename_fwd

from geosr.grid import crs_wkt
from geosr.io.names import utf8_name
from geosr.io.sink import OutputSpec, gdal_color_name


def zarr_array(store: Path, name: str) -> str:
    """GDAL's name for the array ``name`` of the Zarr group at ``store``.

    GDAL reads the quoted path with ``\\`` and ``\\"`` as escapes: a ``"`` left as it is
    ended the path there, and the COG build of an output named ``a "b".tif`` failed
    ('No such file or directory') with advice to free space and resume, which failed again.
    """
    quoted = utf8_name(store).replace("\\", "\\\\").replace('"', '\\"')
    return f'ZARR:"{quoted}":/{name}'


def write_vrt(
    path: Path,
    spec: OutputSpec,
    source: str | None,
    overviews: Sequence[str] = (),
    *,
    size: tuple[int, int] | None = None,
) -> None:
    """Write a VRT at ``path``: the raster ``source`` on ``spec``'s grid, with ``spec``'s metadata.

    Parameters
    ----------
    path : Path
        The ``.vrt`` to write.
    spec : OutputSpec
        Grid, nodata and metadata of the output.
    source : str or None
        GDAL dataset name of the full-resolution pixels, one GDAL band per output band;
        None for a raster with no pixels (GDAL reads it as empty without reading anything:
        the COG skeleton of :mod:`geosr.io.cog_tiles`).
    overviews : sequence of str
        GDAL dataset names of the overview levels, finest first.
    size : (rows, cols), optional
        The raster's size where it is not the grid's: an overview level of the skeleton.
    """
    height, width = size or spec.grid.shape.yx
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    # Without dataAxisToSRSAxisMapping GDAL reads the geotransform in the
    # traditional GIS order (x = easting or longitude), as geosr writes it.
    ET.SubElement(root, "SRS").text = crs_wkt(spec.grid.crs)  # type: ignore[arg-type]
    ET.SubElement(root, "GeoTransform").text = ", ".join(
        repr(float(v)) for v in spec.grid.transform.to_gdal()
    )
    _metadata(root, spec.tiff_tags)
    _metadata(root, spec.rpcs, domain="RPC")
    data_type = typename_fwd[dtype_rev[spec.dtype]]
    for band in range(1, spec.count + 1):
        element = ET.SubElement(root, "VRTRasterBand", dataType=data_type, band=str(band))
        if spec.nodata is not None:
            ET.SubElement(element, "NoDataValue").text = _number(spec.nodata, spec.dtype)
        if spec.descriptions and spec.descriptions[band - 1]:
            ET.SubElement(element, "Description").text = spec.descriptions[band - 1]
        if spec.colorinterp:
            name = spec.tiff_colorinterp[band - 1]
            ET.SubElement(element, "ColorInterp").text = gdal_color_name(name)
        if spec.band_tags:
            _metadata(element, spec.band_tags[band - 1])
        if spec.band_imagery:
            _metadata(element, spec.band_imagery[band - 1], domain="IMAGERY")
        scale, offset, unit = spec.scaling(band)
        if (scale, offset) != (1.0, 0.0):
            ET.SubElement(element, "Offset").text = repr(offset)
            ET.SubElement(element, "Scale").text = repr(scale)
        if unit:
            ET.SubElement(element, "UnitType").text = unit
        if source is not None:
            _source(ET.SubElement(element, "SimpleSource"), source, band)
        for overview in overviews:
            _source(ET.SubElement(element, "Overview"), overview, band)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=False)


def _source(parent: ET.Element, name: str, band: int) -> None:
    ET.SubElement(parent, "SourceFilename", relativeToVRT="0").text = name
    ET.SubElement(parent, "SourceBand").text = str(band)


def _metadata(parent: ET.Element, tags: Mapping[str, object], domain: str = "") -> None:
    if not tags:
        return
    metadata = ET.SubElement(parent, "Metadata", {"domain": domain} if domain else {})
    for key, value in tags.items():
        ET.SubElement(metadata, "MDI", key=str(key)).text = str(value)


def _number(value: float, dtype: str) -> str:
    """``value`` as GDAL parses it back exactly: integers in full, floats by ``repr``."""
    if math.isnan(value):
        return "nan"
    return str(int(value)) if np.issubdtype(np.dtype(dtype), np.integer) else repr(float(value))
