"""The training loop on tiny synthetic data: learning, resume, outputs, recipes."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from geosr.errors import GeosrWarning, InputError, ModelError, OptionError, OutputError
from geosr.models import load_weights
from geosr.models.cnnrnn import CNNRNNConfig
from geosr.train.config import SceneSource, load_config
from geosr.train.trainer import Validator, train
from tests.conftest import warnings_said

TINY = {"features": 8, "encoder_blocks": 1, "refine_steps": 1}


def _scene(make_raster, name: str, seed: int) -> Path:
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    img = ndimage.gaussian_filter(rng.random((96, 96)), 1.5)
    img = (img - img.min()) / np.ptp(img) * 200 + 20
    return make_raster(name, data=img[None].astype("uint8"))


def _config(tmp_path: Path, train_path: Path, val_path: Path, **over):
    values = {
        "name": "cnnrnn-fast",
        "scale": 2,
        "model": TINY,
        "seed": 3,
        "steps": 6,
        "batch_size": 4,
        "threads": 1,
        "device": "cpu",
        "precision": "fp32",
        "val_every": 3,
        "checkpoint_every": 100,
        "output": str(tmp_path / "run"),
        "optim": {"lr": 3e-3, "warmup": 2},
        "degradation": {"multi_frame_probability": 0.5, "frames": [2, 3]},
        "data": {
            "train": [{"path": str(train_path)}],
            "val": [{"path": str(val_path)}],
            "lr_chip": 8,
            "val_chips": 4,
            "val_lr_chip": 16,
            "val_border": 2,
        },
    }
    values.update(over)
    return load_config(None, values)


@pytest.fixture
def scenes(make_raster) -> tuple[Path, Path]:
    return _scene(make_raster, "train.tif", 0), _scene(make_raster, "val.tif", 1)


def test_a_few_steps_lower_the_loss(tmp_path, scenes) -> None:
    cfg = _config(
        tmp_path,
        *scenes,
        steps=30,
        val_every=30,
        loss={"l1": 1.0, "ssim": 0.1},
        optim={"lr": 5e-3, "warmup": 1, "schedule": "constant"},
    )
    seen: list[float] = []
    result = train(cfg, progress=lambda step, total, logs: seen.append(logs["loss"]))
    assert result.step == 30 and result.weights is not None
    assert seen[-1] < seen[0]
    assert result.metrics["val_psnr"] > result.metrics["val_psnr_bicubic"] - 1.0


def test_resume_gives_bit_identical_weights(tmp_path, scenes) -> None:
    full = train(_config(tmp_path / "a", *scenes))
    stopped = train(_config(tmp_path / "b", *scenes), stop_after=3)
    assert stopped.weights is None and stopped.step == 3
    resumed = train(_config(tmp_path / "b", *scenes), resume=True)
    assert resumed.step == 6
    a, b = load_file(str(full.weights)), load_file(str(resumed.weights))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_training_leaves_the_callers_threads_and_random_states_as_they_were(tmp_path, scenes) -> None:
    """A notebook that trained went on with torch on the run's threads and every global random
    generator reseeded with the run's seed."""

    def draws() -> tuple[list[float], list[float], float]:
        return torch.rand(3).tolist(), np.random.rand(3).tolist(), random.random()

    def seed() -> None:
        torch.manual_seed(123)
        np.random.seed(123)
        random.seed(123)

    threads = torch.get_num_threads()
    config = _config(tmp_path, *scenes, steps=1, val_every=1, threads=threads + 1)
    seed()
    expected = draws()
    seed()
    train(config)
    assert torch.get_num_threads() == threads
    assert draws() == expected


@pytest.mark.parametrize("mode", [torch.no_grad, torch.inference_mode])
def test_training_runs_where_the_caller_turned_gradients_off(tmp_path, scenes, mode) -> None:
    """Inside torch.no_grad() (an inference notebook), the first step failed in torch's
    traceback "element 0 of tensors does not require grad"."""
    with mode():
        result = train(_config(tmp_path, *scenes, steps=2, val_every=1))
        assert not torch.is_grad_enabled()  # the caller's mode is kept around the call
    assert result.step == 2 and result.weights is not None


def test_a_float64_default_dtype_trains_the_float32_weights(tmp_path, scenes) -> None:
    """After torch.set_default_dtype(torch.float64) the model was built, trained and saved in
    float64, with other weights than the same recipe gives."""
    expected = load_file(str(train(_config(tmp_path / "a", *scenes, steps=2, val_every=1)).weights))
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        result = train(_config(tmp_path / "b", *scenes, steps=2, val_every=1))
        assert torch.get_default_dtype() == torch.float64  # the caller's, after the call
    finally:
        torch.set_default_dtype(previous)
    got = load_file(str(result.weights))
    assert got.keys() == expected.keys()
    for key in got:
        assert torch.equal(got[key], expected[key]), key


def test_a_checkpoint_of_two_steps_is_refused(tmp_path, scenes) -> None:
    # Killed between the checkpoint's two files: the tensors of step 2 with the state of
    # step 3 resumed as one checkpoint, which the module's docstring said was checked.
    train(_config(tmp_path, *scenes), stop_after=2)
    tensors = tmp_path / "run" / "checkpoints" / "last.safetensors"
    older = tensors.read_bytes()
    train(_config(tmp_path, *scenes), resume=True, stop_after=3)
    tensors.write_bytes(older)
    with pytest.raises(
        InputError, match=r"holds step 2 and last.json step 3 .*start again without resume=True"
    ):
        train(_config(tmp_path, *scenes), resume=True)


def test_outputs_card_and_config(tmp_path, scenes) -> None:
    cfg = _config(tmp_path, *scenes, steps=2, val_every=1)
    result = train(cfg, recipe="pipelines/x.toml")
    run = tmp_path / "run"
    stored = json.loads((run / "config.json").read_text())
    assert stored["scale"] == 2 and stored["model"] == TINY
    assert (run / "checkpoints" / "last.safetensors").is_file()
    _state, card = load_weights(result.weights)
    assert card.normalisation == {"method": "percentile", "low": 0.1, "high": 99.9}
    assert card.bands is None and card.scale == 2
    assert {"val_psnr", "val_psnr_bicubic", "val_gain_db"} <= set(card.metrics)
    assert card.training["recipe"] == "pipelines/x.toml"
    assert card.training["params"] > 0 and card.training["kflop_per_lr_pixel"] > 0


def test_the_card_records_relative_training_paths_absolute(tmp_path, scenes, monkeypatch) -> None:
    """--hr train.tif was recorded as 'train.tif' in the card beside the weights, which named
    no file once read from another folder, and the card does not say where training ran."""
    monkeypatch.chdir(tmp_path)
    train_path, val_path = (p.relative_to(tmp_path) for p in scenes)
    result = train(_config(tmp_path, train_path, val_path, steps=1, val_every=1))
    card = load_weights(result.weights)[1]
    assert card.training["data"] == [str(scenes[0].resolve())]
    assert card.training["validation"] == [str(scenes[1].resolve())]
    # The run's own configuration keeps them as given: a resume compares them.
    assert card.training["config"]["data"]["train"][0]["path"] == str(train_path)


