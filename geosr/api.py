"""The Python API: ``upscale_file`` (the ``geosr run`` job) and its building blocks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geosr import __version__
from geosr.aoi import aoi_mask, aoi_window, crop_scene, fill_value, parse_bbox, read_vector
from geosr.errors import GeosrError, InputError, OptionError
from geosr.grid import scaled
from geosr.io.bands import reflectance_offset, select_bands
from geosr.io.frames import check_frame
from geosr.io.remote import is_remote, local_name
from geosr.io.scene import Scene, is_zarr_path, open_scene, read_sample
from geosr.io.sink import OutputSpec, open_sink
from geosr.io.stac_input import is_stac_item
from geosr.io.stac_input import resolve as resolve_stac
from geosr.models import load_model
from geosr.normalise import (
    FILL_RADIUS,
    Normalisation,
    normalisation_from_card,
    scene_normalisation,
    valid_mask,
)
from geosr.options import DEFAULT_BATCH, DEFAULT_TILE, RunOptions
from geosr.pipeline import Job, run_tiles
from geosr.predictor import Predictor
from geosr.tiling import TilePlan, plan_tiles

Progress = Callable[[int, int], None]
"""Called with ``(tiles_done, tiles_total)`` as a run advances."""


def default_output(src: str | Path, scale: int) -> Path:
    """``<input stem>_x<scale>.tif`` beside the input (in the working folder for a remote input)."""
    p = Path(local_name(src)) if is_remote(src) else Path(src)
    return p.with_name(f"{p.stem}_x{scale}.tif")


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
    when = None
    if is_stac_item(src):
        src, when = resolve_stac(src, asset=options.asset, bands=options.bands)
    elif options.asset is not None:
        raise OptionError(f"{src}: --asset is for STAC Item inputs (.json); this input is a raster")
    scene = open_scene(src, variable=options.variable)
    if when is not None:
        scene = dataclasses.replace(scene, tags={**scene.tags, "STAC_DATETIME": when})
    if options.nodata is not None:
        scene = dataclasses.replace(scene, nodata=float(options.nodata))
    if options.bands:
        scene = select_bands(scene, options.bands)
    area = area_of_interest(options)
    if area is not None:
        scene = crop_scene(scene, aoi_window(scene.grid, area, scene.path))
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
    for path in options.frames:
        frame = open_scene(path)
        if options.nodata is not None:
            frame = dataclasses.replace(frame, nodata=float(options.nodata))
        if options.bands:
            frame = select_bands(frame, options.bands)
        frames.append(check_frame(frame, scene))
    return tuple(frames)


def normalisation_for(
    scene: Scene, card_normalisation: dict[str, Any], add_offset: tuple[float, ...] | None = None
) -> Normalisation:
    """Scene-global normalisation from a decimated read; refuses all-nodata scenes.

    ``add_offset`` (Sentinel-2 ``BOA_ADD_OFFSET``, per band) turns the stored
    numbers into physical units for models that expect them (``dtype-range``:
    ``(DN + offset) / 10000``); percentile normalisation is unaffected by an
    additive offset by construction.
    """
    sample = read_sample(scene)
    valid = valid_mask(sample, scene.nodata)
    if not valid.any():
        raise InputError(
            f"{scene.path}: every pixel is nodata (nodata={scene.nodata}); nothing to super-resolve. "
            "Check the nodata value (gdalinfo) or pass --nodata to override it"
        )
    norm = scene_normalisation(
        sample, valid, dtype=scene.dtype, source=scene.path, **normalisation_from_card(card_normalisation)
    )
    if add_offset is not None and norm.method == "dtype-range":
        norm = dataclasses.replace(norm, offset=tuple(-float(o) for o in add_offset))
    return norm


def provenance_tags(scene: Scene, model_name: str, scale: int, norm: Normalisation) -> dict[str, str]:
    """The input's tags plus what produced this output."""
    tags = dict(scene.tags)
    tags.update(
        GEOSR_VERSION=__version__,
        GEOSR_MODEL=model_name,
        GEOSR_SCALE=str(scale),
        GEOSR_SOURCE=Path(scene.path).name,
        **norm.to_tags(),
    )
    if scene.bands:
        tags["GEOSR_BANDS"] = ",".join(str(b) for b in scene.bands)
    return tags


