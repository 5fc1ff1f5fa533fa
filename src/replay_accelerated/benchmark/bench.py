"""`mode=bench`: train a list of variants one after another on the same data and compare them.

A variant is a set of config overrides on top of the command's own config, e.g.
`[acceleration=quantization]`. `mode.bench.variants` names them explicitly;
`mode.bench.pairwise` names options and their values, and every pair of values of
two different options is then covered by at least one generated variant (an all-pairs
design: far fewer runs than the full product, every two-way interaction still tried).

Each finished variant appends a row to `paths.results_dir/bench/<bench name>/results.csv`
(and rewrites `results.md`), so an interrupted bench keeps its rows and a rerun skips
the variants already there (delete a row to rerun that variant). The first configured
variant is the reference of the speed-up and NDCG-ratio columns.
"""

import itertools
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from replay_accelerated.training.measurements import median_epoch_seconds
from replay_accelerated.training.train import train

COLUMNS = [
    "variant", "model", "overrides", "epochs_run", "median_train_seconds_per_epoch", "train_samples_per_second",
    "best_validation_ndcg@10", "test_ndcg@10", "test_ndcg@10_low", "test_ndcg@10_high", "test_hitrate@10",
    "speed_up", "ndcg_ratio",
]


def pairwise_variants(options: dict[str, dict[str, list[str]]]) -> dict[str, list[str]]:
    """Greedy all-pairs cover: variants such that every value pair of two options appears in one.

    options: option name -> value name -> overrides, e.g. {"loss": {"CE": [...], "SCE": [...]}, ...}.
    """
    names = list(options)
    uncovered = {((a, va), (b, vb)) for a, b in itertools.combinations(names, 2)
                 for va in options[a] for vb in options[b]}
    variants = {}
    while uncovered:
        # Of all full combinations, take the one covering the most uncovered pairs (small option sets only).
        best = max(itertools.product(*(options[name] for name in names)),
                   key=lambda values: sum(((a, values[i]), (b, values[j])) in uncovered
                                          for (i, a), (j, b) in itertools.combinations(enumerate(names), 2)))
        chosen = dict(zip(names, best))
        uncovered -= {((a, chosen[a]), (b, chosen[b])) for a, b in itertools.combinations(names, 2)}
        name = ",".join(f"{option}={value}" for option, value in chosen.items())
        variants[name] = [override for option, value in chosen.items() for override in options[option][value]]
    return variants


def run_bench(cfg: DictConfig, compose_variant: Callable[[list[str]], DictConfig]) -> pd.DataFrame:
    """Train every variant; `compose_variant(overrides)` returns the validated config of one variant."""
    bench = cfg.mode.bench
    variants = {name: list(overrides) for name, overrides in bench.variants.items()}
    variants.update(pairwise_variants({option: {value: list(o) for value, o in values.items()}
                                       for option, values in bench.pairwise.items()}))
    out_dir = Path(cfg.paths.results_dir) / "bench" / bench.name
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = pd.read_csv(csv_path).to_dict(orient="records") if csv_path.is_file() else []
    done = {(row["variant"], row["overrides"]) for row in rows}

    for number, (name, overrides) in enumerate(variants.items(), start=1):
        if (name, json.dumps(overrides)) in done:
            print(f"[bench {number}/{len(variants)}] {name}: already in {csv_path}, skipped")
            continue
        print(f"\n[bench {number}/{len(variants)}] {name}: {' '.join(overrides) or '(no overrides)'}")
        variant_cfg = compose_variant([*overrides, f"model.save_name={cfg.model.save_name}_{bench.name}_{number}"])
        summary = train(variant_cfg)
        low, high = summary["test_bootstrap_95"]["ndcg@10"]
        rows.append({
            "variant": name,
            "model": summary["model"],
            "overrides": json.dumps(overrides),
            "epochs_run": summary["epochs_run"],
            "median_train_seconds_per_epoch": round(median_epoch_seconds(summary["train_seconds_per_epoch"]), 3),
            "train_samples_per_second": round(statistics.median(summary["train_samples_per_second"]), 1),
            "best_validation_ndcg@10": round(summary["best_validation_ndcg@10"], 4),
            "test_ndcg@10": round(summary["test_metrics"]["ndcg@10"], 4),
            "test_ndcg@10_low": round(low, 4),
            "test_ndcg@10_high": round(high, 4),
            "test_hitrate@10": round(summary["test_metrics"].get("hitrate@10", float("nan")), 4),
        })
        _write(rows, out_dir, list(variants))
    table = _write(rows, out_dir, list(variants))
    print(f"\n{table.to_string(index=False)}\nWritten to {out_dir}")
    return table


def _write(rows: list[dict], out_dir: Path, order: list[str]) -> pd.DataFrame:
    """Results so far in the configured variant order, with speed-up and NDCG ratio against the first one."""
    rank = {name: position for position, name in enumerate(order)}
    rows = sorted(rows, key=lambda row: rank.get(row["variant"], len(rank)))
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    reference = table.iloc[0]
    table["speed_up"] = (reference["median_train_seconds_per_epoch"] / table["median_train_seconds_per_epoch"]).round(2)
    table["ndcg_ratio"] = (table["test_ndcg@10"] / reference["test_ndcg@10"]).round(3)
    table.to_csv(out_dir / "results.csv", index=False)
    (out_dir / "results.md").write_text(table.drop(columns=["overrides"]).to_markdown(index=False) + "\n")
    return table
