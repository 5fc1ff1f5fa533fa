"""`mode=train`: prepare data, train with early stopping (training/fit.py), evaluate the best model
(evaluation/report.py), write results.

Outputs (`<save_name>` from the model config), written in the `unfinished/` folder of each output
folder and moved over the earlier run's files only when the whole run has succeeded (a run that fails
or is stopped leaves them as they were); one run at a time writes a save name's folders (a lock):
- `paths.checkpoint_dir/<save_name>/best.ckpt`, `last.ckpt` (every epoch; re-running the
  command after a crash resumes from `unfinished/last.ckpt`, see training/checkpoints.py),
  `items.parquet` (the item vocabulary) and `complete.json`;
- `paths.log_dir/<save_name>/` CSV and TensorBoard logs;
- `paths.results_dir/<save_name>/`: `metrics_validation.csv`, `metrics_test.csv`
  (metrics x k), `recommendations_test.parquet` (top-k with original ids),
  `per_user_test.parquet` (NDCG@10 and HitRate@10 of every test user, 0 without
  recommendations: the paired quality verdict of the bench; and NDCG@10 against the user's rare
  targets, items seen fewer than 5 times in training, NaN for a user without one) and `run.json` (resolved
  config, versions, data fingerprint, hardware, epoch times, samples/s, validation
  history, peak memory and training memory, data-preparation and padding shares, an epoch's
  shapes and analytical training FLOPs, popularity baseline).

`mode.steps=N` (the bench's steps mode) only times N training steps after `mode.warmup_steps`:
run.json then holds the step time, samples/s, tokens/s, memory and the epoch time extrapolated
from them, and nothing is validated, checkpointed or evaluated.

`model.implementation=replay` (or `replay_nn`: RePlay's newer replay.nn API, SASRec only) trains
RePlay 0.22's own model on the same data instead (training/replay_baseline.py) and writes the same
test outputs and run.json: the baseline rows of every benchmark.
"""

import copy
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
from omegaconf import DictConfig, OmegaConf

from replay_accelerated.training.flops import EpochShapes, model_train_flops
from replay_accelerated.config import REPLAY_IMPLEMENTATIONS, ConfigOrigin
from replay_accelerated.data.pipeline import prepare_data
from replay_accelerated.evaluation.offline import recommend
from replay_accelerated.evaluation.report import write_report
from replay_accelerated.models import build_model
from replay_accelerated.training.fit import fit
from replay_accelerated.training.measurements import hardware, package_versions
from replay_accelerated.training.precision import Precision, run_precision
from replay_accelerated.outputs import FolderLock
from replay_accelerated.training.checkpoints import UNFINISHED, config_fingerprint, mark_complete, publish
from replay_accelerated.training.environment import apply_env, check_writable, first_process
from replay_accelerated.training.tracking import build_loggers, log_files


def run(cfg: DictConfig, origin: ConfigOrigin) -> dict:
    """The mode's entry point (modes/__init__.py): train the command's config."""
    return train(cfg)


def with_resolved_precision(cfg: DictConfig) -> tuple[DictConfig, Precision]:
    """The run's one precision decision (training/precision.py: `auto` resolved for the training device, our
    model's or RePlay's), and a copy of `cfg` that records the concrete precision it trains in: run.json's config,
    the resume fingerprint and RePlay's `training_params` hold it; our training takes the decision itself."""
    precision = run_precision(cfg)
    print(f"Precision: {precision.used} ({precision.why})", flush=True)
    cfg = copy.deepcopy(cfg)
    cfg.model.params.training_params.precision = precision.used
    return cfg, precision


def train(cfg: DictConfig, callbacks: Sequence[L.Callback] = ()) -> dict:
    """Run the whole training job; returns the run summary that is also written to run.json.

    `callbacks` join our model's Lightning callbacks (`mode=optimize` adds its pruning one)."""
    save_name = cfg.model.save_name
    check_writable(cfg.paths, save_name)
    if not first_process():  # a DDP run's other processes: the first one holds the folders
        return _train(cfg, callbacks)
    # One run at a time writes a save name's folders: a second one stops here, before any work.
    change = "set another model.save_name (or paths.*)"
    with (FolderLock(Path(cfg.paths.checkpoint_dir) / save_name, change),
          FolderLock(Path(cfg.paths.results_dir) / save_name, change)):
        return _train(cfg, callbacks)


