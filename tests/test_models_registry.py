"""Registry, bundled weights and load_model: names, scales, bands, paths."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import geosr.models
from geosr.errors import GeosrWarning, ModelError
from geosr.models import (
    CNNRNN,
    DEFAULT_MODEL,
    MODEL_NAMES,
    Bicubic,
    ModelCard,
    build_model,
    bundled_weights,
    list_models,
    load_model,
    registry,
    save_weights,
)
from tests.test_models_weights import trained_like


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty bundled-weights folder in place of ``geosr/weights``."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setattr(registry, "WEIGHTS_DIR", folder)
    return folder


def random_model(scale: int, **overrides: object) -> CNNRNN:
    """:func:`~tests.test_models_weights.trained_like`, named as the cards of this file name it."""
    return trained_like(scale, "mine", **overrides)


def card(model: CNNRNN, name: str = "mine", **changes: object) -> ModelCard:
    return ModelCard(
        name=name,
        architecture="cnnrnn",
        config=model.config.to_dict(),
        scale=model.scale,
        training={"data": "synthetic", "recipe": "test", "steps": 1, "seconds": 0.0},
        **{"metrics": {"val_gain_db": 1.234}, **changes},  # type: ignore[arg-type]
    )


def test_registry_names() -> None:
    assert set(MODEL_NAMES) == {"cnnrnn-fast", "cnnrnn-best", "edsr-baseline", "bicubic"}
    assert DEFAULT_MODEL == "cnnrnn-fast"
    fast, best = build_model("cnnrnn-fast", scale=2), build_model("cnnrnn-best", scale=2)
    assert isinstance(fast, CNNRNN) and isinstance(best, CNNRNN)
    for model, expected in ((fast, (32, 2, 2)), (best, (48, 4, 4))):
        cfg = model.config
        assert (cfg.features, cfg.encoder_blocks, cfg.refine_steps) == expected
    assert isinstance(build_model("bicubic", scale=3), Bicubic)


def test_build_model_overrides() -> None:
    model = build_model("cnnrnn-fast", scale=3, features=8, recurrent=False)
    assert isinstance(model, CNNRNN)
    assert model.config.features == 8 and not model.config.recurrent
    with pytest.raises(ModelError, match="unknown CNNRNN config keys"):
        build_model("cnnrnn-fast", scale=3, width=8)
    with pytest.raises(ModelError, match=r"^model bicubic takes no options, got features and tile$"):
        build_model("bicubic", scale=3, features=8, tile=4)


def test_unknown_name_lists_known_names() -> None:
    with pytest.raises(
        ModelError,
        match=r"unknown model 'srgan'; known models: cnnrnn-fast, "
        r"cnnrnn-best, edsr-baseline, bicubic",
    ):
        load_model("srgan", bands=1, scale=2)
    with pytest.raises(ModelError, match="known models"):
        build_model("srgan", scale=2)


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("fast", "cnnrnn-fast"),
        ("cnnrnn_best", "cnnrnn-best"),
        ("edsr", "edsr-baseline"),
        ("bicubc", "bicubic"),
    ],
)
def test_a_part_or_a_near_miss_of_a_model_name_is_told_the_name(given: str, meant: str) -> None:
    """--model fast was 'unknown model 'fast'; known models: cnnrnn-fast, ... (or give the path of a
    .safetensors weights file)': the name it stands for left to find in the list."""
    with pytest.raises(ModelError, match=rf"^unknown model '{given}'; .*; did you mean {meant}\?$"):
        load_model(given, bands=1, scale=4)
    with pytest.raises(ModelError, match=r"weights file\)$"):  # a name like none of them, or several
        load_model("cnnrnn", bands=1, scale=4)


