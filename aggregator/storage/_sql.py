"""The SQLAlchemy Core storage: SQLite by default, PostgreSQL with the same code.

Every SQLAlchemy error is wrapped once, here, into StorageError (see `_wrap`). The statements
of every source's store run on the DBAPI cursor (`_fast`, issue 8); their errors are raised
as SQLAlchemy's, so the same `_wrap` turns them into StorageError.
Imports only `types`, `exceptions`, the schema and the storage helpers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    literal,  # web (issue 7)
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from aggregator.exceptions import StorageError
from aggregator.storage._checkpoint import WalCheckpointer  # issue 8
from aggregator.storage._corrections import CorrectionMethods  # issue 5
from aggregator.storage._fast import FastSql  # issue 8
from aggregator.storage._schema import (
    LATEST,
    deliveries,
    issues,
    items,
    job_runs,  # web (issue 7)
    migrate,
    schema_version,
    sources,
    stories,
    subscribers,
    web_events,  # web (issue 7)
)
from aggregator.storage._stories import StoryReadMethods, StoryTransactionMethods  # issue 4
from aggregator.storage._util import (
    _chunks,
    _row_to_outline,
    _row_to_stored,
    _wrap,
    _wrap_iter,
)  # shared by every module
from aggregator.types import (
    Delivery,
    DeliveryStatus,
    FrozenStory,  # review finding 6
    Issue,
    Item,
    JobRun,  # web (issue 7)
    NewSubscriber,
    Placement,
    SourceState,
    StoredItem,
    Story,
    Subscriber,
    SubscriberStatus,
    Validators,
    WebEventKind,  # web (issue 7)
)

_SQLITE_BUSY_TIMEOUT_S = 5
# Pages the write-ahead log holds before a commit copies them into the database (SQLite's
# default is 1,000, about 4 MB). Each such checkpoint waits for the disk twice (fsync); a
# 1,000-source first cycle writes some 440 MB of log, so about 110 checkpoints at the
# default, 7 at this. Replayed stores of that cycle waited 2.6-3.2 s for the disk, 0.9-1.1 s
# with this; paired first cycles took a median 0.97 of the time (issue 8). The log file
# grows to about 64 MB and is removed when the last connection closes.
_SQLITE_WAL_PAGES = 16_000


def _redact(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<invalid database URL>"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA wal_autocheckpoint={_SQLITE_WAL_PAGES}")
    cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_S * 1000}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _row_to_subscriber(row: Any) -> Subscriber:
    return Subscriber(
        id=row.id,
        address=row.address,
        name=row.name,
        status=row.status,
        sections=tuple(json.loads(row.sections)),
        created=row.created,
        confirmed=row.confirmed,
        updated=row.updated,
    )


def _row_to_issue(row: Any) -> Issue:
    return Issue(
        id=row.id,
        number=row.number,
        start=row.period_start,
        end=row.period_end,
        created=row.created,
        subject=row.subject,
        html=row.html,
        text=row.text,
        story_ids=tuple(json.loads(row.story_ids)),
        stories=tuple(  # review finding 6
            FrozenStory(int(i), str(section), tuple(map(int, ids)))
            for i, section, ids in json.loads(row.frozen_stories or "[]")
        ),
    )


def _row_to_delivery(row: Any) -> Delivery:
    return Delivery(
        issue_id=row.issue_id,
        subscriber_id=row.subscriber_id,
        status=row.status,
        attempts=row.attempts,
        reply=row.reply,
        updated=row.updated,
    )


def _state_values(state: SourceState) -> dict[str, Any]:
    return {
        "etag": state.validators.etag,
        "last_modified": state.validators.last_modified,
        "last_attempt": state.last_attempt,
        "last_success": state.last_success,
        "last_status": state.last_status,
        "failures": state.failures,
        "error_kind": state.error_kind,
        "error": state.error,
        "next_due": state.next_due,
    }


class SqlTransaction(StoryTransactionMethods):  # story links, moves, overrides: issue 4
    """The writes of one source's update, inside one database transaction.

    The statements of every source's store (issue 8, speed) go through `_fast` (the DBAPI
    cursor, SQL written once per dialect); the rarer ones through SQLAlchemy Core.
    """

    def __init__(self, conn: Connection, fast: FastSql) -> None:
        self._conn = conn
        self._fast = fast

    @_wrap("looking up stored items")
    def get_item_ids(self, source_id: str, guids: Sequence[str]) -> dict[str, int]:
        return self._fast.get_item_ids(self._conn, source_id, guids)

    @_wrap("looking up stories")
    def get_story_ids(self, keys: Sequence[str]) -> dict[str, int]:
        """Story ids for dedupe keys ("url:<canonical>", "title:<source>:<title key>")."""
        found: dict[str, int] = {}
        urls = [k[4:] for k in keys if k.startswith("url:")]
        titles: dict[str, list[str]] = {}
        for k in keys:
            if k.startswith("title:"):
                source_id, _, key = k[6:].partition(":")
                titles.setdefault(source_id, []).append(key)
        # oldest item first: a key's story is that of its first item
        for url, story_id in self._fast.get_story_ids_by_url(self._conn, urls):
            found.setdefault(f"url:{url}", story_id)
        for source_id, keys_ in titles.items():
            rows = self._fast.get_story_ids_by_title(self._conn, source_id, keys_)
            for title_key, story_id in rows:
                found.setdefault(f"title:{source_id}:{title_key}", story_id)
        return found

    @_wrap("adding a story")
    def add_story(self, first_seen: datetime) -> int:
        result = self._conn.execute(stories.insert().values(first_seen=first_seen))
        return int(_inserted_id(result))

    @_wrap("adding an item")
    def add_item(
        self, item: Item, story_id: int, placement: Placement, first_seen: datetime
    ) -> int:
        result = self._conn.execute(
            items.insert().values(_item_values(item, story_id, placement, first_seen))
        )
        return int(_inserted_id(result))

    # --- batched writes (issue 8, speed): one statement per source, not one per row ------

    @_wrap("adding stories")
    def add_stories(self, first_seen: datetime, count: int) -> list[int]:
        """`count` new stories in one INSERT ... RETURNING; their ids in order."""
        return self._fast.add_stories(self._conn, first_seen, count) if count > 0 else []

    @_wrap("adding items")
    def add_items(self, rows: Sequence[tuple[Item, int, Placement]], first_seen: datetime) -> None:
        """Insert (item, story id, placement) rows in one executemany."""
        # Not INSERT ... RETURNING: measured on SQLite, the multi-row INSERT it becomes costs
        # more than this executemany and a later get_item_ids together.
        if rows:
            self._fast.add_items(self._conn, rows, first_seen)

    @_wrap("saving source states")
    def set_source_states(self, states: Sequence[SourceState]) -> None:
        """Upsert many sources' states with one UPDATE and one INSERT executemany."""
        if not states:
            return
        have: set[str] = set()
        ids = [s.source_id for s in states]
        for chunk in _chunks(ids):
            have.update(
                r.id
                for r in self._conn.execute(select(sources.c.id).where(sources.c.id.in_(chunk)))
            )
        old = [{"b_id": s.source_id, **_state_values(s)} for s in states if s.source_id in have]
        new = [{"id": s.source_id, **_state_values(s)} for s in states if s.source_id not in have]
        if old:
            self._conn.execute(_UPDATE_STATE, old)
        if new:
            self._conn.execute(sources.insert(), new)

    @_wrap("marking items as seen")
    def touch_items(self, ids: Sequence[int], now: datetime) -> None:
        self._fast.touch_items(self._conn, ids, now)

    @_wrap("saving a source's state")
    def set_source_state(self, state: SourceState) -> None:
        self._fast.set_source_state(self._conn, {"id": state.source_id, **_state_values(state)})


