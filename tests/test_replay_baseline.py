"""RePlay's own BERT4Rec and SASRec on our splits: recommendations our metric table can score,
with the loss and precision they are configured with."""

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import compose
from replay_accelerated.training import replay_baseline
from replay_accelerated.training.replay_baseline import train_replay_baseline
from replay_accelerated.config import Generator, ModelParams, Preprocess, Trainer, TrainingParams
from replay_accelerated.data.split import Splits, split_interactions
from replay_accelerated.data.synthetic import generate_interactions
from replay_accelerated.errors import ConfigError
from replay_accelerated.evaluation.offline import metric_table

KS = [1, 5, 10]
EPOCHS = 2


@pytest.fixture(scope="module")
def splits() -> Splits:
    log = generate_interactions(Generator(n_users=300, n_items=60, n_clusters=5, mean_length=15, min_length=5,
                                          max_length=40, transition_prob=0.8, popularity_exponent=1.0, seed=0))
    return split_interactions(log, OmegaConf.structured(Preprocess(val_users_ratio=0.1)))


@pytest.mark.parametrize("model_name", ["bert4rec", "sasrec"])
def test_replay_baseline_recommends_unseen_known_items_to_test_users(splits: Splits, model_name: str):
    model_params = OmegaConf.structured(ModelParams(hidden_size=16, max_seq_len=20))
    training_params = OmegaConf.structured(TrainingParams(embedding_dim=16, batch_size=64, num_workers=0,
                                                          precision="32-true"))

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


@pytest.mark.parametrize(("model_name", "loss", "replay_loss", "precision"), [
    ("bert4rec", dict(loss_type="CE_restricted"), dict(loss_type="CE_restricted", loss_sample_count=None),
     "bf16-mixed"),
    ("sasrec", dict(loss_type="BCE", loss_sample_count=20), dict(loss_type="BCE", loss_sample_count=20), "32-true"),
    ("sasrec", dict(loss_type="CE_sampled", loss_sample_count=20), dict(loss_type="CE", loss_sample_count=20),
     "bf16-mixed"),
])
def test_replay_baseline_trains_and_predicts_with_the_configured_loss_and_precision(
        splits: Splits, monkeypatch, model_name: str, loss: dict, replay_loss: dict, precision: str):
    seen = {"module": [], "trainer": []}
    module_class, *datasets = replay_baseline.REPLAY_MODELS[model_name]

    class Recording(module_class):
        def __init__(self, **kwargs):
            seen["module"].append(kwargs)
            super().__init__(**kwargs)

    def trainer(**kwargs):
        seen["trainer"].append(kwargs)
        return real_trainer(**kwargs)

    real_trainer = replay_baseline.L.Trainer
    monkeypatch.setitem(replay_baseline.REPLAY_MODELS, model_name, (Recording, *datasets))
    monkeypatch.setattr(replay_baseline.L, "Trainer", trainer)
    model_params = OmegaConf.structured(ModelParams(hidden_size=16, max_seq_len=20, **loss))
    training_params = OmegaConf.structured(TrainingParams(embedding_dim=16, batch_size=64, num_workers=0,
                                                          precision=precision))
    trainer_params = OmegaConf.structured(Trainer(accelerator="cpu"))

    result = train_replay_baseline(model_name, splits, model_params, training_params, KS, seed=0, max_epochs=1,
                                   trainer=trainer_params)

    assert {key: seen["module"][0][key] for key in replay_loss} == replay_loss
    assert [(t["precision"], t["accelerator"], t["devices"]) for t in seen["trainer"]] == [(precision, "cpu", 1)] * 3
    shapes = result["epoch_shapes"]  # only the targets' positions are scored, padding included in tokens
    assert shapes["tokens"] == len(set(splits.train_events["user_id"])) * 20
    # (RePlay's SASRec also scores the first item from the padding position before it: up to one more per user.)
    assert 0 < shapes["real_tokens"] < shapes["tokens"] and 0 < shapes["targets"] < shapes["tokens"]
    assert not result["recommendations"]["test"].empty


def test_replay_full_ce_scores_every_position(splits: Splits):
    model_params = OmegaConf.structured(ModelParams(hidden_size=16, max_seq_len=20))
    training_params = OmegaConf.structured(TrainingParams(embedding_dim=16, batch_size=64, num_workers=0,
                                                          precision="32-true"))
    shapes = train_replay_baseline("bert4rec", splits, model_params, training_params, KS, seed=0,
                                   max_epochs=1)["epoch_shapes"]
    assert shapes["targets"] == shapes["tokens"]  # RePlay's CE computes the catalog's logits at every position


