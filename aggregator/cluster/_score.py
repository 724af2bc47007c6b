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
    joins    the score reaches the threshold, the two share MIN_SHARED_WORDS words or a
             headline, and their names do not conflict: when *each* headline names someone
             or something the other item never mentions ("Lufthansa warns of weaker
             demand", "Ryanair warns of weaker demand"), they are two events, however many
             other words they share. Nor when the headlines share their subject only: each
             headline's words other than its names are all missing from the other item
             ("A chip maker acquires the chat app over Bayoteyo Fund", "A research team
             observe a distant exoplanet over Bayoteyo Fund"). Nor when both headlines
             name episodes and none the same ("Teaser: Episode 74: ...", "Episode 73: ..."):
             one show's boilerplate, and the numbers its teasers repeat, are no evidence.

Weights and the threshold were chosen on the dev split of tests/data/clusters (see
docs/clustering.md).

`upper_bounds` is the same formula for many pairs at once, for the window index (issue 8):
from per-pair sums the index gathers with numpy for all of a source's new items and their
candidates (the PAIR_COLUMNS below), one array operation gives each pair its score without
sorting and without the evidence, never below the exact score but for rounding (see SLACK).
The index scores in full (`score_pair`) only the pairs whose bound could change the outcome,
best first, so every pair that counts gets exactly `score_pair`'s score and every decision
stays the same. Keep the two in step (tests/test_cluster.py checks the bound over every pair
of the dev set).

Imports only the cluster stage's own modules and numpy.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
# A join needs evidence beyond a score: at least this many shared words (headline + lead),
# unless each headline's words are (nearly) all in the other item. Two reports of one event
# share its who, what and where; two items that merely share a topic ("North Korea",
# "Trump", "data") share a word or three and, with short headlines, can still score 0.2.
MIN_SHARED_WORDS = 4
SAME_HEADLINE = 0.9
RARE_IDF = 1.5  # a name counts as evidence above this idf
# How far `upper_bounds` may fall below the exact score by rounding alone: its sums add the
# same positive weights in another order, with numpy's log (the candidates' as log(top) minus
# a table's log(df + 1)), a relative error of about 1e-15 per term.
SLACK = 1e-9

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
    shared_count: int = 0  # how many words the two share (`shared_words` lists 8 at most)
    # each headline has a name the other item never mentions: two events (see `joins`)
    names_conflict: bool = False
    # the headlines share their subject only: each one's other words are all missing from
    # the other item (see `joins`)
    event_conflict: bool = False
    # both headlines name episodes, none the same: two episodes of a show (see `joins`)
    episode_conflict: bool = False

    def joins(self, threshold: float) -> bool:
        """Whether the pair is the same event: the score reaches `threshold`, the two share
        at least MIN_SHARED_WORDS words or each one's headline is in the other, and their
        names do not conflict (each headline naming what the other item never mentions), nor
        their subjects or their episodes (see the module docstring)."""
        return (
            self.score >= threshold
            and (self.shared_count >= MIN_SHARED_WORDS or self.title >= SAME_HEADLINE)
            and not self.names_conflict
            and not self.event_conflict
            and not self.episode_conflict
        )

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
            "names_conflict": self.names_conflict,
            "event_conflict": self.event_conflict,
            "episode_conflict": self.episode_conflict,
        }


def _weight(tokens: Iterable[str], idf: Idf) -> float:
    # fsum: correctly rounded, so the same in any order. A set's order follows the process's
    # string hashes, and `sum` in another order could differ in the last bit: the same items
    # clustered in two processes recorded a headline's tie with the overlap as "title" in one
    # and "overlap" in the other (1 of the benchmark's 30,000 links), and a tie between two
    # candidates could have gone either way.
    return math.fsum(map(idf, tokens))


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
    # One subject, two events: "A chip maker acquires the chat app over Bayoteyo Fund" and
    # "A research team observe a distant exoplanet over Bayoteyo Fund" share the name and
    # its weight, but neither item has any other word of the other's headline.
    rest_a, rest_b = a.title - a.names, b.title - b.names
    event_conflict = bool(
        rest_a and rest_b and rest_a.isdisjoint(b.doc) and rest_b.isdisjoint(a.doc)
    )
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
        shared_count=len(shared),
        names_conflict=bool(missing_a and missing_b),
        event_conflict=event_conflict,
        # "Teaser: Episode 74: Turkish Lore" and "Episode 73: Real Theory Hours": one show's
        # boilerplate and numbers joined a teaser to the episode before it, and so on down
        episode_conflict=bool(a.episodes and b.episodes and a.episodes.isdisjoint(b.episodes)),
    )


