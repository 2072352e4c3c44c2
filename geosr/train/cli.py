"""``geosr train`` and ``geosr evaluate``: thin shells over the training and evaluation code.

Registered by ``geosr.cli`` as ``app.command("train")(train_command)`` and
``app.command("evaluate")(evaluate_command)``; errors are :class:`GeosrError`
subclasses, which the main app prints as one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Column

from geosr.cli import Batch, Device, Precision, Tile
from geosr.cli_types import (
    StdoutConsole,
    echo_path,
    given_name,
    given_number,
    given_path,
    given_raster,
    given_text,
    path_option,
    stdout_guarded,
)
from geosr.errors import GeosrError, InterruptedRunError, OptionError, counted
from geosr.io.names import as_shown
from geosr.progress import ProgressLines, progress_bar_drawn
from geosr.train.config import DataConfig, OptimConfig, TrainConfig

err = Console(stderr=True)


def _or_recipe(value: object) -> str:
    """The end of a training option's help: the value a run takes without the option (the
    help named none: where the run folder goes, or how many steps, was found out by running)."""
    return f" (default {value}, or the recipe's)"


def _say(text: str) -> None:
    """Print a line of ``text`` on stderr as it is: paths in it are no rich markup, and a long
    one stays on its line (rich wrapped at 80 columns in a pipe: 'wrote /a/long/pa' 'th.json');
    a name Python holds with surrogates by its characters, as in an error line (in an ASCII locale
    'wrote doss\\udcc3\\udca9/r.json')."""
    err.print(as_shown(text), markup=False, soft_wrap=True)


Scale = Annotated[
    int | None,
    typer.Option("--scale", "-s", help=f"Zoom factor per axis, 2..8{_or_recipe(TrainConfig.scale)}."),
]
DeviceOpt = Annotated[
    str | None, typer.Option("--device", help=f"auto, cpu, cuda or cuda:N{_or_recipe(TrainConfig.device)}.")
]
PrecisionOpt = Annotated[
    str | None, typer.Option("--precision", help=f"auto, fp32 or bf16{_or_recipe(TrainConfig.precision)}.")
]
LrPaths = Annotated[
    list[str] | None,
    path_option(
        "--lr", parser=given_raster, help="Low-resolution raster of a pair (repeat, in order with --hr)."
    ),
]
HrPaths = Annotated[
    list[str] | None,
    path_option(
        "--hr", parser=given_raster, help="High-resolution raster of a pair (repeat, in order with --lr)."
    ),
]


def _whole_number(*names: str, help: str, minimum: int = 1) -> Any:
    """An option of a whole number of at least ``minimum``, which typer refuses below it, shown as
    ``<int>`` in the help; ``names`` are its flags, the parameter's own where none is given."""
    return typer.Option(*names, help=help, min=minimum, metavar="<int>")


def _hr_rasters(help: str) -> Any:
    """The HR rasters geosr train and geosr evaluate take as arguments, with their own ``help``:
    text, not Paths, which would fold the // of a remote path."""
    return typer.Argument(parser=given_text, metavar="HR", help=help)


def _parse_loss(text: str | None) -> dict[str, float] | None:
    """``"l1=1,ssim=0.1"`` -> ``{"l1": 1.0, "ssim": 0.1}``; a bare name weighs 1."""
    if text is None:
        return None
    if not text.strip():  # --loss "$LOSS" with LOSS unset trained with the default, silently
        raise OptionError("--loss '' is empty; give e.g. l1=1,ssim=0.1, or leave it out for the default")
    out: dict[str, float] = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition("=")
        try:
            out[name.strip()] = float(weight) if weight else 1.0
        except ValueError as exc:
            raise OptionError(
                f"--loss {text!r}: weight {weight!r} of {name!r} is not a number; e.g. l1=1,ssim=0.1"
            ) from exc
    return out


def _pairs(lr: list[str] | None, hr: list[str] | None) -> list[tuple[str, str]]:
    lr, hr = lr or [], hr or []
    if len(lr) != len(hr):
        raise OptionError(f"--lr and --hr come in pairs: got {len(lr)} --lr and {len(hr)} --hr")
    return list(zip(lr, hr, strict=True))


