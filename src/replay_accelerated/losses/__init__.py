"""Training losses.

Every loss is an nn.Module called as `loss(hidden [B, W, H], labels [B, W], target_mask [B, W], head, capacity)`
and computed only where target_mask is True. `build_loss` picks one from the model config (`LOSSES`), whose
entries also say what each loss is (`Loss`): which items it scores, the parameters it needs and their checks,
whether it reads the head's weight itself, its FLOP count where the default does not hold. Config validation
(config_values.py), the FLOP count (training/flops.py) and the tests read these traits, never lists of names, so
a new loss is its module and its entry here: a parameter of its own is an `option`, set under
`model_params.loss_params`, which needs no key in the schema (config.py).
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

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
    "loss_options",
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
    # Keys of model_params it needs, positive integers (a sampled loss needs `loss_sample_count` too), each with a
    # small value for the error that asks for it and the tests' short runs.
    parameters: dict[str, int] = field(default_factory=dict)
    # Its own parameters and their defaults, set under `model_params.loss_params` (`loss_options` reads them): a
    # new loss's parameter needs no key in the schema, and a key it does not know is refused.
    options: dict[str, Any] = field(default_factory=dict)
    # (model_params) -> (key under model_params, problem) or None: what a type cannot check of its parameters.
    check: Callable | None = None
    # Computes its logits from the head's weight itself, so an int8 SwitchBack head would be skipped in float.
    reads_head_weight: bool = False
    # (model_params, EpochShapes, n_items) -> forward FLOPs of its item scoring over an epoch, for a loss that
    # does not score its items per target through the head (training/flops.py has the default).
    head_flops: Callable | None = None


def samples_negatives(model_params) -> bool:
    """Whether the configured loss scores sampled negatives instead of the whole catalog."""
    items = LOSSES[model_params.loss_type].items
    return items == "sampled" or (items == "sampled_if_counted" and model_params.loss_sample_count is not None)


def loss_options(model_params) -> dict[str, Any]:
    """The configured loss's own parameters: its `options`' defaults, with `model_params.loss_params` over them."""
    return {**LOSSES[model_params.loss_type].options, **model_params.loss_params}


def loss_params_problem(model_params) -> tuple[str, str] | None:
    """The first parameter of the configured loss that is missing or wrong, as (key under model_params, problem),
    or None.

    Called by config validation (config_values.py) before any work, and by `build_loss`."""
    loss_type = model_params.loss_type
    loss = LOSSES[loss_type]
    sampled = samples_negatives(model_params)
    needed = {**({"loss_sample_count": 256} if sampled else {}), **loss.parameters}
    for key, example in needed.items():
        value = getattr(model_params, key)
        if value is None:
            return key, f"it is null, but loss_type={loss_type} needs it; set it, e.g. {PREFIX}.{key}={example}"
        if int(value) < 1:
            return key, f"it must be a positive integer for loss_type={loss_type}, got {value}"
    strategy = model_params.negative_sampling_strategy
    if sampled and strategy not in (None, *STRATEGIES):
        return "negative_sampling_strategy", f"it is '{strategy}'; use one of {list(STRATEGIES)} or null (uniform)"
    unknown = [key for key in model_params.loss_params if key not in loss.options]
    if unknown:
        return f"loss_params.{unknown[0]}", (f"loss_type={loss_type} has no parameter '{unknown[0]}'; "
                                             f"its parameters: {list(loss.options) or 'none'}")
    return loss.check(model_params) if loss.check is not None else None


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
# entry here; tests/test_toy_loss.py adds one that way.
LOSSES = {
    "CE": Loss(_cross_entropy, items="sampled_if_counted"),  # the full softmax at the targets (BERT4Rec: masked)
    "CE_restricted": Loss(lambda model_params, item_counts: CrossEntropyLoss()),  # RePlay's name for the same
    "CE_full_positions": Loss(lambda model_params, item_counts: FullPositionsCrossEntropyLoss(),  # RePlay's CE
                              head_flops=FullPositionsCrossEntropyLoss.head_flops),
    "CE_sampled": Loss(lambda model_params, item_counts: SampledSoftmaxLoss(*_sampler_args(model_params, item_counts)),
                       items="sampled"),
    "BCE": Loss(lambda model_params, item_counts: BinaryCrossEntropyLoss(*_sampler_args(model_params, item_counts)),
                items="sampled"),
    "gBCE": Loss(lambda model_params, item_counts: GeneralizedBinaryCrossEntropyLoss(
        *_sampler_args(model_params, item_counts), float(model_params.gbce_t)), items="sampled",
        check=GeneralizedBinaryCrossEntropyLoss.check),
    "SCE": Loss(lambda model_params, item_counts: ScalableCrossEntropyLoss(
        int(model_params.n_buckets), int(model_params.bucket_size_x), int(model_params.bucket_size_y),
        bool(model_params.mix_x)), parameters={"n_buckets": 8, "bucket_size_x": 64, "bucket_size_y": 64},
        reads_head_weight=True, head_flops=ScalableCrossEntropyLoss.head_flops),
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
    """About how many bytes one training step of `loss` needs for its [rows x items] logits, or 0 for the losses
    that never hold them (sampled, SCE's buckets, CCE's chunks): a loss class that does says which rows in its
    `full_logits` ("targets", or "positions": every position of the batch)."""
    rows = {"targets": targets_per_batch, "positions": tokens_per_batch}.get(getattr(loss, "full_logits", None), 0.0)
    return rows * n_items * FULL_LOGITS_BYTES
