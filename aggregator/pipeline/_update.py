"""Updating sources: fetch -> parse -> normalize -> classify -> dedupe -> store, per source.

Part of the composition root (see `aggregator.pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import cast
from urllib.parse import urlsplit

import httpx

from aggregator._budget import BudgetExceeded, WorkerPool
from aggregator._version import __version__
from aggregator.classify import Classifier
from aggregator.dedupe import assign_stories, item_keys
from aggregator.exceptions import FetchError, ParseError, SourceError, StorageError
from aggregator.fetch import Resolver, fetch_source, make_client, system_resolver
from aggregator.pipeline._cluster import RunClusterer  # issue 4
from aggregator.pipeline._examples import (  # issue 5
    load_examples,
    make_run_classifier,
    worker_settings,
)
from aggregator.pipeline._prepare import Prepared, _prepare_in_worker
from aggregator.pipeline._timing import StageTimes
from aggregator.storage import StorageType
from aggregator.types import (
    DEFAULT_MAX_ITEMS_PER_RUN,
    Config,
    Fetched,
    Source,
    SourceResult,
    SourceState,
)

MAX_BACKOFF = timedelta(hours=24)
# issue 8: the collector's thresholds while sources are updated (put back when the update
# ends). A first cycle allocates millions of objects that stay (the window index, the items).
# The youngest generation: at CPython's default of 700 allocations the collector ran about
# 900 times over the benchmark's matching alone (1.1 CPU s), at 10,000 about 60 times
# (0.3 s). The oldest: each full collection walks every live object, and a growing heap
# triggers one at every quarter of growth; at the default of 10 a 1,000-source first cycle
# made 12 of them (1.0 s), at 100 one (0.2 s). Cyclic garbage still dies young in the two
# younger generations; what reaches the oldest waits longer (at most until the update ends).
GC_GEN0_THRESHOLD = 10_000
GC_GEN2_THRESHOLD = 100

Progress = Callable[[SourceResult], None]


# --- update: fetch, parse, normalize, classify, dedupe, store ------------------------------


def is_due(state: SourceState | None, now: datetime) -> bool:
    return state is None or state.next_due is None or state.next_due <= now


def backoff(interval: timedelta, failures: int) -> timedelta:
    """Delay before retrying a source that failed `failures` times in a row."""
    delay: timedelta = interval * (2 ** max(0, failures - 1))
    return min(MAX_BACKOFF, delay)


def store_items(
    storage: StorageType,
    source: Source,
    prepared: Prepared,
    fetched: Fetched,
    state: SourceState,
    now: datetime,
    timings: StageTimes | None = None,
    clusterer: RunClusterer | None = None,
) -> tuple[int, int]:
    """Write a source's new items and its fetch state in one transaction.

    Returns (new, seen). Items already stored (same GUID in the source) keep their
    first-seen time and placement; only their last-seen time moves. With a `clusterer`
    (issue 4), an item that would start a story joins a stored one about the same event.
    """
    items = [item for item, _ in prepared.items]
    if clusterer is not None:
        clusterer.rollback()  # nothing queued by a transaction that failed
    with storage.transaction() as tx:
        existing = tx.get_item_ids(source.id, [i.guid for i in items])
        new = [(i, p) for i, p in prepared.items if i.guid not in existing]
        # issue 8: the features the parse worker extracted, aligned with `new` (None: the
        # clusterer extracts them itself)
        features = (
            [f for i, f in zip(items, prepared.features, strict=True) if i.guid not in existing]
            if prepared.features
            else None
        )
        if existing:
            tx.touch_items(list(existing.values()), now)
        with timings.measure("cluster") if timings is not None else contextlib.nullcontext():
            keys = sorted({k for item, _ in new for k in item_keys(item)})
            known = tx.get_story_ids(keys) if keys else {}
            refs = assign_stories([i for i, _ in new], known)
            # issue 4: a group that would start a story may join a stored one instead
            matches = (
                clusterer.match_groups([i for i, _ in new], refs, features) if clusterer else {}
            )
        # Batched (issue 8): the new stories in one statement, the new items in another.
        groups = sorted(
            {r.group for r in refs if r.story_id is None and r.group is not None} - set(matches)
        )
        new_story = dict(zip(groups, tx.add_stories(now, len(groups)), strict=True))
        new_story.update({g: cast(int, m.story) for g, m in matches.items()})  # issue 4
        rows = []
        for (item, placement), ref in zip(new, refs, strict=True):
            story_id = ref.story_id if ref.story_id is not None else new_story[ref.group or 0]
            rows.append((item, story_id, placement))
        tx.add_items(rows, now)
        if clusterer is not None:  # issue 4: why each item is in its story
            news = [i for i, _ in new]
            ids = [story_id for _, story_id, _ in rows]
            clusterer.record(tx, source.id, news, refs, ids, known, matches, now, features)
        tx.set_source_state(_success_state(state, source, fetched, now))
    if clusterer is not None:
        clusterer.commit()
    return len(new), len(existing)


def _success_state(
    state: SourceState, source: Source, fetched: Fetched, now: datetime
) -> SourceState:
    return dataclasses.replace(
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


def _store_not_modified(storage: StorageType, states: list[SourceState], times: StageTimes) -> None:
    """The states of the sources that answered 304, in one transaction (issue 8: a run of
    1,000 unchanged sources is 1,000 row updates, not 1,000 commits). Nothing else changes
    for them, so if this fails they are merely fetched again when next due."""
    if not states:
        return
    with times.measure("store"), contextlib.suppress(StorageError), storage.transaction() as tx:
        tx.set_source_states(states)


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


def _in_flight_limit(concurrency: int, workers: int) -> int:
    """How many sources may be between fetching and stored at once (issue 8)."""
    return max(1, concurrency) + 2 * workers


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


def _reclassified(prepared: Prepared, source: Source, classifier: Classifier) -> Prepared:
    """issue 5: the items of a worker's Prepared placed again by `classifier` (one batch)."""
    items = [item for item, _ in prepared.items]
    placements = classifier.classify_many(items, [source.section] * len(items))
    return dataclasses.replace(prepared, items=tuple(zip(items, placements, strict=True)))


