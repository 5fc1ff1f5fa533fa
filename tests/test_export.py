"""Exported scoring functions (ONNX through onnxruntime, and torch.export) score as the PyTorch model does,
for every model, head and activation, and the exported top k recommends what `mode=infer` recommends: seen
items older than the history removed, ties to the larger item, -1 past the last unseen item (the trained
end-to-end export of every function is in test_infer.py)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import TINY_SYNTHETIC, compose, trained_home
from replay_accelerated.acceleration.apply import ACTIVATIONS, apply_accelerations
from replay_accelerated.config import Acceleration
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.heads import LinearHead
from replay_accelerated.models.serving import (
    NextItemScores,
    TopKUnseen,
    float_head_copy,
    write_function,
)
from replay_accelerated.models.top_k import top_k_replay_order

# A tiny catalog, so that users who have seen all but a few items are easy to write.
TINY_CATALOG = [*TINY_SYNTHETIC, "dataset.generator.n_users=300", "dataset.generator.n_items=50",
                "dataset.generator.n_clusters=5", "dataset.generator.max_length=40",
                "model.params.training_params.max_epochs=1"]


def plain_top_k(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: per row, the k best (score, index) pairs sorted descending (replay-rec's order)."""
    best = [sorted(range(len(row)), key=lambda item: (row[item], item), reverse=True)[:k] for row in scores.tolist()]
    return scores.gather(1, torch.tensor(best)), torch.tensor(best)


