"""Security for every response and every form: headers, same-origin checks, conditional GET.

Pure ASGI and header logic; knows nothing of the routes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No script runs anywhere on the site; styles only from our stylesheet; forms post only here;
# no page may be framed (clickjacking); <base> cannot redirect relative links.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    # Not no-referrer: with it Chromium sends `Origin: null` on our own form posts. Links out
    # (to the outlets of the stories) still carry no referrer.
    ("referrer-policy", "same-origin"),
    ("cross-origin-opener-policy", "same-origin"),
    ("permissions-policy", "interest-cohort=(), camera=(), microphone=(), geolocation=()"),
)


class SecurityHeadersMiddleware:
    """Adds SECURITY_HEADERS to every HTTP response, errors and 413s included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS:
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, allowed: Iterable[str]) -> bool:
    """Whether a form post may come from a page of this site (cross-site request forgery).

    A browser says `Sec-Fetch-Site: cross-site` (or `same-site` for a sibling host) on a post
    from another site, and names the page's origin in `Origin`; either is refused (an opaque
    `Origin: null`, from a sandboxed frame or a data: page, too, unless the browser says
    same-origin). A client that sends neither is not a browser, so no visitor's browser is
    being abused.
    """
    site = request.headers.get("sec-fetch-site")
    origin = request.headers.get("origin")
    if site is not None:
        # A header no page can set: the browser's own word.
        if site not in ("same-origin", "none"):
            return False
        if origin is None or origin == "null":
            return True
    elif origin is None:
        return True
    own = {origin_of(str(request.url)), *(origin_of(a) for a in allowed)}
    return origin.lower() in own


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/") == etag for t in tags)


def conditional_response(
    request: Request,
    body: bytes,
    media_type: str,
    updated: datetime | None,
    *,
    cache: str = "public, max-age=300",
) -> Response:
    """`body` with ETag and Last-Modified, or 304 when the client's copy is current
    (If-None-Match wins over If-Modified-Since, RFC 9110 13.2.2). `updated` None: no
    Last-Modified (content whose change has no date, like the stylesheet): ETag only."""
    etag = etag_of(body)
    headers = {"etag": etag, "cache-control": cache, "vary": "Accept-Encoding"}
    modified = None if updated is None else updated.astimezone(UTC).replace(microsecond=0)
    if modified is not None:
        headers["last-modified"] = format_datetime(modified, usegmt=True)
    inm = request.headers.get("if-none-match")
    if inm is not None:
        if _matches(inm, etag):
            return Response(status_code=304, headers=headers)
    elif modified is not None:
        ims = request.headers.get("if-modified-since")
        if ims is not None:
            try:
                since = parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                since = None
            if since is not None and since.tzinfo is not None and modified <= since:
                return Response(status_code=304, headers=headers)
    return Response(body, media_type=media_type, headers=headers)
