"""Stories -> RSS 2.0 (with atom:link rel=self), as UTF-8 XML bytes.

Built with lxml, never by pasting strings, after removing the characters XML 1.0 cannot carry:
whatever an item's text holds (`]]>`, `</description>`, NUL, \\x0b), the output is well-formed
(FAULTS R5). Not a template: it is a machine format, nothing for an editor to restyle.
Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lxml import etree
from markupsafe import Markup, escape

from aggregator.exceptions import RenderError
from aggregator.render._text import aware, paragraphs, safe_url, xml_text
from aggregator.render._views import StoryView, story_view
from aggregator.types import Newsletter, Section, Story

DEFAULT_FEED_LIMIT = 100
ATOM_NS = "http://www.w3.org/2005/Atom"


def render_feed(
    stories: Sequence[Story],
    newsletter: Newsletter,
    sections: Mapping[str, Section] | Iterable[Section],
    source_names: Mapping[str, str],
    source_urls: Mapping[str, str],
    self_url: str,
    now: datetime,
    limit: int = DEFAULT_FEED_LIMIT,
) -> bytes:
    """RSS 2.0 of the first `limit` stories (the caller orders them, newest first), as UTF-8
    bytes with an XML declaration: write them to the file as they are.

    Each item: title; link (when it is http/https); guid `<newsletter link>#story-<id>`,
    isPermaLink="false" (stable while the story lives, whichever outlet leads it);
    description (escaped HTML: the summary plus "Also reported by" links); pubDate (RFC 822,
    see _views.story_date); source with the source's URL (when known: RSS requires the url
    attribute); category (the section's title, when the story has a section).
    """
    channel_link = safe_url(newsletter.link)
    atom_self = safe_url(self_url)
    if channel_link is None or atom_self is None:
        bad = newsletter.link if channel_link is None else self_url
        raise RenderError(f"feed link {bad!r} is not an http(s) URL")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    by_id = dict(sections) if isinstance(sections, Mapping) else {s.id: s for s in sections}
    titles = {key: s.title for key, s in by_id.items()}
    guid_base = urlunsplit(urlsplit(channel_link)._replace(fragment=""))

    rss = etree.Element("rss", {"version": "2.0"}, nsmap={"atom": ATOM_NS})
    channel = _sub(rss, "channel")
    _sub(channel, "title", newsletter.title)
    _sub(channel, "link", channel_link)
    _sub(channel, "description", newsletter.description or newsletter.title)
    _sub(channel, "lastBuildDate", _rfc822(now))
    _sub(channel, "generator", "aggregator")
    _sub(channel, f"{{{ATOM_NS}}}link", href=atom_self, rel="self", type="application/rss+xml")
    for story in stories[:limit]:
        view = story_view(story, source_names, source_urls, titles)
        item = _sub(channel, "item")
        _sub(item, "title", view.title)
        link = safe_url(view.link)
        if link is not None:
            _sub(item, "link", link)
        _sub(item, "guid", f"{guid_base}#story-{view.id}", isPermaLink="false")
        _sub(item, "description", _description(view))
        _sub(item, "pubDate", _rfc822(view.date))
        source_url = safe_url(view.source_url)
        if source_url is not None:
            _sub(item, "source", view.source, url=source_url)
        if view.section:
            _sub(item, "category", view.section)
    data: bytes = etree.tostring(rss, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return data


def _sub(parent: Any, tag: str, text: str | None = None, **attrib: str) -> Any:
    element = etree.SubElement(parent, tag, {k: xml_text(v) for k, v in attrib.items()})
    if text is not None:
        element.text = xml_text(text)
    return element


def _rfc822(value: datetime) -> str:
    return format_datetime(aware(value).astimezone(UTC))


def _link_html(text: str, url: str | None) -> Markup:
    href = safe_url(url)
    if href is None:
        return escape(text)
    return Markup('<a href="{}">{}</a>').format(href, text)


def _description(story: StoryView) -> str:
    # HTML carried as escaped text, never CDATA: a `]]>` in the summary cannot end anything.
    # The plain-text summary, not summary_html: the feed then trusts no sanitizer but escape().
    parts = [Markup("<p>{}</p>").format(p) for p in paragraphs(xml_text(story.summary))]
    if story.others:
        links = Markup(", ").join(_link_html(o.source, o.link) for o in story.others)
        parts.append(Markup("<p>Also reported by: {}</p>").format(links))
    return str(Markup("\n").join(parts))
