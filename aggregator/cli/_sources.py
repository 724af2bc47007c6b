"""`aggregator sources`: the editor's source tools (status, test, add, OPML)."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from aggregator import pipeline
from aggregator._feeds_yaml import EditError, add_sources, propose_id, same_url
from aggregator._yaml_nodes import ID_RE
from aggregator.cli._common import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SOURCES,
    UsageError,
    open_store,
    write_export,
)
from aggregator.exceptions import (
    ConfigError,
)
from aggregator.opml import MAX_OPML_BYTES, OpmlError, Subscription, read_opml, render_opml
from aggregator.types import Config, SourceKind

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
    storage = open_store(config, now)
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
    return write_export(text, args.out, f"{len(config.sources)} sources written", out, err)


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


def add_sources_parser(sub: Any) -> None:
    """The `sources` command and its actions, on the main parser's subparsers."""
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
