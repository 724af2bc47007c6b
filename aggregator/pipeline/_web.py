"""What the newsletter's web front needs from the store: feeds, issues, subscriptions, health.

Part of the composition root (see `aggregator.pipeline`): `aggregator.web` (the ASGI app and
the static export) calls these and never touches storage or the stages itself. Every function
takes `now`; the web layer reads the clock.

Feeds are built from the same stories and views as feed.xml (`_outputs.feed_stories`), so a
story looks the same in RSS, Atom and JSON Feed. Each feed's date is when its content last
changed (the newest item to join any of its stories, or the newest issue), not the clock: the
bytes, and so the ETag, change only when the content does, and Last-Modified moves with them.

The archive is what subscribers got: an issue is public once its period is over and at least
one subscriber's copy went out (a `sent` delivery). A frozen issue that was held by the
pre-send checks, or only sent as a test copy, is not.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal
from urllib.parse import quote

from aggregator.deliver import Outgoing, unsubscribe_token, write_messages
from aggregator.exceptions import DeliveryError, StorageError
from aggregator.pipeline._outputs import _source_maps, feed_stories
from aggregator.pipeline._send import outbox_dir, send_one
from aggregator.pipeline._sources import HEALTH_ORDER, source_health
from aggregator.render import render_atom, render_feed, render_issues_feed, render_json_feed
from aggregator.storage import StorageType
from aggregator.subscribers import (
    MAX_TOKEN_CHARS,
    SubscriberError,
    build_confirmation_message,
    check_confirm_token,
    confirm_token,
    confirm_token_subscriber,
)
from aggregator.types import Config, Issue, JobRun, NewSubscriber, Section, Story, Subscriber

FeedKind = Literal["rss", "atom", "json"]
FEED_TYPES: dict[str, str] = {
    "rss": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
    "json": "application/feed+json; charset=utf-8",
}
FEED_PATHS: dict[FeedKind, str] = {"rss": "feed.xml", "atom": "feed.atom", "json": "feed.json"}
ISSUES_FEED = "issues.xml"
ISSUES_FEED_LIMIT = 20  # issues.xml carries the newest issues' whole HTML: not all of them
# Before any story or issue exists a page still needs a date; a fixed one keeps it stable.
EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
log = logging.getLogger("aggregator.web")


@dataclass(frozen=True, slots=True)
class FeedDoc:
    """One rendered feed: its bytes, Content-Type, and when its content last changed."""

    body: bytes
    content_type: str
    updated: datetime


def site_url(config: Config, path: str = "") -> str:
    """An absolute URL on the newsletter's site (newsletter.link is the site's root)."""
    return config.newsletter.link.rstrip("/") + "/" + path.lstrip("/")


def issue_url(config: Config, number: int) -> str:
    return site_url(config, f"issues/{number}")


# --- feeds ---------------------------------------------------------------------------------


def story_changed(story: Story) -> datetime:
    """When the story last changed: its newest member's arrival (a new outlet joining, or a
    new story with an old publication date, changes the feed's bytes; so must its date)."""
    return max(i.first_seen for i in (story.lead, *story.others))


def find_section(config: Config, section_id: str) -> Section | None:
    return next((s for s in config.sections if s.id == section_id), None)


def render_site_feed(
    config: Config,
    storage: StorageType,
    kind: FeedKind,
    now: datetime,
    *,
    section: Section | None = None,
) -> FeedDoc:
    """The latest stories as RSS, Atom or JSON Feed; with `section`, only that section's (RSS
    at sections/<id>.xml)."""
    stories = feed_stories(config, storage, now, section.id if section else None)
    updated = max((story_changed(s) for s in stories), default=EPOCH)
    names, urls = _source_maps(config)
    newsletter = config.newsletter
    if section is not None:
        newsletter = replace(
            newsletter,
            title=f"{newsletter.title}: {section.title}",
            description=section.description or f"{section.title}, from {newsletter.title}",
        )
        self_url = site_url(config, f"sections/{section.id}.xml")
    else:
        self_url = site_url(config, FEED_PATHS[kind])
    limit = config.digest.feed_items
    args = (stories, newsletter, config.sections, names, urls, self_url)
    if kind == "atom":
        body = render_atom(*args, now=updated, limit=limit)
    elif kind == "json":
        body = render_json_feed(*args, limit=limit)
    else:
        body = render_feed(*args, now=updated, limit=limit)
    return FeedDoc(body, FEED_TYPES[kind], updated)


def public_issues(storage: StorageType, now: datetime, *, bodies: bool = False) -> list[Issue]:
    """The archive, newest first: every issue whose week is over and that went out to
    subscribers; without `bodies`, no html and text (see `public_issue` for one with its
    body)."""
    return storage.get_sent_issues(now, bodies=bodies)


