"""Combining the layers: rule scores + learned similarities -> Placement, with an Explanation.

Without examples the classifier is the rule layer alone (see `_decide_by_rules`). With
examples, each section's combined score is

    RULE_WEIGHT * r / (r + RULE_HALF)  +  LEARNED_WEIGHT * similarity

where r is the section's rule score (0 when under the section's `min_score`), and the
off-topic class scores LEARNED_WEIGHT * its similarity. The best class wins; a topic
`exclude` phrase with no topic `include` term is still the editor's veto. Confidence is the
winner's margin over the runner-up, relative to the winner: 0 is a tie.

Pure; imports `types` and the package's own modules only.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from aggregator.classify._learned import LearnedLayer, Similarity, make_encoder, training_docs
from aggregator.classify._rules import RuleResult, RuleSet
from aggregator.classify._text import fold
from aggregator.types import ClassifySettings, Example, Item, Placement, Section, Topic

RULE_WEIGHT = 1.0
RULE_HALF = 4.0  # a rule score of 4 (one weight-2 term in the title) gives half the weight
LEARNED_WEIGHT = 1.0
MIN_COMBINED = 0.2  # under this no section claims the item (the default section may)
GATE_THRESHOLD = 0.0  # the relevance gate's score from which an item is on-topic
NO_TOPIC_TERM_PENALTY = 0.3  # taken off the gate's score when no topic `include` term is found
GATE_SURE = 0.5  # a gate score this far from the threshold is fully confident
LEARNED_CHARS = 400  # of the summary the learned layer reads: the teaser
DEFAULT_SETTINGS = ClassifySettings()


@dataclass(frozen=True, slots=True)
class SectionScore:
    section: str
    rule: float  # the rule layer's score
    learned: float  # similarity to the section's examples (0 without examples)
    combined: float  # what decided (the rule score itself without examples)
    terms: tuple[str, ...] = ()
    excluded_by: str | None = None


@dataclass(frozen=True, slots=True)
class Neighbour:
    example: Example
    similarity: float


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything behind a placement: scores per section, terms, nearest examples."""

    placement: Placement
    sections: tuple[SectionScore, ...]
    off_topic: float  # the off-topic class's combined score (0 without examples)
    topic_hit: str | None
    veto: str | None
    nearest: tuple[Neighbour, ...]
    model: str  # rules, tfidf or embeddings
    low_confidence: bool


def item_text(item: Item) -> str:
    """What the learned layer reads: the title and the opening of the summary."""
    return f"{item.title}. {item.summary_text[:LEARNED_CHARS]}"


# The end of a free text's first sentence: where a headline ends and its teaser begins.
_SENTENCE_END = re.compile(r"[.?!][\"'\u201d\u2019]?\s+(?=[\"'\u201c\u2018(]?[A-Z0-9])")
MIN_TITLE_CHARS = 15  # "St. Louis", "W.Va. officer": a shorter first "sentence" is no title


def text_item(text: str, source_id: str = "text") -> Item:
    """A free text as an item (`aggregator classify "..."`, evaluation), split as production
    sees an item: the first sentence is the title (rule terms there count double), the rest
    the teaser (review finding 13). A text of one sentence is all title."""
    text = text.strip()
    title, summary = text, ""
    for m in _SENTENCE_END.finditer(text):
        if m.start() >= MIN_TITLE_CHARS:
            title, summary = text[: m.start()], text[m.end() :]
            break
    return Item(
        source_id=source_id,
        guid=text,
        url=None,
        link=None,
        title=title,
        title_key=fold(title),
        summary_html="",
        summary_text=summary,
        published=None,
    )


def _confidence(best: float, second: float) -> float:
    if best <= 0:
        return 0.0
    return round(max(0.0, min(1.0, (best - second) / best)), 3)


