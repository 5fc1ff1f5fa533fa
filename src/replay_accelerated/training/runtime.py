"""What every mode that runs a model does first: export the environment, check the output folders
and the device, and assemble the configured model with its accelerations."""

import os
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig

from replay_accelerated.acceleration.apply import Change, apply_accelerations, format_changes
from replay_accelerated.acceleration.switchback import SwitchBackLinear, int8_matmul_problem
from replay_accelerated.errors import ConfigError, UserError
from replay_accelerated.models import SequentialRecommender, build_model


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
