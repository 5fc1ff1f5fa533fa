"""Validation of the composed config, before any work starts.

Hydra composes `configs/config.yaml` with one file per group and the command-line overrides;
`validate` merges the result into the schema (config.py), so that a typo, an unknown key, a wrong
type or a missing value stops the run with a message naming the key and the file it came from. Only
Hydra, OmegaConf and the schema are imported for that, so such a mistake is reported in a second or two.
Then config_values.py checks every name against the registry beside the code that implements it and
every value a type cannot express, instead of failing an hour into training.
"""

import dataclasses
import difflib
import typing
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


def command_line_key_problem(override: str) -> str | None:
    """Why a command-line override `key=value` names no key of the schema, or None.

    Hydra refuses such an override itself, before `validate` sees it, with its own words ("Key 'block_cout' is not
    in struct") and status 1; this check runs first and says it as `validate` does, with the keys allowed there.
    Group choices (`model=sasrec`), Hydra's own keys and overrides that add (`+`) or delete (`~`) are left to Hydra;
    below a free-form mapping of the schema (bench variants, a loss's `loss_params`) every key is allowed."""
    key, equals, _ = override.partition("=")
    if not equals or override.startswith(("+", "~")) or key.startswith("hydra") or "@" in key or "/" in key:
        return None
    schema, path = Config, []
    for part in key.split("."):
        if not (isinstance(schema, type) and dataclasses.is_dataclass(schema)):
            return None  # a mapping, list or value: the schema says nothing of its keys
        fields = typing.get_type_hints(schema)
        if part not in fields:
            if not path:  # a group without a key of its own (`experiment=...`) or Hydra's choice: Hydra decides
                return None
            parent = ".".join(path)
            close = difflib.get_close_matches(part, fields, n=1)
            return (f"unknown config key '{key}' on the command line; check its spelling"
                    f"{f' (did you mean {parent}.{close[0]}?)' if close else ''}. "
                    f"Keys allowed under {parent}: {', '.join(fields)}")
        path.append(part)
        schema = _unwrap_optional(fields[part])
    return None


def _unwrap_optional(annotation):
    arguments = [argument for argument in typing.get_args(annotation) if argument is not type(None)]
    return arguments[0] if typing.get_origin(annotation) is typing.Union and len(arguments) == 1 else annotation


def compose_run(origin: ConfigOrigin, overrides: list[str]) -> DictConfig:
    """The validated config of a training run of this command (bench variants, optimize trials): the
    command's config and overrides, `mode=train`, then `overrides`. Needs Hydra initialized (cli.py)."""
    try:
        cfg = compose(origin.config_name, overrides=[*origin.run_overrides(), "mode=train", *overrides])
    except HydraException as error:
        raise ConfigError(f"the overrides {overrides} do not compose with this command's config: {error}") from None
    return validate(cfg, origin)
