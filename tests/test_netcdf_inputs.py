"""netCDF files as xarray and rioxarray write them: 1-D x/y coordinates without CF attributes.

GDAL's netCDF driver finds no geotransform for such a file (it knows x/y by their CF
attributes, which xarray does not write), so geosr refused what ``da.to_netcdf`` wrote:
'the raster has no geotransform (pixel grid only)'.  geosr reads them through xarray, as it
reads a Zarr store, on the grid the coordinates give (as rioxarray computes it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine

import geosr
from tests.test_bad_input import assert_one_clear_line, run_cli

Y = 5000000 - 10 * (np.arange(40) + 0.5)
X = 300000 + 10 * (np.arange(48) + 0.5)


def refl(band: bool = True, seed: int = 0) -> xr.DataArray:
    """A UTM uint16 ``refl`` with nodata 0 on pixel-centre coordinates, as rioxarray writes it."""
    values = (np.random.default_rng(seed).random((1, 40, 48)) * 3000).astype("uint16")
    values[0, :3, :5] = 0
    da = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": [1], "y": Y, "x": X}, name="refl")
    da = da if band else da.isel(band=0, drop=True)
    return da.rio.write_crs("EPSG:32633").rio.write_nodata(0)


def geotiff(da: xr.DataArray, path: Path) -> Path:
    """``da`` as a GeoTIFF of what its netCDF-3 holds: xarray stores uint16 as int16 there."""
    da.astype("int16").rio.write_nodata(0).rio.to_raster(path)
    return path


def to_cf_netcdf(da: xr.DataArray, path: Path) -> Path:
    """``da`` written to the netCDF ``path`` with the CF attributes on x/y by which GDAL's
    netCDF driver knows the axes (xarray writes them without): a file GDAL georeferences itself."""
    da = da.copy()
    da["x"].attrs.update(standard_name="projection_x_coordinate", units="m", axis="X")
    da["y"].attrs.update(standard_name="projection_y_coordinate", units="m", axis="Y")
    da.to_netcdf(path)
    return path


def run(src: Path, out: Path, **kwargs) -> rasterio.DatasetReader:
    return rasterio.open(geosr.upscale_file(src, out, scale=2, model="bicubic", **kwargs))


@pytest.mark.parametrize("band", [True, False], ids=["band-y-x", "y-x"])
def test_a_netcdf_that_xarray_wrote_is_read_on_the_grid_of_its_coordinates(
    tmp_path: Path, capsys, monkeypatch, band: bool
) -> None:
    """The bug's own file: 'x.nc: the raster has no geotransform (pixel grid only)'."""
    da = refl(band)
    da.to_netcdf(tmp_path / "x.nc")
    geotiff(da, tmp_path / "x.tif")
    code, err = run_cli(
        ["run", str(tmp_path / "x.nc"), "--scale", "2", "--model", "bicubic"], capsys, monkeypatch
    )
    assert code == 0, err
    read = xr.open_dataset(tmp_path / "x.nc", decode_coords="all")["refl"]
    with rasterio.open(tmp_path / "x_x2.tif") as out, run(tmp_path / "x.tif", tmp_path / "ref.tif") as ref:
        assert out.transform == read.rio.transform() @ Affine.scale(1 / 2) == ref.transform
        assert out.crs == read.rio.crs == "EPSG:32633"
        assert (out.nodata, out.count, out.shape) == (0, 1, (80, 96))
        np.testing.assert_array_equal(out.read(), ref.read())


