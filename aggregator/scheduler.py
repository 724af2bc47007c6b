"""The long-running scheduler: APScheduler jobs that call pipeline functions, nothing else.

Two jobs:
  * `fetch`: every few minutes, fetch the sources that are due. Each source's own interval
    (and its failure backoff) lives in the store as `next_due`, so a restart neither
    hammers every source nor forgets one.
  * `digest`: a CronTrigger on a named weekday and time *with the newsletter's zone*
    (an IntervalTrigger would drift an hour across DST; `from_crontab('0 7 * * 1')` would
    fire on Tuesday). coalesce, one instance, a 6 h misfire grace. With `delivery:` it
    sends the issue (`catch_up`), else it writes the digest files.
Start-up: `catch_up` looks at the ledger, not at APScheduler: the last complete week's
issue, due and not fully sent, is sent once within `delivery.max_lateness_hours`, else held
for an editor. `SchedulerLock` keeps a second scheduler off the same database.
Config reload: at each fetch tick `LiveConfig.refresh` looks at feeds.yaml (mtime and size,
then a hash of the bytes) and reloads it when it changed. A broken edit is logged, every
problem, and the last good config keeps running; a changed digest time reschedules the
digest job. Both jobs read the config through the LiveConfig, so a reload reaches them.
Only the cli package imports this module.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Literal, Self

import sqlalchemy
import sqlalchemy.exc
import sqlalchemy.pool
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.digest import last_complete_week
from aggregator.exceptions import AggregatorError, ConfigError, ConfigProblem, SchedulerLocked
from aggregator.storage import StorageType
from aggregator.types import Config, DeliveryStatus, SourceResult

log = logging.getLogger("aggregator.scheduler")

TICK = timedelta(minutes=5)
DIGEST_MISFIRE_GRACE = timedelta(hours=6)
_UNFINISHED: tuple[DeliveryStatus, ...] = ("pending", "sending", "failed_temp")
_DIGEST_AT = re.compile(r"^(mon|tue|wed|thu|fri|sat|sun)\w*\s+(\d{1,2}):(\d{2})$", re.I)


def digest_trigger(config: Config) -> CronTrigger:
    """The weekly digest's trigger: a named weekday and a time in the newsletter's zone."""
    match = _DIGEST_AT.match(config.schedule.digest_cron.strip())
    if not match:
        raise ConfigError(
            ConfigProblem(
                str(config.path), None, "schedule.digest",
                f"{config.schedule.digest_cron!r} is not '<weekday> HH:MM' (e.g. 'mon 07:00')",
            )
        )  # fmt: skip
    day, hour, minute = match.group(1).lower(), int(match.group(2)), int(match.group(3))
    return CronTrigger(
        day_of_week=day, hour=hour, minute=minute, timezone=config.newsletter.timezone
    )


def next_digest_times(config: Config, now: datetime, count: int) -> list[datetime]:
    """The digest trigger's next `count` fire times after `now` (for `aggregator check`)."""
    trigger = digest_trigger(config)
    times: list[datetime] = []
    previous: datetime | None = None
    moment = now
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, moment)
        if fire is None:
            break
        times.append(fire)
        previous = moment = fire + timedelta(seconds=1)
    return times


def fetch_job(config: Config, storage: StorageType, report: Callable[[SourceResult], None]) -> None:
    """Fetch the due sources, then rebuild the feed if anything changed."""
    now = datetime.now(UTC)

    async def go() -> list[SourceResult]:
        async with pipeline.open_client(config) as client:
            return await pipeline.update_sources(config, storage, client, now, only_due=True)

    try:
        results = asyncio.run(go())
        for result in results:
            report(result)
        if any(r.new_items for r in results):
            pipeline.build_feed(config, storage, now)
        failed = sum(1 for r in results if not r.ok)
        _note_run(storage, "fetch", now, True, f"{len(results)} sources, {failed} failed")
    except AggregatorError as e:  # a storage or render failure: log it, try again next tick
        log.error("fetch job failed: %s", e)
        _note_run(storage, "fetch", now, False, str(e))


def _note_run(storage: StorageType, job: str, now: datetime, ok: bool, detail: str) -> None:
    # web (issue 7): /healthz shows each job's last run; a store that cannot take the note
    # must not stop the job.
    try:
        pipeline.record_job_run(storage, job, now, ok=ok, detail=detail)
    except AggregatorError as e:
        log.error("cannot record the %s job's run: %s", job, e)


def digest_due(config: Config, now: datetime) -> tuple[datetime, datetime, datetime]:
    """(start, end, due) of the last complete week's issue: `due` is the trigger's first fire
    time at or after the week's end (it may still be ahead of `now`)."""
    start, end = last_complete_week(now, config.newsletter.timezone)
    due = digest_trigger(config).get_next_fire_time(None, end)
    return start, end, due if due is not None else end


