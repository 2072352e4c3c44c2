"""Process-wide settings a run changes for as long as it lasts, and puts back after.

Some settings belong to the whole process, not to a run: torch's thread count, a
logger's level.  Runs that overlap (two threads of a notebook, say) must not each
save the value they found and restore it as they end: the second would save the
first one's value, and leave it in the caller's process for good.  So the first
run to hold a setting saves the caller's value, and the last one to let it go
puts it back.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any

TORCH_THREADS = "torch threads"
"""The name under which runs hold torch's thread count (``torch.set_num_threads``)."""

_HELD = threading.Lock()
_held: dict[str, tuple[int, Any]] = {}  # setting -> (runs holding it, the caller's value)


@contextlib.contextmanager
def setting_held(name: str, get: Callable[[], Any], put: Callable[[Any], None]) -> Iterator[Any]:
    """Within: runs may change the process-wide setting ``name``; the caller's value (``get``,
    read by the first run to hold it, which the context gives) comes back (``put``) as the last
    of the runs that hold it ends.
    """
    with _HELD:
        holders, value = _held.get(name, (0, None))
        value = get() if holders == 0 else value
        _held[name] = (holders + 1, value)
    try:
        yield value
    finally:
        with _HELD:
            holders, value = _held.pop(name)
            if holders > 1:
                _held[name] = (holders - 1, value)
            else:
                put(value)


def _put_variable(name: str, value: str | None) -> None:
    """Set the environment variable ``name`` to ``value``, or take it out for None."""
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def environment_defaults(values: Mapping[str, str]) -> Iterator[None]:
    """Within: each variable of ``values`` the environment lacks, set to its value; after: the
    environment's own again, as the last of the calls that hold it ends (:func:`setting_held`).

    For the ``geosr`` command's own settings (its process's GDAL and the programs it starts
    read them from the environment): :func:`geosr.cli.main` called in a notebook's or a test's
    process left them there for good.
    """
    with contextlib.ExitStack() as held:
        for name, value in values.items():
            get = functools.partial(os.environ.get, name)
            caller = held.enter_context(
                setting_held(f"environment variable {name}", get, functools.partial(_put_variable, name))
            )
            if caller is None:
                os.environ[name] = value
        yield
