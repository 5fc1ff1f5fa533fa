"""Tests for the synthetic interaction log: its format, its determinism, and above all
that it carries a sequential signal a popularity baseline cannot exploit."""

import numpy as np
import pandas as pd
import pytest

from replay_accelerated.data.synthetic import generate_interactions
from replay_accelerated.errors import ConfigError

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
    return generate_interactions(**SMALL_LOG)


def test_same_seed_gives_identical_frame(log: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(log, generate_interactions(**SMALL_LOG))


def test_different_seed_gives_different_frame(log: pd.DataFrame) -> None:
    assert not log.equals(generate_interactions(**{**SMALL_LOG, "seed": 1}))


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
    lengths = generate_interactions(**arguments).groupby("user_id").size()
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
    log = generate_interactions(**arguments)
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
    ],
)
def test_impossible_arguments_raise_config_error(override: dict) -> None:
    with pytest.raises(ConfigError, match="dataset.generator"):
        generate_interactions(**{**SMALL_LOG, **override})
