"""``geosr evaluate``: the Wald protocol and paired evaluation, through the full pipeline.

Wald protocol (HR rasters only):

1. the HR raster is cropped at its bottom and right edges to a multiple of
   ``s`` (at most ``s - 1`` rows/columns are dropped) so that every LR pixel
   has a whole ``s x s`` block;
2. LR = the exact mean over each block (float32; a block with any nodata HR
   pixel is nodata, NaN), written as a GeoTIFF on the HR grid zoomed out by
   ``s`` (odc-geo ``GeoBox.zoom_out``: same origin, ``s`` times the pixel);
3. SR = :func:`geosr.api.upscale_file` on that GeoTIFF, i.e. exactly what
   ``geosr run`` does (tiling, normalisation, model, writing), and the bicubic
   baseline is the same pipeline with ``model="bicubic"``;
4. metrics per image and band (:mod:`geosr.evaluation.metrics`) against the
   cropped HR, a ``border`` (16 HR px by default) excluded.

Paired mode (``--lr/--hr``): the HR is co-registered onto the LR grid x ``s``
(:func:`geosr.train.coreg.coregister`: reprojection, residual shift,
histogram matching) and the SR of the real LR file is compared with it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from odc.geo.geobox import GeoBox

from geosr.errors import (
    GeosrError,
    GeosrWarning,
    InputError,
    OptionError,
    OutputError,
    filter_added,
    python_api,
    warn_again,
    warnings_recorded,
    worded,
)
from geosr.evaluation.metrics import BandMetrics, band_metrics, check_border_count, check_scorable
from geosr.grid import cropped, zoomed_out
from geosr.interrupts import output_stamp
from geosr.io.atomic import lock_held, refuse_overlong_name, unwritable_folder
from geosr.io.bands import OFFSET_TAG, reflectance_offset, select_bands
from geosr.io.names import open_raster, utf8_name
from geosr.io.remote import file_url_path, forget_remote_files, remote_waits_bounded_in
from geosr.io.runstate import run_dir
from geosr.io.scene import Scene, datasets_closed, open_scene, read_window, with_nodata
from geosr.models.registry import DEFAULT_MODEL
from geosr.normalise import UNITS_DTYPE_TAG, valid_mask
from geosr.options import OPTION_DEFAULTS, check_run_options, check_scale
from geosr.run_inputs import UNDECLARED_ZEROS_REMEDY, reference_sample, warn_undeclared_zeros
from geosr.tiling import Window


@dataclass(frozen=True)
class ImageResult:
    """Metrics of one image, one entry per band."""

    path: str
    bands: list[BandMetrics]
    shift: tuple[float, float] | None = None
    pair: tuple[str, str] | None = None
    """The LR and HR files of a pair (``path`` reads ``"LR vs HR"``, which a path holding
    " vs " makes ambiguous); None in the Wald protocol."""

    @property
    def gain_db(self) -> float:
        """Mean gain over the scored bands (NaN when none is)."""
        gains = [b.gain_db for b in self.bands if b.scored]
        return float(np.mean(gains)) if gains else float("nan")


FEW_SCORED = 0.5
"""A scored band whose PSNR compared less of the image than this gets a note saying how much."""


@dataclass(frozen=True)
class EvalReport:
    """Everything ``geosr evaluate`` prints, as a value."""

    mode: str
    scale: int
    model: str
    border: int
    images: list[ImageResult] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Means over the scored image bands, the worst gain, and how many were left out.

        A band whose PSNR/SSIM is not a finite number (a constant reference, an
        exact match; its ``note`` says which) would make every mean infinite or
        NaN: it is left out, and ``excluded_image_bands`` counts it.  With no
        scored band the means are NaN and ``note`` says why.
        """
        rows = [b for im in self.images for b in im.bands]
        if not rows:
            return {}
        scored = [b for b in rows if b.scored]

        def mean(values: list[float]) -> float:
            return float(np.mean(values)) if values else float("nan")

        out: dict[str, Any] = {
            "psnr": mean([b.psnr for b in scored]),
            "ssim": mean([b.ssim for b in scored]),
            "psnr_bicubic": mean([b.psnr_bicubic for b in scored]),
            "ssim_bicubic": mean([b.ssim_bicubic for b in scored]),
            "gain_db": mean([b.gain_db for b in scored]),
            "min_gain_db": float(np.min([b.gain_db for b in scored])) if scored else float("nan"),
            "lr_consistency": mean([b.lr_consistency for b in scored]),
            "image_bands": len(rows),
            "excluded_image_bands": len(rows) - len(scored),
        }
        if len(scored) < len(rows):
            out["note"] = (
                f"{len(rows) - len(scored)} of {len(rows)} image bands left out of the means: "
                "their PSNR or SSIM is not a finite number (see each band's note)"
                + ("" if scored else "; no band is left to average, so the means are null")
            )
        return out

    def band_note(self, b: BandMetrics) -> str:
        """What the report says of band ``b``: why a metric is not a finite number (its
        ``note``), or what share of the image a scored band's figures describe, when it is under
        :data:`FEW_SCORED`: nothing said that nodata, the HR's footprint or the border had left
        most of it out.  In the table's notes and in the JSON alike (the JSON's was empty)."""
        if b.note or not b.scored or b.scored_fraction >= FEW_SCORED:
            return b.note
        return (
            f"only {100 * b.scored_fraction:.3g}% of its HR pixels were scored (the others are nodata, "
            f"beyond the HR's footprint or within the {self.border} px border): its figures describe "
            "that part alone"
        )

    def to_dict(self) -> dict[str, Any]:
        """The report as strict JSON values: a metric that is not a finite number is None,
        and the band's (or the summary's) ``note`` says why."""
        return _finite_or_none(
            {
                "mode": self.mode,
                "scale": self.scale,
                "model": self.model,
                "border": self.border,
                "psnr_range": "99.9th - 0.1st percentile of valid HR pixels, per band",
                "summary": self.summary(),
                # A path as JSON spells it: in an ASCII locale 'scène.tif' was the surrogates
                # Python holds it with, "sc\udcc3\udca8ne.tif", which no strict parser takes.
                "images": [
                    {
                        "path": utf8_name(im.path),
                        "shift": im.shift,
                        "bands": [{**asdict(b), "note": self.band_note(b)} for b in im.bands],
                    }
                    for im in self.images
                ],
            }
        )


