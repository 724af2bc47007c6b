"""Render stage: digest HTML/text/.eml, the RSS feed, filters, templates; and output.write_outputs.

Plain values built by hand (the factory below); no storage, no network.
FAULTS.md 3.3: R1 (escaping), R2 (unsafe links), R5 (well-formed RSS), R6 (header injection),
R7 (output names).
"""

from __future__ import annotations

import ast
import email
import email.policy
import os
import re
import shutil
import subprocess
import sys
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import jinja2
import lxml.html
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from aggregator.exceptions import RenderError
from aggregator.output import write_outputs
from aggregator.render import (
    MAX_SUBJECT_CHARS,
    PROJECT_TEMPLATE_DIRS,
    check_templates,
    clean_header,
    format_date,
    format_period,
    make_environment,
    message_id,
    render_digest,
    render_feed,
    safe_url,
    teaser,
)
from aggregator.types import (
    Digest,
    DigestSection,
    Item,
    Newsletter,
    Placement,
    Rendered,
    Section,
    StoredItem,
    Story,
)

ROOT = Path(__file__).resolve().parent.parent
ATOM = "http://www.w3.org/2005/Atom"

# --- a small factory ----------------------------------------------------------------------

NEWSLETTER = Newsletter(
    title="Tech Weekly",
    link="https://news.example.org/",
    description="What happened in tech this week.",
    timezone="Europe/Berlin",
)
# Monday 23 November 2026 00:00 to Monday 30 November 00:00, Berlin time (UTC+1).
START = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
END = datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
GENERATED = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
SECURITY = Section(id="security", title="Security", description="Bugs, breaches & fixes")
PYTHON = Section(id="python", title="Python")
HARDWARE = Section(id="hardware", title="Hardware")
SOURCE_NAMES = {"lwn": "LWN.net", "hn": "Hacker News", "ars": "Ars Technica"}
SOURCE_URLS = {
    "lwn": "https://lwn.net/headlines/rss",
    "hn": "https://news.ycombinator.com/rss",
    "ars": "https://feeds.arstechnica.com/arstechnica/index",
}
FEED_URL = "https://news.example.org/feed.xml"


def make_item(
    n: int,
    *,
    source: str = "lwn",
    title: str | None = None,
    link: str | None = "default",
    summary: str = "A short summary.",
    published: datetime | str | None = "default",
    first_seen: datetime | None = None,
    section: str | None = "security",
) -> StoredItem:
    url = f"https://{source}.example.com/articles/{n}" if link == "default" else link
    item = Item(
        source_id=source,
        guid=f"{source}-{n}",
        url=url,
        link=url,
        title=f"Story number {n}" if title is None else title,
        title_key=f"story number {n}",
        summary_html=f"<p>{summary}</p>",
        summary_text=summary,
        published=(
            START + timedelta(days=1, hours=n % 24) if isinstance(published, str) else published
        ),
    )
    return StoredItem(
        id=n,
        item=item,
        story_id=n,
        first_seen=first_seen or START + timedelta(days=2),
        placement=Placement(section=section),
    )


def make_story(n: int, *, others: tuple[StoredItem, ...] = (), **kw: Any) -> Story:
    return Story(id=n, lead=make_item(n, **kw), others=others)


def make_digest(
    *sections: tuple[Section, tuple[Story, ...]] | tuple[Section, tuple[Story, ...], int],
    newsletter: Newsletter = NEWSLETTER,
    start: datetime = START,
    end: datetime = END,
    generated_at: datetime = GENERATED,
) -> Digest:
    return Digest(
        newsletter=newsletter,
        start=start,
        end=end,
        sections=tuple(DigestSection(s[0], s[1], *s[2:]) for s in sections),
        source_names=tuple(SOURCE_NAMES.items()),
        generated_at=generated_at,
    )


@pytest.fixture(scope="module")
def env() -> jinja2.Environment:
    return make_environment()


def render(digest: Digest, env: jinja2.Environment | None = None, **kw: Any) -> Rendered:
    return render_digest(digest, env or make_environment(), source_urls=SOURCE_URLS, **kw)


def feed(stories: list[Story], limit: int = 100, newsletter: Newsletter = NEWSLETTER) -> bytes:
    return render_feed(
        stories,
        newsletter,
        [SECURITY, PYTHON, HARDWARE],
        SOURCE_NAMES,
        SOURCE_URLS,
        self_url=FEED_URL,
        now=GENERATED,
        limit=limit,
    )


