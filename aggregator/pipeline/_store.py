"""Storing a source: one transaction with its new items, their stories and its state; and,
for a large run, all of that in a process of its own (issue 8).

Part of the composition root (see `aggregator.pipeline`).

`store_items` is the store stage as the update runs it, one source at a time. Where it runs:
- on a thread of the main process (`update_sources`' store thread), for a small run, a
  storage the process cannot reopen (an in-memory SQLite database, a test's stand-in), or
  when clustering's semantic signal is `on`;
- in a store process (`StoreProcess`), for a run of at least STORE_PROCESS_MIN_SOURCES
  sources. A first cycle is bound by one process's interpreter lock: the store thread's
  matching, indexing and SQL, and the event loop's HTTP, took it in turns. In a process of
  its own the store has an interpreter to itself, with its own connection to the same
  database and the run's window index; the main process keeps fetching and feeding the
  parse workers. The parse worker pickles a source's `Prepared` (`PreparedBytes`), and the
  main process passes the bytes on without reading them.

A store process is the worker of a `_budget.OrderedWorker` (no time or memory limit),
started from the same fork server as the parse workers. It is sent the next source while it
stores one (STORE_DEPTH), and stores them one at a time, in the order sent. Its state lives
in `_session`, opened by the first call of a run and closed by the last (`close_session`): a
worker that dies is replaced, and the new one opens the session again from what the database
holds (the window index is read from the committed items). So a lost store process costs the
source it was storing (a `store_error`), not the run: the source waiting behind it goes to
the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import pickle
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import cast

from aggregator._budget import BudgetExceeded, OrderedWorker, exit_description
from aggregator.dedupe import assign_stories, item_keys
from aggregator.exceptions import StorageError
from aggregator.pipeline._cluster import RunClusterer  # issue 4
from aggregator.pipeline._prepare import Prepared, PreparedBytes
from aggregator.pipeline._timing import StageTimes
from aggregator.storage import StorageType, open_storage
from aggregator.types import ClusterSettings, Fetched, Source, SourceState

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

# A run of fewer sources stores on a thread: starting the process, its imports and its read of
# the window index cost about as much as the interpreter it frees, and memory besides. Paired
# first cycles of the benchmark's corpus (medians of 6), the thread (two parse workers)
# against the process (one parse worker beside it, see `_update._parse_pool`): 30 sources
# 0.78 against 0.92 s, 60 sources 1.23 against 1.25 s, 100 sources 1.74 against 1.69 s (and
# about 10 MB more), 200 sources 3.11 against 2.77 s, 300 sources 4.53 against 4.06 s.
STORE_PROCESS_MIN_SOURCES = 200

# Sources sent to the store process and not yet stored, at most: one stored, one waiting in
# its pipe. Sent one at a time, the process waited about 0.8 ms per source for the next
# (0.80-0.86 s of a 1,000-source first cycle; 0.37 s sent ahead); paired first cycles
# against that: medians of 0.92 to 0.98 of the time over four sets of 6-8 rounds (see
# docs/design.md). Three in flight: 0.95, no better than two.
STORE_DEPTH = 2


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """The collector's thresholds raised (see GC_GEN0_THRESHOLD), then put back."""
    thresholds = gc.get_threshold()
    gc.set_threshold(
        max(thresholds[0], GC_GEN0_THRESHOLD), thresholds[1], max(thresholds[2], GC_GEN2_THRESHOLD)
    )
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)


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
        tx.set_source_state(success_state(state, source, fetched, now))
    if clusterer is not None:
        clusterer.commit()
    return len(new), len(existing)


