"""The HTTP protocol's connection limits (``server/serving/protocol.py``), over raw sockets against uvicorn: a
peer that sends nothing, part of its headers, or a stalling body is answered 408 and closed; oversized headers
get 431; a slow-but-done request and an open stream are left alone."""

from __future__ import annotations

import asyncio
import os
import resource
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import anyio
import msgspec
import pytest

from tests.server.live import LiveServer, make_config, serving
from tests.server.sse import publish

_LIMITS = {"header_timeout_seconds": 0.5, "body_timeout_seconds": 1.0, "max_header_bytes": 4096}


@pytest.fixture
async def limited(dsn: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    async with serving(make_config(dsn, tmp_path, **_LIMITS)) as server:
        yield server


@asynccontextmanager
async def _connection(live: LiveServer) -> AsyncIterator[socket.socket]:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    host, port = live.url.removeprefix("http://").split("/")[0].split(":")
    await loop.sock_connect(sock, (host, int(port)))
    try:
        yield sock
    finally:
        sock.close()


async def _send(sock: socket.socket, data: bytes) -> None:
    with suppress(ConnectionError):
        await asyncio.get_running_loop().sock_sendall(sock, data)


async def _read_to_close(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (fails the test after ``timeout``)."""
    loop = asyncio.get_running_loop()
    raw = b""
    with anyio.fail_after(timeout):
        while True:
            try:
                chunk = await loop.sock_recv(sock, 65536)
            except ConnectionResetError:
                return raw
            if not chunk:
                return raw
            raw += chunk


def _answer(raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, msgspec.json.decode(body)


def _is_json_error_with_security_headers(headers: dict[str, str], body: dict[str, object]) -> bool:
    return (
        headers["content-type"] == "application/json"
        and headers["x-content-type-options"] == "nosniff"
        and "content-security-policy" in headers
        and isinstance(body.get("error"), str)
    )


async def test_a_connection_that_sends_nothing_is_answered_408_and_closed(limited: LiveServer) -> None:
    async with _connection(limited) as sock:
        status, headers, body = _answer(await _read_to_close(sock))
    assert status == 408
    assert _is_json_error_with_security_headers(headers, body)


async def test_headers_sent_in_part_are_answered_408_and_closed(limited: LiveServer) -> None:
    async with _connection(limited) as sock:
        await _send(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        for _ in range(3):  # a header line now and then does not reset the limit
            await anyio.sleep(0.2)
            await _send(sock, b"X-Slow: 1\r\n")
        status, _, body = _answer(await _read_to_close(sock))
    assert status == 408 and "headers" in str(body["error"])


async def test_a_body_that_trickles_is_answered_408_and_closed(limited: LiveServer) -> None:
    head = (
        b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
    )
    async with _connection(limited) as sock:
        await _send(sock, head + b"[")
        loop = asyncio.get_running_loop()
        raw = b""
        with anyio.fail_after(10):
            while True:
                await _send(sock, b" ")  # a byte now and then does not reset the limit
                with anyio.move_on_after(0.2):
                    chunk = await loop.sock_recv(sock, 65536)
                    if not chunk:
                        break
                    raw += chunk
    status, headers, body = _answer(raw)
    assert status == 408 and "body" in str(body["error"])
    assert _is_json_error_with_security_headers(headers, body)


async def test_oversized_headers_are_answered_431_without_reading_them_all(limited: LiveServer) -> None:
    async with _connection(limited) as sock:
        await _send(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 12_000_000 + b"\r\n\r\n")
        status, headers, body = _answer(await _read_to_close(sock))
    assert status == 431
    assert _is_json_error_with_security_headers(headers, body)


async def test_a_malformed_request_gets_a_json_400_with_the_security_headers(limited: LiveServer) -> None:
    async with _connection(limited) as sock:
        await _send(sock, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header\r\n\r\n")
        status, headers, body = _answer(await _read_to_close(sock))
    assert status == 400
    assert _is_json_error_with_security_headers(headers, body)


async def test_an_open_stream_and_a_kept_alive_connection_outlive_the_timeouts(limited: LiveServer) -> None:
    async with limited.client() as client, client.stream("GET", "/events") as stream:
        assert stream.status_code == 200
        lines = stream.aiter_lines()
        assert (await anext(lines)).startswith("retry:")
        await anyio.sleep(1.5)  # past both timeouts
        await publish(client, {"type": "A", "data": {}})  # the same client's kept-alive connection
        with anyio.fail_after(10):
            async for line in lines:
                if line.startswith("data:"):
                    break


async def test_stats_answer_while_the_process_has_no_file_descriptor_left(limited: LiveServer) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    held: list[int] = []
    async with limited.client() as client:
        assert (await client.get("/api/stats")).status_code == 200  # the connection is open now
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (len(_open_fds()) + 64, hard))
            with suppress(OSError):
                while True:
                    held.append(_devnull())
            response = await client.get("/api/stats")
        finally:
            for fd in held:
                _close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert response.status_code == 200, response.text
    assert response.json()["process"] == {"cpu_percent": None, "rss_bytes": None}


def _open_fds() -> list[str]:
    return os.listdir("/proc/self/fd")


def _devnull() -> int:
    return os.open("/dev/null", os.O_RDONLY)


def _close(fd: int) -> None:
    os.close(fd)
