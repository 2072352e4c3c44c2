"""`geosr run` end to end on synthetic rasters: georeferencing, COG, Zarr, seams, nodata."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
import xarray as xr
import zarr
from affine import Affine
from rio_cogeo.cogeo import cog_validate

import geosr
from geosr.errors import GeosrWarning
from geosr.models import CNNRNN, CNNRNNConfig, ModelCard, save_weights
from geosr.normalise import FILL_RADIUS
from geosr.run_outputs import default_output
from tests.conftest import UTM_TRANSFORM, coordinate_pattern, open_in_this_process, warnings_said
from tests.test_batch import run_cli as run_fd_cli

GEO_TRANSFORM = Affine(
    8.983152841195215e-05, 0.0, 6.860074498707138, 0.0, -8.983152841195215e-05, 53.41634207654228
)


def assert_georeferenced(src: Path, out: Path, scale: int) -> None:
    with rasterio.open(src) as a, rasterio.open(out) as b:
        assert b.crs == a.crs
        t = a.transform  # each pixel term divided by the scale, the same origin
        assert b.transform == Affine(t.a / scale, t.b / scale, t.c, t.d / scale, t.e / scale, t.f)
        assert (b.width, b.height) == (a.width * scale, a.height * scale)
        assert np.allclose(b.bounds, a.bounds, rtol=0, atol=1e-9 * max(map(abs, a.bounds)))
        assert b.dtypes == a.dtypes and b.count == a.count
        # A float output declares NaN where its input declares nothing (Scene.output_nodata).
        undeclared_float = a.nodata is None and np.dtype(a.dtypes[0]).kind == "f"
        expected = float("nan") if undeclared_float else a.nodata
        assert b.nodata == expected or (b.nodata is not None and np.isnan(b.nodata) and np.isnan(expected))


def assert_valid_cog(path: Path) -> None:
    valid, errors, _ = cog_validate(str(path))
    assert valid and not errors, errors
    with rasterio.open(path) as f:
        assert f.profile["blockxsize"] == 512 or f.width < 512
        assert f.compression is not None
        assert f.overviews(1) or max(f.width, f.height) <= 512


@pytest.mark.parametrize("dtype", ["uint8", "int8", "uint16", "int16", "float32", "float64"])
def test_bicubic_run_preserves_everything(make_raster, dtype: str) -> None:
    src = make_raster(
        count=3,
        height=67,
        width=91,
        dtype=dtype,
        nodata=None,
        descriptions=("B04", "B03", "B02"),
        tags={"SENSOR": "test", "ACQ": "2020-01-01"},
    )
    out = geosr.upscale_file(src, scale=4, model="bicubic")
    assert out == src.with_name("scene_x4.tif")
    assert_georeferenced(src, out, 4)
    assert_valid_cog(out)
    with rasterio.open(out) as f:
        assert f.descriptions == ("B04", "B03", "B02")
        tags = f.tags()
        assert tags["SENSOR"] == "test" and tags["ACQ"] == "2020-01-01"
        assert tags["GEOSR_MODEL"] == "bicubic" and tags["GEOSR_SCALE"] == "4"
        assert tags["GEOSR_VERSION"] == geosr.__version__


WIDE_SCENES = {
    # Spans of 1e7 and more, which float32 (the model's arithmetic) holds to about 1 unit.
    "int32": lambda rng: rng.integers(-5_000_000, 5_000_000, (1, 32, 32)).astype("int32"),
    "uint32": lambda rng: rng.integers(1_000_000_000, 1_010_000_000, (1, 32, 32)).astype("uint32"),
    "float64": lambda rng: rng.uniform(-5e6, 5e6, (1, 32, 32)) + rng.uniform(0, 1e-3, (1, 32, 32)),
}


@pytest.mark.parametrize("lazy", [False, True], ids=["file", "dataarray"])
@pytest.mark.parametrize("dtype", sorted(WIDE_SCENES))
def test_block_means_reproduce_a_wide_scene_exactly(
    make_raster, tmp_path: Path, dtype: str, lazy: bool
) -> None:
    """The default model's output, averaged back down by the scale, is its input: within the
    rounding to the dtype's integers, or to float64's precision.  The model projects in float32,
    which left an int32 scene spanning 1e7 up to 1.4 DN off, a float64 one 1.2 units."""
    data = WIDE_SCENES[dtype](np.random.default_rng(0))
    src = make_raster(data=data)
    if lazy:
        import rioxarray

        out = geosr.upscale(rioxarray.open_rasterio(src, chunks={"x": 16, "y": 16}), scale=4, tile=16).values
    else:
        with rasterio.open(geosr.upscale_file(src, tmp_path / "out.tif", scale=4, tile=16)) as f:
            out = f.read()
    assert out.dtype == data.dtype
    means = out.astype(np.float64).reshape(1, 32, 4, 32, 4).mean(axis=(2, 4))
    error = np.abs(means - data)
    if dtype == "float64":
        assert error.max() <= 1e-12 * np.abs(data).max()
    else:
        assert error.max() <= 0.5


@pytest.mark.parametrize("scale", [2, 3])
def test_geographic_crs_and_odd_shapes(make_raster, scale: int) -> None:
    src = make_raster(count=4, height=41, width=53, dtype="float64", crs="EPSG:4326", transform=GEO_TRANSFORM)
    if scale == 3:  # no bundled x3 weights: the default model runs untrained, and says so
        with pytest.warns(GeosrWarning, match="no bundled weights for cnnrnn-fast x3"):
            out = geosr.upscale_file(src, scale=scale, tile=16)
        with rasterio.open(out) as f:
            assert f.tags()["GEOSR_MODEL"] == "cnnrnn-fast (untrained)"
    else:
        out = geosr.upscale_file(src, scale=scale, tile=16)
    assert_georeferenced(src, out, scale)
    assert_valid_cog(out)


def test_a_rotated_pole_crs_reaches_the_cog(make_raster, tmp_path: Path) -> None:
    """A CRS no GeoTIFF key describes (a CORDEX rotated pole) is kept in the ``.aux.xml``
    GDAL writes beside the COG: the output had none, after a run that reported success."""
    rotated_pole = "+proj=ob_tran +o_proj=longlat +o_lon_p=0 +o_lat_p=40 +lon_0=10 +datum=WGS84 +no_defs"
    src = make_raster(height=20, width=24, crs=rotated_pole, transform=Affine(0.1, 0, 5, 0, -0.1, 50))
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic")
    assert_georeferenced(src, out, 2)


def test_zarr_output_matches_cog(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=2, height=50, width=70, nodata=0)
    cog = geosr.upscale_file(src, tmp_path / "o.tif", scale=2, tile=32)
    store = geosr.upscale_file(src, tmp_path / "o.zarr", scale=2, tile=32)
    da = xr.open_zarr(store, decode_coords="all")["band_data"]
    with rasterio.open(cog) as f:
        assert da.rio.crs == f.crs
        assert np.allclose(tuple(da.rio.transform()), tuple(f.transform), rtol=1e-12, atol=0)
        assert (da.values == f.read()).all()


def test_zarr_format_2_output_is_read_by_gdal_as_the_cog(
    make_raster, tmp_path: Path, capfd, monkeypatch
) -> None:
    """GDAL 3.10 (rasterio 1.4's wheels) refused every output `geosr run` wrote to a .zarr
    ('Unsupported codec: bytes': Zarr v3); `--zarr-format 2` writes one it reads, with the
    COG's pixels, CRS and transform."""
    src = make_raster(count=2, height=50, width=70, nodata=0, descriptions=("B04", "B08"))
    cog = geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic", tile=32)
    store = tmp_path / "o.zarr"
    args = ["run", str(src), "-o", str(store), "--scale", "2", "--model", "bicubic", "--tile", "32"]
    code, _, err = run_fd_cli([*args, "--zarr-format", "2"], capfd, monkeypatch)
    assert code == 0, err
    assert (store / ".zmetadata").exists() and not (store / "zarr.json").exists()
    with rasterio.open(f'ZARR:"{store}":/band_data') as z, rasterio.open(cog) as f:
        assert z.crs == f.crs and z.transform == f.transform and z.nodata == f.nodata
        np.testing.assert_array_equal(z.read(), f.read())
    assert list(xr.open_zarr(store)["band_data"].attrs["long_name"]) == ["B04", "B08"]


def test_zarr_format_for_a_cog_output_is_refused(make_raster, tmp_path: Path, capfd, monkeypatch) -> None:
    """Taken silently, `--zarr-format 2` wrote a COG where the user wanted a Zarr store."""
    src = make_raster()

    def run(output: str, zarr_format: str) -> tuple[int, str]:
        args = ["run", str(src), "-o", str(tmp_path / output), "--scale", "2", "--model", "bicubic"]
        code, _, err = run_fd_cli([*args, "--zarr-format", zarr_format], capfd, monkeypatch)
        assert "Traceback" not in err
        return code, err

    code, err = run("o.tif", "2")
    assert code == 2 and "--zarr-format 2 is for a .zarr output" in err and "(e.g. o.zarr)" in err, err
    code, err = run("o.zarr", "4")
    assert code == 2 and "--zarr-format 4 is not supported; use 2" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
    # Several inputs write .tif outputs into a folder: refused once, not per input.
    other, folder = make_raster("other.tif"), tmp_path / "out"
    folder.mkdir()
    args = ["run", str(src), str(other), "-o", str(folder), "--scale", "2", "--zarr-format", "2"]
    code, _, err = run_fd_cli(args, capfd, monkeypatch)
    assert code == 2 and err.count("--zarr-format 2 is for a .zarr output") == 1, err
    assert list(folder.iterdir()) == []


def test_input_tags_named_as_the_run_stores_settings_are_only_tags(make_raster, tmp_path: Path) -> None:
    """A Zarr output's run store holds the input's tags as its group attributes, where a COG's
    store keeps its settings: a GeoTIFF tag nodata=none ended the run in a ValueError traceback
    (tile_levels=2 in a KeyError), read as the store's own nodata and overview levels."""
    src = make_raster(count=2, height=40, width=56, nodata=0, tags={"nodata": "none", "tile_levels": "2"})
    cog = geosr.upscale_file(src, tmp_path / "o.tif", scale=2, model="bicubic", tile=16)
    store = geosr.upscale_file(src, tmp_path / "o.zarr", scale=2, model="bicubic", tile=16)
    attrs = xr.open_zarr(store).attrs
    assert (attrs["nodata"], attrs["tile_levels"]) == ("none", "2")
    with rasterio.open(cog) as f:
        assert f.tags()["nodata"] == "none"
        np.testing.assert_array_equal(xr.open_zarr(store, mask_and_scale=False)["band_data"].values, f.read())


def random_model_file(tmp_path: Path, scale: int) -> Path:
    """A CNN-RNN with random (non-zero) weights, saved like user weights."""
    torch.manual_seed(0)
    config = CNNRNNConfig(scale=scale, features=8, encoder_blocks=1, refine_steps=1)
    net = CNNRNN(config)
    with torch.no_grad():
        for p in net.parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    card = ModelCard(
        name="random-test",
        architecture="cnnrnn",
        config=config.to_dict() if hasattr(config, "to_dict") else vars(config),
        scale=scale,
    )
    weights, _ = save_weights(net, card, tmp_path / f"random_x{scale}")
    return weights


def whole_image_reference(src: Path, weights: Path, scale: int, nodata: float | None) -> np.ndarray:
    """Whole-image inference: the scene mirrored by the halo, one model call, cropped."""
    from geosr.kernel import finish_tile, prepare_tiles
    from geosr.options import RunOptions
    from geosr.predictor import Predictor
    from geosr.run_inputs import normalisation_for, scene_for

    scene = scene_for(src, RunOptions(scale=scale, nodata=nodata))
    net = geosr.load_model(weights, bands=scene.count, scale=scale)
    norm = normalisation_for(scene, dict(net.card.normalisation))
    halo = net.receptive_field + FILL_RADIUS
    with rasterio.open(src) as f:
        raw = np.pad(f.read(), ((0, 0), (halo, halo), (halo, halo)), mode="symmetric")
    x, valid = prepare_tiles(raw[None], scene.nodata, norm)
    sr = Predictor(net, device="cpu", precision="fp32")(x)[0]
    hs = halo * scale
    return finish_tile(
        sr[:, hs:-hs, hs:-hs],
        valid[0][:, halo:-halo, halo:-halo],
        scale=scale,
        norm=norm,
        dtype=scene.dtype,
        nodata=scene.nodata,
    )


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_output_equals_whole_image_inference(make_raster, tmp_path: Path, scale: int) -> None:
    data = (np.random.default_rng(1).integers(200, 4000, (2, 57, 83))).astype("uint16")
    data[:, 20:26, 30:41] = 0  # a nodata hole that the fill must treat the same in every tile
    src = make_raster(data=data, nodata=0)
    weights = random_model_file(tmp_path, scale)
    reference = whole_image_reference(src, weights, scale, None)
    for tile in (16, 23, 40, 512):
        out = geosr.upscale_file(
            src,
            tmp_path / f"t{tile}.tif",
            scale=scale,
            model=str(weights),
            tile=tile,
            batch_size=3,
            precision="fp32",
            device="cpu",
        )
        with rasterio.open(out) as f:
            got = f.read().astype(np.int64)
        diff = np.abs(got - reference.astype(np.int64))
        assert diff.max() <= 1, f"tile {tile}: max difference {diff.max()}"
        # and the model is not a no-op: it differs from bicubic somewhere
    bicubic = geosr.upscale_file(src, tmp_path / "bic.tif", scale=scale, model="bicubic")
    with rasterio.open(bicubic) as f:
        assert np.abs(f.read().astype(np.int64) - reference.astype(np.int64)).max() > 5


def test_nodata_is_exact_and_never_leaks(make_raster, tmp_path: Path) -> None:
    data = np.full((1, 40, 40), 1200, np.uint16) + np.arange(40, dtype=np.uint16)[None, None, :] * 10
    data[:, 10:20, 10:20] = 0
    src0 = make_raster("zero.tif", data=data, nodata=0)
    weird = data.copy()
    weird[:, 10:20, 10:20] = 65535
    src1 = make_raster("max.tif", data=weird, nodata=65535)
    a = geosr.upscale_file(src0, scale=2, tile=16)
    b = geosr.upscale_file(src1, scale=2, tile=16)
    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        va, vb = fa.read(1), fb.read(1)
        hole = np.zeros((80, 80), bool)
        hole[20:40, 20:40] = True
        assert (va[hole] == 0).all() and (vb[hole] == 65535).all()
        assert (va[~hole] != 0).all()
        # the nodata value itself (0 or 65535) never reaches valid pixels
        assert (va[~hole] == vb[~hole]).all()
        assert fa.nodata == 0 and fb.nodata == 65535


def test_int8_scene_keeps_its_type_and_clips_without_wrapping(make_raster, tmp_path: Path) -> None:
    """GDAL's Int8 (3.7+) was refused ("data type int8 is not supported"), though the
    output writes it; bicubic overshoot of +-127 plateaus clips, never wraps round."""
    blocks = np.where(np.add.outer(np.arange(24) // 4, np.arange(28) // 4) % 2 == 0, 127, -127)
    data = blocks.astype(np.int8)[None]
    data[:, 8:12, 12:16] = -128
    src = make_raster(data=data, nodata=-128)
    out = geosr.upscale_file(src, tmp_path / "x2.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert f.dtypes[0] == "int8" and f.nodata == -128
        got = f.read(1).astype(np.int64)
    hole = np.kron(data[0] == -128, np.ones((2, 2), bool))
    assert (got[hole] == -128).all() and (got[~hole] >= -127).all()
    # The centre of every plateau keeps its value: a wrapped overshoot of +127 reads as -128.
    centres = got[3::8, 3::8], blocks[1::4, 1::4]
    assert (centres[0] == centres[1])[~hole[3::8, 3::8]].all()


def test_nan_float_scene(make_raster) -> None:
    data = np.linspace(0.0, 0.5, 30 * 30, dtype=np.float32).reshape(1, 30, 30)
    data[0, :5, :5] = np.nan
    src = make_raster(data=data, nodata=None)
    out = geosr.upscale_file(src, scale=2, model="bicubic")
    with rasterio.open(out) as f:
        v = f.read(1)
    assert np.isnan(v[:10, :10]).all() and np.isfinite(v[10:, 10:]).all()


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_float_scene_with_infinite_nodata(make_raster, tmp_path: Path, suffix: str) -> None:
    # GDAL writes and masks a nodata of -inf; the output refused it ("choose a finite value").
    data = np.linspace(0.0, 0.5, 30 * 30, dtype=np.float32).reshape(1, 30, 30)
    data[0, :5, :5] = -np.inf
    src = make_raster(data=data, nodata=-np.inf)
    out = geosr.upscale_file(src, tmp_path / f"out{suffix}", scale=2, model="bicubic")
    if suffix == ".tif":
        assert_valid_cog(out)
        with rasterio.open(out) as f:
            assert f.nodata == -np.inf
            v = f.read(1)
    else:
        band = xr.open_zarr(out, decode_coords="all", mask_and_scale=False)["band_data"]
        assert band.attrs["_FillValue"] == -np.inf
        v = band.values[0]
    assert np.isneginf(v[:10, :10]).all() and np.isfinite(v[10:, 10:]).all() and np.isfinite(v[:, 10:]).all()


def test_lazy_upscale_equals_file_job_for_bicubic(make_raster, tmp_path: Path) -> None:
    import rioxarray

    src = make_raster(count=2, height=70, width=45, nodata=0)
    out = geosr.upscale_file(src, tmp_path / "f.tif", scale=3, model="bicubic", tile=32)
    da = rioxarray.open_rasterio(src, chunks={"x": 32, "y": 32})
    lazy = geosr.upscale(da, scale=3, model="bicubic", tile=32)
    assert lazy.chunks is not None
    with rasterio.open(out) as f:
        assert lazy.rio.crs == f.crs
        assert lazy.rio.transform() == f.transform
        # same kernels; chunk shapes differ from tile shapes, so float32 rounding may flip a unit
        assert np.abs(lazy.values.astype(np.int64) - f.read()).max() <= 1


@pytest.mark.parametrize(
    ("dtype", "base"), [("uint32", 4_000_000_000), ("int32", -2_000_000_000), ("float64", 5.8e6)]
)
@pytest.mark.parametrize("with_frame", [False, True])
def test_wide_pixels_keep_their_low_digits(
    make_raster, tmp_path: Path, dtype: str, base: float, with_frame: bool
) -> None:
    # 32-bit integers and float64 far from 0: float32 holds 24 bits, so uint32 near 4e9
    # came to the model in steps of 256 (173 units of error on a 1000-unit span).
    rows, cols = np.mgrid[0:40, 0:50]
    pattern = 500 + 500 * np.sin(rows / 6.0) * np.cos(cols / 4.0)
    if dtype != "float64":
        pattern = np.round(pattern)
    low = 1000  # the same pattern near 0, clear of the clip at 0 that bicubic's overshoot meets
    outputs = []
    # With a frame, a model that fuses frames (bicubic leaves them out of the job).
    model = "cnnrnn-fast" if with_frame else "bicubic"
    for name, offset in (("far", base), ("near", low)):
        src = make_raster(f"{name}.tif", data=(pattern + offset)[None].astype(dtype))
        # The same pixels in another file as a second date (the input itself is refused).
        frames = (str(make_raster(f"{name}_t2.tif", data=(pattern + offset)[None].astype(dtype))),)
        frames = frames if with_frame else ()
        out = geosr.upscale_file(src, tmp_path / f"{name}_x2.tif", scale=2, model=model, frames=frames)
        with rasterio.open(out) as f:
            outputs.append(f.read(1).astype(np.float64) - offset)
    error = np.abs(outputs[0] - outputs[1]).max()
    assert error <= (1e-6 if dtype == "float64" else 1), error


def file_and_lazy_outputs(src: Path, tmp_path: Path, chunk: int = 32) -> tuple[Path, Path]:
    """``src`` super-resolved x2 with bicubic by :func:`geosr.upscale_file` (out.tif), and by
    :func:`geosr.upscale` on rioxarray's lazy read of it in ``chunk`` x ``chunk`` chunks, which
    rioxarray writes (lazy.tif): the two ways an input's tags can reach an output."""
    import rioxarray

    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic")
    lazy = geosr.upscale(
        rioxarray.open_rasterio(src, chunks={"x": chunk, "y": chunk}), scale=2, model="bicubic"
    )
    lazy.rio.to_raster(tmp_path / "lazy.tif")
    return out, tmp_path / "lazy.tif"


@pytest.mark.filterwarnings("ignore:.*declares no nodata:geosr.errors.GeosrWarning")  # its half of zeros
def test_the_inputs_cached_statistics_are_not_the_outputs(make_raster, tmp_path: Path) -> None:
    # GDAL caches band statistics as tags (gdalinfo -stats, QGIS: often in a .aux.xml);
    # carried over, the output claimed the input's maximum, 254, beside its pixels of 255.
    src = make_raster("stats.tif", data=np.tile(np.repeat([0, 254], 20), (1, 30, 1)).astype("uint8"))
    stats = {"STATISTICS_MINIMUM": "0", "STATISTICS_MAXIMUM": "254", "STATISTICS_MEAN": "127"}
    with rasterio.open(src, "r+") as f:
        f.update_tags(1, WAVELENGTH="665", **stats)
    for path in file_and_lazy_outputs(src, tmp_path):
        with rasterio.open(path) as f:
            assert f.read().max() == 255  # bicubic overshoots the input's 254
            tags = {**f.tags(), **f.tags(1)}
            assert tags["WAVELENGTH"] == "665", path.name
            assert not any(key.startswith("STATISTICS_") for key in tags), (path.name, tags)


@pytest.mark.filterwarnings("ignore:.*declares no nodata:geosr.errors.GeosrWarning")
def test_the_inputs_sample_value_range_is_not_the_outputs(make_raster, tmp_path: Path) -> None:
    """A TIFF's MinSampleValue/MaxSampleValue (GDAL's TIFFTAG_MINSAMPLEVALUE and
    TIFFTAG_MAXSAMPLEVALUE) were carried into the output's own TIFF tags: a maximum of 244
    beside the output's pixels of 255, which super-resolution's overshoot gives."""
    src = make_raster("range.tif", data=np.tile(np.repeat([10, 244], 20), (1, 30, 1)).astype("uint8"))
    with rasterio.open(src, "r+") as f:
        f.update_tags(TIFFTAG_MINSAMPLEVALUE="10", TIFFTAG_MAXSAMPLEVALUE="244", SENSOR="test")
    for path in file_and_lazy_outputs(src, tmp_path):
        with rasterio.open(path) as f:
            assert f.read().max() > 244 and f.read().min() < 10  # bicubic overshoots the input's range
            tags = f.tags()
            assert tags["SENSOR"] == "test", path.name
            assert not any("SAMPLEVALUE" in key for key in tags), (path.name, tags)


def test_the_output_names_geosr_as_its_software_and_keeps_the_inputs_as_provenance(
    make_raster, tmp_path: Path
) -> None:
    """The input's TIFF Software, DateTime and HostComputer were the output's own TIFF tags: the
    x2 COG of a Sen2Cor product said that Sen2Cor 2.11 wrote it, in 2020, on the product's host.
    A COG now names geosr as its software; the input's program and date are provenance
    (GEOSR_SOURCE_SOFTWARE, GEOSR_SOURCE_DATETIME), and the date still dates the scene's STAC
    Item after a second run.  Rights and content (Artist, Copyright, ImageDescription) stay."""
    written = {"TIFFTAG_SOFTWARE": "Sen2Cor 2.11", "TIFFTAG_DATETIME": "2020:01:01 10:00:00"}
    content = {"TIFFTAG_ARTIST": "ESA", "TIFFTAG_COPYRIGHT": "Copernicus", "TIFFTAG_IMAGEDESCRIPTION": "L2A"}
    host = {"TIFFTAG_HOSTCOMPUTER": "pdgs"}
    src = make_raster("l2a.tif", height=30, width=30, tags={**written, **content, **host})
    out, lazy = file_and_lazy_outputs(src, tmp_path)
    with rasterio.open(out) as f:
        tags = f.tags()
    assert tags["TIFFTAG_SOFTWARE"] == f"geosr {geosr.__version__}"
    assert "TIFFTAG_DATETIME" not in tags and "TIFFTAG_HOSTCOMPUTER" not in tags
    assert (tags["GEOSR_SOURCE_SOFTWARE"], tags["GEOSR_SOURCE_DATETIME"]) == tuple(written.values())
    assert content.items() <= tags.items()
    with rasterio.open(lazy) as f:  # rioxarray's write of geosr.upscale: no program or date of its making
        assert not set(written) & set(f.tags()) and content.items() <= f.tags().items()
    store = geosr.upscale_file(src, tmp_path / "out.zarr", scale=2, model="bicubic")
    attrs = xr.open_zarr(store).attrs
    assert not set(written) & set(attrs) and attrs["GEOSR_SOURCE_SOFTWARE"] == "Sen2Cor 2.11"
    again = geosr.upscale_file(out, tmp_path / "x4.tif", scale=2, model="bicubic", stac=True)
    with rasterio.open(again) as f:
        tags = f.tags()
    assert tags["GEOSR_SOURCE_SOFTWARE"] == f"geosr {geosr.__version__}"
    assert tags["GEOSR_SOURCE_DATETIME"] == written["TIFFTAG_DATETIME"]
    item = json.loads((tmp_path / "x4.stac.json").read_text())
    assert item["properties"]["datetime"] == "2020-01-01T10:00:00Z"


def test_a_scans_print_resolution_is_as_many_times_finer_as_its_pixels(make_raster, tmp_path: Path) -> None:
    """TIFF XResolution/YResolution (pixels per inch or cm on paper) were copied as they were: an
    x2 output of a 300-dpi scan said 300 dpi, so it printed twice the size of its input.  The
    COG, the Zarr output and geosr.upscale's (rioxarray's write of it) now say 600 and 240 (of an
    input 300 x 120), in the input's unit; a resolution that is no number is dropped."""
    dpi = {
        "TIFFTAG_XRESOLUTION": "300",
        "TIFFTAG_YRESOLUTION": "120",
        "TIFFTAG_RESOLUTIONUNIT": "2 (pixels/inch)",
    }
    src = make_raster("scan.tif", height=30, width=30, tags=dpi)
    finer = {**dpi, "TIFFTAG_XRESOLUTION": "600", "TIFFTAG_YRESOLUTION": "240"}
    out, lazy = file_and_lazy_outputs(src, tmp_path)
    for path in (out, lazy):
        with rasterio.open(path) as f:
            got = {k: v for k, v in f.tags().items() if k in finer}
        assert got == finer, (path.name, got)
    store = geosr.upscale_file(src, tmp_path / "out.zarr", scale=2, model="bicubic")
    assert {k: v for k, v in xr.open_zarr(store).attrs.items() if k in finer} == finer
    from geosr.io.scene import scaled_print_resolution

    odd = scaled_print_resolution({"TIFFTAG_XRESOLUTION": "n/a", "TIFFTAG_YRESOLUTION": 72.5}, 4)
    assert odd == {"TIFFTAG_YRESOLUTION": 290}


def test_the_bands_wavelengths_in_gdals_imagery_domain_reach_the_output(make_raster, tmp_path: Path) -> None:
    """GDAL 3.10 gives a band's central wavelength and width in its IMAGERY metadata domain (ENVI,
    Sentinel-2 products, GeoTIFFs made from them): they were not read, and every output lost them.
    A COG's bands hold them in that domain, following --bands; a Zarr output among its band_tags."""
    src = make_raster("msi.tif", count=3, height=30, width=30, descriptions=("B2", "B3", "B4"))
    wavelengths = {"B2": "0.49", "B3": "0.56", "B4": "0.665"}
    with rasterio.open(src, "r+") as f:
        for band, name in enumerate(f.descriptions, start=1):
            f.update_tags(band, ns="IMAGERY", CENTRAL_WAVELENGTH_UM=wavelengths[name], FWHM_UM="0.03")
    out = geosr.upscale_file(src, tmp_path / "x2.tif", scale=2, model="bicubic", bands="B4,B2")
    with rasterio.open(out) as f:
        found = [f.tags(band, ns="IMAGERY") for band in f.indexes]
    assert found == [{"CENTRAL_WAVELENGTH_UM": wavelengths[b], "FWHM_UM": "0.03"} for b in ("B4", "B2")]
    store = geosr.upscale_file(src, tmp_path / "x2.zarr", scale=2, model="bicubic")
    band_tags = xr.open_zarr(store)["band_data"].attrs["band_tags"]
    assert [tags["CENTRAL_WAVELENGTH_UM"] for tags in band_tags] == list(wavelengths.values())


def test_a_pixel_is_point_input_gives_an_exact_pixel_is_area_output(make_raster, tmp_path: Path) -> None:
    """A PixelIsPoint GeoTIFF (AREA_OR_POINT=Point, as Landsat's) gave a Point output, whose tie
    point GDAL moves by half a pixel: on this grid the transform read back one unit in the last
    place off, and the run failed after all its tiles with 'a geosr/GDAL bug'.  The output is
    Area now, with the same transform for every reader, GDAL's half-pixel move or not."""
    grid = Affine(0.1, 0.0, -21.532578673231313, 0.0, -0.1, -0.994558825008184)
    src = make_raster("point.tif", crs="EPSG:4326", transform=grid, height=24, width=24)
    with rasterio.open(src, "r+") as f:
        f.update_tags(AREA_OR_POINT="Point")
    with rasterio.open(src) as f:
        assert f.transform == grid and f.tags()["AREA_OR_POINT"] == "Point"
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model="bicubic")
    expected = Affine(0.05, 0.0, grid.c, 0.0, -0.05, grid.f)
    for ignore_point in (False, True):  # GDAL's reading, and a reader that ignores PixelIsPoint
        with rasterio.Env(GTIFF_POINT_GEO_IGNORE=ignore_point), rasterio.open(out) as f:
            assert f.transform == expected and f.tags()["AREA_OR_POINT"] == "Area"
    store = geosr.upscale_file(src, tmp_path / "out.zarr", scale=2, model="bicubic")
    assert "AREA_OR_POINT" not in xr.open_zarr(store).attrs


def test_the_inputs_overview_resampling_tag_is_not_the_outputs(make_raster, tmp_path: Path) -> None:
    """A COG's ``OVR_RESAMPLING_ALG`` (rio-cogeo's; ``OVERVIEW_RESAMPLING`` since its 6.0) says
    how its overviews were made: carried over, the output's average overviews were declared
    nearest-neighbour ones (the titiler and xcube samples of the test data carry it)."""
    src = make_raster("cog.tif", height=264, width=264, dtype="uint8")
    with rasterio.open(src, "r+") as f:
        f.update_tags(OVR_RESAMPLING_ALG="NEAREST", OVERVIEW_RESAMPLING="NEAREST", SENSOR="test")
    out, lazy = file_and_lazy_outputs(src, tmp_path, chunk=128)
    for path in (out, lazy):
        with rasterio.open(path) as f:
            tags = f.tags()
            assert tags["SENSOR"] == "test", path.name
            assert "OVR_RESAMPLING_ALG" not in tags and "OVERVIEW_RESAMPLING" not in tags, (path.name, tags)
    with rasterio.open(out) as f:
        assert f.overviews(1) == [2]  # the output's own, averages of its pixels


def test_an_earlier_outputs_provenance_is_not_the_next_runs(make_raster, tmp_path: Path) -> None:
    """An output run again carried its GEOSR_* tags where the new run writes none of its own:
    ``GEOSR_BANDS=3,2,1`` and ``GEOSR_BOA_ADD_OFFSET`` of a ``--bands 3,2,1 --offset -1000`` run
    stood on the output of a run with neither, and ``geosr compare`` took the bands for reordered."""
    from geosr.figure_bands import source_bands
    from geosr.io.scene import open_scene

    src = make_raster(count=4, height=24, width=24, descriptions=("B02", "B03", "B04", "B08"))
    first = geosr.upscale_file(
        src, tmp_path / "first.tif", scale=2, model="bicubic", bands="3,2,1", offset=-1000
    )
    with rasterio.open(first) as f:
        assert f.tags()["GEOSR_BANDS"] == "3,2,1"
    second = geosr.upscale_file(first, tmp_path / "second.tif", scale=2, model="bicubic")
    with rasterio.open(second) as f:
        tags = f.tags()
    assert "GEOSR_BANDS" not in tags and "GEOSR_BOA_ADD_OFFSET" not in tags, tags
    assert tags["GEOSR_SOURCE"] == "first.tif" and tags["GEOSR_SCALE"] == "2"
    # compare shows each output band beside the input band of the same position (all B04, B03, B02)
    assert source_bands(open_scene(str(second)), open_scene(str(first)), [0, 1, 2]) == [0, 1, 2]


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files by /proc/self/fd (Linux)")
def test_a_call_leaves_its_input_closed_and_a_rewritten_input_is_read_afresh(
    make_raster, tmp_path: Path
) -> None:
    """upscale_file left its input open in the calling thread's cache of datasets: one
    descriptor more per input for each call (a notebook's loop, a batch's glob), and a
    second call on a scene rewritten at the same path took its normalisation from the old file."""
    src = make_raster(height=32, width=32)
    geosr.upscale_file(src, tmp_path / "first.tif", scale=2, model="bicubic")
    assert not open_in_this_process(src)
    make_raster("new.tif", data=coordinate_pattern(1, 32, 32) * 3 + 500).replace(src)
    again = geosr.upscale_file(src, tmp_path / "again.tif", scale=2, model="bicubic")
    fresh = geosr.upscale_file(
        make_raster("fresh.tif", data=coordinate_pattern(1, 32, 32) * 3 + 500),
        tmp_path / "fresh_x2.tif", scale=2, model="bicubic",
    )  # fmt: skip
    with rasterio.open(again) as a, rasterio.open(fresh) as b:
        assert a.tags()["GEOSR_NORM_OFFSET"] == b.tags()["GEOSR_NORM_OFFSET"]
        np.testing.assert_array_equal(a.read(), b.read())


def test_rgb_colour_interpretation_is_carried(make_raster, tmp_path: Path) -> None:
    src = make_raster("rgb.tif", count=3, dtype="uint8", nodata=None)
    with rasterio.open(src, "r+") as f:
        f.colorinterp = [
            rasterio.enums.ColorInterp.red,
            rasterio.enums.ColorInterp.green,
            rasterio.enums.ColorInterp.blue,
        ]
    out = geosr.upscale_file(src, scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert [c.name for c in f.colorinterp] == ["red", "green", "blue"]


def test_zarr_written_by_geosr_reads_back_as_input(make_raster, tmp_path: Path) -> None:
    src = make_raster(count=2, height=30, width=40, nodata=0)
    first = geosr.upscale_file(src, tmp_path / "x2.zarr", scale=2, model="bicubic")
    second = geosr.upscale_file(first, tmp_path / "x4.tif", scale=2, model="bicubic")
    with rasterio.open(src) as a, rasterio.open(second) as b:
        assert b.crs == a.crs and (b.width, b.height) == (160, 120)
        assert np.allclose(tuple(b.transform), tuple(a.transform @ Affine.scale(0.25)), rtol=1e-12)


def test_zarr_input_keeps_its_stored_geotransform_to_the_last_bit(make_raster, tmp_path: Path) -> None:
    """A Zarr input's transform is the GeoTransform stored with it (as the module says), not
    one recomputed from its rounded pixel centres: before, a 30 x 7.3 m pixel read as
    7.300000000005913 m, so that a geosr Zarr output, run again, was off at the last bits."""
    transform = Affine(30.0, 0.0, 335440.0, 0.0, -7.3, 5866490.0)
    src = make_raster(count=1, height=30, width=40, transform=transform)
    first = geosr.upscale_file(src, tmp_path / "x2.zarr", scale=2, model="bicubic")
    second = geosr.upscale_file(first, tmp_path / "x4.tif", scale=2, model="bicubic")
    with rasterio.open(second) as f:
        assert f.transform == transform @ Affine.scale(0.5) @ Affine.scale(0.5)


def test_zarr_cube_keeps_its_time_axis_and_dates(tmp_path: Path) -> None:
    """A (time, lat, lon) cube without a CRS (CF latitude/longitude: EPSG:4326), as L3
    ocean-colour products come: a Zarr output keeps the time axis and its dates (also
    for the dates --bands selects), a COG gets the dates as band descriptions."""
    times = np.array(["2017-01-16", "2017-01-25", "2017-01-26"], dtype="datetime64[ns]")
    lat = 52.5 - 0.0025 * (np.arange(24) + 0.5)
    lon = 0.0025 * (np.arange(32) + 0.5)
    values = np.random.default_rng(1).random((3, 24, 32)).astype(np.float32)
    values[1, :4, :4] = np.nan
    cube = xr.DataArray(
        values, dims=("time", "lat", "lon"), coords={"time": times, "lat": lat, "lon": lon}, name="chl"
    )
    store = tmp_path / "cube.zarr"
    cube.to_dataset().to_zarr(store, zarr_format=3)

    out = xr.open_zarr(geosr.upscale_file(store, tmp_path / "x2.zarr", scale=2, model="bicubic"))
    assert dict(out.sizes) == {"time": 3, "y": 48, "x": 64}
    assert out["band_data"].dims == ("time", "y", "x")
    np.testing.assert_array_equal(out["time"].values, times)
    assert np.isnan(out["band_data"].values[1, :8, :8]).all()

    picked = geosr.upscale_file(
        store, tmp_path / "picked.zarr", scale=2, model="bicubic", bands=["2017-01-26T00:00:00.000000000"]
    )
    np.testing.assert_array_equal(xr.open_zarr(picked)["time"].values, times[2:])
    with rasterio.open(geosr.upscale_file(store, tmp_path / "x2.tif", scale=2, model="bicubic")) as f:
        assert f.crs.to_epsg() == 4326
        assert [d[:10] for d in f.descriptions] == ["2017-01-16", "2017-01-25", "2017-01-26"]


def test_a_cube_date_without_valid_pixels_is_written_as_nodata(tmp_path: Path) -> None:
    """Dates that are all NaN over the area (cloud, outside the swath) are common in a
    cube: they come out all nodata with one warning line for them all, the others are
    super-resolved.  Before, the whole run was refused ("band 2 has no valid pixel")."""
    times = np.array(["2017-01-16", "2017-01-25", "2017-01-26"], dtype="datetime64[ns]")
    lat = 52.5 - 0.0025 * (np.arange(24) + 0.5)
    lon = 0.0025 * (np.arange(32) + 0.5)
    values = np.random.default_rng(4).random((3, 24, 32)).astype(np.float32)
    values[1] = np.nan
    values[2, :, :] = np.nan
    cube = xr.DataArray(
        values, dims=("time", "lat", "lon"), coords={"time": times, "lat": lat, "lon": lon}, name="chl"
    )
    store = tmp_path / "cloudy.zarr"
    cube.to_dataset().to_zarr(store, zarr_format=3, consolidated=False)
    # By their dates: 'bands 2, 3 have no valid pixel' left them to be counted along the cube's time.
    dates = r"time 2017-01-25, 2017-01-26 \(bands 2, 3\) have no valid pixel .*; their output is nodata"
    with pytest.warns(geosr.GeosrWarning, match=f"cloudy.zarr: {dates}") as said:
        out = geosr.upscale_file(store, tmp_path / "cloudy_x2.tif", scale=2, model="bicubic")
    assert len([w for w in said if "no valid pixel" in str(w.message)]) == 1  # one line for all
    with rasterio.open(out) as f:
        sr = f.read()
    assert np.isnan(sr[1:]).all()
    assert np.isfinite(sr[0]).all()
    with pytest.warns(geosr.GeosrWarning, match=f"DataArray 'chl': {dates}"):
        lazy = geosr.upscale(cube, scale=2, model="bicubic").values
    np.testing.assert_array_equal(np.isnan(lazy), np.isnan(sr))


def named_bands(names: np.ndarray) -> xr.DataArray:
    """A 2-band reflectance DataArray whose band axis is labelled ``names``."""
    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    return xr.DataArray(
        np.random.default_rng(2).random((2, 24, 32)).astype(np.float32),
        dims=("band", "y", "x"),
        coords={"band": names, "y": y, "x": x},
        name="reflectance",
        attrs={"proj:epsg": 32633},
    )


def test_zarr_band_names_carry_over_without_zarr_warnings(tmp_path: Path) -> None:
    """A band axis labelled by name (B04, B08) keeps its names in a Zarr output, stored as
    variable-length strings: fixed-width unicode made zarr warn, at length, on every run."""
    store = tmp_path / "named.zarr"
    named_bands(np.array(["B04", "B08"])).to_dataset().to_zarr(store, zarr_format=3, consolidated=False)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = geosr.upscale_file(store, tmp_path / "named_x2.zarr", scale=2, model="bicubic")
    assert [str(w.message)[:60] for w in seen if "data type" in str(w.message)] == []
    assert list(xr.open_zarr(out, consolidated=True)["band"].values) == ["B04", "B08"]


def test_band_names_stored_as_bytes_are_names(tmp_path: Path) -> None:
    """Band names as byte strings (netCDF's char arrays, a Zarr v2 store's |S3) were described
    as "b'B04'" in a COG, had to be given so to --bands, and a Zarr v3 output warned three
    times, at length, that fixed-width bytes have no v3 specification."""
    store = tmp_path / "bytes.zarr"
    named_bands(np.array([b"B04", b"B08"])).to_dataset().to_zarr(store, zarr_format=2, consolidated=False)
    cog = geosr.upscale_file(store, tmp_path / "bytes_x2.tif", scale=2, model="bicubic")
    with rasterio.open(cog) as f:
        assert f.descriptions == ("B04", "B08")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        out = geosr.upscale_file(store, tmp_path / "b08_x2.zarr", scale=2, model="bicubic", bands="B08")
    assert [str(w.message)[:60] for w in seen if "data type" in str(w.message)] == []
    assert list(xr.open_zarr(out)["band"].values) == ["B08"]


def test_a_crs_wkt_on_the_variable_itself_is_its_crs(tmp_path: Path) -> None:
    """CF's crs_wkt written on the data variable (not on a grid-mapping variable) was not
    read: the store, and the DataArray given to geosr.upscale, were refused as having no CRS."""
    from rasterio.crs import CRS

    y = 5866490.0 - 10.0 * (np.arange(16) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(16) + 0.5)
    da = xr.DataArray(
        np.random.default_rng(3).random((16, 16)).astype(np.float32),
        dims=("y", "x"),
        coords={"y": y, "x": x},
        name="reflectance",
        attrs={"crs_wkt": CRS.from_epsg(32633).to_wkt()},
    )
    da.to_dataset().to_zarr(tmp_path / "wkt.zarr", zarr_format=3, consolidated=True)
    out = geosr.upscale_file(tmp_path / "wkt.zarr", tmp_path / "wkt_x2.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert f.crs == CRS.from_epsg(32633) and f.transform.c == 335440.0
    # geosr.upscale reads a DataArray's CRS as a store's: before, this one had none.
    assert geosr.upscale(da, scale=2, model="bicubic").rio.crs == CRS.from_epsg(32633)


def test_store_without_consolidated_metadata_is_read_without_warnings(tmp_path: Path) -> None:
    """A store written with consolidated=False (valid: Zarr v3 has no consolidated metadata in
    its specification) is read quietly.  Before, a run printed xarray's four-line warning about
    it three times."""
    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    da = xr.DataArray(
        np.random.default_rng(5).random((24, 32)).astype(np.float32),
        dims=("y", "x"),
        coords={"y": y, "x": x},
        name="reflectance",
        attrs={"proj:epsg": 32633},
    )
    for zarr_format in (2, 3):
        store = tmp_path / f"plain_v{zarr_format}.zarr"
        da.to_dataset().to_zarr(store, zarr_format=zarr_format, consolidated=False)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            geosr.upscale_file(store, tmp_path / f"plain_v{zarr_format}_x2.tif", scale=2, model="bicubic")
        assert [str(w.message)[:60] for w in seen if "consolidated" in str(w.message)] == []


def test_two_variables_of_one_store_read_in_one_thread_stay_apart(tmp_path: Path) -> None:
    """Readers are kept per thread and per store: two variables of one store are two
    arrays.  Before, the second variable read in a thread got the first one's pixels."""
    from geosr.io.scene import close_datasets, open_scene, read_window
    from geosr.tiling import Window

    y = 5866490.0 - 10.0 * (np.arange(16) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(16) + 0.5)
    coords = {"y": y, "x": x}
    ds = xr.Dataset(
        {
            "a": (("y", "x"), np.full((16, 16), 1.0, np.float32)),
            "b": (("y", "x"), np.full((16, 16), 2.0, np.float32)),
        },
        coords=coords,
        attrs={"proj:epsg": 32633},
    )
    store = tmp_path / "two.zarr"
    ds.to_zarr(store, zarr_format=3, consolidated=False)
    try:
        first = read_window(open_scene(store, variable="a"), Window(0, 0, 4, 4))
        second = read_window(open_scene(store, variable="b"), Window(0, 0, 4, 4))
    finally:
        close_datasets()
    assert (first == 1.0).all() and (second == 2.0).all()


def test_two_dimensional_variable_is_read_chunk_by_chunk(tmp_path: Path) -> None:
    """A (y, x) variable is read as one band without decoding the whole of it: before, the
    reader of every thread decoded all its chunks when opened (expand_dims on the lazy
    variable), 64 MiB for a 4096^2 float32 band.  Shown with a damaged chunk: a window away
    from it reads, only a window over it fails."""
    from geosr.errors import InputError
    from geosr.io.scene import close_datasets, open_scene, read_window
    from geosr.tiling import Window

    y = 5866490.0 - 10.0 * (np.arange(64) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(64) + 0.5)
    values = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, attrs={"proj:epsg": 32633})
    store = tmp_path / "band.zarr"
    da.chunk({"y": 32, "x": 32}).to_dataset(name="v").to_zarr(store, zarr_format=3)
    (store / "v" / "c" / "1" / "1").write_bytes(b"not a zstd frame")
    scene = open_scene(store)
    try:
        np.testing.assert_array_equal(read_window(scene, Window(3, 5, 20, 24)), values[None, 3:23, 5:29])
        with pytest.raises(InputError, match="cannot be decoded"):
            read_window(scene, Window(40, 40, 8, 8))
    finally:
        close_datasets()


def test_zipped_zarr_store_reads_as_its_folder(tmp_path: Path) -> None:
    """A zipped Zarr store (zarr's ZipStore; how EOPF Sentinel products come, .zarr.zip) is
    read as a Zarr store.  Before: 'not a readable raster (... not recognized as being in a
    supported file format.); check that the file is complete', of a complete store."""
    import zarr.storage

    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    values = np.random.default_rng(9).integers(1, 4000, (2, 24, 32)).astype(np.uint16)
    coords = {"band": [1, 2], "y": y, "x": x}
    da = xr.DataArray(values, dims=("band", "y", "x"), coords=coords, attrs={"proj:epsg": 32633})
    da.to_dataset(name="dn").to_zarr(tmp_path / "folder.zarr", zarr_format=3)
    zipped = zarr.storage.ZipStore(tmp_path / "product.zarr.zip", mode="w")
    da.to_dataset(name="dn").to_zarr(zipped, zarr_format=3)
    zipped.close()
    a = geosr.upscale_file(tmp_path / "folder.zarr", tmp_path / "a.tif", scale=2, model="bicubic")
    b = geosr.upscale_file(tmp_path / "product.zarr.zip", tmp_path / "b.tif", scale=2, model="bicubic")
    with rasterio.open(a) as fa, rasterio.open(b) as fb:
        assert fb.crs == fa.crs and fb.transform == fa.transform
        np.testing.assert_array_equal(fb.read(), fa.read())
    # Named as its folder is, not product.zarr_x2.tif (before).
    assert default_output(tmp_path / "product.zarr.zip", 2) == tmp_path / "product_x2.tif"


def test_a_zipped_zarr_store_named_by_gdal_or_a_zip_url_reads_as_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`/vsizip//data/product.zarr.zip` (and `zip:///data/my%20dir/product.zarr.zip`) went to GDAL's
    Zarr driver: 'the file holds 4 variables (band, x, dn, y); pick one with --variable NAME',
    and with --variable, 'Unsupported codec: bytes' (GDAL 3.10 reads no Zarr v3)."""
    from urllib.parse import quote

    import zarr.storage

    from geosr.io.scene import open_scene

    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    values = np.random.default_rng(9).integers(1, 4000, (2, 24, 32)).astype(np.uint16)
    coords = {"band": [1, 2], "y": y, "x": x}
    da = xr.DataArray(values, dims=("band", "y", "x"), coords=coords, attrs={"proj:epsg": 32633})
    (tmp_path / "my dir").mkdir()
    path = tmp_path / "my dir" / "product.zarr.zip"
    zipped = zarr.storage.ZipStore(path, mode="w")
    da.to_dataset(name="dn").to_zarr(zipped, zarr_format=3)
    zipped.close()
    monkeypatch.chdir(tmp_path)
    for name in (f"/vsizip/{path}", f"zip://{quote(str(path))}"):
        scene = open_scene(name)
        assert (scene.variable, scene.count, scene.grid) == ("dn", 2, open_scene(path).grid), name
        assert default_output(name, 2) == Path("product_x2.tif")
    out = geosr.upscale_file(f"/vsizip/{path}", scale=2, model="bicubic")
    with rasterio.open(out) as got:
        assert (got.count, got.width, got.height) == (2, 64, 48) and got.transform.c == 335440.0


def test_a_zarr_store_in_a_zip_archive_is_read_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store zipped as a folder of the archive (`zip -r a.zip scene.zarr`), named
    `/vsizip//data/a.zip/scene.zarr` or `zip:///data/a.zip!/scene.zarr`, was 'not a readable Zarr
    store (/vsizip/data/a.zip/scene.zarr does not exist); check the path': zarr opened it as a
    local folder (and GDAL 3.10 reads no Zarr v3)."""
    import zipfile

    from geosr.io.scene import open_scene, read_window
    from geosr.tiling import Window

    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    values = np.random.default_rng(9).integers(1, 4000, (2, 24, 32)).astype(np.uint16)
    coords = {"band": [1, 2], "y": y, "x": x}
    da = xr.DataArray(values, dims=("band", "y", "x"), coords=coords, attrs={"proj:epsg": 32633})
    store = tmp_path / "scene.zarr"
    da.to_dataset(name="dn").to_zarr(store, zarr_format=3, encoding={"dn": {"chunks": (1, 8, 8)}})
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for file in sorted(store.rglob("*")):
            zipped.write(file, file.relative_to(tmp_path).as_posix())
    monkeypatch.chdir(tmp_path)
    folder = open_scene(store)
    for name in (f"/vsizip/{archive}/scene.zarr", f"zip://{archive}!/scene.zarr"):
        scene = open_scene(name)
        assert (scene.variable, scene.count, scene.grid) == ("dn", 2, folder.grid), name
        window = Window(3, 5, 20, 17)
        np.testing.assert_array_equal(read_window(scene, window), read_window(folder, window))
        assert default_output(name, 2) == Path("scene_x2.tif")


def test_a_zarr_store_a_zip_archive_does_not_hold_is_named_as_missing(tmp_path: Path) -> None:
    """`/vsizip//data/a.zip/scene.zarr` of a zip without it was "not a readable Zarr store (No group
    found in store <FsspecStore(AsyncFileSystemWrapper, scene.zarr)> at path ''); check the path"."""
    import zipfile

    from geosr.errors import InputError
    from geosr.io.scene import open_scene

    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("other.zarr/zarr.json", '{"zarr_format": 3, "node_type": "group"}')
    with pytest.raises(InputError, match=r"a\.zip holds no 'scene\.zarr'; it holds other\.zarr/zarr\.json"):
        open_scene(f"/vsizip/{archive}/scene.zarr")


def test_a_groups_default_output_is_relative_as_its_input(tmp_path: Path, monkeypatch) -> None:
    """``geosr run product.zarr/r10m`` printed /abs/path/product_r10m_x2.tif, where every other
    relative input's output is printed as relative (``scene_x2.tif``)."""
    zarr.open_group(tmp_path / "product.zarr", mode="w").create_group("r10m")
    monkeypatch.chdir(tmp_path)
    assert default_output(Path("product.zarr/r10m"), 2) == Path("product_r10m_x2.tif")
    assert default_output(tmp_path / "product.zarr" / "r10m", 2) == tmp_path / "product_r10m_x2.tif"


def test_a_group_of_a_store_is_written_beside_the_store_not_into_it(
    tmp_path: Path, capsys, monkeypatch
) -> None:
    """``geosr run product.zarr/r10m`` without -o writes product_r10m_x2.tif beside the store:
    before, it wrote product.zarr/r10m_x2.tif (and its run folder) into the input store."""
    from tests.test_bad_input import run_cli

    y = 5866490.0 - 10.0 * (np.arange(16) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(16) + 0.5)
    values = np.arange(256, dtype=np.float32).reshape(16, 16)
    da = xr.DataArray(values, dims=("y", "x"), coords={"y": y, "x": x}, attrs={"proj:epsg": 32633})
    store = tmp_path / "product.zarr"
    da.to_dataset(name="b04").to_zarr(store, group="measurements/r10m", zarr_format=3)
    before = sorted(p.relative_to(store) for p in store.rglob("*"))
    code, err = run_cli(
        ["run", str(store / "measurements" / "r10m"), "--scale", "2", "--model", "bicubic"],
        capsys,
        monkeypatch,
    )
    assert code == 0, err
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == before
    with rasterio.open(tmp_path / "product_measurements_r10m_x2.tif") as out:
        assert out.shape == (32, 32)


def test_zarr_of_a_geotiff_keeps_its_transform_exactly(make_raster, tmp_path: Path) -> None:
    """A store rioxarray wrote from a GeoTIFF keeps the GeoTIFF's transform (its stored
    GeoTransform), through geosr run and geosr.upscale.  Before, the pixel size was derived
    from the rounded pixel centres: 8.983152841195902e-05 for 8.983152841195215e-05."""
    import rioxarray

    src = make_raster(height=300, width=400, crs="EPSG:4326", transform=GEO_TRANSFORM)
    store = tmp_path / "scene.zarr"
    rioxarray.open_rasterio(src).to_dataset(name="band_data").to_zarr(store, zarr_format=3)
    out = geosr.upscale_file(store, tmp_path / "scene_x2.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert f.transform == GEO_TRANSFORM @ Affine.scale(1 / 2)
    lazy = geosr.upscale(xr.open_zarr(store, decode_coords="all")["band_data"], scale=2, model="bicubic")
    assert lazy.rio.transform() == GEO_TRANSFORM @ Affine.scale(1 / 2)
    # A GeoTransform left stale by a flip is not taken: the coordinates say where pixels are.
    flipped = tmp_path / "flipped.zarr"
    rioxarray.open_rasterio(src).isel(y=slice(None, None, -1)).to_dataset(name="band_data").to_zarr(flipped)
    out = geosr.upscale_file(flipped, tmp_path / "flipped_x2.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert f.transform.e > 0 and f.bounds.left == GEO_TRANSFORM.c


CHL = "mass_concentration_of_chlorophyll_a_in_sea_water"


def test_long_name_of_a_cube_is_kept(tmp_path: Path) -> None:
    """The CF long_name of a (time, lat, lon) variable names the whole cube, not a band: it is
    kept as a tag of the COG and an attribute of the Zarr output.  Before, it was dropped
    (the bands are described by their dates) and the outputs no longer said what they hold."""
    times = np.array(["2017-01-16", "2017-01-25"], dtype="datetime64[ns]")
    lat = 52.5 - 0.0025 * (np.arange(16) + 0.5)
    lon = 0.0025 * (np.arange(16) + 0.5)
    cube = xr.DataArray(
        np.random.default_rng(10).random((2, 16, 16)).astype(np.float32),
        dims=("time", "lat", "lon"),
        coords={"time": times, "lat": lat, "lon": lon},
        name="chl",
        attrs={"long_name": "Chlorophyll concentration", "units": "mg m-3", "standard_name": CHL},
    )
    cube.to_dataset().to_zarr(tmp_path / "chl.zarr", zarr_format=3)
    tif = geosr.upscale_file(tmp_path / "chl.zarr", tmp_path / "chl_x2.tif", scale=2, model="bicubic")
    with rasterio.open(tif) as f:
        assert f.tags()["long_name"] == "Chlorophyll concentration"
        assert f.descriptions[0].startswith("2017-01-16")
    out = geosr.upscale_file(tmp_path / "chl.zarr", tmp_path / "chl_x2.zarr", scale=2, model="bicubic")
    assert xr.open_zarr(out).attrs["long_name"] == "Chlorophyll concentration"
    # The CF standard_name says what the variable's values are: it went onto the group.
    assert xr.open_zarr(out)["band_data"].attrs["standard_name"] == CHL
    assert "standard_name" not in xr.open_zarr(out).attrs


def test_geozarr_attributes_give_the_crs(tmp_path: Path) -> None:
    """A plain Zarr store with x/y coordinates and a GeoZarr-style `proj:epsg` attribute."""
    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    values = np.arange(2 * 24 * 32, dtype=np.float32).reshape(2, 24, 32)
    da = xr.DataArray(
        values,
        dims=("band", "y", "x"),
        coords={"band": [1, 2], "y": y, "x": x},
        name="reflectance",
        attrs={"proj:epsg": 32633},
    )
    store = tmp_path / "geozarr.zarr"
    da.to_dataset().to_zarr(store, zarr_format=3)
    out = geosr.upscale_file(store, tmp_path / "gz_x2.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f:
        assert f.crs.to_epsg() == 32633
        assert f.transform == Affine(5.0, 0.0, 335440.0, 0.0, -5.0, 5866490.0)
        assert (f.width, f.height, f.count) == (64, 48, 2)


def test_cf_flag_variables_are_not_super_resolved(tmp_path: Path) -> None:
    """Flags (CF ``flag_masks``/``flag_values``) are codes, not measurements: refused by name,
    and left out when geosr picks the store's variable itself."""
    y = 5866490.0 - 10.0 * (np.arange(24) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(32) + 0.5)
    coords = {"y": y, "x": x}
    measured = xr.DataArray(
        np.random.default_rng(0).random((24, 32), np.float32), dims=("y", "x"), coords=coords
    )
    flags = xr.DataArray(
        np.zeros((24, 32), np.float32),
        dims=("y", "x"),
        coords=coords,
        attrs={"flag_masks": [1, 2], "flag_meanings": "land cloud"},
    )
    store = tmp_path / "product.zarr"
    ds = xr.Dataset({"chl": measured.assign_attrs({"proj:epsg": 32633}), "quality_flags": flags})
    ds.to_zarr(store, zarr_format=3)
    with pytest.raises(geosr.GeosrError, match=r"'quality_flags' holds CF flags \(land cloud\).*\(chl\)"):
        geosr.upscale_file(store, tmp_path / "q_x2.tif", scale=2, model="bicubic", variable="quality_flags")
    assert not (tmp_path / "q_x2.tif").exists()
    out = geosr.upscale_file(store, tmp_path / "chl_x2.tif", scale=2, model="bicubic")  # the only measurement
    with rasterio.open(out) as f:
        assert f.count == 1 and f.read(1).std() > 0.1  # chl (uniform noise), not the all-zero flags


def test_band_scale_offset_and_unit_reach_both_outputs(make_raster, tmp_path: Path) -> None:
    """``value = DN * scale + offset`` (Landsat C2 surface reflectance, many L2 products): the
    output's pixels are DNs too, so their scaling must travel with them, per band."""
    path = make_raster(count=2)
    with rasterio.open(path, "r+") as dst:
        dst.scales = (2.75e-05, 0.5)
        dst.offsets = (-0.2, 10.0)
        dst.units = ("reflectance", "K")
    cog = geosr.upscale_file(path, tmp_path / "x2.tif", scale=2, model="bicubic")
    with rasterio.open(cog) as f:
        assert f.scales == (2.75e-05, 0.5) and f.offsets == (-0.2, 10.0) and f.units == ("reflectance", "K")
    picked = geosr.upscale_file(path, tmp_path / "b2.tif", scale=2, model="bicubic", bands="2")
    with rasterio.open(picked) as f:
        assert f.scales == (0.5,) and f.offsets == (10.0,) and f.units == ("K",)
    attrs = xr.open_zarr(geosr.upscale_file(path, tmp_path / "x2.zarr", scale=2, model="bicubic"))[
        "band_data"
    ].attrs
    assert attrs["scales"] == [2.75e-05, 0.5] and attrs["offsets"] == [-0.2, 10.0]
    assert attrs["units"] == ["reflectance", "K"]
    one = geosr.upscale_file(path, tmp_path / "one.zarr", scale=2, model="bicubic", bands="1")
    decoded = xr.open_zarr(one)["band_data"]  # CF scale_factor/add_offset: xarray applies them
    with rasterio.open(path) as src:
        assert float(decoded.max()) == pytest.approx(float(src.read(1).max()) * 2.75e-05 - 0.2, abs=0.02)
    assert decoded.attrs["units"] == "reflectance"


def test_a_store_in_one_chunk_is_decoded_once_and_read_exactly(tmp_path: Path) -> None:
    """Windows of a store whose chunk is larger than a tile are cut from chunks decoded
    once and kept (before: decoded again for every tile, quadratic in the scene's side),
    and give the same pixels and the same run output as the store chunked small."""
    from geosr.io.scene import close_datasets, open_scene, read_window
    from geosr.io.zarr_scene import ChunkedReader, open_zarr_array
    from geosr.tiling import Window

    y = 5866490.0 - 10.0 * (np.arange(96) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(80) + 0.5)
    values = np.random.default_rng(5).random((2, 96, 80)).astype(np.float32)
    da = xr.DataArray(values, dims=("band", "y", "x"), coords={"band": [1, 2], "y": y, "x": x}, name="refl")
    one, small = tmp_path / "one.zarr", tmp_path / "small.zarr"
    da.attrs["proj:epsg"] = 32633
    da.to_dataset().chunk({"band": 1, "y": 96, "x": 80}).to_zarr(one, zarr_format=3, consolidated=False)
    da.to_dataset().chunk({"band": 1, "y": 16, "x": 16}).to_zarr(small, zarr_format=3, consolidated=False)

    reader = open_zarr_array(open_scene(one, variable="refl"))
    assert isinstance(reader, ChunkedReader)
    decodes = 0
    whole = reader._da

    class Counting:
        ndim, shape, dtype = whole.ndim, whole.shape, whole.dtype

        def __getitem__(self, key):
            nonlocal decodes
            decodes += 1
            return whole[key]

    reader._da = Counting()
    for r in range(0, 96, 24):
        for c in range(0, 80, 20):
            np.testing.assert_array_equal(
                reader[:, r : r + 24, c : c + 20], values[:, r : r + 24, c : c + 20]
            )
    assert decodes == 1  # 20 windows, one decode
    try:
        a = read_window(open_scene(one, variable="refl"), Window(-3, 70, 30, 20))  # mirrored past two edges
        b = read_window(open_scene(small, variable="refl"), Window(-3, 70, 30, 20))
    finally:
        close_datasets()
    np.testing.assert_array_equal(a, b)
    out_one = geosr.upscale_file(one, tmp_path / "one_x2.tif", scale=2, model="bicubic", tile=24)
    out_small = geosr.upscale_file(small, tmp_path / "small_x2.tif", scale=2, model="bicubic", tile=24)
    with rasterio.open(out_one) as f, rasterio.open(out_small) as g:
        np.testing.assert_array_equal(f.read(), g.read())


def test_outputs_of_a_weights_file_name_it(make_raster, tmp_path: Path) -> None:
    """geosr train writes cards named after the architecture (cnnrnn-fast): an output of
    fine-tuned weights was tagged GEOSR_MODEL=cnnrnn-fast, as the bundled model's are."""
    torch.manual_seed(0)
    config = CNNRNNConfig(scale=2, features=8, encoder_blocks=1, refine_steps=1)
    card = ModelCard(name="cnnrnn-fast", architecture="cnnrnn", config=vars(config), scale=2)
    weights, _ = save_weights(CNNRNN(config), card, tmp_path / "finetuned_x2")
    src = make_raster(count=1, height=30, width=30)
    out = geosr.upscale_file(src, tmp_path / "ft.tif", scale=2, model=str(weights), stac=True)
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_MODEL"] == "cnnrnn-fast (finetuned_x2.safetensors)"
    item = (tmp_path / "ft.stac.json").read_text()
    assert '"geosr:model": "cnnrnn-fast (finetuned_x2.safetensors)"' in item
    bundled = geosr.upscale_file(src, tmp_path / "b.tif", scale=2, model="cnnrnn-fast")
    with rasterio.open(bundled) as f:
        assert f.tags()["GEOSR_MODEL"] == "cnnrnn-fast"


def test_an_output_onto_an_input_store_or_frame_is_refused_even_with_overwrite(make_raster, tmp_path) -> None:
    # Before, only a file input was guarded: a Zarr input run onto itself, or an output onto
    # a --frame, replaced that input with --overwrite (a 134 x 182 store became 268 x 364).
    from geosr.errors import OptionError

    src = make_raster(height=30, width=40)
    store = geosr.upscale_file(src, tmp_path / "in.zarr", scale=2, model="bicubic")
    frame = make_raster("frame.tif", height=30, width=40)
    before = frame.read_bytes()
    with pytest.raises(OptionError, match="the output would overwrite the input; choose another dst path"):
        geosr.upscale_file(store, store, scale=2, model="bicubic", overwrite=True)
    with pytest.raises(OptionError, match=f"the output would overwrite the frame {frame}"):
        geosr.upscale_file(src, frame, scale=2, model="bicubic", frames=(str(frame),), overwrite=True)
    assert frame.read_bytes() == before
    assert dict(xr.open_zarr(store).sizes) == {"band": 1, "y": 60, "x": 80}


def test_an_output_onto_a_source_file_of_a_vrt_input_is_refused_even_with_overwrite(
    make_raster, tmp_path
) -> None:
    """``geosr run mosaic.vrt -o part.tif --overwrite`` replaced the VRT's source with the
    output (a 30 x 40 part became 60 x 80), which the VRT then read as a part of itself."""
    from rasterio.shutil import copy as rio_copy

    from geosr.errors import OptionError

    part = make_raster("part.tif", height=30, width=40)
    before = part.read_bytes()
    rio_copy(part, tmp_path / "mosaic.vrt", driver="VRT")
    with pytest.raises(OptionError, match=r"the output would overwrite the input's source file .*part\.tif;"):
        geosr.upscale_file(tmp_path / "mosaic.vrt", part, scale=2, model="bicubic", overwrite=True)
    assert part.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mosaic.vrt", "part.tif"]


def test_a_value_beyond_float32_is_nodata_in_one_line_not_numpys(make_raster, tmp_path: Path) -> None:
    """1e+39 in a float64 raster overflowed the model's float32 input: the output was NaN and
    1.8e+308 around it, and the only words numpy's bare 'overflow encountered in cast' and
    '... in add'.  The pixel is nodata (its 2 x 2 output footprint NaN, its neighbours data),
    in geosr's line, also from its --quicklook; declared as nodata, it is not warned of."""
    data = coordinate_pattern(1, 40, 40, "float64") / 1000
    data[0, 21, 23] = 1e39
    src = make_raster("big.tif", data=data)
    out, said = warnings_said(
        lambda: geosr.upscale_file(src, tmp_path / "a.tif", scale=2, model="bicubic", quicklook=True)
    )
    assert (lines := set(said)) == {
        f"{src}: 1 of its 1600 pixels sampled hold 1e+39, a float fill value (1e+38 or more in "
        "magnitude) not declared as its nodata: they are written as nodata, not super-resolved; "
        "pass nodata=1e+39 to declare it"
    }, lines
    with rasterio.open(out) as f:
        pixels = f.read(1)
    assert np.isnan(pixels[42:44, 46:48]).all() and np.isnan(pixels).sum() == 4
    assert np.abs(pixels[~np.isnan(pixels)]).max() < 10
    geosr.upscale_file(src, tmp_path / "b.tif", scale=2, model="bicubic", nodata=1e39)


def test_a_float32_nodata_beyond_float32_gives_no_numpy_line(make_raster, tmp_path: Path) -> None:
    """A float32 band declaring nodata 1e+39, which no float32 pixel can hold (rasterio takes the
    band as having none), printed numpy's bare 'overflow encountered in cast' as the scene opened."""
    make_raster("band.tif", dtype="float32")
    vrt = tmp_path / "declared.vrt"
    vrt.write_text(
        '<VRTDataset rasterXSize="91" rasterYSize="67"><SRS>EPSG:32633</SRS>'
        f"<GeoTransform>{', '.join(map(repr, UTM_TRANSFORM.to_gdal()))}</GeoTransform>"
        '<VRTRasterBand dataType="Float32" band="1"><NoDataValue>1e+39</NoDataValue><SimpleSource>'
        '<SourceFilename relativeToVRT="1">band.tif</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand></VRTDataset>"
    )
    out, said = warnings_said(lambda: geosr.upscale_file(vrt, tmp_path / "sr.tif", scale=2, model="bicubic"))
    assert said == []
    with rasterio.open(out) as f:
        assert np.isnan(f.nodata) and np.isfinite(f.read(1)).all()


def test_a_value_beyond_float32_once_normalised_is_said_of_its_file(make_raster, tmp_path: Path) -> None:
    """5e+37 where the scene's sample (every other pixel of a 1025 x 1024 raster) did not look
    overflowed once normalised, in a line that said 'the input holds 5e+37', not which file."""
    data = np.random.default_rng(0).random((1, 1025, 1024), np.float32) / 1000
    data[0, 3, 3] = 5e37  # an odd row and column: not in the sample
    src = make_raster("tiny.tif", data=data)
    x0, y0 = UTM_TRANSFORM.c, UTM_TRANSFORM.f
    bbox = (x0, y0 + 40 * UTM_TRANSFORM.e, x0 + 40 * UTM_TRANSFORM.a, y0)  # the first 40 x 40 pixels
    out, said = warnings_said(
        lambda: geosr.upscale_file(
            src, tmp_path / "sr.tif", scale=2, model="bicubic", bbox=bbox, bbox_crs="EPSG:32633"
        )
    )
    assert (lines := set(said)) == {
        f"{src} holds 5e+37, beyond float32's range once normalised for the model, which computes in "
        "float32: such pixels are written as nodata, not super-resolved; if it is its fill value, pass "
        "it as nodata"
    }, lines
    with rasterio.open(out) as f:
        assert f.shape == (80, 80) and np.isnan(f.read(1)[6:8, 6:8]).all()


def test_zeros_of_an_undeclared_nodata_are_warned_about(
    make_raster, tmp_path: Path, capfd, monkeypatch
) -> None:
    """A Sentinel-2 L1C JP2 declares no nodata for the 0 outside its swath: run without --nodata 0,
    that area was super-resolved as data (a dark ring, 0 inside valid pixels), without a word."""
    data = coordinate_pattern(1, 40, 40)
    data[:, :, :12] = 0  # the area outside the swath
    src = make_raster("l1c.tif", data=data)
    code, _, err = run_fd_cli(
        ["run", str(src), "-o", str(tmp_path / "a.tif"), "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 0, err
    assert "30 % of its pixels are 0 in every band and it declares no nodata" in err, err
    assert "pass --nodata 0 if they are not" in err
    # geosr info says it as the run would (it showed 'nodata none', 'valid pixels 100 %' alone)
    code, _, err = run_fd_cli(["info", str(src), "--model", "bicubic"], capfd, monkeypatch)
    assert code == 0 and "declares no nodata" in err, err
    out = tmp_path / "b.tif"
    code, _, err = run_fd_cli(
        ["run", str(src), "-o", str(out), "--model", "bicubic", "--nodata", "0"], capfd, monkeypatch
    )
    assert code == 0 and "declares no nodata" not in err, err
    # a scene whose few zeros are dark pixels, not an area, is not warned about
    data[:, :, :12] = 100
    data[0, 0, :5] = 0
    src = make_raster("dark.tif", data=data)
    code, _, err = run_fd_cli(
        ["run", str(src), "-o", str(tmp_path / "c.tif"), "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 0 and "declares no nodata" not in err, err


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")  # the fill, as data
def test_a_float_fill_value_not_declared_as_nodata_is_warned_about(
    make_raster, tmp_path: Path, capfd, monkeypatch
) -> None:
    """A float32 raster whose fill is float32's lowest (-3.4028234663852886e+38) without a nodata
    tag saying so: run as data, each fill pixel overflowed the model's input and blanked the
    output around it (NaN over about 100 x 100 output pixels per fill pixel with the default
    model at x4), with numpy's bare 'overflow encountered in cast' as the only word."""
    fill = float(np.finfo(np.float32).min)
    data = coordinate_pattern(1, 40, 40, "float32") / 4000
    data[:, 20, 20] = fill
    src = make_raster("fill.tif", data=data, nodata=float("nan"))
    code, _, err = run_fd_cli(
        ["run", str(src), "-o", str(tmp_path / "a.tif"), "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 0, err
    assert "fill.tif: 1 of its 1600 pixels sampled hold -3.4028234663852886e+38" in err, err
    assert "pass --nodata -3.4028234663852886e+38 to declare it" in err, err
    with pytest.warns(GeosrWarning, match=r"pass nodata=-3\.4028234663852886e\+38 to declare it"):
        geosr.upscale_file(src, tmp_path / "c.tif", model="bicubic", scale=2)
    code, _, err = run_fd_cli(["info", str(src), "--model", "bicubic"], capfd, monkeypatch)
    assert code == 0 and "pixels sampled hold -3.4028234663852886e+38" in err, err  # as the run would
    code, _, err = run_fd_cli(
        ["run", str(src), "-o", str(tmp_path / "b.tif"), "--model", "bicubic", "--nodata", str(fill)],
        capfd,
        monkeypatch,
    )
    assert code == 0 and "pixels sampled hold" not in err, err
    with rasterio.open(tmp_path / "b.tif") as out:
        pixels, nodata = out.read(), np.float32(out.nodata)
    assert nodata == fill and (pixels == nodata).sum() == 16  # the fill pixel's own, no hole around it
    assert np.abs(pixels[pixels != nodata]).max() < 2


def test_a_mask_or_label_variable_beside_the_raster_is_not_a_candidate(tmp_path: Path) -> None:
    """A store of one numeric raster and a bool mask (and a grid of strings) reads the raster
    by itself: before, 'the store holds 3 raster variables of measurements (land, name, refl);
    choose one with --variable NAME', though geosr reads neither of the other two."""
    from geosr.io.scene import open_scene

    y = 5866490.0 - 10.0 * (np.arange(8) + 0.5)
    x = 335440.0 + 10.0 * (np.arange(8) + 0.5)
    refl = np.arange(64, dtype=np.float32).reshape(8, 8)
    ds = xr.Dataset(
        {
            "refl": (("y", "x"), refl),
            "land": (("y", "x"), refl > 10),
            "name": (("y", "x"), np.full((8, 8), "sea", dtype=object)),
        },
        coords={"y": y, "x": x},
        attrs={"proj:epsg": 32633},
    )
    store = tmp_path / "masked.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr's notes on variable-length strings
        ds.to_zarr(store, zarr_format=3, consolidated=False)
    assert open_scene(store).variable == "refl"


def test_the_name_of_one_band_is_a_string_in_a_zarr_output(make_raster, tmp_path: Path) -> None:
    """It was a list of one, ``['B4']``, which xarray's plots wrote on their axes; rioxarray gives
    a GeoTIFF's one band name as a string, and so does CF."""
    from geosr.io.scene import open_scene

    src = make_raster("b4.tif", height=16, width=16, descriptions=("B4",))
    out = geosr.upscale_file(src, tmp_path / "b4_x2.zarr", scale=2, model="bicubic")
    assert xr.open_zarr(out)["band_data"].attrs["long_name"] == "B4"
    assert open_scene(out).descriptions == ("B4",)  # and read back as the band's name


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_overwrite_replaces_a_symbolic_link_at_the_output_not_the_file_it_names(
    make_raster, tmp_path: Path, suffix: str
) -> None:
    """``-o link --overwrite``, the link naming an earlier output elsewhere: the new output
    takes the link's place, and the file the link named is left as it was (README)."""
    src = make_raster(height=16, width=16)
    elsewhere = tmp_path / "disk"
    elsewhere.mkdir()
    earlier = geosr.upscale_file(src, elsewhere / f"earlier{suffix}", scale=2, model="bicubic")
    before = sorted((p.relative_to(earlier), p.stat().st_mtime_ns) for p in Path(earlier).rglob("*"))
    link = tmp_path / f"out{suffix}"
    link.symlink_to(earlier)
    out = geosr.upscale_file(src, link, scale=3, model="bicubic", overwrite=True)
    assert Path(out) == link and not link.is_symlink() and link.exists()
    assert sorted((p.relative_to(earlier), p.stat().st_mtime_ns) for p in Path(earlier).rglob("*")) == before
    if suffix == ".tif":
        with rasterio.open(earlier) as f:
            assert f.width == 32
    else:
        assert zarr.open_array(str(earlier), path="band_data", mode="r").shape[-1] == 32


def _with_rpcs(path: Path) -> Path:
    """``path`` given RPCs of a simple valid model beside its geotransform, as a satellite
    product has its sensor model (sample = longitude, line = -latitude, normalised)."""
    from rasterio.rpc import RPC

    zeros = [0.0] * 17
    rpcs = RPC(
        height_off=0, height_scale=100, lat_off=47.0, lat_scale=0.1, line_den_coeff=[1.0, *zeros, 0.0, 0.0],
        line_num_coeff=[0.0, 0.1, -1.0, *zeros], line_off=8, line_scale=8, long_off=15.0, long_scale=0.1,
        samp_den_coeff=[1.0, *zeros, 0.0, 0.0], samp_num_coeff=[0.0, 1.0, 0.2, *zeros], samp_off=8,
        samp_scale=8,
    )  # fmt: skip
    with rasterio.open(path, "r+") as dst:
        dst.rpcs = rpcs
    return path


@pytest.mark.parametrize("bbox", [None, "336000,5866000,336400,5866300"])
def test_rpcs_beside_a_geotransform_are_carried_for_the_outputs_pixels(
    make_raster, tmp_path: Path, bbox: str | None
) -> None:
    """A georeferenced raster's RPCs were dropped from the output without a word.  They are
    carried, rescaled: GDAL's RPC transformer places every output pixel on the ground point of
    the same spot of the input (also for an area of interest, a window of the file)."""
    from rasterio.transform import RPCTransformer

    path = _with_rpcs(make_raster(height=16, width=16, transform=Affine(60, 0, 335820, 0, -60, 5866590)))
    out = tmp_path / "out.tif"
    aoi = {"bbox": bbox, "bbox_crs": "EPSG:32633"} if bbox else {}
    geosr.upscale_file(path, out, scale=3, model="bicubic", **aoi)
    with rasterio.open(path) as src, rasterio.open(out) as dst:
        col0, row0 = ~src.transform @ (dst.transform.c, dst.transform.f)
        assert (row0, col0) == ((4.0, 3.0) if bbox else (0.0, 0.0))  # the whole pixels around the box
        given, carried = RPCTransformer(src.rpcs), RPCTransformer(dst.rpcs)
        for row, col in [(0, 0), (4, 7), (dst.height - 1, dst.width - 1)]:
            here = carried.xy(row, col, zs=10, offset="ul")
            there = given.xy(row0 + row / 3, col0 + col / 3, zs=10, offset="ul")
            np.testing.assert_allclose(here, there, rtol=0, atol=1e-12)


def test_a_zarr_output_says_it_goes_without_the_rpcs(make_raster, tmp_path: Path) -> None:
    path = _with_rpcs(make_raster(height=16, width=16))
    with pytest.warns(GeosrWarning, match=r"RPCs are not written to .*out.zarr \(a Zarr store holds none\)"):
        geosr.upscale_file(path, tmp_path / "out.zarr", scale=2, model="bicubic")
