"""Frozen data that flows between the stages.

Source -> Fetched -> Entry -> Item -> Story -> Digest

Every stage takes and returns these values; none of them does I/O.
Must not import anything from the package (see tests/test_architecture.py).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, TypeVar

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


_T = TypeVar("_T", bound=type)


def pickled_by_fields(cls: _T) -> _T:
    """A frozen slots dataclass pickled as a call of the class with its fields' values, for
    the values a run sends between processes by the thousand (issue 8). By default such a
    class pickles through `dataclasses`' own __getstate__ and __setstate__, Python code that
    lists the fields on every call: over the benchmark's 30,000 items, a parse worker took
    0.65 s to pickle them and the store process 0.97 s to read them back (medians of 7);
    this way 0.34 and 0.80 s. Every field must be one of __init__'s (`init=False` is not).
    Put it above `@dataclass`, whose `slots=True` makes a new class."""
    names = [f.name for f in fields(cls)]
    if any(not f.init for f in fields(cls)) or len(names) < 2:
        raise TypeError(f"{cls.__name__}: every field an __init__ argument, two at least")
    values = operator.attrgetter(*names)

    def __reduce__(self: Any) -> tuple[type, tuple[Any, ...]]:
        return cls, values(self)

    cls.__reduce__ = __reduce__  # type: ignore[assignment]
    return cls


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
    weight: float = 1.0  # clustering (issue 4): lead choice and ranking


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
    description: str = ""  # classification (issue 5): what the newsletter is about


# --- classification (issue 5) ---------------------------------------------------------------

ClassifyModel = Literal["auto", "tfidf", "embeddings", "rules"]
DEFAULT_REVIEW_BELOW = 0.3  # confidence under which an item is listed by `aggregator review`


@dataclass(frozen=True, slots=True)
class Example:
    """A labelled text for the learned layer: `section` None means off-topic."""

    text: str
    section: str | None
    also: tuple[str, ...] = ()  # other sections an editor would accept
    origin: str = ""  # where it came from: "file.yaml:12", "correction of item 7"


@dataclass(frozen=True, slots=True)
class ClassifySettings:
    """feeds.yaml `classify:`: labelled example files, the model, the review threshold."""

    examples: tuple[Path, ...] = ()
    model: ClassifyModel = "auto"
    review_below: float = DEFAULT_REVIEW_BELOW
    use_corrections: bool = True


@dataclass(frozen=True, slots=True)
class Correction:
    """An editor's decision about a stored item: pinned to a section, or off-topic (None)."""

    item_id: int
    section: str | None
    created: datetime
    text: str = ""  # the item's title and teaser when corrected: the exported example


# --- end classification (issue 5) -------------------------------------------------------------


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


# --- the newsletter on the web (issue 7) -----------------------------------------------------

DEFAULT_CONFIRM_HOURS = 48.0  # a subscription's confirmation link expires after this


@dataclass(frozen=True, slots=True)
class WebSettings:
    """feeds.yaml `web:`: `aggregator serve` and `publish`. The site lives at newsletter.link;
    tokens are signed with the secret in delivery.unsubscribe_secret_env."""

    confirm_hours: float = DEFAULT_CONFIRM_HOURS
    per_address_per_day: int = 3  # confirmation messages to one address in 24 h
    per_client_per_hour: int = 20  # subscribe requests from one client address in 1 h
    max_body_bytes: int = 16 * 1024  # larger request bodies get 413


WebEventKind = Literal["address", "client"]


@dataclass(frozen=True, slots=True)
class JobRun:
    """The last run of a scheduler job (`fetch`, `digest`), for /healthz."""

    job: str
    last_run: datetime
    ok: bool
    detail: str = ""


# --- end web (issue 7) -----------------------------------------------------------------------


