"""Models by name, bundled weights, and :func:`load_model`, the one entry point of the pipeline.

Bundled weights live in the package folder ``geosr/weights/`` as
``<name>_x<scale>.safetensors`` beside ``<name>_x<scale>.json`` (the card).  A
registered name without weights for the asked scale gives the untrained model,
whose zero-initialised last layer makes it exactly bicubic + radiometric
projection: a safe, physically consistent default rather than an error.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import numbers
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from geosr.errors import ModelError, OptionError, in_words, python_api, warn
from geosr.models.base import MAX_SCALE, MIN_SCALE, SRModel, check_int_at_least
from geosr.models.bicubic import Bicubic
from geosr.models.card import ModelCard, json_ready
from geosr.models.cnnrnn import CNNRNN, CNNRNNConfig
from geosr.models.edsr import EDSR, EDSRConfig
from geosr.models.weights import (
    CARD_SUFFIX,
    PICKLE_SUFFIXES,
    WEIGHTS_SUFFIX,
    apply_state,
    card_of,
    load_weights,
    local_path,
    weights_paths,
)
from geosr.options import TEXT_OPTIONS
from geosr.predictor import resolve_device

log = logging.getLogger(__name__)

DEFAULT_MODEL = "cnnrnn-fast"
RECOMMENDED_SCALES = (2, 3, 4)
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
"""Bundled weights (package data).  Read at call time, so tests may point it elsewhere."""


def _build_cnnrnn(name: str, scale: int, options: Mapping[str, Any]) -> SRModel:
    return CNNRNN(CNNRNNConfig.from_dict({**options, "scale": scale}), name=name)


def _build_edsr(name: str, scale: int, options: Mapping[str, Any]) -> SRModel:
    return EDSR(EDSRConfig.from_dict({**options, "scale": scale}), name=name)


def _build_bicubic(name: str, scale: int, options: Mapping[str, Any]) -> SRModel:
    if options:
        raise ModelError(f"model {name} takes no options, got {in_words(sorted(options))}")
    return Bicubic(scale)


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: how to build it and what to say about it."""

    name: str
    architecture: str
    description: str
    factory: Callable[[str, int, Mapping[str, Any]], SRModel]
    defaults: Mapping[str, Any] = field(default_factory=dict)

    def build(self, scale: int, **overrides: Any) -> SRModel:
        """An untrained model at ``scale``, ``overrides`` replacing the defaults."""
        return self.factory(self.name, scale, {**self.defaults, **overrides})


MODEL_NAMES: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "cnnrnn-fast": ModelSpec(
            "cnnrnn-fast",
            "cnnrnn",
            "CNN-RNN, 32 features, 2 residual blocks, 2 refinement steps: the default",
            _build_cnnrnn,
            {"features": 32, "encoder_blocks": 2, "refine_steps": 2},
        ),
        "cnnrnn-best": ModelSpec(
            "cnnrnn-best",
            "cnnrnn",
            "CNN-RNN, 48 features, 4 residual blocks, 4 refinement steps: slower, sharper",
            _build_cnnrnn,
            {"features": 48, "encoder_blocks": 4, "refine_steps": 4},
        ),
        "edsr-baseline": ModelSpec(
            "edsr-baseline",
            "edsr",
            "plain EDSR-style CNN, 32 features, 16 residual blocks: the calibration baseline",
            _build_edsr,
            {"features": 32, "blocks": 16},
        ),
        "bicubic": ModelSpec(
            "bicubic",
            "bicubic",
            "bicubic interpolation, not learned: the baseline",
            _build_bicubic,
        ),
    }
)
"""Every model geosr knows, by name.  Iterating gives the names."""


