"""Delivery against a real SMTP server (aiosmtpd on 127.0.0.1): ledger and mailbox agree."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.deliver import build_message, unsubscribe_token
from aggregator.exceptions import DeliveryError
from aggregator.storage import open_storage
from aggregator.types import DeliverySettings, Issue, Newsletter, NewSubscriber, Subscriber
from tests.smtpserver import SmtpServer
from tests.test_cli import run

NOW = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
START, END = datetime(2026, 11, 22, 23, 0, tzinfo=UTC), datetime(2026, 11, 29, 23, 0, tzinfo=UTC)


SECTIONS = "  - {id: training, title: Training, rules: [training]}\n"


def write_config(tmp_path: Path, delivery: str, sections: str = SECTIONS) -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', description: d, "
        "timezone: Europe/Berlin}\n"
        "storage: {database: 'sqlite:///data/a.db'}\n"
        "output: {dir: out}\n"
        f"delivery: {delivery}\n"
        "sources:\n  - {id: s, name: S, url: 'http://127.0.0.1:9/feed'}\n"
        "sections:\n" + sections
    )
    return path


def smtp_delivery(port: int, extra: str = "") -> str:
    return (
        # min_stories 0: these tests are about delivery, their issues are empty
        "{mode: smtp, min_stories: 0, from: 'News <news@t.example.org>', "
        "unsubscribe_secret_env: UNSUB_KEY, "
        f"smtp: {{host: 127.0.0.1, port: {port}, security: none{extra}}}}}"
    )


def add_subscribers(config, addresses):
    storage = open_storage(config.database, NOW)
    try:
        storage.add_subscribers([NewSubscriber(a) for a in addresses], NOW)
    finally:
        storage.close()


def send(config, now=NOW, env=None):
    storage = open_storage(config.database, now)
    try:
        return pipeline.send_issue(
            config, storage, now, start=START, end=END, env=env or {"UNSUB_KEY": "k"}
        )
    finally:
        storage.close()


def ledger(config):
    storage = open_storage(config.database, NOW)
    try:
        issue = storage.get_issue(START, END)
        subs = {s.id: s.address for s in storage.get_subscribers()}
        return {subs[d.subscriber_id]: d for d in storage.get_deliveries(issue.id)}
    finally:
        storage.close()


def test_one_copy_each_across_drops_refusals_and_reruns(tmp_path, smtp_server):
    box = smtp_server.mailbox
    config = load_config(write_config(tmp_path, smtp_delivery(smtp_server.port)))
    good = [f"r{i}@example.org" for i in range(40)]
    refused = ["bad1@example.org", "bad2@example.org", "bad3@example.org"]
    deferred = ["later@example.org"]
    add_subscribers(config, good[:20] + refused + deferred + good[20:])
    box.refuse, box.defer, box.drop_after = set(refused), set(deferred), 7

    report = send(config)
    assert report.created and report.enqueued == 44
    assert (report.sent, report.failed_perm, report.failed_temp) == (40, 3, 1)
    assert box.copies() == {a: 1 for a in good}
    rows = ledger(config)
    assert {a for a, d in rows.items() if d.status == "failed_perm"} == set(refused)
    assert all(rows[a].reply.startswith("550") for a in refused)
    assert rows["later@example.org"].status == "failed_temp"
    assert rows["later@example.org"].attempts == 1
    assert all(rows[a].status == "sent" for a in good)

    again = send(config, NOW + timedelta(seconds=10))  # too soon to retry the 451
    assert not again.created and again.issue == report.issue
    assert (again.sent, again.waiting, again.enqueued) == (0, 1, 0)
    box.defer.clear()
    third = send(config, NOW + timedelta(minutes=2))
    assert third.sent == 1 and ledger(config)["later@example.org"].attempts == 2
    assert box.copies() == {a: 1 for a in [*good, *deferred]}  # nothing twice
    assert send(config, NOW + timedelta(hours=1)).sent == 0

    ids = [m["Message-ID"] for m in box.parsed()]
    assert len(set(ids)) == len(ids)
    first = box.parsed()[0]
    assert first["To"] == "r0@example.org" and first["List-Unsubscribe-Post"]
    token = unsubscribe_token(ledger(config)["r0@example.org"].subscriber_id, "k")
    assert f"<https://t.example.org/unsubscribe?token={token}>" in first["List-Unsubscribe"]
    assert "mailto:news@t.example.org" in first["List-Unsubscribe"]


def test_a_crash_leaves_sending_rows_that_are_resent_with_the_same_message_id(
    tmp_path, smtp_server
):
    config = load_config(write_config(tmp_path, smtp_delivery(smtp_server.port)))
    add_subscribers(config, ["a@example.org", "b@example.org"])
    send(config)
    storage = open_storage(config.database, NOW)
    try:
        issue = storage.get_issue(START, END)
        sub = storage.get_subscriber("b@example.org")
        storage.set_delivery(issue.id, sub.id, "sending", NOW)  # killed after 250, before commit
    finally:
        storage.close()
    assert send(config).sent == 1
    copies = [m for m in smtp_server.mailbox.parsed() if m["To"] == "b@example.org"]
    assert len(copies) == 2 and copies[0]["Message-ID"] == copies[1]["Message-ID"]


def test_unsubscribed_are_not_sent(tmp_path, smtp_server):
    config = load_config(write_config(tmp_path, smtp_delivery(smtp_server.port)))
    add_subscribers(config, ["a@example.org", "b@example.org"])
    storage = open_storage(config.database, NOW)
    storage.set_subscriber_status("b@example.org", "unsubscribed", NOW)
    storage.close()
    assert send(config).sent == 1
    assert smtp_server.mailbox.copies() == {"a@example.org": 1}


HOSTILE = [
    "Hello\r\nBcc: x@evil.org",
    "=?UTF-8?Q?=0A?=Bcc: x@evil.org",
    "trailing\n",
    "v\x0btab",
    "line\u2028sep",
    "x" * 1000,
]


@pytest.mark.parametrize("hostile", HOSTILE)
def test_hostile_subject_and_name_leave_exactly_our_headers(hostile):
    newsletter = Newsletter("T", "https://t.example.org/", "d", "Europe/Berlin")
    issue = Issue(1, 1, START, END, NOW, hostile, "<p>h</p>", "t", ())
    sub = Subscriber(7, "a@example.org", hostile, "active", (), NOW)
    settings = DeliverySettings("smtp", "News <news@t.example.org>")
    raw = build_message(issue, sub, newsletter, settings, now=NOW, unsubscribe_secret="k")
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert sorted(msg.keys()) == sorted(
        ["From", "To", "Subject", "Date", "Message-ID", "List-Id", "List-Unsubscribe",
         "List-Unsubscribe-Post", "MIME-Version", "Content-Type"]
    )  # fmt: skip
    assert "\n" not in str(msg["Subject"]) and len(str(msg["Subject"])) <= 200
    assert msg["To"].addresses[0].addr_spec == "a@example.org"
    assert len(msg["To"].addresses) == 1 and msg.get_all("Bcc") is None  # the name stays a name
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]


def test_files_mode_writes_one_eml_per_subscriber_and_leaves_the_ledger(tmp_path):
    delivery = "{mode: files, min_stories: 0, from: 'News <news@t.example.org>'}"
    config = load_config(write_config(tmp_path, delivery))
    add_subscribers(config, ["a@example.org", "b@example.org"])
    report = send(config)
    assert len(report.files) == 2 and all(p.suffix == ".eml" for p in report.files)
    parsed = email.message_from_bytes(report.files[0].read_bytes(), policy=email.policy.default)
    assert parsed["To"] == "a@example.org"
    # no unsubscribe_secret_env configured: the mailto form only, and no one-click header
    assert parsed["List-Unsubscribe"] == "<mailto:news@t.example.org?subject=unsubscribe>"
    assert parsed["List-Unsubscribe-Post"] is None
    storage = open_storage(config.database, NOW)
    try:
        assert storage.get_deliveries(report.issue.id) == []
    finally:
        storage.close()


def test_auth_failure_stops_the_run(tmp_path):
    from aiosmtpd.smtp import AuthResult

    with SmtpServer(
        auth_require_tls=False, authenticator=lambda *a: AuthResult(success=False, handled=False)
    ) as server:
        extra = ", username_env: SMTP_USER, password_env: SMTP_PASS"
        config = load_config(write_config(tmp_path, smtp_delivery(server.port, extra)))
        add_subscribers(config, ["a@example.org"])
        with pytest.raises(DeliveryError, match="refused the login"):
            send(config, env={"SMTP_USER": "u", "SMTP_PASS": "p"})
        with pytest.raises(DeliveryError, match="SMTP_PASS"):
            send(config, env={"SMTP_USER": "u"})
        assert server.mailbox.messages == []
    assert {d.status for d in ledger(config).values()} == {"pending"}


def test_cli_digest_send(tmp_path, smtp_server, monkeypatch):
    path = write_config(tmp_path, smtp_delivery(smtp_server.port))
    code, _, _ = run("--config", str(path), "subscribers", "add", "a@example.org")
    assert code == 0
    smtp_server.mailbox.refuse = {"bad@example.org"}
    code, _, _ = run("--config", str(path), "subscribers", "add", "bad@example.org")
    window = ("--since", "2026-11-16", "--until", "2026-11-23")
    code, out, err = run("--config", str(path), "digest", "--send", *window)
    assert code == 5, err
    assert "issue 1 (frozen now)" in out and "sent 1" in out and "failed permanently 1" in out
    code, out, _ = run("--config", str(path), "digest", "--send", *window)
    assert code == 0 and "frozen earlier" in out and "sent 0" in out
    assert smtp_server.mailbox.copies() == {"a@example.org": 1}


def test_cli_digest_send_without_delivery_config(tmp_path):
    from tests.test_cli import write_config as plain_config

    path = plain_config(tmp_path, "  - {id: s, name: S, url: 'http://127.0.0.1:9/feed'}\n")
    code, _, err = run("--config", str(path), "digest", "--send")
    assert code == 6 and "delivery" in err


def test_delivery_config_keys_and_errors(tmp_path):
    from aggregator.exceptions import ConfigError

    extra = ", username_env: SMTP_U, password_env: SMTP_P"
    config = load_config(write_config(tmp_path, smtp_delivery(2525, extra)))
    assert config.delivery is not None and config.delivery.smtp is not None
    smtp = config.delivery.smtp
    assert (smtp.host, smtp.port, smtp.security, smtp.username_env) == (
        "127.0.0.1", 2525, "none", "SMTP_U"
    )  # fmt: skip
    tls_delivery = (
        "{mode: smtp, from: n@t.example.org, smtp: {host: mail.example.org, security: tls}, "
        "rate_per_minute: 60, timeout: 30}"
    )
    tls = load_config(write_config(tmp_path, tls_delivery))
    assert tls.delivery.smtp.port == 465 and tls.delivery.rate_per_minute == 60
    bad = (
        "{mode: smtpp, from: 'nobody', rate: 1, "
        "smtp: {host: 'smtp://x', security: ssl, password_env: 'hunter2 secret'}}"
    )
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, bad))
    text = str(e.value)
    for fragment in (
        "feeds.yaml:4: delivery.mode: unknown mode 'smtpp'",
        "feeds.yaml:4: delivery.from: expected an address",
        "feeds.yaml:4: delivery.rate: unknown key 'rate'",
        "delivery.smtp.host: a host name or address, not a URL",
        "delivery.smtp.security: unknown security 'ssl'",
        "delivery.smtp.password_env: not an environment variable name",
    ):
        assert fragment in text, text
    assert "hunter2" not in text
    with pytest.raises(ConfigError, match="mode smtp needs an smtp"):
        load_config(write_config(tmp_path, "{mode: smtp, from: n@t.example.org}"))


def test_rate_limit_spaces_the_messages(smtp_server):
    from aggregator.deliver import Outgoing, send_messages
    from aggregator.types import SmtpSettings

    settings = DeliverySettings(
        "smtp",
        "news@t.example.org",
        smtp=SmtpSettings("127.0.0.1", smtp_server.port, "none"),
        rate_per_minute=30,
    )
    waits: list[float] = []
    records: list[tuple[int, str]] = []
    msgs = [Outgoing(i, f"r{i}@example.org", b"Subject: x\r\n\r\nbody\r\n") for i in range(3)]
    counts = send_messages(
        msgs,
        settings,
        lambda sid, status, reply, attempted: records.append((sid, status)),
        sleep=waits.append,
        clock=lambda: 100.0,  # a frozen clock: every gap is waited in full
    )
    assert counts.sent == 3 and waits == [2.0, 2.0]
    assert records == [(0, "sending"), (0, "sent"), (1, "sending"), (1, "sent"),
                       (2, "sending"), (2, "sent")]  # fmt: skip
