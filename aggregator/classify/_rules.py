"""The rule layer: an editor's weighted terms per section, and the topic gate's terms.

Each section scores an item by the weighted rule terms found in its title (x2) and its summary
text (x1); a rule counts once per field however often it occurs, so a long summary does not
drown a precise title. A section whose `exclude` phrase occurs scores 0.

Pure; imports `types` and the package's `_text` only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aggregator.classify._text import Term, fold
from aggregator.types import Section, Topic

TITLE_FACTOR = 2.0
SUMMARY_FACTOR = 1.0
SUMMARY_CHARS = 2000  # of the summary text that is matched


@dataclass(frozen=True, slots=True)
class RuleScore:
    """One section's rule result for one item."""

    section: str
    score: float
    terms: tuple[str, ...] = ()
    excluded_by: str | None = None  # the section's `exclude` phrase that vetoed it


@dataclass(frozen=True, slots=True)
class RuleResult:
    """Every section's rule score, and what the topic terms said."""

    scores: tuple[RuleScore, ...]
    topic_hit: str | None  # the first topic `include` term found
    veto: str | None  # a topic `exclude` phrase found with no include term beside it


@dataclass(frozen=True, slots=True)
class _CompiledSection:
    section: Section
    terms: tuple[Term, ...]
    exclude: tuple[Term, ...]
    # the terms as (label, weight, needle, regex search): `score` tests each with no calls
    # into Term (most terms are in neither text, and the loop runs for every item)
    checks: tuple[tuple[str, float, str | None, Callable[[str], object]], ...]


def _compile_section(section: Section) -> _CompiledSection:
    terms = tuple(Term.of(r) for r in section.rules)
    return _CompiledSection(
        section,
        terms,
        tuple(Term.phrase(p) for p in section.exclude),
        tuple((t.label, t.weight, t.needle, t.regex.search) for t in terms),
    )


def _first_match(terms: Sequence[Term], texts: Sequence[str]) -> str | None:
    for term in terms:
        if any(term.search(text) for text in texts):
            return term.label
    return None


class RuleSet:
    """Section rules and topic terms, compiled once."""

    def __init__(self, sections: Sequence[Section], topic: Topic) -> None:
        self.sections = tuple(_compile_section(s) for s in sections)
        self.topic_include = tuple(Term.of(r) for r in topic.include)
        self.topic_exclude = tuple(Term.phrase(p) for p in topic.exclude)

    def score(self, title: str, summary: str) -> RuleResult:
        # The opening of a long article says what it is about; its tail mostly adds noise
        # (and regex time).
        title, summary = fold(title), fold(summary[:SUMMARY_CHARS])
        texts = (title, summary)
        both = f"{title}\n{summary}"  # a needle in neither text is not in this either
        topic_hit = _first_match(self.topic_include, texts)
        veto = None if topic_hit else _first_match(self.topic_exclude, texts)
        out: list[RuleScore] = []
        for cs in self.sections:
            sid = cs.section.id
            excluded = _first_match(cs.exclude, texts)
            if excluded is not None:
                out.append(RuleScore(sid, 0.0, (), excluded))
                continue
            score, terms = 0.0, []
            for label, weight, needle, search in cs.checks:  # Term.search, inlined
                if needle is None:
                    in_title = search(title) is not None
                    in_summary = search(summary) is not None
                elif needle not in both:
                    continue  # in neither: factor 0
                else:
                    in_title = needle in title and search(title) is not None
                    in_summary = needle in summary and search(summary) is not None
                factor = TITLE_FACTOR if in_title else 0.0
                factor += SUMMARY_FACTOR if in_summary else 0.0
                if factor:
                    score += weight * factor
                    terms.append(label)
            out.append(RuleScore(sid, round(score, 3), tuple(terms)))
        return RuleResult(tuple(out), topic_hit, veto)
