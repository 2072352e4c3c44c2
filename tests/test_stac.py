"""--stac writes a valid STAC Item (offline validation); a STAC Item is accepted as input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import shapely
from odc.geo import CRS
from odc.geo.geobox import GeoBox

import geosr
from geosr.errors import GeosrWarning, InputError, OutputError
from geosr.grid import crs_label
from geosr.stac import validate_item, wgs84_footprint
from tests.conftest import coordinate_pattern, in_an_ascii_locale, item_of

RASTER_V2 = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"


def test_run_writes_a_valid_item_that_round_trips_as_input(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=2, descriptions=("B04", "B08"), height=40, width=50)
    out = geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", stac=True)
    item_file = tmp_path / "sr.stac.json"
    item = pystac.Item.from_file(str(item_file))
    assert validate_item(item)  # the schemas it was validated against: core + projection
    assert any("projection" in uri for uri in validate_item(item))
    props = item.properties
    assert props["proj:code"] == "EPSG:32633"
    assert props["proj:shape"] == [80, 100]
    with rasterio.open(out) as f:
        assert props["proj:transform"] == pytest.approx(list(f.transform)[:6])
        assert props["proj:bbox"] == pytest.approx(list(f.bounds))
    assert props["geosr:model"] == "bicubic" and props["geosr:scale"] == 2
    asset = item.assets["data"]
    assert asset.roles == ["data"] and "cloud-optimized" in asset.media_type
    assert [link.href for link in item.links if link.rel == "derived_from"] == [str(src)]
    lon, lat = item.geometry["coordinates"][0][0]
    assert 12 < lon < 13 and 52 < lat < 54

    # The Item as input: its asset is the output, super-resolved once more.
    again = geosr.upscale_file(item_file, tmp_path / "again.tif", scale=2, model="bicubic")
    with rasterio.open(again) as f:
        assert (f.width, f.height) == (200, 160)
        assert f.descriptions == ("B04", "B08")
    # So is the Item of a Zarr output: before, 'the Item has 0 raster assets (data)'.
    # (--overwrite: its Item replaces the COG's, which shares the name)
    geosr.upscale_file(src, tmp_path / "sr.zarr", scale=2, model="bicubic", stac=True, overwrite=True)
    cube = geosr.upscale_file(tmp_path / "sr.stac.json", tmp_path / "again_z.tif", scale=2, model="bicubic")
    with rasterio.open(cube) as f:
        assert (f.width, f.height) == (200, 160)


@pytest.mark.parametrize(("suffix", "media"), [(".TIF", "image/tiff"), (".ZARR", "application/vnd+zarr")])
def test_an_uppercase_suffix_gives_the_media_type_of_the_format_written(
    make_raster, tmp_path: Path, suffix: str, media: str
) -> None:
    # The sink takes a suffix in any case; the Item of an OUT.ZARR store called it a COG.
    src = make_raster(height=20, width=20)
    geosr.upscale_file(src, tmp_path / f"sr{suffix}", scale=2, model="bicubic", stac=True)
    item = json.loads((tmp_path / "sr.stac.json").read_text())
    assert item["assets"]["data"]["type"].startswith(media), item["assets"]["data"]["type"]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_the_item_describes_each_band_of_the_output(make_raster, tmp_path: Path, suffix: str) -> None:
    """The Item's asset had no bands: a STAC client (odc-stac, stackstac) took the output's
    nodata for data and could not name its bands."""
    src = make_raster(count=2, descriptions=("B04", "B08"), nodata=0, height=40, width=50)
    geosr.upscale_file(src, tmp_path / f"sr{suffix}", scale=2, model="bicubic", stac=True)
    item = pystac.Item.from_file(str(tmp_path / "sr.stac.json"))
    validate_item(item)
    assert item.assets["data"].extra_fields["bands"] == [
        {"name": "B04", "data_type": "uint16", "nodata": 0},
        {"name": "B08", "data_type": "uint16", "nodata": 0},
    ]
    floats = make_raster("f.tif", dtype="float32", height=40, width=50)
    geosr.upscale_file(floats, tmp_path / f"f_x2{suffix}", scale=2, model="bicubic", stac=True)
    item = json.loads((tmp_path / "f_x2.stac.json").read_text())
    assert item["assets"]["data"]["bands"] == [{"data_type": "float32", "nodata": "nan"}]


def test_the_item_and_quicklook_of_another_output_are_kept(make_raster, tmp_path: Path) -> None:
    # A COG and a Zarr output of one scene share a stem, so their Items share a name:
    # the second run replaced the first's Item (and quicklook) without --overwrite.
    src = make_raster(height=40, width=50)
    geosr.upscale_file(src, tmp_path / "sr.zarr", scale=2, model="bicubic", stac=True, quicklook=True)
    item_file, png = tmp_path / "sr.stac.json", tmp_path / "sr.quicklook.png"
    before = item_file.read_bytes(), png.read_bytes()
    for extras in ({"stac": True}, {"quicklook": True}):
        with pytest.raises(OutputError, match=r"already exists .*pass overwrite=True"):
            geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", **extras)
        assert not (tmp_path / "sr.tif").exists()
    assert (item_file.read_bytes(), png.read_bytes()) == before
    geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", stac=True, overwrite=True)
    assert pystac.Item.from_file(str(item_file)).assets["data"].href == "./sr.tif"


def test_item_with_single_band_assets_stacks_by_name(make_raster, tmp_path: Path) -> None:
    assets = {}
    for i, name in enumerate(("B02", "B03", "B04")):
        path = make_raster(f"{name}.tif", count=1, height=30, width=30)
        with rasterio.open(path, "r+") as f:
            f.write((f.read() + 100 * i).astype("uint16"))
        assets[name] = {"href": f"./{name}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
    doc = {
        "type": "Feature",
        "stac_version": "1.1.0",
        "id": "s2",
        "geometry": None,
        "properties": {"datetime": "2022-03-01T10:00:00Z"},
        "links": [],
        "assets": assets,
    }
    item = tmp_path / "item.json"
    item.write_text(json.dumps(doc))
    with pytest.raises(
        InputError, match=r"with asset KEY, or stack single-band assets with bands='KEY1,KEY2,\.\.\.'"
    ):
        geosr.upscale_file(item, tmp_path / "x.tif", scale=2, model="bicubic")
    out = geosr.upscale_file(
        item, tmp_path / "rgb.tif", scale=2, model="bicubic", bands="B04,B03,B02", stac=True
    )
    with rasterio.open(out) as f, rasterio.open(tmp_path / "B04.tif") as red:
        assert f.descriptions == ("B04", "B03", "B02")
        mean = f.read(1).astype(float).reshape(30, 2, 30, 2).mean(axis=(1, 3))
        assert np.abs(mean - red.read(1)).max() < 5
    written = pystac.Item.from_file(str(tmp_path / "rgb.stac.json"))
    assert written.datetime.isoformat().startswith("2022-03-01T10:00:00")
    # The stack is a temporary VRT, new in each run; the Item stands for it.  Before, the
    # provenance named the deleted VRT and every run counted as another job (no --resume).
    assert [link.href for link in written.links if link.rel == "derived_from"] == [str(item)]
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_SOURCE"] == "item.json"
    finished = out.stat().st_mtime_ns
    geosr.upscale_file(item, out, scale=2, model="bicubic", bands="B04,B03,B02", stac=True, resume=True)
    assert out.stat().st_mtime_ns == finished  # the same job: kept, not computed again
    one = geosr.upscale_file(item, tmp_path / "b3.tif", scale=2, model="bicubic", asset="B03")
    with rasterio.open(one) as f:
        assert f.count == 1
    with pytest.raises(InputError, match="no asset 'B99'"):
        geosr.upscale_file(item, tmp_path / "y.tif", scale=2, model="bicubic", asset="B99")


def test_a_stack_of_assets_leaves_no_folder_behind_its_call(make_raster, tmp_path: Path, monkeypatch) -> None:
    """Each --bands stack was a VRT in a temporary folder removed only when the process exited:
    a notebook or service calling upscale_file in a loop kept one folder (or two, with the
    quicklook's) per call.  They go when the call ends, a failed one's too, and geosr compare's.
    """
    import tempfile

    from geosr.quicklook import compare_files

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))  # mkdtemp's folder, this test's alone
    item = item_of(
        tmp_path, {name: str(make_raster(f"{name}.tif", height=30, width=30)) for name in ("B04", "B03")}
    )
    out = geosr.upscale_file(
        item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B03", quicklook=True
    )
    assert (tmp_path / "x2.quicklook.png").exists()
    with pytest.raises(OutputError, match="already exists"):
        geosr.upscale_file(item, out, scale=2, model="bicubic", bands="B04,B03")
    assert list(temporary.iterdir()) == []
    # geosr compare of the Item stacks its assets as the run did.
    assert compare_files(str(item), str(out), tmp_path / "c.png").exists()
    assert list(temporary.iterdir()) == []


def test_a_stacked_item_gets_its_quicklook_and_compares(make_raster, tmp_path: Path) -> None:
    # Before, the quicklook opened the Item JSON with GDAL: the run failed after writing its
    # output ("item.json: not a readable raster", exit 2), and so did geosr compare item.json.
    from geosr.quicklook import compare_files, compare_panels

    assets = {}
    for i, name in enumerate(("B02", "B03", "B04", "B08")):
        path = make_raster(f"{name}.tif", height=30, width=36)
        with rasterio.open(path, "r+") as f:
            f.write((f.read() + 5000 * i).astype("uint16"))
        assets[name] = {"href": f"./{name}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
    doc = {"type": "Feature", "stac_version": "1.1.0", "id": "s2", "geometry": None,
           "properties": {"datetime": "2022-03-01T10:00:00Z"}, "links": [], "assets": assets}  # fmt: skip
    item = tmp_path / "item.json"
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "rgb.tif", scale=2, model="bicubic", bands="B04,B03,B02",
                             quicklook=True)  # fmt: skip
    assert (tmp_path / "rgb.quicklook.png").exists()
    geosr_panel, bicubic_panel = compare_panels(str(item), str(out))[0]
    assert np.nanmax(np.abs(geosr_panel - bicubic_panel)) < 500  # the same bands, in the same order
    single = geosr.upscale_file(item, tmp_path / "b08.tif", scale=2, model="bicubic", asset="B08")
    with pytest.raises(InputError, match="give that asset's raster file as LR"):
        compare_files(str(item), str(single), tmp_path / "c.png")


def test_validation_catches_a_bad_projection_field(make_raster, tmp_path: Path) -> None:
    src = make_raster(height=20, width=20)
    geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", stac=True)
    item = pystac.Item.from_file(str(tmp_path / "sr.stac.json"))
    item.properties["proj:shape"] = [1, 2, 3]
    with pytest.raises(pystac.errors.STACValidationError):
        validate_item(item)


def test_stacked_assets_keep_their_own_nodata(make_raster, tmp_path: Path) -> None:
    """Before, the stack gave every band the first asset's nodata: B08's nodata pixels (another
    value) were read as data and B02's zeros (it declares none) as nodata."""
    assets, data = {}, {}
    for name, nodata in (("B04", 0), ("B08", 65535), ("B02", None)):
        values = np.full((30, 30), 1000 + len(assets), np.uint16)
        values[:6] = 0 if name != "B08" else 65535  # B02's zeros are data: it declares no nodata
        data[name] = values
        make_raster(f"{name}.tif", data=values[None], nodata=nodata)
        assets[name] = {"href": f"./{name}.tif", "type": "image/tiff; application=geotiff", "roles": ["data"]}
    doc = {"type": "Feature", "stac_version": "1.1.0", "id": "s2", "geometry": None,
           "properties": {"datetime": "2022-03-01T10:00:00Z"}, "links": [], "assets": assets}  # fmt: skip
    item = tmp_path / "item.json"
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B08,B02")
    with rasterio.open(out) as f:
        assert f.nodata == 0
        sr = f.read()
    top = np.zeros((60, 60), bool)
    top[:12] = True
    assert (sr[0][top] == 0).all() and (sr[1][top] == 0).all()  # nodata in both, as the output's 0
    assert (sr[0][~top] == 1000).all() and (sr[1][~top] == 1001).all()
    assert (sr[2] != 0).all()  # B02's zeros were data: the output moves them off its nodata value


def test_assets_given_as_gdal_mapped_urls_stack(make_raster, tmp_path: Path) -> None:
    """rasterio maps zip:// (s3://, gs://) hrefs to GDAL's /vsizip/ (/vsis3/...) for each file it
    opens, but the stack's VRT named them as given: "reading the raster failed (...); the file is
    probably truncated or corrupt" (GDAL: "zip://...: No such file or directory")."""
    import zipfile

    with zipfile.ZipFile(tmp_path / "bands.zip", "w") as archive:
        for name in ("B04", "B03"):
            archive.write(make_raster(f"{name}.tif", height=30, width=30), f"{name}.tif")
    item = item_of(tmp_path, {name: f"zip://{tmp_path}/bands.zip!/{name}.tif" for name in ("B04", "B03")})
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B03")
    with rasterio.open(out) as f:
        assert f.descriptions == ("B04", "B03")


def test_assets_given_as_archive_urls_with_escapes_stack(make_raster, tmp_path: Path) -> None:
    """`zip:///data/my%20dir/bands.zip!/B04.tif` hrefs stacked by --bands were "asset 'B04' ...
    cannot be read ('/vsizip//data/my%20dir/bands.zip/B04.tif' does not exist ...)": rasterio keeps
    the escapes (a single asset was read, through the input's own mapping)."""
    import zipfile
    from urllib.parse import quote

    (tmp_path / "my dir").mkdir()
    archive = tmp_path / "my dir" / "bands.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name in ("B04", "B03"):
            zipped.write(make_raster(f"{name}.tif", height=30, width=30), f"{name} x.tif")
    hrefs = {name: f"zip://{quote(str(archive))}!/{name}%20x.tif" for name in ("B04", "B03")}
    out = geosr.upscale_file(
        item_of(tmp_path, hrefs), tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B03"
    )
    with rasterio.open(out) as f:
        assert f.descriptions == ("B04", "B03") and f.width == 60


def test_a_relative_href_with_escapes_is_decoded(make_raster, tmp_path: Path) -> None:
    # Before: ".../B%2004.tif: no such file or directory; check the path".
    make_raster("B 04.tif", height=30, width=30)
    item = item_of(tmp_path, {"B04": "./B%2004.tif"})
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert f.shape == (60, 60)


def test_a_missing_asset_file_names_the_item(tmp_path: Path) -> None:
    # Before: ".../B04.tif: no such file or directory; check the path", a path the user never typed.
    item = item_of(tmp_path, {"B04": "./B04.tif"})
    with pytest.raises(InputError, match=r"item.json: /.*/B04.tif: no such file"):
        geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic")


def test_stacked_assets_of_other_data_types_keep_their_values(make_raster, tmp_path: Path) -> None:
    """Before, the stack took the first asset's type: a float reflectance band stacked after a
    uint16 one came out all 0, and an int16 band's negative values 0."""
    make_raster("B04.tif", height=30, width=30)
    make_raster("B08.tif", data=np.full((1, 30, 30), 0.25, np.float32))
    make_raster("B11.tif", data=np.full((1, 30, 30), -500, np.int16))
    item = item_of(tmp_path, {k: f"./{k}.tif" for k in ("B04", "B08", "B11")})
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B08,B11")
    with rasterio.open(out) as f:
        assert f.dtypes[0] == "float32"
        assert np.allclose(f.read(2), 0.25) and np.allclose(f.read(3), -500)


def test_stacked_assets_of_a_type_not_supported_are_one_line(make_raster, tmp_path: Path) -> None:
    # Before, a KeyError ('int64') traceback.
    make_raster("B04.tif", height=30, width=30)
    make_raster("SCL.tif", data=np.full((1, 30, 30), -5, np.int64))
    item = item_of(tmp_path, {"B04": "./B04.tif", "SCL": "./SCL.tif"})
    with pytest.raises(InputError, match=r"stacked \(.SCL. int64\) need int64, which is not supported"):
        geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="SCL")
    assert not (tmp_path / "x2.tif").exists()


