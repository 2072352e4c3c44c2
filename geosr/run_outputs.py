"""Where a run writes: the default output name, the checks that an output may be written
(an empty or mistyped ``-o``, an input in its place, another output's STAC Item or
quicklook), and those files written beside a finished output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from geosr.errors import GeosrError, OptionError, OutputError, warn
from geosr.io.atomic import refuse_overlong_name
from geosr.io.names import open_raster, os_name
from geosr.io.remote import (
    check_driver_installed,
    file_url_path,
    fsspec_url,
    home_expanded,
    is_remote,
    is_virtual,
    local_file_text,
    local_name,
    remote_exists,
    remote_matches,
    staging_folder,
)
from geosr.io.scene import Scene, is_zarr_path, not_utf8, windows_path
from geosr.io.sink import COMPRESSIONS, SUPPORTED_SUFFIXES, TIFF_ONLY_COMPRESSIONS, OutputSpec
from geosr.options import RunOptions


def default_output(src: str | Path, scale: int, variable: str | None = None) -> Path:
    """``<input stem>_x<scale>.tif`` beside a local input; in the working folder for a URL or
    an archive member (``/vsizip/``, ``zip://``), beside which nothing can be written, and
    ``stdin_x<scale>.tif`` there for standard input (``/vsistdin/``).

    A group of a Zarr store (``product.zarr/r10m``) gives ``product_r10m_x<scale>.tif`` beside
    the store, never a file inside it, and a zipped store ``product.zarr.zip`` gives
    ``product_x<scale>.tif``, as its folder would.  A ``variable`` of a store or a netCDF
    file is named too (``ocean.nc``, ``tsm``: ``ocean_tsm_x<scale>.tif``): the runs of two
    variables of one file had one output, the second refused or, with ``--overwrite``,
    replacing the first.
    """
    src = file_url_path(src)
    p = Path(local_name(src)) if is_virtual(src) else Path(src)
    root = None if is_virtual(src) else _store_root(p)
    named = f"_{_variable_part(variable)}" if variable else ""
    if root is not None:
        group = p.absolute().relative_to(root)
        out = root.with_name(f"{Path(root.name).stem}_{'_'.join(group.parts)}{named}_x{scale}.tif")
        # Relative as the input is: the command printed /abs/path/product_r10m_x2.tif for
        # product.zarr/r10m, as it prints scene_x2.tif for scene.tif.
        return out if p.is_absolute() else Path(os.path.relpath(out))
    return p.with_name(f"{_stem(p.name, compressed=is_virtual(src))}{named}_x{scale}.tif")


def _variable_part(variable: str) -> str:
    """A variable's name as part of a file name: a path in a store (``/measurements/b02``)
    as ``measurements_b02``, never a folder."""
    return "_".join(part for part in variable.replace("\\", "/").split("/") if part)


def _stem(name: str, *, compressed: bool) -> str:
    """The stem of an input's file name: of the raster a gzipped file holds (``/vsigzip/``:
    ``a.tif.gz`` -> ``a``, which was ``a.tif_x4.tif``) and of a zipped Zarr store
    (``product.zarr.zip`` -> ``product``)."""
    lower = name.lower()
    if lower.endswith(".zarr.zip"):
        return name[: -len(".zarr.zip")]
    if compressed and lower.endswith(".gz"):
        name = name[: -len(".gz")]
    return Path(name).stem


def _store_root(path: Path) -> Path | None:
    """The Zarr store (absolute) that ``path`` is a group of, or None where it is none.

    The output went beside the group, into the store: ``product.zarr/r10m_x2.tif`` (and
    the run's hidden folder with it), a file no Zarr reader expects among the groups.
    """
    if not is_zarr_path(path):
        return None
    root = None
    for parent in path.absolute().parents:
        if not is_zarr_path(parent):
            break
        root = parent
    return root


def check_output_given(dst: str | Path | None) -> None:
    """Refuse an empty output name, as an unset shell variable gives (``-o "$OUT"``): as a
    Path it is '.', so the output went into the working folder, not where it was meant.
    Refuse too a local name ending in '/' that is no existing folder: as a Path the slash
    is dropped, so ``-o out/`` read as an output without a suffix, and ``-o a.tif/
    --overwrite`` replaced the file ``a.tif``; and a GDAL ``/vsi`` path that is not a
    remote one (``/vsimem/``, ``/vsizip/``) or a URL of no store (``zip://``, ``ftp://``), which
    no writer of geosr's can write; and a remote output whose upload driver is not installed
    (:func:`~geosr.io.remote.check_driver_installed`).

    Raises
    ------
    OptionError
        ``dst`` is an empty or blank string, names a folder that is not one, has a name over
        the 255-byte limit of a file name, is a Windows path (``C:\\out.tif``) on a system of
        no drives, or is a local ``/vsi`` path or a URL of no store.
    OutputError
        ``dst`` is a URL that cannot be written (http), or of no installed driver.
    """
    if dst is None:
        return
    text = str(dst)
    local = local_file_text(text)  # as file_url_path reads it, less the Path that drops '/'
    text = home_expanded(text) if local is None else local
    if not text.strip():
        raise OptionError(
            "--output is empty; give a .tif, a .zarr or an existing folder, or leave -o out to write "
            "<stem>_x<scale>.tif beside the input"
        )
    shown = not_utf8(text)
    if shown is not None:
        # Refused before the run: the COG's copy at its end raised UnicodeEncodeError, a traceback.
        raise OptionError(
            f"--output {shown}: the name is not UTF-8, and GDAL writes UTF-8 names only; give one"
        )
    if is_virtual(text) and not is_remote(text):
        # GDAL's in-memory files and local archives, and URLs of no store (zip://, ftp://): read
        # as a local path, the output went to a folder /vsimem or /vsizip/a.zip on disk, or
        # 'zip:/data/a.zip!', which the refusal told the user to create.
        what = "/vsi path" if text.startswith("/vsi") else f"{text.partition('://')[0]}:// URL"
        raise OptionError(
            f"--output {text}: this {what} cannot be written to; give a local path, or an s3://, "
            "gs:// or az:// URL"
        )
    if is_remote(text):
        check_driver_installed(text)
        return
    refuse_overlong_name("--output", text)
    if windows_path(text) and not Path(text[:2]).exists():
        # Taken as it is, the output was written as a file named 'C:\\data\\out.tif' in the
        # working folder, where nobody would look for it (unless a folder 'C:' is there).
        raise OptionError(
            f"--output {text}: a Windows path (a drive letter), which names no place here; give the "
            "output's path on this system"
        )
    folder = Path(text)
    # A Zarr store is a folder: 'out.zarr/' (as the shell completes one) names the store.
    if not text.endswith("/") or folder.is_dir() or folder.suffix.lower() == ".zarr":
        return
    if folder.exists():
        raise OptionError(
            f"--output {text}: {folder} is a file, not a folder; drop the '/' to write that file "
            "(with --overwrite), or give a folder"
        )
    if folder.suffix.lower() in SUPPORTED_SUFFIXES:
        # A raster's name with a stray '/' (as a shell completes a folder): the line said to
        # create a folder 'out.tif', to write scene_x4.tif into it.
        raise OptionError(
            f"--output {text}: no such folder, and {folder.name} is the name of a raster; drop the '/' "
            f"to write {folder}, or create the folder first (mkdir -p {folder})"
        )
    raise OptionError(f"--output {text}: no such folder; create it first (mkdir -p {folder}) or give a .tif")


def _names_a_zarr_store(dst: Path | str) -> bool:
    """Whether the output ``dst`` (a path or URL, a folder's trailing '/' too) is a Zarr store."""
    return str(dst).lower().rstrip("/").endswith(".zarr")


def check_zarr_format_applies(dst: Path | str, zarr_format: int | None) -> None:
    """Refuse a ``--zarr-format`` for an output that is no ``.zarr``: taken silently, it wrote
    a COG where the user asked for Zarr v2.

    Raises
    ------
    OptionError
        ``zarr_format`` is given and ``dst`` does not end in ``.zarr``.
    """
    if zarr_format is not None and not _names_a_zarr_store(dst):
        raise OptionError(
            f"--zarr-format {zarr_format} is for a .zarr output, and {dst} is a COG; "
            f"write to a .zarr (e.g. {Path(str(dst)).with_suffix('.zarr').name}) or leave --zarr-format out"
        )


def check_compress_applies(dst: Path | str, compress: str) -> None:
    """Refuse a ``--compress`` that a ``.zarr`` output has no codec for (LZW, a TIFF compression).

    Raises
    ------
    OptionError
        ``compress`` is one of :data:`~geosr.io.sink.TIFF_ONLY_COMPRESSIONS` and ``dst`` ends in ``.zarr``.
    """
    if compress in TIFF_ONLY_COMPRESSIONS and _names_a_zarr_store(dst):
        zarr_ones = [c for c in COMPRESSIONS if c not in TIFF_ONLY_COMPRESSIONS]
        raise OptionError(
            f"--compress {compress!r} is a TIFF compression, and {dst} is a Zarr store; use "
            f"{', '.join(zarr_ones[:-1])} or {zarr_ones[-1]} for it, or write a .tif"
        )


def extra_files(dst: Path, opts: RunOptions) -> list[tuple[Path, str]]:
    """The ``--stac`` Item and ``--quicklook`` PNG the run writes beside ``dst``, and what each is.

    Each module is imported only when its file is asked for: together with pystac
    they took 50-75 ms of every run's time.
    """
    extras = []
    if opts.stac:
        from geosr.stac import item_path

        extras.append((item_path(dst), "STAC Item"))
    if opts.quicklook:
        from geosr.quicklook import quicklook_path

        extras.append((quicklook_path(dst), "quicklook"))
    return extras


def refuse_overwriting_inputs(
    dst: Path,
    src: str | Path,
    scene: Scene,
    frames: tuple[Scene, ...],
    extras: Sequence[tuple[Path, str]] = (),
) -> None:
    """Refuse an output that is one of the run's inputs, even with ``--overwrite``.

    The input, a Zarr store as much as a file, the raster a STAC Item's asset
    names, and every ``--frame``: ``--overwrite`` replaces an earlier output, never
    the data the run reads.  The run's ``extras`` (:func:`extra_files`) count too:
    ``geosr run scene.stac.json -o scene.tif --stac --overwrite`` replaced the input
    Item with the output's.

    A folder that holds one of them counts too: the Zarr store of an input given as
    a group of it (``product.zarr/r10m``), whose other groups would go with it; and so do
    the files GDAL reads for them (:func:`read_files`), a VRT's sources.

    An output inside one of them (``in.zarr -o in.zarr/x2.zarr``) is refused as well: its
    files, and the run's hidden state beside it, changed the store as it was read, and the
    whole run ended in "the file changed while it was read (another program wrote to it)".

    Raises
    ------
    OptionError
        ``dst`` resolves to one of them, to a folder above one, or into a folder one of them is.
    """
    read = [("input", scene), *(("frame", f) for f in frames)]
    named = [("input", str(src)), *((what, s.path) for what, s in read)]
    named += [(f"{what}'s source file", path) for what, s in read for path in read_files(s)]
    for written, kind in ((dst, "output"), *extras):
        found = overwritten_input(written, named)
        if found is not None:
            what, path = found
            suffix = "" if path == str(src) and Path(path).resolve() == written.resolve() else f" {path}"
            raise OptionError(
                f"{written}: the {kind} would overwrite the {what}{suffix}; choose another -o path"
            )
        holder = input_holding(written, named)
        if holder is not None:
            what, path = holder
            raise OptionError(
                f"{written}: the {kind} would be written inside the {what} {path}, a folder the run "
                "reads, which would change as it is read; choose an -o path outside it"
            )


def read_files(scene: Scene) -> list[str]:
    """The local files GDAL reads for ``scene`` besides its path: a VRT's sources, sidecars
    (``.aux.xml``, ``.ovr``, a world file); none for a Zarr store or a remote raster.

    ``geosr run mosaic.vrt -o part.tif --overwrite`` replaced the VRT's source ``part.tif``
    with the output, which the VRT then read as a corrupt part of itself: the data was lost.
    """
    if scene.is_zarr or is_remote(scene.path):
        return []
    from rasterio.errors import RasterioError

    try:
        with open_raster(scene.subdataset or scene.path) as src:
            files = list(src.files)
    except RasterioError:  # opened once already: read_sample says what is wrong with it
        return []
    return [os_name(path) for path in files if not is_remote(path)]


def overwritten_input(written: Path, named: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The first ``(what, path)`` of ``named`` that writing ``written`` would replace: the same
    file, or one inside it (``written`` a folder, a Zarr store); a remote path never is.
    ``geosr run`` and ``geosr compare`` both refuse to write over what they read."""
    target = written.resolve()
    for what, path in named:
        if is_remote(path):
            continue
        resolved = Path(os_name(path)).resolve()
        if resolved == target or target in resolved.parents:
            return what, path
    return None


def input_holding(written: Path, named: Sequence[tuple[str, str]]) -> tuple[str, str] | None:
    """The first ``(what, path)`` of ``named`` that is a local folder (a Zarr store or group)
    holding ``written``, or None."""
    target = written.resolve()
    for what, path in named:
        if is_remote(path):
            continue
        folder = Path(os_name(path)).resolve()
        if folder in target.parents and folder.is_dir():
            return what, path
    return None


def check_extras_free(dst: Path | str, opts: RunOptions) -> None:
    """Refuse, before any work, to replace the STAC Item or quicklook of another output.

    ``--stac`` and ``--quicklook`` name their files by the output's stem, which a
    COG and a Zarr output of one scene share (``x_x4.tif``, ``x_x4.zarr``): when
    ``dst`` is not there yet, an existing one describes that other output, and is
    replaced only with ``--overwrite``, as the output itself would be.  A remote
    output's (a URL) are uploaded beside it: they are looked for there.

    A folder of that name is refused even with ``--overwrite``, which replaces files only:
    the run was computed whole, then failed on the file's temporary ('Is a directory').

    Raises
    ------
    OutputError
        One of them exists and ``opts.overwrite`` is false, or is a folder.
    """
    remote = isinstance(dst, str) and is_remote(dst)
    name = local_name(str(dst)) if remote else Path(dst).name
    for path, what in extra_files(Path(name), opts):
        extra = path.name
        if not remote and _is_folder(Path(dst).with_name(extra)):
            raise OutputError(
                f"{Path(dst).with_name(extra)} is a folder, where the {what} of {name} goes; "
                "--overwrite replaces files only: move the folder away, or choose another -o name"
            )
        if opts.overwrite:
            continue
        if remote:
            where: str | Path = f"{fsspec_url(str(dst)).rsplit('/', 1)[0]}/{extra}"
            # One this job uploaded before its output's upload failed is its own: its copy
            # is still staged (the refusal blocked the --resume that uploads the output).
            staged = staging_folder(str(dst)) / extra
            taken = remote_exists(str(where)) and not remote_matches(str(where), staged)
        else:
            where = Path(dst).with_name(extra)
            taken = where.exists() or where.is_symlink()
        if taken:
            raise OutputError(
                f"{where} already exists (the {what} of another output named {Path(name).stem}?); "
                "pass --overwrite to replace it, or choose another -o name"
            )


def write_extras(
    src: str | Path,
    scene: Scene,
    out: Path,
    opts: RunOptions,
    model_name: str,
    *,
    missing_only: bool = False,
    frames: tuple[Scene, ...] = (),
) -> None:
    """What ``--stac`` and ``--quicklook`` ask for, beside the finished output
    (``missing_only``: those not there yet, for a finished output that is kept;
    ``frames``: those the model fused, which the Item links to)."""
    if opts.stac:
        from geosr.stac import item_path, write_item

        item = item_path(out)
        _write_extra(
            out,
            item,
            missing_only,
            opts.overwrite,
            lambda: write_item(
                out,
                source=src,
                scene=scene,
                model=model_name,
                scale=opts.scale,
                frames=tuple(f.path for f in frames),
            ),
        )
    if opts.quicklook:
        from geosr.quicklook import quicklook_path, write_compare

        png = quicklook_path(out)
        _write_extra(out, png, missing_only, opts.overwrite, lambda: write_compare(scene, out, png))


def _write_extra(
    out: Path, path: Path, missing_only: bool, overwrite: bool, write: Callable[[], object]
) -> None:
    """``write()`` the file ``path`` beside the finished output ``out``, unless ``missing_only``
    and it is there; a failure says that ``out`` is finished and how to get the rest.

    A link to nothing is no file written there, yet no missing one either: it is replaced
    only with ``overwrite``, as a fresh run's :func:`check_extras_free` has it.
    """
    if _is_folder(path):  # taken for a written file by --resume, which then wrote nothing
        raise OutputError(
            f"{out} is written, but {path.name} is not: {path} is a folder; move it away and rerun "
            "the same command with --resume, which writes only what is missing"
        )
    if missing_only and not overwrite and path.is_symlink() and not path.exists():
        # exists() follows the link: --resume took the dangling link for a missing file and
        # replaced it without a word, where a fresh run refuses it without --overwrite.
        raise OutputError(
            f"{out} is written, but {path.name} is not: {path} is a link to nothing; remove it, "
            "or pass --overwrite to replace it, and rerun the same command with --resume"
        )
    if missing_only and path.exists():
        return
    try:
        write()
    except GeosrError as exc:
        reason = str(exc).removeprefix(f"{path}: ").removeprefix(f"{path.name}: ")
        raise OutputError(
            f"{out} is written, but {path.name} is not: {reason}; fix that and rerun the same "
            "command with --resume, which writes only what is missing"
        ) from None


def _is_folder(path: Path) -> bool:
    """Whether ``path`` is a folder (not a link to one), which no small file written there replaces."""
    return path.is_dir() and not path.is_symlink()


def warn_rpcs_left_out(src: str | Path, dst: Path, spec: OutputSpec) -> None:
    """Say that a Zarr output goes without the input's RPCs, which a COG carries (rescaled to
    its pixels): GDAL's Zarr driver keeps no RPCs, and they were dropped without a word."""
    if spec.rpcs and is_zarr_path(dst):
        warn(
            f"{src}: the raster's RPCs are not written to {dst} (a Zarr store holds none); the output "
            "is placed by its geotransform alone: write a .tif to keep them"
        )
