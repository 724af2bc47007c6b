"""Digest stage: stories of a period + the sections -> Digest (pure).

Also the calendar arithmetic of a period: "the last complete week" is Monday 00:00 to
Monday 00:00 in the newsletter's timezone, whatever the server's zone or DST says.
Imports only `types`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from aggregator.types import Digest, DigestSection, DigestSettings, Newsletter, Section, Story


def last_complete_week(now: datetime, timezone: str) -> tuple[datetime, datetime]:
    """[start, end) of the last complete Monday-to-Monday week before `now`, aware UTC."""
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    this_monday = local.date() - timedelta(days=local.weekday())
    end = datetime.combine(this_monday, time(0), tzinfo=zone)
    start = datetime.combine(this_monday - timedelta(days=7), time(0), tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def story_time(story: Story) -> datetime:
    """When a story happened, for ordering: its date, but never later than first seen
    (a feed's date in 2100 must not pin an item to the top)."""
    lead = story.lead
    published = lead.item.published
    if published is None:
        return lead.first_seen
    return min(published, lead.first_seen)


def select_digest(
    stories: Iterable[Story],
    sections: Sequence[Section],
    newsletter: Newsletter,
    source_names: dict[str, str],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    settings: DigestSettings,
    rank_key: Callable[[Story], Any] | None = None,
    top_count: int = 0,
) -> Digest:
    """Group the period's stories by section (config order), newest first, or highest first
    by `rank_key` (the ranking stage's order, see `aggregator.rank`).

    Stories first seen outside [start, end) and off-topic stories (no section) stay out.
    Each section shows at most `settings.max_per_section`; the rest are counted in `more`.
    With `rank_key` and `top_count`, `Digest.top` holds the `top_count` best stories of the
    period across sections ("Top stories"); they stay in their sections too.

    `stories` is read once, one at a time, and only the stories a section shows are kept
    (issue 8: a week of a large newsroom's stories need not fit in memory at once): the same
    digest as sorting each section's stories in full (stably: stories that tie keep the
    order they came in) and cutting the list.
    """
    key: Callable[[Story], Any] = story_time if rank_key is None else rank_key
    cap = settings.max_per_section
    # per section, a heap of its best `cap` so far, smallest first: (key, -n, story), where
    # n counts the stories read, so that of two equal keys the one read first ranks higher
    best: dict[str, list[tuple[Any, int, Story]]] = {s.id: [] for s in sections}
    counts = dict.fromkeys(best, 0)
    for n, story in enumerate(stories):
        if not start <= story.first_seen < end:
            continue
        placed = story.section
        if placed is None or placed not in best:
            continue
        counts[placed] += 1
        heap = best[placed]
        entry = (key(story), -n, story)
        if len(heap) < cap:
            heapq.heappush(heap, entry)
        elif heap and entry[:2] > heap[0][:2]:  # (none kept when cap is 0)
            heapq.heapreplace(heap, entry)
    digest_sections = []
    for section in sections:
        chosen = sorted(best[section.id], key=lambda e: e[:2], reverse=True)
        digest_sections.append(
            DigestSection(
                section=section,
                stories=tuple(story for *_, story in chosen),
                more=counts[section.id] - len(chosen),
            )
        )
    return Digest(
        newsletter=newsletter,
        start=start,
        end=end,
        sections=tuple(s for s in digest_sections if s.stories),
        source_names=tuple(sorted(source_names.items())),
        generated_at=now,
        top=_top(digest_sections, rank_key, top_count),
    )


def in_full(digest: Digest, full: Mapping[int, Story]) -> Digest:
    """`digest` with each story replaced by `full`'s of its id (issue 8: a digest is selected
    from the stories' outlines, and only the stories it shows are read in full). A story
    `full` lacks (emptied since it was selected) is left out, and counted in `more`."""
    sections = []
    for ds in digest.sections:
        kept = tuple(full[s.id] for s in ds.stories if s.id in full)
        sections.append(replace(ds, stories=kept, more=ds.more + len(ds.stories) - len(kept)))
    return replace(
        digest,
        sections=tuple(ds for ds in sections if ds.stories),
        top=tuple(full[s.id] for s in digest.top if s.id in full),
    )


def _top(
    sections: Sequence[DigestSection], rank_key: Callable[[Story], Any] | None, count: int
) -> tuple[Story, ...]:
    if rank_key is None or count <= 0:
        return ()
    shown = [story for ds in sections for story in ds.stories]
    return tuple(sorted(shown, key=rank_key, reverse=True)[:count])


def latest_stories(stories: Sequence[Story], limit: int) -> list[Story]:
    """On-topic stories for the feed, newest first, at most `limit`."""
    chosen = [s for s in stories if s.section is not None]
    return sorted(chosen, key=story_time, reverse=True)[:limit]
