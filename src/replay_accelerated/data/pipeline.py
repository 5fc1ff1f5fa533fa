"""From a dataset config to model-ready sequences, with a parquet cache.

The splits and encoded sequences are written under
`paths.data_dir/cache/<dataset name>-<key>/`, where the key hashes the source's
fingerprint (file checksum or generator settings), the feature schema and the
preprocessing config. A changed file or config gets a new key and is rebuilt; an
unchanged one loads from parquet in seconds. The cache is written in a temporary folder
beside its place and renamed to it when complete, so a failed or interrupted build leaves
no half-written cache. `manifest.json` holds the sha256 of every cache file: a manifest
or file that is missing, truncated or changed is reported and the cache rebuilt.
"""

import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from replay_accelerated.data.catalog import MOVIELENS_SOURCES, catalog_file
from replay_accelerated.data.download import file_checksum
from replay_accelerated.data.item_features import ItemFeatures, declared_columns, read_item_features
from replay_accelerated.data.split import SPLIT_NAMES, Splits, rating_filter, split_interactions
from replay_accelerated.data.sequences import ItemVocabulary, UserSequences
from replay_accelerated.data.sources import load_interactions, source_fingerprint
from replay_accelerated.errors import DataError

PROTOCOL_VERSION = 4  # bump when the preprocessing code changes what it produces
MANIFEST = "manifest.json"
MANIFEST_KEYS = {"sha256", "dropped_test_users", "unknown_history_items"}  # what loading the cache reads
CACHE_FILES = ("items.parquet", *(f"{name}.parquet" for name in SPLIT_NAMES),
               *(f"sequences_{name}.parquet" for name in SPLIT_NAMES))


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
    rating_filter: str  # split.rating_filter: which rows the rating filter kept
    item_features: ItemFeatures | None = None  # dataset.item_features encoded per item (None: none declared)

    def summary(self) -> dict:
        return {
            "fingerprint": self.fingerprint,
            "cache_dir": str(self.cache_dir),
            "rating_filter": self.rating_filter,
            "items": len(self.vocabulary),
            "train_users": len(self.train),
            "train_events": int(len(self.train.items)),
            "validation_users": len(self.validation),
            "test_users": len(self.test),
            "test_users_dropped_ground_truth_before_threshold": self.splits.dropped_test_users,
            "unknown_history_items_dropped": self.unknown_history_items,
            **({} if self.item_features is None else {
                "item_features": self.item_features.kinds,
                "items_with_features": round(self.item_features.matched, 4)}),
        }


