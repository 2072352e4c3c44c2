"""Factory fixtures: rasters that encode their own coordinates, real data when present."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import settings

# The suite's property tests draw the same examples on every run (CI, a fresh clone, a rerun),
# so a green suite stays green; `make fuzz` (GEOSR_FUZZ_EXAMPLES) draws new ones to hunt with.
settings.register_profile("suite", derandomize=True)
settings.register_profile("hunt", derandomize=False)
settings.load_profile("hunt" if os.environ.get("GEOSR_FUZZ_EXAMPLES") else "suite")

REPO = Path(__file__).resolve().parents[1]
DATA_DIR = Path(os.environ.get("GEOSR_DATA_DIR", REPO.parent / "shared" / "data"))

UTM_TRANSFORM = Affine(10.0, 0.0, 335440.0, 0.0, -10.0, 5866490.0)


def upscale_in_utm_bbox(src: Path, dst: Path, bbox: str, **options: object) -> Path:
    """``src`` x2 by the bicubic model into ``dst``, cut to ``bbox`` (minx,miny,maxx,maxy) given in
    EPSG:32633, the CRS of :func:`make_raster`'s rasters; ``options`` add to or override these."""
    import geosr

    settings: dict = {"scale": 2, "model": "bicubic", "bbox": bbox, "bbox_crs": "EPSG:32633", **options}
    return geosr.upscale_file(src, dst, **settings)


def open_in_this_process(path: Path) -> bool:
    """Whether a descriptor of this process names ``path`` (Linux: ``/proc/self/fd``)."""
    names = set()
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # the listing's own descriptor, closed by now
            names.add(os.readlink(fd))
    return str(path) in names


def coordinate_pattern(count: int, height: int, width: int, dtype: str = "uint16") -> np.ndarray:
    """Smooth values that still encode (band, row, col), so misplaced tiles stand out."""
    rows, cols = np.mgrid[0:height, 0:width]
    bands = []
    for b in range(count):
        v = 1000 + 40 * rows + 7 * cols + 300 * b + 200 * np.sin(rows / 5.0) * np.cos(cols / 7.0)
        bands.append(v)
    data = np.stack(bands)
    if np.issubdtype(np.dtype(dtype), np.integer):
        info = np.iinfo(np.dtype(dtype))
        data = np.clip(data % (info.max - 1) + 1, info.min + 1, info.max)
    return data.astype(dtype)


