"""Sequential recommenders: BERT4Rec and SASRec as in RePlay 0.22, and the import of RePlay's trained models."""

from replay_accelerated.errors import ConfigError
from replay_accelerated.models.bert4rec import Bert4Rec
from replay_accelerated.models.replay_import import from_replay, save_for_infer
from replay_accelerated.models.sasrec import SasRec
from replay_accelerated.models.transformer import SequentialRecommender

# `model.name` -> the model; a new model is a SequentialRecommender subclass in its own file, added here.
MODELS: dict[str, type[SequentialRecommender]] = {"bert4rec": Bert4Rec, "sasrec": SasRec}


def build_model(name: str, n_items: int, model_params, item_features: dict | None = None) -> SequentialRecommender:
    """The model named in config for a catalog of `n_items`, with the item features of `item_features` (the
    spec of data/item_features.py's ItemFeatures; None: ids only)."""
    if name not in MODELS:
        raise ConfigError(f"config key 'model.name' is '{name}'; use one of {list(MODELS)}")
    return MODELS[name].from_params(n_items, model_params, item_features)


__all__ = ["MODELS", "Bert4Rec", "SasRec", "SequentialRecommender", "build_model", "from_replay", "save_for_infer"]