def upscale_file(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    scale: int = 4,
    model: str | None = None,
    progress: Progress | None = None,
    **options: Any,
) -> Path:
    """Super-resolve the raster ``src`` into ``dst`` (COG for ``.tif``, Zarr for ``.zarr``).

    Parameters
    ----------
    src : path
        GeoTIFF/COG, JPEG2000, any GDAL raster, or a Zarr store.
    dst : path, optional
        Output; default ``<stem>_x<scale>.tif`` beside ``src``.
    scale : int
        Zoom factor.
    model : str, optional
        Registry name (``cnnrnn-fast``, ``bicubic``, ...) or weights path.
    progress : callable, optional
        ``progress(done, total)`` after each batch of tiles.
    **options
        Any other :class:`~geosr.options.RunOptions` field (``tile``,
        ``batch_size``, ``device``, ``precision``, ``overwrite``, ``nodata``,
        ``variable``).

    Returns
    -------
    pathlib.Path
        The output path.

    Raises
    ------
    GeosrError
        Bad input or option; nothing is written in that case.
    """
    try:
        opts = RunOptions(scale=scale, model=model, **options)
    except TypeError as exc:
        raise OptionError(str(exc)) from None
    except GeosrError as exc:
        raise _in_context(src, exc) from None
    scene = scene_for(src, opts)
    frames = frames_for(scene, opts)
    dst = Path(dst) if dst is not None else default_output(src, opts.scale)
    if is_remote(dst):
        raise OptionError(
            f"{dst}: outputs are written locally (atomically, then renamed); "
            "write to a local path and upload it (e.g. aws s3 cp, gsutil cp)"
        )
    if not is_remote(src) and not is_zarr_path(src) and dst.resolve() == Path(src).resolve():
        raise OptionError(f"{dst}: the output would overwrite the input; choose another -o path")
    try:
        net = load_model(opts.model, bands=scene.count, scale=opts.scale)
        predictor = Predictor(net, device=opts.device, precision=opts.precision)
    except GeosrError as exc:
        raise _in_context(src, exc) from None
    offsets = reflectance_offset(scene, opts.offset)
    norm = normalisation_for(scene, dict(net.card.normalisation), offsets)
    # Every frame deepens the recurrence, so the halo grows with T.
    radius = net.receptive_radius(1 + len(frames)) if frames else net.receptive_field
    plan = plan_tiles(*scene.grid.shape.yx, tile=opts.tile or DEFAULT_TILE, halo=radius + FILL_RADIUS)
    batch = opts.batch_size or DEFAULT_BATCH[predictor.torch_device.type]
    out_grid = scaled(scene.grid, opts.scale)
    # Only a polygon (--aoi) masks: a --bbox asks for the window that covers it.
    area = read_vector(opts.aoi) if opts.aoi is not None else None
    mask = aoi_mask(area, out_grid, fill_value(scene.dtype, scene.nodata)) if area is not None else None
    job = Job(
        scene=scene,
        halo=plan.halo,
        scale=opts.scale,
        norm=norm,
        nodata=scene.nodata,
        batch_size=batch,
        frames=frames,
        aoi=mask,
    )
    tags = provenance_tags(scene, net.name, opts.scale, norm)
    if offsets is not None:
        tags["GEOSR_BOA_ADD_OFFSET"] = ",".join(f"{o:g}" for o in offsets)
    if frames:
        tags["GEOSR_FRAMES"] = ",".join(Path(f.path).name for f in frames)
    spec = OutputSpec(
        grid=out_grid,
        count=scene.count,
        dtype=scene.dtype,
        nodata=mask.nodata if mask is not None else scene.nodata,
        descriptions=scene.descriptions,
        colorinterp=scene.colorinterp,
        tags=tags,
        band_tags=scene.band_tags,
    )
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(plan))

    out = _run(job, plan, predictor, dst, spec, opts, advance)
    _extras(src, scene, out, opts, net.name)
    return out


def _extras(src: str | Path, scene: Scene, out: Path, opts: RunOptions, model_name: str) -> None:
    """What ``--stac`` and ``--quicklook`` ask for, beside the finished output."""
    if opts.stac:
        from geosr.stac import write_item

        write_item(out, source=src, scene=scene, model=model_name, scale=opts.scale)
    if opts.quicklook:
        from geosr.quicklook import quicklook_path, write_compare

        write_compare(scene, out, quicklook_path(out))


def _run(
    job: Job,
    plan: TilePlan,
    predictor: Predictor,
    dst: Path,
    spec: OutputSpec,
    opts: RunOptions,
    advance: Callable[[int], None],
) -> Path:
    """Run the planned job locally (single process) or on a Dask cluster."""
    if opts.scheduler is not None or opts.workers is not None:
        from geosr.orchestrate.cluster import ModelKey, cluster_client, run_on_cluster

        key = ModelKey(opts.model, spec.count, opts.scale, opts.device, opts.precision)
        with cluster_client(opts.scheduler, opts.workers) as client:
            return run_on_cluster(
                job, plan, key, dst, spec, client, overwrite=opts.overwrite, on_tiles_done=advance
            )
    with open_sink(dst, spec, overwrite=opts.overwrite) as sink:
        run_tiles(job, plan, predictor, sink, on_tiles_done=advance)
    return dst
