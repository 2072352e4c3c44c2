"""The training loop: deterministic, resumable, CPU or CUDA (bf16 autocast).

A run is a function of its :class:`~geosr.train.config.TrainConfig`: batch
``k`` is drawn from ``(seed, k)`` (:mod:`geosr.train.data`), and a checkpoint
holds everything else that evolves (model, optimiser, scheduler, RNG states,
step), so a run interrupted and resumed with ``resume=True`` ends with the same
weights, bit for bit on CPU in fp32, as one that was never interrupted.

Output folder (``config.output``)::

    config.json              the run's configuration (checked on resume)
    checkpoints/last.*       the latest checkpoint (safetensors + JSON)
    <name>_x<scale>.*        the trained weights and model card (or config.weights)
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from geosr.errors import (
    InputError,
    ModelError,
    OptionError,
    OutputError,
    current_keywords,
    in_words,
    python_api,
)
from geosr.io.atomic import is_foreign_directory, lock_held, unwritable_folder
from geosr.models.base import SRModel
from geosr.models.bicubic import bicubic_upsample
from geosr.models.card import ModelCard
from geosr.models.flops import flops_per_lr_pixel
from geosr.models.weights import card_of, paths_to_write, save_weights, weights_paths
from geosr.train.checkpoint import NAME as CHECKPOINT_NAME
from geosr.train.checkpoint import (
    TrainState,
    has_checkpoint,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from geosr.train.config import (
    CONFIG_FLAGS,
    SceneSource,
    TrainConfig,
    check_held_out,
    expand_path,
    is_model_name,
    sources_named,
    to_dict,
    weights_stem_in,
)
from geosr.train.data import (
    NORMALISATION,
    ChipSampler,
    StoreSampler,
    load_scenes,
    scene_names,
    validation_set,
)
from geosr.train.losses import build_loss

# Fields that may change between an interrupted run and its resumption.  The output is the
# folder resumed, however it is spelt and wherever it was moved or copied to.
RESUMABLE_CHANGES = frozenset({"threads", "device", "log_every", "output"})

_PATH_FIELDS = ("perceptual_net", "init", "weights")
"""Top-level configuration fields that hold a path (``init`` may hold a model name instead)."""

ProgressFn = Callable[[int, int, dict[str, float]], None]
"""Called as ``(step, total, {"loss": ..., "psnr": ...})`` after every logged step."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished (or stopped) run produced."""

    weights: Path | None
    card: Path | None
    step: int
    metrics: dict[str, float]
    seconds: float
    steps_per_second: float
    history: list[dict[str, float]] = field(default_factory=list)


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; validates explicit devices."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise OptionError(f"unknown device {device!r}: use auto, cpu or cuda[:N]") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise OptionError(f"device {device!r} asked for, but CUDA is not available: use --device cpu")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype: bf16 where the hardware has it (CUDA, AVX-512 BF16/AMX CPUs), else fp32.

    On CPUs with AMX, bf16 autocast with channels_last makes a training step of
    the bundled models about 2.5x faster than fp32 (oneDNN runs forward and
    backward convolutions in bf16; weights, gradients and the optimiser stay fp32).
    """
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    from geosr.predictor import cpu_has_bf16

    return torch.bfloat16 if cpu_has_bf16() else None


def build_model(config: TrainConfig) -> nn.Module:
    """The model to train: from the registry, or from ``config.init``'s weights (fine-tuning)."""
    from geosr.models import build_model as registry_build

    if config.init is not None:
        model = initial_model(config.init, config.scale)
        # As for a bundled name (TrainConfig): the weights and card would carry a name
        # that is not the model's, and so would every output's GEOSR_MODEL tag.
        if getattr(model, "name", config.name) != config.name:
            raise OptionError(
                f"--init {config.init} holds a {model.name} model (its card), but "
                f"{_name_to_match(config.name, str(model.name))}"
            )
    else:
        model = registry_build(config.name, scale=config.scale, **config.model)
    if not any(p.requires_grad for p in model.parameters()):
        raise OptionError(f"model {config.name!r} has no trainable parameter")
    return model


def initial_model(init: str, scale: int) -> nn.Module:
    """The model of a weights file (or of a registered name's bundled weights), loaded."""
    from geosr.models.registry import bundled_weights, model_from_card
    from geosr.models.weights import apply_state, load_weights, local_path

    path = local_path(init)  # not Path(init): a URL's '//' folded into 'https:/host/...'
    if is_model_name(init):  # e.g. "cnnrnn-fast"
        try:
            bundled = bundled_weights(init, scale)
        except ModelError as exc:
            # The registry's line is geosr run's: it named no --init, and for the bundled file's stem
            # said 'give --model cnnrnn-fast --scale 4', which trains a new model, not this one.
            raise ModelError(f"--init {init}: {exc}".replace("give --model ", "give --init ")) from None
        if bundled is None:
            raise OptionError(
                f"init={init!r}: no bundled x{scale} weights of that name; give a .safetensors file"
            )
        path = bundled
    state, card = load_weights(path)
    if card.scale != scale:
        raise OptionError(
            f"init weights {path} are x{card.scale}, the run is x{scale}: use a matching --scale"
        )
    _check_trainable(card, path)
    model = model_from_card(card, source=card_of(path))
    try:
        apply_state(model, state)
    except ModelError as exc:  # "weights do not fit model cnnrnn-fast" did not say which file
        raise ModelError(f"--init {path}: {exc}") from None
    return model


