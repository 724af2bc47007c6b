"""Frozen data that flows between the stages.

Source -> Fetched -> Entry -> Item -> Story -> Digest

Every stage takes and returns these values; none of them does I/O.
Must not import anything from the package (see tests/test_architecture.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

SourceKind = Literal["feed", "page", "auto"]

DEFAULT_INTERVAL = timedelta(hours=1)
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 15.0
DEFAULT_DEADLINE = 30.0
DEFAULT_MAX_REDIRECTS = 5
DEFAULT_MAX_ITEMS_PER_RUN = 1000
DEFAULT_RETRY_DELAYS = (2.0, 8.0)
DEFAULT_FETCH_BUDGET = 60.0
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_PARSE_TIMEOUT = 10.0  # seconds of wall clock to parse one response
DEFAULT_PARSE_MEMORY_MB = 512  # address space of a parse worker


# --- config -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selectors:
    """CSS selectors for a page source; `item` is required, the rest are relative to an item."""

    item: str
    title: str | None = None
    link: str | None = None
    summary: str | None = None
    date: str | None = None


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    name: str
    url: str
    kind: SourceKind = "auto"
    interval: timedelta = DEFAULT_INTERVAL
    section: str | None = None  # default section when no rule decides
    selectors: Selectors | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    allow_private_network: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One weighted term of a section rule: a word/phrase, or a regular expression."""

    pattern: str
    weight: float = 1.0
    regex: bool = False


@dataclass(frozen=True, slots=True)
class Section:
    id: str
    title: str
    description: str = ""
    rules: tuple[Rule, ...] = ()
    exclude: tuple[str, ...] = ()  # phrases that veto this section
    min_score: float = 1.0


@dataclass(frozen=True, slots=True)
class Topic:
    """The relevance gate: an item must match one of these terms (if any are given)."""

    include: tuple[Rule, ...] = ()
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Newsletter:
    title: str
    link: str
    description: str
    timezone: str


@dataclass(frozen=True, slots=True)
class FetchSettings:
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    read_timeout: float = DEFAULT_READ_TIMEOUT
    deadline: float = DEFAULT_DEADLINE
    max_redirects: int = DEFAULT_MAX_REDIRECTS
    concurrency: int = 8
    per_host: int = 2
    allow_private_network: bool = False
    user_agent: str = ""  # empty: the project default
    # In-run retries of transient failures: one retry per delay (seconds, +-retry_jitter).
    retry_delays: tuple[float, ...] = DEFAULT_RETRY_DELAYS
    retry_jitter: float = 0.25
    # Wall-clock for one source in one run: every attempt (each within `deadline`) and
    # the waits between them.
    fetch_budget: float = DEFAULT_FETCH_BUDGET
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES
    # The parse budget: each response is parsed in a killable worker process.
    parse_timeout: float = DEFAULT_PARSE_TIMEOUT
    parse_memory_mb: int = DEFAULT_PARSE_MEMORY_MB
    parse_workers: int = 0  # 0: one per core, at most 2


@dataclass(frozen=True, slots=True)
class Schedule:
    digest_cron: str = "mon 07:00"  # weekday + time, in the newsletter's timezone
    fetch_interval: timedelta = DEFAULT_INTERVAL


@dataclass(frozen=True, slots=True)
class DigestSettings:
    max_per_section: int = 20
    teaser_chars: int = 280
    feed_items: int = 100
    sender: str = ""  # From: header of the .eml; empty means "<title> <noreply@host of link>"


DeliveryMode = Literal["smtp", "files"]
SmtpSecurity = Literal["none", "starttls", "tls"]
DEFAULT_SMTP_PORTS: dict[str, int] = {"none": 25, "starttls": 587, "tls": 465}
DEFAULT_SMTP_TIMEOUT = 60.0


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """The relay; secrets are named environment variables, never values in feeds.yaml."""

    host: str
    port: int = 587
    security: SmtpSecurity = "starttls"
    username_env: str = ""
    password_env: str = ""


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    mode: DeliveryMode
    sender: str  # `from:` "Name <addr@host>"
    reply_to: str = ""
    smtp: SmtpSettings | None = None  # required when mode is smtp
    rate_per_minute: int = 0  # 0: no limit
    timeout: float = DEFAULT_SMTP_TIMEOUT  # seconds per SMTP operation
    # HMAC key for the one-click unsubscribe token; without it only the mailto form is sent.
    unsubscribe_secret_env: str = ""
    min_stories: int = 1  # pre-send check: an issue with fewer stories is held
    # Catch-up at start-up: an issue due longer ago than this is held for an editor.
    max_lateness_hours: float = 24.0


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    newsletter: Newsletter
    database: str  # SQLAlchemy URL, relative sqlite paths already resolved
    output_dir: Path
    templates_dir: Path | None
    sources: tuple[Source, ...]
    sections: tuple[Section, ...]
    topic: Topic = field(default_factory=Topic)
    fetch: FetchSettings = field(default_factory=FetchSettings)
    schedule: Schedule = field(default_factory=Schedule)
    digest: DigestSettings = field(default_factory=DigestSettings)
    delivery: DeliverySettings | None = None

    def source(self, source_id: str) -> Source:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)


