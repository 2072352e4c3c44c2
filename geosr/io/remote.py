"""Remote and cloud paths: ``https://``, ``s3://``, ``gs://``, ``az://`` and GDAL's ``/vsi*``.

Inputs are opened by GDAL itself (rasterio maps ``s3://`` to ``/vsis3/``,
``https://`` to ``/vsicurl/`` and so on), which reads only the byte ranges of
the blocks it needs: a run with ``--aoi`` on a remote COG fetches the AOI's
tiles, not the file.  Credentials are GDAL's usual ones (``AWS_*``,
``GOOGLE_APPLICATION_CREDENTIALS``, ``~/.aws``...).  For many small reads over
HTTP, ``GDAL_DISABLE_READDIR_ON_OPEN=EMPTY_DIR`` saves a directory listing per
open.  Outputs are written locally, atomically (see :mod:`geosr.io.atomic`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import os
import re
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path, PurePosixPath
from typing import Any, ParamSpec, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlparse

from geosr.errors import InputError, OutputError
from geosr.held import environment_defaults
from geosr.io.atomic import already_exists, take_lock

P = ParamSpec("P")
R = TypeVar("R")

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "gcs", "az", "azure", "abfs", "oss", "swift", "memory")


_ARCHIVE_PREFIXES = ("/vsizip/", "/vsitar/", "/vsigzip/")
_ARCHIVE_SCHEMES = ("zip", "tar", "gzip", "zip+file", "tar+file", "gzip+file")

URL_SCHEMES = (*REMOTE_SCHEMES, *_ARCHIVE_SCHEMES, "ftp")
"""The schemes before which geosr, or rasterio, reads ``scheme:name`` as a URL, ``//`` or not."""


STALLED_TRANSFER_S = 30
"""Seconds a remote read may go without a byte before it fails (GDAL's
``GDAL_HTTP_LOW_SPEED_TIME``, below 1 byte/s): curl's default is to wait forever, so
a server that accepted the connection and then stalled hung the run, silently."""

CONNECT_TIMEOUT_S = 30
"""Seconds to connect to a remote server before the read fails (``GDAL_HTTP_CONNECTTIMEOUT``)."""


def _remote_waits() -> dict[str, str]:
    """GDAL's options that bound a remote read's waits, with geosr's values (read at each call)."""
    return {
        "GDAL_HTTP_LOW_SPEED_TIME": str(STALLED_TRANSFER_S),
        "GDAL_HTTP_LOW_SPEED_LIMIT": "1",
        "GDAL_HTTP_CONNECTTIMEOUT": str(CONNECT_TIMEOUT_S),
    }


def remote_waits_defaulted() -> contextlib.AbstractContextManager[None]:
    """Within: a stalled or unreachable server fails a remote read, in one line, rather than
    hang it: :data:`STALLED_TRANSFER_S` and :data:`CONNECT_TIMEOUT_S`, unless the user set
    GDAL's options in the environment (GDAL reads them there at each request); after: the
    environment as it was.  For the ``geosr`` command, which looks no further than the
    environment (rasterio is not loaded for ``--help``); the Python API has
    :func:`remote_waits_bounded`."""
    return environment_defaults(_remote_waits())


_BOUNDING = threading.Lock()
_BOUND: dict[str, str] = {}
"""The options :func:`remote_waits_bounded` put in the environment, while calls are inside it."""
_CALLS_BOUNDED = [0]


@contextlib.contextmanager
def remote_waits_bounded() -> Iterator[None]:
    """Within: :func:`remote_waits_defaulted`'s bounds on remote reads, for the options the caller has
    not set (in the environment, a ``rasterio.Env`` or ``gdal.SetConfigOption``); after: the
    environment as it was, unless changed meanwhile.

    For the Python API: curl waits forever by default, so ``upscale_file`` on a server that
    took the connection and then stalled hung for good, where ``geosr run`` failed in one line.
    In the environment, not a ``rasterio.Env``, so that the run's own threads and the worker
    processes it starts read them too.  Calls in several threads at once share them: the last
    to leave takes them out.
    """
    from rasterio.env import get_gdal_config

    with _BOUNDING:
        if not _CALLS_BOUNDED[0]:
            for name, value in _remote_waits().items():
                if get_gdal_config(name) is None:  # GDAL's view: config options, then environment
                    os.environ[name] = _BOUND[name] = value
        _CALLS_BOUNDED[0] += 1
    try:
        yield
    finally:
        with _BOUNDING:
            _CALLS_BOUNDED[0] -= 1
            if not _CALLS_BOUNDED[0]:
                for name, value in _BOUND.items():
                    if os.environ.get(name) == value:
                        del os.environ[name]
                _BOUND.clear()


