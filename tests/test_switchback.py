"""SwitchBackLinear (int8 item head) against a float64 reference: values, gradients, dtypes, subsets."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from conftest import DEVICES
from replay_accelerated.acceleration.switchback import (
    SwitchBackLinear,
    TiedSwitchBackHead,
    int8_grad_input,
    int8_matmul,
    quantize_absmax,
)
from replay_accelerated.models.heads import LinearHead, TiedHead

FORWARD_TOL = 2e-2  # int8 on both operands: measured about 0.7e-2
GRAD_INPUT_TOL = 3e-2  # int8 grad_y and int8 weight columns: measured about 0.8e-2
GRAD_WEIGHT_TOL = 1e-3  # float32 "switch back" matmul: measured about 1e-7


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """||value - reference|| / ||reference||, in float64."""
    value, reference = value.double(), reference.double()
    return ((value - reference).norm() / reference.norm()).item()


def worst_column_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest relative error of a single output column (item) of [M, N] logits."""
    value, reference = value.double(), reference.double()
    return ((value - reference).norm(dim=0) / reference.norm(dim=0)).max().item()


def float64_reference(x, weight, bias, grad_y):
    """y = x @ W^T + b and its gradients, all in float64."""
    x = x.detach().double().requires_grad_()
    weight = weight.detach().double().requires_grad_()
    bias = bias.detach().double().requires_grad_()
    y = x @ weight.T + bias
    y.backward(grad_y.double())
    return y.detach(), x.grad, weight.grad, bias.grad