def _check_trainable(card: ModelCard, path: Path) -> None:
    """Refuse ``--init`` weights whose card training cannot keep.

    Training feeds one band at a time, normalised by its percentiles (:data:`NORMALISATION`),
    and writes that in the new card: a model built for a band layout failed at the first
    step ('built for 4 bands, the input has 1' of a 4-band raster), and a ``dtype-range``
    model was silently retrained on other input values, its card's normalisation replaced.
    """
    from geosr.normalise import normalisation_from_card

    channels = card.config.get("in_channels", 1)
    if channels != 1:
        bands = f" ({','.join(card.bands)})" if card.bands else ""
        what = f"its model sees {channels} bands at once{bands}"
    elif normalisation_from_card(card.normalisation) != normalisation_from_card(NORMALISATION):
        what = f"its card normalises by {' '.join(f'{k}={v}' for k, v in card.normalisation.items())}"
    else:
        return
    raise OptionError(
        f"--init {path}: {what}, but geosr train fine-tunes band by band on inputs normalised by "
        f"their 0.1/99.9 percentiles; start from a band-agnostic percentile model such as cnnrnn-fast"
    )


def init_record(init: str, scale: int) -> dict[str, Any]:
    """What a fine-tuned card says of the weights it started from (``--init``).

    The run's options keep ``init`` only as given (a bundled name, or a path relative to
    the folder training ran in), which says nothing once the card is read elsewhere, or
    once geosr's bundled weights are retrained: the parent's absolute path, name, date,
    version and steps do.
    """
    from geosr.models.registry import bundled_weights
    from geosr.models.weights import read_card

    bundled = bundled_weights(init, scale) if is_model_name(init) else None
    weights = weights_paths(bundled or Path(init))[0]
    card = read_card(card_of(weights))
    return {
        "weights": f"{init} (bundled x{scale})" if bundled else str(weights.resolve()),
        "name": card.name,
        "date": card.date,
        "geosr_version": card.geosr_version,
        "steps": card.training.get("steps"),
    }


