"""BERT4Rec's default masking against RePlay's own Bert4RecTrainingDataset, statistically.

The same users go through RePlay's per-sample dataset and through our pipeline (the padded
batches of training/batches.py, trimmed to their longest user, then `training_example`).
For every sequence length, the distribution of the number of targets (corner cases: none,
all) and the mask rate at every position (counted from the newest item) must agree; the
windows must hold the same items, and targets must be the hidden items. Randomness is fresh
every run; thresholds are Bonferroni-corrected so that a correct rule fails about once in
a thousand runs, while the "at_least_one" rule (no sequence without a target) fails always.
"""

import numpy as np
import pytest
import torch
from replay.models.nn.sequential.bert4rec import Bert4RecTrainingDataset
from scipy import stats

from conftest import replay_sequential_dataset
from replay_accelerated.data.sequences import UserSequences, csr_offsets
from replay_accelerated.models import Bert4Rec
from replay_accelerated.training.batches import TrainingBatches

N_ITEMS, MAX_LEN, MASK_PROB = 50, 10, 0.3
LENGTHS = range(1, MAX_LEN + 3)  # shorter than, equal to and longer than the window
USERS_PER_LENGTH, DRAWS = 300, 4
ALPHA = 1e-3  # family-wise false-failure rate of each test


def _users() -> UserSequences:
    lengths = np.repeat(np.array(LENGTHS), USERS_PER_LENGTH)
    items = np.random.default_rng().integers(0, N_ITEMS, lengths.sum())
    return UserSequences(np.arange(len(lengths)), csr_offsets(lengths), items)


def _replay_masks(users: UserSequences) -> tuple[np.ndarray, np.ndarray]:
    """RePlay's windows [U * DRAWS, MAX_LEN] (-1: padding) and target masks, its own per-sample code."""
    dataset = Bert4RecTrainingDataset(replay_sequential_dataset(users, N_ITEMS), max_sequence_length=MAX_LEN,
                                      mask_prob=MASK_PROB)
    windows, targets = [], []
    for _ in range(DRAWS):
        for index in range(len(dataset)):
            sample = dataset[index]
            # A target: a real item whose token is masked (RePlay's loss: pad_mask & ~token_mask).
            windows.append(np.where(sample["pad_mask"].numpy(), sample["positive_labels"].numpy(), -1))
            targets.append((sample["pad_mask"] & ~sample["token_mask"]).numpy())
    return np.stack(windows), np.stack(targets)


def _our_masks(users: UserSequences, masking: str) -> tuple[np.ndarray, np.ndarray]:
    """Our windows and target masks through the training batches, right-aligned to [U * DRAWS, MAX_LEN]."""
    model = Bert4Rec(n_items=N_ITEMS, max_seq_len=MAX_LEN, hidden_size=8, block_count=1, head_count=1,
                     dropout_rate=0.0, mask_prob=MASK_PROB, masking=masking)
    batches = TrainingBatches(users, MAX_LEN, model.pad_id, model.training_example)
    windows, targets = [], []
    for _ in range(DRAWS):
        window, target = np.full((len(users), MAX_LEN), -1), np.zeros((len(users), MAX_LEN), dtype=bool)
        # Batches of users of similar length, trimmed as in training (widths 8 and MAX_LEN + 1 here).
        for batch in np.array_split(np.arange(len(users)), 24):
            inputs, labels, target_mask, _ = batches[np.random.randint(1 << 30), batch.tolist()].to("cpu")
            items = torch.where(target_mask, labels, inputs)  # [B, W']
            width = items.shape[1]
            window[batch, MAX_LEN - width:] = torch.where(items == model.pad_id, -1, items).numpy()
            target[batch, MAX_LEN - width:] = target_mask.numpy()
        windows.append(window)
        targets.append(target)
    return np.concatenate(windows), np.concatenate(targets)


def _compare(ours: tuple[np.ndarray, np.ndarray], replay: tuple[np.ndarray, np.ndarray]) -> None:
    (our_windows, our_targets), (replay_windows, replay_targets) = ours, replay
    assert np.array_equal(our_windows, replay_windows)  # the same newest MAX_LEN items, the same padding
    lengths = (our_windows >= 0).sum(axis=1)
    window_lengths = np.unique(lengths)
    tests = len(window_lengths) * (1 + MAX_LEN)
    for length in window_lengths:
        rows = lengths == length
        # Number of targets per sequence (0: the no-target corner case, `length`: all masked).
        counts = [np.bincount(t[rows].sum(axis=1), minlength=length + 1) for t in (our_targets, replay_targets)]
        seen = (counts[0] + counts[1]) > 0
        if seen.sum() > 1:
            p_value = stats.chi2_contingency(np.stack(counts)[:, seen]).pvalue
            assert p_value > ALPHA / tests, (length, counts)
        # Mask rate at each position (two-proportion test; identical rates need no test).
        for position in range(MAX_LEN - length, MAX_LEN):
            masked = [int(t[rows, position].sum()) for t in (our_targets, replay_targets)]
            n = int(rows.sum())
            if masked[0] != masked[1]:
                table = [[masked[0], n - masked[0]], [masked[1], n - masked[1]]]
                p_value = stats.fisher_exact(table).pvalue
                assert p_value > ALPHA / tests, (length, position, masked, n)


def test_replay_masking_matches_replays_training_dataset():
    users = _users()
    _compare(_our_masks(users, "replay"), _replay_masks(users))


def test_at_least_one_masking_is_told_apart_from_replays():
    """The check above has the power to reject a wrong rule: ours with a target in every sequence."""
    users = _users()
    with pytest.raises(AssertionError):
        _compare(_our_masks(users, "at_least_one"), _replay_masks(users))
