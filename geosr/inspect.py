"""``geosr info``: what a scene is and what a run on it would do, before running it."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geosr import resources
from geosr.api import fit_to_memory, scene_for
from geosr.grid import describe, scaled
from geosr.io.atomic import format_bytes
from geosr.io.bands import check_band_layout
from geosr.io.cog import is_bigtiff
from geosr.io.scene import Scene, read_sample, read_window
from geosr.kernel import prepare_tiles
from geosr.models import load_model
from geosr.normalise import FILL_RADIUS, Normalisation, valid_mask
from geosr.options import RunOptions
from geosr.predictor import Predictor
from geosr.tiling import TilePlan, plan_tiles


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
    seconds_per_batch: float | None
    memory_bytes: int | None = None
    disk_bytes: int | None = None
    process_bytes: int | None = None
    """What this process held (resident) before the run's memory: Python, torch, GDAL, the model."""
    valid_fraction: float | None = None
    """Share of the scene's pixels valid in some band, from the strided sample (calibrated plans)."""

    @property
    def estimated_seconds(self) -> float | None:
        if self.seconds_per_batch is None:
            return None
        return self.seconds_per_batch * -(-len(self.plan) // self.batch_size)

    def lines(self) -> list[tuple[str, str]]:
        s = self.scene
        out_grid = scaled(s.grid, self.options.scale)
        rows = [
            ("input", str(s.path)),
            ("grid", describe(s.grid)),
            (
                "bands",
                f"{s.count} x {s.dtype}: "
                # The file's band numbers, which --bands takes: a selection or an alpha band
                # makes them other than 1..count.
                + ", ".join(
                    d or f"band {i}"
                    for i, d in zip(
                        s.bands or range(1, s.count + 1), s.descriptions or (None,) * s.count, strict=True
                    )
                ),
            ),
            ("nodata", _nodata_text(s)),
        ]
        if s.masked:
            rows.append(
                ("mask", f"the file's mask hides pixels; the output marks them nodata {s.output_nodata:g}")
            )
        if self.valid_fraction is not None:
            rows.append(("valid pixels", _valid_text(self.valid_fraction, aoi=s.file_shape is not None)))
        if s.file_shape is not None:
            h, w = s.grid.shape.yx
            fh, fw = s.file_shape
            rows.append(
                (
                    "area of interest",
                    f"cols {s.origin[1]}-{s.origin[1] + w}, rows {s.origin[0]}-{s.origin[0] + h} "
                    f"of the {fw} x {fh} px file",
                )
            )
        rows += [
            ("output grid", describe(out_grid)),
            (
                "output size",
                (
                    f"{self.output_bytes / 2**30:.2f} GiB uncompressed"
                    if self.output_bytes >= 2**30
                    else f"{self.output_bytes / 2**20:.1f} MiB uncompressed"
                )
                + (" (BigTIFF)" if is_bigtiff(self.output_bytes) else ""),
            ),
            ("model", f"{self.model} x{self.options.scale}"),
            (
                "tiles",
                f"{len(self.plan)} of {self.plan.tile_width} x {self.plan.tile_height} px, "  # w x h, as grid
                f"halo {self.plan.halo} px",
            ),
            (
                "batch",
                f"{self.batch_size} tile{'' if self.batch_size == 1 else 's'} on {self.device}, "
                f"{self.precision}",
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
                    f"disk about {format_bytes(self.disk_bytes)} for a COG",
                )
            )
        if self.estimated_seconds is not None:
            rows.append(
                (
                    "estimated time",
                    f"{self.estimated_seconds:.0f} s (one batch measured: {self.seconds_per_batch:.2f} s)",
                )
            )
        return rows


def _valid_text(fraction: float, *, aoi: bool) -> str:
    """The valid share of the pixels, and what a run does when there are none."""
    if fraction > 0:
        return f"{100 * fraction:.3g} % (a strided sample)"
    if aoi:
        return "none in the area of interest: its output would be all nodata"
    return "none: geosr run refuses this scene; check the nodata value and mask (gdalinfo), or pass --nodata"


def _nodata_text(scene: Scene) -> str:
    """``none``, the value, or per band: ``1 (band 1), 2 (band 2); the output uses 1``."""
    if scene.band_nodata:
        each = ", ".join(
            f"{'none' if v is None else f'{v:g}'} (band {i})" for i, v in enumerate(scene.band_nodata, 1)
        )
        return f"{each}; the output marks them all {scene.output_nodata:g}"
    return "none" if scene.nodata is None else f"{scene.nodata:g}"


def plan_run(src: str | Path, options: RunOptions, *, calibrate: bool = True) -> RunPlan:
    """Open ``src``, plan the run ``options`` describe, and time one batch of it."""
    scene = scene_for(src, options)
    net = load_model(options.model, bands=scene.count, scale=options.scale)
    check_band_layout(scene.path, scene.descriptions, net.card.bands, net.name)  # what the run would refuse
    predictor = Predictor(net, device=options.device, precision=options.precision)
    halo = net.receptive_field + FILL_RADIUS
    tile, batch, bounds = fit_to_memory(scene, net, predictor, options, halo=halo)
    plan = plan_tiles(*scene.grid.shape.yx, tile=tile, halo=halo)
    h, w = scene.grid.shape.yx
    out_bytes = resources.output_bytes(h, w, scene.count, options.scale, scene.dtype)
    held = resources.resident_bytes()  # before the calibration batch grows it
    seconds = valid = None
    if calibrate:
        sample = read_sample(scene)
        valid = float(valid_mask(sample, scene.nodata).any(axis=0).mean()) if sample.size else 0.0
        tiles = plan.tiles[: min(batch, len(plan))]
        raw = np.stack([read_window(scene, t.read) for t in tiles])
        # Timing only: any fixed normalisation costs the same as the real one.
        finite = raw[np.isfinite(raw)]  # the first tiles may be all NaN: no numpy warning for the user
        span = max(1.0, float(finite.max())) if finite.size else 1.0
        identity = Normalisation((0.0,) * scene.count, (span,) * scene.count, "calibration")
        x, _ = prepare_tiles(raw, scene.nodata, identity)
        predictor(x[:1])  # warm-up: first calls pay for oneDNN kernel selection
        start = time.perf_counter()
        predictor(x)
        seconds = (time.perf_counter() - start) * batch / len(tiles)
    return RunPlan(
        scene,
        options,
        net.name,
        plan,
        batch,
        predictor.torch_device.type,
        predictor.resolved_precision,
        out_bytes,
        seconds,
        resources.memory_needed(bounds),
        resources.disk_needed(out_bytes, cog=True),
        held,
        valid,
    )
