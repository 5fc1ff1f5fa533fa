"""The benchmark: the all-pairs sweep design, time to target, a quick bench end to end (seeds, a failing
variant, the reference rows, verdicts, MFU and the code fingerprint), the rows a rerun reuses, and the table's
verdicts (seeds a side, the same test users)."""

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hydra import initialize_config_dir

from conftest import PINNED_PRECISION, TINY_SYNTHETIC, run_main
from replay_accelerated.benchmarks.fingerprint import check_same_code_and_hardware, check_same_machine_speed
from replay_accelerated.config import CONFIG_DIR, ConfigOrigin
from replay_accelerated.modes.bench import pairwise_variants
from replay_accelerated.benchmarks.rows import EPOCHS_ONLY, SEED_COLUMNS, STEPS_ONLY, config_hash
from replay_accelerated.benchmarks.summary import summarize, time_to_target
from replay_accelerated.errors import UserError
from replay_accelerated.training.measurements import timed_steps_trainer_args
from replay_accelerated.validation import compose_run


def test_pairwise_variants_cover_every_value_pair_with_fewer_runs_than_the_product():
    options = {
        "loss": {name: [f"loss={name}"] for name in ("CE", "CE_sampled", "BCE", "SCE", "CCE")},
        "act_fn": {name: [f"act={name}"] for name in ("gelu", "selu", "silu")},
        "head": {name: [f"head={name}"] for name in ("linear", "switchback", "tied")},
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


@pytest.mark.slow  # four trainings and three bench runs: about 85 s; the steps-mode bench below stays in the default
def test_quick_bench_with_seeds_verdicts_mfu_a_failing_variant_and_fingerprints(home: Path):
    # The command's own choices (here the model) reach every variant; only the mode is replaced.
    # "broken" fails inside its training process (its filter leaves no interaction): the bench goes on.
    # `only` in another order than the matrix's: runs and tables keep the matrix's order.
    bench = ["bench_quick", "model=sasrec_synthetic", *QUICK, "mode.bench.only=[broken,CE_fp32,replay_best]",
             "mode.bench.seeds.CE_fp32=2",
             "+mode.bench.variants.broken=['dataset.preprocess.min_items_per_user=100000']"]
    result = run_main(home, *bench)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "[bench 3/4] CE_fp32 seed 43" in result.stdout  # progress, one process per (variant, seed)
    assert "broken seed 42 failed: error: no interactions are left after filtering" in result.stdout
    assert "variants ['broken'] of bench 'quick' failed" in result.stderr

    out = home / "results" / "bench" / "quick"
    runs = pd.read_csv(out / "results.csv")
    assert list(zip(runs["variant"], runs["seed"])) == [("replay_best", 42), ("CE_fp32", 42), ("CE_fp32", 43)]
    # NDCG@10 on rare targets is NaN where no test target is rare (here every item is seen often)
    rare = "test_rare_target_ndcg@10"
    assert runs[SEED_COLUMNS].drop(columns=["git_commit", *STEPS_ONLY, rare]).notna().all().all(), runs.isna().sum()
    assert rare in runs
    assert not runs["epoch_seconds_extrapolated"].any()
    assert list(runs["implementation"]) == ["replay", "replay_accelerated", "replay_accelerated"]
    assert runs.loc[0, "loss"] == "CE"  # RePlay's best loss for SASRec
    assert runs["code_fingerprint"].nunique() == 1 and (runs["hardware"] == runs.loc[0, "hardware"]).all()
    assert (runs["mfu"] > 0).all()  # (can exceed 1 at such tiny sizes, where the probe's product is inefficient)
    # RePlay's CE scores the catalog at every position, ours at the targets only.
    assert runs.loc[0, "targets_per_epoch"] == runs.loc[0, "tokens_per_epoch"]
    assert (runs.loc[1:, "targets_per_epoch"] < runs.loc[1:, "tokens_per_epoch"]).all()
    assert runs.loc[1, "test_ndcg@10"] != runs.loc[2, "test_ndcg@10"]  # the seeds differ

    summary = pd.read_csv(out / "summary.csv")
    assert list(summary["variant"]) == ["replay_best", "CE_fp32", "broken"]
    assert list(summary["seeds"].iloc[:2]) == [1, 2] and summary.loc[0, "speed_up_vs_best"] == 1.0
    assert summary.loc[0, "ndcg@10_vs_best"] == "reference" and summary.loc[0, "keeps_quality"]
    # 2 seeds against 1: no interval (one weak seed would decide it), the seeds instead; keeps_quality stays empty.
    assert summary.loc[1, "ndcg@10_vs_best"].startswith("needs more seeds (2 vs 1), ")
    assert pd.isna(summary.loc[1, "keeps_quality"])
    assert summary.loc[1, "test_ndcg@10"] == pytest.approx(runs.loc[1:2, "test_ndcg@10"].mean(), abs=1e-4)
    assert summary.loc[2, "status"].startswith("failed (seed 42): error: no interactions are left")
    markdown = (out / "results.md").read_text()
    assert all(f"| {variant} " in markdown for variant in ("replay_best", "CE_fp32", "broken"))
    assert "Matrix-product probe" in markdown and "Mixed code" not in markdown
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # (allow_mixed: the checkout may be edited between the two runs; the refusal itself is tested below)
    rerun = run_main(home, *bench, "mode.bench.allow_mixed=true")
    assert rerun.stdout.count("already in") == 3  # finished rows are kept, the failed one is retried
    assert "[bench 4/4] broken seed 42:" in rerun.stdout
    # A changed command-line override is another run: CE_fp32's rows are not reused (this one fails at once).
    changed = run_main(home, *bench, "mode.bench.allow_mixed=true", "mode.bench.only=[CE_fp32]",
                       "mode.bench.seeds.CE_fp32=1", "dataset.preprocess.min_items_per_user=100000")
    assert "already in" not in changed.stdout and "[bench 1/1] CE_fp32 seed 42:" in changed.stdout
    assert "Rows of ['CE_fp32']" in changed.stdout and "ran another config" in changed.stdout

    # Rows of other code are refused, unless allowed; the table then says so.
    rows = runs.to_dict(orient="records")
    rows[0]["code_fingerprint"] = "0123456789abcdef"
    with pytest.raises(UserError, match="0123456789abcdef.*mode.bench.allow_mixed=true"):
        check_same_code_and_hardware(rows, runs.loc[1, "code_fingerprint"], runs.loc[1, "hardware"], False, out)
    check_same_code_and_hardware(rows, runs.loc[1, "code_fingerprint"], runs.loc[1, "hardware"], True, out)
    context = {"name": "quick", "machine": runs.loc[1, "hardware"], "bf16": "", "hidden_size": 32,
               "probe": {"32-true": 1.0, "bf16-mixed": 1.0}, "code_fingerprint": runs.loc[1, "code_fingerprint"],
               "git_commit": None, "order": ["replay_best", "CE_fp32"], "seeds": {}, "status": {}}
    summarize(rows, out, context)
    assert "Mixed code versions/hardware" in (out / "results.md").read_text()


def test_a_rerun_reuses_a_row_only_for_the_same_whole_config(home: Path, monkeypatch):
    """The key of a row (with its variant and seed) is the hash of its run's composed config, as the bench
    composes it: any changed command-line override is a new row, the bench's own settings and the seed are not."""
    monkeypatch.setenv("REPLAY_ACCELERATED_HOME", str(home))
    command = ["dataset=local", f"dataset.path={home / 'a.parquet'}", "model=sasrec_local"]
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):

        def key(*overrides: str, run: tuple[str, ...] = (), seed: int = 42) -> str:
            origin = ConfigOrigin(overrides=["experiment=bench_quick", PINNED_PRECISION, *overrides])
            return config_hash(compose_run(origin, [*run, "model.params.training_params.batch_size=64",
                                                    f"env.SEED={seed}"]))

        same = key(*command)
        assert key(*command) == same == key(*command, "mode.bench.allow_mixed=true") == key(*command, seed=43)
        assert key("dataset=local", f"dataset.path={home / 'b.parquet'}", "model=sasrec_local") != same
        assert key("dataset=local", f"dataset.path={home / 'a.parquet'}", "model=bert4rec_local") != same
        assert key(*command, "model.params.training_params.learning_rate=0.002") != same
        assert key(*command, run=("mode.steps=4",)) != same  # mode.bench.steps: a timed run, not a trained one


