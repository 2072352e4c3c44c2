"""The single-process pipeline's concurrency contract (:func:`geosr.pipeline.run_tiles`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geosr.io.scene import open_scene
from geosr.kernel import finish_tile, prepare_tiles
from geosr.models import load_model
from geosr.normalise import Normalisation
from geosr.pipeline import Job, process_batch, read_batch, run_tiles
from geosr.predictor import Predictor
from geosr.resources import writer_threads
from geosr.tiling import plan_tiles
from tests.conftest import coordinate_pattern


def test_writers_journal_each_batch_once_and_only_after_its_tiles_are_written(make_raster) -> None:
    """Several writer threads finish batches out of order; each batch is journaled once,
    after all of its tiles are in the sink, and no more batches wait than the bound."""
    scene = open_scene(make_raster(height=96, width=80))
    job = Job(
        scene, halo=4, scale=2, norm=Normalisation((0.0,), (65535.0,), "test"), nodata=None, batch_size=2
    )
    plan = plan_tiles(96, 80, tile=16, halo=4)
    predictor = Predictor(load_model("bicubic", bands=1, scale=2), device="cpu", precision="fp32")
    rng = np.random.default_rng(0)
    lock = threading.Lock()
    written: set[tuple[int, int]] = set()
    writer_names: set[str] = set()
    journal: list[int] = []
    in_flight, most_in_flight = [0], [0]

    # The first writes wait until the batch after the writers' is in the model: every writer
    # then holds a batch (on a loaded machine one writer could otherwise keep up and the others
    # never start), and the bound is reached whatever the machine's load (writes that finished
    # before the main thread got the core again did not reach it, and failed the test on CI).
    queue_full = threading.Event()

    class ShuffledSink:
        def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
            with lock:
                writer_names.add(threading.current_thread().name)
            queue_full.wait(timeout=10)
            time.sleep(float(rng.uniform(0, 0.01)))  # finish in a shuffled order
            with lock:
                written.add((rows.start, cols.start))

    def record(group) -> None:
        with lock:
            for i in group:
                core = plan.tiles[i].core.scaled(job.scale)
                assert (core.rows.start, core.cols.start) in written  # journaled after its pixels
            journal.extend(group)
            in_flight[0] -= 1

    def predict(x: np.ndarray) -> np.ndarray:
        with lock:
            in_flight[0] += 1
            most_in_flight[0] = max(most_in_flight[0], in_flight[0])
            if in_flight[0] == writer_threads() + 1:
                queue_full.set()
        return predictor(x)

    run_tiles(job, plan, predict, ShuffledSink(), record=record)
    assert sorted(journal) == list(range(len(plan))) and len(plan) == 30
    assert len(writer_names) == writer_threads() >= 2
    # Batches computed but not yet journaled: those being written and the one computing
    # (a computed batch waits for a free writer before the next is computed).
    assert most_in_flight[0] == writer_threads() + 1


def test_two_lanes_compute_two_batches_at_once_and_write_the_pixels_of_one_lane(make_raster) -> None:
    """With ``lanes=2`` two batches are in the model at the same time: the first two calls wait
    for each other at a barrier, where one lane would wait for a call that never comes.  Every
    batch is journaled once, after its tiles, no more than two at once are in a lane, and the
    pixels are those one lane writes."""
    scene = open_scene(make_raster(height=96, width=80))
    job = Job(
        scene, halo=4, scale=2, norm=Normalisation((0.0,), (65535.0,), "test"), nodata=None, batch_size=2
    )
    plan = plan_tiles(96, 80, tile=16, halo=4)
    predictor = Predictor(load_model("bicubic", bands=1, scale=2), device="cpu", precision="fp32")

    def run(lanes: int, predict: Callable[[np.ndarray], list[np.ndarray]]) -> tuple[np.ndarray, list[int]]:
        out = np.zeros((1, 192, 160), np.uint16)
        journal: list[int] = []

        class ArraySink:
            def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
                out[:, rows, cols] = data

        def record(group) -> None:
            with lock:
                assert all(out[0, plan.tiles[i].core.scaled(2).rows, plan.tiles[i].core.scaled(2).cols].any()
                           for i in group)  # fmt: skip
                journal.extend(group)
                in_lane[0] -= 1

        run_tiles(job, plan, predict, ArraySink(), lanes=lanes, record=record)
        return out, journal

    lock = threading.Lock()
    both_in_the_model = threading.Barrier(2, timeout=10)
    calls, in_lane, most_in_lanes = [0], [0], [0]

    def predict(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            calls[0] += 1
            first_two = calls[0] <= 2
            in_lane[0] += 1
            most_in_lanes[0] = max(most_in_lanes[0], in_lane[0])
        if first_two:
            both_in_the_model.wait()  # BrokenBarrierError after 10 s with one lane
        return predictor(x)

    two_lanes, journal = run(2, predict)
    assert sorted(journal) == list(range(len(plan))) and len(plan) == 30
    assert most_in_lanes[0] == 2
    in_lane[0] = 0
    one_lane, _ = run(1, predictor)
    np.testing.assert_array_equal(two_lanes, one_lane)


def counted_bicubic(bands: int) -> tuple[Predictor, Callable[[np.ndarray], list[np.ndarray]], list[int]]:
    """The x2 bicubic predictor, a predict that calls it, and the tiles of each of its calls."""
    predictor = Predictor(load_model("bicubic", bands=bands, scale=2), device="cpu", precision="fp32")
    calls: list[int] = []

    def predict(x: np.ndarray) -> list[np.ndarray]:
        calls.append(len(x))
        return predictor(x)

    return predictor, predict, calls


def test_tiles_without_a_valid_core_pixel_skip_the_model_and_come_out_as_nodata(make_raster) -> None:
    """A swath edge: tiles whose core is nodata in every band are not computed, yet every
    tile's pixels equal those of computing them all; a tile valid in one band is computed."""
    data = np.maximum(coordinate_pattern(2, 48, 64, "uint16"), 1)
    data[:, :, :32] = 0  # the left half is nodata in both bands ...
    data[1, :16, 16:32] = 500  # ... but for one tile's core in band 2
    scene = open_scene(make_raster(data=data, nodata=0))
    job = Job(
        scene, halo=4, scale=2, norm=Normalisation((0.0, 0.0), (9e3, 9e3), "test"), nodata=0, batch_size=12
    )
    plan = plan_tiles(48, 64, tile=16, halo=4)
    predictor, predict, seen = counted_bicubic(bands=2)

    raw = read_batch(job, plan.tiles)
    got = process_batch(job, plan.tiles, raw, predict)
    # Computing every tile, as before: the model output, then nodata where the source is.
    x, valid = prepare_tiles(raw, 0, job.norm)
    for tile, out, sr, ok in zip(plan.tiles, got, predictor(x), valid, strict=True):
        lr, hr = tile.core_in_read, tile.core_in_read.scaled(2)
        expected = finish_tile(
            sr[:, hr.rows, hr.cols], ok[:, lr.rows, lr.cols], scale=2, norm=job.norm, dtype="uint16", nodata=0
        )
        np.testing.assert_array_equal(out, expected)
    assert len(plan) == 12 and seen == [12 - 5]  # 6 tiles in the left half, one of them valid in band 2
    # Frames take the same path: the skipped tiles never reach the model.
    seen.clear()
    process_batch(job, plan.tiles, np.stack([raw, raw], axis=1), predict)
    assert sum(seen) == 7


