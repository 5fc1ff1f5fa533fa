"""Validation metrics against replay-rec's OfflineMetrics, seen-item removal, replay-rec's tie order, sequence
encoding, and users streamed a batch at a time."""

import numpy as np
import pandas as pd
import pytest
import torch
from replay.metrics import NDCG, HitRate, OfflineMetrics, PerUser, Recall

from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences, csr_offsets
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


# Ties: replay-rec's metrics order each user's items by (score, item id), both descending; item indices are in
# item-id order, so every ranking here must put the larger index first among equal scores.


def _tied_scores(n_users: int, n_items: int, generator: torch.Generator) -> torch.Tensor:
    """Scores with many ties: half the rows from 4 distinct values, half rounded to bf16 (as bf16 models score)."""
    few_values = torch.randint(0, 4, (n_users, n_items), generator=generator).float()
    bf16 = (1 + 0.02 * torch.randn(n_users, n_items, generator=generator)).to(torch.bfloat16).float()
    return torch.where(torch.arange(n_users)[:, None] % 2 == 0, few_values, bf16)


def _replay_order(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain reference: each row's columns sorted by (score, index) descending, -inf ones as item -1."""
    order = torch.from_numpy(np.stack([np.lexsort((-np.arange(len(row)), -row))[:k] for row in scores.numpy()]))
    top_scores = scores.gather(1, order)
    return top_scores, order.masked_fill(top_scores == float("-inf"), -1)


def test_top_k_breaks_ties_as_replay_rec_whatever_the_chunk_size():
    generator = torch.Generator().manual_seed(int(np.random.default_rng().integers(2**31)))
    n_users, n_items, k = 24, 400, 30
    scores = _tied_scores(n_users, n_items, generator)
    seen_rows = torch.randint(0, n_users, (2000,), generator=generator)
    seen_items = torch.randint(0, n_items, (2000,), generator=generator)
    seen_rows[:n_items - 10], seen_items[:n_items - 10] = 3, torch.arange(n_items - 10)  # user 3: 10 items left
    masked = scores.index_put((seen_rows, seen_items), torch.tensor(float("-inf")))
    expected_scores, expected_items = _replay_order(masked, k)
    assert (expected_items[3, 10:] == -1).all()
    for chunk in (None, 1, 7, 29, 64, 399, 400, 1000):
        top_scores, top_items = top_k_unseen(_all_of(scores), n_items, seen_rows, seen_items, k, chunk)
        assert torch.equal(top_items, expected_items), chunk
        assert torch.equal(top_scores, expected_scores), chunk
    shared = torch.randperm(n_items, generator=generator)[:50]  # candidates: the same rule among them
    allowed = torch.full_like(scores, float("-inf")).index_fill(1, shared, 0.0)
    expected_scores, expected_items = _replay_order(masked + allowed, k)
    for chunk in (None, 9, 128):
        top_scores, top_items = top_k_unseen(_all_of(scores), n_items, seen_rows, seen_items, k, chunk,
                                             allowed_items=shared)
        assert torch.equal(top_items, expected_items) and torch.equal(top_scores, expected_scores), chunk


def test_top_k_replay_order_takes_per_row_items_and_keeps_the_largest_tied_item():
    from replay_accelerated.models.top_k import top_k_replay_order

    scores = torch.tensor([[1.0, 2.0, 2.0, 0.0, 2.0], [5.0, 5.0, 5.0, 5.0, 5.0]])
    top_scores, top_items = top_k_replay_order(scores, 2)
    assert top_items.tolist() == [[4, 2], [4, 3]] and top_scores.tolist() == [[2.0, 2.0], [5.0, 5.0]]
    items = torch.tensor([[40, 10, 30, 20, 0], [1, 3, 0, 4, 2]])  # [B, N]: each row's own item indices
    assert top_k_replay_order(scores, 3, items)[1].tolist() == [[30, 10, 0], [4, 3, 2]]
    assert top_k_replay_order(scores, 9)[1].shape == (2, 5)  # k beyond the columns: every column, ranked


def _replay_reference(scores: torch.Tensor, users: EvaluationUsers, vocabulary: ItemVocabulary) -> pd.DataFrame:
    """Every unseen (user_id, item_id, score) of a full score matrix: what replay-rec ranks by itself."""
    masked = scores.clone()
    for row in range(len(users)):
        history = users.history.items[users.history.offsets[row] : users.history.offsets[row + 1]]
        masked[row, history] = float("-inf")
    rows, items = np.nonzero(np.isfinite(masked.numpy()))
    return pd.DataFrame({"user_id": users.history.user_ids[rows], "item_id": vocabulary.item_ids[items],
                         "score": masked.numpy()[rows, items]})


def test_every_metric_we_compute_equals_replay_rec_on_the_same_tied_scores():
    generator = torch.Generator().manual_seed(int(np.random.default_rng().integers(2**31)))
    rng = np.random.default_rng()
    n_users, n_items, ks = 80, 60, [1, 5, 10]
    item_ids = rng.permutation(np.arange(n_items) * 7 + 3)  # original ids, in no order: the vocabulary sorts them
    history = pd.DataFrame({"user_id": np.repeat(np.arange(n_users), 4), "item_id": rng.choice(item_ids, 4 * n_users)})
    scores = _tied_scores(n_users, n_items, generator)
    # Ground truth among each user's best-scored items, so that which tied item comes first decides the metrics.
    truth = pd.DataFrame({"user_id": np.arange(n_users),
                          "item_id": np.sort(item_ids)[scores.topk(3, dim=1).indices[:, 2].numpy()]})
    vocabulary = ItemVocabulary.fit(pd.DataFrame({"item_id": item_ids}))
    assert np.array_equal(vocabulary.item_ids, np.sort(item_ids))
    users = EvaluationUsers.from_splits(UserSequences.from_events(history, vocabulary),
                                        UserSequences.from_events(truth, vocabulary))

    full = _replay_reference(scores, users, vocabulary)
    metrics = [NDCG(ks), HitRate(ks), Recall(ks)]
    expected = OfflineMetrics(metrics, query_column="user_id", rating_column="score")(full, truth)
    expected_per_user = OfflineMetrics([NDCG(10, mode=PerUser()), HitRate(10, mode=PerUser())],
                                       query_column="user_id", rating_column="score")(full, truth)
    for chunk in (None, 7, 16):
        batches = EvaluationBatches(users, width=4, pad_id=n_items, batch_size=n_users)
        batch = batches[0]
        _, top_items = top_k_unseen(_all_of(scores), n_items, batch["seen_rows"], batch["seen_items"], max(ks), chunk)
        validation = ranking_metric_sums(top_items, batch["ground_truth"], ks)  # what validation logs
        recommendations = recommend(lambda batch_history: _all_of(scores), users, vocabulary, max(ks), width=4,
                                    batch_size=n_users, item_chunk_size=chunk)  # one batch: the rows of `scores`
        table = metric_table(recommendations, truth, history, ["ndcg", "hitrate", "recall"], ks)
        per_user = per_user_ndcg_and_hitrate(recommendations, truth, 10)
        for k in ks:
            assert float(validation[f"ndcg@{k}"]) / n_users == pytest.approx(expected[f"NDCG@{k}"], abs=1e-6)
            assert float(validation[f"recall@{k}"]) / n_users == pytest.approx(expected[f"Recall@{k}"], abs=1e-6)
            assert table.loc["ndcg", k] == pytest.approx(expected[f"NDCG@{k}"], abs=1e-12)
            assert table.loc["hitrate", k] == pytest.approx(expected[f"HitRate@{k}"], abs=1e-12)
        assert per_user["ndcg@10"].to_dict() == pytest.approx(expected_per_user["NDCG-PerUser@10"], abs=1e-12)
        assert per_user["hitrate@10"].to_dict() == expected_per_user["HitRate-PerUser@10"]


def test_per_user_metrics_follow_replay_rec_order_not_the_rows_or_their_ranks():
    rng = np.random.default_rng()
    n_users, n_items, k = 200, 30, 5
    recommendations = pd.DataFrame({
        "user_id": np.repeat(np.arange(n_users), 12),
        "item_id": np.concatenate([rng.permutation(n_items)[:12] for _ in range(n_users)]) * 10,
        "score": rng.integers(0, 3, 12 * n_users).astype(np.float32),  # many ties
    })
    recommendations["rank"] = rng.integers(1, 13, len(recommendations))  # ranks that replay-rec never reads
    recommendations = recommendations.sample(frac=1.0, random_state=int(rng.integers(2**31)))  # rows in any order
    truth = pd.DataFrame([(u, i * 10) for u in range(n_users + 5) for i in rng.choice(n_items, 2, replace=False)],
                         columns=["user_id", "item_id"])  # 5 users without recommendations
    truth = pd.concat([truth, truth.iloc[:3]])  # repeated ground-truth rows count in replay-rec's ideal DCG
    per_user = per_user_ndcg_and_hitrate(recommendations, truth, k)
    expected = OfflineMetrics([NDCG(k, mode=PerUser()), HitRate(k, mode=PerUser())], query_column="user_id",
                              rating_column="score")(recommendations, truth)
    assert per_user[f"ndcg@{k}"].to_dict() == pytest.approx(expected[f"NDCG-PerUser@{k}"], abs=1e-12)
    assert per_user[f"hitrate@{k}"].to_dict() == expected[f"HitRate-PerUser@{k}"]


# Streaming: users are padded and scored a batch at a time; any batch size gives what padding everyone at once gave.


def _streaming_users(n_users: int, n_items: int, width: int) -> tuple[EvaluationUsers, ItemVocabulary]:
    rng = np.random.default_rng()
    lengths = rng.integers(0, 2 * width, n_users)  # some empty, some longer than the model's width
    lengths[0] = n_items - 2  # a user with 2 unseen items left: fewer than k rows
    items = np.concatenate([rng.permutation(n_items)[:n] for n in lengths])
    truth = rng.integers(0, n_items, n_users)[:, None]
    user_ids = np.arange(n_users) * 3
    return (EvaluationUsers(UserSequences(user_ids, csr_offsets(lengths), items),
                            UserSequences(user_ids, csr_offsets(np.ones(n_users, np.int64)), truth.ravel())),
            ItemVocabulary(np.arange(n_items)))


def _history_scores(batch_history: torch.Tensor):
    """Exact, tied scores that depend on every position of the padded history (a misaligned row changes them)."""
    weighted = (batch_history * torch.arange(1, batch_history.shape[1] + 1)).sum(dim=1, keepdim=True)  # [B, 1]
    return lambda start, stop: ((weighted * torch.arange(start + 1, stop + 1)) % 13).float()


def test_recommend_and_its_batches_stream_users_with_the_same_output_for_any_batch_size():
    n_users, n_items, width, k = 40, 25, 6, 5
    users, vocabulary = _streaming_users(n_users, n_items, width)
    # Before streaming: everything padded up front, ranked at once.
    history, truth = users.history.padded(width, n_items), users.ground_truth.padded(1, -1)
    seen_rows = torch.from_numpy(np.repeat(np.arange(n_users), users.history.lengths))
    scores, items = top_k_unseen(_history_scores(history), n_items, seen_rows, torch.from_numpy(users.history.items), k)
    found = items >= 0
    assert not found[0, 2:].any()
    for batch_size in (1, 7, n_users):
        batches = EvaluationBatches(users, width, pad_id=n_items, batch_size=batch_size)
        assert torch.equal(torch.cat([batch["history"] for batch in batches]), history)
        assert torch.equal(torch.cat([batch["ground_truth"] for batch in batches]), truth)
        recommendations = recommend(_history_scores, users, vocabulary, k, width, batch_size=batch_size)
        assert recommendations["user_id"].tolist() == np.repeat(users.history.user_ids, found.sum(1).numpy()).tolist()
        assert recommendations["item_id"].tolist() == items[found].tolist()
        assert recommendations["score"].tolist() == scores[found].tolist()
        assert recommendations["rank"].tolist() == (torch.nonzero(found)[:, 1] + 1).tolist()
        assert list(recommendations.dtypes) == [np.int64, np.int64, np.float32, np.int64]


def test_rare_target_ndcg_scores_only_the_targets_seen_fewer_than_five_times_in_training():
    from types import SimpleNamespace

    from replay_accelerated.data.sequences import ItemVocabulary
    from replay_accelerated.evaluation.report import RARE_TARGET_EVENTS, rare_target_ndcg

    rng = np.random.default_rng()
    vocabulary = ItemVocabulary(np.arange(100, 130))
    train_items = rng.integers(0, 30, 300)  # item indices; some items seen rarely
    counts = np.bincount(train_items, minlength=30)
    users = np.arange(40)
    truth = pd.DataFrame({"user_id": users, "item_id": vocabulary.item_ids[rng.integers(0, 30, 40)]})
    top_k = pd.DataFrame([(user, item, 10.0 - place, place + 1) for user in users
                          for place, item in enumerate(rng.permutation(vocabulary.item_ids)[:10])],
                         columns=["user_id", "item_id", "score", "rank"])
    data = SimpleNamespace(train=SimpleNamespace(items=train_items), vocabulary=vocabulary)
    got = rare_target_ndcg(top_k, truth, data)

    expected = {}
    for user, item in zip(truth["user_id"], truth["item_id"]):
        if counts[item - 100] < RARE_TARGET_EVENTS:
            places = top_k[(top_k["user_id"] == user)]["item_id"].tolist()
            expected[user] = 1 / np.log2(places.index(item) + 2) if item in places else 0.0
    assert got.name == "rare_target_ndcg@10"
    assert got.to_dict() == pytest.approx(expected)
