"""`mode=train`: prepare data, train with early stopping, evaluate the best model, write results.
`mode=inspect`: build and print the configured model and its accelerations, without training.

Outputs (`<save_name>` from the model config):
- `paths.checkpoint_dir/<save_name>/best.ckpt`, `last.ckpt` (every epoch; re-running the
  command after a crash resumes from it, see checkpoints.py) and `items.parquet` (the item
  vocabulary);
- `paths.log_dir/<save_name>/` CSV and TensorBoard logs;
- `paths.results_dir/<save_name>/`: `metrics_validation.csv`, `metrics_test.csv`
  (metrics x k), `recommendations_test.parquet` (top-k with original ids),
  `per_user_test.parquet` (NDCG@10 and HitRate@10 of every test user, 0 without
  recommendations: the paired quality verdict of the bench) and `run.json` (resolved
  config, versions, data fingerprint, hardware, epoch times, samples/s, validation
  history, peak memory and training memory, data-preparation and padding shares, an epoch's
  shapes and analytical training FLOPs, popularity baseline).

`mode.steps=N` (the bench's steps mode) only times N training steps after `mode.warmup_steps`:
run.json then holds the step time, samples/s, tokens/s, memory and the epoch time extrapolated
from them, and nothing is validated, checkpointed or evaluated.

`model.implementation=replay` trains RePlay 0.22's own model on the same data instead
(benchmark/replay_baseline.py) and writes the same test outputs and run.json: the
baseline row of every benchmark.
"""

import copy
import json
import os
import time
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.profilers import PyTorchProfiler
from omegaconf import DictConfig, OmegaConf

from replay_accelerated.acceleration.apply import Change, apply_accelerations, format_changes
from replay_accelerated.acceleration.switchback import SwitchBackLinear, int8_matmul_problem
from replay_accelerated.benchmark.flops import EpochShapes, epoch_shapes, model_train_flops
from replay_accelerated.data.prepare import PreparedData, prepare_data
from replay_accelerated.data.preprocessing import USER
from replay_accelerated.errors import ConfigError, UserError
from replay_accelerated.evaluation.offline import (
    bootstrap_interval,
    metric_table,
    per_user_ndcg_and_hitrate,
    popularity_scores,
    recommend,
)
from replay_accelerated.evaluation.ranking import EvaluationBatches
from replay_accelerated.losses import build_loss, full_logits_bytes
from replay_accelerated.models import SequentialRecommender, build_model
from replay_accelerated.training.batches import padding_share, training_loader
from replay_accelerated.training.checkpoints import (
    AtomicCheckpointIO,
    ResumableRun,
    config_fingerprint,
    load_checkpoint,
    mark_complete,
    mark_started,
    resume_checkpoint,
)
from replay_accelerated.training.measurements import (
    EpochTimer,
    data_preparation_share,
    hardware,
    package_versions,
    StepTimer,
    TrainingMemory,
    available_memory_bytes,
    timed_steps_trainer_args,
)
from replay_accelerated.training.module import RecommenderModule
from replay_accelerated.training.precision import resolve_precision, training_device

MONITOR = "val_ndcg@10"


def check_writable(paths) -> None:
    """Every output folder can be created and written, before any work is done."""
    for key in ("results_dir", "checkpoint_dir", "log_dir"):
        folder = Path(paths[key])
        try:
            folder.mkdir(parents=True, exist_ok=True)
            probe = folder / ".write_test"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            raise UserError(f"cannot write to {folder} ({error.strerror or error}); "
                            f"set paths.{key} to a folder you can write") from None


def apply_env(env) -> None:
    """Export the `env` config before torch touches a device, and seed everything."""
    for name in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"):
        if env[name] is not None:
            os.environ[name] = str(env[name])
    if env.OMP_NUM_THREADS is not None:
        torch.set_num_threads(int(env.OMP_NUM_THREADS))
    L.seed_everything(env.SEED, workers=True, verbose=False)