def test_stacked_assets_without_a_crs_are_one_line(make_raster, tmp_path: Path) -> None:
    # Before, an AttributeError traceback ('NoneType' object has no attribute 'to_wkt').
    make_raster("B04.tif", height=30, width=30, crs=None)
    make_raster("B03.tif", height=30, width=30, crs=None)
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"})
    with pytest.raises(
        InputError, match=r"item.json: asset 'B04' \(.*B04.tif\) has no CRS.*gdal_edit.py -a_srs"
    ):
        geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B03")


def test_assets_given_as_file_urls_stack(make_raster, tmp_path: Path) -> None:
    # Before, "reading the raster failed (...); the file is probably truncated or corrupt", and
    # a URL's %20 for a space was "no such file" (with --asset too).
    hrefs = {name: make_raster(f"{name} x.tif", height=30, width=30).as_uri() for name in ("B04", "B03")}
    item = item_of(tmp_path, hrefs)
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B03")
    with rasterio.open(out) as f, rasterio.open(tmp_path / "B03 x.tif") as green:
        assert f.descriptions == ("B04", "B03")
        assert (
            np.abs(f.read(2).astype(float).reshape(30, 2, 30, 2).mean(axis=(1, 3)) - green.read(1)).max() < 5
        )


@pytest.mark.parametrize("bands", [None, "B04,B03"])
def test_an_asset_href_of_another_hosts_file_url_is_refused(
    make_raster, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch, bands: str | None
) -> None:
    """`file://nas01/data/B04.tif` names nas01's file, and was read as this machine's
    /data/B04.tif, whatever file that is (with --asset, or stacked by --bands)."""
    from tests.test_batch import run_cli

    hrefs = {
        name: f"file://nas01{make_raster(f'{name}.tif', height=30, width=30)}" for name in ("B04", "B03")
    }
    item = item_of(tmp_path, hrefs if bands else {"B04": hrefs["B04"]})
    out = tmp_path / "x2.tif"
    chosen = ["--bands", bands] if bands else []
    code, _, err = run_cli(
        ["run", str(item), "-o", str(out), "--scale", "2", "--model", "bicubic", *chosen], capfd, monkeypatch
    )
    assert code == 2 and not out.exists(), err
    assert err.startswith(f"error: {item}: the asset href {hrefs['B04']}: ") and "'nas01'" in err, err
    assert err.count("error:") == 1 and "Traceback" not in err, err