def test_weights_named_as_a_pickle_are_refused_before_training(tmp_path, scenes) -> None:
    """--weights mine.pt --overwrite trained to the end, then said 'mine.pt is a pickle-based
    checkpoint ... Convert it with torch.load('mine.pt')', of a file that did not exist."""
    from geosr.errors import ModelError
    from geosr.train.trainer import check_run_output

    cfg = _config(tmp_path, *scenes, steps=1, weights=str(tmp_path / "mine.pt"))
    said = rf"^cannot write weights as {tmp_path}/mine\.pt: geosr writes safetensors, never pickles; give "
    for overwrite in (False, True):
        with pytest.raises(ModelError, match=said):
            check_run_output(cfg, resume=False, overwrite=overwrite)
    with pytest.raises(ModelError, match=said):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_resume_refuses_a_different_config(tmp_path, scenes) -> None:
    train(_config(tmp_path, *scenes), stop_after=2)
    with pytest.raises(OptionError, match="differs"):
        train(_config(tmp_path, *scenes, seed=4), resume=True)


def test_a_new_run_over_an_old_one_leaves_nothing_of_it_to_resume(tmp_path, scenes) -> None:
    """``--overwrite`` kept the old run's checkpoint until the new run's first: a new run that
    crashed before it was refused by --resume ('the configuration differs ... in the run'),
    or, with only more steps, resumed the old run's state as its own."""
    train(_config(tmp_path, *scenes))

    def crash(step: int, total: int, logs: dict) -> None:
        raise RuntimeError("power cut")  # before the new run's first checkpoint

    with pytest.raises(RuntimeError, match="power cut"):
        train(_config(tmp_path, *scenes, seed=4, log_every=1), overwrite=True, progress=crash)
    resumed = train(_config(tmp_path, *scenes, seed=4, log_every=1), resume=True)
    assert resumed.step == 6 and resumed.weights is not None
    assert [h["step"] for h in resumed.history] == [3, 6]  # all of it run by the new run


def test_a_second_python_run_into_the_same_folder_needs_resume_or_overwrite(tmp_path, scenes) -> None:
    """train() replaced an earlier run's weights and card without a word, where geosr train
    refuses it: now it refuses too, in the caller's words, before anything is written."""
    first = train(_config(tmp_path, *scenes, steps=3))
    assert first.weights is not None
    kept = first.weights.read_bytes()
    with pytest.raises(OutputError, match=r"holds a training run: pass resume=True .* overwrite=True"):
        train(_config(tmp_path, *scenes, steps=3, seed=4))
    assert first.weights.read_bytes() == kept
    again = train(_config(tmp_path, *scenes, steps=3, seed=4), overwrite=True)
    assert again.weights == first.weights and again.weights.read_bytes() != kept
    # A new run of another scale writes other names: the replaced run's weights and card went
    # too (they stayed beside the new run's configuration, for --model to load as this run's).
    other = train(_config(tmp_path, *scenes, steps=3, scale=4), overwrite=True)
    assert other.weights is not None and other.weights.name == "cnnrnn-fast_x4.safetensors"
    assert sorted(p.name for p in other.weights.parent.glob("*_x*")) == [
        "cnnrnn-fast_x4.json", "cnnrnn-fast_x4.safetensors"
    ]  # fmt: skip


def test_fine_tuning_starts_from_the_given_weights(tmp_path, scenes) -> None:
    first = train(_config(tmp_path / "a", *scenes, steps=3))
    before = load_file(str(first.weights))
    tuned = _config(tmp_path / "b", *scenes, model={}, init=str(first.weights), steps=1)
    from geosr.train.trainer import build_model

    start = build_model(tuned).state_dict()
    assert before.keys() == start.keys()
    assert all(torch.equal(before[k], start[k]) for k in before)
    after = load_file(str(train(tuned).weights))
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained on


def test_fine_tuning_refuses_a_scale_or_architecture_mismatch(tmp_path, scenes) -> None:
    first = train(_config(tmp_path / "a", *scenes, steps=1))
    with pytest.raises(OptionError, match="x2, the run is x4"):
        train(_config(tmp_path / "b", *scenes, model={}, init=str(first.weights), scale=4))
    with pytest.raises(OptionError, match="no bundled x3 weights"):
        train(_config(tmp_path / "d", *scenes, name="cnnrnn-best", model={}, init="cnnrnn-best", scale=3))


def test_command_line_overrides_need_no_recipe() -> None:
    # Nested "not given" values must fall back to the defaults, not reach the dataclasses.
    cfg = load_config(None, {"optim": {"lr": None}, "data": {"train": None, "lr_chip": None}})
    assert cfg.optim.lr == load_config().optim.lr
    assert cfg.data.train == () and cfg.data.lr_chip == 32


def test_validator_leaves_out_chips_constant_inside_the_border() -> None:
    """A chip that is flat where PSNR is measured has an unbounded PSNR: it is not validated on."""
    hr = np.random.default_rng(0).random((3, 1, 16, 16)).astype(np.float32)
    hr[1, :, 2:-2, 2:-2] = 0.5  # constant inside the 2-px border, textured on it
    lr = hr.reshape(3, 1, 8, 2, 8, 2).mean(axis=(3, 5))[:, None]  # (N, T=1, C, h, w)
    validator = Validator(lr, hr, scale=2, border=2, device=torch.device("cpu"))
    assert validator.lr.shape == (2, 1, 1, 8, 8)
    np.testing.assert_array_equal(validator.hr.numpy(), hr[[0, 2]])


def test_a_validation_border_that_leaves_nothing_names_the_settings_as_the_caller_sets_them() -> None:
    """train()'s line read "use larger chips (config.data.lr_chip with --lr/--hr or
    config.data.store, data.val_lr_chip otherwise) or a smaller data.val_border in a recipe"."""
    from geosr.errors import keyword_wording
    from geosr.train.trainer import TRAIN_FLAGS

    hr = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    lr = hr.reshape(2, 1, 4, 2, 4, 2).mean(axis=(3, 5))[:, None]
    cpu = torch.device("cpu")
    with pytest.raises(OptionError) as command:
        Validator(lr, hr, scale=2, border=4, device=cpu)
    assert "(--chip with --lr/--hr or --store, data.val_lr_chip otherwise)" in str(command.value)
    with keyword_wording(TRAIN_FLAGS), pytest.raises(OptionError) as api:
        Validator(lr, hr, scale=2, border=4, device=cpu)
    assert str(api.value).endswith(
        "4-px border: use larger chips (config.data.lr_chip with config.data.store, "
        "config.data.val_lr_chip otherwise) or a smaller config.data.val_border"
    ), api.value


def test_init_weights_of_another_model_name_the_name_setting_as_the_caller_sets_it(tmp_path) -> None:
    """train()'s line read "config.name (name) is 'cnnrnn-fast': drop config.name='cnnrnn-fast' or
    use config.name='edsr-baseline'", and the command's named the recipe key "(name)" alone."""
    from geosr.errors import keyword_wording
    from geosr.train import trainer
    from tests.test_finetune import _edsr_weights

    config = dataclasses.replace(load_config(None, {"scale": 2}), init=str(_edsr_weights(tmp_path)))
    with pytest.raises(OptionError) as command:
        trainer.build_model(config)
    assert str(command.value).endswith(
        "but --model (name in a recipe) is 'cnnrnn-fast': drop -m cnnrnn-fast or use -m edsr-baseline"
    ), command.value
    with keyword_wording(trainer.TRAIN_FLAGS), pytest.raises(OptionError) as api:
        trainer.build_model(config)
    assert str(api.value).endswith(
        "holds a edsr-baseline model (its card), but config.name is 'cnnrnn-fast': set it to 'edsr-baseline'"
    ), api.value


