"""Atomic output: temporaries beside the destination, checks up front, rename at the end.

Every writer in geosr follows the same life cycle so that a partial output never
sits at the destination path:

1. :func:`check_writable` before any compute starts (the run fails in a second,
   not after an hour of inference);
2. write into a hidden :func:`temporary_sibling` in the destination's directory
   (same file system, so the final rename is atomic and needs no copy);
3. :func:`replace_atomically` into place at commit, or :func:`remove_path` on
   abort.

Temporaries carry :data:`TMP_MARKER` in their name so that a crashed run's
leftovers are recognisable (``.scene_x4.tif.geosr-tmp-1234-abcd.tif``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import os
import re
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from geosr.errors import OptionError, OutputError
from geosr.interrupts import signals_held

try:
    import resource
except ImportError:  # pragma: no cover - Windows has no file-size limit to honour
    resource = None  # type: ignore[assignment]

TMP_MARKER = ".geosr-tmp-"
"""Part of the name of every temporary file or directory geosr writes."""

# How a full disk (or a file-size limit, or a quota) shows up: as an errno from
# Python and zarr, as message text from GDAL (which does not pass errno on).
_SPACE_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}
_SPACE_WORDS = re.compile(r"no space|disk space|file too large|quota|short write", re.IGNORECASE)


def temporary_sibling(destination: Path, suffix: str, *, directory: bool = False) -> Path:
    """Create an empty, uniquely named, hidden file or directory beside ``destination``.

    Parameters
    ----------
    destination : Path
        The final output path; the temporary goes into its parent directory.
    suffix : str
        Ending of the temporary's name (``".tif"``, ``".zarr"``), so that drivers
        that look at the extension behave.
    directory : bool
        Create a directory instead of a file.

    Returns
    -------
    Path
        The temporary, already created (exclusively: two writers never share one).

    Raises
    ------
    OutputError
        The directory does not accept new files.
    """
    prefix = f".{destination.name}{TMP_MARKER}{os.getpid()}-"
    parent = destination.parent
    try:
        if directory:
            path = Path(tempfile.mkdtemp(suffix=suffix, prefix=prefix, dir=parent))
        else:
            fd, name = tempfile.mkstemp(suffix=suffix, prefix=prefix, dir=parent)
            os.close(fd)
            path = Path(name)
        # mkstemp/mkdtemp make private (0600/0700) entries, and the rename keeps
        # the mode: give the output the permissions any new file would get.
        path.chmod((0o777 if directory else 0o666) & ~process_umask())
    except OSError as exc:
        raise OutputError(
            f"cannot write {destination}: creating a temporary file in {parent} failed "
            f"({exc.strerror or exc}); check the directory's permissions and free space"
        ) from None
    return path


def process_umask() -> int:
    """The process's umask, read without changing it where the OS allows (Linux): setting it
    and back, another thread's file made in between gets the mode set."""
    try:
        with Path("/proc/self/status").open() as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not atomic, but brief)
    os.umask(mask)
    return mask


def already_exists(destination: str | Path) -> OutputError:
    """The refusal of an existing output without ``--overwrite``: one line for every command
    (geosr compare's and a remote output's said only "x exists; ...")."""
    return OutputError(f"{destination} already exists; pass --overwrite to replace it")


def check_writable(destination: Path, overwrite: bool) -> None:
    """Fail fast, with one clear line, when ``destination`` cannot be written.

    Parameters
    ----------
    destination : Path
        The final output path.
    overwrite : bool
        Whether an existing ``destination`` may be replaced (at commit time only).

    Raises
    ------
    OutputError
        The parent directory is missing, not a directory or not writable, or the
        destination exists and ``overwrite`` is false.
    """
    parent = destination.parent
    if not parent.exists():
        raise OutputError(
            f"cannot write {destination}: directory {parent} does not exist; "
            "create it first or choose another output path"
        )
    if not parent.is_dir():
        raise OutputError(
            f"cannot write {destination}: {parent} is not a directory; choose another output path"
        )
    refuse_kernel_file_system(destination)
    # First: "pass --overwrite to replace it" sent the user to this refusal.
    refuse_foreign_directory(destination)
    # is_symlink too: a dangling link "does not exist" but would still be clobbered.
    if (destination.exists() or destination.is_symlink()) and not overwrite:
        raise already_exists(destination)
    # os.access answers for the real user; root passes it everywhere except on a
    # read-only mount, which is why the sinks also create their temporary right away.
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {destination}: {_why_not_writable(parent)}")


