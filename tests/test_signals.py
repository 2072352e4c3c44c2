"""Ctrl-C and SIGTERM (``timeout``, Slurm, ``docker stop``): one line saying how to go on,
exit status 128 + the signal, no traceback, whenever the signal arrives."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import rasterio

import geosr
from geosr.io.runstate import run_dir
from tests.conftest import UTM_TRANSFORM, coordinate_pattern
from tests.test_run import random_model_file

GEOSR = Path(sys.executable).with_name("geosr")
RUN = ["--scale", "2", "--tile", "16", "--batch-size", "4", "--device", "cpu", "--precision", "fp32"]


def start(args: list[str], script: str | None = None) -> subprocess.Popen[str]:
    """``geosr ARGS`` (or the Python ``script`` with ARGS) in a subprocess that gets SIGINT as
    from a terminal."""
    # A suite run in the background (`make test &`) has SIGINT ignored, which exec
    # passes on; a handled signal is reset to its default in the child instead.
    command = [str(GEOSR)] if script is None else [sys.executable, "-c", script]
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return subprocess.Popen([*command, *args], stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)


def wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.time() + 120
    while not ready():
        assert proc.poll() is None and time.time() < deadline, "the run ended before the signal"
        time.sleep(0.02)


def stopped(proc: subprocess.Popen[str], signum: int) -> str:
    """Send ``signum``; the one line of stderr, once the status says the signal was handled."""
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1, stderr
    return stderr


def opening_a_fifo(proc: subprocess.Popen[str]) -> bool:
    """True once a thread of ``proc`` waits in the open of a FIFO for its other end (the kernel's
    ``wait_for_partner``), which a fixed second's sleep took for granted: slow when it was there
    at once, and a signal sent too early under load."""
    for task in Path(f"/proc/{proc.pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # a thread that has just ended
            if (task / "wchan").read_text() == "wait_for_partner":
                return True
    return False


def loading_torch(proc: subprocess.Popen[str]) -> bool:
    """True once ``proc`` maps torch's library: it is importing torch, before any tile."""
    maps = Path(f"/proc/{proc.pid}/maps")
    return maps.exists() and "libtorch" in maps.read_text()


@pytest.fixture
def scene(tmp_path: Path) -> Path:
    src = tmp_path / "scene.tif"
    # 56 tiles of 16 px in batches of 4: a signal after the second lands mid-run.
    profile = {"driver": "GTiff", "count": 2, "height": 120, "width": 100, "dtype": "uint16"}
    with rasterio.open(src, "w", crs="EPSG:32633", transform=UTM_TRANSFORM, **profile) as f:
        f.write(coordinate_pattern(2, 120, 100))
    return src


def test_sigterm_mid_run_keeps_the_tiles_and_prints_the_resume_command(scene: Path, tmp_path: Path) -> None:
    # SIGTERM used to end the run with status 143 and not a word.
    weights = random_model_file(tmp_path, 2)
    dst = tmp_path / "out.tif"
    proc = start(["run", str(scene), "-o", str(dst), "--model", str(weights), *RUN])
    journal = run_dir(dst) / "journal"
    wait_for(proc, lambda: journal.exists() and journal.read_text().count("\n") >= 2)
    line = " ".join(stopped(proc, signal.SIGTERM).split())
    assert "terminated (SIGTERM)" in line and "(to resume: geosr run" in line and "--resume)" in line, line
    assert not dst.exists() and journal.exists()
    # It said "the finished tiles are kept beside it", not how many, where geosr info and
    # the next run say "N of 56 tiles done".
    done = len(journal.read_text().split())
    assert (
        f"its output is not written yet, {done} of 56 tiles are kept beside it: rerun with --resume" in line
    ), line
    options = {"scale": 2, "tile": 16, "batch_size": 4, "device": "cpu", "precision": "fp32"}
    geosr.upscale_file(scene, dst, model=str(weights), resume=True, **options)
    assert dst.exists() and not run_dir(dst).exists()


