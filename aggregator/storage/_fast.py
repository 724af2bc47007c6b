"""The hot statements of a source's transaction, sent on the DBAPI cursor (issue 8, speed).

A cycle of the benchmark stores 30,000 items from 1,000 sources, one transaction each, on a
thread that shares the GIL with the event loop. Through `Connection.execute`, most of that
thread's SQL time was SQLAlchemy Core's Python: per call a cache key, an execution context
and a result object; per row a parameter dict, its processing and the bind conversions. Here
each statement's SQL is written once per dialect, parameters are tuples built in one
comprehension, and each column's own bind processor (UTCDateTime, SQLite's DATETIME and
FLOAT) is applied exactly as SQLAlchemy applies it, once per call for a value all rows share:
the rows, ids and values stored are the same (tests/test_storage_fast.py compares them with
SQLAlchemy Core's, row by row). IN lists are padded (with their last value) to a few sizes,
so SQLite's statement cache and psycopg's prepared statements see the same texts again.

Measured by replaying the benchmark's 1,000 stores in one process on SQLite (CPU time of the
storage calls, three paired runs): 9.55, 9.12, 9.19 s before, 5.09, 5.67, 5.54 s after, of
which about 4 s is SQLite's own work (its commits alone 1.7 s). get_item_ids 1.3 -> 0.4 s,
get_story_ids 0.9 -> 0.5, add_stories 1.0 -> 0.4, add_items 2.8 -> 1.7, add_story_links
0.9 -> 0.4, set_source_state 0.5 -> 0.1. Transactions still begin and commit through
SQLAlchemy (about 0.15 ms each).

A driver's error is raised as SQLAlchemy raises it (`DBAPIError.instance`: IntegrityError,
OperationalError ..., a bind conversion's error as StatementError; a lost connection is
invalidated), so `_wrap` turns it into one StorageError, as for every other statement.

Imports only `types`, `exceptions`, the schema and `_util`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Connection, Table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from aggregator.exceptions import StorageError
from aggregator.storage._schema import items, sources, stories, story_links
from aggregator.storage._util import CHUNK, _chunks
from aggregator.types import Item, Placement, StoryLink

Bind = Callable[[Any], Any]

# The order of each statement's parameter tuple (keep in sync with the comprehensions below)
ITEM_COLUMNS = (
    "source_id", "guid", "url", "link", "title", "title_key", "summary_html", "summary_text",
    "published", "published_raw", "author", "first_seen", "last_seen", "story_id", "section",
    "score", "terms", "scores", "reason", "confidence",
)  # fmt: skip
LINK_COLUMNS = ("item_id", "story_id", "signal", "score", "matched_item_id", "detail", "created")
STATE_COLUMNS = (
    "etag", "last_modified", "last_attempt", "last_success", "last_status", "failures",
    "error_kind", "error", "next_due", "id",
)  # fmt: skip
# The columns whose values add_items / add_story_links convert (the datetimes and floats); a
# dialect that has a bind processor for any other of their columns is refused (`FastSql`).
ITEM_BINDS = ("published", "first_seen", "last_seen", "score", "confidence")
LINK_BINDS = ("score", "created")


def _padded(values: list[Any]) -> list[Any]:
    """1..CHUNK values, the last repeated up to the next power of two (or CHUNK): an IN list
    with duplicates selects the same rows, and each statement has a few texts, not CHUNK."""
    size = min(CHUNK, 1 << (len(values) - 1).bit_length())
    return values + values[-1:] * (size - len(values))


def _same(value: Any) -> Any:
    return value


class FastSql:
    """The SQL texts and bind conversions of one dialect, built once per storage."""

    def __init__(self, dialect: Dialect) -> None:
        marks = {"qmark": "?", "format": "%s", "pyformat": "%s"}
        if dialect.paramstyle not in marks:
            raise StorageError(f"unsupported database driver paramstyle {dialect.paramstyle!r}")
        self._dialect = dialect
        self._mark = marks[dialect.paramstyle]
        self._quote = q = dialect.identifier_preparer.quote
        self._dbapi_error: type[Exception] = dialect.loaded_dbapi.Error
        self._texts: dict[tuple[str, int], str] = {}
        self._item_sql = self._insert_sql(items, ITEM_COLUMNS)
        self._link_sql = self._insert_sql(story_links, LINK_COLUMNS)
        self._state_sql = self._insert_sql(sources, STATE_COLUMNS)
        sets = ", ".join(f"{q(c)} = {self._mark}" for c in STATE_COLUMNS[:-1])
        self._update_state = f"UPDATE {q('sources')} SET {sets} WHERE {q('id')} = {self._mark}"
        for table, names, converted in (
            (items, ITEM_COLUMNS, ITEM_BINDS),
            (story_links, LINK_COLUMNS, LINK_BINDS),
        ):
            if missed := [n for n in names if n not in converted and self._processor(table, n)]:
                raise StorageError(
                    f"{dialect.name}: no fast path for the bind conversion of {table.name}."
                    f"{', '.join(missed)}"
                )
        self._items = {n: self._bind(items, n, self._item_sql) for n in ITEM_BINDS}
        self._links = {n: self._bind(story_links, n, self._link_sql) for n in LINK_BINDS}
        self._state = [self._bind(sources, n, self._state_sql) for n in STATE_COLUMNS]

    # --- building blocks ------------------------------------------------------------------

    def _processor(self, table: Table, name: str) -> Bind | None:
        """The column's bind processor for this dialect (what SQLAlchemy applies), or None."""
        type_ = table.c[name].type.dialect_impl(self._dialect)
        return type_.bind_processor(self._dialect)

    def _bind(self, table: Table, name: str, sql: str) -> Bind:
        """The column's bind conversion, raising as SQLAlchemy does (a StatementError)."""
        processor = self._processor(table, name)
        if processor is None:
            return _same

        def bind(value: Any) -> Any:
            try:
                return processor(value)
            except Exception as e:  # e.g. UTCDateTime's ValueError for a naive datetime
                raise self._error(sql, None, e) from e

        return bind

    def _error(self, sql: str, params: Any, e: Exception) -> BaseException:
        """`e` as SQLAlchemy raises it from a statement (a driver's error, a conversion's)."""
        err = DBAPIError.instance(sql, params, e, self._dbapi_error, dialect=self._dialect)
        return err if isinstance(err, BaseException) else e

    def _insert_sql(self, table: Table, names: Sequence[str], rows: int = 1) -> str:
        q = self._quote
        values = ", ".join([f"({self._marks(len(names))})"] * rows)
        return f"INSERT INTO {q(table.name)} ({', '.join(map(q, names))}) VALUES {values}"

    def _marks(self, count: int) -> str:
        return ", ".join([self._mark] * count)

    def _text(self, key: str, count: int, build: Callable[[int], str]) -> str:
        """A statement with `count` placeholders in its IN (...) or VALUES, built once."""
        text = self._texts.get((key, count))
        if text is None:
            text = self._texts[key, count] = build(count)
        return text

    def _run(
        self, conn: Connection, sql: str, params: Any, *, many: bool = False
    ) -> tuple[Sequence[Any], int]:
        """Execute on the connection's DBAPI cursor: (rows as tuples, rowcount)."""
        proxied = conn.connection
        cursor = proxied.cursor()
        try:
            if many:
                cursor.executemany(sql, params)
            else:
                cursor.execute(sql, params)
            rows = cursor.fetchall() if cursor.description else ()
            return rows, cursor.rowcount
        except self._dbapi_error as e:
            # as SQLAlchemy does: a connection the database dropped is not pooled again
            if self._dialect.is_disconnect(cast(Any, e), proxied.dbapi_connection, cursor):
                conn.invalidate(e)
            raise self._error(sql, params, e) from e
        finally:
            cursor.close()

    # --- the statements of a source's transaction -----------------------------------------

    def get_item_ids(
        self, conn: Connection, source_id: str, guids: Sequence[str]
    ) -> dict[str, int]:
        q = self._quote

        def build(count: int) -> str:
            return (
                f"SELECT {q('guid')}, {q('id')} FROM {q('items')} "
                f"WHERE {q('source_id')} = {self._mark} AND {q('guid')} IN ({self._marks(count)})"
            )

        found: dict[str, int] = {}
        for chunk in _chunks(list(set(guids))):
            padded = _padded(chunk)
            sql = self._text("item_ids", len(padded), build)
            found.update(self._run(conn, sql, [source_id, *padded])[0])
        return found

    def get_story_ids_by_url(self, conn: Connection, urls: Sequence[str]) -> list[Any]:
        """(url, story id) of the items with these URLs, oldest item first (per chunk)."""
        q = self._quote

        def build(count: int) -> str:
            return (
                f"SELECT {q('url')}, {q('story_id')} FROM {q('items')} "
                f"WHERE {q('url')} IN ({self._marks(count)}) ORDER BY {q('id')}"
            )

        found: list[Any] = []
        for chunk in _chunks(urls):
            padded = _padded(chunk)
            found.extend(self._run(conn, self._text("by_url", len(padded), build), padded)[0])
        return found

    def get_story_ids_by_title(
        self, conn: Connection, source_id: str, keys: Sequence[str]
    ) -> list[Any]:
        """(title key, story id) of the source's items with these title keys, oldest first
        (per chunk)."""
        q = self._quote

        def build(count: int) -> str:
            return (
                f"SELECT {q('title_key')}, {q('story_id')} FROM {q('items')} "
                f"WHERE {q('source_id')} = {self._mark} "
                f"AND {q('title_key')} IN ({self._marks(count)}) ORDER BY {q('id')}"
            )

        found: list[Any] = []
        for chunk in _chunks(keys):
            padded = _padded(chunk)
            sql = self._text("by_title", len(padded), build)
            found.extend(self._run(conn, sql, [source_id, *padded])[0])
        return found

    def add_stories(self, conn: Connection, first_seen: datetime, count: int) -> list[int]:
        """`count` new stories (one multi-row INSERT ... RETURNING per chunk); ids sorted."""

        def build(rows: int) -> str:
            return (
                f"{self._insert_sql(stories, ['first_seen'], rows)} RETURNING {self._quote('id')}"
            )

        seen = self._bind(stories, "first_seen", build(1))(first_seen)
        ids: list[int] = []
        for chunk in _chunks(range(count)):
            sql = self._text("stories", len(chunk), build)
            ids.extend(int(r[0]) for r in self._run(conn, sql, [seen] * len(chunk))[0])
        return sorted(ids)

    def add_items(
        self, conn: Connection, rows: Sequence[tuple[Item, int, Placement]], first_seen: datetime
    ) -> None:
        b = self._items
        published, score, confidence = b["published"], b["score"], b["confidence"]
        first, last = b["first_seen"](first_seen), b["last_seen"](first_seen)
        dumps = json.dumps
        params = [
            (i.source_id, i.guid, i.url, i.link, i.title, i.title_key, i.summary_html,
             i.summary_text, published(i.published), i.published_raw, i.author, first, last,
             story_id, p.section, score(p.score), dumps(list(p.terms)),
             dumps([list(s) for s in p.scores]), p.reason, confidence(p.confidence))
            for i, story_id, p in rows
        ]  # fmt: skip
        self._run(conn, self._item_sql, params, many=True)

    def add_story_links(self, conn: Connection, links: Sequence[StoryLink], now: datetime) -> None:
        score, created = self._links["score"], self._links["created"]
        default = created(now)  # a link without a time of its own (most are) was made `now`
        params = [
            (link.item_id, link.story_id, link.signal, score(link.score), link.matched_item_id,
             link.detail, default if link.created is None else created(link.created))
            for link in links
        ]  # fmt: skip
        self._run(conn, self._link_sql, params, many=True)

    def touch_items(self, conn: Connection, ids: Sequence[int], now: datetime) -> None:
        q = self._quote

        def build(count: int) -> str:
            return (
                f"UPDATE {q('items')} SET {q('last_seen')} = {self._mark} "
                f"WHERE {q('id')} IN ({self._marks(count)})"
            )

        seen = self._bind(items, "last_seen", build(1))(now)
        for chunk in _chunks(ids):
            padded = _padded(chunk)
            self._run(conn, self._text("touch", len(padded), build), [seen, *padded])

    def set_source_state(self, conn: Connection, values: Mapping[str, Any]) -> None:
        """UPDATE the source's row, or INSERT it: `values` by STATE_COLUMNS."""
        params = [bind(values[c]) for c, bind in zip(STATE_COLUMNS, self._state, strict=True)]
        if self._run(conn, self._update_state, params)[1] == 0:
            self._run(conn, self._state_sql, params)