def _finite_or_none(value: Any) -> Any:
    """``value`` with every infinite or NaN float replaced by None, recursively.

    JSON has no infinity or NaN: Python's ``Infinity`` tokens are rejected by
    strict parsers (browsers, jq, most languages' standard libraries).
    """
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v) for v in value]
    return value


Upscaler = Callable[..., Path | str]


def _default_upscaler() -> Upscaler:
    from geosr.api import upscale_file

    return upscale_file


def _open(path: str | Path, variable: str | None = None, bands: str | None = None) -> Scene:
    """The HR raster, only its ``bands`` (``--bands``, as ``geosr run`` takes them) when given."""
    scene = open_scene(path, variable=variable, bands=bands)
    return select_bands(scene, bands) if bands is not None else scene


def _read(
    path: str | Path, nodata: float | None = None, variable: str | None = None, bands: str | None = None
) -> tuple[np.ndarray, np.ndarray, Scene]:
    """The HR raster as ``geosr run`` reads it: its data bands (or ``bands``), and invalid
    where it is nodata, NaN or hidden by its mask (an internal mask or an alpha band)."""
    scene = with_nodata(_open(path, variable, bands), nodata)
    height, width = scene.grid.shape.yx
    data = read_window(scene, Window(0, 0, height, width))
    valid = valid_mask(data, scene.nodata)
    return data, valid, scene


def _check_nodata_fits(
    paths: Sequence[str | Path], nodata: float | None, variable: str | None, bands: str | None = None
) -> None:
    """Refuse a ``--nodata`` that an HR raster's dtype cannot hold, naming it, as ``geosr run`` does.

    ``--nodata nan`` on a uint16 raster was accepted: no pixel can be NaN there, so the
    pixels the user meant to leave out were scored as data.  Checked for every raster
    before the first is evaluated.
    """
    if nodata is None:
        return
    from geosr.io.sink import check_nodata_of

    for path in paths:
        check_nodata_of(path, nodata, _open(path, variable, bands).dtype)


def _check_sizes(
    paths: Sequence[str | Path], scale: int, border: int, variable: str | None, bands: str | None
) -> None:
    """Refuse, naming it, an HR raster smaller than one ``scale x scale`` block or than twice
    the ``border``, before the first raster is evaluated.

    The first failed as "a 3 x 40 raster is smaller than one 4 x 4 block", naming no file,
    and either only once the rasters before it had been evaluated.
    """
    for path in paths:
        h, w = _open(path, variable, bands).grid.shape.yx
        if h < scale or w < scale:
            raise InputError(
                f"{path}: its {w} x {h} px hold no {scale} x {scale} block to average into a Wald "
                "LR pixel; give a larger raster or a smaller --scale"
            )
        check_scorable((h - h % scale, w - w % scale), border, str(path))