def lr_lambda(config: TrainConfig) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay (or constant) as a factor of ``optim.lr``."""
    opt = config.optim
    warmup = max(0, min(opt.warmup, config.steps - 1))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if opt.schedule == "constant":
            return 1.0
        t = (step - warmup) / max(1, config.steps - warmup)
        return opt.min_lr_ratio + (1 - opt.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


_Array = TypeVar("_Array", np.ndarray, torch.Tensor)


def _inside(x: _Array, border: int) -> _Array:
    """``x`` without ``border`` pixels on each side of its last two axes."""
    return x[..., border:-border, border:-border] if border else x


def psnr_batch(pred: torch.Tensor, target: torch.Tensor, border: int) -> torch.Tensor:
    """PSNR per image with data range 1 (normalised units), ``border`` HR pixels excluded."""
    pred, target = _inside(pred, border), _inside(target, border)
    mse = ((pred.double() - target.double()) ** 2).mean(dim=(1, 2, 3)).clamp_min(1e-12)
    return -10.0 * torch.log10(mse)


def _name_to_match(name: str, held: str) -> str:
    """That the model ``name`` is not the ``held`` one of ``--init``, and how to match them, as the
    caller sets the name: the command's "--model (name) is 'x': drop -m x or use -m y" read
    "config.name (name) is 'x': drop config.name='x' or use config.name='y'" to a Python caller."""
    if current_keywords() is not None:
        return f"config.name is {name!r}: set it to {held!r}"
    return f"--model (name in a recipe) is {name!r}: drop -m {name} or use -m {held}"


def _larger_chips_or_border() -> str:
    """How to leave validation chips an inside: the settings as the caller sets them.

    The command's line, translated for a Python caller of :func:`train`, read "use larger chips
    (config.data.lr_chip with --lr/--hr or config.data.store, data.val_lr_chip otherwise) or a
    smaller data.val_border in a recipe": flags it cannot pass and a recipe it may not have.
    """
    if current_keywords() is not None:
        return (
            ": use larger chips (config.data.lr_chip with config.data.store, config.data.val_lr_chip "
            "otherwise) or a smaller config.data.val_border"
        )
    return (
        " (data.val_border): use larger chips (--chip with --lr/--hr or --store, data.val_lr_chip "
        "otherwise) or a smaller data.val_border in a recipe"
    )


class Validator:
    """Fixed validation chips and the bicubic baseline on them.

    Chips whose HR is constant inside the border are left out: they have no
    detail to restore and an unbounded PSNR (bicubic reproduces them exactly),
    so one of them outweighs dozens of real chips in the mean PSNR (three such
    chips, from saturated or filled areas, had put the x2 recipe's validation
    gain at -0.88 dB while its held-out Wald gain was +1.12 dB).
    When every chip is constant there is nothing to validate on: ``source`` (the
    validation rasters or store) is named in an :class:`InputError`, raised here,
    before the first step, rather than at the first validation.
    """

    def __init__(
        self,
        lr: np.ndarray,
        hr: np.ndarray,
        *,
        scale: int,
        border: int,
        device: torch.device,
        source: str = "the validation data",
    ):
        size = min(hr.shape[-2:])
        if 2 * border >= size:
            # Else an empty inside: numpy's "zero-size array" traceback (--chip 8 -s 2 on pairs).
            raise OptionError(
                f"{source}: validation chips of {size} HR px leave nothing inside their {border}-px "
                f"border{_larger_chips_or_border()}"
            )
        inner = _inside(hr, border)
        textured = np.ptp(inner.reshape(len(inner), -1), axis=1) > 0
        if not textured.any():
            raise InputError(
                f"{source}: every validation chip is constant inside its {border}-px border (a flat, "
                "saturated or filled area), so no PSNR can be measured; give validation rasters with detail"
            )
        self.lr = torch.from_numpy(np.ascontiguousarray(lr[textured])).to(device)
        self.hr = torch.from_numpy(np.ascontiguousarray(hr[textured])).to(device)
        self.scale = scale
        self.border = border
        bic = bicubic_upsample(self.lr[:, 0], scale, torch.float32)
        self.psnr_bicubic = float(psnr_batch(bic, self.hr, border).mean())

    @torch.no_grad()
    def __call__(self, model: nn.Module, autocast: torch.dtype | None, batch: int = 8) -> float:
        was_training = model.training
        model.eval()
        values = []
        for i in range(0, self.lr.shape[0], batch):
            with torch.autocast(
                self.lr.device.type, dtype=autocast or torch.float32, enabled=autocast is not None
            ):
                pred = model(self.lr[i : i + batch]).float()
            values.append(psnr_batch(pred, self.hr[i : i + batch], self.border))
        model.train(was_training)
        return float(torch.cat(values).mean())


def _validator(
    lr: np.ndarray, hr: np.ndarray, config: TrainConfig, device: torch.device, source: str
) -> Validator:
    """The :class:`Validator` of a run on the chips ``lr``/``hr``, cut from ``source``."""
    return Validator(lr, hr, scale=config.scale, border=config.data.val_border, device=device, source=source)


def _check_resume_config(output: Path, config: TrainConfig) -> None:
    stored = read_checkpoint_config(output / "checkpoints")
    current = to_dict(config)
    stored, current = _paths_as_files(stored), _paths_as_files(current)
    diff = sorted(
        k
        for k in set(stored) | set(current)
        if k not in RESUMABLE_CHANGES and stored.get(k) != current.get(k)
    )
    if diff:
        where, then, now = _first_difference(stored.get(diff[0]), current.get(diff[0]), diff[0])
        raise OptionError(
            f"cannot resume {output}: the configuration differs in {in_words(diff)} "
            f"({where}: {then!r} in the run, {now!r} now); resume with the same recipe and options, "
            "or choose a new --output"
        )


def _paths_as_files(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` (:func:`to_dict`'s) with its paths as the files they name from here, and those
    inside its run folder relative to it, to compare a run with its resumption.

    A run resumed with its folder or its data spelt another way (``-o /abs/run`` for ``-o run``,
    from the same directory) was refused as another configuration, and so was a run folder
    copied elsewhere, by the paths inside it (the paired store's).
    """
    folder = Path(expand_path(str(config.get("output") or "."))).resolve()

    def as_file(path: Any) -> Any:
        if not isinstance(path, str):
            return path
        file = Path(expand_path(path)).resolve()
        return f"<run folder>/{file.relative_to(folder)}" if file.is_relative_to(folder) else str(file)

    init = config.get("init")
    named = {"init"} if isinstance(init, str) and is_model_name(init) else set()  # --init cnnrnn-fast
    out = {**config, **{k: as_file(config[k]) for k in _PATH_FIELDS if k in config and k not in named}}
    data = config.get("data")
    if isinstance(data, dict):
        sources = {
            split: [{**source, "path": as_file(source.get("path"))} for source in data.get(split) or []]
            for split in ("train", "val")
        }
        out["data"] = {**data, **sources, "store": as_file(data.get("store"))}
    return out


def _first_difference(then: Any, now: Any, where: str) -> tuple[str, Any, Any]:
    """The first leaf where two configuration values differ, e.g. ``data.train[0].path``.

    "differs in ['data']" alone left the user to guess: a training path spelt relative
    to another directory, a --chip, a recipe's validation scene ...
    """
    if isinstance(then, dict) and isinstance(now, dict):
        for key in sorted(set(then) | set(now)):
            if then.get(key) != now.get(key):
                return _first_difference(then.get(key), now.get(key), f"{where}.{key}")
    if isinstance(then, list) and isinstance(now, list) and len(then) == len(now):
        for i, (a, b) in enumerate(zip(then, now, strict=True)):
            if a != b:
                return _first_difference(a, b, f"{where}[{i}]")
    return where, then, now


def check_run_output(
    config: TrainConfig, *, resume: bool, overwrite: bool, new_store: Path | None = None
) -> None:
    """Refuse, before anything is written, to replace an earlier run without being asked.

    Parameters
    ----------
    config : TrainConfig
    resume, overwrite : bool
        ``--resume`` continues the run in ``config.output`` (one into a folder that holds
        no run is checked as a new run); ``--overwrite``
        replaces it (and the weights file, and a store to rebuild).
    new_store : Path, optional
        The training store this run will build (from ``--lr/--hr``), if any.

    Raises
    ------
    OutputError
        The run folder holds a run, the weights file or the store exists (and
        neither flag was given), a path is taken by something else, or the run folder
        or the weights' folder cannot take new files (a read-only file system).
    ModelError
        ``--weights`` with a pickle suffix (``mine.pt``).
    """
    output = Path(config.output)
    _check_run_folder(output)  # before the weights' folder: the run folder holds them by default
    weights = paths_to_write(config.weights_stem)  # --weights mine.pt, or in a read-only folder
    _check_store_path(new_store)
    _check_no_foreign_run(output)
    if overwrite:
        return
    holds_run = (output / "config.json").exists() or (output / "checkpoints").exists()
    if resume and holds_run:
        _check_resumed_store(output, new_store)
        return
    _check_nothing_replaced(output, holds_run, weights, new_store)