def html_tree(html: str) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def story_titles(html: str) -> list[str]:
    return [h.text_content() for h in html_tree(html).find_class("story-title")]


# --- digest: content and layout -----------------------------------------------------------


def test_sections_in_digest_order_and_empty_ones_skipped(env: jinja2.Environment) -> None:
    digest = make_digest(
        (PYTHON, (make_story(1, section="python"), make_story(2, section="python"))),
        (HARDWARE, ()),
        (SECURITY, (make_story(3),)),
    )
    r = render(digest, env)
    tree = html_tree(r.html)
    assert [h.text_content() for h in tree.find_class("section-title")] == ["Python", "Security"]
    assert story_titles(r.html) == ["Story number 1", "Story number 2", "Story number 3"]
    assert "Hardware" not in r.html and "HARDWARE" not in r.text
    # the table of contents links every non-empty section
    toc = [a.get("href") for a in tree.find_class("toc-list")[0].iter("a")]
    assert toc == ["#section-python", "#section-security"]
    # the text twin has the same order
    positions = [
        r.text.index(t) for t in ("PYTHON", "Story number 1", "SECURITY", "Story number 3")
    ]
    assert positions == sorted(positions)


def test_story_shows_linked_title_source_date_and_teaser(env: jinja2.Environment) -> None:
    story = make_story(
        1,
        source="ars",
        link="https://arstechnica.com/a?b=1&c=2",
        # 23:30 UTC on Tuesday is Wednesday in Berlin
        published=datetime(2026, 11, 24, 23, 30, tzinfo=UTC),
        first_seen=datetime(2026, 11, 25, 8, 0, tzinfo=UTC),
    )
    r = render(make_digest((SECURITY, (story,))), env)
    link = html_tree(r.html).find_class("story-link")[0]
    assert link.get("href") == "https://arstechnica.com/a?b=1&c=2"
    meta = html_tree(r.html).find_class("meta")[0].text_content()
    assert "Ars Technica" in meta and "Wed 25 Nov 2026" in meta
    assert "https://arstechnica.com/a?b=1&c=2" in r.text  # the URL in full, unescaped
    assert "Ars Technica · Wed 25 Nov 2026" in r.text


def test_period_and_subject(env: jinja2.Environment) -> None:
    r = render(make_digest((SECURITY, (make_story(1),))), env)
    assert r.subject == "Tech Weekly \u2014 Week of 23\u201329 November 2026"
    assert "Week of 23\u201329 November 2026" in r.html
    assert "Week of 23\u201329 November 2026" in r.text


def test_empty_digest_says_so(env: jinja2.Environment) -> None:
    r = render(make_digest((SECURITY, ()), (PYTHON, ())), env)
    assert "No new stories this week" in r.html
    assert "No new stories this week" in r.text
    assert html_tree(r.html).find_class("story") == []
    msg = email.message_from_bytes(r.eml, policy=email.policy.default)
    assert msg["Subject"] == r.subject


def test_also_reported_by(env: jinja2.Environment) -> None:
    others = (
        make_item(10, source="hn", link="https://news.ycombinator.com/item?id=1"),
        make_item(11, source="ars", link="javascript:alert(1)"),
    )
    r = render(make_digest((SECURITY, (make_story(1, others=others),))), env)
    p = html_tree(r.html).find_class("others")[0]
    assert p.text_content() == "Also reported by: Hacker News, Ars Technica"
    links = [(a.text_content(), a.get("href")) for a in p.iter("a")]
    assert links == [("Hacker News", "https://news.ycombinator.com/item?id=1")]
    assert "Also reported by:" in r.text
    assert "https://news.ycombinator.com/item?id=1" in r.text
    assert "javascript" not in r.text.lower()
    # without others, no line at all
    plain = render(make_digest((SECURITY, (make_story(2),))), env)
    assert "Also reported by" not in plain.html and "Also reported by" not in plain.text


def test_also_reported_by_names_each_other_outlet_once(env: jinja2.Environment) -> None:
    # Hacker News posted the story three times, and the lead's own outlet (LWN) once more:
    # the line names each *other* outlet once, with its first item's link.
    others = (
        make_item(10, source="hn", link="https://news.ycombinator.com/item?id=1"),
        make_item(11, source="lwn"),
        make_item(12, source="hn", link="https://news.ycombinator.com/item?id=2"),
        make_item(13, source="ars"),
        make_item(14, source="hn", link="https://news.ycombinator.com/item?id=3"),
    )
    r = render(make_digest((SECURITY, (make_story(1, others=others),))), env)
    p = html_tree(r.html).find_class("others")[0]
    assert p.text_content() == "Also reported by: Hacker News, Ars Technica"
    hrefs = [a.get("href") for a in p.iter("a")]
    assert hrefs == [
        "https://news.ycombinator.com/item?id=1",
        "https://ars.example.com/articles/13",
    ]
    assert "item?id=2" not in r.text and "item?id=3" not in r.text


