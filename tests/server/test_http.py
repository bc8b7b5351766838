"""The HTTP helpers every endpoint reads its body with (``server/_http.py``): JSON content type only, a body
refused as soon as it passes its limit, and JSON decoded as JSON.parse does, seen through POST /api/events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sse_batcher.server import create_app
from tests.server.app.test_publish import JSON, _emitted
from tests.server.live import LiveServer, make_config, serving


@pytest.mark.parametrize("text", ["\\ud800", "x\\uDBFFy", "tail\\udbff"])
async def test_an_unpaired_surrogate_escape_is_400_saying_so(live: LiveServer, text: str) -> None:
    body = b'{"type": "A", "data": {"s": "%s"}}' % text.encode()
    async with live.client() as client:
        response = await client.post("/api/events", content=body, headers=JSON)
    assert response.status_code == 400
    assert "unpaired surrogate" in response.json()["error"]  # msgspec alone says "truncated"
    assert _emitted(live) == 0


async def test_a_duplicated_key_keeps_its_last_value(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post(
            "/api/events", content=b'{"type": "bad type", "type": "JOB_DONE", "data": {}}', headers=JSON
        )
    assert response.status_code == 202


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Content-Type": "text/plain"},
        {"Content-Type": "application/json; charset=latin-1"},
        {"Content-Type": "application/json", "Content-Encoding": "gzip"},
    ],
    ids=["none", "text", "latin1", "gzip"],
)
async def test_wrong_content_type_is_415(live: LiveServer, headers: dict[str, str]) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", content=b'{"type": "A", "data": {}}', headers=headers)
    assert response.status_code == 415
    assert _emitted(live) == 0


async def test_declared_length_over_the_limit_is_413_before_reading(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, max_request_bytes=1000)) as live, live.client() as client:
        body = b'{"type": "A", "data": {"x": "' + b"y" * 2000 + b'"}}'
        response = await client.post("/api/events", content=body, headers=JSON)
        assert response.status_code == 413
        assert _emitted(live) == 0


@dataclass
class _Tally:
    read: int = 0


class _BodyCounter:
    """ASGI middleware counting the request body bytes the app took in: what the server read."""

    def __init__(self, app: ASGIApp, tally: _Tally) -> None:
        self.app = app
        self.tally = tally

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                self.tally.read += len(message.get("body", b""))
            return message

        await self.app(scope, counting, send)


async def test_a_non_ascii_digit_content_length_is_not_a_500(live: LiveServer) -> None:
    """uvicorn refuses ``Content-Length: ²`` itself; an ASGI server that passes it on must not crash us.

    In-process, as no HTTP server on a socket lets such a header through to the app.
    """
    transport = httpx.ASGITransport(app=live.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        headers = [(b"Content-Type", b"application/json"), (b"Content-Length", "²".encode("latin-1"))]
        response = await client.post("/api/events", content=b'{"type": "A", "data": {}}', headers=headers)
    assert response.status_code == 202  # the header is ignored; the body as read is what counts


async def test_chunked_body_over_the_limit_is_413_while_reading(dsn: str, tmp_path: Path) -> None:
    """No Content-Length: the server counts as it reads and stops at the limit, not at the end."""
    limit = 64 * 1024
    chunk = 4096
    total = 200 * chunk  # far past the limit

    async def body() -> AsyncIterator[bytes]:
        yield b'[{"type": "A", "data": {"x": "'
        for _ in range(total // chunk):
            yield b"y" * chunk
        yield b'"}}]'

    config = make_config(dsn, tmp_path, max_request_bytes=limit)
    app, tally = create_app(config), _Tally()
    app.add_middleware(_BodyCounter, tally=tally)
    async with serving(config, app=app) as live, live.client() as client:
        try:
            response = await client.post("/api/events", content=body(), headers=JSON)
        except httpx.HTTPError:
            # The server answered and closed while the client was still sending: also a refusal.
            pass
        else:
            assert response.status_code == 413
        assert _emitted(live) == 0
    # Stopped at the limit plus at most what one network read can bring, not at the end of the body.
    assert limit < tally.read <= limit + 64 * 1024, tally.read
