"""Run state: what makes a run resumable, kept beside the output, never inside it.

Every run writing ``DIR/out.tif`` works in the hidden folder
``DIR/.out.tif.geosr-run/``::

    lock            flock'ed for the whole run: two runs never share a state
    manifest.json   the job's fingerprint (input path, size and mtime, model and
                    weights digest, scale, tiling, precision, normalisation...)
    journal         append-only: one line per batch of finished tiles
    store.zarr      the output pixels, in Zarr chunks each tile core owns whole

A tile is journaled only after its chunks are written (zarr renames each chunk
into place, so a chunk is never half written), hence if the process dies at
any moment, the journal lists tiles whose pixels are complete; ``--resume``
computes the others.  Nothing is synced to disk: the process dying leaves the
kernel's page cache whole, and syncing the journal would not make the state
survive a machine crash either unless every chunk were synced too (forcing the
whole store through the disk as it is written); the manifest's and the
journal's fsyncs alone cost about 15 ms of a 0.4 s run.  Instead a resume
checks every journaled tile's chunks (:func:`geosr.io.run_store.tiles_on_disk`)
before trusting the journal (:meth:`RunState.keep_only`); the manifest records
the boot it was written in (:meth:`RunState.restarted`), for the stores whose
missing chunks are legitimate (a Zarr output's all-nodata ones) unless the
machine restarted.

The COG (or the final Zarr) is built from the store at the end and renamed
into place; then the folder is removed.  Should that fail for a reason the user
can fix (a full disk), the folder stays: ``--resume`` then only builds the
output (:meth:`RunState.unfinished`).

Because every writer of a destination holds its lock, hidden temporaries of
that destination found while holding it (``.out.tif.geosr-tmp-*``) belong to a
run that died: :meth:`RunState.acquire` removes them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from geosr.errors import GeosrError, OutputError, ResumableError
from geosr.interrupts import signals_held
from geosr.io.atomic import TMP_MARKER, format_bytes, open_lock, remove_path

RUN_SUFFIX = ".geosr-run"
"""Ending of the hidden run-state folder's name: ``.<output name>.geosr-run``."""

# How the messages of geosr.io's write failures for a full disk begin their advice (their last part).
_SPACE_ADVICE = "free some space"


class StaleRunError(GeosrError, FileExistsError):
    """An unfinished run of this output exists and neither --resume nor --restart was given."""

    def __init__(self, message: str, *, resumable: bool) -> None:
        super().__init__(message)
        self.resumable = resumable


def run_dir(destination: Path) -> Path:
    """The run-state folder of ``destination``."""
    return destination.parent / f".{destination.name}{RUN_SUFFIX}"


