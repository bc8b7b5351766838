"""The HTTP app: :func:`create_app`, its lifespan, and the endpoints.

Enters: HTTP requests (``POST /api/events``, ``GET /events``, ``POST /api/stream-token``,
``/api/stats``, ``/api/history``, ``/metrics``, ``/healthz``, the dashboard's files).
Inside: :func:`open_runtime` opens everything one app owns in data-flow order (database, store,
batcher, log follower, hub, workers) and closes it in reverse; the :class:`Runtime` it yields holds
those parts and drains them at shutdown (under uvicorn, when the server is asked to exit:
:mod:`.host_exit`); each endpoint module asks it, and asks the security guard; :mod:`.history`
keeps the last five minutes of throughput and latency for the dashboard.
Leaves: events into the batcher (publish), subscribers into the hub (the stream), figures out.
Next: the core (:mod:`sse_batcher.batcher`) for publishing and :mod:`sse_batcher.server.stream`
for streaming.
"""

from __future__ import annotations

from sse_batcher.server.app.factory import create_app
from sse_batcher.server.app.runtime import Runtime
from sse_batcher.server.app.wiring import open_runtime

__all__ = ["Runtime", "create_app", "open_runtime"]
