"""The benchmark: `python -m bench` (`make bench`); `python -m bench --quick` in CI.

1. Generates a corpus (`bench.corpus`: N sources x 30 items of RSS 2.0, Atom, JSON Feed and
   listing pages, 12% of the stories repeated across sources) and serves it from 127.0.0.1
   with ETag / Last-Modified (`bench.server`, its own process).
2. Runs our full cycle (`pipeline.run_once`: fetch, parse, normalize, classify, cluster,
   store, render) into an empty store, then the unchanged second cycle (every source 304),
   with per-stage wall and CPU time, items/s and peak memory (`bench.cycle`, one process
   per measurement). The timed rounds run without the memory sampler beside them (its CPU
   would be the measured cycle's on a busy machine); the peak comes from one more run of
   each peer, sampled.
3. Runs the peer on the same served sources in the same run: lemon24/reader's
   `update_feeds(workers=W)` with its best W of a few tried; rounds are paired (ours then
   reader, then the other way round) and compared pair by pair; medians reported. With
   clustering on, each round also runs our cycle without cross-source clustering after the
   pair (a diagnosis, not a target: how much of our cycle clustering takes).
4. Scaling: cycle time at 100, 1,000 and 5,000 sources, store size on disk; clustering cost
   per new item at 10k, 100k and 1M stored items (`bench.clustering`, issue 4) and the
   classifier's cost (`bench.classify`, issue 5) when those modules are present.
5. Writes bench/RESULTS.md (with machine, versions, date) and bench/results.json.

Nothing here asserts a timing; the targets are reported as met or not.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.corpus import MIX, fixed_now, generate_corpus
from bench.server import ServerProcess

HERE = Path(__file__).resolve().parent
STAGES = ("fetch", "parse", "normalize", "classify", "cluster", "store", "render")
VERSIONS = (
    "aggregator",
    "reader",
    "feedparser",
    "lxml",
    "httpx",
    "sqlalchemy",
    "nh3",
    "beautifulsoup4",
)

# The targets (reported, never asserted).
TARGET_PEER_RATIO = 1 / 3  # our full cycle / reader's, median of pairs
TARGET_SECOND_RATIO = 1 / 10  # unchanged second cycle / first cycle
TARGET_RSS = 300 * 2**20
TARGET_DIGEST_S = 1.0
TARGET_CLUSTER_GROWTH = 2.0


def cycle(peer: str, base: str, sources: int, **options: int) -> dict[str, Any]:
    """One measurement in a fresh process (see bench/cycle.py)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{peer}-") as tmp:
        argv = [sys.executable, "-m", "bench.cycle", peer, "--base", base]
        argv += ["--sources", str(sources), "--dir", tmp]
        for key, value in options.items():
            argv += [f"--{key}", str(value)]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=HERE.parent, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"bench.cycle {peer} failed:\n{proc.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def log(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def best_reader_workers(
    base: str, sources: int, candidates: list[int]
) -> tuple[int, list[dict[str, Any]]]:
    trials = []
    for workers in candidates:
        result = cycle("reader", base, sources, workers=workers)
        log(f"reader workers={workers}: {result['first']['wall']:.2f} s")
        trials.append({"workers": workers, "wall": result["first"]["wall"]})
    best = min(trials, key=lambda t: t["wall"])
    return int(best["workers"]), trials


