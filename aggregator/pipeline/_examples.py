"""The learned layer's training data (issue 5): example files and editors' corrections.

Part of the composition root: reads the labelled example files feeds.yaml names and the
corrections in the store, and builds the classifier a run (or a command) uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from aggregator.classify import Classifier, make_classifier, parse_examples, resolve_model
from aggregator.exceptions import ConfigError, ConfigProblem
from aggregator.storage import StorageType
from aggregator.types import ClassifySettings, Config, Correction, Example


def missing_example_files(config: Config) -> list[Path]:
    """Example files feeds.yaml names that do not exist (`aggregator check` warns of them)."""
    return [p for p in config.classify.examples if not p.is_file()]


def read_example_file(path: Path, config: Config) -> list[Example]:
    """One labelled YAML file; unknown section ids and bad YAML are ConfigErrors naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(ConfigProblem(str(path), None, "", f"cannot read: {e}")) from e
    return parse_examples(text, str(path), [s.id for s in config.sections])


def correction_examples(corrections: Sequence[Correction], config: Config) -> list[Example]:
    """Corrections as labelled examples (a section since removed from feeds.yaml is skipped)."""
    known = {s.id for s in config.sections}
    return [
        Example(c.text, c.section, (), f"correction of item {c.item_id}")
        for c in corrections
        if c.text and (c.section is None or c.section in known)
    ]


def load_examples(config: Config, storage: StorageType | None = None) -> tuple[Example, ...]:
    """Every example the learned layer trains on: the files (missing ones skipped), then the
    stored corrections (unless `classify.use_corrections` is off)."""
    examples: list[Example] = []
    for path in config.classify.examples:
        if path.is_file():
            examples.extend(read_example_file(path, config))
    if storage is not None and config.classify.use_corrections:
        examples.extend(correction_examples(storage.get_corrections(), config))
    return tuple(examples)


def worker_settings(settings: ClassifySettings) -> ClassifySettings:
    """What a parse worker classifies with: never the embedding model, which needs more
    memory than a worker's budget; `update_sources` re-classifies with it afterwards."""
    if resolve_model(settings.model) == "embeddings":
        return replace(settings, model="tfidf")
    return settings


def make_run_classifier(config: Config, examples: Sequence[Example]) -> Classifier:
    return make_classifier(config.sections, config.topic, examples, config.classify)