def remote_waits_bounded_in(func: Callable[P, R]) -> Callable[P, R]:
    """``func``, run inside :func:`remote_waits_bounded`: for the Python API's entry points.

    A wrapper of geosr's, not the context manager used as a decorator: :func:`geosr.errors.warn`
    points at the first frame outside geosr, which contextlib's wrapper was.
    """

    @functools.wraps(func)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        with remote_waits_bounded():
            return func(*args, **kwargs)

    return call


def forget_remote_files(paths: Iterable[str | Path]) -> None:
    """Have GDAL forget what it fetched of remote files, where ``paths`` has one (a run's inputs).

    GDAL's ``/vsicurl/`` (``/vsis3/``, ``/vsigs/``...) keeps each URL's size, existence and
    fetched ranges for the process: a notebook's next call on a URL that was missing (not
    uploaded yet) still said 'not found on the server (HTTP 404)', and one on a file replaced
    at the same URL read the old file's pixels (the pixels of a local file replaced at its path
    are read afresh: :attr:`geosr.io.scene.Scene.stamp`).  Within a run the cache still serves.
    """
    if not any(is_remote(path) for path in paths):
        return
    gdal = _gdal_library()
    if gdal is not None:
        gdal.VSICurlClearCache()


@functools.cache
def _gdal_library() -> Any:
    """The GDAL library rasterio runs on (ctypes), or None where it cannot be found.

    rasterio has no call for GDAL's ``VSICurlClearCache``.  The library is the one this process
    has loaded (Linux: ``/proc/self/maps`` names it), else the one a rasterio wheel bundles.
    """
    import ctypes

    import rasterio

    loaded: list[str] = []
    with contextlib.suppress(OSError), Path("/proc/self/maps").open() as maps:
        files = {line.split(None, 5)[-1].strip() for line in maps if line.count(" ") >= 5}
        loaded = sorted(f for f in files if Path(f).name.startswith("libgdal"))
    here = Path(rasterio.__file__).parent
    bundled = [*here.glob(".dylibs/libgdal*"), *here.parent.glob("rasterio.libs/libgdal*")]
    for candidate in [*loaded, *map(str, bundled)]:
        with contextlib.suppress(OSError, AttributeError):
            library = ctypes.CDLL(candidate)
            library.VSICurlClearCache.restype = None
            return library
    return None


def is_remote(path: str | Path) -> bool:
    """True for URLs GDAL opens remotely and for ``/vsi*`` paths other than local archives."""
    text = str(path)
    if text.startswith(_ARCHIVE_PREFIXES):  # remote only if the archive is: /vsizip//vsicurl/...
        return is_remote("/" + text.split("/", 2)[2].lstrip("/"))
    if text.startswith("/vsi"):
        return not text.startswith("/vsimem/")
    return urlparse(text).scheme.lower() in REMOTE_SCHEMES


_STDIN = re.compile(r"(/vsi[a-z0-9_]+/)*/vsistdin/?(\?.*)?")
"""GDAL's name of standard input, also read through a filter (``/vsigzip//vsistdin/``)."""

STDIN_EXAMPLES = {
    "run": "geosr run /vsistdin/ < scene.tif",
    "info": "geosr info /vsistdin/ < scene.tif",
    "compare": "geosr compare /vsistdin/ sr.tif < lr.tif",
    "evaluate": "geosr evaluate /vsistdin/ < hr.tif",
}
"""How each command is given a raster on standard input, for the lines that say it holds none."""
_COMMAND = contextvars.ContextVar("geosr_command", default="run")
"""The ``geosr`` command running (:func:`command_named`); ``run`` for the Python API."""


@contextlib.contextmanager
def command_named(name: str | None) -> Iterator[None]:
    """Within: :func:`stdin_example` is that of the ``geosr`` command ``name`` (None: ``run``'s)."""
    token = _COMMAND.set(name or "run")
    try:
        yield
    finally:
        _COMMAND.reset(token)


def stdin_example() -> str:
    """How the command running is given a raster on standard input: ``geosr compare -`` and
    ``geosr evaluate -`` were told to type ``geosr run /vsistdin/ < scene.tif``."""
    return STDIN_EXAMPLES.get(_COMMAND.get(), STDIN_EXAMPLES["run"])


def is_stdin(path: str | Path) -> bool:
    """Whether ``path`` is GDAL's standard input (``/vsistdin/``, also through a filter)."""
    return _STDIN.fullmatch(str(path)) is not None


