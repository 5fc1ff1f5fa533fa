"""The modes of `replay-accelerated` (`mode.name`): one module each, exposing `run(cfg, origin)`.

`cli.py` validates the config (validation.py checks the name against `MODES`), then calls `run`; the
module is imported only then, so that a mode's own dependencies (Lightning, Optuna, RePlay's models) load
only for it.
"""

import importlib
from typing import Any

from omegaconf import DictConfig

# Each is the module of this package of the same name.
MODES = (
    "train",  # train, evaluate, write results
    "inspect",  # print the model and its accelerations
    "infer",  # recommendations from a saved model
    "embeddings",  # item and user vectors of a saved model, for retrieval
    "export",  # a saved model as ONNX and torch.export files, for serving
    "optimize",  # an Optuna search over training runs
    "bench",  # a matrix of training runs, compared
)
# The modes that read the training data (`dataset.*`); the others read a checkpoint and their own input.
DATA_MODES = ("train", "inspect", "optimize", "bench")


def run(cfg: DictConfig, origin) -> Any:
    """Run the validated config's mode; `origin` (config.ConfigOrigin) composes the runs of bench and optimize."""
    module = importlib.import_module(f"{__name__}.{cfg.mode.name}")
    return module.run(cfg, origin)
