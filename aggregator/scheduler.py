"""The long-running scheduler: APScheduler jobs that call pipeline functions, nothing else.

Two jobs:
  * `fetch`: every few minutes, fetch the sources that are due. Each source's own interval
    (and its failure backoff) lives in the store as `next_due`, so a restart neither
    hammers every source nor forgets one.
  * `digest`: a CronTrigger on a named weekday and time *with the newsletter's zone*
    (an IntervalTrigger would drift an hour across DST; `from_crontab('0 7 * * 1')` would
    fire on Tuesday). coalesce, one instance, a 6 h misfire grace: a server that was down
    at 07:00 and is back by 13:00 still writes the week's digest once.
Only cli.py imports this module.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from aggregator import pipeline
from aggregator.exceptions import AggregatorError, ConfigError, ConfigProblem
from aggregator.storage import StorageType
from aggregator.types import Config, SourceResult

log = logging.getLogger("aggregator.scheduler")

TICK = timedelta(minutes=5)
DIGEST_MISFIRE_GRACE = timedelta(hours=6)
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
    except AggregatorError as e:  # a storage or render failure: log it, try again next tick
        log.error("fetch job failed: %s", e)


def digest_job(config: Config, storage: StorageType) -> None:
    now = datetime.now(UTC)
    try:
        files = pipeline.build_digest(config, storage, now)
        log.info("digest written: %s", ", ".join(str(p) for p in files.paths))
    except AggregatorError as e:
        log.error("digest job failed: %s", e)


def make_scheduler(
    config: Config, storage: StorageType, report: Callable[[SourceResult], None]
) -> BlockingScheduler:
    # One worker: the jobs share the store, and a fetch tick is itself concurrent.
    scheduler = BlockingScheduler(
        timezone=config.newsletter.timezone,
        executors={"default": {"type": "threadpool", "max_workers": 1}},
    )
    scheduler.add_job(
        fetch_job,
        IntervalTrigger(seconds=TICK.total_seconds(), timezone=config.newsletter.timezone),
        args=(config, storage, report),
        id="fetch",
        name="fetch due sources",
        next_run_time=datetime.now(UTC),
        coalesce=True,
        max_instances=1,
        misfire_grace_time=int(TICK.total_seconds()),
        replace_existing=True,
    )
    scheduler.add_job(
        digest_job,
        digest_trigger(config),
        args=(config, storage),
        id="digest",
        name="weekly digest",
        coalesce=True,
        max_instances=1,
        misfire_grace_time=int(DIGEST_MISFIRE_GRACE.total_seconds()),
        replace_existing=True,
    )
    return scheduler
