"""1,000 subscribers, a relay that drops the connection every 150 messages and refuses 3
addresses: `digest --send` plus reruns delivers exactly one copy to each good address."""

from __future__ import annotations

import pytest

from aggregator.config import load_config
from aggregator.storage import open_storage
from aggregator.types import NewSubscriber
from tests.smtpserver import SmtpServer
from tests.test_cli import run
from tests.test_deliver import NOW, smtp_delivery, write_config

WINDOW = ("--since", "2026-11-16", "--until", "2026-11-23")


@pytest.mark.slow
def test_thousand_subscribers_drops_and_refusals(tmp_path, monkeypatch):
    monkeypatch.setenv("UNSUB_KEY", "k")
    addresses = [f"reader{i:04d}@example.org" for i in range(1000)]
    refused = {addresses[7], addresses[500], addresses[999]}
    with SmtpServer() as server:
        box = server.mailbox
        box.refuse, box.drop_after = set(refused), 150
        drops: list[str] = []
        handle_mail = box.handle_MAIL

        async def counting_mail(*args: object) -> str:
            answer = await handle_mail(*args)  # type: ignore[arg-type]
            if answer.startswith("421"):
                drops.append(answer)
            return answer

        box.handle_MAIL = counting_mail  # type: ignore[method-assign]
        path = write_config(tmp_path, smtp_delivery(server.port))
        config = load_config(path)
        storage = open_storage(config.database, NOW)
        try:
            storage.add_subscribers([NewSubscriber(a) for a in addresses], NOW)
        finally:
            storage.close()

        runs = 0
        while True:
            runs += 1
            code, _out, err = run("--config", str(path), "digest", "--send", *WINDOW)
            assert code in (0, 5), err
            storage = open_storage(config.database, NOW)
            try:
                [issue] = storage.get_issues()
                rows = storage.get_deliveries(issue.id)
                subs = {s.id: s.address for s in storage.get_subscribers()}
            finally:
                storage.close()
            pending = [r for r in rows if r.status in ("pending", "sending", "failed_temp")]
            if not pending or runs == 5:
                break
        assert not pending, f"{len(pending)} still pending after {runs} runs"

        good = set(addresses) - refused
        copies = box.copies()
        assert copies == {a: 1 for a in good}  # exactly one copy each, none to the refused
        assert drops and len(drops) >= 6  # the relay really dropped, every 150
        status = {subs[r.subscriber_id]: r.status for r in rows}
        assert {a for a, s in status.items() if s == "failed_perm"} == refused
        assert {a for a, s in status.items() if s == "sent"} == good  # ledger == mailbox
        assert len(rows) == 1000
