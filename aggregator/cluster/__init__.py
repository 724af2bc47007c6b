"""Clustering stage: items -> stories across sources, with the evidence for each merge (pure).

    extract_features(title, text)      -> Features (words, names, numbers, years)
    score_pair(a, b, idf)              -> PairScore (score + evidence)
    StoryIndex(window)                 the items of the last N days, found by rare words
    cluster_items(docs, ...)           a whole batch, in time order (evaluation, re-clustering)
    pairwise_quality(gold, predicted)  pairwise precision and recall of a clustering

An item joins the story of its best-scoring candidate when the score reaches the threshold
(`clustering.threshold` in feeds.yaml) with evidence enough (`PairScore.joins`: 4 shared
words, or the same headline); otherwise it starts a story. Single link: a story
grows through any of its members, within the time window. See docs/clustering.md.

Imports only `types` and its own modules; never storage, pipeline or cli.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator.cluster._index import Match, StoryIndex
from aggregator.cluster._score import PairScore, score_pair
from aggregator.cluster._semantic import (
    MODEL,
    Embed,
    Vector,
    embed_text,
    load_embedder,
    pack,
    unpack,
)
from aggregator.cluster._text import LEAD_CHARS, Features, extract_features

DEFAULT_THRESHOLD = 0.2
DEFAULT_WINDOW_DAYS = 14


@dataclass(frozen=True, slots=True)
class Doc:
    """One item as clustering sees it: a key, its text and when it happened."""

    key: Hashable
    title: str
    text: str
    when: datetime
    origin: Hashable | None = None  # its source: a doc never joins through one of its own


@dataclass(frozen=True, slots=True)
class Assignment:
    """Where `cluster_items` put one doc: its story (the key of the story's first doc) and
    the match that put it there (None: it started the story)."""

    key: Hashable
    story: Hashable
    match: Match | None = None


def cluster_items(
    docs: Sequence[Doc],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    window: timedelta = timedelta(days=DEFAULT_WINDOW_DAYS),
    together: Collection[tuple[Hashable, Hashable]] = (),
    apart: Collection[tuple[Hashable, Hashable]] = (),
    index: StoryIndex | None = None,
    embed: Embed | None = None,
    semantic_threshold: float = 0.8,
    vectors: Mapping[Hashable, Vector] | None = None,
) -> list[Assignment]:
    """Cluster `docs` in time order (ties: input order); one Assignment per doc, in that order.

    `together` pairs (an editor's merge) always share a story; `apart` pairs (an editor's
    split) never do: a doc never joins a story holding a doc it must stay apart from, and
    a `together` pair is not joined if that would break an `apart` pair. With `embed`
    (see `load_embedder`), or with `vectors` already made (key -> embedding), the semantic
    signal may join what the lexical one misses.
    """
    vectors = dict(vectors or {})
    if embed is not None:
        todo = [d for d in docs if d.key not in vectors]
        made = embed([embed_text(d.title, d.text) for d in todo])
        vectors.update(zip((d.key for d in todo), made, strict=True))
    features = {d.key: extract_features(d.title, d.text) for d in docs}
    if index is None:
        # Word rarity from the whole batch: a two-week slice of a small batch is too few
        # documents to tell a rare word from a common one.
        df: Counter[str] = Counter()
        for f in features.values():
            df.update(f.doc)
        index = StoryIndex(window, vocabulary=(len(docs), df))
    must_apart: dict[Hashable, set[Hashable]] = {}
    for a, b in apart:
        must_apart.setdefault(a, set()).add(b)
        must_apart.setdefault(b, set()).add(a)
    story_of: dict[Hashable, Hashable] = {}
    members: dict[Hashable, list[Hashable]] = {}
    partners: dict[Hashable, list[Hashable]] = {}
    for a, b in together:
        partners.setdefault(a, []).append(b)
        partners.setdefault(b, []).append(a)

    def blocked(key: Hashable) -> set[Hashable]:
        return {story_of[o] for o in must_apart.get(key, ()) if o in story_of}

    out: dict[Hashable, Assignment] = {}
    for doc in sorted(docs, key=lambda d: d.when):
        index.expire(doc.when)
        feats = features[doc.key]
        no = blocked(doc.key)
        story: Hashable | None = None
        match: Match | None = None
        for partner in partners.get(doc.key, ()):
            if partner in story_of and story_of[partner] not in no:
                story = story_of[partner]
                break
        if story is None:
            match = index.match(
                feats,
                threshold,
                exclude=no,
                vector=vectors.get(doc.key),
                semantic_threshold=semantic_threshold,
                origin=doc.origin,
            )
            story = match.story if match is not None else doc.key
        story_of[doc.key] = story
        members.setdefault(story, []).append(doc.key)
        index.add(doc.key, feats, story, doc.when, vectors.get(doc.key), doc.origin)
        out[doc.key] = Assignment(doc.key, story, match)
    return [out[d.key] for d in docs]


@dataclass(frozen=True, slots=True)
class Quality:
    """Pairwise precision and recall: of the pairs put together, how many belong together;
    of the pairs that belong together, how many were put together."""

    true_pairs: int
    predicted_pairs: int
    correct_pairs: int

    @property
    def precision(self) -> float:
        return self.correct_pairs / self.predicted_pairs if self.predicted_pairs else 1.0

    @property
    def recall(self) -> float:
        return self.correct_pairs / self.true_pairs if self.true_pairs else 1.0


def _pairs(groups: Mapping[Hashable, Hashable]) -> set[frozenset[Hashable]]:
    by_group: dict[Hashable, list[Hashable]] = {}
    for key, group in groups.items():
        by_group.setdefault(group, []).append(key)
    pairs: set[frozenset[Hashable]] = set()
    for keys in by_group.values():
        for i, a in enumerate(keys):
            for b in keys[i + 1 :]:
                pairs.add(frozenset((a, b)))
    return pairs


def pairwise_quality(
    gold: Mapping[Hashable, Hashable], predicted: Mapping[Hashable, Hashable]
) -> Quality:
    """Compare two clusterings of the same keys (key -> cluster label)."""
    if set(gold) != set(predicted):
        raise ValueError("gold and predicted must label the same keys")
    true, got = _pairs(gold), _pairs(predicted)
    return Quality(true_pairs=len(true), predicted_pairs=len(got), correct_pairs=len(true & got))


__all__ = [
    "DEFAULT_THRESHOLD",
    "DEFAULT_WINDOW_DAYS",
    "LEAD_CHARS",
    "MODEL",
    "Assignment",
    "Doc",
    "Embed",
    "Features",
    "Match",
    "PairScore",
    "Quality",
    "StoryIndex",
    "Vector",
    "cluster_items",
    "embed_text",
    "extract_features",
    "load_embedder",
    "pack",
    "pairwise_quality",
    "score_pair",
    "unpack",
]
