"""Tests for the parse stage (aggregator.parse): bytes in, entries or a ParseError out.

Inline samples cover every behaviour so a plain clone tests the parser; tests marked
`corpus` read the shared real-world corpus by path (never copied into the repo).
"""

from __future__ import annotations

import gzip
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

import aggregator.parse
from aggregator.exceptions import ParseError
from aggregator.parse import parse_feed, parse_fetched, parse_json_feed, parse_page
from aggregator.types import Fetched, Parsed, Selectors

URL = "https://example.com/feed/"


def fetched(content: bytes, url: str = URL, content_type: str | None = None) -> Fetched:
    return Fetched(source_id="src", url=url, status=200, content=content, content_type=content_type)


def parse_error(content: bytes, kind: str = "auto", **kw: object) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_fetched(fetched(content, **kw), kind)  # type: ignore[arg-type]
    assert info.value.source_id == "src"
    assert info.value.url == kw.get("url", URL)
    return info.value


def test_public_api() -> None:
    assert aggregator.parse.__all__ == sorted(aggregator.parse.__all__)
    assert set(aggregator.parse.__all__) == {
        "common_feed_urls",
        "discover_feeds",
        "parse_feed",
        "parse_fetched",
        "parse_json_feed",
        "parse_page",
    }


# --- RSS / Atom -----------------------------------------------------------------------------

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0" xmlns:content="http://purl.org/rss/1.0/modules/content/">
<channel>
  <title>Example News</title>
  <link>https://example.com/</link>
  <item>
    <title>First story</title>
    <link>/news/first</link>
    <guid isPermaLink="false">id-1</guid>
    <description>&lt;p&gt;Teaser &lt;a href="/more"&gt;more&lt;/a&gt;&lt;/p&gt;</description>
    <pubDate>Tue, 05 Mar 2024 10:00:00 +0100</pubDate>
    <author>jane@example.com (Jane)</author>
  </item>
  <item>
    <title>No date, no guid</title>
    <link>https://example.com/news/second</link>
  </item>
  <item>
    <description>Only a description</description>
  </item>
  <item>
    <category>nothing usable</category>
  </item>
  <item>
    <title>Naive date</title>
    <pubDate>2024-03-05T10:00:00</pubDate>
  </item>
</channel>
</rss>"""


def test_rss20() -> None:
    parsed = parse_fetched(fetched(RSS, content_type="application/rss+xml"))
    assert parsed.format == "rss20"
    assert parsed.title == "Example News"
    assert parsed.link == "https://example.com/"
    first, second, third, naive = parsed.entries
    assert first.title == "First story"
    assert first.link == "https://example.com/news/first"
    assert first.guid == "id-1"
    assert first.summary is not None and "Teaser" in first.summary
    assert 'href="https://example.com/more"' in first.summary  # relative URIs in content resolved
    assert first.published == datetime(2024, 3, 5, 9, 0, tzinfo=UTC)
    assert first.published is not None and first.published.tzinfo is not None
    assert first.published_raw == "Tue, 05 Mar 2024 10:00:00 +0100"
    assert first.author is not None and "Jane" in first.author
    assert second.published is None and second.guid is None
    assert third.title is None and third.summary == "Only a description"
    assert naive.published == datetime(2024, 3, 5, 10, 0, tzinfo=UTC)  # no zone: UTC
    # The item with nothing but a category is skipped and counted.
    assert any(w.startswith("skipped_entries: 1") for w in parsed.warnings)


ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://blog.example.org/base/">
  <title>Atom Blog</title>
  <link href="/" rel="alternate"/>
  <entry xml:base="posts/">
    <title type="html">Hello &lt;em&gt;world&lt;/em&gt;</title>
    <link href="hello.html" rel="alternate"/>
    <id>tag:example.org,2024:1</id>
    <updated>2024-03-05T10:00:00+02:00</updated>
    <content type="html">&lt;p&gt;Body&lt;/p&gt;</content>
    <author><name>Ann</name></author>
  </entry>
  <entry>
    <title>Plain &amp; simple</title>
    <link href="javascript:alert(1)"/>
    <summary>1 &lt; 2</summary>
  </entry>
</feed>"""


