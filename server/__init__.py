"""sse-batcher's HTTP server, built on the core: the app, the SSE fan-out, security, nodes, a client.

Its sub-packages, from the outside in:

- :mod:`.serving`: run the app under uvicorn, one process or N (``sse-batcher serve``);
- :mod:`.app`: :func:`create_app`, the runtime that wires the core to the hub, and the endpoints;
- :mod:`.stream`: the hub that fans every committed message out to the SSE subscribers;
- :mod:`.security`: headers, CORS, tokens and rate limits, asked by the endpoints;
- :mod:`.nodes`: this process's slot and heartbeat, and the embedded PostgreSQL;
- :mod:`.client`: a Python client for the stream, and the load tool built on it.
"""

from __future__ import annotations

from sse_batcher.server.app.factory import create_app
from sse_batcher.server.client import StreamEvent, StreamRefusedError, asubscribe, subscribe, unroll
from sse_batcher.server.config import ServerConfig
from sse_batcher.server.stream.hub import Hub, HubStats

__all__ = [
    "Hub",
    "HubStats",
    "ServerConfig",
    "StreamEvent",
    "StreamRefusedError",
    "asubscribe",
    "create_app",
    "subscribe",
    "unroll",
]
