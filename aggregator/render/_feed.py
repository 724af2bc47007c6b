"""Stories -> RSS 2.0 (with atom:link rel=self), as UTF-8 XML bytes.

Built with lxml, never by pasting strings, after removing the characters XML 1.0 cannot carry:
whatever an item's text holds (`]]>`, `</description>`, NUL, \\x0b), the output is well-formed
(FAULTS R5). Not a template: it is a machine format, nothing for an editor to restyle.
Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from lxml import etree
from markupsafe import Markup, escape

from aggregator.render._feedkit import ATOM_NS, feed_links, rfc822, section_titles, sub
from aggregator.render._text import paragraphs, safe_url, xml_text
from aggregator.render._views import StoryView, story_view
from aggregator.types import Newsletter, Section, Story

DEFAULT_FEED_LIMIT = 100


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
    channel_link, atom_self = feed_links(newsletter.link, self_url)
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    titles = section_titles(sections)
    guid_base = urlunsplit(urlsplit(channel_link)._replace(fragment=""))

    rss = etree.Element("rss", {"version": "2.0"}, nsmap={"atom": ATOM_NS})
    channel = sub(rss, "channel")
    sub(channel, "title", newsletter.title)
    sub(channel, "link", channel_link)
    sub(channel, "description", newsletter.description or newsletter.title)
    sub(channel, "lastBuildDate", rfc822(now))
    sub(channel, "generator", "aggregator")
    sub(channel, f"{{{ATOM_NS}}}link", href=atom_self, rel="self", type="application/rss+xml")
    for story in stories[:limit]:
        view = story_view(story, source_names, source_urls, titles)
        item = sub(channel, "item")
        sub(item, "title", view.title)
        link = safe_url(view.link)
        if link is not None:
            sub(item, "link", link)
        sub(item, "guid", f"{guid_base}#story-{view.id}", isPermaLink="false")
        sub(item, "description", _description(view))
        sub(item, "pubDate", rfc822(view.date))
        source_url = safe_url(view.source_url)
        if source_url is not None:
            sub(item, "source", view.source, url=source_url)
        if view.section:
            sub(item, "category", view.section)
    data: bytes = etree.tostring(rss, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return data


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
