"""Sequential recommenders: BERT4Rec and SASRec as in RePlay 0.22, and the import of RePlay's trained models."""

from replay_accelerated.models.bert4rec import Bert4Rec
from replay_accelerated.models.replay_import import from_replay, save_for_infer
from replay_accelerated.models.sasrec import SasRec
from replay_accelerated.models.transformer import SequentialRecommender


def build_model(name: str, n_items: int, model_params) -> SequentialRecommender:
    """The model named in config (`bert4rec` or `sasrec`) for a catalog of `n_items`."""
    common = dict(
        n_items=n_items,
        max_seq_len=model_params.max_seq_len,
        hidden_size=model_params.hidden_size,
        block_count=model_params.block_count,
        head_count=model_params.head_count,
        dropout_rate=model_params.dropout_rate,
    )
    if name == "bert4rec":
        return Bert4Rec(mask_prob=model_params.mask_prob, masking=model_params.masking, **common)
    return SasRec(**common)


__all__ = ["Bert4Rec", "SasRec", "SequentialRecommender", "build_model", "from_replay", "save_for_infer"]
