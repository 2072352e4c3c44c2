"""Ctrl-C and SIGTERM as one line: how an interrupted ``geosr`` command ends.

SIGTERM (``timeout``, Slurm, ``docker stop``) is raised in the main thread as Ctrl-C
is (:class:`Terminated`), so the same cleanup runs and one line says how to go on,
with exit status 130 or 143 (:func:`exit_status`).  An interrupt raised inside a C
library's callback, which Python would drop, is kept (:func:`swallowed_interrupt`).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from geosr.errors import GeosrError, InterruptedRunError, counted


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, Slurm, ``docker stop``), raised in the main thread as Ctrl-C is.

    A KeyboardInterrupt, so that every ``finally`` and every Ctrl-C handler
    (the run's, training's) cleans up and reports exactly as for Ctrl-C.
    """


_sigterm_received = threading.Event()

_swallowed: list[KeyboardInterrupt] = []
"""Ctrl-C or SIGTERM raised where Python cannot raise it and drops it ("Exception
ignored"): inside a C library's callback into Python (GDAL's error handler in
rasterio), whose call then fails as if its file were bad (opening a FIFO: 'Interrupted
system call'), or inside a finalizer (``__del__``, a weakref callback) that the garbage
collector happened to run when the signal came, where nothing fails at all."""

_swallowed_lock = threading.Lock()

REDELIVERY_DELAY_S = 0.05
"""How long a swallowed interrupt waits to be taken (:func:`swallowed_interrupt`) by the
failure it caused before its signal is sent again: by then the main thread is out of
the callback or finalizer, in code where the signal raises."""


def _keep_swallowed_interrupt(unraisable: Any) -> None:
    """``sys.unraisablehook``: keep an interrupt that a callback could not raise, for the
    failure it causes to be reported as the interrupt it is."""
    if isinstance(unraisable.exc_value, KeyboardInterrupt):
        _keep(unraisable.exc_value)
        return
    sys.__unraisablehook__(unraisable)


def _keep(stop: KeyboardInterrupt) -> None:
    """Keep ``stop`` for the failure it may cause, and send its signal again soon in case
    nothing fails: a command that went on as if never interrupted (the signal was dropped
    in a finalizer) ran to its end, ignoring the SIGTERM of ``timeout`` or Slurm."""
    with _swallowed_lock:
        _swallowed.append(stop)
    # Not raised now, nor the signal sent from here: its handler would run at once,
    # inside this hook, and be dropped again.
    timer = threading.Timer(REDELIVERY_DELAY_S, _redeliver, args=(stop,))
    timer.daemon = True
    timer.start()


def _redeliver(stop: KeyboardInterrupt) -> None:
    """Send ``stop``'s signal to the main thread again, unless its failure took it."""
    with _swallowed_lock:
        if not any(kept is stop for kept in _swallowed):
            return
        _swallowed.clear()
        signum = signal.SIGTERM if isinstance(stop, Terminated) else signal.SIGINT
        main = threading.main_thread().ident
        if main is not None:  # always: the main thread has started
            signal.pthread_kill(main, signum)


def _keep_interrupt_printed(kind: type[BaseException], value: BaseException, tb: Any) -> None:
    """``sys.excepthook``, which Cython calls to print the traceback of an exception its
    callback cannot raise, before the unraisable hook: an interrupt is kept, not printed."""
    if isinstance(value, KeyboardInterrupt):
        _keep(value)
        return
    sys.__excepthook__(kind, value, tb)


def swallowed_interrupt() -> KeyboardInterrupt | None:
    """The interrupt a callback swallowed since the last call, if any (taken: its signal
    is not sent again)."""
    with _swallowed_lock:
        stop = _swallowed[-1] if _swallowed else None
        _swallowed.clear()
    return stop


def _raise_terminated(signum: int, frame: object) -> None:
    """SIGTERM's handler: stop the main thread where it is, as SIGINT does."""
    _sigterm_received.set()
    raise Terminated("terminated (SIGTERM)")


def exit_status(code: int) -> int:
    """``code``, but SIGINT's 130 as SIGTERM's 143 (128 + 15) after a SIGTERM: the status
    a shell, ``timeout`` or Slurm expects of a process that stopped on that signal."""
    return 128 + signal.SIGTERM if code == 130 and _sigterm_received.is_set() else code


def output_stamp(destination: str | Path) -> tuple[int, int] | None:
    """What tells a local output written now from the one there before: its inode and
    mtime (None when there is none, or for a remote output)."""
    from geosr.io.remote import is_remote

    if is_remote(destination):
        return None
    try:
        stat = Path(destination).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_mtime_ns


