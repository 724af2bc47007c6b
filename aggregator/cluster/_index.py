"""The window index: items of the last N days, found by their rarest words (pure, in memory).

A new item is never compared with every stored item. Its rarest words (lowest document
frequency in the window), names and numbers are looked up in an inverted index whose posting
lists keep only the most recent `max_postings` items each; the items found most often become
at most `max_candidates` candidates, and only those are scored. So the work per new item is
bounded by `probe_tokens * max_postings` look-ups and `max_candidates` comparisons, however
many items the store holds; items older than the window leave the index (`expire`).

Scoring a candidate is cheap first: word rarity is looked up once per word while the window
stays as it is (`_Weights`), and a candidate is scored in full (`score_pair`) only when the
upper bound of its score (`ScoreBound`) could change the outcome: reach the threshold, beat
the best match so far, or, with a vector and no lexical match yet, pass the semantic
signal's lexical floor. Which story an item joins, and the scores and evidence recorded, are
those of scoring every candidate in full.

Memory (issue 8): an item is kept packed (`Packed`: tuples of interned words, not
frozensets) and posting lists are plain lists, so a 30,000-item window takes about 50 MB
rather than 170 MB; a pair is unpacked only to be scored in full.

`comparisons` counts the candidates compared (bounded or scored), for the flat-cost test and
the benchmark. Imports only the cluster stage's own modules.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from aggregator.cluster._score import PairScore, ScoreBound, score_pair
from aggregator.cluster._semantic import VERIFY_FLOOR, Vector, cosine, verified
from aggregator.cluster._text import Features, Packed, pack_features, unpack_features

DEFAULT_MAX_POSTINGS = 64
DEFAULT_PROBE_TOKENS = 16
DEFAULT_MAX_CANDIDATES = 64
# Pseudo-documents that contain none of the words: with an almost empty window (a first run)
# every word would look common and the weights would swing with the order items come in.
PRIOR_DOCS = 100


@dataclass(slots=True)
class _Entry:
    features: Packed  # compact (issue 8): unpacked only for the few pairs scored in full
    story: Hashable
    when: datetime
    vector: Vector | None = None


@dataclass(frozen=True, slots=True)
class Match:
    """The story an item joins, through which member, and why."""

    story: Hashable
    item: Hashable  # the member it matched best
    pair: PairScore
    cosine: float | None = None  # set when the semantic signal decided

    @property
    def signal(self) -> str:
        return "semantic" if self.cosine is not None else f"lexical:{self.pair.signal}"


class _Weights(dict[str, float]):
    """token -> idf, each computed on first use by `idf` (the same float), until cleared."""

    __slots__ = ("_idf",)

    def __init__(self, idf: Callable[[str], float]) -> None:
        super().__init__()
        self._idf = idf

    def __missing__(self, token: str) -> float:
        value = self[token] = self._idf(token)
        return value


def _keys(features: Features | Packed) -> Iterator[str]:
    yield from features.doc
    for n in features.numbers:
        yield f"#{n}"


class StoryIndex:
    """An inverted index over the items of one time window. Not thread-safe."""

    def __init__(
        self,
        window: timedelta,
        *,
        max_postings: int = DEFAULT_MAX_POSTINGS,
        probe_tokens: int = DEFAULT_PROBE_TOKENS,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        vocabulary: tuple[int, Mapping[str, int]] | None = None,
    ) -> None:
        self.window = window
        # Word rarity: from the window itself, or from a fixed (documents, frequencies)
        # pair, e.g. a whole evaluation batch, whose window alone would be too small.
        # Taken as fixed: a vocabulary must not change while the index uses it.
        self._vocabulary = vocabulary
        # The idf of each token looked up since the window last changed (any add or remove
        # changes the number of items, so every idf; a vocabulary's never changes).
        self._weights = _Weights(self.idf)
        # ScoreBound needs every idf above 0: always so over the window (df <= items), and
        # so over a vocabulary whose frequencies stay below its document count + PRIOR_DOCS.
        self._bounded = vocabulary is None or max(vocabulary[1].values(), default=0) < (
            vocabulary[0] + PRIOR_DOCS + 1
        )
        self.max_postings = max_postings
        self.probe_tokens = probe_tokens
        self.max_candidates = max_candidates
        self._entries: dict[Hashable, _Entry] = {}
        # Lists, not deque(maxlen=): most words are in one or two items, and a one-key list
        # takes 88 bytes where a deque takes 760 (issue 8, memory).
        self._postings: dict[str, list[Hashable]] = {}
        self._df: Counter[str] = Counter()
        # (when, n, key), a heap: items may arrive out of time order (a late feed).
        self._order: list[tuple[datetime, int, Hashable]] = []
        self._seq = itertools.count()
        self.comparisons = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def idf(self, token: str) -> float:
        """log((N + PRIOR_DOCS + 2) / (df + 1)): above 0 for every token, highest for unseen
        ones, and steady while the window is still nearly empty."""
        if self._vocabulary is not None:
            n, df = self._vocabulary
            return math.log((n + PRIOR_DOCS + 2) / (df.get(token, 0) + 1))
        return math.log((len(self._entries) + PRIOR_DOCS + 2) / (self._df[token] + 1))

    def story_of(self, key: Hashable) -> Hashable | None:
        entry = self._entries.get(key)
        return None if entry is None else entry.story

    def add(
        self,
        key: Hashable,
        features: Features,
        story: Hashable,
        when: datetime,
        vector: Vector | None = None,
    ) -> None:
        """Index an item (a key already present is replaced); `vector` is its embedding."""
        if key in self._entries:
            self.remove(key)
        if self._vocabulary is None:
            self._weights.clear()
        self._entries[key] = _Entry(pack_features(features), story, when, vector)
        heapq.heappush(self._order, (when, next(self._seq), key))
        for token in set(_keys(self._entries[key].features)):  # the interned words
            self._df[token] += 1
            postings = self._postings.get(token)
            if postings is None:
                self._postings[token] = [key]
            else:
                postings.append(key)
                if len(postings) > self.max_postings:
                    del postings[0]

    def remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if self._vocabulary is None:
            self._weights.clear()
        for token in set(_keys(entry.features)):
            self._df[token] -= 1
            if self._df[token] <= 0:
                del self._df[token]
                self._postings.pop(token, None)
        # Posting lists drop the key lazily: look-ups skip keys that are gone.

    def move(self, key: Hashable, story: Hashable) -> None:
        """Record that an item now belongs to another story (a merge or a split)."""
        entry = self._entries.get(key)
        if entry is not None:
            entry.story = story

    def expire(self, now: datetime) -> int:
        """Drop the items older than the window before `now`; how many."""
        cutoff = now - self.window
        dropped = 0
        while self._order and self._order[0][0] < cutoff:
            when, _, key = heapq.heappop(self._order)
            entry = self._entries.get(key)
            if entry is not None and entry.when == when:
                self.remove(key)
                dropped += 1
        return dropped

    def candidates(self, features: Features) -> list[Hashable]:
        """The indexed items sharing the most of this item's rarest words and numbers."""
        df, postings, entries, weights = self._df, self._postings, self._entries, self._weights
        # Rarest first, ties by token: sorted by token, then (stable) by document frequency.
        probes = sorted(
            sorted(k for k in set(_keys(features)) if k in postings), key=df.__getitem__
        )
        hits: dict[Hashable, float] = {}
        get = hits.get
        for token in probes[: self.probe_tokens]:
            weight = weights[token]
            for key in postings[token]:
                if key in entries:
                    hits[key] = get(key, 0.0) + weight
        # Most weight first, ties in the order found (a stable sort).
        return sorted(hits, key=hits.__getitem__, reverse=True)[: self.max_candidates]

    def match(
        self,
        features: Features,
        threshold: float,
        *,
        exclude: Collection[Hashable] = (),
        vector: Vector | None = None,
        semantic_threshold: float = 1.0,
    ) -> Match | None:
        """The story whose best member scores highest against `features`, if it reaches
        `threshold`; stories in `exclude` (an editor's split) are never chosen. With a
        `vector`, a candidate below the lexical threshold may still match through the
        semantic signal, if verified (see `_semantic.verified`); lexical matches win."""
        best: Match | None = None
        semantic: Match | None = None
        weights = self._weights
        idf = weights.__getitem__
        bound = ScoreBound(features, weights) if self._bounded else None
        entries = self._entries
        for key in self.candidates(features):
            entry = entries[key]
            if entry.story in exclude:
                continue
            self.comparisons += 1
            semantic_open = best is None and vector is not None and entry.vector is not None
            if bound is not None:
                # The score this candidate must reach to change anything: beat the best
                # match, else reach the threshold, or the semantic floor if it may count.
                if best is not None:
                    floor = best.pair.score
                elif semantic_open:
                    floor = min(threshold, VERIFY_FLOOR)
                else:
                    floor = threshold
                if not bound.reaches(entry.features, floor):
                    continue
            pair = score_pair(features, unpack_features(entry.features), idf)
            if pair.score >= threshold:
                if best is None or pair.score > best.pair.score:
                    best = Match(story=entry.story, item=key, pair=pair)
            elif semantic_open:  # once a lexical match is found, a semantic one never wins
                assert vector is not None and entry.vector is not None
                cos = cosine(vector, entry.vector)
                if verified(pair, cos, semantic_threshold) and (
                    semantic is None or cos > (semantic.cosine or 0.0)
                ):
                    semantic = Match(story=entry.story, item=key, pair=pair, cosine=cos)
        return best or semantic

    def score(self, features: Features, key: Hashable) -> PairScore | None:
        """The pair score against one indexed item (for explaining an editor's merge)."""
        entry = self._entries.get(key)
        return (
            None
            if entry is None
            else score_pair(features, unpack_features(entry.features), self._weights.__getitem__)
        )
