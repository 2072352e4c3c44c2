"""COG and Zarr sinks: format validity, exact georeferencing, atomicity, failures.

Pixel values encode their own band, row and column, so a window written to the
wrong place, a transposed block or a lost tile shows up as a value mismatch.
"""

from __future__ import annotations

import gc
import json
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from rasterio.crs import CRS
from rio_cogeo.cogeo import cog_validate

import geosr
from geosr.errors import OptionError, OutputError
from geosr.io import atomic
from geosr.io.atomic import TMP_MARKER
from geosr.io.scene import open_scene
from geosr.io.sink import OutputSpec, RasterSink, open_sink
from geosr.io.zarr_scene import band_metadata
from geosr.io.zarr_store import VARIABLE, write_region

UTM = GeoBox((611, 1037), Affine(2.5, 0.0, 499_980.0, 0.0, -2.5, 5_300_040.0), "EPSG:32633")
# Degrees with a resolution that is not a short binary fraction: exactness matters.
GEOGRAPHIC = GeoBox((257, 300), Affine(1 / 11120, 0.0, 14.9, 0.0, -1 / 11120, 46.1), "EPSG:4326")


# --------------------------------------------------------------------------- factories


@pytest.fixture
def make_spec() -> Callable[..., OutputSpec]:
    """OutputSpec factory with sensible defaults for small test rasters."""

    def make(
        grid: GeoBox = UTM,
        count: int = 4,
        dtype: str = "uint16",
        nodata: float | None = 0,
        **kwargs: Any,
    ) -> OutputSpec:
        return OutputSpec(grid=grid, count=count, dtype=dtype, nodata=nodata, **kwargs)

    return make


def coded(spec: OutputSpec) -> np.ndarray:
    """Pixels whose values encode (band, row, col); a nodata corner when there is nodata."""
    count, height, width = spec.shape
    band, row, col = np.meshgrid(np.arange(count), np.arange(height), np.arange(width), indexing="ij")
    values = band * 7 + row * 1000 + col
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        data = values.astype(dtype)  # exact: below 2**24
    else:
        info = np.iinfo(dtype)
        data = (values % (int(info.max) - 1) + 1).astype(dtype)  # never 0, the usual nodata
    if spec.nodata is not None:
        data[:, :5, :7] = spec.nodata
    return data


def windows(height: int, width: int, step: tuple[int, int] = (200, 300)) -> Iterator[tuple[slice, slice]]:
    """Windows not aligned to the 512 blocks, covering the raster once."""
    for r in range(0, height, step[0]):
        for c in range(0, width, step[1]):
            yield slice(r, min(r + step[0], height)), slice(c, min(c + step[1], width))


def write_all(sink: RasterSink, data: np.ndarray) -> None:
    for rows, cols in windows(*data.shape[1:]):
        sink.write(rows, cols, np.ascontiguousarray(data[:, rows, cols]))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if TMP_MARKER in p.name or p.name.endswith(".tmp"))


def snapshot(path: Path) -> dict[str, bytes]:
    """Every byte of a file or a directory tree, for before/after comparisons."""
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def read_zarr(path: Path, **kwargs: Any) -> xr.DataArray:
    # chunks=None: no dask in the io tests either.
    return xr.open_zarr(path, decode_coords="all", chunks=None, **kwargs)[VARIABLE]


# --------------------------------------------------------------------------- COG


def test_cog_is_valid_tiled_compressed_and_carries_metadata(tmp_path, make_spec):
    spec = make_spec(
        descriptions=("B2", "B3", "B4", None),
        colorinterp=("blue", "green", "red", "undefined"),
        tags={"SENSOR": "Sentinel-2", "geosr_scale": "4"},
        band_tags=({"wavelength": "490"}, {}, {}, {"wavelength": "842"}),
        scales=(2.75e-05, 2.75e-05, 2.75e-05, 1.0),
        offsets=(-0.2, -0.2, -0.2, 0.0),
        units=("reflectance", "reflectance", "reflectance", None),
    )
    data = coded(spec)
    destination = tmp_path / "scene_x4.tif"
    with open_sink(destination, spec) as sink:
        write_all(sink, data)

    is_valid, errors, _warnings = cog_validate(str(destination), quiet=True)
    assert is_valid and not errors
    with rasterio.open(destination) as src:
        assert src.block_shapes == [(512, 512)] * 4
        structure = src.tags(ns="IMAGE_STRUCTURE")
        assert structure["LAYOUT"] == "COG"
        assert structure["COMPRESSION"] == "ZSTD"
        assert structure["PREDICTOR"] == "2"
        factors = src.overviews(1)
        assert factors, "no overviews"
        assert math.ceil(src.width / factors[-1]) <= 512
        assert math.ceil(src.height / factors[-1]) <= 512
        assert src.dtypes == ("uint16",) * 4
        assert src.nodata == 0
        assert src.descriptions == ("B2", "B3", "B4", None)
        assert [c.name for c in src.colorinterp] == ["blue", "green", "red", "undefined"]
        assert src.tags()["SENSOR"] == "Sentinel-2"
        assert src.tags()["geosr_scale"] == "4"
        assert src.tags(1)["wavelength"] == "490"
        assert src.tags(4)["wavelength"] == "842"
        assert src.scales == (2.75e-05, 2.75e-05, 2.75e-05, 1.0) and src.offsets == (-0.2, -0.2, -0.2, 0.0)
        assert src.units == ("reflectance", "reflectance", "reflectance", None)
        assert tuple(src.transform) == tuple(UTM.transform)
        assert UTM.crs == src.crs
        np.testing.assert_array_equal(src.read(), data)
    assert leftovers(tmp_path) == []