# --- story clustering and ranking (issue 4) --------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterSettings:
    """feeds.yaml `clustering:`: cross-source story clustering and the digest's ranking."""

    enabled: bool = True
    window_days: int = 14  # a new item meets the stories of the last N days
    threshold: float = 0.2  # lexical score at which an item joins a story
    semantic: Literal["auto", "on", "off"] = "auto"  # sentence embeddings when installed
    semantic_threshold: float = 0.8  # cosine at which the semantic signal may join
    top_stories: int = 5  # "Top stories" at the head of the digest; 0: none
    half_life_hours: float = 72.0  # ranking: a story's recency weight halves every N hours
    outlet_bonus: float = 0.5  # ranking: each further outlet adds this share


@dataclass(frozen=True, slots=True)
class StoryLink:
    """Why an item is in its story: the signal and score of the merge (or `lead`)."""

    item_id: int
    story_id: int
    signal: str  # lead, url, title, lexical, semantic, editor
    score: float
    matched_item_id: int | None = None
    detail: str = ""  # JSON: the evidence (shared names, numbers, words ...)
    created: datetime | None = None


@dataclass(frozen=True, slots=True)
class StoryOverride:
    """An editor's decision that survives re-clustering: two items together or apart."""

    id: int
    kind: Literal["together", "apart"]
    item_a: int
    item_b: int
    created: datetime


# --- end story clustering (issue 4) ----------------------------------------------------------


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
    classify: ClassifySettings = field(default_factory=ClassifySettings)  # issue 5
    web: WebSettings = field(default_factory=WebSettings)  # issue 7
    clustering: ClusterSettings = field(default_factory=ClusterSettings)  # issue 4

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


@pickled_by_fields  # issue 8: sent from the parse workers to the store process
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


@pickled_by_fields  # issue 8: as Item
@dataclass(frozen=True, slots=True)
class Placement:
    """Where classify put an item, and why."""

    section: str | None  # None: off-topic
    score: float = 0.0
    terms: tuple[str, ...] = ()
    scores: tuple[tuple[str, float], ...] = ()
    reason: str = ""
    confidence: float = 1.0  # classification (issue 5): 0..1, margin over the runner-up

    # --- story sections (issues 4 + 5) ---
    @property
    def by_editor(self) -> bool:
        """An editor set this placement (`aggregator items move/drop`)."""
        return self.reason.startswith(EDITOR_REASON)

    @property
    def dropped(self) -> bool:
        """An editor marked the item off-topic (`aggregator items drop`)."""
        return self.section is None and self.by_editor


# The reason prefix of every placement an editor set; re-classification never rewrites them.
EDITOR_REASON = "editor:"


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
    # The section the story had when its issue was frozen (PersonalIssues); None: computed.
    frozen_section: str | None = None

    # --- story sections (issues 4 + 5): stable, whichever member leads ---
    @property
    def members(self) -> tuple[StoredItem, ...]:
        return (self.lead, *self.others)

    @property
    def anchor(self) -> StoredItem | None:
        """The member whose placement is the story's section: the first-seen member an editor
        moved, else the first-seen member; members an editor dropped never count. None when
        an editor dropped every member."""
        if not self.others:  # (most stories) the one member, unless dropped
            return None if self.lead.placement.dropped else self.lead
        shown = [m for m in self.members if not m.placement.dropped]
        pinned = [m for m in shown if m.placement.by_editor]
        return min(pinned or shown, key=lambda m: (m.first_seen, m.id), default=None)

    @property
    def section(self) -> str | None:
        """The story's section: its anchor's (never the lead's, which ranking chooses)."""
        if self.frozen_section is not None:
            return self.frozen_section
        anchor = self.anchor
        return None if anchor is None else anchor.placement.section

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
    top: tuple[Story, ...] = ()  # "Top stories" (issue 4): the highest-ranked, any section

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
    # The issue's stories as frozen (migration 6); () for issues frozen before it.
    stories: tuple[FrozenStory, ...] = ()


@dataclass(frozen=True, slots=True)
class FrozenStory:
    """A story as its issue was frozen: its section and items (lead first); a personal copy
    is rebuilt from these, whatever joined, left or moved in the store since."""

    id: int
    section: str
    item_ids: tuple[int, ...]


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
