"""Analytical training FLOPs of an epoch: model FLOP utilization against the measured matrix-product
throughput (training/precision.py's `matmul_flops_per_second`).

MFU = (training FLOPs of an epoch / median epoch seconds) / measured matmul FLOP/s at the row's
precision. It says how much of the machine a variant uses, so that a speed-up can be told
apart from a variant that merely does less work.

FLOPs are counted from shapes, not profiled, and only the matrix products (what dominates):
- every nn.Linear inside `model.blocks`: 2 * in * out per token forward, whatever the block's
  architecture (so the count follows any change of the blocks);
- attention: scores and the weighted sum, 2 * 2 * W * H per token per block forward (W the
  batch width, H the hidden size);
- the item head: 2 * H * (items scored) per target, or the loss's own count (its `head_flops` in
  losses/__init__.py: SCE scores buckets of targets against buckets of items);
- backward is twice the forward, so training is 3x the forward.
Tokens include padding (the model computes it), hence `useful_token_share`.
"""

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from replay_accelerated.losses import LOSSES, samples_negatives

TRAIN_FACTOR = 3  # forward + backward (gradients of inputs and of weights)


@dataclass
class EpochShapes:
    """What one training epoch computes on: sums over its batches."""

    batches: int
    tokens: int  # batch size x batch width, padding included
    real_tokens: int  # tokens that are items
    attention_pairs: int  # batch size x width^2: the query-key pairs of attention
    targets: int  # positions where the head scores items

    def as_dict(self) -> dict:
        return asdict(self)


def sum_shapes(batches: Iterable[tuple[torch.Tensor, int]]) -> EpochShapes:
    """The shapes of an epoch from each batch's (is_real [B, W] bool: a token is an item, targets scored).

    Making the batches (masking, a loader's worker seeds) draws from torch's random generator, which is
    restored after the pass: counting does not change the training that follows.
    """
    shapes = EpochShapes(0, 0, 0, 0, 0)
    with torch.random.fork_rng(devices=[]):
        for is_real, targets in batches:
            size, width = is_real.shape
            shapes.batches += 1
            shapes.tokens += size * width
            shapes.real_tokens += int(is_real.sum())
            shapes.attention_pairs += size * width * width
            shapes.targets += int(targets)
    return shapes


def epoch_shapes(examples, pad_id: int) -> EpochShapes:
    """Shapes of one pass over training examples (training/batches.py)."""
    return sum_shapes((example.inputs != pad_id, example.target_mask.sum()) for example in examples)


def head_items_per_target(model_params, n_items: int) -> int:
    """Items the head scores for each target: the catalog, or the positive and sampled negatives."""
    return 1 + model_params.loss_sample_count if samples_negatives(model_params) else n_items


def head_flops(model_params, shapes: EpochShapes, n_items: int) -> float:
    """Forward FLOPs of the item head in an epoch with the loss of `model_params`: the loss's own count where it
    has one, else 2 * H * (items scored) per target."""
    count = LOSSES[model_params.loss_type].head_flops
    if count is not None:
        return count(model_params, shapes, n_items)
    return float(2 * model_params.hidden_size * head_items_per_target(model_params, n_items) * shapes.targets)


def train_flops_per_epoch(model: nn.Module, shapes: EpochShapes, hidden_size: int, head: float) -> float:
    """Training FLOPs of one epoch of `model` (see the module docstring); head: the head's forward FLOPs
    (`head_flops`)."""
    linear = sum(2 * layer.in_features * layer.out_features
                 for layer in model.blocks.modules() if hasattr(layer, "in_features"))
    forward = linear * shapes.tokens + 4 * hidden_size * shapes.attention_pairs * len(model.blocks) + head
    return float(TRAIN_FACTOR * forward)


def model_train_flops(model: nn.Module, model_params, shapes: EpochShapes) -> float:
    """`train_flops_per_epoch` of `model` trained with the loss of `model_params` (the config's)."""
    return train_flops_per_epoch(model, shapes, model_params.hidden_size,
                                 head_flops(model_params, shapes, model.n_items))
