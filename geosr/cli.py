"""The ``geosr`` command: a thin shell that parses, builds options, calls the library.

A :class:`~geosr.errors.GeosrError` becomes one line on stderr and exit status 2,
never a traceback: those are for bugs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import tempfile
import textwrap
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Annotated, Any
from urllib.parse import urlparse

import typer
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Column, Table
from typer.core import TyperCommand, TyperGroup

from geosr.allocator import keep_freed_memory
from geosr.cli_types import (
    PIPE_CLOSED,
    StdoutConsole,
    StdoutError,
    echo_path,
    flushed_or_silenced,
    given_number,
    given_text,
    path_option,
    pipe_closed_ends_quietly,
    stdout_guarded,
    unpadded,
)
from geosr.errors import (
    GeosrError,
    GeosrWarning,
    InputError,
    OptionError,
    OutputError,
    SchedulerUnreachableError,
    command_line_wording,
    filter_added,
)
from geosr.held import environment_defaults, setting_held
from geosr.interrupts import (
    exit_status,
    forget_abandoned_coroutines,
    interrupted_early,
    interrupted_run,
    output_stamp,
    signals_as_interrupts,
    signals_held,
    swallowed_interrupt,
    unreported_interrupt,
)
from geosr.io.names import as_shown, printable, shell_quoted
from geosr.io.remote import command_named, is_remote, local_name, remote_waits_defaulted, without_signatures
from geosr.progress import ProgressLines, progress_bar_drawn

_click_errors = sys.modules[typer.BadParameter.__module__]
"""click's exceptions, wherever this typer takes click from (recent ones ship their own copy)."""


@contextlib.contextmanager
def _usage_errors_as_one_line(given: Sequence[str] = ()) -> Iterator[None]:
    """Raise click's usage errors (``--scale x``, a mistyped option) as an :class:`OptionError`:
    typer printed each in a six-line box under the command's usage, where every other
    bad option gets one ``error:`` line.  ``given``: the command line's arguments, for
    :func:`_dashed_file_hint`."""
    try:
        yield
    except _click_errors.UsageError as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":
            raise  # a bare `geosr`: its help, which click raises as a usage error
        where = f" (see {exc.ctx.command_path} --help)" if exc.ctx is not None else ""
        raise OptionError(f"{_said_with_the_value(exc)}{where}{_dashed_file_hint(given)}") from None


_PARSING_SAID = {"int_parsing": "is not a whole number", "float_parsing": "is not a number"}
"""What typer's parsing (pydantic's) says of a value it cannot read, in the words of the rest."""


def _said_with_the_value(exc: Any) -> str:
    """click's line for a bad option, naming the value given: typer's parsing said of ``--scale 4x``
    only "Input should be a valid integer, unable to parse string as an integer", of ``--steps 0``
    "Input should be greater than or equal to 1", never the '4x' or the 0."""
    errors = getattr(exc.__cause__, "errors", None)
    found = errors() if callable(errors) else []
    if not isinstance(exc, _click_errors.BadParameter) or not found or "input" not in found[0]:
        return str(exc.format_message())
    value, kind = found[0]["input"], found[0].get("type")
    said = _PARSING_SAID.get(kind) or f"is refused: {exc.message[:1].lower()}{exc.message[1:]}"
    exc.message = f"{str(value)!r} {said}"
    return str(exc.format_message())


def _dashed_file_hint(given: Sequence[str]) -> str:
    """How to pass a file whose name starts with '-', if one of ``given`` is one: click reads
    ``-scene.tif`` as options (``-s cene.tif``), and the line said only "Invalid value for
    '--scale'" or "No such option: -x", never the file nor how to give it."""
    for arg in given:
        if arg == "--":  # what follows is no option
            break
        if arg.startswith("-") and arg != "-" and os.path.lexists(arg):
            return (
                f"; {arg} is a file, read as options: give it as {shell_quoted('./' + arg)}, "
                f"or last, after the options and '--' (... -- {shell_quoted(arg)})"
            )
    return ""


_GIVEN = "geosr.given"
"""The key of a context's ``meta`` under which :class:`_Commands` keeps the arguments it parsed."""


class _Commands(TyperGroup):
    """geosr's commands, whose usage errors (the group's and each command's) are one line."""

    # Both within pipe_closed_ends_quietly: the help and --version are printed as the arguments are
    # parsed (a command's own as the group invokes it), the rest by the command.
    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        given = list(args)  # parsing consumes them
        with pipe_closed_ends_quietly(), _usage_errors_as_one_line(given):
            ctx = super().make_context(info_name, args, parent, **extra)
        ctx.meta[_GIVEN] = given
        return ctx

    def invoke(self, ctx: Any) -> Any:
        with pipe_closed_ends_quietly(), _usage_errors_as_one_line(ctx.meta.get(_GIVEN, ())):
            return super().invoke(ctx)


def _argument_shown(param: Any, *, in_usage: bool) -> str:
    """An argument as a user types it: its metavar (``INPUTS``), in ``[...]`` in the usage line when
    it may be left out, ``...`` after it when it takes several."""
    name = str(param.metavar or param.name.upper())
    if in_usage and not param.required:
        name = f"[{name}]"
    return f"{name}..." if param.nargs != 1 else name


