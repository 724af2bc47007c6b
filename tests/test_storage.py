"""Storage contract: the same tests on SQLite and PostgreSQL (one parametrized fixture)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy

from aggregator.exceptions import StorageError
from aggregator.storage import SqlStorage, open_storage
from aggregator.storage._schema import LATEST
from aggregator.storage._sql import _SQLITE_WAL_PAGES
from aggregator.types import Item, Placement, SourceState, Validators

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def make_item(guid: str, url: str | None = None, title: str = "T", source: str = "s") -> Item:
    return Item(
        source_id=source, guid=guid, url=url, link=url, title=title, title_key=title.lower(),
        summary_html="<p>ü</p>", summary_text="ü", published=NOW - timedelta(hours=1),
        published_raw="raw", author="A",
    )  # fmt: skip


@pytest.fixture
def storage(database_url):
    s = open_storage(database_url, NOW)
    yield s
    s.close()


def test_roundtrip_item_story_and_placement(storage):
    placement = Placement("training", 2.5, ("training", "tactics"), (("training", 2.5),), "rules")
    with storage.transaction() as tx:
        story = tx.add_story(NOW)
        item_id = tx.add_item(make_item("g1", "https://e.com/1"), story, placement, NOW)
    [got] = storage.get_items()
    assert got.id == item_id and got.story_id == story
    assert got.item == make_item("g1", "https://e.com/1")
    assert got.placement == placement
    assert got.first_seen == NOW and got.first_seen.tzinfo is not None
    [st] = storage.get_stories()
    assert st.lead.id == item_id and st.others == ()


def test_lookups_by_guid_url_and_title(storage):
    with storage.transaction() as tx:
        story = tx.add_story(NOW)
        tx.add_item(make_item("g1", "https://e.com/1", "Hello"), story, Placement(None), NOW)
    with storage.transaction() as tx:
        assert tx.get_item_ids("s", ["g1", "g2"]) == {"g1": 1} or list(
            tx.get_item_ids("s", ["g1", "g2"])
        ) == ["g1"]
        assert tx.get_item_ids("other", ["g1"]) == {}
        found = tx.get_story_ids(
            ["url:https://e.com/1", "title:s:hello", "title:x:hello", "url:nope"]
        )
    assert found == {"url:https://e.com/1": story, "title:s:hello": story}


def test_unique_guid_per_source_and_failed_transaction_leaves_nothing(storage):
    with storage.transaction() as tx:
        story = tx.add_story(NOW)
        tx.add_item(make_item("g1"), story, Placement(None), NOW)
    with pytest.raises(StorageError, match="adding an item"), storage.transaction() as tx:
        tx.add_item(make_item("g2"), story, Placement(None), NOW)
        tx.set_source_state(SourceState("s", Validators("etag-new")))
        tx.add_item(make_item("g1"), story, Placement(None), NOW)  # duplicate
    assert [i.item.guid for i in storage.get_items()] == ["g1"]
    assert "s" not in storage.get_source_states()  # state not advanced either


def test_batched_writes_store_their_rows_in_order(storage):
    placement = Placement("training", 1.5, ("training",), (("training", 1.5),), "rules")
    guids = [f"g{n}" for n in range(12)] + ["z", "a"]  # not in the database's order
    with storage.transaction() as tx:
        assert tx.add_stories(NOW, 0) == []
        tx.add_items([], NOW)
        stories = tx.add_stories(NOW, 2)
        assert stories == sorted(stories) and len(set(stories)) == 2
        rows = [
            (make_item(g, f"https://e.com/{g}", f"T {g}", "s" if n % 3 else "t"), stories[n % 2],
             placement)
            for n, g in enumerate(guids)
        ]  # fmt: skip
        tx.add_items(rows, NOW)
        by_guid = {**tx.get_item_ids("s", guids), **tx.get_item_ids("t", guids)}
        ids = [by_guid[g] for g in guids]
        assert ids == sorted(ids) and len(set(ids)) == len(rows)  # ids follow the rows
    stored = {s.id: s for s in storage.get_items()}
    for (item, story, _), item_id in zip(rows, ids, strict=True):
        got = stored[item_id]
        assert (got.item, got.story_id, got.placement) == (item, story, placement)


def test_touch_items_moves_only_their_last_seen(storage):
    with storage.transaction() as tx:
        [story] = tx.add_stories(NOW, 1)
        tx.add_items([(make_item(g, source=g), story, Placement(None)) for g in ("x", "y")], NOW)
        tx.touch_items(list(tx.get_item_ids("x", ["x"]).values()), NOW + timedelta(hours=2))
    spans = storage.get_item_spans()
    assert spans == {"x": (NOW, NOW + timedelta(hours=2)), "y": (NOW, NOW)}


def test_a_failed_add_items_is_one_storage_error(storage):
    with storage.transaction() as tx:
        [story] = tx.add_stories(NOW, 1)
        tx.add_items([(make_item("g1"), story, Placement(None))], NOW)
    with pytest.raises(StorageError, match="while adding items") as e, storage.transaction() as tx:
        tx.add_items([(make_item(g), story, Placement(None)) for g in ("g2", "g1")], NOW)
    assert isinstance(e.value.__cause__, sqlalchemy.exc.IntegrityError)
    assert [i.item.guid for i in storage.get_items()] == ["g1"]


def test_source_state_roundtrip_and_update(storage):
    state = SourceState("s", Validators('"abc"', "Mon, 30 Nov 2026 10:00:00 GMT"), NOW, NOW, 200, 0,
                        None, None, NOW + timedelta(hours=1))  # fmt: skip
    storage.set_source_state(state)
    assert storage.get_source_states() == {"s": state}
    failed = SourceState("s", state.validators, NOW, NOW, 503, 2, "http_status", "HTTP 503", NOW)
    storage.set_source_state(failed)
    assert storage.get_source_states()["s"] == failed


def test_stories_window_order_and_members(storage):
    with storage.transaction() as tx:
        old = tx.add_story(NOW - timedelta(days=10))
        tx.add_item(make_item("o"), old, Placement("training"), NOW - timedelta(days=10))
        new = tx.add_story(NOW)
        tx.add_item(make_item("n1", source="a"), new, Placement("crisis"), NOW)
        tx.add_item(
            make_item("n2", source="b"), new, Placement("crisis"), NOW + timedelta(seconds=1)
        )
    stories = storage.get_stories(since=NOW - timedelta(days=1), until=NOW + timedelta(days=1))
    assert [s.id for s in stories] == [new]
    assert stories[0].lead.item.guid == "n1" and [o.item.guid for o in stories[0].others] == ["n2"]
    assert [s.id for s in storage.get_stories()] == [new, old]
    assert storage.count_items() == 3
    assert [i.item.guid for i in storage.get_items(section="crisis")] == ["n2", "n1"]
    assert [i.item.guid for i in storage.get_items(since=NOW)] == ["n2", "n1"]


def test_stories_are_read_a_chunk_at_a_time_in_the_order_of_a_whole_read(storage):
    """issue 8: `iter_stories` hands out what `get_stories` returns, in its order, across
    the chunks it reads (500 stories each): 1,203 stories, every third with a second member,
    one empty (skipped), all first seen at once (ties: the higher id first)."""
    from aggregator.storage._util import CHUNK

    count = 2 * CHUNK + 203
    with storage.transaction() as tx:
        ids = tx.add_stories(NOW, count)
        rows = []
        for n, story in enumerate(ids):
            rows.append((make_item(f"a{n}", source="a"), story, Placement("training")))
            if n % 3 == 0:
                rows.append((make_item(f"b{n}", source="b"), story, Placement("crisis")))
        tx.add_items(rows, NOW)
        empty = tx.add_story(NOW + timedelta(hours=1))
    whole = storage.get_stories()
    assert len(whole) == count and empty not in {s.id for s in whole}
    streamed = storage.iter_stories()
    first = next(streamed)
    assert first == whole[0]
    assert [first, *streamed] == whole
    assert [s.id for s in whole] == sorted(ids, reverse=True)  # first seen alike: by id
    pairs = [s for s in whole if s.others]
    assert len(pairs) == (count + 2) // 3
    assert all([m.item.guid[0] for m in s.members] == ["a", "b"] for s in pairs)
    assert list(storage.iter_stories(since=NOW + timedelta(minutes=1))) == []
    assert list(storage.iter_stories(limit=3)) == storage.get_stories(limit=3) == whole[:2]


def test_a_failed_read_of_stories_is_a_storage_error(storage):
    """Every read of stories (whole, streamed, outlines, by id) wraps the driver's error."""
    with storage.transaction() as tx:
        story = tx.add_story(NOW)
        tx.add_item(make_item("g"), story, Placement(None), NOW)
    assert isinstance(storage, SqlStorage)
    with storage._engine.begin() as conn:  # the stories are found, their items are not
        conn.execute(sqlalchemy.text("ALTER TABLE items RENAME TO items_gone"))
    with pytest.raises(StorageError, match="while reading stories"):
        next(storage.iter_stories())
    with pytest.raises(StorageError, match="while reading stories"):
        storage.get_stories()
    with pytest.raises(StorageError, match="while reading story outlines"):
        next(storage.iter_story_outlines())
    with pytest.raises(StorageError, match="while reading stories"):
        storage.get_stories_by_id([story])


