"""The final metric table, computed by replay-rec's OfflineMetrics on top-k recommendations.

After training, the best model recommends the top max(metrics.ks) unseen items to every
validation and test user; replay-rec scores them against the ground truth (Coverage and
Surprisal also need the training log). The table has metrics as rows and k as columns,
the layout of the reference project's `reference_metrics/*.csv`.
"""

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from replay.metrics import MAP, MRR, NDCG, Coverage, HitRate, OfflineMetrics, Precision, Recall, Surprisal

from replay_accelerated.data.formats import ITEM, USER
from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.evaluation.ranking import EvaluationBatches, top_k_unseen

METRICS = {
    "ndcg": NDCG,
    "recall": Recall,
    "hitrate": HitRate,
    "precision": Precision,
    "map": MAP,
    "mrr": MRR,
    "coverage": Coverage,
    "surprisal": Surprisal,
}
SCORE = "score"


@torch.no_grad()
def recommend(
    next_item_scores: Callable[[torch.Tensor], Callable[[int, int], torch.Tensor]],
    users: EvaluationUsers,
    vocabulary: ItemVocabulary,
    k: int,
    width: int,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
    remove_seen: bool = True,
    item_chunk_size: int | None = None,
    candidates: np.ndarray | UserSequences | None = None,
) -> pd.DataFrame:
    """Top-k unseen items per user as (user_id, item_id, score, rank) with original ids
    (with `remove_seen=False`, top-k of all items); with `candidates`, only among those item indices:
    one list for every user, or per user (aligned with `users`). A user with fewer than k candidates
    left gets fewer rows.

    `next_item_scores` maps a left-padded history [B, width] to a function (start, stop) -> the
    scores of items start..stop-1 [B, stop - start] (a model's `next_item_scores`); the catalog is
    ranked `item_chunk_size` items at a time (null: at once), see ranking.top_k_unseen.
    """
    per_user = candidates if isinstance(candidates, UserSequences) else None
    batches = EvaluationBatches(users, width, pad_id=len(vocabulary), batch_size=batch_size, candidates=per_user)
    shared = None if candidates is None or per_user is not None else torch.as_tensor(candidates, device=device)
    scores, items = [], []
    for index in range(len(batches)):  # (iterating the dataset itself would not stop at a full last batch)
        batch = {name: tensor.to(device) for name, tensor in batches[index].items()}
        if not remove_seen:
            batch["seen_rows"], batch["seen_items"] = batch["seen_rows"][:0], batch["seen_items"][:0]
        top_scores, top_items = top_k_unseen(next_item_scores(batch["history"]), len(vocabulary),
                                             batch["seen_rows"], batch["seen_items"], k, item_chunk_size,
                                             batch.get("allowed_rows"), batch.get("allowed_items", shared))
        scores.append(top_scores.cpu())
        items.append(top_items.cpu())
    scores_np, items_np = torch.cat(scores).numpy(), torch.cat(items).numpy()  # [U, k]
    n_users, n_top = items_np.shape
    found = items_np.ravel() >= 0  # users who have seen almost everything get fewer than k
    return pd.DataFrame(
        {
            USER: np.repeat(users.history.user_ids, n_top)[found],
            ITEM: vocabulary.item_ids[items_np.ravel()[found]],
            SCORE: scores_np.ravel()[found],
            "rank": np.tile(np.arange(1, n_top + 1), n_users)[found],
        }
    )


def metric_table(
    recommendations: pd.DataFrame, ground_truth: pd.DataFrame, train: pd.DataFrame, types: list[str], ks: list[int]
) -> pd.DataFrame:
    """replay-rec's metrics: one row per metric type, one column per k."""
    metrics = [METRICS[name](list(ks)) for name in types]
    values = OfflineMetrics(metrics, query_column=USER, item_column=ITEM, rating_column=SCORE)(
        recommendations[[USER, ITEM, SCORE]],
        ground_truth[[USER, ITEM]].assign(**{SCORE: 1.0}),
        train[[USER, ITEM]].assign(**{SCORE: 1.0}),
    )
    names = {name: METRICS[name].__name__ for name in types}
    table = pd.DataFrame(
        [[values[f"{names[name]}@{k}"] for k in ks] for name in types], index=list(types), columns=list(ks)
    )
    table.index.name = "metric"
    return table


def popularity_scores(train_items: np.ndarray, n_items: int) -> torch.Tensor:
    """Log interaction counts per item in the training events: the popularity baseline's scores."""
    return torch.log1p(torch.from_numpy(np.bincount(train_items, minlength=n_items)).float())




def per_user_ndcg_and_hitrate(recommendations: pd.DataFrame, ground_truth: pd.DataFrame, k: int) -> pd.DataFrame:
    """NDCG@k and HitRate@k of every ground-truth user (0 for users without recommendations)."""
    top = recommendations[recommendations["rank"] <= k]
    hits = top.merge(ground_truth[[USER, ITEM]].drop_duplicates(), on=[USER, ITEM])
    dcg = (1.0 / np.log2(hits["rank"] + 1.0)).groupby(hits[USER]).sum()
    truth_sizes = ground_truth.groupby(USER)[ITEM].nunique()
    ideal_discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    ideal = pd.Series(ideal_discounts[np.minimum(truth_sizes.to_numpy(), k) - 1], index=truth_sizes.index)
    return pd.DataFrame({
        f"ndcg@{k}": (dcg.reindex(ideal.index, fill_value=0.0) / ideal),
        f"hitrate@{k}": (dcg.reindex(ideal.index, fill_value=0.0) > 0).astype(float),
    })


def bootstrap_interval(values: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple:
    """Percentile bootstrap interval of the mean of per-user `values`."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
