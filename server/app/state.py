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
from sse_batcher.server.app.stream import read_subscription

__all__ = ["latest_state"]


async def latest_state(request: Request) -> Response:
    """GET /api/state: 200 JSON, or a JSON error (400, 401, 403, 503)."""
    runtime = runtime_of(request)
    asked = read_subscription(request)
    if isinstance(asked, Response):
        return asked
    if not runtime.accepting:
        return shutting_down()
    try:
        snapshot = await runtime.store.snapshot(types=asked.types, sources=asked.sources)
    except StoreError as exc:
        return error(503, f"the store is unavailable: {exc}", {"Retry-After": "1"})
    return Response(snapshot.body, media_type="application/json", headers={"Cache-Control": "no-store"})
