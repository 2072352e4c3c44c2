"""Weights on disk: ``<stem>.safetensors`` beside its card ``<stem>.json``.

Only safetensors are read.  Pickle-based checkpoints (``torch.save`` output,
``.pt``/``.pth``/``.ckpt``/``.pkl``) run arbitrary code when loaded, so they are
refused by name, before any byte of them is parsed; a pickle renamed to
``.safetensors`` is refused too, by the safetensors parser, which never unpickles.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from torch import nn

from geosr.errors import ModelError, OutputError
from geosr.io.atomic import describe_write_failure, process_umask, unwritable_folder
from geosr.models.card import REQUIRED_FIELDS, ModelCard

WEIGHTS_SUFFIX = ".safetensors"
CARD_SUFFIX = ".json"
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
_MAX_LISTED = 8

StateDict = dict[str, torch.Tensor]


def weights_paths(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """``(<stem>.safetensors, <stem>.json)`` for a weights path, a card path or the bare stem;
    a leading ``~`` is the home folder, as in geosr run's inputs and a recipe's paths
    (``load_model("~/models/mine_x4.safetensors")`` was 'does not exist').

    Raises
    ------
    ModelError
        For a pickle-based checkpoint suffix.
    """
    p = Path(path).expanduser()
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        raise ModelError(
            f"{p} is a pickle-based checkpoint; geosr loads only safetensors, because "
            "unpickling runs arbitrary code. Convert it with, in an environment you trust: "
            'python -c "import torch; from safetensors.torch import save_file; '
            f"save_file(torch.load('{p}', weights_only=True), '{p.with_suffix(WEIGHTS_SUFFIX)}')\" "
            f"and write its model card as {p.with_suffix(CARD_SUFFIX)} (fields "
            f"{', '.join(REQUIRED_FIELDS)}; `geosr models --json` shows whole cards)"
        )
    if suffix == WEIGHTS_SUFFIX:
        # The file as named, whatever its case (M.SAFETENSORS from a Windows share).
        return p, p.with_suffix(CARD_SUFFIX)
    stem = p.with_suffix("") if suffix == CARD_SUFFIX else p
    if not stem.name:
        # '.', '..' or '/': with_name raised ValueError ('PosixPath('.') has an empty name').
        raise ModelError(
            f"{p} is a folder, not geosr weights; give the .safetensors file (with its .json model "
            "card beside it) or a model name from `geosr models`"
        )
    return stem.with_name(stem.name + WEIGHTS_SUFFIX), stem.with_name(stem.name + CARD_SUFFIX)


def local_path(path: str | os.PathLike[str]) -> Path:
    """``path`` of weights to read, from the home folder for a leading ``~``.

    Raises
    ------
    ModelError
        For a URL, read as a path before: 'weights file https:/host/m.safetensors does not
        exist' (``Path`` folds the ``//``).
    """
    if "://" in str(path):
        raise ModelError(
            f"{path}: geosr reads weights from local files only; download them with their "
            f"{CARD_SUFFIX} model card and give the path of the {WEIGHTS_SUFFIX} file"
        )
    return Path(path).expanduser()


def paths_to_write(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """:func:`weights_paths` of weights about to be written (``save_weights``, ``geosr train
    --weights``).

    Raises
    ------
    ModelError
        For a pickle suffix: ``--weights mine.pt`` was told, once training had ended, that
        'mine.pt is a pickle-based checkpoint ... Convert it with torch.load('mine.pt')', of
        a file that did not exist.
    OutputError
        The weights' folder cannot be made or written (a file in its path, a read-only
        file system).
    """
    p = Path(path).expanduser()
    if p.suffix.lower() in PICKLE_SUFFIXES:
        stem = p.with_suffix("")
        raise ModelError(
            f"cannot write weights as {p}: geosr writes safetensors, never pickles; give the stem "
            f"{stem} (written as {stem}{WEIGHTS_SUFFIX} with its card {stem}{CARD_SUFFIX})"
        )
    weights, card = weights_paths(p)
    # Checked here, before training: save_weights found out once training had ended, in an
    # OSError traceback (FileExistsError for a folder that is a file, EROFS), the run lost.
    why = unwritable_folder(weights.parent)
    if why is not None:
        raise OutputError(f"cannot write the weights {weights} ({why}); choose another --weights path")
    return weights, card


def card_of(path: str | os.PathLike[str]) -> Path:
    """The card of the weights ``path`` names (the weights file, its card or their stem, as
    :func:`weights_paths` takes them): beside the weights as named, or, where there is none
    and the weights file is a symbolic link, beside the file the link leads to.

    The card beside the link wins, so that a link can give shared weights a card of its own;
    without one, a link to a run's weights (``ln -s runs/a/m_x4.safetensors mine.safetensors``)
    was refused for want of ``mine.json`` while its card sat beside the weights.  The path
    beside the link when neither exists, for the error that names it.
    """
    weights_path, card_path = weights_paths(path)
    if card_path.is_file() or not weights_path.is_symlink():
        return card_path
    beside_target = weights_paths(weights_path.resolve())[1]
    return beside_target if beside_target.is_file() else card_path


def atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename over ``target``.

    A failed write (a full disk, a file-size limit) is an :class:`OutputError` naming
    ``target``: safetensors' own error for it ended ``geosr train`` in a traceback.
    """
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:  # the folder turned read-only (or went) since paths_to_write checked it
        raise OutputError(describe_write_failure(target, exc, None)) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        # mkstemp makes private files; a saved model is an ordinary user file.
        tmp_path.chmod(0o666 & ~process_umask())
        tmp_path.replace(target)
    except (OSError, SafetensorError) as exc:
        tmp_path.unlink(missing_ok=True)  # first: the free space reported counts it as free
        raise OutputError(describe_write_failure(target, exc, None)) from None
    finally:
        tmp_path.unlink(missing_ok=True)


