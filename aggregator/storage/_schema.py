"""Tables and migrations, in SQLAlchemy Core.

The schema is only ever changed by appending a migration to MIGRATIONS; the version applied
is kept in `schema_version`. `metadata` describes the latest version (what the queries use).
Imports only SQLAlchemy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    inspect,  # issue 5
    select,
    text,  # issue 5
)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zones and PostgreSQL's timestamptz answers in the session zone;
    storing naive UTC and re-attaching UTC on the way out gives one behaviour everywhere.
    """

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} given to the store; pass an aware one")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("applied_at", UTCDateTime, nullable=False),
)

sources = Table(
    "sources",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("last_attempt", UTCDateTime),
    Column("last_success", UTCDateTime),
    Column("last_status", Integer),
    Column("failures", Integer, nullable=False, default=0),
    Column("error_kind", String(64)),
    Column("error", Text),
    Column("next_due", UTCDateTime),
)

stories = Table(
    "stories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("first_seen", UTCDateTime, nullable=False),
    Index("ix_stories_first_seen", "first_seen"),
)

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("source_id", String(64), nullable=False),
    Column("guid", Text, nullable=False),
    Column("url", Text),
    Column("link", Text),
    Column("title", Text, nullable=False),
    Column("title_key", Text, nullable=False),
    Column("summary_html", Text, nullable=False),
    Column("summary_text", Text, nullable=False),
    Column("published", UTCDateTime),
    Column("published_raw", Text),
    Column("author", Text),
    Column("first_seen", UTCDateTime, nullable=False),
    Column("last_seen", UTCDateTime, nullable=False),
    Column("story_id", Integer, ForeignKey("stories.id"), nullable=False),
    Column("section", String(64)),
    Column("score", Float, nullable=False, default=0.0),
    Column("terms", Text, nullable=False, default="[]"),  # JSON list
    Column("scores", Text, nullable=False, default="[]"),  # JSON list of [section, score]
    Column("reason", Text, nullable=False, default=""),
    Column("confidence", Float),  # classification (issue 5): NULL before migration 4
    UniqueConstraint("source_id", "guid", name="uq_items_source_guid"),
    Index("ix_items_url", "url"),
    Index("ix_items_source_title", "source_id", "title_key"),
    Index("ix_items_first_seen", "first_seen"),
    Index("ix_items_story", "story_id"),
)


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("address", String(320), nullable=False),  # addr-spec, domain lower-cased
    Column("address_key", String(320), nullable=False),  # fully lower-cased: the merge key
    Column("name", Text, nullable=False, default=""),
    Column("status", String(16), nullable=False),
    Column("sections", Text, nullable=False, default="[]"),  # JSON list; [] means all
    Column("created", UTCDateTime, nullable=False),
    Column("confirmed", UTCDateTime),
    Column("updated", UTCDateTime, nullable=False),
    UniqueConstraint("address_key", name="uq_subscribers_address_key"),
)