def unwritable_folder(folder: Path) -> str | None:
    """Why new files cannot go into ``folder``, which is made with its parents when missing,
    or None where they can: the nearest part of it that exists is no directory, or refuses
    new files.  Root passes :func:`os.access` except on a read-only mount, so a writer still
    handles its own failure."""
    existing = folder
    while not (existing.exists() or existing.is_symlink()) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    kernel = kernel_file_system(existing)
    if kernel is not None:  # the reason alone: the caller names the option to change
        return on_kernel_file_system(existing, kernel)
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is {'on a read-only file system' if _read_only(existing) else 'not writable'}"
    return None


KERNEL_FILE_SYSTEMS = frozenset(
    {
        "autofs", "binfmt_misc", "bpf", "cgroup", "cgroup2", "configfs", "debugfs", "devpts",
        "efivarfs", "fusectl", "mqueue", "nsfs", "proc", "pstore", "securityfs", "sysfs", "tracefs",
    }
)  # fmt: skip
"""The types of the file systems through which Linux shows its own state (/proc, /sys), which
hold no files of a user's."""


def kernel_file_system(directory: Path) -> str | None:
    """The type of the kernel's file system ``directory`` is on (``proc``, ``sysfs``), or None.

    Root passes :func:`os.access` there, so an output under /proc was let through to be told
    '0 B are free in /proc; free some space' (:func:`geosr.resources.check`), or 'No such file
    or directory' for its temporary.  Only a file system of no blocks (statvfs) is looked up in
    the mount table: one that holds files has some.
    """
    try:
        if os.statvfs(directory).f_blocks:
            return None
        table = Path("/proc/self/mounts").read_text(encoding="utf-8", errors="surrogateescape")
    except (OSError, AttributeError):  # no statvfs (Windows), no mount table (macOS)
        return None
    path = os.path.realpath(directory)
    # The deepest mount point holding the path; the table writes a space in a name as \040.
    fields = [line.split() for line in table.splitlines()]
    types = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), f[1]): f[2] for f in fields if len(f) > 2}
    points = [m for m in types if path == m or path.startswith(m.rstrip("/") + "/")]
    kind = types[max(points, key=len)] if points else None
    return kind if kind in KERNEL_FILE_SYSTEMS else None


def on_kernel_file_system(directory: Path, kind: str) -> str:
    """Why a folder on the kernel's file system ``kind`` (:func:`kernel_file_system`) takes no output."""
    return f"{directory} is on the kernel's {kind} file system, no place for files"


def no_place_for_files(directory: Path, kind: str) -> str:
    """:func:`on_kernel_file_system`, and the fix."""
    return f"{on_kernel_file_system(directory, kind)}; choose a folder on a disk"


def refuse_kernel_file_system(destination: Path) -> None:
    """Refuse an output whose folder is on the kernel's file system (:func:`kernel_file_system`).

    Raises
    ------
    OutputError
        ``destination``'s folder is under /proc, /sys or the like.
    """
    kind = kernel_file_system(destination.parent)
    if kind is not None:
        raise OutputError(f"cannot write {destination}: {no_place_for_files(destination.parent, kind)}")


def _why_not_writable(directory: Path) -> str:
    """Why a directory refuses new files, and the fix: no permission can make a read-only
    mount (a dataset share, a container's image) writable."""
    if _read_only(directory):
        return f"directory {directory} is on a read-only file system; choose an output path on a writable one"
    return f"directory {directory} is not writable; fix its permissions or choose another output path"


