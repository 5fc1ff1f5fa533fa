"""The item head alone, forward + backward: nn.Linear against the SwitchBack head, eager and fused.

    python -m replay_accelerated.benchmarks.head out=docs/benchmarks/cpu_switchback_head

At the MovieLens-20M catalog (18,345 items, hidden 256) and two row counts: the targets of a BERT4Rec
batch (32 x 128 positions at 15%: 614 rows, what our CE computes) and every position of it (4,096 rows,
what RePlay's CE computes). Heads: `nn.Linear` in fp32 and under bf16 autocast, `SwitchBackLinear` as
written (eager) and with its quantize / rescale steps through torch.compile (`fuse`, what
`acceleration...compile=true` does to a SwitchBack head). Each step is the head's logits, then their
backward with a fixed random gradient (weight, bias and input gradients), as in training. Also the bare
matrix products on the head's shape: `torch._int_mm` (int8, int32 accumulation) against fp32 and bf16
`mm`, which says whether this machine's int8 units can pay at all. Writes head.csv and head.md to `out`.
"""

import statistics
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from replay_accelerated.acceleration.switchback import SwitchBackLinear
from replay_accelerated.benchmarks.render import write_measurements
from replay_accelerated.benchmarks.settings import parse_settings, setting
from replay_accelerated.benchmarks.timing import step_seconds
from replay_accelerated.training.measurements import cpu_flags

INT8_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")  # what a CPU's int8 matrix products run on


def median_ms(step, repetitions: int) -> float:
    return 1000 * statistics.median(step_seconds(step, repetitions, warmup=3))


def heads(n_items: int, hidden: int) -> dict:
    """name -> (head, autocast dtype or None); all with the same weights."""
    torch.manual_seed(0)
    linear = nn.Linear(hidden, n_items)
    return {
        "linear_fp32": (linear, None),
        "linear_bf16_autocast": (linear, torch.bfloat16),
        "switchback_eager": (SwitchBackLinear.from_linear(linear), None),
        "switchback_fused": (SwitchBackLinear.from_linear(linear).fuse(), None),
    }


def measure(n_items: int, hidden: int, rows: int, repetitions: int) -> list[dict]:
    """One row per head, plus the bare matrix products, at `rows` input rows."""
    x = torch.randn(rows, hidden, requires_grad=True)  # [M, H]
    grad_logits = torch.randn(rows, n_items)  # [M, n_items]
    results = []
    reference = None
    for name, (head, dtype) in heads(n_items, hidden).items():
        def step():
            head.zero_grad(set_to_none=True)
            x.grad = None
            with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                logits = head(x)  # [M, n_items]
            logits.backward(grad_logits.to(logits.dtype))
            return logits

        logits = step().detach().float()  # also compiles the fused head before timing
        reference = logits if reference is None else reference
        error = ((logits - reference).norm() / reference.norm()).item()  # against linear_fp32
        milliseconds = median_ms(step, repetitions)
        results.append({"rows": rows, "n_items": n_items, "hidden": hidden, "what": f"{name} forward+backward",
                        "median_ms": round(milliseconds, 3), "relative_error_vs_linear_fp32": round(error, 5)})
        print(results[-1], flush=True)

    a8 = torch.randint(-127, 128, (rows, hidden), dtype=torch.int8)  # [M, H]
    b8 = torch.randint(-127, 128, (hidden, n_items), dtype=torch.int8)  # [H, n_items]
    products = {
        "matmul int8 (_int_mm)": lambda: torch._int_mm(a8, b8),
        "matmul fp32": lambda a=a8.float(), b=b8.float(): a @ b,
        "matmul bf16": lambda a=a8.bfloat16(), b=b8.bfloat16(): a @ b,
    }
    for name, product in products.items():
        milliseconds = median_ms(product, repetitions)
        results.append({"rows": rows, "n_items": n_items, "hidden": hidden, "what": name,
                        "median_ms": round(milliseconds, 3),
                        "gflop_per_second": round(2 * rows * hidden * n_items / milliseconds / 1e6, 1)})
        print(results[-1], flush=True)
    base = next(row["median_ms"] for row in results if row["what"].startswith("linear_fp32"))
    for row in results:
        if row["what"].endswith("forward+backward"):
            row["speed_up_vs_linear_fp32"] = round(base / row["median_ms"], 2)
    return results


@dataclass
class HeadSettings:
    items: int = setting(18_345, "catalog size (MovieLens-20M's by default)")
    hidden: int = setting(256, "hidden size")
    rows: list[int] = setting([614, 4096], "target rows per step, one measurement each")
    repetitions: int = setting(20, "timed steps per measurement")
    out: Path = setting(Path("head"), "folder for head.csv and head.md")


def main() -> None:
    settings = parse_settings(HeadSettings, __doc__.splitlines()[0])
    rows = [row for count in settings.rows
            for row in measure(settings.items, settings.hidden, count, settings.repetitions)]
    write_measurements(rows, settings.out, "head", f"The item head alone: {settings.items:,} items, hidden "
                       f"{settings.hidden}", torch.device("cpu"),
                       f"int8 flags: {', '.join(cpu_flags(INT8_FLAGS)) or 'none'}. Medians of "
                       f"{settings.repetitions} steps after 3 warm-up steps (the first compiles the fused head); a "
                       "step is the logits and their backward.")


if __name__ == "__main__":
    main()