def test_nodata_tiles_scattered_among_batches_leave_the_model_full_batches(make_raster) -> None:
    """Every other tile nodata: the tiles with data are batched together, not one per call
    beside a skipped tile (a lone tile costs two on a CPU in fp32).  Each tile is journaled
    once, and the pixels are those of a run in batches as read."""
    data = np.maximum(coordinate_pattern(1, 32, 128, "uint16"), 1)
    for col in range(0, 128, 32):
        data[:, :, col : col + 16] = 0  # tiles of 16: every other one is nodata
    scene = open_scene(make_raster(data=data, nodata=0))
    job = Job(scene, halo=4, scale=2, norm=Normalisation((0.0,), (9e3,), "test"), nodata=0, batch_size=2)
    plan = plan_tiles(32, 128, tile=16, halo=4)
    predictor, predict, calls = counted_bicubic(bands=1)

    class Sink:
        def __init__(self) -> None:
            self.out = np.full((1, 64, 256), 7, np.uint16)

        def write(self, rows: slice, cols: slice, block: np.ndarray) -> None:
            self.out[:, rows, cols] = block

    journal: list[int] = []
    sink = Sink()
    run_tiles(job, plan, predict, sink, record=journal.extend)
    assert len(plan) == 16 and calls == [2, 2, 2, 2]  # 8 tiles with data; [1] * 8 without the fix
    assert sorted(journal) == list(range(16))
    expected = process_batch(job, plan.tiles, read_batch(job, plan.tiles), predictor)
    for tile, out in zip(plan.tiles, expected, strict=True):
        core = tile.core.scaled(2)
        np.testing.assert_array_equal(sink.out[:, core.rows, core.cols], out)


def test_warnings_of_the_runs_threads_name_the_api_callers_keywords(make_raster, monkeypatch) -> None:
    """A lane, a writer or the reader has a context of its own: a warning issued there named the
    command's flags (``--nodata 0``) to a Python caller, whose words only the calling thread had."""
    import warnings

    import geosr.pipeline
    from geosr.errors import GeosrWarning, keyword_wording, warn

    scene = open_scene(make_raster(height=48, width=40))
    job = Job(
        scene, halo=4, scale=2, norm=Normalisation((0.0,), (65535.0,), "test"), nodata=None, batch_size=2
    )
    plan = plan_tiles(48, 40, tile=16, halo=4)
    predictor = Predictor(load_model("bicubic", bands=1, scale=2), device="cpu", precision="fp32")
    reads = geosr.pipeline.read_batch

    def read(*args):
        warn("read: pass --nodata 0")
        return reads(*args)

    def predict(x: np.ndarray) -> list[np.ndarray]:
        warn("predict: pass --nodata 0")
        return predictor(x)

    class WarningSink:
        def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
            warn("write: pass --nodata 0")

    monkeypatch.setattr(geosr.pipeline, "read_batch", read)
    for lanes in (1, 2):  # the calling thread computes and writer threads write; lanes do both
        with warnings.catch_warnings(record=True) as caught, keyword_wording({"--nodata": "nodata"}):
            warnings.simplefilter("always", GeosrWarning)
            run_tiles(job, plan, predict, WarningSink(), lanes=lanes)
        said = {str(w.message) for w in caught}
        assert said == {f"{what}: pass nodata=0" for what in ("read", "predict", "write")}, said


