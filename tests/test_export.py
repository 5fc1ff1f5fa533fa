"""Exported scoring functions (ONNX through onnxruntime, and torch.export) score as the PyTorch model does,
for every model, head and activation (the trained end-to-end export is in test_infer.py)."""

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from replay_accelerated.acceleration.apply import ACTIVATIONS, apply_accelerations
from replay_accelerated.config import Acceleration
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.serving import NextItemScores, float_head_copy, write_function

pytestmark = pytest.mark.slow  # 30 exports of a few seconds each; see pyproject


@pytest.mark.parametrize("act_fn", list(ACTIVATIONS))
@pytest.mark.parametrize("head", ["linear_head", "tied_head", "swichback_head"])
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
    if head == "swichback_head":  # served in float: the int8 head's scores differ by its quantization error only
        with torch.no_grad():
            int8, float_ = model.score_next(history), served.score_next(history)
        assert (int8 - float_).abs().max() < 0.05 * float_.abs().max()


def test_the_serving_benchmark_times_three_backends_that_agree(tmp_path: Path):
    from replay_accelerated.benchmark.serving import measure

    rows = measure("sasrec", n_items=60, hidden=16, max_seq_len=12, k=5, requests=5, batches=2, batch_size=8)
    assert [row["backend"] for row in rows] == ["pytorch_eager", "torch_export", "onnxruntime"]
    assert all(row["same_top_k_as_eager"] == 1.0 and 0 < row["p50_ms"] <= row["p99_ms"] for row in rows)
    assert all(row["users_per_second_batch_8"] > 0 for row in rows)
