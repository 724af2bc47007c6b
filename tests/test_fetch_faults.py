"""fetch under the network faults of ../shared/FAULTS.md §3.1 (rows N1-N17).

Against the real adversarial server of tests/httpserver.py on 127.0.0.1 where possible,
through the production transport (GuardedTransport) with its address guard switched on.
"Public" hosts are honest fakes: a stub resolver answers a public address (93.184.216.34),
the guard vets it as it would any answer, and only then `FakeInternet` - the backend that
really opens sockets - routes that one public address to 127.0.0.1, where the test server
is. Private targets are never routed: the guard must refuse them before any socket opens,
and a canary server on 127.0.0.1 proves it by counting zero requests.

Every failing case checks the typed kind and that the error names the source id and URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import ssl
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import formatdate
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest

from aggregator.exceptions import FetchError
from aggregator.fetch import GuardedTransport, fetch_source, make_client, system_resolver
from aggregator.fetch._asyncio import AsyncioBackend
from aggregator.fetch._guard import is_public_address
from aggregator.fetch._response import BoundedDecoder, Undecodable, parse_retry_after
from aggregator.fetch._retry import retry_delay
from aggregator.fetch._transport import BlockedAddressError
from aggregator.types import Fetched, FetchSettings, Source, Validators
from tests.httpserver import (
    Server,
    close_after,
    cloudflare,
    conditional,
    cut,
    header_bomb,
    nested_gzip_bomb,
    redirect,
    sequence,
    silent,
    static,
    stream_zeros,
    trickle,
)

PUBLIC_IP = "93.184.216.34"
RSS = b"<?xml version='1.0'?><rss version='2.0'><channel><title>t</title></channel></rss>"
NO_VALIDATORS = Validators()
FAST = FetchSettings(
    connect_timeout=1,
    read_timeout=1,
    deadline=3,
    retry_delays=(0.05, 0.1),
    fetch_budget=8,
)


# --- harness ----------------------------------------------------------------------------------


class FakeInternet(httpcore.AsyncNetworkBackend):
    """The backend that opens sockets: routes PUBLIC_IP to 127.0.0.1; records what it did."""

    def __init__(self) -> None:
        self.inner = AsyncioBackend()  # the backend production connects with
        self.connects: list[tuple[str, int]] = []
        self.sni: list[str | None] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connects.append((host, port))
        target = "127.0.0.1" if host == PUBLIC_IP else host
        stream = await self.inner.connect_tcp(target, port, timeout=timeout)
        return _Watched(stream, self)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise AssertionError("never used")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class _Watched(httpcore.AsyncNetworkStream):
    def __init__(self, inner: httpcore.AsyncNetworkStream, internet: FakeInternet) -> None:
        self.inner, self.internet = inner, internet

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self.inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self.inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.internet.sni.append(server_hostname)
        return await self.inner.start_tls(ssl_context, server_hostname, timeout)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


def resolver_for(table: dict[str, list[str]], calls: list[str] | None = None):
    async def resolve(host: str, port: int) -> list[str]:
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


public_dns = resolver_for({"feeds.test": [PUBLIC_IP], "public.test": [PUBLIC_IP]})


def source(url: str, **kw: Any) -> Source:
    return Source(id="src-1", name="Src", url=url, **kw)


def fetch(
    src: Source,
    settings: FetchSettings = FAST,
    *,
    resolver=public_dns,
    internet: FakeInternet | None = None,
    ssl_context: ssl.SSLContext | None = None,
    validators: Validators = NO_VALIDATORS,
    now: datetime | None = None,
) -> Fetched:
    async def go() -> Fetched:
        transport = GuardedTransport(
            resolver=resolver, network_backend=internet or FakeInternet(), ssl_context=ssl_context
        )
        async with make_client(settings, transport) as client:
            return await fetch_source(client, src, validators, settings, resolver=resolver, now=now)

    return asyncio.run(go())


def failure(src: Source, kind: str, *args: Any, **kw: Any) -> FetchError:
    with pytest.raises(FetchError) as caught:
        fetch(src, *args, **kw)
    error = caught.value
    assert error.kind == kind, str(error)
    assert error.source_id == src.id and src.id in str(error)
    assert error.url in str(error)  # the source's URL, or the redirect hop that failed
    return error


def public_url(server: Server, path: str, scheme: str = "http", host: str = "public.test") -> str:
    return f"{scheme}://{host}:{server.port}{path}"


@contextmanager
def quiet_server() -> Iterator[Server]:
    with Server() as server:
        # Clients hanging up mid-answer is what these tests do; no tracebacks on stderr.
        server.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        yield server


# One server per module (stopping one takes half a second); routes and hits reset per test.
@pytest.fixture(scope="module")
def _servers() -> Iterator[tuple[Server, Server]]:
    with quiet_server() as main, quiet_server() as canary:
        yield main, canary


@pytest.fixture
def http_server(_servers: tuple[Server, Server]) -> Server:
    server = _servers[0]
    server.routes.clear()
    server.hits.clear()
    return server


@pytest.fixture
def canary(_servers: tuple[Server, Server]) -> Iterator[Server]:
    """A server on 127.0.0.1 that nothing may reach; every test checks it saw no request."""
    server = _servers[1]
    server.hits.clear()
    server.routes["/"] = static(b"secret")
    yield server
    assert server.hits == {}, f"the canary was reached: {server.hits}"


class Clock:
    def __init__(self) -> None:
        self.t0 = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.t0


# --- the address guard (N12, N13) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.216.34", True), ("2606:2800:220:1::1", True),
        ("127.0.0.1", False), ("::1", False), ("0.0.0.0", False), ("::", False),
        ("10.0.0.5", False), ("172.16.0.1", False), ("192.168.1.1", False),
        ("169.254.169.254", False), ("fe80::1%eth0", False), ("100.64.0.1", False),
        ("fd00::1", False), ("224.0.0.1", False), ("ff02::1", False),
        ("255.255.255.255", False), ("240.0.0.1", False), ("198.18.0.1", False),
        ("::ffff:127.0.0.1", False), ("::ffff:10.0.0.1", False), ("::127.0.0.1", False),
        ("2002:7f00:1::", False), ("64:ff9b::7f00:1", False), ("2001:db8::1", False),
        ("not an address", False),
    ],
)  # fmt: skip
def test_n13_address_table(address: str, public: bool) -> None:
    """N13: is_global for every answer, IPv4 carried in IPv6 unwrapped, multicast refused."""
    assert is_public_address(address) is public


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "[::1]", "0.0.0.0", "169.254.169.254", "[::ffff:127.0.0.1]", "100.64.0.1",
     "10.0.0.5", "[fd00::1]", "2130706433", "0x7f000001", "127.1", "localhost"],
)  # fmt: skip
def test_n13_literal_and_numeric_hosts_refused(host: str, canary: Server) -> None:
    """N13: literal private hosts, and numeric forms the system resolver turns into 127.0.0.1."""
    src = source(f"http://{host}:{canary.port}/")
    error = failure(src, "blocked_address", resolver=system_resolver)
    assert "allow_private_network" in error.message


def test_n13_literal_hosts_refused_at_connect_time_too(canary: Server) -> None:
    """N13: the transport itself refuses, even for a request that skipped fetch_source."""

    async def go() -> None:
        async with make_client(FAST) as client:
            for host in ["127.0.0.1", "[::ffff:127.0.0.1]", "2130706433", "localhost"]:
                with pytest.raises(BlockedAddressError):
                    await client.get(f"http://{host}:{canary.port}/")

    asyncio.run(go())


def test_n13_hostname_resolving_to_private_refused(canary: Server) -> None:
    """N13: every address of the answer must be public, not just the first."""
    for answer in (["127.0.0.1"], [PUBLIC_IP, "10.0.0.5"], ["::1"]):
        internet = FakeInternet()
        dns = resolver_for({"feeds.test": answer})
        src = source(f"http://feeds.test:{canary.port}/")
        failure(src, "blocked_address", resolver=dns, internet=internet)
        assert internet.connects == []


def test_n13_dns_rebinding_is_blocked(http_server: Server) -> None:
    """N13: public on the first lookup, private on the second: the second connection is refused.

    /a answers with a redirect to /b on the same host and closes the connection, so /b needs
    a new connection and a new lookup, which now says 127.0.0.1.
    """
    http_server.routes["/a"] = close_after(redirect("/b"))
    http_server.routes["/b"] = static(RSS)
    answers = iter([[PUBLIC_IP], ["127.0.0.1"]])
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return next(answers)

    internet = FakeInternet()
    src = source(public_url(http_server, "/a", host="rebind.test"))
    error = failure(src, "blocked_address", resolver=rebinding, internet=internet)
    assert "127.0.0.1" in error.message and error.url.endswith("/b")
    assert lookups == ["rebind.test", "rebind.test"]  # one lookup per connection, no more
    assert internet.connects == [(PUBLIC_IP, http_server.port)]  # the vetted address only
    assert http_server.hits == {"/a": 1}


def test_n13_allow_private_network_is_the_bypass(http_server: Server) -> None:
    """N13: per source, or for the whole fetch section."""
    http_server.routes["/f"] = static(RSS)
    src = source(http_server.url("/f"))
    failure(src, "blocked_address")
    assert fetch(dataclasses.replace(src, allow_private_network=True)).content == RSS
    assert fetch(src, dataclasses.replace(FAST, allow_private_network=True)).content == RSS


@pytest.mark.parametrize(
    "target",
    ["http://127.0.0.1:{port}/", "http://[::ffff:127.0.0.1]:{port}/",
     "http://169.254.169.254/latest/meta-data/", "http://internal.test:{port}/"],
)  # fmt: skip
def test_n12_public_redirect_to_private_blocked_at_that_hop(
    http_server: Server, canary: Server, target: str
) -> None:
    """N12: public URL 302 -> internal address; refused at that hop; the canary sees nothing.

    internal.test resolves to 127.0.0.1, so only the connect-time guard can catch it.
    """
    http_server.routes["/feed"] = redirect(target.format(port=canary.port))
    dns = resolver_for({"public.test": [PUBLIC_IP], "internal.test": ["127.0.0.1"]})
    internet = FakeInternet()
    src = source(public_url(http_server, "/feed"))
    error = failure(src, "blocked_address", resolver=dns, internet=internet)
    assert error.url == target.format(port=canary.port)
    assert http_server.hits == {"/feed": 1}
    assert internet.connects == [(PUBLIC_IP, http_server.port)]


# --- timeouts (N1, N2, N3) ------------------------------------------------------------------


def test_n1_silent_server_read_timeout(http_server: Server) -> None:
    """N1: accepts, never answers: read_timeout after the read timeout (no retry here)."""
    http_server.routes["/hang"] = silent(3)
    settings = dataclasses.replace(FAST, read_timeout=0.5, retry_delays=())
    clock = Clock()
    error = failure(source(public_url(http_server, "/hang")), "read_timeout", settings)
    assert clock.elapsed <= settings.read_timeout + 1
    assert error.attempts == 1


def test_n1_read_timeout_is_retried_within_the_budget(http_server: Server) -> None:
    """N1 + in-run retry: 3 attempts, each bounded; the message counts them."""
    http_server.routes["/hang"] = silent(3)
    settings = dataclasses.replace(FAST, read_timeout=0.3, fetch_budget=3)
    clock = Clock()
    error = failure(source(public_url(http_server, "/hang")), "read_timeout", settings)
    assert error.attempts == 3 and "after 3 attempts" in error.message
    assert http_server.hits["/hang"] == 3
    assert clock.elapsed <= settings.fetch_budget + 1


def test_n2_connect_timeout_typed_and_retried() -> None:
    """N2: a blackholed address (stub transport raising ConnectTimeout)."""
    calls = []

    def blackhole(request: httpx.Request) -> httpx.Response:
        calls.append(request.url)
        raise httpx.ConnectTimeout("timed out", request=request)

    async def go() -> Fetched:
        async with make_client(FAST, httpx.MockTransport(blackhole)) as client:
            return await fetch_source(client, SRC_MOCK, Validators(), FAST)

    with pytest.raises(FetchError) as caught:
        asyncio.run(go())
    assert caught.value.kind == "connect_timeout" and caught.value.attempts == 3
    assert "src-1" in str(caught.value) and SRC_MOCK.url in str(caught.value)
    assert len(calls) == 3


def test_n2_connect_timeout_through_the_guarded_backend() -> None:
    """N2: the vetted address does not answer the SYN: connect_timeout within the timeout."""

    class Blackhole(FakeInternet):
        async def connect_tcp(
            self,
            host: str,
            port: int,
            timeout: float | None = None,
            local_address: str | None = None,
            socket_options: Any = None,
        ) -> httpcore.AsyncNetworkStream:
            self.connects.append((host, port))
            await asyncio.sleep(timeout or 0)
            raise httpcore.ConnectTimeout("timed out")

    internet = Blackhole()
    settings = dataclasses.replace(FAST, connect_timeout=0.2, retry_delays=())
    clock = Clock()
    failure(source("http://feeds.test/rss"), "connect_timeout", settings, internet=internet)
    assert clock.elapsed <= settings.connect_timeout + 1
    assert internet.connects == [(PUBLIC_IP, 80)]


def test_n3_slowloris_stopped_at_the_deadline(http_server: Server) -> None:
    """N3: a byte now and then, forever: aborted at the total deadline; not retried."""
    http_server.routes["/slow"] = trickle(b"<", every=0.2, limit=6)
    settings = dataclasses.replace(FAST, read_timeout=1, deadline=1.5)
    clock = Clock()
    error = failure(source(public_url(http_server, "/slow")), "deadline", settings)
    assert clock.elapsed <= settings.deadline + 1
    assert error.attempts == 1 and http_server.hits["/slow"] == 1


def test_fetch_budget_bounds_all_attempts(http_server: Server) -> None:
    """The per-source budget: retries never run past it."""
    http_server.routes["/hang"] = silent(3)
    settings = dataclasses.replace(
        FAST, read_timeout=0.4, retry_delays=(0.1, 0.1), fetch_budget=0.7
    )
    clock = Clock()
    with pytest.raises(FetchError) as caught:
        fetch(source(public_url(http_server, "/hang")), settings)
    assert caught.value.kind in {"read_timeout", "deadline"}
    assert clock.elapsed <= settings.fetch_budget + 1


# --- HTTP status, retries, Retry-After (N4, N5) ----------------------------------------------


@pytest.mark.parametrize("status", [502, 503, 504])
def test_n4_flapping_5xx_retried_then_ok(http_server: Server, status: int) -> None:
    """N4: two failures, then the feed: in-run retries recover it."""
    http_server.routes["/f"] = sequence(
        static(b"bad", "text/plain", status), static(b"bad", "text/plain", status), static(RSS)
    )
    assert fetch(source(public_url(http_server, "/f"))).content == RSS
    assert http_server.hits["/f"] == 3


@pytest.mark.parametrize("status", [502, 503, 504])
def test_n4_persistent_5xx_gives_up_after_two_retries(http_server: Server, status: int) -> None:
    """N4: at most 2 retries; the error carries the status and the attempt count."""
    http_server.routes["/f"] = static(b"down", "text/plain", status)
    clock = Clock()
    error = failure(source(public_url(http_server, "/f")), "http_status")
    assert error.http_status == status and error.attempts == 3
    assert "after 3 attempts" in error.message and error.retry_after is None
    assert http_server.hits["/f"] == 3
    assert clock.elapsed <= FAST.fetch_budget + 1


@pytest.mark.parametrize("status", [500, 400, 401, 403, 404, 410, 429])
def test_n4_other_statuses_are_not_retried(http_server: Server, status: int) -> None:
    """N4: 500 and every 4xx: one attempt, typed with the status."""
    http_server.routes["/f"] = static(b"no", "text/plain", status)
    error = failure(source(public_url(http_server, "/f")), "http_status")
    assert error.http_status == status and error.attempts == 1
    assert http_server.hits["/f"] == 1


def test_retry_delays_are_jittered_within_25_percent() -> None:
    settings = FetchSettings()
    assert retry_delay(1, settings, lambda a, b: a) == pytest.approx(1.5)
    assert retry_delay(1, settings, lambda a, b: b) == pytest.approx(2.5)
    assert retry_delay(2, settings, lambda a, b: a) == pytest.approx(6.0)
    assert retry_delay(2, settings, lambda a, b: b) == pytest.approx(10.0)
    assert retry_delay(3, settings) is None
    for _ in range(100):
        delay = retry_delay(1, settings)
        assert delay is not None and 1.5 <= delay <= 2.5


def in_two_minutes() -> str:
    return formatdate(time.time() + 120, usegmt=True)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("120", 120.0), (in_two_minutes, 120.0), ("999999999", 86400.0), ("-5", None),
     ("soon", None), ("", None), ("1.5", None), ("Mon, 99 Foo 2026 99:99:99 GMT", None)],
)  # fmt: skip
@pytest.mark.parametrize("status", [429, 503])
def test_n5_retry_after(
    http_server: Server, value: Any, expected: float | None, status: int
) -> None:
    """N5: seconds or HTTP-date, capped at 24 h, garbage ignored; exposed on the error.

    A 429/503 with a Retry-After is never retried in the run: the pipeline schedules it.
    """
    header = value() if callable(value) else value
    http_server.routes["/f"] = static(b"slow down", "text/plain", status, {"Retry-After": header})
    error = failure(source(public_url(http_server, "/f")), "http_status")
    assert error.http_status == status
    if expected is None:
        assert error.retry_after is None
    else:
        assert error.retry_after == pytest.approx(expected, abs=2)
        assert "wait" in error.message and http_server.hits["/f"] == 1


def test_n5_retry_after_parsing() -> None:
    date = "Mon, 30 Nov 2026 10:00:00 GMT"
    now = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)
    assert parse_retry_after("Mon, 30 Nov 2026 10:02:00 GMT", date) == 120
    assert parse_retry_after("Mon, 30 Nov 2026 09:00:00 GMT", date) == 0  # past: now
    assert parse_retry_after("Tue, 30 Nov 2027 10:00:00 GMT", date) == 86400
    assert parse_retry_after("Mon, 30 Nov 2026 10:02:00 GMT", None, now) == 120
    assert parse_retry_after("Mon, 30 Nov 2026 10:02:00 GMT", None) is None  # no clock
    assert parse_retry_after("Mon, 30 Nov 2026 10:02:00 GMT", "garbage", now) == 120
    assert parse_retry_after("٣", date) is None  # a non-ASCII digit
    assert parse_retry_after(None, date) is None


# --- broken bodies (N6, N7, N9, N10) ----------------------------------------------------------


def test_n6_connection_reset_mid_body(http_server: Server) -> None:
    """N6: reset after 50 of 100 000 announced bytes: read_error, retried, never parsed."""
    http_server.routes["/f"] = cut(50, 100_000, reset=True)
    error = failure(source(public_url(http_server, "/f")), "read_error")
    assert error.attempts == 3 and http_server.hits["/f"] == 3


def test_n7_truncated_body_clean_close(http_server: Server) -> None:
    """N7: fewer bytes than Content-Length, then a clean close: incomplete_body."""
    http_server.routes["/f"] = cut(50, 1000, reset=False)
    error = failure(source(public_url(http_server, "/f")), "incomplete_body")
    assert error.attempts == 1


def test_n9_nested_gzip_bomb_bounded_in_memory(http_server: Server) -> None:
    """N9: `Content-Encoding: gzip, gzip` around 200 MB of zeros: stopped at the cap, decoded.

    The decoded bytes held at any time stay under 2x the cap (tracemalloc peak).
    """
    cap = 1024 * 1024
    http_server.routes["/bomb"] = nested_gzip_bomb(200 * 1024 * 1024)
    src = source(public_url(http_server, "/bomb"), max_bytes=cap)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        error = failure(src, "too_large")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "decompression" in error.message
    assert peak < 2 * cap, peak


def test_n9_brotli_is_not_decoded_blindly(http_server: Server) -> None:
    """N9: we only ask for gzip/deflate; a body in another coding is a decode error."""
    seen = {}

    def br(h: Any) -> None:
        seen["accept-encoding"] = h.headers.get("Accept-Encoding")
        static(b"\x1b\xff\xff", headers={"Content-Encoding": "br"})(h)

    http_server.routes["/br"] = br
    failure(source(public_url(http_server, "/br")), "decode")
    assert seen["accept-encoding"] == "gzip, deflate"


def test_bounded_decoder_raw_deflate_and_corruption() -> None:
    import zlib

    raw = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    data = raw.compress(RSS) + raw.flush()
    decoder = BoundedDecoder("deflate", 10_000)
    assert b"".join(decoder.feed(data)) == RSS
    decoder.finish()
    with pytest.raises(Undecodable):
        list(BoundedDecoder("gzip", 10_000).feed(b"not gzip at all"))


@pytest.mark.parametrize(
    ("length", "expect"),
    [("honest", "Content-Length"), ("chunked", "decompression"), ("lying", None)],
)
def test_n10_fifty_megabytes(http_server: Server, length: str, expect: str | None) -> None:
    """N10: 50 MB with Content-Length (refused from the header), chunked (stopped at the cap),
    and with a lying small Content-Length (only the announced bytes are ever read)."""
    size, cap = 50 * 1024 * 1024, 1024 * 1024
    content_length = {"honest": size, "chunked": None, "lying": 100}[length]
    http_server.routes["/big"] = stream_zeros(size, content_length)
    src = source(public_url(http_server, "/big"), max_bytes=cap)
    clock = Clock()
    if expect is None:
        assert fetch(src).content == b"\0" * 100
    else:
        error = failure(src, "too_large")
        assert expect in error.message
    assert clock.elapsed < 3


# --- headers (response header limit) ----------------------------------------------------------


@pytest.mark.parametrize("total", [80 * 1024, 300 * 1024])
def test_header_bomb(http_server: Server, total: int) -> None:
    """64 KiB of headers is the limit: over it ours says so; over h11's 100 KiB, h11 stops."""
    http_server.routes["/h"] = header_bomb(total)
    error = failure(source(public_url(http_server, "/h")), "too_large")
    assert "header" in error.message and error.attempts == 1


