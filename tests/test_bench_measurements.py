"""What the bench measures besides time: analytical FLOPs, CPU flags, the code fingerprint."""

from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import nn

from replay_accelerated.benchmark import fingerprint
from replay_accelerated.training.flops import (
    EpochShapes,
    epoch_shapes,
    head_items_per_target,
    train_flops_per_epoch,
)
from replay_accelerated.config import ModelParams
from replay_accelerated.models import build_model
from replay_accelerated.training import measurements


class TwoBlocks(nn.Module):
    """Blocks of known linear layers, with norms and activations that count nothing."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(8, 32), nn.GELU(), nn.Linear(32, 8), nn.LayerNorm(8))
                                    for _ in range(2))


def test_train_flops_count_block_linears_attention_and_head_three_times():
    shapes = EpochShapes(batches=2, tokens=100, real_tokens=60, attention_pairs=1000, targets=15)
    linear = 2 * (2 * 8 * 32 + 2 * 32 * 8) * 100  # two blocks, per token
    attention = 2 * 4 * 8 * 1000  # two blocks: scores and weighted sum, 2 * 2 * W * H per token
    head = 2 * 8 * 50 * 15
    assert train_flops_per_epoch(TwoBlocks(), shapes, hidden_size=8, head_items=50) == 3 * (linear + attention + head)


def test_sampled_losses_score_the_positive_and_the_negatives_only():
    params = OmegaConf.structured(ModelParams(loss_type="CE_sampled", loss_sample_count=99))
    assert head_items_per_target(params, n_items=5000) == 100
    assert head_items_per_target(OmegaConf.structured(ModelParams(loss_type="CE")), n_items=5000) == 5000


def test_epoch_shapes_of_a_real_model_count_padding_and_targets():
    model = build_model("sasrec", 30, OmegaConf.structured(ModelParams(hidden_size=8, head_count=2, max_seq_len=4)))
    pad = model.pad_id
    batches = [torch.tensor([[pad, pad, 1, 2, 3], [4, 5, 6, 7, 8]]), torch.tensor([[pad, pad, pad, 9, 10]])]
    shapes = epoch_shapes(batches, model.training_example, pad)
    assert (shapes.batches, shapes.tokens, shapes.attention_pairs) == (2, 12, 2 * 16 + 16)
    assert shapes.real_tokens == 2 + 4 + 1  # inputs are the sequences without their last item
    assert shapes.targets == 2 + 4 + 1  # SASRec: every real input predicts the next item
    assert train_flops_per_epoch(model, shapes, 8, 30) > 0


def test_cpu_flags_lists_only_known_flags():
    assert set(measurements.cpu_flags()) <= set(measurements.CPU_FLAGS)


def test_the_code_fingerprint_changes_with_any_source_or_config_file(tmp_path: Path):
    for name in ("src/pkg/a.py", "configs/x.yaml", "pyproject.toml", "tests/t.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1")
    before = fingerprint.code_fingerprint(tmp_path)
    (tmp_path / "tests" / "t.py").write_text("2")  # not part of the fingerprint
    assert fingerprint.code_fingerprint(tmp_path) == before
    (tmp_path / "configs" / "x.yaml").write_text("2")
    assert fingerprint.code_fingerprint(tmp_path) != before


def test_the_installed_package_is_fingerprinted_from_its_checkout():
    root = fingerprint.repository_root()
    assert (root / "src" / "replay_accelerated").is_dir()
    assert len(fingerprint.code_fingerprint()) == 16


def test_counting_an_epoch_leaves_the_random_generator_as_it_was():
    model = build_model("bert4rec", 30, OmegaConf.structured(ModelParams(hidden_size=8, head_count=2, max_seq_len=4)))
    batches = [torch.randint(0, 30, (4, 5)) for _ in range(3)]
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert epoch_shapes(batches, model.training_example, model.pad_id).targets > 0
    assert torch.equal(torch.rand(3), expected)


def test_training_memory_is_what_the_window_added_and_the_peak_keeps_what_came_before():
    before = torch.ones(300 * 2**20 // 4)  # a peak before training...
    del before
    memory = measurements.TrainingMemory(torch.device("cpu"))
    during = torch.ones(200 * 2**20 // 4)  # ...and 200 MB that training holds
    used = memory.summary()
    del during
    assert 190 <= used["training_memory_mb"] <= 260
    assert used["peak_memory_mb"] >= 300
