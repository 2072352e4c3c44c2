"""The Python API: ``upscale_file`` (the ``geosr run`` job) and its building blocks."""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

import numpy as np

from geosr import __version__, resources
from geosr.aoi import aoi_mask, aoi_window, crop_scene, parse_bbox, read_vector, whole_file
from geosr.errors import GeosrError, GeosrWarning, InputError, OptionError, OutputError, ResumableError
from geosr.faults import check as check_faults
from geosr.faults import checkpoint
from geosr.fingerprint import job_fingerprint
from geosr.grid import scaled
from geosr.io.atomic import check_writable, format_bytes
from geosr.io.bands import check_band_layout, reflectance_offset, select_bands
from geosr.io.frames import check_frame
from geosr.io.remote import (
    check_remote_output,
    file_url_path,
    fsspec_url,
    is_remote,
    is_virtual,
    local_name,
    make_staging_folder,
    remote_exists,
    remote_matches,
    staged_output,
    staging_folder,
    upload,
)
from geosr.io.run_store import StoreWriter, create_run_store, finalise, output_job, unfinished_error
from geosr.io.runstate import RunState, StaleRunError, job_digest, reclaimable_bytes, run_dir
from geosr.io.scene import (
    Scene,
    band_bytes,
    carried_tags,
    fill_value,
    is_zarr_path,
    keeps_band,
    open_scene,
    read_sample,
)
from geosr.io.sink import SUPPORTED_SUFFIXES, OutputSpec, check_nodata_of
from geosr.io.stac_input import is_stac_item, not_an_item
from geosr.io.stac_input import resolve as resolve_stac
from geosr.io.zarr_store import check_zarr_grid
from geosr.normalise import (
    FILL_RADIUS,
    Normalisation,
    normalisation_from_card,
    scene_normalisation,
    valid_mask,
)
from geosr.options import DEFAULT_TILE, RunOptions
from geosr.pipeline import Job, run_tiles
from geosr.recovery import damaged_store_error, tiles_to_trust
from geosr.tiling import TilePlan, plan_tiles

if TYPE_CHECKING:
    # Imported where a model is loaded, not here: they import torch, whose 3 s (17 s on a
    # busy machine) would come before the line for a corrupt file, a scene without a CRS
    # or an output that exists, which need only the raster's header.
    from geosr.models import SRModel
    from geosr.predictor import Predictor

Progress = Callable[[int, int], None]
"""Called with ``(tiles_done, tiles_total)`` as a run advances."""


def default_output(src: str | Path, scale: int) -> Path:
    """``<input stem>_x<scale>.tif`` beside a local input; in the working folder for a URL or
    an archive member (``/vsizip/``, ``zip://``), beside which nothing can be written.

    A group of a Zarr store (``product.zarr/r10m``) gives ``product_r10m_x<scale>.tif`` beside
    the store, never a file inside it, and a zipped store ``product.zarr.zip`` gives
    ``product_x<scale>.tif``, as its folder would.
    """
    text = str(src)
    if text.startswith("file://"):
        p = Path(urlparse(text).path)
    else:
        p = Path(local_name(src)) if is_virtual(src) else Path(src)
    root = None if is_virtual(src) else _store_root(p)
    if root is not None:
        group = p.absolute().relative_to(root)
        return root.with_name(f"{Path(root.name).stem}_{'_'.join(group.parts)}_x{scale}.tif")
    stem = p.name[: -len(".zarr.zip")] if p.name.lower().endswith(".zarr.zip") else p.stem
    return p.with_name(f"{stem}_x{scale}.tif")


def _store_root(path: Path) -> Path | None:
    """The Zarr store (absolute) that ``path`` is a group of, or None where it is none.

    The output went beside the group, into the store: ``product.zarr/r10m_x2.tif`` (and
    the run's hidden folder with it), a file no Zarr reader expects among the groups.
    """
    if not is_zarr_path(path):
        return None
    root = None
    for parent in path.absolute().parents:
        if not is_zarr_path(parent):
            break
        root = parent
    return root


