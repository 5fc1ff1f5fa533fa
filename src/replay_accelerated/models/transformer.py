"""The transformer both sequential recommenders share.

BERT4Rec and SASRec differ only in how a training example is made from a sequence
(random masking vs. next-item shift) and whether attention is causal. Everything
else lives here, once:

    item ids [B, L] -> item embedding + learned positional embedding -> dropout
                    -> block_count x pre-LayerNorm transformer block -> hidden [B, L, H]
    hidden at chosen positions [N, H] -> item head nn.Linear(H, n_items) -> logits [N, n_items]

This matches RePlay's Bert4Rec architecture (pre-LN blocks with a 4x GELU feed-forward,
dropout after attention, after the feed-forward and at the block's end, xavier-normal
initialisation) so that quality can be compared one to one. Dropout draws its mask the
cheap way on a CPU (dropout.py); the attention-probability dropout stays inside SDPA.

Token ids: real items are 0..n_items-1, `pad_id = n_items`, `mask_id = n_items + 1`.
Sequences are left-padded, so the newest item is always in the last column.
"""

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.models.dropout import Dropout
from replay_accelerated.models.heads import LinearHead


class SelfAttention(nn.Module):
    """Multi-head self-attention through PyTorch's fused scaled_dot_product_attention."""

    def __init__(self, hidden_size: int, head_count: int, dropout_rate: float):
        super().__init__()
        self.head_count = head_count
        self.dropout_rate = dropout_rate
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        # x: [B, L, H]; allowed: [B, 1, L, L] bool, True where a query may attend to a key
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=-1)
        # [B, L, H] -> [B, heads, L, H / heads]
        q, k, v = (t.view(batch, length, self.head_count, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout_rate if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, length, hidden)
        return self.out(y)


class FeedForward(nn.Module):
    """Position-wise feed-forward: Linear(H, 4H) -> GELU -> dropout -> Linear(4H, H).

    The activation is a module so that an acceleration can swap it (SELU, SiLU, ...).
    """

    def __init__(self, hidden_size: int, dropout_rate: float):
        super().__init__()
        self.up = nn.Linear(hidden_size, 4 * hidden_size)
        self.activation = nn.GELU()
        self.dropout = Dropout(dropout_rate)
        self.down = nn.Linear(4 * hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.dropout(self.activation(self.up(x))))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: x + Attention(LN(x)), then + FeedForward(LN(.)), then dropout."""

    def __init__(self, hidden_size: int, head_count: int, dropout_rate: float):
        super().__init__()
        self.attention_norm = nn.LayerNorm(hidden_size)
        self.attention = SelfAttention(hidden_size, head_count, dropout_rate)
        self.attention_dropout = Dropout(dropout_rate)
        self.feed_forward_norm = nn.LayerNorm(hidden_size)
        self.feed_forward = FeedForward(hidden_size, dropout_rate)
        self.feed_forward_dropout = Dropout(dropout_rate)
        self.dropout = Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.attention_dropout(self.attention(self.attention_norm(x), allowed))
        x = x + self.feed_forward_dropout(self.feed_forward(self.feed_forward_norm(x)))
        return self.dropout(x)


class SequentialRecommender(nn.Module):
    """Embeddings, transformer blocks and item head; subclasses define the training task."""

    causal: bool  # SASRec attends only to the past; BERT4Rec to both sides

    def __init__(
        self,
        n_items: int,
        max_seq_len: int,
        hidden_size: int,
        block_count: int,
        head_count: int,
        dropout_rate: float,
    ):
        super().__init__()
        self.n_items = n_items
        self.pad_id = n_items
        self.mask_id = n_items + 1
        self.max_seq_len = max_seq_len
        # One table for items, padding and the mask token (used by BERT4Rec only).
        self.item_embedding = nn.Embedding(n_items + 2, hidden_size)
        self.position_embedding = nn.Embedding(max_seq_len, hidden_size)
        self.embedding_dropout = Dropout(dropout_rate)
        self.blocks = nn.ModuleList(
            TransformerBlock(hidden_size, head_count, dropout_rate) for _ in range(block_count)
        )
        self.head = LinearHead(hidden_size, n_items)  # accelerations may swap it (acceleration/apply.py)
        # RePlay initialises every matrix with xavier-normal; vectors keep their defaults.
        for parameter in self.parameters():
            with contextlib.suppress(ValueError):
                nn.init.xavier_normal_(parameter)

    def forward(self, item_ids: torch.Tensor) -> torch.Tensor:
        """item_ids: [B, W] left-padded token ids, W <= max_seq_len. Returns hidden [B, W, H]."""
        width = item_ids.shape[1]
        is_token = item_ids != self.pad_id  # [B, W]
        # Batches may be trimmed to their longest sequence; positions stay counted from
        # the right edge, so the newest item always gets position max_seq_len - 1.
        positions = torch.arange(self.max_seq_len - width, self.max_seq_len, device=item_ids.device)
        x = self.item_embedding(item_ids) + self.position_embedding(positions)  # [B, W, H]
        x = self.embedding_dropout(x)

        allowed = is_token[:, None, None, :]  # [B, 1, 1, W]: never attend to padding
        if self.causal:
            allowed = allowed & torch.ones(width, width, dtype=torch.bool, device=x.device).tril()
        # Let every position see itself, so that padding rows (whose outputs are never
        # used) do not attend to nothing and produce NaN.
        allowed = allowed | torch.eye(width, dtype=torch.bool, device=x.device)  # [B, 1, W, W]
        for block in self.blocks:
            x = block(x, allowed)
        return x

    def score_next(self, history: torch.Tensor) -> torch.Tensor:
        """Scores of every item as the next one. history: [B, W] left-padded. Returns [B, n_items]."""
        hidden = self(self.prediction_inputs(history))  # [B, W, H]
        return self.head(hidden[:, -1])

    def training_example(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """From left-padded sequences [B, W + 1]: inputs [B, W], labels [B, W] and target_mask [B, W].

        Labels are item ids where `target_mask` is True and 0 (a valid id, ignored) elsewhere.
        """
        raise NotImplementedError

    def prediction_inputs(self, history: torch.Tensor) -> torch.Tensor:
        """The model input whose last position predicts the item after `history` [B, W]."""
        raise NotImplementedError