def _item_values(
    item: Item, story_id: int, placement: Placement, first_seen: datetime
) -> dict[str, Any]:
    return {
        "source_id": item.source_id,
        "guid": item.guid,
        "url": item.url,
        "link": item.link,
        "title": item.title,
        "title_key": item.title_key,
        "summary_html": item.summary_html,
        "summary_text": item.summary_text,
        "published": item.published,
        "published_raw": item.published_raw,
        "author": item.author,
        "first_seen": first_seen,
        "last_seen": first_seen,
        "story_id": story_id,
        "section": placement.section,
        "score": placement.score,
        "terms": json.dumps(list(placement.terms)),
        "scores": json.dumps([list(s) for s in placement.scores]),
        "reason": placement.reason,
        "confidence": placement.confidence,  # issue 5
    }


def _aware(value: Any) -> datetime:
    """min()/max() over a UTCDateTime column: SQLite returns its text, unconverted."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):  # pragma: no cover - no backend does this
        raise StorageError(f"the database returned {value!r} for a time")
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _inserted_id(result: Any) -> int:
    key = result.inserted_primary_key
    if key is None:  # pragma: no cover - every supported backend returns it
        raise StorageError("the database did not return the new row's id")
    return int(key[0])


_STATE_COLUMNS = tuple(_state_values(SourceState(source_id="")))
# Built once: SQLAlchemy then finds it in its compiled cache without building a new statement
# and its cache key on every call.
_UPDATE_STATE = (
    update(sources)
    .where(sources.c.id == bindparam("b_id"))
    .values({k: bindparam(k) for k in _STATE_COLUMNS})
)


class _SubscriberMethods:
    """Subscribers, frozen issues and the delivery ledger (mixed into SqlStorage)."""

    _engine: Engine

    # --- subscribers ----------------------------------------------------------------------

    @_wrap("adding subscribers")
    def add_subscribers(
        self, rows: Sequence[NewSubscriber], now: datetime
    ) -> list[tuple[Subscriber, bool]]:
        """Add or merge (by address, ignoring case) every row in one transaction.

        Returns each subscriber as stored and whether it was new. A new row without a status
        is `active`; a merged row keeps what the new one leaves as None (or an empty name).
        Becoming active (again) sets `confirmed`: the date of the consent in force.
        """
        out: list[tuple[Subscriber, bool]] = []
        with self._engine.begin() as conn:
            for row in rows:
                key = row.address.lower()
                old = conn.execute(
                    select(subscribers).where(subscribers.c.address_key == key)
                ).first()
                if old is None:
                    status = row.status or "active"
                    result = conn.execute(
                        subscribers.insert().values(
                            address=row.address,
                            address_key=key,
                            name=row.name,
                            status=status,
                            sections=json.dumps(list(row.sections or ())),
                            created=now,
                            confirmed=now if status == "active" else None,
                            updated=now,
                        )
                    )
                    new_id = _inserted_id(result)
                    created = True
                else:
                    values: dict[str, Any] = {"updated": now}
                    if row.name:
                        values["name"] = row.name
                    if row.sections is not None:
                        values["sections"] = json.dumps(list(row.sections))
                    if row.status is not None:
                        values["status"] = row.status
                        # web (issue 7): consent is dated when it is given again, too
                        if row.status == "active" and (
                            old.confirmed is None or old.status != "active"
                        ):
                            values["confirmed"] = now
                    conn.execute(
                        update(subscribers).where(subscribers.c.id == old.id).values(values)
                    )
                    new_id, created = old.id, False
                got = conn.execute(select(subscribers).where(subscribers.c.id == new_id)).one()
                out.append((_row_to_subscriber(got), created))
        return out

    @_wrap("reading subscribers")
    def get_subscribers(self, *, status: SubscriberStatus | None = None) -> list[Subscriber]:
        """Subscribers in the order they were added, optionally of one status."""
        query = select(subscribers).order_by(subscribers.c.id)
        if status is not None:
            query = query.where(subscribers.c.status == status)
        with self._engine.connect() as conn:
            return [_row_to_subscriber(r) for r in conn.execute(query)]

    @_wrap("reading a subscriber")
    def get_subscriber(self, address: str) -> Subscriber | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(subscribers).where(subscribers.c.address_key == address.lower())
            ).first()
        return None if row is None else _row_to_subscriber(row)

    @_wrap("changing a subscriber's status")
    def set_subscriber_status(
        self, address: str, status: SubscriberStatus, now: datetime
    ) -> Subscriber | None:
        """Change the status (nothing is ever deleted); None if the address is unknown."""
        with self._engine.begin() as conn:
            conn.execute(
                update(subscribers)
                .where(subscribers.c.address_key == address.lower())
                .values(status=status, updated=now)
            )
            row = conn.execute(
                select(subscribers).where(subscribers.c.address_key == address.lower())
            ).first()
        return None if row is None else _row_to_subscriber(row)

    # --- issues ---------------------------------------------------------------------------

    @_wrap("reading an issue")
    def get_issue(self, start: datetime, end: datetime) -> Issue | None:
        with self._engine.connect() as conn:
            row = conn.execute(
                select(issues).where(issues.c.period_start == start, issues.c.period_end == end)
            ).first()
        return None if row is None else _row_to_issue(row)

    @_wrap("reading issues")
    def get_issues(self) -> list[Issue]:
        with self._engine.connect() as conn:
            return [_row_to_issue(r) for r in conn.execute(select(issues).order_by(issues.c.id))]

    @_wrap("freezing an issue")
    def add_issue(
        self,
        start: datetime,
        end: datetime,
        *,
        subject: str,
        html: str,
        text: str,
        story_ids: Sequence[int],
        now: datetime,
        stories: Sequence[FrozenStory] = (),
    ) -> tuple[Issue, bool]:
        """Freeze the issue of [start, end) in one transaction, numbered after the last one;
        if that period already has an issue, return it unchanged. (issue, created).
        `stories`: each story's section and items as frozen (PersonalIssues rebuilds them)."""
        with self._engine.begin() as conn:
            old = conn.execute(
                select(issues).where(issues.c.period_start == start, issues.c.period_end == end)
            ).first()
            if old is not None:
                return _row_to_issue(old), False
            number = int(
                conn.execute(select(func.coalesce(func.max(issues.c.number), 0))).scalar_one()
            )
            result = conn.execute(
                issues.insert().values(
                    number=number + 1,
                    period_start=start,
                    period_end=end,
                    created=now,
                    subject=subject,
                    html=html,
                    text=text,
                    story_ids=json.dumps(list(story_ids)),
                    frozen_stories=json.dumps(
                        [[f.id, f.section, list(f.item_ids)] for f in stories]
                    ),
                )
            )
            row = conn.execute(select(issues).where(issues.c.id == _inserted_id(result))).one()
            return _row_to_issue(row), True

    # --- deliveries -----------------------------------------------------------------------

    @_wrap("enqueueing deliveries")
    def add_deliveries(self, issue_id: int, subscriber_ids: Sequence[int], now: datetime) -> int:
        """A `pending` ledger row per subscriber that has none for this issue; how many."""
        with self._engine.begin() as conn:
            have = {
                r.subscriber_id
                for r in conn.execute(
                    select(deliveries.c.subscriber_id).where(deliveries.c.issue_id == issue_id)
                )
            }
            new = [i for i in dict.fromkeys(subscriber_ids) if i not in have]
            for chunk in _chunks(new):
                conn.execute(
                    deliveries.insert(),
                    [
                        {
                            "issue_id": issue_id,
                            "subscriber_id": i,
                            "status": "pending",
                            "attempts": 0,
                            "reply": "",
                            "updated": now,
                        }
                        for i in chunk
                    ],
                )
        return len(new)

    @_wrap("reading deliveries")
    def get_deliveries(
        self, issue_id: int, *, statuses: Sequence[DeliveryStatus] | None = None
    ) -> list[Delivery]:
        query = (
            select(deliveries)
            .where(deliveries.c.issue_id == issue_id)
            .order_by(deliveries.c.subscriber_id)
        )
        if statuses is not None:
            query = query.where(deliveries.c.status.in_(list(statuses)))
        with self._engine.connect() as conn:
            return [_row_to_delivery(r) for r in conn.execute(query)]

    @_wrap("recording a delivery")
    def set_delivery(
        self,
        issue_id: int,
        subscriber_id: int,
        status: DeliveryStatus,
        now: datetime,
        *,
        reply: str | None = None,
        attempted: bool = False,
    ) -> None:
        """Record one SMTP answer (committed before returning); `attempted` counts a try."""
        values: dict[str, Any] = {"status": status, "updated": now}
        if reply is not None:
            values["reply"] = reply[:1000]
        if attempted:
            values["attempts"] = deliveries.c.attempts + 1
        with self._engine.begin() as conn:
            conn.execute(
                update(deliveries)
                .where(
                    deliveries.c.issue_id == issue_id,
                    deliveries.c.subscriber_id == subscriber_id,
                )
                .values(values)
            )


