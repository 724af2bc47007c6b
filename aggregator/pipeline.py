"""The composition root: the one place that wires the stages and the store together.

    Source -fetch-> Fetched -parse-> Entry -normalize-> Item -classify-> Placement
          -dedupe-> story -store-> ... -digest-> Digest -render-> files

Everything it needs comes in as arguments: the config, a storage, an HTTP client and `now`
(reader's `make_reader(..., _storage=...)` pattern), so tests pass fakes and a frozen clock.
A failing source becomes a SourceResult with its error; the run goes on. Nothing here
formats messages for people or exits: that is cli.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import httpx

from aggregator._budget import BudgetExceeded, WorkerPool
from aggregator._version import __version__
from aggregator.classify import Classifier, make_classifier
from aggregator.dedupe import assign_stories, disambiguate_guids, item_keys
from aggregator.digest import last_complete_week, latest_stories, select_digest
from aggregator.exceptions import FetchError, ParseError, SourceError, StorageError
from aggregator.fetch import Resolver, fetch_source, make_client, system_resolver
from aggregator.normalize import normalize_entry, truncated_fields
from aggregator.output import write_outputs
from aggregator.parse import common_feed_urls, discover_feeds, parse_fetched
from aggregator.render import make_environment, render_digest, render_feed
from aggregator.storage import StorageType
from aggregator.types import (
    DEFAULT_MAX_ITEMS_PER_RUN,
    Config,
    Digest,
    Fetched,
    Item,
    Placement,
    Section,
    Source,
    SourceKind,
    SourceResult,
    SourceState,
    Topic,
    Validators,
)

MAX_BACKOFF = timedelta(hours=24)
FEED_FILE = "feed.xml"

Progress = Callable[[SourceResult], None]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A source's parsed, normalized and classified items, ready to store."""

    items: tuple[tuple[Item, Placement], ...]
    skipped: int
    warnings: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DigestFiles:
    digest: Digest
    paths: tuple[Path, ...]


@dataclass(slots=True)
class RunReport:
    results: list[SourceResult] = field(default_factory=list)
    feed: Path | None = None
    digest: DigestFiles | None = None

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if not r.ok]


# --- update: fetch, parse, normalize, classify, dedupe, store ------------------------------


def is_due(state: SourceState | None, now: datetime) -> bool:
    return state is None or state.next_due is None or state.next_due <= now


def backoff(interval: timedelta, failures: int) -> timedelta:
    """Delay before retrying a source that failed `failures` times in a row."""
    delay: timedelta = interval * (2 ** max(0, failures - 1))
    return min(MAX_BACKOFF, delay)


def prepare_items(fetched: Fetched, source: Source, classifier: Classifier, limit: int) -> Prepared:
    """Fetched -> classified Items (pure, CPU-bound: run it off the event loop)."""
    parsed = parse_fetched(fetched, source.kind, source.selectors)
    items: list[Item] = []
    skipped = 0
    truncated: Counter[str] = Counter()
    for entry in parsed.entries:
        item = normalize_entry(entry, source.id)
        if item is None:
            skipped += 1
        else:
            items.append(item)
            truncated.update(truncated_fields(entry, item))
    warnings = list(parsed.warnings)
    if skipped:
        warnings.append(f"skipped {skipped} entries with no title, link or text")
    if truncated:
        plural = {"title": "titles", "summary": "summaries"}
        counts = ", ".join(f"{n} {plural[f]}" for f, n in sorted(truncated.items()))
        warnings.append(f"truncated oversized fields: {counts}")
    items = disambiguate_guids(items)
    if len(items) > limit:
        # Keep the newest: a 10,000-item archive feed must not flood one run.
        dated = sorted(
            items, key=lambda i: i.published or datetime.min.replace(tzinfo=UTC), reverse=True
        )
        warnings.append(f"kept the newest {limit} of {len(items)} entries")
        items = dated[:limit]
    placed = tuple((item, classifier.classify(item, source.section)) for item in items)
    return Prepared(items=placed, skipped=skipped, warnings=tuple(warnings))


def store_items(
    storage: StorageType,
    source: Source,
    prepared: Prepared,
    fetched: Fetched,
    state: SourceState,
    now: datetime,
) -> tuple[int, int]:
    """Write a source's new items and its fetch state in one transaction.

    Returns (new, seen). Items already stored (same GUID in the source) keep their
    first-seen time and placement; only their last-seen time moves.
    """
    items = [item for item, _ in prepared.items]
    with storage.transaction() as tx:
        existing = tx.get_item_ids(source.id, [i.guid for i in items])
        new = [(i, p) for i, p in prepared.items if i.guid not in existing]
        if existing:
            tx.touch_items(list(existing.values()), now)
        keys = sorted({k for item, _ in new for k in item_keys(item)})
        known = tx.get_story_ids(keys) if keys else {}
        refs = assign_stories([i for i, _ in new], known)
        new_story: dict[int, int] = {}
        for (item, placement), ref in zip(new, refs, strict=True):
            if ref.story_id is not None:
                story_id = ref.story_id
            else:
                assert ref.group is not None
                if ref.group not in new_story:
                    new_story[ref.group] = tx.add_story(now)
                story_id = new_story[ref.group]
            tx.add_item(item, story_id, placement, now)
        tx.set_source_state(
            dataclasses.replace(
                state,
                validators=fetched.validators,
                last_attempt=now,
                last_success=now,
                last_status=fetched.status,
                failures=0,
                error_kind=None,
                error=None,
                next_due=now + source.interval,
            )
        )
    return len(new), len(existing)


