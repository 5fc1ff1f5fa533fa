"""A file server on 127.0.0.1 for download tests: serves a folder, records each request's path and
headers, answers Range requests, can cut a response short, ignore Range, or redirect."""

import hashlib
import http.server
from pathlib import Path


class FileServer(http.server.ThreadingHTTPServer):
    def __init__(self, root: Path) -> None:
        super().__init__(("127.0.0.1", 0), FileHandler)
        self.root = root
        self.requests: list[tuple[str, dict[str, str]]] = []  # (path, headers) of each request
        self.drop_after: int | None = None  # cut the next response body to this many bytes
        self.ignore_range = False  # answer Range requests with the whole file (200)
        self.redirects: dict[str, str] = {}  # path -> path it redirects to

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_port}/{name}"

    def put(self, name: str, data: bytes, algorithm: str = "md5") -> tuple[str, str]:
        """Serve `data` at `name`; return its URL and checksum (`<algorithm>:<hex>`)."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return self.url(name), f"{algorithm}:" + hashlib.new(algorithm, data).hexdigest()


class FileHandler(http.server.BaseHTTPRequestHandler):
    server: FileServer

    def do_GET(self) -> None:
        self.server.requests.append((self.path, dict(self.headers)))
        if self.path in self.server.redirects:
            self.send_response(302)
            self.send_header("Location", self.server.url(self.server.redirects[self.path].lstrip("/")))
            self.end_headers()
            return
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        range_header = self.headers.get("Range")
        start = 0
        if range_header and not self.server.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        # Content-Length always announces the whole body, so a cut one looks interrupted.
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.server.drop_after is not None:
            body, self.server.drop_after = body[: self.server.drop_after], None
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output quiet
