"""`mode=bench`: train a matrix of variants one after another on the same data and compare them.

A variant is a set of config overrides on top of the command's own config, e.g.
`[acceleration=quantization]` or `[model.implementation=replay]` (RePlay 0.22's own model,
the baseline). `mode.bench.variants` names them explicitly; `mode.bench.pairwise` names
options and their values, and every pair of values of two different options is then
covered by at least one generated variant (an all-pairs design). `mode.bench.common` is
added to every variant (the quick mode uses it for few epochs); `mode.bench.only` runs
a subset, e.g. `mode.bench.only=[replay_CE_fp32,fastest]`.

Every variant's config is validated before the first one starts. Each variant then runs
as its own `mode=train` process, so that its peak memory (process peak RSS on a CPU, CUDA
max allocated on a GPU) is its own, and reads back that run's `run.json`.

Outputs in `paths.results_dir/bench/<bench name>/`:
- `results.csv`: one row per finished variant, appended as soon as it finishes, so an
  interrupted bench keeps its rows and a rerun skips them (delete a row to rerun it);
- `results.md`: hardware, data and the table; `results.png`: speed-up against test
  NDCG@10 (95% bootstrap interval over test users), one labelled point per variant.
The first configured variant is the reference of the ratio columns and of time to target
(wall seconds of training and validation until validation NDCG@10 first reaches the
reference's best).
"""

import dataclasses
import itertools
import json
import re
import statistics
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from replay_accelerated.config import AccelerationConfig, ConfigOrigin
from replay_accelerated.errors import ConfigError, UserError
from replay_accelerated.training.measurements import median_after_first_epoch

QUALITY_SHARE = 0.98  # a variant keeps the quality when its test NDCG@10 is >= 98% of the reference's...
# ...or the reference's test NDCG@10 lies inside the variant's 95% interval.

TABLE_COLUMNS = [
    "model", "variant", "implementation", "precision", "loss", "acceleration", "hardware", "epochs_run",
    "median_train_seconds_per_epoch", "median_validation_seconds", "train_samples_per_second",
    "data_preparation_share", "padding_share",
    "peak_memory_mb", "validation_ndcg@10", "validation_hitrate@10",
    "test_ndcg@10", "test_ndcg@10_low", "test_ndcg@10_high",
    "test_hitrate@10", "test_hitrate@10_low", "test_hitrate@10_high",
    "time_to_target_seconds", "speed_up", "memory_ratio", "ndcg_ratio", "keeps_quality",
]
COLUMNS = [*TABLE_COLUMNS, "overrides", "validation_history"]  # the last two only in the CSV


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


def bench_variants(bench) -> dict[str, list[str]]:
    """Variant name -> its overrides (common ones first), in the configured order."""
    variants = {name: list(overrides) for name, overrides in bench.variants.items()}
    variants.update(pairwise_variants({option: {value: list(o) for value, o in values.items()}
                                       for option, values in bench.pairwise.items()}))
    unknown = [name for name in bench.only if name not in variants]
    if unknown:
        raise ConfigError(f"config key 'mode.bench.only' names {unknown}, which are not variants of bench "
                          f"'{bench.name}'; choose from {list(variants)}")
    return {name: [*bench.common, *overrides] for name, overrides in variants.items()
            if not bench.only or name in bench.only}