def _failed(
    storage: StorageType, state: SourceState, source: Source, error: SourceError, now: datetime
) -> SourceResult:
    """Record a source's failure (streak, backoff, reason) and make it a result."""
    # If the store is what failed, the result still carries the reason.
    with contextlib.suppress(StorageError):
        storage.set_source_state(_failed_state(state, source, error, now))
    return SourceResult(source.id, source.url, error=error)


def _retry_after(error: SourceError) -> timedelta:
    seconds = error.retry_after if isinstance(error, FetchError) else None
    return timedelta(seconds=seconds or 0)


def _failed_state(
    state: SourceState, source: Source, error: SourceError, now: datetime
) -> SourceState:
    failures = state.failures + 1
    return dataclasses.replace(
        state,
        last_attempt=now,
        # A parse error always follows a 200: the server answered, the bytes were bad.
        last_status=200 if isinstance(error, ParseError) else error.http_status,
        failures=failures,
        error_kind=error.kind,
        error=error.message,
        # A server's Retry-After (429/503) is a floor under our own backoff.
        next_due=now + max(backoff(source.interval, failures), _retry_after(error)),
    )


class _HostLimits:
    """At most `per_host` requests to one host at a time, `total` overall."""

    def __init__(self, total: int, per_host: int) -> None:
        self._total = asyncio.Semaphore(max(1, total))
        self._per_host_n = max(1, per_host)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    def host(self, url: str) -> asyncio.Semaphore:
        host = (urlsplit(url).hostname or "").lower()
        return self._hosts.setdefault(host, asyncio.Semaphore(self._per_host_n))

    @property
    def total(self) -> asyncio.Semaphore:
        return self._total


# --- the parse budget: prepare_items in a killable worker process (aggregator/_budget.py) --


def _prepare_in_worker(
    fetched: Fetched, source: Source, sections: tuple[Section, ...], topic: Topic, limit: int
) -> Prepared:
    """prepare_items as a parse worker runs it: the classifier is compiled once per worker."""
    return prepare_items(fetched, source, _worker_classifier(sections, topic), limit)


@functools.lru_cache(maxsize=4)
def _worker_classifier(sections: tuple[Section, ...], topic: Topic) -> Classifier:
    return make_classifier(sections, topic)


def _parse_pool(config: Config) -> WorkerPool:
    """This run's parse workers (started on first use, so a run of 304s starts none)."""
    return WorkerPool(
        config.fetch.parse_workers or None,
        timeout=config.fetch.parse_timeout,
        memory_bytes=config.fetch.parse_memory_mb * 1024 * 1024,
        preload=(__name__,),  # the fork server imports the stages once for every worker
    )


async def update_sources(
    config: Config,
    storage: StorageType,
    client: httpx.AsyncClient,
    now: datetime,
    *,
    source_ids: Sequence[str] | None = None,
    only_due: bool = True,
    progress: Progress | None = None,
    resolver: Resolver = system_resolver,
) -> list[SourceResult]:
    """Fetch the (due) sources concurrently and store what they yield; one result each.

    A source's failure is recorded in its state (failure streak, backoff) and returned as
    a result with the error; its stored items are not touched.
    """
    states = storage.get_source_states()
    wanted = set(source_ids) if source_ids is not None else None
    sources = [
        s
        for s in config.sources
        if (wanted is None or s.id in wanted) and (not only_due or is_due(states.get(s.id), now))
    ]
    pool = _parse_pool(config)  # closed below, after the last source
    limits = _HostLimits(config.fetch.concurrency, config.fetch.per_host)

    async def one(source: Source) -> SourceResult:
        state = states.get(source.id) or SourceState(source_id=source.id)
        try:
            async with limits.total, limits.host(source.url):
                fetched = await fetch_source(
                    client, source, state.validators, config.fetch, resolver=resolver, now=now
                )
            if fetched.not_modified:
                store_items(storage, source, Prepared((), 0, ()), fetched, state, now)
                return SourceResult(source.id, fetched.url, not_modified=True)
            try:
                prepared = await pool.run_async(
                    _prepare_in_worker,
                    fetched,
                    source,
                    config.sections,
                    config.topic,
                    DEFAULT_MAX_ITEMS_PER_RUN,
                )
            except BudgetExceeded as e:  # out of time or memory, or the worker died
                raise ParseError(source.id, fetched.url, e.kind, e.message) from e
            new, seen = store_items(storage, source, prepared, fetched, state, now)
            return SourceResult(
                source.id,
                fetched.url,
                new_items=new,
                seen_items=seen,
                skipped=prepared.skipped,
                warnings=prepared.warnings,
            )
        except SourceError as e:
            return _failed(storage, state, source, e, now)
        except RecursionError as e:
            # A pathological document (deeply nested markup) costs its source only.
            detail = f"document too deeply nested: {e}"
            return _failed(
                storage,
                state,
                source,
                ParseError(source.id, source.url, "parse_error", detail),
                now,
            )
        except StorageError as e:
            # A busy or full database fails this source's transaction (nothing of it was
            # written); the other sources still get their turn.
            return _failed(
                storage,
                state,
                source,
                SourceError(source.id, source.url, "store_error", str(e)),
                now,
            )

    results: list[SourceResult] = []
    try:
        for task in asyncio.as_completed([one(s) for s in sources]):
            result = await task
            results.append(result)
            if progress is not None:
                progress(result)
    finally:
        await asyncio.to_thread(pool.close)
    order = {s.id: n for n, s in enumerate(config.sources)}
    results.sort(key=lambda r: order[r.source_id])
    return results