def _check_run_folder(output: Path) -> None:
    """Refuse a run folder ``output`` that is a file or cannot take new files (a read-only
    file system), before training, not after.

    Raises
    ------
    OutputError
        ``output`` is a file, or cannot be written.
    """
    if output.exists() and not output.is_dir():
        raise OutputError(f"-o {output} is a file, not a run folder: choose another --output")
    why = unwritable_folder(output)
    if why is not None:
        raise OutputError(f"cannot write the run folder {output} ({why}); choose another --output")


def _check_store_path(new_store: Path | None) -> None:
    """Refuse to build the training store ``new_store`` over a file or a folder of other files.

    Raises
    ------
    OutputError
        ``new_store`` is a file, or a folder that is not a training store.
    """
    if new_store is not None and new_store.is_file():
        # --overwrite went on to build the store there: a FileExistsError traceback from zarr.
        raise OutputError(
            f"--store {new_store} is a file, not a training store (a .zarr folder), which building "
            "would replace: choose another --store path"
        )
    if new_store is not None and is_foreign_directory(new_store):
        raise OutputError(
            f"--store {new_store} is a folder of other files, not a training store, which building "
            "would delete: choose another --store path"
        )


def _check_no_foreign_run(output: Path) -> None:
    """Refuse a run folder whose ``config.json`` or ``checkpoints`` geosr train did not write:
    --overwrite would replace them, --resume take them up.

    Raises
    ------
    OutputError
        ``config.json`` is no training run's configuration, or ``checkpoints`` holds other files.
    """
    if _foreign_config(output / "config.json"):
        raise OutputError(
            f"{output / 'config.json'} is not the configuration of a training run: --overwrite replaces "
            "and --resume continues a run of geosr train, never a file it did not write; choose "
            "another --output"
        )
    if _foreign_checkpoints(output / "checkpoints"):
        raise OutputError(
            f"{output / 'checkpoints'} holds files that are not a training run's checkpoint: --overwrite "
            "replaces a run of geosr train, never a folder of other files; choose another --output"
        )


def _check_nothing_replaced(
    output: Path, holds_run: bool, weights: Sequence[Path], new_store: Path | None
) -> None:
    """Refuse a new run that would replace an earlier run, weights file or store, unasked.

    A --resume of a folder that holds no run starts one, which must not replace the user's
    weights file or store either (it did: -o misspelt, --weights of an earlier model).

    Parameters
    ----------
    output : Path
        The run folder.
    holds_run : bool
        Whether it holds a run.
    weights : sequence of Path
        The files of the weights the run writes.
    new_store : Path, optional
        The training store the run builds, if any.

    Raises
    ------
    OutputError
        ``output`` holds a run, or a weights file or ``new_store`` exists.
    """
    if holds_run:
        raise OutputError(
            f"{output} already holds a training run: pass --resume to continue it, --overwrite to "
            "replace it, or choose another --output"
        )
    for path in weights:
        if path.exists():
            raise OutputError(
                f"{path} already exists: pass --overwrite to replace it, or choose another --weights"
            )
    if new_store is not None and new_store.exists():
        raise OutputError(
            f"training store {new_store} already exists: train on it with --store and no --lr/--hr, "
            "pass --overwrite to rebuild it, or choose another --store"
        )


RUN_LOCK = ".geosr-train.lock"
"""The file in a run folder that a training run holds (``flock``) while it writes there."""


@contextlib.contextmanager
def run_folder_held(output: Path) -> Iterator[Path | None]:
    """Within: this process alone writes the run folder ``output`` (it is made if missing).

    Two ``geosr train`` into one folder at once both ran to exit status 0, each replacing the
    other's checkpoints, ``config.json``, weights and card, so that the folder could hold the
    configuration of one run and the weights of the other.

    Yields
    ------
    Path or None
        The top-most folder made here (``output`` or a parent of it), None if it existed.

    Raises
    ------
    OutputError
        Another process holds the folder (the line names its pid), or it cannot be made.
    """
    top = output.absolute()
    while not top.parent.exists():
        top = top.parent
    made: Path | None = top

    def unable(why: str) -> str:
        return f"cannot write the run folder {output} ({why}); choose another --output"

    try:
        output.mkdir(parents=True)
    except FileExistsError:
        made = None  # it was there, or another run made it just now: not ours to remove
    except OSError as exc:
        raise OutputError(unable(exc.strerror or str(exc))) from None
    with lock_held(
        output / RUN_LOCK,
        lambda pid: (
            f"cannot write the run folder {output}: another geosr train (pid {pid}) is "
            "writing it right now; wait for it to finish, or choose another --output"
        ),
        unable,
    ):
        yield made


@contextlib.contextmanager
def store_held(store: Path | None) -> Iterator[None]:
    """Within: this process alone builds (and trains on) the training store ``store`` (None:
    nothing to hold); its folder is made if missing.

    Two runs that build one ``--store`` from their pairs at once (into other run folders)
    each removed what the other wrote, and both ended in a traceback ("Directory not empty",
    "does not exist").  The lock is ``.<store name>.geosr-lock`` beside the store.
    """
    if store is None:
        yield
        return

    def unable(why: str) -> str:
        return f"cannot build the training store {store} ({why}); choose another --store"

    try:
        store.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(unable(exc.strerror or str(exc))) from None
    with lock_held(
        store.parent / f".{store.name}.geosr-lock",
        lambda pid: (
            f"cannot build the training store {store}: another geosr train (pid {pid}) is "
            "building or training on it right now; wait for it to finish, or choose another "
            "--store"
        ),
        unable,
    ):
        yield