def paired_rounds(
    base: str, sources: int, rounds: int, workers: int, concurrency: int, clustering: int
) -> list[dict[str, Any]]:
    pairs = []
    for n in range(rounds):
        order = ("ours", "reader") if n % 2 == 0 else ("reader", "ours")
        got: dict[str, dict[str, Any]] = {}
        for peer in order:
            if peer == "ours":
                got[peer] = cycle(
                    "ours",
                    base,
                    sources,
                    concurrency=concurrency,
                    clustering=clustering,
                    memory=0,
                )
            else:
                got[peer] = cycle("reader", base, sources, workers=workers, memory=0)
        ours, reader = got["ours"], got["reader"]
        pair = {
            "round": n + 1,
            "order": list(order),
            "ours": ours,
            "reader": reader,
            "ratio_first": ours["first"]["wall"] / reader["first"]["wall"],
            "ratio_second_vs_reader": ours["second"]["wall"] / reader["second"]["wall"],
            "ours_second_vs_first": ours["second"]["wall"] / ours["first"]["wall"],
        }
        if clustering:
            # Diagnosis, not a target: our cycle without cross-source clustering (a stage
            # reader does not have), against the same round's reader.
            off = cycle("ours", base, sources, concurrency=concurrency, clustering=0, memory=0)
            pair["ours_unclustered"] = off
            pair["ratio_first_unclustered"] = off["first"]["wall"] / reader["first"]["wall"]
        pairs.append(pair)
        log(
            f"round {n + 1}: ours {ours['first']['wall']:.2f} s / reader "
            f"{reader['first']['wall']:.2f} s = {pair['ratio_first']:.2f}; ours second "
            f"{ours['second']['wall']:.2f} s"
            + (f"; without clustering {pair['ratio_first_unclustered']:.2f}" if clustering else "")
        )
    return pairs


def memory_runs(
    base: str, sources: int, workers: int, concurrency: int, clustering: int
) -> dict[str, dict[str, Any]]:
    """One run of each peer with the memory sampler, for the peaks (the paired rounds run
    without it: see bench.cycle.RssSampler)."""
    runs = {
        "ours": cycle("ours", base, sources, concurrency=concurrency, clustering=clustering),
        "reader": cycle("reader", base, sources, workers=workers),
    }
    for peer, result in runs.items():
        log(f"memory run {peer}: peak {result['peak_rss_tree'] / 2**20:.0f} MB")
    return runs


