"""The Starlette application: ``create_app(config)`` and its lifespan.

Mounting: Starlette (and FastAPI) do not run a mounted app's lifespan, so the parent must run it::

    live = create_app(config)
    app = Starlette(routes=[Mount("/live", app=live)], lifespan=live.router.lifespan_context)

The lifespan ignores the app it is handed (Starlette hands it the *parent*) and keeps its state on
the app it was made for, so this works as written, and inside a parent lifespan as
``async with live.router.lifespan_context(live): ...``. The dashboard uses relative URLs, so it
works under any prefix.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from sse_batcher import frontend
from sse_batcher.server._http import BodyError, check_json_content_type, decode_json, error, json_response, read_body
from sse_batcher.server.app.metrics import metrics, new_registry
from sse_batcher.server.app.publish import publish_events
from sse_batcher.server.app.runtime import runtime_of
from sse_batcher.server.app.state import latest_state
from sse_batcher.server.app.stats import health, stats
from sse_batcher.server.app.stream import stream_events
from sse_batcher.server.app.stream_token import issue_stream_token
from sse_batcher.server.app.wiring import open_runtime
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.security.guard import Guard
from sse_batcher.server.security.middleware import CORSMiddleware, SecurityHeadersMiddleware
from sse_batcher.workers.errors import JobQueueFullError, WorkerClosedError

__all__ = ["FRONTEND_DIR", "MAX_DEMO_BURST", "create_app"]

logger = logging.getLogger(__name__)

FRONTEND_DIR = Path(frontend.__file__).resolve().parent
MAX_DEMO_BURST = 10_000
# A burst request is {"count": N}: a few bytes.
_MAX_BURST_BODY_BYTES = 1024


async def index(request: Request) -> Response:
    """GET /: the dashboard."""
    return FileResponse(FRONTEND_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def demo_burst(request: Request) -> Response:
    """POST /api/demo/burst ``{"count": N}``: start N demo jobs at once; 202 ``{"requested": N}``."""
    runtime = runtime_of(request)
    if runtime.farm is None:
        return error(404, "the demo workers are not running (the server was started with --no-demo)")
    try:
        check_json_content_type(request)
        body = decode_json(await read_body(request, _MAX_BURST_BODY_BYTES))
    except BodyError as exc:
        return error(exc.status, str(exc))
    count = body.get("count") if isinstance(body, dict) else None
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_DEMO_BURST:
        return error(422, f"count must be an integer from 1 to {MAX_DEMO_BURST}", field="count")
    try:
        runtime.farm.burst(count)
    except JobQueueFullError as exc:
        return error(503, str(exc), {"Retry-After": "1"})
    except WorkerClosedError:
        return error(503, "the demo workers are stopping", {"Retry-After": "1"})
    return json_response({"requested": count}, 202)


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build the app; its lifespan starts the database, store, batcher, hub and demo workers.

    ``config`` defaults to :meth:`ServerConfig.from_env`. Mountable (see the module docstring).
    """
    config = config or ServerConfig.from_env()
    app: Starlette

    @asynccontextmanager
    async def lifespan(_parent: Any) -> AsyncIterator[None]:
        # Made first: an unreadable tokens file stops the start before PostgreSQL is started.
        app.state.guard = Guard(config)
        async with open_runtime(config) as runtime:
            app.state.runtime = runtime
            try:
                yield
            finally:
                # Shutting down: /healthz and the endpoints answer 503 from the runtime's state.
                logger.info("shutting down")
        app.state.runtime = None

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/events", stream_events, methods=["GET"]),
        Route("/api/events", publish_events, methods=["POST"]),
        Route("/api/stream-token", issue_stream_token, methods=["POST"]),
        Route("/api/stats", stats, methods=["GET"]),
        Route("/api/state", latest_state, methods=["GET"]),
        Route("/api/demo/burst", demo_burst, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=FRONTEND_DIR), name="static"),
    ]
    # Outermost first: the security headers land on CORS preflight answers too.
    middleware = [Middleware(SecurityHeadersMiddleware)]
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, origins=config.cors_origins))
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    app.state.config = config
    app.state.runtime = None
    app.state.metrics_registry = new_registry(lambda: app.state.runtime)
    return app
