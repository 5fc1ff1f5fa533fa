"""`mode=export`: a trained model as files a serving system loads without this package.

Reads the checkpoint `mode=train` wrote with the same config (or `mode.export.checkpoint`) and writes,
under `mode.export.output` (default `paths.results_dir/<save_name>/export/`), three functions
(models/serving.py), each as ONNX (opset `mode.export.opset`, for onnxruntime, OpenVINO, TensorRT...)
and as a `torch.export` program (`.pt2`, for `torch.export.load`; TorchScript is deprecated):

    model.onnx / model.pt2                       history [B, W] int64 -> scores [B, n_items]
    model_candidates.onnx / model_candidates.pt2 history, candidates [B, C] int64 -> scores [B, C]
    model_top_k.onnx / model_top_k.pt2           history -> scores [B, k], item ids [B, k] (history excluded)

B and W are dynamic (1 <= W <= max_seq_len). Histories hold our item indices, left-padded with `pad_id`;
`items.parquet` maps an index to the original item id, and `export.json` says all of this, with the
largest difference between the ONNX outputs (onnxruntime) and PyTorch's measured on random histories.

Needs the `export` extra (`pip install -e ".[export]"`: onnx, onnxscript, onnxruntime).
"""

import json
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from replay_accelerated.config import ConfigOrigin
from replay_accelerated.errors import UserError
from replay_accelerated.models.serving import (
    CandidateScores,
    NextItemScores,
    TopKUnseen,
    float_head_copy,
    write_function,
)
from replay_accelerated.training.runtime import apply_env, check_writable, checkpoint_path, load_trained_model

PARITY_BATCH = 8  # random histories per width in the parity check


def run(cfg: DictConfig, origin: ConfigOrigin) -> dict:
    settings = cfg.mode.export
    try:
        import onnxruntime
    except ImportError:
        raise UserError("mode=export needs onnx, onnxscript and onnxruntime: pip install -e \".[export]\"") from None
    apply_env(cfg.env)
    out_dir = Path(settings.output or Path(cfg.paths.results_dir) / cfg.model.save_name / "export")
    check_writable(cfg.paths)
    model, vocabulary = load_trained_model(cfg, settings.checkpoint, "mode.export.checkpoint")
    served = float_head_copy(model).float()
    if served is not model:
        print("The SwitchBack (int8) head is exported as its float equivalent: scores differ from the int8 "
              "head's by the quantization error")
    n_items, width = model.n_items, model.max_seq_len
    functions = {
        "model": (NextItemScores(served), ["history"], ["scores"]),
        "model_candidates": (CandidateScores(served), ["history", "candidates"], ["scores"]),
        "model_top_k": (TopKUnseen(served, settings.k), ["history"], ["scores", "item_ids"]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(checkpoint_path(cfg, settings.checkpoint).with_name("items.parquet"), out_dir / "items.parquet")
    manifest = {"n_items": n_items, "pad_id": model.pad_id, "max_seq_len": width, "k": min(settings.k, n_items),
                "opset": settings.opset, "files": {}}
    for name, (function, inputs, outputs) in functions.items():
        write_function(function, out_dir / name, inputs, outputs, settings.opset)
        session = onnxruntime.InferenceSession(str(out_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        difference = _largest_difference(function, session, inputs, n_items, model.pad_id, width)
        manifest["files"][name] = {"onnx": f"{name}.onnx", "torch_export": f"{name}.pt2", "inputs": inputs,
                                   "outputs": outputs, "max_abs_difference_onnxruntime": difference}
        print(f"Exported {name}: {', '.join(inputs)} -> {', '.join(outputs)}; onnxruntime vs PyTorch on random "
              f"histories of every width: largest difference {difference:.2e}", flush=True)
    (out_dir / "export.json").write_text(json.dumps(manifest, indent=2))
    print(f"Written to {out_dir}")
    return manifest


@torch.no_grad()
def _largest_difference(function: nn.Module, session, inputs: list[str], n_items: int, pad_id: int,
                        width: int) -> float:
    """The largest absolute difference between onnxruntime's outputs and PyTorch's, over random
    histories of every width 1..max_seq_len (with padding) and, where they are inputs, candidates."""
    largest = 0.0
    for history_width in range(1, width + 1):
        history = torch.randint(0, n_items, (PARITY_BATCH, history_width))
        history[: PARITY_BATCH // 2, : history_width // 2] = pad_id  # half the users have a shorter history
        feeds = {"history": history}
        if "candidates" in inputs:
            feeds["candidates"] = torch.randint(0, n_items, (PARITY_BATCH, 5))
        expected = function(*feeds.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {name: tensor.numpy() for name, tensor in feeds.items()})
        for ours, theirs in zip(expected, got):
            largest = max(largest, float((ours.double() - torch.from_numpy(theirs).double()).abs().max()))
    return largest
