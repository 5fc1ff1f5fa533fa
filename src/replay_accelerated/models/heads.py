"""Item heads: hidden states -> one logit per item, for the whole catalog or a candidate subset.

Every head takes `forward(hidden [N, H], item_ids=None)`:
- `item_ids=None`: logits over the whole catalog, [N, n_items];
- `item_ids` [K]: the same K candidates for every row (sampled negatives, a shortlist), [N, K];
- `item_ids` [N, K]: K candidates per row (positive + its own negatives), [N, K];
- `item_ids` [B, K] for hidden [B, W, H]: K candidates per sequence, scored at each of its W positions,
  [B, W, K] (one batched product, no [B, W, K, H] copy of the weights).
Losses that need the raw matrix (chunked or bucketed ones) read `head.weight` [n_items, H]
and `head.bias` [n_items] or None (SASRec's tied head has no bias).
"""

import torch
import torch.nn.functional as F
from torch import nn


def score_items(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                item_ids: torch.Tensor | None = None) -> torch.Tensor:
    """Logits of `hidden` for all items or for `item_ids` (the shapes of the module docstring)."""
    if item_ids is None:
        return F.linear(hidden, weight, bias)  # [N, n_items]
    if item_ids.dim() == 1:
        return F.linear(hidden, weight[item_ids], None if bias is None else bias[item_ids])  # [N, K]
    candidates = weight[item_ids]  # [N, K, H] per row, or [B, K, H] per sequence
    if hidden.dim() == 3 and item_ids.dim() == 2:  # per sequence: hidden [B, W, H], item_ids [B, K]
        logits = torch.bmm(hidden, candidates.transpose(1, 2))  # [B, W, K]
        return logits if bias is None else logits + bias[item_ids].unsqueeze(1)
    logits = torch.bmm(candidates, hidden.unsqueeze(-1)).squeeze(-1)  # [N, K]
    return logits if bias is None else logits + bias[item_ids]


class LinearHead(nn.Linear):
    """nn.Linear(H, n_items), RePlay's classification head, that can also score candidates."""

    def forward(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        return score_items(hidden, self.weight, self.bias, item_ids)


class TiedHead(nn.Module):
    """Item head that reuses the input item embeddings (rows 0..n_items-1) as its weight, plus a bias
    (RePlay's BERT4Rec with embedding tying) or none (RePlay's SASRec). With `item_features`
    (models/item_features.py) its rows are the items' representations, id embedding and features: a rarely
    seen item is then scored through its features too."""

    def __init__(self, item_embedding: nn.Embedding, n_items: int, bias: bool = True,
                 item_features: nn.Module | None = None):
        super().__init__()
        self.item_embedding = item_embedding
        self.item_features = item_features
        self.n_items = n_items
        self.bias = nn.Parameter(torch.zeros(n_items)) if bias else None

    @classmethod
    def from_tied(cls, head: "TiedHead") -> "TiedHead":
        """A head of this class with the same embedding, features and bias (shared, not copied) as `head`."""
        new = cls(head.item_embedding, head.n_items, bias=False, item_features=head.item_features)
        new.bias = head.bias
        return new

    @property
    def weight(self) -> torch.Tensor:
        rows = self.item_embedding.weight[: self.n_items]  # [n_items, H], without padding and mask rows
        return rows if self.item_features is None else self.item_features(rows)

    def forward(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        return score_items(hidden, self.weight, self.bias, item_ids)


def item_count(head: nn.Module) -> int:
    """How many items `head` scores, without computing a tied head's weight (with item features, a forward over every
    item's features)."""
    return head.n_items if isinstance(head, TiedHead) else head.weight.shape[0]
