"""Degradation: exact area averaging, shifts, blur, noise, determinism of batches."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geosr.errors import OptionError
from geosr.train.config import SceneSource
from geosr.train.data import ChipSampler, dihedral, load_scene
from geosr.train.degrade import (
    WALD,
    DegradationConfig,
    area_downsample,
    axis_weights,
    degrade_batch,
)


def test_axis_weights_without_blur_is_the_block_mean() -> None:
    w = axis_weights(3, 4, 2, 0.0, 0.0)
    expected = np.zeros((3, 16))
    for i in range(3):
        expected[i, 2 + 4 * i : 6 + 4 * i] = 0.25
    np.testing.assert_allclose(w, expected, atol=1e-12)


def test_half_pixel_shift_weights_split_the_edge_pixels() -> None:
    w = axis_weights(1, 2, 2, 0.0, 0.5)
    np.testing.assert_allclose(w[0], [0, 0, 0.25, 0.5, 0.25, 0], atol=1e-12)


def test_blur_keeps_rows_normalised_and_widens_support() -> None:
    w = axis_weights(4, 4, 8, 2.0, 0.0)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    assert (w[1] > 1e-4).sum() > 4


def test_wald_degradation_equals_area_downsample() -> None:
    rng = np.random.default_rng(0)
    hr = rng.random((2, 1, 16 + 8, 16 + 8)).astype(np.float32)
    lr = degrade_batch(hr, 4, 4, rng, DegradationConfig(blur_probability=0, noise_sigma=(0, 0)))
    np.testing.assert_allclose(lr[:, 0], area_downsample(hr[:, :, 4:-4, 4:-4], 4), atol=1e-6)


def test_shifted_frames_differ_and_reference_is_unshifted() -> None:
    rng = np.random.default_rng(1)
    hr = rng.random((1, 1, 40, 40)).astype(np.float32)
    cfg = DegradationConfig(blur_probability=0, noise_sigma=(0, 0), max_shift=0.5)
    lr = degrade_batch(hr, 4, 4, rng, cfg, frames=3)
    assert lr.shape == (1, 3, 1, 8, 8)
    np.testing.assert_allclose(lr[0, 0], area_downsample(hr[0, :, 4:-4, 4:-4], 4), atol=1e-6)
    assert np.abs(lr[0, 1] - lr[0, 0]).max() > 1e-3


def test_quantisation_rounds_to_the_step() -> None:
    rng = np.random.default_rng(2)
    hr = rng.random((2, 1, 24, 24)).astype(np.float32)
    lr = degrade_batch(hr, 2, 4, rng, WALD, quant_step=np.array([0.1, 0.0]))
    np.testing.assert_allclose(lr[0] * 10, np.round(lr[0] * 10), atol=1e-5)


def test_bad_degradation_ranges_are_refused() -> None:
    with pytest.raises(OptionError, match="blur_sigma"):
        DegradationConfig(blur_sigma=(0.5, 0.1))


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"blur_sigma": (math.nan, 0.5)}, "blur_sigma must be a range of finite numbers"),
        ({"noise_sigma": (0.0, math.inf)}, "noise_sigma must be a range of finite numbers"),
        ({"max_shift": math.nan}, "max_shift must be a finite number >= 0"),
        ({"max_shift": math.inf}, "max_shift must be a finite number >= 0"),
    ],
)
def test_a_nan_or_infinite_degradation_value_is_refused(values: dict, says: str) -> None:
    # A recipe's blur_sigma = [nan, 0.5] or max_shift = inf passed the range checks, and training
    # ended in numpy's traceback ("high - low range exceeds valid bounds") as chips were drawn.
    with pytest.raises(OptionError, match=says):
        DegradationConfig(multi_frame_probability=1.0, **values)


def test_dihedral_has_eight_distinct_elements() -> None:
    x = np.arange(9).reshape(3, 3)
    assert len({dihedral(x, k).tobytes() for k in range(8)}) == 8


def test_sampler_is_a_function_of_seed_and_step_and_avoids_nodata(make_raster) -> None:
    data = (np.random.default_rng(3).random((1, 90, 90)) * 200 + 10).astype("uint8")
    data[:, :40, :] = 0  # nodata band across the top
    path = make_raster("hr.tif", data=data, nodata=0)
    scene = load_scene(path, SceneSource(str(path)))
    assert scene.quant_step[0] > 0
    sampler = ChipSampler([scene], scale=2, lr_chip=8, degradation=DegradationConfig(), seed=5)
    lr1, hr1 = sampler.batch(7, 4)
    lr2, hr2 = sampler.batch(7, 4)
    np.testing.assert_array_equal(lr1, lr2)
    np.testing.assert_array_equal(hr1, hr2)
    assert lr1.shape == (4, 1, 1, 8, 8) and hr1.shape == (4, 1, 16, 16)
    # Nodata pixels are 0 after normalisation-and-masking only at invalid places: chips avoid them.
    assert (hr1 > -0.2).all()
    assert not np.array_equal(sampler.batch(8, 4)[1], hr1)


def test_source_weight_sets_how_often_a_scene_is_drawn(make_raster) -> None:
    """Two same-size scenes, one weighted 4x: it is drawn with probability 0.8."""
    texture = np.random.default_rng(0).integers(0, 50, (1, 64, 64), dtype="uint8")  # not flat: trained on
    low = make_raster("low.tif", data=texture + 10, nodata=None)
    high = make_raster("high.tif", data=texture + 200, nodata=None)
    scenes = [load_scene(low, SceneSource(str(low))), load_scene(high, SceneSource(str(high), weight=4.0))]
    sampler = ChipSampler(scenes, scale=2, lr_chip=8, degradation=DegradationConfig(), seed=0)
    np.testing.assert_allclose(sampler.weights, [0.2, 0.8])
    with pytest.raises(OptionError, match="weight must be > 0"):
        SceneSource("x.tif", weight=0.0)
    # A recipe's weight = inf made every draw probability nan: numpy's traceback as training began.
    with pytest.raises(OptionError, match=r"x\.tif: weight must be > 0 and finite, got inf"):
        SceneSource("x.tif", weight=math.inf)


def test_sampler_finds_the_rare_valid_chips_of_a_mostly_nodata_scene(make_raster) -> None:
    """A 200-px scene valid in one chip-sized corner (a swath edge): every chip is that corner.

    Random tries alone (1 valid position in 29 000) gave up after 200 and ended the run
    with 'found no all-valid chip', although the sampler had checked that one exists.
    """
    from geosr.train.degrade import margin_for

    size = 8 * 2 + 2 * margin_for(2, DegradationConfig())
    data = np.zeros((1, 200, 200), "uint8")
    corner = (np.random.default_rng(1).random((size, size)) * 200 + 10).astype("uint8")
    data[0, -size:, -size:] = corner
    path = make_raster("edge.tif", data=data, nodata=0)
    scene = load_scene(path, SceneSource(str(path)))
    sampler = ChipSampler([scene], scale=2, lr_chip=8, degradation=DegradationConfig(), seed=5)
    lr, hr = sampler.batch(0, 4)
    assert lr.shape == (4, 1, 1, 8, 8)
    m = sampler.margin
    inside = np.sort(scene.data[0, -size + m : 200 - m, -size + m : 200 - m], axis=None)
    for chip in hr:  # the corner's inside, flipped or rotated
        np.testing.assert_array_equal(np.sort(chip, axis=None), inside)


def test_a_scene_smaller_than_a_chip_beside_others_is_left_out_with_a_warning(make_raster) -> None:
    # It was left out silently, yet listed in the model card's training data.
    from geosr.errors import GeosrWarning

    big = make_raster("big.tif", height=64, width=64, dtype="uint8")
    small = make_raster("small.tif", height=20, width=20, dtype="uint8")
    scenes = [load_scene(p, SceneSource(str(p))) for p in (big, small)]
    with pytest.warns(GeosrWarning, match=r"small\.tif\[b1\]: smaller than one training chip.*left out"):
        sampler = ChipSampler(scenes, scale=2, lr_chip=8, degradation=DegradationConfig(), seed=0)
    assert sampler.pairs == [(0, 0)]


def test_a_sources_nodata_the_dtype_cannot_hold_is_told_as_its_user_sets_it(make_raster) -> None:
    """A Python caller of train() was told to "give --nodata (or the recipe's nodata)", neither
    of which it has: its sources' nodata is in config.data."""
    from geosr.errors import keyword_wording
    from geosr.train.trainer import TRAIN_FLAGS

    path = make_raster("scene.tif", height=20, width=20, dtype="uint16")
    with pytest.raises(OptionError) as command:
        load_scene(path, SceneSource(str(path), nodata=-1))
    assert "give --nodata (or the recipe's nodata) an integer in [0, 65535], or none" in str(command.value)
    with keyword_wording(TRAIN_FLAGS), pytest.raises(OptionError) as api:
        load_scene(path, SceneSource(str(path), nodata=-1))
    assert str(api.value).endswith(
        "give its source's nodata (in config.data.train or .val) an integer in [0, 65535], or None"
    ), api.value


