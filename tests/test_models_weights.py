"""Model cards and safetensors weights: round trips, refusal of pickles, readable mismatches."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray
import torch

import geosr
from geosr.errors import InputError, ModelError, OutputError
from geosr.inspect import plan_run
from geosr.models import (
    CNNRNN,
    CNNRNNConfig,
    ModelCard,
    apply_state,
    load_model,
    load_weights,
    model_from_card,
    save_weights,
)
from geosr.options import RunOptions

TINY = {"features": 4, "encoder_blocks": 1, "refine_steps": 1}


def trained_like(scale: int = 2, name: str = "tiny", **overrides: object) -> CNNRNN:
    """A tiny model named ``name`` with every weight random (as if trained); ``overrides`` are
    :class:`CNNRNNConfig` fields."""
    torch.manual_seed(0)
    model = CNNRNN(CNNRNNConfig(scale=scale, **{**TINY, **overrides}), name=name)  # type: ignore[arg-type]
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    return model.eval()


def card_for(model: CNNRNN, **changes: object) -> ModelCard:
    fields: dict[str, object] = {
        "name": "tiny",
        "architecture": "cnnrnn",
        "config": model.config.to_dict(),
        "scale": model.scale,
        "bands": None,
        "normalisation": {"method": "dtype-range", "uint8": 255, "uint16": 10000},
        "training": {"data": "synthetic", "recipe": "none", "steps": 3, "seconds": 0.1},
        "metrics": {"val_psnr": 30.0},
        **changes,
    }
    return ModelCard(**fields)  # type: ignore[arg-type]


# --- cards -------------------------------------------------------------------------


def test_card_json_round_trip() -> None:
    card = card_for(trained_like(3), bands=["B2", "B3", "B4", "B8"])
    again = ModelCard.from_json(card.to_json())
    assert again == card
    data = json.loads(card.to_json())
    assert set(data) == {
        "name",
        "architecture",
        "config",
        "scale",
        "bands",
        "normalisation",
        "training",
        "metrics",
        "geosr_version",
        "date",
    }
    assert data["date"][:2] == "20" and len(data["date"]) == 10
    assert data["geosr_version"]


def _strict(text: str) -> object:
    """``text`` parsed as JSON.parse would: NaN and Infinity are not JSON."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_card_with_a_nan_is_strict_json(tmp_path: Path) -> None:
    """A training source's NaN nodata was written as NaN, which JSON.parse refuses and jq reads
    as null: spelt "nan", as STAC spells a NaN nodata."""
    model = trained_like()
    training = {"data": ["a.tif"], "config": {"data": {"train": [{"nodata": float("nan")}]}}}
    _, card_path = save_weights(model, card_for(model, training=training), tmp_path / "m")
    data = _strict(card_path.read_text())
    assert data["training"]["config"]["data"]["train"][0]["nodata"] == "nan"  # type: ignore[index]
    assert load_weights(tmp_path / "m")[1].training["data"] == ["a.tif"]


def test_card_defaults_and_unknown_fields() -> None:
    card = ModelCard.from_json(
        '{"name": "m", "architecture": "bicubic", "config": {}, "scale": 2, "future": 1}'
    )
    assert card.bands is None
    assert card.normalisation["method"] == "percentile"
    # Not read as written today by this geosr (a hand-written card, before this version).
    assert card.date == card.geosr_version == "unknown"


@pytest.mark.parametrize("missing", ["name", "architecture", "config", "scale"])
def test_card_missing_required_field_is_named(missing: str) -> None:
    data = json.loads(card_for(trained_like()).to_json())
    del data[missing]
    with pytest.raises(ModelError, match=rf"x\.json has no '{missing}' field"):
        ModelCard.from_json(json.dumps(data), source="x.json")


@pytest.mark.parametrize(
    ("changes", "pattern"),
    [
        ({"architecture": "unet"}, r"unknown architecture 'unet'.*cnnrnn, edsr, bicubic"),
        ({"normalisation": {"method": "zscore"}}, r"normalisation method 'zscore'"),
        ({"bands": "B2"}, r"'bands' must be a non-empty list"),
        ({"scale": 0}, r"'scale' must be a positive integer"),
        ({"scale": 3}, r"config scale 2 differs from card scale 3"),
        # Before, these numbers were taken as they came: a traceback, or a scene normalised into garbage.
        ({"normalisation": {"method": "percentile", "low": "a"}}, r"low='a' high=99.9 must be numbers"),
        ({"normalisation": {"method": "percentile", "low": 99.9, "high": 0.1}}, r"0 <= low < high <= 100"),
        ({"normalisation": {"method": "percentile", "high": 200}}, r"0 <= low < high <= 100"),
        ({"normalisation": {"method": "dtype-range", "uint16": 0}}, r"divisor uint16=0 must be a positive"),
        ({"normalisation": {"method": "dtype-range", "uint8": "x"}}, r"divisor uint8='x' must be a positive"),
    ],
)
def test_card_validation(changes: dict[str, object], pattern: str) -> None:
    with pytest.raises(ModelError, match=pattern):
        card_for(trained_like(), **changes)


