"""issue 8: clustering features extracted in the parse worker, and the bound on sources in flight.

The features a worker extracts must change nothing: the same stories, the same links, in the
same order, as when the main process extracts them itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import pickle
from pathlib import Path

import pytest

from aggregator import pipeline
from aggregator._budget import WorkerPool
from aggregator.classify import make_classifier
from aggregator.config import load_config
from aggregator.pipeline import _prepare, _update
from aggregator.pipeline._cluster import RunClusterer, features_of
from aggregator.storage import StorageType, open_storage
from aggregator.types import (
    ClassifySettings,
    ClusterSettings,
    Fetched,
    Rule,
    Section,
    Source,
    SourceState,
    Topic,
    pickled_by_fields,
)
from bench.corpus import fixed_now, generate_corpus
from tests.httpserver import static

NOW = fixed_now()
SECTIONS = (Section("training", "Training", rules=(Rule("training"),)),)
TOPIC = Topic(include=(Rule("police"),))
LEXICAL = ClusterSettings(semantic="off")  # the same decisions with or without the extra


def corpus_sources(n: int) -> list[tuple[Source, Fetched]]:
    """`n` generated feeds (pages left out: they need selectors), 12% of stories shared."""
    found = []
    for k, doc in enumerate(generate_corpus(n, NOW).documents):
        if doc.kind == "page":
            continue
        url = f"https://s{k}.example.org{doc.path}"
        source = Source(id=f"s{k}", name=f"S{k}", url=url)
        found.append((source, Fetched(source.id, url, 200, doc.body, doc.content_type)))
    return found


def store_all(
    storage: StorageType, sources: list[tuple[Source, Fetched]], *, in_worker: bool
) -> None:
    clusterer = RunClusterer.load(storage, LEXICAL, NOW)
    assert clusterer is not None
    classifier = make_classifier(SECTIONS, TOPIC)
    for source, fetched in sources:
        prepared = pipeline.prepare_items(fetched, source, classifier, 1000, cluster=in_worker)
        assert bool(prepared.features) == in_worker
        state = SourceState(source_id=source.id)
        pipeline.store_items(storage, source, prepared, fetched, state, NOW, None, clusterer)


def outcome(storage: StorageType) -> tuple[list[tuple[str, str, int]], list[object]]:
    stored = sorted(storage.get_items(), key=lambda s: s.id)
    links = storage.get_story_links([s.id for s in stored])
    return (
        [(s.item.source_id, s.item.guid, s.story_id) for s in stored],
        [dataclasses.replace(links[s.id], created=None) for s in stored if s.id in links],
    )


def test_prepare_items_extracts_each_items_features_when_clustering():
    (source, fetched), *_ = corpus_sources(2)
    classifier = make_classifier(SECTIONS, TOPIC)
    without = pipeline.prepare_items(fetched, source, classifier, 1000)
    with_ = pipeline.prepare_items(fetched, source, classifier, 1000, cluster=True)
    assert without.features == ()
    assert with_.items == without.items
    assert with_.features == tuple(features_of(i) for i, _ in with_.items)
    assert "cluster" in {stage for stage, _, _ in with_.times}


def test_features_round_trip_through_a_worker():
    (source, fetched), *_ = corpus_sources(2)
    with WorkerPool(1, timeout=30) as pool:
        there = pool.run(
            _prepare._prepare_in_worker,
            fetched,
            source,
            SECTIONS,
            TOPIC,
            1000,
            (),
            ClassifySettings(),
            True,
        )
    here = pipeline.prepare_items(fetched, source, make_classifier(SECTIONS, TOPIC), 1000)
    assert there.items == here.items
    assert there.features == tuple(features_of(i) for i, _ in here.items)


def test_a_prepared_source_pickles_as_calls_of_its_classes():
    (source, fetched), *_ = corpus_sources(2)
    classifier = make_classifier(SECTIONS, TOPIC)
    prepared = pipeline.prepare_items(fetched, source, classifier, 1000, cluster=True)
    assert prepared.count and prepared.features
    back = _prepare.PreparedBytes.pack(prepared).unpack()
    assert back == prepared
    assert back.times == prepared.times  # not compared by ==, and sent all the same
    item, placement = back.items[0]
    assert (item, placement, back.features[0]) == (*prepared.items[0], prepared.features[0])
    # no dataclasses' __getstate__: each is rebuilt by a call of its class with its fields
    for value in (prepared, item, placement, prepared.features[0]):
        rebuild, args = value.__reduce__()
        assert rebuild is type(value)
        assert args == tuple(getattr(value, f.name) for f in dataclasses.fields(value))
        assert pickle.loads(pickle.dumps(value)) == value


def test_pickled_by_fields_refuses_a_field_init_cannot_set():
    @dataclasses.dataclass(frozen=True, slots=True)
    class Counted:
        name: str
        size: int = dataclasses.field(init=False, default=0)

    with pytest.raises(TypeError, match="Counted"):
        pickled_by_fields(Counted)


def test_features_from_the_worker_change_no_decision(tmp_path):
    sources = corpus_sources(40)
    results = []
    for in_worker in (False, True):
        storage = open_storage(f"sqlite:///{tmp_path / f'{in_worker}.db'}", NOW)
        try:
            store_all(storage, sources, in_worker=in_worker)
            results.append(outcome(storage))
        finally:
            storage.close()
    (items_a, links_a), (items_b, links_b) = results
    assert items_a == items_b and links_a == links_b
    # the corpus does exercise clustering: some stories span sources, some by a match
    assert len({story for _, _, story in items_a}) < len(items_a)
    assert any(getattr(link, "signal", "").startswith("lexical") for link in links_a)


def test_features_must_align_with_the_items(tmp_path):
    (source, fetched), *_ = corpus_sources(2)
    prepared = pipeline.prepare_items(
        fetched, source, make_classifier(SECTIONS, TOPIC), 1000, cluster=True
    )
    storage = open_storage(f"sqlite:///{tmp_path / 'a.db'}", NOW)
    try:
        clusterer = RunClusterer.load(storage, LEXICAL, NOW)
        assert clusterer is not None
        items = [i for i, _ in prepared.items]
        with pytest.raises(ValueError, match="features for"):
            clusterer.match_groups(items, [], prepared.features[:-1])
    finally:
        storage.close()


def test_in_flight_limit_keeps_fetch_and_parse_busy():
    assert _update._in_flight_limit(16, 2) == 20
    assert _update._in_flight_limit(0, 1) == 3


def test_sources_between_fetch_and_store_are_bounded(tmp_path, http_server, monkeypatch):
    """Fetches are fast and parsing is slow: without the bound every body would wait at once."""
    n = 12
    for k in range(n):
        http_server.routes[f"/f{k}.xml"] = static(
            b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
            b"<item><guid>g</guid><link>https://e.org/%d</link>"
            b"<title>Police training %d</title></item></channel></rss>" % (k, k)
        )
    sources = "\n".join(
        f"  - {{id: f{k}, name: F{k}, url: '{http_server.base}/f{k}.xml'}}" for k in range(n)
    )
    path = Path(tmp_path / "feeds.yaml")
    path.write_text(
        f"""