CatchUp = Literal["no delivery", "not due", "sent already", "held", "being sent elsewhere", "sent"]


def catch_up(config: Config, storage: StorageType, now: datetime) -> CatchUp:
    """Send the last complete week's issue if it is due and not fully sent (FAULTS P4).

    The ledger decides, not APScheduler: an issue that was never frozen, or has rows still
    pending, sending or failed_temp, is sent (once: the ledger skips what was sent). Later
    than `delivery.max_lateness_hours` after its time it is held for an editor instead, who
    sends it with `aggregator digest --send`. Used at start-up and by the weekly job.
    """
    if config.delivery is None:
        return "no delivery"
    start, end, due = digest_due(config, now)
    if now < due:
        return "not due"
    issue = storage.get_issue(start, end)
    if issue is not None and not storage.get_deliveries(issue.id, statuses=_UNFINISHED):
        return "sent already"
    late = now - due
    if late > timedelta(hours=config.delivery.max_lateness_hours):
        log.warning(
            "digest: the issue for %s to %s was due %s (%s ago, over delivery."
            "max_lateness_hours %s) and is not sent; held for an editor: send it with "
            "`aggregator digest --send`",
            start.isoformat(), end.isoformat(), due.isoformat(), late,
            config.delivery.max_lateness_hours,
        )  # fmt: skip
        return "held"
    try:
        with SendLock(config.database):
            report = pipeline.send_issue(config, storage, now, start=start, end=end)
    except SchedulerLocked as e:  # an editor's `digest --send` is on it
        log.warning("digest: %s", e)
        return "being sent elsewhere"
    log.info(
        "digest: issue %d sent to %d, failed %d (temporarily %d), skipped %d",
        report.issue.number, report.sent, report.failed, report.failed_temp, report.skipped,
    )  # fmt: skip
    return "sent"


def digest_job(config: Config, storage: StorageType, now: datetime | None = None) -> None:
    """The weekly job: send the issue when `delivery:` is configured, else write the files."""
    now = datetime.now(UTC) if now is None else now
    try:
        if config.delivery is not None:
            outcome = catch_up(config, storage, now)
            log.info("digest job: %s", outcome)
            _note_run(storage, "digest", now, True, outcome)
            return
        files = pipeline.build_digest(config, storage, now)
        log.info("digest written: %s", ", ".join(str(p) for p in files.paths))
        _note_run(storage, "digest", now, True, f"{len(files.paths)} files written")
    except AggregatorError as e:
        log.error("digest job failed: %s", e)
        _note_run(storage, "digest", now, False, str(e))


# --- one scheduler per database, one sender per database ----------------------------------


