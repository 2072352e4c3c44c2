"""A corpus of malformed and hostile rasters, generated from scratch (seeded).

:func:`build_corpus` writes every case into a folder and returns ``{name: path}``.
Used by ``tests/test_malformed.py`` (each case run in a time- and memory-bounded
child process) and by the fuzz targets.
"""

from __future__ import annotations

import json
import os
import random
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

from tests.conftest import UTM_TRANSFORM, coordinate_pattern, sparse_giant

TIFF_TYPES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8}


def write_tif(path: Path, data: np.ndarray, **profile: object) -> Path:
    count, height, width = data.shape
    base = {
        "driver": "GTiff", "count": count, "height": height, "width": width, "dtype": str(data.dtype),
        "crs": "EPSG:32633", "transform": UTM_TRANSFORM, "tiled": True, "blockxsize": 16, "blockysize": 16,
    }  # fmt: skip
    base.update(profile)
    with rasterio.open(path, "w", **base) as dst:
        dst.write(data)
    return path


def tiff_tags(raw: bytes) -> dict[int, tuple[int, int, int]]:
    """``{tag: (type, count, value_or_offset position)}`` of the first IFD of a classic little-endian TIFF."""
    assert raw[:4] == b"II*\x00", "classic little-endian TIFF expected"
    ifd = struct.unpack_from("<I", raw, 4)[0]
    (n,) = struct.unpack_from("<H", raw, ifd)
    tags = {}
    for i in range(n):
        entry = ifd + 2 + 12 * i
        tag, typ, count = struct.unpack_from("<HHI", raw, entry)
        size = TIFF_TYPES.get(typ, 1) * count
        position = entry + 8 if size <= 4 else struct.unpack_from("<I", raw, entry + 8)[0]
        tags[tag] = (typ, count, position)
    return tags


def patch_array(raw: bytes, tag: int, values: Callable[[int, int], int]) -> bytes:
    """Rewrite every element of an integer TIFF tag: ``values(index, old)``."""
    data = bytearray(raw)
    typ, count, position = tiff_tags(raw)[tag]
    fmt = {3: "<H", 4: "<I", 16: "<Q"}[typ]
    size = struct.calcsize(fmt)
    for i in range(count):
        (old,) = struct.unpack_from(fmt, data, position + i * size)
        struct.pack_into(fmt, data, position + i * size, values(i, old) & (256**size - 1))
    return bytes(data)


def vrt(path: Path, width: int, height: int, bands: list[tuple[str, str]], srs: str = "EPSG:32633") -> Path:
    """A VRT whose bands are ``(dtype, source file)``."""
    body = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"<SRS>{srs}</SRS><GeoTransform>335440, 10, 0, 5866490, 0, -10</GeoTransform>",
    ]
    for i, (dtype, source) in enumerate(bands, start=1):
        body.append(
            f'<VRTRasterBand dataType="{dtype}" band="{i}"><SimpleSource>'
            f'<SourceFilename relativeToVRT="0">{source}</SourceFilename><SourceBand>1</SourceBand>'
            "</SimpleSource></VRTRasterBand>"
        )
    body.append("</VRTDataset>")
    path.write_text("\n".join(body))
    return path


