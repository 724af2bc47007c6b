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
docs/clustering.md). Imports only the cluster stage's own modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from aggregator.cluster._text import Features

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
    return sum(idf(t) for t in tokens)


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
