"""End to end: the corpus's real-world feeds and listing pages served over 127.0.0.1,
`aggregator run --once` over them, twice.

The acceptance bar of the pipeline issue: at least 95% of the real feeds yield items, every
other source gets a clear per-source error, feed.xml parses, the digest is written, and a
second run adds nothing.
"""

from __future__ import annotations

import csv
import email
import io
import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import feedparser
import pytest
from lxml import etree

from aggregator.cli import EXIT_OK, EXIT_SOURCES, main
from aggregator.storage import open_storage

pytestmark = [pytest.mark.corpus, pytest.mark.slow]

LISTING_PAGES = [
    "pages/netnewswire/RSCore/daringfireball.html",
    "pages/htmldate/blog.wordpress.com.html",
    "pages/newspaper/cnn_main_site.html",
    "pages/rubycocos-feedparser/indie-blog.html",
    "pages/netnewswire/RSCore/inessential.html",
]


def real_feeds(corpus: Path) -> list[str]:
    with (corpus / "MANIFEST.tsv").open(newline="") as f:
        return [
            row["path"] for row in csv.DictReader(f, delimiter="\t") if row["category"] == "real"
        ]


def write_config(tmp: Path, base: str, feeds: list[str], pages: list[str]) -> Path:
    lines = [
        "newsletter: {title: Corpus Weekly, link: 'https://corpus.example.org/', "
        "description: The corpus as a newsletter, timezone: America/New_York}",
        "storage: {database: 'sqlite:///data/test.db'}",
        "output: {dir: public}",
        "fetch: {allow_private_network: true, concurrency: 8, per_host: 8}",
        "sources:",
    ]
    for n, path in enumerate(feeds):
        lines.append(
            f"  - {{id: feed-{n:03d}, name: 'Feed {n}', url: '{base}/files/{path}', "
            "kind: auto, section: news}"
        )
    for n, path in enumerate(pages):
        lines.append(
            f"  - {{id: page-{n:03d}, name: 'Page {n}', url: '{base}/files/{path}', "
            "kind: page, section: news}"
        )
    lines += [
        "sections:",
        "  - {id: news, title: News}",
    ]
    config = tmp / "feeds.yaml"
    config.write_text("\n".join(lines) + "\n")
    return config


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_run_once_over_the_corpus(corpus: Path, tmp_path: Path, http_server) -> None:
    feeds = real_feeds(corpus)
    assert len(feeds) == 192
    config = write_config(tmp_path, http_server.base, feeds, LISTING_PAGES)
    assert run("--config", str(config), "check")[0] == EXIT_OK

    t0 = time.perf_counter()
    code, out, err = run("--config", str(config), "run", "--once")
    elapsed = time.perf_counter() - t0
    assert code in (EXIT_OK, EXIT_SOURCES), err

    storage = open_storage(f"sqlite:///{tmp_path / 'data' / 'test.db'}", datetime.now(UTC))
    try:
        per_source = Counter(i.item.source_id for i in storage.get_items())
        states = storage.get_source_states()
        total_items = storage.count_items()
        stories = storage.get_stories()
    finally:
        storage.close()

    feed_ids = [f"feed-{n:03d}" for n in range(len(feeds))]
    page_ids = [f"page-{n:03d}" for n in range(len(LISTING_PAGES))]
    yielding = [s for s in feed_ids if per_source[s] > 0]
    share = len(yielding) / len(feed_ids)
    print(
        f"\nreal feeds yielding items: {len(yielding)}/{len(feed_ids)} = {share:.1%}; "
        f"pages: {sum(per_source[p] > 0 for p in page_ids)}/{len(page_ids)}; "
        f"{total_items} items in {len(stories)} stories; run --once took {elapsed:.1f} s"
    )
    assert share >= 0.95
    assert all(per_source[p] > 0 for p in page_ids), {p: per_source[p] for p in page_ids}

    # Every source that yielded nothing has a clear, recorded, reported error.
    for source_id in feed_ids + page_ids:
        if per_source[source_id] == 0:
            state = states[source_id]
            assert state.error_kind and state.error, source_id
            assert source_id in err and state.error_kind in err
    for source_id in per_source:
        assert states[source_id].failures == 0 and states[source_id].last_success is not None

    # The summary table names every source.
    for source_id in feed_ids + page_ids:
        assert source_id in out

    # Every item belongs to exactly one story.
    members = [m.id for s in stories for m in (s.lead, *s.others)]
    assert len(members) == len(set(members)) == total_items

    # feed.xml: strict XML, feedparser without complaint, ≤ 100 items, newest first.
    feed_path = tmp_path / "public" / "feed.xml"
    etree.parse(str(feed_path))
    parsed = feedparser.parse(feed_path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert 0 < len(parsed.entries) <= 100

    # The digest (last complete week: empty, since everything was first seen now) and an
    # explicit window that holds today's items: html, txt and eml all written.
    digests = sorted((tmp_path / "public").glob("digest-*"))
    assert {p.suffix for p in digests} == {".html", ".txt", ".eml"}
    code, out2, err2 = run(
        "--config", str(config), "digest", "--since", "1d", "--until", "2099-01-01"
    )
    assert code == EXIT_OK, err2
    html_path = next(
        Path(line.strip()) for line in out2.splitlines() if line.strip().endswith(".html")
    )
    eml_path = html_path.with_suffix(".eml")
    html = html_path.read_text()
    assert "<script" not in html.lower() and "style=" in html
    msg = email.message_from_bytes(eml_path.read_bytes())
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.get_payload()] == ["text/plain", "text/html"]

    # items --json: one object per line with the agreed fields.
    code, out3, _ = run("--config", str(config), "items", "--json", "--limit", "50")
    rows = [json.loads(line) for line in out3.splitlines()]
    assert code == EXIT_OK and len(rows) == 50
    for row in rows:
        assert {
            "id",
            "source",
            "title",
            "url",
            "published",
            "first_seen",
            "section",
            "story",
        } <= row.keys()

    # A second run adds nothing: once with 304s, once with full bodies re-parsed.
    code, out4, _ = run("--config", str(config), "run", "--once")
    http_server.conditional = False
    code, out5, _ = run("--config", str(config), "run", "--once")
    storage = open_storage(f"sqlite:///{tmp_path / 'data' / 'test.db'}", datetime.now(UTC))
    try:
        assert storage.count_items() == total_items
    finally:
        storage.close()
    assert ", 0 new items," in out4 and ", 0 new items," in out5
