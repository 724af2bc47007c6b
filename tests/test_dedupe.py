"""dedupe: exact duplicates -> one story. Pure: plain values."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from aggregator.dedupe import StoryRef, assign_stories, disambiguate_guids, item_keys
from aggregator.types import Item


def make(source="a", guid="g", url=None, title="T", link=None) -> Item:
    return Item(
        source_id=source, guid=guid, url=url, link=link or url, title=title,
        title_key=title.lower(), summary_html="", summary_text="", published=None,
    )  # fmt: skip


def test_same_url_anywhere_is_one_story():
    items = [
        make("a", "1", "https://e.com/x", "One"),
        make("b", "2", "https://e.com/x", "Other words"),
    ]
    refs = assign_stories(items, {})
    assert refs[0] == refs[1] == StoryRef(group=0)


def test_same_title_same_source_is_one_story_but_not_across_sources():
    items = [make("a", "1", "https://e.com/1", "Same"), make("a", "2", "https://e.com/2", "Same"),
             make("b", "3", "https://e.com/3", "Same")]  # fmt: skip
    refs = assign_stories(items, {})
    assert refs[0] == refs[1]
    assert refs[2] != refs[0]


def test_known_story_wins_and_url_beats_title():
    item = make("a", "1", "https://e.com/x", "T")
    known = {"url:https://e.com/x": 7, "title:a:t": 9}
    assert assign_stories([item], known) == [StoryRef(story_id=7)]
    assert assign_stories([item], {"title:a:t": 9}) == [StoryRef(story_id=9)]


def test_item_keys():
    assert item_keys(make("a", "1", "https://e.com/x", "T")) == ("url:https://e.com/x", "title:a:t")
    assert item_keys(make("a", "1", None, "T")) == ("title:a:t",)


def test_disambiguate_guids_keeps_distinct_items_drops_repeats():
    items = [
        make("a", "same", "https://e.com/1", "One"),
        make("a", "same", "https://e.com/2", "Two"),
        make("a", "same", "https://e.com/1", "One"),  # a true repeat
    ]
    out = disambiguate_guids(items)
    assert [i.guid for i in out] == ["same", "same|https://e.com/2"]
    assert disambiguate_guids(items) == out  # deterministic


keys = st.sampled_from(["u1", "u2", "u3", None])
titles = st.sampled_from(["t1", "t2", "t3"])


@given(
    st.lists(st.tuples(st.sampled_from("ab"), keys, titles), max_size=30),
    st.dictionaries(st.sampled_from(["url:u1", "title:a:t2"]), st.integers(1, 5)),
)
def test_every_item_gets_exactly_one_story(rows, known):
    items = [make(s, str(n), u, t) for n, (s, u, t) in enumerate(rows)]
    refs = assign_stories(items, known)
    assert len(refs) == len(items)
    for item, ref in zip(items, refs, strict=True):
        assert (ref.story_id is None) != (ref.group is None)
        # items that share a key with a known story join it
        if any(k in known for k in item_keys(item)):
            assert ref.story_id is not None
