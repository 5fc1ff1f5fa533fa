"""The evaluation report of a trained model: metric tables of the validation and test recommendations,
the popularity baseline, bootstrap intervals over users, and the files they are written to."""

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig

from replay_accelerated.data.pipeline import PreparedData
from replay_accelerated.data.formats import ITEM, USER
from replay_accelerated.evaluation.offline import (
    bootstrap_interval,
    metric_table,
    per_user_ndcg_and_hitrate,
    popularity_scores,
    recommend,
)

RARE_TARGET_EVENTS = 5  # a test target seen fewer times than this in training is rare: NDCG@10 on those alone


def write_report(recommendations: dict[str, pd.DataFrame], data: PreparedData, cfg: DictConfig,
             results_dir: Path) -> dict:
    """Full metric tables of each split's top-k `recommendations` and of the popularity baseline."""
    results_dir.mkdir(parents=True, exist_ok=True)
    types, ks = list(cfg.metrics.types), list(cfg.metrics.ks)
    width = cfg.model.params.model_params.max_seq_len
    popularity = popularity_scores(data.train.items, len(data.vocabulary))

    def popularity_next(history: torch.Tensor):
        return lambda start, stop: popularity[start:stop].expand(len(history), -1)

    users = {"validation": data.validation, "test": data.test}
    truths = {"validation": data.splits.validation_gt, "test": data.splits.test_gt}
    summary = {}
    for split, top_k in recommendations.items():
        truth = truths[split]
        table = metric_table(top_k, truth, data.splits.train_events, types, ks)
        table.to_csv(results_dir / f"metrics_{split}.csv")
        top_k.to_parquet(results_dir / f"recommendations_{split}.parquet", index=False)
        popular = recommend(popularity_next, users[split], data.vocabulary, max(ks), width)
        baseline = metric_table(popular, truth, data.splits.train_events, ["ndcg", "hitrate"], [10])
        summary[f"{split}_metrics"] = {f"{name}@{k}": float(table.loc[name, k]) for name in types for k in ks}
        per_user = per_user_ndcg_and_hitrate(top_k, truth, k=10)
        if split == "test":
            rare = rare_target_ndcg(top_k, truth, data)
            summary["test_rare_target_ndcg@10"] = float(rare.mean()) if len(rare) else float("nan")
            summary["test_rare_target_users"] = len(rare)
            per_user[rare.name] = rare.reindex(per_user.index)  # NaN: a user without a rare target
            per_user.rename_axis(USER).reset_index().to_parquet(results_dir / "per_user_test.parquet", index=False)
            per_user = per_user.drop(columns=rare.name)
        summary[f"{split}_bootstrap_95"] = {name: bootstrap_interval(per_user[name].to_numpy()) for name in per_user}
        summary[f"{split}_popularity_ndcg@10"] = float(baseline.loc["ndcg", 10])
        print(f"\n{split} metrics ({len(users[split])} users):\n{table.round(4).to_string()}")
        low, high = summary[f"{split}_bootstrap_95"]["ndcg@10"]
        print(f"NDCG@10 95% bootstrap interval over users: [{low:.4f}, {high:.4f}]; "
              f"popularity baseline NDCG@10: {summary[f'{split}_popularity_ndcg@10']:.4f}")
    return summary


def rare_target_ndcg(top_k: pd.DataFrame, truth: pd.DataFrame, data: PreparedData) -> pd.Series:
    """NDCG@10 of each test user with a ground-truth item seen fewer than RARE_TARGET_EVENTS times in training,
    against those items alone (`rare_target_ndcg@10`): how well a model ranks what it has barely seen (item
    features should help there)."""
    counts = np.bincount(data.train.items, minlength=len(data.vocabulary))
    index = data.vocabulary.encode(truth[ITEM])
    seen = np.where(index >= 0, counts[np.maximum(index, 0)], 0)
    rare = per_user_ndcg_and_hitrate(top_k, truth[seen < RARE_TARGET_EVENTS], k=10)["ndcg@10"]
    return rare.rename("rare_target_ndcg@10")
