"""geosr.upscale on rioxarray/dask DataArrays: lazy, output-block chunks, same values as geosr run."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import rasterio
import rioxarray
import xarray as xr
from affine import Affine

import geosr
from geosr.errors import GeosrWarning, InputError
from tests.conftest import warnings_said


def test_open_rasterio_chunks_default_model_to_raster_equals_run(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=1, height=48, width=40, nodata=0)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=4, tile=24)
    lazy = geosr.upscale(rioxarray.open_rasterio(src, chunks={"x": 24, "y": 24}), scale=4, tile=24)
    assert isinstance(lazy.data, da.Array)
    assert lazy.chunks[1][0] == 96 and lazy.chunks[2][0] == 96  # output blocks = tile x scale
    lazy.rio.to_raster(tmp_path / "lazy.tif")
    with rasterio.open(ran) as a, rasterio.open(tmp_path / "lazy.tif") as b:
        assert a.transform == b.transform and a.crs == b.crs
        assert np.abs(a.read().astype(int) - b.read().astype(int)).max() <= 1


def test_output_transform_is_the_inputs_to_the_last_bit(make_raster, tmp_path: Path) -> None:
    """The transform comes from the GeoTransform stored with the array, as geosr run's from the
    file.  Before, it was recomputed from the rounded pixel centres: a 30 x 7.3 m pixel came
    out as 15 x 3.6500000000029567 m; a slice still gets its own (recomputed) transform."""
    from affine import Affine

    transform = Affine(30.0, 0.0, 335440.0, 0.0, -7.3, 5866490.0)
    src = make_raster(count=1, height=40, width=48, transform=transform)
    whole = rioxarray.open_rasterio(src)
    out = geosr.upscale(whole, scale=2, model="bicubic")
    assert out.rio.transform() == transform @ Affine.scale(0.5)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(ran) as f:
        assert out.rio.transform() == f.transform
    part = geosr.upscale(whole.isel(x=slice(8, 40), y=slice(4, 36)), scale=2, model="bicubic")
    expected = transform @ Affine.translation(8, 4) @ Affine.scale(0.5)
    assert part.rio.transform().almost_equals(expected, precision=1e-9)


def test_open_zarr_in_to_zarr_out(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=2, height=40, width=40, nodata=0)
    store = tmp_path / "in.zarr"
    rioxarray.open_rasterio(src).to_dataset(name="band_data").to_zarr(store, zarr_format=3)
    ran = geosr.upscale_file(store, tmp_path / "run.zarr", scale=2, model="bicubic", tile=32)
    data = xr.open_zarr(store, decode_coords="all")["band_data"]
    assert isinstance(data.data, da.Array)
    lazy = geosr.upscale(data, scale=2, model="bicubic", tile=32)
    lazy.to_dataset(name="band_data").to_zarr(tmp_path / "lazy.zarr", zarr_format=3)
    a = xr.open_zarr(ran, decode_coords="all")["band_data"]
    b = xr.open_zarr(tmp_path / "lazy.zarr", decode_coords="all")["band_data"]
    assert a.rio.transform() == b.rio.transform() and a.rio.crs == b.rio.crs
    assert np.abs(a.values.astype(int) - b.values.astype(int)).max() <= 1


def test_time_series_on_lat_lon_keeps_its_names_dates_and_gets_wgs84() -> None:
    """A CF (time, lat, lon) cube without a CRS, as OLCI and other L3 products come:
    read as EPSG:4326 like a Zarr input, and the dates and dimension names carry over."""
    rng = np.random.default_rng(3)
    times = np.array(["2017-01-16", "2017-01-25"], dtype="datetime64[ns]")
    lat = 52.5 - 0.0025 * (np.arange(40) + 0.5)
    lon = 0.0025 * (np.arange(48) + 0.5)
    cube = xr.DataArray(
        rng.random((2, 40, 48)).astype("float32"),
        dims=("time", "lat", "lon"),
        coords={"time": times, "lat": lat, "lon": lon},
        name="conc_chl",
    )
    out = geosr.upscale(cube, scale=2, model="bicubic", tile=24)
    assert out.dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(out["time"].values, times)
    assert out.rio.crs == "EPSG:4326"
    assert out.rio.transform() == cube.rio.transform() @ cube.rio.transform().scale(0.5)
    np.testing.assert_allclose(out["lon"].values[:2], [0.000625, 0.001875])
    mean = out.mean(dim=("lat", "lon")).values  # bicubic keeps each date's mean
    np.testing.assert_allclose(mean, cube.mean(dim=("lat", "lon")).values, atol=2e-3)


def test_rotated_grid_keeps_its_transform_and_gets_pixel_index_coordinates(make_raster) -> None:
    """rioxarray gives a rotated raster pixel indices as x/y (no 1-D coordinates describe
    it) and keeps the transform; so does the output, at the output's pixels: before, its
    x/y were map coordinates that ignored the rotation."""
    from affine import Affine

    rotated = Affine(9.8, 1.7, 500000.0, 1.7, -9.8, 4000000.0)
    src = make_raster(count=1, height=30, width=40, transform=rotated)
    da_in = rioxarray.open_rasterio(src)
    out = geosr.upscale(da_in, scale=2, model="bicubic")
    assert out.rio.transform() == rotated @ Affine.scale(0.5)
    np.testing.assert_array_equal(out["x"].values, np.arange(80))
    np.testing.assert_array_equal(out["y"].values, np.arange(60))


def test_arrays_and_tiles_under_the_halo_give_the_file_jobs_pixels(make_raster, tmp_path: Path) -> None:
    """Before, a side of at most the halo (15 px for the default model) and a tile under
    it failed deep in Dask (chunk count mismatches), while upscale_file ran them."""
    src = make_raster(count=1, height=100, width=130, nodata=0)
    whole = rioxarray.open_rasterio(src)
    small = tmp_path / "small.tif"
    whole.isel(y=slice(0, 12), x=slice(0, 12)).rio.to_raster(small)
    cases = [(small, {}), (src, {"tile": 8})]  # a 12 px side (dask's pad mirrored it once); tile 8
    for path, options in cases:
        lazy = geosr.upscale(rioxarray.open_rasterio(path), scale=2, **options).values
        ran = geosr.upscale_file(path, tmp_path / f"{path.stem}_{len(options)}.tif", scale=2, **options)
        with rasterio.open(ran) as out:
            np.testing.assert_array_equal(lazy, out.read())
    strip = geosr.upscale(whole.isel(y=slice(0, 3)), scale=2, model="bicubic")
    assert strip.shape == (1, 6, 260)


def test_output_chunks_are_regular_for_to_zarr(make_raster, tmp_path: Path) -> None:
    """A remainder under the halo (130 = 2 x 64 + 2) rode on the last chunk, which made
    it larger than the first: to_zarr refused the result (and left a partial store)."""
    src = make_raster(count=1, height=100, width=130, nodata=0)
    sr = geosr.upscale(rioxarray.open_rasterio(src, chunks=True), scale=2, model="bicubic", tile=64)
    assert sr.chunks[2] == (128, 128, 4)
    sr.to_dataset(name="band_data").to_zarr(tmp_path / "sr.zarr", zarr_format=3)
    np.testing.assert_array_equal(xr.open_zarr(tmp_path / "sr.zarr")["band_data"].values, sr.values)


def test_output_chunks_are_tile_times_scale_under_the_halo_too(make_raster) -> None:
    """A tile under the model's halo (15 px) is rounded up for Dask's overlap: the output's
    blocks followed, 30 px at x2 for tile=8, where the README says tile x scale (16)."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=40, width=36))
    sr = geosr.upscale(data, scale=2, tile=8)
    assert sr.chunks[1:] == ((16,) * 5, (16,) * 4 + (8,))
    np.testing.assert_array_equal(sr.values, geosr.upscale(data, scale=2, tile=16).values)