class _Command(TyperCommand):
    """A geosr command whose help names its arguments as they are typed: typer's showed Python's
    (``Usage: geosr run [OPTIONS] {inputs}...``; ``inputs... <list[str]>`` under Arguments), where
    click's convention, which ``[OPTIONS]`` follows, is ``INPUTS...`` and ``[HR]...``."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        arguments = [p for p in self.get_params(ctx) if p.param_type_name == "argument"]
        return pieces + [_argument_shown(p, in_usage=True) for p in arguments]

    def format_options(self, ctx: Any, formatter: Any) -> None:
        sections: dict[str, list[tuple[str, str]]] = {"Arguments": [], "Options": []}
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.param_type_name == "argument":
                sections["Arguments"].append((_argument_shown(param, in_usage=False), record[1]))
            else:
                sections["Options"].append(record)
        for title, rows in sections.items():
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows)


app = typer.Typer(
    name="geosr",
    cls=_Commands,
    help="Super-resolve georeferenced satellite and aerial imagery into COG or Zarr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # click's plain help, not rich's panels: their six columns left the help text 19 characters
    # at 80 (`--no-check-resour…`, `minx,miny,maxx,ma…`) and one word a line at 40.
    rich_markup_mode=None,
)
err = Console(stderr=True)


def _print_version(value: bool) -> None:
    if not value:
        return
    from importlib.metadata import PackageNotFoundError, version

    import rasterio

    from geosr import __version__

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    # The libraries whose versions change results, for bug reports; read from the
    # installed metadata, so that printing them does not import torch.
    with stdout_guarded():
        typer.echo(
            f"geosr {__version__} (torch {installed('torch')}, GDAL {rasterio.__gdal_version__}, "
            f"rasterio {rasterio.__version__}, dask {installed('dask')}, zarr {installed('zarr')})"
        )
    raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the versions and exit."
        ),
    ] = False,
) -> None:
    """Super-resolve georeferenced satellite and aerial imagery into COG or Zarr."""
    # The library's lines name the flags the user typed, not the Python API's keywords.
    ctx.with_resource(command_line_wording())
    ctx.with_resource(command_named(ctx.invoked_subcommand))  # and the command in their examples


Scale = Annotated[
    int,
    typer.Option(
        "--scale",
        "-s",
        # The range geosr.models.base takes (not imported here: it imports torch).
        help="Zoom factor: output pixels per input pixel, per axis, 2..8 (bundled weights: x2, x4).",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        metavar="<name>",
        help="Model name (see `geosr models`; default cnnrnn-fast), 'bicubic', or a .safetensors path; a "
        "model's name always means that model: give ./NAME.safetensors for a file of that name.",
    ),
]
Tile = Annotated[
    int | None,
    # No min= here: RunOptions refuses an edge under 8 in geosr's one line (typer's min=1
    # advertised [x>=1] in --help, which 1-7 then failed).
    typer.Option(help="Tile edge in input pixels, at least 8 (default 512, smaller when memory is short)."),
]
Batch = Annotated[
    int | None, typer.Option("--batch-size", help="Tiles per batch (default: by device and band count).")
]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N (GPU N).")]
Precision = Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (CUDA only).")]
Compile = Annotated[
    str,
    typer.Option(help="torch.compile the model: off, on, or auto (on a GPU, when the job is long enough)."),
]
Nodata = Annotated[
    float | None,
    typer.Option(parser=given_number, help="Override the input's nodata value (e.g. 0 for Sentinel-2 JP2)."),
]
Variable = Annotated[
    str | None, typer.Option(help="Variable to read from a Zarr store or a netCDF/HDF5 file of several.")
]
Input = Annotated[
    str,
    typer.Argument(
        parser=given_text,
        metavar="INPUT",
        help="GeoTIFF/COG, JPEG2000, any GDAL raster, a .zarr store, a STAC Item .json, "
        "or a remote path (https://, s3://, gs://, /vsi...).",
        show_default=False,
    ),
]
Bands = Annotated[
    str | None,
    typer.Option(help="Bands by description or 1-based index, in order: B04,B03,B02,B08 or 3,2,1."),
]
Offset = Annotated[
    float | None,
    typer.Option(
        help="Additive reflectance offset (Sentinel-2 L2A BOA_ADD_OFFSET, e.g. -1000); default: metadata."
    ),
]
Aoi = Annotated[
    str | None,
    path_option(
        parser=given_text, help="Area of interest: a GeoJSON (or any vector file pyogrio reads), any CRS."
    ),
]
Bbox = Annotated[str | None, typer.Option(help="Area of interest as minx,miny,maxx,maxy in --bbox-crs.")]
BboxCrs = Annotated[str, typer.Option("--bbox-crs", help="CRS of --bbox.")]
Frames = Annotated[
    list[str] | None,
    path_option(
        "--frame",
        parser=given_text,
        help="A further acquisition of the same place (repeat for more; any grid or CRS).",
    ),
]
Asset = Annotated[str | None, typer.Option(help="Asset key to read from a STAC Item input.")]
ZarrFormat = Annotated[
    int | None,
    typer.Option(
        "--zarr-format",
        metavar="2|3",
        help="Zarr format of a .zarr output: 3 (default), or 2 for GDAL before 3.11 (rasterio 1.4's "
        "wheels), which reads no v3.",
        show_default=False,
    ),
]
Compress = Annotated[
    str,
    typer.Option(
        metavar="zstd|deflate|lzw|none",
        help="Lossless compression of the output: zstd (default, fast); deflate for readers without "
        "zstd: in a COG, those whose libtiff lacks it; in Zarr (gzip), those without Blosc; lzw "
        "likewise, a COG only; none, the fastest to write, every tile or chunk whole, edge padding too.",
        show_default=False,
    ),
]


def _output_option(help: str) -> Any:
    """``-o`` as geosr run and geosr info take it, with their own ``help``: a string, for their
    ``str | None``, not a Path: a Path makes 's3://bucket/x.tif' 's3:/bucket/x.tif', which fsspec
    takes for a local file (the upload failed after the whole run); batch_outputs converts."""
    return path_option("--output", "-o", parser=given_text, help=help)


@app.command(cls=_Command)
def run(
    inputs: Annotated[
        list[str],
        typer.Argument(
            parser=given_text,
            metavar="INPUTS",
            help="One or more rasters: GeoTIFF/COG, JPEG2000, any GDAL raster, a .zarr store, a STAC "
            "Item .json, or a remote path (https://, s3://, gs://, /vsi...). Several inputs, or a quoted "
            "glob such as 'tiles/*.tif', run one after another in this process (torch and the model "
            "load once).",
            show_default=False,
        ),
    ],
    output: Annotated[
        str | None,
        _output_option(
            "Output .tif (COG) or .zarr (local, or s3://, gs://, az://), or an existing folder for "
            "the outputs (required to be one with several inputs); default <stem>_x<scale>.tif beside "
            "each input.",
        ),
    ] = None,
    scale: Scale = 4,
    model: ModelOpt = None,
    tile: Tile = None,
    batch_size: Batch = None,
    device: Device = "auto",
    precision: Precision = "auto",
    compile: Compile = "off",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing output once the new one is complete.")
    ] = False,
    nodata: Nodata = None,
    variable: Variable = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Run on an existing Dask cluster, e.g. tcp://host:8786.")
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help=(
                "Start a local Dask cluster of N workers (at most 64): threads of this process, "
                "or one process per GPU (at most N) with dask-cuda installed."
            )
        ),
    ] = None,
    bands: Bands = None,
    offset: Offset = None,
    aoi: Aoi = None,
    bbox: Bbox = None,
    bbox_crs: BboxCrs = "EPSG:4326",
    frame: Frames = None,
    asset: Asset = None,
    stac: Annotated[
        bool, typer.Option(help="Write a STAC Item describing the output: <output stem>.stac.json beside it.")
    ] = False,
    quicklook: Annotated[
        bool, typer.Option(help="Write <output stem>.quicklook.png beside it: bicubic, geosr side by side.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(help="Finish an interrupted run of the same job (a no-op if the output is complete)."),
    ] = False,
    restart: Annotated[bool, typer.Option(help="Discard an interrupted run's state and start over.")] = False,
    check_resources: Annotated[
        bool, typer.Option(help="Refuse a run that needs more memory or disk than is available.")
    ] = True,
    zarr_format: ZarrFormat = None,
    compress: Compress = "zstd",
) -> None:
    """Super-resolve INPUTS by --scale, preserving their georeferencing exactly.

    Each output is a COG (.tif) or Zarr v3 or v2 (.zarr) on its input's footprint (or
    on the --aoi/--bbox window of it), with the input's CRS, dtype, nodata and
    band descriptions.  With several inputs, one that fails is reported in one
    line and the others still run; the exit status is then 2.
    """
    from geosr.batch import has_wildcards
    from geosr.io.scene import check_input_exists

    if len(inputs) == 1 and not has_wildcards(inputs[0]):
        # Before geosr.api, which imports rasterio, zarr and odc-geo (about 1 s): a mistyped
        # path is told at once.  (torch loads later still, with the model.)
        check_input_exists(inputs[0])
    from geosr.api import upscale_file
    from geosr.batch import batch_outputs, expand_inputs
    from geosr.io.remote import file_url_path

    local = file_url_path(output) if output is not None else None
    # os.path's is False for a name too long to exist (Path's raised): batch_outputs says what is wrong.
    folder = Path(local) if local is not None and os.path.isdir(local) else None  # noqa: PTH112
    sources = expand_inputs(inputs, folder)
    if frame and len(sources) > 1:
        raise OptionError(
            "--frame gives further acquisitions of one scene; run each input with its own frames"
        )
    targets = batch_outputs(sources, output, scale, variable)
    options: dict[str, Any] = {
        "tile": tile,
        "batch_size": batch_size,
        "device": device,
        "precision": precision,
        "compile": compile,
        "overwrite": overwrite,
        "nodata": nodata,
        "variable": variable,
        "scheduler": scheduler,
        "workers": workers,
        "bands": bands,
        "offset": offset,
        "aoi": aoi,
        "bbox": bbox,
        "bbox_crs": bbox_crs,
        "frames": tuple(frame or ()),
        "asset": asset,
        "stac": stac,
        "quicklook": quicklook,
        "resume": resume,
        "restart": restart,
        "check_resources": check_resources,
        "zarr_format": zarr_format,
        "compress": compress,
    }
    if len(sources) > 1:
        _check_batch(sources, targets, scale, model, options)
    upscale = functools.partial(upscale_file, scale=scale, model=model, **options)
    _run_each(sources, targets, scale, variable, upscale)


def _check_batch(
    sources: list[str],
    targets: list[Path | str | None],
    scale: int,
    model: str | None,
    options: dict[str, Any],
) -> None:
    """Refuse, before the first input runs, what would fail every input of a batch.

    Parameters
    ----------
    sources, targets : list
        The inputs and their outputs (None: the default output beside the input).
    scale, model, options
        What :func:`~geosr.api.upscale_file` is called with for each.

    Raises
    ------
    GeosrError
        A malformed ``GEOSR_FAULT_AT``, a bad option, or a ``--zarr-format`` for .tif outputs: said
        once, not once per input.
    """
    from geosr.faults import check as check_faults
    from geosr.io.sink import checked_compress
    from geosr.options import check_run_options
    from geosr.run_outputs import check_compress_applies, check_zarr_format_applies, default_output

    check_faults()
    check_run_options(scale, model, options)
    for source, target in zip(sources, targets, strict=True):
        # Several inputs write .tif outputs into a folder.
        destination = target or default_output(source, scale, options["variable"])
        check_zarr_format_applies(destination, options["zarr_format"])
        check_compress_applies(destination, checked_compress(options["compress"]))


def _run_each(
    sources: list[str],
    targets: list[Path | str | None],
    scale: int,
    variable: str | None,
    upscale: Callable[..., Path | str],
) -> None:
    """Super-resolve each input in turn, printing each output's path as it is written.

    With several inputs, one that fails is reported in one line and the others still run.

    Parameters
    ----------
    sources, targets : list
        The inputs and their outputs (None: the default output beside the input).
    scale : int
        The run's scale, which names the default outputs.
    variable : str, optional
        The ``--variable`` read, which names the default outputs too.
    upscale : callable
        :func:`~geosr.api.upscale_file` with the run's options, called as
        ``upscale(source, target, progress=...)``.

    Raises
    ------
    GeosrError
        The one input's failure; a batch's failure that would be every next input's too
        (:func:`_ends_the_batch`); the batch's summary where inputs failed; an interruption
        (Ctrl-C) with what was written and how to resume.
    """
    from geosr.run_outputs import default_output

    failed: list[str] = []
    names = dict(zip(sources, _input_names(sources), strict=True))
    for number, (source, target) in enumerate(zip(sources, targets, strict=True), start=1):
        label = names[source] if len(sources) == 1 else f"[{number}/{len(sources)}] {names[source]}"
        destination = target or default_output(source, scale, variable)
        previous = output_stamp(destination)  # to tell an output this run wrote from an old one
        try:
            _run_one(upscale, source, target, label)
        except (KeyboardInterrupt, GeosrError) as exc:
            stop = exc if isinstance(exc, KeyboardInterrupt) else swallowed_interrupt()
            if stop is not None:
                # Raised as a GeosrError so that typer does not swallow it (a silent exit 130).
                written = number - 1 - len(failed)  # the outputs of this run before this input
                raise interrupted_run(stop, source, destination, written=written, previous=previous) from None
            if len(sources) == 1 or not isinstance(exc, GeosrError) or _ends_the_batch(exc):
                raise
            _report(exc)
            failed.append(source)
    if failed:
        written = len(sources) - len(failed)
        raise GeosrError(
            f"{len(failed)} of {len(sources)} inputs failed ({', '.join(names[f] for f in failed)}), "
            "each reported above" + (f"; {_others_written(written)}" if written else "")
        )


def _run_one(upscale: Callable[..., Path | str], source: str, target: Path | str | None, label: str) -> None:
    """Super-resolve ``source`` into ``target`` with ``upscale`` under a progress bar named ``label``,
    then print the output's path on stdout."""
    with _progress_bar(label) as advance:
        out = upscale(source, target, progress=advance)
    # In the caller's try: a Ctrl-C as the path is printed (a pipe that is not read, say)
    # said "nothing was written: run the same command again" of a written output.
    with stdout_guarded(f"{out} is written, but "):
        echo_path(out)


