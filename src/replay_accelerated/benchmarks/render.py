"""Measurements as a reader sees them: a bench's `results.md` (the context of the measurement and the
per-variant table) and `results.png` (speed-up against quality, with intervals), and the tables of the
standalone benchmarks (`write_measurements`)."""

from pathlib import Path

import pandas as pd
import torch

from replay_accelerated.benchmarks.fingerprint import speeds_differ
from replay_accelerated.benchmarks.rows import describe_machine
from replay_accelerated.benchmarks.verdict import MIN_SEEDS, QUALITY_SHARE, TOLERANCE


def write_measurements(rows: list[dict], out_dir: Path, stem: str, title: str, device: torch.device,
                       setup: str) -> None:
    """`stem`.csv and `stem`.md (title, hardware, threads, what was measured, then the table) in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / f"{stem}.csv", index=False)
    (out_dir / f"{stem}.md").write_text(
        f"# {title}\n\nHardware: {describe_machine(device)}; torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads. {setup}\n\n{table.to_markdown(index=False)}\n")


def markdown(table: pd.DataFrame, frame: pd.DataFrame, references: dict, context: dict) -> str:
    """results.md: hardware, probe, references, how to read the columns, then the table."""
    fp32 = frame.loc[frame["precision"].astype(str) == "32-true", "matmul_flops_per_second"]
    speeds = f"{fp32.min() / 1e9:.0f} to {fp32.max() / 1e9:.0f} GFLOP/s fp32" if len(fp32) else "unknown speeds"
    typical = fp32.median()  # the table's probe, as the bench's check (fingerprint.py) takes it
    mixed = (frame["code_fingerprint"].nunique() > 1 or frame["hardware"].nunique() > 1
             or any(speeds_differ(value, typical) for value in fp32))
    probe = context["probe"]
    lines = [
        f"# Bench `{context['name']}`",
        "",
        *(["**Mixed code versions/hardware** (mode.bench.allow_mixed=true): rows of "
           f"{sorted(set(frame['code_fingerprint'].astype(str)))} on {sorted(set(frame['hardware'].astype(str)))}, "
           f"measured at {speeds}.", ""] if mixed else []),
        f"Hardware: {context['machine']}; {context['bf16']}. Threads: "
        f"{', '.join(map(str, sorted(set(frame['threads']))))}. Code {context['code_fingerprint']} "
        f"(git {context['git_commit'] or 'unknown'}).",
        f"Matrix-product probe [4096, {context['hidden_size']}] x [{context['hidden_size']}, "
        f"{4 * context['hidden_size']}]: {probe['32-true'] / 1e9:.1f} GFLOP/s fp32, "
        f"{probe['bf16-mixed'] / 1e9:.1f} GFLOP/s bf16. mfu = analytical training FLOPs per second / the probe "
        "at the row's precision.",
        f"References: `{references['best']}` (headline, `_vs_best`) and `{references['default'] or '-'}` "
        "(`_vs_default`). Epoch seconds: medians over epochs after the first, without validation, then the "
        "median over seeds; metrics: means over seeds.",
        "Verdicts: two-level bootstrap of the relative difference of means (each row's seeds resampled, then "
        "the test users, the same for both rows), 95% interval: keeps (lower bound above "
        f"-{TOLERANCE:.0%}), else worse (all below 0), else inconclusive (± half-width); with fewer than "
        f"{MIN_SEEDS} seeds on a side: needs more seeds (the per-seed means); rows scored on different test "
        f"users: no verdict. keeps_quality: every verdict against `{references['best']}` given, none worse, and "
        f"mean test NDCG@10 >= {QUALITY_SHARE:.0%} of it; empty where a verdict is missing.",
        *(["Steps mode (`mode.bench.steps`): each row timed `timed_steps` training steps after a warm-up; "
           "`median_train_seconds_per_epoch` is **extrapolated** from the step time (`epoch_seconds_extrapolated`), "
           "and quality is not measured."] if frame["epoch_seconds_extrapolated"].fillna(False).astype(bool).any()
          else []),
        "Memory: `peak_memory_mb` is the process's peak (CUDA max allocated on a GPU, else peak RSS); "
        "`training_memory_mb` its peak during training minus its memory just before; `memory_ratio_*` compare "
        "training memory.",
        "",
        table.to_markdown(index=False),
        "",
    ]
    return "\n".join(lines)


def plot(table: pd.DataFrame, differences: pd.Series | None, path: Path, title: str, reference: str) -> None:
    """Speed-up over the headline reference (x) against the relative test NDCG@10 difference with its 95% interval."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 5.5))
    for index, row in table.iterrows():
        if differences is None or not isinstance(differences[index], tuple) or pd.isna(row["speed_up_vs_best"]):
            continue
        point, low, high = (100 * value for value in differences[index])
        if pd.isna(low):  # too few seeds for an interval: the point alone, hollow
            axes.plot([row["speed_up_vs_best"]], [point], "o", fillstyle="none")
        else:
            axes.errorbar([row["speed_up_vs_best"]], [point], yerr=[[point - low], [high - point]], fmt="o",
                          capsize=3)
        axes.annotate(row["variant"], (row["speed_up_vs_best"], point), textcoords="offset points", xytext=(5, 5),
                      fontsize=8)
    axes.axhline(0, color="gray", linestyle="--", linewidth=0.8, label=f"reference ({reference})")
    axes.axhline(-100 * TOLERANCE, color="gray", linestyle=":", linewidth=0.8, label=f"-{TOLERANCE:.0%}")
    axes.axvline(1.0, color="gray", linewidth=0.5)
    axes.set_xlabel(f"speed-up over {reference} (median train seconds per epoch)")
    axes.set_ylabel(f"test NDCG@10 vs {reference}, % (95% interval; hollow: too few seeds)")
    axes.set_title(title, fontsize=9)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
