"""Training batches: slices of one pre-padded tensor, trimmed to their longest sequence.

Each user's newest max_seq_len + 1 items are padded once, up front. A batch is then
one tensor index (no per-sample Python), cut down to the columns its longest sequence
needs, so short-history users do not pay for 128 positions of padding. The model turns
the batch into inputs and targets on the training device (masking for BERT4Rec, the
next-item shift for SASRec).
"""

import torch

from replay_accelerated.data.sequences import UserSequences

MIN_WIDTH = 3  # BERT4Rec needs two input positions after dropping the oldest column


class TrainingBatches(torch.utils.data.Dataset):
    """Indexed by a list of user positions (from a BatchSampler); returns [B, width] token ids."""

    def __init__(self, sequences: UserSequences, max_seq_len: int, pad_id: int):
        self.pad_id = pad_id
        self.sequences = sequences.padded(max_seq_len + 1, pad_id)  # [U, max_seq_len + 1]
        self.lengths = torch.from_numpy(sequences.lengths).clamp(max=max_seq_len + 1)

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, users: list[int]) -> torch.Tensor:
        width = max(int(self.lengths[users].max()), MIN_WIDTH)
        return self.sequences[users, -width:]


def training_loader(sequences: UserSequences, max_seq_len: int, pad_id: int, batch_size: int,
                    num_workers: int, seed: int) -> torch.utils.data.DataLoader:
    dataset = TrainingBatches(sequences, max_seq_len, pad_id)
    order = torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    return torch.utils.data.DataLoader(
        dataset,
        sampler=torch.utils.data.BatchSampler(order, batch_size, drop_last=False),
        batch_size=None,  # the sampler already yields whole batches
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
    )
