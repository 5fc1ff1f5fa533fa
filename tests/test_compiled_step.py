"""The training step is one graph: model, loss and head trace with torch.compile(fullgraph=True), no graph
break and no value read from the device, for every model x loss x head; compiled, it computes what eager does;
on a GPU no step waits for the device (CUDA's sync debug mode raises at any synchronisation)."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch._inductor.config
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import OmegaConf

from replay_accelerated.acceleration.apply import HEADS as HEADS_OF_ACCELERATIONS
from replay_accelerated.config import ModelParams
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.losses import LOSSES, build_loss
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.heads import LinearHead, TiedHead
from replay_accelerated.training.batches import training_loader
from replay_accelerated.training.module import RecommenderModule

N_ITEMS, MAX_LEN, HIDDEN = 90, 16, 16
HEADS = {
    "linear": lambda model: LinearHead(HIDDEN, N_ITEMS),
    "tied": lambda model: TiedHead(model.item_embedding, N_ITEMS),
    "switchback": lambda model: HEADS_OF_ACCELERATIONS["switchback_head"](model),  # SASRec's keeps its tie
    "item_features": lambda model: model.tied_head(bias=True),  # each item's row: id and features (below)
}
FEATURES = {"genres": {"type": "categorical_list", "cardinality": 7, "width": 3, "values": list(range(7))},
            "brand": {"type": "categorical", "cardinality": 4, "width": 1, "values": list(range(4))},
            "price": {"type": "numerical", "cardinality": 0, "width": 1, "values": []}}
LOSS_PARAMS = {"loss_sample_count": 12, "n_buckets": 3, "bucket_size_x": 20, "bucket_size_y": 30}


def _module(model_class, loss_type: str, head: str) -> RecommenderModule:
    features = {"item_features": FEATURES, "item_feature_head": "item_representation"} if head == "item_features" else {}
    model = model_class(n_items=N_ITEMS, max_seq_len=MAX_LEN, hidden_size=HIDDEN, block_count=2, head_count=2,
                        dropout_rate=0.1, **features)
    for feature in [] if model.item_features is None else model.item_features.features:  # random values
        values = feature.codes if hasattr(feature, "codes") else feature.numbers
        values.copy_(torch.randint(0, feature.cardinality + 1, values.shape) if hasattr(feature, "codes")
                     else torch.randn(values.shape))
    model.head = HEADS[head](model)
    params = OmegaConf.merge(OmegaConf.structured(ModelParams), {"loss_type": loss_type, **LOSS_PARAMS})
    loss = build_loss(params, torch.randint(1, 20, (N_ITEMS,)))
    return RecommenderModule(model, loss, learning_rate=1e-3, weight_decay=0.0, ks=[10], targets_per_batch=9.0)


def _examples(model, count: int = 3) -> list:
    return [plan.to("cpu") for plan in _plans(model, count)]


def _plans(model, count: int) -> list:
    lengths = np.random.randint(1, 2 * MAX_LEN, size=40)
    events = pd.DataFrame({"user_id": np.repeat(np.arange(len(lengths)), lengths),
                           "item_id": np.random.randint(0, N_ITEMS, lengths.sum())})
    sequences = UserSequences.from_events(events, ItemVocabulary.fit(events))
    loader = training_loader(sequences, MAX_LEN, model.pad_id, model.training_example, 8,
                             seed=np.random.randint(1000), length_bucketing=True)
    return list(loader)[:count]


def _loss_and_gradients(step, module: RecommenderModule, example, seed: int):
    torch.manual_seed(seed)  # dropout and negative samples
    module.zero_grad(set_to_none=True)
    loss = step(example)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]


def _assert_compiled_step_is_eager_step(model_class, loss_type: str, head: str, examples: int, backend: str,
                                        rtol: float, atol: float) -> None:
    """torch.compile(step_loss, fullgraph=True) over `examples` batches of several widths (the graph turns dynamic
    after the first change) gives eager's loss and gradients; fullgraph raises at any graph break."""
    torch._dynamo.reset()
    module = _module(model_class, loss_type, head)
    compiled = torch.compile(module.step_loss, fullgraph=True, backend=backend)
    for example in _examples(module.model, count=examples):
        seed = np.random.randint(1 << 30)
        eager_loss, eager_grads = _loss_and_gradients(module.step_loss, module, example, seed)
        compiled_loss, compiled_grads = _loss_and_gradients(compiled, module, example, seed)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=rtol, atol=atol)
        for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
            torch.testing.assert_close(compiled_grad, eager_grad, rtol=10 * rtol, atol=atol)


@pytest.mark.parametrize("head", [head for head in HEADS if head != "item_features"])
@pytest.mark.parametrize("loss_type", LOSSES)
@pytest.mark.parametrize("model_class", [Bert4Rec, SasRec])
def test_the_training_step_traces_as_one_graph(model_class, loss_type: str, head: str):
    # backend="eager": dynamo's tracing without inductor's code generation, cheap enough for every combination
    _assert_compiled_step_is_eager_step(model_class, loss_type, head, examples=2, backend="eager", rtol=1e-5,
                                        atol=1e-6)


@pytest.mark.parametrize("loss_type", ["CE", "CE_sampled", "CCE"])  # the full weight, candidates, weight chunks
@pytest.mark.parametrize("model_class", [Bert4Rec, SasRec])
def test_the_training_step_with_item_features_traces_as_one_graph(model_class, loss_type: str):
    _assert_compiled_step_is_eager_step(model_class, loss_type, "item_features", examples=2, backend="eager",
                                        rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # inductor compiles C++ for each graph: seconds per combination
@pytest.mark.parametrize("model_class, loss_type, head", [(Bert4Rec, "CE", "linear"), (SasRec, "CE_sampled", "tied"),
                                                          (Bert4Rec, "CCE", "switchback")])
@torch._inductor.config.patch(fallback_random=True)  # eager's dropout draws, to compare
def test_the_compiled_step_computes_what_eager_does(model_class, loss_type: str, head: str):
    # inductor, what acceleration...compile=true trains with: fused kernels round differently
    _assert_compiled_step_is_eager_step(model_class, loss_type, head, examples=4, backend="inductor", rtol=1e-4,
                                        atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("loss_type", LOSSES)
@pytest.mark.parametrize("model_class", [Bert4Rec, SasRec])
def test_no_training_step_waits_for_the_gpu(model_class, loss_type: str, head: str):
    module = _module(model_class, loss_type, head).cuda()
    optimizer = module.configure_optimizers()
    plans = _plans(module.model, count=4)

    def step(plan) -> None:  # the batch gathered on the GPU, as Lightning moves it, then the step
        module.training_step(move_data_to_device(plan, torch.device("cuda")), 0).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step(plans[0])  # first calls: CUDA context, cuBLAS handles, optimizer state, the sequences' copy
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for plan in plans[1:]:
            step(plan)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    module.check_loss_finite()  # the one read per epoch, outside the steps