def test_story_outlines_keep_what_ranking_reads_and_full_stories_are_read_by_id(storage):
    """issue 8: `iter_story_outlines` gives `iter_stories`' stories in its order (across
    chunks, in a window), each member with its ids, source, times, section and reason, and
    its text cut at 600 characters (not bytes); the rest empty. `get_stories_by_id` reads
    the chosen ones in full, as `get_stories` gives them."""
    from aggregator.storage._sql import OUTLINE_TEXT
    from aggregator.storage._util import CHUNK

    long_text = "é" * (OUTLINE_TEXT - 1) + "→ and more after the cut"  # 2-byte characters
    count = CHUNK + 7
    with storage.transaction() as tx:
        ids = tx.add_stories(NOW, count)
        rows = []
        for n, story in enumerate(ids):
            first = replace(
                make_item(f"a{n}", f"https://a.example/{n}", source="a"),
                summary_text=long_text if n % 2 else f"short {n}",
                published=None,
            )
            rows.append((first, story, Placement("training", 1.5, ("t",), (("training", 1.5),))))
            if n % 4 == 0:
                moved = Placement("crisis", reason="editor: moved by an editor")
                rows.append((make_item(f"b{n}", source="b"), story, moved))
        tx.add_items(rows, NOW)
        tx.add_item(
            make_item("late", source="c"), ids[3], Placement(None), NOW + timedelta(hours=1)
        )
        outside = tx.add_story(NOW - timedelta(days=3))
        tx.add_item(make_item("old"), outside, Placement("training"), NOW - timedelta(days=3))
    since = NOW - timedelta(days=1)
    whole = storage.get_stories(since=since)
    outlines = list(storage.iter_story_outlines(since=since))
    assert [s.id for s in outlines] == [s.id for s in whole] and len(whole) == count
    for outline, story in zip(outlines, whole, strict=True):
        assert [m.id for m in outline.members] == [m.id for m in story.members]
        assert outline.section == story.section and outline.first_seen == story.first_seen
        for o, m in zip(outline.members, story.members, strict=True):
            assert (o.story_id, o.first_seen, o.item.source_id, o.item.published) == (
                m.story_id, m.first_seen, m.item.source_id, m.item.published
            )  # fmt: skip
            assert (o.placement.section, o.placement.reason) == (
                m.placement.section, m.placement.reason
            )  # fmt: skip
            assert o.item.summary_text == m.item.summary_text[:OUTLINE_TEXT]
            assert (o.item.title, o.item.link, o.item.summary_html, o.placement.terms) == (
                "", None, "", ()
            )  # fmt: skip
    texts = {o.lead.item.summary_text for o in outlines}
    assert long_text[:OUTLINE_TEXT] in texts and long_text not in texts and "short 0" in texts
    assert sum(m.placement.by_editor for o in outlines for m in o.members) == (count + 3) // 4
    assert [s.id for s in storage.iter_story_outlines(until=since)] == [outside]

    wanted = [ids[3], outside, ids[0], 10**9]  # any order; an unknown id is absent
    full = storage.get_stories_by_id(wanted)
    by_id = {s.id: s for s in storage.get_stories()}
    assert full == {i: by_id[i] for i in wanted[:3]}
    assert [m.item.guid for m in full[ids[3]].members] == ["a3", "late"]
    assert storage.get_stories_by_id([]) == {}


