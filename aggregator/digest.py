"""Digest stage: stories of a period + the sections -> Digest (pure).

Also the calendar arithmetic of a period: "the last complete week" is Monday 00:00 to
Monday 00:00 in the newsletter's timezone, whatever the server's zone or DST says.
Imports only `types`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, time, timedelta
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
    stories: Sequence[Story],
    sections: Sequence[Section],
    newsletter: Newsletter,
    source_names: dict[str, str],
    *,
    start: datetime,
    end: datetime,
    now: datetime,
    settings: DigestSettings,
    rank: Callable[[Sequence[Story]], list[Story]] | None = None,
    top_count: int = 0,
) -> Digest:
    """Group the period's stories by section (config order), newest first, or in the order
    `rank` gives (the ranking stage's score, see `aggregator.rank`).

    Stories first seen outside [start, end) and off-topic stories (no section) stay out.
    Each section shows at most `settings.max_per_section`; the rest are counted in `more`.
    With `rank` and `top_count`, `Digest.top` holds the `top_count` best stories of the
    period across sections ("Top stories"); they stay in their sections too.
    """
    by_section: dict[str, list[Story]] = {s.id: [] for s in sections}
    for story in stories:
        if not start <= story.first_seen < end:
            continue
        if story.section is not None and story.section in by_section:
            by_section[story.section].append(story)
    digest_sections = []
    for section in sections:
        if rank is not None:
            chosen = rank(by_section[section.id])
        else:
            chosen = sorted(by_section[section.id], key=story_time, reverse=True)
        cap = settings.max_per_section
        digest_sections.append(
            DigestSection(
                section=section,
                stories=tuple(chosen[:cap]),
                more=max(0, len(chosen) - cap),
            )
        )
    return Digest(
        newsletter=newsletter,
        start=start,
        end=end,
        sections=tuple(s for s in digest_sections if s.stories),
        source_names=tuple(sorted(source_names.items())),
        generated_at=now,
        top=_top(digest_sections, rank, top_count),
    )


def _top(
    sections: Sequence[DigestSection],
    rank: Callable[[Sequence[Story]], list[Story]] | None,
    count: int,
) -> tuple[Story, ...]:
    if rank is None or count <= 0:
        return ()
    shown = [story for ds in sections for story in ds.stories]
    return tuple(rank(shown)[:count])


def latest_stories(stories: Sequence[Story], limit: int) -> list[Story]:
    """On-topic stories for the feed, newest first, at most `limit`."""
    chosen = [s for s in stories if s.section is not None]
    return sorted(chosen, key=story_time, reverse=True)[:limit]