def build_accelerated_model(cfg: DictConfig, n_items: int) -> tuple[SequentialRecommender, list[Change]]:
    """The configured model with its accelerations applied, printed with the table of what changed."""
    model = build_model(cfg.model.name, n_items, cfg.model.params.model_params)
    changes = apply_accelerations(model, cfg.acceleration)
    print(model)  # the reference project's way to check which layers are used
    print(format_changes(changes))
    return model, changes


def check_device_support(cfg: DictConfig, device: torch.device, model: SequentialRecommender) -> None:
    """The configured precision and int8 head can run on the training device; stop before training if not."""
    precision = str(cfg.model.params.training_params.precision)
    key = "model.params.training_params.precision"
    if precision.startswith("bf16") and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ConfigError(f"{key}={precision}, but {torch.cuda.get_device_name(device)} has no bfloat16 support; "
                          f"use {key}=16-mixed (fp16 with loss scaling) or 32")
    if precision.startswith("16") and device.type != "cuda":
        raise ConfigError(f"{key}={precision} needs a CUDA device (Lightning has no fp16 autocast on {device.type}); "
                          f"use {key}=bf16-mixed or 32")
    if isinstance(model.head, SwitchBackLinear):
        problem = int8_matmul_problem(device)
        if problem is not None:
            raise ConfigError(
                f"acceleration.model.acceleration_config.head=swichback_head needs int8 matrix multiplication "
                f"(torch._int_mm), which is unavailable on {device} here ({problem}); "
                "use head=linear_head, or train on a device with int8 support"
            )


def with_resolved_precision(cfg: DictConfig) -> tuple[DictConfig, dict]:
    """A copy of `cfg` whose training precision is the concrete one this run uses (`auto` resolved for
    the training device, training/precision.py), and the choice: configured, used and why (for run.json)."""
    training = cfg.model.params.training_params
    configured = training.precision
    used, why = resolve_precision(configured, training_device(cfg.trainer), fp16=cfg.model.implementation != "replay")
    print(f"Precision: {used} ({why})", flush=True)
    cfg = copy.deepcopy(cfg)
    cfg.model.params.training_params.precision = used
    return cfg, {"configured": configured, "used": used, "why": why}


def check_logits_memory(loss: torch.nn.Module, shapes: EpochShapes, n_items: int, device: torch.device) -> None:
    """A loss that holds [targets x items] logits must fit: refused when a step's logits alone exceed the
    memory available, with a warning when they take more than a quarter of it."""
    needed = full_logits_bytes(loss, shapes.targets / shapes.batches, shapes.tokens / shapes.batches, n_items)
    available = available_memory_bytes(device)
    if not needed or available is None or needed <= available / 4:
        return
    message = (f"loss_type {type(loss).__name__} holds the [targets x items] logits of a batch: about "
               f"{needed / 2**30:.1f} GB at {n_items:,} items, with {available / 2**30:.1f} GB available on {device}; "
               "use model.params.model_params.loss_type=CCE (exact, chunked), SCE or CE_sampled, or a smaller batch")
    if needed > available:
        raise ConfigError(message)
    print(f"Warning: {message}", flush=True)


def inspect(cfg: DictConfig) -> list[Change]:
    """`mode=inspect`: build and print the configured model without training."""
    apply_env(cfg.env)
    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))
    _, changes = build_accelerated_model(cfg, len(data.vocabulary))
    return changes


