"""kill -9 in the middle of `digest --send`, then restart (FAULTS P2, P3): every subscriber
gets exactly one copy, except at most one duplicate per crash, with the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.storage import open_storage
from aggregator.types import NewSubscriber
from tests.smtpserver import Mailbox, SmtpServer
from tests.test_deliver import NOW, smtp_delivery, write_config

ROOT = Path(__file__).resolve().parent.parent
WINDOW = ("--since", "2026-11-16", "--until", "2026-11-23")
ADDRESSES = [f"r{i:03d}@example.org" for i in range(60)]


def send_command(path: Path) -> list[str]:
    return [sys.executable, "-m", "aggregator", "--config", str(path), "digest", "--send", *WINDOW]


def env() -> dict[str, str]:
    return {**os.environ, "UNSUB_KEY": "k", "PYTHONPATH": str(ROOT)}


def prepare(tmp_path: Path, port: int) -> Path:
    # 1800 a minute: 60 messages take about 2 s
    delivery = smtp_delivery(port).replace("{mode: smtp,", "{mode: smtp, rate_per_minute: 1800,")
    path = write_config(tmp_path, delivery)
    config = load_config(path)
    storage = open_storage(config.database, NOW)
    try:
        storage.add_subscribers([NewSubscriber(a) for a in ADDRESSES], NOW)
    finally:
        storage.close()
    return path


def kill_after(path: Path, box: Mailbox, more: int) -> None:
    """Start a send and SIGKILL it once `more` further messages reached the server."""
    proc = subprocess.Popen(
        send_command(path), env=env(), cwd=path.parent,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    target = len(box.messages) + more
    deadline = time.monotonic() + 30
    while len(box.messages) < target and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.005)  # polling the mailbox, not waiting for a scheduler
    assert proc.poll() is None, "the send finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


def finish(path: Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        send_command(path), env=env(), cwd=path.parent, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.parametrize("kills", [1, 2])
def test_kill_9_mid_send_then_restart(tmp_path, kills):
    with SmtpServer() as server:
        box = server.mailbox
        path = prepare(tmp_path, server.port)
        for _ in range(kills):
            kill_after(path, box, 15)
        assert len(box.messages) < len(ADDRESSES)
        done = finish(path)
        assert "frozen earlier" in done.stdout  # the same frozen issue (FAULTS P3)

        copies = box.copies()
        assert set(copies) == set(ADDRESSES)
        extra = {a: n - 1 for a, n in copies.items() if n > 1}
        assert sum(extra.values()) <= kills, extra  # at most one duplicate per crash
        ids: dict[str, Counter[str]] = {}
        for msg in box.parsed():
            ids.setdefault(str(msg["To"]), Counter())[str(msg["Message-ID"])] += 1
        for address in extra:
            assert len(ids[address]) == 1  # the duplicate is recognisable: same Message-ID
        assert len({mid for c in ids.values() for mid in c}) == len(ADDRESSES)

        config = load_config(path)
        storage = open_storage(config.database, NOW)
        try:
            [issue] = storage.get_issues()
            assert {d.status for d in storage.get_deliveries(issue.id)} == {"sent"}
        finally:
            storage.close()