def _read_only(directory: Path) -> bool:
    """Whether ``directory`` is on a file system mounted read-only."""
    try:
        return bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False


SIBLING_NAME_EXTRA = len(f".{TMP_MARKER}{9999999}-xxxxxxxx.zarr.ovr.tmp")
"""Bytes the longest name geosr (and GDAL) writes beside an output adds to the output's
name: a temporary, ``.<name>.geosr-tmp-<pid>-<8 random>.tif`` (or ``.zarr``), with a
GDAL side file's ending (``.ovr.tmp``); the pid has at most 7 digits on Linux."""


def check_name_length(destination: Path) -> None:
    """Refuse, before any compute, an output whose hidden siblings' names would be too long.

    Its run state (``.<name>.geosr-run``) and temporaries add up to
    :data:`SIBLING_NAME_EXTRA` bytes to its name: a name of 230 bytes ran every tile, then
    failed the COG build ('File name too long') with advice to free space and resume,
    which failed the same way.
    """
    try:
        limit = os.pathconf(destination.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = NAME_MAX
    length = len(os.fsencode(destination.name))
    if length + SIBLING_NAME_EXTRA > limit:
        raise OutputError(
            f"cannot write {destination}: its name is {length} bytes, and the temporaries geosr "
            f"writes beside it add {SIBLING_NAME_EXTRA}, over the {limit}-byte limit of a file name "
            f"there; choose an output name of at most {limit - SIBLING_NAME_EXTRA} bytes with -o"
        )


NAME_MAX = 255
"""Bytes a file name may have on every file system Linux mounts by default."""


def overlong_name(path: str) -> str | None:
    """What is wrong with a local ``path`` one of whose names (a folder's or the file's) is
    over :data:`NAME_MAX` bytes, or None: asked about it, the OS raises 'File name too long',
    which reached the user as a traceback.  A URL or ``/vsi`` path is its store's to judge."""
    if "://" in path or path.startswith("/vsi"):
        return None
    for part in Path(path).parts:
        size = len(os.fsencode(part))
        if size > NAME_MAX:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            return f"the name {shown} is {size} bytes, over the {NAME_MAX}-byte limit of a file name"
    return None


def refuse_overlong_name(option: str, path: str) -> None:
    """Refuse (:class:`OptionError`) the path an ``option`` gives when one of its names is too
    long to exist (:func:`overlong_name`), in one line, before the OS's traceback."""
    overlong = overlong_name(path)
    if overlong is not None:
        raise OptionError(f"{option} {path}: {overlong}; choose a shorter one")


ZARR_MARKERS = ("zarr.json", ".zgroup", ".zarray")
"""Files at the top of a Zarr store (v3, v2 group, v2 array)."""


def enclosing_zarr_store(path: Path) -> Path | None:
    """The Zarr store (or group) a folder above ``path`` is, the nearest first; None if none is.

    The path is normalised first: ``st.zarr/../out.tif`` is beside the store, not in it.
    """
    for folder in Path(os.path.abspath(path)).parents:  # noqa: PTH100  (resolve would follow links)
        if any((folder / marker).exists() for marker in ZARR_MARKERS):
            return folder
    return None


def refuse_foreign_directory(destination: Path) -> None:
    """Refuse (:class:`OutputError`) a ``destination`` that is a folder of other files, which
    no ``--overwrite`` replaces."""
    if is_foreign_directory(destination):
        raise OutputError(
            f"{destination} is a directory of other files, not a Zarr store; --overwrite replaces "
            "an earlier output, never a folder it did not write: move it or choose another output path"
        )


def is_foreign_directory(path: Path) -> bool:
    """Whether ``path`` is a directory holding files but no Zarr store, which replacing it would delete."""
    if not path.is_dir() or path.is_symlink() or not any(path.iterdir()):
        return False
    return not any((path / marker).exists() for marker in ZARR_MARKERS)


PAM_SUFFIX = ".aux.xml"
"""GDAL's sidecar beside a raster for what its format cannot hold (GDAL's PAM)."""

STALE_SIDECARS = (PAM_SUFFIX, ".ovr", ".msk")
"""Files GDAL reads with a raster of the name before its own content (the ``.aux.xml``'s
CRS and statistics) or in its absence (overviews, mask): an output replaced takes its own
with it, as ``gdal_translate`` over an existing file does; a Zarr store as much as a COG
(GDAL keeps a store's statistics in ``out.zarr.aux.xml``)."""


def remove_stale_sidecars(destination: Path, keep: Sequence[str] = ()) -> None:
    """Remove the :data:`STALE_SIDECARS` of an output just put at ``destination``, but those
    of the suffixes in ``keep`` (the ones written with it)."""
    for suffix in STALE_SIDECARS:
        if suffix not in keep:
            remove_path(destination.with_name(destination.name + suffix))


REMOVAL_THREADS = 8
"""Threads that unlink a directory tree's files (:func:`remove_path`)..."""

REMOVAL_THREADED_FILES = 4096
"""...when it holds this many files or more."""


def remove_path(path: Path) -> None:
    """Remove a file or a directory tree; never raises (it runs while cleaning up)."""
    try:
        if path.is_dir() and not path.is_symlink():
            _unlink_files(path)
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        # A second pass for a tree that changed under rmtree; whatever still
        # fails is not worth replacing the error that made us clean up.
        shutil.rmtree(path, ignore_errors=True)


def _unlink_files(tree: Path) -> None:
    """Unlink the files under ``tree`` in :data:`REMOVAL_THREADS` threads (the folders stay).

    A COG's run store is tens of thousands of chunk files, and an unlink waits on the file
    system, not the CPU, with the GIL released.  On the 2-core EPYC here, 8 threads removed
    6,000 files of 512 KiB in 0.61 s against 0.98 s; on an H200 machine, figure 9's store
    (39,000 files, 20 GB) took 9.5 s in 8 threads, about 12 s in one (read off the host's
    samples), waiting on the disk (benchmarks/gpu/RESULTS.md).  Errors are left to the
    ``rmtree`` that follows.
    """
    files = _files_under(tree)
    if len(files) < REMOVAL_THREADED_FILES:
        # rmtree alone: the 1,100 files of an 8192^2 x 4-band run store took 0.09-0.12 s
        # here, and 0.15-0.20 s in threads.
        return

    def unlink(path: Path) -> None:
        with contextlib.suppress(OSError):
            path.unlink()

    with ThreadPoolExecutor(REMOVAL_THREADS, thread_name_prefix="geosr-remove") as pool:
        for _ in pool.map(unlink, files, chunksize=64):
            pass


def remove_with_sidecars(path: Path) -> None:
    """Remove ``path`` and every sibling whose name extends it.

    GDAL leaves such files next to the one it writes (``.ovr.tmp`` while the COG
    driver builds overviews, ``.aux.xml`` for metadata GTiff cannot hold); the
    temporaries' names are unique, so the prefix matches nothing else.
    """
    remove_path(path)
    for sibling in path.parent.glob(glob.escape(path.name) + ".*"):
        remove_path(sibling)


def replace_atomically(tmp: Path, destination: Path) -> None:
    """Move the finished temporary ``tmp`` to ``destination``, replacing what is there.

    ``tmp`` is synced to the disk first and the directory after the rename, so
    that once this returns (and a run deletes the state it could resume from)
    a machine crash cannot leave the destination empty or cut short.

    A file replacing a file (the COG case) is one ``os.replace``: readers see the
    old or the new file, never a mix.  POSIX cannot swap directories atomically,
    so a directory (a Zarr store) or a change of kind first moves the old output
    aside, renames the new one in, and only then deletes the old one; if the
    rename fails, the old output is put back.

    Raises
    ------
    OutputError
        The sync or the rename failed; the old destination, if any, is left in place.
    """
    try:
        sync_to_disk(tmp)
    except OSError as exc:
        raise OutputError(describe_write_failure(destination, exc, None)) from None
    try:
        _replace(tmp, destination)
    finally:
        with contextlib.suppress(OSError):  # the rename is done; this only makes it durable sooner
            sync_to_disk(destination.parent, tree=False)


def write_small_file(path: Path, write: Callable[[Path], object], what: str) -> Path:
    """Write the small file ``path`` (a STAC Item, a PNG) whole: ``write`` fills a
    temporary beside it, which then replaces it, so that a failure never leaves it cut
    short.  A file replaces a file, never a folder of that name (unlike
    :func:`replace_atomically`, which replaces an output's Zarr folder).

    Raises
    ------
    OutputError
        ``write`` or the rename failed (a folder of that name, a full disk); the
        temporary is removed.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException as exc:
        # Any failure, Ctrl-C in a large PNG's savefig too (it left the temporary behind).
        # On a read-only file system the temporary was never made, and removing it fails
        # too (EROFS, not ENOENT): that second error was a traceback in place of this line.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OutputError(f"{path}: cannot write the {what} ({exc})") from None
        raise
    return path


WRITEBACK_SECONDS = 1.0
"""How often :func:`written_back_meanwhile` syncs what is being written."""


@contextlib.contextmanager
def written_back_meanwhile(path: Path, every: float = WRITEBACK_SECONDS) -> Iterator[None]:
    """Sync ``path`` to disk every ``every`` seconds while inside, in a thread: the file, or
    every file under the directory (a Zarr store) that changed since it was last synced.

    For what :func:`replace_atomically` syncs before its rename, and the kernel writes back
    little of before then (its threshold is a tenth of the memory).  Synced as it grows,
    the disk writes while GDAL compresses a COG, or while the model computes a Zarr
    output's tiles.  On the 2-core EPYC here, the sync before the rename of an 8192^2 x
    4-band COG took 0.03-0.07 s against 0.39-0.59 s, and GDAL's copy no longer (3.97-4.45 s
    against 4.52-4.62 s); on an H200 machine, figure 9's (11 GB) took 0.0 s against about
    6 s, the copy 30 s against about 23 s on a busier host (benchmarks/gpu/RESULTS.md).  A
    bicubic x4 job of a 2048^2 x 4-band scene into Zarr (3 interleaved pairs): the sync before
    the rename 0.32-0.45 s against 0.91-1.01 s, the tiles 5.68-6.25 s against 5.44-5.79 s.  A
    file system that cannot sync is left to the final sync, which reports it.
    """
    stop = threading.Event()
    synced: dict[Path, tuple[int, int]] = {}

    def loop() -> None:
        try:
            while not stop.wait(every):
                for file in _files_under(path):
                    try:
                        found = file.stat()
                        state = (found.st_mtime_ns, found.st_size)
                        if synced.get(file) != state:
                            _sync_file(file)
                            synced[file] = state
                    except FileNotFoundError:
                        continue  # not made yet, or renamed away (a chunk's temporary)
        except OSError:
            return

    thread = threading.Thread(target=loop, name="geosr-writeback", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _files_under(path: Path) -> list[Path]:
    """``path`` if it is a file, the files under it if it is a directory, else none."""
    if path.is_dir():
        return [Path(root) / name for root, _, names in os.walk(path) for name in names]
    return [path] if path.exists() else []


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        getattr(os, "fdatasync", os.fsync)(fd)
    finally:
        os.close(fd)


def sync_to_disk(path: Path, *, tree: bool = True) -> None:
    """``fsync`` the file ``path``, or the directory ``path`` and (``tree``) everything under it.

    A file system that cannot sync (``EINVAL``: some FUSE and network mounts) is
    left to its own guarantees; a failed write-back (``EIO``, ``ENOSPC``) raises.
    """
    paths = [path]
    if tree and path.is_dir():
        for root, dirs, files in os.walk(path):
            paths.extend(Path(root) / name for name in (*files, *dirs))
    for item in reversed(paths):  # children before the directories that name them
        fd = os.open(item, os.O_RDONLY)
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
                raise
        finally:
            os.close(fd)


def _replace(tmp: Path, destination: Path) -> None:
    try:
        dest_is_dir = destination.is_dir() and not destination.is_symlink()
        dest_exists = destination.exists() or destination.is_symlink()
        if not dest_exists or not (dest_is_dir or tmp.is_dir()):
            tmp.replace(destination)
            return
        aside = Path(tempfile.mkdtemp(prefix=f".{destination.name}{TMP_MARKER}old-", dir=destination.parent))
        old = aside / destination.name
        try:
            # A Ctrl-C between the two renames left the old output hidden in ``aside`` (then
            # deleted) and the new one not in place: it takes effect once both are done.
            with signals_held():
                destination.replace(old)
                try:
                    tmp.replace(destination)
                except OSError:
                    old.replace(destination)
                    raise
        finally:
            # The old output is garbage now (or was put back, leaving ``aside`` empty).
            remove_path(aside)
    except OSError as exc:
        raise OutputError(
            f"cannot move the finished output into place at {destination} "
            f"({exc.strerror or exc}); check permissions of {destination.parent}"
        ) from None


def free_bytes(directory: Path) -> int | None:
    """Bytes one new file in ``directory`` can grow to, or None if unknown.

    The free space of the file system available to this user, capped by the
    process's file-size limit (``ulimit -f``), which fails writes the same way.
    """
    try:
        stat = os.statvfs(directory)
    except (OSError, AttributeError):
        return None
    free = stat.f_bavail * stat.f_frsize
    if resource is not None:
        soft_limit, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft_limit != resource.RLIM_INFINITY:
            free = min(free, soft_limit)
    return free


def format_bytes(n: float) -> str:
    """Human-readable size, e.g. ``'3.2 GiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


