"""Readers of the published file formats, each returning the canonical interaction frame.

Every reader returns user_id, item_id, rating (float32) and timestamp (int64 unix
seconds), one row per interaction. Sources with finer clocks (milliseconds) are put in
time order per user before the seconds are cut, so that events within one second keep
their true order through the stable sorts of the protocol. Implicit feedback gets
rating 1.0 (or the play duration, where there is one), so that `min_rating: null` keeps
everything. Ids stay as published: integers where the file has integers, text otherwise.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zipfile
from array import array
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from replay_accelerated.errors import DataError

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

def read_local_log(path: Path, schema, separator: str | None = None, key: str = "dataset.path",
                   pairs_only: bool = False) -> pd.DataFrame:
    """Read a CSV/TSV/parquet log and rename its columns from `feature_schema` to the canonical ones.

    key: the config key that names the file, for errors. pairs_only: a file of (user, item) pairs (the
    candidates of `mode=infer`), of which only those two columns are read."""
    if path.suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        separator = separator or SEPARATORS.get(path.suffix.lower(), ",")
        try:
            frame = pd.read_csv(path, sep=separator, engine="python" if len(separator) > 1 else "c")
        except pd.errors.EmptyDataError:
            frame = pd.DataFrame()
    if frame.empty:
        raise DataError(f"file {path} is empty; point {key} to a file with rows")

    wanted = {schema.query_column: (USER, "query_column"), schema.item_column: (ITEM, "item_column")}
    if not pairs_only:
        wanted[schema.timestamp_column] = (TIMESTAMP, "timestamp_column")
    if schema.rating_column is not None and not pairs_only:
        wanted[schema.rating_column] = (RATING, "rating_column")
    for column, (_, key) in wanted.items():
        if column not in frame.columns:
            raise DataError(
                f"column '{column}' missing in {path.name} (it has {list(frame.columns)}); "
                f"set dataset.feature_schema.{key} to the right column name"
            )
    _check_rows(frame, list(wanted), path)
    frame = frame[list(wanted)].rename(columns={column: canonical for column, (canonical, _) in wanted.items()})
    if pairs_only:
        return frame[[USER, ITEM]]
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
