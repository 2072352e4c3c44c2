"""``geosr.upscale``: a lazy, dask-backed, georeferenced super-resolution of a DataArray.

Each output chunk is one task that runs the same per-tile kernels as
``geosr run`` on an input chunk grown by the halo (Dask's ``reflect`` boundary
is the same symmetric mirroring the file reader uses), so the result equals the
file job's.  The model is loaded once per process (cached), never pickled into
the graph.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import os
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import rasterio
import rasterio.errors
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from odc.geo.geobox import GeoBox

from geosr.api import model_label
from geosr.errors import (
    GeosrError,
    InputError,
    OptionError,
    current_keywords,
    keyword_wording,
    python_api,
    warn,
)
from geosr.grid import scaled
from geosr.io.bands import band_offsets, check_band_layout
from geosr.io.names import open_raster
from geosr.io.scene import (
    SUPPORTED_DTYPES,
    carried_tags,
    data_bands,
    fill_value,
    hides_pixels,
    nodata_as_gdal_masks_it,
    sample_step,
    scaled_print_resolution,
)
from geosr.io.sink import NODATA_GIVEN, check_nodata_of
from geosr.io.zarr_scene import array_transform, check_evenly_spaced, variable_crs
from geosr.kernel import finish_tile, prepare_tiles
from geosr.normalise import (
    FILL_RADIUS,
    Normalisation,
    normalisation_from_card,
    scene_normalisation,
    units_dtype,
    valid_mask,
)
from geosr.options import DEFAULT_TILE, RunOptions
from geosr.run_inputs import warn_zeros_as_data
from geosr.tiling import Window


def cached_predictor(
    model: str | None, bands: int, scale: int, device: str, precision: str, compile: str = "off"
) -> Any:
    """The predictor for these settings, built once per process (per Dask worker), and
    again when the weights file ``model`` names has been written since.

    The last :data:`MODELS_KEPT` are kept, with their weights (on the GPU for a CUDA device),
    until :func:`forget_models`."""
    stamp = _weights_stamp(model)
    with _BUILDING:
        return _predictor(model, stamp, bands, scale, device, precision, compile)


_BUILDING = threading.Lock()
"""Held while the cache is looked up: lru_cache does not hold back a second caller while the
first builds, so a worker's task threads starting at once each built the model (4 builds,
4 copies on the GPU, for a worker of 4 threads)."""


MODELS_KEPT = 4
"""How many predictors (settings of :func:`cached_predictor`) a process keeps for its next calls."""


@functools.lru_cache(maxsize=MODELS_KEPT)
def _predictor(
    model: str | None, stamp: object, bands: int, scale: int, device: str, precision: str, compile: str
) -> Any:
    from geosr.models import load_model
    from geosr.predictor import Predictor

    net = load_model(model, bands=bands, scale=scale)
    return Predictor(net, device=device, precision=precision, compile=compile)


def forget_models() -> None:
    """Free the models this process keeps for its next :func:`upscale` (and ``workers=N`` run).

    They are built again by the next call that needs them; a lazy result not yet computed
    still computes.  A CUDA device's memory they held is handed back to the driver, as far as
    nothing else of the process holds it.
    """
    with _BUILDING:
        _predictor.cache_clear()
    torch = sys.modules.get("torch")  # not imported by a process that never ran a model
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()  # a predictor in a reference cycle would hold its weights until then
        torch.cuda.empty_cache()


def predictor_builds() -> int:
    """How many times this process built a predictor (for the once-per-worker test)."""
    return _predictor.cache_info().misses


def _weights_stamp(model: str | None) -> object:
    """When and how large the weights and card a path names are, None for a model name.

    Part of the cache's key: weights saved again under the same path (retrained in a
    notebook) kept giving the old model's pixels, while upscale_file gave the new one's.
    """
    from geosr.models.registry import MODEL_NAMES
    from geosr.models.weights import card_of, weights_paths

    if model is None or model in MODEL_NAMES:
        return None
    try:
        weights = weights_paths(model)[0]
        files = (weights, card_of(weights))
        return tuple((f.stat().st_mtime_ns, f.stat().st_size) for f in files)
    except (GeosrError, OSError):  # load_model says what is wrong with the path
        return None


def _chunks(length: int, tile: int, halo: int) -> tuple[int, ...]:
    """Chunk sizes of about ``tile``, none smaller than ``halo`` (Dask's overlap needs it)."""
    sizes = [tile] * (length // tile)
    rest = length - tile * len(sizes)
    if rest:
        if rest < halo and sizes:
            sizes[-1] += rest
        else:
            sizes.append(rest)
    return tuple(sizes)


def _upscale_block(block: np.ndarray, *, keywords: Mapping[str, str] | None, **kwargs: Any) -> np.ndarray:
    """:func:`_upscale_block_as_said` in the words of the ``upscale`` call that built the task
    (``keywords``): it runs once that call has returned, so its errors (a weights file written
    again since, for other bands) named geosr run's flags, or load_model's keywords."""
    with keyword_wording(keywords):
        return _upscale_block_as_said(block, **kwargs)


def _upscale_block_as_said(
    block: np.ndarray,
    *,
    halo: int,
    scale: int,
    norm: Normalisation,
    nodata: float | None,
    dtype: str,
    model: str | None,
    device: str,
    precision: str,
    stored: tuple[str, float | None] | None = None,
    source: str = "the DataArray",
    tile: int | None = None,
) -> np.ndarray:
    """One output chunk from one input chunk grown by the halo.

    ``stored`` is the file's own dtype and nodata value (None if it has none) behind a
    masked read (floats, NaN where the file has nodata): the pixels are then rounded and
    clipped as the file job writes them, so that ``to_raster`` stores the same values back.
    ``source`` names the array in geosr's lines: its file, or the DataArray.  A chunk of
    several tiles of ``tile`` columns (:func:`_super_resolved`) runs them as one batch.
    """
    h, w = block.shape[1] - 2 * halo, block.shape[2] - 2 * halo
    core = Window(halo, halo, h, w)

    def predictor() -> Any:  # built only for a chunk with data (a worker's first may have none)
        return cached_predictor(model, block.shape[0], scale, device, precision)

    widths = _chunks(w, tile, halo) if tile else (w,)
    starts = np.cumsum((0, *widths[:-1]))
    tiles = [
        block[:, :, start : start + width + 2 * halo] for start, width in zip(starts, widths, strict=True)
    ]
    outputs, valids = _tiles_predicted(
        tiles, predictor, halo=halo, scale=scale, norm=norm, nodata=nodata, source=source
    )
    sr, core_valid = np.concatenate(outputs, axis=-1), np.concatenate(valids, axis=-1)
    # The source pixels, where the model projects onto them (finish_tile).
    reference = block[:, core.rows, core.cols] if core_valid.any() and predictor().model.projects else None
    if stored is None:
        return finish_tile(
            sr, core_valid, scale=scale, norm=norm, dtype=dtype, nodata=nodata, reference=reference
        )
    # A file without nodata has no integer to mark the caller's NaN with: they go back after the cast.
    out = finish_tile(
        sr,
        core_valid if stored[1] is not None else np.ones_like(core_valid),
        scale=scale,
        norm=norm,
        dtype=stored[0],
        nodata=stored[1],
        reference=reference,
    ).astype(dtype)
    out[~core_valid.repeat(scale, axis=-2).repeat(scale, axis=-1)] = np.nan
    return out


def _tiles_predicted(
    tiles: Sequence[np.ndarray],
    predictor: Callable[[], Any],
    *,
    halo: int,
    scale: int,
    norm: Normalisation,
    nodata: float | None,
    source: str,
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The model's output cores of ``tiles`` (each grown by ``halo``, as the file job reads
    its tiles) and their valid cores; the tiles of one shape go through the model (of the
    predictor ``predictor()`` gives) in one call.

    A tile with no valid pixel is nodata whatever the model says: it is not run (as
    :func:`geosr.pipeline.process_batch` skips it).
    """
    outputs: list[np.ndarray] = [np.empty(0)] * len(tiles)
    valids: list[np.ndarray] = [np.empty(0)] * len(tiles)
    for shape in dict.fromkeys(t.shape for t in tiles):
        indexes = [i for i, t in enumerate(tiles) if t.shape == shape]
        x, valid = prepare_tiles(np.stack([tiles[i] for i in indexes]), nodata, norm, source)
        core = Window(halo, halo, shape[1] - 2 * halo, shape[2] - 2 * halo)
        out_core = core.scaled(scale)
        core_valid = valid[:, :, core.rows, core.cols]
        runs = [k for k in range(len(indexes)) if core_valid[k].any()]
        predicted = dict(zip(runs, predictor()(x[runs]), strict=True)) if runs else {}
        for k, i in enumerate(indexes):
            out = predicted.get(k)
            outputs[i] = (
                out[:, out_core.rows, out_core.cols]
                if out is not None
                else np.zeros((shape[0], out_core.height, out_core.width), np.float32)
            )
            valids[i] = core_valid[k]
    return outputs, valids


def _grown_by_halo(
    array: da.Array, halo: int, tile: int, tiles_per_chunk: int = 1
) -> tuple[da.Array, da.Array]:
    """``array`` in chunks of about ``tile``, and its chunks grown by ``halo`` on each side:
    the neighbours' pixels inside, the edge mirrored (symmetric, as the file reader pads) outside.

    A side of at most the halo is too short for Dask's overlap (depth must not exceed a chunk):
    it is one chunk, padded by numpy, whose symmetric pad mirrors on where Dask's stops at one
    reflection (a 12 px side padded by 15 came out 27 px, not 42).  The other side is still cut
    in tiles: a strip of 8 x 4000 px was one task, the whole strip through the model at once with
    no parallelism.

    Along x a chunk holds ``tiles_per_chunk`` tiles, whose cuts (:func:`_chunks` of the chunk
    by ``tile``) are those of chunks of one tile: the kernel cuts it so.
    """
    sides = array.shape[1:]
    thin = [n <= halo for n in sides]
    edges = (tile, tile * tiles_per_chunk)
    array = array.rechunk(
        (-1, *((n,) if t else _chunks(n, e, halo) for n, t, e in zip(sides, thin, edges, strict=True)))
    )
    depth = {0: 0, 1: 0 if thin[0] else halo, 2: 0 if thin[1] else halo}
    boundary = {axis: "none" if depth[axis] == 0 else "reflect" for axis in (1, 2)}
    padded: da.Array = da.overlap.overlap(array, depth=depth, boundary=boundary) if not all(thin) else array
    if any(thin):
        width = ((0, 0), *((halo, halo) if t else (0, 0) for t in thin))
        grown = tuple(tuple(c + a + b for c in cs) for cs, (a, b) in zip(padded.chunks, width, strict=True))
        pad = functools.partial(np.pad, pad_width=width, mode="symmetric")
        padded = da.map_blocks(pad, padded, chunks=grown, dtype=padded.dtype)
    return array, padded


def _grid_of(data: xr.DataArray) -> GeoBox:
    # As for a Zarr store: rioxarray's grid mapping, GeoZarr/CF attributes, CF lat/lon.
    crs = variable_crs(data, data.rio.y_dim, data.rio.x_dim)
    if crs is None:
        raise InputError(f"the DataArray has no CRS; {_crs_fix(data)}")
    for dim in (data.rio.y_dim, data.rio.x_dim):
        check_evenly_spaced(data, dim, "the DataArray")  # as for a Zarr store read by path
    return GeoBox(data.rio.shape, array_transform(data, "the DataArray"), crs)


def _crs_fix(data: xr.DataArray) -> str:
    """How to give ``data`` its CRS.  A variable whose grid mapping was left behind in its
    Dataset (``xr.open_zarr(store)["band_data"]``, ``xr.open_dataset`` of a CF netCDF: they
    keep it only with ``decode_coords="all"``) was told to set one, though its file has it."""
    mapping = data.attrs.get("grid_mapping", data.encoding.get("grid_mapping"))
    if isinstance(mapping, str) and mapping not in data.coords:
        return (
            f"its grid mapping {mapping!r} was not read with it: open the file with "
            "decode_coords='all' (xr.open_zarr(..., decode_coords='all')), or set one with "
            "da.rio.write_crs('EPSG:...')"
        )
    return "set one with da.rio.write_crs('EPSG:...')"


# Bands are selected on the DataArray: upscale takes no bands=.
@python_api(flags={"--bands": "data.sel(band=[...])"})
def upscale(
    data: xr.DataArray,
    *,
    scale: int = 4,
    model: str | None = None,
    tile: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    nodata: float | None = None,
) -> xr.DataArray:
    """Super-resolve a georeferenced DataArray lazily.

    Parameters
    ----------
    data : xarray.DataArray
        ``(band, y, x)`` or ``(y, x)``, numpy- or dask-backed, georeferenced by
        rioxarray (``.rio.crs``, ``.rio.transform()``); the dimensions may have
        other names (``time, lat, lon``), and CF latitude/longitude without a
        CRS are read as EPSG:4326.
    scale, model, tile, device, precision
        As for :func:`geosr.upscale_file`.
    nodata : float, optional
        The value of the input's pixels that are nodata, in place of its ``rio.nodata``.  Its
        NaN stay nodata too: those of a masked read (``open_rasterio(masked=True)``), where the
        file had its own nodata value, cannot be read as data, so such a read given another
        value has both nodata (written back as the file's value), where ``geosr run --nodata``
        on the file replaces the file's value.  Read the file without ``masked=True`` to
        replace it.

    Returns
    -------
    xarray.DataArray
        Dask-backed, ``(band, y*s, x*s)`` under the input's dimension names and
        leading coordinate (``(y*s, x*s)`` for a 2-D input), same dtype and nodata
        (where the input has none, that of ``geosr run``'s output: NaN for floats, and
        for a masked read of a file whose mask hides pixels 0, or a signed type's minimum),
        with ``.rio.transform()`` the scaled grid and the same CRS; chunks are output
        blocks of ``tile * scale`` pixels.

    Notes
    -----
    The call itself reads a strided sample of the whole input (every chunk
    of a dask-backed one) for the scene's normalisation, which every tile
    then shares, as ``geosr run`` does; the tiles run only when the result is
    computed.

    The model is built once and kept for the next calls: the process keeps the last
    :data:`MODELS_KEPT` models (one per model, band count, scale, device and precision), on the
    GPU for a CUDA device.  :func:`geosr.forget_models` frees them.
    """
    opts = RunOptions(scale=scale, model=model, tile=tile, device=device, precision=precision, nodata=nodata)
    _check_model_argument(opts.model)
    flat = isinstance(data, xr.DataArray) and data.ndim == 2
    # The scalar coordinate of a band taken alone (da.sel(band=2)), which becomes _checked's band.
    labelled = flat and "band" in data.coords
    data, source = _as_bands_of_its_file(data)
    grid = _grid_of(data)
    given = nodata is not None
    nodata = _nodata_of(data, nodata)
    model = _model_for_workers(opts.model)
    predictor = _predictor_for_bands(data, model, opts)
    net = predictor.model
    halo = net.receptive_field + FILL_RADIUS
    # Dask's overlap needs chunks of at least the halo: a smaller --tile is rounded up.
    tile_edge = max(opts.tile or DEFAULT_TILE, halo)
    array, stored, units = _array_to_run(data, tile_edge, nodata, nodata if given else None)
    norm, stored = _sampled_normalisation(data, source, net, array, grid, nodata, stored)
    # Tasks of the tiles of a whole model call: in fp32 on a CPU a lone single-band tile is
    # computed with a copy of itself (Predictor.whole_call_tiles), so one a task ran twice.
    tiles_per_chunk = predictor.whole_call_tiles(data.shape[0])
    kernel = functools.partial(
        _upscale_block,
        keywords=current_keywords(),
        halo=halo,
        scale=opts.scale,
        norm=norm,
        nodata=nodata,
        dtype=data.dtype.name,
        stored=stored,
        model=model,
        device=opts.device,
        precision=opts.precision,
        source=str(source.path) if source is not None else _label(data),
        tile=tile_edge,
    )
    result = _super_resolved(
        array,
        kernel,
        halo=halo,
        tile_edge=tile_edge,
        tiles_per_chunk=tiles_per_chunk,
        opts=opts,
        dtype=data.dtype,
    )
    out = _output_of(result, data, scaled(grid, opts.scale), nodata, stored, units)
    # A 2-D input gets no dimension it did not have: _checked's band was only for the kernels;
    # its label, the scalar coordinate of da.sel(band=2), stays (as cube.isel(time=0)'s date).
    return out.isel({out.dims[0]: 0}, drop=not labelled) if flat else out


def _array_to_run(
    data: xr.DataArray, tile_edge: int, nodata: float | None, given: float | None
) -> tuple[da.Array, tuple[str, float | None] | None, tuple[np.ndarray, np.ndarray] | None]:
    """``data``'s pixels as the kernels take them: the file's stored integers behind a decoded
    read, and the float pixels GDAL's mask hides as ``nodata``.

    Parameters
    ----------
    data : xarray.DataArray
        The checked ``(band, y, x)`` input.
    tile_edge : int
        The edge of the chunks of an input that is not chunked.
    nodata : float or None
        The input's nodata.
    given : float or None
        ``nodata`` where the caller gave it (``nodata=``), else None.

    Returns
    -------
    array : dask.array.Array
        The pixels to run.
    stored : tuple of (str, float or None), or None
        The dtype and nodata of the file's integers behind a masked or decoded read
        (:func:`_stored_given`).
    units : tuple of numpy.ndarray, or None
        The scales and offsets per band of a decoded read (:func:`_decoded_units`), which the
        output is decoded with.
    """
    array = _dask_array(data, tile_edge)
    stored = _stored_given(data, given)
    units = _decoded_units(data) if stored else None
    if units is not None:
        # A decoded read (mask_and_scale): run on the stored integers as the file job does, so
        # that they are rounded and clipped in the stored dtype, not the physical values.
        array = np.rint((array - units[1][:, None, None]) / units[0][:, None, None])
    elif stored is None and array.dtype.kind == "f" and nodata is not None and np.isfinite(nodata):
        # The float pixels GDAL's nodata mask hides are nodata, as the file job reads them.
        array = da.map_blocks(nodata_as_gdal_masks_it, array, nodata=nodata, dtype=array.dtype)
    return array, stored, units


def _sampled_normalisation(
    data: xr.DataArray,
    source: SourceFile | None,
    net: Any,
    array: da.Array,
    grid: GeoBox,
    nodata: float | None,
    stored: tuple[str, float | None] | None,
) -> tuple[Normalisation, tuple[str, float | None] | None]:
    """The scene's normalisation, from a strided sample of ``array`` read now, as geosr run's.

    Returns
    -------
    norm : Normalisation
        What every tile is normalised with.
    stored : tuple of (str, float or None), or None
        ``stored``, with a nodata value marking the pixels a masked read hides
        (:func:`_stored_marking_hidden`).

    Raises
    ------
    InputError
        Every pixel of the sample is nodata.
    """
    sample = _sample(array, grid)
    valid = valid_mask(sample, nodata)
    if not valid.any():
        raise InputError("every pixel of the DataArray is nodata; nothing to super-resolve")
    stored = _stored_marking_hidden(stored, source, sample)
    _warn_of_undeclared_zeros(data, source, sample, nodata, stored)
    return _normalisation(data, source, net, sample, valid, stored), stored


def _output_of(
    result: da.Array,
    data: xr.DataArray,
    grid: GeoBox,
    nodata: float | None,
    stored: tuple[str, float | None] | None,
    units: tuple[np.ndarray, np.ndarray] | None,
) -> xr.DataArray:
    """The output DataArray on ``grid`` (the scaled one): ``result`` georeferenced as ``data``,
    decoded with ``units`` (and told them, for to_raster) where ``data`` is a decoded read."""
    if units is not None:
        result = (result * units[0][:, None, None] + units[1][:, None, None]).astype(data.dtype)
    out = _georeferenced(result, data, grid, nodata, stored)
    if units is not None and {"scales", "offsets"} & set(data.encoding):
        # Those of the bands kept, for to_raster to write (the encoding lists the file's).
        out.encoding.update(scales=tuple(units[0].tolist()), offsets=tuple(units[1].tolist()))
    return out


def _check_model_argument(model: object) -> None:
    """Refuse a ``model=`` that is neither a name nor a path, with load_model's line.

    Checked before the predictor cache, whose weights stamp took ``model=3`` for a path
    (pathlib's TypeError) and whose key a list cannot be: upscale_file gives the same line.

    Raises
    ------
    ModelError
        ``model`` is given and is not a ``str`` or ``os.PathLike``.
    """
    if model is not None and not isinstance(model, (str, os.PathLike)):
        from geosr.models.registry import _unknown

        raise _unknown(model)


def _as_bands_of_its_file(data: Any) -> tuple[xr.DataArray, SourceFile | None]:
    """``data`` checked as a ``(band, y, x)`` DataArray, with the file it was read from.

    Parameters
    ----------
    data : Any
        What the caller gave ``upscale``.

    Returns
    -------
    tuple of (xarray.DataArray, SourceFile or None)
        The array with its bands' attributes picked from its file's (:func:`_attrs_of_its_bands`)
        and its last two dimensions declared spatial (``lat``/``lon`` too); the file, None for an
        array read from no file.  Warns when the file's mask hides pixels the array does not mark.
    """
    data = _checked(data)
    source = _source_file(data)
    _warn_of_file_mask(data, source)
    data = _attrs_of_its_bands(data, source)
    return data.rio.set_spatial_dims(y_dim=data.dims[1], x_dim=data.dims[2]), source


def _nodata_of(data: xr.DataArray, given: float | None) -> float | None:
    """The nodata value ``upscale`` runs with, checked against ``data``'s dtype as geosr run checks it.

    Parameters
    ----------
    data : xarray.DataArray
        The checked input.
    given : float, optional
        The caller's ``nodata=``; else the array's own (``rio.nodata``, then its encoded one).

    Raises
    ------
    OptionError
        The value does not fit the dtype: -1 for uint16 was rioxarray's OverflowError, NaN a
        ValueError only when the result was computed.
    """
    nodata = float(given) if given is not None else _own_nodata(data)
    if nodata is None and data.rio.encoded_nodata is not None:
        nodata = data.rio.encoded_nodata
    remedy = (
        NODATA_GIVEN
        if given is not None
        else "it is the DataArray's rio.nodata: give --nodata {values} instead"
    )
    check_nodata_of(None, nodata, data.dtype.name, remedy)
    return nodata


def _predictor_for_bands(data: xr.DataArray, model: str | None, opts: RunOptions) -> Any:
    """The predictor of the model that runs on ``data``, loaded into this process's cache.

    Raises
    ------
    InputError
        ``data``'s bands are named, and not those of the model's card in its order.
    """
    predictor = cached_predictor(model, data.shape[0], opts.scale, opts.device, opts.precision)
    net = predictor.model
    check_band_layout(
        "the DataArray",
        _band_names(data),
        net.card.bands,
        model_label(net, opts.model),
        fix="put them in that order with .sel()",
    )
    return predictor


def _dask_array(data: xr.DataArray, tile_edge: int) -> da.Array:
    """``data``'s pixels as a dask array, chunked in tiles of ``tile_edge`` if it was not chunked.

    Not ``data.data`` for a file not yet read (open_rasterio without chunks): that read the
    whole file into memory at the call, and kept it in the caller's DataArray.
    """
    if data.chunks is not None:
        return data.data
    chunked: da.Array = data.chunk(dict.fromkeys(data.dims[1:], tile_edge)).data
    return chunked


def _stored_given(data: xr.DataArray, given: float | None) -> tuple[str, float | None] | None:
    """:func:`_stored`, with the caller's ``nodata=`` as the nodata of a file that has none.

    A masked read of a file without nodata, given one: its valid pixels that round to it are
    moved off it, as the file job does (kept, they were nodata in the written file).
    """
    stored = _stored(data)
    if stored is not None and stored[1] is None and given is not None and not np.isnan(given):
        remedy = f"the file read masked holds {stored[0]} pixels: give --nodata {{values}} or leave it out"
        check_nodata_of(None, given, stored[0], remedy)
        stored = (stored[0], given)
    return stored


def _sample(array: da.Array, grid: GeoBox) -> np.ndarray:
    """The strided sample of ``array`` the scene's normalisation is computed from, as geosr run's."""
    h, w = grid.shape.yx
    step = sample_step(h, w)
    return np.asarray(array[:, ::step, ::step])


def _stored_marking_hidden(
    stored: tuple[str, float | None] | None, source: SourceFile | None, sample: np.ndarray
) -> tuple[str, float | None] | None:
    """``stored`` with a nodata value to mark the pixels a masked read hides in a file without one.

    They are NaN, which to_raster cast into the file's integer type with no nodata declared, so
    they were data in the file.  They are marked with the value the file job gives such a scene.
    """
    if stored is None or stored[1] is not None:
        return stored
    if (source is not None and source.hidden) or np.isnan(sample).any():
        return (stored[0], fill_value(stored[0], None))
    return stored


def _normalisation(
    data: xr.DataArray,
    source: SourceFile | None,
    net: Any,
    sample: np.ndarray,
    valid: np.ndarray,
    stored: tuple[str, float | None] | None,
) -> Normalisation:
    """The scene's normalisation from its ``sample``, as the model's card asks and geosr run computes it.

    The units are those of the file's integers behind a masked or decoded read (floats), as the
    file job has them: a dtype-range model divided uint16 DN by a float's 1, not by 10000.
    """
    return scene_normalisation(
        sample,
        valid,
        dtype=stored[0] if stored is not None else units_dtype(data.dtype.name, _string_attrs(data)),
        source=_label(data),
        band_axis=str(data.dims[0]) if data.ndim == 3 else "band",
        band_labels=tuple(data[data.dims[0]].values)
        if data.ndim == 3 and data.dims[0] in data.coords
        else (),
        **normalisation_from_card(net.card.normalisation),
    ).with_add_offset(_add_offsets(data, source))


def _warn_of_undeclared_zeros(
    data: xr.DataArray,
    source: SourceFile | None,
    sample: np.ndarray,
    nodata: float | None,
    stored: tuple[str, float | None] | None,
) -> None:
    """Warn, in geosr run's line, when unsigned pixels with no nodata (the array's, its file's or
    ``nodata=``) are 0 in every band on a sizeable share of the ``sample``: the 0 outside a
    Sentinel-2 L1C swath, which the file job warns of, was super-resolved as data without a word."""
    if nodata is not None or (stored is not None and stored[1] is not None):
        return
    if np.dtype(stored[0] if stored is not None else data.dtype).kind != "u":
        return
    warn_zeros_as_data(source.path if source is not None else _label(data), sample)


def _label(data: xr.DataArray) -> str:
    """How geosr's lines name a DataArray read from no file."""
    return f"DataArray {data.name!r}" if data.name is not None else "the DataArray"


def _super_resolved(
    array: da.Array,
    kernel: functools.partial[np.ndarray],
    *,
    halo: int,
    tile_edge: int,
    tiles_per_chunk: int = 1,
    opts: RunOptions,
    dtype: np.dtype,
) -> da.Array:
    """The lazy output pixels: ``kernel`` (:func:`_upscale_block`) on each input chunk grown by ``halo``.

    Parameters
    ----------
    array : dask.array.Array
        The input's pixels, ``(band, y, x)``.
    kernel : functools.partial
        :func:`_upscale_block` with all its arguments but the block.
    halo, tile_edge : int
        The pixels each chunk is grown by, and the edge of the tiles the tasks run on.
    tiles_per_chunk : int
        Tiles along x in a task's chunk, which ``kernel`` cuts it into (its ``tile``).
    opts : RunOptions
        The call's scale and tile.
    dtype : numpy.dtype
        The output's dtype.

    Returns
    -------
    dask.array.Array
        ``(band, y*s, x*s)`` in regular chunks of ``tile * scale`` pixels, the last one no larger
        (what Zarr and to_zarr require): a remainder under the halo rode on the last input chunk,
        which made that output chunk larger.  Blocks of the tile asked for, as documented, also
        where the tasks' are rounded up to the halo (tile=8 gave 30 px blocks at x2, not 16).
    """
    array, padded = _grown_by_halo(array, halo, tile_edge, tiles_per_chunk)
    out_chunks = (
        array.chunks[0],
        tuple(c * opts.scale for c in array.chunks[1]),
        tuple(c * opts.scale for c in array.chunks[2]),
    )
    result = da.map_blocks(kernel, padded, chunks=out_chunks, dtype=dtype)
    block = (opts.tile or DEFAULT_TILE) * opts.scale
    return result.rechunk((-1, block, block))


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """What the file a DataArray was read from (rioxarray's ``source`` encoding) says of its bands."""

    path: str
    count: int
    data_bands: tuple[int, ...]
    """0-based indexes of the bands that hold data: all but alpha bands."""
    hidden: bool
    """Whether a mask or an alpha band hides pixels of its data bands (:attr:`Scene.masked`)."""
    band_attrs: dict[str, tuple[object, ...]]
    """Its bands' descriptions, units, scales and offsets under open_rasterio's attribute names."""
    add_offsets: tuple[float, ...] | None
    """Its bands' ``BOA_ADD_OFFSET`` (:func:`geosr.io.bands.band_offsets`), None if it has none."""


def _source_file(data: xr.DataArray) -> SourceFile | None:
    """The file ``data`` was read from; None for an array read from no file, or one gone or
    unreadable since (the DataArray then says what it holds)."""
    source = data.encoding.get("source")
    if not isinstance(source, str):
        return None
    try:
        with open_raster(source) as src:
            bands = data_bands(src)
            return SourceFile(
                path=source,
                count=src.count,
                data_bands=tuple(band - 1 for band in bands),
                hidden=any(hides_pixels(src, band) for band in bands),
                band_attrs={
                    "long_name": src.descriptions,
                    "units": src.units,
                    "scales": src.scales,
                    "offsets": src.offsets,
                },
                add_offsets=band_offsets(
                    source, src.tags(), [src.tags(b) for b in src.indexes], src.descriptions, src.count
                ),
            )
    except (rasterio.errors.RasterioError, OSError):
        return None


def _warn_of_file_mask(data: xr.DataArray, source: SourceFile | None) -> None:
    """Warn, in one line, when ``data`` was read from a file whose mask or alpha band hides
    pixels that ``data`` does not mark: a read without ``masked=True``, or one that holds the
    alpha band.  geosr run leaves those pixels nodata and keeps them out of the normalisation;
    ``upscale`` cannot see the mask, and its result differed from the file job's by up to the
    whole range (4055 DN of a uint16 scene with an internal mask)."""
    if source is None:
        return
    raw = "dtype" not in data.encoding  # masked=True and mask_and_scale=True record the stored dtype
    with_alpha = len(source.data_bands) < source.count and data.shape[0] == source.count
    if not (source.hidden and raw) and not with_alpha:
        return
    fixes = ["open it with rioxarray.open_rasterio(..., masked=True)"] if source.hidden and raw else []
    if with_alpha:
        fixes.append(f"leave out its alpha band (.isel({data.dims[0]}={list(source.data_bands)}))")
    warn(
        f"{source.path} hides pixels with a mask or an alpha band, which this DataArray does not "
        "mark: they are super-resolved as data, where geosr run leaves them nodata; " + " and ".join(fixes)
    )


def _attrs_of_its_bands(data: xr.DataArray, source: SourceFile | None) -> xr.DataArray:
    """``data`` with the band names, units, scales and offsets of the bands it holds.

    A selection of open_rasterio's bands (``.sel(band=[4, 3, 2, 1])``, as the line for bands
    in another order than the model's says to do) keeps the file's attributes, in the file's
    order: the same line came again, and bands scrambled from the model's order ran with
    their names unchanged, which to_raster then wrote as the output's band descriptions (a
    subset failed there: rioxarray refuses more names than bands).  The file's own values are
    picked by the band labels (1-based, as open_rasterio numbers them); attributes set by the
    caller, which differ from the file's, are theirs.
    """
    indexes = _file_bands(data, source.count) if source is not None else None
    if source is None or indexes is None or indexes == list(range(source.count)):
        return data  # not a file's, or all of its bands in its order
    picked: dict[str, object] = {}
    for name, values in source.band_attrs.items():
        given = data.attrs.get(name)
        if isinstance(given, (tuple, list)) and tuple(given) == tuple(values):
            chosen = tuple(values[i] for i in indexes)
            # One band's as open_rasterio gives a one-band file's: the value itself.
            picked[name] = chosen[0] if len(chosen) == 1 else chosen
    return data.assign_attrs(picked) if picked else data


def _file_bands(data: xr.DataArray, count: int) -> list[int] | None:
    """The 0-based indexes, in a file of ``count`` bands, of the bands ``data`` holds, from its band
    labels (1-based, as open_rasterio numbers them); None where the labels are no such numbers."""
    band = data.dims[0]
    labels = np.asarray(data.coords[band].values) if band in data.coords else np.array([])
    if labels.size != data.shape[0] or labels.dtype.kind not in "iu":
        return None
    if not ((labels >= 1) & (labels <= count)).all():
        return None
    return [int(label) - 1 for label in labels]


def _add_offsets(data: xr.DataArray, source: SourceFile | None) -> tuple[float, ...] | None:
    """Each band's ``BOA_ADD_OFFSET`` (Sentinel-2 L2A since processing baseline 04.00), as geosr run
    finds it in the file ``data`` was read from (in its band tags too, which open_rasterio does not
    keep), else in ``data``'s attributes; None where there is none.  geosr.upscale left it out, and
    a dtype-range model's pixels were up to 193 DN from the file job's."""
    if source is not None:
        indexes = _file_bands(data, source.count)
        if source.add_offsets is None or indexes is None:
            return None
        return tuple(source.add_offsets[i] for i in indexes)
    tags = {str(k): str(v) for k, v in data.attrs.items() if isinstance(v, (str, int, float))}
    names = [str(name) for name in _band_names(data)]
    return band_offsets("the DataArray", tags, (), names, data.shape[0])


def _model_for_workers(model: str | None) -> str | None:
    """A user's weights named by a relative path, made absolute: Dask workers started in
    another folder looked for it in theirs, and the computed result failed with 'weights file
    my_x4.safetensors does not exist', a file the call itself had just loaded."""
    from geosr.models.registry import MODEL_NAMES, _looks_like_path

    if model is None or model in MODEL_NAMES or "://" in str(model) or not _looks_like_path(model):
        return model
    # expanduser first: '~/m.safetensors' was made '<cwd>/~/m.safetensors'.
    return str(Path(model).expanduser().absolute())


def _own_nodata(data: xr.DataArray) -> float | None:
    """The DataArray's nodata value (``rio.nodata``), or one line saying it does not fit: a
    uint16 array's ``_FillValue`` of -9999 was rioxarray's OverflowError 'Unable to convert
    nodata value (-9999) to new dtype (uint16)'."""
    try:
        value = data.rio.nodata
    except OverflowError:
        raise OptionError(
            f"the DataArray's _FillValue {data.attrs.get('_FillValue')!r} is not a valid {data.dtype} "
            "value; give the right one with nodata=, or drop it (data.attrs.pop('_FillValue'))"
        ) from None
    return None if value is None else float(value)


def _string_attrs(data: xr.DataArray) -> dict[str, str]:
    """``data``'s attributes that are strings: the file's tags, as open_rasterio keeps them."""
    return {str(k): v for k, v in data.attrs.items() if isinstance(v, str)}


def _band_names(data: xr.DataArray) -> tuple[object, ...]:
    """What names the bands: the descriptions rioxarray reads into ``long_name``, else
    the band coordinate's labels (a Zarr cube's ``B04``...); empty when neither does."""
    names = data.attrs.get("long_name")
    if isinstance(names, str):
        names = (names,)
    if isinstance(names, (tuple, list)) and len(names) == data.shape[0]:
        return tuple(names)
    labels = data.coords[data.dims[0]].values if data.dims[0] in data.coords else ()
    return tuple(str(v) for v in labels) if all(isinstance(v, str) for v in labels) else ()


def _stored(data: xr.DataArray) -> tuple[str, float | None] | None:
    """The integer dtype and nodata value (None if it has none) of the file behind a masked
    read (``open_rasterio(masked=True)``: floats, NaN where the file has nodata), or None."""
    dtype = data.encoding.get("rasterio_dtype", data.encoding.get("dtype"))
    if dtype is None or np.dtype(dtype).kind not in "ui":
        return None
    if np.dtype(dtype).name not in SUPPORTED_DTYPES or not np.issubdtype(data.dtype, np.floating):
        return None
    encoded = data.rio.encoded_nodata
    return np.dtype(dtype).name, float(encoded) if encoded is not None else None


def _decoded_units(data: xr.DataArray) -> tuple[np.ndarray, np.ndarray] | None:
    """The scale and offset of each band that decoded ``data`` from its stored integers
    (``open_rasterio(mask_and_scale=True)``, ``xr.open_zarr``), or None if it is not scaled.

    Bands of different scales come as ``scales`` and ``offsets`` (rioxarray's): read as
    unscaled, each reflectance of 0.01-0.1 was rounded to a DN of 0, so the result was 0.
    """
    scales = _per_band(data, "scales", "scale_factor", 1.0)
    offsets = _per_band(data, "offsets", "add_offset", 0.0)
    unscaled = (scales == 1.0).all() and (offsets == 0.0).all()
    return None if unscaled or (scales == 0).any() else (scales, offsets)


def _per_band(data: xr.DataArray, many: str, one: str, default: float) -> np.ndarray:
    """The encoding's ``many`` (one value per band of the file) or ``one`` (for all bands),
    for the bands of ``data``: a selection (``.sel(band=[2])``) keeps the file's list, whose
    entries its band labels (1-based, as open_rasterio numbers them) pick."""
    count = data.shape[0]
    if many not in data.encoding:
        return np.full(count, float(data.encoding.get(one, default)))
    values = np.asarray(data.encoding[many], dtype=np.float64)
    if len(values) == count:
        return values
    band = data.dims[0]
    labels = data.coords[band].values if band in data.coords else np.array([])
    if labels.dtype.kind in "iu" and len(labels) == count and ((labels >= 1) & (labels <= len(values))).all():
        return values[labels - 1]
    raise InputError(
        f"the DataArray's encoding gives {len(values)} {many} for its {count} bands, and its {band!r} "
        "labels do not say which are its own; select bands with .sel(band=[...]) of open_rasterio's numbers"
    )


SPATIAL_NAMES = frozenset({"y", "x", "lat", "lon", "latitude", "longitude"})


X_NAMES = frozenset({"x", "lon", "longitude"})


def _check_x_after_y(data: xr.DataArray) -> None:
    """Refuse rows along x: (band, x, y) was taken as (band, y, x), so x coordinates were
    read as rows and the result's transform (-5 m pixels, shifted half a pixel) was garbage."""
    if data.ndim in (2, 3) and data.dims[-2] in X_NAMES and data.dims[-1] in SPATIAL_NAMES - X_NAMES:
        order = (*data.dims[:-2], data.dims[-1], data.dims[-2])
        raise InputError(
            f"upscale expects (band, y, x) dims, got {data.dims}: transpose first, "
            f"data.transpose{tuple(map(str, order))}"
        )


def _fix_for(data: xr.DataArray) -> str:
    """How to make ``(band, y, x)`` of an array with more or fewer dimensions: a cube of dates
    and bands (stackstac's (time, band, y, x)) was refused without a word on what to do."""
    if data.ndim < 3:
        return ": a raster needs its y and x dimensions"
    outer = data.dims[0]
    return (
        f": upscale one {outer!r} at a time, e.g. geosr.upscale(data.isel({outer}=0), ...), "
        f"and xr.concat the results along {outer!r}"
    )


def _checked(data: Any) -> xr.DataArray:
    """``data`` as a ``(band, y, x)`` DataArray of a supported dtype, or one line saying why not."""
    if isinstance(data, xr.Dataset):
        raise InputError(
            "upscale takes a DataArray, not a Dataset: pick a variable, "
            f"e.g. ds[{next(iter(data.data_vars), 'name')!r}]"
        )
    if not isinstance(data, xr.DataArray):
        raise InputError(
            "upscale takes a georeferenced xarray.DataArray (rioxarray.open_rasterio), "
            f"not {type(data).__name__}"
        )
    _check_x_after_y(data)
    if data.ndim == 2:
        data = data.expand_dims("band")
    if data.ndim != 3:
        raise InputError(f"upscale expects a (band, y, x) DataArray, got dims {data.dims}{_fix_for(data)}")
    if data.dims[0] in SPATIAL_NAMES:
        order = (
            *(d for d in data.dims if d not in SPATIAL_NAMES),
            *(d for d in data.dims if d in SPATIAL_NAMES),
        )
        raise InputError(
            f"upscale expects (band, y, x) dims, got {data.dims}: transpose first, "
            f"data.transpose{tuple(map(str, order))}"
        )
    if 0 in data.shape:
        raise InputError(f"the DataArray is empty (shape {data.shape}); nothing to super-resolve")
    if data.dtype.name not in SUPPORTED_DTYPES:
        raise InputError(
            f"data type {data.dtype} is not supported; use one of {', '.join(SUPPORTED_DTYPES)} "
            "(e.g. data.astype('float32'))"
        )
    _check_stored_dtype(data)
    return data


def _check_stored_dtype(data: xr.DataArray) -> None:
    """Refuse a masked or decoded read (floats) of a file whose integers geosr does not support.

    ``open_rasterio(masked=True)`` of an int64 GeoTIFF was super-resolved, and its result kept
    the int64 encoding that to_raster writes back, while geosr run refused the file.
    """
    stored = data.encoding.get("rasterio_dtype", data.encoding.get("dtype"))
    if stored is None or np.dtype(stored).kind not in "ui" or np.dtype(stored).name in SUPPORTED_DTYPES:
        return
    source = data.encoding.get("source")
    raise InputError(
        f"{source or 'the file the DataArray was read from'}: data type {np.dtype(stored).name} is not "
        f"supported, as geosr run refuses it; use one of {', '.join(SUPPORTED_DTYPES)}: "
        "data.astype('float32') super-resolves its values as floats (NaN where the file has nodata)"
    )


def _carried_coords(source: xr.DataArray) -> dict[str, xr.Variable]:
    """The source's other coordinates that no pixel grid describes: scalars (the date of
    ``cube.isel(time=0)``, a platform) and those along its leading dimension (a cloud cover
    per date, a wavelength per band), which were dropped.  The grid mapping is written anew."""
    leading = source.dims[0]
    skipped = {leading, source.rio.y_dim, source.rio.x_dim, source.rio.grid_mapping}
    return {
        str(name): coord.variable
        for name, coord in source.coords.items()
        if name not in skipped and set(coord.dims) <= {leading}
    }


def _georeferenced(
    result: da.Array,
    source: xr.DataArray,
    grid: GeoBox,
    nodata: float | None,
    stored: tuple[str, float | None] | None,
) -> xr.DataArray:
    h, w = grid.shape.yx
    t = grid.transform
    if grid.axis_aligned:
        # odc-geo's pixel centres, which rioxarray computes alike (open_rasterio, reproject_match)
        # and geosr's Zarr output writes: t.c + t.a * (i + 0.5) differed from them in the last bit
        # (x3, or a 0.3 m grid), and sr - open_rasterio(geosr run's output) aligned 66 of 99 rows.
        y, x = (axis.values for axis in grid.coordinates.values())
    else:  # no 1-D coordinates describe a rotated grid: pixel indices, as rioxarray gives
        x, y = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    # The source's own names (time, lat, lon...) and its leading coordinate (the
    # dates of a time series) carry over: only the pixel centres change.
    leading, ydim, xdim = source.dims[0], source.rio.y_dim, source.rio.x_dim
    labels = source[leading].values if leading in source.coords else np.arange(1, result.shape[0] + 1)
    out = xr.DataArray(
        result,
        dims=(leading, ydim, xdim),
        coords={leading: labels, ydim: y, xdim: x},
        # Not the nodata value (written again) nor what describes the input's grid (carried_tags).
        # A scan's dpi as many times finer as the pixels (scaled_print_resolution).
        attrs=scaled_print_resolution(carried_tags(source.attrs), w // source.sizes[xdim]),
    )
    # Not name=source.name: for None, xarray takes the dask array's own name, a task token
    # ('_upscale_block-2334...'), which to_zarr then wrote as the variable's name.
    out.name = source.name
    out = out.assign_coords(_carried_coords(source)).rio.write_crs(grid.crs).rio.write_transform(t)
    if source.rio.encoded_nodata is not None:
        # A masked read (open_rasterio(masked=True)): keep how it was stored, so that
        # to_raster writes the file's dtype and nodata again, not float32 with NaN.
        out = out.rio.write_nodata(source.rio.encoded_nodata, encoded=True)
    elif stored is not None and stored[1] is not None:
        # A masked read of a file without nodata, given one or masked: its NaN are written as it.
        out = out.rio.write_nodata(stored[1], encoded=True)
    elif nodata is not None:
        out = out.rio.write_nodata(nodata, encoded=False)
    elif stored is None and result.dtype.kind == "f":
        # As the file job declares it for a float scene without nodata: its NaN (those of the
        # input, its mask's) were written with no nodata, as data.
        out = out.rio.write_nodata(np.nan, encoded=False)
    if stored is not None or source.rio.encoded_nodata is not None:  # a masked read, nodata or not
        kept = ("dtype", "rasterio_dtype", "scale_factor", "add_offset")
        out.encoding.update({k: source.encoding[k] for k in kept if k in source.encoding})
    return out
