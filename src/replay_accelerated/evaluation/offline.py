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
from replay_accelerated.models.transformer import SequentialRecommender

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
    left gets fewer rows. Ranks follow replay-rec's order (score, then item id, descending).

    `next_item_scores` maps a left-padded history [B, width] to a function (start, stop) -> the
    scores of items start..stop-1 [B, stop - start] (a model's `next_item_scores`); the catalog is
    ranked `item_chunk_size` items at a time (null: at once), see ranking.top_k_unseen.

    Users are scored `batch_size` at a time, each batch padded when it is taken, and its rows are
    written straight into the output's columns: at peak, memory holds the output and one batch's work.
    """
    per_user = candidates if isinstance(candidates, UserSequences) else None
    batches = EvaluationBatches(users, width, pad_id=len(vocabulary), batch_size=batch_size, candidates=per_user)
    shared = None if candidates is None or per_user is not None else torch.as_tensor(candidates, device=device)
    user_ids, item_ids = users.history.user_ids, vocabulary.item_ids
    capacity = len(users) * min(k, len(vocabulary))  # rows if every user gets k items
    columns = {USER: np.empty(capacity, user_ids.dtype), ITEM: np.empty(capacity, item_ids.dtype),
               SCORE: np.empty(capacity, np.float32), "rank": np.empty(capacity, np.int64)}
    filled = 0
    for index in range(len(batches)):  # (iterating the dataset itself would not stop at a full last batch)
        batch = {name: tensor.to(device) for name, tensor in batches[index].items()}
        if not remove_seen:
            batch["seen_rows"], batch["seen_items"] = batch["seen_rows"][:0], batch["seen_items"][:0]
        top_scores, top_items = top_k_unseen(next_item_scores(batch["history"]), len(vocabulary),
                                             batch["seen_rows"], batch["seen_items"], k, item_chunk_size,
                                             batch.get("allowed_rows"), batch.get("allowed_items", shared))
        top_scores, top_items = top_scores.cpu().numpy(), top_items.cpu().numpy()  # [B, k]
        rows, places = np.nonzero(top_items >= 0)  # users who have seen almost everything get fewer than k
        added = slice(filled, filled + len(rows))
        columns[USER][added] = user_ids[index * batch_size + rows]
        columns[ITEM][added] = item_ids[top_items[rows, places]]
        columns[SCORE][added] = top_scores[rows, places]
        columns["rank"][added] = places + 1
        filled = added.stop
    # The filled part of each array becomes its column as it is (copy=False): no second copy of the output.
    return pd.DataFrame({name: column[:filled] for name, column in columns.items()}, copy=False)


@torch.no_grad()
def user_vectors(model: SequentialRecommender, histories: UserSequences, batch_size: int = 256) -> np.ndarray:
    """The user vectors [U, H] (float32) of `histories`, `batch_size` users at a time: each batch is padded
    when it is taken and its vectors written into the one output array (no padded copy of every history)."""
    vectors = np.empty((len(histories), model.head.weight.shape[1]), dtype=np.float32)
    for start in range(0, len(histories), batch_size):
        stop = min(start + batch_size, len(histories))
        history = histories.between(start, stop).padded(model.max_seq_len, model.pad_id)  # [B, W]
        vectors[start:stop] = model.user_vectors(history).float().numpy()
    return vectors


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
    """NDCG@k and HitRate@k of every ground-truth user (0 for users without recommendations), as replay-rec's
    NDCG and HitRate count them: each user's items in replay-rec's order (score, then item id, descending;
    the rank column is not read), the ideal DCG over min(k, the user's ground-truth rows)."""
    top = first_k_in_replay_order(recommendations, k)
    hits = top.merge(ground_truth[[USER, ITEM]].drop_duplicates(), on=[USER, ITEM])
    dcg = (1.0 / np.log2(hits["place"] + 1.0)).groupby(hits[USER]).sum()
    truth_sizes = ground_truth.groupby(USER).size()  # replay-rec's ideal DCG counts repeated rows too
    ideal_discounts = np.cumsum(1.0 / np.log2(np.arange(k) + 2.0))
    ideal = pd.Series(ideal_discounts[np.minimum(truth_sizes.to_numpy(), k) - 1], index=truth_sizes.index)
    return pd.DataFrame({
        f"ndcg@{k}": (dcg.reindex(ideal.index, fill_value=0.0) / ideal),
        f"hitrate@{k}": (dcg.reindex(ideal.index, fill_value=0.0) > 0).astype(float),
    })


def first_k_in_replay_order(recommendations: pd.DataFrame, k: int) -> pd.DataFrame:
    """Each user's first k recommendations in replay-rec's order (score, then item id, descending), their
    places 1..k in a `place` column: what replay-rec's metrics read, whatever the rows' order and ranks."""
    users, scores = recommendations[USER].to_numpy(), recommendations[SCORE].to_numpy()
    # Sorting millions of rows takes a minute, so only the rows that can be among a user's first k are
    # sorted. In a run of one user's rows whose scores do not rise (a frame ranked by score, as recommend's,
    # is one run per user), those are the run's first k rows and any tied with its k-th; a NaN is a run alone.
    new_run = np.ones(len(users), dtype=bool)
    new_run[1:] = (users[1:] != users[:-1]) | ~(scores[1:] <= scores[:-1])
    starts = np.flatnonzero(new_run)
    lengths = np.diff(np.append(starts, len(users)))
    kth = np.repeat(scores[starts + np.minimum(lengths, k) - 1], lengths)  # the k-th score of each row's run
    candidates = recommendations[~(scores < kth)]
    ranked = candidates.sort_values([USER, SCORE, ITEM], ascending=[True, False, False])  # NaN last, as replay-rec
    place = ranked.groupby(USER, sort=False).cumcount().to_numpy() + 1
    return ranked[place <= k].assign(place=place[place <= k])


def bootstrap_interval(values: np.ndarray, resamples: int = 2000, level: float = 0.95, seed: int = 0) -> tuple:
    """Percentile bootstrap interval of the mean of per-user `values`."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), (resamples, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))
