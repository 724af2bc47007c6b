"""The parse workers' fork server lives while a pool is open (issue 8, `_budget`).

In a module of its own: no pool of another test may be open while these run.
"""

from __future__ import annotations

import os

import pytest

from aggregator import _budget
from aggregator._budget import WorkerPool

pytestmark = pytest.mark.skipif(
    _budget._start_method() != "forkserver", reason="this platform has no fork server"
)


def square(x: int) -> int:
    return x * x


def _server_pid() -> int | None:
    from multiprocessing import forkserver

    pid: int | None = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    return pid


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_the_fork_server_stops_with_the_last_open_pool_and_starts_again():
    """Idle, the fork server holds the modules it preloaded (about 40 MB): it goes when the
    last open pool closes, not before, and the next pool's first worker starts it again."""
    assert _budget._server_users == 0, "a pool of another test was left open"
    first = WorkerPool(size=1, timeout=10)
    try:
        assert first.run(square, 3) == 9
        server = _server_pid()
        assert server is not None and not _gone(server)
        with WorkerPool(size=1, timeout=10) as second:
            assert second.run(square, 4) == 16
        assert _server_pid() == server and not _gone(server)  # `first` is still open
        assert first.run(square, 5) == 25
    finally:
        first.close()
    assert _server_pid() is None and _gone(server)
    first.close()  # closing twice releases the server once
    assert _budget._server_users == 0
    with WorkerPool(size=1, timeout=10) as again:
        assert again.run(square, 6) == 36
        assert _server_pid() not in (None, server)
    assert _server_pid() is None and _budget._server_users == 0


def test_a_pool_that_never_ran_anything_counts_like_any_other():
    """Closing a pool that started no worker neither stops the server another pool uses nor
    keeps it running after that pool closes."""
    with WorkerPool(size=1, timeout=10) as used:
        assert used.run(square, 2) == 4
        WorkerPool(size=1, timeout=10).close()  # never ran anything
        assert _server_pid() is not None  # `used` is still open
    assert _server_pid() is None and _budget._server_users == 0
