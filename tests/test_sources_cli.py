"""`aggregator sources`: health from a store filled through the pipeline, test, add."""

from __future__ import annotations

import asyncio
import difflib
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import pipeline
from aggregator.cli import EXIT_CONFIG, EXIT_OK, EXIT_SOURCES, EXIT_USAGE, main
from aggregator.config import load_config
from aggregator.storage import open_storage
from aggregator.types import Config
from tests.httpserver import static
from tests.test_parse import police1_like

HEAD = """\
# My newsletter: the editor's own notes.
newsletter: {title: T, link: 'https://t.example.org/', description: d, timezone: UTC}
storage: {database: 'sqlite:///data/a.db'}   # next to this file
output: {dir: out}
fetch: {allow_private_network: true, connect_timeout: 1, read_timeout: 1, deadline: 3}

sources:
"""
TAIL = """
# Sections, in digest order.
sections:
  - {id: training, title: Training, rules: [training, train]}
  - {id: policy, title: Policy & Law, rules: [policy, bill]}
"""


def rss(*items: tuple[str, str], title: str = "Feed") -> bytes:
    body = "".join(
        f"<item><guid>{g}</guid><link>https://e.org/{g}</link><title>{t}</title>"
        "<pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item>"
        for g, t in items
    )
    return (
        f"<?xml version='1.0'?><rss version='2.0'><channel><title>{title}</title>"
        f"<link>https://e.org/</link>{body}</channel></rss>"
    ).encode()


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def write_config(tmp_path: Path, server, sources: list[tuple[str, str]]) -> Path:
    """Block-style sources with a comment above each, as an editor writes them."""
    blocks = [
        f"  # {sid}: a source the editor added by hand.\n"
        f"  - id: {sid}\n    name: {sid.title()}\n    url: {server.url(path)}\n"
        for sid, path in sources
    ]
    path = tmp_path / "feeds.yaml"
    path.write_text(HEAD + "\n".join(blocks) + TAIL)
    return path


def update(config: Config, storage, now: datetime, *ids: str) -> None:
    async def go():
        async with pipeline.open_client(config) as client:
            return await pipeline.update_sources(
                config, storage, client, now, source_ids=list(ids) or None, only_due=False
            )

    asyncio.run(go())


# --- status ---------------------------------------------------------------------------------


@pytest.fixture
def history(tmp_path, http_server):
    """A store with 45 days of history: steady, dried-up, empty, failing and unfetched sources."""
    now = datetime.now(UTC)
    path = write_config(
        tmp_path,
        http_server,
        [
            ("steady", "/steady.xml"),
            ("dried", "/dried.xml"),
            ("empty", "/empty.xml"),
            ("gone", "/gone.xml"),
            ("flaky", "/flaky.xml"),
            ("fresh", "/fresh.xml"),
        ],
    )
    config = load_config(path)
    storage = open_storage(config.database, now)
    try:
        for day in range(45, -1, -5):
            when = now - timedelta(days=day, hours=1)
            fresh = [(f"{day}-{n}", f"Police training story {day}-{n}") for n in range(3)]
            http_server.routes["/steady.xml"] = static(rss(*fresh))
            if day >= 9:  # then the page was redesigned: the same old items, nothing new
                http_server.routes["/dried.xml"] = static(rss(*fresh))
            http_server.routes["/empty.xml"] = static(rss())
            update(config, storage, when, "steady", "dried", "empty")
        for n in range(3):  # three failures in a row
            update(config, storage, now - timedelta(hours=3 - n), "gone")
        http_server.routes["/flaky.xml"] = static(rss(("f1", "Police training")))
        update(config, storage, now - timedelta(hours=2), "flaky")
        http_server.routes["/flaky.xml"] = static(b"oops", "text/plain", status=503)
        update(config, storage, now - timedelta(hours=1), "flaky")
    finally:
        storage.close()
    return path


