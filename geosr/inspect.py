"""``geosr info``: what a scene is and what a run on it would do, before running it."""

from __future__ import annotations

import dataclasses
import functools
import math
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
from odc.geo.geobox import GeoBox

from geosr import resources
from geosr.api import (
    check_output_name,
    into_folder,
    model_label,
    output_bounds,
    refuse_inside_zarr_store,
    remote_output,
    sizing_spec,
    zarr_chunks,
)
from geosr.errors import InputError, OutputError
from geosr.fingerprint import job_fingerprint
from geosr.grid import crs_code, crs_wkt, describe, scaled
from geosr.io.atomic import already_exists, check_name_length, check_writable, format_bytes, free_bytes
from geosr.io.bands import check_band_layout, reflectance_offset
from geosr.io.cog import is_bigtiff
from geosr.io.names import utf8_name
from geosr.io.remote import (
    check_remote_output,
    file_url_path,
    is_remote,
    staged_output,
    without_signatures,
)
from geosr.io.run_store import StoreWriter, create_run_store, finalise, output_job
from geosr.io.runstate import StaleRunError, job_digest, reclaimable_bytes, run_dir, stale_run, stored_run
from geosr.io.scene import Scene, read_sample, sample_step
from geosr.io.sink import DEFAULT_COMPRESS, OutputSpec
from geosr.io.zarr_store import check_zarr_grid
from geosr.lanes import PEERS
from geosr.memory_fit import fit_to_memory
from geosr.models import SRModel, load_model
from geosr.normalise import Normalisation, valid_mask
from geosr.options import RunOptions
from geosr.pipeline import Job, process_batch, read_batch
from geosr.predictor import Predictor
from geosr.run_inputs import (
    EMPTY_AREA_REMEDY,
    area_has_data,
    check_normalisable,
    frame_shifts,
    frames_for,
    frames_read,
    normalisation_for,
    output_mask,
    reference_sample,
    run_halo,
    sampled_for_reference,
    sampled_inside,
    scene_for,
    warn_empty_bands_of,
    warn_float_fill,
    warn_undeclared_zeros,
)
from geosr.run_outputs import check_output_given, default_output, extra_files, refuse_overwriting_inputs
from geosr.tiling import TilePlan, plan_tiles


