"""Per-stage wall and CPU time of a run (for `python -m bench` and `--timings`-style reports).

Part of the composition root (see `aggregator.pipeline`). A `StageTimes` is passed into
`update_sources` / `run_once`; stages that run in a parse worker report their own times in
`Prepared.times`, which the pipeline adds here. Wall times of concurrent work (fetches) are
summed over sources, so they can exceed the run's wall clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

STAGES = ("fetch", "parse", "normalize", "classify", "cluster", "store", "render")


@dataclass(slots=True)
class StageTimes:
    """Seconds per stage: `wall` (summed over sources) and `cpu` (of the thread/process that
    ran it); `calls` per stage."""

    wall: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _open: list[list[float]] = field(default_factory=list, repr=False)
    # the store's thread and the event loop add to the same stages (issue 8)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, wall: float, cpu: float) -> None:
        with self._lock:
            self.wall[stage] = self.wall.get(stage, 0.0) + wall
            self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu
            self.calls[stage] = self.calls.get(stage, 0) + 1

    def add_all(self, times: tuple[tuple[str, float, float], ...]) -> None:
        for stage, wall, cpu in times:
            self.add(stage, wall, cpu)

    @contextmanager
    def measure(self, stage: str) -> Iterator[None]:
        """Time a synchronous block on the current thread; a block measured inside it counts
        for its own stage only (store's time excludes the clustering inside it). Blocks
        measured on two threads must not overlap (the store's thread measures alone while
        sources are updated)."""
        inner = [0.0, 0.0]
        self._open.append(inner)
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            yield
        finally:
            wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
            self._open.pop()
            if self._open:
                self._open[-1][0] += wall
                self._open[-1][1] += cpu
            self.add(stage, wall - inner[0], cpu - inner[1])

    def as_dict(self) -> dict[str, dict[str, float]]:
        order = [s for s in STAGES if s in self.wall] + sorted(set(self.wall) - set(STAGES))
        return {
            s: {"wall": self.wall[s], "cpu": self.cpu[s], "calls": self.calls[s]} for s in order
        }


class Laps:
    """Consecutive laps on one thread: `lap(stage)` closes the stage that just ran."""

    __slots__ = ("_c", "_w", "times")

    def __init__(self) -> None:
        self.times: list[tuple[str, float, float]] = []
        self._w, self._c = time.perf_counter(), time.thread_time()

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), time.thread_time()
        self.times.append((stage, w - self._w, c - self._c))
        self._w, self._c = w, c
