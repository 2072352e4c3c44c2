"""The Python API inside a user's process: it leaves the host's settings as they were, and
they do not change what it computes.  So does the command called in-process (``geosr.cli.main``,
from a notebook or a test)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
import rasterio
import torch

import geosr

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def test_a_float64_torch_default_changes_no_pixel(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    src = make_raster(count=1, height=64, width=96)
    expected = geosr.upscale_file(src, tmp_path / "default.tif", scale=2, precision="fp32")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = geosr.upscale_file(src, tmp_path / "float64.tif", scale=2, precision="fp32")
        assert torch.get_default_dtype() == torch.float64  # the host's own setting is kept
    finally:
        torch.set_default_dtype(previous)
    with rasterio.open(expected) as a, rasterio.open(got) as b:
        np.testing.assert_array_equal(b.read(), a.read())


@pytest.fixture
def host_figure() -> Iterator[Figure]:
    """A figure the host has open under a backend of its own that is not Agg (a notebook's, Qt's)."""
    import matplotlib
    import matplotlib.pyplot as plt

    previous = matplotlib.get_backend()
    plt.switch_backend("svg")
    try:
        yield plt.figure()
    finally:
        plt.close("all")
        plt.switch_backend(previous)


def _quicklook(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    lr = make_raster(count=1, height=40, width=40)
    geosr.upscale_file(lr, tmp_path / "q.tif", scale=2, model="bicubic", quicklook=True)


def _evaluation_plot(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    from geosr.evaluation import EvalReport, ImageResult
    from geosr.evaluation.metrics import BandMetrics
    from geosr.evaluation.report import write_plot

    band = [BandMetrics(1, 30.0, 0.9, 29.0, 0.8, 1.0, 0.0, 100.0)]
    write_plot(EvalReport("wald", 4, "m", 16, [ImageResult("hr.tif", band)]), tmp_path / "gain.png")


@pytest.mark.parametrize("draw", [_quicklook, _evaluation_plot])
def test_a_figure_drawn_leaves_the_hosts_matplotlib_as_it_was(
    draw: Callable[..., None], host_figure: Figure, make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """``matplotlib.use("Agg")`` switched the host's backend and closed the figures it had open."""
    import matplotlib
    import matplotlib.pyplot as plt

    draw(make_raster, tmp_path)
    assert matplotlib.get_backend() == "svg"
    assert plt.fignum_exists(host_figure.number)
    assert plt.get_fignums() == [host_figure.number]  # geosr's own figures are not left in pyplot


