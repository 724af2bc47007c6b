"""Exact-duplicate stage: new Items + the stories they may already belong to -> story refs (pure).

An item is the same story as another when it has
  * the same canonical URL (any source), or
  * the same normalized title from the same source.
(The same GUID within a source is the same *item*; storage already recognises that.)

`assign_stories` never loses an item: every input gets exactly one StoryRef, either an
existing story id or a new-story group shared with the other new items of the same story.
Imports only `types`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from aggregator.types import Item


def item_keys(item: Item) -> tuple[str, ...]:
    """The keys under which an item meets its duplicates, strongest first."""
    keys = []
    if item.url:
        keys.append(f"url:{item.url}")
    if item.title_key:
        keys.append(f"title:{item.source_id}:{item.title_key}")
    return tuple(keys)


@dataclass(frozen=True, slots=True)
class StoryRef:
    """Either an existing story (`story_id`) or new story number `group` of this batch."""

    story_id: int | None = None
    group: int | None = None


def assign_stories(items: Sequence[Item], known: Mapping[str, int]) -> list[StoryRef]:
    """One StoryRef per item, in order.

    `known` maps keys (see `item_keys`) of already stored items to their story id. Among the
    new items, any two sharing a key form one new story. When an item's keys point at two
    different stored stories, the strongest key (URL) wins: stored stories are never merged
    here, that is the clustering stage's job.
    """
    refs: list[StoryRef] = []
    group_of_key: dict[str, int] = {}
    next_group = 0
    for item in items:
        keys = item_keys(item)
        existing = next((known[k] for k in keys if k in known), None)
        if existing is not None:
            refs.append(StoryRef(story_id=existing))
            continue
        group = next((group_of_key[k] for k in keys if k in group_of_key), None)
        if group is None:
            group = next_group
            next_group += 1
        for k in keys:
            group_of_key.setdefault(k, group)
        refs.append(StoryRef(group=group))
    return refs


def disambiguate_guids(items: Sequence[Item]) -> list[Item]:
    """Make GUIDs unique within one fetch of one source.

    Some feeds give every item the same GUID (a CMS bug) or repeat an item. An item whose
    GUID was already used in this batch gets `guid|link` (or `guid|title`); if those are
    taken too it is the same item repeated and is dropped (keeping the first).
    Deterministic, so the next fetch of the same feed yields the same GUIDs and adds nothing.
    """
    seen: set[str] = set()
    out: list[Item] = []
    for item in items:
        alternatives = [f"{item.guid}|{x}" for x in (item.link, item.title_key) if x]
        if item.guid in seen:
            if any(a in seen for a in alternatives):
                continue  # same guid and same link or title: the item repeated
            item = replace(item, guid=alternatives[0]) if alternatives else item
            if item.guid in seen:
                continue
        seen.add(item.guid)
        seen.update(alternatives)
        out.append(item)
    return out