class Classifier:
    """Rules, topic gate and (with examples) the learned layer, built once; pure and reusable."""

    def __init__(
        self,
        sections: Sequence[Section],
        topic: Topic,
        examples: Sequence[Example] = (),
        settings: ClassifySettings = DEFAULT_SETTINGS,
    ) -> None:
        self.section_list = tuple(sections)
        self.topic = topic
        self.settings = settings
        self.rules = RuleSet(sections, topic)
        self._ids = frozenset(s.id for s in sections)
        self._mins = {s.id: s.min_score for s in sections}
        known = [e for e in examples if e.section is None or e.section in self._ids]
        self.learned: LearnedLayer | None = None
        if known and settings.model != "rules":
            docs = training_docs(sections, topic, known)
            encoder = make_encoder(settings.model, [d.text for d in docs])
            if encoder is not None:
                self.learned = LearnedLayer(encoder, docs, [s.id for s in sections])
        self.model = self.learned.encoder.name if self.learned else "rules"

    # --- public ------------------------------------------------------------------------------

    def classify(self, item: Item, default_section: str | None = None) -> Placement:
        return self.explain(item, default_section).placement

    def explain(self, item: Item, default_section: str | None = None) -> Explanation:
        return self.explain_many([item], [default_section])[0]

    def classify_many(
        self, items: Sequence[Item], default_sections: Sequence[str | None] | None = None
    ) -> list[Placement]:
        """Many items at once: the learned layer encodes them as one batch."""
        return [e.placement for e in self.explain_many(items, default_sections)]

    def explain_many(
        self, items: Sequence[Item], default_sections: Sequence[str | None] | None = None
    ) -> list[Explanation]:
        defaults = list(default_sections) if default_sections is not None else [None] * len(items)
        for d in defaults:
            if d is not None and d not in self._ids:
                raise ValueError(f"unknown default section {d!r}")
        rule_results = [self.rules.score(i.title, i.summary_text) for i in items]
        if self.learned is None:
            return [
                self._decide_by_rules(r, d) for r, d in zip(rule_results, defaults, strict=True)
            ]
        sims = self.learned.similarities([item_text(i) for i in items])
        return [self._decide(r, s, d) for r, s, d in zip(rule_results, sims, defaults, strict=True)]

    def classify_text(self, text: str) -> Explanation:
        return self.explain(text_item(text))

    # --- deciding ----------------------------------------------------------------------------

    def _explanation(
        self,
        placement: Placement,
        scores: Sequence[SectionScore],
        rules: RuleResult,
        off_topic: float = 0.0,
        nearest: Sequence[Neighbour] = (),
    ) -> Explanation:
        low = placement.confidence < self.settings.review_below
        if low and placement.reason:
            placement = replace(placement, reason=placement.reason + "; low confidence")
        return Explanation(
            placement, tuple(scores), round(off_topic, 3), rules.topic_hit, rules.veto,
            tuple(nearest), self.model, low,
        )  # fmt: skip

    def _decide_by_rules(self, rules: RuleResult, default: str | None) -> Explanation:
        """The rule layer alone: the best section that reaches its own `min_score`."""
        scores = [
            SectionScore(r.section, r.score, 0.0, r.score, r.terms, r.excluded_by)
            for r in rules.scores
        ]
        pairs = tuple((s.section, s.combined) for s in scores)
        matched = {s.section: s.terms for s in scores}
        vetoed = [f"{s.section} (excluded by '{s.excluded_by}')" for s in scores if s.excluded_by]
        note = f"; {', '.join(vetoed)}" if vetoed else ""
        if rules.veto is not None:
            reason = f"off-topic: matches topic exclusion '{rules.veto}'"
            return self._explanation(Placement(None, reason=reason), scores, rules)
        qualified = [(sid, s) for sid, s in pairs if s > 0 and s >= self._mins[sid]]
        ordered = sorted((s for _, s in pairs), reverse=True)
        if qualified:
            best = max(s for _, s in qualified)
            tied = [sid for sid, s in qualified if s == best]
            winner = tied[0]  # `pairs` is in section order, so the first listed wins a tie
            reason = f"{winner} scored {best:g} (min {self._mins[winner]:g})"
            if len(tied) > 1:
                reason += f"; tie with {', '.join(tied[1:])}, broken by section order"
            second = ordered[1] if len(ordered) > 1 else 0.0
            placement = Placement(
                winner, best, matched[winner], pairs, reason + note, _confidence(best, second)
            )
            return self._explanation(placement, scores, rules)
        if self.rules.topic_include and rules.topic_hit is None:
            reason = "off-topic: no topic term and no section reached its threshold" + note
            placement = Placement(None, scores=pairs, reason=reason)
            return self._explanation(placement, scores, rules)
        if default is not None:
            reason = f"no section reached its threshold; source default '{default}'" + note
            placement = Placement(
                default, dict(pairs)[default], matched.get(default, ()), pairs, reason, 0.0
            )
            return self._explanation(placement, scores, rules)
        reason = "unfiled: no section reached its threshold and the source has no default" + note
        placement = Placement(None, scores=pairs, reason=reason, confidence=0.0)
        return self._explanation(placement, scores, rules)

    def _decide(self, rules: RuleResult, sim: Similarity, default: str | None) -> Explanation:
        """Rules and the learned layer together (see the module docstring)."""
        scores = []
        for r in rules.scores:
            counted = r.score if r.score >= self._mins[r.section] else 0.0
            rule_part = RULE_WEIGHT * counted / (counted + RULE_HALF) if counted > 0 else 0.0
            learned = max(0.0, sim.by_class.get(r.section, 0.0))
            combined = 0.0 if r.excluded_by else rule_part + LEARNED_WEIGHT * learned
            learned, combined = round(learned, 3), round(combined, 3)
            scores.append(
                SectionScore(r.section, r.score, learned, combined, r.terms, r.excluded_by)
            )
        gate = sim.on_topic
        if self.rules.topic_include and rules.topic_hit is None:
            gate -= NO_TOPIC_TERM_PENALTY
        off = round(max(0.0, -gate), 3)  # the off-topic score shown beside the sections
        nearest = [Neighbour(e, s) for e, s in sim.nearest]
        pairs = tuple((s.section, s.combined) for s in scores)
        matched = {s.section: s.terms for s in scores}
        gate_confidence = round(min(1.0, abs(gate) / GATE_SURE), 3)

        def done(placement: Placement) -> Explanation:
            return self._explanation(placement, scores, rules, off, nearest)

        if rules.veto is not None:
            reason = f"off-topic: matches topic exclusion '{rules.veto}'"
            return done(Placement(None, scores=pairs, reason=reason))
        if gate < GATE_THRESHOLD:
            why = (
                "no topic term, and "
                if rules.topic_hit is None and self.rules.topic_include
                else ""
            )
            reason = (
                f"off-topic: {why}the relevance gate scored {gate:.3g} "
                f"(on-topic from {GATE_THRESHOLD:g})"
            )
            return done(Placement(None, scores=pairs, reason=reason, confidence=gate_confidence))
        ranked = sorted(scores, key=lambda s: -s.combined)  # stable: section order breaks ties
        best = ranked[0]
        runner_up = ranked[1].combined if len(ranked) > 1 else 0.0
        if best.combined >= MIN_COMBINED:
            reason = (
                f"{best.section} scored {best.combined:g} (rules {best.rule:g}, "
                f"examples {best.learned:g}); gate {gate:.3g}"
            )
            tied = [s.section for s in ranked[1:] if s.combined == best.combined]
            if tied:
                reason += f"; tie with {', '.join(tied)}, broken by section order"
            confidence = min(_confidence(best.combined, runner_up), gate_confidence)
            placement = Placement(
                best.section, best.combined, best.terms, pairs, reason, confidence
            )
            return done(placement)
        if default is not None:
            reason = f"no section reached its threshold; source default '{default}'"
            placement = Placement(
                default, dict(pairs)[default], matched.get(default, ()), pairs, reason, 0.0
            )
            return done(placement)
        reason = "unfiled: no section reached its threshold and the source has no default"
        return done(Placement(None, scores=pairs, reason=reason, confidence=0.0))
