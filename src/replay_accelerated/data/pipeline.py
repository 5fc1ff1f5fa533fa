"""From a dataset config to model-ready sequences, with a parquet cache.

The splits and encoded sequences are written under
`paths.data_dir/cache/<dataset name>-<key>/`, where the key hashes the source's
fingerprint (file checksum or generator settings), the feature schema and the
preprocessing config. A changed file or config gets a new key and is rebuilt; an
unchanged one loads from parquet in seconds. `manifest.json` is written last and holds
the sha256 of every cache file: a cache interrupted halfway is never read, and a file
that is missing, truncated or changed is reported and the cache rebuilt.
"""

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from replay_accelerated.data.download import file_checksum
from replay_accelerated.data.split import SPLIT_NAMES, Splits, split_interactions
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.data.sources import load_interactions, source_fingerprint

PROTOCOL_VERSION = 3  # bump when the preprocessing code changes what it produces


@dataclass
class EvaluationUsers:
    """Users to score: what they have seen (the model's input) and what comes next."""

    history: UserSequences
    ground_truth: UserSequences

    @classmethod
    def from_splits(cls, events: UserSequences, ground_truth: UserSequences) -> "EvaluationUsers":
        users = np.intersect1d(events.user_ids, ground_truth.user_ids)
        return cls(events.subset(users), ground_truth.subset(users))

    def __len__(self) -> int:
        return len(self.history)


HISTORY_SPLITS = ("train_events", "validation_events", "test_events")
FEW_VALIDATION_USERS = 200  # below this, warn that early stopping follows noise


@dataclass
class PreparedData:
    splits: Splits
    vocabulary: ItemVocabulary
    train: UserSequences
    validation: EvaluationUsers
    test: EvaluationUsers
    fingerprint: str
    cache_dir: Path
    # Events of each history split whose item the vocabulary does not know, dropped from the
    # histories (leave-one-out test histories hold the validation targets, which may be new).
    unknown_history_items: dict[str, int]

    def summary(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "cache_dir": str(self.cache_dir),
            "items": len(self.vocabulary),
            "train_users": len(self.train),
            "train_events": int(len(self.train.items)),
            "validation_users": len(self.validation),
            "test_users": len(self.test),
            "test_users_dropped_ground_truth_before_threshold": self.splits.dropped_test_users,
            "unknown_history_items_dropped": self.unknown_history_items,
        }


def prepare_data(dataset, data_dir: Path) -> PreparedData:
    """Load the configured dataset, split it by the protocol and encode it, using the cache."""
    fingerprint = source_fingerprint(dataset, data_dir)
    settings = {
        "fingerprint": fingerprint,
        "feature_schema": OmegaConf.to_container(dataset.feature_schema),
        "preprocess": OmegaConf.to_container(dataset.preprocess),
        "protocol_version": PROTOCOL_VERSION,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(data_dir) / "cache" / f"{dataset.name}-{key}"
    if _cache_intact(cache_dir):
        manifest = json.loads((cache_dir / "manifest.json").read_text())
        splits = Splits(**{name: pd.read_parquet(cache_dir / f"{name}.parquet") for name in SPLIT_NAMES},
                        dropped_test_users=manifest["dropped_test_users"])
        unknown = manifest["unknown_history_items"]
        vocabulary = ItemVocabulary(pd.read_parquet(cache_dir / "items.parquet")["item_id"].to_numpy())
        sequences = {
            name: UserSequences.from_frame(pd.read_parquet(cache_dir / f"sequences_{name}.parquet"))
            for name in SPLIT_NAMES
        }
        print(f"Loaded cached splits from {cache_dir}", file=sys.stderr)
    else:
        started = time.perf_counter()
        log = load_interactions(dataset, data_dir)
        splits = split_interactions(log, dataset.preprocess)
        vocabulary = ItemVocabulary.fit(splits.train_events, splits.validation_events)
        sequences = {name: UserSequences.from_events(frame, vocabulary) for name, frame in splits.as_dict().items()}
        # from_events drops the events of unknown items: what is missing from a split's sequences.
        unknown = {name: len(getattr(splits, name)) - len(sequences[name].items) for name in HISTORY_SPLITS}
        _write_cache(cache_dir, settings, splits, vocabulary, sequences, unknown)
        print(f"Split and encoded {len(log):,} interactions in {time.perf_counter() - started:.1f} s; "
              f"cached in {cache_dir}", file=sys.stderr)
    prepared = PreparedData(
        splits=splits,
        vocabulary=vocabulary,
        train=sequences["train_events"],
        validation=EvaluationUsers.from_splits(sequences["validation_events"], sequences["validation_gt"]),
        test=EvaluationUsers.from_splits(sequences["test_events"], sequences["test_gt"]),
        fingerprint=fingerprint,
        cache_dir=cache_dir,
        unknown_history_items=unknown,
    )
    if dataset.preprocess.protocol == "global_time" and len(prepared.validation) < FEW_VALIDATION_USERS:
        print(f"Warning: early stopping rests on {len(prepared.validation)} validation users, so validation NDCG@10 "
              f"moves by noise from epoch to epoch; set dataset.preprocess.min_val_users={FEW_VALIDATION_USERS} "
              "(or more) to validate on more users", file=sys.stderr)
    if any(unknown.values()):
        print(f"Items unknown to the training vocabulary are dropped from histories (the rule of our models, "
              f"mode=infer and the RePlay rows): {unknown} events", file=sys.stderr)
    return prepared


def _write_cache(cache_dir: Path, settings: dict, splits: Splits, vocabulary: ItemVocabulary, sequences: dict,
                 unknown: dict[str, int]) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in splits.as_dict().items():
        frame.to_parquet(cache_dir / f"{name}.parquet", index=False)
        sequences[name].to_frame().to_parquet(cache_dir / f"sequences_{name}.parquet", index=False)
    pd.DataFrame({"item_id": vocabulary.item_ids}).to_parquet(cache_dir / "items.parquet", index=False)
    counts = {name: len(frame) for name, frame in splits.as_dict().items()}
    files = {path.name: file_checksum(path) for path in sorted(cache_dir.glob("*.parquet"))}
    manifest = {**settings, "rows": counts, "dropped_test_users": splits.dropped_test_users,
                "unknown_history_items": unknown, "sha256": files}
    (cache_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))


def _cache_intact(cache_dir: Path) -> bool:
    """Whether the cache is complete and every file has the checksum its manifest recorded."""
    manifest = cache_dir / "manifest.json"
    if not manifest.is_file():
        return False
    recorded = json.loads(manifest.read_text()).get("sha256", {})
    expected = {f"{name}.parquet" for name in SPLIT_NAMES} | {f"sequences_{name}.parquet" for name in SPLIT_NAMES}
    expected.add("items.parquet")
    for name in sorted(expected):
        path = cache_dir / name
        if name not in recorded or not path.is_file() or file_checksum(path) != recorded[name]:
            print(f"Cache file {path} is missing or damaged (checksum differs from {manifest.name}); "
                  "rebuilding the cache", file=sys.stderr)
            manifest.unlink()
            return False
    return True

