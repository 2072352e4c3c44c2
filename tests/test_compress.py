"""`--compress`: the output's lossless compression, for a COG and a Zarr store."""

from __future__ import annotations

import resource
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr
from rasterio.enums import Compression
from rio_cogeo.cogeo import cog_validate

import geosr
from geosr.errors import OptionError, OutputError, ResumableError
from tests.test_batch import run_cli as run_fd_cli

OPTIONS = {"scale": 2, "model": "bicubic", "tile": 16}


@pytest.mark.parametrize(
    ("compress", "gdal_name"),
    [("zstd", Compression.zstd), ("deflate", Compression.deflate), ("lzw", Compression.lzw), ("none", None)],
)
def test_a_cog_is_written_with_the_compression_asked_for_and_the_same_pixels(
    make_raster, tmp_path: Path, compress: str, gdal_name: Compression | None
) -> None:
    """Every compression is lossless: the pixels are the default's, bit for bit, in a valid COG
    whose full resolution and overviews are compressed as asked (GDAL's own name for it)."""
    src = make_raster(count=2, height=300, width=280, nodata=0)  # 600 x 560: one overview
    default = geosr.upscale_file(src, tmp_path / "default.tif", **OPTIONS)
    out = geosr.upscale_file(src, tmp_path / f"{compress}.tif", compress=compress, **OPTIONS)
    assert cog_validate(str(out), quiet=True)[0]
    with rasterio.open(out) as written, rasterio.open(default) as reference:
        assert written.compression == gdal_name
        assert written.tags(ns="IMAGE_STRUCTURE").get("PREDICTOR") == (None if compress == "none" else "2")
        np.testing.assert_array_equal(written.read(), reference.read())
        assert written.overviews(1) == reference.overviews(1) != []
        overview = (2, 300, 280)
        np.testing.assert_array_equal(written.read(out_shape=overview), reference.read(out_shape=overview))


@pytest.mark.parametrize(("compress", "codec"), [("zstd", "blosc"), ("deflate", "gzip"), ("none", None)])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_a_zarr_store_is_written_with_the_codec_of_the_compression(
    make_raster, tmp_path: Path, compress: str, codec: str | None, zarr_format: int
) -> None:
    src = make_raster(count=2, height=40, width=40, nodata=0)
    reference = geosr.upscale_file(src, tmp_path / "reference.tif", **OPTIONS)
    out = tmp_path / f"{compress}.zarr"
    geosr.upscale_file(src, out, compress=compress, zarr_format=zarr_format, **OPTIONS)
    array = zarr.open_array(str(out / "band_data"), mode="r")
    names = [type(c).__name__.lower() for c in array.compressors]
    assert len(names) == (codec is not None) and all(codec in name for name in names), names
    with rasterio.open(reference) as ref:
        np.testing.assert_array_equal(array[:], ref.read())


@pytest.mark.parametrize(("compress", "codec"), [("zstd", "blosc"), ("deflate", "gzip"), ("none", None)])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_every_array_of_a_zarr_store_takes_the_codec_of_the_compression(
    make_raster, tmp_path: Path, compress: str, codec: str | None, zarr_format: int
) -> None:
    """The coordinates too (x, y, the band labels, the CRS): they kept zarr's default codec
    (zstd in v3, Blosc LZ4 in v2), so that a store written for a reader without zstd or Blosc
    could not be georeferenced by it."""
    src = make_raster(count=2, height=40, width=40, nodata=0)
    out = geosr.upscale_file(
        src, tmp_path / "out.zarr", compress=compress, zarr_format=zarr_format, **OPTIONS
    )
    group = zarr.open_group(str(out), mode="r")
    found = {name: [type(c).__name__.lower() for c in group[name].compressors] for name in group.array_keys()}
    assert set(found) == {"band_data", "band", "x", "y", "spatial_ref"}, found
    assert all(len(names) == (codec is not None) for names in found.values()), found
    assert all(codec in name for names in found.values() for name in names), found


