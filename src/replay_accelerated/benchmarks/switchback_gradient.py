"""How well each way of computing the SwitchBack head's input gradient keeps the exact one, during training.

    python -m replay_accelerated.benchmarks.switchback_gradient data=ratings.parquet out=DIR

The head's backward product grad_x = grad_y @ W carries the whole loss signal to the transformer below
it. For a softmax head a row of grad_y is (p - onehot(target)) / rows: its largest entry is the target's,
about 1, and every item's probability below that absmax / 254 rounds to 0 when the row is quantized to int8
(acceleration/switchback.py), which with thousands of items is nearly every negative item.

This trains our BERT4Rec (the seed config's sizes, plain CE, fp32, an nn.Linear head) on the events of
`data` (user_id, item_id and timestamp columns; every event, no split: the batches are what matter) and, at
a few steps, takes the next batch's target rows and compares with the exact float64 grad_x:
- `int8_rowwise`: grad_y quantized per row to the nearest int8 (our SwitchBack until issue 25);
- `int8_stochastic`: per row, rounded up or down at random with the probabilities that make it unbiased;
- `int8_{k}_largest_apart` for each k of `float_entries` (default 1 and 64): each row's k largest entries kept
  apart in float, the rest int8 per row (k = 1, the target's entry: our first fix; k = 64: SwitchBack's
  `int8_grad_input` now);
- `bf16`: grad_y and W in bf16, accumulated in float32 (a bf16 matrix product);
- `fp32`: grad_y and W in float32.
Columns: the cosine between the product and the exact grad_x (all rows as one vector), the relative error
(Frobenius), the error relative to the negatives' part sum_j p_j W_j / rows (the target's pull dominates the
norm of grad_x, so the cosine hides the loss of the push away from the negatives), the share of grad_y's
entries that quantize to zero and the softmax mass they held (for the row-wise int8). Writes
switchback_gradient.csv and .md to `out` (settings: `--help`).
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from replay_accelerated.acceleration.switchback import (
    FLOAT_ENTRIES,
    INT8_MAX,
    dequantize,
    int8_grad_input,
    int8_matmul,
    quantize_absmax,
)
from replay_accelerated.benchmarks.render import write_measurements
from replay_accelerated.benchmarks.settings import parse_settings, setting
from replay_accelerated.config import ModelParams
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.losses import build_loss
from replay_accelerated.models import build_model
from replay_accelerated.training.batches import training_loader
from replay_accelerated.training.module import RecommenderModule


def stochastic_int8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise absmax int8 of x [R, C] (SwitchBack's scales) rounded at random, unbiased: E[q * scale] = x."""
    _, scale = quantize_absmax(x, dim=1)  # [R]
    q = torch.floor(x / scale[:, None] + torch.rand_like(x)).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)  # [R, C]
    return q, scale