def test_and_n_more(env: jinja2.Environment) -> None:
    r = render(make_digest((SECURITY, (make_story(1),), 7), (PYTHON, (make_story(2),))), env)
    more = html_tree(r.html).find_class("more")
    assert [m.text_content().strip() for m in more] == ["and 7 more in Security"]
    assert "and 7 more in Security" in r.text
    assert "Security (8)" in r.text  # the contents count the ones left out too


def test_teaser_in_digest(env: jinja2.Environment) -> None:
    summary = "word " * 200
    r = render(make_digest((SECURITY, (make_story(1, summary=summary),))), env, teaser_chars=50)
    shown = html_tree(r.html).find_class("teaser")[0].text_content()
    assert shown.endswith("\u2026") and len(shown) <= 50
    assert shown == teaser(summary, 50)


def test_html_is_email_safe(env: jinja2.Environment) -> None:
    r = render(make_digest((SECURITY, (make_story(1), make_story(2))), (PYTHON, ())), env)
    tree = html_tree(r.html)  # parseable
    assert "<script" not in r.html.lower()
    assert tree.xpath("//link") == []  # no external CSS
    # CSS is inlined: the elements carry style attributes ...
    assert "color" in tree.find_class("story-link")[0].get("style")
    assert "max-width: 600px" in tree.find_class("container")[0].get("style")
    # ... and only the @media rules, which cannot be inlined, stay in a <style>
    styles = [s.text for s in tree.iter("style")]
    assert len(styles) == 1 and styles[0].lstrip().startswith("@media")
    assert tree.find(".//meta[@name='viewport']") is not None


def test_text_fits_in_78_columns(env: jinja2.Environment) -> None:
    long_title = "A remarkably long headline that goes on " * 4
    long_url = "https://example.com/" + "x" * 100
    digest = make_digest(
        (SECURITY, (make_story(1, title=long_title, summary="lorem ipsum " * 60, link=long_url),))
    )
    r = render(digest, env)
    for line in r.text.splitlines():
        assert len(line) <= 78 or line.strip() == long_url, line
    assert long_url in r.text.splitlines()[r.text.splitlines().index("  " + long_url)]


# --- R1: escaping -------------------------------------------------------------------------

HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "AT&T \"quoted\" 'x'"]


@pytest.mark.parametrize("title", HOSTILE)
def test_hostile_title_is_escaped_in_html_and_shown_as_is_in_text(
    env: jinja2.Environment, title: str
) -> None:
    story = make_story(1, title=title, summary=title)
    r = render(make_digest((SECURITY, (story,))), env)
    assert "<script" not in r.html and "<img" not in r.html
    assert story_titles(r.html) == [title]  # escaped in the markup, the same text when read
    assert html_tree(r.html).find_class("teaser")[0].text_content() == title
    # plain text is not HTML: no entities, the characters as they are
    assert f"* {title}" in r.text
    assert "&lt;" not in r.text and "&amp;" not in r.text and "&#" not in r.text
    # RSS: escaped in the XML, the same text when parsed
    item = etree.fromstring(feed([story])).find("channel/item")
    assert item.findtext("title") == title


def test_hostile_other_title_in_attribute_is_escaped(env: jinja2.Environment) -> None:
    other = make_item(2, source="hn", title='"><script>alert(1)</script>')
    r = render(make_digest((SECURITY, (make_story(1, others=(other,)),))), env)
    a = next(html_tree(r.html).find_class("others")[0].iter("a"))
    assert a.get("title") == '"><script>alert(1)</script>'
    assert html_tree(r.html).xpath("//script") == []


def test_newsletter_title_is_escaped(env: jinja2.Environment) -> None:
    nl = Newsletter("<b>News</b> & more", "https://news.example.org/", "<i>d</i>", "UTC")
    r = render(make_digest((SECURITY, (make_story(1),)), newsletter=nl), env)
    assert "<b>" not in r.html and "<i>" not in r.html
    assert r.text.startswith("<b>News</b> & more\n")