@dataclass(frozen=True)
class ModelInfo:
    """One row of ``geosr models``.

    Attributes
    ----------
    name, description : str
    scales : tuple of int
        Scales with bundled weights (others run untrained).
    cards : mapping of int to ModelCard
        The bundled cards by scale.
    architecture : str
        The architecture it builds (``cnnrnn``, ``edsr``, ``bicubic``).
    """

    name: str
    description: str
    scales: tuple[int, ...]
    cards: Mapping[int, ModelCard]
    architecture: str = ""

    @property
    def card(self) -> ModelCard | None:
        """The card of the smallest bundled scale, or ``None`` without bundled weights."""
        return self.cards[self.scales[0]] if self.scales else None

    def to_dict(self) -> dict[str, Any]:
        """The row and its cards whole, JSON-ready (:func:`~geosr.models.card.json_ready`):
        ``geosr models --json``."""
        return json_ready(
            {
                "name": self.name,
                "architecture": self.architecture,
                "description": self.description,
                "default": self.name == DEFAULT_MODEL,
                "bundled_scales": list(self.scales),
                "cards": [card.to_dict() for card in self.cards.values()],
            }
        )

    @property
    def metrics_summary(self) -> str:
        """Validation gain over bicubic per bundled scale, e.g. ``"x4: +1.23 dB"``, or ``"-"``.

        The held-out Wald result (``wald_mean_gain_db``, written by ``make quality``)
        is preferred over the training-time chip validation.
        """
        parts = []
        for s in self.scales:
            metrics = self.cards[s].metrics
            if "wald_mean_gain_db" in metrics:
                parts.append(f"x{s}: {float(metrics['wald_mean_gain_db']):+.2f} dB (Wald, held-out scenes)")
            elif "val_gain_db" in metrics:
                parts.append(f"x{s}: {float(metrics['val_gain_db']):+.2f} dB")
            elif "val_psnr" in metrics:
                parts.append(f"x{s}: {float(metrics['val_psnr']):.2f} dB PSNR")
        return ", ".join(parts) or "-"


def _unknown(name: object) -> ModelError:
    # Anything else by its type: a loaded model's (an nn.Module's) repr runs over many lines.
    what = repr(name) if isinstance(name, str) else f"given as a {type(name).__name__}"
    # cnnrnn-fast_x4, the stem of the bundled file geosr/weights/cnnrnn-fast_x4.safetensors, is
    # the model cnnrnn-fast at --scale 4: the list of names alone left that to guess.
    stem = re.fullmatch(r"(.+)_x(\d+)", name) if isinstance(name, str) else None
    hint = ""
    if stem is not None and stem.group(1) in MODEL_NAMES:
        hint = f"; for {name} give --model {stem.group(1)} --scale {stem.group(2)}"
    elif isinstance(name, str) and (meant := _meant(name)):
        hint = f"; did you mean {meant}?"  # no flag: --init takes a name too
    return ModelError(
        f"unknown model {what}; known models: {', '.join(MODEL_NAMES)} "
        f"(or give the path of a {WEIGHTS_SUFFIX} weights file){hint}"
    )


def _meant(name: str) -> str | None:
    """The one model name that ``name`` is part of or close to (``fast``, ``cnnrnn_best``,
    ``edsr``), which ``--model fast`` was not told: only the list of names, in full."""
    typed = name.strip().lower().replace("_", "-")
    if not typed:
        return None
    within = [known for known in MODEL_NAMES if typed in known]
    found = within or difflib.get_close_matches(typed, list(MODEL_NAMES), n=2, cutoff=0.75)
    return found[0] if len(found) == 1 else None


def _spec(name: str) -> ModelSpec:
    if name not in MODEL_NAMES:
        raise _unknown(name)
    return MODEL_NAMES[name]


def build_model(name: str, *, scale: int, **overrides: Any) -> SRModel:
    """An untrained registered model (bicubic-equivalent until trained).

    Parameters
    ----------
    name : str
        A key of :data:`MODEL_NAMES`.
    scale : int
        Upscaling factor, 2..8.
    **overrides
        Architecture options replacing the registered defaults, e.g.
        ``features=8`` or ``recurrent=False``.
    """
    return _spec(name).build(scale, **overrides)


def bundled_weights(name: str, scale: int) -> Path | None:
    """The bundled ``<name>_x<scale>.safetensors`` for a registered name, or ``None``."""
    _spec(name)
    path = WEIGHTS_DIR / f"{name}_x{scale}{WEIGHTS_SUFFIX}"
    return path if path.is_file() else None


