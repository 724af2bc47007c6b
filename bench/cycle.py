"""One measured cycle pair in a fresh process: ours (`run_once` twice) or the peer's.

    python -m bench.cycle ours   --base URL --sources N --dir DIR [--memory 0]
    python -m bench.cycle reader --base URL --sources N --dir DIR --workers W [--memory 0]
    python -m bench.cycle sample PID     (RssSampler's process: peak PSS of PID's tree)

Prints one JSON object on stdout. Each side runs in its own process so that its peak RSS
and its imports are its own, and so that one side's garbage cannot slow the other. Only the
update calls are timed (imports, set-up and adding feeds are not), for both peers alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.corpus import MIX, TOPICS, source_paths, story_key

# Section rules from the corpus's topic words, so classify has real work to do.
_RULES = {
    "politics": "[parliament, election*, coalition, {term: chancellor, weight: 2}, senator*]",
    "sport": "[cup, transfer, striker, {term: league, weight: 2}, olympic*, derby]",
    "tech": "[chip, software, {term: AI, weight: 2}, browser, encryption, smartphone]",
    "science": "[astronom*, research*, {term: scientists, weight: 2}, vaccine, species]",
    "business": "[bank, profit*, investors, {term: interest rates, weight: 2}, merger]",
}


def children_cpu() -> float:
    """CPU seconds of this process's ended children and of theirs (`RUSAGE_CHILDREN`):
    our parse workers and store process, once they and the fork server that started them
    have exited and been waited for, which the pipeline does when its update ends (the
    fork server goes with the last pool, `aggregator/_budget.py`)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_of(wall: float, main: float, children: float) -> dict[str, float]:
    """A cycle's CPU over all its processes (the main process's threads included: reader's
    workers are threads), and how many cores that kept busy on average."""
    total = main + children
    return {"cpu_children": children, "cpu_total": total, "cores_busy": total / wall}


def paths(sources: int) -> list[tuple[str, str]]:
    """(path, kind) of every source of the corpus, as the server serves them. Not from
    `generate_corpus`: the bodies it makes (about 30 MB at 1,000 sources) stayed in the
    measured process's heap, and in its peak memory, after they were dropped."""
    return source_paths(sources)


def write_config(
    folder: Path, base: str, sources: int, concurrency: int, clustering: bool = True
) -> Path:
    lines = [
        "newsletter: {title: Bench, link: 'https://bench.example.org/', description: b, "
        "timezone: UTC}",
        "storage: {database: 'sqlite:///bench.db'}",
        "output: {dir: out}",
        f"fetch: {{allow_private_network: true, concurrency: {concurrency}, "
        f"per_host: {min(concurrency, 32)}}}",
        # 5 sections x 40: the weekly digest of 200 stories.
        "digest: {max_per_section: 40}",
        *([] if clustering else ["clustering: {enabled: false}"]),
        "sources:",
    ]
    topics = list(TOPICS)
    for n, (path, _kind) in enumerate(paths(sources)):
        lines.append(
            f"  - {{id: s{n:05d}, name: Outlet {n}, url: '{base}{path}', "
            f"section: {topics[n % len(topics)]}}}"
        )
    lines.append("sections:")
    lines += [f"  - {{id: {t}, title: {t.title()}, rules: {_RULES[t]}}}" for t in topics]
    path = folder / "feeds.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


