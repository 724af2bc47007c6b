"""Copying a SQLite database's write-ahead log into the database file from a thread of its own
(issue 8), so that the writer does not wait for the disk.

In WAL mode a commit appends pages to the log; the commit that takes the log past
`wal_autocheckpoint` pages then copies the log into the database and waits for the disk twice
(fsync) before it returns. In a 1,000-source first cycle that was five commits of the store
process, each about 0.29 s instead of 0.02 s (0.07 s of it CPU), and while the store process
waited the parse worker and the fetches behind it stopped too (both cores half idle for a
quarter of a second, five times). `WalCheckpointer` runs SQLite's PASSIVE checkpoint every
CHECKPOINT_EVERY_S on a connection of its own: it copies what the log holds without waiting
for (or blocking) the writer or any reader, and Python's sqlite3 lets go of the interpreter
lock meanwhile. The writer's own checkpoint still comes at `wal_autocheckpoint` pages (it is
what starts the log over from its beginning; a PASSIVE checkpoint beside a busy writer never
can), but finds all but the last half second's pages copied and flushed already.

A checkpoint that fails (the database busy, a disk error) is skipped: the writer's own
checkpoints still run, so nothing is lost but the head start. Nothing here changes what is
stored.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from types import TracebackType

# Half a second of a first cycle's writes (about 10 MB of log at the benchmark's rate): what
# the writer's own checkpoint is left to copy and flush. A checkpoint finding no page it has
# not copied does nothing: an idle database costs the thread one look every interval.
CHECKPOINT_EVERY_S = 0.5

log = logging.getLogger("aggregator.storage")


class WalCheckpointer:
    """A thread that checkpoints the SQLite database at `path` every `every` seconds, from
    `__enter__` to `__exit__` (which waits for a checkpoint under way)."""

    def __init__(self, path: str, every: float = CHECKPOINT_EVERY_S, timeout: float = 5.0) -> None:
        self.path = path
        self.every = every
        self.timeout = timeout
        self.checkpoints = 0  # the PASSIVE checkpoints run (tests, diagnosis)
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aggregator-checkpoint", daemon=True)

    def __enter__(self) -> WalCheckpointer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            conn = sqlite3.connect(
                self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            log.warning("background checkpoints off for %s: %s", self.path, e)
            return
        try:
            try:
                # read at once: a connection learns that the database is in WAL mode when it
                # first reads it, and until then a checkpoint is a no-op
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            except sqlite3.Error as e:
                log.warning("background checkpoints off for %s: %s", self.path, e)
                return
            if mode != "wal":  # no log to copy (`open_storage` always sets WAL)
                log.debug("background checkpoints off for %s: journal mode %s", self.path, mode)
                return
            while not self._stop.wait(self.every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as e:  # busy, or the disk: the writer's own still run
                    self.failures += 1
                    log.debug("background checkpoint of %s skipped: %s", self.path, e)
        finally:
            conn.close()
