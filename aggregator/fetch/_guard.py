"""The connect-time address guard of the fetch stage: host -> vetted IP -> TCP stream.

A custom httpcore network backend resolves the host itself, requires every address to be
public (`is_public_address`), and connects to one of those vetted addresses. Because the
address that is checked is the address that is connected, a DNS answer that flips from
public to private between two lookups (rebinding) cannot slip through, and every redirect
hop goes through the same check. TLS is untouched: httpcore takes the SNI name and the
certificate host from the request's URL, not from the TCP address. The backend that really
connects is `_asyncio.AsyncioBackend` unless a caller (a test) gives another.

Imports only the fetch stage's own `_asyncio`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import Any

import httpcore

from aggregator.fetch._asyncio import AsyncioBackend

Resolver = Callable[[str, int], Awaitable[list[str]]]

# NAT64 (RFC 6052) and the deprecated IPv4-compatible block embed an IPv4 address that a
# gateway or the kernel may route to; Python 3.11 calls both "global".
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system resolver gives for a host."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def is_public_address(address: str) -> bool:
    """True for a globally routable unicast address; False for anything else or garbage.

    Refuses loopback, private, link-local, shared (100.64/10), reserved, unspecified and
    multicast addresses, and IPv6 forms that carry a refused IPv4 address inside them
    (IPv4-mapped, IPv4-compatible, 6to4, NAT64).
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(
            address.split("%", 1)[0]
        )
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _IPV4_COMPATIBLE:
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip.sixtofour is not None:
            ip = ip.sixtofour
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


class BlockedAddress(httpcore.ConnectError):
    """The host is, or resolves to, an address we refuse to connect to."""

    def __init__(self, host: str, addresses: list[str]) -> None:
        self.host = host
        self.addresses = addresses
        shown = ", ".join(addresses) if addresses else "no address"
        super().__init__(f"{host} is or resolves to a non-public address ({shown})")


class ResolveFailed(httpcore.ConnectError):
    """The resolver failed, timed out or gave no address."""


class TLSFailed(httpcore.ConnectError):
    """The TLS handshake failed (certificate, protocol, or the peer hung up during it)."""


# The resolver of the request being sent: fetch_source takes one per call (tests inject a
# stub), and httpcore opens the connection in the task that sends the request.
current_resolver: ContextVar[Resolver | None] = ContextVar("current_resolver", default=None)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """Resolve, vet every address, connect to a vetted IP; or connect freely if allowed."""

    def __init__(
        self,
        inner: httpcore.AsyncNetworkBackend | None = None,
        *,
        resolver: Resolver = system_resolver,
        allow_private: bool = False,
    ) -> None:
        self._inner = inner if inner is not None else AsyncioBackend()
        self._resolver = resolver
        self._allow_private = allow_private

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if self._allow_private:
            targets = [host]
        else:
            targets = await self._vetted(host, port, timeout)
        error: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in targets:
            try:
                stream = await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as e:
                error = e  # try the next vetted address, report the last failure
                continue
            return _TLSMarkingStream(stream)
        assert error is not None
        raise error

    async def _vetted(self, host: str, port: int, timeout: float | None) -> list[str]:
        host = host.strip("[]")
        if is_ip_literal(host):
            addresses = [host]
        else:
            resolver = current_resolver.get() or self._resolver
            try:
                async with asyncio.timeout(timeout):
                    addresses = await resolver(host, port)
            except TimeoutError as e:
                raise ResolveFailed(f"no DNS answer for {host} within {timeout:g} s") from e
            except (OSError, UnicodeError) as e:
                raise ResolveFailed(f"cannot resolve {host}: {e}") from e
        if not addresses:
            raise ResolveFailed(f"{host} resolves to no address")
        blocked = [a for a in addresses if not is_public_address(a)]
        if blocked:
            raise BlockedAddress(host, blocked)
        return list(dict.fromkeys(addresses))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("unix sockets are never used for fetching")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _TLSMarkingStream(httpcore.AsyncNetworkStream):
    """A TCP stream whose handshake failures are told apart from other connect errors."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            return await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except (httpcore.ConnectError, OSError) as e:  # ssl.SSLError is an OSError
            await self._inner.aclose()
            raise TLSFailed(str(e) or type(e).__name__) from e

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)
