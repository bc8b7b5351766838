"""The pure ASGI route of GET /events (``server/app/events_route.py``): no middleware between stream and socket."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from sse_batcher.server import create_app
from sse_batcher.server.app.events_route import route_path
from sse_batcher.server.stream.response import HubStreamResponse
from tests.server.live import make_config, serving


async def test_a_stream_writes_through_the_servers_own_send_with_the_headers_set_once(
    dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every frame of a stream goes to the ``send`` the server handed the app, not to a middleware's
    wrapper; the security and CORS headers are on the response all the same."""
    config = make_config(dsn, tmp_path, cors_origins=("https://app.example",))
    inner = create_app(config)
    given: list[Send] = []
    used: list[Send] = []

    async def outer(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/events":
            given.append(send)
        await inner(scope, receive, send)

    original = HubStreamResponse._stream

    async def spy(self: HubStreamResponse, receive: Receive, send: Send) -> None:
        used.append(send)
        await original(self, receive, send)

    monkeypatch.setattr(HubStreamResponse, "_stream", spy)
    async with serving(config, app=cast(Starlette, outer), inner=inner) as live:
        async with (
            live.client() as client,
            client.stream("GET", "/events", headers={"Origin": "https://app.example"}) as response,
        ):
            assert response.status_code == 200
            headers = response.headers
    assert len(given) == 1 and used == given
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["access-control-allow-origin"] == "https://app.example"
    assert "origin" in headers["vary"].lower()


@pytest.mark.parametrize(
    ("path", "root_path", "expected"),
    [("/events", "", "/events"), ("/live/events", "/live", "/events"), ("/livex/events", "/live", "/livex/events")],
)
def test_the_route_path_is_the_path_below_the_mount_point(path: str, root_path: str, expected: str) -> None:
    assert route_path({"type": "http", "path": path, "root_path": root_path}) == expected