def test_the_name_meant_is_told_without_a_flag_other_options_do_not_take(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    """--init takes a model name too: 'did you mean --model cnnrnn-fast?' sent it to another flag."""
    from tests.test_bad_input import assert_one_clear_line, run_cli

    args = ["train", str(make_raster()), "--init", "fast", "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "unknown model 'fast'", "did you mean cnnrnn-fast?")
    assert "--model" not in err, err


def test_a_bundled_files_stem_as_model_names_the_model_and_scale() -> None:
    """--model cnnrnn-fast_x4 (the bundled file's stem) was only 'unknown model', with the list."""
    with pytest.raises(
        ModelError,
        match=r"^unknown model 'cnnrnn-fast_x4'; .*; "
        r"for cnnrnn-fast_x4 give name_or_path='cnnrnn-fast' scale=4$",
    ):
        load_model("cnnrnn-fast_x4", bands=1, scale=4)
    with pytest.raises(ModelError, match=r"weights file\)$"):
        load_model("srgan_x4", bands=1, scale=4)


def test_default_untrained_model(weights_dir: Path) -> None:
    with pytest.warns(
        GeosrWarning, match=r"no bundled weights for cnnrnn-fast x4; it runs untrained.*none bundled"
    ):
        model = load_model(bands=3, scale=4)
    assert isinstance(model, CNNRNN) and not model.training
    assert model.name == "cnnrnn-fast" and model.scale == 4 and model.receptive_field == 12
    assert model.card.training["note"].startswith("untrained")
    assert model.card.bands is None and model.card.scale == 4
    assert bundled_weights("cnnrnn-fast", 4) is None


def test_bicubic_by_name(weights_dir: Path) -> None:
    model = load_model("bicubic", bands=5, scale=3)
    assert isinstance(model, Bicubic) and model.card.training["note"].startswith("not learned")


@pytest.mark.parametrize("scale", [0, 1, 9, 2.0, "4"])
def test_bad_scale(weights_dir: Path, scale: object) -> None:
    with pytest.raises(
        ModelError,
        match=rf"scale {scale!r} is not supported by model cnnrnn-fast: "
        r"use an integer 2\.\.8 \(usually 2, 3 or 4\)$",
    ):
        load_model(bands=1, scale=scale)  # type: ignore[arg-type]


@pytest.mark.parametrize("bands", [0, -1, 1.5, True])
def test_bad_bands(weights_dir: Path, bands: object) -> None:
    with pytest.raises(ModelError, match=r"bands must be an integer >= 1"):
        load_model(bands=bands, scale=2)  # type: ignore[arg-type]


def test_numpy_integers_are_taken_for_bands_and_scale(weights_dir: Path) -> None:
    """An array's size (np.int64(4)) was refused with "bands must be an integer >= 1, got
    np.int64(4)" and "scale np.int64(4) is not supported ...: use 2, 3 or 4", as RunOptions
    takes them."""
    model = load_model("bicubic", bands=np.int64(4), scale=np.int64(4))
    assert model.scale == 4 and type(model.scale) is int
    registry.check_model("cnnrnn-fast", scale=np.int32(2))


def test_load_from_path(tmp_path: Path) -> None:
    model = random_model(3, in_channels=4)
    save_weights(model, card(model, bands=["B2", "B3", "B4", "B8"]), tmp_path / "mine_x3")
    for given in (tmp_path / "mine_x3.safetensors", str(tmp_path / "mine_x3")):
        loaded = load_model(given, bands=4, scale=3)
        assert loaded.name == "mine" and loaded.card.bands == ["B2", "B3", "B4", "B8"]
        x = torch.rand(1, 2, 4, 5, 5)
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    with pytest.raises(
        ModelError,
        # The file too: its card's name may be a bundled model's.
        match=r"model mine \(.*mine_x3\.safetensors\) expects 4 bands \(B2,B3,B4,B8\), "
        r"the input has 3",
    ):
        load_model(tmp_path / "mine_x3.safetensors", bands=3, scale=3)
    with pytest.raises(ModelError, match=r"support scale 3 only, not 2: .* or use weights trained for x2$"):
        load_model(tmp_path / "mine_x3.safetensors", bands=4, scale=2)
    # Not 'or use weights trained for x1', which geosr would refuse in turn.
    with pytest.raises(ModelError, match=r"only, not 1: run with scale=3 \(scales are 2\.\.8\)$"):
        load_model(tmp_path / "mine_x3.safetensors", bands=4, scale=1)


def test_a_registered_name_beside_a_file_of_that_name_is_the_model_and_says_so(
    weights_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model bicubic in a folder holding bicubic.safetensors ran the registered model without
    a word; ./bicubic.safetensors (or ./bicubic) is the file."""
    model = random_model(2)
    save_weights(model, card(model), tmp_path / "bicubic")
    monkeypatch.chdir(tmp_path)
    with pytest.warns(
        GeosrWarning,
        match=r"^model bicubic is geosr's registered model, not the file "
        r"bicubic\.safetensors in the current directory; give \./bicubic\.safetensors",
    ):
        assert isinstance(load_model("bicubic", bands=1, scale=2), Bicubic)
    for given in ("./bicubic.safetensors", "./bicubic"):
        assert load_model(given, bands=1, scale=2).name == "mine"


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("", r"^unknown model ''; known models: cnnrnn-fast"),
        (".", r"^\. is a folder"),
        ("/", r"^/ is a folder"),
    ],
    ids=["empty", "dot", "root"],
)
def test_an_empty_model_or_a_folder_without_a_name_is_one_error(given: str, said: str) -> None:
    """--model "$MODEL" with MODEL unset, or --model ., ended in a traceback: ValueError
    'PosixPath('.') has an empty name'."""
    with pytest.raises(ModelError, match=said):
        load_model(given, bands=1, scale=2)
    with pytest.raises(ModelError, match=said):
        registry.check_model(given, scale=2)


def test_weights_of_several_bands_without_band_names_say_how_to_go_on(tmp_path: Path) -> None:
    """Weights built for 4 bands at once whose card names no bands said only 'expects 4 bands,
    the input has 3'.  From Python the hint names upscale_file's bands=, which selects them:
    load_model's own bands is their count ("e.g. bands" said it was)."""
    model = random_model(2, in_channels=4)
    save_weights(model, card(model), tmp_path / "m4_x2")
    with pytest.raises(
        ModelError,
        match=r"^model mine \(.*m4_x2\.safetensors\) expects 4 bands, the input has 3; select 4 bands "
        r"\(e\.g\. upscale_file\(bands=\.\.\.\)\) or use a band-agnostic model",
    ):
        load_model(tmp_path / "m4_x2.safetensors", bands=3, scale=2)


def test_a_stem_whose_card_has_no_weights_says_the_weights_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--model mine beside mine.json alone was 'unknown model 'mine'; known models: ...'."""
    model = random_model(2)
    weights, _ = save_weights(model, card(model), tmp_path / "mine")
    weights.unlink()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match=r"^weights file mine\.safetensors does not exist"):
        load_model("mine", bands=1, scale=2)


def test_load_from_pickle_path_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"\x80\x04N.")
    with pytest.raises(ModelError, match="pickle-based checkpoint"):
        load_model(str(tmp_path / "model.pt"), bands=1, scale=2)
    with pytest.raises(ModelError, match=r"model\.ckpt does not exist"):  # nothing there to convert
        load_model("model.ckpt", bands=1, scale=2)


def test_bundled_weights_are_used_and_listed(weights_dir: Path) -> None:
    model = random_model(2)
    save_weights(model, card(model, name="cnnrnn-fast"), weights_dir / "cnnrnn-fast_x2")
    assert bundled_weights("cnnrnn-fast", 2) == weights_dir / "cnnrnn-fast_x2.safetensors"

    loaded = load_model("cnnrnn-fast", bands=2, scale=2, device="cpu")
    assert loaded.name == "cnnrnn-fast" and loaded.card.training["recipe"] == "test"
    x = torch.rand(1, 1, 2, 6, 6)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)

    infos = {info.name: info for info in list_models()}
    assert infos["cnnrnn-fast"].scales == (2,)
    assert infos["cnnrnn-fast"].card is not None and infos["cnnrnn-fast"].card.scale == 2
    assert infos["cnnrnn-fast"].metrics_summary == "x2: +1.23 dB"
    # The held-out Wald result, once make quality has written it, is what is shown.
    metrics = {"val_gain_db": -0.4, "wald_mean_gain_db": 1.07}
    save_weights(model, card(model, name="cnnrnn-fast", metrics=metrics), weights_dir / "cnnrnn-fast_x2")
    summary = {i.name: i for i in list_models()}["cnnrnn-fast"].metrics_summary
    assert summary == "x2: +1.07 dB (Wald, held-out scenes)"
    assert infos["cnnrnn-best"].scales == () and infos["cnnrnn-best"].card is None
    assert infos["cnnrnn-best"].metrics_summary == "-"
    assert all(info.description for info in infos.values())

    # Scales with bundled weights are what the error suggests.
    with pytest.raises(ModelError, match=r"use 2 \(bundled weights\) or any integer 2\.\.8"):
        load_model("cnnrnn-fast", bands=1, scale=1)


def test_models_json_lists_every_model_with_its_cards_whole() -> None:
    """geosr models had no machine-readable form: scripts parsed the table."""
    from typer.testing import CliRunner

    from geosr.cli import app
    from tests.test_models_weights import _strict

    result = CliRunner().invoke(app, ["models", "--json"])
    assert result.exit_code == 0, result.output
    rows = _strict(result.stdout)
    assert [row["name"] for row in rows] == list(MODEL_NAMES)  # type: ignore[union-attr]
    fast = rows[0]  # type: ignore[index]
    assert fast["architecture"] == "cnnrnn" and fast["default"] is True
    assert fast["bundled_scales"] == [2, 4]
    assert [c["scale"] for c in fast["cards"]] == [2, 4]
    card_x4 = registry.WEIGHTS_DIR / "cnnrnn-fast_x4.json"
    assert fast["cards"][1] == _strict(card_x4.read_text(encoding="utf-8"))
    assert rows[-1] == {  # type: ignore[index]
        "name": "bicubic",
        "architecture": "bicubic",
        "description": MODEL_NAMES["bicubic"].description,
        "default": False,
        "bundled_scales": [],
        "cards": [],
    }


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        (["${GEOSR_DATA_DIR}/a/b.tif", "${GEOSR_DATA_DIR}/c"], "in $GEOSR_DATA_DIR: a/b.tif; c"),
        (["${GEOSR_DATA_DIR}/a/b.tif", "/x/c.tif"], "${GEOSR_DATA_DIR}/a/b.tif; /x/c.tif"),
        ("/x/store.zarr", "/x/store.zarr"),
    ],
    ids=["all under the data folder", "mixed", "a store"],
)
def test_models_says_where_the_training_data_is(weights_dir: Path, data: object, shown: str) -> None:
    """geosr models cut ${GEOSR_DATA_DIR}/ from each path without a word, leaving paths relative
    to nothing it named, and listed a training store's path a character at a time."""
    from typer.testing import CliRunner

    from geosr.cli import app

    model = random_model(2)
    training = {"data": data, "recipe": "test", "steps": 1}
    bundled = dataclasses.replace(card(model, name="cnnrnn-fast"), training=training)
    save_weights(model, bundled, weights_dir / "cnnrnn-fast_x2")
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"  training data  {shown}\n" in result.output


def test_bundled_weights_without_card_fail_loudly(weights_dir: Path) -> None:
    model = random_model(2)
    save_weights(model, card(model, name="cnnrnn-fast"), weights_dir / "cnnrnn-fast_x2")
    (weights_dir / "cnnrnn-fast_x2.json").unlink()
    with pytest.raises(ModelError, match=r"cnnrnn-fast_x2\.json"):
        load_model("cnnrnn-fast", bands=1, scale=2)


def test_models_package_imports_no_geospatial_or_dask() -> None:
    """The model knows nothing of geography (see DESIGN.md): checked on the source."""
    banned = {"rasterio", "xarray", "rioxarray", "dask", "distributed", "odc", "zarr"}
    package = Path(geosr.models.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{path.name} imports {roots & banned}"


def test_a_device_torch_cannot_use_is_one_error() -> None:
    """load_model(device='gpu') was torch's RuntimeError 'Expected one of cpu, cuda, ...', and
    device='cuda' without a GPU 'AssertionError: Torch not compiled with CUDA enabled' (or,
    for bicubic, no error at all), where geosr.upscale says one line of each; so was
    device=torch.device('cuda'), which the docstring takes."""
    from geosr.errors import GeosrError

    with pytest.raises(GeosrError, match=r"^device='gpu' is not known; use one of auto, cpu, cuda"):
        load_model("cnnrnn-fast", bands=1, scale=2, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(GeosrError, match="no CUDA GPU is visible"):
            load_model("cnnrnn-fast", bands=1, scale=2, device="cuda")
        with pytest.raises(GeosrError, match="no CUDA GPU is visible"):
            load_model("cnnrnn-fast", bands=1, scale=2, device=torch.device("cuda"))
    cpu = load_model("bicubic", bands=1, scale=2, device=torch.device("cpu"))
    assert next(iter(cpu.buffers()), torch.zeros(0)).device.type == "cpu"
    assert next(load_model("cnnrnn-fast", bands=1, scale=2, device="auto").parameters()).device.type in (
        "cpu",
        "cuda",
    )


def test_a_model_neither_name_nor_path_is_one_error() -> None:
    """model=3, or a model load_model returned, (from the Python API) was pathlib's TypeError
    'expected str, bytes or os.PathLike object, not int', a traceback from geosr.upscale and
    upscale_file alike."""
    with pytest.raises(ModelError, match=r"^unknown model given as a int; known models: cnnrnn-fast"):
        load_model(3, bands=1, scale=2)  # type: ignore[arg-type]
    with pytest.raises(ModelError, match=r"^unknown model given as a Bicubic; known models: "):
        load_model(load_model("bicubic", bands=1, scale=2), bands=1, scale=2)  # type: ignore[arg-type]


@pytest.mark.parametrize("model", [3, ["bicubic"]])
def test_geosr_upscale_refuses_a_model_neither_name_nor_path_as_load_model_does(make_raster, model) -> None:
    """geosr.upscale(da, model=3) was pathlib's TypeError again once the predictor cache took
    the weights' stamp (a list: lru_cache's 'unhashable type'), where upscale_file says it."""
    import rioxarray

    import geosr

    data = rioxarray.open_rasterio(make_raster(height=16, width=16))
    with pytest.raises(
        ModelError, match=rf"^unknown model given as a {type(model).__name__}; known models: "
    ):
        geosr.upscale(data, scale=2, model=model)


@pytest.mark.parametrize(("device", "shown"), [(0, "device=0"), (5, "device=5"), (["cpu"], "device ['cpu']")])
def test_a_device_neither_text_nor_torch_device_is_one_error(device: object, shown: str) -> None:
    """load_model(device=0), a CUDA index to torch, was torch's RuntimeError 'Cannot access
    accelerator device when none is available' (or took a GPU unchecked); a list its TypeError."""
    from geosr.errors import OptionError

    said = rf"^{re.escape(shown)} is not supported: use 'auto', 'cpu', 'cuda' or 'cuda:N'"
    with pytest.raises(OptionError, match=said):
        load_model("bicubic", bands=1, scale=2, device=device)  # type: ignore[arg-type]


def test_weights_of_another_scale_name_the_flag_that_sets_it(
    make_raster, tmp_path, capsys, monkeypatch
) -> None:
    """`geosr run scene.tif --model mine_x4.safetensors --scale 2` said 'run with scale 4', naming no
    flag, where every other line of the command names the one to give ('use --scale 4')."""
    from tests.test_bad_input import assert_one_clear_line, run_cli
    from tests.test_run import random_model_file

    weights = random_model_file(tmp_path, 4)
    args = ["run", str(make_raster()), "--model", str(weights), "--scale", "2", "-o", str(tmp_path / "o.tif")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "support scale 4 only, not 2: run with --scale 4, or use weights")
    assert not (tmp_path / "o.tif").exists()