# --- TLS (N8) ---------------------------------------------------------------------------------


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test CA, and certificates for feeds.test: good, expired, wrong host, self-signed."""
    d = tmp_path_factory.mktemp("certs")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl("req", "-x509", *ec, "-keyout", d / "ca.key", "-out", d / "ca.pem",
             "-days", "2", "-subj", "/CN=aggregator test CA")  # fmt: skip
    for name, host, days in [("good", "feeds.test", "2"), ("expired", "feeds.test", "-1"),
                             ("wronghost", "other.test", "2")]:  # fmt: skip
        (d / f"{name}.ext").write_text(f"subjectAltName=DNS:{host}\n")
        _openssl("req", *ec, "-keyout", d / f"{name}.key", "-out", d / f"{name}.csr",
                 "-subj", f"/CN={host}")  # fmt: skip
        _openssl("x509", "-req", "-in", d / f"{name}.csr", "-CA", d / "ca.pem",
                 "-CAkey", d / "ca.key", "-CAcreateserial", "-out", d / f"{name}.pem",
                 "-days", days, "-extfile", d / f"{name}.ext")  # fmt: skip
    _openssl("req", "-x509", *ec, "-keyout", d / "self.key", "-out", d / "self.pem",
             "-days", "2", "-subj", "/CN=feeds.test",
             "-addext", "subjectAltName=DNS:feeds.test")  # fmt: skip
    return d


@contextmanager
def tls_server(certs: Path, name: str) -> Iterator[Server]:
    server = Server()
    server.httpd.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs / f"{name}.pem", certs / f"{name}.key")
    server.httpd.socket = context.wrap_socket(
        server.httpd.socket, server_side=True, do_handshake_on_connect=False
    )
    server.routes["/rss"] = static(RSS)
    with server:
        yield server


def trusting(certs: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(certs / "ca.pem"))


def test_n8_tls_connects_to_the_vetted_ip_with_the_hostname_for_sni(certs: Path) -> None:
    """The guard connects to the vetted IP, yet SNI and the certificate check use the name."""
    internet = FakeInternet()
    with tls_server(certs, "good") as server:
        src = source(public_url(server, "/rss", "https", "feeds.test"))
        fetched = fetch(src, internet=internet, ssl_context=trusting(certs))
    assert fetched.content == RSS
    assert internet.connects == [(PUBLIC_IP, server.port)]
    assert internet.sni == ["feeds.test"]


@pytest.mark.parametrize(
    ("cert", "trusted", "why"),
    [("expired", True, "expired"), ("wronghost", True, "feeds.test"),
     ("self", False, "self-signed"), ("good", False, "certificate")],
)  # fmt: skip
def test_n8_bad_certificates(certs: Path, cert: str, trusted: bool, why: str) -> None:
    """N8: expired, wrong host, self-signed, unknown CA: kind tls, no insecure retry."""
    with tls_server(certs, cert) as server:
        src = source(public_url(server, "/rss", "https", "feeds.test"))
        context = trusting(certs) if trusted else None
        error = failure(src, "tls", ssl_context=context)
    assert why in error.message and error.attempts == 1
    assert server.hits == {}


def test_n8_reset_during_handshake() -> None:
    """N8: the peer resets the connection in the middle of the TLS handshake."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def reset_one() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)  # the ClientHello
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")

    thread = threading.Thread(target=reset_one, daemon=True)
    thread.start()
    try:
        src = source(f"https://feeds.test:{port}/rss")
        error = failure(src, "tls", dataclasses.replace(FAST, retry_delays=()))
    finally:
        thread.join(5)
        listener.close()
    assert error.attempts == 1