def _bundled_scales(name: str) -> tuple[int, ...]:
    if not WEIGHTS_DIR.is_dir():
        return ()
    pattern = re.compile(rf"{re.escape(name)}_x(\d+){re.escape(WEIGHTS_SUFFIX)}")
    found = (pattern.fullmatch(p.name) for p in WEIGHTS_DIR.iterdir())
    return tuple(sorted(int(m.group(1)) for m in found if m))


def _bundled_note(name: str) -> str:
    scales = _bundled_scales(name)
    return f"bundled: {', '.join(f'x{s}' for s in scales)}" if scales else "none bundled"


def list_models() -> list[ModelInfo]:
    """Every registered model with its bundled scales and cards, for ``geosr models``."""
    infos = []
    for name, spec in MODEL_NAMES.items():
        scales = _bundled_scales(name)
        cards = {}
        for s in scales:
            card_path = WEIGHTS_DIR / f"{name}_x{s}{CARD_SUFFIX}"
            if not card_path.is_file():
                raise ModelError(f"bundled weights {name} x{s} have no card {card_path}")
            cards[s] = ModelCard.from_json(card_path.read_text("utf-8"), source=str(card_path))
        infos.append(ModelInfo(name, spec.description, scales, MappingProxyType(cards), spec.architecture))
    return infos


def _or_list(values: tuple[int, ...]) -> str:
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


def _check_scale(scale: object, name: str) -> int:
    if isinstance(scale, bool) or not isinstance(scale, int) or not MIN_SCALE <= scale <= MAX_SCALE:
        bundled = _bundled_scales(name) if name in MODEL_NAMES else ()
        hint = (
            f"use {_or_list(bundled)} (bundled weights) or any integer {MIN_SCALE}..{MAX_SCALE}"
            if bundled
            # Not 'use 2, 3 or 4 (any integer 2..8)': that read as the model taking 2-4 alone.
            else f"use an integer {MIN_SCALE}..{MAX_SCALE} (usually {_or_list(RECOMMENDED_SCALES)})"
        )
        raise ModelError(f"scale {scale!r} is not supported by model {name}: {hint}")
    return scale


def _plain_int(value: int) -> int:
    """A numpy integer as Python's (an array's size, ``np.int64(4)``): refused before, with
    "bands must be an integer >= 1, got np.int64(4)"; other values as they are, for the checks."""
    return int(value) if isinstance(value, numbers.Integral) and not isinstance(value, bool) else value


def _check_bands(model: SRModel, bands: object, weights: Path | None = None) -> None:
    """Refuse a band count the model's card does not take; ``weights`` names a user's file,
    whose card may carry a bundled model's name ('model cnnrnn-fast expects 4 bands ... or
    use a band-agnostic model such as cnnrnn-fast' contradicted itself)."""
    bands = check_int_at_least(bands, "bands", 1)
    what = f"model {model.name}" + (f" ({weights})" if weights is not None else "")
    card_bands = model.card.bands
    if card_bands is not None and len(card_bands) != bands:
        raise ModelError(
            f"{what} expects {len(card_bands)} bands ({','.join(card_bands)}), "
            f"the input has {bands}; select those bands (e.g. --bands) or use a "
            "band-agnostic model such as cnnrnn-fast"
        )
    in_channels = getattr(getattr(model, "config", None), "in_channels", 1)
    if in_channels > 1 and in_channels != bands:
        # Its card names no bands (bands: null) yet the weights take several at once: the
        # line said no more than the counts, not how to go on.
        raise ModelError(
            f"{what} expects {in_channels} bands, the input has {bands}; select {in_channels} bands "
            "(e.g. --bands) or use a band-agnostic model such as cnnrnn-fast"
        )


def model_from_card(card: ModelCard, *, source: str | os.PathLike[str] | None = None) -> SRModel:
    """Build the (untrained) architecture a card describes.

    Parameters
    ----------
    card : ModelCard
    source : path-like, optional
        The card's file, named in the error of a ``config`` its architecture refuses.

    Raises
    ------
    ModelError
        For a ``config`` the architecture does not take (unknown keys, wrong types).
    """
    try:
        if card.architecture == "bicubic":
            return Bicubic(card.scale)
        if card.architecture == "edsr":
            return EDSR(EDSRConfig.from_dict({"scale": card.scale, **card.config}), name=card.name)
        return CNNRNN(CNNRNNConfig.from_dict({"scale": card.scale, **card.config}), name=card.name)
    except ModelError as exc:
        if source is None:
            raise
        # 'unknown CNNRNN config keys' alone, after the input's name, did not say that the
        # weights' card is the file to fix.
        raise ModelError(f"{source}: {exc}") from None