def fake_runs(folder: Path, per_user: dict[str, list[pd.DataFrame]]) -> list[dict]:
    """results.csv rows of finished runs (seeds 42, 43, ...) whose per_user_test.parquet hold `per_user`."""
    rows = []
    for variant, seeds in per_user.items():
        for seed, values in enumerate(seeds, start=42):
            results_dir = folder / f"{variant}_seed{seed}"
            results_dir.mkdir()
            values.to_parquet(results_dir / "per_user_test.parquet", index=False)
            rows.append({
                "model": "sasrec", "variant": variant, "seed": seed, "precision": "32-true", "loss": "CE",
                "acceleration": "none", "hardware": "cpu", "threads": 2, "code_fingerprint": "0123",
                "matmul_flops_per_second": 1e9, "epoch_seconds_extrapolated": False,
                "median_train_seconds_per_epoch": 1.0, "train_tokens_per_second": 1.0, "peak_memory_mb": 1.0,
                "training_memory_mb": 1.0, "mfu": 0.1, "useful_token_share": 1.0, "epochs_run": 1,
                "data_preparation_share": 0.1, "median_validation_seconds": 0.1,
                "test_ndcg@10": values["ndcg@10"].mean(), "test_hitrate@10": values["hitrate@10"].mean(),
                "results_dir": str(results_dir), "validation_history": json.dumps([{"elapsed_seconds": 1.0,
                                                                                     "ndcg@10": 0.1}]),
            })
    return rows


