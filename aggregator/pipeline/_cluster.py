"""Cross-source clustering in a run (issue 4): the window index over the store, and links.

Part of the composition root. The index is built once per run from the items first seen in
the last `clustering.window_days` (one indexed query, however large the store), then kept up
to date as each source's transaction commits. A new item that starts a story by the exact
rules (dedupe) is matched against it; a match puts the item into the matched story instead,
and the signal and score are stored as the item's link (`aggregator stories --explain`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from aggregator.cluster import (
    MODEL,
    Doc,
    Embed,
    Match,
    StoryIndex,
    Vector,
    cluster_items,
    embed_text,
    load_embedder,
    pack,
    unpack,
)
from aggregator.cluster._text import Features
from aggregator.dedupe import StoryRef, item_keys
from aggregator.exceptions import ConfigError, ConfigProblem
from aggregator.pipeline._prepare import features_of
from aggregator.rank import choose_lead, rank_key
from aggregator.storage import StorageType, TransactionType
from aggregator.types import ClusterSettings, Config, Item, StoredItem, Story, StoryLink


@dataclass(slots=True)
class RunClusterer:
    """The run's clustering state: the window index and what waits for a commit.

    The index is built on first use, so a run in which no source brings a new item (all
    304s) never reads the window."""

    settings: ClusterSettings
    storage: StorageType
    now: datetime
    load_embed: Callable[[], Embed | None] | None = None  # default: load_embedder
    _index: StoryIndex | None = None
    _embed: Embed | None = None
    _embed_loaded: bool = False
    _pending: list[tuple[int, Features, int, datetime, Vector | None, str]] = field(
        default_factory=list
    )
    _group_features: dict[int, Features] = field(default_factory=dict)
    _group_vectors: dict[int, Vector] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)  # prepare() runs in threads

    @property
    def embed(self) -> Embed | None:
        """The semantic signal's embedder, loaded on first use; None when clustering.semantic
        is off or the `embeddings` extra is not installed (then clustering is lexical)."""
        if not self._embed_loaded:
            self._embed_loaded = True
            if self.settings.semantic != "off":
                self._embed = (self.load_embed or load_embedder)()
                if self._embed is None and self.settings.semantic == "on":
                    # review finding 10: `on` never falls back to lexical silently
                    raise ConfigError(
                        ConfigProblem(
                            "feeds.yaml",
                            None,
                            "clustering.semantic",
                            "is on, but the `embeddings` extra is not installed: "
                            "pip install 'aggregator[embeddings]', or set it to auto or off",
                        )
                    )
        return self._embed

    @classmethod
    def load(
        cls, storage: StorageType, settings: ClusterSettings, now: datetime
    ) -> RunClusterer | None:
        """The run's clusterer over `storage`; None when clustering is off."""
        if not settings.enabled:
            return None
        return cls(settings=settings, storage=storage, now=now)

    def prepare(self) -> None:
        """Build the window index and load the embedder now (review finding 12): called in a
        thread before a source's transaction, so neither the read of the window nor the
        model's load holds the database's write lock or blocks the event loop."""
        _ = self.index

    @property
    def prepared(self) -> bool:
        """Whether `prepare` has run (a source's store then needs no thread hop first)."""
        return self._index is not None

    @property
    def index(self) -> StoryIndex:
        """The items first seen in the window before `now` (one query), indexed."""
        with self._lock:
            return self._build_index()

    def _build_index(self) -> StoryIndex:
        if self._index is None:
            window = timedelta(days=self.settings.window_days)
            index = StoryIndex(window)
            stored = self.storage.get_items(since=self.now - window)
            vectors = (
                self.storage.get_item_vectors(MODEL, [s.id for s in stored])
                if self.embed is not None
                else {}
            )
            for s in sorted(stored, key=lambda s: s.id):
                data = vectors.get(s.id)
                index_stored(index, s, None if data is None else unpack(data))
            index.expire(self.now)
            self._index = index
        return self._index

    def match_groups(
        self,
        new: Sequence[Item],
        refs: Sequence[StoryRef],
        features: Sequence[Features] | None = None,
    ) -> dict[int, Match]:
        """For each new-story group of this batch (its first item), the stored story it joins.

        `features`, aligned with `new`, are the items' features when already extracted (by
        the parse worker, issue 8); without them each group's first item is extracted here."""
        found: dict[int, Match] = {}
        self._group_features, self._group_vectors = {}, {}
        given = _aligned(new, features)
        firsts: dict[int, int] = {}  # group -> its first item's position in `new`
        for n, (_, ref) in enumerate(zip(new, refs, strict=True)):
            if ref.group is not None:
                firsts.setdefault(ref.group, n)
        if not firsts:
            return found
        index, embed = self.index, self.embed
        if embed is not None:
            texts = [embed_text(new[n].title, new[n].summary_text) for n in firsts.values()]
            self._group_vectors = dict(zip(firsts, embed(texts), strict=True))
        for group, n in firsts.items():
            self._group_features[group] = features_of(new[n]) if given is None else given[n]
        # issue 8: the index does not change within a batch, so all groups are matched at once
        matches = index.match_many(
            [(self._group_features[g], self._group_vectors.get(g)) for g in firsts],
            self.settings.threshold,
            semantic_threshold=self.settings.semantic_threshold,
            origin=new[0].source_id,  # a batch is one source's: none joins through its own
        )
        for group, match in zip(firsts, matches, strict=True):
            if match is not None:
                found[group] = match
        return found

    def record(
        self,
        tx: TransactionType,
        source_id: str,
        new: Sequence[Item],
        refs: Sequence[StoryRef],
        story_ids: Sequence[int],
        known: dict[str, int],
        matches: dict[int, Match],
        now: datetime,
        features: Sequence[Features] | None = None,
    ) -> None:
        """Write each new item's link (why it is in its story) and queue it for the index.

        `features`, aligned with `new`: as for `match_groups`."""
        given = _aligned(new, features)
        ids = tx.get_item_ids(source_id, [i.guid for i in new])
        first_of_group: dict[int, int] = {}
        links: list[StoryLink] = []
        vectors: dict[int, bytes] = {}
        for n, (item, ref, story_id) in enumerate(zip(new, refs, story_ids, strict=True)):
            item_id = ids[item.guid]
            if ref.story_id is not None:
                key = next(k for k in item_keys(item) if k in known)
                links.append(StoryLink(item_id, story_id, key.split(":", 1)[0], 1.0))
            elif ref.group is not None and ref.group in first_of_group:
                links.append(StoryLink(item_id, story_id, "exact", 1.0, first_of_group[ref.group]))
            elif ref.group is not None and ref.group in matches:
                first_of_group[ref.group] = item_id
                links.append(match_link(item_id, story_id, matches[ref.group]))
            else:
                if ref.group is not None:
                    first_of_group[ref.group] = item_id
                links.append(StoryLink(item_id, story_id, "lead", 0.0))
            own = (self._group_features.get(ref.group) if ref.group is not None else None) or (
                features_of(item) if given is None else given[n]
            )
            vector = self._group_vectors.get(ref.group) if ref.group is not None else None
            if vector is not None:
                vectors[item_id] = pack(vector)
            self._pending.append((item_id, own, story_id, now, vector, source_id))
        tx.add_story_links(links, now)  # new items: none has a link to replace
        if vectors:
            tx.set_item_vectors(MODEL, vectors)

    def commit(self) -> None:
        """The source's transaction committed: its items join the index."""
        for item_id, features, story_id, when, vector, source_id in self._pending:
            self.index.add(item_id, features, story_id, when, vector, source_id)
        self._pending.clear()

    def rollback(self) -> None:
        self._pending.clear()


