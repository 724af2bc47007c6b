"""Parse stage helper: date strings as publishers write them -> aware datetimes.

Input: RFC 3339 / ISO 8601 (JSON Feed, `<time datetime>`), RFC 822 (e-mail style) or the
English/German date text that listing pages print. Output: an aware datetime (UTC assumed
when the text names no zone) or None. Pure; must not import anything outside the stdlib.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

_MONTHS = {
    "jan": 1, "january": 1, "januar": 1, "jänner": 1, "janvier": 1,
    "feb": 2, "february": 2, "februar": 2, "febr": 2,
    "mar": 3, "march": 3, "märz": 3, "maerz": 3, "mrz": 3,
    "apr": 4, "april": 4,
    "may": 5, "mai": 5,
    "jun": 6, "june": 6, "juni": 6,
    "jul": 7, "july": 7, "juli": 7,
    "aug": 8, "august": 8,
    "sep": 9, "sept": 9, "september": 9,
    "oct": 10, "october": 10, "okt": 10, "oktober": 10,
    "nov": 11, "november": 11,
    "dec": 12, "december": 12, "dez": 12, "dezember": 12,
}  # fmt: skip
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_TIME = (
    r"(?:[,\s]+(?:at\s+|um\s+)?(?P<h>\d{1,2}):(?P<mi>\d{2})(?::(?P<s>\d{2}))?"
    r"\s*(?P<ampm>[ap]\.?m\.?)?)?"
)
_PATTERNS = (
    # 2024-03-05, 2024-03-05T10:00:00+01:00, 2024/03/05
    re.compile(
        r"(?<!\d)(?P<y>(?:19|20)\d{2})[-/](?P<m>\d{1,2})[-/](?P<d>\d{1,2})(?!\d)"
        r"(?:[T\s](?P<h>\d{2}):(?P<mi>\d{2})(?::(?P<s>\d{2})(?:\.\d+)?)?"
        r"\s*(?P<tz>Z|[+-]\d{2}:?\d{2})?)?",
        re.IGNORECASE,
    ),
    # March 5, 2024 / Mar. 5th 2024
    re.compile(
        rf"(?<![\w])(?P<mon>{_MONTH_RE})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+"
        rf"(?P<y>(?:19|20)\d{{2}})(?!\d){_TIME}",
        re.IGNORECASE,
    ),
    # 5 March 2024 / 5. März 2024
    re.compile(
        rf"(?<!\d)(?P<d>\d{{1,2}})(?:st|nd|rd|th|\.)?\s+(?P<mon>{_MONTH_RE})\.?,?\s+"
        rf"(?P<y>(?:19|20)\d{{2}})(?!\d){_TIME}",
        re.IGNORECASE,
    ),
    # 05.03.2024 (German and most of Europe: day first)
    re.compile(
        r"(?<![\d.])(?P<d>\d{1,2})\.(?P<m>\d{1,2})\.(?P<y>(?:19|20)\d{2})(?!\d)"
        r"(?:[,\s]+(?P<h>\d{1,2}):(?P<mi>\d{2}))?"
    ),
)


def parse_date(text: str | None) -> datetime | None:
    """Parse a whole date string in a standard format; None when it is not one."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        value = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        value = None
    if value is None:
        try:
            value = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            value = None
    if value is None:
        return find_date(text)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def find_date(text: str | None) -> datetime | None:
    """Find the first recognizable date inside free text ("Posted March 5, 2024 by ...")."""
    if not text:
        return None
    text = text[:500]  # a date is near the start of whatever element holds it
    for pattern in _PATTERNS:
        match = pattern.search(text)
        if match is not None:
            value = _from_match(match)
            if value is not None:
                return value
    return None


def _from_match(match: re.Match[str]) -> datetime | None:
    parts = match.groupdict()
    month = int(parts["m"]) if parts.get("m") else _MONTHS.get(parts["mon"].lower().rstrip("."))
    if month is None:
        return None
    hour = int(parts["h"]) if parts.get("h") else 0
    ampm = (parts.get("ampm") or "").replace(".", "").lower()
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    try:
        zone = _zone(parts.get("tz"))
        return datetime(
            int(parts["y"]),
            month,
            int(parts["d"]),
            hour,
            int(parts["mi"]) if parts.get("mi") else 0,
            int(parts["s"]) if parts.get("s") else 0,
            tzinfo=zone,
        )
    except ValueError:
        return None


def _zone(text: str | None) -> timezone:
    if not text or text.upper() == "Z":
        return UTC
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4])))
