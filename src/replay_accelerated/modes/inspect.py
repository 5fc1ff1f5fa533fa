"""`mode=inspect`: build and print the configured model and the table of its accelerations, without training."""

from pathlib import Path

from omegaconf import DictConfig

from replay_accelerated.acceleration.apply import Change
from replay_accelerated.config import ConfigOrigin
from replay_accelerated.data.pipeline import prepare_data
from replay_accelerated.training.assembly import build_accelerated_model
from replay_accelerated.training.environment import apply_env


def run(cfg: DictConfig, origin: ConfigOrigin) -> list[Change]:
    apply_env(cfg.env)
    data = prepare_data(cfg.dataset, Path(cfg.paths.data_dir))  # the catalog size sets the head's width
    _, changes = build_accelerated_model(cfg, len(data.vocabulary), data.item_features)
    return changes
