"""The hot statements on the DBAPI cursor (issue 8, storage/_fast.py) store what SQLAlchemy
Core stores: the same rows, ids, values and value types, on SQLite and PostgreSQL, and fail
with the same errors."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy import bindparam, select, update

from aggregator.exceptions import StorageError
from aggregator.storage import open_storage
from aggregator.storage._fast import FastSql, _padded
from aggregator.storage._schema import items, sources, stories, story_links
from aggregator.storage._util import CHUNK
from aggregator.types import Item, Placement, SourceState, StoryLink, Validators

NOW = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
TABLES = (("stories", "id"), ("items", "id"), ("story_links", "item_id"), ("sources", "id"))


@contextlib.contextmanager
def _pg_schema(pg_url: str) -> Iterator[str]:
    schema = "t_" + uuid.uuid4().hex[:12]
    engine = sqlalchemy.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture
def reference_url(database_url: str, tmp_path: Path, request: pytest.FixtureRequest):
    """A second, empty database of the same backend, for the SQLAlchemy Core writes."""
    if database_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'reference.db'}"
    else:
        with _pg_schema(request.getfixturevalue("pg_url")) as url:
            yield url


def _items() -> list[tuple[Item, Placement]]:
    """Items with None fields, unicode, zones and scores of every kind the columns take."""
    out = []
    for n in range(40):
        published = [
            None,
            NOW - timedelta(hours=n),
            datetime(2026, 1, 2, 3, 4, 5, n, tzinfo=IST),  # stored as UTC
            datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),  # a 3-digit year
        ][n % 4]
        item = Item(
            source_id=f"s{n % 3}",
            guid=f"guid-{n}-{'é' * (n % 5)}-%s-'\"",
            url=None if n % 5 == 0 else f"https://e.com/{n % 7}/ü",
            link=None if n % 6 == 0 else f"https://e.com/l/{n}",
            title=f"Titel {n} — «quoted» 🚓",
            title_key=f"titel {n % 9}",
            summary_html="<p>ü &amp; %(x)s</p>" * (n % 3),
            summary_text="ü & %(x)s" * (n % 3),
            published=published,
            published_raw=None if published is None else "Mon, 30 Nov 2026",
            author=None if n % 2 else "Ann",
        )
        placement = Placement(
            section=None if n % 4 == 1 else "training",
            score=[0, 2, 1.25, -3.5][n % 4],  # an int is stored as the float column's float
            terms=("training", "ünï") if n % 2 else (),
            scores=(("training", 1.5), ("crisis", 0)) if n % 3 else (),
            reason=["rules", "", "examples: «x»"][n % 3],
            confidence=[1.0, 0.25, 0][n % 3],
        )
        out.append((item, placement))
    return out


def _links(ids: list[int], story_ids: list[int]) -> list[StoryLink]:
    return [
        StoryLink(
            item_id=i,
            story_id=s,
            signal=["lead", "url", "exact", "title"][n % 4],
            score=[0, 1, 0.75][n % 3],
            matched_item_id=None if n % 2 else ids[0],
            detail=json.dumps({"n": n, "w": "ü"}) if n % 3 else "",
            created=None if n % 4 else NOW - timedelta(minutes=n),
        )
        for n, (i, s) in enumerate(zip(ids, story_ids, strict=True))
    ]


def _states() -> list[SourceState]:
    return [
        SourceState("s0", Validators('"etag"', "Mon, 30 Nov 2026 10:00:00 GMT"), NOW, NOW, 200, 0,
                    None, None, NOW + timedelta(hours=1)),
        SourceState("s1", Validators(None, None), NOW.astimezone(IST), None, None, 3,
                    "http_status", "HTTP 503 ü", NOW + timedelta(days=1)),
    ]  # fmt: skip


def _reference_store(url: str, rows: list[tuple[Item, Placement]]) -> None:
    """The writes as the SQLAlchemy Core code before issue 8 made them."""
    open_storage(url, NOW).close()  # the schema
    engine = sqlalchemy.create_engine(url)
    state_columns = ["etag", "last_modified", "last_attempt", "last_success", "last_status",
                     "failures", "error_kind", "error", "next_due"]  # fmt: skip
    update_state = (
        update(sources)
        .where(sources.c.id == bindparam("b_id"))
        .values({k: bindparam(k) for k in state_columns})
    )

    def state_values(s: SourceState) -> dict[str, Any]:
        return dict(zip(state_columns, [s.validators.etag, s.validators.last_modified,
                    s.last_attempt, s.last_success, s.last_status, s.failures, s.error_kind,
                    s.error, s.next_due], strict=True))  # fmt: skip

    try:
        with engine.begin() as conn:
            story_ids = sorted(
                r[0]
                for r in conn.execute(
                    stories.insert().returning(stories.c.id), [{"first_seen": NOW}] * 7
                )
            )
            conn.execute(
                items.insert(),
                [
                    {
                        "source_id": i.source_id,
                        "guid": i.guid,
                        "url": i.url,
                        "link": i.link,
                        "title": i.title,
                        "title_key": i.title_key,
                        "summary_html": i.summary_html,
                        "summary_text": i.summary_text,
                        "published": i.published,
                        "published_raw": i.published_raw,
                        "author": i.author,
                        "first_seen": NOW,
                        "last_seen": NOW,
                        "story_id": story_ids[n % 7],
                        "section": p.section,
                        "score": p.score,
                        "terms": json.dumps(list(p.terms)),
                        "scores": json.dumps([list(s) for s in p.scores]),
                        "reason": p.reason,
                        "confidence": p.confidence,
                    }
                    for n, (i, p) in enumerate(rows)
                ],
            )
            ids = [r[0] for r in conn.execute(select(items.c.id).order_by(items.c.id))]
            links = _links(ids, [story_ids[n % 7] for n in range(len(ids))])
            conn.execute(
                story_links.insert(),
                [
                    {
                        "item_id": k.item_id,
                        "story_id": k.story_id,
                        "signal": k.signal,
                        "score": k.score,
                        "matched_item_id": k.matched_item_id,
                        "detail": k.detail,
                        "created": k.created or NOW,
                    }
                    for k in links
                ],
            )
            conn.execute(
                update(items)
                .where(items.c.id.in_(ids[::3]))
                .values(last_seen=NOW + timedelta(hours=2))
            )
            for s in _states():
                if not conn.execute(
                    update_state, {"b_id": s.source_id, **state_values(s)}
                ).rowcount:
                    conn.execute(sources.insert(), {"id": s.source_id, **state_values(s)})
            changed = replace_state(_states()[1])
            conn.execute(update_state, {"b_id": changed.source_id, **state_values(changed)})
    finally:
        engine.dispose()


def replace_state(state: SourceState) -> SourceState:
    return SourceState(state.source_id, Validators("new", None), NOW, NOW, 304, 0, None, None,
                       NOW + timedelta(minutes=5))  # fmt: skip


def _fast_store(url: str, rows: list[tuple[Item, Placement]]) -> None:
    storage = open_storage(url, NOW)
    try:
        with storage.transaction() as tx:
            story_ids = tx.add_stories(NOW, 7)
            tx.add_items([(i, story_ids[n % 7], p) for n, (i, p) in enumerate(rows)], NOW)
            by_guid = {}
            for source_id in ("s0", "s1", "s2"):
                by_guid.update(tx.get_item_ids(source_id, [i.guid for i, _ in rows]))
            ids = [by_guid[i.guid] for i, _ in rows]
            tx.add_story_links(_links(ids, [story_ids[n % 7] for n in range(len(ids))]), NOW)
            tx.touch_items(ids[::3], NOW + timedelta(hours=2))
            for s in _states():
                tx.set_source_state(s)
        storage.set_source_state(replace_state(_states()[1]))
    finally:
        storage.close()


def _dump(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row as the driver returns it (no SQLAlchemy types), and on SQLite each value's
    storage class too: what is stored, not what reads make of it."""
    engine = sqlalchemy.create_engine(url)
    out = {}
    try:
        with engine.connect() as conn:
            for table, key in TABLES:
                rows = conn.exec_driver_sql(f"SELECT * FROM {table} ORDER BY {key}").all()
                out[table] = [tuple(r) for r in rows]
                if engine.dialect.name == "sqlite":
                    names = [c[1] for c in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
                    kinds = ", ".join(f"typeof({n})" for n in names)
                    typed = conn.exec_driver_sql(f"SELECT {kinds} FROM {table} ORDER BY {key}")
                    out[f"{table} types"] = [tuple(r) for r in typed]
    finally:
        engine.dispose()
    return out


def test_fast_writes_store_what_sqlalchemy_core_stores(database_url, reference_url):
    rows = _items()
    _fast_store(database_url, rows)
    _reference_store(reference_url, rows)
    fast, reference = _dump(database_url), _dump(reference_url)
    assert len(fast["items"]) == len(rows) and len(fast["story_links"]) == len(rows)
    for table in fast:
        assert fast[table] == reference[table], table
    if database_url.startswith("sqlite"):
        # score and confidence: an int (0, 2) is stored as a float (the column's REAL affinity)
        assert {(t[16], t[20]) for t in fast["items types"]} == {("real", "real")}


def test_reads_back_the_items_as_given(database_url):
    rows = _items()
    _fast_store(database_url, rows)
    storage = open_storage(database_url, NOW)
    try:
        got = {s.item.guid: s for s in storage.get_items()}
    finally:
        storage.close()
    for item, placement in rows:
        stored = got[item.guid]
        assert stored.item == item and stored.first_seen == NOW
        assert stored.placement == Placement(
            placement.section,
            float(placement.score),
            placement.terms,
            tuple((s, float(v)) for s, v in placement.scores),
            placement.reason,
            float(placement.confidence),
        )


@pytest.fixture
def storage(database_url):
    s = open_storage(database_url, NOW)
    yield s
    s.close()


def test_lookups_longer_than_a_chunk(storage):
    n = 2 * CHUNK + 37
    placement = Placement(None)
    rows = [
        Item("s", f"g{k}", f"https://e.com/{k}", None, "T", f"t{k}", "", "", None, None, None)
        for k in range(n)
    ]
    with storage.transaction() as tx:
        [story] = tx.add_stories(NOW, 1)
        more = tx.add_stories(NOW, CHUNK + 3)  # a multi-row INSERT longer than a chunk
        assert more == sorted(more) and len(set(more)) == CHUNK + 3 and story not in more
        tx.add_items([(i, more[k % len(more)], placement) for k, i in enumerate(rows)], NOW)
        asked = [f"g{k}" for k in range(n + 50)] + ["g0", "g7"] * 3  # unknown ones, duplicates
        found = tx.get_item_ids("s", asked)
        assert sorted(found.values()) == list(range(1, n + 1)) or len(found) == n
        assert set(found) == {f"g{k}" for k in range(n)}
        assert tx.get_item_ids("other", asked) == {}
        keys = [f"url:https://e.com/{k}" for k in range(n + 5)] + ["url:https://e.com/3"]
        keys += [f"title:s:t{k}" for k in range(n)] + ["title:x:t1"]
        stories_ = tx.get_story_ids(keys)
        story_of = {i.guid: more[k % len(more)] for k, i in enumerate(rows)}
        assert stories_ == {
            **{f"url:https://e.com/{k}": story_of[f"g{k}"] for k in range(n)},
            **{f"title:s:t{k}": story_of[f"g{k}"] for k in range(n)},
        }
        tx.touch_items(list(found.values()), NOW + timedelta(days=1))
    assert storage.get_item_spans() == {"s": (NOW, NOW + timedelta(days=1))}


def test_a_key_s_story_is_that_of_its_oldest_item(storage):
    placement = Placement(None)
    with storage.transaction() as tx:
        first, second = tx.add_stories(NOW, 2)
        same = Item("a", "1", "https://e.com/x", None, "T", "t", "", "", None, None, None)
        tx.add_items([(same, second, placement)], NOW)
        tx.add_items([(dataclasses.replace(same, guid="2"), first, placement)], NOW)
        assert tx.get_story_ids(["url:https://e.com/x", "title:a:t"]) == {
            "url:https://e.com/x": second,
            "title:a:t": second,
        }


@pytest.mark.parametrize(
    "write",
    [
        lambda tx, _: tx.add_stories(datetime(2026, 1, 1), 2),
        lambda tx, s: tx.add_items([(_items()[1][0], s, Placement(None))], datetime(2026, 1, 1)),
        lambda tx, s: tx.add_items(
            [
                (
                    Item("s", "g", None, None, "T", "t", "", "", datetime(2026, 1, 1), None, None),
                    s,
                    Placement(None),
                )
            ],
            NOW,
        ),
        lambda tx, s: tx.touch_items([1], datetime(2026, 1, 1)),
        lambda tx, s: tx.set_source_state(SourceState("s", last_attempt=datetime(2026, 1, 1))),
    ],
)
def test_a_naive_datetime_is_one_storage_error_naming_the_write(storage, write):
    with storage.transaction() as tx:
        [story] = tx.add_stories(NOW, 1)
    with pytest.raises(StorageError, match="naive datetime") as e, storage.transaction() as tx:
        write(tx, story)
    assert isinstance(e.value.__cause__, sqlalchemy.exc.StatementError)
    assert str(e.value).startswith("database error while ")


def test_a_link_to_a_missing_item_is_one_storage_error(storage):
    with storage.transaction() as tx:
        [story] = tx.add_stories(NOW, 1)
    with (
        pytest.raises(StorageError, match="while recording why items joined") as e,
        storage.transaction() as tx,
    ):
        tx.add_story_links([StoryLink(999, story, "lead", 0.0)], NOW)
    assert isinstance(e.value.__cause__, sqlalchemy.exc.IntegrityError)
    with storage.transaction() as tx:  # the storage goes on
        assert tx.get_item_ids("s", ["g"]) == {}


@pytest.mark.postgres
def test_a_dropped_connection_fails_one_transaction_only(pg_schema_url):
    storage = open_storage(pg_schema_url, NOW)
    killer = sqlalchemy.create_engine(pg_schema_url)
    try:
        with (
            pytest.raises(StorageError, match="looking up stored items"),
            storage.transaction() as tx,
        ):
            pid = tx._conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            with killer.begin() as conn:
                conn.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid or 0)})")
            tx.get_item_ids("s", ["g"])
        with storage.transaction() as tx:
            assert tx.get_item_ids("s", ["g"]) == {}
    finally:
        killer.dispose()
        storage.close()


