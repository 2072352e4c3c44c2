"""Typed, frozen run configuration: defaults here, CLI flags and recipes override them."""

from __future__ import annotations

import dataclasses
import numbers
import os
from dataclasses import dataclass
from typing import Any

from geosr.errors import GivenNumber, OptionError

DEFAULT_TILE = 512
"""LR pixels per tile edge.  The halo (15 px for the default x4 model) costs 12 %
extra compute at 512, 25 % at 256: a 2048^2 run was 6 % faster end to end on the
2-core benchmark machine (5.8-6.2 s against 6.4-6.6 s, tile 512 x batch 2 against
256 x 4)."""

DEFAULT_BBOX_CRS = "EPSG:4326"
"""The CRS of ``--bbox`` unless ``--bbox-crs`` names another: lon/lat, as a box is usually given."""

MAX_WORKERS = 64
"""Most workers ``--workers`` starts.  They share one Dask event loop in this process,
which falls behind as they grow: on the 2-core test machine 64 started in 1.9 s,
128 in 15 s with a heartbeat traceback per worker, and 300 had not finished a
12-tile run after 170 s.  Worker threads beyond the cores only queue for them;
a larger cluster is ``dask worker`` processes and ``--scheduler``."""


@dataclass(frozen=True)
class RunOptions:
    """How a run is done (not what it reads or writes).

    Attributes
    ----------
    scale : int
        Zoom factor (output pixels per input pixel, per axis).
    model : str or None
        Registry name or weights path; None = the default model for ``scale``.
    tile : int or None
        LR pixels per tile edge; None = :data:`DEFAULT_TILE`.
    batch_size : int or None
        Tiles per model call; None = chosen for the device.
    device, precision : str
        ``auto|cpu|cuda[:N]`` and ``auto|fp32|bf16|fp16``.
    compile : str
        ``auto|on|off``: ``torch.compile`` the model; ``auto`` does on a GPU when
        the job is long enough to repay the compilation, never on a CPU, where the
        eager model is faster (see :func:`geosr.predictor.compile_pays_off`).  ``off`` by default: compiled
        bf16 kernels round differently from eager ones, and ``auto`` decides per
        run, so a resumed run could mix the two; ``on`` and ``off`` are
        reproducible.
    overwrite : bool
        Replace an existing output (only once the new one is complete).
    nodata : float or None
        Overrides the input's nodata value (e.g. 0 for Sentinel-2 JP2 swaths).
    variable : str or None
        Variable of a Zarr input.
    scheduler : str or None
        Address of an existing Dask scheduler (``tcp://host:8786``) to run on.
    workers : int or None
        Start a local Dask cluster of this many workers (threads of this
        process, sharing its cores).  With neither, the run is the
        single-process pipeline.
    bands : str or None
        ``B04,B03,B02`` or ``3,2,1``: bands by description or 1-based index, in order.
    offset : float or None
        Additive reflectance offset (Sentinel-2 ``BOA_ADD_OFFSET``); None = from metadata.
    aoi : str or None
        Vector file of the area of interest.
    bbox : str or None
        ``minx,miny,maxx,maxy`` in ``bbox_crs``.
    bbox_crs : str
        CRS of ``bbox`` (default EPSG:4326).
    frames : tuple of str
        Further acquisitions of the same place (multi-temporal input).
    asset : str or None
        Asset key of a STAC Item input.
    stac : bool
        Write a STAC Item JSON beside the output.
    quicklook : bool
        Write a comparison PNG beside the output.
    resume : bool
        Finish an interrupted run of the same job (only its missing tiles);
        a no-op when the output is already complete.
    restart : bool
        Discard an interrupted run's state and start over.
    check_resources : bool
        Refuse a run whose plan needs more memory or disk than is available.
    zarr_format : int or None
        A ``.zarr`` output's format: 2 or 3; None = 3.  2 for GDAL before 3.11
        (rasterio 1.4's wheels), which reads no v3.  Refused for a COG output.
    compress : str
        The output's lossless compression: ``zstd`` (default), ``deflate``, ``lzw`` (a COG
        only) or ``none`` (:data:`geosr.io.sink.COMPRESSIONS`).
    """

    scale: int = 4
    model: str | None = None
    tile: int | None = None
    batch_size: int | None = None
    device: str = "auto"
    precision: str = "auto"
    compile: str = "off"
    overwrite: bool = False
    nodata: float | None = None
    variable: str | None = None
    scheduler: str | None = None
    workers: int | None = None
    bands: str | None = None
    offset: float | None = None
    aoi: str | None = None
    bbox: str | None = None
    bbox_crs: str = DEFAULT_BBOX_CRS
    frames: tuple[str, ...] = ()
    asset: str | None = None
    stac: bool = False
    quicklook: bool = False
    resume: bool = False
    restart: bool = False
    check_resources: bool = True
    zarr_format: int | None = None
    compress: str = "zstd"

    def __post_init__(self) -> None:
        self._check_types()
        if self.tile is not None and self.tile < 8:
            raise OptionError(f"--tile {self.tile} is too small: use at least 8 (default {DEFAULT_TILE})")
        if self.scheduler is not None and self.workers is not None:
            raise OptionError(
                "use either --scheduler (an existing cluster) or --workers (a local one), not both"
            )
        if self.workers is not None and self.workers < 1:
            raise OptionError(f"--workers {self.workers} must be at least 1")
        if self.workers is not None and self.workers > MAX_WORKERS:
            raise OptionError(
                f"--workers {self.workers} is more than a local cluster runs (at most {MAX_WORKERS}: "
                "its workers share this process and its cores); use fewer, or start `dask worker` "
                "processes and pass --scheduler"
            )
        if self.scheduler is not None:
            from geosr.orchestrate.cluster import check_scheduler_address

            check_scheduler_address(self.scheduler)
        if self.compile not in ("auto", "on", "off"):
            raise OptionError(f"--compile {self.compile!r} is not known; use auto, on or off")
        if self.aoi is not None and self.bbox is not None:
            raise OptionError("use either --aoi (a vector file) or --bbox, not both")
        object.__setattr__(self, "frames", tuple(str(f) for f in self.frames))
        self._check_not_empty()
        if self.bbox is None and str(self.bbox_crs).strip().upper() != DEFAULT_BBOX_CRS:
            # Taken silently, it ran the whole scene: `--aoi field.geojson --bbox-crs EPSG:32633`
            # or a --bbox lost from a script both look like an area that is not one.
            raise OptionError(
                f"--bbox-crs {self.bbox_crs} is the CRS of --bbox, which is not given; add --bbox "
                "minx,miny,maxx,maxy, or leave --bbox-crs out (an --aoi file names its own CRS)"
            )
        if self.resume and self.restart:
            raise OptionError("use either --resume (finish the interrupted run) or --restart, not both")
        if self.batch_size is not None and self.batch_size < 1:
            raise OptionError(f"--batch-size {self.batch_size} must be at least 1")
        if self.zarr_format is not None:
            from geosr.io.sink import check_zarr_format

            check_zarr_format(self.zarr_format)
            object.__setattr__(self, "zarr_format", int(self.zarr_format))
        from geosr.io.sink import checked_compress

        object.__setattr__(self, "compress", checked_compress(self.compress))
        if self.bands is not None:
            from geosr.io.bands import parse_bands

            parse_bands(self.bands)  # '' selected every band, as no --bands does

    def _check_types(self) -> None:
        """Refuse values of the wrong type, which only the Python API can pass (typer
        converts the command line's): ``tile="64"`` failed deep inside with "'<' not
        supported between instances of 'str' and 'int'", ``tile=64.5`` and
        ``nodata="none"`` with a bare TypeError or ValueError, and ``frames="d2.tif"``
        was read as the frames 'd', '2', '.', ..."""
        if isinstance(self.frames, (str, os.PathLike)):
            object.__setattr__(self, "frames", (self.frames,))
        check_scale(self.scale)
        for name in ("scale", "tile", "batch_size", "workers"):
            value = getattr(self, name)
            if value is not None and not _whole(value):
                flag = "--" + name.replace("_", "-")
                raise OptionError(f"{flag} {value!r} is not supported: use a whole number")
            if value is not None:
                object.__setattr__(self, name, int(value))  # numpy integers too
        for name in ("nodata", "offset"):
            value = getattr(self, name)
            if value is not None and not _number(value):
                raise OptionError(f"--{name} {value!r} is not supported: use a number")
            if isinstance(value, str):  # read as the command line reads it: offset="-1000" was a TypeError
                object.__setattr__(self, name, GivenNumber(value))  # shown as given: "nodata 1e-3"
        if isinstance(self.bbox, (list, tuple)) and len(self.bbox) == 4 and all(map(_number, self.bbox)):
            object.__setattr__(self, "bbox", ",".join(str(float(v)) for v in self.bbox))
        self._check_text()
        for name in ("overwrite", "stac", "quicklook", "resume", "restart", "check_resources"):
            # ``overwrite="no"`` (or "false", from a config file) is truthy: it replaced the user's file.
            value = getattr(self, name)
            if type(value).__name__ not in ("bool", "bool_"):  # numpy's too
                raise OptionError(f"{name}={value!r} is not supported: use True or False")
            object.__setattr__(self, name, bool(value))

    def _check_text(self) -> None:
        """Refuse a value that is no text where text is read: ``device=0``, ``compile=True``,
        ``bands=3`` and ``bbox=`` a dict failed deep inside (AttributeError "'int' object has
        no attribute 'startswith'", "'int' object is not iterable")."""
        if type(self.device).__module__ == "torch" and type(self.device).__name__ == "device":
            # A torch.device, as geosr.load_model takes it (torch is not imported for the check).
            object.__setattr__(self, "device", str(self.device))
        for name, say in TEXT_OPTIONS.items():
            value = getattr(self, name)
            if name == "bands" and isinstance(value, (list, tuple)):
                continue  # names and indexes one by one, which parse_bands takes
            if value is not None and not isinstance(value, str):
                raise OptionError(f"--{name} {value!r} is not supported: {say}")
        if self.aoi is not None and not isinstance(self.aoi, (str, os.PathLike)):
            # A GeoJSON dict or a shapely geometry was pathlib's TypeError 'expected str, bytes
            # or os.PathLike object, not dict'.
            raise OptionError(
                f"aoi= takes the path of a vector file, not a {type(self.aoi).__name__}: write the "
                "area to a .geojson (in lon/lat) and give its path, or give bbox=(minx, miny, maxx, maxy)"
            )

    def _check_not_empty(self) -> None:
        """Refuse an empty name, as an unset shell variable gives (``--aoi "$AOI"``): ``--aoi ''``
        said that reading '.' needed pyogrio, ``--frame ''`` that '' was a folder, and
        ``--variable ''`` printed an empty name."""
        named = [("aoi", self.aoi), ("variable", self.variable), ("asset", self.asset)]
        named += [("bbox-crs", self.bbox_crs)] + [("frame", frame) for frame in self.frames]
        for flag, value in named:
            if value is not None and not str(value).strip():
                raise OptionError(f"--{flag} is empty; give a value or leave the option out")


