"""Typed, frozen training configuration and its TOML recipe format.

A recipe (``pipelines/*.toml``, or a bundled one by name: ``cnnrnn_fast_x4``) is just a
serialisation of :class:`TrainConfig`: top-level keys are its fields, tables are the nested
dataclasses, ``[[data.train]]`` and ``[[data.val]]`` are lists of :class:`SceneSource`.
Precedence is explicit in :func:`load_config`: command-line values over the recipe over the
defaults below.  Unknown keys are errors (a typo must not silently train something else).

Paths in a recipe may use ``${GEOSR_DATA_DIR}``; when that variable is unset it
stands for ``../shared/data`` relative to the current directory (the same
convention as the tests).  Other relative paths are relative to the current
directory (run recipes from the repository root, as ``make weights`` does).
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import glob
import json
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path, PurePath
from typing import Any

from geosr.errors import GeosrError, OptionError, current_keywords, in_words, keyword_wording, python_api
from geosr.io.gdal_zarr import written_by_gdal
from geosr.io.remote import home_expanded
from geosr.train.degrade import DegradationConfig

CONFIG_FLAGS = {
    f"--{flag}": key
    for flag, key in {
        "output": "output",
        "weights": "weights",
        "init": "init",
        "model": "name",
        "scale": "scale",
        "device": "device",
        "precision": "precision",
        "steps": "steps",
        "batch-size": "batch_size",
        "loss": "loss",
        "store": "data.store",
        "chip": "data.lr_chip",
        "learning-rate": "optim.lr",
    }.items()
} | {"-o": "output", "-s": "scale", "-m": "name"}
"""The :class:`TrainConfig` field (a recipe's key) each flag of ``geosr train`` sets, which a
Python caller of :func:`load_config` gives in its overrides."""

DATA_DIR_VAR = "GEOSR_DATA_DIR"
DEFAULT_DATA_DIR = "../shared/data"


@dataclass(frozen=True)
class SceneSource:
    """One HR raster (or a glob of them) and the part of it to use.

    Attributes
    ----------
    path : str
        File, folder (all ``*.tif``, ``*.tiff``, ``*.jp2`` in it) or glob.
    bands : tuple of int, optional
        1-based bands to use (all when empty).
    rows, cols : (float, float)
        Fractions of the scene's height and width to use, e.g. ``rows = [0.5, 1.0]``
        for the lower half (a validation split inside one large scene).
    nodata : float, optional
        Overrides the raster's nodata value (e.g. 0 for Sentinel-2 JP2 swaths,
        whose files often declare none).
    weight : float
        Multiplies the sampling weight of each band of these rasters (see
        :class:`geosr.train.data.ChipSampler`), to balance sensors.
    """

    path: str
    bands: tuple[int, ...] = ()
    rows: tuple[float, float] = (0.0, 1.0)
    cols: tuple[float, float] = (0.0, 1.0)
    nodata: float | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            lo, hi = getattr(self, name)
            if not 0.0 <= lo < hi <= 1.0:
                raise OptionError(
                    f"{self.path}: {name} must be fractions 0 <= start < stop <= 1, got {[lo, hi]}"
                )
        if not (self.weight > 0 and math.isfinite(self.weight)):  # inf: numpy's "Probabilities contain NaN"
            raise OptionError(f"{self.path}: weight must be > 0 and finite, got {self.weight}")


@dataclass(frozen=True)
class DataConfig:
    """Where training and validation chips come from.

    Attributes
    ----------
    train, val : tuple of SceneSource
        Self-supervised HR scenes; the validation scenes are never trained on.
    store : str, optional
        A paired training store (Zarr, see ``geosr.orchestrate.training_store``);
        when set, training reads LR/HR chips from it instead of degrading ``train``.
    lr_chip : int
        LR chip size in pixels (the HR chip is ``lr_chip * scale``).
    val_chips, val_lr_chip, val_border : int
        Number and LR size of the fixed validation chips; HR border excluded from
        the validation PSNR.
    """

    train: tuple[SceneSource, ...] = ()
    val: tuple[SceneSource, ...] = ()
    store: str | None = None
    lr_chip: int = 32
    val_chips: int = 32
    val_lr_chip: int = 48
    val_border: int = 8

    def __post_init__(self) -> None:
        for name in ("train", "val"):
            for k, source in enumerate(getattr(self, name)):
                if not source.path.strip():
                    # As a Path, '' is '.': training read every raster of the working folder.
                    raise OptionError(f"data.{name}[{k}].path is empty; give a raster, a folder or a glob")
        if self.store is not None and not self.store.strip():
            raise OptionError("data.store is empty; give a training store (.zarr) or leave it out")
        if self.store is not None:  # a recipe's "~/store.zarr" 'did not exist'
            object.__setattr__(self, "store", home_expanded(self.store))
        # A recipe's sizes are not bounded by typer as --chip is: 0 or less was a numpy or
        # model traceback ("negative dimensions", "empty input", "cannot reshape").
        least = {"lr_chip": 4, "val_chips": 1, "val_lr_chip": 4, "val_border": 0}
        for name, low in least.items():
            if getattr(self, name) < low:
                raise OptionError(f"data.{name} must be >= {low}, got {getattr(self, name)}")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warm-up then cosine decay to ``min_lr_ratio * lr``."""

    lr: float = 2e-3
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup: int = 100
    schedule: str = "cosine"
    min_lr_ratio: float = 0.02
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        if self.schedule not in {"cosine", "constant"}:
            raise OptionError(f"optim.schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):  # nan was torch's traceback in AdamW
            raise OptionError(f"optim.lr must be a finite number > 0, got {self.lr}")
        # AdamW's own checks were tracebacks ("Invalid beta parameter at index 0: 1.5").
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise OptionError(f"optim.betas must be two numbers 0 <= b < 1, got {list(self.betas)}")
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):  # inf: a nan loss at step 1
            raise OptionError(f"optim.weight_decay must be >= 0 and finite, got {self.weight_decay}")
        if self.warmup < 0:  # was taken as 0 without a word
            raise OptionError(f"optim.warmup must be >= 0 steps, got {self.warmup}")
        if not self.grad_clip >= 0:  # nan or below 0 turned clipping off without a word
            raise OptionError(f"optim.grad_clip must be >= 0 (0: no clipping), got {self.grad_clip}")
        if not 0 <= self.min_lr_ratio <= 1:  # below 0, the decay ended in a negative rate: ascent
            raise OptionError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written beside its checkpoints.

    Attributes
    ----------
    name : str
        Model name for :func:`geosr.models.build_model` (``cnnrnn-fast`` ...).
    scale : int
    model : dict
        Overrides of the model's configuration (e.g. ``features = 24``).
    seed : int
        Seeds everything; a run is a function of its config.
    steps, batch_size : int
    loss : dict
        Loss names and weights (see :func:`geosr.train.losses.build_loss`).
    perceptual_net : str, optional
        Feature network file for the ``perceptual`` loss.
    degradation : DegradationConfig
        How self-supervised LR inputs are made from HR chips (a recipe's ``[degradation]``).
    data : DataConfig
        Where training and validation chips come from (``[data]``).
    optim : OptimConfig
        The optimiser and its learning-rate schedule (``[optim]``).
    device : str
        ``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1`` ...
    precision : str
        ``auto`` (bf16 autocast on CUDA, fp32 on CPU), ``fp32``, ``bf16``.
    threads : int
        torch intra-op threads on CPU (0: torch's default).
    val_every, checkpoint_every, log_every : int
        In steps.
    init : str, optional
        Weights to start from (fine-tuning): a ``.safetensors`` file or a
        registered name with bundled weights for ``scale``.  The architecture
        is the weights' own (their card); ``model`` overrides are refused.
    output : str
        Run folder: ``config.json``, ``checkpoints/``, and by default the weights.
    weights : str, optional
        Path stem of the final weights (``<stem>.safetensors`` + ``<stem>.json``);
        default ``<output>/<name>_x<scale>``.
    """

    name: str = "cnnrnn-fast"
    scale: int = 4
    model: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    steps: int = 2000
    batch_size: int = 16
    loss: dict[str, float] = field(default_factory=lambda: {"l1": 1.0})
    perceptual_net: str | None = None
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    device: str = "auto"
    precision: str = "auto"
    threads: int = 0
    val_every: int = 200
    checkpoint_every: int = 200
    log_every: int = 10
    init: str | None = None
    output: str = "runs/train"
    weights: str | None = None

    def __post_init__(self) -> None:
        # Built by a Python caller (not load_config, not geosr train): its lines name the fields
        # it sets ("init='edsr'"), not the command's flags ("--init edsr ... drop -m x").
        with keyword_wording(CONFIG_FLAGS):
            self._check()

    def _check(self) -> None:
        """Refuse (:class:`OptionError`) settings no run can use, and expand ``~`` in its paths."""
        hints = typing.get_type_hints(TrainConfig)
        for name in ("output", "weights", "init", "perceptual_net"):
            value = getattr(self, name)
            if isinstance(value, os.PathLike):  # a Python caller's Path: 'no attribute strip'
                value = os.fspath(value)
                object.__setattr__(self, name, value)
            _convert(hints[name], value, name)
            if value is not None and not value.strip():
                # A recipe's output = "" was the working folder: the run's config, checkpoints and
                # weights went among the user's files (the command line refuses an empty -o).
                raise OptionError(f"{name} is empty; give a path or leave it out")
        # A recipe's output = "~/runs/x" (the command line's -o is expanded by the shell or
        # given_path): the config and checkpoints went into a folder '~' in the working folder,
        # the weights (saved through expanduser) into the home folder: one run in two places.
        # A perceptual_net there 'did not exist'.
        object.__setattr__(self, "output", home_expanded(self.output))
        if self.perceptual_net is not None:
            object.__setattr__(self, "perceptual_net", home_expanded(self.perceptual_net))
        for name in (name for name, hint in hints.items() if hint is int):  # steps, seed, ...
            # A Python caller's steps="10" (a recipe's is checked as read) was a TypeError traceback.
            _convert(int, getattr(self, name), name)
            if name != "seed" and getattr(self, name) >= 2**63:  # the seed's line is its own, below
                # TOML and Python take any integer: steps = 99999999999999999999 trained on without
                # end, where torch and numpy count in 64-bit integers.
                raise OptionError(f"{name} must be below 2**63, got {getattr(self, name)}")
        if self.scale not in (2, 3, 4, 8):
            raise OptionError(f"scale must be 2, 3, 4 or 8, got {self.scale}")
        if self.steps < 1 or self.batch_size < 1:
            raise OptionError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        _check_device(self.device)
        if self.precision not in {"auto", "fp32", "bf16"}:
            raise OptionError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if "scale" in self.model:  # was a TypeError traceback: build_model's scale given twice
            raise OptionError(
                f"[model] scale = {self.model['scale']}: the model's scale is the run's own scale "
                "setting; drop it from [model]"
            )
        if self.init is not None and self.model:
            init = _init_flag(self.init)
            raise OptionError(f"{init} brings its own architecture: {_drop_model(self.model)}")
        # A bundled name as init *is* the architecture; another name would label
        # the trained weights and card with a model they are not.
        if self.init is not None and is_model_name(self.init) and self.name != self.init:
            raise OptionError(f"{_init_flag(self.init)} trains a {self.init} model, but {_name_to_set(self)}")
        for term, weight in self.loss.items():
            # Negative weights would make the optimiser maximise that error; 0 leaves a term out.
            if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight >= 0):
                raise OptionError(
                    f"loss weight {term}={weight} must be a number >= 0 (0 leaves the term out), "
                    f"e.g. {_loss_example()}"
                )
        from geosr.train.losses import check_loss  # torch: only where a run is configured

        # Here, not once training starts: "unknown loss 'l3'" did not name the recipe to fix.
        check_loss(self.loss)
        if not 0 <= self.seed < 2**63:
            # numpy's generator takes no negative seed, torch's manual_seed none of 2**64 or more:
            # either was a traceback (ValueError) at the start of training.
            raise OptionError(f"seed must be a whole number from 0 to 2**63 - 1, got {self.seed}")
        if self.threads < 0:
            # torch.set_num_threads would refuse it with a traceback at the start of training.
            raise OptionError(f"threads must be >= 0 (0: torch's default), got {self.threads}")
        for name in ("val_every", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise OptionError(f"{name} must be >= 1, got {getattr(self, name)}")

    @property
    def weights_stem(self) -> Path:
        """Where the final weights go (without suffix)."""
        if self.weights:
            return Path(self.weights)
        return weights_stem_in(self.output, self.name, self.scale)


def weights_stem_in(output: str | Path, name: str, scale: int) -> Path:
    """The stem of the weights a run of model ``name`` at ``scale`` writes in its run folder
    ``output`` when no ``weights`` path is given."""
    return Path(output) / f"{name}_x{scale}"


def _check_device(device: str) -> None:
    """Refuse a device torch cannot name, as the config is built: a recipe's device = "gpu" was
    told once training began, naming no recipe.  Whether CUDA is there is the run's to say."""
    if device == "auto":
        return
    import torch  # only where a run is configured

    try:
        torch.device(device)
    except RuntimeError:
        raise OptionError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from None


def _init_flag(init: str) -> str:
    """The ``init`` setting as its user gave it: a flag of the command, a key of a Python caller's."""
    return f"init={init!r}" if current_keywords() is not None else f"--init {init}"


def _drop_model(model: Mapping[str, Any]) -> str:
    """How to drop the ``model`` overrides, as the caller gives them: the command's come from a
    recipe's [model] table, which "drop the model overrides {'features': 8}" showed as a Python dict."""
    if current_keywords() is not None:
        return f"drop the model overrides {model}"
    pairs = ", ".join(f"{key} = {json.dumps(value)}" for key, value in model.items())
    return f"drop the recipe's [model] table ({pairs})"


def _name_to_set(config: TrainConfig) -> str:
    """That the model name is not the ``init`` model's, and how to match them, as the caller
    sets the name: translated, the command's "--model (name) is 'x': drop -m x or use -m y"
    read "name (name) is 'x': drop name='x' or use name='y'" to a Python caller."""
    if current_keywords() is not None:
        return f"name is {config.name!r}: set name to {config.init!r}, or leave it out"
    return f"--model (name) is {config.name!r}: drop -m {config.name} or use -m {config.init}"


def _loss_example() -> str:
    """Loss weights as the caller gives them: the command's --loss text, a Python caller's dict."""
    return "loss={'l1': 1, 'ssim': 0.1}" if current_keywords() is not None else "--loss l1=1,ssim=0.1"


def is_model_name(init: str) -> bool:
    """Whether ``init`` names a registered model (bundled weights), not a weights file."""
    return not Path(init).suffix


def to_dict(config: Any) -> dict[str, Any]:
    """A JSON/TOML-friendly dict of a config dataclass (tuples become lists)."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, Mapping):
            return {str(k): conv(x) for k, x in v.items()}
        return v

    result = conv(config)
    assert isinstance(result, dict)  # a dataclass converts to a dict
    return result


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _convert(non_none[0], value, where)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise OptionError(f"{where} must be a table, got {value!r}")
        return from_dict(tp, value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise OptionError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise OptionError(f"{where} must have {len(args)} values, got {list(value)}")
        return tuple(
            _convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True))
        )
    if origin is dict:
        if not isinstance(value, Mapping):
            raise OptionError(f"{where} must be a table, got {value!r}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, bool):
        raise OptionError(f"{where} must be an integer, got {value!r}")
    # float too: optim.lr = "fast" reached the config's own checks as a string (a TypeError traceback).
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise OptionError(f"{where} must be {tp.__name__}, got {value!r}")
    return value


def from_dict(cls: type[Any], values: Mapping[str, Any], where: str = "") -> Any:
    """Build a config dataclass from a nested mapping, refusing unknown keys.

    ``where`` is the table ``values`` is, as the recipe writes its keys (``optim``,
    ``data.train[0]``; ``""`` for the top level): a line named ``config.optim.lr``, a key
    that no recipe has, beside the ``degradation.frames`` of the config's own checks.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        table = f" in {where}" if where else ""
        keys = "key" if len(unknown) == 1 else "keys"
        raise OptionError(f"unknown {keys} {in_words(unknown)}{table}; known: {', '.join(sorted(names))}")
    # An empty [[data.train]] table (a key without a default) was a TypeError traceback.
    needed = [f.name for f in dataclasses.fields(cls) if f.name not in values and _required(f)]
    if needed:
        raise OptionError(f"{where or 'the config'} has no {needed[0]}: add {needed[0]} = ... to that table")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def _required(f: dataclasses.Field[Any]) -> bool:
    """Whether a config field has no default: a table must give it."""
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def _merge(base: dict[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if value is None:
            continue
        if isinstance(value, Mapping) and key not in {"loss", "model"}:
            # Merge into the lower level's table, or an empty one: a nested
            # override such as {"optim": {"lr": None}} must not reach the
            # dataclass with its "not given" Nones when there is no recipe.
            lower = out.get(key)
            out[key] = _merge(dict(lower) if isinstance(lower, Mapping) else {}, value)
        else:
            out[key] = value
    return out


def _recipes_folder() -> Path:
    """``pipelines/*.toml`` as the package holds them: ``geosr/pipelines``, a link to them in the
    repository, so that a wheel, which has no pipelines/ folder, has them too."""
    return Path(str(resources.files("geosr") / "pipelines"))  # installed as files, as the weights


def bundled_recipes() -> list[str]:
    """The names of the recipes that come with geosr (``cnnrnn_fast_x4``, ...)."""
    return sorted(path.stem for path in _recipes_folder().glob("*.toml"))


def recipe_file(recipe: str | Path) -> Path:
    """The TOML file ``recipe`` names: a bundled recipe by its name (``cnnrnn_fast_x4``), else the
    path as given (one with a ``/`` or a suffix is always the file, as ``--model`` takes weights)."""
    p = Path(recipe)
    if len(p.parts) == 1 and not p.suffix and p.name in bundled_recipes():
        return _recipes_folder() / f"{p.name}.toml"
    return p


def read_recipe(path: str | Path) -> dict[str, Any]:
    """Parse a TOML recipe, a file or a bundled recipe's name, into a nested dict (no validation yet)."""
    p = recipe_file(path)
    if not p.is_file():
        # A folder (--recipe pipelines) was said not to exist, and so was a named pipe or a device.
        if p.is_dir():
            state = "is a folder, not a TOML file"
        else:
            state = "is not a regular file" if p.exists() else "does not exist"
        raise OptionError(
            f"recipe {p} {state}; give a TOML file or a bundled recipe's name: "
            + ", ".join(bundled_recipes())
        )
    try:
        # Without the byte-order mark some Windows editors write: 'Invalid statement (at line 1, column 1)'.
        return tomllib.loads(p.read_bytes().removeprefix(codecs.BOM_UTF8).decode("utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise OptionError(f"recipe {p} is not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:  # TOML is UTF-8: a Latin-1 'café' in a comment was a traceback
        byte, line = exc.object[exc.start], exc.object[: exc.start].count(b"\n") + 1
        what = f"byte {byte:#04x} at line {line}"
        raise OptionError(f"recipe {p} is not UTF-8 text: {what}; save it as UTF-8") from None
    except OSError as exc:  # no read permission, a failing disk: an OSError traceback
        raise OptionError(
            f"recipe {p} cannot be read ({exc.strerror or exc}); check its permissions, or copy it "
            "to a readable TOML file"
        ) from None


@python_api(flags=CONFIG_FLAGS)
def load_config(recipe: str | Path | None = None, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The run's configuration: ``overrides`` (CLI) over ``recipe`` over the defaults.

    ``overrides`` is nested like the recipe; ``None`` values mean "not given".
    A ``loss`` or ``model`` table replaces the lower level's table as a whole.  Its lines
    name the keys a Python caller gives (``init='cnnrnn-fast'``), ``geosr train``'s its flags.
    """
    merged: dict[str, Any] = {}
    if recipe is not None:
        merged = _merge(merged, read_recipe(recipe))
    if overrides:
        merged = _weights_follow_the_model(merged, overrides)
        merged = _weights_follow_the_output(merged, overrides)
        merged = _merge(merged, overrides)
    try:
        config = typing.cast(TrainConfig, from_dict(TrainConfig, merged))
    except OptionError as exc:
        if recipe is None or not _valid(overrides or {}):
            raise _named_as_set(exc, overrides or {}) from None
        # The options alone are valid, so the recipe is at fault: "steps must be int" did
        # not say which file to fix.
        raise OptionError(f"recipe {recipe}: {exc}") from None
    _check_model_table(config, recipe)
    return config


def _weights_follow_the_model(recipe: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe with its ``weights`` named for the model and scale the overrides give, where the
    recipe names them as the default does (``<name>_x<scale>``): ``geosr train --recipe
    cnnrnn_fast_x4 -s 2`` wrote its x2 model as cnnrnn-fast_x4.safetensors, and ``-m cnnrnn-best``
    a cnnrnn-best model as cnnrnn-fast_x4.  A name of the recipe's own choosing stays."""
    weights = recipe.get("weights")
    if not isinstance(weights, str) or overrides.get("weights") is not None:
        return recipe
    name, scale = recipe.get("name", TrainConfig.name), recipe.get("scale", TrainConfig.scale)
    given = (overrides.get("name") or name, overrides.get("scale") or scale)
    stem = PurePath(weights)
    if stem.name != f"{name}_x{scale}" or given == (name, scale):
        return recipe
    return recipe | {"weights": str(stem.with_name(f"{given[0]}_x{given[1]}"))}


def _weights_follow_the_output(recipe: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe with its ``weights`` moved into an ``output`` the overrides give, where they were
    in the recipe's own: ``geosr train --recipe cnnrnn_fast_x4 -o runs/mine`` wrote its config and
    checkpoints into runs/mine but the weights into the recipe's runs/cnnrnn_fast_x4, and a second
    such run into another folder was refused, as that file existed."""
    output, weights = recipe.get("output"), recipe.get("weights")
    if overrides.get("output") is None or overrides.get("weights") is not None:
        return recipe
    if not isinstance(output, str) or not isinstance(weights, str):
        return recipe
    try:
        inside = PurePath(weights).relative_to(PurePath(output))
    except ValueError:
        return recipe  # weights the recipe puts elsewhere on purpose stay there
    return recipe | {"weights": str(PurePath(overrides["output"]) / inside)}


def _check_model_table(config: TrainConfig, recipe: str | Path | None) -> None:
    """Build the recipe's ``[model]`` architecture once, to refuse a bad one before any data
    is read: ``features = "x"`` was told only when training began, and as "CNNRNNConfig.features
    must be an integer >= 1", which named neither the recipe nor its table.  A field's line names
    the key as the recipe writes it: "[model] CNNRNNConfig.features must be ...", the model
    config's own wording for a Python caller of it, named a class the recipe's user never wrote."""
    if not config.model or config.init is not None:  # only a recipe sets the table; --init brings its own
        return
    from geosr.models import build_model
    from geosr.models.registry import random_state_kept

    try:
        with random_state_kept():
            build_model(config.name, scale=config.scale, **config.model)
    except GeosrError as exc:
        where = f"recipe {recipe}: " if recipe is not None else ""
        message, named = _MODEL_FIELD.subn("model.", str(exc), count=1)
        raise OptionError(f"{where}{message if named else f'[model] {message}'}") from None


_MODEL_FIELD = re.compile(r"^\w+Config\.")
"""How a model config's checks name a field (``CNNRNNConfig.features``), where the [model] table
calls it ``model.features``."""


def _named_as_set(exc: OptionError, overrides: Mapping[str, Any]) -> OptionError:
    """``exc``, an error of the overrides, naming the flag that set its key where the command line
    gave it: ``geosr train --learning-rate -1`` was told "optim.lr must be a finite number > 0", a
    recipe's key, which its user never typed.  A Python caller's lines keep the keys it gives."""
    if current_keywords() is not None:
        return exc
    message = str(exc)
    for flag, key in CONFIG_FLAGS.items():
        if flag.startswith("--") and message.startswith(f"{key} ") and _given(overrides, key):
            return OptionError(f"{flag}{message.removeprefix(key)}")
    return exc


def _given(overrides: Mapping[str, Any], key: str) -> bool:
    """Whether ``overrides`` set the dotted ``key`` (``optim.lr``) to a value."""
    value: Any = overrides
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return False
        value = value.get(part)
    return value is not None


def _valid(overrides: Mapping[str, Any]) -> bool:
    """Whether ``overrides`` alone, over the defaults, make a valid :class:`TrainConfig`."""
    try:
        from_dict(TrainConfig, _merge({}, overrides))
    except OptionError:
        return False
    return True


def expand_path(path: str) -> str:
    """Expand ``${GEOSR_DATA_DIR}`` (default ``../shared/data``) and ``~``."""
    data_dir = os.environ.get(DATA_DIR_VAR) or DEFAULT_DATA_DIR
    path = path.replace("${" + DATA_DIR_VAR + "}", data_dir).replace("$" + DATA_DIR_VAR, data_dir)
    return str(Path(path).expanduser())


RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".vrt", ".img")


def resolve_sources(sources: tuple[SceneSource, ...], what: str) -> list[tuple[Path, SceneSource]]:
    """Expand files, folders and globs into ``(file, source)`` pairs, sorted, deduplicated."""
    out: list[tuple[Path, SceneSource]] = []
    seen: set[tuple[Path, SceneSource]] = set()  # (the file, its source less the pattern)
    for source in sources:
        pattern = expand_path(source.path)
        p = Path(pattern)
        if p.is_dir() and ((p / "zarr.json").exists() or (p / ".zgroup").exists()):
            # GDAL's own store (Y/X dimensions, a v3 form zarr-python refuses): xarray's export fails.
            export = (
                f"gdal_translate {pattern} hr.tif"
                if written_by_gdal(str(p))
                else "xr.open_zarr(STORE)[NAME].rio.to_raster('hr.tif')"
            )
            raise OptionError(
                f"{what} raster {pattern!r} is a Zarr store, which training does not read; write "
                f"its variable to a GeoTIFF first, e.g. {export}"
            )
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in RASTER_SUFFIXES)
        elif p.is_file():
            # Before the glob, as geosr run takes it: 'scene[1].tif' is that file, which as a
            # pattern matched only scene1.tif ("matches no raster").
            files = [p]
        elif any(ch in pattern for ch in "*?["):
            # recursive, as geosr run's: 'tiles/**/*.tif' matched one folder level only, not tiles/
            # itself nor deeper ones, and so matched no raster in a tree of tiles.
            files = sorted(Path(f) for f in glob.glob(pattern, recursive=True))  # noqa: PTH207  (absolute globs)
        else:
            message = f"{what} raster {pattern!r} does not exist{_where_looked(p, source.path)}"
            raise of_source(OptionError(message), source, "path")
        if not files:
            message = f"{what} pattern {pattern!r} matches no raster{_where_looked(p, source.path)}"
            raise of_source(OptionError(message), source, "path")
        for f in files:
            # One file, the same part of it, from two patterns ('tiles/*.tif tiles/a.tif', or
            # a.tif relative and absolute) once: it was sampled twice as often, without a word.
            key = (f.resolve(), dataclasses.replace(source, path=""))
            if key not in seen:
                seen.add(key)
                out.append((f, source))
    return out


def _where_looked(path: Path, given: str) -> str:
    """Where a raster or pattern that found nothing was looked for."""
    return _relative_to_cwd(path) + _data_dir_note(given) + _unexpanded_note(expand_path(given))


def _unexpanded_note(pattern: str) -> str:
    """For a path still holding a variable once expanded (``${HOME}/hr.tif``), that it was read as
    written: "raster '${HOME}/hr.tif' does not exist" did not say that no other variable is expanded."""
    variable = re.search(r"\$\{?[A-Za-z_]\w*\}?", pattern)
    if variable is None:
        return ""
    return (
        f"; only ${{{DATA_DIR_VAR}}} and ~ are expanded in paths, so {variable.group()} was read as written"
    )


def _data_dir_note(path: str) -> str:
    """For a path given with ``${GEOSR_DATA_DIR}``, what the variable stood for: a bundled recipe
    run where it is unset (a pip install, away from the repository) read ``../shared/data``, and
    "matches no raster" did not say that setting it was the fix."""
    if DATA_DIR_VAR not in path:
        return ""
    if os.environ.get(DATA_DIR_VAR):
        return f"; {DATA_DIR_VAR}={os.environ[DATA_DIR_VAR]}"
    return f"; {DATA_DIR_VAR} is unset, so it stood for {DEFAULT_DATA_DIR}: set it to the folder of the data"


def _relative_to_cwd(path: Path) -> str:
    """For a relative path, where it was looked for: a recipe's relative paths are read from
    the current directory, not the recipe's folder, which a recipe run from elsewhere missed."""
    if path.is_absolute():
        return ""
    return f" in the current directory {Path.cwd()} (relative paths, a recipe's too, are read from there)"


def check_held_out(train: tuple[SceneSource, ...], val: tuple[SceneSource, ...]) -> None:
    """Refuse a validation raster (part) that training reads too.

    Validation rasters are "never trained on" (``geosr train --help``): a training
    glob that also matches the validation file would make the validation PSNR one
    on training data.  Parts of one file split by ``rows``/``cols`` (the recipes'
    Sentinel-2 halves), or other bands of it, are held out and pass.
    """
    if not val:
        return
    trained = [(f.resolve(), s) for f, s in resolve_sources(train, "training")]
    for f, v in resolve_sources(val, "validation"):
        for g, t in trained:
            bands = not t.bands or not v.bands or bool(set(t.bands) & set(v.bands))
            if g == f.resolve() and bands and _overlap(t.rows, v.rows) and _overlap(t.cols, v.cols):
                # Both sides: the validation raster alone did not say which training entry to edit
                # (a folder or glob that matches it, one of many).
                message = (
                    f"{f} is both a training and a validation raster (the training rasters "
                    f"{expand_path(t.path)!r} include it), but validation rasters are never trained on: "
                    "leave it out of the training rasters (a glob or folder may match it), or split "
                    "it with rows/cols in a recipe"
                )
                raise of_source(OptionError(message), v, "path", also=t)


def _overlap(a: tuple[float, float], b: tuple[float, float]) -> bool:
    """Whether two [start, stop) fractions of a scene share pixels."""
    return a[0] < b[1] and b[0] < a[1]


_SOURCE = "geosr_scene_source"
"""The attribute of an error of one :class:`SceneSource` that holds it and its key (:func:`of_source`)."""


def of_source(exc: GeosrError, source: SceneSource, key: str, also: SceneSource | None = None) -> GeosrError:
    """``exc``, marked as an error of ``source``'s ``key`` (``path``, ``bands``), for
    :func:`sources_named` to name the recipe's table that gives it, and that of ``also``, another
    source the error is of (the training source that reads a validation raster)."""
    setattr(exc, _SOURCE, (source, key, also))
    return exc


@contextlib.contextmanager
def sources_named(data: DataConfig, recipe: str | Path | None) -> Iterator[None]:
    """Within: an error of one of ``data``'s sources (:func:`of_source`) that the recipe gives
    names the recipe and the source's key: "training raster 'b.tif' does not exist", "a.tif has 1
    band(s); bands [0] do not exist" and a validation raster trained on were raised where no recipe
    is known, and did not say which file, nor which of its tables, to fix.

    A source given otherwise (``geosr train``'s rasters, a Python caller's) keeps its line.
    """
    try:
        yield
    except GeosrError as exc:
        source, key, also = getattr(exc, _SOURCE, (None, None, None))
        where = _recipe_key(data, recipe, source) if source is not None else None
        if where is None:
            raise
        other = _recipe_key(data, recipe, also) if also is not None else None
        keys = f"{where}.{key}" + (f" and {other}.{key}" if other is not None else "")
        raise type(exc)(f"recipe {recipe}: {keys}: {exc}") from None


def _recipe_key(data: DataConfig, recipe: str | Path | None, source: SceneSource) -> str | None:
    """The key (``data.train[2]``) of ``source`` where the recipe gives it, else None."""
    if recipe is None:
        return None
    tables = read_recipe(recipe).get("data", {})
    for table in ("train", "val"):
        given = tables.get(table, []) if isinstance(tables, Mapping) else []
        for k, entry in enumerate(getattr(data, table)):
            if entry is source and k < len(given) and given[k].get("path") == source.path:
                return f"data.{table}[{k}]"
    return None
