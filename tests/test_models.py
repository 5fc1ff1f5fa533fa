"""The shared transformer, both models' training examples, and the loss, against slow references."""

import math

import pytest
import torch
import torch.nn.functional as F

from replay_accelerated.losses import CrossEntropyLoss
from replay_accelerated.losses.targets import target_capacity
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.heads import LinearHead, TiedHead
from replay_accelerated.models.transformer import SelfAttention
from replay_accelerated.training.batches import TrainingExample
from replay_accelerated.training.module import RecommenderModule

N_ITEMS, MAX_LEN, HIDDEN = 37, 12, 16


def _model(cls, **kwargs):
    return cls(n_items=N_ITEMS, max_seq_len=MAX_LEN, hidden_size=HIDDEN, block_count=2, head_count=2,
               dropout_rate=0.1, **kwargs)


def _left_padded(lengths: list[int], width: int, pad_id: int = N_ITEMS) -> torch.Tensor:
    rows = torch.full((len(lengths), width), pad_id)
    for row, length in enumerate(lengths):
        rows[row, width - length:] = torch.randint(0, N_ITEMS, (length,))
    return rows


def _reference_attention(attention: SelfAttention, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out with loops, in float64."""
    weight, bias = attention.qkv.weight.double(), attention.qkv.bias.double()
    x = x.double()
    batch, length, hidden = x.shape
    heads, size = attention.head_count, hidden // attention.head_count
    out = torch.zeros(batch, length, hidden, dtype=torch.float64)
    for b in range(batch):
        qkv = x[b] @ weight.T + bias  # [L, 3H]
        for h in range(heads):
            q = qkv[:, h * size:(h + 1) * size]
            k = qkv[:, hidden + h * size:hidden + (h + 1) * size]
            v = qkv[:, 2 * hidden + h * size:2 * hidden + (h + 1) * size]
            for i in range(length):
                logits = torch.stack([q[i] @ k[j] / math.sqrt(size) for j in range(length)])
                logits = logits.masked_fill(~allowed[b, 0, i], float("-inf"))
                out[b, i, h * size:(h + 1) * size] = torch.softmax(logits, 0) @ v
    return out @ attention.out.weight.double().T + attention.out.bias.double()


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_slow_reference_values_and_gradients(causal):
    attention = SelfAttention(HIDDEN, head_count=4, dropout_rate=0.0).eval()
    x = torch.randn(3, 7, HIDDEN, requires_grad=True)
    allowed = torch.rand(3, 1, 7, 7) < 0.6
    if causal:
        allowed &= torch.ones(7, 7, dtype=torch.bool).tril()
    allowed |= torch.eye(7, dtype=torch.bool)
    fast = attention(x, allowed)
    x64 = x.detach().double().requires_grad_()
    slow = _reference_attention(attention, x64, allowed)
    torch.testing.assert_close(fast.double(), slow, rtol=1e-4, atol=1e-5)
    upstream = torch.randn_like(fast)
    (grad_fast,) = torch.autograd.grad(fast, x, upstream)
    (grad_slow,) = torch.autograd.grad(slow, x64, upstream.double())
    torch.testing.assert_close(grad_fast.double(), grad_slow, rtol=1e-4, atol=1e-5)


def test_training_attention_on_a_cpu_is_sdpa_with_our_dropout():
    # Training on a CPU with dropout runs the attention written out (SelfAttention.math_attention): without the
    # dropout itself it must equal SDPA, fully masked queries (zeros) included; with it, drop weights at the rate.
    attention = SelfAttention(HIDDEN, head_count=4, dropout_rate=0.1)
    x = torch.randn(3, 7, HIDDEN, requires_grad=True)
    allowed = torch.rand(3, 1, 7, 7) < 0.5
    allowed[0, 0, 2] = False  # a query with no key
    sdpa = attention.eval()(x, allowed)
    attention.train().weights_dropout.p = 0.0  # the math path, its dropout off
    written_out = attention(x, allowed)
    torch.testing.assert_close(written_out, sdpa, rtol=1e-5, atol=1e-6)
    upstream = torch.randn_like(sdpa)
    for grad, sdpa_grad in zip(torch.autograd.grad(written_out, x, upstream), torch.autograd.grad(sdpa, x, upstream)):
        torch.testing.assert_close(grad, sdpa_grad, rtol=1e-5, atol=1e-6)
    attention.weights_dropout.p = 0.1
    q = k = torch.randn(2, 4, 64, 8)
    every_key = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    weights_seen = attention.math_attention(q, k, torch.eye(64).expand(2, 4, 64, 64), every_key)  # v = I: the weights
    dropped = (weights_seen == 0).float().mean().item()  # each weight is positive unless dropped
    assert 0.08 < dropped < 0.12


def _randomized(model):
    """Every parameter random, biases and norms included: a padding key would then never look like no key."""
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.5)
    return model


@pytest.mark.parametrize("cls", [Bert4Rec, SasRec])
def test_padding_never_changes_an_output(cls):
    """Each sequence gives the same outputs padded in a batch as alone without any padding."""
    model = _randomized(_model(cls)).eval()
    lengths = [3, 12, 7, 1]
    items = _left_padded(lengths, MAX_LEN)
    with torch.no_grad():
        padded = model(items)  # [4, MAX_LEN, H]
        for row, length in enumerate(lengths):
            alone = model(items[row:row + 1, MAX_LEN - length:])  # [1, length, H]
            torch.testing.assert_close(padded[row, MAX_LEN - length:], alone[0])


def test_sasrec_is_causal_and_bert4rec_is_not():
    items = _left_padded([10, 10], MAX_LEN)
    changed = items.clone()
    changed[:, -1] = (items[:, -1] + 1) % N_ITEMS  # change the newest item only
    with torch.no_grad():
        sasrec, bert = _model(SasRec).eval(), _model(Bert4Rec).eval()
        torch.testing.assert_close(sasrec(items)[:, :-1], sasrec(changed)[:, :-1])
        assert not torch.allclose(bert(items)[:, -3], bert(changed)[:, -3])


def test_trimmed_batches_give_the_same_outputs():
    """Batches are cut to their longest sequence; positions count from the right, so nothing changes."""
    model = _model(SasRec).eval()
    items = _left_padded([4, 6], MAX_LEN)
    with torch.no_grad():
        torch.testing.assert_close(model(items)[:, -6:], model(items[:, -6:]))


def test_bert4rec_masks_only_items_at_the_configured_rate():
    torch.manual_seed(0)
    model = _model(Bert4Rec, mask_prob=0.15, masking="at_least_one")
    sequences = _left_padded(torch.randint(2, MAX_LEN + 2, (4000,)).tolist(), MAX_LEN + 1)
    inputs, labels, target_mask = model.training_example(sequences)
    items = sequences[:, 1:]
    masked = inputs == model.mask_id
    assert torch.equal(masked, target_mask)  # a target exactly where the input is masked
    assert not (masked & (items == N_ITEMS)).any()  # padding is never masked
    assert torch.equal(labels[masked], items[masked])  # targets are the hidden items
    assert torch.equal(inputs[~masked], items[~masked])
    assert masked.any(dim=1).all()  # every sequence has a target
    rate = masked.sum() / (items != N_ITEMS).sum()
    assert 0.15 <= rate <= 0.22  # 0.15 plus the forced newest item of sequences with no mask


def _per_sample_masking(items: list[int], mask_prob: float, generator: torch.Generator) -> list[bool]:
    """The slow reference: RePlay's per-sample masking of one sequence, item by item in Python."""
    masked = [torch.rand(1, generator=generator).item() < mask_prob for _ in items]
    if not any(masked):
        masked[-1] = True  # every sequence teaches something: the newest item
    if all(masked) and len(items) > 1:
        masked[-2] = False  # and keeps something to read
    return masked


def test_on_device_masking_has_the_statistics_of_per_sample_masking():
    """masking="at_least_one" (RePlay's own rule is tested against RePlay in test_masking.py)."""
    mask_prob = 0.2
    model = _model(Bert4Rec, mask_prob=mask_prob, masking="at_least_one")
    lengths = torch.randint(1, MAX_LEN + 1, (3000,))  # fresh lengths every run
    sequences = _left_padded(lengths.tolist(), MAX_LEN + 1)
    _, _, on_device = model.training_example(sequences)  # [U, MAX_LEN]
    generator = torch.Generator().manual_seed(int(torch.randint(0, 2**31, ())))
    reference = torch.zeros_like(on_device)
    for user, length in enumerate(lengths.tolist()):
        reference[user, MAX_LEN - length:] = torch.tensor(_per_sample_masking([0] * length, mask_prob, generator))

    is_item = sequences[:, 1:] != N_ITEMS
    assert not (on_device & ~is_item).any()  # no padding masked
    # Mask rate over all items, and for short and long sequences separately (forced masks weigh on short ones).
    for rows in (lengths <= 3, lengths > 3, torch.ones_like(lengths, dtype=torch.bool)):
        rate = on_device[rows].sum() / is_item[rows].sum()
        expected = reference[rows].sum() / is_item[rows].sum()
        assert abs(rate - expected) < 0.02, (rate, expected)
    # The newest position (where prediction puts its mask) is masked as often as in the reference.
    newest, newest_reference = on_device[:, -1].float().mean(), reference[:, -1].float().mean()
    assert abs(newest - newest_reference) < 0.04, (newest, newest_reference)
    assert on_device.any(dim=1).all()


def test_bert4rec_predicts_from_a_mask_after_the_history():
    model = _model(Bert4Rec)
    history = _left_padded([3, MAX_LEN], MAX_LEN)
    inputs = model.prediction_inputs(history)
    assert torch.equal(inputs[:, -1], torch.full((2,), model.mask_id))
    assert torch.equal(inputs[:, :-1], history[:, 1:])  # a full window gives up its oldest item
    # A narrower history keeps all its items: a user as long as the width loses nothing.
    narrow = history[:, -5:]
    inputs = model.prediction_inputs(narrow)
    assert inputs.shape == (2, 6) and torch.equal(inputs[:, :-1], narrow)


@pytest.mark.parametrize("masking", ["replay", "at_least_one"])
def test_bert4rec_trains_on_the_newest_max_seq_len_items_of_any_batch_width(masking):
    """Batches are [B, W + 1] wide; BERT4Rec drops the oldest column only when W + 1 > max_seq_len."""
    model = _model(Bert4Rec, masking=masking)
    for width in (3, 8, MAX_LEN, MAX_LEN + 1):
        sequences = _left_padded([width, 2], width)  # a user as long as the batch is wide
        inputs, labels, target_mask = model.training_example(sequences)
        kept = min(width, MAX_LEN)
        assert inputs.shape == labels.shape == target_mask.shape == (2, kept)
        assert torch.equal(torch.where(target_mask, labels, inputs), sequences[:, -kept:])


def test_sasrec_targets_are_next_items_wherever_the_next_position_holds_an_item():
    model = _model(SasRec)
    sequences = _left_padded([2, 5, MAX_LEN + 1], MAX_LEN + 1)
    inputs, labels, target_mask = model.training_example(sequences)
    for row in range(3):  # a target wherever the next position holds an item, the first item included
        for t in range(MAX_LEN):
            if sequences[row, t + 1] == N_ITEMS:
                assert not target_mask[row, t]
            else:
                assert target_mask[row, t] and labels[row, t] == sequences[row, t + 1]


def test_cross_entropy_matches_float64_reference_with_head_gradients():
    head = LinearHead(HIDDEN, N_ITEMS)
    hidden = torch.randn(4, 5, HIDDEN, requires_grad=True)
    labels = torch.randint(0, N_ITEMS, (4, 5))
    target_mask = torch.rand(4, 5) < 0.5
    loss = CrossEntropyLoss()(hidden, labels, target_mask, head)
    grads = torch.autograd.grad(loss, [hidden, head.weight, head.bias])
    # Labels at positions without a target do not matter.
    other_labels = torch.where(target_mask, labels, torch.randint(0, N_ITEMS, (4, 5)))
    torch.testing.assert_close(CrossEntropyLoss()(hidden, other_labels, target_mask, head), loss)

    targets = labels[target_mask]
    hidden64 = hidden.detach()[target_mask].double().requires_grad_()
    weight64 = head.weight.detach().double().requires_grad_()
    bias64 = head.bias.detach().double().requires_grad_()
    logits = hidden64 @ weight64.T + bias64
    reference = -(logits.gather(1, targets[:, None]).squeeze(1) - torch.logsumexp(logits, 1)).mean()
    reference_grads = torch.autograd.grad(reference, [hidden64, weight64, bias64])
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0][target_mask].double(), reference_grads[0], rtol=1e-4, atol=1e-6)
    assert (grads[0][~target_mask] == 0).all()
    for fast, slow in zip(grads[1:], reference_grads[1:]):
        torch.testing.assert_close(fast.double(), slow, rtol=1e-4, atol=1e-6)