def stdin_problem() -> str | None:
    """Why standard input holds no raster, where that is known before GDAL reads it, else None.

    GDAL waited on a terminal for a raster typed in, and called an empty input (``< /dev/null``,
    an empty file) 'not recognized as being in a supported file format'.
    """
    closed = f"standard input is closed; pipe a raster into it: {stdin_example()}"
    if sys.stdin is None:
        # Python's word that descriptor 0 was closed as it started (``<&-``): the command has since
        # opened the null device there (geosr.entry), which reads as empty; without it, the first
        # file the command opened took descriptor 0, which read as an empty regular file.
        return closed
    try:
        found = os.fstat(0)
    except OSError:
        return closed
    if os.isatty(0):
        return f"standard input is a terminal, not a raster; pipe one into it: {stdin_example()}"
    null = Path(os.devnull).stat()
    if (found.st_dev, found.st_ino) == (null.st_dev, null.st_ino) or (
        stat.S_ISREG(found.st_mode) and found.st_size == 0
    ):
        return f"standard input is empty; pipe a raster into it: {stdin_example()}"
    return None


def local_name(path: str | Path) -> str:
    """The file name of a remote or archived path (``https://host/a/scene.tif?x=1``,
    ``https://host/a/scene%2Btest.tif`` -> ``scene+test.tif`` and ``zip:///data/a.zip!/scene.tif``
    -> ``scene.tif``); ``stdin`` for GDAL's standard input (``/vsistdin/``, which was
    ``vsistdin``, or ``/vsistdin?buffer_limit=10MB``, or gunzipped, ``/vsigzip//vsistdin/``), which
    has no file name."""
    text = str(path)
    if is_stdin(text):
        return "stdin"
    name = PurePosixPath(urlparse(text).path if "://" in text else text).name.rpartition("!")[2]
    if urlparse(text.removeprefix("/vsicurl/")).scheme.lower() in ("http", "https"):
        # An HTTP path is percent-encoded (my%20scene.tif names 'my scene.tif'); an object
        # store's key (s3://, /vsis3/) is the name itself.  An encoded slash stays encoded.
        decoded = unquote(name)
        name = decoded if "/" not in decoded and "\0" not in decoded else name
    return name or "remote"


# The query parameters that sign a URL (AWS S3 SigV4 and v2, Google Cloud Storage, Azure SAS,
# CloudFront): credentials that expire, not part of which file the URL names.
_SIGNING_PREFIXES = ("x-amz-", "x-goog-")
_SIGNING_KEYS = frozenset(
    [
        "awsaccesskeyid",
        "signature",
        "expires",
        "googleaccessid",
        "policy",
        "key-pair-id",
        "token",
        "sig",
        "se",
        "st",
        "sp",
        "sv",
        "sr",
        "ss",
        "srt",
        "spr",
        "si",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",
        "sdd",
        "ses",
    ]
)


def unsigned(path: str | Path) -> str:
    """``path`` without the query parameters that sign it (``?X-Amz-Signature=...``, an Azure
    SAS's ``sig``...), for what names the file rather than opens it: a run's fingerprint,
    provenance.  A signed URL's signature changes each time it is made, and is a credential."""
    text = str(path)
    parts = urlparse(text)
    if not parts.query or parts.scheme.lower() not in REMOTE_SCHEMES:
        return text
    kept = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not key.lower().startswith(_SIGNING_PREFIXES) and key.lower() not in _SIGNING_KEYS
    ]
    return parts._replace(query=urlencode(kept)).geturl()


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def without_signatures(text: str) -> str:
    """``text`` (a message) with each URL in it :func:`unsigned`: an error or warning line
    printed a signed URL's signature, a credential, into the terminal and every log."""

    def clean(match: re.Match[str]) -> str:
        url = match.group(0)
        core = url.rstrip(":;,.)")  # the message's punctuation after the URL stays
        return unsigned(core) + url[len(core) :]

    return _URL.sub(clean, text)


def file_url_path(path: str | Path) -> str | Path:
    """The local path a ``file:`` URL names (``file:///data/a%20b.tif``,
    ``file://localhost/data/a%20b.tif`` -> ``/data/a b.tif``), the GDAL path of a local
    archive's URL (:func:`archive_url_path`), a path under ``~`` in the home folder, or
    ``path`` unchanged.

    rasterio takes ``file://localhost/data/a.tif`` for the relative path
    ``localhost/data/a.tif`` and keeps a URL's escapes (``%20``) in the name, so an input
    URL as ``Path.as_uri()`` or a file manager gives it was "no such file".

    Raises
    ------
    InputError
        The URL names another machine's file, or holds a query or fragment.
    """
    archived = archive_url_path(path)
    if archived is not None:
        return archived
    text = local_file_text(path)
    if text is not None:
        return Path(text)
    return path.expanduser() if isinstance(path, Path) else home_expanded(path)


