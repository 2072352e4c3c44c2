"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc serves allocations above ``M_MMAP_THRESHOLD`` (at most 32 MiB) with a
fresh ``mmap`` and returns them with ``munmap`` on free.  A model's activations
on a batch of tiles are tens of MiB each, allocated and freed a few hundred
times per batch, so every one of them was a new mapping whose pages the kernel
zero-filled on first touch: about 15 % of a CPU run's time went to page faults
(``sys`` time 1.0 s of 6.8 s for six batches here, 0.05 s with this tuning).

With mmap off for the heap and trimming off, freed blocks are reused by the
next batch.  And every thread allocates from that one heap (``M_ARENA_MAX`` 1):
glibc gives other threads arenas of their own, made of 64 MiB mmap'd heaps
that are unmapped again when they empty, so tiles read, predicted or written in
worker threads page-faulted as before.  Two Dask worker threads in one process,
each running the model, took 450 000 faults and 1.7 s of ``sys`` time per
2048^2 run (13 % slower per tile than two worker processes); with one arena,
500 faults and 0.3 s.  Large, long-lived allocations make the shared arena's
lock cheap.  Peak memory is unchanged (the same tensors are alive at the same
time); it is simply not returned between batches.  This is what jemalloc or
tcmalloc achieve when preloaded, without asking users to preload anything.

Only in processes geosr owns: the ``geosr`` command's (:func:`geosr.cli.main`, first
thing) and the Dask worker processes that a run loads its model into
(:class:`geosr.orchestrate.cluster.ModelPlugin`), which exist to run it.  The Python
API leaves its host's allocator as it found it: tuned from the predictor, a notebook
that had called ``geosr.upscale_file`` once kept every array it freed afterwards (a
300 MiB one stayed resident), for good.  Tuning only for the length of a call and
restoring glibc's defaults after it cannot give the host back what it had:

- glibc fixes its arena limit the first time a thread needs an arena: a later
  ``M_ARENA_MAX``, even 64, left 4 threads sharing one arena here;
- setting any of these options, even to its default, switches off for the rest of
  the process the mmap threshold that glibc otherwise raises to the largest block
  freed (up to 32 MiB): a 4 MiB block freed and allocated again was a new mapping;
- a ``geosr.upscale`` result is lazy: its model calls have no end of call to
  restore at;
- a ``malloc_trim`` after the call would hand back the host's own free memory too.

So a host keeps glibc's defaults, and its CPU runs the page faults (about 15 % of
their time); a process that is geosr's alone can call :func:`keep_freed_memory`
itself, first, before numpy or torch start threads, as the benchmarks do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from typing import Any

log = logging.getLogger(__name__)

# mallopt parameters, from glibc's malloc.h.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
_NEVER_TRIM = 2**31 - 1  # bytes; mallopt takes an int


def libc_function(name: str) -> Any | None:
    """The C library's function ``name`` (a ctypes function), or None where there is none
    (no C library found, or not glibc: musl has no ``mallinfo2``, macOS no ``mallopt``)."""
    path = ctypes.util.find_library("c")
    if path is None:
        return None
    try:
        return getattr(ctypes.CDLL(path), name)
    except (OSError, AttributeError):
        return None


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's allocator for large, short-lived tensors, once and for the rest of the process.

    Only in a process that is geosr's alone (see the module's docstring): its freed
    memory is never returned to the system afterwards.

    Returns
    -------
    bool
        True when the tuning applied (glibc), False elsewhere (musl, macOS,
        Windows), where the allocator is left as it is.
    """
    mallopt = libc_function("mallopt")
    if mallopt is None:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 on error.
    applied = all(
        mallopt(option, value)
        for option, value in ((_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _NEVER_TRIM), (_M_ARENA_MAX, 1))
    )
    log.debug("glibc allocator tuned for large tensors: %s", applied)
    return applied
