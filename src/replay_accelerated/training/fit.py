"""Train our model: Lightning with early stopping on validation NDCG@10, resumable checkpoints, and what
the run measured (epoch times, memory, padding and data-preparation shares, analytical FLOPs).

`mode.steps=N` (the bench's steps mode) only times N training steps after `mode.warmup_steps`,
without validation, checkpoints or resume.
"""

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import pandas as pd
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import Logger
from lightning.pytorch.profilers import PyTorchProfiler
from omegaconf import DictConfig

from replay_accelerated.acceleration.apply import acceleration_settings
from replay_accelerated.data.pipeline import PreparedData
from replay_accelerated.errors import ConfigError
from replay_accelerated.evaluation.ranking import EvaluationBatches
from replay_accelerated.losses import build_loss, full_logits_bytes
from replay_accelerated.models import SequentialRecommender
from replay_accelerated.models.files import load_checkpoint
from replay_accelerated.training.batches import TrainingExample, padding_share, training_loader
from replay_accelerated.training.checkpoints import (
    UNFINISHED,
    AtomicCheckpointIO,
    KeepSigtermHandler,
    ResumableRun,
    config_fingerprint,
    resume_checkpoint,
)
from replay_accelerated.training.flops import EpochShapes, epoch_shapes, model_train_flops
from replay_accelerated.training.measurements import (
    EpochTimer,
    StepTimer,
    TrainingMemory,
    available_memory_bytes,
    compile_seconds,
    data_preparation_share,
    timed_steps_trainer_args,
)
from replay_accelerated.training.module import RecommenderModule
from replay_accelerated.training.precision import Precision, training_device
from replay_accelerated.training.assembly import build_accelerated_model, check_device_support
from replay_accelerated.training.warm_start import warm_start

PROGRESS_BAR_STEPS = 25  # steps between redraws of the progress bar
MONITOR = "val_ndcg@10"


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