def home_expanded(text: str) -> str:
    """``text`` with a leading ``~`` or ``~user`` expanded to that home folder, as a shell does.

    A Python caller's ``'~/scene.tif'`` was "no such file" and its ``'~/out.tif'`` "directory ~
    does not exist", where the command's shell expands them (and load_model took them).  Text,
    not a Path, so that ``'~/out/'`` keeps the '/' that makes it a folder.
    """
    return os.path.expanduser(text) if text.startswith("~") else text  # noqa: PTH111


def archive_url_path(path: str | Path) -> str | None:
    """The GDAL path of a local archive's URL, its escapes decoded
    (``zip:///data/my%20dir/a.zip!/b.tif`` -> ``/vsizip//data/my dir/a.zip/b.tif``), or None
    for any other path.

    rasterio keeps a URL's escapes in the archive's name ('my%20dir', no such folder), and
    geosr's own tests of the path (a zipped Zarr store, the archive's stamp) read it as a
    local path: the URL as a file manager or ``quote`` gives it was no such file.  A '?' or
    '#' is the name's own, as rasterio reads it: a member's name, not a query.
    """
    text = str(path)
    scheme, found, rest = text.partition("://")
    if not found or scheme.lower() not in _ARCHIVE_SCHEMES:
        return None
    archive, bang, member = rest.partition("!")
    prefix = "/vsi" + scheme.lower().partition("+")[0] + "/"
    return prefix + unquote(archive) + ("/" + unquote(member).lstrip("/") if bang else "")


def local_file_text(path: str | Path) -> str | None:
    """The decoded local path of a ``file:`` URL as a string (a folder's ending '/' kept, which a
    Path drops), or None for any other path.  A ``Path`` folds ``file:///a`` to ``file:/a``, which
    RFC 8089 allows too.

    Raises
    ------
    InputError
        The URL names another machine's file, or holds a query or fragment.
    """
    text = str(path)
    if not text.lower().startswith("file:/"):
        return None
    parts = urlparse(text)
    if parts.netloc.lower() not in ("", "localhost"):
        raise InputError(
            f"{text}: a file URL of the host {parts.netloc!r}; geosr reads and writes this machine's "
            "files only (file:///path or file://localhost/path): mount that folder and give its path"
        )
    if parts.query or parts.fragment:
        # 'file:///data/a#1.tif' names '/data/a' with a fragment, so the run read another file.
        raise InputError(
            f"{text}: a file URL's '?' begins a query and '#' a fragment, which name no file; "
            "percent-encode them in the name (%3F, %23), or give the path itself"
        )
    return unquote(parts.path)


def is_virtual(path: str | Path) -> bool:
    """True for any path that is not a plain local file name: a URL of any scheme
    (``https://``, ``zip://``, ``file://``...) or a GDAL ``/vsi*`` path, local archives included."""
    text = str(path)
    return text.startswith("/vsi") or "://" in text


def local_archive(path: str | Path) -> Path | None:
    """The local archive a member path reads from (``/vsizip//data/a.zip/b.tif``,
    ``zip:///data/a.zip!/b.tif`` -> ``/data/a.zip``), or None for any other path."""
    text = archive_url_path(path) or str(path)
    if not text.startswith(_ARCHIVE_PREFIXES):
        return None
    if text.split("/", 2)[2].startswith("{"):
        # GDAL's braces around the archive (/vsizip/{/vsizip//data/a.zip/b.zip}/c.tif, an archive
        # in an archive): the outermost local one.  It was none, so --resume could not tell a
        # replaced archive.
        braced = text.split("/", 2)[2][1:].rpartition("}")[0]
        return local_archive(braced) or (Path(braced) if Path(braced).is_file() else None)
    inside = Path(text.split("/", 2)[2])  # /vsizip//data/a.zip/b.tif -> /data/a.zip/b.tif
    # GDAL marks no boundary between the archive and its member: the archive is the
    # longest leading part that is a file.
    for candidate in (inside, *inside.parents):
        if candidate.is_file():
            return candidate
    return None


def archive_member(path: str) -> tuple[Path, str] | None:
    """The local archive and the member's name in it (``/vsizip//data/a.zip/b/c.tif`` ->
    ``/data/a.zip``, ``b/c.tif``; ``.`` for the archive itself), or None where ``path`` is
    no member of a local archive, or one of an archive in an archive (GDAL's braces)."""
    archive = local_archive(path)
    inside = Path(path.split("/", 2)[2]) if path.startswith(_ARCHIVE_PREFIXES) else None
    if archive is None or inside is None or not inside.is_relative_to(archive):
        return None
    return archive, inside.relative_to(archive).as_posix()