def space_report(directory: Path, needed: int | None) -> str:
    """``"; the output needs up to X uncompressed and Y are free in DIR"``, or ``""``."""
    free = free_bytes(directory)
    if needed is None or free is None:
        return ""
    return (
        f"; the output needs up to {format_bytes(needed)} uncompressed and "
        f"{format_bytes(free)} are free in {directory}"
    )


def describe_write_failure(destination: Path, exc: BaseException, needed: int | None) -> str:
    """One line for a failed write: the path, the cause, the sizes when known, a fix.

    Parameters
    ----------
    destination : Path
        The output being written.
    exc : BaseException
        What the OS, GDAL or zarr raised.  rasterio wraps GDAL's message in a
        generic one ("Write failed. See previous exception"), so the first
        specific message along the exception chain is used.
    needed : int or None
        Upper bound of the output's size in bytes (uncompressed), when known.
    """
    return str(WriteError(destination, *_failure_cause(exc), needed))


def _failure_cause(exc: BaseException) -> tuple[str, bool]:
    """What a failed write's exception chain says (its first specific message, else the type's
    name), and whether it says the space ran out."""
    reason = ""
    is_space = False
    seen: BaseException | None = exc
    for _ in range(8):  # the chain is short; a bound guards against cycles
        if seen is None:
            break
        text = (getattr(seen, "strerror", None) or str(seen)).strip()
        if text and not reason and "previous exception" not in text:
            reason = text.splitlines()[0]
        if isinstance(seen, OSError) and seen.errno in _SPACE_ERRNOS:
            is_space = True
        is_space = is_space or bool(_SPACE_WORDS.search(text))
        seen = seen.__cause__ or seen.__context__
    return reason or type(exc).__name__, is_space