def scaling(
    sizes: list[int], concurrency: int, measured: dict[int, dict[str, Any]], clustering: int
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        if n in measured:
            result = measured[n]
        else:
            with ServerProcess(n) as base:
                result = cycle("ours", base, n, concurrency=concurrency, clustering=clustering)
        first = result["first"]
        rows.append(
            {
                "sources": n,
                "items": first["stored_items"],
                "first_wall": first["wall"],
                "items_per_s": first["stored_items"] / first["wall"],
                "second_wall": result["second"]["wall"],
                "store_mb": result["store_bytes"] / 2**20,
                "peak_mb": result["peak_rss_tree"] / 2**20,
            }
        )
        log(f"scaling {n}: {first['wall']:.2f} s, {rows[-1]['store_mb']:.1f} MB on disk")
    return rows


def optional_bench(module: str, **kwargs: Any) -> list[dict[str, Any]] | str:
    """Rows from another helper's bench module, or why there are none."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return f"{module} is not present"
    run = getattr(mod, "run", None)
    if run is None:
        return f"{module} has no run() function"
    accepted = inspect.signature(run).parameters
    rows: list[dict[str, Any]] = run(**{k: v for k, v in kwargs.items() if k in accepted})
    return rows


def machine() -> dict[str, Any]:
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "load_before": os.getloadavg()[0],
        "versions": versions,
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _quality_lines(q: dict[str, Any] | None, off: dict[str, Any] | None) -> list[str]:
    """What the timed cycle's stories are worth: against the corpus's truth (`story_key`)."""
    if not q:
        return []
    text = (
        f"Stories against the corpus's truth (round 1): {q['stories']:,} stories for "
        f"{q['true_stories']:,} true ones; of the pairs of items we put in one story, "
        f"{q['precision']:.4f} belong together (pairwise precision), and of the "
        f"{q['true_pairs']:,} pairs that do, {q['recall']:.4f} are together (recall)."
    )
    if off:
        text += (
            f" Without cross-source clustering: {off['stories']:,} stories, precision "
            f"{off['precision']:.4f}, recall {off['recall']:.4f} (the outlets' rewrites, under "
            "URLs of their own, are found by clustering alone)."
        )
    return [text, ""]


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    pairs = results["pairs"]
    ours = [p["ours"] for p in pairs]
    cluster = results["clustering"]
    growth = None
    if isinstance(cluster, list) and len(cluster) >= 2:
        per_item = [r.get("per_item_ms_median") for r in cluster]
        if all(isinstance(v, int | float) and v > 0 for v in per_item):
            growth = max(per_item) / min(per_item)
    summary = {
        "ratio_first_median": median([p["ratio_first"] for p in pairs]),
        "ratio_first_unclustered_median": median(
            [p["ratio_first_unclustered"] for p in pairs if "ratio_first_unclustered" in p]
        ),
        "second_vs_first_median": median([p["ours_second_vs_first"] for p in pairs]),
        "ours_first_median": median([o["first"]["wall"] for o in ours]),
        "ours_second_median": median([o["second"]["wall"] for o in ours]),
        "reader_first_median": median([p["reader"]["first"]["wall"] for p in pairs]),
        "reader_second_median": median([p["reader"]["second"]["wall"] for p in pairs]),
        # CPU of the first cycle over all of a peer's processes, and the cores it kept busy
        "ours_cpu_median": median([o["first"]["cpu_total"] for o in ours]),
        "ours_cores_median": median([o["first"]["cores_busy"] for o in ours]),
        "reader_cpu_median": median([p["reader"]["first"]["cpu_total"] for p in pairs]),
        "reader_cores_median": median([p["reader"]["first"]["cores_busy"] for p in pairs]),
        "peak_rss_max": results["memory"]["ours"]["peak_rss_tree"],
        "reader_peak_rss": results["memory"]["reader"]["peak_rss_tree"],
        "digest_wall_median": median([o["digest"]["wall"] for o in ours]),
        "digest_build_median": median([o["digest"]["build_wall"] for o in ours]),
        "digest_stories": ours[0]["digest"]["stories"],
        "cluster_growth": growth,
        # our stories against the corpus's truth, round 1 (the same in every round but for
        # the order sources are stored in)
        "stories_quality": ours[0].get("clustering_quality"),
        "stories_quality_unclustered": pairs[0]
        .get("ours_unclustered", {})
        .get("clustering_quality"),
    }
    # Diagnosis: the CPU a first cycle could spend and still take TARGET_PEER_RATIO of
    # reader's time, keeping as many cores busy as ours did.
    summary["cpu_for_target"] = (
        TARGET_PEER_RATIO * summary["reader_first_median"] * summary["ours_cores_median"]
    )
    summary["targets"] = {
        "full cycle >= 3x faster than reader": summary["ratio_first_median"] <= TARGET_PEER_RATIO,
        "second cycle >= 10x faster than first": summary["second_vs_first_median"]
        <= TARGET_SECOND_RATIO,
        "peak memory < 300 MB": summary["peak_rss_max"] < TARGET_RSS,
        "digest of 200 stories < 1 s": summary["digest_wall_median"] < TARGET_DIGEST_S
        and summary["digest_stories"] >= 200,
        "clustering per item within 2x, 10k -> 1M": None
        if growth is None
        else growth <= TARGET_CLUSTER_GROWTH,
    }
    return summary


def _mark(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "NOT met")


def markdown(results: dict[str, Any]) -> str:
    m, s, corpus = results["machine"], results["summary"], results["corpus"]
    pairs = results["pairs"]
    n = results["sources"]
    lines = [
        "# Benchmark results",
        "",
        f"Generated by `{' '.join(['python -m bench', *results['argv']])}`"
        f" on {m['date']}: {m['cpu']}, {m['cores']} cores, Python {m['python']}, "
        f"{m['platform']} (load average {m['load_before']:.2f} at the start). "
        f"Cross-source clustering in our cycles: {results['clustering_mode']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Corpus: {n:,} sources x 30 items ({corpus['items']:,} items, "
        f"{corpus['duplicates']:,} slots repeating another source's story with a reworded "
        "title, half of them under its URL with tracking parameters, half under the outlet's "
        f"own URL; {corpus['bytes'] / 2**20:.1f} MB), "
        + ", ".join(f"{int(share * 100)}% {kind}" for kind, share in MIX)
        + ", served from 127.0.0.1 by a separate process with ETag/Last-Modified. "
        f"reader runs `update_feeds(workers={results['reader_workers']})` "
        "(its best of " + ", ".join(str(t["workers"]) for t in results["reader_trials"]) + "); "
        "reader does not read HTML listing pages, so its store misses those items, and it "
        "neither classifies, clusters nor renders: the comparison is generous to it. "
        "The paired rounds run without the memory sampler (a process reading /proc ten "
        "times a second, whose CPU would be taken from our cycle, which keeps both cores "
        "busy, and not from reader's, which leaves one idle); peak memory comes from one "
        "more run of each peer, sampled: "
        f"ours {results['memory']['ours']['first']['wall']:.2f} s, "
        f"reader {results['memory']['reader']['first']['wall']:.2f} s.",
        "",
        "## Targets",
        "",
        "| target | measured | |",
        "|---|---|---|",
        f"| full {n:,}-source cycle >= 3x faster than reader (ours / reader, median of "
        f"{len(pairs)} paired rounds) | {s['ratio_first_median']:.2f} "
        f"({s['ours_first_median']:.2f} s / {s['reader_first_median']:.2f} s) | "
        f"{_mark(s['targets']['full cycle >= 3x faster than reader'])} |",
        f"| unchanged second cycle >= 10x faster than the first (second / first) | "
        f"{s['second_vs_first_median']:.3f} ({s['ours_second_median']:.2f} s) | "
        f"{_mark(s['targets']['second cycle >= 10x faster than first'])} |",
        f"| peak memory of the {n:,}-source cycle < 300 MB (PSS of the process and its "
        f"descendants, in a run of its own) | {s['peak_rss_max'] / 2**20:.0f} MB (reader "
        f"{s['reader_peak_rss'] / 2**20:.0f} MB) | "
        f"{_mark(s['targets']['peak memory < 300 MB'])} |",
        f"| weekly digest of 200 stories rendered < 1 s | {s['digest_wall_median']:.3f} s "
        f"({s['digest_stories']} stories; {s['digest_build_median']:.2f} s with reading, "
        "selecting and ranking the week's items) | "
        f"{_mark(s['targets']['digest of 200 stories < 1 s'])} |",
        "| clustering cost per new item within 2x from 10k to 1M stored items | "
        + ("-" if s["cluster_growth"] is None else f"{s['cluster_growth']:.2f}x")
        + f" | {_mark(s['targets']['clustering per item within 2x, 10k -> 1M'])} |",
        "",
    ]
    unclustered = [p["ratio_first_unclustered"] for p in pairs if "ratio_first_unclustered" in p]
    if unclustered:
        lines += [
            "Diagnosis, not a target: our full cycle without cross-source clustering (a stage "
            "reader does not have), run in each round after the pair, took "
            f"{s['ratio_first_unclustered_median']:.2f} of reader's time (rounds "
            + ", ".join(f"{r:.2f}" for r in unclustered)
            + "): clustering is where the rest of our cycle goes (docs/design.md, "
            '"Where it stands").',
            "",
        ]
    lines += [
        "## Paired rounds (wall seconds)",
        "",
        "| round | order | ours first | reader first | ours / reader | ours second (304) | "
        "reader second | ours second / first | items ours / reader | ours first without "
        "clustering (after the pair) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        o, r = p["ours"], p["reader"]
        off = p.get("ours_unclustered")
        lines.append(
            f"| {p['round']} | {' then '.join(p['order'])} | {o['first']['wall']:.2f} | "
            f"{r['first']['wall']:.2f} | {p['ratio_first']:.2f} | {o['second']['wall']:.2f} | "
            f"{r['second']['wall']:.2f} | {p['ours_second_vs_first']:.3f} | "
            f"{o['first']['stored_items']:,} / {r['first']['stored_items']:,} | "
            + ("-" if off is None else f"{off['first']['wall']:.2f}")
            + " |"
        )
    lines += [
        "",
        "## CPU of the first cycles (all processes)",
        "",
        "CPU seconds of each peer's first cycle over all its processes (ours: the main "
        "process, the parse workers and the store process; reader: one process, its workers "
        "are threads), and how many cores each kept busy on average (CPU / wall; this machine "
        f"has {m['cores']}).",
        "",
        "| round | ours CPU s | ours cores busy | reader CPU s | reader cores busy | "
        "ours / reader CPU | ours without clustering CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in pairs:
        o, r = p["ours"]["first"], p["reader"]["first"]
        off = p.get("ours_unclustered")
        lines.append(
            f"| {p['round']} | {o['cpu_total']:.2f} | {o['cores_busy']:.2f} | "
            f"{r['cpu_total']:.2f} | {r['cores_busy']:.2f} | "
            f"{o['cpu_total'] / r['cpu_total']:.2f} | "
            + ("-" if off is None else f"{off['first']['cpu_total']:.2f}")
            + " |"
        )
    lines += [
        "",
        f"Diagnosis, not a target: keeping {s['ours_cores_median']:.2f} cores busy (the "
        "median), a first cycle within 1/3 of reader's time could spend at most "
        f"{s['cpu_for_target']:.1f} CPU seconds; ours spent {s['ours_cpu_median']:.1f} "
        f"(reader {s['reader_cpu_median']:.1f}, on {s['reader_cores_median']:.2f} cores).",
    ]
    first = pairs[0]["ours"]
    lines += [
        "",
        f"## Stages of our first cycle (round 1, {n:,} sources)",
        "",
        "Wall time of concurrent work is summed over sources (fetches overlap, parse runs in "
        "worker processes beside the store process), so a stage's wall can exceed the cycle's. "
        "CPU is that of the "
        "process that ran the stage; fetch's CPU is the main process's (HTTP, and handing "
        "the workers' results on); store and cluster run in the store process (a run of 200 "
        "sources or more, issue 8), and cluster's CPU is the workers' feature extraction plus "
        "the store process's matching.",
        "",
        "| stage | wall s (summed) | CPU s | calls |",
        "|---|---|---|---|",
    ]
    for label, cyc in (("first", first["first"]), ("second", first["second"])):
        if label == "second":
            lines += [
                "",
                "Second cycle (every source 304):",
                "",
                "| stage | wall s (summed) | CPU s | calls |",
                "|---|---|---|---|",
            ]
        for stage in STAGES:
            st = cyc["stages"].get(stage)
            if st:
                lines.append(f"| {stage} | {st['wall']:.2f} | {st['cpu']:.2f} | {st['calls']} |")
    one = first["first"]
    lines += [
        "",
        f"Cycle: {one['wall']:.2f} s wall, {one['cpu_main']:.2f} s CPU in the main process "
        f"({one['cpu_total']:.2f} s in all, {one['cores_busy']:.2f} cores busy), "
        f"{one['stored_items'] / one['wall']:,.0f} items/s; {one['stories']:,} stories; "
        f"{one['failed_count']} sources failed.",
        "",
        *_quality_lines(s["stories_quality"], s["stories_quality_unclustered"]),
        "## Scaling (ours, one round each, sampled for memory)",
        "",
        "| sources | items | first cycle s | items/s | second cycle s | store on disk MB "
        "| peak MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in results["scaling"]:
        lines.append(
            f"| {row['sources']:,} | {row['items']:,} | {row['first_wall']:.2f} | "
            f"{row['items_per_s']:,.0f} | {row['second_wall']:.2f} | {row['store_mb']:.1f} | "
            f"{row['peak_mb']:.0f} |"
        )
    for title, key in (
        ("Clustering cost per new item (bench/clustering.py)", "clustering"),
        ("Classification (bench/classify.py)", "classify"),
    ):
        lines += ["", f"## {title}", ""]
        rows = results[key]
        if isinstance(rows, str) or not rows:
            lines.append(f"Not measured: {rows or 'no rows'}.")
            continue
        cols = list(rows[0])
        lines.append("| " + " | ".join(cols) + " |")
        lines.append("|" + "---|" * len(cols))
        lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
    lines += ["", f"Benchmark wall time: {results['elapsed_s']:.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3, help="paired rounds ours/reader")
    parser.add_argument("--reader-workers", default="4,8,16", help="reader worker counts to try")
    parser.add_argument("--concurrency", type=int, default=16, help="our fetch concurrency")
    parser.add_argument("--scaling", default="100,1000,5000", help="source counts, ours only")
    parser.add_argument(
        "--clustering",
        choices=("on", "off"),
        default="on",
        help="cross-source clustering in our cycles (off: to see the other stages alone)",
    )
    parser.add_argument("--cluster-sizes", default="10000,100000,1000000", help="'' to skip")
    parser.add_argument("--cluster-new", type=int, default=1000)
    parser.add_argument(
        "--out", type=Path, default=HERE, help="folder for RESULTS.md and results.json"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="the CI configuration: 100 sources, one round, reader with 8 workers, no scaling "
        "beyond 100, clustering at 1k and 5k items",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sources, args.rounds, args.reader_workers = 100, 1, "8"
        args.scaling, args.cluster_sizes, args.cluster_new = "100", "1000,5000", 100
    t0 = time.perf_counter()
    clustering = int(args.clustering == "on")
    corpus = generate_corpus(args.sources, fixed_now())
    results: dict[str, Any] = {
        "quick": args.quick,
        "clustering_mode": args.clustering,
        "argv": sys.argv[1:] if argv is None else argv,
        "sources": args.sources,
        "machine": machine(),
        "corpus": {
            "items": corpus.items,
            "duplicates": corpus.duplicates,
            "bytes": corpus.size,
            "mix": dict(MIX),
        },
    }
    log(f"corpus: {args.sources} sources, {corpus.items} items, {corpus.size / 2**20:.1f} MB")
    with ServerProcess(args.sources) as base:
        candidates = [int(w) for w in args.reader_workers.split(",")]
        workers, trials = best_reader_workers(base, args.sources, candidates)
        results["reader_workers"], results["reader_trials"] = workers, trials
        results["pairs"] = paired_rounds(
            base, args.sources, args.rounds, workers, args.concurrency, clustering
        )
        results["memory"] = memory_runs(base, args.sources, workers, args.concurrency, clustering)
    sizes = [int(n) for n in args.scaling.split(",") if n]
    results["scaling"] = scaling(
        sizes, args.concurrency, {args.sources: results["memory"]["ours"]}, clustering
    )
    log("clustering")
    cluster_sizes = [int(n) for n in args.cluster_sizes.split(",") if n]
    results["clustering"] = (
        optional_bench("bench.clustering", sizes=cluster_sizes, new=args.cluster_new)
        if cluster_sizes
        else "skipped (--cluster-sizes '')"
    )
    results["classify"] = optional_bench("bench.classify", quick=args.quick)
    results["elapsed_s"] = time.perf_counter() - t0
    results["summary"] = summarize(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (args.out / "RESULTS.md").write_text(markdown(results))
    print((args.out / "RESULTS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