TEXT_OPTIONS = {
    "device": "use 'auto', 'cpu', 'cuda' or 'cuda:N' (text)",
    "precision": "use 'auto', 'fp32', 'bf16' or 'fp16' (text)",
    "compile": "use 'auto', 'on' or 'off' (text)",
    "bands": "give names or 1-based indexes as text, e.g. '3' or 'B04,B03,B02'",
    "bbox": "give 'minx,miny,maxx,maxy' or four numbers",
    "scheduler": "give the scheduler's address as text, e.g. 'tcp://host:8786'",
}
"""What each option read as text takes, for the line refusing a value of another type."""

OPTION_DEFAULTS: dict[str, object] = {f.name: f.default for f in dataclasses.fields(RunOptions)}
"""Each option's default, from which :func:`~geosr.errors.python_api` reads the keyword of its flag."""

OPTION_FLAGS = {"--frame": "frames", "--output": "dst", "-o": "dst", "-s": "scale", "-m": "model"}
"""The flags of ``geosr run`` not named after their keyword of :func:`geosr.upscale_file`."""


def check_run_options(scale: int, model: str | None, options: dict[str, Any]) -> None:
    """Refuse, before any raster is read, the options every run would refuse alike: a bad
    field (``--batch-size 0``, ``--tile 3``), ``--device cuda`` without a GPU, ``--precision
    fp99``, an unknown ``--model`` or a scale it does not take.

    ``geosr run`` of several inputs and ``geosr evaluate`` both call it first: each input
    reported the same line (a thousand of them for ``'archive/*.tif'``), blaming a raster
    that is fine.  ``options`` that are no :class:`RunOptions` field are left to
    :func:`geosr.api.upscale_file` to name.
    """
    from geosr.models.registry import check_model
    from geosr.predictor import resolve_device, resolve_precision

    known = {f.name for f in dataclasses.fields(RunOptions)}
    RunOptions(scale=scale, model=model, **{k: v for k, v in options.items() if k in known})
    resolve_precision(options.get("precision", "auto"), resolve_device(options.get("device", "auto")))
    check_model(model, scale=scale)


def check_scale(scale: object) -> None:
    """Refuse a ``--scale`` that is not a whole number from 1 (:class:`OptionError`), in the
    words every command uses."""
    if not _whole(scale) or scale < 1:  # type: ignore[operator]  # _whole: an integer
        raise OptionError(f"--scale {scale!r} is not supported: use an integer such as 2, 3 or 4")


def _whole(value: object) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: object) -> bool:
    """Whether ``value`` reads as a float (a number, or its text as ``--nodata`` takes it), not a bool."""
    try:
        float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return not isinstance(value, bool)