def _from_file(path: Path, scale: object) -> SRModel:
    state, card = load_weights(path)
    if card.scale != scale:
        # No 'use weights trained for x1': there are none for a scale geosr does not take.
        possible = not isinstance(scale, bool) and isinstance(scale, int) and MIN_SCALE <= scale <= MAX_SCALE
        other = f" (scales are {MIN_SCALE}..{MAX_SCALE})"
        if possible:
            other = f", or use weights trained for x{scale}"
        raise ModelError(
            f"weights {path} support scale {card.scale} only, not {scale!r}: run with --scale {card.scale}"
            + other
        )
    _check_scale(scale, card.name)
    weights = weights_paths(path)[0]
    with random_state_kept():  # the layers' random initial values are overwritten at once
        model = model_from_card(card, source=card_of(weights))
    apply_state(model, state, weights)
    model.card = card
    return model


def random_state_kept() -> contextlib.AbstractContextManager[None]:
    """Within: torch's CPU random generator draws as it would; after: as it was before.

    A model's layers draw their initial values from it when they are made: loading a model
    (``load_model``, so ``upscale_file`` and ``geosr.upscale``) moved the random numbers of
    a process that had seeded torch for its own work on.
    """
    return torch.random.fork_rng(devices=[])


def _looks_like_path(value: str | os.PathLike[str]) -> bool:
    if not isinstance(value, str):
        # Not any other object: model=3 failed in pathlib ('expected str, bytes or os.PathLike').
        return isinstance(value, os.PathLike)
    if not value.strip():
        # --model "$MODEL" with MODEL unset: '' is Path('.'), a folder, which ended in a traceback.
        return False
    suffixes = (WEIGHTS_SUFFIX, CARD_SUFFIX, *PICKLE_SUFFIXES)
    return (
        "/" in value
        or os.sep in value
        or value.lower().endswith(suffixes)
        or Path(value + WEIGHTS_SUFFIX).is_file()
        # A card without its weights: 'unknown model 'mine'' hid that the weights are missing.
        or Path(value + CARD_SUFFIX).is_file()
        # A folder (geosr train -o run, then --model run) is named as one, with the weights in
        # it, rather than as 'unknown model'.
        or Path(value).is_dir()
    )


def _warn_if_shadowing(name: str) -> None:
    """Say that a registered name runs the registered model even beside a file of that name:
    ``--model cnnrnn-fast`` in a folder holding ``cnnrnn-fast.safetensors`` ran the bundled
    weights without a word, as a bare stem names a file only when it is no model's name."""
    shadowed = Path(name + WEIGHTS_SUFFIX)
    if shadowed.is_file():
        warn(
            f"model {name} is geosr's registered model, not the file {shadowed} in the current "
            f"directory; give ./{shadowed} to run that file"
        )


def check_model(name_or_path: str | os.PathLike[str] | None, *, scale: int) -> None:
    """Refuse (:class:`ModelError`) what :func:`load_model` refuses whatever the input: an
    unknown name, a scale the model does not take, a weights file that is missing or does
    not load.  A registered model is not built, and the bands are not checked."""
    target = DEFAULT_MODEL if name_or_path is None else name_or_path
    scale = _plain_int(scale)
    if isinstance(target, str) and target in MODEL_NAMES:
        _check_scale(scale, target)
    elif _looks_like_path(target):
        _from_file(local_path(target), scale)
    else:
        raise _unknown(target)


