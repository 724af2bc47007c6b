"""Which HTTP client settings: `python -m bench.client [--sources N]`.

Fetches every source of the corpus with `aggregator.fetch` (the guarded transport), once
with full bodies (200) and once conditionally (304), at several concurrencies, with the
connection pool keeping connections alive and without. Prints wall and CPU time per feed;
the CPU is the event loop's (the server runs in its own process). The figures chose
`make_client`'s settings (docs/design.md, "Performance").
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from aggregator.fetch import GuardedTransport, fetch_source, make_client
from aggregator.types import FetchSettings, Source, Validators
from bench.corpus import fixed_now, generate_corpus
from bench.server import ServerProcess


async def measure(
    base: str, paths: list[str], concurrency: int, keepalive: bool, conditional: bool
) -> tuple[float, float]:
    """(wall, cpu) seconds to fetch every path once."""
    settings = FetchSettings(
        allow_private_network=True, concurrency=concurrency, per_host=concurrency
    )
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency if keepalive else 0
    )
    client = make_client(settings, GuardedTransport(limits=limits))
    gate = asyncio.Semaphore(concurrency)
    sources = [
        Source(id=f"s{n}", name="s", url=base + p, allow_private_network=True)
        for n, p in enumerate(paths)
    ]
    validators: dict[str, Validators] = {}

    async def one(source: Source, conditional: bool) -> None:
        async with gate:
            fetched = await fetch_source(
                client, source, validators.get(source.id, Validators()), settings
            )
            validators[source.id] = fetched.validators
            assert fetched.not_modified == conditional

    try:
        if conditional:
            await asyncio.gather(*(one(s, False) for s in sources))
        w0, c0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(one(s, conditional) for s in sources))
        return time.perf_counter() - w0, time.process_time() - c0
    finally:
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.client", description=__doc__)
    parser.add_argument("--sources", type=int, default=300)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 16, 64])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    paths = [d.path for d in generate_corpus(args.sources, fixed_now()).documents]
    rows: list[dict[str, Any]] = []
    with ServerProcess(args.sources) as base:
        for concurrency in args.concurrency:
            for keepalive in (True, False):
                for conditional in (False, True):
                    runs = [
                        asyncio.run(measure(base, paths, concurrency, keepalive, conditional))
                        for _ in range(args.rounds)
                    ]
                    wall = min(r[0] for r in runs)
                    cpu = min(r[1] for r in runs)
                    rows.append(
                        {
                            "concurrency": concurrency,
                            "keepalive": keepalive,
                            "status": 304 if conditional else 200,
                            "wall": wall,
                            "cpu_ms_per_feed": 1000 * cpu / len(paths),
                        }
                    )
                    print(
                        f"concurrency {concurrency:3}  keep-alive {'on ' if keepalive else 'off'}"
                        f"  {304 if conditional else 200}: {wall:5.2f} s wall, "
                        f"{1000 * cpu / len(paths):.2f} ms CPU per feed (best of {args.rounds})"
                    )


if __name__ == "__main__":
    main()