def train_command(
    inputs: Annotated[
        list[str] | None,
        _hr_rasters("HR rasters for self-supervised training: files, folders or globs."),
    ] = None,
    recipe: Annotated[
        Path | None,
        path_option(
            parser=given_path,
            help=(
                "TOML recipe: a file, or a bundled one by its name (pipelines/*.toml), such as "
                "cnnrnn_fast_x4; options below override it."
            ),
        ),
    ] = None,
    val: Annotated[
        list[str] | None,
        path_option(
            "--val", parser=given_text, help="Validation HR rasters (never trained on; repeat for more)."
        ),
    ] = None,
    lr: LrPaths = None,
    hr: HrPaths = None,
    store: Annotated[
        Path | None,
        path_option(
            parser=given_path, help="Paired training store (.zarr): built from --lr/--hr, or reused."
        ),
    ] = None,
    scheduler: Annotated[
        str,
        typer.Option(
            help="Dask scheduler for building the store: threads, processes, local or tcp://host:port."
        ),
    ] = "threads",
    scale: Scale = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="<name>",
            help="Model to train: cnnrnn-fast or cnnrnn-best (default "
            f"{TrainConfig.name}, or the recipe's, or the --init weights' own).",
        ),
    ] = None,
    init: Annotated[
        str | None,
        typer.Option(
            metavar="<weights>",
            help="Start from these weights (fine-tuning): a .safetensors file or a bundled model name.",
        ),
    ] = None,
    steps: Annotated[
        int | None,
        _whole_number(help=f"Optimiser steps{_or_recipe(TrainConfig.steps)}."),
    ] = None,
    batch_size: Annotated[
        int | None,
        _whole_number("--batch-size", help=f"Chips per step{_or_recipe(TrainConfig.batch_size)}."),
    ] = None,
    lr_chip: Annotated[
        int | None,
        _whole_number(
            "--chip",
            help=f"LR chip size in pixels (default {DataConfig.lr_chip}, or the recipe's, or the --store's).",
            minimum=4,
        ),
    ] = None,
    learning_rate: Annotated[
        float | None, typer.Option("--learning-rate", help=f"Peak learning rate{_or_recipe(OptimConfig.lr)}.")
    ] = None,
    loss: Annotated[
        str | None,
        typer.Option(
            help="Loss terms and weights, e.g. l1=1,ssim=0.1,shift_l1=1 (default l1=1, or the recipe's)."
        ),
    ] = None,
    perceptual_net: Annotated[
        Path | None,
        path_option(
            parser=given_path,
            help="Feature network for the perceptual loss (.safetensors VGG, .pt2 or TorchScript).",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option(help=f"Random seed: a run is a function of its config{_or_recipe(TrainConfig.seed)}."),
    ] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (0: default).")] = None,
    val_every: Annotated[
        int | None,
        _whole_number(help=f"Validate every N steps{_or_recipe(TrainConfig.val_every)}."),
    ] = None,
    checkpoint_every: Annotated[
        int | None,
        _whole_number(help=f"Checkpoint every N steps{_or_recipe(TrainConfig.checkpoint_every)}."),
    ] = None,
    output: Annotated[
        Path | None,
        path_option(
            "--output",
            "-o",
            parser=given_path,
            help=f"Run folder: config, checkpoints, weights{_or_recipe(TrainConfig.output)}.",
        ),
    ] = None,
    weights: Annotated[
        Path | None,
        path_option(parser=given_path, help="Stem of the weights file to write (default in the run folder)."),
    ] = None,
    nodata: Annotated[
        float | None,
        typer.Option(
            parser=given_number,
            help="Nodata value of the HR and --val rasters given here, in place of their own (0 for "
            "Sentinel-2 JP2s); a recipe sets it per source.",
        ),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the run folder's last checkpoint.")] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an earlier run in the run folder, the --weights file and a store to rebuild.",
        ),
    ] = False,
) -> None:
    """Train a super-resolution model: self-supervised on HR rasters, or on --lr/--hr pairs."""
    from geosr.train.config import load_config

    pairs = _pairs(lr, hr)
    _check_train_options(inputs, val, pairs, store, scheduler, nodata, model, init)
    model = _model_of(model, init)
    lr_chip = _chip_of(lr_chip, store, pairs, recipe)
    overrides = _train_overrides(
        inputs=inputs,
        val=val,
        nodata=nodata,
        lr_chip=lr_chip,
        model=model,
        scale=scale,
        init=init,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
        loss=loss,
        perceptual_net=perceptual_net,
        device=device,
        precision=precision,
        threads=threads,
        val_every=val_every,
        checkpoint_every=checkpoint_every,
        output=output,
        weights=weights,
        learning_rate=learning_rate,
    )
    config = load_config(recipe, overrides)
    result = _train_in_run_folder(config, overrides, recipe, pairs, store, scheduler, resume, overwrite)
    _report_training(result)


def _check_train_options(
    inputs: list[str] | None,
    val: list[str] | None,
    pairs: list[tuple[str, str]],
    store: Path | None,
    scheduler: str,
    nodata: float | None,
    model: str | None,
    init: str | None,
) -> None:
    """Refuse, before the recipe is read, options that contradict each other or apply to nothing.

    Raises
    ------
    OptionError
        ``--scheduler`` without pairs, HR rasters or ``--val`` beside pairs or ``--store``, a
        ``--nodata`` that applies to no raster given, a ``-m`` that names no model to train.
    """
    _check_scheduler(scheduler, pairs)
    _check_data_sources(inputs, val, pairs, store)
    _check_nodata(nodata, inputs, val, pairs, store)
    _check_model_name(model, init)