def test_the_result_keeps_the_inputs_name_even_none(make_raster, tmp_path: Path) -> None:
    """open_rasterio gives an unnamed DataArray; its result was named after a dask task
    ('_upscale_block-<token>'), so the README's sr.to_zarr(...) wrote a variable of that name."""
    src = make_raster(count=1, height=40, width=40)
    sr = geosr.upscale(rioxarray.open_rasterio(src, chunks=True), scale=2, model="bicubic")
    assert sr.name is None
    sr.to_zarr(tmp_path / "sr.zarr", zarr_format=3)
    written = xr.open_zarr(tmp_path / "sr.zarr", decode_coords="all")
    assert list(written.data_vars) == ["__xarray_dataarray_variable__"]  # xarray's name for None
    named = rioxarray.open_rasterio(src, chunks=True).rename("refl")
    assert geosr.upscale(named, scale=2, model="bicubic").name == "refl"


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (lambda a: (a + 1j * a).astype("complex64"), "complex64 is not supported"),
        (lambda a: a > 0, "bool is not supported"),
        (lambda a: a.transpose("y", "x", "band"), "transpose"),
        (lambda a: a.values, "not ndarray"),
        (lambda a: a.to_dataset(name="v"), "ds['v']"),
        (lambda a: a.isel(x=slice(0, 0)), "empty"),
    ],
)
def test_what_upscale_cannot_take_is_one_clear_error(make_raster, make, says: str) -> None:
    """Before, complex pixels lost their imaginary part silently, and the others failed
    deep in numpy, Dask or rioxarray."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=20, width=20))
    with pytest.raises(InputError) as err:
        geosr.upscale(make(data), scale=2, model="bicubic")
    assert says in str(err.value)


@pytest.mark.parametrize("model", ["bicubic", None])
def test_a_masked_read_is_written_back_as_the_file_job_writes_it(make_raster, tmp_path: Path, model) -> None:
    """open_rasterio(masked=True) gives floats with NaN: the result lost the file's dtype
    and nodata (to_raster wrote float32 with NaN, not uint16 with 0), and kept the model's
    unrounded, unclipped values."""
    src = make_raster(count=1, height=60, width=50, nodata=0)
    sr = geosr.upscale(rioxarray.open_rasterio(src, masked=True), scale=2, model=model)
    sr.rio.to_raster(tmp_path / "lazy.tif")
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model=model)
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        assert (lazy.dtypes, lazy.nodata) == (run.dtypes, run.nodata) == (("uint16",), 0)
        np.testing.assert_array_equal(lazy.read(), run.read())


def test_coordinates_not_evenly_spaced_are_refused(tmp_path: Path) -> None:
    """As for a store read by path: before, geosr.upscale spread x coordinates with a 5 m
    jump evenly (10.06 m pixels) and returned a misplaced result without a word."""
    y = 5866490.0 - 10.0 * (np.arange(16) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(24) + 0.5)
    x[12:] += 5.0
    values = np.random.default_rng(8).random((16, 24)).astype(np.float32)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name="v").rio.write_crs(32633)
    with pytest.raises(InputError, match="x coordinates of 'v' are not evenly spaced"):
        geosr.upscale(da, scale=2, model="bicubic")


def test_a_chunk_of_nodata_alone_is_not_given_to_the_model(make_raster) -> None:
    """As the file job skips such tiles: the output is nodata there whatever the model says."""
    from geosr.orchestrate.lazy import cached_predictor

    data = np.full((1, 32, 96), 0, np.uint16)
    data[0, :, 48:] = 700  # the left half is nodata
    chunked = rioxarray.open_rasterio(make_raster(data=data, nodata=0), chunks={"x": 24, "y": 32})
    calls = []
    model = cached_predictor("bicubic", 1, 2, "auto", "auto").model  # the one upscale uses
    hook = model.register_forward_hook(lambda _, inputs, __: calls.append(len(inputs[0])))
    try:
        out = geosr.upscale(chunked, scale=2, model="bicubic", tile=24).values
    finally:
        hook.remove()
    assert (out[:, :, :96] == 0).all() and (out[:, :, 100:] == 700).all()
    # Images the model saw: of 8 tiles (2 x 4 of 24 px), as many as hold data, one to a
    # call in bf16 and two (in tasks of two tiles) in fp32.
    assert out.shape == (1, 64, 192) and sum(calls) == 4


def test_a_masked_read_of_a_file_without_nodata_is_written_back_as_the_file_job_writes_it(
    make_raster, tmp_path: Path
) -> None:
    """open_rasterio(masked=True) gives floats for a file without nodata too: the result lost
    the file's dtype (to_raster wrote float32, not uint8) and kept bicubic's overshoot, 54.7
    beyond the uint8 range, where the file job clips."""
    src = make_raster(count=1, height=40, width=48, dtype="uint8")
    sr = geosr.upscale(rioxarray.open_rasterio(src, masked=True, chunks=True), scale=2, model="bicubic")
    sr.rio.to_raster(tmp_path / "lazy.tif")
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        assert lazy.dtypes == run.dtypes == ("uint8",)
        np.testing.assert_array_equal(lazy.read(), run.read())


def test_a_decoded_read_is_super_resolved_in_its_stored_integers(make_raster, tmp_path: Path) -> None:
    """open_rasterio(mask_and_scale=True) (or xr.open_zarr) of int16 DN with scale_factor
    0.0001 gives reflectances of 0.1-0.3: each was rounded to an int16 as if it were a DN,
    so the whole result was 0 (to_raster wrote 0 DN everywhere valid)."""
    src = make_raster(count=1, height=40, width=48, dtype="int16", nodata=-9999)
    with rasterio.open(src, "r+") as f:
        f.scales = (0.0001,)
    sr = geosr.upscale(rioxarray.open_rasterio(src, mask_and_scale=True), scale=2, model="bicubic")
    assert 0.05 < float(sr.min()) < float(sr.max()) < 0.4  # reflectance, as read
    sr.rio.to_raster(tmp_path / "lazy.tif")
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        assert (lazy.dtypes, lazy.nodata, lazy.scales) == (run.dtypes, run.nodata, run.scales)
        np.testing.assert_array_equal(lazy.read(), run.read())


def test_a_2d_input_gives_a_2d_result(make_raster) -> None:
    """Before, a (y, x) DataArray came back as (band, y, x) with a band of one, a dimension
    it never had: sr - lr.interp_like(sr) and sr.plot.imshow() then failed or broadcast."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=20, width=30, nodata=0)).squeeze(
        "band", drop=True
    )
    sr = geosr.upscale(data, scale=2, model="bicubic")
    assert sr.dims == ("y", "x") and sr.shape == (40, 60) and sr.rio.nodata == 0
    assert sr.rio.transform() == data.rio.transform() @ data.rio.transform().scale(0.5)
    np.testing.assert_array_equal(
        sr.values, geosr.upscale(data.expand_dims("band"), scale=2, model="bicubic")[0]
    )