def test_an_invalid_card_file_is_named(tmp_path: Path) -> None:
    """A fine-tuned card keeps the bundled name: 'model card cnnrnn-fast: ...' blamed the bundled model."""
    model = trained_like()
    weights, card_path = save_weights(model, card_for(model, name="cnnrnn-fast"), tmp_path / "mine")
    card_path.write_text(card_path.read_text().replace('"architecture": "cnnrnn"', '"architecture": "unet"'))
    with pytest.raises(ModelError, match=r"^\S*mine\.json: model card cnnrnn-fast: unknown architecture"):
        load_weights(weights)


def test_weights_cut_short_by_a_full_disk_are_one_line_and_keep_the_old_file(tmp_path: Path) -> None:
    """safetensors' 'Error while serializing: I/O error: File too large' ended geosr train's
    checkpoint in a traceback.  A file-size limit stands for the full disk."""
    import resource
    import signal

    model = trained_like()
    weights, _ = save_weights(model, card_for(model), tmp_path / "m")
    before = weights.read_bytes()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG, as ENOSPC, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, limits[1]))
    try:
        with pytest.raises(OutputError, match=r"cannot write \S*m\.safetensors: .*File too large"):
            save_weights(model, card_for(model), tmp_path / "m")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert weights.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_a_binary_card_file_is_refused_in_one_line(tmp_path: Path) -> None:
    """A card of binary bytes ended in a UnicodeDecodeError traceback."""
    model = trained_like()
    weights, card_path = save_weights(model, card_for(model), tmp_path / "m")
    card_path.write_bytes(b"\xca\xfe\x00binary")
    with pytest.raises(ModelError, match=r"m\.json is not a model card: not UTF-8 JSON text"):
        load_weights(weights)


def test_a_card_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    """A card saved with a UTF-8 BOM (Windows Notepad) was refused as 'not valid JSON'."""
    model = trained_like()
    weights, card_path = save_weights(model, card_for(model), tmp_path / "m")
    card_path.write_bytes(b"\xef\xbb\xbf" + card_path.read_bytes())
    assert load_weights(weights)[1] == card_for(model)


def test_card_invalid_json() -> None:
    with pytest.raises(ModelError, match="not valid JSON"):
        ModelCard.from_json("{nope")
    with pytest.raises(ModelError, match="must be a JSON object"):
        ModelCard.from_json("[1, 2]")


# --- save / load ----------------------------------------------------------------------


@pytest.mark.parametrize("given", ["stem", "stem.safetensors", "stem.json"])
def test_round_trip_gives_identical_outputs(tmp_path: Path, given: str) -> None:
    model = trained_like(3, in_channels=2)
    card = card_for(model, bands=["B4", "B8"])
    weights, card_path = save_weights(model, card, tmp_path / "stem")
    assert weights == tmp_path / "stem.safetensors" and card_path == tmp_path / "stem.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stem.json", "stem.safetensors"]

    state, loaded_card = load_weights(tmp_path / given)
    assert loaded_card == card
    rebuilt = model_from_card(loaded_card)
    apply_state(rebuilt, state)
    x = torch.rand(1, 2, 2, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), model(x), rtol=0, atol=0)


def test_the_same_weights_are_the_same_bytes(tmp_path: Path) -> None:
    """safetensors keeps its metadata in a hash map seeded afresh for each, so a model saved
    again (three trainings with one seed) wrote ``format``, ``name`` and ``scale`` in another
    order: equal tensors, other bytes and checksums.  Here 12 saves, one file's bytes; read by
    safetensors' own parser, with its metadata."""
    from safetensors import safe_open

    model = trained_like(name="mé")  # a name outside ASCII, as JSON writes it in UTF-8
    card = card_for(model, name="mé")
    blobs = set()
    for i in range(12):
        weights, _ = save_weights(model, card, tmp_path / f"m{i}")
        blobs.add(weights.read_bytes())
    assert len(blobs) == 1
    with safe_open(str(weights), "pt") as f:
        assert f.metadata() == {"format": "pt", "name": "mé", "scale": "2"}
        saved = model.state_dict()
        assert [k for k in f.keys() if not torch.equal(f.get_tensor(k), saved[k])] == []  # noqa: SIM118 (safe_open is not iterable)
    assert int.from_bytes(blobs.pop()[:8], "little") % 8 == 0  # the tensors start 8-aligned


