"""Training scenes and deterministic chip samplers.

Every batch is a pure function of ``(seed, step)``: the sampler draws from
``numpy.random.default_rng([seed, step])``.  A resumed run therefore sees exactly
the batches an uninterrupted run would, with no data-loader state to save.

Scenes are normalised once, on the whole HR scene (or the used part of it), with
the same per-scene percentile normalisation that ``geosr run`` applies to its
input (:func:`geosr.normalise.scene_normalisation`), never per chip.  Chips are
single bands (the bundled models are band-agnostic), placed where every HR pixel
of the chip and its margin is valid, augmented by the 8 flips/rotations of the
square, then degraded (:mod:`geosr.train.degrade`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geosr.errors import (
    GeosrError,
    InputError,
    OptionError,
    catch_warnings_serialised,
    current_keywords,
    warn,
)
from geosr.io.names import open_raster
from geosr.io.scene import (
    Scene,
    chosen_bands,
    declared_invalid,
    hide_invalid,
    hides_pixels,
    nodata_as_gdal_masks_it,
    raster_grid,
    read_masks,
    refuse_palette,
    subdataset_keys,
    unreadable,
    with_nodata,
)
from geosr.io.sink import check_nodata_of
from geosr.kernel import normalise_valid
from geosr.normalise import scene_normalisation, valid_mask
from geosr.run_inputs import warn_float_fill
from geosr.train.config import SceneSource, of_source, resolve_sources
from geosr.train.coreg import read_failed
from geosr.train.degrade import WALD, DegradationConfig, degrade_batch, margin_for

NORMALISATION = {"method": "percentile", "low": 0.1, "high": 99.9}
"""The normalisation every bundled model is trained with (written in model cards)."""

MAX_TRIES = 200


@dataclass(frozen=True)
class TrainScene:
    """One normalised HR scene (part), ready for chipping.

    Attributes
    ----------
    name : str
    data : ndarray (C, H, W) float32, normalised, invalid pixels 0
    invalid_sat : ndarray (C, H + 1, W + 1) int32
        Summed-area table of invalid pixels (O(1) "is this chip all valid").
    quant_step : ndarray (C,)
        The raster's digital-number step in normalised units (0 for float rasters).
    weight : float
        The source's sampling weight multiplier.
    flat : tuple of bool
        Per band: whether its valid pixels all hold one value (nothing to learn from).
    """

    name: str
    data: np.ndarray
    invalid_sat: np.ndarray
    quant_step: np.ndarray
    weight: float = 1.0
    flat: tuple[bool, ...] = ()

    def all_valid(self, band: int, y: int, x: int, size: int) -> bool:
        """Whether the ``size`` x ``size`` chip of ``band`` at top-left pixel ``(y, x)`` is all valid."""
        s = self.invalid_sat[band]
        total = s[y + size, x + size] - s[y, x + size] - s[y + size, x] + s[y, x]
        return bool(total == 0)

    def valid_chips(self, band: int, size: int) -> np.ndarray:
        """Which ``size`` x ``size`` chips of ``band`` are all valid: (H - size + 1, W - size + 1) bool,
        indexed by the chip's top-left pixel (every position at once)."""
        s = self.invalid_sat[band]
        totals = s[size:, size:] - s[:-size, size:] - s[size:, :-size] + s[:-size, :-size]
        return np.asarray(totals == 0)

    def has_valid_chip(self, band: int, size: int) -> bool:
        """Whether any ``size`` x ``size`` chip of ``band`` is all valid."""
        return bool(self.valid_chips(band, size).any())


