"""The window index: items of the last N days, found by their rarest words (pure, in memory).

A new item is never compared with every stored item. Its rarest words (lowest document
frequency in the window), names and numbers are looked up in an inverted index whose posting
lists keep only the most recent `max_postings` items each; the items found most often become
at most `max_candidates` candidates, and only those are scored. So the work per new item is
bounded by `probe_tokens * max_postings` look-ups and `max_candidates` comparisons, however
many items the store holds; items older than the window leave the index (`expire`).

Scoring a candidate is cheap first (issue 8): a source's new items are matched together
(`match_many`). One numpy pass over all their candidates (`_columns`, `_score.upper_bounds`)
gives every pair an upper bound of its score from the ids of both items' words (`_Bags`);
out go the pairs that cannot reach the lowest floor they will face or whose names conflict
(`_score.names_conflict`: they never join), and of the rest a pair is scored in full
(`score_pair`) only when its bound could still change the outcome: reach the threshold, beat
the best match so far, or, with a vector and no lexical match yet, pass the semantic
signal's lexical floor. Word rarity is looked up once per word while the window stays as it
is (`_Weights`). Which story an item joins, and the scores and evidence recorded, are those
of scoring every candidate in full.

Memory and speed (issue 8): an item's words are kept once, as ids in `_Bags`' flat C-int
arrays (which the numpy pass reads); its Features are rebuilt from them (`_Bags.features`)
only for a pair scored in full. Posting lists are typed arrays of item slots, read for all
of a batch's probe words in one numpy call. The benchmark's 30,000 items take 28 MB
(tracemalloc); with a packed copy of each item's words as well they took 48 MB, as
frozensets and deques 170 MB.

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
from itertools import repeat
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from aggregator.cluster._score import (
    A_COLUMNS,
    A_DOC,
    A_STATES,
    A_TITLE,
    A_TITLE_NAMES,
    A_YEARS,
    B_DOC,
    B_STATES,
    B_TITLE,
    B_TITLE_NAMES,
    B_TITLE_NAMES_FOUND,
    B_TITLE_SHARED,
    B_YEARS,
    NUMBERS,
    PAIR_COLUMNS,
    RARE_IDF,
    RARE_NAMES,
    SHARED,
    SHARED_TITLE,
    SLACK,
    STATES,
    TITLE_NAMES_FOUND,
    YEARS,
    PairScore,
    names_conflict,
    score_pair,
    upper_bounds,
)
from aggregator.cluster._semantic import VERIFY_FLOOR, Vector, cosine, verified
from aggregator.cluster._text import Features

DEFAULT_MAX_POSTINGS = 64
DEFAULT_PROBE_TOKENS = 16
# 32 since issue 8's names-conflict rule: with it, no candidate ranked 33rd to 64th decided
# anything on the labelled sets, the real corpus's feeds (6,196 items) or the benchmark's
# corpus (30,000 items, checked against its truth), and matching costs 0.84 of what it did.
DEFAULT_MAX_CANDIDATES = 32
# Pseudo-documents that contain none of the words: with an almost empty window (a first run)
# every word would look common and the weights would swing with the order items come in.
PRIOR_DOCS = 100
# Bag ids: an item's names, numbers, years and states are kept apart from its words (a name
# is also a word, and so may a number be).
_NAME, _NUMBER, _YEAR, _STATE, _EPISODE = "\x01", "\x02", "\x03", "\x04", "\x05"
# The ids as C ints, read with numpy's integer of the same size.
_BAG_ID = np.dtype(f"i{array('i').itemsize}")
# Per slot, how many ids of each part `_Bags` keeps, in this order (the bag's words come
# first in it, then its names, numbers, years and states).
_BAG, _TITLE, _TITLE_NAMES, _YEARS, _STATES, _WORDS = range(6)
_SIZES = 6
# Each kept id's part, as `_Bags.gather` tells it: _BAG (the bag's words), _TITLE,
# _TITLE_NAMES, or this (the bag's names, numbers, years and states).
_BAG_OTHERS = 3
# The columns of a new item's tokens in `StoryIndex._columns`, in the order it lists them;
# they are also the columns' numbers, so each one's count sits at its own index.
_A_ORDER = (SHARED, SHARED_TITLE, TITLE_NAMES_FOUND, RARE_NAMES, NUMBERS, YEARS, STATES)
assert tuple(range(len(_A_ORDER))) == _A_ORDER


@dataclass(slots=True)
class _Entry:
    # An item's words are kept only as ids in `_Bags` (issue 8), rebuilt into its Features
    # (`_Bags.features`) for the few pairs scored in full.
    story: Hashable
    when: datetime
    vector: Vector | None = None
    slot: int = 0  # its number in the posting lists and `_Bags` (a replaced item gets a new one)


def _take(values: array[int], dtype: np.dtype[Any], at: Any, width: int = 1) -> Any:
    """`values[at]` through numpy, as a copy (rows of `width` if above 1): the view on the
    array's buffer is gone on return, as it must be before the array grows again."""
    view = np.frombuffer(values, dtype)
    try:
        return (view.reshape(-1, width) if width > 1 else view)[at]
    finally:
        del view


