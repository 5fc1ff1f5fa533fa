"""The evaluation report of a trained model: metric tables of the validation and test recommendations,
the popularity baseline, bootstrap intervals over users, and the files they are written to."""

from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from replay_accelerated.data.pipeline import PreparedData
from replay_accelerated.data.formats import USER
from replay_accelerated.evaluation.offline import (
    bootstrap_interval,
    metric_table,
    per_user_ndcg_and_hitrate,
    popularity_scores,
    recommend,
)


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
            per_user.rename_axis(USER).reset_index().to_parquet(results_dir / "per_user_test.parquet", index=False)
        summary[f"{split}_bootstrap_95"] = {name: bootstrap_interval(per_user[name].to_numpy()) for name in per_user}
        summary[f"{split}_popularity_ndcg@10"] = float(baseline.loc["ndcg", 10])
        print(f"\n{split} metrics ({len(users[split])} users):\n{table.round(4).to_string()}")
        low, high = summary[f"{split}_bootstrap_95"]["ndcg@10"]
        print(f"NDCG@10 95% bootstrap interval over users: [{low:.4f}, {high:.4f}]; "
              f"popularity baseline NDCG@10: {summary[f'{split}_popularity_ndcg@10']:.4f}")
    return summary
