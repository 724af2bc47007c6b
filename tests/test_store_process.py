"""issue 8: a large run's stores in a process of their own (`pipeline/_store.py`).

The same sources stored through the store process and on the store thread give the same
items, stories and links; a database error fails only its source; a store process that dies
costs the source it was storing (the one queued behind it goes to the next process), and the
next source opens the session again; a run of 304s starts no process.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.pipeline import _store, _update
from aggregator.storage import SqlStorage, StorageType, open_storage
from aggregator.types import Config, SourceResult
from bench.corpus import fixed_now, generate_corpus
from tests.httpserver import conditional
from tests.test_pipeline_features import outcome  # items, stories, links

NOW = fixed_now()

pytestmark = pytest.mark.slow


def serve_corpus(http_server: Any, n: int) -> list[tuple[str, str]]:
    """`n` generated sources (12% of their stories shared) on the test server, with ETags;
    (id, path) of each."""
    found = []
    for k, doc in enumerate(generate_corpus(n, NOW).documents):
        http_server.routes[doc.path] = conditional(doc.body, f'"{k}"')
        found.append((f"c{k}", doc.path))
    return found


def corpus_config(
    tmp_path: Path,
    http_server: Any,
    ids: list[tuple[str, str]],
    database: str,
    concurrency: int = 1,
) -> Config:
    sources = "\n".join(
        f"  - {{id: {i}, name: {i}, url: '{http_server.base}{path}'}}" for i, path in ids
    )
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"""
newsletter: {{title: T, link: "https://t.example.org/", description: d, timezone: UTC}}
storage: {{database: "{database}"}}
output: {{dir: out}}
fetch: {{allow_private_network: true, concurrency: {concurrency}, per_host: {concurrency},
         parse_workers: 1}}
clustering: {{semantic: "off"}}
sources:
{sources}
sections:
  - {{id: politics, title: Politics, rules: [parliament, election, coalition, chancellor]}}
  - {{id: sport, title: Sport, rules: [cup, transfer, striker, league, derby]}}
"""
    )
    return load_config(path)


@contextlib.contextmanager
def corpus_run(
    tmp_path: Path, http_server: Any, n: int, concurrency: int = 1
) -> Iterator[tuple[Config, SqlStorage]]:
    """`n` served sources, their config and an open store at tmp_path / "a.db"."""
    url = f"sqlite:///{tmp_path / 'a.db'}"
    ids = serve_corpus(http_server, n)
    config = corpus_config(tmp_path, http_server, ids, url, concurrency)
    storage = open_storage(url, NOW)
    try:
        yield config, storage
    finally:
        storage.close()


def update(config: Config, storage: StorageType, **kw: Any) -> list[SourceResult]:
    async def go() -> list[SourceResult]:
        async with pipeline.open_client(config) as client:
            return await pipeline.update_sources(config, storage, client, NOW, **kw)

    return asyncio.run(go())


class Watched(_store.StoreProcess):
    """The run's StoreProcess, kept for the test to look at (and to kill its process)."""

    made: ClassVar[list[Watched]] = []

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        Watched.made.append(self)

    @property
    def starts(self) -> int:
        return self._pool.starts

    def pids(self) -> list[int]:
        pid = self._pool.pid
        return [] if pid is None else [pid]


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[Watched]:
    Watched.made = []
    monkeypatch.setattr(_update, "StoreProcess", Watched)
    return Watched.made


def test_the_store_process_stores_what_the_thread_stores(
    tmp_path: Path, http_server: Any, database_url: str, watched: list[Watched]
) -> None:
    ids = serve_corpus(http_server, 24)
    found = []
    for in_process in (False, True):
        folder = tmp_path / str(in_process)
        folder.mkdir()
        url = database_url if in_process else f"sqlite:///{folder / 'thread.db'}"
        config = corpus_config(folder, http_server, ids, url)
        storage = open_storage(url, NOW)
        try:
            results = update(config, storage, store_process=in_process)
            assert all(r.ok and r.new_items for r in results), [r.error for r in results]
            found.append(outcome(storage))
        finally:
            storage.close()
    assert len(watched) == 1 and watched[0].starts == 1  # one process, for the whole run
    (items_a, links_a), (items_b, links_b) = found
    assert [(s, g) for s, g, _ in items_a] == [(s, g) for s, g, _ in items_b]
    assert items_a == items_b and links_a == links_b
    # the sources do exercise clustering across sources
    assert len({story for _, _, story in items_a}) < len(items_a)


