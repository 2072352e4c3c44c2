"""The Python API: ``upscale_file`` (the ``geosr run`` job) and its building blocks."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from geosr import __version__
from geosr.errors import GeosrError, InputError, OptionError
from geosr.grid import scaled
from geosr.io.scene import Scene, is_zarr_path, open_scene, read_sample
from geosr.io.sink import OutputSpec, open_sink
from geosr.models import load_model
from geosr.normalise import (
    FILL_RADIUS,
    Normalisation,
    normalisation_from_card,
    scene_normalisation,
    valid_mask,
)
from geosr.options import DEFAULT_TILE, RunOptions
from geosr.pipeline import Job, run_tiles
from geosr.predictor import Predictor
from geosr.tiling import TilePlan, plan_tiles

Progress = Callable[[int, int], None]
"""Called with ``(tiles_done, tiles_total)`` as a run advances."""


def default_output(src: str | Path, scale: int) -> Path:
    """``<input stem>_x<scale>.tif`` beside the input."""
    p = Path(src)
    return p.with_name(f"{p.stem}_x{scale}.tif")


def _in_context(path: str | Path, exc: GeosrError) -> GeosrError:
    """The same error, its message prefixed by the file it is about (unless already)."""
    message = str(exc)
    if message.startswith(str(path)):
        return exc
    return type(exc)(f"{path}: {message}")


def scene_for(src: str | Path, options: RunOptions) -> Scene:
    """Open ``src`` and apply option overrides (nodata)."""
    scene = open_scene(src, variable=options.variable)
    if options.nodata is not None:
        scene = dataclasses.replace(scene, nodata=float(options.nodata))
    return scene


def normalisation_for(scene: Scene, card_normalisation: dict[str, Any]) -> Normalisation:
    """Scene-global normalisation from a decimated read; refuses all-nodata scenes."""
    sample = read_sample(scene)
    valid = valid_mask(sample, scene.nodata)
    if not valid.any():
        raise InputError(
            f"{scene.path}: every pixel is nodata (nodata={scene.nodata}); nothing to super-resolve. "
            "Check the nodata value (gdalinfo) or pass --nodata to override it"
        )
    return scene_normalisation(
        sample, valid, dtype=scene.dtype, source=scene.path, **normalisation_from_card(card_normalisation)
    )


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
        ``batch_size``, ``device``, ``precision``, ``compile``, ``overwrite``, ``nodata``,
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
    dst = Path(dst) if dst is not None else default_output(src, opts.scale)
    if not is_zarr_path(src) and dst.resolve() == Path(src).resolve():
        raise OptionError(f"{dst}: the output would overwrite the input; choose another -o path")
    try:
        net = load_model(opts.model, bands=scene.count, scale=opts.scale)
        predictor = Predictor(net, device=opts.device, precision=opts.precision, compile=opts.compile)
    except GeosrError as exc:
        raise _in_context(src, exc) from None
    norm = normalisation_for(scene, dict(net.card.normalisation))
    plan = plan_tiles(
        *scene.grid.shape.yx, tile=opts.tile or DEFAULT_TILE, halo=net.receptive_field + FILL_RADIUS
    )
    batch = opts.batch_size or predictor.batch_size_for(plan.read_shape, scene.count)
    job = Job(scene=scene, halo=plan.halo, scale=opts.scale, norm=norm, nodata=scene.nodata, batch_size=batch)
    predictor.expect(-(-len(plan) // batch))
    spec = OutputSpec(
        grid=scaled(scene.grid, opts.scale),
        count=scene.count,
        dtype=scene.dtype,
        nodata=scene.nodata,
        descriptions=scene.descriptions,
        colorinterp=scene.colorinterp,
        tags=provenance_tags(scene, net.name, opts.scale, norm),
        band_tags=scene.band_tags,
    )
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(plan))

    return _run(job, plan, predictor, dst, spec, opts, advance)


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

        key = ModelKey(opts.model, spec.count, opts.scale, opts.device, opts.precision, opts.compile)
        with cluster_client(opts.scheduler, opts.workers) as client:
            return run_on_cluster(
                job, plan, key, dst, spec, client, overwrite=opts.overwrite, on_tiles_done=advance
            )
    with open_sink(dst, spec, overwrite=opts.overwrite) as sink:
        run_tiles(job, plan, predictor, sink, on_tiles_done=advance)
    return dst
