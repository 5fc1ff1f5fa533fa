"""Item side features: a table of what each item is, read once and encoded for every item the model knows.

Declared in `dataset.item_features` (config.py's ItemFeatures):

    item_features:
      path: ../shared/data/s3rec_amazon-beauty_item2attributes.json.gz
      categorical_list: [attributes]

The table is one row per item: an id column (`item_column`) and the feature columns, each declared in the list
of its type:
- `categorical`: one value per item (a brand), any type;
- `categorical_list`: several values per item (genres): a list (parquet, JSON) or a text of values
  joined by `list_separator` (CSV, TSV);
- `numerical`: one number per item (a year, a price).
Formats, by the file name unless `format` says: CSV (`.csv`), TSV (`.tsv`), parquet, JSON (`.json`,
optionally `.gz`: either `{item id: [values]}`, the S3-Rec attribute files, read as the one declared
column, or `{item id: {column: value}}`), and `movielens`: MovieLens' movies file (`movies.dat` of ML-1M
and ML-10M, `movies.csv` of ML-20M, or the GroupLens zip holding it: without a path, the archive of
`dataset=movielens_*`), whose columns are `genres` (a list) and `year` (from the title);
`synthetic` needs no file: for every item of the log, `genres` (1 + Poisson(1) of 20, at most 6: about 2 per
item as MovieLens-20M's) and a log-normal `price`, seeded, to measure what features cost at any scale.

Encoding, per item index of the vocabulary (data/sequences.py):
- categorical values get codes 0..cardinality-1 in sorted order (the values of the whole table, so
  that a feature's codes do not depend on which items the log kept); a list is padded to the longest
  list with the padding code `cardinality`, as RePlay's TensorSchema (its padding value is the
  cardinality); an item without a row, or without a value, gets the padding code only;
- numbers are standardised over the items that have one (mean 0, standard deviation 1, so that a year
  and a price reach the linear map on one scale); an item without one gets 0, the mean.
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from replay_accelerated.data.formats import _read_table, _where, local_file
from replay_accelerated.data.sequences import ItemVocabulary
from replay_accelerated.errors import ConfigError, DataError

FEATURE_TYPES = ("categorical", "categorical_list", "numerical")
FORMATS = ("csv", "tsv", "parquet", "json", "movielens", "synthetic")
SYNTHETIC_GENRES = 20  # `synthetic`: genres per catalog, about 2 per item, as MovieLens-20M's
KEY = "dataset.item_features"


@dataclass
class ItemFeatures:
    """Encoded features, one row per item index: `codes[name]` int64 [n_items] (categorical) or
    [n_items, longest list] (categorical_list), padded with the cardinality, `len(values[name])`, where
    `values[name]` is the value of each code; `numbers[name]` float32 [n_items]; `matched`: the share of the
    vocabulary's items that have a row."""

    kinds: dict[str, str]
    values: dict[str, list]
    codes: dict[str, np.ndarray]
    numbers: dict[str, np.ndarray]
    matched: float

    def spec(self) -> dict[str, dict]:
        """What the model's shapes need to know of each feature, and the value of each code (a warm start
        matches the rows of two catalogs' feature values by them); stored with every checkpoint."""
        return {name: {"type": kind, "cardinality": len(self.values.get(name, [])),
                       "width": self.codes[name].shape[1] if kind == "categorical_list" else 1,
                       "values": self.values.get(name, [])}
                for name, kind in self.kinds.items()}


def declared_columns(config) -> dict[str, str]:
    """Feature column -> type, from the lists `config.categorical`, `.categorical_list` and `.numerical`."""
    return {name: kind for kind in FEATURE_TYPES for name in config[kind]}


def declaration_problem(config) -> tuple[str, str] | None:
    """(key, problem) where the declaration cannot be read, else None."""
    columns = [name for kind in FEATURE_TYPES for name in config[kind]]
    if columns and config.path is None and config.format not in ("synthetic", "movielens"):
        return f"{KEY}.path", "features are declared but no table is named; set it to the file of item features"
    if config.path is not None and not columns:
        return (f"{KEY}.categorical_list", "the feature table declares no feature column; list them by type, e.g. "
                f"{KEY}.categorical_list=[genres] {KEY}.numerical=[year]")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        return f"{KEY}.{FEATURE_TYPES[0]}", f"column '{repeated[0]}' is declared more than once; give it one type"
    if config.item_column in columns:
        return (f"{KEY}.item_column", f"'{config.item_column}', the item id column, is also declared a feature; "
                "declare only the feature columns")
    if config.format is not None and config.format not in FORMATS:
        return f"{KEY}.format", f"'{config.format}' is not one of {list(FORMATS)} or null (from the file name)"
    return None


def check_declaration(config) -> None:
    problem = declaration_problem(config)
    if problem is not None:
        raise ConfigError(f"{problem[0]}: {problem[1]}")


