"""Remote inputs: a COG served over HTTP by a local server is read with ranged requests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import rasterio
from rasterio.shutil import copy as rio_copy

from tests.conftest import REPO, UTM_TRANSFORM, coordinate_pattern, item_of


class RangeHandler(SimpleHTTPRequestHandler):
    """A static file server that honours single ``Range: bytes=a-b`` requests and counts bytes sent."""

    sent: list[int]

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            start_text, end_text = header[6:].split("-")
            start = int(start_text)
            end = min(int(end_text) if end_text else len(data) - 1, len(data) - 1)
            body = data[start : end + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(body)
        self.sent.append(len(body))

    def do_HEAD(self) -> None:
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(path.stat().st_size))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()


_SERVE = """
import sys
from functools import partial
from http.server import ThreadingHTTPServer
from tests.test_remote import RangeHandler

class Handler(RangeHandler):
    sent = []
    def do_GET(self):  # after sys.argv[2] GETs, the server fails (an outage mid-run)
        if len(self.sent) >= int(sys.argv[2]):
            self.send_error(503)
            return
        super().do_GET()

server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=sys.argv[1]))
print(server.server_address[1], flush=True)
server.serve_forever()
"""


@contextlib.contextmanager
def served(directory: Path, answers: int = 1 << 30) -> Iterator[str]:
    """``http://127.0.0.1:PORT`` serving ``directory`` with Range support (``answers`` GETs,
    then HTTP 503), from another process: GDAL holds the GIL while it reads, so a server
    thread of the test's own would never answer an in-process run."""
    # As a context manager, Popen closes the pipe it read the port from (left open, a ResourceWarning).
    with subprocess.Popen(
        [sys.executable, "-c", _SERVE, str(directory), str(answers)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as server:
        try:
            assert server.stdout is not None
            yield f"http://127.0.0.1:{server.stdout.readline().strip()}"
        finally:
            server.terminate()
            server.wait(timeout=10)


def test_http_cog_is_read_in_ranges(tmp_path: Path) -> None:
    # Noise does not compress: the file is as large as its pixels, ~2 MB.
    rng = np.random.default_rng(0)
    data = rng.integers(1, 60000, size=(1, 1024, 1024), dtype=np.uint16)
    plain = tmp_path / "plain.tif"
    with rasterio.open(
        plain, "w", driver="GTiff", count=1, height=1024, width=1024, dtype="uint16",
        crs="EPSG:32633", transform=UTM_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(data)
    served = tmp_path / "www"
    served.mkdir()
    cog = served / "scene.tif"
    rio_copy(plain, cog, driver="COG", BLOCKSIZE=256, OVERVIEWS="NONE")
    RangeHandler.sent = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(served)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/scene.tif"
        left, top = UTM_TRANSFORM @ (300, 300)
        bbox = f"{left},{top - 500},{left + 500},{top}"  # 50 x 50 px of 1024 x 1024
        out = tmp_path / "remote_x2.tif"
        env = {**os.environ, "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR"}
        result = subprocess.run(
            [sys.executable, "-m", "geosr", "run", url, "-o", str(out), "--scale", "2",
             "--model", "bicubic", "--bbox", bbox, "--bbox-crs", "EPSG:32633"],
            capture_output=True, text=True, env=env, timeout=300, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 0, result.stderr
    with rasterio.open(out) as f:
        assert (f.width, f.height) == (100, 100)
        lr = f.read(1).astype(float).reshape(50, 2, 50, 2).mean(axis=(1, 3))
    assert np.corrcoef(lr.ravel(), data[0, 300:350, 300:350].ravel().astype(float))[0, 1] > 0.95
    size = cog.stat().st_size
    assert sum(RangeHandler.sent) < 0.3 * size, (sum(RangeHandler.sent), size)
    assert len(RangeHandler.sent) >= 2  # header, then the AOI's blocks


def test_output_to_an_fsspec_url_is_uploaded_whole(make_raster, tmp_path: Path) -> None:
    """fsspec's in-memory filesystem stands in for s3:// / gs:// (same upload code path)."""
    import fsspec

    import geosr
    from geosr.errors import OutputError

    src = make_raster(count=1, height=30, width=30)
    url = "memory://bucket/run/sr.tif"
    assert geosr.upscale_file(src, url, scale=2, model="bicubic", stac=True) == url
    fs = fsspec.filesystem("memory")
    local = tmp_path / "back.tif"
    local.write_bytes(fs.cat_file("/bucket/run/sr.tif"))
    with rasterio.open(local) as f:
        assert (f.width, f.height) == (60, 60) and f.crs.to_epsg() == 32633
    assert fs.exists("/bucket/run/sr.stac.json")
    try:
        geosr.upscale_file(src, url, scale=2, model="bicubic")
        raise AssertionError("an existing remote output was replaced without overwrite")
    except OutputError as exc:
        # It said "memory://bucket/run/sr.tif exists; ..." where every other output "already exists".
        assert str(exc) == f"{url} already exists; pass overwrite=True to replace it"
    store = "memory://bucket/run/sr.zarr"
    geosr.upscale_file(src, store, scale=2, model="bicubic")
    assert fs.exists("/bucket/run/sr.zarr/zarr.json")
    fs.rm("/bucket", recursive=True)


class PlainHandler(SimpleHTTPRequestHandler):
    """``python -m http.server``: no Range support; ``/private/...`` answers 403."""

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/private/"):
            self.send_error(403)
            return
        super().do_GET()

    def do_HEAD(self) -> None:
        if self.path.startswith("/private/"):
            self.send_error(403)
            return
        super().do_HEAD()


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("scene.tif", ("HTTP Range requests", "download the file")),
        ("nope.tif", ("not found", "HTTP 404", "check the URL")),
        ("private/scene.tif", ("access denied", "HTTP 403", "credentials")),
    ],
)
def test_remote_input_errors_name_the_network_fix(
    make_raster, tmp_path: Path, name: str, needles: tuple[str, ...]
) -> None:
    # All three used to say "not a readable raster ... check that the file is complete".
    # Larger than the first read GDAL makes, which a server without Range support answers whole.
    served = make_raster(height=300, width=300).parent
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(PlainHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{name}"
    out = tmp_path / "out.tif"
    try:
        # A subprocess, as GDAL's read holds the GIL the in-process server would need.
        result = subprocess.run(
            [sys.executable, "-m", "geosr", "run", url, "-o", str(out), "--model", "bicubic"],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
    err = " ".join(result.stderr.split())
    assert result.returncode == 2, err
    assert err.startswith("error:") and "not a readable raster" not in err, err
    for needle in needles:
        assert needle in err, f"{needle!r} not in {err!r}"
    assert not out.exists()


def test_an_archive_member_is_read_written_in_the_working_folder_and_stamped_by_its_archive(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The default output of /vsizip//abs, zip:// and file:// inputs was their own path with
    # _x2 appended ("/vsizip/tmp/a.zip/scene_x2.tif"), refused as a missing folder; and a
    # zipped input had no stamp, so --resume could not tell a replaced archive.
    import zipfile

    import geosr
    from geosr.fingerprint import file_stamp
    from geosr.run_outputs import default_output

    src = make_raster()
    archive = tmp_path / "scenes.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(src, "inner/scene.tif")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for path in (f"/vsizip/{archive}/inner/scene.tif", f"zip://{archive}!/inner/scene.tif"):
        assert default_output(path, 2) == Path("scene_x2.tif"), path
        assert file_stamp(path) == file_stamp(str(archive))
        out = geosr.upscale_file(path, scale=2, model="bicubic", overwrite=True)
        with rasterio.open(out) as got, rasterio.open(src) as expected:
            assert Path(out).resolve().parent == work and got.width == 2 * expected.width
    assert default_output(f"file://{src}", 2) == src.with_name("scene_x2.tif")  # beside a local file
    before = file_stamp(f"/vsizip/{archive}/inner/scene.tif")
    with zipfile.ZipFile(archive, "a") as zipped:
        zipped.writestr("other.txt", "a replaced archive")
    assert file_stamp(f"/vsizip/{archive}/inner/scene.tif") != before


def test_a_member_of_an_archive_in_an_archive_is_stamped_by_the_outer_one(
    make_raster, tmp_path: Path
) -> None:
    """`/vsizip/{/vsizip//data/outer.zip/inner.zip}/scene.tif` (GDAL's name of it) had no stamp,
    so --resume could not tell a replaced archive from the one the run began on."""
    import zipfile

    from geosr.fingerprint import file_stamp

    with zipfile.ZipFile(tmp_path / "inner.zip", "w") as zipped:
        zipped.write(make_raster(height=16, width=16), "scene.tif")
    with zipfile.ZipFile(tmp_path / "outer.zip", "w") as zipped:
        zipped.write(tmp_path / "inner.zip", "inner.zip")
    nested = f"/vsizip/{{/vsizip/{tmp_path}/outer.zip/inner.zip}}/scene.tif"
    with rasterio.open(nested) as src:
        assert src.width == 16  # a name GDAL reads
    assert file_stamp(nested) == file_stamp(str(tmp_path / "outer.zip")) != (None, None)
    braced = f"/vsizip/{{{tmp_path}/inner.zip}}/scene.tif"  # braces around a local archive
    assert file_stamp(braced) == file_stamp(str(tmp_path / "inner.zip"))


def test_an_archive_url_with_escapes_names_the_archive_and_member_unescaped(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`zip:///data/my%20dir/a.zip!/my%20scene.tif`, a URL as quote() or a file manager writes it,
    was 'not a readable raster (/vsizip//data/my%20dir/a.zip/... does not exist)': rasterio keeps
    the escapes in the names.  Its stamp was no archive's either."""
    import zipfile

    import geosr
    from geosr.fingerprint import file_stamp
    from geosr.run_outputs import default_output

    src = make_raster()
    folder = tmp_path / "my dir"
    folder.mkdir()
    archive = folder / "scenes é.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.write(src, "my scene.tif")
    monkeypatch.chdir(tmp_path)
    url = f"zip://{quote(str(archive))}!/{quote('my scene.tif')}"
    assert default_output(url, 2) == Path("my scene_x2.tif")
    assert file_stamp(url) == file_stamp(str(archive))
    out = geosr.upscale_file(url, scale=2, model="bicubic")
    with rasterio.open(out) as got, rasterio.open(src) as expected:
        assert Path(out).resolve() == tmp_path / "my scene_x2.tif" and got.width == 2 * expected.width


@pytest.mark.parametrize(
    ("gdal_says", "needles"),
    [
        (
            "AWS_SECRET_ACCESS_KEY and AWS_NO_SIGN_REQUEST configuration options not defined, and "
            "/root/.aws/credentials not filled",
            ("no credentials", "AWS_SECRET_ACCESS_KEY", "_NO_SIGN_REQUEST=YES"),
        ),
        (
            "GS_SECRET_ACCESS_KEY+GS_ACCESS_KEY_ID, GS_OAUTH2_REFRESH_TOKEN or "
            "GOOGLE_APPLICATION_CREDENTIALS or GS_OAUTH2_PRIVATE_KEY+GS_OAUTH2_CLIENT_EMAIL and "
            "/root/.boto, or GS_NO_SIGN_REQUEST=YES configuration options not defined",
            ("no credentials", "GOOGLE_APPLICATION_CREDENTIALS"),
        ),
        (
            "Missing AZURE_STORAGE_ACCOUNT+(AZURE_STORAGE_ACCESS_KEY or AZURE_STORAGE_SAS_TOKEN or "
            "AZURE_NO_SIGN_REQUEST) or AZURE_STORAGE_CONNECTION_STRING configuration options or Azure CLI "
            "configuration file",
            ("no credentials", "AZURE_STORAGE_ACCOUNT"),
        ),
        ("OSS_SECRET_ACCESS_KEY configuration option not defined", ("no credentials", "OSS_SECRET")),
        (
            "CURL error: Could not resolve host: None.blob.core.windows.net",
            ("no Azure storage account", "set AZURE_STORAGE_ACCOUNT"),
        ),
    ],
)
def test_missing_cloud_credentials_are_named_as_the_problem(gdal_says: str, needles: tuple[str, ...]) -> None:
    """`geosr run s3://b/a.tif` without credentials said 'not a readable raster (...); check that
    the file is complete and in a format GDAL reads', and az:// without AZURE_STORAGE_ACCOUNT
    'the server could not be reached (... None.blob.core.windows.net); check the URL and the network'."""
    from geosr.io.remote import remote_open_problem

    problem = remote_open_problem(gdal_says)
    assert problem is not None
    assert "format GDAL reads" not in problem and "the network" not in problem
    for needle in needles:
        assert needle in problem, problem


def test_standard_inputs_default_output_is_stdin_in_the_working_folder() -> None:
    """`curl ... | geosr run /vsistdin/` wrote 'vsistdin_x4.tif', a name of GDAL's, not the README's."""
    from geosr.io.remote import local_name
    from geosr.run_outputs import default_output

    for path in ("/vsistdin/", "/vsistdin", "/vsistdin?buffer_limit=10MB", "/vsigzip//vsistdin/"):
        assert default_output(path, 4) == Path("stdin_x4.tif"), path
        assert local_name(path) == "stdin", path  # the input a run's provenance names


@pytest.mark.parametrize(
    ("path", "piped", "says"),
    [
        ("/vsistdin/", None, "standard input is empty"),  # < /dev/null
        ("/vsistdin/", "", "standard input holds no raster GDAL reads (it was empty, or not a raster)"),
        ("-", "", "reads standard input as /vsistdin/ (GDAL's name), not '-'"),
    ],
)
def test_standard_input_without_a_raster_is_one_line(tmp_path: Path, path: str, piped, says: str) -> None:
    """An empty standard input was 'not a readable raster ... not recognized as being in a
    supported file format', and `geosr run -` was '-: no such file or directory; check the path'."""
    out = tmp_path / "out.tif"
    result = subprocess.run(
        [sys.executable, "-m", "geosr", "run", path, "-o", str(out), "--model", "bicubic"],
        input=piped, stdin=subprocess.DEVNULL if piped is None else None,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and says in result.stderr, result.stderr
    assert "geosr run /vsistdin/ < scene.tif" in result.stderr
    assert not out.exists()


def test_a_cog_on_standard_input_is_told_how_to_read_it(make_raster, tmp_path: Path) -> None:
    """geosr's own output piped in (`geosr run /vsistdin/ < scene_x2.tif`, or as compare's SR)
    was 'standard input holds no raster GDAL reads (it was empty, or not a raster)': GDAL reads a
    pipe's TIFF as a stream, which a COG is not, unless it may keep it (buffer_limit), as it then does.
    A plain GeoTIFF whose tags were edited in place (its directory moved to the end) was called
    '(a COG, as geosr writes)'; a plain one as GDAL writes it streams."""
    cog = tmp_path / "cog.tif"
    rio_copy(make_raster(height=32, width=32), cog, driver="COG")  # as geosr writes its output
    edited = Path(make_raster(name="edited.tif", height=32, width=32))
    with rasterio.open(edited, "r+") as dst:
        dst.update_tags(NOTE="x" * 5000)  # GDAL rewrites the grown directory at the file's end
    # The scene geosr run opens first, in a process of its own (standard input is read once).
    opens = "import sys\nfrom geosr.io.scene import open_scene\nprint(open_scene(sys.argv[1]).grid.shape)"
    cases = [
        (cog, "/vsistdin/", False),
        (cog, "/vsistdin?buffer_limit=1GB", True),
        (edited, "/vsistdin/", False),
        (make_raster(name="plain.tif", height=32, width=32), "/vsistdin/", True),  # a plain GeoTIFF streams
    ]
    for path, given, kept in cases:
        with Path(path).open("rb") as piped:
            done = subprocess.run(
                [sys.executable, "-c", opens, given],
                stdin=piped, capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
            )  # fmt: skip
        if kept:
            assert done.returncode == 0, done.stderr
        else:
            assert "holds a TIFF whose first directory is not at its start" in done.stderr, done.stderr
            assert "give /vsistdin?buffer_limit=1GB" in done.stderr, done.stderr


def test_standard_input_too_large_to_read_back_is_told_so(make_raster, monkeypatch) -> None:
    """`curl ... | geosr run /vsistdin/` of a file over 1 MiB failed in its first tile with 'the
    server stopped serving it (an outage, a signed URL that expired) or the file is truncated'."""
    import dataclasses

    from rasterio.errors import RasterioIOError

    from geosr.errors import InputError
    from geosr.io.scene import open_scene, read_window
    from geosr.tiling import Window

    scene = dataclasses.replace(open_scene(make_raster()), path="/vsistdin/")
    gdal_says = "Backward Seek() unsupported on /vsistdin beyond maximum buffer limit (1048576 bytes)."

    def failed(*args: object, **kwargs: object) -> None:
        raise RasterioIOError(gdal_says)

    monkeypatch.setattr("geosr.io.scene._read_inside", failed)
    with pytest.raises(InputError) as caught:
        read_window(scene, Window(0, 0, 8, 8))
    message = str(caught.value)
    assert message.startswith("/vsistdin/: reading pixels failed") and gdal_says in message
    assert "save it to a file" in message and "CPL_VSISTDIN_BUFFER_LIMIT" in message
    assert "server" not in message


def test_a_gzipped_inputs_output_is_named_after_the_raster_in_it(
    make_raster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`geosr run /vsigzip//data/scene.tif.gz` wrote 'scene.tif_x2.tif'."""
    import gzip

    import geosr

    src = make_raster(height=30, width=30)
    packed = tmp_path / "scene.tif.gz"
    packed.write_bytes(gzip.compress(src.read_bytes()))
    monkeypatch.chdir(tmp_path)
    out = geosr.upscale_file(f"/vsigzip/{packed}", scale=2, model="bicubic")
    assert out == Path("scene_x2.tif")
    with rasterio.open(out) as got:
        assert got.width == 60


def test_reading_a_tar_gz_member_leaves_nothing_beside_the_archive(make_raster, tmp_path: Path) -> None:
    """GDAL saved 'scenes.tar.gz.properties' beside the archive a run or `geosr info` read a
    member of: a file left in the input's folder (which may be read-only, or another user's)."""
    import tarfile

    from geosr.io.scene import open_scene, read_window
    from geosr.tiling import Window

    src = make_raster(height=40, width=40)
    archive = tmp_path / "archive" / "scenes.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tarred:
        tarred.add(src, "scene.tif")
    scene = open_scene(f"/vsitar/{archive}/scene.tif")
    with rasterio.open(src) as expected:
        np.testing.assert_array_equal(read_window(scene, Window(0, 0, 40, 40)), expected.read())
    assert list(archive.parent.iterdir()) == [archive]


def test_the_command_line_uploads_to_a_url_output(make_raster, capfd, monkeypatch) -> None:
    """`geosr run ... -o s3://bucket/x.tif` (README): the option was a Path, which folds
    'memory://bucket' into 'memory:/bucket', a local path to fsspec, so the whole run
    computed, then failed with 'uploading the output failed (No such file or directory)'."""
    import fsspec

    from tests.test_batch import run_cli

    src = make_raster(count=1, height=30, width=30)
    url = "memory://cli-bucket/run/sr.tif"
    code, out, err = run_cli(
        ["run", str(src), "-o", url, "--scale", "2", "--model", "bicubic"], capfd, monkeypatch
    )
    fs = fsspec.filesystem("memory")
    try:
        assert code == 0, err
        assert out.split() == [url]
        assert fs.exists("/cli-bucket/run/sr.tif")
    finally:
        if fs.exists("/cli-bucket"):
            fs.rm("/cli-bucket", recursive=True)


def test_an_interrupted_run_to_a_url_resumes_from_its_staged_tiles(make_raster) -> None:
    """The output was staged in a fresh temporary folder per run: after a kill its run state
    stayed there for good (the scene's tiles, in /tmp), and --resume, in a folder of its own,
    computed every tile again; a Ctrl-C removed the tiles it said were kept for --resume.
    The staging folder is now one per URL, kept while it holds a run state."""
    import fsspec

    import geosr
    from geosr.io import remote

    src = make_raster(count=1, height=64, width=64)
    url = "memory://resume-bucket/run/sr.tif"
    options = {"scale": 2, "model": "bicubic", "tile": 16, "batch_size": 1}

    def ctrl_c(done: int, total: int) -> None:
        if done == 3:
            raise KeyboardInterrupt

    fs = fsspec.filesystem("memory")
    try:
        with pytest.raises(KeyboardInterrupt):
            geosr.upscale_file(src, url, progress=ctrl_c, **options)
        assert not fs.exists("/resume-bucket/run/sr.tif")
        resumed: list[int] = []
        geosr.upscale_file(src, url, resume=True, progress=lambda done, _: resumed.append(done), **options)
        assert resumed[0] >= 3  # the first progress call: the tiles kept (before, 0)
        assert fs.exists("/resume-bucket/run/sr.tif") and not remote.staging_folder(url).exists()
    finally:
        if fs.exists("/resume-bucket"):
            fs.rm("/resume-bucket", recursive=True)
        if hasattr(remote, "staging_folder"):
            shutil.rmtree(remote.staging_folder(url), ignore_errors=True)


def test_a_failed_upload_keeps_the_output_and_resume_only_uploads_it(make_raster, monkeypatch) -> None:
    """The upload failing (the network, here a reset connection) removed the finished
    output with its staging folder: the whole scene had to be computed again.  It is kept,
    and --resume uploads it without computing a tile."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    import geosr
    from geosr.errors import ResumableError
    from geosr.interrupts import interrupted_run
    from geosr.io import remote

    src = make_raster(count=1, height=64, width=64)
    url = "memory://upload-bucket/run/sr.tif"
    options = {"scale": 2, "model": "bicubic", "tile": 16}
    fs = fsspec.filesystem("memory")

    def reset(*args: object, **kwargs: object) -> None:
        raise ConnectionResetError(104, "Connection reset by peer")

    try:
        with monkeypatch.context() as patch:
            patch.setattr(MemoryFileSystem, "put_file", reset)
            with pytest.raises(ResumableError, match="rerun with resume=True to upload it"):
                geosr.upscale_file(src, url, **options)
        # A Ctrl-C in the upload is told the same (it said: "before any tile ran; nothing was written").
        stopped = str(interrupted_run(KeyboardInterrupt(), str(src), url))
        assert "before any tile ran" not in stopped and "rerun with --resume to upload it" in stopped
        calls: list[tuple[int, int]] = []
        geosr.upscale_file(src, url, resume=True, progress=lambda *done: calls.append(done), **options)
        assert calls[0][0] == calls[0][1]  # every tile was there: none computed again
        assert fs.exists("/upload-bucket/run/sr.tif") and not remote.staging_folder(url).exists()
    finally:
        if fs.exists("/upload-bucket"):
            fs.rm("/upload-bucket", recursive=True)
        shutil.rmtree(remote.staging_folder(url), ignore_errors=True)


def test_a_second_run_to_the_same_url_is_refused_while_the_first_uploads(make_raster, monkeypatch) -> None:
    """Two runs to one URL share its staging folder: a second one started while the first
    uploaded (its tiles done, its run state gone) ran in that folder, and the first then
    removed it, with the second's run state and tiles.  The folder is now held by one run."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    import geosr
    from geosr.errors import OutputError
    from geosr.io import remote

    src = make_raster(count=1, height=32, width=32)
    url = "memory://two-runs/sr.tif"
    options = {"scale": 2, "model": "bicubic", "overwrite": True}
    fs = fsspec.filesystem("memory")
    put_file = MemoryFileSystem.put_file
    refused: list[str] = []
    started: list[bool] = []

    def second_run_meanwhile(self: object, *args: object, **kwargs: object) -> None:
        if not started:
            started.append(True)
            with pytest.raises(OutputError, match=r"another geosr run .* is writing it right now") as caught:
                geosr.upscale_file(src, url, **options)
            refused.append(str(caught.value))
        put_file(self, *args, **kwargs)

    try:
        monkeypatch.setattr(MemoryFileSystem, "put_file", second_run_meanwhile)
        geosr.upscale_file(src, url, **options)
        assert refused and url in refused[0]
        assert fs.exists("/two-runs/sr.tif") and not remote.staging_folder(url).exists()
    finally:
        if fs.exists("/two-runs"):
            fs.rm("/two-runs", recursive=True)
        shutil.rmtree(remote.staging_folder(url), ignore_errors=True)


def test_an_output_uploaded_takes_the_old_outputs_sidecars_away(make_raster) -> None:
    """An .aux.xml (.ovr, .msk) beside the remote output, of an older one: GDAL reads it with the
    new output (its .aux.xml before the file's own keys), which showed the old CRS.  Gone, as
    beside a local output replaced (239ef6c)."""
    import fsspec

    import geosr
    from geosr.io import remote

    src = make_raster(count=1, height=20, width=20)
    url = "memory://sidecars/sr.tif"
    fs = fsspec.filesystem("memory")
    for suffix in (".aux.xml", ".ovr", ".msk"):
        fs.pipe_file(f"/sidecars/sr.tif{suffix}", b"the older output's")
    try:
        geosr.upscale_file(src, url, scale=2, model="bicubic")
        assert fs.exists("/sidecars/sr.tif")
        assert not [p for p in fs.find("/sidecars") if not p.endswith("/sr.tif")]
    finally:
        if fs.exists("/sidecars"):
            fs.rm("/sidecars", recursive=True)
        shutil.rmtree(remote.staging_folder(url), ignore_errors=True)


def test_resume_uploads_the_output_after_its_stac_item_went_up(make_raster, monkeypatch) -> None:
    """The STAC Item is uploaded before the output: when the output's upload then failed,
    --resume (as the error said) was refused, the Item taken for "the STAC Item of another
    output named sr", and the run could only be computed again with --overwrite."""
    import fsspec
    from fsspec.implementations.memory import MemoryFileSystem

    import geosr
    from geosr.errors import ResumableError
    from geosr.io import remote

    src = make_raster(count=1, height=64, width=64)
    url = "memory://item-bucket/run/sr.tif"
    options = {"scale": 2, "model": "bicubic", "tile": 16, "stac": True}
    fs = fsspec.filesystem("memory")
    put_file = MemoryFileSystem.put_file

    def reset_on_the_output(
        self: MemoryFileSystem, lpath: str, rpath: str, *args: object, **kw: object
    ) -> None:
        if str(rpath).endswith("sr.tif"):
            raise ConnectionResetError(104, "Connection reset by peer")
        put_file(self, lpath, rpath, *args, **kw)

    try:
        with monkeypatch.context() as patch:
            patch.setattr(MemoryFileSystem, "put_file", reset_on_the_output)
            with pytest.raises(ResumableError, match="rerun with resume=True to upload it"):
                geosr.upscale_file(src, url, **options)
        assert fs.exists("/item-bucket/run/sr.stac.json") and not fs.exists("/item-bucket/run/sr.tif")
        geosr.upscale_file(src, url, resume=True, **options)
        assert fs.exists("/item-bucket/run/sr.tif") and not remote.staging_folder(url).exists()
        # Another job's Item at that name is still refused.
        fs.pipe("/item-bucket/run/other.stac.json", b"{}")
        with pytest.raises(geosr.GeosrError, match=r"other\.stac\.json already exists"):
            geosr.upscale_file(src, "memory://item-bucket/run/other.tif", **options)
    finally:
        if fs.exists("/item-bucket"):
            fs.rm("/item-bucket", recursive=True)
        for name in ("sr.tif", "other.tif"):
            shutil.rmtree(remote.staging_folder(f"memory://item-bucket/run/{name}"), ignore_errors=True)


def test_overwriting_a_remote_zarr_store_leaves_none_of_the_old_chunks(make_raster) -> None:
    """A Zarr output leaves out its all-nodata chunks; uploaded over an older store with
    --overwrite, the older store's chunks there stayed, and read back as the old pixels
    (627 where the new scene is nodata)."""
    import fsspec
    import zarr

    import geosr

    data = coordinate_pattern(1, 64, 64)
    full = make_raster("full.tif", data=data, nodata=0)
    data[:, :, 32:] = 0  # the right half nodata: its chunks are left out of the new store
    half = make_raster("half.tif", data=data, nodata=0)
    url = "memory://zarr-overwrite/sr.zarr"
    fs = fsspec.filesystem("memory")
    try:
        geosr.upscale_file(full, url, scale=2, model="bicubic", tile=32)
        geosr.upscale_file(half, url, scale=2, model="bicubic", tile=32, overwrite=True)
        got = np.asarray(zarr.open_group(fsspec.get_mapper(url), mode="r")["band_data"][:])
        assert got[:, :, :64].min() > 0
        assert (got[:, :, 64:] == 0).all(), got[:, :, 64:].max()
    finally:
        if fs.exists("/zarr-overwrite"):
            fs.rm("/zarr-overwrite", recursive=True)


@pytest.mark.parametrize(("option", "name"), [("stac", "sr.stac.json"), ("quicklook", "sr.quicklook.png")])
def test_a_remote_stac_item_or_quicklook_is_not_replaced_without_overwrite(
    make_raster, option: str, name: str
) -> None:
    """The STAC Item (or quicklook) of another output named sr (sr.zarr, say) was uploaded
    over without --overwrite, as a local run refuses it; nothing is written now.  (A URL per
    case: two test processes running both at once share its staging folder in /tmp.)"""
    import fsspec

    import geosr
    from geosr.errors import OutputError

    src = make_raster(count=1, height=30, width=30)
    fs = fsspec.filesystem("memory")
    fs.pipe_file(f"/extras-kept-{option}/{name}", b"the other output's")
    try:
        with pytest.raises(
            OutputError, match=f"memory://extras-kept-{option}/{name} already exists.*overwrite=True"
        ):
            geosr.upscale_file(
                src, f"memory://extras-kept-{option}/sr.tif", scale=2, model="bicubic", **{option: True}
            )
        assert fs.cat_file(f"/extras-kept-{option}/{name}") == b"the other output's"
        assert not fs.exists(f"/extras-kept-{option}/sr.tif")
        geosr.upscale_file(
            src,
            f"memory://extras-kept-{option}/sr.tif",
            scale=2,
            model="bicubic",
            overwrite=True,
            **{option: True},
        )
        assert fs.cat_file(f"/extras-kept-{option}/{name}") != b"the other output's"
    finally:
        fs.rm(f"/extras-kept-{option}", recursive=True)


def test_a_signed_url_signed_again_resumes_the_same_job(make_raster, tmp_path: Path) -> None:
    """A signed URL's signature changes each time it is made: --resume with a new one was
    refused as "the output of a different job"."""
    import geosr

    src = make_raster(count=1, height=40, width=40)
    out = tmp_path / "out" / "sr.tif"
    out.parent.mkdir()
    with served(src.parent) as base:
        url = f"{base}/scene.tif?X-Amz-Signature=aaa&X-Amz-Date=20261201T100000Z&versionId=7"
        geosr.upscale_file(url, out, scale=2, model="bicubic")
        written = out.stat().st_mtime_ns
        again = url.replace("aaa", "bbb").replace("20261201", "20261202")
        assert geosr.upscale_file(again, out, scale=2, model="bicubic", resume=True) == out
    assert out.stat().st_mtime_ns == written  # finished: nothing computed again


def test_a_signed_urls_signature_is_in_no_provenance(make_raster, tmp_path: Path) -> None:
    """The output's GEOSR_SOURCE tag ('scene.tif?X-Amz-Signature=...') and its STAC Item's
    derived_from link carried the signature, a credential, into files made to be shared."""
    import json

    import geosr

    src = make_raster(count=1, height=40, width=40)
    out = tmp_path / "out" / "sr.tif"
    out.parent.mkdir()
    with served(src.parent) as base:
        geosr.upscale_file(
            f"{base}/scene.tif?versionId=7&X-Amz-Signature=secret", out, scale=2, model="bicubic", stac=True
        )
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_SOURCE"] == "scene.tif"
    links = json.loads(out.with_name("sr.stac.json").read_text())["links"]
    assert [link["href"] for link in links if link["rel"] == "derived_from"] == [
        f"{base}/scene.tif?versionId=7"
    ]


def test_a_file_url_output_is_written_where_it_points(
    make_raster, tmp_path: Path, capfd, monkeypatch
) -> None:
    """`-o file:///data/out/sr.tif` was taken as a Path, 'file:/data/out/sr.tif', relative to the
    working folder: refused as 'directory file:/data/out does not exist', a folder that did exist."""
    from tests.test_batch import run_cli

    src = make_raster(count=1, height=30, width=30)
    folder = tmp_path / "out put"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    url = f"file://{folder.as_posix().replace(' ', '%20')}"
    code, out, err = run_cli(
        ["run", str(src), "-o", f"{url}/sr.tif", "--scale", "2", "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 0, err
    assert out.strip() == str(folder / "sr.tif")
    code, out, err = run_cli(
        ["run", str(src), "-o", url, "--scale", "2", "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 0, err
    assert sorted(p.name for p in folder.iterdir()) == ["scene_x2.tif", "sr.tif"]
    assert not (tmp_path / "file:").exists()


def test_python_paths_under_the_home_folder_are_read_and_written_there(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """A shell expands '~' for geosr run; geosr.upscale_file('~/scene.tif') was 'no such file' and
    an output '~/out/' 'directory ~ does not exist' (load_model took '~' already)."""
    import geosr

    make_raster("scene.tif", count=1, height=30, width=30)
    (tmp_path / "out").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "out")  # not the home folder: '~' is no relative path
    written = geosr.upscale_file("~/scene.tif", "~/out/", scale=2, model="bicubic")
    assert Path(written) == tmp_path / "out" / "scene_x2.tif" and Path(written).is_file()
    assert geosr.upscale_file(Path("~/scene.tif"), scale=2, model="bicubic") == tmp_path / "scene_x2.tif"
    assert not (tmp_path / "out" / "~").exists()


def test_a_file_url_input_is_read_from_the_file_it_names(make_raster, capfd, monkeypatch) -> None:
    """rasterio read `file://localhost/data/a.tif` as the relative path 'localhost/data/a.tif' and
    kept a URL's escapes ('a%20b.tif'), so both failed as no readable raster; another host's file
    URL, and a raw '#' (a fragment: another file), are refused in one line."""
    from tests.test_batch import run_cli

    src = make_raster("s p#1 ü.tif", count=1, height=30, width=30)
    for url in (src.as_uri(), f"file://localhost{quote(str(src))}", "file:" + quote(str(src))):
        code, out, err = run_cli(
            ["run", url, "--scale", "2", "--model", "bicubic", "--overwrite"], capfd, monkeypatch
        )
        assert code == 0, (url, err)
        assert out.strip() == str(src.with_name("s p#1 ü_x2.tif")), url
        with rasterio.open(out.strip()) as got:
            assert got.width == 60
    for url, needle in (
        (f"file://elsewhere{quote(str(src))}", "a file URL of the host 'elsewhere'"),
        (f"file://{src}", "percent-encode them in the name (%3F, %23)"),
    ):
        code, out, err = run_cli(["run", url, "--scale", "2", "--model", "bicubic"], capfd, monkeypatch)
        assert code == 2 and err.startswith("error: ") and f"{url}: " in err and needle in err, err
        assert "Traceback" not in err and not out


def test_a_remote_outputs_errors_name_it_not_the_staging_folder(make_raster) -> None:
    """A remote output is written in a private local folder first; the lines of the run
    there named that folder ('cannot write /tmp/.geosr-upload-06ztzfnf/x.png'), not the -o."""
    import tempfile

    import geosr
    from geosr.errors import OptionError, OutputError

    src = make_raster(count=1, height=30, width=30)
    with pytest.raises(OptionError) as caught:
        geosr.upscale_file(src, "memory://staging-named/x.png", scale=2, model="bicubic")
    assert str(caught.value).startswith(
        "cannot write memory://staging-named/x.png: unsupported output suffix"
    )
    assert ".geosr-upload-" not in str(caught.value)
    # Short of local disk: the line names the URL, and the local folder where the space is needed.
    huge = make_raster(count=1, height=10, width=10).with_name("huge.vrt")
    huge.write_text(
        '<VRTDataset rasterXSize="400000" rasterYSize="400000"><SRS>EPSG:32633</SRS>'
        "<GeoTransform>0, 10, 0, 0, 0, -10</GeoTransform>"
        '<VRTRasterBand dataType="UInt16" band="1"><NoDataValue>0</NoDataValue></VRTRasterBand></VRTDataset>'
    )
    with pytest.raises(OutputError) as short:
        geosr.upscale_file(huge, "memory://staging-named/x.tif", scale=4, model="bicubic")
    message = str(short.value)
    assert "cannot write memory://staging-named/x.tif:" in message, message
    assert f"free in {tempfile.gettempdir()} (where a remote output is written" in message, message


def test_a_percent_encoded_urls_output_is_named_by_its_file(tmp_path: Path, monkeypatch) -> None:
    """https://host/my%20scene.tif names the file 'my scene.tif': its output was 'my%20scene_x2.tif'."""
    from geosr.run_outputs import default_output

    monkeypatch.chdir(tmp_path)
    assert default_output("https://host/my%20scene.tif?X-Amz-Signature=s", 2) == Path("my scene_x2.tif")
    assert default_output("/vsicurl/http://host/a%2520b.tif", 2) == Path("a%20b_x2.tif")
    assert default_output("https://host/a%2Fb.tif", 2) == Path("a%2Fb_x2.tif")  # never a folder
    assert default_output("s3://bucket/a%20b.tif", 2) == Path("a%20b_x2.tif")  # a key is its name


def test_a_url_with_a_space_is_called_malformed_not_unreachable(tmp_path: Path, capsys, monkeypatch) -> None:
    """curl rejects a URL with a space before any connection; the line said 'the server
    could not be reached ...; check the URL and the network'."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    monkeypatch.chdir(tmp_path)
    url = "http://127.0.0.1:9/my scene.tif"
    code, err = run_cli(["run", url, "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, url, "not a valid URL", "%20")
    assert "could not be reached" not in err and not list(tmp_path.iterdir())


def test_a_url_answering_with_a_web_page_says_so(tmp_path: Path) -> None:
    """A download link that answers with a login or preview page (HTML) was called 'not a
    readable raster ...; check that the file is complete', which points at the wrong fix."""
    import geosr
    from geosr.errors import InputError

    (tmp_path / "scene.tif").write_text("<!DOCTYPE html>\n<html><body>Sign in to download</body></html>\n")
    out = tmp_path / "out.tif"
    with served(tmp_path) as base, pytest.raises(InputError) as caught:
        geosr.upscale_file(f"{base}/scene.tif", out, scale=2, model="bicubic")
    message = str(caught.value)
    assert message.startswith(f"{base}/scene.tif: the server answered with a web page (HTML)"), message
    assert "check the URL" in message and not out.exists()


def test_a_stac_item_served_over_http_resolves_its_relative_assets(make_raster, tmp_path: Path) -> None:
    """Items are mostly remote (a STAC API's item URL): https://host/items/item.json was
    handed to GDAL as a raster, 'not a readable raster (... not recognized as being in a
    supported file format)'."""
    import json

    import geosr

    for i, band in enumerate(("B04", "B03")):
        make_raster(f"{band}.tif", data=coordinate_pattern(1, 30, 30) + i)
    asset = {"type": "image/tiff; application=geotiff", "roles": ["data"]}
    item = {
        "type": "Feature", "stac_version": "1.1.0", "id": "t", "geometry": None,
        "properties": {"datetime": "2024-05-01T10:00:00Z"}, "links": [],
        "assets": {band: {**asset, "href": f"./{band}.tif"} for band in ("B04", "B03")},
    }  # fmt: skip
    (tmp_path / "item.json").write_text(json.dumps(item))
    out = tmp_path / "out" / "sr.tif"
    out.parent.mkdir()
    with served(tmp_path) as base:
        geosr.upscale_file(f"{base}/item.json", out, scale=2, model="bicubic", bands="B03,B04")
    with rasterio.open(out) as f:
        assert (f.count, f.width, f.descriptions) == (2, 60, ("B03", "B04"))
        assert f.tags()["GEOSR_SOURCE"] == "item.json" and f.tags()["STAC_DATETIME"].startswith("2024-05-01")


def test_a_stac_api_item_url_without_a_suffix_is_an_item(make_raster, tmp_path: Path) -> None:
    """A STAC API's Item URL (.../collections/C/items/ID) has no .json: it went to GDAL,
    'not a readable raster (... not recognized as being in a supported file format.)'.
    A suffixless raster's URL is still a raster."""
    import json

    import geosr

    make_raster("B04.tif", height=30, width=30)
    (tmp_path / "items").mkdir()
    item = {"type": "Feature", "stac_version": "1.1.0", "id": "S2_T33UUU", "geometry": None,
            "properties": {"datetime": "2024-05-01T10:00:00Z"}, "links": [],
            "assets": {"B04": {"href": "../B04.tif", "type": "image/tiff", "roles": ["data"]}}}  # fmt: skip
    (tmp_path / "items" / "S2_T33UUU").write_text(json.dumps(item))
    (tmp_path / "B04").write_bytes((tmp_path / "B04.tif").read_bytes())
    with served(tmp_path) as base:
        out = geosr.upscale_file(f"{base}/items/S2_T33UUU", tmp_path / "sr.tif", scale=2, model="bicubic")
        raster = geosr.upscale_file(f"{base}/B04", tmp_path / "b04.tif", scale=2, model="bicubic")
    with rasterio.open(out) as f, rasterio.open(raster) as g:
        assert f.tags()["STAC_DATETIME"].startswith("2024-05-01") and (f.read() == g.read()).all()


def test_a_remote_item_is_fetched_again_by_the_next_call(make_raster, tmp_path: Path) -> None:
    """The Item's JSON was kept for the process, a failed fetch too: an Item not yet published
    (or a timeout) stayed 'not a readable raster' for every later call of a notebook, and an
    Item published again was read as it was."""
    import geosr
    from geosr.errors import GeosrError

    for i, band in enumerate(("B04", "B03")):
        make_raster(f"{band}.tif", data=coordinate_pattern(1, 30, 30) + 100 * i)

    options = {"scale": 2, "model": "bicubic", "overwrite": True}
    with served(tmp_path) as base:
        with pytest.raises(GeosrError):
            geosr.upscale_file(f"{base}/item.json", tmp_path / "sr.tif", **options)  # not published yet
        means = []
        for band in ("B04", "B03"):  # B03 is B04 + 100
            item_of(tmp_path, {band: f"./{band}.tif"})  # published, or published again
            out = geosr.upscale_file(f"{base}/item.json", tmp_path / "sr.tif", **options)
            with rasterio.open(out) as f:
                means.append(float(f.read().mean()))
    assert means[1] - means[0] == pytest.approx(100, abs=1)


def test_a_file_published_or_replaced_at_a_url_is_read_as_it_is_by_the_next_call(
    make_raster, tmp_path: Path
) -> None:
    """GDAL's /vsicurl/ keeps a URL's size, existence and fetched bytes for the process: the next
    call on a URL that was missing still said HTTP 404, and one on a file replaced at the URL
    read the old file's pixels."""
    import geosr
    from geosr.errors import InputError

    www = tmp_path / "www"
    www.mkdir()
    first = make_raster("first.tif", data=coordinate_pattern(1, 40, 40))
    second = make_raster("second.tif", data=coordinate_pattern(1, 40, 40) + 1000)
    options = {"scale": 2, "model": "bicubic", "overwrite": True}
    means = []
    with served(www) as base:
        with pytest.raises(InputError, match="HTTP 404"):
            geosr.upscale_file(f"{base}/scene.tif", tmp_path / "sr.tif", **options)  # not uploaded yet
        for published in (first, second):
            shutil.copyfile(published, www / "scene.tif")
            with rasterio.open(geosr.upscale_file(f"{base}/scene.tif", tmp_path / "sr.tif", **options)) as f:
                means.append(float(f.read().mean()))
    assert means[1] - means[0] == pytest.approx(1000, abs=1)


def test_evaluate_reads_a_remote_pair_as_run_reads_a_remote_input(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    """--lr/--hr were Paths, which fold the // of a URL: 'http:/127.0.0.1:PORT/lr.tif: no such
    file or directory', where geosr run and the Wald protocol's HR rasters read it; and
    evaluate_paired made a Path of its LR for the run (the same line from the Python API)."""
    import json

    from affine import Affine

    from geosr.evaluation.wald import evaluate_paired
    from tests.conftest import UTM_TRANSFORM
    from tests.test_bad_input import run_cli

    www = tmp_path / "www"
    www.mkdir()
    make_raster("www/lr.tif", height=32, width=32)
    make_raster("www/hr.tif", height=64, width=64, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    with served(www) as base:
        args = ["evaluate", "--lr", f"{base}/lr.tif", "--hr", f"{base}/hr.tif", "-s", "2", "-m", "bicubic"]
        code, err = run_cli([*args, "--border", "2", "--json", str(tmp_path / "r.json")], capsys, monkeypatch)
        assert code == 0, err
        assert (
            json.loads((tmp_path / "r.json").read_text())["images"][0]["path"]
            == f"{base}/lr.tif vs {base}/hr.tif"
        )
        pairs = [(f"{base}/lr.tif", f"{base}/hr.tif")]
        assert evaluate_paired(pairs, scale=2, model="bicubic", border=2).images


def test_an_evaluation_reads_a_raster_replaced_at_its_url_as_it_is_now(make_raster, tmp_path: Path) -> None:
    """GDAL's /vsicurl/ cache, which upscale_file forgets after each call (the test above), was
    kept by evaluate_wald and evaluate_paired: a reference replaced at its URL since an earlier
    call was scored as it was then."""
    from affine import Affine

    from geosr.evaluation.wald import evaluate_paired, evaluate_wald
    from tests.conftest import UTM_TRANSFORM
    from tests.test_evaluate import _fake_upscaler

    www = tmp_path / "www"
    www.mkdir()
    make_raster("www/lr.tif", height=16, width=16)
    fine = {"height": 32, "width": 32, "transform": UTM_TRANSFORM @ Affine.scale(0.5)}
    first = make_raster("first.tif", data=coordinate_pattern(1, 32, 32), **fine)
    second = make_raster("second.tif", data=coordinate_pattern(1, 32, 32) * 3 + 1000, **fine)
    options = {"scale": 2, "model": "fake", "border": 2, "upscaler": _fake_upscaler}
    wald, paired = [], []
    with served(www) as base:
        for published in (first, second):
            shutil.copyfile(published, www / "hr.tif")
            wald.append(evaluate_wald([f"{base}/hr.tif"], **options).to_dict()["images"][0]["bands"])
            pairs = [(f"{base}/lr.tif", f"{base}/hr.tif")]
            paired.append(evaluate_paired(pairs, **options).to_dict()["images"][0]["bands"])
    assert wald[1] != wald[0] and paired[1] != paired[0]  # the second's 3x contrast: other scores


def test_a_remote_folder_output_takes_each_inputs_default_name(make_raster, capfd, monkeypatch) -> None:
    """`-o memory://b/out/` (s3://bucket/out/ alike) was taken as a file named 'out' and refused,
    'unsupported output suffix (none) ... or an existing folder to write it into', and with
    several inputs as 'must be an existing folder'."""
    import fsspec

    from tests.test_batch import run_cli

    sources = [str(make_raster(name, count=1, height=20, width=20)) for name in ("a.tif", "b.tif")]
    fs = fsspec.filesystem("memory")
    try:
        for inputs in (sources[:1], sources):
            code, out, err = run_cli(
                ["run", *inputs, "-o", "memory://remote-folder/out/", "--scale", "2", "--model", "bicubic",
                 "--overwrite"], capfd, monkeypatch,
            )  # fmt: skip
            assert code == 0, err
        assert out.split() == ["memory://remote-folder/out/a_x2.tif", "memory://remote-folder/out/b_x2.tif"]
        assert sorted(fs.ls("/remote-folder/out", detail=False)) == [
            "/remote-folder/out/a_x2.tif", "/remote-folder/out/b_x2.tif"
        ]  # fmt: skip
    finally:
        if fs.exists("/remote-folder"):
            fs.rm("/remote-folder", recursive=True)


def test_a_batch_to_a_url_without_its_driver_fails_once_before_any_input(
    make_raster, capfd, monkeypatch
) -> None:
    """`geosr run a.tif b.tif -o s3://bucket/out/` without s3fs read and upscaled each input, then
    failed on each with the same line ('no filesystem for this URL (Install s3fs to access S3)'),
    and a summary line of them."""
    import importlib.util

    from tests.test_batch import run_cli

    if importlib.util.find_spec("s3fs") is not None:
        pytest.skip("s3fs is installed: no driver is missing")
    sources = [str(make_raster(name, height=20, width=20)) for name in ("a.tif", "b.tif")]

    def read(*args: object, **kwargs: object) -> None:
        raise AssertionError("an input was read")

    monkeypatch.setattr("geosr.api.scene_for", read)
    code, _, err = run_cli(
        ["run", *sources, "-o", "s3://bucket/out/", "--model", "bicubic"], capfd, monkeypatch
    )
    assert code == 2 and err.count("error:") == 1, err
    assert err.startswith("error: s3://bucket/out/: ") and err.endswith("; pip install s3fs"), err


def test_an_http_output_is_refused_as_unwritable(make_raster, tmp_path: Path, capsys, monkeypatch) -> None:
    """-o https://... said 'no filesystem for this URL (HTTPFileSystem requires aiohttp); install
    its fsspec driver (s3fs, gcsfs, adlfs)': no driver makes a web server take an upload."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    src = make_raster(count=1, height=20, width=20)
    url = "https://127.0.0.1:9/out/sr.tif"
    code, err = run_cli(["run", str(src), "-o", url, "--model", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, url, "can be read but not written", "s3://")
    assert "install" not in err


def test_a_server_that_fails_mid_run_is_not_called_a_corrupt_file(tmp_path: Path) -> None:
    """A server that stops answering once the run has started (HTTP 503) was reported as
    'reading the raster failed (Read failed. See previous exception for details.); the file
    is probably truncated or corrupt': no cause, and the wrong fix."""
    import geosr
    from geosr.errors import InputError

    noise = np.random.default_rng(0).integers(1, 60000, size=(1, 512, 512), dtype=np.uint16)
    with rasterio.open(
        tmp_path / "plain.tif", "w", driver="GTiff", count=1, height=512, width=512, dtype="uint16",
        crs="EPSG:32633", transform=UTM_TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(noise)
    served_dir = tmp_path / "www"
    served_dir.mkdir()
    rio_copy(tmp_path / "plain.tif", served_dir / "scene.tif", driver="COG", BLOCKSIZE=128, OVERVIEWS="NONE")
    out = tmp_path / "sr.tif"
    with served(served_dir, answers=1) as base, pytest.raises(InputError) as caught:  # the header only
        geosr.upscale_file(f"{base}/scene.tif", out, scale=2, model="bicubic")
    message = str(caught.value)
    assert "See previous exception" not in message, message
    assert "the server stopped serving it" in message and "check the URL" in message, message
    assert not out.exists()


_STALLED_RUN = """
import sys
from geosr.io import remote
remote.STALLED_TRANSFER_S = 1
from geosr.cli import main
sys.argv = ["geosr", *sys.argv[1:]]
main()
"""


def test_a_stalled_server_fails_the_run_in_one_line(tmp_path: Path) -> None:
    """A server that took the connection and never answered hung the run, silently: curl
    waits forever by default. geosr bounds the wait (here 1 s), unless the user set GDAL's options."""
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("GDAL_HTTP_")}
    # Listening, the kernel takes the connections; nothing ever accepts or answers them.
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/scene.tif"
        out = tmp_path / "out.tif"
        args = [sys.executable, "-c", _STALLED_RUN, "run", url, "--model", "bicubic", "-o", str(out)]
        # Without the bound, the run hangs (in GDAL, deaf to signals): killed at the timeout.
        done = subprocess.run(
            args, check=False, capture_output=True, text=True, env=env, timeout=120, cwd=REPO
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert url in done.stderr and "server" in done.stderr, done.stderr
    assert not list(tmp_path.iterdir())


_STALLED_CALL = """
import sys
import geosr
from geosr.io import remote
remote.STALLED_TRANSFER_S = 1
try:
    geosr.upscale_file(sys.argv[1], sys.argv[2], scale=2, model="bicubic")
except geosr.GeosrError as exc:
    print(exc, file=sys.stderr)
    sys.exit(2)
"""


def test_a_stalled_server_fails_a_python_api_call_and_the_callers_settings_stay(tmp_path: Path) -> None:
    """Only the command bounded the waits: upscale_file on a server that took the connection and
    never answered hung for good.  It fails now, and the environment is left as it was: a
    caller's own GDAL_HTTP_LOW_SPEED_TIME (2 s here) is kept, and geosr's own bounds go."""
    import socket

    env = {k: v for k, v in os.environ.items() if not k.startswith("GDAL_HTTP_")}
    with socket.create_server(("127.0.0.1", 0), backlog=64) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/scene.tif"
        out = tmp_path / "out.tif"
        args = [sys.executable, "-c", _STALLED_CALL, url, str(out)]
        done = subprocess.run(
            args, check=False, capture_output=True, text=True, env=env, timeout=60, cwd=REPO
        )
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert url in done.stderr and "server" in done.stderr, done.stderr
    assert not out.exists()

    from geosr.io.remote import remote_waits_bounded

    with pytest.MonkeyPatch.context() as patch:
        for name in ("GDAL_HTTP_LOW_SPEED_TIME", "GDAL_HTTP_LOW_SPEED_LIMIT", "GDAL_HTTP_CONNECTTIMEOUT"):
            patch.delenv(name, raising=False)
        patch.setenv("GDAL_HTTP_LOW_SPEED_TIME", "2")
        with remote_waits_bounded():
            assert os.environ["GDAL_HTTP_LOW_SPEED_TIME"] == "2"
            assert os.environ["GDAL_HTTP_CONNECTTIMEOUT"] == "30"
        assert os.environ["GDAL_HTTP_LOW_SPEED_TIME"] == "2"
        assert "GDAL_HTTP_CONNECTTIMEOUT" not in os.environ and "GDAL_HTTP_LOW_SPEED_LIMIT" not in os.environ


def test_a_signed_urls_signature_is_printed_nowhere(make_raster, tmp_path: Path, capfd, monkeypatch) -> None:
    """A signed URL (an S3 presigned URL, a Planetary Computer SAS href) had its signature, a
    credential, printed in the error line, the progress lines of a log and a batch's summary."""
    import geosr.progress
    from tests.test_batch import run_cli

    signed = "https://127.0.0.1:9/a/scene.tif?X-Amz-Credential=AKIAKEY&X-Amz-Signature=SECRETSIG"
    code, _, err = run_cli(
        ["run", signed, "-m", "bicubic", "-o", str(tmp_path / "o.tif")], capfd, monkeypatch
    )
    assert code == 2 and "error: https://127.0.0.1:9/a/scene.tif: " in err, err
    assert "SECRETSIG" not in err and "AKIAKEY" not in err, err

    # A batch of two served files, the second no raster: a progress line, an error line, a summary.
    www = tmp_path / "www"
    www.mkdir()
    make_raster("www/scene.tif", height=64, width=64)
    (www / "b.tif").write_bytes(b"not a raster")
    (tmp_path / "out").mkdir()
    monkeypatch.setattr(geosr.progress, "QUIET_S", 0.0)
    with served(www) as base:
        first = f"{base}/scene.tif?X-Amz-Credential=AKIAKEY&X-Amz-Signature=SECRETSIG"
        other = f"{base}/b.tif?X-Amz-Credential=AKIAKEY&X-Amz-Signature=OTHERSIG"
        args = ["run", first, other, "-m", "bicubic", "--tile", "32", "-o", str(tmp_path / "out")]
        code, _, err = run_cli(args, capfd, monkeypatch)
    assert code == 2, err
    assert "geosr: [1/2] scene.tif: 4/4 tiles (100 %)" in err, err
    assert f"error: {base}/b.tif: " in err, err
    assert "1 of 2 inputs failed (b.tif)" in err, err
    assert "SIG" not in err and "AKIAKEY" not in err, err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["scene_x4.tif"]


def test_info_of_a_signed_url_names_it_without_its_signature(make_raster, capfd, monkeypatch) -> None:
    """geosr info printed a signed URL whole on its input line, signature (a credential) and all."""
    from tests.test_batch import run_cli

    src = make_raster(height=32, width=32)
    with served(src.parent) as base:
        url = f"{base}/scene.tif?X-Amz-Credential=AKIAKEY&X-Amz-Signature=SECRETSIG"
        code, out, err = run_cli(["info", url, "-m", "bicubic", "--no-calibrate"], capfd, monkeypatch)
    assert code == 0, err
    assert f"{base}/scene.tif" in out and "SECRETSIG" not in out and "AKIAKEY" not in out, out


@pytest.mark.parametrize(
    ("command", "example"),
    [
        (["compare", "-", "{src}"], "geosr compare /vsistdin/ sr.tif < lr.tif"),
        (["compare", "{src}", "-"], "geosr compare /vsistdin/ sr.tif < lr.tif"),
        (["evaluate", "-", "-s", "2", "-m", "bicubic"], "geosr evaluate /vsistdin/ < hr.tif"),
        (["evaluate", "--lr", "-", "--hr", "{src}", "-s", "2", "-m", "bicubic"], "geosr evaluate /vsistdin/"),
        (["info", "-"], "geosr info /vsistdin/ < scene.tif"),
    ],
)
def test_the_standard_input_hint_names_the_command_used(
    make_raster, capsys, monkeypatch, command: list[str], example: str
) -> None:
    """`geosr compare - sr.tif` and `geosr evaluate -` were told to type `geosr run /vsistdin/ <
    scene.tif`, the hint of the command they were not using."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    src = make_raster(height=32, width=32)
    code, err = run_cli([a.format(src=src) for a in command], capsys, monkeypatch)
    assert_one_clear_line(code, err, "reads standard input as /vsistdin/", example)
    assert "geosr run" not in err
