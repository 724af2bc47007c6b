"""Story clustering's storage verbs (issue 4), on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from aggregator.exceptions import StorageError
from aggregator.storage import open_storage
from aggregator.types import Item, Placement, StoryLink

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


def item(guid: str) -> Item:
    return Item(
        source_id="s",
        guid=guid,
        url=f"https://e.example/{guid}",
        link=f"https://e.example/{guid}",
        title=f"title {guid}",
        title_key=f"title {guid}",
        summary_html="",
        summary_text="",
        published=None,
    )


def test_links_moves_and_overrides(database_url):
    storage = open_storage(database_url, NOW)
    try:
        with storage.transaction() as tx:
            early, late = tx.add_story(NOW - timedelta(days=2)), tx.add_story(NOW)
            a = tx.add_item(item("a"), early, Placement(None), NOW - timedelta(days=2))
            b = tx.add_item(item("b"), late, Placement(None), NOW)
            c = tx.add_item(item("c"), late, Placement(None), NOW + timedelta(hours=1))
            tx.set_story_links(
                [
                    StoryLink(a, early, "lead", 0.0),
                    StoryLink(b, late, "lead", 0.0),
                    StoryLink(c, late, "lexical:title", 0.42, b, '{"names": ["x"]}'),
                ],
                NOW,
            )
        links = storage.get_story_links([a, b, c])
        assert links[c].signal == "lexical:title" and links[c].score == 0.42
        assert links[c].matched_item_id == b and links[c].detail == '{"names": ["x"]}'

        with storage.transaction() as tx:
            tx.move_items({b: early, c: early})
            tx.add_story_override("together", a, b, NOW)
            tx.add_story_override("apart", a, c, NOW)
        story = storage.get_story(early)
        assert story is not None
        assert [m.id for m in (story.lead, *story.others)] == [a, b, c]
        assert storage.get_story(late) is None  # emptied: skipped by every read
        assert storage.get_story_links([c])[c].story_id == early
        assert [s.id for s in storage.get_stories()] == [early]
        kinds = [(o.kind, o.item_a, o.item_b) for o in storage.get_story_overrides()]
        assert kinds == [("together", a, b), ("apart", a, c)]

        # Moving the earliest item out: the story's first-seen time follows its items.
        with storage.transaction() as tx:
            tx.move_items({a: late})
        assert [s.id for s in storage.get_stories(since=NOW - timedelta(hours=1))] == [early]

        # Links are replaced, not duplicated.
        with storage.transaction() as tx:
            tx.set_story_links([StoryLink(c, early, "editor:merge", 1.0, a)], NOW)
        assert storage.get_story_links([c])[c].signal == "editor:merge"

        # A new item's link is added without a DELETE; a second link for it is an error.
        with storage.transaction() as tx:
            d = tx.add_item(item("d"), late, Placement(None), NOW)
            tx.add_story_links([StoryLink(d, late, "url", 1.0)], NOW)
        assert storage.get_story_links([d])[d] == StoryLink(d, late, "url", 1.0, None, "", NOW)
        with (
            pytest.raises(StorageError, match="recording why items joined"),
            storage.transaction() as tx,
        ):
            tx.add_story_links([StoryLink(d, early, "lead", 0.0)], NOW)
        assert storage.get_story_links([d])[d].story_id == late
    finally:
        storage.close()


def test_migration_6_adds_frozen_stories_to_an_older_database(tmp_path):
    """Review finding 6: an issue frozen before migration 6 reads with no frozen stories;
    one frozen after keeps each story's section and items."""
    import sqlite3

    from aggregator.types import FrozenStory

    path = tmp_path / "old.db"
    storage = open_storage(f"sqlite:///{path}", NOW)
    storage.add_issue(NOW, NOW + timedelta(days=7), subject="s", html="h", text="t",
                      story_ids=[1], now=NOW)  # fmt: skip
    storage.close()
    with sqlite3.connect(path) as conn:  # back to version 5, as an older install left it
        conn.execute("ALTER TABLE issues DROP COLUMN frozen_stories")
        conn.execute("DELETE FROM schema_version WHERE version = 6")
    storage = open_storage(f"sqlite:///{path}", NOW)
    try:
        old = storage.get_issue(NOW, NOW + timedelta(days=7))
        assert old is not None and old.stories == () and old.story_ids == (1,)
        frozen = (FrozenStory(4, "policy", (7, 9)), FrozenStory(5, "training", (8,)))
        new, created = storage.add_issue(
            NOW + timedelta(days=7), NOW + timedelta(days=14), subject="s", html="h",
            text="t", story_ids=[4, 5], now=NOW, stories=frozen,
        )  # fmt: skip
        assert created and new.stories == frozen
        assert storage.get_issues()[-1].stories == frozen
    finally:
        storage.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT max(version) FROM schema_version").fetchone() == (6,)
