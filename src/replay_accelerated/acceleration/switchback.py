"""SwitchBack: an int8 linear layer for the item head (hidden [N, H] -> logits [N, n_items]).

After Wortsman et al. 2023, "Stable and low-precision training for large-scale vision-language
models". bitsandbytes 0.50 dropped its SwitchBack layer, so this is our own, in plain torch
(`torch._int_mm` for the int8 matmuls, no hand-written kernel), for CPU and CUDA. Written as is, each
quantize and rescale operation is one pass over memory; `SwitchBackLinear.fuse()` runs the same two
functions through torch.compile, which fuses them into a few kernels around the int8 product.

Shapes used below: M rows (tokens), K = in_features (hidden size H), N = out_features (items).

The three matmuls of a linear layer, and how each is done:

- forward   y [M, N]      = x [M, K] @ W^T      int8: x row-wise (a scale per token),
                                                      W row-wise (a scale per item / output feature);
- backward  grad_x [M, K] = grad_y [M, N] @ W   int8: grad_y row-wise (a scale per token) without
                                                      each row's 64 largest entries, added in float,
                                                      W column-wise (a scale per input feature);
- backward  grad_W [N, K] = grad_y^T @ x        in high precision (float32, or float64 for float64
                                                      weights). This is the "switch back": this
                                                      matmul sums over all M tokens, so int8 noise
                                                      would not average out, and it is where the paper
                                                      found int8 hurts training.

Each int8 matmul accumulates in int32 (exact), then is dequantized by the outer product of its two
scale vectors: out[m, n] = acc[m, n] * scale_a[m] * scale_b[n]. This is only right because each
scale vector has one entry per output row / column of the product. A previous version read a single
scale for a row-wise-quantized weight, so every output column was rescaled with row 0's maximum;
`tests/test_switchback.py` checks every output column separately so that bug cannot come back.

The largest entries of each grad_y row are kept apart, in float. Under a softmax loss a row of grad_y is
(p - onehot(target)) / rows: its absmax is the target's entry, about 1 / rows, and every item whose
probability is below 1/254 of it rounds to 0 in int8. With thousands of items that is nearly every
negative item (99.97% of the entries of a BERT4Rec batch over MovieLens-1M's items at initialisation), so
grad_x kept the target's pull and lost the push away from the negatives, sum_j p_j W_j: its error was 105% of
that push, and the head cost quality (NDCG@10 -36.8% against RePlay's best, docs/benchmarks/cpu_ml1m_bert4rec).
With the row's largest entry apart (its weight row added in float), the int8 scale follows the largest negative
instead: the error fell to 0.7% of the push at initialisation, but grew to 6-9% after 50 to 500 steps as training
sharpens the softmax and a few likely negatives set the scale for the rest. So FLOAT_ENTRIES = 64 entries per row
(the target and the 63 likeliest negatives) are multiplied with their weight rows in float (one embedding_bag,
no [M, 64, K] copy) and only the rest goes through int8 (benchmarks/switchback_gradient.py,
docs/benchmarks/cpu_switchback_gradient). Stochastic rounding, unbiased, left a noise of 320% of the push at
initialisation and 18% after 500 steps.

Backward weight quantization: column-wise (one absmax per input feature, over the N items), like the
"vector-wise" SwitchBack of bitsandbytes, rather than the paper's tensor-wise (one scale for all of
W). It costs one more [K] vector and is never less accurate than tensor-wise.

`torch._int_mm` shape constraints: on CPU (torch 2.13) any shape works and results are exact. On
CUDA torch checks M > 16 and K, N multiples of 8 (and a K > 0), and cuBLASLt on an H200 also wants M
a multiple of 32 (see int8_matmul). We always PAD with zeros (on both
devices, so the path the tests run on CPU is the one CUDA runs): zero padding is exact for an integer
matmul, because padded K entries add 0 * 0 to every dot product and padded rows / columns of the
result are sliced away. We pad after quantizing, so padding never touches a scale.

Candidate subsets (see `models/heads.py`):
- `item_ids` [K]: the same K items for every row. Row-wise weight scales are per item, so quantizing
  only the selected rows gives exactly the scales (and logits) of the full catalog; same int8 path.
- `item_ids` [N, K]: K items per row, or [B, K] per sequence for hidden [B, W, H]. torch has no batched
  int8 matmul, so these fall back, explicitly, to the plain float path of `score_items` (gathered float
  weights, bmm). These logits are float, not int8: they differ from the full-catalog int8 logits by the
  int8 error (about 1e-2 relative).
"""

