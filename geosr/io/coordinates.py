"""1-D coordinates that place a grid's pixels (netCDF and Zarr variables): evenly spaced, or refused.

A geotransform describes only evenly spaced coordinates.  GDAL's netCDF driver looks at the
first, middle and last steps of a variable's coordinates and spreads the others evenly without
a word; xarray-read stores (:mod:`geosr.io.zarr_scene`) derive the transform from them.  Both
check the spacing here first.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rasterio.errors import RasterioError

from geosr.errors import InputError
from geosr.io.names import open_raster


def uneven_steps(stored: np.ndarray) -> tuple[float, float] | None:
    """The smallest and largest step of 1-D coordinates that no affine transform describes (a
    Gaussian grid, tiles concatenated with a gap), or None for evenly spaced ones.

    The tolerance is a hundredth of a pixel, or the rounding of the coordinates' own dtype where
    that is coarser (float32 UTM northings come in steps of 0.5 m).
    """
    if stored.size < 3:
        return None
    values = stored.astype(np.float64)
    step = (values[-1] - values[0]) / (values.size - 1)
    off = np.abs(values - (values[0] + step * np.arange(values.size))).max()
    floats = np.issubdtype(stored.dtype, np.floating)
    rounding = 2 * float(np.spacing(np.abs(stored).max())) if floats else 0.0
    if off <= max(abs(step) / 100, rounding):
        return None
    steps = np.diff(values)
    return float(steps.min()), float(steps.max())


def uneven_refused(source: str, what: str, steps: tuple[float, float]) -> InputError:
    """The line refusing ``what`` (``x coordinates of 'v'``) of ``source``, not evenly spaced."""
    return InputError(
        f"{source}: the {what} are not evenly spaced (steps from {steps[0]:.6g} to {steps[1]:.6g}), "
        "so no geotransform describes the grid; interpolate it onto evenly spaced coordinates "
        "first (xarray's interp, or xESMF)"
    )


CF_AXIS_NAMES = ("x", "y", "lat", "lon", "latitude", "longitude")
CF_AXIS_STANDARD_NAMES = (
    *("projection_x_coordinate", "projection_y_coordinate", "latitude", "longitude"),
    *("grid_latitude", "grid_longitude"),
)


def refuse_uneven_coordinates(path: str, src: Any) -> None:
    """Refuse a netCDF variable that GDAL placed on 1-D coordinates that are not evenly spaced.

    GDAL's netCDF driver looks at their first, middle and last steps only, and spread the
    coordinates evenly from the first to the last without a word: a 5 m jump in a 10 m grid
    became 10.1 m pixels, each row of the output up to half a pixel off.  The coordinate
    variables (by CF attribute or name, as GDAL gives them in the metadata) are read as GDAL
    reads any variable (netCDF-3 and -4 alike).  So are those of :data:`CF_AXIS_NAMES` the
    metadata does not list: a variable without attributes has no line there, as integer
    coordinates written by xarray (no ``_FillValue``), which GDAL placed by the GeoTransform
    rioxarray stores with the grid mapping, their uneven steps unseen.
    """
    if src.driver != "netCDF" or src.transform.is_identity:
        return
    attrs: dict[str, dict[str, str]] = {}
    for key, value in src.tags().items():
        name, cut, attr = key.partition("#")
        if cut:
            attrs.setdefault(name, {})[attr] = value
    listed = {name.lower() for name in attrs}
    for name in CF_AXIS_NAMES:
        if name not in listed:
            attrs[name] = {}
    for name, given in attrs.items():
        axis = (
            name.lower() in CF_AXIS_NAMES
            or given.get("axis") in ("X", "Y")
            or given.get("standard_name") in CF_AXIS_STANDARD_NAMES
            or given.get("units") in ("degrees_east", "degrees_north")
        )
        values = _coordinate_values(path, name) if axis else None
        if values is not None and values.size in (src.width, src.height):
            steps = uneven_steps(values)
            if steps is not None:
                raise uneven_refused(path, f"{name} coordinates", steps)


def _coordinate_values(path: str, name: str) -> np.ndarray | None:
    """The values of the 1-D variable ``name`` of the netCDF ``path`` as GDAL reads it, or None."""
    try:
        with open_raster(f'NETCDF:"{path}":{name}') as coordinate:
            if coordinate.count != 1 or coordinate.height != 1:
                return None
            return coordinate.read(1)[0]
    except RasterioError:
        return None  # not a variable GDAL opens (a scalar, text): no coordinate of pixels
