"""Experiment tracking: the loggers named in `trainer.loggers`, through Lightning's own.

- `csv`, `tensorboard` (the default pair): under `paths.log_dir/<save_name>/version_N/`;
- `mlflow`: MLflow's local SQLite store `paths.log_dir/mlflow.db` (artifacts in `paths.log_dir/mlartifacts`),
  or the server of `MLFLOW_TRACKING_URI` when it is set; one experiment per save name;
- `wandb`: Weights & Biases, offline (files under `paths.log_dir`) unless the environment has a
  `WANDB_API_KEY`.

Every logger gets the flattened config as parameters and the metrics of each epoch; after evaluation,
mlflow and wandb also get the metric tables and run.json as artifacts (`log_files`).
"""

import importlib.util
import os
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf


def _mlflow(cfg: DictConfig, version: int | None) -> Logger:
    log_dir = Path(cfg.paths.log_dir).resolve()
    return MLFlowLogger(experiment_name=cfg.model.save_name,
                        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{log_dir / 'mlflow.db'}",
                        artifact_location=str(log_dir / "mlartifacts"))


def _wandb(cfg: DictConfig, version: int | None) -> Logger:
    return WandbLogger(project=cfg.model.save_name, save_dir=cfg.paths.log_dir,
                       offline=not os.environ.get("WANDB_API_KEY"))


# The loggers that need a package of their own: logger -> what to pip install.
PACKAGES = {"mlflow": "mlflow-skinny", "wandb": "wandb"}
# `trainer.loggers` -> (config, the CSV logger's version number or None) -> the logger.
LOGGERS = {
    "csv": lambda cfg, version: CSVLogger(cfg.paths.log_dir, name=cfg.model.save_name),
    "tensorboard": lambda cfg, version: TensorBoardLogger(cfg.paths.log_dir, name=cfg.model.save_name,
                                                          version=version),
    "mlflow": _mlflow,
    "wandb": _wandb,
}


def missing_package(name: str) -> str | None:
    """What to pip install for logger `name`, when it is not installed (config validation asks)."""
    package = PACKAGES.get(name)
    return package if package and importlib.util.find_spec(name) is None else None


def build_loggers(cfg: DictConfig) -> list[Logger]:
    """The configured loggers, each given the flattened config; CSV and TensorBoard share a version number."""
    loggers, version = [], None
    for name in cfg.trainer.loggers:
        logger = LOGGERS[name](cfg, version)
        version = logger.version if isinstance(logger, CSVLogger) else version
        loggers.append(logger)
    parameters = _flatten(OmegaConf.to_container(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(parameters)
    return loggers


def log_files(loggers: list[Logger], paths: list[Path]) -> None:
    """Attach result files (metric tables, run.json) to the runs of the loggers that keep files."""
    for logger in loggers:
        if isinstance(logger, MLFlowLogger):
            for path in paths:
                logger.experiment.log_artifact(logger.run_id, str(path))
        elif isinstance(logger, WandbLogger):
            for path in paths:
                logger.experiment.save(str(path), base_path=str(path.parent))


def _flatten(tree: dict, prefix: str = "") -> dict:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists become their text."""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = str(value) if isinstance(value, list) else value
    return flat
