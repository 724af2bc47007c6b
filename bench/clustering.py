"""Benchmark: the cost of clustering one new item as the store grows (issue 4).

For each store size (10k, 100k, 1M items by default) a SQLite store is filled with synthetic
news items arriving at a steady rate (`--per-day`, default 1,000 a day: a 1M-item store holds
1,000 days), as one event told by one to four outlets with shared names, numbers and words.
Then, as a run does, the window index is built from the store (the items of the last 14 days,
one indexed query) and `--new` fresh items are matched against it and added, the sizes taking
turns (`run`), so that a machine whose speed drifts weighs on every size alike.

Reported per size: the items in the window, the time to load and index the window, the index's
memory (tracemalloc, the index and its features), and per new item the wall time and the
number of candidate comparisons (the number that must stay flat).

    python -m bench.clustering [--sizes 10000,100000,1000000] [--new 1000] [--per-day 1000]

`run(...)` returns the rows as plain dicts (bench/__main__ may call it).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aggregator.cluster import StoryIndex
from aggregator.pipeline._cluster import RunClusterer, features_of
from aggregator.storage import open_storage
from aggregator.types import ClusterSettings, Item, Placement

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
BLOCK = 50  # new items clustered per size and turn (see `run`)

# A Zipf-like vocabulary: a few words everywhere, most of them rare (as in news text).
_SYLLABLES = ["ka", "lo", "mi", "ne", "ra", "su", "ti", "vo", "ze", "pa", "do", "ge", "ba", "ri"]


def _word(rng: random.Random, parts: int) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(parts))


class _Corpus:
    def __init__(self, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.vocab = [_word(self.rng, 3) for _ in range(20_000)]
        self.weights = [1 / (i + 1) for i in range(len(self.vocab))]
        self.n = 0

    def event(self) -> tuple[list[str], list[str], list[str]]:
        rng = self.rng
        names = [_word(rng, 3).title() for _ in range(3)]
        numbers = [str(rng.randint(10, 99999)) for _ in range(2)]
        words = rng.choices(self.vocab, self.weights, k=25)
        return names, numbers, words

    def item(self, event: tuple[list[str], list[str], list[str]], source: int) -> Item:
        rng = self.rng
        names, numbers, words = event
        self.n += 1
        title_words = rng.sample(words, 5) + rng.sample(names, 2)
        rng.shuffle(title_words)
        body = rng.sample(words, 15) + names + rng.sample(numbers, 1)
        rng.shuffle(body)
        title = " ".join(title_words).capitalize()
        text = "The " + " ".join(body) + "."
        return Item(
            source_id=f"s{source}",
            guid=f"g{self.n}",
            url=f"https://s{source}.example/{self.n}",
            link=f"https://s{source}.example/{self.n}",
            title=title,
            title_key=title.lower(),
            summary_html=text,
            summary_text=text,
            published=None,
        )

    def day(self, count: int) -> Iterator[Item]:
        made = 0
        while made < count:
            event = self.event()
            for source in self.rng.sample(range(40), self.rng.randint(1, 4)):
                if made == count:
                    break
                yield self.item(event, source)
                made += 1


def _fill(url: str, size: int, per_day: int, corpus: _Corpus) -> None:
    storage = open_storage(url, NOW)
    try:
        days = max(1, size // per_day)
        for d in range(days, 0, -1):
            when = NOW - timedelta(days=d)
            batch = list(corpus.day(per_day))
            with storage.transaction() as tx:
                ids = tx.add_stories(when, len(batch))
                tx.add_items(
                    [(i, s, Placement(None)) for i, s in zip(batch, ids, strict=True)], when
                )
    finally:
        storage.close()


@dataclass
class _Store:
    """One store size, filled and its window index built, with its new items to cluster."""

    size: int
    fill_s: float
    load_s: float
    index_bytes: int
    window_items: int
    index: StoryIndex
    settings: ClusterSettings
    fresh: list[Item]
    before: int  # the index's comparisons before the new items
    per_item: list[float] = field(default_factory=list)
    joined: int = 0


def _prepare(size: int, *, new: int, per_day: int, folder: Path) -> _Store:
    """Fill a store of `size` items and build its window index."""
    corpus = _Corpus()
    url = f"sqlite:///{folder / f'store-{size}.db'}"
    t0 = time.perf_counter()
    _fill(url, size, per_day, corpus)
    fill_s = time.perf_counter() - t0
    settings = ClusterSettings()
    storage = open_storage(url, NOW)
    try:
        clusterer = RunClusterer.load(storage, settings, NOW)
        assert clusterer is not None
        t0 = time.perf_counter()
        index = clusterer.index  # one query for the window, then features and postings
        load_s = time.perf_counter() - t0
        # The index's memory, measured on a second build (tracemalloc slows it down).
        tracemalloc.start()
        again = RunClusterer.load(storage, settings, NOW)
        assert again is not None
        before_index = tracemalloc.get_traced_memory()[0]
        kept = again.index
        index_bytes = tracemalloc.get_traced_memory()[0] - before_index
        tracemalloc.stop()
        del kept, again
    finally:
        storage.close()
    fresh = list(corpus.day(new))
    return _Store(
        size, fill_s, load_s, index_bytes, len(index), index, settings, fresh, index.comparisons
    )


def _cluster(store: _Store, numbers: range) -> None:
    """Cluster some of the store's new items (extract, match, add), each one timed."""
    index, threshold = store.index, store.settings.threshold
    for n in numbers:
        t0 = time.perf_counter()
        features = features_of(store.fresh[n])
        match = index.match(features, threshold)
        index.add(("new", n), features, match.story if match else ("new", n), NOW)
        store.per_item.append(time.perf_counter() - t0)
        store.joined += match is not None