def train(cfg: DictConfig, callbacks: tuple[L.Callback, ...] = ()) -> dict:
    """Run the whole training job; returns the run summary that is also written to run.json.

    `callbacks` join our model's Lightning callbacks (`mode=optimize` adds its pruning one)."""
    started = time.perf_counter()
    check_writable(cfg.paths)
    apply_env(cfg.env)
    cfg, precision = with_resolved_precision(cfg)
    save_name = cfg.model.save_name
    results_dir = Path(cfg.paths.results_dir) / save_name

    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))
    print(f"Data: {data.summary()}")
    if cfg.model.implementation == "replay":
        from replay_accelerated.benchmark.replay_baseline import train_replay_baseline

        print(f"Training RePlay 0.22's own {cfg.model.name} (the baseline) on this split")
        run = train_replay_baseline(cfg.model.name, data.splits, cfg.model.params.model_params,
                                    cfg.model.params.training_params, list(cfg.metrics.ks), cfg.env.SEED,
                                    trainer=cfg.trainer, steps=cfg.mode.steps, warmup_steps=cfg.mode.warmup_steps)
        recommendations = run.pop("recommendations", None)
        # Counted on our model of the same shapes: RePlay's blocks are the architecture we re-implement.
        same_shapes = build_model(cfg.model.name, len(data.vocabulary), cfg.model.params.model_params)
        run["train_flops_per_epoch"] = model_train_flops(same_shapes, cfg.model.params.model_params,
                                                         EpochShapes(**run["epoch_shapes"]))
    else:
        run, model = _fit(cfg, data, Path(cfg.paths.checkpoint_dir) / save_name, callbacks)
        if not run:  # another process of a multi-process run: the first one evaluates and reports
            return {}
        recommendations = None  # the steps mode only times training
        if model is not None:
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
        "precision": precision,
        **run,
        "hardware": hardware(),
        "versions": package_versions(),
    }
    if recommendations is not None:
        summary.update(evaluate(recommendations, data, cfg, results_dir))
    else:
        results_dir.mkdir(parents=True, exist_ok=True)
        print(f"Timed {run['timed_steps']} steps after {run['warmup_steps']}: {run['step_seconds']} s a step, "
              f"{run['train_tokens_per_second']} tokens/s, an epoch extrapolated to "
              f"{run['extrapolated_train_seconds_per_epoch']} s; training memory {run['training_memory_mb']} MB")
    summary["wall_seconds"] = round(time.perf_counter() - started, 1)
    summary["config"] = OmegaConf.to_container(cfg, resolve=True)
    (results_dir / "run.json").write_text(json.dumps(summary, indent=2))
    print(f"Results written to {results_dir}")
    return summary


