"""The paired quality verdict: "worse" when the whole interval is below 0, "keeps" above -2%, else inconclusive."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import SHARED_DATA, compose
from replay_accelerated.benchmark.verdict import Verdict, paired_verdict
from replay_accelerated.modes.train import train


def hits(rate: float, n_users: int, seed: int) -> np.ndarray:
    return (np.random.default_rng(seed).random(n_users) < rate).astype(float)


def test_a_clearly_worse_variant_is_worse():
    reference = hits(0.30, 3000, seed=0)
    variant = reference * (np.random.default_rng(1).random(3000) < 0.8)  # loses 20% of the reference's hits
    verdict = paired_verdict(variant, reference)
    assert verdict.label == "worse"
    assert verdict.high < 0 and verdict.relative_difference == pytest.approx(-0.2, abs=0.03)


def test_a_variant_equal_on_almost_every_user_keeps_the_quality():
    reference = hits(0.30, 3000, seed=0)
    variant = reference.copy()
    variant[np.flatnonzero(reference == 0)[:5]] = 1.0  # a handful of extra hits, nothing lost
    verdict = paired_verdict(variant, reference)
    assert verdict.label == "keeps" and verdict.low > -0.02


def test_two_unrelated_models_on_few_users_are_inconclusive_with_the_half_width():
    verdict = paired_verdict(hits(0.3, 200, seed=2), hits(0.3, 200, seed=3))
    assert verdict.label.startswith("inconclusive (±") and verdict.low < -0.02 < 0 < verdict.high
    assert verdict.label == f"inconclusive (±{(verdict.high - verdict.low) / 2:.1%})"


def test_the_label_follows_the_interval_bounds():
    assert Verdict(-0.05, -0.08, -0.01).label == "worse"
    assert Verdict(0.0, -0.019, 0.02).label == "keeps"
    assert Verdict(-0.01, -0.03, 0.01).label == "inconclusive (±2.0%)"
    assert Verdict(-0.05, -0.08, -0.01).describe() == "worse, -5.0% [-8.0%, -1.0%]"


def test_per_user_values_must_be_paired():
    with pytest.raises(ValueError, match="same users"):
        paired_verdict(np.zeros(3), np.zeros(4))


ML_100K = SHARED_DATA / "ml-100k_ratings.parquet"
ML_100K_SASREC = [
    "dataset=local", f"dataset.path={ML_100K}", "dataset.preprocess.protocol=leave_one_out", "model=sasrec_local",
    "model.params.model_params.max_seq_len=50", "model.params.model_params.hidden_size=32",
    "model.params.training_params.embedding_dim=32", "model.params.training_params.batch_size=64",
    "model.params.training_params.num_workers=0", "metrics.types=[ndcg,hitrate]", "metrics.ks=[10]",
    "trainer.progress_bar=false",
]


@pytest.mark.skipif(not ML_100K.is_file(), reason="shared MovieLens-100K not present")
def test_on_movielens_an_untrained_model_is_worse_than_a_trained_one(tmp_path: Path):
    """Real data, the bench's per-user files: a model that barely moved from its initialisation loses."""

    def per_user(save_name: str, *overrides: str) -> pd.DataFrame:
        train(compose(tmp_path, *ML_100K_SASREC, f"model.save_name={save_name}", *overrides))
        return pd.read_parquet(tmp_path / "results" / save_name / "per_user_test.parquet").set_index("user_id")

    trained = per_user("trained", "model.params.training_params.max_epochs=6",
                       "model.params.training_params.learning_rate=0.005")
    untrained = per_user("untrained", "model.params.training_params.max_epochs=1",
                         "model.params.training_params.learning_rate=0.00001")
    assert list(trained.columns) == ["ndcg@10", "hitrate@10"] and trained.index.equals(untrained.index)
    assert len(trained) > 900  # leave-one-out: (almost) every user is a test user, those without hits count 0
    for metric in ("ndcg@10", "hitrate@10"):
        assert paired_verdict(untrained[metric], trained[metric]).label == "worse", metric
        better = paired_verdict(trained[metric], untrained[metric])
        assert better.label == "keeps" and better.relative_difference > 0.2, metric
