"""A parse budget: run a function in a killable worker process, under a wall-clock and
memory limit, so one pathological document costs only its own source.

    with WorkerPool(size=2, timeout=10, memory_bytes=512 << 20) as pool:
        result = pool.run(fn, *args)             # blocking, thread-safe
        result = await pool.run_async(fn, *args) # from the event loop, never blocks it

`fn` and its arguments and result must pickle (`fn` a module-level function). When the
call takes longer than `timeout` seconds the worker is SIGKILLed and `BudgetExceeded` is
raised with kind `parse_timeout`; a `MemoryError` in the worker (its address space is
capped with RLIMIT_AS) gives `parse_memory`; a worker that dies (segfault, abort, killed by
the OOM killer) gives `parse_crash`. A killed or broken worker is replaced on the next call;
the others keep serving. A `SourceError` raised by `fn` is rebuilt in the caller with its
type, source id, url, kind and message (they do not pickle as themselves); anything else
`fn` raises is re-raised in the caller as it pickles (a bug is a bug, in a worker too).

Why our own pool and not `concurrent.futures.ProcessPoolExecutor`: that executor cannot
kill one task, only break the whole pool. Workers start with "forkserver" (never "fork":
the pipeline runs threads and an event loop, and forking those is unsafe); the fork server
preloads the modules named by `preload`, so a replacement worker starts in milliseconds
rather than re-importing feedparser, lxml and bs4; it stops when the last open pool closes
(issue 8), and the next pool starts it again. The pool starts its workers lazily, so a run
in which every source answers 304 starts none.

`OrderedWorker` is one such worker, without limits, that is sent the next call while it
runs one (the store process, issue 8): calls run in the order submitted, and a worker that dies
fails only the call it was running.

A private helper of the pipeline: imports only `aggregator.exceptions` from the package.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import os
import pickle
import queue
import resource
import signal
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Literal, TypeVar

from aggregator.exceptions import SourceError

__all__ = [
    "DEFAULT_MEMORY_MB",
    "DEFAULT_TIMEOUT",
    "BudgetExceeded",
    "OrderedWorker",
    "WorkerPool",
    "default_pool_size",
    "exit_description",
]

T = TypeVar("T")
BudgetKind = Literal["parse_timeout", "parse_memory", "parse_crash"]

DEFAULT_TIMEOUT = 10.0  # seconds of wall clock per call, see ../shared/FAULTS.md "Parse budget"
DEFAULT_MEMORY_MB = 512  # address space of a worker (RLIMIT_AS)
_JOIN_TIMEOUT = 2.0  # seconds a worker gets to exit on its own when the pool closes


class BudgetExceeded(Exception):
    """A call ran out of time or memory, or its worker died; `kind` says which.

    Not an AggregatorError: the caller knows the source and wraps it in a ParseError.
    """

    def __init__(self, kind: BudgetKind, message: str, exitcode: int | None = None) -> None:
        self.kind: BudgetKind = kind
        self.message = message
        self.exitcode = exitcode  # of a worker that died (parse_crash)
        super().__init__(f"{kind}: {message}")


def default_pool_size(spare: int = 0) -> int:
    """One worker per usable core, at most 2 (the production machine has 2 cores), less
    `spare` cores left to another busy process (but at least one worker)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores - spare))


def _start_method() -> str:
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


# The pools not closed yet that use the fork server: when the last one closes, the server
# goes too (issue 8). Idle, it holds the modules it preloaded, about 40 MB that nothing
# shares once the workers are gone (a one-shot run's digest, a scheduler between jobs); the
# next pool starts it again, in about 0.3 s.
_server_users = 0
_server_users_lock = threading.Lock()


def _hold_fork_server() -> None:
    global _server_users
    with _server_users_lock:
        _server_users += 1


def _release_fork_server() -> None:
    global _server_users
    with _server_users_lock:
        _server_users -= 1
        if _server_users == 0:
            # CPython's own way to stop it (used by its tests); absent elsewhere, it stays
            stop = getattr(getattr(forkserver, "_forkserver", None), "_stop", None)
            if callable(stop):
                with contextlib.suppress(OSError):
                    stop()


