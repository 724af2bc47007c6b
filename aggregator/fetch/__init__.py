"""Fetch stage: Source (+ its cache validators) -> Fetched. The only module that does HTTP.

    make_client(settings)                       the run's one client, over GuardedTransport
    fetch_source(client, source, validators, settings, resolver=..., now=...)

One request path for every source (`_transport.GuardedTransport`): http/https only; connect
and read timeouts plus an overall `deadline` per attempt (a trickling server cannot hold the
run); redirects followed by hand (at most `max_redirects`, each hop re-checked); private,
loopback, link-local and reserved addresses refused *at connect time* (`_guard`: resolve,
vet every address, connect to the vetted IP; so DNS rebinding and redirects to internal
hosts fail) unless the source or the `fetch:` section sets `allow_private_network`; the body
decoded and capped by us (`_response`), refused early on Content-Length; the header block
capped; conditional GET with ETag / Last-Modified.

Transient failures (connect errors and timeouts, read errors, 502/503/504 without
Retry-After) are retried in the run after `retry_delays` (jittered); all attempts and waits
share the source's `fetch_budget`. A 429/503 Retry-After is returned as
`FetchError.retry_after` for the pipeline to schedule; a Cloudflare bot check is
`bot_challenge`, never retried.

Every httpx error is mapped to a FetchError with a stable `kind`, once, in `_map_error`.
Imports only `types`, `exceptions` and its own private modules; never parse, storage,
pipeline or cli.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import httpx

from aggregator.exceptions import FetchError
from aggregator.fetch._guard import Resolver, is_ip_literal, is_public_address, system_resolver
from aggregator.fetch._response import (
    ACCEPT_ENCODING,
    CHALLENGE_HINT,
    TooLarge,
    Undecodable,
    header_bytes,
    is_bot_challenge,
    needs_peek,
    parse_retry_after,
    peek_body,
    read_body,
)
from aggregator.fetch._retry import is_transient, retry_delay
from aggregator.fetch._transport import (
    POLICY,
    BlockedAddressError,
    GuardedTransport,
    Policy,
    ResolveError,
    TLSError,
)
from aggregator.types import Fetched, FetchSettings, Source, Validators

__all__ = [
    "DEFAULT_USER_AGENT",
    "GuardedTransport",
    "Resolver",
    "fetch_source",
    "make_client",
    "system_resolver",
]

# The pipeline adds the newsletter's link, so a site owner can see who is polling them.
DEFAULT_USER_AGENT = "aggregator/0.1 (feed and newsletter aggregator)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PRIVATE_HINT = "set allow_private_network: true on the source if that is intended"


def make_client(
    settings: FetchSettings,
    transport: httpx.AsyncBaseTransport | None = None,
    *,
    resolver: Resolver = system_resolver,
) -> httpx.AsyncClient:
    """The one HTTP client of a run, over the guarded transport.

    `transport` replaces it in tests (httpx.MockTransport, or a GuardedTransport built with a
    test network backend); `resolver` is the guard's default when a request names none.
    """
    # No keep-alive: measured (`python -m bench.client`), httpcore's pool costs more CPU per
    # request the more connections it keeps (about 0.7 ms per feed at 8, 3.6 ms at 64), while
    # a fresh connection per request stays near 0.65 ms at any concurrency; and sources
    # rarely share a host, so there is little to reuse (see docs/design.md "Performance").
    limits = httpx.Limits(
        max_connections=max(settings.concurrency, 1),
        max_keepalive_connections=0,
    )
    return httpx.AsyncClient(
        transport=transport or GuardedTransport(limits=limits, resolver=resolver),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        ),
        follow_redirects=False,  # by hand, so every hop is checked
        trust_env=False,  # no proxy or netrc from the environment behind the editor's back
        headers={
            "User-Agent": settings.user_agent or DEFAULT_USER_AGENT,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,  # only what _response can decode, bounded
        },
    )


async def fetch_source(
    client: httpx.AsyncClient,
    source: Source,
    validators: Validators,
    settings: FetchSettings,
    *,
    resolver: Resolver = system_resolver,
    now: datetime | None = None,
) -> Fetched:
    """GET a source (conditionally), following redirects by hand, retrying transient failures.

    Each attempt has `settings.deadline`; all attempts and the waits between them share
    `settings.fetch_budget`. `now` (aware) only serves a Retry-After HTTP-date from a server
    that sends no Date header. The last attempt's FetchError carries `attempts`.
    """
    loop = asyncio.get_running_loop()
    budget_end = loop.time() + settings.fetch_budget
    attempt = 0
    while True:
        attempt += 1
        error = await _attempt(client, source, validators, settings, resolver, now, budget_end)
        if isinstance(error, Fetched):
            return error
        delay = retry_delay(attempt, settings) if is_transient(error) else None
        if delay is None or loop.time() + delay >= budget_end:
            if attempt == 1:
                raise error
            raise FetchError(
                error.source_id,
                error.url,
                error.kind,
                f"{error.message} (gave up after {attempt} attempts)",
                http_status=error.http_status,
                retry_after=error.retry_after,
                attempts=attempt,
            ) from error
        await asyncio.sleep(delay)


async def _attempt(
    client: httpx.AsyncClient,
    source: Source,
    validators: Validators,
    settings: FetchSettings,
    resolver: Resolver,
    now: datetime | None,
    budget_end: float,
) -> Fetched | FetchError:
    remaining = budget_end - asyncio.get_running_loop().time()
    limit = max(0.0, min(settings.deadline, remaining))
    try:
        async with asyncio.timeout(limit) as scope:
            return await _fetch(client, source, validators, settings, resolver, now)
    except FetchError as e:
        return e
    except TimeoutError as e:
        if not scope.expired():
            raise
        what = (
            f"the {settings.deadline:g} s deadline"
            if limit == settings.deadline
            else f"the {settings.fetch_budget:g} s budget for this source"
        )
        error = FetchError(source.id, source.url, "deadline", f"no complete answer within {what}")
        error.__cause__ = e
        return error


async def _fetch(
    client: httpx.AsyncClient,
    source: Source,
    validators: Validators,
    settings: FetchSettings,
    resolver: Resolver,
    now: datetime | None,
) -> Fetched:
    allow_private = source.allow_private_network or settings.allow_private_network
    policy = Policy(allow_private=allow_private, resolver=resolver)
    headers: dict[str, str] = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    url = source.url
    chain = [url]
    for _hop in range(settings.max_redirects + 1):
        _check_url(source, url, allow_private)
        try:
            async with client.stream(
                "GET", url, headers=headers, extensions={POLICY: policy}
            ) as response:
                location = _check_response(source, url, response, settings)
                if location is not None:
                    url = urljoin(url, location)
                    chain.append(url)
                    continue
                if response.status_code >= 400:
                    raise await _status_error(source, url, response, now)
                if response.status_code == 304:
                    return Fetched(
                        source_id=source.id,
                        url=url,
                        status=304,
                        content=b"",
                        validators=validators,
                        not_modified=True,
                    )
                if response.status_code != 200:
                    raise FetchError(
                        source.id, url, "http_status",
                        f"unexpected HTTP {response.status_code}; expected 200",
                        http_status=response.status_code,
                    )  # fmt: skip
                content = await _read(source, url, response, source.max_bytes)
                return Fetched(
                    source_id=source.id,
                    url=url,
                    status=response.status_code,
                    content=content,
                    content_type=response.headers.get("Content-Type"),
                    validators=Validators(
                        etag=response.headers.get("ETag"),
                        last_modified=response.headers.get("Last-Modified"),
                    ),
                )
        except httpx.HTTPError as e:
            raise _map_error(source, url, e) from e
        except httpx.InvalidURL as e:
            # httpx parses a redirect's Location even when not following it.
            raise FetchError(
                source.id, url, "bad_url", f"invalid URL or redirect target: {e}"
            ) from e
    raise FetchError(
        source.id,
        source.url,
        "too_many_redirects",
        f"more than {settings.max_redirects} redirects: {' -> '.join(chain)}",
    )


def _check_url(source: Source, url: str, allow_private: bool) -> None:
    """Before any request: the scheme, and literal addresses (no DNS; the guard does that)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        via = f" (redirected from {source.url})" if url != source.url else ""
        raise FetchError(
            source.id, url, "bad_url", f"only http:// and https:// URLs can be fetched{via}"
        )
    host = parts.hostname
    if not allow_private and is_ip_literal(host) and not is_public_address(host):
        raise FetchError(
            source.id,
            url,
            "blocked_address",
            f"{host} is a private or reserved address; {PRIVATE_HINT}",
        )


