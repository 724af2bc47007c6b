"""Updating sources: fetch -> parse -> normalize -> classify -> dedupe -> store, per source.

Part of the composition root (see `aggregator.pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import httpx

from aggregator._budget import BudgetExceeded, WorkerPool
from aggregator._version import __version__
from aggregator.classify import Classifier, make_classifier
from aggregator.dedupe import assign_stories, disambiguate_guids, item_keys
from aggregator.exceptions import FetchError, ParseError, SourceError, StorageError
from aggregator.fetch import Resolver, fetch_source, make_client, system_resolver
from aggregator.normalize import normalize_entry, truncated_fields
from aggregator.parse import parse_fetched
from aggregator.storage import StorageType
from aggregator.types import (
    DEFAULT_MAX_ITEMS_PER_RUN,
    Config,
    Fetched,
    Item,
    Placement,
    Section,
    Source,
    SourceResult,
    SourceState,
    Topic,
)

MAX_BACKOFF = timedelta(hours=24)

Progress = Callable[[SourceResult], None]


@dataclass(frozen=True, slots=True)
class Prepared:
    """A source's parsed, normalized and classified items, ready to store."""

    items: tuple[tuple[Item, Placement], ...]
    skipped: int
    warnings: tuple[str, ...]


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
