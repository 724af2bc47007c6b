"""Reading a response of the fetch stage: bounded body, Retry-After, bot challenges.

The body is decompressed here rather than by httpx, `STEP` bytes at a time, so a gzip bomb
(also nested: `Content-Encoding: gzip, gzip`) never inflates more than the cap plus one step
in memory. Only the encodings we ask for (`ACCEPT_ENCODING`) are decoded.
Imports nothing from the package.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

ACCEPT_ENCODING = "gzip, deflate"  # keep in sync with _WBITS
STEP = 64 * 1024
MAX_RETRY_AFTER = 24 * 60 * 60.0
ERROR_BODY_PEEK = 64 * 1024  # what we read of an error page to recognise a challenge
CHALLENGE_MARKERS = (b"just a moment...", b"cf-chl", b"challenge-platform")
CHALLENGE_HINT = (
    "the site answers automated clients with a bot check (Cloudflare challenge) instead of "
    "the feed; ask the publisher for a feed URL that is not behind the check, or drop the source"
)

_WBITS = {"gzip": zlib.MAX_WBITS | 16, "x-gzip": zlib.MAX_WBITS | 16, "deflate": zlib.MAX_WBITS}


class TooLarge(Exception):
    """The body (decoded, or as sent) is over the cap."""


class Undecodable(Exception):
    """The body's Content-Encoding is unknown to us or its data is corrupt."""


class _Layer:
    """One Content-Encoding layer, decoded at most `STEP` bytes per call."""

    def __init__(self, name: str) -> None:
        if name not in _WBITS:
            raise Undecodable(f"unsupported Content-Encoding {name!r}")
        self.name = name
        self._raw_fallback = name == "deflate"  # some servers send raw deflate, no zlib header
        self._z = zlib.decompressobj(_WBITS[name])

    def decode(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._z.decompress(data, STEP)
            except zlib.error as e:
                if not self._raw_fallback:
                    raise Undecodable(f"corrupt {self.name} data: {e}") from e
                self._raw_fallback = False
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._raw_fallback = False
            data = self._z.unconsumed_tail
            if out:
                yield out
            if self._z.eof or (not data and len(out) < STEP):
                return

    def finish(self) -> None:
        if not self._z.eof:
            raise Undecodable(f"the {self.name} data ends before its end marker")


class BoundedDecoder:
    """Decode a body's Content-Encoding layers; raise TooLarge past `cap` decoded bytes."""

    def __init__(self, content_encoding: str | None, cap: int) -> None:
        names = [n.strip().lower() for n in (content_encoding or "").split(",")]
        # Content-Encoding lists the codings in the order they were applied: undo in reverse.
        self._layers = [_Layer(n) for n in reversed(names) if n and n != "identity"]
        self._cap = cap
        self.size = 0

    def feed(self, data: bytes) -> Iterator[bytes]:
        for chunk in self._through(0, data):
            self.size += len(chunk)
            if self.size > self._cap:
                raise TooLarge(self.size)
            yield chunk

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._layers):
            if data:
                yield data
            return
        for out in self._layers[index].decode(data):
            yield from self._through(index + 1, out)

    def finish(self) -> None:
        for layer in self._layers:
            layer.finish()


async def read_body(response: httpx.Response, cap: int) -> bytes:
    """The decoded body, capped; raises TooLarge or Undecodable (httpx errors pass through)."""
    if response.is_stream_consumed:
        # A response built from bytes (httpx.MockTransport) is read and decoded already.
        if len(response.content) > cap:
            raise TooLarge(len(response.content))
        return response.content
    decoder = BoundedDecoder(response.headers.get("Content-Encoding"), cap)
    chunks: list[bytes] = []
    raw = 0
    async for data in response.aiter_raw():
        raw += len(data)
        if raw > cap:
            raise TooLarge(raw)
        chunks.extend(decoder.feed(data))
    decoder.finish()
    return b"".join(chunks)


async def peek_body(response: httpx.Response, limit: int = ERROR_BODY_PEEK) -> bytes:
    """Up to `limit` decoded bytes of an error page; whatever could be read of it."""
    try:
        return await read_body(response, limit)
    except (TooLarge, Undecodable, httpx.HTTPError):
        return b""  # too big, broken or cut: not a challenge page we can recognise


def header_bytes(response: httpx.Response) -> int:
    """The size of the response's header block as sent (name: value CRLF per field)."""
    return sum(len(name) + len(value) + 4 for name, value in response.headers.raw)


def parse_retry_after(
    value: str | None, date: str | None, now: datetime | None = None
) -> float | None:
    """Retry-After in seconds from the response, capped at 24 h; None if absent or garbage.

    An HTTP-date counts from the response's own Date header when it has a valid one (so the
    server's clock skew cancels out), else from `now`; with neither it is ignored (we do not
    read the clock below the pipeline). A date in the past means 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(int(value)), MAX_RETRY_AFTER)
    when = _http_date(value)
    if when is None:
        return None
    reference = (_http_date(date) if date else None) or now
    if reference is None:
        return None
    seconds = (when - reference).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _http_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def is_bot_challenge(response: httpx.Response, body: bytes) -> bool:
    """Cloudflare's bot check: its header, or its server and a challenge page."""
    status = response.status_code
    if status in (403, 429, 503) and (
        response.headers.get("cf-mitigated", "").strip().lower() == "challenge"
    ):
        return True
    if status in (403, 503) and response.headers.get("Server", "").lower() == "cloudflare":
        head = body.lower()
        return any(marker in head for marker in CHALLENGE_MARKERS)
    return False


def needs_peek(response: httpx.Response) -> bool:
    """Whether the error page is worth reading to recognise a challenge."""
    return (
        response.status_code in (403, 503)
        and response.headers.get("Server", "").lower() == "cloudflare"
    )
