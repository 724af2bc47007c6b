"""Ranking stage: stories -> their lead item and a score (pure). The digest orders each
section, and takes its "Top stories", by the ranking's order (`rank_key`,
`digest.select_digest`).

A story's section never depends on its lead: it is its first-seen member's, or that of the
first-seen member an editor moved (`Story.section`). Members an editor dropped are left out.

Lead item of a story (what the digest and the feed show first), among the members placed in
the story's section:
    1. the member from the source with the highest `weight` in feeds.yaml (default 1.0);
    2. then the most complete: the longest text, counted up to 600 characters (past that,
       a teaser is a teaser);
    3. then the earliest first seen; then the lowest id (stable).

Score of a story, at time `now`:
    weight  * (1 + outlet_bonus * (outlets - 1)) * 0.5 ** (age_hours / half_life_hours)
where weight is the highest source weight among its members, outlets the number of distinct
sources that carry it, and age the time from the story's date (its earliest member's date,
never later than first seen) to `now`. Defaults: outlet_bonus 0.5, half_life_hours 72: a story
three outlets carry counts twice a single-outlet story of the same age and weight; three days
later it counts half.

Imports only `types`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import datetime

from aggregator.types import ClusterSettings, StoredItem, Story

COMPLETE_CHARS = 600


def member_time(member: StoredItem) -> datetime:
    published = member.item.published
    return member.first_seen if published is None else min(published, member.first_seen)


def story_date(story: Story) -> datetime:
    """When the story happened: its earliest member's date (never later than first seen)."""
    return min(member_time(m) for m in (story.lead, *story.others))


def choose_lead(story: Story, weights: Mapping[str, float]) -> Story:
    """The story as the outputs show it: the members an editor dropped left out, the lead
    chosen by the rule in the module docstring among the members placed in the story's
    section (`Story.section`, which does not depend on the lead), the others in first-seen
    order. A story whose every member was dropped comes back unchanged (it has no section)."""
    if not story.others:  # (most stories) one member: the lead already, or dropped
        return story
    anchor = story.anchor
    if anchor is None:
        return story
    section = anchor.placement.section
    shown = [m for m in story.members if not m.placement.dropped]

    def key(m: StoredItem) -> tuple[float, int, datetime, int]:
        weight = weights.get(m.item.source_id, 1.0)
        complete = min(COMPLETE_CHARS, len(m.item.summary_text or ""))
        return (-weight, -complete, m.first_seen, m.id)

    lead = min((m for m in shown if m.placement.section == section), key=key)
    others = sorted((m for m in shown if m is not lead), key=lambda m: (m.first_seen, m.id))
    return replace(story, lead=lead, others=tuple(others))


def outlets(story: Story) -> int:
    return len({m.item.source_id for m in (story.lead, *story.others)})


def story_score(
    story: Story, weights: Mapping[str, float], now: datetime, settings: ClusterSettings
) -> float:
    """The score in the module docstring."""
    return _score(story, weights, now, settings, story_date(story))


def _score(
    story: Story,
    weights: Mapping[str, float],
    now: datetime,
    settings: ClusterSettings,
    date: datetime,
) -> float:
    weight = max(weights.get(m.item.source_id, 1.0) for m in (story.lead, *story.others))
    age_hours = max(0.0, (now - date).total_seconds() / 3600)
    recency: float = 0.5 ** (age_hours / settings.half_life_hours)
    return weight * (1 + settings.outlet_bonus * (outlets(story) - 1)) * recency


def rank_key(
    story: Story, weights: Mapping[str, float], now: datetime, settings: ClusterSettings
) -> tuple[float, datetime, int]:
    """The ranking's order, highest first: the score, then the newer story, then the higher
    id (so no two stories tie)."""
    date = story_date(story)
    return (_score(story, weights, now, settings, date), date, story.id)


def rank_stories(
    stories: Sequence[Story],
    weights: Mapping[str, float],
    now: datetime,
    settings: ClusterSettings,
) -> list[Story]:
    """Highest score first; ties: the newer story, then the higher id (`rank_key`)."""
    return sorted(stories, key=lambda s: rank_key(s, weights, now, settings), reverse=True)
