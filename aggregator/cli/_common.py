"""What every command shares: exit codes, usage errors, time arguments, opening the store."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo

from aggregator.storage import StorageType, open_storage
from aggregator.types import Config

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_STORAGE = 4
EXIT_SOURCES = 5
EXIT_OUTPUT = 6
EXIT_LOCKED = 7  # `run`: another scheduler holds the database's lock; `digest --send`: another send
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


def open_store(config: Config, now: datetime) -> StorageType:
    return open_storage(config.database, now)


def write_export(text: str, path: Path | None, summary: str, out: TextIO, err: TextIO) -> int:
    """An export to standard output (no path, or "-") or to a file, with a one-line summary."""
    if path is None or str(path) == "-":
        out.write(text)
        return EXIT_OK
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as e:
        err.write(f"aggregator: output: cannot write {path}: {e.strerror or e}\n")
        return EXIT_OUTPUT
    out.write(f"{summary} to {path}\n")
    return EXIT_OK