def open_client(
    config: Config, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The run's HTTP client, its User-Agent naming us and the newsletter that polls."""
    settings = config.fetch
    if not settings.user_agent:
        settings = dataclasses.replace(
            settings, user_agent=f"aggregator/{__version__} (+{config.newsletter.link})"
        )
    return make_client(settings, transport)


# --- outputs ------------------------------------------------------------------------------


def feed_self_url(config: Config) -> str:
    return urljoin(config.newsletter.link.rstrip("/") + "/", FEED_FILE)


def _source_maps(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    return {s.id: s.name for s in config.sources}, {s.id: s.url for s in config.sources}


def build_feed(
    config: Config, storage: StorageType, now: datetime, out_dir: Path | None = None
) -> Path:
    """Write <out_dir>/feed.xml: the latest on-topic stories, newest first."""
    limit = config.digest.feed_items
    # Off-topic stories are dropped after the query, so ask for a margin over the limit.
    stories = latest_stories(storage.get_stories(limit=limit * 4), limit)
    names, urls = _source_maps(config)
    xml = render_feed(
        stories,
        config.newsletter,
        config.sections,
        names,
        urls,
        self_url=feed_self_url(config),
        now=now,
        limit=limit,
    )
    out = out_dir or config.output_dir
    return write_outputs(out, {FEED_FILE: xml})[0]


def digest_basename(start: datetime, end: datetime, timezone: str) -> str:
    """digest-2026-W48 for a calendar week, else digest-<start>_<end> in local time."""
    zone = ZoneInfo(timezone)
    s, e = start.astimezone(zone), end.astimezone(zone)
    if (
        s.weekday() == 0
        and s.time().isoformat() == "00:00:00"
        and e == (s + timedelta(days=7)).astimezone(zone).replace(hour=0)
    ):
        year, week, _ = s.isocalendar()
        return f"digest-{year}-W{week:02d}"
    return f"digest-{s:%Y%m%dT%H%M}_{e:%Y%m%dT%H%M}"


def build_digest(
    config: Config,
    storage: StorageType,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    out_dir: Path | None = None,
) -> DigestFiles:
    """Render the digest of [start, end) (default: the last complete week) to html/txt/eml."""
    if start is None or end is None:
        week_start, week_end = last_complete_week(now, config.newsletter.timezone)
        start = start or week_start
        end = end or week_end
    stories = storage.get_stories(since=start, until=end)
    names, urls = _source_maps(config)
    digest = select_digest(
        stories,
        config.sections,
        config.newsletter,
        names,
        start=start,
        end=end,
        now=now,
        settings=config.digest,
    )
    env = make_environment(config.templates_dir)
    rendered = render_digest(
        digest,
        env,
        source_urls=urls,
        sender=config.digest.sender,
        teaser_chars=config.digest.teaser_chars,
    )
    base = digest_basename(start, end, config.newsletter.timezone)
    paths = write_outputs(
        out_dir or config.output_dir,
        {f"{base}.html": rendered.html, f"{base}.txt": rendered.text, f"{base}.eml": rendered.eml},
    )
    return DigestFiles(digest=digest, paths=tuple(paths))


async def run_once(
    config: Config,
    storage: StorageType,
    client: httpx.AsyncClient,
    now: datetime,
    *,
    progress: Progress | None = None,
    resolver: Resolver = system_resolver,
) -> RunReport:
    """One full cycle: every source fetched, the feed rebuilt, last week's digest written."""
    report = RunReport()
    report.results = await update_sources(
        config, storage, client, now, only_due=False, progress=progress, resolver=resolver
    )
    report.feed = build_feed(config, storage, now)
    report.digest = build_digest(config, storage, now)
    return report


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