def test_cog_float_nan_nodata_geographic(tmp_path, make_spec):
    spec = make_spec(grid=GEOGRAPHIC, count=2, dtype="float32", nodata=float("nan"))
    data = coded(spec)
    destination = tmp_path / "out.tiff"
    with open_sink(destination, spec) as sink:
        write_all(sink, data)

    is_valid, errors, _warnings = cog_validate(str(destination), quiet=True)
    assert is_valid and not errors
    with rasterio.open(destination) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == "3"
        assert math.isnan(src.nodata)
        assert tuple(src.transform) == tuple(GEOGRAPHIC.transform)
        assert GEOGRAPHIC.crs == src.crs
        np.testing.assert_array_equal(src.read(), data)
        # Averaging skips nodata: the overview pixel over the NaN corner's edge is a number.
        overview = src.read(1, out_shape=(src.height // 2, src.width // 2))
        assert np.isnan(overview[0, 0]) and not np.isnan(overview[0, 5])


@pytest.mark.parametrize(
    ("dtype", "nodata", "colorinterp"),
    [("uint8", None, ("red", "green", "blue")), ("int16", -9999, ()), ("float64", -1e30, ())],
)
def test_cog_dtypes_round_trip(tmp_path, make_spec, dtype, nodata, colorinterp):
    grid = GeoBox((70, 90), UTM.transform, UTM.crs)
    spec = make_spec(grid=grid, count=3, dtype=dtype, nodata=nodata, colorinterp=colorinterp)
    data = coded(spec)
    destination = tmp_path / "small.tif"
    with open_sink(destination, spec) as sink:
        sink.write(slice(0, 70), slice(0, 90), data)
    assert cog_validate(str(destination), quiet=True)[0]
    with rasterio.open(destination) as src:
        assert src.dtypes[0] == dtype
        assert src.nodata == nodata
        if colorinterp:
            assert [c.name for c in src.colorinterp] == list(colorinterp)
        np.testing.assert_array_equal(src.read(), data)


# A rotated pole (CORDEX climate grids): no GeoTIFF key describes it, so GDAL keeps the
# CRS in a ``.aux.xml`` beside the file.
ROTATED_POLE = CRS.from_proj4(
    "+proj=ob_tran +o_proj=longlat +o_lon_p=0 +o_lat_p=40 +lon_0=10 +datum=WGS84 +no_defs"
).to_wkt()


def test_cog_keeps_a_crs_that_geotiff_keys_cannot_hold(tmp_path, make_spec):
    """The CRS GDAL writes beside the COG (``.aux.xml``) goes with it: it was removed with
    the temporaries, and the output had no CRS at all."""
    grid = GeoBox((40, 50), Affine(0.1, 0.0, 5.0, 0.0, -0.1, 50.0), ROTATED_POLE)
    spec = make_spec(grid=grid, count=1, block=16)
    destination = tmp_path / "rotated_pole.tif"
    with open_sink(destination, spec) as sink:
        write_all(sink, coded(spec))
    with rasterio.open(destination) as src:
        assert src.crs is not None and grid.crs == src.crs
        assert tuple(src.transform) == tuple(grid.transform)
    assert leftovers(tmp_path) == []


# A Bessel datum with a 7-parameter shift to WGS84 (DHDN and the like): the scale is in ppm.
TOWGS84 = "598.1,73.7,418.2,0.202,0.045,-2.455,6.7"


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_a_towgs84_shift_is_written_digit_for_digit(tmp_path, make_spec, suffix):
    """pyproj's WKT2 (odc-geo's ``crs.wkt``) gives the shift's 6.7 ppm as the factor 1.0000067,
    and GDAL read every output's scale back as 6.69999999992 ppm."""
    crs = CRS.from_proj4(f"+proj=tmerc +lon_0=9 +x_0=3500000 +ellps=bessel +towgs84={TOWGS84} +units=m")
    # As geosr's reader makes a grid: from the CRS GDAL gives.
    grid = GeoBox((40, 50), Affine(5.0, 0.0, 3_500_000.0, 0.0, -5.0, 5_500_000.0), crs)
    spec = make_spec(grid=grid, count=1, block=16, zarr_format=2)
    destination = tmp_path / f"out{suffix}"
    with open_sink(destination, spec) as sink:
        write_all(sink, coded(spec))
    name = str(destination) if suffix == ".tif" else f'ZARR:"{destination}":/{VARIABLE}'
    with rasterio.open(name) as src:
        assert f"TOWGS84[{TOWGS84}]" in src.crs.to_wkt()


def test_overwriting_a_cog_drops_its_old_sidecar(tmp_path, make_spec):
    """GDAL reads an ``.aux.xml`` before the TIFF's own keys: the sidecar of the output
    replaced (its rotated-pole CRS, or statistics QGIS saved) gave the new output a CRS
    and statistics that were not its own."""
    destination = tmp_path / "out.tif"
    rotated = GeoBox((40, 50), Affine(0.1, 0.0, 5.0, 0.0, -0.1, 50.0), ROTATED_POLE)
    utm = GeoBox((40, 50), UTM.transform, UTM.crs)
    for grid, overwrite in ((rotated, False), (utm, True)):
        spec = make_spec(grid=grid, count=1, block=16)
        with open_sink(destination, spec, overwrite=overwrite) as sink:
            write_all(sink, coded(spec))
        if not overwrite:
            (tmp_path / "out.tif.ovr").write_bytes(b"overviews of the first output (gdaladdo -ro)")
    with rasterio.open(destination) as src:
        assert utm.crs == src.crs
    assert [p.name for p in tmp_path.iterdir()] == ["out.tif"]


def test_cog_same_writes_give_same_bytes(tmp_path, make_spec):
    """Resumed or repeated runs must end with identical files."""
    spec = make_spec(grid=GeoBox((100, 130), UTM.transform, UTM.crs), count=2)
    data = coded(spec)
    for name in ("a.tif", "b.tif"):
        with open_sink(tmp_path / name, spec) as sink:
            write_all(sink, data)
    assert (tmp_path / "a.tif").read_bytes() == (tmp_path / "b.tif").read_bytes()


def test_truncated_intermediate_is_detected(tmp_path, make_spec):
    """A tile lost at the final flush (which rasterio does not report) is caught."""
    from geosr.io.cog import _check_tiles

    spec = make_spec(grid=GeoBox((600, 700), UTM.transform, UTM.crs), count=1)
    path = tmp_path / "whole.tif"
    with open_sink(path, spec) as sink:
        sink.write(slice(0, 600), slice(0, 700), coded(spec))
    _check_tiles(path, path)  # intact
    size = path.stat().st_size
    with path.open("r+b") as f:
        f.truncate(size - 100)
    with pytest.raises(OutputError, match=r"not written|left unreadable"):
        _check_tiles(path, path)


# --------------------------------------------------------------------------- Zarr


@pytest.mark.parametrize(
    ("grid", "dtype", "nodata"),
    [(UTM, "uint16", 0), (GEOGRAPHIC, "float32", float("nan")), (UTM, "int16", None)],
)
def test_zarr_is_rioxarray_readable_with_exact_grid(tmp_path, make_spec, grid, dtype, nodata):
    spec = make_spec(
        grid=grid,
        count=2,
        dtype=dtype,
        nodata=nodata,
        descriptions=("B4", "B8"),
        tags={"geosr_model": "cnnrnn"},
        block=256,
    )
    data = coded(spec)
    destination = tmp_path / "out.zarr"
    with open_sink(destination, spec) as sink:
        write_all(sink, data)

    da = read_zarr(destination)
    assert da.dims == ("band", "y", "x")
    # The pixel centres are the data's own coordinates (a geographic grid's included),
    # and the store has no other dimension.
    centres = grid.transform @ (np.arange(grid.width) + 0.5, np.full(grid.width, 0.5))
    np.testing.assert_allclose(da["x"].values, centres[0], rtol=0, atol=abs(grid.resolution.x) * 1e-9)
    centres = grid.transform @ (np.full(grid.height, 0.5), np.arange(grid.height) + 0.5)
    np.testing.assert_allclose(da["y"].values, centres[1], rtol=0, atol=abs(grid.resolution.y) * 1e-9)
    assert set(xr.open_zarr(destination, chunks=None).sizes) == {"band", "y", "x"}
    assert da.rio.crs == grid.crs
    assert tuple(da.rio.transform()) == tuple(grid.transform)
    assert list(da["band"].values) == [1, 2]
    assert da.attrs["long_name"] == ["B4", "B8"]
    assert xr.open_zarr(destination, chunks=None).attrs["geosr_model"] == "cnnrnn"
    if nodata is None:
        assert da.rio.encoded_nodata is None and da.rio.nodata is None
    else:
        assert np.array_equal(da.rio.encoded_nodata, nodata, equal_nan=True)
    raw = read_zarr(destination, mask_and_scale=False)
    assert raw.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(raw.values, data)
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("grid", "dtype", "nodata"),
    [(UTM, "uint16", 0), (GEOGRAPHIC, "float32", float("nan")), (UTM, "int16", None)],
)
def test_zarr_v2_is_read_by_gdal_with_its_crs_and_transform(tmp_path, make_spec, grid, dtype, nodata):
    """GDAL 3.10 (rasterio 1.4's wheels) reads no Zarr v3 ('Unsupported codec: bytes'), which
    was all a .zarr output could be; ``zarr_format=2`` writes what it reads, georeferenced."""
    spec = make_spec(grid=grid, count=2, dtype=dtype, nodata=nodata, block=256, zarr_format=2)
    data = coded(spec)
    destination = tmp_path / "out.zarr"
    with open_sink(destination, spec) as sink:
        write_all(sink, data)
    assert json.loads((destination / ".zgroup").read_text())["zarr_format"] == 2
    with rasterio.open(f'ZARR:"{destination}":/{VARIABLE}') as src:
        assert src.crs == grid.crs
        # GDAL derives the transform from the pixel centres, to the last bits of a degree.
        assert src.transform.almost_equals(grid.transform, precision=abs(grid.resolution.x) * 1e-9)
        assert (
            np.array_equal(src.nodata, nodata, equal_nan=True) if nodata is not None else src.nodata is None
        )
        np.testing.assert_array_equal(src.read(), data)
    da = read_zarr(destination)  # and xarray, as a v3 output, to the last bit of its transform
    assert da.dims == ("band", "y", "x") and da.rio.crs == grid.crs
    assert tuple(da.rio.transform()) == tuple(grid.transform)
    np.testing.assert_array_equal(read_zarr(destination, mask_and_scale=False).values, data)


def test_gdal_reads_a_zarr_outputs_band_colours(tmp_path, make_spec):
    """geosr wrote a Zarr output's colours as "colorinterp", an attribute of its own, which GDAL's
    Zarr driver does not know: rasterio.open('ZARR:"out.zarr":/band_data') of an RGB(NIR) output
    gave undefined for every band.  They are now GDAL's COLOR_INTERPRETATION, in names GDAL parses
    (other_ir as OtherIR), which geosr reads back as well, and still its earlier "colorinterp"."""
    colours = ("red", "green", "blue", "other_ir")
    spec = make_spec(grid=GeoBox((64, 48), UTM.transform, UTM.crs), colorinterp=colours, zarr_format=2)
    destination = tmp_path / "out.zarr"
    with open_sink(destination, spec) as sink:
        write_all(sink, coded(spec))
    with rasterio.open(f'ZARR:"{destination}":/{VARIABLE}') as src:
        assert tuple(c.name for c in src.colorinterp) == colours
    assert open_scene(destination).colorinterp == colours
    attrs = {"colorinterp": list(colours), "long_name": ["a", "b", "c", "d"]}
    assert band_metadata(attrs, 4)["colorinterp"] == colours  # a store of an earlier geosr


def test_cog_and_zarr_hold_identical_values(tmp_path, make_spec):
    spec = make_spec(grid=GeoBox((300, 420), UTM.transform, UTM.crs), count=3)
    data = coded(spec)
    for name in ("same.tif", "same.zarr"):
        with open_sink(tmp_path / name, spec) as sink:
            write_all(sink, data)
    with rasterio.open(tmp_path / "same.tif") as src:
        from_cog = src.read()
    from_zarr = read_zarr(tmp_path / "same.zarr", mask_and_scale=False).values
    np.testing.assert_array_equal(from_cog, from_zarr)
    np.testing.assert_array_equal(from_cog, data)


def test_zarr_store_accepts_writes_by_path(tmp_path, make_spec):
    """Other processes (Dask workers) write by path; the owning sink commits."""
    spec = make_spec(grid=GeoBox((64, 96), UTM.transform, UTM.crs), count=1, block=32)
    data = coded(spec)
    with open_sink(tmp_path / "workers.zarr", spec) as sink:
        write_region(sink.store, slice(0, 32), slice(0, 96), data[:, :32])  # type: ignore[attr-defined]
        write_region(sink.store, slice(32, 64), slice(0, 96), data[:, 32:])  # type: ignore[attr-defined]
    np.testing.assert_array_equal(read_zarr(tmp_path / "workers.zarr", mask_and_scale=False), data)


def test_zarr_refuses_rotated_grid(tmp_path, make_spec):
    rotated = GeoBox((10, 10), Affine.rotation(10) @ Affine.scale(10, -10), "EPSG:32633")
    with pytest.raises(OptionError, match="rotated"):
        open_sink(tmp_path / "r.zarr", make_spec(grid=rotated))
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- atomicity


@pytest.fixture(params=[".tif", ".zarr"])
def suffix(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def small_spec(make_spec) -> OutputSpec:
    return make_spec(grid=GeoBox((40, 50), UTM.transform, UTM.crs), count=2, block=16)


def _existing(path: Path, spec: OutputSpec) -> dict[str, bytes]:
    """Write a first output at ``path`` (all 7s) and return its bytes."""
    with open_sink(path, spec) as sink:
        sink.write(slice(0, 40), slice(0, 50), np.full(spec.shape, 7, dtype=spec.dtype))
    return snapshot(path)


def _read_any(path: Path) -> np.ndarray:
    if path.suffix == ".zarr":
        return read_zarr(path, mask_and_scale=False).values
    with rasterio.open(path) as src:
        return src.read()


def test_existing_destination_is_refused_and_untouched(tmp_path, small_spec, suffix):
    destination = tmp_path / f"out{suffix}"
    before = _existing(destination, small_spec)
    with pytest.raises(OutputError, match="already exists; pass --overwrite to replace it") as err:
        open_sink(destination, small_spec)
    assert str(destination) in str(err.value)
    assert snapshot(destination) == before
    assert leftovers(tmp_path) == []


def test_overwrite_replaces_only_at_commit(tmp_path, small_spec, suffix):
    destination = tmp_path / f"out{suffix}"
    before = _existing(destination, small_spec)
    new = coded(small_spec)
    sink = open_sink(destination, small_spec, overwrite=True)
    sink.write(slice(0, 40), slice(0, 50), new)
    assert snapshot(destination) == before  # still the old output while writing
    assert sink.commit() == destination.absolute()
    np.testing.assert_array_equal(_read_any(destination), new)
    assert leftovers(tmp_path) == []


def test_a_destination_written_while_the_sink_was_open_is_not_replaced(tmp_path, small_spec, suffix):
    """Another program (or another geosr process) wrote the destination after open_sink checked
    it: the commit replaced it without overwrite (a Zarr store; a COG whose build took long)."""
    destination = tmp_path / f"out{suffix}"
    sink = open_sink(destination, small_spec)
    sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
    before = _existing(destination, small_spec)
    with pytest.raises(OutputError, match="already exists; pass --overwrite to replace it"):
        sink.commit()
    assert snapshot(destination) == before
    assert leftovers(tmp_path) == []


def test_committed_output_is_synced_to_disk(tmp_path, small_spec, suffix, monkeypatch):
    """A run deletes the state it could resume from once the output is committed, so a
    machine crash after that must not find the output empty or cut short: every file
    of it, and the directory that names it, went through fsync before commit returned.
    The real fsync runs; the spy only records what it synced."""
    synced: set[tuple[int, int]] = set()
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        real_fsync(fd)
        found = os.fstat(fd)
        synced.add((found.st_dev, found.st_ino))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    destination = tmp_path / f"out{suffix}"
    sink = open_sink(destination, small_spec)
    sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
    sink.commit()
    monkeypatch.undo()
    everything = [destination, tmp_path, *destination.rglob("*")]
    assert len(everything) >= (2 if suffix == ".tif" else 10)
    not_synced = [p for p in everything if (p.stat().st_dev, p.stat().st_ino) not in synced]
    assert not_synced == []


@pytest.fixture
def datasynced(monkeypatch) -> list[os.stat_result]:
    """What every ``os.fdatasync`` call meanwhile synced, as ``os.fstat`` saw it then (the real
    sync runs)."""
    synced: list[os.stat_result] = []
    real = os.fdatasync

    def recording(fd: int) -> None:
        real(fd)
        synced.append(os.fstat(fd))

    monkeypatch.setattr(os, "fdatasync", recording)
    return synced


def test_a_file_being_written_is_synced_as_it_grows_and_no_longer_after(tmp_path, datasynced):
    """A COG of 11 GB took 6 s to sync after GDAL wrote it on an H200 machine: synced as it
    grows, the disk writes while GDAL compresses.  None runs once the block is left, or for
    a file not there yet."""
    path = tmp_path / "growing.tif"
    with atomic.written_back_meanwhile(path, every=0.02):
        time.sleep(0.1)  # not there yet: the thread waits for it
        with path.open("wb") as f:
            for _ in range(20):
                f.write(b"x" * 4096)
                f.flush()
                time.sleep(0.01)
    after = len(datasynced)
    time.sleep(0.1)
    sizes = [found.st_size for found in datasynced]
    assert len(sizes) == after >= 2
    assert sizes == sorted(sizes) and sizes[0] < 20 * 4096


def test_a_directory_being_written_has_each_changed_file_synced_once_per_change(tmp_path, datasynced):
    """A Zarr output is its run store, synced whole before its rename: synced as its chunks
    come (renamed into place, as zarr writes them), a file again only once it changed."""
    store = tmp_path / "out.zarr"
    (store / "b").mkdir(parents=True)
    first, second = store / "a", store / "b" / "0.0"
    first.write_bytes(b"1")
    with atomic.written_back_meanwhile(store, every=0.02):
        time.sleep(0.15)
        (tmp_path / "chunk").write_bytes(b"22")
        (tmp_path / "chunk").replace(second)
        time.sleep(0.15)
        with first.open("ab") as f:  # changed: synced again
            f.write(b"33")
        time.sleep(0.15)
    time.sleep(0.1)
    inodes = [found.st_ino for found in datasynced]
    assert inodes.count(second.stat().st_ino) == 1
    assert inodes.count(first.stat().st_ino) >= 2


def test_a_zarr_outputs_store_is_synced_as_its_tiles_come_and_a_cogs_is_not(
    make_raster, tmp_path, monkeypatch
):
    """A COG's run store is read back and removed, so only a Zarr output's is synced as it
    is written (the spy wraps the real writeback, which runs)."""
    import geosr.api

    synced: list[Path] = []
    real = geosr.api.written_back_meanwhile

    def recording(path: Path, *args, **kwargs):
        synced.append(path)
        return real(path, *args, **kwargs)

    monkeypatch.setattr(geosr.api, "written_back_meanwhile", recording)
    scene = make_raster("in.tif", width=96, height=64)
    geosr.upscale_file(scene, tmp_path / "out.tif", scale=2, model="bicubic")
    assert synced == []
    geosr.upscale_file(scene, tmp_path / "out.zarr", scale=2, model="bicubic")
    assert len(synced) == 1 and synced[0].name.endswith(".zarr") and not synced[0].exists()


def test_a_large_tree_is_removed_by_threads_whole(tmp_path, monkeypatch):
    """A run store of tens of thousands of chunk files took one thread 12 s to remove on an
    H200 machine: past a count its files are unlinked in threads, then its folders go."""
    monkeypatch.setattr(atomic, "REMOVAL_THREADED_FILES", 10)
    unlinked_by: set[str] = set()
    real = Path.unlink

    def recording(path: Path, missing_ok: bool = False) -> None:
        unlinked_by.add(threading.current_thread().name)
        real(path, missing_ok=missing_ok)

    monkeypatch.setattr(Path, "unlink", recording)
    tree = tmp_path / "store"
    for level in range(3):
        (tree / f"level{level}").mkdir(parents=True)
        for key in range(20):
            (tree / f"level{level}" / f"0.{key}.0").write_bytes(b"c" * 100)
    (tree / ".zgroup").write_text("{}")
    atomic.remove_path(tree)
    assert not tree.exists() and list(tmp_path.iterdir()) == []
    assert unlinked_by and all(name.startswith("geosr-remove") for name in unlinked_by)


def test_failed_overwrite_keeps_old_output(tmp_path, small_spec, suffix):
    destination = tmp_path / f"out{suffix}"
    before = _existing(destination, small_spec)
    with (
        pytest.raises(RuntimeError, match="model crashed"),
        open_sink(destination, small_spec, overwrite=True) as sink,
    ):
        sink.write(slice(0, 16), slice(0, 16), coded(small_spec)[:, :16, :16])
        raise RuntimeError("model crashed")
    assert snapshot(destination) == before
    assert leftovers(tmp_path) == []


def test_abort_leaves_nothing(tmp_path, small_spec, suffix):
    sink = open_sink(tmp_path / f"out{suffix}", small_spec)
    assert leftovers(tmp_path), "the sink should be writing a temporary"
    sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
    sink.abort()
    sink.abort()  # idempotent
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="already committed or aborted"):
        sink.write(slice(0, 1), slice(0, 1), coded(small_spec)[:, :1, :1])


def test_exception_inside_with_leaves_nothing(tmp_path, small_spec, suffix):
    with pytest.raises(KeyboardInterrupt), open_sink(tmp_path / f"out{suffix}", small_spec) as sink:
        sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_dropped_sink_removes_its_temporaries(tmp_path, small_spec, suffix):
    sink = open_sink(tmp_path / f"out{suffix}", small_spec)
    sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
    del sink
    gc.collect()
    assert list(tmp_path.iterdir()) == []


def test_output_gets_default_permissions(tmp_path, small_spec, suffix):
    """mkstemp's private 0600 must not reach the output through the rename."""
    destination = tmp_path / f"out{suffix}"
    with open_sink(destination, small_spec) as sink:
        sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
    umask = os.umask(0o022)
    os.umask(umask)
    expected = (0o777 if destination.is_dir() else 0o666) & ~umask
    assert destination.stat().st_mode & 0o777 == expected


def test_commit_twice_is_an_error(tmp_path, small_spec, suffix):
    sink = open_sink(tmp_path / f"out{suffix}", small_spec)
    sink.write(slice(0, 40), slice(0, 50), coded(small_spec))
    sink.commit()
    with pytest.raises(OutputError, match="already committed"):
        sink.commit()


# --------------------------------------------------------------------------- checks up front


def test_unsupported_suffix(tmp_path, small_spec):
    with pytest.raises(OptionError, match=r"out\.png.*'\.png'.*\.tif, \.tiff, \.zarr"):
        open_sink(tmp_path / "out.png", small_spec)


def test_a_small_file_that_cannot_be_made_there_is_one_line(tmp_path):
    """Where the temporary cannot be made (a read-only file system: EROFS; a file in place
    of the folder: ENOTDIR), removing it failed too, and that error was a traceback in place
    of the line (geosr compare -o ro_mount/c.png)."""
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match=r"c\.png: cannot write the PNG \(\[Errno 20\] Not a directory"):
        atomic.write_small_file(tmp_path / "afile" / "c.png", lambda p: p.write_bytes(b"png"), "PNG")


