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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin, urlsplit
from zoneinfo import ZoneInfo

import httpx

from aggregator._version import __version__
from aggregator.classify import Classifier, make_classifier
from aggregator.dedupe import assign_stories, disambiguate_guids, item_keys
from aggregator.digest import last_complete_week, latest_stories, select_digest
from aggregator.exceptions import ParseError, SourceError, StorageError
from aggregator.fetch import Resolver, fetch_source, make_client, system_resolver
from aggregator.normalize import normalize_entry
from aggregator.output import write_outputs
from aggregator.parse import parse_fetched
from aggregator.render import make_environment, render_digest, render_feed
from aggregator.storage import StorageType
from aggregator.types import (
    DEFAULT_MAX_ITEMS_PER_RUN,
    Config,
    Digest,
    Fetched,
    Item,
    Placement,
    Source,
    SourceResult,
    SourceState,
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
    for entry in parsed.entries:
        item = normalize_entry(entry, source.id)
        if item is None:
            skipped += 1
        else:
            items.append(item)
    warnings = list(parsed.warnings)
    if skipped:
        warnings.append(f"skipped {skipped} entries with no title, link or text")
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


def _failed_state(
    state: SourceState, source: Source, error: SourceError, now: datetime
) -> SourceState:
    failures = state.failures + 1
    return dataclasses.replace(
        state,
        last_attempt=now,
        last_status=error.http_status,
        failures=failures,
        error_kind=error.kind,
        error=error.message,
        next_due=now + backoff(source.interval, failures),
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
    classifier = make_classifier(config.sections, config.topic)
    limits = _HostLimits(config.fetch.concurrency, config.fetch.per_host)

    async def one(source: Source) -> SourceResult:
        state = states.get(source.id) or SourceState(source_id=source.id)
        try:
            async with limits.total, limits.host(source.url):
                fetched = await fetch_source(
                    client, source, state.validators, config.fetch, resolver=resolver
                )
            if fetched.not_modified:
                store_items(storage, source, Prepared((), 0, ()), fetched, state, now)
                return SourceResult(source.id, fetched.url, not_modified=True)
            prepared = await asyncio.to_thread(
                prepare_items, fetched, source, classifier, DEFAULT_MAX_ITEMS_PER_RUN
            )
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
    for task in asyncio.as_completed([one(s) for s in sources]):
        result = await task
        results.append(result)
        if progress is not None:
            progress(result)
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