class RssSampler:
    """Peak memory of this process and all its descendants (parse workers and the fork
    server): the summed PSS, sampled from /proc every 100 ms by a process of its own
    (`python -m bench.cycle sample PID`). Reading a 200 MB process's smaps_rollup costs the
    reader about 5 ms of kernel time, so a sampling thread would bill the measured process
    about a tenth of a core; the sampler process leaves itself out of the tree it sums.
    That process still takes CPU: about 0.8 s over our 1,000-source cycle on two cores (five
    processes to read ten times a second), CPU our cycle, which keeps both cores busy, would
    otherwise use; reader's leaves a core idle. In paired 1,000-source runs without it
    against with it, ours took a median 0.97 of the time (8 runs, 0.85 to 1.09), reader's
    1.02 (6 runs, 0.93 to 1.06). So the benchmark's timed rounds run without it (`--memory
    0`), and the peak comes from one more run of each peer (`bench.__main__`)."""

    def __init__(self) -> None:
        self.peak = 0
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> RssSampler:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.cycle", "sample", str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        return self

    def __exit__(self, *exc: object) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        out, _ = proc.communicate("", timeout=30)  # stdin closed: it prints the peak, exits
        self.peak = int(out.strip() or 0)


def sample_until_stdin_closes(root: int, interval: float = 0.1) -> int:
    """The peak of `tree_rss(root)` (this process left out) until stdin is closed."""
    peak = 0
    done = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        done.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    while not done.wait(interval):
        peak = max(peak, tree_rss(root, skip=os.getpid()))
    return max(peak, tree_rss(root, skip=os.getpid()))


