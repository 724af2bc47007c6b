"""The weekly send: freeze the period's issue, enqueue the subscribers, send from the ledger.

Part of the composition root (see `aggregator.pipeline`). The ledger (one row per issue and
subscriber) is the truth: a rerun, after a crash or a dropped connection, sends only the rows
that are not `sent` or `failed_perm`; a row left `sending` by a crash is sent again (with the
same Message-ID: at most one recognisable duplicate, FAULTS P2).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from aggregator.deliver import (
    Outgoing,
    build_message,
    send_messages,
    write_messages,
)
from aggregator.exceptions import DeliveryError
from aggregator.pipeline._outputs import digest_period, render_period
from aggregator.storage import StorageType
from aggregator.types import Config, DeliverySettings, DeliveryStatus, Issue, Subscriber

MAX_ATTEMPTS = 5  # a temporary failure this many times becomes permanent
# Wait before retrying a temporary failure: after the 1st, 2nd, 3rd... attempt (FAULTS D1).
RETRY_DELAYS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=25))
_TODO: tuple[DeliveryStatus, ...] = ("pending", "sending", "failed_temp")


@dataclass(slots=True)
class SendReport:
    issue: Issue
    created: bool  # the issue was frozen by this run
    enqueued: int = 0
    sent: int = 0
    failed_temp: int = 0
    failed_perm: int = 0
    waiting: int = 0  # temporary failures not yet due for a retry
    files: list[Path] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)  # the whole ledger of the issue

    @property
    def failed(self) -> int:
        return self.failed_temp + self.failed_perm


def freeze_issue(
    config: Config,
    storage: StorageType,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
) -> tuple[Issue, bool]:
    """The issue of the period (default: the last complete week), frozen on first use.

    A period that already has an issue gets it back unchanged: a rebuild after a crash
    sends the same issue, never a new one (FAULTS P3).
    """
    start, end = digest_period(config, now, start, end)
    issue = storage.get_issue(start, end)
    if issue is not None:
        return issue, False
    digest, rendered = render_period(config, storage, now, start, end)
    story_ids = [story.id for ds in digest.sections for story in ds.stories]
    return storage.add_issue(
        start,
        end,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        story_ids=story_ids,
        now=now,
    )


def retry_due(attempts: int, updated: datetime, now: datetime) -> bool:
    """Whether a temporary failure after `attempts` tries may be retried at `now`."""
    if attempts <= 0:
        return True
    delay = RETRY_DELAYS[min(attempts, len(RETRY_DELAYS)) - 1]
    return now >= updated + delay


def _settings(config: Config) -> DeliverySettings:
    if config.delivery is None:
        raise DeliveryError(
            f"{config.path}: no delivery: section; add delivery: {{mode: smtp, from: ..., "
            "smtp: {host: ..., port: ...}} (or mode: files for a dry run)"
        )
    return config.delivery


def send_issue(
    config: Config,
    storage: StorageType,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], datetime] | None = None,
) -> SendReport:
    """Freeze (or reuse) the period's issue, enqueue every active subscriber, send what is due.

    mode: files writes one .eml per active subscriber under <output.dir>/issue-<n>/ and
    leaves the ledger alone (a dry run). `clock` gives the time recorded for each ledger row
    (default: `now`).
    """
    settings = _settings(config)
    env = os.environ if env is None else env
    secret = env.get(settings.unsubscribe_secret_env, "") if settings.unsubscribe_secret_env else ""
    issue, created = freeze_issue(config, storage, now, start=start, end=end)
    report = SendReport(issue=issue, created=created)
    active = {s.id: s for s in storage.get_subscribers(status="active")}

    def message(sub: Subscriber) -> Outgoing | None:
        try:
            body = build_message(
                issue, sub, config.newsletter, settings, now=now, unsubscribe_secret=secret
            )
        except DeliveryError as e:  # this one subscriber's message: the rest go on
            if settings.mode == "smtp":
                storage.set_delivery(issue.id, sub.id, "failed_perm", now, reply=str(e))
                report.failed_perm += 1
            return None
        return Outgoing(sub.id, sub.address, body)

    if settings.mode == "files":
        folder = config.output_dir / f"issue-{issue.number:04d}"
        built = (message(s) for s in active.values())
        report.files = write_messages((o for o in built if o is not None), folder)
        return report

    report.enqueued = storage.add_deliveries(issue.id, list(active), now)
    todo: list[Subscriber] = []
    for row in storage.get_deliveries(issue.id, statuses=_TODO):
        sub = active.get(row.subscriber_id)
        if sub is None:
            continue  # unsubscribed (or bounced) since it was enqueued: not sent, row kept
        if row.status == "failed_temp":
            if row.attempts >= MAX_ATTEMPTS:
                reply = f"gave up after {row.attempts} attempts; last: {row.reply}"
                storage.set_delivery(issue.id, sub.id, "failed_perm", now, reply=reply)
                report.failed_perm += 1
                continue
            if not retry_due(row.attempts, row.updated, now):
                report.waiting += 1
                continue
        todo.append(sub)

    def outgoing() -> Iterator[Outgoing]:
        for sub in todo:
            out = message(sub)
            if out is not None:
                yield out

    def record(subscriber_id: int, status: DeliveryStatus, reply: str, attempted: bool) -> None:
        when = clock() if clock is not None else now
        storage.set_delivery(
            issue.id, subscriber_id, status, when, reply=reply, attempted=attempted
        )

    try:
        counts = send_messages(outgoing(), settings, record, env=env, sleep=sleep)
    finally:
        rows = storage.get_deliveries(issue.id)
        report.statuses = {}
        for r in rows:
            report.statuses[r.status] = report.statuses.get(r.status, 0) + 1
    report.sent += counts.sent
    report.failed_temp += counts.failed_temp
    report.failed_perm += counts.failed_perm
    return report
