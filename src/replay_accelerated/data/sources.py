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

from replay_accelerated.data.catalog import catalog_file, load_catalog, source_of
from replay_accelerated.data.download import file_checksum, remembered_checksum
from replay_accelerated.data.formats import item_sequences
from replay_accelerated.data.preprocessing import ITEM, RATING, TIMESTAMP, USER
from replay_accelerated.data.synthetic import generate_interactions
from replay_accelerated.config import FILE_SOURCES
from replay_accelerated.errors import DataError

SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t", ".dat": "::"}


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
        path = _existing(dataset.path)
        return "sha256:" + file_checksum(path)
    checksum = dataset.checksum or source_of(dataset.source).checksum
    if checksum is not None:
        return f"{dataset.source}:{checksum}"
    path = catalog_file(dataset.source, data_dir, url=dataset.url)
    return f"{dataset.source}:sha256:{remembered_checksum(path)}"


def load_interactions(dataset, data_dir: Path) -> pd.DataFrame:
    """The log named by the `dataset` config, with canonical columns."""
    if dataset.source == "synthetic":
        return generate_interactions(**OmegaConf.to_container(dataset.generator))
    if dataset.source == "local":
        return read_local_log(_existing(dataset.path), dataset.feature_schema, dataset.separator)
    if dataset.source == "sequences":
        return item_sequences(_existing(dataset.path))
    return load_catalog(dataset.source, data_dir, url=dataset.url, checksum=dataset.checksum)


def _existing(path: str) -> Path:
    file = Path(path).expanduser()
    if not file.is_file():
        raise DataError(f"interactions file {file} does not exist; set dataset.path to your file")
    return file


def read_local_log(path: Path, schema, separator: str | None = None) -> pd.DataFrame:
    """Read a CSV/TSV/parquet log and rename its columns from `feature_schema` to the canonical ones."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        separator = separator or SEPARATORS.get(path.suffix.lower(), ",")
        try:
            frame = pd.read_csv(path, sep=separator, engine="python" if len(separator) > 1 else "c")
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
    if frame.empty:
        raise DataError(f"interactions file {path} is empty; point dataset.path to a file with interactions")

    wanted = {
        schema.query_column: (USER, "query_column"),
        schema.item_column: (ITEM, "item_column"),
        schema.timestamp_column: (TIMESTAMP, "timestamp_column"),
    }
    if schema.rating_column is not None:
        wanted[schema.rating_column] = (RATING, "rating_column")
    for column, (_, key) in wanted.items():
        if column not in frame.columns:
            raise DataError(
                f"column '{column}' missing in {path.name} (it has {list(frame.columns)}); "
                f"set dataset.feature_schema.{key} to the right column name"
            )
    _check_rows(frame, list(wanted), path)
    frame = frame[list(wanted)].rename(columns={column: canonical for column, (canonical, _) in wanted.items()})
    frame[TIMESTAMP] = _as_seconds(frame[TIMESTAMP], path)
    if RATING not in frame.columns:
        frame[RATING] = 1.0
    return frame[[USER, ITEM, RATING, TIMESTAMP]]


def _check_rows(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    """No repeated header line and no id column mixing Python types (e.g. 12 and '12' from CSV chunks)."""
    repeats = (frame[columns].astype(str) == pd.Series(columns, index=columns)).all(axis=1)
    if repeats.any():
        line = int(repeats.to_numpy().argmax()) + 2  # 1-based, after the header line
        raise DataError(f"line {line} of {path.name} repeats the header (files concatenated with their headers?); "
                        "delete the repeated header lines")
    for column in columns[:2]:  # user and item ids
        values = frame[column]
        if values.dtype == object:
            by_type = values.groupby(values.map(lambda value: type(value).__name__)).first()
            if len(by_type) > 1:
                examples = ", ".join(f"{name} {value!r}" for name, value in by_type.items())
                raise DataError(
                    f"column '{column}' of {path.name} mixes value types ({examples}), so equal ids could "
                    "differ in type; clean the odd rows, or convert the column to text before training"
                )


def _as_seconds(timestamps: pd.Series, path: Path) -> pd.Series:
    """Integer or datetime timestamps as int64 seconds (datetime strings are parsed)."""
    if pd.api.types.is_numeric_dtype(timestamps) and not timestamps.isna().any():
        return timestamps.astype("int64")
    try:
        parsed = pd.to_datetime(timestamps)
    except (ValueError, TypeError) as error:
        raise DataError(
            f"timestamps in {path.name} are neither numbers nor dates ({error}); "
            "set dataset.feature_schema.timestamp_column to a numeric or datetime column"
        ) from None
    if parsed.isna().any():
        raise DataError(
            f"{int(parsed.isna().sum())} timestamps in {path.name} are missing; fill or drop those rows"
        )
    epoch = pd.Timestamp("1970-01-01", tz=parsed.dt.tz)  # works for naive and zoned dates
    return (parsed - epoch) // pd.Timedelta(seconds=1)
