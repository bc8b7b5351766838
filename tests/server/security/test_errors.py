"""Error answers (``server/security/errors.py``): Starlette's own 404, 405 and 500 are JSON ``{"error": ...}``
and carry the security headers, like the app's errors.

uvicorn's own 400, 408 and 431 are tested in tests/server/serving/test_protocol.py.
"""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.routing import Mount

from sse_batcher.server.app.factory import create_app
from tests.server.live import LiveServer, make_config, serving


def _json_error_with_security_headers(response: httpx.Response) -> bool:
    return (
        response.headers["content-type"] == "application/json"
        and response.headers["x-content-type-options"] == "nosniff"
        and "default-src 'none'" in response.headers["content-security-policy"]
        and isinstance(response.json()["error"], str)
    )


async def test_unknown_paths_and_methods_answer_json_with_the_security_headers(live: LiveServer) -> None:
    async with live.client() as client:
        for response in (
            await client.get("/no-such-page"),
            await client.get("/static/no-such-file.js"),
        ):
            assert response.status_code == 404, response.text
            assert _json_error_with_security_headers(response)
        response = await client.delete("/api/events")
        assert response.status_code == 405
        assert _json_error_with_security_headers(response)
        assert response.headers["allow"] == "POST"


async def test_an_unhandled_error_answers_json_500_with_the_security_headers(dsn: str, tmp_path: Path) -> None:
    # A parent that mounts the app but never runs its lifespan: every endpoint fails inside the app.
    config = make_config(dsn, tmp_path)
    inner = create_app(config)
    parent = Starlette(routes=[Mount("/live", app=inner)])
    async with serving(config, app=parent, inner=inner, prefix="/live") as live, live.client() as client:
        response = await client.get("/api/stats")
    assert response.status_code == 500
    assert _json_error_with_security_headers(response)
    assert response.json() == {"error": "internal server error"}
