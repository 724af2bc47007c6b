"""Cross-source stories end to end (issue 4): a real SQLite store, a real HTTP server on
127.0.0.1, the pipeline, the digest and feed, and `aggregator stories` with its actions.

The texts are real headlines and openings from tests/data/clusters (PROVENANCE.md there).
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

import feedparser
import pytest

from aggregator import pipeline
from aggregator.cli import main
from aggregator.storage import open_storage
from aggregator.types import Issue, Story
from tests.httpserver import static
from tests.test_cluster import FOX, WVPRESS  # the same two outlets' real text
from tests.test_pipeline import NOW, make_config, src, update

WKBW = (
    "West Virginia officer fired for not shooting man",
    "A police officer in West Virginia is out of a job because he refused to shoot an armed "
    "man who demanded police to shoot him, according to a story published by the Pittsburgh "
    "Post-Gazette on Sunday.",
)
TRAINING = (
    "US police departments clamoring for de-escalation training",
    "SACO, Maine (AP) — Since the death of George Floyd and the protests that followed, police "
    "departments around the country are increasingly pushing for de-escalation training.",
)


def feed(*entries: tuple[str, str, str, str]) -> bytes:
    """RSS with (guid, link, title, text) items, dated the day before NOW."""
    body = "".join(
        f"<item><guid>{g}</guid><link>{link}</link><title>{escape(t)}</title>"
        f"<description>{escape(x)}</description>"
        f"<pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item>"
        for g, link, t, x in entries
    )
    return (
        "<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
        f"<link>https://e.org/</link>{body}</channel></rss>"
    ).encode()


def weirton_outlets(tmp_path, http_server, *, fox_section: str, wv_extra=()):
    """Fox, WV Press (weight 2) and WKBW each telling the Weirton story; WV Press's feed
    carries `wv_extra` entries too. Fox is filed under `fox_section`, the others under policy."""
    http_server.routes["/fox.xml"] = static(feed(("f1", "https://fox.example/weirton", *FOX)))
    http_server.routes["/wv.xml"] = static(
        feed(("w1", "https://wvpress.example/weirton", *WVPRESS), *wv_extra)
    )
    http_server.routes["/wkbw.xml"] = static(feed(("k1", "https://wkbw.example/wv", *WKBW)))
    return make_config(
        tmp_path,
        http_server,
        [
            src("fox", "/fox.xml", f", section: {fox_section}"),
            src("wvpress", "/wv.xml", ", weight: 2, section: policy"),
            src("wkbw", "/wkbw.xml", ", section: policy"),
        ],
    )


def fetch_all(config) -> None:
    """One update of every source into the config's store."""
    storage = open_storage(config.database, NOW)
    try:
        update(config, storage)
    finally:
        storage.close()


@pytest.fixture
def newsroom(tmp_path, http_server):
    """Three outlets: two tell the Weirton story; one also has an unrelated training story."""
    return weirton_outlets(
        tmp_path,
        http_server,
        fox_section="policy",
        wv_extra=[("w2", "https://wvpress.example/training", *TRAINING)],
    )


def stories_of(config) -> list[Story]:
    storage = open_storage(config.database, NOW)
    try:
        return storage.get_stories()
    finally:
        storage.close()


