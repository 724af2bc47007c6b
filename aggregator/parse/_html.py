"""Parse stage helper: HTML bytes -> a BeautifulSoup tree plus the bits every page reader needs.

Input: HTML bytes and the document URL. Output: a soup with scripts and styles removed, the
base URL for links (honouring a safe `<base href>`), link/text/date helpers.
Nesting depth is checked with a cheap lxml pass first, because building a bs4 tree for
200 000 nested elements takes seconds and deep trees make recursive tree walks crash.
Must not import the network, other stages, or anything outside `aggregator.parse`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from urllib.parse import urljoin

from bs4 import (
    BeautifulSoup,
    MarkupResemblesLocatorWarning,
    Tag,
    XMLParsedAsHTMLWarning,
)
from bs4.element import PageElement
from lxml import etree

from aggregator.parse._dates import find_date, parse_date
from aggregator.parse._errors import Unreadable
from aggregator.parse._urls import is_http, join

# Real pages nest 20-60 deep; a few hundred happens with unclosed tags. Far beyond that is an
# attack or junk, and bs4 needs seconds for it.
MAX_DEPTH = 2000
DROP = ("script", "style", "noscript", "template", "svg", "iframe", "object")
SPACE = re.compile(r"\s+")
DATE_PROP = re.compile("date(published|created)", re.IGNORECASE)


class _DepthProbe:
    """An lxml parser target that only measures how deep the element tree goes."""

    def __init__(self) -> None:
        self.depth = 0
        self.max_depth = 0

    def start(self, tag: str, attrib: object) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            self.max_depth = self.depth

    def end(self, tag: str) -> None:
        self.depth -= 1

    def data(self, data: str) -> None:
        pass

    def close(self) -> int:
        return self.max_depth


def load_html(markup: bytes) -> BeautifulSoup:
    """Build the tree from the page's markup in UTF-8 (see `_charset.decode_page`); raise
    `Unreadable` (parse_error) for pathologically deep documents."""
    check_depth(markup)
    try:
        with warnings.catch_warnings():
            # XHTML or XML served as a page, and tiny bodies that look like a path, make bs4
            # warn; we decided to read them as HTML already.
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
            soup = BeautifulSoup(markup, "lxml", from_encoding="utf-8")
        for tag in soup.find_all(DROP):
            tag.decompose()
    except RecursionError as e:
        raise Unreadable("parse_error", "the page is nested too deeply to read") from e
    return soup


def check_depth(content: bytes) -> None:
    """Raise `Unreadable` (parse_error) when the elements nest deeper than `MAX_DEPTH`."""
    depth = 0
    # A document with fewer tags than MAX_DEPTH cannot nest deeper; skip the probe (a Python
    # callback per element) for it.
    if content.count(b"<") > MAX_DEPTH:
        probe = etree.HTMLParser(target=_DepthProbe(), recover=True)
        try:
            probe.feed(content)
            depth = probe.close()
        except etree.Error:
            depth = 0  # lxml gave up; bs4 below decides whether anything is readable
    if depth > MAX_DEPTH:
        raise Unreadable(
            "parse_error",
            f"the page nests elements {depth} deep (more than {MAX_DEPTH}); it is not a usable "
            "page; check the URL",
        )


def base_url(soup: BeautifulSoup, url: str) -> str:
    """The URL relative links resolve against: `<base href>` if it is http(s), else `url`."""
    base = soup.find("base", href=True)
    if isinstance(base, Tag):
        candidate = urljoin(url, str(base["href"]).strip()) if is_http(url) else ""
        if is_http(candidate):
            return candidate
    return url


def absolute(href: object, base: str) -> str | None:
    """`href` made absolute; never resolves against a non-http base (no `javascript:` joins)."""
    if not isinstance(href, str):
        return None
    href = href.strip()
    if not href or href.startswith("#"):
        return None
    return join(base, href) if is_http(base) else href


def text_of(node: PageElement | None) -> str:
    """Visible text with whitespace collapsed."""
    if node is None:
        return ""
    if isinstance(node, Tag):
        return SPACE.sub(" ", node.get_text(" ")).strip()
    return SPACE.sub(" ", str(node)).strip()


def date_of(node: Tag) -> tuple[str | None, datetime | None]:
    """A date found in or on `node`: `datetime`/`content` attributes first, then its text."""

    def attributes() -> Iterator[str]:
        holders = [node] if node.has_attr("datetime") else []
        holders.extend(node.find_all(True, attrs={"datetime": True}, limit=3))
        for holder in holders:
            yield str(holder.get("datetime") or "")
        meta = node.find(True, attrs={"itemprop": DATE_PROP})
        if isinstance(meta, Tag):
            yield str(meta.get("content") or text_of(meta))

    return first_date(attributes(), lambda: text_of(node))


def first_date(
    attributes: Iterable[str], text: Callable[[], str]
) -> tuple[str | None, datetime | None]:
    """(raw, date) of the first of `attributes` that parses as a date, else of a date found
    in `text()` (its first 120 characters as the raw); (None, None) if none. The order
    `date_of` and `_tree.tree_date` share; both pass lazy iterables, so later places are
    looked at only when the earlier ones hold no date."""
    for value in attributes:
        raw = value.strip()
        parsed = parse_date(raw)
        if parsed is not None:
            return raw, parsed
    full = text()
    parsed = find_date(full)
    if parsed is not None:
        return full[:120], parsed
    return None, None