def test_environment_escapes_whatever_the_template_is_called(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text("{{ x }}")
    (tmp_path / "other.htm").write_text("{{ x }}")
    env = make_environment(tmp_path)
    for name in ("other.htm", "digest.txt.j2"):
        assert env.get_template(name).render(x="<b>") == "&lt;b&gt;"
    assert env.autoescape is True


# --- R2: unsafe links ---------------------------------------------------------------------

UNSAFE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "\x00javascript:alert(1)",
    "\x01 javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "file:///etc/passwd",
    "//evil.example/x",
    "/relative/path",
    "http:evil",
    "https://",
    "http://[::1",
    "",
    None,
]


@pytest.mark.parametrize("url", UNSAFE_URLS)
def test_safe_url_rejects(url: str | None) -> None:
    assert safe_url(url) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://example.com/a?b=1&c=2#f", "https://example.com/a?b=1&c=2#f"),
        ("HTTP://Example.com/", "HTTP://Example.com/"),
        ("  https://example.com/x \n", "https://example.com/x"),
        ("https://exa\tmple.com/x", "https://example.com/x"),
        ("https://example.com/a b", "https://example.com/a%20b"),
        ("https://example.com/\x85", "https://example.com/%C2%85"),
    ],
)
def test_safe_url_accepts_http_after_whatwg_trimming(url: str, expected: str) -> None:
    assert safe_url(url) == expected


@pytest.mark.parametrize("url", [u for u in UNSAFE_URLS if u])
def test_unsafe_link_renders_title_without_href(env: jinja2.Environment, url: str) -> None:
    story = make_story(1, link=url)
    r = render(make_digest((SECURITY, (story,))), env)
    title = html_tree(r.html).find_class("story-title")[0]
    assert title.text_content() == "Story number 1"
    assert title.xpath(".//a") == []
    hrefs = [a.get("href", "") for a in html_tree(r.html).iter("a")]
    assert not any(re.search(r"script|data:|file:", h, re.I) for h in hrefs)
    assert "script:" not in r.text.lower()
    item = etree.fromstring(feed([story])).find("channel/item")
    assert item.find("link") is None


# --- R5: the RSS feed ---------------------------------------------------------------------


def test_feed_is_valid_rss(tmp_path: Path) -> None:
    others = (make_item(20, source="hn"), make_item(21, source="ars"))
    stories = [
        make_story(1, others=others),
        make_story(2, source="hn", section="python"),
        make_story(3, published=None, section=None),
    ]
    data = feed(stories)
    root = etree.fromstring(data)  # strict XML
    assert root.tag == "rss" and root.get("version") == "2.0"
    channel = root.find("channel")
    assert channel.findtext("title") == "Tech Weekly"
    assert channel.findtext("link") == "https://news.example.org/"
    assert channel.findtext("description") == NEWSLETTER.description
    assert channel.findtext("lastBuildDate") == "Mon, 30 Nov 2026 06:00:00 +0000"
    self_link = channel.find(f"{{{ATOM}}}link")
    assert self_link.attrib == {"href": FEED_URL, "rel": "self", "type": "application/rss+xml"}
    items = channel.findall("item")
    assert len(items) == 3
    for item, story in zip(items, stories, strict=True):
        assert item.findtext("title") == story.lead.item.title
        assert item.findtext("link") == story.lead.item.link
        guid = item.find("guid")
        assert guid.text == f"https://news.example.org/#story-{story.id}"
        assert guid.get("isPermaLink") == "false"
        assert item.findtext("description").startswith("<p>A short summary.</p>")
        source = item.find("source")
        assert source.get("url") == SOURCE_URLS[story.lead.item.source_id]
        assert source.text == SOURCE_NAMES[story.lead.item.source_id]
    assert [i.findtext("category") for i in items] == ["Security", "Python", None]
    assert items[0].findtext("pubDate") == "Tue, 24 Nov 2026 00:00:00 +0000"
    # no published date: the first-seen date
    assert items[2].findtext("pubDate") == "Tue, 24 Nov 2026 23:00:00 +0000"
    description = items[0].findtext("description")
    assert 'Also reported by: <a href="https://hn.example.com/articles/20">Hacker News</a>' in (
        description
    )

    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    assert len(parsed.entries) == 3
    assert parsed.entries[0].id == "https://news.example.org/#story-1"
    assert parsed.entries[0].link == stories[0].lead.item.link
    assert parsed.entries[0].tags[0].term == "Security"
    assert parsed.entries[0].source.href == SOURCE_URLS["lwn"]