def _train(cfg: DictConfig, callbacks: Sequence[L.Callback]) -> dict:
    started = time.perf_counter()
    apply_env(cfg.env)
    cfg, precision = with_resolved_precision(cfg)
    save_name = cfg.model.save_name
    checkpoint_dir = Path(cfg.paths.checkpoint_dir) / save_name
    results_dir = Path(cfg.paths.results_dir) / save_name
    # Results are written here, and moved over the earlier run's only when this run has succeeded.
    unfinished_results = results_dir / UNFINISHED
    shutil.rmtree(unfinished_results, ignore_errors=True)  # a failed run's partial results: nothing resumes them

    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))
    loggers = []  # RePlay's baseline keeps no logs
    trained_checkpoints = False  # our model trained with checkpoints (not RePlay's baseline, not the steps mode)
    print(f"Data: {data.summary()}")
    if cfg.model.implementation in REPLAY_IMPLEMENTATIONS:
        from replay_accelerated.training.replay_baseline import train_replay_baseline  # imports RePlay: only here

        print(f"Training {REPLAY_IMPLEMENTATIONS[cfg.model.implementation]}'s own {cfg.model.name} (the baseline) "
              "on this split")
        run = train_replay_baseline(cfg.model.name, data.splits, cfg.model.params.model_params,
                                    cfg.model.params.training_params, list(cfg.metrics.ks), cfg.env.SEED,
                                    trainer=cfg.trainer, steps=cfg.mode.steps, warmup_steps=cfg.mode.warmup_steps,
                                    implementation=cfg.model.implementation, item_features=data.item_features,
                                    vocabulary=data.vocabulary)
        recommendations = run.pop("recommendations", None)
        # Counted on our model of the same shapes: RePlay's blocks are the architecture we re-implement.
        same_shapes = build_model(cfg.model.name, len(data.vocabulary), cfg.model.params.model_params,
                                  data.item_features and data.item_features.spec())
        run["train_flops_per_epoch"] = model_train_flops(same_shapes, cfg.model.params.model_params,
                                                         EpochShapes(**run["epoch_shapes"]))
    else:
        loggers = build_loggers(cfg)
        run, model = fit(cfg, data, checkpoint_dir, callbacks, loggers, precision)
        if not run:  # another process of a multi-process run: the first one evaluates and reports
            return {}
        recommendations = None  # the steps mode only times training
        if model is not None:
            trained_checkpoints = True
            width, k = model.max_seq_len, max(cfg.metrics.ks)
            device = next(model.parameters()).device
            recommendations = {split: recommend(model.next_item_scores, users, data.vocabulary, k, width,
                                                device=device, item_chunk_size=cfg.evaluation.item_chunk_size)
                               for split, users in (("validation", data.validation), ("test", data.test))}

    summary = {
        "model": cfg.model.name,
        "implementation": cfg.model.implementation,
        "save_name": save_name,
        "data": data.summary(),
        "precision": precision.record(),
        **run,
        "hardware": hardware(),
        "versions": package_versions(),
    }
    if recommendations is not None:
        summary.update(write_report(recommendations, data, cfg, unfinished_results))
    else:
        unfinished_results.mkdir(parents=True, exist_ok=True)
        print(f"Timed {run['timed_steps']} steps after {run['warmup_steps']}: {run['step_seconds']} s a step, "
              f"{run['train_tokens_per_second']} tokens/s, an epoch extrapolated to "
              f"{run['extrapolated_train_seconds_per_epoch']} s; training memory {run['training_memory_mb']} MB")
    if "best_checkpoint" in summary:  # where it will lie once published
        summary["best_checkpoint"] = str(checkpoint_dir / Path(summary["best_checkpoint"]).name)
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    summary["config"] = OmegaConf.to_container(cfg, resolve=True)
    (unfinished_results / "run.json").write_text(json.dumps(summary, indent=2))

    # The run succeeded: its files replace the earlier run's, results first, the completion mark last.
    publish(unfinished_results)
    # Only this run's own checkpoints: an `unfinished/` that a stopped run of our model left stays for its resume,
    # whatever a RePlay baseline or a steps-mode run of the same save name does meanwhile.
    if trained_checkpoints:
        publish(checkpoint_dir / UNFINISHED)
        mark_complete(checkpoint_dir, config_fingerprint(cfg), summary["epochs_run"])
    log_files(loggers, sorted(results_dir.glob("metrics_*.csv")) + [results_dir / "run.json"])
    print(f"Results written to {results_dir}")
    return summary
