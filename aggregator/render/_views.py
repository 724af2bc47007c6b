"""What the templates and the feed writer see of a story: plain values, nothing to look up.

Keeps lookups (source names, section titles) and the date rule out of the templates, so an
editor's template cannot get them wrong and StrictUndefined never trips on a missing key.
Imports only `types` and the render stage's own modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from aggregator.render._text import aware
from aggregator.types import StoredItem, Story


@dataclass(frozen=True, slots=True)
class OtherView:
    """Another outlet's item about the same story."""

    title: str
    link: str | None  # raw: templates pass it through safe_url
    source: str


@dataclass(frozen=True, slots=True)
class StoryView:
    id: int
    title: str
    link: str | None  # raw: templates pass it through safe_url
    source: str  # the source's name
    source_url: str | None  # the source's feed/page URL, raw
    date: datetime  # aware; see story_date
    summary: str  # plain text; templates cut it with |teaser
    section: str | None  # the section's title
    others: tuple[OtherView, ...] = ()


@dataclass(frozen=True, slots=True)
class SectionView:
    id: str
    title: str
    description: str
    stories: tuple[StoryView, ...]
    more: int = 0


def story_date(lead: StoredItem) -> datetime:
    """The date shown for a story: published, but never later than when we first saw it
    (a feed may claim 2100, FAULTS C7); first_seen when the feed gave no date."""
    first_seen = aware(lead.first_seen)
    published = lead.item.published
    return first_seen if published is None else min(aware(published), first_seen)


def story_view(
    story: Story,
    names: Mapping[str, str],
    urls: Mapping[str, str],
    section_titles: Mapping[str, str],
) -> StoryView:
    item = story.lead.item
    return StoryView(
        id=story.id,
        title=item.title,
        link=item.link or item.url,
        source=names.get(item.source_id, item.source_id),
        source_url=urls.get(item.source_id),
        date=story_date(story.lead),
        summary=item.summary_text,
        section=section_titles.get(story.section) if story.section else None,
        others=_other_outlets(story, names),
    )


def _other_outlets(story: Story, names: Mapping[str, str]) -> tuple[OtherView, ...]:
    """ "Also reported by": one entry per other outlet (its earliest item in the story's
    order), never the lead's own outlet again: a source that posted the story twice is one
    outlet, not two."""
    seen = {story.lead.item.source_id}
    out = []
    for other in story.others:
        if other.item.source_id in seen:
            continue
        seen.add(other.item.source_id)
        out.append(
            OtherView(
                title=other.item.title,
                link=other.item.link or other.item.url,
                source=names.get(other.item.source_id, other.item.source_id),
            )
        )
    return tuple(out)
