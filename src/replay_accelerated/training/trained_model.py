"""A trained model back from its checkpoint (`mode=infer`, `mode=embeddings`, `mode=export`, warm start), with
its vocabulary and the config it was trained with, and the histories of the users it serves."""

import copy
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from replay_accelerated.data.formats import ITEM, TIMESTAMP, USER, read_local_log
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences, csr_offsets
from replay_accelerated.errors import UserError
from replay_accelerated.models import SequentialRecommender
from replay_accelerated.models.files import STAMP_KEY, UntrustedCheckpoint, load_checkpoint
from replay_accelerated.training.assembly import build_accelerated_model


def checkpoint_path(cfg: DictConfig, checkpoint: str | None) -> Path:
    """`checkpoint`, or by default the best checkpoint `mode=train` wrote with this config (items.parquet
    lies beside it)."""
    return Path(checkpoint or Path(cfg.paths.checkpoint_dir) / cfg.model.save_name / "best.ckpt")


def load_trained_model(cfg: DictConfig, checkpoint: str | None,
                       key: str = "mode.infer.checkpoint") -> tuple[SequentialRecommender, ItemVocabulary]:
    """The trained model (in eval mode) and its item vocabulary, from `checkpoint_path(cfg, checkpoint)`,
    after checking they belong to the configured model; `key` names the setting in errors."""
    path = checkpoint_path(cfg, checkpoint)
    vocabulary, state, architecture = read_trained(path, cfg, key)
    model, _ = build_accelerated_model(as_trained(cfg, architecture, path), len(vocabulary),
                                       architecture.get("item_features"))  # their values: in the weights
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = next((line for line in lines if line.startswith(("size mismatch", "Missing", "Unexpected"))), lines[0])
        raise UserError(f"checkpoint {path} does not fit the configured model ({detail}); "
                        "use the model and acceleration configs it was trained with") from None
    return model.eval(), vocabulary


def read_histories(cfg: DictConfig, path: str, vocabulary: ItemVocabulary,
                   key: str = "mode.infer.input") -> UserSequences:
    """Every user of the interactions file at `path` (the setting `key`) with the items the model knows, in
    time order (a user with none gets an empty history); items the model never saw are dropped and counted."""
    events = read_local_log(Path(path), cfg.dataset.feature_schema, cfg.dataset.separator, key=key,
                            encoding=cfg.dataset.encoding)
    events = events.sort_values([USER, TIMESTAMP], kind="stable")
    known = vocabulary.encode(events[ITEM]) >= 0
    print(f"Read {len(events):,} interactions of {events[USER].nunique():,} users from {path}; "
          f"dropped {int((~known).sum()):,} with items the model does not know")
    return with_every_user(UserSequences.from_events(events[known], vocabulary), events[USER].unique())


def with_every_user(histories: UserSequences, user_ids: np.ndarray) -> UserSequences:
    """`histories` plus an empty history for each user in `user_ids` who has none (both sorted by user)."""
    all_users = np.sort(user_ids)
    lengths = pd.Series(histories.lengths, index=histories.user_ids).reindex(all_users, fill_value=0).to_numpy()
    return UserSequences(all_users, csr_offsets(lengths), histories.items)


def as_trained(cfg: DictConfig, architecture: dict, path: Path) -> DictConfig:
    """`cfg` with the model settings the checkpoint at `path` was trained with (its `architecture`:
    settings that the weights' shapes do not show, such as head_count), which win over the config's."""
    model_params = cfg.model.params.model_params
    differing = {name: value for name, value in architecture.items()
                 if name != "item_features" and model_params.get(name) != value}
    if not differing:
        return cfg
    print(f"{path} was trained with {', '.join(f'{k}={v}' for k, v in differing.items())} "
          f"(the config says {', '.join(f'{k}={model_params.get(k)}' for k in differing)}); built as trained")
    cfg = copy.deepcopy(cfg)
    for name, value in differing.items():
        cfg.model.params.model_params[name] = value
    return cfg


def read_trained(checkpoint_path: Path, cfg: DictConfig, key: str) -> tuple[ItemVocabulary, dict, dict]:
    """The item vocabulary, the model weights (without the `model.` prefix) and the model's stored
    `architecture()` (empty in checkpoints written before it was stored), after checking they belong to the
    configured model; `key` is the setting that names the checkpoint, for errors."""
    items_path = checkpoint_path.with_name("items.parquet")
    for path in (checkpoint_path, items_path):
        if not path.is_file():
            raise UserError(f"{path} does not exist; train first (mode=train with model.save_name="
                            f"{cfg.model.save_name}) or set {key} to a best.ckpt next to its "
                            "items.parquet")
    try:
        checkpoint = load_checkpoint(checkpoint_path, cfg.trust_checkpoint)
    except UntrustedCheckpoint:
        raise
    except Exception as error:  # truncated or not a checkpoint at all
        raise UserError(f"{checkpoint_path} cannot be read as a checkpoint ({type(error).__name__}); "
                        f"point {key} to a best.ckpt written by mode=train") from None
    try:
        item_ids = pd.read_parquet(items_path, columns=[ITEM])[ITEM].to_numpy()
    except (OSError, ValueError) as error:  # truncated, not parquet, or no item_id column (pyarrow: ValueErrors)
        raise UserError(f"{items_path} (the item list beside {checkpoint_path.name}) cannot be read "
                        f"({str(error).splitlines()[0]}); copy it again from the run that wrote "
                        f"{checkpoint_path.name}, or point {key} to a best.ckpt next to a complete items.parquet"
                        ) from None
    vocabulary = ItemVocabulary(item_ids)
    stamp = checkpoint.get(STAMP_KEY, {})
    if stamp.get("model") != cfg.model.name:
        raise UserError(f"{checkpoint_path} holds a {stamp.get('model', 'foreign')} model, but the config says "
                        f"model.name={cfg.model.name}; choose the model config it was trained with")
    if stamp.get("n_items") != len(vocabulary):
        raise UserError(f"{checkpoint_path} was trained on {stamp.get('n_items')} items but {items_path.name} beside "
                        f"it lists {len(vocabulary)}; keep each checkpoint with the items.parquet of its run (to go on "
                        "training a model on a changed catalog: model.params.training_params.init_from=<checkpoint>)")
    state = {name.removeprefix("model."): value for name, value in checkpoint["state_dict"].items()
             if name.startswith("model.")}
    return vocabulary, state, stamp.get("architecture", {})