def test_bands_by_the_eo_bands_names_of_one_multiband_asset(make_raster, tmp_path: Path) -> None:
    # Before: "visual.tif: no band is described as 'B03'", the names being the Item's, not the file's.
    make_raster("visual.tif", count=3, height=30, width=30)
    item = item_of(tmp_path, {"visual": "./visual.tif"})
    doc = json.loads(item.read_text())
    doc["assets"]["visual"]["eo:bands"] = [{"name": name} for name in ("B04", "B03", "B02")]
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B02,B03")
    with rasterio.open(out) as f, rasterio.open(tmp_path / "visual.tif") as visual:
        assert f.descriptions == ("B02", "B03")
        mean = f.read().astype(float).reshape(2, 30, 2, 30, 2).mean(axis=(2, 4))
        assert np.abs(mean - visual.read([3, 2])).max() < 5


def test_bands_by_their_eo_common_names(make_raster, tmp_path: Path) -> None:
    """A Planetary Computer Sentinel-2 Item keys its assets B04, B03, B02 and names their
    colours in eo:bands: ``--bands red,green,blue`` was "no raster asset of the Item is named
    'RED', 'GREEN', 'BLUE'"; likewise the common names of one multi-band asset's bands."""
    common = {"B04": "red", "B03": "green", "B02": "blue"}
    hrefs = {key: f"./{key}.tif" for key in common}
    for key in common:
        make_raster(f"{key}.tif", data=np.full((1, 20, 20), 100 * int(key[-1]), np.uint16))
    make_raster("visual.tif", data=np.stack([np.full((20, 20), v, np.uint8) for v in (4, 3, 2)]))
    item = item_of(tmp_path, {**hrefs, "visual": "./visual.tif"})
    doc = json.loads(item.read_text())
    for key, name in common.items():
        doc["assets"][key]["eo:bands"] = [{"name": key, "common_name": name}]
    doc["assets"]["visual"]["roles"] = ["visual"]
    doc["assets"]["visual"]["bands"] = [{"name": k, "eo:common_name": f"{n}-v"} for k, n in common.items()]
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "rgb.tif", scale=2, model="bicubic", bands="red,green,blue")
    with rasterio.open(out) as f:
        assert [int(np.median(f.read(b))) for b in (1, 2, 3)] == [400, 300, 200]
    out = geosr.upscale_file(item, tmp_path / "v.tif", scale=2, model="bicubic", bands="blue-v,red-v")
    with rasterio.open(out) as f:
        assert [int(np.median(f.read(b))) for b in (1, 2)] == [2, 4]


