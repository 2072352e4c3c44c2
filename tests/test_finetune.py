"""Fine-tuning starts from existing weights (TrainConfig.init / geosr train --init)."""

from __future__ import annotations

import pytest
import torch

from geosr.errors import OptionError
from geosr.models import build_model as registry_build
from geosr.models import load_model
from geosr.train.config import load_config
from geosr.train.trainer import build_model


def test_init_loads_the_bundled_weights() -> None:
    model = build_model(load_config(None, {"name": "cnnrnn-fast", "scale": 4, "init": "cnnrnn-fast"}))
    bundled = load_model("cnnrnn-fast", bands=1, scale=4).state_dict()
    fresh = build_model(load_config(None, {"name": "cnnrnn-fast", "scale": 4})).state_dict()
    assert all(torch.equal(v, bundled[k]) for k, v in model.state_dict().items())
    assert not all(torch.equal(v, bundled[k]) for k, v in fresh.items())


def test_init_weights_given_by_url_are_refused_as_such() -> None:
    """--init https://host/m.safetensors was 'weights file https:/host/m.safetensors does not exist'."""
    from geosr.errors import ModelError
    from geosr.train.trainer import initial_model

    with pytest.raises(
        ModelError, match=r"^https://host/m\.safetensors: geosr reads weights from local files only"
    ):
        initial_model("https://host/m.safetensors", 2)


def test_init_with_another_architecture_is_refused() -> None:
    # The weights bring their architecture (their card); overriding it is a contradiction.
    with pytest.raises(OptionError, match="own architecture"):
        load_config(
            None, {"name": "cnnrnn-fast", "scale": 4, "init": "cnnrnn-fast", "model": {"features": 16}}
        )


def _edsr_weights(tmp_path):
    """A tiny EDSR x2 weights file with its card, as `geosr train -m edsr-baseline` writes one."""
    from geosr.models.card import ModelCard
    from geosr.models.weights import save_weights

    model = registry_build("edsr-baseline", scale=2)
    card = ModelCard(name="edsr-baseline", architecture="edsr", config=model.config.to_dict(), scale=2)
    return save_weights(model, card, tmp_path / "mine" / "edsr-baseline_x2")[0]


def test_init_from_a_weights_file_keeps_its_model_name(tmp_path, make_raster, capsys, monkeypatch) -> None:
    """Fine-tuning an EDSR file is labelled edsr-baseline (file name, card, GEOSR_MODEL), not with the
    default name cnnrnn-fast, and its card records the file it started from; a different -m is
    refused, as for a bundled --init name."""
    import numpy as np

    from geosr.models.weights import load_weights
    from tests.test_bad_input import assert_one_clear_line, run_cli
    from tests.test_train_trainer import FAST

    init = _edsr_weights(tmp_path)
    rng = np.random.default_rng(0)
    hr = make_raster("hr.tif", data=(rng.random((1, 64, 64)) * 200 + 20).astype("uint8"))
    run = tmp_path / "run"
    args = ["train", str(hr), *FAST, "--init", str(init), "-o", str(run)]
    assert run_cli(args, capsys, monkeypatch)[0] in (0, None)
    assert [p.name for p in run.glob("*.safetensors")] == ["edsr-baseline_x2.safetensors"]
    card = load_weights(run / "edsr-baseline_x2.safetensors")[1]
    assert card.name == "edsr-baseline"
    # The card records its parent (its training options keep only --init as given).
    parent = load_weights(init)[1]
    assert card.training["init"] == {
        "weights": str(init.resolve()),
        "name": "edsr-baseline",
        "date": parent.date,
        "geosr_version": parent.geosr_version,
        "steps": None,
    }

    code, err = run_cli([*args[:-1], str(tmp_path / "other"), "-m", "cnnrnn-fast"], capsys, monkeypatch)
    assert_one_clear_line(code, err, "holds a edsr-baseline model", "-m edsr-baseline")
    assert not (tmp_path / "other").exists()