def save_weights(model: nn.Module, card: ModelCard, path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write ``model``'s state as ``<path>.safetensors`` and ``card`` as ``<path>.json``.

    Parameters
    ----------
    model : torch.nn.Module
        Its ``state_dict`` is saved (CPU, contiguous copies).
    card : ModelCard
        Written beside the weights.
    path : path-like
        The stem, or the ``.safetensors`` / ``.json`` path.

    Returns
    -------
    (Path, Path)
        The weights file and the card file.  Each is written atomically.
    """
    if not isinstance(card, ModelCard):
        raise ModelError(f"save_weights needs a ModelCard, got {type(card).__name__}")
    weights_path, card_path = paths_to_write(path)
    try:
        weights_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(describe_write_failure(weights_path, exc, None)) from None
    # Fresh contiguous copies: safetensors refuses tensors that share storage, and a
    # model converted to channels_last (as the predictor does) has strided weights.
    tensors = {
        k: v.detach().to("cpu").clone(memory_format=torch.contiguous_format)
        for k, v in model.state_dict().items()
    }
    metadata = {"format": "pt", "name": card.name, "scale": str(card.scale)}
    blob = in_sorted_order(save(tensors, metadata=metadata))
    atomic_write(weights_path, lambda p: p.write_bytes(blob))
    atomic_write(card_path, lambda p: p.write_text(card.to_json(), encoding="utf-8"))
    return weights_path, card_path


def in_sorted_order(blob: bytes) -> bytes:
    """A safetensors file with its header's metadata in key order: the same weights, the same bytes.

    safetensors keeps the metadata in a Rust HashMap, seeded afresh for each map, so three
    trainings with one seed wrote three orders of ``format``, ``name`` and ``scale``: equal
    tensors, other bytes (and checksums).  The header is JSON after its 8-byte length, and the
    tensors' offsets count from its end, so it is written again, padded with spaces to 8 bytes
    as safetensors pads it.
    """
    length = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + length])
    if "__metadata__" in header:
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + length :]


def load_weights(path: str | os.PathLike[str]) -> tuple[StateDict, ModelCard]:
    """Read ``<stem>.safetensors`` and its card ``<stem>.json``.

    Parameters
    ----------
    path : path-like
        The ``.safetensors`` file, its ``.json`` card or their common stem.

    Returns
    -------
    (dict of str to Tensor, ModelCard)
        CPU tensors and the card.

    Raises
    ------
    ModelError
        For a pickle-based checkpoint (never unpickled), a missing weights file
        or card, or a file that is not valid safetensors.
    """
    given = local_path(path)
    if given.suffix.lower() in PICKLE_SUFFIXES and not given.exists():
        # Not "a pickle-based checkpoint ... Convert it with": there is nothing to convert.
        raise ModelError(f"weights file {given} does not exist; check the path")
    weights_path = weights_paths(given)[0]
    # The stem of weights beside a folder of the same name (geosr train -o mine --weights mine)
    # names the weights: only a folder with no such file beside it is the user's mistake.
    folder = next((p for p in (given, weights_path) if p.is_dir()), None)
    if folder is not None and not weights_path.is_file():
        # Not "<folder>.safetensors does not exist": the user gave, or named, a folder.
        inside = sorted(p for p in folder.glob(f"*{WEIGHTS_SUFFIX}") if p.with_suffix(CARD_SUFFIX).is_file())
        holds = f" (this one holds {_listed([str(p) for p in inside])})" if inside else ""
        raise ModelError(
            f"{folder} is a folder, not geosr weights; give the .safetensors file "
            f"(with its .json model card beside it){holds} or a model name from `geosr models`"
        )
    if not weights_path.is_file():
        if given.is_file() and given.suffix.lower() == CARD_SUFFIX:
            # A card without its weights was 'not geosr weights; give a .safetensors file (with
            # its .json model card beside it)', as if it were no card.
            raise ModelError(
                f"{given} is a model card, but its weights file {weights_path} "
                f"{_why_not_a_file(weights_path)}; put the weights beside the card"
            )
        # An existing file of another kind: say what it is not, not "<it>.safetensors is missing".
        if given.is_file():
            raise ModelError(
                f"{given} is not geosr weights; give a .safetensors file (with its .json model "
                "card beside it) or a model name from `geosr models`"
            )
        raise ModelError(f"weights file {weights_path} {_why_not_a_file(weights_path)}")
    card_path = card_of(weights_path)
    if not card_path.is_file():
        also = ""
        if weights_path.is_symlink():
            also = f" (or, beside the file the link leads to, {weights_paths(weights_path.resolve())[1]})"
        raise ModelError(
            f"weights {weights_path} have no model card: expected {card_path}{also} "
            "(written by geosr train or save_weights)"
        )
    try:
        state = load_file(str(weights_path), device="cpu")
    except OSError as exc:  # not 'is not a valid safetensors file: Permission denied'
        raise ModelError(_unreadable("weights file", weights_path, exc)) from None
    except (SafetensorError, ValueError) as exc:
        raise ModelError(f"{weights_path} is not a valid safetensors file: {exc}") from exc
    return state, read_card(card_path)


def _why_not_a_file(path: Path) -> str:
    """Why ``path``, which is not a regular file, cannot be read: 'does not exist' was said
    of a symbolic link to a moved file, a link loop and a named pipe alike."""
    if path.is_symlink():
        try:
            path.stat()
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "is a symbolic link that leads back to itself (a loop); give the weights file itself"
            return (
                f"is a symbolic link to {path.readlink()}, which does not exist; "
                "point it at the weights or give them"
            )
    if path.exists():
        return "is not a regular file; give the weights file itself"
    return "does not exist"


def _unreadable(what: str, path: Path, exc: OSError) -> str:
    """The line for a ``what`` at ``path`` that exists but cannot be read."""
    return f"cannot read {what} {path}: {exc.strerror or exc}; check that you may read it"


def read_card(card_path: Path) -> ModelCard:
    """The model card in the JSON file ``card_path``.

    Raises
    ------
    ModelError
        Not UTF-8 text, not JSON, or not a valid card; or the file cannot be read (a card
        another user keeps private ended geosr run in a PermissionError traceback).
    """
    try:
        # utf-8-sig: a card edited in Windows Notepad starts with a BOM, which json refuses.
        text = card_path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ModelError(f"{card_path} is not a model card: not UTF-8 JSON text ({exc.reason})") from None
    except OSError as exc:
        raise ModelError(_unreadable("model card", card_path, exc)) from None
    _refuse_checkpoint(text, card_path)
    return ModelCard.from_json(text, source=str(card_path))


def _refuse_checkpoint(text: str, card_path: Path) -> None:
    """Name a training checkpoint (``checkpoints/last.json``, geosr.train.checkpoint) as one:
    read as a card, it was 'has no 'name', 'architecture', 'scale' field'."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return  # ModelCard.from_json says so
    checkpoint = {"step", "optimizer", "config"}
    if isinstance(data, dict) and checkpoint <= data.keys() and "architecture" not in data:
        raise ModelError(
            f"{card_path.with_suffix(WEIGHTS_SUFFIX)} is a geosr train checkpoint (step {data['step']}), "
            "not weights: a run writes its weights and card into its folder when it ends; finish an "
            "interrupted one with the same geosr train command and --resume"
        )


def _listed(keys: list[str]) -> str:
    more = f" and {len(keys) - _MAX_LISTED} more" if len(keys) > _MAX_LISTED else ""
    return ", ".join(keys[:_MAX_LISTED]) + more


def _unusable(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """What makes tensors unusable as weights: integer ones, and NaN or infinite values.

    A float tensor of NaN or inf (a diverged training) loads without complaint and
    writes NaN, cast to garbage integers, over the whole output.
    """
    not_float = [f"{k} ({t.dtype})" for k, t in sorted(state_dict.items()) if not t.is_floating_point()]
    not_finite = [
        k
        for k, t in sorted(state_dict.items())
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    bad = []
    if not_float:
        bad.append(f"tensors that are not floating point {_listed(not_float)}")
    if not_finite:
        bad.append(f"NaN or infinite values in {_listed(not_finite)}")
    return bad


def apply_state(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str | os.PathLike[str] | None = None
) -> None:
    """Load ``state_dict`` into ``model`` strictly, with a readable error on mismatch.

    Parameters
    ----------
    model : torch.nn.Module
    state_dict : mapping of str to Tensor
    source : path-like, optional
        The weights file, named in the errors: ``geosr run --model mine.safetensors`` said
        'weights do not fit model cnnrnn-fast', after the input's name, of a card that did not
        match its weights.

    Raises
    ------
    ModelError
        Naming missing and unexpected keys, and ``key: expected shape vs found
        shape`` for shape mismatches, typically weights of another model size.
    """
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [
        f"{k}: expected {tuple(expected[k].shape)} vs found {tuple(state_dict[k].shape)}"
        for k in sorted(set(expected) & set(state_dict))
        if expected[k].shape != state_dict[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing keys {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys {_listed(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches {_listed(mismatched)}")
    name = getattr(model, "name", type(model).__name__)
    weights = "weights" if source is None else f"weights {source}"
    if problems:
        raise ModelError(
            f"{weights} do not fit model {name}: {'; '.join(problems)}. "
            "Check that the card's config matches the weights (model size, scale, bands)"
        )
    bad = _unusable(state_dict)
    if bad:
        raise ModelError(
            f"{weights} of model {name} are not usable: {'; '.join(bad)}. They are corrupt or "
            "their training diverged: use an earlier checkpoint or retrain"
        )
    model.load_state_dict(dict(state_dict), strict=True)