def test_missing_parent_directory(tmp_path, small_spec, suffix):
    with pytest.raises(OutputError, match="does not exist; create it first"):
        open_sink(tmp_path / "nope" / f"out{suffix}", small_spec)


def test_parent_is_a_file(tmp_path, small_spec):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="is not a directory"):
        open_sink(tmp_path / "file" / "out.tif", small_spec)


def test_a_cog_named_with_quotes_and_backslashes_is_built(make_raster, tmp_path):
    """GDAL's ZARR:"path":/array name of the run store ended at the path's first '"': the
    COG build failed ('No such file or directory'), said to free space and resume, and
    the resume failed the same way."""
    import geosr

    dst = tmp_path / 'scène "1" \\ b.tif'
    geosr.upscale_file(make_raster(height=40, width=40), dst, scale=2, model="bicubic", tile=16)
    assert cog_validate(str(dst), quiet=True)[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif", dst.name]


def test_an_output_name_too_long_for_its_temporaries_is_refused_before_any_tile(make_raster, tmp_path):
    """A 237-byte name (from a long input's default output) ran every tile, then failed
    the COG build ('File name too long') with advice to free space and resume, which
    failed the same way: the temporaries beside the output add 41 bytes to its name."""
    import geosr

    src = make_raster(height=40, width=40)
    longest = tmp_path / ("a" * (255 - atomic.SIBLING_NAME_EXTRA - 4) + ".tif")
    geosr.upscale_file(src, longest, scale=2, model="bicubic", tile=16)
    assert cog_validate(str(longest), quiet=True)[0]
    too_long = tmp_path / ("b" * (255 - atomic.SIBLING_NAME_EXTRA - 3) + ".tif")
    with pytest.raises(OutputError, match=r"its name is 215 bytes.*at most 214 bytes with dst$"):
        geosr.upscale_file(src, too_long, scale=2, model="bicubic", tile=16)
    assert sorted(p.name for p in tmp_path.iterdir()) == [longest.name, "scene.tif"]


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root writes into read-only directories; covered by the os.access test below",
)
def test_read_only_directory(tmp_path, small_spec, suffix):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(OutputError, match="not writable"):
            open_sink(locked / f"out{suffix}", small_spec)
    finally:
        locked.chmod(0o755)