def test_lanes_are_told_how_many_calls_to_share_the_cores_with(make_raster) -> None:
    """The pipeline tells each lane's model call how many calls it expects at once
    (geosr.lanes.PEERS): the first call of a job 2, though the second batch is still being
    read as it starts (from the calls in flight alone it took every thread, and the second
    its share on top: 3 threads on 2 cores); a job whose only batch with data comes last, 1
    (a call that shared with a call that never came ran on half the cores)."""
    from geosr.lanes import PEERS

    predictor = Predictor(load_model("bicubic", bands=1, scale=2), device="cpu", precision="fp32")
    job_norm = Normalisation((0.0,), (65535.0,), "test")

    def peers_of_each_call(scene_path: Path, nodata: float | None) -> list[int]:
        scene = open_scene(str(scene_path))
        job = Job(scene, halo=4, scale=2, norm=job_norm, nodata=nodata, batch_size=2)
        plan = plan_tiles(*scene.grid.shape.yx, tile=16, halo=4)
        peers: list[int] = []

        class NoSink:
            def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
                pass

        def predict(x: np.ndarray) -> list[np.ndarray]:
            peers.append(PEERS.get()())
            return predictor(x)

        run_tiles(job, plan, predict, NoSink(), lanes=2)
        return peers

    everywhere = peers_of_each_call(make_raster("all.tif", height=32, width=64), None)  # 8 tiles, 4 batches
    assert everywhere[:2] == [2, 2] and len(everywhere) == 4
    data = np.zeros((1, 32, 64), np.uint16)
    data[0, 16:, 48:] = 1000  # one tile of eight has data, in the last batch
    assert peers_of_each_call(make_raster("one.tif", data=data, nodata=0), 0) == [1]


class NoSink:
    def write(self, rows: slice, cols: slice, data: np.ndarray) -> None:
        pass


def run_four_batches_on_two_lanes(make_raster, before_call: Callable[[int], None]) -> int:
    """Run 8 tiles in 4 batches of 2 on 2 lanes (bicubic), calling ``before_call(n)`` before the
    n-th model call (from 1) in the lane that makes it; returns the number of calls."""
    scene = open_scene(make_raster(height=32, width=64))
    job = Job(
        scene, halo=4, scale=2, norm=Normalisation((0.0,), (65535.0,), "test"), nodata=None, batch_size=2
    )
    plan = plan_tiles(32, 64, tile=16, halo=4)
    predictor = Predictor(load_model("bicubic", bands=1, scale=2), device="cpu", precision="fp32")
    lock = threading.Lock()
    calls = [0]

    def predict(x: np.ndarray) -> list[np.ndarray]:
        with lock:
            calls[0] += 1
            call = calls[0]
        before_call(call)
        return predictor(x)

    run_tiles(job, plan, predict, NoSink(), lanes=2)
    return calls[0]


def test_a_lane_that_finished_takes_the_next_batch_while_the_other_still_computes(make_raster) -> None:
    """A free lane gets the next batch at once, though the batch handed out before its own is
    still in the model: the pipeline waited for the oldest batch, so the lane whose call ended
    first sat idle behind the other's slower call (here: the first call only ends once the
    third has started, which never happened)."""
    third_started = threading.Event()
    first_saw_the_third: list[bool] = []

    def before_call(call: int) -> None:
        if call == 1:
            first_saw_the_third.append(third_started.wait(timeout=5))
        elif call == 3:
            third_started.set()

    assert run_four_batches_on_two_lanes(make_raster, before_call) == 4
    assert first_saw_the_third == [True]


def test_a_lane_left_alone_at_the_end_of_a_job_is_told_so_during_its_batch(make_raster) -> None:
    """The calls to share the cores with are counted as the run goes (geosr.lanes.PEERS, asked
    before each model call of a batch): the last batch, started beside the one before it,
    learns once that one is done that it is alone, where it kept half the cores to its end."""
    from geosr.lanes import PEERS

    fourth_started = threading.Event()
    seen: list[int] = []

    def before_call(call: int) -> None:
        expected = PEERS.get()
        if call == 3:
            fourth_started.wait(timeout=5)  # still in the model as the last batch starts
        elif call == 4:
            seen.append(expected())
            fourth_started.set()
            deadline = time.monotonic() + 5
            while expected() != 1 and time.monotonic() < deadline:
                time.sleep(0.005)
            seen.append(expected())

    assert run_four_batches_on_two_lanes(make_raster, before_call) == 4
    assert seen == [2, 1]