# The columns of `upper_bounds`, per pair (a, b): what the window index gathers for a new
# item a and each candidate b in one numpy pass (issue 8; `StoryIndex._columns`).
SHARED = 0  # the weight of a's words in b's text: a.doc & b.doc
SHARED_TITLE = 1  # the weight of a's headline words in b's text: a.title & b.doc
TITLE_NAMES_FOUND = 2  # how many of a's headline names b's text has: a.title & a.names & b.doc
RARE_NAMES = 3  # how many of a's rare names (idf >= RARE_IDF) b names: rare(a.names) & b.names
NUMBERS = 4  # a.numbers & b.numbers, counted
YEARS = 5  # a.years & b.years, counted
STATES = 6  # a.states & b.states, counted
B_TITLE_SHARED = 7  # the weight of b's headline words in a's text: b.title & a.doc
B_TITLE = 8  # the weight of b's headline
B_TITLE_NAMES = 9  # how many names b's headline has: b.title & b.names
B_TITLE_NAMES_FOUND = 10  # how many of them a's text has: b.title & b.names & a.doc
B_YEARS = 11  # how many years b gives
B_STATES = 12  # how many states b names
B_DOC = 13  # the weight of b's text
PAIR_COLUMNS = 14
# ... and per a: the weight of its text and of its headline, its headline names counted, and
# whether it gives years and names states.
A_DOC, A_TITLE, A_TITLE_NAMES, A_YEARS, A_STATES = range(5)
A_COLUMNS = 5


def upper_bounds(
    pairs: npt.NDArray[np.float64], a: npt.NDArray[np.float64]
) -> npt.NDArray[np.float64]:
    """For many pairs (a, b) at once, `score_pair(a, b).score` as numpy computes it: the same
    terms from the same weights, summed in another order (compare with `floor - SLACK`).
    `pairs` has the PAIR_COLUMNS above, a row per pair; `a`, a row per pair, a's A_COLUMNS.
    Weights are idf, every one above 0. Never below the exact score but for rounding (a
    name's rarity is decided with a margin of SLACK, the one place it may count more)."""
    doc, title_w, b_doc = a[:, A_DOC], a[:, A_TITLE], pairs[:, B_DOC]
    shared = pairs[:, SHARED]
    with np.errstate(divide="ignore", invalid="ignore"):
        union = doc + b_doc - shared
        overlap = np.where(union > 0, shared / union, 0.0)
        titled = (title_w > 0) & (pairs[:, B_TITLE] > 0)
        # an item without a headline: its text stands in, both ways
        text = np.minimum(
            np.where(doc > 0, shared / doc, 0.0), np.where(b_doc > 0, shared / b_doc, 0.0)
        )
        title = np.where(
            titled,
            np.minimum(
                pairs[:, SHARED_TITLE] / title_w, pairs[:, B_TITLE_SHARED] / pairs[:, B_TITLE]
            ),
            text,
        )
    score = W_TITLE * title + W_OVERLAP * overlap
    score += np.minimum(NAME_BONUS_MAX, NAME_BONUS * pairs[:, RARE_NAMES])
    score += np.minimum(NUMBER_BONUS_MAX, NUMBER_BONUS * pairs[:, NUMBERS])
    score -= YEAR_PENALTY * ((a[:, A_YEARS] > 0) & (pairs[:, B_YEARS] > 0) & (pairs[:, YEARS] == 0))
    missing = np.maximum(
        a[:, A_TITLE_NAMES] - pairs[:, TITLE_NAMES_FOUND],
        pairs[:, B_TITLE_NAMES] - pairs[:, B_TITLE_NAMES_FOUND],
    )
    score -= np.minimum(MISSING_NAME_PENALTY_MAX, MISSING_NAME_PENALTY * missing)
    score -= STATE_PENALTY * (
        (a[:, A_STATES] > 0) & (pairs[:, B_STATES] > 0) & (pairs[:, STATES] == 0)
    )
    return score


def names_conflict(
    pairs: npt.NDArray[np.float64], a: npt.NDArray[np.float64]
) -> npt.NDArray[np.bool_]:
    """For the same rows as `upper_bounds`, `score_pair(a, b).names_conflict`, exactly (whole
    counts): each headline has a name the other item lacks, so the pair can never join."""
    return (a[:, A_TITLE_NAMES] > pairs[:, TITLE_NAMES_FOUND]) & (
        pairs[:, B_TITLE_NAMES] > pairs[:, B_TITLE_NAMES_FOUND]
    )
