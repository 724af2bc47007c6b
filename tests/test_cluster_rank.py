"""rank: the lead of a story, its score, the top stories; the `clustering:` config block."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.digest import select_digest, story_time
from aggregator.exceptions import ConfigError
from aggregator.rank import choose_lead, outlets, rank_key, rank_stories, story_score
from aggregator.types import (
    EDITOR_REASON,
    ClusterSettings,
    DigestSettings,
    Item,
    Newsletter,
    Placement,
    Section,
    StoredItem,
    Story,
)

NOW = datetime(2026, 11, 30, 12, tzinfo=UTC)


def member(
    id_: int, source: str, *, text: str = "t", hours_ago: float = 1, section: str | None = "s"
) -> StoredItem:
    seen = NOW - timedelta(hours=hours_ago)
    item = Item(
        source_id=source,
        guid=f"g{id_}",
        url=f"https://{source}.example/{id_}",
        link=f"https://{source}.example/{id_}",
        title=f"title {id_}",
        title_key=f"title {id_}",
        summary_html=text,
        summary_text=text,
        published=seen,
    )
    return StoredItem(
        id=id_, item=item, story_id=id_, first_seen=seen, placement=Placement(section)
    )


def story(id_: int, *members: StoredItem) -> Story:
    return Story(id=id_, lead=members[0], others=tuple(members[1:]))


def test_lead_is_the_heaviest_source_then_the_most_complete_then_the_earliest():
    a = member(1, "a", text="short", hours_ago=5)
    b = member(2, "b", text="a much longer and more complete text", hours_ago=3)
    c = member(3, "c", text="short", hours_ago=1)
    s = story(1, a, b, c)
    assert choose_lead(s, {}).lead is b  # most complete
    assert choose_lead(s, {"c": 3.0}).lead is c  # heaviest source
    assert choose_lead(story(1, c, a), {}).lead is a  # same length: the earliest
    led = choose_lead(s, {"c": 3.0})
    assert [m.id for m in led.others] == [1, 2]  # the rest in first-seen order


def test_score_grows_with_outlets_and_weight_and_fades_with_age():
    settings = ClusterSettings(half_life_hours=72, outlet_bonus=0.5)
    one = story(1, member(1, "a"))
    three = story(2, member(2, "a"), member(3, "b"), member(4, "c"))
    assert outlets(three) == 3
    assert story_score(three, {}, NOW, settings) == pytest.approx(
        2 * story_score(one, {}, NOW, settings)
    )
    assert story_score(one, {"a": 2.0}, NOW, settings) == pytest.approx(
        2 * story_score(one, {}, NOW, settings)
    )
    old = story(3, member(5, "a", hours_ago=73))
    assert story_score(old, {}, NOW, settings) == pytest.approx(
        0.5 * story_score(one, {}, NOW, settings)
    )


def test_rank_stories():
    settings = ClusterSettings(top_stories=2)
    lone = story(1, member(1, "a", hours_ago=1))
    wide = story(2, member(2, "a", hours_ago=10), member(3, "b", hours_ago=9))
    stale = story(3, member(4, "a", hours_ago=200))
    assert [s.id for s in rank_stories([lone, wide, stale], {}, NOW, settings)] == [2, 1, 3]


def editor(m: StoredItem, section: str | None) -> StoredItem:
    reason = f"{EDITOR_REASON} moved" if section else f"{EDITOR_REASON} off-topic"
    return replace(m, placement=Placement(section, reason=reason))


def test_the_section_is_the_first_seen_members_and_the_lead_is_chosen_in_it():
    first = member(1, "a", hours_ago=5, section="s")
    heavy = member(2, "b", hours_ago=3, section="t", text="a much longer and more complete text")
    same = member(3, "c", hours_ago=1, section="s", text="longer than short")
    s = story(1, heavy, same, first)  # the order given does not matter
    assert s.section == "s"
    led = choose_lead(s, {"b": 5.0})
    assert led.lead is same and led.section == "s"  # heavy is in another section
    assert [m.id for m in led.others] == [1, 2]
    gated = story(2, member(4, "a", hours_ago=5, section=None), member(5, "b", section="s"))
    assert gated.section is None and choose_lead(gated, {"b": 9.0}).section is None


def test_editor_moves_win_and_drops_leave_the_story():
    first = member(1, "a", hours_ago=5, section="s")
    second = member(2, "b", hours_ago=3, section="s")
    third = member(3, "c", hours_ago=1, section="s")
    moved = story(1, first, second, editor(third, "t"))
    assert moved.section == "t" and choose_lead(moved, {}).lead.id == 3
    dropped = story(1, editor(first, None), second, third)
    assert dropped.section == "s"
    led = choose_lead(dropped, {"a": 9.0})
    assert 1 not in {m.id for m in led.members} and outlets(led) == 2
    gone = story(1, editor(first, None), editor(second, None))
    assert gone.section is None and choose_lead(gone, {}) == gone


def test_a_story_of_one_member_is_its_own_lead_and_section():
    """issue 8: `choose_lead` and `Story.anchor` take a one-member story (most of them) at
    once; the same answers as the general rule, moved, dropped or off-topic."""
    for m in (
        member(1, "a", section="s"),
        member(1, "a", section=None),
        editor(member(1, "a", section="s"), "t"),
        editor(member(1, "a", section="s"), None),
    ):
        lone = story(1, m)
        dropped = m.placement.dropped
        assert lone.anchor is (None if dropped else m)
        assert lone.section == (None if dropped else m.placement.section)
        assert choose_lead(lone, {"a": 3.0}) == lone
        twice = story(1, m, replace(m, id=2, first_seen=m.first_seen + timedelta(hours=1)))
        assert twice.section == lone.section  # the general rule, with a later copy
        assert choose_lead(twice, {}).lead == m  # the earlier of two alike, or all dropped


def test_top_stories_are_the_best_shown_across_sections():
    settings = ClusterSettings()
    sections = (Section("s", "S"), Section("t", "T"))
    lone = story(1, member(1, "a", hours_ago=1))
    wide = story(2, member(2, "a", hours_ago=10, section="t"), member(3, "b", hours_ago=9))
    off = story(4, member(5, "a", hours_ago=2, section=None), member(6, "b"), member(7, "c"))
    digest = select_digest(
        [lone, wide, off],
        sections,
        Newsletter("N", "https://n.example/", "d", "UTC"),
        {},
        start=NOW - timedelta(days=7),
        end=NOW + timedelta(hours=1),
        now=NOW,
        settings=DigestSettings(max_per_section=5),
        rank_key=lambda s: rank_key(s, {}, NOW, settings),
        top_count=1,
    )
    assert [s.id for s in digest.top] == [2]  # wide, in section t; off never counts
    assert {ds.section.id for ds in digest.sections} == {"s", "t"}


def _whole_sort_digest(stories, sections, settings, start, end, key):
    """The selection as written before issue 8 read stories one at a time: every section's
    stories sorted in full (stably), then cut."""
    by_section = {s.id: [] for s in sections}
    for st in stories:
        if start <= st.first_seen < end and st.section in by_section:
            by_section[st.section].append(st)
    cap = settings.max_per_section
    chosen = {k: sorted(v, key=key, reverse=True) for k, v in by_section.items()}
    return {k: ([st.id for st in v[:cap]], max(0, len(v) - cap)) for k, v in chosen.items()}


@pytest.mark.parametrize("ranked", [True, False])
@pytest.mark.parametrize("seed", range(6))
def test_a_digest_read_one_story_at_a_time_equals_sorting_every_section_in_full(seed, ranked):
    """issue 8: `select_digest` keeps only what a section shows; its sections, their order,
    `more` and the top stories are those of sorting all of a section's stories and cutting,
    with many ties (stories seen at the same hour, off-topic, outside the period, dropped)."""
    import random

    rng = random.Random(seed)
    settings = ClusterSettings()
    sections = (Section("s", "S"), Section("t", "T"), Section("u", "U"))
    stories = []
    next_id = iter(range(1, 10_000))
    for n in range(rng.randint(0, 400)):
        members = [
            member(
                next(next_id),
                rng.choice("abcdef"),
                hours_ago=rng.choice([1, 2, 3, 30, 200]),  # 200 h: before the period
                section=rng.choice(["s", "t", "u", "v", None]),  # v: no such section
            )
            for _ in range(rng.randint(1, 3))
        ]
        if rng.random() < 0.1:
            members[0] = replace(members[0], placement=Placement(None, reason=EDITOR_REASON))
        stories.append(choose_lead(story(rng.randint(1, 10**6) * 10 + n % 10, *members), {}))
    cap = rng.choice([0, 1, 3, 20])
    start, end = NOW - timedelta(days=7), NOW
    key = (lambda st: rank_key(st, {}, NOW, settings)) if ranked else None
    digest = select_digest(
        iter(stories),  # read once
        sections,
        Newsletter("N", "https://n.example/", "d", "UTC"),
        {},
        start=start,
        end=end,
        now=NOW,
        settings=DigestSettings(max_per_section=cap),
        rank_key=key,
        top_count=4,
    )
    expected = _whole_sort_digest(
        stories, sections, DigestSettings(max_per_section=cap), start, end, key or story_time
    )
    got = {ds.section.id: ([st.id for st in ds.stories], ds.more) for ds in digest.sections}
    assert got == {k: v for k, v in expected.items() if v[0]}
    assert [ds.section.id for ds in digest.sections] == [k for k, v in expected.items() if v[0]]
    shown = [st for ds in digest.sections for st in ds.stories]
    if ranked:
        assert digest.top == tuple(rank_stories(shown, {}, NOW, settings)[:4])
    else:
        assert digest.top == ()


CONFIG = """
newsletter: {title: T, link: "https://t.example.org/", timezone: UTC}
storage: {database: "sqlite:///t.db"}
output: {dir: out}
sources:
  - {id: a, name: A, url: "https://a.example.org/feed", weight: 2.5}
