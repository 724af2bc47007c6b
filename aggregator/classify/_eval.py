"""Evaluation: how often the classifier files labelled items where an editor would (pure).

Leave-one-out: each labelled item is classified by a classifier trained on every other
example (the configured ones and the rest of the file), never on its own label; configured
examples with the same text are left out with it. A prediction is right when it is the
item's section or one of its `also` sections; `none` (off-topic) is right when no section
is given.

Imports `types` and the package's own modules only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aggregator.classify._classifier import Classifier
from aggregator.classify._text import fold
from aggregator.types import ClassifySettings, Example, Section, Topic

OFF = "none"


@dataclass(frozen=True, slots=True)
class EvalRow:
    example: Example
    predicted: str | None
    confidence: float
    reason: str

    @property
    def correct(self) -> bool:
        if self.example.section is None:
            return self.predicted is None
        return self.predicted in (self.example.section, *self.example.also)

    @property
    def effective(self) -> str:
        """The prediction as the confusion matrix counts it (`also` counts as the label)."""
        if self.correct:
            return self.example.section or OFF
        return self.predicted or OFF


@dataclass(frozen=True, slots=True)
class EvalReport:
    rows: tuple[EvalRow, ...]
    labels: tuple[str, ...]  # section ids in config order, then "none"
    model: str
    mode: str  # "leave-one-out" or "held-out"

    @property
    def accuracy(self) -> float:
        return sum(r.correct for r in self.rows) / len(self.rows) if self.rows else 0.0

    def _share(self, off_topic: bool) -> float | None:
        rows = [r for r in self.rows if (r.example.section is None) == off_topic]
        if not rows:
            return None
        return sum((r.predicted is None) == off_topic for r in rows) / len(rows)

    @property
    def off_topic_kept_out(self) -> float | None:
        """Share of off-topic items that got no section (None when the file has none)."""
        return self._share(True)

    @property
    def on_topic_kept_in(self) -> float | None:
        """Share of on-topic items that got some section."""
        return self._share(False)

    def confusion(self) -> dict[tuple[str, str], int]:
        """(label, effective prediction) -> count."""
        return dict(Counter((r.example.section or OFF, r.effective) for r in self.rows))

    def precision_recall(self) -> list[tuple[str, float | None, float | None, int]]:
        """(label, precision, recall, support) per label."""
        conf = self.confusion()
        out = []
        for label in self.labels:
            tp = conf.get((label, label), 0)
            predicted = sum(n for (_, p), n in conf.items() if p == label)
            support = sum(n for (g, _), n in conf.items() if g == label)
            out.append(
                (
                    label,
                    tp / predicted if predicted else None,
                    tp / support if support else None,
                    support,
                )
            )
        return out


Factory = Callable[[Sequence[Example]], Classifier]


def classifier_factory(
    sections: Sequence[Section], topic: Topic, settings: ClassifySettings
) -> Factory:
    def make(examples: Sequence[Example]) -> Classifier:
        return Classifier(sections, topic, examples, settings)

    return make


def evaluate(
    factory: Factory,
    labelled: Sequence[Example],
    configured: Sequence[Example] = (),
    *,
    leave_one_out: bool = True,
    labels: Sequence[str] = (),
) -> EvalReport:
    """Classify every labelled example; see the module docstring for what trains on what.

    Without `leave_one_out` the labelled file is a held-out test set: only `configured`
    examples (minus any with the same text as a test item) train the classifier.
    """
    test_keys = {fold(e.text) for e in labelled}
    base = [e for e in configured if fold(e.text) not in test_keys]
    rows: list[EvalRow] = []
    model = "rules"
    if leave_one_out:
        for i, example in enumerate(labelled):
            key = fold(example.text)
            train = base + [e for j, e in enumerate(labelled) if j != i and fold(e.text) != key]
            classifier = factory(train)
            model = classifier.model
            p = classifier.classify_text(example.text).placement
            rows.append(EvalRow(example, p.section, p.confidence, p.reason))
    else:
        classifier = factory(base)
        model = classifier.model
        for example in labelled:
            p = classifier.classify_text(example.text).placement
            rows.append(EvalRow(example, p.section, p.confidence, p.reason))
    return EvalReport(
        tuple(rows),
        (*labels, OFF),
        model,
        "leave-one-out" if leave_one_out else "held-out",
    )