class WriteError(OutputError):
    """A failed write, told as :func:`describe_write_failure` tells it, which can be told again
    with the free space measured anew (:meth:`told_now`).

    A run that finished no tile removes its store after the write failed: the line, made
    before, said "168.0 KiB are free" of a disk with 3 MiB free once the store's partial
    chunks were gone.
    """

    def __init__(self, destination: Path, reason: str, is_space: bool, needed: int | None) -> None:
        self.destination, self.reason, self.is_space, self.needed = destination, reason, is_space, needed
        message = f"cannot write {destination}: {reason}"
        # GDAL rarely says "disk full" (libtiff prints that to stderr only), so the
        # sizes are given whenever known: they show at once whether space is the cause.
        message += space_report(destination.parent, needed)
        free = free_bytes(destination.parent)
        if is_space or (needed is not None and free is not None and free < needed):
            message += "; free some space or write to another directory"
        else:
            message += f"; check that {destination.parent} is writable and has free space"
        super().__init__(message)

    def __reduce__(self) -> tuple[Any, ...]:
        # From a Dask worker to the client: its line as the worker told it (the worker's
        # disk, which the client may not see), and its parts for telling it again.
        return _told, (str(self), self.destination, self.reason, self.is_space, self.needed)

    def told_now(self) -> WriteError:
        """The same failure, with the free space as it is now."""
        return WriteError(self.destination, self.reason, self.is_space, self.needed)


