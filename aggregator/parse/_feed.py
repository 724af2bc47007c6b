"""Parse stage, XML feeds: RSS 0.9x/1.0/2.0 and Atom bytes -> Parsed (via feedparser).

Input: sniffed bytes, the document URL (base for relative links) and the Content-Type.
Output: `Parsed` with entries whose links are absolute; `Unreadable` when nothing can be read.
feedparser is called in exactly one place (`_run_feedparser`) and always on a stream, never
on a str/bytes that it could mistake for a URL or a file name. Must not import the network,
other stages, or anything outside `aggregator.types` and `aggregator.parse`.
"""

from __future__ import annotations

import html
import io
import warnings
from datetime import UTC, datetime
from time import struct_time
from typing import Any

import feedparser
from feedparser.mixin import _FeedParserMixin

from aggregator.parse._errors import Unreadable
from aggregator.parse._fastfeed import parse_plain_feed
from aggregator.parse._sniff import charset
from aggregator.parse._urls import absolute as _absolute
from aggregator.types import Entry, Parsed

# feedparser resolves an RSS <guid> (and an Atom <id>) against the feed's URL unless
# isPermaLink="false", so a guid "g1" becomes "http://host/feed/g1" and every item would get
# a new identity when the feed moves to another URL. An id is an identifier, not a link:
# keep it as written. (Links are still made absolute, by feedparser and by `_urls.absolute`.)
_mixin: Any = _FeedParserMixin
_mixin.can_be_relative_uri = frozenset(_mixin.can_be_relative_uri) - {"id"}

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})


def parse_xml_feed(content: bytes, url: str, content_type: str | None = None) -> Parsed:
    """Parse RSS/Atom bytes; raise `Unreadable` when they hold no readable feed.

    Plain, well-formed RSS 2.0 and Atom take the lxml fast path (`_fastfeed`), which gives
    what feedparser would; everything else goes to feedparser.
    """
    fast = parse_plain_feed(content, url, content_type)
    if fast is not None:
        return fast
    return parse_with_feedparser(content, url, content_type)


def parse_with_feedparser(content: bytes, url: str, content_type: str | None = None) -> Parsed:
    """`parse_xml_feed` without the fast path (the reference the fast path is tested against)."""
    result = _run_feedparser(content, url, content_type)
    version = str(result.get("version") or "")
    raw_entries: list[Any] = list(result.get("entries") or [])
    problem = _bozo_warning(result)

    if not raw_entries:
        if problem is not None and problem.startswith("malformed_xml"):
            raise Unreadable(
                "parse_error",
                f"the feed is not well-formed XML and no entries could be recovered "
                f"({problem.partition(': ')[2]}); ask the publisher to fix it or use another URL",
            )
        if not version:
            raise Unreadable(
                "not_a_feed",
                "the response is XML but not an RSS or Atom feed; fix the URL or set kind: page",
            )

    entries: list[Entry] = []
    skipped = 0
    for raw in raw_entries:
        entry = _entry(raw, url)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)

    notes = [] if problem is None else [problem]
    if skipped:
        notes.append(f"skipped_entries: {skipped} without title, link or content")
    feed: Any = result.get("feed") or {}
    return Parsed(
        format=version or "xml",
        title=_text(feed.get("title")),
        link=_absolute(feed.get("link"), url),
        entries=tuple(entries),
        warnings=tuple(notes),
    )


def _run_feedparser(content: bytes, url: str, content_type: str | None) -> Any:
    # The bytes were sniffed as XML already, so the header's media type adds nothing; keep
    # only its charset. (feedparser follows RFC 3023, where text/xml without a charset means
    # US-ASCII, and flags any non-XML type as bozo.)
    cs = charset(content_type)
    headers = {
        "content-type": "application/xml" + (f"; charset={cs}" if cs else ""),
        "content-location": url,
    }
    with warnings.catch_warnings():
        # feedparser warns about deprecated key fallbacks; they are not our users' problem.
        warnings.simplefilter("ignore")
        try:
            return feedparser.parse(
                io.BytesIO(content),
                response_headers=headers,
                resolve_relative_uris=True,
                # normalize sanitizes every summary with nh3's allow-list and reduces titles
                # to text; feedparser's own sanitizer would double the parse time for nothing.
                sanitize_html=False,
            )
        except RecursionError as e:
            raise Unreadable(
                "parse_error", "the feed is nested too deeply to read; it is not a usable feed"
            ) from e


def _bozo_warning(result: Any) -> str | None:
    if not result.get("bozo"):
        return None
    exc = result.get("bozo_exception")
    name = type(exc).__name__
    if name == "NonXMLContentType":
        return None  # we pass an XML type ourselves; nothing to report
    if name in {"CharacterEncodingOverride", "CharacterEncodingUnknown"}:
        return f"encoding_override: {exc}"
    return f"malformed_xml: {exc}"


def _entry(raw: Any, url: str) -> Entry | None:
    title_detail: Any = raw.get("title_detail") or {}
    title = _text(raw.get("title"))
    link = _absolute(raw.get("link") or _alternate_link(raw), url)
    summary = _summary(raw)
    if not (title or link or summary):
        return None
    published_raw, published = _date(raw)
    guid = raw.get("id")
    return Entry(
        guid=str(guid) if guid else None,
        link=link,
        title=title,
        title_is_html=title_detail.get("type") in _HTML_TYPES,
        summary=summary,
        published=published,
        published_raw=published_raw,
        author=_text(raw.get("author")),
    )


def _alternate_link(raw: Any) -> str | None:
    for link in raw.get("links") or ():
        if link.get("href") and link.get("rel", "alternate") == "alternate":
            return str(link["href"])
    return None


def _summary(raw: Any) -> str | None:
    """The summary as HTML: the feed's summary, else its content; plain text is escaped."""
    candidates: list[Any] = [raw.get("summary_detail")]
    candidates.extend(raw.get("content") or ())
    for detail in candidates:
        if not detail:
            continue
        value = str(detail.get("value") or "").strip()
        if not value:
            continue
        if detail.get("type") in _HTML_TYPES:
            return value
        return html.escape(value, quote=False)
    return None


def _date(raw: Any) -> tuple[str | None, datetime | None]:
    # dict.get: feedparser's own get() maps a missing `updated` to `published` with a warning.
    for key in ("published", "updated", "created"):
        text = dict.get(raw, key)
        if text:
            return str(text), _from_struct(dict.get(raw, key + "_parsed"))
    return None, None


def _from_struct(value: struct_time | None) -> datetime | None:
    # feedparser converts every date to UTC and reads a zone-less date as UTC.
    if value is None:
        return None
    try:
        return datetime(*value[:6], tzinfo=UTC)
    except (TypeError, ValueError):
        return None


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None