def test_atom_with_xml_base() -> None:
    parsed = parse_feed(ATOM, "https://blog.example.org/feed.atom")
    assert parsed.format == "atom10"
    hello, plain = parsed.entries
    assert hello.link == "https://blog.example.org/base/posts/hello.html"
    assert hello.title_is_html and hello.title is not None and "<em>world</em>" in hello.title
    assert hello.published == datetime(2024, 3, 5, 8, 0, tzinfo=UTC)
    assert hello.summary == "<p>Body</p>"
    assert hello.author == "Ann"
    assert hello.guid == "tag:example.org,2024:1"
    assert not plain.title_is_html and plain.title == "Plain & simple"
    assert plain.summary == "1 &lt; 2"  # plain text is escaped into HTML
    # Scheme filtering is normalize's job; resolution itself must not invent such links.
    assert plain.link is None or not plain.link.startswith("https://blog.example.org/javascript")


def test_feed_kind_with_content_type_lying() -> None:
    # text/xml without charset means US-ASCII under RFC 3023; UTF-8 titles must survive it.
    body = '<rss version="2.0"><channel><item><title>Café</title></item></channel></rss>'
    parsed = parse_fetched(fetched(body.encode(), content_type="text/html"), "feed")
    assert parsed.entries[0].title == "Café"
    parsed = parse_fetched(fetched(body.encode(), content_type="text/xml"), "feed")
    assert parsed.entries[0].title == "Café"


def test_malformed_but_recovered_is_a_warning() -> None:
    body = b'<rss version="2.0"><channel><item><title>A & B</title><link>/a</link></item>'
    parsed = parse_fetched(fetched(body))
    assert parsed.entries and parsed.entries[0].link == "https://example.com/a"
    assert any(w.startswith("malformed_xml") for w in parsed.warnings)


def test_leading_whitespace_and_comment_before_declaration() -> None:
    body = b'\n\n  <!-- generator -->\n<?xml version="1.0"?><rss version="2.0"><channel>'
    body += b"<item><title>Hi there</title></item></channel></rss>"
    parsed = parse_fetched(fetched(body), "feed")
    assert parsed.entries[0].title == "Hi there"
    assert not any(w.startswith("malformed_xml") for w in parsed.warnings)


@pytest.mark.parametrize(
    ("bom", "codec"),
    [
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16-le"),
        (b"\xfe\xff", "utf-16-be"),
        (b"", "utf-16-le"),  # no BOM: guessed from the NUL bytes
        (b"", "utf-16-be"),
    ],
)
def test_unicode_encodings(bom: bytes, codec: str) -> None:
    text = '<rss version="2.0"><channel><item><title>Grüße, Страница</title></item></channel></rss>'
    parsed = parse_fetched(fetched(bom + text.encode(codec)), "feed")
    assert parsed.entries[0].title == "Grüße, Страница"


def test_declared_legacy_encoding() -> None:
    body = '<?xml version="1.0" encoding="windows-1251"?><rss version="2.0"><channel>'
    body += "<item><title>Новости дня</title></item></channel></rss>"
    parsed = parse_feed(body.encode("windows-1251"), URL)
    assert parsed.entries[0].title == "Новости дня"


def test_gzip_without_content_encoding() -> None:
    parsed = parse_fetched(fetched(gzip.compress(RSS)))
    assert parsed.format == "rss20" and len(parsed.entries) == 4
    assert any(w.startswith("gzip_body") for w in parsed.warnings)


def test_gzip_bomb_is_refused() -> None:
    from aggregator.parse import _sniff

    bomb = gzip.compress(b"<rss>" + b" " * (2 * 1024 * 1024))
    with pytest.raises(_sniff.Unreadable, match="MiB"):
        _sniff.gunzip(bomb, limit=1024 * 1024)
    assert parse_error(gzip.compress(b"\x1f\x8b" + b"x" * 10)[:20]).kind == "parse_error"


@pytest.mark.parametrize("body", [b"", b"   \n\t  "])
def test_empty_body(body: bytes) -> None:
    err = parse_error(body)
    assert err.kind == "empty_body"
    assert "empty" in err.message


HTML_ERROR_PAGE = b"""<!DOCTYPE html><html><head><title>Sorry</title>
<link rel="alternate" type="application/rss+xml" href="https://example.com/real.rss">
</head><body><h1>We're sorry</h1><p>Something went wrong.</p></body></html>"""


