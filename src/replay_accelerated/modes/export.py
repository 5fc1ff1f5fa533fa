"""`mode=export`: a trained model as files a serving system loads without this package.

Reads the checkpoint `mode=train` wrote with the same config (or `mode.export.checkpoint`) and writes,
under `mode.export.output` (default `paths.results_dir/<save_name>/export/`), three functions
(models/serving.py), each as ONNX (opset `mode.export.opset`, for onnxruntime, OpenVINO, TensorRT...)
and as a `torch.export` program (`.pt2`, for `torch.export.load`; TorchScript is deprecated):

    model.onnx / model.pt2                       history [B, W] int64 -> scores [B, n_items]
    model_candidates.onnx / model_candidates.pt2 history, candidates [B, C] int64 -> scores [B, C]
    model_top_k.onnx / model_top_k.pt2           history, seen [B, S] int64 -> scores [B, k], item ids [B, k]

B, W, C and S are dynamic (1 <= W <= max_seq_len). Histories hold our item indices, left-padded with `pad_id`;
`seen` holds every item the user has seen (older than the history too), padded with `pad_id`, and the top k
are the k best of the others, ranked as `mode=infer` ranks them: ties go to the larger item index, and a user
with fewer than k unseen items gets item -1 (score -inf) in the places left. `items.parquet` maps an index to
the original item id, and `export.json` says all of this, with the largest difference between the ONNX
outputs (onnxruntime) and PyTorch's measured on random inputs.

Every file is written under a temporary name, and all are renamed into the folder together once the last
is complete (outputs.atomic_path): a failed export (a full disk) leaves the earlier export there whole.

Needs the `export` extra (`pip install -e ".[export]"`: onnx, onnxscript, onnxruntime).
"""

import contextlib
import json
import os
import shutil
import tempfile
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
from replay_accelerated.outputs import atomic_path, check_output_path, writing
from replay_accelerated.training.environment import apply_env, check_writable
from replay_accelerated.training.trained_model import checkpoint_path, load_trained_model

PARITY_BATCH = 8  # random histories per width in the parity check
# What export.json says of each input and output, for whoever writes the serving side.
TENSORS = {
    "history": "[B, W] int64, 1 <= W <= max_seq_len: the user's newest item indices (row i of items.parquet is "
               "item i), oldest first, left-padded with pad_id",
    "candidates": "[B, C] int64: the item indices to score",
    "seen": "[B, S] int64: every item index the user has seen (older than the history too), padded with pad_id; "
            "none of them is recommended",
    "scores": "float32: [B, n_items] from model, [B, C] from model_candidates, [B, k] (best first) from model_top_k",
    "item_ids": "[B, k] int64: the best k unseen items, ties to the larger index (replay-rec's order); -1 (score "
                "-inf) where the user has fewer than k unseen items",
}


def run(cfg: DictConfig, origin: ConfigOrigin) -> dict:
    settings = cfg.mode.export
    try:
        import onnxruntime
    except ImportError:
        raise UserError("mode=export needs onnx, onnxscript and onnxruntime: pip install -e \".[export]\"") from None
    apply_env(cfg.env)
    out_dir = Path(settings.output or Path(cfg.paths.results_dir) / cfg.model.save_name / "export")
    check_writable(cfg.paths)
    check_output_path(out_dir, "mode.export.output", folder=True)
    model, vocabulary = load_trained_model(cfg, settings.checkpoint, "mode.export.checkpoint")
    served = float_head_copy(model).float()
    if served is not model:
        print("The SwitchBack (int8) head is exported as its float equivalent: scores differ from the int8 "
              "head's by the quantization error")
    n_items, width = model.n_items, model.max_seq_len
    functions = {
        "model": (NextItemScores(served), ["history"], ["scores"]),
        "model_candidates": (CandidateScores(served), ["history", "candidates"], ["scores"]),
        "model_top_k": (TopKUnseen(served, settings.k), ["history", "seen"], ["scores", "item_ids"]),
    }
    manifest = {"n_items": n_items, "pad_id": model.pad_id, "max_seq_len": width, "k": min(settings.k, n_items),
                "opset": settings.opset, "tensors": TENSORS, "files": {}}
    # `files` holds each output's atomic_path until the block ends: all are renamed into out_dir then, or none.
    with (writing(out_dir, "mode.export.output"), contextlib.ExitStack() as files,
          tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as staging):
        def place(file_name: str) -> Path:  # the temporary name an output is written under
            return files.enter_context(atomic_path(out_dir / file_name))

        manifest_file = place("export.json")  # entered first, so renamed last: it names files already in place
        shutil.copyfile(checkpoint_path(cfg, settings.checkpoint).with_name("items.parquet"), place("items.parquet"))
        for name, (function, inputs, outputs) in functions.items():
            # write_function names its two files from one stem (.onnx, .pt2): written in staging, then placed.
            write_function(function, Path(staging) / name, inputs, outputs, settings.opset)
            session = onnxruntime.InferenceSession(str(Path(staging) / f"{name}.onnx"),
                                                   providers=["CPUExecutionProvider"])
            for written in sorted(Path(staging).iterdir()):
                os.replace(written, place(written.name))
            difference = _largest_difference(function, session, inputs, n_items, model.pad_id, width)
            manifest["files"][name] = {"onnx": f"{name}.onnx", "torch_export": f"{name}.pt2", "inputs": inputs,
                                       "outputs": outputs, "max_abs_difference_onnxruntime": difference}
            print(f"Exported {name}: {', '.join(inputs)} -> {', '.join(outputs)}; onnxruntime vs PyTorch on random "
                  f"histories of every width: largest difference {difference:.2e}", flush=True)
        manifest_file.write_text(json.dumps(manifest, indent=2))
    print(f"Written to {out_dir}")
    return manifest


@torch.no_grad()
def _largest_difference(function: nn.Module, session, inputs: list[str], n_items: int, pad_id: int,
                        width: int) -> float:
    """The largest absolute difference between onnxruntime's outputs and PyTorch's, over random
    histories of every width 1..max_seq_len (with padding) and, where they are inputs, candidates and
    seen sets (with padding)."""
    largest = 0.0
    for history_width in range(1, width + 1):
        history = torch.randint(0, n_items, (PARITY_BATCH, history_width))
        history[: PARITY_BATCH // 2, : history_width // 2] = pad_id  # half the users have a shorter history
        seen = torch.randint(0, n_items, (PARITY_BATCH, history_width + 5))
        seen[: PARITY_BATCH // 2, -5:] = pad_id
        others = {"candidates": torch.randint(0, n_items, (PARITY_BATCH, 5)), "seen": seen}
        feeds = {"history": history, **{name: others[name] for name in inputs[1:]}}
        expected = function(*feeds.values())
        expected = expected if isinstance(expected, tuple) else (expected,)
        got = session.run(None, {name: tensor.numpy() for name, tensor in feeds.items()})
        for ours, theirs in zip(expected, got):
            ours, theirs = ours.double(), torch.from_numpy(theirs).double()
            # Equal counts as 0 where -inf meets -inf (a user with fewer than k unseen items).
            largest = max(largest, float(torch.where(ours == theirs, 0.0, (ours - theirs).abs()).max()))
    return largest
