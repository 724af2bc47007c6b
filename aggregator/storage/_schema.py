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
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    select,
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


def _v1(conn: Connection) -> None:
    for table in (sources, stories, items):
        table.create(conn)


def _v2(conn: Connection) -> None:
    for table in (subscribers, issues, deliveries):
        table.create(conn)


# Append only. Each step gets a connection inside the migration's transaction.
MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [(1, _v1), (2, _v2)]
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
