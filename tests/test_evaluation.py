"""Validation metrics against replay-rec's OfflineMetrics, seen-item removal and sequence encoding."""

import numpy as np
import pandas as pd
import torch
from replay.metrics import NDCG, OfflineMetrics, Recall

from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.evaluation.offline import (
    bootstrap_interval,
    metric_table,
    per_user_ndcg_and_hitrate,
    recommend,
)
from replay_accelerated.evaluation.ranking import EvaluationBatches, ranking_metric_sums, top_k_unseen


def test_validation_metrics_equal_replay_offline_metrics():
    rng = np.random.default_rng()
    n_users, n_items, k_max = 50, 30, 20
    ks = [1, 5, 10, 20]
    top_items = torch.stack([torch.randperm(n_items)[:k_max] for _ in range(n_users)])  # [U, K]
    truth_sizes = rng.integers(1, 4, n_users)  # 1 to 3 ground-truth items per user
    truth = torch.full((n_users, 3), -1)
    for user, size in enumerate(truth_sizes):
        truth[user, :size] = torch.from_numpy(rng.choice(n_items, size, replace=False))

    sums = ranking_metric_sums(top_items, truth, ks)

    recommendations = pd.DataFrame({
        "query_id": np.repeat(np.arange(n_users), k_max),
        "item_id": top_items.ravel().numpy(),
        "rating": np.tile(np.arange(k_max, 0, -1), n_users).astype(float),
    })
    ground_truth = pd.DataFrame([(u, int(i)) for u in range(n_users) for i in truth[u] if i >= 0],
                                columns=["query_id", "item_id"])
    expected = OfflineMetrics([NDCG(ks), Recall(ks)])(recommendations, ground_truth)
    for k in ks:
        assert abs(float(sums[f"ndcg@{k}"]) / n_users - expected[f"NDCG@{k}"]) < 1e-6
        assert abs(float(sums[f"recall@{k}"]) / n_users - expected[f"Recall@{k}"]) < 1e-6


def _all_of(scores: torch.Tensor):
    return lambda start, stop: scores[:, start:stop]


def test_top_k_never_returns_a_seen_item():
    scores = torch.randn(4, 10)
    seen_rows = torch.tensor([0, 0, 1, 3, 3, 3])
    seen_items = torch.tensor([scores[0].argmax(), 5, 2, 0, 1, 2])
    _, items = top_k_unseen(_all_of(scores), 10, seen_rows, seen_items, k=7)
    for row, item in zip(seen_rows.tolist(), seen_items.tolist()):
        assert item not in items[row].tolist()
    assert len(set(items[2].tolist())) == 7
    _, items = top_k_unseen(_all_of(scores), 10, seen_rows, seen_items, k=10)  # more than row 3 has left
    assert items[3].tolist()[-3:] == [-1, -1, -1]
    truth = torch.tensor([[-1, -1], [-1, -1], [-1, -1], [items[3, 0], -1]])
    assert float(ranking_metric_sums(items, truth, [10])["recall@10"]) == 1.0  # -1 never matches


def test_ranking_in_item_chunks_equals_ranking_the_whole_catalog():
    n_users, n_items, k = 37, 1000, 25
    scores = torch.randn(n_users, n_items)  # distinct values: the top-k is unique
    seen_rows = torch.randint(0, n_users, (3000,))
    seen_items = torch.randint(0, n_items, (3000,))
    seen_items[:n_users] = scores.argmax(dim=1)  # every user has seen their best item
    seen_rows[:n_users] = torch.arange(n_users)
    # The plain reference: mask seen items in the full matrix, sort each row.
    masked = scores.clone()
    masked[seen_rows, seen_items] = float("-inf")
    expected_scores, expected_items = masked.sort(dim=1, descending=True)
    asked = []

    def scores_of(start: int, stop: int) -> torch.Tensor:
        asked.append(stop - start)
        return scores[:, start:stop]

    for chunk in (None, 1, 7, 64, 999, 1000, 5000):
        asked.clear()
        top_scores, top_items = top_k_unseen(scores_of, n_items, seen_rows, seen_items, k, chunk)
        assert torch.equal(top_items, expected_items[:, :k]) and torch.equal(top_scores, expected_scores[:, :k])
        assert max(asked) == min(chunk or n_items, n_items) and sum(asked) == n_items


