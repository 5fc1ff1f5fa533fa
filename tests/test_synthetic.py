"""Tests for the synthetic interaction log: its format, its determinism, and above all
that it carries a sequential signal a popularity baseline cannot exploit."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from replay_accelerated.config import Generator
from replay_accelerated.data.synthetic import generate_interactions
from replay_accelerated.errors import ConfigError

from conftest import compose

# Small enough to generate in milliseconds, large enough for stable statistics.
SMALL_LOG = dict(
    n_users=2_000,
    n_items=300,
    n_clusters=10,
    mean_length=30,
    min_length=5,
    max_length=100,
    transition_prob=0.8,
    popularity_exponent=1.0,
    seed=0,
)


@pytest.fixture(scope="module")
def log() -> pd.DataFrame:
    return generate_interactions(Generator(**SMALL_LOG))


def test_same_seed_gives_identical_frame(log: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(log, generate_interactions(Generator(**SMALL_LOG)))


def test_different_seed_gives_different_frame(log: pd.DataFrame) -> None:
    assert not log.equals(generate_interactions(Generator(**{**SMALL_LOG, "seed": 1})))


def test_columns_dtypes_and_value_ranges(log: pd.DataFrame) -> None:
    assert list(log.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert list(log.dtypes) == [np.int64, np.int64, np.float32, np.int64]
    assert set(log["user_id"]) == set(range(1, SMALL_LOG["n_users"] + 1))
    assert log["item_id"].between(1, SMALL_LOG["n_items"]).all()
    assert set(log["rating"]) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # Most events must survive the usual "rating > 3" filter.
    assert 0.75 < (log["rating"] > 3).mean() < 0.85


def test_lengths_are_within_bounds(log: pd.DataFrame) -> None:
    lengths = log.groupby("user_id").size()
    assert lengths.min() >= SMALL_LOG["min_length"]
    assert lengths.max() <= SMALL_LOG["max_length"]


def test_mean_length_is_close_to_requested() -> None:
    # Many users and a max_length far in the tail, so neither noise nor clipping moves
    # the mean by more than a fraction of the tolerance.
    arguments = {**SMALL_LOG, "n_users": 20_000, "n_items": 1_000, "max_length": 300}
    lengths = generate_interactions(Generator(**arguments)).groupby("user_id").size()
    assert lengths.mean() == pytest.approx(arguments["mean_length"], rel=0.03)


def test_sorted_by_user_then_strictly_increasing_time(log: pd.DataFrame) -> None:
    assert log["user_id"].is_monotonic_increasing
    assert (log.groupby("user_id")["timestamp"].diff().dropna() > 0).all()


def test_users_never_repeat_an_item(log: pd.DataFrame) -> None:
    assert not log.duplicated(["user_id", "item_id"]).any()


def test_users_who_exhaust_the_catalogue_never_repeat_an_item() -> None:
    # Every user must consume all 8 items, which forces the last-resort draw among
    # unseen items once popularity redraws keep hitting seen ones.
    arguments = {**SMALL_LOG, "n_users": 50, "n_items": 8, "n_clusters": 2}
    arguments.update(mean_length=8, min_length=8, max_length=8)
    log = generate_interactions(Generator(**arguments))
    assert (log.groupby("user_id")["item_id"].nunique() == 8).all()


def test_global_time_split_cuts_through_many_histories(log: pd.DataFrame) -> None:
    cutoff = log["timestamp"].quantile(0.9)
    span = log.groupby("user_id")["timestamp"].agg(["min", "max"])
    crossing = (span["min"] < cutoff) & (span["max"] >= cutoff)
    assert crossing.mean() > 0.05


def test_previous_item_predicts_next_far_better_than_popularity(log: pd.DataFrame) -> None:
    """The reason the dataset exists: a sequence-aware oracle must beat popularity by 3x.

    Both predictors are fitted on the first 80% of users and asked for the last item of
    each remaining user. The oracle ranks items by how often they followed the user's
    second-to-last item; popularity ranks items by overall count.
    """
    k = 10
    log = log.assign(previous=log.groupby("user_id")["item_id"].shift())
    is_train = log["user_id"] <= 0.8 * SMALL_LOG["n_users"]
    train, test = log[is_train], log[~is_train]
    targets = test.groupby("user_id").tail(1)

    transitions = train.dropna(subset=["previous"]).value_counts(["previous", "item_id"]).reset_index()
    top_successors = transitions.sort_values(["previous", "count"], ascending=[True, False]).groupby("previous").head(k)
    oracle_hit_rate = len(targets.merge(top_successors, on=["previous", "item_id"])) / len(targets)

    most_popular = train["item_id"].value_counts().index[:k]
    popularity_hit_rate = targets["item_id"].isin(most_popular).mean()

    assert oracle_hit_rate >= 3 * popularity_hit_rate
    assert oracle_hit_rate > 0.5


@pytest.mark.parametrize(
    "override",
    [
        {"n_items": 30, "n_clusters": 10},  # clusters too small to hold 3 successors
        {"min_length": 40},  # above mean_length
        {"max_length": 400},  # longer than the catalogue
        {"transition_prob": 1.5},
        {"popularity_exponent": -1.0},
        {"length_distribution": "zipf"},
        {"length_distribution": "lognormal"},  # without median_length
        {"length_distribution": "lognormal", "median_length": 40},  # above mean_length
        {"length_distribution": "lognormal", "median_length": 5},  # not above min_length
        {"median_length": 20},  # geometric has no median parameter
    ],
)
def test_impossible_arguments_raise_config_error(override: dict) -> None:
    with pytest.raises(ConfigError, match="dataset.generator"):
        generate_interactions(Generator(**{**SMALL_LOG, **override}))


def test_explicit_geometric_default_gives_the_same_frame(log: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(log, generate_interactions(Generator(**SMALL_LOG, length_distribution="geometric")))


def _ml20m_generator(home: Path) -> dict:
    cfg = compose(home, "dataset=synthetic_ml20m", "model=bert4rec_synthetic_ml20m")
    return OmegaConf.to_container(cfg.dataset.generator)


def test_ml20m_preset_composes_with_movielens_20m_shape(home: Path) -> None:
    generator = _ml20m_generator(home)
    assert generator["length_distribution"] == "lognormal"
    assert 130_000 <= generator["n_users"] <= 140_000
    assert 17_000 <= generator["n_items"] <= 19_000
    # About 20 million events, the MovieLens-20M order of magnitude.
    assert 18e6 <= generator["n_users"] * generator["mean_length"] <= 22e6
    for model in ("bert4rec", "sasrec"):
        preset = compose(home, "dataset=synthetic_ml20m", f"model={model}_synthetic_ml20m").model
        reference = compose(home, "dataset=movielens_20m", f"model={model}_movielens_20m").model
        assert preset.save_name == f"{model}_synthetic_ml20m"
        assert OmegaConf.to_container(preset.params) == OmegaConf.to_container(reference.params)


@pytest.mark.parametrize("seed", [0, 1])
def test_ml20m_shape_has_a_long_tail_and_popularity_skew(home: Path, seed: int) -> None:
    """The preset's length and popularity parameters, on 2,000 users instead of 138,493."""
    arguments = {**_ml20m_generator(home), "n_users": 2_000, "seed": seed}
    log = generate_interactions(Generator(**arguments))
    lengths = log.groupby("user_id").size()
    assert lengths.min() >= arguments["min_length"]
    assert lengths.max() <= arguments["max_length"]
    # MovieLens-20M: median 68, mean 144, max in the thousands.
    assert lengths.median() == pytest.approx(arguments["median_length"], rel=0.1)
    assert lengths.mean() == pytest.approx(arguments["mean_length"], rel=0.2)
    assert lengths.mean() > 1.5 * lengths.median()
    assert lengths.max() > 15 * lengths.median()
    assert not log.duplicated(["user_id", "item_id"]).any()
    if seed == 0:
        pd.testing.assert_frame_equal(log, generate_interactions(Generator(**arguments)))
    # Popularity skew: the top 1% of items take a large share of events, far above 1%.
    counts = log["item_id"].value_counts()
    top = counts.iloc[: arguments["n_items"] // 100].sum()
    assert top / len(log) > 0.1


@pytest.mark.parametrize("arguments", [SMALL_LOG, {**SMALL_LOG, "n_users": 50, "n_items": 8, "n_clusters": 2,
                                                    "mean_length": 8, "min_length": 8, "max_length": 8}])
def test_catalogs_too_large_for_a_bit_set_give_the_same_log(monkeypatch, arguments: dict) -> None:
    # The set of (user, item) keys that large catalogs use instead of the bit set is the same rule:
    # the same frame for the same seed, the last-resort draw among unseen items included (second case).
    from replay_accelerated.data import synthetic

    expected = generate_interactions(Generator(**arguments))
    monkeypatch.setattr(synthetic, "BIT_SET_BYTES", 0)
    pd.testing.assert_frame_equal(generate_interactions(Generator(**arguments)), expected)
