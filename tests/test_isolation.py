"""20 well-behaved sources beside 20 adversarial ones, in one run (the hardening issue's bar):
the run ends within the slowest source's budget + 10 s, every good source's items are stored,
and every bad source has a typed, recorded error."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.storage import open_storage
from tests.httpserver import (
    cloudflare,
    cut,
    gzip_bomb,
    header_bomb,
    nested_gzip_bomb,
    redirect,
    silent,
    static,
    stream_zeros,
    trickle,
)

NOW = datetime(2026, 11, 25, 12, tzinfo=UTC)
FETCH_BUDGET = 6.0


def good_feed(n: int) -> bytes:
    items = "".join(
        f"<item><guid isPermaLink='false'>{n}-{k}</guid><link>https://good{n}.example.org/{k}</link>"
        f"<title>Police training story {n}-{k}</title></item>"
        for k in range(3)
    )
    head = f"<?xml version='1.0'?><rss version='2.0'><channel><title>G{n}</title>"
    return f"{head}{items}</channel></rss>".encode()


REDOS = (
    "<?xml version='1.0'?><rss version='2.0'><channel><title>r</title>"
    + "".join(
        f"<item><title>t{n}</title><author>a@{'a.' * 16_000}a!</author></item>" for n in range(20)
    )
    + "</channel></rss>"
).encode()

ADVERSARIAL = {
    "/bad/silent": silent(12),
    "/bad/trickle": trickle(b"<", every=0.5, limit=12),
    "/bad/500": static(b"oops", "text/plain", status=500),
    "/bad/404": static(b"nope", "text/plain", status=404),
    "/bad/429": static(b"slow down", "text/plain", status=429, headers={"Retry-After": "120"}),
    "/bad/loop": redirect("/bad/loop"),
    "/bad/html": static(b"<html><body><form>Log in</form></body></html>", "text/html"),
    "/bad/empty": static(b"", "application/xml"),
    "/bad/gzip-bomb": gzip_bomb(64 * 1024 * 1024),
    "/bad/nested-bomb": nested_gzip_bomb(64 * 1024 * 1024),
    "/bad/huge": stream_zeros(40 * 1024 * 1024, None),
    "/bad/reset": cut(50, 100_000, reset=True),
    "/bad/truncated": cut(50, 100, reset=False),
    "/bad/headers": header_bomb(200_000),
    "/bad/challenge": cloudflare(
        403, b"<title>Just a moment...</title>", {"cf-mitigated": "challenge"}
    ),
    "/bad/garbage": static(b"\x00\x01\x02 not a feed at all", "application/octet-stream"),
    "/bad/json": static(
        b'{"version": "https://jsonfeed.org/version/1.1", "items": 7}', "application/feed+json"
    ),
    "/bad/nested-divs": static(b"<div>" * 200_000, "text/html"),
    "/bad/redos": static(REDOS, "application/rss+xml"),
    "/bad/ftp-redirect": redirect("ftp://example.org/feed"),
}


def test_twenty_good_and_twenty_bad_sources(tmp_path, http_server):
    lines = []
    for n in range(20):
        http_server.routes[f"/good/{n}"] = static(good_feed(n), "application/rss+xml")
        lines.append(
            f"  - {{id: good-{n:02d}, name: G{n}, url: '{http_server.url(f'/good/{n}')}'}}"
        )
    for n, (path, route) in enumerate(ADVERSARIAL.items()):
        http_server.routes[path] = route
        lines.append(f"  - {{id: bad-{n:02d}, name: 'B {path}', url: '{http_server.url(path)}'}}")
    assert len(lines) == 40
    config_path = tmp_path / "feeds.yaml"
    config_path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, timezone: UTC}\n"
        "storage: {database: 'sqlite:///a.db'}\noutput: {dir: out}\n"
        # Every source is on 127.0.0.1 here, so the per-host limit is lifted: what is tested is
        # isolation and the deadline, not politeness to one host.
        "fetch: {allow_private_network: true, concurrency: 40, per_host: 32, connect_timeout: 1,\n"
        f"        read_timeout: 2, deadline: 4, fetch_budget: {FETCH_BUDGET},\n"
        "        retry_delays: [0.2, 0.5],\n"
        "        max_redirects: 5, parse_timeout: 3}\n"
        "sources:\n" + "\n".join(lines) + "\n"
        "sections:\n  - {id: training, title: Training, rules: [training]}\n"
    )
    config = load_config(config_path)
    storage = open_storage(config.database, NOW)

    async def go():
        async with pipeline.open_client(config) as client:
            return await pipeline.update_sources(config, storage, client, NOW)

    try:
        t0 = time.monotonic()
        results = asyncio.run(go())
        elapsed = time.monotonic() - t0
        by_id = {r.source_id: r for r in results}
        per_source = {}
        for item in storage.get_items():
            per_source[item.item.source_id] = per_source.get(item.item.source_id, 0) + 1
        states = storage.get_source_states()
    finally:
        storage.close()

    assert elapsed <= FETCH_BUDGET + 10, elapsed
    for n in range(20):
        assert by_id[f"good-{n:02d}"].ok and per_source[f"good-{n:02d}"] == 3
    kinds = {}
    for n, path in enumerate(ADVERSARIAL):
        result = by_id[f"bad-{n:02d}"]
        assert result.error is not None, path
        assert f"bad-{n:02d}" in str(result.error), path
        assert "127.0.0.1" in str(result.error) or "redirected from" in str(result.error), path
        assert states[f"bad-{n:02d}"].failures == 1 and states[f"bad-{n:02d}"].error_kind
        assert f"bad-{n:02d}" not in per_source
        kinds[path] = result.error.kind
    assert kinds["/bad/silent"] in {"read_timeout", "deadline"}
    assert kinds["/bad/trickle"] == "deadline"
    assert kinds["/bad/loop"] == "too_many_redirects"
    assert kinds["/bad/html"] == "not_a_feed"
    assert kinds["/bad/empty"] == "empty_body"
    assert kinds["/bad/gzip-bomb"] == kinds["/bad/huge"] == "too_large"
    assert kinds["/bad/challenge"] == "bot_challenge"
    assert kinds["/bad/redos"] == "parse_timeout"
    assert kinds["/bad/ftp-redirect"] == "bad_url"
    # 429 with Retry-After: 120 s is under the 1 h interval, so the interval wins here.
    assert states["bad-04"].next_due is not None and states["bad-04"].next_due >= NOW
    print(f"\n40 sources in {elapsed:.1f} s; kinds: {sorted(set(kinds.values()))}")
