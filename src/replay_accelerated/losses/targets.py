"""The rows every loss scores: the hidden states at the target positions, at a size the host knows.

`hidden[target_mask]` has as many rows as the mask has True values, a number only the device
knows: on a GPU reading it waits for the device (a host synchronisation in every step), and
torch.compile cannot trace a shape that depends on data. The training batches know their number
of targets when they are built (training/batches.py), rounded up to a coarse size
(acceleration/shapes.py): the loss gathers exactly that many rows with `torch.nonzero_static`,
and marks the rows past the real targets as not `valid`. Every loss leaves those rows out of its
value and its gradients.

Without a capacity (tests, one-off calls) the number is read from the mask, which syncs.
"""

import torch

from replay_accelerated.acceleration.shapes import coarse_size

TARGET_ROWS_STEP = 64  # capacities are multiples of this (and coarse): few shapes for kernels and graphs


def target_capacity(target_count: int) -> int:
    """The number of rows a loss gathers for `target_count` targets (at least one row)."""
    return coarse_size(max(target_count, 1), TARGET_ROWS_STEP)


def target_positions(target_mask: torch.Tensor, capacity: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """position [C] (flat indices into target_mask [B, W]) and valid [C] (bool).

    The first target_mask.sum() positions are the targets in row-major order; the rest are position 0
    repeated, with valid False. `capacity` (C) must be at least the number of targets."""
    if capacity is None:
        capacity = target_capacity(int(target_mask.sum()))  # reads the device
    position = torch.nonzero_static(target_mask.reshape(-1), size=capacity, fill_value=-1).squeeze(1)  # [C]
    return position.clamp(min=0), position >= 0


def target_rows(hidden: torch.Tensor, labels: torch.Tensor, target_mask: torch.Tensor,
                capacity: int | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """rows [C, H], positives [C] and valid [C] (bool) for hidden [B, W, H], labels and target_mask [B, W],
    in the order of `target_positions`."""
    position, valid = target_positions(target_mask, capacity)
    return hidden.reshape(-1, hidden.shape[-1])[position], labels.reshape(-1)[position], valid


def valid_mean(values: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The mean of `values` [C] over the valid rows (NaN when there is none, as an empty mean)."""
    return torch.where(valid, values, 0.0).sum() / valid.sum()