def _check_scheduler(scheduler: str, pairs: list[tuple[str, str]]) -> None:
    """Refuse a ``--scheduler`` other than threads where no store is built from --lr/--hr pairs.

    It was ignored without a word: training itself runs in this process, and only the
    store built from --lr/--hr pairs is built on a scheduler.
    """
    if scheduler != "threads" and not pairs:
        raise OptionError(
            f"--scheduler {scheduler} builds the training store of --lr/--hr pairs, and there are none: "
            "training runs in this process; drop --scheduler, or give the pairs"
        )
    from geosr.orchestrate.training_store import check_store_scheduler

    check_store_scheduler(scheduler)


def _model_of(model: str | None, init: str | None) -> str | None:
    """The model name a run takes: ``-m``, else the ``--init`` weights' own (for its weights
    file and card), else None (the recipe's or the default)."""
    if init and model is None:
        return _init_name(init)
    return model


def _chip_of(
    lr_chip: int | None, store: Path | None, pairs: list[tuple[str, str]], recipe: Path | None
) -> int | None:
    """The LR chip size a run takes: ``--chip``, else a reused ``--store``'s where the recipe
    gives none (the store's chips are cut: their size is not a choice), else None."""
    if store is not None and not pairs and lr_chip is None and not _recipe_sets_chip(recipe):
        return _store_chip(store)
    return lr_chip


def _train_overrides(
    *,
    inputs: list[str] | None,
    val: list[str] | None,
    nodata: float | None,
    lr_chip: int | None,
    model: str | None,
    scale: int | None,
    init: str | None,
    steps: int | None,
    batch_size: int | None,
    seed: int | None,
    loss: str | None,
    perceptual_net: Path | None,
    device: str | None,
    precision: str | None,
    threads: int | None,
    val_every: int | None,
    checkpoint_every: int | None,
    output: Path | None,
    weights: Path | None,
    learning_rate: float | None,
) -> dict[str, Any]:
    """The recipe keys ``geosr train``'s options set, for :func:`~geosr.train.config.load_config`.

    Parameters
    ----------
    inputs, val : list of str, optional
        The HR and ``--val`` rasters, each a source with ``nodata``.
    nodata : float, optional
        ``--nodata``, of every raster of ``inputs`` and ``val``.
    lr_chip, model, scale, init, steps, batch_size, seed, loss, perceptual_net
        The options of the same names (``--chip``, ``-m`` ...); None where not given, which
        leaves the recipe's value (or the default).
    device, precision, threads, val_every, checkpoint_every, output, weights, learning_rate
        As above (``--learning-rate``).

    Returns
    -------
    dict
        The overrides, None for a key the command line does not set.

    Raises
    ------
    OptionError
        ``--loss`` is empty or gives a weight that is not a number.
    """
    return {
        "name": model,
        "scale": scale,
        "init": init,
        "steps": steps,
        "batch_size": batch_size,
        "seed": seed,
        "loss": _parse_loss(loss),
        "perceptual_net": str(perceptual_net) if perceptual_net else None,
        "device": device,
        "precision": precision,
        "threads": threads,
        "val_every": val_every,
        "checkpoint_every": checkpoint_every,
        "output": str(output) if output else None,
        "weights": str(weights) if weights else None,
        "optim": {"lr": learning_rate},
        "data": {
            "train": [{"path": p, "nodata": nodata} for p in inputs] if inputs else None,
            "val": [{"path": p, "nodata": nodata} for p in val] if val else None,
            "lr_chip": lr_chip,
        },
    }


def _train_in_run_folder(
    config: Any,
    overrides: dict[str, Any],
    recipe: Path | None,
    pairs: list[tuple[str, str]],
    store: Path | None,
    scheduler: str,
    resume: bool,
    overwrite: bool,
) -> Any:
    """Build the store (from ``pairs``) and train, holding the run folder: what a failed run
    created is removed, unless it checkpointed.

    Parameters
    ----------
    config : TrainConfig
        The run's configuration, before a store is filled in.
    overrides : dict
        The recipe keys the options set (:func:`_train_overrides`), to fill the store in.
    recipe : Path, optional
        The ``--recipe``.
    pairs : list of (str, str)
        The ``--lr/--hr`` pairs, for a store to build (in ``--store`` or the run folder).
    store : Path, optional
        ``--store``: the store to build from ``pairs``, or to train on.
    scheduler : str
        The Dask scheduler that builds the store.
    resume, overwrite : bool
        ``--resume``, ``--overwrite``.

    Returns
    -------
    TrainResult
        :func:`~geosr.train.trainer.train`'s.

    Raises
    ------
    OutputError
        The run would replace an earlier run, weights file or store without being asked.
    InterruptedRunError
        Interrupted while training (the run is kept for ``--resume``).
    """
    from geosr.train.trainer import check_run_output, run_folder_held, store_held

    store_path = (store or Path(config.output) / "training_store.zarr") if pairs else None
    check_run_output(config, resume=resume, overwrite=overwrite, new_store=store_path)
    with run_folder_held(Path(config.output)) as made:
        leftovers = _Leftovers(Path(config.output), store_path, made)
        try:
            # Again, holding the folder: a run into it may have ended since the check above.
            check_run_output(config, resume=resume, overwrite=overwrite, new_store=store_path)
            # A --store of its own, which other runs may build too (the run folder's is held with it).
            with store_held(store_path if store is not None else None):
                return _build_and_train(
                    config, overrides, recipe, pairs, store, store_path, scheduler, resume, overwrite
                )
        except (typer.Exit, InterruptedRunError):
            raise
        except (Exception, KeyboardInterrupt) as exc:
            # An interrupt while the store is built too (training reports its own, resumable):
            # it would leave an incomplete store that the same command then refuses as existing.
            leftovers.remove()
            if isinstance(exc, _StoreBuildInterrupted) and store_path is not None:
                raise _store_build_interrupted(str(exc), store_path, Path(config.output)) from None
            raise


