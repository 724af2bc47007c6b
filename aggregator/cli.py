"""The command line: arguments -> config + pipeline; owns output formatting and exit codes.

Exit codes (keep in sync with README.md and docs/editors.md):
    0  success
    1  a bug: an unexpected exception (with its traceback)
    2  usage error (bad arguments; `sources add`: a duplicate source; `import-opml`: an
       unreadable or malformed OPML file)
    3  the config is invalid (every problem is listed); `sources add`/`import-opml`: the
       edit would make it invalid, so feeds.yaml was left unchanged
    4  the database failed
    5  one or more sources failed (the others were fetched and stored); `sources test` /
       `sources add`: the URL could not be fetched or read (nothing was added)
    6  rendering or writing an output failed (also: feeds.yaml or the OPML could not be written)
    130 interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aggregator import pipeline
from aggregator._feeds_yaml import EditError, add_sources, propose_id, same_url
from aggregator._version import __version__
from aggregator._yaml_nodes import ID_RE
from aggregator.config import load_config
from aggregator.exceptions import (
    ConfigError,
    DeliveryError,
    RenderError,
    SourceError,
    StorageError,
)
from aggregator.opml import MAX_OPML_BYTES, OpmlError, Subscription, read_opml, render_opml
from aggregator.render import check_templates, make_environment
from aggregator.storage import StorageType, open_storage
from aggregator.types import Config, SourceKind, SourceResult, StoredItem

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_STORAGE = 4
EXIT_SOURCES = 5
EXIT_OUTPUT = 6
EXIT_INTERRUPTED = 130

_RELATIVE = re.compile(r"^(\d+)\s*([dhw])$")


class UsageError(Exception):
    """A bad argument value that argparse could not check."""


def parse_time(value: str, timezone: str, now: datetime) -> datetime:
    """An ISO date/datetime (naive ones in the newsletter's zone) or '7d' / '12h' / '2w' ago."""
    value = value.strip()
    rel = _RELATIVE.match(value)
    if rel:
        n, unit = int(rel.group(1)), rel.group(2)
        return (
            now - {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
        )
    zone = ZoneInfo(timezone)
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), time(0), tzinfo=zone).astimezone(UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"cannot read time {value!r}: use 2026-11-23, 2026-11-23T07:00, "
            "2026-11-23T07:00+00:00 or 7d / 12h / 2w"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    return parsed.astimezone(UTC)


# --- output helpers -----------------------------------------------------------------------


class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.enabled = stream.isatty() and total > 0

    def __call__(self, result: SourceResult) -> None:
        self.done += 1
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // self.total
        mark = "ok" if result.ok else "FAILED"
        bar = "#" * filled + "." * (width - filled)
        line = f"[{bar}] {self.done}/{self.total} {result.source_id} {mark}"
        self.stream.write("\r\x1b[2K" + line[:120])
        if self.done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def _status(result: SourceResult) -> str:
    if result.error is not None:
        err = result.error
        if isinstance(err, SourceError):
            return f"error: {err.kind}: {err.message}"
        return f"error: {err}"
    if result.not_modified:
        return "not modified"
    status = "ok"
    if result.warnings:
        status += " (" + "; ".join(result.warnings) + ")"
    return status


def print_summary(results: Sequence[SourceResult], out: TextIO) -> None:
    if not results:
        out.write("no sources were due\n")
        return
    width = max(len("source"), *(len(r.source_id) for r in results))
    out.write(f"{'source':<{width}}  {'new':>5}  {'seen':>5}  status\n")
    for r in results:
        out.write(f"{r.source_id:<{width}}  {r.new_items:>5}  {r.seen_items:>5}  {_status(r)}\n")
    failed = sum(1 for r in results if not r.ok)
    new = sum(r.new_items for r in results)
    out.write(f"{len(results)} sources, {new} new items, {failed} failed\n")


def report_failures(results: Sequence[SourceResult], err: TextIO) -> None:
    for r in results:
        if r.error is not None:
            # The error's own text already names the source id and URL.
            err.write(f"aggregator: {r.error}\n")


def _item_json(s: StoredItem) -> dict[str, Any]:
    def iso(d: datetime | None) -> str | None:
        return d.isoformat() if d else None

    return {
        "id": s.id,
        "source": s.item.source_id,
        "title": s.item.title,
        "url": s.item.link,
        "canonical_url": s.item.url,
        "published": iso(s.item.published),
        "first_seen": iso(s.first_seen),
        "section": s.placement.section,
        "story": s.story_id,
        "score": s.placement.score,
        "terms": list(s.placement.terms),
        "reason": s.placement.reason,
        "summary": s.item.summary_text,
    }


# --- commands -----------------------------------------------------------------------------


def _open(config: Config, now: datetime) -> StorageType:
    return open_storage(config.database, now)


def cmd_check(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    # The editor's template overrides are compiled too: a broken one fails here, not on Monday.
    check_templates(make_environment(config.templates_dir))
    out.write(
        f"{config.path}: ok: {len(config.sources)} sources, {len(config.sections)} sections, "
        f"timezone {config.newsletter.timezone}\n"
    )
    # Show when the digest will really fire, in the editor's zone (FAULTS K6).
    from aggregator.scheduler import next_digest_times

    zone = ZoneInfo(config.newsletter.timezone)
    times = next_digest_times(config, datetime.now(UTC), 3)
    out.write(
        f"digest ({config.schedule.digest_cron}): next "
        + ", ".join(t.astimezone(zone).strftime("%a %Y-%m-%d %H:%M %Z") for t in times)
        + "\n"
    )
    return EXIT_OK


def _update(
    args: argparse.Namespace, config: Config, out: TextIO, err: TextIO, *, once: bool
) -> int:
    now = datetime.now(UTC)
    unknown = [s for s in (args.source or []) if s not in {x.id for x in config.sources}]
    if unknown:
        raise UsageError(f"unknown source id(s): {', '.join(unknown)}; see feeds.yaml")
    storage = _open(config, now)
    try:
        states = storage.get_source_states()
        if once:
            total = len(config.sources)
        elif args.source:
            total = len(args.source)
        elif args.all:
            total = len(config.sources)
        else:
            total = sum(pipeline.is_due(states.get(s.id), now) for s in config.sources)
        progress = Progress(total, err)

        async def go() -> pipeline.RunReport:
            async with pipeline.open_client(config) as client:
                if once:
                    return await pipeline.run_once(config, storage, client, now, progress=progress)
                results = await pipeline.update_sources(
                    config,
                    storage,
                    client,
                    now,
                    source_ids=args.source or None,
                    only_due=not (args.all or args.source),
                    progress=progress,
                )
                return pipeline.RunReport(results=results)

        report = asyncio.run(go())
    finally:
        storage.close()
    print_summary(report.results, out)
    if report.feed is not None:
        out.write(f"feed: {report.feed}\n")
    if report.digest is not None:
        out.write(
            f"digest: {report.digest.digest.story_count} stories: "
            + ", ".join(str(p) for p in report.digest.paths)
            + "\n"
        )
    report_failures(report.results, err)
    return EXIT_SOURCES if report.failed else EXIT_OK


def cmd_fetch(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    return _update(args, config, out, err, once=False)


def cmd_items(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    if args.section and args.section not in {s.id for s in config.sections}:
        raise UsageError(
            f"unknown section {args.section!r}; sections: "
            + ", ".join(s.id for s in config.sections)
        )
    since = parse_time(args.since, config.newsletter.timezone, now) if args.since else None
    storage = _open(config, now)
    try:
        items = storage.get_items(since=since, section=args.section, limit=args.limit)
    finally:
        storage.close()
    if args.json:
        for s in items:
            out.write(json.dumps(_item_json(s), ensure_ascii=False) + "\n")
        return EXIT_OK
    zone = ZoneInfo(config.newsletter.timezone)
    for s in items:
        when = s.first_seen.astimezone(zone).strftime("%Y-%m-%d %H:%M")
        section = s.placement.section or (
            "(unfiled)" if s.placement.reason.startswith("unfiled") else "(off-topic)"
        )
        out.write(f"{s.id:>6}  {when}  {section:<11} {s.item.source_id}: {s.item.title}\n")
    out.write(f"{len(items)} items\n")
    return EXIT_OK


def cmd_feed(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = _open(config, now)
    try:
        path = pipeline.build_feed(config, storage, now, out_dir=args.out)
    finally:
        storage.close()
    out.write(f"feed: {path}\n")
    return EXIT_OK


def cmd_digest(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    tz = config.newsletter.timezone
    since = parse_time(args.since, tz, now) if args.since else None
    until = parse_time(args.until, tz, now) if args.until else None
    if since is not None and until is None:
        until = now
    if until is not None and since is None:
        # A week back in local time, so a window across a DST change is still a week.
        zone = ZoneInfo(tz)
        since = (until.astimezone(zone) - timedelta(days=7)).astimezone(UTC)
    if since is not None and until is not None and since >= until:
        raise UsageError(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )
    storage = _open(config, now)
    try:
        files = pipeline.build_digest(
            config, storage, now, start=since, end=until, out_dir=args.out
        )
    finally:
        storage.close()
    zone = ZoneInfo(tz)
    out.write(
        f"digest {files.digest.start.astimezone(zone):%Y-%m-%d %H:%M} to "
        f"{files.digest.end.astimezone(zone):%Y-%m-%d %H:%M} ({tz}): "
        f"{files.digest.story_count} stories\n"
    )
    for p in files.paths:
        out.write(f"  {p}\n")
    return EXIT_OK


def cmd_run(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    if args.once:
        args.source, args.all = None, True
        return _update(args, config, out, err, once=True)
    from aggregator.scheduler import make_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    now = datetime.now(UTC)
    storage = _open(config, now)

    def report(result: SourceResult) -> None:
        if result.error is not None:
            logging.getLogger("aggregator").warning("%s", result.error)
        elif result.new_items:
            logging.getLogger("aggregator").info("%s: %d new", result.source_id, result.new_items)

    scheduler = make_scheduler(config, storage, report)
    scheduler.start()  # blocks; Ctrl-C ends it via KeyboardInterrupt
    return EXIT_OK


# --- sources: the editor's source tools ---------------------------------------------------


def _ago(t: datetime | None, now: datetime) -> str:
    if t is None:
        return "-"
    seconds = (now - t).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    if seconds < 3600:
        text = f"{seconds / 60:.0f}m"
    elif seconds < 48 * 3600:
        text = f"{seconds / 3600:.0f}h"
    else:
        text = f"{seconds / 86400:.0f}d"
    return f"in {text}" if future else f"{text} ago"


def _health_json(h: pipeline.SourceHealth) -> dict[str, Any]:
    def iso(d: datetime | None) -> str | None:
        return d.isoformat() if d else None

    st = h.state
    return {
        "id": h.source.id,
        "name": h.source.name,
        "url": h.source.url,
        "kind": h.source.kind,
        "status": h.status,
        "flags": list(h.flags),
        "notes": list(h.notes),
        "last_attempt": iso(st.last_attempt if st else None),
        "last_success": iso(st.last_success if st else None),
        "last_status": st.last_status if st else None,
        "failures": st.failures if st else 0,
        "error_kind": st.error_kind if st else None,
        "error": st.error if st else None,
        "items_7d": h.items_7d,
        "items_30d": h.items_30d,
        "usual_7d": None if h.expected_7d is None else round(h.expected_7d, 1),
        "next_due": iso(st.next_due if st else None),
    }


def cmd_sources_status(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = _open(config, now)
    try:
        health = pipeline.source_health(config, storage, now)
    finally:
        storage.close()
    if args.json:
        for h in health:
            out.write(json.dumps(_health_json(h), ensure_ascii=False) + "\n")
        return EXIT_OK
    width = max(len("source"), *(len(h.source.id) for h in health))
    header = (
        f"{'source':<{width}}  {'kind':<4}  {'status':<8}  {'attempt':>8}  {'success':>8}  "
        f"{'http':>4}  {'fails':>5}  {'7d':>4}  {'30d':>4}  next due"
    )
    out.write(header + "\n")
    for h in health:
        st = h.state
        due = "-"
        if st is None or st.next_due is None or st.next_due <= now:
            due = "now"
        else:
            due = _ago(st.next_due, now)
        out.write(
            f"{h.source.id:<{width}}  {h.source.kind:<4}  {h.status:<8}  "
            f"{_ago(st.last_attempt if st else None, now):>8}  "
            f"{_ago(st.last_success if st else None, now):>8}  "
            f"{(st.last_status if st and st.last_status else '-')!s:>4}  "
            f"{(st.failures if st else 0):>5}  {h.items_7d:>4}  {h.items_30d:>4}  {due}\n"
        )
    for h in health:
        if h.notes:  # why it is not ok, or what an ok source's last failure was
            out.write(f"{h.source.id} ({h.status}): {'; '.join(h.notes)}\n")
    counts = {s: sum(1 for h in health if h.status == s) for s in pipeline.HEALTH_ORDER}
    out.write(
        f"{len(health)} sources: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n) + "\n"
    )
    return EXIT_OK


def _check_url(url: str) -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise UsageError(f"{url!r} is not an http:// or https:// URL")
    return url


def _probe(
    config: Config, url: str, kind: SourceKind, source_id: str, section: str | None
) -> pipeline.UrlProbe:
    now = datetime.now(UTC)

    async def go() -> pipeline.UrlProbe:
        async with pipeline.open_client(config) as client:
            return await pipeline.probe_url(
                config, client, url, kind, now, source_id=source_id, section=section
            )

    return asyncio.run(go())


def _print_probe(
    probe: pipeline.UrlProbe, config: Config, out: TextIO, err: TextIO, limit: int | None
) -> None:
    zone = ZoneInfo(config.newsletter.timezone)
    out.write(f"url: {probe.url}\n")
    if probe.final_url and probe.final_url != probe.url:
        out.write(f"redirected to: {probe.final_url}\n")
    if probe.format is not None:
        out.write(
            f"format: {probe.format} (kind: {probe.detected_kind}), "
            f"title: {probe.title or '(none)'}\n"
        )
        shown = probe.items if limit is None else probe.items[:limit]
        out.write(f"{len(probe.items)} items (nothing was stored):\n")
        for item, placement in shown:
            when = item.published.astimezone(zone).strftime("%Y-%m-%d") if item.published else "-"
            section = placement.section or (
                "(unfiled)" if placement.reason.startswith("unfiled") else "(off-topic)"
            )
            out.write(f"  {when:<10}  {section:<11} {item.title}\n")
            out.write(f"  {'':<10}  {'':<11} {item.link or '(no link)'}\n")
        if len(shown) < len(probe.items):
            out.write(f"  ... and {len(probe.items) - len(shown)} more (--limit)\n")
    for warning in probe.warnings:
        out.write(f"warning: {warning}\n")
    if probe.feeds:
        out.write("feeds found for this page:\n")
        for f in probe.feeds:
            how = "advertised by the page" if f.found_by == "link" else "at a common feed path"
            if f.error is not None:
                out.write(f"  {f.url}  ({how}) fails: {f.error.kind}: {f.error.message}\n")
            else:
                out.write(
                    f"  {f.url}  ({how}) {f.format}, {f.entries} entries, "
                    f"title: {f.title or '(none)'}\n"
                )
        best = next((f for f in probe.feeds if f.error is None), None)
        if best is not None:
            out.write(f"to add it: aggregator sources add {best.url}\n")
    elif probe.error is not None or probe.format == "page":
        out.write("no feed found for this page (no <link rel=alternate>, no common path)\n")
    if probe.error is not None:
        err.write(f"aggregator: {probe.error}\n")


def cmd_sources_test(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    url = _check_url(args.url)
    probe = _probe(config, url, args.kind, "test", None)
    _print_probe(probe, config, out, err, args.limit)
    return EXIT_SOURCES if probe.error is not None else EXIT_OK


def _check_new_source(config: Config, url: str, source_id: str | None) -> None:
    for s in config.sources:
        if same_url(s.url, url):
            raise UsageError(f"{url} is already in {config.path} as source '{s.id}'")
        if source_id is not None and s.id == source_id:
            raise UsageError(f"a source with id '{source_id}' is already in {config.path}")


def _check_section(config: Config, section: str | None) -> None:
    if section is not None and section not in {s.id for s in config.sections}:
        raise UsageError(
            f"unknown section {section!r}; sections: " + ", ".join(s.id for s in config.sections)
        )


def _edit(
    config: Config, entries: list[dict[str, str | int]], comment: str, err: TextIO
) -> Config | int:
    """Append to feeds.yaml; an exit code when it did not happen (the file is unchanged)."""
    try:
        new, _ = add_sources(config.path, entries, comment)
    except ConfigError as e:
        for problem in e.problems:
            err.write(f"aggregator: config: {problem}\n")
        err.write(f"aggregator: the result would be invalid; {config.path} was not changed\n")
        return EXIT_CONFIG
    except EditError as e:
        err.write(f"aggregator: {e}\n")
        return EXIT_OUTPUT
    return new


def cmd_sources_add(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    url = _check_url(args.url)
    _check_section(config, args.section)
    _check_new_source(config, url, args.id)
    source_id = args.id or propose_id(url, {s.id for s in config.sources})
    probe = _probe(config, url, args.kind or "auto", source_id, args.section)
    if probe.error is not None:
        _print_probe(probe, config, out, err, 5)
        err.write(f"aggregator: {url} was not added; fix the URL or use a feed listed above\n")
        return EXIT_SOURCES
    name = args.name or probe.title or urlsplit(url).hostname or source_id
    entry: dict[str, str | int] = {"id": source_id, "name": name[:200], "url": url}
    kind = args.kind or probe.detected_kind
    if kind is not None:
        entry["kind"] = kind
    if args.section:
        entry["section"] = args.section
    today = datetime.now(UTC).astimezone(ZoneInfo(config.newsletter.timezone)).date()
    result = _edit(config, [entry], f"Added {today} with `aggregator sources add`.", err)
    if isinstance(result, int):
        return result
    out.write(
        f"added source '{source_id}' ({kind}, {probe.format}, {len(probe.items)} items now) "
        f"to {config.path}\n"
    )
    for warning in probe.warnings:
        out.write(f"warning: {warning}\n")
    feeds = [f for f in probe.feeds if f.error is None]
    if probe.format == "page" and feeds:
        out.write(
            f"note: the page has a feed, usually more reliable than the page: {feeds[0].url}\n"
        )
    out.write(f"fetch it now with: aggregator fetch --source {source_id}\n")
    return EXIT_OK


def cmd_sources_export(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    text = render_opml(config.sources, config.newsletter.title, datetime.now(UTC))
    if args.out is None:
        out.write(text)
        return EXIT_OK
    try:
        args.out.write_text(text, encoding="utf-8")
    except OSError as e:
        err.write(f"aggregator: output: cannot write {args.out}: {e.strerror or e}\n")
        return EXIT_OUTPUT
    out.write(f"{len(config.sources)} sources written to {args.out}\n")
    return EXIT_OK


def _section_for(config: Config, sub: Subscription, default: str | None) -> str | None:
    if default is not None:
        return default
    ids = {s.id for s in config.sections}
    if sub.section in ids:
        return sub.section
    # A reader's folder named like a section (its id or its title) files the feed there.
    by_name = {s.id.lower(): s.id for s in config.sections}
    by_name.update({s.title.lower(): s.id for s in config.sections})
    for folder in reversed(sub.folders):
        if folder.strip().lower() in by_name:
            return by_name[folder.strip().lower()]
    return None


def cmd_sources_import(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    _check_section(config, args.section)
    path: Path = args.file
    try:
        size = path.stat().st_size
        if size > MAX_OPML_BYTES:
            raise UsageError(f"{path}: {size:,} bytes is over the {MAX_OPML_BYTES:,} byte limit")
        contents = read_opml(path.read_bytes(), str(path))
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror or e}") from None
    except OpmlError as e:
        raise UsageError(str(e)) from None
    taken = {s.id for s in config.sources}
    urls = [(s.url, s.id) for s in config.sources]
    entries: list[dict[str, str | int]] = []
    skipped = list(contents.skipped)
    for sub in contents.subscriptions:
        dup = next((sid for u, sid in urls if same_url(u, sub.url)), None)
        if dup is not None:
            skipped.append(f"{sub.url}: already in feeds.yaml as '{dup}'")
            continue
        sid = sub.source_id
        if sid is None or sid in taken or not ID_RE.fullmatch(sid):
            sid = propose_id(sub.url, taken)
        taken.add(sid)
        urls.append((sub.url, sid))
        entry: dict[str, str | int] = {"id": sid, "name": sub.title[:200], "url": sub.url}
        if sub.kind != "auto":
            entry["kind"] = sub.kind
        section = _section_for(config, sub, args.section)
        if section is not None:
            entry["section"] = section
        entries.append(entry)
    verb = "would add" if args.dry_run else "adding"
    for added in entries:
        section = f" -> {added['section']}" if "section" in added else ""
        out.write(f"{verb} {added['id']}: {added['name']} <{added['url']}>{section}\n")
    for reason in skipped:
        out.write(f"skipped {reason}\n")
    if args.dry_run or not entries:
        out.write(
            f"{len(entries)} to add, {len(skipped)} skipped"
            + ("; dry run: feeds.yaml was not changed\n" if args.dry_run else "\n")
        )
        return EXIT_OK
    today = datetime.now(UTC).astimezone(ZoneInfo(config.newsletter.timezone)).date()
    result = _edit(config, entries, f"Imported {today} from {path.name}.", err)
    if isinstance(result, int):
        return result
    out.write(
        f"imported {len(entries)} sources into {config.path} ({len(skipped)} skipped); "
        "check them with: aggregator fetch --all, then aggregator sources\n"
    )
    return EXIT_OK


# --- wiring -------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aggregator",
        description="Pull the feeds and pages in feeds.yaml into a weekly digest and an RSS feed.",
    )
    parser.add_argument("--version", action="version", version=f"aggregator {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=Path("feeds.yaml"),
        help="the newsletter's config (default: ./feeds.yaml)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("check", help="validate feeds.yaml and list every problem found")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("fetch", help="fetch due sources, store, dedupe and classify their items")
    p.add_argument("--all", action="store_true", help="fetch every source, due or not")
    p.add_argument("--source", action="append", metavar="ID", help="fetch this source (repeatable)")
    p.set_defaults(func=cmd_fetch)

    p = sub.add_parser("items", help="list stored items, newest first")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--since", metavar="T", help="first seen at or after T (ISO date/time, or 7d, 12h)"
    )
    p.add_argument("--section", metavar="ID", help="only items filed under this section")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="at most N items")
    p.set_defaults(func=cmd_items)

    p = sub.add_parser("feed", help="write feed.xml (the latest 100 stories)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output.dir)")
    p.set_defaults(func=cmd_feed)

    p = sub.add_parser("digest", help="write the weekly digest as HTML, text and .eml")
    p.add_argument("--since", metavar="T", help="window start (default: last complete week)")
    p.add_argument(
        "--until", metavar="T", help="window end, exclusive (default: now when --since is given)"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output.dir)")
    p.set_defaults(func=cmd_digest)

    p = sub.add_parser(
        "run", help="run the scheduler: fetch on each source's interval, digest weekly"
    )
    p.add_argument(
        "--once", action="store_true", help="one full cycle (every source, feed, digest), then exit"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "sources",
        help="each source's health, worst first; test, add, import and export sources",
        description="Without an action: every source's kind, last attempt and success, HTTP "
        "status, failure streak, items in the last 7 and 30 days and next due time; broken "
        "and degraded sources first, then stale ones.",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per source and line")
    p.set_defaults(func=cmd_sources_status)
    actions = p.add_subparsers(
        dest="action", metavar="ACTION", help="what to do (default: show the sources' health)"
    )
    kind_choices = ("feed", "page", "auto")

    q = actions.add_parser(
        "test", help="fetch and parse one URL without storing it; find a site's feeds"
    )
    q.add_argument("url", metavar="URL", help="the feed or page to try")
    q.add_argument(
        "--kind", choices=kind_choices, default="auto", help="read it as this kind (default: auto)"
    )
    q.add_argument(
        "--limit", type=int, default=20, metavar="N", help="show at most N items (default: 20)"
    )
    q.set_defaults(func=cmd_sources_test)

    q = actions.add_parser(
        "add", help="test a URL, then append it to feeds.yaml (comments and layout kept)"
    )
    q.add_argument("url", metavar="URL", help="the feed or page to add")
    q.add_argument("--id", metavar="ID", help="the source id (default: from the host name)")
    q.add_argument("--name", metavar="NAME", help="display name (default: the feed's title)")
    q.add_argument("--section", metavar="ID", help="the source's default section")
    q.add_argument(
        "--kind", choices=kind_choices, default=None, help="the kind (default: as detected)"
    )
    q.set_defaults(func=cmd_sources_add)

    q = actions.add_parser("export-opml", help="write the sources as OPML 2.0")
    q.add_argument("--out", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    q.set_defaults(func=cmd_sources_export)

    q = actions.add_parser(
        "import-opml", help="append the feeds of an OPML file to feeds.yaml, skipping duplicates"
    )
    q.add_argument("file", type=Path, metavar="FILE", help="the OPML file (a feed reader's export)")
    q.add_argument("--section", metavar="ID", help="file every imported source under this section")
    q.add_argument(
        "--dry-run", action="store_true", help="list what would be added; change nothing"
    )
    q.set_defaults(func=cmd_sources_import)
    return parser


def main(
    argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse already printed the usage message
        return int(e.code or 0)
    try:
        config = load_config(args.config)
        return int(args.func(args, config, out, err))
    except ConfigError as e:
        for problem in e.problems:
            err.write(f"aggregator: config: {problem}\n")
        err.write(
            f"aggregator: {len(e.problems)} problem(s) in {args.config}; nothing was fetched\n"
        )
        return EXIT_CONFIG
    except UsageError as e:
        err.write(f"aggregator: {e}\n")
        return EXIT_USAGE
    except StorageError as e:
        err.write(f"aggregator: storage: {e}\n")
        return EXIT_STORAGE
    except (RenderError, DeliveryError) as e:
        err.write(f"aggregator: output: {e}\n")
        return EXIT_OUTPUT
    except KeyboardInterrupt:
        err.write("aggregator: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `aggregator items --json | head`: the reader left; that is not an error. Point
        # stdout at devnull so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
