"""Parse stage, HTML pages: listing-page bytes -> Parsed (format "page").

Input: HTML bytes, the page URL, optional `Selectors` (CSS via bs4/soupsieve), and the
HTTP charset; the bytes are read as UTF-8 markup first (`_charset.decode_page`). With selectors,
each `item` match is one entry (a bs4 tree, `_html`); without, `_listing.find_listing` looks
for the repeated teasers in an lxml tree (`_tree`, much faster, same results). Output:
`Parsed`; `Unreadable` with kind `no_items` when nothing matches.
Must not import the network, other stages, or anything outside `aggregator.types` and
`aggregator.parse`.
"""

from __future__ import annotations

import html
from dataclasses import replace
from datetime import datetime

import soupsieve
from bs4 import BeautifulSoup, Tag

from aggregator.parse._charset import decode_page
from aggregator.parse._errors import Unreadable
from aggregator.parse._html import absolute, base_url, date_of, load_html, text_of
from aggregator.parse._listing import find_listing
from aggregator.parse._tree import load_tree, tree_base_url, tree_title
from aggregator.types import Entry, Parsed, Selectors

_HEADINGS = ("h1", "h2", "h3", "h4", "h5", "h6")


def parse_html_page(
    content: bytes, url: str, selectors: Selectors | None, charset: str | None = None
) -> Parsed:
    """The page's entries; `charset` is the HTTP Content-Type's (None: it names none)."""
    decoded = decode_page(content, charset)
    parsed = (
        _automatic(decoded.markup, url)
        if selectors is None
        else _selected(decoded.markup, url, selectors)
    )
    if decoded.warnings:
        return replace(parsed, warnings=decoded.warnings + parsed.warnings)
    return parsed


def _selected(markup: bytes, url: str, selectors: Selectors) -> Parsed:
    soup = load_html(markup)
    base = base_url(soup, url)
    title = text_of(soup.title) or None
    entries, skipped = _with_selectors(soup, base, selectors)
    if not entries:
        raise Unreadable(
            "no_items",
            f"the item selector {selectors.item!r} matched nothing usable on this page; "
            "check the selectors against the current page markup",
        )
    warnings = (
        (f"skipped_entries: {skipped} items without title, link or summary",) if skipped else ()
    )
    return Parsed(format="page", title=title, link=base, entries=tuple(entries), warnings=warnings)


def _automatic(markup: bytes, url: str) -> Parsed:
    document = load_tree(markup)
    base = tree_base_url(document, url)
    title = tree_title(document)
    try:
        entries = find_listing(document, base, url)
    except RecursionError as e:
        raise Unreadable("parse_error", "the page is nested too deeply to read") from e
    if not entries:
        raise Unreadable(
            "no_items",
            "found no repeated list of article links on this page; if it is a listing, "
            "configure selectors (item, title, link) for it, or use the site's feed",
        )
    return Parsed(format="page", title=title, link=base, entries=tuple(entries))


def _with_selectors(soup: BeautifulSoup, base: str, sel: Selectors) -> tuple[list[Entry], int]:
    entries: list[Entry] = []
    skipped = 0
    for item in _select(soup, sel.item):
        title_node = _select_one(item, sel.title) if sel.title else _default_title(item)
        link = _link(item, sel.link, base)
        title = text_of(title_node) or None
        if title is None and sel.title is None:
            anchor = item if item.name == "a" else item.find("a", href=True)
            title = text_of(anchor) or None if isinstance(anchor, Tag) else None
        summary = _summary(item, sel.summary, title)
        published_raw, published = _date(item, sel.date)
        if not (title or link or summary):
            skipped += 1
            continue
        entries.append(
            Entry(
                guid=link,
                link=link,
                title=title,
                summary=summary,
                published=published,
                published_raw=published_raw,
            )
        )
    return entries, skipped


def _select(root: Tag, selector: str) -> list[Tag]:
    try:
        return list(root.select(selector))
    except soupsieve.SelectorSyntaxError as e:
        raise Unreadable(
            "parse_error",
            f"the CSS selector {selector!r} is invalid: {e.args[0]}; fix it in feeds.yaml",
        ) from e


def _select_one(root: Tag, selector: str) -> Tag | None:
    found = _select(root, selector)
    return found[0] if found else None


def _default_title(item: Tag) -> Tag | None:
    heading = item.find(_HEADINGS)
    return heading if isinstance(heading, Tag) else None


def _link(item: Tag, selector: str | None, base: str) -> str | None:
    node = _select_one(item, selector) if selector else None
    if selector is None:
        node = item if item.name == "a" and item.has_attr("href") else None
        found = item.find("a", href=True)
        node = node or (found if isinstance(found, Tag) else None)
    if node is None:
        return None
    if not node.has_attr("href"):
        # The selector may point at a wrapper (a heading); take the link inside it.
        inner = node.find("a", href=True)
        node = inner if isinstance(inner, Tag) else None
    return absolute(node.get("href"), base) if node is not None else None


def _summary(item: Tag, selector: str | None, title: str | None) -> str | None:
    if selector:
        node = _select_one(item, selector)
        return node.decode_contents().strip() or None if node is not None else None
    for p in item.find_all("p"):
        text = text_of(p)
        if text and text != title:
            return html.escape(text, quote=False)
    return None


def _date(item: Tag, selector: str | None) -> tuple[str | None, datetime | None]:
    node = _select_one(item, selector) if selector else item
    if node is None:
        return None, None
    return date_of(node)
