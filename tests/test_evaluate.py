"""Evaluation metrics and the Wald protocol, on cases small enough to compute by hand."""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geosr.errors import InputError, OptionError, OutputError
from geosr.evaluation import evaluate_wald, lr_consistency, psnr, psnr_range, ssim, wald_lr
from geosr.evaluation.report import print_report, write_json


def test_psnr_by_hand() -> None:
    ref = np.zeros((4, 4))
    pred = np.zeros((4, 4))
    pred[0, 0] = 4.0  # MSE = 16 / 16 = 1
    assert psnr(pred, ref, data_range=10.0) == pytest.approx(20.0)
    # With a border of 1 only the 2 x 2 centre counts: identical there.
    assert math.isinf(psnr(pred, ref, data_range=10.0, border=1))
    valid = np.ones((4, 4), bool)
    valid[0, 0] = False
    assert math.isinf(psnr(pred, ref, data_range=10.0, valid=valid))


def test_metrics_of_values_near_the_float64_limits_are_numbers() -> None:
    """An undeclared float64 fill of 1e300 taken as data: range^2 ended in an OverflowError
    traceback, and errors of 1 in units of such a range squared to 0 (an 'MSE 0')."""
    rng = np.random.default_rng(0)
    ref = rng.random((24, 24)) * 1e300
    pred = ref.copy()
    pred[0, 0] += 4e290  # MSE = 16e580 / 576
    expected = 20 * math.log10(1e300) - 10 * (2 * math.log10(4e290) - math.log10(576))  # 215.56 dB
    assert psnr(pred, ref, data_range=1e300) == pytest.approx(expected)
    assert psnr(pred[:2, :2] * 0 + 1.0, np.zeros((2, 2)), data_range=1e300) == pytest.approx(6000.0)
    assert ssim(pred, ref, data_range=1e300) == pytest.approx(1.0)


def test_psnr_range_is_the_robust_span() -> None:
    values = np.arange(100001, dtype=np.float64).reshape(1, -1)
    assert psnr_range(values) == pytest.approx(99900.0 - 100.0)


def test_ssim_identical_is_one_and_noise_lowers_it() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((40, 40)) * 100
    assert ssim(img, img, data_range=100.0) == pytest.approx(1.0)
    noisy = img + rng.normal(0, 20, img.shape)
    value = ssim(noisy, img, data_range=100.0)
    assert value < 0.9


def test_numpy_ssim_matches_the_training_loss_ssim() -> None:
    torch = pytest.importorskip("torch")
    from geosr.train.losses import ssim as torch_ssim

    rng = np.random.default_rng(2)
    img = rng.random((32, 36))
    noisy = img + rng.normal(0, 0.1, img.shape)
    expected = float(
        torch_ssim(torch.tensor(noisy)[None, None], torch.tensor(img)[None, None], data_range=1.0)
    )
    assert ssim(noisy, img, data_range=1.0) == pytest.approx(expected, abs=1e-5)


def test_wald_lr_crops_and_block_averages() -> None:
    hr = np.arange(2 * 5 * 7, dtype=np.float64).reshape(2, 5, 7)
    valid = np.ones(hr.shape, bool)
    valid[1, 0, 0] = False
    hr_c, _ok, lr = wald_lr(hr, valid, 2)
    assert hr_c.shape == (2, 4, 6) and lr.shape == (2, 2, 3)
    assert lr[0, 0, 0] == pytest.approx((0 + 1 + 7 + 8) / 4)
    assert lr[0, 1, 2] == pytest.approx((18 + 19 + 25 + 26) / 4)
    assert np.isnan(lr[1, 0, 0]) and np.isfinite(lr[1, 0, 1])


def test_lr_consistency_of_a_block_constant_image_is_zero() -> None:
    lr = np.array([[1.0, 2.0], [3.0, 5.0]])
    sr = np.kron(lr, np.ones((3, 3)))
    assert lr_consistency(sr, lr, 3) == 0.0
    assert lr_consistency(sr + 1.5, lr, 3) == pytest.approx(1.5)


def _fake_upscaler(src: Path, dst: Path, *, scale: int, model: str | None, **_: object) -> Path:
    """Nearest-neighbour 'SR'; the 'bicubic' one is off by a constant 2."""
    with rasterio.open(src) as s:
        data = s.read()
        profile = s.profile
        transform = s.transform
    up = np.kron(data, np.ones((1, scale, scale), np.float32))
    if model == "bicubic":
        up = up + 2.0
    profile.update(width=up.shape[2], height=up.shape[1], transform=transform @ transform.scale(1 / scale))
    with rasterio.open(dst, "w", **profile) as d:
        d.write(up.astype(np.float32))
    return Path(dst)


def _recording(calls: list[Path]) -> Callable[..., Path]:
    """:func:`_fake_upscaler`, noting in ``calls`` each output it is asked to write."""

    def upscaler(src: Path, dst: Path, **kw: object) -> Path:
        calls.append(Path(dst))
        return _fake_upscaler(src, dst, **kw)  # type: ignore[arg-type]

    return upscaler


def test_wald_with_a_hand_computable_upscaler(make_raster, tmp_path) -> None:
    # HR constant on 2 x 2 blocks: the Wald LR is exact and nearest 'SR' gives HR back.
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 1000, (1, 20, 21)).astype("uint16")
    hr = np.kron(blocks, np.ones((2, 2), "uint16"))[:, :, :41]  # odd width: one column cropped
    path = make_raster("hr.tif", data=hr)
    report = evaluate_wald(
        [path], scale=2, model="fake", border=4, upscaler=_fake_upscaler, workdir=tmp_path / "w"
    )
    band = report.images[0].bands[0]
    rng_hr = psnr_range(hr[0, :, :40].astype(np.float64))
    assert band.psnr_range == pytest.approx(rng_hr)
    assert math.isinf(band.psnr)
    assert band.psnr_bicubic == pytest.approx(20 * math.log10(rng_hr / 2.0))
    assert band.ssim == pytest.approx(1.0)
    assert band.lr_consistency == 0.0
    assert (tmp_path / "w" / "000_hr_lr.tif").is_file()
    with rasterio.open(tmp_path / "w" / "000_hr_lr.tif") as lr, rasterio.open(path) as src:
        assert lr.transform == src.transform @ src.transform.scale(2)
        assert (lr.width, lr.height) == (20, 20)


def test_the_wald_lr_grid_tells_of_no_deprecated_affine_product(make_raster, tmp_path) -> None:
    """The Wald LR's grid was cut and zoomed out with odc-geo's GeoBox, which composes transforms
    with ``*``: under `python -W default` (or pytest) geosr evaluate said "warning: Use `@` matmul
    instead of `*` mul operator for matrix multiplication"."""
    import warnings

    path = make_raster("hr.tif", height=41, width=40)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_wald([path], scale=2, model="bicubic", border=2, workdir=tmp_path / "w")
    assert not [str(w.message) for w in caught if "matmul" in str(w.message)]
    with rasterio.open(tmp_path / "w" / "000_hr_lr.tif") as lr, rasterio.open(path) as src:
        assert lr.transform == src.transform @ src.transform.scale(2)
        assert (lr.width, lr.height) == (20, 20)


def test_report_json_and_table(make_raster, tmp_path) -> None:
    path = make_raster("hr.tif", height=48, width=48)
    report = evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    out = write_json(report, tmp_path / "r.json")
    data = json.loads(out.read_text())
    assert data["summary"]["gain_db"] == pytest.approx(report.summary()["gain_db"])
    assert data["images"][0]["bands"][0]["band"] == 1
    print_report(report)


