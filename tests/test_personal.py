"""Personal sections: a subscriber who chose sections gets only those (issue 6, part 3)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.storage import open_storage
from aggregator.types import Item, NewSubscriber, Placement
from tests.test_deliver import END, NOW, START, ledger, send, smtp_delivery
from tests.test_deliver import write_config as deliver_config

SEEN = START + timedelta(days=2)


def write_config(tmp_path: Path, port: int) -> Path:
    sections = (
        "  - {id: training, title: Training, rules: [training]}\n"
        "  - {id: match, title: Match reports, rules: [match]}\n"
        "  - {id: kit, title: Kit, rules: [kit]}\n"
    )
    return deliver_config(tmp_path, smtp_delivery(port), sections)


def item(guid: str, title: str) -> Item:
    link = f"https://news.example.org/{guid}"
    return Item(
        source_id="s", guid=guid, url=link, link=link, title=title, title_key=title.lower(),
        summary_html=f"<p>{title}</p>", summary_text=title, published=SEEN,
    )  # fmt: skip


def seed(config) -> None:
    storage = open_storage(config.database, NOW)
    try:
        with storage.transaction() as tx:
            for guid, title, section in [
                ("t1", "Training drill one", "training"),
                ("t2", "Training drill two", "training"),
                ("m1", "Match report alpha", "match"),
            ]:
                story = tx.add_story(SEEN)
                tx.add_item(item(guid, title), story, Placement(section, 1.0), SEEN)
        storage.add_subscribers(
            [
                NewSubscriber("all@example.org"),
                NewSubscriber("match@example.org", sections=("match",)),
                NewSubscriber("both@example.org", sections=("match", "training")),
                NewSubscriber("kit@example.org", sections=("kit",)),
            ],
            NOW,
        )
    finally:
        storage.close()


def html_of(server, address: str) -> str:
    [msg] = [m for m in server.mailbox.parsed() if m["To"] == address]
    part = msg.get_body(("html",))
    assert part is not None
    return str(part.get_content())


def text_of(server, address: str) -> str:
    [msg] = [m for m in server.mailbox.parsed() if m["To"] == address]
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def test_each_subscriber_gets_only_their_sections(tmp_path, smtp_server):
    config = load_config(write_config(tmp_path, smtp_server.port))
    seed(config)
    report = send(config)
    assert len(report.issue.story_ids) == 3
    assert (report.sent, report.skipped, report.failed) == (3, 1, 0)
    titles = ("Training drill one", "Training drill two", "Match report alpha")

    everything = html_of(smtp_server, "all@example.org")
    # no choice: the frozen issue itself (the mail uses CRLF line ends)
    assert everything.replace("\r\n", "\n").strip() == report.issue.html.strip()
    match = html_of(smtp_server, "match@example.org")
    assert "Match report alpha" in match and "Training drill" not in match
    assert "Training drill" not in text_of(smtp_server, "match@example.org")
    both = html_of(smtp_server, "both@example.org")
    assert all(t in both for t in titles)
    assert smtp_server.mailbox.copies() == {
        "all@example.org": 1,
        "match@example.org": 1,
        "both@example.org": 1,
    }

    rows = ledger(config)
    assert rows["kit@example.org"].status == "skipped"
    assert "no story in the chosen sections (kit)" in rows["kit@example.org"].reply
    # a rerun sends nothing: skipped is final, like sent
    again = send(config, NOW + timedelta(hours=1))
    assert (again.sent, again.skipped) == (0, 0)
    assert len(smtp_server.mailbox.messages) == 3


def test_personal_copy_keeps_subject_and_a_stable_message_id(tmp_path, smtp_server):
    config = load_config(write_config(tmp_path, smtp_server.port))
    seed(config)
    report = send(config)
    msgs = {m["To"]: m for m in smtp_server.mailbox.parsed()}
    assert msgs["match@example.org"]["Subject"] == report.issue.subject
    assert report.issue.end == END and isinstance(report.issue.created, datetime)


def test_a_personal_copy_is_rebuilt_from_the_frozen_issue(tmp_path, smtp_server):
    """Review finding 6: after the freeze, a new member joins a story and an editor moves it
    to another section; a personal copy (a first send or a resend) does not change."""
    from aggregator.pipeline._send import PersonalIssues

    config = load_config(write_config(tmp_path, smtp_server.port))
    seed(config)
    storage = open_storage(config.database, NOW)
    try:
        issue, _ = pipeline.freeze_issue(config, storage, NOW, start=START, end=END)
        assert {f.section for f in issue.stories} == {"training", "match"}
        before = PersonalIssues(config, storage, issue).for_sections(("match",))
        assert before is not None and "Match report alpha" in before.html
        [m1] = [s for s in storage.get_items() if s.item.guid == "m1"]
        later = item("m2", "Match report alpha: the longer account of the same match")
        with storage.transaction() as tx:
            tx.add_item(later, m1.story_id, Placement("match", 1.0), SEEN + timedelta(hours=1))
        storage.add_correction(
            m1.id, "training", "", Placement("training", reason="editor: moved"), NOW
        )
        issue = storage.get_issue(START, END)
        assert issue is not None
        after = PersonalIssues(config, storage, issue).for_sections(("match",))
        counts = pipeline.issue_section_counts(storage, issue)
    finally:
        storage.close()
    assert after is not None and after.html == before.html and after.text == before.text
    assert "longer account" not in after.html
    assert counts == {"training": 2, "match": 1}


def test_an_issue_frozen_before_migration_6_ignores_members_that_joined_later(
    tmp_path, smtp_server
):
    from aggregator.pipeline._send import PersonalIssues

    config = load_config(write_config(tmp_path, smtp_server.port))
    seed(config)
    storage = open_storage(config.database, NOW)
    try:
        issue, _ = pipeline.freeze_issue(config, storage, NOW, start=START, end=END)
        legacy = replace(issue, stories=())  # as read from a database before migration 6
        before = PersonalIssues(config, storage, legacy).for_sections(("match",))
        [m1] = [s for s in storage.get_items() if s.item.guid == "m1"]
        later = item("m2", "Match report alpha: the longer account of the same match")
        with storage.transaction() as tx:  # first seen after the freeze
            tx.add_item(later, m1.story_id, Placement("match", 1.0), NOW + timedelta(hours=1))
        after = PersonalIssues(config, storage, legacy).for_sections(("match",))
    finally:
        storage.close()
    assert before is not None and after is not None
    assert after.html == before.html and "longer account" not in after.html
