"""A profile of one cycle: `python -m bench.profile [--sources N] [--out bench/PROFILE.txt]`.

pyinstrument (a sampling profiler) records the main process of a first cycle into an empty
store and of the unchanged second cycle (every source answers 304): the event loop's thread
and, with a profiler of its own, the thread the sources are stored on; and a cProfile of the
parse work of one worker's share (the worker processes are not sampled by pyinstrument).
pyinstrument samples every millisecond, which slows tight pure-Python loops (clustering's
scoring) more than C-heavy code; compare shares within one profile, not across tools. The
text goes to `--out`; docs/design.md ("Performance") explains its top items.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyinstrument import Profiler

from bench.corpus import fixed_now, generate_corpus
from bench.cycle import write_config
from bench.server import ServerProcess


def profile_cycles(sources: int, clustering: bool = True) -> str:
    from aggregator import pipeline
    from aggregator.config import load_config
    from aggregator.pipeline import _update
    from aggregator.storage import open_storage

    parts: list[str] = []
    real_store = _update.store_items
    # A run this large stores in a process of its own (issue 8), which no profiler here
    # samples: the profile keeps the stores on the main process's store thread, as before.
    real_least = _update.STORE_PROCESS_MIN_SOURCES
    with ServerProcess(sources) as base, tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), base, sources, 16, clustering))
        for label in ("first cycle (empty store)", "second cycle (unchanged, all 304)"):
            now = datetime.now(UTC)
            storage = open_storage(config.database, now)
            # Sources are stored on a thread of their own (issue 8), which a profiler started
            # on the event loop's thread does not see: a second one samples each store.
            store_profiler = Profiler(interval=0.001, async_mode="disabled")

            def store_items(*args: Any, _p: Profiler = store_profiler, **kwargs: Any) -> Any:
                _p.start()
                try:
                    return real_store(*args, **kwargs)
                finally:
                    _p.stop()

            async def go(storage: object = storage, now: datetime = now) -> None:
                async with pipeline.open_client(config) as client:
                    await pipeline.run_once(config, storage, client, now)  # type: ignore[arg-type]

            profiler = Profiler(interval=0.001, async_mode="disabled")
            _update.store_items = store_items  # type: ignore[assignment]
            _update.STORE_PROCESS_MIN_SOURCES = sources + 1
            try:
                profiler.start()
                asyncio.run(go())
                profiler.stop()
            finally:
                _update.store_items = real_store
                _update.STORE_PROCESS_MIN_SOURCES = real_least
            storage.close()
            parts.append(f"=== main process, event loop thread, {label}, {sources} sources ===")
            parts.append(profiler.output_text(unicode=False, color=False, show_all=False))
            if store_profiler.last_session is not None:
                parts.append(f"=== main process, store thread, {label}, {sources} sources ===")
                parts.append(store_profiler.output_text(unicode=False, color=False, show_all=False))
    return "\n".join(parts)


def profile_worker(sources: int, cluster: bool = True) -> str:
    """cProfile of prepare_items over the corpus bytes, in this process (a worker's work);
    with `cluster`, the items' clustering features too, as a run with clustering on has its
    workers extract them."""
    from aggregator import pipeline
    from aggregator.classify import make_classifier
    from aggregator.config import load_config
    from aggregator.types import Fetched

    corpus = generate_corpus(sources, fixed_now())
    with tempfile.TemporaryDirectory() as tmp:
        config = load_config(write_config(Path(tmp), "http://127.0.0.1:1", sources, 16))
    classifier = make_classifier(config.sections, config.topic)
    fetched = [
        (Fetched(s.id, s.url, 200, d.body, d.content_type), s)
        for s, d in zip(config.sources, corpus.documents, strict=True)
    ]
    prof = cProfile.Profile()
    prof.enable()
    for f, source in fetched:
        pipeline.prepare_items(f, source, classifier, 1000, cluster=cluster)
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("cumulative").print_stats(30)
    stats.sort_stats("tottime").print_stats(25)
    text = out.getvalue().replace(str(Path.cwd()) + "/", "")
    what = "prepare_items, with clustering's features" if cluster else "prepare_items"
    return f"=== parse worker's work ({what}), {sources} sources, cProfile ===\n{text}"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "PROFILE.txt")
    parser.add_argument(
        "--clustering",
        choices=("on", "off", "both"),
        default="both",
        help="profile the cycles with cross-source clustering on, off, or both (default)",
    )
    args = parser.parse_args()
    modes = {"on": [True], "off": [False], "both": [True, False]}[args.clustering]
    parts = []
    for clustering in modes:
        head = f"##### clustering {'on' if clustering else 'off'} #####\n"
        parts.append(head + profile_cycles(args.sources, clustering))
    text = "\n".join(parts) + "\n" + profile_worker(args.sources, cluster=True in modes)
    args.out.write_text(text)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
