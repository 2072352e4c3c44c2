"""Cluster faults with a real `dask scheduler` and `dask worker` processes on 127.0.0.1:
a worker killed mid-run changes nothing in the output; a lost scheduler fails the run
clearly, and `--resume` (local) finishes it with identical pixels."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio

import geosr
from geosr.io.runstate import run_dir
from geosr.orchestrate.cluster import ModelPlugin
from tests.conftest import UTM_TRANSFORM
from tests.test_distributed import start_scheduler
from tests.test_run import random_model_file

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
QUIET = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
COMMON = {"scale": 2, "tile": 16, "batch_size": 1, "device": "cpu", "precision": "fp32"}


class Cluster:
    def __init__(
        self, tmp: Path, workers: int, worker_env: dict[str, str], *options: str, running: bool = True
    ) -> None:
        """``running``: wait for the workers to run tasks; else only for them to join (paused, say)."""
        self.tmp = tmp
        self.env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        self.scheduler, self.address = start_scheduler(tmp, self.env, new_session=True)
        self.workers = self.start_workers(workers, worker_env, *options)
        self.more: list[subprocess.Popen[bytes]] = []
        from distributed import Client

        deadline = time.time() + 90
        while True:
            try:
                with Client(self.address, timeout="5s") as client:
                    if running:
                        client.wait_for_workers(workers, timeout=60)
                    elif len(client.scheduler_info(n_workers=-1)["workers"]) < workers:
                        raise TimeoutError("not all workers joined yet")
                break
            except (OSError, TimeoutError):
                if time.time() > deadline:
                    raise
                time.sleep(0.5)

    def start_workers(
        self, workers: int, worker_env: dict[str, str], *options: str
    ) -> subprocess.Popen[bytes]:
        """`dask worker` for ``workers`` worker processes, with ``options`` (--no-nanny, say)."""
        return subprocess.Popen(
            [
                str(BIN / "dask"),
                "worker",
                self.address,
                "--nworkers",
                str(workers),
                "--nthreads",
                "1",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
                "--local-directory",
                str(self.tmp),
                *options,
            ],
            env={**self.env, **worker_env},
            start_new_session=True,
            **QUIET,
        )

    def close(self) -> None:
        for proc in (*self.more, self.workers, self.scheduler):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An input, a small random CNN-RNN and their local output: read-only, shared by the tests
    (each writes its own outputs in its own tmp_path)."""
    folder = tmp_path_factory.mktemp("job")
    data = np.random.default_rng(5).integers(300, 5000, (2, 112, 96)).astype("uint16")
    src = folder / "scene.tif"
    profile = {"driver": "GTiff", "count": 2, "height": 112, "width": 96, "dtype": "uint16"}
    with rasterio.open(src, "w", crs="EPSG:32633", transform=UTM_TRANSFORM, **profile) as f:
        f.write(data)
    weights = random_model_file(folder, 2)
    ref = geosr.upscale_file(src, folder / "local.tif", model=str(weights), **COMMON)
    return {"src": src, "weights": weights, "ref": ref}


def run_on(cluster: Cluster, job: dict[str, Path], dst: Path) -> Path:
    """The job's run on ``cluster``, written to ``dst``."""
    return geosr.upscale_file(job["src"], dst, model=str(job["weights"]), scheduler=cluster.address, **COMMON)


def pixels(path: Path) -> np.ndarray:
    with rasterio.open(path) as f:
        return f.read()


@pytest.mark.parametrize("workers", [2, 1])
def test_worker_killed_mid_run_gives_identical_output(job, tmp_path: Path, workers: int) -> None:
    """With one worker, the job description died with it: it was scattered, which the
    scheduler cannot make again, and the run failed as "lost the Dask scheduler"."""
    marker = tmp_path / "fault-fired"
    # The first worker to finish its 3rd task dies with SIGKILL (once, across the cluster);
    # its nanny restarts it and the scheduler reruns what was lost.
    cluster = Cluster(tmp_path, workers, {"GEOSR_FAULT_AT": "task:3", "GEOSR_FAULT_ONCE": str(marker)})
    try:
        out = run_on(cluster, job, tmp_path / "cluster.tif")
    finally:
        cluster.close()
    assert marker.exists(), "the fault never fired: the test proved nothing"
    np.testing.assert_array_equal(pixels(out), pixels(job["ref"]))
    assert not run_dir(out).exists()


