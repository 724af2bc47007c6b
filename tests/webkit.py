"""Shared by the web tests: a seeded site, an ASGI client, and the feed-validator rules."""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from lxml import etree

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.storage import open_storage
from aggregator.types import Config, Issue, Item, NewSubscriber, Placement

NOW = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
START, END = datetime(2026, 11, 22, 23, 0, tzinfo=UTC), datetime(2026, 11, 29, 23, 0, tzinfo=UTC)
WEEK = timedelta(days=7)
SECRET = "test-signing-key"
HOSTILE = 'Crisis <script>alert("x")</script> & "quotes"'


def write_config(
    tmp_path: Path,
    smtp_port: int,
    *,
    link: str = "https://t.example.org/news/",
    web: str = "{per_address_per_day: 2, per_client_per_hour: 6, max_body_bytes: 4096}",
) -> Config:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"newsletter: {{title: Weekly T, link: '{link}', description: 'A test newsletter', "
        "timezone: Europe/Berlin}\n"
        "storage: {database: 'sqlite:///data/a.db'}\n"
        "output: {dir: out}\n"
        "delivery: {mode: smtp, min_stories: 0, from: 'News <news@t.example.org>', "
        f"unsubscribe_secret_env: WEB_KEY, smtp: {{host: 127.0.0.1, port: {smtp_port}, "
        "security: none}}\n"
        f"web: {web}\n"
        "sources:\n"
        "  - {id: s, name: Source S, url: 'https://s.example.org/feed'}\n"
        "  - {id: r, name: Source R, url: 'https://r.example.org/feed'}\n"
        "sections:\n"
        "  - {id: training, title: Training, rules: [training]}\n"
        "  - {id: crisis, title: Crisis & Care, rules: [crisis]}\n"
    )
    return load_config(path)


def item(source: str, guid: str, title: str, when: datetime) -> Item:
    link = f"https://{source}.example.org/{guid}"
    return Item(
        source_id=source, guid=guid, url=link, link=link, title=title,
        title_key=title.lower(), summary_html=f"<p>{title}</p>",
        summary_text=f"About {title}.", published=when,
    )  # fmt: skip


def seed(config: Config) -> None:
    """Two weeks of stories in two sections (one grouped with another outlet's copy), a
    hostile title, and the two weeks' issues frozen."""
    storage = open_storage(config.database, NOW)
    try:
        with storage.transaction() as tx:
            for week in (0, 1):
                seen = START - week * WEEK + timedelta(days=2)
                for n, (section, title) in enumerate(
                    [
                        ("training", f"Training drill {week}-a"),
                        ("training", f"Training drill {week}-b"),
                        ("crisis", f"Crisis team {week}"),
                    ]
                ):
                    at = seen + timedelta(hours=n)
                    story = tx.add_story(at)
                    tx.add_item(
                        item("s", f"{week}-{n}", title, at), story, Placement(section, 1.0), at
                    )
                    if n == 0:  # another outlet's copy of the same story
                        tx.add_item(
                            item("r", f"{week}-{n}", title, at), story, Placement(section, 1.0), at
                        )
            at = START + timedelta(days=3)
            story = tx.add_story(at)
            tx.add_item(item("s", "hostile", HOSTILE, at), story, Placement("crisis", 1.0), at)
        for now, start, end in ((NOW - WEEK, START - WEEK, END - WEEK), (NOW, START, END)):
            mark_sent(storage, pipeline.freeze_issue(config, storage, now, start=start, end=end)[0])
    finally:
        storage.close()


PAST_READER = "past-reader@t.example.org"


def mark_sent(storage: Any, issue: Issue) -> None:
    """Record that `issue` went out (one `sent` delivery, to a reader who has since left):
    only such issues are public."""
    [(reader, _)] = storage.add_subscribers(
        [NewSubscriber(PAST_READER, status="unsubscribed")], issue.created
    )
    storage.add_deliveries(issue.id, [reader.id], issue.created)
    storage.set_delivery(issue.id, reader.id, "sent", issue.created)


class Client:
    """A synchronous client over the ASGI app (httpx.ASGITransport), no server needed."""

    def __init__(self, app: Any, base: str = "https://t.example.org") -> None:
        self.app = app
        self.base = base

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url=self.base) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(go())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@dataclass
class Clock:
    now: datetime = NOW
    calls: list[datetime] = field(default_factory=list)

    def __call__(self) -> datetime:
        self.calls.append(self.now)
        return self.now


# --- feed validator rules -----------------------------------------------------------------
# The W3C Feed Validation Service's rules that apply to what we emit: required elements,
# RFC 822 dates in RSS and RFC 3339 in Atom, unique ids, a self link that is the feed's own
# URL, absolute http(s) URLs everywhere (links and the HTML inside descriptions).

ATOM = "{http://www.w3.org/2005/Atom}"
RFC822 = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} ([+-]\d{4}|GMT|UT|Z)"
)
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


def absolute(url: str | None) -> bool:
    parts = urlsplit(url or "")
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def html_links(html: str) -> list[str]:
    if not html.strip():
        return []
    tree = etree.HTML(html)
    return [v for el in tree.iter() for k, v in el.attrib.items() if k in ("href", "src")]