newsletter: {{title: T, link: "https://w.example.org/", description: d, timezone: UTC}}
storage: {{database: "sqlite:///{tmp_path / "t.db"}"}}
output: {{dir: out}}
fetch: {{allow_private_network: true, concurrency: 2, per_host: 2, parse_workers: 1}}
topic: {{include: [police]}}
sources:
{sources}
sections:
  - {{id: training, title: Training, rules: [training]}}
"""
    )
    config = load_config(path)
    in_flight, peak = [0], [0]
    fetch, store = _update.fetch_source, _update.store_items

    async def counting_fetch(*args, **kw):
        in_flight[0] += 1
        peak[0] = max(peak[0], in_flight[0])
        return await fetch(*args, **kw)

    def counting_store(*args, **kw):
        try:
            return store(*args, **kw)
        finally:
            in_flight[0] -= 1

    monkeypatch.setattr(_update, "fetch_source", counting_fetch)
    monkeypatch.setattr(_update, "store_items", counting_store)
    storage = open_storage(config.database, NOW)
    try:

        async def go():
            async with pipeline.open_client(config) as client:
                return await pipeline.update_sources(config, storage, client, NOW)

        results = asyncio.run(go())
        assert all(r.ok and r.new_items == 1 for r in results), results
        assert 1 < peak[0] <= _update._in_flight_limit(2, 1)
        assert in_flight[0] == 0
        assert storage.count_items() == n
    finally:
        storage.close()