def test_stacked_bands_take_their_colours_from_the_common_names(make_raster, tmp_path: Path) -> None:
    """A stack of an Item's B04, B03, B02 (common names red, green, blue) was written grey and
    undefined, which viewers draw in grey; the Item says which band is which colour."""
    common = {"B04": "red", "B03": "green", "B02": "blue", "B08": "nir"}
    for key in common:
        make_raster(f"{key}.tif", data=np.full((1, 20, 20), 100 * int(key[-1]), np.uint16))
    item = item_of(tmp_path, {key: f"./{key}.tif" for key in common})
    doc = json.loads(item.read_text())
    for key, name in common.items():
        doc["assets"][key]["eo:bands"] = [{"name": key, "common_name": name}]
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "rgb.tif", scale=2, model="bicubic", bands="B04,B03,B02")
    with rasterio.open(out) as f:
        assert [c.name for c in f.colorinterp] == ["red", "green", "blue"]
    out = geosr.upscale_file(item, tmp_path / "bn.tif", scale=2, model="bicubic", bands="blue,B08")
    with rasterio.open(out) as f:
        assert [c.name for c in f.colorinterp] == ["blue", "undefined"]


def test_bands_naming_no_asset_say_which(make_raster, tmp_path: Path) -> None:
    # Before: "the Item has 2 raster assets (B04, B03); choose one with --asset KEY, or stack
    # single-band assets with --bands KEY1,KEY2,...", which had been given.
    make_raster("B04.tif", height=30, width=30)
    make_raster("B03.tif", height=30, width=30)
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"})
    with pytest.raises(
        InputError, match=r"item\.json: bands='B04,B8A': no raster asset of the Item is named 'B8A'"
    ):
        geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B04,B8A")


def test_stacked_assets_on_other_grids_say_how_they_differ(make_raster, tmp_path: Path) -> None:
    # Before, a shifted or reprojected asset of the same size was "on another grid than 'B04'
    # (30 x 30 px vs 30 x 30); stack assets of one resolution", which they were.
    from affine import Affine

    make_raster("B04.tif", height=30, width=30)
    make_raster("B03.tif", height=30, width=30, transform=Affine(10.0, 0.0, 335450.0, 0.0, -10.0, 5866490.0))
    make_raster("B02.tif", height=30, width=30, crs="EPSG:32632")
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif", "B02": "./B02.tif"})
    for bands, says in (("B04,B03", r"upper left corner \(335450, 5866490\) vs \(335440, 5866490\)"),
                        ("B04,B02", "CRS EPSG:32632 vs EPSG:32633")):  # fmt: skip
        with pytest.raises(
            InputError, match=f"asset '{bands[-3:]}' is on another grid than 'B04' \\({says}\\)"
        ):
            geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", bands=bands)


def test_the_items_raster_bands_nodata_serves_a_file_without_one(make_raster, tmp_path: Path) -> None:
    """An asset whose file declares no nodata but whose Item does (raster:bands): its 0 fill
    was super-resolved as data, ringing into the valid pixels beside it."""
    values = np.full((1, 30, 30), 1000, np.uint16)
    values[:, :, :10] = 0
    for name in ("B04", "B03"):
        make_raster(f"{name}.tif", data=values)
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"})
    doc = json.loads(item.read_text())
    for asset in doc["assets"].values():
        asset["raster:bands"] = [{"nodata": 0, "data_type": "uint16"}]
    item.write_text(json.dumps(doc))
    for name, options in (("one", {"asset": "B04"}), ("stack", {"bands": "B04,B03"})):
        out = geosr.upscale_file(item, tmp_path / f"{name}.tif", scale=2, model="bicubic", **options)
        with rasterio.open(out) as f:
            sr = f.read()
            assert f.nodata == 0, name
        assert (sr[:, :, :20] == 0).all() and (sr[:, :, 20:] == 1000).all(), name
    # A value the file's type cannot hold is left out (no pixel has it), not refused as the file's.
    doc["assets"]["B04"]["raster:bands"] = [{"nodata": -9999}]
    item.write_text(json.dumps(doc))
    with pytest.warns(GeosrWarning, match="declares no nodata"):
        geosr.upscale_file(item, tmp_path / "other.tif", scale=2, model="bicubic", asset="B04")


def test_compare_takes_the_items_raster_bands_nodata_as_the_run_did(make_raster, tmp_path: Path) -> None:
    # geosr compare item.json read the file's (undeclared) nodata: its bicubic panel showed the
    # fill as data, ringing into the valid pixels, while the run and its geosr panel did not.
    from geosr.quicklook import compare_panels

    values = np.full((1, 30, 30), 1000, np.uint16)
    values[:, :, :10] = 0
    make_raster("B04.tif", data=values)
    item = item_of(tmp_path, {"B04": "./B04.tif"})
    doc = json.loads(item.read_text())
    doc["assets"]["B04"]["raster:bands"] = [{"nodata": 0}]
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic")
    bicubic = compare_panels(str(item), str(out), window="0,0,30,30")[0][1]
    assert np.isnan(bicubic[:, :, :20]).all() and np.nanmax(np.abs(bicubic - 1000)) < 1


