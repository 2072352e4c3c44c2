"""The Python API's lines name its keywords (``overwrite=True``), the command's its flags."""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import rioxarray
import xarray as xr
from typer.testing import CliRunner

import geosr
from geosr.errors import GeosrError, GeosrWarning, OutputError
from tests.conftest import UTM_TRANSFORM


def _refusal(call: Callable[[], object]) -> str:
    with pytest.raises(GeosrError) as said:
        call()
    return str(said.value)


def test_upscale_file_says_overwrite_true_and_the_command_says_overwrite(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A Python caller was told "pass --overwrite to replace it", a flag it cannot pass."""
    src = make_raster(height=16, width=16)
    dst = make_raster("taken.tif", height=16, width=16)
    line = _refusal(lambda: geosr.upscale_file(src, dst, scale=2, model="bicubic"))
    assert line == f"{dst} already exists; pass overwrite=True to replace it"
    from geosr.cli import app

    ran = CliRunner().invoke(app, ["run", str(src), "-o", str(dst), "--scale", "2", "--model", "bicubic"])
    assert isinstance(ran.exception, OutputError)
    assert str(ran.exception) == f"{dst} already exists; pass --overwrite to replace it"


def test_upscale_names_its_keyword(make_raster: Callable[..., Path]) -> None:

    data = rioxarray.open_rasterio(make_raster(height=16, width=16))
    line = _refusal(lambda: geosr.upscale(data, scale=2, model="bicubic", tile=3))
    assert line.startswith("tile=3 is too small") and "--" not in line


def test_load_model_names_its_keywords() -> None:
    line = _refusal(lambda: geosr.load_model("cnnrnn-fast_x4", bands=1, scale=4))
    assert line.endswith("for cnnrnn-fast_x4 give name_or_path='cnnrnn-fast' scale=4")
    assert _refusal(lambda: geosr.load_model(None, bands=1, scale=4, device="gpu")).startswith(
        "device='gpu' is not known"
    )


@pytest.mark.parametrize("paired", [False, True])
def test_evaluate_says_overwrite_true(make_raster: Callable[..., Path], tmp_path: Path, paired: bool) -> None:
    from geosr.evaluation import evaluate_paired, evaluate_wald

    hr = make_raster("hr.tif", height=64, width=64)
    work = tmp_path / "work"
    work.mkdir()
    if paired:
        # The same place at twice the pixel: a pair.
        lr = make_raster("lr.tif", height=32, width=32, transform=UTM_TRANSFORM @ UTM_TRANSFORM.scale(2))
        (work / "000_lr_sr.tif").write_bytes(b"an earlier evaluation's")
        call = lambda: evaluate_paired([(lr, hr)], scale=2, model="bicubic", border=2, workdir=work)  # noqa: E731
    else:
        (work / "000_hr_lr.tif").write_bytes(b"an earlier evaluation's")
        call = lambda: evaluate_wald([hr], scale=2, model="bicubic", border=2, workdir=work)  # noqa: E731
    line = _refusal(call)
    assert "pass overwrite=True to replace it or choose another workdir" in line
    assert "--" not in line


def test_train_names_the_config_field(tmp_path: Path) -> None:
    """train(config) was told "use a matching --scale": a Python caller sets ``config.scale``."""
    from geosr.train import load_config, train

    weights = Path(geosr.__file__).parent / "weights" / "cnnrnn-fast_x4.safetensors"
    config = load_config(
        None, {"scale": 2, "steps": 1, "output": str(tmp_path / "run"), "init": str(weights)}
    )
    line = _refusal(lambda: train(config))
    assert line.endswith("are x4, the run is x2: use a matching config.scale")


def test_only_known_flags_become_keywords() -> None:
    from geosr.errors import in_python_words

    keywords = {"--overwrite": "overwrite=True", "--nodata": "nodata", "--workdir": "workdir"}
    assert in_python_words("pass --overwrite, or --nodata 0, --nodata -1.5 or --nodata", keywords) == (
        "pass overwrite=True, or nodata=0, nodata=-1.5 or nodata"
    )
    assert in_python_words("--workdir 'w' is a file; --lr and --hr", keywords) == (
        "workdir='w' is a file; --lr and --hr"
    )
    assert in_python_words("--nodata None, --overwrite 2 times", keywords) == (
        "nodata=None, overwrite=True 2 times"
    )


def test_train_given_a_dict_says_how_to_build_its_config(tmp_path: Path) -> None:
    """train({"scale": 2, ...}) was AttributeError "'dict' object has no attribute 'device'"."""
    from geosr.errors import OptionError
    from geosr.train import train

    with pytest.raises(
        OptionError, match=r"^train takes a TrainConfig, not a dict: build it with geosr\.train\.load_config"
    ):
        train({"scale": 2, "output": str(tmp_path / "run")})  # type: ignore[arg-type]
    assert not (tmp_path / "run").exists()


def test_upscale_file_names_dst_where_the_command_names_its_short_flag(
    make_raster: Callable[..., Path],
) -> None:
    """dst="" was told "--output is empty; ... or leave -o out", two flags of geosr run."""
    from geosr.errors import in_python_words

    src = make_raster(height=16, width=16)
    line = _refusal(lambda: geosr.upscale_file(src, "", scale=2, model="bicubic"))
    assert line.startswith("dst is empty; give a .tif") and "leave dst out" in line
    assert in_python_words("mkdir -p out, or -o out/ -s 2", {"-o": "dst", "-s": "scale"}) == (
        "mkdir -p out, or dst out/ scale=2"
    )


def _zero_edged(make_raster: Callable[..., Path]) -> Path:
    """A uint16 raster whose left columns are 0 with no nodata declared (a swath edge)."""
    data = np.arange(1, 32 * 32 + 1, dtype="uint16").reshape(1, 32, 32)
    data[:, :, :12] = 0
    return make_raster("edge.tif", data=data)


def test_upscale_file_warns_in_keywords_and_the_command_in_flags(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """A Python caller was warned "pass --nodata 0 if they are not", a flag it cannot pass."""
    src = _zero_edged(make_raster)
    with pytest.warns(GeosrWarning, match="declares no nodata") as said:
        geosr.upscale_file(src, tmp_path / "api.tif", scale=2, model="bicubic")
    (line,) = [str(w.message) for w in said if "declares no nodata" in str(w.message)]
    assert "pass nodata=0 if they are not" in line and "--" not in line
    from geosr.cli import app

    with pytest.warns(GeosrWarning, match="pass --nodata 0 if they are not"):
        CliRunner().invoke(
            app, ["run", str(src), "-o", str(tmp_path / "cli.tif"), "-s", "2", "-m", "bicubic"]
        )


def test_the_wording_stays_with_the_call_and_its_thread(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The keywords are the API call's own: after it, and in another thread during it, geosr's
    lines name the flags again (no process-wide state is left to the host)."""
    from geosr.errors import worded

    seen_elsewhere: list[str] = []

    def progress(done: int, total: int) -> None:
        other = threading.Thread(target=lambda: seen_elsewhere.append(worded("pass --nodata 0")))
        other.start()
        other.join()

    with pytest.warns(GeosrWarning, match="pass nodata=0"):
        geosr.upscale_file(
            _zero_edged(make_raster), tmp_path / "o.tif", scale=2, model="bicubic", progress=progress
        )
    assert seen_elsewhere and set(seen_elsewhere) == {"pass --nodata 0"}
    assert worded("pass --nodata 0") == "pass --nodata 0"


def test_evaluate_warns_in_keywords(make_raster: Callable[..., Path]) -> None:
    from geosr.evaluation import evaluate_wald

    with pytest.warns(GeosrWarning, match=r"edge\.tif: .* declares no nodata.*pass nodata=0 if"):
        evaluate_wald([_zero_edged(make_raster)], scale=2, model="bicubic", border=2)


def test_a_model_error_inside_upscale_file_names_upscale_files_keyword(
    make_raster: Callable[..., Path],
) -> None:
    """load_model's keyword (name_or_path) was named to a caller of upscale_file, which says model."""
    src = make_raster(height=16, width=16)
    line = _refusal(lambda: geosr.upscale_file(src, scale=4, model="cnnrnn-fast_x4"))
    assert "name_or_path" not in line and line.endswith("give model='cnnrnn-fast' scale=4"), line


def test_a_flags_text_value_becomes_the_keywords_text() -> None:
    """The flag of "--precision bf16" became a keyword and its value stayed a bare word: not Python."""
    from geosr.errors import in_python_words

    keywords = {"--precision": "precision", "--bands": "bands", "--tile": "tile", "--scale": "scale"}
    assert in_python_words("--precision bf16: slow; use --precision auto (fp32)", keywords) == (
        "precision='bf16': slow; use precision='auto' (fp32)"
    )
    assert in_python_words("e.g. --bands 2,1) or --bands B04,B03; --bands 3.", keywords) == (
        "e.g. bands='2,1') or bands='B04,B03'; bands=3."
    )
    # A number is as given (bands=3, an int, is refused for not being text); words that are no
    # value of the flag are the sentence's; numbers end a sentence.
    assert in_python_words("--bands stacks them; --tile sets the tile, --scale 4.", keywords) == (
        "bands stacks them; tile sets the tile, scale=4."
    )


def test_upscale_file_names_a_text_option_as_text(make_raster: Callable[..., Path]) -> None:
    src = make_raster(height=16, width=16)
    line = _refusal(lambda: geosr.upscale_file(src, scale=2, model="bicubic", device="cpu", precision="fp16"))
    assert "scene.tif: precision='fp16' is only for CUDA GPUs" in line, line


def _three_bands() -> xr.DataArray:
    y, x = np.arange(40)[::-1] * 10.0 + 5, np.arange(40) * 10.0 + 5
    data = np.random.default_rng(0).random((3, 40, 40), dtype=np.float32)
    array = xr.DataArray(data, dims=("band", "y", "x"), coords={"band": [1, 2, 3], "y": y, "x": x})
    return array.rio.write_crs("EPSG:32633")


def _four_band_weights(stem: Path) -> Path:
    from geosr.models import save_weights
    from tests.test_models_registry import card, random_model

    model = random_model(2, in_channels=4)
    return save_weights(model, card(model), stem)[0]


def test_upscale_says_how_a_dataarray_selects_bands(tmp_path: Path) -> None:
    """upscale was told "select 4 bands (e.g. --bands)", and takes no bands=: .sel() selects them."""
    weights = _four_band_weights(tmp_path / "m4_x2")
    line = _refusal(lambda: geosr.upscale(_three_bands(), scale=2, model=str(weights)))
    assert "select 4 bands (e.g. data.sel(band=[...]))" in line and "--" not in line, line


def test_a_lazy_results_errors_at_compute_name_upscales_keywords(tmp_path: Path) -> None:
    """A task runs after upscale has returned: its error (the weights written again since, for 4
    bands) named "upscale_file(bands=...)", load_model's words, to a caller of upscale."""
    from geosr.models import save_weights
    from tests.test_models_registry import card, random_model

    model = random_model(2)
    weights = save_weights(model, card(model), tmp_path / "mine_x2")[0]
    out = geosr.upscale(_three_bands(), scale=2, model=str(weights))
    stat = weights.stat()
    _four_band_weights(tmp_path / "mine_x2")  # retrained in the notebook meanwhile
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a later time, on any clock
    line = _refusal(out.compute)
    assert "select 4 bands (e.g. data.sel(band=[...]))" in line and "upscale_file" not in line, line


def test_upscale_file_names_a_crs_a_box_and_a_variable_as_text(make_raster: Callable[..., Path]) -> None:
    """ "bbox_crs EPSG:3857 is the CRS of bbox ...; add bbox minx,miny,maxx,maxy" and "variable v is
    for Zarr stores": the flags became keywords, their values stayed bare words."""
    src = make_raster(height=16, width=16)
    line = _refusal(lambda: geosr.upscale_file(src, scale=2, model="bicubic", bbox_crs="EPSG:3857"))
    assert "bbox_crs='EPSG:3857' is the CRS of bbox" in line, line
    assert "add bbox='minx,miny,maxx,maxy', or leave bbox_crs out" in line, line
    line = _refusal(lambda: geosr.upscale_file(src, scale=2, model="bicubic", variable="v"))
    assert "variable='v' is for Zarr stores" in line, line


def test_the_apis_warnings_point_at_the_callers_line(
    make_raster: Callable[..., Path], tmp_path: Path
) -> None:
    """The warning about undeclared 0s pointed inside geosr/run_inputs.py, load_model's about
    untrained weights at geosr/errors.py and evaluate's at geosr/evaluation/wald.py: a notebook
    showed geosr's source line, and a filter by module missed them."""
    from geosr.evaluation import evaluate_wald

    src = _zero_edged(make_raster)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        geosr.upscale_file(src, tmp_path / "a.tif", scale=3, model="edsr-baseline")
        evaluate_wald([src], scale=2, model="bicubic", border=2)
    said = [w for w in caught if issubclass(w.category, GeosrWarning)]
    assert any("no bundled weights" in str(w.message) for w in said), said
    assert sum("declares no nodata" in str(w.message) for w in said) == 2, said
    assert {w.filename for w in said} == {__file__}, [(w.filename, str(w.message)[:40]) for w in said]


def test_a_command_to_type_keeps_its_flags(make_raster: Callable[..., Path], tmp_path: Path) -> None:
    """upscale_file(quicklook=True) of a window without a pixel valid in every band said "choose a
    window with data: geosr compare --window col,row,width,height (or other bands: bands)": the
    command's --bands became upscale_file's keyword.  A command in backticks keeps its flags."""
    data = np.arange(3 * 40 * 40, dtype="float32").reshape(3, 40, 40)
    data[0, :20] = np.nan  # no pixel is valid in both the red and the blue band
    data[2, 20:] = np.nan
    src = make_raster(data=data, nodata=float("nan"))
    with pytest.warns(GeosrWarning, match="in the window shown is valid") as said:
        geosr.upscale_file(src, tmp_path / "sr.tif", scale=2, model="bicubic", quicklook=True)
    (line,) = [str(w.message) for w in said if "window shown" in str(w.message)]
    assert line.endswith("`geosr compare --window col,row,width,height` (or other bands: `--bands`)"), line


TRAIN_CONFIG_REFUSALS = [
    (
        {"name": "cnnrnn-best", "init": "cnnrnn-fast"},
        "init='cnnrnn-fast' trains a cnnrnn-fast model, but name is 'cnnrnn-best': set name to "
        "'cnnrnn-fast', or leave it out",
        "--init cnnrnn-fast trains a cnnrnn-fast model, but --model (name) is 'cnnrnn-best': "
        "drop -m cnnrnn-best or use -m cnnrnn-fast",
    ),
    (
        {"loss": {"l1": -1.0}},
        "loss weight l1=-1.0 must be a number >= 0 (0 leaves the term out), e.g. loss={'l1': 1, 'ssim': 0.1}",
        "--loss weight l1=-1.0 must be a number >= 0 (0 leaves the term out), e.g. --loss l1=1,ssim=0.1",
    ),
]
"""Refused settings of a training run, a Python caller's line for them and `geosr train`'s."""


@pytest.mark.parametrize(("overrides", "python", "command"), TRAIN_CONFIG_REFUSALS)
def test_load_config_names_the_keys_a_python_caller_gives(
    tmp_path: Path, capsys, monkeypatch, overrides: dict[str, object], python: str, command: str
) -> None:
    """load_config(None, {"name": ..., "init": ...}) was told "drop -m cnnrnn-best or use -m
    cnnrnn-fast", and a negative loss weight "e.g. --loss l1=1,ssim=0.1": flags of geosr train."""
    from geosr.train import load_config
    from tests.test_bad_input import run_cli

    assert _refusal(lambda: load_config(None, overrides)) == python
    flags = ["-m", "cnnrnn-best", "--init", "cnnrnn-fast"] if "init" in overrides else ["--loss", "l1=-1.0"]
    code, err = run_cli(
        ["train", str(tmp_path / "hr.tif"), *flags, "-o", str(tmp_path / "r")], capsys, monkeypatch
    )
    assert code == 2 and " ".join(err.split()) == f"error: {command}", err


@pytest.mark.parametrize(("overrides", "python", "command"), TRAIN_CONFIG_REFUSALS)
def test_a_train_config_built_in_python_names_its_fields(
    overrides: dict[str, object], python: str, command: str
) -> None:
    """TrainConfig(name="cnnrnn-best", init="cnnrnn-fast"), built by a Python caller without
    load_config, was told "drop -m cnnrnn-best or use -m cnnrnn-fast": flags of geosr train."""
    from geosr.train import TrainConfig

    assert _refusal(lambda: TrainConfig(**overrides)) == python  # type: ignore[arg-type]


def test_a_train_config_built_in_python_takes_paths_and_refuses_other_types(tmp_path: Path) -> None:
    """TrainConfig(output=tmp_path / "run") was an AttributeError traceback ('PosixPath' object has
    no attribute 'strip') and TrainConfig(steps="10") a TypeError one ("'<' not supported");
    a recipe's values are checked as it is read, a Python caller's were not."""
    from geosr.train import TrainConfig

    config = TrainConfig(output=tmp_path / "run", weights=tmp_path / "w")  # type: ignore[arg-type]
    assert (config.output, config.weights) == (str(tmp_path / "run"), str(tmp_path / "w"))
    assert _refusal(lambda: TrainConfig(steps="10")) == "steps must be int, got '10'"  # type: ignore[arg-type]
    assert _refusal(lambda: TrainConfig(seed=1.5)) == "seed must be int, got 1.5"  # type: ignore[arg-type]
