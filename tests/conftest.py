import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch

from replay_accelerated.config import CONFIG_DIR

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

# Small and quick, still big enough for a clear sequential signal.
FAST_SYNTHETIC = [
    "dataset.generator.n_users=2000",
    "dataset.generator.n_items=200",
    "dataset.generator.mean_length=25",
    "model.params.model_params.max_seq_len=30",
    "model.params.model_params.hidden_size=32",
    "model.params.training_params.embedding_dim=32",
    "model.params.training_params.batch_size=32",
    "model.params.training_params.learning_rate=0.005",
    "model.params.training_params.max_epochs=8",
    # Learning takes off after a plateau of a few epochs whose length is seed noise: early stopping
    # with the config's patience of 3 could stop on the plateau.
    "model.params.training_params.patience=8",
    "metrics.ks=[1,10,20]",
    "trainer.progress_bar=false",
]


# Device-parametrized tests run on the CPU everywhere and on CUDA where there is a GPU (marked `cuda`).
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="needs a CUDA device")])]

# Tests train in fp32 whatever the machine (the default, `auto`, picks bf16 where it is native); a
# test's own precision override comes later and wins.
PINNED_PRECISION = "model.params.training_params.precision=32-true"


def run_main(home: Path, *overrides: str, config_name: str | None = None) -> subprocess.CompletedProcess:
    """Run `python main.py` like a user would, with all outputs under `home`, in fp32 unless told otherwise."""
    flags, overrides = _split_flags(overrides)
    if config_name:
        flags += ["--config-name", config_name]
    command = [sys.executable, str(ROOT / "main.py"), *flags, PINNED_PRECISION, *overrides]
    env = {**os.environ, "REPLAY_ACCELERATED_HOME": str(home), "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, cwd=home, env=env, capture_output=True, text=True, timeout=600)


def _split_flags(args) -> tuple[list[str], list[str]]:
    """Hydra's own flags (--config-dir DIR, ...), which come before any override, and the overrides."""
    flags, overrides = [], list(args)
    while overrides and overrides[0].startswith("--"):
        flags, overrides = [*flags, *overrides[:2]], overrides[2:]
    return flags, overrides


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


@pytest.fixture
def main_in_process(home: Path, monkeypatch, capsys):
    """`run_main` in this process (no interpreter start): for commands that stop at the config check."""
    from replay_accelerated import cli

    def run(*args: str) -> subprocess.CompletedProcess:
        flags, overrides = _split_flags(args)
        monkeypatch.chdir(home)
        monkeypatch.setenv("REPLAY_ACCELERATED_HOME", str(home))
        monkeypatch.setattr(sys, "argv", [str(ROOT / "main.py"), *flags, PINNED_PRECISION, *overrides])
        try:
            cli.main()
            status = 0
        except SystemExit as exit:
            status = exit.code
        captured = capsys.readouterr()
        return subprocess.CompletedProcess(args, status, captured.out, captured.err)

    return run


@pytest.fixture
def server(tmp_path: Path):
    """A FileServer (file_server.py) on 127.0.0.1 serving `tmp_path/served`."""
    from file_server import FileServer

    root = tmp_path / "served"
    root.mkdir()
    httpd = FileServer(root)
    # A short poll interval lets shutdown() return quickly instead of after 0.5 s.
    thread = threading.Thread(target=httpd.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join()


# Tiny and fast, for many in-process training runs: still a clear sequential signal.
TINY_SYNTHETIC = [
    "dataset.generator.n_users=1000",
    "dataset.generator.n_items=120",
    "dataset.generator.n_clusters=10",
    "dataset.generator.mean_length=20",
    "dataset.generator.max_length=60",
    "model.params.model_params.max_seq_len=20",
    "model.params.model_params.hidden_size=32",
    "model.params.training_params.embedding_dim=32",
    "model.params.training_params.batch_size=32",
    "model.params.training_params.learning_rate=0.005",
    "model.params.training_params.max_epochs=8",
    "model.params.training_params.patience=8",  # sampled losses start noisily; let them finish
    "metrics.ks=[10]",
    "metrics.types=[ndcg]",
    "trainer.progress_bar=false",
]


def trained_home(tmp_path_factory, name: str, *overrides: str) -> Path:
    """A folder in which `python main.py` trained with `overrides` (for module fixtures that share one trained model)."""
    home = tmp_path_factory.mktemp(name)
    result = run_main(home, *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    return home


def compose(home: Path, *overrides: str, config_name: str = "config"):
    """The validated config `python main.py` would run, with outputs under `home` (fp32 unless told otherwise)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from replay_accelerated.config import ConfigOrigin
    from replay_accelerated.validation import validate

    os.environ["REPLAY_ACCELERATED_HOME"] = str(home)
    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = hydra_compose(config_name, overrides=[PINNED_PRECISION, *overrides])
    return validate(cfg, ConfigOrigin())


def replay_sequential_dataset(users, n_items: int):
    """RePlay's PandasSequentialDataset of our UserSequences `users` (item feature "item_id", `n_items` items):
    what its own per-sample training datasets read, to compare their targets with ours."""
    import pandas as pd
    from replay.data import FeatureHint, FeatureSource, FeatureType
    from replay.data.nn import PandasSequentialDataset, TensorFeatureInfo, TensorFeatureSource, TensorSchema

    schema = TensorSchema(TensorFeatureInfo(
        name="item_id", feature_type=FeatureType.CATEGORICAL, is_seq=True, feature_hint=FeatureHint.ITEM_ID,
        feature_sources=[TensorFeatureSource(FeatureSource.INTERACTIONS, "item")], cardinality=n_items,
        embedding_dim=8))
    frame = pd.DataFrame({"user": users.user_ids, "item_id": [users.items[users.offsets[u]:users.offsets[u + 1]]
                                                               for u in range(len(users))]})
    return PandasSequentialDataset(schema, "user", "item_id", frame)
