"""The ``geosr`` command: a thin shell that parses, builds options, calls the library.

A :class:`~geosr.errors.GeosrError` becomes one line on stderr and exit status 2,
never a traceback: those are for bugs.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from geosr.errors import GeosrError, GeosrWarning

app = typer.Typer(
    name="geosr",
    help="Super-resolve georeferenced satellite and aerial imagery into COG or Zarr.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)

Scale = Annotated[
    int, typer.Option("--scale", "-s", help="Zoom factor: output pixels per input pixel (2, 3, 4).")
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="Model name (see `geosr models`), 'bicubic', or a .safetensors path."),
]
Tile = Annotated[int | None, typer.Option(help="Tile edge in input pixels (default 256).", min=1)]
Batch = Annotated[int | None, typer.Option("--batch-size", help="Tiles per model call (default: by device).")]
Device = Annotated[str, typer.Option(help="auto, cpu or cuda.")]
Precision = Annotated[str, typer.Option(help="auto, fp32, bf16 or fp16 (CUDA only).")]
Compile = Annotated[
    str, typer.Option(help="torch.compile the model: auto (when the job is long enough), on or off.")
]
Nodata = Annotated[
    float | None, typer.Option(help="Override the input's nodata value (e.g. 0 for Sentinel-2 JP2).")
]
Variable = Annotated[str | None, typer.Option(help="Variable to read from a Zarr store.")]


@app.command()
def run(
    input: Annotated[Path, typer.Argument(help="GeoTIFF/COG, JPEG2000, any GDAL raster, or a .zarr store.")],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output .tif (COG) or .zarr; default <stem>_x<scale>.tif."),
    ] = None,
    scale: Scale = 4,
    model: ModelOpt = None,
    tile: Tile = None,
    batch_size: Batch = None,
    device: Device = "auto",
    precision: Precision = "auto",
    compile: Compile = "auto",
    overwrite: Annotated[
        bool, typer.Option(help="Replace an existing output once the new one is complete.")
    ] = False,
    nodata: Nodata = None,
    variable: Variable = None,
    scheduler: Annotated[
        str | None, typer.Option(help="Run on an existing Dask cluster, e.g. tcp://host:8786.")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Start a local Dask cluster of N worker processes.")
    ] = None,
) -> None:
    """Super-resolve INPUT by --scale, preserving its georeferencing exactly."""
    from geosr.api import upscale_file

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tiles"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
    ) as bar:
        task = bar.add_task(input.name, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        out = upscale_file(
            input,
            output,
            scale=scale,
            model=model,
            tile=tile,
            batch_size=batch_size,
            device=device,
            precision=precision,
            compile=compile,
            overwrite=overwrite,
            nodata=nodata,
            variable=variable,
            scheduler=scheduler,
            workers=workers,
            progress=advance,
        )
    typer.echo(str(out))


@app.command()
def info(
    input: Annotated[Path, typer.Argument(help="A raster or Zarr store.")],
    scale: Scale = 4,
    model: ModelOpt = None,
    tile: Tile = None,
    batch_size: Batch = None,
    device: Device = "auto",
    precision: Precision = "auto",
    nodata: Nodata = None,
    variable: Variable = None,
    calibrate: Annotated[bool, typer.Option(help="Time one batch to estimate the run time.")] = True,
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
    )
    table = Table(show_header=False, box=None)
    for key, value in plan_run(input, options, calibrate=calibrate).lines():
        table.add_row(f"[bold]{key}[/bold]", value)
    Console().print(table)


@app.command()
def models() -> None:
    """List the available models, their scales and model cards."""
    from geosr.models import list_models

    table = Table("name", "bundled scales", "description", "validation")
    for info in list_models():
        table.add_row(
            info.name, ", ".join(f"x{s}" for s in info.scales) or "-", info.description, info.metrics_summary
        )
    Console().print(table)


def _show_warning(
    message: warnings.WarningMessage | Warning | str, category: type[Warning], *args: object, **kwargs: object
) -> None:
    err.print(f"[yellow]warning:[/yellow] {message}", highlight=False)


def main() -> None:
    """Console-script entry point: map user errors to one line and exit status 2."""
    _register_plugins()
    original = warnings.showwarning
    warnings.showwarning = _show_warning
    warnings.simplefilter("default", GeosrWarning)
    try:
        app()
    except GeosrError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted; no output was written", highlight=False)
        sys.exit(130)
    finally:
        warnings.showwarning = original


def _register_plugins() -> None:
    """Attach the commands that live with their own subsystem (training, evaluation)."""
    try:
        from geosr.train.cli import evaluate_command, train_command
    except ImportError:
        return
    app.command("train")(train_command)
    app.command("evaluate")(evaluate_command)
