"""`mode=bench`: train a matrix of variants, each with one or more seeds, on the same data and compare them.

A variant is a set of config overrides on top of the command's own config, e.g.
`[acceleration=quantization]` or `[model.implementation=replay]` (RePlay 0.22's own model,
the baseline). `mode.bench.variants` names them explicitly; `mode.bench.pairwise` names
options and their values, and every pair of values of two different options is then
covered by at least one generated variant (an all-pairs design). `mode.bench.common` is
added to every variant (the quick mode uses it for few epochs); `mode.bench.only` runs
a subset, e.g. `mode.bench.only=[replay_best,fastest]`; `mode.bench.steps=N` only times N training
steps of each variant (after `mode.bench.warmup_steps`; `mode.steps` of training/fit.py), for data
too large to train in a bench, and reports the epoch time extrapolated from them without quality;
`mode.bench.seeds` trains a
variant with several seeds (env.SEED, env.SEED + 1, ...; the data split does not depend on it;
counts of variants not in the matrix are ignored, so a preset's counts survive `~mode.bench.variants`).

Values that depend on the model and the machine are written `best` and resolved here:
- `model.params.training_params.precision=best`: what `precision: auto` means on this device
  (training/precision.py: bf16-mixed where it multiplies bfloat16 natively, 16-mixed on a CUDA
  device without bfloat16 except for RePlay's rows, else 32-true), written into the row so that
  the table does not depend on the machine that reads it;
- `model.params.model_params.loss_type=best`: RePlay's fastest exact full-softmax loss for the
  model, CE_restricted for BERT4Rec (the head only at masked positions), CE for SASRec.
A variant that would run bf16 without native support, through its precision or its parameters'
`dtype` (training/precision.computes_in_bf16), is skipped (emulated bf16 is slower than fp32 and says
nothing), and marked so in results.md; so is a variant of a RePlay API without the bench's model
(`model.implementation=replay_nn` on BERT4Rec: replay.nn has none).

Every variant's config is validated before the first one starts. Each (variant, seed) then
runs as its own `mode=train` process, so that its peak memory is its own, and reads back that
run's `run.json` and `per_user_test.parquet`.

Outputs in `paths.results_dir/bench/<bench name>/`:
- `results.csv`: one row per finished (variant, seed), appended as soon as it finishes, so an
  interrupted bench keeps its rows and a rerun skips them (delete a row to rerun it; failed
  rows are never written, so a rerun retries them). A row is reused by its variant, seed and
  `config_hash` (the run's whole config): a changed command replaces that variant's rows. Every
  row carries the code fingerprint and the hardware; rows of other code or hardware are refused
  unless `mode.bench.allow_mixed`;
- `summary.csv` and `results.md`: one row per variant (seeds aggregated), the ratios against
  the two reference rows `replay_best` (the headline) and `replay_default`, the paired quality
  verdicts over seeds and users (verdict.py; at least 3 seeds a side) and the model FLOP
  utilization (training/flops.py);
- `results.png`: speed-up over replay_best against the relative test NDCG@10 difference.
"""

import itertools
import json
import math
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from replay_accelerated.benchmarks.fingerprint import (
    check_same_code_and_hardware,
    check_same_machine_speed,
    code_fingerprint,
    git_commit,
)
from replay_accelerated.benchmarks.rows import SEED_COLUMNS, config_hash, describe_machine, variant_row
from replay_accelerated.benchmarks.summary import summarize
from replay_accelerated.config import REPLAY_IMPLEMENTATIONS, ConfigOrigin
from replay_accelerated.errors import ConfigError, UserError
from replay_accelerated.training.precision import (
    AUTO,
    Bf16Support,
    computes_in_bf16,
    decide_precision,
    matmul_flops_per_second,
    training_device,
)
from replay_accelerated.validation import compose_run

BEST = "best"
PRECISION_KEY = "model.params.training_params.precision"
LOSS_KEY = "model.params.model_params.loss_type"
REPLAY_BEST_LOSS = {"bert4rec": "CE_restricted", "sasrec": "CE"}


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
    """The whole matrix: variant name -> its overrides (the pinned precision, then the common ones first), in the
    configured order; a variant's own precision comes later and wins."""
    variants = {name: list(overrides) for name, overrides in bench.variants.items()}
    variants.update(pairwise_variants({option: {value: list(o) for value, o in values.items()}
                                       for option, values in bench.pairwise.items()}))
    unknown = [name for name in bench.only if name not in variants]
    if unknown:
        raise ConfigError(f"config key 'mode.bench.only' names {unknown}, which are not variants of bench "
                          f"'{bench.name}'; choose from {list(variants)}")
    pinned = f"model.params.training_params.precision={bench.precision}"
    return {name: [pinned, *bench.common, *overrides] for name, overrides in variants.items()}