def test_attributes_that_describe_the_inputs_grid_are_not_carried(make_raster, tmp_path: Path) -> None:
    """stackstac's resolution and spec, xarray's old transform and res: the 5 m result said
    resolution 10.0, and to_raster wrote that as a tag of the output; other attributes stay."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=20, width=20))
    data.attrs.update(resolution=10.0, res=(10.0, 10.0), transform=tuple(data.rio.transform())[:6])
    data.attrs["units"] = "DN"
    sr = geosr.upscale(data, scale=2, model="bicubic")
    assert sr.attrs["units"] == "DN" and not {"resolution", "res", "transform"} & set(sr.attrs)
    sr.rio.to_raster(tmp_path / "sr.tif")
    with rasterio.open(tmp_path / "sr.tif") as f:
        assert "resolution" not in f.tags() and f.res == (5.0, 5.0)


@pytest.mark.parametrize(
    ("dims", "fix"), [(("band", "x", "y"), "('band', 'y', 'x')"), (("x", "y"), "('y', 'x')")]
)
def test_rows_along_x_are_refused_with_the_transpose_that_fixes_them(make_raster, dims, fix: str) -> None:
    """(band, x, y) was taken for (band, y, x): x coordinates read as rows, and a result
    came back with a transform of -5 m pixels, half a pixel off, without a word."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=20, width=30))
    data = data.transpose(*dims) if len(dims) == 3 else data[0].transpose(*dims)
    with pytest.raises(InputError, match=re.escape(f"got {dims}: transpose first, data.transpose{fix}")):
        geosr.upscale(data, scale=2, model="bicubic")


