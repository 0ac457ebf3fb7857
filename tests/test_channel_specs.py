"""Channel specs: selection, random draws, merges, blanks, dropout, and seed 001's loading codes."""

from __future__ import annotations

import numpy as np
import pytest

from cellseg.data.pipeline.channels import ChannelStrategy
from cellseg.data.pipeline.seed_codes import HYPERLABELED_CHANNELS, specs_from_codes
from cellseg.errors import ConfigError

NAMES = ("a", "b", "c", "d")


def identity(plane: np.ndarray, index: int = 0) -> np.ndarray:
    return plane.astype(np.float32)


def constant_image() -> np.ndarray:
    """Channel k is the constant k + 1, so every output plane says which channel it came from."""
    return np.stack([np.full((4, 5), k + 1, dtype=np.uint16) for k in range(len(NAMES))])


def draw(strategy: ChannelStrategy, n: int, training: bool = True, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = constant_image()
    return np.stack([strategy.bind(NAMES).apply(image, identity, rng, training)[:, 0, 0] for _ in range(n)])


def test_random_redraws_per_sample_uniformly_and_is_fixed_in_validation():
    strategy = ChannelStrategy([{"random": ["a", "c", "d"], "val": "c"}])
    values = draw(strategy, 3000)[:, 0]
    counts = {v: np.mean(values == v) for v in (1, 3, 4)}
    assert set(np.unique(values)) == {1, 3, 4}
    assert all(abs(share - 1 / 3) < 0.04 for share in counts.values()), counts
    assert set(draw(strategy, 50, training=False)[:, 0]) == {3}
    assert set(draw(ChannelStrategy([{"random": ["b", "d"]}]), 20, training=False)[:, 0]) == {2}  # first


def test_merge_is_the_mean_of_normalised_inputs_and_dropout_darkens_it():
    exact = draw(ChannelStrategy([{"merge": ["a", "b", "d"]}]), 1)[0, 0]
    assert exact == pytest.approx((1 + 2 + 4) / 3)
    values = draw(ChannelStrategy([{"merge": ["a", "b", "d"], "dropout": 0.3}]), 4000)[:, 0]
    # each input kept with p = 0.7, the sum still divided by 3 (seed 001's semantics)
    assert values.mean() == pytest.approx(0.7 * 7 / 3, rel=0.03)
    assert values.min() == 0.0  # all three dropped happens (p = 0.027)
    assert set(draw(ChannelStrategy([{"merge": ["a", "b"], "dropout": 0.9}]), 30, training=False)[:, 0]) == {
        1.5
    }


def test_blank_and_channel_dropout_rates():
    assert not draw(ChannelStrategy(["blank"]), 3).any()
    values = draw(ChannelStrategy([{"dropout": 0.25, "spec": "b"}]), 4000)[:, 0]
    assert np.mean(values == 0) == pytest.approx(0.25, abs=0.025)
    assert set(np.unique(values)) == {0, 2}
    assert set(draw(ChannelStrategy([{"dropout": 0.9, "spec": "b"}]), 30, training=False)[:, 0]) == {2}


def test_leak_to_validation_reproduces_seed_001():
    strategy = ChannelStrategy([{"dropout": 0.5, "spec": "b"}], leak_to_validation=True)
    assert 0 in draw(strategy, 200, training=False)[:, 0]


def test_in_channels_is_the_number_of_specs():
    strategy = ChannelStrategy(["a", {"merge": ["b", "c"]}, "blank", {"random": ["a", "d"]}])
    assert strategy.num_channels == 4
    assert strategy.bind(NAMES).apply(constant_image(), identity).shape == (4, 4, 5)


@pytest.mark.parametrize(
    "specs,message",
    [
        ([{"random": []}], "non-empty list"),
        ([{"merge": ["a"], "p": 1}], "unexpected keys"),
        ([{"dropout": 1.5, "spec": "a"}], "probability"),
        ([{"shuffle": ["a"]}], "none of the keys"),
        (["zz"], "Unknown channel 'zz'"),
        ([{"merge": ["a", 9]}], "out of range"),
    ],
)
def test_bad_specs_fail_with_the_reason(specs, message):
    with pytest.raises(ConfigError, match=message):
        ChannelStrategy(specs).bind(NAMES)


def test_seed_codes_map_to_specs():
    assert specs_from_codes([0, 12]) == [0, 12]
    assert specs_from_codes([100]) == [{"merge": [0, 3, 6]}]
    assert specs_from_codes([101, 102, 103]) == [
        {"random": [9, 10, 11], "val": 11},
        {"random": [13, 14, 15], "val": 13},
        {"random": list(range(9, 16)), "val": 12},
    ]
    assert specs_from_codes([104, 110]) == [{"merge": list(range(9, 16))}, "blank"]
    assert specs_from_codes([108]) == [{"random": [0, 3, 6], "val": 0}]  # one plane (seed bug fixed)
    assert specs_from_codes([111], merge_dropout=0.3) == [{"merge": [0, 3, 6], "dropout": 0.3}]
    assert specs_from_codes([212, 311], dropout=0.2, merge_dropout=0.3) == [
        {"dropout": 0.2, "spec": 12},
        {"dropout": 0.2, "spec": {"merge": [0, 3, 6], "dropout": 0.0}},  # inner dropouts are 0
    ]


@pytest.mark.parametrize("code", [51, 99, 105, 109, 150])
def test_undefined_seed_codes_are_rejected(code):
    with pytest.raises(ConfigError, match=f"code {code} is not defined"):
        specs_from_codes([code])


def test_seed_codes_drive_a_strategy_on_16_page_stacks():
    strategy = ChannelStrategy(codes=[111, 12, 102], merge_dropout=0.3)
    image = np.stack([np.full((3, 3), k, dtype=np.uint16) for k in range(16)])
    out = strategy.bind(HYPERLABELED_CHANNELS).apply(
        image, identity, np.random.default_rng(1), training=False
    )
    assert out[:, 0, 0].tolist() == [
        pytest.approx(3.0),
        12.0,
        13.0,
    ]  # merge of pages 0, 3, 6; page 12; val 13


def test_prediction_mixing_reproduces_every_spec_outside_training():
    """Exporters run the strategy as a fixed linear map of the normalised planes: it must equal apply()."""
    specs = [
        "c",
        {"merge": ["a", "b", "a"]},
        {"random": ["b", "d"], "val": "d"},
        "blank",
        {"dropout": 0.9, "spec": "b"},
    ]
    bound = ChannelStrategy(specs=specs).bind(NAMES)
    used, mixing = bound.prediction_mixing()
    assert used == (0, 1, 2, 3)
    image = np.random.default_rng(0).random((len(NAMES), 6, 7)).astype(np.float32)
    mixed = np.einsum("ku,uhw->khw", mixing, image[list(used)])
    np.testing.assert_allclose(mixed, bound.apply(image, identity, training=False), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(mixing[1], [2 / 3, 1 / 3, 0, 0], rtol=1e-6)  # a listed twice counts twice


def test_prediction_mixing_reads_only_the_planes_used_and_refuses_leaked_draws():
    used, mixing = ChannelStrategy(specs=["d", "b"]).bind(NAMES).prediction_mixing()
    assert used == (1, 3)
    np.testing.assert_array_equal(mixing, [[0, 1], [1, 0]])
    with pytest.raises(ConfigError, match="leak_to_validation"):
        ChannelStrategy(specs=["a"], leak_to_validation=True).bind(NAMES).prediction_mixing()