def test_a_signal_mid_run_in_a_batch_tells_of_the_outputs_written_before(scene: Path, tmp_path: Path) -> None:
    """In a batch, a run interrupted mid-way said "no output was written" with the outputs of
    the inputs before it in place."""
    weights = random_model_file(tmp_path, 2)
    second = tmp_path / "second.tif"
    second.write_bytes(scene.read_bytes())
    folder = tmp_path / "out"
    folder.mkdir()
    proc = start(["run", str(scene), str(second), "-o", str(folder), "--model", str(weights), *RUN])
    journal = run_dir(folder / "second_x2.tif") / "journal"
    wait_for(proc, lambda: journal.exists() and journal.read_text().count("\n") >= 2)
    line = " ".join(stopped(proc, signal.SIGTERM).split())
    done = len(journal.read_text().split())
    assert (
        f"second.tif: terminated (SIGTERM); its output is not written yet, {done} of 56 tiles are kept "
        "beside it, and the output before it is written: rerun with --resume to finish"
    ) in line, line
    assert (folder / "scene_x2.tif").exists() and not (folder / "second_x2.tif").exists()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see torch loading")
@pytest.mark.parametrize(("signum", "word"), [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "SIGTERM")])
def test_a_signal_while_torch_loads_gets_its_line(
    scene: Path, tmp_path: Path, signum: int, word: str
) -> None:
    # typer turned a Ctrl-C before the tiling into a silent exit 130.
    dst = tmp_path / "out.tif"
    proc = start(["run", str(scene), "-o", str(dst), "--model", "bicubic", *RUN])
    wait_for(proc, lambda: loading_torch(proc))
    line = " ".join(stopped(proc, signum).split())
    assert line.startswith("error:") and word in line and "nothing was written" in line, line
    assert "run the same command again" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs /proc to see the imports")
def test_a_ctrl_c_while_the_cli_imports_gets_its_line(scene: Path, tmp_path: Path) -> None:
    # Before geosr.cli had imported typer and rich (the first ~0.25 s), a Ctrl-C printed
    # the traceback of whichever import it interrupted (geosr.entry now handles it).
    dst = tmp_path / "out.tif"
    proc = start(["run", str(scene), "-o", str(dst), "--model", "bicubic", *RUN])
    maps = Path(f"/proc/{proc.pid}/maps")
    wait_for(proc, lambda: maps.exists() and "_datetime" in maps.read_text())  # typer is importing
    line = " ".join(stopped(proc, signal.SIGINT).split())
    assert line.startswith("error:") and "interrupted" in line and "nothing was written" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_an_interrupt_between_inputs_points_to_resume(scene: Path, tmp_path: Path) -> None:
    # The second input waits on its AOI, a named pipe the test stops feeding once the first
    # output is written: a Ctrl-C lands after that output and before the second's run state.
    # Before: "nothing was written: run the same command again", which then refused the
    # first output ("already exists ... pass --resume").
    second = tmp_path / "second.tif"
    second.write_bytes(scene.read_bytes())
    aoi = tmp_path / "aoi.geojson"
    os.mkfifo(aoi)
    # Inside the scene (pixels about 23-76, 26-96): one past it is said to be clipped, a second line.
    ring = [[12.556, 52.9145], [12.5635, 52.9145], [12.5635, 52.9205], [12.556, 52.9205], [12.556, 52.9145]]
    box = {"type": "Polygon", "coordinates": [ring]}
    folder = tmp_path / "out"
    folder.mkdir()
    first_output = folder / "scene_x2.tif"

    def feed() -> None:
        while not first_output.exists():
            with open(aoi, "w") as pipe:  # blocks until the run opens the AOI
                pipe.write(json.dumps(box))
            time.sleep(0.2)  # the reader reaches the end and closes before the next writer opens

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    args = ["run", str(scene), str(second), "-o", str(folder), "--aoi", str(aoi), "--model", "bicubic"]
    proc = start([*args, *RUN])
    try:
        while not first_output.exists():
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.02)
        wait_for(proc, lambda: opening_a_fifo(proc))  # the second input is blocked on the pipe
        line = " ".join(stopped(proc, signal.SIGINT).split())
    finally:
        os.close(os.open(aoi, os.O_RDONLY | os.O_NONBLOCK))  # frees a feeder blocked in open
    assert "second.tif: interrupted before any tile ran; the output before it is written" in line, line
    assert "(to resume: geosr run" in line and "--resume)" in line, line
    assert not (folder / "second_x2.tif").exists()