def test_feed_caps_at_limit_keeping_the_callers_order() -> None:
    stories = [make_story(n) for n in range(1, 8)]
    items = etree.fromstring(feed(stories, limit=5)).findall("channel/item")
    assert [i.findtext("guid") for i in items] == [
        f"https://news.example.org/#story-{n}" for n in range(1, 6)
    ]
    assert etree.fromstring(feed(stories, limit=0)).findall("channel/item") == []


def test_feed_pubdate_never_after_first_seen() -> None:
    story = make_story(1, published=datetime(2100, 1, 1, tzinfo=UTC))  # FAULTS C7
    item = etree.fromstring(feed([story])).find("channel/item")
    assert item.findtext("pubDate") == "Tue, 24 Nov 2026 23:00:00 +0000"


NASTY = "a]]>b</description><x>&amp;\x00\x0b\x1f\ufffe\ud800 \u202e end"


def test_feed_stays_well_formed_whatever_the_text() -> None:
    story = make_story(
        1,
        title=NASTY,
        summary=NASTY,
        others=(make_item(2, source="hn", title=NASTY),),
    )
    names = {**SOURCE_NAMES, "hn": "HN ]]> \x0c"}
    data = render_feed(
        [story, make_story(3)], NEWSLETTER, [SECURITY], names, SOURCE_URLS, FEED_URL, GENERATED
    )
    root = etree.fromstring(data)
    items = root.findall("channel/item")
    assert len(items) == 2  # every item survives
    cleaned = "a]]>b</description><x>&amp; \u202e end"
    assert items[0].findtext("title") == cleaned
    assert "<p>a]]&gt;b&lt;/description&gt;&lt;x&gt;&amp;amp; \u202e end</p>" in items[0].findtext(
        "description"
    )
    assert "HN ]]&gt;" in items[0].findtext("description")
    assert feedparser.parse(data).bozo == 0


def test_feed_rejects_a_non_http_link() -> None:
    bad = Newsletter("T", "javascript:alert(1)", "", "UTC")
    with pytest.raises(RenderError, match="javascript"):
        feed([make_story(1)], newsletter=bad)


# --- R6: mail headers ---------------------------------------------------------------------

