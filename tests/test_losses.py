"""Every loss against a naive float64 reference (value and gradients), on fresh random data.

Seeds are set only to make a loss and its reference draw the same negatives or buckets.
"""

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from replay_accelerated.acceleration.shapes import coarse_size
from replay_accelerated.config import ModelParams
from replay_accelerated.errors import ConfigError
from replay_accelerated.losses import (
    LOSSES,
    BinaryCrossEntropyLoss,
    CrossEntropyLoss,
    CutCrossEntropyLoss,
    FullPositionsCrossEntropyLoss,
    GeneralizedBinaryCrossEntropyLoss,
    NegativeSampler,
    SampledSoftmaxLoss,
    ScalableCrossEntropyLoss,
    build_loss,
)
from replay_accelerated.losses.targets import target_capacity, target_rows
from replay_accelerated.models.heads import LinearHead


def make_batch(batch=4, width=12, size=16, n_items=50):
    """hidden [B, W, H] (leaf), labels [B, W] (0 off target), target_mask [B, W], a LinearHead with a real bias."""
    target_mask = torch.rand(batch, width) < 0.5
    target_mask[0, -1] = True  # at least one target
    labels = torch.randint(0, n_items, (batch, width)) * target_mask
    hidden = torch.randn(batch, width, size, requires_grad=True)
    head = LinearHead(size, n_items)
    with torch.no_grad():
        head.bias.normal_()
    return hidden, labels, target_mask, head


def item_counts_for(n_items):
    counts = torch.randint(0, 30, (n_items,))
    counts[0] = 0  # an item never seen in training
    counts[1] = 100
    return counts


def run(loss, hidden, labels, target_mask, head, seed=None, capacity=None):
    """Loss value and gradients w.r.t. hidden, head.weight, head.bias."""
    if seed is not None:
        torch.manual_seed(seed)
    value = loss(hidden, labels, target_mask, head, capacity)
    grads = torch.autograd.grad(value, [hidden, head.weight, head.bias])
    return value.detach(), grads


def reference_run(reference, hidden, labels, target_mask, head, **kwargs):
    """The same with float64 copies of the inputs and a naive formula."""
    h, w, b = (t.detach().double().requires_grad_() for t in (hidden, head.weight, head.bias))
    rows, positives = h[target_mask], labels[target_mask]
    value = reference(rows, positives, w, b, **kwargs)
    return value.detach(), torch.autograd.grad(value, [h, w, b])


def negatives_of_rows(negatives, target_mask):
    """Each target row's negatives [rows, K], in the order of hidden[target_mask]: the batch's one set
    [K] for every row, or the row's sequence's [B, K]."""
    if negatives.dim() == 1:
        return negatives.expand(int(target_mask.sum()), -1)
    return negatives[target_mask.nonzero()[:, 0]]


