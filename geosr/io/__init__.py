"""Raster input and output: scenes in (GDAL rasters, Zarr stores), COG and Zarr out.

Nothing here imports torch or dask: these are plain functions over paths and
numpy arrays that any orchestration (a loop, Dask workers) can call.
"""

import functools
import os

GDAL_BLOCK_CACHE_MB = 32
"""GDAL's block cache.  Its default, 5 % of RAM (1.2 GB here), made peak memory
grow with scene size (1.34 GiB at 8192^2 x2 in an early version, 0.80 GiB with
a 64 MiB bound; today 0.57 GiB with 64 MiB and 0.53 GiB with 32).  32 MiB
holds the block rows a row of tiles shares with the next one for a single band
up to about 10000 px wide (a wider multi-band tiled scene re-decodes some); a
strip-organized file whose strips under a row of tiles exceed it is read
through a band of strips kept by the reader (:func:`geosr.io.scene.keeps_band`)
rather than decoding every strip once per tile."""


@functools.cache
def settle_block_cache() -> None:
    """Have GDAL size its block cache now, with :data:`GDAL_BLOCK_CACHE_MB` unless the user set
    ``GDAL_CACHEMAX`` (once per process; before any read: :mod:`geosr.io.scene`'s import, in
    Dask workers too, and :func:`geosr.io.names.open_raster`).

    GDAL sizes its process-wide cache from the variable the first time any thread uses it, so
    geosr's default is in the environment for that moment only.  Left there, it outlived the
    call in the process of a Python API user, and every program that process started
    (``gdalwarp``, Dask worker processes) ran with a 32 MiB cache; set as ``geosr.io`` was
    imported (by ``geosr.cli``), it stayed after a command that read nothing, and a user's own
    ``GDAL_CACHEMAX=32`` set meanwhile was taken out with it.
    """
    if "GDAL_CACHEMAX" in os.environ:  # the user's own: GDAL reads it
        return
    from rasterio.env import get_gdal_config

    os.environ["GDAL_CACHEMAX"] = str(GDAL_BLOCK_CACHE_MB)
    try:
        get_gdal_config("GDAL_CACHEMAX")  # rasterio asks GDALGetCacheMax64, which reads the variable once
    finally:
        del os.environ["GDAL_CACHEMAX"]


@functools.cache
def leave_archives_alone() -> None:
    """Have GDAL write no ``.properties`` file beside a ``.gz`` it reads (once per process).

    GDAL's /vsigzip/ (and /vsitar/ of a ``.tar.gz``) saves the sizes it found in
    ``archive.tar.gz.properties`` beside the archive: a run or ``geosr info`` left a file in
    the input's folder, which may be read-only or another user's.  Set as GDAL's own
    option, not in the environment (which every program the process starts would inherit);
    a user's ``CPL_VSIL_GZIP_WRITE_PROPERTIES`` wins.
    """
    if "CPL_VSIL_GZIP_WRITE_PROPERTIES" in os.environ:
        return
    from rasterio.env import set_gdal_config

    set_gdal_config("CPL_VSIL_GZIP_WRITE_PROPERTIES", "NO")