@pytest.mark.parametrize("nodata", [-1, 0.5, float("nan")])
def test_a_nodata_the_dtype_cannot_hold_is_one_clear_error(make_raster, nodata: float) -> None:
    """As geosr run refuses it: -1 for uint16 pixels was rioxarray's OverflowError, and NaN
    a ValueError ('cannot convert float NaN to integer') only once the result was computed."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=20, width=20))
    with pytest.raises(
        geosr.GeosrError, match=r"not a valid uint16 value; give nodata an integer in \[0, 65535\]"
    ):
        geosr.upscale(data, scale=2, model="bicubic", nodata=nodata).compute()


def test_scalar_coordinates_and_those_along_the_leading_dimension_carry_over() -> None:
    """Only the leading, y and x coordinates came back: the date of cube.isel(time=0), a
    platform, a cloud cover per date were dropped."""
    y = 5866000.0 - 10.0 * (np.arange(20) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(30) + 0.5)
    times = np.array(["2017-01-16", "2017-01-25"], dtype="datetime64[ns]")
    coords = {"time": times, "y": y, "x": x, "cloud": ("time", [0.1, 0.5]), "platform": "S2A"}
    values = np.random.default_rng(3).random((2, 20, 30)).astype("float32")
    cube = xr.DataArray(values, dims=("time", "y", "x"), coords=coords).rio.write_crs(32633)
    sr = geosr.upscale(cube, scale=2, model="bicubic")
    assert sr["cloud"].values.tolist() == [0.1, 0.5] and sr["platform"].item() == "S2A"
    one = geosr.upscale(cube.isel(time=1), scale=2, model="bicubic")
    assert one.dims == ("y", "x") and one["time"].values == times[1] and one["cloud"].item() == 0.5


def test_a_band_taken_alone_keeps_its_label(make_raster) -> None:
    """da.sel(band=2) holds its band as a scalar coordinate, which the result dropped (the date
    of cube.isel(time=0) stayed): bands super-resolved one at a time and xr.concat'ed along
    'band' came back without their labels."""
    data = rioxarray.open_rasterio(make_raster(count=2, height=20, width=24, nodata=0))
    parts = [geosr.upscale(data.sel(band=b), scale=2, model="bicubic") for b in (2, 1)]
    assert parts[0].dims == ("y", "x") and parts[0]["band"].item() == 2
    assert xr.concat(parts, dim="band")["band"].values.tolist() == [2, 1]


def test_a_file_not_yet_read_is_not_read_whole_by_the_call(make_raster, tmp_path: Path) -> None:
    """open_rasterio without chunks is lazy: the call read the whole file into memory (and
    left it loaded in the caller's DataArray), 288 MB at once for a 4 x 6000^2 uint16 scene;
    now it reads chunk by chunk, as for a dask-backed input, with the same pixels."""
    src = make_raster(count=1, height=60, width=50, nodata=0)
    data = rioxarray.open_rasterio(src)
    sr = geosr.upscale(data, scale=2, model="bicubic", tile=16)
    assert not data.variable._in_memory  # the sample went through dask chunks of the file
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic", tile=16)
    with rasterio.open(ran) as out:
        np.testing.assert_array_equal(sr.values, out.read())


def test_a_cube_of_dates_and_bands_is_refused_with_what_to_do(make_raster) -> None:
    """(time, band, y, x), as stackstac gives, was 'upscale expects a (band, y, x) DataArray'
    and no more; the way the line gives works, the dates carried by each result."""
    data = rioxarray.open_rasterio(make_raster(count=2, height=20, width=20))
    cube = xr.concat([data, data + 1], dim="time").assign_coords(time=[10, 20])
    says = "upscale one 'time' at a time, e.g. geosr.upscale(data.isel(time=0), ...), and xr.concat"
    with pytest.raises(InputError, match=re.escape(says)):
        geosr.upscale(cube, scale=2, model="bicubic")
    sr = xr.concat([geosr.upscale(cube.isel(time=i), scale=2, model="bicubic") for i in range(2)], dim="time")
    assert sr.dims == ("time", "band", "y", "x") and sr["time"].values.tolist() == [10, 20]


def test_a_single_column_without_a_transform_is_told_what_it_lacks() -> None:
    """It has coordinates, one column of them: the line said it had 'neither x/y coordinates
    nor a GeoTransform', and named an unnamed DataArray 'variable None'."""
    y = 5866000.0 - 10.0 * (np.arange(5) + 0.5)
    column = xr.DataArray(np.ones((5, 1), "float32"), dims=("y", "x"), coords={"y": y, "x": [335445.0]})
    with pytest.raises(InputError, match="the array has a single x coordinate, which gives no pixel size"):
        geosr.upscale(column.rio.write_crs(32633), scale=2, model="bicubic")


def test_a_fill_value_the_dtype_cannot_hold_is_one_clear_error() -> None:
    """A uint16 array whose _FillValue is -9999 (as undecoded Zarr attributes give) was
    rioxarray's OverflowError 'Unable to convert nodata value (-9999) to new dtype (uint16)'."""
    y = 5866000.0 - 10.0 * (np.arange(20) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(30) + 0.5)
    values = np.ones((20, 30), "uint16")
    data = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, attrs={"_FillValue": -9999})
    data = data.rio.write_crs(32633)
    with pytest.raises(geosr.GeosrError, match=r"_FillValue -9999 is not a valid uint16 value; give"):
        geosr.upscale(data, scale=2, model="bicubic")
    assert geosr.upscale(data, scale=2, model="bicubic", nodata=0).rio.nodata == 0


