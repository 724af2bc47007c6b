"""The lxml fast path for plain RSS 2.0 / Atom (`parse/_fastfeed.py`) against feedparser.

Wherever the fast path accepts a document, the items that come out of normalize must equal
those that feedparser's reading gives, for every feed of the real-world corpus and for the
benchmark's generated feeds; wherever it is unsure, it must decline (None).
"""

from __future__ import annotations

import csv
import random
import re

import pytest

from aggregator.normalize import normalize_entry
from aggregator.parse._errors import Unreadable
from aggregator.parse._fastfeed import _relative_url, parse_plain_feed
from aggregator.parse._feed import parse_with_feedparser
from aggregator.parse._sniff import sniff
from aggregator.types import Parsed
from bench.corpus import fixed_now, generate_corpus
from tests.conftest import CORPUS

URL = "https://example.org/feeds/feed.xml"


def _corpus_feeds() -> list[str]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as f:
        return [
            r["path"] for r in csv.DictReader(f, delimiter="\t") if r["path"].startswith("feeds/")
        ]


def _xml_feeds() -> list[str]:
    """The corpus documents the parse stage would hand to an XML feed parser (JSON Feeds,
    HTML and unreadable bytes never reach the fast path)."""
    paths = []
    for path in _corpus_feeds():
        try:
            sniffed = sniff((CORPUS / path).read_bytes(), None)
        except Unreadable:  # empty or broken: the parse stage stops before any parser
            continue
        if sniffed.kind in ("feed", "xml"):
            paths.append(path)
    return paths


def _same_result(fast: Parsed, slow: Parsed) -> None:
    assert fast.format == slow.format
    assert (fast.title, fast.link) == (slow.title, slow.link)
    assert fast.warnings == slow.warnings
    assert [normalize_entry(e, "s") for e in fast.entries] == [
        normalize_entry(e, "s") for e in slow.entries
    ]


@pytest.mark.corpus
@pytest.mark.parametrize("path", _xml_feeds())
def test_fast_path_reads_real_feeds_as_feedparser_does(path: str) -> None:
    sniffed = sniff((CORPUS / path).read_bytes(), None)
    fast = parse_plain_feed(sniffed.content, URL, None)
    if fast is None:
        return  # declined: feedparser reads it, as before
    _same_result(fast, parse_with_feedparser(sniffed.content, URL, None))


@pytest.mark.corpus
def test_fast_path_takes_a_good_share_of_the_real_corpus() -> None:
    taken = 0
    for path in _corpus_feeds():
        try:
            sniffed = sniff((CORPUS / path).read_bytes(), None)
        except Unreadable:
            continue
        taken += parse_plain_feed(sniffed.content, URL, None) is not None
    assert taken >= 60  # of ~440 documents, most of them deliberately odd edge cases


def test_fast_path_reads_the_benchmark_corpus_as_feedparser_does() -> None:
    docs = [d for d in generate_corpus(20, fixed_now()).documents if d.kind in ("rss", "atom")]
    assert {d.kind for d in docs} == {"rss", "atom"}
    for doc in docs:
        fast = parse_plain_feed(doc.body, URL, doc.content_type)
        assert fast is not None, doc.path
        assert len(fast.entries) == 30
        _same_result(fast, parse_with_feedparser(doc.body, URL, doc.content_type))


RSS = """<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>T</title><link>https://e.org/</link>
<item>{item}</item></channel></rss>"""


@pytest.mark.parametrize(
    "item",
    [
        "<title>a</title><media:title xmlns:media='http://search.yahoo.com/mrss/'>b</media:title>",
        "<title>a</title><title>b</title>",
        "<title>a <b>bold</b></title>",
        "<title>a</title><description>&lt;a href='/rel'&gt;x&lt;/a&gt;</description>",
        "<title>a</title><author>jane@e.org (Jane)</author>",
        "<title>a</title><content:encoded xmlns:content='http://purl.org/rss/1.0/modules/"
        "content/'>c</content:encoded><description>d</description>",
    ],
)
def test_fast_path_declines_what_it_does_not_read_like_feedparser(item: str) -> None:
    doc = RSS.format(item=item).encode()
    assert parse_plain_feed(doc, URL, None) is None
    assert parse_with_feedparser(doc, URL, None).entries  # feedparser still reads it