def _aligned(new: Sequence[Item], features: Sequence[Features] | None) -> Sequence[Features] | None:
    if features is not None and len(features) != len(new):
        raise ValueError(f"{len(features)} features for {len(new)} items")
    return features


def match_link(item_id: int, story_id: int, m: Match) -> StoryLink:
    """The link of an item a match put into a story: signal, score and evidence."""
    detail: dict[str, object] = dict(m.pair.detail())
    score = m.pair.score
    if m.cosine is not None:
        detail["cosine"] = round(m.cosine, 4)
        score = m.cosine
    return StoryLink(
        item_id,
        story_id,
        m.signal,
        round(score, 4),
        cast(int, m.item),
        json.dumps(detail, ensure_ascii=False),
    )


def index_stored(index: StoryIndex, stored: StoredItem, vector: Vector | None = None) -> None:
    key: Hashable = stored.id
    # The window is over first-seen times, as the query that fills it: a feed whose dates
    # lag (or lie, FAULTS C7) still meets this week's stories.
    index.add(
        key,
        features_of(stored.item),
        stored.story_id,
        stored.first_seen,
        vector,
        stored.item.source_id,
    )


# --- leads and ranking for the outputs -------------------------------------------------------


def ranking(
    config: Config, now: datetime
) -> tuple[Callable[[Story], Story], Callable[[Story], tuple[float, datetime, int]]]:
    """How the outputs show a story (its lead chosen, `aggregator.rank.choose_lead`) and
    the ranking's order at `now` (`aggregator.rank.rank_key`, highest first)."""
    weights = {s.id: s.weight for s in config.sources}

    def lead(story: Story) -> Story:
        return choose_lead(story, weights)

    def key(story: Story) -> tuple[float, datetime, int]:
        return rank_key(story, weights, now, config.clustering)

    return lead, key