RUN_CONFIG_KEYS = frozenset({"name", "scale", "steps", "data", "optim", "output"})
"""Keys every training run's ``config.json`` has had (:func:`to_dict` of a :class:`TrainConfig`)."""


def _foreign_config(path: Path) -> bool:
    """Whether ``path`` (a run folder's ``config.json``) is there and no training run wrote it.

    A folder of the user's files given as -o was taken for a run folder by its own
    ``config.json``: 'already holds a training run', and --overwrite replaced that file.
    """
    if not (path.exists() or path.is_symlink()):
        return False
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # a folder, unreadable, not JSON (UnicodeDecodeError is one)
        return True
    return not (isinstance(values, dict) and values.keys() >= RUN_CONFIG_KEYS)


def _foreign_checkpoints(folder: Path) -> bool:
    """Whether ``folder`` (a run folder's ``checkpoints``) is there and holds anything but a
    checkpoint (``last.safetensors``, ``last.json`` and their temporaries): a new run over an
    earlier one deletes it whole, and deleted a folder of the user's own checkpoints so."""
    if not (folder.exists() or folder.is_symlink()):
        return False
    if not folder.is_dir() or folder.is_symlink():
        return True
    ours = {f"{CHECKPOINT_NAME}.safetensors", f"{CHECKPOINT_NAME}.json"}
    return any(
        child.name not in ours and not child.name.startswith(tuple(f".{name}." for name in ours))
        for child in folder.iterdir()
    )


def _check_resumed_store(output: Path, new_store: Path | None) -> None:
    """Refuse to rebuild, for a resumed run, an existing store that is not the run's own.

    The store is built before the resumed configuration is checked: another job's store
    given as --store was replaced by this run's chips, and then the resume was refused.
    """
    config = output / "config.json"
    if new_store is None or not new_store.exists() or not config.is_file():
        return
    own = json.loads(config.read_text(encoding="utf-8")).get("data", {}).get("store")
    if own is None or Path(own).absolute() != new_store.absolute():
        how = f"resume with its own, --store {own}" if own else "that run trained on no store"
        raise OutputError(
            f"training store {new_store} already exists and is not the store of the run in {output}: "
            f"{how}, or choose another --store"
        )


TRAIN_FLAGS = {flag: f"config.{key}" for flag, key in CONFIG_FLAGS.items()}
"""The TrainConfig field each flag of ``geosr train`` sets, which a Python caller of :func:`train` sets."""


@python_api(flags=TRAIN_FLAGS)
def train(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: ProgressFn | None = None,
    stop_after: int | None = None,
    recipe: str | None = None,
    started: Callable[[], None] | None = None,
) -> TrainResult:
    """Train (or resume training) a model as ``config`` says.

    Parameters
    ----------
    config : TrainConfig
        As :func:`~geosr.train.config.load_config` builds it (a recipe, overrides).
    resume : bool, default False
        Continue from ``<output>/checkpoints/last.*`` when it exists (else start).
    overwrite : bool, default False
        Replace the run in ``config.output`` and the weights file, where they exist: without
        it (or ``resume``) an earlier run is refused before anything is written, as
        ``geosr train`` refuses it (:func:`check_run_output`).
    progress : callable, optional
        Progress callback, see :data:`ProgressFn`.
    stop_after : int, optional
        Stop (with a checkpoint) after this global step, as if interrupted.
    recipe : str, optional
        Recipe path, recorded in the model card.
    started : callable, optional
        Called once the training data is read and the run folder written, before the first step.

    Returns
    -------
    TrainResult
        ``weights``/``card`` are None when stopped before ``config.steps``.

    Notes
    -----
    Training seeds torch's, numpy's and Python's global random generators, runs with
    torch's default dtype float32 and, with ``config.threads``, sets torch's threads: the
    caller's are back when it returns.  It computes gradients also where the caller has
    turned them off (``torch.no_grad()``).
    """
    if not isinstance(config, TrainConfig):
        # A dict of the recipe's keys was AttributeError "'dict' object has no attribute 'device'".
        raise OptionError(
            f"train takes a TrainConfig, not a {type(config).__name__}: build it with "
            "geosr.train.load_config(recipe, overrides), overrides a dict of the recipe's keys"
        )
    # A second call into one folder replaced the first run's weights and card without a word.
    check_run_output(config, resume=resume, overwrite=overwrite)
    # Gradients whatever the caller's mode: inside torch.no_grad() or inference_mode(), or after
    # torch.set_grad_enabled(False) (an inference notebook), the first step failed in torch's
    # traceback "element 0 of tensors does not require grad and does not have a grad_fn".
    with (
        _callers_state_kept(resolve_device(config.device)),
        torch.inference_mode(False),
        torch.enable_grad(),
    ):
        try:
            return _train(
                config,
                resume=resume,
                progress=progress,
                stop_after=stop_after,
                recipe=recipe,
                started=started,
            )
        except (MemoryError, torch.OutOfMemoryError) as exc:
            # A recipe's batch_size = 100000000 (a zero too many) was numpy's traceback "Unable to
            # allocate 252. GiB for an array with shape (100000000, 1, 26, 26) ...".
            raise OptionError(
                f"out of memory: {exc}; lower --batch-size or --chip, or data.val_chips or "
                "data.val_lr_chip in a recipe"
            ) from None