def run_bench(cfg: DictConfig, origin: ConfigOrigin, compose_variant: Callable[[list[str]], DictConfig]) -> pd.DataFrame:
    """Train every variant in its own process; `compose_variant(overrides)` validates one variant's config."""
    bench = cfg.mode.bench
    variants = bench_variants(bench)
    for overrides in variants.values():  # config mistakes surface now, not hours into the bench
        compose_variant(overrides)
    out_dir = Path(cfg.paths.results_dir) / "bench" / bench.name
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = pd.read_csv(csv_path).to_dict(orient="records") if csv_path.is_file() else []
    done = {(row["variant"], row["overrides"]) for row in rows}

    failed = []
    for number, (name, overrides) in enumerate(variants.items(), start=1):
        if (name, json.dumps(overrides)) in done:
            print(f"[bench {number}/{len(variants)}] {name}: already in {csv_path}, skipped")
            continue
        print(f"\n[bench {number}/{len(variants)}] {name}: {' '.join(overrides) or '(no overrides)'}", flush=True)
        save_name = f"{cfg.model.save_name}_{bench.name}_{re.sub(r'[^A-Za-z0-9]+', '_', name)}"
        command = [sys.executable, "-m", "replay_accelerated", "--config-name", origin.config_name,
                   *origin.run_overrides(), "mode=train", *overrides, f"model.save_name={save_name}"]
        print(f"  replay-accelerated {' '.join(command[3:])}", flush=True)
        if subprocess.run(command).returncode != 0:
            print(f"[bench {number}/{len(variants)}] {name} failed; its output is above")
            failed.append(name)
            continue
        run = json.loads((Path(cfg.paths.results_dir) / save_name / "run.json").read_text())
        rows.append(variant_row(name, overrides, run))
        table = write_results(rows, out_dir, list(variants))
        finished = table[table["variant"] == name].iloc[0]
        print(f"[bench {number}/{len(variants)}] {name}: {finished['median_train_seconds_per_epoch']} s/epoch, "
              f"test NDCG@10 {finished['test_ndcg@10']}, {finished['speed_up']}x the reference", flush=True)
    if not rows:
        raise UserError(f"no variant of bench '{bench.name}' finished; see the errors above")
    table = write_results(rows, out_dir, list(variants))
    print(f"\n{table[TABLE_COLUMNS].to_string(index=False)}\nWritten to {out_dir}")
    if failed:
        raise UserError(f"variants {failed} of bench '{bench.name}' failed (their output is above); the other rows "
                        f"are in {csv_path}; rerun the same command to retry only the failed ones")
    return table


def variant_row(name: str, overrides: list[str], run: dict) -> dict:
    """One table row from a training run's run.json."""
    config = run["config"]
    training = config["model"]["params"]["training_params"]
    test, test_ci = run["test_metrics"], run["test_bootstrap_95"]
    return {
        "model": run["model"],
        "variant": name,
        "implementation": run["implementation"],
        "precision": training["precision"] or "32-true",
        "loss": config["model"]["params"]["model_params"]["loss_type"],
        "acceleration": describe_acceleration(config),
        "hardware": describe_hardware(run["hardware"]),
        "epochs_run": run["epochs_run"],
        "median_train_seconds_per_epoch": round(median_after_first_epoch(run["train_seconds_per_epoch"]), 3),
        "median_validation_seconds": round(statistics.median(
            entry["validation_seconds"] for entry in run["validation_history"]), 3),
        "train_samples_per_second": round(median_after_first_epoch(run["train_samples_per_second"]), 1),
        "data_preparation_share": run["data_preparation_share"],
        "padding_share": run["padding_share"],
        "peak_memory_mb": run["peak_memory_mb"],
        "validation_ndcg@10": round(run["validation_metrics"]["ndcg@10"], 4),
        "validation_hitrate@10": round(run["validation_metrics"]["hitrate@10"], 4),
        **{f"test_{metric}": round(test[metric], 4) for metric in ("ndcg@10", "hitrate@10")},
        **{f"test_{metric}_{side}": round(test_ci[metric][index], 4)
           for metric in ("ndcg@10", "hitrate@10") for index, side in enumerate(("low", "high"))},
        "overrides": json.dumps(overrides),
        "validation_history": json.dumps(run["validation_history"]),
    }


def describe_acceleration(config: dict) -> str:
    """What differs from the plain model, e.g. "act_fn=selu, head=swichback_head, length_bucketing"."""
    if config["model"]["implementation"] == "replay":
        return "RePlay 0.22"
    parts = []
    settings = (config["acceleration"] or {}).get("model", {}).get("acceleration_config", {})
    defaults = dataclasses.asdict(AccelerationConfig())
    default_act_fn = defaults.pop("transformer_block")["pff_block"]["act_fn"]
    act_fn = settings.get("transformer_block", {}).get("pff_block", {}).get("act_fn", default_act_fn)
    if act_fn != default_act_fn:
        parts.append(f"act_fn={act_fn}")
    parts += [key if value is True else f"{key}={value}" for key, value in settings.items()
              if key in defaults and value != defaults[key]]
    if config["model"]["params"]["training_params"]["length_bucketing"]:
        parts.append("length_bucketing")
    return ", ".join(parts) or "none"