@pytest.mark.parametrize(
    ("side", "limit"),
    [
        # 1024^2 uint16 and a 512^2 overview: 2.5 MiB; the raw store does not fit twice, so it is LZ4.
        pytest.param(512, 2_300_000, id="lz4-store"),
        # 600^2: 0.9 MB of pixels, in a raw store, but four 512^2 tiles and the overview's one.
        pytest.param(300, 2_000_000, id="edge-tiles"),
    ],
)
def test_an_uncompressed_cog_that_cannot_fit_is_refused_before_its_build(
    make_raster, tmp_path: Path, capfd, side: int, limit: int
) -> None:
    """The space check before the COG build took the run store's size on disk as the COG's
    bound: true of a compressed COG, but a tight disk's store is LZ4 (1.5 MB of 2.5 MiB
    here), and the COG of --compress none is its tiles at full size, edge padding too (2.5
    MiB for a 600^2 output).  GDAL started it and printed a line per failed write.  A
    file-size limit fails writes as a full disk does (Python ignores SIGXFSZ), and caps
    what geosr sees as free."""
    src = make_raster(height=side, width=side)
    dst = tmp_path / "out.tif"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(ResumableError) as raised:
            geosr.upscale_file(src, dst, compress="none", check_resources=False, scale=2, model="bicubic")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    # Five 512^2 uint16 tiles (2.5 MiB), each framed, and the header's room (0.25 MiB).
    assert "not enough disk space to build the COG; it needs about 2.8 MiB" in str(raised.value), raised.value
    assert "rerun with resume=True: the 1 finished tile is kept" in str(raised.value), raised.value
    assert "File too large" not in capfd.readouterr().err
    assert not dst.exists()


def test_an_uncompressed_zarr_store_that_cannot_fit_is_refused_before_its_tiles(
    make_raster, tmp_path: Path
) -> None:
    """geosr run's check before the first tile counted a Zarr output as its pixels, but an
    uncompressed store holds every chunk whole, an edge chunk's padding too: a 300^2 scene at
    x2 in tiles of 256 is four 512^2 chunks of a 600^2 output, 2.0 MiB on disk for 703 KiB of
    pixels, and the check passed it with 1 MiB free.  It now counts the whole chunks, and
    refuses it before the model runs, leaving nothing behind; the compressed store, its pixels'
    size at most, still runs.  A file-size limit caps what geosr sees as free (one chunk file
    under it, the run without the check wrote the whole store)."""
    src = make_raster(height=300, width=300)
    dst = tmp_path / "out.zarr"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, hard))
    try:
        with pytest.raises(OutputError) as raised:
            geosr.upscale_file(src, dst, compress="none", scale=2, model="bicubic", tile=256)
        message = str(raised.value)
        assert "is 703.1 KiB uncompressed and the run needs about 2.1 MiB of disk" in message, message
        assert "but 1.0 MiB are free" in message, message
        assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]
        geosr.upscale_file(src, dst, compress="zstd", scale=2, model="bicubic", tile=256)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert dst.exists()


def test_an_unknown_or_tiff_only_compression_is_refused_in_one_line(
    make_raster, tmp_path: Path, capfd, monkeypatch
) -> None:
    """Before anything is read or written: an unknown name, and LZW (a TIFF compression, which
    Zarr has no codec for) for a .zarr output; any case is taken."""
    src = make_raster()

    def run(output: str, *more: str) -> tuple[int, str]:
        args = ["run", str(src), "-o", str(tmp_path / output), "--scale", "2", "--model", "bicubic"]
        code, _, err = run_fd_cli([*args, *more], capfd, monkeypatch)
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        return code, err

    code, err = run("o.tif", "--compress", "jpeg")
    assert code == 2 and "--compress 'jpeg' is not supported; use zstd, deflate, lzw or none" in err, err
    code, err = run("o.zarr", "--compress", "lzw")
    assert code == 2 and "--compress 'lzw' is a TIFF compression" in err, err
    assert "use zstd, deflate or none for it" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]

    with pytest.raises(OptionError, match=r"compress='jpeg' is not supported; use zstd"):
        geosr.upscale_file(src, tmp_path / "api.tif", compress="jpeg", **OPTIONS)
    with pytest.raises(OptionError, match=r"compress='lzw' is a TIFF compression"):
        geosr.upscale_file(src, tmp_path / "api.zarr", compress="lzw", **OPTIONS)
    out = geosr.upscale_file(src, tmp_path / "upper.tif", compress=" DEFLATE", **OPTIONS)
    with rasterio.open(out) as written:
        assert written.compression == Compression.deflate


