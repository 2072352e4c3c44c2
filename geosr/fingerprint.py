"""What a run's output depends on, which ``--resume`` checks before it trusts a kept tile.

A job's fingerprint holds every setting that changes a pixel, and stamps of the
files it reads (the input, its frames, the AOI): a resumed run whose
fingerprint differs is refused, naming what changed (:mod:`geosr.io.runstate`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geosr import __version__
from geosr.errors import InputError
from geosr.grid import parse_crs
from geosr.io.names import os_name, utf8_name
from geosr.io.remote import local_archive, local_stamp, unsigned
from geosr.io.scene import Scene
from geosr.io.sink import DEFAULT_COMPRESS, DEFAULT_ZARR_FORMAT
from geosr.kernel import needs_exact_projection
from geosr.normalise import Normalisation
from geosr.options import RunOptions
from geosr.tiling import TilePlan

if TYPE_CHECKING:  # geosr.api imports this module, and torch only once a model is loaded
    from geosr.predictor import Predictor


def job_fingerprint(
    scene: Scene,
    model_name: str,
    predictor: Predictor,
    plan: TilePlan,
    opts: RunOptions,
    norm: Normalisation,
    dst: Path,
    frames: tuple[Scene, ...] = (),
) -> dict[str, Any]:
    """Everything the output's pixels depend on: a resumed run must match it exactly.

    Not included: batch size, workers and scheduler, which change how the work
    is spread, never its result (see the determinism tests).
    """
    # Taken as the scene was opened: a file renamed into place since then (a download or an
    # export finishing) was stamped here, read by the tiles, and passed check_unchanged.
    size, mtime = scene.stamp or file_stamp(scene.path)
    return {
        "geosr": __version__,
        "input": _where(scene.path),
        "input_bytes": size,
        "input_mtime_ns": mtime,
        "variable": scene.variable_name,
        "model": model_name,
        "weights": predictor.weights_digest(),
        "scale": opts.scale,
        "tile": [plan.tile_height, plan.tile_width],
        "halo": plan.halo,
        "device": predictor.torch_device.type,
        "precision": predictor.resolved_precision,
        "compile": opts.compile,
        "nodata": repr(scene.band_nodata or scene.nodata),
        # Only where there are any: the digests of other runs, which --resume compares, stay.
        **({"missing_values": repr(scene.missing_values)} if scene.missing_values else {}),
        # Redone in float64 where float32 does not hold the pixels (kernel.project_exactly): an
        # unfinished run of such a scene begun before would resume into tiles ~1 DN apart.  Only
        # there: the digests of other runs, whose pixels did not change, stay.
        **({"projection": "float64"} if _projects_exactly(predictor, scene) else {}),
        "normalisation": [norm.method, [repr(v) for v in norm.offset], [repr(v) for v in norm.scale]],
        "output": dst.suffix.lower(),
        # v2 only: the digests of other runs (v3, the default), which --resume compares, stay,
        # and a run resumed in the other format is refused rather than mixing the two.
        **({"zarr_format": opts.zarr_format} if opts.zarr_format not in (None, DEFAULT_ZARR_FORMAT) else {}),
        # Likewise: a Zarr output's chunks keep the codec they were written with, and a complete
        # output of another compression is not the one asked for.
        **({"compress": opts.compress} if opts.compress != DEFAULT_COMPRESS else {}),
        "bands": opts.bands,
        "offset": repr(opts.offset),
        **area_of_interest(opts),
        # Resolved as the input is: a frame named ./d2.tif in one run and by its absolute
        # path in the --resume made the same job "the output of a different job".
        "frames": [[_where(f.path), *(f.stamp or file_stamp(f.path))] for f in frames],
        **files_read_with(scene),
    }


def _projects_exactly(predictor: Predictor, scene: Scene) -> bool:
    """Whether the model's projection of ``scene`` is redone in float64 (:func:`geosr.kernel.finish_tile`)."""
    return bool(predictor.model.projects) and needs_exact_projection(scene.dtype)


def files_read_with(scene: Scene) -> dict[str, Any]:
    """The fingerprint's ``input_files``: the other files GDAL reads for the input (a VRT's
    sources, an external ``.msk`` mask, an ``.aux.xml``), each where it is and its stamp.

    A VRT's source rewritten, or its mask edited, between an interrupted run and its
    ``--resume`` left the input's own stamp as it was, and the output mixed the tiles
    of both versions.  Only where there are any (the digests of other runs stay), and
    not for a subdataset or a STAC stack, whose VRT is new in every run.
    """
    from geosr.run_outputs import read_files

    if scene.subdataset:
        return {}
    own = _where(scene.path)
    others = [path for path in read_files(scene) if _where(path) != own]
    return {"input_files": [[_where(path), *file_stamp(path)] for path in others]} if others else {}


def area_of_interest(opts: RunOptions) -> dict[str, Any]:
    """The fingerprint's ``aoi`` (the file where it is, however it was named, and its content)
    and ``bbox`` (its numbers, however they were written): a run resumed with ``--aoi
    ./field.geojson`` for ``/abs/field.geojson``, or ``--bbox 12.5550,...`` for ``12.555,...``
    (or ``--bbox-crs epsg:4326`` for ``EPSG:4326``), was refused as 'a different job'."""
    return {
        "aoi": [_where(opts.aoi), _content_digest(opts.aoi)] if opts.aoi else None,
        # The box and its CRS were checked when the scene was cropped: four numbers and a CRS.
        "bbox": [[float(v) for v in opts.bbox.split(",")], str(parse_crs(opts.bbox_crs))]
        if opts.bbox
        else None,
    }