def _in_context(path: str | Path, exc: GeosrError) -> GeosrError:
    """The same error, its message prefixed by the file it is about (unless already)."""
    message = str(exc)
    if message.startswith(str(path)):
        return exc
    return type(exc)(f"{path}: {message}")


def scene_for(src: str | Path, options: RunOptions) -> Scene:
    """Open ``src`` and apply the options that shape it: nodata, bands, area of interest.

    A STAC Item is resolved to its raster asset(s) first (:mod:`geosr.io.stac_input`).
    """
    if options.asset is not None and not is_stac_item(src) and not_an_item(src) is None:
        raise OptionError(f"{src}: --asset is for STAC Item inputs (.json); this input is a raster")
    scene = open_input(src, options, variable=options.variable)
    if options.nodata is not None:
        scene = dataclasses.replace(scene, nodata=float(options.nodata), band_nodata=())
    # Here, naming the file, rather than when the output is set up: among several
    # inputs that line did not say which one (and geosr info never said it).
    whose = "--nodata" if options.nodata is not None else "the file's nodata; override it with --nodata V"
    check_nodata_of(scene.path, scene.nodata, scene.dtype, whose)
    if options.bands:
        scene = select_bands(scene, options.bands)
    area = area_of_interest(options)
    if area is not None:
        scene = crop_scene(scene, aoi_window(scene.grid, area, scene.path))
    return scene


def open_input(src: str | Path, options: RunOptions, *, variable: str | None = None) -> Scene:
    """The raster at ``src``, or the one a STAC Item names (its ``--asset``, or its
    ``--bands`` assets stacked), for the input and each ``--frame`` alike."""
    problem = not_an_item(src)
    if problem is not None:
        raise problem
    if not is_stac_item(src):
        return open_scene(src, variable=variable)
    item = resolve_stac(src, asset=options.asset, bands=options.bands)
    scene = open_scene(item.href, variable=variable)
    if item.stacked:
        # The stack is a temporary VRT, new in every run: the Item stands for it in
        # messages, provenance and the job's fingerprint (so that --resume finds the run).
        scene = dataclasses.replace(scene, path=str(src), subdataset=item.href)
    if item.when is not None:
        scene = dataclasses.replace(scene, tags={**scene.tags, "STAC_DATETIME": item.when})
    return scene


def area_of_interest(options: RunOptions) -> Any:
    """The ``--aoi`` or ``--bbox`` geometry (odc-geo, with its CRS), or None."""
    if options.aoi is not None:
        return read_vector(options.aoi)
    if options.bbox is not None:
        return parse_bbox(options.bbox, options.bbox_crs)
    return None


def frames_for(scene: Scene, options: RunOptions) -> tuple[Scene, ...]:
    """The ``--frame`` scenes, with the reference's band selection, checked against it."""
    frames = []
    seen = [str(scene.path)]
    for path in options.frames:
        earlier = next((s for s in seen if _same_file(s, str(path))), None)
        if earlier is not None:
            what = "the input itself" if earlier == seen[0] else "given twice"
            raise OptionError(
                f"--frame {path} is {what}: it would be fused as another acquisition; "
                "give each other acquisition of the scene once"
            )
        seen.append(str(path))
        # A frame may be a STAC Item as the input may: GDAL's STACIT driver read one
        # that carries projection fields without --asset/--bands, and refused any other.
        frame = open_input(path, options)
        if options.nodata is not None:
            frame = dataclasses.replace(frame, nodata=float(options.nodata), band_nodata=())
        if options.bands:
            frame = select_bands(frame, options.bands)
        frames.append(check_frame(frame, scene))
    return tuple(frames)


def _same_file(a: str, b: str) -> bool:
    """Whether two inputs name one file (also through another spelling or a link)."""
    try:
        return Path(a).samefile(b)
    except (OSError, ValueError):  # a URL, or a path that is not there
        return a == b