def test_a_signal_inside_gdals_error_callback_is_not_lost(scene: Path, tmp_path: Path) -> None:
    # The second input is a FIFO, whose open blocks in GDAL: SIGTERM makes the open fail
    # ("Interrupted system call"), and the Terminated raised inside rasterio's error callback
    # was dropped ("Exception ignored in: 'rasterio._env.log_error'" and its traceback), so
    # the input was reported unreadable and the run exited 2 instead of 143.
    fifo = tmp_path / "b.tif"
    os.mkfifo(fifo)
    folder = tmp_path / "out"
    folder.mkdir()
    proc = start(["run", str(scene), str(fifo), "-o", str(folder), "--model", "bicubic", *RUN])
    try:
        wait_for(proc, (folder / "scene_x2.tif").exists)
        wait_for(proc, lambda: opening_a_fifo(proc))  # the second input is blocked opening it
        line = " ".join(stopped(proc, signal.SIGTERM).split())
    finally:
        os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))  # nothing stays blocked on it
    assert "b.tif: terminated (SIGTERM) before any tile ran; the output before it is written" in line, line
    assert "--resume)" in line, line


def test_an_interrupt_once_the_output_is_written_says_to_resume(make_raster, tmp_path: Path) -> None:
    """A Ctrl-C after the output was renamed into place (as the run removed its state,
    or wrote its --stac/--quicklook files; seen with a SIGINT in a real run) said "before
    any tile ran; nothing was written: run the same command again", which then refused the
    output as "already exists".  An old output the run did not replace is not claimed."""
    from geosr import interrupts

    src = make_raster(height=20, width=20)
    dst = tmp_path / "out.tif"
    stamp = getattr(interrupts, "output_stamp", lambda _: None)
    before = stamp(dst)
    geosr.upscale_file(src, dst, scale=2, model="bicubic")
    line = str(interrupts.interrupted_run(KeyboardInterrupt(), str(src), dst, previous=before))
    assert "nothing was written" not in line and f"after {dst} was written" in line
    assert "rerun with --resume" in line
    old = str(interrupts.interrupted_run(KeyboardInterrupt(), str(src), dst, previous=stamp(dst)))
    assert f"after {dst} was written" not in old


def test_a_signal_dropped_in_a_finalizer_still_stops_the_command() -> None:
    """A SIGTERM whose handler ran inside a finalizer (``__del__``, run by the garbage
    collector wherever the main thread was) was dropped as "Exception ignored": the command
    went on to its end, exit 0. Seen once in CI: training outlived a SIGTERM sent while its
    store was built."""
    from geosr.interrupts import Terminated, signals_as_interrupts

    class SignalledWhileCollected:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside the finalizer
                pass

    with signals_as_interrupts(), pytest.raises(Terminated):
        SignalledWhileCollected()  # collected at once: the signal is handled and dropped
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the command's work goes on
            time.sleep(0.001)


SWAP_INTERRUPTED = """
import os, signal, sys
from pathlib import Path
from geosr.interrupts import Terminated, signals_as_interrupts
from geosr.io.atomic import TMP_MARKER, replace_atomically

rename = Path.replace

def signalled_once_moved_aside(self, target):
    done = rename(self, target)
    if TMP_MARKER + "old-" in str(target):  # the old output is aside, the new one not yet in
        os.kill(os.getpid(), signal.SIGTERM)
    return done

Path.replace = signalled_once_moved_aside
with signals_as_interrupts():
    try:
        replace_atomically(Path(sys.argv[1]), Path(sys.argv[2]))
    except Terminated:
        sys.exit(143)
"""


