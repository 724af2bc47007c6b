"""A real HTTP server on 127.0.0.1 for the end-to-end and fault tests.

Serves files from a root folder (the corpus) under /files/, with ETag and Last-Modified and
honest 304s, and scripted routes for faults. Runs in a thread; every handler is bounded in
time so a test can never hang on it.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import mimetypes
import socket
import struct
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

        class Listener(ThreadingHTTPServer):
            # socketserver's default backlog of 5 refuses connections when a test opens
            # dozens at once; a real server has a deep backlog.
            request_queue_size = 128

        self.httpd = Listener(("127.0.0.1", 0), Handler)
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


# --- fault routes (tests/test_fetch_faults.py) ----------------------------------------------


def _quietly(write: Callable[[], None]) -> None:
    """Run a write that the client may cut short: its hang-up is the point of the test."""
    with contextlib.suppress(OSError):
        write()


def cut(sent: int, announced: int, reset: bool) -> Route:
    """Announce `announced` bytes, send `sent`, then reset the connection (RST) or close it."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/xml")
        h.send_header("Content-Length", str(announced))
        h.end_headers()

        def write() -> None:
            h.wfile.write(b"<" * sent)
            h.wfile.flush()

        _quietly(write)
        h.close_connection = True
        if reset:
            # SO_LINGER 0: close() sends RST instead of FIN. Close the socket here, before
            # socketserver's shutdown(SHUT_WR) would send a clean FIN; the handler carries on
            # with harmless in-memory files.
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.rfile.close()
            h.wfile.close()
            h.connection.close()
            h.rfile, h.wfile = io.BytesIO(), io.BytesIO()

    return route


def stream_zeros(size: int, content_length: int | None) -> Route:
    """Send `size` bytes of zeros in 64 KiB writes; Content-Length as given (None: chunked)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/xml")
        if content_length is None:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(content_length))
        h.end_headers()
        block = b"\0" * 65536

        def write() -> None:
            left = size
            while left > 0:
                part = block[: min(left, len(block))]
                if content_length is None:
                    h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                else:
                    h.wfile.write(part)
                left -= len(part)
            if content_length is None:
                h.wfile.write(b"0\r\n\r\n")
            h.wfile.flush()

        _quietly(write)
        h.close_connection = True

    return route


def nested_gzip_bomb(decoded_bytes: int, layers: int = 2) -> Route:
    """`Content-Encoding: gzip, gzip`: a bomb inside a gzip."""
    body = b"\0" * decoded_bytes
    for _ in range(layers):
        body = gzip.compress(body, compresslevel=9)

    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, body, "application/xml", {"Content-Encoding": ", ".join(["gzip"] * layers)})

    return route


def sequence(*routes: Route) -> Route:
    """The n-th request gets the n-th route; the last one repeats."""
    calls = iter(range(1 << 30))

    def route(h: BaseHTTPRequestHandler) -> None:
        routes[min(next(calls), len(routes) - 1)](h)

    return route


def header_bomb(total: int) -> Route:
    """A 200 whose header block is about `total` bytes (many 1 KiB headers)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/xml")
        for n in range(total // 1024 + 1):
            h.send_header(f"X-Filler-{n}", "x" * 1000)
        h.send_header("Content-Length", "0")
        h.end_headers()

    return route


def cloudflare(status: int, body: bytes, headers: dict[str, str] | None = None) -> Route:
    """An answer as Cloudflare's edge sends it (its own Server header, an HTML page)."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.server_version, h.sys_version = "cloudflare", ""
        send(h, status, body, "text/html; charset=UTF-8", headers)

    return route


def conditional(body: bytes, etag: str) -> Route:
    """200 with an ETag, or 304 when the request sends that ETag back."""

    def route(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == etag:
            send(h, 304, b"", None, {"ETag": etag})
        else:
            send(h, 200, body, "application/rss+xml", {"ETag": etag})

    return route


def close_after(route: Route) -> Route:
    """The route's answer, then the connection is closed (no keep-alive)."""

    def wrapped(h: BaseHTTPRequestHandler) -> None:
        h.close_connection = True
        route(h)

    return wrapped
