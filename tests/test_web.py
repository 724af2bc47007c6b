"""The newsletter on the web (issue 7): routes through an ASGI client, against a real SQLite
store and a real SMTP server (aiosmtpd) for the confirmation messages."""

from __future__ import annotations

import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from email.utils import parsedate_to_datetime
from html import unescape
from urllib.parse import parse_qs, urlsplit

import feedparser
import pytest

from aggregator import pipeline
from aggregator.deliver import unsubscribe_token
from aggregator.exceptions import IssueHeld, StorageError
from aggregator.parse._jsonfeed import parse_json_document
from aggregator.storage import open_storage
from aggregator.types import JobRun, NewSubscriber
from aggregator.web import CONTENT_SECURITY_POLICY, make_app
from tests.test_cli import run
from tests.webkit import (
    HOSTILE,
    NOW,
    PAST_READER,
    SECRET,
    START,
    WEEK,
    Client,
    Clock,
    check_atom,
    check_json_feed,
    check_rss,
    mark_sent,
    seed,
    write_config,
)

SITE = "https://t.example.org/news"
FORM = {"content-type": "application/x-www-form-urlencoded"}
FEEDS = {
    "/feed.xml": ("application/rss+xml", check_rss),
    "/feed.atom": ("application/atom+xml", check_atom),
    "/feed.json": ("application/feed+json", check_json_feed),
    "/sections/training.xml": ("application/rss+xml", check_rss),
    "/sections/crisis.xml": ("application/rss+xml", check_rss),
    "/issues.xml": ("application/rss+xml", check_rss),
}


@pytest.fixture
def site(tmp_path, smtp_server):
    config = write_config(tmp_path, smtp_server.port)
    seed(config)
    storage = open_storage(config.database, NOW)
    clock = Clock()
    app = make_app(config, storage, clock=clock, secret=SECRET)
    yield config, storage, Client(app), clock, smtp_server.mailbox
    storage.close()


def status_of(storage, address):
    sub = storage.get_subscriber(address)
    return None if sub is None else sub.status


def newcomers(storage):
    """The subscribers other than the seeded past reader (see webkit.mark_sent)."""
    return [s for s in storage.get_subscribers() if s.address != PAST_READER]


def confirm_link(mailbox, address):
    [msg] = [m for m in mailbox.parsed() if m["To"] == address][-1:]
    text = msg.get_body(("plain",)).get_content()
    [url] = re.findall(r"https://\S+", text)
    return url


def local(url: str) -> str:
    """A public URL as the app sees it behind the proxy (which strips the /news prefix)."""
    parts = urlsplit(url)
    return parts.path.removeprefix("/news") + (f"?{parts.query}" if parts.query else "")


# --- feeds ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(FEEDS))
def test_every_feed_parses_and_passes_the_validator_rules(site, path):
    _, _, client, _, _ = site
    media, check = FEEDS[path]
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == media
    assert check(response.content, SITE + path) == []
    if media == "application/feed+json":
        # feedparser cannot read JSON Feed: our own JSON Feed parser, which validates its shape
        parsed_json = parse_json_document(response.content, SITE + path)
        assert parsed_json.format.startswith("json") and parsed_json.entries
        assert not parsed_json.warnings
        return
    parsed = feedparser.parse(response.content)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.entries


def test_the_feeds_agree_with_feed_xml_and_carry_story_grouping(site):
    _, _, client, _, _ = site
    rss = feedparser.parse(client.get("/feed.xml").content)
    atom = feedparser.parse(client.get("/feed.atom").content)
    feed = json.loads(client.get("/feed.json").content)
    titles = [e.title for e in rss.entries]
    assert titles == [e.title for e in atom.entries] == [i["title"] for i in feed["items"]]
    assert [e.id for e in rss.entries] == [e.id for e in atom.entries]
    assert HOSTILE in titles  # as text, escaped in the XML, not dropped
    grouped = next(i for i in feed["items"] if i["title"] == "Training drill 0-a")
    assert "Also reported by" in grouped["content_html"] and "Source R" in grouped["content_html"]
    hostile = next(i for i in feed["items"] if i["title"] == HOSTILE)  # titles are text
    assert "<script>" not in hostile["content_html"] and "&lt;script&gt;" in hostile["content_html"]


def test_section_feeds_hold_only_their_section(site):
    _, _, client, _, _ = site
    training = feedparser.parse(client.get("/sections/training.xml").content)
    assert {e.title for e in training.entries} == {
        "Training drill 0-a", "Training drill 0-b", "Training drill 1-a", "Training drill 1-b",
    }  # fmt: skip
    assert training.feed.title == "Weekly T: Training"
    assert client.get("/sections/nope.xml").status_code == 404


