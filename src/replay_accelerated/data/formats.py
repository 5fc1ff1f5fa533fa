"""Readers of the published file formats, each returning the canonical interaction frame.

Every reader returns user_id, item_id, rating (float32) and timestamp (int64 unix
seconds), one row per interaction. Sources with finer clocks (milliseconds) are put in
time order per user before the seconds are cut, so that events within one second keep
their true order through the stable sorts of the protocol. Implicit feedback gets
rating 1.0 (or the play duration, where there is one), so that `min_rating: null` keeps
everything. Ids stay as published: integers where the file has integers, text otherwise.
"""

from __future__ import annotations

import codecs
import gzip
import io
import json
import os
import sys
import tarfile
import warnings
import zipfile
from array import array
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from replay_accelerated.errors import ConfigError, DataError

# The canonical interaction frame: every reader returns these columns.
USER, ITEM, RATING, TIMESTAMP = "user_id", "item_id", "rating", "timestamp"
NS_PER_S = 1_000_000_000
SEPARATORS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".txt": "\t", ".dat": "::"}  # of your own text files, by suffix


def canonical(users, items, ratings, seconds) -> pd.DataFrame:
    """The canonical frame from four equally long columns."""
    frame = pd.DataFrame({USER: users, ITEM: items, RATING: ratings, TIMESTAMP: seconds})
    return frame.astype({RATING: "float32", TIMESTAMP: "int64"})


def seconds_in_order(frame: pd.DataFrame, ticks: str, per_second: int) -> pd.DataFrame:
    """Sort `frame` by user and the fine clock `ticks` (stable), then store whole seconds in `timestamp`."""
    frame = frame.sort_values([USER, ticks], kind="stable").reset_index(drop=True)
    frame[TIMESTAMP] = frame[ticks] // per_second
    return frame


def _require(columns, wanted: list[str], path: Path) -> None:
    missing = [column for column in wanted if column not in columns]
    if missing:
        raise DataError(f"{path} has no column(s) {missing} (it has {list(columns)}); it is not the "
                        f"expected file: delete it so that the right one is downloaded, or replace it by hand")


# --- MovieLens (GroupLens zip archives) -------------------------------------------------

def movielens_ratings(path: Path, member: str, separator: str, has_header: bool) -> pd.DataFrame:
    """ratings.dat (`user::item::rating::time`) or ratings.csv (with a header) inside a GroupLens zip."""
    try:
        with zipfile.ZipFile(path) as zip_file, zip_file.open(member) as stream:
            source: IO[bytes] = stream
            if separator == "::":
                # pandas only splits on a multi-character separator with its slow
                # Python engine; one byte replace lets the C engine read 10M rows fast.
                source, separator = io.BytesIO(stream.read().replace(b"::", b"\t")), "\t"
            return pd.read_csv(
                source, sep=separator, header=0 if has_header else None, names=[USER, ITEM, RATING, TIMESTAMP],
                dtype={USER: "int64", ITEM: "int64", RATING: "float32", TIMESTAMP: "int64"},
            )
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise DataError(f"Could not read {member} from {path}: {error}. Delete the file so it is "
                        "downloaded again, or check that it is the right MovieLens archive.") from error


# --- Netflix Prize (archive.org copy of nf_prize_dataset.tar.gz) ------------------------

def netflix_prize(path: Path) -> pd.DataFrame:
    """download/training_set.tar (one file per movie) plus download/qualifying.txt, as the reference does.

    Both are blocks of `movie:` lines followed by `customer,rating,date` (qualifying:
    `customer,date`, its ratings withheld; the reference project counts them as 5).
    Dates have day resolution, so a user's ratings of one day are ordered as in the
    files (movie by movie) and one second apart, which keeps the leave-one-out split
    deterministic.
    """
    parts = []
    try:
        with tarfile.open(path, "r|gz") as outer:
            for member in outer:
                if member.name.endswith("training_set.tar"):
                    with tarfile.open(fileobj=outer.extractfile(member), mode="r|") as inner:
                        for movie in inner:
                            if movie.isfile() and movie.name.endswith(".txt"):
                                parts.append(_netflix_blocks(inner.extractfile(movie).read(), rated=True))
                elif member.name.endswith("qualifying.txt"):
                    parts.append(_netflix_blocks(outer.extractfile(member).read(), rated=False))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"Could not read {path}: {error}. Delete it so that it is downloaded again.") from error
    if not parts:
        raise DataError(f"{path} holds no training_set.tar; it is not the Netflix Prize archive")
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.sort_values([USER, TIMESTAMP], kind="stable").reset_index(drop=True)
    frame[TIMESTAMP] += frame.groupby([USER, TIMESTAMP]).cumcount()
    return frame


