"""Stories -> Atom 1.0 (RFC 4287), as UTF-8 XML bytes; the Atom twin of `_feed.render_feed`.

Same stories, same views, same entry HTML as feed.xml (`_feed._description`), so whatever
feed.xml shows of a story (its other outlets, its section) the Atom feed shows too. Built
with lxml after removing XML-invalid characters (FAULTS R5). Dates are RFC 3339 in UTC.
Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from lxml import etree

from aggregator.render._feed import _description  # the entry HTML feed.xml uses
from aggregator.render._feedkit import ATOM_NS, feed_links, rfc3339, section_titles, sub
from aggregator.render._text import aware, safe_url
from aggregator.render._views import story_view
from aggregator.types import Newsletter, Section, Story

_A = f"{{{ATOM_NS}}}"


def story_id(home: str, story: int) -> str:
    """The id of a story in every feed: `<newsletter link>#story-<id>` (feed.xml's guid)."""
    return f"{home.split('#')[0]}#story-{story}"


def render_atom(
    stories: Sequence[Story],
    newsletter: Newsletter,
    sections: Mapping[str, Section] | Iterable[Section],
    source_names: Mapping[str, str],
    source_urls: Mapping[str, str],
    self_url: str,
    now: datetime,
    limit: int = 100,
) -> bytes:
    """Atom 1.0 of the first `limit` stories (newest first, as the caller orders them).

    `now` is the feed's <updated>: pass the newest story's time, not the clock, so the bytes
    (and the ETag) stay the same until a story changes.
    """
    home, me = feed_links(newsletter.link, self_url)
    titles = section_titles(sections)
    feed = etree.Element(f"{_A}feed", nsmap={None: ATOM_NS})
    _sub(feed, "id", me)
    _sub(feed, "title", newsletter.title)
    if newsletter.description:
        _sub(feed, "subtitle", newsletter.description)
    _sub(feed, "updated", rfc3339(now))
    author = _sub(feed, "author")
    _sub(author, "name", newsletter.title)
    _sub(author, "uri", home)
    _sub(feed, "link", rel="self", type="application/atom+xml", href=me)
    _sub(feed, "link", rel="alternate", type="text/html", href=home)
    _sub(feed, "generator", "aggregator")
    for story in stories[:limit]:
        view = story_view(story, source_names, source_urls, titles)
        entry = _sub(feed, "entry")
        _sub(entry, "id", story_id(home, view.id))
        _sub(entry, "title", view.title)
        # A new outlet joining changes the entry: its <updated> is the newest member's arrival
        # when that is later than the publication date.
        changed = max(i.first_seen for i in (story.lead, *story.others))
        _sub(entry, "updated", rfc3339(max(aware(view.date), aware(changed))))
        _sub(entry, "published", rfc3339(view.date))
        link = safe_url(view.link)
        if link is not None:
            _sub(entry, "link", rel="alternate", type="text/html", href=link)
        _sub(entry, "content", _description(view), type="html")
        if view.section:
            _sub(entry, "category", term=view.section)
        source_url = safe_url(view.source_url)
        if source_url is not None:
            source = _sub(entry, "source")
            _sub(source, "id", source_url)
            _sub(source, "title", view.source)
            _sub(source, "link", rel="self", href=source_url)
    data: bytes = etree.tostring(feed, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return data


def _sub(parent: Any, tag: str, text: str | None = None, **attrib: str) -> Any:
    return sub(parent, f"{_A}{tag}", text, **attrib)
