"""The held-out validation split of the recipes, as files that ``geosr evaluate`` reads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geosr.evaluation.wald import EvalReport
from geosr.train.config import SceneSource, TrainConfig, expand_path

# Short names of the held-out files (their stems, as validation_files gives them), for tables.
NAMES = {
    "m_4709963_se_14_1_20190904": "NAIP 2019",
    "LC81070352015122LGN00_B4": "Landsat-8 B4",
    "OSBS_029_rows0-1_cols0-1_nodatanan": "NEON OSBS_029",
    "tgt_S2A_20160529T153631_T33UUU_sub_rows0.5-1_cols0-1_nodata0": "Sentinel-2 lower half",
}


def short_name(stem: str) -> str:
    """The table name of a held-out file's ``stem`` (the stem itself for a file not in :data:`NAMES`)."""
    return NAMES.get(stem, stem)


def validation_files(config: TrainConfig, workdir: Path) -> list[Path]:
    """The recipe's validation scenes as files ``geosr evaluate`` can read.

    A source restricted to some rows (the lower half of the Sentinel-2 scene) is
    cut out into a GeoTIFF with its georeferencing and nodata.
    """
    files: list[Path] = []
    for source in config.data.val:
        path = Path(expand_path(source.path))
        files.append(path if is_whole(source) else _cut(path, source, workdir))
    return files


def is_whole(source: SceneSource) -> bool:
    """Whether ``source`` is its file as it is (no rows, columns or nodata of its own)."""
    return source.rows == (0.0, 1.0) and source.cols == (0.0, 1.0) and source.nodata is None


def validation_stem(source: SceneSource) -> str:
    """The stem of the file :func:`validation_files` gives for ``source``.

    A cut-out is named by all that makes it: two sources of one file (the left and
    right halves, or its nodata overridden) took the first one's cut-out, as its
    name said only the rows.
    """
    stem = Path(expand_path(source.path)).stem
    if is_whole(source):
        return stem
    nodata = "" if source.nodata is None else f"_nodata{source.nodata:g}"
    return (
        f"{stem}_rows{source.rows[0]:g}-{source.rows[1]:g}_cols{source.cols[0]:g}-{source.cols[1]:g}{nodata}"
    )


def _cut(path: Path, source: SceneSource, workdir: Path) -> Path:
    out = workdir / f"{validation_stem(source)}.tif"
    if out.exists():
        return out
    with rasterio.open(path) as src:
        r0, r1 = (round(f * src.height) for f in source.rows)
        c0, c1 = (round(f * src.width) for f in source.cols)
        window = Window(c0, r0, c1 - c0, r1 - r0)
        data = src.read(window=window)
        profile = {
            "driver": "GTiff",
            "height": data.shape[1],
            "width": data.shape[2],
            "count": data.shape[0],
            "dtype": data.dtype.name,
            "crs": src.crs,
            "transform": src.window_transform(window),
            "nodata": _nodata(source, src.nodata),
            "tiled": True,
            "compress": "deflate",
        }
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(data)
    return out


def _nodata(source: SceneSource, declared: float | None) -> float | None:
    """The cut-out's nodata: the recipe's override, where ``nan`` means "none"
    (NEON's declared 255 is saturation), else the file's own."""
    if source.nodata is None:
        return declared
    return None if np.isnan(source.nodata) else source.nodata


def image_gains(report: EvalReport) -> dict[str, float]:
    """Mean gain over bicubic of each image's bands, by file stem."""
    return {Path(im.path).stem: float(np.mean([b.gain_db for b in im.bands])) for im in report.images}
