"""The window index: items of the last N days, found by their rarest words (pure, in memory).

A new item is never compared with every stored item. Its rarest words (lowest document
frequency in the window), names and numbers are looked up in an inverted index whose posting
lists keep only the most recent `max_postings` items each; the items found most often become
at most `max_candidates` candidates, and only those are scored. So the work per new item is
bounded by `probe_tokens * max_postings` look-ups and `max_candidates` comparisons, however
many items the store holds; items older than the window leave the index (`expire`).

Scoring a candidate is cheap first: word rarity is looked up once per word while the window
stays as it is (`_Weights`); with many candidates, one numpy pass over all of them
(`_Bags`, `ScoreBound.reaches_many`) rules out those that cannot reach the lowest floor;
each one left is bounded on its own (`ScoreBound.reaches`) and scored in full
(`score_pair`) only when its bound could change the outcome: reach the threshold, beat the
best match so far, or, with a vector and no lexical match yet, pass the semantic signal's
lexical floor. Which story an item joins, and the scores and evidence recorded, are those
of scoring every candidate in full.

Memory and speed (issue 8): an item is kept packed (`Packed`: tuples of interned words, not
frozensets), plus its word ids as C-int bytes for the numpy pass; posting lists are typed
arrays of item slots, read for all of a new item's probe words in one numpy call. A pair
is unpacked only to be scored in full. The benchmark's 30,000 items take 46 MB (tracemalloc),
of which the word ids and the numpy pass's table take 13 MB; as frozensets and deques they
took 170 MB.

`comparisons` counts the candidates compared (ruled out at once, bounded or scored), for
the flat-cost test and the benchmark. Imports only the cluster stage's own modules and numpy.
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections import Counter
from collections.abc import Callable, Collection, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from aggregator.cluster._score import PairScore, ScoreBound, score_pair
from aggregator.cluster._semantic import VERIFY_FLOOR, Vector, cosine, verified
from aggregator.cluster._text import Features, Packed, pack_features, unpack_features

DEFAULT_MAX_POSTINGS = 64
DEFAULT_PROBE_TOKENS = 16
DEFAULT_MAX_CANDIDATES = 64
# Pseudo-documents that contain none of the words: with an almost empty window (a first run)
# every word would look common and the weights would swing with the order items come in.
PRIOR_DOCS = 100
# From how many candidates on `match` rules candidates out in one numpy pass first (issue 8):
# below it, the pass's fixed cost is more than `ScoreBound.reaches` on each.
MANY_CANDIDATES = 8
# Bag ids: an item's names and numbers are kept apart from its words (a name is also a word).
_NAME, _NUMBER = "\x01", "\x02"
# A bag's ids as a C int array's bytes, read back with numpy's integer of the same size.
_BAG_ID = np.dtype(f"i{array('i').itemsize}")


@dataclass(slots=True)
class _Entry:
    features: Packed  # compact (issue 8): unpacked only for the few pairs scored in full
    story: Hashable
    when: datetime
    vector: Vector | None = None
    # the ids of its words, names and numbers (C ints, see _Bags): what the numpy pass sums
    bag: bytes = b""
    slot: int = 0  # its number in the posting lists (a replaced item gets a new one)


class _Bags:
    """Word ids and, per new item, the values the numpy pass sums over a candidate's ids.

    Every word, name and number of an indexed item gets an id on first sight (ids are not
    reused; the index lives for one run). `load` writes a new item's values into the rows
    of its own words, `sums` adds them up over each candidate's bag in one pass, `clear`
    zeroes them again: every other row stays 0, so a candidate's other words add nothing."""

    COLUMNS = 5  # see ScoreBound.reaches_many

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}
        self.values = np.zeros((1024, self.COLUMNS))
        self._loaded: list[int] = []

    def bag(self, features: Packed) -> bytes:
        ids = self.ids
        tokens = [
            *features.doc,
            *(_NAME + n for n in features.names),
            *(_NUMBER + n for n in features.numbers),
        ]
        for token in tokens:
            if token not in ids:
                ids[token] = len(ids)
        if len(ids) > len(self.values):
            grown = np.zeros((2 * len(ids), self.COLUMNS))
            grown[: len(self.values)] = self.values
            self.values = grown
        return array("i", map(ids.__getitem__, tokens)).tobytes()

    def load(self, bound: ScoreBound, numbers: Collection[str]) -> None:
        ids = self.ids
        rows: list[int] = []
        values: list[tuple[float, float, float, float, float]] = []
        for token, doc, title, name in bound.columns():
            i = ids.get(token)
            if i is not None:
                rows.append(i)
                values.append((doc, title, name, 0.0, 0.0))
        for n in bound.rare_names:
            i = ids.get(_NAME + n)
            if i is not None:
                rows.append(i)
                values.append((0.0, 0.0, 0.0, 1.0, 0.0))
        for n in numbers:
            i = ids.get(_NUMBER + n)
            if i is not None:
                rows.append(i)
                values.append((0.0, 0.0, 0.0, 0.0, 1.0))
        if rows:  # every id once: words, names and numbers have ids of their own
            self.values[rows] = values
            self._loaded = rows

    def sums(self, bags: list[bytes]) -> np.ndarray | None:
        """Per bag, the column sums of the loaded values over its ids; None if a bag is
        empty (`np.add.reduceat` cannot express an empty segment)."""
        lengths = np.fromiter(map(len, bags), np.int64, len(bags)) // _BAG_ID.itemsize
        if not lengths.all():
            return None
        starts = np.zeros(len(bags), np.int64)
        np.cumsum(lengths[:-1], out=starts[1:])
        ids = np.frombuffer(b"".join(bags), _BAG_ID).astype(np.intp)
        result: np.ndarray = np.add.reduceat(np.take(self.values, ids, axis=0), starts, axis=0)
        return result

    def clear(self) -> None:
        if self._loaded:
            self.values[self._loaded] = 0.0
            self._loaded = []


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
        # token -> the slots of the items holding it, oldest first: typed arrays, so that
        # `candidates` reads all of a new item's lists with numpy in one go, and small (a
        # one-item array takes 72 bytes, a deque(maxlen=) 760) (issue 8).
        self._postings: dict[str, array[int]] = {}
        # slot -> key, and whether that slot is still indexed (posting lists drop a removed
        # item's slot lazily: look-ups skip the dead ones)
        self._slot_keys: list[Hashable] = []
        self._alive = np.zeros(1024, np.bool_)
        self._df: Counter[str] = Counter()
        # (when, n, key), a heap: items may arrive out of time order (a late feed).
        self._order: list[tuple[datetime, int, Hashable]] = []
        self._seq = itertools.count()
        self._bags = _Bags()
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
        packed = pack_features(features)
        slot = next(self._seq)
        self._entries[key] = _Entry(packed, story, when, vector, self._bags.bag(packed), slot)
        self._slot_keys.append(key)
        if slot >= len(self._alive):
            self._alive = np.concatenate((self._alive, np.zeros_like(self._alive)))
        self._alive[slot] = True
        heapq.heappush(self._order, (when, slot, key))
        for token in set(_keys(packed)):  # the interned words
            self._df[token] += 1
            postings = self._postings.get(token)
            if postings is None:
                self._postings[token] = array("q", (slot,))
            else:
                postings.append(slot)
                if len(postings) > self.max_postings:
                    del postings[0]

    def remove(self, key: Hashable) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if self._vocabulary is None:
            self._weights.clear()
        self._alive[entry.slot] = False
        self._slot_keys[entry.slot] = None
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
        return self.candidates_many([features])[0]

    def candidates_many(self, batch: Sequence[Features]) -> list[list[Hashable]]:
        """`candidates` of each item of `batch`, in one numpy pass over all their postings
        (issue 8: a source's new items are matched against the same window)."""
        df, postings, weights = self._df, self._postings, self._weights
        lists: list[array[int]] = []
        probe_weights: list[float] = []
        per_item: list[int] = []  # how many postings each item reads
        for features in batch:
            # Rarest first, ties by token: sorted by token, then (stable) by document frequency.
            probes = sorted(
                sorted(k for k in set(_keys(features)) if k in postings), key=df.__getitem__
            )[: self.probe_tokens]
            mine = [postings[token] for token in probes]
            lists += mine
            probe_weights += [weights[t] for t in probes]
            per_item.append(sum(map(len, mine)))
        found: list[list[Hashable]] = [[] for _ in batch]
        if not lists:
            return found
        # Every posting of every probe, in probe order, with its probe's weight and item.
        slots = np.frombuffer(b"".join(lists), np.int64)
        weight = np.repeat(np.array(probe_weights), list(map(len, lists)))
        item = np.repeat(np.arange(len(batch), dtype=np.int64), per_item)
        alive = self._alive[slots]
        if not alive.all():
            slots, weight, item = slots[alive], weight[alive], item[alive]
        if not len(slots):
            return found
        # Per (item, indexed item): the weight summed in the order found (as a loop over the
        # lists would add it up: the same float), and where it was first found.
        stride = len(self._slot_keys)
        pairs, first, where = np.unique(
            item * stride + slots, return_index=True, return_inverse=True
        )
        hits = np.bincount(where, weights=weight, minlength=len(pairs))
        owner = pairs // stride
        # By item; in each, most weight first, ties in the order found; the first few.
        order = np.lexsort((first, -hits, owner))
        owner = owner[order]
        rank = np.arange(len(order)) - np.searchsorted(owner, owner)
        kept = pairs[order[rank < self.max_candidates]]
        keys = self._slot_keys
        for n, slot in zip((kept // stride).tolist(), (kept % stride).tolist(), strict=True):
            found[n].append(keys[slot])
        return found

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
        return self._match(
            features, self.candidates(features), threshold, exclude, vector, semantic_threshold
        )

    def match_many(
        self,
        batch: Sequence[tuple[Features, Vector | None]],
        threshold: float,
        *,
        semantic_threshold: float = 1.0,
    ) -> list[Match | None]:
        """`match` for each (features, vector) of `batch` against the index as it is
        (nothing is added between them), the candidates found in one pass."""
        found = self.candidates_many([features for features, _ in batch])
        return [
            self._match(features, candidates, threshold, (), vector, semantic_threshold)
            for (features, vector), candidates in zip(batch, found, strict=True)
        ]

    def _match(
        self,
        features: Features,
        candidates: list[Hashable],
        threshold: float,
        exclude: Collection[Hashable],
        vector: Vector | None,
        semantic_threshold: float,
    ) -> Match | None:
        best: Match | None = None
        semantic: Match | None = None
        weights = self._weights
        idf = weights.__getitem__
        bound = ScoreBound(features, weights) if self._bounded else None
        entries = self._entries
        if exclude:
            candidates = [k for k in candidates if entries[k].story not in exclude]
        self.comparisons += len(candidates)
        if bound is not None and len(candidates) >= MANY_CANDIDATES:
            # One numpy pass first (issue 8): out go the candidates that cannot reach the
            # lowest floor any of them will face (the threshold, or the semantic floor).
            lowest = min(threshold, VERIFY_FLOOR) if vector is not None else threshold
            candidates = self._may_reach(bound, features, candidates, lowest)
        for key in candidates:
            entry = entries[key]
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

    def _may_reach(
        self, bound: ScoreBound, features: Features, keys: list[Hashable], floor: float
    ) -> list[Hashable]:
        """`keys` less those `bound.reaches_many` rules out, in the same order."""
        bags = self._bags
        bags.load(bound, features.numbers)
        try:
            sums = bags.sums([self._entries[k].bag for k in keys])
        finally:
            bags.clear()
        if sums is None:
            return keys
        return list(itertools.compress(keys, bound.reaches_many(sums, floor).tolist()))

    def score(self, features: Features, key: Hashable) -> PairScore | None:
        """The pair score against one indexed item (for explaining an editor's merge)."""
        entry = self._entries.get(key)
        return (
            None
            if entry is None
            else score_pair(features, unpack_features(entry.features), self._weights.__getitem__)
        )
