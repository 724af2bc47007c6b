"""`urljoin` for the parsers' item links, without urllib's parse where it changes nothing.

Most links in a feed or a listing page are already absolute http(s) URLs, and for those
`urllib.parse.urljoin` hands the link back as it is, after parsing it into six parts and
putting them back together (about 10 us a link, 0.3 s of a parse worker's CPU over the
benchmark's 30,000 items, issue 8). `join` returns such a link at once when it is sure
urljoin would return it unchanged, and calls urljoin for every other link.

urljoin(base, link) returns `link` itself when the link has a scheme other than the base's,
and `urlunparse(urlparse(link))` when the scheme is the base's and the link has a host. That
round trip gives back the same string unless the parse drops or alters something:
- tab, CR and LF anywhere are removed (and leading C0 controls and spaces stripped);
- an empty query (`?` then nothing or `#`), an empty fragment (a final `#`), and empty
  `;params` in the last path segment are dropped; the scheme is lower-cased;
- a host with `[` or `]` is checked as an IPv6 literal (a ValueError if it is not one),
  and a host that is not ASCII is checked against NFKC normalisation (a ValueError).
`_SAME` accepts only links where none of that can happen: ASCII, lower-case `http://` or
`https://`, a host without brackets, no `;` in the path, a query and a fragment that are
each absent or non-empty, no tab, CR or LF. The base is split as urljoin splits it, so a
base urljoin rejects is rejected here too. `tests/test_parse_urls.py` compares `join` with
urljoin over random links built from the characters that decide it and over every link of
the real-world corpus.

`absolute` is the feed parsers' (feedparser's path and the fast path) one way of making an
item's link absolute with it; `is_http` is the parsers' one test of whether a URL may serve
as a base (an http(s) scheme).

Imports only the standard library.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

_HTTP = frozenset({"http", "https"})
_SAME = re.compile(
    r"https?://[^/?#\[\]\t\r\n]+"  # the host: not empty, no brackets
    r"(?:/[^?#;\t\r\n]*)?"  # the path: no params
    r"(?:\?[^#\t\r\n]+)?"  # a query, not empty
    r"(?:#[^\t\r\n]+)?"  # a fragment, not empty
)


def join(base: str, link: str) -> str:
    """`urljoin(base, link)`, the same string or the same error."""
    if link and base and link.isascii() and _SAME.fullmatch(link):
        urlsplit(base)  # a base urljoin cannot parse raises here as it does there
        return link
    return urljoin(base, link)


def absolute(link: object, base: str) -> str | None:
    """A feed's link (stripped; None if it is not a non-blank string) resolved against the
    document URL; only an http(s) base is ever used, any other leaves the link as written."""
    if not isinstance(link, str) or not link.strip():
        return None
    link = link.strip()
    return join(base, link) if is_http(base) else link


def is_http(url: str) -> bool:
    """Whether `url`'s scheme is http or https (any case)."""
    return urlsplit(url).scheme.lower() in _HTTP
