"""The lxml reading of a page (`parse/_tree.py`) against the bs4 one (`parse/_html.py`).

The automatic listing detector reads pages through `_tree`; it must see exactly what the bs4
tree showed it before: the same elements in the same order, the same text of every element,
the same classes, dates, title and base URL, for tricky markup and the real-world corpus.
"""

from __future__ import annotations

import sys

import pytest

from aggregator.parse import parse_page
from aggregator.parse._charset import decode_page
from aggregator.parse._errors import Unreadable
from aggregator.parse._html import SPACE, base_url, date_of, load_html, text_of
from aggregator.parse._page import parse_html_page
from aggregator.parse._tree import (
    classes,
    load_tree,
    tokens,
    tree_base_url,
    tree_date,
    tree_text,
    tree_title,
)
from tests.conftest import CORPUS

URL = "https://example.com/news/"


def _assert_same_reading(content: bytes, url: str = URL, *, dates: bool = True) -> int:
    markup = decode_page(content).markup
    soup = load_html(markup)
    root = load_tree(markup)
    tags = soup.find_all(True)
    elements = list(root.iter())
    assert [e.tag for e in elements] == [t.name for t in tags]
    for tag, element in zip(tags, elements, strict=True):
        assert tree_text(element) == text_of(tag), tag.name
        assert classes(element) == list(tag.get("class") or ()), tag.name
        for name in ("href", "datetime", "itemprop", "content", "role", "id", "property"):
            assert element.get(name) == tag.get(name), (tag.name, name)
        if tag.name == "link":
            assert tokens(element.get("rel")) == list(tag.get("rel") or ())
        if dates:
            assert tree_date(element) == date_of(tag), tag.name
    assert tree_title(root) == (text_of(soup.title) or None)
    assert tree_base_url(root, url) == base_url(soup, url)
    return len(tags)


def _items(template: str, n: int = 4) -> str:
    return "<ul>" + "".join(template.format(i=i, d=i + 1) for i in range(n)) + "</ul>"


TRICKY = {
    "comments and processing instructions": _items(
        '<li><h2><a href="/a/{i}">Head<!-- c -->line<?php echo 1 ?>words {i}</a></h2>'
        "<p>Teaser<!--x-->text<script>var x = 1;</script>goes on {i}</p></li>"
    ),
    "dropped tags keep their tails apart": _items(
        '<li><h2><a href="/a/{i}">Head<svg><title>t</title></svg>line<noscript>n</noscript>'
        "x {i}</a></h2><p>A<style>p{{}}</style>B<template>t</template>C<iframe></iframe>D "
        "<object>o</object>E, a teaser long enough {i}</p></li>"
    ),
    "ruby annotations": '<meta charset="utf-8">'
    + _items(
        '<li><h2><a href="/a/{i}">\u6f22<rp>(</rp><rt>kan<b>b</b></rt><rp>)</rp>'
        "\u5b57 headline {i}</a>"
        "</h2><p>teaser <rt>ruby</rt> text <ruby>x<rt><a href='/r/{i}'>in rt {i}</a></rt>"
        "</ruby></p><rt><p>rt p<rp>rp</rp></p></rt></li>"
    ),
    "entities and odd whitespace": _items(
        '<li class="a  b\tc\u00a0d item\u2003x"><h2 class="entry-title\x0bfoo">'
        '<a href="/a/{i}?x=1&amp;y=2">Caf&eacute; &amp; bar &#8212;&nbsp;{i} &bogus; x</a></h2>'
        "<p>&lt;b&gt; teaser &#x26;\u2028more\u3000text {i}</p><pre>  keep\n  {i}</pre></li>"
    ),
    "cdata in html": _items(
        '<li><h2><a href="/a/{i}"><![CDATA[Story <b>{i}</b>]]> about</a></h2></li>'
    ),
    "dates": _items(
        '<li datetime="bogus"><h2><a href="/a/{i}">Dated headline {i}</a></h2>'
        '<time datetime="">x</time><time datetime="2024-01-0{d}T10:00:00Z">Jan</time>'
        '<meta itemprop="XdatePublishedY" content="2023-0{d}-02">'
        '<span itemprop="dateCreated">2020-01-01</span> 3 March 2021</li>'
    ),
    "xhtml": '<?xml version="1.0" encoding="utf-8"?><!DOCTYPE html PUBLIC "-//W3C//DTD XHTML'
    ' 1.0 Strict//EN" "x"><html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en"><head>'
    '<title>X<!-- c --> t</title><base target="_x"/><base href="/base/"/></head><body>'
    + _items('<li><a href="/a/{i}"/>teaser {i}<br/>x</li>')
    + "</body></html>",
    "base href javascript": '<base href="javascript:alert(1)//"><title>t</title>'
    + _items('<li><a href="a/{i}">Link {i}</a></li>'),
    "base inside a dropped tag": '<noscript><base href="https://evil.example/"></noscript>'
    + _items('<li><a href="a/{i}">Link {i}</a></li>'),
    "title inside svg": "<svg><title>svg</title></svg><title> real\n title </title>",
    "frameset": '<html><frameset><frame src="a"></frameset><p>after</p></html>',
    "content after the html end tag": _items('<li><a href="/a/{i}">Link {i}</a></li>')
    + '</body></html>trailing <title>late</title><base href="https://late.example/x/">'
    '<link rel="canonical alternate" href="https://news.example.com/"><p>more</p>',
    "two documents": "<html><head></head></html><html><body>"
    + _items('<li><a href="/a/{i}">Link {i}</a></li>')
    + "</body></html>",
    "no body": '<html><head><title>only head</title><link rel="canonical" href="/c"></head>',
}


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_tree_reads_tricky_markup_like_bs4(name: str) -> None:
    assert _assert_same_reading(TRICKY[name].encode()) > 0


