"""Build a paired training store in parallel with Dask.

One task per LR/HR pair: co-register, cut chips, write them into the pair's own
group of the Zarr store (:mod:`geosr.train.store`).  Tasks receive paths, never
open handles or arrays, so they run unchanged on threads, on a local cluster or
on a remote ``distributed`` scheduler that sees the same filesystem.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dask
from dask import delayed

from geosr.errors import OptionError, OutputError
from geosr.interrupts import signals_held
from geosr.io.atomic import is_foreign_directory, remove_path
from geosr.resources import usable_cpus
from geosr.train.store import finish_store, init_store, pair_chips, write_pair


def _pair_task(
    store: str,
    key: int,
    lr_path: str,
    hr_path: str,
    scale: int,
    lr_chip: int,
    stride: int | None,
    val_fraction: float,
    stopped: threading.Event | None = None,
) -> tuple[tuple[float, float], int]:
    lr, hr, split, shift = pair_chips(
        lr_path, hr_path, scale=scale, lr_chip=lr_chip, stride=stride, val_fraction=val_fraction
    )
    if stopped is not None and stopped.is_set():
        return shift, 0  # the build was interrupted: its store is being removed
    n = write_pair(store, key, lr, hr, split)
    return shift, n


def _compute_in_threads(tasks: list[Any], workers: int | None, stopped: threading.Event) -> Any:
    """The pair tasks on a thread pool of this build's own, which an interrupt waits for.

    A Ctrl-C or SIGTERM stops ``dask.compute`` in the main thread, not the task running in a
    worker thread: it went on and wrote its pair into the store after the caller had removed
    the store and the run folder, and so made them again (the interrupted run left an
    incomplete store that the same command then refused).  Now the task sees ``stopped`` and
    writes nothing, and the pool is waited for before the interrupt goes up.
    """
    pool = ThreadPoolExecutor(max_workers=workers or usable_cpus(), thread_name_prefix="geosr-pairs")
    try:
        return dask.compute(*tasks, scheduler="threads", pool=pool)
    except BaseException:
        stopped.set()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _compute_on_cluster(tasks: list[Any], scheduler: str, workers: int | None) -> Any:
    """The pair tasks on a Dask cluster: a local one of ``workers`` processes (``"local"``),
    or the one whose scheduler is at ``scheduler``."""
    from distributed import Client, LocalCluster

    from geosr.orchestrate.cluster import (
        NO_FIXED_PORT,
        NOT_THE_DEFAULT,
        SCHEDULER_TIMEOUT,
        check_scheduler_answers,
        local_client,
        local_cluster_starting,
    )

    if scheduler == "local":

        def start() -> LocalCluster:
            with local_cluster_starting("--scheduler local"):
                return LocalCluster(
                    n_workers=workers or 2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    scheduler_kwargs=NO_FIXED_PORT,
                )

        # Closed as a workers=N run's: closing the client and cluster left the closed scheduler
        # in the caller's process (distributed's cache of handlers), one more every call.
        with local_client(start) as client:
            return dask.compute(*tasks, scheduler=client)
    # One line, as for geosr run, where nothing answers: it was an OSError traceback.
    check_scheduler_answers(scheduler, SCHEDULER_TIMEOUT)
    client = Client(scheduler, timeout=SCHEDULER_TIMEOUT, **NOT_THE_DEFAULT)
    try:
        return dask.compute(*tasks, scheduler=client)
    finally:
        client.close()


def _recorded(path: str | Path) -> str:
    """A pair's path as the store records it: absolute, unless a URL.

    Recorded as given, ``lr.tif`` was read against the folder of a later ``--resume``:
    the same pairs given by absolute paths from elsewhere were refused as other pairs.
    """
    return str(path) if "://" in str(path) else str(Path(path).absolute())


STORE_SCHEDULERS = (None, "threads", "processes", "synchronous", "local")
"""The schedulers a training store is built on by name, on this machine; else a scheduler's address."""


def check_store_scheduler(scheduler: str | None) -> None:
    """Refuse a ``scheduler`` that is neither one of :data:`STORE_SCHEDULERS` nor a Dask address.

    As geosr run checks its own, before the store is made: 'foo' was dask's bare ValueError, and
    'thread' was told of the address form alone, after "building the training store".
    """
    if scheduler in STORE_SCHEDULERS:
        return
    from geosr.orchestrate.cluster import check_scheduler_address

    try:
        check_scheduler_address(scheduler)
    except OptionError as exc:
        raise OptionError(
            f"{exc}, or threads, processes or local to build the store on this machine"
        ) from None