@dataclass(frozen=True)
class Timing:
    """What one batch of the run took here, and the run's time from it.

    The model's time alone missed most of a run: with the bicubic model a
    2048^2 scene at x4 ran in 6.9 s for an estimate of 0.7-1.3 s, its COG
    build (compression and layout by GDAL's COG driver) taking 3.8 s and the
    run store's writes 3.1 s.  So a sample of the model's output is also written
    into a run store and built into a COG, by the run's own code, and those
    costs are scaled by the output's size (:func:`_time_output`).
    """

    batches: int
    model: float
    """Seconds a batch takes in the model, with the tiles' preparation and finishing, on the
    share of torch's threads a lane of the run gives it (:attr:`lanes`)."""
    model_batches: int
    """Batches the model runs: those of the tiles with a valid pixel (the others skip it)."""
    read: float
    """Seconds to read a batch's tiles."""
    store: float
    """Seconds to create the run store and write the whole output into it, with its overview levels."""
    cog: float
    """Seconds to build the whole COG from the run store, checks and validation included."""
    sample: float
    """Seconds of the strided reads before the first tile: the whole file's, which fixes the
    scene's normalisation, and each ``--frame``'s, which checks its units."""
    overlapped: bool
    """Whether the model runs beside reading and writing (a GPU) rather than on their cores."""
    lanes: int = 1
    """Batches the run computes at once (:meth:`~geosr.predictor.Predictor.lanes`), each on its
    share of the threads."""
    compress: str = DEFAULT_COMPRESS
    """The output's compression (``--compress``), which :attr:`store` and :attr:`cog` were measured with."""
    zarr: bool = False
    """Whether the output is a Zarr store: the run store itself, with no COG build (:attr:`cog`
    is then the store's finishing, its metadata consolidated and the store renamed)."""

    @property
    def model_seconds(self) -> float:
        """The model's time in the run: its batches, ``lanes`` at a time, each as long as the
        timed one.  A batch timed on every thread, times all the batches, was 22 s for a run
        of 7.7 s on 2 cores (cnnrnn-fast, 4 batches on 2 lanes of one thread each)."""
        return self.model * -(-self.model_batches // self.lanes)

    @property
    def total(self) -> float:
        """The whole run's estimated seconds: the sample, the tiles, then the COG build (or
        the store's finishing)."""
        # Reading (one thread) and writing (writer_threads) overlap each other, and on a
        # GPU the model too; on a CPU the model's threads take every core, so they add to
        # it (a bicubic 2048^2 x4 run: model 1.4 s + writes 3.1 s on 2 writers = 3.0 s
        # against 2.8 s measured for the tiles).
        io = max(self.read * self.batches, self.store / resources.writer_threads())
        model = self.model_seconds
        tiles = max(model, io) if self.overlapped else model + io
        return self.sample + tiles + self.cog

    def describe(self) -> str:
        """The estimate and what it is made of."""
        output = (
            f"writing the store {_seconds(self.store + self.cog)}"
            if self.zarr
            else f"run store {_seconds(self.store)}, COG build {_seconds(self.cog)}"
        )
        reading = self.read * self.batches + self.sample
        return (
            f"{_seconds(self.total)} for {output_kind(self.compress, zarr=self.zarr)}: "
            f"model {_seconds(self.model_seconds)}, reading {_seconds(reading)}, "
            f"{output} (measured on 1 of {self.batches} batch{'es' if self.batches > 1 else ''})"
        )


_COG_KINDS = {
    "zstd": "a ZSTD COG",
    "deflate": "a DEFLATE COG",
    "lzw": "an LZW COG",
    "none": "an uncompressed COG",
}
"""The COG of each ``--compress`` as info's lines name it, its compression as gdalinfo does."""


_ZARR_KINDS = {
    "zstd": "a Zarr store (Blosc zstd)",
    "deflate": "a Zarr store (gzip)",
    "none": "an uncompressed Zarr store",
}
"""The Zarr store of each ``--compress`` as info's lines name it, by its codec."""


def cog_kind(compress: str) -> str:
    """The COG of ``--compress`` as info's lines name it: 'a ZSTD COG', 'an uncompressed COG'."""
    return _COG_KINDS[compress]


def output_kind(compress: str, *, zarr: bool) -> str:
    """The output of ``--compress`` as info's lines name it: :func:`cog_kind`, or for a Zarr
    store 'a Zarr store (Blosc zstd)', 'an uncompressed Zarr store'."""
    return _ZARR_KINDS[compress] if zarr else cog_kind(compress)


def _seconds(value: float) -> str:
    return f"{value:.0f} s" if value >= 10 else f"{value:.1f} s"


@dataclass(frozen=True)
class RunPlan:
    """A scene and the plan of a run on it, with a measured time estimate."""

    scene: Scene
    options: RunOptions
    model: str
    plan: TilePlan
    batch_size: int
    device: str
    precision: str
    output_bytes: int
    timing: Timing | None
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    process_bytes: int | None = None
    """What this process held (resident) before the run's memory: Python, torch, GDAL, the model."""
    valid_fraction: float | None = None
    """Share of the scene's pixels valid in some band, from the strided sample (calibrated plans)."""
    refused: bool = False
    """Whether the run refuses the scene: its whole file holds no valid pixel, also around an --aoi,
    or its area of interest none (:attr:`area_refused`)."""
    area_refused: bool = False
    """Whether the run refuses the area of interest alone: its file holds valid pixels, the area none."""
    frames: int = 0
    """The ``--frame`` files the model fuses with the input."""
    aoi_nodata: float | None = None
    """What the output marks outside an ``--aoi`` polygon (None without one)."""
    source: str | Path | None = None
    """The input as given, beside which the run writes: a STAC Item's, not its ``--asset``'s file."""
    lanes: int = 1
    """Batches the run computes at once (:meth:`~geosr.predictor.Predictor.lanes`)."""
    destination: Path | None = None
    """Where the run writes (:func:`planned_output`); None: the default output beside the input."""
    output: str | None = None
    """The output as geosr run names it on stdout: a remote one's URL, of which :attr:`destination`
    is the local copy; None: :attr:`destination`'s path."""
    chunks: tuple[int, int] = (0, 0)
    """A Zarr output's chunks (rows, cols) of a band (:func:`~geosr.api.zarr_chunks`)."""
    tiles_done: int | None = None
    """Tiles of :attr:`plan` an unfinished run of this same job at the output finished (its
    journal), which ``geosr run --resume`` keeps; None where no such run is kept there."""
    resumed: Timing | None = None
    """The estimate of ``geosr run --resume`` finishing that run: the tiles left, then the output."""
    other_run: str | None = None
    """What ``geosr run`` says of an unfinished run of another job kept at the output, which
    it refuses to start over without ``--restart`` (None where there is none)."""

    @property
    def zarr(self) -> bool:
        """Whether the output is a Zarr store (else a COG)."""
        return self.destination is not None and self.destination.suffix.lower() == ".zarr"

    @property
    def estimated_seconds(self) -> float | None:
        """The run's estimated seconds (:attr:`Timing.total`); None where no batch was timed."""
        return None if self.timing is None else self.timing.total

    @property
    def resume_seconds(self) -> float | None:
        """The estimated seconds of ``geosr run --resume`` (:attr:`resumed`); None where there is
        no unfinished run of this job to resume, or no batch was timed."""
        return None if self.resumed is None else self.resumed.total

    def _input(self) -> str:
        """The input as given, and the file read for it where that is another (a STAC Item's
        ``--asset``): the line named the asset's file alone, not the Item the run was given."""
        if self.source is None or str(self.source) == str(self.scene.path):
            return str(self.scene.path)
        return f"{self.source} (reads {self.scene.path})"

    def lines(self) -> list[tuple[str, str]]:
        """The ``(key, value)`` lines ``geosr info`` prints: what the input is, then the run's plan."""
        return self._input_lines() + self._run_lines()

    def _input_lines(self) -> list[tuple[str, str]]:
        """The lines on the input: its path, grid, bands, nodata, mask, valid pixels and window."""
        s = self.scene
        rows = [
            ("input", self._input()),
            ("grid", describe(s.grid)),
            ("bands", self._bands()),
            ("nodata", _nodata_text(s, self.aoi_nodata)),
        ]
        if s.masked:
            rows.append(
                ("mask", f"the file's mask hides pixels; the output marks them nodata {s.output_nodata:g}")
            )
        if self.valid_fraction is not None:
            rows.append(
                ("valid pixels", _valid_text(self.valid_fraction, self.refused, area=self.area_refused))
            )
        if s.file_shape is not None:
            h, w = s.grid.shape.yx
            fh, fw = s.file_shape
            rows.append(
                (
                    "area of interest",
                    # Last column and row included, and the size: 'cols 20-60' of 40 columns read
                    # as 41 to a GDAL user (gdal_translate -srcwin takes offsets and sizes).
                    f"cols {s.origin[1]}-{s.origin[1] + w - 1}, rows {s.origin[0]}-{s.origin[0] + h - 1} "
                    f"({w} x {h} px) of the {fw} x {fh} px file",
                )
            )
        return rows

    def _bands(self) -> str:
        """The bands' count, dtype and names (or numbers)."""
        s = self.scene
        # The file's band numbers, which --bands takes: a selection or an alpha band
        # makes them other than 1..count.
        names = (
            d or f"band {i}"
            for i, d in zip(
                s.bands or range(1, s.count + 1), s.descriptions or (None,) * s.count, strict=True
            )
        )
        return f"{s.count} x {s.dtype}: " + ", ".join(names)

    def _run_lines(self) -> list[tuple[str, str]]:
        """The lines on the run: output grid and size, model, tiles, batch, resources and time."""
        rows = [
            # As the run prints it: with -o FOLDER (or a folder URL) the file it names there.
            ("output", _json_path(self._output_name())),
            ("output grid", describe(scaled(self.scene.grid, self.options.scale))),
            ("output size", self._output_size()),
            ("model", f"{self.model} x{self.options.scale}" + _frames_text(self.frames)),
            (
                "tiles",
                f"{len(self.plan)} of {self.plan.tile_width} x {self.plan.tile_height} px, "  # w x h, as grid
                f"halo {self.plan.halo} px",
            ),
            (
                "batch",
                f"{self.batch_size} tile{'' if self.batch_size == 1 else 's'} on {self.device}, "
                f"{self.precision}" + (f", {self.lanes} batches at once" if self.lanes > 1 else ""),
            ),
        ]
        if self.memory_bytes is not None and self.disk_bytes is not None:
            held = self.process_bytes or 0
            rows.append(
                (
                    "resources",
                    f"peak memory about {format_bytes(held + self.memory_bytes)} ("
                    + (f"{format_bytes(held)} for Python, torch and the model, then " if held else "")
                    + f"{format_bytes(self.memory_bytes)} set by tile and batch, not the scene); "
                    f"disk about {format_bytes(self.disk_bytes)} for "
                    + output_kind(self.options.compress, zarr=self.zarr)
                    + self._shortfall(),
                )
            )
        rows.extend(self._unfinished_lines())
        if self.timing is not None:
            rows.append(("estimated time", self._time_text(self.timing)))
        return rows

    def _unfinished_lines(self) -> list[tuple[str, str]]:
        """The line on an unfinished run kept at the output: of this job, what --resume keeps; of
        another, what geosr run says of it.  Without it, info planned every tile of a run that
        geosr run then refused to start ('an unfinished run of this job (4 of 16 tiles done)')."""
        if self.other_run is not None:
            return [("unfinished run", f"geosr run refuses to start: {self.other_run}")]
        if self.tiles_done is None or self.destination is None:
            return []
        total, done = len(self.plan), self.tiles_done
        return [
            (
                "unfinished run",
                f"{done} of {total} tiles done, kept in {run_dir(self.destination)}; "
                f"geosr run --resume computes the {total - done} left, --restart all {total} again",
            )
        ]

    def _time_text(self, timing: Timing) -> str:
        """The estimated time: of an unfinished run's --resume too, where there is one."""
        if self.resumed is None or self.tiles_done is None:
            return timing.describe()
        total = len(self.plan)
        return (
            f"{_seconds(self.resumed.total)} with --resume ({total - self.tiles_done} of {total} tiles "
            f"left), with --restart {timing.describe()}"
        )

    def _output_size(self) -> str:
        """The output's uncompressed size, and whether it needs a BigTIFF (a COG) or in how
        many chunks it is stored (a Zarr store)."""
        size = (
            f"{self.output_bytes / 2**30:.2f} GiB"
            if self.output_bytes >= 2**30
            # A small output in KiB: 'MiB' to one decimal made a 100 x 80 one '0.0 MiB'.
            else format_bytes(self.output_bytes)
        )
        if self.zarr:
            rows, cols = self.chunks
            height, width = scaled(self.scene.grid, self.options.scale).shape.yx
            count = self.scene.count * -(-height // rows) * -(-width // cols)
            each = ", one band each" if self.scene.count > 1 else ""
            return (
                f"{size} uncompressed, in {count} chunk{'s' if count > 1 else ''} of {cols} x {rows} px{each}"
            )
        return f"{size} uncompressed" + (
            " (BigTIFF)" if is_bigtiff(sizing_spec(self.scene, self.options)) else ""
        )

    def _output_path(self) -> Path:
        """Where the run writes: :attr:`destination`, or the default output beside the input."""
        source = self.scene.path if self.source is None else self.source
        return self.destination or default_output(source, self.options.scale)

    def _output_name(self) -> str | Path:
        """The output as geosr run names it (:attr:`output`), else :meth:`_output_path`."""
        return self.output or self._output_path()

    def _room(self) -> _Room:
        """The memory and the disk the run's resource check finds (:func:`geosr.api._check_resources`)."""
        destination = self._output_path()
        folder = _existing(destination.parent.resolve())
        # As the run's check: what an unfinished run of the output holds (its run state, which
        # the run resumes into, and temporaries) is the run's to take back; counted as taken,
        # it said 'geosr run would refuse it' of a run that fits.
        return _Room(resources.available_memory(), folder, free_bytes(folder), reclaimable_bytes(destination))

    def _shortfall(self) -> str:
        """What geosr run would refuse for lack of memory or of disk in the output's folder, as
        its resource check does (:func:`geosr.api._check_resources`); empty when both fit."""
        out = []
        room = self._room()
        if room.memory is not None and room.memory_short(self.memory_bytes):
            hint = "use a smaller --tile or --batch-size"
            out.append(f"only {format_bytes(room.memory)} of memory available ({hint})")
        if room.free is not None and room.disk_short(self.disk_bytes):
            out.append(f"only {format_bytes(room.free)} free in {room.folder} (write elsewhere with -o)")
        return f"; {' and '.join(out)}: geosr run would refuse it" if out else ""

    def to_dict(self) -> dict[str, Any]:
        """The plan as ``geosr info --json`` prints it: what :meth:`lines` says, as JSON values.

        Numbers are numbers (bytes, seconds, pixels), not the lines' rounded text; a NaN nodata
        is ``"nan"``, as a STAC Item's; paths are UTF-8 text without a signed URL's signature.
        The keys, each always present (None, JSON's null, where the line is absent):

        ``input``, ``reads``
            The input as given, and the file read for it (another for a STAC Item's asset).
        ``grid``, ``output_grid``
            ``width``, ``height`` (pixels), ``crs`` (``"EPSG:32633"`` where a code names it, else
            WKT; None for none), ``transform`` (the 6 numbers a, b, c, d, e, f of the affine,
            rasterio's order), ``bounds`` ([left, bottom, right, top] in the CRS).
        ``bands``
            ``count``, ``dtype``, ``indexes`` (the file's band numbers read), ``names`` (each
            band's description, or None).
        ``nodata``
            ``value`` (the input's, shared by its bands), ``bands`` (each band's own where they
            differ, else None), ``missing_values`` (a CF variable's further fill values),
            ``output`` (what the output declares), ``masked`` (a mask hides pixels).
        ``valid_fraction``
            The share of valid pixels in a strided sample (None without ``--calibrate``);
            ``refused``: whether geosr run refuses the scene (no valid pixel in the file, or in its
            area of interest).
        ``area_of_interest``
            ``col``, ``row``, ``width``, ``height`` of the window read, ``file_width``,
            ``file_height``; None where the whole file is read.
        ``output``
            ``path`` (as geosr run prints it: the file it names in a folder, a remote output's
            URL), ``format`` (``"cog"`` or ``"zarr"``), ``compress``, ``bytes``
            (uncompressed), ``bigtiff`` (a COG's; None for Zarr), ``chunks`` ([rows, cols]; None
            for a COG).
        ``model``
            ``name``, ``scale``, ``frames`` (the ``--frame`` files fused).
        ``tiles``
            ``count``, ``width``, ``height``, ``halo`` (pixels of the input).
        ``batch``
            ``size`` (tiles), ``device``, ``precision``, ``lanes`` (batches at once).
        ``resources``
            ``peak_memory_bytes`` (``process_bytes`` + ``memory_bytes``), ``process_bytes``,
            ``memory_bytes`` (set by tile and batch), ``disk_bytes``, ``available_memory_bytes``,
            ``free_disk_bytes`` (in ``disk_folder``), ``memory_short``, ``disk_short`` (geosr run
            would refuse it for lack of either); None without a memory estimate.
        ``estimate``
            ``seconds`` (the whole run), ``model_seconds``, ``reading_seconds``, ``store_seconds``,
            ``cog_seconds`` (a Zarr store's finishing for Zarr), ``batches``, ``resume_seconds``
            (``geosr run --resume`` of an unfinished run; else None); None without ``--calibrate``.
        ``unfinished_run``
            An unfinished run kept at the output: ``same_job`` (whether ``--resume`` keeps it),
            ``tiles_done``, ``tiles`` and ``run_state`` (its folder) for this job's, ``message``
            (what geosr run says) for another's; None where there is none.
        """
        timing = self.timing
        return {
            "input": _json_path(self.scene.path if self.source is None else self.source),
            "reads": _json_path(self.scene.path),
            "grid": _grid_dict(self.scene.grid),
            "bands": self._bands_dict(),
            "nodata": self._nodata_dict(),
            "valid_fraction": self.valid_fraction,
            "refused": self.refused,
            "area_of_interest": self._window_dict(),
            "output_grid": _grid_dict(scaled(self.scene.grid, self.options.scale)),
            "output": self._output_dict(),
            "model": {"name": self.model, "scale": self.options.scale, "frames": self.frames},
            "tiles": {
                "count": len(self.plan),
                "width": self.plan.tile_width,
                "height": self.plan.tile_height,
                "halo": self.plan.halo,
            },
            "batch": {
                "size": self.batch_size,
                "device": self.device,
                "precision": self.precision,
                "lanes": self.lanes,
            },
            "resources": self._resources_dict(),
            "estimate": None if timing is None else _timing_dict(timing, self.resume_seconds),
            "unfinished_run": self._unfinished_dict(),
        }

    def _bands_dict(self) -> dict[str, Any]:
        s = self.scene
        return {
            "count": s.count,
            "dtype": s.dtype,
            "indexes": list(s.bands or range(1, s.count + 1)),
            "names": list(s.descriptions or (None,) * s.count),
        }

    def _nodata_dict(self) -> dict[str, Any]:
        s = self.scene
        output = s.output_nodata if s.output_nodata is not None else self.aoi_nodata
        return {
            "value": _json_number(s.nodata),
            "bands": [_json_number(v) for v in s.band_nodata] if s.band_nodata else None,
            "missing_values": [_json_number(v) for v in s.missing_values],
            "output": _json_number(output),
            "masked": s.masked,
        }

    def _window_dict(self) -> dict[str, int] | None:
        s = self.scene
        if s.file_shape is None:
            return None
        h, w = s.grid.shape.yx
        return {
            "col": s.origin[1],
            "row": s.origin[0],
            "width": w,
            "height": h,
            "file_width": s.file_shape[1],
            "file_height": s.file_shape[0],
        }

    def _output_dict(self) -> dict[str, Any]:
        return {
            "path": _json_path(self._output_name()),
            "format": "zarr" if self.zarr else "cog",
            "compress": self.options.compress,
            "bytes": self.output_bytes,
            "bigtiff": None if self.zarr else is_bigtiff(sizing_spec(self.scene, self.options)),
            "chunks": list(self.chunks) if self.zarr else None,
        }

    def _resources_dict(self) -> dict[str, Any] | None:
        if self.memory_bytes is None or self.disk_bytes is None:
            return None
        held = self.process_bytes or 0
        room = self._room()
        return {
            "peak_memory_bytes": held + self.memory_bytes,
            "process_bytes": held,
            "memory_bytes": self.memory_bytes,
            "disk_bytes": self.disk_bytes,
            "available_memory_bytes": room.memory,
            "free_disk_bytes": room.free,
            "disk_folder": _json_path(room.folder),
            "memory_short": room.memory_short(self.memory_bytes),
            "disk_short": room.disk_short(self.disk_bytes),
        }

    def _unfinished_dict(self) -> dict[str, Any] | None:
        if self.other_run is not None:
            return {"same_job": False, "message": without_signatures(self.other_run)}
        if self.tiles_done is None or self.destination is None:
            return None
        return {
            "same_job": True,
            "tiles_done": self.tiles_done,
            "tiles": len(self.plan),
            "run_state": _json_path(run_dir(self.destination)),
        }


@dataclass(frozen=True)
class _Room:
    """The memory and the disk a run finds: what geosr run's resource check compares its needs with."""

    memory: int | None
    """Bytes of memory available (None where the system does not say)."""
    folder: Path
    """The output's folder, or its nearest existing parent."""
    free: int | None
    """Bytes free in :attr:`folder` (None where the file system does not say)."""
    reclaimable: int
    """Bytes an unfinished run of the output holds, which the run takes back."""

    def memory_short(self, needed: int | None) -> bool:
        """Whether ``needed`` bytes (set by tile and batch) are more than :attr:`memory`."""
        # The run's check compares what tile and batch need (process_bytes is already in use).
        return self.memory is not None and needed is not None and needed > self.memory

    def disk_short(self, needed: int | None) -> bool:
        """Whether ``needed`` bytes of disk, less :attr:`reclaimable`, are more than :attr:`free`."""
        return self.free is not None and needed is not None and needed - self.reclaimable > self.free


def _json_path(path: str | Path) -> str:
    """``path`` as info's JSON gives it: UTF-8 text, a signed URL's signature left out."""
    return without_signatures(utf8_name(path))


def _json_number(value: float | None) -> float | str | None:
    """``value`` as JSON holds it: NaN, which JSON has no token for, as ``"nan"`` (a STAC Item's)."""
    return "nan" if value is not None and math.isnan(value) else value


def _grid_dict(grid: GeoBox) -> dict[str, Any]:
    """``grid``'s size, CRS (its code, else WKT), affine transform and bounds, as JSON values."""
    h, w = grid.shape.yx
    crs = None if grid.crs is None else crs_code(grid.crs) or crs_wkt(grid.crs)
    box = grid.boundingbox
    return {
        "width": w,
        "height": h,
        "crs": crs,
        "transform": list(grid.affine)[:6],
        "bounds": [box.left, box.bottom, box.right, box.top],
    }


def _timing_dict(timing: Timing, resume_seconds: float | None) -> dict[str, Any]:
    """``timing``'s estimate and its parts in seconds, as :meth:`Timing.describe` says them."""
    return {
        "seconds": timing.total,
        "model_seconds": timing.model_seconds,
        "reading_seconds": timing.read * timing.batches + timing.sample,
        "store_seconds": timing.store,
        "cog_seconds": timing.cog,
        "batches": timing.batches,
        "resume_seconds": resume_seconds,
    }


def _existing(folder: Path) -> Path:
    """``folder``, or its nearest existing parent: a remote output's staging folder is made by
    the run (:func:`~geosr.io.remote.staging_folder`), on the file system of its parent."""
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    return folder


def planned_output(src: str | Path, options: RunOptions, output: str | Path | None) -> Path:
    """Where ``geosr run`` with ``-o output`` writes: ``output``, a file in it where it is a
    folder, the local copy of a remote one (:func:`~geosr.io.remote.staged_output`), or the
    default beside ``src`` for None.  Refused as the run refuses its name.

    Raises
    ------
    OptionError
        ``output`` is empty, selects no format, takes no ``--zarr-format`` or ``--compress``
        of ``options``, or is inside a Zarr store.
    OutputError
        ``output`` cannot be written: its folder is missing or not writable, a folder of
        other files is in its place, or its name is too long for the run's temporaries beside it.
    """
    default = default_output(src, options.scale, options.variable)
    path = default if output is None else _given_output(output, default)
    check_output_name(src, path, options)  # a --zarr-format is for a .zarr output
    # The run's, before its first tile: its temporaries' names would be too long beside it.
    check_name_length(path)
    return path


def _output_named(src: str | Path, options: RunOptions, output: str | Path | None, destination: Path) -> str:
    """The output as geosr run names it on stdout: ``destination`` (:func:`planned_output`), or
    the URL of a remote ``output``, the default output's name in a folder URL; info's JSON gave
    the local copy the run uploads (/tmp/.geosr-upload-0-.../in_x2.tif for -o s3://bucket/)."""
    given = None if output is None else file_url_path(output)
    if given is not None and is_remote(str(given)):
        return remote_output(src, given, options)
    return str(destination)


def _given_output(output: str | Path, default: Path) -> Path:
    """Where the run writes for ``-o output`` (``default`` is the name it gives a file in a
    folder), refused where the run cannot write it (:func:`planned_output`)."""
    check_output_given(output)
    text = str(file_url_path(output))
    if is_remote(text):
        path = staged_output(f"{text}{default.name}" if text.endswith("/") else text)
    else:
        path = into_folder(Path(text), default)
        refuse_inside_zarr_store(path)
        # A missing or unwritable folder, a folder of other files in its place: what the run
        # refuses before reading a pixel, whatever --overwrite says.  An existing output is
        # refused later (plan_run), after an output over an input, in the run's order.
        check_writable(path, overwrite=True)
    return path


def _refuse_existing_output(
    src: str | Path, output: str | Path, destination: Path, options: RunOptions
) -> str | None:
    """Refuse the existing output ``output`` (planned into ``destination``) as the run refuses it
    without --overwrite (and, as info takes no --resume, its own job's too).

    The default output is not refused: `geosr info scene.tif` after a run of it still describes
    the scene, and the run itself says the rest.  A remote output is refused by the run's check of
    the URL (:func:`~geosr.io.remote.check_remote_output`), not of its local staging copy, which
    info's plan took for it: it planned over an existing ``s3://`` output the run refuses.

    Returns
    -------
    str or None
        The ``GEOSR_JOB`` tag of a local output of a geosr job, which is refused once the job
        is known (:func:`_refuse_a_jobs_output`), as the run refuses it: this same job's is
        one geosr run --resume keeps.  None where there is none, or with --overwrite.
    """
    named = file_url_path(output)
    if is_remote(str(named)):
        check_remote_output(remote_output(src, named, options), overwrite=options.overwrite)
        return None
    job = None if options.overwrite else output_job(destination)
    check_writable(destination, options.overwrite or job is not None)
    return job


def _refuse_a_jobs_output(destination: Path, found: str, fingerprint: dict[str, Any] | None) -> NoReturn:
    """Refuse ``destination``, the output of the geosr job ``found`` (its ``GEOSR_JOB`` tag), as
    the run without --resume and --overwrite refuses it: the job of ``fingerprint``'s (which
    geosr run --resume keeps) in words saying so, where info said only "already exists; pass
    --overwrite to replace it"; any other job's, or any where ``fingerprint`` is None (the job
    could not be fingerprinted), as such.

    Raises
    ------
    OutputError
        Always.
    """
    if fingerprint is not None and found == job_digest(fingerprint):
        raise OutputError(
            f"{destination} already exists, written by this same job; geosr run --resume keeps it "
            "(nothing is computed again), or pass --overwrite to plan replacing it"
        )
    raise already_exists(destination)


def _job_fingerprint(
    destination: Path,
    scene: Scene,
    net: SRModel,
    predictor: Predictor,
    plan: TilePlan,
    options: RunOptions,
    frames: tuple[Scene, ...],
    reference: np.ndarray | None,
) -> dict[str, Any] | None:
    """The run's :func:`~geosr.fingerprint.job_fingerprint` of ``plan`` into ``destination``, of
    its normalisation from ``reference``; None where the scene has no valid pixel (the run
    refuses it first: :attr:`RunPlan.refused`)."""
    offsets = reflectance_offset(scene, options.offset)
    with warnings.catch_warnings():
        # The sample's warnings (undeclared zeros, a float fill) are plan_run's to give, once.
        warnings.simplefilter("ignore")
        try:
            norm = normalisation_for(scene, dict(net.card.normalisation), offsets, reference)
        except InputError:
            return None
    return job_fingerprint(scene, net.name, predictor, plan, options, norm, destination, frames)


def _frames_text(frames: int) -> str:
    return f", fusing the input and {frames} --frame file{'s' if frames > 1 else ''}" if frames else ""


def _valid_text(fraction: float, refused: bool, *, area: bool) -> str:
    """The valid share of the pixels, and what a run does when there are none: it refuses the
    scene, or its area of interest alone (``area``)."""
    if fraction > 0:
        return f"{100 * fraction:.3g} % (a strided sample)"
    if area:
        return f"none in the area of interest: geosr run refuses it; {EMPTY_AREA_REMEDY}"
    if refused:
        return (
            "none: geosr run refuses this scene; check the nodata value and mask (gdalinfo), or pass --nodata"
        )
    # The whole file's sample sees a valid pixel in the area (area_has_data), its own none.
    return "a few, too few for a strided sample to count"


def _nodata_text(scene: Scene, aoi_nodata: float | None = None) -> str:
    """``none``, the value, or per band: ``1 (band 1), 2 (band 2); the output uses 1``; and the
    value an ``--aoi`` polygon gives an output that would otherwise declare none."""
    if aoi_nodata is not None and scene.output_nodata is None:
        return f"none; the output declares {aoi_nodata:g}, which it writes outside the area of interest"
    if scene.band_nodata:
        # The file's band numbers, as the bands line gives them: --bands 2,1 made them 'band 1, band 2'.
        numbers = scene.bands or range(1, scene.count + 1)
        each = ", ".join(
            f"{'none' if v is None else f'{v:g}'} (band {i})"
            for i, v in zip(numbers, scene.band_nodata, strict=True)
        )
        return f"{each}; the output marks them all {scene.output_nodata:g}"
    if scene.nodata is None and scene.output_nodata is not None and not scene.masked:
        # A float scene's NaN, which an --aoi polygon's outside takes too (AoiMask.nodata).
        where = "where the input is NaN" + (
            " and outside the area of interest" if aoi_nodata is not None else ""
        )
        return f"none; the output declares {scene.output_nodata:g}, which it writes {where}"
    if scene.missing_values:
        values = ", ".join(f"{v:g}" for v in (scene.nodata, *scene.missing_values) if v is not None)
        return f"{values} (CF missing values); the output marks them all {scene.output_nodata:g}"
    return "none" if scene.nodata is None else f"{scene.nodata:g}"


def plan_run(
    src: str | Path, options: RunOptions, *, calibrate: bool = True, output: str | Path | None = None
) -> RunPlan:
    """Open ``src``, plan the run ``options`` describe into ``output`` (a .tif or a .zarr; None:
    the default beside ``src``), and time one batch of it."""
    destination = planned_output(src, options, output)
    zarr = destination.suffix.lower() == ".zarr"
    scene = scene_for(src, options)
    if zarr:
        check_zarr_grid(destination, scene.grid)  # as the run refuses it
    # What a run reads before its first tile, timed as it reads it: the strided sample of the
    # whole file, also for an --aoi window (0.9 s estimated for a 3.8 s run of a window of the
    # Sentinel-2 JP2 without it), then each --frame's (5.7 s for 11.8 s with two frames).  Read
    # first, before anything else warms GDAL's cache with the files' blocks.
    start = time.perf_counter()
    reference = reference_sample(scene) if calibrate else None
    frames = frames_for(scene, options, reference)
    sample_seconds = time.perf_counter() - start
    # As the run refuses it, before its model loads: an output over its input or a --frame.
    refuse_overwriting_inputs(destination, src, scene, frames, extras=extra_files(destination, options))
    output_job_tag = None if output is None else _refuse_existing_output(src, output, destination, options)
    net = load_model(options.model, bands=scene.count, scale=options.scale)
    # What the run would refuse, naming the model as its output would.
    check_band_layout(scene.path, scene.descriptions, net.card.bands, model_label(net, options.model))
    check_normalisable(scene, dict(net.card.normalisation))
    predictor = Predictor(net, device=options.device, precision=options.precision)
    frames = frames_read(src, net, frames)
    # The --frame files deepen the halo and multiply the memory: planned without them,
    # a 3-date run of a 512^2 scene was given 2.1 GiB for the 5.6 GiB it needs.
    halo = run_halo(net, 1 + len(frames))
    tile, batch, bounds = fit_to_memory(scene, net, predictor, options, halo=halo, frames=1 + len(frames))
    plan = plan_tiles(*scene.grid.shape.yx, tile=tile, halo=halo)
    mask = output_mask(scene, options)
    if mask is not None:  # the run never reads the tiles wholly outside an --aoi polygon
        plan = mask.keep(plan, options.scale)
    # Computed once, where an output or an unfinished run of a geosr job is kept there.
    fingerprint = functools.cache(
        functools.partial(
            _job_fingerprint, destination, scene, net, predictor, plan, options, frames, reference
        )
    )
    if output_job_tag is not None:
        _refuse_a_jobs_output(destination, output_job_tag, fingerprint())
    h, w = scene.grid.shape.yx
    out_bytes = resources.output_bytes(h, w, scene.count, options.scale, scene.dtype)
    cog_bytes, zarr_bytes = output_bounds(scene, options, tile, zarr=zarr)
    held = resources.resident_bytes()  # before the calibration batch grows it
    unfinished = _unfinished_run(destination, len(plan), fingerprint)
    done = None if unfinished is None or not unfinished[0].resumable else unfinished[1]
    timing = valid = resumed = None
    area_refused = False
    if reference is not None:
        warn_undeclared_zeros(scene, reference)  # as the run would
        warn_float_fill(scene, reference)
        warn_empty_bands_of(scene, reference, dict(net.card.normalisation))
        # An --aoi window's own pixels, of which the output is made.
        sample = reference if sampled_for_reference(scene) is scene else read_sample(scene)
        valid_sample = np.asarray(valid_mask(sample, scene.nodata).any(axis=0))
        step = sample_step(*scene.grid.shape.yx)
        # Within an --aoi polygon: outside it the output is nodata whatever the scene holds.
        counted = (
            valid_sample
            if mask is None
            else valid_sample[sampled_inside(mask, scene, valid_sample.shape, step)]
        )
        valid = float(counted.mean()) if counted.size else 0.0
        # As the run refuses it (check_area_has_data), its file having a valid pixel.
        area_refused = (
            scene.file_shape is not None
            and bool(valid_mask(reference, scene.nodata).any())
            and not area_has_data(scene, mask, reference, sample)
        )
        with_data = _tiles_with_data(plan, valid_sample, step)
        shifts = frame_shifts(frames, reflectance_offset(scene, options.offset), options.offset)
        # _time_one_batch sets a normalisation once it has read the batch.
        job = Job(scene, plan.halo, options.scale, Normalisation((), (), "calibration"), scene.nodata, batch,
                  frames, frame_shifts=shifts)  # fmt: skip
        timing = _time_one_batch(
            job,
            plan,
            with_data,
            predictor,
            sample_seconds,
            lanes=bounds.lanes,
            compress=options.compress,
            zarr=zarr,
        )
        if done is not None:
            resumed = _resumed(timing, plan, with_data, done, batch)
    return RunPlan(
        scene,
        options,
        # As the output's GEOSR_MODEL names it: a weights file's card keeps its architecture's name
        # (cnnrnn-fast), which alone passed a fine-tuned or an untrained model for the bundled one.
        model_label(net, options.model),
        plan,
        batch,
        predictor.torch_device.type,
        predictor.resolved_precision,
        out_bytes,
        timing,
        resources.memory_needed(bounds),
        # As geosr run's check before its first tile (geosr.api._check_resources).
        resources.disk_needed(out_bytes, cog=not zarr, cog_bytes=cog_bytes, zarr_bytes=zarr_bytes),
        held,
        valid,
        aoi_nodata=None if mask is None else mask.nodata,
        frames=len(frames),
        source=src,
        lanes=bounds.lanes,
        destination=destination,
        output=_output_named(src, options, output, destination),
        chunks=zarr_chunks(scene, options.scale, tile),
        tiles_done=None if done is None else len(done),
        resumed=resumed,
        other_run=None if unfinished is None or done is not None else str(unfinished[0]),
        # As the run's normalisation refuses it: an --aoi window is normalised with its whole file.
        refused=reference is not None and (area_refused or not valid_mask(reference, scene.nodata).any()),
        area_refused=area_refused,
    )


def _unfinished_run(
    destination: Path, tiles: int, fingerprint: Callable[[], dict[str, Any] | None]
) -> tuple[StaleRunError, set[int]] | None:
    """What geosr run, given neither --resume nor --restart, says of an unfinished run kept at
    ``destination`` (:func:`~geosr.io.runstate.stale_run`: resumable where it is of this job,
    the job of ``fingerprint()`` (:func:`_job_fingerprint`), of ``tiles`` tiles), and the tiles
    that run finished; None where none is kept, or where the job has no fingerprint."""
    found = stored_run(destination)
    job = None if found is None else fingerprint()
    if found is None or job is None:
        return None
    stored, finished = found
    return stale_run(destination, stored, finished, job, tiles), finished


def _resumed(timing: Timing, plan: TilePlan, with_data: list[bool], finished: set[int], batch: int) -> Timing:
    """``timing`` for ``geosr run --resume``: it reads, computes and stores the tiles of ``plan``
    not ``finished`` alone (``with_data``: per tile, whether the model runs on it), then builds
    the whole output as a new run does."""
    left = [i for i in range(len(plan)) if i not in finished]
    return dataclasses.replace(
        timing,
        batches=-(-len(left) // batch),
        model_batches=-(-sum(with_data[i] for i in left) // batch),
        store=timing.store * len(left) / len(plan),
    )


def _tiles_with_data(plan: TilePlan, valid_sample: np.ndarray, step: int) -> list[bool]:
    """Per tile, whether the strided sample (``valid_sample``: a pixel every ``step``) sees
    a valid pixel in its core; a core between the sample's pixels counts as holding data."""
    has_data = []
    for tile in plan:
        core = tile.core
        # The sample's pixels are the scene's rows and columns that are multiples of step.
        rows = slice(-(-core.row // step), -(-(core.row + core.height) // step))
        cols = slice(-(-core.col // step), -(-(core.col + core.width) // step))
        seen = valid_sample[rows, cols]
        has_data.append(bool(seen.any()) if seen.size else True)
    return has_data


def _time_one_batch(
    job: Job,
    plan: TilePlan,
    with_data: list[bool],
    predictor: Predictor,
    sample_seconds: float,
    *,
    lanes: int = 1,
    compress: str = DEFAULT_COMPRESS,
    zarr: bool = False,
) -> Timing:
    """Read, compute and write a batch of ``job`` (its frames too) as the run would, and time each part.

    The model's batch on what a lane of the run gives it (``lanes`` > 1, a CPU): its share of
    torch's threads (:meth:`~geosr.predictor.Predictor.predict_in_lane`), while the other
    lanes compute theirs.

    The batch of tiles with data (``with_data``, per tile) nearest the middle of the
    plan: a tile without any skips the model (a batch of them timed the model at
    nothing), and a scene's first tiles are often nodata (a Sentinel-2 granule's
    corner), whose output compresses many times faster than imagery, and can be cut
    short by the scene's edge.
    """
    batch, scene = job.batch_size, job.scene
    middle = len(plan) // 2
    candidates = [i for i, data in enumerate(with_data) if data] or list(range(len(plan)))
    nearest = sorted(candidates, key=lambda i: abs(i - middle))[: min(batch, len(plan))]
    tiles = [plan.tiles[i] for i in sorted(nearest)]
    start = time.perf_counter()
    raw = read_batch(job, tiles)
    read = time.perf_counter() - start
    # Timing only: any fixed normalisation costs the same as the real one.
    finite = raw[np.isfinite(raw)]  # the tiles may be all NaN: no numpy warning for the user
    span = max(1.0, float(finite.max())) if finite.size else 1.0
    job = dataclasses.replace(
        job, norm=Normalisation((0.0,) * scene.count, (span,) * scene.count, "calibration")
    )
    predict = predictor.predict_in_lane if lanes > 1 else predictor
    peers = PEERS.set(lambda: lanes)  # the calls a lane's share is taken with: the run's lanes, all busy
    try:
        # Warm-up: the first calls of a shape pay for oneDNN's kernel selection, so the same
        # batch, whose calls have the timed calls' shapes (a lone fp32 image is its halves).
        process_batch(job, tiles, raw, predict)
        start = time.perf_counter()
        outputs = process_batch(job, tiles, raw, predict)
        model = time.perf_counter() - start
    finally:
        PEERS.reset(peers)
    store, cog = _time_output(scene, outputs[0], job.scale, compress, zarr=zarr)
    return Timing(
        batches=-(-len(plan) // batch),
        model=model * batch / len(tiles),
        model_batches=-(-sum(with_data) // batch),
        read=read * batch / len(tiles),
        store=store,
        cog=cog,
        sample=sample_seconds,
        overlapped=predictor.torch_device.type != "cpu",
        lanes=lanes,
        compress=compress,
        zarr=zarr,
    )


_SAMPLE_VALUES = 4 * 2048 * 2048
"""Output values written to time the output side: one band of 2 x 2 tiles of 512 at x4, 0.8-1 s
here.  One tile's COG took 140-600 ms from run to run, 2 x 2 tiles 190-260 ms a tile, and 4 x 4
235-265 ms a tile: one tile's time was too noisy, and too low, to scale."""


def _time_output(
    scene: Scene, out: np.ndarray, scale: int, compress: str = DEFAULT_COMPRESS, *, zarr: bool = False
) -> tuple[float, float]:
    """Seconds to store the whole output in a run store and to build its COG (to finish the
    store, for a Zarr output: ``zarr``), from a sample.

    The sample is the output of the timed batch's first tile (as few of its bands as make
    :data:`_SAMPLE_VALUES`), repeated tile by tile up to about that many values, or
    the output's size if smaller.  It goes through the run's own code,
    :class:`~geosr.io.run_store.StoreWriter` and :func:`~geosr.io.run_store.finalise`
    (GDAL's COG driver with the run's ``compress``, the tile checks, the
    validation), in a temporary folder, and both times are scaled by the output's
    values (not a Zarr store's finishing, its metadata alone).  The model's own
    pixels, since compression takes time by content.
    A 16 x 16 output first measures the fixed costs (creating the store; starting
    the COG driver, validating), which a run pays once and which are most of a
    small sample's time: scaled with it, they made small tiles' estimates 2-3x too long.
    """
    count, height, width = out.shape
    bands = max(1, min(count, _SAMPLE_VALUES // (height * width)))
    tile_values = bands * height * width
    rows, cols = scene.grid.shape.yx
    total = scene.count * rows * cols * scale * scale
    copies = max(1, min(_SAMPLE_VALUES // tile_values, -(-total // tile_values)))
    across = math.ceil(math.sqrt(copies))
    down = max(1, copies // across)
    grid = scaled(scene.grid, scale)
    with tempfile.TemporaryDirectory(prefix="geosr-info-") as folder:
        nodata = scene.output_nodata
        # Twice, the less: a first call also imports and loads what the run has by then, and
        # on a busy machine one slow call would cancel the sample's time.
        created, _, fixed = min(
            _store_and_build(
                Path(folder) / f"fixed{k}", grid, nodata, out[:1, :16, :16], (1, 1), compress, zarr=zarr
            )
            for k in range(2)
        )
        sample = Path(folder) / "sample"
        _, store, cog = _store_and_build(
            sample, grid, nodata, out[:bands], (down, across), compress, zarr=zarr
        )
    share = total / (down * across * tile_values)
    if zarr:
        # A Zarr store's finishing consolidates its metadata and renames it, whatever its pixels:
        # scaled, the sample's noise in it (up to 0.2 s here, on a busy machine) made a minute and
        # more of a 43920^2 output's (a Sentinel-2 band at x4: 460 times the sample).
        return created + store * share, fixed
    return created + store * share, fixed + max(0.0, cog - fixed) * share


def _store_and_build(
    folder: Path,
    grid: GeoBox,
    nodata: float | None,
    out: np.ndarray,
    copies: tuple[int, int],
    compress: str = DEFAULT_COMPRESS,
    *,
    zarr: bool = False,
) -> tuple[float, float, float]:
    """Seconds to create a run store, to write ``out`` into it ``copies`` (down, across) times,
    one chunk each, as the run writes tiles, and to build the COG of ``compress`` from it (for
    a Zarr output, ``zarr``: the store in its codec, then finished into the output)."""
    bands, height, width = out.shape
    shape = (copies[0] * height, copies[1] * width)
    spec = OutputSpec(GeoBox(shape, grid.affine, grid.crs), bands, str(out.dtype), nodata, compress=compress)
    folder.mkdir()
    store, cog = folder / "store.zarr", folder / ("sample.zarr" if zarr else "sample.tif")
    start = time.perf_counter()
    create_run_store(store, spec, (height, width), for_zarr_output=zarr, destination=cog)
    created = time.perf_counter()
    writer = StoreWriter(store, cog)
    for row in range(0, shape[0], height):
        for col in range(0, shape[1], width):
            writer.write(slice(row, row + height), slice(col, col + width), out)
    stored = time.perf_counter()
    finalise(store, cog, spec, overwrite=False)
    return created - start, stored - created, time.perf_counter() - stored