def test_tasks_starting_at_once_build_the_model_once() -> None:
    """The README says each Dask worker builds the model once: its task threads starting
    at once each built it (4 builds in a worker of 4 threads), lru_cache holding none back."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from geosr.orchestrate.lazy import _predictor, cached_predictor, predictor_builds

    _predictor.cache_clear()
    barrier = threading.Barrier(4)

    def build(_: int) -> object:
        barrier.wait()
        return cached_predictor(None, 1, 4, "cpu", "fp32")

    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(build, range(4)))
    assert predictor_builds() == 1 and all(b is built[0] for b in built)


def test_the_models_kept_for_the_next_calls_can_be_freed(make_raster) -> None:
    """upscale keeps its model (up to 4, on the GPU for CUDA) for the next calls, which nothing
    said and nothing let a notebook free short of private lru_cache calls."""
    import gc
    import weakref

    from geosr.orchestrate.lazy import MODELS_KEPT, cached_predictor, predictor_builds

    data = rioxarray.open_rasterio(make_raster(count=1, height=20, width=20))
    first = geosr.upscale(data, scale=2, model="bicubic").compute()
    builds = predictor_builds()
    kept = weakref.ref(cached_predictor("bicubic", 1, 2, "auto", "auto"))
    assert predictor_builds() == builds  # the one upscale keeps
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"the last {MODELS_KEPT} models" in readme and "geosr.forget_models()" in readme
    geosr.forget_models()
    gc.collect()
    assert kept() is None
    np.testing.assert_array_equal(geosr.upscale(data, scale=2, model="bicubic").compute(), first)


def test_a_grid_mapping_left_in_its_dataset_is_told_how_to_read_it(make_raster, tmp_path: Path) -> None:
    """xr.open_zarr(store)["band_data"] leaves the store's spatial_ref behind (it comes with
    decode_coords="all"): the line said the DataArray had no CRS and to set one, though the
    store has it."""
    store = tmp_path / "in.zarr"
    rioxarray.open_rasterio(make_raster(height=20, width=20)).to_dataset(name="band_data").to_zarr(store)
    says = "its grid mapping 'spatial_ref' was not read with it: open the file with decode_coords='all'"
    with pytest.raises(InputError, match=re.escape(says)):
        geosr.upscale(xr.open_zarr(store)["band_data"], scale=2, model="bicubic")
    sr = geosr.upscale(xr.open_zarr(store, decode_coords="all")["band_data"], scale=2, model="bicubic")
    assert sr.rio.crs == "EPSG:32633"


def test_a_decoded_read_of_bands_of_different_scales_keeps_each_bands_values(
    make_raster, tmp_path: Path
) -> None:
    """open_rasterio(mask_and_scale=True) of bands scaled 0.0001 and 0.0002 (rioxarray's
    encoding 'scales' and 'offsets', not scale_factor): each value was rounded to an int16
    as if it were a DN, so the whole result was 0; a band selection picks its own scale."""
    src = make_raster(count=2, height=30, width=40, dtype="int16", nodata=-9999)
    with rasterio.open(src, "r+") as f:
        f.scales, f.offsets = (0.0001, 0.0002), (-0.1, -0.2)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(ran) as run:
        stored = run.read().astype(np.float64)
    expected = stored * np.array([0.0001, 0.0002])[:, None, None] + np.array([-0.1, -0.2])[:, None, None]
    data = rioxarray.open_rasterio(src, mask_and_scale=True)
    sr = geosr.upscale(data, scale=2, model="bicubic")
    np.testing.assert_allclose(sr.values, expected, atol=1e-6)
    assert sr.dtype == data.dtype and sr.encoding["scales"] == (0.0001, 0.0002)
    second = geosr.upscale(data.sel(band=[2]), scale=2, model="bicubic")
    assert second.encoding["scales"] == (0.0002,)
    np.testing.assert_allclose(second.values, expected[1:], atol=1e-6)


def test_a_masked_read_of_a_file_without_nodata_given_one_keeps_its_valid_pixels(
    make_raster, tmp_path: Path
) -> None:
    """open_rasterio(masked=True) of a file without nodata, with nodata=0 given: valid pixels
    that rounded to 0 beside the nodata stayed 0, so they were nodata in the written file,
    where the file job moves them to 1 (8 pixels of this scene)."""
    data = np.random.default_rng(0).integers(100, 1100, (1, 40, 48)).astype("uint16")
    data[:, :12, :12] = 0
    src = make_raster(data=data)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic", nodata=0)
    sr = geosr.upscale(rioxarray.open_rasterio(src, masked=True), scale=2, model="bicubic", nodata=0)
    sr.rio.to_raster(tmp_path / "lazy.tif")
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        assert (lazy.dtypes, lazy.nodata) == (run.dtypes, run.nodata) == (("uint16",), 0)
        np.testing.assert_array_equal(lazy.read(), run.read())


def test_a_raw_read_of_a_file_with_a_mask_is_warned_of(make_raster, tmp_path: Path) -> None:
    """Read without masked=True, the pixels an internal mask hides were super-resolved as data
    (and fixed the normalisation) without a word: up to 4055 DN from the file job's output.
    Read with masked=True, as the warning says, the result is the file job's."""
    src = make_raster(count=1, height=40, width=48)
    mask = np.full((40, 48), 255, np.uint8)
    mask[10:20, 5:30] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "r+") as f:
        f.write_mask(mask)
    with pytest.warns(GeosrWarning, match=r"scene\.tif hides pixels with a mask .* masked=True") as caught:
        geosr.upscale(rioxarray.open_rasterio(src, chunks=True), scale=2, model="bicubic")
    assert {w.filename for w in caught if issubclass(w.category, GeosrWarning)} == {__file__}  # the call
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)
        lazy = geosr.upscale(rioxarray.open_rasterio(src, masked=True, chunks=True), scale=2, model="bicubic")
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(ran) as run:
        np.testing.assert_array_equal(np.nan_to_num(lazy.values, nan=run.nodata), run.read())