_ZIP_UTF8_FLAG = 0x800
"""A zip entry's flag saying that its name is UTF-8; without it, the name is CP437 (as GDAL reads it)."""


def archive_member_problem(path: str | Path) -> str | None:
    """What is wrong with the member of a local zip or tar archive (``/vsizip/``, ``/vsitar/``)
    that GDAL could not open, and the fix; None where the archive lists the member (or ``path``
    is no member of a local archive, or the archive is gone: GDAL's words say so).

    GDAL says "does not exist in the file system" of a member that an archive does not hold,
    of a member of a truncated or corrupt archive, and of a non-ASCII name that the archive
    wrote without its UTF-8 flag (Info-ZIP's zip does), so a file that was there was refused as
    missing and a broken archive's fix was not told.
    """
    import tarfile
    import zipfile
    import zlib

    text = archive_url_path(path) or str(path)
    found = archive_member(text)
    if found is None or not text.startswith(("/vsizip/", "/vsitar/")):
        return None
    archive, member = found
    try:
        if text.startswith("/vsizip/"):
            with zipfile.ZipFile(archive) as zipped:
                entries = {info.filename: info.flag_bits for info in zipped.infolist()}
        else:
            with tarfile.open(archive) as tarred:
                entries = dict.fromkeys(tarred.getnames(), _ZIP_UTF8_FLAG)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError) as exc:
        return (
            f"the archive {archive} cannot be read ({exc}): it is truncated or corrupt; copy or "
            "download it again"
        )
    if member == "." or member in entries or any(name.startswith(f"{member}/") for name in entries):
        return None  # a folder of it too (a Zarr store), which a zip may hold without an entry
    for name, flags in entries.items():
        for encoding in _ZIP_NAME_ENCODINGS:
            if not flags & _ZIP_UTF8_FLAG and _written_name(name, encoding) == member:
                return (
                    f"the archive {archive} holds {member!r}, but names it in {encoding} without saying "
                    f"so, and GDAL reads such names as CP437; set CPL_ZIP_ENCODING={encoding} in the "
                    "environment"
                )
    names, note = _listing(entries)
    return f"the archive {archive} holds no {member!r}; it holds {_some(names)}: name one of them{note}"


# The encodings a zip's names are written in without its UTF-8 flag, besides CP437 (as zipfile
# and GDAL read them): Info-ZIP's UTF-8, and the Windows code page of Western Europe.
_ZIP_NAME_ENCODINGS = ("UTF-8", "CP1252")


def _listing(entries: dict[str, int]) -> tuple[list[str], str]:
    """An archive's file names (``entries``: each name and its zip flags) as a person reads them,
    and the note a line needs for names that GDAL does not read so ("" if none).

    A name in UTF-8 without the flag that says so (Info-ZIP's zip) is shown as written, where
    it was 'sc ├⌐ ne.tif' (read as CP437); a name in another encoding, as GDAL reads it, which
    it can be given as; a tar's name that is not UTF-8 with its bytes as ``\\xe4``, where it was
    'B\\udce4nd.tif', which geosr cannot pass to GDAL.
    """
    names, notes = [], set()
    for name, flags in entries.items():
        if name.endswith("/"):
            continue
        if flags & _ZIP_UTF8_FLAG or name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:  # a tar's name in another encoding, kept as surrogates
                notes.add(_NOT_UTF8)
                name = os.fsencode(name).decode("utf-8", "backslashreplace")
            names.append(name)
            continue
        written = _written_name(name, "UTF-8")
        notes.add(_UNFLAGGED_UTF8 if written else _LEGACY_NAMES)
        names.append(written or name)
    return names, "".join(f"; {note}" for note in sorted(notes))


_UNFLAGGED_UTF8 = (
    "its names are UTF-8 without the zip's flag that says so: set CPL_ZIP_ENCODING=UTF-8 to give them"
)
_NOT_UTF8 = (
    "its names are not UTF-8 (their other bytes shown as \\xNN), which geosr cannot pass to GDAL: extract "
    "the raster from the archive and run on the file"
)
_LEGACY_NAMES = (
    "its names are in a legacy encoding, shown as GDAL reads them (as CP437); to give them as "
    "written, set CPL_ZIP_ENCODING to the archive's (e.g. CP1252)"
)


def _some(names: list[str]) -> str:
    """The first few of ``names``, for a line."""
    return (", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")) or "no file"