def test_html_where_a_feed_was_configured() -> None:
    err = parse_error(HTML_ERROR_PAGE, "feed", content_type="application/rss+xml")
    assert err.kind == "not_a_feed"
    assert "HTML page, not a feed" in err.message and "kind: page" in err.message
    assert "https://example.com/real.rss" in err.message  # the editor learns the right URL


def test_html_without_listing_in_auto_mode() -> None:
    err = parse_error(HTML_ERROR_PAGE)
    assert err.kind == "not_a_feed"
    assert "selectors" in err.message


def test_unknown_xml_and_text() -> None:
    assert parse_error(b"<note><to>Tove</to></note>").kind == "not_a_feed"
    err = parse_error(b"Service Unavailable", content_type="text/plain")
    assert err.kind == "not_a_feed" and "Service Unavailable" in err.message


def test_broken_feed_without_entries_is_parse_error() -> None:
    err = parse_error(b'<rss version="2.0"><channel><title>x</ti', "feed")
    assert err.kind == "parse_error"
    assert "not well-formed" in err.message


def test_valid_empty_feed_is_not_an_error() -> None:
    parsed = parse_feed(b'<rss version="2.0"><channel><title>t</title></channel></rss>', URL)
    assert parsed.entries == () and parsed.format == "rss20"


def test_body_that_is_a_file_path_is_never_opened(tmp_path: Path) -> None:
    # feedparser.parse(bytes) treats a body that names an existing file as a path to read.
    secret = tmp_path / "secret.txt"
    secret.write_text(
        "<rss version='2.0'><channel><item><title>LEAK</title></item></channel></rss>"
    )
    with pytest.raises(ParseError) as info:
        parse_fetched(fetched(str(secret).encode()), "feed")
    assert "LEAK" not in str(info.value)


def test_external_entity_is_never_expanded(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPSECRET")
    body = f"""<?xml version="1.0"?>
<!DOCTYPE rss [<!ENTITY xxe SYSTEM "file://{secret}">]>
<rss version="2.0"><channel><title>t &xxe;</title>
<item><title>a &xxe;</title><link>https://example.com/a</link><description>&xxe;</description>
</item></channel></rss>"""
    try:
        parsed = parse_fetched(fetched(body.encode()), "feed")
    except ParseError as e:
        assert "TOPSECRET" not in str(e)
        return
    assert "TOPSECRET" not in repr(parsed)


def test_billion_laughs_is_quick() -> None:
    entities = '<!ENTITY a0 "lol">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    body = f'<?xml version="1.0"?><!DOCTYPE rss [{entities}]><rss version="2.0"><channel>'
    body += "<item><title>&a9;</title></item></channel></rss>"
    start = time.monotonic()
    try:
        parsed = parse_fetched(fetched(body.encode()), "feed")
        assert all(len(e.title or "") < 10_000 for e in parsed.entries)
    except ParseError as e:
        assert e.kind in {"parse_error", "not_a_feed"}
    assert time.monotonic() - start < 5


# --- JSON Feed ------------------------------------------------------------------------------

JSON_FEED = {
    "version": "https://jsonfeed.org/version/1.1",
    "title": "JSON Blog",
    "home_page_url": "https://json.example.net/blog/",
    "items": [
        {
            "id": 42,
            "url": "posts/42",
            "title": "Answer",
            "content_html": "<p>HTML body</p>",
            "date_published": "2024-03-05T10:00:00+02:00",
            "authors": [{"name": "Ann"}, {"name": "Bob"}],
        },
        {
            "id": "b",
            "external_url": "https://elsewhere.example/x",
            "content_text": "plain <text>",
            "date_modified": "not a date",
            "author": {"name": "Old Style"},
        },
        {"id": True, "summary": "A & B"},
        {"id": "empty"},
        "not an object",
    ],
}


def test_json_feed() -> None:
    content = json.dumps(JSON_FEED).encode()
    parsed = parse_fetched(fetched(content, content_type="application/feed+json"))
    assert parsed.format == "jsonfeed11"
    assert parsed.title == "JSON Blog" and parsed.link == "https://json.example.net/blog/"
    answer, plain, third = parsed.entries
    assert answer.guid == "42"
    assert answer.link == "https://json.example.net/blog/posts/42"
    assert answer.summary == "<p>HTML body</p>"
    assert answer.published == datetime(2024, 3, 5, 10, tzinfo=timezone(timedelta(hours=2)))
    assert answer.author == "Ann, Bob"
    assert plain.link == "https://elsewhere.example/x"
    assert plain.summary == "plain &lt;text&gt;"
    assert plain.published is None and plain.published_raw == "not a date"
    assert plain.author == "Old Style"
    assert third.guid is None and third.summary == "A &amp; B"
    assert any("invalid_items: 1" in w for w in parsed.warnings)
    assert any("skipped_entries: 1" in w for w in parsed.warnings)
    assert parse_json_feed(content, URL).entries == parsed.entries


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b'{"version": "https://jsonfeed.org/version/1", "items": [', "not valid JSON"),
        (b"[1, 2]", "not an object"),
        (b'{"version": "1.0", "items": []}', "'version'"),
        (b'{"version": "https://jsonfeed.org/version/1", "items": {}}', "'items' must be a list"),
    ],
)
def test_broken_json_feed(content: bytes, words: str) -> None:
    err = parse_error(content, "feed", content_type="application/json")
    assert err.kind == "parse_error"
    assert words in err.message
    with pytest.raises(ParseError, match="parse_error"):
        parse_json_feed(content, URL, source_id="src")


