"""_budget: a killable worker pool with a wall-clock and memory budget per call.

The functions the workers run live at module level here: a worker imports them by name.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from aggregator import _budget, pipeline
from aggregator._budget import BudgetExceeded, OrderedWorker, WorkerPool, default_pool_size
from aggregator.classify import make_classifier
from aggregator.exceptions import FetchError, ParseError
from aggregator.pipeline import _prepare
from aggregator.types import Fetched, Rule, Section, Source, Topic

BUDGET = 0.5  # seconds: small, so that the suite stays fast
MiB = 1024 * 1024

# --- what the workers run -------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def pid() -> int:
    return os.getpid()


def echo(value: object) -> object:
    return value


def sleep_forever() -> None:
    time.sleep(3600)


def spin_forever() -> None:
    n = 0
    while True:  # pure Python, holds the GIL: only a kill stops it
        n += 1


def hog_memory() -> int:
    chunks = []
    while True:
        chunks.append(bytearray(16 * MiB))
        if len(chunks) > 1000:  # 16 GiB: the limit must have stopped us long before
            return len(chunks)


def big_block() -> int:
    return len(bytearray(4096 * MiB))


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def exit_hard() -> None:
    os._exit(7)


def raise_parse_error() -> None:
    raise ParseError(
        "s1", "http://example.org/f.xml", "parse_error", "not well-formed", http_status=None
    )


def raise_fetch_error() -> None:
    raise FetchError("s2", "http://example.org/g.xml", "http_5xx", "server error", http_status=503)


def raise_value_error() -> None:
    raise ValueError("a bug in a stage")


class Unpicklable(Exception):
    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def raise_unpicklable() -> None:
    raise Unpicklable(1, 2)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def note_when(
    log: str, mark: str, gate: str | None = None, exit_code: int | None = None, oom: bool = False
) -> str:
    """Wait for the file `gate` (if any), append `mark` to the file `log`; then exit hard
    with `exit_code`, if given (a worker that dies in a call), or run out of memory."""
    deadline = time.monotonic() + 30
    while gate is not None and not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)
    with open(log, "a") as f:
        f.write(mark)
    if exit_code is not None:
        os._exit(exit_code)
    if oom:
        raise MemoryError
    return mark


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pool():
    with WorkerPool(2, timeout=BUDGET, memory_bytes=256 * MiB, preload=(__name__,)) as p:
        yield p


def test_default_pool_size_is_small():
    assert 1 <= default_pool_size() <= 2


@pytest.mark.parametrize(
    ("cores", "spare", "size"),
    [(1, 0, 1), (2, 0, 2), (8, 0, 2), (1, 1, 1), (2, 1, 1), (3, 1, 2), (8, 1, 2)],
)
def test_default_pool_size_leaves_spare_cores(monkeypatch, cores, spare, size):
    # issue 8: beside a store process (`spare=1`), a 2-core machine runs one parse worker
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(cores)))
    assert default_pool_size(spare) == size


def test_results_round_trip(pool):
    fetched = Fetched(
        source_id="s",
        url="https://example.org/feed.xml",
        status=200,
        content=b"<rss/>" * 1000,
        content_type="application/rss+xml",
    )
    assert pool.run(echo, fetched) == fetched
    assert pool.run(square, 12) == 144


def test_workers_are_reused(pool):
    pids = {pool.run(pid) for _ in range(20)}
    assert 1 <= len(pids) <= 2 and os.getpid() not in pids


@pytest.mark.parametrize("fn", [sleep_forever, spin_forever], ids=["sleep", "spin"])
def test_a_call_over_budget_is_killed_and_the_pool_recovers(pool, fn):
    t0 = time.monotonic()
    with pytest.raises(BudgetExceeded) as info:
        pool.run(fn)
    elapsed = time.monotonic() - t0
    assert info.value.kind == "parse_timeout"
    assert f"{BUDGET:g} s" in info.value.message
    assert BUDGET <= elapsed < BUDGET + 1.5
    assert [pool.run(square, n) for n in range(4)] == [0, 1, 4, 9]


@pytest.mark.parametrize("fn", [hog_memory, big_block], ids=["growing", "one-block"])
def test_a_memory_hog_gets_parse_memory(pool, fn):
    with pytest.raises(BudgetExceeded) as info:
        pool.run(fn)
    assert info.value.kind == "parse_memory"
    assert "256 MiB" in info.value.message
    assert pool.run(square, 3) == 9


@pytest.mark.parametrize(
    ("fn", "how"), [(segfault, "SIGSEGV"), (exit_hard, "exit code 7")], ids=["segv", "exit"]
)
def test_a_crashed_worker_gets_parse_crash(pool, fn, how):
    with pytest.raises(BudgetExceeded) as info:
        pool.run(fn)
    assert info.value.kind == "parse_crash"
    assert how in info.value.message
    assert pool.run(square, 5) == 25


def test_a_worker_killed_while_idle_is_replaced(pool):
    victim = pool.run(pid)
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.1)
    assert [pool.run(square, n) for n in range(6)] == [0, 1, 4, 9, 16, 25]


def test_source_errors_come_back_with_their_type_and_fields(pool):
    with pytest.raises(ParseError) as parse:
        pool.run(raise_parse_error)
    assert (parse.value.source_id, parse.value.url, parse.value.kind) == (
        "s1",
        "http://example.org/f.xml",
        "parse_error",
    )
    assert parse.value.message == "not well-formed"
    with pytest.raises(FetchError) as fetch:
        pool.run(raise_fetch_error)
    assert fetch.value.http_status == 503 and fetch.value.kind == "http_5xx"


def test_other_errors_are_bugs_and_propagate(pool):
    with pytest.raises(ValueError, match="a bug in a stage") as info:
        pool.run(raise_value_error)
    assert any("raised in a parse worker" in note for note in info.value.__notes__)
    with pytest.raises(RuntimeError, match="Unpicklable"):
        pool.run(raise_unpicklable)
    assert pool.run(square, 2) == 4


def test_many_small_tasks_in_parallel_are_correct(pool):
    async def go() -> list[int]:
        return await asyncio.gather(*(pool.run_async(square, n) for n in range(200)))

    assert asyncio.run(go()) == [n * n for n in range(200)]


def test_waiting_for_a_worker_does_not_block_the_event_loop(pool):
    async def go() -> tuple[float, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            result = await pool.run_async(nap, 0.3)
        finally:
            task.cancel()
        return result, ticks

    result, ticks = asyncio.run(go())
    assert result == 0.3 and ticks >= 10


def test_a_timeout_in_one_call_leaves_parallel_calls_alone(pool):
    async def go() -> list[object]:
        calls = [pool.run_async(sleep_forever)] + [pool.run_async(square, n) for n in range(10)]
        return await asyncio.gather(*calls, return_exceptions=True)

    first, *rest = asyncio.run(go())
    assert isinstance(first, BudgetExceeded) and first.kind == "parse_timeout"
    assert rest == [n * n for n in range(10)]


def test_workers_start_lazily_and_close_cleanly():
    pool = WorkerPool(2, timeout=BUDGET, preload=(__name__,))
    pool.close()  # nothing started, nothing to stop
    with pytest.raises(RuntimeError, match="closed"):
        pool.run(square, 1)

    with WorkerPool(1, timeout=BUDGET, preload=(__name__,)) as pool:
        worker = pool.run(pid)
    with pytest.raises(ProcessLookupError):  # gone, and reaped
        os.kill(worker, 0)


def test_prepare_items_round_trips_through_a_worker(pool):
    """The pipeline's own call: Fetched in, classified items out, equal to the in-thread call."""
    rss = (
        b"<?xml version='1.0'?><rss version='2.0'><channel><title>T</title>"
        b"<link>https://e.org/</link>"
        + b"".join(
            b"<item><guid>g%d</guid><link>https://e.org/%d</link><title>Police training %d"
            b"</title><pubDate>Tue, 24 Nov 2026 10:00:00 GMT</pubDate></item>" % (n, n, n)
            for n in range(30)
        )
        + b"</channel></rss>"
    )
    fetched = Fetched("s", "https://e.org/feed.xml", 200, rss, "application/rss+xml")
    source = Source(id="s", name="S", url="https://e.org/feed.xml")
    sections = (Section("training", "Training", rules=(Rule("training"),)),)
    topic = Topic(include=(Rule("police"),))
    here = pipeline.prepare_items(fetched, source, make_classifier(sections, topic), 1000)
    there = pool.run(_prepare._prepare_in_worker, fetched, source, sections, topic, 1000)
    assert there == here
    assert len(there.items) == 30
    assert {p.section for _, p in there.items} == {"training"}
    assert all(i.published == datetime(2026, 11, 24, 10, tzinfo=UTC) for i, _ in there.items)


