"""Training with two processes (Lightning DDP, gloo on CPU) learns like one process with the same
total batch, and validates over every validation user, not one process's share."""

import json
from pathlib import Path

import pytest

from conftest import TINY_SYNTHETIC, run_main

RUN = [*TINY_SYNTHETIC, "model.params.training_params.max_epochs=4", "trainer.accelerator=cpu",
       "env.OMP_NUM_THREADS=1"]


@pytest.mark.slow  # see pyproject: the default suite stays under 6 minutes on 2 cores
def test_two_processes_reach_the_validation_ndcg_of_one(tmp_path: Path):
    runs = {}
    for name, overrides in {"one": ["model.params.training_params.batch_size=64", "trainer.devices=1"],
                            "two": ["model.params.training_params.batch_size=32", "trainer.devices=2",
                                    "trainer.strategy=ddp"]}.items():
        home = tmp_path / name
        home.mkdir()
        result = run_main(home, *RUN, *overrides)
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = json.loads((home / "results" / "bert4rec_synthetic" / "run.json").read_text())
    one, two = runs["one"], runs["two"]
    # The NDCG@10 logged while training two processes is that of all validation users: it equals
    # replay-rec's NDCG@10 of the best checkpoint, computed afterwards over the whole set.
    assert abs(two["best_validation_ndcg@10"] - two["validation_metrics"]["ndcg@10"]) < 1e-4
    assert abs(two["best_validation_ndcg@10"] - one["best_validation_ndcg@10"]) < 0.03, (two, one)
