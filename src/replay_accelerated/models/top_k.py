"""The top k of each row in replay-rec's order: score descending, then item index descending.

replay-rec's metrics sort each user's recommendations by (score, item id), both descending
(`replay/metrics/base_metric.py`), so among equal scores the larger item id comes first; our item
indices are in item-id order (`ItemVocabulary` sorts the ids). torch.topk leaves the order of ties
unspecified (on a CPU it varies; ONNX's TopK takes the smaller index first), and a stable sort of
the catalog neither exports to ONNX nor costs what a topk costs, so ties are settled by topks and
sorts over keys that have none. Evaluation (evaluation/ranking.py, chunk by chunk) and the exported
top-k (models/serving.py) both rank through here.
"""

import torch

# Item indices stay below this; it separates the score levels in the ordering key of in_replay_order.
ITEM_INDEX_LIMIT = 1 << 40


def top_k_replay_order(scores: torch.Tensor, k: int, items: torch.Tensor | None = None):
    """The k best (scores, items) of each row [B, min(k, N)], in replay-rec's order: score descending,
    then item index descending (the larger item id first, as `ItemVocabulary` sorts ids).

    scores: [B, N]; items: the item index of each column, [N] or [B, N], distinct within a row and
    >= 0 (default: the column positions). Deterministic whatever torch.topk does with ties, and made of
    topk, where, gather, sort and cumsum only, so that it exports to ONNX (a stable sort does not).
    """
    items = torch.arange(scores.shape[1], device=scores.device) if items is None else items
    return in_replay_order(*best_k(scores, items, k))


def best_k(scores: torch.Tensor, items: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best (scores, items) of each row under replay-rec's rule (top_k_replay_order), in no particular order."""
    k = min(k, scores.shape[1])
    top_scores, top_columns = scores.topk(k, dim=1, sorted=False)  # [B, k]
    threshold = top_scores.min(dim=1, keepdim=True).values  # [B, 1]: the k-th best score
    top_items = items.expand_as(scores).gather(1, top_columns)
    # topk keeps every item scored above the threshold, but an unspecified few of those tied at it;
    # replay-rec keeps the largest: the k largest items tied at the threshold (-1: no more of them).
    tied_items = torch.where(scores == threshold, items, -1).topk(k, dim=1).values  # [B, k]
    # The items above the threshold (fewer than k) all stay; the largest tied ones fill up to k.
    priority = torch.cat([torch.where(top_scores > threshold, torch.iinfo(torch.int64).max, -1), tied_items], dim=1)
    kept = priority.topk(k, dim=1).indices  # [B, k] of the 2k candidates
    candidate_scores = torch.cat([top_scores, threshold.expand(-1, k)], dim=1)
    return candidate_scores.gather(1, kept), torch.cat([top_items, tied_items], dim=1).gather(1, kept)


def in_replay_order(scores: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scores, items) [B, k] sorted by score, then item, both descending."""
    scores, by_score = scores.sort(dim=1, descending=True)  # tied scores in an unspecified order
    items = items.gather(1, by_score)
    # Each score's rank among the row's distinct scores (0: the best) and the item make a key that is
    # unique within the row, so that sorting it has no ties to leave unspecified.
    changes = (scores[:, 1:] != scores[:, :-1]).long()  # [B, k - 1]
    score_rank = torch.cat([torch.zeros_like(items[:, :1]), changes.cumsum(dim=1)], dim=1)  # [B, k]
    order = (items - score_rank * ITEM_INDEX_LIMIT).argsort(dim=1, descending=True)
    return scores.gather(1, order), items.gather(1, order)