def check_against_reference(n_rows, hidden, n_items, device="cpu", fused=False):
    head = SwitchBackLinear(hidden, n_items).to(device)
    if fused:
        head.fuse()
    x = torch.randn(n_rows, hidden, device=device, requires_grad=True)
    grad_y = torch.randn(n_rows, n_items, device=device)
    y = head(x)
    y.backward(grad_y)
    y_ref, grad_x_ref, grad_w_ref, grad_b_ref = float64_reference(x, head.weight, head.bias, grad_y)

    assert y.shape == (n_rows, n_items) and y.dtype == torch.float32
    assert relative_error(y, y_ref) < FORWARD_TOL
    assert x.grad.dtype == torch.float32
    assert relative_error(x.grad, grad_x_ref) < GRAD_INPUT_TOL
    assert relative_error(head.weight.grad, grad_w_ref) < GRAD_WEIGHT_TOL
    torch.testing.assert_close(head.bias.grad.double(), grad_b_ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
def test_forward_and_gradients_match_float64(device: str):
    check_against_reference(n_rows=64, hidden=64, n_items=200, device=device)


def test_tied_head_matches_float64_and_sums_both_gradients_into_the_embedding():
    """TiedSwitchBackHead scores through int8 the embedding rows it shares; the embedding's gradient is the input
    side's (lookup) plus the head's (the float "switch back" product), as a tied nn.Linear would give."""
    n_items, hidden, rows = 150, 24, 40
    embedding = nn.Embedding(n_items + 2, hidden)  # + padding and mask rows, which the head does not score
    head = TiedSwitchBackHead.from_tied(TiedHead(embedding, n_items, bias=True))
    nn.init.normal_(head.bias)
    ids = torch.randint(0, n_items + 2, (rows,))
    grad_y = torch.randn(rows, n_items)
    x = embedding(ids) * 2.0  # [rows, H]: the input side of the tie
    y = head(x)
    y.backward(grad_y)

    table = embedding.weight.detach().double().requires_grad_()
    bias = head.bias.detach().double().requires_grad_()
    x_ref = table[ids] * 2.0
    y_ref = x_ref @ table[:n_items].T + bias
    y_ref.backward(grad_y.double())
    assert relative_error(y, y_ref) < FORWARD_TOL
    # The head's own part is float (grad_W); the input part through int8 grad_x, times 2 back into the rows looked up.
    assert relative_error(embedding.weight.grad, table.grad) < GRAD_INPUT_TOL
    torch.testing.assert_close(head.bias.grad.double(), bias.grad, rtol=1e-5, atol=1e-5)
    assert head.weight.shape == (n_items, hidden) and "int8" in repr(head)


@pytest.mark.parametrize("device", DEVICES)
def test_shapes_not_multiples_of_8(device: str):
    # 13 rows and 37, 101 not multiples of 8: every padding branch of int8_matmul runs
    # (CUDA's _int_mm needs K, N multiples of 8, and cuBLASLt on an H200 M a multiple of 32).
    check_against_reference(n_rows=13, hidden=37, n_items=101, device=device)


@pytest.mark.slow
def test_fused_steps_match_float64_and_eager():
    """torch.compile'd quantize / rescale steps: the reference's tolerances, and the eager layer's values
    and gradients up to float32 rounding, at two row counts (one compiled program, dynamic shapes) and
    under bf16 autocast."""
    for n_rows in (13, 70):
        check_against_reference(n_rows=n_rows, hidden=37, n_items=101, fused=True)

    eager = SwitchBackLinear(24, 90)
    fused = SwitchBackLinear.from_linear(eager).fuse()
    for n_rows, autocast in [(30, False), (41, False), (30, True)]:
        x = torch.randn(n_rows, 24, requires_grad=True)
        x_fused = x.detach().clone().requires_grad_()
        grad_y = torch.randn(n_rows, 90)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y, y_fused = eager(x), fused(x_fused)
        assert y_fused.dtype == y.dtype
        y.backward(grad_y.to(y.dtype))
        y_fused.backward(grad_y.to(y.dtype))
        assert relative_error(y_fused, y) < 1e-5
        assert relative_error(x_fused.grad, x.grad) < 1e-5
    for parameter, parameter_fused in [(eager.weight, fused.weight), (eager.bias, fused.bias)]:
        assert relative_error(parameter_fused.grad, parameter.grad) < 1e-5
    assert "int8, fused" in repr(fused)


def test_grad_input_of_a_softmax_loss_keeps_the_push_away_from_the_negatives():
    # dCE/dlogits = (p - onehot(target)) / rows over 3,000 items: row-wise int8 of the whole row rounds nearly
    # every p_j to 0 (its error was 97-100% of the negatives' part, measured); with the largest entry apart, 3.3%.
    n_items, hidden, rows = 3000, 32, 40
    weight = torch.randn(n_items, hidden)
    probabilities = torch.randn(rows, n_items).softmax(dim=1)  # [rows, n_items]
    targets = torch.randint(0, n_items, (rows,))
    grad_y = (probabilities - F.one_hot(targets, n_items)) / rows
    exact = grad_y.double() @ weight.double()  # [rows, hidden]
    push = probabilities.double() @ weight.double() / rows  # the negatives' part of it
    grad_x = int8_grad_input(grad_y, weight, torch.float32).double()
    assert relative_error(grad_x, exact) < 1e-2  # whole row int8: 3e-2
    assert ((grad_x - exact).norm() / push.norm()).item() < 0.06
    # More entries apart, less error; every entry apart is the float product.
    one_apart = int8_grad_input(grad_y, weight, torch.float32, float_entries=1).double()
    assert (grad_x - exact).norm() < (one_apart - exact).norm()
    every = int8_grad_input(grad_y, weight, torch.float32, float_entries=n_items).double()
    assert relative_error(every, exact) < 1e-5  # float32 sums of 3,000 terms


@pytest.mark.parametrize("device", DEVICES)
def test_int8_matmul_is_exact_on_odd_shapes(device: str):
    for m, k, n in [(1, 1, 1), (13, 37, 101), (17, 8, 8), (21, 40, 96), (48, 40, 104), (40, 24, 9)]:
        a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
        b = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device).t()  # [K, N], a transposed view
        expected = (a.cpu().long() @ b.cpu().long()).int()
        assert torch.equal(int8_matmul(a, b).cpu(), expected)


def test_every_item_keeps_its_own_weight_scale():
    """Rows 10**uniform(-3, 3) apart: each item (output column) must stay accurate on its own."""
    n_rows, hidden, n_items = 48, 64, 120
    row_magnitude = 10 ** torch.empty(n_items, 1).uniform_(-3, 3)  # [n_items, 1]
    head = SwitchBackLinear(hidden, n_items, bias=False)
    with torch.no_grad():
        head.weight.mul_(row_magnitude)
    x = torch.randn(n_rows, hidden)
    y_ref = x.double() @ head.weight.detach().double().T  # [M, n_items]

    assert worst_column_error(head(x).detach(), y_ref) < 3e-2

    # The check can fail: the int8 product dequantized with ONE weight scale (row 0's, the old bug),
    # or with a tensor-wise scale, loses the items whose rows are far from that scale.
    x_q, x_scale = quantize_absmax(x, dim=1)  # [M, H], [M]
    w_q, w_scale = quantize_absmax(head.weight.detach(), dim=1)  # [n, H], [n]
    acc = int8_matmul(x_q, w_q.t()).double()  # [M, n]
    row0_scale = acc * x_scale.double()[:, None] * w_scale.double()[0]
    assert worst_column_error(row0_scale, y_ref) > 3e-2

    w_flat = head.weight.detach().reshape(1, -1)  # one absmax over the whole weight
    w_q_global, w_scale_global = quantize_absmax(w_flat, dim=1)
    w_q_global = w_q_global.reshape(n_items, hidden)
    tensor_wise = int8_matmul(x_q, w_q_global.t()).double() * x_scale.double()[:, None] * w_scale_global.double()
    assert worst_column_error(tensor_wise, y_ref) > 3e-2


