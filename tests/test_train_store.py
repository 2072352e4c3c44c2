"""Paired training store: built in parallel with Dask, read back, trained on."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from affine import Affine
from scipy import ndimage

from geosr.orchestrate.training_store import build_training_store
from geosr.train.config import load_config
from geosr.train.data import StoreSampler
from geosr.train.degrade import area_downsample
from geosr.train.registration import apply_shift
from geosr.train.store import pair_chips, read_store
from geosr.train.trainer import train
from tests.conftest import warnings_said, write_geotiff


@pytest.fixture
def pairs(tmp_path: Path) -> list[tuple[Path, Path]]:
    out = []
    for k, shift in enumerate([(0.5, -0.3), (-0.4, 0.6)]):
        rng = np.random.default_rng(k)
        hr = ndimage.gaussian_filter(rng.random((160, 160)), 2.0).astype(np.float32) * 1000
        lr = area_downsample(hr, 2)[None]
        lr_path = write_geotiff(tmp_path / f"lr{k}.tif", lr, Affine(20.0, 0, 1000.0, 0, -20.0, 9000.0))
        moved = (apply_shift(hr, shift) * 0.8 + 50)[None]
        hr_path = write_geotiff(tmp_path / f"hr{k}.tif", moved, Affine(10.0, 0, 1000.0, 0, -10.0, 9000.0))
        out.append((lr_path, hr_path))
    return out


def test_store_is_built_in_parallel_and_trains(tmp_path: Path, pairs) -> None:
    store = tmp_path / "store.zarr"
    info = build_training_store(pairs, store, scale=2, lr_chip=16, scheduler="threads", workers=2)
    assert info["complete"] and len(info["pairs"]) == 2
    for p, expected in zip(info["pairs"], [(0.5, -0.3), (-0.4, 0.6)], strict=True):
        assert abs(p["shift"][0] - expected[0]) <= 0.1 and abs(p["shift"][1] - expected[1]) <= 0.1
        assert p["chips"] > 0
    lr, hr = read_store(store, "train")
    vlr, _ = read_store(store, "val")
    assert lr.shape[1:] == (16, 16) and hr.shape[1:] == (32, 32) and vlr.shape[0] > 0
    # Co-registered and histogram-matched: the HR averages back to the LR.
    assert np.abs(area_downsample(hr, 2) - lr).mean() < 0.02
    batch_lr, batch_hr = StoreSampler(store, seed=0).batch(0, 4)
    assert batch_lr.shape == (4, 1, 1, 16, 16) and batch_hr.shape == (4, 1, 32, 32)
    cfg = load_config(
        None,
        {
            "scale": 2,
            "model": {"features": 8, "encoder_blocks": 1, "refine_steps": 1},
            "steps": 2,
            "batch_size": 2,
            "device": "cpu",
            "precision": "fp32",
            "threads": 1,
            "output": str(tmp_path / "run"),
            "data": {"store": str(store), "lr_chip": 16, "val_chips": 2, "val_border": 2},
        },
    )
    result = train(cfg)
    assert result.weights is not None and "val_psnr" in result.metrics


def test_paired_training_from_the_command_line_needs_no_recipe(tmp_path: Path, pairs, monkeypatch) -> None:
    import sys

    from geosr.cli import main

    args = ["geosr", "train", "--scale", "2", "--steps", "2", "--batch-size", "2", "--chip", "16"]
    for lr, hr in pairs:
        args += ["--lr", str(lr), "--hr", str(hr)]
    args += ["--device", "cpu", "--precision", "fp32", "--threads", "1", "-o", str(tmp_path / "run")]
    monkeypatch.setattr(sys, "argv", args)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code in (0, None)
    assert (tmp_path / "run" / "cnnrnn-fast_x2.safetensors").is_file()
    assert (tmp_path / "run" / "training_store.zarr").is_dir()


def test_a_resumed_paired_run_trains_on_the_store_it_built(tmp_path: Path, pairs, capfd, monkeypatch) -> None:
    """--resume built the store again from the pairs: every pair co-registered once more, and
    chips from files changed since the run began, or from other pairs."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    args = ["train", "-s", "2", *FAST, "-o", str(tmp_path / "run")]
    for lr, hr in pairs:
        args += ["--lr", str(lr), "--hr", str(hr)]
    assert run_cli(args, capfd, monkeypatch)[0] in (0, None)
    store = tmp_path / "run" / "training_store.zarr"
    before = {p: p.stat().st_mtime_ns for p in store.rglob("*")}
    code, err = run_cli([*args, "--resume"], capfd, monkeypatch)
    assert code in (0, None) and "resuming on the training store" in " ".join(err.split()), err
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before
    # The last pair left out: it trained on a store rebuilt from the first alone.
    code, err = run_cli([*args[:-4], "--resume"], capfd, monkeypatch)
    assert_one_clear_line(code, err, "cannot resume", "built from other --lr/--hr pairs (2, the first lr0")
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*")} == before


