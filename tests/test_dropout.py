"""The CPU dropout against what dropout must do: drop rate, unbiased output, gradient through the kept elements."""

import pytest
import torch

from replay_accelerated.models.dropout import Dropout, keep_mask


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_drop_rate_is_p_in_every_16_bit_lane(p):
    # 4 lanes per 64-bit random word: a bias in any one lane would show as a column of the view below.
    keep, keep_prob = keep_mask(torch.Size([400_000]), p, torch.device("cpu"))
    assert abs(keep_prob - (1 - p)) < 1 / 65536
    by_lane = keep.view(-1, 4).float().mean(dim=0)  # [4]
    tolerance = 5 * (p * (1 - p) / 100_000) ** 0.5  # 5 standard deviations of a lane's mean
    assert torch.all((by_lane - (1 - p)).abs() < tolerance), by_lane


def test_masks_differ_between_calls_and_follow_the_seed():
    shape = torch.Size([3, 7, 5])  # odd element count: the last random word is only partly used
    torch.manual_seed(1)
    first, _ = keep_mask(shape, 0.5, torch.device("cpu"))
    second, _ = keep_mask(shape, 0.5, torch.device("cpu"))
    torch.manual_seed(1)
    again, _ = keep_mask(shape, 0.5, torch.device("cpu"))
    assert first.shape == shape
    assert not torch.equal(first, second)
    assert torch.equal(first, again)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_output_and_gradient_are_inverted_dropout(dtype):
    p = 0.1  # 1 / 0.9 is not a bf16 number: a scale rounded to x's dtype (1.109375) would show
    dropout = Dropout(p).train()
    x = (torch.rand(64, 33, 48) + 0.5).to(dtype).requires_grad_()  # no zeros: kept elements are visible
    y = dropout(x)
    assert y.dtype == dtype
    kept = y != 0
    scale = 1 / (1 - round(p * 65536) / 65536)
    # Exactly the float32 product rounded once to x's dtype, for values and gradients.
    assert torch.equal(y[kept], (x[kept].float() * scale).to(dtype))
    assert abs(kept.float().mean().item() - (1 - p)) < 0.01
    # Unbiased: the mean over elements is kept (a large sample of independent drops).
    assert abs(y.float().mean().item() / x.float().mean().item() - 1) < 0.02

    upstream = torch.randn_like(y)
    y.backward(upstream)
    expected = torch.where(kept, (upstream.float() * scale).to(dtype), torch.zeros_like(upstream))
    assert torch.equal(x.grad, expected)


def test_identity_in_eval_mode_and_for_p_zero():
    x = torch.randn(4, 9)
    assert torch.equal(Dropout(0.5).eval()(x), x)
    assert torch.equal(Dropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.0)
