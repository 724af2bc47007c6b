"""Fetch stage: Source (+ its cache validators) -> Fetched. The only module that does HTTP.

One request path for every source: http/https only, connect and read timeouts plus an overall
deadline (a trickling server cannot hold the run), redirects followed by hand (at most
`max_redirects`, each hop re-checked), private and loopback addresses refused unless the
source or the `fetch:` section allows them, the body capped after decompression (and refused
early on Content-Length), conditional GET with ETag / Last-Modified.

Every httpx error is mapped to a FetchError with a stable `kind`, once, in `_map_error`.
Imports only `types` and `exceptions`; never parse, storage, pipeline or cli.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import urljoin, urlsplit

import httpx

from aggregator.exceptions import FetchError
from aggregator.types import Fetched, FetchSettings, Source, Validators

# The pipeline adds the newsletter's link, so a site owner can see who is polling them.
DEFAULT_USER_AGENT = "aggregator/0.1 (feed and newsletter aggregator)"
ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, "
    "application/xml;q=0.9, text/xml;q=0.9, text/html;q=0.8, */*;q=0.5"
)
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for a host."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def make_client(
    settings: FetchSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The one HTTP client of a run. `transport` is for tests (httpx.MockTransport)."""
    return httpx.AsyncClient(
        transport=transport,
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.deadline,
        ),
        limits=httpx.Limits(
            max_connections=max(settings.concurrency, 1),
            max_keepalive_connections=max(settings.concurrency, 1),
        ),
        follow_redirects=False,  # by hand, so every hop is checked
        trust_env=False,  # no proxy or netrc from the environment behind the editor's back
        headers={"User-Agent": settings.user_agent or DEFAULT_USER_AGENT, "Accept": ACCEPT},
    )


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global


async def _check_address(source: Source, url: str, allow_private: bool, resolver: Resolver) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise FetchError(source.id, url, "bad_url", "only http:// and https:// URLs can be fetched")
    if allow_private:
        return
    host = parts.hostname
    try:
        addresses = [host] if _is_ip(host) else await resolver(host, parts.port or 443)
    except OSError as e:
        raise FetchError(source.id, url, "dns", f"cannot resolve {host}: {e}") from e
    blocked = [a for a in addresses if not _is_public(a)]
    if blocked or not addresses:
        raise FetchError(
            source.id,
            url,
            "blocked_address",
            f"{host} resolves to a private or reserved address ({', '.join(blocked)}); "
            "set allow_private_network: true on the source if that is intended",
        )


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _map_error(source: Source, url: str, e: httpx.HTTPError) -> FetchError:
    """httpx's exceptions -> our kinds (the one place that knows them)."""
    kind, message = "network", str(e) or type(e).__name__
    if isinstance(e, httpx.ConnectTimeout):
        kind, message = "connect_timeout", "no connection within the connect timeout"
    elif isinstance(e, httpx.ReadTimeout):
        kind, message = "read_timeout", "the server stopped sending within the read timeout"
    elif isinstance(e, httpx.TimeoutException):
        kind = "timeout"
    elif isinstance(e, httpx.ConnectError):
        cause = e.__context__ or e.__cause__
        text = str(e)
        if isinstance(cause, ssl.SSLError) or "SSL" in text or "certificate" in text:
            kind = "tls"
        elif isinstance(cause, socket.gaierror) or "Name or service not known" in text:
            kind = "dns"
        else:
            kind = "connect"
    elif isinstance(e, httpx.RemoteProtocolError):
        kind = "incomplete_body" if "incomplete" in str(e).lower() else "protocol"
    elif isinstance(e, httpx.ReadError):
        kind = "read_error"
    elif isinstance(e, httpx.DecodingError):
        kind = "decode"
    return FetchError(source.id, url, kind, message)


async def _read_capped(source: Source, url: str, response: httpx.Response, cap: int) -> bytes:
    length = response.headers.get("Content-Length")
    if length and length.isdigit() and int(length) > cap:
        raise FetchError(
            source.id,
            url,
            "too_large",
            f"Content-Length {int(length):,} bytes is over the {cap:,} byte limit "
            "(raise max_bytes on the source if this is expected)",
        )
    chunks: list[bytes] = []
    size = 0
    # aiter_bytes yields *decoded* bytes, so a gzip bomb is counted as it inflates.
    async for chunk in response.aiter_bytes():
        size += len(chunk)
        if size > cap:
            raise FetchError(
                source.id,
                url,
                "too_large",
                f"body is over the {cap:,} byte limit after decompression "
                "(raise max_bytes on the source if this is expected)",
            )
        chunks.append(chunk)
    return b"".join(chunks)


async def fetch_source(
    client: httpx.AsyncClient,
    source: Source,
    validators: Validators,
    settings: FetchSettings,
    *,
    resolver: Resolver = system_resolver,
) -> Fetched:
    """GET a source (conditionally), following redirects by hand, within the deadline."""
    try:
        async with asyncio.timeout(settings.deadline):
            return await _fetch(client, source, validators, settings, resolver)
    except TimeoutError as e:
        raise FetchError(
            source.id,
            source.url,
            "deadline",
            f"no complete answer within the {settings.deadline:g} s deadline",
        ) from e


async def _fetch(
    client: httpx.AsyncClient,
    source: Source,
    validators: Validators,
    settings: FetchSettings,
    resolver: Resolver,
) -> Fetched:
    allow_private = source.allow_private_network or settings.allow_private_network
    headers: dict[str, str] = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    url = source.url
    chain = [url]
    for _hop in range(settings.max_redirects + 1):
        await _check_address(source, url, allow_private, resolver)
        try:
            async with client.stream("GET", url, headers=headers) as response:
                if response.status_code in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise FetchError(
                            source.id, url, "http_status",
                            f"HTTP {response.status_code} without a Location header",
                            http_status=response.status_code,
                        )  # fmt: skip
                    url = urljoin(url, location.strip())
                    chain.append(url)
                    continue
                if response.status_code == 304:
                    return Fetched(
                        source_id=source.id,
                        url=url,
                        status=304,
                        content=b"",
                        validators=validators,
                        not_modified=True,
                    )
                if response.status_code >= 400:
                    raise FetchError(
                        source.id,
                        url,
                        "http_status",
                        f"HTTP {response.status_code} {response.reason_phrase}".strip(),
                        http_status=response.status_code,
                    )
                if response.status_code != 200:
                    raise FetchError(
                        source.id, url, "http_status",
                        f"unexpected HTTP {response.status_code}; expected 200",
                        http_status=response.status_code,
                    )  # fmt: skip
                content = await _read_capped(source, url, response, source.max_bytes)
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