def test_the_output_item_never_replaces_the_input_item(make_raster, tmp_path: Path) -> None:
    # `geosr run scene.stac.json -o scene.tif --stac --overwrite` replaced the input Item with the
    # output's ("pass --overwrite" was the advice without it): --overwrite is for earlier outputs.
    from geosr.errors import OptionError

    make_raster("B04.tif", height=30, width=30)
    item = item_of(tmp_path, {"B04": "./B04.tif"}).rename(tmp_path / "scene.stac.json")
    before = item.read_bytes()
    for overwrite in (False, True):
        with pytest.raises(OptionError, match=r"scene\.stac\.json: the STAC Item would overwrite the input;"):
            geosr.upscale_file(
                item, tmp_path / "scene.tif", scale=2, model="bicubic", stac=True, overwrite=overwrite
            )
    assert item.read_bytes() == before and not (tmp_path / "scene.tif").exists()


def test_an_input_without_a_date_gets_the_time_of_the_run(make_raster, tmp_path: Path) -> None:
    """As the README says: STAC requires a datetime, so a dateless input gets the run's, as ``created``."""
    import datetime as dt

    src = make_raster(tmp_path / "in.tif", width=16, height=16)
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic", stac=True)
    props = json.loads((tmp_path / "out.stac.json").read_text())["properties"]
    assert props["datetime"] == props["created"]
    assert dt.datetime.fromisoformat(props["datetime"]) >= before


def test_a_time_series_item_spans_its_dates(tmp_path: Path) -> None:
    """An OLCI-like cube of dates was given the processing time as its datetime; it covers
    its first to last date (STAC start/end_datetime), and one date is the datetime."""
    import xarray as xr

    times = np.array(["2017-01-30T10:46:33", "2017-01-16T10:09:21"], dtype="datetime64[ns]")
    lat = 52.5 - 0.0025 * (np.arange(30) + 0.5)
    lon = 0.0025 * (np.arange(30) + 0.5)
    values = np.random.default_rng(0).random((2, 30, 30)).astype("float32")
    cube = xr.DataArray(values, dims=("time", "lat", "lon"), coords={"time": times, "lat": lat, "lon": lon})
    store = tmp_path / "cube.zarr"
    cube.to_dataset(name="chl").to_zarr(store, zarr_format=3)
    geosr.upscale_file(store, tmp_path / "sr.zarr", scale=2, model="bicubic", stac=True)
    props = json.loads((tmp_path / "sr.stac.json").read_text())["properties"]
    assert props["datetime"] is None
    assert (
        props["start_datetime"] == "2017-01-16T10:09:21Z" and props["end_datetime"] == "2017-01-30T10:46:33Z"
    )
    one = tmp_path / "one.zarr"
    cube.isel(time=[0]).to_dataset(name="chl").to_zarr(one, zarr_format=3)
    geosr.upscale_file(one, tmp_path / "one_x2.tif", scale=2, model="bicubic", stac=True)
    props = json.loads((tmp_path / "one_x2.stac.json").read_text())["properties"]
    assert props["datetime"] == "2017-01-30T10:46:33Z" and "start_datetime" not in props


def test_an_item_of_a_range_of_dates_gives_its_range(make_raster, tmp_path: Path) -> None:
    """A composite's Item (a null datetime, start_datetime and end_datetime) gave its output the
    processing time as datetime, or the file's own TIFF date."""
    make_raster("B04.tif", height=30, width=30, tags={"TIFFTAG_DATETIME": "2023:05:05 00:00:00"})
    span = {"start_datetime": "2022-01-01T00:00:00Z", "end_datetime": "2022-01-31T00:00:00Z"}
    item = item_of(tmp_path, {"B04": "./B04.tif"}, datetime=None, **span)
    out = geosr.upscale_file(item, tmp_path / "x2.tif", scale=2, model="bicubic", stac=True)
    props = json.loads((tmp_path / "x2.stac.json").read_text())["properties"]
    assert props["datetime"] is None and props["start_datetime"] == span["start_datetime"]
    assert props["end_datetime"] == span["end_datetime"]
    # The output carries the range on, as it carries a datetime: its own Item has it too.
    geosr.upscale_file(out, tmp_path / "x4.tif", scale=2, model="bicubic", stac=True)
    props = json.loads((tmp_path / "x4.stac.json").read_text())["properties"]
    assert (props["datetime"], props["end_datetime"]) == (None, span["end_datetime"])


def test_a_stac_document_that_is_not_one_item_is_named(tmp_path: Path) -> None:
    # Before, each was "not a readable raster (... not recognized ...); check that the file
    # is complete", as for a corrupt file.
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "a", "geometry": None,
            "properties": {"datetime": "2022-03-01T10:00:00Z"}, "links": []}  # fmt: skip
    documents = {
        "search.json": ({"type": "FeatureCollection", "features": [item, item]}, "a collection of 2"),
        "collection.json": (
            {"type": "Collection", "stac_version": "1.1.0", "id": "c", "links": []},
            "a STAC Collection, not an Item",
        ),
        "bare.json": (item, "a STAC Item without assets"),
    }
    for name, (doc, says) in documents.items():
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        with pytest.raises(InputError, match=f"{name}: {says}"):
            geosr.upscale_file(path, tmp_path / "x.tif", scale=2, model="bicubic")


def test_a_json_that_is_not_an_item_is_named_not_called_a_raster(make_raster, tmp_path: Path) -> None:
    # Before, each was "not a readable raster (... not recognized as being in a supported file
    # format.); check that the file is complete and in a format GDAL reads".
    from geosr.quicklook import compare_files

    raster = make_raster(height=30, width=30)  # the LR is refused before the SR is looked at
    documents = {"cut.json": ('{"type": "Feature", "assets": {', r"not valid JSON \(Expecting"),
                 "other.json": ('{"hello": [1, 2]}', "a JSON document but not a STAC Item")}  # fmt: skip
    for name, (text, says) in documents.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InputError, match=f"{name}: {says}"):
            geosr.upscale_file(path, tmp_path / "x.tif", scale=2, model="bicubic")
        with pytest.raises(InputError, match=f"{name}: {says}"):
            compare_files(str(path), str(raster), tmp_path / "c.png")


