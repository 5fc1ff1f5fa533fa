"""`mode=optimize`: an Optuna study in SQLite that a rerun continues, with pruning of bad trials."""

import json
from pathlib import Path

import optuna
import pytest

from conftest import TINY_SYNTHETIC, run_main
from replay_accelerated.modes.optimize import PruneBadTrials

SEARCH = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=2",
          "optuna.search_space=[{key: model.params.training_params.learning_rate, type: float, low: 0.001, "
          "high: 0.01, log: true}, {key: model.params.model_params.loss_type, type: categorical, choices: [CE, CCE]}]"]


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_study_is_stored_and_a_rerun_continues_it(home: Path):
    # A trial left running by a killed process, as the SQLite file would keep it.
    storage = home / "checkpoints" / "optuna"
    storage.mkdir(parents=True)
    optuna.create_study(study_name="bert4rec_synthetic", storage=f"sqlite:///{storage / 'bert4rec_synthetic.db'}",
                        direction="maximize").ask()

    first = run_main(home, "optimize", *SEARCH, "optuna.n_trials=2")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Trial 0 was interrupted; marked failed" in first.stdout
    assert "0 trials done, 2 to run" in first.stdout
    second = run_main(home, "optimize", *SEARCH, "optuna.n_trials=3")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "2 trials done, 1 to run" in second.stdout

    out = home / "results" / "optimize" / "bert4rec_synthetic"
    trials = json.loads((out / "trials.json").read_text())
    assert [trial["state"] for trial in trials] == ["FAIL", "COMPLETE", "COMPLETE", "COMPLETE"]
    assert all(set(trial["params"]) == {"model.params.training_params.learning_rate",
                                        "model.params.model_params.loss_type"} for trial in trials[1:])
    best = json.loads((out / "best_params.json").read_text())
    assert best["validation_ndcg@10"] == max(trial["validation_ndcg@10"] for trial in trials[1:])
    assert (home / "results" / f"bert4rec_synthetic_trial{best['trial']}" / "run.json").is_file()


def test_a_bad_search_space_is_refused_before_any_trial(home: Path):
    result = run_main(home, "optimize", "optuna.search_space=[{key: model.params.model_params.dropout_rate, "
                      "type: float, low: 0.5, high: 0.1}]")
    assert result.returncode == 2 and "low < high" in result.stderr


class _Trial:
    def __init__(self, prune: bool):
        self.prune, self.reports = prune, []

    def report(self, value, step):
        self.reports.append((step, value))

    def should_prune(self):
        return self.prune


class _Trainer:
    sanity_checking = False
    current_epoch = 3
    callback_metrics = {"val_ndcg@10": 0.125}


@pytest.mark.parametrize("prune", [False, True])
def test_pruning_reports_every_epoch_and_stops_a_bad_trial(prune: bool):
    trial = _Trial(prune)
    callback = PruneBadTrials(trial)
    if prune:
        with pytest.raises(optuna.TrialPruned, match="0.1250 after epoch 4"):
            callback.on_validation_end(_Trainer(), None)
    else:
        callback.on_validation_end(_Trainer(), None)
    assert trial.reports == [(3, 0.125)]
