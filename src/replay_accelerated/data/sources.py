"""Reading an interaction log from the configured source into one canonical frame.

Every source returns the columns user_id, item_id, rating, timestamp (int64 seconds):
`synthetic` generates it, `local` reads your CSV/TSV/parquet log, `sequences` your
one-user-per-line item sequences, and every other source is a public dataset of
`catalog.CATALOG`. Its fingerprint (a file checksum or the generator's settings) keys the
preprocessing cache, so a cached split is found without reading the log.
"""

import hashlib
import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from replay_accelerated.data.catalog import CATALOG, catalog_file, load_catalog, source_of
from replay_accelerated.data.download import file_checksum, remembered_checksum
from replay_accelerated.data.formats import item_sequences, local_file, read_local_log
from replay_accelerated.data.synthetic import generate_interactions

# `dataset.source`: the generator, your own files, and the public datasets of data/catalog.py.
FILE_SOURCES = ("local", "sequences")  # read `dataset.path`
SOURCES = ("synthetic", *FILE_SOURCES, *CATALOG)
# No timestamps, only each user's order of items: split leave-one-out only.
ORDER_ONLY_SOURCES = ("sequences", *(name for name, source in CATALOG.items() if source.order_only))


def source_fingerprint(dataset, data_dir: Path) -> str:
    """What identifies the source's content: a file checksum or the generator's settings.

    A catalog dataset with a pinned checksum is identified by it without touching the
    file; one without (a source that publishes no fixed file) by its file's sha256, so
    it is fetched here if it is not on disk yet.
    """
    if dataset.source == "synthetic":
        settings = json.dumps(OmegaConf.to_container(dataset.generator), sort_keys=True)
        return "synthetic:" + hashlib.sha256(settings.encode()).hexdigest()
    if dataset.source in FILE_SOURCES:
        path = local_file(dataset.path)
        return "sha256:" + file_checksum(path)
    checksum = dataset.checksum or source_of(dataset.source).checksum
    if checksum is not None:
        return f"{dataset.source}:{checksum}"
    path = catalog_file(dataset.source, data_dir, url=dataset.url)
    return f"{dataset.source}:sha256:{remembered_checksum(path)}"


def load_interactions(dataset, data_dir: Path) -> pd.DataFrame:
    """The log named by the `dataset` config, with canonical columns."""
    if dataset.source == "synthetic":
        return generate_interactions(dataset.generator)
    if dataset.source == "local":
        return read_local_log(local_file(dataset.path), dataset.feature_schema, dataset.separator,
                              encoding=dataset.encoding)
    if dataset.source == "sequences":
        return item_sequences(local_file(dataset.path))
    return load_catalog(dataset.source, data_dir, url=dataset.url, checksum=dataset.checksum)