def test_candidates_rank_only_the_allowed_items_in_chunks_as_a_plain_reference():
    n_users, n_items, k = 23, 400, 15
    scores = torch.randn(n_users, n_items)
    seen_rows, seen_items = torch.randint(0, n_users, (500,)), torch.randint(0, n_items, (500,))
    shared = torch.randperm(n_items)[:40]  # one list for every user
    pair_rows = torch.randint(0, n_users, (300,))  # (user, item) pairs: each user their own (some none)
    pair_items = torch.randint(0, n_items, (300,))
    for rows, items in ((None, shared), (pair_rows, pair_items)):
        allowed = torch.zeros(n_users, n_items, dtype=torch.bool)  # the plain reference: mask, then sort
        allowed[slice(None) if rows is None else rows, items] = True
        masked = scores.masked_fill(~allowed, float("-inf"))
        masked[seen_rows, seen_items] = float("-inf")
        expected_scores, expected_items = masked.sort(dim=1, descending=True)
        expected_items = expected_items.masked_fill(expected_scores == float("-inf"), -1)
        for chunk in (None, 9, 128):
            top_scores, top_items = top_k_unseen(_all_of(scores), n_items, seen_rows, seen_items, k, chunk,
                                                 rows, items)
            found = top_items >= 0
            assert torch.equal(top_items, expected_items[:, :k])
            assert torch.equal(top_scores[found], expected_scores[:, :k][found])
            assert allowed.gather(1, top_items.clamp(min=0))[found].all()
        if rows is not None:
            assert (top_items[~torch.isin(torch.arange(n_users), pair_rows)] == -1).all()  # no candidate, no item


def test_a_model_ranks_the_same_in_chunks_and_at_once():
    from omegaconf import OmegaConf

    from replay_accelerated.config import ModelParams
    from replay_accelerated.models import build_model

    for name in ("bert4rec", "sasrec"):
        model = build_model(name, 300, OmegaConf.structured(ModelParams(hidden_size=16, head_count=2,
                                                                         max_seq_len=12))).eval()
        history = torch.randint(0, 300, (9, 12))
        seen_rows, seen_items = torch.arange(9).repeat_interleave(12), history.ravel()
        with torch.no_grad():
            whole = top_k_unseen(model.next_item_scores(history), 300, seen_rows, seen_items, 20)
            chunked = top_k_unseen(model.next_item_scores(history), 300, seen_rows, seen_items, 20, chunk_size=32)
            expected = top_k_unseen(_all_of(model.score_next(history)), 300, seen_rows, seen_items, 20)
        torch.testing.assert_close(chunked, expected)
        torch.testing.assert_close(whole, expected)


def _naive_padded(sequences: list[list[int]], width: int, pad: int) -> torch.Tensor:
    return torch.tensor([[pad] * (width - len(s[-width:])) + s[-width:] for s in sequences])


def test_user_sequences_encode_pad_and_subset_like_plain_python():
    rng = np.random.default_rng()
    sequences = [list(rng.integers(0, 50, rng.integers(1, 15))) for _ in range(40)]
    events = pd.DataFrame([(user, item * 7 + 1) for user, seq in enumerate(sequences) for item in seq],
                          columns=["user_id", "item_id"])
    vocabulary = ItemVocabulary.fit(events)
    encoded = UserSequences.from_events(events, vocabulary)
    decoded = [[int(vocabulary.item_ids[i]) for i in encoded.items[a:b]]
               for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])]
    assert decoded == [[item * 7 + 1 for item in seq] for seq in sequences]
    raw = [list(encoded.items[a:b]) for a, b in zip(encoded.offsets[:-1], encoded.offsets[1:])]
    assert torch.equal(encoded.padded(8, 99), _naive_padded(raw, 8, 99))
    picked = np.array([5, 0, 17])
    assert torch.equal(encoded.subset(picked).padded(20, 99), _naive_padded([raw[u] for u in picked], 20, 99))
    round_trip = UserSequences.from_frame(encoded.to_frame())
    assert np.array_equal(round_trip.items, encoded.items) and np.array_equal(round_trip.offsets, encoded.offsets)


