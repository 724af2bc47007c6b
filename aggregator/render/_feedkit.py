"""What every feed renderer shares: the lxml element helper, dates, the feed links' check and
the section-title mapping (feed.xml, Atom, JSON Feed and the issues feed alike).

Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from lxml import etree

from aggregator.exceptions import RenderError
from aggregator.render._text import aware, safe_url, xml_text
from aggregator.types import Section

ATOM_NS = "http://www.w3.org/2005/Atom"


def sub(parent: Any, tag: str, text: str | None = None, **attrib: str) -> Any:
    """A child element of `parent`, its text and attributes cleaned of what XML 1.0 cannot
    carry (FAULTS R5). `tag` may be namespaced (`{ns}name`)."""
    element = etree.SubElement(parent, tag, {k: xml_text(v) for k, v in attrib.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def rfc822(value: datetime) -> str:
    """RSS dates: `Mon, 30 Nov 2026 07:00:00 +0000`."""
    return format_datetime(aware(value).astimezone(UTC))


def rfc3339(value: datetime) -> str:
    """2026-11-30T07:00:00Z: RFC 3339 in UTC, whole seconds (what feed validators expect)."""
    return aware(value).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def feed_links(home: str, self_url: str) -> tuple[str, str]:
    """(home, self) as safe http(s) URLs; RenderError naming the one that is not."""
    safe_home, safe_self = safe_url(home), safe_url(self_url)
    if safe_home is None or safe_self is None:
        bad = home if safe_home is None else self_url
        raise RenderError(f"feed link {bad!r} is not an http(s) URL")
    return safe_home, safe_self


def section_titles(sections: Mapping[str, Section] | Iterable[Section]) -> dict[str, str]:
    """section id -> its title, from a mapping by id or a sequence of sections."""
    by_id = dict(sections) if isinstance(sections, Mapping) else {s.id: s for s in sections}
    return {key: s.title for key, s in by_id.items()}