def _check_pairs(pairs: Sequence[tuple[str | Path, str | Path]], scale: int, border: int) -> None:
    """Refuse, naming it, a pair that co-registration would refuse (:func:`check_pair`: band
    counts, pixel sizes, no overlap ...) or whose HR grid (the LR's x ``scale``) the ``border``
    leaves nothing of, before the first pair is evaluated: they failed only once the pairs
    before them had been."""
    from geosr.train.coreg import check_pair

    for lr_path, hr_path in pairs:
        check_pair(lr_path, hr_path, scale)
        lr = _open(lr_path)
        h, w = lr.grid.shape.yx
        check_scorable((h * scale, w * scale), border, str(hr_path))


def _check_options_known(options: dict[str, Any], caller: str) -> None:
    """Refuse, before any raster is read, options that :func:`geosr.upscale_file` does not
    take: the first image's run refused them, after its HR was read and its LR written, in a
    line that named upscale_file, which the caller of ``caller`` never called.

    Raises
    ------
    OptionError
        An option is no :class:`~geosr.options.RunOptions` field.
    """
    from geosr.api import unknown_options

    unknown = sorted(set(options) - set(OPTION_DEFAULTS))
    if unknown:
        raise OptionError(unknown_options(unknown, caller))


def _check_pairs_given(pairs: object) -> None:
    """Refuse ``pairs`` that are no sequence of ``(lr, hr)`` paths: a pair given alone,
    ``("lr.tif", "hr.tif")``, or a list of paths was a bare ValueError 'too many values to
    unpack', each path's letters taken for a pair.

    Raises
    ------
    InputError
        ``pairs`` is a path, or one of its items is not two paths.
    """
    items = [pairs] if isinstance(pairs, (str, os.PathLike)) else pairs
    for item in items:  # type: ignore[attr-defined]
        is_pair = isinstance(item, (tuple, list)) and len(item) == 2
        if not is_pair or not all(isinstance(path, (str, os.PathLike)) for path in item):
            raise InputError(
                f"evaluate_paired takes a list of (lr, hr) pairs of paths, not {item!r} among them; "
                "e.g. [('lr.tif', 'hr.tif')]"
            )


def wald_lr(hr: np.ndarray, valid: np.ndarray, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Crop ``(C, H, W)`` to a multiple of ``scale`` and block-average it.

    Returns
    -------
    hr_cropped, valid_cropped : numpy.ndarray
        ``hr`` (its dtype) and ``valid`` cropped to ``(C, H - H % scale, W - W % scale)``.
    lr : numpy.ndarray, float32
        The block means, NaN where a block holds any invalid HR pixel.

    Raises
    ------
    InputError
        The raster is smaller than one ``scale`` x ``scale`` block.
    """
    c, h, w = hr.shape
    hc, wc = h - h % scale, w - w % scale
    if hc == 0 or wc == 0:
        raise InputError(f"a {w} x {h} px raster is smaller than one {scale} x {scale} block")
    hr_c = hr[:, :hc, :wc].astype(np.float64)
    ok = valid[:, :hc, :wc]
    blocks = np.where(ok, hr_c, 0.0).reshape(c, hc // scale, scale, wc // scale, scale)
    lr = blocks.mean(axis=(2, 4))
    all_ok = ok.reshape(c, hc // scale, scale, wc // scale, scale).all(axis=(2, 4))
    lr = np.where(all_ok, lr, np.nan).astype(np.float32)
    return hr[:, :hc, :wc], ok, lr


def _write_float(path: Path, data: np.ndarray, grid: GeoBox, scene: Scene) -> None:
    """The Wald LR as a float32 GeoTIFF, with what it keeps of the HR ``scene``: its bands'
    descriptions (without them, a model made for some bands in some order ran on a scene of
    other bands, or in another order, unchecked: ``geosr run`` refuses it by the descriptions),
    the dtype whose units its means are in and the bands' additive offsets (``BOA_ADD_OFFSET``),
    both of which a ``dtype-range`` model's normalisation takes (:data:`UNITS_DTYPE_TAG`)."""
    h, w = grid.shape.yx
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": h,
        "width": w,
        "dtype": "float32",
        "transform": grid.transform,
        "crs": grid.crs,
        "nodata": float("nan") if np.isnan(data).any() else None,
    }
    with open_raster(path, "w", **profile) as dst:
        dst.write(data.astype(np.float32))
        dst.update_tags(**{UNITS_DTYPE_TAG: scene.dtype})
        offsets = reflectance_offset(scene)
        for band in range(1, data.shape[0] + 1):
            if scene.descriptions and scene.descriptions[band - 1]:
                dst.set_band_description(band, scene.descriptions[band - 1])
            if offsets is not None:
                dst.update_tags(band, **{OFFSET_TAG: repr(offsets[band - 1])})