def test_channels_last_model_saves(tmp_path: Path) -> None:
    """A model converted to channels_last (as the predictor does) has strided weights, which
    safetensors refuses: every tensor is saved, with its values.  (Every tensor safetensors
    loads is contiguous, so that alone said nothing of what was saved.)"""
    model = trained_like()
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    assert not all(t.is_contiguous() for t in model.state_dict().values())  # the case at hand
    save_weights(model, card_for(model), tmp_path / "m")
    state, _ = load_weights(tmp_path / "m")
    saved = model.state_dict()
    assert state.keys() == saved.keys()
    assert [name for name, t in state.items() if not torch.equal(t, saved[name])] == []


def test_missing_card_names_expected_path(tmp_path: Path) -> None:
    model = trained_like()
    save_weights(model, card_for(model), tmp_path / "m")
    (tmp_path / "m.json").unlink()
    with pytest.raises(ModelError, match=rf"expected {tmp_path / 'm.json'}"):
        load_weights(tmp_path / "m.safetensors")


def test_a_link_to_weights_finds_the_card_beside_the_link_then_beside_the_target(tmp_path: Path) -> None:
    """ln -s runs/a/tiny_x2.safetensors mine.safetensors: refused for want of mine.json while
    the card sat beside the weights the link leads to."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model), tmp_path / "runs" / "tiny_x2")
    (tmp_path / "mine.safetensors").symlink_to(weights)
    loaded = load_model(tmp_path / "mine.safetensors", bands=1, scale=2)
    assert loaded.card.name == "tiny"
    assert torch.equal(loaded.state_dict()["head.bias"], model.state_dict()["head.bias"])
    # A card beside the link is the link's own, and wins.
    (tmp_path / "mine.json").write_text(card_for(model, name="mine").to_json())
    assert load_model(tmp_path / "mine", bands=1, scale=2).card.name == "mine"
    # Neither: both places are named.
    (tmp_path / "mine.json").unlink()
    (tmp_path / "runs" / "tiny_x2.json").unlink()
    with pytest.raises(
        ModelError,
        match=rf"expected {tmp_path}/mine\.json \(or, beside the file the link "
        rf"leads to, {tmp_path}/runs/tiny_x2\.json\)",
    ):
        load_weights(tmp_path / "mine.safetensors")


def test_a_folder_is_named_as_a_folder(tmp_path: Path) -> None:
    """A folder given as weights was reported as "<folder>.safetensors does not exist"."""
    (tmp_path / "models").mkdir()
    with pytest.raises(ModelError, match=r"models is a folder, not geosr weights; give the \.safetensors"):
        load_model(str(tmp_path / "models") + "/", bands=1, scale=2)
    (tmp_path / "m.safetensors").mkdir()
    with pytest.raises(ModelError, match=r"m\.safetensors is a folder"):
        load_weights(tmp_path / "m.safetensors")


def test_a_run_folder_given_as_model_is_named_as_a_folder_with_its_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """geosr train -o run, then --model run: 'unknown model 'run'; known models: ...', as if
    the folder were not there (--model run/ said it was a folder, without the weights in it)."""
    model = trained_like()
    save_weights(model, card_for(model), tmp_path / "run" / "tiny_x2")
    monkeypatch.chdir(tmp_path)
    for given in ("run", "run/"):
        with pytest.raises(ModelError, match=r"^run is a folder, not geosr weights; .*holds run/tiny_x2\."):
            load_model(given, bands=1, scale=2)


def test_a_training_checkpoint_given_as_weights_is_named_as_one(tmp_path: Path) -> None:
    """--model run/checkpoints/last.safetensors said 'last.json has no 'name', 'architecture',
    'scale' field; a model card needs ...', as if a card were damaged."""
    from geosr.train.checkpoint import TrainState, save_checkpoint

    model = trained_like()
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    folder = tmp_path / "run" / "checkpoints"
    state = TrainState(3)
    save_checkpoint(folder, model=model, optimizer=optimizer, scheduler=scheduler, state=state, config={})
    with pytest.raises(ModelError, match=r"last\.safetensors is a geosr train checkpoint \(step 3\), not"):
        load_model(folder / "last.safetensors", bands=1, scale=2)


def test_a_stem_beside_a_folder_of_its_name_loads_the_weights(tmp_path: Path) -> None:
    """geosr train -o mine --weights mine leaves mine/ beside mine.safetensors: --model mine
    was refused as 'mine is a folder, not geosr weights'."""
    model = trained_like()
    save_weights(model, card_for(model), tmp_path / "mine")
    (tmp_path / "mine").mkdir()
    loaded = load_model(str(tmp_path / "mine"), bands=1, scale=2)
    assert torch.equal(loaded.state_dict()["head.bias"], model.state_dict()["head.bias"])