def test_reopen_keeps_data_and_schema_version(database_url):
    s = open_storage(database_url, NOW)
    with s.transaction() as tx:
        tx.add_item(make_item("g"), tx.add_story(NOW), Placement(None), NOW)
    s.close()
    s = open_storage(database_url, NOW + timedelta(days=1))
    assert s.count_items() == 1
    s.close()
    engine = sqlalchemy.create_engine(database_url)
    with engine.connect() as conn:
        versions = (
            conn.execute(sqlalchemy.text("select version from schema_version")).scalars().all()
        )
    engine.dispose()
    assert sorted(versions) == list(range(1, LATEST + 1))  # each migration applied once


def test_a_version_1_database_is_migrated_with_its_data(database_url, monkeypatch):
    from aggregator.storage import _schema
    from aggregator.types import NewSubscriber

    with monkeypatch.context() as m:
        m.setattr(_schema, "MIGRATIONS", _schema.MIGRATIONS[:1])
        s = open_storage(database_url, NOW)
        with s.transaction() as tx:
            tx.add_item(make_item("g"), tx.add_story(NOW), Placement(None), NOW)
        s.close()
    s = open_storage(database_url, NOW)
    try:
        assert s.count_items() == 1
        assert s.add_subscribers([NewSubscriber("a@example.org")], NOW)[0][1]
    finally:
        s.close()


