"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained to fill in masked items.

Training: each item of a sequence is replaced by the mask token with probability
`mask_prob`; the model predicts the original items at the masked positions only.
Prediction: the mask token is appended after the history and its output scores the
next item. The transformer itself is shared with SASRec (see transformer.py).
"""

import torch

from replay_accelerated.models.transformer import SequentialRecommender


class Bert4Rec(SequentialRecommender):
    causal = False

    def __init__(self, *, mask_prob: float = 0.15, **kwargs):
        super().__init__(**kwargs)
        self.mask_prob = mask_prob

    def training_example(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # sequences: [B, W + 1] left-padded; BERT4Rec uses the newest W items.
        items = sequences[:, 1:]  # [B, W]
        is_item = items != self.pad_id
        masked = (torch.rand(items.shape, device=items.device) < self.mask_prob) & is_item
        # As RePlay: a sequence with nothing masked gets its newest item masked (so every
        # sequence teaches something, and the prediction-time situation is trained), and
        # a sequence with every item masked keeps its second newest item visible.
        nothing_masked = ~masked.any(dim=1)
        masked[:, -1] |= nothing_masked
        all_masked = (masked == is_item).all(dim=1) & (is_item.sum(dim=1) > 1)
        masked[:, -2] &= ~all_masked
        inputs = torch.where(masked, torch.full_like(items, self.mask_id), items)
        labels = torch.where(masked, items, torch.zeros_like(items))
        return inputs, labels, masked

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        # Drop the oldest column and append the mask token: [B, W] -> [B, W].
        mask_column = torch.full_like(history[:, :1], self.mask_id)
        return torch.cat([history[:, 1:], mask_column], dim=1)