def _netflix_blocks(data: bytes, rated: bool) -> pd.DataFrame:
    names = [USER, RATING, "date"] if rated else [USER, "date"]
    rows = pd.read_csv(io.BytesIO(data), header=None, names=names, dtype=str)
    header = rows[USER].str.endswith(":")
    movie = rows[USER].where(header).str[:-1].ffill()
    rows, movie = rows[~header], movie[~header]
    days = pd.to_datetime(rows["date"], format="%Y-%m-%d").to_numpy().astype("datetime64[s]").astype("int64")
    ratings = rows[RATING].astype("float32") if rated else np.full(len(rows), 5.0, dtype="float32")
    return canonical(rows[USER].astype("int64").to_numpy(), movie.astype("int64").to_numpy(), ratings, days)


# --- Amazon Reviews 2023, 5-core rating_only benchmark files (UCSD, McAuley lab) --------

def amazon_ratings(path: Path) -> pd.DataFrame:
    """`user_id,parent_asin,rating,timestamp` (milliseconds) CSV, gzipped."""
    frame = pd.read_csv(path, dtype={"user_id": str, "parent_asin": str, "rating": "float32"})
    _require(frame.columns, ["user_id", "parent_asin", "rating", "timestamp"], path)
    frame = frame.rename(columns={"parent_asin": ITEM, "timestamp": "ms"})
    return seconds_in_order(frame, "ms", 1000)[[USER, ITEM, RATING, TIMESTAMP]]


# --- Yelp Open Dataset reviews ----------------------------------------------------------

def yelp_reviews(path: Path) -> pd.DataFrame:
    """yelp_academic_dataset_review.json: one JSON review per line; stars are the rating."""
    parts = []
    columns = ["user_id", "business_id", "stars", "date"]
    with pd.read_json(path, lines=True, chunksize=200_000, dtype=False) as chunks:
        for chunk in chunks:
            _require(chunk.columns, columns, path)
            parts.append(chunk[columns])
    if not parts:
        raise DataError(f"{path} is empty; download yelp_academic_dataset_review.json again")
    frame = pd.concat(parts, ignore_index=True)
    seconds = pd.to_datetime(frame["date"]).to_numpy().astype("datetime64[s]").astype("int64")
    return canonical(frame["user_id"].to_numpy(), frame["business_id"].to_numpy(), frame["stars"], seconds)


# --- Zvuk and MegaMarket (Sber AI Lab, Kaggle) ------------------------------------------

def zvuk_plays(path: Path) -> pd.DataFrame:
    """zvuk-interactions.parquet: user_id, session_id, datetime, track_id, play_duration; every play kept."""
    frame = _read_parquet(path, ["user_id", "track_id", "datetime", "play_duration"])
    frame = frame.rename(columns={"track_id": ITEM, "play_duration": RATING})
    frame["ns"] = _nanoseconds(frame.pop("datetime"))
    frame = seconds_in_order(frame, "ns", NS_PER_S)
    return frame[[USER, ITEM, RATING, TIMESTAMP]].astype({RATING: "float32"})


PURCHASE = 2  # "purchase" in the dataset's description (0 click, 1 add to cart) and the reference's filter


def megamarket_purchases(path: Path) -> pd.DataFrame:
    """megamarket.parquet: user_id, datetime, event, item_id, category_id, price; purchases only."""
    frame = _read_parquet(path, ["user_id", "item_id", "event", "datetime"], filters=[("event", "==", PURCHASE)])
    frame["ns"] = _nanoseconds(frame.pop("datetime"))
    frame[RATING] = 1.0
    frame = seconds_in_order(frame, "ns", NS_PER_S)
    return frame[[USER, ITEM, RATING, TIMESTAMP]].astype({RATING: "float32"})


