"""Resource bounds: what a run's plan needs in memory and on disk, and a guard.

Peak memory is bounded by the configuration, not by the scene.  With ``B``
tiles per batch, a read window of ``R = (tile + 2 * halo)^2`` LR pixels (of a strip's
tiles, clamped to it, ``(tile_h + 2 * halo) * (tile_w + 2 * halo)``), ``C``
bands, ``T`` frames, scale ``s``, ``F`` model features per image, ``I`` images
in the largest model call, input/output item sizes ``i``/``o`` bytes, the
single-process run holds at most::

    model + B * (2 * T*C*R*i              raw pixels: the batch in the model + the one read ahead
                 + T*C*R*5                 float32 model input and its validity mask
                 + 2 * C*s^2*R*4           float32 output and the interpolated skip
                 + (W+1) * C*s^2*tile^2*o) finished cores: W batches being written (W writer
                                           threads, writer_threads()), one computed, waiting for a writer
          + I * (6 + 10) * T*F*R*4         activations (encoder, GRU gates and state) of one call,
                                           and the heap they leave behind (HEAP_MAPS_PER_FEATURE):
                                           a band-agnostic model sees each band of a tile as an
                                           image, and on a CPU a call holds one image in bf16,
                                           two in fp32 (three when an odd one joins;
                                           Predictor.images_per_call); none
                                           on a GPU, whose memory the batch is sized for
          + max(256 MiB,                   GDAL: its block cache (32 MiB, geosr.io) and the COG
                96 MiB + (4 + 4*N) * K,    build's buffers and compression threads: N threads
                96 MiB + 6 * V)            (one per CPU) hold about 4 COG tiles of K = C*b^2*o
                                           bytes each (pixel-interleaved, every band;
                                           b from geosr.io.sink.max_cog_block); or, where GDAL
                                           computes the overviews (odd sides), about 6 of its
                                           overview chunks of V = C*(2b+2)^2*max(o, 4) bytes
                                           (OVERVIEW_CHUNKS): gdal_bytes
          + 2 * T*C*(tile + 2*halo + 2*strip)*width*i   strip-organized input whose strips
                                           under a row of tiles outgrow the block cache: the
                                           band of strips kept by the reader, and the next
                                           (geosr.io.scene.keeps_band; at most 512 MiB a band)

With ``L`` lanes (two on a CPU with two threads or more: ``Predictor.lanes``), each
lane computes a batch and writes it itself: the ``B * (...)`` term becomes
``B * (L * (T*C*R*i + T*C*R*5 + 2*C*s^2*R*4 + C*s^2*tile^2*o) + 2 * T*C*R*i)``
(every lane's batch, one read ahead, one waiting for a lane), and the activations
term counts ``L`` calls.

not counted: a Zarr input whose chunks are larger than a tile keeps the chunks
under the current window (geosr.io.zarr_scene.ChunkedReader, at most 512 MiB),
as decoding any of its windows held them anyway

and every Dask worker holds one batch of the same (without read-ahead and
queue), its own row of strips, and its model.  :func:`memory_needed` computes it; :func:`check`
refuses a plan above the available memory (``MemAvailable``, and the address
space left under ``ulimit -v``), or whose output cannot fit on the disk.

Disk: a COG run needs, at its peak (the COG build), the run store with its
overview levels and, free beside it, as much again (the COG build's own check,
:meth:`geosr.io.cog.CogBuild._check_space`): about ``2.7 x`` the uncompressed
output (``1 x`` for a Zarr output, its whole chunks where it is uncompressed:
:func:`geosr.io.zarr_store.store_bytes`), as real imagery barely compresses in the run
store (:data:`STORE_FRACTION`).  These are estimates: ``--no-check-resources``
skips the guard, and a COG build that fails anyway keeps the run state for
``--resume``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosr.errors import OptionError, OutputError, counted
from geosr.io.atomic import format_bytes, free_bytes
from geosr.io.sink import max_cog_block

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

GDAL_CACHE = 256 * 2**20
"""What GDAL may hold (bytes) at least: the block cache geosr bounds (32 MiB) and the COG build's
buffers (:func:`gdal_bytes`)."""

COG_TILES_PER_THREAD = 4
"""COG tiles (all bands) GDAL's COG build holds per compression thread, beyond as many again
for its reading: a tile read, its copy in a compression job and the compressed buffer, with
the next job queued.  Measured as the growth of a COG build from a run store (ZSTD, predictor)
of 8 float32 bands in tiles of 512 (8 MiB) on 2 cores: 38, 95, 156 and 273 MiB with 1, 2, 4
and 8 threads; 40 bands (40 MiB tiles): 186 and 388 MiB with 1 and 2."""

OVERVIEW_CHUNKS = 6
"""Source chunks (all bands) GDAL's overview pass holds, in its own reads, jobs and block cache,
where it computes the COG's overviews itself: levels of odd sides, or a deepest tile level
too large to finish in memory (:func:`geosr.io.run_store._complete_levels`).  A chunk is the
full-resolution pixels under one overview tile, ``(2b + 2)^2`` of every band, counted in 4 bytes
at least (GDAL's work type: float32 for most types, which over-counts uint8 and uint16, whose
averages may run in their own type).  Measured on 2 CPUs, with noise, as the growth of a COG
build from a run store less the 96 MiB :data:`_GDAL_FIXED`, in chunks: 150 float32 bands
1023^2 (tiles of 128): 4.6; 300 bands 257 x 385: 3.5; 128 bands 511^2: 3.2; 7 uint16 bands
1024 x 16383 (tiles of 512): 1.3, and 2048 x 16383 no more (the pass holds chunks, not rows of
the image).  Not measured on more CPUs."""

_GDAL_FIXED = 96 * 2**20
"""GDAL's block cache (32 MiB) and what the COG build holds whatever its tiles."""

