"""Full-catalog softmax cross-entropy, computed only where there is a target.

RePlay runs the item head over every position of every sequence ([B, L, n_items]
logits) and masks the loss afterwards. Only the masked positions of BERT4Rec (about
15%) or the non-padded positions of SASRec have a target, so we gather those hidden
states first and run the head on them alone: same loss, a fraction of the work.

- `CrossEntropyLoss` ("CE", also "CE_restricted"): head on target positions only.
- `FullPositionsCrossEntropyLoss` ("CE_full_positions"): RePlay's way, kept to measure
  what the gathering saves; same value and gradients as "CE".
"""

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over target positions.

    The interface every loss shares: hidden [B, W, H] transformer outputs, labels [B, W]
    item ids (meaningful only where target_mask is True), target_mask [B, W], and the
    model's item head (see models/heads.py).
    """

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module) -> torch.Tensor:
        logits = head(hidden[target_mask])  # [N, n_items]: the head runs on target positions only
        return F.cross_entropy(logits.float(), labels[target_mask])


class FullPositionsCrossEntropyLoss(nn.Module):
    """RePlay's cross-entropy: logits for every position [B, W, n_items], then only the
    target positions enter the loss. Same value as `CrossEntropyLoss`, more time and memory."""

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module) -> torch.Tensor:
        batch, width, size = hidden.shape
        logits = head(hidden.reshape(batch * width, size)).view(batch, width, -1)  # [B, W, n_items]
        return F.cross_entropy(logits[target_mask].float(), labels[target_mask])