def _report_training(result: Any) -> None:
    """Say the validation metrics (where the run validated) on stderr, then the weights' path on stdout."""
    m = result.metrics
    if m:
        _say(
            f"validation PSNR {m['val_psnr']:.2f} dB, bicubic {m['val_psnr_bicubic']:.2f} dB, "
            f"gain {m['val_gain_db']:+.2f} dB; {result.steps_per_second:.2f} steps/s"
        )
    with stdout_guarded(f"{result.weights} is written, but "):
        echo_path(result.weights)


def _check_data_sources(
    inputs: list[str] | None, val: list[str] | None, pairs: list[tuple[str, str]], store: Path | None
) -> None:
    """Refuse HR rasters or --val beside --lr/--hr or --store: training would ignore them.

    A paired run trains and validates on the store's chips alone (its validation
    split is the bottom rows of each pair), so rasters given with it were dropped
    without a word, and --val was still listed as the validation data in the card.
    """
    paired = "--lr/--hr pairs" if pairs else "--store" if store is not None else None
    if paired is None:
        return
    if inputs:
        raise OptionError(
            f"HR rasters ({inputs[0]}...) and {paired} given together: a paired run trains on the "
            "training store alone; give either HR rasters (self-supervised) or the pairs"
        )
    if val:
        raise OptionError(
            f"--val {val[0]} and {paired} given together: a paired run validates on the training "
            "store's own validation chips (the bottom rows of each pair); drop --val"
        )


def _check_nodata(
    nodata: float | None,
    inputs: list[str] | None,
    val: list[str] | None,
    pairs: list[tuple[str, str]],
    store: Path | None,
) -> None:
    """Refuse a ``--nodata`` that applies to no raster given on the command line.

    Without the option, an untagged fill (a Sentinel-2 JP2's 0) could be left out only by a
    recipe; given where it would apply to nothing (pairs, a store, a recipe's sources), it
    would be ignored and the fill trained on as data.
    """
    if nodata is None or inputs or val:
        return
    if pairs or store is not None:
        raise OptionError(
            "--nodata applies to the HR rasters of self-supervised training, not to --lr/--hr pairs "
            "or --store, whose files' own nodata is used: set it in the files "
            "(gdal_edit.py -a_nodata VALUE FILE)"
        )
    raise OptionError(
        "--nodata applies to the HR and --val rasters given on the command line, and there are none: "
        "set nodata per source in the recipe ([[data.train]] nodata = VALUE)"
    )


def _check_model_name(model: str | None, init: str | None) -> None:
    """Refuse a ``-m`` that is neither a model to train nor the name of the --init weights.

    The registry's own message would offer "or give the path of a .safetensors weights
    file", which is how ``geosr run -m`` takes weights, not ``geosr train -m`` (--init).
    """
    from geosr.models import MODEL_NAMES

    if model is None or model in MODEL_NAMES:
        return
    if init is None or Path(model).suffix or "/" in model:
        names = ", ".join(n for n in MODEL_NAMES if n != "bicubic")
        raise OptionError(
            f"-m {model}: geosr train --model takes the name of a model to train ({names}); "
            "to fine-tune a weights file, give it as --init PATH"
        )


def _init_name(init: str) -> str | None:
    """The model name of ``--init``: a bundled model's own, a weights file's from its card.

    None when the card cannot be read (training then says why).  A fine-tuned EDSR
    file was otherwise labelled with the default name, cnnrnn-fast, in its weights
    file name, its card and every output's GEOSR_MODEL tag.
    """
    from geosr.models.weights import card_of, read_card
    from geosr.train.config import is_model_name

    if is_model_name(init):
        return init
    try:
        return read_card(card_of(init)).name
    except (GeosrError, OSError):
        return None


def _recipe_sets_chip(recipe: Path | None) -> bool:
    """Whether the recipe gives ``data.lr_chip`` (which then wins over the store's)."""
    from geosr.train.config import read_recipe

    data = read_recipe(recipe).get("data", {}) if recipe is not None else {}
    return isinstance(data, dict) and "lr_chip" in data