class _Bags:
    """Every indexed item's word ids, for the numpy pass of `StoryIndex._columns` (issue 8).

    Every word, name, number, year and state of an indexed item gets an id on first sight
    (ids are not reused; the index lives for one run). Per slot, in one flat C-int array:
    its bag (the ids of its words, then of its names, numbers, years and states), then its
    headline's words, then its headline's names; `start` and `sizes` say where. So the ids
    of many candidates are gathered with a few numpy calls, and no Python object is kept per
    item. `df` is each word's document frequency by id, as `StoryIndex.idf` counts it.
    Slots are added in order (0, 1, 2, ...); all of it is typed arrays, appended to."""

    def __init__(self, vocabulary: Mapping[str, int] | None) -> None:
        self.ids: dict[str, int] = {}
        self.words: list[str] = []  # id -> token (`ids` the other way)
        self.flat = array("i")
        self.parts = array("b")  # each id's part of its slot, as `gather` tells it
        self.start = array("q")  # per slot
        self.sizes = array("q")  # per slot, _SIZES of them: see _BAG .. _WORDS
        self.df = array("q")  # per id
        self._local = np.full(1024, -1, np.int64)
        self._vocabulary = vocabulary  # a fixed df: set once per word, never counted
        self._logs = np.zeros(0)  # log(n + 1) for n = 0, 1, ...: see `log_df`

    def _id(self, token: str) -> int:
        found = self.ids.get(token)
        if found is None:
            found = self.ids[token] = len(self.ids)
            self.words.append(token)
            vocabulary = self._vocabulary
            self.df.append(0 if vocabulary is None else vocabulary.get(token, 0))
        return found

    def add(self, slot: int, f: Features) -> None:
        title_names = f.title & f.names
        tokens = [
            *f.doc,
            *(_NAME + n for n in f.names),
            *(_NUMBER + n for n in f.numbers),
            *(_EPISODE + e for e in f.episodes),
            *(_YEAR + y for y in f.years),
            *(_STATE + s for s in f.states),
            *f.title,
            *title_names,
        ]
        known = list(map(self.ids.get, tokens))
        ids = (
            [self._id(t) if i is None else i for i, t in zip(known, tokens, strict=True)]
            if None in known
            else cast(list[int], known)
        )
        bag = len(ids) - len(f.title) - len(title_names)
        assert slot == len(self.start), "slots are added in order"
        self.start.append(len(self.flat))
        self.sizes.extend(
            (bag, len(f.title), len(title_names), len(f.years), len(f.states), len(f.doc))
        )
        self.flat.extend(ids)
        self.parts.frombytes(
            b"%c" % _BAG * len(f.doc)
            + b"%c" % _BAG_OTHERS * (bag - len(f.doc))
            + b"%c" % _TITLE * len(f.title)
            + b"%c" % _TITLE_NAMES * len(title_names)
        )
        if self._vocabulary is None:
            df = self.df
            for i in ids[: len(f.doc)]:
                df[i] += 1

    def _tokens(self, slot: int) -> tuple[list[str], int]:
        """A slot's tokens as `add` listed them, but its headline's names; and its _SIZES."""
        start, at = self.start[slot], slot * _SIZES
        bag, title = self.sizes[at + _BAG], self.sizes[at + _TITLE]
        words = self.words
        return [words[i] for i in self.flat[start : start + bag + title]], at

    def features(self, slot: int) -> Features:
        """The Features a slot was added with (equal sets, built in the order they were
        listed in, as `frozenset` of a tuple of them would be)."""
        tokens, at = self._tokens(slot)
        sizes = self.sizes
        bag, doc = sizes[at + _BAG], sizes[at + _WORDS]
        states = bag - sizes[at + _STATES]
        years = states - sizes[at + _YEARS]
        marked = tokens[doc:years]  # the names, numbers and episodes, each behind its mark
        return Features(
            title=frozenset(tokens[bag:]),
            doc=frozenset(tokens[:doc]),
            names=frozenset(t[1:] for t in marked if t[0] == _NAME),
            numbers=frozenset(t[1:] for t in marked if t[0] == _NUMBER),
            years=frozenset(t[1:] for t in tokens[years:states]),
            states=frozenset(t[1:] for t in tokens[states:bag]),
            episodes=frozenset(t[1:] for t in marked if t[0] == _EPISODE),
        )

    def keys(self, slot: int) -> set[str]:
        """`_keys` of the Features a slot was added with, as a set."""
        tokens, at = self._tokens(slot)
        doc = self.sizes[at + _WORDS]
        numbers = (t for t in tokens[doc : self.sizes[at + _BAG]] if t[0] == _NUMBER)
        return {*tokens[:doc], *(f"#{t[1:]}" for t in numbers)}

    def remove(self, slot: int) -> None:
        if self._vocabulary is None:
            start, df = self.start[slot], self.df
            for i in self.flat[start : start + self.sizes[slot * _SIZES + _WORDS]]:
                df[i] -= 1

    def local(self) -> npt.NDArray[np.int64]:
        """An array with an entry per id, every one -1: a caller sets the ones it needs and
        sets them back to -1 (so no batch fills an array the size of the vocabulary)."""
        if len(self._local) < len(self.ids):
            self._local = np.full(max(len(self.ids), 2 * len(self._local)), -1, np.int64)
        return self._local

    def log_df(self, ids: npt.NDArray[np.int32]) -> npt.NDArray[np.float64]:
        """log(df + 1) of each id's word, looked up in a table of logs (a document
        frequency is a small whole number) instead of computed per occurrence."""
        df = _take(self.df, np.dtype(np.int64), ids)
        if len(df) and df.max() >= len(self._logs):
            size = max(2 * len(self._logs), int(df.max()) + 1, 1024)
            self._logs = np.log(np.arange(size) + 1.0)
        logs: npt.NDArray[np.float64] = self._logs[df]
        return logs

    def gather(
        self, slots: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.intp], npt.NDArray[np.int8]]:
        """Every id kept for each of `slots` (its bag, headline words and headline names);
        for each id, the position of its slot in `slots`, and its part (_BAG for a word of
        the bag, _BAG_OTHERS, _TITLE or _TITLE_NAMES)."""
        sizes = _take(self.sizes, np.dtype(np.int64), slots, _SIZES)
        lengths = sizes[:, _BAG] + sizes[:, _TITLE] + sizes[:, _TITLE_NAMES]
        owner = np.repeat(np.arange(len(slots)), lengths)
        # each id's place in `flat`: its slot's start, plus how far into the slot it is
        starts = _take(self.start, np.dtype(np.int64), slots)
        into = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
        into += np.arange(len(into))
        return _take(self.flat, _BAG_ID, into), owner, _take(self.parts, np.dtype(np.int8), into)