def _parse_pool(config: Config) -> WorkerPool:
    """This run's parse workers (started on first use, so a run of 304s starts none)."""
    return WorkerPool(
        config.fetch.parse_workers or None,
        timeout=config.fetch.parse_timeout,
        memory_bytes=config.fetch.parse_memory_mb * 1024 * 1024,
        # the fork server imports the worker's stages once for every worker
        preload=("aggregator.pipeline._prepare",),
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
    timings: StageTimes | None = None,
) -> list[SourceResult]:
    """Fetch the (due) sources concurrently and store what they yield; one result each.

    A source's failure is recorded in its state (failure streak, backoff) and returned as
    a result with the error; its stored items are not touched. `timings`, if given, gets
    each stage's wall and CPU time added (see `_timing`).
    """
    times = timings if timings is not None else StageTimes()
    cpu0 = time.process_time()
    states = storage.get_source_states()
    wanted = set(source_ids) if source_ids is not None else None
    sources = [
        s
        for s in config.sources
        if (wanted is None or s.id in wanted) and (not only_due or is_due(states.get(s.id), now))
    ]
    pool = _parse_pool(config)  # closed below, after the last source
    not_modified: list[SourceState] = []  # issue 8: stored together at the end
    # issue 4: the stories of the last N days, indexed once per run
    clusterer = RunClusterer.load(storage, config.clustering, now) if sources else None
    limits = _HostLimits(config.fetch.concurrency, config.fetch.per_host)
    # issue 5: example files and editors' corrections, read once per run
    examples = load_examples(config, storage) if sources else ()
    in_worker = worker_settings(config.classify)
    main_classifier: list[Classifier] = []  # the embedding model, loaded on first use
    # issue 8, backpressure: at most this many sources between "fetching" and "stored", so
    # bodies and parsed items cannot pile up while the main process is busy storing. Enough
    # to keep every fetch slot and every parse worker busy, with a queue of one per worker.
    in_flight = asyncio.Semaphore(_in_flight_limit(config.fetch.concurrency, pool.size))
    worker_cluster_cpu = [0.0]  # the clustering features the parse workers extracted
    # issue 8: stores run here, in turn (each source's transaction, clustering's matching)
    store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aggregator-store")

    async def one(source: Source) -> SourceResult:
        async with contextlib.AsyncExitStack() as held:
            return await process(source, held)

    async def process(source: Source, held: contextlib.AsyncExitStack) -> SourceResult:
        state = states.get(source.id) or SourceState(source_id=source.id)
        try:
            async with limits.total, limits.host(source.url):
                # Taken once the fetch may start (a source waiting for its host holds none),
                # given back when `one` returns: after the store, or the failure's record.
                await held.enter_async_context(in_flight)
                w0 = time.perf_counter()
                fetched = await fetch_source(
                    client, source, state.validators, config.fetch, resolver=resolver, now=now
                )
                times.add("fetch", time.perf_counter() - w0, 0.0)
            if fetched.not_modified:
                not_modified.append(_success_state(state, source, fetched, now))
                return SourceResult(source.id, fetched.url, not_modified=True)
            try:
                prepared = await pool.run_async(
                    _prepare_in_worker,
                    fetched,
                    source,
                    config.sections,
                    config.topic,
                    DEFAULT_MAX_ITEMS_PER_RUN,
                    examples,
                    in_worker,
                    clusterer is not None,
                )
            except BudgetExceeded as e:  # out of time or memory, or the worker died
                raise ParseError(source.id, fetched.url, e.kind, e.message) from e
            if in_worker != config.classify and prepared.items:  # issue 5: embeddings
                if not main_classifier:
                    main_classifier.append(make_run_classifier(config, examples))
                prepared = await asyncio.to_thread(
                    _reclassified, prepared, source, main_classifier[0]
                )
            times.add_all(prepared.times)
            worker_cluster_cpu[0] += sum(c for s, _, c in prepared.times if s == "cluster")
            if clusterer is not None and prepared.items and not clusterer.prepared:
                # issue 4, review finding 12: the window index is built off the event loop,
                # before the write lock (once; issue 8: no thread hop per source after that)
                await asyncio.to_thread(clusterer.prepare)

            def store() -> tuple[int, int]:
                with times.measure("store"):
                    return store_items(
                        storage, source, prepared, fetched, state, now, times, clusterer
                    )

            # issue 8: on the store's own thread, one source at a time, so that the event
            # loop keeps reading responses and feeding the parse workers meanwhile
            new, seen = await asyncio.get_running_loop().run_in_executor(store_thread, store)
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
    thresholds = gc.get_threshold()
    gc.set_threshold(
        max(thresholds[0], GC_GEN0_THRESHOLD), thresholds[1], max(thresholds[2], GC_GEN2_THRESHOLD)
    )
    try:
        for task in asyncio.as_completed([one(s) for s in sources]):
            result = await task
            results.append(result)
            if progress is not None:
                progress(result)
    finally:
        # a store the run stopped waiting for (cancelled) still finishes before these
        await asyncio.to_thread(store_thread.shutdown)
        await asyncio.to_thread(pool.close)
        _store_not_modified(storage, not_modified, times)
        gc.set_threshold(*thresholds)
    # The event loop's own CPU (HTTP, and the parse workers' replies unpickled) is what the
    # process spent besides storing.
    other = sum(times.cpu.get(s, 0.0) for s in ("store", "cluster")) - worker_cluster_cpu[0]
    times.cpu["fetch"] = max(0.0, time.process_time() - cpu0 - other)
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