class DatabaseLock:
    """An exclusive lock named for one purpose on one database: an flock on
    <database>.<suffix>.lock for SQLite, pg_try_advisory_lock on a dedicated connection for
    PostgreSQL. Subclasses name the purpose; a held lock raises SchedulerLocked at once."""

    SUFFIX = ""
    PG_KEY = 0
    LOCKED = ""
    HINT = ""

    def __init__(self, database: str) -> None:
        self.database = database
        self._file: IO[bytes] | None = None
        self._conn: sqlalchemy.Connection | None = None
        self._engine: sqlalchemy.Engine | None = None

    def acquire(self) -> Self:
        url = sqlalchemy.make_url(self.database)
        if url.get_backend_name() == "sqlite":
            if url.database in (None, "", ":memory:"):
                return self  # a private in-memory database: no other process can share it
            path = Path(f"{url.database}.{self.SUFFIX}.lock")
            try:
                f = path.open("ab")
            except OSError as e:
                raise SchedulerLocked(f"cannot open the lock file {path}: {e}") from e
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                f.close()
                raise SchedulerLocked(f"{self.LOCKED} ({path}); {self.HINT}") from e
            self._file = f
            return self
        try:
            self._engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
            self._conn = self._engine.connect()
            got = self._conn.execute(
                sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.PG_KEY}
            ).scalar()
        except sqlalchemy.exc.SQLAlchemyError as e:
            self.release()
            raise SchedulerLocked(f"cannot take the {self.SUFFIX} lock: {e}") from e
        if not got:
            self.release()
            raise SchedulerLocked(
                f"{self.LOCKED} (PostgreSQL advisory lock {self.PG_KEY}); {self.HINT}"
            )
        return self

    def release(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
            f.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()  # the session ends: PostgreSQL drops its advisory locks
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class SchedulerLock(DatabaseLock):
    """Held while a scheduler runs (FAULTS P7): one `aggregator run` per database."""

    SUFFIX = "scheduler"
    PG_KEY = 0x61676772_73636864  # "aggrschd"
    LOCKED = "another scheduler holds the lock"
    HINT = "stop the other `aggregator run` first"


class SendLock(DatabaseLock):
    """Held while an issue is being sent (`digest --send`, the weekly job): the ledger
    resends rows left `sending` by a crash, so two senders at once would both send them."""

    SUFFIX = "send"
    PG_KEY = 0x61676772_73656E64  # "aggrsend"
    LOCKED = "another `digest --send` is sending an issue"
    HINT = "wait for it to finish (a rerun then sends only what is left)"


class LiveConfig:
    """The running config, reloaded from its file when the file changes.

    `refresh()` is cheap when nothing changed (one stat). A changed file that does not
    validate leaves `config` as it was; every problem is logged, once per edit.
    """

    def __init__(
        self, config: Config, on_digest_change: Callable[[Config], None] | None = None
    ) -> None:
        self.config = config
        self.path = config.path
        self.on_digest_change = on_digest_change
        self._stat = self._stat_of()
        self._hash = self._hash_of()

    def _stat_of(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _hash_of(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def refresh(self) -> bool:
        """Reload the config if its file changed and is valid; True when it was replaced."""
        stat = self._stat_of()
        if stat is not None and stat == self._stat:
            return False
        self._stat = stat
        digest = self._hash_of()
        if digest is None:
            log.error("config: cannot read %s; keeping the last good config", self.path)
            self._hash = None  # read it again as soon as it is back
            return False
        if digest == self._hash:
            return False  # touched, not changed
        self._hash = digest
        try:
            new = load_config(self.path)
        except ConfigError as e:
            for problem in e.problems:
                log.error("config: %s", problem)
            log.error(
                "config: %d problem(s) in %s; the last good config keeps running",
                len(e.problems),
                self.path,
            )
            return False
        old, self.config = self.config, new
        _log_changes(old, new)
        if _digest_key(old) != _digest_key(new) and self.on_digest_change is not None:
            try:
                self.on_digest_change(new)
            except ConfigError as e:  # a schedule digest_trigger cannot read
                for problem in e.problems:
                    log.error("config: %s", problem)
        return True


def _digest_key(config: Config) -> tuple[str, str]:
    return (config.schedule.digest_cron, config.newsletter.timezone)


def _log_changes(old: Config, new: Config) -> None:
    before, after = {s.id for s in old.sources}, {s.id for s in new.sources}
    added, removed = sorted(after - before), sorted(before - after)
    log.info(
        "config: reloaded %s: %d sources (added: %s; removed: %s)",
        new.path,
        len(new.sources),
        ", ".join(added) or "none",
        ", ".join(removed) or "none",
    )
    if old.database != new.database:
        # The open store stays; switching databases under a running scheduler is not safe.
        log.warning("config: storage.database changed; restart `aggregator run` to use it")


def live_fetch_job(
    live: LiveConfig, storage: StorageType, report: Callable[[SourceResult], None]
) -> None:
    """The fetch tick: pick up an edited feeds.yaml first, then fetch the due sources."""
    live.refresh()
    fetch_job(live.config, storage, report)


def live_digest_job(live: LiveConfig, storage: StorageType) -> None:
    digest_job(live.config, storage)


def make_scheduler(
    config: Config, storage: StorageType, report: Callable[[SourceResult], None]
) -> BlockingScheduler:
    # One worker: the jobs share the store, and a fetch tick is itself concurrent.
    scheduler = BlockingScheduler(
        timezone=config.newsletter.timezone,
        executors={"default": {"type": "threadpool", "max_workers": 1}},
    )

    def reschedule_digest(new: Config) -> None:
        trigger = digest_trigger(new)
        scheduler.reschedule_job("digest", trigger=trigger)
        log.info("config: digest rescheduled to %s (%s)", new.schedule.digest_cron,
                 new.newsletter.timezone)  # fmt: skip

    live = LiveConfig(config, on_digest_change=reschedule_digest)
    scheduler.add_job(
        live_fetch_job,
        IntervalTrigger(seconds=TICK.total_seconds(), timezone=config.newsletter.timezone),
        args=(live, storage, report),
        id="fetch",
        name="fetch due sources",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
        misfire_grace_time=int(TICK.total_seconds()),
        replace_existing=True,
    )
    scheduler.add_job(
        live_digest_job,
        digest_trigger(config),
        args=(live, storage),
        id="digest",
        name="weekly digest",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=int(DIGEST_MISFIRE_GRACE.total_seconds()),
        replace_existing=True,
    )
    return scheduler