# --- web (issue 7) -------------------------------------------------------------------------


class _WebMethods:
    """What the web front needs: rate-limit events, job runs, a subscriber by id, a ping."""

    _engine: Engine

    @_wrap("checking the database")
    def ping(self) -> None:
        with self._engine.connect() as conn:
            conn.execute(select(1)).scalar_one()

    @_wrap("reading a subscriber")
    def get_subscriber_by_id(self, subscriber_id: int) -> Subscriber | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(subscribers).where(subscribers.c.id == subscriber_id)).first()
        return None if row is None else _row_to_subscriber(row)

    @_wrap("recording a web request")
    def add_web_event(self, kind: WebEventKind, key: str, now: datetime) -> None:
        with self._engine.begin() as conn:
            conn.execute(web_events.insert().values(kind=kind, key=key, at=now))

    @_wrap("recording a web request")
    def add_web_event_if_below(
        self, kind: WebEventKind, key: str, now: datetime, *, since: datetime, limit: int
    ) -> bool:
        """Record one event unless `key` already has `limit` of this kind since `since`; True
        if recorded. Check and insert are one statement (SQLite takes its write lock before
        the count), behind a per-key lock on PostgreSQL: a burst of concurrent requests
        records at most `limit`."""
        count = (
            select(func.count())
            .select_from(web_events)
            .where(web_events.c.kind == kind, web_events.c.key == key, web_events.c.at >= since)
            .scalar_subquery()
        )
        row = select(
            bindparam("kind", kind, type_=web_events.c.kind.type),
            bindparam("key", key, type_=web_events.c.key.type),
            bindparam("at", now, type_=web_events.c.at.type),
        ).where(count < limit)
        with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # READ COMMITTED would let two statements both count below the limit.
                conn.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"{kind}:{key}"))))
            insert = web_events.insert().from_select(["kind", "key", "at"], row)
            # RETURNING, not rowcount: drivers report -1 for INSERT ... SELECT
            return conn.execute(insert.returning(web_events.c.id)).first() is not None

    @_wrap("reading the published issues")
    def get_sent_issues(
        self,
        until: datetime,
        *,
        limit: int | None = None,
        bodies: bool = True,
        number: int | None = None,
    ) -> list[Issue]:
        """The issues whose period ended by `until` and that went out to at least one
        subscriber (a `sent` delivery), newest first; without `bodies`, html and text are ""
        (the archive needs neither)."""
        sent = (
            select(deliveries.c.issue_id)
            .where(deliveries.c.issue_id == issues.c.id, deliveries.c.status == "sent")
            .exists()
        )
        columns = [
            literal("").label(c.name) if not bodies and c.name in ("html", "text") else c
            for c in issues.c
        ]
        query = (
            select(*columns)
            .where(issues.c.period_end <= until, sent)
            .order_by(issues.c.number.desc())
        )
        if number is not None:
            query = query.where(issues.c.number == number)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            return [_row_to_issue(r) for r in conn.execute(query)]

    @_wrap("counting web requests")
    def count_web_events(self, kind: WebEventKind, key: str, since: datetime) -> int:
        query = (
            select(func.count())
            .select_from(web_events)
            .where(web_events.c.kind == kind, web_events.c.key == key, web_events.c.at >= since)
        )
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    @_wrap("pruning web requests")
    def delete_web_events(self, before: datetime) -> int:
        with self._engine.begin() as conn:
            result = conn.execute(web_events.delete().where(web_events.c.at < before))
        return int(result.rowcount or 0)

    @_wrap("recording a job run")
    def set_job_run(self, run: JobRun) -> None:
        values = {"last_run": run.last_run, "ok": int(run.ok), "detail": run.detail[:1000]}
        with self._engine.begin() as conn:
            done = conn.execute(
                update(job_runs).where(job_runs.c.job == run.job).values(values)
            ).rowcount
            if not done:
                conn.execute(job_runs.insert().values(job=run.job, **values))

    @_wrap("reading job runs")
    def get_job_runs(self) -> dict[str, JobRun]:
        with self._engine.connect() as conn:
            return {
                r.job: JobRun(r.job, r.last_run, bool(r.ok), r.detail)
                for r in conn.execute(select(job_runs))
            }


