"""Checkpoints that survive a crash, and resuming from them.

- Every checkpoint is written to a temporary file and then renamed over the old one
  (`AtomicCheckpointIO`): a process killed while writing leaves the previous file intact.
- A run trains in the `unfinished/` folder of its checkpoint folder: `last.ckpt` is written there
  after every validation, `best.ckpt` when validation NDCG@10 improves. Only a run that finished
  moves its files (and its results, modes/train.py) over the earlier run's (`publish`) and writes
  `complete.json`: a run that fails or is stopped leaves every file of the earlier run as it was.
- Each checkpoint carries the fingerprint of the configuration that trains it (data, model,
  accelerations, seed). Re-running the same command after a crash or a stop resumes from
  `unfinished/last.ckpt`; a checkpoint of another configuration, or one that cannot be read, is never
  used. A finished run leaves no `unfinished/`, so the next run with that save name trains anew.
- With several processes (DDP) every process takes the same decision: the first one removes
  a `last.ckpt` it will not resume from before the others start.

Every checkpoint is read by `models/files.py`'s `load_checkpoint` (tensors and plain data only).

Resuming gives the same result as an uninterrupted run because all randomness of an epoch
(batch order, masking, dropout, negative sampling) is seeded from (seed, epoch) at the
epoch's start, and Lightning restores the weights, the optimizer and the callbacks.
"""

import hashlib
import json
import os
import signal
import threading
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import DictConfig, OmegaConf

from replay_accelerated.errors import UserError
from replay_accelerated.models.files import STAMP_KEY, UntrustedCheckpoint, load_checkpoint
from replay_accelerated.outputs import write_text_atomic
from replay_accelerated.training.batches import epoch_seed

LAST = "last.ckpt"
COMPLETE = "complete.json"
UNFINISHED = "unfinished"  # the folder a run writes in until it has finished
# Bumped when a model's layers or training targets change, so that a last.ckpt of older ones is never
# resumed (2: SASRec as RePlay's SasRec; 3: SASRec's first item is a target too).
ARCHITECTURE_VERSION = 3
class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to `<path>.tmp`, then rename: a checkpoint file is always complete or absent. Read through
    `load_checkpoint`, so that Lightning's resume loads plain data only unless the file is trusted."""

    def __init__(self, trust: bool = False):
        super().__init__()
        self.trust = trust

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        temporary = f"{path}.tmp"
        try:
            super().save_checkpoint(checkpoint, temporary, storage_options)
        except (OSError, RuntimeError) as error:  # torch reports a full disk as a RuntimeError of its writer
            Path(temporary).unlink(missing_ok=True)
            raise UserError(f"writing the checkpoint {path} failed ({error}); the checkpoint there before is left as "
                            "it was: free space on that disk (a full disk is the usual cause), or set "
                            "paths.checkpoint_dir to another disk, then run the same command again to resume") from None
        os.replace(temporary, path)

    def load_checkpoint(self, path, map_location=lambda storage, location: storage, weights_only=None) -> dict:
        return load_checkpoint(path, self.trust, map_location)


class ResumableRun(L.Callback):
    """Seeds each epoch's randomness from (seed, epoch) and stamps checkpoints with what they hold:
    the config fingerprint, the model name and the catalog size (checked by `mode=infer`), and the
    model's `architecture()` (what `mode=infer`, `embeddings` and `export` rebuild it with)."""

    def __init__(self, fingerprint: str, seed: int, model_name: str, n_items: int, architecture: dict):
        self.stamp = {"fingerprint": fingerprint, "model": model_name, "n_items": n_items,
                      "architecture": architecture}
        self.seed = seed

    def on_train_batch_start(self, trainer, module, batch, batch_index: int) -> None:
        # At the first batch rather than at the epoch's start: by then the loaders have drawn their own
        # seeds, whose order around the epoch-start hooks differs between a fresh and a resumed run.
        if batch_index == 0:
            torch.manual_seed(epoch_seed(self.seed, trainer.current_epoch))  # masking, dropout, negatives

    def on_save_checkpoint(self, trainer, module, checkpoint: dict) -> None:
        checkpoint[STAMP_KEY] = self.stamp


class KeepSigtermHandler(L.Callback):
    """Keeps the SIGTERM handler that was in place before `fit` (cli.py's: SIGTERM stops like Ctrl+C).
    Lightning installs its own at the start of fit, which in a DDP run broadcasts from inside the signal
    handler: when another process is inside a gradient all-reduce the collectives mismatch and both hang."""

    def setup(self, trainer, module, stage: str) -> None:
        self.handler = signal.getsignal(signal.SIGTERM)  # setup runs before Lightning replaces it

    def on_train_start(self, trainer, module) -> None:
        if callable(self.handler) and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self.handler)  # Lightning's teardown restores it anyway


def config_fingerprint(cfg: DictConfig) -> str:
    """What decides the training result: data, model, accelerations and seed (not paths or display)."""
    parts = {key: OmegaConf.to_container(cfg[key], resolve=True) if cfg[key] is not None else None
             for key in ("dataset", "model", "acceleration")}
    parts["seed"] = cfg.env.SEED
    parts["architecture"] = ARCHITECTURE_VERSION
    parts["model"].pop("save_name", None)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def resume_checkpoint(checkpoint_dir: Path, fingerprint: str, trust: bool = False) -> Path | None:
    """`last.ckpt` of an unfinished run of this configuration, if there is one; otherwise None (train anew).

    A `last.ckpt` that holds code-bearing objects stops the run (`UntrustedCheckpoint`): it is not ours."""
    last = checkpoint_dir / LAST
    if not last.is_file():
        return None
    # Training anew removes the old last.ckpt, so that no process of this run can resume from it.
    try:
        saved = load_checkpoint(last, trust).get(STAMP_KEY, {}).get("fingerprint")
    except UntrustedCheckpoint:
        raise
    except Exception as error:  # a truncated or corrupted file: report it, keep it for inspection
        aside = last.with_name(f"{LAST}.unreadable")
        os.replace(last, aside)
        print(f"{last} cannot be read ({type(error).__name__}); moved to {aside.name}, training anew")
        return None
    if saved != fingerprint:
        print(f"{last} was trained with another configuration; training anew")
        last.unlink()
        return None
    print(f"Resuming from {last}")
    return last


def publish(unfinished: Path) -> None:
    """Move every file of a finished run's `unfinished` folder over the earlier run's files in the folder
    above it, then remove it. Each move is one rename."""
    for path in sorted(unfinished.iterdir()):
        os.replace(path, unfinished.parent / path.name)
    unfinished.rmdir()


def mark_complete(checkpoint_dir: Path, fingerprint: str, epochs: int) -> None:
    """The mark of a finished run, written last, after its files were published."""
    write_text_atomic(checkpoint_dir / COMPLETE, json.dumps({"fingerprint": fingerprint, "epochs": epochs}))