def describe_hardware(hardware: dict) -> str:
    return hardware["gpu"] or f"{hardware['cpu']} ({hardware['cpu_threads']} threads)"


def time_to_target(history: list[dict], target: float) -> float | str:
    """Wall seconds until validation NDCG@10 first reached `target`, or "not reached"."""
    for entry in history:
        if entry.get("ndcg@10", float("-inf")) >= target:
            return entry["elapsed_seconds"]
    return "not reached"


def write_results(rows: list[dict], out_dir: Path, order: list[str]) -> pd.DataFrame:
    """Results so far in the configured variant order, with the columns relative to the first one."""
    rank = {name: position for position, name in enumerate(order)}
    rows = sorted(rows, key=lambda row: rank.get(row["variant"], len(rank)))
    table = pd.DataFrame(rows).reindex(columns=COLUMNS)
    reference = table.iloc[0]
    target = json.loads(reference["validation_history"])
    best_reference = max(entry["ndcg@10"] for entry in target) if target else float("inf")
    table["time_to_target_seconds"] = [time_to_target(json.loads(history), best_reference)
                                       for history in table["validation_history"]]
    table["speed_up"] = (reference["median_train_seconds_per_epoch"] / table["median_train_seconds_per_epoch"]).round(2)
    table["memory_ratio"] = (table["peak_memory_mb"] / reference["peak_memory_mb"]).round(2)
    table["ndcg_ratio"] = (table["test_ndcg@10"] / reference["test_ndcg@10"]).round(3)
    table["keeps_quality"] = (table["ndcg_ratio"] >= QUALITY_SHARE) | (
        (table["test_ndcg@10_low"] <= reference["test_ndcg@10"]) & (reference["test_ndcg@10"] <= table["test_ndcg@10_high"]))
    table.to_csv(out_dir / "results.csv", index=False)
    hardware = ", ".join(sorted(set(table["hardware"])))
    header = (f"# Bench `{out_dir.name}`\n\nHardware: {hardware}. Reference row: `{reference['variant']}`. "
              "Epoch seconds are medians over epochs after the first, without validation; "
              f"keeps_quality: test NDCG@10 >= {QUALITY_SHARE:.0%} of the reference's, or the reference "
              "inside the variant's 95% bootstrap interval.\n\n")
    (out_dir / "results.md").write_text(header + table[TABLE_COLUMNS].drop(columns=["hardware"])
                                        .to_markdown(index=False) + "\n")
    plot(table, out_dir / "results.png", f"{reference['model']}: {hardware}")
    return table


def plot(table: pd.DataFrame, path: Path, title: str) -> None:
    """Speed-up over the reference (x) against test NDCG@10 with its 95% interval (y), one point per variant."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    ndcg = table["test_ndcg@10"]
    errors = [(ndcg - table["test_ndcg@10_low"]).to_numpy(), (table["test_ndcg@10_high"] - ndcg).to_numpy()]
    axes.errorbar(table["speed_up"].to_numpy(), ndcg.to_numpy(), yerr=errors, fmt="o", capsize=3)
    for _, row in table.iterrows():
        axes.annotate(row["variant"], (row["speed_up"], row["test_ndcg@10"]), textcoords="offset points",
                      xytext=(5, 5), fontsize=8)
    reference = table.iloc[0]["test_ndcg@10"]
    axes.axhline(reference, color="gray", linestyle="--", linewidth=0.8, label=f"reference ({table.iloc[0]['variant']})")
    axes.axhline(QUALITY_SHARE * reference, color="gray", linestyle=":", linewidth=0.8,
                 label=f"{QUALITY_SHARE:.0%} of the reference")
    axes.axvline(1.0, color="gray", linewidth=0.5)
    axes.set_xlabel("speed-up over the reference (median train seconds per epoch)")
    axes.set_ylabel("test NDCG@10 (95% bootstrap interval)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
