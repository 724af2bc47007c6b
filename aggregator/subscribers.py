"""The subscribers stage (pure): addresses checked and normalized, CSV rows in and out.

    "Ann <Ann@Example.ORG>" -> ("Ann@example.org", "Ann");   CSV text <-> NewSubscriber rows

Imports only `types`, `exceptions` and the `_mail` helper; never storage, pipeline or cli.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import AddressHeader
from email.policy import SMTP

from aggregator._mail import clean_header, parse_mailbox
from aggregator.exceptions import AggregatorError
from aggregator.types import SUBSCRIBER_STATUSES, NewSubscriber, Subscriber, SubscriberStatus

CSV_FIELDS = ("address", "name", "status", "sections", "created", "confirmed")
MAX_ADDRESS_CHARS = 254  # RFC 5321 path limit minus the angle brackets


class SubscriberError(AggregatorError):
    """An address or a CSV row that cannot be a subscriber; the message says where."""


def normalize_address(raw: str) -> tuple[str, str]:
    """(addr-spec with its domain lower-cased, display name) of one mail address.

    Uses the strict header parser (`parse_mailbox`): groups, several addresses, header
    injection and addresses without a domain are refused with SubscriberError.
    """
    if any(c in raw for c in "\r\n\x00") or len(raw) > 1000:
        raise SubscriberError(f"{raw[:60]!r} is not one mail address")
    mailbox = parse_mailbox(raw.strip())
    if (
        mailbox is None
        or _is_group(raw.strip())
        or not mailbox.username
        or "." not in mailbox.domain.strip(".")
    ):
        raise SubscriberError(f"{raw!r} is not one mail address like 'ann@example.org'")
    address = f"{mailbox.username}@{mailbox.domain.lower()}"
    if len(address) > MAX_ADDRESS_CHARS or " " in address:
        raise SubscriberError(f"{raw!r} is not one mail address like 'ann@example.org'")
    return address, mailbox.display_name


def _is_group(raw: str) -> bool:
    header = SMTP.header_factory("To", raw)
    groups = header.groups if isinstance(header, AddressHeader) else ()
    return any(g.display_name is not None for g in groups)


def address_key(address: str) -> str:
    """The merge key: two spellings of one address differing only in case are one person."""
    return address.lower()


def parse_sections(raw: str, known: Sequence[str]) -> tuple[str, ...]:
    """'ai; tools' or 'ai tools' -> ('ai', 'tools'); unknown ids are a SubscriberError."""
    ids = tuple(dict.fromkeys(p for p in raw.replace(";", " ").replace(",", " ").split() if p))
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise SubscriberError(
            f"unknown section(s) {', '.join(unknown)}; sections: {', '.join(known)}"
        )
    return ids


def read_subscriber_csv(text: str, known_sections: Sequence[str]) -> list[NewSubscriber]:
    """Rows of a CSV with a header naming at least `address` (and optionally name, status,
    sections). Every bad row is reported (by line) in one SubscriberError; duplicates merge
    (the later row wins)."""
    reader = csv.DictReader(io.StringIO(text))
    header = [h.strip().lower() for h in reader.fieldnames or ()]
    if "address" not in header:
        raise SubscriberError("line 1: the CSV needs a header row with an 'address' column")
    reader.fieldnames = header
    problems: list[str] = []
    rows: dict[str, NewSubscriber] = {}
    for row in reader:
        line = reader.line_num
        try:
            address, display = normalize_address(row.get("address") or "")
            name = clean_header((row.get("name") or "").strip() or display)
            status_raw = (row.get("status") or "").strip().lower()
            status: SubscriberStatus | None = None
            if status_raw:
                if status_raw not in SUBSCRIBER_STATUSES:
                    raise SubscriberError(
                        f"unknown status {status_raw!r} (one of {', '.join(SUBSCRIBER_STATUSES)})"
                    )
                status = status_raw
            sections_raw = row.get("sections")
            sections = (
                parse_sections(sections_raw, known_sections) if sections_raw is not None else None
            )
        except SubscriberError as e:
            problems.append(f"line {line}: {e}")
            continue
        rows[address_key(address)] = NewSubscriber(address, name, sections, status)
    if problems:
        raise SubscriberError("\n".join(problems))
    return list(rows.values())


def write_subscriber_csv(subscribers: Sequence[Subscriber]) -> str:
    """The subscribers as CSV (CSV_FIELDS), readable back by `read_subscriber_csv`."""

    def iso(d: datetime | None) -> str:
        return d.isoformat() if d else ""

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in subscribers:
        writer.writerow(
            [s.address, s.name, s.status, " ".join(s.sections), iso(s.created), iso(s.confirmed)]
        )
    return buf.getvalue()
