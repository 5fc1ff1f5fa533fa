"""`mode=optimize`: an Optuna search for the hyper-parameters with the best validation NDCG@10.

The search space is the `optuna` section of the config: a list of config keys, each with a
float or int range (`low`, `high`, `log`) or `choices`. Each trial trains with its values
as overrides (outputs under `<save_name>_trial<number>`), reporting validation NDCG@10 after
every epoch; a trial below the median of earlier trials at the same epoch is pruned.

The study is stored in `paths.checkpoint_dir/optuna/<study_name>.db` (SQLite), so a rerun
of an interrupted search continues it: `optuna.n_trials` counts the trials of all runs, and
a trial that was running when the process died is marked failed. Written to
`paths.results_dir/optimize/<study_name>/`: `best_params.json` and `trials.json`.
"""

import json
from pathlib import Path

import lightning as L
import optuna
from omegaconf import DictConfig
from optuna.trial import TrialState

from replay_accelerated.config import ConfigOrigin
from replay_accelerated.errors import UserError
from replay_accelerated.modes.train import train
from replay_accelerated.training.fit import MONITOR
from replay_accelerated.validation import compose_run


class PruneBadTrials(L.Callback):
    """Report validation NDCG@10 to the trial after each epoch; stop the trial when Optuna says so."""

    def __init__(self, trial: optuna.Trial):
        self.trial = trial

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking or MONITOR not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[MONITOR])
        self.trial.report(value, step=trainer.current_epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"validation NDCG@10 {value:.4f} after epoch {trainer.current_epoch + 1} "
                                     "is below the median of earlier trials")


def suggest(trial: optuna.Trial, parameter) -> object:
    """The trial's value for one search-space entry."""
    if parameter.type == "float":
        return trial.suggest_float(parameter.key, parameter.low, parameter.high, log=parameter.log)
    if parameter.type == "int":
        return trial.suggest_int(parameter.key, int(parameter.low), int(parameter.high), log=parameter.log)
    return trial.suggest_categorical(parameter.key, list(parameter.choices))


def run(cfg: DictConfig, origin: ConfigOrigin) -> optuna.Study:
    """Run the missing trials of the study; `compose_run(origin, overrides)` is the validated config of one trial."""
    settings = cfg.optuna
    study_name = settings.study_name or cfg.model.save_name
    storage_dir = Path(cfg.paths.checkpoint_dir) / "optuna"
    storage_dir.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{storage_dir / f'{study_name}.db'}"
    study = optuna.create_study(
        study_name=study_name, storage=storage, direction="maximize", load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=cfg.env.SEED),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1),
    )
    for trial in study.get_trials(states=(TrialState.RUNNING,)):  # its process died with it
        study.tell(trial.number, state=TrialState.FAIL)
        print(f"Trial {trial.number} was interrupted; marked failed")
    done = len(study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED)))
    remaining = settings.n_trials - done
    print(f"Study '{study_name}' ({storage}): {done} trials done, {max(remaining, 0)} to run")
    for parameter in settings.search_space:  # a typo in a key fails now, not after the first trial
        compose_run(origin, [f"{parameter.key}={parameter.choices[0] if parameter.choices else parameter.low}"])

    def objective(trial: optuna.Trial) -> float:
        values = {parameter.key: suggest(trial, parameter) for parameter in settings.search_space}
        print(f"\n[trial {trial.number}] {values}", flush=True)
        overrides = [f"{key}={value}" for key, value in values.items()]
        trial_cfg = compose_run(origin, [*overrides, f"model.save_name={cfg.model.save_name}_trial{trial.number}"])
        return train(trial_cfg, callbacks=(PruneBadTrials(trial),))["best_validation_ndcg@10"]

    if remaining > 0:
        study.optimize(objective, n_trials=remaining, timeout=settings.timeout)
    if not study.get_trials(states=(TrialState.COMPLETE,)):
        raise UserError(f"no trial of study '{study_name}' completed; see the errors above")
    _write(study, Path(cfg.paths.results_dir) / "optimize" / study_name)
    return study


def _write(study: optuna.Study, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    best = {"trial": study.best_trial.number, "validation_ndcg@10": study.best_value, "params": study.best_params}
    (out_dir / "best_params.json").write_text(json.dumps(best, indent=2))
    trials = [{"number": trial.number, "state": trial.state.name, "validation_ndcg@10": trial.value,
               "params": trial.params, "epochs_reported": len(trial.intermediate_values),
               "seconds": trial.duration.total_seconds() if trial.duration else None} for trial in study.trials]
    (out_dir / "trials.json").write_text(json.dumps(trials, indent=2))
    print(f"\nBest: trial {best['trial']}, validation NDCG@10 {best['validation_ndcg@10']:.4f}, {best['params']}\n"
          f"Written to {out_dir}")