# --- redirects and schemes (N11, N14) -------------------------------------------------------


def test_n11_six_hop_chain(http_server: Server) -> None:
    """N11: 6 redirects: too_many_redirects after 5 hops, the chain in the message."""
    for n in range(6):
        http_server.routes[f"/{n}"] = redirect(f"/{n + 1}")
    http_server.routes["/6"] = static(RSS)
    error = failure(source(public_url(http_server, "/0")), "too_many_redirects")
    assert error.message.count(" -> ") == 6 and "/0 -> " in error.message
    assert "/6" not in http_server.hits


def test_n11_five_hops_are_fine(http_server: Server) -> None:
    for n in range(5):
        http_server.routes[f"/{n}"] = redirect(f"/{n + 1}")
    http_server.routes["/5"] = static(RSS)
    assert fetch(source(public_url(http_server, "/0"))).url.endswith("/5")


@pytest.mark.parametrize("target", ["ftp://example.org/x", "file:///etc/passwd", "gopher://x/"])
def test_n11_redirect_to_other_schemes(http_server: Server, target: str) -> None:
    """N11: a redirect to a non-http(s) URL is refused."""
    http_server.routes["/f"] = redirect(target)
    error = failure(source(public_url(http_server, "/f")), "bad_url")
    assert error.url == target


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://example.org/", "ftp://example.org/f", "data:,x"]
)
def test_n14_source_schemes(url: str) -> None:
    """N14: config refuses these; the fetcher refuses them again, before any connection."""
    internet = FakeInternet()
    failure(source(url), "bad_url", internet=internet)
    assert internet.connects == []


