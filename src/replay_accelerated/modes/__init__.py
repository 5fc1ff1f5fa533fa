"""The modes of `replay-accelerated` (`mode.name`): one module each, exposing `run(cfg, origin)`.

`cli.py` validates the config (validation.py checks the name against `MODES`, which the schema in config.py
lists), then calls `run`; the module is imported only then, so that a mode's own dependencies (Optuna, RePlay's
models) load only for it.
"""

import importlib
from typing import Any

from omegaconf import DictConfig



def run(cfg: DictConfig, origin) -> Any:
    """Run the validated config's mode; `origin` (config.ConfigOrigin) composes the runs of bench and optimize."""
    module = importlib.import_module(f"{__name__}.{cfg.mode.name}")
    return module.run(cfg, origin)