def test_a_report_cut_short_by_a_full_disk_leaves_the_old_one(make_raster, tmp_path) -> None:
    """The JSON report was written in place: a disk that filled mid-write left a cut file
    instead of the report it replaced.  A file-size limit stands for the full disk."""
    import resource
    import signal

    path = make_raster("hr.tif", height=48, width=48)
    report = evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    out = write_json(report, tmp_path / "r.json")
    before = out.read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as ENOSPC, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, limits[1]))
    try:
        with pytest.raises(OutputError, match="cannot write the JSON report"):
            write_json(report, out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hr.tif", "r.json"]


def test_empty_input_is_refused() -> None:
    with pytest.raises(InputError):
        evaluate_wald([], scale=2)


def test_an_error_while_upscaling_names_the_users_raster(make_raster, tmp_path) -> None:
    # The Wald LR is a temporary file of geosr's: an error named it, not the input.
    from geosr.models.weights import save_weights
    from tests.test_models_weights import card_for, trained_like

    model = trained_like()
    weights, _ = save_weights(model, card_for(model, bands=["B2", "B3"]), tmp_path / "m")
    hr = make_raster("field.tif", count=2, height=24, width=24, descriptions=("B3", "B2"))
    with pytest.raises(InputError, match=r"^.*field\.tif \(its Wald LR\): model .* expects bands") as info:
        evaluate_wald([hr], scale=2, model=str(weights), border=2)
    assert "geosr-eval-" not in str(info.value)


def test_wald_on_a_zarr_store_picks_its_variable_and_scores_like_the_geotiff(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    """`geosr evaluate STORE --variable NAME`: the Zarr's variable is scored exactly as the
    same pixels in a GeoTIFF (the error for a store of several variables asked for a
    --variable option the command did not have)."""
    import xarray as xr

    from tests.test_bad_input import run_cli

    tif = make_raster(count=1, height=64, width=64, dtype="float32", nodata=float("nan"))
    data = xr.open_dataarray(tif, engine="rasterio").rename("refl").to_dataset()
    data["other"] = data["refl"] * 2
    store = tmp_path / "hr.zarr"
    data.to_zarr(store, zarr_format=3, consolidated=False)
    from_tif = evaluate_wald([tif], scale=2, model="bicubic", border=4)
    from_zarr = evaluate_wald([store], scale=2, model="bicubic", border=4, variable="refl")
    assert from_zarr.images[0].bands[0].psnr == from_tif.images[0].bands[0].psnr
    cli = ["evaluate", str(store), "--scale", "2", "--model", "bicubic"]
    code, err = run_cli(cli, capsys, monkeypatch)
    assert code == 2 and "choose one with --variable" in err, err
    code, err = run_cli([*cli, "--variable", "refl"], capsys, monkeypatch)
    assert code == 0, err


def _refuse_to_evaluate(*_: object, **__: object) -> None:
    raise AssertionError("the evaluation ran before the options were checked")


@pytest.mark.parametrize(
    ("reports", "needles"),
    [
        # The plot's format was checked by matplotlib only when it saved, after the whole
        # evaluation (a traceback), and same.out was left holding the JSON.
        (["--json", "same.out", "--plot", "same.out"], ["same.out", "cannot write .out", ".png"]),
        (["--plot", "gain"], ["gain", "no extension", ".png"]),
        # As --json - prints the JSON: it was 'no extension names its image format'.
        (["--plot", "-"], ["--plot -: the plot is written to a file, not to standard output", "gain.png"]),
        # The same path for both: the PNG silently replaced the JSON.
        (["--json", "r.png", "--plot", "r.png"], ["--json and --plot both name", "r.png"]),
        # A folder passed check_writable with --overwrite; writing failed at the end.
        (["--json", "folder", "--overwrite"], ["--json", "folder is a directory"]),
        (["--plot", "folder.png", "--overwrite"], ["--plot", "folder.png is a directory"]),
        # A '/' at the end, which a Path drops: the report was written as the file m.json.
        (["--json", "m.json/"], ["--json m.json/", "names a folder", "drop the '/'"]),
        (["--plot", "p.png/", "--overwrite"], ["--plot p.png/", "names a folder", "drop the '/'"]),
        (["--json", "field.tif/", "--overwrite"], ["--json field.tif/", "names a folder"]),
    ],
)
def test_evaluate_checks_report_paths_before_evaluating(
    make_raster, tmp_path, capsys, monkeypatch, reports, needles
) -> None:
    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("field.tif", height=32, width=32)
    (tmp_path / "folder").mkdir()
    (tmp_path / "folder.png").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("geosr.evaluation.wald.evaluate_wald", _refuse_to_evaluate)
    code, err = run_cli(["evaluate", str(hr), "-s", "2", "--model", "bicubic", *reports], capsys, monkeypatch)
    assert_one_clear_line(code, err, *needles)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["field.tif", "folder", "folder.png"]
    assert not any((tmp_path / "folder").iterdir()) and not any((tmp_path / "folder.png").iterdir())


@pytest.mark.parametrize("option", ["--json", "--plot"])
def test_an_existing_report_is_named_by_its_option_as_given(
    make_raster, tmp_path, capsys, monkeypatch, option
) -> None:
    """`geosr evaluate field.tif --json metrics.json`, run twice, said 'error: /home/me/work/metrics.json
    already exists; ...': the absolute path, and not the option, where every other report line names
    both as given ('--plot gain.txt: matplotlib cannot write .txt images')."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("field.tif", height=32, width=32)
    (tmp_path / "report.png").write_bytes(b"an earlier report")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("geosr.evaluation.wald.evaluate_wald", _refuse_to_evaluate)
    code, err = run_cli(["evaluate", str(hr), "-s", "2", option, "report.png"], capsys, monkeypatch)
    assert_one_clear_line(code, err, f"error: {option} report.png already exists; pass --overwrite")
    assert str(tmp_path) not in err
    assert (tmp_path / "report.png").read_bytes() == b"an earlier report"


def test_evaluate_workdir_that_is_a_file_is_one_line(make_raster, tmp_path, capsys, monkeypatch) -> None:
    # It was a FileExistsError traceback from mkdir.
    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("field.tif", height=32, width=32)
    before = hr.read_bytes()
    args = ["evaluate", str(hr), "-s", "2", "--border", "2", "--model", "bicubic", "--workdir", str(hr)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "field.tif is a file, not a directory")
    assert hr.read_bytes() == before


def test_evaluate_workdir_that_takes_no_files_is_one_line(make_raster, tmp_path, capsys, monkeypatch) -> None:
    """An existing --workdir on a read-only file system: a RasterioIOError traceback at the
    first LR GeoTIFF ('Attempt to create new tiff file ... failed: Read-only file system')."""
    import os

    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("field.tif", height=32, width=32)
    work = tmp_path / "wd"
    work.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != work and real_access(path, mode))
    args = ["evaluate", str(hr), "-s", "2", "--border", "2", "--model", "bicubic", "--workdir", str(work)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, f"cannot write in --workdir {work}", "is not writable", "another folder")
    assert list(work.iterdir()) == []


def test_evaluate_keeps_the_workdir_of_an_earlier_run_unless_told_to_overwrite(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    # A second run with the same --workdir silently replaced the first run's GeoTIFFs.
    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("field.tif", height=32, width=32)
    work = tmp_path / "wd"
    args = ["evaluate", str(hr), "-s", "2", "--border", "2", "--model", "bicubic", "--workdir", str(work)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    kept = {p.name: p.stat().st_mtime_ns for p in work.iterdir()}
    assert set(kept) == {"000_field_lr.tif", "000_field_sr.tif", "000_field_bicubic.tif"}
    monkeypatch.setattr("geosr.api.upscale_file", _refuse_to_evaluate)
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "000_field_lr.tif already exists", "--overwrite")
    assert {p.name: p.stat().st_mtime_ns for p in work.iterdir()} == kept
    monkeypatch.undo()
    code, err = run_cli([*args, "--overwrite"], capsys, monkeypatch)
    assert code == 0, err


def test_an_evaluation_into_a_workdir_another_one_writes_is_refused_and_leaves_it_alone(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    """Two evaluations with one --workdir at once: the second wrote the LR the first was
    reading, and failing on the first's SR run (locked), removed its LR and run state as
    its own: both failed.  The second is now one line naming the first's pid."""
    import os

    from geosr.io.atomic import take_lock
    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("field.tif", height=32, width=32)
    work = tmp_path / "wd"
    work.mkdir()
    (work / "000_field_lr.tif").write_bytes(b"the first one's LR, being read")
    lock = os.open(work / ".geosr-evaluate.lock", os.O_RDWR | os.O_CREAT)
    assert take_lock(lock) is None  # as the first evaluation holds it
    args = ["evaluate", str(hr), "-s", "2", "--border", "2", "--model", "bicubic", "--workdir", str(work)]
    try:
        for flags in ([], ["--overwrite"]):
            code, err = run_cli([*args, *flags], capsys, monkeypatch)
            said = (f"cannot write in --workdir {work}", f"another geosr evaluate (pid {os.getpid()})")
            assert_one_clear_line(code, err, *said, "another --workdir")
            assert (work / "000_field_lr.tif").read_bytes() == b"the first one's LR, being read"
            assert sorted(p.name for p in work.iterdir()) == [".geosr-evaluate.lock", "000_field_lr.tif"]
    finally:
        os.close(lock)
    (work / ".geosr-evaluate.lock").unlink()
    code, err = run_cli([*args, "--overwrite"], capsys, monkeypatch)  # once it is free
    assert code == 0, err
    written = {"000_field_lr.tif", "000_field_sr.tif", "000_field_bicubic.tif"}
    assert {p.name for p in work.iterdir()} == written  # and no lock left behind


def test_an_evaluation_interrupted_mid_way_leaves_its_workdir_as_it_was(make_raster, tmp_path) -> None:
    """Ctrl-C or SIGTERM once the LR and SR were written: 'nothing was written: run the
    same command again', and that command was refused ('000_field_lr.tif already exists
    (an earlier evaluation's)'), beside a hidden run state of the bicubic output."""
    import geosr

    def stopped_at_bicubic(lr, out, **kw):
        if kw["model"] == "bicubic":
            raise KeyboardInterrupt  # as a Ctrl-C there: the SR is written, the bicubic not
        return geosr.upscale_file(lr, out, **kw)

    hr = make_raster("field.tif", height=32, width=32)
    work = tmp_path / "wd"
    work.mkdir()
    (work / "notes.txt").write_text("mine")
    with pytest.raises(KeyboardInterrupt):
        evaluate_wald([hr], scale=2, border=2, model="bicubic", workdir=work, upscaler=stopped_at_bicubic)
    assert [p.name for p in work.iterdir()] == ["notes.txt"]
    report = evaluate_wald([hr], scale=2, border=2, model="bicubic", workdir=work)
    assert len(report.images) == 1


def _strict_json(text: str) -> dict:
    """``json.loads`` that rejects the non-standard Infinity/NaN tokens, as browsers and jq do."""

    def reject(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=reject)


def test_a_constant_band_is_not_scored_and_said_so(make_raster, tmp_path) -> None:
    """A constant reference band has no PSNR range: its metrics were computed on a made-up
    range of 1, an exact 'SR' made the gain infinite, the table printed 'inf' where the
    summary said '-inf', and the JSON held bare Infinity tokens.  Now the band is n/a with
    a note, the means are over the other bands, and the JSON is strict with null + note."""
    from rich.console import Console

    rng = np.random.default_rng(3)
    data = np.stack([rng.integers(0, 1000, (48, 48)), np.full((48, 48), 7)]).astype("uint16")
    path = make_raster("hr.tif", data=data)
    report = evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    textured, constant = report.images[0].bands
    assert textured.scored and not textured.note
    assert not constant.scored and "constant" in constant.note and math.isnan(constant.gain_db)
    summary = report.summary()
    assert summary["gain_db"] == pytest.approx(textured.gain_db)
    assert summary["min_gain_db"] == pytest.approx(textured.gain_db)
    assert (summary["image_bands"], summary["excluded_image_bands"]) == (2, 1)

    data = _strict_json(write_json(report, tmp_path / "r.json").read_text())
    band2 = data["images"][0]["bands"][1]
    assert band2["gain_db"] is None and band2["psnr"] is None and "constant" in band2["note"]
    assert data["summary"]["gain_db"] == pytest.approx(textured.gain_db)
    assert "1 of 2 image bands left out" in data["summary"]["note"]

    console = Console(record=True, width=250)
    print_report(report, console)
    text = console.export_text()
    assert "inf" not in text
    assert "band 2: the reference band is constant" in text
    assert f"mean gain over bicubic {textured.gain_db:+.2f} dB" in text and "over 1 of 2 image bands" in text


def _exact_bicubic(src: Path, dst: Path, *, scale: int, model: str | None, **kwargs: object) -> Path:
    """The fake upscaler with the roles swapped: 'bicubic' is exact, the 'SR' off by 2."""
    return _fake_upscaler(src, dst, scale=scale, model="sr" if model == "bicubic" else "bicubic")


def test_an_infinite_psnr_keeps_its_sign_and_is_null_in_json(make_raster, tmp_path) -> None:
    # The table printed "inf" for a gain of -inf (the sign was lost) and the JSON "-Infinity".
    from rich.console import Console

    blocks = np.random.default_rng(1).integers(0, 1000, (1, 20, 20)).astype("uint16")
    path = make_raster("hr.tif", data=np.kron(blocks, np.ones((2, 2), "uint16")))
    report = evaluate_wald([path], scale=2, model="fake", border=4, upscaler=_exact_bicubic)
    band = report.images[0].bands[0]
    assert band.gain_db == -math.inf and "bicubic equals the reference exactly" in band.note
    console = Console(record=True, width=250)
    print_report(report, console)
    row = next(line for line in console.export_text().splitlines() if "hr.tif" in line)
    assert row.split("│")[-3].strip() == "-inf"  # the gain column
    data = _strict_json(write_json(report, tmp_path / "r.json").read_text())
    assert data["images"][0]["bands"][0]["psnr_bicubic"] is None
    assert data["summary"]["gain_db"] is None and "left out" in data["summary"]["note"]


def test_an_image_too_small_for_the_border_is_named_before_it_is_upscaled(make_raster) -> None:
    """With several images, the one the border leaves nothing of is named, before any compute on any:
    the images before it were evaluated first, for nothing."""
    big = make_raster("big.tif", height=48, width=48)
    small = make_raster("small.tif", height=20, width=20)
    calls: list[Path] = []

    with pytest.raises(InputError, match=r"small\.tif: a border of 16 px leaves nothing of its 20 x 20"):
        evaluate_wald([big, small], scale=2, model="fake", border=16, upscaler=_recording(calls))
    assert calls == []


def test_an_image_smaller_than_an_ssim_window_is_named_before_it_is_upscaled(make_raster) -> None:
    """It was upscaled, scored in no band (no mean) and the evaluation exited 0, with a note
    that blamed nodata spread over the band, of an image without nodata."""
    small = make_raster("small.tif", height=9, width=13)
    calls: list[Path] = []

    with pytest.raises(InputError, match=r"small\.tif: its 12 x 8 px hold no whole 11 x 11 SSIM window"):
        evaluate_wald([small], scale=2, model="fake", border=0, upscaler=_recording(calls))
    assert calls == []


def test_evaluates_size_lines_give_width_x_height_as_gdal_and_geosr_info_do(
    make_raster, capsys, monkeypatch
) -> None:
    """geosr evaluate gave sizes height x width: "a border of 16 px leaves nothing of its 60 x 30
    pixels" of a raster 30 px wide and 60 high, which gdalinfo, QGIS and geosr info give as 30 x 60."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    tall = make_raster("tall.tif", height=61, width=30)
    code, err = run_cli(
        ["evaluate", str(tall), "-s", "2", "-m", "bicubic", "--border", "16"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "tall.tif: a border of 16 px leaves nothing of its 30 x 60 px")
    wide = make_raster("wide.tif", height=9, width=41)
    code, err = run_cli(
        ["evaluate", str(wide), "-s", "2", "-m", "bicubic", "--border", "0"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, "wide.tif: its 40 x 8 px hold no whole 11 x 11 SSIM window")
    flat = make_raster("flat.tif", height=1, width=40)
    code, err = run_cli(["evaluate", str(flat), "-s", "2", "-m", "bicubic"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "flat.tif: its 40 x 1 px hold no 2 x 2 block")
    with pytest.raises(InputError, match=r"^a 40 x 1 px raster is smaller than one 2 x 2 block$"):
        wald_lr(np.ones((1, 1, 40)), np.ones((1, 1, 40), bool), 2)


def test_an_image_smaller_than_one_block_is_named(make_raster) -> None:
    # "a 3 x 40 raster is smaller than one 4 x 4 block": which of the rasters was not said.
    big = make_raster("big.tif", height=48, width=48)
    tiny = make_raster("tiny.tif", height=3, width=40)
    with pytest.raises(InputError, match=r"^.*tiny\.tif: its 40 x 3 px hold no 4 x 4 block"):
        evaluate_wald([big, tiny], scale=4, model="fake", border=0, upscaler=_fake_upscaler)


def test_evaluate_expands_a_quoted_glob(make_raster, tmp_path, capsys, monkeypatch) -> None:
    """As geosr run and geosr train do: the glob was taken as one file name that does not exist."""
    from tests.test_bad_input import run_cli

    for name in ("a.tif", "b.tif"):
        make_raster(name, height=32, width=32)
    out = tmp_path / "m.json"
    pattern = str(tmp_path / "*.tif")
    args = ["evaluate", pattern, "-s", "2", "--border", "2", "--model", "bicubic", "--json", str(out)]
    code, err = run_cli(args, capsys, monkeypatch)
    assert code == 0, err
    paths = [Path(im["path"]).name for im in json.loads(out.read_text())["images"]]
    assert paths == ["a.tif", "b.tif"]


@pytest.mark.parametrize("holes", ["all", "one per block"])
def test_an_hr_raster_without_a_valid_block_is_named_with_its_own_nodata(make_raster, holes: str) -> None:
    """The message spoke of the Wald LR's nodata (nan), not the HR file's (0)."""
    data = np.full((1, 48, 48), 700, "uint16")
    data[0, ::2, ::2] = 0
    if holes == "all":
        data[:] = 0
    path = make_raster("holes.tif", data=data, nodata=0)
    expected = "every pixel is nodata" if holes == "all" else "every 2 x 2 block has a nodata pixel"
    with pytest.raises(InputError, match=rf"holes\.tif: {expected}, so its Wald LR would be all nodata"):
        evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)


@pytest.mark.parametrize("option", [["--nodata", "0"], ["--variable", "refl"]])
def test_wald_only_options_with_pairs_are_refused(
    make_raster, tmp_path, capsys, monkeypatch, option: list[str]
) -> None:
    """--nodata and --variable were silently ignored with --lr/--hr: a user's nodata was scored as data."""
    from affine import Affine

    from tests.conftest import UTM_TRANSFORM
    from tests.test_bad_input import assert_one_clear_line, run_cli

    lr = make_raster("lr.tif", height=32, width=32)
    hr = make_raster("hr.tif", height=64, width=64, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    monkeypatch.setattr("geosr.api.upscale_file", _refuse_to_evaluate)
    args = ["evaluate", "--lr", str(lr), "--hr", str(hr), "-s", "2", "--model", "bicubic", *option]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, f"{option[0]} applies to the HR rasters of the Wald protocol")


def test_the_report_names_the_default_model_that_ran(make_raster) -> None:
    """Without --model the table, JSON and plot said 'model default', which an archived report
    cannot be traced back from once the default changes."""
    from geosr.models.registry import DEFAULT_MODEL

    path = make_raster("hr.tif", height=32, width=32)
    report = evaluate_wald([path], scale=2, border=2, upscaler=_fake_upscaler)
    assert report.model == report.to_dict()["model"] == DEFAULT_MODEL


def test_a_nodata_the_hr_dtype_cannot_hold_names_the_raster_before_any_is_evaluated(make_raster) -> None:
    # --nodata nan on uint16 rasters was taken: no pixel can be NaN there, so every pixel
    # was scored as data, where geosr run refuses the same value in one line.
    first = make_raster("first.tif", height=32, width=32, dtype="float32")
    second = make_raster("second.tif", height=32, width=32, dtype="uint16")
    with pytest.raises(OptionError, match=r"second\.tif: nodata nan is not a valid uint16 value"):
        evaluate_wald([first, second], scale=2, model="fake", border=2, nodata=float("nan"), upscaler=_refuse)


def _refuse(*_: object, **__: object) -> Path:
    raise AssertionError("an image was evaluated before --nodata was checked")


def test_bands_evaluates_those_bands_of_the_hr_raster_under_their_numbers(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    # geosr evaluate had no --bands, though geosr run has: a model for some bands of a
    # multi-band scene could not be evaluated on that scene.
    from tests.test_bad_input import run_cli

    data = np.stack([np.full((32, 32), 100 * (b + 1), "uint16") for b in range(3)])
    data[2] += np.arange(32, dtype="uint16")[:, None]  # band 3 alone is not constant: scored
    path = make_raster("rgb.tif", data=data, descriptions=("B04", "B03", "B02"))
    report = evaluate_wald([path], scale=2, model="fake", border=2, bands="B02,1", upscaler=_fake_upscaler)
    assert [b.band for b in report.images[0].bands] == [3, 1]
    assert [b.scored for b in report.images[0].bands] == [True, False]
    args = ["evaluate", str(path), "-s", "2", "--model", "bicubic", "--border", "2", "--bands", "3"]
    code, err = run_cli([*args, "--json", str(tmp_path / "r.json")], capsys, monkeypatch)
    assert code == 0, err
    assert [b["band"] for b in json.loads((tmp_path / "r.json").read_text())["images"][0]["bands"]] == [3]


def test_a_band_specific_model_is_refused_bands_in_another_order(make_raster, tmp_path) -> None:
    # The Wald LR had no band descriptions, so the run's check of a model's bands against
    # the scene's was skipped: B8,B4,B3,B2 ran through a B2,B3,B4,B8 model and was scored.
    from geosr.models.weights import save_weights
    from tests.test_models_weights import card_for, trained_like

    model = trained_like()
    weights, _ = save_weights(model, card_for(model, bands=["B2", "B3", "B4", "B8"]), tmp_path / "m")
    path = make_raster(count=4, height=24, width=24, descriptions=("B8", "B4", "B3", "B2"))
    with pytest.raises(InputError, match=r"scene\.tif \(its Wald LR\): model .* expects bands B2,B3,B4,B8"):
        evaluate_wald([path], scale=2, model=str(weights), border=2)
    report = evaluate_wald([path], scale=2, model=str(weights), border=2, bands="B2,B3,B4,B8")
    assert [b.band for b in report.images[0].bands] == [4, 3, 2, 1]


@pytest.mark.parametrize("scale", ["0", "-2"])
def test_a_scale_below_one_is_one_line(make_raster, capsys, monkeypatch, scale: str) -> None:
    # The Wald block average failed on it: ZeroDivisionError (0) or ValueError (-2) tracebacks.
    from tests.test_bad_input import assert_one_clear_line, run_cli

    path = make_raster(height=16, width=16)
    code, err = run_cli(
        ["evaluate", str(path), f"--scale={scale}", "--model", "bicubic"], capsys, monkeypatch
    )
    assert_one_clear_line(code, err, f"--scale {scale} is not supported")


def test_images_of_one_name_in_other_folders_are_told_apart_in_the_table(make_raster, tmp_path) -> None:
    # val/*/B04.tif (one folder per patch) made rows that all read B04.tif, like bands of one image.
    from rich.console import Console

    for folder in ("p1", "p2"):
        (tmp_path / folder).mkdir()
        make_raster(f"{folder}/B04.tif", height=24, width=24)
    alone = make_raster("other.tif", height=24, width=24)
    paths = [tmp_path / "p1" / "B04.tif", tmp_path / "p2" / "B04.tif", alone]
    report = evaluate_wald(paths, scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    console = Console(record=True, width=200)
    print_report(report, console)
    rows = [line.split("│")[1].strip() for line in console.export_text().splitlines() if line.count("│") > 3]
    assert rows[:3] == ["p1/B04.tif", "p2/B04.tif", "other.tif"]


def test_a_band_without_a_valid_pixel_is_not_scored_and_the_others_are(make_raster) -> None:
    # A cloudy date of a cube (geosr run writes it as nodata) failed the whole evaluation with
    # "the reference band has no valid pixel", naming neither the band nor what to do.
    data = np.stack([np.arange(32 * 32, dtype="float32").reshape(32, 32) + 100 * b for b in range(3)])
    data[1] = np.nan
    path = make_raster("cube.tif", data=data, nodata=float("nan"))
    report = evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    bands = report.images[0].bands
    assert [b.scored for b in bands] == [True, False, True]
    assert "band has no valid pixel" in bands[1].note
    assert report.summary()["excluded_image_bands"] == 1


def test_the_runs_warnings_name_the_users_raster_once(make_raster, capfd, monkeypatch) -> None:
    # They named the temporary Wald LR (/tmp/geosr-eval-.../000_cube_lr.tif), once for the
    # model's run and again for the bicubic one.
    from tests.test_batch import run_cli

    data = np.stack([np.arange(32 * 32, dtype="float32").reshape(32, 32) + 100 * b for b in range(2)])
    data[1] = np.nan
    path = make_raster("cube.tif", data=data, nodata=float("nan"))
    args = ["evaluate", str(path), "-s", "2", "--border", "2", "--model", "bicubic"]
    code, _, err = run_cli(args, capfd, monkeypatch)
    assert code == 0, err
    assert err.count("band 2 has no valid pixel") == 1, err
    assert f"warning: {path} (its Wald LR): band 2 has no valid pixel" in err, err


def test_a_band_whose_nodata_leaves_no_ssim_window_is_not_scored_and_the_others_are(make_raster) -> None:
    # Nodata every 8 px in one band left no whole 11 x 11 window: "no valid SSIM window outside
    # the border" failed the whole evaluation, naming no band.
    data = np.stack([np.arange(64 * 64, dtype="uint16").reshape(64, 64) + 100 + 50 * b for b in range(2)])
    data[1, ::8, ::8] = 0
    path = make_raster("speckle.tif", data=data, nodata=0)
    report = evaluate_wald([path], scale=2, model="fake", border=4, upscaler=_fake_upscaler)
    first, second = report.images[0].bands
    assert first.scored and np.isfinite(first.ssim)
    assert not second.scored and math.isnan(second.ssim) and np.isfinite(second.psnr)
    assert "no SSIM window" in second.note


def test_a_paired_lrs_nodata_is_not_scored_as_data(make_raster, tmp_path) -> None:
    # The SR of a uint16 LR holds 0 where the LR is nodata 0: scored as data against the
    # HR there, a pair with a nodata patch read 12.9 dB for 30.2 dB.
    from affine import Affine

    from geosr.evaluation import evaluate_paired
    from geosr.train.coreg import coregister
    from tests.conftest import UTM_TRANSFORM, coordinate_pattern

    hr = coordinate_pattern(1, 64, 64)
    lr = hr.astype(np.float64).reshape(1, 32, 2, 32, 2).mean(axis=(2, 4)).round().astype("uint16")
    hr_path = make_raster("hr.tif", data=hr, transform=UTM_TRANSFORM @ Affine.scale(0.5), nodata=0)
    lr[0, 8:14, 8:24] = 0
    holed = make_raster("holed.tif", data=lr, nodata=0)
    report = evaluate_paired([(holed, hr_path)], scale=2, model="bicubic", border=4, workdir=tmp_path / "w")
    band = report.images[0].bands[0]
    with rasterio.open(tmp_path / "w" / "000_holed_sr.tif") as out:
        sr = out.read(1).astype(np.float64)
    scored = np.zeros(sr.shape, bool)
    scored[4:-4, 4:-4] = sr[4:-4, 4:-4] != 0
    reference = coregister(holed, hr_path, 2).hr[0]  # the HR matched to the LR's radiometry
    mse = np.mean((sr[scored] - reference[scored]) ** 2)
    assert band.psnr == pytest.approx(10 * np.log10(band.psnr_range**2 / mse))


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (["--model", "nosuch"], "unknown model 'nosuch'"),
        (["--tile", "3"], "--tile 3 is too small"),
        (["--precision", "fp99"], "--precision 'fp99' is not known"),
        (["--scale", "9"], "scale 9 is not supported by model cnnrnn-fast"),
    ],
)
@pytest.mark.parametrize("paired", [False, True])
def test_an_option_every_run_refuses_does_not_blame_the_raster(
    make_raster, capsys, monkeypatch, option: list[str], says: str, paired: bool
) -> None:
    # It failed the first image, once read, as "hr.tif (its Wald LR): unknown model 'nosuch'"
    # (the LR file in paired mode): a raster that is fine.
    from tests.test_bad_input import assert_one_clear_line, run_cli

    hr = make_raster("hr.tif", height=32, width=32)
    inputs = (
        ["--lr", str(make_raster("lr.tif", height=16, width=16)), "--hr", str(hr)] if paired else [str(hr)]
    )
    code, err = run_cli(["evaluate", *inputs, "-s", "2", *option], capsys, monkeypatch)
    assert_one_clear_line(code, err, says)
    assert ".tif" not in err, err


def test_long_image_names_are_whole_and_each_row_one_line_in_80_columns(make_raster, tmp_path) -> None:
    """In an 80-column terminal the image column has 8 characters: a long name was folded
    over 6 lines of its row (cut, both NAIP dates had read "m_47099…", one image twice).  The
    rows number the images, listed whole, one line each, under the table."""
    import io

    from rich.console import Console

    names = ["m_4709963_se_14_1_20090818_20110101_naip.tif", "m_4709963_se_14_1_20100629_20120101_naip.tif"]
    paths = [make_raster(name, height=24, width=24) for name in names]
    report = evaluate_wald(paths, scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=80, force_terminal=True, color_system=None))
    lines = screen.getvalue().splitlines()
    rows = [line.split("│")[1:3] for line in lines if line.count("│") > 3]
    assert [[cell.strip() for cell in row] for row in rows] == [["1", "1"], ["2", "1"], ["mean", ""]]
    assert [line for line in lines if line.startswith("image ")] == [
        f"image {i}: {n}" for i, n in enumerate(names, 1)
    ]
    # Where the names fit, they are the rows' own.
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=200))
    rows = [line.split("│")[1].strip() for line in screen.getvalue().splitlines() if line.count("│") > 3]
    assert rows == [*names, "mean"] and "image 1:" not in screen.getvalue()