def test_not_writable_per_os_access(tmp_path, small_spec, monkeypatch):
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    with pytest.raises(OutputError, match=r"not writable; fix its permissions"):
        open_sink(tmp_path / "out.tif", small_spec)


def test_a_read_only_file_system_is_named_with_its_fix(tmp_path, small_spec, monkeypatch):
    # A read-only mount (root sees it through os.access too) was "not writable; fix its
    # permissions", which no chmod can do.
    real = os.statvfs(tmp_path)
    mounted_read_only = os.statvfs_result((*real[:8], real.f_flag | os.ST_RDONLY, real.f_namemax))
    monkeypatch.setattr(atomic.os, "access", lambda path, mode: False)
    monkeypatch.setattr(atomic.os, "statvfs", lambda path: mounted_read_only)
    with pytest.raises(
        OutputError, match=r"is on a read-only file system; choose an output path on a writable"
    ):
        open_sink(tmp_path / "out.tif", small_spec)
    assert list(tmp_path.iterdir()) == []


def test_temporary_cannot_be_created(tmp_path, small_spec, suffix, monkeypatch):
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    monkeypatch.setattr(atomic.tempfile, "mkdtemp", refuse)
    with pytest.raises(OutputError, match=r"creating a temporary file in .* failed \(Permission denied\)"):
        open_sink(tmp_path / f"out{suffix}", small_spec)


