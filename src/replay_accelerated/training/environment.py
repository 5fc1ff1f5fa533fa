"""What every mode does before its work: export the environment (`env.*`) before torch starts its threads,
and check that the output folders can be written (by the first process only, under DDP)."""

import os
from pathlib import Path

import lightning as L
import torch

from replay_accelerated import outputs


def check_writable(paths, save_name: str | None = None) -> None:
    """Every output folder can be created and written, before any work is done; with `save_name`, the
    run's own folders inside them too."""
    for key in ("results_dir", "checkpoint_dir", "log_dir"):
        outputs.check_writable(paths[key], f"paths.{key}")
        if save_name is not None:
            outputs.check_writable(Path(paths[key]) / save_name, f"paths.{key} (or model.save_name)")


def first_process() -> bool:
    """Whether this is the first (or only) process of a run: the others of a DDP run (started by Lightning
    or torchrun, which set these variables) leave the run's folders to it."""
    return all(os.environ.get(name, "0") == "0" for name in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def apply_env(env) -> None:
    """Export the `env` config before torch touches a device, and seed everything."""
    for name in ("CUDA_DEVICE_ORDER", "CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS"):
        if env[name] is not None:
            os.environ[name] = str(env[name])
    if env.OMP_NUM_THREADS is not None:
        torch.set_num_threads(int(env.OMP_NUM_THREADS))
    L.seed_everything(env.SEED, workers=True, verbose=False)
