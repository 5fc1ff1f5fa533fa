"""fetch and the MovieLens entries of the dataset catalog against a small HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import os
import socket
import zipfile
from pathlib import Path

import pytest

from file_server import FileServer
from replay_accelerated.data.download import fetch, file_checksum
from replay_accelerated.data.catalog import load_catalog
from replay_accelerated.errors import DataError, DownloadError


def serve(server: FileServer, name: str, data: bytes) -> tuple[str, str]:
    """Put `data` on the server; return its URL and sha256 checksum."""
    return server.put(name, data, "sha256")


DATA = os.urandom(3000)


def test_fresh_download(server: FileServer, tmp_path: Path) -> None:
    url, checksum = serve(server, "file.bin", DATA)
    destination = tmp_path / "out" / "file.bin"

    assert fetch(url, checksum, destination, timeout=5) == destination
    assert destination.read_bytes() == DATA
    assert not destination.with_suffix(".bin.part").exists()
    assert file_checksum(destination) == hashlib.sha256(DATA).hexdigest()


def test_interrupted_download_resumes_with_range(server: FileServer, tmp_path: Path) -> None:
    url, checksum = serve(server, "file.bin", DATA)
    destination = tmp_path / "file.bin"
    part = tmp_path / "file.bin.part"

    server.drop_after = 1000
    with pytest.raises(DownloadError, match="resumed"):
        fetch(url, checksum, destination, timeout=5)
    assert part.read_bytes() == DATA[:1000]
    assert not destination.exists()

    fetch(url, checksum, destination, timeout=5)
    path, headers = server.requests[-1]
    assert (path, headers.get("Range")) == ("/file.bin", "bytes=1000-")
    assert destination.read_bytes() == DATA
    assert not part.exists()


def test_server_ignoring_range_restarts_from_scratch(server: FileServer, tmp_path: Path) -> None:
    url, checksum = serve(server, "file.bin", DATA)
    destination = tmp_path / "file.bin"
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes")

    server.ignore_range = True
    fetch(url, checksum, destination, timeout=5)
    assert server.requests[-1][1].get("Range") == "bytes=11-"
    assert destination.read_bytes() == DATA


def test_wrong_checksum_keeps_nothing(server: FileServer, tmp_path: Path) -> None:
    url, _ = serve(server, "file.bin", DATA)
    destination = tmp_path / "file.bin"
    wrong = "md5:" + "0" * 32

    with pytest.raises(DownloadError) as raised:
        fetch(url, wrong, destination, timeout=5)
    message = str(raised.value)
    assert url in message and str(destination) in message and wrong in message
    assert hashlib.md5(DATA).hexdigest() in message
    assert not destination.exists()
    assert not (tmp_path / "file.bin.part").exists()


def test_unreachable_url(tmp_path: Path) -> None:
    # A port that was free a moment ago: nothing listens there, so the connection is refused.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    destination = tmp_path / "file.bin"

    with pytest.raises(DownloadError) as raised:
        fetch(url, "sha256:" + "0" * 64, destination, timeout=5)
    assert url in str(raised.value) and str(destination) in str(raised.value)
    assert not destination.exists()


def test_missing_file_on_server(server: FileServer, tmp_path: Path) -> None:
    url = server.url("absent.bin")
    destination = tmp_path / "absent.bin"

    with pytest.raises(DownloadError) as raised:
        fetch(url, "sha256:" + "0" * 64, destination, timeout=5)
    message = str(raised.value)
    assert "404" in message and url in message and str(destination) in message


def test_existing_valid_file_makes_no_request(server: FileServer, tmp_path: Path) -> None:
    url, checksum = serve(server, "file.bin", DATA)
    destination = tmp_path / "file.bin"
    destination.write_bytes(DATA)

    assert fetch(url, checksum, destination, timeout=5) == destination
    assert server.requests == []


def make_zip(path: Path, member: str, text: str) -> str:
    """Write a zip holding one file; return its md5 checksum."""
    with zipfile.ZipFile(path, "w") as zip_file:
        zip_file.writestr(member, text)
    return "md5:" + hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "zip_name", "member", "text"),
    [
        (
            "movielens_1m",
            "ml-1m.zip",
            "ml-1m/ratings.dat",
            "1::1193::5::978300760\n1::661::3::978302109\n2::1193::4::978298413\n",
        ),
        (
            "movielens_20m",
            "ml-20m.zip",
            "ml-20m/ratings.csv",
            "userId,movieId,rating,timestamp\n1,1193,5.0,978300760\n1,661,3.0,978302109\n"
            "2,1193,4.0,978298413\n",
        ),
    ],
)
def test_load_movielens(
    server: FileServer, tmp_path: Path, name: str, zip_name: str, member: str, text: str
) -> None:
    checksum = make_zip(server.root / zip_name, member, text)
    data_dir = tmp_path / "data"

    ratings = load_catalog(name, data_dir, url=server.url(zip_name), checksum=checksum)

    assert (data_dir / "movielens" / zip_name).is_file()
    assert list(ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert [str(dtype) for dtype in ratings.dtypes] == ["int64", "int64", "float32", "int64"]
    assert ratings["user_id"].tolist() == [1, 1, 2]
    assert ratings["item_id"].tolist() == [1193, 661, 1193]
    assert ratings["rating"].tolist() == [5.0, 3.0, 4.0]
    assert ratings["timestamp"].tolist() == [978300760, 978302109, 978298413]


def test_load_catalog_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="movielens_1m, movielens_10m, movielens_20m"):
        load_catalog("movielens_100k", tmp_path)