def public_issue(storage: StorageType, now: datetime, number: int | None = None) -> Issue | None:
    """One public issue with its body (default: the latest); None if there is no such issue
    or it is not public."""
    found = storage.get_sent_issues(now, limit=1, number=number)
    return found[0] if found else None


def issues_updated(issues: Sequence[Issue]) -> datetime:
    """When the archive last changed (the newest issue's freezing); every page links the
    others, so this is each page's Last-Modified."""
    return max((i.created for i in issues), default=EPOCH)


def render_site_issues_feed(config: Config, storage: StorageType, now: datetime) -> FeedDoc:
    """issues.xml: one RSS item per published issue (the newest ISSUES_FEED_LIMIT), with
    its whole HTML."""
    issues = storage.get_sent_issues(now, limit=ISSUES_FEED_LIMIT)
    updated = issues_updated(issues)
    body = render_issues_feed(
        issues,
        config.newsletter,
        site_url(config, ISSUES_FEED),
        {i.number: issue_url(config, i.number) for i in issues},
        updated,
    )
    return FeedDoc(body, FEED_TYPES["rss"], updated)


# --- subscriptions -------------------------------------------------------------------------

SubscribeResult = Literal["sent", "already_active", "address_limited"]
ConfirmResult = Literal["confirmed", "malformed", "forged", "expired"]


def _event_key(secret: str, value: str) -> str:
    # Keyed with the site's secret: the rate-limit log cannot be reversed by hashing a list
    # of addresses or of IPv4 space.
    return hmac.new(secret.encode(), value.lower().encode(), hashlib.sha256).hexdigest()


def client_key(client: str) -> str:
    """The rate-limit identity of a client address: an IPv4 address as it is, an IPv6
    address by its /64 (one host usually gets a whole /64 and can rotate within it)."""
    try:
        ip = ipaddress.ip_address(client)
    except ValueError:
        return client
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def client_allowed(
    config: Config, storage: StorageType, client: str, secret: str, now: datetime
) -> bool:
    """Count one subscribe request from `client` (its IP address); False when it has made
    `web.per_client_per_hour` already (the request is then not counted: a client that keeps
    trying is not locked out for longer). Check and count are one step in the store, so a
    burst of concurrent requests gets no more than the limit."""
    # Rows older than the longest window are of no use to any limit (an indexed delete).
    storage.delete_web_events(now - timedelta(days=2))
    return storage.add_web_event_if_below(
        "client",
        _event_key(secret, f"client:{client_key(client)}"),
        now,
        since=now - timedelta(hours=1),
        limit=config.web.per_client_per_hour,
    )


def confirmations_dir(config: Config) -> Path:
    """Where `mode: files` writes confirmation messages: `outbox/confirmations/` next to
    feeds.yaml (see `outbox_dir`: never under output.dir, the links are secrets)."""
    return outbox_dir(config) / "confirmations"


def send_confirmation(config: Config, out: Outgoing, env: Mapping[str, str] | None) -> None:
    """Send (or, with `mode: files`, write to `confirmations_dir`) one confirmation message;
    DeliveryError if the relay does not take it."""
    settings = config.delivery
    if settings is None:
        raise DeliveryError(f"{config.path}: no delivery: section; subscriptions need one")
    if settings.mode == "files":
        write_messages([out], confirmations_dir(config))
        return
    status, reply = send_one(out, settings, env)
    if status != "sent":
        raise DeliveryError(f"the relay did not accept the confirmation message: {reply}")


