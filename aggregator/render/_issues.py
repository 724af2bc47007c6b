"""Frozen issues on the web: an issue's HTML e-mail -> a safe body fragment; issues -> RSS 2.0.

The frozen issue (what subscribers got) is the source of truth for the archive: its <body> is
taken out of the e-mail document, sanitized with nh3 against an allow-list (no script, no
style block, no inline style: the site's CSP would refuse them anyway, and the site's own
stylesheet takes over), and its links are made absolute where a feed needs that.
Imports only `types`, `exceptions` and the render stage's own modules.
"""

from __future__ import annotations

import functools
import html as html_lib
from collections.abc import Mapping, Sequence
from datetime import datetime

import lxml.html
import nh3
from lxml import etree

from aggregator.exceptions import RenderError
from aggregator.render._feedkit import ATOM_NS, feed_links, rfc822, sub
from aggregator.render._text import safe_url
from aggregator.types import Issue, Newsletter

_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "code", "div", "em", "h1", "h2", "h3",
    "h4", "h5", "h6", "hr", "i", "img", "li", "ol", "p", "pre", "small", "span", "strong",
    "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
}  # fmt: skip
_ATTRIBUTES = {
    "*": {"class", "id", "lang", "title"},
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan"},
    "th": {"colspan", "rowspan", "scope"},
}


@functools.lru_cache(maxsize=64)
def issue_body(html: str, base_url: str | None = None) -> str:
    """The sanitized inside of the issue's <body>; with `base_url`, every link absolute.

    Images keep (or get an empty) alt text, so a screen reader never reads a file name.
    Cached by content: a frozen issue never changes, so the archive, its pages and
    issues.xml sanitize each issue once per process, not once per request.
    """
    try:
        doc = lxml.html.document_fromstring(html or "<p></p>")
    except (etree.ParserError, ValueError) as e:
        raise RenderError(f"the issue's HTML cannot be read: {e}") from e
    body = doc.find("body")
    if body is None:
        body = doc
    if base_url is not None:
        body.make_links_absolute(base_url, resolve_base_href=False)
    for img in body.iter("img"):
        img.set("alt", img.get("alt") or "")
    # body.text is parsed text (`&lt;b&gt;` is now `<b>`): escaped again, never markup.
    inner = html_lib.escape(body.text or "", quote=False) + "".join(
        etree.tostring(child, encoding="unicode", method="html") for child in body
    )
    cleaned: str = nh3.clean(
        inner,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer",
    )
    return cleaned


def render_issues_feed(
    issues: Sequence[Issue],
    newsletter: Newsletter,
    self_url: str,
    page_urls: Mapping[int, str],
    now: datetime,
) -> bytes:
    """RSS 2.0 with one item per issue (newest first): its subject, its page (`page_urls`
    by issue number) as link and permalink guid, and its whole body as HTML description.
    `now` is the channel's lastBuildDate: pass the newest issue's time for stable bytes."""
    home, me = feed_links(newsletter.link, self_url)
    rss = etree.Element("rss", {"version": "2.0"}, nsmap={"atom": ATOM_NS})
    channel = sub(rss, "channel")
    sub(channel, "title", f"{newsletter.title}: issues")
    sub(channel, "link", home)
    sub(channel, "description", newsletter.description or newsletter.title)
    sub(channel, "lastBuildDate", rfc822(now))
    sub(channel, "generator", "aggregator")
    sub(channel, f"{{{ATOM_NS}}}link", href=me, rel="self", type="application/rss+xml")
    for issue in sorted(issues, key=lambda i: i.number, reverse=True):
        page = safe_url(page_urls.get(issue.number))
        if page is None:
            raise RenderError(f"issue {issue.number} has no http(s) page URL")
        item = sub(channel, "item")
        sub(item, "title", issue.subject)
        sub(item, "link", page)
        sub(item, "guid", page, isPermaLink="true")
        sub(item, "description", issue_body(issue.html, page))
        sub(item, "pubDate", rfc822(issue.created))
    data: bytes = etree.tostring(rss, encoding="UTF-8", xml_declaration=True, pretty_print=True)
    return data
