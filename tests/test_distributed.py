"""The cluster path with a real `dask scheduler` and `dask worker` on 127.0.0.1."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr

import geosr
from geosr.orchestrate.cluster import ModelPlugin
from tests.test_run import random_model_file

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent


def start_scheduler(
    folder: Path, env: dict[str, str], *, new_session: bool = False
) -> tuple[subprocess.Popen[bytes], str]:
    """`dask scheduler` on a port of its own choosing, and its address once it listens.

    Not a port found free, let go and then given to it: any other process (another
    pytest-xdist worker's cluster) could take it in between, and the scheduler then never
    started."""
    scheduler_file = folder / "scheduler.json"
    command = ["scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard"]
    proc = subprocess.Popen(
        [str(BIN / "dask"), *command, "--scheduler-file", str(scheduler_file)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=new_session,
    )
    deadline = time.monotonic() + 60
    while True:
        with contextlib.suppress(FileNotFoundError, ValueError):  # not written yet, or not whole
            return proc, str(json.loads(scheduler_file.read_text())["address"])
        assert proc.poll() is None and time.monotonic() < deadline, "the dask scheduler did not start"
        time.sleep(0.1)


@contextlib.contextmanager
def refusing_port() -> Iterator[str]:
    """``tcp://127.0.0.1:PORT`` where nothing listens, for as long as the test holds it: bound,
    never listening, the port refuses connections and no other process can take it (a port
    found free and let go could be, by another pytest-xdist worker's cluster)."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{held.getsockname()[1]}"


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A scheduler and one nanny-managed worker process, as a user would start them."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    first, address = start_scheduler(tmp_path_factory.mktemp("scheduler"), env)
    procs = [first]
    procs.append(
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                address,
                "--nworkers",
                "1",
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    from distributed import Client

    deadline = time.time() + 60
    while True:
        try:
            with Client(address, timeout="5s") as client:
                client.wait_for_workers(1, timeout=30)
            break
        except (OSError, TimeoutError):
            if time.time() > deadline:
                raise
            time.sleep(0.5)
    yield address
    # The worker first, and gone before the scheduler goes: a worker whose scheduler closes as
    # it says goodbye hangs until its nanny kills it 8 s later (0.5 s this way).
    for p in reversed(procs):
        p.terminate()
        p.wait(timeout=30)


@pytest.fixture
def scene(make_raster) -> Path:
    data = np.random.default_rng(3).integers(300, 5000, (2, 100, 70)).astype("uint16")
    data[:, 40:48, 10:30] = 0
    return make_raster(data=data, nodata=0)


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_cluster_output_is_identical_to_local(
    scheduler: str, scene: Path, tmp_path: Path, suffix: str
) -> None:
    weights = random_model_file(tmp_path, 2)
    common = {
        "scale": 2,
        "model": str(weights),
        "tile": 32,
        "batch_size": 2,
        "precision": "fp32",
        "device": "cpu",
    }
    local = geosr.upscale_file(scene, tmp_path / f"local{suffix}", **common)
    remote = geosr.upscale_file(scene, tmp_path / f"remote{suffix}", scheduler=scheduler, **common)
    if suffix == ".tif":
        with rasterio.open(local) as a, rasterio.open(remote) as b:
            assert a.transform == b.transform and a.crs == b.crs and a.nodata == b.nodata
            assert (a.read() == b.read()).all()
        from rio_cogeo.cogeo import cog_validate

        valid, errors, _ = cog_validate(str(remote))
        assert valid and not errors
    else:
        a = xr.open_zarr(local, decode_coords="all")["band_data"]
        b = xr.open_zarr(remote, decode_coords="all")["band_data"]
        assert a.rio.transform() == b.rio.transform() and a.rio.crs == b.rio.crs
        assert np.array_equal(a.values, b.values, equal_nan=True)
    assert not [p for p in tmp_path.iterdir() if "geosr-" in p.name], "temporaries left behind"


def test_workers_write_a_zarr_v2_output_gdal_reads(scheduler: str, scene: Path, tmp_path: Path) -> None:
    """The workers write their regions into the run's store in the output's format: a v2
    store throughout, which GDAL 3.10 reads with the local COG's pixels and georeferencing."""
    common = {"scale": 2, "model": "bicubic", "tile": 32, "batch_size": 2, "device": "cpu"}
    local = geosr.upscale_file(scene, tmp_path / "local.tif", **common)
    remote = geosr.upscale_file(scene, tmp_path / "remote.zarr", scheduler=scheduler, zarr_format=2, **common)
    assert not list(Path(remote).rglob("zarr.json")), "a v3 array in the v2 store"
    with rasterio.open(local) as a, rasterio.open(f'ZARR:"{remote}":/band_data') as b:
        assert a.transform == b.transform and a.crs == b.crs and a.nodata == b.nodata
        assert (a.read() == b.read()).all()
    assert not [p for p in tmp_path.iterdir() if "geosr-" in p.name], "temporaries left behind"


def test_relative_paths_reach_workers_started_elsewhere(
    scheduler: str, scene: Path, tmp_path: Path, monkeypatch
) -> None:
    """Input, output and a user's model named relative to the client's folder: the workers
    (started in the repository) read ``scene.tif`` in their own folder, and the run failed
    with a traceback saying the file was "probably truncated or corrupt"."""
    weights = random_model_file(tmp_path, 2)
    common = {"scale": 2, "model": weights.name, "tile": 32, "precision": "fp32", "device": "cpu"}
    monkeypatch.chdir(tmp_path)
    remote = geosr.upscale_file(scene.name, "remote.tif", scheduler=scheduler, **common)
    local = geosr.upscale_file(scene.name, "local.tif", **common)
    with rasterio.open(remote) as a, rasterio.open(local) as b:
        assert (a.read() == b.read()).all()


def test_upscale_with_a_relative_model_path_runs_on_workers_started_elsewhere(
    scheduler: str, scene: Path, tmp_path: Path, monkeypatch
) -> None:
    """geosr.upscale(model="random_x2.safetensors") loaded the weights in the client's folder,
    then the workers (started in the repository) looked for them in theirs: computing the
    result failed with 'weights file random_x2.safetensors does not exist'."""
    import dask
    import rioxarray
    from distributed import Client

    weights = random_model_file(tmp_path, 2)
    monkeypatch.chdir(tmp_path)
    data = rioxarray.open_rasterio(scene, chunks=True)
    common = {"scale": 2, "model": weights.name, "precision": "fp32", "device": "cpu"}
    with Client(scheduler):
        remote = geosr.upscale(data, **common).values
    with dask.config.set(scheduler="threads"):
        local = geosr.upscale(data, **common).values
    np.testing.assert_array_equal(remote, local)


@contextlib.contextmanager
def seen_here_only(path: Path) -> Iterator[str]:
    """A name for ``path`` that only this process can open, ``/proc/self/fd/N``: what a
    Dask worker on a machine without this one's filesystem meets."""
    fd = os.open(path, os.O_RDONLY)
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 900)  # a number the worker has no file under
    os.close(fd)
    try:
        yield f"/proc/self/fd/{high}"
    finally:
        os.close(high)


@pytest.mark.parametrize("unseen", ["input", "output folder"])
def test_a_path_the_workers_cannot_see_is_one_clear_line(
    scheduler: str, scene: Path, tmp_path: Path, unseen: str
) -> None:
    """A worker without the client's filesystem: the input's read failure came back as a
    bare Exception (distributed could not unpickle the rasterio error it was raised
    from), a traceback calling the file "probably truncated or corrupt"; the missing
    output folder was reported as "lost the Dask scheduler"."""
    target = scene if unseen == "input" else tmp_path
    with seen_here_only(target) as name:
        src, dst = (name, tmp_path / "out.tif") if unseen == "input" else (scene, f"{name}/out.tif")
        with pytest.raises(geosr.GeosrError, match="is not found on the Dask worker") as caught:
            geosr.upscale_file(src, dst, scale=2, model="bicubic", tile=32, scheduler=scheduler)
    assert str(caught.value).startswith(name) and "shared filesystem" in str(caught.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


def test_model_loaded_once_per_worker_with_torch_threads_restored(
    scheduler: str, scene: Path, tmp_path: Path
) -> None:
    from distributed import Client

    from geosr.orchestrate.cluster import model_loads

    with Client(scheduler) as client:
        before = list(client.run(model_loads).values())
    for name in ("a.tif", "b.tif"):  # 7 x 5 = 35 tasks each, the same model
        out = geosr.upscale_file(
            scene, tmp_path / name, scale=3, model="bicubic", tile=16, batch_size=1, scheduler=scheduler
        )
        assert out.exists()
    with Client(scheduler) as client:
        after = list(client.run(model_loads).values())
        threads = client.run(lambda: __import__("torch").get_num_threads())
        omp = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
        tuned = client.run(lambda: sys.modules["geosr.allocator"].keep_freed_memory.cache_info().currsize)
    # a worker process of geosr's run, like the command's, keeps freed tensor memory
    assert list(tuned.values()) == [1]
    # 70 tasks, two runs: the model was built once on the worker
    assert [a - b for a, b in zip(after, before, strict=True)] == [1]
    # the nanny set OMP_NUM_THREADS=1; the plugin gave torch the machine's cores back
    assert list(omp.values()) == ["1"]
    assert list(threads.values()) == [len(os.sched_getaffinity(0))]


def test_a_run_leaves_the_cluster_without_its_plugin(scheduler: str, scene: Path, tmp_path: Path) -> None:
    """The scheduler kept geosr's plugin after the run: every worker that joined the cluster
    later, for any user's work, imported torch and built the run's model, and had its
    torch threads set."""
    from distributed import Client

    geosr.upscale_file(scene, tmp_path / "a.tif", scale=2, model="bicubic", tile=32, scheduler=scheduler)
    with Client(scheduler) as client:
        plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert ModelPlugin.name not in plugins  # by the name the run registers it under


def _held_on_worker(path: str) -> tuple[bool, int]:
    """Whether this process has ``path`` open, and how many bands of strips its threads keep."""
    from geosr.io import scene
    from tests.conftest import open_in_this_process

    return open_in_this_process(Path(path)), sum(len(r.row_bands) for r in scene._every_thread)


def _strips_kept_on_worker(kept: bool) -> None:
    """Have a worker's reads keep bands of strips (as where GDAL's cache cannot hold one), or not."""
    from geosr.io import scene

    if kept:
        scene.__dict__.setdefault("real_cache_bytes", scene.gdal_cache_bytes)
        scene.gdal_cache_bytes = lambda: 0
    else:
        scene.gdal_cache_bytes = scene.__dict__.pop("real_cache_bytes", scene.gdal_cache_bytes)


def test_a_run_leaves_the_workers_without_its_input_open_or_its_rows(
    scheduler: str, make_raster, tmp_path: Path
) -> None:
    """A worker's task threads outlive the run, and each kept the input open in its cache
    (a deleted input's disk space stayed taken until the worker restarted) and its band of
    decoded strips (up to 512 MiB a thread)."""
    from distributed import Client

    src = make_raster(height=64, width=64)  # strips
    with Client(scheduler) as client:
        client.run(_strips_kept_on_worker, True)
        try:
            geosr.upscale_file(
                src, tmp_path / "x2.tif", scale=2, model="bicubic", tile=32, scheduler=scheduler
            )
            after = list(client.run(_held_on_worker, str(src)).values())
        finally:
            client.run(_strips_kept_on_worker, False)
    assert after == [(False, 0)]


def test_an_interrupted_run_leaves_the_cluster_without_its_plugin(
    scheduler: str, make_raster, tmp_path: Path
) -> None:
    """Interrupted (Ctrl-C, a notebook's stop), a run left its plugin on the scheduler, so that
    every worker joining later built its model, as test_a_run_leaves_the_cluster_without_its_plugin
    says of a finished one."""
    from distributed import Client

    def stop(done: int, total: int) -> None:
        if done:  # tiles have run on the cluster
            raise KeyboardInterrupt

    src = make_raster(height=128, width=128)
    with pytest.raises(KeyboardInterrupt):
        geosr.upscale_file(
            src, tmp_path / "x2.tif", scale=2, model="bicubic", tile=16, batch_size=1, scheduler=scheduler,
            progress=stop,
        )  # fmt: skip
    with Client(scheduler) as client:
        plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    assert ModelPlugin.name not in plugins  # by the name the run registers it under


def test_local_cluster_runs_worker_threads_and_restores_torch_threads(
    scene: Path, tmp_path: Path, dask_default_port_taken
) -> None:
    """--workers N: N worker threads in this process sharing the cores, identical pixels,
    this process's torch threads as they were once the cluster stops, and no "Port 8787
    is already in use" beside a user's own Dask dashboard."""
    import torch

    from geosr.orchestrate.cluster import cluster_client

    torch.set_num_threads(2)
    with cluster_client(None, 2) as client:
        pids = client.run(os.getpid)
    assert len(pids) == 2 and set(pids.values()) == {os.getpid()}
    assert torch.get_num_threads() == 2
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = geosr.upscale_file(
            scene, tmp_path / "cluster.tif", scale=2, model="bicubic", tile=32, workers=2
        )
    assert not [w for w in seen if "already in use" in str(w.message)]
    local = geosr.upscale_file(scene, tmp_path / "local.tif", scale=2, model="bicubic", tile=32)
    with rasterio.open(out) as a, rasterio.open(local) as b:
        assert (a.read() == b.read()).all()
    assert torch.get_num_threads() == 2


# A sleep between looks would hang here for the 10 minutes asked; the result wakes the wait.
@pytest.mark.timeout(60, method="thread")
def test_the_run_hears_of_a_finished_task_as_it_finishes() -> None:
    """The run looked for finished tasks every 50 ms, so that it took the last task of a run
    34 ms late (median, 2048^2 x4 benchmark job with 2 workers), all of it added to the run.
    The wait for the next result now ends as it comes."""
    from distributed import as_completed

    from geosr.orchestrate.cluster import _wait_for_next, cluster_client

    with cluster_client(None, 1) as client:
        task = client.submit(time.sleep, 0.2, pure=False)
        finished = as_completed([task], loop=client.loop, with_results=True)
        _wait_for_next(finished, 600.0)
        assert finished.has_ready()
        _wait_for_next(finished, 600.0)  # a result ready: no wait at all
        assert next(finished)[1] is None


def test_a_small_job_goes_in_each_task_and_a_large_one_in_a_task_of_its_own(
    scene: Path, tmp_path: Path, monkeypatch
) -> None:
    """A job goes to the workers in each task where it is small, as the benchmark's is: a shared
    task ran first, a round trip to a worker before the first tile could start.  A large one
    (an AOI of many vertices), or one of very many tasks, is still computed once by a task that
    all depend on, and gives the same pixels."""
    from distributed import Future

    from geosr.io.scene import open_scene
    from geosr.normalise import Normalisation
    from geosr.orchestrate import cluster as orchestrate
    from geosr.pipeline import Job

    job = Job(
        open_scene(scene), halo=4, scale=2, norm=Normalisation((0.0,), (9e3,), "t"), nodata=0, batch_size=2
    )
    with orchestrate.cluster_client(None, 1) as client:
        assert orchestrate._job_for_tasks(client, job, 16) is job
        # Its copies in thousands of tasks would add up: one task all read.
        assert isinstance(orchestrate._job_for_tasks(client, job, 10**6), Future)
        monkeypatch.setattr(orchestrate, "SHARED_JOB_BYTES", 0)
        shared = orchestrate._job_for_tasks(client, job, 1)
        assert isinstance(shared, Future) and shared.result() == job
    common = {"scale": 2, "model": "bicubic", "tile": 32}
    # Every job is large now: the run's tasks read it from a task of its own.
    out = geosr.upscale_file(scene, tmp_path / "cluster.tif", workers=2, **common)
    local = geosr.upscale_file(scene, tmp_path / "local.tif", **common)
    with rasterio.open(out) as a, rasterio.open(local) as b:
        assert (a.read() == b.read()).all()


def test_a_local_cluster_interrupted_mid_run_leaves_the_terminal_to_geosr() -> None:
    """Ctrl-C or SIGTERM during a --workers run: stopping the cluster with tasks running
    logged a Dask warning per cancelled task, and a scheduler traceback for a submission
    cut short, before the run's own line (17 lines in all for a SIGTERM).  Dask's own
    handler writes them to the terminal; one beside it here sees what reaches it."""
    import logging.handlers

    from geosr.orchestrate.cluster import cluster_client

    seen = logging.handlers.BufferingHandler(1000)
    logging.getLogger("distributed").addHandler(seen)
    try:
        with pytest.raises(KeyboardInterrupt), cluster_client(None, 2) as client:
            futures = [client.submit(time.sleep, 0.2, pure=False) for _ in range(20)]
            futures[3].result()
            raise KeyboardInterrupt  # as the handler of the signal raises it
    finally:
        logging.getLogger("distributed").removeHandler(seen)
    assert [r.getMessage() for r in seen.buffer if r.levelno >= logging.WARNING] == []


def test_a_timeout_the_local_cluster_stops_on_is_not_printed(caplog) -> None:
    """After the benchmark's cluster figure (a local cluster started and stopped as a
    --workers run does) asyncio printed "Future exception was never retrieved ... TimeoutError":
    a batched stream's tornado Event.wait, whose timeout fired in the loop's last turn.  Such
    a future is left on the cluster's loop here; an error of another kind is still reported."""
    import asyncio
    import gc
    import logging

    from geosr.orchestrate.cluster import cluster_client

    def failed(loop: asyncio.AbstractEventLoop, error: Exception) -> asyncio.Future[None]:
        future: asyncio.Future[None] = loop.create_future()
        future.set_exception(error)
        return future

    with cluster_client(None, 1, "cpu") as client:
        left = [
            failed(client.loop.asyncio_loop, e)
            for e in (TimeoutError("Timeout"), ValueError("not a timeout"))
        ]
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        left.clear()
        gc.collect()
    said = [r.getMessage() + repr(r.exc_info) for r in caplog.records if r.name == "asyncio"]
    assert len(said) == 1 and "never retrieved" in said[0] and "not a timeout" in said[0], said


def test_a_scheduler_without_workers_says_the_run_waits_for_some(
    scene: Path, tmp_path: Path, monkeypatch
) -> None:
    """Nothing told the user why the run sat still, with no progress, until killed.  A
    worker joins once the warning is out, as an adaptive cluster's would."""
    import torch
    from distributed import LocalCluster

    from geosr.orchestrate.cluster import NO_FIXED_PORT

    threads = torch.get_num_threads()
    said: list[str] = []
    with LocalCluster(
        n_workers=0,
        processes=False,
        protocol="tcp://",
        dashboard_address=None,
        scheduler_kwargs=NO_FIXED_PORT,
    ) as cluster:

        def show(message: Warning | str, *args: object, **kwargs: object) -> None:
            said.append(str(message))
            cluster.scale(1)

        fallback = threading.Timer(5.0, cluster.scale, [1])  # without the warning: no hang, a failure
        fallback.start()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always")
                monkeypatch.setattr(warnings, "showwarning", show)
                out = geosr.upscale_file(
                    scene, tmp_path / "out.tif", scale=2, model="bicubic", scheduler=cluster.scheduler_address
                )
        finally:
            fallback.cancel()
            torch.set_num_threads(threads)
    assert out.exists()
    assert [m for m in said if "has no workers yet; the run waits" in m], said


def test_local_cluster_workers_do_not_pause_on_the_memory_they_share() -> None:
    """--workers N: the worker threads share this process, so none has a memory limit of
    its own.  Dask gave each 1/N of the machine's memory and measured the whole process
    against it: with --workers 64 on 23 GiB (370 MiB each) every worker paused on the
    390 MiB of a bicubic run and the run hung until killed."""
    from geosr.orchestrate.cluster import cluster_client

    with cluster_client(None, 2) as client:
        limits = client.run(lambda dask_worker: dask_worker.memory_manager.memory_limit)
    assert list(limits.values()) == [None, None]


def test_local_cluster_workers_run_no_statistical_profiler() -> None:
    """A worker samples its threads' stacks every 10 ms for the dashboard's profile, which
    the local cluster does not serve: 2.5 % of a run's CPU on 2 cores, taken from the model."""
    from geosr.orchestrate.cluster import cluster_client

    with cluster_client(None, 2) as client:
        profiling = client.run(lambda dask_worker: "profile" in dask_worker.periodic_callbacks)
    assert list(profiling.values()) == [False, False]


# A hang (the fault) fails in 2 minutes, not the suite's 10, and ends the process it stalls;
# not a bound on the wall time, which was 0.13 s here when quiet, 10-20 s in a pytest-xdist
# worker beside other jobs (the refusal line is the fix: the hung run never printed one).
@pytest.mark.timeout(120, method="thread")
def test_more_local_workers_than_one_process_runs_is_refused_at_once(
    scene: Path, capsys, monkeypatch
) -> None:
    """--workers 300: the workers share one event loop in this process; the run hung
    (a 12-tile scene unfinished after 170 s, a heartbeat traceback per worker) and the
    run state was left behind.  Now one line before anything starts."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    args = ["run", str(scene), "--model", "bicubic", "--workers", "300"]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "--workers 300", "at most 64", "--scheduler")
    assert sorted(p.name for p in scene.parent.iterdir()) == [scene.name]


@pytest.mark.parametrize(
    ("requested", "device", "gpus", "dask_cuda", "expected"),
    [
        (2, "auto", 0, True, ("threads", 2)),  # no GPU: worker threads
        (2, "auto", 4, False, ("threads", 2)),  # GPUs but no dask-cuda: threads, as before
        (2, "cpu", 4, True, ("threads", 2)),  # --device cpu keeps the GPUs out
        (8, "auto", 4, True, ("gpu", 4)),  # one worker per GPU, never more
        (2, "cuda", 4, True, ("gpu", 2)),  # at most N
    ],
)
def test_local_workers_one_process_per_gpu_with_dask_cuda(
    requested: int, device: str, gpus: int, dask_cuda: bool, expected: tuple[str, int]
) -> None:
    from geosr.orchestrate.cluster import local_workers

    assert local_workers(requested, device, gpus, dask_cuda) == expected


def _have_dask_cuda() -> bool:
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("dask_cuda") is not None


@pytest.mark.skipif(
    not _have_dask_cuda(), reason="needs a CUDA device and dask-cuda (pip install geosr[cuda])"
)
def test_local_cluster_on_gpus_gives_identical_pixels(scene: Path, tmp_path: Path) -> None:
    """--workers on a GPU machine: dask-cuda worker processes, one GPU each, identical pixels."""
    import torch

    from geosr.orchestrate.cluster import cluster_client

    with cluster_client(None, 8, "cuda") as client:
        pids = client.run(os.getpid)
        visible = client.run(lambda: os.environ.get("CUDA_VISIBLE_DEVICES", ""))
    assert len(pids) == torch.cuda.device_count() and os.getpid() not in pids.values()
    assert len({v.split(",")[0] for v in visible.values()}) == len(visible)  # each its own GPU first
    out = geosr.upscale_file(
        scene, tmp_path / "gpus.tif", scale=2, model="bicubic", tile=32, workers=8, device="cuda"
    )
    local = geosr.upscale_file(
        scene, tmp_path / "local.tif", scale=2, model="bicubic", tile=32, device="cuda"
    )
    with rasterio.open(out) as a, rasterio.open(local) as b:
        assert (a.read() == b.read()).all()


def test_local_cluster_from_the_cli(scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli.tif"
    result = subprocess.run(
        [
            str(BIN / "geosr"),
            "run",
            str(scene),
            "-o",
            str(out),
            "--scale",
            "2",
            "--model",
            "bicubic",
            "--workers",
            "2",
            "--tile",
            "32",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    local = geosr.upscale_file(scene, tmp_path / "local.tif", scale=2, model="bicubic", tile=32)
    with rasterio.open(out) as a, rasterio.open(local) as b:
        assert (a.read() == b.read()).all()


def test_unreachable_scheduler_is_a_clear_error(scene: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    """Nothing listens at the port: one line, exit 2, nothing written.  Dask retries the
    connection until the timeout (a scheduler may still be starting); 2 s here, not 20."""
    from geosr.orchestrate import cluster
    from tests.test_bad_input import assert_one_clear_line, run_cli

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT", 2.0)
    with refusing_port() as address:
        args = ["run", str(scene), "--scheduler", address, "--model", "bicubic"]
        code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "cannot reach the Dask scheduler", address)
    assert sorted(p.name for p in scene.parent.iterdir()) == [scene.name]


def test_a_local_cluster_without_a_writable_scratch_space_is_one_clear_error(
    scene: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """DASK_TEMPORARY_DIRECTORY (Dask's temporary-directory) on a read-only file system, or
    under a file: a RuntimeError traceback ('Cluster failed to start: ...'), after a log warning."""
    import dask

    from tests.test_bad_input import assert_one_clear_line, run_cli

    (tmp_path / "afile").write_text("x")
    scratch = tmp_path / "afile" / "scratch"
    args = ["run", str(scene), "--workers", "2", "--model", "bicubic", "-o", str(tmp_path / "out.tif")]
    with dask.config.set({"temporary-directory": str(scratch)}):
        code, err = run_cli(args, capsys, monkeypatch)
    said = ("--workers 2: the local Dask cluster did not start", str(scratch), "DASK_TEMPORARY_DIRECTORY")
    assert_one_clear_line(code, err, *said)
    assert len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", scene.name]


def test_an_unreachable_scheduler_ends_a_batch_at_its_first_input(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """Each input of a batch waited out the connection timeout (20 s) and failed with the same
    line: 100 inputs took 33 minutes to say that nothing listens at the address."""
    from geosr.orchestrate import cluster
    from tests.test_bad_input import assert_one_clear_line, run_cli

    monkeypatch.setattr(cluster, "SCHEDULER_TIMEOUT", 1.0)
    inputs = [str(make_raster(f"{name}.tif", height=16, width=16)) for name in "abc"]
    out = tmp_path / "out"
    out.mkdir()
    with refusing_port() as address:
        args = ["run", *inputs, "-o", str(out), "--scheduler", address, "--model", "bicubic"]
        code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "cannot reach the Dask scheduler", address)
    assert err.count("error:") == 1, err
    assert list(out.iterdir()) == []


@contextlib.contextmanager
def not_a_scheduler(reply: bytes | None) -> Iterator[str]:
    """A TCP port that accepts connections and answers ``reply`` to what it reads (an HTTP
    server's error page, say), or stays silent (None); its ``tcp://`` address."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = listener.accept()
                held.append(conn)
                if reply is not None:
                    conn.recv(1024)
                    conn.sendall(reply)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        listener.close()
        for conn in held:
            conn.close()


def test_a_web_port_given_as_scheduler_is_one_clear_error(scene: Path, tmp_path: Path) -> None:
    """The dashboard's port (8787) for the scheduler's (8786): the HTTP reply was read as a
    Dask frame, "Unable to allocate 3.01 EiB", a MemoryError traceback, and the run state
    was left behind."""
    http = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"
    with not_a_scheduler(http) as address, pytest.raises(geosr.GeosrError, match="8787 is its dashboard"):
        geosr.upscale_file(scene, tmp_path / "out.tif", scale=2, model="bicubic", scheduler=address)
    assert sorted(p.name for p in tmp_path.iterdir()) == [scene.name]


# The port never answers, so the refusal can only come from the handshake's deadline; a hang
# (the fault) fails in 2 minutes and ends the process it stalls.  It was a bound of 15 s on the
# wall time, of which the deadline takes 6 (1 s + the margin): 10-12 s on a busy machine.
@pytest.mark.timeout(120, method="thread")
def test_a_silent_port_given_as_scheduler_is_refused_in_time() -> None:
    """A port that accepts and never answers: Dask's client waits for the scheduler's
    handshake without limit, so the run hung until killed."""
    from geosr.errors import OptionError
    from geosr.orchestrate.cluster import check_scheduler_answers

    with not_a_scheduler(None) as address, pytest.raises(OptionError, match="no Dask scheduler answered"):
        check_scheduler_answers(address, timeout=1)


def test_worker_threads_follow_the_workers_cores_not_the_clients(
    scheduler: str, scene: Path, tmp_path: Path
) -> None:
    """torch's threads on a worker are its own host's CPUs shared among its workers: they
    were the client's CPUs, so a client on a small machine (here: this process held to one
    CPU) left a larger worker machine's cores idle."""
    from distributed import Client

    cpus = os.sched_getaffinity(0)
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs to give the client fewer than the worker")
    os.sched_setaffinity(0, {min(cpus)})
    try:
        geosr.upscale_file(scene, tmp_path / "a.tif", scale=2, model="bicubic", tile=32, scheduler=scheduler)
    finally:
        os.sched_setaffinity(0, cpus)
    with Client(scheduler) as client:
        threads = client.run(lambda: __import__("torch").get_num_threads())
        worker_cpus = client.run(lambda: len(os.sched_getaffinity(0)))
    assert list(threads.values()) == list(worker_cpus.values()) == [len(cpus)]


def test_worker_threads_are_shared_by_its_task_threads() -> None:
    """A worker running K tasks at once (`dask worker --nthreads K`, one per core by
    default) gives each task's torch its share of the cores: every task used all of
    them, so K tasks oversubscribed the machine K times over.  The plugin runs on a
    real worker of 2 task threads, in this process, where torch's setting is read."""
    import torch
    from distributed import Client, LocalCluster

    from geosr.orchestrate.cluster import NO_FIXED_PORT, ModelKey, ModelPlugin

    cpus = len(os.sched_getaffinity(0))
    if cpus < 2:
        pytest.skip("needs 2 CPUs to share between 2 task threads")
    before = torch.get_num_threads()
    try:
        with (
            LocalCluster(
                n_workers=1,
                threads_per_worker=2,
                processes=False,
                dashboard_address=None,
                scheduler_kwargs=NO_FIXED_PORT,
            ) as c,
            Client(c) as client,
        ):
            client.register_plugin(ModelPlugin(ModelKey("bicubic", 1, 2, "cpu", "fp32"), {}))
            # What a task's torch gets, read in the worker's task threads.
            threads = {client.submit(torch.get_num_threads, pure=False).result() for _ in range(4)}
        assert threads == {cpus // 2}
    finally:
        torch.set_num_threads(before)


def test_the_workers_are_counted_by_asking_the_scheduler_not_the_clients_copy() -> None:
    """``client.scheduler_info()`` returns a copy that the client's own refresh replaces,
    without workers, at any moment: on a loaded machine a run was told its one-worker
    cluster had none, and warned that it waited for some.  A refresh every millisecond
    makes that race near certain here: about 1 call in 25 came back empty."""
    import dask
    from distributed import Client, LocalCluster

    from geosr.orchestrate.cluster import NO_FIXED_PORT, worker_addresses

    with (
        dask.config.set({"distributed.client.scheduler-info-interval": "1ms"}),
        LocalCluster(
            n_workers=1, processes=False, dashboard_address=None, scheduler_kwargs=NO_FIXED_PORT
        ) as cluster,
        Client(cluster) as client,
    ):
        counts = [len(worker_addresses(client)) for _ in range(500)]
    assert counts == [1] * 500, f"{counts.count(0)} of 500 said no workers"


def test_cluster_tasks_fill_the_model_calls_of_fp32(
    make_raster, tmp_path: Path, model_images: list[int]
) -> None:
    """An fp32 model call on a CPU takes two images and computes a lone one with a copy of
    itself (CPU_CALL_IMAGES): workers=2 made tasks of one single-band tile, so every tile was
    computed twice, and the run took 2.1x the single process's time (AVX2 EPYC). Tasks now
    hold the tiles of a whole call: the model sees each tile once, and the pixels are the
    single process's."""
    seen = model_images
    data = np.random.default_rng(5).integers(300, 5000, (1, 64, 64)).astype("uint16")
    path = make_raster(data=data)
    common = {"scale": 2, "tile": 32, "precision": "fp32", "device": "cpu"}
    local = geosr.upscale_file(path, tmp_path / "local.tif", **common)
    assert sum(seen) == 4  # 4 tiles, in pairs
    seen.clear()
    cluster = geosr.upscale_file(path, tmp_path / "cluster.tif", workers=2, **common)
    assert sorted(seen) == [2, 2]
    with rasterio.open(local) as a, rasterio.open(cluster) as b:
        assert (a.read() == b.read()).all()
