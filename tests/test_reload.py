"""Config reload under `aggregator run`: the fetch tick picks up an edited feeds.yaml.

No sleeping: the scheduler is built but never started; the tests call its jobs directly.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.scheduler import LiveConfig, make_scheduler
from aggregator.storage import open_storage
from tests.httpserver import static

RSS = (
    b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title><item><guid>{g}</guid>"
    b"<link>https://e.org/{g}</link><title>Police training {g}</title></item></channel></rss>"
)


def text(server, sources: list[str], digest: str = "mon 07:00") -> str:
    lines = "".join(f"  - {{id: {s}, name: {s}, url: '{server.url('/' + s)}'}}\n" for s in sources)
    return (
        "# the editor's file\n"
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, "
        "timezone: UTC}\nstorage: {database: 'sqlite:///a.db'}\noutput: {dir: out}\n"
        f"fetch: {{allow_private_network: true}}\nschedule: {{digest: '{digest}'}}\n"
        f"sources:\n{lines}"
        "sections:\n  - {id: training, title: Training, rules: [training]}\n"
    )


def edit(path: Path, new: str) -> None:
    path.write_text(new)
    # A later mtime even on a coarse clock, as an editor's save would give.
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


@pytest.fixture
def setup(tmp_path, http_server):
    for name in ("a", "b"):
        http_server.routes[f"/{name}"] = static(RSS.replace(b"{g}", name.encode()))
    path = tmp_path / "feeds.yaml"
    path.write_text(text(http_server, ["a"]))
    config = load_config(path)
    storage = open_storage(config.database, datetime.now(UTC))
    seen = []
    scheduler = make_scheduler(config, storage, seen.append)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    yield path, scheduler, jobs, seen, http_server
    storage.close()


def tick(job) -> None:
    job.func(*job.args)


def test_an_added_source_is_fetched_at_the_next_tick(setup):
    path, _, jobs, seen, server = setup
    tick(jobs["fetch"])
    assert [r.source_id for r in seen] == ["a"]
    edit(path, text(server, ["a", "b"]))
    tick(jobs["fetch"])
    assert [r.source_id for r in seen] == ["a", "b"]  # a is not due yet; b is new
    live = jobs["fetch"].args[0]
    assert isinstance(live, LiveConfig) and [s.id for s in live.config.sources] == ["a", "b"]
    assert jobs["digest"].args[0] is live  # the digest job sees the same, reloaded config


def test_a_broken_edit_is_logged_and_the_last_good_config_keeps_running(setup, caplog):
    path, _, jobs, seen, server = setup
    live = jobs["fetch"].args[0]
    good = live.config
    broken = text(server, ["a", "b"]).replace("  - {id: b, name: b,", "  - {id: b, nme: b,")
    edit(path, broken)
    with caplog.at_level(logging.ERROR, logger="aggregator.scheduler"):
        tick(jobs["fetch"])
    assert live.config is good
    assert [r.source_id for r in seen] == ["a"]  # the run went on with the good config
    messages = [r.getMessage() for r in caplog.records]
    assert any(f"{path}:9: sources[1]" in m and "nme" in m for m in messages), messages
    assert any("the last good config keeps running" in m for m in messages)

    # The same broken file is reported once, not at every tick.
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aggregator.scheduler"):
        tick(jobs["fetch"])
    assert caplog.records == []

    # Fixing it is picked up.
    edit(path, text(server, ["a", "b"]))
    tick(jobs["fetch"])
    assert [s.id for s in live.config.sources] == ["a", "b"]


def test_a_changed_digest_time_reschedules_the_digest_job(setup):
    path, scheduler, jobs, _, server = setup
    assert "day_of_week='mon'" in str(scheduler.get_job("digest").trigger)
    edit(path, text(server, ["a"], digest="fri 16:30"))
    tick(jobs["fetch"])
    trigger = str(scheduler.get_job("digest").trigger)
    assert "day_of_week='fri'" in trigger and "hour='16'" in trigger and "minute='30'" in trigger


def test_a_touched_but_unchanged_file_is_not_reloaded(setup):
    path, _, jobs, _, _ = setup
    live = jobs["fetch"].args[0]
    first = live.config
    edit(path, path.read_text())
    assert live.refresh() is False and live.config is first


def test_a_missing_file_is_reported_and_the_last_good_config_kept(setup, caplog):
    path, _, jobs, _, server = setup
    live = jobs["fetch"].args[0]
    path.unlink()
    with caplog.at_level(logging.ERROR, logger="aggregator.scheduler"):
        assert live.refresh() is False
    assert "cannot read" in caplog.text and live.config.sources
    path.write_text(text(server, ["a", "b"]))
    assert live.refresh() is True