def test_newer_schema_is_refused(database_url):
    open_storage(database_url, NOW).close()
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            sqlalchemy.text(
                "insert into schema_version (version, applied_at) values (999, '2026-01-01')"
            )
        )
    engine.dispose()
    with pytest.raises(StorageError, match="newer than this aggregator"):
        open_storage(database_url, NOW)


def test_naive_datetime_is_refused(storage):
    with pytest.raises((StorageError, ValueError)), storage.transaction() as tx:
        tx.add_story(datetime(2026, 1, 1))


def test_unreachable_database_is_a_storage_error(tmp_path):
    with pytest.raises(StorageError, match="cannot open database"):
        open_storage("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2", NOW)
    with pytest.raises(StorageError) as e:
        open_storage("postgresql+psycopg://nobody:secret@127.0.0.1:1/none?connect_timeout=2", NOW)
    assert "secret" not in str(e.value)


# --- subscribers, issues, deliveries ------------------------------------------------------


def test_subscribers_merge_by_address_and_are_never_deleted(storage):
    from aggregator.types import NewSubscriber

    [(ann, new)] = storage.add_subscribers([NewSubscriber("Ann@example.org", "Ann")], NOW)
    assert new and ann.status == "active" and ann.confirmed == NOW and ann.sections == ()
    later = NOW + timedelta(days=1)
    [(again, new)] = storage.add_subscribers(
        [NewSubscriber("ann@EXAMPLE.org".lower(), "", ("training",), None)], later
    )
    assert not new and again.id == ann.id and again.name == "Ann"
    assert again.sections == ("training",) and again.address == "Ann@example.org"
    gone = storage.set_subscriber_status("ANN@example.org", "unsubscribed", later)
    assert gone is not None and gone.status == "unsubscribed" and gone.created == NOW
    assert [s.status for s in storage.get_subscribers()] == ["unsubscribed"]
    assert storage.get_subscribers(status="active") == []
    assert storage.set_subscriber_status("nobody@example.org", "bounced", later) is None
    pending = storage.add_subscribers([NewSubscriber("bo@example.org", status="pending")], NOW)
    assert pending[0][0].confirmed is None


