"""The subscribers stage (pure): addresses checked and normalized, CSV rows in and out,
and the double opt-in's signed, expiring confirmation tokens and message.

    "Ann <Ann@Example.ORG>" -> ("Ann@example.org", "Ann");   CSV text <-> NewSubscriber rows
    (id, address, expiry, secret) -> confirmation token -> checked against `now`

Imports only `types`, `exceptions` and the `_mail` helper; never storage, pipeline or cli.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import io
from collections.abc import Sequence
from datetime import datetime
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

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
            address, display = normalize_address(_uncell(row.get("address") or ""))
            name = clean_header(_uncell((row.get("name") or "").strip()) or display)
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
    """The subscribers as CSV (CSV_FIELDS), readable back by `read_subscriber_csv`; a cell a
    spreadsheet would run as a formula starts with an apostrophe (see `_cell`)."""

    def iso(d: datetime | None) -> str:
        return d.isoformat() if d else ""

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for s in subscribers:
        writer.writerow(
            [
                _cell(s.address),
                _cell(s.name),
                s.status,
                " ".join(s.sections),
                iso(s.created),
                iso(s.confirmed),
            ]
        )
    return buf.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula (CSV injection): the
# public subscribe form accepts "=cmd@example.org", a valid address. Such a cell is written
# with a leading apostrophe, which spreadsheets show as text, and read back without it.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_START) else value


def _uncell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_START) else value


# --- double opt-in (issue 7) ---------------------------------------------------------------

CONFIRM_PREFIX = "c1"  # a new token format gets a new prefix; old links then fail cleanly
MAX_TOKEN_CHARS = 200  # far over any token we make; longer ones are refused unread


def _confirm_mac(subscriber_id: int, address: str, expires: int, secret: str) -> str:
    # "confirm" keeps these MACs apart from unsubscribe tokens (deliver.unsubscribe_token MACs
    # the bare id), so one can never stand in for the other; the address binds the link to the
    # address it was sent to.
    message = f"confirm\n{subscriber_id}\n{address_key(address)}\n{expires}".encode()
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()[:32]


def confirm_token(subscriber_id: int, address: str, expires: datetime, secret: str) -> str:
    """`c1.<id>.<expiry, unix seconds>.<HMAC>`: signed, expiring, bound to the address."""
    if not secret:
        raise SubscriberError("no signing secret: cannot make a confirmation link")
    stamp = int(expires.timestamp())
    mac = _confirm_mac(subscriber_id, address, stamp, secret)
    return f"{CONFIRM_PREFIX}.{subscriber_id}.{stamp}.{mac}"


def confirm_token_subscriber(token: str) -> int | None:
    """The subscriber id a confirmation token names (unverified: check it with
    `check_confirm_token` against that subscriber's address), or None if it is malformed.
    Non-ASCII and overlong tokens are malformed (hmac.compare_digest raises TypeError on
    non-ASCII str)."""
    if not token.isascii() or len(token) > MAX_TOKEN_CHARS:
        return None
    parts = token.split(".")
    if len(parts) != 4 or parts[0] != CONFIRM_PREFIX:
        return None
    if not (parts[1].isascii() and parts[1].isdigit() and len(parts[1]) <= 12):
        return None
    if not (parts[2].isascii() and parts[2].isdigit() and len(parts[2]) <= 12):
        return None
    return int(parts[1])


def check_confirm_token(token: str, address: str, secret: str, now: datetime) -> str | None:
    """None if `token` is a valid, unexpired confirmation of `address`; else why not."""
    subscriber_id = confirm_token_subscriber(token)
    if subscriber_id is None or not secret:
        return "malformed"
    stamp = int(token.split(".")[2])
    expected = _confirm_mac(subscriber_id, address, stamp, secret)
    if not hmac.compare_digest(expected, token.split(".")[3]):
        return "forged"
    if now.timestamp() >= stamp:
        return "expired"
    return None


def mask_address(address: str) -> str:
    """ann@example.org -> a**@example.org: enough for its owner to recognise, not to harvest."""
    local, _, domain = address.rpartition("@")
    return f"{local[:1]}{'*' * min(max(len(local) - 1, 2), 8)}@{domain}"


def build_confirmation_message(
    address: str,
    confirm_url: str,
    *,
    newsletter_title: str,
    sender: str,
    now: datetime,
    hours: float,
) -> bytes:
    """The plain-text "please confirm" message. It names no other subscriber and carries no
    tracking: one link, the lifetime of that link, and what to do if it was not you."""
    from_ = parse_mailbox(sender)
    if from_ is None:
        raise SubscriberError(f"delivery.from {sender!r} is not one mail address")
    local, _, domain = address.rpartition("@")
    title = clean_header(newsletter_title, 120)
    msg = EmailMessage(policy=SMTP)
    msg["From"] = from_
    msg["To"] = Address(username=local, domain=domain)
    msg["Subject"] = clean_header(f"Confirm your subscription to {title}")
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid("confirm", from_.domain or None)
    msg["Auto-Submitted"] = "auto-generated"
    lifetime = f"{hours:g} hours"
    msg.set_content(
        f"Someone, hopefully you, asked to subscribe {address} to {title}.\n\n"
        f"To confirm, open this link within {lifetime} and press the button:\n\n"
        f"  {confirm_url}\n\n"
        "If it was not you, ignore this message: nothing is sent to you unless you confirm.\n",
        charset="utf-8",
        cte="quoted-printable",
    )
    return msg.as_bytes()


# --- end double opt-in (issue 7) -----------------------------------------------------------
