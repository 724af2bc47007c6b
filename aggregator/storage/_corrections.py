"""Classification's storage (issue 5): editors' corrections, one item's placement.

Mixed into SqlStorage. Every SQLAlchemy error is wrapped into StorageError here.
Imports only `types`, `exceptions` and the schema.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, select, update

from aggregator.storage._schema import corrections, items
from aggregator.storage._util import _row_to_stored, _wrap
from aggregator.types import Correction, Placement, StoredItem


def _placement_values(p: Placement) -> dict[str, Any]:
    return {
        "section": p.section,
        "score": p.score,
        "terms": json.dumps(list(p.terms)),
        "scores": json.dumps([list(s) for s in p.scores]),
        "reason": p.reason,
        "confidence": p.confidence,
    }


def _row_to_correction(row: Any) -> Correction:
    return Correction(row.item_id, row.section, row.created, row.text)


class CorrectionMethods:
    _engine: Engine

    @_wrap("reading an item")
    def get_item(self, item_id: int) -> StoredItem | None:
        with self._engine.connect() as conn:
            row = conn.execute(select(items).where(items.c.id == item_id)).first()
        return None if row is None else _row_to_stored(row)

    @_wrap("saving a correction")
    def add_correction(
        self, item_id: int, section: str | None, text: str, placement: Placement, now: datetime
    ) -> Correction | None:
        """Pin item `item_id` to `section` (None: off-topic) and store `placement` on it.

        A second correction of the same item replaces the first. None if there is no such item.
        """
        with self._engine.begin() as conn:
            if conn.execute(select(items.c.id).where(items.c.id == item_id)).first() is None:
                return None
            conn.execute(corrections.delete().where(corrections.c.item_id == item_id))
            conn.execute(
                corrections.insert().values(
                    item_id=item_id, section=section, text=text, created=now
                )
            )
            conn.execute(
                update(items).where(items.c.id == item_id).values(_placement_values(placement))
            )
        return Correction(item_id, section, now, text)

    @_wrap("reading corrections")
    def get_corrections(self) -> list[Correction]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(corrections).order_by(corrections.c.created))
            return [_row_to_correction(r) for r in rows]

    @_wrap("saving placements")
    def set_placements(self, rows: Sequence[tuple[int, Placement]]) -> int:
        """Re-classification: store new placements, except on corrected items. Returns count."""
        if not rows:
            return 0
        with self._engine.begin() as conn:
            pinned = {r.item_id for r in conn.execute(select(corrections.c.item_id))}
            todo = [
                {"b_id": item_id, **_placement_values(p)}
                for item_id, p in rows
                if item_id not in pinned
            ]
            if todo:
                conn.execute(
                    update(items)
                    .where(items.c.id == bindparam("b_id"))
                    .values({k: bindparam(k) for k in _placement_values(Placement(None))}),
                    todo,
                )
        return len(todo)