def test_status_orders_worst_first_and_flags_yield_drops_and_streaks(history):
    code, out, err = run("--config", str(history), "sources", "--json")
    assert code == EXIT_OK, err
    rows = [json.loads(line) for line in out.splitlines()]
    by_id = {r["id"]: r for r in rows}
    assert [r["id"] for r in rows] == ["dried", "empty", "gone", "fresh", "steady", "flaky"]
    assert [r["status"] for r in rows] == ["broken", "broken", "degraded", "new", "ok", "ok"]

    dried = by_id["dried"]
    assert "yield_drop" in dried["flags"] and dried["last_status"] == 200
    assert dried["failures"] == 0 and dried["items_7d"] == 0 and dried["usual_7d"] >= 3
    assert "usually about" in dried["notes"][0]
    assert "no_entries" in by_id["empty"]["flags"] and by_id["empty"]["items_30d"] == 0

    gone = by_id["gone"]
    assert gone["failures"] == 3 and gone["last_status"] == 404 and "degraded" in gone["flags"]
    assert gone["error_kind"] == "http_status" and "404" in gone["notes"][0]

    assert by_id["flaky"]["failures"] == 1 and by_id["flaky"]["flags"] == ["failing"]
    assert by_id["steady"]["flags"] == [] and by_id["steady"]["items_7d"] == 6
    assert by_id["steady"]["items_30d"] == 18 and by_id["steady"]["next_due"]
    assert by_id["fresh"]["last_attempt"] is None

    code, out, err = run("--config", str(history), "sources")
    assert code == EXIT_OK, err
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["source", "kind", "status"]
    assert lines[1].split()[:3] == ["dried", "auto", "broken"]
    assert lines[3].split()[:3] == ["gone", "auto", "degraded"] and " 404 " in lines[3]
    assert "gone (degraded): 3 failure(s) in a row: http_status: HTTP 404" in out
    assert "dried (broken): 0 new items in 7 days; usually about" in out
    assert "flaky (ok): 1 failure(s) in a row: http_status: HTTP 503" in out
    assert lines[-1] == "6 sources: 2 broken, 1 degraded, 1 new, 2 ok"


def test_a_source_that_fails_for_days_is_stale(tmp_path, http_server):
    now = datetime.now(UTC)
    path = write_config(tmp_path, http_server, [("s", "/s.xml")])
    config = load_config(path)
    storage = open_storage(config.database, now)
    try:
        http_server.routes["/s.xml"] = static(rss(("a", "Police training")))
        update(config, storage, now - timedelta(hours=10))
        http_server.routes["/s.xml"] = static(b"", status=500)
        update(config, storage, now - timedelta(hours=1))
        [health] = pipeline.source_health(config, storage, now)
    finally:
        storage.close()
    assert health.status == "stale" and health.flags == ("failing", "stale")


# --- sources test -----------------------------------------------------------------------------


def minimal_config(tmp_path: Path, http_server) -> Path:
    return write_config(tmp_path, http_server, [("existing", "/existing.xml")])


def test_sources_test_a_feed(tmp_path, http_server):
    http_server.routes["/feed.xml"] = static(
        rss(("1", "Officers train in tactics"), ("2", "Council passes policy bill"))
    )
    config = minimal_config(tmp_path, http_server)
    code, out, err = run("--config", str(config), "sources", "test", http_server.url("/feed.xml"))
    assert code == EXIT_OK, err
    assert "format: rss20 (kind: feed), title: Feed" in out
    assert "2 items (nothing was stored)" in out
    assert "2026-11-24  training    Officers train in tactics" in out
    assert "policy      Council passes policy bill" in out and "https://e.org/2" in out
    assert not (tmp_path / "data" / "a.db").exists() or _count(config) == 0


def _count(config: Path) -> int:
    loaded = load_config(config)
    storage = open_storage(loaded.database, datetime.now(UTC))
    try:
        return storage.count_items()
    finally:
        storage.close()


def test_sources_test_a_page(tmp_path, http_server):
    http_server.routes["/topic/"] = static(police1_like(), "text/html")
    config = minimal_config(tmp_path, http_server)
    url = http_server.url("/topic/")
    code, out, err = run("--config", str(config), "sources", "test", url, "--kind", "page")
    assert code == EXIT_OK, err
    assert "format: page (kind: page)" in out and "6 items" in out
    assert "Officers learn new de-escalation skill 1" in out
    assert http_server.url("/training/story-1") in out
    assert "no feed found for this page" in out


HOME = b"""<!doctype html><html><head><title>Example News</title>
<link rel="alternate" type="application/rss+xml" title="All" href="/feeds/all.xml">
<link rel="alternate" type="application/atom+xml" href="missing.atom">
<link rel="stylesheet" href="/site.css">
</head><body><h1>Welcome</h1><p>Nothing to list here.</p></body></html>"""


def test_sources_test_a_home_page_discovers_its_feeds(tmp_path, http_server):
    http_server.routes["/"] = static(HOME, "text/html")
    http_server.routes["/feeds/all.xml"] = static(rss(("1", "Police training"), title="All"))
    http_server.routes["/rss"] = static(rss(("1", "Police training"), title="Guessed"))
    config = minimal_config(tmp_path, http_server)
    code, out, err = run("--config", str(config), "sources", "test", http_server.url("/"))
    assert code == EXIT_SOURCES
    assert "not_a_feed" in err and err.count("\n") == 1 and "Traceback" not in err
    assert "feeds found for this page:" in out
    all_xml = http_server.url("/feeds/all.xml")
    assert f"{all_xml}  (advertised by the page) rss20, 1 entries, title: All" in out
    missing = http_server.url("/missing.atom")
    assert f"{missing}  (advertised by the page) fails: http_status: HTTP 404" in out
    assert f"{http_server.url('/rss')}  (at a common feed path) rss20" in out
    assert "/feed.xml" not in out  # a probed path that 404s is not listed
    assert f"to add it: aggregator sources add {all_xml}" in out