@dataclass(frozen=True)
class _Upscaling:
    """How an evaluation super-resolves each LR raster, by the model and by bicubic."""

    work: Path
    """The folder of the evaluation's GeoTIFFs."""
    upscaler: Upscaler
    """:func:`geosr.upscale_file`, or a test's stand-in."""
    scale: int
    model: str | None
    options: dict[str, Any]
    """The other keywords of each run (``device``, ``tile`` ...)."""

    def both(self, lr_path: str | Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
        """The SR and bicubic outputs of ``lr_path``, written in ``work`` as ``<stem>_sr.tif`` and
        ``<stem>_bicubic.tif`` and read as floats, NaN where they are nodata."""
        sr_path = self.upscaler(
            lr_path,
            self.work / f"{stem}_sr.tif",
            scale=self.scale,
            model=self.model,
            overwrite=True,
            **self.options,
        )
        bic_path = self.upscaler(
            lr_path,
            self.work / f"{stem}_bicubic.tif",
            scale=self.scale,
            model="bicubic",
            overwrite=True,
            **self.options,
        )
        return _read_output(sr_path), _read_output(bic_path)


def _read_output(path: str | Path) -> np.ndarray:
    """An SR or bicubic output as floats, NaN where it is nodata.

    The output of an integer LR (a paired ``--lr`` file) holds its nodata value, 0
    say, where the LR is nodata: it was scored as data against the HR there (a pair
    whose LR had a nodata patch read 12.9 dB for 30.2 dB).
    """
    data, valid, _ = _read(path)
    return np.where(valid, data.astype(np.result_type(data.dtype, np.float32)), np.nan)


@contextlib.contextmanager
def _warnings_about(lr_path: Path, path: str | Path) -> Iterator[None]:
    """Issue the runs' warnings about the Wald LR as warnings about the user's raster, once each.

    They named our temporary (``/tmp/geosr-eval-.../000_scene_lr.tif``), which the user
    cannot find, once for the model's run and again for the bicubic one.
    """
    with warnings_recorded() as caught:  # not catch_warnings: a run is long, the host has threads
        yield
    seen: set[str] = set()
    for warning in caught:
        text = str(warning.message).replace(str(lr_path), f"{path} (its Wald LR)")
        if text not in seen:
            seen.add(text)
            warn_again(warning, text)


def _check_some_lr(path: str | Path, valid: np.ndarray, lr: np.ndarray, scale: int) -> None:
    """Refuse an HR raster whose Wald LR would be all nodata, saying so about the HR.

    ``geosr run`` on that LR said "every pixel is nodata (nodata=nan)": the LR's
    nodata, not the one the user's file declares (0, say), which misled.
    """
    if np.isfinite(lr).any():
        return
    what = "every pixel is nodata" if not valid.any() else f"every {scale} x {scale} block has a nodata pixel"
    raise InputError(
        f"{path}: {what}, so its Wald LR would be all nodata; check the nodata value and mask "
        "(gdalinfo) or pass --nodata to override the value"
    )


def _image_metrics(
    path: str | Path,
    sr: np.ndarray,
    bic: np.ndarray,
    hr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    valid: np.ndarray,
    border: int,
    numbers: Sequence[int] = (),
    hr_valid: np.ndarray | None = None,
) -> list[BandMetrics]:
    """:func:`band_metrics` of every band; its errors (no valid pixel left ...) name the image,
    which they cannot: with several images, the user could not tell which one failed.

    ``numbers`` are the bands' 1-based numbers in the file (``--bands``), else 1, 2, ...
    """
    numbers = numbers or range(1, hr.shape[0] + 1)
    try:
        return [
            band_metrics(
                numbers[b],
                sr[b],
                bic[b],
                hr[b],
                lr[b],
                scale,
                valid=valid[b],
                border=border,
                hr_valid=None if hr_valid is None else hr_valid[b],
            )
            for b in range(hr.shape[0])
        ]
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None


@contextlib.contextmanager
def _whole_or_nothing(workdir: Path | None, names: Sequence[str]) -> Iterator[None]:
    """Within: an evaluation that fails or is interrupted removes what it wrote in ``workdir``.

    It said "nothing was written: run the same command again", and that command was
    refused: the LR/SR GeoTIFFs written before the Ctrl-C or SIGTERM were taken for an
    earlier evaluation's, and a geosr run's state was left hidden beside them. Files of
    ``names`` this evaluation did not write (an earlier one's, kept until replaced) stay.
    """
    if workdir is None:
        yield
        return
    before = {name: output_stamp(workdir / name) for name in names}
    try:
        yield
    except BaseException:
        for name in names:
            path = workdir / name
            shutil.rmtree(run_dir(path), ignore_errors=True)  # evaluate has no --resume
            if output_stamp(path) != before[name]:
                path.unlink(missing_ok=True)
        raise


def _workdir_of(workdir: str | Path | None) -> Path | None:
    """The folder that keeps an evaluation's GeoTIFFs, None for a temporary one.

    ``workdir=""`` (an unset variable's value) was taken for None: the GeoTIFFs the caller
    asked to keep were written in a temporary folder and removed, without a word, where
    ``geosr evaluate --workdir ''`` is refused.

    Raises
    ------
    OptionError
        ``workdir`` is empty or blank.
    """
    if workdir is None:
        return None
    if not str(workdir).strip():
        raise OptionError(
            f"--workdir {str(workdir)!r} is empty; give a folder, or leave it out for a temporary one"
        )
    # '~/wd' was made as a folder '~' in the working folder, where the rasters' '~' is the home one.
    return Path(file_url_path(workdir))


WORKDIR_LOCK = ".geosr-evaluate.lock"
"""The file in a ``--workdir`` that an evaluation holds (``flock``) while it writes there."""


@contextlib.contextmanager
def _workdir_held(
    workdir: Path | None, names: Sequence[str], overwrite: bool, inputs: Sequence[str | Path]
) -> Iterator[None]:
    """Within: this process alone writes ``workdir`` (made if missing), for the GeoTIFFs ``names``.

    Two evaluations with one --workdir at once wrote the same LR, and the one that failed on
    the other's run (its SR's run state locked) removed that run's files and state as its own:
    both failed, the first with 'No such file or directory; ... check that it is writable'.

    Raises
    ------
    OutputError
        ``workdir`` is not a directory, cannot be created or takes no new files, another
        evaluation writes there (the line names its pid), it already holds one of ``names``
        (an earlier evaluation's) and ``overwrite`` is false, or one of ``names`` there is one
        of the evaluation's ``inputs``.
    """
    if workdir is None:
        yield
        return
    refuse_overlong_name("--workdir", str(workdir))
    if workdir.exists() and not workdir.is_dir():
        raise OutputError(
            f"--workdir {workdir} is a file, not a directory; give a folder (it is created if missing)"
        )
    sources = {Path(path).resolve(): path for path in inputs}
    for name in names:
        # An earlier evaluation's GeoTIFFs taken as inputs ('work/*.tif' --workdir work
        # --overwrite): the first image's SR replaced the next input before it was read.
        source = sources.get((workdir / name).resolve())
        if source is not None:
            raise OutputError(
                f"--workdir {workdir}: its {name} would replace the input {source} before it is "
                "read; choose another --workdir"
            )
    # An existing folder on a read-only file system: the first LR GeoTIFF failed in a traceback.
    # Before mkdir, whose 'No such file or directory' under /proc said nothing of why.
    why = unwritable_folder(workdir)
    if why is not None:
        raise OutputError(f"cannot write in --workdir {workdir} ({why}); choose another folder")
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create --workdir {workdir} ({exc.strerror or exc}); choose another folder"
        ) from None
    with lock_held(
        workdir / WORKDIR_LOCK,
        lambda pid: (
            f"cannot write in --workdir {workdir}: another geosr evaluate (pid {pid}) "
            "is writing there right now; wait for it to finish, or choose another --workdir"
        ),
        lambda why: f"cannot write in --workdir {workdir} ({why}); choose another folder",
    ):
        # Held: an evaluation that ended meanwhile has left what it wrote.
        for name in names:
            if (workdir / name).exists() and not overwrite:
                raise OutputError(
                    f"{workdir / name} already exists (an earlier evaluation's); pass --overwrite "
                    "to replace it or choose another --workdir"
                )
        yield