def _ends_the_batch(exc: GeosrError) -> bool:
    """Whether ``exc`` is no input's failure and would be every next input's too: a stdout
    that cannot be written, a Dask scheduler that does not answer (each input waited out
    its 20 s timeout to say so again)."""
    return isinstance(exc, StdoutError | SchedulerUnreachableError)


def _input_names(sources: list[str]) -> list[str]:
    """Each input's name in the progress and the summary: its file name, with as many of its
    folders as tell it from the other inputs' (a batch of 'granules/*/B04.tif' was '[2/9]
    B04.tif' for each, and its summary '2 of 9 inputs failed (B04.tif, B04.tif)'); a URL's
    without its query, which may sign it (``scene.tif?X-Amz-Signature=...``, a credential)."""
    from geosr.batch import names_apart

    paths = [
        PurePosixPath(urlparse(s).path).parent / local_name(s) if is_remote(s) else Path(s) for s in sources
    ]
    return names_apart(paths)


def _others_written(count: int) -> str:
    """The words for a batch's other outputs: "the other 1 outputs are written" was not English."""
    return "the other output is written" if count == 1 else f"the other {count} outputs are written"


def _report(exc: GeosrError) -> None:
    """The one line a user error gets on stderr (with the command that resumes, if any)."""
    with signals_held():  # a second Ctrl-C as the first one's line is printed: after the line
        # Escaped: a path, band or option value in the message is no markup ('[/]' crashed the
        # report, '--device [red]x' came out as 'x' in red).
        # The command as typed, to paste; a name Python holds with surrogates by its characters.
        line = as_shown(f"{without_signatures(str(exc))}{_exact_command(exc)}")
        err.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)