def test_top_k_ranks_ties_by_the_larger_index_as_a_plain_sort_does():
    for n, k, levels in [(40, 1, 2), (40, 7, 3), (40, 40, 5), (3000, 100, 4), (3000, 100, 3000)]:
        scores = torch.randint(0, levels, (16, n)).float()
        scores[8:] += torch.rand(8, n)  # half the rows with few ties
        scores[:4, : n - k // 2] = float("-inf")  # fewer than k finite scores
        top_scores, top_items = top_k_replay_order(scores, k)
        expected_scores, expected_items = plain_top_k(scores, k)
        assert torch.equal(top_scores, expected_scores) and torch.equal(top_items, expected_items)


def test_exported_top_k_removes_every_seen_item_and_ranks_ties_by_the_larger_item(tmp_path: Path):
    import onnxruntime

    torch.manual_seed(0)
    model = SasRec(n_items=30, max_seq_len=8, hidden_size=16, block_count=1, head_count=2, dropout_rate=0.1)
    model.head = LinearHead(16, model.n_items)
    with torch.no_grad():  # two items in three score their bias exactly (0, 1 or 2): many ties
        model.head.weight[torch.arange(model.n_items) % 3 > 0] = 0.0
        model.head.bias.copy_(torch.randint(0, 3, (model.n_items,)).float())
    model.eval()
    function = TopKUnseen(model, k=12)
    write_function(function, tmp_path / "model_top_k", ["history", "seen"], ["scores", "item_ids"], opset=18)
    session = onnxruntime.InferenceSession(str(tmp_path / "model_top_k.onnx"))
    program = torch.export.load(tmp_path / "model_top_k.pt2").module()
    for width, n_seen in [(1, 1), (3, 25), (8, 40)]:
        history = torch.randint(0, model.n_items, (6, width))
        history[0] = model.pad_id  # an empty history
        seen = torch.randint(0, model.n_items + 1, (6, n_seen))  # padding anywhere
        seen[1] = model.pad_id  # nothing seen beyond the history
        if n_seen >= model.n_items:
            seen[2, : model.n_items] = torch.arange(model.n_items)  # everything seen: all -1
        with torch.no_grad():
            unseen = model.score_next(history)
        for row, items in enumerate(torch.cat([history, seen], dim=1)):  # the plain way: seen items to -inf
            unseen[row, items[items != model.pad_id]] = float("-inf")
        expected_scores, expected_items = plain_top_k(unseen, 12)
        expected_items[expected_scores == float("-inf")] = -1
        onnx = session.run(None, {"history": history.numpy(), "seen": seen.numpy()})
        for top_scores, top_items in [map(torch.as_tensor, onnx), program(history, seen), function(history, seen)]:
            assert torch.equal(top_items, expected_items)
            torch.testing.assert_close(top_scores, expected_scores, atol=1e-4, rtol=0)
    assert (expected_items[2] == -1).all() and (expected_items == -1).any(dim=1).sum() > 1


@pytest.fixture(scope="module")
def trained_tiny_catalog(tmp_path_factory) -> Path:
    return trained_home(tmp_path_factory, "export", *TINY_CATALOG)


@pytest.mark.slow  # trains a model
def test_exported_top_k_recommends_what_infer_recommends(trained_tiny_catalog: Path, home: Path, main_in_process):
    import onnxruntime

    from replay_accelerated.training.trained_model import load_trained_model

    checkpoint = trained_tiny_catalog / "checkpoints" / "bert4rec_synthetic" / "best.ckpt"
    model, vocabulary = load_trained_model(compose(home, *TINY_CATALOG), str(checkpoint))
    n_items, width, k = model.n_items, model.max_seq_len, 10
    rng = np.random.default_rng(0)
    window = rng.permutation(n_items)[:width]
    with torch.no_grad():  # the items the model likes best after `window`: seen before it, they must not come back
        older = [item for item in model.score_next(torch.as_tensor(window)[None])[0].argsort(descending=True).tolist()
                 if item not in window][:5]
    histories = {
        1: [*older, *window],  # longer than max_seq_len, and its favourites are older than the history
        2: rng.permutation(n_items)[: n_items - 3].tolist(),  # 3 unseen items: fewer than k
        3: rng.permutation(n_items).tolist(),  # everything seen: no recommendation at all
        4: rng.permutation(n_items)[:3].tolist(),  # a short history
        5: [],  # no item the model knows
    }
    events = pd.DataFrame([(user, item_id, t) for user, items in histories.items()
                           for t, item_id in enumerate(vocabulary.item_ids[items].tolist() or [999_999])],
                          columns=["user_id", "item_id", "timestamp"]).assign(rating=5)
    events.to_csv(home / "new.csv", index=False)
    inferred = main_in_process("infer", *TINY_CATALOG, f"mode.infer.checkpoint={checkpoint}", f"mode.infer.k={k}",
                               f"mode.infer.input={home / 'new.csv'}", f"mode.infer.output={home / 'infer.parquet'}")
    assert inferred.returncode == 0, inferred.stderr[-3000:]
    exported = main_in_process("export", *TINY_CATALOG, f"mode.export.checkpoint={checkpoint}", f"mode.export.k={k}",
                               f"mode.export.output={home / 'export'}")
    assert exported.returncode == 0, exported.stderr[-3000:]
    manifest = json.loads((home / "export" / "export.json").read_text())
    assert manifest["files"]["model_top_k"]["inputs"] == ["history", "seen"] and "-1" in manifest["tensors"]["item_ids"]

    users = sorted(histories)
    history = torch.full((len(users), width), model.pad_id)  # the newest max_seq_len items, left-padded
    seen = torch.full((len(users), n_items), model.pad_id)  # every seen item, right-padded
    for row, user in enumerate(users):
        newest, everything = histories[user][-width:], sorted(set(histories[user]))
        history[row, width - len(newest):] = torch.as_tensor(newest, dtype=torch.long)
        seen[row, : len(everything)] = torch.as_tensor(everything, dtype=torch.long)
    session = onnxruntime.InferenceSession(str(home / "export" / "model_top_k.onnx"))
    program = torch.export.load(home / "export" / "model_top_k.pt2").module()
    infer = pd.read_parquet(home / "infer.parquet")
    onnx = session.run(None, {"history": history.numpy(), "seen": seen.numpy()})
    for top_scores, top_items in [map(torch.as_tensor, onnx), program(history, seen)]:
        for row, user in enumerate(users):
            expected = infer[infer["user_id"] == user].sort_values("rank")
            found = top_items[row] >= 0
            assert vocabulary.item_ids[top_items[row][found].numpy()].tolist() == expected["item_id"].tolist()
            assert top_scores[row][found].tolist() == pytest.approx(expected["score"].tolist(), abs=1e-4)
            assert (top_scores[row][~found] == float("-inf")).all()
    assert [int((top_items[row] >= 0).sum()) for row in range(len(users))] == [k, 3, 0, k, k]


@pytest.mark.slow  # 30 exports of a few seconds each; see pyproject
@pytest.mark.parametrize("act_fn", list(ACTIVATIONS))
@pytest.mark.parametrize("head", ["linear_head", "tied_head", "switchback_head"])
@pytest.mark.parametrize("cls", [Bert4Rec, SasRec])
def test_every_model_head_and_activation_exports_with_the_same_scores(tmp_path: Path, cls, head: str, act_fn: str):
    import onnxruntime

    model = cls(n_items=97, max_seq_len=12, hidden_size=16, block_count=2, head_count=2, dropout_rate=0.1)
    settings = {"transformer_block": {"pff_block": {"act_fn": act_fn}}, "head": head,
                "tied_head": head == "tied_head"}
    if head == "tied_head":
        settings["head"] = "linear_head"
    apply_accelerations(model, OmegaConf.merge(OmegaConf.structured(Acceleration),
                                               {"model": {"acceleration_config": settings}}))
    model.eval()
    served = float_head_copy(model)
    write_function(NextItemScores(served), tmp_path / "model", ["history"], ["scores"], opset=18)
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    program = torch.export.load(tmp_path / "model.pt2").module()
    for width in range(1, model.max_seq_len + 1):
        history = torch.randint(0, model.n_items, (4, width))
        history[:2, : width // 2] = model.pad_id
        with torch.no_grad():
            expected = served.score_next(history)
        torch.testing.assert_close(torch.from_numpy(session.run(None, {"history": history.numpy()})[0]), expected,
                                   atol=1e-4, rtol=0)
        torch.testing.assert_close(program(history), expected, atol=1e-4, rtol=0)
    if head == "switchback_head":  # served in float: the int8 head's scores differ by its quantization error only
        with torch.no_grad():
            int8, float_ = model.score_next(history), served.score_next(history)
        assert (int8 - float_).abs().max() < 0.05 * float_.abs().max()


@pytest.mark.slow
def test_the_serving_benchmark_times_three_backends_that_agree(tmp_path: Path):
    from replay_accelerated.benchmarks.serving_latency import measure

    rows = measure("sasrec", n_items=60, hidden=16, max_seq_len=12, k=5, requests=5, batches=2, batch_size=8)
    assert [row["backend"] for row in rows] == ["pytorch_eager", "torch_export", "onnxruntime"]
    assert all(row["same_top_k_as_eager"] == 1.0 and 0 < row["p50_ms"] <= row["p99_ms"] for row in rows)
    assert all(row["users_per_second_batch_8"] > 0 for row in rows)