def success_state(
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


# --- the store process's side ---------------------------------------------------------------


@dataclass
class _Session:
    token: str
    storage: StorageType
    clusterer: RunClusterer | None
    collections: contextlib.ExitStack


_session: _Session | None = None

# A call's reply: ("ok", times, new, seen) | ("storage_error", times, message)
Reply = tuple[object, ...]


def _open_session(
    token: str, url: str, clustering: ClusterSettings | None, now: datetime
) -> _Session:
    global _session
    if _session is not None and _session.token == token:
        return _session
    close_session(None)
    storage = open_storage(url, now)
    clusterer = RunClusterer.load(storage, clustering, now) if clustering is not None else None
    collections = contextlib.ExitStack()
    collections.enter_context(fewer_collections())
    # issue 8: the log copied into the database beside the stores, not in one of their commits
    collections.enter_context(storage.checkpoints_in_background())
    _session = _Session(token, storage, clusterer, collections)
    return _session


def store_in_session(
    token: str,
    url: str,
    clustering: ClusterSettings | None,
    now: datetime,
    source: Source,
    prepared: bytes | Prepared,
    fetched: Fetched,
    state: SourceState,
) -> Reply:
    """`store_items` in the store process, in the run's session (opened by its first call).

    `prepared` is a `Prepared`, or its pickle as the parse worker made it. A StorageError
    comes back as a reply, with the times measured before it."""
    times = StageTimes()
    try:
        session = _open_session(token, url, clustering, now)
        data = pickle.loads(prepared) if isinstance(prepared, bytes) else prepared
        clusterer = session.clusterer
        if clusterer is not None and data.items and not clusterer.prepared:
            clusterer.prepare()  # the window index, read before the write lock
        with times.measure("store"):
            new, seen = store_items(
                session.storage, source, data, fetched, state, now, times, clusterer
            )
    except StorageError as e:
        return ("storage_error", _entries(times), str(e))
    return ("ok", _entries(times), new, seen)


def close_session(token: str | None) -> None:
    """Close the run's session (any session if `token` is None): its connection goes."""
    global _session
    session, _session = _session, None
    if session is not None:
        if token is not None and session.token != token:
            _session = session  # another run's
            return
        session.collections.close()
        session.storage.close()


def _entries(times: StageTimes) -> tuple[tuple[str, float, float], ...]:
    return tuple((stage, times.wall[stage], times.cpu[stage]) for stage in times.wall)


# --- the main process's side ----------------------------------------------------------------


class StoreProcess:
    """The run's store process (see the module docstring): `store` (from the event loop)
    submits a source and waits until it is stored; sources are sent in the order submitted,
    the next while one is stored (STORE_DEPTH). `close` ends the session and the process."""

    def __init__(
        self, url: str, clustering: ClusterSettings | None, now: datetime, preload: tuple[str, ...]
    ) -> None:
        # issue 8: the next source is sent while one is stored, so the process never waits
        # for the main process between two
        self._pool = OrderedWorker(depth=STORE_DEPTH, preload=preload, name="aggregator-store")
        self._session = (uuid.uuid4().hex, url, clustering, now)
        self._used = False  # a run whose every source answered 304 starts no process
        self.cpu = 0.0  # the store process's CPU, as its stages measured it

    async def store(
        self,
        source: Source,
        prepared: Prepared | PreparedBytes,
        fetched: Fetched,
        state: SourceState,
        times: StageTimes,
    ) -> tuple[int, int]:
        payload = prepared.payload if isinstance(prepared, PreparedBytes) else prepared
        # the body stays here: the store needs the response's status and validators only
        bare = dataclasses.replace(fetched, content=b"")
        self._used = True
        stored = self._pool.submit(store_in_session, *self._session, source, payload, bare, state)
        try:
            reply = await asyncio.wrap_future(stored)
        except BudgetExceeded as e:  # the store process died (the OOM killer, a crash)
            raise StorageError(
                f"the store process died ({exit_description(e.exitcode)}) while storing this "
                "source; the next source starts another, and this one is stored on its next run"
            ) from e
        entries = cast(tuple[tuple[str, float, float], ...], reply[1])
        times.add_all(entries)
        self.cpu += sum(cpu for _, _, cpu in entries)
        if reply[0] == "storage_error":
            raise StorageError(str(reply[2]))
        return cast(int, reply[2]), cast(int, reply[3])

    def close(self) -> None:
        try:
            if self._used:
                with contextlib.suppress(BudgetExceeded, StorageError):
                    self._pool.run(close_session, self._session[0])
        finally:
            self._pool.close()