def test_the_table_gives_verdicts_only_with_three_seeds_a_side_on_the_same_test_users(tmp_path: Path):
    rng = np.random.default_rng()

    def seed(users: np.ndarray) -> pd.DataFrame:  # one run's per-user test values
        hit = (rng.random(len(users)) < 0.3).astype(float)
        ndcg = hit / rng.integers(1, 4, len(users))
        return pd.DataFrame({"user_id": users, "ndcg@10": ndcg, "hitrate@10": hit,  # every 4th user: a rare target
                             "rare_target_ndcg@10": np.where(users % 4 == 0, ndcg, np.nan)})

    users = np.arange(600)
    one_seed = seed(users)
    rows = fake_runs(tmp_path, {
        "replay_best": [seed(users) for _ in range(3)],
        "three_seeds": [seed(rng.permutation(users)) for _ in range(3)],  # the same users in another order
        "one_seed": [one_seed],
        "fewer_users": [seed(users[:-5]) for _ in range(3)],
        "other_users": [seed(users + 5) for _ in range(3)],  # as many users, not the same ones
        "mixed_seeds": [seed(users), seed(users), seed(users[5:])],
    })
    context = {"name": "fake", "machine": "cpu", "bf16": "", "hidden_size": 32,
               "probe": {"32-true": 1e9, "bf16-mixed": 1e9}, "code_fingerprint": "0123", "git_commit": None,
               "order": ["replay_best"], "seeds": {}, "status": {}}
    table = summarize(rows, tmp_path, context).set_index("variant")

    verdict = table.loc["three_seeds", "ndcg@10_vs_best"]
    assert verdict.split(",")[0] in ("keeps", "worse") or verdict.startswith("inconclusive (±"), verdict
    assert table.loc["three_seeds", "rare_target_ndcg@10_vs_best"].endswith("(150 users)")
    assert table.loc["three_seeds", "keeps_quality"] in (True, False)
    best = " / ".join(f"{run['ndcg@10'].mean():.3g}" for run in
                      (pd.read_parquet(tmp_path / f"replay_best_seed{s}" / "per_user_test.parquet") for s in (42, 43, 44)))
    assert table.loc["one_seed", "ndcg@10_vs_best"].startswith("needs more seeds (1 vs 3), ")
    assert table.loc["one_seed", "ndcg@10_vs_best"].endswith(f"; seeds {one_seed['ndcg@10'].mean():.3g} vs {best}")
    assert pd.isna(table.loc["one_seed", "keeps_quality"])  # no interval, no claim either way
    for variant, users_named in [
        ("fewer_users", "`fewer_users` seed 42 and `replay_best` seed 42 were scored on different test users "
                        "(595 and 600, 595 shared)"),
        ("other_users", "`other_users` seed 42 and `replay_best` seed 42 were scored on different test users "
                        "(600 and 600, 595 shared)"),
        ("mixed_seeds", "`mixed_seeds` seed 42 and `mixed_seeds` seed 44 were scored on different test users "
                        "(600 and 595, 595 shared)"),
    ]:
        for metric in ("ndcg@10", "hitrate@10"):
            assert table.loc[variant, f"{metric}_vs_best"] == f"no verdict: {users_named}; rerun them on the same " \
                                                              "data and split", (variant, metric)
        assert pd.isna(table.loc[variant, "keeps_quality"])
    assert "needs more seeds" in (tmp_path / "results.md").read_text()