def test_issues_feed_has_one_entry_per_issue_with_its_full_html(site):
    _, storage, client, _, _ = site
    parsed = feedparser.parse(client.get("/issues.xml").content)
    issues = storage.get_issues()
    assert len(parsed.entries) == len(issues) == 2
    newest = parsed.entries[0]
    assert newest.link == f"{SITE}/issues/2"
    for title in ("Training drill 0-a", "Crisis team 0"):
        assert title in newest.description
    assert "Training drill 1-a" in parsed.entries[1].description
    assert "<style" not in newest.description and "style=" not in newest.description


def test_conditional_get_answers_304_until_the_content_changes(site):
    _config, storage, client, _, _ = site
    first = client.get("/feed.xml")
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    assert client.get("/feed.xml", headers={"if-none-match": etag}).status_code == 304
    assert client.get("/feed.xml", headers={"if-modified-since": modified}).status_code == 304
    assert client.get("/feed.xml", headers={"if-none-match": '"other"'}).status_code == 200
    assert client.get("/feed.xml").content == first.content  # stable bytes: no clock inside
    with storage.transaction() as tx:
        at = NOW + timedelta(hours=1)
        story = tx.add_story(at)
        tx.add_item(
            pipeline_item("fresh", "Training fresh news", at), story, placement("training"), at
        )
    changed = client.get("/feed.xml", headers={"if-none-match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag
    assert "Training fresh news" in changed.text
    assert client.get("/feed.xml", headers={"if-modified-since": modified}).status_code == 200


def pipeline_item(guid, title, at):
    from tests.webkit import item

    return item("s", guid, title, at)


def placement(section):
    from aggregator.types import Placement

    return Placement(section, 1.0)


# --- pages ---------------------------------------------------------------------------------


def test_pages_are_accessible_escaped_and_script_free(site):
    _, _, client, _, _ = site
    for path in ("/", "/issues/", "/issues/1", "/issues/2", "/subscribe"):
        response = client.get(path)
        assert response.status_code == 200, path
        html = response.text
        assert response.headers["content-type"].startswith("text/html")
        assert "<script" not in html.lower() and " style=" not in html, path
        assert not re.search(r"<[^>]+\son[a-z]+\s*=", html), path  # no event handlers
        assert re.search(r"<html lang=\"en\"", html)
        assert len(re.findall(r"<h1[ >]", html)) == 1, path
        assert 'name="viewport"' in html
        assert all(" alt=" in tag for tag in re.findall(r"<img[^>]*>", html)), path
    latest = client.get("/").text
    assert "Training drill 0-a" in latest and "Issue 2" in latest
    assert "&lt;script&gt;" in latest and "<script>alert" not in latest
    archive = client.get("/issues/").text
    assert archive.index("/news/issues/2") < archive.index("/news/issues/1")
    assert client.get("/issues/9").status_code == 404
    assert client.get("/issues/x").status_code == 404
    css = client.get("/static/site.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")


def test_the_latest_page_before_any_issue(tmp_path, smtp_server):
    config = write_config(tmp_path, smtp_server.port)
    storage = open_storage(config.database, NOW)
    try:
        client = Client(make_app(config, storage, clock=Clock(), secret=SECRET))
        page = client.get("/")
        assert page.status_code == 200 and "No issue has been published yet" in page.text
        assert feedparser.parse(client.get("/issues.xml").content).bozo == 0
        assert check_rss(client.get("/feed.xml").content, SITE + "/feed.xml") == []
    finally:
        storage.close()


@pytest.mark.parametrize(
    ("method", "path", "kwargs"),
    [
        ("GET", "/", {}),
        ("GET", "/feed.xml", {}),
        ("GET", "/nope", {}),
        ("GET", "/healthz", {}),
        ("POST", "/subscribe", {"data": {"address": "a@example.org"}, "headers": {"origin": "https://evil.example"}}),
        ("POST", "/subscribe", {"content": b"address=" + b"x" * 10_000, "headers": FORM}),
        ("POST", "/unsubscribe", {"data": {"List-Unsubscribe": "One-Click"}}),
        ("DELETE", "/feed.xml", {}),
        ("POST", "/unsubscribe?token=1.x", {"content": b"x" * 5000}),
    ],
)  # fmt: skip
def test_security_headers_on_every_response(site, method, path, kwargs):
    _, _, client, _, _ = site
    response = client.request(method, path, **kwargs)
    headers = response.headers
    assert headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "script-src" not in CONTENT_SECURITY_POLICY  # default-src 'none': no script at all
    assert "frame-ancestors 'none'" in CONTENT_SECURITY_POLICY
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "same-origin"


# --- subscribe: double opt-in --------------------------------------------------------------


def test_double_opt_in_nothing_is_active_until_confirmed(site):
    _config, storage, client, clock, mailbox = site
    form = client.get("/subscribe")
    assert 'type="email"' in form.text and 'autocomplete="email"' in form.text
    answer = client.post("/subscribe", data={"address": "Ann@Example.ORG"})
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    assert status_of(storage, "ann@example.org") == "pending"
    [msg] = mailbox.parsed()
    assert msg["To"] == "Ann@example.org" and "Confirm your subscription" in msg["Subject"]
    link = confirm_link(mailbox, "Ann@example.org")
    assert link.startswith(f"{SITE}/confirm?token=c1.")

    page = client.get(local(link))  # a mail scanner following the link confirms nothing
    assert page.status_code == 200 and 'action="/news/confirm"' in page.text
    assert status_of(storage, "ann@example.org") == "pending"
    token = parse_qs(urlsplit(link).query)["token"][0]
    done = client.post("/confirm", data={"token": token})
    assert done.status_code == 200 and "You are subscribed" in done.text
    sub = storage.get_subscriber("ann@example.org")
    assert sub.status == "active" and sub.confirmed == NOW
    clock.now = NOW + timedelta(hours=1)
    again = client.post("/confirm", data={"token": token})  # idempotent
    assert again.status_code == 200
    assert storage.get_subscriber("ann@example.org").confirmed == NOW


def test_the_form_tells_nobody_who_is_subscribed(site):
    _, storage, client, _, mailbox = site
    storage.add_subscribers([NewSubscriber("known@example.org")], NOW)
    known = client.post("/subscribe", data={"address": "known@example.org"})
    new = client.post("/subscribe", data={"address": "other@example.org"})
    assert known.status_code == new.status_code == 200

    def body(r, address):
        main = r.text.split('<main id="main" class="main">')[1].split("</main>")[0]
        return main.replace(address, "ADDRESS")

    assert body(known, "known@example.org") == body(new, "other@example.org")
    assert [m["To"] for m in mailbox.parsed()] == ["other@example.org"]  # none to the member
    assert status_of(storage, "known@example.org") == "active"


def test_repeat_requests_do_not_spam_an_address(site):
    _, storage, client, clock, mailbox = site
    for n in range(4):
        clock.now = NOW + timedelta(minutes=n)
        assert client.post("/subscribe", data={"address": "b@example.org"}).status_code == 200
    assert len(mailbox.messages) == 2  # web.per_address_per_day
    clock.now = NOW + timedelta(days=1, minutes=1)
    client.post("/subscribe", data={"address": "b@example.org"})
    assert len(mailbox.messages) == 3
    assert status_of(storage, "b@example.org") == "pending"


def test_a_flood_from_one_client_is_refused_and_changes_nothing(site):
    _, storage, client, clock, mailbox = site
    codes = [
        client.post("/subscribe", data={"address": f"f{n}@example.org"}).status_code
        for n in range(9)
    ]
    assert codes == [200] * 6 + [429] * 3  # web.per_client_per_hour
    flood = client.post("/subscribe", data={"address": "late@example.org"})
    assert "Too many requests" in flood.text and flood.headers["retry-after"] == "3600"
    assert status_of(storage, "late@example.org") is None
    assert len(mailbox.messages) == 6
    clock.now = NOW + timedelta(hours=1, minutes=1)
    assert client.post("/subscribe", data={"address": "late@example.org"}).status_code == 200


def test_bad_addresses_get_a_clear_answer(site):
    _, storage, client, _, mailbox = site
    for raw in (
        "not an address",
        "a@b",
        "x@example.org, y@example.org",
        "a@example.org\r\nBcc: z@e.org",
    ):
        response = client.post("/subscribe", data={"address": raw})
        assert response.status_code == 400 and "one e-mail address" in response.text
    assert newcomers(storage) == [] and mailbox.messages == []


def test_forged_and_expired_confirmation_links_are_refused(site):
    _, storage, client, clock, mailbox = site
    client.post("/subscribe", data={"address": "c@example.org"})
    client.post("/subscribe", data={"address": "d@example.org"})
    token = parse_qs(urlsplit(confirm_link(mailbox, "c@example.org")).query)["token"][0]
    head, sub_id, stamp, mac = token.split(".")
    forged = [
        f"{head}.{sub_id}.{stamp}.{mac[:-1]}{'0' if mac[-1] != '0' else '1'}",
        f"{head}.{int(sub_id) + 1}.{stamp}.{mac}",  # d's id with c's signature
        f"{head}.{sub_id}.{int(stamp) + 86400}.{mac}",  # a longer life
        "c1.1.2.3", "garbage", "",
        # non-ASCII (hmac.compare_digest raises TypeError on it) and overlong tokens
        f"{head}.{sub_id}.{stamp}.{mac[:-1]}\u00e9", f"{head}.{sub_id}.{stamp}.\u00e9",
        f"{head}.{sub_id}.{stamp}.{mac}" + "0" * 300,
    ]  # fmt: skip
    for bad in forged:
        for response in (client.get("/confirm", params={"token": bad}),
                         client.post("/confirm", data={"token": bad})):  # fmt: skip
            assert response.status_code == 400, bad
            assert "not valid" in response.text
    assert status_of(storage, "c@example.org") == status_of(storage, "d@example.org") == "pending"
    clock.now = NOW + timedelta(hours=48, seconds=1)
    expired = client.post("/confirm", data={"token": token})
    assert expired.status_code == 410 and "expired" in expired.text
    assert status_of(storage, "c@example.org") == "pending"


def test_cross_site_form_posts_are_refused(site):
    _, storage, client, _, mailbox = site
    client.post("/subscribe", data={"address": "e@example.org"})
    token = parse_qs(urlsplit(confirm_link(mailbox, "e@example.org")).query)["token"][0]
    evil = [
        {"origin": "https://evil.example"},
        {"origin": "null"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": "https://www.t.example.org"},
    ]
    for headers in evil:
        r1 = client.post("/subscribe", data={"address": "victim@example.org"}, headers=headers)
        r2 = client.post("/confirm", data={"token": token}, headers=headers)
        assert r1.status_code == r2.status_code == 403
        assert "Nothing was changed" in r1.text
    assert status_of(storage, "victim@example.org") is None
    assert status_of(storage, "e@example.org") == "pending"
    ok = client.post(
        "/confirm", data={"token": token},
        headers={"origin": "https://t.example.org", "sec-fetch-site": "same-origin"},
    )  # fmt: skip
    assert ok.status_code == 200 and status_of(storage, "e@example.org") == "active"


def test_a_huge_body_is_refused_with_413(site):
    _, storage, client, _, mailbox = site
    big = b"address=" + b"a" * 5000 + b"%40example.org"
    response = client.post(
        "/subscribe", content=big, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 413

    async def chunks():  # no Content-Length: a streamed body
        for _ in range(6):
            yield b"address=" + b"a" * 1000

    streamed = client.post(
        "/subscribe",
        content=chunks(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert streamed.status_code == 413
    assert newcomers(storage) == [] and mailbox.messages == []
    [(sub, _)] = storage.add_subscribers([NewSubscriber("w@example.org")], NOW)
    token = unsubscribe_token(sub.id, SECRET)
    huge = client.post(f"/unsubscribe?token={token}", content=b"List-Unsubscribe=One-Click&" * 400)
    assert huge.status_code == 413 and status_of(storage, "w@example.org") == "active"


def test_odd_forms_are_refused_and_change_nothing(site):
    _, storage, client, _, mailbox = site
    upload = client.post(
        "/subscribe", data={"address": "a@example.org"}, files={"f": ("x.txt", b"hello")}
    )
    assert upload.status_code == 400  # no files, ever
    many = client.post("/subscribe", data={f"k{n}": "v" for n in range(20)})
    assert many.status_code == 400  # at most 8 fields
    assert newcomers(storage) == [] and mailbox.messages == []
    head = client.request("HEAD", "/feed.xml")
    assert head.status_code == 200 and head.content == b"" and head.headers["etag"]


def test_subscriptions_are_closed_without_a_secret(tmp_path, smtp_server):
    config = write_config(tmp_path, smtp_server.port)
    storage = open_storage(config.database, NOW)
    try:
        client = Client(make_app(config, storage, clock=Clock(), secret=""))
        assert client.get("/subscribe").status_code == 503
        assert client.post("/subscribe", data={"address": "a@example.org"}).status_code == 503
        token = unsubscribe_token(1, "anything")
        assert client.post(f"/unsubscribe?token={token}").status_code == 503
        assert client.get("/feed.xml").status_code == 200
        assert newcomers(storage) == []
    finally:
        storage.close()


# --- unsubscribe ---------------------------------------------------------------------------


def test_one_click_unsubscribe_from_a_real_message(site):
    config, storage, client, _, mailbox = site
    storage.add_subscribers([NewSubscriber("u1@example.org"), NewSubscriber("u2@example.org")], NOW)
    pipeline.send_issue(config, storage, NOW, env={"WEB_KEY": SECRET}, force=True)
    msg = next(m for m in mailbox.parsed() if m["To"] == "u1@example.org")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(https://[^>]+)>", msg["List-Unsubscribe"]).group(1)

    page = client.get(local(url))  # the confirmation page changes nothing
    assert page.status_code == 200 and "u1@example.org" not in page.text
    assert "u*" in page.text and "u2" not in page.text  # its own address, masked; no other
    assert status_of(storage, "u1@example.org") == "active"
    # RFC 8058: a mail provider posts from its own servers: no Origin of ours, no cookies
    for attempt in range(2):  # idempotent
        done = client.post(
            local(url), data={"List-Unsubscribe": "One-Click"},
            headers={"origin": "https://mail.provider.example"},
        )  # fmt: skip
        assert done.status_code == 200 and "You are unsubscribed" in done.text, attempt
    assert status_of(storage, "u1@example.org") == "unsubscribed"
    assert status_of(storage, "u2@example.org") == "active"
    revisit = client.get(local(url))
    assert "You are unsubscribed" in revisit.text


def test_forged_unsubscribe_tokens_change_nothing(site):
    _, storage, client, _, _ = site
    [(sub, _)] = storage.add_subscribers([NewSubscriber("v@example.org")], NOW)
    good = unsubscribe_token(sub.id, SECRET)
    for bad in (
        unsubscribe_token(sub.id, "wrong key"),
        good[:-1] + ("0" if good[-1] != "0" else "1"),
        f"{sub.id + 1}.{good.split('.')[1]}",
        str(sub.id),
        "x.y",
        "",
        f"{sub.id}.\u00e9",  # GET /unsubscribe?token=1.%C3%A9 was a 500 with a traceback
        good[:-1] + "\u00e9",
        f"{sub.id}.\U0001f600" + good.split(".")[1],
        good + "0" * 300,
    ):
        get = client.get("/unsubscribe", params={"token": bad})
        post = client.post(
            "/unsubscribe", params={"token": bad}, data={"List-Unsubscribe": "One-Click"}
        )
        assert get.status_code == post.status_code == 400, bad
        assert "not valid" in post.text
    assert status_of(storage, "v@example.org") == "active"
    form = client.post("/unsubscribe", data={"token": good})  # the page's own form
    assert form.status_code == 200 and status_of(storage, "v@example.org") == "unsubscribed"


# --- health --------------------------------------------------------------------------------


def test_healthz_reports_database_scheduler_and_broken_sources(site):
    _config, storage, client, clock, _ = site
    first = client.get("/healthz")
    assert first.status_code == 200 and first.headers["content-type"] == "application/json"
    report = first.json()
    assert report["ok"] is True and report["database"] == "ok"
    assert report["scheduler_last_run"] is None
    assert report["sources"]["total"] == 2 and report["sources"]["broken"] == 0
    pipeline.record_job_run(
        storage, "fetch", NOW, ok=False, detail="db.internal:5432 user aggregator: refused"
    )
    # cached for 30 s: a flood of monitors does not query the store per request
    assert client.get("/healthz").json()["scheduler_last_run"] is None
    clock.now = NOW + timedelta(seconds=31)
    response = client.get("/healthz")
    report = response.json()
    assert report["scheduler_last_run"] == NOW.isoformat()
    assert report["scheduler"]["fetch"] == {"last_run": NOW.isoformat(), "ok": False}
    assert "db.internal" not in response.text  # a job's detail stays in the store and log


class BrokenStorage:
    """A store whose database stopped answering."""

    def __init__(self, real):
        self.real = real

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise StorageError(
                "database error while checking the database: connection to db.internal "
                "(10.0.0.5) port 5432 for user aggregator refused"
            )

        return fail


def test_healthz_and_pages_when_the_database_is_down(site):
    config, storage, _, clock, _ = site
    client = Client(make_app(config, BrokenStorage(storage), clock=clock, secret=SECRET))
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json() == {"ok": False, "database": "error"}
    assert "db.internal" not in health.text and "aggregator" not in health.text
    page = client.get("/")
    assert page.status_code == 503 and "Temporarily unavailable" in page.text


def test_scheduler_jobs_record_their_runs(site):
    from aggregator.scheduler import digest_job

    config, storage, _, _, _ = site
    digest_job(config, storage, NOW + timedelta(days=30))  # nothing due: "not due"
    run_ = storage.get_job_runs()["digest"]
    assert isinstance(run_, JobRun) and run_.last_run == NOW + timedelta(days=30)


# --- static export and the CLI ---------------------------------------------------------------


def test_publish_writes_the_whole_public_site(site, tmp_path):
    config, _, _, _, _ = site
    out = tmp_path / "site"
    code, _stdout, err = run("--config", str(config.path), "publish", "--out", str(out))
    assert code == 0, err
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {
        "feed.xml", "feed.atom", "feed.json", "issues.xml", "sections/training.xml",
        "sections/crisis.xml", "index.html", "issues/index.html", "issues/1.html",
        "issues/2.html", "static/site.css",
    } <= names  # fmt: skip
    assert check_rss((out / "feed.xml").read_bytes(), SITE + "/feed.xml") == []
    assert check_atom((out / "feed.atom").read_bytes(), SITE + "/feed.atom") == []
    index = (out / "index.html").read_text()
    assert "/news/subscribe" not in index  # a static site has no form to send
    assert "Training drill 0-a" in unescape(index)


def test_serve_and_publish_have_help(capsys):
    for command in ("serve", "publish"):
        code, _, _ = run(command, "--help")
        assert code == 0 and "usage:" in capsys.readouterr().out
    code, _, _err = run("--config", "/nonexistent/feeds.yaml", "serve")
    assert code == 3


def test_web_config_is_validated(tmp_path, smtp_server):
    from aggregator.exceptions import ConfigError

    with pytest.raises(ConfigError) as e:
        write_config(tmp_path, smtp_server.port, web="{confirm_hours: 0, nope: 1}")
    text = str(e.value)
    assert "web.confirm_hours" in text and "nope" in text


def test_no_path_leads_out_of_the_routes(site):
    _, _, client, _, _ = site
    for path in ("/issues/../feeds.yaml", "/static/../feeds.yaml", "/sections/..%2Ffeeds.xml"):
        assert client.get(path).status_code == 404, path


@pytest.mark.corpus
def test_feeds_and_pages_of_the_real_teasers(tmp_path, smtp_server):
    """The Police1 teasers of ../shared/examples (curly quotes, dashes, long sentences) filed
    as an editor would, through every feed and page."""
    import yaml

    from tests.conftest import SEED_ITEMS
    from tests.webkit import END, START, item

    config = write_config(
        tmp_path,
        smtp_server.port,
        web="{}",
    )
    known = {s.id for s in config.sections}
    rows = yaml.safe_load(SEED_ITEMS.read_text(encoding="utf-8"))["items"]
    storage = open_storage(config.database, NOW)
    try:
        with storage.transaction() as tx:
            for n, row in enumerate(rows):
                at = START + timedelta(minutes=10 * n)
                section = "training" if row["section"] not in known else row["section"]
                story = tx.add_story(at)
                tx.add_item(item("s", f"p{n}", row["text"], at), story, placement(section), at)
        issue, _ = pipeline.freeze_issue(config, storage, NOW, start=START, end=END)
        mark_sent(storage, issue)
        client = Client(make_app(config, storage, clock=Clock(), secret=SECRET))
        for path, (_, check) in FEEDS.items():
            body = client.get(path).content
            assert check(body, SITE + path) == [], path
        rss = feedparser.parse(client.get("/feed.xml").content)
        assert rss.bozo == 0 and len(rss.entries) == min(len(rows), 100)
        assert {e.title for e in rss.entries} <= {r["text"] for r in rows}
        page = unescape(client.get("/issues/1").text)
        shown = [r["text"] for r in rows if r["text"] in page]
        assert len(shown) == len(issue.story_ids) > 0  # every story of the issue, as text
    finally:
        storage.close()


def test_storage_of_the_web_front_on_every_backend(database_url):
    """Rate-limit events, job runs and lookups by id, on SQLite and PostgreSQL alike."""
    storage = open_storage(database_url, NOW)
    try:
        storage.ping()
        for minutes in (0, 30, 90):
            storage.add_web_event("client", "k1", NOW - timedelta(minutes=minutes))
        storage.add_web_event("address", "k1", NOW)
        assert storage.count_web_events("client", "k1", NOW - timedelta(hours=1)) == 2
        assert storage.count_web_events("client", "k2", NOW - timedelta(hours=1)) == 0
        assert storage.delete_web_events(NOW - timedelta(minutes=60)) == 1
        assert storage.count_web_events("client", "k1", NOW - timedelta(days=9)) == 2
        assert storage.get_job_runs() == {}
        storage.set_job_run(JobRun("fetch", NOW, True, "ok"))
        storage.set_job_run(JobRun("fetch", NOW + timedelta(minutes=5), False, "x" * 2000))
        [run_] = storage.get_job_runs().values()
        assert run_.last_run == NOW + timedelta(minutes=5) and not run_.ok
        assert len(run_.detail) == 1000
        [(sub, _)] = storage.add_subscribers([NewSubscriber("id@example.org")], NOW)
        assert storage.get_subscriber_by_id(sub.id) == sub
        assert storage.get_subscriber_by_id(sub.id + 1) is None
        # the atomic check-and-count of the rate limits, concurrently
        since = NOW - timedelta(hours=1)
        added = burst(
            8,
            lambda _: storage.add_web_event_if_below("address", "k3", NOW, since=since, limit=3),
        )
        assert sorted(added) == [False] * 5 + [True] * 3
        assert storage.count_web_events("address", "k3", since) == 3
        # only issues that went out are public; the archive's list comes without bodies
        sent, _ = storage.add_issue(
            START - WEEK, START, subject="A", html="<p>a</p>", text="a", story_ids=[], now=START
        )
        held, _ = storage.add_issue(
            START, START + WEEK, subject="B", html="<p>b</p>", text="b", story_ids=[], now=NOW
        )
        storage.add_deliveries(sent.id, [sub.id], NOW)
        storage.add_deliveries(held.id, [sub.id], NOW)
        assert storage.get_sent_issues(NOW) == []  # pending is not sent
        storage.set_delivery(sent.id, sub.id, "sent", NOW)
        storage.set_delivery(held.id, sub.id, "failed_perm", NOW)
        assert storage.get_sent_issues(NOW) == [sent]
        [bare] = storage.get_sent_issues(NOW, bodies=False)
        assert (bare.number, bare.subject, bare.html, bare.text) == (1, "A", "", "")
        assert storage.get_sent_issues(NOW, number=2) == []
        assert storage.get_sent_issues(START - timedelta(seconds=1)) == []  # week not over
    finally:
        storage.close()


# --- review fixes: concurrency, what is public, dates, leaks -----------------------------------


def burst(n, fn):
    """`fn(i)` for i in range(n) from n threads released at once (each request its own event
    loop and thread pool, as many server threads would run them)."""
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def test_a_concurrent_burst_for_one_address_mails_it_at_most_the_limit(tmp_path, smtp_server):
    config = write_config(
        tmp_path, smtp_server.port, web="{per_address_per_day: 2, per_client_per_hour: 1000}"
    )
    seed(config)
    storage = open_storage(config.database, NOW)
    try:
        client = Client(make_app(config, storage, clock=Clock(), secret=SECRET))
        codes = burst(
            16, lambda _: client.post("/subscribe", data={"address": "victim@example.org"})
        )
        assert [c.status_code for c in codes] == [200] * 16  # the same answer to everybody
        got = [m for m in smtp_server.mailbox.parsed() if m["To"] == "victim@example.org"]
        assert len(got) == 2  # web.per_address_per_day, however concurrent the requests
    finally:
        storage.close()


def test_a_concurrent_burst_from_one_client_gets_at_most_the_limit(site):
    _, _, client, _, mailbox = site
    codes = burst(
        14, lambda i: client.post("/subscribe", data={"address": f"b{i}@example.org"}).status_code
    )
    assert sorted(codes) == [200] * 6 + [429] * 8  # web.per_client_per_hour: 6
    assert len(mailbox.messages) == 6


def test_ipv6_clients_are_limited_by_their_64(site):
    config, storage, _, _, _ = site
    rotating = [
        pipeline.client_allowed(config, storage, f"2001:db8:1:2::{n:x}", SECRET, NOW)
        for n in range(1, 9)
    ]
    assert rotating == [True] * 6 + [False] * 2  # one /64 is one client
    assert pipeline.client_allowed(config, storage, "2001:db8:1:3::1", SECRET, NOW)
    assert pipeline.client_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert pipeline.client_key("::ffff:192.0.2.1") == pipeline.client_key("192.0.2.1")


def test_an_old_dated_new_story_or_a_new_outlet_moves_last_modified(site):
    from tests.webkit import item

    _, storage, client, _, _ = site
    rss, atom = client.get("/feed.xml"), feedparser.parse(client.get("/feed.atom").content)
    modified = rss.headers["last-modified"]
    arrived = NOW + timedelta(hours=2)
    with storage.transaction() as tx:  # news published three weeks ago, found only now
        story = tx.add_story(arrived)
        tx.add_item(
            item("s", "late", "Training late news", START - 3 * WEEK),
            story,
            placement("training"),
            arrived,
        )
    again = client.get("/feed.xml", headers={"if-modified-since": modified})
    assert again.status_code == 200 and "Training late news" in again.text
    assert parsedate_to_datetime(again.headers["last-modified"]) == arrived
    atom_again = feedparser.parse(client.get("/feed.atom").content)
    assert atom_again.feed.updated != atom.feed.updated

    # another outlet's copy joins an existing story: the bytes change, so must the date
    modified = again.headers["last-modified"]
    crisis = next(s for s in storage.get_stories() if s.lead.item.title == "Crisis team 0")
    joined = arrived + timedelta(hours=1)
    with storage.transaction() as tx:
        tx.add_item(
            item("r", "c0", "Crisis team 0", joined), crisis.id, placement("crisis"), joined
        )
    third = client.get("/feed.xml", headers={"if-modified-since": modified})
    assert (
        third.status_code == 200 and parsedate_to_datetime(third.headers["last-modified"]) == joined
    )
    entry = next(
        e
        for e in feedparser.parse(client.get("/feed.atom").content).entries
        if e.title == "Crisis team 0"
    )
    assert entry.updated == "2026-11-30T10:00:00Z"  # the new outlet's arrival


def test_held_and_test_copy_issues_are_not_public(site):
    config, storage, client, clock, _ = site
    env = {"WEB_KEY": SECRET}
    later = NOW + WEEK
    clock.now = later
    before = client.get("/issues/1").headers["last-modified"]
    issue, status, _ = pipeline.send_test_copy(config, storage, later, "ed@example.org", env=env)
    assert status == "sent" and issue.number == 3  # frozen by the test copy

    def private():
        assert client.get("/issues/3").status_code == 404
        assert "/issues/3" not in client.get("/issues/").text
        assert "/issues/2" in client.get("/").text or "Training drill 0-a" in unescape(
            client.get("/").text
        )
        assert len(feedparser.parse(client.get("/issues.xml").content).entries) == 2
        assert client.get("/issues/1", headers={"if-modified-since": before}).status_code == 304

    private()
    held = replace(config, delivery=replace(config.delivery, min_stories=100))
    with pytest.raises(IssueHeld):
        pipeline.send_issue(held, storage, later, env=env)
    private()
    storage.add_subscribers([NewSubscriber("reader@example.org")], later)
    report = pipeline.send_issue(config, storage, later, env=env)
    assert report.sent == 1
    assert client.get("/issues/3").status_code == 200
    # issue 1's page now links a newer issue: it changed, and says so
    assert client.get("/issues/1", headers={"if-modified-since": before}).status_code == 200


def test_the_issues_feed_carries_the_newest_issues_only(site):
    _, storage, client, _, _ = site
    for n in range(1, 23):
        start = START - (n + 1) * WEEK
        issue, _ = storage.add_issue(
            start, start + WEEK, subject=f"Old {n}", html="<p>old</p>", text="old",
            story_ids=[], now=start + WEEK,
        )  # fmt: skip
        mark_sent(storage, issue)
    parsed = feedparser.parse(client.get("/issues.xml").content)
    assert len(parsed.entries) == pipeline.ISSUES_FEED_LIMIT == 20
    assert [e.link for e in parsed.entries] == [f"{SITE}/issues/{n}" for n in range(24, 4, -1)]
    archive = client.get("/issues/").text
    assert all(f'href="/news/issues/{n}"' in archive for n in range(1, 25))  # the archive: all


def test_the_stylesheet_has_an_etag_and_no_invented_date(site):
    _, _, client, _, _ = site
    css = client.get("/static/site.css")
    assert css.status_code == 200 and "last-modified" not in css.headers
    assert (
        client.get("/static/site.css", headers={"if-none-match": css.headers["etag"]}).status_code
        == 304
    )
    assert (
        client.get(
            "/static/site.css", headers={"if-modified-since": "Sat, 01 Jan 2000 00:00:00 GMT"}
        ).status_code
        == 200
    )


def test_subscribing_again_dates_the_new_consent(site):
    _, storage, client, clock, mailbox = site
    client.post("/subscribe", data={"address": "again@example.org"})
    token = parse_qs(urlsplit(confirm_link(mailbox, "again@example.org")).query)["token"][0]
    assert client.post("/confirm", data={"token": token}).status_code == 200
    first = storage.get_subscriber("again@example.org")
    assert first.status == "active" and first.confirmed == NOW
    storage.set_subscriber_status("again@example.org", "unsubscribed", NOW + timedelta(days=1))
    clock.now = NOW + timedelta(days=30)
    client.post("/subscribe", data={"address": "again@example.org"})
    token = parse_qs(urlsplit(confirm_link(mailbox, "again@example.org")).query)["token"][0]
    assert client.post("/confirm", data={"token": token}).status_code == 200
    again = storage.get_subscriber("again@example.org")
    assert again.status == "active" and again.confirmed == NOW + timedelta(days=30)
    # confirming twice does not move it
    clock.now = NOW + timedelta(days=30, hours=1)
    client.post("/confirm", data={"token": token})
    assert storage.get_subscriber("again@example.org").confirmed == NOW + timedelta(days=30)


def test_file_mode_confirmations_stay_out_of_the_public_folder(site):
    from aggregator.exceptions import DeliveryError
    from aggregator.web import publish_site

    config, storage, _, clock, _ = site
    files = replace(config, delivery=replace(config.delivery, mode="files"))
    client = Client(make_app(files, storage, clock=clock, secret=SECRET))
    assert client.post("/subscribe", data={"address": "f@example.org"}).status_code == 200
    [written] = list((config.path.parent / "outbox" / "confirmations").glob("*.eml"))
    assert "confirm?token=" in written.read_text().replace("=\n", "")
    publish_site(files, storage, files.output_dir, NOW)
    public = [p.read_bytes() for p in files.output_dir.rglob("*") if p.is_file()]
    assert public and not any(b"confirm?token=" in b for b in public)
    assert not (files.output_dir / "confirmations").exists()
    inside = replace(files, output_dir=config.path.parent)
    with pytest.raises(DeliveryError, match="would be published"):
        pipeline.confirmations_dir(inside)


def test_issue_text_that_looks_like_markup_stays_text():
    from aggregator.render import issue_body

    body = issue_body("<html><body>&lt;b&gt;bold?&lt;/b&gt; <p>x &lt;i&gt;y</p></body></html>")
    assert "<b>" not in body and "<i>" not in body
    assert "&lt;b&gt;bold?&lt;/b&gt;" in body and "&lt;i&gt;y" in body