def size_on_disk(directory: Path) -> int:
    """Bytes of the files under ``directory`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(directory):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


def reclaimable_bytes(destination: Path) -> int:
    """Bytes a run of ``destination`` frees before it writes anything: its run-state folder,
    and the temporaries a killed run left beside it (a COG build killed half-way leaves one
    as large as the output), which the run removes once it holds the lock."""
    total = size_on_disk(run_dir(destination))
    for path in _temporaries(destination):
        with contextlib.suppress(OSError):
            total += size_on_disk(path) if path.is_dir() else path.stat().st_size
    return total


def _temporaries(destination: Path) -> list[Path]:
    """The temporaries of ``destination`` beside it (:data:`~geosr.io.atomic.TMP_MARKER`)."""
    prefix = f".{destination.name}{TMP_MARKER}"
    try:
        return [entry for entry in destination.parent.iterdir() if entry.name.startswith(prefix)]
    except OSError:
        return []


def boot_id() -> str | None:
    """This boot of the machine (Linux's random boot id), or None where the system has none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def job_digest(fingerprint: Mapping[str, Any]) -> str:
    """Short stable hash of a fingerprint (also written into the output's tags)."""
    text = json.dumps(fingerprint, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_manifest(path: Path) -> dict[str, Any] | None:
    """The manifest stored at ``path``, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and "fingerprint" in data else None


def _read_journal(path: Path) -> set[int]:
    """Indices of the tiles the journal at ``path`` lists as finished."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return set()
    finished: set[int] = set()
    for line in text.splitlines(keepends=True):
        # A line without its newline was being written when the run died.
        if line.endswith("\n"):
            with contextlib.suppress(ValueError):
                finished.update(int(i) for i in line.split())
    return finished


def stored_run(destination: Path) -> tuple[dict[str, Any], set[int]] | None:
    """The manifest of an unfinished run of ``destination`` and the tiles its journal lists
    as finished, read without its lock (``geosr info`` writes nothing); None when there is none."""
    directory = run_dir(destination)
    stored = _read_manifest(directory / "manifest.json")
    return None if stored is None else (stored, _read_journal(directory / "journal"))


def stale_run(
    destination: Path,
    stored: Mapping[str, Any],
    finished: set[int],
    fingerprint: Mapping[str, Any],
    tiles: int,
) -> StaleRunError:
    """What a run of ``fingerprint`` (``tiles`` tiles) into ``destination`` says of the unfinished
    run ``stored`` (its manifest; ``finished``, its journaled tiles) without --resume or --restart:
    resumable where it is of this same job."""
    directory = run_dir(destination)
    if stored["fingerprint"] != dict(fingerprint):
        from geosr.fingerprint import describe_fields  # imports torch: only here

        changed = sorted(
            key
            for key in set(stored["fingerprint"]) | set(fingerprint)
            if stored["fingerprint"].get(key) != fingerprint.get(key)
        )
        return StaleRunError(
            f"{destination}: an unfinished run of a different job ({len(finished)} of "
            f"{stored.get('tiles', '?')} tiles done; it differs in {describe_fields(changed)}) "
            f"is kept in {directory}; pass --restart to discard it and start over",
            resumable=False,
        )
    return StaleRunError(
        f"{destination}: an unfinished run of this job ({len(finished)} of {tiles} "
        f"tiles done) is kept in {directory}; rerun with --resume to finish it, "
        "or with --restart to start over",
        resumable=True,
    )


class RunState:
    """The locked run-state folder of one destination.

    Use :meth:`acquire`, then :meth:`prepare` to start or resume, :meth:`record`
    after each batch, and :meth:`finish` (success), :meth:`discard` (a failure
    not worth resuming) or :meth:`release` (keep it for ``--resume``).
    """

    def __init__(self, destination: Path, lock_fd: int) -> None:
        self.destination = destination
        self.directory = run_dir(destination)
        self._lock_fd: int | None = lock_fd
        self._journal: Any = None

    @property
    def manifest_path(self) -> Path:
        """The job's fingerprint and tile count (:meth:`commit_manifest`): present, the state is resumable."""
        return self.directory / "manifest.json"

    @property
    def journal_path(self) -> Path:
        """The append-only list of finished tiles, one line per batch."""
        return self.directory / "journal"

    @property
    def store(self) -> Path:
        """The Zarr store holding the finished tiles' pixels."""
        return self.directory / "store.zarr"

    @classmethod
    def acquire(cls, destination: Path) -> RunState:
        """Create or open the run state of ``destination`` and lock it.

        Raises
        ------
        OutputError
            Another run holds the lock, or the folder cannot be created.
        """
        directory = run_dir(destination)
        if directory.exists() and not directory.is_dir():
            # mkdir said 'File exists', and the advice was to check permissions and free space.
            raise OutputError(
                f"cannot write {destination}: {directory}, where its run state goes, is a file, not "
                "geosr's folder; move or remove that file"
            )

        def busy(pid: str) -> str:
            return (
                f"cannot write {destination}: another geosr run (pid {pid}) is writing it right now "
                f"(its state is locked in {directory}); wait for it to finish or choose another -o path"
            )

        for _ in range(100):  # each pass needs another run to remove the folder meanwhile
            try:
                directory.mkdir(exist_ok=True)
                fd = open_lock(directory / "lock", busy)
                break
            except OutputError:
                raise
            except OSError as exc:
                # A run that finished removes its folder, lock and all, before it unlocks it: a
                # lock opened before that and locked after it locks nothing (open_lock lets it
                # go), and the folder is gone.  Taken as it was, a third run made the folder
                # again and locked its new lock: two runs wrote one store.
                if isinstance(exc, FileNotFoundError) and directory.parent.is_dir():
                    continue
                raise OutputError(
                    f"cannot write {destination}: creating its run state {directory} failed "
                    f"({exc.strerror or exc}); check the directory's permissions and free space"
                ) from None
        else:
            raise OutputError(
                f"cannot write {destination}: other runs keep removing its run state {directory}"
            )
        state = cls(destination, fd)
        state._remove_stale_temporaries()
        return state

    def _remove_stale_temporaries(self) -> None:
        # Every writer of this destination holds the lock we now hold: whatever
        # temporary of it still exists was left by a run that died.
        for entry in _temporaries(self.destination):
            remove_path(entry)

    # --- the manifest ---------------------------------------------------------

    def manifest(self) -> dict[str, Any] | None:
        """The stored manifest, or None when there is none (or it is unreadable)."""
        return _read_manifest(self.manifest_path)

    def done(self) -> set[int]:
        """Indices of the tiles the journal lists as finished."""
        return _read_journal(self.journal_path)

    def prepare(self, fingerprint: Mapping[str, Any], tiles: int, *, resume: bool, restart: bool) -> set[int]:
        """Start a fresh state, or continue the stored one; returns the finished tiles.

        Raises
        ------
        StaleRunError
            An unfinished run is stored and neither ``resume`` nor ``restart`` is
            set, or ``resume`` is set but the stored run is of another job.
        """
        stored = self.manifest()
        if stored is not None and not restart:
            finished = self.done()
            if stored["fingerprint"] != dict(fingerprint) or not resume:
                raise stale_run(self.destination, stored, finished, fingerprint, tiles)
            self._open_journal()
            return finished
        self._reset()
        self.store.parent.mkdir(exist_ok=True)
        return set()

    def commit_manifest(self, fingerprint: Mapping[str, Any], tiles: int) -> None:
        """Write the manifest (after the store exists): from now on the state is resumable."""
        data = {"fingerprint": dict(fingerprint), "job": job_digest(fingerprint), "tiles": tiles}
        self._write_manifest({**data, "boot": boot_id()})
        self._open_journal()

    def _write_manifest(self, data: Mapping[str, Any]) -> None:
        tmp = self.directory / "manifest.json.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str), encoding="utf-8")
        tmp.replace(self.manifest_path)

    def restarted(self) -> bool:
        """Whether the machine restarted since the stored run wrote its manifest (or
        this system cannot tell): its journal may list tiles that never reached the disk."""
        stored = self.manifest()
        current = boot_id()
        return stored is None or current is None or stored.get("boot") != current

    def keep_only(self, tiles: set[int]) -> None:
        """Journal only ``tiles`` (checked on disk) and take the state into this
        boot, so that later resumes in it trust a Zarr output's journal again."""
        stored = self.manifest()
        if stored is None:
            raise OutputError(f"{self.manifest_path}: the run state has no manifest to keep tiles for")
        if self._journal is not None:
            self._journal.close()
        tmp = self.directory / "journal.tmp"
        tmp.write_text("".join(f"{i}\n" for i in sorted(tiles)), encoding="utf-8")
        tmp.replace(self.journal_path)
        # The journal first: should the process die in between, the old boot is
        # still recorded, and the next resume checks the chunks again.
        self._write_manifest({**stored, "boot": boot_id()})
        self._open_journal()

    def _reset(self) -> None:
        for entry in self.directory.iterdir():
            if entry.name != "lock":
                remove_path(entry)

    def _open_journal(self) -> None:
        self._journal = self.journal_path.open("a", encoding="utf-8")

    # --- progress ---------------------------------------------------------------

    def record(self, tiles: Iterable[int]) -> None:
        """Journal ``tiles`` as finished (their pixels must already be in the store)."""
        self._journal.write(" ".join(str(i) for i in tiles) + "\n")
        self._journal.flush()  # into the page cache: the process may die, the line stays

    # --- the end ----------------------------------------------------------------

    def _close(self) -> None:
        # Each handle is forgotten before it is closed: a Ctrl-C landing right after a
        # close, as the run ends, made the cleanup that follows close it again (a traceback,
        # "Bad file descriptor", or another file's descriptor of the same number closed).
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()
        lock_fd, self._lock_fd = self._lock_fd, None
        if lock_fd is not None:
            os.close(lock_fd)  # releases the flock

    def finish(self) -> None:
        """The output is in place: remove the run state."""
        self._remove()

    def discard(self) -> None:
        """Remove the run state and its store (nothing of it is worth resuming).

        A Ctrl-C meanwhile (a second one, as the first one's cleanup runs) takes effect
        once it is gone: it left the state, or half of it, which the line then offered
        to resume ("the finished tiles are kept beside it") though none was finished.
        """
        with signals_held():
            self._remove()

    def _remove(self) -> None:
        if self._lock_fd is None:
            return  # let go of already (check_kept): the folder there is not this run's
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        remove_path(self.directory)
        self._close()

    def release(self) -> None:
        """Keep the run state for ``--resume`` and unlock it."""
        self._close()

    def check_kept(self) -> None:
        """Refuse (:class:`OutputError`) to build the output from a state removed while the
        run went on, and let it go: its tiles are lost.

        The output's folder (or the hidden state in it) deleted or moved mid-run: zarr made
        the store's folders again for the tiles that followed, and the build then ended in a
        traceback (a COG: GroupNotFoundError) or, for a Zarr output, in a line that kept
        "the 0 finished tiles" for a ``--resume`` that could not use them.  What the tiles
        made again goes too, unless another run has made the state its own (its lock).
        """
        lock = self.directory / "lock"
        try:
            kept = self._lock_fd is not None and os.fstat(self._lock_fd).st_ino == lock.stat().st_ino
        except FileNotFoundError:
            kept = False
        if kept:
            return
        if not lock.exists():
            remove_path(self.directory)
        self._close()
        # The output's own folder gone too: the same command alone was refused next ("directory
        # ... does not exist; create it first"), so the advice names the folder to make again.
        folder = self.destination.parent
        rerun = "run the same command again"
        if not folder.is_dir():
            rerun = f"make {folder} again (mkdir -p {folder}) and {rerun}"
        raise OutputError(
            f"cannot write {self.destination}: its run state {self.directory} was removed while the run "
            "went on (its folder deleted or moved), and the finished tiles with it; nothing was written: "
            + rerun
        )

    def describe(self) -> str:
        """``'N finished tiles are kept in DIR (X)'`` for messages ("1 finished tile is")."""
        size = format_bytes(size_on_disk(self.directory))
        done = len(self.done())
        tiles = "1 finished tile is" if done == 1 else f"{done} finished tiles are"
        return f"{tiles} kept in {self.directory} ({size})"

    def unfinished(self, failure: OutputError, *, all_tiles: bool = True) -> ResumableError:
        """The error for a run stopped by a write the user can fix (a full disk,
        permissions): the state is kept, and ``--resume`` computes only the tiles
        not yet finished (none with ``all_tiles``: it only builds the output).

        The failure's own advice (its last ``; ...`` part) comes before the resume,
        but not its "or write to another directory": a resume cannot.  Advice of
        another kind (``pass --overwrite``, for a file that appeared at the
        destination during the run) is kept as it is: it was "free some space there".
        """
        message, _, fix = str(failure).rpartition("; ")
        if not message:
            message, fix = str(failure), "free some space there"
        elif fix.startswith(_SPACE_ADVICE):
            fix = "free some space there"
        rest = "only the output is left to build" if all_tiles else "only the others are left to compute"
        return ResumableError(f"{message}; {fix} and rerun with --resume: the {self.describe()}, and {rest}")