@pytest.mark.parametrize(
    "config",
    [{"foo": 1}, {"features": "4"}, {"blocks": 2}],
    ids=["unknown key", "wrong type", "another architecture's"],
)
def test_a_config_the_architecture_refuses_names_the_card(tmp_path: Path, config: dict[str, object]) -> None:
    """geosr run said 'error: scene.tif: unknown CNNRNN config keys ['foo']; ...', blaming
    the input and leaving the user to guess that the weights' card was at fault."""
    from geosr.train.trainer import initial_model

    model = trained_like()
    # Percentile normalisation: geosr train --init refuses a dtype-range card first.
    percentile = card_for(model, normalisation={"method": "percentile"})
    weights, card_path = save_weights(model, percentile, tmp_path / "m")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "config": {**card["config"], **config}}))
    with pytest.raises(ModelError, match=rf"^{re.escape(str(card_path))}: .*CNNRNN"):
        load_model(weights, bands=1, scale=2)
    with pytest.raises(ModelError, match=rf"^{re.escape(str(card_path))}: "):
        initial_model(str(weights), 2)  # geosr train --init


def test_upper_case_suffix_is_read(tmp_path: Path) -> None:
    """M.SAFETENSORS was looked for as M.safetensors and refused as 'not geosr weights'."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model), tmp_path / "M")
    weights.rename(tmp_path / "M.SAFETENSORS")
    loaded = load_model(tmp_path / "M.SAFETENSORS", bands=1, scale=2)
    assert torch.equal(loaded.state_dict()["head.bias"], model.state_dict()["head.bias"])


def test_a_path_from_the_home_folder_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """load_model("~/models/m.safetensors") was 'does not exist': geosr run's input globs and a
    recipe's paths take ~ as the home folder, the model's did not."""
    model = trained_like()
    save_weights(model, card_for(model), tmp_path / "models" / "m")
    monkeypatch.setenv("HOME", str(tmp_path))
    for given in ("~/models/m.safetensors", "~/models/m", Path("~/models/m.json")):
        assert load_model(given, bands=1, scale=2).card.name == "tiny"


def test_the_lazy_api_reads_weights_from_the_home_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_raster
) -> None:
    """geosr.upscale(..., model="~/models/m.safetensors") made the path absolute for its
    workers as '<cwd>/~/models/m.safetensors', which did not exist."""
    model = trained_like()
    save_weights(model, card_for(model), tmp_path / "models" / "m")
    monkeypatch.setenv("HOME", str(tmp_path))
    scene = make_raster(dtype="uint8", height=24, width=20)
    data = rioxarray.open_rasterio(scene)
    lazy = geosr.upscale(data, scale=2, model="~/models/m.safetensors").compute()
    direct = geosr.upscale(data, scale=2, model=str(tmp_path / "models" / "m.safetensors")).compute()
    np.testing.assert_array_equal(lazy.values, direct.values)


@pytest.mark.parametrize("url", ["https://example.com/m.safetensors", "s3://bucket/m.safetensors"])
def test_weights_given_by_url_are_refused_as_such(url: str) -> None:
    """A URL was read as a path: 'weights file https:/example.com/m.safetensors does not exist'."""
    with pytest.raises(
        ModelError, match=rf"^{re.escape(url)}: geosr reads weights from local files only; download"
    ):
        load_model(url, bands=1, scale=2)


def test_missing_weights(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"nothere\.safetensors does not exist"):
        load_weights(tmp_path / "nothere")
    # An existing file of another kind is named as what it is not, not as a missing
    # "<it>.safetensors".
    (tmp_path / "scene.tif").write_bytes(b"II*\x00")
    with pytest.raises(ModelError, match=r"scene\.tif is not geosr weights; give a \.safetensors"):
        load_weights(tmp_path / "scene.tif")


def test_a_card_without_its_weights_is_named_as_a_card(tmp_path: Path) -> None:
    """--model m.json without m.safetensors was 'm.json is not geosr weights; give a
    .safetensors file (with its .json model card beside it)', as if it were no card."""
    model = trained_like()
    weights, card_path = save_weights(model, card_for(model), tmp_path / "m")
    weights.unlink()
    with pytest.raises(
        ModelError,
        match=rf"^{re.escape(str(card_path))} is a model card, but its weights file "
        rf"{re.escape(str(weights))} does not exist; put the weights beside the card$",
    ):
        load_model(card_path, bands=1, scale=2)