def _store_chip(store: Path) -> int | None:
    """The LR chip size a training store was built with (None when it cannot be read)."""
    from geosr.train.store import store_info

    if not store.is_dir():
        return None  # training says that the store is missing
    try:
        chip = store_info(store).get("lr_chip")
    except (ValueError, OSError):
        return None  # not a store: training says so
    return chip if isinstance(chip, int) else None


class _StoreBuildInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (its words) while the training store was built: said once the run's
    leftovers are removed (:func:`_store_build_interrupted`), as what is left is known then."""


def _store_build_interrupted(said: str, store: Path, output: Path) -> GeosrError:
    """The line of a store build interrupted as ``said``, once what the run made is removed:
    what was interrupted, what is left of it on disk, and how to go on, as training's line
    says its step and checkpoint (:func:`_interrupted`).  It said "interrupted; nothing was
    written: run the same command again", whatever was stopped and left.
    """
    if store.exists():  # there before the run (rebuilt with --overwrite, or for a --resume)
        left = "the earlier store, being rebuilt, is left unfinished"
    elif output.exists():
        left = "the unfinished store is removed"
    else:
        left = f"the unfinished store is removed, with the run folder {output}"
    error = GeosrError(
        f"{said} while building the training store {store}, before any training step; {left}: "
        "run the same command again"
    )
    error.exit_code = 130  # exit_status makes it 143 after a SIGTERM
    return error


class _Leftovers:
    """What a failed run created, and only that, to remove it: no partial output stays.

    A run that has written a checkpoint keeps everything, for ``--resume``.
    """

    def __init__(self, output: Path, store: Path | None, made: Path | None):
        """``made``: the top-most folder of ``output`` that this run made (to hold it)."""
        from geosr.train.trainer import RUN_LOCK

        self.output = output.absolute()
        self.checkpoint = self.output / "checkpoints" / "last.json"
        self.stamp = self._stamp()
        # A folder that did not exist is wholly this run's; in one that did (empty,
        # resumed or overwritten), only the entries that were not there before, and the lock.
        missing = [made, _first_missing(store) if store is not None else None]
        self.created = [p for p in missing if p is not None]
        self.before = {p for p in self.output.iterdir() if p.name != RUN_LOCK}

    def _stamp(self) -> int | None:
        return self.checkpoint.stat().st_mtime_ns if self.checkpoint.exists() else None

    def remove(self) -> None:
        """Remove what the run created, unless it checkpointed."""
        from geosr.io.atomic import remove_path

        if self._stamp() != self.stamp:
            return
        if self.output.is_dir():
            for entry in set(self.output.iterdir()) - self.before:
                remove_path(entry)
        for path in self.created:
            remove_path(path)


def _first_missing(path: Path) -> Path | None:
    """The top-most of ``path`` and its parents that does not exist (None if it does)."""
    path = path.absolute()
    if path.exists():
        return None
    top = path
    while not top.parent.exists():
        top = top.parent
    return top


def _build_and_train(
    config: Any,
    overrides: dict[str, Any],
    recipe: Path | None,
    pairs: list[tuple[str, str]],
    store: Path | None,
    store_path: Path | None,
    scheduler: str,
    resume: bool,
    overwrite: bool,
) -> Any:
    """Build the store from the pairs (if any), then train; the part whose leftovers a failure removes."""
    from geosr.train.config import load_config
    from geosr.train.trainer import train  # torch loads here, before the store is built

    if pairs and store_path is not None:
        _store_from_pairs(config, pairs, store_path, scheduler, resume)
        config = load_config(recipe, {**overrides, "data": {**overrides["data"], "store": str(store_path)}})
    elif store is not None:
        config = load_config(recipe, {**overrides, "data": {**overrides["data"], "store": str(store)}})
    if not config.data.store and not config.data.train:
        raise OptionError("nothing to train on: give HR rasters, --lr/--hr pairs, --store or a --recipe")
    return _train_with_progress(train, config, recipe, resume, overwrite)


def _validates(config: Any) -> bool:
    """Whether the run measures a validation PSNR: on its ``--val`` rasters, or on a training
    store's own validation chips."""
    return bool(config.data.store or config.data.val)


def _say_if_unvalidated(config: Any, recipe: Path | None) -> None:
    """Say, as training starts, that a run without validation rasters measures no validation PSNR,
    and how to give it some: the bar's "val PSNR -" and a card without metrics were all that
    said so."""
    if _validates(config):
        return
    how = f"add a [[data.val]] table to {recipe}" if recipe is not None else "give --val RASTER"
    _say(
        "no validation rasters, so no validation PSNR is measured while training nor recorded in "
        f"the model card; to measure the model on rasters kept out of training, {how}"
    )