def _read_parquet(path: Path, columns: list[str], filters=None) -> pd.DataFrame:
    import pyarrow.parquet as pq

    try:
        names = pq.ParquetFile(path).schema_arrow.names
    except (OSError, ValueError) as error:  # pyarrow raises ArrowInvalid, a ValueError
        raise DataError(f"{path} is not a readable parquet file ({error}); delete it and download it again") from None
    _require(names, columns, path)
    return pd.read_parquet(path, columns=columns, filters=filters)


def _nanoseconds(times: pd.Series) -> np.ndarray:
    """Datetimes (or date strings) as int64 nanoseconds since the epoch, UTC."""
    if pd.api.types.is_numeric_dtype(times):
        raise DataError(f"the time column '{times.name}' holds numbers, where dates were expected; "
                        "the file is not the published version")
    times = pd.to_datetime(times)
    if times.dt.tz is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.to_numpy().astype("datetime64[ns]").astype("int64")


# --- 30Music (Politecnico di Milano; idomaar format) -------------------------------------

def thirty_music_plays(path: Path) -> pd.DataFrame:
    """relations/events.idomaar inside the 30Music tar.gz: one play event per line.

    Tab-separated: `event.play`, event id, unix time, {"playtime": s},
    {"subjects": [{"type": "user", "id": u}], "objects": [{"type": "track", "id": t}, ...]}.
    The rating is the play time in seconds (-1 where unknown).
    """
    # Compact arrays rather than lists: 31M events as Python ints would take gigabytes.
    users, items, playtimes, times = array("q"), array("q"), array("d"), array("q")
    try:
        with tarfile.open(path, "r|*") as archive:
            for member in archive:
                if member.name.endswith("relations/events.idomaar"):
                    for number, line in enumerate(archive.extractfile(member), 1):
                        _thirty_music_line(line.decode("utf-8"), number, users, items, playtimes, times)
                    break
            else:
                raise DataError(f"{path} holds no relations/events.idomaar; it is not the 30Music archive")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"Could not read {path}: {error}. Replace it with the complete 30Music archive.") from error
    return canonical(np.frombuffer(users, np.int64), np.frombuffer(items, np.int64),
                     np.frombuffer(playtimes, np.float64), np.frombuffer(times, np.int64))


def _thirty_music_line(line: str, number: int, users, items, playtimes, times) -> None:
    fields = line.rstrip("\n").split("\t")
    if len(fields) < 5 or not fields[0].startswith("event.play"):
        return
    try:
        properties, links = json.loads(fields[3]), json.loads(fields[4])
        user = links["subjects"][0]["id"]
        for track in links["objects"]:
            users.append(user)
            items.append(track["id"])
            playtimes.append(properties.get("playtime", -1))
            times.append(int(fields[2]))
    except (ValueError, KeyError, IndexError, TypeError, OverflowError) as error:
        raise DataError(f"line {number} of 30Music's events.idomaar is not a play event ({error}): "
                        f"{line[:200]!r}") from None


# --- Gowalla check-ins (Stanford SNAP) ----------------------------------------------------

def gowalla_checkins(path: Path) -> pd.DataFrame:
    """loc-gowalla_totalCheckins.txt.gz: `user, 2010-10-19T23:55:27Z, latitude, longitude, location`."""
    frame = pd.read_csv(path, sep="\t", header=None, usecols=[0, 1, 4], names=[USER, "time", ITEM],
                        dtype={USER: "int64", "time": str, ITEM: "int64"})
    seconds = pd.to_datetime(frame["time"], format="%Y-%m-%dT%H:%M:%SZ").to_numpy()
    return canonical(frame[USER], frame[ITEM], 1.0, seconds.astype("datetime64[s]").astype("int64"))


# --- Item sequences, one user per line (S3Rec / SASRec benchmark files) ------------------

