"""`aggregator subscribers`: add, remove (mark unsubscribed), list, import and export.

Nothing is ever deleted: `remove` sets the status to `unsubscribed`, and `add` on a known
address merges into the stored subscriber (case of the address ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from aggregator._mail import clean_header
from aggregator.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    open_store,
    write_export,
)
from aggregator.subscribers import (
    SubscriberError,
    normalize_address,
    parse_sections,
    read_subscriber_csv,
    write_subscriber_csv,
)
from aggregator.types import SUBSCRIBER_STATUSES, Config, NewSubscriber, Subscriber


def _address(raw: str) -> tuple[str, str]:
    try:
        return normalize_address(raw)
    except SubscriberError as e:
        raise UsageError(str(e)) from None


def _subscriber_json(s: Subscriber) -> dict[str, Any]:
    return {
        "id": s.id,
        "address": s.address,
        "name": s.name,
        "status": s.status,
        "sections": list(s.sections),
        "created": s.created.isoformat(),
        "confirmed": s.confirmed.isoformat() if s.confirmed else None,
    }


def cmd_subscribers_add(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    address, display = _address(args.address)
    known = [s.id for s in config.sections]
    try:
        sections = parse_sections(" ".join(args.section), known) if args.section else None
    except SubscriberError as e:
        raise UsageError(str(e)) from None
    name = clean_header(args.name if args.name is not None else display)
    storage = open_store(config, now)
    try:
        old = storage.get_subscriber(address)
        # An explicit `add` by the editor (re)activates; the merge keeps the rest.
        row = NewSubscriber(address, name, sections, "active")
        [(sub, created)] = storage.add_subscribers([row], now)
    finally:
        storage.close()
    if created:
        out.write(f"added {sub.address} (active)\n")
    elif old is not None and old.status != "active":
        out.write(f"reactivated {sub.address} (was {old.status})\n")
    else:
        out.write(f"updated {sub.address} (already subscribed)\n")
    return EXIT_OK


def cmd_subscribers_remove(
    args: argparse.Namespace, config: Config, out: TextIO, err: TextIO
) -> int:
    now = datetime.now(UTC)
    address, _ = _address(args.address)
    storage = open_store(config, now)
    try:
        sub = storage.set_subscriber_status(address, "unsubscribed", now)
    finally:
        storage.close()
    if sub is None:
        raise UsageError(f"no subscriber {address}; see `aggregator subscribers list`")
    out.write(f"unsubscribed {sub.address} (kept, with its history)\n")
    return EXIT_OK


def cmd_subscribers_list(args: argparse.Namespace, config: Config, out: TextIO, err: TextIO) -> int:
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        subs = storage.get_subscribers(status=args.status)
    finally:
        storage.close()
    if args.json:
        for s in subs:
            out.write(json.dumps(_subscriber_json(s), ensure_ascii=False) + "\n")
        return EXIT_OK
    for s in subs:
        sections = ",".join(s.sections) or "all"
        out.write(f"{s.id:>6}  {s.status:<12}  {s.address}  {s.name}  [{sections}]\n")
    out.write(f"{len(subs)} subscribers\n")
    return EXIT_OK


def cmd_subscribers_import(
    args: argparse.Namespace, config: Config, out: TextIO, err: TextIO
) -> int:
    now = datetime.now(UTC)
    try:
        text = (
            sys.stdin.read() if str(args.file) == "-" else args.file.read_text(encoding="utf-8-sig")
        )
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.file}: {e}") from None
    try:
        rows = read_subscriber_csv(text, [s.id for s in config.sections])
    except SubscriberError as e:
        for line in str(e).splitlines():
            err.write(f"aggregator: {args.file}: {line}\n")
        err.write(f"aggregator: nothing was imported from {args.file}\n")
        return EXIT_USAGE
    storage = open_store(config, now)
    try:
        results = storage.add_subscribers(rows, now)
    finally:
        storage.close()
    new = sum(1 for _, created in results if created)
    out.write(f"imported {len(results)} subscribers: {new} new, {len(results) - new} merged\n")
    return EXIT_OK


def cmd_subscribers_export(
    args: argparse.Namespace, config: Config, out: TextIO, err: TextIO
) -> int:
    now = datetime.now(UTC)
    storage = open_store(config, now)
    try:
        subs = storage.get_subscribers()
    finally:
        storage.close()
    text = write_subscriber_csv(subs)
    return write_export(text, args.file, f"exported {len(subs)} subscribers", out, err)
    return EXIT_OK


def add_subscribers_parser(sub: Any) -> None:
    """The `subscribers` command and its actions, on the main parser's subparsers."""
    p = sub.add_parser(
        "subscribers",
        help="add, remove, list, import and export the newsletter's subscribers",
        description="Subscribers live in the database; nothing is deleted: removing one marks "
        "it unsubscribed.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, help="what to do")

    q = actions.add_parser("add", help="add a subscriber (or update and reactivate a known one)")
    q.add_argument("address", metavar="ADDRESS", help="the mail address ('Name <a@b.org>' too)")
    q.add_argument("--name", metavar="N", help="the subscriber's name")
    q.add_argument(
        "--section",
        action="append",
        metavar="ID",
        help="only this section (repeatable; default: every section)",
    )
    q.set_defaults(func=cmd_subscribers_add)

    q = actions.add_parser("remove", help="mark a subscriber unsubscribed (kept with its history)")
    q.add_argument("address", metavar="ADDRESS", help="the mail address")
    q.set_defaults(func=cmd_subscribers_remove)

    q = actions.add_parser("list", help="list the subscribers, oldest first")
    q.add_argument("--json", action="store_true", help="one JSON object per line")
    q.add_argument("--status", choices=SUBSCRIBER_STATUSES, help="only subscribers in this status")
    q.set_defaults(func=cmd_subscribers_list)

    q = actions.add_parser(
        "import", help="add or merge the rows of a CSV (address[,name,status,sections])"
    )
    q.add_argument("file", type=Path, metavar="CSV", help="the CSV file ('-' for stdin)")
    q.set_defaults(func=cmd_subscribers_import)

    q = actions.add_parser("export", help="write every subscriber as CSV")
    q.add_argument(
        "file", type=Path, nargs="?", metavar="CSV", help="the file to write (default: stdout)"
    )
    q.set_defaults(func=cmd_subscribers_export)
