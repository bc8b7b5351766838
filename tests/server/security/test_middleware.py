"""Security headers on every answer, and CORS: off by default, listed origins only, credentials done right."""

from __future__ import annotations

from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from sse_batcher.server.app.factory import FRONTEND_DIR
from tests.server.live import LiveServer, make_config, serving
from tests.server.sse import publish

APP = "https://app.example"
EVIL = "https://evil.example"
PUBLISH = {"Authorization": "Bearer pub-token"}


def _directives(policy: str) -> dict[str, str]:
    return {part.split(" ", 1)[0]: part.split(" ", 1)[1] for part in (p.strip() for p in policy.split(";")) if part}


async def test_dashboard_static_files_and_api_carry_a_strict_content_security_policy(live: LiveServer) -> None:
    async with live.client() as client:
        for path in ("/", "/static/app.js", "/static/style.css", "/static/vendor/uPlot.iife.min.js", "/api/stats"):
            response = await client.get(path)
            assert response.status_code == 200, path
            policy = response.headers["content-security-policy"]
            directives = _directives(policy)
            assert directives["default-src"] == "'none'"
            assert directives["script-src"] == "'self'"
            assert directives["style-src"] == "'self'"
            assert directives["connect-src"] == "'self'"
            assert directives["frame-ancestors"] == "'none'"
            assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
            assert response.headers["x-frame-options"] == "DENY"


async def test_errors_carry_nosniff_too(live: LiveServer) -> None:
    async with live.client() as client:
        response = await client.post("/api/events", content=b"{", headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert response.headers["x-content-type-options"] == "nosniff"


async def test_the_stream_gets_the_headers_and_is_not_buffered(live: LiveServer) -> None:
    async with live.client() as client, client.stream("GET", "/events") as response:
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = response.aiter_raw()
        # The first chunk arrives on its own, before any event exists: nothing holds the body back.
        assert await anext(chunks) == b"retry: 3000\n\n"
        await publish(client, {"type": "JOB_STARTED", "data": {"job_id": 1}})
        raw = b""
        while b"\n\n" not in raw:
            raw += await anext(chunks)
    assert b"event: JOB_STARTED" in raw


class _InlineFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("inline <script>")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{name}= on <{tag}>" for name in names if name == "style" or name.startswith("on")]


def test_the_dashboard_html_has_no_inline_script_style_or_handler() -> None:
    finder = _InlineFinder()
    finder.feed((FRONTEND_DIR / "index.html").read_text())
    assert finder.found == []


# -- CORS --------------------------------------------------------------------------------------
async def test_cors_is_off_by_default_for_the_stream_publishing_and_preflight(live: LiveServer) -> None:
    async with live.client() as client:
        async with client.stream("GET", "/events", headers={"Origin": EVIL}) as stream:
            assert stream.status_code == 200
            assert "access-control-allow-origin" not in stream.headers
        published = await client.post("/api/events", json={"type": "X", "data": {}}, headers={"Origin": EVIL})
        preflight = await client.options(
            "/api/events",
            headers={"Origin": EVIL, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type"},
        )  # fmt: skip
    assert published.status_code == 202
    for response in (published, preflight):
        assert not any(name.startswith("access-control-") for name in response.headers)


@pytest.fixture
async def cors(dsn: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    config = make_config(dsn, tmp_path, cors_origins=(APP + "/",), publish_token="pub-token")
    async with serving(config) as server:
        yield server


def _preflight(origin: str, method: str = "POST", headers: str = "authorization, content-type") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_a_listed_origin_may_preflight_a_publish_with_a_token(cors: LiveServer) -> None:
    async with cors.client() as client:
        response = await client.options("/api/events", headers=_preflight(APP))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == APP
    assert response.headers["access-control-allow-credentials"] == "true"
    assert {"POST", "GET"} <= {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= allowed
    assert "origin" in response.headers["vary"].lower()


async def test_a_foreign_origin_or_an_odd_method_or_header_is_refused_a_preflight(cors: LiveServer) -> None:
    async with cors.client() as client:
        refused = [
            await client.options("/api/events", headers=_preflight(EVIL)),
            await client.options("/api/events", headers=_preflight(APP, method="DELETE")),
            await client.options("/api/events", headers=_preflight(APP, headers="x-admin")),
        ]
    for response in refused:
        assert response.status_code == 403
        assert not any(name.startswith("access-control-") for name in response.headers)


async def test_a_listed_origin_publishes_and_reads_the_stream_and_a_foreign_one_gets_no_grant(
    cors: LiveServer,
) -> None:
    event = {"type": "JOB_STARTED", "data": {"job_id": 1}}
    async with cors.client() as client:
        ours = await client.post("/api/events", json=event, headers={**PUBLISH, "Origin": APP})
        theirs = await client.post("/api/events", json=event, headers={**PUBLISH, "Origin": EVIL})
        async with client.stream("GET", "/events", headers={"Origin": APP}) as stream:
            stream_headers = stream.headers
        async with client.stream("GET", "/events", headers={"Origin": EVIL}) as stream:
            foreign_stream_headers = stream.headers
    for headers in (ours.headers, stream_headers):
        assert headers["access-control-allow-origin"] == APP
        assert headers["access-control-allow-credentials"] == "true"
        assert "retry-after" in headers["access-control-expose-headers"].lower()
        assert "origin" in headers["vary"].lower()
    assert ours.status_code == theirs.status_code == 202  # CORS binds browsers; the token binds everyone
    for headers in (theirs.headers, foreign_stream_headers):
        assert not any(name.startswith("access-control-") for name in headers)
        assert "origin" in headers["vary"].lower()  # a cache must not hand this answer to APP


async def test_any_origin_is_answered_with_a_star_and_never_with_credentials(dsn: str, tmp_path: Path) -> None:
    async with serving(make_config(dsn, tmp_path, cors_origins=("*",))) as live, live.client() as client:
        preflight = await client.options("/api/events", headers=_preflight(EVIL))
        async with client.stream("GET", "/events", headers={"Origin": EVIL}) as stream:
            headers = stream.headers
    for answer in (preflight.headers, headers):
        assert answer["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in answer


async def test_mounted_under_a_prefix_the_headers_still_apply(dsn: str, tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from sse_batcher.server import create_app

    config = make_config(dsn, tmp_path)
    inner = create_app(config)
    parent = Starlette(routes=[Mount("/live", app=inner)], lifespan=inner.router.lifespan_context)
    async with serving(config, app=parent, inner=inner, prefix="/live") as live:
        async with httpx.AsyncClient(base_url=live.url, timeout=10) as client:
            response = await client.get("/")
    assert response.status_code == 200
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