@python_api(OPTION_DEFAULTS)
@remote_waits_bounded_in
def evaluate_wald(
    hr_paths: Sequence[str | Path],
    *,
    scale: int = 4,
    model: str | None = None,
    border: int = 16,
    workdir: str | Path | None = None,
    upscaler: Upscaler | None = None,
    nodata: float | None = None,
    variable: str | None = None,
    bands: str | None = None,
    overwrite: bool = False,
    **options: Any,
) -> EvalReport:
    """Wald-protocol evaluation of ``model`` on HR rasters: each is averaged down by ``scale``,
    super-resolved back (and by bicubic), and both are scored against it.

    Parameters
    ----------
    hr_paths : path or sequence of paths
        The HR rasters (GeoTIFF, any GDAL raster, a Zarr store); one path is one raster.
    scale : int, default 4
        Zoom factor per axis, 2..8: the Wald LR is the HR averaged over ``scale x scale`` blocks.
    model : str, optional
        Registry name or weights path, as for :func:`geosr.upscale_file`; default the bundled
        default (``cnnrnn-fast``).
    border : int, default 16
        HR pixels left out of the metrics at every edge, 0 or more.
    workdir : path, optional
        A folder that keeps the LR, SR and bicubic GeoTIFFs (made if missing); default a
        temporary folder, removed at the end.
    upscaler : callable, optional
        Replaces :func:`geosr.upscale_file` (tests).
    nodata : float, optional
        Overrides the HR rasters' nodata value.
    variable : str, optional
        The data variable of Zarr HR stores (or netCDF/HDF5 files of several).
    bands : str, optional
        Only these bands of each HR raster, by description or 1-based number, in that order
        (``geosr run --bands``); the report gives their numbers in the file.
    overwrite : bool, default False
        Let the GeoTIFFs replace those of an earlier evaluation in ``workdir``.
    **options
        Passed to :func:`geosr.upscale_file` (``device``, ``precision``, ``tile``,
        ``batch_size``, ...).

    Returns
    -------
    EvalReport
        PSNR, SSIM, gain over bicubic and LR consistency per image and band.

    Raises
    ------
    GeosrError
        Bad input or option, before any raster is upscaled where it can be told then.
    """
    hr_paths = _hr_paths_given(hr_paths)
    # GDAL keeps what it fetched of a URL for the process: a raster replaced at its URL since an
    # earlier call was scored as it was then.  upscale_file forgets after its run, as here before.
    forget_remote_files(map(str, hr_paths))
    # Before any raster is read: 0 and negative scales failed in the block average with a
    # ZeroDivisionError or ValueError traceback.
    check_scale(scale)
    check_border_count(border)
    kept = _workdir_of(workdir)
    _check_run_options(options, scale, model, upscaler, "evaluate_wald")
    _check_nodata_fits(hr_paths, nodata, variable, bands)
    _check_sizes(hr_paths, scale, border, variable, bands)
    up = upscaler or _default_upscaler()
    report = EvalReport("wald", scale, model or DEFAULT_MODEL, border)
    stems, names = _output_names(hr_paths, ("lr", "sr", "bicubic"))
    with _evaluation_folder(kept, names, overwrite, hr_paths) as work:
        runs = _Upscaling(work, up, scale, model, options)
        for path, stem in zip(hr_paths, stems, strict=True):
            report.images.append(_wald_image(path, stem, runs, border, nodata, variable, bands))
    return report