def build_training_store(
    pairs: Sequence[tuple[str | Path, str | Path]],
    store: str | Path,
    *,
    scale: int,
    lr_chip: int = 32,
    stride: int | None = None,
    val_fraction: float = 0.2,
    scheduler: str | None = "threads",
    workers: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Co-register every ``(lr, hr)`` pair and cache its chips in ``store``.

    Parameters
    ----------
    pairs : sequence of (lr_path, hr_path)
    store : path
        The Zarr store to (re)create.
    scale, lr_chip, stride, val_fraction
        See :func:`geosr.train.store.pair_chips`.
    scheduler : str, optional
        ``threads`` (default), ``processes``, ``synchronous``, ``local`` (a local
        ``distributed`` cluster) or a scheduler address ``tcp://host:8786``.
    workers : int, optional
        Threads or processes for the local schedulers.
    overwrite : bool, default False
        Rebuild ``store`` where it exists; never a file, nor a folder of other files.

    Returns
    -------
    dict
        The store's attributes, with per-pair shifts (HR px) and chip counts.

    Raises
    ------
    OptionError
        No pair is given, or ``scheduler`` is neither a scheduler's name nor an address.
    OutputError
        ``store`` exists and ``overwrite`` is False, or it is a file or a folder of other files.
    """
    if not pairs:
        raise OptionError("no LR/HR pair given: pass --lr and --hr rasters of the same place")
    check_store_scheduler(scheduler)
    _check_store_path(Path(store), overwrite)
    store = str(store)
    existed = Path(store).exists()
    try:
        return _build(pairs, store, scale, lr_chip, stride, val_fraction, scheduler, workers)
    except Exception:
        # A failed pair (unreadable, mismatched) must leave no half-built store
        # behind; one that existed was reset by init_store, so it goes too only
        # when it was this call's.
        if not existed:
            remove_path(Path(store))
        raise


def _check_store_path(store: Path, overwrite: bool) -> None:
    """Refuse a ``store`` that building would replace unasked, or that is no training store.

    A second call with the same path replaced the first store without a word (``geosr train``
    refuses it before it calls this: :func:`geosr.train.trainer.check_run_output`).
    """
    if store.is_file():
        raise OutputError(
            f"{store} is a file, not a training store (a .zarr folder): choose another store path"
        )
    if is_foreign_directory(store):
        raise OutputError(
            f"{store} is a folder of other files, not a training store, which building would delete: "
            "choose another store path"
        )
    if store.exists() and not overwrite:
        raise OutputError(
            f"training store {store} already exists: pass overwrite=True to rebuild it, or choose another "
            "store path"
        )


def _build(
    pairs: Sequence[tuple[str | Path, str | Path]],
    store: str,
    scale: int,
    lr_chip: int,
    stride: int | None,
    val_fraction: float,
    scheduler: str | None,
    workers: int | None,
) -> dict[str, Any]:
    meta = [{"lr": _recorded(lr), "hr": _recorded(hr)} for lr, hr in pairs]
    # zarr writes in its own event loop's thread: a Ctrl-C or SIGTERM that stopped the main
    # thread mid-way left that write going, and it made the store and the run folder again
    # after the caller had removed them.  The store's metadata is written whole, then stopped.
    with signals_held():
        init_store(store, scale=scale, lr_chip=lr_chip, pairs=meta)
    scheduler = scheduler or "threads"
    threaded = scheduler == "threads"
    stopped = threading.Event()  # seen by tasks in this process's threads only
    tasks = [
        delayed(_pair_task)(
            store, k, str(lr), str(hr), scale, lr_chip, stride, val_fraction, stopped if threaded else None
        )
        for k, (lr, hr) in enumerate(pairs)
    ]
    if threaded:
        results = _compute_in_threads(tasks, workers, stopped)
    elif scheduler in ("processes", "synchronous"):
        kwargs: dict[str, Any] = {"scheduler": scheduler}
        if workers:
            kwargs["num_workers"] = workers
        results = dask.compute(*tasks, **kwargs)
    else:
        results = _compute_on_cluster(tasks, scheduler, workers)
    shifts = [r[0] for r in results]
    counts = [r[1] for r in results]
    with signals_held():
        finish_store(store, shifts, counts)
    from geosr.train.store import store_info

    return store_info(store)