# --- OrderedWorker (issue 8: the store process) ---------------------------------------------


def wait_until(condition, what: str, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def test_an_ordered_worker_answers_every_caller_its_own():
    worker = OrderedWorker(depth=2, preload=(__name__,))
    try:
        with ThreadPoolExecutor(4) as threads:
            results = list(threads.map(lambda n: worker.run(square, n), range(60)))
        assert results == [n * n for n in range(60)]
        assert worker.starts == 1 and worker.in_flight == 0
    finally:
        worker.close()


def test_an_ordered_worker_is_sent_the_next_call_while_it_runs_one(tmp_path):
    """The point of it: a second call waits in the worker's pipe, not in its caller, and
    runs after the first; a third waits to be sent (depth 2)."""
    log, gate = str(tmp_path / "log"), str(tmp_path / "gate")
    worker = OrderedWorker(depth=2, preload=(__name__,))
    try:
        with ThreadPoolExecutor(3) as threads:
            first = threads.submit(worker.run, note_when, log, "a", gate)
            wait_until(lambda: worker.in_flight == 1, "the first call")
            second = threads.submit(worker.run, note_when, log, "b")
            wait_until(lambda: worker.in_flight == 2, "the second call sent")
            third = threads.submit(worker.run, note_when, log, "c")
            time.sleep(0.2)
            assert worker.in_flight == 2 and not (tmp_path / "log").exists()
            (tmp_path / "gate").touch()
            assert [f.result(timeout=30) for f in (first, second, third)] == ["a", "b", "c"]
        assert (tmp_path / "log").read_text() == "abc"
    finally:
        worker.close()


def test_an_ordered_worker_runs_calls_in_the_order_submitted_and_skips_cancelled_ones(
    tmp_path,
):
    """`submit` does not block (the event loop calls it); a call cancelled before it is sent
    never runs."""
    log, gate = str(tmp_path / "log"), str(tmp_path / "gate")
    worker = OrderedWorker(depth=2, preload=(__name__,))
    try:
        first = worker.submit(note_when, log, "a", gate)
        calls = [worker.submit(note_when, log, mark) for mark in "bcdef"]
        wait_until(lambda: worker.in_flight == 2, "two calls sent")
        assert calls[1].cancel() and not calls[0].cancel()  # queued / sent
        (tmp_path / "gate").touch()
        assert first.result(timeout=30) == "a"
        assert [c.result(timeout=30) for n, c in enumerate(calls) if n != 1] == list("bdef")
        assert calls[1].cancelled()
        assert (tmp_path / "log").read_text() == "abdef"
    finally:
        worker.close()


@pytest.mark.parametrize(
    ("exit_code", "oom", "kind"), [(7, False, "parse_crash"), (None, True, "parse_memory")]
)
def test_an_ordered_worker_that_dies_fails_only_the_call_it_ran(tmp_path, exit_code, oom, kind):
    """The call queued behind it never started: a new worker runs it. Out of memory, a
    worker replies and ends before it reads the next call: that call too goes on, not
    failed."""
    log, gate = str(tmp_path / "log"), str(tmp_path / "gate")
    worker = OrderedWorker(depth=2, preload=(__name__,))
    try:
        dying = worker.submit(note_when, log, "a", gate, exit_code, oom)
        queued = worker.submit(note_when, log, "b")
        wait_until(lambda: worker.in_flight == 2, "the second call sent")
        pid_before = worker.pid
        (tmp_path / "gate").touch()
        with pytest.raises(BudgetExceeded) as info:
            dying.result(timeout=30)
        assert queued.result(timeout=30) == "b"
        assert info.value.kind == kind and info.value.exitcode == exit_code
        assert (tmp_path / "log").read_text() == "ab"  # each ran once
        assert worker.starts == 2 and worker.pid != pid_before
        assert worker.run(square, 5) == 25
    finally:
        worker.close()
    with pytest.raises(ProcessLookupError):  # the dead one reaped too
        os.kill(pid_before, 0)


def test_calls_resent_after_a_death_survive_the_new_worker_answering_the_first(
    tmp_path, monkeypatch
):
    """The dead worker's receiver sends the calls queued behind it to the new worker, whose
    receiver may answer (and drop) the first while the rest are still being sent. Made
    certain here: each resent call is answered before the next is sent. Sent by walking
    the list of calls in flight itself, the walk failed ("deque mutated during iteration")
    and the calls after the first were never sent: their callers waited for ever."""
    log, gate = str(tmp_path / "log"), str(tmp_path / "gate")
    worker = OrderedWorker(depth=3, preload=(__name__,))
    send = _budget._send_or_leave

    def send_then_wait_for_the_answer(to: object, task: bytes) -> None:
        before = worker.in_flight
        send(to, task)
        if threading.current_thread().name.endswith("-replies"):  # a resend after the death
            wait_until(lambda: worker.in_flight < before, "the resent call answered")

    monkeypatch.setattr(_budget, "_send_or_leave", send_then_wait_for_the_answer)
    try:
        dying = worker.submit(note_when, log, "a", gate, 7)
        queued = [worker.submit(note_when, log, mark) for mark in "bc"]
        wait_until(lambda: worker.in_flight == 3, "three calls sent")
        (tmp_path / "gate").touch()
        with pytest.raises(BudgetExceeded):
            dying.result(timeout=30)
        assert [q.result(timeout=30) for q in queued] == ["b", "c"]
        assert (tmp_path / "log").read_text() == "abc"
        assert worker.starts == 2 and worker.in_flight == 0
    finally:
        worker.close()


def test_an_ordered_worker_returns_each_error_to_its_own_caller():
    worker = OrderedWorker(depth=2, preload=(__name__,))
    try:
        with ThreadPoolExecutor(2) as threads:
            calls = [
                threads.submit(worker.run, f, *args)
                for f, args in [(raise_parse_error, ()), (square, (4,))] * 5
            ]
            for n, call in enumerate(calls):
                if n % 2:
                    assert call.result(timeout=30) == 16
                else:
                    with pytest.raises(ParseError, match="not well-formed"):
                        call.result(timeout=30)
        with pytest.raises((pickle.PicklingError, AttributeError)):  # the caller's bug
            worker.run(echo, lambda: None)
        assert worker.run(square, 3) == 9
        assert worker.starts == 1
    finally:
        worker.close()


def test_an_ordered_worker_closes_cleanly():
    worker = OrderedWorker(preload=(__name__,))
    worker.close()  # nothing started, nothing to stop
    with pytest.raises(RuntimeError, match="closed"):
        worker.run(square, 1)

    worker = OrderedWorker(preload=(__name__,))
    process = worker.run(pid)
    worker.close()
    with pytest.raises(ProcessLookupError):  # gone, and reaped
        os.kill(process, 0)
    assert not [t for t in threading.enumerate() if t.name.endswith("-replies")]
