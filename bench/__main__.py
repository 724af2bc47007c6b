"""Benchmark: `aggregator run --once` over the real-world corpus, served from 127.0.0.1.

Figures are reported as ratios against a baseline measured in the same run (the machine is
noisy): the baseline is plain `feedparser.parse` over the same feed bytes, one after the
other, which is the least any feed reader must do. Needs ../shared/corpus (or
AGGREGATOR_CORPUS).

    python -m bench [--repeat N]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import feedparser

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.storage import open_storage
from tests.httpserver import Server

ROOT = Path(__file__).resolve().parent.parent
PAGES = [
    "pages/netnewswire/RSCore/daringfireball.html",
    "pages/htmldate/blog.wordpress.com.html",
    "pages/newspaper/cnn_main_site.html",
    "pages/rubycocos-feedparser/indie-blog.html",
    "pages/netnewswire/RSCore/inessential.html",
]


def corpus_dir() -> Path:
    path = Path(os.environ.get("AGGREGATOR_CORPUS", ROOT.parent / "shared" / "corpus"))
    if not (path / "MANIFEST.tsv").is_file():
        sys.exit(f"bench: the corpus is missing at {path} (set AGGREGATOR_CORPUS)")
    return path


def real_feeds(corpus: Path) -> list[str]:
    with (corpus / "MANIFEST.tsv").open(newline="") as f:
        rows = csv.DictReader(f, delimiter="\t")
        return [r["path"] for r in rows if r["category"] == "real"]


def baseline(corpus: Path, feeds: list[str]) -> float:
    blobs = [(corpus / p).read_bytes() for p in feeds]
    t0 = time.perf_counter()
    for blob in blobs:
        feedparser.parse(io.BytesIO(blob))
    return time.perf_counter() - t0


def write_config(folder: Path, base: str, feeds: list[str]) -> Path:
    lines = [
        "newsletter: {title: Bench, link: 'https://bench.example.org/', description: b, "
        "timezone: UTC}",
        "storage: {database: 'sqlite:///bench.db'}",
        "output: {dir: out}",
        "fetch: {allow_private_network: true, concurrency: 8, per_host: 8}",
        "sources:",
    ]
    lines += [
        f"  - {{id: f{n:03d}, name: F{n}, url: '{base}/files/{p}', section: news}}"
        for n, p in enumerate(feeds)
    ]
    lines += [
        f"  - {{id: p{n:03d}, name: P{n}, url: '{base}/files/{p}', kind: page, section: news}}"
        for n, p in enumerate(PAGES)
    ]
    lines += ["sections:", "  - {id: news, title: News}"]
    path = folder / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_once(config_path: Path) -> tuple[float, int]:
    config = load_config(config_path)
    now = datetime.now(UTC)
    storage = open_storage(config.database, now)

    async def go() -> pipeline.RunReport:
        async with pipeline.open_client(config) as client:
            return await pipeline.run_once(config, storage, client, now)

    try:
        t0 = time.perf_counter()
        report = asyncio.run(go())
        elapsed = time.perf_counter() - t0
    finally:
        storage.close()
    return elapsed, sum(r.new_items for r in report.results)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of each measurement")
    args = parser.parse_args()
    corpus = corpus_dir()
    feeds = real_feeds(corpus)
    base_times, first, cached, full = [], [], [], []
    items = 0
    with Server(corpus) as server:
        for _ in range(args.repeat):
            base_times.append(baseline(corpus, feeds))
            with tempfile.TemporaryDirectory() as tmp:
                config = write_config(Path(tmp), server.base, feeds)
                server.conditional = True
                t, items = run_once(config)
                first.append(t)
                cached.append(run_once(config)[0])  # every source answers 304
                server.conditional = False
                full.append(run_once(config)[0])  # full bodies, nothing new
    base = statistics.median(base_times)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"corpus: {len(feeds)} real feeds + {len(PAGES)} pages; {items} items stored")
    print(f"baseline (feedparser.parse over the feed bytes, serial): {base:.2f} s median")
    for name, times in [
        ("run --once, empty store", first),
        ("run --once, all 304", cached),
        ("run --once, re-parse, 0 new", full),
    ]:
        med = statistics.median(times)
        print(f"{name:<30} {med:7.2f} s  = {med / base:5.2f} x baseline")
    print(f"peak RSS of the benchmark process: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
