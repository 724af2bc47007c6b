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
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

from aggregator.deliver import (
    Outgoing,
    build_message,
    check_issue,
    send_messages,
    write_messages,
)
from aggregator.digest import select_digest
from aggregator.exceptions import DeliveryError, IssueHeld
from aggregator.output import write_outputs
from aggregator.pipeline._cluster import ranked, ranking  # issue 4
from aggregator.pipeline._outputs import (
    _source_maps,
    build_digest,
    digest_basename,
    digest_period,
    render_period,
)
from aggregator.render import make_environment, render_digest
from aggregator.storage import StorageType
from aggregator.types import (
    Config,
    DeliverySettings,
    DeliveryStatus,
    FrozenStory,  # review finding 6
    Issue,
    Story,
    Subscriber,
)

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
    skipped: int = 0  # subscribers whose sections hold no story of this issue
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
    frozen = [  # review finding 6: what PersonalIssues rebuilds from
        FrozenStory(story.id, ds.section.id, tuple(m.id for m in story.members))
        for ds in digest.sections
        for story in ds.stories
    ]
    return storage.add_issue(
        start,
        end,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        story_ids=story_ids,
        now=now,
        stories=frozen,
    )


def preview_issue(
    config: Config,
    storage: StorageType,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    out_dir: Path | None = None,
) -> tuple[list[Path], Issue | None]:
    """Write what the period's issue looks like as HTML and text; freezes nothing.

    An issue already frozen for the period is written as it is (that is what subscribers get);
    otherwise the period is rendered now, as `digest` does. Returns (paths, the frozen issue).
    """
    start, end = digest_period(config, now, start, end)
    issue = storage.get_issue(start, end)
    if issue is None:
        return list(
            build_digest(config, storage, now, start=start, end=end, out_dir=out_dir).paths
        ), None
    base = digest_basename(start, end, config.newsletter.timezone)
    paths = write_outputs(
        out_dir or config.output_dir, {f"{base}.html": issue.html, f"{base}.txt": issue.text}
    )
    return list(paths), issue


def issue_section_counts(storage: StorageType, issue: Issue) -> dict[str, int]:
    """How many of the frozen issue's stories each section holds: as frozen, or, for an
    issue frozen before migration 6, from the store."""
    counts: dict[str, int] = {}
    if issue.stories:
        for frozen in issue.stories:
            counts[frozen.section] = counts.get(frozen.section, 0) + 1
        return counts
    wanted = set(issue.story_ids)
    for story in storage.iter_story_outlines(since=issue.start, until=issue.end):
        if story.id in wanted and story.section is not None:
            counts[story.section] = counts.get(story.section, 0) + 1
    return counts


def check_before_send(config: Config, storage: StorageType, issue: Issue) -> list[str]:
    """The pre-send checks of `issue` (see `deliver.check_issue`); [] when it may go out."""
    settings = _settings(config)
    return check_issue(
        issue,
        issue_section_counts(storage, issue),
        min_stories=settings.min_stories,
        max_per_section=config.digest.max_per_section,
    )


def send_test_copy(
    config: Config,
    storage: StorageType,
    now: datetime,
    address: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    env: Mapping[str, str] | None = None,
) -> tuple[Issue, DeliveryStatus, str]:
    """One copy of the period's issue to `address` (already validated): the ledger and the
    subscriber list are not touched. Returns (issue, status, the relay's reply)."""
    settings = _settings(config)
    env = os.environ if env is None else env
    issue, _ = freeze_issue(config, storage, now, start=start, end=end)
    # Subscriber 0 is never stored (ids start at 1): its Message-ID and token are its own.
    sub = Subscriber(0, address, "", "active", (), now)
    body = build_message(issue, sub, config.newsletter, settings, now=now)
    out = Outgoing(0, address, body)
    if settings.mode == "files":
        folder = outbox_dir(config) / f"issue-{issue.number:04d}"
        path = write_messages([out], folder)[0]
        test_path = path.with_name("test-copy.eml")
        path.replace(test_path)
        return issue, "sent", f"written to {test_path}"
    status, reply = send_one(out, settings, env)
    return issue, status, reply


def outbox_dir(config: Config) -> Path:
    """Where `mode: files` writes messages: `outbox/` next to feeds.yaml.

    Never under output.dir: `publish` makes that folder public, and every message carries
    secrets (its unsubscribe link, a confirmation link)."""
    folder = config.path.parent / "outbox"
    out = config.output_dir.resolve()
    if folder.resolve() == out or folder.resolve().is_relative_to(out):
        raise DeliveryError(
            f"{config.path}: output.dir {config.output_dir} holds {folder}: the messages' "
            "links would be published; use an output.dir of its own"
        )
    return folder


# --- one message outside the ledger, the signing secret (issue 7: shared with the web) ----


def send_one(
    out: Outgoing, settings: DeliverySettings, env: Mapping[str, str] | None
) -> tuple[DeliveryStatus, str]:
    """Send one message outside the ledger (a test copy, a confirmation): (status, the
    relay's reply); ("failed_temp", "not attempted") if no attempt was made."""
    result: list[tuple[DeliveryStatus, str]] = []

    def record(subscriber_id: int, status: DeliveryStatus, reply: str, attempted: bool) -> None:
        if attempted:
            result.append((status, reply))

    send_messages([out], settings, record, env=os.environ if env is None else env)
    return result[-1] if result else ("failed_temp", "not attempted")


