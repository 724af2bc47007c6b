"""fetch: Source -> Fetched.

MockTransport for precise cases, a real 127.0.0.1 server for the rest.
"""

from __future__ import annotations

import asyncio
import ssl
import time

import httpx
import pytest

import aggregator.fetch
from aggregator.exceptions import FetchError
from aggregator.fetch import Resolver, fetch_source, make_client, system_resolver
from aggregator.types import FetchSettings, Source, Validators
from tests.httpserver import gzip_bomb, redirect, silent, static, trickle

QUICK_RETRIES = (0.01, 0.02)
PUBLIC = FetchSettings(deadline=5, retry_delays=QUICK_RETRIES)
LOCAL = FetchSettings(
    allow_private_network=True,
    connect_timeout=2,
    read_timeout=2,
    deadline=4,
    retry_delays=QUICK_RETRIES,
)
NO_VALIDATORS = Validators()
RSS = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"


async def public_resolver(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


def fetch(
    source: Source,
    handler,
    settings: FetchSettings = PUBLIC,
    validators=NO_VALIDATORS,
    resolver=public_resolver,
):
    async def go():
        async with make_client(settings, httpx.MockTransport(handler)) as client:
            return await fetch_source(client, source, validators, settings, resolver=resolver)

    return asyncio.run(go())


def fetch_real(
    source: Source,
    settings: FetchSettings = LOCAL,
    validators=NO_VALIDATORS,
    resolver=system_resolver,
):
    """Through the production transport (the connect-time guard is on)."""

    async def go():
        async with make_client(settings) as client:
            return await fetch_source(client, source, validators, settings, resolver=resolver)

    return asyncio.run(go())


SRC = Source(id="src", name="Src", url="https://feeds.example.org/rss")


def test_ok_sends_user_agent_and_keeps_validators():
    seen = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(request.headers)
        return httpx.Response(
            200,
            content=RSS,
            headers={
                "ETag": '"v1"',
                "Last-Modified": "Mon, 30 Nov 2026 10:00:00 GMT",
                "Content-Type": "application/rss+xml",
            },
        )

    fetched = fetch(SRC, handler)
    assert fetched.content == RSS and fetched.status == 200 and not fetched.not_modified
    assert fetched.validators == Validators('"v1"', "Mon, 30 Nov 2026 10:00:00 GMT")
    assert fetched.content_type == "application/rss+xml"
    assert seen["user-agent"].startswith("aggregator/")


def test_conditional_get_304_is_not_modified_not_empty():
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["If-None-Match"] == '"v1"'
        assert request.headers["If-Modified-Since"] == "yesterday"
        return httpx.Response(304)

    fetched = fetch(SRC, handler, validators=Validators('"v1"', "yesterday"))
    assert fetched.not_modified and fetched.validators == Validators('"v1"', "yesterday")


@pytest.mark.parametrize("status", [403, 404, 410, 429, 500, 503])
def test_http_errors_are_typed_with_status(status):
    with pytest.raises(FetchError) as e:
        fetch(SRC, lambda r: httpx.Response(status))
    assert e.value.kind == "http_status" and e.value.http_status == status
    assert e.value.source_id == "src" and "feeds.example.org" in str(e.value)


def test_redirects_followed_and_capped_with_chain_in_message():
    def hop(request: httpx.Request) -> httpx.Response:
        n = int(request.url.path.strip("/")) if request.url.path[1:].isdigit() else 0
        return httpx.Response(302, headers={"Location": f"/{n + 1}"})

    with pytest.raises(FetchError) as e:
        fetch(SRC, hop)
    assert e.value.kind == "too_many_redirects" and "/5 -> " in e.value.message

    def two(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/rss":
            return httpx.Response(301, headers={"Location": "https://feeds.example.org/new"})
        return httpx.Response(200, content=RSS)

    assert fetch(SRC, two).url == "https://feeds.example.org/new"


@pytest.mark.parametrize(
    "target", ["ftp://example.org/x", "file:///etc/passwd", "javascript:alert(1)"]
)
def test_redirect_to_non_http_scheme_is_refused(target):
    with pytest.raises(FetchError) as e:
        fetch(SRC, lambda r: httpx.Response(302, headers={"Location": target}))
    assert e.value.kind == "bad_url" and e.value.source_id == "src"


def test_public_api():
    assert aggregator.fetch.__all__ == sorted(aggregator.fetch.__all__)
    assert Resolver is aggregator.fetch.Resolver  # the pipeline imports these four
    assert {"fetch_source", "make_client", "system_resolver", "Resolver"} <= set(
        aggregator.fetch.__all__
    )


def test_literal_private_addresses_refused_before_any_request():
    for literal in [
        "http://127.0.0.1/x",
        "http://[::1]/x",
        "http://169.254.169.254/latest",
        "http://[::ffff:127.0.0.1]/",
        "http://100.64.0.1/",
    ]:
        with pytest.raises(FetchError) as e:
            fetch(Source(id="s", name="s", url=literal), lambda r: httpx.Response(200, content=RSS))
        assert e.value.kind == "blocked_address", literal
        assert "allow_private_network" in e.value.message
    allowed = Source(id="s", name="s", url="http://127.0.0.1/x", allow_private_network=True)
    assert fetch(allowed, lambda r: httpx.Response(200, content=RSS)).content == RSS
    # a redirect from a public host to a private one is checked at that hop
    with pytest.raises(FetchError) as e:
        fetch(SRC, lambda r: httpx.Response(302, headers={"Location": "http://127.0.0.1:9/"}))
    assert e.value.kind == "blocked_address"


def test_hostname_resolving_to_private_refused_at_connect_time():
    """No socket is opened: the guard vets the resolver's answer first."""

    async def private(host, port):
        return ["10.0.0.5"]

    with pytest.raises(FetchError) as e:
        fetch_real(SRC, PUBLIC, resolver=private)
    assert e.value.kind == "blocked_address" and "10.0.0.5" in e.value.message
    assert e.value.attempts == 1  # a refusal is never retried


def test_content_length_over_cap_is_refused_before_reading():
    src = Source(id="s", name="s", url=SRC.url, max_bytes=1000)
    with pytest.raises(FetchError) as e:
        fetch(src, lambda r: httpx.Response(200, content=b"x" * 2000))
    assert e.value.kind == "too_large"


def test_dns_failure_is_typed():
    async def nxdomain(host, port):
        raise OSError(-2, "Name or service not known")

    with pytest.raises(FetchError) as e:
        fetch_real(SRC, PUBLIC, resolver=nxdomain)
    assert e.value.kind == "dns" and "feeds.example.org" in e.value.message


def test_mapped_transport_errors():
    def raising(exc):
        def handler(request):
            raise exc("boom", request=request)

        return handler

    for exc, kind, attempts in [(httpx.ConnectTimeout, "connect_timeout", 3),
                                (httpx.ReadTimeout, "read_timeout", 3),
                                (httpx.ConnectError, "connect", 3),
                                (httpx.ReadError, "read_error", 3),
                                (httpx.RemoteProtocolError, "protocol", 1),
                                (httpx.UnsupportedProtocol, "bad_url", 1)]:  # fmt: skip
        with pytest.raises(FetchError) as e:
            fetch(SRC, raising(exc))
        assert (e.value.kind, e.value.attempts) == (kind, attempts)


def test_tls_error_cause_is_typed_and_not_retried():
    calls = []

    def handler(request):
        calls.append(request)
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as cause:
            raise httpx.ConnectError("handshake", request=request) from cause

    with pytest.raises(FetchError) as e:
        fetch(SRC, handler)
    assert e.value.kind == "tls" and len(calls) == 1


# --- against a real server on 127.0.0.1 -----------------------------------------------------


def test_real_server_conditional_get(http_server):
    http_server.routes["/f.xml"] = static(RSS, headers={"ETag": '"e1"'})
    src = Source(id="s", name="s", url=http_server.url("/f.xml"))
    first = fetch_real(src)
    assert first.content == RSS and first.validators.etag == '"e1"'


def test_loopback_refused_without_allow_private_network(http_server):
    http_server.routes["/f.xml"] = static(RSS)
    src = Source(id="s", name="s", url=http_server.url("/f.xml"))
    with pytest.raises(FetchError) as e:
        fetch_real(src, FetchSettings())
    assert e.value.kind == "blocked_address"
    assert http_server.hits.get("/f.xml") is None  # nothing reached the server


def test_trickling_server_hits_the_deadline(http_server):
    http_server.routes["/slow"] = trickle(b"<", every=0.2, limit=8)
    src = Source(id="s", name="s", url=http_server.url("/slow"))
    t0 = time.monotonic()
    with pytest.raises(FetchError) as e:
        fetch_real(src, FetchSettings(allow_private_network=True, read_timeout=2, deadline=1.5))
    assert e.value.kind == "deadline"
    assert time.monotonic() - t0 < 3


def test_silent_server_read_timeout(http_server):
    http_server.routes["/hang"] = silent(4)
    src = Source(id="s", name="s", url=http_server.url("/hang"))
    settings = FetchSettings(
        allow_private_network=True, read_timeout=0.5, deadline=3, retry_delays=()
    )
    with pytest.raises(FetchError) as e:
        fetch_real(src, settings)
    assert e.value.kind == "read_timeout" and e.value.attempts == 1


def test_gzip_bomb_stopped_after_decompression(http_server):
    http_server.routes["/bomb"] = gzip_bomb(50 * 1024 * 1024)
    src = Source(id="s", name="s", url=http_server.url("/bomb"), max_bytes=1024 * 1024)
    with pytest.raises(FetchError) as e:
        fetch_real(src)
    assert e.value.kind == "too_large" and "decompression" in e.value.message


def test_redirect_loop_on_real_server(http_server):
    http_server.routes["/a"] = redirect("/a")
    with pytest.raises(FetchError) as e:
        fetch_real(Source(id="s", name="s", url=http_server.url("/a")))
    assert e.value.kind == "too_many_redirects"
    assert http_server.hits["/a"] == 6


def test_connection_refused_is_typed():
    with pytest.raises(FetchError) as e:
        fetch_real(Source(id="s", name="s", url="http://127.0.0.1:9/feed"))
    assert e.value.kind == "connect" and e.value.attempts == 3


def test_a_private_source_connection_is_never_reused_for_a_strict_one(http_server):
    """allow_private_network sources get their own pool: no keep-alive leak across policies."""
    http_server.routes["/f.xml"] = static(RSS)
    url = http_server.url("/f.xml")
    strict = FetchSettings(connect_timeout=2, read_timeout=2, deadline=4)

    async def go():
        async with make_client(strict) as client:
            allowed = Source(id="a", name="a", url=url, allow_private_network=True)
            fetched = await fetch_source(client, allowed, NO_VALIDATORS, strict)
            with pytest.raises(FetchError) as e:
                await fetch_source(client, Source(id="b", name="b", url=url), NO_VALIDATORS, strict)
            return fetched, e.value

    fetched, error = asyncio.run(go())
    assert fetched.content == RSS and error.kind == "blocked_address"
    assert http_server.hits["/f.xml"] == 1
