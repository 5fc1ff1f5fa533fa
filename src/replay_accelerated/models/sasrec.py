"""SASRec (Kang & McAuley, 2018): a causal transformer trained to predict the next item.

Architecture as RePlay 0.22's `SasRec`, weight for weight (models/replay_import.py copies
them):

    x = dropout(item_embedding(ids) * sqrt(H) + position_embedding), padding rows zeroed
    per block:  q = LN(x);  x = q + attention(queries q, keys and values x)   (causal)
                y = LN(x);  x = y + dropout(FeedForward(y)), padding rows zeroed
                FeedForward: Linear(H, H) -> ReLU -> dropout -> Linear(H, H) (RePlay's kernel-1 Conv1d)
    hidden = LN(x);  logits = hidden @ item_embedding[:n_items].T   (tied head, no bias)

Every LayerNorm has eps 1e-8 (the final one 1e-5 with padding_attention "replay_nn", as RePlay's
newer `replay.nn` SasRec: torch's default); attention probabilities get dropout too; there is
no dropout on the attention output.

Padding, `padding_attention`:
- "masked" (our default, as the SASRec paper's code): padding keys are masked, so that a batch
  trimmed to its longest sequence (or bucketed by length) gives exactly the outputs of the
  full-width batch. Every query still attends to its own position, so the query just before
  the first item (which sees no item) has a defined state: its row is zeroed like all padding,
  so its output is the final LayerNorm's bias, a learned "empty history" state, whatever the
  batch's padding.
- "replay": RePlay's `SasRec` attention. Queries attend causally to every position, the zeroed
  padding included (whose keys and values are then the attention biases), and every input is
  padded to max_seq_len first, as RePlay's loaders do. An imported RePlay model
  (models/replay_import.py) uses it and scores as RePlay at every history length. Trimming and
  bucketing then save no work, since every batch runs at full width.
- "replay_nn": RePlay 0.22's newer `replay.nn.sequential.SasRec` (DefaultAttentionMask) in
  training mode, its final LayerNorm eps (1e-5) too. Queries at items attend as in "masked";
  padding rows are not zeroed: the
  padding item embedding is zero (its `padding_idx`) and a padding row holds its position
  embedding, and a padding query attends to nothing (RePlay's fully masked row), so its
  attention output is the output projection's bias. Only the padding positions differ from
  "masked", among them the one before the first item, which predicts the first item in
  training. (In eval mode RePlay's padding queries attend to themselves and to later items,
  through its finite mask value; no score reads them.) Trimming keeps the outputs.
On sequences of full length max_seq_len (no padding) all three give the same scores.

Training (RePlay's `SasRecTrainingDataset`): the input is the sequence without its newest item
and the target at each position is the item that follows it, wherever that next item is an item:
the first item too, predicted from the padding position before it. A user with L <= max_seq_len
events gives L targets.
Prediction: the output at the newest item scores the next one.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.models.dropout import Dropout
from replay_accelerated.models.transformer import FeedForward, SelfAttention, SequentialRecommender, TrainingTask

EPS = 1e-8  # RePlay's (and the SASRec paper's) LayerNorm eps
REPLAY_NN_FINAL_EPS = 1e-5  # replay.nn's final LayerNorm: torch's default eps
PADDING_ATTENTION = ("masked", "replay", "replay_nn")  # model_params.padding_attention, see above


class SasRecBlock(nn.Module):
    """Causal self-attention with the normalised input as queries, then a residual feed-forward."""

    def __init__(self, hidden_size: int, head_count: int, dropout_rate: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size, eps=EPS)
        self.attention = SelfAttention(hidden_size, head_count, dropout_rate)
        self.feed_forward_norm = nn.LayerNorm(hidden_size, eps=EPS)
        self.feed_forward = FeedForward(hidden_size, hidden_size, dropout_rate, nn.ReLU())
        self.feed_forward_dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, silent: torch.Tensor | None = None) -> torch.Tensor:
        # silent: [B, W, 1] bool or None, True at queries that attend to nothing ("replay_nn" padding)
        query = self.attention_norm(x)  # [B, W, H]
        attended = self.attention(query, allowed, context=x)
        if silent is not None:  # no key: zero attention weights, so only the output projection's bias is left
            attended = torch.where(silent, self.attention.out.bias, attended)
        # The residual adds the normalised queries, not x: RePlay's (and the paper's) choice.
        x = query + attended
        y = self.feed_forward_norm(x)
        return y + self.feed_forward_dropout(self.feed_forward(y))


@dataclass(frozen=True)
class NextItems(TrainingTask):
    """SASRec's training examples: every position predicts the item after it."""

    pad_id: int

    def target_mask(self, is_item: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        # is_item: [B, W + 1]; position t predicts the item at t + 1. A target wherever the next position
        # holds an item, as RePlay: the first item is predicted from the padding position before it
        # (batches keep that column, training/batches.py).
        return is_item[:, 1:]  # [B, W]

    def inputs_and_labels(self, sequences: torch.Tensor, target_mask: torch.Tensor
                          ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, next_items = sequences[:, :-1], sequences[:, 1:]  # [B, W] each
        return inputs, torch.where(target_mask, next_items, torch.zeros_like(next_items))


class SasRec(SequentialRecommender):
    causal = True
    extra_tokens = 1  # padding

    def __init__(self, *, n_items: int, max_seq_len: int, hidden_size: int, block_count: int, head_count: int,
                 dropout_rate: float, padding_attention: str = "masked", **item_features):
        super().__init__(n_items, max_seq_len, hidden_size, dropout_rate, **item_features)
        if padding_attention not in PADDING_ATTENTION:
            raise ValueError(f"padding_attention must be one of {PADDING_ATTENTION}, got {padding_attention!r}")
        self.padding_attention = padding_attention
        self.training_example = NextItems(self.pad_id)
        self.blocks = nn.ModuleList(SasRecBlock(hidden_size, head_count, dropout_rate) for _ in range(block_count))
        self.final_norm = nn.LayerNorm(hidden_size, eps=REPLAY_NN_FINAL_EPS if padding_attention == "replay_nn"
                                       else EPS)
        self.head = self.tied_head(bias=False)  # accelerations may swap it
        self.reset_parameters()

    @staticmethod
    def task_params(model_params) -> dict:
        return {"padding_attention": model_params.padding_attention}

    def architecture(self) -> dict:
        return {**super().architecture(), "padding_attention": self.padding_attention}

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        width = item_ids.shape[1]
        if self.padding_attention == "replay":  # RePlay attends to padding: run at its full width
            item_ids = F.pad(item_ids, (self.max_seq_len - width, 0), value=self.pad_id)  # [B, max_seq_len]
        is_token = item_ids != self.pad_id  # [B, W]
        is_item = is_token.unsqueeze(-1).to(self.item_embedding.weight.dtype)  # [B, W, 1]
        item_scale = math.sqrt(self.item_embedding.embedding_dim)
        allowed = self.attention_mask(is_token)  # [B, 1, W, W]
        if self.padding_attention == "replay_nn":  # padding rows kept: their position embedding, silent queries
            x = self.embedding_dropout(self.embed(item_ids, item_scale=item_scale * is_item))
            silent = ~is_token.unsqueeze(-1)  # [B, W, 1]
            for block in self.blocks:
                x = block(x, allowed, silent)
        else:  # padding rows zeroed after every step
            x = self.embedding_dropout(self.embed(item_ids, item_scale=item_scale)) * is_item
            for block in self.blocks:
                x = block(x, allowed) * is_item
        return self.final_norm(x)[:, -width:]  # the positions of item_ids

    def attention_mask(self, is_token: torch.Tensor) -> torch.Tensor:
        if self.padding_attention != "replay":
            return super().attention_mask(is_token)
        width = is_token.shape[1]  # "replay": causal only, padding keys included: [1, 1, W, W]
        return torch.ones(width, width, dtype=torch.bool, device=is_token.device).tril()[None, None]

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        return history
