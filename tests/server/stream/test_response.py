"""The lean SSE response: HEAD holds no subscriber, and a client that goes away is released at once."""

from __future__ import annotations

import asyncio

from tests.server.live import LiveServer, until


async def test_head_answers_headers_without_holding_a_client(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.head("/events")
    assert response.status_code == 200
    assert live.runtime.hub.clients == 0


async def test_a_client_that_goes_away_is_released_at_once(live: LiveServer) -> None:
    """The lean stream still notices a disconnect: its one watcher task ends the stream."""
    host, port = live.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET /events HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await reader.readuntil(b"\r\n\r\n")
    await until(lambda: live.runtime.hub.clients == 1)
    writer.close()
    await until(lambda: live.runtime.hub.clients == 0)