def test_bands_naming_one_asset_or_a_multiband_one(make_raster, tmp_path: Path) -> None:
    # '--bands B08' (one asset key) failed: "B08.tif: no band is described as 'B08'"; a
    # multi-band asset in a stack silently gave its first band only.
    make_raster("B04.tif", height=30, width=36)
    make_raster("B08.tif", height=30, width=36, data=coordinate_pattern(1, 30, 36) + 7)
    make_raster("TCI.tif", count=3, height=30, width=36)
    kind = "image/tiff; application=geotiff"
    assets = {k: {"href": f"./{k}.tif", "type": kind, "roles": ["data"]} for k in ("B04", "B08", "TCI")}
    doc = {"type": "Feature", "stac_version": "1.1.0", "id": "s2", "geometry": None,
           "properties": {"datetime": "2022-03-01T10:00:00Z"}, "links": [], "assets": assets}  # fmt: skip
    item = tmp_path / "item.json"
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "nir.tif", scale=2, model="bicubic", bands="B08")
    with rasterio.open(out) as f, rasterio.open(tmp_path / "B08.tif") as nir:
        assert f.count == 1 and f.descriptions == ("B08",)
        mean = f.read(1).astype(float).reshape(30, 2, 36, 2).mean(axis=(1, 3))
        assert np.abs(mean - nir.read(1)).max() < 5
    with pytest.raises(InputError, match="asset 'TCI' has 3 bands, and bands stacks single-band"):
        geosr.upscale_file(item, tmp_path / "x.tif", scale=2, model="bicubic", bands="B04,TCI")


def test_footprints_across_the_antimeridian_and_around_a_pole(make_raster, tmp_path: Path) -> None:
    """RFC 7946 footprints where lon/lat wraps.  Before, a UTM zone 1 scene across 180 E got a
    bbox from -179.97 to 179.98 (the whole globe the other way round), and a polar
    stereographic scene around the North Pole a bbox of zero height with the pole outside."""
    from affine import Affine

    # UTM zone 1N at 65 N: its left edge is at 179.98 E, its right edge at 179.97 W.
    utm1 = Affine(30, 0, 357629.27, 0, -30, 7211856.2)
    across = make_raster("across.tif", crs="EPSG:32601", transform=utm1)
    geosr.upscale_file(across, tmp_path / "across_x2.tif", scale=2, model="bicubic", stac=True)
    item = json.loads((tmp_path / "across_x2.stac.json").read_text())
    west, south, east, north = item["bbox"]
    assert 179.9 < west < 180 and -180 < east < -179.9 and 64.9 < south < north < 65.1
    assert item["geometry"]["type"] == "MultiPolygon"  # cut at the antimeridian
    lons = [x for part in item["geometry"]["coordinates"] for x, _ in part[0]]
    assert min(lons) == -180 and max(lons) == 180 and all(abs(x) > 179.9 for x in lons)
    pole = make_raster("pole.tif", crs="EPSG:3413", transform=Affine(1000, 0, -40000, 0, -1000, 32000))
    geosr.upscale_file(pole, tmp_path / "pole_x2.tif", scale=2, model="bicubic", stac=True)
    west, south, east, north = json.loads((tmp_path / "pole_x2.stac.json").read_text())["bbox"]
    assert (west, east, north) == (-180, 180, 90) and 89 < south < 90
    # Global grids, from -180 or from 0 (to 360): the whole globe, whose edges span 360 degrees.
    for origin in (-180.0, 0.0):
        globe = GeoBox((18, 36), Affine(10, 0, origin, 0, -10, 90), "EPSG:4326")
        geometry, bbox = wgs84_footprint(globe)
        assert bbox == [-180, -90, 180, 90]
        assert shapely.geometry.shape(geometry).area == pytest.approx(360 * 180)


def test_the_footprint_of_a_hemispheric_grid_goes_round_its_own_pole() -> None:
    """EASE-Grid 2.0 North (EPSG:6931, +-9,000 km: the northern hemisphere of SMAP and NSIDC
    products), whose corners lie south of the equator: its footprint was closed at the South
    Pole, bbox [-180, -90, 180, 0.13], the wrong half of the globe."""
    from affine import Affine

    ease = GeoBox((40, 40), Affine(450e3, 0, -9e6, 0, -450e3, 9e6), "EPSG:6931")
    geometry, bbox = wgs84_footprint(ease)
    assert bbox[1] > -85 and bbox[3] == 90
    footprint = shapely.geometry.shape(geometry)
    assert footprint.contains(shapely.Point(0, 89.9)) and footprint.contains(shapely.Point(-60, 45))
    assert not footprint.contains(shapely.Point(0, -89.9))


def test_the_footprint_of_a_scene_smaller_than_a_centimetre_keeps_its_corners() -> None:
    """48 x 40 pixels of 1e-9 degrees: the footprint lost its north-west corner to the
    simplification of its edges (1e-7 degrees), a triangle."""
    from affine import Affine

    tiny = GeoBox((40, 48), Affine(1e-9, 0, 12.5, 0, -1e-9, 52.5), "EPSG:4326")
    geometry, bbox = wgs84_footprint(tiny)
    assert bbox == pytest.approx([12.5, 52.5 - 4e-8, 12.5 + 4.8e-8, 52.5], abs=1e-12)
    corners = {(round(x, 12), round(y, 12)) for x, y in geometry["coordinates"][0]}
    assert corners == {(12.5, 52.5), (12.5, 52.49999996), (12.500000048, 52.49999996), (12.500000048, 52.5)}


def test_an_item_in_a_crs_off_the_earth_has_no_footprint(make_raster, tmp_path: Path) -> None:
    """A local (site-grid) CRS has no transformation to WGS 84: the Item has STAC's null
    geometry and the proj:* fields.  Before, --stac raised pyproj's ProjError (a traceback)
    after the output was written."""
    site = 'LOCAL_CS["site grid",UNIT["metre",1],AXIS["Easting",EAST],AXIS["Northing",NORTH]]'
    src = make_raster(crs=site, height=30, width=36)
    geosr.upscale_file(src, tmp_path / "site_x2.tif", scale=2, model="bicubic", stac=True)
    item = pystac.Item.from_file(str(tmp_path / "site_x2.stac.json"))
    assert validate_item(item)
    assert item.geometry is None and item.bbox is None
    assert "site grid" in item.properties["proj:wkt2"] and item.properties["proj:shape"] == [60, 72]


def test_a_crs_that_only_resembles_an_epsg_code_is_written_as_wkt(make_raster, tmp_path: Path) -> None:
    """A UTM zone on the International 1924 ellipsoid with no named datum (a user-defined
    GeoTIFF CRS) matches ED50 / UTM 33N (EPSG:23033) at 70 % only, as it does two other
    codes.  Before, the Item's proj:code was EPSG:23033, without the WKT, and `geosr info`
    said "CRS EPSG:23033": a reader would shift the scene by ED50's datum."""
    src = make_raster(crs="+proj=utm +zone=33 +ellps=intl +units=m +no_defs", height=20, width=24)
    geosr.upscale_file(src, tmp_path / "intl_x2.tif", scale=2, model="bicubic", stac=True)
    props = pystac.Item.from_file(str(tmp_path / "intl_x2.stac.json")).properties
    with rasterio.open(src) as f:
        assert props.get("proj:code") is None and CRS(props["proj:wkt2"]) == CRS(f.crs.to_wkt())
        label = "+proj=utm +zone=33 +ellps=intl +units=m +no_defs (PROJ string, no EPSG code)"
        assert crs_label(CRS(f.crs.to_wkt())) == label
    # A CRS that is its code keeps it, in the Item and the label.
    assert crs_label(CRS("EPSG:23033")) == "EPSG:23033"