def read_item_features(config, vocabulary: ItemVocabulary, archive: Path | None = None) -> ItemFeatures:
    """The feature table of `config` (dataset.item_features) encoded for the items of `vocabulary`; `archive`:
    the dataset's GroupLens zip, read by the `movielens` format without a path."""
    check_declaration(config)
    if config.format == "synthetic":
        path, table = Path("synthetic item features"), _synthetic(vocabulary, config.item_column)
    elif config.path is None:  # movielens: the ratings' archive
        if archive is None:
            raise ConfigError(f"{KEY}.format=movielens without {KEY}.path reads the movies file of a "
                              f"dataset=movielens_1m, movielens_10m or movielens_20m archive; set {KEY}.path to "
                              "the movies file (movies.dat or movies.csv)")
        path, table = archive, _read_movielens(archive, config)
    else:
        path = local_file(config.path, key=f"{KEY}.path")
        table = _read(path, config)
    if config.item_column not in table.columns:
        raise DataError(f"column '{config.item_column}' missing in {path.name} (it has {list(table.columns)}); "
                        f"set {KEY}.item_column to the column of item ids")
    columns = declared_columns(config)
    for name, kind in columns.items():
        if name not in table.columns:
            raise DataError(f"column '{name}' declared in {KEY}.{kind} is missing in {path.name} (it has "
                            f"{list(table.columns)}); declare the file's column names")
    table = table.dropna(subset=[config.item_column])  # original row labels: errors name the file's lines
    ids = table[config.item_column]
    repeated = ids.astype(str).duplicated()
    if repeated.any():
        raise DataError(f"item {str(ids[repeated].iloc[0])!r} has several rows in {path.name} (the second on "
                        f"{_where(path, repeated.idxmax())}); keep one row per item")
    index = pd.Series(_encode(ids, vocabulary), index=table.index)
    known = index >= 0
    matched = int(known.sum()) / len(vocabulary)
    if not known.any():
        raise DataError(f"no item of {path.name} is an item of the log (its ids look like {list(ids.head(3))}, the "
                        f"log's like {list(vocabulary.item_ids[:3])}); check {KEY}.item_column and that the "
                        "file belongs to this dataset")
    if matched < 1:
        print(f"Warning: {path.name} has features for {matched:.1%} of the {len(vocabulary):,} items of the log; "
              "the others get the padding value", file=sys.stderr)
    rows = index[known].to_numpy()
    features = ItemFeatures({}, {}, {}, {}, matched)
    for name, kind in columns.items():
        column = table[name]
        features.kinds[name] = kind
        if kind == "numerical":
            features.numbers[name] = _numbers(column, known, rows, len(vocabulary), path, name)
        else:
            lists = column.map(lambda value: _as_list(value, config.list_separator)) if kind == "categorical_list" \
                else column.map(lambda value: [] if _missing(value) else [value])
            values = sorted({_plain(value) for row in lists for value in row},
                            key=lambda value: (str(type(value)), value))
            code_of = {value: code for code, value in enumerate(values)}
            cardinality = len(values)
            width = max(1, max(len(row) for row in lists[known]))
            codes = np.full((len(vocabulary), width), cardinality, dtype=np.int64)
            for row, items in zip(rows, lists[known]):
                codes[row, :len(items)] = [code_of[_plain(value)] for value in items]
            features.values[name] = values
            features.codes[name] = codes if kind == "categorical_list" else codes[:, 0]
    return features


def _read(path: Path, config) -> pd.DataFrame:
    """The table at `path` as a frame, by `config.format` or the file name."""
    name = path.name.lower().removesuffix(".gz")
    form = config.format or next((suffix for suffix in ("parquet", "json", "tsv", "csv") if name.endswith(suffix)),
                                 "movielens" if name.startswith("movies.") else None)
    if form is None:
        raise ConfigError(f"{KEY}.path={path} is neither .csv, .tsv, .parquet, .json nor a MovieLens movies file; "
                          f"set {KEY}.format to one of {list(FORMATS)}")
    if form == "json":
        return _read_json(path, config)
    if form == "movielens":
        return _read_movielens(path, config)
    if form == "parquet":
        return pd.read_parquet(path)
    return _read_table(path, config.separator or ("\t" if form == "tsv" else ","), "utf-8", f"{KEY}.path")


def _encode(ids: pd.Series, vocabulary: ItemVocabulary) -> np.ndarray:
    """Item indices of the table's ids (-1: not an item of the log), compared as the log's ids are: integers
    where the log's are (a JSON file's keys are text), text otherwise."""
    text = ids.astype(str)
    if vocabulary.item_ids.dtype.kind not in "iu":
        return vocabulary.encode(text)
    numbers = pd.to_numeric(text, errors="coerce")
    integral = numbers.notna() & (numbers == np.floor(numbers))
    index = np.full(len(ids), -1, dtype=np.int64)
    index[integral.to_numpy()] = vocabulary.encode(numbers[integral].astype(np.int64))
    return index


