"""BERT4Rec (Sun et al., 2019): a bidirectional transformer trained to fill in masked items.

Architecture as RePlay 0.22's `Bert4Rec`, weight for weight (models/replay_import.py copies
them): item embedding (the mask token is row `mask_id`, RePlay's `mask_embedding`) plus a
learned position embedding, dropout, then per block

    y = x + dropout(attention(LN(x)))           attention never reads padding keys
    x = dropout(y + dropout(FeedForward(LN(y))))  Linear(H, 4H) -> GELU -> dropout -> Linear(4H, H)

(LayerNorm eps 1e-5), and an nn.Linear(H, n_items) head with bias.

Training: each item of the newest max_seq_len items is replaced by the mask token with
probability `mask_prob`; the model predicts the original items at the masked positions.
Corner cases follow `masking`:
- "replay" (default, RePlay's Bert4RecUniformMasker): padding counts as masked, so only a
  sequence filling all max_seq_len positions with nothing masked gets its newest item masked;
  a shorter sequence with nothing masked gives no target this time. A sequence with every
  item masked keeps its second newest position visible.
- "at_least_one": every sequence with nothing masked gets its newest item masked.
Prediction: the mask token is appended after the history and its output scores the next item.
"""

from dataclasses import dataclass

import torch
from torch import nn

from replay_accelerated.models.dropout import Dropout
from replay_accelerated.models.heads import LinearHead
from replay_accelerated.models.transformer import FeedForward, SelfAttention, SequentialRecommender, TrainingTask

MASKING_RULES = ("replay", "at_least_one")  # the corner cases above


class Bert4RecBlock(nn.Module):
    """Pre-LayerNorm block: x + Attention(LN(x)), then + FeedForward(LN(.)), then dropout."""

    def __init__(self, hidden_size: int, head_count: int, dropout_rate: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = SelfAttention(hidden_size, head_count, dropout_rate)
        self.attention_dropout = Dropout(dropout_rate)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.feed_forward = FeedForward(hidden_size, 4 * hidden_size, dropout_rate, nn.GELU())
        self.feed_forward_dropout = Dropout(dropout_rate)
        self.dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), allowed))
        x = x + self.feed_forward_dropout(self.feed_forward(self.feed_forward_norm(x)))
        return self.dropout(x)


@dataclass(frozen=True)
class MaskedItems(TrainingTask):
    """BERT4Rec's training examples (see the module doc)."""

    max_seq_len: int
    pad_id: int
    mask_id: int
    mask_prob: float
    masking: str

    def target_mask(self, is_item: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # is_item: [B, W + 1]. As RePlay, BERT4Rec reads the newest max_seq_len items: every column of
        # a trimmed batch, the oldest column dropped only when W + 1 > max_seq_len.
        is_item = is_item[:, -self.max_seq_len:]  # [B, W']
        draws = torch.rand(is_item.shape, generator=generator, device=is_item.device)  # generator: the batch's seed
        masked = (draws < self.mask_prob) & is_item
        nothing_masked = ~masked.any(dim=1)
        if self.masking == "replay":
            # RePlay masks a window of exactly max_seq_len positions in which padding counts as
            # masked: only a window without padding can have "nothing masked".
            nothing_masked &= is_item.all(dim=1) & (is_item.shape[1] == self.max_seq_len)
        masked[:, -1] |= nothing_masked
        # Every item masked: the second newest position is shown (a no-op when it is padding).
        all_masked = (masked == is_item).all(dim=1)
        masked[:, -2] &= ~all_masked
        return masked

    def inputs_and_labels(self, sequences: torch.Tensor, target_mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        items = sequences[:, -self.max_seq_len:]  # [B, W']
        inputs = torch.where(target_mask, torch.full_like(items, self.mask_id), items)
        labels = torch.where(target_mask, items, torch.zeros_like(items))
        return inputs, labels


class Bert4Rec(SequentialRecommender):
    causal = False
    extra_tokens = 2  # padding, then the mask token

    def __init__(self, *, n_items: int, max_seq_len: int, hidden_size: int, block_count: int, head_count: int,
                 dropout_rate: float, mask_prob: float = 0.15, masking: str = "replay", **item_features):
        super().__init__(n_items, max_seq_len, hidden_size, dropout_rate, **item_features)
        if masking not in MASKING_RULES:
            raise ValueError(f"masking must be one of {MASKING_RULES}, got {masking!r}")
        self.mask_id = n_items + 1
        self.mask_prob = mask_prob
        self.masking = masking
        self.training_example = MaskedItems(max_seq_len, self.pad_id, self.mask_id, mask_prob, masking)
        self.blocks = nn.ModuleList(Bert4RecBlock(hidden_size, head_count, dropout_rate)
                                    for _ in range(block_count))
        # RePlay's untied head; with item_feature_head=item_representation the head scores the items' rows
        # (id and features) with a bias. Accelerations may swap it (acceleration/apply.py).
        self.head = self.tied_head(bias=True) if self.item_feature_head == "item_representation" \
            else LinearHead(hidden_size, n_items)
        self.reset_parameters()

    @staticmethod
    def task_params(model_params) -> dict:
        return {"mask_prob": model_params.mask_prob, "masking": model_params.masking}

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        x = self.embedding_dropout(self.embed(item_ids))  # [B, W, H]
        allowed = self.attention_mask(item_ids != self.pad_id)  # [B, 1, W, W]
        for block in self.blocks:
            x = block(x, allowed)
        return x

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        # Append the mask token, keep the newest max_seq_len positions (RePlay's shift drops
        # the oldest item only of a full window): [B, W] -> [B, min(W + 1, max_seq_len)].
        mask_column = torch.full_like(history[:, :1], self.mask_id)
        return torch.cat([history, mask_column], dim=1)[:, -self.max_seq_len:]
