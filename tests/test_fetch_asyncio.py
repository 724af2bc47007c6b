"""issue 8: httpcore's network backend on asyncio (`fetch/_asyncio.py`), against real sockets.

Every fetch test goes through this backend already (it is the guard's default, and the fault
tests' FakeInternet wraps it); these pin what httpcore relies on: its exception types for
each failure, the end of stream, `is_readable` on an idle connection, and a close that does
not hang on a TLS peer that never answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpcore
import pytest

from aggregator.fetch._asyncio import CLOSE_GRACE, AsyncioBackend


@contextmanager
def peer(behave: object) -> Iterator[int]:
    """A TCP listener on 127.0.0.1 whose one connection is handed to `behave(conn)` in a
    thread; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:  # closed before anyone connected (the connect timed out first)
            return
        with conn:
            behave(conn)  # type: ignore[operator]

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        listener.close()
        thread.join(5)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_reads_what_the_peer_sent_then_the_end_of_stream() -> None:
    def send_and_close(conn: socket.socket) -> None:
        assert conn.recv(100) == b"GET"
        conn.sendall(b"hello")

    async def go(port: int) -> list[bytes]:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await stream.write(b"GET", timeout=5)
        got = [await stream.read(100, timeout=5)]
        got.append(await stream.read(100, timeout=5))
        await stream.aclose()
        return got

    with peer(send_and_close) as port:
        assert run(go(port)) == [b"hello", b""]


def test_a_refused_connection_is_a_connect_error() -> None:
    closed = socket.create_server(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    with pytest.raises(httpcore.ConnectError):
        run(AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5))


def test_a_connect_that_runs_out_of_time_is_a_connect_timeout() -> None:
    with peer(lambda conn: None) as port, pytest.raises(httpcore.ConnectTimeout):
        run(AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=0))


def test_a_silent_peer_is_a_read_timeout() -> None:
    release = threading.Event()

    async def go(port: int) -> None:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        try:
            await stream.read(100, timeout=0.1)
        finally:
            await stream.aclose()
            release.set()

    with peer(lambda conn: release.wait(5)) as port, pytest.raises(httpcore.ReadTimeout):
        run(go(port))


def test_writing_to_a_reset_connection_is_a_write_error() -> None:
    def reset(conn: socket.socket) -> None:
        # once the client's first byte is in: a reset before then could reach the client
        # while it still connects, which is a ConnectError (the test was flaky)
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")

    async def go(port: int) -> None:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        try:
            await stream.write(b"x", timeout=1)
            await asyncio.sleep(0.2)  # the reset arrives
            for _ in range(100):  # the first writes may still be buffered
                await stream.write(b"x" * 65536, timeout=1)
                await asyncio.sleep(0.01)
        finally:
            await stream.aclose()

    with peer(reset) as port, pytest.raises(httpcore.WriteError):
        run(go(port))


def test_an_idle_connection_the_peer_closed_is_readable() -> None:
    closed = threading.Event()

    def close_when_told(conn: socket.socket) -> None:
        closed.wait(5)

    async def go(port: int) -> tuple[bool, bool]:
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        before = stream.get_extra_info("is_readable")
        closed.set()
        for _ in range(100):  # the peer's FIN on its way
            await asyncio.sleep(0.01)
            if stream.get_extra_info("is_readable"):
                break
        after = stream.get_extra_info("is_readable")
        assert stream.get_extra_info("server_addr") == ("127.0.0.1", port)
        assert stream.get_extra_info("socket") is not None
        await stream.aclose()
        return before, after

    with peer(close_when_told) as port:
        assert run(go(port)) == (False, True)


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", d / "key.pem", "-out", d / "cert.pem", "-days", "2",
         "-subj", "/CN=feeds.test", "-addext", "subjectAltName=DNS:feeds.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    return d


def test_tls_handshake_and_a_close_that_does_not_wait_for_a_silent_peer(cert: Path) -> None:
    """The peer completes the handshake, answers once, then never reads again: without a
    bound, asyncio would wait 30 s for its close_notify."""
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert / "cert.pem", cert / "key.pem")
    release = threading.Event()

    def answer_then_hang(conn: socket.socket) -> None:
        with server.wrap_socket(conn, server_side=True) as tls:
            assert tls.recv(100) == b"ping"
            tls.sendall(b"pong")
            release.wait(10)

    async def go(port: int) -> tuple[bytes, object, float]:
        client = ssl.create_default_context(cafile=str(cert / "cert.pem"))
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        tls = await stream.start_tls(client, server_hostname="feeds.test", timeout=5)
        await tls.write(b"ping", timeout=5)
        answer = await tls.read(100, timeout=5)
        version = tls.get_extra_info("ssl_object").version()
        t0 = time.monotonic()
        await tls.aclose()
        return answer, version, time.monotonic() - t0

    with peer(answer_then_hang) as port:
        try:
            answer, version, closing = run(go(port))  # type: ignore[misc]
        finally:
            release.set()
    assert answer == b"pong" and str(version).startswith("TLS")
    assert closing < CLOSE_GRACE + 1


def test_a_certificate_for_another_host_is_a_connect_error(cert: Path) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert / "cert.pem", cert / "key.pem")

    def handshake(conn: socket.socket) -> None:
        with contextlib.suppress(ssl.SSLError, OSError):  # the client gave up on it
            server.wrap_socket(conn, server_side=True).close()

    async def go(port: int) -> None:
        client = ssl.create_default_context(cafile=str(cert / "cert.pem"))
        stream = await AsyncioBackend().connect_tcp("127.0.0.1", port, timeout=5)
        await stream.start_tls(client, server_hostname="other.test", timeout=5)

    with peer(handshake) as port, pytest.raises(httpcore.ConnectError, match=r"other\.test"):
        run(go(port))