def _store_from_pairs(
    config: Any, pairs: list[tuple[str, str]], store_path: Path, scheduler: str, resume: bool
) -> None:
    """Build the training store ``store_path`` from the LR/HR ``pairs``, saying so on stderr; a
    resumed run keeps the store it began with.

    Raises
    ------
    OptionError
        Resuming on a store built from other pairs.
    GeosrError
        A pair that cannot be co-registered (a missing file, swapped or mismatched rasters), told
        before the first pair is.
    """
    from geosr.orchestrate.training_store import build_training_store
    from geosr.train.store import built_pairs

    # A resumed run trains on the store it began with: building it again co-registered
    # every pair once more, and took up files changed since, or other pairs.
    built = built_pairs(store_path, scale=config.scale, lr_chip=config.data.lr_chip) if resume else None
    if built is not None and built != [(Path(lr).absolute(), Path(hr).absolute()) for lr, hr in pairs]:
        raise OptionError(
            f"cannot resume {config.output}: its training store {store_path} was built from other "
            f"--lr/--hr pairs ({len(built)}, the first {built[0][0].name} / {built[0][1].name}); "
            "resume with the same pairs, or start again with --overwrite"
        )
    if built is not None:
        _say(f"resuming on the training store {store_path}, built from these pairs before")
        return
    from geosr.train.coreg import check_pair

    # Every pair, before the first is co-registered: a missing file, swapped or mismatched
    # rasters were found only while the store was built, below the line that says so,
    # after the pairs before them (minutes each on real scenes).
    for lr_path, hr_path in pairs:
        check_pair(lr_path, hr_path, config.scale)
    _say(f"building the training store {store_path} from {counted(len(pairs), 'pair')}")
    # overwrite: check_run_output refused, before, a store the run was not asked to rebuild
    # (--overwrite) and one a --resume does not own; a resumed run's unfinished store is rebuilt.
    try:
        info = build_training_store(
            pairs,
            store_path,
            scale=config.scale,
            lr_chip=config.data.lr_chip,
            scheduler=scheduler,
            overwrite=True,
        )
    except KeyboardInterrupt as stop:  # str(): Ctrl-C's has no words, SIGTERM's has
        raise _StoreBuildInterrupted(str(stop) or "interrupted") from None
    for p in info["pairs"]:
        names = f"{Path(p['lr']).name} / {Path(p['hr']).name}"
        _say(f"  {names}: {_shift_words(p['shift'])}, {p['chips']} chips")


_BAR_FITS = 80
"""The narrowest terminal with room for the training bar beside its count, loss, validation PSNR
and times; a narrower one gets the count and what of the rest fits (:func:`_training_line`)."""