def _check_response(
    source: Source, url: str, response: httpx.Response, settings: FetchSettings
) -> str | None:
    """Header-size limit; the Location of a redirect (None when not a redirect)."""
    size = header_bytes(response)
    if size > settings.max_header_bytes:
        raise FetchError(
            source.id,
            url,
            "too_large",
            f"response headers are {size:,} bytes, over the {settings.max_header_bytes:,} "
            "byte limit",
        )
    if response.status_code not in REDIRECT_STATUSES:
        return None
    location = str(response.headers.get("Location", "")).strip()
    if not location:
        raise FetchError(
            source.id, url, "http_status",
            f"HTTP {response.status_code} without a Location header",
            http_status=response.status_code,
        )  # fmt: skip
    return location


async def _status_error(
    source: Source, url: str, response: httpx.Response, now: datetime | None
) -> FetchError:
    status = response.status_code
    body = await peek_body(response) if needs_peek(response) else b""
    if is_bot_challenge(response, body):
        return FetchError(
            source.id,
            url,
            "bot_challenge",
            f"HTTP {status}: {CHALLENGE_HINT}",
            http_status=status,
        )
    text = f"HTTP {status} {response.reason_phrase}".strip()
    retry_after = None
    if status in (429, 503):
        retry_after = parse_retry_after(
            response.headers.get("Retry-After"), response.headers.get("Date"), now
        )
        if retry_after is not None:
            text += f"; the server asks us to wait {retry_after:g} s before trying again"
    return FetchError(
        source.id, url, "http_status", text, http_status=status, retry_after=retry_after
    )