def test_a_store_another_run_builds_is_refused(tmp_path: Path, pairs, capfd, monkeypatch) -> None:
    """Two runs building one --store from their pairs at once (into other run folders) each
    removed what the other wrote: both ended in a traceback ('Directory not empty', 'does not
    exist').  The second is now one line naming the first's pid, and makes nothing."""
    import os

    from geosr.io.atomic import take_lock
    from tests.test_bad_input import assert_one_clear_line, run_cli

    store = tmp_path / "shared.zarr"
    lock = os.open(tmp_path / ".shared.zarr.geosr-lock", os.O_RDWR | os.O_CREAT)
    assert take_lock(lock) is None  # as the first run holds it
    args = ["train", "-s", "2", *FAST, "--store", str(store), "-o", str(tmp_path / "run")]
    for lr, hr in pairs:
        args += ["--lr", str(lr), "--hr", str(hr)]
    try:
        code, err = run_cli(args, capfd, monkeypatch)
    finally:
        os.close(lock)
    said = (f"cannot build the training store {store}", f"another geosr train (pid {os.getpid()})")
    assert_one_clear_line(code, err, *said, "--store")
    assert not store.exists() and not (tmp_path / "run").exists()


def test_store_on_a_local_distributed_cluster_matches_threads_and_takes_no_fixed_port(
    tmp_path: Path, pairs, dask_default_port_taken
) -> None:
    """scheduler="local" starts worker processes (a real LocalCluster): the same chips as the
    threaded build, no "Port 8787 is already in use" beside another Dask dashboard, and no
    scheduler left in the caller's process (distributed's cache of handlers kept the closed one,
    one more every call, as it kept those of workers=N runs: test_host)."""
    import gc

    from distributed import Scheduler

    def schedulers() -> int:
        gc.collect()
        return sum(issubclass(type(o), Scheduler) for o in gc.get_objects())

    threaded = build_training_store(pairs, tmp_path / "t.zarr", scale=2, lr_chip=16, scheduler="threads")
    before = schedulers()  # fewer after: those an earlier test's cluster left go too
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        local = build_training_store(
            pairs, tmp_path / "l.zarr", scale=2, lr_chip=16, scheduler="local", workers=2
        )
    assert not [w for w in seen if "already in use" in str(w.message)]
    assert schedulers() <= before
    assert [p["chips"] for p in local["pairs"]] == [p["chips"] for p in threaded["pairs"]]
    np.testing.assert_array_equal(
        read_store(tmp_path / "l.zarr", "train")[1], read_store(tmp_path / "t.zarr", "train")[1]
    )


FAST = ["--steps", "1", "--batch-size", "2", "--device", "cpu", "--precision", "fp32", "--threads", "1"]