def request_subscription(
    config: Config,
    storage: StorageType,
    address: str,
    now: datetime,
    *,
    secret: str,
) -> tuple[SubscribeResult, Outgoing | None]:
    """Double opt-in, step 1, for a normalized `address`: a pending subscriber (if new) and
    the confirmation message to send (`send_confirmation`), with a signed link that expires
    after `web.confirm_hours`.

    Nothing becomes active here. An active subscriber gets no message; an address that had
    `web.per_address_per_day` messages in 24 h gets no more. The caller shows the same page
    whatever this returns, and sends after answering, so neither the page nor its timing
    tells anybody who is subscribed.
    """
    settings = config.delivery
    if settings is None:
        raise DeliveryError(f"{config.path}: no delivery: section; subscriptions need one")
    sub = storage.get_subscriber(address)
    if sub is not None and sub.status == "active":
        return "already_active", None
    # Counted before sending, check and count in one step: a relay that fails half-way still
    # counts, and a burst of concurrent requests for one address mails it at most the limit.
    if not storage.add_web_event_if_below(
        "address",
        _event_key(secret, f"address:{address}"),
        now,
        since=now - timedelta(days=1),
        limit=config.web.per_address_per_day,
    ):
        return "address_limited", None
    if sub is None:
        try:
            [(sub, _)] = storage.add_subscribers([NewSubscriber(address, status="pending")], now)
        except StorageError:
            # A concurrent request for the same address inserted it first (the unique key
            # refused ours): use that row. Anything else is still an error.
            sub = storage.get_subscriber(address)
            if sub is None:
                raise
    expires = now + timedelta(hours=config.web.confirm_hours)
    token = confirm_token(sub.id, sub.address, expires, secret)
    url = site_url(config, f"confirm?token={quote(token, safe='.')}")
    try:
        body = build_confirmation_message(
            sub.address,
            url,
            newsletter_title=config.newsletter.title,
            sender=settings.sender,
            now=now,
            hours=config.web.confirm_hours,
        )
    except SubscriberError as e:
        raise DeliveryError(str(e)) from e
    return "sent", Outgoing(sub.id, sub.address, body)


def confirm_subscriber(
    storage: StorageType, token: str, now: datetime, *, secret: str, apply: bool
) -> tuple[ConfirmResult, Subscriber | None]:
    """Double opt-in, step 2: check the token; with `apply`, make its subscriber active
    (idempotent: confirming twice changes nothing more)."""
    subscriber_id = confirm_token_subscriber(token)
    if subscriber_id is None:
        return "malformed", None
    sub = storage.get_subscriber_by_id(subscriber_id)
    if sub is None:
        return "forged", None
    reason = check_confirm_token(token, sub.address, secret, now)
    if reason is not None:
        return reason, None  # type: ignore[return-value]
    if apply and sub.status != "active":
        [(sub, _)] = storage.add_subscribers([NewSubscriber(sub.address, status="active")], now)
    return "confirmed", sub


def _plausible(token: str) -> bool:
    # hmac.compare_digest refuses non-ASCII str with TypeError: such a token (and a huge
    # one) is refused before any comparison.
    return token.isascii() and len(token) <= MAX_TOKEN_CHARS


def unsubscribe_token_subscriber(token: str, secret: str) -> int | None:
    """The subscriber id of a valid `deliver.unsubscribe_token`, else None (forged, garbled,
    non-ASCII, or no secret configured). Constant-time comparison."""
    if not _plausible(token):
        return None
    head, sep, _ = token.partition(".")
    if not secret or not sep or not head.isascii() or not head.isdigit() or len(head) > 12:
        return None
    if not hmac.compare_digest(unsubscribe_token(int(head), secret), token):
        return None
    return int(head)


def unsubscribe(
    storage: StorageType, subscriber_id: int, now: datetime, *, apply: bool
) -> Subscriber | None:
    """The token's subscriber; with `apply`, no longer active (idempotent: an unsubscribed or
    bounced subscriber stays as it is)."""
    sub = storage.get_subscriber_by_id(subscriber_id)
    if sub is not None and apply and sub.status in ("active", "pending"):
        sub = storage.set_subscriber_status(sub.address, "unsubscribed", now) or sub
    return sub


# --- health --------------------------------------------------------------------------------


def record_job_run(
    storage: StorageType, job: str, now: datetime, *, ok: bool, detail: str = ""
) -> None:
    """Remember that a scheduler job ran (for /healthz)."""
    storage.set_job_run(JobRun(job, now, ok, detail))


def site_health(config: Config, storage: StorageType, now: datetime) -> dict[str, object]:
    """/healthz: the database answers, the scheduler's last runs, how many sources are broken.
    `ok` is False only when the database does not answer (a monitor should page for that);
    broken sources are a number for a dashboard, not an outage.

    Public, so it says nothing an operator's log should keep to itself: no error text (it
    can name the database host and user) and no job details, only whether each job's last
    run went well. The error goes to the log."""
    try:
        storage.ping()
        runs = storage.get_job_runs()
        health = source_health(config, storage, now)
    except StorageError as e:
        log.error("healthz: %s", e)
        return {"ok": False, "database": "error"}
    counts = {status: 0 for status in HEALTH_ORDER}
    for h in health:
        counts[h.status] = counts.get(h.status, 0) + 1
    last = max((r.last_run for r in runs.values()), default=None)
    return {
        "ok": True,
        "database": "ok",
        "scheduler_last_run": last.isoformat() if last is not None else None,
        "scheduler": {
            job: {"last_run": run.last_run.isoformat(), "ok": run.ok}
            for job, run in sorted(runs.items())
        },
        "sources": {"total": len(health), **counts},
    }
