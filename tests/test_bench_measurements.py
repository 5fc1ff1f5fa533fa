"""What the bench measures besides time: analytical FLOPs, CPU flags, the code fingerprint."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from conftest import compose
from replay_accelerated.benchmarks import fingerprint
from replay_accelerated.benchmarks.rows import variant_row
from replay_accelerated.config import ModelParams
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.models import build_model
from replay_accelerated.training.batches import TrainingExample, training_loader
from replay_accelerated.training.flops import (
    EpochShapes,
    epoch_shapes,
    head_flops,
    head_items_per_target,
    train_flops_per_epoch,
)
from replay_accelerated.training import measurements, precision

PRECISION = "model.params.training_params.precision"
BF16_PARAMETERS = ["acceleration=none", "acceleration.model.acceleration_config.dtype=bf16"]  # under 32-true
# Every way a variant asks for bf16: name -> overrides (and one that does not).
BF16_VARIANTS = {"bf16_mixed": [f"{PRECISION}=bf16-mixed"], "bf16_true": [f"{PRECISION}=bf16-true"],
                 "bf16_parameters": BF16_PARAMETERS}


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
    params = OmegaConf.structured(ModelParams(loss_type="CE", hidden_size=8))
    assert head_flops(params, shapes, n_items=50) == head
    assert train_flops_per_epoch(TwoBlocks(), shapes, hidden_size=8, head=head) == 3 * (linear + attention + head)


def test_sampled_losses_score_the_positive_and_the_negatives_only():
    params = OmegaConf.structured(ModelParams(loss_type="CE_sampled", loss_sample_count=99))
    assert head_items_per_target(params, n_items=5000) == 100
    assert head_items_per_target(OmegaConf.structured(ModelParams(loss_type="CE")), n_items=5000) == 5000


def test_sce_counts_its_buckets_instead_of_the_catalog():
    # Read from the loss's entry (losses/scalable.py): the bucket centers against the rows and the items of
    # each batch, then one [x, y] logit block per bucket and batch.
    shapes = EpochShapes(batches=2, tokens=100, real_tokens=60, attention_pairs=1000, targets=15)
    params = OmegaConf.structured(ModelParams(loss_type="SCE", hidden_size=8, n_buckets=4, bucket_size_x=6,
                                              bucket_size_y=10))
    assert head_flops(params, shapes, n_items=50) == 2 * 8 * 4 * (15 + 50 * 2) + 2 * 8 * 4 * 6 * 10 * 2


def test_replays_ce_counts_the_head_at_every_position():
    # CE_full_positions (RePlay's CE) runs the head over every position of the batch, padding included.
    shapes = EpochShapes(batches=2, tokens=100, real_tokens=60, attention_pairs=1000, targets=15)
    params = OmegaConf.structured(ModelParams(loss_type="CE_full_positions", hidden_size=8))
    assert head_flops(params, shapes, n_items=50) == 2 * 8 * 50 * 100


def test_epoch_shapes_of_a_real_model_count_padding_and_targets():
    model = build_model("sasrec", 30, OmegaConf.structured(ModelParams(hidden_size=8, head_count=2, max_seq_len=4)))
    pad = model.pad_id
    batches = [torch.tensor([[pad, pad, 1, 2, 3], [4, 5, 6, 7, 8]]), torch.tensor([[pad, pad, pad, 9, 10]])]
    examples = [TrainingExample(*model.training_example(batch, None), 64) for batch in batches]
    shapes = epoch_shapes(examples, pad)
    assert (shapes.batches, shapes.tokens, shapes.attention_pairs) == (2, 12, 2 * 16 + 16)
    assert shapes.real_tokens == 2 + 4 + 1  # inputs are the sequences without their last item
    assert shapes.targets == 3 + 4 + 2  # SASRec: every real next item is a target, the first one too
    assert train_flops_per_epoch(model, shapes, 8, head=0.0) > 0


def test_cpu_flags_lists_only_known_flags():
    assert set(measurements.cpu_flags()) <= set(measurements.CPU_FLAGS)


def test_the_code_fingerprint_changes_with_any_source_or_config_file(tmp_path: Path):
    for name in ("src/pkg/a.py", "src/pkg/configs/x.yaml", "pyproject.toml", "tests/t.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("1")
    before = fingerprint.code_fingerprint(tmp_path)
    (tmp_path / "tests" / "t.py").write_text("2")  # not part of the fingerprint
    assert fingerprint.code_fingerprint(tmp_path) == before
    (tmp_path / "src" / "pkg" / "configs" / "x.yaml").write_text("2")
    assert fingerprint.code_fingerprint(tmp_path) != before


def test_the_installed_package_is_fingerprinted_from_its_checkout():
    root = fingerprint.repository_root()
    assert (root / "src" / "replay_accelerated").is_dir()
    assert len(fingerprint.code_fingerprint()) == 16


def test_counting_an_epoch_leaves_the_random_generator_as_it_was():
    # BERT4Rec's masks come from each batch's own seed (training/batches.py), not from the global generator.
    model = build_model("bert4rec", 30, OmegaConf.structured(ModelParams(hidden_size=8, head_count=2, max_seq_len=4)))
    events = pd.DataFrame({"user_id": np.repeat(np.arange(12), 6), "item_id": np.random.randint(0, 30, 72)})
    sequences = UserSequences.from_events(events, ItemVocabulary.fit(events))
    loader = training_loader(sequences, 4, model.pad_id, model.training_example, batch_size=4, seed=0)
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    assert epoch_shapes((plan.to("cpu") for plan in loader), model.pad_id).targets > 0
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


@pytest.mark.parametrize("flags", [(), ("amx_bf16",)])
def test_the_bench_skips_every_variant_that_computes_in_bf16_without_native_support(monkeypatch, tmp_path: Path,
                                                                                    flags: tuple):
    from replay_accelerated.modes.bench import resolve_variants

    monkeypatch.setattr(precision, "cpu_flags", lambda: ["avx2", *flags])
    variants = {"fp32": ["acceleration=none"], **BF16_VARIANTS}
    _, skipped = resolve_variants(variants, lambda overrides: compose(tmp_path, *overrides),
                                  precision.Bf16Support(torch.device("cpu")))
    assert list(skipped) == ([] if flags else list(BF16_VARIANTS))
    assert all(reason.startswith("skipped: no native bf16 on ") for reason in skipped.values())


@pytest.mark.parametrize("variant", ["fp32", *BF16_VARIANTS])
def test_the_mfu_of_a_row_that_computes_in_bf16_is_measured_against_the_bf16_probe(tmp_path: Path, variant: str):
    overrides = BF16_VARIANTS.get(variant, [])
    run = {"config": OmegaConf.to_container(compose(tmp_path, *overrides), resolve=True), "model": "bert4rec",
           "implementation": "replay_accelerated", "hardware": {"cpu_threads": 2},
           "epoch_shapes": {"real_tokens": 800, "tokens": 1000, "targets": 100},
           "timed_steps": 10, "step_seconds": 0.2, "extrapolated_train_seconds_per_epoch": 2.0,
           "train_samples_per_second": 10.0, "train_tokens_per_second": 400.0,
           "train_flops_per_epoch": 8e9, "peak_memory_mb": 100, "training_memory_mb": 50}
    probe = {"32-true": 1e10, "bf16-mixed": 4e10}
    context = {"machine": "a CPU", "code_fingerprint": "abc", "git_commit": "def"}
    row = variant_row(variant, 42, overrides, run, tmp_path, probe, context)
    expected = probe["32-true" if variant == "fp32" else "bf16-mixed"]
    assert row["matmul_flops_per_second"] == expected
    assert row["mfu"] == round(8e9 / 2.0 / expected, 4)