@contextlib.contextmanager
def _callers_state_kept(device: torch.device) -> Iterator[None]:
    """Within: the process-wide settings training changes; after: the caller's again.

    A notebook that trained a model went on with torch on ``threads`` threads and drew the
    same "random" numbers after every training of one seed.
    """
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    numpy_state, python_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    # float32 whatever the caller's default: after torch.set_default_dtype(torch.float64) the
    # model was built, trained and saved in float64, with other weights than the recipe gives.
    torch.set_default_dtype(torch.float32)
    gpus = (
        [torch.cuda.current_device() if device.index is None else device.index]
        if device.type == "cuda"
        else []
    )
    try:
        with torch.random.fork_rng(devices=gpus):
            yield
    finally:
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)
        np.random.set_state(numpy_state)  # noqa: NPY002
        random.setstate(python_state)


def _train(
    config: TrainConfig,
    *,
    resume: bool,
    progress: ProgressFn | None,
    stop_after: int | None,
    recipe: str | None,
    started: Callable[[], None] | None,
) -> TrainResult:
    """:func:`train`, which keeps the caller's threads and random states around it."""
    paths_to_write(config.weights_stem)  # refused before training, not once it has ended
    if config.threads:
        torch.set_num_threads(config.threads)
    run, parent = _set_up(config)
    with sources_named(config.data, recipe):
        sampler, validator = _training_data(config, run.device)
    state = _started(config, run, resume=resume)
    if started is not None:
        started()
    start_step = state.step
    if _steps_taken(config, run, state, sampler, validator, progress, stop_after):
        return _result(None, None, state, {}, start_step)
    metrics = _final_metrics(validator, run.model, run.autocast)
    card = _card(config, run.model, state, metrics, parent=parent, recipe=recipe)
    model_cpu = run.model.to("cpu")
    weights, card_path = save_weights(model_cpu, card, config.weights_stem)
    return _result(weights, card_path, state, metrics, start_step)


@dataclass
class _Run:
    """What a run trains and how, as :func:`_set_up` makes it from the configuration."""

    model: SRModel
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    device: torch.device
    autocast: torch.dtype | None
    """The forward pass's autocast dtype, None for float32 throughout."""
    output: Path
    config_dict: dict[str, Any]
    """The configuration as ``config.json`` and the checkpoints record it."""

    @property
    def checkpoints(self) -> Path:
        """The folder of the run's checkpoint."""
        return self.output / "checkpoints"

    def checkpoint(self, state: TrainState) -> None:
        """Write the run's checkpoint at ``state``."""
        save_checkpoint(
            self.checkpoints,
            model=self.model,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            state=state,
            config=self.config_dict,
        )


def _set_up(config: TrainConfig) -> tuple[_Run, dict[str, Any]]:
    """The device, the seeded model, its optimiser and loss of a run as ``config`` says.

    Returns
    -------
    run : _Run
        The model (in training mode), its optimiser, schedule and loss, and where it runs.
    parent : dict
        What the model card records of the ``init`` weights (empty without).

    Raises
    ------
    GeosrError
        The device, precision, model, ``init`` weights or loss cannot be had.
    """
    device = resolve_device(config.device)
    autocast = resolve_precision(config.precision, device)
    config_dict = to_dict(config)

    _seed_everything(config.seed)

    # channels_last: oneDNN's fast convolution layout on CPUs, tensor cores' on GPUs.
    model = build_model(config).to(device, memory_format=torch.channels_last)  # type: ignore[call-overload]
    # Read now, while the run starts: the file may have moved by the time the card is written.
    parent = {"init": init_record(config.init, config.scale)} if config.init is not None else {}
    model.train()
    optimizer, scheduler = _optimiser(model, config)
    loss_fn = build_loss(config.loss, perceptual_net=config.perceptual_net, device=device)
    run = _Run(model, optimizer, scheduler, loss_fn, device, autocast, Path(config.output), config_dict)
    return run, parent


def _started(config: TrainConfig, run: _Run, *, resume: bool) -> TrainState:
    """The state the run starts from, its last checkpoint's where it resumes one (its
    configuration checked), with the run folder and its ``config.json`` written.

    Raises
    ------
    OptionError
        The resumed run's configuration differs.
    OutputError
        The run folder cannot be written.
    """
    state = TrainState()
    resumed = resume and has_checkpoint(run.checkpoints)
    if resumed:
        _check_resume_config(run.output, config)
        state = load_checkpoint(
            run.checkpoints,
            model=run.model,
            optimizer=run.optimizer,
            scheduler=run.scheduler,
            device=run.device,
        )
    _start_run_folder(run.output, run.config_dict, resumed=resumed)
    return state


