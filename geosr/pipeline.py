"""The single-process run: tiles read ahead in a thread, batched through the model, written.

This is the default, fastest mode on one machine: reading and decoding the
next batch (GDAL releases the GIL) overlaps with the model's compute on the
current one, and outputs go straight into the sink, so memory is bounded by
the batch, never by the scene.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Protocol, TypeVar

import numpy as np

from geosr.aoi import AoiMask
from geosr.faults import checkpoint
from geosr.io.frames import read_frame_window
from geosr.io.scene import Scene, close_datasets, exact_float, read_window
from geosr.kernel import finish_tile, prepare_tiles
from geosr.lanes import PEERS
from geosr.normalise import Normalisation, valid_mask
from geosr.resources import writer_threads
from geosr.temporal import predict_grouped, stack_frames
from geosr.tiling import Tile, TilePlan, Window

Predict = Callable[[np.ndarray], Sequence[np.ndarray]]
"""``(B, T, C, h, w)`` float32 -> one ``(C, s*h, s*w)`` float32 array per tile."""


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
    frame_shifts: tuple[tuple[float, ...] | None, ...] = ()
    """Per frame, what to add to each band to put it in the reference's DN convention
    (their Sentinel-2 ``BOA_ADD_OFFSET`` differ, across baseline 04.00); None: nothing."""
    projects: bool = False
    """Whether the model projects its output onto its input (:attr:`SRModel.projects`), which
    :func:`~geosr.kernel.finish_tile` then makes exact for the dtypes that need it."""


T = TypeVar("T")


def batches(tiles: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """Consecutive groups of ``size`` tiles: the unit of model work (and of a Dask task)."""
    for start in range(0, len(tiles), size):
        yield tiles[start : start + size]


def read_batch(job: Job, tiles: Sequence[Tile]) -> np.ndarray:
    """Raw pixels of the read windows of ``tiles``: ``(B, C, h, w)``, or ``(B, T, C, h, w)`` with frames."""
    reference = _read_scene(job.scene, tiles)
    if not job.frames:
        return reference
    # Frames come as floats already (NaN where they have no data: read_frame_window).
    others = [np.stack([read_frame_window(frame, job.scene, t.read) for t in tiles]) for frame in job.frames]
    for frame, shift in zip(others, job.frame_shifts, strict=False):
        if shift is not None:
            frame += np.asarray(shift, frame.dtype)[None, :, None, None]  # NaN stays NaN
    return np.stack([reference.astype(exact_float(reference.dtype)), *others], axis=1)


def _read_scene(scene: Scene, tiles: Sequence[Tile]) -> np.ndarray:
    """Raw pixels of ``scene`` in the read windows of ``tiles``: ``(B, C, h, w)``."""
    return np.stack([read_window(scene, t.read) for t in tiles])


class Reader:
    """The reader thread of a run (:func:`run_tiles`), which may read the run's first batch
    ahead, while the run is still being prepared (:meth:`read_ahead`).

    Without it, the main thread prepared the run (the normalisation's sample, the run store)
    while the other cores waited, then waited itself for the first batch, whose read in a new
    thread also sets up GDAL there (about 6 ms): 13-15 ms of a 1024^2 bicubic job's 0.35 s.
    A context manager: its exit closes the thread's datasets and ends the thread.
    """

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosr-read")
        self._ahead: tuple[Scene, tuple[Window, ...], Future[np.ndarray]] | None = None

    def read_ahead(self, scene: Scene, tiles: Sequence[Tile]) -> None:
        """Start reading the pixels of ``tiles`` of ``scene``, the run's first batch as planned
        (the area of interest or a resumed run may take other tiles: :meth:`take` then drops them)."""
        self._ahead = (scene, tuple(t.read for t in tiles), submit(self.pool, _read_scene, scene, tiles))

    def take(self, job: Job, tiles: Sequence[Tile]) -> Future[np.ndarray] | None:
        """The read started ahead, where it read what ``job`` reads of ``tiles``, else None."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        scene, windows, future = ahead
        if job.frames or scene is not job.scene or windows != tuple(t.read for t in tiles):
            future.cancel()
            return None
        return future

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ahead is not None:
            self._ahead[2].cancel()
        try:
            self.pool.submit(close_datasets).result()
        finally:
            self.pool.shutdown()


def process_batch(job: Job, tiles: Sequence[Tile], raw: np.ndarray, predict: Predict) -> list[np.ndarray]:
    """Model output for each tile's core, as output pixels ``(C, s*h, s*w)``.

    A tile whose core has no valid pixel in any band is all nodata whatever the
    model says, so the model does not see it: swath edges and the no-data
    wedges of Sentinel-2 tiles cost reading, not compute.
    """
    if raw.ndim == 5:
        # Named as the other lines on a --frame are (run_inputs.frames_for).
        sources = [str(job.scene.path), *(f"--frame {f.path}" for f in job.frames)]
        inputs, valid = stack_frames(raw, job.nodata, job.norm, sources=sources)
    else:
        x, valid = prepare_tiles(raw, job.nodata, job.norm, str(job.scene.path))
    cores = [valid[i][:, t.core_in_read.rows, t.core_in_read.cols] for i, t in enumerate(tiles)]
    needed = [i for i, core in enumerate(cores) if core.any()]
    sr: dict[int, np.ndarray] = {}
    if needed and raw.ndim == 5:
        sr = dict(zip(needed, predict_grouped([inputs[i] for i in needed], predict), strict=True))
    elif needed:
        sr = dict(zip(needed, predict(x if len(needed) == len(tiles) else x[needed]), strict=True))
    out_nodata = job.aoi.nodata if job.aoi is not None else job.scene.output_nodata
    reference = raw[:, 0] if raw.ndim == 5 else raw
    outputs = []
    for i, (tile, core) in enumerate(zip(tiles, cores, strict=True)):
        lr = tile.core_in_read
        hr = lr.scaled(job.scale)
        # Any values do for a skipped tile: finish_tile writes nodata over all of them.
        core_sr = sr[i][:, hr.rows, hr.cols] if i in sr else np.zeros((len(core), hr.height, hr.width), "f4")
        out = finish_tile(
            core_sr,
            core,
            scale=job.scale,
            norm=job.norm,
            dtype=job.scene.dtype,
            nodata=out_nodata,
            reference=reference[i][:, lr.rows, lr.cols] if job.projects else None,
        )
        if job.aoi is not None:
            out = job.aoi.apply(out, tile.core.scaled(job.scale))
        outputs.append(out)
    return outputs


def valid_cores(job: Job, tiles: Sequence[Tile], raw: np.ndarray) -> list[bool]:
    """Per tile of a batch read by :func:`read_batch`, whether its core holds a valid pixel
    in some band (of the reference, with frames): those without are all nodata."""
    reference = raw[:, 0] if raw.ndim == 5 else raw
    return [
        bool(valid_mask(block[:, t.core_in_read.rows, t.core_in_read.cols], job.nodata).any())
        for t, block in zip(tiles, reference, strict=True)
    ]


class Writer(Protocol):
    """Where finished tiles go: the run store's :class:`~geosr.io.run_store.StoreWriter`.

    :func:`run_tiles` calls ``write`` from several threads at once, for
    disjoint tile windows: each tile owns its chunks in the store.  A GDAL
    dataset (:class:`~geosr.io.cog.CogSink`) is not safe to share that way.
    """

    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        """Write ``data`` ``(count, h, w)`` at output pixels ``rows`` x ``cols``."""
        ...


def run_tiles(
    job: Job,
    plan: TilePlan,
    predict: Predict,
    sink: Writer,
    *,
    lanes: int = 1,
    todo: Sequence[int] | None = None,
    record: Callable[[Sequence[int]], None] | None = None,
    on_tiles_done: Callable[[int], None] | None = None,
    reader: Reader | None = None,
) -> None:
    """Run the tiles ``todo`` of ``plan`` (default: all) and write their cores into ``sink``.

    Three stages overlap: a reader thread reads the next batch, the model computes,
    and finished batches are written, each then ``record``ed for the journal.

    With one lane, the calling thread runs the model on every batch, and writer
    threads (:func:`~geosr.resources.writer_threads`) write the previous ones.  A
    computed batch waits for a free writer before the next is computed, so at most
    one batch more than there are writers holds finished cores, and memory stays
    bounded by the batch size.  That one is enough to keep the writers busy when
    they are the slow stage (the bicubic model): a free writer takes it at once.
    A deeper queue only held memory: one batch more cost an 8192^2 x4 bicubic run
    25 MiB of peak RSS and gained no time.

    With ``lanes`` > 1 (:meth:`~geosr.predictor.Predictor.lanes`: a CPU's, or a GPU's on
    many CPUs), that many threads each compute a batch (``predict`` then takes its share of
    torch's threads: :meth:`~geosr.predictor.Predictor.predict_in_lane`) and write it;
    the calling thread only hands batches out.  A lane that waits on a write, or
    on a core another thread holds, leaves the other lane computing, where one
    model call on all the cores waits for the slowest of its threads at every
    layer: the 2048^2 x4 benchmark job ran 8 % faster in bf16 on 2 cores.

    ``reader``: the run's :class:`Reader`, which may have read the first batch already;
    without one, the run has a reader of its own.
    """
    indices = list(range(len(plan))) if todo is None else list(todo)
    groups = list(batches(indices, job.batch_size))
    if not groups:
        return
    tiles_of = plan.tiles
    journal_lock = threading.Lock()  # one journal line at a time, whichever thread finished

    def read(group: Sequence[int], ahead: Future[np.ndarray] | None = None) -> np.ndarray:
        raw = ahead.result() if ahead is not None else read_batch(job, [tiles_of[i] for i in group])
        checkpoint("read")
        return raw

    def infer(group: Sequence[int], raw: np.ndarray) -> list[np.ndarray]:
        outputs = process_batch(job, [tiles_of[i] for i in group], raw, predict)
        checkpoint("infer")
        return outputs

    def write(group: Sequence[int], outputs: list[np.ndarray]) -> None:
        for i, out in zip(group, outputs, strict=True):
            window = tiles_of[i].core.scaled(job.scale)
            sink.write(window.rows, window.cols, out)
            checkpoint("write")
        if record is not None:
            with journal_lock:
                record(group)
                checkpoint("journal")

    outlook = _Outlook(lanes)

    def infer_and_write(group: Sequence[int], raw: np.ndarray, model: bool) -> None:
        try:
            outputs = infer(group, raw)
        finally:
            if model:
                outlook.finished()
        write(group, outputs)

    # Threads that take batches from the calling thread: lanes, or writers.
    takers = lanes if lanes > 1 else writer_threads()
    with (
        contextlib.nullcontext(reader) if reader is not None else Reader() as reading,
        ThreadPoolExecutor(
            max_workers=takers, thread_name_prefix="geosr-lane" if lanes > 1 else "geosr-write"
        ) as pool,
    ):
        in_flight: deque[tuple[Future[None], int]] = deque()

        def compute(group: Sequence[int], raw: np.ndarray, *, more: bool, model: bool = True) -> None:
            """Hand ``group`` to a lane (or compute it and hand it to a writer); ``more``: whether
            batches for the model may follow, ``model``: whether this one has tiles for it."""
            if lanes > 1:
                task = functools.partial(infer_and_write, group, raw, model)
            else:
                task = functools.partial(write, group, infer(group, raw))
            if len(in_flight) >= takers:  # wait for a free lane or writer
                _wait_for_one(in_flight, on_tiles_done)  # re-raises an error here
            outlook.handing_out(model=model and lanes > 1, more=more)
            in_flight.append((submit(pool, task), len(group)))

        # Tiles with data wait here for a full batch: the model runs on full batches even
        # where the nodata tiles that process_batch skips are scattered among them (a lone
        # tile costs two on a CPU in fp32: Predictor._predict).
        waiting: list[tuple[int, np.ndarray]] = []
        token = PEERS.set(outlook)
        try:
            # Taken in the reader thread, behind the read ahead: the checkpoint comes as before.
            ahead = reading.take(job, [tiles_of[i] for i in groups[0]])
            pending = submit(reading.pool, read, groups[0], ahead)
            for index, group in enumerate(groups):
                raw = pending.result()
                if index + 1 < len(groups):
                    pending = submit(reading.pool, read, groups[index + 1])
                has_data = valid_cores(job, [tiles_of[i] for i in group], raw)
                last = index + 1 == len(groups)
                if all(has_data) and not waiting:
                    compute(group, raw, more=not last)  # the usual case: the batch as read
                    continue
                empty = [k for k, ok in enumerate(has_data) if not ok]
                if empty:  # nodata, without the model
                    compute([group[k] for k in empty], raw[empty], more=not last, model=False)
                # Copies: a view would keep its whole batch alive while it waits.
                waiting += [(group[k], raw[k].copy()) for k, ok in enumerate(has_data) if ok]
                while len(waiting) >= job.batch_size or (last and waiting):
                    batch, waiting = waiting[: job.batch_size], waiting[job.batch_size :]
                    more = not last or len(waiting) > 0
                    compute([i for i, _ in batch], np.stack([r for _, r in batch]), more=more)
            outlook.handing_out(model=False, more=False)  # trailing nodata batches: none to come
            while in_flight:
                _wait(in_flight.popleft(), on_tiles_done)
        finally:
            PEERS.reset(token)
            for future, _ in in_flight:
                future.cancel()
            reading.pool.submit(close_datasets).result()


class _Outlook:
    """How many model calls a run's lanes compute at once now (:data:`geosr.lanes.PEERS`): the
    batches in the lanes' model, and one more while batches for the model may still come.

    Asked before each model call of a batch (:func:`geosr.predictor.shared_threads`): a batch
    is several calls, and a lane whose peer finished its last batch, with none left to take,
    computed the rest of its own on half the cores while the other half sat idle.
    """

    def __init__(self, lanes: int) -> None:
        self._lanes = lanes
        self._in_model = 0
        self._more = True  # a run has a batch at least: the first is to come
        self._lock = threading.Lock()

    def __call__(self) -> int:
        return max(1, min(self._lanes, self._in_model + self._more))

    def handing_out(self, *, model: bool, more: bool) -> None:
        """A batch goes to a lane (``model``: into the model), and ``more`` may follow it."""
        with self._lock:  # counted in before the batch to come is counted out: never too few
            self._in_model += model
            self._more = more

    def finished(self) -> None:
        """A lane's batch is out of the model."""
        with self._lock:
            self._in_model -= 1


def submit(pool: ThreadPoolExecutor, task: Callable[..., T], *args: object) -> Future[T]:
    """``pool.submit(task, *args)``, the task run in a copy of the caller's context.

    A pool's thread has a context of its own, without the wording of the API call that started
    the run (:func:`~geosr.errors.keyword_wording`): a warning issued there named the command's
    flags (``--nodata 0``) to a Python caller of ``upscale_file``.
    """
    return pool.submit(contextvars.copy_context().run, task, *args)


def _wait_for_one(
    in_flight: deque[tuple[Future[None], int]], on_tiles_done: Callable[[int], None] | None
) -> None:
    """Wait until one batch of ``in_flight`` is done, whichever it is, and take the done ones out.

    Not the oldest: a lane whose batch finished first waited for the other lane's, slower
    call before it got the next batch (a 2048^2 run: 0.34 s idle on one of 2 cores behind a
    call that took 1.0 s instead of 0.67 s).
    """
    wait([future for future, _ in in_flight], return_when=FIRST_COMPLETED)
    for item in [item for item in in_flight if item[0].done()]:
        in_flight.remove(item)
        _wait(item, on_tiles_done)


def _wait(item: tuple[Future[None], int], on_tiles_done: Callable[[int], None] | None) -> None:
    future, n = item
    future.result()
    if on_tiles_done is not None:
        on_tiles_done(n)
