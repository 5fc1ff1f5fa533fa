"""Training losses.

Every loss is an nn.Module called as `loss(hidden [B, W, H], labels [B, W], target_mask [B, W], head)`
and computed only where target_mask is True. `build_loss` picks one from the model config.
"""

import torch
from torch import nn

from replay_accelerated.errors import ConfigError
from replay_accelerated.losses.cross_entropy import CrossEntropyLoss, FullPositionsCrossEntropyLoss
from replay_accelerated.losses.cut import CutCrossEntropyLoss
from replay_accelerated.losses.sampled import STRATEGIES, BinaryCrossEntropyLoss, NegativeSampler, SampledSoftmaxLoss
from replay_accelerated.losses.scalable import ScalableCrossEntropyLoss

__all__ = [
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "CutCrossEntropyLoss",
    "FullPositionsCrossEntropyLoss",
    "NegativeSampler",
    "SampledSoftmaxLoss",
    "ScalableCrossEntropyLoss",
    "build_loss",
    "full_logits_bytes",
]

PREFIX = "model.params.model_params"
CCE_CHUNK_SIZE = 4096  # items per chunk of the cut cross-entropy


def _positive_int(model_params, key: str, loss_type: str, example: int) -> int:
    value = getattr(model_params, key, None)
    if value is None:
        raise ConfigError(f"config key '{PREFIX}.{key}' is null, but loss_type={loss_type} needs it; "
                          f"set it, e.g. {PREFIX}.{key}={example}")
    if int(value) < 1:
        raise ConfigError(f"config key '{PREFIX}.{key}' must be a positive integer for loss_type={loss_type}, "
                          f"got {value}")
    return int(value)


def _sampling(model_params, loss_type: str, item_counts: torch.Tensor | None) -> tuple[int, str]:
    """(n_negatives, strategy) of a sampled loss; a null strategy means "uniform"."""
    n_negatives = _positive_int(model_params, "loss_sample_count", loss_type, 256)
    strategy = getattr(model_params, "negative_sampling_strategy", None) or "uniform"
    if strategy not in STRATEGIES:
        raise ConfigError(f"config key '{PREFIX}.negative_sampling_strategy' is '{strategy}'; "
                          f"use one of {list(STRATEGIES)} or null (uniform)")
    if strategy == "popularity" and item_counts is None:
        raise ConfigError(f"config key '{PREFIX}.negative_sampling_strategy' is 'popularity', "
                          "which needs the training item counts; use 'uniform' or null")
    return n_negatives, strategy


def build_loss(model_params, item_counts: torch.Tensor | None) -> nn.Module:
    """The loss named by `model_params.loss_type`.

    item_counts: training interactions per item [n_items], for popularity sampling.
    Reference-config compatibility: "CE" with `loss_sample_count` is "CE_sampled", "CCE" with
    it is the sampled CCE-; a null `negative_sampling_strategy` means "uniform".
    """
    loss_type = model_params.loss_type
    sample_count = getattr(model_params, "loss_sample_count", None)
    if loss_type == "CE_restricted" or (loss_type == "CE" and sample_count is None):
        return CrossEntropyLoss()
    if loss_type == "CE_full_positions":
        return FullPositionsCrossEntropyLoss()
    if loss_type in ("CE", "CE_sampled", "BCE"):
        n_negatives, strategy = _sampling(model_params, loss_type, item_counts)
        loss_class = BinaryCrossEntropyLoss if loss_type == "BCE" else SampledSoftmaxLoss
        return loss_class(n_negatives, strategy, item_counts)
    if loss_type == "SCE":
        n_buckets = _positive_int(model_params, "n_buckets", loss_type, 256)
        size_x = _positive_int(model_params, "bucket_size_x", loss_type, 256)
        size_y = _positive_int(model_params, "bucket_size_y", loss_type, 256)
        return ScalableCrossEntropyLoss(n_buckets, size_x, size_y, bool(getattr(model_params, "mix_x", None)))
    if loss_type == "CCE":
        if sample_count is None:
            return CutCrossEntropyLoss(CCE_CHUNK_SIZE)
        n_negatives, strategy = _sampling(model_params, loss_type, item_counts)
        return CutCrossEntropyLoss(CCE_CHUNK_SIZE, n_negatives, strategy, item_counts)
    names = ["CE", "CE_restricted", "CE_full_positions", "CE_sampled", "BCE", "SCE", "CCE"]
    raise ConfigError(f"config key '{PREFIX}.loss_type' is '{loss_type}'; use one of {names}")


# Bytes per (target, item) of a loss that holds the full logits matrix: fp32 logits, the softmax
# autograd keeps and the gradient backward makes.
FULL_LOGITS_BYTES = 12


def full_logits_bytes(loss: nn.Module, targets_per_batch: float, tokens_per_batch: float, n_items: int) -> float:
    """About how many bytes one training step of `loss` needs for its [targets x items] logits, or 0
    for the losses that never hold them (sampled, SCE's buckets, CCE's chunks)."""
    if isinstance(loss, FullPositionsCrossEntropyLoss):  # the head at every position
        return tokens_per_batch * n_items * FULL_LOGITS_BYTES
    if isinstance(loss, CrossEntropyLoss):
        return targets_per_batch * n_items * FULL_LOGITS_BYTES
    return 0.0
