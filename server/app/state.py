"""GET /api/state: the latest event of every open key as JSON, for clients that poll.

The body is the data of the ``STATE_SNAPSHOT`` message a stream opened with ``snapshot=1`` starts
with (``server/stream/snapshot.py``)::

    {"type": "STATE_SNAPSHOT", "upto_id": N, "count": K, "events": [...]}

The same credentials and filters as ``GET /events`` apply (a stream token's filters narrow the
request's); the filters apply to each key's latest event. A poller that wants to go on live opens
``/events`` with ``Last-Event-ID: N``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sse_batcher.batcher import StoreError
from sse_batcher.server._http import error, shutting_down
from sse_batcher.server.app.runtime import runtime_of
from sse_batcher.server.app.stream import BadStreamRequest, request_filters
from sse_batcher.server.security.guard import NotAllowed, guard_of
from sse_batcher.server.security.tokens import InvalidStreamToken

__all__ = ["latest_state"]


async def latest_state(request: Request) -> Response:
    """GET /api/state: 200 JSON, or a JSON error (400, 401, 403, 503)."""
    runtime = runtime_of(request)
    guard = guard_of(request)
    try:
        grant = guard.subscriber(request)
    except InvalidStreamToken as exc:
        return error(401, str(exc), {"WWW-Authenticate": "Bearer"})
    try:
        types, sources = request_filters(request)
    except BadStreamRequest as exc:
        return error(400, str(exc), field=exc.field)
    try:
        types, sources = guard.narrow(grant, types, sources)
    except NotAllowed as exc:
        return error(403, str(exc), field=exc.field)
    if not runtime.accepting:
        return shutting_down()
    try:
        snapshot = await runtime.store.snapshot(types=types, sources=sources)
    except StoreError as exc:
        return error(503, f"the store is unavailable: {exc}", {"Retry-After": "1"})
    return Response(snapshot.body, media_type="application/json", headers={"Cache-Control": "no-store"})
