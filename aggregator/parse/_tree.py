"""Parse stage helper: HTML bytes -> an lxml tree that reads like `_html.load_html`'s soup.

Input: HTML bytes and the document URL. Output: a `Document` (the top-level elements), the
base URL, the title, and text/date/class helpers that give exactly the strings the bs4
helpers in `_html` give for the same page. The automatic listing detector walks the tree
thousands of times per page; lxml builds it and walks it several times faster than bs4's
tree building and `find_all`. The selectors path stays on bs4 (soupsieve).

What keeps the two views equal (tests/test_parse_tree.py holds them together):
- Decoding: both are fed the same UTF-8 markup in one piece and told it is UTF-8
  (`_charset.decode_page` chose how the page's bytes are read).
- Content after `</html>`: libxml2 opens another `<html>` for it, which bs4 keeps beside the
  first and lxml's tree holds as a sibling of its root; a `Document` keeps them all.
- Depth: bs4 gets lxml's parse events, which no depth limit cuts; lxml's own tree builder
  stops nesting at 256 unless `huge_tree` is on. `MAX_DEPTH` (checked first, as for bs4)
  keeps us far below the huge-tree limit.
- Dropped tags (`DROP`) are replaced by an empty comment holding their tail text, so the
  text before and after stays two strings, as after bs4's `decompose`.
- Text: bs4 joins the strings of a tag with " " and leaves out comments (and `<?pi?>`,
  which lxml reads as comments) and the text of `<rt>`/`<rp>` (ruby annotations).
- Classes: bs4 splits `class` (and `rel` on links) on whitespace.
One known difference: `huge_tree` also lifts libxml2's 10 MB limit on one attribute value,
which bs4's parse mangles; no page the detector could read has one.
Must not import the network, other stages, or anything outside `aggregator.parse`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias
from urllib.parse import urljoin

from lxml import etree

from aggregator.parse._html import DATE_PROP, DROP, check_depth, first_date
from aggregator.parse._urls import is_http

# An lxml element. lxml ships no type hints (mypy sees `Any`); the alias names what is meant.
Element: TypeAlias = Any
_NONSPACE = re.compile(r"\S+")  # bs4 splits multi-valued attributes with this
_RUBY = ("rt", "rp")  # bs4 keeps their strings apart (RubyTextString, RubyParenthesisString)
# Descendants in document order, as bs4's find_all gives them.
_WITH_DATETIME = etree.XPath(".//*[@datetime]")
_WITH_ITEMPROP = etree.XPath(".//*[@itemprop]")
# An element's text and its descendants' texts and tails: the strings `itertext` yields (no
# comments), in one C call, as plain str.
_STRINGS = etree.XPath(".//text()", smart_strings=False)
_NEAR_RUBY = etree.XPath(
    "boolean(ancestor-or-self::rt or ancestor-or-self::rp or descendant::rt or descendant::rp)"
)


@dataclass(frozen=True, slots=True)
class Document:
    """A parsed page: its top-level elements in order (none for a page without elements)."""

    roots: tuple[Element, ...]

    def iter(self, *tags: str) -> Iterator[Element]:
        """Every element named `tags` (any element without), in document order."""
        for root in self.roots:
            yield from root.iter(*tags) if tags else root.iter(etree.Element)

    def iterdescendants(self, *tags: str) -> Iterator[Element]:
        """The same as `iter`: the document itself is no element (bs4's `soup` is none)."""
        return self.iter(*tags)


def load_tree(markup: bytes) -> Document:
    """The page's elements with `DROP` tags removed, from its markup in UTF-8 (see
    `_charset.decode_page`). Raises `Unreadable` (parse_error) for pathologically deep
    documents."""
    check_depth(markup)
    try:
        parser = etree.HTMLParser(recover=True, huge_tree=True, encoding="utf-8")
        parser.feed(markup)
        root: Element | None = parser.close()
    except (etree.ParserError, etree.XMLSyntaxError):
        return Document(())  # nothing to read: bs4 (fed the same events) reads no element
    if root is None:
        return Document(())
    tops = [root, *root.itersiblings()]
    document = Document(tuple(e for e in tops if is_element(e) and e.tag not in DROP))
    for node in list(document.iter(*DROP)):
        # Nested dropped tags are replaced inside their detached ancestor: harmless.
        placeholder = etree.Comment()
        placeholder.tail = node.tail
        node.getparent().replace(node, placeholder)
    return document


def tree_base_url(document: Document, url: str) -> str:
    """`_html.base_url` for a tree: the first `<base href>` if it resolves to http(s)."""
    for base in document.iter("base"):
        href = base.get("href")
        if href is None:
            continue
        candidate = urljoin(url, href.strip()) if is_http(url) else ""
        return candidate if is_http(candidate) else url
    return url


def tree_title(document: Document) -> str | None:
    """The text of the first `<title>` (bs4's `soup.title`), None when empty or missing."""
    title = next(document.iter("title"), None)
    return tree_text(title) or None


def tree_text(node: Element | None) -> str:
    """`_html.text_of` for an element: its strings joined by " ", whitespace collapsed."""
    if node is None:
        return ""
    strings = _ruby_aware_strings(node) if _NEAR_RUBY(node) else _STRINGS(node)
    # str.split() and SPACE (r"\s+") know the same whitespace; split + join is faster.
    return " ".join(" ".join(strings).split())


def tree_date(node: Element) -> tuple[str | None, datetime | None]:
    """`_html.date_of` for an element: `datetime`/`itemprop` holders first, then its text."""

    def attributes() -> Iterator[str]:
        holders = [node] if node.get("datetime") is not None else []
        holders.extend(_WITH_DATETIME(node)[:3])
        for holder in holders:
            yield holder.get("datetime") or ""
        meta = next((d for d in _WITH_ITEMPROP(node) if DATE_PROP.search(d.get("itemprop"))), None)
        if meta is not None:
            yield meta.get("content") or tree_text(meta)

    return first_date(attributes(), lambda: tree_text(node))


def classes(node: Element) -> list[str]:
    """The tokens of the `class` attribute, as bs4 lists them."""
    return _NONSPACE.findall(node.get("class") or "")


def tokens(value: str | None) -> list[str]:
    """A whitespace-separated attribute (`rel`) as bs4 lists it."""
    return _NONSPACE.findall(value or "")


def is_element(node: object) -> bool:
    """True for elements, False for comments (and the placeholders of dropped tags)."""
    return isinstance(node, etree._Element) and isinstance(node.tag, str)


def _ruby_aware_strings(node: Element) -> Iterator[str]:
    """The strings bs4's `get_text` yields for `node` in a page with ruby markup: a string
    belongs to its nearest `<rt>`/`<rp>` ancestor, and a tag only shows its own kind."""
    above = next(node.iterancestors(*_RUBY), None)
    inherited = above.tag if above is not None else None
    wanted = node.tag if node.tag in _RUBY else None
    kinds: list[str | None] = []
    for event, el in etree.iterwalk(node, events=("start", "end")):
        if event == "start":
            parent_kind = kinds[-1] if kinds else inherited
            kind = el.tag if el.tag in _RUBY else parent_kind
            kinds.append(kind)
            if is_element(el) and el.text and kind == wanted:
                yield el.text
        else:
            kinds.pop()
            if el is not node and el.tail and (kinds[-1] if kinds else inherited) == wanted:
                yield el.tail