def write_geotiff(path: Path, data: np.ndarray, transform: Affine, crs: str = "EPSG:32633") -> Path:
    """Write ``data`` ``(count, height, width)`` at ``path`` as a GeoTIFF of its dtype on the grid of
    ``transform`` in ``crs``, no nodata declared; returns ``path``.  (:func:`make_raster` names a file
    in the test's tmp_path, with a transform and contents of its own by default.)"""
    profile = {
        "driver": "GTiff",
        "count": data.shape[0],
        "height": data.shape[1],
        "width": data.shape[2],
        "dtype": str(data.dtype),
        "crs": crs,
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def in_lonlat(path: Path) -> tuple[np.ndarray, Affine]:
    """The first band of ``path`` reprojected onto GDAL's default lon/lat grid for it, and
    that grid's transform (scenes near the antimeridian land on longitudes past -180)."""
    from rasterio.warp import calculate_default_transform, reproject

    with rasterio.open(path) as src:
        t, w, h = calculate_default_transform(src.crs, "EPSG:4326", src.width, src.height, *src.bounds)
        moved = np.zeros((1, h, w), np.float32)
        reproject(
            src.read(1)[None],
            moved,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=t,
            dst_crs="EPSG:4326",
        )
    return moved, t


def sparse_giant(path: Path, size: int = 1_000_000) -> Path:
    """A ``size x size`` uint16 GeoTIFF with no block written (sparse): at 1,000,000^2 it
    holds only its tile index, 175 MiB, for a declared 1.8 TiB of pixels."""
    with rasterio.open(
        path, "w", driver="GTiff", count=1, height=size, width=size, dtype="uint16",
        crs="EPSG:32633", transform=UTM_TRANSFORM, tiled=True, sparse_ok=True, bigtiff="YES",
    ):  # fmt: skip
        pass
    return path


@pytest.fixture(autouse=True)
def _no_terminal_width_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test gets the width rich gives output that is no terminal (80 columns), not the
    COLUMNS (and LINES) of the shell that started pytest: with COLUMNS=40 geosr info's table
    wrapped what test_info reads ('halo 17 px' over two lines, the input's path over more
    than 4).  A test that wants a width sets it."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


@pytest.fixture(autouse=True)
def _torch_seeded() -> None:
    """Each test draws torch's random numbers (``torch.rand`` inputs, a model's initial weights)
    from seed 0: unseeded, they depended on the tests run before it in its process (the
    selection, the order, the xdist worker), so a failure could not be reproduced alone.  Only
    where torch is loaded (every test module that uses it imports it), so no test pays its import."""
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.manual_seed(0)


@pytest.fixture
def make_raster(tmp_path: Path) -> Callable[..., Path]:
    """Write a GeoTIFF; returns its path.  Keyword arguments describe it."""

    def _make(
        name: str = "scene.tif",
        *,
        count: int = 1,
        height: int = 67,
        width: int = 91,
        dtype: str = "uint16",
        crs: str | None = "EPSG:32633",
        transform: Affine = UTM_TRANSFORM,
        nodata: float | None = None,
        data: np.ndarray | None = None,
        descriptions: tuple[str, ...] | None = None,
        tags: dict[str, str] | None = None,
        driver: str = "GTiff",
    ) -> Path:
        path = tmp_path / name
        array = data if data is not None else coordinate_pattern(count, height, width, dtype)
        count, height, width = array.shape
        profile = {
            "driver": driver,
            "count": count,
            "height": height,
            "width": width,
            "dtype": str(array.dtype),
            "transform": transform,
            "nodata": nodata,
        }
        if crs is not None:
            profile["crs"] = crs
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(array)
            if descriptions:
                for i, d in enumerate(descriptions, start=1):
                    dst.set_band_description(i, d)
            if tags:
                dst.update_tags(**tags)
        return path

    return _make


@pytest.hookimpl(tryfirst=True)  # before -m deselects: a test left unmarked would run under "not realdata"
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that takes :func:`data_dir` without the ``realdata`` marker: test_aoi's,
    test_bands', test_frames' and others took it unmarked, so ``pytest -m "not realdata"``, the
    run without the real imagery, still opened it."""
    unmarked = [
        item.nodeid
        for item in items
        if "data_dir" in getattr(item, "fixturenames", ()) and item.get_closest_marker("realdata") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            f"{', '.join(unmarked)} take(s) the data_dir fixture without @pytest.mark.realdata: add it"
        )


@pytest.fixture
def data_dir() -> Path:
    """The real imagery folder; skips the test with a reason when it is absent."""
    if not DATA_DIR.is_dir():
        pytest.skip(f"real imagery not found at {DATA_DIR} (set GEOSR_DATA_DIR)")
    return DATA_DIR


def real_file(data_dir: Path, relative: str) -> Path:
    path = data_dir / relative
    if not path.exists():
        pytest.skip(f"{relative} is missing from {data_dir}")
    return path


@pytest.fixture
def dask_default_port_taken() -> Iterator[None]:
    """Hold Dask's default dashboard port (8787) for the test, as a user's own Dask
    dashboard does; when something holds it already, that is the same case."""
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", 8787))
            holder.listen()
        except OSError:
            pass
        yield


def in_an_ascii_locale(*args: str) -> subprocess.CompletedProcess[str]:
    """``geosr ARGS`` where Python's default text encoding is ASCII (a C locale, UTF-8 mode off),
    as in a bare container or a cron job; ``python -c CODE`` for ``"-c", CODE``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "PYTHONIOENCODING"))}
    env |= {"LC_ALL": "C", "PYTHONUTF8": "0"}
    command = [sys.executable, *args] if args[:1] == ("-c",) else [sys.executable, "-m", "geosr", *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)


def item_of(tmp_path: Path, hrefs: dict[str, str], **properties: object) -> Path:
    """``item.json`` in ``tmp_path``: a STAC Item of GeoTIFF assets (key: href), dated 2022-03-01
    unless ``properties`` say otherwise."""
    kind = "image/tiff; application=geotiff"
    assets = {key: {"href": href, "type": kind, "roles": ["data"]} for key, href in hrefs.items()}
    properties = properties or {"datetime": "2022-03-01T10:00:00Z"}
    doc = {"type": "Feature", "stac_version": "1.1.0", "id": "s2", "geometry": None,
           "properties": properties, "links": [], "assets": assets}  # fmt: skip
    item = tmp_path / "item.json"
    item.write_text(json.dumps(doc))
    return item


T = TypeVar("T")


def warnings_said(call: Callable[[], T]) -> tuple[T, list[str]]:
    """``call()``'s result, and the lines of the warnings it gave, in order: geosr's, and numpy's
    RuntimeWarnings (which a user sees as bare 'overflow encountered in cast')."""
    from geosr.errors import GeosrWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [str(w.message) for w in caught if issubclass(w.category, (GeosrWarning, RuntimeWarning))]


@pytest.fixture
def model_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The images of each model call the Predictor makes (its ``_predict_call``), in order:
    an fp32 call on a CPU pads a lone image with a copy (CPU_CALL_IMAGES), counted here."""
    from geosr.predictor import Predictor

    seen: list[int] = []
    call = Predictor._predict_call

    def counted_call(self: Predictor, model: object, batch: np.ndarray) -> np.ndarray:
        seen.append(len(batch))
        return call(self, model, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(Predictor, "_predict_call", counted_call)
    return seen
