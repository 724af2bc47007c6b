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
       `sources add`: the URL could not be fetched or read (nothing was added);
       `digest --send`: some deliveries failed (temporarily: a later send retries them, or
       permanently); the others were sent and the ledger says which
    6  rendering or writing an output failed (also: feeds.yaml or the OPML could not be
       written); `digest --send`: the run stopped (relay unreachable, login refused (535),
       sender refused, no delivery: section); unsent rows stay queued for the next send;
       `digest --send`: a pre-send check held the issue (one line per reason; nothing sent,
       the ledger untouched; `--force` overrides)
    7  `run`: another scheduler holds the lock on this database (stop it first)
    130 interrupted
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from aggregator import pipeline
from aggregator._version import __version__
from aggregator.cli._classify import (  # issue 5
    add_classify_parsers,
    add_items_subcommands,
    cmd_check_examples,
    review_note,
)
from aggregator.cli._common import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_SOURCES,
    EXIT_STORAGE,
    EXIT_USAGE,
    UsageError,
    open_store,
    parse_time,
)
from aggregator.cli._serve import add_serve_parsers  # web (issue 7)
from aggregator.cli._sources import add_sources_parser
from aggregator.cli._stories import add_stories_parser  # issue 4
from aggregator.cli._subscribers import add_subscribers_parser
from aggregator.config import load_config
from aggregator.exceptions import (
    ConfigError,
    DeliveryError,
    IssueHeld,
    RenderError,
    SchedulerLocked,
    SourceError,
    StorageError,
)
from aggregator.render import check_templates, make_environment
from aggregator.subscribers import SubscriberError, normalize_address
from aggregator.types import Config, SourceResult, StoredItem

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
    cmd_check_examples(config, out)  # issue 5
    return EXIT_OK


def _update(
    args: argparse.Namespace, config: Config, out: TextIO, err: TextIO, *, once: bool
) -> int:
    now = datetime.now(UTC)
    unknown = [s for s in (args.source or []) if s not in {x.id for x in config.sources}]
    if unknown:
        raise UsageError(f"unknown source id(s): {', '.join(unknown)}; see feeds.yaml")
    storage = open_store(config, now)
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
    storage = open_store(config, now)
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
    storage = open_store(config, now)
    try:
        path = pipeline.build_feed(config, storage, now, out_dir=args.out)
    finally:
        storage.close()
    out.write(f"feed: {path}\n")
    return EXIT_OK


def _send_test_copy(
    config: Config,
    since: datetime | None,
    until: datetime | None,
    address: str,
    out: TextIO,
    now: datetime,
) -> int:
    try:
        to, _ = normalize_address(address)
    except SubscriberError as e:
        raise UsageError(f"--to: {e}") from e
    storage = open_store(config, now)
    try:
        issue, status, reply = pipeline.send_test_copy(
            config, storage, now, to, start=since, end=until
        )
    finally:
        storage.close()
    out.write(
        f"test copy of issue {issue.number} to {to}: {status} ({reply}); "
        "the ledger and the subscriber list are unchanged\n"
    )
    return EXIT_OK if status == "sent" else EXIT_SOURCES


def _preview(
    config: Config,
    since: datetime | None,
    until: datetime | None,
    out_dir: Path | None,
    out: TextIO,
    now: datetime,
) -> int:
    storage = open_store(config, now)
    try:
        paths, issue = pipeline.preview_issue(
            config, storage, now, start=since, end=until, out_dir=out_dir
        )
        reasons = (
            pipeline.check_before_send(config, storage, issue)
            if issue is not None and config.delivery is not None
            else []
        )
    finally:
        storage.close()
    if issue is not None:
        out.write(f"preview of issue {issue.number} (frozen; this is what subscribers get):\n")
    else:
        out.write("preview (not frozen yet: `digest --send` freezes the issue):\n")
    for p in paths:
        out.write(f"  {p}\n")
    for reason in reasons:
        out.write(f"would be held: {reason}\n")
    return EXIT_OK


