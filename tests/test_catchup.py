"""The weekly send on schedule: start-up catch-up from the ledger and the scheduler lock.

Frozen clock throughout: the functions get `now`; nothing waits for APScheduler.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from aggregator.config import load_config
from aggregator.exceptions import SchedulerLocked
from aggregator.scheduler import SchedulerLock, SendLock, catch_up, digest_due, digest_job
from aggregator.storage import open_storage
from aggregator.types import NewSubscriber
from tests.test_cli import run
from tests.test_deliver import smtp_delivery, write_config

BERLIN = ZoneInfo("Europe/Berlin")
DUE = datetime(2026, 11, 30, 7, 0, tzinfo=BERLIN)  # Monday 07:00, the week Nov 23-29 is due
ADDRESSES = ["a@example.org", "b@example.org", "c@example.org"]


def setup(tmp_path, port, extra_delivery=""):
    delivery = smtp_delivery(port)
    if extra_delivery:
        delivery = delivery.replace("{mode: smtp,", "{mode: smtp, " + extra_delivery + ",")
    config = load_config(write_config(tmp_path, delivery))
    storage = open_storage(config.database, DUE)
    storage.add_subscribers([NewSubscriber(a) for a in ADDRESSES], DUE)
    return config, storage


def test_due_time_is_the_trigger_after_the_week():
    config = load_config(write_config_path())
    start, end, due = digest_due(config, datetime(2026, 12, 2, 12, 0, tzinfo=UTC))
    assert start.astimezone(BERLIN) == datetime(2026, 11, 23, tzinfo=BERLIN)
    assert end.astimezone(BERLIN) == datetime(2026, 11, 30, tzinfo=BERLIN)
    assert due == DUE


def write_config_path():
    import tempfile
    from pathlib import Path

    return write_config(Path(tempfile.mkdtemp()), "{mode: files, from: 'N <n@t.example.org>'}")


def test_down_across_monday_0700_back_at_0930_sends_once(tmp_path, smtp_server):
    config, storage = setup(tmp_path, smtp_server.port)
    try:
        assert catch_up(config, storage, DUE - timedelta(hours=1)) == "not due"
        assert smtp_server.mailbox.messages == []
        back = DUE + timedelta(hours=2, minutes=30)
        assert catch_up(config, storage, back) == "sent"
        assert smtp_server.mailbox.copies() == {a: 1 for a in ADDRESSES}
        # the misfired cron job (6 h grace) and a restart both find it sent: no second issue
        digest_job(config, storage, back + timedelta(minutes=1))
        assert catch_up(config, storage, back + timedelta(minutes=5)) == "sent already"
        assert smtp_server.mailbox.copies() == {a: 1 for a in ADDRESSES}
        assert len(storage.get_issues()) == 1
    finally:
        storage.close()


def test_back_three_days_later_holds_it_for_an_editor(tmp_path, smtp_server, caplog):
    config, storage = setup(tmp_path, smtp_server.port)
    try:
        with caplog.at_level(logging.WARNING, logger="aggregator.scheduler"):
            assert catch_up(config, storage, DUE + timedelta(days=3, hours=2)) == "held"
        assert "held for an editor" in caplog.text and "digest --send" in caplog.text
        assert smtp_server.mailbox.messages == []
        assert storage.get_issues() == []  # nothing frozen either: the editor decides
    finally:
        storage.close()


def test_max_lateness_is_configurable(tmp_path, smtp_server):
    config, storage = setup(tmp_path, smtp_server.port, "max_lateness_hours: 100")
    try:
        assert config.delivery is not None and config.delivery.max_lateness_hours == 100
        assert catch_up(config, storage, DUE + timedelta(days=3, hours=2)) == "sent"
        assert len(smtp_server.mailbox.messages) == 3
    finally:
        storage.close()


def test_a_half_sent_issue_is_finished_at_start_up(tmp_path, smtp_server):
    config, storage = setup(tmp_path, smtp_server.port)
    smtp_server.mailbox.defer = {"b@example.org"}
    try:
        assert catch_up(config, storage, DUE + timedelta(minutes=1)) == "sent"
        assert smtp_server.mailbox.copies() == {"a@example.org": 1, "c@example.org": 1}
        smtp_server.mailbox.defer.clear()
        assert catch_up(config, storage, DUE + timedelta(hours=1)) == "sent"  # the retry
        assert smtp_server.mailbox.copies() == {a: 1 for a in ADDRESSES}
        assert catch_up(config, storage, DUE + timedelta(hours=2)) == "sent already"
    finally:
        storage.close()


def test_without_delivery_the_job_writes_files(tmp_path):
    from tests.test_cli import write_config as plain_config

    config = load_config(
        plain_config(tmp_path, "  - {id: s, name: S, url: 'http://127.0.0.1:9/f'}\n")
    )
    storage = open_storage(config.database, DUE)
    try:
        assert catch_up(config, storage, DUE + timedelta(hours=1)) == "no delivery"
        digest_job(config, storage, DUE + timedelta(hours=1))
        assert list(config.output_dir.glob("digest-*.html"))
    finally:
        storage.close()


def test_a_second_scheduler_on_the_same_database_refuses(tmp_path):
    config = load_config(write_config(tmp_path, "{mode: files, from: 'N <n@t.example.org>'}"))
    (tmp_path / "data").mkdir(exist_ok=True)
    with SchedulerLock(config.database):
        with pytest.raises(SchedulerLocked, match="another scheduler holds the lock"):
            SchedulerLock(config.database).acquire()
        code, _, err = run("--config", str(config.path), "run")
        assert code == 7
        assert "another scheduler holds the lock" in err
    with SchedulerLock(config.database):  # released: the next one may start
        pass


def test_one_sender_at_a_time(tmp_path, smtp_server):
    """The ledger resends rows left `sending` by a crash, so a second sender running at the
    same time would send them again: `digest --send` and the weekly job share a lock."""
    config, storage = setup(tmp_path, smtp_server.port)
    try:
        with SendLock(config.database):
            with pytest.raises(SchedulerLocked, match="another `digest --send` is sending"):
                SendLock(config.database).acquire()
            # The weekly job steps aside; an editor's send is refused with exit 7.
            assert catch_up(config, storage, DUE + timedelta(hours=1)) == "being sent elsewhere"
            code, _, err = run("--config", str(config.path), "digest", "--send")
            assert code == 7, err
            assert "another `digest --send` is sending an issue" in err
            assert smtp_server.mailbox.messages == []
            # The scheduler's own lock is another lock: a running scheduler does not stop
            # an editor's send once the weekly job is done.
            with SchedulerLock(config.database):
                pass
        assert catch_up(config, storage, DUE + timedelta(hours=1)) == "sent"  # released
        assert smtp_server.mailbox.copies() == {a: 1 for a in ADDRESSES}
    finally:
        storage.close()
