"""The Python API: ``upscale_file``, the ``geosr run`` job, from its options to its output.

What a run reads is :mod:`geosr.run_inputs`, where it writes :mod:`geosr.run_outputs`, the
tile and batch that fit the memory :mod:`geosr.memory_fit`; here they are put together,
the model loaded and the tiles run, locally or on a Dask cluster, resumably.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosr import __version__, resources
from geosr.aoi import AoiMask
from geosr.errors import (
    GeosrError,
    InputError,
    OptionError,
    OutputError,
    ResumableError,
    in_context,
    python_api,
)
from geosr.faults import check as check_faults
from geosr.faults import checkpoint
from geosr.fingerprint import check_unchanged, job_fingerprint
from geosr.grid import scaled, scaled_rpcs
from geosr.io.atomic import (
    WriteError,
    already_exists,
    check_name_length,
    check_writable,
    enclosing_zarr_store,
    refuse_foreign_directory,
    refuse_kernel_file_system,
    written_back_meanwhile,
)
from geosr.io.bands import check_band_layout, reflectance_offset
from geosr.io.cog import cog_build_bound
from geosr.io.remote import (
    check_remote_output,
    drop_sidecars,
    file_url_path,
    forget_remote_files,
    fsspec_url,
    is_remote,
    local_name,
    remote_waits_bounded_in,
    staged_output,
    staging_held,
    upload,
)
from geosr.io.run_store import StoreWriter, create_run_store, finalise, output_job, unfinished_error
from geosr.io.runstate import RunState, StaleRunError, job_digest, reclaimable_bytes, run_dir
from geosr.io.scene import SOURCE_DATETIME_TAG, Scene, carried_tags, close_datasets, scaled_print_resolution
from geosr.io.sink import DEFAULT_ZARR_FORMAT, SUPPORTED_SUFFIXES, OutputSpec
from geosr.io.stac_input import forget_fetched, stacks_removed
from geosr.io.zarr_store import check_zarr_grid, store_bytes
from geosr.memory_fit import fit_to_memory
from geosr.normalise import Normalisation
from geosr.options import OPTION_DEFAULTS, OPTION_FLAGS, RunOptions
from geosr.pipeline import Job, Reader, run_tiles
from geosr.recovery import damaged_store_error, tiles_to_trust
from geosr.run_inputs import (
    check_area_has_data,
    frame_shifts,
    frames_for,
    frames_read,
    normalisation_for,
    output_mask,
    reference_sample,
    run_halo,
    scene_for,
)
from geosr.run_outputs import (
    check_compress_applies,
    check_extras_free,
    check_output_given,
    check_zarr_format_applies,
    default_output,
    extra_files,
    refuse_overwriting_inputs,
    warn_rpcs_left_out,
    write_extras,
)
from geosr.tiling import TilePlan, plan_tiles

if TYPE_CHECKING:
    import numpy as np

    # Imported where a model is loaded, not here: they import torch, whose 3 s (17 s on a
    # busy machine) came before the line for a corrupt file or a scene without a CRS,
    # which need only the raster's header.
    from geosr.models import SRModel
    from geosr.predictor import Predictor

Progress = Callable[[int, int], None]
"""Called with ``(tiles_done, tiles_total)`` as a run advances."""


def model_label(net: SRModel, model: str | None) -> str:
    """What ``GEOSR_MODEL`` (and the STAC Item's ``geosr:model``) says produced an output.

    A weights file's card keeps its architecture's name (``cnnrnn-fast``), which alone
    would pass a fine-tuned model's output for the bundled one's: the file is named too.
    """
    from geosr.models.registry import MODEL_NAMES
    from geosr.models.weights import weights_paths

    if net.card.is_untrained:
        return f"{net.name} (untrained)"
    if model is not None and model not in MODEL_NAMES:
        # The weights file, also when given by its stem or its card (``my_x4``, ``my_x4.json``).
        return f"{net.name} ({weights_paths(model)[0].name})"
    return net.name


def provenance_tags(scene: Scene, model_name: str, scale: int, norm: Normalisation) -> dict[str, str]:
    """The input's tags plus what produced this output.

    The program and the date that made the input's file (its TIFF ``Software`` and ``DateTime``,
    which the output does not carry as its own) are kept as ``GEOSR_SOURCE_SOFTWARE`` and
    ``GEOSR_SOURCE_DATETIME``; the date passes on through further runs, as the scene's date a
    STAC Item falls back on (:func:`geosr.stac.acquisition_time`).
    """
    tags = scaled_print_resolution(carried_tags(scene.tags), scale)
    tags.update(
        GEOSR_VERSION=__version__,
        GEOSR_MODEL=model_name,
        GEOSR_SCALE=str(scale),
        GEOSR_SOURCE=local_name(scene.path),  # of a signed URL, without its signature
        **norm.to_tags(),
    )
    software = scene.tags.get("TIFFTAG_SOFTWARE")
    written = scene.tags.get("TIFFTAG_DATETIME", scene.tags.get(SOURCE_DATETIME_TAG))
    if software:
        tags["GEOSR_SOURCE_SOFTWARE"] = str(software)
    if written:
        tags[SOURCE_DATETIME_TAG] = str(written)
    if scene.bands:
        tags["GEOSR_BANDS"] = ",".join(str(b) for b in scene.bands)
    if scene.variable_name:
        # The --variable read, which geosr compare of the output against its store of several
        # variables needed given again (geosr.quicklook._lr_scene).
        tags["GEOSR_VARIABLE"] = scene.variable_name
    return tags


def check_source_given(src: object) -> None:
    """Refuse an input that is no path: a DataArray given to ``upscale_file`` (meant for
    ``geosr.upscale``) failed with OSError 'File name too long', its repr taken for a path.

    Raises
    ------
    InputError
        ``src`` is neither a string nor a path-like object.
    """
    if isinstance(src, (str, os.PathLike)):
        return
    in_memory = type(src).__module__.startswith("xarray")
    hint = "; geosr.upscale(data, scale=...) super-resolves a DataArray" if in_memory else ""
    raise InputError(f"upscale_file takes the path or URL of a raster, not a {type(src).__name__}{hint}")


def check_call_given(dst: object, progress: object) -> None:
    """Refuse an output that is no path and a ``progress`` that is no function: ``dst=5`` was
    a TypeError from pathlib, and ``progress=5`` one once the first tiles had run, which left
    the run's hidden state beside the output.

    Raises
    ------
    OptionError
        ``dst`` is neither None, a string nor path-like; ``progress`` is neither None nor callable.
    """
    if dst is not None and not isinstance(dst, (str, os.PathLike)):
        raise OptionError(f"the output {dst!r} is not supported: give a path or URL (str or pathlib.Path)")
    if progress is not None and not callable(progress):
        raise OptionError(f"progress={progress!r} is not supported: give a function progress(done, total)")


@python_api(OPTION_DEFAULTS, OPTION_FLAGS)
@remote_waits_bounded_in
def upscale_file(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    scale: int = 4,
    model: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Path | str:
    """Super-resolve the raster ``src`` into ``dst`` (COG for ``.tif``, Zarr for ``.zarr``).

    Parameters
    ----------
    src : path or URL
        GeoTIFF/COG, JPEG2000, any GDAL raster, a Zarr store or a STAC Item (``.json``),
        local or remote (``https://``, ``s3://``, ``/vsi...``), as ``geosr run`` takes it.
    dst : path or URL, optional
        Output; default ``<stem>_x<scale>.tif`` beside ``src`` (``<stem>_<variable>_x<scale>.tif``
        with a ``variable``; in the working folder for a remote ``src``), or in ``dst`` when it
        is an existing folder.
        A remote URL (``s3://``, ``gs://``, any fsspec URL, ``/vsis3/...``) is
        written locally, then uploaded.
    scale : int, default 4
        Zoom factor per axis, 2..8 (bundled weights: x2 and x4).
    model : str, optional
        Registry name (``cnnrnn-fast``, ``bicubic``, ...) or weights path.
    progress : callable, optional
        ``progress(done, total)`` after each batch of tiles.
    **options
        Any other :class:`~geosr.options.RunOptions` field, the ``geosr run`` options
        in snake case (``tile``, ``batch_size``, ``device``, ``precision``, ``overwrite``,
        ``nodata``, ``bands``, ``aoi``, ``frames``, ``stac``, ``resume``, ...).

    Returns
    -------
    pathlib.Path or str
        The output path (the URL, for a remote output).

    Raises
    ------
    GeosrError
        Bad input or option; nothing is written in that case.  Its line names the keyword to
        change (``overwrite=True``), where ``geosr run``'s names the flag (``--overwrite``).
    """
    # Its datasets closed (_forget_reads), then the folders of its stacks of an Item's assets removed.
    with stacks_removed():
        try:
            check_source_given(src)
            src = file_url_path(src)  # its local path, for the default output and the checks against it
            opts = _checked_call(src, dst, scale, model, progress, options)
            scene = scene_for(src, opts)
            # The frames' units are checked against the sample that fixes the normalisation: read
            # once, since it touches every block of the file (twice before, for a run with frames).
            sample = reference_sample(scene) if opts.frames else None
            frames = frames_for(scene, opts, sample)
            dst = file_url_path(dst) if dst is not None else None
            if dst is not None and is_remote(dst):
                return _upscale_to_remote(src, remote_output(src, dst, opts), opts, progress)
            dst = local_destination(src, dst, opts, scene, frames)
            return _upscale_to_local(src, dst, scene, sample, frames, opts, progress)
        finally:
            _forget_reads(src, options.get("frames"))


def _checked_call(
    src: str | Path,
    dst: str | Path | None,
    scale: int,
    model: str | None,
    progress: Progress | None,
    options: dict[str, Any],
) -> RunOptions:
    """The call's options, once its arguments are checked; before anything is read or written.

    Raises
    ------
    GeosrError
        An output or ``progress`` of the wrong type, a malformed fault, a bad option, or an
        output no writer can write (:func:`~geosr.run_outputs.check_output_given`).
    """
    check_call_given(dst, progress)
    check_faults()  # before anything is written: a malformed one failed mid-run
    opts = _run_options(src, scale, model, options)
    check_output_given(dst)
    return opts


def remote_output(src: str | Path, dst: str | Path, opts: RunOptions) -> str:
    """The remote output URL: ``dst``, or the default output's name in ``dst`` when it ends in ``/``."""
    if str(dst).endswith("/"):  # a remote folder (there is no folder to test for)
        dst = f"{dst}{default_output(src, opts.scale, opts.variable).name}"
    return str(dst)


def _upscale_to_local(
    src: str | Path,
    dst: Path,
    scene: Scene,
    sample: np.ndarray | None,
    frames: tuple[Scene, ...],
    opts: RunOptions,
    progress: Progress | None,
) -> Path:
    """Run the job of ``scene`` into the local output ``dst``, or, where ``resume`` keeps it
    finished, only write its missing extras.

    Raises
    ------
    GeosrError
        Bad input or option, found before or during the run.
    """
    net, predictor = _predictor_for(src, scene, opts)
    frames = frames_read(src, net, frames)
    plan, batch = _tile_plan(src, dst, scene, net, predictor, opts, frames)
    with _reader_for(scene, plan, batch, frames, opts) as reader:
        job, plan, offsets = _planned_job(scene, net, opts, plan, batch, frames, sample)
        model_tag = model_label(net, opts.model)
        spec, fingerprint, digest = _job_output(
            src, dst, job, net.name, predictor, plan, opts, offsets, model_tag
        )
        advance = _progress_counter(progress, len(plan))
        if _check_existing_output(dst, digest, opts):
            _forget_leftover_state(dst)
            advance(len(plan))
            # Already finished: nothing is computed again.  But a run killed after its rename
            # has no --stac/--quicklook files yet, so those asked for and missing are written.
            write_extras(src, scene, dst, opts, model_tag, missing_only=True, frames=frames)
            return dst
        # Before the extras' check: their names are longer still, and a 250-byte output's
        # quicklook raised 'File name too long' looking for an earlier one, a traceback.
        check_name_length(dst)
        check_extras_free(dst, opts)
        check_writable(dst, opts.overwrite)
        out = _run(job, plan, predictor, dst, spec, opts, fingerprint, advance, reader)
    write_extras(src, scene, out, opts, model_tag, frames=frames)
    return out


def _reader_for(
    scene: Scene, plan: TilePlan, batch: int, frames: tuple[Scene, ...], opts: RunOptions
) -> Reader:
    """The reader of a run in this process, already reading the plan's first batch while the
    run is prepared (its normalisation, its output's metadata, its run store), on a core that
    would wait meanwhile; a run with frames reads them shifted by the job's offsets, and a
    Dask cluster's workers read their own tiles: their reader reads nothing ahead."""
    reader = Reader()
    if not frames and opts.scheduler is None and opts.workers is None:
        reader.read_ahead(scene, plan.tiles[:batch])
    return reader


def _tile_plan(
    src: str | Path,
    dst: Path,
    scene: Scene,
    net: SRModel,
    predictor: Predictor,
    opts: RunOptions,
    frames: tuple[Scene, ...],
) -> tuple[TilePlan, int]:
    """The tiles of ``scene`` and the batch size that fit the memory, once the run is known to
    fit this machine (``check_resources``).

    Raises
    ------
    GeosrError
        The run's memory or output does not fit this machine, in the context of ``src``.
    """
    halo = run_halo(net, 1 + len(frames))
    height, width = scene.grid.shape.yx
    tile, batch, bounds = fit_to_memory(scene, net, predictor, opts, halo=halo, frames=1 + len(frames))
    if opts.check_resources:
        # Before the plan and before any pixel is read: a scene declaring absurd
        # dimensions stops here, not after allocating millions of tiles.
        _check_resources(src, scene, opts, bounds, dst)
    return plan_tiles(height, width, tile=tile, halo=halo), batch


def _planned_job(
    scene: Scene,
    net: SRModel,
    opts: RunOptions,
    plan: TilePlan,
    batch: int,
    frames: tuple[Scene, ...],
    sample: np.ndarray | None,
) -> tuple[Job, TilePlan, tuple[float, ...] | None]:
    """The job of ``scene``: its normalisation, area of interest and frames.

    Returns
    -------
    job : Job
        What each tile is run with.
    plan : TilePlan
        ``plan``, less the tiles outside the area of interest.
    offsets : tuple of float or None
        The scene's reflectance offsets, which the output's tags record.
    """
    offsets = reflectance_offset(scene, opts.offset)
    sample = reference_sample(scene) if sample is None else sample
    norm = normalisation_for(scene, dict(net.card.normalisation), offsets, sample)
    mask = output_mask(scene, opts)
    # Its output would be all nodata, as a file without a valid pixel's (refused just above).
    check_area_has_data(scene, opts, mask, sample)
    if mask is not None:
        plan = mask.keep(plan, opts.scale)
    job = Job(
        scene=scene,
        halo=plan.halo,
        scale=opts.scale,
        norm=norm,
        nodata=scene.nodata,
        batch_size=batch,
        frames=frames,
        aoi=mask,
        frame_shifts=frame_shifts(frames, offsets, opts.offset),
        projects=net.projects,
    )
    return job, plan, offsets


def _job_output(
    src: str | Path,
    dst: Path,
    job: Job,
    model_name: str,
    predictor: Predictor,
    plan: TilePlan,
    opts: RunOptions,
    offsets: tuple[float, ...] | None,
    model_tag: str,
) -> tuple[OutputSpec, dict[str, Any], str]:
    """What the output of ``job`` holds besides its pixels, and what identifies the job.

    Returns
    -------
    spec : OutputSpec
        The output's grid, bands and tags, its provenance and the job's digest among them.
    fingerprint : dict
        What a resumed run must find unchanged.
    digest : str
        The fingerprint's digest, the output's ``GEOSR_JOB`` tag.
    """
    tags = provenance_tags(job.scene, model_tag, opts.scale, job.norm)
    spec = output_spec(job.scene, opts, job.aoi, tags, offsets, job.frames)
    warn_rpcs_left_out(src, dst, spec)
    fingerprint = job_fingerprint(job.scene, model_name, predictor, plan, opts, job.norm, dst, job.frames)
    digest = job_digest(fingerprint)
    return dataclasses.replace(spec, tags={**spec.tags, "GEOSR_JOB": digest}), fingerprint, digest


def _progress_counter(progress: Progress | None, total: int) -> Callable[[int], None]:
    """What the run calls with each number of tiles done: it tells ``progress(done, total)``."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    return advance


def _run_options(src: str | Path, scale: int, model: str | None, options: dict[str, Any]) -> RunOptions:
    """The call's :class:`~geosr.options.RunOptions`, or one line naming what is wrong with them.

    Raises
    ------
    OptionError
        A keyword that is no option, or a value of the wrong type.
    GeosrError
        A value the options refuse, in the context of ``src``.
    """
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(RunOptions)})
    if unknown:
        raise OptionError(unknown_options(unknown))
    try:
        return RunOptions(scale=scale, model=model, **options)
    except TypeError as exc:
        raise OptionError(str(exc)) from None
    except GeosrError as exc:
        raise in_context(src, exc) from None


def _predictor_for(src: str | Path, scene: Scene, opts: RunOptions) -> tuple[SRModel, Predictor]:
    """The model the run asks for, checked against ``scene``'s bands, and its predictor.

    Raises
    ------
    GeosrError
        The model cannot be loaded, or does not take the scene's bands, in the context of ``src``.
    """
    from geosr.models import load_model
    from geosr.predictor import Predictor

    try:
        net = load_model(opts.model, bands=scene.count, scale=opts.scale)
        check_band_layout(scene.path, scene.descriptions, net.card.bands, model_label(net, opts.model))
        predictor = Predictor(net, device=opts.device, precision=opts.precision, compile=opts.compile)
    except GeosrError as exc:
        raise in_context(src, exc) from None
    return net, predictor


def sizing_spec(scene: Scene, opts: RunOptions) -> OutputSpec:
    """The output of ``scene`` as far as its size goes: its grid, bands, dtype and compression,
    which size its COG (not its metadata), for the checks before a run and ``geosr info``."""
    return OutputSpec(scaled(scene.grid, opts.scale), scene.count, scene.dtype, None, compress=opts.compress)


def zarr_chunks(scene: Scene, scale: int, tile: int) -> tuple[int, int]:
    """A Zarr output's chunks (rows, cols): a tile's core at the output's resolution, as
    :func:`~geosr.tiling.plan_tiles` clamps it to the scene, one chunk per tile."""
    height, width = scene.grid.shape.yx
    return min(tile, height) * scale, min(tile, width) * scale


def output_bounds(scene: Scene, opts: RunOptions, tile: int, *, zarr: bool) -> tuple[int, int]:
    """The output's own bounds on the disk its run needs, in tiles of ``tile``: the
    ``cog_bytes`` and ``zarr_bytes`` of :func:`geosr.resources.disk_needed`, for the checks
    before a run and ``geosr info``."""
    spec = sizing_spec(scene, opts)
    if zarr:
        return 0, store_bytes(spec, zarr_chunks(scene, opts.scale, tile))
    return cog_build_bound(spec), 0


def _check_resources(
    src: str | Path, scene: Scene, opts: RunOptions, bounds: resources.Plan, dst: Path
) -> None:
    """Refuse a run whose memory (``bounds``, :func:`~geosr.memory_fit.fit_to_memory`'s) or output
    does not fit this machine, counting the space an unfinished run of ``dst`` would give back.

    Raises
    ------
    GeosrError
        In the context of ``src``: what is needed, what is available, and what to change.
    """
    height, width = scene.grid.shape.yx
    out_bytes = resources.output_bytes(height, width, scene.count, opts.scale, scene.dtype)
    cog_bytes, zarr_bytes = output_bounds(scene, opts, bounds.tile, zarr=dst.suffix.lower() == ".zarr")
    try:
        resources.check(
            bounds,
            out_bytes,
            dst,
            already_on_disk=reclaimable_bytes(dst),
            cog_bytes=cog_bytes,
            zarr_bytes=zarr_bytes,
        )
    except GeosrError as exc:
        raise in_context(src, exc) from None


def _check_existing_output(dst: Path, digest: str, opts: RunOptions) -> bool:
    """Refuse to replace an existing ``dst`` without ``overwrite``; tell whether ``resume`` keeps it.

    Returns
    -------
    bool
        True for this job's output with ``resume``; False where there is no output yet, or
        ``overwrite`` replaces it.

    Raises
    ------
    OutputError
        ``dst`` exists and neither ``resume`` keeps it nor ``overwrite`` replaces it.
    """
    if not (dst.exists() or dst.is_symlink()):
        return False
    found = output_job(dst)
    if opts.resume and found == digest:
        return True
    if opts.overwrite:
        return False
    if found == digest:  # a rerun of a finished batch, say: --resume skips it
        raise OutputError(
            f"{dst} already exists, written by this same job; pass --resume to keep it "
            "(nothing is computed again) or --overwrite to replace it"
        )
    what = "is the output of a different job" if opts.resume and found else "already exists"
    raise OutputError(f"{dst} {what}; pass --overwrite to replace it")


def _forget_reads(src: str | Path, frames_given: Any) -> None:
    """Close and forget what a call read in this thread: its files' cached handles and fetched copies.

    The reads made in this thread (the normalisation's sample, the frames' checks, the
    quicklook) each left its file open in the thread's cache: one descriptor more per
    input for every call of a notebook or a `geosr run 'archive/*.tif'`, and a second
    call on a scene rewritten at the same path took its normalisation from the old file.
    """
    close_datasets()
    forget_fetched()  # a remote STAC Item: the next call reads it as it is then
    frames_given = frames_given or ()
    frames_given = [frames_given] if isinstance(frames_given, str | Path) else frames_given
    forget_remote_files([str(src), *map(str, frames_given)])  # and a remote input


def local_destination(
    src: str | Path, dst: str | Path | None, opts: RunOptions, scene: Scene, frames: tuple[Scene, ...]
) -> Path:
    """The local output path of a run (``dst``, a file or an existing folder, or the default
    beside ``src``), after every check that needs no model: what it would overwrite, its
    suffix, and what a Zarr destination already holds.

    Raises
    ------
    GeosrError
        The output cannot be written as given; nothing is written.
    """
    default = default_output(src, opts.scale, opts.variable)
    path = into_folder(Path(dst) if dst is not None else default, default)
    refuse_overwriting_inputs(path, src, scene, frames, extras=extra_files(path, opts))
    refuse_inside_zarr_store(path)
    # Before the check of free space, which told '0 B are free in /proc; free some space'.
    refuse_kernel_file_system(path)
    check_output_name(src, path, opts)
    if path.suffix.lower() == ".zarr":
        check_zarr_grid(path, scene.grid)  # before any compute: the run store would take it
    refuse_existing_data(path, opts)
    return path


def into_folder(path: Path, default: Path) -> Path:
    """``path``, or where it is an existing folder (not a Zarr store) the file named as
    ``default`` in it: a folder to write into, as ``geosr run -o FOLDER`` takes it (and as the
    line for an output without a suffix says); it was refused as "unsupported suffix"."""
    return path / default.name if path.is_dir() and path.suffix.lower() != ".zarr" else path


def refuse_inside_zarr_store(path: Path) -> None:
    """Refuse an output ``path`` inside an existing Zarr store (``product.zarr/out.tif``).

    Raises
    ------
    OptionError
        A folder above ``path`` is a Zarr store (or group).
    """
    store = enclosing_zarr_store(path)
    if store is not None:
        # Written there, it was deleted with the store by a later `-o STORE --overwrite`, and
        # zarr and GDAL read the store without it.
        raise OptionError(
            f"cannot write {path}: it is inside the Zarr store {store}, which is no folder for "
            "other files; write it beside the store, or to another folder"
        )


def check_output_name(src: str | Path, path: Path, opts: RunOptions) -> None:
    """Refuse an output whose name selects no format (:data:`~geosr.io.sink.SUPPORTED_SUFFIXES`),
    or whose format takes no ``--zarr-format`` or ``--compress`` of ``opts``.

    Raises
    ------
    OptionError
        What is wrong with the name, and the name to give.
    """
    if path.name.lower() in SUPPORTED_SUFFIXES:
        # '-o out/.tif': Python reads '.tif' as a hidden name without a suffix, and the line
        # below said "unsupported output suffix '(none)'" of a .tif.
        raise OptionError(
            f"cannot write {path}: the file name {path.name!r} is a suffix alone; give a name, "
            f"e.g. {path.with_name(default_output(src, opts.scale, opts.variable).stem + path.name)}"
        )
    if str(path) == "-":
        # The shell's usual name of standard output: it was "unsupported output suffix '(none)'".
        raise OptionError(
            "cannot write -: geosr writes its output to a file, not to standard output; give a "
            ".tif or .zarr path, or a folder, with -o"
        )
    if path.suffix.rstrip().lower() in SUPPORTED_SUFFIXES and path.suffix.lower() not in SUPPORTED_SUFFIXES:
        # "-o 'out.tif '" (a stray space in quotes, a name pasted from a table) was told
        # "unsupported output suffix '.tif '", where the space is hard to see.
        raise OptionError(
            f"cannot write {str(path)!r}: its name ends in white space after {path.suffix.rstrip()!r}; "
            f"give {str(path.with_name(path.name.rstrip()))!r}"
        )
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        # No suffix: most likely a folder for the output ('-o out/') that does not exist yet.
        folder = "" if path.suffix else ", or an existing folder to write it into"
        raise OptionError(
            f"cannot write {path}: unsupported output suffix {path.suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}{folder}"
        )
    check_zarr_format_applies(path, opts.zarr_format)
    check_compress_applies(path, opts.compress)


def output_spec(
    scene: Scene,
    opts: RunOptions,
    mask: AoiMask | None,
    tags: dict[str, str],
    offsets: tuple[float, ...] | None,
    frames: Sequence[Scene],
) -> OutputSpec:
    """What the output of ``scene`` at ``opts.scale`` holds besides its pixels: grid, bands,
    nodata, and the input's metadata with the run's provenance ``tags``."""
    tags = dict(tags)
    if offsets is not None:
        tags["GEOSR_BOA_ADD_OFFSET"] = ",".join(f"{o:g}" for o in offsets)
    if frames:
        tags["GEOSR_FRAMES"] = ",".join(local_name(f.path) for f in frames)
    return OutputSpec(
        grid=scaled(scene.grid, opts.scale),
        count=scene.count,
        dtype=scene.dtype,
        nodata=mask.nodata if mask is not None else scene.output_nodata,
        descriptions=scene.descriptions,
        colorinterp=scene.colorinterp,
        tags=tags,
        band_tags=tuple(carried_tags(band) for band in scene.band_tags),
        scales=scene.scales,
        offsets=scene.offsets,
        units=scene.units,
        band_axis=scene.band_axis,
        band_labels=scene.band_labels,
        zarr_format=opts.zarr_format or DEFAULT_ZARR_FORMAT,
        compress=opts.compress,
        rpcs=scaled_rpcs(scene.rpcs, opts.scale, scene.origin),
        band_imagery=scene.band_imagery,
    )


def refuse_existing_data(dst: Path, opts: RunOptions) -> None:
    """Refuse, before the model loads, an existing ``dst`` that no geosr job wrote.

    Whether an output is this same job's (which ``--resume`` keeps) takes the job's
    digest, so the model and the scene's sample; a file without a ``GEOSR_JOB`` tag is
    none, and waited 13 s for its one line on a busy machine, most of it importing torch.

    Raises
    ------
    OutputError
        ``dst`` exists, holds no geosr job, and ``opts.overwrite`` is false; or it is a
        folder of other files, which no ``--overwrite`` replaces.
    """
    refuse_foreign_directory(dst)  # which --overwrite does not replace either: said first
    if opts.overwrite or not (dst.exists() or dst.is_symlink()) or output_job(dst) is not None:
        return
    raise already_exists(dst)


def unknown_options(names: list[str], caller: str = "upscale_file") -> str:
    """The line for keyword arguments ``caller`` (``upscale_file``, or a function that passes
    its options on to it) does not take, with the closest known ones: it said
    "RunOptions.__init__() got an unexpected keyword argument", a class the caller never named."""
    import difflib

    known = [f.name for f in dataclasses.fields(RunOptions) if f.name not in ("scale", "model")]
    hints = [
        f"{n!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, known, 1)) else repr(n)
        for n in names
    ]
    options = "option" if len(hints) == 1 else "options"
    return f"{caller}() got unknown {options} {', '.join(hints)}; it takes: {', '.join(known)}"


def _upscale_to_remote(src: str | Path, dst: str, opts: RunOptions, progress: Progress | None) -> str:
    """Write locally into a private folder (:func:`~geosr.io.remote.staging_folder`, which
    ``--resume`` finds again), then upload the output (and its STAC/quicklook).  The folder
    is this run's alone while it runs (:func:`~geosr.io.remote.staging_held`)."""
    check_remote_output(dst, overwrite=opts.overwrite)
    check_extras_free(dst, opts)
    with staging_held(dst) as staging:
        return _stage_and_upload(src, dst, staging, opts, progress)


def _stage_and_upload(
    src: str | Path, dst: str, staging: Path, opts: RunOptions, progress: Progress | None
) -> str:
    """Run into ``staging`` (held by this run), upload, then remove it unless a run is left to resume."""
    import shutil

    local = staged_output(dst)
    uploaded = False
    try:
        options = {k: v for k, v in dataclasses.asdict(opts).items() if k not in ("scale", "model")}
        try:
            upscale_file(src, local, scale=opts.scale, model=opts.model, progress=progress, **options)
        except GeosrError as exc:
            # The staging copy is private: the line names the output the user gave, and the
            # staging folder's place where it is about local disk space, which is spent there
            # (where a resumable line says the tiles are kept, it stays: they are there).
            where = f"{staging.parent} (where a remote output is written before its upload; TMPDIR moves it)"
            text = re.sub(
                rf"(free|available) in {re.escape(str(staging))}", lambda m: f"{m[1]} in {where}", str(exc)
            )
            exc.args = (text.replace(str(local), dst),)
            raise
        parent = fsspec_url(dst).rsplit("/", 1)[0]
        try:
            for extra in sorted(staging.iterdir()):
                if extra != local and not extra.name.startswith("."):  # not a run's hidden state
                    upload(extra, f"{parent}/{extra.name}")
            upload(local, dst)
            if local.is_file():
                from geosr.io.atomic import STALE_SIDECARS

                drop_sidecars(dst, local, STALE_SIDECARS)
        except OutputError as exc:
            raise ResumableError(
                f"{exc}; the output is kept in {staging}: rerun with --resume to upload it "
                "(nothing is computed again)"
            ) from None
        uploaded = True
    finally:
        # Kept while it holds a run state (a run killed, interrupted or short of space,
        # which --resume finishes, or another run's in progress) or the finished output
        # not uploaded yet (a network failure, a Ctrl-C), which --resume uploads.
        if uploaded or not (run_dir(local).exists() or local.exists()):
            shutil.rmtree(staging, ignore_errors=True)
    return fsspec_url(dst)


def _forget_leftover_state(dst: Path) -> None:
    """Remove the run state of a finished output (a run killed right after its rename)."""
    if run_dir(dst).exists():
        RunState.acquire(dst).discard()


def _run(
    job: Job,
    plan: TilePlan,
    predictor: Predictor,
    dst: Path,
    spec: OutputSpec,
    opts: RunOptions,
    fingerprint: dict[str, Any],
    advance: Callable[[int], None],
    reader: Reader,
) -> Path:
    """Run the planned job locally (single process) or on a Dask cluster, resumably; ``reader``
    reads the tiles of a run in this process."""
    state = RunState.acquire(dst)
    try:
        todo = _tiles_to_do(state, plan, dst, spec, opts, fingerprint)
        advance(len(plan) - len(todo))
        cluster = None
        try:
            if opts.scheduler is not None or opts.workers is not None:
                tiles = predictor.whole_call_tiles(spec.count)
                cluster = _run_on_cluster(job, plan, todo, state, spec, opts, advance, tiles)
            else:
                _run_here(job, plan, todo, predictor, state, dst, spec, advance, reader)
        except OutputError as exc:
            # A full disk (or a permission) while tiles were stored: the finished ones stay,
            # for a --resume once there is room (a resume re-checks every kept chunk).  None
            # finished: the state holds nothing (its partial chunks took space on the full
            # disk), and it said "the 0 finished tiles are kept", "rerun with --resume".
            state.check_kept()  # or the state was removed under the tiles: that is the cause
            if not state.done():
                # Discarded now, not below: the line then tells the space free once its
                # partial chunks are gone, not the little they had left.
                state.discard()
                raise exc.told_now() if isinstance(exc, WriteError) else exc from None
            raise state.unfinished(exc, all_tiles=False) from None
        state.check_kept()
        check_unchanged(fingerprint, job.scene, job.frames)
        try:
            _finalise(state, plan, dst, spec, opts)
        finally:
            if cluster is not None:
                cluster.wait()
        checkpoint("commit")
        state.finish()
    except (StaleRunError, ResumableError):
        state.release()
        raise
    except GeosrError:
        # Bad input found mid-run: nothing worth resuming, no trace left.
        state.discard()
        raise
    except BaseException:
        # Interrupted (Ctrl-C) or a bug: the finished tiles stay for --resume.  Stopped
        # before the first was journaled (creating the store, the first batch), the state
        # holds nothing to resume: it said "the finished tiles are kept beside it: rerun
        # with --resume", and the same command was then refused as a stale run.
        if state.done():
            state.release()
        else:
            state.discard()
        raise
    return dst


def _tiles_to_do(
    state: RunState,
    plan: TilePlan,
    dst: Path,
    spec: OutputSpec,
    opts: RunOptions,
    fingerprint: dict[str, Any],
) -> list[int]:
    """The tiles of ``plan`` still to compute: all of them for a new run, whose run store is created
    here, else those an interrupted run of the same job did not finish (or whose stored pixels
    cannot be trusted)."""
    finished = state.prepare(fingerprint, len(plan), resume=opts.resume, restart=opts.restart)
    if finished:
        finished = tiles_to_trust(state, plan, opts.scale, finished)
    if not finished and not state.manifest():
        chunks = (plan.tile_height * opts.scale, plan.tile_width * opts.scale)
        is_zarr = dst.suffix.lower() == ".zarr"
        create_run_store(state.store, spec, chunks, for_zarr_output=is_zarr, destination=dst)
        state.commit_manifest(fingerprint, len(plan))
    return [i for i in range(len(plan)) if i not in finished]


def _run_on_cluster(
    job: Job,
    plan: TilePlan,
    todo: list[int],
    state: RunState,
    spec: OutputSpec,
    opts: RunOptions,
    advance: Callable[[int], None],
    whole_call_tiles: int,
) -> Any:
    """Compute the tiles ``todo`` on the Dask cluster the options name (``--scheduler``, ``--workers``),
    in tasks of ``whole_call_tiles`` tiles at least: what fills a model call of this process's
    predictor, the best guess at a scheduler's workers too.

    Returns
    -------
    ClosingLater
        The cluster, closing while the output is finalised: the caller waits for it.
    """
    from geosr.orchestrate.cluster import ClosingLater, ModelKey, run_on_cluster

    key = ModelKey(opts.model, spec.count, opts.scale, opts.device, opts.precision, opts.compile)
    cluster = ClosingLater(opts.scheduler, opts.workers, opts.device)
    try:
        run_on_cluster(
            job,
            plan,
            todo,
            key,
            state,
            cluster.client,
            on_tiles_done=advance,
            whole_call_tiles=whole_call_tiles,
        )
    except BaseException:
        cluster.wait()
        raise
    cluster.close_later()  # workers stop while the output is finalised
    return cluster


def _run_here(
    job: Job,
    plan: TilePlan,
    todo: list[int],
    predictor: Predictor,
    state: RunState,
    dst: Path,
    spec: OutputSpec,
    advance: Callable[[int], None],
    reader: Reader,
) -> None:
    """Compute the tiles ``todo`` in this process, into the run store, in as many lanes as the
    predictor takes, read by ``reader``."""
    writer = StoreWriter(state.store, dst, spec.nbytes)
    predictor.expect(-(-len(todo) // job.batch_size))  # lets --compile auto decide
    lanes = predictor.lanes()
    predict = predictor.predict_in_lane if lanes > 1 else predictor
    # A Zarr output is its run store, synced whole before its rename: synced as its chunks
    # come, the disk writes while the model computes.  A COG's store is read back and
    # removed, never synced.
    zarr_output = dst.suffix.lower() == ".zarr"
    with written_back_meanwhile(state.store) if zarr_output else contextlib.nullcontext():
        run_tiles(
            job,
            plan,
            predict,
            writer,
            lanes=lanes,
            todo=todo,
            record=state.record,
            on_tiles_done=advance,
            reader=reader,
        )


def _finalise(state: RunState, plan: TilePlan, dst: Path, spec: OutputSpec, opts: RunOptions) -> None:
    """Write the output ``dst`` from the finished run store.

    Raises
    ------
    GeosrError
        Writing the output failed: :func:`~geosr.io.run_store.unfinished_error`'s line, resumable
        where only the output is left to write, or, for a COG whose run store has damaged tiles,
        :func:`~geosr.recovery.damaged_store_error`'s.
    """
    try:
        finalise(state.store, dst, spec, overwrite=opts.overwrite)
    except OutputError as exc:
        damaged = None if dst.suffix.lower() == ".zarr" else damaged_store_error(state, plan, opts.scale, exc)
        if damaged is None:
            raise unfinished_error(state, exc) from None  # resumable: only the output is left
        raise damaged from None