def test_a_store_is_reused_only_at_its_own_scale_and_chip(tmp_path: Path, pairs, capsys, monkeypatch) -> None:
    from tests.test_bad_input import assert_one_clear_line, run_cli

    store = tmp_path / "store.zarr"
    build_training_store(pairs[:1], store, scale=2, lr_chip=16, scheduler="synchronous")
    base = ["train", "--store", str(store), *FAST, "-o", str(tmp_path / "run")]
    code, err = run_cli([*base, "-s", "4"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "store.zarr", "x2 chips, the run is x4", "-s 2", "rebuild the store")
    code, err = run_cli([*base, "-s", "2", "--chip", "32"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "16-px LR chips", "--chip 16", "rebuild the store")
    assert not (tmp_path / "run").exists()
    # Without --chip, the store's chip size is the run's (and its card's).
    assert run_cli([*base, "-s", "2"], capsys, monkeypatch)[0] in (0, None)
    card = json.loads((tmp_path / "run" / "cnnrnn-fast_x2.json").read_text())
    assert card["training"]["lr_chip"] == 16


@pytest.mark.parametrize("problem", ["missing", "swapped", "truncated"])
def test_a_failed_paired_run_leaves_no_store_or_run_folder(
    tmp_path: Path, pairs, capsys, monkeypatch, problem: str
) -> None:
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr, hr = pairs[0]
    if problem == "missing":
        hr = tmp_path / "nope.tif"
    elif problem == "swapped":
        lr, hr = hr, lr
    else:
        data = hr.read_bytes()
        hr.write_bytes(data[: len(data) // 2])
    run = tmp_path / "run"
    args = ["train", "--lr", str(lr), "--hr", str(hr), "-s", "2", "--chip", "16", *FAST, "-o", str(run)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, hr.name)
    assert not run.exists(), sorted(str(p.relative_to(run)) for p in run.rglob("*"))
    # An explicit store path is not left behind either, nor the folders made for it.
    args += ["--store", str(tmp_path / "stores" / "s.zarr")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, hr.name)
    assert not run.exists() and not (tmp_path / "stores").exists()


@pytest.mark.parametrize("extra", ["input", "--val"])
def test_hr_rasters_or_val_beside_a_store_are_refused(
    tmp_path: Path, pairs, capsys, monkeypatch, extra: str
) -> None:
    """A paired run trains and validates on its store alone: HR rasters or --val given with --store
    were silently dropped (and the card still listed --val as the validation data)."""
    from tests.test_bad_input import assert_one_clear_line, run_cli
    from tests.test_train_trainer import FAST

    store = tmp_path / "store.zarr"
    build_training_store(pairs[:1], store, scale=2, lr_chip=8, scheduler="synchronous")
    hr = str(pairs[1][1])
    data = [hr] if extra == "input" else ["--val", hr]
    args = ["train", *data, "--store", str(store), *FAST, "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    expected = "a paired run trains on the training store alone" if extra == "input" else "drop --val"
    assert_one_clear_line(code, err, "--store given together", expected)
    assert not (tmp_path / "run").exists()


def test_store_chips_smaller_than_the_validation_border_are_one_line(
    tmp_path: Path, pairs, capsys, monkeypatch
) -> None:
    """--chip 8 -s 2 makes 16-px HR validation chips, all border at the default 8 px: said as such,
    not as numpy's 'zero-size array' traceback."""
    from tests.test_bad_input import assert_one_clear_line, run_cli
    from tests.test_train_trainer import FAST

    (lr, hr), run = pairs[0], tmp_path / "run"
    args = ["train", "--lr", str(lr), "--hr", str(hr), *FAST, "-o", str(run)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "validation chips of 16 HR px", "8-px border", "--chip")
    assert not run.exists(), sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def test_the_card_of_a_store_run_names_the_store_as_its_validation(
    tmp_path: Path, pairs, make_raster, capsys, monkeypatch
) -> None:
    """A recipe's [[data.val]] is not what a --store run validates on (the store's split is): the
    card listed the recipe's rasters as the validation data of metrics that came from the store."""
    from tests.test_bad_input import run_cli

    store = tmp_path / "store.zarr"
    build_training_store(pairs[:1], store, scale=2, lr_chip=16, scheduler="synchronous")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(f'[[data.val]]\npath = "{pairs[1][1]}"\n', encoding="utf-8")
    args = ["train", "--recipe", str(recipe), "--store", str(store), "-s", "2", *FAST]
    assert run_cli([*args, "-o", str(tmp_path / "run")], capsys, monkeypatch)[0] in (0, None)
    card = json.loads((tmp_path / "run" / "cnnrnn-fast_x2.json").read_text())
    assert card["training"]["validation"] == str(store)


@pytest.mark.parametrize(("signum", "said"), [("SIGINT", "interrupted"), ("SIGTERM", "terminated (SIGTERM)")])
def test_an_interrupt_while_the_store_is_built_leaves_nothing(tmp_path: Path, signum: str, said: str) -> None:
    """SIGTERM while the pairs are co-registered said 'nothing was written: run the same command
    again', but left the run folder and an incomplete store, which that command then refused.
    Its line, and Ctrl-C's, said only "interrupted; nothing was written": it now says what was
    interrupted (the store's build), what is left (nothing: both removed) and how to go on, as
    training's own line does."""
    import signal

    from tests.test_signals import start, wait_for

    rng = np.random.default_rng(0)
    hr = ndimage.gaussian_filter(rng.random((1024, 1024)), 2.0).astype(np.float32) * 1000
    lr_path = write_geotiff(
        tmp_path / "lr.tif", area_downsample(hr, 2)[None], Affine(20.0, 0, 0, 0, -20.0, 0)
    )
    hr_path = write_geotiff(tmp_path / "hr.tif", hr[None], Affine(10.0, 0, 0, 0, -10.0, 0))
    run = tmp_path / "run"
    args = ["train", "--lr", str(lr_path), "--hr", str(hr_path), "-s", "2", "--chip", "16", *FAST]
    proc = start([*args, "-o", str(run)])
    wait_for(proc, (run / "training_store.zarr" / "zarr.json").exists)  # seconds of work left
    proc.send_signal(getattr(signal, signum))
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + getattr(signal, signum), stderr
    assert "Traceback" not in stderr and stderr.splitlines()[-1] == (
        f"error: {said} while building the training store {run / 'training_store.zarr'}, before any "
        f"training step; the unfinished store is removed, with the run folder {run}: run the same "
        "command again"
    ), stderr
    assert not run.exists(), sorted(str(p.relative_to(run)) for p in run.rglob("*"))


def test_a_pair_without_data_in_its_bottom_rows_still_has_validation_chips(tmp_path: Path) -> None:
    """The HR covers the top 60 % of the LR (NaN below): the last row of chips with data validates.

    The bottom 20 % of the LR rows held no valid chip, so such a pair alone gave 'training store
    ... has no val chip: use larger rasters or a smaller chip', whatever its size.
    """
    from geosr.train.store import pair_chips

    hr = ndimage.gaussian_filter(np.random.default_rng(4).random((128, 128)), 2.0).astype(np.float32) * 1000
    lr_path = write_geotiff(
        tmp_path / "lr.tif", area_downsample(hr, 2)[None], Affine(20.0, 0, 1000.0, 0, -20.0, 9000.0)
    )
    hr[76:] = np.nan
    hr_path = write_geotiff(tmp_path / "hr.tif", hr[None], Affine(10.0, 0, 1000.0, 0, -10.0, 9000.0))
    *_, split, _ = pair_chips(str(lr_path), str(hr_path), scale=2, lr_chip=8)
    assert split.sum() == 8  # the chip row at LR y = 24, the last one with data
    assert (split == 0).sum() == 24  # the three rows above it train


def test_resume_does_not_rebuild_another_runs_store(tmp_path: Path) -> None:
    """--lr/--hr --store S --resume, S the store of another job: refused before S is touched
    (the store was rebuilt from this run's pairs, and then the resume refused as differing)."""
    from geosr.errors import OutputError
    from geosr.train.config import to_dict
    from geosr.train.store import init_store
    from geosr.train.trainer import check_run_output

    run = tmp_path / "run"
    config = load_config(None, {"scale": 2, "output": str(run), "data": {"store": str(run / "own.zarr")}})
    run.mkdir()
    (run / "config.json").write_text(json.dumps(to_dict(config)))
    other = tmp_path / "other.zarr"
    init_store(other, scale=2, lr_chip=16, pairs=[{"lr": "a.tif", "hr": "b.tif"}])
    with pytest.raises(
        OutputError, match=rf"other\.zarr already exists and is not the store of the run .*--store {run}"
    ):
        check_run_output(config, resume=True, overwrite=False, new_store=other)
    init_store(run / "own.zarr", scale=2, lr_chip=16, pairs=[{"lr": "a.tif", "hr": "b.tif"}])
    check_run_output(config, resume=True, overwrite=False, new_store=run / "own.zarr")  # its own: rebuilt


def test_a_store_path_that_is_a_file_is_refused_before_anything(tmp_path: Path) -> None:
    """`geosr train --lr a.tif --hr b.tif --store b.tif --overwrite` (or any file as --store) went on
    to build the store there: a FileExistsError traceback from zarr, exit status 1."""
    from geosr.errors import OutputError
    from geosr.train.trainer import check_run_output

    taken = tmp_path / "hr.tif"
    taken.write_bytes(b"an input, not a store")
    config = load_config(None, {"scale": 2, "output": str(tmp_path / "run"), "data": {"store": str(taken)}})
    for overwrite in (False, True):
        with pytest.raises(OutputError, match=r"--store .*hr\.tif is a file, not a training store"):
            check_run_output(config, resume=False, overwrite=overwrite, new_store=taken)
    assert taken.read_bytes() == b"an input, not a store"


def test_a_scheduler_that_is_no_dask_address_is_an_option_error(tmp_path: Path, pairs) -> None:
    # Was dask's bare "ValueError: missing port number in address 'foo'" traceback, as geosr run's was.
    from geosr.errors import OptionError

    with pytest.raises(OptionError, match=r"--scheduler 'foo' is not a Dask scheduler address"):
        build_training_store(pairs, tmp_path / "s.zarr", scale=2, lr_chip=16, scheduler="foo")
    assert not (tmp_path / "s.zarr").exists()


def test_geosr_train_tells_a_misspelt_scheduler_before_building_and_names_every_form(
    tmp_path: Path, pairs, capfd, monkeypatch
) -> None:
    """'--scheduler thread' was told after "building the training store", and of the address
    form alone, where --help lists threads, processes, local or tcp://host:port."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (lr, hr) = pairs[0]
    run = tmp_path / "run"
    args = ["train", "--lr", str(lr), "--hr", str(hr), "-s", "2", "-o", str(run), "--scheduler", "thread"]
    code, err = run_cli(args, capfd, monkeypatch)
    assert_one_clear_line(
        code, err, "--scheduler 'thread' is not a Dask scheduler address", "tcp://HOST:8786"
    )
    assert "or threads, processes or local to build the store on this machine" in err, err
    assert "building" not in err and not run.exists()


def test_the_shift_removed_is_printed_with_its_axes_and_sign(
    tmp_path: Path, pairs, capfd, monkeypatch
) -> None:
    """It was a bare 'shift [0.48, -0.32] HR px': which number is which axis, which way?"""
    from tests.test_bad_input import run_cli

    (lr, hr), _ = pairs  # shifted by (0.5, -0.3)
    args = ["train", "-s", "2", *FAST, "--chip", "16", "--lr", str(lr), "--hr", str(hr), "-o", str(tmp_path)]
    code, err = run_cli(args, capfd, monkeypatch)
    text = " ".join(err.split())
    assert code == 0, err
    assert re.search(
        r"shift removed dy \+0\.[45]\d, dx -0\.[23]\d HR px \(\+: the HR lay down/right", text
    ), text


def test_a_shift_that_rounds_to_zero_prints_no_sign_of_direction() -> None:
    from geosr.train.cli import _shift_words

    assert _shift_words([-0.001, 0.004]).startswith("shift removed dy +0.00, dx +0.00 HR px")
    assert _shift_words([-0.006, 1.0]).startswith("shift removed dy -0.01, dx +1.00 HR px")


def test_a_missing_pair_file_is_one_line_before_the_store_is_built(
    tmp_path: Path, pairs, capfd, monkeypatch
) -> None:
    """It was found by the build, after 'building the training store ...' and the pairs before it,
    as 'cannot open X: X: No such file or directory'."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (lr, hr), _ = pairs
    missing = tmp_path / "nope.tif"
    args = [
        "train",
        "-s",
        "2",
        *FAST,
        "--lr",
        str(lr),
        "--hr",
        str(hr),
        "--lr",
        str(lr),
        "--hr",
        str(missing),
    ]
    code, err = run_cli([*args, "-o", str(tmp_path / "run")], capfd, monkeypatch)
    assert_one_clear_line(code, err, "nope.tif: no such file or directory; check the path")
    assert not (tmp_path / "run").exists()


def test_a_swapped_pair_is_one_line_before_the_store_is_built(
    tmp_path: Path, pairs, capfd, monkeypatch
) -> None:
    """Swapped files (or another refused pair) were found while the store was built, after the
    pairs before them had been co-registered, below 'building the training store ...'."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (lr, hr), _ = pairs
    args = ["train", "-s", "2", *FAST, "--lr", str(lr), "--hr", str(hr), "--lr", str(hr), "--hr", str(lr)]
    code, err = run_cli([*args, "-o", str(tmp_path / "run")], capfd, monkeypatch)
    assert_one_clear_line(code, err, "lr0.tif: its pixel (20 m) is coarser than", "swapped")
    assert not (tmp_path / "run").exists()


def test_a_run_built_from_relative_paths_resumes_from_another_folder(
    tmp_path: Path, pairs, capfd, monkeypatch
) -> None:
    """The store recorded 'lr0.tif' as given: resumed from another folder with the same files
    by absolute paths, the run was refused as built from other --lr/--hr pairs."""
    from tests.test_bad_input import run_cli

    (lr, hr), _ = pairs
    run = str(tmp_path / "run")
    monkeypatch.chdir(tmp_path)
    assert (
        run_cli(["train", "-s", "2", *FAST, "--lr", lr.name, "--hr", hr.name, "-o", run], capfd, monkeypatch)[
            0
        ]
        == 0
    )
    monkeypatch.chdir(tmp_path.parent)
    code, err = run_cli(
        ["train", "-s", "2", *FAST, "--lr", str(lr), "--hr", str(hr), "-o", run, "--resume"],
        capfd,
        monkeypatch,
    )
    assert code == 0 and "resuming on the training store" in " ".join(err.split()), err


def test_a_second_build_into_one_store_needs_overwrite_and_never_takes_other_files(
    tmp_path: Path, pairs
) -> None:
    """build_training_store replaced an existing store without a word (and would delete a folder
    of other files given as the store): it now asks for overwrite=True, and refuses the folder."""
    from geosr.errors import OutputError

    store = tmp_path / "store.zarr"
    build_training_store(pairs[:1], store, scale=2, lr_chip=16, scheduler="synchronous")
    kept = sorted(p.relative_to(store) for p in store.rglob("*"))
    with pytest.raises(OutputError, match=r"already exists: pass overwrite=True to rebuild it"):
        build_training_store(pairs, store, scale=2, lr_chip=16, scheduler="synchronous")
    assert sorted(p.relative_to(store) for p in store.rglob("*")) == kept
    info = build_training_store(pairs, store, scale=2, lr_chip=16, scheduler="synchronous", overwrite=True)
    assert len(info["pairs"]) == 2
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(OutputError, match="folder of other files"):
        build_training_store(pairs, folder, scale=2, lr_chip=16, scheduler="synchronous", overwrite=True)
    assert (folder / "notes.txt").read_text(encoding="utf-8") == "mine"


def test_an_undeclared_float_fill_in_a_pair_is_left_out_in_one_line(tmp_path: Path) -> None:
    """1e+39 in a float64 HR raster was cast to float32's infinity and left out of the pairs, said
    only as numpy's bare 'overflow encountered in cast'; 2e+38, a fill value to geosr run, was paired."""
    rng = np.random.default_rng(0)
    hr = ndimage.gaussian_filter(rng.random((160, 160)), 2.0) * 1000
    lr = write_geotiff(
        tmp_path / "lr.tif", area_downsample(hr, 2)[None], Affine(20.0, 0, 1000.0, 0, -20.0, 9000.0)
    )
    hr[50, 50] = hr[90, 90] = 1e39
    hr[120, 30] = -2e38
    hr_path = write_geotiff(tmp_path / "hr.tif", hr[None], Affine(10.0, 0, 1000.0, 0, -10.0, 9000.0))
    (_, hr_chips, _, _), lines = warnings_said(lambda: pair_chips(str(lr), str(hr_path), scale=2, lr_chip=8))
    assert lines == [
        f"{hr_path}: 3 of the 25600 pixels read hold 1e+39, a float fill value (1e+38 or more in "
        "magnitude) not declared as its nodata: they are left out of the pairs; declare it in the file "
        "(gdal_edit.py -a_nodata 1e+39 FILE)"
    ], lines
    assert np.abs(hr_chips).max() < 10
