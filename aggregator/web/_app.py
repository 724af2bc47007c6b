"""The ASGI application: `make_app(config, storage, clock=..., secret=...)`.

Routes (all GET unless said):
    /                     the latest issue          /issues/, /issues/<n>   the archive, one issue
    /feed.xml .atom .json the latest stories         /sections/<id>.xml      one section (RSS)
    /issues.xml           one item per issue        /static/site.css        the stylesheet
    /subscribe GET+POST   double opt-in, step 1     /confirm GET+POST       step 2
    /unsubscribe GET+POST the confirmation page, and RFC 8058 one-click (POST)
    /healthz              JSON for monitors

Blocking work (the database, SMTP) runs in Starlette's thread pool, never on the event loop.
The clock comes in as an argument (`clock`), like every `now` in the project.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from aggregator import pipeline
from aggregator.deliver import Outgoing
from aggregator.exceptions import DeliveryError, StorageError
from aggregator.storage import StorageType
from aggregator.subscribers import SubscriberError, mask_address, normalize_address
from aggregator.types import Config, Issue
from aggregator.web._pages import Pages
from aggregator.web._security import (
    SecurityHeadersMiddleware,
    conditional_response,
    same_origin,
)

T = TypeVar("T")
log = logging.getLogger("aggregator.web")
Clock = Callable[[], datetime]
MAX_FORM_FIELDS = 8
MAX_FIELD_BYTES = 4096
PAGE_CACHE = "public, max-age=60"
HEALTH_CACHE = timedelta(seconds=30)  # /healthz is public: a flood must not flood the store


class _Site:
    """What the handlers share: config, store, pages, clock and the signing secret."""

    def __init__(
        self,
        config: Config,
        storage: StorageType,
        clock: Clock,
        secret: str,
        env: Mapping[str, str] | None,
    ) -> None:
        self.config = config
        self.storage = storage
        self.clock = clock
        self.secret = secret
        self.env = env
        self.pages = Pages(config, dynamic=True)
        self._health: tuple[datetime, dict[str, object]] | None = None
        self._health_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await run_in_threadpool(partial(fn, *args, **kwargs))

    async def health(self) -> dict[str, object]:
        return await self.run(self._cached_health)

    def _cached_health(self) -> dict[str, object]:
        """`pipeline.site_health`, computed at most once per HEALTH_CACHE (one thread at a
        time: the others wait for its answer instead of asking the store too)."""
        with self._health_lock:
            now = self.clock()
            if self._health is None or not now - HEALTH_CACHE < self._health[0] <= now:
                self._health = (now, pipeline.site_health(self.config, self.storage, now))
            return self._health[1]

    @property
    def subscriptions_open(self) -> bool:
        return bool(self.secret) and self.config.delivery is not None

    def page(
        self,
        html: str,
        status: int = 200,
        *,
        background: BackgroundTask | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        return HTMLResponse(
            html,
            status,
            headers={"cache-control": "no-store", **(headers or {})},
            background=background,
        )

    def send_confirmation(self, outgoing: Outgoing) -> None:
        """A background task (run in the thread pool): a relay that fails is logged; the
        reader can ask again (the per-address limit counts the attempt)."""
        try:
            pipeline.send_confirmation(self.config, outgoing, self.env)
        except DeliveryError as e:
            log.error("subscribe: the confirmation to subscriber %d: %s", outgoing.subscriber_id, e)

    def closed(self) -> HTMLResponse:
        return self.page(
            self.pages.message(
                "Subscriptions are not open",
                "This site does not take subscriptions yet. Please try again later.",
                kind="error",
            ),
            503,
        )

    def refused(
        self, status: int, heading: str, *lines: str, headers: Mapping[str, str] | None = None
    ) -> HTMLResponse:
        return self.page(self.pages.message(heading, *lines, kind="error"), status, headers=headers)

    def cross_site(self, request: Request) -> HTMLResponse | None:
        if same_origin(request, [self.config.newsletter.link]):
            return None
        return self.refused(
            403,
            "Request refused",
            "This form can only be sent from this site's own pages. Nothing was changed.",
        )

    async def form(self, request: Request) -> dict[str, str]:
        # The whole body first, whatever its type: one over web.max_body_bytes gets its 413
        # here, before anything changes (request.form() skips bodies of unknown types).
        await request.body()
        form = await request.form(
            max_files=0, max_fields=MAX_FORM_FIELDS, max_part_size=MAX_FIELD_BYTES
        )
        return {k: v for k, v in form.items() if isinstance(v, str)}


def make_app(
    config: Config,
    storage: StorageType,
    *,
    clock: Clock,
    secret: str,
    env: Mapping[str, str] | None = None,
) -> ASGIApp:
    """The site over `storage`. `secret` signs confirmation links and checks unsubscribe
    tokens (delivery.unsubscribe_secret_env's value); without it, or without a `delivery:`
    section, the feeds and pages work and the subscription pages say they are closed.
    `env` gives the SMTP credentials (default: os.environ)."""
    site = _Site(config, storage, clock, secret, env)

    # --- pages -----------------------------------------------------------------------------

    async def issues_now() -> list[Issue]:
        # The archive's list only (no bodies): one issue's HTML is read when it is shown.
        return await site.run(pipeline.public_issues, storage, clock())

    async def issue_page(request: Request, number: int | None) -> Response:
        issues = await issues_now()
        issue = None
        if number is not None or issues:
            issue = await site.run(pipeline.public_issue, storage, clock(), number)
            if issue is None:
                raise HTTPException(404)
        # lxml + nh3 over the issue's HTML (cached per issue): CPU work, off the event loop
        html = await site.run(site.pages.issue, issue, issues)
        # Every page links its neighbours: it changes whenever the archive does.
        updated = pipeline.issues_updated(issues)
        return conditional_response(
            request, html.encode(), "text/html; charset=utf-8", updated, cache=PAGE_CACHE
        )

    async def latest(request: Request) -> Response:
        return await issue_page(request, None)

    async def archive(request: Request) -> Response:
        issues = await issues_now()
        html = site.pages.archive(issues)
        updated = pipeline.issues_updated(issues)
        return conditional_response(
            request, html.encode(), "text/html; charset=utf-8", updated, cache=PAGE_CACHE
        )

    async def one_issue(request: Request) -> Response:
        return await issue_page(request, request.path_params["number"])

    async def stylesheet(request: Request) -> Response:
        # An editor may change the file at any time, and it has no date: ETag only.
        css = site.pages.stylesheet().encode()
        return conditional_response(request, css, "text/css; charset=utf-8", None)

    # --- feeds -----------------------------------------------------------------------------

    def feed(kind: pipeline.FeedKind) -> Callable[[Request], Any]:
        async def handler(request: Request) -> Response:
            doc = await site.run(pipeline.render_site_feed, config, storage, kind, clock())
            return conditional_response(request, doc.body, doc.content_type, doc.updated)

        return handler

    async def section_feed(request: Request) -> Response:
        section = pipeline.find_section(config, request.path_params["section"])
        if section is None:
            raise HTTPException(404)
        doc = await site.run(
            pipeline.render_site_feed, config, storage, "rss", clock(), section=section
        )
        return conditional_response(request, doc.body, doc.content_type, doc.updated)

    async def issues_feed(request: Request) -> Response:
        doc = await site.run(pipeline.render_site_issues_feed, config, storage, clock())
        return conditional_response(request, doc.body, doc.content_type, doc.updated)

    # --- subscribe, confirm, unsubscribe ---------------------------------------------------

    async def subscribe(request: Request) -> Response:
        if not site.subscriptions_open:
            return site.closed()
        if request.method == "GET":
            return site.page(site.pages.subscribe())
        refused = site.cross_site(request)
        if refused is not None:
            return refused
        fields = await site.form(request)
        client = request.client.host if request.client else "unknown"
        allowed = await site.run(pipeline.client_allowed, config, storage, client, secret, clock())
        if not allowed:
            return site.refused(
                429,
                "Too many requests",
                "There have been too many subscription requests from your network. "
                "Please try again in an hour.",
                headers={"retry-after": "3600"},
            )
        raw = fields.get("address", "")
        try:
            address, _ = normalize_address(raw)
        except SubscriberError:
            return site.page(
                site.pages.subscribe(
                    error="Please enter one e-mail address, like ann@example.org.",
                    address=raw[:254],
                ),
                400,
            )
        try:
            _, outgoing = await site.run(
                pipeline.request_subscription, config, storage, address, clock(), secret=secret
            )
        except DeliveryError as e:  # delivery.from unusable: the editor must fix feeds.yaml
            log.error("subscribe: %s", e)
            return site.refused(
                503,
                "We could not send the confirmation",
                "Subscriptions are not working right now. Nothing was changed; please try "
                "again later.",
            )
        # Sent after the answer (Starlette runs the task once the response is out), so how
        # long the answer takes does not tell whether a message went out.
        task = None if outgoing is None else BackgroundTask(site.send_confirmation, outgoing)
        # The same answer whatever the address's standing: the form tells nobody who reads us.
        return site.page(
            site.pages.message(
                "Check your inbox",
                f"If {address} can be subscribed, a message with a confirmation link is on its "
                "way to it.",
                f"The link works for {config.web.confirm_hours:g} hours. Nothing is sent to "
                "you until you open it and confirm.",
                kind="ok",
            ),
            background=task,
        )

    async def confirm(request: Request) -> Response:
        if not site.subscriptions_open:
            return site.closed()
        if request.method == "POST":
            refused = site.cross_site(request)
            if refused is not None:
                return refused
            token = (await site.form(request)).get("token", "")
        else:
            token = request.query_params.get("token", "")
        apply = request.method == "POST"
        result, sub = await site.run(
            pipeline.confirm_subscriber, storage, token, clock(), secret=secret, apply=apply
        )
        if result == "expired":
            return site.refused(
                410,
                "This link has expired",
                "Confirmation links work for a limited time. Please subscribe again to get a "
                "new one.",
            )
        if result != "confirmed" or sub is None:
            return site.refused(
                400,
                "This link is not valid",
                "It may have been cut short when it was copied. Nothing was changed.",
            )
        who = mask_address(sub.address)
        if apply:
            return site.page(
                site.pages.message(
                    "You are subscribed",
                    f"{who} will get {config.newsletter.title} every week.",
                    "Every issue has a link to unsubscribe at any time.",
                    kind="ok",
                )
            )
        return site.page(
            site.pages.message(
                "Confirm your subscription",
                f"Subscribe {who} to {config.newsletter.title}?",
                kind="info",
                form={
                    "action": f"{site.pages.base}/confirm",
                    "button": "Confirm my subscription",
                    "fields": [("token", token)],
                },
            )
        )

    async def unsubscribe(request: Request) -> Response:
        if not site.secret:
            return site.closed()
        token = request.query_params.get("token", "")
        apply = request.method == "POST"
        if apply:
            # RFC 8058 one-click: the mail provider posts `List-Unsubscribe=One-Click` to the
            # URL of the header (token in the query), without cookies or an Origin of ours; the
            # confirmation page's form posts the token as a field. The token is the authority.
            # The body is read even then: a huge one gets its 413 before anything changes.
            fields = await site.form(request)
            token = token or fields.get("token", "")
        subscriber_id = pipeline.unsubscribe_token_subscriber(token, secret)
        if subscriber_id is None:
            return site.refused(
                400,
                "This link is not valid",
                "It may have been cut short when it was copied. Nothing was changed.",
            )
        sub = await site.run(pipeline.unsubscribe, storage, subscriber_id, clock(), apply=apply)
        who = mask_address(sub.address) if sub is not None else "This address"
        if apply or sub is None or sub.status in ("unsubscribed", "bounced"):
            return site.page(
                site.pages.message(
                    "You are unsubscribed",
                    f"{who} will get no more issues of {config.newsletter.title}.",
                    kind="ok",
                )
            )
        return site.page(
            site.pages.message(
                "Unsubscribe?",
                f"Stop sending {config.newsletter.title} to {who}?",
                kind="info",
                form={
                    "action": f"{site.pages.base}/unsubscribe",
                    "button": "Unsubscribe",
                    "fields": [("token", token)],
                },
            )
        )

    # --- health ----------------------------------------------------------------------------

    async def healthz(request: Request) -> Response:
        report = await site.health()
        return Response(
            json.dumps(report, indent=1),
            200 if report["ok"] else 503,
            media_type="application/json",
            headers={"cache-control": "no-store"},
        )

    # --- errors ----------------------------------------------------------------------------

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        headers = dict(exc.headers or {}) if isinstance(exc, HTTPException) else {}
        heading = {404: "Page not found", 405: "Method not allowed"}.get(status, "Request refused")
        return site.refused(
            status, heading, "Try the latest issue or the archive.", headers=headers
        )

    async def storage_error(request: Request, exc: Exception) -> Response:
        log.error("%s %s: %s", request.method, request.url.path, exc)  # not for the reader
        return site.refused(
            503, "Temporarily unavailable", "The site's database is not answering; try later."
        )

    async def to_archive(request: Request) -> Response:
        return RedirectResponse(f"{site.pages.base}/issues/", 308)

    routes = [
        Route("/", latest),
        Route("/issues/", archive),
        Route("/issues", to_archive),
        Route("/issues/{number:int}", one_issue),
        Route("/feed.xml", feed("rss")),
        Route("/feed.atom", feed("atom")),
        Route("/feed.json", feed("json")),
        Route("/sections/{section}.xml", section_feed),
        Route("/issues.xml", issues_feed),
        Route("/static/site.css", stylesheet),
        Route("/subscribe", subscribe, methods=["GET", "POST"]),
        Route("/confirm", confirm, methods=["GET", "POST"]),
        Route("/unsubscribe", unsubscribe, methods=["GET", "POST"]),
        Route("/healthz", healthz),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, StorageError: storage_error},
        max_body_size=config.web.max_body_bytes,
    )
    # Outermost, so Starlette's own answers (413 from the body limit, 500) get the headers too.
    return SecurityHeadersMiddleware(app)