def prepare_data(dataset, data_dir: Path) -> PreparedData:
    """Load the configured dataset, split it by the protocol and encode it, using the cache."""
    fingerprint = source_fingerprint(dataset, data_dir)
    settings = {
        "fingerprint": fingerprint,
        "reader": {"separator": dataset.separator, "encoding": dataset.encoding},
        "feature_schema": OmegaConf.to_container(dataset.feature_schema),
        "preprocess": OmegaConf.to_container(dataset.preprocess),
        "protocol_version": PROTOCOL_VERSION,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    cache_dir = Path(data_dir) / "cache" / f"{dataset.name}-{key}"
    rated = dataset.feature_schema.rating_column is not None
    manifest = _intact_manifest(cache_dir)
    if manifest is not None:
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
        splits = split_interactions(log, dataset.preprocess, rated)
        vocabulary = ItemVocabulary.fit(splits.train_events, splits.validation_events)
        sequences = {name: UserSequences.from_events(frame, vocabulary) for name, frame in splits.as_dict().items()}
        # from_events drops the events of unknown items: what is missing from a split's sequences.
        unknown = {name: len(getattr(splits, name)) - len(sequences[name].items) for name in HISTORY_SPLITS}
        _write_cache(cache_dir, settings, splits, vocabulary, sequences, unknown)
        print(f"Split and encoded {len(log):,} interactions in {time.perf_counter() - started:.1f} s; "
              f"cached in {cache_dir}", file=sys.stderr)
    if len(vocabulary) < 2:  # every user has seen the one item: nothing is left to recommend or to score
        raise DataError(f"the training and validation events hold {len(vocabulary)} distinct item(s) "
                        f"({', '.join(map(str, vocabulary.item_ids[:1]))}); a recommender ranks items a user has "
                        "not seen, so it needs at least 2: check dataset.feature_schema.item_column and the "
                        "dataset.preprocess filters")
    prepared = PreparedData(
        splits=splits,
        vocabulary=vocabulary,
        train=sequences["train_events"],
        validation=EvaluationUsers.from_splits(sequences["validation_events"], sequences["validation_gt"]),
        test=EvaluationUsers.from_splits(sequences["test_events"], sequences["test_gt"]),
        fingerprint=fingerprint,
        cache_dir=cache_dir,
        unknown_history_items=unknown,
        rating_filter=rating_filter(dataset.preprocess, rated),
        item_features=read_item_features(dataset.item_features, vocabulary, _archive(dataset, data_dir))
        if declared_columns(dataset.item_features) else None,
    )
    if dataset.preprocess.protocol == "global_time" and len(prepared.validation) < FEW_VALIDATION_USERS:
        print(f"Warning: early stopping rests on {len(prepared.validation)} validation users, so validation NDCG@10 "
              f"moves by noise from epoch to epoch; set dataset.preprocess.min_val_users={FEW_VALIDATION_USERS} "
              "(or more) to validate on more users", file=sys.stderr)
    if any(unknown.values()):
        print(f"Items unknown to the training vocabulary are dropped from histories (the rule of our models, "
              f"mode=infer and the RePlay rows): {unknown} events", file=sys.stderr)
    return prepared


def _archive(dataset, data_dir: Path) -> Path | None:
    """The dataset's GroupLens zip, where the item features are MovieLens' own without a path (it holds the
    movies' genres); None otherwise."""
    features = dataset.item_features
    if features.format != "movielens" or features.path is not None or dataset.source not in MOVIELENS_SOURCES:
        return None
    return catalog_file(dataset.source, data_dir, url=dataset.url, checksum=dataset.checksum)


def _write_cache(cache_dir: Path, settings: dict, splits: Splits, vocabulary: ItemVocabulary, sequences: dict,
                 unknown: dict[str, int]) -> None:
    """Write the cache into a temporary folder beside `cache_dir` and rename it to `cache_dir` when complete."""
    building = cache_dir.with_name(f".{cache_dir.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    building.mkdir(parents=True)
    try:
        for name, frame in splits.as_dict().items():
            frame.to_parquet(building / f"{name}.parquet", index=False)
            sequences[name].to_frame().to_parquet(building / f"sequences_{name}.parquet", index=False)
        pd.DataFrame({"item_id": vocabulary.item_ids}).to_parquet(building / "items.parquet", index=False)
        counts = {name: len(frame) for name, frame in splits.as_dict().items()}
        files = {name: file_checksum(building / name) for name in sorted(CACHE_FILES)}
        manifest = {**settings, "rows": counts, "dropped_test_users": splits.dropped_test_users,
                    "unknown_history_items": unknown, "sha256": files}
        (building / MANIFEST).write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(cache_dir, ignore_errors=True)  # a damaged cache (_intact_manifest said so)
        try:
            os.rename(building, cache_dir)
        except OSError:
            if not (cache_dir / MANIFEST).is_file():
                raise
            # Another run of the same data has just renamed its cache into place: the same files, kept.
    finally:
        shutil.rmtree(building, ignore_errors=True)  # gone after the rename; a failed build's files otherwise


def _intact_manifest(cache_dir: Path) -> dict | None:
    """The manifest of a complete cache whose every file has the checksum it recorded; None otherwise,
    with a warning when the cache is there but damaged."""
    path = cache_dir / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
        complete = isinstance(manifest, dict) and MANIFEST_KEYS <= manifest.keys()
    except ValueError:  # truncated (bytes that are not UTF-8 raise UnicodeDecodeError, a ValueError too)
        complete = False
    if not complete:
        print(f"Cache manifest {path} is truncated or damaged; rebuilding the cache", file=sys.stderr)
        return None
    recorded = manifest["sha256"]
    for name in sorted(CACHE_FILES):
        file = cache_dir / name
        if name not in recorded or not file.is_file() or file_checksum(file) != recorded[name]:
            print(f"Cache file {file} is missing or damaged (checksum differs from {MANIFEST}); "
                  "rebuilding the cache", file=sys.stderr)
            return None
    return manifest