def test_a_variable_of_a_dataset_that_xarray_wrote_is_picked_with_variable(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    ds = xr.Dataset({"a": refl(seed=1), "b": refl(seed=2)})
    ds.to_netcdf(tmp_path / "two.nc")
    code, err = run_cli(["run", str(tmp_path / "two.nc"), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "two.nc: the file holds 2 variables (a, b); pick one with --variable")
    geotiff(refl(seed=2), tmp_path / "b.tif")
    with (
        run(tmp_path / "two.nc", tmp_path / "b_x2.tif", variable="b") as out,
        run(tmp_path / "b.tif", tmp_path / "ref.tif") as ref,
    ):
        assert (out.transform, out.crs, out.nodata) == (ref.transform, ref.crs, 0)
        np.testing.assert_array_equal(out.read(), ref.read())


def test_a_cf_netcdf_that_gdal_georeferences_gives_the_same_output(tmp_path: Path) -> None:
    """With CF attributes on x/y, GDAL reads the file itself: the same pixels and grid."""
    da = refl()
    da.to_netcdf(tmp_path / "bare.nc")
    to_cf_netcdf(da, tmp_path / "cf.nc")
    with (
        run(tmp_path / "bare.nc", tmp_path / "a.tif") as bare,
        run(tmp_path / "cf.nc", tmp_path / "b.tif") as cf,
    ):
        assert (bare.transform, bare.crs, bare.nodata) == (cf.transform, cf.crs, cf.nodata)
        np.testing.assert_array_equal(bare.read(), cf.read())


def test_a_south_up_netcdf_gives_the_north_up_output_of_the_same_pixels(tmp_path: Path) -> None:
    """y ascending (row 0 the south, as netCDF grids often are): GDAL turns a CF file north up,
    and the file xarray wrote, read through xarray, is turned so too.  The output of each, of
    the whole scene and of an area of interest, is the north-up file's."""
    da = refl()
    south_up = da.isel(y=slice(None, None, -1))
    da.to_netcdf(tmp_path / "north.nc")
    south_up.to_netcdf(tmp_path / "south.nc")
    to_cf_netcdf(south_up, tmp_path / "south_cf.nc")
    for kwargs in ({}, {"bbox": "300050,4999650,300330,4999880", "bbox_crs": "EPSG:32633"}):
        outs = [run(tmp_path / f"{name}.nc", tmp_path / f"{name}_{len(kwargs)}.tif", **kwargs) for name in
                ("north", "south", "south_cf")]  # fmt: skip
        north, *others = outs
        assert north.transform.e < 0
        for other in others:
            assert (other.transform, other.shape) == (north.transform, north.shape), (other.name, kwargs)
            np.testing.assert_array_equal(other.read(), north.read(), err_msg=f"{other.name} {kwargs}")
        for out in outs:
            out.close()
    # Strided reads too: a quicklook's decimated window, the scene's normalisation sample.
    from geosr.io.scene import datasets_closed, open_scene, read_decimated, read_sample
    from geosr.tiling import Window

    with datasets_closed():
        north, south = (open_scene(tmp_path / f"{name}.nc") for name in ("north", "south"))
        assert south.grid == north.grid
        for step in (1, 3, 7):
            window = Window(2, 5, 31, 40)
            np.testing.assert_array_equal(
                read_decimated(south, window, step), read_decimated(north, window, step)
            )
        np.testing.assert_array_equal(read_sample(south, max_pixels=200), read_sample(north, max_pixels=200))


def curvilinear(path: Path, *, cf: bool, crs: bool = False) -> Path:
    """A variable on 2-D lat/lon (a latitude and longitude per pixel), with or without CF attributes."""
    rows, cols = np.mgrid[0:40, 0:48]
    lat, lon = 50 + 0.01 * rows + 0.001 * cols, 10 + 0.01 * cols + 0.002 * rows
    attrs = (
        {"standard_name": "latitude", "units": "degrees_north"},
        {"standard_name": "longitude", "units": "degrees_east"},
    )
    coords = {
        "lat": (("y", "x"), lat, attrs[0] if cf else {}),
        "lon": (("y", "x"), lon, attrs[1] if cf else {}),
    }
    ds = xr.Dataset({"v": (("y", "x"), np.ones((40, 48), np.float32))}, coords=coords)
    (ds.rio.write_crs("EPSG:4326") if crs else ds).to_netcdf(path)
    return path


@pytest.mark.parametrize(
    ("cf", "crs", "says"),
    [
        (True, False, "a swath georeferenced by geolocation arrays only"),  # GDAL's geolocation
        (False, False, "variable 'v' is on a curvilinear grid (2-D lat/lon coordinates"),
        (False, True, "variable 'v' is on a curvilinear grid (2-D lat/lon coordinates"),
    ],
)
def test_a_curvilinear_netcdf_is_refused_with_how_to_regrid_it(
    tmp_path: Path, capsys, monkeypatch, cf: bool, crs: bool, says: str
) -> None:
    """Before, a file xarray wrote was said to have no CRS ('write one with rioxarray'), or,
    with one, neither x/y coordinates nor a GeoTransform ('write_transform'): either would
    misplace its pixels."""
    src = curvilinear(tmp_path / "swath.nc", cf=cf, crs=crs)
    code, err = run_cli(["run", str(src), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{src}: ", says, "regrid" if not cf else "gdalwarp -geoloc")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["swath.nc"]


@pytest.mark.parametrize("kind", ["xarray", "cf", "cf-lat-lon", "lat-lon", "integer-geotransform"])
def test_unevenly_spaced_coordinates_are_refused_as_no_geotransform_describes_them(
    tmp_path: Path, capsys, monkeypatch, kind: str
) -> None:
    """A 5 m jump in a 10 m grid (tiles concatenated with a gap).  GDAL, which reads a file with
    CF attributes on its coordinates (or named lat/lon), looks at their first, middle and last
    steps only: it spread them evenly without a word, 10.1 m pixels up to half a pixel off (or,
    without units, said the file had no CRS).  Integer coordinates have no attributes at all
    (no _FillValue either), so GDAL's metadata does not list them: with the GeoTransform
    rioxarray stores, GDAL placed the grid by it, and the uneven x was accepted."""
    x = X.copy()
    x[20:] += 5
    da = refl().assign_coords(x=x)
    if kind == "integer-geotransform":
        da = da.assign_coords(x=x.astype("int64"), y=Y.astype("int64")).rio.write_transform()
    if kind.endswith("lat-lon"):
        lat, lon = 50 + 0.01 * np.arange(40), 10 + x / 1000 - 300
        da = da.rename(y="lat", x="lon").assign_coords(lat=lat, lon=lon).drop_vars("spatial_ref")
    if kind.startswith("cf"):
        for name, standard_name, units in [
            *(("x", "projection_x_coordinate", "m"), ("y", "projection_y_coordinate", "m")),
            *(("lon", "longitude", "degrees_east"), ("lat", "latitude", "degrees_north")),
        ]:
            if name in da.coords:
                da[name].attrs.update(standard_name=standard_name, units=units)
    da.to_netcdf(tmp_path / "gap.nc")
    code, err = run_cli(["run", str(tmp_path / "gap.nc"), "--model", "bicubic"], capsys, monkeypatch)
    name = "lon" if kind.endswith("lat-lon") else "x"
    steps = "from 0.01 to 0.015" if kind.endswith("lat-lon") else "from 10 to 15"
    assert_one_clear_line(
        code, err, "gap.nc: the ", f"{name} coordinates", "not evenly spaced", steps, "interp"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gap.nc"]


def test_a_time_series_netcdf_is_read_as_a_zarr_store_of_it_is(tmp_path: Path) -> None:
    """A ``(time, y, x)`` variable: its dates are bands, named by their dates, as a Zarr store's
    are (and were refused, without CF attributes, for want of a geotransform).  With CF
    attributes GDAL reads the file: the same pixels, but its bands were unnamed ('NETCDF_DIM_time=0'
    in their metadata, days since the first date)."""
    values = (np.random.default_rng(0).random((3, 40, 48)) * 1000).astype("float32")
    dates = np.array(["2024-01-01", "2024-02-01", "2024-03-01"], dtype="datetime64[ns]")
    cube = xr.DataArray(values, dims=("time", "y", "x"), coords={"time": dates, "y": Y, "x": X}, name="chl")
    cube = cube.rio.write_crs("EPSG:32633")
    cube.to_netcdf(tmp_path / "t.nc")
    cube.to_dataset().to_zarr(tmp_path / "t.zarr")
    to_cf_netcdf(cube, tmp_path / "t_cf.nc")
    with run(tmp_path / "t.zarr", tmp_path / "zarr.tif") as store:
        assert store.count == 3 and store.descriptions == tuple(str(d) for d in dates)
        for name in ("t.nc", "t_cf.nc"):
            with run(tmp_path / name, tmp_path / f"{name}.tif") as out:
                assert (out.transform, out.crs, out.descriptions) == (
                    store.transform,
                    store.crs,
                    store.descriptions,
                )
                np.testing.assert_array_equal(out.read(), store.read())


def test_a_netcdf4_xarray_cannot_open_says_what_to_install_or_assign(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """A netCDF-4 (HDF5) file that GDAL finds no grid for goes to xarray for its coordinates,
    which needs h5netcdf or netCDF4 to open it: without them, this one (no coordinates at all,
    as GDAL writes a pixel grid) was said to have 'x/y coordinates without CF attributes'."""
    import importlib.util

    import rasterio.shutil

    if any(importlib.util.find_spec(name) for name in ("h5netcdf", "netCDF4")):
        pytest.skip("xarray opens netCDF-4 files here")
    profile = {"driver": "GTiff", "width": 8, "height": 6, "count": 1, "dtype": "float32"}
    with rasterio.open(tmp_path / "grid.tif", "w", **profile) as dst:
        dst.write(np.ones((1, 6, 8), np.float32))
    rasterio.shutil.copy(tmp_path / "grid.tif", tmp_path / "grid.nc", driver="netCDF", FORMAT="NC4")
    assert (tmp_path / "grid.nc").read_bytes()[:4] == b"\x89HDF"
    code, err = run_cli(["run", str(tmp_path / "grid.nc"), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(
        code, err, "grid.nc: GDAL finds no geotransform for it", "pip install h5netcdf", "-a_ullr"
    )
    assert "without CF attributes" not in err


def test_lat_lon_coordinates_without_units_are_degrees_as_in_a_zarr_store(tmp_path: Path) -> None:
    """xarray writes lat/lon coordinates given without attributes as they are: GDAL places the
    variable by their names but gives it no CRS, and geosr refused it ('the raster has no CRS'),
    where the same Dataset in a Zarr store is read in degrees (EPSG:4326)."""
    values = np.random.default_rng(0).random((40, 48)).astype(np.float32)
    lat, lon = 52.5 - 0.01 * (np.arange(40) + 0.5), 4.0 + 0.01 * (np.arange(48) + 0.5)
    ds = xr.Dataset({"v": (("lat", "lon"), values)}, coords={"lat": lat, "lon": lon})
    ds.to_netcdf(tmp_path / "ll.nc")
    ds.to_zarr(tmp_path / "ll.zarr")
    with (
        run(tmp_path / "ll.nc", tmp_path / "nc.tif") as out,
        run(tmp_path / "ll.zarr", tmp_path / "z.tif") as ref,
    ):
        assert (out.crs, out.transform) == ("EPSG:4326", ref.transform) and ref.crs == "EPSG:4326"
        np.testing.assert_array_equal(out.read(), ref.read())


def test_a_netcdf_that_xarray_wrote_is_a_frame_as_its_geotiff_is(tmp_path: Path) -> None:
    """``--frame x.nc``: it was refused as 'frames must be GDAL rasters (GeoTIFF, JP2, ...), not
    Zarr', of a netCDF; a CF netCDF, which GDAL reads, was taken.  On the reference's grid and
    on one half a pixel off (reprojected), it gives its GeoTIFF's pixels."""
    from geosr.io.frames import check_frame, read_frame_window
    from geosr.io.scene import datasets_closed, open_scene
    from geosr.tiling import Window

    da = refl(seed=3)
    da.to_netcdf(tmp_path / "frame.nc")
    geotiff(da, tmp_path / "frame.tif")
    geotiff(refl(), tmp_path / "same.tif")
    geotiff(refl().assign_coords(x=X + 5, y=Y - 5), tmp_path / "moved.tif")
    with datasets_closed():
        for name in ("same.tif", "moved.tif"):
            reference = open_scene(tmp_path / name)
            read = [
                read_frame_window(
                    check_frame(open_scene(tmp_path / frame), reference), reference, Window(3, 4, 20, 24)
                )
                for frame in ("frame.nc", "frame.tif")
            ]
            np.testing.assert_array_equal(read[0], read[1], err_msg=name)


def test_a_netcdf_read_through_xarray_is_closed_after_its_description_and_its_run(tmp_path: Path) -> None:
    """xarray holds a netCDF file open until its dataset is closed: the one that described the
    scene, and the one each reading thread kept (closed with the thread's readers, but a variable
    of a dataset closes nothing of it), stayed open until the garbage collector found them: after
    the run, and in a Dask worker after release()."""
    from geosr.io.scene import open_scene
    from tests.conftest import open_in_this_process

    refl().to_netcdf(tmp_path / "x.nc")
    open_scene(tmp_path / "x.nc")
    assert not open_in_this_process(tmp_path / "x.nc")
    run(tmp_path / "x.nc", tmp_path / "x_x2.tif").close()
    assert not open_in_this_process(tmp_path / "x.nc")


def test_a_packed_cf_netcdf_is_described_as_the_one_xarray_wrote(tmp_path: Path) -> None:
    """An int16 variable packed with scale_factor/add_offset, its units and long_name: read by
    GDAL (CF attributes on x/y) or through xarray (none), as a Zarr store, the output has the same
    pixels, scale, offset, units and band name.  GDAL's band had no name: a Zarr store's, and the
    file xarray wrote, are named by their CF long_name."""
    values = (np.random.default_rng(0).random((40, 48)) * 30).astype(np.float32)
    attrs = {"units": "degC", "long_name": "sea surface temperature"}
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": Y, "x": X}, name="sst", attrs=attrs)
    da = da.rio.write_crs("EPSG:32633")
    da.encoding.update(dtype="int16", scale_factor=0.01, add_offset=10.0, _FillValue=-32768)
    da.to_netcdf(tmp_path / "bare.nc")
    to_cf_netcdf(da, tmp_path / "cf.nc")
    with (
        run(tmp_path / "bare.nc", tmp_path / "a.tif") as bare,
        run(tmp_path / "cf.nc", tmp_path / "b.tif") as cf,
    ):
        for out in (bare, cf):
            described = (out.dtypes, out.nodata, out.scales, out.offsets, out.units, out.descriptions)
            assert described == (
                ("int16",),
                -32768,
                (0.01,),
                (10.0,),
                ("degC",),
                ("sea surface temperature",),
            )
        np.testing.assert_array_equal(bare.read(), cf.read())
