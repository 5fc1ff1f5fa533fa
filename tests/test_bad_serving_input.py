"""Bad input to the serving modes (`infer`, `embeddings`, `export`) and to the device and override settings
stops with one paragraph naming the file or key and the fix, exit status 2; a failed write leaves the
earlier output as it was."""

import errno
import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose
from replay_accelerated.errors import ConfigError
from replay_accelerated.models.files import STAMP_KEY
from replay_accelerated.training.precision import training_device
from replay_accelerated.training.assembly import build_accelerated_model

MODEL = ["model.params.model_params.max_seq_len=20", "model.params.model_params.hidden_size=32",
         "model.params.training_params.embedding_dim=32"]
ITEM_IDS = np.arange(100, 150)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A folder with best.ckpt and items.parquet as mode=train writes them (of an untrained model: meeting bad
    input needs no training) and `new.csv`, interactions of its items."""
    folder = tmp_path_factory.mktemp("saved")
    cfg = compose(folder, *MODEL)
    model, _ = build_accelerated_model(cfg, len(ITEM_IDS))
    torch.save({"state_dict": {f"model.{name}": value for name, value in model.state_dict().items()},
                STAMP_KEY: {"fingerprint": None, "model": cfg.model.name, "n_items": len(ITEM_IDS),
                            "architecture": model.architecture()}},
               folder / "best.ckpt")
    pd.DataFrame({"item_id": ITEM_IDS}).to_parquet(folder / "items.parquet", index=False)
    pd.DataFrame({"user_id": [1, 1, 2], "item_id": ITEM_IDS[:3], "rating": 5, "timestamp": [1, 2, 3]}).to_csv(
        folder / "new.csv", index=False)
    return folder


def _serve(saved: Path, mode: str, *overrides: str) -> list[str]:
    """The command line of `mode` on the saved model and its interactions."""
    inputs = [] if mode == "export" else [f"mode.{mode}.input={saved / 'new.csv'}"]
    return [mode, *MODEL, f"mode.{mode}.checkpoint={saved / 'best.ckpt'}", *inputs, *overrides]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _earlier(folder: Path, *names: str) -> dict[Path, str]:
    """Files of an earlier run in `folder`, with their sha256: a failed run must leave them as they are."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(f"earlier {name}".encode())
    return {folder / name: _sha256(folder / name) for name in names}


def _fill_disk_on_call(monkeypatch, target, name: str, failing_call: int = 1, suffix: str = "") -> None:
    """Replaces the writer `target.name`, called as (object, path, ...): calls before `failing_call` write as
    before; that one writes the start of its file (the path plus `suffix`) and fails as a full disk does."""
    real, calls = getattr(target, name), []

    def writer(*args, **kwargs):
        calls.append(args)
        if len(calls) < failing_call:
            return real(*args, **kwargs)
        partial = Path(f"{args[1]}{suffix}")
        partial.write_bytes(b"PAR1 the start of a file")
        raise OSError(errno.ENOSPC, "No space left on device", str(partial))

    monkeypatch.setattr(target, name, writer)


