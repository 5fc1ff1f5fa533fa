"""Bad input stops the run with one paragraph naming the problem and the fix, exit status 2,
and leaves the checkpoints and results of earlier runs as they were."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import compose
from replay_accelerated.data.formats import read_local_log
from replay_accelerated.errors import ConfigError, DataError
from replay_accelerated.training import assembly
from replay_accelerated.training.precision import Precision


def _log(n_users: int = 40, per_user: int = 12) -> pd.DataFrame:
    users = np.repeat(np.arange(n_users), per_user)
    return pd.DataFrame({
        "user_id": users,
        "item_id": np.random.randint(0, 30, len(users)),
        "rating": 5,
        "timestamp": np.arange(len(users)) * 60,
    })


def _csv_lines(frame: pd.DataFrame) -> list[str]:
    return frame.to_csv(index=False).splitlines()


BAD_FILES = {  # name -> (file text, words the error must contain)
    "empty file": ("", ["is empty", "dataset.path"]),
    "missing column": ("\n".join(_csv_lines(_log().drop(columns="timestamp"))), ["column 'timestamp' missing",
                                                                             "dataset.feature_schema.timestamp_column"]),
    "non-numeric timestamps": ("\n".join(_csv_lines(_log().assign(timestamp="soon"))), ["neither numbers nor dates"]),
    "missing timestamps": ("\n".join(_csv_lines(_log().astype({"timestamp": float}).assign(
        timestamp=lambda f: f.timestamp.where(f.index % 7 > 0)))), ["timestamps", "missing"]),
    "duplicate header": ("\n".join(_csv_lines(_log()) + _csv_lines(_log())[:1] + _csv_lines(_log())[1:5]),
                         ["line 482", "repeats the header"]),
}


SLOW_CASES = ("non-numeric timestamps", "missing timestamps", "duplicate header")  # pyproject: slow


def _sentinels(home: Path) -> dict[Path, str]:
    """Files of an earlier run that a failed run must leave as they are."""
    files = {home / "checkpoints" / "bert4rec_local" / "best.ckpt": "earlier checkpoint",
             home / "results" / "bert4rec_local" / "run.json": "earlier results"}
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return files


@pytest.mark.parametrize("case", [pytest.param(case, marks=[pytest.mark.slow] if case in SLOW_CASES else [])
                                  for case in BAD_FILES])
def test_bad_file_gives_a_clear_error_and_keeps_earlier_outputs(home: Path, case: str, main_in_process):
    text, words = BAD_FILES[case]
    (home / "log.csv").write_text(text)
    sentinels = _sentinels(home)
    result = main_in_process("dataset=local", f"dataset.path={home / 'log.csv'}", "model=bert4rec_local")
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: ") and all(word in message for word in words), message
    assert all(path.read_text() == content for path, content in sentinels.items())


@pytest.mark.parametrize("preprocess, words", [
    (["dataset.preprocess.min_items_per_user=1000"], ["no interactions are left", "min_items_per_user"]),
    (["dataset.preprocess.val_users_ratio=0.001"], ["validation user", "val_users_ratio"]),
])
def test_protocol_that_leaves_too_few_users_is_explained(home: Path, preprocess: list[str], words: list[str],
                                                         main_in_process):
    _log(n_users=60).to_csv(home / "log.csv", index=False)
    sentinels = _sentinels(home)
    result = main_in_process("dataset=local", f"dataset.path={home / 'log.csv'}", "model=bert4rec_local",
                             "dataset.preprocess.min_users_per_item=1", *preprocess)
    assert result.returncode == 2, result.stderr[-2000:]
    assert all(word in result.stderr for word in words), result.stderr[-2000:]
    assert all(path.read_text() == content for path, content in sentinels.items())


def test_id_column_mixing_value_types_is_refused(tmp_path: Path):
    # pandas reads a long CSV in chunks: numbers in the first chunks and text later give an id
    # column holding both int 12 and str 'x12'.
    frame = _log(n_users=30_000)
    frame["item_id"] = frame["item_id"].astype(object)
    frame.loc[len(frame) - 5:, "item_id"] = "x12"
    frame.to_csv(tmp_path / "log.csv", index=False)
    schema = compose(tmp_path, "dataset=local", "dataset.path=x").dataset.feature_schema
    with pytest.raises(DataError, match=r"column 'item_id' of log.csv mixes value types \(int \d+, str '"):
        read_local_log(tmp_path / "log.csv", schema)


@pytest.mark.parametrize("key, value", [
    ("model.params.model_params.loss_type", "XE"),
    ("acceleration.model.acceleration_config.transformer_block.pff_block.act_fn", "swish"),
    ("acceleration.model.acceleration_config.head", "int4_head"),
    ("model.params.training_params.precision", "fp8"),
])
def test_unknown_choices_name_the_key_and_the_allowed_values(tmp_path: Path, key: str, value: str):
    with pytest.raises(ConfigError, match=f"'{key}'.*'{value}' is not one of"):
        compose(tmp_path, "acceleration=none", f"{key}={value}")


def _model(head: str = "classification_head"):
    cfg = compose(Path("."), "acceleration=none", f"acceleration.model.acceleration_config.head={head}")
    model, _ = assembly.build_accelerated_model(cfg, n_items=50)
    return cfg, model


def _precision(used: str) -> Precision:
    """The run's precision decision (training/precision.py), as mode=train hands it to training."""
    return Precision(configured=used, used=used, why="configured")


def test_bf16_on_a_gpu_without_bf16_is_refused(monkeypatch):
    _, model = _model()
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *args: "Tesla V100")
    with pytest.raises(ConfigError, match="Tesla V100 has no bfloat16 support; use .*16-mixed"):
        assembly.check_device_support(_precision("bf16-mixed"), torch.device("cuda"), model)
    assembly.check_device_support(_precision("bf16-mixed"), torch.device("cpu"), model)  # CPUs run bf16 autocast


def test_fp16_autocast_without_cuda_is_refused():
    _, model = _model()
    with pytest.raises(ConfigError, match=r"16-mixed needs a CUDA device \(.*\); use .*bf16-mixed"):
        assembly.check_device_support(_precision("16-mixed"), torch.device("cpu"), model)


def test_switchback_head_without_int8_matmul_is_refused(monkeypatch):
    _, model = _model("switchback_head")
    assembly.check_device_support(_precision("32-true"), torch.device("cpu"), model)  # available here

    def no_int8(*args):
        raise RuntimeError("_int_mm is not implemented for this device")

    monkeypatch.setattr(torch, "_int_mm", no_int8)
    with pytest.raises(ConfigError, match=r"switchback_head needs int8 .*not implemented.*head=linear_head"):
        assembly.check_device_support(_precision("32-true"), torch.device("cpu"), model)