def _fit(cfg: DictConfig, data: PreparedData, checkpoint_dir: Path,
         callbacks: tuple[L.Callback, ...]) -> tuple[dict, SequentialRecommender | None]:
    """Train our model with early stopping; returns what was measured and the best model, in eval mode
    (nothing in the other processes of a multi-process run; no model in the steps mode, `mode.steps`)."""
    model_params = cfg.model.params.model_params
    training = cfg.model.params.training_params
    model, changes = build_accelerated_model(cfg, len(data.vocabulary))
    item_counts = torch.bincount(torch.as_tensor(data.train.items, dtype=torch.long), minlength=len(data.vocabulary))
    train_loader = training_loader(data.train, model_params.max_seq_len, model.pad_id, training.batch_size,
                                   training.num_workers, cfg.env.SEED, training.length_bucketing)
    shapes = epoch_shapes(train_loader, model.training_example, model.pad_id)
    targets_per_batch = None
    if training.length_bucketing:  # the average number of targets of a batch (see RecommenderModule)
        targets_per_batch = shapes.targets / shapes.batches
    loss = build_loss(model_params, item_counts)
    check_logits_memory(loss, shapes, len(data.vocabulary), training_device(cfg.trainer))
    module = RecommenderModule(model, loss, training.learning_rate,
                               training.weight_decay, list(cfg.metrics.ks), targets_per_batch,
                               cfg.evaluation.item_chunk_size)
    validation_loader = torch.utils.data.DataLoader(
        EvaluationBatches(data.validation, model_params.max_seq_len, model.pad_id, batch_size=256), batch_size=None
    )
    timer = EpochTimer(samples_per_epoch=len(data.train), metrics={"ndcg@10": MONITOR})
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=MONITOR, mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    fingerprint = config_fingerprint(cfg)
    csv_logger = CSVLogger(cfg.paths.log_dir, name=cfg.model.save_name)
    loggers = [csv_logger, TensorBoardLogger(cfg.paths.log_dir, name=cfg.model.save_name, version=csv_logger.version)]
    schedule = {"max_epochs": training.max_epochs,
                "callbacks": [EarlyStopping(monitor=MONITOR, mode="max", patience=training.patience), checkpoint,
                              timer, ResumableRun(fingerprint, cfg.env.SEED, cfg.model.name, len(data.vocabulary)),
                              *callbacks]}
    if cfg.mode.steps is not None:  # time steps only: no validation, checkpoints or resume
        step_timer = StepTimer(cfg.mode.warmup_steps, cfg.mode.steps, batches_per_epoch=len(train_loader),
                               count=lambda batch: (len(batch), (batch != model.pad_id).sum().item()))
        schedule = {**timed_steps_trainer_args(cfg.mode.steps, cfg.mode.warmup_steps, len(train_loader)),
                    "callbacks": [step_timer]}
    trainer = L.Trainer(
        **schedule,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy,
        num_nodes=cfg.trainer.num_nodes,
        use_distributed_sampler=False,  # our batch samplers and validation split the work themselves
        enable_progress_bar=cfg.trainer.progress_bar,
        precision=training.precision,
        plugins=[AtomicCheckpointIO(trust=cfg.trust_checkpoint)],
        logger=loggers,
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        profiler=PyTorchProfiler(row_limit=cfg.mode.profiler.row_limit) if cfg.mode.profiler.enabled else None,
    )
    check_device_support(cfg, trainer.strategy.root_device, model)
    device = trainer.strategy.root_device
    if cfg.mode.steps is not None:
        memory = TrainingMemory(device)
        trainer.fit(module, train_loader)
        return {**step_timer.summary(), **memory.summary(), "epoch_shapes": shapes.as_dict(),
                "train_flops_per_epoch": model_train_flops(model, model_params, shapes)}, None
    # After the last check that can stop the run.
    resume_from = resume_checkpoint(checkpoint_dir, fingerprint, cfg.trust_checkpoint)
    mark_started(checkpoint_dir)
    memory = TrainingMemory(device)
    trainer.fit(module, train_loader, validation_loader, ckpt_path=resume_from)
    if trainer.global_rank != 0:
        return {}, None
    mark_complete(checkpoint_dir, fingerprint, trainer.current_epoch)
    memory_used = memory.summary()  # before the measurements below add anything

    # Measured after training, so that the timing synchronisations stay out of the training loop
    # (and only in a single process: after DDP the parameters may still carry its gradient hooks).
    module.to(device).train()  # Lightning may have moved it off the GPU

    def step(example: tuple[torch.Tensor, ...]) -> None:
        inputs, labels, target_mask = example
        with trainer.precision_plugin.forward_context():
            loss = module.loss(module.model(inputs), labels, target_mask, module.model.head)
        loss.backward()

    prep_share = None
    if trainer.world_size == 1:
        prep_share = round(data_preparation_share(iter(train_loader), lambda batch: model.training_example(
            batch.to(device)), step, device), 4)
    module.zero_grad(set_to_none=True)

    best = load_checkpoint(checkpoint.best_model_path, map_location=device)
    module.load_state_dict(best["state_dict"])
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"item_id": data.vocabulary.item_ids}).to_parquet(checkpoint_dir / "items.parquet", index=False)
    run = {
        "best_checkpoint": checkpoint.best_model_path,
        "best_validation_ndcg@10": float(checkpoint.best_model_score),
        "epochs_run": trainer.current_epoch,
        "accelerations": [vars(change) for change in changes],
        **timer.summary(),
        **memory_used,
        "data_preparation_share": prep_share,
        "padding_share": round(padding_share(train_loader), 4),
        "epoch_shapes": shapes.as_dict(),
        "train_flops_per_epoch": model_train_flops(model, model_params, shapes),
    }
    return run, module.model.eval()


def evaluate(recommendations: dict[str, pd.DataFrame], data: PreparedData, cfg: DictConfig,
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
