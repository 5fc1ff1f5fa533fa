"""Batched full-catalog ranking on the training device.

Validation runs every epoch, so it stays on the device: score every item for a batch
of users (in item chunks for large catalogs, `evaluation.item_chunk_size`), set the items
each user has already seen to -inf, take the top k, and count
NDCG@k and Recall@k with replay-rec's definitions (binary relevance; NDCG's ideal DCG
over min(|ground truth|, k) hits; Recall = hits / |ground truth|).

One tie rule, replay-rec's: its metrics sort each user's recommendations by (score, item id),
both descending (`replay/metrics/base_metric.py`), so among equal scores the larger item id comes
first. Item indices are in item-id order (`ItemVocabulary` sorts the ids), so `top_k_replay_order`
(models/top_k.py, which the exported top-k shares) ranks by (score, item index) descending.
torch.topk alone leaves the order of ties unspecified, and which tied item it keeps changed with
the chunk size: with bf16 scores, ties are common.
"""

from collections.abc import Callable

import numpy as np
import torch

from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.sequences import UserSequences
from replay_accelerated.models.top_k import best_k, in_replay_order

VALIDATION_METRICS = ("ndcg", "recall")  # what ranking_metric_sums returns, as "<metric>@<k>"


class EvaluationBatches(torch.utils.data.Dataset):
    """Batch i of users: their newest `width` items (model input), all seen items, ground truth, and,
    given per-user `candidates` (aligned with the users), the only items they may be recommended.

    Each batch is padded when it is taken, not every user up front: [users x width] int64 for all users
    at once was most of the memory of scoring millions of users."""

    def __init__(self, users: EvaluationUsers, width: int, pad_id: int, batch_size: int,
                 candidates: UserSequences | None = None):
        self.users = users
        self.candidates = candidates
        self.batch_size = batch_size
        self.width = width
        self.pad_id = pad_id
        # Every batch's ground truth as wide as the longest one, so that batches have one shape.
        self.truth_width = int(users.ground_truth.lengths.max(initial=1))

    def __len__(self) -> int:
        return -(-len(self.users) // self.batch_size)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        start, stop = index * self.batch_size, min((index + 1) * self.batch_size, len(self.users))
        # Seen items as (row in batch, item) pairs, from the full history, not only the
        # newest `width` items: a user is never recommended anything seen before.
        seen_rows, seen_items = _row_item_pairs(self.users.history, start, stop)
        batch = {
            "history": self.users.history.between(start, stop).padded(self.width, self.pad_id),  # [B, width]
            "seen_rows": seen_rows,
            "seen_items": seen_items,
            "ground_truth": self.users.ground_truth.between(start, stop).padded(self.truth_width, -1),  # -1: none
            "users": torch.arange(start, stop),
        }
        if self.candidates is not None:
            batch["allowed_rows"], batch["allowed_items"] = _row_item_pairs(self.candidates, start, stop)
        return batch


def _row_item_pairs(sequences: UserSequences, start: int, stop: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The items of users start..stop-1 as (row in the batch, item) pairs."""
    batch = sequences.between(start, stop)
    return torch.from_numpy(np.repeat(np.arange(len(batch)), batch.lengths)), torch.from_numpy(batch.items)


def top_k_unseen(scores_of: Callable[[int, int], torch.Tensor], n_items: int, seen_rows: torch.Tensor,
                 seen_items: torch.Tensor, k: int, chunk_size: int | None = None,
                 allowed_rows: torch.Tensor | None = None, allowed_items: torch.Tensor | None = None):
    """Top-k (scores, items) per row after removing seen items, ranking the catalog in item chunks.

    scores_of(start, stop) -> [B, stop - start]: the rows' scores of items start..stop-1. Items are
    scored `chunk_size` at a time (null: all at once) and a running top-k keeps the best k, so no more
    than [B, chunk_size] scores exist at once, whatever the catalog size; seen items are removed inside
    each chunk. Ties follow replay-rec's rule (`top_k_replay_order`), under which the k best of a union
    are the k best of the parts' k best: the result is the whole-catalog one for every chunk size. A user
    who has seen all but fewer than k items gets item -1 (score -inf) in the unused places.

    Candidates: with `allowed_items` only those items compete, the same for every row, or with
    `allowed_rows` as (row, item) pairs, each row its own (`mode.infer.candidates`).
    """
    chunk_size = chunk_size or n_items
    best_scores = best_items = None
    for start in range(0, n_items, chunk_size):
        stop = min(start + chunk_size, n_items)
        scores = scores_of(start, stop).float()  # [B, C]
        inside = (seen_items >= start) & (seen_items < stop)
        scores = scores.index_put((seen_rows[inside], seen_items[inside] - start),
                                  torch.tensor(float("-inf"), device=scores.device))
        if allowed_items is not None:
            inside = (allowed_items >= start) & (allowed_items < stop)
            allowed = torch.zeros_like(scores, dtype=torch.bool)  # [B, C]
            rows = slice(None) if allowed_rows is None else allowed_rows[inside]
            allowed[rows, allowed_items[inside] - start] = True
            scores = scores.masked_fill(~allowed, float("-inf"))
        # Positions in the chunk order ties as the items do; int32 keys cost half the bytes of int64.
        scores, positions = best_k(scores, torch.arange(stop - start, dtype=torch.int32, device=scores.device), k)
        items = positions.long() + start  # [B, k] each
        if best_scores is not None:  # the best so far compete with this chunk's best
            scores, items = best_k(torch.cat([best_scores, scores], dim=1), torch.cat([best_items, items], dim=1), k)
        best_scores, best_items = scores, items
    best_scores, best_items = in_replay_order(best_scores, best_items)
    return best_scores, best_items.masked_fill(best_scores == float("-inf"), -1)


def ranking_metric_sums(top_items: torch.Tensor, ground_truth: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Sums over users of NDCG@k and Recall@k. top_items: [B, K]; ground_truth: [B, G], -1 = none."""
    # hit[b, i]: the i-th recommendation of user b is in their ground truth.
    matches = (top_items[:, :, None] == ground_truth[:, None, :]) & (ground_truth[:, None, :] >= 0)
    hit = matches.any(dim=2).float()  # [B, K]
    n_truth = (ground_truth >= 0).sum(dim=1)  # [B]
    has_truth = n_truth > 0
    discount = 1.0 / torch.log2(torch.arange(top_items.shape[1], device=hit.device, dtype=torch.float) + 2)
    ideal_dcg = torch.cumsum(discount, 0)  # [K]: ideal DCG with 1..K relevant items
    sums = {}
    for k in ks:
        dcg = (hit[:, :k] * discount[:k]).sum(dim=1)
        ideal = ideal_dcg[(n_truth.clamp(min=1, max=k) - 1).clamp(max=len(discount) - 1)]
        sums[f"ndcg@{k}"] = torch.where(has_truth, dcg / ideal, 0.0).sum()
        sums[f"recall@{k}"] = torch.where(has_truth, hit[:, :k].sum(dim=1) / n_truth.clamp(min=1), 0.0).sum()
    return sums