@pytest.mark.parametrize("model", ["a weights file", "cnnrnn-fats"])
def test_a_weights_file_or_unknown_name_as_model_points_to_init(
    tmp_path, make_raster, capsys, monkeypatch, model: str
) -> None:
    """geosr train -m takes a model name; a weights file goes to --init. The registry's message
    said "or give the path of a .safetensors weights file", which -m then refused again."""
    from tests.test_bad_input import assert_one_clear_line, run_cli
    from tests.test_train_trainer import FAST

    if model == "a weights file":
        model = str(_edsr_weights(tmp_path))
    hr = make_raster("hr.tif", height=64, width=64, dtype="uint8")
    args = ["train", str(hr), *FAST, "-m", model, "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, "takes the name of a model to train", "--init PATH")
    assert not (tmp_path / "run").exists()


def test_init_weights_that_do_not_fit_their_card_name_the_file(tmp_path) -> None:
    """A card whose config is not its weights' ('weights do not fit model edsr-baseline' named no file)."""
    import json

    from geosr.errors import ModelError

    weights = _edsr_weights(tmp_path)
    card = weights.with_suffix(".json")
    values = json.loads(card.read_text())
    values["config"]["features"] = 8
    card.write_text(json.dumps(values))
    config = load_config(None, {"name": "edsr-baseline", "scale": 2, "init": str(weights)})
    with pytest.raises(ModelError, match=rf"^--init {weights}: weights do not fit"):
        build_model(config)


def test_init_record_of_a_bundled_model_names_its_scale_and_card() -> None:
    from geosr.models import bundled_weights
    from geosr.models.weights import load_weights
    from geosr.train.trainer import init_record

    bundled = load_weights(bundled_weights("cnnrnn-fast", 4))[1]  # type: ignore[arg-type]
    assert init_record("cnnrnn-fast", 4) == {
        "weights": "cnnrnn-fast (bundled x4)",
        "name": "cnnrnn-fast",
        "date": bundled.date,
        "geosr_version": bundled.geosr_version,
        "steps": bundled.training["steps"],
    }


@pytest.mark.parametrize(
    ("config", "card", "said"),
    [
        ({"in_channels": 4}, {"bands": ["B2", "B3", "B4", "B8"]}, r"sees 4 bands at once \(B2,B3,B4,B8\)"),
        ({}, {"normalisation": {"method": "dtype-range", "uint16": 10000}}, "by method=dtype-range"),
    ],
    ids=["band layout", "dtype-range"],
)
def test_init_weights_training_cannot_keep_are_refused(tmp_path, config, card, said) -> None:
    """A 4-band model failed at the first step ('built for 4 bands, the input has 1' of a
    4-band raster); a dtype-range one was retrained on percentile-normalised chips and its
    card's normalisation replaced without a word."""
    from geosr.models import CNNRNN, CNNRNNConfig
    from geosr.models.card import ModelCard
    from geosr.models.weights import save_weights
    from geosr.train.trainer import initial_model

    model = CNNRNN(CNNRNNConfig(scale=2, features=4, encoder_blocks=1, refine_steps=1, **config), name="t")
    model_card = ModelCard("t", "cnnrnn", model.config.to_dict(), 2, **card)
    weights = save_weights(model, model_card, tmp_path / "t")[0]
    with pytest.raises(OptionError, match=rf"^--init {weights}: its .*{said}.*fine-tunes band by band"):
        initial_model(str(weights), 2)


@pytest.mark.parametrize(
    ("init", "said"),
    [("cnnrnn-fast_x4", "give --init cnnrnn-fast --scale 4"), ("fast", "did you mean cnnrnn-fast?")],
)
def test_an_unknown_init_name_is_named_as_the_init(
    tmp_path, make_raster, capsys, monkeypatch, init, said
) -> None:
    """`geosr train hr.tif --init cnnrnn-fast_x4` said 'unknown model 'cnnrnn-fast_x4'; ...; for
    cnnrnn-fast_x4 give --model cnnrnn-fast --scale 4': geosr run's line, naming no --init, and
    sending a fine-tuning run to --model, which trains a new model from scratch."""
    from tests.test_bad_input import assert_one_clear_line, run_cli
    from tests.test_train_trainer import FAST

    hr = make_raster("hr.tif", height=64, width=64, dtype="uint8")
    args = ["train", str(hr), *FAST, "--init", init, "-o", str(tmp_path / "run")]
    code, err = run_cli(args, capsys, monkeypatch)
    assert_one_clear_line(code, err, f"error: --init {init}: unknown model '{init}'", said)
    assert "--model" not in err, err
    assert not (tmp_path / "run").exists()
