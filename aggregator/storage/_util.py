"""Helpers every storage module shares: the error wrapper, id chunks, the item row format.

Imports only `types`, `exceptions` and SQLAlchemy.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ParamSpec, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from aggregator.exceptions import StorageError
from aggregator.types import Item, Placement, StoredItem

P = ParamSpec("P")
R = TypeVar("R")

CHUNK = 500  # ids per IN (...): far below every backend's bound-parameter limit


def _wrap(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Every SQLAlchemy error raised by the decorated method becomes one StorageError."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except SQLAlchemyError as e:
                raise _storage_error(what, e) from e

        return wrapper

    return decorate


def _wrap_iter(what: str) -> Callable[[Callable[P, Iterator[R]]], Callable[P, Iterator[R]]]:
    """`_wrap` for a generator: an error raised while it is read becomes a StorageError."""

    def decorate(fn: Callable[P, Iterator[R]]) -> Callable[P, Iterator[R]]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Iterator[R]:
            try:
                yield from fn(*args, **kwargs)
            except SQLAlchemyError as e:
                raise _storage_error(what, e) from e

        return wrapper

    return decorate


def _storage_error(what: str, e: SQLAlchemyError) -> StorageError:
    # The driver's first line says what happened; the rest is SQL noise.
    detail = str(getattr(e, "orig", None) or e).splitlines()[0]
    return StorageError(f"database error while {what}: {detail}")


def _chunks(values: Sequence[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    values = list(values)
    for i in range(0, len(values), size):
        yield values[i : i + size]


def _row_to_stored(row: Any) -> StoredItem:
    """One row format for every read of `items`."""
    item = Item(
        source_id=row.source_id,
        guid=row.guid,
        url=row.url,
        link=row.link,
        title=row.title,
        title_key=row.title_key,
        summary_html=row.summary_html,
        summary_text=row.summary_text,
        published=row.published,
        published_raw=row.published_raw,
        author=row.author,
    )
    placement = Placement(
        section=row.section,
        score=row.score,
        terms=tuple(json.loads(row.terms)),
        scores=tuple((s, float(v)) for s, v in json.loads(row.scores)),
        reason=row.reason,
        # issue 5: rows stored before migration 4 have no confidence; they are not reviewed
        confidence=1.0 if row.confidence is None else float(row.confidence),
    )
    return StoredItem(
        id=row.id, item=item, story_id=row.story_id, first_seen=row.first_seen, placement=placement
    )


def _row_to_outline(row: Any) -> StoredItem:
    """A row of `iter_story_outlines`' columns: the fields it does not read are empty."""
    item = Item(
        source_id=row.source_id,
        guid="",
        url=None,
        link=None,
        title="",
        title_key="",
        summary_html="",
        summary_text=row.summary_text,
        published=row.published,
    )
    placement = Placement(section=row.section, reason=row.reason)
    return StoredItem(
        id=row.id, item=item, story_id=row.story_id, first_seen=row.first_seen, placement=placement
    )
