"""Whole chunks of a COG's run store, written straight to their files.

A COG's run store (:mod:`geosr.io.run_store`) is chunked in blocks of the COG's size,
so that GDAL reads each chunk once when it builds the COG (:func:`~geosr.io.run_store.block_chunk`):
a tile of 2048^2 output pixels is 16 chunks per band.  Written through zarr, one chunk
per call (:func:`~geosr.io.zarr_store._write_chunkwise`), each chunk cost about 1 ms of
zarr's machinery besides its bytes: a 4-band 2048^2 uint16 tile took 93 ms in chunks of
512^2 against 28 ms in chunks of 2048^2, in memory (tmpfs).  Written here as files, the
same 64 chunks took 29 ms.

The files are what zarr writes for a Zarr v2 array without filters, in C order: a
chunk's pixels, padded with the fill value past the array's edge, encoded by the
array's compressor where it has one, in a file named by the chunk's indices joined with
``.``, written under a temporary name and renamed into place, as zarr's ``LocalStore`` does.
One chunk at a time, so that a failed write (a full disk) leaves none in flight.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np

from geosr.io.zarr_store import _chunk_blocks, _write_chunkwise


class ChunkFiles:
    """Writes windows of one array of a COG's run store (a Zarr v2 array ``(count, h, w)``)."""

    def __init__(self, store: Path, array: Any) -> None:
        meta = array.metadata
        # For windows that cut chunks: every chunk written, as the files are (a COG's store).
        self._array = array.with_config({"write_empty_chunks": True})
        self._folder = store / array.path
        self._chunk: tuple[int, int] = array.chunks[1:]
        self._shape: tuple[int, int] = array.shape[1:]
        self._dtype = np.dtype(meta.dtype.to_native_dtype())
        self._fill = meta.fill_value
        self._codec = meta.compressor  # a numcodecs codec, or None: raw bytes
        if meta.filters or meta.order != "C" or meta.dimension_separator != ".":
            # Nested chunk keys ("/") would need folders made per chunk, which could make them
            # again under a store another thread has just removed (the reason for one at a time).
            raise ValueError(
                f"{self._folder}: chunk files are written for C-order arrays without filters "
                "and with flat chunk keys only"
            )

    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Write ``data`` ``(count, h, w)`` at ``rows`` x ``cols``: chunk by chunk where the window
        covers whole chunks (a tile's window always does), else through zarr."""
        if not (self._whole(rows, 0) and self._whole(cols, 1)):
            _write_chunkwise(self._array, rows, cols, data)
            return
        for band, r, c, block in _chunk_blocks(rows, cols, data, self._chunk):
            self._put((band, r.start // self._chunk[0], c.start // self._chunk[1]), block)

    def _whole(self, window: slice, axis: int) -> bool:
        """Whether ``window`` starts on a chunk edge and ends on one or at the array's edge."""
        chunk, size = self._chunk[axis], self._shape[axis]
        return window.start % chunk == 0 and (window.stop % chunk == 0 or window.stop == size)

    def _put(self, index: tuple[int, int, int], block: np.ndarray) -> None:
        if block.shape != self._chunk:  # an edge chunk: stored whole, as zarr stores it
            full = np.full(self._chunk, self._fill, self._dtype)
            full[: block.shape[0], : block.shape[1]] = block
            block = full
        block = np.ascontiguousarray(block, dtype=self._dtype)
        payload = self._codec.encode(block) if self._codec is not None else block.data
        path = self._folder / ".".join(map(str, index))
        partial = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
        try:
            with partial.open("wb") as f:
                f.write(payload)
            partial.replace(path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
