"""The ``geosr`` command's entry point: quiet about a signal while the CLI itself loads.

Importing :mod:`geosr.cli` (typer, rich and geosr's modules) takes a quarter of a
second, before :func:`geosr.cli.main` installs the handlers that turn Ctrl-C and
SIGTERM into one line; a Ctrl-C then printed a traceback of whichever import it
interrupted.  Nothing has been read or written by then, so the handler here says
so and exits at once with the status a shell expects (128 + the signal).

It also settles how torch's OpenMP threads wait (:func:`sleep_while_waiting`), which has to be
done before torch loads.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
import os
import signal
import sys
from types import FrameType


def _stopped_while_starting(signum: int, _frame: FrameType | None) -> None:
    what = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
    sys.stderr.write(
        f"error: {what} while geosr was starting; nothing was written: run the same command again\n"
    )
    sys.stderr.flush()
    os._exit(128 + signum)  # no unwinding: an import half done has nothing to clean up


def _ended(status: int) -> None:
    """The command has ended with ``status`` and said so: a further Ctrl-C or SIGTERM (a second
    one, as Python tears down torch, GDAL and zarr, a second or so) ends the process at once
    with that status.  It printed the traceback of whatever teardown step it interrupted (an
    atexit callback, a thread's join), or killed the process by the signal (status -2, not
    130), once Python had put back the default handlers for the last of its teardown.

    The teardown is shortened too (:func:`collected_before_teardown`), once those handlers
    are in place."""

    def leave(_signum: int, _frame: FrameType | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # a closed pipe: nothing more to say anyway
                stream.flush()
        os._exit(status)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, leave)
    collected_before_teardown()


def collected_before_teardown() -> None:
    """Collect the command's garbage once, now, and leave what is alive to the end of the process
    (:func:`gc.freeze`): Python's teardown collects the whole heap several times as it takes the
    modules apart, and torch, GDAL and zarr leave over 200 000 objects in it.  The
    process then took 0.46-0.48 s to end after a 1024^2 bicubic ``geosr run``, as long as the
    run's job itself; now 0.08 s for this collection and 0.13 s for the rest.  The collection
    runs the finalisers of whatever the command left in reference cycles, as the teardown's
    would; objects still in use at exit are the process's to free, whose memory goes with it.
    """
    gc.collect()
    gc.freeze()


def _ignore_signals() -> None:
    """The last exit callback: Python now restores the default handlers, which kill."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)


def closed_streams_filled() -> None:
    """Open the null device on each standard descriptor (0, 1, 2) the command was started without
    (``2>&-``, ``<&-``, a daemon's), and give Python a stderr on it.

    Python leaves ``sys.stderr`` None for a closed descriptor 2, and the command died as it set
    up its own stderr, silently, with exit status 1, before it read anything: ``geosr run a.tif
    2>&-`` wrote nothing.  A closed descriptor is also the number the next file opened takes, so
    the reads of standard input or the writes meant for it went to that file.  ``sys.stdin`` and
    ``sys.stdout`` stay None, by which the command tells that they were closed.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDONLY if fd == 0 else os.O_WRONLY)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False, errors="backslashreplace")  # noqa: SIM115 - the process's


def stdout_buffered() -> None:
    """Give an unbuffered stdout (``PYTHONUNBUFFERED=1`` or ``python -u``, as many container
    images set) a buffer flushed at each line, so that each write on it is whole or an error.

    Unbuffered, Python's text stdout writes on the descriptor itself and does not check what
    the write took: a pipe whose reader went mid-write (``geosr models --json | head -1``, 38 KiB
    into a 4 KiB pipe) took a part, the rest was dropped without an error, and the command ended
    with status 0, its output cut short, where buffered it ends with 141 (a buffer writes what is
    left, which fails: :func:`~geosr.cli_types.pipe_closed_ends_quietly`).  Flushed at each line,
    what the command prints still shows at once, as the user asked.
    """
    stream = sys.stdout
    if not isinstance(stream, io.TextIOWrapper) or not isinstance(stream.buffer, io.RawIOBase):
        return  # buffered (the default), replaced, or closed (None)
    # A file of its own on the descriptor: Python's stdout (sys.__stdout__) keeps its own.
    raw = io.FileIO(stream.fileno(), "w", closefd=False)
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(raw), encoding=stream.encoding, errors=stream.errors, line_buffering=True
    )


WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
"""The variables by which a user sets how libgomp's threads wait; either one is left alone."""


def sleep_while_waiting() -> bool:
    """Have the command's OpenMP threads sleep as soon as they wait (``OMP_WAIT_POLICY=PASSIVE``),
    unless the user chose a policy; True when it was set.

    torch's CPU kernels run on GNU OpenMP, whose threads spin for about 3 ms before they sleep
    while they wait for their team.  On a machine that is the run's alone that hides a wake-up;
    beside any other busy process the spinning threads take the cores from those that have
    work.  With one CPU-bound process beside it on the 2-core benchmark machine, a 2048^2 x4
    run took 1.24x as long with the default (figure 14 of ``benchmarks/RESULTS.md``), and under
    a load of 11 from other jobs, 42.8 s against 24.8 s; quiet, the two are within the noise
    (the model's calls are large).  The command owns its process; the Python API leaves its
    host's OpenMP alone.  libgomp reads the variable once, when torch loads it: this runs
    before any import of torch.
    """
    if "torch" in sys.modules or any(name in os.environ for name in WAIT_SETTINGS):
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def main() -> None:
    """Run the ``geosr`` command, with a signal during its imports reported in one line."""
    closed_streams_filled()  # first: before any file is opened in place of one
    stdout_buffered()
    sleep_while_waiting()
    atexit.register(_ignore_signals)  # first registered: run last
    previous = {
        signum: signal.signal(signum, _stopped_while_starting) for signum in (signal.SIGINT, signal.SIGTERM)
    }
    from geosr.cli import main as cli_main
    from geosr.interrupts import exit_status

    for signum, handler in previous.items():
        signal.signal(signum, handler)
    try:
        cli_main()
    except SystemExit as exc:
        _ended(exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1)
        raise
    except KeyboardInterrupt:
        # A second Ctrl-C while the first one's line was printed (the line comes first).
        status = exit_status(130)
        _ended(status)
        sys.exit(status)