# --- pages ----------------------------------------------------------------------------------

POLICE1_LIKE = """<!DOCTYPE html><html><head><title>Topics: Police training</title>
<link rel="canonical" href="https://www.police.example/topics/training/"></head><body>
<header class="site-header"><nav><a href="/topics/">All topics and every single category</a>
<a href="/login">Log in to your account now</a></nav></header>
<main><h1>Police training</h1><div class="articles">
{cards}
</div>
<nav class="pagination"><a href="?page=2">Next page of the training articles</a></nav></main>
<aside><h3>Most read</h3><ul>
<li><a href="/sidebar/1">Sidebar story that everybody is reading</a></li>
<li><a href="/sidebar/2">Another sidebar story that everybody reads</a></li>
<li><a href="/sidebar/3">A third sidebar story with many readers</a></li></ul></aside>
<footer><a href="/privacy">Our privacy policy and your rights</a></footer>
</body></html>"""
CARD = """<div class="card">
  <a class="card__image" href="/training/story-{i}"><img src="x.jpg" alt=""></a>
  <a class="card__tag" href="/topics/training/">Training</a>
  <h3 class="card__title"><a href="/training/story-{i}">
    Officers learn new de-escalation skill {i}</a></h3>
  <p class="card__teaser">A teaser paragraph for story {i} that explains what happened and why.</p>
  {date}
</div>"""


def police1_like(n: int = 6) -> bytes:
    cards = "\n".join(
        CARD.format(
            i=i, date=f'<time datetime="2024-03-0{i}T08:00:00Z">March {i}</time>' if i % 2 else ""
        )
        for i in range(1, n + 1)
    )
    return POLICE1_LIKE.format(cards=cards).encode()


def test_page_auto_mode_finds_the_cards() -> None:
    url = "https://www.police.example/topics/training/"
    parsed = parse_fetched(fetched(police1_like(), url=url, content_type="text/html"))
    assert parsed.format == "page"
    assert [e.title for e in parsed.entries] == [
        f"Officers learn new de-escalation skill {i}" for i in range(1, 7)
    ]
    first = parsed.entries[0]
    assert first.link == "https://www.police.example/training/story-1"
    assert first.guid == first.link
    assert first.summary is not None and first.summary.startswith("A teaser paragraph for story 1")
    assert first.published == datetime(2024, 3, 1, 8, tzinfo=UTC)
    assert parsed.entries[1].published is None


def test_page_auto_mode_single_article_has_no_items() -> None:
    body = "<p>" + "Long article text goes on and on about the topic at hand. " * 20 + "</p>"
    related = "".join(
        f'<li><a href="/news/related-{i}">A related story number {i} for you</a></li>'
        for i in range(5)
    )
    page = f"<html><body><article><h1>One story</h1>{body * 4}</article><ul>{related}</ul>"
    err = parse_error(page.encode(), "page")
    assert err.kind == "no_items"


