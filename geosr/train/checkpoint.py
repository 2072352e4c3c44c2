"""Training checkpoints as safetensors + JSON (nothing is ever unpickled).

``<dir>/last.safetensors`` holds every tensor: the model (``model.*``), the
optimiser's per-parameter state (``optim.<param index>.<name>``) and the torch
RNG states (``rng.torch``, ``rng.cuda.<i>``).  ``<dir>/last.json`` holds the rest:
the step, the optimiser's hyper-parameters, the scheduler state, the numpy and
Python RNG states, the validation history and the run config.  Both are
written atomically, tensors first, so that the JSON (read first on resume)
never points at a half-written tensor file; the JSON records the step that the
tensor file's metadata must repeat.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from geosr.errors import InputError
from geosr.interrupts import signals_held
from geosr.models.weights import atomic_write

NAME = "last"


@dataclass
class TrainState:
    """What besides tensors a resumed run needs."""

    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def _set_python_state(state: list[Any]) -> None:
    random.setstate((state[0], tuple(state[1]), state[2]))


def save_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    config: dict[str, Any],
) -> Path:
    """Write ``last.safetensors`` and ``last.json`` into ``directory``; returns the JSON path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {
        f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()
    }
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for idx, pstate in opt["state"].items():
        for key, value in pstate.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{idx}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {
        "step": state.step,
        "seconds": state.seconds,
        "history": state.history,
        "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars},
        "scheduler": sched,
        "rng": {
            "numpy": np.random.get_state(legacy=False),  # noqa: NPY002  (global state, if anything uses it)
            "python": _python_state(),
        },
        "config": config,
    }
    weights = d / f"{NAME}.safetensors"
    js = d / f"{NAME}.json"
    # A Ctrl-C between the two files (a second one, as training saved on the first; a
    # SIGTERM as a periodic checkpoint was written) left the tensors of one step with the
    # state of another, which --resume took as they were: it waits for both.
    with signals_held():
        atomic_write(weights, lambda p: save_file(tensors, str(p), metadata={"step": str(state.step)}))
        atomic_write(js, lambda p: p.write_text(json.dumps(meta, default=_jsonable), encoding="utf-8"))
    return js


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def has_checkpoint(directory: str | Path) -> bool:
    """Whether ``directory`` holds a complete checkpoint."""
    d = Path(directory)
    return (d / f"{NAME}.json").is_file() and (d / f"{NAME}.safetensors").is_file()


def checkpoint_step(directory: str | Path) -> int | None:
    """The step of the checkpoint in ``directory``, None where it holds none (or none readable)."""
    if not has_checkpoint(directory):
        return None
    try:
        step = json.loads((Path(directory) / f"{NAME}.json").read_text(encoding="utf-8"))["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return step if isinstance(step, int) else None


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """The run config stored in a checkpoint."""
    meta = json.loads((Path(directory) / f"{NAME}.json").read_text(encoding="utf-8"))
    config: dict[str, Any] = meta["config"]
    return config


def load_checkpoint(
    directory: str | Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    device: torch.device,
) -> TrainState:
    """Restore everything :func:`save_checkpoint` wrote; returns the train state."""
    d = Path(directory)
    try:
        meta = json.loads((d / f"{NAME}.json").read_text(encoding="utf-8"))
        tensors = load_file(str(d / f"{NAME}.safetensors"), device="cpu")
        with safe_open(str(d / f"{NAME}.safetensors"), "pt") as handle:
            tensors_step = (handle.metadata() or {}).get("step")
    except (OSError, ValueError, SafetensorError) as exc:
        raise InputError(f"checkpoint in {d} cannot be read ({exc}); start again without --resume") from exc
    if tensors_step != str(meta["step"]):
        # The process died between the two files (SIGKILL, a power cut): resumed, the model
        # and optimiser of one step went on with the step count and schedule of another.
        raise InputError(
            f"checkpoint in {d} is two checkpoints: {NAME}.safetensors holds step {tensors_step} and "
            f"{NAME}.json step {meta['step']} (the run was killed while saving); start again without --resume"
        )
    model_state = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    model.load_state_dict(model_state, strict=True)
    opt_state: dict[str, Any] = {"state": {}, "param_groups": meta["optimizer"]["param_groups"]}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, idx, name = key.split(".", 2)
            # Adam's "step" stays on the CPU; moments follow their parameter.
            opt_state["state"].setdefault(int(idx), {})[name] = value if name == "step" else value.to(device)
    for idx, scalars in meta["optimizer"]["scalars"].items():
        opt_state["state"].setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict(opt_state)
    sched_state = dict(scheduler.state_dict())
    sched_state.update(meta["scheduler"])
    scheduler.load_state_dict(sched_state)
    torch.set_rng_state(tensors["rng.torch"])
    cuda_states = [tensors[k] for k in sorted(tensors) if k.startswith("rng.cuda.")]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    np.random.set_state(meta["rng"]["numpy"])  # noqa: NPY002
    _set_python_state(meta["rng"]["python"])
    return TrainState(step=int(meta["step"]), history=list(meta["history"]), seconds=float(meta["seconds"]))
