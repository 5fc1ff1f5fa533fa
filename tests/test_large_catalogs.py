"""Large catalogs: losses that hold [targets x items] logits are checked against the memory available."""

import pytest
import torch

from replay_accelerated.training.flops import EpochShapes
from replay_accelerated.errors import ConfigError
from replay_accelerated.losses import CrossEntropyLoss, CutCrossEntropyLoss, FullPositionsCrossEntropyLoss
from replay_accelerated.training import fit

# 10 batches of 32 x 64 tokens with 300 targets each.
SHAPES = EpochShapes(batches=10, tokens=10 * 32 * 64, real_tokens=10 * 32 * 40, attention_pairs=0, targets=3000)
GB = 2**30


@pytest.mark.parametrize("available_gb, outcome", [(100, "fine"), (12, "warning"), (3, "refused")])
def test_full_ce_at_a_million_items_is_warned_or_refused_with_the_memory_it_needs(monkeypatch, capsys,
                                                                                available_gb: float, outcome: str):
    monkeypatch.setattr(fit, "available_memory_bytes", lambda device: available_gb * GB)
    needed_gb = 300 * 1_000_000 * 12 / GB  # targets x items x (logits, softmax, gradient) in fp32: 3.4 GB
    check = lambda: fit.check_logits_memory(CrossEntropyLoss(), SHAPES, 1_000_000, torch.device("cpu"))  # noqa: E731
    if outcome == "refused":
        with pytest.raises(ConfigError, match=f"about {needed_gb:.1f} GB at 1,000,000 items.*loss_type=CCE"):
            check()
        return
    check()
    printed = capsys.readouterr().out
    warning = f"Warning: loss_type CrossEntropyLoss holds the [targets x items] logits of a batch: about {needed_gb:.1f}"
    assert (warning in printed) == (outcome == "warning")


def test_chunked_and_full_position_losses_are_counted_by_what_they_hold(monkeypatch, capsys):
    monkeypatch.setattr(fit, "available_memory_bytes", lambda device: 1 * GB)
    fit.check_logits_memory(CutCrossEntropyLoss(4096), SHAPES, 1_000_000, torch.device("cpu"))  # never all logits
    assert capsys.readouterr().out == ""
    with pytest.raises(ConfigError, match="about 91.6 GB"):  # every one of the 2,048 positions of a batch
        fit.check_logits_memory(FullPositionsCrossEntropyLoss(), SHAPES, 4_000_000, torch.device("cpu"))
