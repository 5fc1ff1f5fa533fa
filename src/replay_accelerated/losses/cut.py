"""Cut cross-entropy (CCE), Wijmans et al. 2024, https://arxiv.org/abs/2411.09009.

The exact full-catalog cross-entropy at the target positions,
    loss = mean_n [ logsumexp_j (x_n . w_j + b_j) - (x_n . w_pos + b_pos) ],
without ever holding the [N, n_items] logits matrix: the items are visited `chunk_size` at
a time. Forward keeps a running (max, sum of exp) per row — an online logsumexp — and saves
only the inputs, the positive logits [N] and the logsumexp [N]. Backward recomputes each
chunk's logits, turns them into softmax probabilities p = exp(s - lse) and accumulates
    dL/dx_n += sum_j p_nj w_j,   dL/dw_j += sum_n p_nj x_n,   dL/db_j += sum_n p_nj,
minus the one-hot term of the positive, all scaled by grad / N. Peak extra memory is a few
[N, chunk_size] blocks (plus the gradients themselves, the size of the parameters).

Plain PyTorch: runs anywhere, in float32 (float64 inputs stay float64; autocast is off
inside, since a bf16 logsumexp over a large catalog loses the loss). The fused Triton kernel
of the `cut_cross_entropy` package is not used.

With `n_negatives` (CCE-, the sampled variant): the candidates are the positive plus one
shared set of sampled negatives (drawn by `NegativeSampler`, as in sampled.py), and the value
is exactly `SampledSoftmaxLoss`'s: log-Q correction -log(K q_j) on the negatives, the row's
own positive masked among them; chunks run over the K candidates.
"""

import torch
from torch import nn

from replay_accelerated.losses.sampled import NegativeSampler
from replay_accelerated.losses.targets import target_rows


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _chunks(x, weight, bias, labels, candidates, offsets, chunk_size):
    """Yields (index, logits [N, C]) per chunk of the candidates (all items when None).

    `index` is a slice of the catalog (full case) or the candidate ids of the chunk. In the
    sampled case each row's own positive is masked to -inf among the candidates."""
    n_candidates = len(weight) if candidates is None else len(candidates)
    for start in range(0, n_candidates, chunk_size):
        end = min(start + chunk_size, n_candidates)
        index = slice(start, end) if candidates is None else candidates[start:end]
        logits = x @ weight[index].to(x.dtype).T  # [N, C]
        if bias is not None:
            logits += bias[index].to(x.dtype)
        if candidates is not None:
            logits -= offsets[start:end].to(x.dtype)
            logits.masked_fill_(index.unsqueeze(0) == labels.unsqueeze(1), float("-inf"))
        yield index, logits