def item_sequences(path: Path) -> pd.DataFrame:
    """`user item1 item2 ...` per line, items in time order, optionally gzipped; no times, no ratings.

    The timestamp is the item's position in its user's sequence (0, 1, 2, ...), which
    only orders events: such logs are split leave-one-out, never by time.
    """
    opener = gzip.open if Path(path).suffix == ".gz" else open
    users, sequences = [], []
    try:
        with opener(path, "rt") as lines:
            for line in lines:
                tokens = line.split()
                if len(tokens) >= 2:
                    users.append(tokens[0])
                    sequences.append(tokens[1:])
    except (OSError, UnicodeDecodeError, EOFError) as error:
        raise DataError(f"Could not read {path} as a text file of item sequences: {error}") from None
    if not users:
        raise DataError(f"{path} holds no sequences; each line must be `user item1 item2 ...` "
                        "separated by spaces")
    lengths = np.fromiter(map(len, sequences), dtype=np.int64, count=len(sequences))
    user_column = _ids(np.repeat(np.asarray(users, dtype=object), lengths))
    item_column = _ids(np.concatenate([np.asarray(items, dtype=object) for items in sequences]))
    frame = canonical(user_column, item_column, 1.0, 0)
    # Position within the user's events, counted on from earlier lines of the same user.
    frame[TIMESTAMP] = frame.groupby(USER, sort=False).cumcount().astype("int64")
    return frame


def _ids(tokens: np.ndarray) -> np.ndarray:
    """Integer ids when every token is an integer, the text otherwise."""
    try:
        return tokens.astype(np.int64)
    except ValueError:
        return tokens.astype(str).astype(object)


# Your own files (`dataset=local`, and the input and candidates of `mode=infer`).

# Characters that separate the fields of text tables, each as `dataset.separator` takes it (a tab as
# `\t`, which pandas reads as a regular expression matching a tab).
SEPARATOR_LIKE = {";": ";", "|": "|", "\t": "\\t", ",": ","}
EXACT_FLOAT_INTEGERS = 2**53  # float64 holds every integer below this one exactly


def local_file(path: str, key: str = "dataset.path") -> Path:
    """The file that `path` (the setting `key`) names, or a DataError saying what it is instead: a folder, nothing,
    unreadable. Every input file is checked here before it is read (the log, and infer's and embeddings' inputs
    before their model is loaded)."""
    file = Path(path).expanduser()
    if file.is_dir():
        names = sorted(child.name for child in file.iterdir() if child.is_file())
        holds = f" (it holds {', '.join(names[:5])}{', ...' if len(names) > 5 else ''})" if names else ""
        raise DataError(f"{key} names the folder {file}{holds}, where a file is needed; set {key} to the "
                        "file inside it")
    if not file.is_file():
        raise DataError(f"{key}={file} does not exist; point {key} to an existing file")
    if not os.access(file, os.R_OK):
        raise _unreadable(file, key)
    return file


def _unreadable(path: Path, key: str) -> DataError:
    return DataError(f"cannot read {path}: permission denied; give yourself read access (chmod u+r '{path}'), "
                     f"or point {key} to a copy you can read")


def read_local_log(path: Path, schema, separator: str | None = None, key: str = "dataset.path",
                   pairs_only: bool = False, encoding: str = "utf-8") -> pd.DataFrame:
    """Read a CSV/TSV/parquet log and rename its columns from `feature_schema` to the canonical ones.

    key: the config key that names the file, for errors. pairs_only: a file of (user, item) pairs (the
    candidates of `mode=infer`), of which only those two columns are read. encoding: of a text file.
    Rows without a user or item id are dropped, and counted in a warning."""
    separator = separator or SEPARATORS.get(path.suffix.lower(), ",")
    if separator == "\\t":  # a tab, as the command line writes it (dataset.separator='\t')
        separator = "\t"
    frame = _read_table(path, separator, encoding, key)
    if frame.empty:
        raise DataError(f"file {path} is empty; point {key} to a file with rows")

    wanted = {schema.query_column: (USER, "query_column"), schema.item_column: (ITEM, "item_column")}
    if not pairs_only:
        wanted[schema.timestamp_column] = (TIMESTAMP, "timestamp_column")
    if schema.rating_column is not None and not pairs_only:
        wanted[schema.rating_column] = (RATING, "rating_column")
    for column, (_, setting) in wanted.items():
        if column not in frame.columns:
            raise DataError(_missing_column(column, setting, list(frame.columns), path, separator))
    frame = _drop_empty_ids(frame[list(wanted)], [schema.query_column, schema.item_column], path, key)
    _check_rows(frame, list(wanted), path)
    frame = frame.rename(columns={column: canonical for column, (canonical, _) in wanted.items()})
    if pairs_only:
        return frame[[USER, ITEM]]
    frame[TIMESTAMP] = _as_seconds(frame[TIMESTAMP], path)
    frame[RATING] = _ratings(frame[RATING], path) if RATING in frame.columns else 1.0
    return frame[[USER, ITEM, RATING, TIMESTAMP]]