_BUILDING = "building the output"
"""What the progress says once every tile is done: a large COG's build (GDAL compressing
every block and its overviews) takes minutes more, which a bar at 100 % left unexplained."""


_BAR_ROOM = 50
"""Columns the bar, the count, 'tiles' and the time left need beside the label (rich narrows the bar)."""
_LABEL_MIN = 20
"""The label's width on the narrowest terminal that has the bar."""
_BAR_FITS = 60
"""The narrowest terminal with room for the bar and the time left beside a label of :data:`_LABEL_MIN`
and a count in thousands; a narrower one gets the label and the count alone (:func:`_count_line`)."""


def _cut_middle(text: str, width: int, encoding: str | None = "utf-8") -> str:
    """``text`` as a terminal of ``encoding`` shows it (:func:`~geosr.io.names.printable`: 'è' is
    '\\xe8' on an ASCII one), cut to ``width`` columns in its middle: a long file name keeps its
    start and its end (the tile, the date, the suffix), as the label of a bar."""
    # Measured as shown: counted by characters, a label of 'è's was up to four times its room.
    shown = [printable(char, encoding) for char in text]
    if cell_len("".join(shown)) <= width:
        return "".join(shown)
    mark = "…" if printable("…", encoding) == "…" else "..."
    room = max(width - cell_len(mark), 2)
    head = _fitting(shown, room // 2)
    tail = _fitting(shown[len(head) :][::-1], room - cell_len("".join(head)))[::-1]
    return "".join([*head, mark, *tail])


def _fitting(pieces: list[str], width: int) -> list[str]:
    """The first of ``pieces`` that fit in ``width`` columns together."""
    kept: list[str] = []
    for piece in pieces:
        width -= cell_len(piece)
        if width < 0:
            break
        kept.append(piece)
    return kept


@contextlib.contextmanager
def _progress_bar(label: str) -> Iterator[Callable[[int, int], None]]:
    """A transient tiles bar on stderr; yields the run's ``progress`` callback.

    Where stderr is no terminal (a log file, nohup, CI), plain lines now and then
    instead (:class:`~geosr.progress.ProgressLines`): rich would draw nothing there
    until the end, and a blank line per bar.
    """
    # A name Python holds with surrogates by its characters, as in an error line: in an ASCII
    # locale the bar and the lines read 'sc\udcc3\udca8ne.tif'.
    label = as_shown(label)
    if not progress_bar_drawn(err):
        lines = ProgressLines(label, "tiles")
        yield lambda done, total: lines(done, total, _BUILDING if done >= total else "")
        return
    if err.width < _BAR_FITS:
        yield from _count_line(label)
        return
    # A long name took the whole line: rich cut the count, 'tiles' and the time left to '…'.
    # Escaped: the description is markup ('scene [v2].tif' showed as 'scene .tif').
    name = escape(_cut_middle(label, max(_LABEL_MIN, err.width - _BAR_ROOM), err.encoding))
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tiles"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(name, total=None)

        def advance(done: int, total: int) -> None:
            # Building: the bar is full, and rich narrows it for the words.
            shown = f"{name} ({_BUILDING})" if done >= total else name
            bar.update(task, completed=done, total=total, description=shown)

        yield advance


def _count_line(label: str) -> Iterator[Callable[[int, int], None]]:
    """:func:`_progress_bar` on a terminal narrower than :data:`_BAR_FITS`: the label, cut to what
    the count leaves, then ``12/36 tiles``, or what is being done once every tile is.

    Below about 55 columns, rich narrowed every column of the bar's line to share the room: the
    count read '2…' and the label lost its end ('a_rather_…23010… t…' at 20 columns).
    """
    line = TextColumn("{task.description}", table_column=Column(no_wrap=True, overflow="ellipsis"))
    with Progress(line, console=err, transient=True) as bar:
        task = bar.add_task(_counted(label, "0/? tiles"), total=None)

        def advance(done: int, total: int) -> None:
            said = [f"({_BUILDING})", "(building)"] if done >= total else [f"{done}/{total} tiles"]
            bar.update(task, completed=done, total=total, description=_counted(label, *said))

        yield advance


def _counted(label: str, *said: str) -> str:
    """``label`` and the first of ``said`` that leaves it 8 columns of the terminal (else the last),
    the label cut in its middle to fit, as markup."""
    for words in said:
        room = err.width - 1 - cell_len(words)
        if room >= 8:
            break
    name = _cut_middle(label, max(room, 4), err.encoding)
    return f"[bold]{escape(name)}[/bold] {escape(words)}"


# Extra arguments reach the command (ctx.args), which refuses them as it does a glob of several:
# click's line was 'Got unexpected extra argument(s) (b.tif)'.
@app.command(cls=_Command, context_settings={"allow_extra_args": True})
def info(
    ctx: typer.Context,
    input: Input,
    output: Annotated[
        str | None,
        _output_option(
            "The output to plan, as geosr run takes it: a .tif (COG) or .zarr, or an existing "
            "folder; default <stem>_x<scale>.tif beside the input.  Nothing is written.",
        ),
    ] = None,
    scale: Scale = 4,
    model: ModelOpt = None,
    tile: Tile = None,
    batch_size: Batch = None,
    device: Device = "auto",
    precision: Precision = "auto",
    nodata: Nodata = None,
    variable: Variable = None,
    bands: Bands = None,
    offset: Offset = None,
    aoi: Aoi = None,
    bbox: Bbox = None,
    bbox_crs: BboxCrs = "EPSG:4326",
    frame: Frames = None,
    asset: Asset = None,
    calibrate: Annotated[
        bool, typer.Option(help="Time one batch and a sample of the output to estimate the run time.")
    ] = True,
    zarr_format: ZarrFormat = None,
    compress: Compress = "zstd",
    overwrite: Annotated[
        bool,
        typer.Option(
            help="Plan replacing an existing -o output, as geosr run --overwrite does (without it, "
            "refused as the run refuses it).  Nothing is written."
        ),
    ] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the scene and the plan as one JSON object on stdout, for scripts (jq), instead "
            "of the lines: numbers as numbers (bytes, seconds, pixels); its keys are those of "
            "geosr.inspect.RunPlan.to_dict (README: geosr info --json).",
        ),
    ] = False,
) -> None:
    """Describe INPUT (grid, CRS, bands, nodata) and the plan of a run on it."""
    from geosr.inspect import plan_run
    from geosr.options import RunOptions

    options = RunOptions(
        scale=scale,
        model=model,
        tile=tile,
        batch_size=batch_size,
        device=device,
        precision=precision,
        nodata=nodata,
        variable=variable,
        bands=bands,
        offset=offset,
        aoi=aoi,
        bbox=bbox,
        bbox_crs=bbox_crs,
        frames=tuple(frame or ()),
        asset=asset,
        zarr_format=zarr_format,
        compress=compress,
        overwrite=overwrite,
    )
    plan = plan_run(_one_input(input, *ctx.args), options, calibrate=calibrate, output=output)
    if as_json:
        with stdout_guarded():
            # allow_nan=False: to_dict spells a NaN nodata "nan", and JSON has no such token.
            typer.echo(json.dumps(plan.to_dict(), indent=2, allow_nan=False))
        return
    table = Table(show_header=False, box=None)
    table.add_column(no_wrap=True)
    table.add_column(overflow="fold")  # a long path is folded onto the next line, not cut with '…'
    for key, value in plan.lines():
        # A path in brackets is no markup; a signed URL's signature (a credential) is left out;
        # a name the terminal cannot print is escaped, as in an error line (it read 'sc??ne.tif').
        shown = printable(without_signatures(value), getattr(sys.stdout, "encoding", None))
        table.add_row(f"[bold]{key}[/bold]", escape(shown))
    # Piped, each value on its line, whole: folded at 80 columns, a path was cut mid-name.
    print_table(table, whole_when_piped=True)