ACTIVATIONS_PER_FEATURE = 6
"""Live float32 feature maps per model feature and image at the LR read size (measured bound for CNN-RNN)."""

HEAP_MAPS_PER_FEATURE = 10
"""Freed float32 feature maps per model feature and image that the heap keeps after a
call (:mod:`geosr.allocator`) but cannot reuse for the larger blocks of the next layer or
call; how many depends on how the reader and writer threads' allocations interleave.
Measured on a 640^2 x4 fp32 run of cnnrnn-fast with tiles of 512 (two 542^2 images a
call, 451 MB of live activations): peak heap 1323 MB against 805 MB live, and the run
grew by 1.05-1.43 GB over 4 runs where the bound without this term said 0.85 GB; 10
maps (752 MB) cover the worst with 11 % to spare."""


def writer_threads() -> int:
    """Threads that write finished tiles in a single-process run: 2, up to 4 on many cores.

    A writer compresses tiles into the run store and halves them into the
    overview levels, about 100 output Mpx/s (uint16) per thread on the
    benchmark CPU: one thread caps what a fast model or a GPU can deliver.
    With the bicubic model on 2 cores, a second writer made a 2048^2 x4 run
    6-8 % faster; the CNN-RNN run was unchanged (compute-bound).
    """
    return max(2, min(4, usable_cpus() // 4))


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity where the OS has one, else all of them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


STORE_FRACTION = 1.0
"""Size of a compressed store, as a fraction of its raw pixels: the bound, not a typical value.

Real imagery compresses far worse than 2:1 in the run store (LZ4 level 1, chosen for
decoding speed).  Bicubic x2 and x4 outputs of 500^2 crops of the data in
``shared/data``, store with its overview levels against the raw pixels with theirs:
Sentinel-2 L1C 0.56, Landsat-8 B4 0.89, Landsat-8 B7 0.87, Landsat-8 RGB 0.73, NAIP
0.78, NEON 10 cm RGB 0.98, Landsat-7 RGB with gaps 0.45, float64 Sentinel-2 0.78,
float32 Sentinel-2 0.51, Landsat RGBN composite 0.90 (x2 worse than x4 throughout;
the COGs, ZSTD with a predictor, were 0.25-0.78).  A Zarr output (Blosc zstd) was
0.28-0.75.  Blosc stores a chunk it cannot compress as it is, so 1.0 covers any
imagery; anything less would accept runs whose COG build must then refuse (0.5
accepted a Sentinel-2 run whose store came out at 0.58, after all its compute)."""


@dataclass(frozen=True)
class Plan:
    """The numbers a run's resource needs depend on."""

    tile: int
    halo: int
    batch: int
    bands: int
    scale: int
    in_itemsize: int
    out_itemsize: int
    features: int
    model_bytes: int
    frames: int = 1
    workers: int = 1
    row_band_bytes: int = 0
    """A strip-organized input's band of strips (and the next), held by each reading thread."""
    images_per_call: int | None = None
    """Images in the largest model call (:meth:`~geosr.predictor.Predictor.images_per_call`);
    None: every band of every tile of the batch at once."""
    activations_in_ram: bool = True
    """False when the model runs on a GPU: its activations take GPU memory, which the batch
    size is measured against (:meth:`~geosr.predictor.Predictor.batch_size_for`), not RAM."""
    lanes: int = 1
    """Batches a single-process run computes at once (:meth:`~geosr.predictor.Predictor.lanes`),
    each with its model call's activations."""
    tile_shape: tuple[int, int] | None = None
    """The tiles' (height, width) where a scene lower or narrower than ``tile`` clamps them to a
    strip (:func:`geosr.tiling.plan_tiles`); None: ``tile`` x ``tile``.  A 4 x 20000 px strip's
    tiles of 4 x 512 were counted as 512 x 512, 16 times their memory: the default tile was
    halved for memory the run never takes, and a given --tile refused."""

    def read_pixels(self) -> int:
        """``R``: the LR pixels of one tile's read window."""
        height, width = self.tile_shape or (self.tile, self.tile)
        return (height + 2 * self.halo) * (width + 2 * self.halo)

    def core_pixels(self) -> int:
        """The LR pixels of one tile's core."""
        height, width = self.tile_shape or (self.tile, self.tile)
        return height * width

    def activation_bytes(self) -> int:
        """Bytes of RAM the model's activations take during one call."""
        if not self.activations_in_ram:
            return 0
        images = self.batch * self.bands if self.images_per_call is None else self.images_per_call
        return ACTIVATIONS_PER_FEATURE * images * self.frames * self.features * self.read_pixels() * 4

    def heap_bytes(self) -> int:
        """Bytes the heap keeps beyond the live activations (:data:`HEAP_MAPS_PER_FEATURE`)."""
        return self.activation_bytes() // ACTIVATIONS_PER_FEATURE * HEAP_MAPS_PER_FEATURE

    def tile_bytes(self, *, queued: bool) -> int:
        """Bytes one tile holds while it is in flight: with what waits around it in a
        single-process run (``queued``), else alone (a Dask worker's batch)."""
        read = self.read_pixels()
        tc = self.frames * self.bands
        raw = tc * read * self.in_itemsize
        computing = tc * read * 5 + 2 * self.bands * self.scale**2 * read * 4
        core = self.bands * self.scale**2 * self.core_pixels() * self.out_itemsize
        if not queued:
            return int(raw + computing + core)
        if self.lanes > 1:
            # Each lane holds its batch until written; one batch is read ahead, and one waits
            # in the calling thread for a free lane.
            return int(self.lanes * (raw + computing + core) + 2 * raw)
        return int(2 * raw + computing + core * (writer_threads() + 1))


def memory_needed(plan: Plan) -> int:
    """Peak memory of a run (bytes), from the formula in the module docstring."""
    model = plan.model_bytes + plan.activation_bytes() + plan.heap_bytes()
    gdal = gdal_bytes(plan.bands, plan.out_itemsize)
    if plan.workers <= 1:
        calls = (plan.lanes - 1) * (plan.activation_bytes() + plan.heap_bytes())  # the other lanes'
        return model + calls + plan.batch * plan.tile_bytes(queued=True) + plan.row_band_bytes + gdal
    per_worker = model + plan.batch * plan.tile_bytes(queued=False) + plan.row_band_bytes
    return plan.workers * per_worker + gdal


def gdal_bytes(bands: int, itemsize: int) -> int:
    """What GDAL holds at most (bytes): :data:`GDAL_CACHE`, or more where the COG build's
    tiles in flight outgrow it (many bands, many CPUs).

    The COG build compresses on every CPU (``NUM_THREADS=ALL_CPUS``, which counts no more
    CPUs than :func:`usable_cpus`), each thread holding :data:`COG_TILES_PER_THREAD` tiles
    of all ``bands`` (:func:`geosr.io.sink.max_cog_block`).  Counted for a Zarr output too,
    which has no COG build: the bound is the same whatever the output.  GDAL computes the
    overviews itself, before that build, where a COG's sides are odd (a 7611 x 7531 Landsat
    scene's level at x2), holding :data:`OVERVIEW_CHUNKS` chunks of all bands: counted too,
    as the output's sides are not part of the bound.
    """
    block = max_cog_block(bands, itemsize)
    tile = bands * block**2 * itemsize
    chunk = bands * (2 * block + 2) ** 2 * max(itemsize, 4)
    build = COG_TILES_PER_THREAD * (1 + usable_cpus()) * tile
    return max(GDAL_CACHE, _GDAL_FIXED + max(build, OVERVIEW_CHUNKS * chunk))


def disk_needed(output_bytes: int, *, cog: bool, cog_bytes: int = 0, zarr_bytes: int = 0) -> int:
    """Disk a run needs at its peak, for ``output_bytes`` of uncompressed output.

    A COG run holds its run store with overview levels (4/3), and the COG build
    starts only with as much free as the store takes (the COG's upper bound:
    :meth:`geosr.io.cog.CogBuild._check_space`), so the store counts twice.  The
    store is raw where the disk has room for it (:func:`geosr.io.run_store.raw_store_fits`),
    else compressed, which on real imagery saves no more than the bound allows
    (:data:`STORE_FRACTION`).  A Zarr output is its store.

    ``cog_bytes`` is the COG's own bound where the build asks more than the store's: an
    uncompressed COG's every tile at full size (:func:`geosr.io.cog.uncompressed_cog_bytes`).
    ``zarr_bytes``, a Zarr output's (:func:`geosr.io.zarr_store.store_bytes`): an uncompressed
    store's every chunk at full size, its coordinates and metadata.
    """
    if cog:
        store = int(output_bytes * STORE_FRACTION * 4 / 3)
        return store + max(store, cog_bytes)
    return max(int(output_bytes * STORE_FRACTION), zarr_bytes)


def resident_bytes() -> int | None:
    """This process's resident memory now (Linux ``/proc/self/statm``), or None elsewhere."""
    try:
        resident_pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def available_memory() -> int | None:
    """Memory a run may use: ``MemAvailable``, capped by the address space left under ``ulimit -v``."""
    available: int | None = None
    with contextlib.suppress(OSError, ValueError), Path("/proc/meminfo").open() as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    if available is None:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if resource is not None:
        soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            left = soft - _address_space()
            available = left if available is None else min(available, left)
    return available


def _address_space() -> int:
    with contextlib.suppress(OSError, ValueError), Path("/proc/self/status").open() as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def check(
    plan: Plan,
    output_bytes: int,
    destination: Path,
    *,
    already_on_disk: int = 0,
    cog_bytes: int = 0,
    zarr_bytes: int = 0,
) -> None:
    """Refuse a run whose plan exceeds the available memory or disk, with the numbers.

    ``cog_bytes``: the COG build's own bound, where its run store's does not hold; ``zarr_bytes``:
    a Zarr output's (:func:`disk_needed`).

    Raises
    ------
    OptionError
        The plan's peak memory exceeds what is available.
    OutputError
        The output will not fit on the destination's file system.
    """
    memory = memory_needed(plan)
    available = available_memory()
    if available is not None and memory > available:
        raise OptionError(
            f"the run would need about {format_bytes(memory)} of memory (tile {plan.tile} + halo "
            f"{plan.halo}, batch {plan.batch}, {counted(plan.workers, 'worker')}, "
            f"{counted(plan.bands, 'band')}, x{plan.scale}) "
            f"but only {format_bytes(available)} are available; use a smaller --tile or --batch-size "
            "(or --no-check-resources to try anyway)"
        )
    cog = destination.suffix.lower() != ".zarr"
    needed = disk_needed(output_bytes, cog=cog, cog_bytes=cog_bytes, zarr_bytes=zarr_bytes)
    disk = max(0, needed - already_on_disk)
    free = free_bytes(destination.parent)
    if free is not None and disk > free:
        raise OutputError(
            f"cannot write {destination}: the output is {format_bytes(output_bytes)} uncompressed and "
            f"the run needs about {format_bytes(disk)} of disk, but {format_bytes(free)} are free in "
            f"{destination.parent}; free some space, write elsewhere, or use a smaller --scale "
            "(or --no-check-resources to try anyway)"
        )


def output_bytes(height: int, width: int, bands: int, scale: int, dtype: str) -> int:
    """Uncompressed size of the output of a ``height x width`` scene."""
    return height * width * scale**2 * bands * np.dtype(dtype).itemsize