def test_a_piped_table_names_each_row_whole(make_raster) -> None:
    """Piped (a log, grep, a script) evaluate numbered long names as in an 80-column terminal,
    a row's name ('1') on a line under the table, where geosr info prints its values whole
    when piped: each row now has its image's whole name, on one line."""
    import io

    from rich.console import Console

    names = ["m_4709963_se_14_1_20090818_20110101_naip.tif", "m_4709963_se_14_1_20100629_20120101_naip.tif"]
    paths = [make_raster(name, height=24, width=24) for name in names]
    report = evaluate_wald(paths, scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=80))  # a file: no terminal
    lines = screen.getvalue().splitlines()
    rows = [[cell.strip() for cell in line.split("│")[1:3]] for line in lines if line.count("│") > 3]
    assert rows == [[names[0], "1"], [names[1], "1"], ["mean", ""]], screen.getvalue()
    assert not any(line.startswith("image ") for line in lines), screen.getvalue()


@pytest.mark.parametrize(
    ("flaw", "says"),
    [
        ("bands", "lr3.tif gives 3 bands and"),
        ("border", "a border of 8 px"),
        ("swapped", "hr.tif's pixel"),
        ("elsewhere", "far.tif does not overlap"),
    ],
)
def test_a_bad_pair_is_named_before_any_pair_is_evaluated(make_raster, flaw: str, says: str) -> None:
    # The second pair's band count or size failed only once the first had been evaluated, and
    # so did swapped files (its HR pixel coarser than the LR's / scale) or an HR beside its LR.
    from affine import Affine

    from geosr.evaluation import evaluate_paired
    from tests.conftest import UTM_TRANSFORM

    hr_transform = UTM_TRANSFORM @ Affine.scale(0.5)
    hr = make_raster("hr.tif", height=48, width=48, transform=hr_transform)
    lr = make_raster("lr.tif", height=24, width=24)
    pairs = [(lr, hr)]
    if flaw == "bands":
        pairs.append((make_raster("lr3.tif", count=3, height=24, width=24), hr))
    elif flaw == "border":
        pairs.append((make_raster("lr_small.tif", height=4, width=24), hr))
    elif flaw == "swapped":
        pairs.append((hr, lr))
    else:
        far = hr_transform @ Affine.translation(10_000, 0)
        pairs.append((lr, make_raster("far.tif", height=48, width=48, transform=far)))
    calls: list[Path] = []

    with pytest.raises(InputError, match=says):
        evaluate_paired(pairs, scale=2, model="fake", border=8, upscaler=_recording(calls))
    assert calls == []