def _read_table(path: Path, separator: str, encoding: str, key: str) -> pd.DataFrame:
    """The whole file as a frame (an empty one for an empty text file), or a DataError naming it and the fix."""
    parquet = path.suffix == ".parquet"
    if not parquet:
        try:
            codecs.lookup(encoding)
        except LookupError:
            raise ConfigError(f"dataset.encoding '{encoding}' is not an encoding Python knows; set it to the "
                              f"encoding of {path.name}, e.g. utf-8, latin-1 or cp1252") from None
    try:
        if parquet:
            return pd.read_parquet(path)
        with warnings.catch_warnings():
            # A row with more fields than the header: pandas warns and drops the extra fields (without
            # index_col=False it would take the first column as the index); here it is an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, sep=separator, encoding=encoding, index_col=False,
                               engine="python" if len(separator) > 1 else "c")
    except PermissionError:
        raise _unreadable(path, key) from None
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except UnicodeDecodeError as error:
        raise DataError(_undecodable(path, error, encoding, key)) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning) as error:
        reason = ("a row has more fields than the header line" if isinstance(error, pd.errors.ParserWarning)
                  else str(error).strip().removeprefix("Error tokenizing data. "))
        raise DataError(f"{path} cannot be read as a table of fields separated by {separator!r} ({reason}); every "
                        "row needs as many fields as the header line: fix that row (a field holding the separator "
                        "needs quotes), or set dataset.separator to the file's separator") from None
    except (OSError, ValueError) as error:  # pyarrow's ArrowInvalid is a ValueError
        if not parquet:
            raise
        reason = str(error).removeprefix("Could not open Parquet input source '<Buffer>': ")
        raise DataError(f"{path} is not a readable parquet file ({reason}); it may be truncated or not parquet at "
                        f"all: write it again, or point {key} to another file") from None


def _undecodable(path: Path, error: UnicodeDecodeError, encoding: str, key: str) -> str:
    with open(path, "rb") as file:
        head = file.read(4096)
    if head.startswith(b"PAR1"):
        return f"{path} is a parquet file; give it the .parquet suffix so that it is read as one"
    if b"\x00" in head:  # text in the encodings people use for tables holds no NUL byte
        return (f"{path} is not a text file (it holds binary data); point {key} to a CSV or TSV file, or to a "
                "parquet file named *.parquet")
    return (f"{path} is not {encoding} text (byte {error.object[error.start:error.start + 1]!r} cannot be decoded); "
            "set dataset.encoding to the file's encoding, e.g. dataset.encoding=latin-1 (or cp1252 for files "
            "of Windows programs), or save the file as UTF-8")


def _missing_column(column: str, setting: str, columns: list, path: Path, separator: str) -> str:
    problem = f"column '{column}' missing in {path.name} (it has {columns})"
    if len(columns) == 1:  # one column whose name holds another separator: the file uses that one
        counts = {char: str(columns[0]).count(char) for char in SEPARATOR_LIKE if char != separator}
        likely = max(counts, key=counts.get)
        if counts[likely]:
            return (f"{problem}: its fields seem separated by {likely!r}, not {separator!r}; set "
                    f"dataset.separator='{SEPARATOR_LIKE[likely]}'")
    return f"{problem}; set dataset.feature_schema.{setting} to the right column name"


def _where(path: Path, row) -> str:
    """Where the frame's row label `row` is in the file: a line of a text file (after the header), a parquet row."""
    return f"row {row + 1}" if path.suffix == ".parquet" else f"line {row + 2}"


def _bad_rows(bad: pd.Series, values: pd.Series, path: Path) -> str:
    """How many rows `bad` marks, and the first one's value, quoted, and place in the file."""
    row, count = bad.idxmax(), int(bad.sum())
    return f"on {count:,} row{'s' if count > 1 else ''}, the first '{values[row]}' on {_where(path, row)}"