def _training_columns(compact: bool, validates: bool) -> list[ProgressColumn]:
    """The training progress's columns: the bar and its fields, or, ``compact``, one line of words.

    No "val PSNR -" column for the whole of a run that measures none (not ``validates``).
    Under 80 columns rich narrowed every column to share the room: at 60 the step count read
    '12…' and the times '0:0…', at 40 the count was gone ('training     … loss - val PSNR - 0…').
    """
    if compact:
        return [TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis"))]
    return [
        TextColumn("[bold]training"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        *([TextColumn("val PSNR {task.fields[psnr]}")] if validates else []),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]


def _training_line(step: int, total: int, *more: str) -> str:
    """``training 1234/16000``, then each of ``more`` (the loss, the validation PSNR) that fits
    the terminal, in order; the line of a compact progress (:func:`_training_columns`)."""
    line = f"training {step}/{total}"
    for words in more:
        if words and cell_len(f"{line}, {words}") < err.width:
            line = f"{line}, {words}"
    return line


def _train_with_progress(
    train: Callable[..., Any], config: Any, recipe: Path | None, resume: bool, overwrite: bool
) -> Any:
    """Train as ``config`` says under a progress bar on stderr (plain lines where it is no terminal).

    Parameters
    ----------
    train : callable
        :func:`geosr.train.trainer.train`, which the caller imported (with torch) before it
        built the training store.
    config : TrainConfig
        The run's configuration, its store filled in.
    recipe : Path, optional
        The recipe, recorded in the model card.
    resume : bool
        Continue from the run's last checkpoint.
    overwrite : bool
        ``--overwrite``: replace an earlier run in the run folder.

    Returns
    -------
    TrainResult
        :func:`~geosr.train.trainer.train`'s.

    Raises
    ------
    InterruptedRunError
        Interrupted (Ctrl-C, SIGTERM): one line, with the command that continues the run.
    """
    # Where stderr is no terminal (a log file, a Slurm job), rich would show nothing until the
    # end: plain lines now and then instead.
    lines = None if progress_bar_drawn(err) else ProgressLines("training", "steps")
    compact = lines is None and err.width < _BAR_FITS
    with Progress(
        *_training_columns(compact, _validates(config)), console=err, disable=lines is not None
    ) as bar:
        task = bar.add_task(_training_line(0, config.steps), total=config.steps, loss="-", psnr="-")

        def report(step: int, total: int, logs: dict[str, float]) -> None:
            value = logs.get("psnr", float("nan"))
            loss, psnr = f"{logs['loss']:.4f}", "-" if math.isnan(value) else f"{value:.2f} dB"
            said = _training_line(step, total, f"loss {loss}", f"val PSNR {psnr}" if psnr != "-" else "")
            bar.update(task, completed=step, loss=loss, psnr=psnr, description=said)
            if lines is not None:
                lines(step, total, f"loss {loss}" + (f", val PSNR {psnr}" if psnr != "-" else ""))

        try:
            return train(
                config,
                resume=resume,
                overwrite=overwrite,
                progress=report,
                recipe=str(recipe) if recipe else None,
                # Once the data is read: an error in it stays the one line on stderr.
                started=lambda: _say_if_unvalidated(config, recipe),
            )
        except KeyboardInterrupt as stop:
            # Reported as geosr run's are: one line (rich wrapped this one at 80 columns in a
            # log file), the signal's own words (a SIGTERM said "interrupted"), the command.
            # str(): an exception is true whatever its words, and Ctrl-C's has none ('error: ; the run').
            raise InterruptedRunError(_interrupted(str(stop) or "interrupted", config)) from None
        except Exception:
            # An error (a raster, the resume check, ...) is one line: the bar, still at 0 or
            # at the failed step, goes instead of staying above it. An interrupt keeps it.
            bar.live.transient = True
            bar.live.stop()
            bar.disable = True  # so leaving the block adds no blank line where stderr is no terminal
            raise


def _interrupted(said: str, config: Any) -> str:
    """The line of a run interrupted as ``said``: where its checkpoint is, and at which step.

    The command that resumes it follows, as geosr's main adds it: the line said "continue it
    with --resume (to resume: geosr train ... --resume)", the hint twice, and named the run
    folder, not the checkpoint the run goes on from, nor how far it had come.
    """
    from geosr.train.checkpoint import checkpoint_step

    checkpoints = Path(config.output) / "checkpoints"
    step = checkpoint_step(checkpoints)
    if step is None:
        return f"{said} before its first checkpoint; the run in {config.output} starts again from step 0"
    return f"{said} after step {step} of {config.steps}; its checkpoint is kept in {checkpoints}"


def _shift_words(shift: list[float]) -> str:
    """The residual shift removed from a pair's HR, with its axes and sign.

    Printed as a bare ``[0.48, -1.52]``, it did not say which number is which axis,
    nor which way the HR lay.
    """
    # + 0.0 turns a -0.0 (a shift of -0.001 rounded) into 0.0: '-0.00' read as a shift upwards.
    dy, dx = (round(value, 2) + 0.0 for value in shift)
    return f"shift removed dy {dy:+.2f}, dx {dx:+.2f} HR px (+: the HR lay down/right of the LR)"


def evaluate_command(
    hr_rasters: Annotated[
        list[str] | None,
        _hr_rasters("HR rasters for the Wald protocol: files or quoted globs ('val/*.tif')."),
    ] = None,
    lr: LrPaths = None,
    hr: HrPaths = None,
    scale: Annotated[int, typer.Option("--scale", "-s", help="Zoom factor per axis, 2..8.")] = 4,
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            metavar="<name>",
            help="Model name (see `geosr models`) or a .safetensors path (default: cnnrnn-fast); a "
            "model's name always means that model: give ./NAME.safetensors for a file of that name.",
        ),
    ] = None,
    border: Annotated[int, _whole_number(help="HR pixels excluded at every edge.", minimum=0)] = 16,
    # Text, not Paths, which drop the '/' that says a folder (check_report_paths refuses it).
    json_path: Annotated[
        str | None,
        path_option(
            "--json",
            parser=given_name,
            help="Write the full report as JSON; '-' prints it on stdout, for scripts (jq), and the "
            "table on stderr.",
        ),
    ] = None,
    plot: Annotated[
        str | None,
        path_option(parser=given_name, help="Write a PNG bar chart of the gain over bicubic."),
    ] = None,
    workdir: Annotated[
        Path | None,
        path_option(parser=given_path, help="Keep the LR, SR and bicubic GeoTIFFs here."),
    ] = None,
    # geosr run's own options, as the run of each image takes them (their help named no default).
    tile: Tile = None,
    batch_size: Batch = None,
    device: Device = "auto",
    precision: Precision = "auto",
    nodata: Annotated[
        float | None, typer.Option(help="Override the HR rasters' nodata value (Wald).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option("--overwrite", help="Replace existing --json/--plot files and --workdir GeoTIFFs."),
    ] = False,
    variable: Annotated[
        str | None,
        typer.Option(help="Variable to read from HR Zarr stores or netCDF/HDF5 files of several (Wald)."),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            help="Bands of the HR rasters to evaluate (Wald), by description or 1-based index, in order: "
            "B04,B03,B02,B08 or 3,2,1."
        ),
    ] = None,
) -> None:
    """Measure PSNR, SSIM and gain over bicubic: Wald protocol on HR rasters, or --lr/--hr pairs."""
    from geosr.batch import expand_inputs

    pairs = _pairs(lr, hr)
    _check_evaluate_options(hr_rasters, pairs, nodata, variable, bands)
    # Quoted globs, as `geosr run` and `geosr train` take them; strings, not Paths,
    # which would fold the // of a remote path.
    hr_rasters = expand_inputs(hr_rasters) if hr_rasters else None
    _check_report_files(json_path, plot, overwrite, hr_rasters, pairs)
    # geosr run's own options, as the run of each image takes them.
    run = {"device": device, "precision": precision, "tile": tile, "batch_size": batch_size}
    common = {"scale": scale, "model": model, "border": border, "workdir": workdir, "overwrite": overwrite}
    report = _evaluated(
        hr_rasters, pairs, {**common, **run}, {"nodata": nodata, "variable": variable, "bands": bands}
    )
    _report_evaluation(report, json_path, plot)


