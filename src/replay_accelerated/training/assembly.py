"""The configured model with its accelerations (acceleration/apply.py), and the check that the training device
runs what it asks for (bf16 on a GPU, int8 products for the SwitchBack head)."""

import torch
from omegaconf import DictConfig

from replay_accelerated.acceleration.apply import Change, apply_accelerations, format_changes
from replay_accelerated.acceleration.switchback import SwitchBackScoring, int8_matmul_problem
from replay_accelerated.data.item_features import ItemFeatures
from replay_accelerated.errors import ConfigError
from replay_accelerated.models import SequentialRecommender, build_model
from replay_accelerated.training.precision import Precision


def build_accelerated_model(cfg: DictConfig, n_items: int, item_features: ItemFeatures | dict | None = None
                            ) -> tuple[SequentialRecommender, list[Change]]:
    """The configured model with its accelerations applied, printed with the table of what changed.
    `item_features`: the data's features (their values are copied in), a checkpoint's stored spec (whose values
    its weights hold), or None."""
    spec = item_features.spec() if isinstance(item_features, ItemFeatures) else item_features
    model = build_model(cfg.model.name, n_items, cfg.model.params.model_params, spec)
    if isinstance(item_features, ItemFeatures):
        model.item_features.load_values(item_features)
    changes = apply_accelerations(model, cfg.acceleration)
    print(model)  # the reference project's way to check which layers are used
    print(format_changes(changes))
    return model, changes


def check_device_support(precision: Precision, device: torch.device, model: SequentialRecommender) -> None:
    """The run's precision (decided once, training/precision.py) and int8 head can run on the training device;
    stop before training if not."""
    precision.check_runs_on(device)
    if isinstance(model.head, SwitchBackScoring):
        problem = int8_matmul_problem(device)
        if problem is not None:
            raise ConfigError(
                f"acceleration.model.acceleration_config.head=switchback_head needs int8 matrix multiplication "
                f"(torch._int_mm), which is unavailable on {device} here ({problem}); "
                "use head=linear_head, or train on a device with int8 support"
            )