@pytest.mark.parametrize(
    ("doc", "content_type"),
    [
        (RSS.format(item="<title>a</title>").replace("utf-8", "iso-8859-1").encode(), None),
        (RSS.format(item="<title>a</title>").encode(), "application/rss+xml; charset=latin-1"),
        (b"<!DOCTYPE rss>" + RSS.format(item="<title>a</title>").split("?>", 1)[1].encode(), None),
        (RSS.format(item="<title>a</title>").replace("2.0", "0.91").encode(), None),
        (RSS.format(item="<title>a</title").encode(), None),  # not well-formed
        (
            RSS.format(item="<title>a</title>").replace("<rss ", '<rss xml:base="/x/" ').encode(),
            None,
        ),
    ],
)
def test_fast_path_declines_documents_outside_its_scope(
    doc: bytes, content_type: str | None
) -> None:
    assert parse_plain_feed(doc, URL, content_type) is None


def test_fast_path_gives_feedparser_quirks() -> None:
    """An Atom entry without a link takes its id as the link; RSS guid permalinks too."""
    atom = b"""<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">
    <id>urn:feed</id><entry><id>https://e.org/post/1</id><title>One</title></entry></feed>"""
    fast = parse_plain_feed(atom, URL, None)
    assert fast is not None
    assert fast.entries[0].link == "https://e.org/post/1"
    assert fast.link == "urn:feed"
    _same_result(fast, parse_with_feedparser(atom, URL, None))
    rss = RSS.format(item="<title>a</title><guid>/p/1</guid>").encode()
    fast = parse_plain_feed(rss, URL, None)
    assert fast is not None
    assert fast.entries[0].link == "https://example.org/p/1"
    _same_result(fast, parse_with_feedparser(rss, URL, None))


# The search `_relative_url` stands for (what feedparser would resolve): kept here to compare.
RELATIVE_URL = re.compile(
    r"""\b(?:href|src|cite|action|background|longdesc|usemap|poster|srcset|data)\s*=\s*"""
    r"""(?!\s*["']?\s*(?:https?://|mailto:))""",
    re.IGNORECASE,
)


@pytest.mark.parametrize(
    ("value", "relative"),
    [
        ('<a href="https://e.org/a" rel="nofollow">x</a>', False),
        ('<a href="/a">x</a>', True),
        ("<img SRC = 'pic.png'>", True),
        ('<a href=" mailto:a@e.org">x</a>', False),
        ('<a xhref="/a" hrefs="/b">x</a>', False),  # neither is one of the names
        ('<a data-href="/a">x</a>', True),  # "href" is a whole word after "-"
        ('<img srcset="a.png 2x">', True),
        ("<a \u017frc=/a>", True),  # the long s is an s, without case
        ("x = 1, data=", True),
        ("no attributes", False),
    ],
)
def test_a_relative_url_in_a_summary_is_found(value: str, relative: bool) -> None:
    assert _relative_url(value) is relative
    assert (RELATIVE_URL.search(value) is not None) is relative


def test_relative_urls_are_found_as_the_pattern_finds_them() -> None:
    """Random strings of the pieces that decide it: the same answer for each."""
    pieces = [
        *("href", "HREF", "src", "srcset", "data", "Poster", "longdesc", "\u017f", "s", "et"),
        *("x", "_", "0", "-", "\u00e9", "\u0130", "\u212a", " ", "\t", "\n", "\u00a0"),
        *("\u2028", "=", '"', "'", "https://", "http:/", "mailto:", ":", "<a ", ">"),
    ]
    rng = random.Random(8)
    found = 0
    for _ in range(50_000):
        value = "".join(rng.choice(pieces) for _ in range(rng.randint(1, 14)))
        expected = RELATIVE_URL.search(value) is not None
        assert _relative_url(value) is expected, value
        found += expected
    assert found > 500  # both answers were tried


@pytest.mark.corpus
def test_relative_urls_in_real_documents_are_found_as_the_pattern_finds_them() -> None:
    documents = [
        p
        for p in sorted(CORPUS.rglob("*"))
        if p.is_file() and p.suffix in (".xml", ".html", ".htm", ".rss", ".atom")
    ]
    answers = set()
    for path in documents:
        text = path.read_bytes().decode("utf-8", "replace")
        expected = RELATIVE_URL.search(text) is not None
        assert _relative_url(text) is expected, path
        answers.add(expected)
    assert answers == {True, False}  # documents with relative URLs and without
