"""The classify stage: Item + section rules -> Placement (pure).

Each section scores the item by the weighted rule terms found in its title (x2) and its
summary text (x1); a rule counts once per field however often it occurs, so a long summary
does not drown a precise title. A section whose `exclude` phrase occurs scores 0. The best
section that reaches its own `min_score` wins; a tie goes to the section listed first and the
reason says so. Otherwise the item is judged against the topic gate:

* a topic `exclude` phrase with no topic `include` term beside it: off-topic, whatever the
  sections scored (the editor's veto: "ceasefire" on a de-escalation newsletter);
* topic `include` terms given, none found, and no section won: off-topic;
* else the source's default section, if it has one; else unfiled (section None).

Matching: case-insensitive, on whole words; a phrase's words may be joined by spaces or
hyphens ("use of force" finds "use-of-force"), a hyphen in a term is optional ("de-escalation"
finds "deescalation"), each word also finds its plural ("simulator" -> "simulators",
"policy" -> "policies", "crisis" -> "crises"), and a trailing `*` finds any ending
("simulat*" -> "simulation", "simulated"). Curly quotes and dashes are folded first.
A regex rule is searched as written (case-insensitive) in the folded text.

Pure: no I/O, no clock. Imports `types` only; must not import fetch, parse, storage,
pipeline, cli or any other stage.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from aggregator.types import Item, Placement, Rule, Section, Topic

TITLE_FACTOR = 2.0
SUMMARY_FACTOR = 1.0
SUMMARY_CHARS = 2000  # of the summary text that is matched

_FOLD = str.maketrans(
    {
        "\u2018": "'", "\u2019": "'", "\u201b": "'", "\u2032": "'", "`": "'",
        "\u201c": '"', "\u201d": '"', "\u201f": '"',
        "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2014": "-", "\u2212": "-",
        "\u00ad": None,  # soft hyphen
    }
)  # fmt: skip
_SPACE_RE = re.compile(r"\s+")
_SEP = r"[\s\-/]+"  # between the words of a phrase
_HYPHEN = r"[\s\-]?"  # where the term itself has a hyphen
_CONSONANT_Y = re.compile(r"[^aeiou]y")


def fold(text: str) -> str:
    """Lower-case, NFKC, straight quotes and hyphens, single spaces: what rules are matched on."""
    text = unicodedata.normalize("NFKC", text).translate(_FOLD).casefold()
    return _SPACE_RE.sub(" ", text).strip()


def _word_pattern(word: str, inflect: bool) -> str:
    """One word of a term, with its plural (if `inflect`) or, for `word*`, any ending."""
    if word.endswith("*"):
        return re.escape(word[:-1]) + r"\w*"
    if not inflect or len(word) < 2 or not word[-1:].isalpha():
        return re.escape(word)
    if word.endswith("is") and len(word) > 4:  # crisis -> crises, analysis -> analyses
        return re.escape(word[:-2]) + "(?:is|es)"
    if _CONSONANT_Y.search(word[-2:]) and len(word) > 2:  # policy -> policies
        return re.escape(word[:-1]) + "(?:y|ies)"
    return re.escape(word) + "(?:e?s|'s)?"


def phrase_pattern(phrase: str) -> str:
    """The regex source a word/phrase term compiles to (whole words, see module docstring)."""
    words = fold(phrase).split(" ")
    parts = []
    for word in words:
        pieces = [p for p in word.split("-") if p]  # "de-escalation": plural on the last piece
        parts.append(
            _HYPHEN.join(_word_pattern(p, i == len(pieces) - 1) for i, p in enumerate(pieces))
        )
    return r"(?<!\w)" + _SEP.join(p for p in parts if p) + r"(?!\w)"


@dataclass(frozen=True, slots=True)
class _Term:
    label: str  # the term as the editor wrote it
    weight: float
    regex: re.Pattern[str]
    # A substring every match must contain (None for regex rules): a plain `in` test skips
    # most regex searches, which otherwise dominate the whole pipeline's CPU time.
    needle: str | None = None

    @classmethod
    def of(cls, rule: Rule) -> _Term:
        if rule.regex:
            return cls(rule.pattern, rule.weight, re.compile(rule.pattern, re.IGNORECASE))
        return cls(
            rule.pattern,
            rule.weight,
            re.compile(phrase_pattern(rule.pattern), re.IGNORECASE),
            _needle(rule.pattern),
        )

    def search(self, text: str) -> bool:
        if self.needle is not None and self.needle not in text:
            return False
        return self.regex.search(text) is not None

    @classmethod
    def phrase(cls, phrase: str) -> _Term:
        return cls.of(Rule(phrase))


@dataclass(frozen=True, slots=True)
class _CompiledSection:
    section: Section
    terms: tuple[_Term, ...]
    exclude: tuple[_Term, ...]


def _needle(phrase: str) -> str | None:
    """The folded start of a term's first word that every inflected match still contains."""
    first = fold(phrase).split(" ")[0].split("-")[0].rstrip("*")
    # Inflection may change the last two letters (policy -> policies, crisis -> crises).
    needle = first[:-2] if len(first) > 4 else first
    return needle or None


