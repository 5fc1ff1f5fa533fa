"""RePlay's own BERT4Rec and SASRec on our splits: recommendations our metric table can score."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from replay_accelerated.benchmark.replay_baseline import train_replay_baseline
from replay_accelerated.config import ModelParams, Preprocess, TrainingParams
from replay_accelerated.data.preprocessing import Splits, split_interactions
from replay_accelerated.data.synthetic import generate_interactions
from replay_accelerated.evaluation.offline import metric_table

KS = [1, 5, 10]
EPOCHS = 2


@pytest.fixture(scope="module")
def splits() -> Splits:
    log = generate_interactions(n_users=300, n_items=60, n_clusters=5, mean_length=15, min_length=5, max_length=40,
                                transition_prob=0.8, popularity_exponent=1.0, seed=0)
    return split_interactions(log, OmegaConf.structured(Preprocess(val_users_ratio=0.1)))


@pytest.mark.parametrize("model_name", ["bert4rec", "sasrec"])
def test_replay_baseline_recommends_unseen_known_items_to_test_users(splits: Splits, model_name: str):
    model_params = OmegaConf.structured(ModelParams(hidden_size=16, max_seq_len=20))
    training_params = OmegaConf.structured(TrainingParams(embedding_dim=16, batch_size=64, num_workers=0))

    result = train_replay_baseline(model_name, splits, model_params, training_params, KS, seed=0, max_epochs=EPOCHS)

    assert result["epochs_run"] == EPOCHS
    assert len(result["train_seconds_per_epoch"]) == EPOCHS
    assert all(seconds > 0 for seconds in result["train_seconds_per_epoch"])
    assert 0.0 <= result["best_validation_ndcg@10"] <= 1.0
    assert result["peak_memory_mb"] > 0

    assert [entry["epoch"] for entry in result["validation_history"]] == list(range(1, EPOCHS + 1))
    assert 0 < result["data_preparation_share"] < 1 and 0 <= result["padding_share"] < 1

    validation = result["recommendations"]["validation"]
    assert set(validation["user_id"]) == set(splits.validation_events["user_id"]) & set(splits.validation_gt["user_id"])
    recommendations = result["recommendations"]["test"]
    assert list(recommendations.columns) == ["user_id", "item_id", "score", "rank"]
    test_users = set(splits.test_events["user_id"]) & set(splits.test_gt["user_id"])
    assert set(recommendations["user_id"]) == test_users
    known_items = set(splits.train_events["item_id"]) | set(splits.validation_events["item_id"])
    assert set(recommendations["item_id"]) <= known_items
    per_user = recommendations.groupby("user_id")
    assert per_user.size().max() <= max(KS)
    assert (per_user["rank"].apply(lambda ranks: list(ranks) == list(range(1, len(ranks) + 1)))).all()
    assert (per_user["score"].apply(lambda scores: scores.is_monotonic_decreasing)).all()
    assert np.isfinite(recommendations["score"]).all()
    seen = recommendations.merge(splits.test_events[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
    assert seen.empty, f"{len(seen)} recommendations of items the user has already seen"

    table = metric_table(recommendations, splits.test_gt, splits.train_events, ["ndcg", "hitrate", "coverage"], KS)
    assert isinstance(table, pd.DataFrame) and list(table.columns) == KS
    assert table.notna().all().all()
    assert ((table >= 0) & (table <= 1)).all().all()