def frame_shifts(
    frames: tuple[Scene, ...], reference: tuple[float, ...] | None, override: float | None
) -> tuple[tuple[float, ...] | None, ...]:
    """What to add to each frame's bands to express it in the reference's DN convention.

    A Sentinel-2 L2A product of baseline 04.00 or later stores ``10000 x reflectance
    - BOA_ADD_OFFSET`` (offset -1000), an older one ``10000 x reflectance``: in a
    stack across January 2022, the same ground differs by 1000 DN between frames,
    which the recurrent model would take for a change.  ``--offset`` (``override``)
    applies to every file alike, so it shifts nothing.
    """
    ref = reference or ()
    shifts: list[tuple[float, ...] | None] = []
    for frame in frames:
        own = reflectance_offset(frame, override) or ()
        shift = tuple((own[b] if own else 0.0) - (ref[b] if ref else 0.0) for b in range(frame.count))
        shifts.append(shift if any(shift) else None)
    return tuple(shifts)


UNDECLARED_ZEROS = 0.01
"""Share of a scene's sample, 0 in every band, above which a scene without nodata is warned about."""


def warn_undeclared_zeros(scene: Scene, sample: np.ndarray) -> None:
    """Warn, in one line, when an unsigned scene declares no nodata but is 0 in every band
    on a sizeable share of its pixels (``UNDECLARED_ZEROS`` of ``sample``).

    Sentinel-2 L1C JP2 files leave their 0 outside the swath undeclared: run as data, the
    edge of that area was sharpened like any other (a T33UUU crop at x4 gave 4517 output
    pixels of 0 inside the valid area and a dark ring along it), with no word of it.  A
    Landsat scene's fill around its footprint is the same.  Signed types are left out: 0 is
    mid-range there, a valid value.
    """
    if scene.nodata is not None or scene.nan_marks_invalid or np.dtype(scene.dtype).kind != "u":
        return
    share = float((sample == 0).all(axis=0).mean()) if sample.size else 0.0
    if share >= UNDECLARED_ZEROS:
        warnings.warn(
            GeosrWarning(
                f"{scene.path}: {100 * share:.3g} % of its pixels are 0 in every band and it declares "
                "no nodata, so they are super-resolved as data; pass --nodata 0 if they are not "
                "(as outside a Sentinel-2 L1C swath)"
            ),
            stacklevel=2,
        )


def normalisation_for(
    scene: Scene, card_normalisation: dict[str, Any], add_offset: tuple[float, ...] | None = None
) -> Normalisation:
    """Scene-global normalisation from a decimated read of the whole file, also for an
    area of interest (so that its output equals the same window of a full run, and the
    outputs of neighbouring areas match); refuses all-nodata scenes.

    A remote input's area of interest is the exception: its window alone is sampled,
    since sampling the whole file would download all of it (a 1 GB scene for a field).

    ``add_offset`` (Sentinel-2 ``BOA_ADD_OFFSET``, per band) turns the stored
    numbers into physical units for models that expect them (``dtype-range``:
    ``(DN + offset) / 10000``); percentile normalisation is unaffected by an
    additive offset by construction.
    """
    sample = read_sample(scene if is_remote(scene.path) else whole_file(scene))
    valid = valid_mask(sample, scene.nodata)
    if not valid.any():
        values = scene.band_nodata or (scene.nodata,)
        hidden = f"nodata (nodata={', '.join(map(str, values))})" + (" or masked" if scene.masked else "")
        raise InputError(
            f"{scene.path}: every pixel is {hidden}; nothing to super-resolve. "
            "Check the nodata value and mask (gdalinfo) or pass --nodata to override the value"
        )
    warn_undeclared_zeros(scene, sample)
    norm = scene_normalisation(
        sample, valid, dtype=scene.dtype, source=scene.path, **normalisation_from_card(card_normalisation)
    )
    if add_offset is not None and norm.method == "dtype-range":
        norm = dataclasses.replace(norm, offset=tuple(-float(o) for o in add_offset))
    return norm


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
    """The input's tags plus what produced this output."""
    tags = carried_tags(scene.tags)
    tags.update(
        GEOSR_VERSION=__version__,
        GEOSR_MODEL=model_name,
        GEOSR_SCALE=str(scale),
        GEOSR_SOURCE=local_name(scene.path),  # of a signed URL, without its signature
        **norm.to_tags(),
    )
    if scene.bands:
        tags["GEOSR_BANDS"] = ",".join(str(b) for b in scene.bands)
    return tags


