"""Parsers the commands share for their path options (and the options' declaration), their
guard on stdout, and tables as they print them."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import typer
from rich.console import Console, RenderableType
from rich.measure import Measurement

from geosr.errors import GivenNumber, InputError, OutputError
from geosr.io.names import path_bytes
from geosr.io.remote import home_expanded, local_file_text


class StdoutError(OutputError):
    """What a command prints on stdout (an output's path, a table, JSON) cannot be written there."""


@contextlib.contextmanager
def stdout_guarded(done: str = "") -> Iterator[None]:
    """Print on stdout in the block; a failure to write there (a full disk under ``> list.txt``,
    ``/dev/full``) is a :class:`StdoutError` in one line, which was an OSError traceback and
    exit status 1, even after a run's output was written.  ``done`` says what is done anyway.

    A closed pipe (``| head``) is left to :func:`pipe_closed_ends_quietly`, around the command.
    """
    try:
        yield
        sys.stdout.flush()
    except (BrokenPipeError, StdoutError):
        raise  # StdoutError: said by a guard inside this one
    except OSError as exc:
        raise StdoutError(
            f"{done}cannot write on stdout ({exc.strerror or exc}); free space where it is redirected, "
            "or redirect it elsewhere"
        ) from None


def flushed_or_silenced(stream: IO[str]) -> None:
    """Flush ``stream``; where its reader is gone (``geosr run a.tif 2>&1 | head -1``), open the null
    device on its descriptor instead.

    The rest of what the command says there then goes nowhere, where each write failed again:
    a warning on stderr whose reader was gone stopped the run, then the flush of the same
    stderr as the command ended replaced its exit status 1 with a BrokenPipeError, and Python's
    own flush as it exited made the status 120.
    """
    try:
        stream.flush()
    except BrokenPipeError:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, stream.fileno())
        os.close(null)


PIPE_CLOSED = 128 + signal.SIGPIPE
"""The exit status of a command whose stdout's reader stopped early (``geosr models | head -1``):
a process killed by SIGPIPE's, which a shell gives ``git log | head -1`` and gdalinfo too."""


@contextlib.contextmanager
def pipe_closed_ends_quietly() -> Iterator[None]:
    """Within: a write on a stdout whose reader is gone (``geosr models | head -1``) ends the
    command with :data:`PIPE_CLOSED`, saying nothing, as ``git`` and ``gdalinfo`` end.

    Left to click, it ended with status 1, which ``set -o pipefail`` took for a failure of the
    command's own.  The null device goes on stdout's descriptor (Python's recipe), so that
    Python's flush of what is left as it exits says nothing ('Exception ignored ... BrokenPipeError').
    """
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise
        with contextlib.suppress(OSError, ValueError, AttributeError):  # no descriptor: nothing to flush
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, sys.stdout.fileno())
            os.close(null)
        sys.exit(PIPE_CLOSED)


class StdoutConsole(Console):
    """rich's console on stdout, whose reader gone ends the command as any write on stdout then
    does (:func:`pipe_closed_ends_quietly`): rich's own ending was exit status 1 (``geosr
    evaluate a.tif | head -1``), and ``geosr models | head -1`` ended with 141."""

    def on_broken_pipe(self) -> None:
        """Raise the write's error again, for :func:`pipe_closed_ends_quietly`."""
        self.quiet = True  # nothing more from this console
        raise BrokenPipeError(errno.EPIPE, "the reader of stdout is gone")


def echo_path(path: str | Path) -> None:
    """Print an output's path on stdout, for a script to take (``out=$(geosr run ...)``), by
    its bytes: in an ASCII locale stdout replaced each byte of a UTF-8 name with '?', and
    'doss??/o??t.tif' named no file.  A terminal of that locale shows it as ``ls`` does."""
    typer.echo(path_bytes(path))


AS_PIPED = 80
"""The width a table is laid out at where the terminal is too narrow for its words: a pipe's
(rich's default there), at which the tables are laid out and tested."""


def unpadded(console: Console, renderable: RenderableType, *, whole_when_piped: bool = False) -> str:
    """``renderable`` as ``console`` renders it, less the spaces rich pads every line with to
    its width (a table's, a centred title's): piped into grep, diff or a file, each line of
    ``geosr info`` ended in up to 60, and evaluate's title in 15.

    On a terminal narrower than its words need, as piped (:data:`AS_PIPED` columns), the
    terminal wrapping the longer lines: at ``COLUMNS=20`` rich gave ``geosr models`` its names
    alone (the other columns 0 wide), evaluate's table empty cells, and ``geosr info`` its
    values a few letters a line ('EPSG:', '32633').

    ``whole_when_piped``: where ``console`` is no terminal, each cell on one line, however
    long (as gdalinfo prints), not folded at :data:`AS_PIPED` columns: ``geosr info x.tif | cat``
    cut a path mid-name ('.../2020.ti' over 'f'), which a log then could not give back.
    """
    options = console.options.update_width(AS_PIPED)
    if whole_when_piped and not console.is_terminal:
        unwrapped = Measurement.get(console, options.update_width(_UNBOUNDED), renderable).maximum
        return _unpadded_at(_widened(console, max(AS_PIPED, unwrapped)), renderable)
    needed = Measurement.get(console, options, renderable).minimum
    if needed > console.width:
        console = _widened(console, AS_PIPED)
    return _unpadded_at(console, renderable)


