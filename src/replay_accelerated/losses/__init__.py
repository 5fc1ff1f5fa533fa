"""Training losses.

Every loss is an nn.Module called as `loss(hidden [B, W, H], labels [B, W], target_mask [B, W], head, capacity)`
and computed only where target_mask is True. `build_loss` picks one from the model config (`LOSSES`), whose
entries also say what each loss is: which items it scores, the parameters it needs, whether it reads the head's
weight itself. Config validation, the FLOP count and the tests read these traits here, not lists of names.
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from replay_accelerated.errors import ConfigError
from replay_accelerated.losses.cross_entropy import CrossEntropyLoss, FullPositionsCrossEntropyLoss
from replay_accelerated.losses.cut import CutCrossEntropyLoss
from replay_accelerated.losses.sampled import (
    STRATEGIES,
    BinaryCrossEntropyLoss,
    GeneralizedBinaryCrossEntropyLoss,
    NegativeSampler,
    SampledSoftmaxLoss,
)
from replay_accelerated.losses.scalable import ScalableCrossEntropyLoss

__all__ = [
    "BinaryCrossEntropyLoss",
    "CrossEntropyLoss",
    "CutCrossEntropyLoss",
    "FullPositionsCrossEntropyLoss",
    "GeneralizedBinaryCrossEntropyLoss",
    "NegativeSampler",
    "SampledSoftmaxLoss",
    "ScalableCrossEntropyLoss",
    "LOSSES",
    "Loss",
    "build_loss",
    "full_logits_bytes",
    "loss_params_problem",
    "samples_negatives",
]

PREFIX = "model.params.model_params"
CCE_CHUNK_SIZE = 4096  # items per chunk of the cut cross-entropy


@dataclass(frozen=True)
class Loss:
    """One `loss_type`: how it is built and what it is."""

    build: Callable  # (model_params, training item counts [n_items] or None) -> the loss module
    # Which items each target scores: "catalog" (every item), "sampled" (the positive and `loss_sample_count`
    # drawn negatives), or "sampled_if_counted" (sampled where `loss_sample_count` is set, else the catalog: the
    # reference project's CE and CCE- configs).
    items: str = "catalog"
    parameters: tuple[str, ...] = ()  # model_params it needs besides `loss_sample_count`
    # Computes its logits from the head's weight itself, so an int8 SwitchBack head would be skipped in float.
    reads_head_weight: bool = False


def samples_negatives(model_params) -> bool:
    """Whether the configured loss scores sampled negatives instead of the whole catalog."""
    items = LOSSES[model_params.loss_type].items
    return items == "sampled" or (items == "sampled_if_counted" and model_params.loss_sample_count is not None)


def loss_params_problem(model_params) -> tuple[str, str] | None:
    """The first parameter the configured loss needs and lacks, as (key under model_params, problem), or None.

    Called by config validation (validation.py) before any work, and by `build_loss`."""
    loss_type = model_params.loss_type
    sampled = samples_negatives(model_params)
    needed = ["loss_sample_count"] if sampled else list(LOSSES[loss_type].parameters)
    for key in needed:
        value = getattr(model_params, key)
        if value is None:
            return key, f"it is null, but loss_type={loss_type} needs it; set it, e.g. {PREFIX}.{key}=256"
        if int(value) < 1:
            return key, f"it must be a positive integer for loss_type={loss_type}, got {value}"
    strategy = model_params.negative_sampling_strategy
    if sampled and strategy not in (None, *STRATEGIES):
        return "negative_sampling_strategy", f"it is '{strategy}'; use one of {list(STRATEGIES)} or null (uniform)"
    if loss_type == "gBCE" and not 0 <= model_params.gbce_t <= 1:
        return "gbce_t", (f"gBCE's calibration t must be in [0, 1] (the paper's default: 0.75), "
                          f"got {model_params.gbce_t}")
    return None


def _sampler_args(model_params, item_counts: torch.Tensor | None) -> tuple[int, str, torch.Tensor | None]:
    """(n_negatives, strategy, item_counts) of a sampled loss; a null strategy means "uniform"."""
    strategy = model_params.negative_sampling_strategy or "uniform"
    if strategy == "popularity" and item_counts is None:
        raise ConfigError(f"config key '{PREFIX}.negative_sampling_strategy' is 'popularity', "
                          "which needs the training item counts; use 'uniform' or null")
    return int(model_params.loss_sample_count), strategy, item_counts


def _cross_entropy(model_params, item_counts: torch.Tensor | None) -> nn.Module:
    # Reference-config compatibility: "CE" with `loss_sample_count` is "CE_sampled".
    if model_params.loss_sample_count is not None:
        return SampledSoftmaxLoss(*_sampler_args(model_params, item_counts))
    return CrossEntropyLoss()


def _cut_cross_entropy(model_params, item_counts: torch.Tensor | None) -> nn.Module:
    # With `loss_sample_count`: the sampled CCE- of the reference project.
    if model_params.loss_sample_count is not None:
        return CutCrossEntropyLoss(CCE_CHUNK_SIZE, *_sampler_args(model_params, item_counts))
    return CutCrossEntropyLoss(CCE_CHUNK_SIZE)


# `model_params.loss_type` -> the loss. A new loss is a module in this package (see the contract above) and one
# entry here.
LOSSES = {
    "CE": Loss(_cross_entropy, items="sampled_if_counted"),  # the full softmax at the targets (BERT4Rec: masked)
    "CE_restricted": Loss(lambda model_params, item_counts: CrossEntropyLoss()),  # RePlay's name for the same
    "CE_full_positions": Loss(lambda model_params, item_counts: FullPositionsCrossEntropyLoss()),  # RePlay's CE
    "CE_sampled": Loss(lambda model_params, item_counts: SampledSoftmaxLoss(*_sampler_args(model_params, item_counts)),
                       items="sampled"),
    "BCE": Loss(lambda model_params, item_counts: BinaryCrossEntropyLoss(*_sampler_args(model_params, item_counts)),
                items="sampled"),
    "gBCE": Loss(lambda model_params, item_counts: GeneralizedBinaryCrossEntropyLoss(
        *_sampler_args(model_params, item_counts), float(model_params.gbce_t)), items="sampled"),
    "SCE": Loss(lambda model_params, item_counts: ScalableCrossEntropyLoss(
        int(model_params.n_buckets), int(model_params.bucket_size_x), int(model_params.bucket_size_y),
        bool(model_params.mix_x)), parameters=("n_buckets", "bucket_size_x", "bucket_size_y"), reads_head_weight=True),
    "CCE": Loss(_cut_cross_entropy, items="sampled_if_counted", reads_head_weight=True),
}


def build_loss(model_params, item_counts: torch.Tensor | None) -> nn.Module:
    """The loss named by `model_params.loss_type`; item_counts: training interactions per item [n_items],
    for popularity sampling."""
    loss_type = model_params.loss_type
    if loss_type not in LOSSES:
        raise ConfigError(f"config key '{PREFIX}.loss_type' is '{loss_type}'; use one of {list(LOSSES)}")
    problem = loss_params_problem(model_params)
    if problem is not None:
        raise ConfigError(f"config key '{PREFIX}.{problem[0]}': {problem[1]}")
    return LOSSES[loss_type].build(model_params, item_counts)


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