def test_an_items_scale_and_offset_reach_the_output_and_its_item(make_raster, tmp_path: Path) -> None:
    """A Sentinel-2 L2A Item declares ``value = pixel * 0.0001 - 0.1`` in its raster:bands, its
    COGs do not: the output (and its --stac Item) lost how its integers are reflectance."""
    for name in ("B04", "B03"):
        make_raster(f"{name}.tif", height=20, width=20)
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"})
    doc = json.loads(item.read_text())
    for asset in doc["assets"].values():
        asset["raster:bands"] = [{"nodata": 0, "scale": 0.0001, "offset": -0.1}]
    item.write_text(json.dumps(doc))
    one = geosr.upscale_file(item, tmp_path / "one.tif", scale=2, model="bicubic", asset="B04", stac=True)
    stack = geosr.upscale_file(item, tmp_path / "stack.tif", scale=2, model="bicubic", bands="B04,B03")
    for out, count in ((one, 1), (stack, 2)):
        with rasterio.open(out) as f:
            assert f.scales == (0.0001,) * count and f.offsets == (-0.1,) * count, out
    bands = json.loads((tmp_path / "one.stac.json").read_text())["assets"]["data"]["bands"]
    assert bands == [{"data_type": "uint16", "nodata": 0, "raster:scale": 0.0001, "raster:offset": -0.1}]