@pytest.mark.parametrize(
    "content",
    [
        '<html><head><meta charset="windows-1252"><title>Caf\u00e9 \u201cnews\u201d \u20ac'
        "</title></head><body><p>\u00e9t\u00e9</p></body></html>".encode("cp1252"),
        '<meta http-equiv="Content-Type" content="text/html; charset=windows-1252">'
        "<title>\u00e9</title>".encode("cp1252"),
        '<meta charset="koi8-r"><title>\u041d\u043e\u0432\u043e\u0441\u0442\u0438</title>'.encode(
            "koi8-r"
        ),
        "\ufeff<title>T\u00e9</title><p>x</p>".encode("utf-16-le"),
        b"\xef\xbb\xbf<title>T\xc3\xa9</title>",
        b'<meta charset="x-bogus-123"><title>a\xff\xfeb</title>',
        "<title>\u00e9t\u00e9 sans meta</title><p>\u00e9</p>".encode("latin-1"),
        "<title>\u6f22\u5b57 sans meta</title>".encode(),
        b"<title>\x81\x8d\xff x</title>",
        '<meta charset="windows-1252"><title>\u201cquoted\u201d</title><p>x</p>'.encode(),
    ],
    ids=[
        "cp1252-meta",
        "cp1252-http-equiv",
        "koi8-r",
        "utf16-bom",
        "utf8-bom",
        "unknown-charset",
        "latin1-undeclared",
        "utf8-undeclared",
        "undefined-cp1252-bytes",
        "cp1252-declared-but-undecodable",
    ],
)
def test_tree_decodes_like_bs4(content: bytes) -> None:
    _assert_same_reading(content)


def test_tree_decodes_a_declared_windows_1252_page() -> None:
    content = '<meta charset="windows-1252"><title>Caf\u00e9 \u201cnews\u201d</title>'.encode(
        "cp1252"
    )
    assert tree_title(load_tree(decode_page(content).markup)) == "Caf\u00e9 \u201cnews\u201d"


@pytest.mark.parametrize("content", [b"", b"  \n ", b"<!-- only a comment -->", b"<?xml?>"])
def test_tree_of_a_document_without_elements_is_none(content: bytes) -> None:
    assert load_tree(content).roots == ()
    assert load_html(content).find(True) is None  # bs4 agrees: nothing to read
    with pytest.raises(Unreadable) as info:
        parse_html_page(content, URL, None)
    assert info.value.kind == "no_items"


def test_tree_keeps_depth_protection() -> None:
    with pytest.raises(Unreadable) as info:
        load_tree(b"<div>" * 3000 + b"x")
    assert info.value.kind == "parse_error"


def test_tree_nests_as_deep_as_bs4_below_the_depth_limit() -> None:
    # lxml's own tree builder stops nesting at 256 levels unless huge_tree is on; bs4 (fed
    # by lxml's parse events) does not. A listing under 1990 divs is still a listing.
    items = _items('<li><h2><a href="/a/{i}">A fine story title number {i}</a></h2></li>')
    content = (b"<div>" * 1990 + items.encode()).decode()
    root = load_tree(content.encode())
    deepest = max(len(list(e.iterancestors())) for e in root.iter("a"))
    assert deepest > 1990
    parsed = parse_page(content.encode(), URL)
    assert [e.title for e in parsed.entries] == [f"A fine story title number {i}" for i in range(4)]


def test_auto_mode_reads_text_as_bs4_did() -> None:
    parsed = parse_page(TRICKY["dropped tags keep their tails apart"].encode(), URL)
    assert parsed.entries[0].title == "Head line x 0"
    assert parsed.entries[0].summary == "A B C D E, a teaser long enough 0"
    parsed = parse_page(TRICKY["ruby annotations"].encode(), URL)
    assert parsed.entries[0].title == "\u6f22 \u5b57 headline 0"  # no "(kan)"


def test_str_split_and_space_regex_know_the_same_whitespace() -> None:
    # tree_text collapses whitespace with str.split(); text_of with SPACE (r"\s+").
    chars = [chr(c) for c in range(sys.maxunicode + 1)]
    assert {c for c in chars if SPACE.fullmatch(c)} == {c for c in chars if c.isspace()}


def _corpus_pages() -> list[str]:
    if not CORPUS.is_dir():
        return []
    return sorted(str(p.relative_to(CORPUS)) for p in CORPUS.rglob("*.html"))


@pytest.mark.corpus
@pytest.mark.parametrize("path", _corpus_pages())
def test_tree_reads_corpus_pages_like_bs4(path: str) -> None:
    _assert_same_reading((CORPUS / path).read_bytes(), "https://www.example.com/" + path)
