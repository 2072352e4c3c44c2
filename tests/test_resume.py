"""Faults: runs killed (SIGKILL) at every phase resume to identical bytes; the destination
is never partial; a full disk stops cleanly; stale, busy and foreign run states are refused.

``make faults`` sets ``GEOSR_FAULTS_LONG=1``: many more random kill points.
"""

from __future__ import annotations

import json
import os
import random
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import zarr
from rio_cogeo.cogeo import cog_validate

import geosr
from geosr.errors import InputError, OutputError, ResumableError
from geosr.io.atomic import format_bytes
from geosr.io.runstate import RunState, StaleRunError, reclaimable_bytes, run_dir
from tests.conftest import UTM_TRANSFORM, coordinate_pattern
from tests.test_run import random_model_file

pytestmark = pytest.mark.slow

GEOSR = Path(sys.executable).with_name("geosr")
LONG = os.environ.get("GEOSR_FAULTS_LONG") == "1"
# 56 tiles of 16 px in batches of 4: every phase is passed many times.
RUN = ["--scale", "2", "--tile", "16", "--batch-size", "4", "--device", "cpu", "--precision", "fp32"]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An input, a small random CNN-RNN, and the uninterrupted COG and Zarr outputs."""
    folder = tmp_path_factory.mktemp("job")
    src = folder / "scene.tif"
    data = coordinate_pattern(2, 120, 100)
    profile = {"driver": "GTiff", "count": 2, "height": 120, "width": 100, "dtype": "uint16"}
    with rasterio.open(src, "w", crs="EPSG:32633", transform=UTM_TRANSFORM, **profile) as f:
        f.write(data)
    weights = random_model_file(folder, 2)
    options = {"scale": 2, "tile": 16, "batch_size": 4, "device": "cpu", "precision": "fp32"}
    ref = folder / "reference.tif"
    geosr.upscale_file(src, ref, model=str(weights), **options)
    ref_zarr = folder / "reference.zarr"
    geosr.upscale_file(src, ref_zarr, model=str(weights), **options)
    return {"src": src, "weights": weights, "ref": ref, "ref_zarr": ref_zarr}


def CLI(job: dict[str, Path], dst: Path) -> list[str]:
    return [str(GEOSR), "run", str(job["src"]), "-o", str(dst), "--model", str(job["weights"]), *RUN]


def geosr_run(job: dict[str, Path], dst: Path, *extra: str, env: dict[str, str] | None = None, **kw):
    args = [str(GEOSR), "run", str(job["src"]), "-o", str(dst), "--model", str(job["weights"]), *RUN, *extra]
    result = subprocess.run(
        args,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        **kw,
    )
    # A run slower than 30 s (a busy machine) prints progress lines on a stderr that is no
    # terminal, before its error: the tests are about the error line, which then came second.
    lines = result.stderr.splitlines()
    result.stderr = "\n".join(line for line in lines if not re.match(r"geosr: .*: \d+/\d+ tiles", line))
    return result


def geosr_here(
    job: dict[str, Path], dst: Path, *extra: str, capfd: pytest.CaptureFixture[str], monkeypatch
) -> subprocess.CompletedProcess[str]:
    """:func:`geosr_run`'s command run in this process, where the process itself is not the
    point (a refusal's line and status, a resume to its end): no child's start-up, torch's
    import included (about 2 s each)."""
    from geosr.cli import main

    args = ["run", str(job["src"]), "-o", str(dst), "--model", str(job["weights"]), *RUN, *extra]
    monkeypatch.setattr(sys, "argv", [GEOSR.name, *args])
    code: int | str | None = 0
    try:
        main()
    except SystemExit as exit_info:
        code = exit_info.code
    # The command keeps C libraries' prints off stderr at the descriptor level: read it there.
    lines = capfd.readouterr().err.splitlines()
    stderr = "\n".join(line for line in lines if not re.match(r"geosr: .*: \d+/\d+ tiles", line))
    status = code if isinstance(code, int) else 0 if code is None else 1  # as a process's exit
    return subprocess.CompletedProcess(args, status, "", stderr)


def resume(job: dict[str, Path], dst: Path) -> Path:
    options = {"scale": 2, "tile": 16, "batch_size": 4, "device": "cpu", "precision": "fp32"}
    return geosr.upscale_file(job["src"], dst, model=str(job["weights"]), resume=True, **options)


def leftovers(folder: Path, dst: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(f".{dst.name}"))


def zarr_pixels(path: Path) -> np.ndarray:
    with xr.open_zarr(path) as ds:
        return ds["band_data"].values


# Every phase; the suite runs the five that differ most in what is on disk when the
# process dies, `make faults` all of them (the random-kill test below reaches the rest).
PHASES = ["read:2", "write:5", "journal:4", "cog:1", "commit:1"]
PHASES_LONG = [*PHASES, "infer:3", "finalise:1", "read:14", "write:56", "journal:1", "finalise:2"]


@pytest.mark.parametrize("fault", PHASES_LONG if LONG else PHASES)
def test_kill_at_each_phase_then_resume_gives_identical_bytes(job, tmp_path: Path, fault: str) -> None:
    dst = tmp_path / "out.tif"
    killed = geosr_run(job, dst, env={"GEOSR_FAULT_AT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    if fault == "commit:1":  # killed after the rename: the output is whole, only the state is left
        assert dst.read_bytes() == job["ref"].read_bytes()
    else:
        assert not dst.exists()
        assert run_dir(dst).is_dir()
    resume(job, dst)
    assert dst.read_bytes() == job["ref"].read_bytes()
    assert leftovers(tmp_path, dst) == []


@pytest.mark.parametrize("fault", ["write:9", "cog:1"] if LONG else ["write:9"])
def test_zarr_output_resumes_to_identical_pixels(job, tmp_path: Path, fault: str) -> None:
    dst = tmp_path / "out.zarr"
    killed = geosr_run(job, dst, env={"GEOSR_FAULT_AT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not dst.exists()
    resume(job, dst)
    np.testing.assert_array_equal(zarr_pixels(dst), zarr_pixels(job["ref_zarr"]))
    assert leftovers(tmp_path, dst) == []


@pytest.mark.parametrize("restarted", [True, False], ids=["after-a-restart", "same-boot"])
def test_resume_computes_again_the_tiles_lost_from_disk(job, tmp_path: Path, restarted: bool) -> None:
    """A power cut loses what the page cache held: chunks the journal lists may be empty
    or missing; a disk or another program can damage them in the same boot.  Every
    resume checks them, computes their tiles again, and journals only the good ones:
    killed right after that check, the next resume still finishes with the
    uninterrupted bytes.  (Before: a GDAL error at the COG build, exit 2, the state gone.)"""
    dst = tmp_path / "out.tif"
    killed = geosr_run(job, dst, env={"GEOSR_FAULT_AT": "journal:4"})  # 16 tiles journaled
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = run_dir(dst)
    # Which 16: two writer threads may journal batches out of order (tiles 16-19 before 12-15),
    # as a loaded CI machine once did.
    finished = {int(i) for i in (state / "journal").read_text().split()}
    assert len(finished) == 16 and {0, 9} <= finished, finished
    manifest = json.loads((state / "manifest.json").read_text())
    assert manifest["boot"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if restarted:
        (state / "manifest.json").write_text(json.dumps({**manifest, "boot": "the boot before a power cut"}))
    pixels = state / "store.zarr" / "band_data"
    (pixels / "0.0.0").write_bytes(b"")  # tile 0: renamed into place, its data never written
    (pixels / "1.1.2").unlink()  # tile 9, second band: the rename never reached the disk
    if not restarted:
        with (pixels / "0.0.0").open("wb") as chunk:
            chunk.write(bytes(100))  # cut short

    checked = geosr_run(job, dst, "--resume", env={"GEOSR_FAULT_AT": "read:1"})
    assert checked.returncode == -signal.SIGKILL, checked.stderr
    said = "did not reach the disk" if restarted else "are missing or damaged in"
    assert f"2 of the 16 finished tiles kept for this run {said}" in " ".join(checked.stderr.split())
    journaled = {int(i) for i in (state / "journal").read_text().split()}
    assert journaled == finished - {0, 9}
    resume(job, dst)
    assert dst.read_bytes() == job["ref"].read_bytes()
    assert leftovers(tmp_path, dst) == []


def test_resume_with_a_store_whose_metadata_is_gone_asks_for_restart(
    job, tmp_path: Path, capfd, monkeypatch
) -> None:
    """A store that zarr cannot open at all: one line, exit 2, the state kept until --restart."""
    dst = tmp_path / "out.tif"
    killed = geosr_run(job, dst, env={"GEOSR_FAULT_AT": "journal:4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run_dir(dst) / "store.zarr" / "band_data" / ".zarray").unlink()
    refused = geosr_here(job, dst, "--resume", capfd=capfd, monkeypatch=monkeypatch)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "has a damaged store" in refused.stderr and "pass --restart" in refused.stderr
    assert run_dir(dst).is_dir() and not dst.exists()
    restarted = geosr_here(job, dst, "--restart", capfd=capfd, monkeypatch=monkeypatch)
    assert restarted.returncode == 0, restarted.stderr
    assert dst.read_bytes() == job["ref"].read_bytes()
    assert leftovers(tmp_path, dst) == []


def test_store_damaged_during_the_run_is_reported_and_resumable(job, tmp_path: Path, monkeypatch) -> None:
    """A chunk damaged after the resume's check (a failing disk, another program) makes
    GDAL's COG build fail: the error names the store and the damage, not the free space
    of the output's disk, keeps the state with the whole tiles journaled, and --resume
    computes the damaged one again."""
    dst = tmp_path / "out.tif"
    killed = geosr_run(job, dst, env={"GEOSR_FAULT_AT": "finalise:1"})  # all 56 tiles stored
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    chunk = run_dir(dst) / "store.zarr" / "band_data" / "1.1.2"  # tile 9, second band
    real_finalise = geosr.api.finalise

    def damage_then_finalise(*args, **kwargs):
        chunk.write_bytes(chunk.read_bytes()[:100])
        return real_finalise(*args, **kwargs)

    monkeypatch.setattr(geosr.api, "finalise", damage_then_finalise)
    with pytest.raises(geosr.errors.ResumableError) as failed:
        resume(job, dst)
    message = str(failed.value)
    store = run_dir(dst) / "store.zarr"
    assert f"1 of the 56 tiles in this run's store {store} is damaged on disk" in message
    assert "rerun with resume=True" in message and "free space" not in message
    assert not dst.exists()
    assert {int(i) for i in (run_dir(dst) / "journal").read_text().split()} == set(range(56)) - {9}
    monkeypatch.undo()
    resume(job, dst)
    assert dst.read_bytes() == job["ref"].read_bytes()
    assert leftovers(tmp_path, dst) == []


def test_random_kill_points_with_a_fixed_seed(job, tmp_path: Path) -> None:
    """Several kills in a row of the same run, each at a random (seeded) point, then resume."""
    rng = random.Random(6)
    phases = {"read": 14, "infer": 14, "write": 56, "journal": 14, "finalise": 2, "cog": 1}
    dst = tmp_path / "out.tif"
    for attempt in range(12 if LONG else 2):
        phase = rng.choice(sorted(phases))
        fault = f"{phase}:{rng.randint(1, phases[phase])}"
        result = geosr_run(job, dst, "--resume", env={"GEOSR_FAULT_AT": fault})
        assert result.returncode in (-signal.SIGKILL, 0), (attempt, fault, result.stderr)
        assert not dst.exists() or dst.read_bytes() == job["ref"].read_bytes()
    resume(job, dst)
    assert dst.read_bytes() == job["ref"].read_bytes()


def test_destination_is_never_partial_while_polled(job, tmp_path: Path) -> None:
    """Kill runs at random times (fixed seed) while another thread polls the destination."""
    rng = random.Random(2026)
    dst = tmp_path / "out.tif"
    seen: list[str] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            if dst.exists():
                size = dst.stat().st_size
                ok = size == job["ref"].stat().st_size and dst.read_bytes() == job["ref"].read_bytes()
                seen.append("whole" if ok else f"PARTIAL ({size} bytes)")
            time.sleep(0.002)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        for _ in range(8 if LONG else 1):
            proc = subprocess.Popen(
                [*CLI(job, dst), "--resume"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(rng.uniform(2.0, 8.0))
            proc.kill()
            proc.wait()
        resume(job, dst)
        polled, deadline = len(seen), time.monotonic() + 60
        while len(seen) == polled and time.monotonic() < deadline:  # the finished output, polled once
            time.sleep(0.01)
    finally:
        stop.set()
        poller.join()
    # Not empty: a poller that never saw the destination (stopped, or starved) proved nothing.
    assert seen and all(s == "whole" for s in seen), sorted(set(seen))
    assert dst.read_bytes() == job["ref"].read_bytes()
    valid, errors, _ = cog_validate(str(dst), quiet=True)
    assert valid and not errors


def test_stale_run_is_reported_with_the_command_to_resume(job, tmp_path: Path, capfd, monkeypatch) -> None:
    dst = tmp_path / "out.tif"
    geosr_run(job, dst, env={"GEOSR_FAULT_AT": "journal:3"})
    again = geosr_here(job, dst, capfd=capfd, monkeypatch=monkeypatch)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    text = " ".join(again.stderr.split())
    assert "unfinished run of this job (12 of 56 tiles done)" in text
    assert f"to resume: {GEOSR.name} run {job['src']} -o {dst}" in text and text.endswith("--resume)")
    assert "--restart" in text and not dst.exists()
    # A different job (another tile size) cannot take over that state...
    with pytest.raises(StaleRunError, match=r"differs in the tile size \(tile\)\)"):
        geosr.upscale_file(
            job["src"], dst, model=str(job["weights"]), scale=2, tile=32, device="cpu", precision="fp32",
            resume=True,
        )  # fmt: skip
    # ...nor an input changed since, said in words (it said 'differs in input_mtime_ns').
    stamp = Path(job["src"]).stat()
    os.utime(job["src"], ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))
    try:
        with pytest.raises(StaleRunError, match=r"differs in the input's modification time \(the file was"):
            geosr.upscale_file(
                job["src"], dst, model=str(job["weights"]), scale=2, tile=16, device="cpu", precision="fp32",
                resume=True,
            )  # fmt: skip
    finally:
        os.utime(job["src"], ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    # ...until --restart discards it.
    geosr.upscale_file(
        job["src"], dst, model=str(job["weights"]), scale=2, tile=16, device="cpu", precision="fp32",
        restart=True,
    )  # fmt: skip
    assert dst.read_bytes() == job["ref"].read_bytes() and not run_dir(dst).exists()


def test_busy_run_state_is_refused(job, tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    state = RunState.acquire(dst)
    try:
        with pytest.raises(OutputError, match=rf"another geosr run \(pid {os.getpid()}\) is writing it"):
            resume(job, dst)
    finally:
        state.release()
    assert not dst.exists()


def test_a_run_state_removed_as_another_run_locks_it_is_made_again(tmp_path: Path, monkeypatch) -> None:
    """A run finishing as another one starts: it removes its state, lock and all, then unlocks
    it, and the other had opened that lock in between.  The other locked the removed file, in a
    folder that was gone (its first write failed), and a third run made the folder again and
    locked its new lock: two runs held one run state, and wrote one store."""
    import geosr.io.atomic
    import geosr.io.runstate

    dst = tmp_path / "out.tif"
    first = RunState.acquire(dst)
    real_take_lock = geosr.io.atomic.take_lock

    def first_finishes_meanwhile(fd: int) -> str | None:
        monkeypatch.undo()
        first.finish()
        return real_take_lock(fd)

    # Where the lock is taken (before the change, runstate called it by its own name).
    monkeypatch.setattr(geosr.io.atomic, "take_lock", first_finishes_meanwhile)
    monkeypatch.setattr(geosr.io.runstate, "take_lock", first_finishes_meanwhile, raising=False)
    second = RunState.acquire(dst)
    try:
        assert second.directory.is_dir()
        assert os.fstat(second._lock_fd).st_ino == (second.directory / "lock").stat().st_ino
        with pytest.raises(OutputError, match=rf"another geosr run \(pid {os.getpid()}\)"):
            RunState.acquire(dst)  # a third run
    finally:
        second.release()


def test_a_ctrl_c_as_the_run_state_is_unlocked_is_not_a_traceback(tmp_path: Path, monkeypatch) -> None:
    """A Ctrl-C landing just after the lock's descriptor was closed, as a finished run
    removed its state (SIGINT sent once the output was in place, seen in a real run): the
    cleanup closed it again, and the run ended in a traceback, "OSError: [Errno 9] Bad
    file descriptor", exit status 1.  The signal's timing is what the patched close gives."""
    state = RunState.acquire(tmp_path / "out.tif")
    close, lock_fd = os.close, state._lock_fd

    def close_then_ctrl_c(fd: int) -> None:
        close(fd)
        if fd == lock_fd:
            monkeypatch.setattr(os, "close", close)
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "close", close_then_ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        state.finish()
    state.release()  # what the run's cleanup does next: no second close
    assert not run_dir(tmp_path / "out.tif").exists()


def test_finished_output_is_refused_or_a_no_op_with_resume(job, tmp_path: Path, capfd, monkeypatch) -> None:
    dst = tmp_path / "out.tif"
    resume(job, dst)
    before = dst.stat().st_mtime_ns, dst.read_bytes()
    again = geosr_here(job, dst, capfd=capfd, monkeypatch=monkeypatch)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    resume(job, dst)  # a no-op: nothing rewritten
    assert (dst.stat().st_mtime_ns, dst.read_bytes()) == before
    # --resume on an output of another job is refused, never rewritten.
    other = geosr_here(
        job, dst, "--resume", "--scale", "2", "--tile", "32", capfd=capfd, monkeypatch=monkeypatch
    )
    assert other.returncode == 2 and "different job" in other.stderr
    assert (dst.stat().st_mtime_ns, dst.read_bytes()) == before


def _limit_file_size(limit: int):
    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG, do not kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def noise_scene(path: Path, count: int, height: int, width: int) -> Path:
    """A uint16 scene of random values at ``path``: incompressible, so its run store fills a disk."""
    with rasterio.open(
        path, "w", driver="GTiff", count=count, height=height, width=width, dtype="uint16",
        crs="EPSG:32633", transform=UTM_TRANSFORM,
    ) as f:  # fmt: skip
        f.write(np.random.default_rng(0).integers(1, 60000, (count, height, width), dtype="uint16"))
    return path


@pytest.mark.parametrize(("limit", "stage"), [(1500, "store")])
def test_disk_full_stops_cleanly_and_keeps_the_old_output(
    job, tmp_path: Path, limit: int, stage: str
) -> None:
    """A file-size limit in a child process fails writes exactly as a full disk does.
    Here no tile fits: nothing is kept and the same command runs once there is room (it
    said "the 0 finished tiles are kept" and "rerun with --resume", and left the run state
    with its partial chunks).  Finished tiles stay for a --resume: the next test."""
    noisy = noise_scene(tmp_path / "noise.tif", 2, 120, 100)
    dst = tmp_path / "out.tif"
    dst.write_bytes(b"last week's results")
    result = geosr_run(
        {**job, "src": noisy}, dst, "--overwrite", "--no-check-resources", preexec_fn=_limit_file_size(limit)
    )
    assert result.returncode == 2, (stage, result.stderr)
    lines = result.stderr.strip().splitlines()
    text = " ".join(result.stderr.split())
    assert "Traceback" not in text and text.startswith("error:"), result.stderr
    assert str(dst) in text and "free" in text and ("needs" in text or "too large" in text.lower())
    assert "free some space or write to another directory" in text and "--resume" not in text, text
    assert len(lines) <= 3  # one message, soft-wrapped by the terminal width at most
    assert dst.read_bytes() == b"last week's results"
    assert leftovers(tmp_path, dst) == []
    again = geosr_run({**job, "src": noisy}, dst, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert cog_validate(str(dst))[0] and leftovers(tmp_path, dst) == []


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 1 MiB file system (tmpfs) that a run fills: a file-size limit fails writes as
    a full disk does, but leaves the free space that the messages report as it was."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root (CAP_SYS_ADMIN): {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, check=False)


def test_a_full_disk_before_any_tile_tells_the_space_free_once_the_store_is_gone(
    small_disk: Path, tmp_path: Path
) -> None:
    """The line's "N are free" was read while the run store's partial chunks still filled the
    disk (476.0 KiB of 1 MiB), then the store was removed: the user was told of less room than
    there was, to free space that was free already."""
    src = noise_scene(tmp_path / "noise.tif", 1, 256, 256)  # one tile, 2 MiB out
    dst = small_disk / "out.tif"
    run = [sys.executable, "-m", "geosr", "run", str(src), "-o", str(dst), "--model", "bicubic"]
    result = subprocess.run([*run, "--no-check-resources"], capture_output=True, text=True, check=False)
    text = " ".join(result.stderr.split())
    assert result.returncode == 2 and text.startswith(f"error: cannot write {dst}: No space left"), text
    assert os.listdir(small_disk) == []  # nothing kept: no tile was finished
    free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
    assert f"the output needs up to 2.0 MiB uncompressed and {format_bytes(free)} are free in" in text, text


def test_cog_build_short_of_space_keeps_the_tiles_and_resume_only_builds_it(job, tmp_path: Path) -> None:
    """Every tile computed, then the COG build refused for lack of space: the run state
    was deleted with the compute it held.  It is kept, the message says to free space
    and resume, and the resume reads no input tile (a fault at the first read would kill it)."""
    dst = tmp_path / "out.tif"
    dst.write_bytes(b"last week's results")
    # `ulimit -f` caps what geosr sees as free: the store's small chunk files fit, a COG as large does not.
    short = geosr_run(job, dst, "--overwrite", "--no-check-resources", preexec_fn=_limit_file_size(60_000))
    text = " ".join(short.stderr.split())
    assert short.returncode == 2 and "Traceback" not in text and text.startswith("error:"), short.stderr
    assert "not enough disk space to build the COG" in text and "free some space" in text, text
    assert "rerun with --resume" in text and "write to another directory" not in text, text
    assert "the 56 finished tiles are kept in" in text and "(to resume: geosr run" in text, text
    assert dst.read_bytes() == b"last week's results"
    assert leftovers(tmp_path, dst) == [run_dir(dst).name]
    again = geosr_run(job, dst, "--overwrite", "--resume", env={"GEOSR_FAULT_AT": "read:1"})
    assert again.returncode == 0, again.stderr
    assert dst.read_bytes() == job["ref"].read_bytes() and leftovers(tmp_path, dst) == []


def test_one_kept_tile_is_one_tile(tmp_path: Path) -> None:
    # "the 1 finished tiles are kept in ..."
    state = RunState.acquire(tmp_path / "out.tif")
    state.prepare({"job": 1}, 4, resume=False, restart=False)
    state.commit_manifest({"job": 1}, 4)
    state.record([2])
    assert state.describe().startswith(f"1 finished tile is kept in {state.directory} (")
    state.record([0, 3])
    assert state.describe().startswith("3 finished tiles are kept in")
    state.discard()


def test_disk_guard_refuses_up_front_with_the_numbers(job, tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    result = geosr_run(job, dst, preexec_fn=_limit_file_size(20_000))
    assert result.returncode == 2
    text = " ".join(result.stderr.split())
    assert "the run needs about" in text and "are free in" in text and str(dst) in text
    assert leftovers(tmp_path, dst) == [] and not dst.exists()


def test_disk_guard_counts_what_a_killed_cog_build_left_as_free(tmp_path: Path) -> None:
    """A run killed while GDAL wrote the COG leaves a temporary COG as large as the output
    beside it, which the resume removes before it writes.  Before, the disk guard counted
    only the run-state folder as free: a resume on a 300 MiB tmpfs of a 96 MiB output was
    refused, '128.1 MiB needed, 47.7 MiB free', when removing the temporary left 172 MiB."""
    dst = tmp_path / "out.tif"
    run_dir(dst).mkdir()
    (run_dir(dst) / "journal").write_bytes(b"0 1\n")
    (tmp_path / f".{dst.name}.geosr-tmp-4242-abcdefgh.tif").write_bytes(b"\0" * 100_000)
    (tmp_path / ".other.tif.geosr-tmp-4242-abcdefgh.tif").write_bytes(b"\0" * 7)  # another output's
    assert reclaimable_bytes(dst) == 4 + 100_000
    assert reclaimable_bytes(tmp_path / "never.tif") == 0


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_a_file_that_appears_at_the_destination_during_the_run_is_kept_with_the_right_advice(
    make_raster, tmp_path: Path, suffix: str
) -> None:
    """Another program wrote the destination while the tiles ran: the run keeps it and its
    tiles, and said "pass --overwrite to replace it; free some space there and rerun with
    --resume", a full disk's advice.  The advice is now the failure's own.  A Zarr output
    replaced such a store without --overwrite (another geosr run's, finished meanwhile)."""
    src = make_raster(height=40, width=40)
    dst = tmp_path / f"out{suffix}"
    theirs = dst / "zarr.json" if suffix == ".zarr" else dst  # a store is a folder

    def someone_writes_it(done: int, total: int) -> None:
        if done == 1:
            theirs.parent.mkdir(exist_ok=True)
            theirs.write_text("not yours")

    options = {"scale": 2, "model": "bicubic", "tile": 16, "batch_size": 1}
    with pytest.raises(ResumableError) as stopped:
        geosr.upscale_file(src, dst, progress=someone_writes_it, **options)
    assert "free some space" not in str(stopped.value)
    assert "pass overwrite=True to replace it and rerun with resume=True" in str(stopped.value)
    assert theirs.read_text() == "not yours" and run_dir(dst).is_dir()
    geosr.upscale_file(src, dst, resume=True, overwrite=True, **options)
    assert not run_dir(dst).exists()
    if suffix == ".tif":
        assert cog_validate(str(dst), quiet=True)[0]
    else:
        assert zarr_pixels(dst).shape == (1, 80, 80)


def test_a_store_that_appears_at_a_zarr_destination_during_the_run_is_kept(
    make_raster, tmp_path: Path
) -> None:
    """Another program wrote a Zarr store at the destination while the tiles ran: the run's
    rename deleted it without a word, --overwrite or not (a COG's build refuses)."""
    src = make_raster(height=40, width=40)
    dst = tmp_path / "out.zarr"

    def someone_writes_it(done: int, total: int) -> None:
        if done == 1:
            zarr.open_group(str(dst), mode="w").attrs["owner"] = "someone else"

    options = {"scale": 2, "model": "bicubic", "tile": 16, "batch_size": 1}
    with pytest.raises(ResumableError, match="pass overwrite=True to replace it and rerun with resume=True"):
        geosr.upscale_file(src, dst, progress=someone_writes_it, **options)
    assert zarr.open_group(str(dst), mode="r").attrs["owner"] == "someone else" and run_dir(dst).is_dir()
    geosr.upscale_file(src, dst, resume=True, overwrite=True, **options)
    assert "owner" not in zarr.open_group(str(dst), mode="r").attrs and not run_dir(dst).exists()
    assert xr.open_zarr(dst)["band_data"].shape == (1, 80, 80)


def test_an_input_rewritten_during_the_run_is_refused_and_the_old_output_kept(
    make_raster, tmp_path: Path
) -> None:
    """Another program rewrote the input in place while the tiles ran (a copy not yet
    finished, rsync --inplace): the output mixed tiles of both versions, exit status 0."""
    src = make_raster(height=40, width=40)
    newer = make_raster("newer.tif", height=40, width=40, data=coordinate_pattern(1, 40, 40)[:, ::-1].copy())
    dst = tmp_path / "out.tif"
    dst.write_bytes(b"the old output")

    def someone_rewrites_it(done: int, total: int) -> None:
        if done == 1:
            src.write_bytes(newer.read_bytes())  # same inode, same size, new pixels

    options = {"scale": 2, "model": "bicubic", "tile": 16, "batch_size": 1, "overwrite": True}
    with pytest.raises(InputError, match="the file changed while it was read"):
        geosr.upscale_file(src, dst, progress=someone_rewrites_it, **options)
    assert dst.read_bytes() == b"the old output" and leftovers(tmp_path, dst) == []


def test_an_input_replaced_as_the_run_starts_is_refused(make_raster, tmp_path: Path, monkeypatch) -> None:
    """A newer version renamed into place (a download or an export finishing) after the run
    had opened the input, while it loaded the model: the stamp was taken after that, the
    tiles read the new file on the old file's grid, and the run ended with exit status 0,
    an output of the new pixels cropped to the old extent."""
    import geosr.models

    src = make_raster(height=40, width=40)
    newer = make_raster("newer.tif", height=56, width=56, data=coordinate_pattern(1, 56, 56)[:, ::-1].copy())
    dst = tmp_path / "out.tif"
    load_model = geosr.models.load_model

    def replaced_meanwhile(*args, **kwargs):
        os.replace(newer, src)
        return load_model(*args, **kwargs)

    monkeypatch.setattr(geosr.models, "load_model", replaced_meanwhile)
    with pytest.raises(InputError, match="the file changed while it was read"):
        geosr.upscale_file(src, dst, scale=2, model="bicubic", tile=16)
    assert not dst.exists() and leftovers(tmp_path, dst) == []


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_a_run_state_removed_during_the_run_is_one_line(make_raster, tmp_path: Path, suffix: str) -> None:
    """The output's hidden run state deleted while the tiles ran: zarr made the store's folders
    again for the tiles that followed, and the build ended in a GroupNotFoundError traceback (a
    COG), or kept "the 0 finished tiles" for a --resume that could not use them (a Zarr output).
    The output's whole folder deleted is the same line; the same command then says the folder
    is missing, in one line.

    Each is removed at a point the run reports (its progress), whatever the machine's pace: the
    whole folder, removed after the second tile while writer threads wrote others, was made
    again by a write that followed, or was not, where every write that followed overlapped the
    removal and failed, and the same command then found no folder (a flaky test under load).
    The state alone is removed there now, its folder kept; the whole folder after the last
    tile, when no write is in flight and none follows."""
    import shutil

    src = make_raster(height=40, width=40)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / f"x{suffix}"
    removed = r"was removed while the run went on .* run the same command again"

    def removing(path: Path, *, after: int | None = None) -> Callable[[int, int], None]:
        """A progress callback that removes ``path`` once ``after`` tiles are done (None: all)."""

        def progress(done: int, total: int) -> None:
            if done == (total if after is None else after):
                shutil.rmtree(path, ignore_errors=True)  # the tiles may be making folders in it

        return progress

    options = {"scale": 2, "model": "bicubic", "tile": 16, "batch_size": 1}  # 9 tiles
    with pytest.raises(OutputError, match=removed):
        geosr.upscale_file(src, dst, progress=removing(run_dir(dst), after=2), **options)
    assert not dst.exists() and not run_dir(dst).exists()
    geosr.upscale_file(src, dst, **options)  # the same command
    assert dst.exists() and not run_dir(dst).exists()
    gone = tmp_path / "gone"
    gone.mkdir()
    dst = gone / f"x{suffix}"
    with pytest.raises(OutputError, match=removed):
        geosr.upscale_file(src, dst, progress=removing(gone), **options)
    assert not gone.exists()
    with pytest.raises(OutputError, match="does not exist; create it first"):
        geosr.upscale_file(src, dst, **options)  # the same command
    gone.mkdir()
    geosr.upscale_file(src, dst, **options)
    assert dst.exists() and not run_dir(dst).exists()


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_an_output_folder_removed_before_the_first_tile_is_one_line(
    make_raster, tmp_path: Path, suffix: str
) -> None:
    """The output's folder deleted after the run made its store, before the first tile (the
    run's progress at 0): opening the store to write the tiles ended in a FileNotFoundError
    traceback ('.../store.zarr does not exist'); it is the line of a state removed under the tiles."""
    import shutil

    src = make_raster(height=40, width=40)
    out = tmp_path / "out"
    out.mkdir()
    dst = out / f"x{suffix}"

    def removed_at_start(done: int, total: int) -> None:
        if done == 0:
            shutil.rmtree(out)

    with pytest.raises(OutputError, match=r"was removed while the run went on .* run the same command again"):
        geosr.upscale_file(src, dst, progress=removed_at_start, scale=2, model="bicubic", tile=16)
    assert not out.exists()


def test_a_ctrl_c_before_the_first_tile_is_journaled_leaves_no_run_state(make_raster, tmp_path: Path) -> None:
    """Stopped as the run store was made or the first batch ran: the line said the finished
    tiles were kept for --resume, and the same command was refused as a stale run."""
    src = make_raster(height=40, width=40)
    dst = tmp_path / "out.tif"

    def ctrl_c_at_start(done: int, total: int) -> None:
        if done == 0:
            raise KeyboardInterrupt

    options = {"scale": 2, "model": "bicubic", "tile": 16}
    with pytest.raises(KeyboardInterrupt):
        geosr.upscale_file(src, dst, progress=ctrl_c_at_start, **options)
    assert leftovers(tmp_path, dst) == [] and not dst.exists()
    geosr.upscale_file(src, dst, **options)  # the same command: no stale run in its way
    assert cog_validate(str(dst), quiet=True)[0]


@pytest.mark.parametrize("suffix", [".tif", ".zarr"])
def test_an_output_folder_removed_during_the_run_says_to_make_it_again(
    make_raster, tmp_path: Path, suffix: str
) -> None:
    """The output's whole folder deleted while the run went on: the line said only "run the same
    command again", which was then refused ("directory ... does not exist; create it first"). It
    names the folder to make again; a state removed from a folder still there keeps the old advice."""
    import shutil

    src = make_raster(height=40, width=40)
    options = {"scale": 2, "model": "bicubic", "tile": 16, "batch_size": 1}  # 9 tiles

    def removing(path: Path):
        def progress(done: int, total: int) -> None:
            if done == total:  # after the last tile: no write in flight, none follows
                shutil.rmtree(path, ignore_errors=True)

        return progress

    gone = tmp_path / "gone"
    gone.mkdir()
    dst = gone / f"x{suffix}"
    advice = f"nothing was written: make {gone} again (mkdir -p {gone}) and run the same command again"
    with pytest.raises(OutputError, match=re.escape(advice) + "$"):
        geosr.upscale_file(src, dst, progress=removing(gone), **options)
    gone.mkdir()
    with pytest.raises(OutputError, match=r"nothing was written: run the same command again$"):
        geosr.upscale_file(src, dst, progress=removing(run_dir(dst)), **options)
    geosr.upscale_file(src, dst, **options)  # the same command
    assert dst.exists() and not run_dir(dst).exists()


def ctrl_c_after_a_batch(done: int, total: int) -> None:
    """A progress callback that interrupts a run once its first batch is done."""
    if done:
        raise KeyboardInterrupt


def test_a_run_resumed_in_the_other_zarr_format_is_refused(make_raster, tmp_path: Path) -> None:
    """A Zarr v2 run interrupted, then resumed without --zarr-format (v3), must not finish
    a store of one format with the tiles of both; resumed as it began, it is v2 throughout."""
    src = make_raster(count=2, height=40, width=40, nodata=0)
    dst = tmp_path / "out.zarr"
    options = {"scale": 2, "model": "bicubic", "tile": 16}

    with pytest.raises(KeyboardInterrupt):
        geosr.upscale_file(src, dst, progress=ctrl_c_after_a_batch, zarr_format=2, **options)
    with pytest.raises(StaleRunError, match="differs in zarr_format"):
        geosr.upscale_file(src, dst, resume=True, zarr_format=3, **options)
    geosr.upscale_file(src, dst, resume=True, zarr_format=2, **options)
    assert json.loads((dst / "band_data" / ".zarray").read_text())["zarr_format"] == 2
    with rasterio.open(f'ZARR:"{dst}":/band_data') as out:
        whole = geosr.upscale_file(src, tmp_path / "whole.tif", **options)
        with rasterio.open(whole) as ref:
            np.testing.assert_array_equal(out.read(), ref.read())
            assert out.transform == ref.transform and out.crs == ref.crs
    # The finished v2 output is this job's (a no-op with --resume), not the v3 job's.
    assert geosr.upscale_file(src, dst, resume=True, zarr_format=2, **options) == dst
    with pytest.raises(OutputError, match="output of a different job"):
        geosr.upscale_file(src, dst, resume=True, **options)  # v3, the default
    assert leftovers(tmp_path, dst) == []


def test_ctrl_c_keeps_the_finished_tiles_for_resume(job, tmp_path: Path) -> None:
    dst = tmp_path / "out.tif"
    # Ctrl-C as a terminal delivers it.  A shell that runs the suite in the background
    # (`make test &`, `nohup ... &`) starts it with SIGINT ignored, which a child
    # inherits through exec: the run then ignored the SIGINT below and exited 0.  A
    # handled signal, unlike an ignored one, is reset to its default in the child.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        proc = subprocess.Popen(CLI(job, dst), stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    journal = run_dir(dst) / "journal"
    deadline = time.time() + 120
    while not (journal.exists() and journal.read_text().count("\n") >= 2):
        assert proc.poll() is None and time.time() < deadline, "the run ended before it was interrupted"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "--resume" in stderr and "Traceback" not in stderr
    assert not dst.exists() and journal.exists()
    resume(job, dst)
    assert dst.read_bytes() == job["ref"].read_bytes()


def test_resume_notices_a_changed_aoi_or_frame(job, tmp_path: Path, capfd, monkeypatch) -> None:
    """Before, the fingerprint held their paths only: a resumed run mixed the tiles of the
    old AOI polygon (or frame) with the new one's."""
    ring = [UTM_TRANSFORM @ corner for corner in ((5, 5), (95, 5), (95, 115), (5, 115), (5, 5))]
    aoi = tmp_path / "field.geojson"

    def write_aoi(points: list) -> None:
        polygon = {"type": "Polygon", "coordinates": [[list(p) for p in points]]}
        crs = {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32633"}}
        aoi.write_text(json.dumps({"type": "Feature", "properties": {}, "geometry": polygon, "crs": crs}))

    write_aoi(ring)
    frame = tmp_path / "d2.tif"
    with rasterio.open(job["src"]) as src:
        profile, pixels = src.profile, src.read()
    with rasterio.open(frame, "w", **profile) as dst:
        dst.write(pixels)
    dst = tmp_path / "out.tif"
    extra = ("--aoi", str(aoi), "--frame", str(frame))
    killed = geosr_run(job, dst, *extra, env={"GEOSR_FAULT_AT": "journal:3"})
    assert killed.returncode != 0 and run_dir(dst).exists()

    write_aoi([ring[0], ring[1], ring[3], ring[0]])  # a triangle of the same extent
    again = geosr_here(job, dst, *extra, "--resume", capfd=capfd, monkeypatch=monkeypatch)
    assert again.returncode == 2 and "differs in --aoi (its file, or the area in it)" in again.stderr, (
        again.stderr
    )
    write_aoi(ring)
    with rasterio.open(frame, "r+") as changed:
        changed.write(pixels // 2)
    again = geosr_here(job, dst, *extra, "--resume", capfd=capfd, monkeypatch=monkeypatch)
    assert again.returncode == 2 and "differs in --frame (which files, or a file changed)" in again.stderr, (
        again.stderr
    )


def test_resume_notices_a_changed_source_of_a_vrt_input(job, tmp_path: Path, capfd, monkeypatch) -> None:
    """The fingerprint stamped the VRT file alone: a source rewritten between an interrupted
    run and its --resume (the VRT itself untouched) gave an output of both versions' tiles."""
    from rasterio.shutil import copy

    source = tmp_path / "tile.tif"
    copy(job["src"], source, driver="GTiff")
    vrt = tmp_path / "mosaic.vrt"
    copy(source, vrt, driver="VRT")
    vrt_job = {**job, "src": vrt}
    dst = tmp_path / "out.tif"
    killed = geosr_run(vrt_job, dst, env={"GEOSR_FAULT_AT": "journal:3"})
    assert killed.returncode != 0 and run_dir(dst).exists()
    with rasterio.open(source, "r+") as changed:  # a patch of it, leaving its percentiles be
        pixels = changed.read()
        pixels[:, 60:70, 40:50] = pixels[:, 60:70, 40:50][:, ::-1]
        changed.write(pixels)
    again = geosr_here(vrt_job, dst, "--resume", capfd=capfd, monkeypatch=monkeypatch)
    assert again.returncode == 2, again.stderr
    assert "differs in a file read with the input (a VRT's source" in again.stderr, again.stderr


def test_resume_notices_a_zarr_input_whose_chunks_were_rewritten(make_raster, tmp_path: Path) -> None:
    """The fingerprint stamped a Zarr input by its folder's size and mtime, which a chunk
    rewritten in place (zarr's update) leaves as they were: the resumed run mixed the tiles
    of both versions of the store."""
    store = tmp_path / "scene.zarr"
    geosr.upscale_file(make_raster(height=20, width=20), store, scale=2, model="bicubic", tile=16)
    dst = tmp_path / "out.tif"
    options = {"scale": 2, "model": "bicubic", "tile": 16}

    with pytest.raises(KeyboardInterrupt):
        geosr.upscale_file(store, dst, progress=ctrl_c_after_a_batch, **options)
    pixels = zarr.open_array(str(store), path="band_data", mode="r+")
    # Values inside the scene's range (its normalisation stays), one chunk rewritten in place.
    pixels[0, 10:20, 10:20] = pixels[0, 10:20, 10:20] - 1
    with pytest.raises(StaleRunError, match=r"differs in .*the input's modification time"):
        geosr.upscale_file(store, dst, resume=True, **options)


def test_a_remote_inputs_version_is_part_of_the_job(tmp_path: Path) -> None:
    """Before, a URL's fingerprint was its name alone: a resumed run mixed tiles of two
    versions of the file behind it.  Its Content-Length and ETag or Last-Modified now count."""
    from functools import partial
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    from geosr.fingerprint import file_stamp

    (tmp_path / "scene.tif").write_bytes(b"one version")
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(SimpleHTTPRequestHandler, directory=str(tmp_path)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/scene.tif"
        first = file_stamp(url)
        assert first[0] == len(b"one version") and first[1]
        (tmp_path / "scene.tif").write_bytes(b"another, longer version")
        os.utime(tmp_path / "scene.tif", (time.time() + 5, time.time() + 5))
        assert file_stamp(url) != first and file_stamp(f"/vsicurl/{url}") == file_stamp(url)
        assert file_stamp(url.replace("scene", "missing")) == (None, None)
    finally:
        server.shutdown()
        server.server_close()


def test_resume_after_the_rename_still_writes_the_stac_item_and_quicklook(
    job, tmp_path: Path, capfd, monkeypatch
) -> None:
    """Killed after the rename (a phase the README lists), the resume found the output
    finished and returned: exit 0, but the --stac Item and --quicklook PNG asked for were
    never written.  A kept output's missing extras are now written; present ones are kept."""
    dst = tmp_path / "out.tif"
    killed = geosr_run(job, dst, "--stac", "--quicklook", env={"GEOSR_FAULT_AT": "commit:1"})
    assert killed.returncode == -signal.SIGKILL and dst.exists()
    assert not (tmp_path / "out.stac.json").exists()
    finished = dst.stat().st_mtime_ns
    done = geosr_here(job, dst, "--stac", "--quicklook", "--resume", capfd=capfd, monkeypatch=monkeypatch)
    assert done.returncode == 0, done.stderr
    assert dst.stat().st_mtime_ns == finished  # nothing computed again
    item = tmp_path / "out.stac.json"
    assert json.loads(item.read_text())["assets"]["data"]["href"] == "./out.tif"
    assert (tmp_path / "out.quicklook.png").stat().st_size > 0
    written = item.stat().st_mtime_ns
    assert geosr_here(job, dst, "--stac", "--resume", capfd=capfd, monkeypatch=monkeypatch).returncode == 0
    assert item.stat().st_mtime_ns == written


@pytest.mark.parametrize("dtype", ["int32", "uint16"])
def test_a_run_begun_before_the_exact_projection_is_not_resumed(
    make_raster, tmp_path: Path, dtype: str
) -> None:
    """An int32, uint32 or float64 run interrupted before the projection was redone in float64
    resumed into tiles ~1 DN off the old ones; other dtypes' pixels did not change, nor may their runs."""
    src = make_raster(count=1, height=40, width=40, dtype=dtype)
    dst = tmp_path / "out.tif"
    options = {"scale": 2, "tile": 16}  # the default model, which projects
    with pytest.raises(KeyboardInterrupt):
        geosr.upscale_file(src, dst, progress=ctrl_c_after_a_batch, **options)
    manifest_path = run_dir(dst) / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    fingerprint = manifest["fingerprint"]
    assert ("projection" in fingerprint) == (dtype == "int32")
    fingerprint.pop("projection", None)  # as a run of geosr before the change stored it
    manifest_path.write_text(json.dumps(manifest))
    if dtype == "int32":
        with pytest.raises(StaleRunError, match="differs in the radiometric projection"):
            geosr.upscale_file(src, dst, resume=True, **options)
    else:
        assert geosr.upscale_file(src, dst, resume=True, **options) == dst
