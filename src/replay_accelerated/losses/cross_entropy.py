"""Full-catalog softmax cross-entropy, computed only where there is a target.

RePlay runs the item head over every position of every sequence ([B, L, n_items]
logits) and masks the loss afterwards. Only the masked positions of BERT4Rec (about
15%) or the non-padded positions of SASRec have a target, so we gather those hidden
states first and run the head on them alone: same loss, a fraction of the work.
"""

import torch
import torch.nn.functional as F
from torch import nn


class CrossEntropyLoss(nn.Module):
    """Mean cross-entropy over target positions: the interface every loss shares."""

    def forward(self, hidden: torch.Tensor, targets: torch.Tensor, head: nn.Linear) -> torch.Tensor:
        # hidden: [N, H] hidden states at target positions; targets: [N] item ids.
        logits = head(hidden)  # [N, n_items]
        return F.cross_entropy(logits.float(), targets)


def build_loss(loss_type: str) -> nn.Module:
    """The loss named by `model_params.loss_type`."""
    return {"CE": CrossEntropyLoss}[loss_type]()