def test_workers_dying_while_they_load_the_model_is_one_line_and_no_lasting_harm(job, tmp_path: Path) -> None:
    """Workers that die as the plugin loads the model (over their memory limit, say): the
    scheduler dropped the registration's connection, and the run stopped as "lost the Dask
    scheduler" while it ran on; and it kept the plugin, so every worker the nanny started
    in place of a dead one loaded the model and died in turn, long after the run."""
    from distributed import Client

    cluster = Cluster(tmp_path, 1, {"GEOSR_FAULT_AT": "model:1"})  # each worker dies at its first load
    dst = tmp_path / "cluster.tif"
    try:
        with pytest.raises(geosr.GeosrError, match="died while loading the model") as caught:
            run_on(cluster, job, dst)
        with Client(cluster.address) as client:
            plugins = client.run_on_scheduler(lambda dask_scheduler: list(dask_scheduler.worker_plugins))
    finally:
        cluster.close()
    assert "lost the Dask scheduler" not in str(caught.value) and "resume=True" in str(caught.value)
    assert ModelPlugin.name not in plugins  # by the name the run registers it under
    assert not dst.exists()


def test_workers_all_gone_mid_run_say_that_the_run_waits(job, tmp_path: Path, monkeypatch) -> None:
    """The only worker, started without a nanny, dies mid-run: Dask waits for another to
    join, and the run sat still, without a word, until killed.  A worker joins once the
    warning is out, and the run ends with the local run's pixels."""
    from geosr.orchestrate import cluster as orchestrate

    monkeypatch.setattr(orchestrate, "NO_WORKERS_CHECK", 1.0)
    monkeypatch.setattr(orchestrate, "RESTART_GRACE", 2.0)
    marker = tmp_path / "fault-fired"
    cluster = Cluster(
        tmp_path, 1, {"GEOSR_FAULT_AT": "task:3", "GEOSR_FAULT_ONCE": str(marker)}, "--no-nanny"
    )
    said: list[str] = []

    def warn(message: Warning | str, *args: object, **kwargs: object) -> None:
        """Records what the run warns of, and starts a worker once it says it waits for one:
        only then (a worker started on any warning, as before, hid a run that never said it).
        The run's ``warn`` itself (geosr.errors.warn): no filter of the suite's can hide it."""
        said.append(str(message))
        if "has no workers left" in str(message):
            cluster.more.append(cluster.start_workers(1, {}))

    done = threading.Event()

    def fallback() -> None:
        """Without the warning: no hang, a failure.  Counted from the worker's death, which
        a loaded machine took over a minute to reach (a timer from the start of the run
        then started a worker before the first one died)."""
        while not marker.exists() and not done.wait(0.1):
            pass
        if not done.wait(90.0) and not said:
            cluster.more.append(cluster.start_workers(1, {}))

    threading.Thread(target=fallback, daemon=True).start()
    try:
        monkeypatch.setattr(orchestrate, "warn", warn)
        out = run_on(cluster, job, tmp_path / "cluster.tif")
    finally:
        done.set()
        cluster.close()
    assert marker.exists(), "the fault never fired: the test proved nothing"
    assert [m for m in said if "has no workers left; the run waits" in m], said
    np.testing.assert_array_equal(pixels(out), pixels(job["ref"]))


def test_a_worker_its_nanny_restarts_is_not_said_to_be_gone(job, tmp_path: Path, monkeypatch) -> None:
    """The only worker dies mid-run and its nanny starts another (as after a kill for memory): the
    scheduler has no worker until it joins, and the run warned meanwhile that it "has no workers
    left; the run waits for some to join" of a cluster whose worker was on its way back.  Here
    the run asks as soon as no task has finished for 0.2 s, well within the restart."""
    from geosr.orchestrate import cluster as orchestrate

    monkeypatch.setattr(orchestrate, "NO_WORKERS_CHECK", 0.2)
    marker = tmp_path / "fault-fired"
    cluster = Cluster(tmp_path, 1, {"GEOSR_FAULT_AT": "task:3", "GEOSR_FAULT_ONCE": str(marker)})
    said: list[str] = []
    try:
        monkeypatch.setattr(orchestrate, "warn", lambda message, *args, **kwargs: said.append(str(message)))
        out = run_on(cluster, job, tmp_path / "cluster.tif")
    finally:
        cluster.close()
    assert marker.exists(), "the fault never fired: the test proved nothing"
    assert not [m for m in said if "has no workers left" in m], said
    np.testing.assert_array_equal(pixels(out), pixels(job["ref"]))