def _check_run_options(
    options: dict[str, Any], scale: int, model: str | None, upscaler: Upscaler | None, caller: str
) -> None:
    """Refuse, before any raster is read, the run options :func:`geosr.upscale_file` does not
    take or would refuse; not those of a test's ``upscaler``, which takes its own.

    Raises
    ------
    OptionError
        An option is unknown to :func:`geosr.upscale_file` (:func:`_check_options_known`, which
        names ``caller``), or a value it refuses.
    """
    if upscaler is None:
        _check_options_known(options, caller)
        check_run_options(scale, model, options)


def _output_names(paths: Sequence[str | Path], kinds: Sequence[str]) -> tuple[list[str], list[str]]:
    """The stem of each image's GeoTIFFs, numbered (two inputs of one name stay apart), and the
    names of all its GeoTIFFs, ``<stem>_<kind>.tif`` for each of ``kinds``."""
    stems = [f"{k:03d}_{Path(path).stem}" for k, path in enumerate(paths)]
    return stems, [f"{stem}_{kind}.tif" for stem in stems for kind in kinds]


@contextlib.contextmanager
def _evaluation_folder(
    kept: Path | None, names: Sequence[str], overwrite: bool, inputs: Sequence[str | Path]
) -> Iterator[Path]:
    """Within: the folder an evaluation writes its GeoTIFFs ``names`` in, ``kept`` (held,
    :func:`_workdir_held`; what a failed evaluation wrote there removed) or a temporary one.

    Raises
    ------
    OutputError
        As :func:`_workdir_held` raises it.
    """
    with (
        _workdir_held(kept, names, overwrite, inputs),
        tempfile.TemporaryDirectory(prefix="geosr-eval-") as tmp,
        # The outputs it scores were left open: a temporary folder's files, deleted, kept their space.
        datasets_closed(),
        _whole_or_nothing(kept, names),
    ):
        yield kept or Path(tmp)