def load_scene(path: str | Path, source: SceneSource) -> TrainScene:
    """Read, mask and normalise one HR scene (the ``rows``/``cols`` part of it)."""
    try:
        with catch_warnings_serialised():
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)  # a container
            src = open_raster(path)
    except rasterio.errors.RasterioIOError as exc:
        raise unreadable(str(path), exc) from None  # geosr run's line
    with src:
        if src.count == 0 and src.subdatasets:
            keys = subdataset_keys(src.subdatasets)
            key, first = next(iter(keys.items()))
            raise InputError(
                f"{path} holds {len(keys)} variables ({', '.join(keys)}), which training does not "
                f"read; write the one to train on to a GeoTIFF first, e.g. gdal_translate '{first}' "
                f"{key.replace(':', '_').replace('/', '_')}.tif"
            )
        refuse_palette(path, src)
        try:
            bands = chosen_bands(path, src, source.bands)
        except GeosrError as exc:  # bands = [0]: named with the recipe's key (sources_named)
            raise of_source(exc, source, "bands") from None
        r0, r1 = (round(f * src.height) for f in source.rows)
        c0, c1 = (round(f * src.width) for f in source.cols)
        window = Window(c0, r0, c1 - c0, r1 - r0)
        # What marks pixels invalid, as geosr run reads the file (each band's own nodata, a nodata
        # colour, CF missing values, the file's mask or alpha band), or the source's nodata instead.
        if source.nodata is not None and not math.isnan(source.nodata):  # NaN: none (a recipe's way)
            # One the dtype cannot hold marked nothing: the fill meant was trained on as data.
            check_nodata_of(path, source.nodata, src.dtypes[0], _nodata_remedy())
        grid = raster_grid(src)
        masked = hides_pixels(src, bands[0])
        fields = declared_invalid(src, bands)
        scene = with_nodata(
            Scene(str(path), grid, len(bands), src.dtypes[0], masked=masked, **fields), source.nodata
        )
        try:
            block = nodata_as_gdal_masks_it(src.read(bands, window=window), scene.nodata)
            if scene.nan_marks_invalid:
                block = hide_invalid(scene, block, read_masks(src, bands, window) if masked else None)
        except (rasterio.errors.RasterioError, OSError) as exc:
            raise read_failed(path, exc) from None
    dtype = scene.dtype
    valid = valid_mask(block, scene.nodata)
    # An undeclared float fill (1e+39) is invalid, as in geosr run, which says so in this line;
    # normalised as it was, it printed numpy's bare 'overflow encountered in cast' instead.
    warn_float_fill(scene, block, "left out of training", _fill_remedy(), sampled=False)
    norm = scene_normalisation(block, valid, method="percentile", low=0.1, high=99.9, source=str(path))
    data, valid = normalise_valid(block, valid, norm, str(path), "left out of training")
    data[~valid] = 0.0
    invalid = (~valid).astype(np.int32)
    sat = np.zeros((invalid.shape[0], invalid.shape[1] + 1, invalid.shape[2] + 1), np.int32)
    sat[:, 1:, 1:] = invalid.cumsum(1).cumsum(2)
    integer = np.issubdtype(np.dtype(dtype), np.integer)
    quant = np.array([1.0 / s if integer else 0.0 for s in norm.scale], np.float64)
    name = f"{Path(path).name}[b{','.join(map(str, bands))}]"
    flat = tuple(bool(np.ptp(b[v]) == 0) if v.any() else True for b, v in zip(block, valid, strict=True))
    return TrainScene(name, np.ascontiguousarray(data), sat, quant, source.weight, flat)


def load_scenes(sources: tuple[SceneSource, ...], what: str) -> list[TrainScene]:
    """Load every raster that ``sources`` name."""
    return [load_scene(f, s) for f, s in resolve_sources(sources, what)]