@pytest.mark.parametrize("dtype", ["uint16", "int16", "float32"])
def test_a_masked_read_of_a_file_without_nodata_declares_one_for_its_masked_pixels(
    make_raster, tmp_path: Path, dtype: str
) -> None:
    """open_rasterio(masked=True) of a file whose mask hides pixels, without nodata: to_raster
    wrote no nodata, so the masked pixels were data in the file (NaN cast to uint16 or int16;
    NaN undeclared in float32), where the file job declares 0, -32768 and NaN."""
    src = make_raster(count=1, height=40, width=48, dtype=dtype)
    mask = np.full((40, 48), 255, np.uint8)
    mask[10:20, 5:30] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(src, "r+") as f:
        f.write_mask(mask)
    sr = geosr.upscale(rioxarray.open_rasterio(src, masked=True, chunks=True), scale=2, model="bicubic")
    sr.rio.to_raster(tmp_path / "lazy.tif")
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        assert lazy.dtypes == run.dtypes == (dtype,)
        assert run.nodata is not None and np.array_equal(lazy.nodata, run.nodata, equal_nan=True)
        assert lazy.read(1, masked=True).mask.sum() == 10 * 25 * 4
        np.testing.assert_array_equal(lazy.read(), run.read())


def test_a_selection_of_a_files_bands_keeps_their_own_names_and_units(make_raster, tmp_path: Path) -> None:
    """open_rasterio's long_name and units stay the file's after .sel(band=...): the result of
    two bands reversed carried the names in the file's order, which to_raster wrote as the
    wrong bands' descriptions, and that of one band failed in to_raster (more names than bands)."""
    src = make_raster(count=3, height=20, width=24, nodata=0, descriptions=("B02", "B03", "B04"))
    with rasterio.open(src, "r+") as f:
        f.units = ("DN", "DN", "W")
    data = rioxarray.open_rasterio(src)
    for bands, names, units in [
        ([3, 1], ("B04", "B02"), ("W", "DN")),
        ([3], ("B04",), "W"),
        (3, ("B04",), "W"),
    ]:
        sr = geosr.upscale(data.sel(band=bands), scale=2, model="bicubic")
        assert sr.attrs["units"] == units, bands
        sr.rio.to_raster(tmp_path / "lazy.tif")
        with rasterio.open(tmp_path / "lazy.tif") as f:
            assert f.descriptions == names, bands


