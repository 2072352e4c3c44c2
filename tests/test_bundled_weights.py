"""The weights that ship in the package: the default, documented, small, and better than bicubic."""

from __future__ import annotations

from pathlib import Path

import pytest
import rasterio
from rasterio.windows import Window

import geosr
from geosr.evaluation.wald import evaluate_wald
from geosr.models import bundled_weights
from tests.conftest import real_file

WEIGHTS_DIR = Path(geosr.__file__).parent / "weights"


@pytest.mark.parametrize("scale", [4, 2])
def test_weights_ship_for_x4_and_x2_and_are_the_default(scale: int) -> None:
    path = bundled_weights("cnnrnn-fast", scale)
    assert path is not None and path.stat().st_size < 10 * 2**20
    model = geosr.load_model(None, bands=3, scale=scale)
    card = model.card
    assert card.name == "cnnrnn-fast" and card.scale == scale and card.bands is None
    assert card.training["recipe"] == f"pipelines/cnnrnn_fast_x{scale}.toml"
    assert (Path(__file__).resolve().parents[1] / card.training["recipe"]).exists()
    assert card.normalisation["method"] == "percentile"
    assert "val_gain_db" in card.metrics, "validation metrics belong in the card"
    assert card.metrics["wald_mean_gain_db"] > 0.5  # held-out scenes, written by make quality
    # the trained decoder is no longer the zero-initialised (bicubic-equivalent) one
    assert any(p.abs().sum() > 0 for n, p in model.named_parameters() if "decoder" in n or "tail" in n)


@pytest.mark.realdata
@pytest.mark.parametrize("scale", [4, 2])
def test_default_beats_bicubic_on_a_held_out_scene(data_dir: Path, tmp_path: Path, scale: int) -> None:
    """Wald protocol on a crop of the 2019 NAIP acquisition, which training never saw."""
    naip = real_file(data_dir, "aerial/naip_nd_5m/m_4709963_se_14_1_20190904.tif")
    crop = tmp_path / "naip2019.tif"
    with rasterio.open(naip) as src:
        window = Window(200, 200, 320, 320)
        profile = {**src.profile, "width": 320, "height": 320, "transform": src.window_transform(window)}
        profile.pop("blockxsize", None), profile.pop("blockysize", None), profile.pop("tiled", None)
        with rasterio.open(crop, "w", **profile) as dst:
            dst.write(src.read(window=window))
    report = evaluate_wald([crop], scale=scale, workdir=tmp_path / "work")
    summary = report.summary()
    assert summary["gain_db"] > 0.5, summary
    assert summary["min_gain_db"] > 0.0, summary
    assert abs(summary["lr_consistency"]) < 0.01


def test_bundled_cards_are_strict_json() -> None:
    """Their training sources' NaN nodata was written as NaN, which JSON.parse refuses."""
    from tests.test_models_weights import _strict

    cards = sorted(WEIGHTS_DIR.glob("*.json"))
    assert len(cards) >= 3
    for card in cards:
        _strict(card.read_text(encoding="utf-8"))


def test_best_x4_ships_and_says_it_is_slower() -> None:
    from geosr.models import flops_per_lr_pixel

    path = bundled_weights("cnnrnn-best", 4)
    assert path is not None and path.stat().st_size < 10 * 2**20
    best = geosr.load_model("cnnrnn-best", bands=1, scale=4)
    fast = geosr.load_model(None, bands=1, scale=4)
    assert best.card.training["recipe"] == "pipelines/cnnrnn_best_x4.toml"
    # The card states its cost, which is several times the default's.
    assert best.card.training["kflop_per_lr_pixel"] == round(flops_per_lr_pixel(best) / 1e3)
    assert flops_per_lr_pixel(best) > 3 * flops_per_lr_pixel(fast)
    assert best.card.metrics["wald_mean_gain_db"] > 0.5