def _hr_paths_given(hr_paths: Sequence[str | Path]) -> Sequence[str | Path]:
    """``hr_paths`` as a sequence of paths, one path given alone as one raster.

    Raises
    ------
    InputError
        No path given.
    """
    if isinstance(hr_paths, (str, os.PathLike)):
        # One raster: its name was evaluated letter by letter ('s: no such file or directory').
        hr_paths = [hr_paths]
    if not hr_paths:
        raise InputError("no HR raster to evaluate: give at least one file")
    return hr_paths


def _wald_image(
    path: str | Path,
    stem: str,
    runs: _Upscaling,
    border: int,
    nodata: float | None,
    variable: str | None,
    bands: str | None,
) -> ImageResult:
    """The Wald protocol on one HR raster: its LR written in the evaluation's folder as
    ``<stem>_lr.tif``, super-resolved by the model and by bicubic, both scored against the HR.

    Parameters
    ----------
    path : path
        The HR raster.
    stem : str
        The start of this image's GeoTIFFs' names.
    runs : _Upscaling
        How the LR is super-resolved, and where its GeoTIFFs go.
    border, nodata, variable, bands
        As :func:`evaluate_wald` takes them.

    Returns
    -------
    ImageResult
        The image's metrics per band.

    Raises
    ------
    GeosrError
        The raster cannot be evaluated, or a run failed (naming ``path``, not the LR).
    """
    lr_path = runs.work / f"{stem}_lr.tif"
    hr_c, ok, lr, scene = _write_wald_lr(path, lr_path, runs.scale, nodata, variable, bands)
    try:
        with _warnings_about(lr_path, path):
            sr, bic = runs.both(lr_path, stem)
    except GeosrError as exc:
        # The LR is a temporary of ours: name the user's raster instead.
        raise type(exc)(str(exc).replace(str(lr_path), f"{path} (its Wald LR)")) from None
    # LR nodata blocks are nodata in both outputs: compare where all are valid.
    both = ok & np.isfinite(sr) & np.isfinite(bic)
    metrics = _image_metrics(path, sr, bic, hr_c, lr, runs.scale, both, border, scene.bands, ok)
    return ImageResult(str(path), metrics)


def _write_wald_lr(
    path: str | Path,
    lr_path: Path,
    scale: int,
    nodata: float | None,
    variable: str | None,
    bands: str | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, Scene]:
    """Read the HR raster ``path`` and write its Wald LR (:func:`wald_lr`) as the GeoTIFF ``lr_path``.

    Returns
    -------
    hr, valid, lr : numpy.ndarray
        The HR cropped to a multiple of ``scale``, where it is valid, and the LR.
    scene : Scene
        The HR raster.

    Raises
    ------
    InputError
        The LR would be all nodata (:func:`_check_some_lr`).
    """
    hr, valid, scene = _read(path, nodata, variable, bands)
    if nodata is None:
        # As geosr run warns: the float32 Wald LR hid the HR's undeclared 0 fill from
        # the run's check, and it was scored as data without a word (25.9 dB for 30.6).
        warn_undeclared_zeros(scene, hr)
    hr_c, ok, lr = wald_lr(hr, valid, scale)
    _check_some_lr(path, valid, lr, scale)
    lr_grid = zoomed_out(cropped(scene.grid, slice(hr_c.shape[1]), slice(hr_c.shape[2])), scale)
    _write_float(lr_path, lr, lr_grid, scene)
    return hr_c, ok, lr, scene


PAIR_ZEROS_REMEDY = "declare it in the file (gdal_edit.py -a_nodata 0 FILE)"
"""How to declare a pair raster's 0 fill: ``geosr evaluate`` refuses ``--nodata`` with pairs."""


