"""Raster input and output: scenes in (GDAL rasters, Zarr stores), COG and Zarr out.

Nothing here imports torch or dask: these are plain functions over paths and
numpy arrays that any orchestration (a loop, Dask workers) can call.
"""