async def _read(source: Source, url: str, response: httpx.Response, cap: int) -> bytes:
    length = response.headers.get("Content-Length", "").strip()
    if length.isascii() and length.isdigit() and int(length) > cap:
        raise FetchError(
            source.id,
            url,
            "too_large",
            f"Content-Length {int(length):,} bytes is over the {cap:,} byte limit "
            "(raise max_bytes on the source if this is expected)",
        )
    try:
        return await read_body(response, cap)
    except TooLarge as e:
        raise FetchError(
            source.id,
            url,
            "too_large",
            f"body is over the {cap:,} byte limit after decompression "
            "(raise max_bytes on the source if this is expected)",
        ) from e
    except Undecodable as e:
        raise FetchError(source.id, url, "decode", f"cannot decode the body: {e}") from e


def _map_error(source: Source, url: str, e: httpx.HTTPError) -> FetchError:
    """httpx's exceptions -> our kinds (the one place that knows them)."""
    text = str(e) or type(e).__name__
    kind, message = "network", text
    if isinstance(e, BlockedAddressError):
        kind, message = "blocked_address", f"{text}; {PRIVATE_HINT}"
    elif isinstance(e, ResolveError):
        kind = "dns"
    elif isinstance(e, TLSError):
        kind, message = "tls", f"TLS handshake failed: {text}"
    elif isinstance(e, httpx.ConnectTimeout):
        kind, message = "connect_timeout", "no connection within the connect timeout"
    elif isinstance(e, httpx.ReadTimeout):
        kind, message = "read_timeout", "the server stopped sending within the read timeout"
    elif isinstance(e, httpx.TimeoutException):
        kind = "timeout"
    elif isinstance(e, httpx.ConnectError):
        cause = e.__cause__ or e.__context__
        if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text:
            kind = "tls"
        elif isinstance(cause, socket.gaierror) or "Name or service not known" in text:
            kind = "dns"
        else:
            kind = "connect"
    elif isinstance(e, httpx.RemoteProtocolError):
        lowered = text.lower()
        if "incomplete" in lowered or "without sending complete message body" in lowered:
            kind = "incomplete_body"
        elif "receive buffer too long" in lowered:
            # h11 gives up on a header block over its own limit (100 KiB) before we see it.
            kind, message = "too_large", f"response headers over the client's limit ({text})"
        else:
            kind = "protocol"
    elif isinstance(e, httpx.ReadError | httpx.WriteError):
        kind, message = "read_error", f"the connection broke during the exchange ({text})"
    elif isinstance(e, httpx.UnsupportedProtocol):
        kind = "bad_url"
    elif isinstance(e, httpx.DecodingError):
        kind = "decode"
    elif isinstance(e, httpx.ProtocolError):
        kind = "protocol"
    return FetchError(source.id, url, kind, message)