@contextlib.contextmanager
def _zeros_warned_for_pairs(lr_path: str | Path, hr_path: str | Path) -> Iterator[None]:
    """Within: a pair raster's undeclared 0 fill is warned about as a pair's, once.

    The LR's warning, from the run, said "pass --nodata 0", which pairs are refused; the
    HR's fill, with no run to warn, was reprojected, histogram-matched and scored as data
    without a word.
    """
    for path, use in ((lr_path, "super-resolved"), (hr_path, "scored")):
        scene = open_scene(path)
        warn_undeclared_zeros(scene, reference_sample(scene), remedy=PAIR_ZEROS_REMEDY, use=use)
    # The remedy as the run words it: "pass nodata=0" under the Python API.
    with filter_added("ignore", f".*{re.escape(worded(UNDECLARED_ZEROS_REMEDY))}", GeosrWarning):
        yield


@python_api(OPTION_DEFAULTS)
@remote_waits_bounded_in
def evaluate_paired(
    pairs: Sequence[tuple[str | Path, str | Path]],
    *,
    scale: int = 4,
    model: str | None = None,
    border: int = 16,
    workdir: str | Path | None = None,
    upscaler: Upscaler | None = None,
    overwrite: bool = False,
    **options: Any,
) -> EvalReport:
    """Evaluate on real ``(lr, hr)`` pairs, the HR co-registered onto the LR grid x ``scale``.

    Parameters
    ----------
    pairs : sequence of (path, path)
        The LR and HR rasters of each pair: ``[("lr.tif", "hr.tif")]``.
    scale : int, default 4
        Zoom factor per axis, 2..8: the HR's pixel is about the LR's / ``scale``.
    model, border, upscaler, overwrite, **options
        As for :func:`evaluate_wald` (``border`` default 16; ``workdir`` keeps the SR and
        bicubic GeoTIFFs).
    workdir : path, optional
        As for :func:`evaluate_wald`.

    Returns
    -------
    EvalReport
        Per pair, the metrics and the residual shift co-registration found.

    Raises
    ------
    GeosrError
        Bad input or option; a pair co-registration cannot use is named before the first runs.
    """
    if not pairs:
        raise InputError("no LR/HR pair to evaluate: give --lr and --hr")
    _check_pairs_given(pairs)
    # As upscale_file reads its input: ("~/lr.tif", "~/hr.tif") was 'no such file' to co-registration.
    pairs = [(file_url_path(lr_path), file_url_path(hr_path)) for lr_path, hr_path in pairs]
    forget_remote_files(str(path) for pair in pairs for path in pair)  # as evaluate_wald's
    check_border_count(border)
    kept = _workdir_of(workdir)
    _check_run_options(options, scale, model, upscaler, "evaluate_paired")
    _check_pairs(pairs, scale, border)
    up = upscaler or _default_upscaler()
    report = EvalReport("paired", scale, model or DEFAULT_MODEL, border)
    stems, names = _output_names([lr_path for lr_path, _ in pairs], ("sr", "bicubic"))
    with _evaluation_folder(kept, names, overwrite, [path for pair in pairs for path in pair]) as work:
        runs = _Upscaling(work, up, scale, model, options)
        for (lr_path, hr_path), stem in zip(pairs, stems, strict=True):
            report.images.append(_paired_image(lr_path, hr_path, stem, runs, border))
    return report


def _paired_image(
    lr_path: str | Path, hr_path: str | Path, stem: str, runs: _Upscaling, border: int
) -> ImageResult:
    """One pair: its LR super-resolved by the model and by bicubic, both scored against the HR
    co-registered onto the LR grid x the scale.

    Parameters
    ----------
    lr_path, hr_path : path
        The pair's rasters, as given (a Path folded the // of a URL).
    stem : str
        The start of this pair's GeoTIFFs' names.
    runs : _Upscaling
        How the LR is super-resolved, and where its GeoTIFFs go.
    border : int
        As :func:`evaluate_paired` takes it.

    Returns
    -------
    ImageResult
        The pair's metrics per band, and the residual shift co-registration found.

    Raises
    ------
    GeosrError
        The pair cannot be co-registered or scored, or a run failed.
    """
    from geosr.train.coreg import coregister

    pair = coregister(lr_path, hr_path, runs.scale)
    check_scorable(pair.hr.shape, border, str(hr_path))
    with _zeros_warned_for_pairs(lr_path, hr_path):
        # As given: a Path folded the // of a URL ('http:/host/lr.tif': no such file).
        sr, bic = runs.both(lr_path, stem)
    ok = np.isfinite(pair.hr) & np.isfinite(sr) & np.isfinite(bic)
    bands = _image_metrics(
        hr_path, sr, bic, pair.hr, pair.lr, runs.scale, ok, border, hr_valid=np.isfinite(pair.hr)
    )
    return ImageResult(f"{lr_path} vs {hr_path}", bands, pair.shift, (str(lr_path), str(hr_path)))
