"""The editor's source tools: source health, trying a URL, finding a site's feeds.

Part of the composition root (see `aggregator.pipeline`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from aggregator._budget import BudgetExceeded
from aggregator.exceptions import ParseError, SourceError
from aggregator.fetch import Resolver, fetch_source, system_resolver
from aggregator.parse import common_feed_urls, discover_feeds, parse_fetched
from aggregator.pipeline._prepare import Prepared, _worker_classifier, prepare_items
from aggregator.pipeline._update import _parse_pool
from aggregator.storage import StorageType
from aggregator.types import (
    DEFAULT_MAX_ITEMS_PER_RUN,
    Config,
    Fetched,
    Item,
    Placement,
    Section,
    Source,
    SourceKind,
    SourceState,
    Topic,
    Validators,
)

# --- the editor's source tools: health, trying a URL, finding a site's feeds --------------

DEGRADED_FAILURES = 3  # failures in a row before a source is "degraded" (never disabled)
STALE_INTERVALS = 3  # no success for this many intervals: "stale"
YIELD_RECENT = timedelta(days=7)  # the window a source's yield is judged on ...
YIELD_BASELINE = timedelta(days=60)  # ... against its usual rate over this longer window
YIELD_MIN_HISTORY = timedelta(days=7)  # less baseline than this: no judgement yet
YIELD_MIN_EXPECTED = 3.0  # judge only sources that usually bring >= 3 new items a week
YIELD_DROP_FACTOR = 4.0  # "far below": fewer than a quarter of the usual number
HEALTH_ORDER = ("broken", "degraded", "stale", "new", "ok")


@dataclass(frozen=True, slots=True)
class SourceHealth:
    """One source's standing, from its stored fetch state and the items it brought."""

    source: Source
    state: SourceState | None
    status: str  # one of HEALTH_ORDER
    flags: tuple[str, ...]  # every condition that holds: yield_drop, no_entries, degraded ...
    notes: tuple[str, ...]  # the reasons, in words
    items_7d: int
    items_30d: int
    expected_7d: float | None  # the usual number of new items per 7 days; None: too young


def _usual_weekly_yield(
    storage: StorageType,
    sources: Sequence[Source],
    spans: dict[str, tuple[datetime, datetime]],
    now: datetime,
) -> dict[str, float]:
    """New items per 7 days over [now - 60 d, now - 7 d), from when each source began.

    A source's first day is left out: its first fetch stores the whole backlog of the feed
    or page at once, which says nothing about how much it publishes.
    """
    recent_start, window_start = now - YIELD_RECENT, now - YIELD_BASELINE
    counts = storage.count_items_by_source(since=window_start, until=recent_start)
    usual: dict[str, float] = {}
    for source in sources:
        if source.id not in spans:
            continue
        start = max(window_start, spans[source.id][0] + timedelta(days=1))
        history = recent_start - start
        if history < YIELD_MIN_HISTORY:
            continue
        if start == window_start:
            n = counts.get(source.id, 0)
        else:
            n = storage.count_items_by_source(
                since=start, until=recent_start, source_id=source.id
            ).get(source.id, 0)
        usual[source.id] = n * (YIELD_RECENT / history)
    return usual


def source_health(config: Config, storage: StorageType, now: datetime) -> list[SourceHealth]:
    """Every configured source's health, worst first (HEALTH_ORDER), config order within.

    broken    the source answers, but its yield collapsed: fewer than a quarter of its usual
              new items in the last 7 days (judged once it usually brings >= 3 a week), or
              its last successful fetch (HTTP 200) held no entries at all
    degraded  3 or more failures in a row (it keeps being retried, with backoff)
    stale     no success for more than 3 x its interval (or attempted, never succeeded)
    new       never fetched
    """
    states = storage.get_source_states()
    spans = storage.get_item_spans()
    recent = storage.count_items_by_source(since=now - YIELD_RECENT)
    month = storage.count_items_by_source(since=now - timedelta(days=30))
    usual = _usual_weekly_yield(storage, config.sources, spans, now)
    out: list[SourceHealth] = []
    for source in config.sources:
        state = states.get(source.id)
        flags: list[str] = []
        notes: list[str] = []
        n7, expected = recent.get(source.id, 0), usual.get(source.id)
        usual_enough = expected is not None and expected >= YIELD_MIN_EXPECTED
        if usual_enough and expected is not None and n7 < expected / YIELD_DROP_FACTOR:
            flags.append("yield_drop")
            notes.append(f"{n7} new items in 7 days; usually about {expected:.0f}")
        if state is not None and state.last_success is not None and state.last_status == 200:
            last_seen = spans[source.id][1] if source.id in spans else None
            if last_seen is None or last_seen < state.last_success:
                flags.append("no_entries")
                notes.append("the last successful fetch held no entries")
        if state is not None and state.failures:
            flags.append("degraded" if state.failures >= DEGRADED_FAILURES else "failing")
            notes.append(f"{state.failures} failure(s) in a row: {state.error_kind}: {state.error}")
        if state is not None and state.last_attempt is not None:
            since_success = None if state.last_success is None else now - state.last_success
            if since_success is None or since_success > source.interval * STALE_INTERVALS:
                flags.append("stale")
                notes.append(
                    "never fetched successfully"
                    if since_success is None
                    else f"no success for {_span(since_success)}"
                )
        if "degraded" in flags:
            status = "degraded"
        elif "yield_drop" in flags or "no_entries" in flags:
            status = "broken"
        elif "stale" in flags:
            status = "stale"
        elif state is None or state.last_attempt is None:
            status = "new"
        else:
            status = "ok"
        out.append(
            SourceHealth(
                source=source,
                state=state,
                status=status,
                flags=tuple(flags),
                notes=tuple(notes),
                items_7d=n7,
                items_30d=month.get(source.id, 0),
                expected_7d=expected,
            )
        )
    out.sort(key=lambda h: HEALTH_ORDER.index(h.status))  # stable: config order within
    return out