def whole_archive_problem(path: str | Path) -> str | None:
    """What to give instead of a local zip, tar or gzip file given whole (``S2.zip``,
    ``a.tar.gz``, ``scene.tif.gz``), which GDAL reads as no raster, or None for any other file.

    GDAL's words were "not recognized as being in a supported file format", and geosr's fix
    "check that the file is complete": the fix is to name the raster in the archive.
    """
    import tarfile
    import zipfile

    file = Path(path)
    try:
        if not file.is_file():
            return None
        if zipfile.is_zipfile(file):
            with zipfile.ZipFile(file) as zipped:
                prefix, entries = "/vsizip/", {info.filename: info.flag_bits for info in zipped.infolist()}
        elif tarfile.is_tarfile(file):
            with tarfile.open(file) as tarred:
                prefix, entries = "/vsitar/", dict.fromkeys(tarred.getnames(), _ZIP_UTF8_FLAG)
        else:
            with file.open("rb") as stream:
                if stream.read(2) != b"\x1f\x8b":  # gzip's magic number
                    return None
            return f"a gzip-compressed file, not a raster; give /vsigzip/{file} to read the raster in it"
    except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError):
        return None  # a damaged archive: GDAL's words stand
    names, note = _listing(entries)
    rasters = [name for name in names if name.lower().endswith((".tif", ".tiff", ".jp2", ".nc", ".vrt"))]
    example = f"{prefix}{file}/{(rasters or names or ['NAME'])[0]}"
    return f"an archive, not a raster; name the raster in it, e.g. {example} (it holds {_some(names)}){note}"


def _written_name(name: str, encoding: str) -> str | None:
    """``name`` as zipfile read it (CP437, the entry having no UTF-8 flag), read in ``encoding``."""
    try:
        return name.encode("cp437").decode(encoding)
    except UnicodeError:
        return None


def local_stamp(path: str | Path) -> tuple[int, int] | None:
    """Size and mtime (ns) of the local file ``path`` (of its archive, for a member), or None
    for a path that is no local file (a URL) or cannot be read."""
    try:
        stat = (local_archive(path) or Path(path)).stat()
    except (OSError, ValueError):  # ValueError: a name with a NUL byte
        return None
    return stat.st_size, stat.st_mtime_ns


# GDAL's words for an object store's missing credentials (/vsis3/, /vsigs/, /vsiaz/, /vsioss/,
# /vsiswift/): 'AWS_SECRET_ACCESS_KEY and AWS_NO_SIGN_REQUEST configuration options not defined',
# 'Missing AZURE_STORAGE_ACCOUNT+(...) configuration options', 'Missing SWIFT_STORAGE_URL+...'.
_NO_CREDENTIALS = re.compile(r"configuration options? not defined|^Missing [A-Z_]+.*options")

# GDAL's curl layer words an HTTP failure "HTTP response code: 404" (or "... on URL: 404").
_HTTP_STATUS = re.compile(r"HTTP response code(?: on \S+)?: (\d{3})")


def remote_open_problem(message: str) -> str | None:
    """What GDAL's ``message`` about opening a remote file means, and the fix.

    GDAL reports network failures as unreadable files; their fix is not the
    file's format but the URL, the credentials or the server.

    Parameters
    ----------
    message
        The first line of GDAL's error.

    Returns
    -------
    str or None
        The problem and its fix, or None when ``message`` is no network problem.
    """
    if _NO_CREDENTIALS.search(message):
        # GDAL names the options it looked for: they are the fix, not the file's format.
        return (
            f"no credentials to read it with ({message}); set them in the environment, or for a "
            "public bucket its *_NO_SIGN_REQUEST=YES"
        )
    if "None.blob.core.windows.net" in message or "None.dfs.core.windows.net" in message:
        # rasterio's az:// session names the account 'None' when AZURE_STORAGE_ACCOUNT is unset.
        return (
            "no Azure storage account to read it from; set AZURE_STORAGE_ACCOUNT (with "
            "AZURE_STORAGE_ACCESS_KEY or AZURE_STORAGE_SAS_TOKEN, or AZURE_NO_SIGN_REQUEST=YES)"
        )
    if "Range downloading not supported" in message:
        return (
            "the server does not support HTTP Range requests, which GDAL needs to read parts of a "
            "remote file; download the file and run on the local copy"
        )
    if "URL rejected" in message:
        return (
            f"not a valid URL ({message}); percent-encode spaces and other special characters "
            "(a space is %20)"
        )
    if message.startswith("CURL error"):
        return f"the server could not be reached ({message}); check the URL and the network"
    match = _HTTP_STATUS.search(message)
    if match is None:
        return None
    status = int(match.group(1))
    if status == 404:
        return "not found on the server (HTTP 404); check the URL"
    if status in (401, 403):
        return (
            f"access denied (HTTP {status}); check the URL and the credentials "
            "(GDAL's usual AWS_*, GOOGLE_APPLICATION_CREDENTIALS, ~/.aws...)"
        )
    if status >= 500:
        return f"the server failed (HTTP {status}); try again later"
    return f"the server refused the request (HTTP {status}); check the URL"


