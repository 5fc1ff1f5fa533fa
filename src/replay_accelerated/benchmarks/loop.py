"""Lightning's share of a training step: the same steps under Lightning's loop and in a bare loop.

    python -m replay_accelerated.benchmarks.loop out=docs/benchmarks/cpu_loop_overhead

Where a step takes a few milliseconds, what runs around it (hooks, logging, the progress bar,
moving the batch) can cost as much as the arithmetic. Both loops train the same RecommenderModule
(fresh weights each time) with the same batches, drawn like training's (training/batches.py) from
synthetic long-tailed histories (`items`, default MovieLens-1M's 3,706), and the same Adam:
- bare: for each TrainingExample: move it to the device, `training_loss`, backward, optimizer step;
- lightning: the Trainer that `mode=train` builds (no validation, checkpoints or logger; as in the
  steps mode), with no progress bar, with training's (redrawn every `PROGRESS_BAR_STEPS` steps),
  and with Lightning's default one (redrawn every step).
Each loop runs `warmup` steps, then `steps` timed steps (mean step time); the loops take turns
`repeats` times, and the table holds the median step time over the repeats and the median of each
repeat's ratio to that repeat's bare loop. Writes loop.csv and loop.md to `out` (settings: `--help`).
"""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from lightning.pytorch.callbacks import TQDMProgressBar
from omegaconf import OmegaConf

from replay_accelerated.benchmarks.render import write_measurements
from replay_accelerated.benchmarks.settings import parse_settings, setting
from replay_accelerated.config import ModelParams
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.losses import build_loss
from replay_accelerated.models import build_model
from replay_accelerated.training.batches import training_loader
from replay_accelerated.training.fit import PROGRESS_BAR_STEPS
from replay_accelerated.training.measurements import StepTimer, synchronize, timed_steps_trainer_args
from replay_accelerated.training.module import RecommenderModule


def histories(users: int, items: int, max_seq_len: int) -> UserSequences:
    """Random items, lengths long-tailed as in MovieLens (geometric, mean about 40, at least 2)."""
    lengths = np.random.default_rng(0).geometric(1 / 40, size=users).clip(2, 4 * max_seq_len)
    events = pd.DataFrame({"user_id": np.repeat(np.arange(users), lengths),
                           "item_id": np.random.default_rng(1).integers(0, items, lengths.sum())})
    return UserSequences.from_events(events, ItemVocabulary.fit(events))


@dataclass
class LoopSettings:
    model: list[str] = setting(["sasrec", "bert4rec"], "models to measure", choices=("sasrec", "bert4rec"))
    hidden: int = setting(64, "hidden size")
    batch: int = setting(32, "users per batch")
    max_seq_len: int = setting(50, "history length the model reads")
    items: int = setting(3706, "catalog size (MovieLens-1M's by default)")
    users: int | None = setting(None, "synthetic users; null: one batch per warm-up and timed step")
    warmup: int = setting(20, "steps before the timed ones")
    steps: int = setting(100, "timed steps")
    repeats: int = setting(3, "times the loops take turns")
    compiled: bool = setting(False, "the step through torch.compile (compile: true)")
    out: Path = setting(Path("loop"), "folder for loop.csv and loop.md")


def build(settings: LoopSettings, model_name: str) -> tuple[RecommenderModule, torch.utils.data.DataLoader]:
    torch.manual_seed(0)
    params = OmegaConf.merge(OmegaConf.structured(ModelParams), {
        "hidden_size": settings.hidden, "max_seq_len": settings.max_seq_len, "loss_type": "CE"})
    model = build_model(model_name, settings.items, params)
    module = RecommenderModule(model, build_loss(params, None), 1e-3, 0.0, [10], compiled=settings.compiled)
    users = settings.users or (settings.warmup + settings.steps) * settings.batch
    sequences = histories(users, settings.items, settings.max_seq_len)
    loader = training_loader(sequences, settings.max_seq_len, model.pad_id, model.training_example, settings.batch,
                             seed=0)
    return module, loader


def bare_loop(settings: LoopSettings, model_name: str, device: torch.device) -> float:
    module, loader = build(settings, model_name)
    module.to(device).train()
    optimizer = module.configure_optimizers()
    examples = iter(loader)
    for index in range(settings.warmup + settings.steps):
        if index == settings.warmup:
            synchronize(device)
            started = time.perf_counter()
        example = move_data_to_device(next(examples), device)
        module.training_loss(example).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    synchronize(device)
    return (time.perf_counter() - started) / settings.steps


def lightning_loop(settings: LoopSettings, model_name: str, device: torch.device,
                   progress_bar_steps: int | None) -> float:
    """progress_bar_steps: steps between redraws of the progress bar, or None for no progress bar."""
    module, loader = build(settings, model_name)
    timer = StepTimer(settings.warmup, settings.steps, count=lambda batch: (len(batch.inputs), 0),
                      batches_per_epoch=len(loader))
    bar = [] if progress_bar_steps is None else [TQDMProgressBar(refresh_rate=progress_bar_steps)]
    trainer = L.Trainer(**timed_steps_trainer_args(settings.steps, settings.warmup, len(loader)),
                        callbacks=[timer, *bar], accelerator=device.type, devices=1, logger=False,
                        enable_progress_bar=bool(bar), enable_model_summary=False, num_sanity_val_steps=0,
                        use_distributed_sampler=False)
    trainer.fit(module, loader)
    return timer.seconds / settings.steps


def main() -> None:
    settings = parse_settings(LoopSettings, __doc__.splitlines()[0])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows = []
    for model in settings.model:
        loops = {"bare": lambda: bare_loop(settings, model, device),
                 "lightning, no progress bar": lambda: lightning_loop(settings, model, device, None),
                 f"lightning, progress bar every {PROGRESS_BAR_STEPS} steps (training's)":
                     lambda: lightning_loop(settings, model, device, PROGRESS_BAR_STEPS),
                 "lightning, progress bar every step (Lightning's default)":
                     lambda: lightning_loop(settings, model, device, 1)}
        seconds = {name: [] for name in loops}
        for _ in range(settings.repeats):
            for name, loop in loops.items():
                seconds[name].append(loop())
        for name, values in seconds.items():
            # Paired: each loop against the bare loop of the same repeat, which ran just before it, so that
            # drifts in the machine's speed between repeats cancel.
            ratios = [value / bare for value, bare in zip(values, seconds["bare"])]
            rows.append({"model": model, "loop": name, "compiled": settings.compiled,
                         "median_step_ms": round(1000 * statistics.median(values), 3),
                         "step_ms_per_repeat": " ".join(f"{1000 * value:.2f}" for value in values),
                         "vs_bare": round(statistics.median(ratios), 3),
                         "vs_bare_per_repeat": " ".join(f"{ratio:.3f}" for ratio in ratios)})
            print(rows[-1], flush=True)
    write_measurements(rows, settings.out, "loop", "Lightning's share of a training step", device,
                       f"Hidden {settings.hidden}, batch {settings.batch}, max_seq_len {settings.max_seq_len}, "
                       f"{settings.items:,} items, CE, fp32; {settings.steps} steps timed after {settings.warmup}, "
                       f"{settings.repeats} repeats taking turns (medians; vs_bare: the median of each repeat's "
                       "ratio).")


if __name__ == "__main__":
    main()
