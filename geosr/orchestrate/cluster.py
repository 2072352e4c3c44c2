"""The same job on a Dask cluster: an existing one (``--scheduler``) or a local one (``--workers``).

Tasks are the predictor's batches of the single-process run, so every tile is
computed exactly as it is locally.  Each task receives the (shared, small)
job description and its tiles, reads the input itself by path, and writes its
output region straight into the run's Zarr store on the shared filesystem
(:mod:`geosr.io.run_store`, whose chunks each tile owns whole, so concurrent and repeated
writes are safe): nothing large travels through the scheduler or the client.
The client journals each finished task; it builds the COG or Zarr output from
the store at the end, as a local run does.

Faults: a worker that dies has its tasks rescheduled by the scheduler (tasks
are idempotent); a lost scheduler stops the run with a
:class:`~geosr.errors.ResumableError`, and ``--resume`` finishes it.

The model is loaded once per worker by :class:`ModelPlugin`, which also gives
torch its threads back: Dask's nanny starts workers with ``OMP_NUM_THREADS=1``
(and ``MALLOC_TRIM_THRESHOLD_``), which costs torch most of a multi-core
machine.  A local cluster (``--workers N``) runs its workers as threads of this
process (:func:`cluster_client`): no nanny, no process start-up; on a machine
with GPUs and dask-cuda installed (``pip install geosr[cuda]``), it runs one
worker process per GPU instead (:func:`local_workers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import logging
import os
import pickle
import re
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeGuard

import dask
from distributed import Client, KilledWorker, LocalCluster, WorkerPlugin, as_completed, get_worker
from distributed.client import FuturesCancelledError
from distributed.comm import CommClosedError
from distributed.comm.addressing import parse_address, parse_host_port

from geosr import __version__
from geosr.allocator import keep_freed_memory
from geosr.errors import (
    GeosrError,
    OptionError,
    ResumableError,
    SchedulerLostError,
    SchedulerUnreachableError,
    warn,
)
from geosr.faults import checkpoint
from geosr.held import TORCH_THREADS, setting_held
from geosr.io.remote import is_remote
from geosr.io.run_store import StoreWriter
from geosr.io.runstate import RunState
from geosr.io.scene import Scene, release
from geosr.models import MODEL_NAMES
from geosr.models.weights import weights_paths
from geosr.orchestrate.lazy import cached_predictor, predictor_builds
from geosr.pipeline import Job, batches, process_batch, read_batch
from geosr.resources import usable_cpus
from geosr.tiling import Tile, TilePlan


@dataclass(frozen=True)
class ModelKey:
    """What identifies a loaded predictor on a worker (hashable, tiny to ship)."""

    model: str | None
    bands: int
    scale: int
    device: str
    precision: str
    compile: str = "off"
    version: str = __version__
    """The geosr of the client that made the key, which each task checks (:func:`_refuse_another_version`)."""

    def predictor(self) -> Any:
        """This process's cached :class:`~geosr.predictor.Predictor` for the key."""
        # A worker sees its tasks one by one and cannot tell whether compiling pays
        # off, so ``auto`` stays eager there; ``on`` compiles once per worker.
        compile = "on" if self.compile == "on" else "off"
        return cached_predictor(self.model, self.bands, self.scale, self.device, self.precision, compile)


# Without a dashboard the scheduler still serves its health and metrics routes, on
# port 8787 unless told otherwise: beside a user's own Dask dashboard that printed
# "Port 8787 is already in use" on every --workers run.  Any free port will do.
NO_FIXED_PORT = {"dashboard_address": ":0"}


_PROCESS_TOKEN = uuid.uuid4().hex


def this_process() -> tuple[int, str]:
    """What tells this process from the others: a forked child has its token but another
    pid, a process on another host may have its pid but another token."""
    return os.getpid(), _PROCESS_TOKEN