# --- DNS (N15) --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure_mode",
    [socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
     socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
     "hang", "empty"],
)  # fmt: skip
def test_n15_dns_failures(failure_mode: Any) -> None:
    """N15: NXDOMAIN, SERVFAIL, a resolver that never answers, an empty answer: kind dns."""

    async def resolver(host: str, port: int) -> list[str]:
        if failure_mode == "hang":
            await asyncio.sleep(30)
        if failure_mode == "empty":
            return []
        raise failure_mode

    settings = dataclasses.replace(FAST, connect_timeout=0.3)
    internet = FakeInternet()
    clock = Clock()
    error = failure(source("http://feeds.test/rss"), "dns", settings, resolver=resolver,
                    internet=internet)  # fmt: skip
    assert "feeds.test" in error.message and internet.connects == []
    assert clock.elapsed <= settings.connect_timeout + 1


# --- 304, bot challenges, not-a-feed (N16, N17) ----------------------------------------------


def test_n16_not_modified_after_etag(http_server: Server) -> None:
    """N16: 304 keeps the validators and says not_modified; never "empty"."""
    http_server.routes["/f"] = conditional(RSS, '"v1"')
    src = source(public_url(http_server, "/f"))
    first = fetch(src)
    assert first.content == RSS and first.validators.etag == '"v1"'
    again = fetch(src, validators=first.validators)
    assert again.not_modified and again.content == b"" and again.validators == first.validators


