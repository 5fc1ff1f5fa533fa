"""`mode=infer`: recommendations from a saved model for a new interactions file, and clear errors
when the checkpoint does not belong to the configured model."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SYNTHETIC, run_main, trained_home

TRAIN = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=1"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    return trained_home(tmp_path_factory, "infer", *TRAIN)


def _events(home: Path) -> pd.DataFrame:
    items = pd.read_parquet(home / "checkpoints" / "bert4rec_synthetic" / "items.parquet")["item_id"].tolist()
    return pd.DataFrame({
        "user_id": [7, 7, 7, 8, 9],
        "item_id": [items[0], items[1], 999_999, items[2], 888_888],  # 999999 and 888888 are unknown
        "rating": 5,
        "timestamp": [1, 2, 3, 1, 1],
    })


def test_infer_writes_top_k_unseen_items_for_every_user(trained: Path, home: Path, main_in_process):
    events = _events(trained)
    events.to_csv(home / "new.csv", index=False)
    checkpoint = f"mode.infer.checkpoint={trained / 'checkpoints' / 'bert4rec_synthetic' / 'best.ckpt'}"
    result = main_in_process("infer", *TRAIN, checkpoint, f"mode.infer.input={home / 'new.csv'}", "mode.infer.k=5")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dropped 2" in result.stdout
    top = pd.read_parquet(home / "results" / "bert4rec_synthetic" / "recommendations_infer.parquet")
    assert list(top.columns) == ["user_id", "item_id", "score", "rank"]
    assert sorted(top["user_id"].unique()) == [7, 8, 9]  # user 9 knows no item and still gets a list
    assert all(ranks == [1, 2, 3, 4, 5] for ranks in top.groupby("user_id")["rank"].apply(list))
    seen = top.merge(events[["user_id", "item_id"]], on=["user_id", "item_id"])
    assert seen.empty

    kept = main_in_process("infer", *TRAIN, checkpoint, f"mode.infer.input={home / 'new.csv'}", "mode.infer.k=500",
                           "mode.infer.remove_seen=false", f"mode.infer.output={home / 'all.parquet'}")
    assert kept.returncode == 0, kept.stderr[-3000:]
    everything = pd.read_parquet(home / "all.parquet")
    assert not everything.merge(events[["user_id", "item_id"]], on=["user_id", "item_id"]).empty


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_infer_refuses_a_checkpoint_of_another_model_or_catalog(trained: Path):
    _events(trained).to_csv(trained / "new.csv", index=False)
    checkpoint = trained / "checkpoints" / "bert4rec_synthetic" / "best.ckpt"
    other_model = run_main(trained, "infer", *TRAIN, "model=sasrec_synthetic", f"mode.infer.checkpoint={checkpoint}",
                           f"mode.infer.input={trained / 'new.csv'}")
    assert other_model.returncode == 2
    assert "holds a bert4rec model, but the config says model.name=sasrec" in other_model.stderr

    other = trained / "other"
    other.mkdir()
    (other / "best.ckpt").write_bytes(checkpoint.read_bytes())
    items = pd.read_parquet(checkpoint.with_name("items.parquet"))
    items.iloc[:-3].to_parquet(other / "items.parquet", index=False)
    other_catalog = run_main(trained, "infer", *TRAIN, f"mode.infer.checkpoint={other / 'best.ckpt'}",
                             f"mode.infer.input={trained / 'new.csv'}")
    assert other_catalog.returncode == 2
    assert f"trained on {len(items)} items but items.parquet beside it lists {len(items) - 3}" in other_catalog.stderr
    assert "model.params.training_params.init_from=<checkpoint>" in other_catalog.stderr  # the way to a new catalog

    bigger = run_main(trained, "infer", *TRAIN, "model.params.model_params.hidden_size=48",
                      "model.params.training_params.embedding_dim=48", f"mode.infer.input={trained / 'new.csv'}")
    assert bigger.returncode == 2 and "does not fit the configured model (size mismatch" in bigger.stderr


def test_infer_refuses_a_crafted_checkpoint_and_loads_it_only_when_trusted(trained: Path, main_in_process):
    from test_checkpoint_safety import crafted_checkpoint

    _events(trained).to_csv(trained / "new.csv", index=False)
    ours = trained / "checkpoints" / "bert4rec_synthetic" / "best.ckpt"
    for written in ours.parent.glob("*.ckpt"):  # every checkpoint training writes is plain data
        torch.load(written, weights_only=True)
    crafted = trained / "crafted"
    crafted.mkdir()
    marker = trained / "created_by_the_payload"
    crafted_checkpoint(crafted / "best.ckpt", marker, torch.load(ours, weights_only=True))
    (crafted / "items.parquet").write_bytes((ours.parent / "items.parquet").read_bytes())
    command = ["infer", *TRAIN, f"mode.infer.checkpoint={crafted / 'best.ckpt'}", f"mode.infer.input={trained / 'new.csv'}"]

    refused = main_in_process(*command)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "code-bearing objects" in refused.stderr and "trust_checkpoint=true" in refused.stderr
    assert not marker.exists()

    trusted = main_in_process(*command, "trust_checkpoint=true")
    assert trusted.returncode == 0, trusted.stderr[-3000:]
    assert marker.exists()


def test_candidates_restrict_the_ranking_to_a_list_or_to_each_users_pairs(trained: Path, home: Path,
                                                                         main_in_process):
    events = _events(trained)
    events.to_csv(home / "new.csv", index=False)
    items = pd.read_parquet(trained / "checkpoints" / "bert4rec_synthetic" / "items.parquet")["item_id"].tolist()
    common = ["infer", *TRAIN, f"mode.infer.input={home / 'new.csv'}", "mode.infer.k=5",
              f"mode.infer.checkpoint={trained / 'checkpoints' / 'bert4rec_synthetic' / 'best.ckpt'}"]
    whole = main_in_process(*common, f"mode.infer.output={home / 'whole.parquet'}", "mode.infer.k=500")
    assert whole.returncode == 0, whole.stderr[-3000:]
    everything = pd.read_parquet(home / "whole.parquet")

    shortlist = [items[0], items[3], items[4], items[5], 777_777]  # items[0] is seen by user 7; 777777 unknown
    listed = main_in_process(*common, f"mode.infer.candidates=[{','.join(map(str, shortlist))}]",
                             f"mode.infer.output={home / 'list.parquet'}")
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "Candidates: 4 items for every user; dropped 1" in listed.stdout
    top = pd.read_parquet(home / "list.parquet")
    for user, rows in top.groupby("user_id"):  # the whole ranking restricted to the shortlist, seen removed
        expected = everything[(everything["user_id"] == user) & everything["item_id"].isin(shortlist)]
        assert rows["item_id"].tolist() == expected["item_id"].tolist()
        assert rows["score"].tolist() == pytest.approx(expected["score"].tolist(), abs=1e-5)
    assert sorted(top[top["user_id"] == 7]["item_id"]) == sorted(items[3:6])  # 3 left: fewer than k

    pairs = pd.DataFrame({"user_id": [7, 7, 8, 8, 42], "item_id": [items[6], items[7], items[8], 999_999, items[9]]})
    pairs.to_csv(home / "pairs.csv", index=False)
    own = main_in_process(*common, f"mode.infer.candidates={home / 'pairs.csv'}",
                          f"mode.infer.output={home / 'pairs.parquet'}")
    assert own.returncode == 0, own.stderr[-3000:]
    assert "Candidates: 3 (user, item) pairs" in own.stdout and "dropped 2" in own.stdout  # unknown item, user 42
    top = pd.read_parquet(home / "pairs.parquet")
    assert set(top["user_id"]) == {7, 8}  # user 9 has no candidate, so no recommendation
    assert sorted(top[top["user_id"] == 7]["item_id"]) == sorted(items[6:8]) and top[top["user_id"] == 8][
        "item_id"].tolist() == [items[8]]


def test_embeddings_reproduce_the_ranking_of_infer(trained: Path, home: Path, main_in_process):
    _events(trained).to_csv(home / "new.csv", index=False)
    checkpoint = f"{trained / 'checkpoints' / 'bert4rec_synthetic' / 'best.ckpt'}"
    vectors = main_in_process("embeddings", *TRAIN, f"mode.embeddings.input={home / 'new.csv'}",
                              f"mode.embeddings.checkpoint={checkpoint}",
                              f"mode.embeddings.output={home / 'vectors'}")
    assert vectors.returncode == 0, vectors.stderr[-3000:]
    ranked = main_in_process("infer", *TRAIN, f"mode.infer.input={home / 'new.csv'}",
                             f"mode.infer.checkpoint={checkpoint}", "mode.infer.k=10", "mode.infer.remove_seen=false",
                             f"mode.infer.output={home / 'top.parquet'}")
    assert ranked.returncode == 0, ranked.stderr[-3000:]
    items = pd.read_parquet(home / "vectors" / "items.parquet")
    users = pd.read_parquet(home / "vectors" / "users.parquet")
    assert sorted(users["user_id"]) == [7, 8, 9] and len(items) == len(set(items["item_id"]))
    # What an inner-product index computes: user . item + bias.
    scores = np.stack(users["vector"].to_numpy()) @ np.stack(items["vector"].to_numpy()).T + items["bias"].to_numpy()
    top = pd.read_parquet(home / "top.parquet")
    for row, user in enumerate(users["user_id"]):
        best = np.argsort(-scores[row])[:10]
        expected = top[top["user_id"] == user]
        assert items["item_id"].to_numpy()[best].tolist() == expected["item_id"].tolist()
        assert scores[row, best] == pytest.approx(expected["score"].to_numpy(), abs=1e-4)



def test_embeddings_stream_users_with_the_same_vectors_for_any_batch_size():
    from omegaconf import OmegaConf

    from replay_accelerated.config import ModelParams
    from replay_accelerated.data.sequences import UserSequences, csr_offsets
    from replay_accelerated.models import build_model
    from replay_accelerated.evaluation.offline import user_vectors

    model = build_model("sasrec", 50, OmegaConf.structured(ModelParams(hidden_size=16, head_count=2,
                                                                       max_seq_len=8))).eval()
    rng = np.random.default_rng()
    lengths = rng.integers(0, 20, 30)  # some empty, some longer than max_seq_len
    histories = UserSequences(np.arange(30), csr_offsets(lengths), rng.integers(0, 50, lengths.sum()))
    with torch.no_grad():  # before streaming: every history padded at once
        expected = model.user_vectors(histories.padded(model.max_seq_len, model.pad_id)).numpy()
    for batch_size in (1, 7, len(histories)):
        vectors = user_vectors(model, histories, batch_size)
        assert vectors.shape == expected.shape and vectors.dtype == np.float32
        np.testing.assert_allclose(vectors, expected, atol=1e-5, rtol=0)

def test_export_writes_onnx_and_torch_export_files_that_score_as_the_model(trained: Path, home: Path,
                                                                            main_in_process):
    import onnxruntime

    from conftest import compose
    from replay_accelerated.training.trained_model import load_trained_model

    checkpoint = f"{trained / 'checkpoints' / 'bert4rec_synthetic' / 'best.ckpt'}"
    result = main_in_process("export", *TRAIN, f"mode.export.checkpoint={checkpoint}", "mode.export.k=7",
                             f"mode.export.output={home / 'export'}")
    assert result.returncode == 0, result.stderr[-3000:]
    out = home / "export"
    manifest = json.loads((out / "export.json").read_text())
    assert manifest["opset"] >= 17 and manifest["k"] == 7
    model, vocabulary = load_trained_model(compose(home, *TRAIN), checkpoint)
    assert pd.read_parquet(out / "items.parquet")["item_id"].tolist() == vocabulary.item_ids.tolist()
    sessions = {name: onnxruntime.InferenceSession(str(out / f"{name}.onnx"))
                for name in ("model", "model_candidates", "model_top_k")}
    programs = {name: torch.export.load(out / f"{name}.pt2").module() for name in sessions}
    for width in range(1, model.max_seq_len + 1):  # every history length, some users padded
        history = torch.randint(0, model.n_items, (5, width))
        history[:2, : width // 2] = model.pad_id
        candidates = torch.randint(0, model.n_items, (5, 9))
        with torch.no_grad():
            scores = model.score_next(history)
            expected_candidates = model.head(model.user_vectors(history), candidates)
            unseen = scores.clone()
            for row in range(len(history)):  # the plain way: each row's items (padding is none) to -inf
                unseen[row, history[row][history[row] != model.pad_id]] = float("-inf")
            expected_top, expected_items = unseen.topk(7, dim=1)
        onnx = sessions["model"].run(None, {"history": history.numpy()})[0]
        torch.testing.assert_close(torch.from_numpy(onnx), scores, atol=1e-4, rtol=0)
        torch.testing.assert_close(programs["model"](history), scores, atol=1e-4, rtol=0)
        onnx = sessions["model_candidates"].run(None, {"history": history.numpy(), "candidates": candidates.numpy()})
        torch.testing.assert_close(torch.from_numpy(onnx[0]), expected_candidates, atol=1e-4, rtol=0)
        torch.testing.assert_close(programs["model_candidates"](history, candidates), expected_candidates, atol=1e-4,
                                   rtol=0)
        inputs = {"history": history.numpy(), "seen": history.numpy()}  # nothing seen beyond the history
        top_scores, top_items = sessions["model_top_k"].run(None, inputs)
        assert torch.equal(torch.from_numpy(top_items), expected_items)
        torch.testing.assert_close(torch.from_numpy(top_scores), expected_top, atol=1e-4, rtol=0)
        assert not any(torch.isin(torch.from_numpy(items), row).any() for items, row in zip(top_items, history))