def test_a_zarr_store_as_training_data_is_named_as_such(tmp_path) -> None:
    """A Zarr store given as training data is refused saying what it is and how to export it,
    not as a folder that "matches no raster"."""
    import xarray as xr

    from geosr.train.config import SceneSource, resolve_sources

    store = tmp_path / "hr.zarr"
    xr.Dataset({"refl": (("y", "x"), np.zeros((8, 8), np.float32))}).to_zarr(store, zarr_format=3)
    with pytest.raises(OptionError, match=r"is a Zarr store, which training does not read.*to_raster"):
        resolve_sources((SceneSource(str(store)),), "training")
    # One GDAL wrote (gdal_translate -of Zarr): xarray cannot export it, GDAL can.
    import rasterio
    import rasterio.shutil
    from affine import Affine

    tif, gdal_store = tmp_path / "hr.tif", tmp_path / "gdal.zarr"
    profile = {"driver": "GTiff", "crs": "EPSG:32633", "transform": Affine(1, 0, 0, 0, -1, 0)}
    with rasterio.open(tif, "w", **profile, width=8, height=8, count=1, dtype="uint8") as f:
        f.write(np.zeros((1, 8, 8), np.uint8))
    rasterio.shutil.copy(tif, gdal_store, driver="Zarr", FORMAT="ZARR_V3")
    with pytest.raises(OptionError, match=f"e.g. gdal_translate {gdal_store} hr.tif$"):
        resolve_sources((SceneSource(str(gdal_store)),), "training")


# --- the command line: bad input is one line, nothing of the user's is replaced or left over ---

FAST = ["-s", "2", "--steps", "1", "--batch-size", "2", "--chip", "8"]
FAST += ["--device", "cpu", "--precision", "fp32", "--threads", "1"]


def _truncated(make_raster, name: str = "broken.tif") -> Path:
    path = make_raster(name, height=300, width=300, dtype="uint16")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize("role", ["input", "--val"])