# --- the worker side ----------------------------------------------------------------------

# Replies from a worker, pickled: ("ok", result) | ("source_error", cls, source_id, url,
# kind, message, http_status) | ("raise", exception, traceback_text) | ("memory", detail).


def _worker_main(conn: Connection, memory_bytes: int | None) -> None:
    """A worker's loop: receive (fn, args), run it, send what happened; EOF or None ends it."""
    # Ctrl-C is for the parent; it closes the pool, which ends the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if memory_bytes is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = memory_bytes if hard == resource.RLIM_INFINITY else min(memory_bytes, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    while True:
        try:
            task = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if task == _STOP:
            return
        reply = _call(task)
        try:
            conn.send_bytes(reply)
        except (BrokenPipeError, ConnectionResetError):
            return  # the parent gave up on us (timeout, close)
        if reply == _MEMORY_REPLY:
            return  # a worker that ran out of memory may be in a bad way: start afresh


_MEMORY_REPLY = pickle.dumps(("memory", ""))
_STOP = pickle.dumps(None)


def _call(task: bytes) -> bytes:
    """A pickled (fn, args) -> the pickled reply. Unpickled and pickled here, so that a
    failure to import, pickle or allocate is reported rather than killing the worker."""
    try:
        try:
            fn, args = pickle.loads(task)
            reply: tuple[Any, ...] = ("ok", fn(*args))
        except SourceError as e:
            reply = ("source_error", type(e), e.source_id, e.url, e.kind, e.message, e.http_status)
        except MemoryError:
            raise
        except BaseException as e:
            reply = ("raise", _portable(e), traceback.format_exc())
        try:
            return pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except MemoryError:
            raise
        except Exception as e:  # an unpicklable result or exception is a bug: report it
            error = RuntimeError(f"the parse worker could not send its reply: {e!r}")
            return pickle.dumps(("raise", error, traceback.format_exc()))
    except MemoryError:
        return _MEMORY_REPLY


