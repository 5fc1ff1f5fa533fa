"""`python main.py` on the synthetic default: every artifact, and a model that clearly learns."""

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import FAST_SYNTHETIC, SHARED_DATA, run_main
from replay_accelerated.benchmarks.rows import STEPS_ONLY
from replay_accelerated.config import CONFIG_DIR


@pytest.mark.parametrize("model", ["bert4rec_synthetic", pytest.param("sasrec_synthetic", marks=pytest.mark.slow)])
def test_main_trains_evaluates_and_beats_popularity_twice(home: Path, model: str):
    result = run_main(home, f"model={model}", *FAST_SYNTHETIC)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Block(" in result.stdout and "(head):" in result.stdout  # the model is printed at start

    results = home / "results" / model
    run = json.loads((results / "run.json").read_text())
    for split in ("validation", "test"):
        table = pd.read_csv(results / f"metrics_{split}.csv", index_col="metric")
        assert list(table.index) == ["ndcg", "recall", "hitrate", "precision", "map", "mrr", "coverage", "surprisal"]
        assert list(table.columns) == ["1", "10", "20"]
        assert table.notna().all().all()
    recommendations = pd.read_parquet(results / "recommendations_test.parquet")
    assert list(recommendations.columns) == ["user_id", "item_id", "score", "rank"]
    assert recommendations.groupby("user_id").size().max() == 20
    assert (home / "checkpoints" / model / "best.ckpt").is_file()
    assert (home / "checkpoints" / model / "items.parquet").is_file()
    assert list((home / "logs" / model).glob("version_*/metrics.csv"))
    assert list((home / "logs" / model).glob("version_*/events.out.tfevents.*"))

    for key in ("config", "versions", "hardware", "train_seconds_per_epoch", "train_samples_per_second",
                "peak_memory_mb"):
        assert run[key], key
    assert run["data"]["fingerprint"].startswith("synthetic:")
    assert len(run["train_seconds_per_epoch"]) == run["epochs_run"]
    ndcg, popularity = run["validation_metrics"]["ndcg@10"], run["validation_popularity_ndcg@10"]
    assert ndcg >= 2 * popularity, (ndcg, popularity)


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_cache_is_reused_and_rebuilt_when_the_config_changes(home: Path):
    quick = [*FAST_SYNTHETIC, "model.params.training_params.max_epochs=1"]
    first = run_main(home, *quick)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Split and encoded" in first.stderr
    second = run_main(home, *quick)
    assert "Loaded cached splits" in second.stderr
    third = run_main(home, *quick, "dataset.preprocess.min_rating=2")
    assert "Split and encoded" in third.stderr
    assert len(list((home / "data" / "cache").iterdir())) == 2


def test_local_file_with_own_column_names_and_datetimes(home: Path, main_in_process):
    source = SHARED_DATA / "ml-100k_ratings.parquet"
    if not source.is_file():
        pytest.skip("shared MovieLens-100K not present")
    log = pd.read_parquet(source)
    log = log.rename(columns={"user_id": "uid", "item_id": "movie", "rating": "stars", "timestamp": "when"})
    log["when"] = pd.to_datetime(log["when"], unit="s")
    log.to_csv(home / "my_log.csv", index=False)
    result = main_in_process(
        "dataset=local", f"dataset.path={home / 'my_log.csv'}", "model=sasrec_local",
        "dataset.feature_schema.query_column=uid", "dataset.feature_schema.item_column=movie",
        "dataset.feature_schema.rating_column=stars", "dataset.feature_schema.timestamp_column=when",
        "model.params.model_params.hidden_size=32", "model.params.training_params.embedding_dim=32",
        "model.params.model_params.max_seq_len=20", "model.params.training_params.batch_size=128",
        "model.params.training_params.num_workers=0", "model.params.training_params.max_epochs=1",
        "trainer.progress_bar=false",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((home / "results" / "sasrec_local" / "run.json").read_text())
    assert run["data"]["fingerprint"].startswith("sha256:")
    recommendations = pd.read_parquet(home / "results" / "sasrec_local" / "recommendations_test.parquet")
    assert set(recommendations["item_id"]) <= set(log["movie"])  # original ids come back


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_missing_column_in_a_local_file_is_explained(home: Path):
    pd.DataFrame({"user": [1], "item_id": [2], "rating": [5], "timestamp": [3]}).to_csv(home / "x.csv", index=False)
    result = run_main(home, "dataset=local", f"dataset.path={home / 'x.csv'}", "model=sasrec_local")
    assert result.returncode == 2
    assert "column 'user_id' missing in x.csv" in result.stderr
    assert "dataset.feature_schema.query_column" in result.stderr


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_a_preset_runs_with_config_name(home: Path):
    presets = home / "presets"
    presets.mkdir()
    config = (CONFIG_DIR / "config.yaml").read_text()
    (presets / "my_preset.yaml").write_text(config.replace("model: bert4rec_synthetic", "model: sasrec_synthetic"))
    result = run_main(home, "--config-dir", str(presets), *FAST_SYNTHETIC, "model.params.training_params.max_epochs=1",
                      config_name="my_preset")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((home / "results" / "sasrec_synthetic" / "run.json").read_text())["model"] == "sasrec"


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_bench_mode_trains_each_variant_and_resumes(home: Path):
    quick = [*FAST_SYNTHETIC, "model.params.training_params.max_epochs=1", "mode.bench.name=smoke",
             "~mode.bench.variants", "+mode.bench.variants={plain:[],selu:['acceleration=act_fn']}"]
    result = run_main(home, "mode=bench", *quick)
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(home / "results" / "bench" / "smoke" / "results.csv")
    assert list(table["variant"]) == ["plain", "selu"]
    # trained, not timed by steps (NDCG@10 on rare targets: NaN, no synthetic test target is rare)
    assert table.drop(columns=["overrides", *STEPS_ONLY, "test_rare_target_ndcg@10"]).notna().all().all()
    assert pd.read_csv(home / "results" / "bench" / "smoke" / "summary.csv")["speed_up_vs_best"].iloc[0] == 1.0
    again = run_main(home, "mode=bench", *quick, "mode.bench.allow_mixed=true")  # the checkout may change meanwhile
    assert again.stdout.count("already in") == 2


def test_inspect_prints_the_model_and_what_each_acceleration_changed(home: Path, main_in_process):
    result = main_in_process("--config-name", "config_ml20_swichback", "mode=inspect", "dataset=synthetic",
                             "model=bert4rec_synthetic")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "(head): SwitchBackLinear(in_features=64, out_features=" in result.stdout
    assert "head    LinearHead(in_features=64" in result.stdout and "-> SwitchBackLinear(" in result.stdout
    assert not (home / "checkpoints").exists()  # nothing was trained
    selu = main_in_process("--config-name", "config_ml20_accelerate", "inspect", "dataset=synthetic",
                           "model=sasrec_synthetic")
    assert "blocks.1.feed_forward.activation  ReLU()  -> SELU()" in selu.stdout


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_unwritable_results_directory_stops_before_any_work(home: Path):
    (home / "a_file").write_text("not a folder")
    result = run_main(home, f"paths.results_dir={home / 'a_file' / 'results'}", *FAST_SYNTHETIC)
    assert result.returncode == 2
    assert "cannot write to" in result.stderr and "paths.results_dir" in result.stderr
    assert not (home / "data").exists()  # the data was not even prepared


def test_mlflow_tracking_holds_the_config_the_epochs_metrics_and_the_result_files(home: Path):
    from mlflow import MlflowClient

    from conftest import TINY_SYNTHETIC, compose
    from replay_accelerated.modes.train import train

    summary = train(compose(home, *TINY_SYNTHETIC, "model.params.training_params.max_epochs=2",
                            "trainer.loggers=[csv,mlflow]"))
    client = MlflowClient(f"sqlite:///{home / 'logs' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("bert4rec_synthetic")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.params["model.params.model_params.hidden_size"] == "32"
    assert run.data.params["trainer.loggers"] == "['csv', 'mlflow']"
    history = client.get_metric_history(run.info.run_id, "val_ndcg10")  # MLflow drops the "@"
    assert len(history) == summary["epochs_run"] == 2
    assert max(point.value for point in history) == pytest.approx(summary["best_validation_ndcg@10"])
    files = {artifact.path for artifact in client.list_artifacts(run.info.run_id)}
    assert {"run.json", "metrics_test.csv", "metrics_validation.csv"} <= files
    assert (home / "logs" / "bert4rec_synthetic").is_dir()  # the CSV logger still writes beside it
