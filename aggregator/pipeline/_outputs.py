"""Writing the outputs: feed.xml, and the digest as HTML, text and .eml.

Part of the composition root (see `aggregator.pipeline`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin
from zoneinfo import ZoneInfo

import httpx
import jinja2

from aggregator.digest import in_full, last_complete_week, latest_stories, select_digest
from aggregator.fetch import Resolver, system_resolver
from aggregator.output import write_outputs
from aggregator.pipeline._cluster import ranked, ranking  # issue 4
from aggregator.pipeline._timing import StageTimes
from aggregator.pipeline._update import Progress, update_sources
from aggregator.render import make_environment, render_digest, render_feed
from aggregator.storage import StorageType
from aggregator.types import (
    Config,
    Digest,
    Rendered,
    SourceResult,
    Story,
)

FEED_FILE = "feed.xml"


@dataclass(frozen=True, slots=True)
class DigestFiles:
    digest: Digest
    paths: tuple[Path, ...]


@dataclass(slots=True)
class RunReport:
    results: list[SourceResult] = field(default_factory=list)
    feed: Path | None = None
    digest: DigestFiles | None = None

    @property
    def failed(self) -> list[SourceResult]:
        return [r for r in self.results if not r.ok]


# --- outputs ------------------------------------------------------------------------------


def feed_self_url(config: Config) -> str:
    return urljoin(config.newsletter.link.rstrip("/") + "/", FEED_FILE)


def _source_maps(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    return {s.id: s.name for s in config.sources}, {s.id: s.url for s in config.sources}


def feed_stories(
    config: Config, storage: StorageType, now: datetime, section: str | None = None
) -> list[Story]:
    """The latest on-topic stories of every feed (feed.xml, the site's Atom, JSON Feed and
    section feeds), newest first, each led as feed.xml leads it; with `section`, only that
    section's."""
    limit = config.digest.feed_items
    # Off-topic stories are dropped after the query, so ask for a margin over the limit
    # (more for one section: the other sections' are dropped too).
    margin = limit * (4 if section is None else 4 * max(len(config.sections), 1))
    stories = latest_stories(storage.get_stories(limit=margin), margin)
    if section is not None:
        stories = [s for s in stories if s.section == section]
    return ranked(config, stories[:limit], now)[0]  # issue 4: each story's lead


def build_feed(
    config: Config, storage: StorageType, now: datetime, out_dir: Path | None = None
) -> Path:
    """Write <out_dir>/feed.xml: the latest on-topic stories, newest first."""
    limit = config.digest.feed_items
    stories = feed_stories(config, storage, now)
    names, urls = _source_maps(config)
    xml = render_feed(
        stories,
        config.newsletter,
        config.sections,
        names,
        urls,
        self_url=feed_self_url(config),
        now=now,
        limit=limit,
    )
    out = out_dir or config.output_dir
    return write_outputs(out, {FEED_FILE: xml})[0]


def digest_basename(start: datetime, end: datetime, timezone: str) -> str:
    """digest-2026-W48 for a calendar week, else digest-<start>_<end> in local time."""
    zone = ZoneInfo(timezone)
    s, e = start.astimezone(zone), end.astimezone(zone)
    if (
        s.weekday() == 0
        and s.time().isoformat() == "00:00:00"
        and e == (s + timedelta(days=7)).astimezone(zone).replace(hour=0)
    ):
        year, week, _ = s.isocalendar()
        return f"digest-{year}-W{week:02d}"
    return f"digest-{s:%Y%m%dT%H%M}_{e:%Y%m%dT%H%M}"


def build_digest(
    config: Config,
    storage: StorageType,
    now: datetime,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    out_dir: Path | None = None,
) -> DigestFiles:
    """Render the digest of [start, end) (default: the last complete week) to html/txt/eml."""
    start, end = digest_period(config, now, start, end)
    digest, rendered = render_period(config, storage, now, start, end)
    base = digest_basename(start, end, config.newsletter.timezone)
    paths = write_outputs(
        out_dir or config.output_dir,
        {f"{base}.html": rendered.html, f"{base}.txt": rendered.text, f"{base}.eml": rendered.eml},
    )
    return DigestFiles(digest=digest, paths=tuple(paths))


@functools.lru_cache(maxsize=4)
def _environment(templates_dir: Path | None) -> jinja2.Environment:
    """Templates compiled once per process (issue 8), not once per digest; Jinja still
    re-reads a template whose file an editor changed (its loader checks the mtime)."""
    return make_environment(templates_dir)


def digest_period(
    config: Config, now: datetime, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """[start, end), the missing ends from the last complete week in the newsletter's zone."""
    if start is None or end is None:
        week_start, week_end = last_complete_week(now, config.newsletter.timezone)
        start = start or week_start
        end = end or week_end
    return start, end


def render_period(
    config: Config, storage: StorageType, now: datetime, start: datetime, end: datetime
) -> tuple[Digest, Rendered]:
    """The digest of [start, end) selected from the store and rendered."""
    # issue 4: leads chosen, stories ranked (recency measured at the period's end); issue 8:
    # chosen from the period's outlines, read a chunk at a time, and only the stories shown
    # read in full (their leads chosen again, by the same rule over the same fields)
    lead, rank_key = ranking(config, min(now, end))
    outlines = map(lead, storage.iter_story_outlines(since=start, until=end))
    names, urls = _source_maps(config)
    chosen = select_digest(
        outlines,
        config.sections,
        config.newsletter,
        names,
        start=start,
        end=end,
        now=now,
        settings=config.digest,
        rank_key=rank_key,
        top_count=config.clustering.top_stories,
    )
    shown = [s.id for ds in chosen.sections for s in ds.stories]
    full = storage.get_stories_by_id(shown)
    digest = in_full(chosen, {i: lead(s) for i, s in full.items()})
    env = _environment(config.templates_dir)
    rendered = render_digest(
        digest,
        env,
        source_urls=urls,
        sender=config.digest.sender,
        teaser_chars=config.digest.teaser_chars,
    )
    return digest, rendered


async def run_once(
    config: Config,
    storage: StorageType,
    client: httpx.AsyncClient,
    now: datetime,
    *,
    progress: Progress | None = None,
    resolver: Resolver = system_resolver,
    timings: StageTimes | None = None,
) -> RunReport:
    """One full cycle: every source fetched, the feed rebuilt, last week's digest written.

    `timings`, if given, gets each stage's wall and CPU time added (the benchmark's report).
    """
    times = timings if timings is not None else StageTimes()
    report = RunReport()
    report.results = await update_sources(
        config,
        storage,
        client,
        now,
        only_due=False,
        progress=progress,
        resolver=resolver,
        timings=times,
    )
    with times.measure("render"):
        report.feed = build_feed(config, storage, now)
        report.digest = build_digest(config, storage, now)
    return report
