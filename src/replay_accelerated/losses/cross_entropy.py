"""Full-catalog softmax cross-entropy, computed only where there is a target.

RePlay runs the item head over every position of every sequence ([B, L, n_items]
logits) and masks the loss afterwards. Only the masked positions of BERT4Rec (about
15%) or the non-padded positions of SASRec have a target, so we gather those hidden
states first and run the head on them alone: same loss, a fraction of the work.

- `CrossEntropyLoss` ("CE", also "CE_restricted"): head on target positions only.
- `FullPositionsCrossEntropyLoss` ("CE_full_positions"): RePlay's way, kept to measure
  what the gathering saves; same value and gradients as "CE".

The rows are gathered at a size the host knows (losses/targets.py): the rows past the real targets
get the label `IGNORED`, which the cross-entropy leaves out.
"""

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.losses.targets import target_rows

IGNORED = -100  # F.cross_entropy's ignore_index: the label of a padding row


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over target positions.

    The interface every loss shares: hidden [B, W, H] transformer outputs, labels [B, W]
    item ids (meaningful only where target_mask is True), target_mask [B, W], the model's
    item head (see models/heads.py) and the number of rows to gather (losses/targets.py).
    """

    full_logits = "targets"  # holds the [targets x items] logits at once (losses.full_logits_bytes)

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module, capacity: int | None = None) -> torch.Tensor:
        rows, positives, valid = target_rows(hidden, labels, target_mask, capacity)  # [C, H], [C], [C]
        logits = head(rows)  # [C, n_items]: the head runs on target positions only
        return F.cross_entropy(logits.float(), positives.masked_fill(~valid, IGNORED), ignore_index=IGNORED)


class FullPositionsCrossEntropyLoss(nn.Module):
    """RePlay's cross-entropy: logits for every position [B, W, n_items], then only the
    target positions enter the loss. Same value as `CrossEntropyLoss`, more time and memory."""

    full_logits = "positions"  # holds the logits of every position of the batch

    @staticmethod
    def head_flops(model_params, shapes, n_items: int) -> float:
        """Forward FLOPs of its head over an epoch of `shapes` (training/flops.py's EpochShapes): every position
        of every batch, padding included, against the catalog, not only the targets."""
        return float(2 * model_params.hidden_size * n_items * shapes.tokens)

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module, capacity: int | None = None) -> torch.Tensor:
        batch, width, size = hidden.shape
        logits = head(hidden.reshape(batch * width, size))  # [B * W, n_items]
        return F.cross_entropy(logits.float(), labels.masked_fill(~target_mask, IGNORED).reshape(-1),
                               ignore_index=IGNORED)