def _drop_empty_ids(frame: pd.DataFrame, id_columns: list[str], path: Path, key: str) -> pd.DataFrame:
    """`frame` without the rows that have no user or item id (no sequence can hold them), counted in a warning.

    pandas reads an integer column with empty values as float64 (12 as 12.0): such a column gets its
    integers back, so that ids keep their type through the vocabulary, checkpoints and recommendations."""
    empty = frame[id_columns].isna()
    if not empty.any(axis=None):
        return frame
    holed = [column for column in id_columns if empty[column].any()]
    empty = empty.any(axis=1)
    print(f"Warning: dropped {int(empty.sum()):,} rows of {path} ({key}) that have an empty user or item id "
          f"(the first on {_where(path, empty.idxmax())})", file=sys.stderr)
    frame = frame[~empty].copy()
    for column in holed:
        ids = frame[column]
        if pd.api.types.is_float_dtype(ids) and (ids == np.floor(ids)).all():
            if (ids.abs() >= EXACT_FLOAT_INTEGERS).any():
                raise DataError(f"the ids of column '{column}' in {path.name} are too long to be read exactly from "
                                "a column with empty values (pandas reads it as floats); delete the rows with an "
                                "empty id from the file")
            frame[column] = ids.astype("int64")
    return frame


def _check_rows(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    """No repeated header line and no id column mixing Python types (e.g. 12 and '12' from CSV chunks)."""
    repeats = (frame[columns].astype(str) == pd.Series(columns, index=columns)).all(axis=1)
    if repeats.any():
        raise DataError(f"{_where(path, repeats.idxmax())} of {path.name} repeats the header (files concatenated "
                        "with their headers?); delete the repeated header lines")
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
    """Numeric or datetime timestamps as int64 seconds (datetime strings are parsed).

    A missing or unreadable timestamp stops the run, quoted with its line, so that it can be found."""
    missing = timestamps.isna()
    if missing.any():
        raise DataError(f"{int(missing.sum()):,} timestamps in {path.name} are missing (the first on "
                        f"{_where(path, missing.idxmax())}); fill or drop those rows")
    values = timestamps
    if not (pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values)):
        # Text: numbers or dates, whichever reads more of them; the values that neither reads are quoted.
        values = pd.to_numeric(timestamps, errors="coerce")
        if values.isna().any():
            dates = _dates(timestamps, path)
            values = dates if dates.notna().sum() > values.notna().sum() else values
        unreadable = values.isna()
        if unreadable.any():
            raise DataError(
                f"timestamps in {path.name} are neither numbers nor dates {_bad_rows(unreadable, timestamps, path)}; "
                "fix or drop those rows (dates in one format, e.g. 2024-01-31 12:00:00), or set "
                "dataset.feature_schema.timestamp_column to a numeric or datetime column"
            )
    if pd.api.types.is_datetime64_any_dtype(values):
        epoch = pd.Timestamp("1970-01-01", tz=values.dt.tz)  # works for naive and zoned dates
        return (values - epoch) // pd.Timedelta(seconds=1)
    infinite = ~np.isfinite(values.astype("float64"))
    if infinite.any():
        raise DataError(f"timestamps in {path.name} are infinite {_bad_rows(infinite, timestamps, path)}; fix or drop "
                        "those rows")
    return values.astype("int64")


def _dates(texts: pd.Series, path: Path) -> pd.Series:
    """`texts` as datetimes, NaT where one does not read as a date in the format of the others."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "could not infer format": each is parsed on its own
            return pd.to_datetime(texts, errors="coerce")
    except (ValueError, TypeError) as error:  # e.g. dates of several time zones
        raise DataError(f"the timestamps in {path.name} cannot be read as dates ({error}); write them in one "
                        "format and time zone, or as unix seconds") from None


def _ratings(ratings: pd.Series, path: Path) -> pd.Series:
    """The rating column as numbers, or a DataError quoting the first that is not one."""
    numbers = pd.to_numeric(ratings, errors="coerce")
    unreadable = numbers.isna() & ratings.notna()
    if unreadable.any():
        raise DataError(f"ratings in {path.name} are not numbers {_bad_rows(unreadable, ratings, path)}; write them "
                        "as numbers (e.g. 4 or 4.5), or set dataset.feature_schema.rating_column=null if the log has "
                        "no ratings")
    return numbers
