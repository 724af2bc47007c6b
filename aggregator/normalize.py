"""Normalize stage: Entry -> Item (pure).

Canonical URLs, plain-text titles, sanitized summary HTML plus its plain text, UTC dates,
no control or bidi-override characters anywhere. Nothing here raises on odd input: the worst
an entry can do is lose a field (a `javascript:` link becomes no link).

Imports only `types`; never fetch, parse, storage, pipeline or cli.
"""

from __future__ import annotations

import functools
import hashlib
import html
import re
import unicodedata
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

import nh3

from aggregator.types import Entry, Item

MAX_TITLE_CHARS = 300
MAX_CONTENT_CHARS = 100_000  # before sanitizing: nh3 is fast, but not free on 5 MB of markup
MAX_URL_CHARS = 2048
UNTITLED = "(untitled)"
# FAULTS C4: a title more than this share U+FFFD is flagged (its source's bytes were damaged
# before we read them, or do not decode in any encoding tried).
MAX_REPLACEMENT_SHARE = 0.05

# Parameters that only say where a click came from; removing them lets two outlets' links
# to the same page meet. Prefixes end with "_".
TRACKING_PARAMS = frozenset(
    {
        "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "yclid", "twclid",
        "igshid", "mc_cid", "mc_eid", "_hsenc", "_hsmi", "mkt_tok", "oly_anon_id",
        "oly_enc_id", "vero_id", "rb_clickid", "s_cid", "ncid", "cmpid", "sr_share",
        "at_medium", "at_campaign", "ito",
    }
)  # fmt: skip
TRACKING_PREFIXES = ("utm_", "pk_", "mtm_", "__hs")
DEFAULT_PORTS = {"http": 80, "https": 443}

# XML 1.0 forbids C0 controls but tab/newline/CR; C1 controls and the bidi overrides
# (U+202A-202E, U+2066-2069) have no place in a headline and can disguise one.
_BAD_CHARS = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufffe\uffff\ud800-\udfff]"
)
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_TITLE_KEY_DROP = re.compile(r"[^\w\s]")

# Summary HTML allow-list: structure and emphasis only. No images (remote images are tracking
# pixels in an email and we never fetch them), no forms, no styles, no iframes.
ALLOWED_TAGS = frozenset(
    {
        "a", "abbr", "b", "blockquote", "br", "cite", "code", "dd", "del", "dl", "dt", "em",
        "figcaption", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "ins", "kbd", "li",
        "mark", "ol", "p", "pre", "q", "s", "small", "strong", "sub", "sup", "table", "tbody",
        "td", "tfoot", "th", "thead", "time", "tr", "u", "ul",
    }
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "abbr": {"title"}, "time": {"datetime"}}


def _html_cleaner(**options: Any) -> Callable[[str], str]:
    """`nh3.clean` with `options`, built once per process: an `nh3.Cleaner` keeps the
    compiled allow-list, where `nh3.clean` rebuilds it from the Python sets every call (more
    than half of its time on a bench teaser). Same output either way."""
    cleaner_type = getattr(nh3, "Cleaner", None)
    if cleaner_type is None:  # an older nh3 (pyproject allows 0.2.17), without Cleaner
        return functools.partial(nh3.clean, **options)
    clean: Callable[[str], str] = cleaner_type(**options).clean
    return clean


_sanitize = _html_cleaner(
    tags=set(ALLOWED_TAGS),
    attributes={k: set(v) for k, v in ALLOWED_ATTRIBUTES.items()},
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
    strip_comments=True,
)
_strip_tags = _html_cleaner(tags=set(), clean_content_tags={"script", "style"})
# Block-level ends become spaces so "<p>a</p><p>b</p>" does not read "ab".
_BLOCK_END = re.compile(r"(?i)<\s*(br|/p|/div|/li|/h[1-6]|/tr|/blockquote)\b[^>]*>")


