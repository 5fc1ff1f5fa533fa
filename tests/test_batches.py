"""Training batches: every user once per epoch, trimmed widths, length bucketing, and batches gathered from the
flat sequences equal to those of a plain padded tensor."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import DEVICES

from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.models import Bert4Rec, SasRec
from replay_accelerated.models.transformer import TrainingTask
from replay_accelerated.training.batches import TrainingExample, padding_share, training_loader

MAX_LEN, PAD = 50, 1000


class AsIs(TrainingTask):
    """The batch itself as inputs."""

    pad_id = PAD

    def target_mask(self, is_item, generator=None):
        return is_item

    def inputs_and_labels(self, sequences, target_mask):
        return sequences, sequences


def _models() -> tuple:
    return (Bert4Rec(n_items=PAD, max_seq_len=MAX_LEN, hidden_size=8, block_count=1, head_count=1, dropout_rate=0.0),
            SasRec(n_items=PAD, max_seq_len=MAX_LEN, hidden_size=8, block_count=1, head_count=1, dropout_rate=0.0))


def _sequences(lengths: np.ndarray) -> UserSequences:
    events = pd.DataFrame({
        "user_id": np.repeat(np.arange(len(lengths)), lengths),
        "item_id": np.random.randint(0, PAD, lengths.sum()),
    })
    return UserSequences.from_events(events, ItemVocabulary.fit(events))


def test_length_bucketing_keeps_every_user_once_per_epoch_and_cuts_padding():
    lengths = np.random.geometric(1 / 15, size=2000).clip(max=200)  # fresh long-tailed lengths every run
    sequences = _sequences(lengths)
    random_batches = training_loader(sequences, MAX_LEN, PAD, AsIs(), 32, seed=1)
    bucketed = training_loader(sequences, MAX_LEN, PAD, AsIs(), 32, seed=1, length_bucketing=True)

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

    for batch, _, _, _ in (plan.to("cpu") for plan in bucketed):  # trimmed to their longest sequence plus a padding column, rounded up to a multiple of 8
        longest = int((batch != PAD).sum(dim=1).max())
        assert batch.shape[1] == min(-(-max(min(longest, MAX_LEN) + 1, 3) // 8) * 8, MAX_LEN + 1)
    assert padding_share(bucketed) < 0.5 * padding_share(random_batches)


def test_examples_carry_a_capacity_the_host_knows_and_their_randomness_depends_on_seed_and_epoch_alone():
    sequences = _sequences(np.random.geometric(1 / 10, size=300).clip(max=80))
    for model in _models():
        loader = training_loader(sequences, MAX_LEN, PAD, model.training_example, 16, seed=3)
        loader.sampler.set_epoch(2)
        first = [plan.to("cpu") for plan in loader]
        torch.manual_seed(np.random.randint(1 << 30))  # the global generator plays no part
        again = [plan.to("cpu") for plan in loader]
        for example, same in zip(first, again, strict=True):
            assert example.target_capacity >= int(example.target_mask.sum())
            assert example.target_capacity % 64 == 0
            for tensor, same_tensor in zip(example[:3], same[:3]):
                assert torch.equal(tensor, same_tensor)
        loader.sampler.set_epoch(3)
        assert not all(torch.equal(a.target_mask, b.to("cpu").target_mask) for a, b in zip(first, loader))


def _reference_examples(sequences: UserSequences, model, loader) -> list:
    """One epoch of `loader`'s sampler made the plain way: every user's newest MAX_LEN + 1 items padded into
    one tensor, a batch's rows indexed and cut to the batch's width, the model's training example of them."""
    padded = torch.full((len(sequences), MAX_LEN + 1), PAD)
    for user in range(len(sequences)):
        items = sequences.items[sequences.offsets[user]:sequences.offsets[user + 1]][-(MAX_LEN + 1):]
        padded[user, MAX_LEN + 1 - len(items):] = torch.from_numpy(items)
    examples = []
    for seed, users in loader.sampler:
        longest = min(int((padded[users] != PAD).sum(dim=1).max()), MAX_LEN)
        width = min(-(-max(longest + 1, 3) // 8) * 8, MAX_LEN + 1)  # a padding column, rounded up to 8
        examples.append(model.training_example(padded[users, -width:], torch.Generator().manual_seed(seed)))
    return examples


@pytest.mark.parametrize("device", DEVICES)
def test_batches_gathered_from_the_flat_sequences_equal_those_of_a_padded_tensor(device: str):
    lengths = np.random.geometric(1 / 12, size=500).clip(1, 3 * MAX_LEN)  # short, long and longer than MAX_LEN + 1
    sequences = _sequences(lengths)
    for model in _models():
        for bucketing in (False, True):
            loader = training_loader(sequences, MAX_LEN, PAD, model.training_example, 16,
                                     seed=np.random.randint(1000), length_bucketing=bucketing)
            loader.sampler.set_epoch(np.random.randint(5))
            expected = _reference_examples(sequences, model, loader)
            for plan, (inputs, labels, target_mask) in zip(loader, expected, strict=True):
                example = plan.to(device)  # gathered on the device
                assert example.inputs.device.type == device and example.inputs.dtype == torch.int64
                example = TrainingExample(*(tensor.cpu() for tensor in example[:3]), example.target_capacity)
                assert torch.equal(example.inputs, inputs)
                assert torch.equal(example.labels, labels)
                assert torch.equal(example.target_mask, target_mask)
                assert example.target_capacity >= int(target_mask.sum())