def _example(model, sequences: torch.Tensor) -> TrainingExample:
    """The training example the loader makes of `sequences` (training/batches.py)."""
    inputs, labels, target_mask = model.training_example(sequences, torch.Generator().manual_seed(2))
    return TrainingExample(inputs, labels, target_mask, target_capacity(int(target_mask.sum())))


@pytest.mark.parametrize("cls", [Bert4Rec, SasRec])
def test_training_step_loss_is_cross_entropy_over_target_positions_only(cls):
    model = _model(cls).eval()  # no dropout, so two forward passes agree
    module = RecommenderModule(model, CrossEntropyLoss(), learning_rate=1e-3, weight_decay=0.0, ks=[10])
    module.log = lambda *args, **kwargs: None  # no trainer attached
    sequences = _left_padded([3, 9, MAX_LEN + 1], MAX_LEN + 1)
    example = _example(model, sequences)
    loss = module.training_step(example, 0)
    inputs, labels, target_mask, _ = example
    assert not target_mask[labels == N_ITEMS].any()  # padding is never a target
    logits = F.linear(model(inputs), model.head.weight, model.head.bias).double()  # the slow way: every position
    per_position = -torch.log_softmax(logits, dim=-1).gather(2, labels[..., None]).squeeze(2)
    reference = per_position[target_mask].mean()
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-6)

    # With length-bucketed batches every target weighs the same: the batch loss is the sum over its
    # targets divided by the average number of targets per batch.
    module.targets_per_batch = 7.5
    weighted = module.training_step(example, 0)
    torch.testing.assert_close(weighted.double(), per_position[target_mask].sum() / 7.5, rtol=1e-5, atol=1e-6)


