"""Two items' features -> how sure we are they report the same event, and why (pure).

The score is lexical and idf-weighted (rare words count, common ones barely):

    title    min over both directions of: the share of one title's weight found in the other
             item's title + lead. Rewritten headlines keep the event's rare words; the min
             keeps a story that merely *mentions* another (Signature Bank's closure "two days
             after Silicon Valley Bank") from joining it.
    overlap  weighted Jaccard of the two title + lead token sets.
    names    shared proper names (weight, capped); numbers: shared numbers (22.5, 175000).
    score =  W_TITLE * title + W_OVERLAP * overlap + name_bonus + number_bonus
             minus a penalty per name in one headline that the other item never mentions
             ("Signature Bank" against a Silicon Valley Bank story), a penalty when both
             name US states and share none (two programmes in two states), and a penalty
             when both give years and share none (the same bill, another year).

Weights and the threshold were chosen on the dev split of tests/data/clusters (see
docs/clustering.md).

`ScoreBound` is the cheap half of the same formula, for the window index: built once per new
item, `reaches(b, floor)` says whether `score_pair(a, b, idf).score` may reach `floor`, from an
upper bound of the score (never below it but for rounding, see SLACK): the exact bonuses and
penalties, and bounds of title and overlap from the words of a found in b, without the weight
of b's whole text, without sorting and without building the evidence. A candidate ruled out
is not scored at all; every pair that is scored gets exactly `score_pair`'s score, so every
decision stays the same. Keep the two in step (tests/test_cluster.py checks the bound).

`ScoreBound.reaches_many` is a coarser bound for many candidates at once (issue 8): from
per-candidate sums the window index gathers with numpy (shared weight of a's words, of its
headline's words, shared rare names and numbers, a's headline names found), one array
operation rules out most candidates before `reaches` looks at any of them one by one.

Imports only the cluster stage's own modules and numpy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from aggregator.cluster._text import Features, Packed

W_TITLE = 0.55
W_OVERLAP = 0.45
NAME_BONUS = 0.04  # per shared rare name
NAME_BONUS_MAX = 0.12
NUMBER_BONUS = 0.08  # per shared number
NUMBER_BONUS_MAX = 0.16
YEAR_PENALTY = 0.25
MISSING_NAME_PENALTY = 0.12  # per name of one headline absent from the other item
MISSING_NAME_PENALTY_MAX = 0.24
STATE_PENALTY = 0.2  # both name US states, none in common
RARE_IDF = 1.5  # a name counts as evidence above this idf
# How far a ScoreBound may fall below the exact score by rounding alone: its sums add the
# same positive weights in another order (relative error about 1e-15 per term).
SLACK = 1e-9
PROBE_WORDS = 8  # ScoreBound: how many of an item's heaviest words it looks up first

Idf = Callable[[str], float]


@dataclass(frozen=True, slots=True)
class PairScore:
    """The score of one pair of items and the evidence behind it (for `stories --explain`)."""

    score: float
    title: float
    overlap: float
    shared_names: tuple[str, ...] = ()
    shared_numbers: tuple[str, ...] = ()
    shared_words: tuple[str, ...] = ()
    year_conflict: bool = False
    missing_names: tuple[str, ...] = ()
    state_conflict: bool = False

    @property
    def signal(self) -> str:
        """The strongest single reason, in words."""
        if self.shared_numbers and self.shared_names:
            return "names+numbers"
        if self.title >= self.overlap:
            return "title"
        return "overlap"

    def detail(self) -> dict[str, object]:
        return {
            "title": round(self.title, 3),
            "overlap": round(self.overlap, 3),
            "names": list(self.shared_names),
            "numbers": list(self.shared_numbers),
            "words": list(self.shared_words),
            "year_conflict": self.year_conflict,
            "missing_names": list(self.missing_names),
            "state_conflict": self.state_conflict,
        }


def _weight(tokens: Iterable[str], idf: Idf) -> float:
    return sum(map(idf, tokens))


def _contained(part: frozenset[str], whole: frozenset[str], idf: Idf) -> float:
    total = _weight(part, idf)
    if total <= 0:
        return 0.0
    return _weight(part & whole, idf) / total


def score_pair(a: Features, b: Features, idf: Idf) -> PairScore:
    """How likely `a` and `b` are the same event, in [0, ~1.3]; see the module docstring."""
    if a.title and b.title:
        title = min(_contained(a.title, b.doc, idf), _contained(b.title, a.doc, idf))
    else:  # an item without a title: its text stands in
        title = min(_contained(a.doc, b.doc, idf), _contained(b.doc, a.doc, idf))
    union = _weight(a.doc | b.doc, idf)
    shared = a.doc & b.doc
    overlap = _weight(shared, idf) / union if union > 0 else 0.0
    names = sorted((a.names & b.names), key=lambda n: (-idf(n), n))
    rare_names = [n for n in names if idf(n) >= RARE_IDF]
    nums = sorted(a.numbers & b.numbers)
    year_conflict = bool(a.years and b.years and not (a.years & b.years))
    score = W_TITLE * title + W_OVERLAP * overlap
    score += min(NAME_BONUS_MAX, NAME_BONUS * len(rare_names))
    score += min(NUMBER_BONUS_MAX, NUMBER_BONUS * len(nums))
    if year_conflict:
        score -= YEAR_PENALTY
    # The subject of a headline is usually a name ("Signature Bank", "Louisville"): a
    # story that lacks it is about something else, however many words it shares.
    missing_a = sorted((a.title & a.names) - b.doc)
    missing_b = sorted((b.title & b.names) - a.doc)
    missing = max(missing_a, missing_b, key=lambda ms: (len(ms), ms))
    score -= min(MISSING_NAME_PENALTY_MAX, MISSING_NAME_PENALTY * len(missing))
    # Two programmes in two states are two stories, however alike their words.
    state_conflict = bool(a.states and b.states and not (a.states & b.states))
    if state_conflict:
        score -= STATE_PENALTY
    words = sorted(shared, key=lambda t: (-idf(t), t))[:8]
    return PairScore(
        score=score,
        title=title,
        overlap=overlap,
        shared_names=tuple(names[:6]),
        shared_numbers=tuple(nums[:6]),
        shared_words=tuple(words),
        year_conflict=year_conflict,
        missing_names=tuple(missing),
        state_conflict=state_conflict,
    )


class ScoreBound:
    """For one item `a` and many `b`: could `score_pair(a, b, idf).score` reach a floor? (see
    the module docstring). `weight` maps token -> idf, every weight above 0 (`score_pair`
    then sums the same values). Never False for a pair that reaches the floor; True may mean
    only that the bound does: it is exact but for these terms, and for rounding (SLACK):

    the rest bonuses and penalties exactly as `score_pair` computes them, first: against a
             good match found already they may rule b out alone
    overlap  first 1 - (the weight of a's headline and PROBE_WORDS heaviest words that b
             lacks) / a's weight, a few look-ups; then shared weight / a's weight (the union
             weighs at least as much as a's words)
    title    a's side (the share of its headline weight found in b) exactly, then, if b is not
             ruled out yet, the smaller of both sides, as score_pair; a title-less pair uses
             the overlap's bound (a's side of the text)
    """

    __slots__ = (
        "_a",
        "_doc",
        "_doc_weight",
        "_get",
        "_probe",
        "_probe_weight",
        "_title",
        "_title_names",
        "_title_weight",
        "_weight",
        "rare_names",
    )

    def __init__(self, a: Features, weight: Mapping[str, float]) -> None:
        self._a = a
        self._weight = weight
        own = {t: weight[t] for t in a.doc | a.title | a.names}
        self._get = get = own.__getitem__
        self._doc = a.doc
        self._doc_weight = sum(map(get, a.doc))
        self._title = a.title
        self._title_weight = sum(map(get, a.title))
        self._title_names = a.title & a.names
        # A's heaviest words and its headline's, looked up first: what b lacks of them is a
        # lower bound of what it lacks of a's words (None: a's headline is not all in a.doc,
        # which extract_features never makes; then the full look-up only).
        heavy = sorted(a.doc, key=get, reverse=True)[:PROBE_WORDS]
        self._probe = a.title.union(heavy) if a.title <= a.doc else None
        self._probe_weight = sum(map(get, self._probe or ()))
        # a's names that count as evidence when shared (as score_pair decides it)
        self.rare_names = frozenset(n for n in a.names if get(n) >= RARE_IDF)

    def columns(self) -> Iterable[tuple[str, float, float, float]]:
        """For each of a's words: (word, its weight in a's text, in a's headline, 1 if it
        is one of the headline's names): what `reaches_many` expects summed over the words
        of each candidate's text (0 where a does not count it)."""
        get, doc, title, names = self._get, self._doc, self._title, self._title_names
        for token in doc | title:
            w = get(token)
            yield (
                token,
                w if token in doc else 0.0,
                w if token in title else 0.0,
                1.0 if token in names else 0.0,
            )

    def reaches_many(self, sums: npt.NDArray[np.float64], floor: float) -> npt.NDArray[np.bool_]:
        """For candidates b (rows), whether each may reach `floor`: False only if
        `score_pair(a, b).score < floor`. Columns of `sums`, per b: the weight of a's words
        in b's text, of a's headline words in b's text, a's headline names in b's text
        (these three by `columns()`), the number of `rare_names` among b's names, and of a's
        numbers among b's. Bounded as in `reaches` without b's own weights, years or states: the
        overlap by a's side, the title by a's side or, if b has no headline, the overlap's;
        bonuses exact, the penalty for a's headline names that b's text lacks."""
        doc_w = self._doc_weight
        share = sums[:, 0] / doc_w if doc_w else np.zeros(len(sums))
        if self._title and self._title_weight:
            title = np.maximum(sums[:, 1] / self._title_weight, share)
        else:
            title = share
        score = W_TITLE * title + W_OVERLAP * share
        score += np.minimum(NAME_BONUS_MAX, NAME_BONUS * sums[:, 3])
        score += np.minimum(NUMBER_BONUS_MAX, NUMBER_BONUS * sums[:, 4])
        if self._title_names:
            missing = len(self._title_names) - sums[:, 2]
            score -= np.minimum(MISSING_NAME_PENALTY_MAX, MISSING_NAME_PENALTY * missing)
        result: npt.NDArray[np.bool_] = score >= floor - SLACK
        return result

    def reaches(self, b: Packed, floor: float) -> bool:
        """`b` packed as the window index keeps it (tuples: a's frozensets are what the
        set operations hash into)."""
        a, get = self._a, self._get
        # First the bonuses and penalties; `floor` becomes what title and overlap must make up.
        floor -= SLACK
        if b.names:
            names = a.names.intersection(b.names)
            if names:
                rare = sum(1 for n in names if get(n) >= RARE_IDF)
                floor -= min(NAME_BONUS_MAX, NAME_BONUS * rare)
        if a.numbers and b.numbers:
            common = len(a.numbers.intersection(b.numbers))
            if common:
                floor -= min(NUMBER_BONUS_MAX, NUMBER_BONUS * common)
        if a.years and b.years and a.years.isdisjoint(b.years):
            floor += YEAR_PENALTY
        missing = len(self._title_names.difference(b.doc)) if self._title_names else 0
        if b.title_names:
            missing = max(missing, len(b.title_names) - len(self._doc.intersection(b.title_names)))
        if missing:
            floor += min(MISSING_NAME_PENALTY_MAX, MISSING_NAME_PENALTY * missing)
        if a.states and b.states and a.states.isdisjoint(b.states):
            floor += STATE_PENALTY
        if floor > W_TITLE + W_OVERLAP:  # title and overlap are at most 1
            return False
        titled = bool(a.title and b.title)
        title = 1.0
        if self._probe is not None:
            # The probe words b lacks, b lacks of a's words: an upper bound of the overlap.
            found = self._probe.intersection(b.doc)
            lacking = self._probe_weight - sum(map(get, found))
            share = 1.0 - lacking / self._doc_weight if self._doc_weight else 0.0
            # a's side of the title exactly (its words are all probed); else the text's
            title = sum(map(get, self._title & found)) / self._title_weight if titled else share
            if W_TITLE * title + W_OVERLAP * share < floor:
                return False
        shared = self._doc.intersection(b.doc)
        share = sum(map(get, shared)) / self._doc_weight if shared else 0.0
        if not titled:  # the text stands in: a's side of it is `share`
            title = share
        elif self._probe is None:
            title = sum(map(get, a.title.intersection(b.doc))) / self._title_weight
        if W_TITLE * title + W_OVERLAP * share < floor:
            return False
        if titled:  # b's side of the title too
            b_title = sum(map(self._weight.__getitem__, b.title))
            title = min(title, sum(map(get, self._doc.intersection(b.title))) / b_title)
        return W_TITLE * title + W_OVERLAP * share >= floor
