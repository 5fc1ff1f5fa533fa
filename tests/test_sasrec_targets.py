"""SASRec's training targets against RePlay's own SasRecTrainingDataset, user by user.

The same users go through RePlay's per-sample dataset and through our pipeline (the padded
batches of training/batches.py, trimmed to their longest user, then `training_example`): every
user must train the same targets, the same items at the same distance from the newest one,
including the first item, predicted from the padding position before it.
"""

import numpy as np
import torch
from replay.models.nn.sequential.sasrec import SasRecTrainingDataset

from conftest import replay_sequential_dataset
from replay_accelerated.data.sequences import UserSequences, csr_offsets
from replay_accelerated.models import SasRec
from replay_accelerated.training.batches import TrainingBatches

N_ITEMS, MAX_LEN = 40, 8
LENGTHS = range(1, MAX_LEN + 4)  # one event up to three past the window


def _replay_targets(users: UserSequences) -> list[np.ndarray]:
    """Per user, RePlay's target items, newest last (its labels where `target_padding_mask` is set)."""
    dataset = SasRecTrainingDataset(replay_sequential_dataset(users, N_ITEMS), MAX_LEN)
    samples = [dataset[index] for index in range(len(dataset))]
    return [sample["positive_labels"][sample["target_padding_mask"]].numpy() for sample in samples]


def _our_targets(users: UserSequences, batch: list[int]) -> list[np.ndarray]:
    model = SasRec(n_items=N_ITEMS, max_seq_len=MAX_LEN, hidden_size=8, block_count=1, head_count=1, dropout_rate=0.0)
    _, labels, target_mask, _ = TrainingBatches(users, MAX_LEN, model.pad_id, model.training_example)[0, batch].to(
        "cpu")  # [B, W], trimmed
    return [row_labels[row_mask].numpy() for row_labels, row_mask in zip(labels, target_mask)]


def test_every_user_trains_the_targets_of_replays_sasrec_dataset():
    lengths = np.array(list(LENGTHS))
    users = UserSequences(np.arange(len(lengths)), csr_offsets(lengths),
                          np.random.default_rng().integers(0, N_ITEMS, lengths.sum()))
    expected = _replay_targets(users)
    assert [len(targets) for targets in expected] == [min(length, MAX_LEN) for length in lengths]
    # Each user in a batch of its own (the trimmed width is its own length), and all in one batch.
    alone = [_our_targets(users, [user])[0] for user in range(len(users))]
    together = _our_targets(users, list(range(len(users))))
    for user, targets in enumerate(expected):
        np.testing.assert_array_equal(alone[user], targets)
        np.testing.assert_array_equal(together[user], targets)


def test_an_all_padding_row_and_a_one_event_history_give_finite_outputs_and_gradients():
    for padding_attention in ("masked", "replay"):
        model = SasRec(n_items=N_ITEMS, max_seq_len=MAX_LEN, hidden_size=8, block_count=2, head_count=2,
                       dropout_rate=0.0, padding_attention=padding_attention)
        sequences = torch.full((3, 4), model.pad_id)
        sequences[1, -1] = 5  # one event: its only target is predicted from the padding before it
        sequences[2, -2:] = torch.tensor([3, 7])
        inputs, labels, target_mask = model.training_example(sequences)
        assert target_mask.sum(dim=1).tolist() == [0, 1, 2]
        hidden = model(inputs)
        assert torch.isfinite(hidden).all()
        model.head(hidden[target_mask]).logsumexp(dim=-1).sum().backward()
        assert all(torch.isfinite(parameter.grad).all() for parameter in model.parameters()
                   if parameter.grad is not None)