def test_bench_names_unknown_variants(main_in_process):
    result = main_in_process("bench_quick", "mode.bench.only=[fastest,nope]")
    assert result.returncode == 2
    assert "'mode.bench.only' names ['nope']" in result.stderr and "replay_best" in result.stderr


def test_time_to_target_is_the_first_validation_at_the_reference_best():
    history = [{"elapsed_seconds": 3.0, "ndcg@10": 0.1}, {"elapsed_seconds": 6.0, "ndcg@10": 0.3},
               {"elapsed_seconds": 9.0, "ndcg@10": 0.2}]
    assert time_to_target(history, 0.25) == 6.0
    assert time_to_target(history, 0.35) == math.inf


@pytest.mark.slow
def test_replay_comparison_under_leave_one_out_with_an_item_unknown_to_training(home: Path):
    # Item 999 occurs only as user 0's second-to-last event: a validation target that no training
    # history holds, but that sits in user 0's test history. Both rows drop it from that history.
    rng = np.random.default_rng()
    lines = [[user, *rng.integers(0, 40, rng.integers(6, 14))] for user in range(150)]
    lines[0][-1:-1] = [999]
    path = home / "sequences.txt"
    path.write_text("".join(" ".join(map(str, line)) + "\n" for line in lines))
    sizes = [override for override in QUICK if override.startswith("model.")]
    result = run_main(home, "replay_comparison", "dataset=sequences", f"dataset.path={path}", "model=sasrec_sequences",
                      *sizes, "model.params.training_params.max_epochs=1", "trainer.progress_bar=false",
                      "mode.bench.only=[replay_default,CE_fp32]", "mode.bench.seeds.replay_default=1",
                      "mode.bench.seeds.CE_fp32=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = pd.read_csv(home / "results" / "bench" / "replay_comparison" / "summary.csv")
    assert list(summary["variant"]) == ["replay_default", "CE_fp32"]
    assert summary["test_ndcg@10"].notna().all() and (summary["test_ndcg@10"] > 0).all()
    runs = [json.loads(path.read_text()) for path in sorted((home / "results").glob("*/run.json"))]
    assert sorted(run["implementation"] for run in runs) == ["replay", "replay_accelerated"]
    assert all(run["data"]["unknown_history_items_dropped"]["test_events"] == 1 for run in runs)


@pytest.mark.slow  # two bench processes; the default suite checks the steps' trainer arguments below
@pytest.mark.parametrize("model", ["bert4rec", "sasrec"])
def test_the_steps_mode_times_steps_of_ours_and_replays_rows_without_quality(home: Path, model: str):
    result = run_main(home, "bench_quick", f"model={model}_synthetic", *QUICK, "mode.bench.steps=4",
                      "mode.bench.warmup_steps=2", "mode.bench.only=[replay_default,CE_fp32]",
                      "mode.bench.seeds.replay_default=1")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = home / "results" / "bench" / "quick"
    runs = pd.read_csv(out / "results.csv")
    assert list(runs["implementation"]) == ["replay", "replay_accelerated"]
    assert (runs["timed_steps"] == 4).all() and runs["epoch_seconds_extrapolated"].all()
    assert (runs["step_seconds"] > 0).all() and (runs["train_tokens_per_second"] > 0).all()
    batches = [json.loads(path.read_text())["epoch_shapes"]["batches"] for path in sorted(
        (home / "results").glob(f"{model}_synthetic_quick_*/run.json"))]  # replay_default, then CE_fp32
    assert runs["median_train_seconds_per_epoch"].tolist() == pytest.approx(
        [step * count for step, count in zip(runs["step_seconds"], batches)], rel=1e-3, abs=1e-3)  # 3 decimals
    assert (runs["training_memory_mb"] >= 0).all() and (runs["peak_memory_mb"] > runs["training_memory_mb"]).all()
    assert runs[EPOCHS_ONLY].isna().all().all()  # nothing was trained to the end, so no quality
    summary = pd.read_csv(out / "summary.csv")
    assert summary.loc[0, "speed_up_vs_default"] == 1.0 and summary.loc[1, "speed_up_vs_default"] > 0
    assert summary["test_ndcg@10"].isna().all() and summary["keeps_quality"].isna().all()
    assert "**extrapolated**" in (out / "results.md").read_text()
    assert not list((home / "results").glob("*/metrics_test.csv"))
    assert not list(home.rglob("*.ckpt"))  # timing steps writes no model file (RePlay's rows once left one in cwd)


def test_a_steps_run_longer_than_an_epoch_is_refused_before_training():
    assert timed_steps_trainer_args(10, 5, batches_per_epoch=15) == {"max_epochs": 1, "limit_train_batches": 15,
                                                                     "limit_val_batches": 0,
                                                                     "enable_checkpointing": False}
    with pytest.raises(UserError, match=r"an epoch holds 14 batches, fewer than mode.warmup_steps \(5\) \+ "
                                        r"mode.steps \(10\); lower them"):
        timed_steps_trainer_args(10, 5, batches_per_epoch=14)


def test_rows_measured_while_the_machine_ran_at_another_speed_are_refused(tmp_path: Path):
    rows = [{"precision": "32-true", "matmul_flops_per_second": 237.6e9},
            {"precision": "bf16-mixed", "matmul_flops_per_second": 2483.0e9}]
    check_same_machine_speed(rows, 230.0e9, False, tmp_path / "results.csv")  # 3% apart: the same machine
    with pytest.raises(UserError, match=r"237.6 GFLOP/s \(their median\); it does 195.9 now \(\+21%\).*allow_mixed"):
        check_same_machine_speed(rows, 195.9e9, False, tmp_path / "results.csv")
    check_same_machine_speed(rows, 195.9e9, True, tmp_path / "results.csv")  # allowed, and marked in results.md

    # A table's probes spread by the VM's noise: the new probe is compared with their median, not the farthest.
    rows = [{"precision": "32-true", "matmul_flops_per_second": value} for value in (200.0e9, 185.0e9, 215.0e9)]
    check_same_machine_speed(rows, 219.0e9, False, tmp_path / "results.csv")  # +9.5% of 200, +18% of 185
    with pytest.raises(UserError, match=r"200.0 GFLOP/s \(their median\)"):
        check_same_machine_speed(rows, 223.0e9, False, tmp_path / "results.csv")


def test_a_rare_target_reference_of_zero_gives_no_relative_verdict():
    from replay_accelerated.benchmarks.summary import _rare_target_verdict

    rng = np.random.default_rng()
    users = pd.Index(np.arange(40), name="user_id")

    def runs(values):  # three seeds of per-user values; every 4th user has a rare target, the others NaN
        return [(f"seed {s}", pd.DataFrame({"rare_target_ndcg@10": np.where(users % 4 == 0, values(), np.nan)},
                                           index=users)) for s in range(3)]

    zero = runs(lambda: np.zeros(len(users)))
    assert _rare_target_verdict(runs(lambda: rng.random(len(users))), zero) == \
        "no verdict: the reference scores 0 on them (10 users)"
    assert _rare_target_verdict(zero, runs(lambda: rng.random(len(users)) + 0.1)).endswith("(10 users)")