@pytest.mark.parametrize(("overrides", "key"), [
    (["model.params.model_params.loss_type=CCE"], "model.params.model_params.loss_type"),
    (["model=sasrec_synthetic", "model.params.model_params.loss_type=CE_restricted"],
     "model.params.model_params.loss_type"),
    (["model.params.model_params.loss_type=BCE"], "model.params.model_params.loss_sample_count"),
    (["model.params.training_params.precision=16-mixed"], "model.params.training_params.precision"),
    (["model.params.training_params.length_bucketing=true"], "model.params.training_params.length_bucketing"),
    (["model.params.model_params.masking=at_least_one"], "model.params.model_params.masking"),
    (["acceleration=act_fn"], "acceleration.model.acceleration_config.transformer_block"),
    (["acceleration=tied_head"], "acceleration.model.acceleration_config.tied_head"),
    (["trainer.strategy=ddp"], "trainer.strategy"),
    (["trainer.devices=2"], "trainer.devices"),
])
def test_what_replay_cannot_honour_is_a_config_error_naming_the_key(tmp_path, overrides: list[str], key: str):
    with pytest.raises(ConfigError, match=f"config key '{key}'"):
        compose(tmp_path, "model.implementation=replay", *overrides)


def test_replay_accepts_its_supported_settings(tmp_path):
    cfg = compose(tmp_path, "model.implementation=replay", "model.params.model_params.loss_type=CE_restricted",
                  "model.params.training_params.precision=bf16-mixed", "acceleration=none", "trainer.devices=1")
    assert cfg.model.params.model_params.loss_type == "CE_restricted"


def test_replay_nn_baseline_trains_and_recommends_unseen_known_items(splits: Splits):
    """RePlay's newer API (replay.nn's SasRec through ParquetModule) returns what the deprecated one does."""
    model_params = OmegaConf.structured(ModelParams(hidden_size=16, max_seq_len=20))
    training_params = OmegaConf.structured(TrainingParams(embedding_dim=16, batch_size=64, num_workers=0,
                                                          precision="32-true"))

    result = train_replay_baseline("sasrec", splits, model_params, training_params, KS, seed=0, max_epochs=1,
                                   implementation="replay_nn")

    assert {"best_validation_ndcg@10", "epochs_run", "train_seconds_per_epoch", "train_samples_per_second",
            "validation_history", "peak_memory_mb", "training_memory_mb", "data_preparation_share", "padding_share",
            "epoch_shapes", "recommendations"} <= set(result)
    assert result["epochs_run"] == 1 and [entry["epoch"] for entry in result["validation_history"]] == [1]
    assert result["validation_history"][0]["ndcg@10"] == result["best_validation_ndcg@10"]
    assert 0.0 < result["best_validation_ndcg@10"] <= 1.0
    train_users = splits.train_events["user_id"].nunique()
    assert result["train_samples_per_second"][0] == pytest.approx(train_users / result["train_seconds_per_epoch"][0],
                                                                   rel=0.02)
    shapes = result["epoch_shapes"]  # padded to max_seq_len, the full CE scoring every position
    assert shapes["tokens"] == shapes["targets"] == train_users * 20 and 0 < shapes["real_tokens"] < shapes["tokens"]

    for split, events, ground_truth in (("validation", splits.validation_events, splits.validation_gt),
                                        ("test", splits.test_events, splits.test_gt)):
        recommendations = result["recommendations"][split]
        assert list(recommendations.columns) == ["user_id", "item_id", "score", "rank"]
        assert set(recommendations["user_id"]) == set(events["user_id"]) & set(ground_truth["user_id"])
        assert set(recommendations["item_id"]) <= set(splits.train_events["item_id"]) | set(
            splits.validation_events["item_id"])
        assert (recommendations.groupby("user_id")["rank"].max() == max(KS)).all()
        assert np.isfinite(recommendations["score"]).all()
        seen = recommendations.merge(events[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"])
        assert seen.empty, f"{len(seen)} {split} recommendations of items the user has already seen"
    table = metric_table(result["recommendations"]["test"], splits.test_gt, splits.train_events, ["ndcg"], KS)
    assert ((table >= 0) & (table <= 1)).all().all()


def test_replay_nn_rows_are_sasrec_only_and_described_apart(tmp_path):
    from replay_accelerated.benchmarks.rows import describe_acceleration
    from replay_accelerated.modes.bench import missing_replay_model

    with pytest.raises(ConfigError, match="config key 'model.implementation'.*no bert4rec"):
        compose(tmp_path, "model=bert4rec", "model.implementation=replay_nn")
    with pytest.raises(ConfigError, match="config key 'model.params.model_params.loss_type'"):
        compose(tmp_path, "model=sasrec", "model.implementation=replay_nn", "model.params.model_params.loss_type=CCE")
    cfg = compose(tmp_path, "model=sasrec", "model.implementation=replay_nn", "acceleration=none",
                  "model.params.training_params.precision=bf16-mixed")
    assert cfg.model.implementation == "replay_nn"
    assert describe_acceleration({"model": {"implementation": "replay_nn"}}) == "RePlay 0.22 replay.nn"
    # A bench of both models keeps the rows, skipped on BERT4Rec (mode/bench.yaml).
    overrides = ["model.implementation=replay_nn", "model.params.model_params.loss_type=CE"]
    assert "has no bert4rec" in missing_replay_model(overrides, "bert4rec")
    assert missing_replay_model(overrides, "sasrec") is None
    assert missing_replay_model(["model.implementation=replay"], "bert4rec") is None