def _check_evaluate_options(
    hr_rasters: list[str] | None,
    pairs: list[tuple[str, str]],
    nodata: float | None,
    variable: str | None,
    bands: str | None,
) -> None:
    """Refuse HR rasters beside --lr/--hr pairs, and the options of the Wald protocol with pairs.

    Paired evaluation reads each file's own nodata: an override would be silently
    ignored, and pixels the user meant as nodata (0 in a JP2 swath) scored as data.

    Raises
    ------
    OptionError
        HR rasters and pairs given together, or ``--nodata``, ``--variable`` or ``--bands``
        with pairs.
    """
    if pairs and hr_rasters:
        raise OptionError("give either HR rasters (Wald protocol) or --lr/--hr pairs, not both")
    if pairs and (nodata is not None or variable is not None or bands is not None):
        option = "--nodata" if nodata is not None else "--variable" if variable is not None else "--bands"
        how = (
            "whose own nodata is used: set it in the files (gdal_edit.py -a_nodata VALUE FILE)"
            if option == "--nodata"
            else "which are read whole: write what to evaluate to GeoTIFF pairs first (gdal_translate -b N)"
        )
        raise OptionError(
            f"{option} applies to the HR rasters of the Wald protocol, not to --lr/--hr pairs, {how}"
        )


def _check_report_files(
    json_path: str | None,
    plot: str | None,
    overwrite: bool,
    hr_rasters: list[str] | None,
    pairs: list[tuple[str, str]],
) -> None:
    """Refuse, before the evaluation, which can take long, a --json or --plot file that would
    replace a file the user had (unless ``overwrite``) or one of the inputs, or lies in a missing
    folder, as for ``geosr run -o``; ``--json -`` is stdout, no file.

    Raises
    ------
    OptionError, OutputError
        As :func:`~geosr.evaluation.report.check_report_paths` raises them.
    """
    from geosr.evaluation.report import check_report_paths

    inputs = [Path(p) for p in [*(hr_rasters or []), *(p for pair in pairs for p in pair)]]
    # '-' was a file of that name in the working folder; stdout now carries the JSON alone.
    to_stdout = json_path == "-"
    check_report_paths(None if to_stdout else json_path, plot, overwrite=overwrite, inputs=inputs)


def _evaluated(
    hr_rasters: list[str] | None,
    pairs: list[tuple[str, str]],
    options: dict[str, Any],
    wald_options: dict[str, Any],
) -> Any:
    """The report of the evaluation on ``pairs``, where given, else on ``hr_rasters`` (Wald).

    Parameters
    ----------
    hr_rasters : list of str, optional
        The HR rasters of the Wald protocol, their globs expanded.
    pairs : list of (str, str)
        The ``--lr/--hr`` pairs.
    options : dict
        The keywords of both evaluations (``scale``, ``model``, ``border``, ``workdir``,
        ``overwrite``) and ``geosr run``'s options, as the run of each image takes them.
    wald_options : dict
        The keywords of the Wald protocol alone (``nodata``, ``variable``, ``bands``).

    Returns
    -------
    EvalReport
        :func:`~geosr.evaluation.wald.evaluate_paired`'s or :func:`~geosr.evaluation.wald.evaluate_wald`'s.

    Raises
    ------
    OptionError
        Neither HR rasters nor pairs.
    """
    from geosr.evaluation.wald import evaluate_paired, evaluate_wald

    if pairs:
        return evaluate_paired(pairs, **options)
    if hr_rasters:
        return evaluate_wald(hr_rasters, **options, **wald_options)
    raise OptionError("nothing to evaluate: give HR rasters or --lr/--hr pairs")


def _report_evaluation(report: Any, json_path: str | None, plot: str | None) -> None:
    """Write the --json and --plot files, then print the table (on stderr where ``--json -``
    prints the JSON on stdout), and say the files written."""
    from geosr.evaluation.report import print_report, report_json, write_json, write_plot

    to_stdout = json_path == "-"
    # The files first: a stdout that cannot be written loses the table alone.
    written = [write_json(report, json_path)] if json_path and not to_stdout else []
    written += [write_plot(report, plot)] if plot else []
    done = f"{' and '.join(map(str, written))} {'is' if len(written) == 1 else 'are'} written, but "
    with stdout_guarded(done if written else ""):
        print_report(report, err if to_stdout else StdoutConsole())
        if to_stdout:
            typer.echo(report_json(report))
    for path in written:
        _say(f"wrote {path}")