def test_final_recommendations_and_metric_table_use_original_ids():
    events = pd.DataFrame({"user_id": [10, 10, 20, 20, 20], "item_id": [100, 200, 200, 300, 400]})
    truth = pd.DataFrame({"user_id": [10, 20], "item_id": [300, 100]})
    vocabulary = ItemVocabulary.fit(events, truth)
    history = UserSequences.from_events(events, vocabulary)
    users = EvaluationUsers.from_splits(history, UserSequences.from_events(truth, vocabulary))

    def prefer_low_ids(batch_history: torch.Tensor):
        return _all_of(-torch.arange(len(vocabulary), dtype=torch.float).expand(len(batch_history), -1))

    recommendations = recommend(prefer_low_ids, users, vocabulary, k=2, width=4)
    assert recommendations.groupby("user_id")["item_id"].apply(list).to_dict() == {10: [300, 400], 20: [100]}
    table = metric_table(recommendations, truth, events, ["hitrate", "ndcg", "coverage"], [1, 2])
    assert list(table.index) == ["hitrate", "ndcg", "coverage"] and list(table.columns) == [1, 2]
    assert table.loc["hitrate", 1] == 1.0  # both users' first unseen pick is their ground truth


def test_recommend_serves_a_user_count_that_fills_the_last_batch_exactly():
    events = pd.DataFrame({"user_id": np.repeat(np.arange(8), 2), "item_id": np.arange(16) % 5})
    vocabulary = ItemVocabulary.fit(events)
    history = UserSequences.from_events(events, vocabulary)
    users = EvaluationUsers.from_splits(history, history)

    def random_scores(batch_history: torch.Tensor):
        return _all_of(torch.randn(len(batch_history), len(vocabulary)))

    recommendations = recommend(random_scores, users, vocabulary, k=2, width=3, batch_size=4)  # 8 users, 2 batches
    assert sorted(recommendations["user_id"].unique()) == list(range(8))


def test_evaluation_batches_cover_every_user_once():
    lengths = [3, 1, 30, 5, 2]
    events = pd.DataFrame([(u, i) for u, n in enumerate(lengths) for i in range(n)], columns=["user_id", "item_id"])
    vocabulary = ItemVocabulary.fit(events)
    history = UserSequences.from_events(events, vocabulary)
    batches = EvaluationBatches(EvaluationUsers(history, history), width=10, pad_id=len(vocabulary), batch_size=2)
    seen = [len(batch["seen_items"]) for batch in batches]
    assert sum(seen) == sum(lengths)  # full histories, not only the newest 10 items
    assert torch.cat([batch["users"] for batch in batches]).tolist() == list(range(5))


def test_per_user_metrics_average_to_replay_metrics_and_bootstrap_brackets_the_mean():
    rng = np.random.default_rng()
    n_users, n_items, k = 300, 40, 10
    recommendations = pd.DataFrame({
        "user_id": np.repeat(np.arange(n_users), 20),
        "item_id": np.concatenate([rng.permutation(n_items)[:20] for _ in range(n_users)]),
        "score": np.tile(np.arange(20, 0, -1), n_users).astype(float),
        "rank": np.tile(np.arange(1, 21), n_users),
    })
    truth = pd.DataFrame([(u, i) for u in range(n_users) for i in rng.choice(n_items, rng.integers(1, 4), False)],
                         columns=["user_id", "item_id"])
    per_user = per_user_ndcg_and_hitrate(recommendations, truth, k)
    table = metric_table(recommendations, truth, truth, ["ndcg", "hitrate"], [k])
    assert abs(per_user[f"ndcg@{k}"].mean() - table.loc["ndcg", k]) < 1e-9
    assert abs(per_user[f"hitrate@{k}"].mean() - table.loc["hitrate", k]) < 1e-9
    low, high = bootstrap_interval(per_user[f"ndcg@{k}"].to_numpy())
    assert low < per_user[f"ndcg@{k}"].mean() < high