def test_a_truncated_items_parquet_beside_the_checkpoint_is_named(saved: Path, tmp_path: Path, main_in_process):
    (tmp_path / "best.ckpt").write_bytes((saved / "best.ckpt").read_bytes())
    (tmp_path / "items.parquet").write_bytes((saved / "items.parquet").read_bytes()[:100])
    result = main_in_process(*_serve(saved, "infer", f"mode.infer.checkpoint={tmp_path / 'best.ckpt'}"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{tmp_path / 'items.parquet'} (the item list beside best.ckpt) cannot be read" in result.stderr
    assert "copy it again" in result.stderr and "mode.infer.checkpoint" in result.stderr


@pytest.mark.parametrize("mode, key", [("infer", "mode.infer.input"), ("infer", "mode.infer.candidates"),
                                       ("embeddings", "mode.embeddings.input")])
def test_a_missing_input_file_is_named_with_its_key(saved: Path, home: Path, mode: str, key: str, main_in_process):
    result = main_in_process(*_serve(saved, mode, f"{key}={home / 'missing.csv'}"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"{key}={home / 'missing.csv'} does not exist; point {key} to an existing" in result.stderr


def test_infer_output_that_is_a_folder_is_refused_before_any_work(saved: Path, home: Path, main_in_process):
    (home / "out").mkdir()
    result = main_in_process(*_serve(saved, "infer", f"mode.infer.output={home / 'out'}"))
    assert result.returncode == 2
    assert f"mode.infer.output={home / 'out'} is a folder; name the file to write" in result.stderr
    assert "Read 3 interactions" not in result.stdout  # before the input was read


@pytest.mark.parametrize("mode", ["embeddings", "export"])
def test_an_output_folder_that_is_a_file_is_refused(saved: Path, home: Path, mode: str, main_in_process):
    earlier = _earlier(home, "out")
    result = main_in_process(*_serve(saved, mode, f"mode.{mode}.output={home / 'out'}"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"mode.{mode}.output={home / 'out'} is a file, but it names the folder" in result.stderr
    assert {path: _sha256(path) for path in earlier} == earlier


def _assert_left_as_it_was(result, key: str, where: Path, earlier: dict[Path, str], folder: Path) -> None:
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"writing {where} failed (No space left on device); what was there before is left as it was" \
        in result.stderr and key in result.stderr
    assert {path: _sha256(path) for path in earlier} == earlier
    assert sorted(folder.iterdir()) == sorted(earlier)  # no half-written or temporary file left beside them


def test_infer_on_a_full_disk_leaves_the_earlier_recommendations(saved: Path, home: Path, monkeypatch,
                                                                 main_in_process):
    earlier = _earlier(home / "out", "top.parquet")
    _fill_disk_on_call(monkeypatch, pd.DataFrame, "to_parquet")
    result = main_in_process(*_serve(saved, "infer", f"mode.infer.output={home / 'out' / 'top.parquet'}"))
    _assert_left_as_it_was(result, "mode.infer.output", home / "out" / "top.parquet", earlier, home / "out")


def test_embeddings_on_a_full_disk_leave_both_earlier_files(saved: Path, home: Path, monkeypatch, main_in_process):
    earlier = _earlier(home / "vectors", "items.parquet", "users.parquet")
    _fill_disk_on_call(monkeypatch, pd.DataFrame, "to_parquet", failing_call=2)  # items written, users not
    result = main_in_process(*_serve(saved, "embeddings", f"mode.embeddings.output={home / 'vectors'}"))
    _assert_left_as_it_was(result, "mode.embeddings.output", home / "vectors", earlier, home / "vectors")


def test_export_on_a_full_disk_leaves_the_earlier_export(saved: Path, home: Path, monkeypatch, main_in_process):
    from replay_accelerated.modes import export

    earlier = _earlier(home / "export", "export.json", "items.parquet", "model.onnx", "model.pt2")
    _fill_disk_on_call(monkeypatch, export, "write_function", suffix=".onnx")
    result = main_in_process(*_serve(saved, "export", f"mode.export.output={home / 'export'}"))
    _assert_left_as_it_was(result, "mode.export.output", home / "export", earlier, home / "export")


def test_a_gpu_asked_for_without_cuda_stops_before_any_work(home: Path, monkeypatch, main_in_process):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine, wherever the test runs
    result = main_in_process("trainer.accelerator=gpu")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "trainer.accelerator=gpu but this machine has no CUDA device (torch " in result.stderr
    assert "use trainer.accelerator=cpu or auto" in result.stderr
    assert "Data:" not in result.stdout  # stopped before preparing the data


def test_the_training_device_refuses_cuda_only_where_there_is_none(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"trainer.accelerator=cuda but this machine has no CUDA device"):
        training_device(OmegaConf.create({"accelerator": "cuda"}))
    assert training_device(OmegaConf.create({"accelerator": "auto"})) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert training_device(OmegaConf.create({"accelerator": "gpu"})) == torch.device("cuda")


def test_a_key_given_twice_is_quoted_as_hydra_applied_it(main_in_process):
    result = main_in_process("model.params.model_params.max_seq_len=20", "model.params.model_params.max_seq_len=0")
    assert result.returncode == 2
    assert "the command-line override 'model.params.model_params.max_seq_len=0'" in result.stderr