def test_workers_all_paused_at_their_memory_limit_say_that_the_run_waits(
    job, tmp_path: Path, monkeypatch
) -> None:
    """The only worker paused at its memory limit (``dask worker --memory-limit`` below what the
    model holds): it starts no task until its memory falls, which it never did, and the run sat
    still, without a word, until killed.  Here it pauses at once (a pause fraction of 1 %); an
    unpaused worker joins once the warning is out, and the run ends with the local run's pixels."""
    from geosr.orchestrate import cluster as orchestrate

    monkeypatch.setattr(orchestrate, "NO_WORKERS_CHECK", 1.0)
    paused = {
        "DASK_DISTRIBUTED__WORKER__MEMORY__PAUSE": "0.01",
        "DASK_DISTRIBUTED__WORKER__MEMORY__TARGET": "False",
        "DASK_DISTRIBUTED__WORKER__MEMORY__SPILL": "False",
        "DASK_DISTRIBUTED__WORKER__MEMORY__TERMINATE": "False",
    }
    cluster = Cluster(tmp_path, 1, paused, "--memory-limit", "4GiB", running=False)
    said: list[str] = []

    def warn(message: Warning | str, *args: object, **kwargs: object) -> None:
        said.append(str(message))
        if "is paused" in str(message) and not cluster.more:
            cluster.more.append(cluster.start_workers(1, {}))
            # And the paused one stopped: the tasks it holds then go to the newcomer.  Left to
            # Dask's work stealing from a paused worker, the run sometimes never ended (1 run in
            # 3 or 4 here, before and after this session's changes alike).
            os.killpg(cluster.workers.pid, signal.SIGKILL)

    done = threading.Event()

    def fallback() -> None:
        """Without the warning: no hang, a failure.  Counted from the start of the run, which on
        a loaded machine took over a minute to load the model on the worker, before any check."""
        if not done.wait(240.0) and not said:
            cluster.more.append(cluster.start_workers(1, {}))

    threading.Thread(target=fallback, daemon=True).start()
    try:
        monkeypatch.setattr(orchestrate, "warn", warn)
        out = run_on(cluster, job, tmp_path / "cluster.tif")
    finally:
        done.set()
        cluster.close()
    paused_line = [m for m in said if "is paused, near its memory limit" in m]
    assert paused_line and "MiB of 4096 MiB" in paused_line[0] and "--resume" in paused_line[0], said
    # Said once: it was said again whenever the paused worker's memory figure moved (61 MiB,
    # then 364 MiB, 6 ms later).
    assert len(paused_line) == 1, said
    np.testing.assert_array_equal(pixels(out), pixels(job["ref"]))


def test_a_worker_without_geosr_is_one_line(job, tmp_path: Path) -> None:
    """A worker whose environment lacks geosr cannot unpickle the run's model plugin, and
    distributed answered with a bare Exception: a traceback ending in
    'Exception: ModuleNotFoundError("No module named 'geosr'")', exit status 1."""
    hidden = tmp_path / "without" / "geosr"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'geosr'\", name='geosr')\n"
    )
    cluster = Cluster(tmp_path, 1, {"PYTHONPATH": str(hidden.parent)})
    dst = tmp_path / "cluster.tif"
    try:
        with pytest.raises(geosr.GeosrError) as caught:
            run_on(cluster, job, dst)
    finally:
        cluster.close()
    assert str(caught.value) == (
        f"a Dask worker of {cluster.address} cannot import geosr (No module named 'geosr'): install "
        f"geosr {geosr.__version__} where the workers run, as on this machine, then rerun the same command"
    )
    assert not dst.exists()


def another_geosr_version(tmp_path: Path) -> dict[str, str]:
    """A worker environment whose geosr is this one but says it is 0.0.1."""
    real = Path(geosr.__file__).parent
    other = tmp_path / "other" / "geosr"
    other.mkdir(parents=True)
    (other / "__init__.py").write_text(
        f"__path__ = [{str(real)!r}]\n"
        f"exec(compile(open({str(real / '__init__.py')!r}).read(), 'geosr/__init__.py', 'exec'))\n"
        "__version__ = '0.0.1'\n"
    )
    return {"PYTHONPATH": str(other.parent)}


def test_a_worker_with_another_geosr_version_is_one_line(job, tmp_path: Path) -> None:
    """A worker running another release of geosr ran the client's tasks with its own code,
    without a word: the same pixels only if nothing they touch changed between the two."""
    cluster = Cluster(tmp_path, 1, another_geosr_version(tmp_path))
    dst = tmp_path / "cluster.tif"
    try:
        with pytest.raises(geosr.GeosrError, match=r"runs geosr 0\.0\.1, this machine ") as caught:
            run_on(cluster, job, dst)
    finally:
        cluster.close()
    assert f"install geosr {geosr.__version__} where the workers run" in str(caught.value)
    assert not dst.exists()