def test_page_with_selectors() -> None:
    page = b"""<html><head><base href="https://news.example.org/section/"></head><body>
    <ul class="list">
      <li class="it"><span class="t">Alpha news</span><a class="go" href="alpha">more</a>
          <div class="s"><b>Bold</b> summary</div><span class="d">5. M\xc3\xa4rz 2024</span></li>
      <li class="it"><h2>Beta news</h2><a href="/beta">read</a><time datetime="2024-03-06">x</time>
          <p>Beta teaser</p></li>
      <li class="it"><span>nothing</span></li>
    </ul></body></html>"""
    sel = Selectors(item="li.it", title="span.t", link="a.go", summary="div.s", date="span.d")
    alpha = parse_page(page, "https://news.example.org/", sel).entries[0]
    assert alpha.title == "Alpha news"
    assert alpha.link == "https://news.example.org/section/alpha"  # <base href> honoured
    assert alpha.summary == "<b>Bold</b> summary"
    assert alpha.published == datetime(2024, 3, 5, tzinfo=UTC)

    defaults = parse_page(page, "https://news.example.org/", Selectors(item="li.it"))
    beta = defaults.entries[1]
    assert beta.title == "Beta news" and beta.link == "https://news.example.org/beta"
    assert beta.summary == "Beta teaser"
    assert beta.published == datetime(2024, 3, 6, tzinfo=UTC)
    # The third item has a title from its text? No: no heading, no link -> skipped.
    assert len(defaults.entries) == 2

    with pytest.raises(ParseError) as info:
        parse_page(page, "https://news.example.org/", Selectors(item="article.nope"))
    assert info.value.kind == "no_items" and "article.nope" in info.value.message
    with pytest.raises(ParseError) as info:
        parse_page(page, "https://news.example.org/", Selectors(item="li[[["))
    assert info.value.kind == "parse_error" and "invalid" in info.value.message


def test_page_base_href_javascript_is_ignored() -> None:
    page = b'<html><head><base href="javascript:alert(1)//"></head><body>'
    page += b'<div class="x"><a href="a">Item one</a></div></body></html>'
    parsed = parse_page(page, "https://safe.example/", Selectors(item="div.x"))
    assert parsed.entries[0].link == "https://safe.example/a"


def test_page_kind_with_a_feed_body() -> None:
    err = parse_error(RSS, "page")
    assert err.kind == "parse_error" and "set kind: feed" in err.message


def test_deeply_nested_page_is_a_parse_error() -> None:
    page = b"<html><body>" + b"<div>" * 200_000 + b"x" + b"</div>" * 200_000 + b"</body></html>"
    start = time.monotonic()
    err = parse_error(page, "page")
    assert err.kind == "parse_error" and "deep" in err.message
    assert time.monotonic() - start < 5


def test_big_page_is_fast() -> None:
    page = police1_like(2500)  # about 1 MB
    assert len(page) > 900_000
    start = time.monotonic()
    parsed = parse_page(page, "https://www.police.example/topics/training/")
    assert len(parsed.entries) == 2500
    assert time.monotonic() - start < 10  # generous for slow CI; typically ~1-2 s


def test_xhtml_page_does_not_warn() -> None:
    # bs4 warns when XML goes to the HTML parser; pytest turns warnings into errors here.
    page = b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body>'
    page += b'<div class="x"><a href="/a">Item one here</a></div></body></html>'
    assert parse_page(page, URL, Selectors(item="div.x")).entries[0].title == "Item one here"


# --- the shared corpus ----------------------------------------------------------------------


def _manifest(corpus: Path, category: str) -> list[str]:
    rows = (corpus / "MANIFEST.tsv").read_text(encoding="utf-8").splitlines()[1:]
    return [r.split("\t")[0] for r in rows if r.split("\t")[1] == category]


def _content_type(path: str) -> str | None:
    suffix = Path(path).suffix
    if suffix == ".json":
        return "application/json"
    if suffix in {".xml", ".rss", ".atom", ".rdf"}:
        return "application/xml"
    return None


def _parse_corpus(corpus: Path, path: str, kind: str = "auto") -> Parsed:
    content = (corpus / path).read_bytes()
    item = Fetched(
        source_id=path,
        url=f"http://127.0.0.1/{path}",
        status=200,
        content=content,
        content_type=_content_type(path),
    )
    return parse_fetched(item, kind)  # type: ignore[arg-type]