def _one_input(pattern: str, *others: str) -> str:
    """The input ``geosr info`` describes: a quoted glob (as ``geosr run`` takes) of one match
    is that file; of several, refused in one line, which said 'no such file' of the glob, as are
    ``others`` (more arguments, or an unquoted glob the shell expanded)."""
    from geosr.batch import expand_inputs

    if others:
        raise InputError(f"given {_several((pattern, *others))}; geosr info describes one: give one of them")
    sources = expand_inputs([pattern])
    if len(sources) > 1:
        raise InputError(
            f"{pattern}: matches {_several(sources)}; geosr info describes one: give one of them"
        )
    return sources[0]


def _several(sources: Sequence[str]) -> str:
    """``N inputs (a.tif, b.tif, c.tif, ...)``: the first three of ``sources``."""
    shown = ", ".join(sources[:3]) + (", ..." if len(sources) > 3 else "")
    return f"{len(sources)} inputs ({shown})"


def print_table(table: Table, *, whole_when_piped: bool = False) -> None:
    """Print ``table`` on stdout without the spaces rich pads its lines with (:func:`unpadded`),
    its cells unwrapped where stdout is no terminal with ``whole_when_piped``."""
    with stdout_guarded():
        typer.echo(unpadded(Console(), table, whole_when_piped=whole_when_piped))


