"""The delivery stage (I/O): a frozen issue -> one message per subscriber -> SMTP or .eml files.

    Issue + Subscriber -build_message-> bytes -send_messages-> SMTP relay (or files)

Every answer of the relay is handed to `record` (the pipeline commits it to the ledger) before
the next message goes out, so a crash loses at most the answer to one message; its resend has
the same Message-ID (FAULTS P2). Headers are built only from `clean_header` text with
email.policy.SMTP (FAULTS R6). Classification of answers (FAULTS 3.5): 2xx sent; 4xx
failed_temp (retried on a later send); 5xx failed_perm; a dropped connection is reopened and
the message retried; 535 (authentication) and a refused sender stop the run (DeliveryError).

Imports only `types`, `exceptions` and the `_mail` helper; never storage, pipeline or cli.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import quote, urlsplit

from aggregator._mail import clean_header, parse_mailbox
from aggregator.exceptions import DeliveryError
from aggregator.types import (
    DeliverySettings,
    DeliveryStatus,
    Issue,
    Newsletter,
    SmtpSettings,
    Subscriber,
)

MAX_RECONNECTS = 3  # per message, after the relay dropped the connection
# Gmail clips a message whose HTML is larger than about 102 KB; stay under 100 KB.
MAX_HTML_BYTES = 100 * 1024
_LINK_SCHEMES = ("http", "https", "mailto")

# subscriber id, new status, the relay's reply, whether this was an attempt to send
Record = Callable[[int, DeliveryStatus, str, bool], None]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One built message for one subscriber."""

    subscriber_id: int
    address: str
    message: bytes


@dataclass(slots=True)
class SendCounts:
    sent: int = 0
    failed_temp: int = 0
    failed_perm: int = 0
    replies: dict[int, str] = field(default_factory=dict)


# --- the message ----------------------------------------------------------------------------


def _host(link: str) -> str:
    return (urlsplit(link).hostname or "localhost").lower()


def message_id(issue: Issue, subscriber: Subscriber, newsletter: Newsletter) -> str:
    """Deterministic per (issue, subscriber): a resend after a crash is recognisably a copy."""
    key = f"{newsletter.link}\n{issue.id}\n{issue.start.isoformat()}\n{subscriber.id}"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:20]
    return f"<issue{issue.number}.{subscriber.id}.{digest}@{_host(newsletter.link)}>"


def unsubscribe_token(subscriber_id: int, secret: str) -> str:
    """`<id>.<HMAC-SHA256(secret, id)>`: the web handler can check it without a lookup table."""
    mac = hmac.new(secret.encode("utf-8"), str(subscriber_id).encode("ascii"), hashlib.sha256)
    return f"{subscriber_id}.{mac.hexdigest()[:32]}"


def unsubscribe_url(newsletter: Newsletter, subscriber_id: int, secret: str) -> str | None:
    """<newsletter link>/unsubscribe?token=... (https only: RFC 8058 one-click), else None."""
    if not secret or urlsplit(newsletter.link).scheme != "https":
        return None
    token = quote(unsubscribe_token(subscriber_id, secret), safe=".")
    return newsletter.link.rstrip("/") + f"/unsubscribe?token={token}"


def _list_id(newsletter: Newsletter) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", newsletter.title.lower()).strip("-")[:60] or "digest"
    return f"{clean_header(newsletter.title, 80)} <{slug}.{_host(newsletter.link)}>"