def test_a_worker_with_another_geosr_version_joining_mid_run_is_one_line(job, tmp_path: Path) -> None:
    """A worker of another geosr release that joins once the run has started: its model plugin
    refuses it, but distributed only logs that, and the worker ran the client's tasks with its
    own code.  Once a few tiles are done, the run's only worker (no nanny) is stopped, the other
    one started, and once it has joined the first is killed: the tasks left go to the new one."""
    import psutil
    from distributed import Client

    cluster = Cluster(tmp_path, 1, {}, "--no-nanny")
    dst = tmp_path / "cluster.tif"
    first = psutil.Process(cluster.workers.pid)
    other = another_geosr_version(tmp_path)
    done, joined = threading.Event(), threading.Event()

    def two_workers() -> bool:
        try:
            with Client(cluster.address, timeout="10s") as client:
                return len(client.scheduler_info(n_workers=-1)["workers"]) > 1
        except (OSError, TimeoutError):  # asked again: the thread must live to resume or kill the first
            return False

    def swap_workers() -> None:
        """Without a worker joining within 60 s, the first carries on: no hang, a failure."""
        journal = run_dir(dst) / "journal"
        while not (journal.exists() and journal.read_text().count("\n") >= 3):
            if done.wait(0.05):
                return
        first.suspend()  # so that the run cannot end before the other worker joins
        cluster.more.append(cluster.start_workers(1, other))
        deadline = time.monotonic() + 60
        while not done.is_set() and time.monotonic() < deadline:
            if two_workers():
                joined.set()
                first.kill()
                return
            time.sleep(0.2)
        first.resume()

    threading.Thread(target=swap_workers, daemon=True).start()
    try:
        with pytest.raises(geosr.GeosrError) as caught:
            run_on(cluster, job, dst)
    finally:
        done.set()
        with contextlib.suppress(psutil.NoSuchProcess):
            first.resume()
        cluster.close()
    assert joined.is_set(), "no worker joined mid-run: the test proved nothing"
    assert re.fullmatch(
        r"the Dask worker tcp://127\.0\.0\.1:\d+ runs geosr 0\.0\.1, this machine "
        + re.escape(f"{geosr.__version__}: install geosr {geosr.__version__} where the workers run, then ")
        + "rerun the same command",
        str(caught.value),
    ), caught.value
    assert not dst.exists() and not run_dir(dst).exists()


def test_a_stopped_worker_is_said_to_be_stalled(job, tmp_path: Path, monkeypatch) -> None:
    """The only worker stopped mid-run (SIGSTOP: a machine swapping, or cut off): the scheduler
    waits 5 minutes (worker-ttl) before it gives up on it, and the run sat still meanwhile,
    without a word.  The worker carries on once the warning is out, and the run ends with the
    local run's pixels."""
    import psutil

    from geosr.orchestrate import cluster as orchestrate

    monkeypatch.setattr(orchestrate, "NO_WORKERS_CHECK", 1.0)
    monkeypatch.setattr(orchestrate, "STALLED_AFTER", 3.0, raising=False)
    cluster = Cluster(tmp_path, 1, {})
    dst = tmp_path / "cluster.tif"
    (worker,) = [
        p for p in psutil.Process(cluster.workers.pid).children() if "spawn_main" in " ".join(p.cmdline())
    ]
    stopped, done = threading.Event(), threading.Event()
    said: list[str] = []

    def warn(message: Warning | str, *args: object, **kwargs: object) -> None:
        if stopped.is_set():
            said.append(str(message))
            worker.resume()

    def stop() -> None:
        """Once a few tiles are done; without the warning, carries on after 60 s: no hang, a failure."""
        journal = run_dir(dst) / "journal"
        while not (journal.exists() and journal.read_text().count("\n") >= 3):
            if done.wait(0.05):
                return
        worker.suspend()
        stopped.set()
        done.wait(60.0)
        with contextlib.suppress(psutil.NoSuchProcess):  # the test's cluster closed meanwhile
            worker.resume()

    threading.Thread(target=stop, daemon=True).start()
    try:
        monkeypatch.setattr(orchestrate, "warn", warn)
        out = run_on(cluster, job, dst)
    finally:
        done.set()
        worker.resume()
        cluster.close()
    assert stopped.is_set(), "the worker was never stopped: the test proved nothing"
    assert [m for m in said if m.startswith("the Dask worker tcp://") and "has not been heard from" in m], (
        said
    )
    np.testing.assert_array_equal(pixels(out), pixels(job["ref"]))


