"""The benchmark's HTTP server: the generated corpus on 127.0.0.1, with ETag and Last-Modified.

Runs in its own process (`python -m bench.server --sources N`), so serving costs neither the
measured client's interpreter nor its GIL; both peers are served by the same process. It
prints its port on the first line of stdout and serves until stdin closes. A request with a
matching If-None-Match or an If-Modified-Since no older than the document gets a 304.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import threading
from email.utils import format_datetime, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import IO

from bench.corpus import fixed_now, generate_corpus

_LAST_MODIFIED = fixed_now()


def make_server(sources: int, seed: int) -> ThreadingHTTPServer:
    corpus = generate_corpus(sources, fixed_now(), seed=seed)
    docs = {
        d.path: (d.body, d.content_type, '"' + hashlib.sha1(d.body).hexdigest()[:20] + '"')
        for d in corpus.documents
    }
    last_modified = format_datetime(_LAST_MODIFIED, usegmt=True)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes; without TCP_NODELAY, Nagle plus the
        # client's delayed ACK stall every keep-alive response ~40 ms (both peers alike).
        disable_nagle_algorithm = True

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            doc = docs.get(self.path.split("?", 1)[0])
            if doc is None:
                self._send(404, b"not found", "text/plain", None)
                return
            body, ctype, etag = doc
            if _fresh(
                self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since"), etag
            ):
                self._send(304, b"", None, etag)
            else:
                self._send(200, body, ctype, etag)

        def _send(self, status: int, body: bytes, ctype: str | None, etag: str | None) -> None:
            self.send_response(status)
            if ctype:
                self.send_header("Content-Type", ctype)
            if etag:
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", last_modified)
            if status != 304:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if status != 304:
                self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        request_queue_size = 1024
        daemon_threads = True

    return Server(("127.0.0.1", 0), Handler)


def _fresh(if_none_match: str | None, if_modified_since: str | None, etag: str) -> bool:
    if if_none_match is not None:
        return etag in [t.strip() for t in if_none_match.split(",")] or if_none_match == "*"
    if if_modified_since:
        try:
            return parsedate_to_datetime(if_modified_since) >= _LAST_MODIFIED
        except (TypeError, ValueError):
            return False
    return False


class ServerProcess:
    """`with ServerProcess(n) as base:` the corpus of n sources served at `base`."""

    def __init__(self, sources: int, seed: int = 8) -> None:
        self.sources = sources
        self.seed = seed
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        self._proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.server",
                "--sources",
                str(self.sources),
                "--seed",
                str(self.seed),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline().strip()
        if not line.isdigit():
            self.__exit__()
            raise RuntimeError(f"the bench server did not start (said {line!r})")
        return f"http://127.0.0.1:{line}"

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def _wait_for_eof(stream: IO[str], server: ThreadingHTTPServer) -> None:
    stream.read()
    server.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.server")
    parser.add_argument("--sources", type=int, required=True)
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    server = make_server(args.sources, args.seed)
    threading.Thread(target=_wait_for_eof, args=(sys.stdin, server), daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
