"""Files of several variables that GDAL reads (netCDF, HDF5): ``--variable`` picks one.

Ocean-colour and climate products come as netCDF, often on CF latitude/longitude
coordinates without a grid mapping, which GDAL leaves without a CRS.  geosr reads
those as EPSG:4326, as it reads the same coordinates in a Zarr store.  Before,
such a file was refused ("the raster has no CRS", or for several variables the
baffling "bands have different data types []"), and ``--variable`` was ignored.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from affine import Affine

import geosr
from geosr.errors import InputError
from geosr.run_outputs import default_output
from tests.test_bad_input import assert_one_clear_line, run_cli

LAT = 52.5 - 0.01 * (np.arange(40) + 0.5)
LON = 4.0 + 0.01 * (np.arange(50) + 0.5)
GRID = Affine(0.01, 0, 4.0, 0, -0.01, 52.5)


def variables(path: Path) -> dict[str, np.ndarray]:
    """A netCDF-3 file of two variables on CF lat/lon (xarray's scipy engine, no grid mapping)."""
    rng = np.random.default_rng(0)
    values = {
        "chl": rng.random((40, 50)).astype(np.float32),
        "tsm": 10 + 50 * rng.random((40, 50)).astype(np.float32),
    }
    values["tsm"][:5, :7] = np.nan  # a cloud
    coords = {
        "lat": ("lat", LAT, {"units": "degrees_north", "standard_name": "latitude"}),
        "lon": ("lon", LON, {"units": "degrees_east", "standard_name": "longitude"}),
    }
    ds = xr.Dataset({k: (("lat", "lon"), v) for k, v in values.items()}, coords=coords)
    ds.to_netcdf(path, engine="scipy")
    return values


def geotiff(path: Path, band: np.ndarray) -> Path:
    profile = {"driver": "GTiff", "crs": "EPSG:4326", "transform": GRID, "count": 1, "nodata": np.nan}
    with rasterio.open(path, "w", **profile, height=40, width=50, dtype="float32") as dst:
        dst.write(band, 1)
    return path


@pytest.mark.parametrize("model", ["bicubic", None])
def test_a_netcdf_variable_gives_the_pixels_of_the_same_geotiff(tmp_path: Path, model: str | None) -> None:
    values = variables(tmp_path / "ocean.nc")
    ocean, tif = tmp_path / "ocean.nc", geotiff(tmp_path / "tsm.tif", values["tsm"])
    out = geosr.upscale_file(ocean, tmp_path / "tsm_x2.tif", scale=2, variable="tsm", model=model)
    same = geosr.upscale_file(tif, tmp_path / "ref_x2.tif", scale=2, model=model)
    with rasterio.open(out) as f, rasterio.open(same) as g:
        assert f.crs.to_epsg() == 4326
        assert f.transform.almost_equals(GRID @ Affine.scale(0.5))  # GDAL derives it from lat/lon
        np.testing.assert_array_equal(f.read(), g.read())
        assert np.isnan(f.read(1)[:10, :14]).all()  # the cloud stays nodata
    chl = geosr.upscale_file(ocean, tmp_path / "chl_x2.tif", scale=2, variable="chl", model=model)
    with rasterio.open(chl) as f:
        assert abs(float(np.nanmean(f.read(1))) - float(values["chl"].mean())) < 1e-3  # the other variable


def test_the_variable_must_be_named_and_exist(tmp_path: Path, capsys, monkeypatch) -> None:
    variables(tmp_path / "ocean.nc")
    code, err = run_cli(["run", str(tmp_path / "ocean.nc"), "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(
        code, err, "ocean.nc: the file holds 2 variables (chl, tsm); pick one with --variable"
    )
    assert "geotransform" not in err  # rasterio's warning about the container itself is not the user's
    with pytest.raises(InputError, match="no variable 'sst'; the file holds chl, tsm"):
        geosr.upscale_file(tmp_path / "ocean.nc", tmp_path / "x.tif", variable="sst", model="bicubic")
    one = geotiff(tmp_path / "one.tif", np.ones((40, 50), np.float32))
    with pytest.raises(InputError, match="variable='tsm' is for Zarr stores and files of several variables"):
        geosr.upscale_file(one, tmp_path / "y.tif", variable="tsm", model="bicubic")
    code, err = run_cli(["run", f'NETCDF:"{tmp_path / "ocean.nc"}":tsm'], capsys, monkeypatch)
    assert_one_clear_line(code, err, "a GDAL subdataset name", f"{tmp_path / 'ocean.nc'} --variable tsm")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ocean.nc", "one.tif"]


def test_runs_of_two_variables_are_two_jobs_and_the_quicklook_reads_the_variable(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    variables(tmp_path / "ocean.nc")
    out = tmp_path / "x2.tif"
    args = ["run", str(tmp_path / "ocean.nc"), "-o", str(out), "--scale", "2", "--model", "bicubic"]
    assert run_cli([*args, "--variable", "tsm", "--quicklook"], capsys, monkeypatch)[0] == 0
    assert (tmp_path / "x2.quicklook.png").stat().st_size > 0
    # The same output path for the other variable is another job, not a finished one.
    code, err = run_cli([*args, "--variable", "chl"], capsys, monkeypatch)
    assert code == 2 and "already exists" in err and "same job" not in err, err


def test_training_names_the_variables_and_how_to_export_one(tmp_path: Path) -> None:
    from geosr.train.config import SceneSource
    from geosr.train.data import load_scene

    ocean = tmp_path / "ocean.nc"
    variables(ocean)
    with pytest.raises(
        InputError, match=r"holds 2 variables \(chl, tsm\), which training does not read"
    ) as said:
        load_scene(ocean, SceneSource(str(ocean)))
    name = str(said.value).split("gdal_translate '")[1].split("'")[0]
    with rasterio.open(name) as src:  # the name it gives is one GDAL opens
        assert src.tags(1)["NETCDF_VARNAME"] == "chl"


def test_short_variable_names_stay_apart_when_the_last_parts_are_alike() -> None:
    """GDAL's SENTINEL2 driver names its subdatasets ``...:10m:EPSG_32633``, ``...:20m:EPSG_32633``:
    keyed by their last part, all but one would vanish and --variable would pick the wrong one."""
    from geosr.io.scene import subdataset_keys

    safe = "SENTINEL2_L1C:/data/S2A.SAFE/MTD_MSIL1C.xml"
    names = [f"{safe}:{part}:EPSG_32633" for part in ("10m", "20m", "60m", "TCI")]
    assert subdataset_keys(names) == {
        "10m:EPSG_32633": names[0],
        "20m:EPSG_32633": names[1],
        "60m:EPSG_32633": names[2],
        "TCI:EPSG_32633": names[3],
    }
    assert subdataset_keys(['NETCDF:"/d/a.nc":chl_a', 'NETCDF:"/d/a.nc":chl_b']) == {
        "chl_a": 'NETCDF:"/d/a.nc":chl_a',
        "chl_b": 'NETCDF:"/d/a.nc":chl_b',
    }
    assert subdataset_keys(['HDF5:"/d/f.h5"://B1', 'HDF5:"/d/f.h5"://B2']) == {
        "B1": 'HDF5:"/d/f.h5"://B1',
        "B2": 'HDF5:"/d/f.h5"://B2',
    }
    assert subdataset_keys(['NETCDF:"/d/a.nc":tsm']) == {"tsm": 'NETCDF:"/d/a.nc":tsm'}


def test_a_zarr_input_keeps_its_stored_dtype_nodata_and_band_metadata(tmp_path: Path) -> None:
    """Before, a Zarr input was read decoded: an int16 store with a _FillValue came out
    float64 with NaN nodata and a uint16 one float32, and a geosr Zarr output run again
    lost its bands' names, colours, scales, offsets and units (its descriptions became
    "1", "2").  A chained run (x2 into Zarr, then x2 into COG) now describes its bands as
    a direct x4 run does."""
    from rasterio.enums import ColorInterp

    data = np.full((3, 40, 48), 1200, np.int16)
    data += np.arange(48, dtype=np.int16)
    data[:, 5:9] = -9999
    src = tmp_path / "rich.tif"
    profile = {"driver": "GTiff", "crs": "EPSG:32633", "transform": Affine(10, 0, 4e5, 0, -10, 5e6)}
    with rasterio.open(src, "w", **profile, width=48, height=40, count=3, dtype="int16", nodata=-9999) as dst:
        dst.write(data)
        dst.descriptions = ("B04", "B03", "B08")
        dst.colorinterp = [ColorInterp.red, ColorInterp.green, ColorInterp.undefined]
        dst.scales, dst.offsets, dst.units = (1e-4,) * 3, (-0.1,) * 3, ("reflectance",) * 3
        dst.update_tags(2, WAVELENGTH="560")

    def described(path: Path) -> tuple:
        with rasterio.open(path) as out:
            return (
                out.dtypes, out.nodata, out.descriptions, out.colorinterp,
                out.scales, out.offsets, out.units, out.tags(2),
            )  # fmt: skip

    half = geosr.upscale_file(src, tmp_path / "half.zarr", scale=2, model="bicubic")
    chained = geosr.upscale_file(half, tmp_path / "chained.tif", scale=2, model="bicubic")
    direct = geosr.upscale_file(src, tmp_path / "direct.tif", scale=4, model="bicubic")
    assert described(chained) == described(direct)
    assert described(chained)[:2] == (("int16",) * 3, -9999)

    # A uint16 store made with xarray, its nodata a _FillValue: uint16 out, 0 still nodata.
    y, x = 5e6 - 10 * (np.arange(30) + 0.5), 4e5 + 10 * (np.arange(40) + 0.5)
    values = np.arange(1, 1201, dtype=np.uint16).reshape(30, 40)
    values[:2] = 0
    cube = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, name="refl")
    cube.rio.write_crs("EPSG:32633").rio.write_nodata(0).to_dataset().to_zarr(tmp_path / "u16.zarr")
    out = geosr.upscale_file(tmp_path / "u16.zarr", tmp_path / "u16.tif", scale=2, model="bicubic")
    with rasterio.open(out) as result:
        assert (result.dtypes[0], result.nodata) == ("uint16", 0)
        assert (result.read(1)[:4] == 0).all() and (result.read(1)[4:] > 0).all()


def test_a_variable_without_a_geotransform_is_one_line(tmp_path: Path) -> None:
    """A variable that GDAL finds a CRS but no geotransform for, and that has no x/y coordinates
    to place it either, is refused in geosr's one line: before, rasterio's 'Dataset has no
    geotransform, gcps, or rpcs' warning came first.  (With coordinates, as xarray writes them,
    it is read: tests/test_netcdf_inputs.py.)"""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    grid = np.zeros((40, 50), np.float32)
    ds = xr.Dataset({"a": (("y", "x"), grid), "b": (("y", "x"), grid)})
    ds.rio.write_crs("EPSG:32633").to_netcdf(tmp_path / "bare.nc", engine="scipy")
    from geosr.io.scene import open_scene

    with warnings.catch_warnings(record=True) as caught, pytest.raises(InputError) as said:
        warnings.simplefilter("always")  # as the CLI shows them: each as a 'warning:' line
        open_scene(tmp_path / "bare.nc", variable="a")
    assert "bare.nc: variable 'a' has neither x/y coordinates nor a GeoTransform" in str(said.value)
    assert not [w for w in caught if "geotransform" in str(w.message)], [str(w.message) for w in caught]


def test_a_netcdf_variable_of_cf_flags_is_refused_as_in_a_zarr_store(tmp_path: Path) -> None:
    """GDAL gives a netCDF variable's attributes as band metadata, which geosr did not look at:
    an OLCI ``quality_flags`` was super-resolved into flag combinations no pixel had (and -1),
    where the same variable in a Zarr store is refused."""
    ocean = tmp_path / "ocean.nc"
    flags = np.random.default_rng(0).choice(np.array([1, 2, 4, 8], np.int32), (40, 50))
    coords = {
        "lat": ("lat", LAT, {"units": "degrees_north"}),
        "lon": ("lon", LON, {"units": "degrees_east"}),
    }
    attrs = {"flag_masks": np.array([1, 2, 4, 8], np.int32), "flag_meanings": "land cloud water glint"}
    ds = xr.Dataset(
        {
            "chl": (("lat", "lon"), np.ones((40, 50), np.float32)),
            "quality_flags": (("lat", "lon"), flags, attrs),
        },
        coords=coords,
    )
    ds.to_netcdf(ocean, engine="scipy")
    out = tmp_path / "q_x2.tif"
    with pytest.raises(
        InputError, match=r"'quality_flags' holds CF flags \(land cloud water glint\).*\(chl\)"
    ):
        geosr.upscale_file(ocean, out, scale=2, model="bicubic", variable="quality_flags")
    assert not out.exists()


def test_what_describes_the_inputs_grid_is_not_carried_to_the_output(tmp_path: Path) -> None:
    """A netCDF's grid mapping GeoTransform (``spatial_ref#GeoTransform`` in GDAL's metadata),
    its ACDD resolution and a Zarr store's ``resolution`` were carried over: a 0.005 degree or
    5 m output said the input's 0.01 degree or 10 m (``geosr.upscale`` already left them out)."""
    import rioxarray  # noqa: F401  (the .rio accessor)

    values = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    lat, lon = ("lat", LAT, {"units": "degrees_north"}), ("lon", LON, {"units": "degrees_east"})
    da = xr.DataArray(values, dims=("lat", "lon"), coords={"lat": lat, "lon": lon}, name="tsm")
    da = da.rio.write_crs("EPSG:4326").rio.write_transform(GRID)
    ds = da.assign_attrs(resolution=0.01, SENSOR="test").to_dataset()
    ds.attrs.update(geospatial_lat_resolution="0.01 degree", title="ocean")
    ds.to_netcdf(tmp_path / "grid.nc", engine="scipy")
    ds.to_zarr(tmp_path / "grid.zarr")
    for name in ("grid.nc", "grid.zarr"):
        out = geosr.upscale_file(tmp_path / name, tmp_path / f"{name}_x2.tif", scale=2, model="bicubic")
        with rasterio.open(out) as f:
            tags = {**f.tags(), **f.tags(1)}
        assert any(key.endswith("title") for key in tags) and any(k.endswith("SENSOR") for k in tags), tags
        stale = [k for k in tags if k.rsplit("#", 1)[-1] in ("GeoTransform", "resolution")]
        assert not stale and not any("geospatial_lat_resolution" in k for k in tags), (name, tags)


def test_two_variables_read_in_one_thread_each_give_their_own_pixels(tmp_path: Path, monkeypatch) -> None:
    """The band of strips a reading thread keeps (a strip file whose band GDAL's cache cannot hold,
    as a small GDAL_CACHEMAX or a wide scene makes it) was keyed by path and bands only: on a
    Dask worker, whose threads keep it between runs, the run of ``tsm`` after one of ``chl``
    read ``chl``'s pixels."""
    from geosr.io import scene as scenes
    from geosr.tiling import Window

    values = variables(tmp_path / "ocean.nc")
    monkeypatch.setattr(scenes, "gdal_cache_bytes", lambda: 0)  # every strip band is kept
    window = Window(10, 10, 16, 16)
    try:
        for name in ("chl", "tsm"):
            scene = scenes.open_scene(str(tmp_path / "ocean.nc"), variable=name)
            assert scene.block_rows  # netCDF-3 is read in strips
            read = scenes.read_window(scene, window)[0]
            np.testing.assert_array_equal(read, values[name][10:26, 10:26])
    finally:
        scenes.close_datasets()


def test_the_default_outputs_of_two_variables_are_named_by_them(tmp_path: Path, capsys, monkeypatch) -> None:
    """``geosr run ocean.nc --variable tsm`` and ``--variable chl`` both wrote ocean_x2.tif: the
    second run was refused ('already exists'), and with --overwrite replaced the first's output."""
    variables(tmp_path / "ocean.nc")
    args = ["run", str(tmp_path / "ocean.nc"), "--scale", "2", "--model", "bicubic"]
    for name in ("tsm", "chl"):
        code, err = run_cli([*args, "--variable", name], capsys, monkeypatch)
        assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ocean.nc", "ocean_chl_x2.tif", "ocean_tsm_x2.tif"]
    in_a_store = default_output(tmp_path / "p.zarr", 2, "/measurements/b02")
    assert in_a_store == tmp_path / "p_measurements_b02_x2.tif"


@pytest.mark.parametrize("inner", ["inner.tif", "sub/inner.tif", "inner.zarr"])
def test_an_output_inside_a_zarr_store_is_refused(
    make_raster, tmp_path: Path, capsys, monkeypatch, inner: str
) -> None:
    """-o st.zarr/inner.tif wrote a GeoTIFF inside a Zarr store, which a later -o st.zarr
    --overwrite deleted with the store (and zarr and GDAL read the store without it)."""
    src = make_raster(count=1, height=30, width=30)
    store = tmp_path / "st.zarr"
    code, err = run_cli(
        ["run", str(src), "-o", str(store), "-s", "2", "--model", "bicubic"], capsys, monkeypatch
    )
    assert code in (0, None), err
    (store / "sub").mkdir()
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    code, err = run_cli(
        ["run", str(src), "-o", str(store / inner), "-s", "2", "--model", "bicubic"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, f"inside the Zarr store {store}", "write it beside the store")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before


def test_an_output_beside_a_zarr_store_through_dot_dot_is_written(
    make_raster, tmp_path: Path, capsys, monkeypatch
) -> None:
    """-o st.zarr/../out.tif names a file beside the store: not refused as inside it."""
    src = make_raster(count=1, height=30, width=30)
    store = tmp_path / "st.zarr"
    code, err = run_cli(
        ["run", str(src), "-o", str(store), "-s", "2", "--model", "bicubic"], capsys, monkeypatch
    )
    assert code in (0, None), err
    code, err = run_cli(
        ["run", str(src), "-o", f"{store}/../out.tif", "-s", "2", "--model", "bicubic"], capsys, monkeypatch
    )
    assert code in (0, None), err
    assert (tmp_path / "out.tif").is_file()


@pytest.mark.parametrize("name", ["out.tif ", "out.zarr\t"])
def test_an_output_name_ending_in_white_space_says_so(
    make_raster, tmp_path: Path, capsys, monkeypatch, name: str
) -> None:
    """-o 'out.tif ' was told "unsupported output suffix '.tif '", the space hard to see."""
    src = make_raster(count=1, height=30, width=30)
    code, err = run_cli(
        ["run", str(src), "-o", str(tmp_path / name), "-s", "2", "--model", "bicubic"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "ends in white space after", repr(str(tmp_path / name.rstrip())))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize("zarr_format", ["ZARR_V2", "ZARR_V3"])
def test_a_zarr_store_gdal_wrote_gives_the_pixels_and_grid_of_its_geotiff(
    tmp_path: Path, capsys, monkeypatch, zarr_format: str
) -> None:
    """``gdal_translate -of Zarr`` (rasterio's copy here: GDAL 3.10's Zarr driver) writes a raster
    as one array on dimensions Y/X and Band (first or last, as the GeoTIFF was interleaved), its
    CRS in a ``_CRS`` attribute for one band, and only in ``pam.aux.xml`` for several; its v3 form
    has no codecs.  geosr refused each: "no raster variable of measurements with y/x or lat/lon
    dimensions", and a v3 one "not a readable Zarr store".  ``geosr run store.zarr`` now gives the
    pixels, grid and nodata of a run of the GeoTIFF the store was made from."""
    import rasterio.shutil

    from geosr.io.scene import open_scene

    grid = Affine(10, 0, 4e5, 0, -10, 5e6)
    # GDAL 3.10 sets no nodata on a store of several bands ('SetRawNoDataValue() not implemented').
    for count, nodata, interleave in ((3, None, "pixel"), (4, None, "band"), (1, 0, "band")):
        tif, store = tmp_path / f"scene{count}.tif", tmp_path / f"scene{count}.zarr"
        data = (np.arange(count * 30 * 40).reshape(count, 30, 40) % 997).astype(np.uint16)
        profile = {"driver": "GTiff", "crs": "EPSG:32633", "transform": grid, "interleave": interleave}
        profile.update(width=40, height=30, count=count, dtype="uint16", nodata=nodata)
        with rasterio.open(tif, "w", **profile) as f:
            f.write(data)
        rasterio.shutil.copy(tif, store, driver="Zarr", FORMAT=zarr_format)
        code, err = run_cli(["run", str(store), "--scale", "2", "--model", "bicubic"], capsys, monkeypatch)
        assert code == 0, err
        ref = geosr.upscale_file(tif, tmp_path / f"ref{count}.tif", scale=2, model="bicubic")
        with rasterio.open(tmp_path / f"scene{count}_x2.tif") as out, rasterio.open(ref) as want:
            np.testing.assert_array_equal(out.read(), want.read())
            assert (out.crs, out.transform, out.nodata) == (want.crs, grid @ Affine.scale(0.5), nodata)
    # The store's one array is its variable, as geosr names it for GDAL's ZARR:"scene3.zarr":/scene3.
    assert open_scene(tmp_path / "scene3.zarr", variable="scene3").count == 3
    with pytest.raises(InputError, match="no variable 'nir'; the store holds scene3"):
        open_scene(tmp_path / "scene3.zarr", variable="nir")
    if zarr_format == "ZARR_V2":  # zipped, it is read by zarr-python, which takes v2 only
        import shutil

        zipped = shutil.make_archive(str(tmp_path / "scene1.zarr"), "zip", tmp_path / "scene1.zarr")
        with pytest.raises(InputError, match=r"a store GDAL wrote \(scene1 on its Y/X dimensions\).*unzip"):
            open_scene(zipped)
