"""Stories -> JSON Feed 1.1 (https://jsonfeed.org/version/1.1), as UTF-8 JSON bytes.

The JSON twin of `_feed.render_feed`: the same views and entry HTML (`_feed._description`),
so story grouping shows the same in every feed. Dates are RFC 3339. Text is cleaned of what
XML cannot carry too, so the three feeds say the same thing.
Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from aggregator.render._atom import story_id
from aggregator.render._feed import _description  # the entry HTML feed.xml uses
from aggregator.render._feedkit import feed_links, rfc3339, section_titles
from aggregator.render._text import safe_url, teaser, xml_text
from aggregator.render._views import story_view
from aggregator.types import Newsletter, Section, Story

JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"


def render_json_feed(
    stories: Sequence[Story],
    newsletter: Newsletter,
    sections: Mapping[str, Section] | Iterable[Section],
    source_names: Mapping[str, str],
    source_urls: Mapping[str, str],
    self_url: str,
    limit: int = 100,
) -> bytes:
    """JSON Feed 1.1 of the first `limit` stories: version, title, home_page_url, feed_url,
    and per item id, url, title, content_html, summary, date_published, tags."""
    home, me = feed_links(newsletter.link, self_url)
    titles = section_titles(sections)
    items: list[dict[str, Any]] = []
    for story in stories[:limit]:
        view = story_view(story, source_names, source_urls, titles)
        item: dict[str, Any] = {
            "id": story_id(home, view.id),
            "title": xml_text(view.title),
            "content_html": _description(view),
            "summary": teaser(xml_text(view.summary)),
            "date_published": rfc3339(view.date),
            "authors": [{"name": xml_text(view.source)}],
        }
        link = safe_url(view.link)
        if link is not None:
            item["url"] = link
        if view.section:
            item["tags"] = [xml_text(view.section)]
        items.append(item)
    feed: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": xml_text(newsletter.title),
        "home_page_url": home,
        "feed_url": me,
        "language": "en",
        "items": items,
    }
    if newsletter.description:
        feed["description"] = xml_text(newsletter.description)
    return json.dumps(feed, ensure_ascii=False, indent=1).encode("utf-8") + b"\n"
