"""The benchmark: the all-pairs sweep design, time to target, and a quick bench end to end."""

import itertools
from pathlib import Path

import pandas as pd

from conftest import TINY_SYNTHETIC, run_main
from replay_accelerated.benchmark.bench import TABLE_COLUMNS, pairwise_variants, time_to_target


def test_pairwise_variants_cover_every_value_pair_with_fewer_runs_than_the_product():
    options = {
        "loss": {name: [f"loss={name}"] for name in ("CE", "CE_sampled", "BCE", "SCE", "CCE")},
        "act_fn": {name: [f"act={name}"] for name in ("gelu", "selu", "silu")},
        "head": {name: [f"head={name}"] for name in ("linear", "swichback", "tied")},
        "precision": {name: [f"precision={name}"] for name in ("fp32", "bf16")},
    }
    variants = pairwise_variants(options)
    assert len(variants) < 5 * 3 * 3 * 2
    chosen = [dict(part.split("=") for part in name.split(",")) for name in variants]
    for a, b in itertools.combinations(options, 2):
        for va, vb in itertools.product(options[a], options[b]):
            assert any(c[a] == va and c[b] == vb for c in chosen), (a, va, b, vb)
    for name, overrides in variants.items():  # each variant carries its values' overrides
        pairs = (part.split("=") for part in name.split(","))
        assert overrides == [override for option, value in pairs for override in options[option][value]]


QUICK = [  # TINY_SYNTHETIC without its epoch settings (the quick mode sets those) and its metric choice
    override for override in TINY_SYNTHETIC if not override.startswith(("metrics.", "model.params.training_params.max_epochs",
                                                                       "model.params.training_params.patience"))
]


def test_quick_bench_writes_filled_csv_markdown_and_plot_with_the_replay_row(home: Path):
    variants = ["replay_CE_fp32", "CE_fp32", "fastest"]
    # The command's own choices (here the model) reach every variant; only the mode is replaced.
    result = run_main(home, "bench_quick", "model=sasrec_synthetic", *QUICK, f"mode.bench.only=[{','.join(variants)}]")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "[bench 3/3] fastest" in result.stdout  # progress

    out = home / "results" / "bench" / "quick"
    table = pd.read_csv(out / "results.csv")
    assert list(table["variant"]) == variants
    assert table[TABLE_COLUMNS].notna().all().all(), table[TABLE_COLUMNS].isna().sum()
    assert list(table["implementation"]) == ["replay", "replay_accelerated", "replay_accelerated"]
    assert (table["epochs_run"] == 2).all() and (table["model"] == "sasrec").all()
    assert table.loc[0, "speed_up"] == 1.0 and table.loc[0, "memory_ratio"] == 1.0
    assert (table["test_ndcg@10_low"] <= table["test_ndcg@10"]).all()
    assert (table["test_ndcg@10"] <= table["test_ndcg@10_high"]).all()
    assert ((table["data_preparation_share"] > 0) & (table["data_preparation_share"] < 1)).all()
    assert table.loc[2, "padding_share"] < table.loc[1, "padding_share"]  # length bucketing in "fastest"
    assert table.loc[2, "precision"] == "bf16-mixed"
    markdown = (out / "results.md").read_text()
    assert all(f"| {variant} " in markdown for variant in variants) and "Hardware:" in markdown
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rerun = run_main(home, "bench_quick", "model=sasrec_synthetic", *QUICK, f"mode.bench.only=[{','.join(variants)}]")
    assert rerun.returncode == 0
    assert rerun.stdout.count("already in") == 3  # finished variants are kept, not trained again


def test_bench_names_unknown_variants(home: Path):
    result = run_main(home, "bench_quick", "mode.bench.only=[fastest,nope]")
    assert result.returncode == 2
    assert "'mode.bench.only' names ['nope']" in result.stderr and "replay_CE_fp32" in result.stderr


def test_time_to_target_is_the_first_validation_at_the_reference_best():
    history = [{"elapsed_seconds": 3.0, "ndcg@10": 0.1}, {"elapsed_seconds": 6.0, "ndcg@10": 0.3},
               {"elapsed_seconds": 9.0, "ndcg@10": 0.2}]
    assert time_to_target(history, 0.25) == 6.0
    assert time_to_target(history, 0.35) == "not reached"
