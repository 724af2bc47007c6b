"""scheduler: the triggers and jobs, checked without waiting for a clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from aggregator.config import load_config
from aggregator.exceptions import ConfigError
from aggregator.scheduler import digest_job, digest_trigger, fetch_job, make_scheduler
from aggregator.storage import open_storage
from aggregator.types import Schedule
from tests.httpserver import static

ROOT = Path(__file__).resolve().parent.parent


def fire_times(trigger: CronTrigger, start: datetime, n: int) -> list[datetime]:
    times, previous, now = [], None, start
    for _ in range(n):
        nxt = trigger.get_next_fire_time(previous, now)
        assert nxt is not None
        times.append(nxt)
        previous, now = nxt, nxt
    return times


@pytest.mark.parametrize(
    ("zone", "around"),
    [("Europe/Berlin", datetime(2026, 3, 20)), ("Europe/Berlin", datetime(2026, 10, 19)),
     ("America/New_York", datetime(2026, 3, 2)), ("America/New_York", datetime(2026, 10, 26))],
)  # fmt: skip
def test_digest_fires_monday_0700_local_across_dst(zone, around):
    config = load_config(ROOT / "feeds.yaml")
    config = dataclasses.replace(
        config, newsletter=dataclasses.replace(config.newsletter, timezone=zone)
    )
    trigger = digest_trigger(config)
    assert isinstance(trigger, CronTrigger) and str(trigger.timezone) == zone
    tz = ZoneInfo(zone)
    for t in fire_times(trigger, around.replace(tzinfo=tz), 3):
        local = t.astimezone(tz)
        assert (local.weekday(), local.hour, local.minute) == (0, 7, 0), local


def test_bad_digest_schedule_is_a_config_error():
    config = load_config(ROOT / "feeds.yaml")
    config = dataclasses.replace(config, schedule=Schedule(digest_cron="0 7 * * 1"))
    with pytest.raises(ConfigError, match=r"schedule\.digest"):
        digest_trigger(config)


def test_scheduler_has_both_jobs_with_safe_settings(tmp_path):
    config = load_config(ROOT / "feeds.yaml")
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", datetime.now(UTC))
    try:
        scheduler = make_scheduler(config, storage, lambda r: None)
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {"fetch", "digest"}
        digest = jobs["digest"]
        assert digest.coalesce and digest.max_instances == 1
        assert digest.misfire_grace_time >= 6 * 3600
        assert isinstance(digest.trigger, CronTrigger)
    finally:
        storage.close()


def test_jobs_call_the_pipeline(tmp_path, http_server):
    http_server.routes["/f.xml"] = static(
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item><guid>1</guid>"
        b"<link>https://e.org/1</link><title>Police training</title></item></channel></rss>"
    )
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, "
        "timezone: UTC}\nstorage: {database: 'sqlite:///a.db'}\noutput: {dir: out}\n"
        f"fetch: {{allow_private_network: true}}\n"
        f"sources:\n  - {{id: f, name: F, url: '{http_server.url('/f.xml')}'}}\n"
        "sections:\n  - {id: training, title: Training, rules: [training]}\n"
    )
    config = load_config(path)
    storage = open_storage(config.database, datetime.now(UTC))
    seen = []
    try:
        fetch_job(config, storage, seen.append)
        assert [r.new_items for r in seen] == [1]
        assert (tmp_path / "out" / "feed.xml").is_file()
        fetch_job(config, storage, seen.append)  # not due again: nothing fetched
        assert len(seen) == 1
        digest_job(config, storage)
        assert list((tmp_path / "out").glob("digest-*.eml"))
    finally:
        storage.close()
