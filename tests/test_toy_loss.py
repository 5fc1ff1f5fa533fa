"""A loss is its module and its registry entry (CONTRIBUTING, "Adding things"): a toy sampled loss with a parameter
of its own, defined and registered here and nowhere else, trains, is validated and has its FLOPs counted."""

from pathlib import Path

import pytest
import torch

from conftest import TINY_SYNTHETIC, compose
from replay_accelerated.config import ModelParams
from replay_accelerated.errors import ConfigError
from replay_accelerated.losses import LOSSES, Loss, loss_options
from replay_accelerated.losses.sampled import NegativeSamplingLoss
from replay_accelerated.losses.targets import valid_mean
from replay_accelerated.modes.train import train
from replay_accelerated.training.flops import EpochShapes, head_flops

PARAMS = "model.params.model_params"


class TemperedSampledSoftmax(NegativeSamplingLoss):
    """Softmax over the positive and the sampled negatives, its logits divided by a temperature (the new
    parameter): one class, with its check."""

    def __init__(self, n_negatives: int, temperature: float):
        super().__init__(n_negatives)
        self.temperature = temperature

    @staticmethod
    def check(model_params) -> tuple[str, str] | None:
        temperature = loss_options(model_params)["temperature"]
        return None if temperature > 0 else ("loss_params.temperature", f"must be positive, got {temperature}")

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor, head: torch.nn.Module,
                capacity: int | None = None) -> torch.Tensor:
        positive, negative, _, hits, valid = self.scores(hidden, labels, target_mask, head, capacity)
        logits = torch.cat([positive.unsqueeze(1), negative.masked_fill(hits, float("-inf"))], dim=1)
        logits = logits.float() / self.temperature  # [C, 1 + K], the positive first
        return valid_mean(torch.logsumexp(logits, dim=1) - logits[:, 0], valid)


# ... and its registry entry.
TOY = Loss(lambda model_params, item_counts: TemperedSampledSoftmax(
    int(model_params.loss_sample_count), float(loss_options(model_params)["temperature"])),
    items="sampled", options={"temperature": 1.0}, check=TemperedSampledSoftmax.check)


@pytest.fixture(autouse=True)
def registered(monkeypatch):
    monkeypatch.setitem(LOSSES, "toy", TOY)


def _config(home: Path, *overrides: str):
    return compose(home, *TINY_SYNTHETIC, "model=sasrec_synthetic", f"{PARAMS}.loss_type=toy",
                   f"{PARAMS}.loss_sample_count=20", *overrides)


def test_a_registered_loss_trains_with_its_parameter_and_counts_its_flops(tmp_path: Path):
    cfg = _config(tmp_path, f"+{PARAMS}.loss_params.temperature=0.5", "model.params.training_params.max_epochs=1")
    summary = train(cfg)
    assert len(summary["validation_history"]) == 1
    assert summary["validation_metrics"]["ndcg@10"] > summary["validation_popularity_ndcg@10"]
    # A sampled loss without a count of its own: 2 H per item scored (the positive and 20 negatives) per target.
    shapes = EpochShapes(**summary["epoch_shapes"])
    head = head_flops(cfg.model.params.model_params, shapes, n_items=120)  # the catalog does not enter it
    assert head == 2 * 32 * (1 + 20) * shapes.targets
    assert summary["train_flops_per_epoch"] > 3 * head


def test_its_parameter_is_validated_by_name(tmp_path: Path):
    with pytest.raises(ConfigError, match=rf"'{PARAMS}\.loss_params\.temperature'.*must be positive, got 0"):
        _config(tmp_path, f"+{PARAMS}.loss_params.temperature=0")
    with pytest.raises(ConfigError, match=rf"'{PARAMS}\.loss_params\.temprature'.*its parameters: \['temperature'\]"):
        _config(tmp_path, f"+{PARAMS}.loss_params.temprature=0.5")  # a typo
    defaults = ModelParams(loss_type="toy", loss_sample_count=20)
    assert loss_options(defaults) == {"temperature": 1.0}


def test_replays_own_model_takes_none_of_our_losses_parameters(tmp_path: Path):
    # RePlay's baseline honours every setting it is given, or the run stops (config_values.py).
    with pytest.raises(ConfigError, match=rf"'{PARAMS}\.loss_params'.*RePlay's losses take none"):
        compose(tmp_path, "model.implementation=replay", f"+{PARAMS}.loss_params.temperature=0.5")