def test_an_output_of_another_compression_is_another_jobs(make_raster, tmp_path: Path) -> None:
    """A finished output is this job's only in the compression it was written in: --resume with
    another compression is no no-op that keeps the old one."""
    src = make_raster(height=40, width=40)
    dst = geosr.upscale_file(src, tmp_path / "out.tif", compress="deflate", **OPTIONS)
    assert geosr.upscale_file(src, dst, resume=True, compress="deflate", **OPTIONS) == dst
    with pytest.raises(OutputError, match="output of a different job"):
        geosr.upscale_file(src, dst, resume=True, **OPTIONS)
    geosr.upscale_file(src, dst, overwrite=True, **OPTIONS)
    with rasterio.open(dst) as written:
        assert written.compression == Compression.zstd


def test_a_cog_is_a_bigtiff_when_its_compression_can_take_it_past_4_gib() -> None:
    """is_bigtiff took every COG's size as its pixels and overviews: true of ZSTD and DEFLATE,
    which store a tile they cannot compress as it is, but LZW grows noisy data up to 1.37x (a
    2 GiB uint16 output, 2.67 GiB with its overviews, was written as a classic TIFF whose 4 GiB
    LZW could pass), and an uncompressed COG stores its edge tiles at full size (a 64 px wide
    output 8x its pixels).  The decision now takes each compression's bound; no file is made."""
    from affine import Affine
    from odc.geo.geobox import GeoBox

    from geosr.io.cog import cog_size_bound, is_bigtiff
    from geosr.io.sink import COMPRESSIONS, OutputSpec

    def bigtiff(height: int, width: int) -> list[bool]:
        grid = GeoBox((height, width), Affine(10, 0, 0, 0, -10, 0), "EPSG:32633")
        return [is_bigtiff(OutputSpec(grid, 1, "uint16", None, compress=c)) for c in COMPRESSIONS]

    assert COMPRESSIONS == ("zstd", "deflate", "lzw", "none")
    assert bigtiff(32768, 32768) == [False, False, True, False]  # 2 GiB: 2.67 GiB with overviews
    assert bigtiff(24576, 32768) == [False, False, False, False]  # 1.5 GiB: 2.8 GiB of LZW at most
    assert bigtiff(2**22, 64) == [False, False, False, True]  # 512 MiB: 8192 tiles of 512 KiB
    assert bigtiff(45056, 45056) == [True] * 4  # 3.78 GiB: 5.04 GiB with overviews
    grid = GeoBox((32768, 32768), Affine(10, 0, 0, 0, -10, 0), "EPSG:32633")
    lzw = cog_size_bound(OutputSpec(grid, 1, "uint16", None, compress="lzw"))
    assert lzw == int(2**31 * 4 // 3 * 1.4)  # pixels and overviews, times LZW's growth


def test_an_uncompressed_cog_that_cannot_fit_is_refused_before_its_tiles(tmp_path: Path) -> None:
    """geosr run's resource check before the first tile counted a COG's build as its run store's
    size, so a --compress none output whose tiles are mostly padding (32 x 4000 px in 512^2
    tiles: 7.5 MiB for 250 KiB of pixels, 7.8 MiB with its run store) ran its model over every
    tile and was refused only at the COG build ('not enough disk space to build the COG; it
    needs about 7.5 MiB and 2.0 MiB are available ...; ... rerun with resume=True').  The
    check now counts the uncompressed COG's tiles, and refuses it before the model runs, leaving
    nothing behind.  A file-size limit caps what geosr sees as free."""
    src = tmp_path / "narrow.tif"
    profile = {"driver": "GTiff", "count": 1, "height": 2000, "width": 16, "dtype": "uint16"}
    with rasterio.open(
        src, "w", **profile, crs="EPSG:32633", transform=rasterio.Affine(10, 0, 0, 0, -10, 0)
    ) as d:
        d.write(np.arange(2000 * 16, dtype="uint16").reshape(1, 2000, 16))
    dst = tmp_path / "out.tif"
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, hard))
    try:
        with pytest.raises(OutputError) as raised:
            geosr.upscale_file(src, dst, compress="none", scale=2, model="bicubic")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not isinstance(raised.value, ResumableError)
    message = str(raised.value)
    # 7.5 MiB of tiles, their framing and the header's room (0.25 MiB), and the run store.
    assert "the output is 250.0 KiB uncompressed and the run needs about 8.1 MiB of disk" in message, message
    assert "but 2.0 MiB are free" in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["narrow.tif"]
    # A compressed COG of it needs only its store's bound, and is written.
    geosr.upscale_file(src, dst, compress="lzw", scale=2, model="bicubic")
    assert dst.exists()
