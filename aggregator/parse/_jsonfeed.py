"""Parse stage, JSON Feed 1.0/1.1: bytes -> Parsed.

feedparser 6.0.x cannot read JSON Feed, so this is our own small reader with structural
validation (https://jsonfeed.org/version/1.1). Input: bytes and the document URL.
Output: `Parsed`; `Unreadable` (parse_error) naming what is wrong when the document is not
JSON or not a JSON Feed. Pure; must not import the network, other stages, or anything outside
`aggregator.types` and `aggregator.parse`.
"""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import urljoin

from aggregator.parse._dates import parse_date
from aggregator.parse._errors import Unreadable
from aggregator.parse._urls import is_http, join
from aggregator.types import Entry, Parsed

_VERSION_PREFIXES = ("https://jsonfeed.org/version/", "http://jsonfeed.org/version/")


def parse_json_document(content: bytes, url: str) -> Parsed:
    """Parse JSON Feed bytes; raise `Unreadable` naming the first structural problem."""
    try:
        # json.loads detects UTF-8/16/32 (with or without a BOM) by itself.
        doc: Any = json.loads(content)
    except UnicodeDecodeError as e:
        raise Unreadable("parse_error", f"the JSON Feed is not valid UTF-8/16/32: {e}") from e
    except json.JSONDecodeError as e:
        raise Unreadable(
            "parse_error",
            f"the response is not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}); "
            "ask the publisher to fix the feed or use its RSS/Atom version",
        ) from e
    except RecursionError as e:
        raise Unreadable("parse_error", "the JSON document is nested too deeply") from e

    if not isinstance(doc, dict):
        raise Unreadable("parse_error", "the JSON document is not an object, so not a JSON Feed")
    rss = doc.get("rss")
    if "version" not in doc and isinstance(rss, dict) and isinstance(rss.get("channel"), dict):
        return _rss_in_json(rss["channel"], url)
    version = doc.get("version")
    if not isinstance(version, str) or not version.startswith(_VERSION_PREFIXES):
        raise Unreadable(
            "parse_error",
            "the JSON document is not a JSON Feed: 'version' must be a string starting with "
            f"https://jsonfeed.org/version/ (got {version!r:.60}); check the URL",
        )
    items = doc.get("items")
    if not isinstance(items, list):
        raise Unreadable(
            "parse_error",
            f"the JSON Feed is invalid: 'items' must be a list (got {type(items).__name__})",
        )

    warnings: list[str] = []
    if version.startswith("http:"):
        warnings.append("jsonfeed_version: the version URL uses http:, not https:")
    home = _string(doc.get("home_page_url"))
    base = url
    if home and is_http(urljoin(url, home)):
        base = urljoin(url, home)

    entries: list[Entry] = []
    not_objects = skipped = 0
    for item in items:
        if not isinstance(item, dict):
            not_objects += 1
            continue
        entry = _entry(item, base)
        if entry is None:
            skipped += 1
        else:
            entries.append(entry)
    if not_objects:
        warnings.append(f"invalid_items: {not_objects} items are not JSON objects")
    if skipped:
        warnings.append(f"skipped_entries: {skipped} without title, link or content")

    return Parsed(
        format="jsonfeed" + version.rsplit("/", 1)[-1].replace(".", "").ljust(2, "0"),
        title=_string(doc.get("title")),
        link=_resolve(home, url),
        entries=tuple(entries),
        warnings=tuple(warnings),
    )


def _entry(item: dict[str, Any], base: str) -> Entry | None:
    link = _resolve(_string(item.get("url")) or _string(item.get("external_url")), base)
    title = _string(item.get("title"))
    summary = _summary(item)
    if not (title or link or summary):
        return None
    raw_id = item.get("id")
    guid: str | None = None
    # bool is an int subclass; `"id": true` is not an id.
    if isinstance(raw_id, str | int | float) and not isinstance(raw_id, bool):
        guid = str(raw_id).strip() or None
    published_raw = _string(item.get("date_published")) or _string(item.get("date_modified"))
    return Entry(
        guid=guid,
        link=link,
        title=title,
        title_is_html=False,  # JSON Feed titles are plain text by definition
        summary=summary,
        published=parse_date(published_raw),
        published_raw=published_raw,
        author=_author(item),
    )


def _rss_in_json(channel: dict[str, Any], url: str) -> Parsed:
    """Dave Winer's RSS-in-JSON (scripting.com): an RSS 2.0 channel written as JSON."""
    items = channel.get("item")
    if isinstance(items, dict):
        items = [items]
    if not isinstance(items, list):
        raise Unreadable("parse_error", "the RSS-in-JSON document has no 'item' list")
    entries: list[Entry] = []
    skipped = 0
    for item in items:
        if not isinstance(item, dict):
            skipped += 1
            continue
        guid = item.get("guid")
        if isinstance(guid, dict):  # {"#value": ..., "isPermaLink": ...} style
            guid = guid.get("#value") or guid.get("value")
        link = _resolve(_string(item.get("link")), url)
        title = _string(item.get("title"))
        summary = _string(item.get("description"))  # RSS descriptions are HTML
        if not (title or link or summary):
            skipped += 1
            continue
        published_raw = _string(item.get("pubDate"))
        entries.append(
            Entry(
                guid=_string(guid),
                link=link,
                title=title,
                summary=summary,
                published=parse_date(published_raw),
                published_raw=published_raw,
                author=_string(item.get("author")),
            )
        )
    warnings = (f"skipped_entries: {skipped} without title, link or content",) if skipped else ()
    return Parsed(
        format="rssinjson",
        title=_string(channel.get("title")),
        link=_resolve(_string(channel.get("link")), url),
        entries=tuple(entries),
        warnings=warnings,
    )


def _summary(item: dict[str, Any]) -> str | None:
    content_html = _string(item.get("content_html"))
    if content_html:
        return content_html
    for key in ("summary", "content_text"):
        text = _string(item.get(key))
        if text:
            return html.escape(text, quote=False)
    return None


def _author(item: dict[str, Any]) -> str | None:
    # 1.1 has `authors` (a list); 1.0 had a single `author` object.
    people = item.get("authors")
    if not isinstance(people, list):
        people = [item.get("author")]
    names = [
        name
        for person in people
        if isinstance(person, dict) and (name := _string(person.get("name")))
    ]
    return ", ".join(names) or None


def _string(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value or None


def _resolve(link: str | None, base: str) -> str | None:
    if link is None:
        return None
    return join(base, link) if is_http(base) else link