def resource_plan(
    scene: Scene,
    net: SRModel,
    predictor: Predictor,
    *,
    tile: int,
    halo: int,
    batch: int,
    scale: int,
    frames: int = 1,
    workers: int = 1,
) -> resources.Plan:
    """The numbers a run's memory bound depends on (``geosr run``'s guard and ``geosr info``)."""
    # The band of strips each reading thread keeps for a strip-organized file
    # (geosr.io.scene), and its next one while that is assembled, per frame.
    rows = tile + 2 * halo
    row_band = 2 * frames * band_bytes(scene, rows) if keeps_band(scene, rows) else 0
    return resources.Plan(
        tile=tile,
        halo=halo,
        batch=batch,
        bands=scene.count,
        scale=scale,
        in_itemsize=scene.read_dtype.itemsize,
        out_itemsize=np.dtype(scene.dtype).itemsize,
        features=int(net.card.config.get("features", 1)),
        model_bytes=predictor.model_bytes(),
        frames=frames,
        workers=workers,
        row_band_bytes=row_band,
        images_per_call=predictor.images_per_call(batch, scene.count),
        activations_in_ram=predictor.torch_device.type == "cpu",
    )


FITTING_TILES = (DEFAULT_TILE, DEFAULT_TILE // 2, DEFAULT_TILE // 4, DEFAULT_TILE // 8)
"""Tiles tried, in order, when the default one would not fit in memory (more halo, less memory)."""


def fit_to_memory(
    scene: Scene,
    net: SRModel,
    predictor: Predictor,
    opts: RunOptions,
    *,
    halo: int,
    frames: int = 1,
) -> tuple[int, int, resources.Plan]:
    """The run's tile and batch, and the memory plan they make.

    The user's ``--tile`` and ``--batch-size`` are kept as given, and so is
    the default tile with ``--no-check-resources``.  Otherwise the default
    tile is halved (down to :data:`FITTING_TILES`' last) until the run's
    memory bound fits in the memory available, with a warning that says so:
    a many-band scene on a small machine then runs instead of being refused,
    a little slower for the larger share of halo.  Nothing is refused here;
    :func:`geosr.resources.check` does that with the plan returned.
    """
    height, width = scene.grid.shape.yx
    given = opts.tile is not None or not opts.check_resources
    tiles = (opts.tile or DEFAULT_TILE,) if given else FITTING_TILES
    available = None if given else resources.available_memory()
    for tile in tiles:
        read_shape = (
            min(tile, height) + 2 * halo,
            min(tile, width) + 2 * halo,
        )  # the plan's, before it exists
        batch = opts.batch_size or predictor.batch_size_for(read_shape, scene.count, frames)
        # A batch never holds more tiles than the scene has: --batch-size 1000
        # on a small scene must not be refused for memory it will never use.
        batch = min(batch, -(-height // tile) * -(-width // tile))
        bounds = resource_plan(
            scene,
            net,
            predictor,
            tile=min(tile, max(height, width)),
            halo=halo,
            batch=batch,
            scale=opts.scale,
            frames=frames,
            workers=opts.workers or 1,
        )
        needed = resources.memory_needed(bounds)
        if available is None or needed <= available:
            break
    else:
        return tile, batch, bounds  # nothing fits: the guard refuses the smallest plan, with its numbers
    if tile != tiles[0]:
        warnings.warn(
            GeosrWarning(
                f"{scene.name}: tiles of {tile} px instead of {tiles[0]}, so that the run fits in "
                f"the {format_bytes(available or 0)} of memory available (it needs about "
                f"{format_bytes(needed)}); --tile sets the tile"
            ),
            stacklevel=3,
        )
    return tile, batch, bounds


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


def check_output_given(dst: str | Path | None) -> None:
    """Refuse an empty output name, as an unset shell variable gives (``-o "$OUT"``): as a
    Path it is '.', so the output went into the working folder, not where it was meant.
    Refuse too a local name ending in '/' that is no existing folder: as a Path the slash
    is dropped, so ``-o out/`` read as an output without a suffix, and ``-o a.tif/
    --overwrite`` replaced the file ``a.tif``.

    Raises
    ------
    OptionError
        ``dst`` is an empty or blank string, or names a folder that is not one.
    """
    if dst is None:
        return
    text = str(dst)
    if text.lower().startswith("file://"):
        text = unquote(urlparse(text).path)  # as file_url_path reads it, less the Path that drops '/'
    if not text.strip():
        raise OptionError(
            "--output is empty; give a .tif, a .zarr or an existing folder, or leave -o out to write "
            "<stem>_x<scale>.tif beside the input"
        )
    folder = Path(text)
    # A Zarr store is a folder: 'out.zarr/' (as the shell completes one) names the store.
    if is_remote(text) or not text.endswith("/") or folder.is_dir() or folder.suffix.lower() == ".zarr":
        return
    if folder.exists():
        raise OptionError(
            f"--output {text}: {folder} is a file, not a folder; drop the '/' to write that file "
            "(with --overwrite), or give a folder"
        )
    raise OptionError(f"--output {text}: no such folder; create it first (mkdir -p {folder}) or give a .tif")


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
    src : path
        GeoTIFF/COG, JPEG2000, any GDAL raster, or a Zarr store.
    dst : path or URL, optional
        Output; default ``<stem>_x<scale>.tif`` beside ``src`` (in the working
        folder for a remote ``src``), or in ``dst`` when it is an existing folder.
        A remote URL (``s3://``, ``gs://``, any fsspec URL, ``/vsis3/...``) is
        written locally, then uploaded.
    scale : int
        Zoom factor.
    model : str, optional
        Registry name (``cnnrnn-fast``, ``bicubic``, ...) or weights path.
    progress : callable, optional
        ``progress(done, total)`` after each batch of tiles.
    **options
        Any other :class:`~geosr.options.RunOptions` field (``tile``,
        ``batch_size``, ``device``, ``precision``, ``compile``, ``overwrite``, ``nodata``,
        ``variable``).

    Returns
    -------
    pathlib.Path or str
        The output path (the URL, for a remote output).

    Raises
    ------
    GeosrError
        Bad input or option; nothing is written in that case.
    """
    check_source_given(src)
    check_faults()  # before anything is written: a malformed one failed mid-run
    unknown = sorted(set(options) - {f.name for f in dataclasses.fields(RunOptions)})
    if unknown:
        raise OptionError(unknown_options(unknown))
    try:
        opts = RunOptions(scale=scale, model=model, **options)
    except TypeError as exc:
        raise OptionError(str(exc)) from None
    except GeosrError as exc:
        raise _in_context(src, exc) from None
    check_output_given(dst)
    scene = scene_for(src, opts)
    frames = frames_for(scene, opts)
    dst = file_url_path(dst) if dst is not None else None
    if dst is not None and is_remote(dst):
        if str(dst).endswith("/"):  # a remote folder (there is no folder to test for)
            dst = f"{dst}{default_output(src, opts.scale).name}"
        return _upscale_to_remote(src, str(dst), opts, progress)
    dst = Path(dst) if dst is not None else default_output(src, opts.scale)
    if dst.is_dir() and dst.suffix.lower() != ".zarr":
        # A folder to write into, as `geosr run -o FOLDER` takes it (and as the line for
        # an output without a suffix says): it was refused as "unsupported suffix".
        dst = dst / default_output(src, opts.scale).name
    refuse_overwriting_inputs(dst, src, scene, frames)
    if dst.suffix.lower() not in SUPPORTED_SUFFIXES:
        # No suffix: most likely a folder for the output ('-o out/') that does not exist yet.
        folder = "" if dst.suffix else ", or an existing folder to write it into"
        raise OptionError(
            f"cannot write {dst}: unsupported output suffix {dst.suffix or '(none)'!r}; "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)}{folder}"
        )
    if dst.suffix.lower() == ".zarr":
        check_zarr_grid(dst, scene.grid)  # before any compute: the run store would take it
    from geosr.models import load_model
    from geosr.predictor import Predictor

    try:
        net = load_model(opts.model, bands=scene.count, scale=opts.scale)
        check_band_layout(scene.path, scene.descriptions, net.card.bands, net.name)
        predictor = Predictor(net, device=opts.device, precision=opts.precision, compile=opts.compile)
    except GeosrError as exc:
        raise _in_context(src, exc) from None
    if frames and not net.fuses_frames:
        warnings.warn(
            f"{src}: model {net.name} reads the reference alone, so the {len(frames)} --frame file(s) are "
            "not used; a CNN-RNN model (the default) fuses them",
            GeosrWarning,
            stacklevel=2,
        )
        frames = ()
    # Every frame deepens the recurrence, so the halo grows with T.
    radius = net.receptive_radius(1 + len(frames)) if frames else net.receptive_field
    halo = radius + FILL_RADIUS
    height, width = scene.grid.shape.yx
    tile, batch, bounds = fit_to_memory(scene, net, predictor, opts, halo=halo, frames=1 + len(frames))
    if opts.check_resources:
        # Before the plan and before any pixel is read: a scene declaring absurd
        # dimensions stops here, not after allocating millions of tiles.
        out_bytes = resources.output_bytes(height, width, scene.count, opts.scale, scene.dtype)
        try:
            resources.check(bounds, out_bytes, dst, already_on_disk=reclaimable_bytes(dst))
        except GeosrError as exc:
            raise _in_context(src, exc) from None
    plan = plan_tiles(height, width, tile=tile, halo=halo)
    offsets = reflectance_offset(scene, opts.offset)
    norm = normalisation_for(scene, dict(net.card.normalisation), offsets)
    out_grid = scaled(scene.grid, opts.scale)
    # Only a polygon (--aoi) masks: a --bbox asks for the window that covers it.
    area = read_vector(opts.aoi) if opts.aoi is not None else None
    mask = (
        aoi_mask(area, out_grid, fill_value(scene.dtype, scene.output_nodata)) if area is not None else None
    )
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
    )
    model_tag = model_label(net, opts.model)
    tags = provenance_tags(scene, model_tag, opts.scale, norm)
    if offsets is not None:
        tags["GEOSR_BOA_ADD_OFFSET"] = ",".join(f"{o:g}" for o in offsets)
    if frames:
        tags["GEOSR_FRAMES"] = ",".join(local_name(f.path) for f in frames)
    spec = OutputSpec(
        grid=out_grid,
        count=scene.count,
        dtype=scene.dtype,
        nodata=mask.nodata if mask is not None else scene.output_nodata,
        descriptions=scene.descriptions,
        colorinterp=scene.colorinterp,
        tags=tags,
        band_tags=tuple(carried_tags(tags) for tags in scene.band_tags),
        scales=scene.scales,
        offsets=scene.offsets,
        units=scene.units,
        band_axis=scene.band_axis,
        band_labels=scene.band_labels,
    )
    fingerprint = job_fingerprint(scene, net.name, predictor, plan, opts, norm, dst, frames)
    digest = job_digest(fingerprint)
    spec = dataclasses.replace(spec, tags={**spec.tags, "GEOSR_JOB": digest})
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(plan))

    if dst.exists() or dst.is_symlink():
        found = output_job(dst)
        if opts.resume and found == digest:
            _forget_leftover_state(dst)
            advance(len(plan))
            # Already finished: nothing is computed again.  But a run killed after its rename
            # has no --stac/--quicklook files yet, so those asked for and missing are written.
            _extras(src, scene, dst, opts, model_tag, missing_only=True, frames=frames)
            return dst
        if not opts.overwrite:
            if found == digest:  # a rerun of a finished batch, say: --resume skips it
                raise OutputError(
                    f"{dst} already exists, written by this same job; pass --resume to keep it "
                    "(nothing is computed again) or --overwrite to replace it"
                )
            what = "is the output of a different job" if opts.resume and found else "already exists"
            raise OutputError(f"{dst} {what}; pass --overwrite to replace it")
    check_extras_free(dst, opts)
    check_writable(dst, opts.overwrite)
    out = _run(job, plan, predictor, dst, spec, opts, fingerprint, advance)
    _extras(src, scene, out, opts, model_tag, frames=frames)
    return out


def unknown_options(names: list[str]) -> str:
    """The line for keyword arguments ``upscale_file`` does not take, with the closest
    known ones: it said "RunOptions.__init__() got an unexpected keyword argument", a
    class the caller never named."""
    import difflib

    known = [f.name for f in dataclasses.fields(RunOptions) if f.name not in ("scale", "model")]
    hints = [
        f"{n!r} (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(n, known, 1)) else repr(n)
        for n in names
    ]
    return f"upscale_file() got unknown option(s) {', '.join(hints)}; it takes: {', '.join(known)}"


def refuse_overwriting_inputs(dst: Path, src: str | Path, scene: Scene, frames: tuple[Scene, ...]) -> None:
    """Refuse an output that is one of the run's inputs, even with ``--overwrite``.

    The input, a Zarr store as much as a file, the raster a STAC Item's asset
    names, and every ``--frame``: ``--overwrite`` replaces an earlier output, never
    the data the run reads.

    A folder that holds one of them counts too: the Zarr store of an input given as
    a group of it (``product.zarr/r10m``), whose other groups would go with it.

    Raises
    ------
    OptionError
        ``dst`` resolves to one of them, or to a folder above one.
    """
    target = dst.resolve()
    named = [("input", str(src)), ("input", scene.path), *(("frame", f.path) for f in frames)]
    for what, path in named:
        if is_remote(path):
            continue
        resolved = Path(path).resolve()
        if resolved == target or target in resolved.parents:
            suffix = "" if path == str(src) and resolved == target else f" {path}"
            raise OptionError(f"{dst}: the output would overwrite the {what}{suffix}; choose another -o path")


def _upscale_to_remote(src: str | Path, dst: str, opts: RunOptions, progress: Progress | None) -> str:
    """Write locally into a private folder (:func:`~geosr.io.remote.staging_folder`, which
    ``--resume`` finds again), then upload the output (and its STAC/quicklook)."""
    import shutil

    check_remote_output(dst, overwrite=opts.overwrite)
    check_extras_free(dst, opts)
    staging = make_staging_folder(dst)
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


def check_extras_free(dst: Path | str, opts: RunOptions) -> None:
    """Refuse, before any work, to replace the STAC Item or quicklook of another output.

    ``--stac`` and ``--quicklook`` name their files by the output's stem, which a
    COG and a Zarr output of one scene share (``x_x4.tif``, ``x_x4.zarr``): when
    ``dst`` is not there yet, an existing one describes that other output, and is
    replaced only with ``--overwrite``, as the output itself would be.  A remote
    output's (a URL) are uploaded beside it: they are looked for there.

    Raises
    ------
    OutputError
        One of them exists and ``opts.overwrite`` is false.
    """
    if opts.overwrite:
        return
    from geosr.quicklook import quicklook_path
    from geosr.stac import item_path

    remote = isinstance(dst, str) and is_remote(dst)
    name = local_name(str(dst)) if remote else Path(dst).name
    wanted = [
        (opts.stac, item_path(name).name, "STAC Item"),
        (opts.quicklook, quicklook_path(name).name, "quicklook"),
    ]
    for asked, extra, what in wanted:
        if not asked:
            continue
        if remote:
            where: str | Path = f"{fsspec_url(str(dst)).rsplit('/', 1)[0]}/{extra}"
            # One this job uploaded before its output's upload failed is its own: its copy
            # is still staged (the refusal blocked the --resume that uploads the output).
            staged = staging_folder(str(dst)) / extra
            taken = remote_exists(str(where)) and not remote_matches(str(where), staged)
        else:
            where = Path(dst).with_name(extra)
            taken = where.exists() or where.is_symlink()
        if taken:
            raise OutputError(
                f"{where} already exists (the {what} of another output named {Path(name).stem}?); "
                "pass --overwrite to replace it, or choose another -o name"
            )


def _extras(
    src: str | Path,
    scene: Scene,
    out: Path,
    opts: RunOptions,
    model_name: str,
    *,
    missing_only: bool = False,
    frames: tuple[Scene, ...] = (),
) -> None:
    """What ``--stac`` and ``--quicklook`` ask for, beside the finished output
    (``missing_only``: those not there yet, for a finished output that is kept;
    ``frames``: those the model fused, which the Item links to)."""
    if opts.stac:
        from geosr.stac import item_path, write_item

        item = item_path(out)
        _write_extra(
            out,
            item,
            missing_only,
            lambda: write_item(
                out,
                source=src,
                scene=scene,
                model=model_name,
                scale=opts.scale,
                frames=tuple(f.path for f in frames),
            ),
        )
    if opts.quicklook:
        from geosr.quicklook import quicklook_path, write_compare

        png = quicklook_path(out)
        _write_extra(out, png, missing_only, lambda: write_compare(scene, out, png))


def _write_extra(out: Path, path: Path, missing_only: bool, write: Callable[[], object]) -> None:
    """``write()`` the file ``path`` beside the finished output ``out``, unless ``missing_only``
    and it is there; a failure says that ``out`` is finished and how to get the rest."""
    if missing_only and path.exists():
        return
    try:
        write()
    except GeosrError as exc:
        reason = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")
        raise OutputError(
            f"{out} is written, but {path.name} is not: {reason}; fix that and rerun the same "
            "command with --resume, which writes only what is missing"
        ) from None


def _run(
    job: Job,
    plan: TilePlan,
    predictor: Predictor,
    dst: Path,
    spec: OutputSpec,
    opts: RunOptions,
    fingerprint: dict[str, Any],
    advance: Callable[[int], None],
) -> Path:
    """Run the planned job locally (single process) or on a Dask cluster, resumably."""
    state = RunState.acquire(dst)
    try:
        finished = state.prepare(fingerprint, len(plan), resume=opts.resume, restart=opts.restart)
        if finished:
            finished = tiles_to_trust(state, plan, opts.scale, finished)
        if not finished and not state.manifest():
            chunks = (plan.tile_height * opts.scale, plan.tile_width * opts.scale)
            is_zarr = dst.suffix.lower() == ".zarr"
            create_run_store(state.store, spec, chunks, for_zarr_output=is_zarr, destination=dst)
            state.commit_manifest(fingerprint, len(plan))
        todo = [i for i in range(len(plan)) if i not in finished]
        advance(len(plan) - len(todo))
        cluster = None
        try:
            if opts.scheduler is not None or opts.workers is not None:
                from geosr.orchestrate.cluster import ClosingLater, ModelKey, run_on_cluster

                key = ModelKey(opts.model, spec.count, opts.scale, opts.device, opts.precision, opts.compile)
                cluster = ClosingLater(opts.scheduler, opts.workers, opts.device)
                try:
                    run_on_cluster(job, plan, todo, key, state, cluster.client, on_tiles_done=advance)
                except BaseException:
                    cluster.wait()
                    raise
                cluster.close_later()  # workers stop while the output is finalised
            else:
                writer = StoreWriter(state.store, dst, spec.nbytes)
                predictor.expect(-(-len(todo) // job.batch_size))  # lets --compile auto decide
                run_tiles(job, plan, predictor, writer, todo=todo, record=state.record, on_tiles_done=advance)
        except OutputError as exc:
            # A full disk (or a permission) while tiles were stored: the finished ones stay,
            # for a --resume once there is room (a resume re-checks every kept chunk).
            raise state.unfinished(exc, all_tiles=False) from None
        try:
            finalise(state.store, dst, spec, overwrite=opts.overwrite)
        except OutputError as exc:
            damaged = (
                None if dst.suffix.lower() == ".zarr" else damaged_store_error(state, plan, opts.scale, exc)
            )
            if damaged is None:
                raise unfinished_error(state, exc) from None  # resumable: only the output is left
            raise damaged from None
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
        # Interrupted (Ctrl-C) or a bug: the finished tiles stay for --resume.
        state.release()
        raise
    return dst