def test_issue_is_frozen_once_per_period_and_numbered(storage):
    start, end = NOW - timedelta(days=7), NOW
    first, created = storage.add_issue(
        start, end, subject="S1", html="<p>h</p>", text="t", story_ids=[3, 1], now=NOW
    )
    assert created and first.number == 1 and first.story_ids == (3, 1)
    again, created = storage.add_issue(
        start, end, subject="other", html="x", text="y", story_ids=[], now=NOW
    )
    assert not created and again == first
    second, _ = storage.add_issue(
        end, end + timedelta(days=7), subject="S2", html="h", text="t", story_ids=[], now=NOW
    )
    assert second.number == 2 and storage.get_issue(start, end) == first
    assert [i.number for i in storage.get_issues()] == [1, 2]


def test_delivery_ledger(storage):
    from aggregator.types import NewSubscriber

    subs = storage.add_subscribers([NewSubscriber(f"r{i}@example.org") for i in range(3)], NOW)
    ids = [s.id for s, _ in subs]
    issue, _ = storage.add_issue(
        NOW - timedelta(days=7), NOW, subject="S", html="h", text="t", story_ids=[], now=NOW
    )
    assert storage.add_deliveries(issue.id, ids, NOW) == 3
    assert storage.add_deliveries(issue.id, ids, NOW) == 0  # enqueueing twice adds nothing
    storage.set_delivery(issue.id, ids[0], "sent", NOW, reply="250 ok", attempted=True)
    storage.set_delivery(issue.id, ids[1], "failed_temp", NOW, reply="451 later", attempted=True)
    storage.set_delivery(issue.id, ids[1], "failed_temp", NOW, attempted=True)
    rows = {d.subscriber_id: d for d in storage.get_deliveries(issue.id)}
    assert rows[ids[0]].status == "sent" and rows[ids[0]].attempts == 1
    assert rows[ids[1]].attempts == 2 and rows[ids[1]].reply == "451 later"
    todo = storage.get_deliveries(issue.id, statuses=["pending", "failed_temp"])
    assert [d.subscriber_id for d in todo] == ids[1:]


def test_shared_url_opens_the_same_database_from_another_process(tmp_path, monkeypatch):
    """issue 8: the store process reopens the run's database by this URL."""
    monkeypatch.chdir(tmp_path)
    relative = open_storage("sqlite:///data/a.db", NOW)
    memory = open_storage("sqlite://", NOW)
    try:
        assert relative.shared_url() == f"sqlite:///{tmp_path / 'data' / 'a.db'}"
        assert memory.shared_url() is None  # another process would see an empty database
    finally:
        relative.close()
        memory.close()
    pg = "postgresql+psycopg://u:secret@db.example.org:5432/news?options=-csearch_path%3Dx"
    # as given, password and all
    assert SqlStorage(sqlalchemy.create_engine(pg), pg).shared_url() == pg


def test_a_sqlite_log_is_copied_into_the_database_in_large_steps(tmp_path):
    """issue 8: a commit copies the write-ahead log into the database (and waits for the
    disk) only past _SQLITE_WAL_PAGES pages, not SQLite's default 1,000 (about 4 MB); at
    close every row is in the database and the log is gone."""
    path = tmp_path / "a.db"
    storage = open_storage(f"sqlite:///{path}", NOW)
    log = tmp_path / "a.db-wal"
    try:
        body = "x" * 100_000
        largest = 0
        for n in range(80):  # about 8 MB of rows, a commit each
            with storage.transaction() as tx:
                story = tx.add_story(NOW)
                item = make_item(f"g{n}", f"https://e.com/{n}")
                tx.add_item(replace(item, summary_text=body), story, Placement(None), NOW)
            largest = max(largest, log.stat().st_size)
        # at the default the log would have started over at about 4 MB
        assert largest > 7_000_000
        with storage._engine.connect() as conn:
            pages = conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar()
        assert pages == _SQLITE_WAL_PAGES
    finally:
        storage.close()
    assert not log.exists()
    reopened = open_storage(f"sqlite:///{path}", NOW)
    try:
        assert len(reopened.get_items()) == 80
    finally:
        reopened.close()