def _steps_taken(
    config: TrainConfig,
    run: _Run,
    state: TrainState,
    sampler: ChipSampler | StoreSampler,
    validator: Validator | None,
    progress: ProgressFn | None,
    stop_after: int | None,
) -> bool:
    """Take the optimisation steps from ``state.step`` to ``config.steps``, validating,
    checkpointing and reporting ``progress`` as ``config`` says; an interrupt checkpoints
    the steps taken, for a resume.

    Parameters
    ----------
    config : TrainConfig
        The run's configuration.
    run : _Run
        What the run trains and how.
    state : TrainState
        Where the run is, updated at every step.
    sampler : ChipSampler or StoreSampler
        The training batches.
    validator : Validator, optional
        The validation chips, None for none.
    progress : callable, optional
        As :func:`train` takes it.
    stop_after : int, optional
        The step after which to stop (with a checkpoint), as if interrupted.

    Returns
    -------
    bool
        Whether the run stopped at ``stop_after``, before ``config.steps``.
    """
    start_step = state.step
    t0 = time.perf_counter()
    seconds0 = state.seconds
    last_psnr = state.history[-1]["psnr"] if state.history else float("nan")
    running = 0.0
    # Batch k is a pure function of (seed, k), so drawing it ahead in a thread
    # (numpy releases the GIL in the heavy parts) changes nothing but the time.
    prefetch = ThreadPoolExecutor(max_workers=1, thread_name_prefix="geosr-batches")
    upcoming = prefetch.submit(sampler.batch, state.step, config.batch_size)
    try:
        for step in range(state.step, config.steps):
            batch = upcoming.result()
            if step + 1 < config.steps:
                upcoming = prefetch.submit(sampler.batch, step + 1, config.batch_size)
            value = _optimisation_step(
                run.model,
                run.loss_fn,
                run.optimizer,
                run.scheduler,
                batch,
                step=step,
                device=run.device,
                autocast=run.autocast,
                grad_clip=config.optim.grad_clip,
            )
            state.step = step + 1
            running = value if step == start_step else 0.9 * running + 0.1 * value
            done = state.step
            if validator is not None and (done % config.val_every == 0 or done == config.steps):
                last_psnr = _validated(validator, run.model, run.autocast, state, running)
            state.seconds = seconds0 + time.perf_counter() - t0
            if done % config.checkpoint_every == 0 or done in (config.steps, stop_after):
                run.checkpoint(state)
            if progress is not None and (done % config.log_every == 0 or done == config.steps):
                progress(done, config.steps, {"loss": running, "psnr": last_psnr})
            if stop_after is not None and done >= stop_after and done < config.steps:
                return True
    except KeyboardInterrupt:
        if state.step > start_step:
            state.seconds = seconds0 + time.perf_counter() - t0
            run.checkpoint(state)
        raise
    finally:
        prefetch.shutdown(wait=True, cancel_futures=True)
    return False


def _seed_everything(seed: int) -> None:
    """Seed torch's, numpy's and Python's global random generators with ``seed``.

    numpy's and Python's too, since third-party code a run calls (augmentations, losses) may
    draw from them.
    """
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))  # noqa: NPY002
    random.seed(seed)


def _optimiser(
    model: nn.Module, config: TrainConfig
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR]:
    """The AdamW optimiser of ``model``'s parameters and its learning-rate schedule, as ``config`` says."""
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.optim.lr,
        betas=config.optim.betas,
        weight_decay=config.optim.weight_decay,
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))


def _optimisation_step(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LambdaLR,
    batch: tuple[np.ndarray, np.ndarray],
    *,
    step: int,
    device: torch.device,
    autocast: torch.dtype | None,
    grad_clip: float,
) -> float:
    """One step of the optimiser and the schedule on one batch.

    Parameters
    ----------
    model, loss_fn, optimizer, scheduler
        What the run trains, and how.
    batch : tuple of numpy.ndarray
        The low- and high-resolution chips of this step, as the sampler draws them.
    step : int
        The 0-based step, for the error message.
    device : torch.device
        Where the model is.
    autocast : torch.dtype, optional
        The forward pass's autocast dtype, None for float32 throughout.
    grad_clip : float
        The gradient norm to clip to; 0 for none.

    Returns
    -------
    float
        The batch's loss.

    Raises
    ------
    OptionError
        The loss is not finite (NaN or infinite).
    """
    lr_t = torch.from_numpy(batch[0]).to(device, non_blocking=True)
    hr_t = torch.from_numpy(batch[1]).to(device, non_blocking=True)
    with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        pred = model(lr_t)
    loss = loss_fn(pred.float(), hr_t)
    if not torch.isfinite(loss):
        raise OptionError(
            f"the loss became {float(loss)} at step {step}: lower optim.lr or check the training data"
        )
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return float(loss.detach())


def _validated(
    validator: Validator, model: nn.Module, autocast: torch.dtype | None, state: TrainState, running: float
) -> float:
    """The model's validation PSNR now, recorded in ``state.history`` with the running loss."""
    psnr = validator(model, autocast)
    state.history.append(
        {
            "step": state.step,
            "loss": running,
            "psnr": psnr,
            "psnr_bicubic": validator.psnr_bicubic,
        }
    )
    return psnr


def _training_data(
    config: TrainConfig, device: torch.device
) -> tuple[ChipSampler | StoreSampler, Validator | None]:
    """The sampler of training batches and the validator (None without validation data):
    from the Zarr training store when ``config.data.store`` names one (its own validation
    split), else chips cut on the fly from the training rasters."""
    sampler: ChipSampler | StoreSampler
    validator: Validator | None = None
    if config.data.store:
        from geosr.train.store import check_store, read_store

        check_store(config.data.store, scale=config.scale, lr_chip=config.data.lr_chip)
        sampler = StoreSampler(config.data.store, seed=config.seed)

        vlr, vhr = read_store(config.data.store, "val")
        vlr, vhr = vlr[: config.data.val_chips, None, None], vhr[: config.data.val_chips, None]
        source = f"training store {config.data.store} (its validation chips)"
        validator = _validator(vlr, vhr, config, device, source)
    else:
        check_held_out(config.data.train, config.data.val)
        scenes = load_scenes(config.data.train, "training")
        sampler = ChipSampler(
            scenes,
            scale=config.scale,
            lr_chip=config.data.lr_chip,
            degradation=config.degradation,
            seed=config.seed,
        )
        if config.data.val:
            val_scenes = load_scenes(config.data.val, "validation")
            vlr, vhr = validation_set(
                val_scenes,
                scale=config.scale,
                lr_chip=config.data.val_lr_chip,
                count=config.data.val_chips,
                seed=config.seed + 1,
            )
            validator = _validator(vlr, vhr, config, device, scene_names(val_scenes))

    return sampler, validator


