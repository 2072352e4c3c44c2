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

from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

REMOTE_SCHEMES = ("http", "https", "s3", "gs", "gcs", "az", "azure", "abfs", "oss", "swift")


def is_remote(path: str | Path) -> bool:
    """True for URLs GDAL opens remotely and for ``/vsi*`` paths other than local archives."""
    text = str(path)
    if text.startswith("/vsi"):
        return not text.startswith(("/vsizip//", "/vsitar//", "/vsigzip//", "/vsimem/"))
    return urlparse(text).scheme.lower() in REMOTE_SCHEMES


def local_name(path: str | Path) -> str:
    """The file name of a remote path (``https://host/a/scene.tif?x=1`` -> ``scene.tif``)."""
    text = str(path)
    name = PurePosixPath(urlparse(text).path if "://" in text else text).name
    return name or "remote"
