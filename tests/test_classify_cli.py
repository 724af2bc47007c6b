"""Corrections in the store (migration 4) and the classification commands: explain, classify,
items move / drop, review, reclassify, examples export; the pipeline trains on corrections."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy

from aggregator.classify import parse_examples
from aggregator.cli import EXIT_OK, EXIT_USAGE, main
from aggregator.config import load_config
from aggregator.pipeline import load_examples
from aggregator.storage import open_storage
from aggregator.types import Item, Placement

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def make_item(guid: str, title: str, summary: str = "", source: str = "s") -> Item:
    return Item(
        source_id=source, guid=guid, url=f"https://e.org/{guid}", link=f"https://e.org/{guid}",
        title=title, title_key=title.lower(), summary_html=summary, summary_text=summary,
        published=NOW - timedelta(hours=1),
    )  # fmt: skip


# --- storage: the same on SQLite and PostgreSQL --------------------------------------------------


@pytest.fixture
def storage(database_url):
    s = open_storage(database_url, NOW)
    yield s
    s.close()


def add(storage, item: Item, placement: Placement, now: datetime = NOW) -> int:  # type: ignore[no-untyped-def]
    with storage.transaction() as tx:
        return int(tx.add_item(item, tx.add_story(now), placement, now))


def test_confidence_is_stored(storage) -> None:  # type: ignore[no-untyped-def]
    p = Placement("training", 2.0, ("training",), (("training", 2.0),), "r", confidence=0.25)
    item_id = add(storage, make_item("g", "Training"), p)
    assert storage.get_item(item_id).placement == p
    assert storage.get_item(item_id + 1000) is None


def test_a_correction_pins_the_item_and_survives_new_placements(storage) -> None:  # type: ignore[no-untyped-def]
    a = add(storage, make_item("a", "A"), Placement("training", 1.0, confidence=0.1))
    b = add(storage, make_item("b", "B"), Placement("training", 1.0, confidence=0.1))
    pinned = Placement("crisis", reason="editor: moved to crisis")
    c = storage.add_correction(a, "crisis", "A text", pinned, NOW)
    assert (c.item_id, c.section, c.text, c.created) == (a, "crisis", "A text", NOW)
    assert storage.get_item(a).placement == pinned
    # Re-classification writes b, not the corrected a.
    new = Placement("research", 3.0, confidence=0.9)
    assert storage.set_placements([(a, new), (b, new)]) == 1
    assert storage.get_item(a).placement == pinned
    assert storage.get_item(b).placement == new
    # A second correction replaces the first; None is off-topic.
    storage.add_correction(a, None, "A text", Placement(None, reason="editor: off-topic"), NOW)
    assert [(x.item_id, x.section) for x in storage.get_corrections()] == [(a, None)]
    assert storage.get_item(a).placement.section is None
    assert storage.add_correction(9999, "crisis", "", pinned, NOW) is None


def test_migration_4_adds_confidence_to_an_older_items_table(database_url) -> None:  # type: ignore[no-untyped-def]
    from aggregator.storage import _schema

    old = [m for m in _schema.MIGRATIONS if m[0] < 4]
    with pytest.MonkeyPatch.context() as m:
        m.setattr(_schema, "MIGRATIONS", old)
        s = open_storage(database_url, NOW)
        add(s, make_item("g", "Old"), Placement("training", 1.0))
        s.close()
    engine = sqlalchemy.create_engine(database_url)
    with engine.begin() as conn:  # as an items table made before migration 4 looks
        conn.execute(sqlalchemy.text("ALTER TABLE items DROP COLUMN confidence"))
    engine.dispose()
    s = open_storage(database_url, NOW)
    try:
        [stored] = s.get_items()
        assert stored.placement.section == "training"
        assert stored.placement.confidence == 1.0  # unknown: not sent to review
        assert s.get_corrections() == []
    finally:
        s.close()


# --- the commands ------------------------------------------------------------------------------


SEEDS = """\
items:
  - {text: Officers practise tactics at the academy, section: training}
  - {text: Recruits learn verbal skills in scenario training, section: training}
  - {text: Clinicians ride with police to mental health calls, section: crisis}
  - {text: Crisis team answers calls from people in distress, section: crisis}
  - {text: Police K-9 retires after eight years at a ceremony, section: none}
  - {text: Police arrest burglary suspects after a car chase, section: none}