def test_by_default_only_a_large_run_starts_a_store_process(
    tmp_path: Path, http_server: Any, watched: list[Watched], monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = serve_corpus(http_server, 6)
    url = f"sqlite:///{tmp_path / 'a.db'}"
    config = corpus_config(tmp_path, http_server, ids, url)
    storage = open_storage(url, NOW)
    other = open_storage(f"sqlite:///{tmp_path / 'b.db'}", NOW)
    try:
        update(config, storage)
        assert watched == []  # 6 sources: on the thread
        monkeypatch.setattr(_update, "STORE_PROCESS_MIN_SOURCES", 6)
        update(config, other)
        assert len(watched) == 1 and watched[0].starts == 1
        assert outcome(other) == outcome(storage)
    finally:
        storage.close()
        other.close()
    # a database another process cannot open: stored on the thread, whatever is asked
    memory = open_storage("sqlite://", NOW)
    try:
        assert _update._store_process_url(config, memory, 1000, True) is None
        assert _update._store_process_url(config, other, 1000, False) is None
        least = _update.STORE_PROCESS_MIN_SOURCES
        assert _update._store_process_url(config, other, least - 1, None) is None
        assert _update._store_process_url(config, other, least, None) == other.shared_url()
    finally:
        memory.close()


def test_beside_a_store_process_the_parse_workers_leave_it_a_core(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, http_server: Any
) -> None:
    # Paired 1,000-source first cycles on 2 cores: one parse worker beside the store process
    # took 0.81, 0.99 and 0.90 of the time of two (the store process is the critical path).
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1})
    with corpus_run(tmp_path, http_server, 1) as (config, _):
        auto = dataclasses.replace(config.fetch, parse_workers=0)
        config = dataclasses.replace(config, fetch=auto)
        two = dataclasses.replace(config, fetch=dataclasses.replace(auto, parse_workers=2))
        for settings, beside, size in ((config, True, 1), (config, False, 2), (two, True, 2)):
            # (closed: an open pool holds the fork server, see tests/test_fork_server.py)
            with _update._parse_pool(settings, store_process=beside) as pool:
                assert pool.size == size  # with an editor's own number standing


def test_a_run_of_304s_starts_no_store_process(
    tmp_path: Path, http_server: Any, watched: list[Watched]
) -> None:
    with corpus_run(tmp_path, http_server, 4) as (config, storage):
        update(config, storage, store_process=True)
        results = update(config, storage, store_process=True, only_due=False)
        assert all(r.not_modified for r in results)
    assert [w.starts for w in watched] == [1, 0]


def test_a_database_error_in_the_store_process_fails_only_its_source(
    tmp_path: Path, http_server: Any, watched: list[Watched]
) -> None:
    with corpus_run(tmp_path, http_server, 5) as (config, storage):
        with contextlib.closing(sqlite3.connect(tmp_path / "a.db")) as db:
            db.execute(
                "CREATE TRIGGER refuse BEFORE INSERT ON items WHEN NEW.source_id = 'c2' "
                "BEGIN SELECT RAISE(ABORT, 'the disk says no'); END"
            )
            db.commit()
        results = update(config, storage, store_process=True)
        by_id = {r.source_id: r for r in results}
        bad = by_id.pop("c2")
        assert bad.error is not None and bad.error.kind == "store_error"
        assert "the disk says no" in bad.error.message
        assert all(r.ok and r.new_items == 30 for r in by_id.values())
        assert storage.count_items() == 4 * 30
        assert storage.get_source_states()["c2"].error_kind == "store_error"


def test_a_store_process_that_dies_costs_one_source(
    tmp_path: Path, http_server: Any, watched: list[Watched]
) -> None:
    killed: list[int] = []

    def kill_once(result: SourceResult) -> None:
        if not killed and watched and watched[0].pids():
            killed.extend(watched[0].pids())
            os.kill(killed[0], signal.SIGKILL)

    with corpus_run(tmp_path, http_server, 8) as (config, storage):
        results = update(config, storage, store_process=True, progress=kill_once)
        failed = [r for r in results if not r.ok]
        assert killed and len(failed) <= 1, [r.error for r in failed]
        for r in failed:
            assert r.error is not None and r.error.kind == "store_error"
            assert "the store process died (signal SIGKILL)" in r.error.message
        assert watched[0].starts == 2  # the next source started another
        stored = sum(r.new_items for r in results if r.ok)
        assert storage.count_items() == stored  # nothing of a lost source
        # the lost source is stored on the next run
        again = update(config, storage, store_process=True, only_due=False)
        assert all(r.ok for r in again)
        assert {s.item.source_id for s in storage.get_items()} == {r.source_id for r in results}


def test_a_store_process_that_dies_with_a_source_queued_costs_one_source(
    tmp_path: Path, http_server: Any, watched: list[Watched]
) -> None:
    """The source sent behind the one being stored (STORE_DEPTH) never started: the next
    store process stores it."""
    killed: list[int] = []
    stop = threading.Event()

    def kill_with_one_queued() -> None:
        while not killed and not stop.wait(0.001):
            pool = watched[0]._pool if watched else None
            pid = pool.pid if pool is not None else None
            if pool is not None and pool.in_flight == 2 and pid is not None:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)

    with corpus_run(tmp_path, http_server, 8, concurrency=4) as (config, storage):
        killer = threading.Thread(target=kill_with_one_queued)
        killer.start()
        try:
            results = update(config, storage, store_process=True)
        finally:
            stop.set()
            killer.join()
        assert killed, "the store process never had a source queued"
        failed = [r for r in results if not r.ok]
        assert len(failed) == 1, [r.error for r in failed]
        assert failed[0].error is not None
        assert "the store process died (signal SIGKILL)" in failed[0].error.message
        assert watched[0].starts == 2
        stored = sum(r.new_items for r in results if r.ok)
        assert stored and storage.count_items() == stored  # nothing of the lost source