def signing_secret(config: Config, env: Mapping[str, str] | None = None) -> str:
    """The value of the variable delivery.unsubscribe_secret_env names, or "" (no one-click
    unsubscribe token; the site's subscription pages stay closed)."""
    env = os.environ if env is None else env
    name = config.delivery.unsubscribe_secret_env if config.delivery else ""
    return env.get(name, "") if name else ""


# --- end one message, the signing secret ----------------------------------------------------


class PersonalIssues:
    """The frozen issue cut down to a subscriber's chosen sections, one render per choice.

    The frozen issue stays the source of truth: a personal copy is rendered from the frozen
    issue's own stories (never a new selection), keeps its number, subject and Message-ID
    scheme, and is rendered again identically after a crash. None: nothing to send.
    """

    def __init__(self, config: Config, storage: StorageType, issue: Issue) -> None:
        self.config = config
        self.storage = storage
        self.issue = issue
        self._stories: list[Story] | None = None
        self._cache: dict[tuple[str, ...], Issue | None] = {}

    def stories(self) -> list[Story]:
        """The frozen issue's stories, rebuilt from the items and sections it froze (review
        finding 6): an item that joined a story later, an editor's move or a re-clustering
        since changes nothing. An issue frozen before migration 6 falls back to the store's
        stories, cut to the members first seen before the issue was frozen."""
        if self._stories is None:
            self._stories = self._frozen() if self.issue.stories else self._from_store()
        return self._stories

    def _frozen(self) -> list[Story]:
        ids = [i for f in self.issue.stories for i in f.item_ids]
        found = self.storage.get_items_by_id(ids)
        stories = []
        for f in self.issue.stories:
            members = [found[i] for i in f.item_ids if i in found]
            if members:
                stories.append(Story(f.id, members[0], tuple(members[1:]), f.section))
        return stories

    def _from_store(self) -> list[Story]:
        wanted, created = set(self.issue.story_ids), self.issue.created
        found = []
        for s in self.storage.iter_stories(since=self.issue.start, until=self.issue.end):
            members = [m for m in s.members if m.first_seen <= created]
            if s.id in wanted and members:
                found.append(Story(s.id, members[0], tuple(members[1:])))
        return ranked(self.config, found, self.issue.end)[0]  # issue 4: leads

    def for_sections(self, chosen: tuple[str, ...]) -> Issue | None:
        if not chosen:
            return self.issue  # every section: the frozen issue itself
        key = tuple(sorted(set(chosen)))
        if key not in self._cache:
            self._cache[key] = self._render(set(key))
        return self._cache[key]

    def _render(self, chosen: set[str]) -> Issue | None:
        config, issue = self.config, self.issue
        sections = [s for s in config.sections if s.id in chosen]
        stories = [s for s in self.stories() if s.section in chosen]
        if not stories:
            return None
        names, urls = _source_maps(config)
        digest = select_digest(
            stories,
            sections,
            config.newsletter,
            names,
            start=issue.start,
            end=issue.end,
            now=issue.created,
            settings=config.digest,
            rank_key=ranking(config, min(issue.created, issue.end))[1],  # issue 4
            top_count=config.clustering.top_stories,  # issue 4
        )
        rendered = render_digest(
            digest,
            make_environment(config.templates_dir),
            source_urls=urls,
            sender=config.digest.sender,
            teaser_chars=config.digest.teaser_chars,
        )
        return replace(
            issue,
            html=rendered.html,
            text=rendered.text,
            story_ids=tuple(s.id for ds in digest.sections for s in ds.stories),
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
    force: bool = False,
) -> SendReport:
    """Freeze (or reuse) the period's issue, enqueue every active subscriber, send what is due.

    mode: files writes one .eml per active subscriber under outbox/issue-<n>/ (next to
    feeds.yaml) and leaves the ledger alone (a dry run). `clock` gives the time recorded for
    each ledger row (default: `now`). Unless `force`, the pre-send checks run first: a failed
    check raises IssueHeld (nothing sent, the ledger untouched).
    """
    settings = _settings(config)
    env = os.environ if env is None else env
    secret = signing_secret(config, env)
    issue, created = freeze_issue(config, storage, now, start=start, end=end)
    if not force:
        reasons = check_before_send(config, storage, issue)
        if reasons:
            raise IssueHeld(issue.number, reasons)
    report = SendReport(issue=issue, created=created)
    active = {s.id: s for s in storage.get_subscribers(status="active")}
    personal = PersonalIssues(config, storage, issue)

    def message(sub: Subscriber) -> Outgoing | None:
        mine = personal.for_sections(sub.sections)
        if mine is None:  # none of the chosen sections has a story: no empty mail
            if settings.mode == "smtp":
                reply = (
                    f"skipped: no story in the chosen sections ({', '.join(sub.sections)}) "
                    f"of issue {issue.number}"
                )
                storage.set_delivery(issue.id, sub.id, "skipped", now, reply=reply)
            report.skipped += 1
            return None
        try:
            body = build_message(
                mine, sub, config.newsletter, settings, now=now, unsubscribe_secret=secret
            )
        except DeliveryError as e:  # this one subscriber's message: the rest go on
            if settings.mode == "smtp":
                storage.set_delivery(issue.id, sub.id, "failed_perm", now, reply=str(e))
                report.failed_perm += 1
            return None
        return Outgoing(sub.id, sub.address, body)

    if settings.mode == "files":
        folder = outbox_dir(config) / f"issue-{issue.number:04d}"
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