def int8_product(q: torch.Tensor, scale: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """(q * scale[:, None]) @ weight through int8: q [M, N] int8, weight [N, K] quantized per column."""
    w_q, w_scale = quantize_absmax(weight, dim=0)  # int8 [N, K], [K]
    return dequantize(int8_matmul(q, w_q), scale, w_scale)  # [M, K]


def products(float_entries: list[int]) -> dict:
    """The products compared, by name: `int8_{k}_largest_apart` for each k of `float_entries`."""
    apart = {f"int8_{k}_largest_apart": functools.partial(int8_grad_input, out_dtype=torch.float32, float_entries=k)
             for k in float_entries}
    return {
        "int8_rowwise": lambda grad_y, weight: int8_product(*quantize_absmax(grad_y, dim=1), weight),
        "int8_stochastic": lambda grad_y, weight: int8_product(*stochastic_int8(grad_y), weight),
        **apart,
        "bf16": lambda grad_y, weight: (grad_y.bfloat16() @ weight.bfloat16()).float(),
        "fp32": lambda grad_y, weight: grad_y @ weight,
    }


def compare(module: RecommenderModule, example, step: int, compared: dict) -> list[dict]:
    """One row per product for the target rows of `example` (a TrainingExample)."""
    with torch.no_grad():
        hidden = module.model(example.inputs)[example.target_mask]  # [M, H]
        head = module.model.head
        logits = head(hidden).float()  # [M, N]
        targets = example.labels[example.target_mask]  # [M]
        probabilities = logits.softmax(dim=1)  # [M, N]
        grad_y = (probabilities - F.one_hot(targets, logits.shape[1])) / len(targets)  # dCE/dlogits
        weight = head.weight.detach().float()  # [N, H]
        exact = grad_y.double() @ weight.double()  # [M, H]
        # The negatives' push, sum_j p_j W_j / rows: the part that row-wise int8 loses (the target's pull is exact).
        push = probabilities.double() @ weight.double() / len(targets)  # [M, H]
        q, scale = quantize_absmax(grad_y, dim=1)
        zero = (q == 0) & (grad_y != 0)
        rows = []
        for name, product in compared.items():
            approx = product(grad_y, weight).double()
            rows.append({
                "step": step, "product": name, "target_rows": len(targets),
                "cosine": round(F.cosine_similarity(approx.flatten(), exact.flatten(), dim=0).item(), 5),
                "relative_error": round(((approx - exact).norm() / exact.norm()).item(), 5),
                "error_vs_push": round(((approx - exact).norm() / push.norm()).item(), 4),
                "zero_share": round(zero.float().mean().item(), 4),
                "zeroed_probability_mass": round((probabilities * zero).sum(dim=1).mean().item(), 4),
                "target_probability": round(probabilities.gather(1, targets[:, None]).mean().item(), 4),
            })
            print(rows[-1], flush=True)
    return rows


@dataclass
class GradientSettings:
    data: Path = setting("???", "parquet with user_id, item_id, timestamp (required)")
    steps: list[int] = setting([0, 50, 200, 500], "training steps after which the gradients are compared")
    float_entries: list[int] = setting([1, FLOAT_ENTRIES], "entries of each row kept apart in float, one product each")
    out: Path = setting(Path("switchback_gradient"), "folder for switchback_gradient.csv and .md")


def main() -> None:
    settings = parse_settings(GradientSettings, __doc__.splitlines()[0])
    torch.manual_seed(0)
    events = pd.read_parquet(settings.data, columns=["user_id", "item_id", "timestamp"])
    events = events.sort_values(["user_id", "timestamp"], kind="stable")
    vocabulary = ItemVocabulary.fit(events)
    sequences = UserSequences.from_events(events, vocabulary)
    params = ModelParams()  # the seed config: hidden 256, 2 blocks, max_seq_len 128, CE
    model = build_model("bert4rec", len(vocabulary), params)
    module = RecommenderModule(model, build_loss(params, None), 1e-3, 0.0, [10])
    optimizer = module.configure_optimizers()
    compared = products(settings.float_entries)
    rows, step, epoch = [], 0, 0
    while step <= max(settings.steps):
        loader = training_loader(sequences, params.max_seq_len, model.pad_id, model.training_example, 32, seed=epoch)
        for plan in loader:
            example = plan.to("cpu")
            if step in settings.steps:
                module.eval()
                rows += compare(module, example, step, compared)
                module.train()
            module.training_loss(example).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            if step > max(settings.steps):
                break
        epoch += 1
    write_measurements(rows, settings.out, "switchback_gradient", "The SwitchBack head's input gradient",
                       torch.device("cpu"),
                       f"BERT4Rec (hidden 256, 2 blocks, max_seq_len 128, batch 32), CE, fp32, Adam 1e-3, "
                       f"{len(vocabulary):,} items from {settings.data.name}; the target rows of the batch after "
                       "each listed step, against the float64 product.")


if __name__ == "__main__":
    main()
