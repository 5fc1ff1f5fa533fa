"""A bench's per-variant table: seeds aggregated, ratios and quality verdicts against the reference rows.

Two references: `replay_best` (RePlay's best on this machine, the headline) and `replay_default`
(RePlay as configured by default). Without a `replay_best` row the first finished variant is the
headline reference; without a `replay_default` row those columns stay empty. A verdict needs each row's seeds
scored on the same test users (verdict.py resamples seeds and users); rows of other test users get none.
"""

import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd

from replay_accelerated.benchmarks.render import markdown, plot
from replay_accelerated.benchmarks.verdict import QUALITY_SHARE, paired_verdict

REFERENCES = {"best": "replay_best", "default": "replay_default",
              # RePlay's newer replay.nn API (SASRec only): its own pair, columns `_vs_nn_best` and `_vs_nn_default`,
              # empty without those rows
              "nn_best": "replay_nn_best", "nn_default": "replay_nn_default"}
METRICS = ("ndcg@10", "hitrate@10")  # the paired verdicts of every variant
# NDCG@10 on the test users whose target was seen fewer than 5 times in training (evaluation/report.py): its
# own verdict against the headline reference, not part of keeps_quality.
RARE = "rare_target_ndcg@10"
TABLE_COLUMNS = [
    "variant", "seeds", "precision", "loss", "acceleration", "epochs_run", "timed_steps",
    "median_train_seconds_per_epoch", "epoch_seconds_extrapolated", "epoch_seconds_per_seed", "step_seconds",
    "train_tokens_per_second", "speed_up_vs_best", "speed_up_vs_default", "speed_up_vs_nn_best",
    "speed_up_vs_nn_default",
    "peak_memory_mb", "training_memory_mb", "memory_ratio_vs_best", "memory_ratio_vs_default",
    "memory_ratio_vs_nn_best", "memory_ratio_vs_nn_default", "mfu",
    "useful_token_share",
    "data_preparation_share", "median_validation_seconds",
    "test_ndcg@10", "test_ndcg@10_per_seed", "test_hitrate@10", "test_rare_target_ndcg@10", "ndcg_ratio",
    "ndcg@10_vs_best", "rare_target_ndcg@10_vs_best", "hitrate@10_vs_best", "ndcg@10_vs_default", "hitrate@10_vs_default",
    "ndcg@10_vs_nn_best", "hitrate@10_vs_nn_best", "ndcg@10_vs_nn_default", "hitrate@10_vs_nn_default",
    "time_to_target_seconds", "keeps_quality", "status",
]


def summarize(rows: list[dict], out_dir: Path, context: dict) -> pd.DataFrame:
    """Write summary.csv, results.md and results.png from the per-seed `rows`; returns the table."""
    frame = pd.DataFrame(rows)
    order = [name for name in context["order"] if name in set(frame["variant"])]
    order += [name for name in dict.fromkeys(frame["variant"]) if name not in order]  # rows of earlier configs
    runs = {name: frame[frame["variant"] == name] for name in order}
    references = {role: name if name in runs else None for role, name in REFERENCES.items()}
    references["best"] = references["best"] or order[0]
    trained = [name for name in order if not _extrapolated(runs[name])]  # the others ran in the steps mode
    per_user = {name: _per_user(name, runs[name]) for name in trained}

    table = []
    for name in order:
        seeds = runs[name]
        row = {
            "variant": name,
            "seeds": len(seeds),
            **{key: seeds.iloc[0][key] for key in ("precision", "loss", "acceleration", "epoch_seconds_extrapolated")},
            # Speed: the median over seeds of each run's median epoch (or of the epoch its steps extrapolate to).
            "median_train_seconds_per_epoch": round(seeds["median_train_seconds_per_epoch"].median(), 3),
            "epoch_seconds_per_seed": _per_seed(seeds["median_train_seconds_per_epoch"]),
            "train_tokens_per_second": round(seeds["train_tokens_per_second"].median(), 1),
            "peak_memory_mb": round(seeds["peak_memory_mb"].median(), 1),
            "training_memory_mb": round(seeds["training_memory_mb"].median(), 1),
            "mfu": round(seeds["mfu"].median(), 4),
            "useful_token_share": round(seeds["useful_token_share"].mean(), 4),
            "status": context["status"].get(name, "ok"),
        }
        for role, reference in references.items():
            if reference is not None:
                ref = runs[reference]
                row[f"speed_up_vs_{role}"] = round(ref["median_train_seconds_per_epoch"].median()
                                                   / row["median_train_seconds_per_epoch"], 2)
                row[f"memory_ratio_vs_{role}"] = round(row["training_memory_mb"]
                                                       / ref["training_memory_mb"].median(), 2)
        if name not in trained:  # the steps mode: speed and memory only
            row.update(timed_steps=int(seeds["timed_steps"].iloc[0]), step_seconds=seeds["step_seconds"].median())
        else:
            row.update(_quality(name, seeds, runs, references, per_user))
        table.append(row)
    table += [{"variant": name, "status": status} for name, status in context["status"].items() if name not in runs]
    table = pd.DataFrame(table)
    differences = table.pop("_ndcg_difference") if "_ndcg_difference" in table else None
    table = table.reindex(columns=TABLE_COLUMNS)
    table.to_csv(out_dir / "summary.csv", index=False)
    (out_dir / "results.md").write_text(markdown(table, frame, references, context))
    plot(table, differences, out_dir / "results.png", f"{frame.iloc[0]['model']}: {context['machine']}",
         references["best"])
    return table


