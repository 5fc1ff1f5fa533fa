"""Item vocabulary and per-user item sequences in compact form.

A split becomes `UserSequences`: one row of item indices per user, in time order,
stored flat (CSR: `offsets` into `items`) so that millions of events cost two arrays,
and turned into a left-padded tensor only for the width a model asks for.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from replay_accelerated.data.formats import ITEM, USER


@dataclass
class ItemVocabulary:
    """Original item ids in index order: item index i is `item_ids[i]`."""

    item_ids: np.ndarray

    @classmethod
    def fit(cls, *events: pd.DataFrame) -> "ItemVocabulary":
        return cls(np.sort(pd.concat([frame[ITEM] for frame in events]).unique()))

    def __len__(self) -> int:
        return len(self.item_ids)

    def encode(self, items: pd.Series) -> np.ndarray:
        """Indices of `items`; -1 for items outside the vocabulary."""
        positions = np.searchsorted(self.item_ids, items.to_numpy())
        positions = np.minimum(positions, len(self.item_ids) - 1)
        return np.where(self.item_ids[positions] == items.to_numpy(), positions, -1)


@dataclass
class UserSequences:
    """Time-ordered item indices per user: user `user_ids[u]` has `items[offsets[u]:offsets[u+1]]`."""

    user_ids: np.ndarray
    offsets: np.ndarray  # int64 [n_users + 1]
    items: np.ndarray  # int64 [n_events]

    @classmethod
    def from_events(cls, events: pd.DataFrame, vocabulary: ItemVocabulary) -> "UserSequences":
        """Encode a split whose rows are already time-ordered per user; unknown items are dropped."""
        encoded = vocabulary.encode(events[ITEM])
        known = encoded >= 0
        users = events[USER].to_numpy()[known]
        user_ids, counts = _run_lengths(users)
        return cls(user_ids, csr_offsets(counts), encoded[known].astype(np.int64))

    def __len__(self) -> int:
        return len(self.user_ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def padded(self, width: int, pad_id: int) -> torch.Tensor:
        """The newest `width` items of each user, left-padded with `pad_id`: [n_users, width]."""
        lengths = self.lengths
        kept = np.minimum(lengths, width)  # items kept per user
        rows = np.repeat(np.arange(len(self)), kept)
        # Position of each kept item inside its user's kept run: 0 .. kept - 1.
        within = np.arange(kept.sum()) - np.repeat(np.cumsum(kept) - kept, kept)
        source = self.offsets[1:][rows] - kept[rows] + within
        out = np.full((len(self), width), pad_id, dtype=np.int64)
        out[rows, width - kept[rows] + within] = self.items[source]
        return torch.from_numpy(out)

    def to_frame(self) -> pd.DataFrame:
        """One row per user with the list of item indices (for the parquet cache)."""
        return pd.DataFrame(
            {USER: self.user_ids, "items": np.split(self.items, self.offsets[1:-1])}
        )

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "UserSequences":
        items = np.concatenate(frame["items"].to_list()) if len(frame) else np.zeros(0)
        return cls(frame[USER].to_numpy(), csr_offsets(frame["items"].map(len).to_numpy()), items.astype(np.int64))

    def between(self, start: int, stop: int) -> "UserSequences":
        """Users start..stop-1 (positions, not ids), sharing this item array (no copy): a batch of users."""
        offsets = self.offsets[start : stop + 1]
        return UserSequences(self.user_ids[start:stop], offsets - offsets[0], self.items[offsets[0] : offsets[-1]])

    def subset(self, user_ids: np.ndarray) -> "UserSequences":
        """The sequences of `user_ids` (which must all be present), in that order."""
        order = pd.Index(self.user_ids).get_indexer(user_ids)
        starts = self.offsets[order]
        return self._runs(np.asarray(user_ids), starts, self.offsets[order + 1] - starts)

    def newest(self, count: int) -> "UserSequences":
        """Each user's newest `count` items (all of a shorter history)."""
        kept = np.minimum(self.lengths, count)
        return self._runs(self.user_ids, self.offsets[1:] - kept, kept)

    def _runs(self, user_ids: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> "UserSequences":
        """The users `user_ids` whose items are items[starts[u] : starts[u] + lengths[u]], copied."""
        offsets = csr_offsets(lengths)
        index = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        return UserSequences(user_ids, offsets, self.items[index])


def csr_offsets(lengths: np.ndarray) -> np.ndarray:
    """CSR offsets [len(lengths) + 1] of runs with the given lengths."""
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _run_lengths(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consecutive runs of equal values: (value of each run, length of each run)."""
    if len(values) == 0:
        return values, np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(values[1:] != values[:-1]) + 1])
    return values[starts], np.diff(np.concatenate([starts, [len(values)]]))