issues = Table(
    "issues",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("number", Integer, nullable=False),
    Column("period_start", UTCDateTime, nullable=False),
    Column("period_end", UTCDateTime, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("subject", Text, nullable=False),
    Column("html", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("story_ids", Text, nullable=False, default="[]"),  # JSON list
    # [[story id, section, [item ids, lead first]], ...] as frozen (migration 6); NULL before
    Column("frozen_stories", Text),
    UniqueConstraint("period_start", "period_end", name="uq_issues_period"),
    UniqueConstraint("number", name="uq_issues_number"),
)

deliveries = Table(
    "deliveries",
    metadata,
    Column("issue_id", Integer, ForeignKey("issues.id"), primary_key=True),
    Column("subscriber_id", Integer, ForeignKey("subscribers.id"), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("reply", Text, nullable=False, default=""),
    Column("updated", UTCDateTime, nullable=False),
    Index("ix_deliveries_status", "issue_id", "status"),
)

# --- story clustering (issue 4) --------------------------------------------------------------

# Why each item is in its story: one row per item (the lead's signal is "lead"), rewritten
# when the item moves. `detail` is JSON evidence for `aggregator stories --explain`.
story_links = Table(
    "story_links",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("story_id", Integer, ForeignKey("stories.id"), nullable=False),
    Column("signal", String(32), nullable=False),
    Column("score", Float, nullable=False, default=0.0),
    Column("matched_item_id", Integer),
    Column("detail", Text, nullable=False, default=""),
    Column("created", UTCDateTime, nullable=False),
    Index("ix_story_links_story", "story_id"),
)

# An editor's merge ("together") or split ("apart") of two items; re-clustering obeys them.
story_overrides = Table(
    "story_overrides",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("item_a", Integer, ForeignKey("items.id"), nullable=False),
    Column("item_b", Integer, ForeignKey("items.id"), nullable=False),
    Column("created", UTCDateTime, nullable=False),
)


# The optional semantic signal's sentence embeddings, computed once per item (float32 bytes).
item_vectors = Table(
    "item_vectors",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("vector", LargeBinary, nullable=False),
)


def _v3(conn: Connection) -> None:
    for table in (story_links, story_overrides, item_vectors):
        table.create(conn)


# --- end story clustering (issue 4) ----------------------------------------------------------

# --- classification (issue 5) ---------------------------------------------------------------

# An editor's decision about an item: pinned to a section, or off-topic (section NULL). It
# survives re-classification, and `aggregator examples export` turns it into an example.
corrections = Table(
    "corrections",
    metadata,
    Column("item_id", Integer, ForeignKey("items.id"), primary_key=True),
    Column("section", String(64)),
    Column("text", Text, nullable=False, default=""),
    Column("created", UTCDateTime, nullable=False),
)


def _v4(conn: Connection) -> None:
    # `items` is created from the latest metadata on a fresh database (migration 1), so the
    # column is only added where migration 1 ran before it existed.
    if "confidence" not in {c["name"] for c in inspect(conn).get_columns("items")}:
        conn.execute(text("ALTER TABLE items ADD COLUMN confidence FLOAT"))
    corrections.create(conn)


# --- end classification (issue 5) -----------------------------------------------------------

# --- web (issue 7) -------------------------------------------------------------------------

# One row per subscribe request (kind "client", keyed by a hash of the client address) and per
# confirmation message sent (kind "address", keyed by a hash of the address): the rate limits
# count rows in a window. Hashes, not addresses: the log holds nothing personal.
web_events = Table(
    "web_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),
    Column("key", String(64), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Index("ix_web_events_kind_key_at", "kind", "key", "at"),
    Index("ix_web_events_at", "at"),  # pruning
)

# The last run of each scheduler job, for /healthz.
job_runs = Table(
    "job_runs",
    metadata,
    Column("job", String(32), primary_key=True),
    Column("last_run", UTCDateTime, nullable=False),
    Column("ok", Integer, nullable=False),
    Column("detail", Text, nullable=False, default=""),
)


def _v5(conn: Connection) -> None:
    for table in (web_events, job_runs):
        table.create(conn)


# --- end web (issue 7) ---------------------------------------------------------------------


def _v1(conn: Connection) -> None:
    for table in (sources, stories, items):
        table.create(conn)


def _v2(conn: Connection) -> None:
    for table in (subscribers, issues, deliveries):
        table.create(conn)


# --- frozen issue stories (review finding 6) -------------------------------------------------


def _v6(conn: Connection) -> None:
    # A fresh database got the column from the latest metadata (migration 2).
    if "frozen_stories" not in {c["name"] for c in inspect(conn).get_columns("issues")}:
        conn.execute(text("ALTER TABLE issues ADD COLUMN frozen_stories TEXT"))


# Append only. Each step gets a connection inside the migration's transaction.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1),
    (2, _v2),
    (3, _v3),  # story clustering (issue 4)
    (4, _v4),  # classification: corrections, confidence (issue 5)
    (5, _v5),  # web (issue 7)
    (6, _v6),  # the stories and items of each frozen issue (review finding 6)
]
LATEST = MIGRATIONS[-1][0]


def migrate(conn: Connection, now: datetime) -> int:
    """Apply the missing migrations; return the version the database is now at."""
    schema_version.create(conn, checkfirst=True)
    current = (
        conn.execute(
            select(schema_version.c.version).order_by(schema_version.c.version.desc()).limit(1)
        ).scalar()
        or 0
    )
    for version, step in MIGRATIONS:
        if version > current:
            step(conn)
            conn.execute(schema_version.insert().values(version=version, applied_at=now))
            current = version
    return current