def test_weights_or_a_card_that_cannot_be_read_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A card another user keeps private (chmod 600) ended geosr run in a PermissionError
    traceback; unreadable weights were 'not a valid safetensors file: Permission denied'."""
    import geosr.models.weights as weights_module

    model = trained_like()
    weights, card_path = save_weights(model, card_for(model), tmp_path / "m")
    denied = PermissionError(13, "Permission denied")
    read_text = Path.read_text

    def private_card(path: Path, *args: object, **kwargs: object) -> str:
        if path == card_path:
            raise denied
        return read_text(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", private_card)
    with pytest.raises(ModelError, match=rf"^cannot read model card {card_path}: Permission denied; check"):
        load_model(weights, bands=1, scale=2)
    monkeypatch.setattr(Path, "read_text", read_text)

    def private_weights(*args: object, **kwargs: object) -> None:
        raise denied

    monkeypatch.setattr(weights_module, "load_file", private_weights)
    with pytest.raises(ModelError, match=rf"^cannot read weights file {weights}: Permission denied; check"):
        load_model(weights, bands=1, scale=2)


def test_weights_that_are_not_a_regular_file_say_what_they_are(tmp_path: Path) -> None:
    """A link to moved weights, a link loop and a named pipe were each 'does not exist'."""
    (tmp_path / "moved.safetensors").symlink_to(tmp_path / "gone" / "m.safetensors")
    (tmp_path / "loop.safetensors").symlink_to(tmp_path / "loop.safetensors")
    os.mkfifo(tmp_path / "pipe.safetensors")
    for name, said in [
        ("moved", rf"is a symbolic link to {tmp_path}/gone/m\.safetensors, which does not exist"),
        ("loop", r"is a symbolic link that leads back to itself \(a loop\)"),
        ("pipe", r"is not a regular file"),
    ]:
        with pytest.raises(ModelError, match=rf"weights file .*{name}\.safetensors {said}"):
            load_weights(tmp_path / f"{name}.safetensors")


class Payload:
    """Creates ``marker`` when unpickled: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (Path.touch, (self.marker,))


def test_payload_is_live(tmp_path: Path) -> None:
    """Guard for the next test: unpickling this payload really does create the marker."""
    marker = tmp_path / "proof"
    # Unpickling here is the point: it proves the payload would act if loaded.
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.exists()


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".ckpt"])
def test_pickle_checkpoint_is_refused_never_unpickled(tmp_path: Path, suffix: str) -> None:
    marker = tmp_path / "pwned"
    checkpoint = tmp_path / f"evil{suffix}"
    checkpoint.write_bytes(pickle.dumps(Payload(marker)))
    (tmp_path / "evil.json").write_text(card_for(trained_like()).to_json())
    with pytest.raises(ModelError, match=r"pickle-based checkpoint; geosr loads only safetensors"):
        load_weights(checkpoint)
    assert not marker.exists()


def test_a_missing_pickle_checkpoint_is_said_to_be_missing(tmp_path: Path) -> None:
    """``--model model.pt`` for a file that is not there said "is a pickle-based checkpoint ...
    Convert it with ...": there is nothing to convert, the path is wrong."""
    with pytest.raises(ModelError, match=r"model\.pt does not exist; check the path"):
        load_weights(tmp_path / "model.pt")


def test_pickle_renamed_to_safetensors_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "evil.safetensors").write_bytes(pickle.dumps(Payload(marker)))
    (tmp_path / "evil.json").write_text(card_for(trained_like()).to_json())
    with pytest.raises(ModelError, match="not a valid safetensors file"):
        load_weights(tmp_path / "evil.safetensors")
    assert not marker.exists()


def test_refusal_message_says_how_to_convert(tmp_path: Path) -> None:
    (tmp_path / "m.pt").write_bytes(b"a checkpoint")  # never read
    with pytest.raises(ModelError, match=r"Convert it with.*weights_only=True.*m\.safetensors"):
        load_weights(tmp_path / "m.pt")
    # What the card it asks for holds: the user has none to copy.
    with pytest.raises(
        ModelError, match=r"m\.json \(fields name, architecture, config, scale; `geosr models --json`"
    ):
        load_weights(tmp_path / "m.pt")


# --- apply_state ------------------------------------------------------------------------


def test_shape_mismatch_names_key_and_shapes() -> None:
    small, big = trained_like(features=4), trained_like(features=8)
    with pytest.raises(ModelError) as info:
        apply_state(small, big.state_dict())
    message = str(info.value)
    assert "cell.input_candidate.weight: expected (4, 4, 3, 3) vs found (8, 8, 3, 3)" in message
    assert "and 7 more" in message  # long lists are cut, not dumped
    assert "model tiny" in message