import functools
import math
from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from replay_accelerated.acceleration.shapes import round_up
from replay_accelerated.models.heads import TiedHead, score_items

FLOAT_ENTRIES = 64  # per grad_y row, kept apart from int8 in the backward product (see the module docstring)
INT8_MAX = 127  # symmetric int8: [-127, 127]; -128 unused, so that q and -q are both representable
_TINY = torch.finfo(torch.float32).tiny  # smallest scale: an all-zero row gets q = 0, not 0 / 0 = NaN


def quantize_absmax(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric absmax int8 quantization of a 2-D `x`, one scale per slice reduced over `dim`.

    `dim=1`: row-wise, x [R, C] -> q int8 [R, C], scale float32 [R], x[r, c] ~ q[r, c] * scale[r].
    `dim=0`: column-wise, x [R, C] -> q int8 [R, C], scale float32 [C], x[r, c] ~ q[r, c] * scale[c].
    """
    x = x.float()  # quantize from float32 whatever came in: bf16 arithmetic here would add its own rounding
    absmax = x.abs().amax(dim=dim, keepdim=True)  # [R, 1] or [1, C]
    scale = (absmax / INT8_MAX).clamp_min(_TINY)  # [R, 1] or [1, C]
    q = torch.round(x / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8)  # [R, C]
    return q, scale.squeeze(dim)  # scale: [R] or [C]


def int8_matmul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Exact int8 matmul a [M, K] @ b [K, N] -> int32 [M, N], through `torch._int_mm`.

    Zero-pads to what CUDA's `_int_mm` accepts on every device, and slices the result back: K and N
    multiples of 8 (torch's check), M a multiple of 32 (torch checks only M > 16, but cuBLASLt on an
    H200 refused M = 17, 24, 40, 48... for N >= 32, and took every multiple of 32 from 32 to 256 with
    every K, N tested). Zero padding is exact for integers (see the module docstring).
    """
    m, k = a.shape  # a: [M, K]
    n = b.shape[1]  # b: [K, N]
    m_pad, k_pad, n_pad = round_up(m, 32), round_up(k, 8), round_up(n, 8)
    if (m_pad, k_pad) != (m, k):
        a = F.pad(a, (0, k_pad - k, 0, m_pad - m))  # [M_pad, K_pad], new rows / columns are 0
    if (k_pad, n_pad) != (k, n):
        b = F.pad(b, (0, n_pad - n, 0, k_pad - k))  # [K_pad, N_pad], new rows / columns are 0
    acc = torch._int_mm(a, b)  # int32 [M_pad, N_pad]: int32 cannot overflow, |sum| <= 127 * 127 * K
    return acc[:m, :n]  # int32 [M, N]


def int8_matmul_problem(device: torch.device) -> str | None:
    """Why int8 matmul cannot run on `device` (None when it can): one tiny product, checked once per run."""
    try:
        ones = torch.ones(8, 8, dtype=torch.int8, device=device)
        int8_matmul(ones, ones)
    except (RuntimeError, NotImplementedError) as error:
        return str(error).splitlines()[0]
    return None


def dequantize(acc: torch.Tensor, row_scale: torch.Tensor, col_scale: torch.Tensor) -> torch.Tensor:
    """acc int32 [R, C] * outer(row_scale [R], col_scale [C]) -> float32 [R, C]."""
    out = acc.float()  # [R, C], a fresh tensor, so the in-place products below are safe
    out.mul_(row_scale[:, None])  # scale of row r of the left operand
    out.mul_(col_scale[None, :])  # scale of column c of the right operand
    return out


def int8_logits(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                out_dtype: torch.dtype) -> torch.Tensor:
    """The forward product x [M, K] @ W^T [K, N] + b [N] through int8, returned as `out_dtype` [M, N]."""
    x_q, x_scale = quantize_absmax(x, dim=1)  # int8 [M, K], float32 [M]: a scale per token
    w_q, w_scale = quantize_absmax(weight, dim=1)  # int8 [N, K], float32 [N]: a scale per item
    acc = int8_matmul(x_q, w_q.t())  # int32 [M, N]
    y = dequantize(acc, x_scale, w_scale)  # float32 [M, N]: acc[m, n] * x_scale[m] * w_scale[n]
    if bias is not None:
        y.add_(bias.float())  # [N], broadcast over rows
    return y.to(out_dtype)


def int8_grad_input(grad_y: torch.Tensor, weight: torch.Tensor, out_dtype: torch.dtype,
                    float_entries: int = FLOAT_ENTRIES) -> torch.Tensor:
    """The backward product grad_y [M, N] @ W [N, K] through int8, each row's `float_entries` largest entries apart
    in float, returned as `out_dtype` [M, K] (see "The largest entries of each grad_y row" in the module docstring)."""
    grad_y = grad_y.float()
    kept = min(float_entries, grad_y.shape[1])
    columns = grad_y.abs().topk(kept, dim=1).indices  # [M, kept]: the target's and the likeliest negatives' columns
    largest = grad_y.gather(1, columns)  # [M, kept]
    rest = grad_y.scatter(1, columns, 0.0)  # [M, N]: the row without its largest entries
    g_q, g_scale = quantize_absmax(rest, dim=1)  # int8 [M, N], float32 [M]: per token
    w_q, w_scale = quantize_absmax(weight, dim=0)  # int8 [N, K], float32 [K]: per input feature
    acc = int8_matmul(g_q, w_q)  # int32 [M, K]
    grad_x = dequantize(acc, g_scale, w_scale)  # float32 [M, K]
    # sum_k largest[m, k] * W[columns[m, k]], without a [M, kept, K] copy of the weight rows.
    grad_x.add_(F.embedding_bag(columns, weight.float(), per_sample_weights=largest, mode="sum"))  # [M, K]
    return grad_x.to(out_dtype)


class Int8Steps(NamedTuple):
    """The two int8 products of a SwitchBack layer: run as written (eager), or fused by torch.compile."""

    logits: Callable[..., torch.Tensor]
    grad_input: Callable[..., torch.Tensor]


EAGER = Int8Steps(int8_logits, int8_grad_input)


@functools.cache
def fused_steps() -> Int8Steps:
    """The same functions through torch.compile: quantization (absmax, divide, round, cast) and the
    rescaling after the int32 product (two scale vectors, bias, output cast) become a few fused kernels
    around `_int_mm`, instead of a pass over memory per operation. Compiled once per process, with
    dynamic shapes (the number of target rows differs from batch to batch)."""
    return Int8Steps(torch.compile(int8_logits, dynamic=True), torch.compile(int8_grad_input, dynamic=True))


class SwitchBackMatmul(torch.autograd.Function):
    """y = x @ W^T + b with int8 forward and grad_x, high-precision grad_W (see the module docstring).

    Inputs: x [M, K] (any float dtype), weight [N, K], bias [N] or None, out_dtype (the dtype of y),
    steps (`EAGER` or `fused_steps()`: the same arithmetic). All arithmetic is done explicitly in
    float32 / int8 / int32, with autocast switched off inside, so it does not depend on whether the
    caller runs under autocast; the caller picks `out_dtype`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                out_dtype: torch.dtype, steps: Int8Steps) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            y = steps.logits(x, weight, bias, out_dtype)  # [M, N]
        # Keep the input itself (in its own, high precision) for grad_W; the weight for grad_x.
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.bias_dtype = bias.dtype if bias is not None else None
        ctx.steps = steps
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y: torch.Tensor):
        x, weight = ctx.saved_tensors  # [M, K], [N, K]
        grad_x = grad_weight = grad_bias = None
        # float32, or float64 if the weight is float64: the precision of the "switch back" matmul.
        high = torch.promote_types(weight.dtype, torch.float32)
        # Backward may be called inside an autocast region; it must not turn the float matmul into bf16.
        with torch.autocast(grad_y.device.type, enabled=False):
            if ctx.needs_input_grad[0]:
                grad_x = ctx.steps.grad_input(grad_y, weight, x.dtype)  # [M, K]
            if ctx.needs_input_grad[1]:
                grad_weight = (grad_y.to(high).t() @ x.to(high)).to(weight.dtype)  # [N, K]
            if ctx.has_bias and ctx.needs_input_grad[2]:
                grad_bias = grad_y.to(high).sum(dim=0).to(ctx.bias_dtype)  # [N]
        return grad_x, grad_weight, grad_bias, None, None


def _output_dtype(x: torch.Tensor) -> torch.dtype:
    """What nn.Linear would return: the autocast dtype inside an autocast region, else x's dtype."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    return x.dtype


class SwitchBackScoring:
    """What every SwitchBack head shares: `forward` scores through int8 the float master weight that the head's
    `weight` [n_items, H] and `bias` [n_items] or None give (its own parameters, or the tied item embeddings),
    re-quantized on every call, and `fuse()` runs the int8 steps through torch.compile.

    `forward(hidden [..., H], item_ids=None)`:
    - `item_ids=None`: [..., n_items], int8 path;
    - `item_ids` [K]: [..., K], int8 path on the selected weight rows (same logits as the full catalog);
    - `item_ids` [..., K] (leading shape as hidden's), or [B, K] for hidden [B, W, H] (per sequence): float
      fallback, see the module docstring.
    Output dtype: the autocast dtype under autocast, else hidden's dtype.
    """

    fused = False  # True: the int8 steps through torch.compile (`fuse`)

    def fuse(self):
        """Run the quantize and rescale steps through torch.compile (`fused_steps`); same results."""
        self.fused = True
        return self

    def _steps(self) -> Int8Steps:
        return fused_steps() if self.fused else EAGER

    def forward(self, hidden: torch.Tensor, item_ids: torch.Tensor | None = None) -> torch.Tensor:
        weight, bias = self.weight, self.bias  # [n_items, H], [n_items] or None (a tied weight: computed once)
        out_dtype = _output_dtype(hidden)
        lead = hidden.shape[:-1]  # leading shape [...]
        x = hidden.reshape(-1, weight.shape[1])  # [M, H]

        if item_ids is None:  # the whole catalog
            logits = SwitchBackMatmul.apply(x, weight, bias, out_dtype, self._steps())  # [M, n_items]
            return logits.reshape(*lead, weight.shape[0])

        if item_ids.dim() == 1:  # the same K candidates for every row: int8 on the selected rows
            rows = weight[item_ids]  # [K, H]; per-item scales do not depend on the other rows
            logits = SwitchBackMatmul.apply(x, rows, None if bias is None else bias[item_ids], out_dtype,
                                            self._steps())  # [M, K]
            return logits.reshape(*lead, item_ids.shape[0])

        # K candidates per row or per sequence: no batched int8 matmul in torch, so the float path of `score_items`.
        if hidden.dim() == 3 and item_ids.dim() == 2 and len(item_ids) == len(hidden):  # per sequence: [B, W, K]
            return score_items(hidden.to(weight.dtype), weight, bias, item_ids).to(out_dtype)
        if item_ids.shape[:-1] != lead:
            raise ValueError(f"item_ids {tuple(item_ids.shape)} must have hidden's leading shape {tuple(lead)}, "
                             "or [B, K] for hidden [B, W, H]")
        ids = item_ids.reshape(x.shape[0], -1)  # [M, K]
        logits = score_items(x.to(weight.dtype), weight, bias, ids)  # [M, K]
        return logits.to(out_dtype).reshape(item_ids.shape)

    def _int8_repr(self) -> str:
        return ", int8" + (", fused" if self.fused else "")


class SwitchBackLinear(SwitchBackScoring, nn.Module):
    """Item head / linear layer with SwitchBack int8 matmuls and its own weight; follows the head interface of
    `models.heads` (see SwitchBackScoring). `weight` [out_features, in_features] and `bias` [out_features] stay
    float parameters (the master copy), so optimizers and losses that read `head.weight` / `head.bias` (chunked
    cross-entropy, ...) see ordinary parameters.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features, **factory))  # [n_items, H]
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features, **factory))  # [n_items]
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The initialisation of nn.Linear."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            nn.init.uniform_(self.bias, -bound, bound)

    @classmethod
    def from_linear(cls, linear: nn.Module) -> "SwitchBackLinear":
        """A SwitchBackLinear with a copy of `linear.weight` [out, in] and `linear.bias` [out] (or None), for
        anything with those attributes (nn.Linear, LinearHead). A tied head keeps its tie: `TiedSwitchBackHead`."""
        weight = linear.weight.detach()  # [out, in]
        bias = getattr(linear, "bias", None)
        new = cls(weight.shape[1], weight.shape[0], bias=bias is not None,
                  device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            new.weight.copy_(weight)
            if bias is not None:
                new.bias.copy_(bias.detach())
        return new

    def extra_repr(self) -> str:
        bias = "" if self.bias is not None else ", bias=False"
        return f"in_features={self.in_features}, out_features={self.out_features}{bias}{self._int8_repr()}"


class TiedSwitchBackHead(SwitchBackScoring, TiedHead):
    """A tied head (the item embeddings, or the items' representations with features, as its weight; SASRec's,
    RePlay's) scored through SwitchBack's int8 products: the same parameters and checkpoint keys as the
    TiedHead it replaces, so the model stays the one it was, and only the head's arithmetic changes."""

    def extra_repr(self) -> str:
        return f"n_items={self.n_items}{'' if self.bias is not None else ', bias=False'}{self._int8_repr()}"