FIELD_NAMES = {
    "geosr": "the geosr version",
    "input": "the input's path",
    "input_bytes": "the input's size (the file was changed)",
    "input_mtime_ns": "the input's modification time (the file was changed or replaced)",
    "variable": "--variable",
    "model": "--model",
    "weights": "the model's weights",
    "scale": "--scale",
    "tile": "the tile size (--tile)",
    "device": "--device",
    "precision": "--precision",
    "compile": "--compile",
    "nodata": "--nodata",
    "missing_values": "--nodata (or the variable's missing_value)",
    "projection": "the radiometric projection (exact in float64 for 32-bit integer and float64 scenes)",
    "output": "the output format",
    "zarr_format": "--zarr-format",
    "compress": "--compress",
    "bands": "--bands",
    "offset": "--offset",
    "aoi": "--aoi (its file, or the area in it)",
    "bbox": "--bbox",
    "frames": "--frame (which files, or a file changed)",
    "input_files": "a file read with the input (a VRT's source, its mask or .aux.xml was changed)",
}
"""How a refused resume names what differs: the options as typed, or what changed in words
(not 'input_mtime_ns'), and the option that sets each (it said 'differs in tile' beside
'differs in --compress')."""


def describe_fields(keys: list[str]) -> str:
    """``keys`` of a fingerprint as :data:`FIELD_NAMES` names them, comma-separated."""
    return ", ".join(FIELD_NAMES.get(key, key) for key in keys)


def _where(path: str) -> str:
    """A local file's absolute path (however it was named), else ``path`` as given (a URL),
    less its signature: a --resume with the URL signed again is the same job.  A local path
    is spelt as GDAL and JSON spell it (:func:`~geosr.io.names.utf8_name`): a run of scène.tif
    started in an ASCII locale, which holds the name with surrogates, and resumed in a UTF-8
    one was 'a different job (... it differs in the input's path)'."""
    source = Path(os_name(path))
    return utf8_name(source.resolve()) if source.exists() else unsigned(path)


def file_stamp(path: str) -> tuple[int | None, int | str | None]:
    """What tells one version of ``path`` from another: a local file's size and mtime (ns);
    an http(s) URL's Content-Length and ETag (or Last-Modified), from a HEAD request;
    ``(None, None)`` where neither can be had (object stores without credentials here)."""
    folder = local_archive(path) or Path(path)
    with contextlib.suppress(OSError):
        if folder.is_dir():
            return _tree_stamp(folder)
    stamp = local_stamp(path)  # an archive member: its archive's
    if stamp is not None:
        return stamp
    url = path.removeprefix("/vsicurl/")
    if not url.startswith(("http://", "https://")):
        return None, None
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10) as response:
            length = response.headers.get("Content-Length")
            version = response.headers.get("ETag") or response.headers.get("Last-Modified")
    except (OSError, ValueError):
        return None, None
    return (int(length) if length and length.isdigit() else None), version


def _tree_stamp(folder: Path) -> tuple[int, int]:
    """A folder's stamp (a Zarr store, or a group of one): the bytes of its files and the
    latest modification time of anything in it.

    The folder's own size and mtime, stamped before, change only when an entry of its top
    level does: a chunk rewritten in place (zarr's usual update) between an interrupted run
    and its ``--resume``, or during the run, left them as they were, and the output mixed
    the tiles of both versions.

    Raises
    ------
    OSError
        The folder cannot be listed.
    """
    size, latest = 0, folder.stat().st_mtime_ns
    for root, dirs, files in os.walk(folder):
        for names, counted in ((dirs, False), (files, True)):
            for name in names:
                try:
                    stat = Path(root, name).lstat()
                except FileNotFoundError:  # removed as it was listed: its folder's mtime says so
                    continue
                latest = max(latest, stat.st_mtime_ns)
                size += stat.st_size if counted else 0
    return size, latest


def check_unchanged(fingerprint: dict[str, Any], scene: Scene, frames: tuple[Scene, ...] = ()) -> None:
    """Refuse (:class:`InputError`) a run whose input or frames were written to while it read them.

    A file rewritten in place during the run (a copy or download not yet finished,
    ``rsync --inplace``, another program's export) gave an output whose first tiles came
    from one version and the rest from the other, with exit status 0. Compared by the
    stamps taken when the run started; a file that is gone cannot be compared (what was
    opened is still read whole) and passes.
    """
    stamped = [(scene.path, fingerprint["input_bytes"], fingerprint["input_mtime_ns"])]
    for frame, (_, size, mtime) in zip(frames, fingerprint["frames"], strict=True):
        stamped.append((frame.path, size, mtime))
    for path, size, mtime in stamped:
        if size is None or not _is_local_file(path):
            continue  # a remote file: a HEAD request per run is enough
        now = file_stamp(path)
        if now not in ((None, None), (size, mtime)):
            raise InputError(
                f"{path}: the file changed while it was read (another program wrote to it during the "
                "run), so its output would mix both versions; nothing was written: run again once it "
                "is no longer being written"
            )


def _is_local_file(path: str) -> bool:
    """Whether ``path`` is stamped by ``stat`` (a local file or archive), not by a request."""
    return local_archive(path) is not None or Path(path).exists()


def _content_digest(path: str) -> str | None:
    """A digest of a small file's bytes (an AOI's geometry may change under the same mtime)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
    except OSError:
        return None
