"""One row of a bench's results.csv: what one training run (a variant with one seed) measured."""

import dataclasses
import hashlib
import json
import statistics
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from replay_accelerated.config import REPLAY_IMPLEMENTATIONS, AccelerationConfig
from replay_accelerated.training.measurements import cpu_flags, hardware, median_after_first_epoch
from replay_accelerated.training.precision import computes_in_bf16

SEED_COLUMNS = [
    "model", "variant", "seed", "implementation", "precision", "loss", "acceleration", "hardware", "threads",
    "code_fingerprint", "git_commit", "epochs_run", "timed_steps",
    "median_train_seconds_per_epoch", "epoch_seconds_extrapolated", "step_seconds", "median_validation_seconds",
    "compile_seconds", "train_samples_per_second", "train_tokens_per_second",
    "data_preparation_share", "padding_share", "useful_token_share",
    "tokens_per_epoch", "targets_per_epoch", "train_flops_per_epoch", "matmul_flops_per_second", "mfu",
    "peak_memory_mb", "training_memory_mb", "validation_ndcg@10", "validation_hitrate@10",
    "test_ndcg@10", "test_ndcg@10_low", "test_ndcg@10_high",
    "test_hitrate@10", "test_hitrate@10_low", "test_hitrate@10_high", "test_rare_target_ndcg@10",
    "results_dir", "overrides", "config_hash", "validation_history",
]
STEPS_ONLY = ["timed_steps", "step_seconds"]  # filled in the steps mode only...
EPOCHS_ONLY = ["epochs_run", "median_validation_seconds", "data_preparation_share", "padding_share",  # ...and not
               *[column for column in SEED_COLUMNS
                 if column.startswith(("validation_ndcg", "validation_hit", "test_"))]]


def describe_machine(device: torch.device) -> str:
    """The GPU with its compute capability, or the CPU model with the flags that decide matmul speed."""
    if device.type == "cuda":
        major, minor = torch.cuda.get_device_capability(device)
        return f"{torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
    return f"{hardware()['cpu']} (flags: {', '.join(cpu_flags()) or 'none of avx2, avx512f, avx512_bf16, amx_bf16'})"


def config_hash(config: DictConfig) -> str:
    """What a rerun reuses a row by, with its variant and seed: a hash of the run's whole config, resolved, except
    `env.SEED` (the row's own column), so a changed `dataset.path`, `model=` or any other override starts new rows."""
    container = OmegaConf.to_container(config, resolve=True, enum_to_str=True)
    container["env"].pop("SEED", None)
    return hashlib.sha256(json.dumps(container, sort_keys=True, default=str).encode()).hexdigest()[:16]


def variant_row(name: str, seed: int, overrides: list[str], run: dict, results_dir: Path, probe: dict,
                context: dict) -> dict:
    """The CSV row of one run from its run.json; `probe` is the bench's matmul FLOP/s per precision.

    A run of the steps mode (`timed_steps` in run.json) has no epochs and no quality: its epoch time
    is the one extrapolated from its step time (`epoch_seconds_extrapolated`), its quality columns
    stay empty."""
    config = run["config"]
    training = config["model"]["params"]["training_params"]
    precision = training["precision"] or "32-true"
    shapes = run["epoch_shapes"]
    timed_steps = "timed_steps" in run
    if timed_steps:
        epoch_seconds = run["extrapolated_train_seconds_per_epoch"]
        speed = {"timed_steps": run["timed_steps"], "step_seconds": run["step_seconds"],
                 "train_samples_per_second": run["train_samples_per_second"],
                 "train_tokens_per_second": run["train_tokens_per_second"]}
    else:
        epoch_seconds = median_after_first_epoch(run["train_seconds_per_epoch"])
        speed = {"epochs_run": run["epochs_run"],
                 "median_validation_seconds": round(statistics.median(
                     entry["validation_seconds"] for entry in run["validation_history"]), 3),
                 "train_samples_per_second": round(median_after_first_epoch(run["train_samples_per_second"]), 1),
                 "train_tokens_per_second": round(shapes["real_tokens"] / epoch_seconds, 1)}
    matmul = probe["bf16-mixed" if computes_in_bf16(config) else "32-true"]  # bf16 parameters count too
    return {
        "model": run["model"],
        "variant": name,
        "seed": seed,
        "implementation": run["implementation"],
        "precision": precision,
        "loss": config["model"]["params"]["model_params"]["loss_type"],
        "acceleration": describe_acceleration(config),
        "hardware": context["machine"],
        "threads": run["hardware"]["cpu_threads"],
        "code_fingerprint": context["code_fingerprint"],
        "git_commit": context["git_commit"],
        "median_train_seconds_per_epoch": round(epoch_seconds, 3),
        "epoch_seconds_extrapolated": timed_steps,
        **speed,
        # Inside the first epochs' time (or the warm-up steps); RePlay's runs compile nothing.
        "compile_seconds": run.get("compile_seconds", 0.0),
        "data_preparation_share": run.get("data_preparation_share"),
        "padding_share": run.get("padding_share"),
        "useful_token_share": round(shapes["real_tokens"] / shapes["tokens"], 4),
        "tokens_per_epoch": shapes["tokens"],
        "targets_per_epoch": shapes["targets"],
        "train_flops_per_epoch": run["train_flops_per_epoch"],
        "matmul_flops_per_second": round(matmul),
        "mfu": round(run["train_flops_per_epoch"] / epoch_seconds / matmul, 4),
        "peak_memory_mb": run["peak_memory_mb"],
        "training_memory_mb": run["training_memory_mb"],
        **({} if timed_steps else _quality(run)),
        "results_dir": str(results_dir),
        "overrides": json.dumps(overrides),
        "validation_history": json.dumps(run.get("validation_history", [])),
    }


def _quality(run: dict) -> dict:
    test, test_ci = run["test_metrics"], run["test_bootstrap_95"]
    return {
        "validation_ndcg@10": round(run["validation_metrics"]["ndcg@10"], 4),
        "validation_hitrate@10": round(run["validation_metrics"]["hitrate@10"], 4),
        **{f"test_{metric}": round(test[metric], 4) for metric in ("ndcg@10", "hitrate@10")},
        **{f"test_{metric}_{side}": round(test_ci[metric][index], 4)
           for metric in ("ndcg@10", "hitrate@10") for index, side in enumerate(("low", "high"))},
        "test_rare_target_ndcg@10": round(run.get("test_rare_target_ndcg@10", float("nan")), 4),
    }


def describe_acceleration(config: dict) -> str:
    """What differs from the plain model, e.g. "act_fn=selu, head=switchback_head, length_bucketing"."""
    if config["model"]["implementation"] in REPLAY_IMPLEMENTATIONS:
        return REPLAY_IMPLEMENTATIONS[config["model"]["implementation"]]
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
