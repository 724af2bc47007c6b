"""issue 8: the digest is chosen from the week's story outlines and only the stories it shows
are read in full; it must be the digest of choosing from the stories read in full."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.digest import select_digest
from aggregator.pipeline import build_digest, ranking
from aggregator.storage import open_storage
from aggregator.types import EDITOR_REASON, Config, Item, Placement

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)
START, END = NOW - timedelta(days=7), NOW
SOURCES = "abcdef"

CONFIG = """
newsletter: {{title: T, link: "https://t.example.org/", timezone: UTC}}
storage: {{database: "sqlite:///unused.db"}}
output: {{dir: out}}
digest: {{max_per_section: {cap}}}
clustering: {{top_stories: 4, semantic: off}}
sources:
{sources}
sections:
  - {{id: s, title: S, rules: [x]}}
  - {{id: t, title: T, rules: [y]}}
  - {{id: u, title: U, rules: [z]}}
"""


def make_config(tmp_path: Path, rng: random.Random) -> Config:
    sources = "\n".join(
        f"  - {{id: {s}, name: {s.upper()}, url: 'https://{s}.example.org/feed',"
        f" weight: {rng.choice([1, 1, 2.5])}}}"
        for s in SOURCES
    )
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG.format(cap=rng.choice([1, 3, 20]), sources=sources))
    return load_config(path)


def fill(storage, rng: random.Random) -> None:
    """Random stories: several outlets each, texts on both sides of the 600 characters a
    lead's completeness counts (so leads tie past it), first seen at a few shared hours in
    and around the period, placements off-topic, in no configured section, moved or dropped
    by an editor."""
    n = 0
    with storage.transaction() as tx:
        for _ in range(rng.randint(0, 150)):
            members = []
            for _ in range(rng.randint(1, 4)):
                n += 1
                hours = rng.choice([1, 2, 3, 30, 100, 200])  # 200 h: before the period
                item = Item(
                    source_id=rng.choice(SOURCES),
                    guid=f"g{n}",
                    url=f"https://e.example/{n}",
                    link=f"https://e.example/{n}?ref=feed",
                    title=f"Headline {n}",
                    title_key=f"headline {n}",
                    summary_html=f"<p>{n}</p>",
                    summary_text="ü" * rng.choice([0, 10, 599, 600, 601, 2000]),
                    published=rng.choice([None, NOW - timedelta(hours=hours + 5)]),
                )
                kind = rng.random()
                if kind < 0.08:
                    placement = Placement(None, reason=f"{EDITOR_REASON} dropped")
                elif kind < 0.16:
                    placement = Placement(rng.choice("stu"), reason=f"{EDITOR_REASON} moved")
                else:
                    section = rng.choice(["s", "t", "u", "v", None])  # v: no such section
                    placement = Placement(section, 1.0, ("x",), ((section or "s", 1.0),), "rules")
                members.append((item, placement, NOW - timedelta(hours=hours)))
            story = tx.add_story(min(seen for *_, seen in members))
            for item, placement, seen in members:
                tx.add_item(item, story, placement, seen)


@pytest.mark.parametrize("seed", range(4))
def test_the_digest_from_outlines_is_the_digest_from_whole_stories(tmp_path, database_url, seed):
    rng = random.Random(seed)
    config = make_config(tmp_path, rng)
    storage = open_storage(database_url, NOW)
    try:
        fill(storage, rng)
        files = build_digest(config, storage, NOW, start=START, end=END, out_dir=tmp_path)
        lead, key = ranking(config, NOW)
        expected = select_digest(
            map(lead, storage.iter_stories(since=START, until=END)),
            config.sections,
            config.newsletter,
            {s.id: s.name for s in config.sources},
            start=START,
            end=END,
            now=NOW,
            settings=config.digest,
            rank_key=key,
            top_count=config.clustering.top_stories,
        )
    finally:
        storage.close()
    assert files.digest == expected  # the stories in full, the same leads, `more` and top
    text = next(p for p in files.paths if p.suffix == ".txt").read_text()
    for st in (st for ds in files.digest.sections for st in ds.stories):
        assert st.lead.item.title in text


def test_a_story_emptied_after_it_was_chosen_is_left_out_and_counted():
    """`in_full`: a chosen story that has no item left when it is read in full (an editor
    moved them all away in between) is not shown; it is counted in its section's `more`,
    leaves the top stories, and a section left with none goes."""
    from aggregator.digest import in_full
    from aggregator.types import Digest, DigestSection, Newsletter, Section, StoredItem, Story

    def story(id_: int, section: str, title: str) -> Story:
        item = Item("a", f"g{id_}", None, None, title, title.lower(), "", "", None)
        return Story(id_, StoredItem(id_, item, id_, NOW, Placement(section)))

    s, t = Section("s", "S"), Section("t", "T")
    outline = Digest(
        newsletter=Newsletter("N", "https://n.example/", "d", "UTC"),
        start=START,
        end=END,
        sections=(
            DigestSection(s, (story(1, "s", ""), story(2, "s", "")), more=3),
            DigestSection(t, (story(3, "t", ""),)),
        ),
        source_names=(),
        generated_at=NOW,
        top=(story(3, "t", ""), story(1, "s", "")),
    )
    full = {1: story(1, "s", "One"), 2: story(2, "s", "Two")}
    got = in_full(outline, full)
    assert [(ds.section.id, [x.lead.item.title for x in ds.stories], ds.more) for ds in
            got.sections] == [("s", ["One", "Two"], 3)]  # fmt: skip
    assert got.top == (full[1],)
    gone = in_full(outline, {2: full[2]})
    assert [(ds.section.id, [x.id for x in ds.stories], ds.more) for ds in gone.sections] == [
        ("s", [2], 4)
    ]
    assert gone.top == ()


def test_outlines_keep_as_much_text_as_a_leads_completeness_counts():
    from aggregator.rank import COMPLETE_CHARS
    from aggregator.storage._sql import OUTLINE_TEXT

    assert OUTLINE_TEXT >= COMPLETE_CHARS  # else two leads could tie in outline, not in full