_REAL_RESULTS: dict[str, Parsed | ParseError] = {}


def _parse_real(corpus: Path, path: str) -> Parsed:
    """The auto-mode result for a `real` feed, computed once for both tests that need it."""
    if path not in _REAL_RESULTS:
        try:
            _REAL_RESULTS[path] = _parse_corpus(corpus, path)
        except ParseError as e:
            _REAL_RESULTS[path] = e
    result = _REAL_RESULTS[path]
    if isinstance(result, ParseError):
        raise result
    return result


def _real_paths() -> list[str]:
    from tests.conftest import CORPUS

    return _manifest(CORPUS, "real") if CORPUS.is_dir() else []


@pytest.mark.corpus
@pytest.mark.parametrize("path", _real_paths())
def test_real_feed_yields_entries(corpus: Path, path: str) -> None:
    parsed = _parse_real(corpus, path)
    assert parsed.entries, f"{path}: no entries ({parsed.warnings})"
    for entry in parsed.entries:
        assert entry.title or entry.link or entry.summary
        if entry.published is not None:
            assert entry.published.tzinfo is not None


@pytest.mark.corpus
def test_real_feed_share(corpus: Path) -> None:
    paths = _manifest(corpus, "real")
    assert len(paths) == 192
    ok = 0
    failures: list[str] = []
    for path in paths:
        try:
            ok += bool(_parse_real(corpus, path).entries)
        except ParseError as e:
            failures.append(f"{path}: {e.kind}: {e.message}")
    share = ok / len(paths)
    print(f"real feeds with entries: {ok}/{len(paths)} = {share:.1%}", *failures, sep="\n")
    assert share >= 0.95


@pytest.mark.corpus
@pytest.mark.parametrize("path", ["feeds/rome/2.rss", "feeds/node-feedparser/notafeed.html"])
def test_corpus_html_as_feed(corpus: Path, path: str) -> None:
    with pytest.raises(ParseError) as info:
        _parse_corpus(corpus, path, "feed")
    assert info.value.kind == "not_a_feed"
    assert info.value.source_id == path and info.value.url.endswith(path)


@pytest.mark.corpus
def test_corpus_gzip_bytes(corpus: Path) -> None:
    parsed = _parse_corpus(corpus, "feeds/node-feedparser/compressed.xml")
    plain = _parse_corpus(corpus, "feeds/node-feedparser/iconv.xml")
    assert parsed.entries == plain.entries and len(parsed.entries) > 0


@pytest.mark.corpus
def test_corpus_empty_body(corpus: Path) -> None:
    with pytest.raises(ParseError) as info:
        _parse_corpus(corpus, "feeds/gofeed/empty_feed.xml")
    assert info.value.kind == "empty_body"


@pytest.mark.corpus
def test_corpus_relative_urls(corpus: Path) -> None:
    parsed = _parse_corpus(corpus, "feeds/lemon24-reader/relative.atom")
    assert all(e.link and e.link.startswith("http") for e in parsed.entries)
    base = _parse_corpus(corpus, "feeds/feed-rs/atom_xml_base.xml")
    assert all(e.link and e.link.startswith("http") for e in base.entries)
    nodefp = _parse_corpus(corpus, "feeds/node-feedparser/rss-with-relative-urls.xml")
    assert all(e.link and e.link.startswith("http") for e in nodefp.entries)


@pytest.mark.corpus
def test_corpus_xml_base_resolution(corpus: Path) -> None:
    parsed = _parse_corpus(corpus, "feeds/kurtmckee-feedparser/wellformed/relative_xml_base.xml")
    (entry,) = parsed.entries
    # Nested xml:base ("http://example.com/" then "test/") wins over the document URL.
    assert entry.title_is_html and entry.title is not None
    assert 'href="http://example.com/test/test.html"' in entry.title