def test_weights_that_do_not_fit_their_card_name_the_file(tmp_path: Path) -> None:
    """A card whose config or scale is not its weights' said 'weights do not fit model tiny',
    after the input's name in geosr run, naming no weights file; NaN weights alike."""
    model = trained_like()
    weights, card_path = save_weights(model, card_for(model), tmp_path / "m")
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "config": {**card["config"], "features": 6}}))
    with pytest.raises(ModelError, match=rf"^weights {re.escape(str(weights))} do not fit model tiny: "):
        load_model(weights, bands=1, scale=2)
    save_weights(model, card_for(model), tmp_path / "m")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.bias"][0] = float("nan")
    from safetensors.torch import save_file

    save_file(state, str(weights))
    with pytest.raises(ModelError, match=rf"^weights {re.escape(str(weights))} of model tiny are not usable"):
        load_model(weights, bands=1, scale=2)


def test_missing_and_unexpected_keys_are_named() -> None:
    model = trained_like()
    state = dict(model.state_dict())
    del state["head.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(ModelError, match=r"missing keys head\.bias; unexpected keys extra\.weight"):
        apply_state(model, state)


def test_weights_with_nan_or_of_integers_are_refused(tmp_path: Path) -> None:
    """Weights of a diverged training (NaN) loaded and ran: the output was NaN cast to garbage."""
    model = trained_like()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["head.bias"][0] = float("nan")
    save_weights(model, card_for(model), tmp_path / "m")
    from safetensors.torch import save_file

    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(ModelError, match=r"not usable: NaN or infinite values in head\.bias\. .*retrain"):
        load_model(tmp_path / "m.safetensors", bands=1, scale=2)
    ints = {k: v.to(torch.int32) for k, v in model.state_dict().items()}
    with pytest.raises(ModelError, match=r"not floating point cell\.\S+ \(torch\.int32\)"):
        apply_state(trained_like(), ints)


def test_apply_state_loads_values() -> None:
    source, target = trained_like(), CNNRNN(CNNRNNConfig(scale=2, **TINY))  # type: ignore[arg-type]
    apply_state(target, source.state_dict())
    for (k, a), b in zip(source.state_dict().items(), target.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_bad_normalisation_numbers_of_a_card_file_are_refused(tmp_path: Path, make_raster) -> None:
    """A card whose percentile is no number made `geosr run` end in a ValueError traceback."""
    model = trained_like()
    weights, card_path = save_weights(model, card_for(model), tmp_path / "m")
    data = json.loads(card_path.read_text())
    data["normalisation"] = {"method": "percentile", "low": "a", "high": 99.9}
    card_path.write_text(json.dumps(data))
    src = make_raster(count=1, height=24, width=24)
    with pytest.raises(ModelError, match="normalisation percentiles low='a'"):
        geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights))
    assert not (tmp_path / "out.tif").exists()


def test_dtype_range_divisor_of_the_card_is_used(tmp_path: Path, make_raster) -> None:
    """A card's ``uint16`` divisor (what its weights were trained with) was ignored: every
    uint16 scene was divided by 10000 whatever the card said."""
    model = trained_like()
    weights, _ = save_weights(
        model, card_for(model, normalisation={"method": "dtype-range", "uint16": 4000}), tmp_path / "m"
    )
    src = make_raster(count=1, height=24, width=24)
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights))
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_NORM_SCALE"] == "4000"