def _portable(error: BaseException) -> BaseException:
    """`error` if it survives a pickle round trip (many with custom __init__ do not)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__qualname__}: {error}")
    return error


# --- the parent side ----------------------------------------------------------------------


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, ctx: Any, memory_bytes: int | None, name: str) -> None:
        parent, child = ctx.Pipe(duplex=True)
        self.conn: Connection = parent
        self.reaped = False
        self.process: BaseProcess = ctx.Process(
            target=_worker_main, args=(child, memory_bytes), name=name, daemon=True
        )
        try:
            self.process.start()
        except BaseException:
            parent.close()
            raise
        finally:
            # The worker holds its own copy; ours must go, or its death would never show
            # up as EOF on `parent`.
            child.close()

    def kill(self) -> None:
        if self.reaped:
            return
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        self._reap()

    def stop(self) -> None:
        """Ask the worker to finish, kill it if it does not."""
        if self.reaped:
            return
        with contextlib.suppress(OSError, ValueError):
            self.conn.send_bytes(_STOP)
        self.process.join(_JOIN_TIMEOUT)
        if self.process.is_alive():
            with contextlib.suppress(OSError, ValueError):
                self.process.kill()
        self._reap()

    def _reap(self) -> None:
        self.reaped = True
        self.process.join()
        self.conn.close()
        self.process.close()


class WorkerPool:
    """`size` worker processes, each call bounded by `timeout` seconds and `memory_bytes`.

    Thread-safe; `run_async` waits in the pool's own threads (one per worker), so calls
    queue without holding threads of the event loop's default executor.
    """

    def __init__(
        self,
        size: int | None = None,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        memory_bytes: int | None = DEFAULT_MEMORY_MB * 1024 * 1024,
        preload: Sequence[str] = (),
        name: str = "aggregator-parse",
    ) -> None:
        self.size = max(1, size if size else default_pool_size())
        self.timeout = timeout  # None: a call may take as long as it takes
        self.memory_bytes = memory_bytes
        self.name = name  # of the worker processes
        self._ctx = multiprocessing.get_context(_start_method())
        self._holds_server = self._ctx.get_start_method() == "forkserver"
        if self._holds_server:
            _hold_fork_server()
            # Only takes effect before the fork server starts (once per process); later
            # pools share it. Workers of a server started without `preload` still work:
            # they import what they unpickle on their first call.
            self._ctx.set_forkserver_preload([__name__, *preload])
        # A slot is an idle worker, or None for one not started (or killed) yet.
        self._slots: queue.SimpleQueue[_Worker | None] = queue.SimpleQueue()
        for _ in range(self.size):
            self._slots.put(None)
        self._lock = threading.Lock()
        self._live: set[_Worker] = set()
        self._closed = False
        self._threads: ThreadPoolExecutor | None = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def run_async(self, fn: Callable[..., T], *args: Any) -> T:
        """`run` from the event loop, waiting in a thread of the pool's own."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.size, thread_name_prefix="parse-wait")
            threads = self._threads
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(threads, lambda: self.run(fn, *args))

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in a worker; BudgetExceeded when it runs out of time, memory or life."""
        if self._closed:
            raise RuntimeError("the worker pool is closed")
        # Pickled before a worker is involved: an argument that does not pickle is the
        # caller's bug, not the worker's.
        task = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
        worker = self._slots.get()
        try:
            worker = self._send(worker, task)
            reply = self._wait(worker)
            if reply[0] == "memory":
                self._discard(worker)  # it has exited already
                worker = None
        except BaseException:
            if worker is not None:
                self._discard(worker)
                worker = None
            raise
        finally:
            self._slots.put(worker)
        result: T = _unwrap(reply, self.memory_bytes)
        return result

    def _send(self, worker: _Worker | None, task: bytes) -> _Worker:
        """Hand `task` to `worker` (started if None); the worker that took it."""
        for attempt in (1, 2):
            if worker is None:
                worker = self._start()
            try:
                worker.conn.send_bytes(task)
                return worker
            except OSError as e:  # BrokenPipeError, ConnectionResetError
                # The idle worker died (OOM killer, an admin's kill): one new one, one retry.
                self._discard(worker)
                worker = None
                if attempt == 2:
                    raise BudgetExceeded("parse_crash", "the parse worker died on start") from e
        raise AssertionError("unreachable")

    def _wait(self, worker: _Worker) -> tuple[Any, ...]:
        """The worker's reply; BudgetExceeded (and the worker killed) on timeout or death."""
        if not worker.conn.poll(self.timeout):
            raise BudgetExceeded(
                "parse_timeout",
                f"parsing took longer than {self.timeout:g} s and was stopped; the document "
                "is pathological or very large (raise fetch.parse_timeout if it is legitimate)",
            )
        try:
            data = worker.conn.recv_bytes()
        except (EOFError, OSError) as e:
            worker.process.join(_JOIN_TIMEOUT)
            code = worker.process.exitcode
            raise BudgetExceeded("parse_crash", _crash_message(code), code) from e
        reply: tuple[Any, ...] = pickle.loads(data)
        return reply

    def _start(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the worker pool is closed")
            worker = _Worker(self._ctx, self.memory_bytes, self.name)
            self._live.add(worker)
            return worker

    def _discard(self, worker: _Worker) -> None:
        with self._lock:
            self._live.discard(worker)
        worker.kill()

    def close(self) -> None:
        """Stop every worker (idle ones politely, busy ones by force) and the wait threads;
        and the fork server, if no other pool is open."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            busy = set(self._live)
            threads, self._threads = self._threads, None
        for worker in self._drain_idle():
            busy.discard(worker)
        for worker in busy:
            # Its waiting thread sees EOF, reaps it and raises parse_crash for its caller.
            with contextlib.suppress(OSError, ValueError):
                worker.process.kill()
        if threads is not None:
            threads.shutdown(wait=True, cancel_futures=True)
        self._drain_idle()  # workers that finished while we were closing
        if self._holds_server:
            _release_fork_server()

    def _drain_idle(self) -> list[_Worker]:
        stopped: list[_Worker] = []
        while True:
            try:
                worker = self._slots.get_nowait()
            except queue.Empty:
                return stopped
            if worker is not None:
                with self._lock:
                    self._live.discard(worker)
                worker.stop()
                stopped.append(worker)


class OrderedWorker:
    """One worker process that several calls are sent to at once (issue 8: the store
    process). It runs them one at a time, in the order submitted, and replies in that
    order; while it runs one, the next already waits in its pipe, so it never waits for its
    callers between two calls. No time or memory limit.

    `submit` never blocks (call it from the event loop): the call is queued, and a thread of
    the worker's own pickles and sends the queued calls in order, at most `depth` in flight
    (sent and not answered); a call cancelled before it is sent is not sent. `run` is
    `submit` and a wait. A worker that dies fails the call it was running with
    BudgetExceeded (`parse_crash`); the calls queued behind it, which it never started, go
    to a new worker, as does the next call.
    """

    def __init__(
        self, *, depth: int = 2, preload: Sequence[str] = (), name: str = "aggregator-worker"
    ) -> None:
        self.name = name
        self.starts = 0  # workers started
        self._ctx = multiprocessing.get_context(_start_method())
        self._holds_server = self._ctx.get_start_method() == "forkserver"
        if self._holds_server:
            _hold_fork_server()
            self._ctx.set_forkserver_preload([__name__, *preload])
        self._room = threading.Semaphore(depth)
        # The calls submitted and not sent yet, in order (None: no more), and their sender.
        self._queue: queue.SimpleQueue[
            tuple[Callable[..., Any], tuple[Any, ...], Future[Any]] | None
        ] = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        # Held to send, and to change which worker is current. The calls in flight, oldest
        # first: the current worker's replies answer them in this order.
        self._lock = threading.Lock()
        self._pending: collections.deque[tuple[bytes, Future[Any]]] = collections.deque()
        self._worker: _Worker | None = None
        self._receivers: list[threading.Thread] = []
        self._closing = False  # no more calls
        self._closed = False  # every call sent: a worker that dies is not replaced

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def pid(self) -> int | None:
        """The current worker's process id (None before the first call, or after a death)."""
        worker = self._worker
        return None if worker is None else worker.process.pid

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """fn(*args) in the worker, after the calls submitted before it."""
        future: Future[T] = Future()
        with self._lock:
            if self._closing:
                raise RuntimeError("the worker is closed")
            if self._sender is None:
                self._sender = threading.Thread(
                    target=self._send_queued, name=f"{self.name}-sends", daemon=True
                )
                self._sender.start()
            self._queue.put((fn, args, future))
        return future

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        return self.submit(fn, *args).result()

    def _send_queued(self) -> None:
        """The sender: each queued call pickled and sent in turn, when there is room."""
        while (queued := self._queue.get()) is not None:
            fn, args, future = queued
            self._room.acquire()
            if not future.set_running_or_notify_cancel():
                self._room.release()
                continue  # cancelled before it was sent
            try:
                task = pickle.dumps((fn, args), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # an argument that does not pickle: the caller's bug
                self._room.release()
                future.set_exception(e)
                continue
            with self._lock:
                try:
                    worker = self._current()
                except Exception as e:  # the worker did not start
                    self._room.release()
                    future.set_exception(e)
                    continue
                self._pending.append((task, future))
                _send_or_leave(worker, task)

    def _current(self) -> _Worker:
        """Under `_lock`: the current worker, started (with its receiver) if there is none."""
        if self._worker is None:
            worker = self._worker = _Worker(self._ctx, None, self.name)
            self.starts += 1
            receiver = threading.Thread(
                target=self._receive, args=(worker,), name=f"{self.name}-replies", daemon=True
            )
            receiver.start()
            self._receivers.append(receiver)
        return self._worker

    def _receive(self, worker: _Worker) -> None:
        """A worker's replies, each to the oldest call in flight; at its end (EOF), the call
        it was running fails and the ones behind it are sent to a new worker."""
        running = True  # whether a call may be running when the worker ends
        while True:
            try:
                data = worker.conn.recv_bytes()
            except (EOFError, OSError):
                break
            _, future = self._pending.popleft()
            self._room.release()
            # out of memory, a worker replies and ends before it reads another call
            running = data != _MEMORY_REPLY
            _settle(future, data)
        worker.process.join(_JOIN_TIMEOUT)
        code = worker.process.exitcode
        failed: list[tuple[Future[Any], BaseException]] = []
        with self._lock:
            if self._worker is worker:
                self._worker = None
            if self._pending and running:
                lost = self._pending.popleft()[1]
                failed.append((lost, BudgetExceeded("parse_crash", _crash_message(code), code)))
            if self._pending and self._closed:
                failed += [(f, RuntimeError("the worker is closed")) for _, f in self._pending]
                self._pending.clear()
            elif self._pending:  # never started: to a new worker, in the same order
                try:
                    successor = self._current()
                except Exception as e:
                    failed += [(f, e) for _, f in self._pending]
                    self._pending.clear()
                else:
                    # A copy: the successor's receiver may answer (pop) the first of them
                    # while the rest are still being sent.
                    for task in [task for task, _ in self._pending]:
                        _send_or_leave(successor, task)
        for future, error in failed:
            self._room.release()
            future.set_exception(error)
        worker.kill()  # reaped: it has exited

    def close(self) -> None:
        """Let the worker finish every call submitted, then stop it (and the fork server,
        if no pool uses it)."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            sender = self._sender
        if sender is not None:
            self._queue.put(None)
            sender.join()
        with self._lock:
            self._closed = True
            if self._worker is not None:
                with contextlib.suppress(OSError, ValueError):
                    self._worker.conn.send_bytes(_STOP)
        for receiver in list(self._receivers):
            receiver.join(None if self._pending else _JOIN_TIMEOUT)
            if receiver.is_alive():  # a worker that does not stop: ended (its receiver reaps)
                worker = self._worker
                if worker is not None:
                    with contextlib.suppress(OSError, ValueError):
                        worker.process.kill()
                receiver.join()
        if self._holds_server:
            _release_fork_server()


def _settle(future: Future[Any], data: bytes) -> None:
    """A call's future, from the worker's pickled reply (see `_unwrap`)."""
    try:
        future.set_result(_unwrap(pickle.loads(data), None))
    except BaseException as e:  # the call's error, rebuilt here
        future.set_exception(e)


def _send_or_leave(worker: _Worker, task: bytes) -> None:
    """`task` to `worker`; if it has died, its receiver sees the end and deals with the task."""
    with contextlib.suppress(OSError):
        worker.conn.send_bytes(task)


def _unwrap(reply: tuple[Any, ...], memory_bytes: int | None) -> Any:
    tag = reply[0]
    if tag == "ok":
        return reply[1]
    if tag == "memory":
        limit = f"{memory_bytes // (1024 * 1024)} MiB" if memory_bytes else "the memory limit"
        detail = f" ({reply[1]})" if reply[1] else ""
        raise BudgetExceeded(
            "parse_memory",
            f"parsing needed more than {limit}{detail} and was stopped; the document is "
            "pathological or very large (raise fetch.parse_memory_mb if it is legitimate)",
        )
    if tag == "source_error":
        cls, source_id, url, kind, message, http_status = reply[1:]
        raise cls(source_id, url, kind, message, http_status=http_status)
    if tag == "raise":
        error, text = reply[1], reply[2]
        if isinstance(error, BaseException):
            error.add_note(f"raised in a parse worker:\n{text}")
            raise error
    raise RuntimeError(f"unexpected reply from a parse worker: {reply!r}")


def exit_description(exitcode: int | None) -> str:
    """How a process ended: "signal SIGKILL", "exit code 1"."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _crash_message(exitcode: int | None) -> str:
    how = exit_description(exitcode)
    # A native parser (libxml2, nh3) that runs out of the address-space budget aborts or
    # crashes rather than raising MemoryError, so a crash may be a memory overrun too.
    return (
        f"the parse worker died ({how}) while parsing this document; a parser library "
        "crashed, perhaps out of memory"
    )