@pytest.mark.parametrize(
    "transform",
    [
        Affine(10.0, 0.0, 335440.0, 0.0, -10.0, 5866490.0),  # north-up
        Affine(10.0, 0.0, 335440.0, 0.0, 10.0, 5866000.0),  # south-up
        Affine(-0.3, 0.0, 12.5, 0.0, -0.7, 51.1),  # x decreasing, odd pixel sizes
    ],
)
def test_pixel_centres_are_those_rioxarray_reads_from_the_file_jobs_output(
    make_raster, tmp_path: Path, transform: Affine
) -> None:
    """The result's x and y were t.c + t.a * (i + 0.5), which differ in the last bit from what
    rioxarray (and odc-geo, geosr's Zarr output) compute for the same transform: sr minus the
    file job's output read by open_rasterio aligned 66 of 99 rows at x3, the rest dropped."""
    src = make_raster(count=1, height=33, width=41, nodata=0, transform=transform)
    sr = geosr.upscale(rioxarray.open_rasterio(src), scale=3, model="bicubic")
    run = rioxarray.open_rasterio(geosr.upscale_file(src, tmp_path / "run.tif", scale=3, model="bicubic"))
    np.testing.assert_array_equal(sr.x, run.x)
    np.testing.assert_array_equal(sr.y, run.y)
    assert (sr - run).shape == sr.shape == (1, 99, 123)


def test_to_raster_without_recalculating_writes_the_file_jobs_transform(make_raster, tmp_path: Path) -> None:
    """The README's advice: rioxarray's to_raster recalculates the transform from the pixel
    centres by default, which moved a 150.0208913649025 m pixel to 150.02089136490235 m; with
    recalc_transform=False the result's own, geosr run's, is written to the last bit."""
    transform = Affine(300.0379266750948, 0.0, 101985.0, 0.0, -300.041782729805, 2826915.0)
    src = make_raster(count=1, height=30, width=40, transform=transform)
    sr = geosr.upscale(rioxarray.open_rasterio(src), scale=2, model="bicubic")
    sr.rio.to_raster(tmp_path / "lazy.tif", recalc_transform=False)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        assert lazy.transform == run.transform == sr.rio.transform()


@pytest.mark.parametrize("shape", [(8, 300), (300, 8)], ids=["row", "column"])
def test_a_strip_under_the_halo_is_still_cut_along_its_length(
    make_raster, tmp_path: Path, shape: tuple[int, int]
) -> None:
    """An 8 px high strip (under the default model's halo) was one task: the whole strip through
    the model at once, however long, with nothing to run in parallel.  It is cut in tiles along
    its length, and its pixels are still the file job's."""
    src = make_raster(count=1, height=shape[0], width=shape[1])
    lazy = geosr.upscale(rioxarray.open_rasterio(src), scale=2, tile=64)
    blocks = [k for k in dict(lazy.data.__dask_graph__()) if str(k[0]).startswith("_upscale_block")]
    # Tiles of 64 px along its 300, two to a task where an fp32 call takes two.
    assert len(blocks) >= 3, blocks
    ran = geosr.upscale_file(src, tmp_path / "strip.tif", scale=2, tile=64)
    with rasterio.open(ran) as out:
        np.testing.assert_array_equal(lazy.values, out.read())


@pytest.mark.parametrize("read", [{"masked": True}, {"mask_and_scale": True}])
def test_a_masked_read_of_an_int64_file_is_refused_as_geosr_run_refuses_the_file(
    make_raster, tmp_path: Path, read: dict[str, bool]
) -> None:
    """The floats of a masked read of an int64 GeoTIFF were super-resolved, and to_raster wrote
    int64 back, while geosr run refused the file: both refuse it now, and astype goes on."""
    data = np.arange(1, 20 * 20 + 1, dtype="int64").reshape(1, 20, 20)
    src = make_raster("i64.tif", data=data, nodata=-1)
    with pytest.raises(InputError, match=r"i64\.tif: data type int64 is not supported") as err:
        geosr.upscale(rioxarray.open_rasterio(src, **read), scale=2, model="bicubic")
    assert "data.astype('float32')" in str(err.value)
    with pytest.raises(InputError, match=r"i64\.tif: data type int64 is not supported"):
        geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic")
    floats = geosr.upscale(rioxarray.open_rasterio(src, **read).astype("float32"), scale=2, model="bicubic")
    assert floats.dtype == np.float32 and floats.shape == (1, 40, 40)


def test_a_masked_read_given_another_nodata_has_both_as_nodata(make_raster, tmp_path: Path) -> None:
    """As upscale's docstring and the README say: the read's NaN (the file's 0) cannot be data,
    and nodata=5 adds 5; both are written back as the file's 0.  A raw read given nodata=5
    replaces the file's value, as geosr run --nodata 5 does."""
    data = np.arange(1, 32 * 32 + 1, dtype="uint16").reshape(1, 32, 32)
    data[:, :4] = 0
    data[:, -4:] = 5
    src = make_raster("n0.tif", data=data, nodata=0)
    masked = geosr.upscale(rioxarray.open_rasterio(src, masked=True), scale=2, model="bicubic", nodata=5)
    masked.rio.to_raster(tmp_path / "masked.tif")
    with rasterio.open(tmp_path / "masked.tif") as out:
        assert out.nodata == 0
        assert (out.read()[:, :8] == 0).all() and (out.read()[:, -8:] == 0).all()
    raw = geosr.upscale(rioxarray.open_rasterio(src), scale=2, model="bicubic", nodata=5)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic", nodata=5)
    with rasterio.open(ran) as out:
        assert out.nodata == 5
        np.testing.assert_array_equal(raw.values, out.read())


