"""Training batches: slices of one pre-padded tensor, trimmed to their longest sequence.

Each user's newest max_seq_len + 1 items are padded once, up front. A batch is then
one tensor index (no per-sample Python), cut down to the columns its longest sequence
needs, so short-history users do not pay for 128 positions of padding. The model turns
the batch into inputs and targets on the training device (masking for BERT4Rec, the
next-item shift for SASRec). A batch is one column wider than its longest user, up to
max_seq_len + 1, and loses nothing: SASRec's inputs drop the newest column and keep a padding
column before the longest user's first item, from which it predicts that item (as RePlay);
BERT4Rec drops the oldest column only when the batch is max_seq_len + 1 wide (it reads the
newest max_seq_len items, as RePlay).

Trimming only helps when a batch holds no long history. With random batches almost
every batch of 32 users has one, so `length_bucketing` groups users of similar length:
each epoch the users are shuffled, cut into pools of `POOL_BATCHES` batches, each pool
is sorted by length and cut into batches, and the batches are shuffled. Every user is
still seen once per epoch, in a random batch of random neighbours of similar length.

Both samplers draw an epoch's order from (seed, epoch) alone (Lightning calls `set_epoch`),
so a run resumed at an epoch boundary sees exactly the batches of an uninterrupted run.

The loader yields each batch as the model's `TrainingExample` (inputs, labels, target mask), made
on the host, where its number of targets is known without asking the device: the loss gathers
`target_capacity` rows (losses/targets.py), so a training step never waits for the device and
has shapes torch.compile can trace. A batch's randomness (BERT4Rec's masking) comes from a seed the
sampler draws with the batch, so it too depends on (seed, epoch) alone, whichever worker makes it.
"""

from typing import NamedTuple

import torch

from replay_accelerated.acceleration.shapes import coarse_size
from replay_accelerated.data.sequences import UserSequences
from replay_accelerated.losses.targets import target_capacity

MIN_WIDTH = 3  # SASRec's inputs drop the newest column; BERT4Rec's masking reads the two newest positions
# Widths are rounded up to a coarse size (acceleration/shapes.py; steps of 8, at most 4 per power of two):
# kernels built per shape (oneDNN's bf16 kernels on a CPU, torch.compile graphs, GPU tensor-core tiles)
# then see 13 shapes up to a max_seq_len of 128. With every width from 3 to 129, bf16 epochs on a CPU
# spent their time rebuilding evicted oneDNN kernels.
WIDTH_STEP = 8
POOL_BATCHES = 50  # batches per length-sorted pool: wide enough to find similar lengths, still random


class TrainingBatches(torch.utils.data.Dataset):
    """Indexed by a list of user positions (from a batch sampler); returns [B, width] token ids."""

    def __init__(self, sequences: UserSequences, max_seq_len: int, pad_id: int):
        self.pad_id = pad_id
        self.sequences = sequences.padded(max_seq_len + 1, pad_id)  # [U, max_seq_len + 1]
        self.lengths = torch.from_numpy(sequences.lengths).clamp(max=max_seq_len + 1)  # [U]

    def __len__(self) -> int:
        return len(self.sequences)

    def width(self, users: list[int]) -> int:
        full = self.sequences.shape[1]  # max_seq_len + 1
        # min(longest, max_seq_len) + 1: a padding column before the longest user's first item.
        needed = max(min(int(self.lengths[users].max()), full - 1) + 1, MIN_WIDTH)
        return min(coarse_size(needed, WIDTH_STEP), full)

    def __getitem__(self, users: list[int]) -> torch.Tensor:
        return self.sequences[users, -self.width(users):]


class TrainingExample(NamedTuple):
    inputs: torch.Tensor  # [B, W] token ids
    labels: torch.Tensor  # [B, W] item ids at the targets, 0 elsewhere
    target_mask: torch.Tensor  # [B, W] bool
    target_capacity: int  # rows the loss gathers: at least the number of targets (losses/targets.py)


class TrainingExamples(torch.utils.data.Dataset):
    """Indexed by (seed, users) from a batch sampler: those users' batch made into a training example
    by the model's `training_example`, its randomness drawn from a generator seeded with `seed`."""

    def __init__(self, batches: TrainingBatches, training_example):
        self.batches = batches
        self.training_example = training_example

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, key: tuple[int, list[int]]) -> TrainingExample:
        seed, users = key
        inputs, labels, target_mask = self.training_example(self.batches[users], torch.Generator().manual_seed(seed))
        return TrainingExample(inputs, labels, target_mask, target_capacity(int(target_mask.sum())))


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


def training_loader(sequences: UserSequences, max_seq_len: int, pad_id: int, training_example, batch_size: int,
                    num_workers: int, seed: int, length_bucketing: bool = False) -> torch.utils.data.DataLoader:
    """Yields one epoch of `TrainingExample`s; training_example: the model's (models/transformer.py)."""
    batches = TrainingBatches(sequences, max_seq_len, pad_id)
    sampler_class = LengthBucketBatchSampler if length_bucketing else RandomBatchSampler
    sampler = sampler_class(batches.lengths, batch_size, seed)
    return torch.utils.data.DataLoader(
        TrainingExamples(batches, training_example),
        sampler=sampler,
        batch_size=None,  # the sampler already yields whole batches
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        generator=torch.Generator().manual_seed(seed),  # the loader's own draws leave the global generator alone
    )


def padding_share(loader: torch.utils.data.DataLoader) -> float:
    """Share of padding among the tokens of one epoch of `loader`'s batches (from lengths; no data is read)."""
    dataset: TrainingBatches = loader.dataset.batches
    real = padded = 0
    for _, users in loader.sampler:
        real += int(dataset.lengths[users].sum())
        padded += len(users) * dataset.width(users)
    return 1.0 - real / padded
