"""The same job on a Dask cluster: an existing one (``--scheduler``) or a local one (``--workers``).

Tasks are the predictor's batches of the single-process run, so every tile is
computed exactly as it is locally.  Each task receives the (scattered, small)
job description and its tiles, reads the input itself by path, and writes its
output region straight into a Zarr store on the shared filesystem: nothing
large travels through the scheduler or the client.  For a COG, the store is a
hidden intermediate beside the destination that the client turns into the COG
at the end (GeoTIFF has no safe concurrent writers).

The model is loaded once per worker by :class:`ModelPlugin`, which also gives
torch its threads back: Dask's nanny starts workers with ``OMP_NUM_THREADS=1``
(and ``MALLOC_TRIM_THRESHOLD_``), which costs torch most of a multi-core
machine; workers geosr starts itself get neither.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dask
import numpy as np
from distributed import Client, LocalCluster, WorkerPlugin, as_completed

from geosr.errors import OptionError
from geosr.io.sink import OutputSpec, RasterSink, open_sink
from geosr.io.zarr_store import ZarrSink, write_region
from geosr.orchestrate.lazy import cached_predictor
from geosr.pipeline import Job, batches, process_batch, read_batch
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

    def predictor(self) -> Any:
        # A worker sees its tasks one by one and cannot tell whether compiling pays
        # off, so ``auto`` stays eager there; ``on`` compiles once per worker.
        compile = "on" if self.compile == "on" else "off"
        return cached_predictor(self.model, self.bands, self.scale, self.device, self.precision, compile)


class ModelPlugin(WorkerPlugin):
    """Load the model once when a worker joins, and give torch the worker's cores."""

    name = "geosr-model"

    def __init__(self, key: ModelKey, threads_by_host: dict[str, int]) -> None:
        self.key = key
        self.threads_by_host = threads_by_host

    def setup(self, worker: Any) -> None:
        import torch

        threads = self.threads_by_host.get(worker.address.rsplit(":", 1)[0].split("//")[-1])
        torch.set_num_threads(threads or max(1, len(os.sched_getaffinity(0))))
        self.key.predictor()


def model_loads() -> int:
    """How many times this process built a predictor (for the once-per-worker test)."""
    return cached_predictor.cache_info().misses


def _threads_by_host(client: Client) -> dict[str, int]:
    """Cores per worker on each host: the host's CPUs shared among its workers."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    per_host: dict[str, int] = {}
    for address in workers:
        host = address.rsplit(":", 1)[0].split("//")[-1]
        per_host[host] = per_host.get(host, 0) + 1
    cpus = len(os.sched_getaffinity(0))
    return {host: max(1, cpus // n) for host, n in per_host.items()}


@contextlib.contextmanager
def cluster_client(scheduler: str | None, workers: int | None) -> Iterator[Client]:
    """A client on ``scheduler``, or on a local cluster of ``workers`` processes."""
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise OptionError(
                f"cannot reach the Dask scheduler at {scheduler} ({exc}); is it running?"
            ) from None
        with client:
            yield client
        return
    if workers is None or workers < 1:
        raise OptionError(f"--workers must be at least 1, got {workers}")
    threads = max(1, len(os.sched_getaffinity(0)) // workers)
    environ = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
            processes=True,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def _run_batch(job: Job, tiles: Sequence[Tile], key: ModelKey, store: str) -> int:
    """One task: read, predict and write one batch of tiles into the Zarr ``store``."""
    raw = read_batch(job, tiles)
    for tile, out in zip(tiles, process_batch(job, tiles, raw, key.predictor()), strict=True):
        window = tile.core.scaled(job.scale)
        write_region(store, window.rows, window.cols, out)
    return len(tiles)


def chunk_edge(plan: TilePlan, scale: int) -> int:
    """Zarr chunk edge that makes every task's writes whole chunks: one tile core."""
    edge = plan.tile_height * scale
    if plan.tile_height != plan.tile_width or edge % 16:
        raise OptionError(
            f"on a cluster, --tile x --scale must give square output blocks that are a multiple of 16 "
            f"pixels (got tile {plan.tile_height} x {plan.tile_width} at x{scale}); use e.g. --tile 256"
        )
    return edge


def run_on_cluster(
    job: Job,
    plan: TilePlan,
    key: ModelKey,
    destination: Path,
    spec: OutputSpec,
    client: Client,
    *,
    overwrite: bool,
    on_tiles_done: Callable[[int], None] | None = None,
) -> Path:
    """Run ``plan`` on ``client``'s workers and write ``destination`` (COG or Zarr)."""
    is_zarr = destination.suffix == ".zarr"
    final: RasterSink | None = None if is_zarr else open_sink(destination, spec, overwrite=overwrite)
    # Chunks of one tile core each, so that no two tasks ever write the same chunk.
    chunked = replace(spec, block=chunk_edge(plan, job.scale)) if len(plan) > 1 else spec
    hidden = destination.with_name(f".{destination.name}.geosr-cluster.zarr")
    store = ZarrSink(destination if is_zarr else hidden, chunked, overwrite=overwrite or not is_zarr)
    try:
        client.register_plugin(ModelPlugin(key, _threads_by_host(client)))
        shared = client.scatter(job, broadcast=True)
        futures = [
            client.submit(_run_batch, shared, tiles, key, str(store.store), pure=False)
            for tiles in batches(plan.tiles, job.batch_size)
        ]
        for future in as_completed(futures):
            done = future.result()
            if on_tiles_done is not None:
                on_tiles_done(done)
        if final is None:
            return store.commit()
        _copy_store(store, final)
        store.abort()
        return final.commit()
    except BaseException:
        store.abort()
        if final is not None:
            final.abort()
        raise


def _copy_store(store: ZarrSink, sink: RasterSink) -> None:
    """Stream the finished intermediate store into the COG sink, one chunk row at a time."""
    import zarr

    from geosr.io.zarr_store import VARIABLE

    array = zarr.open_array(str(store.store), path=VARIABLE, mode="r", zarr_format=3)
    _, height, width = array.shape
    step = array.chunks[1]
    for r0 in range(0, height, step):
        rows = slice(r0, min(r0 + step, height))
        sink.write(rows, slice(0, width), np.asarray(array[:, rows, :]))