@pytest.mark.corpus
def test_corpus_json_feeds(corpus: Path) -> None:
    for path in _manifest(corpus, "real"):
        if path.endswith(".json"):
            parsed = _parse_corpus(corpus, path)
            assert parsed.format.startswith(("jsonfeed", "rssinjson")), path
            assert parsed.entries, path
            assert all(e.link is None or e.link.startswith("http") for e in parsed.entries)


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("feeds/miniflux/parser/encoding_WINDOWS-1251.xml", "Цитата"),
        ("feeds/node-feedparser/iconv.xml", "Оренбург"),
        ("feeds/miniflux/parser/encoding_ISO-8859-1.xml", "ü"),
    ],
)
def test_corpus_legacy_encodings(corpus: Path, path: str, needle: str) -> None:
    parsed = _parse_corpus(corpus, path)
    texts = " ".join((e.title or "") + (e.summary or "") for e in parsed.entries)
    assert needle in texts
    assert "\ufffd" not in " ".join(e.title or "" for e in parsed.entries)


@pytest.mark.corpus
def test_corpus_xml_attacks(corpus: Path) -> None:
    for path in sorted((corpus / "feeds/defusedxml-security").iterdir()):
        start = time.monotonic()
        item = fetched(path.read_bytes())
        try:
            parsed = parse_fetched(item, "feed")
            assert len(repr(parsed)) < 100_000
        except ParseError as e:
            assert e.kind in {"parse_error", "not_a_feed"}
        assert time.monotonic() - start < 5, path.name


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("path", "headline", "low", "high"),
    [
        (
            "pages/htmldate/blog.wordpress.com.html",
            "Add A Simple Payment Button To Your WordPress.com Premium Or Business Site",
            8,
            15,
        ),
        ("pages/netnewswire/RSCore/daringfireball.html", "When Design Drives Behavior", 20, 60),
        ("pages/newspaper/cnn_main_site.html", "Busy skies over conflict zones", 40, 200),
        (
            "pages/rubycocos-feedparser/indie-blog.html",
            "Ethical Design Manifesto",
            30,
            100,
        ),
        (
            "pages/trafilatura/iwr.de.IWR-Pressedienst.html",
            "15 Jahre Engagement für die finnische Energiewende: wpd Finn...",
            30,
            120,
        ),
        ("pages/html2rss/page_1.html", "The Parents Who Regret Having Children", 10, 60),
        ("pages/htmldate/die-partei.net.sh.html", "Das endgültige Kandidaten-Casting", 5, 15),
        ("pages/htmldate/stuttgart.de.html", "Zeitreisen im Stadtarchiv", 8, 30),
    ],
)
def test_corpus_pages_auto_mode(
    corpus: Path, path: str, headline: str, low: int, high: int
) -> None:
    parsed = _parse_corpus(corpus, path)
    assert parsed.format == "page"
    titles = [e.title for e in parsed.entries]
    assert headline in titles
    assert low <= len(parsed.entries) <= high
    for entry in parsed.entries:
        assert entry.link is not None and entry.link.startswith(("http://", "https://"))
        assert entry.title is not None and len(entry.title) >= 10


@pytest.mark.corpus
def test_corpus_page_dates_and_teasers(corpus: Path) -> None:
    parsed = _parse_corpus(corpus, "pages/htmldate/blog.wordpress.com.html")
    assert sum(e.published is not None for e in parsed.entries) >= len(parsed.entries) - 2
    assert sum(e.summary is not None for e in parsed.entries) >= len(parsed.entries) - 1


@pytest.mark.corpus
@pytest.mark.parametrize(
    "path",
    [
        "pages/not-listing/netnewswire/coco.html",
        "pages/not-listing/newspaper/cnn_article.html",
        "pages/not-listing/readability/guardian-1/source.html",
        "pages/not-listing/readability/nytimes-1/source.html",
    ],
)
def test_corpus_single_articles_have_no_listing(corpus: Path, path: str) -> None:
    with pytest.raises(ParseError) as info:
        _parse_corpus(corpus, path, "page")
    assert info.value.kind == "no_items"


def test_rss_guid_is_kept_as_written_not_resolved_against_the_feed_url() -> None:
    # feedparser would turn <guid>g1</guid> into "<feed url>/g1": an item's identity must not
    # change when the feed moves.
    feed = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
        b"<item><guid>g1</guid><title>One</title><link>/a</link></item></channel></rss>"
    )
    first = parse_feed(feed, "https://old.example.org/feed.xml")
    moved = parse_feed(feed, "https://new.example.org/rss")
    assert first.entries[0].guid == moved.entries[0].guid == "g1"
    assert first.entries[0].link == "https://old.example.org/a"
