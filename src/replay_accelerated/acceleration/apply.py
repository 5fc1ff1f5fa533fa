"""Apply the `acceleration` config to a built model, and say what changed.

One mechanism for both models: after `build_model`, the modules named by the config
are swapped in place, and every swap is reported as (module path, before, after), the
table that `mode=inspect` and every training run print:

    acceleration.model.acceleration_config:
      dtype: fp32 | bf16 | fp16               -> all parameters cast to this dtype
      transformer_block.pff_block.act_fn: null (the model's own: BERT4Rec GELU, SASRec ReLU)
                                          gelu | gelu_pytorch_tanh | selu | silu | relu
                                              -> the activation of every feed-forward block
      head: classification_head | linear_head -> the model's own head (BERT4Rec: nn.Linear,
                                                 SASRec: tied to the item embeddings, as RePlay)
            switchback_head                   -> the same head scored through SwitchBack's int8 products:
                                                 SwitchBackLinear (its own weight) or, for a tied
                                                 head, TiedSwitchBackHead (the tie kept)
      tied_head: true                         -> the item embeddings as the head's weight, plus a
                                                 bias (SASRec's head is tied already: no change);
                                                 applied before `head`, so SwitchBack keeps the tie
      compile: true                           -> the training step through torch.compile: model, loss
                                                 and backward as one graph (training/module.py), and a
                                                 SwitchBack head's quantize / rescale steps (fused kernels)

A missing key keeps its default (the reference project left attributes undefined).
"""

from dataclasses import dataclass

import torch
from omegaconf import OmegaConf
from torch import nn

from replay_accelerated.acceleration.switchback import SwitchBackLinear, SwitchBackScoring, TiedSwitchBackHead
from replay_accelerated.config import AccelerationConfig
from replay_accelerated.models.heads import TiedHead
from replay_accelerated.models.transformer import FeedForward, SequentialRecommender

ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "selu": nn.SELU,
    "silu": nn.SiLU,
    "relu": nn.ReLU,
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# `head` -> the item head it puts in place of the model's own (given the model).
HEADS = {
    "classification_head": lambda model: model.head,  # the model's own (the reference project's name)
    "linear_head": lambda model: model.head,  # the same: BERT4Rec's is an nn.Linear, SASRec's tied as RePlay's
    "switchback_head": lambda model: TiedSwitchBackHead.from_tied(model.head) if isinstance(model.head, TiedHead)
    else SwitchBackLinear.from_linear(model.head),
}
# The reference project spells SwitchBack "swichback"; its configs (`head: swichback_head`) run unchanged, and
# `acceleration_settings` hands the rest of the code the one name.
HEAD_ALIASES = {"swichback_head": "switchback_head"}


@dataclass
class Change:
    module: str
    before: str
    after: str


def acceleration_settings(acceleration) -> AccelerationConfig:
    """The `acceleration_config` of the config (null: no acceleration), with defaults filled in."""
    defaults = OmegaConf.structured(AccelerationConfig)
    if acceleration is None:
        return OmegaConf.to_object(defaults)
    settings = OmegaConf.to_object(OmegaConf.merge(defaults, acceleration.model.acceleration_config))
    settings.head = HEAD_ALIASES.get(settings.head, settings.head)
    return settings


def apply_accelerations(model: SequentialRecommender, acceleration) -> list[Change]:
    """Swap the configured modules of `model` in place; return what changed."""
    settings = acceleration_settings(acceleration)
    changes: list[Change] = []

    act_fn = settings.transformer_block.pff_block.act_fn
    for path, module in model.named_modules():
        if isinstance(module, FeedForward) and act_fn is not None:
            before, activation = repr(module.activation), ACTIVATIONS[act_fn]()
            if repr(activation) != before:
                module.activation = activation
                changes.append(Change(f"{path}.activation", before, repr(activation)))

    head = model.head
    if settings.tied_head and not isinstance(head, TiedHead):
        model.head = model.tied_head(bias=True)
    model.head = HEADS[settings.head](model)
    if settings.compile and isinstance(model.head, SwitchBackScoring):
        model.head.fuse()  # its quantize and rescale steps through torch.compile
    if model.head is not head:
        changes.append(Change("head", _short(head), _short(model.head)))

    if settings.compile:  # done by the training module, which holds the loss; reported here with the rest
        changes.append(Change("(training step)", "eager", "torch.compile: model, loss and backward as one graph"))

    dtype = DTYPES[settings.dtype]
    if dtype != torch.float32:
        model.to(dtype)
        changes.append(Change("(all parameters)", "torch.float32", str(dtype)))
    return changes


def format_changes(changes: list[Change]) -> str:
    """A plain-text table: module path, before, after (or a line saying nothing changed)."""
    if not changes:
        return "Accelerations: none (the model is as built)."
    rows = [("module", "before", "after")] + [(c.module, c.before, c.after) for c in changes]
    widths = [max(len(row[column]) for row in rows) for column in range(2)]
    lines = [f"{m:<{widths[0]}}  {b:<{widths[1]}}  -> {a}" for m, b, a in rows]
    return "Accelerations:\n" + "\n".join(lines)


def _short(module: nn.Module) -> str:
    """One-line repr of a module without its children (a tied head would print the embedding)."""
    return f"{type(module).__name__}({module.extra_repr()})" if module.extra_repr() else type(module).__name__