def test_lr_consistency_leaves_out_the_border_as_psnr_does() -> None:
    # An SR off only along the image's edge, in the border, gave an LR error of 7 % of the
    # range while PSNR and SSIM, which leave the border out, gave an exact match.
    from geosr.evaluation import band_metrics

    rng = np.random.default_rng(3)
    lr = rng.uniform(0, 100, (12, 12))
    hr = np.kron(lr, np.ones((2, 2)))
    sr = hr.copy()
    sr[0, :] += 50.0  # in a border of 2 HR px
    band = band_metrics(1, sr, hr, hr, lr, 2, border=2)
    assert math.isinf(band.psnr)
    assert band.lr_consistency == 0.0
    assert lr_consistency(sr, lr, 2) > 0  # the whole image, as the function's default


def test_an_undeclared_zero_fill_is_warned_about_as_geosr_run_does(make_raster) -> None:
    # A Sentinel-2 L1C crop at the swath edge (0 outside, no nodata declared) was scored with
    # its fill as data, 25.9 dB for 30.6 with --nodata 0, while geosr run warns about it.
    import warnings

    from geosr.errors import GeosrWarning

    data = np.arange(1, 32 * 32 + 1, dtype="uint16").reshape(1, 32, 32)
    data[:, :, :12] = 0
    path = make_raster("edge.tif", data=data)
    with pytest.warns(GeosrWarning, match=r"edge\.tif: .* declares no nodata.*pass nodata=0"):
        evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    with warnings.catch_warnings():
        warnings.simplefilter("error", GeosrWarning)
        evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler, nodata=0)


