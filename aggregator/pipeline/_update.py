"""Updating sources: fetch -> parse -> normalize -> classify -> dedupe -> store, per source.

Part of the composition root (see `aggregator.pipeline`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from urllib.parse import urlsplit

import httpx

from aggregator._budget import BudgetExceeded, WorkerPool, default_pool_size
from aggregator._version import __version__
from aggregator.classify import Classifier
from aggregator.exceptions import FetchError, ParseError, SourceError, StorageError
from aggregator.fetch import Resolver, fetch_source, make_client, system_resolver
from aggregator.pipeline._cluster import RunClusterer  # issue 4
from aggregator.pipeline._examples import (  # issue 5
    load_examples,
    make_run_classifier,
    worker_settings,
)
from aggregator.pipeline._prepare import Prepared, PreparedBytes, _prepare_in_worker
from aggregator.pipeline._store import (  # issue 8
    STORE_PROCESS_MIN_SOURCES,
    StoreProcess,
    fewer_collections,
    store_items,
    success_state,
)
from aggregator.pipeline._timing import StageTimes
from aggregator.storage import SqlStorage, StorageType
from aggregator.types import (
    DEFAULT_MAX_ITEMS_PER_RUN,
    Config,
    Source,
    SourceResult,
    SourceState,
)

MAX_BACKOFF = timedelta(hours=24)
Progress = Callable[[SourceResult], None]


# --- update: fetch, parse, normalize, classify, dedupe, store ------------------------------


def is_due(state: SourceState | None, now: datetime) -> bool:
    return state is None or state.next_due is None or state.next_due <= now


def backoff(interval: timedelta, failures: int) -> timedelta:
    """Delay before retrying a source that failed `failures` times in a row."""
    delay: timedelta = interval * (2 ** max(0, failures - 1))
    return min(MAX_BACKOFF, delay)


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


# What the fork server imports once for every worker: the parse workers' stages (the store
# process imports the store's on its first call).
_PRELOAD = ("aggregator.pipeline._prepare",)


def _store_process_url(
    config: Config, storage: StorageType, sources: int, wanted: bool | None
) -> str | None:
    """The database URL for a store process, or None: this run stores on a thread."""
    if wanted is False or (wanted is None and sources < STORE_PROCESS_MIN_SOURCES):
        return None
    if not isinstance(storage, SqlStorage) or config.clustering.semantic == "on":
        # a stand-in's behaviour is this process's; `on` must fail here if it cannot load
        return None
    return storage.shared_url()


def _parse_pool(config: Config, store_process: bool = False) -> WorkerPool:
    """This run's parse workers (started on first use, so a run of 304s starts none). Beside
    a store process, `parse_workers: 0` leaves it a core: on 2 cores, one parse worker."""
    return WorkerPool(
        config.fetch.parse_workers or default_pool_size(spare=1 if store_process else 0),
        timeout=config.fetch.parse_timeout,
        memory_bytes=config.fetch.parse_memory_mb * 1024 * 1024,
        # the fork server imports the worker's stages once for every worker
        preload=_PRELOAD,
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
    store_process: bool | None = None,
) -> list[SourceResult]:
    """Fetch the (due) sources concurrently and store what they yield; one result each.

    A source's failure is recorded in its state (failure streak, backoff) and returned as
    a result with the error; its stored items are not touched. `timings`, if given, gets
    each stage's wall and CPU time added (see `_timing`). `store_process`: store in a
    process of its own (True), on a thread (False), or by the run's size (None; see
    `_store`); a storage that another process cannot open is always stored on a thread.
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
    # issue 8: a large run stores in a process of its own (see `_store`), else on a thread
    url = _store_process_url(config, storage, len(sources), store_process)
    pool = _parse_pool(config, store_process=url is not None)  # closed below, after the last source
    not_modified: list[SourceState] = []  # issue 8: stored together at the end
    clustering = config.clustering if config.clustering.enabled else None
    remote = StoreProcess(url, clustering, now, _PRELOAD) if url is not None else None
    # issue 4: the stories of the last N days, indexed once per run (by the store process's
    # own clusterer, if there is one)
    clusterer = (
        RunClusterer.load(storage, config.clustering, now) if sources and remote is None else None
    )
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
    # issue 8: stores run here, in turn (each source's transaction, clustering's matching),
    # unless a store process stores them
    store_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aggregator-store")
    # ... but an in-memory SQLite database is one connection of one thread (another thread
    # would open an empty database of its own): its stores run on the event loop's thread
    inline = isinstance(storage, SqlStorage) and storage.in_memory

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
                not_modified.append(success_state(state, source, fetched, now))
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
                    clustering is not None,
                    remote is not None,
                )
            except BudgetExceeded as e:  # out of time or memory, or the worker died
                raise ParseError(source.id, fetched.url, e.kind, e.message) from e
            if in_worker != config.classify and prepared.count:  # issue 5: embeddings
                if isinstance(prepared, PreparedBytes):
                    prepared = prepared.unpack()
                if not main_classifier:
                    main_classifier.append(make_run_classifier(config, examples))
                prepared = await asyncio.to_thread(
                    _reclassified, prepared, source, main_classifier[0]
                )
            times.add_all(prepared.times)
            worker_cluster_cpu[0] += sum(c for s, _, c in prepared.times if s == "cluster")
            if clusterer is not None and prepared.count and not clusterer.prepared:
                # issue 4, review finding 12: the window index is built off the event loop,
                # before the write lock (once; issue 8: no thread hop per source after that)
                if inline:
                    clusterer.prepare()
                else:
                    await asyncio.to_thread(clusterer.prepare)

            def store() -> tuple[int, int]:
                assert isinstance(prepared, Prepared)
                with times.measure("store"):
                    return store_items(
                        storage, source, prepared, fetched, state, now, times, clusterer
                    )

            # issue 8: in the store process (sent in the order the sources get here), or on
            # the store's own thread, one source at a time, so that the event loop keeps
            # reading responses and feeding the parse workers meanwhile
            if remote is not None:
                new, seen = await remote.store(source, prepared, fetched, state, times)
            elif inline:
                new, seen = store()
            else:
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
    tasks: list[asyncio.Future[SourceResult]] = []
    try:
        with fewer_collections():
            # started in the order listed (as_completed alone would start them in a set's
            # order): with one fetch at a time, a run stores its sources in that order
            tasks += [asyncio.ensure_future(one(s)) for s in sources]
            for task in asyncio.as_completed(tasks):
                result = await task
                results.append(result)
                if progress is not None:
                    progress(result)
    finally:
        # A run that stops early (cancelled: a scheduler's shutdown, a caller's timeout)
        # stops its sources too: none goes on fetching after it returns, nor finds the
        # workers below closed under it.
        unfinished = [t for t in tasks if not t.done()]
        for t in unfinished:
            t.cancel()
        await asyncio.gather(*unfinished, return_exceptions=True)
        # a store the run stopped waiting for (cancelled) still finishes before these
        await asyncio.to_thread(store_thread.shutdown)
        if remote is not None:
            await asyncio.to_thread(remote.close)
        await asyncio.to_thread(pool.close)
        _store_not_modified(storage, not_modified, times)
    # The event loop's own CPU (HTTP, and the parse workers' replies unpickled) is what the
    # process spent besides storing (the parse workers' and the store process's CPU is not
    # this process's).
    measured = sum(times.cpu.get(s, 0.0) for s in ("store", "cluster"))
    other = measured - worker_cluster_cpu[0] - (remote.cpu if remote is not None else 0.0)
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
