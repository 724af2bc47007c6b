"""A real HTTP server on 127.0.0.1 for the end-to-end and fault tests.

Serves files from a root folder (the corpus) under /files/, with ETag and Last-Modified and
honest 304s, and scripted routes for faults. Runs in a thread; every handler is bounded in
time so a test can never hang on it.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

Route = Callable[[BaseHTTPRequestHandler], None]

CONTENT_TYPES = {
    ".json": "application/feed+json",
    ".xml": "application/xml",
    ".rss": "application/rss+xml",
    ".atom": "application/atom+xml",
    ".rdf": "application/rdf+xml",
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html",
}


class Server:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root
        self.routes: dict[str, Route] = {}
        self.hits: dict[str, int] = {}
        self.conditional = True  # honour If-None-Match / If-Modified-Since
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                server.hits[path] = server.hits.get(path, 0) + 1
                route = server.routes.get(path)
                if route is not None:
                    route(self)
                elif path.startswith("/files/") and server.root is not None:
                    server._serve_file(self, unquote(path[len("/files/") :]))
                else:
                    send(self, 404, b"not found", "text/plain")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def _serve_file(self, h: BaseHTTPRequestHandler, rel: str) -> None:
        assert self.root is not None
        path = (self.root / rel).resolve()
        if not path.is_relative_to(self.root.resolve()) or not path.is_file():
            send(h, 404, b"not found", "text/plain")
            return
        body = path.read_bytes()
        etag = '"' + hashlib.sha1(body).hexdigest() + '"'
        last_modified = formatdate(path.stat().st_mtime, usegmt=True)
        if self.conditional and (
            h.headers.get("If-None-Match") == etag
            or h.headers.get("If-Modified-Since") == last_modified
        ):
            send(h, 304, b"", None, {"ETag": etag, "Last-Modified": last_modified})
            return
        ctype = CONTENT_TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
        send(h, 200, body, ctype, {"ETag": etag, "Last-Modified": last_modified})

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str | None,
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    if ctype:
        h.send_header("Content-Type", ctype)
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    if status != 304:
        h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if status != 304:
        h.wfile.write(body)


def trickle(chunk: bytes, every: float, limit: float) -> Route:
    """Send a valid-looking response one chunk at a time, for at most `limit` seconds."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        end = time.monotonic() + limit
        try:
            while time.monotonic() < end:
                h.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                h.wfile.flush()
                time.sleep(every)
        except OSError:
            pass

    return route


def silent(limit: float) -> Route:
    """Accept, read the request, never answer (for at most `limit` seconds)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        time.sleep(limit)

    return route


def gzip_bomb(decoded_bytes: int) -> Route:
    body = gzip.compress(b"\0" * decoded_bytes, compresslevel=9)

    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, body, "application/xml", {"Content-Encoding": "gzip"})

    return route


def redirect(to: str, status: int = 302) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, status, b"", "text/plain", {"Location": to})

    return route


def static(
    body: bytes,
    ctype: str = "application/xml",
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Route:
    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, status, body, ctype, headers)

    return route