def build_message(
    issue: Issue,
    subscriber: Subscriber,
    newsletter: Newsletter,
    settings: DeliverySettings,
    *,
    now: datetime,
    unsubscribe_secret: str = "",
) -> bytes:
    """The issue as a multipart/alternative message to one subscriber.

    Raises DeliveryError when this one message cannot be built (a stored address that no
    longer parses): the caller marks that subscriber failed_perm and goes on.
    """
    sender = parse_mailbox(settings.sender)
    if sender is None:
        raise DeliveryError(f"delivery.from {settings.sender!r} is not one mail address")
    try:
        local, _, domain = subscriber.address.rpartition("@")
        to = Address(clean_header(subscriber.name, 100), username=local, domain=domain)
        msg = EmailMessage(policy=SMTP)
        msg["From"] = sender
        msg["To"] = to
        reply_to = parse_mailbox(settings.reply_to) if settings.reply_to else None
        if reply_to is not None:
            msg["Reply-To"] = reply_to
        msg["Subject"] = clean_header(issue.subject)
        msg["Date"] = format_datetime(now)
        msg["Message-ID"] = message_id(issue, subscriber, newsletter)
        msg["List-Id"] = _list_id(newsletter)
        mailto = f"<mailto:{sender.addr_spec}?subject=unsubscribe>"
        url = unsubscribe_url(newsletter, subscriber.id, unsubscribe_secret)
        if url is not None:
            msg["List-Unsubscribe"] = f"<{url}>, {mailto}"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        else:
            msg["List-Unsubscribe"] = mailto
        msg.set_content(issue.text, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(issue.html, subtype="html", charset="utf-8", cte="quoted-printable")
        body_hash = hashlib.sha256(f"{issue.text}\0{issue.html}".encode()).hexdigest()[:32]
        msg.set_boundary(f"=_aggregator_{body_hash}")
        return msg.as_bytes()
    except (ValueError, TypeError, IndexError) as e:
        raise DeliveryError(f"cannot build the message to {subscriber.address!r}: {e}") from e


# --- pre-send checks ------------------------------------------------------------------------


class _Links(HTMLParser):
    """Every href/src in an HTML document."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("href", "src") and value is not None:
                self.links.append(value)


def bad_links(html: str) -> list[str]:
    """Links a mail reader cannot follow safely: anything but http(s), mailto and #anchors."""
    parser = _Links()
    parser.feed(html)
    parser.close()
    bad = []
    for link in parser.links:
        link = link.strip()
        if link.startswith("#"):
            continue  # the table of contents points into the message itself
        if urlsplit(link).scheme.lower() not in _LINK_SCHEMES:
            bad.append(link)
    return bad


def check_issue(
    issue: Issue,
    section_counts: Mapping[str, int],
    *,
    min_stories: int,
    max_per_section: int,
) -> list[str]:
    """The reasons not to send this issue (FAULTS R: empty, over cap, bad link, clipped);
    an empty list means it may go out. Pure: the pipeline gives the counts per section."""
    reasons: list[str] = []
    if len(issue.story_ids) < min_stories:
        reasons.append(
            f"{len(issue.story_ids)} stories, fewer than delivery.min_stories ({min_stories})"
        )
    for section, count in sorted(section_counts.items()):
        if count > max_per_section:
            reasons.append(
                f"section {section!r} has {count} stories, over digest.max_per_section "
                f"({max_per_section})"
            )
    bad = bad_links(issue.html)
    if bad:
        shown = ", ".join(repr(clean_header(b, 80)) for b in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        reasons.append(f"{len(bad)} link(s) that are not http(s) or mailto: {shown}{more}")
    size = len(issue.html.encode("utf-8"))
    if size >= MAX_HTML_BYTES:
        reasons.append(
            f"the HTML is {size // 1024} KB; Gmail clips messages over 100 KB "
            "(lower digest.max_per_section or digest.teaser_chars)"
        )
    if not issue.text.strip():
        reasons.append("the plain-text part is empty (check templates/digest.txt.j2)")
    return reasons


# --- files ----------------------------------------------------------------------------------


def write_messages(outgoing: Iterable[Outgoing], folder: Path) -> list[Path]:
    """mode: files: one <subscriber id>.eml per message in `folder` (temp file + replace)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for out in outgoing:
            path = folder / f"subscriber-{out.subscriber_id}.eml"
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".eml")
            with os.fdopen(fd, "wb") as f:
                f.write(out.message)
            os.replace(tmp, path)
            paths.append(path)
        return paths
    except OSError as e:
        raise DeliveryError(f"cannot write messages into {folder}: {e.strerror or e}") from e


# --- SMTP -----------------------------------------------------------------------------------


def _classify(code: int) -> DeliveryStatus:
    return "failed_perm" if 500 <= code < 600 else "failed_temp"


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return clean_header(f"{code} {text}", 500)


class SmtpConnection:
    """One SMTP session, opened on demand and reused for every message."""

    def __init__(
        self, settings: SmtpSettings, timeout: float, env: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.timeout = timeout
        self.env = os.environ if env is None else env
        self._smtp: smtplib.SMTP | None = None

    def _credentials(self) -> tuple[str, str] | None:
        s = self.settings
        if not s.username_env:
            return None
        missing = [n for n in (s.username_env, s.password_env) if not self.env.get(n)]
        if missing:
            raise DeliveryError(
                f"delivery.smtp: environment variable(s) {', '.join(missing)} not set; "
                "export the relay's username and password there"
            )
        return self.env[s.username_env], self.env[s.password_env]

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        credentials = self._credentials()
        smtp: smtplib.SMTP | None = None
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=self.timeout)
            self._smtp = smtp  # closed by drop() if the handshake below fails
            smtp.ehlo()
            if s.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if credentials is not None:
                smtp.login(*credentials)
        except BaseException:
            self.drop()
            raise
        return smtp

    def open(self) -> smtplib.SMTP:
        if self._smtp is not None:
            return self._smtp
        s = self.settings
        where = f"{s.host}:{s.port}"
        try:
            return self._connect()
        except smtplib.SMTPAuthenticationError as e:
            raise DeliveryError(
                f"SMTP relay {where} refused the login ({_reply(e.smtp_code, e.smtp_error)}); "
                f"check {s.username_env} and {s.password_env}"
            ) from e
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(f"cannot connect to the SMTP relay {where}: {e}") from e

    def drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            try:
                smtp.quit()
            except (smtplib.SMTPException, OSError):
                smtp.close()

    def send(self, sender: str, out: Outgoing) -> tuple[DeliveryStatus, str]:
        """Send one message; (status, reply). A dropped connection is reopened and the
        message retried (it was not accepted: the relay answered nothing)."""
        for attempt in range(MAX_RECONNECTS + 1):
            smtp = self.open()
            try:
                refused = smtp.sendmail(sender, [out.address], out.message)
            except smtplib.SMTPRecipientsRefused as e:
                code, text = e.recipients.get(out.address, (550, b"refused"))
                if code == 421 and attempt < MAX_RECONNECTS:  # the relay closed the session
                    self.drop()
                    continue
                return _classify(code), _reply(code, text)
            except smtplib.SMTPSenderRefused as e:
                if e.smtp_code == 421 and attempt < MAX_RECONNECTS:
                    self.drop()
                    continue
                if 400 <= e.smtp_code < 500:
                    return "failed_temp", _reply(e.smtp_code, e.smtp_error)
                raise DeliveryError(
                    f"the SMTP relay refused the sender {sender}: "
                    f"{_reply(e.smtp_code, e.smtp_error)}; check delivery.from"
                ) from e
            except (smtplib.SMTPServerDisconnected, TimeoutError, ConnectionError):
                self.drop()
                if attempt == MAX_RECONNECTS:
                    return "failed_temp", "connection lost"
                continue
            except smtplib.SMTPResponseException as e:
                if e.smtp_code == 421:  # the relay is closing the session: reconnect
                    self.drop()
                    if attempt < MAX_RECONNECTS:
                        continue
                return _classify(e.smtp_code), _reply(e.smtp_code, e.smtp_error)
            if out.address in refused:  # a partial refusal is a return value, not an error
                code, text = refused[out.address]
                return _classify(code), _reply(code, text)
            return "sent", "250 accepted"
        return "failed_temp", "connection lost"  # pragma: no cover - the loop returns


def send_messages(
    outgoing: Iterable[Outgoing],
    settings: DeliverySettings,
    record: Record,
    *,
    env: Mapping[str, str] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> SendCounts:
    """Send each message over one reused connection, at most `rate_per_minute`; `record` is
    called with `sending` before and the outcome after each message."""
    if settings.smtp is None:
        raise DeliveryError("delivery.smtp is not configured")
    sender = parse_mailbox(settings.sender)
    if sender is None:
        raise DeliveryError(f"delivery.from {settings.sender!r} is not one mail address")
    gap = 60.0 / settings.rate_per_minute if settings.rate_per_minute else 0.0
    counts = SendCounts()
    conn = SmtpConnection(settings.smtp, settings.timeout, env)
    last: float | None = None
    try:
        for out in outgoing:
            if gap and last is not None:
                wait = last + gap - clock()
                if wait > 0:
                    sleep(wait)
            last = clock()
            record(out.subscriber_id, "sending", "", False)
            try:
                status, reply = conn.send(sender.addr_spec, out)
            except DeliveryError:
                record(out.subscriber_id, "pending", "", False)  # not attempted: stays queued
                raise
            record(out.subscriber_id, status, reply, True)
            counts.replies[out.subscriber_id] = reply
            if status == "sent":
                counts.sent += 1
            elif status == "failed_perm":
                counts.failed_perm += 1
            else:
                counts.failed_temp += 1
    finally:
        conn.close()
    return counts
