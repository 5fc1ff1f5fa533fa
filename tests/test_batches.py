"""Training batches: every user once per epoch, trimmed widths, and length bucketing."""

import numpy as np
import pandas as pd
import torch

from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.training.batches import padding_share, training_loader

MAX_LEN, PAD = 50, 1000
AS_IS = lambda sequences, generator: (sequences, sequences, sequences != PAD)  # noqa: E731: the batch itself


def _sequences(lengths: np.ndarray) -> UserSequences:
    events = pd.DataFrame({
        "user_id": np.repeat(np.arange(len(lengths)), lengths),
        "item_id": np.random.randint(0, PAD, lengths.sum()),
    })
    return UserSequences.from_events(events, ItemVocabulary.fit(events))


def test_length_bucketing_keeps_every_user_once_per_epoch_and_cuts_padding():
    lengths = np.random.geometric(1 / 15, size=2000).clip(max=200)  # fresh long-tailed lengths every run
    sequences = _sequences(lengths)
    random_batches = training_loader(sequences, MAX_LEN, PAD, AS_IS, 32, 0, seed=1)
    bucketed = training_loader(sequences, MAX_LEN, PAD, AS_IS, 32, 0, seed=1, length_bucketing=True)

    epochs = []
    for epoch in range(2):
        bucketed.sampler.set_epoch(epoch)
        epochs.append(list(bucketed.sampler))
    assert list(bucketed.sampler) == epochs[1]  # an epoch's order depends on (seed, epoch) only
    for epoch in epochs:
        users = sorted(user for _, batch in epoch for user in batch)
        assert users == list(range(len(lengths)))  # each user exactly once
        assert all(len(batch) <= 32 for _, batch in epoch)
    assert epochs[0] != epochs[1]  # a new order every epoch

    for batch, _, _, _ in bucketed:  # trimmed to their longest sequence plus a padding column, rounded up to a multiple of 8
        longest = int((batch != PAD).sum(dim=1).max())
        assert batch.shape[1] == min(-(-max(min(longest, MAX_LEN) + 1, 3) // 8) * 8, MAX_LEN + 1)
    assert padding_share(bucketed) < 0.5 * padding_share(random_batches)


def test_examples_carry_a_capacity_the_host_knows_and_their_randomness_depends_on_seed_and_epoch_alone():
    sequences = _sequences(np.random.geometric(1 / 10, size=300).clip(max=80))
    for model in (Bert4Rec(n_items=PAD, max_seq_len=MAX_LEN, hidden_size=8, block_count=1, head_count=1,
                           dropout_rate=0.0),
                  SasRec(n_items=PAD, max_seq_len=MAX_LEN, hidden_size=8, block_count=1, head_count=1,
                         dropout_rate=0.0)):
        loader = training_loader(sequences, MAX_LEN, PAD, model.training_example, 16, 0, seed=3)
        loader.sampler.set_epoch(2)
        first = list(loader)
        torch.manual_seed(np.random.randint(1 << 30))  # the global generator plays no part
        again = list(loader)
        for example, same in zip(first, again, strict=True):
            assert example.target_capacity >= int(example.target_mask.sum())
            assert example.target_capacity % 64 == 0
            for tensor, same_tensor in zip(example[:3], same[:3]):
                assert torch.equal(tensor, same_tensor)
        loader.sampler.set_epoch(3)
        assert not all(torch.equal(a.target_mask, b.target_mask) for a, b in zip(first, loader))
