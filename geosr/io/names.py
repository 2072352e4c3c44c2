"""A local path's two spellings: Python's (the OS's bytes, decoded by the file-system encoding)
and GDAL's (those bytes as UTF-8 text).

Under an ASCII locale (``LC_ALL=C`` with ``PYTHONUTF8=0``) Python decodes a non-ASCII name
such as ``scène.tif`` with surrogates (``sc\\udcc3\\udca8ne.tif``), which rasterio cannot
encode for GDAL; text read from a file (a STAC Item's href) is the other way round: GDAL
opens it, and Python's ``os`` cannot encode it.  Under a UTF-8 locale both are the same.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any


def os_name(path: str) -> str:
    """``path`` as Python's ``os`` functions take it: text it cannot encode (an href of a STAC
    Item, whose JSON is UTF-8) is read as the UTF-8 bytes it names; anything else is unchanged."""
    try:
        os.fsencode(path)
    except UnicodeEncodeError:
        return os.fsdecode(path.encode("utf-8"))
    return path


def utf8_name(path: str | Path) -> str:
    """``path`` as GDAL opens it and a JSON document shows it: the UTF-8 text of the bytes it
    names (a name Python decoded with surrogates, under an ASCII locale); a name that is not
    UTF-8 is unchanged (it is refused before any open: :func:`geosr.io.scene.not_utf8`), as is
    text Python's ``os`` cannot encode."""
    name = os.fspath(path)
    try:
        return os.fsencode(name).decode("utf-8")
    except UnicodeError:
        return name


def open_raster(path: str | Path, *args: Any, **kwargs: Any) -> Any:
    """``rasterio.open`` of ``path`` by its GDAL name (:func:`utf8_name`)."""
    import numpy as np  # not at import: the CLI's start loads no GDAL
    import rasterio

    from geosr.io import settle_block_cache

    settle_block_cache()  # geosr's bound on GDAL's cache, before GDAL's first read
    # rasterio casts a band's declared nodata to the band's type to see whether it fits: a
    # float32 band's 1e+39 printed numpy's bare 'overflow encountered in cast'.  rasterio then
    # takes the band as having no nodata, silently, as it does an integer band's -1.  numpy's
    # error state is this thread's own: no lock over the process's warning filters, which
    # serialised every open (a remote file's included) across the reading threads.
    with np.errstate(over="ignore"):
        return rasterio.open(utf8_name(path), *args, **kwargs)


def as_shown(text: str) -> str:
    """``text`` (a message naming paths) as a terminal can show it: a name Python holds with
    surrogates is its characters where its bytes are UTF-8 (``sc\\udcc3\\udca8ne.tif`` reads
    ``scène.tif``, shown ``sc\\xe8ne.tif`` on an ASCII terminal), and ``\\xNN`` for bytes that
    are not (a Latin-1 name's ``\\xe4``), as :func:`geosr.io.scene.not_utf8` shows them."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate no decoding gives (text of a caller's)
        return text


def path_bytes(path: str | Path) -> bytes:
    """The bytes ``path`` names, as the OS takes them: text Python's ``os`` cannot encode (a
    caller's, in an ASCII locale) is its UTF-8 (:func:`os_name`)."""
    return os.fsencode(os_name(os.fspath(path)))


def printable(text: str, encoding: str | None) -> str:
    """``text`` as :func:`as_shown` gives it, with what ``encoding`` (a stream's) cannot print
    escaped as Python escapes it (``scène.tif`` reads ``sc\\xe8ne.tif`` on an ASCII terminal),
    for output that is not an error line: stdout replaced each such byte with '?'."""
    shown = as_shown(text)
    codec = encoding or "utf-8"
    try:
        return shown.encode(codec, "backslashreplace").decode(codec)
    except LookupError:  # an encoding Python does not know: left to the stream
        return shown


def shell_quoted(arg: str, encoding: str | None = None) -> str:
    """``arg`` as a shell word to paste from a terminal of ``encoding`` (stderr's by default):
    :func:`shlex.quote`, unless the terminal cannot print the name, which it then escaped to
    ``sc\\xe8ne.tif``, a name no shell finds; such a word is spelt by its bytes in bash's
    ANSI-C quoting, ``$'sc\\xc3\\xa8ne.tif'`` (zsh and ksh read it too)."""
    quoted = shlex.quote(arg)
    codec = encoding or getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        as_shown(quoted).encode(codec)
    except (UnicodeEncodeError, LookupError):
        pass
    else:
        return quoted
    return "$'" + "".join(_ansi_c(byte) for byte in path_bytes(arg)) + "'"


def _ansi_c(byte: int) -> str:
    """One byte inside ``$'...'``: printable ASCII as itself, a quote and a backslash escaped,
    anything else as ``\\xNN``."""
    char = chr(byte)
    if char in "'\\":
        return "\\" + char
    return char if 0x20 <= byte < 0x7F else f"\\x{byte:02x}"