OUR_HEADERS = ["From", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"]
INJECTIONS = [
    "Hello\r\nBcc: x@evil.example",
    "Hello\nBcc: x@evil.example\n",
    "Hello =?UTF-8?Q?=0A?=Bcc: x@evil.example",
    "=?utf-8?b?SGVsbG8KQmNjOiB4QGV2aWwuZXhhbXBsZQ==?=",
    "Hello\x0bBcc: x@evil.example",
    "Hello\u2028Bcc: x@evil.example\u2029",
    "Hello\x85Bcc:\x1c\x1d\x1e\x0c x@evil.example",
    "x" * 1000,
    "Caf\u00e9 \u202eevil\u202c",
]


@pytest.mark.parametrize("title", INJECTIONS)
def test_subject_injection_leaves_exactly_our_headers(env: jinja2.Environment, title: str) -> None:
    nl = Newsletter(title, "https://news.example.org/", "", "Europe/Berlin")
    r = render(make_digest((SECURITY, (make_story(1),)), newsletter=nl), env)
    assert len(r.subject) <= MAX_SUBJECT_CHARS
    assert r.subject == " ".join(r.subject.split())  # no separators left
    assert "=?" not in r.subject
    msg = email.message_from_bytes(r.eml, policy=email.policy.default)
    assert msg.keys() == OUR_HEADERS
    assert msg.defects == []
    assert str(msg["Subject"]) == r.subject
    assert len(msg["From"].addresses) == 1
    assert msg["From"].addresses[0].addr_spec == "noreply@news.example.org"
    # and the raw bytes have no header line we did not write
    head = r.eml.split(b"\r\n\r\n", 1)[0].decode("ascii")
    names = [line.split(":", 1)[0] for line in head.split("\r\n") if not line[:1].isspace()]
    assert names == OUR_HEADERS


@pytest.mark.parametrize(
    "value",
    ["a\r\nb", "a\nb", "a\rb", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1db", "a\x1eb", "a\x85b",
     "a\u2028b", "a\u2029b", "a\x00b", "a\x7fb", "a\x9bb", "a\ud800b"],
)  # fmt: skip
def test_clean_header_removes_every_line_separator_and_control(value: str) -> None:
    assert clean_header(value) == "a b"


def test_clean_header_caps_and_neutralizes_encoded_words() -> None:
    assert clean_header("=?UTF-8?Q?=0A?=") == "= ?UTF-8?Q?=0A?="
    capped = clean_header("word " * 100)
    assert len(capped) == MAX_SUBJECT_CHARS and capped.endswith("\u2026")


def test_eml_is_multipart_alternative_text_first(env: jinja2.Environment) -> None:
    r = render(make_digest((SECURITY, (make_story(1, title="Caf\u00e9 <b>"),))), env)
    msg = email.message_from_bytes(r.eml, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["MIME-Version"] == "1.0"
    assert str(msg["From"]) == "Tech Weekly <noreply@news.example.org>"
    assert msg["Date"].datetime == GENERATED
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert parts[0].get_content().replace("\r\n", "\n") == r.text
    assert parts[1].get_content().replace("\r\n", "\n").rstrip("\n") == r.html.rstrip("\n")
    assert max(len(line) for line in r.eml.split(b"\r\n")) <= 78
    r.eml.decode("ascii")  # 7-bit clean


def test_sender_setting_is_used(env: jinja2.Environment) -> None:
    r = render(make_digest((SECURITY, ())), env, sender="Tech\r\n Desk <desk@example.org>")
    msg = email.message_from_bytes(r.eml, policy=email.policy.default)
    assert msg.keys() == OUR_HEADERS
    assert str(msg["From"]) == "Tech Desk <desk@example.org>"


def test_bad_sender_is_a_render_error(env: jinja2.Environment) -> None:
    for sender in ("nobody", "a@example.org, b@example.org", "Desk Bcc: x@evil <d@example.org>"):
        with pytest.raises(RenderError, match="not one mail address"):
            render(make_digest((SECURITY, ())), env, sender=sender)


def test_message_id_is_deterministic(env: jinja2.Environment) -> None:
    digest = make_digest((SECURITY, (make_story(1),)))
    later = make_digest(
        (SECURITY, (make_story(1), make_story(2))), generated_at=GENERATED + timedelta(hours=5)
    )
    next_week = make_digest(
        (SECURITY, ()), start=START + timedelta(days=7), end=END + timedelta(days=7)
    )
    ids = [
        email.message_from_bytes(render(d, env).eml, policy=email.policy.default)["Message-ID"]
        for d in (digest, later, next_week)
    ]
    assert ids[0] == ids[1] == message_id(digest)
    assert ids[2] != ids[0]
    assert re.fullmatch(r"<digest\.20261122\.[0-9a-f]{20}@news\.example\.org>", ids[0])
    # and the whole file is reproducible
    assert render(digest, env).eml == render(digest, env).eml


# --- templates: where they are found ------------------------------------------------------


def test_editor_override_wins_and_the_rest_falls_through(tmp_path: Path) -> None:
    (tmp_path / "digest.txt.j2").write_text(
        "{% autoescape false %}EDITOR {{ newsletter.title }}{% endautoescape %}"
    )
    nl = Newsletter("A & B", "https://news.example.org/", "", "UTC")
    r = render(make_digest((SECURITY, (make_story(1),)), newsletter=nl), make_environment(tmp_path))
    assert r.text == "EDITOR A & B"
    assert "Story number 1" in r.html  # the project's HTML template


def test_project_templates_found_from_the_checkout() -> None:
    env = make_environment()
    assert Path(env.get_template("digest.html.j2").filename or "").parent == ROOT / "templates"


def test_wheel_layout_matches_pyproject() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    include = pyproject["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    assert include["templates"] == "aggregator/_templates"
    assert PROJECT_TEMPLATE_DIRS[0] == ROOT / "aggregator" / "_templates"


def test_project_templates_found_from_an_installed_wheel(tmp_path: Path) -> None:
    # The wheel's layout without building one: the package with templates/ as _templates.
    site = tmp_path / "site"
    ignore = shutil.ignore_patterns("__pycache__", "_templates")
    shutil.copytree(ROOT / "aggregator", site / "aggregator", ignore=ignore)
    shutil.copytree(ROOT / "templates", site / "aggregator" / "_templates")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from aggregator.render import make_environment;"
        "print(make_environment().get_template('digest.html.j2').filename)"
    )
    out = subprocess.run(
        [sys.executable, "-I", "-c", code, str(site)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(out.stdout.strip()) == site / "aggregator" / "_templates" / "digest.html.j2"


def test_missing_template_names_template_and_folder(tmp_path: Path) -> None:
    env = make_environment(tmp_path)
    env.loader = jinja2.FileSystemLoader([tmp_path])  # as if the project's were missing
    with pytest.raises(RenderError) as e:
        render(make_digest((SECURITY, ())), env)
    assert "digest.html.j2" in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(RenderError, match=r"digest\.html\.j2"):
        check_templates(env)


def test_check_templates_passes_for_the_project_templates() -> None:
    check_templates(make_environment())


def test_missing_templates_dir_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RenderError, match="nope"):
        make_environment(tmp_path / "nope")


def test_broken_template_names_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "digest.html.j2").write_text("<p>\n{% if %}\n")
    with pytest.raises(RenderError, match=r"digest\.html\.j2.*:2"):
        render(make_digest((SECURITY, ())), make_environment(tmp_path))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{{ no_such_thing }}", "no_such_thing"),
        ("{{ generated_at | format_date(timezone, 'long') }}", "unknown style 'long'"),
        ("{{ generated_at | format_date('Mars/Olympus') }}", "Mars/Olympus"),
    ],
)
def test_template_mistakes_are_render_errors(tmp_path: Path, body: str, message: str) -> None:
    (tmp_path / "digest.html.j2").write_text(body)
    with pytest.raises(RenderError, match=message):
        render(make_digest((SECURITY, ())), make_environment(tmp_path))


