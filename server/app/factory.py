"""The Starlette application: ``create_app(config)`` and its lifespan.

Mounting: Starlette (and FastAPI) do not run a mounted app's lifespan, so the parent must run it::

    live = create_app(config)
    app = Starlette(routes=[Mount("/live", app=live)], lifespan=live.router.lifespan_context)

The lifespan ignores the app it is handed (Starlette hands it the *parent*) and keeps its state on
the app it was made for, so this works as written, and inside a parent lifespan as
``async with live.router.lifespan_context(live): ...``. The dashboard uses relative URLs, so it
works under any prefix. Under uvicorn, Ctrl-C ends the open streams (see
:mod:`sse_batcher.server.app.host_exit`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Scope

from sse_batcher import frontend
from sse_batcher.server._http import BodyError, error, json_response, publish_token_required, read_json
from sse_batcher.server.app.cutoff import DrainCutoff
from sse_batcher.server.app.events_route import EventsRoute
from sse_batcher.server.app.history import stats_history
from sse_batcher.server.app.metrics import metrics, new_registry
from sse_batcher.server.app.publish import publish_events
from sse_batcher.server.app.runtime import RuntimeNotReady, runtime_of
from sse_batcher.server.app.starting import Phase, RuntimeStarter
from sse_batcher.server.app.state import latest_state
from sse_batcher.server.app.stats import health, stats
from sse_batcher.server.app.stream import stream_events
from sse_batcher.server.app.stream_token import issue_stream_token
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.security.errors import http_exception, server_error
from sse_batcher.server.security.guard import Guard, guard_of
from sse_batcher.server.security.hosts import HostCheckMiddleware, allowed_hosts
from sse_batcher.server.security.middleware import CORSMiddleware, SecurityHeadersMiddleware
from sse_batcher.workers.errors import JobQueueFullError, WorkerClosedError

__all__ = ["FRONTEND_DIR", "MAX_DEMO_BURST", "DashboardFiles", "create_app"]

logger = logging.getLogger(__name__)

FRONTEND_DIR = Path(frontend.__file__).resolve().parent
MAX_DEMO_BURST = 10_000
# A burst request is {"count": N}: a few bytes.
_MAX_BURST_BODY_BYTES = 1024
_PYTHON_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi")


async def index(request: Request) -> Response:
    """GET /: the dashboard."""
    return FileResponse(FRONTEND_DIR / "index.html", headers={"Cache-Control": "no-cache"})


class DashboardFiles(StaticFiles):
    """The dashboard's files from the frontend package, never the package's Python.

    The package directory also holds ``__init__.py`` and ``__pycache__``: source and bytecode are
    no business of a browser's, so those paths answer 404 as if absent.
    """

    async def get_response(self, path: str, scope: Scope) -> Response:
        """The file at ``path``, or 404 for a Python file or anything under ``__pycache__``."""
        parts = PurePosixPath(path.replace("\\", "/")).parts
        if "__pycache__" in parts or (parts and parts[-1].lower().endswith(_PYTHON_SUFFIXES)):
            raise HTTPException(status_code=404)
        return await super().get_response(path, scope)


async def demo_burst(request: Request) -> Response:
    """POST /api/demo/burst ``{"count": N}``: start N demo jobs at once; 202 ``{"requested": N}``.

    It publishes, so it needs the publish token when one is configured (401 otherwise).
    """
    runtime = runtime_of(request)
    if guard_of(request).publisher(request) is None:
        return publish_token_required()
    if runtime.farm is None:
        return error(404, "the demo is off (sse-batcher serve --demo turns it on)")
    try:
        body = await read_json(request, _MAX_BURST_BODY_BYTES)
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


async def not_ready(request: Request, exc: Exception) -> Response:
    """Any endpoint while the runtime is not open: 503 with ``Retry-After``, saying why."""
    return error(503, str(exc), {"Retry-After": "2"})


class _App(Starlette):
    """Starlette with GET /events served ahead of its middleware stack (:mod:`.events_route`).

    Inside it, :class:`~.cutoff.DrainCutoff` answers 503 what still waits after a shutdown's drain.
    The Host check stays outermost, so no path, ``/events`` included, answers a foreign ``Host``;
    it looks at the request once and never wraps ``send``.
    """

    def build_middleware_stack(self) -> ASGIApp:
        config: ServerConfig = self.state.config
        cutoff = DrainCutoff(super().build_middleware_stack(), self.state)
        events = EventsRoute(cutoff, config.cors_origins)
        return HostCheckMiddleware(events, allowed=allowed_hosts(config.allowed_hosts, config.host))


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build the app; its lifespan starts the database, store, batcher and hub (and the demo, if asked).

    ``config`` defaults to :meth:`ServerConfig.from_env`, which leaves the demo off: a mounted app
    never writes simulated jobs unless ``demo=True`` says so. Mountable (see the module docstring).
    """
    config = config or ServerConfig.from_env()
    app: Starlette

    @asynccontextmanager
    async def lifespan(_parent: Any) -> AsyncIterator[None]:
        # Made first: an unreadable tokens file stops the start before PostgreSQL is started.
        app.state.guard = Guard(config)
        starter = RuntimeStarter(config, lambda runtime: setattr(app.state, "runtime", runtime))
        app.state.starting = starter
        async with anyio.create_task_group() as tasks:
            # Returns once the runtime is open, or once the database was found away (the server
            # then answers 503 while the starter keeps trying: server.app.starting).
            await tasks.start(starter.run)
            try:
                yield
            finally:
                # Shutting down: /healthz and the endpoints answer 503 from the runtime's state.
                if starter.phase is Phase.RUNNING:
                    logger.info("shutting down")
                starter.stop()
        app.state.runtime = None

    routes = [
        Route("/", index, methods=["GET"]),
        # Served by EventsRoute ahead of the middleware; listed for OPTIONS, other methods and the docs.
        Route("/events", stream_events, methods=["GET"]),
        Route("/api/events", publish_events, methods=["POST"]),
        Route("/api/stream-token", issue_stream_token, methods=["POST"]),
        Route("/api/stats", stats, methods=["GET"]),
        Route("/api/history", stats_history, methods=["GET"]),
        Route("/api/state", latest_state, methods=["GET"]),
        Route("/api/demo/burst", demo_burst, methods=["POST"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", health, methods=["GET"]),
        Mount("/static", app=DashboardFiles(directory=FRONTEND_DIR), name="static"),
    ]
    # Outermost first: the security headers land on CORS preflight answers too. The Host check
    # wraps all of it (_App).
    middleware = [Middleware(SecurityHeadersMiddleware)]
    if config.cors_origins:
        middleware.append(Middleware(CORSMiddleware, origins=config.cors_origins))
    app = _App(
        routes=routes,
        middleware=middleware,
        lifespan=lifespan,
        # Every error answer is JSON with the security headers, Starlette's own included.
        exception_handlers={RuntimeNotReady: not_ready, HTTPException: http_exception, Exception: server_error},
    )
    app.state.config = config
    app.state.runtime = None
    app.state.starting = None
    app.state.metrics_registry = new_registry(lambda: app.state.runtime)
    return app