def web_page_problem(path: str) -> str | None:
    """What is wrong when the http(s) URL ``path``, which GDAL could not read, answers
    with a web page (a login, error or preview page), or None when it does not.

    GDAL only says that the file is in no format it knows; the fix is the URL.
    """
    import urllib.request

    url = path.removeprefix("/vsicurl/")
    if urlparse(url).scheme.lower() not in ("http", "https"):
        return None
    request = urllib.request.Request(url, headers={"Range": "bytes=0-1023"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            media = response.headers.get_content_type()
            start = response.read(1024).lstrip().lower()
    except (OSError, ValueError):
        return None
    if media != "text/html" and not start.startswith((b"<!doctype html", b"<html")):
        return None
    return (
        "the server answered with a web page (HTML), not a raster; check the URL: a link to a "
        "download or preview page, a login page, or a signed URL that has expired?"
    )


VSI_SCHEMES = {"/vsis3/": "s3://", "/vsigs/": "gs://", "/vsiaz/": "az://", "/vsiadls/": "abfs://"}


def fsspec_url(path: str | Path) -> str:
    """The fsspec URL of a remote output (``/vsis3/b/k`` -> ``s3://b/k``)."""
    text = str(path)
    for prefix, scheme in VSI_SCHEMES.items():
        if text.startswith(prefix):
            return scheme + text[len(prefix) :]
    if text.startswith("/vsi"):
        raise OutputError(f"{text}: this /vsi path cannot be written to; give an s3://, gs:// or local path")
    if urlparse(text).scheme.lower() in ("http", "https"):
        # Not a missing driver: web servers take no uploads that fsspec could make.
        raise OutputError(
            f"{text}: an http(s) URL can be read but not written to; give an s3://, gs://, az:// "
            "or local path"
        )
    return text


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:
        raise OutputError(
            f"{url}: no filesystem for this URL ({exc}); install its fsspec driver (s3fs, gcsfs, adlfs)"
        ) from None


def check_driver_installed(dst: str | Path) -> None:
    """Refuse the remote output ``dst`` where fsspec's driver for it (s3fs for ``s3://``, gcsfs,
    adlfs) is not installed, before any input is read: a batch read and computed each input
    only to fail on it, with the same line for each.

    Raises
    ------
    OutputError
        No driver is installed for ``dst``'s scheme (or it is an http(s) URL: :func:`fsspec_url`).
    """
    import fsspec
    from fsspec.registry import known_implementations

    protocol = fsspec.core.split_protocol(fsspec_url(dst))[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as exc:
        package = str(known_implementations.get(protocol, {}).get("class", "")).partition(".")[0]
        fix = f"pip install {package}" if package else "install its fsspec driver"
        raise OutputError(f"{dst}: no filesystem to write this URL with ({exc}); {fix}") from None


def remote_exists(url: str | Path) -> bool:
    """True when something is at the remote ``url`` (a file, or a folder such as a Zarr store)."""
    fs, path = _filesystem(fsspec_url(url))
    return bool(fs.exists(path))


def check_remote_output(dst: str | Path, *, overwrite: bool) -> None:
    """Refuse an existing remote output without ``overwrite``, before any compute."""
    if not overwrite and remote_exists(dst):
        raise already_exists(dst)


def staging_folder(dst: str | Path) -> Path:
    """The local folder the remote output ``dst`` is written in before its upload.

    One per URL and user, not a fresh one per run: the run state beside the staged
    output is what ``--resume`` finishes after a run was killed or interrupted, and
    a fresh folder each time left it behind, never resumed (the whole scene computed
    again) and never removed.  It is in the temporary directory (``TMPDIR``).
    """
    digest = hashlib.sha256(fsspec_url(dst).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f".geosr-upload-{os.getuid()}-{digest}"


def staged_output(dst: str | Path) -> Path:
    """Where the remote output ``dst`` is written locally (:func:`staging_folder`)."""
    return staging_folder(dst) / local_name(dst)


def make_staging_folder(dst: str | Path) -> Path:
    """Create (or take again) the :func:`staging_folder` of ``dst``, private to this user.

    Raises
    ------
    OutputError
        It cannot be created, or a file, a link or another user's folder has its name
        (its name is known in advance, in a directory others write in).
    """
    folder = staging_folder(dst)
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        stat = folder.lstat()
    except OSError as exc:
        raise OutputError(
            f"{dst}: cannot create the local folder {folder} the output is written in before its "
            f"upload ({exc.strerror or exc}); set TMPDIR to a writable directory"
        ) from None
    if not folder.is_dir() or folder.is_symlink() or stat.st_uid != os.getuid():
        raise OutputError(
            f"{dst}: {folder}, where the output is written before its upload, is not a folder of "
            "yours; remove it, or set TMPDIR to another directory"
        )
    return folder


STAGING_LOCK = ".lock"
"""The file in a staging folder a run holds (``flock``) from its start to its upload: hidden,
so it is no extra output to upload."""


@contextlib.contextmanager
def staging_held(dst: str | Path) -> Iterator[Path]:
    """Within: the :func:`staging_folder` of ``dst``, made and locked for this run alone.

    Two runs to the same URL share that folder: the one that finished first removed it,
    with the run state and tiles of the other, which then failed on a missing file; now
    the second is refused while the first holds the folder.

    Raises
    ------
    OutputError
        Another geosr run holds it (or it cannot be made: :func:`make_staging_folder`).
    """
    while (fd := _lock_staging(dst, make_staging_folder(dst))) is None:
        pass  # the run that held it has just removed it: made again
    try:
        yield staging_folder(dst)
    finally:
        os.close(fd)  # releases the flock (after the folder's removal, when it is removed)


def _lock_staging(dst: str | Path, folder: Path) -> int | None:
    """Lock ``folder``'s :data:`STAGING_LOCK`: its descriptor, or ``None`` when the folder was
    removed meanwhile by the run that held it (its lock then locks nothing)."""
    lock = folder / STAGING_LOCK
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise OutputError(
            f"{dst}: cannot lock the local folder {folder} the output is written in before its "
            f"upload ({exc.strerror or exc}); set TMPDIR to a writable directory"
        ) from None
    holder = take_lock(fd)
    if holder is not None:
        raise OutputError(
            f"cannot write {dst}: another geosr run (pid {holder}) is writing it right now (in "
            f"{folder}); wait for it to finish or choose another -o path"
        )
    try:
        same = os.fstat(fd).st_ino == lock.stat().st_ino
    except FileNotFoundError:
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def remote_matches(url: str | Path, local: Path) -> bool:
    """True when the remote file at ``url`` holds exactly ``local``'s bytes (for small files:
    a STAC Item, a quicklook)."""
    fs, path = _filesystem(fsspec_url(url))
    try:
        return (
            local.is_file()
            and fs.size(path) == local.stat().st_size
            and fs.cat_file(path) == local.read_bytes()
        )
    except OSError:
        return False


def drop_sidecars(dst: str | Path, local: Path, suffixes: Sequence[str]) -> None:
    """Remove the remote files ``dst`` + each of ``suffixes`` that ``local`` has none of.

    GDAL reads an ``.aux.xml``, ``.ovr`` or ``.msk`` beside a raster with it (an ``.aux.xml``
    before the file's own keys): an output uploaded over an older one showed that one's CRS,
    as a local output did (:data:`geosr.io.atomic.STALE_SIDECARS`).
    """
    fs, path = _filesystem(fsspec_url(dst))
    for suffix in suffixes:
        try:
            if not local.with_name(local.name + suffix).exists() and fs.exists(path + suffix):
                fs.rm(path + suffix)
        except OSError as exc:
            raise OutputError(f"{dst}: removing the older {dst}{suffix} failed ({exc})") from None


def upload(local: Path, dst: str | Path) -> str:
    """Copy the finished local output (file or Zarr folder) to ``dst``; returns the URL.

    A single file arrives whole (object stores make a PUT atomic); a Zarr
    store is copied chunk by chunk, its metadata last.
    """
    url = fsspec_url(dst)
    fs, path = _filesystem(url)
    try:
        if local.is_dir():
            files = sorted(p for p in local.rglob("*") if p.is_file())
            # Metadata last: a reader never sees metadata that points at missing chunks.
            files.sort(key=lambda p: p.name in ("zarr.json", ".zmetadata", ".zarray", ".zgroup"))
            # The store this replaces (--overwrite): a Zarr output leaves out its all-nodata
            # chunks, so the older store's chunks there would show through unless removed.
            stale = set(fs.find(path)) if fs.exists(path) else set()
            for file in files:
                target = f"{path}/{file.relative_to(local).as_posix()}"
                fs.put_file(str(file), target)
                stale.discard(target)
            if stale:
                fs.rm(sorted(stale))
        else:
            fs.put_file(str(local), path)
    except OSError as exc:
        raise OutputError(f"{dst}: uploading the output failed ({exc})") from None
    return url