def fit(cfg: DictConfig, data: PreparedData, checkpoint_dir: Path, callbacks: Sequence[L.Callback],
        loggers: Sequence[Logger], precision: Precision) -> tuple[dict, SequentialRecommender | None]:
    """Train our model with early stopping in the run's `precision` (decided once, training/precision.py); returns
    what was measured and the best model, in eval mode (nothing in the other processes of a multi-process run; no
    model in the steps mode, `mode.steps`).

    Checkpoints and the item vocabulary are written to `checkpoint_dir/unfinished/`, which the caller
    publishes when the whole run has succeeded (training/checkpoints.py)."""
    checkpoint_dir = checkpoint_dir / UNFINISHED
    model_params = cfg.model.params.model_params
    training = cfg.model.params.training_params
    model, changes = build_accelerated_model(cfg, len(data.vocabulary), data.item_features)
    warm = warm_start(model, data.vocabulary, cfg) if training.init_from is not None else None
    item_counts = torch.bincount(torch.as_tensor(data.train.items, dtype=torch.long), minlength=len(data.vocabulary))
    train_loader = training_loader(data.train, model_params.max_seq_len, model.pad_id, model.training_example,
                                   training.batch_size, cfg.env.SEED, training.length_bucketing)
    shapes = epoch_shapes((batch.to("cpu") for batch in train_loader), model.pad_id)
    targets_per_batch = None
    if training.length_bucketing:  # the average number of targets of a batch (see RecommenderModule)
        targets_per_batch = shapes.targets / shapes.batches
    loss = build_loss(model_params, item_counts)
    check_logits_memory(loss, shapes, len(data.vocabulary), training_device(cfg.trainer))
    module = RecommenderModule(model, loss, training.learning_rate,
                               training.weight_decay, list(cfg.metrics.ks), targets_per_batch,
                               cfg.evaluation.item_chunk_size, compiled=acceleration_settings(cfg.acceleration).compile)
    validation_loader = torch.utils.data.DataLoader(
        EvaluationBatches(data.validation, model_params.max_seq_len, model.pad_id, batch_size=256), batch_size=None
    )
    timer = EpochTimer(samples_per_epoch=len(data.train), metrics={"ndcg@10": MONITOR})
    checkpoint = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=MONITOR, mode="max",
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    fingerprint = config_fingerprint(cfg)
    schedule = {"max_epochs": training.max_epochs,
                "callbacks": [EarlyStopping(monitor=MONITOR, mode="max", patience=training.patience), checkpoint,
                              timer, ResumableRun(fingerprint, cfg.env.SEED, cfg.model.name, len(data.vocabulary),
                                                  model.architecture()),
                              *callbacks]}
    if cfg.mode.steps is not None:  # time steps only: no validation, checkpoints or resume
        step_timer = StepTimer(cfg.mode.warmup_steps, cfg.mode.steps, batches_per_epoch=len(train_loader),
                               count=lambda batch: (len(batch.inputs), (batch.inputs != model.pad_id).sum()))
        schedule = {**timed_steps_trainer_args(cfg.mode.steps, cfg.mode.warmup_steps, len(train_loader)),
                    "callbacks": [step_timer]}
    schedule["callbacks"].append(KeepSigtermHandler())
    if cfg.trainer.progress_bar:  # Lightning's default redraws it every step: 2 ms of a 10 ms step (benchmarks/loop.py)
        schedule["callbacks"].append(TQDMProgressBar(refresh_rate=PROGRESS_BAR_STEPS))
    trainer = L.Trainer(
        **schedule,
        accelerator=cfg.trainer.accelerator,
        devices=cfg.trainer.devices,
        strategy=cfg.trainer.strategy,
        num_nodes=cfg.trainer.num_nodes,
        use_distributed_sampler=False,  # our batch samplers and validation split the work themselves
        enable_progress_bar=cfg.trainer.progress_bar,
        precision=precision.used,
        plugins=[AtomicCheckpointIO(trust=cfg.trust_checkpoint)],
        logger=list(loggers),
        num_sanity_val_steps=0,
        log_every_n_steps=10,
        profiler=PyTorchProfiler(row_limit=cfg.mode.profiler.row_limit) if cfg.mode.profiler.enabled else None,
    )
    check_device_support(precision, trainer.strategy.root_device, model)
    device = trainer.strategy.root_device
    if cfg.mode.steps is not None:
        memory = TrainingMemory(device)
        trainer.fit(module, train_loader)
        return {**step_timer.summary(), **memory.summary(), "compile_seconds": round(compile_seconds(), 1),
                "epoch_shapes": shapes.as_dict(),
                "train_flops_per_epoch": model_train_flops(model, model_params, shapes)}, None
    # After the last check that can stop the run.
    resume_from = resume_checkpoint(checkpoint_dir, fingerprint, cfg.trust_checkpoint)
    memory = TrainingMemory(device)
    trainer.fit(module, train_loader, validation_loader, ckpt_path=resume_from)
    if trainer.global_rank != 0:
        return {}, None
    memory_used = memory.summary()  # before the measurements below add anything

    # Measured after training, so that the timing synchronisations stay out of the training loop
    # (and only in a single process: after DDP the parameters may still carry its gradient hooks).
    module.to(device).train()  # Lightning may have moved it off the GPU

    def step(example: TrainingExample) -> None:
        with trainer.precision_plugin.forward_context():
            loss = module.training_loss(example)
        loss.backward()

    prep_share = None
    if trainer.world_size == 1:
        prep_share = round(data_preparation_share(iter(train_loader), lambda batch: move_data_to_device(
            batch, device), step, device), 4)
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
        "warm_start": warm,
        **timer.summary(),
        **memory_used,
        "data_preparation_share": prep_share,
        "compile_seconds": round(compile_seconds(), 1),
        "padding_share": round(padding_share(train_loader), 4),
        "epoch_shapes": shapes.as_dict(),
        "train_flops_per_epoch": model_train_flops(model, model_params, shapes),
    }
    return run, module.model.eval()