def _start_run_folder(output: Path, config_dict: dict[str, Any], *, resumed: bool) -> None:
    """Create the run folder and write the run's ``config.json`` in it."""
    ckpt_dir = output / "checkpoints"
    try:
        if not resumed:
            # A new run over an earlier one (--overwrite): its checkpoint goes now, not at this
            # run's first checkpoint, or a crash before that left it for --resume to take up.
            if ckpt_dir.is_dir():
                shutil.rmtree(ckpt_dir)
            _remove_earlier_weights(output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "config.json").write_text(json.dumps(config_dict, indent=2), encoding="utf-8")
    except OSError as exc:  # a read-only file system, a file in the path: it was a traceback
        raise OutputError(
            f"cannot write the run folder {output} ({exc.strerror or exc}); choose another --output"
        ) from None


def _remove_earlier_weights(output: Path) -> None:
    """Remove the weights and card an earlier run in ``output`` wrote there (``--overwrite``).

    A new run of another model or scale writes other names, and left the replaced run's
    (``cnnrnn-fast_x4.safetensors`` beside a new x2 run's config), for ``--model`` to load as if
    they were this run's.  Weights written elsewhere (``--weights``) are the user's to keep.
    """
    try:
        earlier = json.loads((output / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # no earlier run here (check_run_output refused a config.json of another kind)
    if not isinstance(earlier, dict) or earlier.get("weights") or not {"name", "scale"} <= earlier.keys():
        return
    stem = weights_stem_in(output, earlier["name"], earlier["scale"])
    if stem.parent == output:  # a name with a '/' in it names no file of this run folder
        for path in weights_paths(stem):
            path.unlink(missing_ok=True)


def _final_metrics(
    validator: Validator | None, model: nn.Module, autocast: torch.dtype | None
) -> dict[str, float]:
    """The card's validation metrics of the trained ``model`` (none without validation data)."""
    metrics: dict[str, float] = {}
    if validator is not None:
        psnr = validator(model, autocast)
        metrics = {
            "val_psnr": round(psnr, 4),
            "val_psnr_bicubic": round(validator.psnr_bicubic, 4),
            "val_gain_db": round(psnr - validator.psnr_bicubic, 4),
            "val_chips": int(validator.lr.shape[0]),
        }
    return metrics


def _card(
    config: TrainConfig,
    model: SRModel,
    state: TrainState,
    metrics: dict[str, float],
    *,
    parent: dict[str, Any],
    recipe: str | None,
) -> ModelCard:
    """The model card of a finished run: architecture, data, recipe, cost and metrics."""
    config_dict = to_dict(config)
    return ModelCard(
        name=config.name,
        architecture=model.card.architecture,
        config=_model_config(model),
        scale=config.scale,
        bands=None,
        normalisation=dict(NORMALISATION),
        training={
            "recipe": recipe,
            **parent,
            "data": _recorded_data(config.data.train, config.data.store),
            # A store run validates on the store's own validation split, whatever data.val says.
            "validation": _recorded_data(config.data.val, config.data.store),
            "steps": config.steps,
            "batch_size": config.batch_size,
            "lr_chip": config.data.lr_chip,
            "seed": config.seed,
            "loss": dict(config.loss),
            "seconds": round(state.seconds, 1),
            # What the weights cost to run, so a card says how fast its model is.
            "params": sum(p.numel() for p in model.parameters()),
            "kflop_per_lr_pixel": round(flops_per_lr_pixel(model) / 1e3),
            "config": config_dict,
        },
        metrics=metrics,
    )


def _recorded_data(sources: Sequence[SceneSource], store: str | None) -> list[str] | str:
    """The training rasters (or store) as the card records them: a relative path made absolute.

    A card is read beside its weights, by another user or from another folder, and does not
    say which folder training ran in: ``train.tif`` named no file there.  Rasters under
    ``${GEOSR_DATA_DIR}`` or ``~`` stay as written, portable (a store's ``~`` is expanded
    with the config).  The run's ``config`` in the card
    keeps them as given, as a resume compares them.
    """

    def recorded(path: str) -> str:
        return path if path.startswith(("$", "~")) else str(Path(path).resolve())

    return recorded(store) if store else [recorded(s.path) for s in sources]


def _model_config(model: nn.Module) -> dict[str, Any]:
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_dict"):
        raise OptionError(f"model {type(model).__name__} has no config to write in its card")
    result: dict[str, Any] = config.to_dict()
    return result


def _result(
    weights: Path | None,
    card: Path | None,
    state: TrainState,
    metrics: dict[str, float],
    start_step: int,
) -> TrainResult:
    rate = state.step / state.seconds if state.seconds > 0 else 0.0
    return TrainResult(weights, card, state.step, metrics, state.seconds, rate, list(state.history))