"""


def write_config(tmp_path: Path, examples: tuple[str, ...] = ("seeds.yaml",)) -> Path:
    (tmp_path / "seeds.yaml").write_text(SEEDS)
    listed = ", ".join(examples)
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "newsletter: {title: T, link: 'https://t.example.org/', timezone: UTC}\n"
        "storage: {database: 'sqlite:///data/a.db'}\n"
        "output: {dir: out}\n"
        "topic: {include: [police, officer]}\n"
        f"classify: {{model: tfidf, review_below: 0.5, examples: [{listed}]}}\n"
        "sources:\n  - {id: s, name: S, url: 'https://e.org/feed'}\n"
        "sections:\n"
        "  - {id: training, title: Training, rules: [training, tactics]}\n"
        "  - {id: crisis, title: Crisis, rules: [{term: mental health, weight: 2}, crisis]}\n"
    )
    return path


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def site(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A config and a database with three items, classified as `fetch` would."""
    config_path = write_config(tmp_path)
    config = load_config(config_path)
    from aggregator.pipeline import make_run_classifier

    classifier = make_run_classifier(config, load_examples(config))
    now = datetime.now(UTC)
    storage = open_storage(config.database, now)
    ids = {}
    for guid, title in (
        ("t", "Officers practise tactics in training"),
        ("m", "Police and clinicians answer mental health calls"),
        ("u", "Police training and mental health crisis"),  # both sections: low confidence
    ):
        item = make_item(guid, title)
        with storage.transaction() as tx:
            ids[guid] = tx.add_item(item, tx.add_story(now), classifier.classify(item), now)
    storage.close()
    return config_path, ids


def test_explain_shows_sections_terms_and_nearest_examples(site) -> None:  # type: ignore[no-untyped-def]
    config, ids = site
    code, out, err = run("--config", str(config), "explain", str(ids["t"]))
    assert (code, err) == (EXIT_OK, "")
    assert f"item {ids['t']} (s): Officers practise tactics in training" in out
    assert "stored: training, confidence" in out
    assert "section: training, confidence" in out
    assert "model: tfidf; topic term 'officer'" in out
    line = next(x for x in out.splitlines() if x.strip().startswith("training "))
    assert line.rstrip().endswith("training, tactics")  # the rule terms that matched
    assert "nearest examples:" in out
    assert "Officers practise tactics at the academy" in out
    code, out, _ = run("--config", str(config), "explain", str(ids["t"]), "--json")
    data = json.loads(out)
    assert data["now"]["section"] == "training"
    assert {s["section"] for s in data["now"]["sections"]} == {"training", "crisis"}
    assert data["now"]["nearest"][0]["text"] == "Officers practise tactics at the academy"
    assert run("--config", str(config), "explain", "999")[0] == EXIT_USAGE


def test_classify_text_matches_explain(site) -> None:  # type: ignore[no-untyped-def]
    config, _ = site
    code, out, _ = run("--config", str(config), "classify", "Police", "mental health", "calls")
    assert code == EXIT_OK
    assert out.startswith("section: crisis, confidence")
    code, out, _ = run("--config", str(config), "classify", "Police K-9 retires", "--json")
    assert json.loads(out)["section"] is None  # like the off-topic example


def test_move_and_drop_are_kept_by_reclassify_and_listed_by_items(site) -> None:  # type: ignore[no-untyped-def]
    config, ids = site
    code, out, _ = run("--config", str(config), "items", "move", str(ids["t"]), "crisis")
    assert code == EXIT_OK and f"item {ids['t']}: training -> crisis" in out
    code, out, _ = run("--config", str(config), "items", "drop", str(ids["m"]))
    assert code == EXIT_OK and "off-topic (kept out of the digest and feed)" in out
    assert run("--config", str(config), "items", "move", str(ids["t"]), "nope")[0] == EXIT_USAGE

    code, out, _ = run("--config", str(config), "reclassify")
    assert code == EXIT_OK
    assert "3 items classified with model tfidf" in out
    assert "(2 corrected items kept as pinned)" in out
    assert "updated, 0 changed section" in out  # the pinned two are not counted (finding 14)

    code, out, _ = run("--config", str(config), "items", "--json")  # `items` still lists
    rows = {r["id"]: r for r in map(json.loads, out.splitlines())}
    assert rows[ids["t"]]["section"] == "crisis"
    assert rows[ids["t"]]["reason"] == "editor: moved to crisis"
    assert rows[ids["m"]]["section"] is None  # off-topic: out of the digest, still listed
    code, out, _ = run("--config", str(config), "explain", str(ids["t"]))
    assert "corrected: crisis by an editor on" in out


def test_review_lists_low_confidence_items_until_an_editor_decides(site) -> None:  # type: ignore[no-untyped-def]
    config, ids = site
    code, out, _ = run("--config", str(config), "review", "--below", "1.01")
    assert code == EXIT_OK
    assert "3 items below confidence 1.01" in out
    listed = [int(line.split()[0]) for line in out.splitlines()[:-1]]
    confidences = [float(line.split()[1]) for line in out.splitlines()[:-1]]
    assert confidences == sorted(confidences)  # least confident first
    assert set(listed) == set(ids.values())
    run("--config", str(config), "items", "move", str(listed[0]), "training")
    code, out, _ = run("--config", str(config), "review", "--below", "1.01", "--json")
    assert listed[0] not in {json.loads(line)["id"] for line in out.splitlines()}
    code, out, _ = run("--config", str(config), "review", "--below", "0")
    assert out.startswith("0 items below confidence 0")


