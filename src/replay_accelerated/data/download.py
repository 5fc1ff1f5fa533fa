"""Download a file once, resume it when interrupted, and verify its checksum.

`fetch` is the only way datasets reach the disk: a file that is already in place with
the right checksum is used as is, so a machine without internet works as soon as the
user has copied the file there by hand. Sources that publish no fixed file have no
checksum: their file is downloaded once and then used as it is.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from replay_accelerated.errors import DownloadError

CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_S = 2.0
SUPPORTED_ALGORITHMS = ("md5", "sha256")

# Everything that means "the network or the server let us down"; disk errors are not
# in this list so that, say, a full disk is reported as itself.
_NETWORK_ERRORS = (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException)


def file_checksum(path: Path, algorithm: str = "sha256") -> str:
    """Return the hex digest of the file at `path`."""
    digest = hashlib.new(algorithm)
    # Chunked rather than hashlib.file_digest, which needs Python 3.11.
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def remembered_checksum(path: Path) -> str:
    """The sha256 of `path`, remembered next to it (`<name>.sha256`) while its size and time stay the same.

    Unpinned sources are identified by their file's content; this spares hashing a
    multi-gigabyte file on every run.
    """
    path = Path(path)
    stat = path.stat()
    memo = path.with_name(path.name + ".sha256")
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        saved = json.loads(memo.read_text())
        if {name: saved.get(name) for name in key} == key:
            return saved["sha256"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass
    digest = file_checksum(path)
    try:
        memo.write_text(json.dumps({**key, "sha256": digest}))
    except OSError:
        pass  # a read-only data folder only costs the hashing next time
    return digest


def fetch(
    url: str,
    checksum: str | None,
    destination: Path,
    timeout: float = 60.0,
    headers: dict[str, str] | None = None,
    page: str | None = None,
) -> Path:
    """Make sure `destination` holds the file at `url` with the given checksum.

    `checksum` is "md5:<hex>" or "sha256:<hex>", or None when the source publishes no
    fixed file (a file already in place is then used as is). The download streams into
    a ".part" file next to `destination`, resumes it after an interruption, and moves it
    into place only once the checksum matches. `headers` (e.g. a login) are sent to
    `url` only, never to the server it redirects to. `page` is where a person can get
    the file by hand, when that is not `url` itself.
    """
    algorithm, expected = parse_checksum(checksum) if checksum is not None else (None, None)
    destination = Path(destination)
    if destination.exists():
        if algorithm is None or file_checksum(destination, algorithm) == expected:
            return destination
        print(f"{destination} does not match {checksum}; downloading it again.", file=sys.stderr)

    destination.parent.mkdir(parents=True, exist_ok=True)
    part = destination.with_suffix(destination.suffix + ".part")
    checked = f"; it is used as long as its checksum is {checksum}" if checksum else ""
    hand_hint = (
        f"You can download the file by hand (from {page or url} or a mirror) and place it at "
        f"{destination}{checked}."
    )
    try:
        _download(url, part, timeout, headers or {})
    except _NETWORK_ERRORS as error:
        kept = f" The partial download at {part} will be resumed next time." if part.exists() else ""
        raise DownloadError(
            f"Could not download {url}: {_reason(error)}. The machine may be offline or the "
            f"server unreachable.{kept} {hand_hint}"
        ) from error

    if algorithm is not None:
        actual = file_checksum(part, algorithm)
        if actual != expected:
            # A complete file with the wrong content cannot be resumed into a good one.
            part.unlink()
            raise DownloadError(
                f"The file downloaded from {url} has checksum {algorithm}:{actual}, but "
                f"{checksum} was expected, so it was deleted. The server may have sent a "
                f"different version or a corrupted file. {hand_hint}"
            )
    os.replace(part, destination)
    return destination


def parse_checksum(checksum: str) -> tuple[str, str]:
    algorithm, _, expected = checksum.partition(":")
    if algorithm not in SUPPORTED_ALGORITHMS or not expected:
        raise DownloadError(
            f"Checksum {checksum!r} is not understood; write it as 'md5:<hex>' or 'sha256:<hex>'."
        )
    return algorithm, expected.lower()


def _download(url: str, part: Path, timeout: float, headers: dict[str, str]) -> None:
    """Stream `url` into `part`, continuing from the bytes already there."""
    offset = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url)
    for name, value in headers.items():
        # Unredirected: a login for `url` must not travel to a storage server it redirects to.
        request.add_unredirected_header(name, value)
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416:
            raise
        # "Range not satisfiable": the .part is as long as the file or longer, so it is
        # stale; start over rather than guess what it holds.
        part.unlink()
        _download(url, part, timeout, headers)
        return

    with response:
        if response.status != 206:
            # The server ignored the Range header and sends the whole file.
            offset = 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, "ab" if offset else "wb") as file:
            done = offset
            started = last_report = time.monotonic()
            while chunk := response.read(CHUNK_BYTES):
                file.write(chunk)
                done += len(chunk)
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY_S:
                    _report(part.stem, done, total, (done - offset) / (now - started))
                    last_report = now

    # http.client ends a cut-off body silently, so compare with Content-Length here;
    # raising keeps the .part for the next attempt to resume.
    if total is not None and done < total:
        raise ConnectionError(f"the connection closed after {done} of {total} bytes")


def _report(name: str, done: int, total: int | None, bytes_per_s: float) -> None:
    of_total = f" / {total / 1e6:.1f}" if total is not None else ""
    print(f"{name}: {done / 1e6:.1f}{of_total} MB ({bytes_per_s / 1e6:.1f} MB/s)", file=sys.stderr)


def _reason(error: Exception) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return str(error.reason)
    return str(error) or type(error).__name__