def build_corpus(folder: Path, seed: int = 6) -> dict[str, Path]:
    """Write the corpus into ``folder``; returns ``{case name: path}`` (at least 30 cases)."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, Path] = {}
    good = write_tif(folder / "good.tif", coordinate_pattern(2, 96, 80), nodata=0)
    raw = good.read_bytes()

    def add(name: str, content: bytes) -> None:
        path = folder / name
        path.write_bytes(content)
        cases[name] = path

    # Truncated at many offsets: inside the header, the IFD, the tile data, one byte short.
    for cut in (0, 8, 64, 200, len(raw) // 4, len(raw) // 2, 3 * len(raw) // 4, len(raw) - 100, len(raw) - 1):
        add(f"truncated_at_{cut}.tif", raw[:cut])
    # Bit flips in the header and the first IFD (seeded).
    ifd = struct.unpack_from("<I", raw, 4)[0]
    for k in range(8):
        flipped = bytearray(raw)
        position = rng.randrange(0, 8) if k < 2 else rng.randrange(ifd, ifd + 2 + 12 * 14)
        flipped[position] ^= 1 << rng.randrange(8)
        add(f"bitflip_{k}_at_{position}.tif", bytes(flipped))
    # Wrong tile offsets and byte counts.
    add("tile_offsets_past_eof.tif", patch_array(raw, 324, lambda i, old: len(raw) + 4096 * (i + 1)))
    add("tile_offsets_into_header.tif", patch_array(raw, 324, lambda i, old: 8))
    add("tile_offsets_zero.tif", patch_array(raw, 324, lambda i, old: 0 if i % 3 == 0 else old))
    add("tile_bytecounts_huge.tif", patch_array(raw, 325, lambda i, old: 0xFFFFFFF0))
    add("tile_offsets_shuffled.tif", patch_array(raw, 324, lambda i, old: old + 1 if i % 2 else old))
    # Absurd dimensions: declared in the header of a tiny file, and a real (sparse) giant.
    add("width_4e9_in_header.tif", patch_array(raw, 256, lambda i, old: 4_000_000_000))
    add("height_zero_in_header.tif", patch_array(raw, 257, lambda i, old: 0))
    cases["declared_1e6_x_1e6.tif"] = sparse_giant(folder / "declared_1e6_x_1e6.tif")
    add("bands_65535_in_header.tif", patch_array(raw, 277, lambda i, old: 65535))
    # Zero-size and mismatched bands, self-referencing and dangling VRTs.
    cases["zero_bands.vrt"] = vrt(folder / "zero_bands.vrt", 80, 96, [])
    cases["zero_width.vrt"] = vrt(folder / "zero_width.vrt", 0, 96, [("UInt16", str(good))])
    single = write_tif(folder / "float_band.tif", coordinate_pattern(1, 96, 80, "float32"))
    cases["mixed_dtypes.vrt"] = vrt(
        folder / "mixed_dtypes.vrt", 80, 96, [("UInt16", str(good)), ("Float32", str(single))]
    )
    cases["dangling_source.vrt"] = vrt(
        folder / "dangling_source.vrt", 80, 96, [("UInt16", str(folder / "gone.tif"))]
    )
    cases["self_reference.vrt"] = vrt(
        folder / "self_reference.vrt", 80, 96, [("UInt16", str(folder / "self_reference.vrt"))]
    )
    # Values: NaN and Inf, everything nodata, everything NaN.
    values = coordinate_pattern(2, 64, 48, "float32")
    values[0, 5:9, 5:30] = np.nan
    values[1, 20:22, :] = np.inf
    values[0, 40, 10:12] = -np.inf
    cases["nan_and_inf.tif"] = write_tif(folder / "nan_and_inf.tif", values)
    cases["all_nodata.tif"] = write_tif(folder / "all_nodata.tif", np.zeros((1, 40, 40), "uint16"), nodata=0)
    cases["all_nan.tif"] = write_tif(folder / "all_nan.tif", np.full((1, 40, 40), np.nan, "float32"))
    cases["huge_float_values.tif"] = write_tif(
        folder / "huge_float_values.tif", np.full((1, 40, 40), 3e38, "float32") * np.float32(1.0)
    )
    # Georeferencing: rotated, degenerate, unknown or missing CRS.
    rotated = UTM_TRANSFORM @ Affine.rotation(30)
    cases["rotated.tif"] = write_tif(folder / "rotated.tif", coordinate_pattern(1, 40, 36), transform=rotated)
    cases["zero_pixel_size.tif"] = write_tif(
        folder / "zero_pixel_size.tif", coordinate_pattern(1, 40, 36), transform=Affine(0, 0, 5, 0, 0, 7)
    )
    cases["local_crs.tif"] = write_tif(
        folder / "local_crs.tif", coordinate_pattern(1, 40, 36), crs='LOCAL_CS["made up",UNIT["metre",1]]'
    )
    cases["no_crs.tif"] = write_tif(folder / "no_crs.tif", coordinate_pattern(1, 40, 36), crs=None)
    cases["complex_dtype.tif"] = write_tif(
        folder / "complex_dtype.tif", np.ones((1, 32, 32), "complex64"), tiled=False
    )
    # Not rasters at all.
    add("empty.tif", b"")
    add("random_bytes.tif", bytes(rng.randrange(256) for _ in range(4096)))
    add("text.tif", b"field notes, not an image\n" * 20)
    add("png_magic_then_garbage.tif", b"\x89PNG\r\n\x1a\n" + bytes(600))
    (folder / "directory.tif").mkdir(exist_ok=True)
    cases["directory.tif"] = folder / "directory.tif"
    loop = folder / "symlink_loop.tif"
    if not loop.is_symlink():
        os.symlink(loop.name, loop)
    cases["symlink_loop.tif"] = loop
    # Zarr stores: unreadable metadata, and metadata promising chunks that are not there.
    broken = folder / "broken_metadata.zarr"
    broken.mkdir(exist_ok=True)
    (broken / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group", "attributes": ')
    cases["broken_metadata.zarr"] = broken
    wrong = folder / "wrong_shape.zarr"
    wrong.mkdir(exist_ok=True)
    (wrong / "zarr.json").write_text(json.dumps({"zarr_format": 3, "node_type": "array", "shape": [-5, 3]}))
    cases["wrong_shape.zarr"] = wrong
    # A JPEG 2000 cut in half.
    jp2 = folder / "whole.jp2"
    with rasterio.open(
        jp2, "w", driver="JP2OpenJPEG", count=1, height=64, width=64, dtype="uint16",
        crs="EPSG:32633", transform=UTM_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(coordinate_pattern(1, 64, 64))
    add("truncated.jp2", jp2.read_bytes()[: jp2.stat().st_size // 2])
    jp2.unlink()
    return cases