def check_rss(body: bytes, self_url: str) -> list[str]:
    problems: list[str] = []
    root = etree.fromstring(body)
    if root.tag != "rss" or root.get("version") != "2.0":
        return ["root is not <rss version=2.0>"]
    channel = root.find("channel")
    assert channel is not None
    for tag in ("title", "link", "description"):
        if not (channel.findtext(tag) or "").strip():
            problems.append(f"channel has no {tag}")
    if not absolute(channel.findtext("link")):
        problems.append("channel link is not absolute")
    for tag in ("lastBuildDate", "pubDate"):
        value = channel.findtext(tag)
        if value is not None and not RFC822.fullmatch(value):
            problems.append(f"channel {tag} {value!r} is not RFC 822")
    selfs = [a for a in channel.findall(f"{ATOM}link") if a.get("rel") == "self"]
    if len(selfs) != 1 or selfs[0].get("href") != self_url:
        problems.append(f"atom:link rel=self is not {self_url}")
    guids: set[str] = set()
    for n, entry in enumerate(channel.findall("item")):
        if not (entry.findtext("title") or entry.findtext("description")):
            problems.append(f"item {n} has neither title nor description")
        date = entry.findtext("pubDate")
        if date is not None and not RFC822.fullmatch(date):
            problems.append(f"item {n} pubDate {date!r} is not RFC 822")
        if date is not None:
            email.utils.parsedate_to_datetime(date)
        guid = entry.find("guid")
        if guid is not None:
            if guid.text in guids:
                problems.append(f"item {n} repeats guid {guid.text}")
            guids.add(guid.text or "")
            if guid.get("isPermaLink", "true") == "true" and not absolute(guid.text):
                problems.append(f"item {n} permalink guid is not an absolute URL")
        link = entry.findtext("link")
        if link is not None and not absolute(link):
            problems.append(f"item {n} link {link!r} is not absolute")
        source = entry.find("source")
        if source is not None and not absolute(source.get("url")):
            problems.append(f"item {n} source has no absolute url")
        for href in html_links(entry.findtext("description") or ""):
            if not (absolute(href) or href.startswith("mailto:")):
                problems.append(f"item {n} description links to relative {href!r}")
    return problems


def check_atom(body: bytes, self_url: str) -> list[str]:
    problems: list[str] = []
    root = etree.fromstring(body)
    if root.tag != f"{ATOM}feed":
        return ["root is not atom:feed"]
    for tag in ("id", "title", "updated"):
        if not (root.findtext(f"{ATOM}{tag}") or "").strip():
            problems.append(f"feed has no {tag}")
    if not RFC3339.fullmatch(root.findtext(f"{ATOM}updated") or ""):
        problems.append("feed updated is not RFC 3339")
    selfs = [a for a in root.findall(f"{ATOM}link") if a.get("rel") == "self"]
    if len(selfs) != 1 or selfs[0].get("href") != self_url:
        problems.append(f"link rel=self is not {self_url}")
    feed_author = root.find(f"{ATOM}author") is not None
    ids: set[str] = set()
    for n, entry in enumerate(root.findall(f"{ATOM}entry")):
        entry_id = entry.findtext(f"{ATOM}id") or ""
        if not absolute(entry_id) and not entry_id.startswith(("urn:", "tag:")):
            problems.append(f"entry {n} id {entry_id!r} is not an IRI")
        if entry_id in ids:
            problems.append(f"entry {n} repeats id {entry_id}")
        ids.add(entry_id)
        if not (entry.findtext(f"{ATOM}title") or "").strip():
            problems.append(f"entry {n} has no title")
        for tag in ("updated", "published"):
            value = entry.findtext(f"{ATOM}{tag}")
            if (tag == "updated" or value is not None) and not RFC3339.fullmatch(value or ""):
                problems.append(f"entry {n} {tag} {value!r} is not RFC 3339")
        if not feed_author and entry.find(f"{ATOM}author") is None:
            problems.append(f"entry {n} has no author and the feed has none")
        for link in entry.findall(f"{ATOM}link"):
            if not absolute(link.get("href")):
                problems.append(f"entry {n} link is not absolute")
        content = entry.find(f"{ATOM}content")
        if content is None and entry.find(f"{ATOM}summary") is None:
            problems.append(f"entry {n} has neither content nor summary")
        if content is not None:
            if content.get("type") not in ("text", "html", "xhtml"):
                problems.append(f"entry {n} content type {content.get('type')!r}")
            for href in html_links(content.text or ""):
                if not (absolute(href) or href.startswith("mailto:")):
                    problems.append(f"entry {n} content links to relative {href!r}")
    return problems


def check_json_feed(body: bytes, self_url: str) -> list[str]:
    """JSON Feed 1.1's required fields and formats (https://jsonfeed.org/version/1.1)."""
    problems: list[str] = []
    feed = json.loads(body)
    if feed.get("version") != "https://jsonfeed.org/version/1.1":
        problems.append("version is not https://jsonfeed.org/version/1.1")
    if not isinstance(feed.get("title"), str) or not feed["title"]:
        problems.append("no title")
    if not isinstance(feed.get("items"), list):
        return [*problems, "items is not a list"]
    if feed.get("feed_url") != self_url:
        problems.append(f"feed_url is not {self_url}")
    if not absolute(feed.get("home_page_url")):
        problems.append("home_page_url is not absolute")
    ids: set[str] = set()
    for n, entry in enumerate(feed["items"]):
        if not isinstance(entry.get("id"), str) or not entry["id"]:
            problems.append(f"item {n} has no string id")
        if entry.get("id") in ids:
            problems.append(f"item {n} repeats id")
        ids.add(entry.get("id"))
        if not (entry.get("content_html") or entry.get("content_text")):
            problems.append(f"item {n} has neither content_html nor content_text")
        for key in ("date_published", "date_modified"):
            if key in entry and not RFC3339.fullmatch(entry[key]):
                problems.append(f"item {n} {key} is not RFC 3339")
        if "url" in entry and not absolute(entry["url"]):
            problems.append(f"item {n} url is not absolute")
        for href in html_links(entry.get("content_html") or ""):
            if not (absolute(href) or href.startswith("mailto:")):
                problems.append(f"item {n} content links to relative {href!r}")
    return problems