# --- fetch / parse ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validators:
    """HTTP cache validators kept per source for conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class Fetched:
    """A source's response: bytes and the URL they came from (after redirects)."""

    source_id: str
    url: str
    status: int
    content: bytes
    content_type: str | None = None
    validators: Validators = Validators()
    not_modified: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One item as the parser found it: raw-ish text, links already absolute."""

    guid: str | None
    link: str | None
    title: str | None
    title_is_html: bool = False
    summary: str | None = None  # HTML (or plain text; HTML-escaped by the parser if so)
    published: datetime | None = None  # timezone-aware when the source said a zone
    published_raw: str | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """What a parser made of a Fetched: entries and what it had to say about them."""

    format: str  # rss20, atom10, jsonfeed11, page, ...
    title: str | None
    link: str | None
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SourceState:
    """What the store remembers of a source between runs."""

    source_id: str
    validators: Validators = Validators()
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    last_status: int | None = None
    failures: int = 0  # consecutive
    error_kind: str | None = None
    error: str | None = None
    next_due: datetime | None = None


# --- items and stories --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Item:
    """A normalized entry: plain-text title, sanitized HTML, canonical URL, UTC date."""

    source_id: str
    guid: str  # stable within the source (guid, else link, else content hash)
    url: str | None  # canonical URL, the dedupe key
    link: str | None  # the link as published (http/https only)
    title: str
    title_key: str  # normalized title for same-source duplicate detection
    summary_html: str
    summary_text: str
    published: datetime | None  # aware, UTC
    published_raw: str | None = None
    author: str | None = None


@dataclass(frozen=True, slots=True)
class Placement:
    """Where classify put an item, and why."""

    section: str | None  # None: off-topic
    score: float = 0.0
    terms: tuple[str, ...] = ()
    scores: tuple[tuple[str, float], ...] = ()
    reason: str = ""


@dataclass(frozen=True, slots=True)
class StoredItem:
    """An item as the store knows it."""

    id: int
    item: Item
    story_id: int
    first_seen: datetime
    placement: Placement


@dataclass(frozen=True, slots=True)
class Story:
    """One event: a lead item and the other items (other outlets) about it."""

    id: int
    lead: StoredItem
    others: tuple[StoredItem, ...] = ()

    @property
    def section(self) -> str | None:
        return self.lead.placement.section

    @property
    def first_seen(self) -> datetime:
        return min(i.first_seen for i in (self.lead, *self.others))


@dataclass(frozen=True, slots=True)
class DigestSection:
    section: Section
    stories: tuple[Story, ...]
    more: int = 0  # stories left out by max_per_section


@dataclass(frozen=True, slots=True)
class Digest:
    newsletter: Newsletter
    start: datetime  # aware, inclusive
    end: datetime  # aware, exclusive
    sections: tuple[DigestSection, ...]
    source_names: tuple[tuple[str, str], ...]  # (id, name)
    generated_at: datetime

    @property
    def story_count(self) -> int:
        return sum(len(s.stories) for s in self.sections)


@dataclass(frozen=True, slots=True)
class Rendered:
    html: str
    text: str
    eml: bytes
    subject: str


# --- subscribers, issues, deliveries -----------------------------------------------------

SubscriberStatus = Literal["pending", "active", "unsubscribed", "bounced"]
SUBSCRIBER_STATUSES: tuple[SubscriberStatus, ...] = ("pending", "active", "unsubscribed", "bounced")
# skipped: the subscriber's sections hold no story of the issue (final, like sent).
DeliveryStatus = Literal["pending", "sending", "sent", "failed_temp", "failed_perm", "skipped"]


@dataclass(frozen=True, slots=True)
class Subscriber:
    """A reader of the newsletter; `sections` empty means every section."""

    id: int
    address: str  # addr-spec, domain lower-cased
    name: str
    status: SubscriberStatus
    sections: tuple[str, ...]
    created: datetime
    confirmed: datetime | None = None
    updated: datetime | None = None


@dataclass(frozen=True, slots=True)
class NewSubscriber:
    """A subscriber to add or merge: None leaves a stored value as it is."""

    address: str
    name: str = ""
    sections: tuple[str, ...] | None = None
    status: SubscriberStatus | None = None


@dataclass(frozen=True, slots=True)
class Issue:
    """A frozen digest: created once per period, never rebuilt."""

    id: int
    number: int
    start: datetime
    end: datetime
    created: datetime
    subject: str
    html: str
    text: str
    story_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One issue to one subscriber: the ledger row."""

    issue_id: int
    subscriber_id: int
    status: DeliveryStatus
    attempts: int
    reply: str
    updated: datetime


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SourceResult:
    """The outcome of one source in one run: counts, or the error that stopped it."""

    source_id: str
    url: str
    new_items: int = 0
    seen_items: int = 0
    skipped: int = 0
    not_modified: bool = False
    error: Exception | None = None
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None
