"""Training batches: every user once per epoch, trimmed widths, and length bucketing."""

import numpy as np
import pandas as pd

from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.training.batches import padding_share, training_loader

MAX_LEN, PAD = 50, 1000


def _sequences(lengths: np.ndarray) -> UserSequences:
    events = pd.DataFrame({
        "user_id": np.repeat(np.arange(len(lengths)), lengths),
        "item_id": np.random.randint(0, PAD, lengths.sum()),
    })
    return UserSequences.from_events(events, ItemVocabulary.fit(events))


def test_length_bucketing_keeps_every_user_once_per_epoch_and_cuts_padding():
    lengths = np.random.geometric(1 / 15, size=2000).clip(max=200)  # fresh long-tailed lengths every run
    sequences = _sequences(lengths)
    random_batches = training_loader(sequences, MAX_LEN, PAD, 32, 0, seed=1)
    bucketed = training_loader(sequences, MAX_LEN, PAD, 32, 0, seed=1, length_bucketing=True)

    epochs = []
    for epoch in range(2):
        bucketed.sampler.set_epoch(epoch)
        epochs.append(list(bucketed.sampler))
    assert list(bucketed.sampler) == epochs[1]  # an epoch's order depends on (seed, epoch) only
    for epoch in epochs:
        users = sorted(user for batch in epoch for user in batch)
        assert users == list(range(len(lengths)))  # each user exactly once
        assert all(len(batch) <= 32 for batch in epoch)
    assert epochs[0] != epochs[1]  # a new order every epoch

    for batch in bucketed:  # trimmed to their longest sequence plus a padding column, rounded up to a multiple of 8
        longest = int((batch != PAD).sum(dim=1).max())
        assert batch.shape[1] == min(-(-max(min(longest, MAX_LEN) + 1, 3) // 8) * 8, MAX_LEN + 1)
    assert padding_share(bucketed) < 0.5 * padding_share(random_batches)
