"""Validation of the composed config, before any work starts.

Hydra composes `configs/config.yaml` with one file per group and the command-line overrides;
`validate` merges the result into the schema (config.py), so that a typo, an unknown key, a wrong
type or a missing value stops the run with a message naming the key and the file it came from. Only
Hydra, OmegaConf and the schema are imported for that, so such a mistake is reported in a second or two.
Then config_values.py checks every name against the registry beside the code that implements it and
every value a type cannot express, instead of failing an hour into training.
"""

from typing import Any

from hydra import compose
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException, ValidationError

from replay_accelerated.config import Config, ConfigOrigin
from replay_accelerated.errors import ConfigError


def validate(cfg: DictConfig, origin: ConfigOrigin) -> DictConfig:
    """Check `cfg` against the schema and the allowed values; return the typed config."""
    try:
        typed = OmegaConf.merge(OmegaConf.structured(Config), cfg)
        OmegaConf.to_container(typed, resolve=True, throw_on_missing=True)
        OmegaConf.resolve(typed)  # paths from environment variables are fixed from here on
    except (ConfigKeyError, ValidationError, MissingMandatoryValue) as error:
        raise ConfigError(_describe(error, origin)) from None
    except OmegaConfBaseException as error:  # interpolation and other composition errors
        raise ConfigError(f"invalid configuration: {error}") from None
    # The registries import torch, Lightning and RePlay's preprocessing (seconds): only once the schema holds, so
    # that a typo in a key is reported first.
    from replay_accelerated.config_values import check_values

    check_values(typed, origin)
    return typed


def _describe(error: OmegaConfBaseException, origin: ConfigOrigin) -> str:
    key = error.full_key or "?"
    where = origin.file_of(key)
    if isinstance(error, MissingMandatoryValue):
        return (
            f"config key '{key}' has no value (it is '???' in {where}); "
            f"set it there or on the command line: {key}=..."
        )
    if isinstance(error, ConfigKeyError):
        parent = key.rsplit(".", 1)[0] if "." in key else "the top level"
        known = _known_keys(parent)
        return (
            f"unknown config key '{key}' in {where}; check its spelling. "
            f"Keys allowed under {parent}: {', '.join(known) or '(none)'}"
        )
    return f"config key '{key}' in {where} has a wrong type or value: {error.msg}"


def _known_keys(parent: str) -> list[str]:
    node: Any = OmegaConf.structured(Config)
    if parent != "the top level":
        node = OmegaConf.select(node, parent)
    return list(node.keys()) if isinstance(node, DictConfig) else []


def compose_run(origin: ConfigOrigin, overrides: list[str]) -> DictConfig:
    """The validated config of a training run of this command (bench variants, optimize trials): the
    command's config and overrides, `mode=train`, then `overrides`. Needs Hydra initialized (cli.py)."""
    try:
        cfg = compose(origin.config_name, overrides=[*origin.run_overrides(), "mode=train", *overrides])
    except HydraException as error:
        raise ConfigError(f"the overrides {overrides} do not compose with this command's config: {error}") from None
    return validate(cfg, origin)
