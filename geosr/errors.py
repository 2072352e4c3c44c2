"""One root error for everything a user can get wrong, and the warning category.

Every subclass also inherits the matching builtin, so that ``except ValueError``
keeps working for callers who do not know geosr.  The CLI turns any
:class:`GeosrError` into one readable line on stderr and exit status 2; its
message must therefore say what was given, what was expected and how to fix it.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path


class GeosrError(Exception):
    """Root of every error geosr raises on purpose (bad input, bad option)."""

    exit_code = 2


class InputError(GeosrError, ValueError):
    """The input raster (or a frame, AOI, STAC item) cannot be used as given."""


class OptionError(GeosrError, ValueError):
    """An option value is out of range or inconsistent with the others."""


class SchedulerUnreachableError(OptionError):
    """No Dask scheduler answers at ``--scheduler``: every input of a batch would fail alike."""


class OutputError(GeosrError, OSError):
    """The output cannot be written where or how it was asked for."""


class ModelError(GeosrError, ValueError):
    """A model name, weights file or model card is unknown, unsafe or inconsistent."""


class GeosrWarning(UserWarning):
    """Something the user should know about, where geosr could still go on."""


_FILTERS_HELD = threading.RLock()


@contextlib.contextmanager
def catch_warnings_serialised() -> Iterator[None]:
    """``warnings.catch_warnings()``, entered by one of geosr's threads at a time.

    ``catch_warnings`` saves the process's warning filters and puts them back as it ends:
    two runs in two threads of one process interleaved those steps, and the one that ended
    last put back a copy holding the other's temporary filters, which stayed in the caller's
    process (rasterio's NotGeoreferencedWarning and zarr's consolidated-metadata warning
    ignored for good).  Only for short steps that wait on no other thread of geosr's.
    """
    with _FILTERS_HELD, warnings.catch_warnings():
        yield


class ResumableError(GeosrError, RuntimeError):
    """The run stopped part way (e.g. its Dask scheduler was lost); ``--resume`` finishes it."""


class InterruptedRunError(ResumableError):
    """The user interrupted the run (Ctrl-C); ``--resume`` finishes it."""

    exit_code = 130


def in_context(path: str | Path, exc: GeosrError) -> GeosrError:
    """The same error, its message prefixed by the file it is about (unless already)."""
    message = str(exc)
    if message.startswith(str(path)):
        return exc
    return type(exc)(f"{path}: {message}")
