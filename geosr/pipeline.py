"""The single-process run: tiles read ahead in a thread, batched through the model, written.

This is the default, fastest mode on one machine: reading and decoding the
next batch (GDAL releases the GIL) overlaps with the model's compute on the
current one, and outputs go straight into the sink, so memory is bounded by
the batch, never by the scene.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from geosr.aoi import AoiMask
from geosr.io.frames import read_frame_window
from geosr.io.scene import Scene, close_datasets, read_window
from geosr.io.sink import RasterSink
from geosr.kernel import finish_tile, prepare_tiles
from geosr.normalise import Normalisation
from geosr.temporal import predict_grouped, stack_frames
from geosr.tiling import Tile, TilePlan

Predict = Callable[[np.ndarray], np.ndarray]
"""``(B, T, C, h, w)`` float32 -> ``(B, C, s*h, s*w)`` float32."""


@dataclass(frozen=True)
class Job:
    """Everything a run needs besides the model: what to read, how, and where to write.

    ``frames`` are further acquisitions read on the scene's grid (multi-temporal
    input); ``aoi`` masks output pixels outside an area-of-interest polygon.
    """

    scene: Scene
    halo: int
    scale: int
    norm: Normalisation
    nodata: float | None
    batch_size: int
    frames: tuple[Scene, ...] = ()
    aoi: AoiMask | None = None


def batches(tiles: Sequence[Tile], size: int) -> Iterator[Sequence[Tile]]:
    """Consecutive groups of ``size`` tiles: the unit of model work (and of a Dask task)."""
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def read_batch(job: Job, tiles: Sequence[Tile]) -> np.ndarray:
    """Raw pixels of the read windows of ``tiles``: ``(B, C, h, w)``, or ``(B, T, C, h, w)`` with frames."""
    reference = np.stack([read_window(job.scene, t.read) for t in tiles])
    if not job.frames:
        return reference
    others = [np.stack([read_frame_window(frame, job.scene, t.read) for t in tiles]) for frame in job.frames]
    return np.stack([reference.astype(np.float32), *(o.astype(np.float32) for o in others)], axis=1)


def process_batch(job: Job, tiles: Sequence[Tile], raw: np.ndarray, predict: Predict) -> list[np.ndarray]:
    """Model output for each tile's core, as output pixels ``(C, s*h, s*w)``."""
    if raw.ndim == 5:
        inputs, valid = stack_frames(raw, job.nodata, job.norm)
        sr = predict_grouped(inputs, predict)
    else:
        x, valid = prepare_tiles(raw, job.nodata, job.norm)
        sr = list(predict(x))
    out_nodata = job.aoi.nodata if job.aoi is not None else job.nodata
    outputs = []
    for tile, tile_sr, tile_valid in zip(tiles, sr, valid, strict=True):
        lr = tile.core_in_read
        hr = lr.scaled(job.scale)
        out = finish_tile(
            tile_sr[:, hr.rows, hr.cols],
            tile_valid[:, lr.rows, lr.cols],
            scale=job.scale,
            norm=job.norm,
            dtype=job.scene.dtype,
            nodata=out_nodata,
        )
        if job.aoi is not None:
            out = job.aoi.apply(out, tile.core.scaled(job.scale))
        outputs.append(out)
    return outputs


def run_tiles(
    job: Job,
    plan: TilePlan,
    predict: Predict,
    sink: RasterSink,
    *,
    on_tiles_done: Callable[[int], None] | None = None,
) -> None:
    """Run every tile of ``plan`` and write its core into ``sink``.

    The next batch is read in a background thread while the current one is in
    the model.
    """
    groups = list(batches(plan.tiles, job.batch_size))
    if not groups:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosr-read") as reader:
        pending = reader.submit(read_batch, job, groups[0])
        for index, tiles in enumerate(groups):
            raw = pending.result()
            if index + 1 < len(groups):
                pending = reader.submit(read_batch, job, groups[index + 1])
            for tile, out in zip(tiles, process_batch(job, tiles, raw, predict), strict=True):
                window = tile.core.scaled(job.scale)
                sink.write(window.rows, window.cols, out)
            if on_tiles_done is not None:
                on_tiles_done(len(tiles))
        reader.submit(close_datasets).result()