def test_the_psnr_range_is_over_every_valid_hr_pixel(make_raster) -> None:
    # An HR pixel in a block with a nodata pixel has a nodata SR, and it was left out of the
    # range too: the brightest pixels beside a gap narrowed it (0.63 dB on a Landsat-7 band).
    data = np.arange(100, 100 + 32 * 32, dtype="uint16").reshape(1, 32, 32)
    data[0, 10, 10:13] = 9000
    data[0, 11, 10] = 0  # nodata in the 2 x 2 block of the first bright pixel
    path = make_raster("gap.tif", data=data, nodata=0)
    band = evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler).images[0].bands[0]
    assert band.psnr_range == pytest.approx(psnr_range(data[0], data[0] != 0))


def test_one_lr_paired_with_two_hr_files_gives_two_names() -> None:
    # Both rows read "lr.tif": which HR reference scored what could not be told.
    from geosr.evaluation import EvalReport, ImageResult
    from geosr.evaluation.metrics import BandMetrics
    from geosr.evaluation.report import image_names

    band = [BandMetrics(1, 30.0, 0.9, 29.0, 0.8, 1.0, 0.0, 100.0)]
    pairs = ["a/lr.tif vs h/aerial.tif", "a/lr.tif vs h/lidar.tif", "b/other.tif vs h/aerial.tif"]
    report = EvalReport("paired", 2, "m", 4, [ImageResult(p, band) for p in pairs])
    assert image_names(report) == ["lr.tif vs aerial.tif", "lr.tif vs lidar.tif", "other.tif"]


def test_names_in_brackets_are_printed_as_they_are(make_raster, tmp_path, capfd, monkeypatch) -> None:
    """The table's cells and the 'wrote' line are rich markup: ``hr [a].tif`` showed as ``hr .tif``
    and ``--json 'r [b].json'`` as ``wrote r .json``."""
    from geosr.cli import main

    make_raster("hr [a].tif", height=32, width=32)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "120")  # the image column wide enough for the name in one line
    args = ["evaluate", "hr [a].tif", "-s", "2", "--border", "2", "-m", "bicubic", "--json", "r [b].json"]
    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capfd.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    assert "hr [a].tif" in captured.out, captured.out
    assert "wrote r [b].json\n" in captured.err, captured.err


def test_a_long_report_path_is_one_line(make_raster, tmp_path, capfd, monkeypatch) -> None:
    """Piped or logged (80 columns), 'wrote PATH' was wrapped inside the path, which a script
    reading the line then took for two."""
    from geosr.cli import main

    src = make_raster(height=32, width=32)
    folder = tmp_path / ("a_folder_whose_name_is_long_enough_" * 2)
    folder.mkdir()
    out = folder / "metrics.json"
    args = ["evaluate", str(src), "-s", "2", "--border", "2", "-m", "bicubic", "--json", str(out)]
    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capfd.readouterr().err
    assert exit_info.value.code in (0, None), err
    assert f"wrote {out}\n" in err, err


def test_json_dash_prints_the_report_alone_on_stdout(make_raster, tmp_path, capfd, monkeypatch) -> None:
    """``--json -`` wrote a file named '-' in the working folder, and stdout held the table: a
    script piping the report into jq got no JSON."""
    from geosr.cli import main

    src = make_raster(height=32, width=32)
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", str(src), "-s", "2", "--border", "2", "-m", "bicubic", "--json", "-"]
    monkeypatch.setattr(sys, "argv", ["geosr", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capfd.readouterr()
    assert exit_info.value.code in (0, None), captured.err
    report = _strict_json(captured.out)
    assert report["mode"] == "wald" and report["summary"]["image_bands"] == 1
    assert "mean gain over bicubic" in captured.err  # the table, on stderr
    assert not (tmp_path / "-").exists()


def test_the_printed_report_has_no_trailing_spaces(make_raster) -> None:
    """Piped into a file or diff, the table's centred title ended in 15 spaces at 80 columns."""
    import io

    from rich.console import Console

    report = evaluate_wald(
        [make_raster(height=48, width=48)], scale=2, model="fake", border=2, upscaler=_fake_upscaler
    )
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=80))
    lines = screen.getvalue().splitlines()
    assert lines[0].strip().startswith("geosr evaluate (wald, x2") and "mean gain over bicubic" in lines[-1]
    assert [line for line in lines if line != line.rstrip()] == []


def test_a_short_image_name_is_whole_in_a_pipe(make_raster) -> None:
    """At 80 columns (a pipe, a log) rich narrowed the image column with the figures' to share
    the room: 'small.tif' came out as 'small.ti' over 'f', and the tests widened the terminal
    to 120 to see a name whole."""
    import io

    from rich.console import Console

    report = evaluate_wald(
        [make_raster("small.tif", height=48, width=48), make_raster("S2_20230101.tif", height=48, width=48)],
        scale=2,
        model="fake",
        border=2,
        upscaler=_fake_upscaler,
    )
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=80))
    rows = [line.split("│")[1].strip() for line in screen.getvalue().splitlines() if line.startswith("│")]
    assert [row for row in rows if row] == ["small.tif", "S2_20230101.tif", "mean"], screen.getvalue()
    assert all(len(line) <= 80 for line in screen.getvalue().splitlines())


