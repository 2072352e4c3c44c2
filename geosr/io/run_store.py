"""The run's pixel store, and the final output built from it.

Every run (local or on a cluster) writes tile outputs into a Zarr v3 store in
its run-state folder (:mod:`geosr.io.runstate`), one chunk per tile core: no two
tiles share a chunk, so a tile rewritten after a crash never touches a
neighbour's pixels, and Dask workers can write concurrently.  At the end:

* ``.zarr`` output: the store *is* the output; its metadata is consolidated
  and the folder renamed into place;
* ``.tif`` output: the store is streamed, chunk by chunk, into
  :class:`~geosr.io.cog.CogSink`, which builds, validates and renames the COG.

A store that will become a COG is compressed with LZ4 at level 1 (cheap; it is
read once), a Zarr output with the output's zstd.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from geosr.errors import OutputError
from geosr.faults import checkpoint
from geosr.io.atomic import describe_write_failure, replace_atomically
from geosr.io.sink import OutputSpec
from geosr.io.zarr_store import VARIABLE, _chunk_spans, _create_store, _write_chunkwise

_FAST = BloscCodec(cname="lz4", clevel=1, shuffle="shuffle")


def create_run_store(
    path: Path, spec: OutputSpec, chunks: tuple[int, int], *, for_zarr_output: bool, destination: Path
) -> None:
    """Create the empty store at ``path`` with ``chunks`` = (rows, cols) of one tile core."""
    try:
        if for_zarr_output:
            _create_store(path, spec, chunks=chunks)
        else:
            # Pixels only: the COG takes its georeferencing from the spec, so the
            # store needs no coordinates (nor a CRS that CF can describe).
            count, height, width = spec.shape
            zarr.create_array(
                str(path),
                name=VARIABLE,
                shape=(count, height, width),
                chunks=(1, *chunks),
                dtype=spec.dtype,
                fill_value=spec.nodata if spec.nodata is not None else 0,
                compressors=_FAST,
                zarr_format=3,
            )
    except OSError as exc:
        raise OutputError(describe_write_failure(destination, exc, spec.nbytes)) from None


class StoreWriter:
    """Writes windows into a run store (one per process or thread)."""

    def __init__(self, store: Path, destination: Path, needed: int | None = None) -> None:
        self.destination = destination
        self.needed = needed
        self._array = zarr.open_array(str(store), path=VARIABLE, mode="r+", zarr_format=3)

    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Write ``data`` ``(count, h, w)`` at output pixels ``rows`` x ``cols``.

        Raises
        ------
        OutputError
            Disk full or any other write failure, with the path and the sizes.
        """
        try:
            _write_chunkwise(self._array, rows, cols, data)
        except OSError as exc:
            raise OutputError(describe_write_failure(self.destination, exc, self.needed)) from None


def finalise(store: Path, destination: Path, spec: OutputSpec, *, overwrite: bool) -> Path:
    """Turn the complete run store into the output at ``destination``, atomically."""
    if destination.suffix.lower() == ".zarr":
        return _finalise_zarr(store, destination, spec)
    return _finalise_cog(store, destination, spec, overwrite)


def _finalise_zarr(store: Path, destination: Path, spec: OutputSpec) -> Path:
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
            zarr.consolidate_metadata(str(store), zarr_format=3)
    except OSError as exc:
        raise OutputError(describe_write_failure(destination, exc, spec.nbytes)) from None
    checkpoint("cog")
    replace_atomically(store, destination)
    return destination


def _finalise_cog(store: Path, destination: Path, spec: OutputSpec, overwrite: bool) -> Path:
    from geosr.io.cog import CogSink

    array: Any = zarr.open_array(str(store), path=VARIABLE, mode="r", zarr_format=3)
    _, height, width = array.shape
    _, chunk_rows, chunk_cols = array.chunks
    with CogSink(destination, spec, overwrite=overwrite) as sink:
        # Chunk by chunk: memory stays one tile core, whatever the scene size.
        for rows in _chunk_spans(slice(0, height), chunk_rows):
            for cols in _chunk_spans(slice(0, width), chunk_cols):
                sink.write(rows, cols, np.asarray(array[:, rows, cols]))
                checkpoint("finalise")
    return destination


def output_job(destination: Path) -> str | None:
    """The ``GEOSR_JOB`` tag of an existing output (None if absent or unreadable)."""
    try:
        if destination.suffix.lower() == ".zarr":
            value = zarr.open_group(str(destination), mode="r").attrs.get("GEOSR_JOB")
            return str(value) if value is not None else None
        import rasterio

        with rasterio.open(destination) as src:
            return src.tags().get("GEOSR_JOB")
    except Exception:  # any unreadable file simply is not a finished output of this job
        return None