def _send(
    config: Config,
    since: datetime | None,
    until: datetime | None,
    out: TextIO,
    now: datetime,
    *,
    force: bool = False,
) -> int:
    from aggregator.scheduler import SendLock

    storage = open_store(config, now)
    try:
        # One sender per database (SchedulerLocked: exit 7); the weekly job takes it too.
        with SendLock(config.database):
            report = pipeline.send_issue(
                config,
                storage,
                now,
                start=since,
                end=until,
                clock=lambda: datetime.now(UTC),
                force=force,
            )
    finally:
        storage.close()
    issue = report.issue
    zone = ZoneInfo(config.newsletter.timezone)
    out.write(
        f"issue {issue.number} ({'frozen now' if report.created else 'frozen earlier'}): "
        f"{issue.start.astimezone(zone):%Y-%m-%d %H:%M} to "
        f"{issue.end.astimezone(zone):%Y-%m-%d %H:%M}, {len(issue.story_ids)} stories\n"
    )
    if report.files:
        out.write(f"wrote {len(report.files)} messages (mode: files; the ledger is untouched)\n")
        for p in report.files[:5]:
            out.write(f"  {p}\n")
        return EXIT_OK
    out.write(
        f"enqueued {report.enqueued}, sent {report.sent}, failed temporarily "
        f"{report.failed_temp}, failed permanently {report.failed_perm}, waiting to retry "
        f"{report.waiting}, skipped (no story in their sections) {report.skipped}\n"
    )
    out.write("ledger: " + ", ".join(f"{k} {v}" for k, v in sorted(report.statuses.items())) + "\n")
    return EXIT_SOURCES if report.failed else EXIT_OK


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
    if args.to is not None and not args.send:
        raise UsageError("--to needs --send (digest --send --to ADDRESS sends one test copy)")
    if args.force and not args.send:
        raise UsageError("--force only applies to --send")
    if args.preview and args.send:
        raise UsageError("--preview and --send are separate steps; preview first, then send")
    if args.send and args.to is not None:
        return _send_test_copy(config, since, until, args.to, out, now)
    if args.send:
        return _send(config, since, until, out, now, force=args.force)
    if args.preview:
        return _preview(config, since, until, args.out, out, now)
    storage = open_store(config, now)
    try:
        files = pipeline.build_digest(
            config, storage, now, start=since, end=until, out_dir=args.out
        )
        note = review_note(storage, config, files.digest.start, files.digest.end)  # issue 5
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
    out.write(note)  # issue 5: low-confidence items of the window
    return EXIT_OK


def cmd_run(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    if args.once:
        args.source, args.all = None, True
        return _update(args, config, out, err, once=True)
    from aggregator.scheduler import SchedulerLock, catch_up, make_scheduler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    now = datetime.now(UTC)
    lock = SchedulerLock(config.database).acquire()  # SchedulerLocked: exit 7
    storage = open_store(config, now)

    def report(result: SourceResult) -> None:
        if result.error is not None:
            logging.getLogger("aggregator").warning("%s", result.error)
        elif result.new_items:
            logging.getLogger("aggregator").info("%s: %d new", result.source_id, result.new_items)

    try:
        # Catch up from the ledger before the first tick: down across Monday 07:00 and back
        # later that morning, the week's issue goes out now, once (FAULTS P4).
        try:
            outcome = catch_up(config, storage, now)
            logging.getLogger("aggregator").info("start-up catch-up: %s", outcome)
        except (DeliveryError, RenderError, StorageError) as e:
            # A held issue or an unreachable relay must not keep the scheduler from running:
            # the editor is told here, and the ledger keeps what is left for the next try.
            logging.getLogger("aggregator").error("start-up catch-up failed: %s", e)
        scheduler = make_scheduler(config, storage, report)
        scheduler.start()  # blocks; Ctrl-C ends it via KeyboardInterrupt
    finally:
        lock.release()
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
    add_items_subcommands(p)  # issue 5: items move / items drop

    p = sub.add_parser("feed", help="write feed.xml (the latest 100 stories)")
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output.dir)")
    p.set_defaults(func=cmd_feed)

    p = sub.add_parser("digest", help="write the weekly digest as HTML, text and .eml")
    p.add_argument("--since", metavar="T", help="window start (default: last complete week)")
    p.add_argument(
        "--until", metavar="T", help="window end, exclusive (default: now when --since is given)"
    )
    p.add_argument("--out", type=Path, metavar="DIR", help="output folder (default: output.dir)")
    p.add_argument(
        "--send",
        action="store_true",
        help="freeze the period's issue (once) and send it to every active subscriber that "
        "has not had it (delivery: in feeds.yaml)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="with --send: send even if a pre-send check fails (empty issue, section over its "
        "cap, a link that is not http(s), HTML over 100 KB, no text part)",
    )
    p.add_argument(
        "--to",
        metavar="ADDRESS",
        help="with --send: send one test copy to ADDRESS only (the ledger is not touched)",
    )
    p.add_argument(
        "--preview",
        action="store_true",
        help="write the issue's HTML and text (the frozen issue if there is one) and print "
        "the paths and any pre-send check that would hold it",
    )
    p.set_defaults(func=cmd_digest)

    p = sub.add_parser(
        "run", help="run the scheduler: fetch on each source's interval, digest weekly"
    )
    p.add_argument(
        "--once", action="store_true", help="one full cycle (every source, feed, digest), then exit"
    )
    p.set_defaults(func=cmd_run)

    add_sources_parser(sub)
    add_classify_parsers(sub)  # issue 5
    add_stories_parser(sub)  # issue 4
    add_subscribers_parser(sub)
    add_serve_parsers(sub)  # web (issue 7)
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
    except SchedulerLocked as e:
        err.write(f"aggregator: {e}\n")
        return EXIT_LOCKED
    except IssueHeld as e:
        err.write(f"aggregator: issue {e.issue_number} held; nothing was sent:\n")
        for reason in e.reasons:
            err.write(f"aggregator: held: {reason}\n")
        err.write("aggregator: fix the issue, or send anyway with `digest --send --force`\n")
        return EXIT_OUTPUT
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


__all__ = [
    "EXIT_CONFIG",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_OUTPUT",
    "EXIT_SOURCES",
    "EXIT_STORAGE",
    "EXIT_USAGE",
    "UsageError",
    "main",
    "make_parser",
    "parse_time",
]
