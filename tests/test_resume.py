"""Crashes lose nothing: a run killed with SIGKILL resumes from last.ckpt and ends as if never
interrupted; a NaN loss stops training with its step number and keeps the earlier checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from conftest import PINNED_PRECISION, ROOT, TINY_SYNTHETIC, run_main
from replay_accelerated.errors import TrainingDiverged
from replay_accelerated.losses import CrossEntropyLoss
from replay_accelerated.models import Bert4Rec
from replay_accelerated.training.batches import TrainingExample
from replay_accelerated.training.checkpoints import AtomicCheckpointIO
from replay_accelerated.training.module import RecommenderModule

RUN = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=4", "model.params.training_params.patience=4",
       "dataset.generator.n_users=3000"]  # epochs of a few seconds: long enough to be killed inside one


def _start_main(home: Path, *overrides: str) -> subprocess.Popen:
    env = {**os.environ, "REPLAY_ACCELERATED_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), PINNED_PRECISION, *overrides], cwd=home, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_a_run_killed_mid_epoch_resumes_from_last_checkpoint_with_the_same_final_metrics(tmp_path: Path):
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    whole.mkdir(), killed.mkdir()
    uninterrupted = run_main(whole, *RUN)
    assert uninterrupted.returncode == 0, uninterrupted.stderr[-3000:]

    process = _start_main(killed, *RUN)
    last = killed / "checkpoints" / "bert4rec_synthetic" / "unfinished" / "last.ckpt"  # a run in progress writes here
    deadline = time.monotonic() + 300
    while not last.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # into the second epoch
    assert process.poll() is None, "the run ended before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert torch.load(last, weights_only=True)["epoch"] < 3  # killed before the end; plain data only

    resumed = run_main(killed, *RUN)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming from" in resumed.stdout
    runs = [json.loads((home / "results" / "bert4rec_synthetic" / "run.json").read_text()) for home in (whole, killed)]
    assert runs[1]["epochs_run"] == runs[0]["epochs_run"]
    assert runs[1]["best_validation_ndcg@10"] == runs[0]["best_validation_ndcg@10"]
    assert runs[1]["test_metrics"] == runs[0]["test_metrics"]
    # The measurements of the killed run's finished epochs are kept.
    assert [entry["epoch"] for entry in runs[1]["validation_history"]] == list(range(1, runs[0]["epochs_run"] + 1))

    for written in (killed / "checkpoints" / "bert4rec_synthetic").glob("*.ckpt"):  # after the resume, too
        torch.load(written, weights_only=True)

    again = run_main(killed, *RUN)  # a finished run is trained anew, not resumed
    assert again.returncode == 0 and "Resuming from" not in again.stdout


class _LossTurningNaN(CrossEntropyLoss):
    def __init__(self, at_step: int):
        super().__init__()
        self.at_step, self.calls = at_step, 0

    def forward(self, *args):
        loss = super().forward(*args)
        self.calls += 1
        return loss * float("nan") if self.calls > self.at_step else loss


def test_nan_loss_stops_with_the_step_number_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    model = Bert4Rec(n_items=30, max_seq_len=8, hidden_size=16, block_count=1, head_count=1, dropout_rate=0.0)
    examples = [TrainingExample(*model.training_example(sequences, None), 64)
                for sequences in torch.randint(0, 30, (40, 9)).split(10)]
    batches = torch.utils.data.DataLoader(examples, batch_size=None)  # 4 steps per epoch
    module = RecommenderModule(model, _LossTurningNaN(at_step=6), learning_rate=1e-3, weight_decay=0.0, ks=[10])
    checkpoint = L.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer = L.Trainer(max_epochs=3, callbacks=[checkpoint], plugins=[AtomicCheckpointIO()], logger=False,
                        enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(TrainingDiverged, match=r"NaN or infinite at step 6 \(epoch 1\)"):
        trainer.fit(module, batches)
    saved = torch.load(tmp_path / "last.ckpt", weights_only=True)
    assert saved["epoch"] == 0  # the first epoch's checkpoint, untouched
    assert all(torch.isfinite(value).all() for value in saved["state_dict"].values())
    assert not list(tmp_path.glob("*.tmp"))


def test_a_damaged_cache_file_is_detected_and_the_cache_rebuilt(tmp_path: Path, capsys):
    from conftest import compose
    from replay_accelerated.data.pipeline import prepare_data

    dataset = compose(tmp_path, *TINY_SYNTHETIC).dataset
    first = prepare_data(dataset, tmp_path)
    damaged = first.cache_dir / "sequences_train_events.parquet"
    damaged.write_bytes(damaged.read_bytes()[:-100])  # truncated
    capsys.readouterr()
    again = prepare_data(dataset, tmp_path)
    assert "sequences_train_events.parquet is missing or damaged" in capsys.readouterr().err
    assert np.array_equal(again.train.items, first.train.items)
    prepare_data(dataset, tmp_path)
    assert "Loaded cached splits" in capsys.readouterr().err  # rebuilt, and intact again


def test_a_truncated_last_checkpoint_is_reported_and_never_resumed(tmp_path: Path, capsys):
    from replay_accelerated.training.checkpoints import LAST, resume_checkpoint

    good = {"state_dict": {}, "replay_accelerated": {"fingerprint": "abc"}}
    torch.save(good, tmp_path / LAST)
    assert resume_checkpoint(tmp_path, "abc") == tmp_path / LAST
    assert resume_checkpoint(tmp_path, "other") is None  # another configuration: removed, trained anew
    assert not (tmp_path / LAST).exists()

    torch.save(good, tmp_path / LAST)
    (tmp_path / LAST).write_bytes((tmp_path / LAST).read_bytes()[:50])
    assert resume_checkpoint(tmp_path, "abc") is None
    assert "cannot be read" in capsys.readouterr().out
    assert (tmp_path / f"{LAST}.unreadable").is_file() and not (tmp_path / LAST).exists()