def tree_rss(root: int, skip: int | None = None) -> int:
    """Bytes of memory `root` and its descendants (but `skip` and its own) hold: the sum of
    their proportional set sizes (PSS, Linux), so pages the fork server shares with its
    workers count once."""
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        if pid == skip:
            continue
        total += _pss(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for task in tasks:  # a child belongs to the thread that started it
            try:
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
            except (OSError, ValueError):
                pass
    return total


def _pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return 0


def _count_stories(database: Path) -> int:
    with contextlib.closing(sqlite3.connect(database)) as db:
        return int(db.execute("SELECT count(*) FROM stories").fetchone()[0])


def clustering_quality(database: Path) -> dict[str, Any]:
    """Our stories against the corpus's truth (`story_key` of each item's link): how many
    there are, and the pairwise precision and recall of "these two items are one story"
    (as `aggregator stories eval` counts them). Read after the measured cycles."""
    from aggregator.cluster import pairwise_quality

    with contextlib.closing(sqlite3.connect(database)) as db:
        rows = db.execute("SELECT id, story_id, link FROM items").fetchall()
    gold = {item: story_key(link) for item, _, link in rows}
    ours = {item: story for item, story, _ in rows}
    quality = pairwise_quality(gold, ours)
    return {
        "stories": len(set(ours.values())),
        "true_stories": len(set(gold.values())),
        "true_pairs": quality.true_pairs,
        "precision": quality.precision,
        "recall": quality.recall,
    }


def _sampler(memory: bool) -> RssSampler | contextlib.nullcontext[None]:
    return RssSampler() if memory else contextlib.nullcontext()


def _peak(sampler: RssSampler | None) -> int | None:
    return None if sampler is None else sampler.peak


def run_ours(
    base: str,
    sources: int,
    folder: Path,
    concurrency: int,
    clustering: bool = True,
    memory: bool = True,
) -> dict[str, Any]:
    from aggregator import pipeline
    from aggregator.config import load_config
    from aggregator.pipeline._outputs import _environment, render_period
    from aggregator.render import render_digest
    from aggregator.storage import open_storage

    config = load_config(write_config(folder, base, sources, concurrency, clustering))
    out: dict[str, Any] = {"peer": "ours", "sources": sources, "clustering": clustering}
    with _sampler(memory) as rss:
        for label in ("first", "second"):
            now = datetime.now(UTC)
            storage = open_storage(config.database, now)
            times = pipeline.StageTimes()

            async def go(
                storage: Any = storage, now: datetime = now, times: Any = times
            ) -> pipeline.RunReport:
                async with pipeline.open_client(config) as client:
                    return await pipeline.run_once(config, storage, client, now, timings=times)

            try:
                w0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
                report = asyncio.run(go())
                wall, cpu = time.perf_counter() - w0, time.process_time() - c0
                out[label] = {
                    "wall": wall,
                    "cpu_main": cpu,
                    **cpu_of(wall, cpu, children_cpu() - k0),
                    "stages": times.as_dict(),
                    "new_items": sum(r.new_items for r in report.results),
                    "not_modified": sum(r.not_modified for r in report.results),
                    "failed": [f"{r.source_id}: {r.error}" for r in report.failed][:5],
                    "failed_count": len(report.failed),
                    "stored_items": storage.count_items(),
                    # counted in the database: loading every story to count them would add
                    # the bench's own memory to the peak it measures
                    "stories": _count_stories(folder / "bench.db"),
                }
                if label == "first":
                    # The weekly digest of (up to) 200 stories: 5 sections x 40. `wall` is
                    # the rendering (templates, inlined CSS, .eml); `build_wall` adds reading
                    # the week's items from the store, selecting and ranking.
                    w0 = time.perf_counter()
                    week = (now - timedelta(days=7), now + timedelta(minutes=1))
                    digest, _ = render_period(config, storage, now, *week)
                    build = time.perf_counter() - w0
                    w0 = time.perf_counter()
                    render_digest(
                        digest,
                        _environment(config.templates_dir),
                        source_urls={s.id: s.url for s in config.sources},
                        sender=config.digest.sender,
                        teaser_chars=config.digest.teaser_chars,
                    )
                    out["digest"] = {
                        "wall": time.perf_counter() - w0,
                        "build_wall": build,
                        "stories": digest.story_count,
                    }
            finally:
                storage.close()
    out["store_bytes"] = sum(p.stat().st_size for p in folder.glob("bench.db*"))
    out["peak_rss_tree"] = _peak(rss)
    out["peak_rss_main"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["clustering_quality"] = clustering_quality(folder / "bench.db")  # after the peaks
    return out


def run_reader(
    base: str, sources: int, folder: Path, workers: int, memory: bool = True
) -> dict[str, Any]:
    from reader import make_reader

    reader = make_reader(str(folder / "reader.sqlite"))
    for path, _kind in paths(sources):
        reader.add_feed(base + path)
    out: dict[str, Any] = {"peer": "reader", "sources": sources, "workers": workers}
    with _sampler(memory) as rss:
        for label in ("first", "second"):
            w0, c0, k0 = time.perf_counter(), time.process_time(), children_cpu()
            reader.update_feeds(workers=workers, scheduled=False)
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            spent = cpu_of(wall, cpu, children_cpu() - k0)
            counts = reader.get_entry_counts()
            broken = sum(1 for f in reader.get_feeds() if f.last_exception)
            out[label] = {
                "wall": wall,
                "cpu_main": cpu,
                **spent,
                "stored_items": counts.total,
                "failed_count": broken,
            }
    reader.close()
    out["store_bytes"] = sum(p.stat().st_size for p in folder.glob("reader.sqlite*"))
    out["peak_rss_tree"] = _peak(rss)
    out["peak_rss_main"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main() -> None:
    if sys.argv[1:2] == ["sample"]:  # RssSampler's process
        print(sample_until_stdin_closes(int(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(prog="python -m bench.cycle")
    parser.add_argument("peer", choices=["ours", "reader"])
    parser.add_argument("--base", required=True)
    parser.add_argument("--sources", type=int, required=True)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=8, help="reader's update_feeds workers")
    parser.add_argument("--concurrency", type=int, default=16, help="our fetch concurrency")
    parser.add_argument(
        "--clustering", type=int, default=1, help="0: cross-source clustering off (diagnosis)"
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=1,
        help="0: no memory sampler beside the cycle (its peak is then null; see RssSampler)",
    )
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.peer == "ours":
        result = run_ours(
            args.base,
            args.sources,
            args.dir,
            args.concurrency,
            bool(args.clustering),
            bool(args.memory),
        )
    else:
        result = run_reader(args.base, args.sources, args.dir, args.workers, bool(args.memory))
    result["mix"] = dict(MIX)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