def _unique_first(
    keys: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """`np.unique(keys, return_index=True, return_inverse=True)` of keys >= 0, the same
    arrays, from one sort of the keys with each one's position in its low bits instead of a
    stable argsort and the gathers after it (issue 8): a source's 23,000 postings took 0.9 ms
    that way, about a third of it this way (the same arrays over random keys, tested).
    The sort is numpy's stable one (timsort), though the values are distinct: the keys come
    as runs in ascending order (each posting list holds its slots oldest first), which it
    merges instead of sorting afresh, 0.22 s instead of 0.69 s over the benchmark's 1,000
    sources."""
    n = len(keys)
    shift = max(n - 1, 1).bit_length()
    if not n or int(keys.max()) >> (62 - shift):  # no room for the positions: numpy's way
        pairs, first, where = np.unique(keys, return_index=True, return_inverse=True)
        return pairs, first, where
    # by key, and among equal keys by position: each key's first place comes first
    order = (keys << shift) | np.arange(n)
    order.sort(kind="stable")  # for its runs (see above), not for its stability
    place = order & ((1 << shift) - 1)
    ordered = order >> shift
    starts = np.empty(n, np.bool_)
    starts[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts[1:])
    where = np.empty(n, np.intp)
    where[place] = np.cumsum(starts) - 1
    begin = np.flatnonzero(starts)
    return ordered[begin], place[begin], where


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


def _keys(features: Features) -> Iterator[str]:
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
        # upper_bounds needs every idf above 0: always so over the window (df <= items), and
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
        # slot -> its item's origin (a number per origin, -1: none): an item never joins a
        # story through an item of its own origin (its source)
        self._origin = np.full(1024, -1, np.int32)
        self._origins: dict[Hashable, int] = {}
        self._df: Counter[str] = Counter()
        # (when, n, key), a heap: items may arrive out of time order (a late feed).
        self._order: list[tuple[datetime, int, Hashable]] = []
        self._seq = itertools.count()
        self._bags = _Bags(None if vocabulary is None else vocabulary[1])
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
        origin: Hashable | None = None,
    ) -> None:
        """Index an item (a key already present is replaced); `vector` is its embedding,
        `origin` where it comes from (its source): see `match`."""
        if key in self._entries:
            self.remove(key)
        if self._vocabulary is None:
            self._weights.clear()
        slot = next(self._seq)
        self._entries[key] = _Entry(story, when, vector, slot)
        self._bags.add(slot, features)
        self._slot_keys.append(key)
        if slot >= len(self._alive):
            self._alive = np.concatenate((self._alive, np.zeros_like(self._alive)))
            self._origin = np.concatenate((self._origin, np.full_like(self._origin, -1)))
        self._alive[slot] = True
        if origin is not None:
            self._origin[slot] = self._origins.setdefault(origin, len(self._origins))
        heapq.heappush(self._order, (when, slot, key))
        for token in set(_keys(features)):
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
        self._bags.remove(entry.slot)
        for token in self._bags.keys(entry.slot):
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

    def candidates(self, features: Features, origin: Hashable | None = None) -> list[Hashable]:
        """The indexed items sharing the most of this item's rarest words and numbers (none
        of the same `origin`)."""
        return self.candidates_many([features], origin)[0]

    def candidates_many(
        self, batch: Sequence[Features], origin: Hashable | None = None
    ) -> list[list[Hashable]]:
        """`candidates` of each item of `batch`, in one numpy pass over all their postings
        (issue 8: a source's new items are matched against the same window)."""
        owner, slots = self._candidate_slots(batch, origin)
        found: list[list[Hashable]] = [[] for _ in batch]
        keys = self._slot_keys
        for n, slot in zip(owner.tolist(), slots.tolist(), strict=True):
            found[n].append(keys[slot])
        return found

    def _candidate_slots(
        self, batch: Sequence[Features], origin: Hashable | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """The candidates of every item of `batch` as (its item's position, its slot) pairs,
        by item, each item's in the order `candidates` gives them; an item of `origin` is
        none (it is not there for them)."""
        df, postings, weights = self._df, self._postings, self._weights
        # a probe's weight is `idf`'s (the same float): over the window, computed here, as
        # the window changes with every item added and a cache would hold each for one batch
        top = len(self._entries) + PRIOR_DOCS + 2 if self._vocabulary is None else None
        log = math.log
        lists: list[array[int]] = []
        probe_weights: list[float] = []
        per_item: list[int] = []  # how many postings each item reads
        for features in batch:
            # Rarest first, ties by token: sorted by token, then (stable) by document frequency.
            keys = features.doc
            if features.numbers:  # `_keys`, as a set
                keys = keys | {f"#{n}" for n in features.numbers}
            found = [k for k in keys if k in postings]
            found.sort()
            found.sort(key=df.__getitem__)
            probes = found[: self.probe_tokens]
            mine = [postings[token] for token in probes]
            lists += mine
            if top is None:
                probe_weights += [weights[t] for t in probes]
            else:
                probe_weights += [log(top / (df[t] + 1)) for t in probes]
            per_item.append(sum(map(len, mine)))
        none = np.zeros(0, np.int64)
        if not lists:
            return none, none
        # Every posting of every probe, in probe order, with its probe's weight and item.
        slots = np.frombuffer(b"".join(lists), np.int64)
        weight = np.repeat(np.array(probe_weights), list(map(len, lists)))
        item = np.repeat(np.arange(len(batch), dtype=np.int64), per_item)
        alive = self._alive[slots]
        own = self._origins.get(origin) if origin is not None else None
        if own is not None:
            alive &= self._origin[slots] != own
        if not alive.all():
            slots, weight, item = slots[alive], weight[alive], item[alive]
        if not len(slots):
            return none, none
        # Per (item, indexed item): the weight summed in the order found (as a loop over the
        # lists would add it up: the same float), and where it was first found.
        stride = len(self._slot_keys)
        pairs, first, where = _unique_first(item * stride + slots)
        hits = np.bincount(where, weights=weight, minlength=len(pairs))
        owner = pairs // stride
        # Only an item's max_candidates heaviest can be kept: the pairs below its
        # max_candidates-th weight go before the sort (18% stay on the benchmark).
        most = self.max_candidates
        ends = np.searchsorted(owner, np.arange(len(batch) + 1)).tolist()
        floor = np.full(len(batch), -np.inf)
        for n, (begin, end) in enumerate(itertools.pairwise(ends)):
            if end - begin > most:
                floor[n] = np.partition(hits[begin:end], end - begin - most)[end - begin - most]
        heavy = np.flatnonzero(hits >= floor[owner])
        pairs, first, hits, owner = pairs[heavy], first[heavy], hits[heavy], owner[heavy]
        # By item; in each, most weight first, ties in the order found; the first few.
        order = np.lexsort((first, -hits, owner))
        owner = owner[order]
        rank = np.arange(len(order)) - np.searchsorted(owner, owner)
        kept = pairs[order[rank < most]]
        return kept // stride, kept % stride

    def match(
        self,
        features: Features,
        threshold: float,
        *,
        exclude: Collection[Hashable] = (),
        vector: Vector | None = None,
        semantic_threshold: float = 1.0,
        origin: Hashable | None = None,
    ) -> Match | None:
        """The story whose best member scores highest against `features`, if it reaches
        `threshold`; stories in `exclude` (an editor's split) are never chosen. With a
        `vector`, a candidate below the lexical threshold may still match through the
        semantic signal, if verified (see `_semantic.verified`); lexical matches win.
        Items of the same `origin` (a source) are never candidates: an outlet's two items are
        two articles (a podcast's episodes, a series' parts, a follow-up), and a story shows
        each outlet once, so joining them would hide one."""
        return self.match_many(
            [(features, vector)],
            threshold,
            exclude=exclude,
            semantic_threshold=semantic_threshold,
            origin=origin,
        )[0]

    def match_many(
        self,
        batch: Sequence[tuple[Features, Vector | None]],
        threshold: float,
        *,
        exclude: Collection[Hashable] = (),
        semantic_threshold: float = 1.0,
        origin: Hashable | None = None,
    ) -> list[Match | None]:
        """`match` for each (features, vector) of `batch` (all of one `origin`) against the
        index as it is (nothing is added between them): the candidates found and bounded in
        one pass."""
        features = [f for f, _ in batch]
        owner, slots = self._candidate_slots(features, origin)
        if exclude and len(slots):
            keys, entries = self._slot_keys, self._entries
            kept = np.array([entries[keys[s]].story not in exclude for s in slots.tolist()], bool)
            owner, slots = owner[kept], slots[kept]
        self.comparisons += len(slots)
        bounds: npt.NDArray[np.float64] | None = None
        if self._bounded and len(slots):
            pairs, own = self._columns(features, owner, slots)
            bounds = upper_bounds(pairs, own)
            # out at once, the candidates that cannot reach the lowest floor any of them will
            # face (the threshold, or the semantic signal's floor for an item with a vector),
            # and those whose names conflict (they never join, nor pass the semantic check)
            lowest = np.array(
                [threshold if v is None else min(threshold, VERIFY_FLOOR) for _, v in batch]
            )
            kept = (bounds >= lowest[owner] - SLACK) & ~names_conflict(pairs, own)
            owner, slots, bounds = owner[kept], slots[kept], bounds[kept]
        ends = np.searchsorted(owner, np.arange(len(batch)), side="right").tolist()
        found: list[Match | None] = []
        begin = 0
        for (item, vector), end in zip(batch, ends, strict=True):
            mine = slots[begin:end].tolist()
            limits = bounds[begin:end].tolist() if bounds is not None else None
            found.append(self._decide(item, mine, limits, threshold, vector, semantic_threshold))
            begin = end
        return found

    def _decide(
        self,
        features: Features,
        slots: list[int],
        bounds: list[float] | None,
        threshold: float,
        vector: Vector | None,
        semantic_threshold: float,
    ) -> Match | None:
        """The match among one item's candidates (`slots`, in order), scoring in full only
        those whose bound could change the outcome."""
        if bounds is not None and vector is None:
            return self._best_first(features, slots, bounds, threshold)
        best: Match | None = None
        semantic: Match | None = None
        idf = self._weights.__getitem__
        entries, keys = self._entries, self._slot_keys
        for n, slot in enumerate(slots):
            key = keys[slot]
            entry = entries[key]
            semantic_open = best is None and vector is not None and entry.vector is not None
            if bounds is not None:
                # The score this candidate must reach to change anything: beat the best
                # match, else reach the threshold, or the semantic floor if it may count.
                if best is not None:
                    floor = best.pair.score
                elif semantic_open:
                    floor = min(threshold, VERIFY_FLOOR)
                else:
                    floor = threshold
                if bounds[n] < floor - SLACK:
                    continue
            pair = score_pair(features, self._bags.features(entry.slot), idf)
            if pair.joins(threshold):
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

    def _best_first(
        self, features: Features, slots: list[int], bounds: list[float], threshold: float
    ) -> Match | None:
        """`_decide` without the semantic signal: the candidates visited from the highest
        bound down, so that the best is usually scored first and the rest need not be. The
        same match as in candidate order: the highest score, the earliest on a tie."""
        best: Match | None = None
        first = 0  # the best's place among the candidates
        idf = self._weights.__getitem__
        for n in sorted(range(len(slots)), key=bounds.__getitem__, reverse=True):
            if bounds[n] < (threshold if best is None else best.pair.score) - SLACK:
                break  # neither this one nor any after it can reach the floor
            key = self._slot_keys[slots[n]]
            entry = self._entries[key]
            pair = score_pair(features, self._bags.features(entry.slot), idf)
            if pair.joins(threshold) and (
                best is None
                or pair.score > best.pair.score
                or (pair.score == best.pair.score and n < first)
            ):
                best, first = Match(story=entry.story, item=key, pair=pair), n
        return best

    def _columns(
        self, batch: Sequence[Features], owner: npt.NDArray[np.int64], slots: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """`upper_bounds`' two arguments for the pairs (batch[owner[n]], slots[n]): the
        PAIR_COLUMNS of each pair and the A_COLUMNS of its new item (see `_score`).

        A's side is a table with a row per (item, id) of the batch's items, found through
        two dense maps (id -> its number among the batch's ids, (item, number) -> row); each
        distinct candidate's ids are gathered once, those among the batch's ids looked up in
        it for every pair the candidate is in, and the rows found summed per pair. Weights are
        `idf`'s, computed with numpy's log (see SLACK)."""
        bags, ids = self._bags, self._bags.ids
        if self._vocabulary is not None:
            docs, df = self._vocabulary[0], self._vocabulary[1]
        else:
            docs, df = len(self._entries), self._df
        top = docs + PRIOR_DOCS + 2

        # A's side: per item, its tokens by column (in the order of `order`, each column's
        # count at its own index of `counts`), and the words of those whose value is a
        # weight (a name's weight is its word's).
        order = np.asarray(_A_ORDER)
        tokens: list[str] = []
        weighed: list[str] = []
        counts = np.zeros((len(batch), len(order)), np.int64)
        for n, a in enumerate(batch):
            title_names = a.title & a.names
            tokens += a.doc
            tokens += a.title
            tokens += title_names
            tokens += [_NAME + m for m in a.names]  # rare or not: decided below, by weight
            tokens += [_NUMBER + m for m in a.numbers]
            tokens += [_YEAR + y for y in a.years]
            tokens += [_STATE + s for s in a.states]
            weighed += a.doc
            weighed += a.title
            weighed += a.names
            counts[n] = (
                len(a.doc),
                len(a.title),
                len(title_names),
                len(a.names),
                len(a.numbers),
                len(a.years),
                len(a.states),
            )
        consts = np.zeros((len(batch), A_COLUMNS))
        consts[:, A_TITLE_NAMES] = counts[:, TITLE_NAMES_FOUND]
        consts[:, A_YEARS] = counts[:, YEARS]
        consts[:, A_STATES] = counts[:, STATES]
        item = np.repeat(np.arange(len(batch)), counts.sum(axis=1))
        column = np.repeat(np.tile(order, len(batch)), counts.ravel())
        # every weight, even of a word the window lacks (so a's whole text is weighed)
        value = np.ones(len(tokens))
        weights = (column == SHARED) | (column == SHARED_TITLE) | (column == RARE_NAMES)
        found_df = np.fromiter(map(df.get, weighed, repeat(0)), np.float64, len(weighed))
        value[weights] = np.log(top / (found_df + 1))
        words = column == SHARED
        consts[:, A_DOC] = np.bincount(item[words], value[words], len(batch))
        heads = column == SHARED_TITLE
        consts[:, A_TITLE] = np.bincount(item[heads], value[heads], len(batch))
        # a name counts only if rare (a margin of SLACK: a bound may count one too many)
        names = column == RARE_NAMES
        value[names] = value[names] >= RARE_IDF - SLACK
        token_ids = np.fromiter(map(ids.get, tokens, repeat(-1)), np.int64, len(tokens))
        known = (token_ids >= 0) & (value != 0)
        # a's side, a row per (item, id) (ids numbered 0..n-1 in `local`), found by `row`
        a_ids, local_id = np.unique(token_ids[known], return_inverse=True)
        block = len(a_ids) + 1  # an item's ids, and one more that is never a row
        keys, where = np.unique(item[known] * block + local_id, return_inverse=True)
        row = np.full(len(batch) * block, -1, np.int64)
        row[keys] = np.arange(len(keys))
        # each row's values: its weight in a's text and headline, whether it is one of the
        # headline's names, and which count it adds to if it is a name, number, year or state
        column, value = column[known], value[known]
        of = (where[column == c] for c in (SHARED, SHARED_TITLE, TITLE_NAMES_FOUND))
        in_text, in_head, head_name = (
            np.bincount(w, value[column == c], len(keys))
            for w, c in zip(of, (SHARED, SHARED_TITLE, TITLE_NAMES_FOUND), strict=True)
        )
        kind = np.zeros(len(keys), np.int64)
        counted = column >= RARE_NAMES
        kind[where[counted]] = column[counted]

        # A slot is often the candidate of several of the batch's items (2.5 times over the
        # benchmark): its ids are gathered, and b's weights summed, once per distinct slot.
        distinct, slot_of = np.unique(slots, return_inverse=True)
        found, holder, part = bags.gather(distinct)
        pairs = np.zeros((len(slots), PAIR_COLUMNS))
        # the weight of b's text and headline, from the window's document frequencies
        b_words = part <= _TITLE
        # log(top) - log(df + 1): idf's log(top / (df + 1)) up to rounding (see SLACK)
        b_weight = math.log(top) - bags.log_df(found[b_words])
        both = np.bincount(holder[b_words] * 2 + part[b_words], b_weight, 2 * len(distinct))
        pairs[:, B_DOC] = both[_BAG::2][slot_of]
        pairs[:, B_TITLE] = both[_TITLE::2][slot_of]
        # Of a slot's ids, only those one of the batch's items has can be a's (`local` maps the
        # others to -1); each pair takes its slot's, in order, and looks up its item's
        # row for each (-1: its item lacks that id).
        local = bags.local()
        local[a_ids] = np.arange(len(a_ids))
        number = local[found]
        local[a_ids] = -1  # as `bags.local()` hands it out
        kept = np.flatnonzero(number >= 0)
        number, holder, part = number[kept], holder[kept], part[kept]
        per_slot = np.bincount(holder, minlength=len(distinct))
        lengths = per_slot[slot_of]
        pair = np.repeat(np.arange(len(slots)), lengths)
        # each kept id's place in `number`: its slot's first, plus how far into the slot
        starts = np.cumsum(per_slot) - per_slot
        into = np.repeat(starts[slot_of] - (np.cumsum(lengths) - lengths), lengths)
        into += np.arange(len(into))
        at = row[owner[pair] * block + number[into]]
        part = part[into]
        hit = np.flatnonzero(at >= 0)
        at, pair, part = at[hit], pair[hit], part[hit]
        # over b's bag: a's words, headline words and headline names found, and the counts
        bag = (part == _BAG) | (part == _BAG_OTHERS)
        mine, rows_of = pair[bag], at[bag]
        pairs[:, SHARED] = np.bincount(mine, in_text[rows_of], len(slots))
        pairs[:, SHARED_TITLE] = np.bincount(mine, in_head[rows_of], len(slots))
        pairs[:, TITLE_NAMES_FOUND] = np.bincount(mine, head_name[rows_of], len(slots))
        counts = np.bincount(
            mine * PAIR_COLUMNS + kind[rows_of], minlength=len(slots) * PAIR_COLUMNS
        )
        counts = counts.reshape(len(slots), PAIR_COLUMNS)
        for c in (RARE_NAMES, NUMBERS, YEARS, STATES):
            pairs[:, c] = counts[:, c]
        # b's headline words in a's text, and its headline's names
        heads = part == _TITLE
        pairs[:, B_TITLE_SHARED] = np.bincount(pair[heads], in_text[at[heads]], len(slots))
        names = part == _TITLE_NAMES
        found_names = (in_text[at[names]] > 0).astype(np.float64)
        pairs[:, B_TITLE_NAMES_FOUND] = np.bincount(pair[names], found_names, len(slots))
        sizes = _take(bags.sizes, np.dtype(np.int64), distinct, _SIZES)[slot_of]
        pairs[:, B_TITLE_NAMES] = sizes[:, _TITLE_NAMES]
        pairs[:, B_YEARS] = sizes[:, _YEARS]
        pairs[:, B_STATES] = sizes[:, _STATES]
        return pairs, consts[owner]

    def score(self, features: Features, key: Hashable) -> PairScore | None:
        """The pair score against one indexed item (for explaining an editor's merge)."""
        entry = self._entries.get(key)
        return (
            None
            if entry is None
            else score_pair(features, self._bags.features(entry.slot), self._weights.__getitem__)
        )