def test_write_rejects_mismatched_windows(tmp_path, small_spec, suffix):
    data = coded(small_spec)
    with open_sink(tmp_path / f"out{suffix}", small_spec) as sink:
        with pytest.raises(ValueError, match="not a window inside"):
            sink.write(slice(30, 41), slice(0, 50), data[:, 30:41])
        with pytest.raises(ValueError, match="does not fill the window"):
            sink.write(slice(0, 10), slice(0, 10), data[:, :10, :11])
        with pytest.raises(ValueError, match="dtype float32, expected uint16"):
            sink.write(slice(0, 10), slice(0, 10), data[:, :10, :10].astype("float32"))
        sink.abort()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 0}, "band count"),
        ({"dtype": "complex64"}, "dtype 'complex64' is not supported"),
        ({"nodata": -1}, "not a valid uint16 value"),
        ({"nodata": float("nan")}, "not a valid uint16 value"),
        ({"dtype": "float32", "nodata": 1e40}, "does not fit in float32"),
        ({"descriptions": ("a",)}, "descriptions has 1 entries for 4 bands"),
        ({"colorinterp": ("red", "green", "blue", "purple")}, "unknown colour"),
        ({"block": 500}, "multiple of 16"),
        ({"zarr_format": 4}, "--zarr-format 4 is not supported; use 2"),
        ({"zarr_format": "2"}, "--zarr-format '2' is not supported; use the number 2"),
    ],
)
def test_spec_validation(make_spec, kwargs, message):
    with pytest.raises(OptionError, match=message):
        make_spec(**kwargs)


