"""How an HTML page's bytes are read (`parse/_charset.py`; FAULTS.md C4 for pages).

The order is WHATWG's (byte order mark, HTTP charset, the page's declaration, UTF-8,
windows-1252), with two repairs: a legacy declaration in front of valid UTF-8 is overruled,
and a mostly-UTF-8 page keeps its text with the few bad bytes as U+FFFD. A page never reads
as empty for its bytes, and every override is a warning.
"""

from __future__ import annotations

import pytest

from aggregator.exceptions import ParseError
from aggregator.parse import parse_page
from aggregator.parse._charset import decode_page

URL = "https://news.example.com/topic/"
FFFD = "\ufffd"


def listing(titles: list[str], head: str = "") -> str:
    items = "".join(
        f'<li><h2><a href="/a/{n}">{t}</a></h2><p>Teaser for story {n} with more words.</p></li>'
        for n, t in enumerate(titles)
    )
    return f"<html><head>{head}<title>Topic</title></head><body><ul>{items}</ul></body></html>"


TITLES = [
    f"Officers train for calm \u201cde-escalation\u201d n\u00b0{n} caf\u00e9" for n in range(5)
]
POLICE = "\u041f\u043e\u043b\u0438\u0446\u0438\u044f"  # "police", in Russian
CYRILLIC = [f"{POLICE} {POLICE.lower()} {POLICE.upper()} story number {n}" for n in range(5)]


def titles(content: bytes, content_type: str | None = None) -> tuple[list[str], tuple[str, ...]]:
    parsed = parse_page(content, URL, content_type=content_type)
    return [e.title or "" for e in parsed.entries], parsed.warnings


def overrides(warnings: tuple[str, ...]) -> list[str]:
    return [w for w in warnings if w.startswith("encoding_override")]


def test_undefined_windows_1252_bytes_no_longer_empty_the_page() -> None:
    # 0x81 and 0x9D are undefined in windows-1252: before, the whole page read as empty
    page = listing(TITLES, '<meta charset="windows-1252">').encode("cp1252")
    page = page.replace(b"n\xb00", b"n\x810").replace(b"n\xb01", b"n\x9d1")
    found, warnings = titles(page)
    assert len(found) == 5
    assert found[2] == TITLES[2]  # the rest of the page is read as declared
    # read as the C1 control of the same number (as browsers do; normalizing drops it)
    assert found[0] == TITLES[0].replace("\u00b0", "\x81")
    assert overrides(warnings), warnings


def test_the_http_charset_reads_a_page_without_a_declaration() -> None:
    page = listing(CYRILLIC).encode("koi8-r")
    assert titles(page, "text/html; charset=KOI8-R")[0] == CYRILLIC
    # without it the bytes are not UTF-8, and read as windows-1252: mojibake, but read
    assert titles(page)[0] != CYRILLIC and len(titles(page)[0]) == 5


def test_the_http_charset_comes_before_the_pages_declaration() -> None:
    page = listing(CYRILLIC, '<meta charset="windows-1252">').encode("windows-1251")
    assert titles(page, "text/html; charset=windows-1251")[0] == CYRILLIC


def test_a_byte_order_mark_comes_before_the_http_charset() -> None:
    page = b"\xef\xbb\xbf" + listing(TITLES).encode()
    assert titles(page, "text/html; charset=iso-8859-1")[0] == TITLES


@pytest.mark.parametrize(
    ("head", "content_type"),
    [
        ("", "text/html; charset=iso-8859-1"),  # a server's default in front of a UTF-8 page
        ('<meta charset="windows-1252">', None),
        ('<meta http-equiv="Content-Type" content="text/html; charset=koi8-r">', None),
    ],
    ids=["http-latin1", "meta-cp1252", "meta-koi8-r"],
)
def test_a_legacy_declaration_in_front_of_utf8_is_overruled(
    head: str, content_type: str | None
) -> None:
    found, warnings = titles(listing(TITLES, head).encode(), content_type)
    assert found == TITLES
    assert any("the bytes are UTF-8" in w for w in overrides(warnings)), warnings


def test_a_declared_legacy_page_reads_in_its_charset_without_warnings() -> None:
    page = listing(TITLES, '<meta charset="windows-1252">').encode("cp1252")
    assert titles(page) == (TITLES, ())


def test_an_undeclared_latin1_page_reads_as_windows_1252() -> None:
    page = listing(TITLES).encode("cp1252")
    found, warnings = titles(page)
    assert found == TITLES
    assert not overrides(warnings)  # nothing was declared, so nothing was overruled


def test_a_mostly_utf8_page_keeps_its_text_with_the_bad_bytes_replaced() -> None:
    # one stray Latin-1 byte in a UTF-8 page: not a reason to read all of it as windows-1252
    page = listing(TITLES, '<meta charset="utf-8">').encode().replace(b"n\xc2\xb03", b"n\xb03")
    found, warnings = titles(page)
    assert found[:3] == TITLES[:3] and found[4] == TITLES[4]
    assert found[3] == TITLES[3].replace("\u00b0", FFFD)
    assert any("invalid UTF-8" in w for w in overrides(warnings)), warnings


def test_many_bad_bytes_are_not_read_as_a_flood_of_replacement_characters() -> None:
    # declared UTF-8 but written in windows-1252: every accent would be U+FFFD
    page = listing(TITLES, '<meta charset="utf-8">').encode("cp1252")
    found, warnings = titles(page)
    assert found == TITLES
    assert overrides(warnings), warnings


def test_an_unknown_charset_is_named_in_a_warning_and_ignored() -> None:
    found, warnings = titles(listing(TITLES, '<meta charset="x-bogus-1">').encode())
    assert found == TITLES
    assert any("'x-bogus-1'" in w for w in warnings), warnings


def test_a_page_of_undefined_bytes_only_is_still_no_listing() -> None:
    with pytest.raises(ParseError) as info:
        parse_page(b"<title>\x81\x8d\x8f\x90\x9d</title>", URL)
    assert info.value.kind == "no_items"


@pytest.mark.parametrize(
    ("content", "encoding"),
    [
        (b"<p>plain ascii</p>", "utf-8"),
        ("<p>caf\u00e9</p>".encode(), "utf-8"),
        ("<p>caf\u00e9</p>".encode("cp1252"), "cp1252"),
        ("\ufeff<p>caf\u00e9</p>".encode("utf-16-le"), "utf-16-le"),
        ('<meta charset="utf-16"><p>caf\u00e9</p>'.encode(), "utf-8"),
    ],
)
def test_the_markup_is_utf8_whatever_the_bytes_were(content: bytes, encoding: str) -> None:
    decoded = decode_page(content)
    assert decoded.encoding == encoding
    assert b"caf\xc3\xa9" in decoded.markup or content.isascii()
    assert not decoded.markup.startswith(b"\xef\xbb\xbf")