def _row(store: _Store) -> dict[str, Any]:
    per_item, count = store.per_item, len(store.fresh)
    return {
        "stored_items": store.size,
        "window_items": store.window_items,
        "fill_s": round(store.fill_s, 1),
        "load_index_s": round(store.load_s, 3),
        "index_mb": round(store.index_bytes / 2**20, 1),
        "new_items": count,
        "per_item_ms_median": round(statistics.median(per_item) * 1000, 3),
        "per_item_ms_p95": round(sorted(per_item)[int(0.95 * len(per_item))] * 1000, 3),
        "comparisons_per_item": round((store.index.comparisons - store.before) / count, 1),
        "joined_share": round(store.joined / count, 3),
    }


def run(
    sizes: Sequence[int] = DEFAULT_SIZES, *, new: int = 1000, per_day: int = 1000
) -> list[dict[str, Any]]:
    """The benchmark's rows, one per store size, as plain dicts.

    Every store is filled and indexed first; then their new items are clustered in turns,
    BLOCK items of one size, then of the next (the order reversed every other turn), so a
    machine that slows down or speeds up meanwhile weighs on every size alike. Measured
    one size after another, the same 10k store took 1.53 ms per item before the 100k
    store's turn and 1.88 ms after it, on a machine shared with other work."""
    with tempfile.TemporaryDirectory(prefix="agg-cluster-bench-") as tmp:
        stores = [_prepare(size, new=new, per_day=per_day, folder=Path(tmp)) for size in sizes]
        for turn, start in enumerate(range(0, new, BLOCK)):
            for store in stores if turn % 2 == 0 else stores[::-1]:
                _cluster(store, range(start, min(start + BLOCK, len(store.fresh))))
        return [_row(store) for store in stores]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.clustering", description=__doc__)
    parser.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)))
    parser.add_argument("--new", type=int, default=1000, help="new items clustered per size")
    parser.add_argument("--per-day", type=int, default=1000, help="items arriving per day")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s]
    for row in run(sizes, new=args.new, per_day=args.per_day):
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
