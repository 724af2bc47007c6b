"""The one HTTP chokepoint: an httpx transport over guarded httpcore connection pools.

Every request of a run goes through `GuardedTransport`: http/https only, no proxies from the
environment, and connections opened by `GuardedBackend` (resolve, vet, connect to the vetted
IP). Sources that may reach private addresses (`allow_private_network`) get their own pool,
so a connection opened for them is never reused for a source that may not.

httpcore's exceptions become httpx's here, once, the way httpx's own transport does it; the
guard's refusals become the subclasses below so the fetch stage can name them.
Imports nothing from the package.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from types import TracebackType

import httpcore
import httpx

from aggregator.fetch._guard import (
    BlockedAddress,
    GuardedBackend,
    ResolveFailed,
    Resolver,
    TLSFailed,
    current_resolver,
    system_resolver,
)

# The request extension that carries a request's guard policy (see `Policy`).
POLICY = "aggregator.policy"


@dataclass(frozen=True, slots=True)
class Policy:
    """Per request: may it reach private addresses, and which resolver vets the host."""

    allow_private: bool = False
    resolver: Resolver | None = None


class BlockedAddressError(httpx.ConnectError):
    """The guard refused the address the host is or resolves to."""


class ResolveError(httpx.ConnectError):
    """The host could not be resolved."""


class TLSError(httpx.ConnectError):
    """The TLS handshake failed."""


_OURS: list[tuple[type[Exception], type[httpx.HTTPError]]] = [
    (BlockedAddress, BlockedAddressError),
    (ResolveFailed, ResolveError),
    (TLSFailed, TLSError),
]
_HTTPCORE: list[tuple[type[Exception], type[httpx.HTTPError]]] = [
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
]


@contextlib.contextmanager
def _map_exceptions() -> Iterator[None]:
    try:
        yield
    except (httpcore.NetworkError, httpcore.TimeoutException, httpcore.ProtocolError,
            httpcore.UnsupportedProtocol) as e:  # fmt: skip
        for source, target in (*_OURS, *_HTTPCORE):  # most specific first
            if isinstance(e, source):
                raise target(str(e) or type(e).__name__) from e
        raise  # pragma: no cover - every httpcore error class is listed above


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpcore.Response) -> None:
        self._response = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _map_exceptions():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        with _map_exceptions():
            await self._response.aclose()


class GuardedTransport(httpx.AsyncBaseTransport):
    """httpx transport whose every connection is opened by the address guard.

    `network_backend` is the backend that really connects (tests wrap it to watch the TLS
    handshake or to route a fake public address to 127.0.0.1); `ssl_context` defaults to
    httpx's (certifi) context; `resolver` is used when a request carries no policy.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits | None = None,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        network_backend: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        limits = limits or httpx.Limits()
        context = ssl_context or httpx.create_ssl_context(trust_env=False)

        def pool(allow_private: bool) -> httpcore.AsyncConnectionPool:
            return httpcore.AsyncConnectionPool(
                ssl_context=context,
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                http1=True,
                http2=False,
                retries=0,  # retrying is the fetch stage's decision
                network_backend=GuardedBackend(
                    network_backend, resolver=resolver, allow_private=allow_private
                ),
            )

        self._strict = pool(False)
        self._open = pool(True)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"only http and https can be fetched, not {request.url.scheme!r}",
                request=request,
            )
        assert isinstance(request.stream, httpx.AsyncByteStream)
        extensions = dict(request.extensions)
        policy = extensions.pop(POLICY, None)
        if not isinstance(policy, Policy):
            policy = Policy()
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=extensions,
        )
        pool = self._open if policy.allow_private else self._strict
        token = current_resolver.set(policy.resolver)
        try:
            with _map_exceptions():
                response = await pool.handle_async_request(core_request)
        finally:
            current_resolver.reset(token)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_ResponseStream(response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        with _map_exceptions():
            await self._strict.aclose()
            await self._open.aclose()

    async def __aenter__(self) -> GuardedTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None = None,
        exc_value: BaseException | None = None,
        traceback: TracebackType | None = None,
    ) -> None:
        await self.aclose()