def interrupted_run(
    stop: KeyboardInterrupt,
    source: str,
    destination: str | Path,
    *,
    written: int = 0,
    previous: tuple[int, int] | None = None,
) -> GeosrError:
    """The error a run stopped by Ctrl-C or SIGTERM ends with: resumable once its output is
    in place (``previous``: the :func:`output_stamp` of ``destination`` before the run),
    once its run state exists (for a remote ``destination``, beside its staged copy), or
    once earlier inputs of the same command have their outputs (``written``: run again as
    it was, the command would refuse them), else a plain one (the run stopped while it was
    still starting)."""
    from geosr.io.remote import is_remote, staged_output
    from geosr.io.runstate import run_dir

    what = str(stop) or "interrupted"
    local = staged_output(destination) if is_remote(destination) else Path(destination)
    if not is_remote(destination) and output_stamp(local) not in (None, previous):
        # Stopped as it removed its run state or wrote the --stac/--quicklook files: it
        # said "before any tile ran; nothing was written: run the same command again",
        # which then refused the output as "already exists".
        return InterruptedRunError(
            f"{source}: {what} after {local} was written; rerun with --resume, which keeps it "
            "and writes only what is missing"
        )
    if run_dir(local).exists():
        # Its own output, not the command's: in a batch it said "no output was written" with
        # the outputs of the inputs before it in place.
        where = f"in {run_dir(local)}" if is_remote(destination) else "beside it"
        return InterruptedRunError(
            f"{source}: {what}; its output is not written yet, {_tiles_kept(local)} {where}"
            f"{_and_written_before(written)}: rerun with --resume to finish"
        )
    if is_remote(destination) and local.exists():
        return InterruptedRunError(
            f"{source}: {what} before {destination} was uploaded; the output is kept in {local}: "
            "rerun with --resume to upload it (nothing is computed again)"
        )
    if written:
        return InterruptedRunError(
            f"{source}: {what} before any tile ran; {_written_before(written)}: rerun with "
            f"--resume, which keeps {'them' if written > 1 else 'it'} and runs the others"
        )
    return interrupted_early(f"{source}: {what} before any tile ran")


def _written_before(written: int) -> str:
    """``'the output before it is written'``, or ``'the 3 outputs before it are written'``: the
    inputs of the same command done before the one interrupted."""
    return (
        f"the {written} outputs before it are written" if written > 1 else "the output before it is written"
    )


def _and_written_before(written: int) -> str:
    """``', and the output before it is written'`` (:func:`_written_before`), or nothing."""
    return f", and {_written_before(written)}" if written else ""


def _tiles_kept(local: Path) -> str:
    """``'8 of 49 tiles are kept'``: how much of the run kept for ``local`` is done, as
    ``geosr info`` and the next run say it (it said "the finished tiles are kept", which
    left the user to guess whether a --resume was worth it); "the finished tiles are
    kept" where its manifest cannot be read."""
    from geosr.io.runstate import stored_run

    stored = stored_run(local)
    total = None if stored is None else stored[0].get("tiles")
    if stored is None or not isinstance(total, int):
        return "the finished tiles are kept"
    done = len(stored[1])
    return f"{done} of {counted(total, 'tile')} {'is' if done == 1 else 'are'} kept"


def interrupted_early(what: str) -> GeosrError:
    """The error for a Ctrl-C or SIGTERM (``what``) before anything was written."""
    error = GeosrError(f"{what}; nothing was written: run the same command again")
    error.exit_code = 130  # exit_status makes it 143 after a SIGTERM
    return error


def unreported_interrupt(exc: SystemExit) -> KeyboardInterrupt | None:
    """The Ctrl-C or SIGTERM that typer turned into a silent exit status 130, if any.

    typer ends a command that lets a KeyboardInterrupt through (one interrupted
    while importing torch, say) with ``raise Exit(130) from interrupt``, which
    becomes this SystemExit; a command that reports its interrupt itself raises
    ``Exit(130) from None`` instead.
    """
    cause = exc.__context__.__cause__ if exc.__context__ is not None else None
    return cause if exc.code == 130 and isinstance(cause, KeyboardInterrupt) else None


def forget_abandoned_coroutines() -> None:
    """After an interrupt, no warning for the coroutines it left never awaited.

    A Ctrl-C inside one of zarr's synchronous calls can stop it between making a
    coroutine and handing it to zarr's event loop: Python then printed "RuntimeWarning:
    coroutine ... was never awaited" and a tracemalloc hint under the command's one line,
    as it exited.
    """
    warnings.filterwarnings("ignore", r"coroutine .* was never awaited", RuntimeWarning)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Within: Ctrl-C and SIGTERM wait, and take effect as the block ends (in the main thread).

    For a few steps that must all be done or none: an interrupt between them left neither
    the old output nor the new one in place.  Their handlers are swapped for one that only
    notes the signal, rather than the signal blocked (``pthread_sigmask``): blocked in this
    thread, it is delivered to another (zarr's, Dask's), whose C handler has the main thread
    run the Python one all the same.
    """
    held = (signal.SIGINT, signal.SIGTERM)
    if threading.current_thread() is not threading.main_thread() or None in map(signal.getsignal, held):
        # Handlers run in the main thread only: these steps are not interrupted.  (None: a
        # handler C code set, which could not be put back.)
        yield
        return
    received: list[int] = []

    def note(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, note) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if received:
            signal.raise_signal(received[0])  # its own handler now: KeyboardInterrupt, Terminated


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """Within: SIGTERM raises :class:`Terminated` in the main thread (elsewhere, as from
    a test runner's thread, signal handlers cannot be set and nothing changes), and an
    interrupt a C callback swallowed is kept (:data:`_swallowed`)."""
    _sigterm_received.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    hooks = sys.unraisablehook, sys.excepthook
    sys.unraisablehook, sys.excepthook = _keep_swallowed_interrupt, _keep_interrupt_printed
    try:
        yield
    finally:
        # The command is over: an interrupt still kept is not sent again, to a process
        # whose SIGTERM no longer raises (it would die on it, with no line).
        swallowed_interrupt()
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook, sys.excepthook = hooks