# Its bands is a count: the run's --bands, which selects them, is upscale_file's.
@python_api(flags={"--model": "name_or_path", "--bands": "upscale_file(bands=...)"})
def load_model(
    name_or_path: str | os.PathLike[str] | None = None,
    *,
    bands: int,
    scale: int,
    device: str | torch.device | None = None,
) -> SRModel:
    """The model the pipeline runs, validated for ``bands`` and ``scale``, in eval mode.

    Parameters
    ----------
    name_or_path : str, path-like or None
        ``None`` for :data:`DEFAULT_MODEL`; a registered name (bundled weights
        for ``scale`` when present, else the untrained, bicubic-equivalent
        model, with a logged warning), which always means the registered model, even
        beside a file of that name (``./NAME.safetensors`` names the file); or the path of
        ``.safetensors`` weights (or their stem: a name that holds a ``/`` or that no model
        is registered under) with a card beside them (for a symbolic link, beside the link or else
        beside the file it leads to), which fixes architecture, size
        and scale.
    bands : int
        Band count of the input.
    scale : int
        Upscaling factor.
    device : str or torch.device, optional
        Where to put the model (``auto``, ``cpu``, ``cuda[:N]`` or a torch device); CPU when
        omitted.

    Returns
    -------
    SRModel
        With ``.scale``, ``.receptive_field``, ``.card`` and ``.name``.

    Raises
    ------
    ModelError
        Unknown name, unsupported scale, band count the card does not accept,
        pickle checkpoint, missing card, weights that do not fit.
    OptionError
        A device name that is not known, or CUDA where there is none.
    """
    bands, scale = _plain_int(bands), _plain_int(scale)
    device = _checked_device(device)
    target = DEFAULT_MODEL if name_or_path is None else name_or_path
    model, untrained, user_weights = _model_named(target, scale)
    _check_bands(model, bands, user_weights)
    if untrained:
        _warn_untrained(model, target, scale)
    if device is not None:
        model = model.to(device)
    return model.eval()


def _checked_device(device: object) -> torch.device | None:
    """The device ``load_model`` was given, resolved (``auto``, ``cuda``); None where it was given none.

    Raises
    ------
    OptionError
        A device name that is not known, CUDA where there is none, or a value that names no device.
    """
    if isinstance(device, (str, torch.device)):
        # Checked first, as geosr run checks it: torch's errors for 'gpu' or a missing CUDA
        # were tracebacks (RuntimeError, AssertionError 'Torch not compiled with CUDA'), for
        # torch.device('cuda') too.
        return resolve_device(str(device))
    if device is not None:
        # device=0 (a CUDA index, to torch) was torch's RuntimeError 'Cannot access accelerator
        # device when none is available' as the model moved, or a GPU taken unchecked.
        raise OptionError(f"--device {device!r} is not supported: {TEXT_OPTIONS['device']} or a torch.device")
    return None


def _model_named(target: str | os.PathLike[str], scale: int) -> tuple[SRModel, bool, Path | None]:
    """The model ``target`` names at ``scale``: a registered one (with its bundled weights where
    there are some), else the weights file it names.

    Returns
    -------
    model : SRModel
        As built or read: not yet moved to a device, nor in eval mode.
    untrained : bool
        Whether it is a registered model without bundled weights for ``scale``, and untrained.
    user_weights : pathlib.Path or None
        The weights file ``target`` names; None for a registered model.

    Raises
    ------
    ModelError
        Unknown name, unsupported scale, pickle checkpoint, missing card, weights that do not fit.
    """
    if isinstance(target, str) and target in MODEL_NAMES:
        spec = MODEL_NAMES[target]
        scale = _check_scale(scale, target)
        _warn_if_shadowing(target)
        weights = bundled_weights(target, scale)
        if weights is not None:
            model = _from_file(weights, scale)
            model.name = target
            return model, False, None
        with random_state_kept():
            model = spec.build(scale)
        return model, model.card.is_untrained, None
    if _looks_like_path(target):
        user_weights = local_path(target)
        return _from_file(user_weights, scale), False, user_weights
    raise _unknown(target)


def _warn_untrained(model: SRModel, target: str | os.PathLike[str], scale: int) -> None:
    """Warn that the registered model ``target`` runs untrained at ``scale``: the command line
    shows it, where the output would otherwise pass for the model's while it is bicubic's."""
    # EDSR has no radiometric projection: untrained, it is bicubic alone.
    projected = model.card.config.get("radiometric_projection", False)
    warn(
        f"no bundled weights for {target} x{scale}; it runs untrained, which equals "
        f"bicubic{' + radiometric projection' if projected else ''} ({_bundled_note(str(target))}; "
        f"train x{scale} weights with geosr train)"
    )
