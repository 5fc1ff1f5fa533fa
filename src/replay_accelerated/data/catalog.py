"""The public datasets of the reference project: where each file comes from and how it is read.

One table, `CATALOG`, names for every dataset its file (kept at
`paths.data_dir/<folder>/<file>`), where that file comes from (a URL, a Kaggle dataset,
or only by hand when the owner asks for a login or a licence acceptance), its checksum
when the source publishes a fixed file, and the reader of its format (`formats.py`).
`catalog_file` gets the file onto the disk through `download.fetch`; `load_catalog`
reads it. A file put in place by hand is always used, so every dataset works offline.

Credentials are never stored: Kaggle files are downloaded only when the user's own
KAGGLE_USERNAME and KAGGLE_KEY are set in the environment, and sent to Kaggle alone.
"""

from __future__ import annotations

import base64
import os
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable
from urllib.parse import quote

import pandas as pd

from replay_accelerated.data import formats
from replay_accelerated.data.download import fetch, file_checksum, parse_checksum
from replay_accelerated.errors import DataError, DownloadError

KAGGLE_API = "https://www.kaggle.com/api/v1/datasets/download"
AMAZON_2023_5CORE = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/benchmark/5core/rating_only/"
GROUPLENS = "https://files.grouplens.org/datasets/movielens/"


@dataclass(frozen=True)
class DatasetSource:
    """One dataset: its file, where the file comes from, and how it is read."""

    folder: str  # under paths.data_dir
    file: str  # the file's name there
    reader: Callable[[Path], pd.DataFrame]
    page: str  # where a person reads about the dataset and gets it by hand
    url: str | None = None  # direct download
    checksum: str | None = None  # of the published file; None: the source publishes no fixed file
    kaggle: str | None = None  # "owner/dataset" on Kaggle (needs the user's API token)
    by_hand: str = ""  # how to get the file by hand, when that is not simply "download it from `page`"
    order_only: bool = False  # the file orders events but has no times: leave-one-out only


def _movielens(zip_name: str, member: str, separator: str, has_header: bool, md5: str, page: str) -> DatasetSource:
    # Checksums are the md5 values GroupLens publishes next to each archive (<url>.md5).
    return DatasetSource(
        "movielens", zip_name, partial(formats.movielens_ratings, member=member, separator=separator,
                                       has_header=has_header),
        page=f"https://grouplens.org/datasets/movielens/{page}/", url=GROUPLENS + zip_name, checksum=f"md5:{md5}",
    )


def _amazon(category: str) -> DatasetSource:
    return DatasetSource("amazon", f"{category}.csv.gz", formats.amazon_ratings,
                         page="https://amazon-reviews-2023.github.io/", url=f"{AMAZON_2023_5CORE}{category}.csv.gz")


CATALOG: dict[str, DatasetSource] = {
    "movielens_1m": _movielens("ml-1m.zip", "ml-1m/ratings.dat", "::", False, "c4d9eecfca2ab87c1945afe126590906",
                               "1m"),
    "movielens_10m": _movielens("ml-10m.zip", "ml-10M100K/ratings.dat", "::", False,
                                "ce571fd55effeba0271552578f2648bd", "10m"),
    "movielens_20m": _movielens("ml-20m.zip", "ml-20m/ratings.csv", ",", True, "cd245b17a1ae2cc31bb14903e1204af3",
                                "20m"),
    # The Netflix Prize archive as mirrored by the Internet Archive; the md5 is the one
    # published with it (also pinned by FederatedScope and netflix-prize-fixups).
    "netflix": DatasetSource(
        "netflix", "nf_prize_dataset.tar.gz", formats.netflix_prize,
        page="https://archive.org/details/nf_prize_dataset.tar",
        url="https://archive.org/download/nf_prize_dataset.tar/nf_prize_dataset.tar.gz",
        checksum="md5:a8f23d2d76461211c6b4c0ca6df2547d",
    ),
    # Amazon Reviews 2023, 5-core rating-only benchmark files, the reference project's
    # choice: its "games" is Toys_and_Games. UCSD publishes no checksums for them.
    "amazon_games": _amazon("Toys_and_Games"),
    "amazon_beauty": _amazon("Beauty_and_Personal_Care"),
    "amazon_sports": _amazon("Sports_and_Outdoors"),
    "zvuk": DatasetSource("zvuk", "zvuk-interactions.parquet", formats.zvuk_plays,
                          page="https://www.kaggle.com/datasets/alexxl/zvuk-dataset", kaggle="alexxl/zvuk-dataset"),
    "megamarket": DatasetSource("megamarket", "megamarket.parquet", formats.megamarket_purchases,
                                page="https://www.kaggle.com/datasets/alexxl/megamarket", kaggle="alexxl/megamarket"),
    "yelp": DatasetSource(
        "yelp", "yelp_academic_dataset_review.json", formats.yelp_reviews,
        page="https://www.yelp.com/dataset", kaggle="yelp-dataset/yelp-dataset",
        by_hand="accept the Yelp Dataset licence at https://www.yelp.com/dataset, download the JSON archive and "
                "extract yelp_academic_dataset_review.json from its yelp_dataset.tar (or download that file from "
                "https://www.kaggle.com/datasets/yelp-dataset/yelp-dataset)",
    ),
    "30music": DatasetSource(
        "30music", "ThirtyMusic.tar.gz", formats.thirty_music_plays, page="https://recsys.deib.polimi.it/datasets/",
        by_hand="download the 30Music dataset archive (the tar.gz holding relations/events.idomaar) from "
                "https://recsys.deib.polimi.it/datasets/; it is handed out through a form, not a fixed URL",
    ),
    # SNAP publishes no checksum; this md5 of the (unchanged since 2011) file is the one
    # pinned by the DataRec library (sisinflab/DataRec), whose MovieLens md5s match GroupLens'.
    "gowalla": DatasetSource(
        "gowalla", "loc-gowalla_totalCheckins.txt.gz", formats.gowalla_checkins,
        page="https://snap.stanford.edu/data/loc-gowalla.html",
        url="https://snap.stanford.edu/data/loc-gowalla_totalCheckins.txt.gz",
        checksum="md5:8ebd5ed2dd376d8982987c49429cb9f9",
    ),
    # The S3Rec benchmark's Amazon Beauty sequences (5-core, re-indexed, no times), at a
    # fixed commit; the sha256 is that of the file at that commit.
    "s3rec_beauty": DatasetSource(
        "s3rec", "Beauty.txt", formats.item_sequences, page="https://github.com/RUCAIBox/CIKM2020-S3Rec",
        url="https://raw.githubusercontent.com/RUCAIBox/CIKM2020-S3Rec/"
            "2a81540ae18615d88ef88227b0c066e5b74781e5/data/Beauty.txt",
        checksum="sha256:226cce9c3105299ca0db9615d7d3fb32b3175e90da43100ae352599f0f0107b8",
        order_only=True,
    ),
}