def test_corrections_are_exported_and_used_as_examples(site, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config_path, ids = site
    config = load_config(config_path)
    before = load_examples(config, open_storage(config.database, NOW))
    run("--config", str(config_path), "items", "move", str(ids["u"]), "crisis")
    storage = open_storage(config.database, NOW)
    try:
        after = load_examples(config, storage)
    finally:
        storage.close()
    assert len(after) == len(before) + 1
    assert after[-1].section == "crisis"
    assert after[-1].text == "Police training and mental health crisis"
    assert after[-1].origin == f"correction of item {ids['u']}"

    out_file = tmp_path / "corrections.yaml"
    code, out, _ = run("--config", str(config_path), "examples", "export", "--out", str(out_file))
    assert (code, out) == (EXIT_OK, f"wrote 1 examples to {out_file}\n")
    [exported] = parse_examples(out_file.read_text(), "c.yaml", ["training", "crisis"])
    assert (exported.text, exported.section) == (after[-1].text, "crisis")


def test_check_counts_examples_and_warns_of_a_missing_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, ("seeds.yaml", "gone.yaml"))
    code, out, _ = run("--config", str(config), "check")
    assert code == EXIT_OK
    assert f"warning: classify.examples: {tmp_path / 'gone.yaml'} not found" in out
    assert "classify: 6 labelled examples, model tfidf" in out


def test_bad_classify_settings_are_config_errors(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    text = (
        config.read_text()
        .replace("model: tfidf", "model: bert")
        .replace("review_below: 0.5", "review_below: 2")
    )
    config.write_text(text)
    code, _, err = run("--config", str(config), "check")
    assert code == 3
    assert "classify.model: unknown model 'bert'" in err
    assert "classify.review_below" in err


def test_fetch_classifies_with_the_examples_and_the_corrections(
    tmp_path: Path, http_server
) -> None:  # type: ignore[no-untyped-def]
    from tests.httpserver import static

    rss = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title>"
        b"<item><guid>1</guid><link>https://e.org/1</link>"
        b"<title>Police K-9 retires after nine years at a ceremony</title></item>"
        b"<item><guid>2</guid><link>https://e.org/2</link>"
        b"<title>Officers practise tactics in scenario training</title></item>"
        b"</channel></rss>"
    )
    http_server.routes["/feed.xml"] = static(rss)
    config = write_config(tmp_path)
    text = config.read_text().replace(
        "  - {id: s, name: S, url: 'https://e.org/feed'}",
        f"  - {{id: s, name: S, url: '{http_server.url('/feed.xml')}'}}",
    )
    config.write_text(
        text.replace(
            "output: {dir: out}", "output: {dir: out}\nfetch: {allow_private_network: true}"
        )
    )
    code, _, err = run("--config", str(config), "fetch")
    assert code == EXIT_OK, err
    code, out, _ = run("--config", str(config), "items", "--json")
    rows = {r["title"]: r for r in map(json.loads, out.splitlines())}
    k9 = rows["Police K-9 retires after nine years at a ceremony"]
    assert k9["section"] is None and k9["reason"].startswith("off-topic: ")
    assert rows["Officers practise tactics in scenario training"]["section"] == "training"


def test_a_bad_example_file_is_a_config_error_before_any_work(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    (tmp_path / "seeds.yaml").write_text("items:\n  - {text: a, section: polcy}\n")
    code, _, err = run("--config", str(config), "fetch")
    assert code == 3
    assert f"{tmp_path / 'seeds.yaml'}:2: items[0].section: unknown section 'polcy'" in err
    assert "nothing was fetched" in err


def test_digest_says_how_many_of_its_items_await_review(site) -> None:  # type: ignore[no-untyped-def]
    config, _ = site
    storage = open_storage(load_config(config).database, NOW)
    try:  # a close call, as the classifier would store it
        unsure = Placement("training", 0.4, (), (("training", 0.4),), "r; low confidence", 0.2)
        item = make_item("close", "Police officer news of the day")
        close = add(storage, item, unsure, datetime.now(UTC) - timedelta(minutes=1))
    finally:
        storage.close()
    code, out, _ = run("--config", str(config), "review", "--json")  # below 0.5, feeds.yaml
    waiting = [json.loads(line)["id"] for line in out.splitlines()]
    assert close in waiting
    code, out, _ = run("--config", str(config), "digest", "--since", "1d")
    assert code == EXIT_OK
    assert f"{len(waiting)} item{'s' if len(waiting) != 1 else ''} of this window placed" in out
    assert "`aggregator review --since " in out
    for item_id in waiting:
        run("--config", str(config), "items", "move", str(item_id), "crisis")
    code, out, _ = run("--config", str(config), "digest", "--since", "1d")
    assert "low confidence" not in out
