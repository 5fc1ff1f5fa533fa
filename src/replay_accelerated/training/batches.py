"""Training batches: planned on the host from sequence lengths, gathered on the training device.

Each user's newest max_seq_len + 1 items are kept once, flat (one item array and where each user's
run ends), and copied to the training device once (ML-20M: about 14M int32 items, 55 MB). A batch is
planned on the host from the lengths alone: which users (the sampler's), how wide, and which positions
are targets. Moving the plan to the device (`PlannedBatch.to`, which Lightning calls) gathers the
users' items there, left-padded, and makes the model's inputs and labels there: no loader workers,
and per step the host sends B user positions and a [B, W] mask.

A batch is trimmed to its longest sequence, so short-history users do not pay for 128 positions of
padding. It is one column wider than its longest user, up to max_seq_len + 1, and loses nothing:
SASRec's inputs drop the newest column and keep a padding column before the longest user's first
item, from which it predicts that item (as RePlay); BERT4Rec drops the oldest column only when the
batch is max_seq_len + 1 wide (it reads the newest max_seq_len items, as RePlay).

Trimming only helps when a batch holds no long history. With random batches almost
every batch of 32 users has one, so `length_bucketing` groups users of similar length:
each epoch the users are shuffled, cut into pools of `POOL_BATCHES` batches, each pool
is sorted by length and cut into batches, and the batches are shuffled. Every user is
still seen once per epoch, in a random batch of random neighbours of similar length.

Both samplers draw an epoch's order from (seed, epoch) alone (Lightning calls `set_epoch`),
so a run resumed at an epoch boundary sees exactly the batches of an uninterrupted run.

The plan knows its number of targets without asking the device: BERT4Rec's masks are drawn on the
host (a [B, W] draw) from a seed the sampler draws with the batch, so they too depend on (seed, epoch)
alone. The loss gathers `target_capacity` rows (losses/targets.py), so a training step never waits
for the device and has shapes torch.compile can trace.
"""

from dataclasses import dataclass
from typing import NamedTuple

import torch

from replay_accelerated.acceleration.shapes import coarse_size
from replay_accelerated.data.sequences import UserSequences
from replay_accelerated.losses.targets import target_capacity
from replay_accelerated.models.transformer import TrainingTask

MIN_WIDTH = 3  # SASRec's inputs drop the newest column; BERT4Rec's masking reads the two newest positions
# Widths are rounded up to a coarse size (acceleration/shapes.py; steps of 8, at most 4 per power of two):
# kernels built per shape (oneDNN's bf16 kernels on a CPU, torch.compile graphs, GPU tensor-core tiles)
# then see 13 shapes up to a max_seq_len of 128. With every width from 3 to 129, bf16 epochs on a CPU
# spent their time rebuilding evicted oneDNN kernels.
WIDTH_STEP = 8
POOL_BATCHES = 50  # batches per length-sorted pool: wide enough to find similar lengths, still random


class TrainingExample(NamedTuple):
    inputs: torch.Tensor  # [B, W] token ids
    labels: torch.Tensor  # [B, W] item ids at the targets, 0 elsewhere
    target_mask: torch.Tensor  # [B, W] bool
    target_capacity: int  # rows the loss gathers: at least the number of targets (losses/targets.py)


class TrainingBatches(torch.utils.data.Dataset):
    """Indexed by (seed, users) from a batch sampler: those users' `PlannedBatch`, its random draws
    (BERT4Rec's masks) from a generator seeded with `seed`."""

    def __init__(self, sequences: UserSequences, max_seq_len: int, pad_id: int, training_example: TrainingTask):
        self.pad_id = pad_id
        self.training_example = training_example
        self.full_width = max_seq_len + 1
        newest = sequences.newest(self.full_width)
        self.lengths = torch.from_numpy(newest.lengths)  # [U], on the host
        item_type = torch.int32 if pad_id < 2**31 else torch.int64  # half the memory on the device
        # Per device: items [N] flat, where each user's run ends [U], lengths [U].
        self._on_device = {torch.device("cpu"): (torch.from_numpy(newest.items).to(item_type),
                                                 torch.from_numpy(newest.offsets[1:]), self.lengths)}

    def __len__(self) -> int:
        return len(self.lengths)

    def width(self, users: torch.Tensor) -> int:
        """W + 1 of these users' batch: min(longest, max_seq_len) + 1 (a padding column before the longest
        user's first item), rounded up to the coarse grid, at most max_seq_len + 1."""
        needed = max(min(int(self.lengths[users].max()), self.full_width - 1) + 1, MIN_WIDTH)
        return min(coarse_size(needed, WIDTH_STEP), self.full_width)

    def __getitem__(self, key: tuple[int, list[int]]) -> "PlannedBatch":
        seed, users = key
        users = torch.tensor(users)  # [B]
        width = self.width(users)
        columns = torch.arange(width)  # [W + 1]
        is_item = columns >= width - self.lengths[users, None]  # [B, W + 1]: items sit at the right
        target_mask = self.training_example.target_mask(is_item, torch.Generator().manual_seed(seed))
        return PlannedBatch(users, width, target_mask, target_capacity(int(target_mask.sum())), self)

    def gather(self, users: torch.Tensor, width: int) -> torch.Tensor:
        """The newest `width` items of `users` [B] (on the device of their copy), left-padded: [B, width] int64."""
        device = users.device
        if device not in self._on_device:  # copied once per device
            self._on_device[device] = tuple(tensor.to(device) for tensor in self._on_device[torch.device("cpu")])
        items, ends, lengths = self._on_device[device]
        columns = torch.arange(width, device=device)  # [W + 1]
        is_item = columns >= width - lengths[users, None]  # [B, W + 1]
        position = (ends[users, None] - width + columns).clamp(min=0)  # [B, W + 1] into items
        return torch.where(is_item, items[position].long(), self.pad_id)