def test_spec_normalises_dtype(make_spec):
    assert make_spec(dtype=np.uint16).dtype == "uint16"


# --------------------------------------------------------------------------- full disk

_DISK_FULL_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, signal, sys
    import numpy as np
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from geosr.errors import OutputError
    from geosr.io.sink import OutputSpec, open_sink

    # Without this, exceeding RLIMIT_FSIZE kills the process (SIGXFSZ) instead of
    # failing the write with EFBIG, which is what a full disk looks like.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    directory, suffix, limit, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    n = 1024
    spec = OutputSpec(
        grid=GeoBox((n, n), Affine(10, 0, 500000, 0, -10, 6000000), "EPSG:32633"),
        count=3, dtype="uint16", nodata=None,
    )
    noise = np.random.default_rng(0).integers(0, 65535, (3, step, n), dtype="uint16")
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    result = {"error": None}
    try:
        with open_sink(os.path.join(directory, "out" + suffix), spec) as sink:
            for row in range(0, n, step):  # incompressible: 6 MiB on disk
                sink.write(slice(row, row + step), slice(0, n), noise)
    except OutputError as exc:
        result["error"] = str(exc)
    result["left"] = sorted(os.listdir(directory))
    print(json.dumps(result))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("suffix", "limit", "step"),
    [
        # Whole tile rows: GDAL writes tiles during write(), which raises.
        pytest.param(".tif", 2_000_000, 512, id="cog-in-write"),
        # Half tile rows: the tiles go out at the final flush, whose errors rasterio
        # does not raise; the tile check at commit catches them.
        pytest.param(".tif", 2_000_000, 256, id="cog-at-flush"),
        # The 6 MiB intermediate fits; the COG (plus overviews) would not.
        pytest.param(".tif", 7_000_000, 512, id="cog-at-commit"),
        # Zarr chunks are separate small files: a limit below one chunk.
        pytest.param(".zarr", 100_000, 256, id="zarr"),
    ],
)
def test_full_disk_gives_clear_error_and_no_leftovers(tmp_path, suffix, limit, step):
    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("RLIMIT_FSIZE and SIGXFSZ exist on POSIX systems only")
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL_SCRIPT, str(tmp_path), suffix, str(limit), str(step)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["error"] is not None, "no OutputError"
    assert result["error"].startswith(f"cannot write {tmp_path / ('out' + suffix)}")
    assert "free" in result["error"]
    assert result["left"] == []


