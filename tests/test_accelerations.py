"""Accelerations swap the configured modules of both models through one mechanism and say so."""

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from replay_accelerated.acceleration.apply import ACTIVATIONS, acceleration_settings, apply_accelerations, format_changes
from replay_accelerated.acceleration.switchback import SwitchBackLinear, TiedSwitchBackHead
from replay_accelerated.config import Acceleration
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.heads import LinearHead, TiedHead
from replay_accelerated.models.transformer import FeedForward

N_ITEMS = 53


def _model(cls):
    return cls(n_items=N_ITEMS, max_seq_len=10, hidden_size=16, block_count=2, head_count=2, dropout_rate=0.0)


def _acceleration(**settings):
    """An `acceleration` config node as Hydra would compose it (only the given keys set)."""
    config = OmegaConf.create({"model": {"acceleration_config": settings}})
    return OmegaConf.merge(OmegaConf.structured(Acceleration), config)


@pytest.mark.parametrize("cls", [Bert4Rec, SasRec])
@pytest.mark.parametrize("act_fn, expected", [("selu", nn.SELU), ("silu", nn.SiLU), ("relu", nn.ReLU),
                                              ("gelu_pytorch_tanh", nn.GELU)])
def test_activation_is_swapped_in_every_feed_forward(cls, act_fn, expected):
    model = _model(cls)
    changes = apply_accelerations(model, _acceleration(transformer_block={"pff_block": {"act_fn": act_fn}}))
    feed_forwards = [m for m in model.modules() if isinstance(m, FeedForward)]
    assert len(feed_forwards) == 2 and all(isinstance(m.activation, expected) for m in feed_forwards)
    own_activation = repr(_model(cls).blocks[0].feed_forward.activation) == repr(ACTIVATIONS[act_fn]())  # SASRec's ReLU
    swapped = [] if own_activation else ["blocks.0.feed_forward.activation", "blocks.1.feed_forward.activation"]
    assert [c.module for c in changes] == swapped
    assert own_activation or repr(feed_forwards[0].activation) in format_changes(changes)
    with torch.no_grad():  # the swapped activation is really used in the forward pass
        block, x = feed_forwards[0], torch.randn(2, 3, 16)
        torch.testing.assert_close(block(x), block.down(ACTIVATIONS[act_fn]()(block.up(x))))
    if act_fn == "gelu_pytorch_tanh":
        assert feed_forwards[0].activation.approximate == "tanh"


@pytest.mark.parametrize("cls", [Bert4Rec, SasRec])
def test_switchback_head_keeps_the_weights_the_tie_and_the_checkpoint_keys(cls):
    model = _model(cls)
    weight, keys = model.head.weight.detach().clone(), set(model.state_dict())
    changes = apply_accelerations(model, _acceleration(head="switchback_head"))
    kind = TiedSwitchBackHead if cls is SasRec else SwitchBackLinear  # SASRec's head is tied (RePlay's)
    assert isinstance(model.head, kind)
    torch.testing.assert_close(model.head.weight.detach(), weight)
    assert set(model.state_dict()) == keys  # the same model: only the head's arithmetic changed
    assert changes[0].module == "head" and kind.__name__ in changes[0].after and "int8" in changes[0].after
    assert kind.__name__ in repr(model)
    if cls is SasRec:  # the tie is kept: the head reads the input embedding itself, and its gradient reaches it
        assert model.head.item_embedding is model.item_embedding
        model.head(torch.randn(3, 16)).sum().backward()
        assert model.item_embedding.weight.grad is not None


def test_the_reference_projects_spelling_is_the_same_head():
    # `head: swichback_head` (the reference project's configs) is accepted and handed on as switchback_head.
    assert acceleration_settings(_acceleration(head="swichback_head")).head == "switchback_head"
    model = _model(Bert4Rec)
    changes = apply_accelerations(model, _acceleration(head="swichback_head"))
    assert isinstance(model.head, SwitchBackLinear) and changes[0].after.startswith("SwitchBackLinear")


def test_tied_head_then_switchback_on_bert4rec():
    model = _model(Bert4Rec)
    changes = apply_accelerations(model, _acceleration(tied_head=True, head="switchback_head"))
    assert isinstance(model.head, TiedSwitchBackHead) and model.head.bias is not None
    assert model.head.item_embedding is model.item_embedding
    assert changes[0].before.startswith("LinearHead") and changes[0].after.startswith("TiedSwitchBackHead")


def test_tied_head_and_linear_head():
    model = _model(Bert4Rec)
    assert apply_accelerations(model, _acceleration(head="linear_head")) == []  # already nn.Linear
    assert isinstance(model.head, LinearHead)
    changes = apply_accelerations(model, _acceleration(tied_head=True))
    assert isinstance(model.head, TiedHead) and changes[0].after.startswith("TiedHead")


def test_sasrec_keeps_its_own_tied_head_and_relu_unless_told_otherwise():
    model = _model(SasRec)
    head = model.head
    assert apply_accelerations(model, _acceleration(tied_head=True, head="linear_head")) == []  # tied already
    assert model.head is head and head.bias is None
    assert apply_accelerations(model, _acceleration(transformer_block={"pff_block": {"act_fn": "relu"}})) == []
    changes = apply_accelerations(model, _acceleration(transformer_block={"pff_block": {"act_fn": "gelu"}}))
    assert [c.before for c in changes] == ["ReLU()"] * len(model.blocks)


def test_dtype_casts_every_parameter():
    model = _model(Bert4Rec)
    changes = apply_accelerations(model, _acceleration(dtype="bf16"))
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert changes[-1].after == "torch.bfloat16"


def test_no_acceleration_and_partial_configs_change_nothing_unnamed():
    model = _model(Bert4Rec)
    assert apply_accelerations(model, None) == []
    assert format_changes([]).startswith("Accelerations: none")
    # A config naming only the head leaves everything else at its default.
    changes = apply_accelerations(model, _acceleration(head="switchback_head"))
    assert [c.module for c in changes] == ["head"]
    assert all(isinstance(m.activation, nn.GELU) for m in model.modules() if isinstance(m, FeedForward))