_UNBOUNDED = 1 << 20
"""A width no table's line reaches: the one its measure may take to find its widest line."""


def _unpadded_at(console: Console, renderable: RenderableType) -> str:
    """``renderable`` rendered by ``console``, at its width, each line stripped of its padding."""
    with console.capture() as captured:
        console.print(renderable)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def _widened(console: Console, width: int) -> Console:
    """A console as ``console`` (its colours, its terminal, its encoding, for the boxes an ASCII
    one draws), ``width`` columns wide."""
    return Console(
        file=io.TextIOWrapper(io.BytesIO(), encoding=console.encoding),
        width=width,
        color_system=console.color_system,  # type: ignore[arg-type]  # one of the names it takes
        force_terminal=console.is_terminal,
        no_color=console.no_color,
        legacy_windows=console.legacy_windows,
    )


def given_path(value: str | Path) -> Path:
    """A path option's value, refused when empty, as an unset shell variable gives it
    (``--json "$OUT"``): typer made ``''`` the working folder, so ``--workdir ''`` wrote
    its GeoTIFFs there and ``--json ''`` was told that '.' is a directory.

    An option's default comes through here too, as the ``Path`` it is declared with
    (``geosr compare``'s ``compare.png``), and is taken as it is.  A ``file:`` URL is the
    path it names (:func:`given_text`): as a Path it was 'file:/data/c.png', a folder 'file:'
    of the working folder."""
    if isinstance(value, Path):
        return value
    if not value.strip():
        raise typer.BadParameter("is empty; give a path or leave the option out")
    return Path(given_text(value))


def given_raster(value: str) -> str:
    """A raster option's value (``--lr``, ``--hr``): a path or a URL as :func:`given_text` gives
    it, refused when empty as :func:`given_path` refuses it.

    Not a ``Path``, which folded the ``//`` of a URL (``https:/host/lr.tif``: 'no such file or
    directory') and dropped the ``/`` of ``/vsistdin/``, where ``geosr run`` reads both."""
    if not value.strip():
        raise typer.BadParameter("is empty; give a path or leave the option out")
    return given_text(value)


def given_name(value: str) -> str:
    """A file option's value (``geosr evaluate --json``, ``--plot``) as text, refused when empty
    as :func:`given_path` refuses it: a ``Path`` dropped the '/' at its end that says a folder,
    so ``--json m.json/`` wrote the report as the file m.json."""
    return given_raster(value)


def given_number(value: str) -> float:
    """A number option (``--nodata``) that keeps its text, so that a line about it shows it as
    typed: ``--nodata 300`` of a uint8 raster was told back as "nodata 300.0" (:class:`GivenNumber`).

    Raises
    ------
    typer.BadParameter
        ``value`` is no number, in the words of typer's float options.
    """
    try:
        return GivenNumber(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a number") from None


def given_text(value: str) -> str:
    """A path argument as the shell would have given it: a ``file:`` URL as the decoded path it
    names, and a leading ``~`` (or ``~user``) as the home folder.

    The shell expands ``~`` only at the start of a word: quoted, or after ``--output=``, it
    came through as it is, so ``'~/a.tif'`` was 'no such file' (a quoted glob's ``~`` was
    expanded) and ``--output=~/out.tif`` was written into a folder named '~' in the working
    folder, or refused with 'mkdir -p ~/out', which made the home one.  ``--model`` and a
    recipe's paths expand it too.  A folder named '~' is ``./~``.  A ``file:`` URL was a
    relative path where rasterio did not read it (``--aoi``, ``geosr compare -o``).

    Raises
    ------
    typer.BadParameter
        A file URL of another host, or with a query or fragment.
    """
    try:
        local = local_file_text(value)
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None
    if local is not None:
        return local
    return home_expanded(value)


def path_option(*names: str, parser: Callable[[str], Any], help: str) -> Any:
    """A path option as every command declares it: shown as ``<path>`` in its help (typer's
    ``<str>`` or ``<list[str]>`` said nothing of a file, and read as a list to give at once),
    its value read by ``parser`` (:func:`given_path`, :func:`given_text`, :func:`given_raster`
    or :func:`given_name`); ``names`` are the flags, the parameter's own where none is given.
    For ``Annotated[str | None, path_option(...)]``."""
    return typer.Option(*names, parser=parser, metavar="<path>", help=help)