def test_a_write_error_crosses_processes_and_is_told_again_with_the_space_free_now(tmp_path) -> None:
    """A Dask worker's failed store write reaches the client pickled: its line as the worker
    told it (the free space of the worker's disk), and the parts that telling it again needs
    (its constructor takes them, not the line)."""
    import errno
    import pickle

    from geosr.io.atomic import WriteError, write_failure

    cause = OSError(errno.ENOSPC, "No space left on device")
    error = write_failure(tmp_path / "out.tif", cause, 2**40)
    told = pickle.dumps(error)
    os.rmdir(tmp_path)  # the client does not see the worker's folder: the line is kept as told
    copy = pickle.loads(told)
    assert isinstance(copy, WriteError) and str(copy) == str(error) and "are free in" in str(copy)
    assert str(error).startswith(f"cannot write {tmp_path / 'out.tif'}: No space left on device; the output")
    assert str(error).endswith("free some space or write to another directory")
    again = copy.told_now()  # the space itself, measured anew: test_resume's small_disk
    assert isinstance(again, WriteError) and (again.destination, again.needed) == (
        tmp_path / "out.tif",
        2**40,
    )


def test_a_failed_cog_build_measures_free_space_after_removing_its_temporaries(
    tmp_path, make_spec, monkeypatch
):
    """The message's "N are free" was taken with the half-written COG still on disk
    (20 KiB free where 8 MiB were, once it was gone)."""
    from geosr.io import cog

    found: list[list[str]] = []
    real = cog.describe_write_failure

    def describe(destination: Path, exc: BaseException, needed: int | None) -> str:
        found.append(sorted(p.name for p in destination.parent.iterdir()))
        return real(destination, exc, needed)

    monkeypatch.setattr(cog, "describe_write_failure", describe)
    spec = make_spec(grid=GeoBox((64, 64), UTM.transform, UTM.crs), count=1)
    missing = tmp_path.parent / f"{tmp_path.name}-missing.vrt"  # GDAL fails the copy: no source
    with pytest.raises(OutputError, match="free"):
        cog.cog_from_source(missing, tmp_path / "out.tif", spec, source_bytes=0, overwrite=False)
    assert found == [[]]  # no temporary left when the free space was read