@app.command(cls=_Command)
def models(
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the models and their bundled cards whole as one JSON array on stdout, for "
            "scripts (jq), instead of the table.",
        ),
    ] = False,
) -> None:
    """List the available models, their scales and the model cards of the bundled weights."""
    from geosr.models import list_models

    with stdout_guarded():
        _print_models(list_models(), as_json=as_json)


def _print_models(infos: list[Any], *, as_json: bool) -> None:
    """The models and their cards as a table and card lines, or as a JSON array."""
    if as_json:
        typer.echo(json.dumps([info.to_dict() for info in infos], indent=2, allow_nan=False))
        return
    console = StdoutConsole()
    # The name is what --model takes: never cut to 'cnnrnn-f…' in a narrow terminal; the
    # other columns fold rather than lose their ends.  No box, as geosr info and the README:
    # piped into grep or a file, its lines were framed in box-drawing characters.
    table = Table(
        Column("name", no_wrap=True),
        Column("bundled scales", overflow="fold"),
        Column("description", overflow="fold"),
        Column("validation", overflow="fold"),
        box=None,
    )
    for info in infos:
        table.add_row(
            info.name, ", ".join(f"x{s}" for s in info.scales) or "-", info.description, info.metrics_summary
        )
    print_table(table)
    for info in infos:
        for scale, card in info.cards.items():
            # One line however narrow the terminal: at 20 columns '(model card)' went onto a
            # line of its own, the line above ending in a space.
            console.print(f"\n[bold]{info.name} x{scale}[/bold] (model card)", soft_wrap=True)
            for key, value in _card_lines(card):
                # Wrapped here, not by rich: its wrap left '; ' at the ends of lines and started
                # the next at column 0, outside the card, when piped (80 columns).
                console.print(
                    _hanging(f"  {key:<14} ", value, console.width),
                    soft_wrap=True,
                    highlight=False,
                    markup=False,
                )


def _hanging(head: str, value: str, width: int) -> str:
    """``head + value`` wrapped to ``width`` with its continuation lines indented under the
    value, without trailing spaces; a path longer than a line stays whole."""
    return textwrap.fill(
        value,
        width=max(width, len(head) + 20),
        initial_indent=head,
        subsequent_indent=" " * len(head),
        break_long_words=False,
        break_on_hyphens=False,
    )


def _training_data(data: object) -> str:
    """A card's training rasters, the ``${GEOSR_DATA_DIR}/`` they all share said once.

    Cut from each path without a word, it left ``aerial/naip_va_1m`` relative to nothing the
    output named; a training store's path (a string) was listed a character at a time.
    """
    paths = [data] if isinstance(data, str) else [str(d) for d in data] if isinstance(data, list) else []
    prefix = "${GEOSR_DATA_DIR}/"
    if paths and all(p.startswith(prefix) for p in paths):
        return f"in $GEOSR_DATA_DIR: {'; '.join(p.removeprefix(prefix) for p in paths)}"
    return "; ".join(paths) or "-"


def _card_lines(card: object) -> list[tuple[str, str]]:
    """The facts of a model card a user picks a model by."""
    bands = getattr(card, "bands", None)
    norm = dict(getattr(card, "normalisation", {}) or {})
    training = dict(getattr(card, "training", {}) or {})
    metrics = dict(getattr(card, "metrics", {}) or {})
    lines = [
        ("bands", ", ".join(map(str, bands)) if bands else "any count (each band on its own)"),
        ("normalisation", " ".join(f"{k}={v}" for k, v in norm.items()) or "-"),
        ("training data", _training_data(training.get("data", []))),
        (
            "training",
            f"{training.get('steps', '?')} steps, recipe {training.get('recipe', '-')}",
        ),
    ]
    if "val_psnr" in metrics:
        bicubic = float(metrics.get("val_psnr_bicubic", float("nan")))
        gain = float(metrics.get("val_gain_db", float("nan")))
        chips = metrics.get("val_chips", "?")
        lines.append(
            (
                "validation",
                f"PSNR {float(metrics['val_psnr']):.2f} dB vs bicubic {bicubic:.2f} dB ({gain:+.2f} dB) "
                f"on {chips} held-out chips",
            )
        )
    return lines