def _run_the_default_model(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    geosr.upscale_file(make_raster(height=32, width=32), tmp_path / "x2.tif", scale=2)


def _load_an_untrained_model(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.warns(geosr.GeosrWarning, match="no bundled weights"):
        geosr.load_model("cnnrnn-fast", bands=1, scale=3)


def _read_a_recipes_model_table(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    from geosr.train import load_config

    load_config(None, {"scale": 2, "model": {"features": 8}, "data": {"train": [{"path": "hr.tif"}]}})


@pytest.mark.parametrize(
    "call", [_run_the_default_model, _load_an_untrained_model, _read_a_recipes_model_table]
)
def test_a_model_built_draws_none_of_the_hosts_random_numbers(
    call: Callable[..., None], make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A model's layers draw their initial values from torch's global generator: loading one
    moved on the random numbers of a host that had seeded torch for its own work."""
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    call(make_raster, tmp_path)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize(("env", "expected"), [({}, "None 32"), ({"GDAL_CACHEMAX": "64"}, "64 64")])
def test_the_api_bounds_gdals_cache_and_leaves_the_environment_as_it_was(
    env: dict[str, str], expected: str
) -> None:
    """geosr's GDAL_CACHEMAX stayed in the environment of the importing process, and so of
    every program it started; a user's own stays, and sizes the cache."""
    code = (
        "import os, geosr.api\nfrom geosr.io.scene import gdal_cache_bytes\n"
        "print(os.environ.get('GDAL_CACHEMAX'), gdal_cache_bytes() // 2**20)"
    )
    clean = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == expected


def test_two_threads_opening_scenes_leave_the_warning_filters_as_they_were(
    make_raster: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each scene is opened with rasterio's NotGeoreferencedWarning ignored for a moment
    (``catch_warnings``, which saves and restores the process's filters): interleaved in two
    threads, the one that ended last put the other's filter back, for good."""
    import geosr.io.scene as scene_io

    paths = [make_raster(f"s{i}.tif") for i in range(2)]
    first_inside, second_inside = threading.Event(), threading.Event()
    describe = scene_io._describe_gdal

    def slow_describe(path: str, src: object) -> object:
        if path == str(paths[0]):  # the first waits (in vain, once serialised) for the second
            first_inside.set()
            second_inside.wait(timeout=0.5)
        else:  # the second ends after the first
            second_inside.set()
            time.sleep(0.2)
        return describe(path, src)

    monkeypatch.setattr(scene_io, "_describe_gdal", slow_describe)
    before = list(warnings.filters)
    # What each thread opened: an error in a thread is no failure of the test, only a warning.
    opened: dict[Path, int] = {}
    first, second = (
        threading.Thread(target=lambda path=path: opened.update({path: scene_io.open_scene(path).count}))
        for path in paths
    )
    first.start()
    first_inside.wait(timeout=5)
    second.start()
    first.join()
    second.join()
    assert opened == dict.fromkeys(paths, 1) and second_inside.is_set()
    assert warnings.filters == before


def test_a_local_cluster_run_leaves_sys_path_as_it_was(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The in-process scheduler and workers of ``workers=N`` each put their scratch folder
    first in ``sys.path``, and took it out as they closed only if it was still first: those
    of a run of 2 workers stayed once the folders were gone, two entries more a run."""
    before = list(sys.path)
    src = make_raster(height=32, width=32)
    geosr.upscale_file(src, tmp_path / "x2.tif", scale=2, model="bicubic", workers=2)
    assert sys.path == before


def test_a_local_cluster_run_leaves_no_scheduler_or_worker_alive(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """distributed's cache of handlers (``distributed.core._expects_comm``) kept every in-process
    server it had served, with its log handler on distributed's loggers: each ``workers=2`` run
    of a notebook left two workers and a scheduler in memory, for good."""
    import gc
    import logging

    from distributed import Scheduler, Worker

    def alive() -> tuple[int, int]:
        gc.collect()
        # type(), not isinstance(): that reads __class__, which for torch.distributed.reduce_op warns.
        servers = sum(issubclass(type(o), Worker | Scheduler) for o in gc.get_objects())
        return servers, len(logging.getLogger("distributed.worker").handlers)

    src = make_raster(height=32, width=32)
    before = alive()  # fewer after: servers an earlier test's own cluster left go too
    for name in ("a.tif", "b.tif"):
        geosr.upscale_file(src, tmp_path / name, scale=2, model="bicubic", workers=2)
    after = alive()
    assert after[0] <= before[0] and after[1] <= before[1], (before, after)


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc for the resident set")
def test_api_calls_leave_the_host_returning_the_memory_it_frees(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """geosr tuned glibc's allocator to keep freed memory (geosr.allocator) in any process
    that built a CPU predictor, for good: after one call, a 300 MiB array the host
    allocated and freed stayed in its resident set (297 MiB more here).  In a fresh process,
    which nothing else has tuned; ``workers=2`` runs its Dask workers in it, as threads."""
    code = """
import os, sys, numpy as np, geosr
geosr.upscale_file(sys.argv[1], sys.argv[2] + "/a.tif", scale=2, model="bicubic")
geosr.upscale_file(sys.argv[1], sys.argv[2] + "/b.tif", scale=2, model="bicubic", workers=2)
def resident():
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
before = resident()
array = np.ones(300 * 2**20, np.uint8)  # every page touched
del array
print((resident() - before) // 2**20)
"""
    src = make_raster(height=32, width=32)
    done = subprocess.run(
        [sys.executable, "-c", code, str(src), str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert int(done.stdout.strip().splitlines()[-1]) < 30, done.stdout


def test_overlapping_cluster_runs_leave_distributeds_loggers_as_they_were() -> None:
    """A run on a cluster keeps distributed's client loggers quiet while it runs (it reports a
    lost scheduler itself), saving their levels and putting them back as it ends.  Two runs in
    two threads, the second started before the first ended, left the levels the first had set
    for good: the host's own Dask clients said nothing below CRITICAL afterwards."""
    import logging

    from geosr.orchestrate.cluster import _quiet_connection_loss

    loggers = [logging.getLogger(name) for name in ("distributed.client", "distributed.batched")]
    before = [logger.level for logger in loggers]
    with contextlib.ExitStack() as second_run:
        with _quiet_connection_loss():  # the first run
            second_run.enter_context(_quiet_connection_loss())
            assert all(logger.level == logging.CRITICAL for logger in loggers)
        assert all(logger.level == logging.CRITICAL for logger in loggers)  # the second goes on
    assert [logger.level for logger in loggers] == before


def test_overlapping_local_cluster_runs_leave_torch_and_dask_as_they_were() -> None:
    """The model plugin of a ``workers=N`` run sets torch's threads for the whole process, and
    the run put the caller's setting back as it ended; its client, the process's default one,
    set dask's ``scheduler`` option, which distributed puts back as its last default client
    closes.  Two runs in two threads, the second started before the first ended, left torch
    on the plugin's share of the cores, and dask on a distributed scheduler with no client:
    every later ``compute()`` of the host's failed."""
    import dask

    from geosr.orchestrate.cluster import cluster_client

    before = torch.get_num_threads(), dask.config.get("scheduler", None)
    torch.set_num_threads(3)  # the host's own
    try:
        with contextlib.ExitStack() as second_run, cluster_client(None, 1, "cpu"):  # the first run
            torch.set_num_threads(1)  # as its plugin does
            second_run.enter_context(cluster_client(None, 1, "cpu"))
        assert torch.get_num_threads() == 3
        assert dask.config.get("scheduler", None) == before[1]
    finally:
        torch.set_num_threads(before[0])
        dask.config.set(scheduler=before[1])


def _torch_threads_of_a_new_thread() -> int:
    """torch's threads as a thread the host starts now sees them: a thread that used torch
    before keeps its own setting (OpenMP's is per thread); a new one takes the last one set."""
    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_a_run_on_the_hosts_own_threaded_cluster_gives_torch_its_threads_back(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The host's own cluster, its workers threads of the host's process (a notebook's
    ``LocalCluster(processes=False)``): the model plugin set torch's threads to a worker's
    share of the cores (1 of 2 here, for 2 workers) and nothing put the host's back."""
    from distributed import Client, LocalCluster

    before = torch.get_num_threads()
    torch.set_num_threads(3)  # the host's own
    try:
        with (
            LocalCluster(n_workers=2, processes=False, protocol="tcp", dashboard_address=":0") as cluster,
            Client(cluster),
        ):
            src = make_raster(height=32, width=32)
            geosr.upscale_file(
                src, tmp_path / "x2.tif", scale=2, model="bicubic", scheduler=cluster.scheduler_address
            )
        assert _torch_threads_of_a_new_thread() == 3
    finally:
        torch.set_num_threads(before)


def test_two_threads_recording_warnings_keep_each_its_own_and_leave_the_process_as_it_was() -> None:
    """What evaluate's runs use in place of ``catch_warnings(record=True)``, which swapped the
    process's filters and ``showwarning`` for all its threads: two evaluations in two threads
    took each other's warnings, and the one that ended last put back the other's."""
    from geosr.errors import warnings_recorded

    filters, shown = list(warnings.filters), warnings.showwarning
    both_inside = threading.Barrier(2)
    got: dict[str, list[str]] = {}

    def record(name: str) -> None:
        with warnings_recorded() as caught:
            both_inside.wait(timeout=5)
            warnings.warn(f"from {name}", UserWarning, stacklevel=1)
            both_inside.wait(timeout=5)
        got[name] = [str(w.message) for w in caught]

    threads = [threading.Thread(target=record, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == {"a": ["from a"], "b": ["from b"]}
    assert warnings.filters == filters and warnings.showwarning is shown


def test_a_cpu_run_computes_in_two_lanes_and_leaves_the_hosts_threads_as_they_were(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A single-process CPU run computes two batches at once, in two lane threads that each set
    their own share of torch's threads (Predictor.predict_in_lane); the host's count is its own
    throughout, and that of threads started after the run too."""
    before = torch.get_num_threads()
    lanes_seen: set[str] = set()
    counts: list[int] = []

    def progress(done: int, total: int) -> None:
        lanes_seen.update(t.name for t in threading.enumerate() if t.name.startswith("geosr-lane"))
        counts.append(torch.get_num_threads())

    torch.set_num_threads(4)  # the host's own
    try:
        geosr.upscale_file(
            make_raster(height=64, width=64), tmp_path / "x2.tif", scale=2, model="bicubic", tile=16,
            progress=progress,
        )  # fmt: skip
        assert len(lanes_seen) == 2
        assert set(counts) == {4} and torch.get_num_threads() == 4
        assert _torch_threads_of_a_new_thread() == 4
    finally:
        torch.set_num_threads(before)


def _the_command_in_process(args: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    """``geosr ARGS`` run by :func:`geosr.cli.main` in this process; its exit status."""
    from geosr.cli import main

    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    with pytest.raises(SystemExit) as exited:
        main()
    return exited.value.code if isinstance(exited.value.code, int) else 0


def _a_run(make_raster: Callable[..., Path], tmp_path: Path) -> list[str]:
    return ["run", str(make_raster()), "-o", str(tmp_path / "x2.tif"), "--model", "bicubic", "--scale", "2"]


def test_the_command_in_process_leaves_the_environment_as_it_was(
    make_raster: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command set CPL_LOG=/dev/null and GDAL_HTTP_LOW_SPEED_TIME, GDAL_HTTP_LOW_SPEED_LIMIT
    and GDAL_HTTP_CONNECTTIMEOUT in os.environ for good: a notebook's (a test's) later GDAL, and
    every program it started, logged nowhere and gave up on a slow server after geosr's 30 s.
    A user's own value is kept throughout."""
    import geosr.io.scene  # noqa: F401 - GDAL's cache sized, geosr's default out of the environment

    for name in ("CPL_LOG", "GDAL_HTTP_LOW_SPEED_LIMIT", "GDAL_HTTP_CONNECTTIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "2")
    before = dict(os.environ)
    assert _the_command_in_process(_a_run(make_raster, tmp_path), monkeypatch) == 0, capsys.readouterr().err
    assert dict(os.environ) == before


def test_the_command_in_process_leaves_rasterios_logger_as_it_was(
    make_raster: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command kept a handler of its own on rasterio's logger for good (it quiets the GDAL
    errors rasterio logs, which geosr reports in its own line): a notebook's later GDAL warnings,
    which Python prints when no handler takes them, went nowhere."""
    import logging

    from geosr.cli import _RASTERIO_QUIET

    rasterio_log = logging.getLogger("rasterio")
    rasterio_log.removeHandler(_RASTERIO_QUIET)  # left by an earlier test's command
    before = list(rasterio_log.handlers)
    assert _the_command_in_process(_a_run(make_raster, tmp_path), monkeypatch) == 0, capsys.readouterr().err
    assert rasterio_log.handlers == before


def test_the_command_in_process_leaves_the_warning_filters_as_they_were(
    make_raster: Callable[..., Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The command put its filter for geosr's warnings ("default": each shown once) first in the
    process's filters for good: a notebook that ignored them, or made them errors, saw them
    again, as ordinary warnings, after one command."""
    warnings.simplefilter("ignore", geosr.GeosrWarning)  # the host's own (pytest restores the filters)
    before = list(warnings.filters)
    assert _the_command_in_process(_a_run(make_raster, tmp_path), monkeypatch) == 0, capsys.readouterr().err
    assert warnings.filters == before


_CACHE_AFTER = """
import os, sys
from geosr.cli import main
{between}
variable = os.environ.get('GDAL_CACHEMAX')
from geosr.io.scene import gdal_cache_bytes  # sizes GDAL's cache
print(variable, os.environ.get('GDAL_CACHEMAX'), gdal_cache_bytes() // 2**20)
"""
_VERSION_IN_PROCESS = "sys.argv = ['geosr', '--version']\ntry:\n    main()\nexcept SystemExit:\n    pass"


@pytest.mark.parametrize(
    ("between", "expected"),
    [(_VERSION_IN_PROCESS, "None None 32"), ("os.environ['GDAL_CACHEMAX'] = '32'", "32 32 32")],
    ids=["a command that reads nothing", "the user's own 32 set after the import"],
)
def test_importing_the_command_leaves_gdals_cache_variable_as_it_was(between: str, expected: str) -> None:
    """Importing geosr.cli (any of geosr.io's modules) put GDAL_CACHEMAX=32 in the environment,
    taken out only as geosr.io.scene was imported: ``geosr --version`` run in-process left it
    there for the caller's GDAL and every program it started; and a user's own GDAL_CACHEMAX=32,
    set after the import, was taken out.  GDAL's cache is geosr's 32 MiB all the same."""
    clean = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    done = subprocess.run(
        [sys.executable, "-c", _CACHE_AFTER.format(between=between)],
        env={**clean, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.strip().splitlines()[-1] == expected
