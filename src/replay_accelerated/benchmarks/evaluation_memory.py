"""Evaluation memory against catalog size: ranking in item chunks keeps it flat.

    python -m replay_accelerated.benchmarks.evaluation_memory out=docs/benchmarks/cpu_evaluation_memory

For each catalog size and each `evaluation.item_chunk_size` (the default 65536, and null: the whole
catalog at once), a fresh process builds a SASRec of that catalog (hidden 256, max_seq_len 64, its head
tied to the item embeddings), gives 1,024 users random histories of 64 items, and ranks the catalog
for them with `evaluation.offline.recommend` (256 users a batch, seen items removed, top 100). It
records the peak memory during ranking minus the memory just before it (training/measurements.
TrainingMemory: peak RSS on a CPU, CUDA max allocated on a GPU) next to the model's weights and the
seconds it took. Writes evaluation_memory.csv and evaluation_memory.md to `out` (settings: `--help`).
"""

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from replay_accelerated.benchmarks.render import write_measurements
from replay_accelerated.benchmarks.settings import parse_settings, setting
from replay_accelerated.config import ModelParams
from replay_accelerated.data.pipeline import EvaluationUsers
from replay_accelerated.data.formats import ITEM, USER
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.evaluation.offline import recommend
from replay_accelerated.models import build_model
from replay_accelerated.training.measurements import TrainingMemory

USERS, WIDTH, HIDDEN, K = 1024, 64, 256, 100


def measure(n_items: int, item_chunk_size: int | None, device: torch.device) -> dict:
    """Rank `n_items` for USERS users in this process; what it took."""
    torch.manual_seed(0)
    model = build_model("sasrec", n_items, OmegaConf.structured(
        ModelParams(hidden_size=HIDDEN, max_seq_len=WIDTH, head_count=2))).to(device).eval()
    rng = np.random.default_rng(0)
    vocabulary = ItemVocabulary(np.arange(n_items))
    history = UserSequences.from_events(pd.DataFrame({USER: np.repeat(np.arange(USERS), WIDTH),
                                                      ITEM: rng.integers(0, n_items, USERS * WIDTH)}), vocabulary)
    truth = UserSequences.from_events(pd.DataFrame({USER: np.arange(USERS), ITEM: rng.integers(0, n_items, USERS)}),
                                      vocabulary)
    users = EvaluationUsers.from_splits(history, truth)
    weights_mb = sum(parameter.numel() * parameter.element_size() for parameter in model.parameters()) / 2**20
    memory = TrainingMemory(device)
    started = time.perf_counter()
    recommend(model.next_item_scores, users, vocabulary, K, WIDTH, device=device, item_chunk_size=item_chunk_size)
    seconds = time.perf_counter() - started
    return {"items": n_items, "item_chunk_size": item_chunk_size, "weights_mb": round(weights_mb, 1),
            "evaluation_memory_mb": memory.summary()["training_memory_mb"], "seconds": round(seconds, 2)}


@dataclass
class EvaluationMemorySettings:
    items: list[int] = setting([10_000, 100_000, 1_000_000], "catalog sizes")
    chunks: list[int] = setting([65536, 0], "evaluation.item_chunk_size values; 0: the whole catalog at once")
    out: Path = setting(Path("evaluation_memory"), "folder for evaluation_memory.csv and .md")
    one: list[int] = setting([], "internal: [items, chunk], one measurement printed as JSON (a child process)")


def main() -> None:
    settings = parse_settings(EvaluationMemorySettings, __doc__.splitlines()[0])
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if settings.one:
        n_items, chunk = settings.one
        print(json.dumps(measure(n_items, chunk or None, device)))
        return
    rows = []
    for n_items in settings.items:
        for chunk in settings.chunks:
            # A fresh process per measurement: memory freed by an earlier one would hide this one's peak.
            done = subprocess.run([sys.executable, "-m", "replay_accelerated.benchmarks.evaluation_memory",
                                   f"one=[{n_items},{chunk}]"], capture_output=True, text=True, check=True)
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    write_measurements(rows, settings.out, "evaluation_memory", "Evaluation memory against catalog size", device,
                       f"{USERS} users, histories of {WIDTH}, hidden {HIDDEN}, top {K}, 256 users a batch; "
                       "`evaluation_memory_mb`: peak during ranking minus memory before it; item_chunk_size empty: "
                       "the whole catalog at once.")


if __name__ == "__main__":
    main()