def test_the_chip_size_to_lower_is_named_once_as_its_user_sets_it(make_raster) -> None:
    """It read "lower --chip (data.lr_chip)", and to a Python caller of train() "lower
    config.data.lr_chip (data.lr_chip)": the flag translated, its recipe key beside it."""
    from geosr.errors import GeosrWarning, keyword_wording
    from geosr.train.trainer import TRAIN_FLAGS

    big = make_raster("big.tif", height=64, width=64, dtype="uint8")
    small = make_raster("small.tif", height=20, width=20, dtype="uint8")
    scenes = [load_scene(p, SceneSource(str(p))) for p in (big, small)]
    with pytest.warns(GeosrWarning) as command:
        ChipSampler(scenes, scale=2, lr_chip=8, degradation=DegradationConfig(), seed=0)
    assert str(command[0].message).endswith("lower --chip (data.lr_chip in a recipe) to use them")
    with keyword_wording(TRAIN_FLAGS), pytest.warns(GeosrWarning) as api:
        ChipSampler(scenes, scale=2, lr_chip=8, degradation=DegradationConfig(), seed=0)
    assert str(api[0].message).endswith("lower config.data.lr_chip to use them")
    with keyword_wording(TRAIN_FLAGS), pytest.raises(OptionError, match=r"lower config\.data\.val_lr_chip$"):
        ChipSampler(
            scenes[1:], scale=2, lr_chip=8, degradation=DegradationConfig(), seed=0, what="validation"
        )
