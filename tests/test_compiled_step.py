"""The training step is one graph: model, loss and head trace with torch.compile(fullgraph=True), no graph
break and no value read from the device, for every model x loss x head; compiled, it computes what eager does."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch._inductor.config
from omegaconf import OmegaConf

from replay_accelerated.acceleration.switchback import SwitchBackLinear
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
    "switchback": lambda model: SwitchBackLinear.from_linear(LinearHead(HIDDEN, N_ITEMS)),
}
LOSS_PARAMS = {"loss_sample_count": 12, "n_buckets": 3, "bucket_size_x": 20, "bucket_size_y": 30}


def _module(model_class, loss_type: str, head: str) -> RecommenderModule:
    model = model_class(n_items=N_ITEMS, max_seq_len=MAX_LEN, hidden_size=HIDDEN, block_count=2, head_count=2,
                        dropout_rate=0.1)
    model.head = HEADS[head](model)
    params = OmegaConf.merge(OmegaConf.structured(ModelParams), {"loss_type": loss_type, **LOSS_PARAMS})
    loss = build_loss(params, torch.randint(1, 20, (N_ITEMS,)))
    return RecommenderModule(model, loss, learning_rate=1e-3, weight_decay=0.0, ks=[10], targets_per_batch=9.0)


def _examples(model, count: int = 3) -> list:
    lengths = np.random.randint(1, 2 * MAX_LEN, size=40)
    events = pd.DataFrame({"user_id": np.repeat(np.arange(len(lengths)), lengths),
                           "item_id": np.random.randint(0, N_ITEMS, lengths.sum())})
    sequences = UserSequences.from_events(events, ItemVocabulary.fit(events))
    loader = training_loader(sequences, MAX_LEN, model.pad_id, model.training_example, 8, 0,
                             seed=np.random.randint(1000), length_bucketing=True)
    return list(loader)[:count]


def _loss_and_gradients(step, module: RecommenderModule, example, seed: int):
    torch.manual_seed(seed)  # dropout and negative samples
    module.zero_grad(set_to_none=True)
    loss = step(example)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in module.parameters() if p.grad is not None]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("loss_type", LOSSES)
@pytest.mark.parametrize("model_class", [Bert4Rec, SasRec])
def test_the_training_step_traces_as_one_graph(model_class, loss_type: str, head: str):
    torch._dynamo.reset()
    module = _module(model_class, loss_type, head)
    traced = torch.compile(module.step_loss, fullgraph=True, backend="eager")  # raises at any graph break
    for example in _examples(module.model, count=2):  # two shapes: the second makes the graph dynamic
        seed = np.random.randint(1 << 30)
        eager_loss, eager_grads = _loss_and_gradients(module.step_loss, module, example, seed)
        traced_loss, traced_grads = _loss_and_gradients(traced, module, example, seed)
        torch.testing.assert_close(traced_loss, eager_loss, rtol=1e-5, atol=1e-6)
        for traced_grad, eager_grad in zip(traced_grads, eager_grads, strict=True):
            torch.testing.assert_close(traced_grad, eager_grad, rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # inductor compiles C++ for each graph: seconds per combination
@pytest.mark.parametrize("model_class, loss_type, head", [(Bert4Rec, "CE", "linear"), (SasRec, "CE_sampled", "tied"),
                                                          (Bert4Rec, "CCE", "switchback")])
@torch._inductor.config.patch(fallback_random=True)  # eager's dropout draws, to compare
def test_the_compiled_step_computes_what_eager_does(model_class, loss_type: str, head: str):
    torch._dynamo.reset()
    module = _module(model_class, loss_type, head)
    compiled = torch.compile(module.step_loss, fullgraph=True)  # what acceleration...compile=true trains with
    for example in _examples(module.model, count=4):  # several shapes: the graph turns dynamic after the first
        seed = np.random.randint(1 << 30)
        eager_loss, eager_grads = _loss_and_gradients(module.step_loss, module, example, seed)
        compiled_loss, compiled_grads = _loss_and_gradients(compiled, module, example, seed)
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-4, atol=1e-5)
        for compiled_grad, eager_grad in zip(compiled_grads, eager_grads, strict=True):
            torch.testing.assert_close(compiled_grad, eager_grad, rtol=1e-3, atol=1e-5)
