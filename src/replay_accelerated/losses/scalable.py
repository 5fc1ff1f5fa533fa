"""Scalable cross-entropy (SCE), Mezentsev et al. 2024, https://arxiv.org/abs/2409.18721.

Full cross-entropy needs every [target position x item] logit. SCE keeps only the large
ones, found cheaply by random projections (an LSH-like bucketing), in `n_buckets` buckets:

1. bucket centers c_b [n_buckets, H]: Gaussian vectors, or with `mix_x` random Gaussian
   mixtures of the target hidden states (c = Omega^T X, Omega [N, n_buckets]);
2. bucket b holds the `bucket_size_x` target rows x_n with the largest <c_b, x_n> and the
   `bucket_size_y` items with the largest <c_b, w_j> (no gradient through the selection);
3. inside a bucket, row n gets
       l_{b,n} = -s_pos + log( exp(s_pos) + sum_{j in items_b, j != pos_n} exp(s_{n,j}) ),
   s_{n,j} = <x_n, w_j> + bias_j (the row's own positive is masked among the negatives and
   counted once, from its exact logit);
4. a row in several buckets keeps its largest loss (the hardest negatives): l_n = max_b l_{b,n};
   the loss is the mean over rows that fell in at least one bucket (rows in no bucket do not
   contribute).

This follows RePlay's `replay/models/nn/loss/sce.py` (the authors' algorithm), with three
changes: the head bias is part of every logit; gradients reach hidden, head.weight and
head.bias through ordinary indexing (nothing is detached except the bucket selection); a
row is "covered" when it was selected, not when its loss happens to be non-zero.

With one bucket that takes every row and every item (n_buckets=1, bucket_size_x >= N,
bucket_size_y >= n_items) step 3 sums exp over all items (the positive once), so SCE equals
the full-catalog cross-entropy mean_n [logsumexp_j s_{n,j} - s_{n,pos}] exactly; the same
holds for any number of such buckets, since they all give the same value.
"""

import torch
from torch import nn

from replay_accelerated.losses.targets import target_rows, valid_mean


class ScalableCrossEntropyLoss(nn.Module):
    def __init__(self, n_buckets: int, bucket_size_x: int, bucket_size_y: int, mix_x: bool = False):
        super().__init__()
        for name, value in (("n_buckets", n_buckets), ("bucket_size_x", bucket_size_x),
                            ("bucket_size_y", bucket_size_y)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        self.n_buckets = n_buckets
        self.bucket_size_x = bucket_size_x
        self.bucket_size_y = bucket_size_y
        self.mix_x = mix_x

    @staticmethod
    def head_flops(model_params, shapes, n_items: int) -> float:
        """SCE's forward FLOPs over an epoch of `shapes` (training/flops.py's EpochShapes), counted from the config:
        each batch's bucket centers against its target rows and against every item, then one
        [bucket_size_x, bucket_size_y] logit block per bucket, instead of every target against the catalog."""
        size, n_buckets = model_params.hidden_size, model_params.n_buckets
        assignment = 2 * size * n_buckets * (shapes.targets + n_items * shapes.batches)
        logits = 2 * size * n_buckets * model_params.bucket_size_x * model_params.bucket_size_y * shapes.batches
        return float(assignment + logits)

    @torch.no_grad()
    def buckets(self, rows: torch.Tensor, valid: torch.Tensor,
                weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices [n_buckets, bx] and item indices [n_buckets, by] of every bucket; rows that are not
        `valid` are picked only when a bucket has room for more rows than there are targets."""
        n_rows, size = rows.shape
        if self.mix_x:
            omega = torch.randn(self.n_buckets, n_rows, device=rows.device, dtype=torch.float32)
            centers = omega.to(rows.dtype) @ (rows * valid.unsqueeze(1))  # [n_buckets, H]: mixtures of the targets
        else:
            centers = torch.randn(self.n_buckets, size, device=rows.device, dtype=torch.float32).to(rows.dtype)
        row_scores = (centers @ rows.T).float().masked_fill(~valid, float("-inf"))  # [n_buckets, C]
        bucket_rows = row_scores.topk(min(self.bucket_size_x, n_rows), dim=1).indices
        bucket_items = (centers.to(weight.dtype) @ weight.T).topk(min(self.bucket_size_y, len(weight)), dim=1).indices
        return bucket_rows, bucket_items

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module, capacity: int | None = None) -> torch.Tensor:
        rows, positives, valid = target_rows(hidden, labels, target_mask, capacity)  # [N, H], [N], [N]
        weight, bias = head.weight, head.bias  # [n_items, H], [n_items]
        bucket_rows, bucket_items = self.buckets(rows.detach(), valid, weight.detach())  # [nb, bx], [nb, by]

        positive_logits = head(rows, positives.unsqueeze(1)).squeeze(1).float()  # [N]
        negative_logits = rows[bucket_rows] @ weight[bucket_items].transpose(1, 2)  # [nb, bx, by]
        if bias is not None:
            negative_logits = negative_logits + bias[bucket_items].unsqueeze(1)
        own_positive = positives[bucket_rows].unsqueeze(2) == bucket_items.unsqueeze(1)  # [nb, bx, by]
        negative_logits = negative_logits.float().masked_fill(own_positive, float("-inf"))
        bucket_positive = positive_logits[bucket_rows]  # [nb, bx]
        logits = torch.cat([bucket_positive.unsqueeze(2), negative_logits], dim=2)  # [nb, bx, 1 + by]
        bucket_loss = torch.logsumexp(logits, dim=2) - bucket_positive  # [nb, bx]

        flat_rows = bucket_rows.reshape(-1)
        row_loss = torch.zeros(len(rows), device=rows.device, dtype=bucket_loss.dtype)
        row_loss = row_loss.scatter_reduce(0, flat_rows, bucket_loss.reshape(-1), reduce="amax", include_self=False)
        covered = torch.zeros(len(rows), device=rows.device, dtype=torch.bool)
        covered[flat_rows] = True
        return valid_mean(row_loss, covered & valid)