def test_editor_stylesheet_link_is_not_fetched(tmp_path: Path) -> None:
    # css-inline would fetch it; the port is closed, so a fetch would fail the render.
    (tmp_path / "digest.html.j2").write_text(
        '<html><head><link rel="stylesheet" href="http://127.0.0.1:9/x.css">'
        "<style>p { color: red }</style></head><body><p>{{ newsletter.title }}</p></body></html>"
    )
    r = render(make_digest((SECURITY, ())), make_environment(tmp_path))
    assert 'style="color: red;"' in r.html


# --- filters ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "chars", "expected"),
    [
        ("short", 280, "short"),
        ("  spread \n\n  out\ttext ", 280, "spread out text"),
        ("one two three four", 18, "one two three four"),
        ("one two three four", 17, "one two three\u2026"),
        ("one two three four", 14, "one two three\u2026"),  # the space after "three" is the cut
        ("one two, three four", 10, "one two\u2026"),  # no "two,…"
        ("supercalifragilistic", 10, "supercali\u2026"),  # one long word: cut inside it
        ("", 10, ""),
        (None, 10, ""),
    ],
)
def test_teaser(text: str | None, chars: int, expected: str) -> None:
    assert teaser(text, chars) == expected


@given(st.text(), st.integers(min_value=1, max_value=400))
def test_teaser_never_exceeds_chars(text: str, chars: int) -> None:
    assert len(teaser(text, chars)) <= chars


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (START, END, "Week of 23\u201329 November 2026"),
        (
            datetime(2026, 11, 29, 23, tzinfo=UTC),
            datetime(2026, 12, 6, 23, tzinfo=UTC),
            "Week of 30 November \u2013 6 December 2026",
        ),
        (
            datetime(2026, 12, 27, 23, tzinfo=UTC),
            datetime(2027, 1, 3, 23, tzinfo=UTC),
            "Week of 28 December 2026 \u2013 3 January 2027",
        ),
        # across the end of summer time (25 October 2026): 169 hours, still a week
        (
            datetime(2026, 10, 18, 22, tzinfo=UTC),
            datetime(2026, 10, 25, 23, tzinfo=UTC),
            "Week of 19\u201325 October 2026",
        ),
        (datetime(2026, 12, 1, 23, tzinfo=UTC), datetime(2026, 12, 2, 23, tzinfo=UTC),
         "2 December 2026"),
        (datetime(2026, 12, 1, 23, tzinfo=UTC), datetime(2026, 12, 4, 23, tzinfo=UTC),
         "2\u20134 December 2026"),
    ],
)  # fmt: skip
def test_format_period(start: datetime, end: datetime, expected: str) -> None:
    assert format_period(start, end, "Europe/Berlin") == expected


def test_format_date_in_the_newsletter_zone() -> None:
    moment = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    assert format_date(moment, "Europe/Berlin") == "Wed 25 Nov 2026"
    assert format_date(moment, "America/New_York", "datetime") == "Tue 24 Nov 2026, 18:30"
    assert format_date(None, "UTC") == ""
    with pytest.raises(RenderError, match="Mars/Olympus"):
        format_date(moment, "Mars/Olympus")


# --- property: whatever the text, the markup is ours --------------------------------------