def test_the_items_scale_and_offset_are_the_raster_extensions_and_round_trip(
    make_raster, tmp_path: Path
) -> None:
    """The output Item's bands carried a bare ``scale``/``offset``, no STAC 1.1 field (the raster
    extension v2 names them ``raster:scale``/``raster:offset``): a STAC client did not apply
    them, so an L2A output's integers were not read as reflectance."""
    src = make_raster(count=2, nodata=0, height=20, width=20)
    with rasterio.open(src, "r+") as f:
        f.scales, f.offsets = (0.0001, 0.0001), (-0.1, -0.1)
    out = geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", stac=True)
    item_file = tmp_path / "sr.stac.json"
    doc = json.loads(item_file.read_text())
    band = {"data_type": "uint16", "nodata": 0, "raster:scale": 0.0001, "raster:offset": -0.1}
    assert doc["assets"]["data"]["bands"] == [band, band]
    assert RASTER_V2 in doc["stac_extensions"]
    assert RASTER_V2 in validate_item(pystac.Item.from_file(str(item_file)))
    # The Item alone keeps the scaling: its file, stripped of it, is read back in reflectance.
    with rasterio.open(out, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as f:
        f.scales, f.offsets = (1.0, 1.0), (0.0, 0.0)
    again = geosr.upscale_file(item_file, tmp_path / "again.tif", scale=2, model="bicubic")
    with rasterio.open(again) as f:
        assert f.scales == (0.0001, 0.0001) and f.offsets == (-0.1, -0.1)
    # An output without a scale declares no raster extension: nothing of it is in its bands.
    plain = make_raster("plain.tif", height=20, width=20)
    geosr.upscale_file(plain, tmp_path / "plain_x2.tif", scale=2, model="bicubic", stac=True)
    doc = json.loads((tmp_path / "plain_x2.stac.json").read_text())
    assert RASTER_V2 not in doc["stac_extensions"]
    assert not [key for band in doc["assets"]["data"]["bands"] for key in band if "scale" in key]


@pytest.mark.parametrize(
    ("where", "field", "value"),
    [("band", "raster:scale", "0.0001"), ("band", "raster:offset", None), ("asset", "raster:scale", [1])],
)
def test_validation_catches_a_raster_field_of_the_wrong_type(
    make_raster, tmp_path: Path, where: str, field: str, value: object
) -> None:
    """The raster extension v2's fields are validated offline as the projection's are (geosr
    ships a schema of its own for them): before, the Item did not declare the extension (pystac
    would have downloaded its schema), so a field of the wrong type went unchecked."""
    src = make_raster(height=20, width=20)
    with rasterio.open(src, "r+") as f:
        f.scales, f.offsets = (0.0001,), (-0.1,)
    geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", stac=True)
    item = pystac.Item.from_file(str(tmp_path / "sr.stac.json"))
    asset = item.assets["data"].extra_fields
    (asset["bands"][0] if where == "band" else asset)[field] = value
    with pytest.raises(pystac.errors.STACValidationError, match=f"against schema at {RASTER_V2}"):
        validate_item(item)


def test_a_stac_1_1_items_raster_scale_offset_and_nodata_reach_the_output(
    make_raster, tmp_path: Path
) -> None:
    """STAC 1.1 with the raster extension v2 declares ``value = pixel * scale + offset`` as
    ``raster:scale``/``raster:offset``, in ``bands`` or on the asset itself (its fields hold for
    every band), and ``nodata`` on the asset too: geosr read only a band's bare ``scale``/
    ``offset``/``nodata``, so the output of such an Item lost how its integers are reflectance,
    and its fill was super-resolved as data."""
    values = np.full((1, 20, 20), 1000, np.uint16)
    values[:, :, :6] = 0
    for name in ("B04", "B03"):
        make_raster(f"{name}.tif", data=values)
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"})
    doc = json.loads(item.read_text())
    doc["assets"]["B04"]["bands"] = [
        {"name": "B04", "nodata": 0, "raster:scale": 0.0001, "raster:offset": -0.1}
    ]
    doc["assets"]["B03"].update(
        {"bands": [{"name": "B03"}], "nodata": 0, "raster:scale": 0.0001, "raster:offset": -0.1}
    )
    item.write_text(json.dumps(doc))
    for name, options in (
        ("b04", {"asset": "B04"}),
        ("b03", {"asset": "B03"}),
        ("stack", {"bands": "B04,B03"}),
    ):
        out = geosr.upscale_file(item, tmp_path / f"{name}.tif", scale=2, model="bicubic", **options)
        with rasterio.open(out) as f:
            assert f.scales == (0.0001,) * f.count and f.offsets == (-0.1,) * f.count, name
            assert f.nodata == 0 and (f.read()[:, :, :12] == 0).all(), name


def test_compare_reads_the_item_in_the_units_of_its_output(make_raster, tmp_path: Path) -> None:
    """The output of an Item whose raster:bands declare a scale and offset its file lacks
    declares them; compare read the Item's file without them, so its bicubic panel was
    integers beside the output's reflectance."""
    from geosr.quicklook import compare_panels

    make_raster("B04.tif", height=20, width=20)
    item = item_of(tmp_path, {"B04": "./B04.tif"})
    doc = json.loads(item.read_text())
    doc["assets"]["B04"]["raster:bands"] = [{"scale": 0.0001, "offset": -0.1}]
    item.write_text(json.dumps(doc))
    out = geosr.upscale_file(item, tmp_path / "out.tif", scale=2, model="bicubic")
    geosr_panel, bicubic_panel = compare_panels(str(item), str(out))[0]
    assert np.nanmax(bicubic_panel) < 1  # reflectance, not integers
    np.testing.assert_allclose(bicubic_panel, geosr_panel, atol=0.002)


def test_the_items_href_names_an_output_of_any_name(make_raster, tmp_path: Path) -> None:
    """The asset's href is a URI reference: for 'a#1_x2.tif' it was './a#1_x2.tif', whose '#'
    begins a fragment, so the Item named the file 'a' and reading it back failed."""
    src = make_raster(height=20, width=20)
    for name in ("a#1_x2.tif", "b c%41_x2.tif"):
        out = geosr.upscale_file(src, tmp_path / name, scale=2, model="bicubic", stac=True)
        item = out.with_name(out.stem + ".stac.json")
        href = json.loads(item.read_text())["assets"]["data"]["href"]
        assert href.startswith("./") and "#" not in href and " " not in href
        again = geosr.upscale_file(item, tmp_path / f"again_{len(name)}.tif", scale=2, model="bicubic")
        with rasterio.open(out) as first, rasterio.open(again) as second:
            assert second.shape == (80, 80)
            assert second.transform == first.transform @ first.transform.scale(0.5)


def test_the_items_link_to_its_input_names_an_input_of_any_name(make_raster, tmp_path: Path) -> None:
    """The derived_from link held the input's path as it is: for 'a#1.tif' the '#' began a
    fragment, so the link named the file 'a' (pystac and any URI reader read it so)."""
    from urllib.parse import unquote, urlsplit

    for name in ("a#1.tif", "b c%41?.tif"):
        src = make_raster(name, height=20, width=20)
        out = geosr.upscale_file(src, tmp_path / f"out_{len(name)}.tif", scale=2, model="bicubic", stac=True)
        item = json.loads(out.with_name(out.stem + ".stac.json").read_text())
        (href,) = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
        parts = urlsplit(href)
        assert not parts.fragment and not parts.query and unquote(parts.path) == str(src)


def test_compare_reads_an_output_or_reference_given_as_its_item(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """An output's --stac Item as SR (or --hr) was opened by GDAL, which resolved its './out.tif'
    against the working folder: 'not a readable raster (Cannot open ./out.tif ...)' elsewhere."""
    from geosr.quicklook import compare_files, compare_panels

    src = make_raster(height=20, width=20)
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic", stac=True)
    item = str(tmp_path / "out.stac.json")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    expected = compare_panels(str(src), str(out), hr=str(out))[0]
    for got, want in zip(compare_panels(str(src), item, hr=item)[0], expected, strict=True):
        np.testing.assert_array_equal(got, want)
    assert compare_files(str(src), item, elsewhere / "c.png", bands="1").exists()


def test_the_quicklook_of_an_asset_run_shows_the_input_in_the_outputs_units(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """--asset B04 of an Item whose raster:bands declare a scale its file lacks: the output
    declares it, the quicklook reread the file without it, so its bicubic panel was integers
    (1460) beside the output's reflectance (0.046): white."""
    from geosr import panels

    for name in ("B04", "B03"):
        make_raster(f"{name}.tif", height=20, width=20)
    item = item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"})
    doc = json.loads(item.read_text())
    for asset in doc["assets"].values():
        asset["raster:bands"] = [{"scale": 0.0001, "offset": -0.1}]
    item.write_text(json.dumps(doc))
    shown: list[list[np.ndarray]] = []
    stretch = panels.stretch
    monkeypatch.setattr(panels, "stretch", lambda drawn, **kw: shown.append(drawn) or stretch(drawn, **kw))
    geosr.upscale_file(item, tmp_path / "one.tif", scale=2, model="bicubic", asset="B04", quicklook=True)
    geosr_panel, bicubic_panel = shown[0]
    assert np.nanmax(bicubic_panel) < 1  # reflectance, not integers
    np.testing.assert_allclose(bicubic_panel, geosr_panel, atol=0.002)


def test_an_asset_in_a_non_ascii_folder_is_read_in_an_ascii_locale(make_raster, tmp_path: Path) -> None:
    """An href of an Item (UTF-8 text) in a folder 'bandés' could not be encoded by Python in a C
    locale: the checks of its name and of the files GDAL reads for it were a UnicodeEncodeError
    traceback."""
    (tmp_path / "bandés").mkdir()
    make_raster("bandés/B04.tif", height=16, width=16)
    item = item_of(tmp_path, {"B04": "./bandés/B04.tif"})
    done = in_an_ascii_locale("run", str(item), "-s", "2", "-m", "bicubic", "-o", str(tmp_path / "out.tif"))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "out.tif").is_file()


def test_an_item_of_non_ascii_text_is_read_in_an_ascii_locale(make_raster, tmp_path: Path) -> None:
    """An Item written in UTF-8 with a band description "Réflectance" was read in the locale's
    encoding: in a C locale 'item.json: not a readable raster', and its stack's VRT, written so
    too, a UnicodeEncodeError traceback."""
    for key in ("B04", "B03"):
        make_raster(f"{key}.tif", height=16, width=16)
    doc = json.loads(item_of(tmp_path, {"B04": "./B04.tif", "B03": "./B03.tif"}).read_text(encoding="utf-8"))
    doc["properties"]["title"] = "Réflectance au sol"
    for key, asset in doc["assets"].items():
        asset["eo:bands"] = [{"name": key, "description": "Réflectance"}]
    (tmp_path / "item.json").write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "out.tif"
    args = ["run", str(tmp_path / "item.json"), "--bands", "B04,B03", "-s", "2", "-m", "bicubic"]
    done = in_an_ascii_locale(*args, "-o", str(out), "--stac")
    assert done.returncode == 0, done.stderr
    assert pystac.Item.from_file(str(tmp_path / "out.stac.json")).properties["datetime"]
