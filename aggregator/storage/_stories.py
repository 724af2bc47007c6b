"""Story clustering's tables (issue 4): why each item is in its story, and editors' overrides.

Mixed into SqlTransaction (writes inside a source's or an editor's transaction) and
SqlStorage (reads). Every SQLAlchemy error is wrapped into StorageError here.
Imports only `types`, `exceptions`, the schema and the storage helpers (`_util`, `_fast`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, select, update

from aggregator.exceptions import StorageError
from aggregator.storage._fast import FastSql  # issue 8
from aggregator.storage._schema import item_vectors, items, stories, story_links, story_overrides
from aggregator.storage._util import _chunks, _row_to_stored, _wrap
from aggregator.types import StoredItem, Story, StoryLink, StoryOverride


def _row_to_link(row: Any) -> StoryLink:
    return StoryLink(
        item_id=row.item_id,
        story_id=row.story_id,
        signal=row.signal,
        score=float(row.score),
        matched_item_id=row.matched_item_id,
        detail=row.detail,
        created=row.created,
    )


def _row_to_override(row: Any) -> StoryOverride:
    return StoryOverride(
        id=row.id, kind=row.kind, item_a=row.item_a, item_b=row.item_b, created=row.created
    )


# Built once, as the statements of a source's transaction in `_sql` (SQLAlchemy's compiled
# cache finds it without building a new statement and cache key on every call).
_DELETE_LINKS = story_links.delete().where(
    story_links.c.item_id.in_(bindparam("b_ids", expanding=True))
)


class StoryTransactionMethods:
    """Writes of clustering, inside an open transaction (`self._conn`)."""

    _conn: Connection
    _fast: FastSql  # issue 8: the INSERT of a source's new links

    @_wrap("recording why items joined their stories")
    def set_story_links(self, links: Sequence[StoryLink], now: datetime) -> None:
        """Record (replace) the link of each item: its story, the signal and the score."""
        for chunk in _chunks([link.item_id for link in links]):
            self._conn.execute(_DELETE_LINKS, {"b_ids": chunk})
        if links:
            self._fast.add_story_links(self._conn, links, now)

    @_wrap("recording why items joined their stories")
    def add_story_links(self, links: Sequence[StoryLink], now: datetime) -> None:
        """Record the links of items that have none yet (a source's new items): the INSERT
        of `set_story_links` without its DELETE. An item that has a link is an error."""
        if links:
            self._fast.add_story_links(self._conn, links, now)

    @_wrap("moving items between stories")
    def move_items(self, moves: Mapping[int, int]) -> None:
        """Put each item id into its story id, then fix every touched story's first-seen
        time (the earliest of its items); a story left empty keeps its row and is skipped
        by every read."""
        if not moves:
            return
        touched: set[int] = set(moves.values())
        for chunk in _chunks(list(moves)):
            touched.update(
                r.story_id
                for r in self._conn.execute(select(items.c.story_id).where(items.c.id.in_(chunk)))
            )
        by_story: dict[int, list[int]] = {}
        for item_id, story_id in moves.items():
            by_story.setdefault(story_id, []).append(item_id)
        for story_id, ids in by_story.items():
            for chunk in _chunks(ids):
                self._conn.execute(
                    update(items).where(items.c.id.in_(chunk)).values(story_id=story_id)
                )
                self._conn.execute(
                    update(story_links)
                    .where(story_links.c.item_id.in_(chunk))
                    .values(story_id=story_id)
                )
        for story_id in touched:
            first = self._conn.execute(
                select(func.min(items.c.first_seen)).where(items.c.story_id == story_id)
            ).scalar()
            if first is not None:
                self._conn.execute(
                    update(stories).where(stories.c.id == story_id).values(first_seen=first)
                )

    @_wrap("saving item embeddings")
    def set_item_vectors(self, model: str, vectors: Mapping[int, bytes]) -> None:
        """Store each item's embedding (float32 bytes) made by `model`."""
        ids = list(vectors)
        for chunk in _chunks(ids):
            self._conn.execute(item_vectors.delete().where(item_vectors.c.item_id.in_(chunk)))
        if vectors:
            self._conn.execute(
                item_vectors.insert(),
                [{"item_id": i, "model": model, "vector": v} for i, v in vectors.items()],
            )

    @_wrap("saving an editor's story override")
    def add_story_override(
        self, kind: str, item_a: int, item_b: int, now: datetime
    ) -> StoryOverride:
        result = self._conn.execute(
            story_overrides.insert().values(kind=kind, item_a=item_a, item_b=item_b, created=now)
        )
        key = result.inserted_primary_key
        if key is None:  # pragma: no cover - every supported backend returns it
            raise StorageError("the database did not return the new override's id")
        new_id = int(key[0])
        row = self._conn.execute(
            select(story_overrides).where(story_overrides.c.id == new_id)
        ).one()
        return _row_to_override(row)


class StoryReadMethods:
    """Reads of clustering (mixed into SqlStorage)."""

    _engine: Engine

    @_wrap("reading a story")
    def get_story(self, story_id: int) -> Story | None:
        """One story, lead = its first-seen item (as `get_stories`), or None if it is empty."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(items)
                .where(items.c.story_id == story_id)
                .order_by(items.c.first_seen, items.c.id)
            )
            members: list[StoredItem] = [_row_to_stored(r) for r in rows]
        if not members:
            return None
        return Story(id=story_id, lead=members[0], others=tuple(members[1:]))

    @_wrap("reading items")
    def get_items_by_id(self, item_ids: Sequence[int]) -> dict[int, StoredItem]:
        """These items by id (ids not stored are absent)."""
        found: dict[int, StoredItem] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(item_ids):
                for r in conn.execute(select(items).where(items.c.id.in_(chunk))):
                    found[r.id] = _row_to_stored(r)
        return found

    @_wrap("reading story links")
    def get_story_links(self, item_ids: Sequence[int]) -> dict[int, StoryLink]:
        """The recorded link (why it is in its story) of each item that has one."""
        found: dict[int, StoryLink] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(item_ids):
                for r in conn.execute(select(story_links).where(story_links.c.item_id.in_(chunk))):
                    found[r.item_id] = _row_to_link(r)
        return found

    @_wrap("reading item embeddings")
    def get_item_vectors(self, model: str, item_ids: Sequence[int]) -> dict[int, bytes]:
        """The stored embeddings by `model` of these items (items without one are absent)."""
        found: dict[int, bytes] = {}
        with self._engine.connect() as conn:
            for chunk in _chunks(item_ids):
                rows = conn.execute(
                    select(item_vectors.c.item_id, item_vectors.c.vector).where(
                        item_vectors.c.item_id.in_(chunk), item_vectors.c.model == model
                    )
                )
                found.update({r.item_id: bytes(r.vector) for r in rows})
        return found

    @_wrap("reading story overrides")
    def get_story_overrides(self) -> list[StoryOverride]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(story_overrides).order_by(story_overrides.c.id))
            return [_row_to_override(r) for r in rows]