def test_a_client_whose_clock_runs_ahead_calls_no_worker_stalled(tmp_path: Path, monkeypatch) -> None:
    """The workers' last reports are stamped by the scheduler's clock, and the run compared them
    with this machine's: a client whose clock ran over a minute ahead of the scheduler's (a laptop
    against a cluster) warned that each healthy worker 'has not been heard from for over 60 s'."""
    from distributed import Client

    from geosr.orchestrate import cluster as orchestrate

    monkeypatch.setattr(orchestrate, "NO_WORKERS_CHECK", 0.2)  # asked about after 0.2 s without a result
    said: list[str] = []
    monkeypatch.setattr(orchestrate, "warn", lambda message, *args, **kwargs: said.append(str(message)))
    cluster = Cluster(tmp_path, 1, {})
    try:
        with Client(cluster.address, timeout="30s") as client:
            task = client.submit(time.sleep, 2.0, pure=False)
            wall_clock = time.time
            monkeypatch.setattr(time, "time", lambda: wall_clock() + 3600.0)  # this machine's: an hour ahead
            try:
                assert list(orchestrate._as_finished(client, [task], cluster.address)) == [None]
            finally:
                monkeypatch.setattr(time, "time", wall_clock)
    finally:
        cluster.close()
    assert said == []


def test_a_task_that_kills_every_worker_is_one_resumable_line(job, tmp_path: Path, monkeypatch) -> None:
    """A task whose worker dies each time (out of memory, say): distributed's KilledWorker
    came out as a traceback.  The scheduler gives up at the first death here.  The line
    told a run of one tile a batch (--batch-size 1, as here) to pass a smaller --batch-size."""
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES", "0")
    cluster = Cluster(tmp_path, 1, {"GEOSR_FAULT_AT": "task:1"})
    dst = tmp_path / "cluster.tif"
    try:
        with pytest.raises(
            geosr.GeosrError, match="every Dask worker that ran one of its tasks died"
        ) as caught:
            run_on(cluster, job, dst)
    finally:
        cluster.close()
    assert "give the workers more memory, then rerun" in str(caught.value)
    assert not dst.exists() and run_dir(dst).exists()  # kept for --resume


def test_lost_scheduler_fails_clearly_then_resume_finishes(job, tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, 1, {})
    dst = tmp_path / "cluster.tif"
    args = [str(BIN / "geosr"), "run", str(job["src"]), "-o", str(dst), "--model", str(job["weights"])]
    args += ["--scale", "2", "--tile", "16", "--batch-size", "1", "--device", "cpu", "--precision", "fp32"]
    env = {**os.environ, "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s"}
    run = subprocess.Popen(
        [*args, "--scheduler", cluster.address], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        journal = run_dir(dst) / "journal"
        deadline = time.time() + 120
        while not (journal.exists() and journal.read_text().count("\n") >= 3):
            assert run.poll() is None and time.time() < deadline, (
                "the run ended before the scheduler was lost"
            )
            time.sleep(0.05)
        os.killpg(cluster.scheduler.pid, signal.SIGKILL)
        _, stderr = run.communicate(timeout=120)
    finally:
        cluster.close()
        if run.poll() is None:
            run.kill()
    text = " ".join(stderr.split())
    assert run.returncode == 2, stderr
    assert "Traceback" not in text and "lost the Dask scheduler" in text and "--resume" in text, stderr
    assert not dst.exists() and run_dir(dst).is_dir()
    # The command it prints resumes it as printed: here, without the lost --scheduler (it
    # named it, and waited 20 s for it, then failed).
    printed = text.split("(to resume: ")[1].removesuffix(")")
    assert "--scheduler" not in printed and printed.endswith("--resume"), printed
    resumed = subprocess.run(
        [str(BIN / "geosr"), *shlex.split(printed)[1:]],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(pixels(dst), pixels(job["ref"]))
    assert not run_dir(dst).exists()


def test_a_lost_connections_unawaited_gather_logs_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    """The run gathers results in a task of the client's event loop (as_completed with its
    results); when the scheduler is lost, that task's CommClosedError is awaited by nobody and
    tornado logs it as an "Exception in callback" traceback, which CI saw above the run's one
    line in test_lost_scheduler_fails_clearly_then_resume_finishes.  Logged here as tornado does."""
    import logging

    from geosr.orchestrate.cluster import _quiet_connection_loss

    with caplog.at_level(logging.NOTSET), _quiet_connection_loss():
        logging.getLogger("tornado.application").error(
            "Exception in callback", exc_info=OSError(104, "reset")
        )
    assert not caplog.records