@pytest.mark.parametrize("dtype", ["int8", "uint32", "int32"])
def test_dtype_range_refuses_an_integer_dtype_it_has_no_divisor_for(
    tmp_path: Path, make_raster, dtype: str
) -> None:
    """A dtype-range model divided int8, uint32 and int32 pixels by 1: an int32 scene of values in
    the millions went into a model trained on values near 0..1, with no word of it.  geosr run,
    geosr info and geosr.upscale refuse it in one line, nothing written; with a divisor for the
    dtype in the card, it runs divided by that."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model), tmp_path / "m")  # dtype-range: uint8, uint16
    src = make_raster(count=1, height=24, width=24, dtype=dtype)
    line = (
        f"is {dtype}, for which the model's dtype-range normalisation has no divisor "
        r"\(it divides uint8 by 255, uint16 by 10000, int16 by 10000, float32 by 1, float64 by 1\): "
        f'add "{dtype}": <divisor> to its card\'s normalisation, or convert the input to one of those'
    )
    with pytest.raises(InputError, match=f"^{re.escape(str(src))} {line}"):
        geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights))
    assert not (tmp_path / "out.tif").exists()
    with pytest.raises(InputError, match=f"^{re.escape(str(src))} {line}"):
        plan_run(src, RunOptions(scale=2, model=str(weights)), calibrate=False)  # geosr info
    with pytest.raises(InputError, match=f"^the DataArray {line}"):
        geosr.upscale(rioxarray.open_rasterio(src), scale=2, model=str(weights))
    normalisation = {"method": "dtype-range", dtype: 100}
    weights, _ = save_weights(model, card_for(model, normalisation=normalisation), tmp_path / "m2")
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights))
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_NORM_SCALE"] == "100"


def test_a_card_may_give_a_dtype_range_divisor_for_every_dtype_geosr_reads() -> None:
    from geosr.io.scene import SUPPORTED_DTYPES
    from geosr.normalise import DIVISOR_DTYPES

    assert sorted(DIVISOR_DTYPES) == sorted(SUPPORTED_DTYPES)


@pytest.mark.parametrize(("card", "divisor"), [({}, "1"), ({"float32": 10000}, "10000")])
def test_dtype_range_divides_a_float_scene_by_one_or_the_cards_divisor(
    tmp_path: Path, make_raster, card: dict[str, float], divisor: str
) -> None:
    """A float raster holds physical values (reflectance 0..1, what uint16 DN / 10000 gives):
    divided by 1, unless the card gives a float32 divisor (a model trained on DN held as floats)."""
    model = trained_like()
    normalisation = {"method": "dtype-range", **card}
    weights, _ = save_weights(model, card_for(model, normalisation=normalisation), tmp_path / "m")
    src = make_raster(count=1, height=24, width=24, dtype="float32")
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights))
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_NORM_SCALE"] == divisor


def test_band_specific_model_refuses_its_bands_in_another_order(tmp_path: Path, make_raster) -> None:
    """Only the band count was checked: a B8,B4,B3,B2 scene ran through a B2,B3,B4,B8 model
    with every band in the wrong slot."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model, bands=["B2", "B3", "B4", "B8"]), tmp_path / "m")
    src = make_raster(count=4, height=16, width=16, descriptions=("B8", "B4", "B3", "B2"))
    # The model as the output's GEOSR_MODEL names it: the card's name may be a bundled model's.
    with pytest.raises(InputError, match=r"model tiny \(m\.safetensors\) expects bands B2,B3,B4,B8 in that"):
        geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights))
    assert not (tmp_path / "out.tif").exists()
    with pytest.raises(InputError, match=r"model tiny \(m\.safetensors\) expects bands B2,B3,B4,B8 in that"):
        plan_run(src, RunOptions(scale=2, model=str(weights)), calibrate=False)  # geosr info
    # Selected in the card's order (B02 is B2), it runs.
    geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(weights), bands="B02,B3,B4,B8")
    # geosr.upscale took the DataArray of the same file as it came.
    data = rioxarray.open_rasterio(src)
    with pytest.raises(InputError, match=r"the DataArray: model tiny \(m\.safetensors\) expects bands B2,"):
        geosr.upscale(data, scale=2, model=str(weights))
    reordered = data.isel(band=[3, 2, 1, 0]).assign_attrs(long_name=("B2", "B3", "B4", "B8"))
    geosr.upscale(reordered, scale=2, model=str(weights))