def _first_match(terms: Sequence[_Term], texts: Sequence[str]) -> str | None:
    for term in terms:
        if any(term.search(text) for text in texts):
            return term.label
    return None


class Classifier:
    """Section rules and topic gate, compiled once; `classify` is pure and thread-safe."""

    def __init__(self, sections: Sequence[Section], topic: Topic) -> None:
        self.sections = tuple(
            _CompiledSection(
                s,
                tuple(_Term.of(r) for r in s.rules),
                tuple(_Term.phrase(p) for p in s.exclude),
            )
            for s in sections
        )
        self._ids = frozenset(s.id for s in sections)
        self.topic_include = tuple(_Term.of(r) for r in topic.include)
        self.topic_exclude = tuple(_Term.phrase(p) for p in topic.exclude)

    def classify(self, item: Item, default_section: str | None = None) -> Placement:
        if default_section is not None and default_section not in self._ids:
            raise ValueError(f"unknown default section {default_section!r}")
        # The opening of a long article says what it is about; its tail mostly adds noise
        # (and regex time).
        title, summary = fold(item.title), fold(item.summary_text[:SUMMARY_CHARS])
        texts = (title, summary)

        topic_hit = _first_match(self.topic_include, texts)
        veto = None if topic_hit else _first_match(self.topic_exclude, texts)
        if veto is not None:
            return Placement(None, reason=f"off-topic: matches topic exclusion '{veto}'")

        scores: list[tuple[str, float]] = []
        matched: dict[str, tuple[str, ...]] = {}
        vetoed: list[str] = []
        for cs in self.sections:
            excluded = _first_match(cs.exclude, texts)
            if excluded is not None:
                vetoed.append(f"{cs.section.id} (excluded by '{excluded}')")
                scores.append((cs.section.id, 0.0))
                continue
            score, terms = 0.0, []
            for term in cs.terms:
                factor = TITLE_FACTOR if term.search(title) else 0.0
                factor += SUMMARY_FACTOR if term.search(summary) else 0.0
                if factor:
                    score += term.weight * factor
                    terms.append(term.label)
            scores.append((cs.section.id, round(score, 3)))
            matched[cs.section.id] = tuple(terms)

        mins = {cs.section.id: cs.section.min_score for cs in self.sections}
        qualified = [(sid, s) for sid, s in scores if s > 0 and s >= mins[sid]]
        note = f"; {', '.join(vetoed)}" if vetoed else ""
        if qualified:
            best = max(s for _, s in qualified)
            tied = [sid for sid, s in qualified if s == best]
            winner = tied[0]  # `scores` is in section order, so the first listed wins a tie
            reason = f"{winner} scored {best:g} (min {mins[winner]:g})"
            if len(tied) > 1:
                reason += f"; tie with {', '.join(tied[1:])}, broken by section order"
            return Placement(winner, best, matched[winner], tuple(scores), reason + note)

        if self.topic_include and topic_hit is None:
            return Placement(
                None,
                scores=tuple(scores),
                reason="off-topic: no topic term and no section reached its threshold" + note,
            )
        if default_section is not None:
            return Placement(
                default_section,
                dict(scores)[default_section],
                matched.get(default_section, ()),
                tuple(scores),
                f"no section reached its threshold; source default '{default_section}'" + note,
            )
        return Placement(
            None,
            scores=tuple(scores),
            reason="unfiled: no section reached its threshold and the source has no default" + note,
        )


def make_classifier(sections: Sequence[Section], topic: Topic) -> Classifier:
    """Compile the section rules and the topic gate once, for many items."""
    return Classifier(sections, topic)


@lru_cache(maxsize=8)
def _cached_classifier(sections: tuple[Section, ...], topic: Topic) -> Classifier:
    return Classifier(sections, topic)


def classify_item(
    item: Item,
    sections: Sequence[Section],
    topic: Topic,
    default_section: str | None = None,
) -> Placement:
    """Where `item` belongs among `sections`, and why (see the module docstring)."""
    return _cached_classifier(tuple(sections), topic).classify(item, default_section)