class _ChunkedCrossEntropy(torch.autograd.Function):
    """sum_n row_weight_n [lse_n - s_n,pos] over x [N, H], weight [V, H], bias [V] | None, labels [N];
    row_weights [N]: 1 / (number of targets) at the targets, 0 at the rows that are not (a mean).

    candidates [K] | None: None means the full catalog (the positive is among the items);
    otherwise the positive plus these candidates, shifted by -offsets [K], own positive masked."""

    @staticmethod
    def forward(ctx, x, weight, bias, labels, row_weights, candidates, offsets, chunk_size):
        with torch.autocast(x.device.type, enabled=False):
            xc = x.to(_compute_dtype(x))
            positive = (xc * weight[labels].to(xc.dtype)).sum(1)  # [N]
            if bias is not None:
                positive = positive + bias[labels].to(xc.dtype)
            if candidates is None:  # running max m and sum of exp(s - m), per row
                running_max = torch.full_like(positive, float("-inf"))
                running_sum = torch.zeros_like(positive)
            else:  # the positive is one of the candidates
                running_max, running_sum = positive.clone(), torch.ones_like(positive)
            for _, logits in _chunks(xc, weight, bias, labels, candidates, offsets, chunk_size):
                new_max = torch.maximum(running_max, logits.max(dim=1).values)
                running_sum = running_sum * torch.exp(running_max - new_max) \
                    + torch.exp(logits - new_max.unsqueeze(1)).sum(dim=1)
                running_max = new_max
            lse = running_max + torch.log(running_sum)  # [N]
        ctx.save_for_backward(x, weight, bias, labels, row_weights, candidates, offsets, positive, lse)
        ctx.chunk_size = chunk_size
        return ((lse - positive) * row_weights.to(lse.dtype)).sum()

    @staticmethod
    def backward(ctx, grad_output):
        x, weight, bias, labels, row_weights, candidates, offsets, positive, lse = ctx.saved_tensors
        with torch.autocast(x.device.type, enabled=False):
            xc = x.to(_compute_dtype(x))
            scale = grad_output.to(xc.dtype)
            row_scale = row_weights.to(xc.dtype)  # [N]
            grad_x = torch.zeros_like(xc)
            grad_w = torch.zeros(weight.shape, dtype=xc.dtype, device=weight.device)
            grad_b = None if bias is None else torch.zeros(bias.shape, dtype=xc.dtype, device=bias.device)
            # The positive's own term: -1 (its softmax probability comes with its chunk in the
            # full case; in the sampled case it is not a candidate, so it is added here).
            coefficient = -torch.ones_like(positive) if candidates is None else torch.exp(positive - lse) - 1
            coefficient = coefficient * row_scale
            grad_x += coefficient.unsqueeze(1) * weight[labels].to(xc.dtype)
            grad_w.index_add_(0, labels, coefficient.unsqueeze(1) * xc)
            if grad_b is not None:
                grad_b.index_add_(0, labels, coefficient)
            for index, logits in _chunks(xc, weight, bias, labels, candidates, offsets, ctx.chunk_size):
                probabilities = torch.exp(logits - lse.unsqueeze(1)) * row_scale.unsqueeze(1)  # [N, C]; masked: 0
                grad_x += probabilities @ weight[index].to(xc.dtype)
                if candidates is None:  # a contiguous block of the catalog
                    grad_w[index] += probabilities.T @ xc
                    if grad_b is not None:
                        grad_b[index] += probabilities.sum(dim=0)
                else:  # sampled ids may repeat: accumulate
                    grad_w.index_add_(0, index, probabilities.T @ xc)
                    if grad_b is not None:
                        grad_b.index_add_(0, index, probabilities.sum(dim=0))
        grad_x = (grad_x * scale).to(x.dtype) if ctx.needs_input_grad[0] else None
        grad_w = (grad_w * scale).to(weight.dtype) if ctx.needs_input_grad[1] else None
        if grad_b is not None:
            grad_b = (grad_b * scale).to(bias.dtype) if ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None, None, None


def chunked_cross_entropy(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, labels: torch.Tensor,
                          chunk_size: int, candidates: torch.Tensor | None = None,
                          offsets: torch.Tensor | None = None, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of the rows x [N, H] (those `valid` [N], default all) against the item matrix,
    chunk by chunk (see the module doc)."""
    if valid is None:
        valid = torch.ones(len(x), dtype=torch.bool, device=x.device)
    row_weights = valid / valid.sum()  # [N]: NaN everywhere when no row is valid, as an empty mean
    return _ChunkedCrossEntropy.apply(x, weight, bias, labels, row_weights, candidates, offsets, chunk_size)


class CutCrossEntropyLoss(nn.Module):
    """Exact full-catalog CE ("CCE"), or with `n_negatives` the sampled softmax over the
    positive and shared sampled negatives ("CCE-"), both computed `chunk_size` items at a time."""

    def __init__(self, chunk_size: int = 4096, n_negatives: int | None = None, strategy: str = "uniform",
                 item_counts: torch.Tensor | None = None):
        super().__init__()
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
        self.chunk_size = chunk_size
        self.sampler = None if n_negatives is None else NegativeSampler(n_negatives, strategy, item_counts)

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module, capacity: int | None = None) -> torch.Tensor:
        rows, positives, valid = target_rows(hidden, labels, target_mask, capacity)  # [C, H], [C], [C]
        weight, bias = head.weight, head.bias
        if self.sampler is None:
            return chunked_cross_entropy(rows, weight, bias, positives, self.chunk_size, valid=valid)
        negatives = self.sampler.sample(len(weight), rows.device)  # [K], shared by the batch
        offsets = self.sampler.log_expected_counts(negatives, len(weight))  # log(K q_j)
        return chunked_cross_entropy(rows, weight, bias, positives, self.chunk_size, negatives, offsets, valid)