def ranked(
    config: Config, stories: Sequence[Story], now: datetime
) -> tuple[list[Story], Callable[[Story], tuple[float, datetime, int]]]:
    """The stories with their leads chosen, and the ranking's order at `now` (`ranking`)."""
    lead, key = ranking(config, now)
    return [lead(s) for s in stories], key


# --- editors: merge, split, re-cluster ------------------------------------------------------

EXACT_SIGNALS = frozenset({"url", "title", "exact"})


@dataclass(frozen=True, slots=True)
class ReclusterReport:
    items: int  # items considered
    moved: int  # items that changed story
    stories_before: int
    stories_after: int


def merge_stories(storage: StorageType, target: int, others: Sequence[int], now: datetime) -> int:
    """Move every item of the `others` stories into `target`, and remember it: each moved
    item is kept together with the target's lead whenever the stories are re-clustered.
    Returns the number of items moved. Unknown or empty stories raise LookupError."""
    lead = storage.get_story(target)
    if lead is None:
        raise LookupError(f"story {target} does not exist (or has no items)")
    moved: list[StoredItem] = []
    for other in others:
        if other == target:
            continue
        story = storage.get_story(other)
        if story is None:
            raise LookupError(f"story {other} does not exist (or has no items)")
        moved.extend((story.lead, *story.others))
    with storage.transaction() as tx:
        tx.move_items({m.id: target for m in moved})
        for m in moved:
            tx.add_story_override("together", lead.lead.id, m.id, now)
        links = [StoryLink(m.id, target, "editor:merge", 1.0, lead.lead.id, "", now) for m in moved]
        tx.set_story_links(links, now)
    return len(moved)


def split_story(storage: StorageType, story_id: int, item_ids: Sequence[int], now: datetime) -> int:
    """Move `item_ids` out of `story_id` into a new story, and remember it: each of them is
    kept apart from each item left behind whenever the stories are re-clustered. Returns the
    new story's id. Raises LookupError for an unknown story or an item not in it, and
    ValueError when the split would take every item (nothing would be split)."""
    story = storage.get_story(story_id)
    if story is None:
        raise LookupError(f"story {story_id} does not exist (or has no items)")
    members = {m.id: m for m in (story.lead, *story.others)}
    missing = [i for i in item_ids if i not in members]
    if missing:
        raise LookupError(
            f"item(s) {', '.join(map(str, missing))} are not in story {story_id} "
            f"(its items: {', '.join(map(str, members))})"
        )
    leaving = list(dict.fromkeys(item_ids))
    staying = [i for i in members if i not in leaving]
    if not staying:
        raise ValueError(f"splitting off every item of story {story_id} would change nothing")
    first_seen = min(members[i].first_seen for i in leaving)
    with storage.transaction() as tx:
        new_id = tx.add_story(first_seen)
        tx.move_items({i: new_id for i in leaving})
        for a in leaving:
            for b in staying:
                tx.add_story_override("apart", a, b, now)
        links = [
            StoryLink(i, new_id, "editor:split", 1.0, None if i == leaving[0] else leaving[0])
            for i in leaving
        ]
        tx.set_story_links(links, now)
    return new_id