@pytest.mark.parametrize("device", DEVICES)
def test_autocast_bf16(device: str):
    hidden, n_items = 40, 90
    head = SwitchBackLinear(hidden, n_items).to(device)
    x = torch.randn(3, 7, hidden, device=device, requires_grad=True)  # float32 input, leading shape [3, 7]
    grad_y = torch.randn(3, 7, n_items, device=device)
    with torch.autocast(device, dtype=torch.bfloat16):
        y = head(x)
    assert y.dtype == torch.bfloat16 and y.shape == (3, 7, n_items)
    y.backward(grad_y.to(torch.bfloat16))
    y_ref, grad_x_ref, grad_w_ref, grad_b_ref = float64_reference(
        x.reshape(-1, hidden), head.weight, head.bias, grad_y.to(torch.bfloat16).reshape(-1, n_items))

    assert relative_error(y.reshape(-1, n_items), y_ref) < 2.5e-2  # int8 plus bf16 rounding (2**-9)
    assert x.grad.dtype == torch.float32 and head.weight.grad.dtype == torch.float32
    assert relative_error(x.grad.reshape(-1, hidden), grad_x_ref) < GRAD_INPUT_TOL
    assert relative_error(head.weight.grad, grad_w_ref) < GRAD_WEIGHT_TOL
    torch.testing.assert_close(head.bias.grad.double(), grad_b_ref, rtol=1e-5, atol=1e-5)

    # A bf16 input, outside autocast: bf16 logits, bf16 grad_input.
    x16 = torch.randn(20, hidden, dtype=torch.bfloat16, device=device, requires_grad=True)
    y16 = head(x16)
    assert y16.dtype == torch.bfloat16
    y16.sum().backward()
    assert x16.grad.dtype == torch.bfloat16
    y16_ref = x16.detach().double() @ head.weight.detach().double().T + head.bias.detach().double()
    assert relative_error(y16, y16_ref) < 2.5e-2


def test_candidate_subsets_agree_with_full_catalog():
    n_rows, hidden, n_items, k = 21, 32, 75, 11
    head = SwitchBackLinear(hidden, n_items)
    x = torch.randn(n_rows, hidden)
    full = head(x)  # [M, n_items]

    shared = torch.randperm(n_items)[:k]  # [K]
    # Per-item scales: the subset's int8 logits are exactly the full catalog's columns.
    torch.testing.assert_close(head(x, shared), full[:, shared], rtol=1e-6, atol=1e-6)

    per_row = torch.randint(0, n_items, (n_rows, k))  # [M, K]
    # Float fallback: equal to the full catalog's int8 columns within the int8 error ...
    assert relative_error(head(x, per_row), full.gather(1, per_row)) < FORWARD_TOL
    # ... and to the float64 logits much more tightly.
    reference = x.double() @ head.weight.detach().double().T + head.bias.detach().double()
    assert relative_error(head(x, per_row), reference.gather(1, per_row)) < 1e-5

    per_sequence = torch.randint(0, n_items, (3, k))  # [B, K] for hidden [B, W, H]: the float fallback too
    sequences = x.reshape(3, 7, hidden)
    expected = head(sequences, per_sequence[:, None, :].expand(3, 7, k))  # each position's row: per-row path
    torch.testing.assert_close(head(sequences, per_sequence), expected, rtol=1e-5, atol=1e-6)
    linear = LinearHead(hidden, n_items)  # models/heads.py's score_items, per sequence against per row
    per_row_of_sequences = linear(x, per_sequence.repeat_interleave(7, dim=0)).reshape(3, 7, k)
    torch.testing.assert_close(linear(sequences, per_sequence), per_row_of_sequences, rtol=1e-5, atol=1e-6)