def _synthetic(vocabulary: ItemVocabulary, item_column: str) -> pd.DataFrame:
    """The `synthetic` format's table for every item of `vocabulary` (see the module doc)."""
    rng = np.random.default_rng(0)
    n_items = len(vocabulary)
    counts = 1 + rng.poisson(1.0, n_items).clip(max=5)
    drawn = rng.random((n_items, SYNTHETIC_GENRES)).argsort(axis=1)[:, :6]  # distinct genres per item
    return pd.DataFrame({item_column: vocabulary.item_ids,
                         "genres": [row[:count].tolist() for row, count in zip(drawn, counts)],
                         "price": rng.lognormal(3.0, 1.0, n_items)})


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_json(path: Path, config) -> pd.DataFrame:
    """`{id: [values]}` (as the one declared column) or `{id: {column: value}}`."""
    try:
        with _open_text(path) as file:
            content = json.load(file)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path} cannot be read as JSON ({error}); {KEY}.path needs an object of item id -> "
                        "features") from None
    if not isinstance(content, dict) or not content:
        raise DataError(f"{path} holds no object of item id -> features; write it as {{\"12\": [3, 7], ...}} or "
                        "{\"12\": {\"brand\": \"x\"}, ...}")
    first = next(iter(content.values()))
    if isinstance(first, dict):
        frame = pd.DataFrame.from_dict(content, orient="index")
    else:
        columns = list(declared_columns(config))
        if len(columns) != 1:
            raise ConfigError(f"{path.name} maps each item to one list of values, so {KEY} declares one feature "
                              f"for it, e.g. {KEY}.categorical_list=[attributes] (it declares {columns})")
        frame = pd.DataFrame({columns[0]: pd.Series(content)})
    return frame.rename_axis(config.item_column).reset_index()


def _read_movielens(path: Path, config) -> pd.DataFrame:
    """MovieLens' movies file (or the GroupLens zip holding it): item id, title (year), genres joined by '|'."""
    name = path.name.lower().removesuffix(".gz")
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            members = [member for member in archive.namelist() if member.endswith(("/movies.dat", "/movies.csv"))]
            if not members:
                raise DataError(f"{path} holds no movies.dat or movies.csv; set {KEY}.path to the movies file")
            name, data = members[0], archive.read(members[0])
    else:
        with gzip.open(path) if path.suffix == ".gz" else open(path, "rb") as file:
            data = file.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:  # GroupLens ships ML-1M's movies.dat in Latin-1
        text = data.decode("latin-1")
    if name.endswith(".csv"):  # ML-20M: movieId,title,genres with a header
        frame = pd.read_csv(io.StringIO(text))
        frame.columns = [config.item_column, "title", "genres"]
    else:  # ML-1M and ML-10M: MovieID::Title::Genres
        rows = [line.split("::") for line in text.splitlines() if line.strip()]
        frame = pd.DataFrame(rows, columns=[config.item_column, "title", "genres"])
    frame["genres"] = frame["genres"].map(lambda text: [] if text == "(no genres listed)" else text.split("|"))
    frame["year"] = pd.to_numeric(frame["title"].str.extract(r"\((\d{4})\)\s*$")[0], errors="coerce")
    return frame


def _plain(value):
    """A numpy scalar as the Python value (checkpoints store the values as plain data)."""
    return value.item() if isinstance(value, np.generic) else value


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _as_list(value, separator: str) -> list:
    """A list feature's values: a list as it is, a text split at `separator`, nothing for a missing value."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [item for item in value if not _missing(item)]
    if _missing(value):
        return []
    return [part for part in str(value).split(separator) if part]


def _numbers(column: pd.Series, known: pd.Series, rows: np.ndarray, n_items: int, path: Path, name: str) -> np.ndarray:
    """A numerical column standardised over the items that have a value, 0 for the others."""
    numbers = pd.to_numeric(column, errors="coerce")
    unreadable = numbers.isna() & column.notna()
    if unreadable.any():
        row = unreadable.idxmax()
        raise DataError(f"column '{name}' of {path.name} is declared numerical but holds '{column[row]}' on "
                        f"{_where(path, row)} ({int(unreadable.sum()):,} values are not numbers); fix those values, "
                        f"or declare it in {KEY}.categorical")
    values = np.zeros(n_items, dtype=np.float64)
    present = np.zeros(n_items, dtype=bool)
    values[rows] = numbers[known].fillna(0).to_numpy()
    present[rows] = numbers[known].notna().to_numpy()
    if present.any():
        mean = values[present].mean()
        std = values[present].std() or 1.0
        values = np.where(present, (values - mean) / std, 0.0)
    return values.astype(np.float32)
