"""Warm start: a new training run that starts from a trained checkpoint whose catalog may differ
(`model.params.training_params.init_from`).

Items are matched by original id through the checkpoint's `items.parquet`: the rows of items known to
both catalogs (item embedding, head weight and bias) are copied into the new positions, new items keep
the fresh initialisation of the new model, items gone from the catalog are dropped. The padding and mask
token rows and every other weight (positions, blocks, norms) are copied as they are, so before any
training the new model scores a history of known items exactly as the old one did, known item by known
item. Sizes other than the catalog's must match: the model config is the one the checkpoint was trained with.
A checkpoint with no item in common is refused: copying nothing would train from scratch under a warm start's
name (ids stored as strings in one run and as integers in the other match nothing).

With item features (models/item_features.py) the features must be the checkpoint's (names and types); their
values come from this run's table, and the rows of each feature value's embedding are matched by value as items
by id (a new value keeps its fresh row). A new item's id row starts at zero, so that it starts as what its
features say, not as a random item.
"""

from pathlib import Path

import pandas as pd
import torch
from omegaconf import DictConfig

from replay_accelerated.data.sequences import ItemVocabulary
from replay_accelerated.errors import ConfigError
from replay_accelerated.models import SequentialRecommender
from replay_accelerated.training.trained_model import read_trained

KEY = "model.params.training_params.init_from"
# The parameters with one row per item (then, for the embedding, the padding and mask token rows).
ITEM_ROWS = ("item_embedding.weight", "head.weight", "head.bias", "head.item_embedding.weight")


def warm_start(model: SequentialRecommender, vocabulary: ItemVocabulary, cfg: DictConfig) -> dict:
    """Copy the weights of the `init_from` checkpoint into `model` (built for `vocabulary`); returns the counts
    of known, new and dropped items."""
    old_vocabulary, old_state, old_architecture = read_trained(Path(cfg.model.params.training_params.init_from),
                                                               cfg, KEY)
    positions = pd.Index(old_vocabulary.item_ids).get_indexer(vocabulary.item_ids)  # [n_new], -1 for new items
    if not (positions >= 0).any():
        raise ConfigError(_nothing_in_common(old_vocabulary, vocabulary))
    known = torch.from_numpy(positions >= 0)
    source = torch.from_numpy(positions[positions >= 0])
    n_new, n_old = len(vocabulary), len(old_vocabulary)
    state = model.state_dict()
    value_rows = _feature_value_rows(model, old_architecture.get("item_features"))
    missing = sorted(set(state) ^ set(old_state))
    if missing:
        raise ConfigError(f"{KEY}: the checkpoint's layers differ from the configured model's ({missing[:3]}); "
                          "use the model and acceleration configs it was trained with")
    for name, tensor in state.items():
        old = old_state[name].to(tensor.dtype)
        if name.endswith((".codes", ".numbers")):  # the items' feature values: this run's table
            continue
        if name in value_rows:  # one row per feature value, then the padding row
            positions = value_rows[name]
            rows = tensor.clone()
            rows[:-1][positions >= 0] = old[:-1][positions[positions >= 0]]
            rows[-1] = old[-1]
            state[name] = rows
            continue
        item_rows = name in ITEM_ROWS  # the first dimension follows the catalog, the others must match
        if old.shape[item_rows:] != tensor.shape[item_rows:]:
            raise ConfigError(f"{KEY}: {name} is {tuple(old.shape)} in the checkpoint but {tuple(tensor.shape)} in "
                              "the configured model; use the model config it was trained with")
        if item_rows:
            rows = tensor.clone()
            rows[:n_new][known] = old[:n_old][source]  # known items, at their new positions
            rows[n_new:] = old[n_old:]  # padding (and BERT4Rec's mask token)
            if model.item_features is not None and name.endswith("item_embedding.weight"):
                rows[:n_new][~known] = 0  # a new item starts as its features
            state[name] = rows
        else:
            state[name] = old
    model.load_state_dict(state)
    counts = {"known_items": int(known.sum()), "new_items": int((~known).sum()),
              "dropped_items": int(n_old - known.sum())}
    print(f"Warm start from {cfg.model.params.training_params.init_from}: {counts['known_items']:,} items copied, "
          f"{counts['new_items']:,} new, {counts['dropped_items']:,} dropped", flush=True)
    return counts


def _feature_value_rows(model: SequentialRecommender, old_spec: dict | None) -> dict[str, torch.Tensor]:
    """For each feature value embedding of `model` (by state name): the row of each of its values in the
    checkpoint's table (-1: a new value), after checking that the checkpoint has the same features."""
    features = model.item_features
    declared = [] if features is None else [(name, entry["type"]) for name, entry in features.spec.items()]
    stored = [(name, entry["type"]) for name, entry in (old_spec or {}).items()]
    if declared != stored:
        raise ConfigError(f"{KEY}: the checkpoint was trained with the item features {stored or 'none'}, this run "
                          f"declares {declared or 'none'} (dataset.item_features); declare the checkpoint's features")
    rows = {}
    for index, (name, entry) in enumerate([] if features is None else features.spec.items()):
        if entry["type"] != "numerical":
            positions = torch.from_numpy(pd.Index(old_spec[name]["values"]).get_indexer(entry["values"]))
            for prefix in ("item_features", "head.item_features"):
                rows[f"{prefix}.features.{index}.embedding.weight"] = positions
    return rows


def _id_type(vocabulary: ItemVocabulary) -> str:
    """The type of a vocabulary's ids: the numpy dtype, or the Python type of the first id in an object array
    (how strings come back from parquet)."""
    ids = vocabulary.item_ids
    return type(ids[0]).__name__ if ids.dtype == object and len(ids) else str(ids.dtype)


def _nothing_in_common(old: ItemVocabulary, new: ItemVocabulary) -> str:
    """The error for a checkpoint that shares no item with the dataset: ids of different types, or another catalog."""
    old_type, new_type = _id_type(old), _id_type(new)
    sizes = f"none of this dataset's {len(new):,} items is among the checkpoint's {len(old):,}"
    if old_type != new_type:
        return (f"{KEY}: {sizes}: the checkpoint's items.parquet holds item ids of type {old_type}, this dataset's "
                f"of type {new_type}; give the dataset's item_id column the checkpoint's type (or retrain the "
                f"checkpoint on ids of type {new_type}), or drop {KEY} to train from scratch")
    return (f"{KEY}: {sizes} (item ids of type {new_type} in both); point {KEY} to a checkpoint trained on this "
            f"catalog, or drop it to train from scratch")