@pytest.mark.parametrize("room", ["exact", "one byte short"])
def test_a_raw_run_store_is_made_only_where_its_padded_chunks_fit_twice(tmp_path, make_spec, room):
    """Edge chunks are stored whole: a 640^2 output in chunks of 512 stores 1024^2 (and its
    overview levels, padded likewise).  Under a real `ulimit -f` with room for that store
    twice (the store, then the COG build's free space) the store is raw; one byte short, it
    is LZ4 (a raw store there had the COG build refuse it after all the compute)."""
    import resource

    from geosr.io.run_store import create_run_store

    spec = make_spec(grid=GeoBox((640, 640), UTM.transform, UTM.crs), count=1)
    padded = (1024 * 1024 + 512 * 512) * 2  # level 0 and overview 1 (320^2 in one 512^2 chunk), uint16
    limit = 2 * padded - (room == "one byte short")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        create_run_store(
            tmp_path / "store.zarr", spec, (512, 512), for_zarr_output=False, destination=tmp_path / "out.tif"
        )
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    compressor = json.loads((tmp_path / "store.zarr" / VARIABLE / ".zarray").read_text())["compressor"]
    if room == "exact":
        assert compressor is None
    else:
        assert compressor is not None and compressor["cname"] == "lz4"


@pytest.mark.parametrize("through", ["sink", "run"])
def test_a_zarr_output_drops_the_sidecars_of_what_it_replaced(tmp_path, make_spec, make_raster, through):
    """GDAL keeps a store's statistics and more in ``out.zarr.aux.xml`` and reads them before the
    store's own: a COG output took its stale sidecars away, a Zarr output left them there."""
    destination = tmp_path / "out.zarr"
    for suffix in (".aux.xml", ".ovr"):
        (tmp_path / f"out.zarr{suffix}").write_text("<PAMDataset>of an earlier output</PAMDataset>")
    if through == "sink":
        spec = make_spec(grid=GeoBox((40, 50), UTM.transform, UTM.crs), count=1, block=16)
        with open_sink(destination, spec) as sink:
            write_all(sink, coded(spec))
    else:
        src = make_raster("in.tif", count=1, height=24, width=24)
        geosr.upscale_file(src, destination, scale=2, model="bicubic")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out.zarr"]


def test_an_output_name_too_long_for_its_quicklook_is_refused_in_one_line(make_raster, tmp_path):
    """A 249-byte output name with --stac --quicklook raised OSError 'File name too long' (a
    traceback) looking for an earlier quicklook of 255 + 4 bytes, before the name's own check."""
    import geosr

    src = make_raster(height=40, width=40)
    dst = tmp_path / ("d" * 245 + ".tif")
    with pytest.raises(OutputError, match=r"its name is 249 bytes"):
        geosr.upscale_file(src, dst, scale=2, model="bicubic", stac=True, quicklook=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]