def test_a_batch_without_targets_gives_a_zero_loss_not_nan():
    model = _model(Bert4Rec).train()
    module = RecommenderModule(model, CrossEntropyLoss(), learning_rate=1e-3, weight_decay=0.0, ks=[10])
    module.log = lambda *args, **kwargs: None  # no trainer attached
    model.training_example = lambda sequences, generator: (sequences[:, 1:], torch.zeros_like(sequences[:, 1:]),
                                                           torch.zeros_like(sequences[:, 1:], dtype=torch.bool))
    loss = module.training_step(_example(model, _left_padded([1, 2], MAX_LEN + 1)), 0)
    loss.backward()
    assert loss.item() == 0.0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_tied_head_scores_with_the_item_embeddings_and_trains_them():
    model = _model(SasRec)
    model.head = TiedHead(model.item_embedding, N_ITEMS)
    hidden = torch.randn(5, HIDDEN)
    weight = model.item_embedding.weight[:N_ITEMS]
    torch.testing.assert_close(model.head(hidden), hidden @ weight.T + model.head.bias)
    model.head(hidden).sum().backward()
    assert model.item_embedding.weight.grad[:N_ITEMS].abs().sum() > 0
    assert model.item_embedding.weight.grad[N_ITEMS:].abs().sum() == 0  # padding and mask are never scored


def test_heads_score_candidate_subsets_like_the_full_catalog():
    embedding = torch.nn.Embedding(N_ITEMS + 2, HIDDEN)
    for head in (LinearHead(HIDDEN, N_ITEMS), TiedHead(embedding, N_ITEMS), TiedHead(embedding, N_ITEMS, bias=False)):
        hidden = torch.randn(6, HIDDEN)
        full = head(hidden)  # [6, n_items]
        shared = torch.randint(0, N_ITEMS, (9,))
        per_row = torch.randint(0, N_ITEMS, (6, 4))
        torch.testing.assert_close(head(hidden, shared), full[:, shared])
        torch.testing.assert_close(head(hidden, per_row), full.gather(1, per_row))
