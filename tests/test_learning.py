"""Accelerated training still learns: every loss, activation, head, precision and preset beats popularity.

Tiny in-process runs on the synthetic data (a few epochs each). The exhaustive
pairwise sweep of all options belongs to the benchmark, not here.
"""

from pathlib import Path

import pytest
import torch

from conftest import SHARED_DATA, TINY_SYNTHETIC, compose
from replay_accelerated.losses import LOSSES as REGISTERED
from replay_accelerated.modes.train import train

MODELS = ["bert4rec_synthetic", "sasrec_synthetic"]
ACCELERATION = "acceleration.model.acceleration_config"
MODEL_PARAMS = "model.params.model_params"
# Sampled BCE through SASRec's tied head learns more slowly (0.41 NDCG@10 after 16 epochs, under popularity after 8);
# gBCE is as slow.
SLOW_LEARNERS = {"BCE", "gBCE"}


def _loss_overrides(name: str) -> list[str]:
    """Every registered loss, trained with what its entry asks for (losses/__init__.py): its parameters' small
    values, 30 negatives where it samples (CE and CCE score the catalog unless told otherwise)."""
    loss = REGISTERED[name]
    overrides = [f"{MODEL_PARAMS}.loss_type={name}"]
    overrides += [f"{MODEL_PARAMS}.loss_sample_count=30"] if loss.items == "sampled" else []
    overrides += [f"{MODEL_PARAMS}.{key}={value}" for key, value in loss.parameters.items()]
    if name in SLOW_LEARNERS:
        overrides += ["model.params.training_params.max_epochs=16", "model.params.training_params.patience=16"]
    return overrides


LOSSES = [_loss_overrides(name) for name in REGISTERED]  # CE, the registry's first, runs in the default suite
LOSSES.append([*_loss_overrides("CE_sampled"), f"{MODEL_PARAMS}.negative_sampling_strategy=popularity"])
LAYERS = [
    ["model.params.training_params.precision=bf16-mixed"],
    *[["acceleration=none", f"{ACCELERATION}.transformer_block.pff_block.act_fn={act}"]
      for act in ("gelu", "gelu_pytorch_tanh", "selu", "silu", "relu")],
    *[["acceleration=none", f"{ACCELERATION}.head={head}"]
      for head in ("classification_head", "linear_head", "switchback_head")],
    # BERT4Rec's tied head is still in its noisy start at 8 epochs (0.110 to 0.181 NDCG@10 over seeds 42-45, popularity
    # 0.116), and at 0.35 to 0.38 after 16.
    ["acceleration=none", "model.params.training_params.max_epochs=16", "model.params.training_params.patience=16",
     f"{ACCELERATION}.tied_head=true"],
    ["acceleration=none", f"{ACCELERATION}.dtype=bf16"],
    ["model.params.training_params.precision=32"],
]


# The default suite trains the first entry of each list (plain CE) for both models; the rest of the
# matrix is `slow` (pyproject). Every loss and layer is also checked against a slow reference in
# test_losses.py, test_switchback.py and test_accelerations.py, which always run.
def _matrix(entries: list[list[str]]) -> list:
    return [pytest.param(entry, marks=[] if index == 0 else [pytest.mark.slow]) for index, entry in enumerate(entries)]


def _learns(home: Path, *overrides: str, config_name: str = "config") -> None:
    summary = train(compose(home, *TINY_SYNTHETIC, *overrides, config_name=config_name))
    ndcg, popularity = summary["validation_metrics"]["ndcg@10"], summary["validation_popularity_ndcg@10"]
    assert ndcg > popularity, (overrides, ndcg, popularity)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("loss", _matrix(LOSSES), ids=lambda o: " ".join(x.split("=")[-1] for x in o))
def test_every_loss_learns(tmp_path: Path, model: str, loss: list[str]):
    _learns(tmp_path, f"model={model}", *loss)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("layers", _matrix(LAYERS), ids=lambda o: o[-1].split(".")[-1])
def test_every_layer_and_precision_option_learns_with_ce(tmp_path: Path, model: str, layers: list[str]):
    _learns(tmp_path, f"model={model}", *layers)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed needs a CUDA device (Lightning has no CPU fp16 AMP)")
@pytest.mark.parametrize("model", MODELS)
def test_fp16_mixed_precision_learns(tmp_path: Path, model: str):
    _learns(tmp_path, f"model={model}", "model.params.training_params.precision=16-mixed")


@pytest.mark.parametrize("preset", ["config_ml20_swichback", "config_ml20_accelerate"])
def test_reference_presets_learn(tmp_path: Path, preset: str):
    # The presets' layers on the synthetic data: only the dataset and model sizes are replaced.
    _learns(tmp_path, "dataset=synthetic", "model=bert4rec_synthetic", config_name=preset)


ML_100K = SHARED_DATA / "ml-100k_ratings.parquet"


@pytest.mark.slow
@pytest.mark.skipif(not ML_100K.is_file(), reason="shared MovieLens-100K not present")
@pytest.mark.parametrize(("loss", "beats_popularity"), [("CE_sampled", True), ("gBCE", False)])
def test_sasrec_with_256_sampled_negatives_learns_on_movielens(tmp_path: Path, loss: str, beats_popularity: bool):
    # One set of negatives for the whole batch (our first rule) made SASRec's validation fall after its first epoch on
    # the partial MovieLens-1M (the bench measures that: docs/benchmarks/cpu_ml1m_sasrec_issue25). On MovieLens-100K the
    # old rule failed only mildly (0.019, 0.044, 0.042 at max_seq_len 128, where negatives per sequence gave 0.040,
    # 0.051, 0.049 and CE 0.041, 0.054, 0.062), so this checks that both sampled losses learn where they are stable.
    # gBCE rises more slowly: at its third epoch it was just below popularity (0.034 against 0.035, measured).
    summary = train(compose(
        tmp_path, "dataset=local", f"dataset.path={ML_100K}", "dataset.preprocess.protocol=leave_one_out",
        "model=sasrec_local", "model.params.model_params.max_seq_len=50", "model.params.training_params.max_epochs=3",
        f"model.params.model_params.loss_type={loss}", "model.params.model_params.loss_sample_count=256",
        "model.params.training_params.precision=32-true", "metrics.types=[ndcg]", "metrics.ks=[10]",
        "trainer.progress_bar=false"))
    # It rises over the three epochs and never falls by more than validation's noise (one run read 0.0394, 0.0393,
    # 0.0623: 0.4% down, then up 58%); the broken rule fell from its first epoch for good.
    ndcg = [epoch["ndcg@10"] for epoch in summary["validation_history"]]
    assert len(ndcg) == 3 and ndcg[2] > 1.2 * ndcg[0] and ndcg[1] > 0.95 * ndcg[0], ndcg
    if beats_popularity:
        assert ndcg[2] > summary["validation_popularity_ndcg@10"], (ndcg, summary["validation_popularity_ndcg@10"])
