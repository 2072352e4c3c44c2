"""Orchestration: the only package that imports dask and distributed."""
