"""What a parse worker runs: Fetched -> parsed, normalized, classified items (pure).

Part of the composition root (see `aggregator.pipeline`), in a module of its own so that the
parse workers' fork server (`_budget.WorkerPool`, `preload`) imports only the stages a worker
runs (parse, normalize, dedupe, classify and clustering's text features), not the store, the
HTTP client or the renderers: about 20 MB less in every worker (issue 8).
"""

from __future__ import annotations

import functools
import pickle
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aggregator.classify import Classifier, make_classifier
from aggregator.cluster import Features, extract_features
from aggregator.dedupe import disambiguate_guids
from aggregator.normalize import (
    MAX_REPLACEMENT_SHARE,
    normalize_entry,
    replacement_flood,
    truncated_fields,
)
from aggregator.parse import parse_fetched
from aggregator.pipeline._timing import Laps
from aggregator.types import (
    ClassifySettings,  # issue 5
    Example,  # issue 5
    Fetched,
    Item,
    Placement,
    Section,
    Source,
    Topic,
    pickled_by_fields,
)


def features_of(item: Item) -> Features:
    """An item's clustering features (in the parse worker, and for stored items)."""
    return extract_features(item.title, item.summary_text)


@pickled_by_fields  # issue 8: pickled in the parse worker (`PreparedBytes`)
@dataclass(frozen=True, slots=True)
class Prepared:
    """A source's parsed, normalized and classified items, ready to store."""

    items: tuple[tuple[Item, Placement], ...]
    skipped: int
    warnings: tuple[str, ...]
    # bench: (stage, wall s, cpu s) of parse / normalize / classify, as the worker saw them
    times: tuple[tuple[str, float, float], ...] = field(default=(), compare=False)
    # issue 8: each item's clustering features, aligned with `items` (empty: not computed),
    # extracted in the parse worker so the main process only matches
    features: tuple[Features, ...] = ()

    @property
    def count(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class PreparedBytes:
    """A `Prepared` as the parse worker pickled it, for a store process (issue 8): the main
    process passes `payload` on unread and reads only what is beside it."""

    payload: bytes
    count: int  # of items
    skipped: int
    warnings: tuple[str, ...]
    times: tuple[tuple[str, float, float], ...] = field(default=(), compare=False)

    @classmethod
    def pack(cls, prepared: Prepared) -> PreparedBytes:
        payload = pickle.dumps(prepared, protocol=pickle.HIGHEST_PROTOCOL)
        return cls(payload, prepared.count, prepared.skipped, prepared.warnings, prepared.times)

    def unpack(self) -> Prepared:
        prepared: Prepared = pickle.loads(self.payload)
        return prepared


def prepare_items(
    fetched: Fetched, source: Source, classifier: Classifier, limit: int, *, cluster: bool = False
) -> Prepared:
    """Fetched -> classified Items (pure, CPU-bound: run it off the event loop); with
    `cluster`, each item's clustering features too (issue 8)."""
    laps = Laps()
    parsed = parse_fetched(fetched, source.kind, source.selectors)
    laps.lap("parse")
    items: list[Item] = []
    skipped = 0
    truncated: Counter[str] = Counter()
    for entry in parsed.entries:
        item = normalize_entry(entry, source.id)
        if item is None:
            skipped += 1
        else:
            items.append(item)
            truncated.update(truncated_fields(entry, item))
    warnings = list(parsed.warnings)
    if skipped:
        warnings.append(f"skipped {skipped} entries with no title, link or text")
    if truncated:
        plural = {"title": "titles", "summary": "summaries"}
        counts = ", ".join(f"{n} {plural[f]}" for f, n in sorted(truncated.items()))
        warnings.append(f"truncated oversized fields: {counts}")
    damaged = [i.title for i in items if replacement_flood(i.title)]
    if damaged:  # FAULTS C4: stored all the same, and the editor told
        many = f"{len(damaged)} titles are" if len(damaged) > 1 else "1 title is"
        warnings.append(
            f"encoding_damage: {many} more than {MAX_REPLACEMENT_SHARE:.0%} U+FFFD (bytes that "
            "do not decode), "
            f"e.g. {damaged[0][:80]!r}; check the source's charset"
        )
    items = disambiguate_guids(items)
    if len(items) > limit:
        # Keep the newest: a 10,000-item archive feed must not flood one run.
        dated = sorted(
            items, key=lambda i: i.published or datetime.min.replace(tzinfo=UTC), reverse=True
        )
        warnings.append(f"kept the newest {limit} of {len(items)} entries")
        items = dated[:limit]
    laps.lap("normalize")
    # issue 5: one batch, so the learned layer encodes the source's items together
    placements = classifier.classify_many(items, [source.section] * len(items))
    placed = tuple(zip(items, placements, strict=True))
    laps.lap("classify")
    features = tuple(map(features_of, items)) if cluster else ()
    if cluster:
        laps.lap("cluster")
    return Prepared(
        items=placed,
        skipped=skipped,
        warnings=tuple(warnings),
        times=tuple(laps.times),
        features=features,
    )


_DEFAULT_CLASSIFY = ClassifySettings()  # issue 5


def _prepare_in_worker(
    fetched: Fetched,
    source: Source,
    sections: tuple[Section, ...],
    topic: Topic,
    limit: int,
    examples: tuple[Example, ...] = (),  # issue 5: the learned layer's training data
    settings: ClassifySettings = _DEFAULT_CLASSIFY,
    cluster: bool = False,  # issue 8: extract the items' clustering features here too
    packed: bool = False,  # issue 8: pickled here, for a store process
) -> Prepared | PreparedBytes:
    """prepare_items as a parse worker runs it: the classifier is compiled once per worker."""
    classifier = _worker_classifier(sections, topic, examples, settings)
    prepared = prepare_items(fetched, source, classifier, limit, cluster=cluster)
    return PreparedBytes.pack(prepared) if packed else prepared


@functools.lru_cache(maxsize=4)
def _worker_classifier(
    sections: tuple[Section, ...],
    topic: Topic,
    examples: tuple[Example, ...] = (),
    settings: ClassifySettings = _DEFAULT_CLASSIFY,
) -> Classifier:
    return make_classifier(sections, topic, examples, settings)
