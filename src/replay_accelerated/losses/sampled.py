"""Losses over the positive item plus sampled negatives.

Sampling (`NegativeSampler`, also used by the sampled cut cross-entropy in cut.py):
- `n_negatives` item ids per sequence of the batch (CE_sampled, BCE, gBCE; cut.py's CCE-: one set
  for the whole batch), drawn *with replacement* on the device of `hidden` in a single tensor op:
  `torch.randint` for "uniform" (q_i = 1 / n_items) or `torch.multinomial` on
  q_i = count_i / sum(count) for "popularity" (`item_counts`: training interactions per item);
- every target position of a sequence scores its sequence's K negatives; a negative equal to that
  position's positive (an accidental hit) is masked out for that position only.
Why per sequence: one set shared by the whole batch (our first rule) made SASRec with 256 negatives
fall apart after its first epoch: with about 1,500 target rows a batch, the same 256 items took every
row's push at once and the rest of the catalog none. Partial MovieLens-1M, seed config, fp32, 5
epochs, one seed: validation NDCG@10 0.019, 0.007, 0.013, 0.006, 0.023 and test 0.009 with one set a
batch; 0.016, 0.077, 0.104, 0.150, 0.135 and test 0.068 (CE's) with a set per sequence. A batch of 32
then draws 32 x K items. RePlay draws K per target row, which needs a [rows, K, H] copy of the weights
(about 1 GB at SASRec's seed sizes); a sequence's K rows are scored at all its positions by one batched
product instead.

`SampledSoftmaxLoss` ("CE_sampled"): softmax cross-entropy over [positive, negatives]
with the log-Q correction on the negatives only:
    loss_n = -s_pos + log( exp(s_pos) + sum_{k: j_k != pos} exp(s_{j_k} - log(K * q_{j_k})) )
where K * q_j is the expected number of times item j is drawn. With draws made with
replacement, (1/K) * sum_k exp(s_{j_k}) / q_{j_k} is an unbiased estimate of the sum over
the whole catalog, so the denominator estimates the full softmax's. The positive is always
present (not sampled), so its logit is left uncorrected (RePlay does the same; for uniform
sampling RePlay's shift log((n_items - 1) / K_kept) is ours, log(n_items / K), up to its
per-row renormalisation for rejected hits). Mean over target positions.

`BinaryCrossEntropyLoss` ("BCE"), RePlay's `_compute_loss_bce_sampled`:
    loss = (1 / N) * sum_n [ softplus(-s_pos,n) + sum_{k: j_k != pos_n} softplus(s_{j_k},n) ]
i.e. summed over negatives, averaged over target positions. Differences from RePlay:
softplus is the exact -log(sigmoid) (RePlay adds eps=1e-6 inside the log and clamps), and
accidental hits are excluded (RePlay keeps them as negatives).

`GeneralizedBinaryCrossEntropyLoss` ("gBCE", gSASRec: Petrov & Macdonald, RecSys 2023) is that BCE with
the positive's term weighted by beta, i.e. sigmoid(s_pos) raised to the power beta:
    loss = (1 / N) * sum_n [ beta * softplus(-s_pos,n) + sum_{k: j_k != pos_n} softplus(s_{j_k},n) ]
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha) = 1 - t * (1 - alpha),   alpha = K / (n_items - 1)
alpha is the share of the other items drawn as negatives (at most 1) and t in [0, 1] the calibration (the
paper's default 0.75): t = 0 is BCE, t = 1 makes the sigmoid estimate the full softmax's probability, which
sampled BCE overestimates. The paper averages over the 1 + K columns too (Keras/PyTorch's BCE mean); the sum
over negatives here is that loss times 1 + K, a constant that Adam's steps do not see.
"""

import torch
import torch.nn.functional as F
from torch import nn

from replay_accelerated.losses.targets import target_positions, valid_mean
from replay_accelerated.models.heads import item_count

STRATEGIES = ("uniform", "popularity")


class NegativeSampler(nn.Module):
    """Draws one shared set of `n_negatives` item ids per batch; knows their probabilities q."""

    def __init__(self, n_negatives: int, strategy: str = "uniform", item_counts: torch.Tensor | None = None):
        super().__init__()
        if n_negatives < 1:
            raise ValueError(f"n_negatives must be at least 1, got {n_negatives}")
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {list(STRATEGIES)}, got {strategy!r}")
        if strategy == "popularity":
            if item_counts is None or item_counts.dim() != 1 or float(item_counts.sum()) <= 0:
                raise ValueError("popularity sampling needs item_counts: a 1-D tensor of counts with a positive sum")
            if bool((item_counts < 0).any()):
                raise ValueError("item_counts must not be negative")
        self.n_negatives = n_negatives
        self.strategy = strategy
        # Not saved in checkpoints: it is data, rebuilt from the training split by build_loss.
        self.register_buffer("item_counts", None if item_counts is None else item_counts.detach().clone(),
                             persistent=False)

    def probabilities(self, n_items: int, device: torch.device) -> torch.Tensor:
        """q [n_items]: the probability of each item per draw."""
        if self.strategy == "uniform":
            return torch.full((n_items,), 1.0 / n_items, device=device)
        counts = self.item_counts.to(device=device, dtype=torch.float32)
        if len(counts) != n_items:
            raise ValueError(f"item_counts has {len(counts)} entries but the head scores {n_items} items")
        return counts / counts.sum()

    def sample(self, n_items: int, device: torch.device, sequences: int | None = None) -> torch.Tensor:
        """Item ids drawn with replacement: [n_negatives], or [sequences, n_negatives] (independent rows)."""
        shape = (self.n_negatives,) if sequences is None else (sequences, self.n_negatives)
        if self.strategy == "uniform":
            return torch.randint(0, n_items, shape, device=device)
        draws = torch.multinomial(self.probabilities(n_items, device), shape[-1] * (sequences or 1), replacement=True)
        return draws.reshape(shape)

    def log_expected_counts(self, item_ids: torch.Tensor, n_items: int) -> torch.Tensor:
        """log(K * q_j) for the drawn ids: the log-Q correction subtracted from their logits."""
        q = self.probabilities(n_items, item_ids.device)[item_ids]
        return torch.log(q * self.n_negatives)