def test_shared_candidates_backward_reaches_only_their_rows():
    head = SwitchBackLinear(16, 30)
    shared = torch.tensor([3, 7, 29])
    x = torch.randn(20, 16, requires_grad=True)
    head(x, shared).sum().backward()
    touched = head.weight.grad.abs().sum(dim=1) > 0  # [n_items]
    assert touched.nonzero().flatten().tolist() == shared.tolist()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_from_linear_preserves_the_function():
    hidden, n_items = 48, 130
    x = torch.randn(25, hidden)
    for linear in (nn.Linear(hidden, n_items), LinearHead(hidden, n_items), nn.Linear(hidden, n_items, bias=False)):
        head = SwitchBackLinear.from_linear(linear)
        assert torch.equal(head.weight, linear.weight)
        assert (head.bias is None) == (linear.bias is None)
        with torch.no_grad():
            assert relative_error(head(x), linear(x)) < FORWARD_TOL


def test_zero_rows_give_zero_logits_not_nan():
    head = SwitchBackLinear(24, 40, bias=False)
    x = torch.randn(30, 24, requires_grad=True)
    x_zeroed = x * (torch.arange(30) % 3 != 0).float()[:, None]  # every third row all zeros (padding tokens)
    y = head(x_zeroed)
    assert torch.isfinite(y).all() and torch.equal(y[::3], torch.zeros_like(y[::3]))
    y.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(head.weight.grad).all()


def test_repr():
    text = repr(SwitchBackLinear(256, 18345))
    assert "SwitchBackLinear(" in text and "int8" in text
    assert text == "SwitchBackLinear(in_features=256, out_features=18345, int8)"
    assert "bias=False" in repr(SwitchBackLinear(8, 9, bias=False))


def test_initialisation_like_nn_linear():
    head = SwitchBackLinear(64, 500)
    bound = 1 / 64 ** 0.5
    assert head.weight.abs().max() <= bound and head.bias.abs().max() <= bound
    assert head.weight.std().item() == pytest.approx(bound / 3 ** 0.5, rel=0.1)  # uniform(-bound, bound)


@pytest.mark.slow
def test_the_head_benchmark_times_every_head_and_they_agree():
    from replay_accelerated.benchmarks.head import measure

    rows = measure(n_items=90, hidden=24, rows=30, repetitions=2)
    steps = {row["what"]: row for row in rows if row["what"].endswith("forward+backward")}
    assert list(steps) == [f"{name} forward+backward" for name in
                           ("linear_fp32", "linear_bf16_autocast", "switchback_eager", "switchback_fused")]
    assert steps["linear_fp32 forward+backward"]["speed_up_vs_linear_fp32"] == 1.0
    assert steps["switchback_eager forward+backward"]["relative_error_vs_linear_fp32"] < FORWARD_TOL
    assert steps["switchback_fused forward+backward"]["relative_error_vs_linear_fp32"] < FORWARD_TOL
    assert all(row["median_ms"] > 0 for row in rows) and len(rows) == 7


def test_the_gradient_benchmark_finds_the_rowwise_int8_loss_and_the_fix(tmp_path, monkeypatch):
    import sys

    import numpy as np
    import pandas as pd

    from replay_accelerated.benchmarks import switchback_gradient

    rng = np.random.default_rng()
    users = np.repeat(np.arange(40), 30)
    events = pd.DataFrame({"user_id": users, "item_id": rng.integers(0, 2000, len(users)),
                           "timestamp": np.arange(len(users))})
    events.to_parquet(tmp_path / "ratings.parquet")
    monkeypatch.setattr(sys, "argv", ["switchback_gradient", f"data={tmp_path / 'ratings.parquet'}",
                                      "steps=[0,1]", f"out={tmp_path / 'out'}"])
    switchback_gradient.main()
    table = pd.read_csv(tmp_path / "out" / "switchback_gradient.csv").set_index(["step", "product"])
    for step in (0, 1):
        assert table.loc[(step, "int8_rowwise"), "error_vs_push"] > 0.5  # the push is lost
        assert table.loc[(step, "int8_1_largest_apart"), "error_vs_push"] < 0.1
        assert table.loc[(step, "int8_64_largest_apart"), "error_vs_push"] < 0.1
        assert table.loc[(step, "fp32"), "cosine"] > 0.9999