CHALLENGE = b"<html><head><title>Just a moment...</title></head><body>cf-chl</body></html>"


@pytest.mark.parametrize(
    "route",
    [static(b"", "text/html", 403, {"cf-mitigated": "challenge"}),
     static(b"", "text/html", 429, {"cf-mitigated": "challenge"}),
     cloudflare(403, CHALLENGE),
     cloudflare(503, b"<script src='/cdn-cgi/challenge-platform/h/g/orchestrate'></script>")],
)  # fmt: skip
def test_n17_bot_challenge(http_server: Server, route: Any) -> None:
    """N17: Cloudflare's bot check: bot_challenge with a hint; not retried (even a 503)."""
    http_server.routes["/f"] = route
    error = failure(source(public_url(http_server, "/f")), "bot_challenge")
    assert "bot check" in error.message and error.attempts == 1
    assert http_server.hits["/f"] == 1


def test_n17_plain_cloudflare_error_is_not_a_challenge(http_server: Server) -> None:
    http_server.routes["/f"] = cloudflare(403, b"<html>Access denied</html>")
    assert failure(source(public_url(http_server, "/f")), "http_status").http_status == 403


@pytest.mark.parametrize(
    "body", [b"<html><form action=/login>Sign in</form></html>", b""], ids=["login", "empty"]
)
def test_n17_html_wall_and_empty_body_are_left_to_parse(http_server: Server, body: bytes) -> None:
    """N17: a 200 login/consent page or an empty 200 is not a fetch error: parse types it
    (not_a_feed / empty_body), so it is never read as "0 items" here either."""
    http_server.routes["/f"] = static(body, "text/html")
    fetched = fetch(source(public_url(http_server, "/f")))
    assert fetched.content == body and fetched.content_type == "text/html"


SRC_MOCK = Source(id="src-1", name="Src", url="https://feeds.example.org/rss")