def test_notes_and_the_summary_are_one_line_each_in_a_pipe(make_raster) -> None:
    """At 80 columns (a pipe, a log) a note and the summary were wrapped mid-sentence, a long
    image name over two lines: a line-by-line reader (grep 'note:') got half of each."""
    import io

    from rich.console import Console

    data = np.stack([np.random.default_rng(3).integers(0, 1000, (48, 48)), np.full((48, 48), 7)])
    path = make_raster("m_4709963_se_14_1_20090818_a_long_name.tif", data=data.astype("uint16"))
    report = evaluate_wald([path], scale=2, model="fake", border=2, upscaler=_fake_upscaler)
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=80))
    lines = screen.getvalue().splitlines()
    note = next(line for line in lines if line.startswith("note: "))
    assert note.startswith("note: m_4709963_se_14_1_20090818_a_long_name.tif band 2: ") and note.endswith(
        "means"
    )
    assert lines[-1].startswith("mean gain over bicubic") and lines[-1].endswith("see the notes above)")


def test_a_pair_whose_hr_covers_a_corner_of_the_lr_says_how_much_was_scored(make_raster, tmp_path) -> None:
    """An HR covering the top-left quarter of the LR was scored there alone, and the report
    read like one of the whole image: nothing said that four fifths of it were left out."""
    import io

    from affine import Affine
    from rich.console import Console

    from geosr.evaluation import evaluate_paired
    from tests.conftest import UTM_TRANSFORM, coordinate_pattern

    big = coordinate_pattern(1, 64, 64)
    lr = big.astype(np.float64).reshape(1, 32, 2, 32, 2).mean(axis=(2, 4)).round().astype("uint16")
    lr_path = make_raster("lr.tif", data=lr)
    hr_path = make_raster("hr.tif", data=big[:, :32, :32].copy(), transform=UTM_TRANSFORM @ Affine.scale(0.5))
    report = evaluate_paired([(lr_path, hr_path)], scale=2, model="fake", border=4, upscaler=_fake_upscaler)
    band = report.images[0].bands[0]
    assert band.scored_fraction == pytest.approx(28 * 28 / 64**2)  # the HR's 32 x 32, less the border
    assert _strict_json(json.dumps(report.to_dict()))["images"][0]["bands"][0]["scored_fraction"] == (
        pytest.approx(band.scored_fraction)
    )
    screen = io.StringIO()
    print_report(report, Console(file=screen, width=80))
    assert "note: lr.tif band 1: only 19.1% of its HR pixels were scored" in screen.getvalue()
    # The JSON says it too: its note was empty.
    note = _strict_json(json.dumps(report.to_dict()))["images"][0]["bands"][0]["note"]
    assert note.startswith("only 19.1% of its HR pixels were scored") and note in screen.getvalue()


def test_an_image_mostly_border_or_nodata_says_how_much_was_scored(make_raster) -> None:
    # Wald mode: a 12 px border of a 48 px image and a nodata patch leave 22 % of it scored.
    data = np.arange(48 * 48, dtype="uint16").reshape(1, 48, 48) + 100
    data[0, 16:24, 16:24] = 0
    path = make_raster("patch.tif", data=data, nodata=0)
    band = evaluate_wald([path], scale=2, model="fake", border=12, upscaler=_fake_upscaler).images[0].bands[0]
    assert band.scored_fraction == pytest.approx((24 * 24 - 8 * 8) / 48**2)


def test_the_plot_tells_apart_images_of_one_long_name_in_other_folders(tmp_path, monkeypatch) -> None:
    """The plot labelled each bar with the last 24 characters of its image's name: the bars of
    ``.../T33UUU_0001_l2a/B04_10m_reflectance.tif`` and ``..._0002_l2a/...`` read alike."""
    from matplotlib.axes import Axes

    from geosr.evaluation import EvalReport, ImageResult
    from geosr.evaluation.metrics import BandMetrics
    from geosr.evaluation.report import write_plot

    ticks: list[str] = []
    set_xticks = Axes.set_xticks
    monkeypatch.setattr(
        Axes,
        "set_xticks",
        lambda ax, at, labels, **kw: ticks.extend(labels) or set_xticks(ax, at, labels, **kw),
    )
    band = [BandMetrics(1, 30.0, 0.9, 29.0, 0.8, 1.0, 0.0, 100.0)]
    paths = [f"/d/S2B_MSIL2A_20200101_T33UUU_{k:04d}_l2a/B04_10m_reflectance.tif" for k in (1, 2, 13)]
    report = EvalReport("wald", 4, "m", 16, [ImageResult(p, band) for p in paths])
    write_plot(report, tmp_path / "gain.png")
    assert len(set(ticks)) == 3, ticks
    assert all(t.startswith(f"…{k:04d}_l2a/B04") for t, k in zip(ticks, (1, 2, 13), strict=True)), ticks


def test_a_band_with_valid_pixels_but_none_to_compare_is_not_scored_and_said_why(make_raster) -> None:
    """Valid HR pixels only within the border failed the whole evaluation, other images too
    ("no valid pixel to compare outside the border", naming no band); valid pixels only in
    blocks holding a nodata pixel (whose Wald LR is nodata) read "the reference band has no
    valid pixel" of a band 15/16 valid."""
    edge = np.arange(48 * 48, dtype="uint16").reshape(1, 48, 48) + 100
    edge[0, 4:, :] = 0  # valid in the top 4 rows alone, all in the 8 px border
    speckled = np.stack([np.arange(48 * 48, dtype="uint16").reshape(48, 48) + 100 + 50 * b for b in range(2)])
    speckled[1, ::2, ::2] = 0  # a nodata pixel in every 2 x 2 block of band 2
    paths = [
        make_raster("edge.tif", data=edge, nodata=0),
        make_raster("speckled.tif", data=speckled, nodata=0),
    ]
    report = evaluate_wald(paths, scale=2, model="fake", border=8, upscaler=_fake_upscaler)
    (edge_band,), (first, second) = (im.bands for im in report.images)
    assert first.scored and not edge_band.scored and not second.scored
    for band in (edge_band, second):
        assert band.note.startswith("none of the band's valid HR pixels could be compared"), band.note
    assert report.summary()["excluded_image_bands"] == 2