@app.command(cls=_Command)
def compare(
    lr: Annotated[
        str,
        typer.Argument(parser=given_text, metavar="LR", help="The low-resolution input.", show_default=False),
    ],
    sr: Annotated[
        str,
        typer.Argument(
            parser=given_text,
            metavar="SR",
            help="The super-resolved output of geosr run.",
            show_default=False,
        ),
    ],
    output: Annotated[
        str,
        # Text, not a Path, which drops the '/' that says a folder (compare_files checks it).
        path_option(
            "--output",
            "-o",
            parser=given_text,
            help="The PNG to write, or an existing folder to write it into.",
        ),
    ] = "compare.png",
    hr: Annotated[
        str | None,
        path_option(
            parser=given_text,
            help="A high-resolution reference of the same area (third panel), read onto the output "
            "grid with nearest neighbour; its bands of the same names, else, laid out as LR, the bands "
            "a --bands run took from LR, else its red, green, blue by colour interpretation, else the "
            "same positions.",
        ),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            help="col,row,width,height in LR pixels (default: up to 128 px, as many as a panel shows "
            "1:1, in the centre, or where the output has data if the centre has none)."
        ),
    ] = None,
    bands: Annotated[
        str | None,
        typer.Option(
            help="The output's bands to show, by description or 1-based index: 1 in grey or 3 as "
            "red, green, blue (B04,B03,B02 or 3,2,1). Default: red, green, blue by name or colour "
            "interpretation, else 1,2,3 (band 1 for fewer than 3 bands)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing PNG.")] = False,
    variable: Annotated[
        str | None,
        typer.Option(help="Variable to read from an LR Zarr store or netCDF/HDF5 file of several."),
    ] = None,
    nodata: Annotated[
        float | None,
        typer.Option(
            parser=given_number,
            help="Override the LR input's nodata value, as given to geosr run (e.g. 0 for a JP2).",
        ),
    ] = None,
    hr_variable: Annotated[
        str | None,
        typer.Option(help="Variable to read from an --hr Zarr store or netCDF/HDF5 file of several."),
    ] = None,
) -> None:
    """Write a side-by-side PNG of a window: bicubic vs geosr (vs the reference), one stretch for all."""
    from geosr.quicklook import compare_files

    png = compare_files(
        lr,
        sr,
        output,
        hr=hr,
        window=window,
        bands=bands,
        overwrite=overwrite,
        variable=variable,
        nodata=nodata,
        hr_variable=hr_variable,
    )
    with stdout_guarded(f"{png} is written, but "):
        echo_path(png)


def _warning_lines() -> Callable[..., None]:
    """A ``warnings.showwarning`` that prints each warning as one line, once per command.

    Python's own once-per-place filter forgets what it showed whenever a library touches
    the warning filters, as each run does: a batch at ``--scale 3`` repeated "no bundled
    weights for cnnrnn-fast x3" once per input.  A warning about one input names it, so
    only the same words twice are left out.
    """
    shown: set[str] = set()

    def show(message: warnings.WarningMessage | Warning | str, *args: object, **kwargs: object) -> None:
        text = str(message)
        if text not in shown:
            shown.add(text)
            line = escape(as_shown(without_signatures(text)))
            err.print(f"[yellow]warning:[/yellow] {line}", highlight=False, soft_wrap=True)

    return show


def main() -> None:
    """Console-script entry point: map user errors to one line and exit status 2."""
    # First, before numpy, torch or GDAL start threads of their own: a thread that
    # allocates before the tuning gets a malloc arena of its own, which later threads
    # (the reader, writers, Dask workers) share and page-fault through (geosr.allocator).
    keep_freed_memory()
    with signals_as_interrupts(), _command_settings():
        try:
            _main()
        except SystemExit as exc:
            if exc.code in (130, 143):
                forget_abandoned_coroutines()
            raise


_RASTERIO_QUIET = logging.NullHandler()
"""One handler for every :func:`main` of a process: ``addHandler`` adds an instance once, where a
new one each call piled up on rasterio's logger (a notebook's or a test suite's runs)."""


@contextlib.contextmanager
def _command_settings() -> Iterator[None]:
    """Within: the process-wide settings the command runs with; after: the caller's again, for
    :func:`main` called in a notebook's or a test's process."""
    # GDAL and libtiff print some errors (a write failing on a full disk, in
    # particular) straight to stderr; geosr reports each failure itself in one
    # line, so their copies go to the bit bucket unless the user asked for a log.
    with contextlib.ExitStack() as settings:
        settings.enter_context(environment_defaults({"CPL_LOG": os.devnull}))
        settings.enter_context(remote_waits_defaulted())
        settings.enter_context(_rasterio_quiet())
        # Each of geosr's warnings shown once (as a line of its own: _warning_lines), whatever the
        # filters of the process.
        settings.enter_context(filter_added("default", category=GeosrWarning))
        yield


@contextlib.contextmanager
def _rasterio_quiet() -> Iterator[None]:
    """Within: :data:`_RASTERIO_QUIET` on rasterio's logger; after: off it again, unless the
    caller had it there, as the last of overlapping calls ends (:func:`~geosr.held.setting_held`)."""
    # rasterio logs the same GDAL errors; without a handler Python would print them.
    rasterio_log = logging.getLogger("rasterio")

    def put(had: bool) -> None:
        if not had:
            rasterio_log.removeHandler(_RASTERIO_QUIET)

    with setting_held("rasterio's quiet handler", lambda: _RASTERIO_QUIET in rasterio_log.handlers, put):
        rasterio_log.addHandler(_RASTERIO_QUIET)
        yield


def _main() -> None:
    """:func:`main`, with SIGTERM raising :class:`~geosr.interrupts.Terminated` as Ctrl-C does."""
    original = warnings.showwarning
    warnings.showwarning = _warning_lines()
    try:
        _stdout_open()
        # Inside the try: importing the training commands takes a moment, in which a
        # Ctrl-C gets its one line too.
        _register_plugins()
        with _native_stderr_captured():
            # The click command itself, not app(): app() would install typer's own
            # sys.excepthook over _keep_interrupt_printed.
            typer.main.get_command(app)()
    except GeosrError as exc:
        stop = swallowed_interrupt()  # what failed was interrupted: report the interrupt
        _report(exc if stop is None else interrupted_early(str(stop) or "interrupted"))
        sys.exit(exit_status(exc.exit_code if stop is None else 130))
    except KeyboardInterrupt as stop:
        _report(interrupted_early(str(stop) or "interrupted"))
        sys.exit(exit_status(130))
    except Exception as exc:
        known = _no_temporary_folder(exc) or _name_too_long(exc)
        if known is None:
            raise
        _report(known)
        sys.exit(known.exit_code)
    except SystemExit as exc:
        unreported = unreported_interrupt(exc)
        if unreported is not None:
            _report(interrupted_early(str(unreported) or "interrupted"))
        sys.exit(exit_status(exc.code) if isinstance(exc.code, int) else exc.code)
    finally:
        warnings.showwarning = original