def _told(message: str, destination: Path, reason: str, is_space: bool, needed: int | None) -> WriteError:
    """A :class:`WriteError` unpickled: its ``message`` as told where it was raised."""
    error = WriteError.__new__(WriteError)
    error.destination, error.reason, error.is_space, error.needed = destination, reason, is_space, needed
    OutputError.__init__(error, message)
    return error


def write_failure(destination: Path, exc: BaseException, needed: int | None) -> WriteError:
    """The :class:`WriteError` of ``exc`` (see :func:`describe_write_failure`)."""
    return WriteError(destination, *_failure_cause(exc), needed)


def take_lock(fd: int) -> str | None:
    """Lock the open file ``fd`` for this process (``flock``, exclusive, without waiting) and
    write its pid in it: ``None`` then.  Held by another process: that one's pid as it wrote
    it (or ``"unknown"``), for the line that names it, and ``fd`` closed."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        return holder
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return None


def open_lock(path: Path, busy: Callable[[str], str]) -> int:
    """Open the lock file ``path`` (made if missing) and lock it for this process, as
    :func:`take_lock` does; returns its descriptor, which holds the lock until it is closed.

    A lock file that the process holding it removed (a failed run cleaning up, a finished one
    removing its folder) locks nothing any more: opened before the removal and locked after
    it, it is let go, and the file now at ``path`` is locked instead.

    Raises
    ------
    OutputError
        Another process holds the lock: the line ``busy`` makes of its pid; or other processes
        keep removing the file.
    OSError
        ``path`` cannot be made or opened (its folder is gone, or read-only).
    """
    for _ in range(100):  # each pass needs another process to remove the file meanwhile
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        holder = take_lock(fd)
        if holder is not None:
            raise OutputError(busy(holder))
        try:
            if os.fstat(fd).st_ino == path.stat().st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)
    raise OutputError(f"cannot lock {path}: other processes keep removing it; wait for them to finish")


@contextlib.contextmanager
def lock_held(path: Path, busy: Callable[[str], str], unable: Callable[[str], str]) -> Iterator[None]:
    """Within: this process holds the lock file ``path`` (:func:`open_lock`); it is removed at
    the end, while still held, so that it leaves nothing behind.

    Raises
    ------
    OutputError
        Another process holds the lock (the line ``busy`` makes of its pid), or ``path``
        cannot be made or opened (the line ``unable`` makes of the system's reason).
    """
    try:
        fd = open_lock(path, busy)
    except OSError as exc:
        if isinstance(exc, OutputError):
            raise
        raise OutputError(unable(exc.strerror or str(exc))) from None
    try:
        yield
    finally:
        # A process that opened it meanwhile finds it gone once it has the lock, and opens anew.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
