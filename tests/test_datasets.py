"""The dataset catalog: every reader on a tiny file in its published format, downloads with
checksums and logins against a local HTTP server, the errors that send a user to fetch a file
by hand, the sequences loader with its leave-one-out split row by row, and every dataset config."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import SHARED_DATA, compose
from file_server import FileServer
from replay_accelerated.config import CONFIG_DIR, Preprocess
from replay_accelerated.data import catalog, sources
from replay_accelerated.data.catalog import CATALOG, catalog_path, load_catalog
from replay_accelerated.data.formats import item_sequences
from replay_accelerated.data.pipeline import prepare_data
from replay_accelerated.data.split import split_interactions
from replay_accelerated.data.sources import source_fingerprint
from replay_accelerated.errors import ConfigError, DataError, DownloadError

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


# --- helpers --------------------------------------------------------------------------------

def tar_bytes(members: dict[str, bytes], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def frame(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"rating": "float32", "timestamp": "int64"})


def day(date: str) -> int:
    return int(pd.Timestamp(date).value // 10**9)


def place(data_dir: Path, name: str, data: bytes) -> Path:
    """Put a file where the catalog expects a hand-downloaded copy of dataset `name`."""
    path = catalog_path(name, data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- the config lists agree with the catalog (every config file composes: test_config_errors.py) ------------------------------------

DATASET_CONFIGS = sorted(path.stem for path in (CONFIG_DIR / "dataset").glob("*.yaml"))


def test_the_config_lists_match_the_catalog() -> None:
    assert set(sources.SOURCES) == {"synthetic", "local", "sequences"} | set(CATALOG)
    assert set(sources.ORDER_ONLY_SOURCES) == {"sequences"} | {name for name, s in CATALOG.items() if s.order_only}
    for name, source in CATALOG.items():
        assert name in DATASET_CONFIGS, f"configs/dataset/{name}.yaml is missing"
        assert source.url or source.kaggle or source.by_hand, name  # every file can be obtained somehow
        assert source.checksum is None or source.checksum.split(":")[0] in ("md5", "sha256"), name
        assert source.checksum is None or source.url, name  # a pinned file has a fixed URL


@pytest.mark.parametrize(("overrides", "words"), [
    (["dataset=sequences", "dataset.path=x.txt", "dataset.preprocess.protocol=global_time"],
     ["no timestamps", "dataset.preprocess.protocol=leave_one_out"]),
    (["dataset=netflix", "dataset.path=/tmp/netflix.tar.gz"], ["always read from paths.data_dir", "dataset=local"]),
    (["dataset.preprocess.protocol=random"], ["'random' is not one of", "leave_one_out"]),
    (["dataset=sequences"], ["dataset.path=/path/to/file"]),
])
def test_config_mistakes_name_the_fix(home: Path, overrides: list[str], words: list[str]) -> None:
    with pytest.raises(ConfigError) as raised:
        compose(home, *overrides)
    for word in words:
        assert word in str(raised.value)


# --- each reader on a tiny file in the real format ---------------------------------------------

def test_netflix_archive_downloaded_checked_and_read(server: FileServer, tmp_path: Path) -> None:
    training = tar_bytes({
        "training_set/mv_0000001.txt": b"1:\n6,3,2005-09-06\n7,5,2005-09-06\n6,4,2005-09-05\n",
        "training_set/mv_0000002.txt": b"2:\n6,5,2005-09-06\n",
    })
    archive = tar_bytes({
        "download/README": b"Netflix Prize\n",
        "download/training_set.tar": training,
        "download/qualifying.txt": b"1:\n8,2005-12-01\n2:\n7,2005-09-06\n",
    }, mode="w:gz")
    url, checksum = server.put("nf_prize_dataset.tar.gz", archive)
    data_dir = tmp_path / "data"

    ratings = load_catalog("netflix", data_dir, url=url, checksum=checksum)

    assert (data_dir / "netflix" / "nf_prize_dataset.tar.gz").read_bytes() == archive
    # Same-day ratings of a user are one second apart in file order; qualifying ratings count as 5.
    expected = frame([
        (6, 1, 4.0, day("2005-09-05")), (6, 1, 3.0, day("2005-09-06")), (6, 2, 5.0, day("2005-09-06") + 1),
        (7, 1, 5.0, day("2005-09-06")), (7, 2, 5.0, day("2005-09-06") + 1), (8, 1, 5.0, day("2005-12-01")),
    ])
    pd.testing.assert_frame_equal(ratings, expected)

    # A second load uses the file on disk: no new request.
    requests = len(server.requests)
    load_catalog("netflix", data_dir, url=url, checksum=checksum)
    assert len(server.requests) == requests


def test_wrong_checksum_is_refused(server: FileServer, tmp_path: Path) -> None:
    url, _ = server.put("loc-gowalla_totalCheckins.txt.gz", gzip.compress(b"0\t2010-10-19T23:55:27Z\t1\t2\t3\n"))
    with pytest.raises(DownloadError) as raised:
        load_catalog("gowalla", tmp_path, url=url)  # against the pinned md5 of the real file
    assert CATALOG["gowalla"].checksum in str(raised.value) and "was deleted" in str(raised.value)
    assert not catalog_path("gowalla", tmp_path).exists()


def test_amazon_2023_ratings_keep_millisecond_order(tmp_path: Path) -> None:
    text = ("user_id,parent_asin,rating,timestamp\n"
            "AGK,B006GBITXC,3.0,1452647382500\n"
            "AGK,B00TLEMSVK,4.0,1452647382100\n"
            "BXY,B006GBITXC,5.0,1471541996000\n")
    place(tmp_path, "amazon_beauty", gzip.compress(text.encode()))
    ratings = load_catalog("amazon_beauty", tmp_path)  # no checksum published: the file in place is used
    expected = frame([("AGK", "B00TLEMSVK", 4.0, 1452647382), ("AGK", "B006GBITXC", 3.0, 1452647382),
                      ("BXY", "B006GBITXC", 5.0, 1471541996)])
    pd.testing.assert_frame_equal(ratings, expected)


def test_yelp_reviews(tmp_path: Path) -> None:
    reviews = [
        {"review_id": "r1", "user_id": "u1", "business_id": "b1", "stars": 4, "useful": 0,
         "text": "Good, \"really\" good.\nCome back!", "date": "2018-07-07 22:09:11"},
        {"review_id": "r2", "user_id": "u2", "business_id": "b1", "stars": 2, "useful": 3,
         "text": "", "date": "2012-01-03 15:28:18"},
    ]
    place(tmp_path, "yelp", "".join(json.dumps(review) + "\n" for review in reviews).encode())
    expected = frame([("u1", "b1", 4.0, 1531001351), ("u2", "b1", 2.0, 1325604498)])
    pd.testing.assert_frame_equal(load_catalog("yelp", tmp_path), expected)


def test_zvuk_plays(tmp_path: Path) -> None:
    plays = pd.DataFrame({
        "user_id": [1, 1, 2], "session_id": [10, 10, 20],
        "datetime": pd.to_datetime(["2023-03-01 10:00:05", "2023-03-01 10:00:01", "2023-03-02 00:00:00"]),
        "track_id": [100, 101, 100], "play_duration": [30, 200, 5],
    })
    path = catalog_path("zvuk", tmp_path)
    path.parent.mkdir(parents=True)
    plays.to_parquet(path)
    expected = frame([(1, 101, 200.0, day("2023-03-01 10:00:01")), (1, 100, 30.0, day("2023-03-01 10:00:05")),
                      (2, 100, 5.0, day("2023-03-02"))])
    pd.testing.assert_frame_equal(load_catalog("zvuk", tmp_path), expected)


def test_megamarket_keeps_purchases_only(tmp_path: Path) -> None:
    events = pd.DataFrame({
        "user_id": [1, 1, 1, 2, 2],
        "datetime": pd.to_datetime(["2023-02-13 03:12:19.900", "2023-02-13 03:12:19.131", "2023-02-13 03:12:20.000",
                                    "2023-02-14 08:00:00.000", "2023-02-14 09:00:00.000"]),
        "event": [2, 2, 0, 1, 2], "item_id": [7, 8, 9, 7, 8], "category_id": 5, "price": -0.04,
    })
    path = catalog_path("megamarket", tmp_path)
    path.parent.mkdir(parents=True)
    events.to_parquet(path)
    second = day("2023-02-13 03:12:19")
    expected = frame([(1, 8, 1.0, second), (1, 7, 1.0, second), (2, 8, 1.0, day("2023-02-14 09:00:00"))])
    pd.testing.assert_frame_equal(load_catalog("megamarket", tmp_path), expected)


def test_thirty_music_play_events(tmp_path: Path) -> None:
    def play(event: int, time: int, playtime: int, user: int, tracks: list[int]) -> str:
        links = {"subjects": [{"type": "user", "id": user}], "objects": [{"type": "track", "id": t} for t in tracks]}
        return f"event.play\t{event}\t{time}\t{json.dumps({'playtime': playtime})}\t{json.dumps(links)}\n"

    events = play(1, 1390231051, 192, 44361, [4698874]) + play(2, 1390231243, -1, 44361, [12, 13]) \
        + play(3, 1390000000, 250, 7, [12])
    place(tmp_path, "30music", tar_bytes({
        "ThirtyMusic/entities/tracks.idomaar": b"track\t1\t-1\t{}\t{}\n",
        "ThirtyMusic/relations/events.idomaar": events.encode(),
    }, mode="w:gz"))
    expected = frame([(44361, 4698874, 192.0, 1390231051), (44361, 12, -1.0, 1390231243),
                      (44361, 13, -1.0, 1390231243), (7, 12, 250.0, 1390000000)])
    pd.testing.assert_frame_equal(load_catalog("30music", tmp_path), expected)


def test_gowalla_checkins(server: FileServer, tmp_path: Path) -> None:
    lines = (b"0\t2010-10-19T23:55:27Z\t30.2359091167\t-97.7951395833\t22847\n"
             b"0\t2010-10-18T22:17:43Z\t30.2691029532\t-97.7493953705\t420315\n"
             b"196585\t2010-10-07T17:39:18Z\t52.52\t13.40\t4555073\n")
    url, checksum = server.put("loc-gowalla_totalCheckins.txt.gz", gzip.compress(lines))
    expected = frame([(0, 22847, 1.0, 1287532527), (0, 420315, 1.0, 1287440263), (196585, 4555073, 1.0, 1286473158)])
    pd.testing.assert_frame_equal(load_catalog("gowalla", tmp_path, url=url, checksum=checksum), expected)


# --- files that need a login or a licence ---------------------------------------------------

def test_kaggle_dataset_without_credentials_says_what_to_do(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    monkeypatch.delenv("KAGGLE_KEY", raising=False)
    with pytest.raises(DownloadError) as raised:
        load_catalog("zvuk", tmp_path)
    message = str(raised.value)
    for words in ["zvuk-interactions.parquet", "https://www.kaggle.com/datasets/alexxl/zvuk-dataset",
                  str(tmp_path / "zvuk" / "zvuk-interactions.parquet"), "KAGGLE_USERNAME", "KAGGLE_KEY"]:
        assert words in message


def test_licence_dataset_says_where_to_get_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("KAGGLE_USERNAME", raising=False)
    with pytest.raises(DownloadError) as raised:
        load_catalog("30music", tmp_path)
    assert "https://recsys.deib.polimi.it/datasets/" in str(raised.value)
    assert str(tmp_path / "30music" / "ThirtyMusic.tar.gz") in str(raised.value)
    with pytest.raises(DownloadError, match="accept the Yelp Dataset licence"):
        load_catalog("yelp", tmp_path)


def test_kaggle_download_sends_the_token_to_kaggle_only_and_unzips(server: FileServer, tmp_path: Path,
                                                                   monkeypatch) -> None:
    plays = pd.DataFrame({"user_id": [1], "session_id": [1], "datetime": pd.to_datetime(["2023-03-01"]),
                          "track_id": [5], "play_duration": [60]})
    parquet = io.BytesIO()
    plays.to_parquet(parquet)
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w") as archive:
        archive.writestr("zvuk-interactions.parquet", parquet.getvalue())
    server.put("storage/zvuk.zip", packed.getvalue())
    server.redirects["/api/alexxl/zvuk-dataset/zvuk-interactions.parquet"] = "/storage/zvuk.zip"
    monkeypatch.setattr(catalog, "KAGGLE_API", server.url("api"))
    monkeypatch.setenv("KAGGLE_USERNAME", "someone")
    monkeypatch.setenv("KAGGLE_KEY", "not-a-real-key")

    ratings = load_catalog("zvuk", tmp_path)

    assert ratings[["user_id", "item_id"]].values.tolist() == [[1, 5]]
    (api_path, api_headers), (storage_path, storage_headers) = server.requests
    assert api_path.startswith("/api/") and storage_path == "/storage/zvuk.zip"
    login = "Basic " + base64.b64encode(b"someone:not-a-real-key").decode()
    assert api_headers.get("Authorization") == login
    assert "Authorization" not in storage_headers  # the token never leaves Kaggle
    assert catalog_path("zvuk", tmp_path).is_file()
    assert not list(tmp_path.glob("zvuk/*.download")) and not list(tmp_path.glob("zvuk/*.part"))


# --- unpinned files are identified by their content ------------------------------------------

def test_unpinned_file_fingerprint_follows_its_content(home: Path) -> None:
    dataset = compose(home, "dataset=amazon_beauty").dataset
    data_dir = home / "data"
    path = place(data_dir, "amazon_beauty", gzip.compress(b"user_id,parent_asin,rating,timestamp\na,b,5.0,1000\n"))
    first = source_fingerprint(dataset, data_dir)
    assert first == "amazon_beauty:sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
    assert path.with_name(path.name + ".sha256").is_file()  # remembered for the next run
    assert source_fingerprint(dataset, data_dir) == first
    path.write_bytes(gzip.compress(b"user_id,parent_asin,rating,timestamp\na,c,5.0,2000\n"))
    assert source_fingerprint(dataset, data_dir) != first
    # A pinned source is identified by its checksum, without its file.
    assert source_fingerprint(compose(home, "dataset=netflix").dataset, data_dir) == \
        "netflix:" + CATALOG["netflix"].checksum


def test_amazon_string_ids_through_prepare_data(home: Path) -> None:
    rng = np.random.default_rng(0)
    rows = [f"U{user},B{rng.integers(0, 15):03d},{rng.integers(4, 6)}.0,{(1000 + step * 100 + user) * 1000}"
            for user in range(60) for step in range(6)]
    place(home / "data", "amazon_games", gzip.compress(("user_id,parent_asin,rating,timestamp\n"
                                                        + "\n".join(rows) + "\n").encode()))
    cfg = compose(home, "dataset=amazon_games", "dataset.preprocess.val_users_ratio=0.1")
    prepared = prepare_data(cfg.dataset, home / "data")
    assert len(prepared.train) > 40 and len(prepared.validation) >= 2 and len(prepared.test) > 0
    assert all(isinstance(item, str) for item in prepared.vocabulary.item_ids)


# --- the sequences loader and the leave-one-out protocol ---------------------------------------

SEQUENCES = "1 10 11 12 13\n2 11 12 13 10\n3 10 14\n\n4 12 10 11 12\n5 13 11 10 15\n"


def test_item_sequences_reader(tmp_path: Path) -> None:
    plain = tmp_path / "seq.txt"
    plain.write_text("7 3 1 2\n8 5\n7 4\n")  # a user's second line continues the first
    expected = frame([(7, 3, 1.0, 0), (7, 1, 1.0, 1), (7, 2, 1.0, 2), (8, 5, 1.0, 0), (7, 4, 1.0, 3)])
    pd.testing.assert_frame_equal(item_sequences(plain), expected)
    packed = tmp_path / "seq.txt.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    pd.testing.assert_frame_equal(item_sequences(packed), expected)

    text_ids = tmp_path / "text.txt"
    text_ids.write_text("alice B001 B002\n")
    assert item_sequences(text_ids)["item_id"].tolist() == ["B001", "B002"]
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="user item1 item2"):
        item_sequences(empty)


def _rows(frame: pd.DataFrame) -> list[tuple]:
    return [tuple(row) for row in frame[["user_id", "item_id", "timestamp"]].astype("int64").itertuples(index=False)]


def test_leave_one_out_split_row_by_row(tmp_path: Path) -> None:
    path = tmp_path / "seq.txt"
    path.write_text(SEQUENCES)
    preprocess = OmegaConf.structured(Preprocess(protocol="leave_one_out", min_users_per_item=1,
                                                 min_items_per_user=3, min_rating=None))
    splits = split_interactions(item_sequences(path), preprocess)

    # User 3 has two items and is filtered out. Per user: train = all but the last two,
    # validation target = the second last, test input = all but the last, test target = the last.
    train = [(1, 10, 0), (1, 11, 1), (2, 11, 0), (2, 12, 1), (4, 12, 0), (4, 10, 1), (5, 13, 0), (5, 11, 1)]
    assert _rows(splits.train_events) == train
    assert _rows(splits.validation_events) == train
    assert _rows(splits.validation_gt) == [(1, 12, 2), (2, 13, 2), (4, 11, 2), (5, 10, 2)]
    assert _rows(splits.test_events) == [(1, 10, 0), (1, 11, 1), (1, 12, 2), (2, 11, 0), (2, 12, 1), (2, 13, 2),
                                         (4, 12, 0), (4, 10, 1), (4, 11, 2), (5, 13, 0), (5, 11, 1), (5, 10, 2)]
    # User 5's last item (15) is never seen in training, so it cannot be a target.
    assert _rows(splits.test_gt) == [(1, 13, 3), (2, 10, 3), (4, 12, 3)]


def test_sequences_config_through_prepare_data(home: Path) -> None:
    path = home / "seq.txt.gz"
    path.write_bytes(gzip.compress(SEQUENCES.encode()))
    cfg = compose(home, "dataset=sequences", f"dataset.path={path}", "model=sasrec_sequences")
    prepared = prepare_data(cfg.dataset, home / "data")
    assert prepared.vocabulary.item_ids.tolist() == [10, 11, 12, 13]
    assert prepared.validation.history.user_ids.tolist() == [1, 2, 4, 5]
    assert prepared.test.history.user_ids.tolist() == [1, 2, 4]
    test_histories = np.split(prepared.test.history.items, prepared.test.history.offsets[1:-1])
    assert [prepared.vocabulary.item_ids[h].tolist() for h in test_histories] == [[10, 11, 12], [11, 12, 13],
                                                                                [12, 10, 11]]
    assert prepared.vocabulary.item_ids[prepared.test.ground_truth.items].tolist() == [13, 10, 12]
    assert prepare_data(cfg.dataset, home / "data").cache_dir == prepared.cache_dir  # cached


def test_history_items_unknown_to_training_are_dropped_and_counted(home: Path, capsys) -> None:
    # Item 16 occurs only as user 6's second-to-last event: it is a validation target, not a
    # training item, and sits in user 6's leave-one-out test history.
    path = home / "seq.txt"
    path.write_text(SEQUENCES + "6 10 11 16 12\n")
    cfg = compose(home, "dataset=sequences", f"dataset.path={path}", "model=sasrec_sequences")
    expected = {"train_events": 0, "validation_events": 0, "test_events": 1}
    for _ in range(2):  # built, then read from the cache
        prepared = prepare_data(cfg.dataset, home / "data")
        assert prepared.summary()["unknown_history_items_dropped"] == expected
        assert "{'train_events': 0, 'validation_events': 0, 'test_events': 1} events" in capsys.readouterr().err
    user_6 = list(prepared.test.history.user_ids).index(6)
    items = prepared.test.history.items[prepared.test.history.offsets[user_6]:prepared.test.history.offsets[user_6 + 1]]
    assert prepared.vocabulary.item_ids[items].tolist() == [10, 11]


S3REC_BEAUTY = SHARED_DATA / "s3rec_amazon-beauty_seq.txt.gz"


@pytest.mark.skipif(not S3REC_BEAUTY.is_file(), reason="shared/data/s3rec_amazon-beauty_seq.txt.gz is absent")
def test_real_s3rec_beauty_matches_the_pinned_checksum_and_splits(server: FileServer, home: Path) -> None:
    text = gzip.decompress(S3REC_BEAUTY.read_bytes())
    url, _ = server.put("Beauty.txt", text)
    cfg = compose(home, "dataset=s3rec_beauty", f"dataset.url={url}", "model=sasrec_s3rec_beauty")
    prepared = prepare_data(cfg.dataset, home / "data")  # the download is checked against the pinned sha256

    log = item_sequences(catalog_path("s3rec_beauty", home / "data"))
    assert (len(log), log.user_id.nunique(), log.item_id.nunique()) == (198_502, 22_363, 12_101)
    assert len(prepared.train) == 22_363  # every user has at least five items
    assert len(prepared.train.items) == 198_502 - 2 * 22_363
    assert 11_500 < len(prepared.vocabulary) <= 12_101
    assert 21_000 < len(prepared.validation) <= 22_363 and 21_000 < len(prepared.test) <= 22_363
    # Histories lose only items never seen in training (a few users' second last items).
    assert prepared.test.history.lengths.min() >= 3