def resolve_best(overrides: list[str], compose_variant: Callable[[list[str]], DictConfig],
                 bf16: Bf16Support) -> tuple[list[str], DictConfig]:
    """`overrides` with every `key=best` replaced by its value on `bf16.device`, the bench's training device (see
    the module docstring), and their config."""
    without_best = compose_variant([o for o in overrides if not o.endswith(f"={BEST}")])
    resolved = []
    for override in overrides:
        key, _, value = override.partition("=")
        if value == BEST:
            if key == PRECISION_KEY:
                value = decide_precision(AUTO, without_best.model.implementation, bf16).used
            elif key == LOSS_KEY:
                value = REPLAY_BEST_LOSS[without_best.model.name]
            else:
                raise ConfigError(f"the bench override '{override}' says 'best', which only {PRECISION_KEY} and "
                                  f"{LOSS_KEY} understand; give a value")
        resolved.append(f"{key}={value}")
    return resolved, compose_variant(resolved)


def missing_replay_model(overrides: list[str], model_name: str) -> str | None:
    """Why a variant of a RePlay API that lacks `model_name` is skipped (replay.nn has no BERT4Rec), else None:
    the matrix of both models (mode/bench.yaml) keeps such rows, which run where they apply."""
    implementation = next((override.partition("=")[2] for override in reversed(overrides)
                           if override.startswith("model.implementation=")), None)
    if implementation not in REPLAY_IMPLEMENTATIONS:
        return None
    from replay_accelerated.training.replay_baseline import LOSS_TYPES  # imports RePlay: only for its rows

    return None if model_name in LOSS_TYPES[implementation] else (
        f"skipped: {REPLAY_IMPLEMENTATIONS[implementation]} has no {model_name}")