def test_a_truncated_raster_is_one_line_and_leaves_no_run(
    tmp_path, scenes, make_raster, capsys, monkeypatch, role: str
) -> None:
    from tests.test_bad_input import assert_one_clear_line, run_cli

    broken = _truncated(make_raster)
    data = [str(broken)] if role == "input" else [str(scenes[0]), "--val", str(broken)]
    code, err = run_cli(["train", *data, *FAST, "-o", str(tmp_path / "run")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "broken.tif", "reading pixels failed", "truncated or corrupt")
    assert not (tmp_path / "run").exists()


def test_a_batch_too_large_for_memory_is_one_line_and_leaves_no_run(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """A batch size with zeros too many was numpy's MemoryError traceback ("Unable to allocate")."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    # 10**12 chips are beyond any address space: refused at once, whatever the memory overcommit.
    args = ["train", str(scenes[0]), *FAST, "--batch-size", str(10**12), "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "out of memory: Unable to allocate", "lower --batch-size or --chip")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path, scenes, capsys, monkeypatch) -> None:
    """-o on a read-only file system (EROFS) or under a file (ENOTDIR): an OSError traceback."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (tmp_path / "afile").write_text("x")
    run = tmp_path / "afile" / "run"
    code, err = run_cli(["train", str(scenes[0]), *FAST, "-o", str(run)], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"cannot write the run folder {run}", "choose another --output")


def test_weights_that_cannot_be_written_are_refused_before_training(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """--weights under a file, or in a folder that takes no files (a read-only file system):
    training ran to its end, then save_weights failed in an OSError traceback (FileExistsError,
    EROFS) and the weights were lost."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    (tmp_path / "afile").write_text("x")
    run = tmp_path / "run"
    args = ["train", str(scenes[0]), *FAST, "-o", str(run), "--weights"]
    code, err = run_cli([*args, str(tmp_path / "afile" / "sub" / "mine")], capsys, monkeypatch)
    said = ("cannot write the weights", f"{tmp_path}/afile is not a directory", "--weights")
    assert_one_clear_line(code, err, *said)
    closed = tmp_path / "closed"
    closed.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != closed and real_access(path, mode))
    code, err = run_cli([*args, str(closed / "mine")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "cannot write the weights", f"{closed} is not writable", "--weights")
    assert not run.exists() and list(closed.iterdir()) == []


def test_a_folder_with_a_config_of_its_own_is_no_run_folder_to_overwrite(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """-o onto a folder of the user's files that holds a config.json: 'already holds a training
    run', and with --overwrite that file was replaced by the run's configuration."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    folder = tmp_path / "project"
    folder.mkdir()
    mine = folder / "config.json"
    mine.write_text('{"mine": 1}')
    args = ["train", str(scenes[0]), *FAST, "-o", str(folder)]
    for flags in ([], ["--overwrite"], ["--resume"]):
        code, err = run_cli([*args, *flags], capsys, monkeypatch)
        assert_one_clear_line(code, err, f"{mine} is not the configuration of a training run", "--output")
    assert mine.read_text() == '{"mine": 1}' and [p.name for p in folder.iterdir()] == ["config.json"]


def test_a_folder_with_checkpoints_of_its_own_is_no_run_folder_to_overwrite(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """-o onto a project folder whose checkpoints/ holds the user's own files: with --overwrite,
    the new run deleted that folder whole, as it deletes an earlier run's checkpoint."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    folder = tmp_path / "project"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "epoch_9.ckpt").write_text("weeks of work")
    args = ["train", str(scenes[0]), *FAST, "-o", str(folder)]
    for flags in ([], ["--overwrite"]):
        code, err = run_cli([*args, *flags], capsys, monkeypatch)
        said = (f"{folder / 'checkpoints'} holds files that are not a training run's checkpoint", "--output")
        assert_one_clear_line(code, err, *said)
    assert [p.name for p in folder.rglob("*")] == ["checkpoints", "epoch_9.ckpt"]


def test_a_second_run_into_the_same_folder_needs_resume_or_overwrite(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    from tests.test_bad_input import assert_one_clear_line, run_cli

    run = tmp_path / "run"
    run.mkdir()  # an empty folder is fine
    args = ["train", str(scenes[0]), *FAST, "-o", str(run)]
    assert run_cli(args, capsys, monkeypatch)[0] in (0, None)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, str(run), "already holds a training run", "--resume", "--overwrite")
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before
    # --weights onto an existing file, from another run folder
    other = ["train", str(scenes[0]), *FAST, "-o", str(tmp_path / "other")]
    code, err = run_cli([*other, "--weights", str(run / "cnnrnn-fast_x2")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "cnnrnn-fast_x2.safetensors already exists", "--overwrite")
    assert not (tmp_path / "other").exists()
    assert (run / "cnnrnn-fast_x2.safetensors").read_bytes() == before[run / "cnnrnn-fast_x2.safetensors"]
    assert run_cli([*args, "--overwrite"], capsys, monkeypatch)[0] in (0, None)
    assert run_cli([*args, "--resume"], capsys, monkeypatch)[0] in (0, None)


def test_a_run_folder_another_training_writes_is_refused_and_left_to_it(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """Two geosr train into one -o at once both ran to exit status 0, each replacing the other's
    checkpoints, config.json and weights: the second is one line naming the first's pid."""
    from geosr.io.atomic import take_lock
    from tests.test_bad_input import assert_one_clear_line, run_cli

    run = tmp_path / "run"
    run.mkdir()
    lock = os.open(run / ".geosr-train.lock", os.O_RDWR | os.O_CREAT)
    assert take_lock(lock) is None  # as the first run holds it
    args = ["train", str(scenes[0]), *FAST, "-o", str(run)]
    try:
        for flags in ([], ["--overwrite"], ["--resume"]):
            code, err = run_cli([*args, *flags], capsys, monkeypatch)
            said = (f"cannot write the run folder {run}", f"another geosr train (pid {os.getpid()})")
            assert_one_clear_line(code, err, *said, "--output")
            assert [p.name for p in run.iterdir()] == [".geosr-train.lock"]
    finally:
        os.close(lock)
    assert run_cli(args, capsys, monkeypatch)[0] in (0, None)  # once it is free
    assert (run / "config.json").exists()


def test_resume_into_a_folder_without_a_run_keeps_an_existing_weights_file(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """--resume of a folder that holds no run starts one: the user's weights file stays unless
    --overwrite (a misspelt -o with --resume replaced it)."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"the user's weights")
    args = ["train", str(scenes[0]), *FAST, "-o", str(tmp_path / "new"), "--weights", str(tmp_path / "mine")]
    code, err = run_cli([*args, "--resume"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "mine.safetensors already exists", "--overwrite")
    assert mine.read_bytes() == b"the user's weights"
    assert not (tmp_path / "new").exists()


def test_a_mostly_nodata_scene_is_named_before_anything_is_written(
    tmp_path, make_raster, capsys, monkeypatch
) -> None:
    from tests.test_bad_input import assert_one_clear_line, run_cli

    rng = np.random.default_rng(0)
    data = rng.normal(1000, 200, (1, 96, 96)).astype("float32")
    data[0][rng.random((96, 96)) < 0.95] = np.nan
    holes = make_raster("holes.tif", data=data)
    code, err = run_cli(["train", str(holes), *FAST, "-o", str(tmp_path / "run")], capsys, monkeypatch)
    assert_one_clear_line(code, err, "holes.tif", "every pixel valid", "nodata")
    assert not (tmp_path / "run").exists()


def test_a_validation_raster_smaller_than_a_chip_is_named(tmp_path, scenes, make_raster) -> None:
    tiny = make_raster("tiny.tif", height=20, width=20, dtype="uint8")
    with pytest.raises(OptionError, match=r"tiny\.tif.*smaller than one validation chip"):
        train(_config(tmp_path, scenes[0], tiny))
    assert not (tmp_path / "run").exists()


def test_a_model_name_other_than_the_init_model_is_refused() -> None:
    with pytest.raises(
        OptionError, match=r"^init='cnnrnn-fast' trains a cnnrnn-fast model, but name is 'cnnrnn-best'"
    ):
        load_config(None, {"name": "cnnrnn-best", "scale": 4, "init": "cnnrnn-fast"})
    assert load_config(None, {"name": "cnnrnn-best", "scale": 4, "init": "cnnrnn-best"}).name == "cnnrnn-best"


def test_init_alone_names_the_weights_after_the_init_model(tmp_path, scenes, capsys, monkeypatch) -> None:
    from tests.test_bad_input import run_cli

    args = ["train", str(scenes[0]), *FAST, "-s", "4", "--init", "cnnrnn-best", "-o", str(tmp_path / "r")]
    assert run_cli(args, capsys, monkeypatch)[0] in (0, None)
    assert (tmp_path / "r" / "cnnrnn-best_x4.safetensors").is_file()


@pytest.mark.parametrize("weight", [-1.0, float("nan")])
def test_a_negative_loss_weight_is_refused(weight: float) -> None:
    with pytest.raises(OptionError, match=r"loss weight l1=.* must be a number >= 0"):
        load_config(None, {"loss": {"l1": weight}})


def test_a_constant_validation_raster_is_one_line_before_training(
    tmp_path, scenes, make_raster, capsys, monkeypatch
) -> None:
    """Every chip of a flat validation raster is left out (no PSNR range): that is said up front,
    naming the raster, not found at the first validation as torch.cat's traceback on no chip."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    flat = make_raster("flat.tif", data=np.full((1, 128, 128), 500, "uint16"))
    args = ["train", str(scenes[0]), "--val", str(flat), *FAST, "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "flat.tif", "every validation chip is constant", "with detail")
    assert not (tmp_path / "run").exists()


def test_a_flat_training_raster_is_left_out_or_refused(
    tmp_path, scenes, make_raster, capsys, monkeypatch
) -> None:
    """A raster whose valid pixels hold one value (a mask, a never-filled band) was trained on
    without a word: batches of it teach nothing."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    flat = make_raster("flat.tif", data=np.full((1, 96, 96), 500, "uint16"))
    args = ["train", str(flat), *FAST, "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    # The band in brackets, which rich took for markup and dropped until 52257b5.
    assert_one_clear_line(code, err, "flat.tif[b1]: every valid pixel of the training rasters holds one")
    assert not (tmp_path / "run").exists()
    config = _config(tmp_path, scenes[0], scenes[1], steps=1)
    config = dataclasses.replace(
        config, data=dataclasses.replace(config.data, train=(*config.data.train, SceneSource(str(flat))))
    )
    with pytest.warns(GeosrWarning, match=r"flat\.tif.*: every valid pixel holds one value.*left out"):
        assert train(config).step == 1


def test_a_negative_thread_count_is_one_line(tmp_path, scenes, capsys, monkeypatch) -> None:
    """--threads -1 (or threads = -1 in a recipe) is refused as an option, not by torch's traceback."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    args = ["train", str(scenes[0]), *FAST, "--threads", "-1", "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "threads must be >= 0", "got -1")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("option", "needle"),
    [
        # Named optim.lr, a recipe's key, which no user of the command typed.
        (["--learning-rate", "nan"], "--learning-rate must be a finite number > 0, got nan"),
        (["--learning-rate", "-1"], "--learning-rate must be a finite number > 0, got -1.0"),
        (["--seed", "-1"], "seed must be a whole number"),
        (["--seed", "99999999999999999999"], "seed must be a whole number"),
        (["--loss", ""], "--loss '' is empty"),  # trained with the default loss, silently
    ],
)
def test_a_nan_learning_rate_or_an_out_of_range_seed_is_one_line(
    tmp_path, scenes, capsys, monkeypatch, option: list[str], needle: str
) -> None:
    """Each was a traceback at the start of training, exit 1: 'ValueError: Invalid learning rate:
    nan' (AdamW), 'expected non-negative integer' (numpy), 'Overflow when unpacking long long' (torch)."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    args = ["train", str(scenes[0]), *FAST, *option, "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, needle)
    assert not (tmp_path / "run").exists()


def test_a_python_callers_bad_learning_rate_names_its_key() -> None:
    # The command line names --learning-rate; load_config's caller gives optim.lr, and a recipe too.
    with pytest.raises(OptionError, match=r"^optim\.lr must be a finite number > 0, got -1\.0"):
        load_config(None, {"optim": {"lr": -1.0}})


def test_a_training_raster_error_is_not_preceded_by_the_progress_bar(
    tmp_path, make_raster, capfd, monkeypatch
) -> None:
    """Errors found once the bar is up (scenes, --resume, init ...) were a second line, below a
    bar stuck at 0/N; in a terminal the bar is erased, elsewhere it is not printed."""
    import sys

    from geosr.cli import main
    from tests.test_bad_input import assert_one_clear_line

    tiny = make_raster("tiny.tif", height=20, width=20, dtype="uint8")
    # In this process (its stderr captured at the descriptor, no terminal, as a pipe is): the
    # command's start-up in a child is not the point.
    monkeypatch.setattr(sys, "argv", ["geosr", "train", str(tiny), *FAST, "-o", str(tmp_path / "run")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    code, stderr = exit_info.value.code, capfd.readouterr().err
    assert isinstance(code, int)
    assert_one_clear_line(code, stderr, "tiny.tif", "smaller than one training chip")
    assert stderr.strip().splitlines()[0].startswith("error:"), stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_a_run_without_validation_rasters_says_so_at_the_start(tmp_path, scenes, capfd, monkeypatch) -> None:
    """A recipe without [[data.val]] showed "val PSNR -" to the end of the run and wrote a card
    without metrics, without a word on why or how to measure the model."""
    from tests.test_bad_input import run_cli

    recipe = tmp_path / "tiny.toml"  # small validation chips: a full validation takes seconds
    settings = 'name = "cnnrnn-fast"\nscale = 2\nsteps = 1\nbatch_size = 2\ndevice = "cpu"\nthreads = 1\n'
    model = "[model]\nfeatures = 8\nencoder_blocks = 1\nrefine_steps = 1\n"
    data = "[data]\nlr_chip = 8\nval_chips = 2\nval_lr_chip = 16\nval_border = 2\n"
    recipe.write_text(settings + model + data + f'[[data.train]]\npath = "{scenes[0]}"\n')
    # capfd: the command prints its lines on the file descriptor (geosr.cli._native_stderr_captured).
    code, err = run_cli(["train", "--recipe", str(recipe), "-o", str(tmp_path / "a")], capfd, monkeypatch)
    assert code == 0, err
    assert err.splitlines()[:1] == [
        "no validation rasters, so no validation PSNR is measured while training nor recorded in the "
        "model card; to measure the model on rasters kept out of training, add a [[data.val]] table to "
        f"{recipe}"
    ], err
    assert err.count("no validation rasters") == 1, err
    card = json.loads((tmp_path / "a" / "cnnrnn-fast_x2.json").read_text())
    assert card["metrics"] == {} and card["training"]["validation"] == []  # the card's own record
    recipe.write_text(recipe.read_text() + f'[[data.val]]\npath = "{scenes[1]}"\n')
    code, err = run_cli(["train", "--recipe", str(recipe), "-o", str(tmp_path / "b")], capfd, monkeypatch)
    assert code == 0 and "no validation" not in err, err


def test_a_validation_raster_that_training_reads_too_is_refused(tmp_path, scenes) -> None:
    """--help says validation rasters are never trained on: a training folder that holds the
    validation raster made the validation PSNR one on training data. A rows split passes."""
    folder = scenes[0].parent  # holds train.tif and val.tif
    with pytest.raises(OptionError, match=r"val\.tif is both a training and a validation raster") as info:
        train(_config(tmp_path, folder, scenes[1]))
    assert f"(the training rasters '{folder}' include it)" in str(info.value)  # which entry to edit
    assert not (tmp_path / "run").exists()
    from geosr.train.config import SceneSource, check_held_out

    top, bottom = SceneSource(str(scenes[1]), rows=(0.0, 0.5)), SceneSource(str(scenes[1]), rows=(0.5, 1.0))
    check_held_out((top,), (bottom,))
    with pytest.raises(OptionError, match="both a training and a validation raster"):
        check_held_out((top,), (SceneSource(str(scenes[1]), rows=(0.4, 1.0)),))


@pytest.mark.parametrize(
    ("tables", "says"),
    [
        (
            '[[data.train]]\npath = "{train}"\n[[data.train]]\npath = "{missing}"\n',
            "data.train[1].path: training raster",
        ),
        ('[[data.train]]\npath = "{folder}/zz*.tif"\n', "data.train[0].path: training pattern"),
        (
            '[[data.train]]\npath = "{train}"\n[[data.train]]\npath = "{folder}"\n'
            '[[data.val]]\npath = "{val}"\n',
            "data.val[0].path and data.train[1].path: {val} is both a training and a validation raster "
            "(the training rasters '{folder}' include it)",
        ),
        (
            '[[data.train]]\npath = "{train}"\nbands = [0]\n',
            "data.train[0].bands: {train}: band 0 does not exist: its one band is band 1 "
            "(give e.g. bands = [1])",
        ),
    ],
)
def test_a_recipes_source_that_cannot_be_read_names_the_recipe_and_its_key(
    tmp_path, scenes, tables: str, says: str
) -> None:
    """Raised where the sources are read, these named neither the recipe nor which table to fix:
    "training raster 'b.tif' does not exist", "a.tif has 1 band(s); bands [0] do not exist"."""
    names = {"train": scenes[0], "val": scenes[1], "folder": scenes[0].parent, "missing": tmp_path / "no.tif"}
    recipe = tmp_path / "mine.toml"
    settings = 'name = "cnnrnn-fast"\nscale = 2\nsteps = 1\ndevice = "cpu"\n'
    model = "[model]\nfeatures = 8\nencoder_blocks = 1\nrefine_steps = 1\n"
    recipe.write_text(settings + f'output = "{tmp_path / "run"}"\n' + model + tables.format(**names))
    with pytest.raises(OptionError if "bands" not in says else InputError) as info:
        train(load_config(recipe), recipe=str(recipe))
    assert str(info.value).startswith(f"recipe {recipe}: {says.format(**names)}"), info.value


def test_a_recipes_bands_that_do_not_exist_are_told_as_band_numbers_with_ones_to_give(
    tmp_path, make_raster, capsys, monkeypatch
) -> None:
    """geosr train --recipe with bands that a raster lacks said "a.tif has 3 bands; bands [0, 5] do
    not exist": a Python list, and not which numbers its bands have (GDAL's, from 1) nor what to give."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    rgb = make_raster("rgb.tif", count=3, height=40, width=40)
    grey = make_raster("grey.tif", height=40, width=40)
    settings = 'name = "cnnrnn-fast"\nscale = 2\nsteps = 1\ndevice = "cpu"\nprecision = "fp32"\n'
    model = "[model]\nfeatures = 8\nencoder_blocks = 1\nrefine_steps = 1\n"
    for path, bands, says in [
        (
            rgb,
            "[0, 5]",
            "bands 0 and 5 do not exist: its bands are numbered 1 to 3 (give e.g. bands = [1, 2, 3])",
        ),
        (grey, "[0]", "band 0 does not exist: its one band is band 1 (give e.g. bands = [1])"),
    ]:
        recipe = tmp_path / "mine.toml"
        source = f'[[data.train]]\npath = "{path}"\nbands = {bands}\n'
        recipe.write_text(settings + f'output = "{tmp_path / "run"}"\n' + model + source)
        code, err = run_cli(["train", "--recipe", str(recipe)], capsys, monkeypatch)
        assert_one_clear_line(code, err, f"recipe {recipe}: data.train[0].bands: {path}: {says}")
        assert "[0" not in err.replace("data.train[0]", ""), err
        assert len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def test_a_refused_resume_says_which_value_differs(tmp_path, scenes, capsys, monkeypatch) -> None:
    """'differs in ['data']' did not say that the training raster was now another one."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    run = tmp_path / "run"
    args = ["train", str(scenes[0]), *FAST, "-o", str(run)]
    assert run_cli(args, capsys, monkeypatch)[0] in (0, None)
    code, err = run_cli(["train", str(scenes[1]), *FAST, "-o", str(run), "--resume"], capsys, monkeypatch)
    expected = f"differs in data (data.train[0].path: '{scenes[0]}' in the run, '{scenes[1]}' now)"
    assert_one_clear_line(code, err, "cannot resume", expected)
    # Several were a Python list: "differs in ['seed', 'steps']".
    code, err = run_cli([*args, "--resume", "--steps", "2", "--seed", "1"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "cannot resume", "differs in seed and steps (seed: 0 in the run, 1 now)")


def test_a_run_resumes_with_its_files_spelt_another_way_or_its_folder_copied(
    tmp_path, scenes, capsys, monkeypatch
) -> None:
    """The same folder and data spelt another way from the same directory (relative for
    absolute), or the run folder copied elsewhere, were refused as another configuration
    ("differs in output (output: 'intrun' in the run, '/tmp/sweep2/intrun' now)")."""
    import shutil

    from tests.test_bad_input import run_cli

    run = tmp_path / "run"
    train = ["train", *FAST, "--checkpoint-every", "1"]
    assert run_cli([*train, str(scenes[0]), "-o", str(run), "--steps", "2"], capsys, monkeypatch)[0] in (
        0,
        None,
    )
    monkeypatch.chdir(tmp_path)
    relative = os.path.relpath(scenes[0], tmp_path)
    code, err = run_cli([*train, relative, "-o", "run", "--steps", "2", "--resume"], capsys, monkeypatch)
    assert code == 0, err
    shutil.copytree(run, tmp_path / "copy")
    code, err = run_cli([*train, relative, "-o", "copy", "--steps", "2", "--resume"], capsys, monkeypatch)
    assert code == 0, err
    # What differs still does: another raster.
    code, err = run_cli(
        [*train, str(scenes[1]), "-o", "copy", "--steps", "2", "--resume"], capsys, monkeypatch
    )
    assert code == 2 and "differs in data" in err, err


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # Each key as the recipe writes it: "config.steps", "in config" named keys of no recipe.
        ('steps = "ten"\n', "steps must be int"),
        # A Python list: "unknown key(s) ['stepz'] in config; known: ['batch_size', ...]".
        ("stepz = 3\n", "unknown key stepz; known: batch_size, checkpoint_every,"),
        ("[optim]\nlrr = 3\n", "unknown key lrr in optim; known: betas, grad_clip, lr,"),
        ("stepz = 3\nepochz = 1\n", "unknown keys epochz and stepz; known: batch_size,"),
        # A table without its path was a TypeError traceback ("missing 1 required positional argument").
        ("[[data.train]]\n", "data.train[0] has no path: add path = ... to that table"),
        # A string for a float was a TypeError traceback from the config's own checks.
        ('[optim]\nlr = "fast"\n', "optim.lr must be float, got 'fast'"),
        ("[degradation]\nblur_sigma = [1.0]\n", "degradation.blur_sigma must have 2 values, got [1.0]"),
        # The [model] table was told only once training began, naming neither the recipe nor the table.
        ('[model]\nfeatures = "x"\n', "model.features must be an integer >= 1, got 'x'"),
        (
            "[model]\nfeaturez = 8\n",
            "[model] unknown CNNRNN config keys featurez; expected some of encoder_blocks,",
        ),
        # Told once training began, naming no recipe.
        ("loss = { l3 = 1.0 }\n", "unknown loss 'l3'; known losses: l1, mse"),
        # A Python dict: "the loss has no term with a non-zero weight: {'l1': 0}".
        ("loss = { l1 = 0 }\n", "the loss has no term with a non-zero weight (l1 is 0): give a term"),
        ("loss = { l1 = 0, ssim = 0 }\n", "the loss has no term with a non-zero weight (l1 and ssim are 0)"),
        ('device = "gpu"\n', "unknown device 'gpu': use auto, cpu or cuda[:N]"),
        # "build_model() got multiple values for keyword argument 'scale'" (a TypeError traceback).
        ("[model]\nscale = 4\n", "[model] scale = 4: the model's scale is the run's own scale"),
    ],
)
def test_an_error_in_a_recipe_names_the_recipe(tmp_path: Path, text: str, says: str) -> None:
    # "config.steps must be int, got 'ten'" did not say which file to fix.
    recipe = tmp_path / "mine.toml"
    recipe.write_text(text)
    with pytest.raises(OptionError, match=rf"^recipe {re.escape(str(recipe))}: {re.escape(says)}"):
        load_config(recipe, {"scale": 2})
    # An error of the command line's own options is not blamed on the recipe.
    recipe.write_text("steps = 3\n")
    with pytest.raises(OptionError, match=r"^scale must be"):
        load_config(recipe, {"scale": 5})


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[model]\nfeatures = 0\n", "model.features must be an integer >= 1, got 0"),
        ("[model]\nrecurrent = 3\n", "model.recurrent must be true or false, got 3"),
        ('name = "edsr-baseline"\n[model]\nblocks = -1\n', "model.blocks must be an integer >= 0, got -1"),
    ],
)
def test_a_recipes_model_key_is_named_as_the_recipe_writes_it(tmp_path: Path, text: str, says: str) -> None:
    # "recipe mine.toml: [model] CNNRNNConfig.features must be ...": a class the recipe never names.
    recipe = tmp_path / "mine.toml"
    recipe.write_text(text)
    with pytest.raises(OptionError, match=rf"^recipe {recipe}: {re.escape(says)}$"):
        load_config(recipe, {"scale": 2})
    # A Python caller of the model's config keeps the class's own wording.
    with pytest.raises(ModelError, match=r"^CNNRNNConfig\.features must be an integer >= 1, got 0$"):
        CNNRNNConfig(scale=2, features=0)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        # Took 5 GB in 15 minutes, without finishing a step, with multi_frame_probability = 1.
        (
            "[degradation]\nmulti_frame_probability = 1.0\nframes = [2, 100000]\n",
            "degradation.frames must be a range 1 <= low <= high <= 64, got [2, 100000]",
        ),
        # Trained on without end.
        ("steps = 99999999999999999999\n", "steps must be below 2**63, got 99999999999999999999"),
        ("val_every = 99999999999999999999\n", "val_every must be below 2**63, got 99999999999999999999"),
    ],
)
def test_a_recipes_value_beyond_any_run_is_refused_naming_the_recipe(
    tmp_path: Path, text: str, says: str
) -> None:
    recipe = tmp_path / "mine.toml"
    recipe.write_text(text)
    with pytest.raises(OptionError, match=rf"^recipe {recipe}: {re.escape(says)}$"):
        load_config(recipe)


def test_a_recipe_not_in_utf8_is_one_line_with_its_line(tmp_path: Path) -> None:
    # A Latin-1 'café' in a comment was a UnicodeDecodeError traceback naming neither file nor line.
    recipe = tmp_path / "mine.toml"
    recipe.write_bytes("steps = 3\n# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(OptionError, match=rf"^recipe {recipe} is not UTF-8 text: byte 0xe9 at line 2; save"):
        load_config(recipe, {"scale": 2})


def test_a_folder_as_recipe_is_said_to_be_one(tmp_path: Path) -> None:
    # "recipe pipelines does not exist" beside the folder pipelines.
    with pytest.raises(OptionError, match=rf"^recipe {tmp_path} is a folder, not a TOML file; give a TOML"):
        load_config(tmp_path)


@pytest.mark.skipif(not Path("/proc/self/mem").is_file(), reason="needs Linux's /proc/self/mem")
def test_a_recipe_that_cannot_be_read_is_one_line() -> None:
    # A file the OS refuses to read (an unreadable or failing disk's; /proc/self/mem fails to be read
    # from its start, as root too) was an OSError traceback: "[Errno 5] Input/output error".
    with pytest.raises(OptionError, match=r"^recipe /proc/self/mem cannot be read \(Input/output error\); "):
        load_config("/proc/self/mem")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_a_recipe_that_is_no_file_is_said_to_be_none(tmp_path: Path) -> None:
    # A named pipe (or a device) as --recipe was said not to exist, beside it.
    pipe = tmp_path / "mine.toml"
    os.mkfifo(pipe)
    with pytest.raises(OptionError, match=rf"^recipe {pipe} is not a regular file; give a TOML file"):
        load_config(pipe)


def test_a_recipe_saved_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    # Notepad's "UTF-8 with BOM" was "recipe mine.toml is not valid TOML: Invalid statement (at line 1, ...)".
    recipe = tmp_path / "mine.toml"
    recipe.write_bytes("steps = 3\n".encode("utf-8-sig"))
    assert load_config(recipe).steps == 3


@pytest.mark.parametrize(
    ("table", "says"),
    [
        ({"data": {"lr_chip": 0}}, "data.lr_chip must be >= 4, got 0"),
        ({"data": {"val_chips": 0}}, "data.val_chips must be >= 1"),
        ({"data": {"val_border": -2}}, "data.val_border must be >= 0"),
        ({"optim": {"betas": [1.5, 0.9]}}, "optim.betas must be two numbers 0 <= b < 1"),
        ({"optim": {"weight_decay": -1.0}}, "optim.weight_decay must be >= 0"),
        # These trained: inf as "the loss became nan at step 1: lower optim.lr", the others as if 0.
        ({"optim": {"weight_decay": math.inf}}, "optim.weight_decay must be >= 0 and finite, got inf"),
        ({"optim": {"warmup": -5}}, "optim.warmup must be >= 0 steps, got -5"),
        ({"optim": {"grad_clip": math.nan}}, "optim.grad_clip must be >= 0 (0: no clipping), got nan"),
        ({"optim": {"grad_clip": -1.0}}, "optim.grad_clip must be >= 0 (0: no clipping), got -1.0"),
    ],
)
def test_a_recipes_size_or_optimiser_value_out_of_range_is_an_option_error(table: dict, says: str) -> None:
    # Not bounded by typer as --chip is, these were numpy, model or AdamW tracebacks in training.
    with pytest.raises(OptionError, match=re.escape(says)):
        load_config(None, table)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (
            "[degradation]\nblur_sigma = [0.6, 0.2]\n",
            "degradation.blur_sigma must be a range of finite numbers 0 <= low <= high, got [0.6, 0.2]",
        ),
        ("[degradation]\nnoise_sigma = [0, nan]\n", "got [0.0, nan]"),
        (
            '[[data.train]]\npath = "a.tif"\nrows = [0.8, 1.6]\n',
            "a.tif: rows must be fractions 0 <= start < stop <= 1, got [0.8, 1.6]",
        ),
    ],
)
def test_a_recipes_range_is_shown_as_the_recipe_writes_it(tmp_path: Path, text: str, says: str) -> None:
    """A TOML list was shown as a Python tuple: 'blur_sigma must be a range ..., got (0.6, 0.2)'."""
    recipe = tmp_path / "mine.toml"
    recipe.write_text(text)
    with pytest.raises(OptionError) as info:
        load_config(recipe)
    line = str(info.value)
    assert line.startswith(f"recipe {recipe}: ") and line.endswith(says), line


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('output = ""\n', "output is empty"),
        ('weights = " "\n', "weights is empty"),
        ('[[data.train]]\npath = "a.tif"\n[[data.val]]\npath = ""\n', "data.val[0].path is empty"),
        ('[data]\nstore = ""\n', "data.store is empty"),
    ],
)
def test_an_empty_path_in_a_recipe_is_refused_not_read_as_the_working_folder(
    tmp_path: Path, text: str, says: str
) -> None:
    """As a Path, '' is '.': output = "" put the run's config, checkpoints and weights among the
    files of the working folder, and a data path "" trained on every raster there; an empty
    store or weights was ignored without a word.  The command line refuses an empty -o."""
    recipe = tmp_path / "mine.toml"
    recipe.write_text(text)
    with pytest.raises(OptionError, match=rf"^recipe {recipe}: {re.escape(says)}"):
        load_config(recipe, {"scale": 2})


def test_a_recipes_missing_relative_raster_says_where_it_was_looked_for(tmp_path: Path, monkeypatch) -> None:
    # Relative paths are read from the current directory, not the recipe's folder: "training
    # pattern 'hr/*.tif' matches no raster" beside a recipe holding hr/ did not say so.
    from geosr.train.config import resolve_sources

    (tmp_path / "recipes" / "hr").mkdir(parents=True)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    config = load_config(None, {"data": {"train": [{"path": "hr/*.tif"}, {"path": "hr/a.tif"}]}})
    for source in config.data.train:
        with pytest.raises(OptionError, match=rf"in the current directory {work} \(relative paths"):
            resolve_sources((source,), "training")


def test_a_recipes_data_not_found_says_what_geosr_data_dir_stood_for(tmp_path: Path, monkeypatch) -> None:
    # A bundled recipe run with GEOSR_DATA_DIR unset (a pip install, away from the repository)
    # was "training pattern '../shared/data/aerial/...' matches no raster in the current
    # directory": it did not say that the path was the variable's default, nor to set it.
    from geosr.train.config import SceneSource, resolve_sources

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GEOSR_DATA_DIR", raising=False)
    for path in ("${GEOSR_DATA_DIR}/aerial/*.tif", "${GEOSR_DATA_DIR}/aerial/a.tif"):
        with pytest.raises(
            OptionError, match=r"GEOSR_DATA_DIR is unset, so it stood for ../shared/data: set"
        ):
            resolve_sources((SceneSource(path),), "training")
    monkeypatch.setenv("GEOSR_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(OptionError, match=rf"; GEOSR_DATA_DIR={tmp_path / 'data'}$"):
        resolve_sources((SceneSource("${GEOSR_DATA_DIR}/aerial/*.tif"),), "training")
    with pytest.raises(OptionError) as info:  # a path of one's own is not told of the variable
        resolve_sources((SceneSource("hr/a.tif"),), "training")
    assert "GEOSR_DATA_DIR" not in str(info.value)


def test_a_recipes_path_with_another_variable_says_it_was_read_as_written(tmp_path, monkeypatch) -> None:
    # "training raster '${DATA}/hr.tif' does not exist" did not say that only ${GEOSR_DATA_DIR} is expanded.
    from geosr.train.config import resolve_sources

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATA", str(tmp_path))
    for path in ("${DATA}/hr.tif", "$DATA/*.tif"):
        with pytest.raises(OptionError, match=r"are expanded in paths, so \$\{?DATA\}? was read as written$"):
            resolve_sources((SceneSource(path),), "training")


def test_a_training_glob_is_recursive_as_geosr_runs_is(tmp_path: Path) -> None:
    # 'tiles/**/*.tif' matched one folder level only (glob without recursive=True): no raster here.
    from geosr.train.config import SceneSource, resolve_sources

    for folder in ("tiles", "tiles/a/b"):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / "t.tif").write_bytes(b"")
    found = resolve_sources((SceneSource(str(tmp_path / "tiles" / "**" / "*.tif")),), "training")
    assert [f for f, _ in found] == [tmp_path / "tiles/a/b/t.tif", tmp_path / "tiles/t.tif"]


def test_a_training_file_whose_name_holds_brackets_is_that_file(tmp_path: Path) -> None:
    # Taken as a pattern, 'scene[1].tif' matched only scene1.tif: "matches no raster".
    from geosr.train.config import SceneSource, resolve_sources

    scene = tmp_path / "scene[1].tif"
    scene.write_bytes(b"")
    assert [f for f, _ in resolve_sources((SceneSource(str(scene)),), "training")] == [scene]


def test_one_training_file_from_two_patterns_is_trained_on_once(tmp_path: Path, monkeypatch) -> None:
    # 'tiles/*.tif tiles/a.tif', or a.tif relative and absolute: it was sampled twice as often.
    from geosr.train.config import SceneSource, resolve_sources

    (tmp_path / "tiles").mkdir()
    for name in ("a.tif", "b.tif"):
        (tmp_path / "tiles" / name).write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    a = tmp_path / "tiles" / "a.tif"
    sources = (SceneSource("tiles/*.tif"), SceneSource(str(a)), SceneSource("tiles/a.tif"))
    assert [f.name for f, _ in resolve_sources(sources, "training")] == ["a.tif", "b.tif"]
    # Another part of the same file is another source, and stays.
    halves = (SceneSource(str(a), rows=(0.0, 0.5)), SceneSource(str(a), rows=(0.5, 1.0)))
    assert len(resolve_sources(halves, "training")) == 2


def test_nodata_on_the_command_line_applies_to_the_hr_rasters_given(
    tmp_path, make_raster, capsys, monkeypatch
) -> None:
    """``geosr train --nodata 0``, as ``geosr run --nodata 0`` for a Sentinel-2 JP2's untagged
    fill: only a recipe could say it, so the fill of rasters given on the command line was
    trained on as data. Here the fill leaves no chip with every pixel valid."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    data = np.zeros((1, 96, 96), "uint16")
    data[0, :12, :12] = np.arange(144).reshape(12, 12) + 100  # smaller than one chip with its margin
    fill = make_raster("fill.tif", data=data)
    args = ["train", str(fill), *FAST, "--nodata", "0", "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "fill.tif", "every pixel valid", "nodata")
    assert not (tmp_path / "run").exists()


def test_nodata_with_pairs_is_refused(tmp_path, capsys, monkeypatch) -> None:
    """Pairs are read with their files' own nodata: an ignored --nodata trained their fill as data."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    args = ["train", "--lr", "lr.tif", "--hr", "hr.tif", *FAST, "--nodata", "0", "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "--nodata", "--lr/--hr", "gdal_edit.py -a_nodata")
    assert not (tmp_path / "run").exists()


def test_a_nodata_the_rasters_type_cannot_hold_is_one_line(
    tmp_path, make_raster, capsys, monkeypatch
) -> None:
    """``--nodata -1`` (or a recipe's) on a uint16 raster marked nothing, so the fill meant was
    trained on as data without a word; ``geosr run --nodata -1`` refuses it."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    data = (np.arange(96 * 96).reshape(1, 96, 96) % 700 + 100).astype("uint16")
    scene = make_raster("scene.tif", data=data)
    args = ["train", str(scene), *FAST, "--nodata", "-1", "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "scene.tif", "not a valid uint16 value", "--nodata")
    assert not (tmp_path / "run").exists()


def test_a_recipes_output_in_the_home_folder_is_one_folder(tmp_path: Path, monkeypatch) -> None:
    """A recipe's ``output = "~/runs/x"`` put the config and checkpoints into './~/runs/x' and the
    weights (saved through expanduser) into the home folder's runs/x: one run in two places; its
    ``perceptual_net`` and ``data.store`` there were said not to exist."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    recipe = tmp_path / "mine.toml"
    recipe.write_text('output = "~/runs/x"\nperceptual_net = "~/vgg.pt"\n[data]\nstore = "~/pairs.zarr"\n')
    config = load_config(recipe, {"scale": 2})
    assert config.output == str(tmp_path / "home" / "runs" / "x")
    assert config.weights_stem.parent == tmp_path / "home" / "runs" / "x"
    # Which said they 'did not exist'.
    assert config.perceptual_net == str(tmp_path / "home" / "vgg.pt")
    assert config.data.store == str(tmp_path / "home" / "pairs.zarr")


def test_a_recipes_weights_follow_the_output_the_command_line_gives(tmp_path: Path) -> None:
    """`geosr train --recipe cnnrnn_fast_x4 -o runs/t1` wrote its config and checkpoints into runs/t1
    but its weights into the recipe's runs/cnnrnn_fast_x4, and `-o runs/t2` after it was refused:
    'runs/cnnrnn_fast_x4/cnnrnn-fast_x4.safetensors already exists'."""
    config = load_config("cnnrnn_fast_x4", {"output": str(tmp_path / "t1")})
    assert config.weights_stem == tmp_path / "t1" / "cnnrnn-fast_x4"
    assert load_config("cnnrnn_fast_x4").weights_stem == Path("runs/cnnrnn_fast_x4/cnnrnn-fast_x4")
    given = load_config("cnnrnn_fast_x4", {"output": str(tmp_path / "t1"), "weights": "w/mine"})
    assert given.weights_stem == Path("w/mine")
    recipe = tmp_path / "elsewhere.toml"  # weights a recipe keeps apart from its run stay there
    recipe.write_text('output = "runs/x"\nweights = "models/x_x4"\n')
    assert load_config(recipe, {"output": str(tmp_path / "t2")}).weights_stem == Path("models/x_x4")


def test_init_beside_a_recipes_model_table_names_the_flag_and_the_table(
    tmp_path, capsys, monkeypatch
) -> None:
    """It said "init='cnnrnn-fast' brings its own architecture: drop the model overrides
    {'features': 8, 'refine_steps': 1}": a keyword and a Python dict, to a user of --init and TOML."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    recipe = tmp_path / "mine.toml"
    recipe.write_text("[model]\nfeatures = 8\nrefine_steps = 1\n")
    code, err = run_cli(["train", "--recipe", str(recipe), "--init", "cnnrnn-fast"], capsys, monkeypatch)
    said = "--init cnnrnn-fast brings its own architecture: drop the recipe's [model] table (features = 8, "
    assert_one_clear_line(code, err, f"recipe {recipe}: {said}refine_steps = 1)")
    with pytest.raises(OptionError, match=re.escape("drop the model overrides {'features': 8}")):
        load_config(None, {"init": "cnnrnn-fast", "model": {"features": 8}})  # a Python caller's dict


def test_a_recipes_weights_are_named_for_the_scale_and_model_the_command_line_gives(tmp_path: Path) -> None:
    """`geosr train --recipe cnnrnn_fast_x4 -s 2` wrote its x2 model as cnnrnn-fast_x4.safetensors,
    the recipe's name for its x4 weights (and -m cnnrnn-best a cnnrnn-best model so)."""
    x2 = load_config("cnnrnn_fast_x4", {"scale": 2})
    assert x2.weights_stem == Path("runs/cnnrnn_fast_x4/cnnrnn-fast_x2")
    moved = load_config("cnnrnn_fast_x4", {"scale": 2, "output": str(tmp_path / "t1")})
    assert moved.weights_stem == tmp_path / "t1" / "cnnrnn-fast_x2"
    named = load_config("cnnrnn_fast_x4", {"name": "cnnrnn-best", "scale": 3})
    assert named.weights_stem == Path("runs/cnnrnn_fast_x4/cnnrnn-best_x3")
    given = load_config("cnnrnn_fast_x4", {"scale": 2, "weights": "w/mine_x4"})
    assert given.weights_stem == Path("w/mine_x4")
    recipe = tmp_path / "own.toml"  # a name of the recipe's own choosing stays
    recipe.write_text('scale = 4\nweights = "models/best"\n')
    assert load_config(recipe, {"scale": 2}).weights_stem == Path("models/best")


def test_an_undeclared_float_fill_is_left_out_of_training_in_one_line(tmp_path, scenes, make_raster) -> None:
    """1e+39 in a float64 raster of values near 0.1, declared as no nodata, was left out (as
    geosr run does) but said only as numpy's bare 'overflow encountered in cast'."""
    data = np.random.default_rng(0).random((1, 96, 96)) / 10 + 0.02
    data[0, 10, 10] = 1e39
    src = make_raster("fill.tif", data=data)
    result, lines = warnings_said(lambda: train(_config(tmp_path, src, scenes[1], steps=1)))
    assert result.step == 1
    assert lines == [
        f"{src}: 1 of the 9216 pixels read hold 1e+39, a float fill value (1e+38 or more in "
        "magnitude) not declared as its nodata: they are left out of training; give its source's "
        "nodata (in config.data.train or .val) as 1e+39 to declare it"
    ], lines