def _stdout_open() -> None:
    """Refuse to start where stdout is closed (``geosr run a.tif >&-``), before any work.

    Every command prints there (an output's path, a table, JSON, its help); Python leaves
    ``sys.stdout`` None for a closed descriptor 1, and each command ended in an AttributeError
    traceback as it printed, a run after writing its output.
    """
    if sys.stdout is None:
        raise StdoutError(
            "cannot write on stdout (it is closed); redirect it instead, to /dev/null to discard what "
            "geosr prints there"
        )


def _no_temporary_folder(exc: BaseException) -> OutputError | None:
    """The line for a failure to find a writable temporary folder (``TMPDIR``, ``/tmp``,
    ``/var/tmp``, the working folder: none in a container with a read-only root), or None.

    Python's tempfile raises it, for geosr's own temporaries (info, evaluate), torch's cache
    (training) and Dask's local cluster (``--workers``), which wraps it: a traceback each.
    """
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; a bound guards against cycles
        if seen is None:
            break
        if isinstance(seen, FileNotFoundError) and "No usable temporary directory" in str(seen):
            return OutputError(f"{seen.strerror}; set TMPDIR to a writable directory")
        seen = seen.__cause__ or seen.__context__
    return None


def _name_too_long(exc: BaseException) -> OptionError | None:
    """The line for a path with a name over the limit of a file name, or None.

    run, info, compare and evaluate refuse one as they check their paths; the rest (train's
    --output, --weights, --recipe, ...) met the OS's 'File name too long' in a traceback.
    """
    import errno

    from geosr.io.atomic import overlong_name

    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; a bound guards against cycles
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno == errno.ENAMETOOLONG:
            name = os.fsdecode(seen.filename) if seen.filename is not None else None
            if name is None:
                return OptionError(f"{seen.strerror}: a path given has a name too long; shorten it")
            why = overlong_name(name) or "a name in it is too long for the file system"
            return OptionError(f"{name}: {why}; choose a shorter one")
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Keep what C libraries print on file descriptor 2 out of the terminal.

    libtiff prints some write errors ("_tiffWriteProc: File too large.") itself,
    past GDAL's and Python's handlers; geosr reports every failure in one line of
    its own.  Python's ``sys.stderr`` keeps the real terminal; the captured text is
    shown only if the run dies of something that is not a GeosrError (a bug).
    """
    try:
        capture = tempfile.TemporaryFile()  # noqa: SIM115 - closed in the finally below
    except OSError:
        # No writable temporary folder (a container's read-only root, with -o on a volume):
        # every command died of it at start, in a traceback, where a run needs none.
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:
        capture.close()
        yield
        return
    python_stderr = sys.stderr
    python_stderr.flush()
    # In the encoding and with the errors of the stream it stands in for: the locale's, with strict
    # errors, made a non-ASCII warning a UnicodeEncodeError traceback in a C locale.
    sys.stderr = open(  # noqa: SIM115 - restored below
        saved,
        "w",
        closefd=False,
        encoding=getattr(python_stderr, "encoding", None) or "utf-8",
        errors=getattr(python_stderr, "errors", None) or "backslashreplace",
    )
    os.dup2(capture.fileno(), 2)
    failed = True
    try:
        yield
        failed = False
    except (GeosrError, KeyboardInterrupt, SystemExit) as exc:
        # 130: an interrupt the command reported itself, no bug; nor a pipe closed early.
        failed = isinstance(exc, SystemExit) and exc.code not in (0, None, 2, 130, PIPE_CLOSED)
        raise
    finally:
        flushed_or_silenced(sys.stderr)
        os.dup2(saved, 2)
        sys.stderr = python_stderr
        os.close(saved)
        if failed:
            capture.seek(0)
            sys.stderr.write(capture.read().decode(errors="replace"))
        capture.close()


def _exact_command(exc: GeosrError) -> str:
    """For a resumable run, the command line that resumes it, ready to paste."""
    from geosr.errors import ResumableError
    from geosr.io.runstate import StaleRunError

    if not (isinstance(exc, ResumableError) or (isinstance(exc, StaleRunError) and exc.resumable)):
        return ""
    lost = exc.lost_option if isinstance(exc, ResumableError) else None
    args = _without(lost, [a for a in sys.argv[1:] if a not in ("--resume", "--restart")])
    # Each word as a shell reads it back from this terminal: in an ASCII locale 'scène.tif' was
    # shown 'sc\xe8ne.tif', which names no file; it is $'sc\xc3\xa8ne.tif' there.
    return f" (to resume: {' '.join(shell_quoted(a) for a in ['geosr', *args, '--resume'])})"


def _without(option: str | None, args: list[str]) -> list[str]:
    """``args`` less ``option`` and its value (``--scheduler tcp://...`` or ``--scheduler=tcp://...``)."""
    if option is None:
        return args
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(f"{option}="):
            out.append(arg)
    return out


def _register_plugins() -> None:
    """Attach the commands that live with their own subsystem (training, evaluation), once.

    :func:`main` calls this on every call: each ``app.command`` appends, so a process that
    ran the command many times (a test suite, a notebook) held thousands of copies, and
    building the click command from them grew slower with every run."""
    if any(command.name == "train" for command in app.registered_commands):
        return
    try:
        from geosr.train.cli import evaluate_command, train_command
    except ImportError:
        return
    app.command("train", cls=_Command)(train_command)
    app.command("evaluate", cls=_Command)(evaluate_command)