def test_a_pair_in_a_folder_named_with_vs_is_named_whole(make_raster, tmp_path) -> None:
    # The pair's name was split at the first " vs " of "LR vs HR": its row read "run".
    from affine import Affine

    from geosr.evaluation import evaluate_paired
    from geosr.evaluation.report import image_names
    from tests.conftest import UTM_TRANSFORM, coordinate_pattern

    hr = coordinate_pattern(1, 64, 64)
    lr = hr.astype(np.float64).reshape(1, 32, 2, 32, 2).mean(axis=(2, 4)).round().astype("uint16")
    hr_path = make_raster("hr.tif", data=hr, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    for folder in ("run vs ref", "other"):
        (tmp_path / folder).mkdir()
    pairs = [(make_raster(f"{folder}/lr.tif", data=lr), hr_path) for folder in ("run vs ref", "other")]
    report = evaluate_paired(pairs, scale=2, model="fake", border=4, upscaler=_fake_upscaler)
    assert image_names(report) == ["run vs ref/lr.tif", "other/lr.tif"]


def test_an_undeclared_zero_fill_of_a_pair_is_warned_about_with_a_remedy_pairs_take(make_raster) -> None:
    """The LR's 0 fill was warned about by the run with "pass --nodata 0", which evaluate refuses
    with pairs; the HR's (an orthophoto's black surround) was scored as data without a word."""
    import warnings

    from affine import Affine

    from geosr.evaluation import evaluate_paired
    from tests.conftest import UTM_TRANSFORM, coordinate_pattern

    hr = coordinate_pattern(1, 64, 64)
    lr = hr.astype(np.float64).reshape(1, 32, 2, 32, 2).mean(axis=(2, 4)).round().astype("uint16")
    lr[:, :4] = 0
    hr[:, -8:] = 0
    lr_path = make_raster("lr.tif", data=lr)
    hr_path = make_raster("hr.tif", data=hr, transform=UTM_TRANSFORM @ Affine.scale(0.5))

    def upscaler_that_warns(src: Path, dst: Path, **kwargs: object) -> Path:
        # As the run does about its input: the real one, with the remedy of geosr run.
        from geosr.io.scene import open_scene
        from geosr.run_inputs import reference_sample, warn_undeclared_zeros

        scene = open_scene(src)
        warn_undeclared_zeros(scene, reference_sample(scene))
        return _fake_upscaler(src, dst, **kwargs)  # type: ignore[arg-type]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        evaluate_paired([(lr_path, hr_path)], scale=2, model="fake", border=4, upscaler=upscaler_that_warns)
    texts = [str(w.message) for w in caught if "declares no nodata" in str(w.message)]
    assert len(texts) == 2, texts
    assert texts[0].startswith(f"{lr_path}: 12.5 % of its pixels") and "super-resolved as data" in texts[0]
    assert texts[1].startswith(f"{hr_path}: 12.5 % of its pixels") and "scored as data" in texts[1]
    assert all("gdal_edit.py -a_nodata 0 FILE" in t and "--nodata" not in t for t in texts), texts


def test_the_wald_lr_is_normalised_as_its_hr_by_a_dtype_range_model(make_raster, tmp_path) -> None:
    """The Wald LR holds exact means (float32) of uint16 DN: a dtype-range model divided them by a
    float32's 1, not by 10000, and lost the HR's BOA_ADD_OFFSET, so its scores were of inputs
    10000 times too bright, which no geosr run on the sensor's own image would see."""
    from geosr.io.bands import reflectance_offset
    from geosr.options import RunOptions
    from geosr.run_inputs import normalisation_for, scene_for

    hr = np.random.default_rng(3).integers(1000, 4000, (2, 32, 32)).astype("uint16")
    path = make_raster("hr.tif", data=hr, descriptions=("B04", "B08"), tags={"BOA_ADD_OFFSET_B4": "-1000"})
    evaluate_wald([path], scale=2, model="fake", border=4, upscaler=_fake_upscaler, workdir=tmp_path / "w")
    lr = scene_for(tmp_path / "w" / "000_hr_lr.tif", RunOptions())
    assert lr.dtype == "float32"
    norm = normalisation_for(lr, {"method": "dtype-range"}, reflectance_offset(lr))
    # reflectance = (DN + BOA_ADD_OFFSET) / 10000, as for the HR itself.
    x = norm.apply(np.full((2, 1, 1), 3000.0, np.float32))
    assert x[0, 0, 0] == pytest.approx(0.2) and x[1, 0, 0] == pytest.approx(0.3)


def test_a_workdir_geotiff_never_replaces_an_input(make_raster, tmp_path) -> None:
    """`geosr evaluate 'work/*.tif' --workdir work --overwrite` took an earlier evaluation's
    GeoTIFFs as inputs, and the first image's SR (000_field_sr.tif) replaced the next input
    before it was read: that input was lost and its scores were of the SR."""
    import re

    from affine import Affine

    from geosr.evaluation.wald import evaluate_paired
    from tests.conftest import UTM_TRANSFORM

    hr = make_raster("field.tif", height=32, width=32)
    # An HR of the pair (field.tif, it) as well, at half field.tif's pixel.
    half = UTM_TRANSFORM @ Affine.scale(0.5)
    taken = make_raster("000_field_sr.tif", height=64, width=64, transform=half)
    before = taken.read_bytes()
    replaced = re.escape(f"its 000_field_sr.tif would replace the input {taken} before it is read")
    with pytest.raises(OutputError, match=replaced):
        evaluate_wald([hr, taken], scale=2, border=2, model="bicubic", workdir=tmp_path, overwrite=True)
    with pytest.raises(OutputError, match=replaced):
        evaluate_paired([(hr, taken)], scale=2, border=2, model="bicubic", workdir=tmp_path, overwrite=True)
    assert taken.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["000_field_sr.tif", "field.tif"]


@pytest.mark.parametrize("paired", [False, True])
def test_a_filter_another_thread_sets_while_an_evaluation_runs_stays(make_raster, paired: bool) -> None:
    """Each run of evaluate_wald (evaluate_paired) was wrapped in ``warnings.catch_warnings``,
    which put back, as the run ended, the process's filters as they were when it began: a
    filter the host program's other thread set meanwhile was gone."""
    import threading
    import warnings

    from affine import Affine

    from geosr.evaluation import evaluate_paired
    from tests.conftest import UTM_TRANSFORM, coordinate_pattern

    hr = coordinate_pattern(1, 64, 64)
    lr = hr.astype(np.float64).reshape(1, 32, 2, 32, 2).mean(axis=(2, 4)).round().astype("uint16")
    hr_path = make_raster("hr.tif", data=hr, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    lr_path = make_raster("lr.tif", data=lr)

    def upscaler(src: Path, dst: Path, **kwargs: object) -> Path:
        other = threading.Thread(target=warnings.filterwarnings, args=("ignore", "the host's own filter"))
        other.start()
        other.join()
        return _fake_upscaler(src, dst, **kwargs)  # type: ignore[arg-type]

    with warnings.catch_warnings():  # this test's filters back as it ends
        if paired:
            evaluate_paired([(lr_path, hr_path)], scale=2, model="fake", border=4, upscaler=upscaler)
        else:
            evaluate_wald([hr_path], scale=2, model="fake", border=4, upscaler=upscaler)
        kept = [f for f in warnings.filters if f[1] is not None and f[1].pattern == "the host's own filter"]
        assert len(kept) == 1


def test_a_librarys_deprecation_warning_in_an_evaluation_keeps_where_it_came_from(
    make_raster, tmp_path, monkeypatch
) -> None:
    """The runs' warnings were issued again with their text and category alone, at the caller's
    line: a library's DeprecationWarning seemed the caller's own (``tests``), which pytest's
    filter here made an error, and a filter by the library's module no longer applied."""
    import importlib.util
    import warnings

    from affine import Affine

    from tests.conftest import UTM_TRANSFORM, coordinate_pattern

    library = tmp_path / "oldlib.py"
    library.write_text(
        "import warnings\n\ndef old():\n    warnings.warn('old() is deprecated', DeprecationWarning)\n"
    )
    spec = importlib.util.spec_from_file_location("oldlib", library)
    assert spec is not None and spec.loader is not None
    oldlib = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "oldlib", oldlib)
    spec.loader.exec_module(oldlib)
    hr = coordinate_pattern(1, 64, 64)
    hr_path = make_raster("hr.tif", data=hr, transform=UTM_TRANSFORM @ Affine.scale(0.5))

    def upscaler(src: Path, dst: Path, **kwargs: object) -> Path:
        oldlib.old()
        return _fake_upscaler(src, dst, **kwargs)  # type: ignore[arg-type]

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("ignore", DeprecationWarning)  # but the library's own:
        warnings.filterwarnings("default", category=DeprecationWarning, module="oldlib")
        warnings.filterwarnings("error", category=DeprecationWarning, module="tests")  # pytest's, here too
        evaluate_wald([hr_path], scale=2, model="fake", border=4, upscaler=upscaler)
    assert [(str(w.message), w.filename, w.lineno) for w in caught if w.category is DeprecationWarning] == [
        ("old() is deprecated", str(library), 4)
    ]


@pytest.mark.parametrize("border", [-1, "4", 2.5])
def test_a_border_that_is_no_count_of_pixels_is_refused(make_raster, border: object) -> None:
    """border=-1 from Python was taken: the last row and column alone were scored, 1 pixel
    of 4096 reported as the image (15.9 dB for 11.8); border="4" was a TypeError traceback."""
    from geosr.evaluation import evaluate_paired

    hr = make_raster("hr.tif", height=64, width=64)
    says = rf"^border={re.escape(repr(border))} is not supported: give the HR pixels"
    with pytest.raises(OptionError, match=says):
        evaluate_wald([hr], scale=2, model="fake", border=border, upscaler=_fake_upscaler)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=says):
        evaluate_paired([(hr, hr)], scale=2, model="fake", border=border, upscaler=_fake_upscaler)  # type: ignore[arg-type]
    with pytest.raises(OptionError, match=says):
        psnr(np.zeros((16, 16)), np.zeros((16, 16)), data_range=1.0, border=border)  # type: ignore[arg-type]


def test_one_hr_path_is_one_raster_and_a_pair_alone_is_refused(make_raster) -> None:
    """evaluate_wald("hr.tif") evaluated its name letter by letter ("h: no such file or
    directory"), and evaluate_paired(("lr.tif", "hr.tif")) or a list of paths was a bare
    ValueError 'too many values to unpack'."""
    from geosr.evaluation import evaluate_paired

    hr = make_raster("hr.tif", height=32, width=32)
    for given in (hr, str(hr)):
        report = evaluate_wald(given, scale=2, model="fake", border=2, upscaler=_fake_upscaler)  # type: ignore[arg-type]
        assert [image.path for image in report.images] == [str(hr)]
    for pairs in ((str(hr), str(hr)), [hr], hr, [(hr,)]):
        with pytest.raises(
            InputError, match=r"^evaluate_paired takes a list of \(lr, hr\) pairs of paths, not "
        ):
            evaluate_paired(pairs, scale=2, model="fake", border=2, upscaler=_fake_upscaler)  # type: ignore[arg-type]


def test_an_unknown_option_is_named_for_the_evaluation_before_any_raster_is_read(tmp_path) -> None:
    """evaluate_wald(..., tilesize=64) read the first HR raster and wrote its LR, then failed in
    its run as "upscale_file() got unknown option(s) 'tilesize'", a function the caller never
    called; the line now names the evaluation, before any raster (here none exists) is read."""
    from geosr.evaluation import evaluate_paired

    missing = tmp_path / "hr.tif"
    with pytest.raises(
        OptionError, match=r"^evaluate_wald\(\) got unknown option 'tilesize' \(did you mean 'tile'\?\)"
    ):
        evaluate_wald([missing], scale=2, model="bicubic", border=2, tilesize=64)
    with pytest.raises(OptionError, match=r"^evaluate_paired\(\) got unknown option 'tilesize'"):
        evaluate_paired([(missing, missing)], scale=2, model="bicubic", border=2, tilesize=64)


@pytest.mark.parametrize("workdir", ["", " "])
def test_an_empty_workdir_is_refused_not_taken_for_none(make_raster, workdir: str) -> None:
    """workdir="" (an unset variable's value) was taken for no workdir: the GeoTIFFs the caller
    asked to keep went to a temporary folder and were removed without a word."""
    from geosr.evaluation import evaluate_paired

    hr = make_raster("hr.tif", height=32, width=32)
    said = rf"^workdir={re.escape(repr(workdir))} is empty; give a folder, or leave it out"
    with pytest.raises(OptionError, match=said):
        evaluate_wald([hr], scale=2, model="fake", border=2, upscaler=_fake_upscaler, workdir=workdir)
    with pytest.raises(OptionError, match=said):
        evaluate_paired([(hr, hr)], scale=2, model="fake", border=2, upscaler=_fake_upscaler, workdir=workdir)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="lists open files by /proc/self/fd (Linux)")
