"""GET /events as a pure ASGI route, ahead of Starlette's middleware stack.

Every ASGI middleware wraps ``send`` in a function of its own, and a stream's ``send`` is called
once per frame for its whole life: Starlette's error and exception middlewares and the security
headers (and CORS, when on) add three or four Python calls per frame per subscriber. This route
takes ``GET``/``HEAD`` ``/events`` before that stack, sets the same security and CORS headers once,
on the response's start, and hands the stream uvicorn's own ``send`` (what it saves:
bench/RESULTS.md, "Latency and CPU per delivery"). Every other request (a CORS preflight on ``/events`` included) goes
through the full stack, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from sse_batcher.server._http import error
from sse_batcher.server.app.cutoff import cut_at_shutdown, shutting_down
from sse_batcher.server.app.runtime import RuntimeNotReady
from sse_batcher.server.app.stream import stream_events
from sse_batcher.server.security.middleware import SECURITY_HEADERS, CORSMiddleware

__all__ = ["EventsRoute", "route_path"]

logger = logging.getLogger(__name__)

_PATH = "/events"
_METHODS = frozenset({"GET", "HEAD"})


def route_path(scope: Scope) -> str:
    """The request path below the app's mount point (``root_path``), as Starlette's router matches it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


class EventsRoute:
    """Serves ``GET``/``HEAD`` ``/events`` itself; passes every other request to ``app``.

    ``cors_origins`` as in :class:`~sse_batcher.server.security.middleware.CORSMiddleware` (empty: no CORS).
    """

    def __init__(self, app: ASGIApp, cors_origins: Collection[str] = ()) -> None:
        self.app = app
        self._cors = CORSMiddleware(app, cors_origins) if cors_origins else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS or route_path(scope) != _PATH:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        try:
            # The resume lookup may wait on an unreachable PostgreSQL: answered 503 if still waiting
            # after a shutdown's drain. The stream itself is written outside, through the server's send.
            with cut_at_shutdown(request.app.state) as cut:
                response = await stream_events(request)
            if cut.cut:
                response = shutting_down()
        except RuntimeNotReady as exc:
            # What the app's handler answers on the other routes: starting or shutting down.
            response = error(503, str(exc), {"Retry-After": "2"})
        except Exception:
            # What Starlette's ServerErrorMiddleware does for the other routes.
            logger.exception("GET /events failed before its response started")
            response = error(500, "internal server error")
        self._add_headers(response, request.headers.get("origin"))
        await response(scope, receive, send)

    def _add_headers(self, response: Response, origin: str | None) -> None:
        """Add the security (and CORS) headers the middleware stack would, once; the endpoint's own win."""
        present = {name.lower() for name, _ in response.raw_headers}
        added = list(SECURITY_HEADERS)
        if self._cors is not None:
            added.append(("Vary", "Origin"))  # the answer depends on Origin even when it grants nothing
            added.extend(self._cors.response_headers(origin).items())
        for name, value in added:
            if name.lower().encode() not in present:
                response.raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