def test_sources_test_refuses_a_non_http_url(tmp_path, http_server):
    config = minimal_config(tmp_path, http_server)
    code, _, err = run("--config", str(config), "sources", "test", "file:///etc/passwd")
    assert code == EXIT_USAGE and "not an http" in err and err.count("\n") == 1


# --- sources add ------------------------------------------------------------------------------


def only_insertion(before: str, after: str) -> str:
    """The text inserted into `before` to make `after`; fails on any other change."""
    ops = difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes()
    changes = [op for op in ops if op[0] != "equal"]
    assert len(changes) == 1 and changes[0][0] == "insert", changes
    _, _, _, j1, j2 = changes[0]
    return after[j1:j2]


def test_add_appends_a_block_and_keeps_the_editors_text(tmp_path, http_server):
    http_server.routes["/new.xml"] = static(rss(("1", "Police training"), title="New Feed"))
    config = minimal_config(tmp_path, http_server)
    before = config.read_text()
    url = http_server.url("/new.xml")
    code, out, err = run("--config", str(config), "sources", "add", url, "--section", "policy")
    assert code == EXIT_OK, err
    assert "added source '127-0-0-1'" in out and "aggregator fetch --source 127-0-0-1" in out
    after = config.read_text()
    block = only_insertion(before, after)
    assert block.strip().startswith("# Added ") and "with `aggregator sources add`" in block
    assert block.endswith(
        f"\n  - id: 127-0-0-1\n    name: New Feed\n    url: {url}\n    kind: feed\n"
        "    section: policy\n"
    )
    assert after.index(block) < after.index("# Sections, in digest order.")
    source = load_config(config).source("127-0-0-1")
    assert (source.kind, source.section, source.name) == ("feed", "policy", "New Feed")
    assert list(tmp_path.glob(".feeds.yaml.*")) == []

    # A second feed on the same host gets the next free id; flow-style lists stay flow.
    code, out, _ = run("--config", str(config), "sources", "add", url + "?page=2", "--name", "X")
    assert code == EXIT_OK and "'127-0-0-1-2'" in out


def test_add_to_a_flow_style_list(tmp_path, http_server):
    http_server.routes["/new.xml"] = static(rss(("1", "Police training")))
    path = tmp_path / "feeds.yaml"
    path.write_text(
        HEAD + "  - {id: a, name: A, url: 'https://a.example.org/'}  # keep me\n" + TAIL
    )
    before = path.read_text()
    url = http_server.url("/new.xml")
    code, _, err = run("--config", str(path), "sources", "add", url, "--id", "b", "--name", "B: x")
    assert code == EXIT_OK, err
    block = only_insertion(before, path.read_text())
    assert block.endswith(f'\n  - {{id: b, name: "B: x", url: {url}, kind: feed}}\n')
    assert block.startswith("  # Added ") and block.count("\n") == 2


def test_add_refuses_duplicates(tmp_path, http_server):
    config = minimal_config(tmp_path, http_server)
    before = config.read_bytes()
    existing = http_server.url("/existing.xml")
    for argv, needle in [
        ([existing], "already in"),
        ([existing.replace("http://", "HTTP://") + "/"], "as source 'existing'"),
        ([http_server.url("/other.xml"), "--id", "existing"], "id 'existing' is already"),
        ([http_server.url("/other.xml"), "--section", "nope"], "unknown section"),
    ]:
        code, _, err = run("--config", str(config), "sources", "add", *argv)
        assert code == EXIT_USAGE, argv
        assert needle in err and err.count("\n") == 1, err
    assert config.read_bytes() == before


def test_add_rolls_back_an_edit_that_does_not_validate(tmp_path, http_server):
    http_server.routes["/new.xml"] = static(rss(("1", "Police training")))
    config = minimal_config(tmp_path, http_server)
    before = config.read_bytes()
    url = http_server.url("/new.xml")
    code, _, err = run("--config", str(config), "sources", "add", url, "--id", "Bad Id!")
    assert code == EXIT_CONFIG
    assert f"{config}:" in err and "sources[1].id" in err and "was not changed" in err
    assert "Traceback" not in err
    assert config.read_bytes() == before
    assert list(tmp_path.glob(".feeds.yaml.*")) == []


def test_add_refuses_a_url_that_does_not_work(tmp_path, http_server):
    config = minimal_config(tmp_path, http_server)
    before = config.read_bytes()
    code, _, err = run("--config", str(config), "sources", "add", http_server.url("/nope.xml"))
    assert code == EXIT_SOURCES and "http_status" in err and "was not added" in err
    assert config.read_bytes() == before