def _quality(name: str, seeds: pd.DataFrame, runs: dict[str, pd.DataFrame], references: dict,
             per_user: dict[str, list[tuple[str, pd.DataFrame]]]) -> dict:
    """A trained variant's quality columns: means over seeds, paired verdicts against the references."""
    row = {
        "epochs_run": round(seeds["epochs_run"].mean(), 1),
        "data_preparation_share": round(seeds["data_preparation_share"].mean(), 4),
        "median_validation_seconds": round(seeds["median_validation_seconds"].median(), 3),
        "test_ndcg@10": round(seeds["test_ndcg@10"].mean(), 4),
        "test_ndcg@10_per_seed": _per_seed(seeds["test_ndcg@10"]),
        "test_hitrate@10": round(seeds["test_hitrate@10"].mean(), 4),
        "test_rare_target_ndcg@10": round(seeds["test_rare_target_ndcg@10"].mean(), 4)
        if "test_rare_target_ndcg@10" in seeds else math.nan,
    }
    against_best = []  # the verdicts against the headline reference, None where none could be given
    for role, reference in references.items():
        if reference is None or reference not in per_user:
            continue
        if name == reference:
            row.update({f"{metric}_vs_{role}": "reference" for metric in (*METRICS, RARE)})
            continue
        refusal = _different_users(per_user[name] + per_user[reference])
        for metric in METRICS:
            verdict = None if refusal else paired_verdict(_seed_matrix(per_user[name], metric),
                                                          _seed_matrix(per_user[reference], metric))
            row[f"{metric}_vs_{role}"] = refusal or verdict.describe()
            if role == "best":
                against_best.append(verdict)
                if metric == "ndcg@10" and verdict is not None:  # the plot's point (and interval, if any)
                    row["_ndcg_difference"] = (verdict.relative_difference, verdict.low, verdict.high)
        if role == "best" and not refusal:
            row[f"{RARE}_vs_best"] = _rare_target_verdict(per_user[name], per_user[reference])
    best = runs[references["best"]]
    if references["best"] in per_user:
        row["ndcg_ratio"] = round(row["test_ndcg@10"] / best["test_ndcg@10"].mean(), 3)
        # Keeping quality is a claim about the interval: without one (too few seeds, other test users) it stays
        # empty, rather than read from a mean ratio that one weak seed can move by 15%.
        if all(verdict is not None and verdict.seed_means is None for verdict in against_best):
            row["keeps_quality"] = bool(row["ndcg_ratio"] >= QUALITY_SHARE
                                        and not any(verdict.label == "worse" for verdict in against_best))
        row["time_to_target_seconds"] = _time_to_target(seeds, best)
    return row


def _rare_target_verdict(ours: list[tuple[str, pd.DataFrame]], theirs: list[tuple[str, pd.DataFrame]]) -> str | None:
    """The paired verdict on NDCG@10 of the test users with a rare target (users without one are NaN), or None
    where the runs did not record it or no test user has a rare target."""
    if not all(RARE in values for _, values in ours + theirs):
        return None
    ours_matrix, theirs_matrix = _seed_matrix(ours, RARE), _seed_matrix(theirs, RARE)
    users = ~np.isnan(ours_matrix).any(axis=0) & ~np.isnan(theirs_matrix).any(axis=0)
    if not users.any():
        return None
    if not theirs_matrix[:, users].any():  # a relative difference from 0 is undefined
        return f"no verdict: the reference scores 0 on them ({int(users.sum())} users)"
    return f"{paired_verdict(ours_matrix[:, users], theirs_matrix[:, users]).describe()} ({int(users.sum())} users)"


def _extrapolated(seeds: pd.DataFrame) -> bool:
    """Whether a variant's rows come from the steps mode (their epoch time is extrapolated)."""
    return bool(seeds["epoch_seconds_extrapolated"].fillna(False).astype(bool).iloc[0])


def _per_user(name: str, seeds: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Each seed's per-user test NDCG@10 and HitRate@10, sorted by user, with the run's name for messages."""
    frames = [pd.read_parquet(Path(directory) / "per_user_test.parquet").set_index("user_id").sort_index()
              for directory in seeds["results_dir"]]
    return [(f"`{name}` seed {seed}", frame[[column for column in (*METRICS, RARE) if column in frame]])
            for seed, frame in zip(seeds["seed"], frames)]


def _different_users(per_seed: list[tuple[str, pd.DataFrame]]) -> str:
    """Why no verdict: the first run whose test users (count and ids) differ from the first run's; '' if none."""
    first_name, first = per_seed[0]
    for name, values in per_seed[1:]:
        if not values.index.equals(first.index):
            shared = len(first.index.intersection(values.index))
            return (f"no verdict: {first_name} and {name} were scored on different test users ({len(first)} and "
                    f"{len(values)}, {shared} shared); rerun them on the same data and split")
    return ""


def _seed_matrix(per_seed: list[tuple[str, pd.DataFrame]], metric: str) -> np.ndarray:
    """[seeds, users]: a row's per-user values of `metric`, users in the same order for every run."""
    return np.stack([values[metric].to_numpy() for _, values in per_seed])


def _per_seed(values: pd.Series) -> str:
    return " / ".join(f"{value:g}" for value in values)


def time_to_target(history: list[dict], target: float) -> float:
    """Wall seconds until validation NDCG@10 first reached `target` (inf if never)."""
    for entry in history:
        if entry.get("ndcg@10", float("-inf")) >= target:
            return entry["elapsed_seconds"]
    return math.inf


def _time_to_target(seeds: pd.DataFrame, reference: pd.DataFrame) -> float | str:
    """Median over seeds of the seconds to reach the reference's mean best validation NDCG@10."""
    bests = [max((entry["ndcg@10"] for entry in json.loads(history)), default=math.inf)
             for history in reference["validation_history"]]
    target = statistics.mean(bests)
    seconds = statistics.median(time_to_target(json.loads(history), target) for history in seeds["validation_history"])
    return "not reached" if math.isinf(seconds) else seconds