@dataclass
class PlannedBatch:
    """A batch as the host plans it. `to(device)` makes its `TrainingExample` on that device, gathering
    the users' items from the device's copy (Lightning moves every batch to the training device this
    way, as it moves a tensor)."""

    users: torch.Tensor  # [B] positions of the users
    width: int  # W + 1: the gathered sequences' width
    target_mask: torch.Tensor  # [B, W'] bool, on the host
    target_capacity: int
    batches: TrainingBatches

    def to(self, device: torch.device | str, non_blocking: bool = False) -> TrainingExample:
        device = torch.device(device)
        # Small host tensors, copied without waiting for the device (no host synchronisation).
        users = self.users.to(device, non_blocking=True)
        target_mask = self.target_mask.to(device, non_blocking=True)
        sequences = self.batches.gather(users, self.width)  # [B, W + 1]
        inputs, labels = self.batches.training_example.inputs_and_labels(sequences, target_mask)
        return TrainingExample(inputs, labels, target_mask, self.target_capacity)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness (batch order here, masking and dropout in checkpoints.py)."""
    return seed * 10_000 + epoch


class RandomBatchSampler(torch.utils.data.Sampler[tuple[int, list[int]]]):
    """Batches of random users, in a new order every epoch, drawn from (seed, epoch), each with the seed
    of its own randomness: yields (batch seed, user positions).

    With several processes (DDP) every process draws the same batches and takes every
    world_size-th one; all take the same number, so up to world_size - 1 batches per epoch
    are left out.
    """

    def __init__(self, lengths: torch.Tensor, batch_size: int, seed: int):
        self.lengths = lengths  # [U]
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        _, world_size = _process()
        return -(-len(self.lengths) // self.batch_size) // world_size

    def __iter__(self):
        rank, world_size = _process()
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        batches = self._batches(generator)
        seeds = torch.randint(2**62, (len(batches),), generator=generator).tolist()
        for seed, batch in list(zip(seeds, batches))[rank::world_size][: len(self)]:
            yield seed, batch.tolist()

    def _batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        return list(torch.randperm(len(self.lengths), generator=generator).split(self.batch_size))


class LengthBucketBatchSampler(RandomBatchSampler):
    """Batches of users with similar sequence lengths, in a new random order every epoch."""

    def _batches(self, generator: torch.Generator) -> list[torch.Tensor]:
        order = torch.randperm(len(self.lengths), generator=generator)
        batches = []
        for pool in order.split(self.batch_size * POOL_BATCHES):
            by_length = pool[torch.argsort(self.lengths[pool], stable=True)]
            batches.extend(by_length.split(self.batch_size))
        return [batches[index] for index in torch.randperm(len(batches), generator=generator).tolist()]


def _process() -> tuple[int, int]:
    """(rank, world size) of this process among those training together; (0, 1) alone."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def training_loader(sequences: UserSequences, max_seq_len: int, pad_id: int, training_example: TrainingTask,
                    batch_size: int, seed: int, length_bucketing: bool = False) -> torch.utils.data.DataLoader:
    """Yields one epoch of `PlannedBatch`es; training_example: the model's (models/transformer.py)."""
    batches = TrainingBatches(sequences, max_seq_len, pad_id, training_example)
    sampler_class = LengthBucketBatchSampler if length_bucketing else RandomBatchSampler
    return torch.utils.data.DataLoader(
        batches,
        sampler=sampler_class(batches.lengths, batch_size, seed),
        batch_size=None,  # the sampler already yields whole batches
        num_workers=0,  # a plan is a few small host tensors: workers would cost more than they save
        generator=torch.Generator().manual_seed(seed),  # the loader's own draws leave the global generator alone
    )


def padding_share(loader: torch.utils.data.DataLoader) -> float:
    """Share of padding among the tokens of one epoch of `loader`'s batches (from lengths; no data is read)."""
    batches: TrainingBatches = loader.dataset
    real = padded = 0
    for _, users in loader.sampler:
        users = torch.tensor(users)
        real += int(batches.lengths[users].sum())
        padded += len(users) * batches.width(users)
    return 1.0 - real / padded