class ModelPlugin(WorkerPlugin):
    """Load the model once when a worker joins, and give torch the worker's cores.

    A worker in a process of its own also gets glibc's allocator tuned for the model's
    tensors (:mod:`geosr.allocator`), as the ``geosr`` command tunes its own; the worker
    threads of ``workers=N`` run in the caller's process, whose allocator geosr leaves alone.
    """

    name = "geosr-model"

    def __init__(self, key: ModelKey, workers_by_host: dict[str, int]) -> None:
        self.key = key
        self.workers_by_host = workers_by_host
        self.client_process = this_process()

    def setup(self, worker: Any) -> None:
        """Refuse a ``worker`` of another geosr version, then set its torch threads and load its
        model; a failure is raised for the client."""
        _refuse_another_version(self.key.version, worker.address)
        import torch

        # The worker's own CPUs, counted where it runs: the client's machine (a laptop
        # driving a 64-core node) says nothing about the worker's.  They are shared by
        # the workers on its host and by the worker's task threads, each of which runs
        # torch on a batch at once: `dask worker` starts one thread per core by default,
        # and torch's threads for each on top oversubscribed the cores.
        sharing = self.workers_by_host.get(_host(worker.address), 1)
        tasks_at_once = max(1, int(getattr(worker.state, "nthreads", 1)))
        torch.set_num_threads(max(1, usable_cpus() // (sharing * tasks_at_once)))
        try:
            predictor = self.key.predictor()
        except (GeosrError, OSError) as exc:
            failure: BaseException = exc
        else:
            if predictor.torch_device.type == "cpu" and this_process() != self.client_process:
                keep_freed_memory()
            checkpoint("model")
            return
        raise for_the_client(failure, [], self.key, worker.address)


def _refuse_another_version(version: str, worker: str) -> None:
    """Refuse to run on ``worker`` when its geosr is not the client's ``version``.

    Its tasks would unpickle the client's job with their own code: at best a traceback, at
    worst other pixels than the client's version makes.  :class:`ModelPlugin` refuses a worker
    present when the run starts; one that joins later only logs its plugin's refusal and is
    given tasks all the same, so each task checks too (:func:`_run_batch`).
    """
    if __version__ != version:
        raise OptionError(
            f"the Dask worker {worker} runs geosr {__version__}, this machine {version}: install "
            f"geosr {version} where the workers run, then rerun the same command"
        )


def model_loads() -> int:
    """How many times this process built a predictor (for the once-per-worker test)."""
    return predictor_builds()


TASKS_PER_WORKER = 8
"""Fewest tasks per worker before tasks shrink below a batch (see :func:`task_size`)."""


def task_size(tiles: int, batch: int, workers: int, least: int = 1) -> int:
    """Tiles per task: the predictor's batch, or fewer when that would leave each
    worker under :data:`TASKS_PER_WORKER` tasks, but never under ``least`` (the tiles
    of a whole model call, :meth:`~geosr.predictor.Predictor.whole_call_tiles`).

    Few, large tasks end unevenly: on the 2048^2 benchmark scene (16 tiles), 8
    tasks of 2 tiles on 2 workers ran at 0.85x the single process, 16 tasks of
    one tile at 0.97x (bf16).  In fp32 a CPU model call takes two images, and a
    lone one is computed with a copy of itself: tasks of one single-band tile
    computed every tile twice, and the same cluster ran at 0.47x the single
    process (AVX2 EPYC, 2026-12-04).  Outputs do not depend on the batch (tested).
    """
    return max(1, min(batch, least), min(batch, tiles // (TASKS_PER_WORKER * max(1, workers))))


def worker_addresses(client: Client) -> list[str]:
    """The addresses of the workers that ``client``'s scheduler has now.

    Asked of the scheduler directly: ``client.scheduler_info()`` returns the client's
    shared copy, which the client's own refresh (every 2 s, with no workers in it) can
    replace between the fetch and the return.  On a loaded machine it then said "no
    workers" of a cluster that had them, and the run warned of a cluster with none.
    """
    return list(_workers(client))


def _workers(client: Client) -> dict[str, dict[str, Any]]:
    """The workers that ``client``'s scheduler has now, by address: what it knows of each
    (``status``, ``memory_limit``, ``metrics``), asked of it directly (see :func:`worker_addresses`)."""
    if client.scheduler is None:  # closed: as a lost scheduler, which the run reports
        raise CommClosedError("the client is closed")
    return dict(client.sync(client.scheduler.identity, n_workers=-1)["workers"])


def _workers_by_host(workers: Sequence[str]) -> dict[str, int]:
    """How many of ``workers`` (addresses) run on each host, which share its CPUs."""
    per_host: dict[str, int] = {}
    for address in workers:
        host = _host(address)
        per_host[host] = per_host.get(host, 0) + 1
    return per_host


def _host(address: str) -> str:
    """The machine of a worker address: ``tcp://10.0.0.5:4000`` or in-process ``inproc://10.0.0.5/77/3``."""
    return address.split("://", 1)[-1].split("/", 1)[0].rsplit(":", 1)[0]


@contextlib.contextmanager
def _quiet_connection_loss() -> Iterator[None]:
    """Keep distributed's tracebacks about a lost scheduler off the terminal.

    The run reports the loss itself, in one line with the command that resumes
    it (:class:`~geosr.errors.ResumableError`); distributed would log the same
    event as several tracebacks first (the client's, and its batched stream's "Batched Comm
    Closed" with a CommClosedError traceback, which CI once saw above the line).  Results are
    gathered by ``as_completed(with_results=True)`` in a task of the client's event loop, whose
    CommClosedError on the lost connection nobody awaits: tornado logs it as an "Exception in
    callback" traceback (``tornado.application``), which CI saw above the line too.
    """
    with _quiet_loggers(
        "distributed.client", "distributed.utils", "distributed.batched", "tornado.application"
    ):
        yield


def _timeouts_left_unsaid(io_loop: object) -> None:
    """Keep off the terminal the timeouts a cluster's event loop (``io_loop``: tornado's, over
    asyncio's) is stopped on: asyncio's "Future exception was never retrieved ...
    TimeoutError('Timeout')", printed whenever the future was collected (after the
    benchmark's cluster figure, or as Python exited).

    A batched stream of distributed waits on a tornado ``Event`` with a timeout; when that
    timeout fires in the loop's last turn, as the cluster closes, the future holds the
    TimeoutError and the coroutine that would take it never runs again.  Anything else the
    loop reports goes to the handler it had, or asyncio's own.
    """
    loop = getattr(io_loop, "asyncio_loop", None)
    if not isinstance(loop, asyncio.AbstractEventLoop):
        return
    before = loop.get_exception_handler()

    def report(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        unretrieved = context.get("message") == "Future exception was never retrieved"
        if unretrieved and isinstance(context.get("exception"), TimeoutError):
            return
        if before is None:
            loop.default_exception_handler(context)
        else:
            before(loop, context)

    loop.set_exception_handler(report)


NOT_THE_DEFAULT = {"set_as_default": False}
"""geosr's clients are not the process's default Dask client.  A default one sets dask's
``scheduler`` option, and puts back the value it found as the last default client closes:
two runs in two threads, the second started before the first ended, left it at
``dask.distributed`` with no client, and every later ``compute()`` of the caller's failed
("Requested dask.distributed scheduler but no Client active").  Nor do the caller's own
computations in other threads go to geosr's cluster while a run lasts."""


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Keep the loggers ``names`` (and those under them left at their level) off the terminal."""
    with contextlib.ExitStack() as held:
        for logger in map(logging.getLogger, names):
            level = functools.partial(getattr, logger, "level")
            held.enter_context(setting_held(f"level of {logger.name}", level, logger.setLevel))
            logger.setLevel(logging.CRITICAL)
        yield


@contextlib.contextmanager
def local_cluster_starting(option: str) -> Iterator[None]:
    """Within: a local cluster that cannot make its scratch space is one line naming the folder.

    Dask keeps it in ``DASK_TEMPORARY_DIRECTORY``, else the temporary folder (``TMPDIR``); one
    on a read-only file system ended the run in a RuntimeError traceback ('Cluster failed to
    start: [Errno 30] Read-only file system: .../dask-scratch-space'), after a log warning.
    """
    try:
        with _quiet_loggers("distributed.deploy.spec"):
            yield
    except RuntimeError as exc:
        cause = exc.__cause__
        if not (isinstance(cause, OSError) and (cause.filename or "temporary directory" in str(cause))):
            raise
        raise OptionError(
            f"{option}: the local Dask cluster did not start ({cause.strerror or cause}"
            f"{f': {cause.filename}' if cause.filename else ''}); Dask keeps its scratch space in "
            "DASK_TEMPORARY_DIRECTORY, else in the temporary folder (TMPDIR): set it to a writable folder"
        ) from None


def local_workers(requested: int, device: str, gpus: int, dask_cuda: bool) -> tuple[str, int]:
    """How ``--workers N`` runs on this machine: the kind of local cluster and its size.

    Parameters
    ----------
    requested : int
        ``N``, at least 1.
    device : str
        The run's ``--device`` (``auto``, ``cpu``, ``cuda``).
    gpus : int
        CUDA devices visible here.
    dask_cuda : bool
        Whether dask-cuda is installed.

    Returns
    -------
    tuple of (str, int)
        ``("gpu", min(N, gpus))``: one dask-cuda worker process per GPU, each
        seeing only its own device, so ``cuda`` in a worker is its GPU; a second
        worker on one GPU would only queue behind the first.  Otherwise
        ``("threads", N)``: worker threads of this process (on a GPU machine
        without dask-cuda, they share the first GPU, as a local run does).
    """
    if gpus > 0 and dask_cuda and device != "cpu":
        return "gpu", min(requested, gpus)
    return "threads", requested


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def check_scheduler_address(address: str) -> None:
    """Refuse a ``--scheduler`` that is no Dask address, before a run state is made for it.

    Dask parses it only on connecting, with a bare ``ValueError`` ("missing port
    number in address 'nonsense'"); an address that parses but where nothing
    listens is found out on connecting (:func:`cluster_client`).
    """
    try:
        scheme, location = parse_address(address)
        if scheme == "inproc":
            raise ValueError("an in-process address, which only its own process can reach")
        parse_host_port(location)
    except ValueError as exc:
        raise OptionError(
            f"--scheduler {address!r} is not a Dask scheduler address ({exc}); "
            "give one such as tcp://HOST:8786, as `dask scheduler` prints"
        ) from None


SCHEDULER_TIMEOUT = 20.0
"""Seconds to connect to a ``--scheduler`` and hear it answer, before giving up."""


def check_scheduler_answers(address: str, timeout: float) -> None:
    """Refuse a ``--scheduler`` address where no Dask scheduler answers within ``timeout`` s.

    Dask's client bounds only the TCP connection, then waits for the scheduler's
    handshake without limit, and reads whatever comes back as a Dask frame: a
    port that accepts and stays silent hung the run until killed, and an HTTP
    port (a dashboard's 8787 for the scheduler's 8786) gave a traceback, "Unable to
    allocate 3.01 EiB", read from an HTTP reply.  Here the whole handshake has
    the deadline, and any failure of it is one line.  The handshake runs in a
    thread of its own, so that a caller's running event loop (Jupyter) is no obstacle.

    Raises
    ------
    SchedulerUnreachableError
        Nothing answers at ``address`` as a Dask scheduler does.
    """
    from concurrent.futures import ThreadPoolExecutor

    from distributed.comm import connect
    from distributed.security import Security

    async def handshake() -> None:
        args = Security().get_connection_args("client")
        # connect() gives up on the TCP connection itself after ``timeout``; the margin
        # tells that case (an OSError) from a silent peer once connected.
        comm = await asyncio.wait_for(connect(address, timeout=timeout, **args), timeout + 5)
        await comm.close()

    with ThreadPoolExecutor(1, thread_name_prefix="geosr-scheduler-check") as pool:
        try:
            pool.submit(asyncio.run, handshake()).result()
        except TimeoutError:
            why = f"connected, but no Dask scheduler answered within {timeout + 5:g} s"
        except CommClosedError:
            why = "the connection was closed without a Dask handshake"
        except OSError as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        except Exception:  # any reply that is no Dask handshake, however it fails
            why = "something answered, but not as a Dask scheduler does"
        else:
            return
    raise SchedulerUnreachableError(
        f"cannot reach the Dask scheduler at {address} ({why}); is it running, and is that its "
        "port (8786 by default; 8787 is its dashboard)?"
    )


@contextlib.contextmanager
def cluster_client(scheduler: str | None, workers: int | None, device: str = "auto") -> Iterator[Client]:
    """A client on ``scheduler``, or on a local cluster of ``workers`` (see :func:`local_workers`)."""
    # Clients are closed with close(), not used as context managers: __exit__
    # resets a context variable, which fails when ClosingLater closes from a thread.
    # Nor made the process's default (NOT_THE_DEFAULT): geosr hands them its tasks itself.
    import torch

    # The model plugin sets torch's threads for a worker's whole process: this one's, for the
    # caller's own cluster of worker threads (LocalCluster(processes=False)) as for --workers.
    torch_threads = setting_held(TORCH_THREADS, torch.get_num_threads, torch.set_num_threads)
    if scheduler is not None:
        check_scheduler_answers(scheduler, SCHEDULER_TIMEOUT)
        try:
            client = Client(scheduler, timeout=SCHEDULER_TIMEOUT, **NOT_THE_DEFAULT)
        except OSError as exc:
            raise SchedulerUnreachableError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); is it running?"
            ) from None
        _timeouts_left_unsaid(client.loop)
        with torch_threads, _quiet_connection_loss():
            try:
                yield client
            finally:
                client.close()
        return
    if workers is None or workers < 1:
        raise OptionError(f"--workers must be at least 1, got {workers}")
    kind, n = local_workers(workers, device, _gpu_count(), importlib.util.find_spec("dask_cuda") is not None)
    with torch_threads, local_client(lambda: _local_cluster(kind, n, workers)) as client:
        yield client


@contextlib.contextmanager
def local_client(start: Callable[[], LocalCluster]) -> Iterator[Client]:
    """A client (not the process's default) on the local cluster ``start`` makes; after: both
    closed, and nothing of the cluster left in the caller's process (its servers, its
    ``sys.path`` entries).  For ``workers=N`` runs and ``build_training_store(scheduler="local")``.
    """
    path = list(sys.path)
    cluster = start()
    _timeouts_left_unsaid(cluster.loop)
    try:
        client = Client(cluster, **NOT_THE_DEFAULT)
    except BaseException:
        cluster.close()
        _forget_scratch_paths(path)
        raise
    try:
        yield client
    finally:
        # Stopped with tasks still queued or running (Ctrl-C, SIGTERM), the cluster logged
        # a warning for each and a traceback for a submission cut short: 17 lines before
        # the run's own line, which says all the user needs.
        with _quiet_loggers("distributed", "distributed.client"):
            client.close()
            cluster.close()
        _forget_scratch_paths(path)
        _let_closed_servers_go()


NO_PROFILER = {"distributed.worker.profile.enabled": False}
"""Dask config for the workers of a local cluster: no statistical profiler.  Each worker samples
its task threads' stacks every 10 ms on the event loop, for a dashboard that geosr's local
cluster does not serve: the 2048^2 x4 benchmark job took 0.2 CPU-s more of 8 (2.5 %) with it,
on 2 cores that the model needs (median of 4 interleaved runs with 2 workers)."""

FEWER_TICKS = {"distributed.admin.tick.interval": "1s", "distributed.admin.system-monitor.interval": "10s"}
"""Dask config for the worker threads of ``workers=N``: the scheduler's and each worker's event-loop
tick (a check for a blocked loop, every 20 ms) and system monitor (psutil's CPU, memory, disk and
network counters, every 500 ms) run less often.  They share this process's GIL and 2 cores with
the model: 15 ms of CPU each second with 2 idle workers, 3.7 ms so (8 s windows); in the 2048^2
x4 benchmark job, whose loop also runs the tasks' messages, 0.16 to 0.06 CPU-s per run on a loaded
machine.  A blocked loop is still reported once it has been for ``distributed.admin.tick.limit``
(3 s); the monitor's samples only feed a dashboard and memory limits, which these workers do not have."""


def _local_cluster(kind: str, n: int, workers: int) -> LocalCluster:
    """A local cluster of ``n`` workers of ``kind`` (:func:`local_workers`) for ``--workers``."""
    if kind == "gpu":
        from dask_cuda import LocalCUDACluster

        with local_cluster_starting(f"--workers {workers}"), dask.config.set(NO_PROFILER):
            return LocalCUDACluster(
                n_workers=n, threads_per_worker=1, dashboard_address=None, scheduler_kwargs=NO_FIXED_PORT
            )
    # Worker threads in this process, not worker processes: the work releases the
    # GIL (GDAL, numpy, torch, Blosc), so threads lose nothing, while starting,
    # importing torch in and stopping two processes cost ~3 s a run on the
    # benchmark machine, longer than the whole compute of a 1024^2 scene.
    # No memory limit: Dask gives each worker 1/N of the machine's memory and
    # compares it with the whole process's, which all N threads share, so with
    # --workers 100 (240 MiB each here) every worker paused at once and the run
    # hung; geosr's own guard (geosr.resources) bounds the run's memory instead.
    with local_cluster_starting(f"--workers {workers}"), dask.config.set({**NO_PROFILER, **FEWER_TICKS}):
        return LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=False,
            memory_limit=0,
            dashboard_address=None,
            scheduler_kwargs=NO_FIXED_PORT,
        )


def _let_closed_servers_go() -> None:
    """Let the caller's process free the scheduler and workers a local cluster ran in it.

    distributed caches, for good (``functools.cache`` of ``distributed.core._expects_comm``),
    whether each handler a server was asked to run takes a connection, keyed by the handler:
    the server's own bound methods, which keep it alive.  Every ``workers=N`` run of a notebook
    left its N workers and its scheduler in memory, each with a log handler of its own on
    distributed's loggers (removed as it is freed) keeping up to 10000 records.  The cache only
    spares an ``inspect`` of a handler; emptied, it fills again for the servers still running.
    """
    from distributed import core

    forget = getattr(getattr(core, "_expects_comm", None), "cache_clear", None)
    if forget is not None:  # another release of distributed may not have it
        forget()


def _forget_scratch_paths(before: list[str]) -> None:
    """Take out of ``sys.path`` the folders a local cluster put there and removed as it closed.

    Its scheduler and workers in this process each put their scratch folder
    (``dask-scratch-space/worker-...``) first in ``sys.path`` and take it out as they close
    only if it is still first: with 2 workers, entries stayed in the caller's ``sys.path``
    after their folders were gone, more for every ``workers=N`` run of a notebook, each
    looked in by every later import.  Entries added meanwhile that still exist are the caller's.
    """
    sys.path[:] = [entry for entry in sys.path if entry in before or Path(entry).exists()]


class ClosingLater:
    """A client from :func:`cluster_client` whose shutdown can overlap the work after it.

    Stopping a local cluster's worker processes takes seconds (each tears down a
    loaded torch); the COG finalisation that follows a cluster run needs none
    of them.  :meth:`close_later` starts the shutdown in a thread, and
    :meth:`wait` joins it (re-raising its error), or closes at once if it was
    not started.
    """

    def __init__(self, scheduler: str | None, workers: int | None, device: str = "auto") -> None:
        self._stack = contextlib.ExitStack()
        self.client: Client = self._stack.enter_context(cluster_client(scheduler, workers, device))
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def close_later(self) -> None:
        """Start closing the client and its cluster in a thread; :meth:`wait` joins it."""

        def close() -> None:
            try:
                self._stack.close()
            except BaseException as exc:  # handed to wait(), in the caller's thread
                self._error = exc

        self._thread = threading.Thread(target=close, name="geosr-cluster-close")
        self._thread.start()

    def wait(self) -> None:
        """Wait for the cluster to be closed (closing it now if :meth:`close_later` was not
        called), re-raising what closing it raised."""
        if self._thread is None:
            self._stack.close()
            return
        self._thread.join()
        if self._error is not None:
            raise self._error


def _seen_from_workers(scene: Scene) -> Scene:
    """``scene`` with its local file named by its absolute path.

    A worker resolves a relative path against its own working directory: `dask worker`
    started in another folder read ``in.tif`` there, and the run failed.
    """
    if is_remote(scene.path) or Path(scene.path).is_absolute():
        return scene
    where = str(Path(scene.path).absolute())
    # GDAL's subdataset names quote the file as given: NETCDF:"chl.nc":tsm.
    subdataset = scene.subdataset.replace(f'"{scene.path}"', f'"{where}"')
    return replace(scene, path=where, subdataset=subdataset)


def for_workers(job: Job, key: ModelKey) -> tuple[Job, ModelKey]:
    """``job`` and ``key`` with every local path absolute, as workers in another folder need.

    The input and its frames, and a user's model given by a relative path; the
    run store's path is made absolute where the tasks are submitted.
    """
    job = replace(
        job,
        scene=_seen_from_workers(job.scene),
        frames=tuple(_seen_from_workers(frame) for frame in job.frames),
    )
    if _model_file(key.model):
        key = replace(key, model=str(Path(key.model).absolute()))
    return job, key


def _model_file(model: str | None) -> TypeGuard[str]:
    """Whether ``model`` is a user's weights given by a local path (not a bundled name, not a URL)."""
    return model is not None and model not in MODEL_NAMES and "://" not in model


def _run_batch(
    job: Job, tiles: Sequence[tuple[int, Tile]], key: ModelKey, store: str, dst: str, run: str
) -> list[int]:
    """One task: read, predict and write one batch of tiles into the run ``store`` (of the
    run ``run``: :func:`_store_writer`).

    Idempotent: each tile owns its chunks, so a task rerun after a lost worker
    rewrites the same pixels.
    """
    _refuse_another_version(key.version, get_worker().address)
    try:
        raw = read_batch(job, [t for _, t in tiles])
        writer = _store_writer(store, dst, run)
        outputs = process_batch(job, [t for _, t in tiles], raw, key.predictor())
        for (_, tile), out in zip(tiles, outputs, strict=True):
            window = tile.core.scaled(job.scale)
            writer.write(window.rows, window.cols, out)
    except (GeosrError, OSError) as exc:
        failure: BaseException = exc
    else:
        checkpoint("task")
        return [i for i, _ in tiles]
    paths = [job.scene.path, *(frame.path for frame in job.frames), store]
    raise for_the_client(failure, paths, key, get_worker().address)


WRITERS_KEPT = 4
"""Run stores a process keeps open for its next tasks (:func:`_store_writer`)."""


@functools.lru_cache(maxsize=WRITERS_KEPT)
def _store_writer(store: str, dst: str, run: str) -> StoreWriter:
    """The writer into the run ``store`` of ``dst``, opened once per process for the run ``run``
    (a token of :func:`run_on_cluster`'s call), as a local run opens it once.

    Opened by each task, it read the store's metadata again: 7-19 ms of each one-tile task of
    the 2048^2 x4 benchmark job, on the worker's thread between two model calls.  Keyed by the
    run, not the path alone: a store made again at the same path (``--overwrite``, ``--restart``)
    may have another shape, which a writer kept from the run before would not know.
    """
    return StoreWriter(Path(store), Path(dst))


def _release_run(paths: Sequence[str]) -> None:
    """On a worker at the end of a run: close the run's files (:func:`~geosr.io.scene.release`)
    and forget its writers (:func:`_store_writer`)."""
    release(paths)
    _store_writer.cache_clear()


def for_the_client(failure: BaseException, paths: Sequence[str], key: ModelKey, worker: str) -> BaseException:
    """What a task's ``failure`` on ``worker`` reaches the client as.

    A local path of the run that this worker cannot see (a worker without the
    client's filesystem) is what the user must fix: the read or write error it
    caused ("No such file or directory; the file is probably truncated") misled.
    Otherwise ``failure`` itself, without the errors it was raised from:
    distributed pickles a task's error with them, and where one of those cannot be
    unpickled (rasterio's ``CPLE_OpenFailedError``) the client got a bare
    ``Exception``, a traceback instead of geosr's line.
    """
    if _model_file(key.model):
        paths = [*paths, str(weights_paths(key.model)[0])]
    unseen = next((p for p in paths if not is_remote(p) and not Path(p).exists()), None)
    if unseen is not None:
        return OptionError(
            f"{unseen} is not found on the Dask worker {worker}: workers need the input, the output's "
            "folder and a model file at the same paths as this machine (a shared filesystem)"
        )
    failure.__cause__ = failure.__context__ = None
    return failure


def _load_model_on_workers(client: Client, plugin: ModelPlugin, address: str, state: RunState) -> None:
    """Register ``plugin``, which loads the model on each worker and on any that joins later.

    Raises
    ------
    ResumableError
        A worker died while it loaded the model (over its memory limit, say).  The
        scheduler drops the registration's connection then, which read as "lost the
        Dask scheduler" while it ran on; and it kept the plugin, so that every worker
        the nanny started in place of the dead one loaded the model and died in turn,
        long after the run.  The plugin is withdrawn, and the line says why.
    """
    try:
        client.register_plugin(plugin)
    except OSError as exc:
        if isinstance(exc, GeosrError):
            raise
        try:
            check_scheduler_answers(address, SCHEDULER_TIMEOUT)
        except OptionError:
            raise exc from None  # the scheduler itself is gone: a lost scheduler
        _withdraw_plugin(client)
        raise ResumableError(
            f"{state.destination}: a Dask worker of {address} died while loading the model (out of "
            f"memory? the workers' logs say why); {state.describe()}; give the workers more memory "
            "(dask worker --memory-limit), then rerun the same command with --resume to finish it"
        ) from None
    except Exception as exc:
        missing = _missing_module(exc, address)
        if missing is None:
            raise
        raise missing from None


def _missing_module(exc: BaseException, address: str) -> OptionError | None:
    """The line for a worker of ``address`` without a module the run needs (geosr, torch), if
    that is what ``exc`` says: one that cannot unpickle :class:`ModelPlugin` answers with a bare
    ``Exception('ModuleNotFoundError("No module named 'geosr'")')``, a traceback on the client."""
    found = re.search(r"No module named '([\w.]+)'", str(exc))
    if found is None:
        return None
    module = found.group(1).split(".")[0]
    version = f" {__version__}" if module == "geosr" else ""
    return OptionError(
        f"a Dask worker of {address} cannot import {module} (No module named {module!r}): install "
        f"{module}{version} where the workers run, as on this machine, then rerun the same command"
    )


def _withdraw_plugin(client: Client) -> None:
    """Take :class:`ModelPlugin` off the scheduler, which keeps a plugin for every worker that
    joins: after the run, those workers (any user's) imported torch and built its model.
    The workers keep the model they built (:func:`cached_predictor`) for the next run."""
    with contextlib.suppress(Exception):  # a scheduler going down: the run's own line stands
        client.unregister_worker_plugin(ModelPlugin.name)


def _leave_workers(client: Client, job: Job) -> None:
    """Take the run's plugin off the scheduler (:func:`_withdraw_plugin`), and have the
    workers close the run's files in their task threads (:func:`geosr.io.scene.release`)
    and forget its store writers (:func:`_release_run`).

    Those threads outlive the run: each kept its input open, so that a deleted input's space
    stayed taken until the worker restarted, and up to 512 MiB of its decoded rows.  Kept
    for the run only, they still spare its tasks the opening and decoding.
    """
    _withdraw_plugin(client)
    paths = [job.scene.path, *(frame.path for frame in job.frames)]
    with contextlib.suppress(Exception):  # a scheduler going down: the run's own line stands
        client.run(_release_run, paths)


NO_WORKERS_CHECK = 10.0
"""Seconds without a finished task before the run asks whether any worker is left."""

STALLED_AFTER = 60.0
"""Seconds since the scheduler last heard from a worker before the run calls it stalled.  A worker
reports every second or so; importing torch as it loads the model held its event loop for 15 s
on a loaded 2-core machine, and a worker is only asked about once no task has finished for a while."""


RESTART_GRACE = 30.0
"""Seconds a scheduler must have had no workers before the run says that none is left.  A nanny
restarting the worker it killed (over its memory limit, say) leaves the scheduler without it
until the new one joins: a few seconds, over 10 on a loaded machine, and the run warned meanwhile
"no workers left; the run waits for some to join" of a cluster whose worker was on its way back."""


def _as_finished(client: Client, futures: Sequence[Any], address: str) -> Iterator[Any]:
    """The results of ``futures`` as they come, saying when no worker is left to run them.

    Dask waits for workers to join again, or to resume: a run whose workers had all died
    (started without a nanny, or their machines gone) sat still, without a word, until
    killed, and so did one whose workers were all paused at their memory limit.
    The results are fetched by ``as_completed`` itself, not by ``future.result()`` on a
    finished future: a worker that died holding a finished task's result sent the task
    back to be run again, and ``result()`` waited for it where no check could run.
    """
    finished = as_completed(futures, loop=client.loop, with_results=True)  # not the default client's
    quiet_since = time.monotonic()
    empty_since: float | None = None  # since when the scheduler has had no workers
    said: str | None = None
    while not finished.is_empty():
        if finished.has_ready():
            quiet_since = time.monotonic()
            _, result = next(finished)
            if isinstance(result, BaseException):  # cancelled (the scheduler lost): not raised
                raise result
            yield result
        elif time.monotonic() - quiet_since < NO_WORKERS_CHECK:
            _wait_for_next(finished, 0.05)
        else:
            quiet_since = time.monotonic()
            workers = _workers(client)
            empty_since = None if workers else (empty_since or quiet_since)
            if empty_since is not None and quiet_since - empty_since < RESTART_GRACE:
                continue  # a nanny may be restarting its worker (RESTART_GRACE)
            stalled = _why_no_worker_runs(client, workers, address)
            if stalled is not None and _gist(stalled) != _gist(said):
                warn(stalled)
            said = stalled


def _gist(warning: str | None) -> str | None:
    """``warning`` less its numbers: one that differs from the last only in them (a paused
    worker's memory figure, which moves at every look) is the same, and is not said again."""
    return None if warning is None else re.sub(r"\d+", "#", warning)


def _wait_for_next(finished: as_completed, seconds: float) -> None:
    """Wait until ``finished`` has a result ready, or for ``seconds`` at most.

    Woken by the result itself, as ``as_completed``'s own iteration is: a sleep of ``seconds``
    between looks noticed the last task of a run 34 ms late (median of 12 runs of the 2048^2 x4
    benchmark job with 2 workers on a loaded machine, 18-49 ms; 1 ms so), all of it added to the
    run.  Where ``as_completed`` has no such condition (another release of distributed), a sleep.
    """
    condition = getattr(finished, "thread_condition", None)
    if condition is None:
        time.sleep(seconds)
        return
    with condition:  # the result is queued before its notify, which needs the lock: none missed
        if not finished.has_ready():
            condition.wait(seconds)


def _why_no_worker_runs(client: Client, workers: dict[str, dict[str, Any]], address: str) -> str | None:
    """Why none of ``workers`` (:func:`_workers`) of ``client``'s scheduler, at ``address``, can run
    a task, as the run's warning; ``None`` if one can."""
    if not workers:
        return (
            f"the Dask scheduler at {address} has no workers left; the run waits for "
            "some to join (`dask worker` with that address starts one), or stop it with "
            "Ctrl-C and finish it later with --resume"
        )
    if any(worker.get("status") != "paused" for worker in workers.values()):
        # time_ns, not a function of geosr's: a scheduler with an older geosr could not unpickle that
        return _stalled(workers, address, client.run_on_scheduler(time.time_ns) / 1e9)
    # Paused, a worker keeps its tasks without starting one until its memory falls back under
    # the limit's pause fraction: with the model held, it may never.
    first, worker = next(iter(workers.items()))
    used = worker.get("metrics", {}).get("memory")
    limit = worker.get("memory_limit")
    held = f" ({first}: {used / 2**20:.0f} MiB of {limit / 2**20:.0f} MiB)" if used and limit else ""
    return (
        f"every Dask worker of the scheduler at {address} is paused, near its memory limit{held}; "
        "the run waits for one to resume, or stop it with Ctrl-C, give the workers more memory "
        "(dask worker --memory-limit) and finish it later with --resume"
    )


def _stalled(workers: dict[str, dict[str, Any]], address: str, now: float) -> str | None:
    """The warning for the first of ``workers`` not heard from for :data:`STALLED_AFTER` s by
    ``now``, the time on the scheduler's clock, if any.

    A stopped worker (``kill -STOP``, a machine swapping or cut off) keeps its tasks, and the
    scheduler waits for it for ``distributed.scheduler.worker-ttl`` before giving them to
    another: the run sat still meanwhile, without a word.  Its last report is stamped by the
    scheduler's clock, not this machine's: compared with this one's, running a minute ahead (a
    laptop against a cluster), every healthy worker was called stalled.
    """
    for worker, about in workers.items():
        if now - about.get("last_seen", now) > STALLED_AFTER:
            return (
                f"the Dask worker {worker} of the scheduler at {address} has not been heard from for "
                f"over {STALLED_AFTER:g} s (stopped, or its machine overloaded or cut off?); the run "
                "waits for it, and the scheduler gives its tasks to other workers after "
                "distributed.scheduler.worker-ttl (5 minutes by default), or stop the run with Ctrl-C "
                "and finish it later with --resume"
            )
    return None


def _the_job(job: Job) -> Job:
    """The job, as a task's result that every task depends on (see :func:`run_on_cluster`)."""
    return job


def run_on_cluster(
    job: Job,
    plan: TilePlan,
    todo: Sequence[int],
    key: ModelKey,
    state: RunState,
    client: Client,
    *,
    on_tiles_done: Callable[[int], None] | None = None,
    whole_call_tiles: int = 1,
) -> None:
    """Run the tiles ``todo`` of ``plan`` on ``client``'s workers into the run state's store,
    in tasks of ``whole_call_tiles`` tiles at least (:func:`task_size`).

    Each finished task is journaled by the client, so that a run whose
    scheduler is lost can be finished with ``--resume`` (on a cluster or not).

    Raises
    ------
    ResumableError
        The scheduler (or the connection to it) was lost, or the tasks took down every
        worker that ran them (the OOM killer, a memory limit); the finished tiles are kept.
    """
    if not todo:
        return
    address = getattr(client.scheduler, "address", "the scheduler")
    job, key = for_workers(job, key)
    futures: list[Any] = []
    try:
        workers = worker_addresses(client)
        if not workers:
            # An adaptive cluster may start its workers only now, so the run waits, but
            # says so: it sat silent, with no progress, for as long as none came.
            warn(
                f"the Dask scheduler at {address} has no workers yet; the run waits for "
                "some to join (`dask worker` with that address starts one)"
            )
        _load_model_on_workers(client, ModelPlugin(key, _workers_by_host(workers)), address, state)
        futures = _submitted(client, job, plan, todo, key, state, len(workers), whole_call_tiles)
        for finished in _as_finished(client, futures, address):
            state.record(finished)
            if on_tiles_done is not None:
                on_tiles_done(len(finished))
        _leave_workers(client, job)
    except KilledWorker as exc:
        # A task that takes its worker down every time (the kernel's OOM killer, a memory
        # limit): distributed gives up after a few workers, with a traceback of its own.
        _leave_workers(client, job)
        raise _workers_died(state, exc, job.batch_size) from None
    except (OSError, TimeoutError, CancelledError, CommClosedError, FuturesCancelledError) as exc:
        if isinstance(exc, GeosrError):  # a task's own failure (a damaged input): the cluster is there
            _leave_workers(client, job)
            raise
        raise _scheduler_lost(state, address, exc) from None
    except BaseException:
        # Interrupted (Ctrl-C, SIGTERM, a notebook's stop): the scheduler kept the run's plugin,
        # so that every worker joining later built its model, and the workers its input open.
        with contextlib.suppress(Exception):
            client.cancel(futures)  # its tasks not started yet read nothing more
        _leave_workers(client, job)
        raise


def _submitted(
    client: Client,
    job: Job,
    plan: TilePlan,
    todo: Sequence[int],
    key: ModelKey,
    state: RunState,
    workers: int,
    least: int,
) -> list[Any]:
    """The futures of the tasks that run the tiles ``todo`` into the run state's store, in batches
    sized for ``workers`` workers (at least ``least`` tiles, :func:`task_size`), each with the
    job (:func:`_job_for_tasks`)."""
    groups = list(batches(list(todo), task_size(len(todo), job.batch_size, workers, least)))
    shared = _job_for_tasks(client, job, len(groups))
    run = uuid.uuid4().hex  # the run's store writers on the workers (_store_writer)
    return [
        client.submit(
            _run_batch,
            shared,
            [(i, plan.tiles[i]) for i in group],
            key,
            str(Path(state.store).absolute()),
            str(Path(state.destination).absolute()),
            run,
            pure=False,
        )
        for group in groups
    ]


SHARED_JOB_BYTES = 4 * 2**20
"""Pickled size of a job times its tasks over which the job reaches them as one task's result
(:func:`_job_for_tasks`): the scheduler holds each task's copy until it has run."""


def _job_for_tasks(client: Client, job: Job, tasks: int) -> Job | Any:
    """``job`` as the ``tasks`` tasks of ``client`` take it: in each task itself, or, where their
    copies would add up to over :data:`SHARED_JOB_BYTES` pickled (an AOI's polygon of many
    vertices, a scene of thousands of tasks), the future of one task whose result they all read.

    In each task where they add up to little (1.8 kB in each of the 16 of the 2048^2 x4
    benchmark job): a shared task is a round trip to a worker and back before the first tile
    can start, which started 15 ms after the tasks were submitted, 10 ms so (medians of 12 runs
    with 2 local workers, a loaded machine).  A task, not scatter(): the scheduler keeps how to
    compute it, so the job is made again when the worker holding it dies; scattered data is lost
    for good, and with it every task of the run ("lost the Dask scheduler ... already forgotten"
    on a one-worker cluster whose nanny restarted the killed worker).
    """
    try:
        small = len(pickle.dumps(job)) * tasks <= SHARED_JOB_BYTES
    except (pickle.PicklingError, TypeError, AttributeError):  # cloudpickle, Dask's, may take it
        small = False
    return job if small else client.submit(_the_job, job, pure=False)


def _workers_died(state: RunState, exc: KilledWorker, batch: int) -> ResumableError:
    """The line for a run whose tasks took every worker that ran them down: the finished tiles
    are kept, for a ``--resume`` with more memory or (from a ``batch`` over 1) smaller batches."""
    smaller = " or pass a smaller --batch-size" if batch > 1 else ""
    return ResumableError(
        f"{state.destination}: every Dask worker that ran one of its tasks died "
        f"({exc.allowed_failures + 1} in all; out of memory? the workers' logs say why); "
        f"{state.describe()}; give the workers more memory{smaller}, "
        "then rerun the same command with --resume to finish it"
    )


def _scheduler_lost(state: RunState, address: str, exc: BaseException) -> ResumableError:
    """The line for a run that lost the scheduler at ``address`` (``exc``): the finished tiles
    are kept, for a ``--resume`` here, or on a cluster with its ``--scheduler``."""
    return SchedulerLostError(
        f"{state.destination}: lost the Dask scheduler at {address} ({type(exc).__name__}: "
        f"{str(exc).splitlines()[0] if str(exc) else 'connection closed'}); {state.describe()}; "
        "rerun the command with --resume to finish it, here without --scheduler, or on a cluster "
        "with the --scheduler of one that runs"
    )