def _span(delta: timedelta) -> str:
    hours = delta.total_seconds() / 3600
    return f"{hours:.0f} h" if hours < 48 else f"{hours / 24:.0f} days"


@dataclass(frozen=True, slots=True)
class FeedCandidate:
    """A feed found for a page: advertised by a <link> tag, or answering at a common path."""

    url: str
    found_by: str  # "link" or "path"
    format: str | None = None
    title: str | None = None
    entries: int = 0
    error: SourceError | None = None


@dataclass(frozen=True, slots=True)
class UrlProbe:
    """What the pipeline would make of one URL, without storing anything."""

    url: str
    kind: SourceKind  # as asked
    final_url: str | None = None  # after redirects
    format: str | None = None  # rss20, atom10, jsonfeed11, page, ...
    title: str | None = None
    items: tuple[tuple[Item, Placement], ...] = ()
    warnings: tuple[str, ...] = ()
    error: SourceError | None = None
    feeds: tuple[FeedCandidate, ...] = ()

    @property
    def detected_kind(self) -> SourceKind | None:
        if self.format is None:
            return None
        return "page" if self.format == "page" else "feed"


def _parse_and_prepare(
    fetched: Fetched, source: Source, sections: tuple[Section, ...], topic: Topic
) -> tuple[str, str | None, Prepared]:
    # Runs in a parse worker, under the same budget as a run. Parsed once for its format and
    # title, then through prepare_items, the very path a run takes (it parses again; a
    # one-URL trial can afford that).
    parsed = parse_fetched(fetched, source.kind, source.selectors)
    classifier = _worker_classifier(sections, topic)
    prepared = prepare_items(fetched, source, classifier, DEFAULT_MAX_ITEMS_PER_RUN)
    return parsed.format, parsed.title, prepared


async def probe_url(
    config: Config,
    client: httpx.AsyncClient,
    url: str,
    kind: SourceKind,
    now: datetime,
    *,
    source_id: str = "test",
    section: str | None = None,
    discover: bool = True,
    resolver: Resolver = system_resolver,
) -> UrlProbe:
    """Fetch, parse, normalize and classify one URL as a source would be; store nothing.

    When the answer is an HTML page (read as a page, or not readable as a feed), the page's
    advertised feeds and the site's common feed paths are tried too (`feeds`): advertised
    ones are always listed (with their error if they fail), probed paths only if they work.
    """
    source = Source(id=source_id, name=source_id, url=url, kind=kind, section=section)
    try:
        fetched = await fetch_source(
            client, source, Validators(), config.fetch, resolver=resolver, now=now
        )
    except SourceError as e:
        return UrlProbe(url=url, kind=kind, error=e)
    error: SourceError | None = None
    fmt: str | None = None
    title: str | None = None
    prepared = Prepared((), 0, ())
    pool = _parse_pool(config)
    try:
        fmt, title, prepared = await pool.run_async(
            _parse_and_prepare, fetched, source, config.sections, config.topic
        )
    except SourceError as e:
        error = e
    except BudgetExceeded as e:
        error = ParseError(source_id, fetched.url, e.kind, e.message)
    except RecursionError as e:
        error = ParseError(
            source_id, fetched.url, "parse_error", f"document too deeply nested: {e}"
        )
    finally:
        await asyncio.to_thread(pool.close)
    warnings = list(prepared.warnings)
    dated = [i.published for i, _ in prepared.items if i.published is not None]
    if dated and now - max(dated) > timedelta(days=30):
        warnings.append(f"the newest entry is {(now - max(dated)).days} days old")
    feeds: tuple[FeedCandidate, ...] = ()
    if discover and (error is not None or fmt == "page"):
        feeds = await _discover(config, client, fetched, resolver, now)
    return UrlProbe(
        url=url,
        kind=kind,
        final_url=fetched.url,
        format=fmt,
        title=title,
        items=prepared.items,
        warnings=tuple(warnings),
        error=error,
        feeds=feeds,
    )


async def _discover(
    config: Config, client: httpx.AsyncClient, page: Fetched, resolver: Resolver, now: datetime
) -> tuple[FeedCandidate, ...]:
    advertised = discover_feeds(page.content, page.url)
    guessed = [u for u in common_feed_urls(page.url) if u not in advertised]
    limit = asyncio.Semaphore(max(1, config.fetch.per_host))

    async def one(url: str, found_by: str) -> tuple[FeedCandidate, str | None]:
        source = Source(id="discovered", name="discovered", url=url, kind="feed")
        try:
            async with limit:
                fetched = await fetch_source(
                    client, source, Validators(), config.fetch, resolver=resolver, now=now
                )
            parsed = await asyncio.to_thread(parse_fetched, fetched, "feed", None)
        except SourceError as e:
            return FeedCandidate(url, found_by, error=e), None
        except RecursionError:
            return FeedCandidate(url, found_by), None
        candidate = FeedCandidate(
            url, found_by, format=parsed.format, title=parsed.title, entries=len(parsed.entries)
        )
        return candidate, fetched.url

    results = await asyncio.gather(
        *(one(u, "link") for u in advertised), *(one(u, "path") for u in guessed)
    )
    found: list[FeedCandidate] = []
    finals: set[str] = set()
    for candidate, final in results:
        if candidate.found_by == "path" and (candidate.error is not None or final in finals):
            continue  # a guess that failed, or another address of a feed already listed
        if final is not None:
            finals.add(final)
        found.append(candidate)
    return tuple(found)
