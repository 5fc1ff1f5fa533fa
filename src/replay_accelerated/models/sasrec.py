"""SASRec (Kang & McAuley, 2018): a causal transformer trained to predict the next item.

Architecture as RePlay 0.22's `SasRec`, weight for weight (models/replay_import.py copies
them):

    x = dropout(item_embedding(ids) * sqrt(H) + position_embedding), padding rows zeroed
    per block:  q = LN(x);  x = q + attention(queries q, keys and values x)   (causal)
                y = LN(x);  x = y + dropout(FeedForward(y)), padding rows zeroed
                FeedForward: Linear(H, H) -> ReLU -> dropout -> Linear(H, H) (RePlay's kernel-1 Conv1d)
    hidden = LN(x);  logits = hidden @ item_embedding[:n_items].T   (tied head, no bias)

Every LayerNorm has eps 1e-8; attention probabilities get dropout too; there is no dropout
on the attention output.

One deliberate difference: RePlay lets queries attend to the (zeroed) padding positions,
whose keys and values are then the attention biases. Here padding keys are masked, as in the
SASRec paper's code, so that a batch trimmed to its longest sequence (or bucketed by length)
gives exactly the outputs of the full-width batch. On sequences of full length max_seq_len
(no padding) both give the same scores; shorter sequences score slightly differently.

Training: the input is the sequence without its newest item and the target at each
position is the item that follows it, at every non-padded position.
Prediction: the output at the newest item scores the next one.
"""

import math

import torch
from torch import nn

from replay_accelerated.models.dropout import Dropout
from replay_accelerated.models.heads import TiedHead
from replay_accelerated.models.transformer import FeedForward, SelfAttention, SequentialRecommender

EPS = 1e-8  # RePlay's (and the SASRec paper's) LayerNorm eps


class SasRecBlock(nn.Module):
    """Causal self-attention with the normalised input as queries, then a residual feed-forward."""

    def __init__(self, hidden_size: int, head_count: int, dropout_rate: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=EPS)
        self.attention = SelfAttention(hidden_size, head_count, dropout_rate)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=EPS)
        self.feed_forward = FeedForward(hidden_size, hidden_size, dropout_rate, nn.ReLU())
        self.feed_forward_dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        query = self.attention_norm(x)  # [B, W, H]
        # The residual adds the normalised queries, not x: RePlay's (and the paper's) choice.
        x = query + self.attention(query, allowed, context=x)
        y = self.feed_forward_norm(x)
        return y + self.feed_forward_dropout(self.feed_forward(y))


class SasRec(SequentialRecommender):
    causal = True
    extra_tokens = 1  # padding

    def __init__(self, *, n_items: int, max_seq_len: int, hidden_size: int, block_count: int, head_count: int,
                 dropout_rate: float):
        super().__init__(n_items, max_seq_len, hidden_size, dropout_rate)
        self.blocks = nn.ModuleList(SasRecBlock(hidden_size, head_count, dropout_rate) for _ in range(block_count))
        self.final_norm = nn.LayerNorm(hidden_size, eps=EPS)
        self.head = TiedHead(self.item_embedding, n_items, bias=False)  # accelerations may swap it
        self.reset_parameters()

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        is_token = item_ids != self.pad_id  # [B, W]
        x = self.embed(item_ids, item_scale=math.sqrt(self.item_embedding.embedding_dim))
        keep = is_token.unsqueeze(-1).to(x.dtype)  # [B, W, 1]: zero the padding rows
        x = self.embedding_dropout(x) * keep
        allowed = self.attention_mask(is_token)  # [B, 1, W, W]
        for block in self.blocks:
            x = block(x, allowed) * keep
        return self.final_norm(x)

    def training_example(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        # sequences: [B, W + 1] left-padded; position t predicts the item at t + 1.
        inputs, next_items = sequences[:, :-1], sequences[:, 1:]  # [B, W] each
        # Left padding: wherever the input is an item, the next one is an item too.
        target_mask = inputs != self.pad_id
        labels = torch.where(target_mask, next_items, torch.zeros_like(next_items))
        return inputs, labels, target_mask

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        return history