def resolve_variants(variants: dict[str, list[str]], compose_variant: Callable[[list[str]], DictConfig],
                     bf16: Bf16Support, model_name: str | None = None
                     ) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Every variant's overrides with `best` resolved for `bf16.device` and validated (config mistakes surface now,
    not hours into the bench), and the variants skipped: name -> why (bf16 without native support; a RePlay API
    without the command's `model_name`)."""
    resolved, skipped = {}, {}
    for name, overrides in variants.items():
        missing = model_name and missing_replay_model(overrides, model_name)
        if missing:
            skipped[name] = missing
            continue
        resolved[name], variant_cfg = resolve_best(overrides, compose_variant, bf16)
        if computes_in_bf16(variant_cfg) and not bf16.native:  # bf16 precision or bf16 parameters
            skipped[name] = f"skipped: {bf16.why}"
    return resolved, skipped


def run(cfg: DictConfig, origin: ConfigOrigin) -> pd.DataFrame:
    """Train every (variant, seed) in its own process; `compose_run(origin, overrides)` validates a variant's config."""
    bench = cfg.mode.bench
    device = training_device(cfg.trainer)
    bf16 = Bf16Support(device)  # the bench's one look at bf16: its `best`, its skips, its probe
    matrix = bench_variants(bench)
    variants, skipped = resolve_variants({name: overrides for name, overrides in matrix.items()
                                          if not bench.only or name in bench.only},
                                         lambda overrides: compose_run(origin, overrides), bf16, cfg.model.name)
    out_dir = Path(cfg.paths.results_dir) / "bench" / bench.name
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir / "results.csv"
    rows = pd.read_csv(csv_path).to_dict(orient="records") if csv_path.is_file() else []
    fingerprint, machine = code_fingerprint(), describe_machine(device)
    check_same_code_and_hardware(rows, fingerprint, machine, bench.allow_mixed, csv_path)

    if cfg.env.OMP_NUM_THREADS is not None:  # the probe uses the threads the runs get
        torch.set_num_threads(int(cfg.env.OMP_NUM_THREADS))
    hidden = cfg.model.params.model_params.hidden_size
    # Many short timings over a few seconds: one timing on a shared VM strays by more than SPEED_TOLERANCE.
    probe = {"32-true": matmul_flops_per_second(device, hidden, bf16=False, repetitions=15, min_seconds=0.2),
             "bf16-mixed": matmul_flops_per_second(device, hidden, bf16=True, repetitions=15, min_seconds=0.2)
             if bf16.native else math.nan}
    context = {"name": bench.name, "machine": machine, "bf16": bf16.why, "probe": probe, "hidden_size": hidden,
               "code_fingerprint": fingerprint, "git_commit": git_commit(), "order": list(matrix),
               "seeds": {name: bench.seeds.get(name, 1) for name in variants}, "status": dict(skipped)}
    print(f"Bench '{bench.name}' on {machine}; {bf16.why}; matmul [4096, {hidden}] x [{hidden}, {4 * hidden}]: "
          f"{probe['32-true'] / 1e9:.1f} GFLOP/s fp32, {probe['bf16-mixed'] / 1e9:.1f} GFLOP/s bf16", flush=True)
    check_same_machine_speed(rows, probe["32-true"], bench.allow_mixed, csv_path)

    timing = [] if bench.steps is None else [f"mode.steps={bench.steps}", f"mode.warmup_steps={bench.warmup_steps}"]
    # A row is reused for the same variant, seed and whole config (config_hash): not only the same variant
    # overrides, since a changed `dataset.path` or `model=` on the command line changes the run as much.
    hashes = {name: config_hash(compose_run(origin, [*timing, *overrides])) for name, overrides in variants.items()
              if name not in skipped}
    stale = {row["variant"] for row in rows if row["variant"] in hashes
             and row.get("config_hash") != hashes[row["variant"]]}
    if stale:  # one table row must not mix seeds of two configs, and a new run writes to the old one's folder
        print(f"Rows of {sorted(stale)} in {csv_path} ran another config (the command changed, or they predate "
              "config_hash): this command's runs replace them", flush=True)
        rows = [row for row in rows if row["variant"] not in stale or row.get("config_hash") == hashes[row["variant"]]]
    done = {(row["variant"], int(row["seed"]), row["config_hash"]) for row in rows if row["variant"] in hashes}
    runs = [(name, cfg.env.SEED + index) for name in variants if name not in skipped
            for index in range(context["seeds"][name])]
    for number, (name, seed) in enumerate(runs, start=1):
        step = f"[bench {number}/{len(runs)}] {name} seed {seed}"
        overrides = variants[name]
        if (name, seed, hashes[name]) in done:
            print(f"{step}: already in {csv_path}, skipped")
            continue
        print(f"\n{step}: {' '.join(overrides) or '(no overrides)'}", flush=True)
        save_name = f"{cfg.model.save_name}_{bench.name}_{re.sub(r'[^A-Za-z0-9]+', '_', name)}_seed{seed}"
        command = [sys.executable, "-m", "replay_accelerated", "--config-name", origin.config_name,
                   *origin.run_overrides(), "mode=train", *timing, *overrides, f"env.SEED={seed}",
                   f"model.save_name={save_name}"]
        print(f"  replay-accelerated {' '.join(command[3:])}", flush=True)
        cause = run_child(command)
        if cause is not None:
            context["status"][name] = f"failed (seed {seed}): {cause}"
            print(f"{step} failed: {cause}. The bench goes on; rerun the same command to retry it.", flush=True)
            continue
        results_dir = Path(cfg.paths.results_dir) / save_name
        run = json.loads((results_dir / "run.json").read_text())
        rows.append({**variant_row(name, seed, overrides, run, results_dir, probe, context),
                     "config_hash": hashes[name]})
        pd.DataFrame(rows).reindex(columns=SEED_COLUMNS).to_csv(csv_path, index=False)
        summarize(rows, out_dir, context)
        quality = f"test NDCG@10 {rows[-1]['test_ndcg@10']}" if "test_ndcg@10" in rows[-1] else "extrapolated"
        print(f"{step}: {rows[-1]['median_train_seconds_per_epoch']} s/epoch, {quality}",
              flush=True)
    if not rows:
        raise UserError(f"no variant of bench '{bench.name}' finished; see the errors above")
    table = summarize(rows, out_dir, context)
    print(f"\n{table.to_string(index=False)}\nWritten to {out_dir}")
    failed = [name for name, status in context["status"].items() if status.startswith("failed")]
    if failed:
        raise UserError(f"variants {failed} of bench '{bench.name}' failed (the causes are above and in "
                        f"results.md); the other rows are in {csv_path}; rerun the same command to retry only those")
    return table


HYDRA_HINT = "Set the environment variable HYDRA_FULL_ERROR"


def run_child(command: list[str]) -> str | None:
    """Run a training process, its output shown as it comes; None on success, else its last error line."""
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    last = ""
    for line in process.stderr:
        sys.stderr.write(line)
        if line.strip() and not line.startswith(HYDRA_HINT):  # Hydra's hint after an unexpected error
            last = line.strip()
    if process.wait() == 0:
        return None
    return last or f"exit status {process.returncode}"
