"""`mode=replay_comparison`: our model and RePlay's own, trained on the same split, side by side.

Trains our model exactly as `mode=train` does (all its outputs are written), then RePlay
0.22's `Bert4Rec` / `SasRec` with the same hyper-parameters on the same cached split,
scores both on the test users with replay-rec's metrics and writes
`paths.results_dir/<save_name>/replay_comparison.{json,md}`:
median train seconds per epoch (first epoch and validation excluded), epochs run,
best validation NDCG@10, test NDCG@10 and HitRate@10 with 95% bootstrap intervals
over test users, and our speed-up.
"""

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from replay_accelerated.benchmark.replay_baseline import train_replay_baseline
from replay_accelerated.data.prepare import prepare_data
from replay_accelerated.evaluation.offline import bootstrap_interval, metric_table, per_user_ndcg_and_hitrate
from replay_accelerated.training.measurements import median_epoch_seconds
from replay_accelerated.training.train import train


def compare_with_replay(cfg: DictConfig) -> pd.DataFrame:
    ours = train(cfg)
    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))  # from the cache `train` just wrote
    print(f"\nTraining RePlay's own {cfg.model.name} on the same split...")
    replay = train_replay_baseline(cfg.model.name, data.splits, cfg.model.params.model_params,
                                   cfg.model.params.training_params, list(cfg.metrics.ks), cfg.env.SEED)
    recommendations = replay["test_recommendations"]
    test = metric_table(recommendations, data.splits.test_gt, data.splits.train_events, ["ndcg", "hitrate"], [10])
    replay_metrics = {"ndcg@10": float(test.loc["ndcg", 10]), "hitrate@10": float(test.loc["hitrate", 10])}
    per_user = per_user_ndcg_and_hitrate(recommendations, data.splits.test_gt, k=10)
    replay_intervals = {name: bootstrap_interval(per_user[name].to_numpy()) for name in per_user}

    def row(name: str, run: dict, metrics: dict, intervals: dict) -> dict:
        return {
            "model": name,
            "median_train_seconds_per_epoch": round(median_epoch_seconds(run["train_seconds_per_epoch"]), 2),
            "epochs_run": run["epochs_run"],
            "best_validation_ndcg@10": round(run["best_validation_ndcg@10"], 4),
            **{f"test_{m}": round(metrics[m], 4) for m in ("ndcg@10", "hitrate@10")},
            **{f"test_{m}_95": [round(v, 4) for v in intervals[m]] for m in ("ndcg@10", "hitrate@10")},
        }

    table = pd.DataFrame([
        row(f"RePlay 0.22 {cfg.model.name}", replay, replay_metrics, replay_intervals),
        row(f"replay-accelerated {cfg.model.name}", ours, ours["test_metrics"], ours["test_bootstrap_95"]),
    ])
    table["speed_up"] = (table["median_train_seconds_per_epoch"].iloc[0] / table["median_train_seconds_per_epoch"]).round(2)
    results_dir = Path(cfg.paths.results_dir) / cfg.model.save_name
    (results_dir / "replay_comparison.json").write_text(json.dumps(
        {"rows": table.to_dict(orient="records"), "hardware": ours["hardware"], "data": ours["data"]}, indent=2))
    (results_dir / "replay_comparison.md").write_text(table.to_markdown(index=False) + "\n")
    print(f"\n{table.to_string(index=False)}\nWritten to {results_dir / 'replay_comparison.md'}")
    return table