def _with_detail(scenes: list[TrainScene], pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (scene, band) ``pairs`` whose valid pixels are not all one value.

    A flat band (a mask, a constant fill, a band of a product that was never filled)
    teaches nothing but costs its share of the batches: it was trained on without a word.
    One is left out with a warning; when all are, nothing is left to train on.

    Raises
    ------
    InputError
        Every band of every training raster is flat.
    """
    flat = [(i, b) for i, b in pairs if scenes[i].flat and scenes[i].flat[b]]
    if flat and len(flat) == len(pairs):
        raise InputError(
            f"{scene_names(scenes)}: every valid pixel of the training rasters holds one value, "
            "which teaches nothing; give rasters with detail (or check their nodata value)"
        )
    if flat:
        warn(
            f"{', '.join(_band_name(scenes[i], b) for i, b in flat)}: every valid pixel holds "
            "one value, which teaches nothing; left out of training"
        )
    return [pair for pair in pairs if pair not in flat]


def _band_name(scene: TrainScene, band: int) -> str:
    """``a.tif[b1]`` for a one-band scene, ``a.tif[b1,2,3] band 2`` (0-based ``band``) for one of several."""
    return scene.name if scene.data.shape[0] == 1 else f"{scene.name} band {band + 1}"


def dihedral(x: np.ndarray, k: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (``k`` in 0..7)."""
    if k >= 4:
        x = x[..., ::-1]
    return np.rot90(x, k % 4, axes=(-2, -1))


class ChipSampler:
    """Self-supervised batches ``(lr (B, T, 1, h, w), hr (B, 1, H, W))`` from HR scenes.

    Scene bands are drawn with probability proportional to the square root of
    their pixel count (large scenes count more, small crops still matter) times
    their source's ``weight``;
    positions uniformly among chips whose HR pixels (with the degradation
    margin) are all valid.
    """

    def __init__(
        self,
        scenes: list[TrainScene],
        *,
        scale: int,
        lr_chip: int,
        degradation: DegradationConfig,
        seed: int,
        what: str = "training",
    ):
        if not scenes:
            raise OptionError(f"no {what} scene: give HR rasters (files, folders or globs)")
        self.scenes = scenes
        self.scale = scale
        self.lr_chip = lr_chip
        self.degradation = degradation
        self.seed = seed
        self.margin = margin_for(scale, degradation)
        self.size = lr_chip * scale + 2 * self.margin
        pairs = [(i, b) for i, s in enumerate(scenes) for b in range(s.data.shape[0])]
        if what == "training":  # a flat validation raster is told by the validator
            pairs = _with_detail(scenes, pairs)
        usable = [(i, b) for i, b in pairs if min(scenes[i].data.shape[1:]) >= self.size]
        names = scene_names(scenes)
        chip = chip_setting(what)
        if not usable:
            raise OptionError(
                f"{names}: smaller than one {what} chip ({self.size} HR px with margin): "
                f"give larger {what} rasters or lower {chip}"
            )
        small = [s for s in scenes if min(s.data.shape[1:]) < self.size]
        if small:
            # Else left out without a word, and listed in the card's training data all the same.
            warn(
                f"{scene_names(small)}: smaller than one {what} chip ({self.size} HR px with margin), "
                f"left out of {what}; lower {chip} to use them"
            )
        # Checked here, exactly, before any output is written: the sampler's random
        # tries would only find out at the first batch, and not say which file.
        if not any(scenes[i].has_valid_chip(b, self.size) for i, b in usable):
            raise InputError(
                f"{names}: no {self.size}-px chip with every pixel valid ({what} rasters that are "
                f"mostly nodata); check their nodata value or lower {chip}"
            )
        self.pairs = usable
        self.weights = self._weights(usable)
        # The all-valid chip positions of each band, found once random tries have missed.
        self._positions: dict[tuple[int, int], np.ndarray] | None = None

    def _weights(self, pairs: list[tuple[int, int]]) -> np.ndarray:
        """Sampling probabilities of scene bands: sqrt of the pixel count times the source's weight."""
        weights = np.array(
            [np.sqrt(float(self.scenes[i].data[0].size)) * self.scenes[i].weight for i, _ in pairs]
        )
        return weights / weights.sum()

    def _chip(self, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        for _ in range(MAX_TRIES):
            i, band = self.pairs[rng.choice(len(self.pairs), p=self.weights)]
            scene = self.scenes[i]
            h, w = scene.data.shape[1:]
            y = int(rng.integers(0, h - self.size + 1))
            x = int(rng.integers(0, w - self.size + 1))
            if scene.all_valid(band, y, x, self.size):
                chip = scene.data[band, y : y + self.size, x : x + self.size]
                return chip, float(scene.quant_step[band])
        # Valid chips are rare here (a scene mostly nodata, but not wholly: the constructor
        # checked that one exists): draw one of them directly, still uniformly. Random tries
        # alone ended a run on a 70-px valid corner of a 256-px scene, mid-training.
        positions = self._valid_positions()
        pairs = list(positions)
        i, band = pairs[rng.choice(len(pairs), p=self._weights(pairs))]
        scene = self.scenes[i]
        k = int(positions[i, band][rng.integers(len(positions[i, band]))])
        y, x = divmod(k, scene.data.shape[2] - self.size + 1)
        chip = scene.data[band, y : y + self.size, x : x + self.size]
        return chip, float(scene.quant_step[band])

    def _valid_positions(self) -> dict[tuple[int, int], np.ndarray]:
        """Flat indices of the all-valid chip positions of each usable band that has one (cached)."""
        if self._positions is None:
            found = {(i, b): np.flatnonzero(self.scenes[i].valid_chips(b, self.size)) for i, b in self.pairs}
            self._positions = {pair: flat for pair, flat in found.items() if flat.size}
        return self._positions

    def batch(self, step: int, batch_size: int, *, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``step``: ``lr`` (B, T, 1, h, w) and ``hr`` (B, 1, H, W), float32."""
        rng = np.random.default_rng([self.seed, stream, step])
        frames = 1
        cfg = self.degradation
        if rng.random() < cfg.multi_frame_probability:
            frames = int(rng.integers(cfg.frames[0], cfg.frames[1] + 1))
        chips = np.empty((batch_size, 1, self.size, self.size), np.float32)
        quant = np.empty(batch_size, np.float64)
        for j in range(batch_size):
            chip, quant[j] = self._chip(rng)
            chips[j, 0] = dihedral(chip, int(rng.integers(8)))
        lr = degrade_batch(chips, self.scale, self.margin, rng, cfg, frames=frames, quant_step=quant)
        m = self.margin
        hr = np.ascontiguousarray(chips[:, :, m : self.size - m, m : self.size - m])
        return lr, hr


def _fill_remedy() -> str:
    """How to declare a float fill value of a training source (``{value}`` in it), as its
    user gives the source's nodata (:func:`_nodata_remedy`'s)."""
    if current_keywords() is not None:
        return "give its source's nodata (in config.data.train or .val) as {value} to declare it"
    return "give --nodata {value} (or the recipe's nodata) to declare it"


def _nodata_remedy() -> str:
    """How to give a training source a nodata its dtype holds, as its user sets it
    (:func:`~geosr.io.sink.check_nodata_of`'s remedy): a Python caller of ``train`` has no
    ``--nodata``, but the nodata of the source in ``config.data``."""
    if current_keywords() is not None:
        return "give its source's nodata (in config.data.train or .val) {values}, or None"
    return "give --nodata (or the recipe's nodata) {values}, or none"


def chip_setting(what: str) -> str:
    """The setting of the ``what`` ("training" or "validation") chips' size, as its user writes it.

    A Python caller sets a field of its :class:`~geosr.train.config.TrainConfig`; the command's
    user a flag or a recipe's key (only training chips have a flag).  "--chip (data.lr_chip)"
    read "config.data.lr_chip (data.lr_chip)" to a Python caller once its flag was translated.
    """
    field = "lr_chip" if what == "training" else "val_lr_chip"
    if current_keywords() is not None:
        return f"config.data.{field}"
    return f"--chip (data.{field} in a recipe)" if what == "training" else f"data.{field} in a recipe"


def scene_names(scenes: list[TrainScene], most: int = 3) -> str:
    """The scenes' names for a message: the first ``most`` and how many more."""
    names = ", ".join(s.name for s in scenes[:most])
    return names + (f" and {len(scenes) - most} more" if len(scenes) > most else "")


def validation_set(
    scenes: list[TrainScene], *, scale: int, lr_chip: int, count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Fixed validation chips: plain area averaging (the Wald protocol), one frame.

    Chips are spread over the scenes in turn so that each contributes.
    """
    if not scenes:
        raise OptionError("no validation scene")
    lrs, hrs = [], []
    per_scene = max(1, math.ceil(count / len(scenes)))
    for k, scene in enumerate(scenes):
        sampler = ChipSampler(
            [scene], scale=scale, lr_chip=lr_chip, degradation=WALD, seed=seed + 7919 * k, what="validation"
        )
        lr, hr = sampler.batch(0, per_scene, stream=1)
        lrs.append(lr)
        hrs.append(hr)
    return np.concatenate(lrs)[:count], np.concatenate(hrs)[:count]


class StoreSampler:
    """Batches from a paired training store (see ``geosr.orchestrate.training_store``).

    The store holds ``lr`` (N, h, w) and ``hr`` (N, H, W) float32 chips
    (normalised, co-registered); they are read into memory once.
    """

    def __init__(self, store: str | Path, *, seed: int, split: str = "train"):
        from geosr.train.store import read_store

        self.lr, self.hr = read_store(store, split)
        self.seed = seed

    def batch(self, step: int, batch_size: int, *, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``step``: ``lr`` (B, 1, 1, h, w) and ``hr`` (B, 1, H, W), float32, each
        chip drawn with one of its 8 flips/rotations."""
        rng = np.random.default_rng([self.seed, stream, step])
        idx = rng.integers(0, self.lr.shape[0], batch_size)
        ks = rng.integers(0, 8, batch_size)
        lr = np.stack([dihedral(self.lr[i], int(k)) for i, k in zip(idx, ks, strict=True)])
        hr = np.stack([dihedral(self.hr[i], int(k)) for i, k in zip(idx, ks, strict=True)])
        return np.ascontiguousarray(lr[:, None, None], np.float32), np.ascontiguousarray(
            hr[:, None], np.float32
        )
