"""`parse._urls.join` is `urllib.parse.urljoin`: the same string, or the same error, for
every base and link; it only skips urllib's parse for links urljoin hands back unchanged."""

from __future__ import annotations

import random
import re

import pytest

import aggregator.parse._urls as urls
from aggregator.parse._urls import absolute, is_http, join
from tests.conftest import CORPUS

BASES = [
    "https://example.org/news/feed.xml",
    "http://example.org/a/b/",
    "HTTPS://Example.org",
    "ftp://example.org/x",
    "http://[::1]:8080/feed",
    "",
]


def _outcome(call: object, *args: str) -> tuple[str, str]:
    try:
        return ("ok", call(*args))  # type: ignore[operator]
    except ValueError as e:
        return ("error", type(e).__name__)


def _same(base: str, link: str) -> None:
    assert _outcome(join, base, link) == _outcome(urls.urljoin, base, link), (base, link)


@pytest.mark.parametrize(
    "link",
    [
        "https://example.org/a/b?x=1#top",
        "http://example.org",
        "https://example.org/a?",  # an empty query: urljoin drops the "?"
        "https://example.org/a?#f",
        "https://example.org/a#",  # an empty fragment: dropped
        "https://example.org/a;",  # empty params: dropped
        "https://example.org/a;jsessionid=1?x",
        "https://example.org/a/./b/../c",  # kept: urljoin leaves an absolute path alone
        "HTTPS://example.org/a",  # the scheme lower-cased
        "https://exa\tmple.org/a\n",  # tab and newline removed
        "https://[::1]/a",
        "https://[::1/a",  # not an IPv6 literal: ValueError
        "https://exämple.org/a",
        "https://ex%C3%A4mple.org/a b",
        "https:///a",  # no host
        "https://?a",
        "/relative/path",
        "../up",
        "?only=query",
        "#fragment",
        "//example.net/protocol-relative",
        "mailto:x@example.org",
        "javascript:alert(1)",
        " https://example.org/leading-space",
        "https://example.org/trailing-space ",
        "https://example.org/\x00control",
    ],
)
def test_join_is_urljoin(link: str) -> None:
    for base in BASES:
        _same(base, link)


def test_absolute_links_skip_urllib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The point of it: a plain absolute link comes back without urljoin's parse."""

    def fail(base: str, link: str) -> str:
        raise AssertionError(f"urljoin called for {link!r}")

    monkeypatch.setattr(urls, "urljoin", fail)
    for link in (
        "https://example.org/2026/11/30/story.html?utm_source=rss&id=7#comments",
        "http://news.example.net/a-b_c~d/%20e",
        "https://user:pw@example.org:8443/x",
    ):
        assert join("https://example.org/feed", link) == link
        assert join("http://example.org/feed", link) == link


# The characters that decide urljoin's answer, and some that do not.
_PIECES = [
    "http://",
    "https://",
    "HTTP://",
    "//",
    "/",
    "?",
    "#",
    ";",
    "[",
    "]",
    ":",
    "@",
    ".",
    "..",
    "\t",
    "\n",
    "\r",
    " ",
    "\x00",
    "ä",
    "%20",
    "a",
    "b1",
    "=",
    "&",
    "example.org",
]


def test_join_is_urljoin_over_random_links() -> None:
    rng = random.Random(8)
    fast = 0
    for _ in range(60_000):
        link = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 9)))
        if rng.random() < 0.6:
            link = rng.choice(("http://", "https://")) + link
        base = rng.choice(BASES)
        _same(base, link)
        fast += bool(link and base and link.isascii() and urls._SAME.fullmatch(link))
    assert fast > 5_000  # the fast path was tried, not only urljoin against itself


_HREF = re.compile(
    rb"""(?:href|src|url)\s*=\s*["']([^"'<>]{1,300})["']|<link>([^<]{1,300})</link>"""
)


@pytest.mark.corpus
def test_join_is_urljoin_on_every_link_of_the_real_corpus() -> None:
    seen: set[str] = set()
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.stat().st_size > 5_000_000:
            continue
        for m in _HREF.finditer(path.read_bytes()):
            raw = m.group(1) or m.group(2)
            link = raw.decode("utf-8", "replace").strip()
            if link not in seen:
                seen.add(link)
                for base in BASES:
                    _same(base, link)
    assert len(seen) > 1_000


def test_absolute_resolves_only_against_an_http_base() -> None:
    assert absolute(" /a?b=1 ", "https://example.org/feed/") == "https://example.org/a?b=1"
    assert absolute("https://example.net/x", "https://example.org/") == "https://example.net/x"
    assert absolute("../x", "file:///etc/feed.xml") == "../x"  # as written: never a file join
    for nothing in (None, "", "   ", 7, ["https://example.org/"]):
        assert absolute(nothing, "https://example.org/") is None


def test_is_http_is_the_scheme_in_any_case() -> None:
    assert is_http("https://example.org/") and is_http("HTTP://example.org/feed")
    for other in ("file:///etc/feed.xml", "ftp://example.org/", "/relative", "", "mailto:a@b"):
        assert not is_http(other)
    assert absolute("../x", "HTTPS://example.org/a/b") == "https://example.org/x"
