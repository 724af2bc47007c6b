"""httpcore's network backend on plain asyncio streams, without anyio (issue 8).

httpcore's default backend on asyncio is anyio's: every read and write opens a cancel scope
(`fail_after`), and every connect runs anyio's happy-eyeballs task group, even for the one
vetted IP address `GuardedBackend` hands it. On the benchmark that was about 40% of the
event loop's CPU per request. This backend does the same job with `asyncio.open_connection`,
`asyncio.timeout` and `StreamWriter.start_tls`, and maps errors to httpcore's exceptions as
its anyio backend does: a timeout to ConnectTimeout/ReadTimeout/WriteTimeout, an OSError
(ssl.SSLError included) to ConnectError/ReadError/WriteError, end of stream to b"".

Closing never waits long: a TLS peer that does not answer close_notify would otherwise hold
`aclose` for asyncio's 30 s shutdown timeout; after CLOSE_GRACE the transport is aborted.
Imports nothing from the package.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
from httpcore._utils import is_socket_readable

# How long `aclose` waits for the connection to finish closing before it aborts it.
CLOSE_GRACE = 1.0
# Bytes a connection's reader buffers before it stops reading from the socket (the fetch
# stage reads 64 KiB at a time; asyncio's default limit is 64 KiB, paused at twice that).
READ_LIMIT = 1 << 18


@contextmanager
def _mapped(timeout_error: type[Exception], os_error: type[Exception]) -> Iterator[None]:
    """TimeoutError -> `timeout_error`, OSError (and a connection reset) -> `os_error`."""
    try:
        yield
    except TimeoutError as e:
        raise timeout_error(str(e) or "timed out") from e
    except OSError as e:
        raise os_error(str(e) or type(e).__name__) from e


class AsyncioStream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore's stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(httpcore.ReadTimeout, httpcore.ReadError):
            async with asyncio.timeout(timeout):
                return await self._reader.read(max_bytes)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        with _mapped(httpcore.WriteTimeout, httpcore.WriteError):
            if self._writer.is_closing():
                raise httpcore.WriteError("the connection is closed")
            self._writer.write(buffer)
            async with asyncio.timeout(timeout):
                await self._writer.drain()

    async def aclose(self) -> None:
        writer = self._writer
        if writer.is_closing():
            # closed already (by us, or aborted): nothing to flush, nothing to wait for
            writer.transport.abort()
            return
        writer.close()
        try:
            async with asyncio.timeout(CLOSE_GRACE):
                await writer.wait_closed()
        except (TimeoutError, OSError):
            writer.transport.abort()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
                async with asyncio.timeout(timeout):
                    await self._writer.start_tls(
                        ssl_context,
                        server_hostname=server_hostname,
                        ssl_handshake_timeout=timeout,
                    )
        except BaseException:
            self._writer.transport.abort()
            raise
        return AsyncioStream(self._reader, self._writer)

    def get_extra_info(self, info: str) -> Any:
        writer = self._writer
        if info == "ssl_object":
            return writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return writer.get_extra_info("sockname")
        if info == "server_addr":
            return writer.get_extra_info("peername")
        if info == "socket":
            return writer.get_extra_info("socket")
        if info == "is_readable":
            # An idle connection the server closed (or wrote to): the reader may hold the
            # end of stream already, taken off the socket by the event loop.
            return self._reader.at_eof() or is_socket_readable(writer.get_extra_info("socket"))
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """Connects with asyncio directly (see the module docstring)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with _mapped(httpcore.ConnectTimeout, httpcore.ConnectError):
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host,
                    port,
                    local_addr=None if local_address is None else (local_address, 0),
                    limit=READ_LIMIT,
                )
        sock = writer.get_extra_info("socket")
        try:
            # asyncio sets TCP_NODELAY on its TCP sockets already; these are the caller's
            for option in socket_options or ():
                sock.setsockopt(*option)
        except OSError as e:
            writer.transport.abort()
            raise httpcore.ConnectError(str(e)) from e
        return AsyncioStream(reader, writer)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("unix sockets are not supported")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
