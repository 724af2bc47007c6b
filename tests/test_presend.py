"""Pre-send checks, preview and the test copy (issue 6, part 2)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.deliver import MAX_HTML_BYTES, bad_links, check_issue
from aggregator.storage import open_storage
from aggregator.types import Issue
from tests.test_cli import run
from tests.test_deliver import (
    END,
    NOW,
    START,
    add_subscribers,
    smtp_delivery,
    write_config,
)

GOOD_HTML = (
    '<p><a href="#section-a">A</a> <a href="https://example.org/x">x</a> '
    '<a href="HTTP://example.org/y">y</a> <a href="mailto:news@example.org">mail</a></p>'
)
WINDOW = ("--since", "2026-11-16", "--until", "2026-11-23")


def issue(html: str = GOOD_HTML, text: str = "text", stories: int = 3) -> Issue:
    return Issue(1, 1, START, END, NOW, "Subject", html, text, tuple(range(1, stories + 1)))


def check(i: Issue, counts: dict[str, int] | None = None, min_stories: int = 1) -> list[str]:
    return check_issue(i, counts or {}, min_stories=min_stories, max_per_section=20)


def test_a_good_issue_passes():
    assert check(issue(), {"a": 20, "b": 1}) == []


def test_each_failed_check_gives_one_reason():
    bad = issue(html='<a href="javascript:alert(1)">x</a><img src="data:x">', text=" \n", stories=0)
    reasons = check(bad, {"a": 21})
    assert len(reasons) == 4
    assert "0 stories" in reasons[0] and "min_stories (1)" in reasons[0]
    assert "'a' has 21 stories" in reasons[1]
    assert "2 link(s)" in reasons[2] and "javascript:alert(1)" in reasons[2]
    assert "plain-text part is empty" in reasons[3]
    assert all("\n" not in r for r in reasons)


def test_min_stories_is_configurable():
    assert check(issue(stories=0), min_stories=0) == []
    assert len(check(issue(stories=4), min_stories=5)) == 1


def test_html_over_100_kb_is_held():
    big = GOOD_HTML + "x" * MAX_HTML_BYTES
    [reason] = check(issue(html=big))
    assert "Gmail clips" in reason


@pytest.mark.parametrize(
    ("link", "bad"),
    [
        ("https://a.example/", False),
        ("#toc", False),
        ("mailto:a@b.example", False),
        ("ftp://a.example/", True),
        ("//a.example/x", True),
        ("relative/path", True),
        (" javascript:x", True),
        ("vbscript:x", True),
    ],
)
def test_bad_links(link, bad):
    assert bool(bad_links(f'<a href="{link}">x</a>')) is bad


def deliveries(config):
    storage = open_storage(config.database, NOW)
    try:
        found = storage.get_issue(
            datetime(2026, 11, 15, 23, 0, tzinfo=UTC), datetime(2026, 11, 22, 23, 0, tzinfo=UTC)
        )
        return [] if found is None else storage.get_deliveries(found.id)
    finally:
        storage.close()


def test_cli_holds_an_empty_issue_and_force_sends_it(tmp_path, smtp_server):
    delivery = smtp_delivery(smtp_server.port).replace("min_stories: 0", "min_stories: 1")
    path = write_config(tmp_path, delivery)
    assert run("--config", str(path), "subscribers", "add", "a@example.org")[0] == 0
    code, out, err = run("--config", str(path), "digest", "--send", *WINDOW)
    assert code == 6, err
    assert "issue 1 held" in err and "held: 0 stories, fewer than delivery.min_stories" in err
    assert "--force" in err
    assert smtp_server.mailbox.messages == []
    assert deliveries(load_config(path)) == []  # the ledger untouched
    code, out, err = run("--config", str(path), "digest", "--send", "--force", *WINDOW)
    assert code == 0, err
    assert "sent 1" in out and smtp_server.mailbox.copies() == {"a@example.org": 1}


def test_cli_test_copy_leaves_ledger_and_subscribers_alone(tmp_path, smtp_server):
    path = write_config(tmp_path, smtp_delivery(smtp_server.port))
    config = load_config(path)
    add_subscribers(config, ["a@example.org"])
    code, out, err = run(
        "--config", str(path), "digest", "--send", "--to", "Editor <Ed@Example.ORG>", *WINDOW
    )
    assert code == 0, err
    assert "test copy of issue 1 to Ed@example.org: sent" in out
    assert smtp_server.mailbox.copies() == {"Ed@example.org": 1}
    assert deliveries(config) == []
    storage = open_storage(config.database, NOW)
    try:
        assert [s.address for s in storage.get_subscribers()] == ["a@example.org"]
    finally:
        storage.close()
    # the real send afterwards still reaches the subscriber, once
    code, out, err = run("--config", str(path), "digest", "--send", *WINDOW)
    assert code == 0 and "sent 1" in out
    assert smtp_server.mailbox.copies() == {"Ed@example.org": 1, "a@example.org": 1}


@pytest.mark.parametrize(
    "argv",
    [
        ("digest", "--send", "--to", "not an address"),
        ("digest", "--send", "--to", "a@example.org\r\nBcc: x@example.org"),
        ("digest", "--to", "a@example.org"),
        ("digest", "--force"),
        ("digest", "--preview", "--send"),
    ],
)
def test_cli_usage_errors(tmp_path, argv):
    path = write_config(tmp_path, "{mode: files, from: 'News <news@t.example.org>'}")
    code, _, err = run("--config", str(path), *argv)
    assert code == 2, err


def test_cli_preview_writes_files_and_freezes_nothing(tmp_path, smtp_server):
    path = write_config(tmp_path, smtp_delivery(smtp_server.port))
    code, out, err = run("--config", str(path), "digest", "--preview", *WINDOW)
    assert code == 0, err
    assert "not frozen yet" in out
    paths = [line.strip() for line in out.splitlines() if line.startswith("  ")]
    assert any(p.endswith(".html") for p in paths) and any(p.endswith(".txt") for p in paths)
    assert all(Path(p).exists() for p in paths)
    assert deliveries(load_config(path)) == []
    storage = open_storage(load_config(path).database, NOW)
    try:
        assert storage.get_issues() == []
    finally:
        storage.close()
    # once frozen, the preview shows the frozen issue
    assert run("--config", str(path), "digest", "--send", *WINDOW)[0] == 0
    code, out, err = run("--config", str(path), "digest", "--preview", *WINDOW)
    assert code == 0 and "preview of issue 1 (frozen" in out


@pytest.mark.parametrize(
    ("extra", "key"),
    [("min_stories: -1", "min_stories"), ("max_lateness_hours: 1000", "max_lateness_hours")],
)
def test_new_delivery_keys_are_checked(tmp_path, extra, key):
    from aggregator.exceptions import ConfigError

    delivery = f"{{mode: files, from: 'News <news@t.example.org>', {extra}}}"
    with pytest.raises(ConfigError, match=key):
        load_config(write_config(tmp_path, delivery))


def test_new_delivery_keys_have_defaults(tmp_path):
    config = load_config(write_config(tmp_path, "{mode: files, from: 'N <n@t.example.org>'}"))
    assert config.delivery is not None
    assert (config.delivery.min_stories, config.delivery.max_lateness_hours) == (1, 24.0)


def test_test_copy_in_files_mode_writes_one_eml(tmp_path):
    delivery = "{mode: files, from: 'News <news@t.example.org>'}"
    path = write_config(tmp_path, delivery)
    code, out, err = run("--config", str(path), "digest", "--send", "--to", "ed@example.org")
    assert code == 0, err
    assert "test copy of issue 1 to ed@example.org: sent (written to" in out
    [eml] = (tmp_path / "outbox").glob("issue-*/test-copy.eml")
    assert b"To: ed@example.org" in eml.read_bytes()
    assert not list((tmp_path / "outbox").glob("issue-*/subscriber-*.eml"))
    assert not list((tmp_path / "out").glob("issue-*"))  # never in the public folder
