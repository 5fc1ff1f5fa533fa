"""Full-catalog softmax cross-entropy, computed only where there is a target.

RePlay runs the item head over every position of every sequence ([B, L, n_items]
logits) and masks the loss afterwards. Only the masked positions of BERT4Rec (about
15%) or the non-padded positions of SASRec have a target, so we gather those hidden
states first and run the head on them alone: same loss, a fraction of the work.

- `CrossEntropyLoss` ("CE", also "CE_restricted"): head on target positions only.
- `FullPositionsCrossEntropyLoss` ("CE_full_positions"): RePlay's way, kept to measure
  what the gathering saves; same value and gradients as "CE".

The number of targets differs from batch to batch, and oneDNN (bf16 on a CPU) caches a kernel
with its own buffers for every distinct shape: bf16 training used far more memory than fp32.
The gathered rows are therefore padded with zero rows, whose labels the loss ignores, to a
coarse size (acceleration/shapes.py: at most 4 sizes per power of two, a multiple of 64).
"""

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.acceleration.shapes import coarse_size

TARGET_ROWS_STEP = 64
IGNORED = -100  # F.cross_entropy's ignore_index: the label of a padding row


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over target positions.

    The interface every loss shares: hidden [B, W, H] transformer outputs, labels [B, W]
    item ids (meaningful only where target_mask is True), target_mask [B, W], and the
    model's item head (see models/heads.py).
    """

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module) -> torch.Tensor:
        rows, positives = hidden[target_mask], labels[target_mask]  # [N, H], [N]
        padding = coarse_size(len(rows), TARGET_ROWS_STEP) - len(rows)
        rows = F.pad(rows, (0, 0, 0, padding))  # [N + padding, H], zero rows
        positives = F.pad(positives, (0, padding), value=IGNORED)
        logits = head(rows)  # [N + padding, n_items]: the head runs on target positions only
        return F.cross_entropy(logits.float(), positives, ignore_index=IGNORED)


class FullPositionsCrossEntropyLoss(nn.Module):
    """RePlay's cross-entropy: logits for every position [B, W, n_items], then only the
    target positions enter the loss. Same value as `CrossEntropyLoss`, more time and memory."""

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module) -> torch.Tensor:
        batch, width, size = hidden.shape
        logits = head(hidden.reshape(batch * width, size)).view(batch, width, -1)  # [B, W, n_items]
        return F.cross_entropy(logits[target_mask].float(), labels[target_mask])