def source_of(name: str) -> DatasetSource:
    if name not in CATALOG:
        raise DataError(f"Unknown dataset {name!r}; valid names are: {', '.join(CATALOG)}.")
    return CATALOG[name]


# The GroupLens archives: each also holds its movies' titles and genres (data/item_features.py's `movielens`).
MOVIELENS_SOURCES = tuple(name for name, source in CATALOG.items() if source.folder == "movielens")


def catalog_path(name: str, data_dir: Path) -> Path:
    """Where the file of dataset `name` is kept (and where a hand-downloaded copy is picked up)."""
    source = source_of(name)
    return Path(data_dir) / source.folder / source.file


def catalog_file(name: str, data_dir: Path, url: str | None = None, checksum: str | None = None) -> Path:
    """The file of dataset `name` on disk, downloaded first if needed.

    `url` and `checksum` replace the table's (a mirror, or a test server); a mirror is
    fetched as a plain URL even for a Kaggle dataset.
    """
    source = source_of(name)
    destination = catalog_path(name, data_dir)
    checksum = checksum or source.checksum
    if url or source.url:
        return fetch(url or source.url, checksum, destination, page=source.page)
    if destination.exists():
        _check_by_hand(destination, checksum)
        return destination
    if source.kaggle:
        token = kaggle_token()
        if token is not None:
            return _fetch_from_kaggle(source, destination, token)
    raise DownloadError(_by_hand_message(name, source, destination))


def load_catalog(name: str, data_dir: Path, url: str | None = None, checksum: str | None = None) -> pd.DataFrame:
    """Get (once) and read dataset `name`, as the canonical interaction frame."""
    path = catalog_file(name, data_dir, url, checksum)
    return source_of(name).reader(path)


def kaggle_token() -> tuple[str, str] | None:
    """The user's Kaggle user name and API key, from KAGGLE_USERNAME and KAGGLE_KEY; None if unset."""
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    return (user, key) if user and key else None


def _fetch_from_kaggle(source: DatasetSource, destination: Path, token: tuple[str, str]) -> Path:
    """One file of a Kaggle dataset through Kaggle's API; Kaggle may send it zipped."""
    url = f"{KAGGLE_API}/{source.kaggle}/{quote(source.file)}"
    login = base64.b64encode(f"{token[0]}:{token[1]}".encode()).decode()
    download = destination.with_name(destination.name + ".download")
    try:
        fetch(url, None, download, headers={"Authorization": f"Basic {login}"}, page=source.page)
    except DownloadError as error:
        raise DownloadError(f"{error} Check that KAGGLE_USERNAME and KAGGLE_KEY hold your API token and that you "
                            f"accepted the dataset's terms at {source.page}.") from error
    if zipfile.is_zipfile(download):
        with zipfile.ZipFile(download) as archive:
            members = [n for n in archive.namelist() if n.rsplit("/", 1)[-1] == source.file] or archive.namelist()
            part = destination.with_name(destination.name + ".part")
            with archive.open(members[0]) as packed, open(part, "wb") as unpacked:
                while chunk := packed.read(1 << 20):
                    unpacked.write(chunk)
        os.replace(part, destination)
        download.unlink()
    else:
        os.replace(download, destination)
    return destination


def _check_by_hand(path: Path, checksum: str | None) -> None:
    if checksum is None:
        return
    algorithm, expected = parse_checksum(checksum)
    actual = file_checksum(path, algorithm)
    if actual != expected:
        raise DownloadError(f"{path} has checksum {algorithm}:{actual}, but {checksum} was expected; replace it with "
                            "the published file, or set dataset.checksum to your copy's checksum")


def _by_hand_message(name: str, source: DatasetSource, destination: Path) -> str:
    how = source.by_hand or f"download {source.file} from {source.page}"
    kaggle = ""
    if source.kaggle:
        kaggle = (f" Or let it be downloaded from Kaggle ({source.kaggle}): create an API token at "
                  "https://www.kaggle.com/settings (section API) and set the environment variables "
                  "KAGGLE_USERNAME and KAGGLE_KEY to its username and key.")
    return (f"Dataset '{name}' cannot be downloaded without you: {how}, and put the file at {destination} "
            f"(it is read from there from then on).{kaggle}")