def run(config, *argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["--config", str(config.path), *argv], out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def weirton(stories: list[Story]) -> Story:
    [story] = [s for s in stories if "fox" in {m.item.source_id for m in (s.lead, *s.others)}]
    return story


def test_outlets_of_one_event_become_one_story(newsroom):
    fetch_all(newsroom)
    found = stories_of(newsroom)
    story = weirton(found)
    members = {m.item.source_id for m in (story.lead, *story.others)}
    assert members == {"fox", "wvpress", "wkbw"}
    assert len(found) == 2  # the training story stays its own


def test_digest_and_feed_show_the_group_and_top_stories(newsroom):
    storage = open_storage(newsroom.database, NOW)
    try:
        update(newsroom, storage)
        files = pipeline.build_digest(
            newsroom,
            storage,
            NOW + timedelta(days=6),
            start=NOW - timedelta(days=1),
            end=NOW + timedelta(days=1),
        )
        feed_path = pipeline.build_feed(newsroom, storage, NOW)
    finally:
        storage.close()
    digest = files.digest
    story = weirton([s for ds in digest.sections for s in ds.stories])
    assert story.lead.item.source_id == "wvpress"  # the heaviest source leads
    assert digest.top and digest.top[0].id == story.id  # three outlets rank it first
    text = next(p for p in files.paths if p.suffix == ".txt").read_text()
    html = next(p for p in files.paths if p.suffix == ".html").read_text()
    assert text.index("TOP STORIES") < text.index("Weirton fires officer")
    assert "Also reported by:" in text and "Fox" in text and "Wkbw" in text
    assert "Top stories" in html
    assert 'href="https://fox.example/weirton"' in html
    parsed = feedparser.parse(feed_path.read_bytes())
    titles = [e.title for e in parsed.entries]
    assert titles.count(WVPRESS[0]) == 1 and FOX[0] not in titles  # one item per story
    [entry] = [e for e in parsed.entries if e.title == WVPRESS[0]]
    assert "Also reported by" in entry.description
    assert "https://fox.example/weirton" in entry.description


def test_stories_list_and_explain(newsroom):
    fetch_all(newsroom)
    story = weirton(stories_of(newsroom))
    code, out, _ = run(newsroom, "stories", "--since", "2000-01-01", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    [row] = [r for r in rows if r["id"] == story.id]
    assert row["outlets"] == 3 and len(row["members"]) == 3
    assert {m["signal"] for m in row["members"]} >= {"lead"}
    assert any(m["signal"].startswith("lexical") and m["score"] >= 0.2 for m in row["members"])

    code, out, _ = run(newsroom, "stories", "--explain", str(story.id))
    assert code == 0
    assert f"story {story.id}: 3 item(s) from 3 outlet(s)" in out
    assert "started the story" in out
    assert "lexical:" in out and "score" in out and "names:" in out and "weirton" in out

    code, _, err = run(newsroom, "stories", "--explain", "99999")
    assert code == 2 and "story 99999 does not exist" in err


def test_the_stories_list_streams_a_chunk_at_a_time_and_lists_each_once(newsroom, monkeypatch):
    """issue 8: the list reads its stories and their links a chunk at a time (here one story
    per chunk), in the store's order, each story once and every member's link found."""
    from aggregator.cli import _stories

    fetch_all(newsroom)
    whole = stories_of(newsroom)
    _, text_whole, _ = run(newsroom, "stories", "--since", "2000-01-01")
    monkeypatch.setattr(_stories, "_LIST_CHUNK", 1)
    code, out, _ = run(newsroom, "stories", "--since", "2000-01-01", "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["id"] for r in rows] == [s.id for s in whole]
    assert all(m["signal"] is not None for r in rows for m in r["members"])
    code, text, _ = run(newsroom, "stories", "--since", "2000-01-01")
    assert code == 0 and text == text_whole and text.endswith(f"\n{len(whole)} stories\n")


def test_split_and_merge_survive_reclustering(newsroom):
    fetch_all(newsroom)
    story = weirton(stories_of(newsroom))
    wkbw = next(m for m in (story.lead, *story.others) if m.item.source_id == "wkbw")
    training = next(s for s in stories_of(newsroom) if s.id != story.id)

    code, out, _ = run(newsroom, "stories", "split", str(story.id), str(wkbw.id))
    assert code == 0, out
    after = stories_of(newsroom)
    assert {m.id for m in (weirton(after).lead, *weirton(after).others)} == {
        m.id for m in (story.lead, *story.others) if m.id != wkbw.id
    }
    code, out, _ = run(newsroom, "stories", "merge", str(story.id), str(training.id))
    assert code == 0, out

    # Re-clustering from scratch would put WKBW back and take the training story out;
    # the editor's decisions hold.
    code, out, _ = run(newsroom, "stories", "recluster", "--since", "2000-01-01")
    assert code == 0, out
    final = weirton(stories_of(newsroom))
    members = {m.item.source_id for m in (final.lead, *final.others)}
    assert "wkbw" not in members
    assert {m.item.title for m in (final.lead, *final.others)} >= {TRAINING[0], FOX[0]}
    code, out, _ = run(newsroom, "stories", "--explain", str(final.id))
    assert "editor's merge" in out


def test_recluster_without_overrides_rebuilds_the_same_stories(newsroom):
    fetch_all(newsroom)
    before = {s.id: {m.id for m in (s.lead, *s.others)} for s in stories_of(newsroom)}
    code, out, _ = run(newsroom, "stories", "recluster", "--since", "2000-01-01")
    assert code == 0 and "0 item(s) moved" in out
    after = {s.id: {m.id for m in (s.lead, *s.others)} for s in stories_of(newsroom)}
    assert after == before


def test_split_and_merge_refuse_bad_ids(newsroom):
    fetch_all(newsroom)
    story = weirton(stories_of(newsroom))
    code, _, err = run(newsroom, "stories", "split", str(story.id), "99999")
    assert code == 2 and "not in story" in err
    every = [str(m.id) for m in (story.lead, *story.others)]
    code, _, err = run(newsroom, "stories", "split", str(story.id), *every)
    assert code == 2 and "would change nothing" in err
    code, _, err = run(newsroom, "stories", "merge", str(story.id), "99999")
    assert code == 2 and "does not exist" in err


def test_clustering_can_be_turned_off(tmp_path, http_server, newsroom):
    text = newsroom.path.read_text() + "clustering: {enabled: false}\n"
    newsroom.path.write_text(text)
    from aggregator.config import load_config

    config = load_config(newsroom.path)
    storage = open_storage(config.database, NOW)
    try:
        update(config, storage)
    finally:
        storage.close()
    assert len(stories_of(config)) == 4  # every item its own story


def test_eval_prints_precision_and_recall(newsroom):
    data = Path(__file__).parent / "data" / "clusters"
    code, out, _ = run(newsroom, "stories", "eval", "--data", str(data))
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:4]}
    assert set(rows) == {"dev", "test", "all"}
    precision, recall = float(rows["all"][-2]), float(rows["all"][-1])
    assert precision >= 0.95 and recall >= 0.80
    assert "threshold 0.2" in out


def test_eval_names_a_bad_file(newsroom, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("clusters:\n  - {id: x, items: [{title: no date}]}\n")
    code, _, err = run(newsroom, "stories", "eval", "--data", str(bad))
    assert code == 2 and "bad.yaml" in err and "published" in err


def test_the_semantic_signal_stores_each_new_items_vector(newsroom, monkeypatch):
    """With the `embeddings` extra (a stand-in here), new items get their vector stored
    once, and the next run's window index reads it back instead of embedding again."""
    import aggregator.pipeline._cluster as run_cluster
    from aggregator.cluster import MODEL, unpack

    calls: list[int] = []

    def fake_loader():
        def embed(texts):
            calls.append(len(texts))
            return [(1.0, 0.0) if "Weirton" in t or "Virginia" in t else (0.0, 1.0) for t in texts]

        return embed

    monkeypatch.setattr(run_cluster, "load_embedder", fake_loader)
    storage = open_storage(newsroom.database, NOW)
    try:
        update(newsroom, storage)
        ids = [m.id for s in storage.get_stories() for m in (s.lead, *s.others)]
        vectors = storage.get_item_vectors(MODEL, ids)
    finally:
        storage.close()
    assert calls  # the embedder ran for the new items
    assert vectors and {unpack(v) for v in vectors.values()} <= {(1.0, 0.0), (0.0, 1.0)}
    assert len(weirton(stories_of(newsroom)).others) == 2


# --- a story's section is stable; items move/drop act on it (review finding 1) ----------------


@pytest.fixture
def mixed(tmp_path, http_server):
    """The Weirton story told first by Fox (filed under training), then by the heavier WV
    Press and by WKBW (both filed under policy): members in different sections."""
    config = weirton_outlets(tmp_path, http_server, fox_section="training")
    storage = open_storage(config.database, NOW)
    try:
        update(config, storage, NOW - timedelta(hours=1), source_ids=["fox"])
        update(config, storage, NOW, source_ids=["wvpress", "wkbw"])
    finally:
        storage.close()
    return config


def outputs(config) -> tuple[dict[str, list[Story]], list, dict[str, int]]:
    """The digest's sections, the feed's entries and the issue's section counts."""
    storage = open_storage(config.database, NOW)
    try:
        start, end = NOW - timedelta(days=1), NOW + timedelta(days=1)
        digest = pipeline.build_digest(config, storage, NOW, start=start, end=end).digest
        path = pipeline.build_feed(config, storage, NOW)
        shown = {ds.section.id: list(ds.stories) for ds in digest.sections}
        ids = tuple(s.id for ds in digest.sections for s in ds.stories)
        issue = Issue(0, 0, start, end, NOW, "", "", "", ids)
        counts = pipeline.issue_section_counts(storage, issue)
    finally:
        storage.close()
    return shown, feedparser.parse(path.read_bytes()).entries, counts


def member_id(config, source: str) -> int:
    story = weirton(stories_of(config))
    return next(m.id for m in story.members if m.item.source_id == source)


def test_a_story_stays_in_its_first_items_section_whoever_leads(mixed):
    shown, entries, counts = outputs(mixed)
    [story] = shown["training"]  # Fox was first: training, although WV Press weighs more
    assert "policy" not in shown
    assert story.lead.item.source_id == "fox"  # the lead is chosen within the section
    assert {m.item.source_id for m in story.others} == {"wvpress", "wkbw"}
    [entry] = entries
    assert entry.title == FOX[0] and entry.tags[0].term == "Training & Tactics"
    assert counts == {"training": 1}
    # reclassify and recluster keep it there
    assert run(mixed, "reclassify")[0] == 0
    assert run(mixed, "stories", "recluster", "--since", "2000-01-01")[0] == 0
    assert outputs(mixed)[2] == {"training": 1}


def test_dropping_a_member_takes_it_out_of_the_story_everywhere(mixed):
    fox = member_id(mixed, "fox")
    code, out, _ = run(mixed, "items", "drop", str(fox))
    assert code == 0
    assert "stays in policy with 2 other item(s)" in out  # the next first-seen is WV Press/WKBW
    shown, entries, counts = outputs(mixed)
    [story] = shown["policy"]
    assert "training" not in shown
    assert story.lead.item.source_id == "wvpress"
    assert "fox" not in {m.item.source_id for m in story.members}  # not "Also reported by"
    [entry] = entries
    assert entry.title == WVPRESS[0] and "fox.example" not in entry.description
    assert counts == {"policy": 1}
    story_id = weirton(stories_of(mixed)).id
    code, out, _ = run(mixed, "stories", "--explain", str(story_id))
    assert f"#{fox} fox: {FOX[0]}  (dropped by an editor: not shown)" in out  # editors see it
    assert "section policy" in out and "2 item(s) from 2 outlet(s)" in out
    # drop the rest: the story leaves the digest and the feed
    for source in ("wvpress", "wkbw"):
        code, out, _ = run(mixed, "items", "drop", str(member_id(mixed, source)))
    assert "it leaves the digest and feed" in out
    shown, entries, counts = outputs(mixed)
    assert shown == {} and entries == [] and counts == {}


def test_moving_any_member_moves_the_story(mixed):
    wkbw = member_id(mixed, "wkbw")  # not the lead, not the first seen
    code, out, _ = run(mixed, "items", "move", str(wkbw), "policy")
    assert code == 0 and "moves with it" in out
    shown, entries, counts = outputs(mixed)
    [story] = shown["policy"]
    assert story.lead.item.source_id == "wvpress"  # every member is in policy now
    assert entries[0].tags[0].term == "Policy & Legislation"
    assert counts == {"policy": 1}
    # and the editor's section survives reclassify and recluster
    assert run(mixed, "reclassify")[0] == 0
    assert run(mixed, "stories", "recluster", "--since", "2000-01-01")[0] == 0
    assert outputs(mixed)[2] == {"policy": 1}


CAMERAS = (
    "Tulsa orders body cameras for every patrol officer",
    "TULSA, Okla. — Every Tulsa patrol officer will wear a body camera by spring under a "
    "purchase the city council approved Tuesday.",
)


def test_a_merge_with_a_story_outside_since_survives_a_narrow_recluster(tmp_path, http_server):
    """Review finding 5: the editor merged two new, unrelated items into an older story; a
    recluster of the last hour (the older story outside it) keeps the three together."""
    http_server.routes["/fox.xml"] = static(feed(("f1", "https://fox.example/weirton", *FOX)))
    http_server.routes["/wv.xml"] = static(
        feed(
            ("w1", "https://wvpress.example/training", *TRAINING),
            ("w2", "https://wvpress.example/cams", *CAMERAS),
        )
    )
    config = make_config(
        tmp_path,
        http_server,
        [src("fox", "/fox.xml", ", section: policy"), src("wv", "/wv.xml", ", section: policy")],
    )
    storage = open_storage(config.database, NOW)
    try:
        update(config, storage, NOW - timedelta(days=2), source_ids=["fox"])
        update(config, storage, NOW, source_ids=["wv"])
        by_title = {s.item.title: s for s in storage.get_items()}
        old = by_title[FOX[0]].story_id
        new = {by_title[TRAINING[0]].story_id, by_title[CAMERAS[0]].story_id}
        assert old not in new
        pipeline.merge_stories(storage, old, sorted(new - {old}), NOW)
        before = {s.id: {m.id for m in s.members} for s in storage.get_stories()}
        report = pipeline.recluster(config, storage, NOW, NOW - timedelta(hours=1))
        after = {s.id: {m.id for m in s.members} for s in storage.get_stories()}
    finally:
        storage.close()
    assert report.items == 2 and report.moved == 0
    assert after == before
    assert {by_title[t].id for t in (FOX[0], TRAINING[0], CAMERAS[0])} in after.values()


@pytest.mark.parametrize(
    ("argv", "since"),
    [
        (["stories", "--since", "3d", "recluster"], "3d"),  # review finding 11
        (["stories", "recluster", "--since", "2d"], "2d"),
        (["stories", "--since", "1d"], "1d"),
    ],
)
def test_recluster_takes_since_before_or_after_the_action(argv, since):
    from aggregator.cli import make_parser

    assert make_parser().parse_args(argv).since == since


def test_recluster_without_since_uses_the_window():
    from aggregator.cli import make_parser

    args = make_parser().parse_args(["stories", "recluster"])
    assert getattr(args, "since", None) is None


def test_dev_set_times_keep_an_explicit_offset():
    from aggregator.cli._stories import _when

    assert _when("2016-09-11T08:00:00-04:00") == datetime(2016, 9, 11, 12, tzinfo=UTC)
    assert _when("2016-09-11T08:00:00") == datetime(2016, 9, 11, 8, tzinfo=UTC)


def test_the_window_index_is_built_off_the_loop_before_any_write_transaction(newsroom, monkeypatch):
    """Review finding 12: reading (and embedding) the window inside a source's transaction
    held SQLite's write lock for seconds and stalled the event loop."""
    import contextlib
    import threading

    from aggregator.pipeline._cluster import RunClusterer

    storage = open_storage(newsroom.database, NOW)
    open_tx = []
    seen: list[tuple[bool, bool]] = []  # (inside a transaction, on the loop's thread)
    original_tx, original_build = storage.transaction, RunClusterer._build_index

    @contextlib.contextmanager
    def transaction():
        open_tx.append(1)
        try:
            with original_tx() as tx:
                yield tx
        finally:
            open_tx.pop()

    def build(self):
        if self._index is None:
            seen.append((bool(open_tx), threading.current_thread() is threading.main_thread()))
        return original_build(self)

    monkeypatch.setattr(storage, "transaction", transaction)
    monkeypatch.setattr(RunClusterer, "_build_index", build)
    try:
        update(newsroom, storage)
    finally:
        storage.close()
    assert seen == [(False, False)]
    assert len(weirton(stories_of(newsroom)).others) == 2


def test_no_source_hops_to_a_thread_once_the_window_index_is_built(newsroom, monkeypatch):
    """Issue 8: a source's store hops to a thread to build the window index only while it
    is not built; once it is, stores go straight to the store's thread."""
    import asyncio

    from aggregator.pipeline._cluster import RunClusterer

    load = RunClusterer.load

    def built(storage_, settings, now):
        clusterer = load(storage_, settings, now)
        if clusterer is not None:
            clusterer.prepare()
            assert clusterer.prepared
        return clusterer

    hops: list[object] = []
    to_thread = asyncio.to_thread

    async def recording_to_thread(fn, /, *args, **kwargs):
        if getattr(fn, "__func__", None) is RunClusterer.prepare:
            hops.append(fn)
        return await to_thread(fn, *args, **kwargs)

    monkeypatch.setattr(RunClusterer, "load", built)
    monkeypatch.setattr(asyncio, "to_thread", recording_to_thread)
    fetch_all(newsroom)
    assert hops == []
    assert len(weirton(stories_of(newsroom)).others) == 2  # matched against the index


EPISODE = (
    "Policing Matters podcast: how de-escalation training changes {topic}",
    "In this episode of Policing Matters, host Jim Dudley talks with a training officer about "
    "de-escalation and {topic}. Listen on Apple Podcasts, Spotify or wherever you get podcasts.",
)


def episode(guid: str, topic: str) -> tuple[str, str, str, str]:
    title, text = EPISODE
    return (
        guid,
        f"https://pod.example/{guid}",
        title.format(topic=topic),
        text.format(topic=topic),
    )


def test_an_outlets_own_items_never_join_each_other(tmp_path, http_server):
    # A podcast's templated episodes share most of their words; joined, the digest would
    # show one of them (a story lists each outlet once). Another outlet's copy still joins.
    # Each step is its own run: within one run the two sources are stored in either order,
    # and the next episode could join through the copy (single link; see docs/clustering.md).
    first = episode("e1", "street encounters")
    http_server.routes["/pod.xml"] = static(feed(first))
    http_server.routes["/other.xml"] = static(feed(("o0", "https://o.example/0", *TRAINING)))
    config = make_config(
        tmp_path, http_server, [src("pod", "/pod.xml"), src("other", "/other.xml")]
    )
    storage = open_storage(config.database, NOW)
    try:
        update(config, storage)
        http_server.routes["/pod.xml"] = static(feed(first, episode("e2", "crisis calls")))
        later = NOW + timedelta(hours=6)
        assert all(r.ok for r in update(config, storage, later, source_ids=["pod"], only_due=False))
        copy = ("o1", "https://o.example/e1", first[2], first[3])
        http_server.routes["/other.xml"] = static(feed(copy))
        latest = later + timedelta(hours=6)
        assert all(
            r.ok for r in update(config, storage, latest, source_ids=["other"], only_due=False)
        )
        story = {s.item.guid: s.story_id for s in storage.get_items()}
        assert story["e2"] != story["e1"]  # the next episode is its own story
        assert story["o1"] == story["e1"]  # another outlet's copy joins
        pipeline.recluster(config, storage, latest, NOW - timedelta(days=1))
        story = {s.item.guid: s.story_id for s in storage.get_items()}
        assert story["e2"] != story["e1"] and story["o1"] == story["e1"]
    finally:
        storage.close()
