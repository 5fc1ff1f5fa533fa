"""The MovieLens ratings from the official GroupLens archives, as one DataFrame."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

from replay_accelerated.data.download import fetch
from replay_accelerated.errors import DataError

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]
DTYPES = {"user_id": "int64", "item_id": "int64", "rating": "float32", "timestamp": "int64"}


@dataclass(frozen=True)
class MovieLensArchive:
    """Where an archive lives, its checksum, and how its ratings file is written."""

    url: str
    checksum: str
    member: str
    separator: str
    has_header: bool


# Checksums are the md5 values GroupLens publishes next to each archive (<url>.md5).
MOVIELENS_ARCHIVES: dict[str, MovieLensArchive] = {
    "movielens_1m": MovieLensArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        checksum="md5:c4d9eecfca2ab87c1945afe126590906",
        member="ml-1m/ratings.dat",
        separator="::",
        has_header=False,
    ),
    "movielens_10m": MovieLensArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-10m.zip",
        checksum="md5:ce571fd55effeba0271552578f2648bd",
        member="ml-10M100K/ratings.dat",
        separator="::",
        has_header=False,
    ),
    "movielens_20m": MovieLensArchive(
        url="https://files.grouplens.org/datasets/movielens/ml-20m.zip",
        checksum="md5:cd245b17a1ae2cc31bb14903e1204af3",
        member="ml-20m/ratings.csv",
        separator=",",
        has_header=True,
    ),
}


def load_movielens(
    name: str, data_dir: Path, url: str | None = None, checksum: str | None = None
) -> pd.DataFrame:
    """Download (once) and read the ratings of MovieLens `name`, in file order.

    The archive is kept at `data_dir/movielens/<zip name>`; `url` and `checksum`
    replace the official ones, for mirrors and tests.
    """
    if name not in MOVIELENS_ARCHIVES:
        valid = ", ".join(MOVIELENS_ARCHIVES)
        raise DataError(f"Unknown MovieLens dataset {name!r}; valid names are: {valid}.")
    archive = MOVIELENS_ARCHIVES[name]
    # The official file name even for a mirror, so the cache sits where the error
    # messages tell users to put a hand-downloaded copy.
    destination = Path(data_dir) / "movielens" / archive.url.rsplit("/", 1)[-1]
    path = fetch(url or archive.url, checksum or archive.checksum, destination)

    try:
        with zipfile.ZipFile(path) as zip_file, zip_file.open(archive.member) as member:
            if archive.separator == "::":
                # pandas only splits on a multi-character separator with its slow
                # Python engine; one byte replace lets the C engine read 10M rows fast.
                source: IO[bytes] = io.BytesIO(member.read().replace(b"::", b"\t"))
                separator = "\t"
            else:
                source, separator = member, archive.separator
            return pd.read_csv(
                source,
                sep=separator,
                header=0 if archive.has_header else None,
                names=COLUMNS,
                dtype=DTYPES,
            )
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise DataError(
            f"Could not read {archive.member} from {path}: {error}. Delete the file so it "
            f"is downloaded again, or check that it is the {name} archive."
        ) from error