def assert_matches(actual, expected, rtol=1e-4, atol=1e-6):
    (value, grads), (ref_value, ref_grads) = actual, expected
    torch.testing.assert_close(value.double(), ref_value, rtol=rtol, atol=atol)
    for name, grad, ref_grad in zip(("hidden", "weight", "bias"), grads, ref_grads):
        torch.testing.assert_close(grad.double(), ref_grad, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


# Naive float64 references: one row at a time, straight from the formulas in the module docs.

def full_ce_reference(rows, positives, w, b):
    losses = []
    for x, y in zip(rows, positives):
        logits = w @ x + b
        losses.append(torch.log(torch.exp(logits - logits.max()).sum()) + logits.max() - logits[y])
    return torch.stack(losses).mean()


def sampled_ce_reference(rows, positives, w, b, negatives, q):
    k = negatives.shape[1]  # negatives [rows, K]
    losses = []
    for x, y, row_negatives in zip(rows, positives, negatives):
        positive = w[y] @ x + b[y]
        terms = [positive] + [w[j] @ x + b[j] - math.log(k * q[j]) for j in row_negatives.tolist() if j != y]
        losses.append(torch.logsumexp(torch.stack(terms), 0) - positive)
    return torch.stack(losses).mean()


def bce_reference(rows, positives, w, b, negatives):
    total = 0.0
    for x, y, row_negatives in zip(rows, positives, negatives):
        total = total - torch.log(torch.sigmoid(w[y] @ x + b[y]))
        for j in row_negatives.tolist():
            if j != y:
                total = total - torch.log(1 - torch.sigmoid(w[j] @ x + b[j]))
    return total / len(rows)


def gbce_reference(rows, positives, w, b, negatives, t):
    # gSASRec's formulation: sigmoid(s_pos) ** beta, beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha).
    alpha = negatives.shape[1] / (len(w) - 1)
    beta = alpha * (t * (1 - 1 / alpha) + 1 / alpha)
    total = 0.0
    for x, y, row_negatives in zip(rows, positives, negatives):
        total = total - torch.log(torch.sigmoid(w[y] @ x + b[y]) ** beta)
        for j in row_negatives.tolist():
            if j != y:
                total = total - torch.log(1 - torch.sigmoid(w[j] @ x + b[j]))
    return total / len(rows)


def sce_reference(rows, positives, w, b, bucket_rows, bucket_items):
    losses = {}
    for row_ids, item_ids in zip(bucket_rows.tolist(), bucket_items.tolist()):
        for n in row_ids:
            x, y = rows[n], int(positives[n])
            positive = w[y] @ x + b[y]
            terms = [positive] + [w[j] @ x + b[j] for j in item_ids if j != y]
            loss = torch.logsumexp(torch.stack(terms), 0) - positive
            losses[n] = loss if n not in losses else torch.maximum(losses[n], loss)
    return torch.stack(list(losses.values())).mean()


def q_of(strategy, counts, n_items):
    if strategy == "uniform":
        return [1.0 / n_items] * n_items
    return (counts.double() / counts.sum()).tolist()


# Full cross-entropy: CE, CE_full_positions, CCE.

FULL_CE_LOSSES = {
    "CE": CrossEntropyLoss,
    "CE_full_positions": FullPositionsCrossEntropyLoss,
    "CCE": lambda: CutCrossEntropyLoss(chunk_size=7),  # 50 items: 7 full chunks and a partial one
}


@pytest.mark.parametrize("name", FULL_CE_LOSSES)
def test_full_cross_entropy_matches_reference(name):
    batch = make_batch()
    assert_matches(run(FULL_CE_LOSSES[name](), *batch), reference_run(full_ce_reference, *batch))


def test_ce_runs_the_head_on_a_coarse_row_count_and_still_matches_the_reference():
    # Padded rows keep oneDNN's bf16 kernels to a few shapes (losses/cross_entropy.py); they must change nothing.
    rows_seen = []
    for batch, width in [(4, 12), (9, 30), (16, 64)]:
        hidden, labels, target_mask, head = make_batch(batch=batch, width=width)
        head.register_forward_hook(lambda module, inputs, output: rows_seen.append(len(inputs[0])))
        assert_matches(run(CrossEntropyLoss(), hidden, labels, target_mask, head),
                       reference_run(full_ce_reference, hidden, labels, target_mask, head))
        assert rows_seen[-1] == target_capacity(int(target_mask.sum()))


def test_target_rows_are_the_targets_in_order_then_rows_marked_invalid():
    hidden, labels, target_mask, _ = make_batch(batch=5, width=9)
    count = int(target_mask.sum())
    rows, positives, valid = target_rows(hidden, labels, target_mask, count + 70)
    assert rows.shape == (count + 70, hidden.shape[-1]) and valid.tolist() == [True] * count + [False] * 70
    torch.testing.assert_close(rows[:count], hidden[target_mask], rtol=0, atol=0)
    assert positives[:count].tolist() == labels[target_mask].tolist()


ALL_LOSSES = {
    "CE": lambda counts: CrossEntropyLoss(),
    "CE_full_positions": lambda counts: FullPositionsCrossEntropyLoss(),
    "CE_sampled": lambda counts: SampledSoftmaxLoss(20, "popularity", counts),
    "BCE": lambda counts: BinaryCrossEntropyLoss(20, "uniform"),
    "gBCE": lambda counts: GeneralizedBinaryCrossEntropyLoss(20, "uniform"),
    "SCE": lambda counts: ScalableCrossEntropyLoss(3, 7, 30),  # buckets smaller than the batch: a real selection
    "CCE": lambda counts: CutCrossEntropyLoss(chunk_size=16),
    "CCE-": lambda counts: CutCrossEntropyLoss(chunk_size=16, n_negatives=20, item_counts=counts, strategy="popularity"),
}


@pytest.mark.parametrize("name", ALL_LOSSES)
def test_rows_gathered_past_the_targets_change_no_value_and_no_gradient(name):
    # The training step gathers a capacity the host knows (losses/targets.py), usually more rows than targets.
    batch = make_batch(n_items=60)
    loss = ALL_LOSSES[name](item_counts_for(60))
    seed = torch.seed()
    exact = run(loss, *batch, seed=seed, capacity=int(batch[2].sum()))
    for extra in (1, 64, 200):
        padded = run(loss, *batch, seed=seed, capacity=int(batch[2].sum()) + extra)
        torch.testing.assert_close(padded[0], exact[0], rtol=1e-5, atol=1e-6)
        for grad, exact_grad in zip(padded[1], exact[1]):
            torch.testing.assert_close(grad, exact_grad, rtol=1e-5, atol=1e-6)


def test_ce_full_positions_and_cce_equal_ce():
    batch = make_batch(n_items=300)
    value, grads = run(CrossEntropyLoss(), *batch)
    for loss in (FullPositionsCrossEntropyLoss(), CutCrossEntropyLoss(chunk_size=64)):
        other_value, other_grads = run(loss, *batch)
        torch.testing.assert_close(other_value, value, rtol=1e-5, atol=1e-6)
        for grad, other in zip(grads, other_grads):
            torch.testing.assert_close(other, grad, rtol=1e-5, atol=1e-7)


# Sampled losses: CE_sampled, CCE-, BCE.

@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
@pytest.mark.parametrize("cut", [False, True])
def test_sampled_softmax_matches_reference(strategy, cut):
    n_items, k = 30, 25  # few items, many negatives: accidental hits happen
    batch = make_batch(n_items=n_items)
    counts = item_counts_for(n_items)
    loss = (CutCrossEntropyLoss(chunk_size=6, n_negatives=k, strategy=strategy, item_counts=counts) if cut
            else SampledSoftmaxLoss(k, strategy, counts))
    seed = torch.seed()
    actual = run(loss, *batch, seed=seed)
    torch.manual_seed(seed)
    negatives = loss.sampler.sample(n_items, torch.device("cpu"), sequences=None if cut else len(batch[0]))
    if strategy == "popularity":
        assert counts[negatives].min() > 0  # never an item without training interactions
    expected = reference_run(sampled_ce_reference, *batch, negatives=negatives_of_rows(negatives, batch[2]),
                             q=q_of(strategy, counts, n_items))
    assert_matches(actual, expected)


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_cce_minus_equals_sampled_softmax(strategy):
    # One sequence: CE_sampled's negatives per sequence are then CCE-'s one set per batch, drawn alike.
    batch = make_batch(batch=1, width=40, n_items=200)
    counts = item_counts_for(200)
    seed = torch.seed()
    value, grads = run(SampledSoftmaxLoss(64, strategy, counts), *batch, seed=seed)
    other_value, other_grads = run(CutCrossEntropyLoss(16, 64, strategy, counts), *batch, seed=seed)
    torch.testing.assert_close(other_value, value, rtol=1e-5, atol=1e-6)
    for grad, other in zip(grads, other_grads):
        torch.testing.assert_close(other, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_bce_matches_reference(strategy):
    n_items, k = 30, 25
    batch = make_batch(n_items=n_items)
    counts = item_counts_for(n_items)
    loss = BinaryCrossEntropyLoss(k, strategy, counts)
    seed = torch.seed()
    actual = run(loss, *batch, seed=seed)
    torch.manual_seed(seed)
    negatives = loss.sampler.sample(n_items, torch.device("cpu"), sequences=len(batch[0]))
    assert_matches(actual, reference_run(bce_reference, *batch, negatives=negatives_of_rows(negatives, batch[2])))


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_gbce_matches_reference(strategy):
    n_items, k = 60, 25
    t = torch.rand(()).item()  # any calibration in [0, 1)
    batch = make_batch(n_items=n_items)
    loss = GeneralizedBinaryCrossEntropyLoss(k, strategy, item_counts_for(n_items), calibration=t)
    seed = torch.seed()
    actual = run(loss, *batch, seed=seed)
    torch.manual_seed(seed)
    negatives = loss.sampler.sample(n_items, torch.device("cpu"), sequences=len(batch[0]))
    assert_matches(actual, reference_run(gbce_reference, *batch, negatives=negatives_of_rows(negatives, batch[2]),
                                         t=t))


def test_gbce_with_calibration_zero_or_every_item_drawn_is_bce():
    batch = make_batch(n_items=30)
    seed = torch.seed()
    bce = run(BinaryCrossEntropyLoss(20), *batch, seed=seed)
    assert_matches(run(GeneralizedBinaryCrossEntropyLoss(20, calibration=0.0), *batch, seed=seed),
                   (bce[0].double(), [g.double() for g in bce[1]]))
    bce = run(BinaryCrossEntropyLoss(40), *batch, seed=seed)  # 40 draws for 29 other items: alpha capped at 1
    assert_matches(run(GeneralizedBinaryCrossEntropyLoss(40, calibration=0.75), *batch, seed=seed),
                   (bce[0].double(), [g.double() for g in bce[1]]))


def test_negatives_equal_to_the_positive_are_masked():
    # One item: every sampled negative is the positive, so none may count.
    hidden, labels, target_mask, head = make_batch(n_items=1)
    positive_logits = head(hidden[target_mask]).squeeze(1)
    for loss in (SampledSoftmaxLoss(8), CutCrossEntropyLoss(4, n_negatives=8)):
        value, grads = run(loss, hidden, labels, target_mask, head)
        assert value.item() == 0.0  # softmax over the positive alone
        assert all(grad.abs().max() == 0 for grad in grads)
    value, _ = run(BinaryCrossEntropyLoss(8), hidden, labels, target_mask, head)
    torch.testing.assert_close(value, torch.nn.functional.softplus(-positive_logits).mean().detach())


@pytest.mark.parametrize("strategy", ["uniform", "popularity"])
def test_sampling_frequencies_follow_q(strategy):
    n_items, draws = 40, 200_000
    counts = item_counts_for(n_items)
    sampler = NegativeSampler(draws, strategy, counts)
    observed = torch.bincount(sampler.sample(n_items, torch.device("cpu")), minlength=n_items).double()
    expected = torch.tensor(q_of(strategy, counts, n_items), dtype=torch.float64) * draws
    assert observed[expected == 0].sum() == 0
    seen = expected > 0
    chi_square = ((observed[seen] - expected[seen]) ** 2 / expected[seen]).sum().item()
    degrees = int(seen.sum()) - 1
    assert chi_square < degrees + 8 * math.sqrt(2 * degrees)  # mean + 8 sd: a loose bound


# SCE.

@pytest.mark.parametrize("n_buckets", [1, 3])
@pytest.mark.parametrize("mix_x", [False, True])
def test_sce_with_buckets_covering_everything_is_full_cross_entropy(n_buckets, mix_x):
    batch = make_batch()
    n_rows = int(batch[2].sum())
    loss = ScalableCrossEntropyLoss(n_buckets, bucket_size_x=n_rows + 5, bucket_size_y=60, mix_x=mix_x)
    assert_matches(run(loss, *batch), reference_run(full_ce_reference, *batch))


@pytest.mark.parametrize("mix_x", [False, True])
def test_sce_matches_reference(mix_x):
    batch = make_batch(n_items=80)
    hidden, labels, target_mask, head = batch
    loss = ScalableCrossEntropyLoss(n_buckets=4, bucket_size_x=6, bucket_size_y=10, mix_x=mix_x)
    seed = torch.seed()
    rows = hidden[target_mask].detach()
    actual = run(loss, *batch, seed=seed, capacity=len(rows))  # the same random draws as the buckets below
    torch.manual_seed(seed)
    bucket_rows, bucket_items = loss.buckets(rows, torch.ones(len(rows), dtype=torch.bool), head.weight.detach())
    assert bucket_rows.shape == (4, 6) and bucket_items.shape == (4, 10)
    expected = reference_run(sce_reference, *batch, bucket_rows=bucket_rows, bucket_items=bucket_items)
    assert_matches(actual, expected)


def test_sce_gradients_reach_head_weight_bias_and_hidden():
    hidden, labels, target_mask, head = make_batch(n_items=100)
    loss = ScalableCrossEntropyLoss(n_buckets=2, bucket_size_x=4, bucket_size_y=8)
    loss(hidden, labels, target_mask, head).backward()
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0
    assert head.bias.grad is not None and head.bias.grad.abs().sum() > 0
    assert hidden.grad[target_mask].abs().sum() > 0
    assert hidden.grad[~target_mask].abs().sum() == 0


# All losses.

def all_losses(n_items):
    counts = item_counts_for(n_items)
    return {
        "CE": CrossEntropyLoss(),
        "CE_full_positions": FullPositionsCrossEntropyLoss(),
        "CE_sampled": SampledSoftmaxLoss(10, "popularity", counts),
        "BCE": BinaryCrossEntropyLoss(10, "uniform", counts),
        "gBCE": GeneralizedBinaryCrossEntropyLoss(10, "uniform", counts),
        "SCE": ScalableCrossEntropyLoss(3, 5, 10, mix_x=True),
        "CCE": CutCrossEntropyLoss(16),
        "CCE-": CutCrossEntropyLoss(16, 10, "popularity", counts),
    }


@pytest.mark.parametrize("name", list(all_losses(2)))
def test_labels_off_target_change_no_loss(name):
    hidden, labels, target_mask, head = make_batch(n_items=60)
    loss = all_losses(60)[name]
    other_labels = torch.where(target_mask, labels, torch.randint(0, 60, labels.shape))
    assert not torch.equal(other_labels, labels)
    seed = torch.seed()
    value, grads = run(loss, hidden, labels, target_mask, head, seed=seed)
    other_value, other_grads = run(loss, hidden, other_labels, target_mask, head, seed=seed)
    assert torch.equal(value, other_value)
    assert all(torch.equal(grad, other) for grad, other in zip(grads, other_grads))
    assert grads[0][~target_mask].abs().sum() == 0  # padding gets no gradient


class LargestTensor(TorchDispatchMode):
    """The largest tensor any operation creates (forward and backward)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(tensor, torch.Tensor):
                self.bytes = max(self.bytes, tensor.numel() * tensor.element_size())
        return out


def memory_of(loss, hidden, labels, target_mask, head):
    """(bytes of the distinct storages autograd saves for backward, largest tensor created)."""
    saved = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    largest = LargestTensor()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor), largest:
        value = loss(hidden, labels, target_mask, head)
        torch.autograd.grad(value, [hidden, head.weight, head.bias])
    return sum(saved.values()), largest.bytes


def test_cce_never_holds_the_logits_matrix():
    n_rows, n_items, size = 512, 20_000, 64
    hidden = torch.randn(1, n_rows, size, requires_grad=True)
    labels = torch.randint(0, n_items, (1, n_rows))
    target_mask = torch.ones(1, n_rows, dtype=torch.bool)
    head = LinearHead(size, n_items)
    logits_bytes = n_rows * n_items * 4
    ce_saved, ce_largest = memory_of(CrossEntropyLoss(), hidden, labels, target_mask, head)
    cce_saved, cce_largest = memory_of(CutCrossEntropyLoss(chunk_size=1024), hidden, labels, target_mask, head)
    print(f"\nfull logits {logits_bytes / 1e6:.2f} MB; saved for backward: CE {ce_saved / 1e6:.2f} MB, "
          f"CCE {cce_saved / 1e6:.2f} MB; largest tensor: CE {ce_largest / 1e6:.2f} MB, CCE {cce_largest / 1e6:.2f} MB")
    assert ce_saved > logits_bytes
    assert cce_saved < logits_bytes / 4  # the inputs (mostly head.weight, 5.1 MB) and two [N] vectors
    assert cce_largest < logits_bytes / 4  # in backward: the weight gradient; chunks are [512, 1024]


# build_loss.

def params(**values):
    return ModelParams(**values)


@pytest.mark.parametrize(("values", "expected"), [
    ({"loss_type": "CE"}, CrossEntropyLoss),
    ({"loss_type": "CE_restricted", "loss_sample_count": 5}, CrossEntropyLoss),
    ({"loss_type": "CE_full_positions"}, FullPositionsCrossEntropyLoss),
    ({"loss_type": "CE", "loss_sample_count": 5}, SampledSoftmaxLoss),
    ({"loss_type": "CE_sampled", "loss_sample_count": 5, "negative_sampling_strategy": "popularity"},
     SampledSoftmaxLoss),
    ({"loss_type": "BCE", "loss_sample_count": 5}, BinaryCrossEntropyLoss),
    ({"loss_type": "gBCE", "loss_sample_count": 5}, GeneralizedBinaryCrossEntropyLoss),
    ({"loss_type": "SCE", "n_buckets": 4, "bucket_size_x": 8, "bucket_size_y": 8}, ScalableCrossEntropyLoss),
    ({"loss_type": "CCE"}, CutCrossEntropyLoss),
    ({"loss_type": "CCE", "loss_sample_count": 5}, CutCrossEntropyLoss),
])
def test_build_loss(values, expected):
    loss = build_loss(params(**values), torch.arange(10))
    assert type(loss) is expected
    assert values["loss_type"] in LOSSES
    sampler = getattr(loss, "sampler", None)
    assert (sampler is not None) == (values.get("loss_sample_count") is not None and values["loss_type"] != "CE_restricted")
    if sampler is not None:
        assert sampler.n_negatives == 5
        assert sampler.strategy == (values.get("negative_sampling_strategy") or "uniform")


def test_every_configurable_loss_is_built():
    for loss_type in LOSSES:
        build_loss(params(loss_type=loss_type, loss_sample_count=5, n_buckets=2, bucket_size_x=4, bucket_size_y=4),
                   torch.arange(10))


@pytest.mark.parametrize(("values", "key"), [
    ({"loss_type": "SCE", "bucket_size_x": 8, "bucket_size_y": 8}, "n_buckets"),
    ({"loss_type": "SCE", "n_buckets": 8, "bucket_size_y": 8}, "bucket_size_x"),
    ({"loss_type": "BCE"}, "loss_sample_count"),
    ({"loss_type": "gBCE"}, "loss_sample_count"),
    ({"loss_type": "gBCE", "loss_sample_count": 5, "gbce_t": 1.5}, "gbce_t"),
    ({"loss_type": "CE_sampled"}, "loss_sample_count"),
    ({"loss_type": "CE_sampled", "loss_sample_count": 0}, "loss_sample_count"),
    ({"loss_type": "BCE", "loss_sample_count": 5, "negative_sampling_strategy": "inbatch"},
     "negative_sampling_strategy"),
    ({"loss_type": "CE_sampled", "loss_sample_count": 5, "negative_sampling_strategy": "popularity"},
     "negative_sampling_strategy"),  # without item counts
    ({"loss_type": "XE"}, "loss_type"),
    ({"loss_type": "CE", "loss_params": {"temperature": 0.5}}, r"loss_params\.temperature"),  # CE has no options
])
def test_build_loss_errors_name_the_key(values, key):
    counts = None if values.get("negative_sampling_strategy") == "popularity" else torch.arange(10)
    with pytest.raises(ConfigError, match=f"model.params.model_params.{key}"):
        build_loss(params(**values), counts)