def test_a_signal_during_the_zarr_swap_leaves_one_output_in_place(tmp_path: Path) -> None:
    # A Zarr store replaces the one of an earlier run (--overwrite) in two renames: a SIGTERM
    # between them left the old store hidden in a temporary folder, then deleted, and the new
    # one not in place: no output at all.  It now takes effect once the new one is in.
    old, new = tmp_path / "out.zarr", tmp_path / "new.zarr"
    for store, text in ((old, "old"), (new, "new")):
        store.mkdir()
        (store / "zarr.json").write_text(text)
    proc = subprocess.run(
        [sys.executable, "-c", SWAP_INTERRUPTED, str(new), str(old)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 143, proc.stderr
    assert (old / "zarr.json").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.zarr"]


ZARR_CALL_INTERRUPTED = """
import os, signal, sys
import zarr.core.sync
from geosr import cli

call = zarr.core.sync.sync

def interrupted(coroutine, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # raised here: the coroutine is never awaited
    return call(coroutine, *args, **kwargs)

zarr.core.sync.sync = interrupted
sys.argv[0] = "geosr"
cli.main()
"""


def test_a_ctrl_c_inside_a_zarr_call_prints_no_coroutine_warning(scene: Path, tmp_path: Path) -> None:
    # A Ctrl-C that stopped zarr between making a coroutine and running it (in the run
    # state's store, for any output) printed, under the one line, Python's "RuntimeWarning:
    # coroutine 'AsyncGroup.update_attributes' was never awaited" and a tracemalloc hint.
    dst = tmp_path / "out.tif"
    proc = start(["run", str(scene), "-o", str(dst), "--model", "bicubic", *RUN], ZARR_CALL_INTERRUPTED)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert len(stderr.strip().splitlines()) == 1 and "interrupted" in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


DISCARD_INTERRUPTED = """
import os, shutil, signal, sys, time
from pathlib import Path
from geosr.io.runstate import RunState, run_dir

remove_tree = shutil.rmtree

def interrupted_as_it_starts(path, *args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C, as the first one's cleanup begins
    time.sleep(0.05)
    return remove_tree(path, *args, **kwargs)

shutil.rmtree = interrupted_as_it_starts
state = RunState.acquire(Path(sys.argv[1]))
state.prepare({"job": 1}, 4, resume=False, restart=False)
(state.store / "chunk").mkdir(parents=True)
try:
    state.discard()
except KeyboardInterrupt:
    sys.exit(130 if not run_dir(Path(sys.argv[1])).exists() else 3)
"""


def _stops_leaving_nothing(script: str, output: Path) -> None:
    """Run ``script`` on ``output`` in a child: it stops with 130, and ``output``'s folder is empty."""
    proc = start([str(output)], script)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert list(output.parent.iterdir()) == []


def test_a_second_ctrl_c_while_the_run_state_is_removed_leaves_none(tmp_path: Path) -> None:
    # A run stopped before its first tile was journaled removes its run state; a second
    # Ctrl-C then left it, or half of it, and the line said "the finished tiles are kept
    # beside it: rerun with --resume" of a run that had finished none.
    _stops_leaving_nothing(DISCARD_INTERRUPTED, tmp_path / "out.tif")


CHECKPOINT_INTERRUPTED = """
import json, os, signal, sys
from pathlib import Path
import torch
from safetensors import safe_open
from geosr.train import checkpoint
from geosr.interrupts import signals_as_interrupts

write = checkpoint.atomic_write

def signalled_after_the_second_tensors(target, save):
    write(target, save)
    if target.suffix == ".safetensors" and (target.parent / "last.json").exists():
        os.kill(os.getpid(), signal.SIGTERM)

checkpoint.atomic_write = signalled_after_the_second_tensors
folder = Path(sys.argv[1])
model = torch.nn.Linear(2, 2)
optimizer = torch.optim.Adam(model.parameters())
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
with signals_as_interrupts():
    for step in (1, 2):
        try:
            state = checkpoint.TrainState(step=step)
            kept = {"model": model, "optimizer": optimizer, "scheduler": scheduler}
            checkpoint.save_checkpoint(folder, **kept, state=state, config={})
        except KeyboardInterrupt:
            pass
with safe_open(str(folder / "last.safetensors"), "pt") as tensors:
    print(tensors.metadata()["step"], json.loads((folder / "last.json").read_text())["step"])
"""


def test_a_signal_while_a_training_checkpoint_is_written_leaves_one_step(tmp_path: Path) -> None:
    # The checkpoint is two files, tensors then state: a SIGTERM between them left the
    # tensors of step 2 with the state of step 1, which --resume loaded as one checkpoint.
    proc = subprocess.run(
        [sys.executable, "-c", CHECKPOINT_INTERRUPTED, str(tmp_path)],
        check=False,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["2", "2"], proc.stdout


@pytest.mark.parametrize(
    ("signum", "said"), [(signal.SIGTERM, "terminated (SIGTERM)"), (signal.SIGINT, "interrupted")]
)
def test_a_signal_during_training_is_one_line_with_the_command_that_resumes(
    scene: Path, tmp_path: Path, signum: signal.Signals, said: str
) -> None:
    # Training said "interrupted; continue with the same command and --resume (run folder
    # ...)", also for a SIGTERM, without "error:" and wrapped by rich at 80 columns in a log.
    # Then Ctrl-C said nothing: "error: ; the run is kept in run: ...".
    run = tmp_path / "run"
    fast = ["--chip", "8", "--batch-size", "2", "--device", "cpu", "--precision", "fp32", "--threads", "1"]
    # Validation rasters, or the run says first that it measures no validation PSNR: two lines.
    val = tmp_path / "val.tif"
    shutil.copyfile(scene, val)
    fast += ["--val", str(val)]
    proc = start(
        [
            "train",
            str(scene),
            "-s",
            "2",
            "--steps",
            "100000",
            "--checkpoint-every",
            "1",
            *fast,
            "-o",
            str(run),
        ]
    )
    wait_for(proc, (run / "checkpoints" / "last.json").exists)
    line = stopped(proc, signum).strip()
    # It said "the run is kept in run: continue it with --resume (to resume: ... --resume)".
    checkpoints = re.escape(str(run / "checkpoints"))
    kept = rf"error: {re.escape(said)} after step \d+ of 100000; its checkpoint is kept in {checkpoints} "
    assert re.match(kept + r"\(to resume: geosr train ", line), line
    assert line.endswith(f"-o {run} --resume)") and line.count("--resume") == 1, line


def test_a_training_interrupted_before_its_first_checkpoint_says_it_starts_again(tmp_path: Path) -> None:
    # (Before the first step, as its data is read.) No checkpoint to name, nor a step reached.
    from geosr.train.cli import _interrupted
    from geosr.train.config import load_config

    run = tmp_path / "run"
    expected = f"interrupted before its first checkpoint; the run in {run} starts again from step 0"
    assert _interrupted("interrupted", load_config(None, {"output": str(run)})) == expected


LATE_SIGNAL = """
import atexit, os, signal, sys
from geosr import entry

def second_ctrl_c(kill=os.kill, pid=os.getpid(), signum=signal.SIGINT):
    kill(pid, signum)
    for _ in range(100_000):  # its handler, if any, runs here
        pass

class CollectedLast:
    def __del__(self):
        second_ctrl_c()

if sys.argv[1] == "atexit":
    atexit.register(second_ctrl_c)  # as Python ends threads and runs its exit callbacks
elif sys.argv[1] == "teardown":
    last = CollectedLast()  # as Python frees the modules, its default handlers back
else:
    from geosr import cli

    def interrupted_print(*args, printing=cli.err.print, **kwargs):
        second_ctrl_c()  # as the line is printed (rich imports its emoji table then)
        printing(*args, **kwargs)

    cli.err.print = interrupted_print
sys.argv = ["geosr", "run", sys.argv[2]]
entry.main()
"""


@pytest.mark.parametrize(("when", "status"), [("report", 130), ("atexit", 2), ("teardown", 2)])
def test_a_signal_as_the_command_exits_keeps_its_line(tmp_path: Path, when: str, status: int) -> None:
    # A second Ctrl-C as the first one's line was printed: a traceback, status -2. After the
    # line, as Python tore down torch, GDAL and zarr (a second or more): "Exception ignored in
    # atexit callback" and a traceback, or the process killed by the signal (status -2, not
    # the command's) once Python had put back its default handlers.
    proc = start([when, str(tmp_path / "missing.tif")], LATE_SIGNAL)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert len(stderr.strip().splitlines()) == 1 and "missing.tif" in stderr, stderr


SMALL_FILE_INTERRUPTED = """
import os, signal, sys, time
from pathlib import Path
from geosr.io.atomic import write_small_file

def interrupted_half_way(tmp):
    tmp.write_text("{")
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)

try:
    write_small_file(Path(sys.argv[1]), interrupted_half_way, "STAC Item")
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_a_ctrl_c_while_the_stac_item_or_quicklook_is_written_leaves_no_temporary(tmp_path: Path) -> None:
    # A Ctrl-C as --stac or --quicklook wrote its file left .out.stac.json.tmp (or
    # .out.quicklook.png.tmp) beside the output.
    _stops_leaving_nothing(SMALL_FILE_INTERRUPTED, tmp_path / "out.stac.json")


ECHO_INTERRUPTED = """
import os, signal, sys, time
from pathlib import Path
import geosr.api
from geosr import cli

def written(source, target, **options):
    Path(target).write_text("the output")
    return Path(target)

def interrupted_echo(*args, printing=cli.typer.echo, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)  # as the output's path is printed
    time.sleep(0.05)
    printing(*args, **kwargs)

geosr.api.upscale_file = written
cli.typer.echo = interrupted_echo
sys.argv[0] = "geosr"
cli.main()
"""


def test_a_ctrl_c_as_the_output_is_printed_says_it_was_written(scene: Path, tmp_path: Path) -> None:
    # It said "interrupted; nothing was written: run the same command again", which then
    # refused the output as existing.
    dst = tmp_path / "out.tif"
    proc = start(["run", str(scene), "-o", str(dst), "--model", "bicubic"], ECHO_INTERRUPTED)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    line = " ".join(stderr.split())
    assert f"interrupted after {dst} was written; rerun with --resume" in line, line