sections:
  - {id: s, title: S, rules: [x]}
"""


def test_clustering_block_and_source_weight(tmp_path: Path):
    path = tmp_path / "feeds.yaml"
    path.write_text(
        CONFIG
        + "clustering: {window_days: 7, threshold: 0.3, top_stories: 3, semantic: off,\n"
        + "  half_life_hours: 48, outlet_bonus: 1}\n"
    )
    config = load_config(path)
    assert config.sources[0].weight == 2.5
    c = config.clustering
    assert (c.window_days, c.threshold, c.top_stories, c.semantic) == (7, 0.3, 3, "off")
    assert (c.half_life_hours, c.outlet_bonus) == (48, 1)


def test_defaults_without_the_block(tmp_path: Path):
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG)
    assert load_config(path).clustering == ClusterSettings()


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("clustering: {window: 7}", "clustering.window"),
        ("clustering: {window_days: 0}", "clustering.window_days"),
        ("clustering: {threshold: -1}", "clustering.threshold"),
        ("clustering: {semantic: maybe}", "unknown value 'maybe'"),
    ],
)
def test_bad_clustering_settings_are_named(tmp_path: Path, block: str, message: str):
    path = tmp_path / "feeds.yaml"
    path.write_text(CONFIG + block + "\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    text = str(e.value)
    assert message in text and "feeds.yaml:" in text