def test_bands_selected_from_a_file_are_checked_under_their_own_names(tmp_path: Path, make_raster) -> None:
    """A band selection keeps open_rasterio's long_name in the file's order: the file's bands put
    in the card's order with .sel(), as the line says to, were refused again with the same line,
    and a file in the card's order scrambled by .sel() ran with every band in the wrong slot."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model, bands=["B2", "B3", "B4", "B8"]), tmp_path / "m")
    reversed_bands = make_raster(
        "b8432.tif", count=4, height=16, width=16, descriptions=("B8", "B4", "B3", "B2")
    )
    ordered = geosr.upscale(
        rioxarray.open_rasterio(reversed_bands).sel(band=[4, 3, 2, 1]), scale=2, model=str(weights)
    )
    assert ordered.attrs["long_name"] == ("B2", "B3", "B4", "B8")
    in_order = make_raster("b2348.tif", count=4, height=16, width=16, descriptions=("B2", "B3", "B4", "B8"))
    with pytest.raises(
        InputError, match=r"expects bands B2,B3,B4,B8 in that order, the input's are B8,B4,B3,B2"
    ):
        geosr.upscale(rioxarray.open_rasterio(in_order).sel(band=[4, 3, 2, 1]), scale=2, model=str(weights))


@pytest.mark.parametrize("given", ["m", "m.json"])
def test_provenance_names_the_weights_file_however_given(tmp_path: Path, make_raster, given: str) -> None:
    """--model m (the stem) or m.json (the card) tagged the output 'tiny (m)' or 'tiny (m.json)'."""
    model = trained_like()
    save_weights(model, card_for(model), tmp_path / "m")
    src = make_raster(count=1, height=16, width=16)
    out = geosr.upscale_file(src, tmp_path / "out.tif", scale=2, model=str(tmp_path / given))
    with rasterio.open(out) as f:
        assert f.tags()["GEOSR_MODEL"] == "tiny (m.safetensors)"


def test_weights_saved_again_under_their_path_are_the_ones_upscale_runs(tmp_path: Path, make_raster) -> None:
    """geosr.upscale kept the model it first loaded from a path: weights retrained and saved
    under the same name (a notebook's loop) gave the old model's pixels, 0 of 3600 changed,
    where upscale_file gave the new one's."""
    data = rioxarray.open_rasterio(make_raster(count=1, height=30, width=30))
    first = trained_like()
    weights, _ = save_weights(first, card_for(first), tmp_path / "m")
    before = geosr.upscale(data, scale=2, model=str(weights)).values
    second = trained_like()
    with torch.no_grad():
        for p in second.parameters():
            p.mul_(-1.0)
    save_weights(second, card_for(second), tmp_path / "m")
    after = geosr.upscale(data, scale=2, model=str(weights)).values
    ran = geosr.upscale_file(data.encoding["source"], tmp_path / "run.tif", scale=2, model=str(weights))
    with rasterio.open(ran) as f:
        np.testing.assert_array_equal(after, f.read())
    assert (after != before).any()


@pytest.mark.parametrize(
    ("dtype", "tags", "masked"), [("uint16", {}, True), ("float32", {"GEOSR_UNITS_DTYPE": "uint16"}, False)]
)
def test_upscale_divides_by_the_units_of_the_files_integers_for_a_dtype_range_model(
    tmp_path: Path, make_raster, dtype: str, tags: dict[str, str], masked: bool
) -> None:
    """A dtype-range model divides uint16 DN by 10000: geosr.upscale divided the floats of a
    masked read (open_rasterio(masked=True), which the README advises for masked files), and a
    float raster whose GEOSR_UNITS_DTYPE tag says uint16, by a float's 1, and its pixels were up
    to 5570 DN from the file job's."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model), tmp_path / "m")  # dtype-range
    src = make_raster(count=1, height=24, width=28, dtype=dtype, nodata=0, tags=tags)
    ran = geosr.upscale_file(src, tmp_path / "run.tif", scale=2, model=str(weights), precision="fp32")
    data = rioxarray.open_rasterio(src, masked=masked)
    sr = geosr.upscale(data, scale=2, model=str(weights), precision="fp32")
    sr.rio.to_raster(tmp_path / "lazy.tif")
    with rasterio.open(tmp_path / "lazy.tif") as lazy, rasterio.open(ran) as run:
        np.testing.assert_array_equal(lazy.read(), run.read())


def test_upscale_adds_each_bands_boa_offset_for_a_dtype_range_model(tmp_path: Path, make_raster) -> None:
    """Sentinel-2 L2A since baseline 04.00 stores reflectance + 1000 (BOA_ADD_OFFSET -1000), which
    geosr run takes off for a dtype-range model and geosr.upscale did not: its pixels were up to
    193 DN from the file job's.  Band tags, which open_rasterio drops, count too, for the bands
    selected."""
    model = trained_like()
    weights, _ = save_weights(model, card_for(model), tmp_path / "m")  # dtype-range
    src = make_raster(count=2, height=24, width=28, nodata=0)
    with rasterio.open(src, "r+") as f:
        f.update_tags(1, BOA_ADD_OFFSET="-1000")
        f.update_tags(2, BOA_ADD_OFFSET="-400")
    data = rioxarray.open_rasterio(src)
    common = {"scale": 2, "model": str(weights), "precision": "fp32"}
    for bands, lazy in (("1,2", data), ("2", data.sel(band=[2]))):
        ran = geosr.upscale_file(src, tmp_path / "run.tif", bands=bands, overwrite=True, **common)
        with rasterio.open(ran) as run:
            np.testing.assert_array_equal(geosr.upscale(lazy, **common).values, run.read())


def test_saving_weights_leaves_the_process_umask_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """save_weights read the umask by setting it to 0 and back: a file another thread of the
    process (the host's, a run's writer) made in that moment was writable by everyone.  Read
    where Linux shows it, the umask is never set; the weights get the mode any new file gets."""
    status = Path("/proc/self/status")
    if not status.exists() or "Umask:" not in status.read_text():
        pytest.skip("the OS shows no process umask to read: it is set and put back")
    mask = os.umask(0o027)  # the test's own, for a mode that tells it from the default
    os.umask(mask | 0o027)
    set_to: list[int] = []
    real = os.umask

    def umask(value: int) -> int:
        set_to.append(value)
        return real(value)

    monkeypatch.setattr(os, "umask", umask)
    try:
        weights, _ = save_weights(trained_like(), card_for(trained_like()), tmp_path / "m")
    finally:
        real(mask)
    assert set_to == []
    assert weights.stat().st_mode & 0o777 == 0o666 & ~(mask | 0o027)
