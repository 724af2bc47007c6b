"""Background checkpoints of a SQLite database's write-ahead log (issue 8,
`aggregator/storage/_checkpoint.py`): a real database file, a writer on a connection of its
own, and the database file read without its log to see what was copied into it."""

from __future__ import annotations

import logging
import shutil
import sqlite3
import threading
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from aggregator.pipeline import _store
from aggregator.storage import open_storage
from aggregator.storage._checkpoint import WalCheckpointer
from aggregator.types import ClusterSettings

NOW = datetime(2026, 12, 1, 12, tzinfo=UTC)


def _writer(path: Path) -> sqlite3.Connection:
    """A WAL-mode writer that never checkpoints by itself (its own checkpoints would hide
    the thread's)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (n INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    return conn


def _rows_in_the_file_alone(path: Path, into: Path) -> int:
    """The rows a copy of the database file holds without its write-ahead log: only what a
    checkpoint copied into the file."""
    shutil.copyfile(path, into)
    copy = sqlite3.connect(into)
    try:
        tables = copy.execute("SELECT count(*) FROM sqlite_master WHERE name = 't'").fetchone()
        return copy.execute("SELECT count(*) FROM t").fetchone()[0] if tables[0] else 0
    finally:
        copy.close()


def _wait_for(test, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_log_reaches_the_database_file_while_the_writer_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    writer = _writer(path)
    body = "x" * 2_000
    try:
        writer.executemany("INSERT INTO t (body) VALUES (?)", [(body,)] * 500)
        # without the thread, the file holds none of it: every page is in the log
        assert _rows_in_the_file_alone(path, tmp_path / "before.sqlite") == 0
        with WalCheckpointer(str(path), every=0.05) as checkpointer:
            _wait_for(lambda: _rows_in_the_file_alone(path, tmp_path / "copy.sqlite") == 500)
            # the writer is never blocked: it commits while the thread checkpoints
            for _ in range(20):
                writer.executemany("INSERT INTO t (body) VALUES (?)", [(body,)] * 50)
            _wait_for(lambda: _rows_in_the_file_alone(path, tmp_path / "copy.sqlite") == 1_500)
        assert checkpointer.checkpoints > 0
        assert checkpointer.failures == 0
        assert not checkpointer._thread.is_alive()  # __exit__ waited for it
        # every row is where it was written, log and file together
        assert writer.execute("SELECT count(*) FROM t").fetchone()[0] == 1_500
    finally:
        writer.close()


def test_it_stops_at_once_and_leaves_an_idle_database_alone(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    writer = _writer(path)
    try:
        started = time.monotonic()
        with WalCheckpointer(str(path), every=60.0) as checkpointer:
            pass
        assert time.monotonic() - started < 5  # not a whole interval
        assert checkpointer.checkpoints == 0
    finally:
        writer.close()


def test_a_database_it_cannot_open_costs_a_warning_and_nothing_else(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = tmp_path / "no such folder" / "db.sqlite"
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database" * 100)
    for path in (missing, garbage):
        caplog.clear()
        with (
            caplog.at_level(logging.WARNING, "aggregator.storage"),
            WalCheckpointer(str(path), every=0.01) as checkpointer,
        ):
            checkpointer._thread.join(10)
        assert not checkpointer._thread.is_alive()
        assert checkpointer.checkpoints == 0
        assert "background checkpoints off" in caplog.text and str(path) in caplog.text


def test_a_database_not_in_wal_mode_gets_no_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    sqlite3.connect(path).execute("CREATE TABLE t (n INTEGER)").connection.close()
    with WalCheckpointer(str(path), every=0.01) as checkpointer:
        checkpointer._thread.join(10)
    assert not checkpointer._thread.is_alive()
    assert checkpointer.checkpoints == 0


class _Failing:
    """A real connection whose first `fail` checkpoints raise, as a busy database or a disk
    error would."""

    def __init__(self, conn: sqlite3.Connection, fail: int) -> None:
        self._conn, self.fail = conn, fail

    def execute(self, sql: str) -> sqlite3.Cursor:
        if "wal_checkpoint" in sql and self.fail:
            self.fail -= 1
            raise sqlite3.OperationalError("disk I/O error")
        return self._conn.execute(sql)

    def close(self) -> None:
        self._conn.close()


def test_a_checkpoint_that_fails_is_skipped_and_the_next_one_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aggregator.storage import _checkpoint

    path = tmp_path / "db.sqlite"
    writer = _writer(path)
    failing = SimpleNamespace(
        connect=lambda *a, **k: _Failing(sqlite3.connect(*a, **k), 3), Error=sqlite3.Error
    )
    monkeypatch.setattr(_checkpoint, "sqlite3", failing)
    try:
        writer.executemany("INSERT INTO t (body) VALUES (?)", [("y" * 2_000,)] * 100)
        with WalCheckpointer(str(path), every=0.02) as checkpointer:
            _wait_for(lambda: _rows_in_the_file_alone(path, tmp_path / "copy.sqlite") == 100)
        assert checkpointer.failures == 3
        assert checkpointer.checkpoints > 0
    finally:
        writer.close()


def test_only_a_sqlite_file_gets_a_checkpoint_thread(tmp_path: Path) -> None:
    on_file = open_storage(f"sqlite:///{tmp_path / 'a.db'}", NOW)
    in_memory = open_storage("sqlite://", NOW)
    try:
        assert isinstance(on_file.checkpoints_in_background(), WalCheckpointer)
        assert isinstance(in_memory.checkpoints_in_background(), nullcontext)
    finally:
        on_file.close()
        in_memory.close()


@pytest.mark.postgres
def test_postgresql_gets_no_checkpoint_thread(pg_schema_url: str) -> None:
    storage = open_storage(pg_schema_url, NOW)
    try:
        assert isinstance(storage.checkpoints_in_background(), nullcontext)
    finally:
        storage.close()


def _checkpoint_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "aggregator-checkpoint"]


def test_a_store_session_checkpoints_in_the_background_until_it_closes(tmp_path: Path) -> None:
    """The store process's session (`pipeline/_store.py`) runs the thread from its opening to
    its closing."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_storage(url, NOW).close()  # created and migrated, as the run's own storage does
    assert not _checkpoint_threads()
    _store._open_session("token", url, ClusterSettings(), NOW)
    try:
        assert len(_checkpoint_threads()) == 1
    finally:
        _store.close_session("token")
    assert not _checkpoint_threads()
