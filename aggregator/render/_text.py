"""Pure text helpers of the render stage: URL vetting, teasers, dates, header and XML cleaning.

Most are also Jinja filters (see _environment.make_environment). No I/O, no `now`.
Imports only `exceptions`.
"""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aggregator.exceptions import RenderError

DEFAULT_TEASER_CHARS = 280
TEXT_WIDTH = 72  # keep in sync with templates/digest.txt.j2 (it gets this as text_width)

# --- URLs ---------------------------------------------------------------------------------

# WHATWG URL parsing strips leading/trailing C0 controls and spaces and removes every tab and
# newline anywhere, which is how " java\tscript:" still runs in a browser. Do the same before
# looking at the scheme (FAULTS R2).
_URL_STRIP = "".join(chr(c) for c in range(0x21))
_URL_REMOVE = re.compile("[\t\n\r]")
_URL_ENCODE = re.compile("[\x00-\x20\x7f-\x9f]")  # left inside: percent-encode, as browsers do
_SAFE_SCHEMES = frozenset({"http", "https"})


def safe_url(url: str | None) -> str | None:
    """`url` if it is an absolute http(s) URL with a host, else None.

    The result is still raw text: templates escape it for the attribute it goes in.
    """
    if not url:
        return None
    url = _URL_REMOVE.sub("", url.strip(_URL_STRIP))
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. "http://[::1" - an unbalanced IPv6 bracket
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.netloc:
        return None
    return _URL_ENCODE.sub(lambda m: quote(m.group(), safe=""), url)


# --- plain text ---------------------------------------------------------------------------

_TEASER_TRAILING = " ,;:.-\u2013\u2014"


def teaser(text: str | None, chars: int = DEFAULT_TEASER_CHARS) -> str:
    """`text` with whitespace collapsed, cut at a word boundary to at most `chars` characters
    (the ellipsis included). A single word longer than that is cut inside the word."""
    text = " ".join((text or "").split())
    if len(text) <= chars:
        return text
    if chars < 2:
        return "\u2026"[:chars]
    cut = text[: chars - 1]  # room for the ellipsis
    if text[chars - 1] != " ":  # the cut is inside a word: go back to the last space
        head, space, _ = cut.rpartition(" ")
        if space and head:
            cut = head
    return (cut.rstrip(_TEASER_TRAILING) or cut) + "\u2026"


def wrap(text: str | None, width: int = TEXT_WIDTH, first: str = "", indent: str = "") -> str:
    """A plain-text paragraph filled to `width` columns. Words longer than that (URLs) are
    kept whole rather than broken, so they stay clickable."""
    return textwrap.fill(
        " ".join((text or "").split()),
        width=width,
        initial_indent=first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )


def paragraphs(text: str | None) -> list[str]:
    """The blank-line separated paragraphs of `text`, each with its whitespace collapsed."""
    parts = (" ".join(p.split()) for p in re.split(r"\n\s*\n", text or ""))
    return [p for p in parts if p]


# --- dates --------------------------------------------------------------------------------

# English names whatever the host locale is (strftime's %a/%B follow LC_TIME).
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


@lru_cache(maxsize=32)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise RenderError(f"unknown timezone {name!r} in the newsletter settings") from e


def aware(value: datetime) -> datetime:
    """`value`, read as UTC when naive. The types promise aware datetimes; reading a naive one
    as host-local time would make the output depend on the machine."""
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def format_date(value: datetime | None, tz: str, style: str = "date") -> str:
    """`value` in the zone `tz`: "Tue 24 Nov 2026" (style "date") or "Tue 24 Nov 2026, 14:05"
    (style "datetime")."""
    if value is None:
        return ""
    if style not in ("date", "datetime"):  # a template's mistake: say so, not a traceback
        raise RenderError(f"format_date: unknown style {style!r} (use 'date' or 'datetime')")
    local = aware(value).astimezone(zone(tz))
    text = f"{_DAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1][:3]} {local.year}"
    return f"{text}, {local:%H:%M}" if style == "datetime" else text


def format_period(start: datetime, end: datetime, tz: str) -> str:
    """The period [start, end) as local dates in `tz`, with en dashes where "-" is shown here:
    "Week of 23-29 November 2026", "30 November - 6 December 2026",
    "28 December 2026 - 3 January 2027", "1 December 2026"."""
    local = zone(tz)
    first = aware(start).astimezone(local).date()
    last = max(first, (aware(end).astimezone(local) - timedelta(microseconds=1)).date())
    if first == last:
        text = f"{first.day} {_MONTHS[first.month - 1]} {first.year}"
    elif (first.year, first.month) == (last.year, last.month):
        text = f"{first.day}\u2013{last.day} {_MONTHS[last.month - 1]} {last.year}"
    elif first.year == last.year:
        text = (
            f"{first.day} {_MONTHS[first.month - 1]} \u2013 "
            f"{last.day} {_MONTHS[last.month - 1]} {last.year}"
        )
    else:
        text = (
            f"{first.day} {_MONTHS[first.month - 1]} {first.year} \u2013 "
            f"{last.day} {_MONTHS[last.month - 1]} {last.year}"
        )
    # Count local dates, not hours: a week across a DST change is 167 or 169 hours long.
    return f"Week of {text}" if (last - first).days == 6 else text


# --- headers and XML ----------------------------------------------------------------------

# Directional overrides make a subject read differently from what it says (FAULTS C13).
# XML 1.0 `Char`: anything else (NUL, \x0b, lone surrogates, U+FFFE) makes a document not
# well-formed, and lxml refuses to write it (FAULTS R5).
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value: str | None) -> str:
    """`value` without the characters XML 1.0 cannot carry."""
    return _XML_INVALID.sub("", value or "")


def host_of(link: str) -> str:
    """The ASCII (IDNA) host of `link`, for mail addresses and ids; "localhost" if none."""
    try:
        host = urlsplit(link).hostname or ""
        return host.encode("idna").decode("ascii") if host else "localhost"
    except (ValueError, UnicodeError):  # a link config let through but IDNA refuses
        return "localhost"
