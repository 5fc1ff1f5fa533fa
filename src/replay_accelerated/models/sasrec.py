"""SASRec (Kang & McAuley, 2018): a causal transformer trained to predict the next item.

Training: the input is the sequence without its newest item and the target at each
position is the item that follows it, at every non-padded position.
Prediction: the output at the newest item scores the next one. The transformer itself
is shared with BERT4Rec (see transformer.py).
"""

import torch

from replay_accelerated.models.transformer import SequentialRecommender


class SasRec(SequentialRecommender):
    causal = True

    def training_example(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # sequences: [B, W + 1] left-padded; position t predicts the item at t + 1.
        inputs, next_items = sequences[:, :-1], sequences[:, 1:]  # [B, W] each
        # Left padding: wherever the input is an item, the next one is an item too.
        target_mask = inputs != self.pad_id
        labels = torch.where(target_mask, next_items, torch.zeros_like(next_items))
        return inputs, labels, target_mask

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        return history
