"""Loading a model file never runs code from it: every load goes through one function that reads
tensors and plain data only, unless the user trusts the file (`trust_checkpoint=true`)."""

import re
from pathlib import Path

import pytest
import torch

from replay_accelerated.models.files import UntrustedCheckpoint, load_checkpoint
from replay_accelerated.training.checkpoints import LAST, AtomicCheckpointIO, resume_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"


class Payload:
    """Unpickling this creates the file `marker`: code that a model file should never get to run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def crafted_checkpoint(path: Path, marker: Path, contents: dict | None = None) -> Path:
    """A checkpoint that looks like ours (its `contents`) with a payload hidden inside."""
    torch.save({**(contents or {"state_dict": {}}), "notes": [Payload(marker)]}, path)
    return path


def test_only_the_one_loader_calls_torch_load():
    calls = [f"{path.relative_to(SRC)}:{number}" for path in SRC.rglob("*.py")
             for number, line in enumerate(path.read_text().splitlines(), start=1) if re.search(r"torch\.load\(", line)]
    assert calls == [f"replay_accelerated/models/files.py:{_line_of_load()}"], calls


def _line_of_load() -> int:
    lines = (SRC / "replay_accelerated/models/files.py").read_text().splitlines()
    return next(number for number, line in enumerate(lines, start=1) if "torch.load(" in line)


def test_a_crafted_file_is_refused_without_running_its_code_and_loads_only_when_trusted(tmp_path: Path):
    marker = tmp_path / "created_by_the_payload"
    path = crafted_checkpoint(tmp_path / "model.ckpt", marker)
    with pytest.raises(UntrustedCheckpoint) as refused:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(refused.value)
    assert str(path) in message and "code-bearing objects" in message and "trust_checkpoint=true" in message
    assert "the global io.open" in message  # what it would have run

    load_checkpoint(path, trust=True)
    assert marker.exists()  # trusting a file runs its code: that is what the opt-in means


def test_resume_refuses_a_crafted_last_checkpoint(tmp_path: Path):
    marker = tmp_path / "created_by_the_payload"
    crafted_checkpoint(tmp_path / LAST, marker, {"state_dict": {}, "replay_accelerated": {"fingerprint": "abc"}})
    with pytest.raises(UntrustedCheckpoint):
        resume_checkpoint(tmp_path, "abc")
    with pytest.raises(UntrustedCheckpoint):  # Lightning's own read of the resumed file
        AtomicCheckpointIO().load_checkpoint(tmp_path / LAST)
    assert not marker.exists() and (tmp_path / LAST).is_file()  # refused, and left as it was

    assert resume_checkpoint(tmp_path, "abc", trust=True) == tmp_path / LAST
    assert marker.exists()


def test_a_corrupt_file_is_not_mistaken_for_an_untrusted_one(tmp_path: Path):
    path = tmp_path / "broken.ckpt"
    torch.save({"state_dict": {}}, path)
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(Exception) as error:
        load_checkpoint(path)
    assert not isinstance(error.value, UntrustedCheckpoint)


def test_training_refuses_to_resume_from_a_crafted_last_checkpoint(tmp_path: Path):
    from conftest import TINY_SYNTHETIC, run_main

    marker = tmp_path / "created_by_the_payload"
    checkpoint_dir = tmp_path / "checkpoints" / "bert4rec_synthetic" / "unfinished"  # where a stopped run resumes
    checkpoint_dir.mkdir(parents=True)
    crafted_checkpoint(checkpoint_dir / LAST, marker)
    result = run_main(tmp_path, *TINY_SYNTHETIC, "model.params.training_params.max_epochs=1")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "code-bearing objects" in result.stderr and "trust_checkpoint=true" in result.stderr
    assert not marker.exists() and not (tmp_path / "results" / "bert4rec_synthetic" / "run.json").exists()
