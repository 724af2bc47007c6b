"""End to end in a real browser: the real server (uvicorn on 127.0.0.1), headless Chromium
driven by Playwright, and a real SMTP server (aiosmtpd) catching the mail.

A reader subscribes, confirms through the link in the captured message, receives the week's
issue, reads it on the site, and leaves through the issue's one-click unsubscribe link.
Screenshots at 375 px and 1280 px land in test-artifacts/.

Needs Debian's `chromium` (never a Playwright browser download): skipped with that reason
when it is absent, an error in CI (CI=true), where .ci/run installs it.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from aggregator import pipeline
from aggregator.storage import open_storage
from aggregator.web import make_app
from tests.browser import CHROMIUM, FLAGS, missing_reason
from tests.webkit import NOW, SECRET, Clock, write_config

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the tests group installs it
    sync_playwright = None

_MISSING = missing_reason(
    "needs the playwright package (the tests dependency group)" if sync_playwright is None else ""
)
pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(_MISSING), reason=_MISSING)]


class LiveServer:
    """The app under uvicorn on 127.0.0.1, mounted under /news as a reverse proxy would
    (newsletter.link is https://t.example.org/news/), in a thread."""

    def __init__(self, app) -> None:
        import uvicorn
        from starlette.applications import Starlette
        from starlette.routing import Mount

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        proxy = Starlette(routes=[Mount("/news", app=app)])
        config = uvicorn.Config(
            proxy, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}/news"

    def local(self, public_url: str) -> str:
        """A link from a message (https://t.example.org/news/...) on this server."""
        parts = urlsplit(public_url)
        assert parts.path.startswith("/news/"), public_url
        return f"http://127.0.0.1:{self.port}{parts.path}?{parts.query}"

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "server did not start"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


def seed_stories(config) -> None:
    from datetime import timedelta

    from aggregator.types import Placement
    from tests.webkit import START, item

    storage = open_storage(config.database, NOW)
    try:
        with storage.transaction() as tx:
            long_word = "Deescalation" * 10
            for n, (section, title) in enumerate(
                [
                    ("training", "Scenario-based training cuts use of force"),
                    ("training", f"A headline with an unbreakable {long_word} word"),
                    ("crisis", "Crisis teams answer more 911 calls"),
                ]
            ):
                at = START + timedelta(days=2, hours=n)
                story = tx.add_story(at)
                tx.add_item(item("s", f"b{n}", title, at), story, Placement(section, 1.0), at)
    finally:
        storage.close()


def status(storage, address: str) -> str | None:
    sub = storage.get_subscriber(address)
    return None if sub is None else sub.status


def shots(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    for width in (375, 1280):
        page.set_viewport_size({"width": width, "height": 900})
        # readable on a phone: nothing wider than the screen
        scroll = page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} is {scroll}px wide at {width}px"
        out = ARTIFACTS / f"web-{name}-{width}.png"
        page.screenshot(path=str(out), full_page=True)
        assert out.stat().st_size > 1000


def last_mail_to(mailbox, address: str, count: int = 1):
    """The newest message to `address` once `count` have arrived: the server sends the
    confirmation after answering the form, so it may land a moment later."""
    deadline = time.monotonic() + 15
    while True:
        found = [m for m in mailbox.parsed() if m["To"] == address]
        if len(found) >= count:
            return found[-1]
        assert time.monotonic() < deadline, f"{len(found)} of {count} messages to {address}"
        time.sleep(0.05)


def test_subscribe_confirm_receive_and_unsubscribe_in_chromium(tmp_path, smtp_server):
    config = write_config(tmp_path, smtp_server.port)
    seed_stories(config)
    storage = open_storage(config.database, NOW)
    mailbox = smtp_server.mailbox
    address = "reader@example.org"
    app = make_app(config, storage, clock=Clock(), secret=SECRET)
    try:
        with LiveServer(app) as server, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            try:
                page = browser.new_page(java_script_enabled=False)  # the site needs none
                errors: list[str] = []  # console errors: a CSP violation would show here
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                failed: list[str] = []  # the browser asks for /favicon.ico on its own: not ours
                page.on(
                    "response",
                    lambda r: (
                        failed.append(f"{r.status} {r.url}")
                        if r.status >= 400 and not r.url.endswith("/favicon.ico")
                        else None
                    ),
                )

                page.goto(server.base + "/subscribe")
                shots(page, "subscribe")
                page.get_by_label("Your e-mail address").fill(address)
                page.get_by_role("button", name="Subscribe").click()
                page.get_by_role("heading", name="Check your inbox").wait_for()
                assert status(storage, address) == "pending"

                text = last_mail_to(mailbox, address).get_body(("plain",)).get_content()
                [link] = re.findall(r"https://\S+/confirm\?token=\S+", text)
                page.goto(server.local(link))
                assert status(storage, address) == "pending"  # opening the link is not enough
                page.get_by_role("button", name="Confirm my subscription").click()
                page.get_by_role("heading", name="You are subscribed").wait_for()
                assert status(storage, address) == "active"

                report = pipeline.send_issue(config, storage, NOW, env={"WEB_KEY": SECRET})
                assert report.sent == 1
                issue_mail = last_mail_to(mailbox, address, count=2)
                assert "Scenario-based training" in issue_mail.get_body(("html",)).get_content()

                page.goto(server.base + "/")
                # .first: the digest may list a story twice ("Top stories", then its section)
                page.get_by_role(
                    "link", name="Scenario-based training cuts use of force"
                ).first.wait_for()
                shots(page, "issue")
                page.goto(server.base + "/issues/")
                page.get_by_role("link", name=re.compile("Weekly T")).first.click()
                page.get_by_role("link", name="Crisis teams answer more 911 calls").first.wait_for()

                unsubscribe = re.search(r"<(https://[^>]+)>", issue_mail["List-Unsubscribe"])
                assert unsubscribe is not None
                page.goto(server.local(unsubscribe.group(1)))
                shots(page, "unsubscribe")
                assert status(storage, address) == "active"
                page.get_by_role("button", name="Unsubscribe").click()
                page.get_by_role("heading", name="You are unsubscribed").wait_for()
                assert status(storage, address) == "unsubscribed"
                assert failed == [], failed
                assert [e for e in errors if "favicon" not in e and "404" not in e] == [], errors
            finally:
                browser.close()
    finally:
        storage.close()