def recluster(
    config: Config, storage: StorageType, now: datetime, since: datetime
) -> ReclusterReport:
    """Cluster the items first seen since `since` again, from scratch, with today's settings:
    exact duplicates and editors' merges stay together, editors' splits stay apart.
    A new cluster keeps the story id of its earliest item when it can."""
    settings = config.clustering
    stored = sorted(storage.get_items(since=since), key=lambda s: (s.first_seen, s.id))
    by_id = {s.id: s for s in stored}
    links = storage.get_story_links(list(by_id))
    story_members: dict[int, list[int]] = {}
    for s in stored:
        story_members.setdefault(s.story_id, []).append(s.id)
    together: list[tuple[Hashable, Hashable]] = []
    for members in story_members.values():
        first = members[0]
        together += [
            (first, m) for m in members[1:] if m in links and links[m].signal in EXACT_SIGNALS
        ]
    apart: list[tuple[Hashable, Hashable]] = []
    # An override whose partner is outside `since` (review finding 5): the item in the set
    # is anchored to the partner's story (together) or kept out of it (apart).
    outside: list[tuple[str, int, int]] = []  # (kind, item in the set, partner outside)
    for o in storage.get_story_overrides():
        if o.item_a in by_id and o.item_b in by_id:
            (together if o.kind == "together" else apart).append((o.item_a, o.item_b))
        elif o.item_a in by_id or o.item_b in by_id:
            inside, partner = (o.item_a, o.item_b) if o.item_a in by_id else (o.item_b, o.item_a)
            outside.append((o.kind, inside, partner))
    partners = storage.get_items_by_id([p for _, _, p in outside])
    anchor: dict[int, int] = {}  # item -> the story of its outside "together" partner
    barred: dict[int, set[int]] = {}  # item -> stories of its outside "apart" partners
    for kind, inside, partner in outside:
        if partner not in partners:
            continue
        if kind == "together":
            anchor.setdefault(inside, partners[partner].story_id)
        else:
            barred.setdefault(inside, set()).add(partners[partner].story_id)
    docs = [
        Doc(s.id, s.item.title, s.item.summary_text, s.first_seen, s.item.source_id) for s in stored
    ]
    window = timedelta(days=settings.window_days)
    # The semantic signal from the stored embeddings (nothing is embedded again here).
    stored_vectors: dict[Hashable, Vector] = (
        {i: unpack(v) for i, v in storage.get_item_vectors(MODEL, list(by_id)).items()}
        if settings.semantic != "off"
        else {}
    )
    assignments = cluster_items(
        docs,
        threshold=settings.threshold if settings.enabled else float("inf"),
        window=window,
        together=together,
        apart=apart,
        index=StoryIndex(window),
        semantic_threshold=settings.semantic_threshold,
        vectors=stored_vectors,
    )
    clusters: dict[Hashable, list[int]] = {}
    for a in assignments:
        clusters.setdefault(a.story, []).append(cast(int, a.key))
    moves: dict[int, int] = {}
    new_links: list[StoryLink] = []
    taken: set[int] = set()
    match_of = {a.key: a.match for a in assignments}

    def order(i: int) -> tuple[datetime, int]:
        return (by_id[i].first_seen, i)

    # Clusters anchored to an outside story choose first, so they get its id.
    ordered = sorted(clusters.values(), key=lambda ms: not any(m in anchor for m in ms))
    with storage.transaction() as tx:
        for members in ordered:
            first = min(members, key=order)
            anchored = sorted((m for m in members if m in anchor), key=order)
            story_id = anchor[anchored[0]] if anchored else by_id[first].story_id
            no_go = set().union(*(barred.get(m, set()) for m in members))
            # Clusters anchored to the same outside story share it (the editor's merge).
            if (story_id in taken and not anchored) or story_id in no_go:
                story_id = tx.add_story(by_id[first].first_seen)
            taken.add(story_id)
            for i in members:
                if by_id[i].story_id != story_id:
                    moves[i] = story_id
                m = match_of.get(i)
                if m is not None:
                    new_links.append(match_link(i, story_id, m))
                elif i == first and (i not in links or links[i].signal not in EXACT_SIGNALS):
                    new_links.append(StoryLink(i, story_id, "lead", 0.0))
        tx.move_items(moves)
        tx.set_story_links(new_links, now)
    return ReclusterReport(
        items=len(stored),
        moved=len(moves),
        stories_before=len(story_members),
        stories_after=len(clusters),
    )
