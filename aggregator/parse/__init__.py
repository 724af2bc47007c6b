"""The parse stage: Fetched bytes -> Parsed entries (feeds and pages; bytes in, never URLs).

    parse_fetched(fetched, kind, selectors)   the stage's entry point; sniffs when kind="auto"
    parse_feed(content, url, content_type)    RSS / Atom (feedparser) or JSON Feed
    parse_json_feed(content, url)             JSON Feed 1.0 / 1.1 (our own reader)
    parse_page(content, url, selectors)       an HTML listing page (selectors or automatic)

Every failure is a `ParseError(source_id, url, kind, message)` with kind `empty_body`,
`not_a_feed`, `parse_error` or `no_items`; the private modules raise `Unreadable` and this
module is the one place that converts it.
Imports only `aggregator.types`, `aggregator.exceptions` and its own private modules;
never the network, other stages, storage, pipeline or cli.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from aggregator.exceptions import ParseError
from aggregator.parse._discover import common_feed_urls, discover_feeds
from aggregator.parse._errors import Unreadable
from aggregator.parse._feed import parse_xml_feed
from aggregator.parse._jsonfeed import parse_json_document
from aggregator.parse._page import parse_html_page
from aggregator.parse._sniff import Sniffed, sniff
from aggregator.types import Fetched, Parsed, Selectors, SourceKind

__all__ = [
    "common_feed_urls",
    "discover_feeds",
    "parse_feed",
    "parse_fetched",
    "parse_json_feed",
    "parse_page",
]

_FEED_LINK = re.compile(rb"<link[^>]+type=[\"']?application/(?:rss|atom)\+xml[^>]*>", re.IGNORECASE)
_HREF = re.compile(rb"href=[\"']?([^\"' >]+)", re.IGNORECASE)


def parse_fetched(
    fetched: Fetched, kind: SourceKind = "auto", selectors: Selectors | None = None
) -> Parsed:
    """Parse a fetched response as the source's `kind` says; `auto` decides from the bytes."""
    with _errors(fetched.source_id, fetched.url):
        sniffed = sniff(fetched.content, fetched.content_type)
        parsed = _dispatch(sniffed, fetched, kind, selectors)
    if sniffed.warnings:
        return _with_warnings(parsed, sniffed.warnings)
    return parsed


def parse_feed(
    content: bytes, url: str, content_type: str | None = None, *, source_id: str = ""
) -> Parsed:
    """Parse feed bytes (RSS, Atom or JSON Feed); an HTML page is a `not_a_feed` error."""
    return parse_fetched(_fetched(content, url, content_type, source_id), "feed")


def parse_json_feed(content: bytes, url: str, *, source_id: str = "") -> Parsed:
    """Parse JSON Feed bytes without sniffing."""
    with _errors(source_id or url, url):
        return parse_json_document(content, url)


def parse_page(
    content: bytes,
    url: str,
    selectors: Selectors | None = None,
    *,
    source_id: str = "",
    content_type: str | None = None,
) -> Parsed:
    """Parse an HTML listing page, with `selectors` or by finding its repeated teasers;
    `content_type` is the HTTP header (its charset, if any, decides how the bytes read)."""
    return parse_fetched(_fetched(content, url, content_type, source_id), "page", selectors)


def _dispatch(
    sniffed: Sniffed, fetched: Fetched, kind: SourceKind, selectors: Selectors | None
) -> Parsed:
    doc = sniffed.kind
    if kind == "page":
        if doc in ("feed", "json"):
            raise Unreadable(
                "parse_error",
                "the response is a feed, not an HTML page; "
                "set kind: feed (or auto) for this source",
            )
        return parse_html_page(sniffed.content, fetched.url, selectors, sniffed.charset)
    if doc == "json":
        return parse_json_document(sniffed.content, fetched.url)
    if doc in ("feed", "xml"):
        return parse_xml_feed(sniffed.content, fetched.url, fetched.content_type)
    if doc == "html":
        if kind == "feed":
            raise Unreadable("not_a_feed", _html_not_feed_message(sniffed.content))
        try:
            return parse_html_page(sniffed.content, fetched.url, selectors, sniffed.charset)
        except Unreadable as e:
            if e.kind != "no_items" or selectors is not None:
                raise
            raise Unreadable(
                "not_a_feed",
                "the response is an HTML page without a recognisable list of articles; "
                "use the site's feed URL, or set kind: page with selectors",
            ) from e
    snippet = sniffed.content[:60].decode("utf-8", "replace").strip()
    raise Unreadable(
        "not_a_feed",
        f"the response is neither a feed nor an HTML page (it starts with {snippet!r}); "
        "fix the URL",
    )


def _html_not_feed_message(content: bytes) -> str:
    message = "the response is an HTML page, not a feed; set kind: page or fix the URL"
    # A page that advertises its feed tells the editor which URL to use instead.
    match = _FEED_LINK.search(content[:200_000])
    href = _HREF.search(match.group(0)) if match else None
    if href:
        return message + f" (the page links to a feed at {href.group(1).decode('latin-1')})"
    return message


@contextmanager
def _errors(source_id: str, url: str) -> Iterator[None]:
    try:
        yield
    except Unreadable as e:
        raise ParseError(source_id or url, url, e.kind, e.message) from e


def _with_warnings(parsed: Parsed, extra: tuple[str, ...]) -> Parsed:
    return replace(parsed, warnings=extra + parsed.warnings)


def _fetched(content: bytes, url: str, content_type: str | None, source_id: str) -> Fetched:
    return Fetched(
        source_id=source_id or url, url=url, status=200, content=content, content_type=content_type
    )
