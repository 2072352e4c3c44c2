"""Build a paired training store in parallel with Dask.

One task per LR/HR pair: co-register, cut chips, write them into the pair's own
group of the Zarr store (:mod:`geosr.train.store`).  Tasks receive paths, never
open handles or arrays, so they run unchanged on threads, on a local cluster or
on a remote ``distributed`` scheduler that sees the same filesystem.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
from dask import delayed

from geosr.errors import OptionError
from geosr.io.atomic import remove_path
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
) -> tuple[tuple[float, float], int]:
    lr, hr, split, shift = pair_chips(
        lr_path, hr_path, scale=scale, lr_chip=lr_chip, stride=stride, val_fraction=val_fraction
    )
    n = write_pair(store, key, lr, hr, split)
    return shift, n


def _recorded(path: str | Path) -> str:
    """A pair's path as the store records it: absolute, unless a URL.

    Recorded as given, ``lr.tif`` was read against the folder of a later ``--resume``:
    the same pairs given by absolute paths from elsewhere were refused as other pairs.
    """
    return str(path) if "://" in str(path) else str(Path(path).absolute())


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
) -> dict[str, Any]:
    """Co-register every ``(lr, hr)`` pair and cache its chips in ``store``.

    Parameters
    ----------
    pairs : sequence of (lr_path, hr_path)
    store : path of the Zarr store to (re)create
    scale, lr_chip, stride, val_fraction
        See :func:`geosr.train.store.pair_chips`.
    scheduler : str, optional
        ``threads`` (default), ``processes``, ``synchronous``, ``local`` (a local
        ``distributed`` cluster) or a scheduler address ``tcp://host:8786``.
    workers : int, optional
        Threads or processes for the local schedulers.

    Returns
    -------
    dict
        The store's attributes, with per-pair shifts (HR px) and chip counts.
    """
    if not pairs:
        raise OptionError("no LR/HR pair given: pass --lr and --hr rasters of the same place")
    if scheduler not in (None, "threads", "processes", "synchronous", "local"):
        # As geosr run checks it, before the store is made: 'foo' was dask's bare ValueError.
        from geosr.orchestrate.cluster import check_scheduler_address

        check_scheduler_address(scheduler)
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
    init_store(store, scale=scale, lr_chip=lr_chip, pairs=meta)
    tasks = [
        delayed(_pair_task)(store, k, str(lr), str(hr), scale, lr_chip, stride, val_fraction)
        for k, (lr, hr) in enumerate(pairs)
    ]
    client = None
    try:
        if scheduler in (None, "threads", "processes", "synchronous"):
            kwargs: dict[str, Any] = {"scheduler": scheduler or "threads"}
            if workers:
                kwargs["num_workers"] = workers
            results = dask.compute(*tasks, **kwargs)
        else:
            from distributed import Client, LocalCluster

            from geosr.orchestrate.cluster import (
                NO_FIXED_PORT,
                SCHEDULER_TIMEOUT,
                check_scheduler_answers,
                local_cluster_starting,
            )

            if scheduler == "local":
                with local_cluster_starting("--scheduler local"):
                    cluster = LocalCluster(
                        n_workers=workers or 2,
                        threads_per_worker=1,
                        processes=True,
                        dashboard_address=None,
                        scheduler_kwargs=NO_FIXED_PORT,
                    )
                client = Client(cluster)
            else:
                # One line, as for geosr run, where nothing answers: it was an OSError traceback.
                check_scheduler_answers(scheduler, SCHEDULER_TIMEOUT)
                client = Client(scheduler, timeout=SCHEDULER_TIMEOUT)
            results = dask.compute(*tasks, scheduler=client)
    finally:
        if client is not None:
            cluster_obj = getattr(client, "cluster", None)
            client.close()
            if cluster_obj is not None:
                cluster_obj.close()
    shifts = [r[0] for r in results]
    counts = [r[1] for r in results]
    finish_store(store, shifts, counts)
    from geosr.train.store import store_info

    return store_info(store)