def test_padded_in_lists_take_a_few_sizes():
    sizes = {len(_padded(list(range(n)))) for n in range(1, CHUNK + 1)}
    assert sizes == {1, 2, 4, 8, 16, 32, 64, 128, 256, CHUNK}
    assert _padded([3, 1, 2]) == [3, 1, 2, 2]


def test_an_unknown_paramstyle_is_refused():
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite

    with pytest.raises(StorageError, match="paramstyle 'numeric'"):
        FastSql(SQLiteDialect_pysqlite(paramstyle="numeric"))


def test_the_fast_statements_write_every_column_of_their_tables():
    """The fast path's column lists are written by hand (in the order of its parameter
    tuples): a column added to the schema must be added there too, or its value would be
    dropped without a word."""
    from aggregator.storage._fast import ITEM_COLUMNS, LINK_COLUMNS, STATE_COLUMNS
    from aggregator.storage._sql import _state_values

    assert sorted(ITEM_COLUMNS) == sorted(c.name for c in items.c if c.name != "id")
    assert sorted(LINK_COLUMNS) == sorted(c.name for c in story_links.c)
    assert sorted(STATE_COLUMNS) == sorted(c.name for c in sources.c)
    assert sorted(STATE_COLUMNS) == sorted(["id", *_state_values(SourceState(source_id=""))])