# --- end web (issue 7) ---------------------------------------------------------------------


class SqlStorage(
    _SubscriberMethods, _WebMethods, StoryReadMethods, CorrectionMethods
):  # issue 4: stories; issue 5: corrections
    """StorageType over a SQLAlchemy engine."""

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = _redact(url)
        self._url = url
        parsed = make_url(url)
        # an in-memory SQLite database lives in its connection, one per thread
        self.in_memory = parsed.get_backend_name() == "sqlite" and (
            parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory"
        )

    def _sqlite_file(self) -> Path | None:
        """The SQLite database's file, made absolute; None for another database, an
        in-memory one, or a URI filename (`file:...`, left as it is, to this process)."""
        parsed = make_url(self._url)
        database = parsed.database or ""
        if parsed.get_backend_name() != "sqlite" or self.in_memory or database.startswith("file:"):
            return None
        return Path(database).resolve()

    def shared_url(self) -> str | None:
        """The URL with which another process opens this same database (issue 8: the store
        process), a SQLite file's path made absolute; None for an in-memory database."""
        parsed = make_url(self._url)
        if parsed.get_backend_name() != "sqlite":
            return self._url
        path = self._sqlite_file()
        if path is None:
            return None
        return parsed.set(database=str(path)).render_as_string(hide_password=False)

    def checkpoints_in_background(self) -> AbstractContextManager[object]:
        """While in it, a SQLite file's write-ahead log is copied into the database from a
        thread of its own (`_checkpoint`, issue 8): for a run that writes much, so that its
        writer does not wait for the disk. Nothing for PostgreSQL or an in-memory database."""
        path = self._sqlite_file()
        if path is None:
            return nullcontext()
        return WalCheckpointer(str(path), timeout=_SQLITE_BUSY_TIMEOUT_S)

    @functools.cached_property
    def _fast(self) -> FastSql:
        """The hot statements' SQL for this engine's dialect (issue 8), built on first use."""
        return FastSql(self._engine.dialect)

    def close(self) -> None:
        self._engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[SqlTransaction]:
        try:
            with self._engine.begin() as conn:
                yield SqlTransaction(conn, self._fast)
        except SQLAlchemyError as e:  # commit/rollback failures; statement errors are wrapped
            detail = str(getattr(e, "orig", None) or e).splitlines()[0]
            raise StorageError(f"database error while committing: {detail}") from e

    @_wrap("reading source states")
    def get_source_states(self) -> dict[str, SourceState]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(sources))
            return {
                r.id: SourceState(
                    source_id=r.id,
                    validators=Validators(etag=r.etag, last_modified=r.last_modified),
                    last_attempt=r.last_attempt,
                    last_success=r.last_success,
                    last_status=r.last_status,
                    failures=r.failures,
                    error_kind=r.error_kind,
                    error=r.error,
                    next_due=r.next_due,
                )
                for r in rows
            }

    @_wrap("saving a source's state")
    def set_source_state(self, state: SourceState) -> None:
        with self._engine.begin() as conn:
            SqlTransaction(conn, self._fast).set_source_state(state)

    @_wrap("reading items")
    def get_items(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        section: str | None = None,
        source_id: str | None = None,
        limit: int | None = None,
    ) -> list[StoredItem]:
        """Items newest first (by first-seen time), optionally filtered."""
        query = select(items).order_by(items.c.first_seen.desc(), items.c.id.desc())
        if since is not None:
            query = query.where(items.c.first_seen >= since)
        if until is not None:
            query = query.where(items.c.first_seen < until)
        if section is not None:
            query = query.where(items.c.section == section)
        if source_id is not None:
            query = query.where(items.c.source_id == source_id)
        if limit is not None:
            query = query.limit(limit)
        with self._engine.connect() as conn:
            return [_row_to_stored(r) for r in conn.execute(query)]

    def get_stories(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[Story]:
        """Stories newest first by the time their first item was seen.

        The lead is the story's first-seen item (ties: lowest id); the others follow in
        the order they were seen. Every stored item is in exactly one story.
        """
        return list(self.iter_stories(since=since, until=until, limit=limit))

    @_wrap_iter("reading stories")
    def iter_stories(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> Iterator[Story]:
        """`get_stories`, read and handed out a chunk of stories at a time (issue 8: a week
        of 50,000 sources' stories, 1.5 million items, took 5 GB as one list), on one
        connection."""
        with self._engine.connect() as conn:
            ids = _story_ids(conn, since, until, limit)
            yield from _stories_of(conn, ids, (items,), _row_to_stored)

    @_wrap_iter("reading story outlines")
    def iter_story_outlines(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Iterator[Story]:
        """`iter_stories`' stories in its order, each member with only what the ranking and
        the digest's selection read (issue 8): its ids, source, first-seen and published
        times, its placement's section and reason, and the first `OUTLINE_TEXT` characters
        of its text (a lead's completeness counts no more, `rank.COMPLETE_CHARS`). Titles,
        links, HTML and the rest are empty. A week of a large newsroom's items is read about
        five times faster so; `get_stories_by_id` then reads the few stories shown."""
        with self._engine.connect() as conn:
            ids = _story_ids(conn, since, until, None)
            yield from _stories_of(conn, ids, _OUTLINE_COLUMNS, _row_to_outline)

    @_wrap("reading stories")
    def get_stories_by_id(self, story_ids: Sequence[int]) -> dict[int, Story]:
        """These stories in full by id, as `get_stories` gives them (lead: the first-seen
        member); an id with no stored item is absent."""
        with self._engine.connect() as conn:
            return {s.id: s for s in _stories_of(conn, story_ids, (items,), _row_to_stored)}

    @_wrap("counting items")
    def count_items(self) -> int:
        with self._engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(items)).scalar_one())

    @_wrap("counting items per source")
    def count_items_by_source(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        source_id: str | None = None,
    ) -> dict[str, int]:
        """Items first seen in [since, until), per source id (sources with none are absent)."""
        query = select(items.c.source_id, func.count().label("n")).group_by(items.c.source_id)
        if since is not None:
            query = query.where(items.c.first_seen >= since)
        if until is not None:
            query = query.where(items.c.first_seen < until)
        if source_id is not None:
            query = query.where(items.c.source_id == source_id)
        with self._engine.connect() as conn:
            return {r.source_id: int(r.n) for r in conn.execute(query)}

    @_wrap("reading item spans per source")
    def get_item_spans(self) -> dict[str, tuple[datetime, datetime]]:
        """Per source id: (first first-seen, last last-seen) over its stored items."""
        query = select(
            items.c.source_id,
            func.min(items.c.first_seen).label("first"),
            func.max(items.c.last_seen).label("last"),
        ).group_by(items.c.source_id)
        with self._engine.connect() as conn:
            return {r.source_id: (_aware(r.first), _aware(r.last)) for r in conn.execute(query)}


# An outline's columns (`iter_story_outlines`): its text cut in SQL, so a long one is never read.
OUTLINE_TEXT = 600
_OUTLINE_COLUMNS = (
    items.c.id,
    items.c.story_id,
    items.c.source_id,
    items.c.first_seen,
    items.c.published,
    items.c.section,
    items.c.reason,
    func.substr(items.c.summary_text, 1, OUTLINE_TEXT).label("summary_text"),
)


def _story_ids(
    conn: Connection, since: datetime | None, until: datetime | None, limit: int | None
) -> list[int]:
    """The ids of the stories first seen in [since, until), newest first (ties: the higher
    id first), at most `limit`."""
    query = select(stories.c.id).order_by(stories.c.first_seen.desc(), stories.c.id.desc())
    if since is not None:
        query = query.where(stories.c.first_seen >= since)
    if until is not None:
        query = query.where(stories.c.first_seen < until)
    if limit is not None:
        query = query.limit(limit)
    return list(conn.execute(query).scalars())  # half the time of a list of rows


def _stories_of(
    conn: Connection,
    story_ids: Sequence[int],
    columns: Sequence[Any],
    row_to: Callable[[Any], StoredItem],
) -> Iterator[Story]:
    """The stories of these ids in their order, `CHUNK` at a time: members in first-seen
    order (ties: the lower id), the first one the lead; a story without items is skipped."""
    for chunk in _chunks(story_ids):
        by_story: dict[int, list[StoredItem]] = {i: [] for i in chunk}
        rows = conn.execute(
            select(*columns)
            .where(items.c.story_id.in_(chunk))
            .order_by(items.c.first_seen, items.c.id)
        )
        for r in rows:
            by_story[r.story_id].append(row_to(r))
        for i, members in by_story.items():
            if members:
                yield Story(id=i, lead=members[0], others=tuple(members[1:]))


def open_storage(url: str, now: datetime) -> SqlStorage:
    """Open (and create or migrate) the database at a SQLAlchemy URL."""
    try:
        parsed = make_url(url)
    except ArgumentError as e:
        raise StorageError(f"invalid database URL {url!r}: {e}") from e
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            try:
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StorageError(f"cannot create the folder for {parsed.database}: {e}") from e
        kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
    try:
        engine = create_engine(parsed, **kwargs)
    except (SQLAlchemyError, ImportError) as e:
        raise StorageError(f"cannot open database {_redact(url)}: {e}") from e
    if parsed.get_backend_name() == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    storage = SqlStorage(engine, url)
    try:
        with engine.begin() as conn:
            version = (
                conn.execute(
                    select(schema_version.c.version)
                    .order_by(schema_version.c.version.desc())
                    .limit(1)
                ).scalar()
                if engine.dialect.has_table(conn, "schema_version")
                else 0
            )
            if version and version > LATEST:
                raise StorageError(
                    f"database {_redact(url)} is at schema version {version}, newer than this "
                    f"aggregator ({LATEST}); upgrade aggregator"
                )
            migrate(conn, now)
    except SQLAlchemyError as e:
        engine.dispose()
        detail = str(getattr(e, "orig", None) or e).splitlines()[0]
        raise StorageError(f"cannot open database {_redact(url)}: {detail}") from e
    except BaseException:
        engine.dispose()  # no pooled connection may outlive a failed open
        raise
    return storage