def test_an_evaluation_leaves_no_file_it_scored_open(make_raster, tmp_path) -> None:
    """The SR and bicubic outputs it scores were left open in the calling thread's cache: in its
    temporary folder, deleted, their disk space stayed taken; in a workdir, a notebook kept them."""
    from affine import Affine

    from geosr.evaluation import evaluate_paired
    from tests.conftest import UTM_TRANSFORM, coordinate_pattern, open_in_this_process

    hr = coordinate_pattern(1, 64, 64)
    hr_path = make_raster("hr.tif", data=hr, transform=UTM_TRANSFORM @ Affine.scale(0.5))
    lr = make_raster("lr.tif", data=hr.reshape(1, 32, 2, 32, 2).mean(axis=(2, 4)).astype("uint16"))
    for evaluate in (
        lambda: evaluate_wald([hr_path], scale=2, model="bicubic", border=4, workdir=tmp_path / "w"),
        lambda: evaluate_paired([(lr, hr_path)], scale=2, model="bicubic", border=4, workdir=tmp_path / "p"),
    ):
        evaluate()
        files = [*tmp_path.iterdir(), *(tmp_path / "w").iterdir()]
        files += [*(tmp_path / "p").iterdir()] if (tmp_path / "p").is_dir() else []
        assert [f.name for f in files if open_in_this_process(f)] == []


def test_a_library_warning_the_callers_filters_hide_stays_hidden(make_raster) -> None:
    """A run's warnings were all recorded (an "always" filter) and issued again at the caller's
    line: a library's DeprecationWarning, which Python shows only in the caller's own module
    (``__main__``, a notebook), then showed there, and a warning the caller ignored by its
    module (``module="rasterio"``) came out as one of the caller's.  Those the filters in force
    show still come out, geosr's own with the user's raster named."""
    import warnings

    from geosr.errors import GeosrWarning

    path = make_raster("field.tif", height=32, width=32)

    def upscaler(src: Path, dst: Path, **kwargs: object) -> Path:
        for category in (DeprecationWarning, UserWarning):
            # As a library under the run issues them, from its own module.
            warnings.warn_explicit(f"a {category.__name__}", category, "somelib.py", 1, module="somelib")
        warnings.warn_explicit("shown", RuntimeWarning, "otherlib.py", 1, module="otherlib")
        warnings.warn(f"{src} is odd", GeosrWarning, stacklevel=1)
        return _fake_upscaler(src, dst, **kwargs)  # type: ignore[arg-type]

    with warnings.catch_warnings(record=True) as seen:
        warnings.resetwarnings()  # Python's defaults, with this module as __main__, and the caller's own
        warnings.filterwarnings("ignore", category=PendingDeprecationWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("default", category=DeprecationWarning, module=__name__)
        warnings.filterwarnings("ignore", module="somelib")
        evaluate_wald([path], scale=2, model="fake", border=2, upscaler=upscaler)
    said = sorted(f"{w.category.__name__}: {w.message}" for w in seen)
    assert said == [f"GeosrWarning: {path} (its Wald LR) is odd", "RuntimeWarning: shown"], said


def test_the_runs_warnings_issued_again_point_at_the_callers_line(make_raster) -> None:
    """They pointed at contextlib.py (the end of the ``with`` block that records them), where a
    notebook shows the line and a filter by the caller's module applies to none of them."""
    import warnings

    from geosr.errors import GeosrWarning

    path = make_raster("field.tif", height=32, width=32)

    def upscaler(src: Path, dst: Path, **kwargs: object) -> Path:
        warnings.warn(f"{src} is odd", GeosrWarning, stacklevel=1)
        return _fake_upscaler(src, dst, **kwargs)  # type: ignore[arg-type]

    with pytest.warns(GeosrWarning, match=r"\(its Wald LR\) is odd") as seen:
        evaluate_wald([path], scale=2, model="fake", border=2, upscaler=upscaler)
    assert [w.filename for w in seen if w.category is GeosrWarning] == [__file__]


def test_the_evaluation_api_expands_a_home_folder_in_every_path(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """evaluate_paired([("~/lr.tif", "~/hr.tif")]) was "~/lr.tif: not a readable raster (No such
    file or directory)", evaluate_wald's workdir="~/wd" a folder '~' made in the working folder
    (then 'no such file' for its LR), and write_json(report, "~/r.json") wrote into such a folder."""
    from geosr.evaluation import evaluate_paired
    from geosr.evaluation.report import write_plot
    from tests.conftest import UTM_TRANSFORM

    make_raster("hr.tif", height=64, width=64)
    make_raster("lr.tif", height=32, width=32, transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(2))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path / "elsewhere")  # not the home folder: '~' is no relative path
    wald = evaluate_wald(["~/hr.tif"], scale=2, model="bicubic", border=2, workdir="~/wd")
    assert (tmp_path / "wd" / "000_hr_sr.tif").is_file()
    paired = evaluate_paired([("~/lr.tif", "~/hr.tif")], scale=2, model="bicubic", border=2)
    assert paired.images[0].pair == (str(tmp_path / "lr.tif"), str(tmp_path / "hr.tif"))
    assert write_json(wald, "~/r.json") == tmp_path / "r.json"
    assert write_plot(wald, Path("~/gain.png")) == tmp_path / "gain.png"
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize(
    ("model", "image"),
    [
        ("m$\\frac$", "/d/a.tif"),
        ("m", "/d/a$\\frac$.tif"),
        ("cost$_x2$", "/d/a.tif"),
        ("m", "/d/cost$_x2$.tif"),
    ],
)
def test_a_dollar_in_a_model_or_image_name_is_drawn_as_written_in_the_plot(
    tmp_path, monkeypatch, model, image
) -> None:
    """A '$' in the model's name (the plot's title) or an image's (its bar's label) began TeX
    (matplotlib's mathtext): 'm$\\frac$' ended --plot in a ParseSyntaxException traceback, no PNG,
    and 'cost$_x2$' was drawn as cost with a subscript x2."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    from geosr.evaluation import EvalReport, ImageResult
    from geosr.evaluation.metrics import BandMetrics
    from geosr.evaluation.report import write_plot

    saved: list[Figure] = []
    savefig = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: saved.append(fig) or savefig(fig, *a, **kw))
    band = [BandMetrics(1, 30.0, 0.9, 29.0, 0.8, 1.0, 0.0, 100.0)]
    report = EvalReport("wald", 4, model, 16, [ImageResult(image, band)])
    assert write_plot(report, tmp_path / "gain.png").stat().st_size > 0
    # The name is a text of the figure as written, and drawn as it is written: not as mathtext.
    name = model if "$" in model else Path(image).stem  # a bar is labelled by the stem and band
    (figure,) = saved
    named = [text for text in figure.findobj(Text) if name in text.get_text()]
    assert named and [text.get_parse_math() for text in named] == [False] * len(named), name


def test_a_plot_of_a_utf8_name_is_drawn_in_an_ascii_locale(make_raster, tmp_path: Path, monkeypatch) -> None:
    """In a C locale, which holds 'scène.tif' with surrogates, evaluate --plot was a TypeError
    traceback from matplotlib's font ('set_text(): incompatible function arguments'); the
    plot is drawn, the image named by its characters (escaped on that terminal: under the table,
    where its 80 columns leave the name no room in it)."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=64, width=64)
    monkeypatch.chdir(tmp_path)
    done = in_an_ascii_locale(
        "evaluate", "scène.tif", "-s", "2", "-m", "bicubic", "--border", "4", "--plot", "p.png"
    )
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "p.png").stat().st_size > 0
    assert "| sc\\xe8ne.tif |" in done.stdout and "\\udc" not in done.stdout, done.stdout


def test_the_json_of_a_utf8_name_in_an_ascii_locale_is_its_characters(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale evaluate --json gave 'scène.tif' as the surrogates Python holds it with,
    "sc\\udcc3\\udca8ne.tif" (no UTF-8 text, refused by strict parsers); now "sc\\u00e8ne.tif"."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scène.tif", height=64, width=64)
    monkeypatch.chdir(tmp_path)
    done = in_an_ascii_locale(
        "evaluate", "scène.tif", "-s", "2", "-m", "bicubic", "--border", "4", "--json", "-"
    )
    assert done.returncode == 0, done.stderr
    assert "\\udc" not in done.stdout and json.loads(done.stdout)["images"][0]["path"] == "scène.tif"


def test_the_files_evaluate_wrote_are_named_by_their_characters_in_an_ascii_locale(
    make_raster, tmp_path: Path, monkeypatch
) -> None:
    """In a C locale evaluate's last line named 'dossé/rés.json' by the surrogates Python holds it
    with, 'wrote doss\\udcc3\\udca9/r\\udcc3\\udca9s.json'; now as an error line does."""
    from tests.conftest import in_an_ascii_locale

    make_raster("scene.tif", height=64, width=64)
    (tmp_path / "dossé").mkdir()
    monkeypatch.chdir(tmp_path)
    args = ["evaluate", "scene.tif", "-s", "2", "-m", "bicubic", "--border", "4", "--json", "dossé/rés.json"]
    done = in_an_ascii_locale(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[-1] == "wrote doss\\xe9/r\\xe9s.json", done.stderr