def test_float_pixels_that_gdal_takes_for_nodata_are_nodata_as_in_the_file_job(
    make_raster, tmp_path: Path
) -> None:
    """An ArcGIS float32 raster declares -3.40282306073709653e+38 and holds float32's lowest in its
    nodata pixels, which GDAL's mask hides (and geosr run with it): read without masked=True, they
    were data, and the valid pixels of 0.25..1 came out 0 (the normalisation spanned 3.4e+38)."""
    declared = -3.4028230607370965e38
    data = np.linspace(0.25, 1, 48 * 40, dtype=np.float32).reshape(1, 48, 40)
    data[:, :10, :12] = np.finfo(np.float32).min
    src = make_raster(data=data, nodata=declared)
    lazy = geosr.upscale(rioxarray.open_rasterio(src), scale=2, model="bicubic").values
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model="bicubic")
    with rasterio.open(ran) as out:
        np.testing.assert_array_equal(lazy, out.read())


def test_zeros_of_an_undeclared_nodata_are_warned_about_as_the_file_job_does(make_raster) -> None:
    """A Sentinel-2 L1C swath's 0, undeclared: upscale_file warns of it, and geosr.upscale of the
    same pixels super-resolved them as data without a word. Its line is the file job's, the
    file's or the DataArray's, in keywords; nodata=, or a nodata of the array's, ends it."""
    data = np.full((1, 40, 40), 500, np.uint16)
    data[:, :, :12] = 0
    src = make_raster("l1c.tif", data=data)
    said = "30 % of its pixels are 0 in every band and it declares no nodata, so they are super-resolved"
    with pytest.warns(GeosrWarning, match=rf"l1c\.tif: {said} as data; pass nodata=0 if they are not"):
        geosr.upscale(rioxarray.open_rasterio(src), scale=2, model="bicubic")
    array = xr.DataArray(data, dims=("band", "y", "x")).rio.write_crs("EPSG:32633")
    array = array.rio.write_transform(Affine(10, 0, 0, 0, -10, 400))
    with pytest.warns(GeosrWarning, match=rf"^the DataArray: {said} as data; pass nodata=0 if"):
        geosr.upscale(array, scale=2, model="bicubic")
    geosr.upscale(array, scale=2, model="bicubic", nodata=0)  # no warning: an error here
    geosr.upscale(array.rio.write_nodata(0), scale=2, model="bicubic")


def test_a_value_float32_cannot_hold_once_normalised_is_said_of_the_array(make_raster) -> None:
    """The tile-level line of a value beyond float32 once normalised named the file of a file job,
    and 'the input' for geosr.upscale: it names the array's file, or the DataArray."""
    data = np.random.default_rng(0).random((1, 40, 40), np.float32) / 1000
    data[0, 5, 5] = 5e37
    said = "holds 5e+37, beyond float32's range once normalised for the model"
    array = xr.DataArray(data, dims=("band", "y", "x"), name="refl").rio.write_crs("EPSG:32633")
    array = array.rio.write_transform(Affine(10, 0, 0, 0, -10, 400))
    _, lines = warnings_said(lambda: geosr.upscale(array, scale=2, model="bicubic").compute())
    assert any(line.startswith(f"DataArray 'refl' {said}") for line in lines), lines
    src = make_raster("big.tif", data=data)
    read = rioxarray.open_rasterio(src)
    _, lines = warnings_said(lambda: geosr.upscale(read, scale=2, model="bicubic").compute())
    assert any(line.startswith(f"{src} {said}") for line in lines), lines


@pytest.mark.parametrize(("width", "images"), [(64, 4), (70, 8), (100, 8)])
def test_tasks_hold_the_tiles_of_a_whole_fp32_call(
    make_raster, tmp_path: Path, model_images: list[int], width: int, images: int
) -> None:
    """In fp32 on a CPU a model call takes two images and computes a lone one with a copy of
    itself: upscale ran one single-band tile per task, so every tile twice (1.7x the time of
    the computation on a 1024^2 band on 2 cores). A task now holds two tiles along x, cut as
    tasks of one tile were, and runs those of one shape in one call: 4 tiles of 32 px (a
    64 x 64 band, tile 32) are 4 images, not 8; 6 tiles (width 100: 32, 32, 36) 8, not 12;
    where a remainder under the halo (15 px) rides on a tile (width 70: 32, 38) the two differ
    and each goes alone, as before. The pixels and the output's chunks are as before, and the
    file job's."""
    seen = model_images
    data = np.random.default_rng(7).integers(300, 5000, (1, 64, width)).astype("uint16")
    path = make_raster(data=data)
    common = {"scale": 2, "tile": 32, "precision": "fp32", "device": "cpu"}
    out = geosr.upscale(rioxarray.open_rasterio(path), **common)
    assert out.chunks is not None and set(out.chunks[2][:-1]) == {64}
    computed = out.values
    assert sum(seen) == images and set(seen) == {2}
    with rasterio.open(geosr.upscale_file(path, tmp_path / "file.tif", **common)) as src:
        assert np.array_equal(src.read(), computed)
