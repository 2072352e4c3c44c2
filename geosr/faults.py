"""Fault injection for the reliability tests: die at a named phase boundary.

The code calls :func:`checkpoint` at the boundaries where a crash is most
interesting (a batch read, a batch through the model, a tile written but not yet
journaled, the COG built but not yet renamed...).  Normally that is one cached
``None`` check.  With the environment variable ``GEOSR_FAULT_AT=PHASE:N`` the
process kills itself with ``SIGKILL`` (no cleanup, no ``finally``, no atexit:
the worst crash there is) the ``N``-th time it reaches ``PHASE``::

    GEOSR_FAULT_AT=write:3 geosr run scene.tif     # dies after the 3rd tile write

``GEOSR_FAULT_ONCE=FILE`` makes the fault fire in one process only, across a
cluster: the first process to create ``FILE`` dies, the others (and the worker
the nanny restarts) carry on.

Phases: ``read``, ``infer``, ``write``, ``journal``, ``model`` (a Dask worker's
model loaded by its plugin), ``task`` (a Dask task done on a worker),
``finalise`` (overview levels completed; then the VRT over the store written),
``cog`` (COG built, not renamed), ``commit`` (output renamed, run state not yet
removed).
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

from geosr.errors import OptionError

PHASES = ("read", "infer", "write", "journal", "model", "task", "finalise", "cog", "commit")

_lock = threading.Lock()
_counts: dict[str, int] = {}
_target: tuple[str, int] | bool | None = False  # False: environment not read yet


def _parse() -> tuple[str, int] | None:
    spec = os.environ.get("GEOSR_FAULT_AT", "").strip()
    if not spec:
        return None
    phase, _, count = spec.partition(":")
    if phase not in PHASES:
        raise OptionError(
            f"GEOSR_FAULT_AT={spec!r}: unknown phase {phase!r}; use PHASE:N with one of "
            f"{', '.join(PHASES)}, or unset it"
        )
    # A count of 0 or less never fired: a reliability test then passed without its fault.
    if count and not (count.isascii() and count.isdigit() and int(count) >= 1):
        raise OptionError(
            f"GEOSR_FAULT_AT={spec!r}: {count!r} is not a count; use PHASE:N with N a whole number "
            "from 1 (the N-th pass through PHASE), or unset it"
        )
    marker = os.environ.get("GEOSR_FAULT_ONCE")
    if marker and not Path(marker).parent.is_dir():
        # Found at the fault, where creating it failed in a FileNotFoundError traceback.
        raise OptionError(
            f"GEOSR_FAULT_ONCE={marker!r}: its folder does not exist; name a file in an existing "
            "folder (the first process to create it takes the fault), or unset it"
        )
    return phase, int(count or 1)


def check() -> None:
    """Refuse a malformed ``GEOSR_FAULT_AT`` (:class:`OptionError`) before a run starts.

    Read at the first :func:`checkpoint`, it failed with a ValueError traceback from
    inside the run, which left its run folder behind.
    """
    global _target  # noqa: PLW0603 - a per-process switch, read once
    if _target is False:
        _target = _parse()


def checkpoint(phase: str) -> None:
    """Count one pass through ``phase``; die here if ``GEOSR_FAULT_AT`` says so."""
    check()
    if _target is None:
        return
    assert isinstance(_target, tuple)
    with _lock:
        _counts[phase] = _counts.get(phase, 0) + 1
        hit = _target == (phase, _counts[phase])
    if hit and _claim():
        os.kill(os.getpid(), signal.SIGKILL)


def _claim() -> bool:
    marker = os.environ.get("GEOSR_FAULT_ONCE")
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