class NegativeSamplingLoss(nn.Module):
    """What CE_sampled and BCE share: a sampler and the logits of positives and sampled negatives."""

    def __init__(self, n_negatives: int, strategy: str = "uniform", item_counts: torch.Tensor | None = None):
        super().__init__()
        self.sampler = NegativeSampler(n_negatives, strategy, item_counts)

    def scores(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor, head: nn.Module,
               capacity: int | None):
        """Positive logits [C], negative logits [C, K], each row's negative ids [C, K], the hit mask [C, K] (True
        where a negative is the row's own positive) and which rows are targets [C] (losses/targets.py)."""
        batch, width, _ = hidden.shape
        position, valid = target_positions(target_mask, capacity)  # [C], [C]
        positives = labels.reshape(-1)[position]  # [C]
        negatives = self.sampler.sample(item_count(head), hidden.device, sequences=batch)  # [B, K]
        # Scored per sequence at every position ([B, W, K], one batched product), then the target rows kept.
        negative_logits = head(hidden, negatives).reshape(batch * width, -1)[position]  # [C, K]
        negatives = negatives[position // width]  # [C, K]: the ids each row scored
        positive_logits = head(hidden.reshape(batch * width, -1)[position], positives.unsqueeze(1)).squeeze(1)  # [C]
        hits = negatives == positives.unsqueeze(1)  # [C, K]
        return positive_logits, negative_logits, negatives, hits, valid


class SampledSoftmaxLoss(NegativeSamplingLoss):
    """Sampled softmax cross-entropy with log-Q correction on the negatives ("CE_sampled")."""

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module, capacity: int | None = None) -> torch.Tensor:
        positive_logits, negative_logits, negatives, hits, valid = self.scores(hidden, labels, target_mask, head,
                                                                               capacity)
        correction = self.sampler.log_expected_counts(negatives, item_count(head))  # [K]
        negative_logits = (negative_logits.float() - correction).masked_fill(hits, float("-inf"))
        logits = torch.cat([positive_logits.float().unsqueeze(1), negative_logits], dim=1)  # [C, 1 + K]
        row_loss = torch.logsumexp(logits, dim=1) - logits[:, 0]  # [C]: cross-entropy with the positive first
        return valid_mean(row_loss, valid)


class BinaryCrossEntropyLoss(NegativeSamplingLoss):
    """Binary cross-entropy: positive vs. sampled negatives, summed over negatives, mean over positions ("BCE")."""

    def positive_weight(self, n_items: int) -> float:
        """The weight of the positive's term: 1 (gBCE's beta below)."""
        return 1.0

    def forward(self, hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                head: nn.Module, capacity: int | None = None) -> torch.Tensor:
        positive_logits, negative_logits, _, hits, valid = self.scores(hidden, labels, target_mask, head, capacity)
        beta = self.positive_weight(item_count(head))
        positive_loss = beta * F.softplus(-positive_logits.float())  # [C]: -beta log sigmoid(s_pos)
        negative_loss = F.softplus(negative_logits.float()).masked_fill(hits, 0.0)  # [C, K]: -log(1 - sigmoid(s_neg))
        return valid_mean(positive_loss + negative_loss.sum(dim=1), valid)


class GeneralizedBinaryCrossEntropyLoss(BinaryCrossEntropyLoss):
    """gBCE: BCE with the positive's term weighted by beta (the module docstring; "gBCE")."""

    def __init__(self, n_negatives: int, strategy: str = "uniform", item_counts: torch.Tensor | None = None,
                 calibration: float = 0.75):
        super().__init__(n_negatives, strategy, item_counts)
        if not 0.0 <= calibration <= 1.0:
            raise ValueError(f"calibration t must be in [0, 1], got {calibration}")
        self.calibration = calibration

    @staticmethod
    def check(model_params) -> tuple[str, str] | None:
        """The config's calibration (`gbce_t`) out of [0, 1], as (key, problem); config validation calls it."""
        if not 0.0 <= model_params.gbce_t <= 1.0:
            return "gbce_t", (f"gBCE's calibration t must be in [0, 1] (the paper's default: 0.75), "
                              f"got {model_params.gbce_t}")
        return None

    def positive_weight(self, n_items: int) -> float:
        """beta = 1 - t * (1 - alpha), alpha = K / (n_items - 1) at most 1."""
        alpha = min(1.0, self.sampler.n_negatives / max(n_items - 1, 1))
        return 1.0 - self.calibration * (1.0 - alpha)