_PROPERTY_ENV = make_environment()


def _baseline(with_summary: bool) -> str:
    story = make_story(1, title="x", summary="y" if with_summary else "")
    return render_digest(make_digest((SECURITY, (story,))), _PROPERTY_ENV).html


# The same page with harmless text: with and without a teaser paragraph.
_BASELINES = {shape: _baseline(shape) for shape in (True, False)}
_OUR_TAGS = {e.tag for e in html_tree(_BASELINES[True]).iter() if isinstance(e.tag, str)}

hostile_text = st.one_of(
    st.text(),
    st.lists(
        st.sampled_from(["<", ">", "&", '"', "'", "]]>", "</", "<!--", "-->", "<script>",
                         "<img src=x onerror=alert(1)>", "&amp;", "&#60;", "\x00", "\x0b",
                         "\r\n", "\u2028", "\ud800", "\ufffe", "javascript:", "{{ x }}", "{%"]),
    ).map("".join),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=50),
)  # fmt: skip


def _xml_chars(s: str) -> str:
    """The XML 1.0 Char production, written out independently of render.xml_text."""

    def ok(c: str) -> bool:
        n = ord(c)
        return c in "\t\n\r" or 0x20 <= n <= 0xD7FF or 0xE000 <= n <= 0xFFFD or n > 0xFFFF

    return "".join(c for c in s if ok(c))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(title=hostile_text, summary=hostile_text)
def test_any_text_is_escaped_in_html_and_keeps_rss_well_formed(title: str, summary: str) -> None:
    story = make_story(1, title=title, summary=summary)
    html = render_digest(make_digest((SECURITY, (story,))), _PROPERTY_ENV).html
    # Every "<" in the page is one of ours: the input added none.
    assert html.count("<") == _BASELINES[bool(teaser(summary))].count("<")
    tree = html_tree(html)
    assert {e.tag for e in tree.iter() if isinstance(e.tag, str)} <= _OUR_TAGS
    assert not any(k.lower().startswith("on") for e in tree.iter() for k in e.attrib)

    root = etree.fromstring(feed([story]))  # raises if not well-formed
    item = root.find("channel/item")
    assert (item.findtext("title") or "") == _xml_chars(title)


# --- architecture -------------------------------------------------------------------------

FORBIDDEN = ("fetch", "parse", "storage", "pipeline", "cli", "config", "scheduler", "normalize")


@pytest.mark.parametrize(
    "path",
    [*sorted((ROOT / "aggregator" / "render").glob("*.py")), ROOT / "aggregator" / "output.py"],
)
def test_render_imports_no_other_stage(path: Path) -> None:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "aggregator" and len(parts) > 1:
                assert parts[1] not in FORBIDDEN, f"{path.name} imports {name}"


# --- output.write_outputs (R7) ------------------------------------------------------------


def test_write_outputs_writes_str_and_bytes(tmp_path: Path) -> None:
    out = tmp_path / "public"
    paths = write_outputs(out, {"feed.xml": b"<rss/>", "2026/digest-W48.txt": "caf\u00e9"})
    assert paths == [out / "feed.xml", out / "2026" / "digest-W48.txt"]
    assert (out / "feed.xml").read_bytes() == b"<rss/>"
    assert (out / "2026" / "digest-W48.txt").read_text(encoding="utf-8") == "caf\u00e9"
    assert oct((out / "feed.xml").stat().st_mode & 0o777) == oct(0o644)
    # replacing leaves no temporary files behind
    write_outputs(out, {"feed.xml": b"<rss>2</rss>"})
    assert (out / "feed.xml").read_bytes() == b"<rss>2</rss>"
    assert sorted(p.name for p in out.iterdir()) == ["2026", "feed.xml"]


@pytest.mark.parametrize(
    "name",
    ["../x", "a/../../x", "/etc/cron.d/x", "a\\b", "", ".hidden", "a//", "CON", "con.txt",
     "nul.xml", "a b", "x" * 200, "caf\u00e9", "feed.xml\x00"],
)  # fmt: skip
def test_write_outputs_rejects_unsafe_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="output name"):
        write_outputs(tmp_path / "out", {"ok.txt": "fine", name: "x"})
    assert not (tmp_path / "out").exists()  # nothing written when any name is bad


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_write_outputs_does_not_follow_a_symlink_out(tmp_path: Path) -> None:
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "sub").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="outside"):
        write_outputs(out, {"sub/x.txt": "x"})
    assert list(elsewhere.iterdir()) == []