def clean_text(text: str) -> str:
    """Unicode NFC, no control/bidi characters, whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFC", text)
    # str.split() splits where `\s+` matches (both use str.isspace): re.sub + strip, faster
    return " ".join(_BAD_CHARS.sub("", text).split())


def _strip_url(url: str) -> str:
    # WHATWG URL parsing drops leading/trailing C0 controls and spaces and removes tab/newline
    # anywhere: "java\tscript:" is "javascript:" to a browser, so it must be to us.
    if "\t" in url or "\n" in url or "\r" in url:
        url = re.sub(r"[\t\n\r]", "", url)
    return url.strip(_C0_AND_SPACE)


def safe_link(url: str | None) -> str | None:
    """The URL if it is an absolute http(s) URL we would put in an href (credentials
    dropped), else None."""
    checked = _checked_link(url)
    return checked[0] if checked else None


def canonical_url(url: str | None) -> str | None:
    """The dedupe key for a link: lower-case scheme and host, no default port, no fragment,
    no tracking parameters, no credentials; None for anything that is not http(s)."""
    checked = _checked_link(url)
    if checked is None or checked[2] is None:
        return None
    return _canonical(checked[1], checked[2])


def _checked_link(url: str | None) -> tuple[str, SplitResult, str | None] | None:
    """(the link `safe_link` returns, its parts, its canonical netloc or None when its host
    has no IDNA form), or None when `safe_link` refuses the URL."""
    if not url:
        return None
    url = _strip_url(url)
    if len(url) > MAX_URL_CHARS or _BAD_CHARS.search(url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if "@" in parts.netloc:
        # Credentials are never kept nor shown: a password someone leaked into a feed, or a
        # link dressed as another site (`https://trusted.example@evil.example/`). Nor do they
        # reach `_netloc`'s cache, which outlives the run.
        parts = parts._replace(netloc=parts.netloc.rpartition("@")[2])
        url = urlunsplit(parts)
    accepted, netloc = _netloc(parts.scheme, parts.netloc)
    return (url, parts, netloc) if accepted else None


@functools.lru_cache(maxsize=4096)
def _netloc(scheme: str, netloc: str) -> tuple[bool, str | None]:
    """Whether `safe_link` accepts a URL's scheme and netloc (http(s), a host, a valid port),
    and the canonical netloc: lower-case host in IDNA form (None when it has none), no
    default port, no credentials. A source's links share a few hosts: each is worked out
    once (bounded)."""
    parts = SplitResult(scheme, netloc, "", "", "")  # hostname and port read netloc only
    try:
        port = parts.port
    except ValueError:  # a bad port
        return False, None
    scheme = scheme.lower()
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return False, None
    host = parts.hostname.lower().rstrip(".")
    try:
        host = host.encode("idna").decode("ascii") if not host.isascii() else host
    except UnicodeError:
        return True, None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return True, host if port is None or port == DEFAULT_PORTS[scheme] else f"{host}:{port}"


def _canonical(parts: SplitResult, netloc: str) -> str:
    """canonical_url of a link `safe_link` accepted, split, with its canonical netloc."""
    query = parts.query and urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if k.lower() not in TRACKING_PARAMS and not k.lower().startswith(TRACKING_PREFIXES)
        ],
        doseq=True,
    )
    return urlunsplit((parts.scheme.lower(), netloc, parts.path or "/", query, ""))


def html_to_text(markup: str) -> str:
    """Plain text of an HTML fragment: tags dropped, entities decoded, whitespace collapsed."""
    stripped = _strip_tags(_BLOCK_END.sub(" ", markup))
    return clean_text(html.unescape(stripped))


def sanitize_html(markup: str) -> str:
    """An allow-listed HTML fragment: safe to put in an email or a feed description."""
    markup = _BAD_CHARS.sub("", markup[:MAX_CONTENT_CHARS])
    return _sanitize(markup).strip()


def title_key(title: str) -> str:
    """Normalized title for spotting the same story twice in one source."""
    key = unicodedata.normalize("NFKC", title).casefold()
    return " ".join(_TITLE_KEY_DROP.sub(" ", key).split())


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit * 0.6:
        cut = cut[:space]
    return cut.rstrip(" ,.;:-") + "…"


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def normalize_entry(entry: Entry, source_id: str) -> Item | None:
    """Entry -> Item; None when the entry has nothing to show (no title, link or text)."""
    checked = _checked_link(entry.link)  # safe_link and canonical_url, split once
    link = checked[0] if checked else None
    url = _canonical(checked[1], checked[2]) if checked and checked[2] is not None else None
    summary_raw = entry.summary or ""
    summary_html = sanitize_html(summary_raw) if summary_raw else ""
    summary_text = html_to_text(summary_html) if summary_html else ""

    raw_title = entry.title or ""
    if entry.title_is_html or "<" in raw_title or "&" in raw_title:
        title = html_to_text(raw_title)
    else:
        title = clean_text(raw_title)
    if not title:
        title = _truncate(summary_text, 100) if summary_text else (link or "")
    if not title and not summary_text and not link:
        return None
    title = _truncate(title or UNTITLED, MAX_TITLE_CHARS)

    guid = clean_text(entry.guid or "")[:MAX_URL_CHARS]
    if not guid:
        guid = (
            link
            or "sha1:"
            + hashlib.sha1(f"{title}\n{summary_text}".encode(), usedforsecurity=False).hexdigest()
        )

    author = clean_text(html.unescape(entry.author)) if entry.author else None
    published_raw = clean_text(entry.published_raw)[:200] if entry.published_raw else None
    return Item(
        source_id=source_id,
        guid=guid,
        url=url,
        link=link,
        title=title,
        title_key=title_key(title),
        summary_html=summary_html,
        summary_text=summary_text,
        published=_utc(entry.published),
        published_raw=published_raw or None,
        author=(author or None) and author[:200],
    )


def replacement_flood(text: str) -> bool:
    """More than MAX_REPLACEMENT_SHARE of `text` is U+FFFD, the mark of undecodable bytes."""
    return text.count("\ufffd") > MAX_REPLACEMENT_SHARE * len(text)


def truncated_fields(entry: Entry, item: Item) -> tuple[str, ...]:
    """Which of an entry's fields `normalize_entry` had to cut to the limits (FAULTS C12)."""
    cut = []
    if len(entry.title or "") > MAX_TITLE_CHARS and item.title.endswith("…"):
        cut.append("title")
    if len(entry.summary or "") > MAX_CONTENT_CHARS:
        cut.append("summary")
    return tuple(cut)
